// Goal: the NATS bus keeps the contract of bus.h against a real nats-server with JetStream:
// topic wildcards and unsubscription (and JetStream capturing events), FIFO work queues with
// acks, de-duplication by id, delayed nacks, lease expiry into redelivery, heartbeats, dead
// letters after limits::kDeliveriesMax deliveries or a malformed payload, a bounded depth,
// durable consumers that resume across Bus objects, KV create/CAS/expiry/delete, and an outage
// (the server stopped and restarted mid-test) that loses nothing acknowledged.
// Method: each test gets a fresh namespace (NatsOptions::ns), so its streams, consumers and
// buckets are its own, and deletes them at the end; the server is NATS_URL (the ctest fixture's,
// or `export $(cat /tmp/svc/env)`), except for the outage test, which starts its own nats-server
// on a free port and a temporary store directory and stops it by PID. The server's time is
// real, so tests wait for outcomes by polling with generous deadlines and assert what happened,
// never how long it took.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bus/bus.h"

extern char** environ;

namespace venture::bus {
namespace {

constexpr Millis kDeadline{20000};
constexpr Millis kPoll{20};

std::string shared_url() {
  const char* url = std::getenv("NATS_URL");  // NOLINT(concurrency-mt-unsafe): no setenv here
  return url == nullptr ? "" : url;
}

// Polls `done` until it holds or `deadline` passes (real time). Returns its last value.
bool eventually(const std::function<bool()>& done, Millis deadline = kDeadline) {
  base::RealClock clock;
  const int64_t end = clock.monotonic_ns() + deadline.count() * 1'000'000;
  while (true) {
    if (done()) {
      return true;
    }
    if (clock.monotonic_ns() > end) {
      return false;
    }
    std::this_thread::sleep_for(kPoll);
  }
}

std::string unique_ns() {
  static std::atomic<int> counter{0};
  return "t" + std::to_string(getpid()) + "n" + std::to_string(counter.fetch_add(1));
}

// A raw cnats connection for what the Bus does not expose: deleting a namespace's streams,
// publishing arbitrary bytes, reading a stream's message count.
class Admin {
 public:
  explicit Admin(const std::string& url) {
    if (natsConnection_ConnectTo(&nc_, url.c_str()) == NATS_OK) {
      (void)natsConnection_JetStream(&js_, nc_, nullptr);
    }
  }
  ~Admin() {
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }
  Admin(const Admin&) = delete;
  Admin& operator=(const Admin&) = delete;

  bool ok() const { return js_ != nullptr; }

  // Deletes every stream (KV buckets included) of namespace `ns`.
  void drop(const std::string& ns) {
    jsStreamNamesList* names = nullptr;
    if (js_StreamNames(&names, js_, nullptr, nullptr) != NATS_OK || names == nullptr) {
      return;
    }
    for (int i = 0; i < names->Count; ++i) {
      const std::string name = names->List[i];
      if (name.find("VENTURE-" + ns + "_") == 0 || name.find("KV_venture-" + ns + "_") == 0) {
        (void)js_DeleteStream(js_, name.c_str(), nullptr, nullptr);
      }
    }
    jsStreamNamesList_Destroy(names);
  }

  bool publish_raw(const std::string& subject, const std::string& data) {
    jsPubAck* ack = nullptr;
    const natsStatus s = js_Publish(&ack, js_, subject.c_str(), data.data(),
                                    static_cast<int>(data.size()), nullptr, nullptr);
    jsPubAck_Destroy(ack);
    return s == NATS_OK;
  }

  int64_t stream_messages(const std::string& stream) {
    jsStreamInfo* info = nullptr;
    if (js_GetStreamInfo(&info, js_, stream.c_str(), nullptr, nullptr) != NATS_OK) {
      return -1;
    }
    const auto n = static_cast<int64_t>(info->State.Msgs);
    jsStreamInfo_Destroy(info);
    return n;
  }

 private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

class NatsBusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = shared_url();
    ASSERT_FALSE(url_.empty())
        << "NATS_URL is not set: run this test through ctest (which starts the test services) "
           "or `export $(cat /tmp/svc/env)` first";
    options_.url = url_;
    options_.name = "venture-bus-test";
    options_.ns = unique_ns();
    options_.lease = Millis(1000);
    bus_ = connect();
    ASSERT_NE(bus_, nullptr);
  }

