// Goal: the in-process bus keeps the contract of bus.h: NATS subject matching, topic delivery and
// unsubscription, and work queues with de-duplication, a depth bound, leases that expire into
// redelivery (the old lease going stale), heartbeats, delayed nacks, dead-lettering after
// limits::kDeliveriesMax deliveries, on_ready notifications, exactly-once acknowledgement of
// every message under concurrent producers and consumers, and the key-value store
// (create-if-absent, compare-and-set by revision, expiry ttl after the last write, delete).
// Method: table tests for matching; a ManualClock drives every time-dependent case, so nothing
// sleeps and every outcome is deterministic; the concurrency test counts acks per message id and
// is also run under TSan.
#include "bus/bus.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace venture::bus {
namespace {

constexpr Millis kLease{10000};

Time start() { return from_unix_ms(1'700'000'000'000); }

class BusTest : public ::testing::Test {
 protected:
  base::ManualClock clock_{start()};
  std::unique_ptr<Bus> bus_ = new_memory_bus(clock_);

  Delivery pull_one(std::string_view queue, Millis lease = kLease) {
    auto got = bus_->pull(queue, 1, lease);
    EXPECT_TRUE(got.has_value());
    EXPECT_EQ(got->size(), 1U);
    return got->empty() ? Delivery{} : got->front();
  }

  std::size_t pull_count(std::string_view queue) {
    auto got = bus_->pull(queue, 1000, kLease);
    EXPECT_TRUE(got.has_value());
    return got->size();
  }

