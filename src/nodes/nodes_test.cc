// Goal: the built-in executors and the worker pool do what nodes/README.md says, including on bad
// tasks. Method: executors called directly; the pool driven with run_once() over the in-memory bus
// and a manual clock, reading what it put on the engine's result queue.
#include "nodes/nodes.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <thread>

#include "bus/bus.h"
#include "engine/engine.h"

namespace venture::nodes {
namespace {

Outcome execute(const Registry& r, const std::string& type, json::value config,
                json::value context = nullptr) {
  engine::Dispatch d;
  d.run = "run_1";
  d.node = "n";
  d.type = type;
  d.config = std::move(config);
  d.context = std::move(context);
  Outcome out;
  bool called = false;
  r.find(type)->execute(d, [&](Outcome o) {
    out = std::move(o);
    called = true;
  });
  EXPECT_TRUE(called);
  return out;
}

TEST(Builtins, NoopFailTransform) {
  Registry r;
  register_builtins(r);
  EXPECT_EQ(r.types(), (std::vector<std::string>{"fail", "noop", "transform"}));
  EXPECT_EQ(r.find("sleep"), nullptr);  // carried out by the engine as a durable timer
  EXPECT_EQ(r.find("nope"), nullptr);

  EXPECT_EQ(execute(r, "noop", nullptr).output, nullptr);
  EXPECT_EQ(execute(r, "noop", json::object{{"output", json::array{1, 2}}}).output,
            (json::array{1, 2}));

  Outcome f = execute(r, "fail", json::object{{"code", "teapot"}, {"retryable", false}});
  EXPECT_FALSE(f.ok);
  EXPECT_EQ(f.error_code, "teapot");
  EXPECT_FALSE(f.retryable);
  EXPECT_FALSE(f.error_message.empty());
  Outcome fd = execute(r, "fail", "not an object");
  EXPECT_EQ(fd.error_code, "failed");
  EXPECT_TRUE(fd.retryable);

  const json::value ctx = json::object{{"inputs", json::object{{"n", 20}}}};
  EXPECT_EQ(execute(r, "transform", json::object{{"expr", ".inputs.n + 1"}}, ctx).output, 21);
  EXPECT_EQ(execute(r, "transform", json::object{{"expr", "${{ .inputs.n * 2 }}"}}, ctx).output,
            40);
  Outcome bad = execute(r, "transform", json::object{{"expr", ".inputs.n | | x"}}, ctx);
  EXPECT_EQ(bad.error_code, "expression_error");
  EXPECT_FALSE(bad.retryable);
  Outcome runtime =
      execute(r, "transform", json::object{{"expr", ".inputs.n | error(\"no\")"}}, ctx);
  EXPECT_EQ(runtime.error_code, "expression_error");
  EXPECT_EQ(execute(r, "transform", json::object{}, ctx).error_code, "invalid_config");
}

TEST(Builtins, ATypeHasOneExecutor) {
  Registry r;
  register_builtins(r);
  Executor* noop = r.find("noop");
  Status again = r.add("noop", nullptr);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Code::kAlreadyExists);
  EXPECT_EQ(r.find("noop"), noop);  // unchanged
}

TEST(WorkerPool, ExecutesTasksAndReportsResultsWithTheirIdentity) {
  base::ManualClock clock(from_unix_ms(1795428000000));
  auto bus = bus::new_memory_bus(clock);
  Registry registry;
  register_builtins(registry);
  WorkerPool pool(*bus, registry, clock, WorkerOptions{});

  engine::Dispatch ok;
  ok.run = "run_1";
  ok.node = "a";
  ok.type = "noop";
  ok.iteration = 2;
  ok.attempt = 3;
  ok.config = json::object{{"output", "x"}};
  ASSERT_TRUE(
      bus->enqueue(engine::task_queue("noop"), engine::attempt_key(ok), engine::encode_task(ok)));
  engine::Dispatch item = ok;
  item.node = "b";
  item.type = "fail";
  item.index = 4;
  item.config = json::object{{"code", "nope"}};
  ASSERT_TRUE(bus->enqueue(engine::task_queue("fail"), engine::attempt_key(item),
                           engine::encode_task(item)));
  ASSERT_TRUE(bus->enqueue(engine::task_queue("noop"), "junk", json::value("not a task")));

  EXPECT_EQ(pool.run_once(), 3u);
  EXPECT_EQ(pool.executed(), 2);
  auto results = bus->pull(engine::kResultsQueue, 10, Millis(1000)).value();
  ASSERT_EQ(results.size(), 2u);
  std::map<std::string, engine::TaskResult> by_node;
  for (const auto& d : results) {
    auto r = engine::decode_result(d.payload).value();
    by_node[r.node] = r;
  }
  EXPECT_TRUE(by_node["a"].ok);
  EXPECT_EQ(by_node["a"].output, "x");
  EXPECT_EQ(by_node["a"].iteration, 2);
  EXPECT_EQ(by_node["a"].attempt, 3);
  EXPECT_FALSE(by_node["b"].ok);
  EXPECT_EQ(by_node["b"].error_code, "nope");
  EXPECT_EQ(by_node["b"].index, 4);
  EXPECT_EQ(by_node["b"].iteration, 0);
  // Every task was acked, including the undecodable one.
  for (const char* q : {"noop", "fail"}) {
    auto st = bus->stats(engine::task_queue(q)).value();
    EXPECT_EQ(st.ready + st.leased, 0u) << q;
  }
  EXPECT_EQ(pool.run_once(), 0u);
}

// An executor that completes later: it keeps `done` until the test completes it, from another
// thread.
class Later final : public Executor {
 public:
  void execute(const engine::Dispatch& task, std::function<void(Outcome)> done) override {
    std::lock_guard lock(mu_);
    held_.emplace_back(task.node, std::move(done));
  }
  std::size_t held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  // Completes the oldest held task with `o` on a new thread and waits for that thread.
  void complete_one(Outcome o) {
    std::function<void(Outcome)> done;
    {
      std::lock_guard lock(mu_);
      done = std::move(held_.front().second);
      held_.erase(held_.begin());
    }
    std::thread([&] { done(std::move(o)); }).join();
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<std::string, std::function<void(Outcome)>>> held_;
};

struct AsyncPool {
  base::ManualClock clock{from_unix_ms(1795428000000)};
  std::unique_ptr<bus::Bus> bus = bus::new_memory_bus(clock);
  Later* later = nullptr;
  Registry registry;
  std::unique_ptr<WorkerPool> pool;