  void TearDown() override {
    bus_.reset();
    if (!url_.empty()) {
      Admin admin(url_);
      admin.drop(options_.ns);
    }
  }

  std::unique_ptr<Bus> connect() {
    auto bus = new_nats_bus(options_, clock_);
    EXPECT_TRUE(bus) << bus.error().to_string();
    return bus ? std::move(*bus) : nullptr;
  }

  // Pulls until `n` deliveries arrived in total (or the deadline passes).
  std::vector<Delivery> pull_n(std::string_view queue, std::size_t n, Bus* bus = nullptr) {
    Bus& b = bus == nullptr ? *bus_ : *bus;
    std::vector<Delivery> got;
    eventually([&] {
      auto more = b.pull(queue, n - got.size(), Millis(60000));
      EXPECT_TRUE(more) << more.error().to_string();
      if (more) {
        for (Delivery& d : *more) {
          got.push_back(std::move(d));
        }
      }
      return got.size() >= n;
    });
    return got;
  }

  QueueStats stats_of(std::string_view queue) {
    auto stats = bus_->stats(queue);
    EXPECT_TRUE(stats) << stats.error().to_string();
    return stats ? *stats : QueueStats{};
  }

  std::string url_;
  base::RealClock clock_;
  NatsOptions options_;
  std::unique_ptr<Bus> bus_;
};

// Collects topic messages for assertions from the test thread.
struct Inbox {
  std::mutex mu;
  std::vector<std::string> seen;  // "<subject> <compact data>"