  QueueStats stats_of(std::string_view queue) {
    auto stats = bus_->stats(queue);
    EXPECT_TRUE(stats.has_value());
    return *stats;
  }
};

// ---- Subject matching ----

TEST(SubjectMatchesTest, Table) {
  struct Case {
    const char* pattern;
    const char* subject;
    bool match;
  };
  const Case cases[] = {
      {"a", "a", true},
      {"a", "b", false},
      {"a.b.c", "a.b.c", true},
      {"a.b", "a.b.c", false},
      {"a.b.c", "a.b", false},
      {"a.*", "a.b", true},
      {"a.*", "a", false},
      {"a.*", "a.b.c", false},
      {"*.b", "a.b", true},
      {"*", "a", true},
      {"*", "a.b", false},
      {"*.*", "a.b", true},
      {"a.>", "a.b", true},
      {"a.>", "a.b.c.d", true},
      {"a.>", "a", false},  // `>` needs one or more tokens
      {">", "a", true},
      {">", "a.b.c", true},
      {"*.>", "a", false},
      {"*.>", "a.b", true},
      {"a.*.c.>", "a.x.c.d.e", true},
      {"a.*.c.>", "a.x.d.d", false},
      {"a.>.c", "a.b.c", false},  // `>` not last: invalid pattern
      {">.a", "x.a", false},
      {"a..b", "a..b", false},  // empty tokens are invalid
      {"", "", false},
      {"a.", "a.", false},
      {".a", ".a", false},
      {"a", "", false},
      {"a.*", "a.", false},
      {"a.b*", "a.b*", true},  // wildcards only as whole tokens; otherwise literal
      {"a.b*", "a.bc", false},
      {"a.*", "a.*", false},  // a subject cannot contain wildcard tokens
      {"a.>", "a.>", false},
      {"a b", "a b", false},  // whitespace is not allowed in tokens
      {"tasks.http", "tasks.http", true},
      {"runs.*.events", "runs.run_1.events", true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(subject_matches(c.pattern, c.subject), c.match)
        << "pattern '" << c.pattern << "' subject '" << c.subject << "'";
  }
}

// ---- Topics ----

TEST_F(BusTest, PublishCallsMatchingHandlersInSubscriptionOrder) {
  std::vector<std::string> seen;
  auto s1 = bus_->subscribe("runs.>", [&](const Message& m) { seen.push_back("1:" + m.subject); });
  auto s2 = bus_->subscribe("runs.*.done", [&](const Message& m) {
    seen.push_back("2:" + m.subject + ":" + json::serialize(m.data));
  });
  auto s3 = bus_->subscribe("other", [&](const Message& m) { seen.push_back("3:" + m.subject); });
  ASSERT_TRUE(s1 && s2 && s3);
  EXPECT_NE(*s1, *s2);
  ASSERT_TRUE(bus_->publish("runs.r1.done", json::value(7)));
  ASSERT_TRUE(bus_->publish("runs.r1.started", nullptr));
  ASSERT_TRUE(bus_->publish("nobody.listens", nullptr));
  EXPECT_EQ(seen,
            (std::vector<std::string>{"1:runs.r1.done", "2:runs.r1.done:7", "1:runs.r1.started"}));
}

TEST_F(BusTest, UnsubscribeStopsDelivery) {
  int calls = 0;
  auto sub = bus_->subscribe("a.*", [&](const Message&) { ++calls; });
  ASSERT_TRUE(sub);
  ASSERT_TRUE(bus_->publish("a.b", nullptr));
  bus_->unsubscribe(*sub);
  ASSERT_TRUE(bus_->publish("a.b", nullptr));
  EXPECT_EQ(calls, 1);
  bus_->unsubscribe(*sub);  // idempotent
  bus_->unsubscribe(12345);
}

TEST_F(BusTest, InvalidSubjectsAndPatternsAreRejected) {
  EXPECT_EQ(bus_->publish("a..b", nullptr).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->publish("a.*", nullptr).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->publish("", nullptr).error().code, Code::kInvalidArgument);
  auto handler = [](const Message&) {};
  EXPECT_EQ(bus_->subscribe("a.>.b", handler).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->subscribe("", handler).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->subscribe("a", nullptr).error().code, Code::kInvalidArgument);
}

TEST_F(BusTest, SubscriberCountIsBounded) {
  std::vector<uint64_t> ids;
  for (std::size_t i = 0; i < limits::kTopicSubscribersMax; ++i) {
    auto sub = bus_->subscribe("x", [](const Message&) {});
    ASSERT_TRUE(sub);
    ids.push_back(*sub);
  }
  auto over = bus_->subscribe("x", [](const Message&) {});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, Code::kResourceExhausted);
  bus_->unsubscribe(ids.front());
  EXPECT_TRUE(bus_->subscribe("x", [](const Message&) {}));
}

// ---- Work queues ----

TEST_F(BusTest, EnqueuePullAckInFifoOrder) {
  ASSERT_TRUE(bus_->enqueue("q", "", json::value(1)));
  ASSERT_TRUE(bus_->enqueue("q", "", json::value(2)));
  auto got = bus_->pull("q", 10, kLease);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 2U);
  const Delivery& first = (*got)[0];
  EXPECT_EQ(first.queue, "q");
  EXPECT_EQ(first.payload, json::value(1));
  EXPECT_EQ((*got)[1].payload, json::value(2));
  EXPECT_NE(first.message_id, (*got)[1].message_id);
  EXPECT_NE(first.lease, (*got)[1].lease);
  EXPECT_EQ(first.deliveries, 1);
  EXPECT_EQ(first.lease_until, start() + kLease);
  EXPECT_EQ(stats_of("q").leased, 2U);
  ASSERT_TRUE(bus_->ack(first));
  EXPECT_EQ(bus_->ack(first).error().code, Code::kNotFound);  // already acked
  ASSERT_TRUE(bus_->ack((*got)[1]));
  EXPECT_EQ(pull_count("q"), 0U);
  const QueueStats stats = stats_of("q");
  EXPECT_EQ(stats.ready + stats.leased + stats.dead, 0U);
}

TEST_F(BusTest, PullRespectsMaxAndCapsTheLease) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(bus_->enqueue("q", "", json::value(i)));
  }
  auto got = bus_->pull("q", 3, limits::kLeaseMax * 10);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->size(), 3U);
  EXPECT_EQ(got->front().lease_until, start() + limits::kLeaseMax);
  EXPECT_EQ(bus_->pull("q", 0, kLease)->size(), 0U);
  EXPECT_EQ(stats_of("q").ready, 2U);
}