  explicit AsyncPool(WorkerOptions o) {
    auto executor = std::make_unique<Later>();
    later = executor.get();
    EXPECT_TRUE(registry.add("later", std::move(executor)));
    pool = std::make_unique<WorkerPool>(*bus, registry, clock, o);
  }
  void enqueue(const std::string& node) {
    engine::Dispatch d;
    d.run = "run_1";
    d.node = node;
    d.type = "later";
    ASSERT_TRUE(bus->enqueue(engine::task_queue("later"), engine::attempt_key(d),
                             engine::encode_task(d)));
  }
  bus::QueueStats tasks() { return bus->stats(engine::task_queue("later")).value(); }
  bus::QueueStats results() { return bus->stats(engine::kResultsQueue).value(); }
};

TEST(WorkerPool, AsyncExecutorsReportFromTheCompletingThread) {
  AsyncPool p(WorkerOptions{});
  p.enqueue("a");
  p.enqueue("b");
  EXPECT_EQ(p.pool->run_once(), 2u);
  EXPECT_EQ(p.later->held(), 2u);
  EXPECT_EQ(p.pool->in_flight(), 2u);
  EXPECT_EQ(p.results().ready, 0u);  // nothing reported before done
  EXPECT_EQ(p.tasks().leased, 2u);
  Outcome slow = Outcome::failure("http_status", "503", true);
  slow.retry_after = Millis(1500);
  p.later->complete_one(Outcome::success("A"));
  p.later->complete_one(std::move(slow));
  EXPECT_EQ(p.pool->executed(), 2);
  EXPECT_EQ(p.pool->in_flight(), 0u);
  EXPECT_EQ(p.tasks().ready + p.tasks().leased, 0u);  // both acked
  auto results = p.bus->pull(engine::kResultsQueue, 10, Millis(1000)).value();
  ASSERT_EQ(results.size(), 2u);
  std::map<std::string, engine::TaskResult> by_node;
  for (const auto& d : results) {
    auto r = engine::decode_result(d.payload).value();
    by_node[r.node] = r;
  }
  EXPECT_TRUE(by_node["a"].ok);
  EXPECT_EQ(by_node["a"].output, "A");
  EXPECT_EQ(by_node["a"].retry_after_ms, 0);
  EXPECT_FALSE(by_node["b"].ok);
  EXPECT_EQ(by_node["b"].retry_after_ms, 1500);  // Outcome::retry_after reaches the engine
}

TEST(WorkerPool, TasksInHandAreBounded) {
  WorkerOptions o;
  o.max_in_flight = 3;
  o.drain = Millis(0);  // tasks are still in hand at the end
  AsyncPool p(o);
  for (const char* n : {"a", "b", "c", "d", "e"}) p.enqueue(n);
  EXPECT_EQ(p.pool->run_once(), 3u);
  EXPECT_EQ(p.pool->run_once(), 0u);  // full: no pull
  EXPECT_EQ(p.tasks().ready, 2u);
  p.later->complete_one(Outcome::success(nullptr));
  EXPECT_EQ(p.pool->run_once(), 1u);
  EXPECT_EQ(p.pool->in_flight(), 3u);
  EXPECT_EQ(p.tasks().ready, 1u);
}

TEST(WorkerPool, LeasesOfTasksInHandAreExtended) {
  WorkerOptions o;
  o.lease = Millis(30000);
  AsyncPool p(o);
  p.enqueue("a");
  EXPECT_EQ(p.pool->run_once(), 1u);
  // Past half the lease, run_once heartbeats; the task then outlives its first lease.
  p.clock.advance(Millis(20000));
  EXPECT_EQ(p.pool->run_once(), 0u);
  p.clock.advance(Millis(20000));  // 40 s after the pull: the first lease is over
  EXPECT_TRUE(p.bus->pull(engine::task_queue("later"), 10, Millis(1000)).value().empty());
  EXPECT_EQ(p.pool->run_once(), 0u);
  p.clock.advance(Millis(20000));
  p.later->complete_one(Outcome::success(nullptr));
  EXPECT_EQ(p.pool->executed(), 1);
  EXPECT_EQ(p.tasks().ready + p.tasks().leased, 0u);  // the ack found its lease
}

TEST(WorkerPool, StopAbandonsTasksInHandForRedelivery) {
  WorkerOptions o;
  o.drain = Millis(0);
  AsyncPool p(o);
  p.enqueue("a");
  EXPECT_EQ(p.pool->run_once(), 1u);
  p.pool->stop();
  p.later->complete_one(Outcome::success("late"));  // after stop: dropped
  EXPECT_EQ(p.pool->executed(), 0);
  EXPECT_EQ(p.results().ready, 0u);
  EXPECT_EQ(p.tasks().leased, 1u);
  p.clock.advance(o.lease + Millis(1));
  auto again = p.bus->pull(engine::task_queue("later"), 10, Millis(1000)).value();
  ASSERT_EQ(again.size(), 1u);  // redelivered: at-least-once
  EXPECT_EQ(again[0].deliveries, 2);
}

TEST(WorkerPool, ThreadsRunAsyncTasks) {
  AsyncPool p(WorkerOptions{});
  p.pool->start();
  p.enqueue("a");
  while (p.later->held() == 0) {
    std::this_thread::yield();
  }
  p.later->complete_one(Outcome::success("threaded"));
  p.pool->stop();
  EXPECT_EQ(p.pool->executed(), 1);
}

TEST(TaskProtocol, DecodingRejectsIncompleteMessages) {
  EXPECT_FALSE(engine::decode_task(json::value(1)));
  EXPECT_FALSE(engine::decode_task(json::object{{"run", "r"}, {"node", "n"}}));
  EXPECT_FALSE(engine::decode_result(json::object{{"run", "r"}, {"node", "n"}, {"attempt", 1}}));
  EXPECT_FALSE(engine::decode_result(
      json::object{{"run", "r"}, {"node", "n"}, {"attempt", 1}, {"ok", false}}));
  auto r =
      engine::decode_result(json::object{{"run", "r"},
                                         {"node", "n"},
                                         {"attempt", 1},
                                         {"ok", false},
                                         {"error", json::object{{"code", "c"}, {"message", "m"}}}});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->retryable);  // retryable unless the worker says otherwise
}

}  // namespace
}  // namespace venture::nodes