  Bus::Handler handler(const std::string& tag) {
    return [this, tag](const Message& m) {
      std::lock_guard lock(mu);
      seen.push_back(tag + ":" + m.subject + " " + json::serialize(m.data));
    };
  }
  std::size_t size() {
    std::lock_guard lock(mu);
    return seen.size();
  }
  std::multiset<std::string> all() {
    std::lock_guard lock(mu);
    return {seen.begin(), seen.end()};
  }
};

// ---- Topics ----

TEST_F(NatsBusTest, PublishReachesWildcardSubscribersAndJetStreamCapturesEvents) {
  Inbox inbox;
  auto one = bus_->subscribe("run.*", inbox.handler("one"));
  auto rest = bus_->subscribe("node.>", inbox.handler("rest"));
  auto exact = bus_->subscribe("run.r1", inbox.handler("exact"));
  ASSERT_TRUE(one && rest && exact);
  ASSERT_TRUE(bus_->publish("run.r1", json::value(1)));
  ASSERT_TRUE(bus_->publish("run.r1.deep", json::value(2)));  // no subscriber matches
  ASSERT_TRUE(bus_->publish("node.a.b", json::object{{"k", "v"}}));
  ASSERT_TRUE(bus_->publish("other", json::value(3)));  // no subscriber matches
  ASSERT_TRUE(bus_->publish("run.r2", nullptr));
  ASSERT_TRUE(eventually([&] { return inbox.size() >= 4; }));
  // One connection delivers in publish order per subscription, so the last message (run.r2)
  // arriving at "one" means the earlier non-matching publishes were not delivered.
  EXPECT_EQ(inbox.all(),
            (std::multiset<std::string>{"one:run.r1 1", "exact:run.r1 1",
                                        "rest:node.a.b {\"k\":\"v\"}", "one:run.r2 null"}));
  Admin admin(url_);
  ASSERT_TRUE(admin.ok());
  // run.r1, run.r1.deep, node.a.b and run.r2 match the event stream's subjects; "other" not.
  EXPECT_TRUE(
      eventually([&] { return admin.stream_messages("VENTURE-" + options_.ns + "_EVENTS") == 4; }));
}

TEST_F(NatsBusTest, FullWildcardSeesTopicsOnlyNotQueuesOrReplies) {
  Inbox inbox;
  auto all = bus_->subscribe(">", inbox.handler("all"));
  ASSERT_TRUE(all);
  EXPECT_EQ(bus_->publish("q.tasks", nullptr).error().code, Code::kInvalidArgument);
  ASSERT_TRUE(bus_->enqueue("tasks.http", "", json::value(1)));  // q.tasks.http + PubAck reply
  ASSERT_TRUE(bus_->kv_bucket("flags", Millis(0)));
  ASSERT_TRUE(bus_->kv_put("flags", "frozen", "1"));
  ASSERT_TRUE(bus_->publish("run.r1", json::value(2)));
  ASSERT_TRUE(eventually([&] { return inbox.size() >= 1; }));
  EXPECT_EQ(inbox.all(), (std::multiset<std::string>{"all:run.r1 2"}));
}

TEST_F(NatsBusTest, UnsubscribeStopsDelivery) {
  Inbox inbox;
  auto gone = bus_->subscribe("a.*", inbox.handler("gone"));
  auto kept = bus_->subscribe("a.*", inbox.handler("kept"));
  ASSERT_TRUE(gone && kept);
  ASSERT_TRUE(bus_->publish("a.b", json::value(1)));
  ASSERT_TRUE(eventually([&] { return inbox.size() == 2; }));
  bus_->unsubscribe(*gone);
  bus_->unsubscribe(*gone);  // idempotent
  bus_->unsubscribe(987654);
  ASSERT_TRUE(bus_->publish("a.b", json::value(2)));
  ASSERT_TRUE(eventually([&] { return inbox.size() == 3; }));
  EXPECT_EQ(inbox.all(), (std::multiset<std::string>{"gone:a.b 1", "kept:a.b 1", "kept:a.b 2"}));
}

TEST_F(NatsBusTest, InvalidNamesAreRejected) {
  EXPECT_EQ(bus_->publish("a..b", nullptr).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->publish("a.*", nullptr).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->subscribe("a.>.b", [](const Message&) {}).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->subscribe("a", nullptr).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->enqueue("", "", nullptr).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->enqueue("a.>", "", nullptr).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->pull("q", 1, Millis(0)).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->kv_bucket("a.b", Millis(0)).error().code, Code::kInvalidArgument);
  const json::value huge(std::string(2 << 20, 'x'));  // over the default 1 MiB max_payload
  EXPECT_EQ(bus_->enqueue("q", "", huge).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->publish("run.x", huge).error().code, Code::kInvalidArgument);
  NatsOptions bad = options_;
  bad.ns = "has.dot";
  EXPECT_EQ(new_nats_bus(bad, clock_).error().code, Code::kInvalidArgument);
  bad = options_;
  bad.url = "nats://127.0.0.1:1";  // nothing listens there
  EXPECT_EQ(new_nats_bus(bad, clock_).error().code, Code::kUnavailable);
  EXPECT_TRUE(bus_->health());
}

// ---- Work queues ----

TEST_F(NatsBusTest, EnqueuePullAckInFifoOrder) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(bus_->enqueue("tasks.http", "", json::value(i)));
  }
  const Time before = clock_.now();
  std::vector<Delivery> got = pull_n("tasks.http", 5);
  ASSERT_EQ(got.size(), 5U);
  std::set<uint64_t> leases;
  for (int i = 0; i < 5; ++i) {
    const Delivery& d = got[static_cast<std::size_t>(i)];
    EXPECT_EQ(d.queue, "tasks.http");
    EXPECT_EQ(d.payload, json::value(i));
    EXPECT_EQ(d.deliveries, 1);
    EXPECT_GE(d.lease_until, before + options_.lease);
    if (i > 0) {
      EXPECT_GT(d.message_id, got[static_cast<std::size_t>(i - 1)].message_id);
    }
    leases.insert(d.lease);
  }
  EXPECT_EQ(leases.size(), 5U);
  EXPECT_EQ(stats_of("tasks.http").leased, 5U);
  for (const Delivery& d : got) {
    ASSERT_TRUE(bus_->ack(d));
  }
  EXPECT_EQ(bus_->ack(got[0]).error().code, Code::kNotFound);  // already acked
  EXPECT_TRUE(eventually([&] {
    const QueueStats s = stats_of("tasks.http");
    return s.ready == 0 && s.leased == 0;
  }));
  EXPECT_EQ(bus_->pull("tasks.http", 10, options_.lease)->size(), 0U);
  EXPECT_EQ(stats_of("tasks.http").dead, 0U);
}