TEST_F(BusTest, BadArgumentsAndUnknownQueues) {
  EXPECT_EQ(bus_->enqueue("", "", nullptr).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->pull("q", 1, Millis(0)).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->pull("", 1, kLease).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->pull("never", 1, kLease)->size(), 0U);
  EXPECT_EQ(stats_of("never").ready, 0U);
  EXPECT_FALSE(bus_->next_wake("never"));
  Delivery ghost;
  ghost.queue = "never";
  EXPECT_EQ(bus_->ack(ghost).error().code, Code::kNotFound);
  EXPECT_EQ(bus_->nack(ghost, Millis(0)).error().code, Code::kNotFound);
  EXPECT_EQ(bus_->heartbeat(ghost, kLease).error().code, Code::kNotFound);
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  Delivery d = pull_one("q");
  EXPECT_EQ(bus_->nack(d, Millis(-1)).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->heartbeat(d, Millis(0)).error().code, Code::kInvalidArgument);
  ghost.queue = "q";
  ghost.message_id = d.message_id;
  ghost.lease = d.lease + 1000;
  EXPECT_EQ(bus_->ack(ghost).error().code, Code::kNotFound);
}

TEST_F(BusTest, DuplicateDedupIdIsANoOpWhileTheMessageExists) {
  ASSERT_TRUE(bus_->enqueue("q", "task-1", json::value(1)));
  ASSERT_TRUE(bus_->enqueue("q", "task-1", json::value(2)));  // ready
  EXPECT_EQ(stats_of("q").ready, 1U);
  Delivery d = pull_one("q");
  EXPECT_EQ(d.dedup_id, "task-1");
  EXPECT_EQ(d.payload, json::value(1));
  ASSERT_TRUE(bus_->enqueue("q", "task-1", json::value(3)));  // leased
  EXPECT_EQ(pull_count("q"), 0U);
  ASSERT_TRUE(bus_->nack(d, Millis(5000)));
  ASSERT_TRUE(bus_->enqueue("q", "task-1", json::value(4)));  // delayed
  EXPECT_EQ(stats_of("q").ready, 1U);
  clock_.advance(Millis(5000));
  d = pull_one("q");
  EXPECT_EQ(d.payload, json::value(1));
  ASSERT_TRUE(bus_->ack(d));
  ASSERT_TRUE(bus_->enqueue("q", "task-1", json::value(5)));  // gone: accepted again
  EXPECT_EQ(pull_one("q").payload, json::value(5));
  // Empty dedup ids never collide, and dedup ids are per queue.
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  ASSERT_TRUE(bus_->enqueue("other", "task-1", nullptr));
  EXPECT_EQ(stats_of("q").ready, 2U);
  EXPECT_EQ(stats_of("other").ready, 1U);
}

TEST_F(BusTest, QueueDepthIsBounded) {
  ASSERT_TRUE(bus_->enqueue("q", "first", nullptr));
  for (std::size_t i = 1; i < limits::kQueueDepthMax; ++i) {
    ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  }
  auto full = bus_->enqueue("q", "", nullptr);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Code::kResourceExhausted);
  EXPECT_TRUE(bus_->enqueue("q", "first", nullptr));  // a duplicate is still a no-op
  EXPECT_TRUE(bus_->enqueue("other", "", nullptr));   // the bound is per queue
  Delivery d = pull_one("q");
  // A leased message still counts towards the depth.
  EXPECT_EQ(bus_->enqueue("q", "", nullptr).error().code, Code::kResourceExhausted);
  ASSERT_TRUE(bus_->ack(d));
  EXPECT_TRUE(bus_->enqueue("q", "", nullptr));
}