TEST_F(NatsBusTest, DedupIdsAreScopedByQueue) {
  // A task and its result carry the same attempt key on two queues of the one stream: both land.
  ASSERT_TRUE(bus_->enqueue("tasks.noop", "run/a/-1/0/1", json::value(1)));
  ASSERT_TRUE(bus_->enqueue("engine.results", "run/a/-1/0/1", json::value(2)));
  std::vector<Delivery> tasks = pull_n("tasks.noop", 1);
  std::vector<Delivery> results = pull_n("engine.results", 1);
  ASSERT_EQ(tasks.size(), 1U);
  ASSERT_EQ(results.size(), 1U);
  EXPECT_EQ(tasks[0].payload, json::value(1));
  EXPECT_EQ(results[0].payload, json::value(2));
  EXPECT_EQ(results[0].dedup_id, "run/a/-1/0/1");
}

TEST_F(NatsBusTest, DuplicateDedupIdIsDropped) {
  ASSERT_TRUE(bus_->enqueue("q", "task-1", json::value(1)));
  ASSERT_TRUE(bus_->enqueue("q", "task-1", json::value(2)));
  ASSERT_TRUE(bus_->enqueue("q", "task-2", json::value(3)));
  ASSERT_TRUE(bus_->enqueue("q", "", json::value(4)));
  ASSERT_TRUE(bus_->enqueue("q", "", json::value(5)));
  std::vector<Delivery> got = pull_n("q", 4);
  ASSERT_EQ(got.size(), 4U);
  EXPECT_EQ(got[0].dedup_id, "task-1");
  EXPECT_EQ(got[0].payload, json::value(1));
  EXPECT_EQ(got[1].dedup_id, "task-2");
  EXPECT_EQ(got[2].dedup_id, "");
  EXPECT_EQ(got[3].payload, json::value(5));
  EXPECT_EQ(bus_->pull("q", 10, options_.lease)->size(), 0U);
  // Within JetStream's duplicate window the id stays taken even after the ack (unlike the
  // memory bus, which frees it with the message).
  ASSERT_TRUE(bus_->ack(got[0]));
  ASSERT_TRUE(bus_->enqueue("q", "task-1", json::value(6)));
  EXPECT_EQ(bus_->pull("q", 10, options_.lease)->size(), 0U);
}

TEST_F(NatsBusTest, NackWithDelayRedeliversLater) {
  ASSERT_TRUE(bus_->enqueue("q", "", json::value("x")));
  Delivery first = pull_n("q", 1).at(0);
  ASSERT_TRUE(bus_->nack(first, Millis(3000)));
  EXPECT_EQ(bus_->ack(first).error().code, Code::kNotFound);  // the lease is gone
  EXPECT_EQ(bus_->nack(first, Millis(0)).error().code, Code::kNotFound);
  EXPECT_EQ(bus_->pull("q", 10, Millis(60000))->size(), 0U);  // not before the delay
  Delivery second = pull_n("q", 1).at(0);
  EXPECT_EQ(second.message_id, first.message_id);
  EXPECT_EQ(second.deliveries, 2);
  EXPECT_NE(second.lease, first.lease);
  EXPECT_EQ(bus_->nack(second, Millis(-1)).error().code, Code::kInvalidArgument);
  ASSERT_TRUE(bus_->ack(second));
}

TEST_F(NatsBusTest, ExpiredLeaseRedeliversAndTheOldLeaseGoesStale) {
  ASSERT_TRUE(bus_->enqueue("q", "t", json::value("x")));
  Delivery first = pull_n("q", 1).at(0);
  EXPECT_EQ(first.deliveries, 1);
  // No ack: after AckWait (1 s) the server redelivers it.
  Delivery second = pull_n("q", 1).at(0);
  EXPECT_EQ(second.message_id, first.message_id);
  EXPECT_EQ(second.dedup_id, "t");
  EXPECT_EQ(second.deliveries, 2);
  EXPECT_EQ(bus_->ack(first).error().code, Code::kNotFound);
  EXPECT_EQ(bus_->heartbeat(first, Millis(1000)).error().code, Code::kNotFound);
  ASSERT_TRUE(bus_->ack(second));
}

TEST_F(NatsBusTest, HeartbeatKeepsTheMessage) {
  ASSERT_TRUE(bus_->enqueue("q", "", json::value("x")));
  Delivery d = pull_n("q", 1).at(0);
  // Three AckWaits of heartbeats every 300 ms: without them the message would come back.
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(Millis(300));
    ASSERT_TRUE(bus_->heartbeat(d, Millis(1000)));
    auto again = bus_->pull("q", 10, Millis(60000));
    ASSERT_TRUE(again);
    ASSERT_EQ(again->size(), 0U) << "redelivered despite heartbeats";
  }
  EXPECT_EQ(bus_->heartbeat(d, Millis(0)).error().code, Code::kInvalidArgument);
  ASSERT_TRUE(bus_->ack(d));
}

TEST_F(NatsBusTest, MessageIsDeadAfterMaxDeliveries) {
  ASSERT_TRUE(bus_->enqueue("q", "", json::value("poison")));
  for (std::size_t i = 1; i <= limits::kDeliveriesMax; ++i) {
    std::vector<Delivery> got = pull_n("q", 1);
    ASSERT_EQ(got.size(), 1U) << "delivery " << i;
    ASSERT_EQ(got[0].deliveries, static_cast<int>(i));
    ASSERT_TRUE(bus_->nack(got[0], Millis(0)));
  }
  // Like the memory bus, the server notices on the next pull that the message is spent.
  EXPECT_TRUE(eventually([&] {
    auto none = bus_->pull("q", 10, Millis(60000));
    EXPECT_TRUE(none && none->empty());
    const QueueStats s = stats_of("q");
    return s.dead == 1 && s.ready == 0 && s.leased == 0;
  }));
  Admin admin(url_);
  // The advisory handler removed it from the work-queue stream.
  EXPECT_TRUE(
      eventually([&] { return admin.stream_messages("VENTURE-" + options_.ns + "_QUEUES") == 0; }));
  EXPECT_EQ(bus_->pull("q", 10, Millis(60000))->size(), 0U);
}

TEST_F(NatsBusTest, MalformedQueueMessageIsDeadNotACrash) {
  Admin admin(url_);
  ASSERT_TRUE(admin.ok());
  ASSERT_TRUE(bus_->enqueue("q", "", json::value(1)));
  ASSERT_TRUE(admin.publish_raw(options_.ns + ".q.q", "{not json"));
  ASSERT_TRUE(bus_->enqueue("q", "", json::value(2)));
  std::vector<Delivery> got = pull_n("q", 2);
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[0].payload, json::value(1));
  EXPECT_EQ(got[1].payload, json::value(2));
  EXPECT_EQ(stats_of("q").dead, 1U);
  for (const Delivery& d : got) {
    ASSERT_TRUE(bus_->ack(d));
  }
  EXPECT_TRUE(
      eventually([&] { return admin.stream_messages("VENTURE-" + options_.ns + "_QUEUES") == 0; }));
}

TEST_F(NatsBusTest, QueueDepthIsBounded) {
  bus_.reset();
  Admin(url_).drop(options_.ns);
  options_.queue_depth_max = 3;
  bus_ = connect();
  ASSERT_NE(bus_, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(bus_->enqueue("q", "", json::value(i)));
  }
  auto full = bus_->enqueue("q", "", json::value(3));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Code::kResourceExhausted) << full.error().to_string();
  EXPECT_TRUE(bus_->enqueue("other", "", json::value(0)));  // the bound is per queue
  Delivery d = pull_n("q", 1).at(0);
  ASSERT_TRUE(bus_->ack(d));
  EXPECT_TRUE(eventually([&] { return bool(bus_->enqueue("q", "", json::value(4))); }));
}

TEST_F(NatsBusTest, OnReadyFiresOnEnqueueAndNextWakeTracksUnackedWork) {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  bus_->on_ready("q", [&] {
    std::lock_guard lock(mu);
    ++calls;
    cv.notify_all();
  });
  EXPECT_FALSE(bus_->next_wake("q"));
  ASSERT_TRUE(bus_->enqueue("q", "", json::value(1)));
  {
    std::unique_lock lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, kDeadline, [&] { return calls >= 1; }));
  }
  Delivery d = pull_n("q", 1).at(0);
  EXPECT_TRUE(eventually([&] { return bus_->next_wake("q").has_value(); }));
  ASSERT_TRUE(bus_->ack(d));
  EXPECT_TRUE(eventually([&] { return !bus_->next_wake("q").has_value(); }));
  bus_->on_ready("q", nullptr);
  int before = 0;
  {
    std::lock_guard lock(mu);
    before = calls;
  }
  ASSERT_TRUE(bus_->enqueue("q", "", json::value(2)));
  ASSERT_EQ(pull_n("q", 1).size(), 1U);  // the message went through; the callback is gone
  std::lock_guard lock(mu);
  EXPECT_EQ(calls, before);
}