TEST_F(BusTest, ExpiredLeaseRedeliversAndTheOldLeaseGoesStale) {
  ASSERT_TRUE(bus_->enqueue("q", "t", json::value("x")));
  Delivery first = pull_one("q");
  EXPECT_EQ(bus_->next_wake("q"), start() + kLease);
  clock_.advance(kLease - Millis(1));
  EXPECT_EQ(pull_count("q"), 0U);  // not expired yet
  clock_.advance(Millis(1));
  Delivery second = pull_one("q");
  EXPECT_EQ(second.message_id, first.message_id);
  EXPECT_EQ(second.dedup_id, "t");
  EXPECT_EQ(second.payload, json::value("x"));
  EXPECT_EQ(second.deliveries, 2);
  EXPECT_NE(second.lease, first.lease);
  EXPECT_EQ(second.lease_until, start() + kLease * 2);
  EXPECT_EQ(bus_->ack(first).error().code, Code::kNotFound);
  EXPECT_EQ(bus_->heartbeat(first, kLease).error().code, Code::kNotFound);
  EXPECT_EQ(bus_->nack(first, Millis(0)).error().code, Code::kNotFound);
  ASSERT_TRUE(bus_->ack(second));
  EXPECT_FALSE(bus_->next_wake("q"));
}

TEST_F(BusTest, ExpiredLeaseIsHonouredUntilTheMessageIsPulledAgain) {
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  Delivery d = pull_one("q");
  clock_.advance(kLease * 2);
  ASSERT_TRUE(bus_->ack(d));
  EXPECT_EQ(pull_count("q"), 0U);
}

TEST_F(BusTest, HeartbeatExtendsTheLease) {
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  Delivery d = pull_one("q");
  clock_.advance(Millis(8000));
  ASSERT_TRUE(bus_->heartbeat(d, kLease));
  EXPECT_EQ(d.lease_until, start() + Millis(18000));
  EXPECT_EQ(bus_->next_wake("q"), start() + Millis(18000));
  clock_.advance(Millis(8000));  // past the original lease
  EXPECT_EQ(pull_count("q"), 0U);
  ASSERT_TRUE(bus_->heartbeat(d, limits::kLeaseMax * 2));  // capped
  EXPECT_EQ(d.lease_until, start() + Millis(16000) + limits::kLeaseMax);
  clock_.advance(limits::kLeaseMax);
  Delivery again = pull_one("q");
  EXPECT_EQ(again.deliveries, 2);
  EXPECT_EQ(bus_->heartbeat(d, kLease).error().code, Code::kNotFound);
}

TEST_F(BusTest, NackWithDelayMakesTheMessagePullableLater) {
  ASSERT_TRUE(bus_->enqueue("q", "", json::value(1)));
  Delivery d = pull_one("q");
  ASSERT_TRUE(bus_->nack(d, Millis(5000)));
  EXPECT_EQ(bus_->ack(d).error().code, Code::kNotFound);  // the lease ended with the nack
  EXPECT_EQ(stats_of("q").ready, 1U);
  EXPECT_EQ(stats_of("q").leased, 0U);
  EXPECT_EQ(bus_->next_wake("q"), start() + Millis(5000));
  clock_.advance(Millis(4999));
  EXPECT_EQ(pull_count("q"), 0U);
  clock_.advance(Millis(1));
  Delivery again = pull_one("q");
  EXPECT_EQ(again.message_id, d.message_id);
  EXPECT_EQ(again.deliveries, 2);
  ASSERT_TRUE(bus_->nack(again, Millis(0)));  // no delay: ready at once
  EXPECT_EQ(pull_one("q").deliveries, 3);
}

TEST_F(BusTest, NextWakeIsTheEarliestOfDelayedAndLeased) {
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  EXPECT_FALSE(bus_->next_wake("q"));  // ready messages need no wake-up
  Delivery a = pull_one("q", Millis(9000));
  Delivery b = pull_one("q", Millis(3000));
  EXPECT_EQ(bus_->next_wake("q"), start() + Millis(3000));
  ASSERT_TRUE(bus_->nack(b, Millis(1000)));
  EXPECT_EQ(bus_->next_wake("q"), start() + Millis(1000));
  ASSERT_TRUE(bus_->ack(a));
  EXPECT_EQ(bus_->next_wake("q"), start() + Millis(1000));
}