TEST_F(NatsBusTest, DurableConsumerResumesInANewBus) {
  options_.lease = Millis(60000);
  bus_.reset();
  bus_ = connect();
  ASSERT_NE(bus_, nullptr);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(bus_->enqueue("tasks.x", "id-" + std::to_string(i), json::value(i)));
  }
  std::vector<Delivery> first = pull_n("tasks.x", 40);
  ASSERT_EQ(first.size(), 40U);
  for (std::size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i].payload, json::value(static_cast<int>(i)));
    ASSERT_TRUE(bus_->ack(first[i]));
  }
  bus_.reset();  // flushes the acks and closes the connection
  std::unique_ptr<Bus> second = connect();
  ASSERT_NE(second, nullptr);
  std::vector<Delivery> rest = pull_n("tasks.x", 60, second.get());
  ASSERT_EQ(rest.size(), 60U);
  for (std::size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(rest[i].payload, json::value(static_cast<int>(40 + i)));
    EXPECT_EQ(rest[i].deliveries, 1);
    ASSERT_TRUE(second->ack(rest[i]));
  }
  auto more = second->pull("tasks.x", 100, Millis(60000));
  ASSERT_TRUE(more);
  EXPECT_EQ(more->size(), 0U);
}

TEST_F(NatsBusTest, ConcurrentProducersAndConsumersAckEveryMessageOnce) {
  options_.lease = Millis(60000);  // no redelivery: every message is pulled exactly once
  bus_.reset();
  bus_ = connect();
  ASSERT_NE(bus_, nullptr);
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 100;
  constexpr int kTotal = kProducers * kPerProducer;
  std::mutex mu;
  std::multiset<int64_t> acked;
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  threads.reserve(kProducers + 4);
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        const int id = p * kPerProducer + i;
        if (!bus_->enqueue("work", "m" + std::to_string(id), json::value(id))) failed = true;
      }
    });
  }
  for (int c = 0; c < 4; ++c) {
    threads.emplace_back([&] {
      eventually([&] {
        auto got = bus_->pull("work", 16, Millis(60000));
        if (!got) failed = true;
        for (const Delivery& d : got ? *got : std::vector<Delivery>{}) {
          if (!bus_->ack(d)) failed = true;
          std::lock_guard lock(mu);
          acked.insert(d.payload.as_int64());
        }
        std::lock_guard lock(mu);
        return acked.size() >= static_cast<std::size_t>(kTotal);
      });
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_FALSE(failed);
  ASSERT_EQ(acked.size(), static_cast<std::size_t>(kTotal));
  for (int id = 0; id < kTotal; ++id) {
    EXPECT_EQ(acked.count(id), 1U) << id;
  }
}

// ---- Key-value ----

TEST_F(NatsBusTest, KvCreateUpdateDelete) {
  ASSERT_TRUE(bus_->kv_bucket("owners", Millis(0)));
  ASSERT_TRUE(bus_->kv_bucket("owners", Millis(0)));
  EXPECT_EQ(bus_->kv_get("owners", "run_1").error().code, Code::kNotFound);
  EXPECT_EQ(bus_->kv_get("undeclared", "k").error().code, Code::kFailedPrecondition);
  auto r1 = bus_->kv_create("owners", "run_1", "node-a");
  ASSERT_TRUE(r1) << r1.error().to_string();
  auto again = bus_->kv_create("owners", "run_1", "node-b");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Code::kAlreadyExists) << again.error().to_string();
  auto got = bus_->kv_get("owners", "run_1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value, "node-a");
  EXPECT_EQ(got->revision, *r1);
  auto r2 = bus_->kv_update("owners", "run_1", "node-a2", *r1);
  ASSERT_TRUE(r2) << r2.error().to_string();
  EXPECT_GT(*r2, *r1);
  auto stale = bus_->kv_update("owners", "run_1", "node-c", *r1);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Code::kFailedPrecondition) << stale.error().to_string();
  EXPECT_EQ(bus_->kv_update("owners", "absent", "v", 0).error().code, Code::kFailedPrecondition);
  EXPECT_EQ(bus_->kv_update("owners", "absent", "v", 1).error().code, Code::kFailedPrecondition);
  auto r3 = bus_->kv_put("owners", "run_1", "node-d");
  ASSERT_TRUE(r3);
  EXPECT_GT(*r3, *r2);
  ASSERT_TRUE(bus_->kv_delete("owners", "run_1"));
  EXPECT_EQ(bus_->kv_get("owners", "run_1").error().code, Code::kNotFound);
  EXPECT_EQ(bus_->kv_update("owners", "run_1", "v", *r3).error().code, Code::kFailedPrecondition);
  ASSERT_TRUE(bus_->kv_delete("owners", "never-there"));
  auto r4 = bus_->kv_create("owners", "run_1", "node-e");  // deleted: creatable again
  ASSERT_TRUE(r4) << r4.error().to_string();
  EXPECT_GT(*r4, *r3);
  EXPECT_EQ(bus_->kv_put("owners", "a..b", "v").error().code, Code::kInvalidArgument);
}

TEST_F(NatsBusTest, KvEntriesExpire) {
  ASSERT_TRUE(bus_->kv_bucket("leases", Millis(1000)));
  EXPECT_EQ(bus_->kv_bucket("leases", Millis(2000)).error().code, Code::kFailedPrecondition);
  auto r1 = bus_->kv_create("leases", "run_1", "a");
  ASSERT_TRUE(r1) << r1.error().to_string();
  EXPECT_EQ(bus_->kv_create("leases", "run_1", "a").error().code, Code::kAlreadyExists);
  EXPECT_TRUE(eventually([&] {
    return !bus_->kv_get("leases", "run_1") &&
           bus_->kv_get("leases", "run_1").error().code == Code::kNotFound;
  }));
  auto r2 = bus_->kv_create("leases", "run_1", "b");
  ASSERT_TRUE(r2) << r2.error().to_string();
  EXPECT_EQ(bus_->kv_get("leases", "run_1")->value, "b");
}

// ---- Outage ----

// A loopback port nothing listens on (bound and released at once).
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(addr);
  // NOLINTBEGIN(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), size), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size), 0);
  // NOLINTEND(cppcoreguidelines-pro-type-reinterpret-cast)
  close(fd);
  return ntohs(addr.sin_port);
}