TEST_F(BusTest, DeadLettersAfterMaxDeliveriesByExpiry) {
  base::set_log_level(base::LogLevel::kError);  // the dead-letter warning is expected
  ASSERT_TRUE(bus_->enqueue("q", "poison", nullptr));
  ASSERT_TRUE(bus_->enqueue("q", "fine", nullptr));
  for (std::size_t i = 1; i <= limits::kDeliveriesMax; ++i) {
    auto got = bus_->pull("q", 10, Millis(1000));
    ASSERT_TRUE(got);
    for (const Delivery& d : *got) {
      if (d.dedup_id == "fine") {
        ASSERT_TRUE(bus_->ack(d));
      } else {
        EXPECT_EQ(d.deliveries, static_cast<int>(i));
      }
    }
    clock_.advance(Millis(1000));
  }
  EXPECT_EQ(pull_count("q"), 0U);
  const QueueStats stats = stats_of("q");
  EXPECT_EQ(stats.dead, 1U);
  EXPECT_EQ(stats.ready + stats.leased, 0U);
  ASSERT_TRUE(bus_->enqueue("q", "poison", nullptr));  // its dedup id was released
  EXPECT_EQ(pull_one("q").deliveries, 1);
  base::set_log_level(base::LogLevel::kInfo);
}

TEST_F(BusTest, DeadLettersAfterMaxDeliveriesByNack) {
  base::set_log_level(base::LogLevel::kError);
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  for (std::size_t i = 1; i <= limits::kDeliveriesMax; ++i) {
    Delivery d = pull_one("q");
    EXPECT_EQ(d.deliveries, static_cast<int>(i));
    ASSERT_TRUE(bus_->nack(d, Millis(0)));
  }
  EXPECT_EQ(pull_count("q"), 0U);
  EXPECT_EQ(stats_of("q").dead, 1U);
  EXPECT_EQ(stats_of("q").ready, 0U);
  base::set_log_level(base::LogLevel::kInfo);
}

TEST_F(BusTest, OnReadyFiresOnEnqueueNackAndExpiry) {
  int calls = 0;
  bus_->on_ready("q", [&] { ++calls; });
  ASSERT_TRUE(bus_->enqueue("q", "a", nullptr));
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(bus_->enqueue("q", "a", nullptr));  // duplicate: nothing new to pull
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(bus_->enqueue("other", "", nullptr));  // another queue
  EXPECT_EQ(calls, 1);
  Delivery d = pull_one("q");
  EXPECT_EQ(calls, 1);  // an ordinary pull does not notify
  ASSERT_TRUE(bus_->nack(d, Millis(0)));
  EXPECT_EQ(calls, 2);
  d = pull_one("q");
  clock_.advance(kLease);
  EXPECT_EQ(pull_one("q").deliveries, 3);  // the expiry, found by this pull, notifies
  EXPECT_EQ(calls, 3);
  int replaced = 0;
  bus_->on_ready("q", [&] { ++replaced; });  // one callback per queue: replaces
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(replaced, 1);
  bus_->on_ready("q", nullptr);  // clears
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  EXPECT_EQ(replaced, 1);
}

TEST_F(BusTest, CallbacksRunOutsideTheLockAndMayUseTheBus) {
  std::size_t seen_ready = 0;
  bus_->on_ready("q", [&] { seen_ready = bus_->stats("q")->ready; });
  ASSERT_TRUE(bus_->enqueue("q", "", nullptr));
  EXPECT_EQ(seen_ready, 1U);
  int inner = 0;
  ASSERT_TRUE(bus_->subscribe(
      "outer", [&](const Message&) { EXPECT_TRUE(bus_->publish("inner", nullptr)); }));
  ASSERT_TRUE(bus_->subscribe("inner", [&](const Message&) { ++inner; }));
  ASSERT_TRUE(bus_->publish("outer", nullptr));
  EXPECT_EQ(inner, 1);
}

// ---- Concurrency (meaningful under TSan) ----

TEST_F(BusTest, ConcurrentProducersAndConsumersAckEveryMessageExactlyOnce) {
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 10000;
  constexpr int kTotal = kProducers * kPerProducer;
  std::vector<std::atomic<int>> acks(kTotal);
  std::atomic<int> acked{0};
  std::atomic<int> notified{0};
  bus_->on_ready("work", [&] { notified.fetch_add(1, std::memory_order_relaxed); });
  std::vector<std::thread> threads;
  threads.reserve(kProducers + 2);
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        const int n = p * kPerProducer + i;
        ASSERT_TRUE(bus_->enqueue("work", "m" + std::to_string(n), json::value(n)));
      }
    });
  }
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&] {
      while (acked.load() < kTotal) {
        auto got = bus_->pull("work", 64, kLease);
        ASSERT_TRUE(got);
        if (got->empty()) {
          std::this_thread::yield();
          continue;
        }
        for (const Delivery& d : *got) {
          EXPECT_EQ(d.deliveries, 1);
          ASSERT_TRUE(bus_->ack(d));
          acks[static_cast<std::size_t>(d.payload.as_int64())].fetch_add(1);
          acked.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  for (int n = 0; n < kTotal; ++n) {
    ASSERT_EQ(acks[static_cast<std::size_t>(n)].load(), 1) << "message " << n;
  }
  EXPECT_EQ(notified.load(), kTotal);
  const QueueStats stats = stats_of("work");
  EXPECT_EQ(stats.ready + stats.leased + stats.dead, 0U);
}

TEST_F(BusTest, ConcurrentPublishSubscribeAndUnsubscribe) {
  std::atomic<int> delivered{0};
  auto kept = bus_->subscribe("events.>", [&](const Message&) { delivered.fetch_add(1); });
  ASSERT_TRUE(kept);
  std::vector<std::thread> threads;
  threads.reserve(3);
  for (int p = 0; p < 2; ++p) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        ASSERT_TRUE(bus_->publish("events.e" + std::to_string(i), json::value(i)));
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 2000; ++i) {
      auto sub = bus_->subscribe("events.*", [](const Message&) {});
      ASSERT_TRUE(sub);
      bus_->unsubscribe(*sub);
    }
  });
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(delivered.load(), 4000);
}

// ---- Key-value ----

TEST_F(BusTest, KvCreateIsCreateIfAbsent) {
  ASSERT_TRUE(bus_->kv_bucket("owners", Millis(0)));
  ASSERT_TRUE(bus_->kv_bucket("owners", Millis(0)));  // the same declaration again: a no-op
  EXPECT_EQ(bus_->kv_get("owners", "run_1").error().code, Code::kNotFound);
  auto r1 = bus_->kv_create("owners", "run_1", "node-a");
  ASSERT_TRUE(r1);
  EXPECT_GT(*r1, 0U);
  auto again = bus_->kv_create("owners", "run_1", "node-b");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Code::kAlreadyExists);
  auto got = bus_->kv_get("owners", "run_1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value, "node-a");
  EXPECT_EQ(got->revision, *r1);
  // Revisions grow across the keys of a bucket.
  auto r2 = bus_->kv_create("owners", "run_2", "node-b");
  ASSERT_TRUE(r2);
  EXPECT_GT(*r2, *r1);
}

TEST_F(BusTest, KvUpdateIsCompareAndSet) {
  ASSERT_TRUE(bus_->kv_bucket("owners", Millis(0)));
  const uint64_t r1 = *bus_->kv_create("owners", "k", "v1");
  auto r2 = bus_->kv_update("owners", "k", "v2", r1);
  ASSERT_TRUE(r2);
  EXPECT_GT(*r2, r1);
  auto stale = bus_->kv_update("owners", "k", "v3", r1);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Code::kFailedPrecondition);
  EXPECT_EQ(bus_->kv_get("owners", "k")->value, "v2");
  EXPECT_EQ(bus_->kv_update("owners", "absent", "v", 0).error().code, Code::kFailedPrecondition);
  EXPECT_EQ(bus_->kv_update("owners", "absent", "v", *r2).error().code, Code::kFailedPrecondition);
  auto r3 = bus_->kv_put("owners", "k", "v4");  // unconditional
  ASSERT_TRUE(r3);
  EXPECT_GT(*r3, *r2);
  EXPECT_EQ(bus_->kv_get("owners", "k")->revision, *r3);
  EXPECT_TRUE(bus_->kv_put("owners", "new", "x"));
}