// A nats-server of this test's own, stopped by PID.
class Server {
 public:
  Server() : port_(free_port()) {
    char dir[] = "/tmp/venture-nats-XXXXXX";
    dir_ = mkdtemp(dir) == nullptr ? "" : dir;
  }
  ~Server() {
    stop();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }

  bool start() {
    const std::string port = std::to_string(port_);
    std::vector<std::string> args = {"nats-server", "-js", "-a",  "127.0.0.1",
                                     "-p",          port,  "-sd", dir_};
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (std::string& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawnp(&pid_, "nats-server", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = 0;
      return false;
    }
    return eventually([&] { return Admin(url()).ok(); });
  }

  // Deletes the server's store (call while stopped): a server that lost its disk.
  void wipe() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    std::filesystem::create_directories(dir_, ec);
  }

  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = 0;
    }
  }

 private:
  int port_;
  std::string dir_;
  pid_t pid_ = 0;
};

TEST(NatsBusOutageTest, ServerRestartLosesNothingAcknowledged) {
  ASSERT_FALSE(shared_url().empty()) << "NATS_URL is not set: run this test through ctest";
  Server server;
  ASSERT_TRUE(server.start()) << "cannot start nats-server";
  base::RealClock clock;
  NatsOptions options;
  options.url = server.url();
  options.lease = Millis(2000);
  auto made = new_nats_bus(options, clock);
  ASSERT_TRUE(made) << made.error().to_string();
  std::unique_ptr<Bus> bus = std::move(*made);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(bus->enqueue("q", "", json::value(i)));
  }
  ASSERT_TRUE(bus->kv_bucket("owners", Millis(0)));
  ASSERT_TRUE(bus->kv_put("owners", "run_1", "node-a"));
  std::vector<Delivery> got;
  ASSERT_TRUE(eventually([&] {
    auto more = bus->pull("q", 5 - got.size(), Millis(60000));
    if (more) got.insert(got.end(), more->begin(), more->end());
    return got.size() == 5;
  }));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(bus->ack(got[static_cast<std::size_t>(i)]));  // 0, 1, 2 done; 3, 4 held
  }
  ASSERT_TRUE(eventually([&] {
    auto s = bus->stats("q");
    return s && s->leased == 2 && s->ready == 5;
  }));

  server.stop();
  ASSERT_TRUE(eventually([&] { return !bus->health(); }));
  EXPECT_EQ(bus->health().error().code, Code::kUnavailable);
  EXPECT_EQ(bus->enqueue("q", "", json::value(99)).error().code, Code::kUnavailable);
  EXPECT_EQ(bus->pull("q", 1, Millis(1000)).error().code, Code::kUnavailable);
  EXPECT_EQ(bus->kv_get("owners", "run_1").error().code, Code::kUnavailable);
  EXPECT_EQ(bus->publish("run.x", nullptr).error().code, Code::kUnavailable);

  ASSERT_TRUE(server.start()) << "cannot restart nats-server";
  ASSERT_TRUE(eventually([&] { return bool(bus->health()); }));
  ASSERT_TRUE(eventually([&] { return bool(bus->enqueue("q", "", json::value(10))); }));
  auto owner = bus->kv_get("owners", "run_1");
  ASSERT_TRUE(owner) << owner.error().to_string();
  EXPECT_EQ(owner->value, "node-a");
  // Everything not acknowledged comes back: 5..10 never pulled, 3 and 4 after their lease.
  std::multiset<int64_t> seen;
  ASSERT_TRUE(eventually(
      [&] {
        auto more = bus->pull("q", 100, Millis(60000));
        if (more) {
          for (const Delivery& d : *more) {
            seen.insert(d.payload.as_int64());
            EXPECT_TRUE(bus->ack(d));
          }
        }
        return seen.size() >= 8;
      },
      Millis(60000)));
  EXPECT_EQ(seen, (std::multiset<int64_t>{3, 4, 5, 6, 7, 8, 9, 10}));
}