TEST_F(BusTest, KvEntriesExpireTtlAfterTheirLastWrite) {
  ASSERT_TRUE(bus_->kv_bucket("leases", Millis(1000)));
  const uint64_t r1 = *bus_->kv_create("leases", "run_1", "a");
  clock_.advance(Millis(600));
  auto r2 = bus_->kv_update("leases", "run_1", "a", r1);  // renews the ttl
  ASSERT_TRUE(r2);
  clock_.advance(Millis(600));  // 1200 ms after the create, 600 after the update
  ASSERT_TRUE(bus_->kv_get("leases", "run_1"));
  clock_.advance(Millis(400));  // exactly ttl after the last write
  EXPECT_EQ(bus_->kv_get("leases", "run_1").error().code, Code::kNotFound);
  EXPECT_EQ(bus_->kv_update("leases", "run_1", "a", *r2).error().code, Code::kFailedPrecondition);
  auto r3 = bus_->kv_create("leases", "run_1", "b");  // absent again: creatable
  ASSERT_TRUE(r3);
  EXPECT_GT(*r3, *r2);
  EXPECT_EQ(bus_->kv_get("leases", "run_1")->value, "b");
  // A bucket without a ttl keeps its entries.
  ASSERT_TRUE(bus_->kv_bucket("flags", Millis(0)));
  ASSERT_TRUE(bus_->kv_put("flags", "frozen", "1"));
  clock_.advance(limits::kDurationMax);
  EXPECT_TRUE(bus_->kv_get("flags", "frozen"));
}

TEST_F(BusTest, KvDeleteMakesTheKeyAbsent) {
  ASSERT_TRUE(bus_->kv_bucket("owners", Millis(0)));
  const uint64_t r1 = *bus_->kv_create("owners", "k", "v");
  ASSERT_TRUE(bus_->kv_delete("owners", "k"));
  EXPECT_EQ(bus_->kv_get("owners", "k").error().code, Code::kNotFound);
  EXPECT_EQ(bus_->kv_update("owners", "k", "v", r1).error().code, Code::kFailedPrecondition);
  ASSERT_TRUE(bus_->kv_delete("owners", "k"));  // absent: a no-op
  auto r2 = bus_->kv_create("owners", "k", "w");
  ASSERT_TRUE(r2);
  EXPECT_GT(*r2, r1);
}

TEST_F(BusTest, KvRejectsBadNamesAndUndeclaredBuckets) {
  EXPECT_EQ(bus_->kv_bucket("", Millis(0)).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->kv_bucket("a.b", Millis(0)).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->kv_bucket("b", Millis(-1)).error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->kv_get("nope", "k").error().code, Code::kFailedPrecondition);
  ASSERT_TRUE(bus_->kv_bucket("b", Millis(1000)));
  EXPECT_EQ(bus_->kv_bucket("b", Millis(2000)).error().code, Code::kFailedPrecondition);
  for (const char* key : {"", ".a", "a.", "a..b", "a b", "a*", "a>", "a/b"}) {
    EXPECT_EQ(bus_->kv_put("b", key, "v").error().code, Code::kInvalidArgument) << key;
  }
  EXPECT_TRUE(bus_->kv_put("b", "run.r-1_x=2", "v"));
  EXPECT_EQ(bus_->kv_put("b", std::string(2000, 'k'), "v").error().code, Code::kInvalidArgument);
  EXPECT_EQ(bus_->kv_put("b", "k", std::string(1 << 20, 'v')).error().code, Code::kInvalidArgument);
  EXPECT_TRUE(bus_->health());
}

}  // namespace
}  // namespace venture::bus