TEST(NatsBusOutageTest, AServerThatLostItsStoreGetsTheStreamsDeclaredAgain) {
  ASSERT_FALSE(shared_url().empty()) << "NATS_URL is not set: run this test through ctest";
  Server server;
  ASSERT_TRUE(server.start()) << "cannot start nats-server";
  base::RealClock clock;
  NatsOptions options;
  options.url = server.url();
  auto made = new_nats_bus(options, clock);
  ASSERT_TRUE(made) << made.error().to_string();
  std::unique_ptr<Bus> bus = std::move(*made);
  ASSERT_TRUE(bus->enqueue("q", "", json::value(1)));
  server.stop();
  server.wipe();
  ASSERT_TRUE(server.start()) << "cannot restart nats-server";
  ASSERT_TRUE(eventually([&] { return bool(bus->health()); }));
  // The first attempts find no stream (kUnavailable); a later one declares it again.
  ASSERT_TRUE(eventually([&] { return bool(bus->enqueue("q", "", json::value(2))); }));
  std::vector<Delivery> got;
  ASSERT_TRUE(eventually([&] {
    auto more = bus->pull("q", 10, Millis(60000));
    if (more) got.insert(got.end(), more->begin(), more->end());
    return !got.empty();
  }));
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].payload, json::value(2));
  // Without a namespace `>` matches everything on the wire; topic handlers still see only topics
  // (not replies, JetStream/KV traffic or queue messages).
  Inbox inbox;
  auto all = bus->subscribe(">", inbox.handler("all"));
  ASSERT_TRUE(all);
  ASSERT_TRUE(bus->enqueue("q", "", json::value(3)));
  ASSERT_TRUE(bus->kv_bucket("flags", Millis(0)));
  ASSERT_TRUE(bus->kv_put("flags", "frozen", "1"));
  ASSERT_TRUE(bus->stats("q"));
  ASSERT_TRUE(bus->publish("run.r1", json::value(4)));
  ASSERT_TRUE(eventually([&] { return inbox.size() >= 1; }));
  EXPECT_EQ(inbox.all(), (std::multiset<std::string>{"all:run.r1 4"}));
}

}  // namespace
}  // namespace venture::bus
