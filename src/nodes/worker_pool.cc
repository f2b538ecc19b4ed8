// WorkerPool: bus task queues -> executors -> engine result queue.
#include "nodes/nodes.h"

namespace venture::nodes {

WorkerPool::WorkerPool(bus::Bus& bus, const Registry& registry, base::Clock& clock,
                       WorkerOptions options)
    : bus_(bus), registry_(registry), clock_(clock), options_(options), types_(registry.types()) {}

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::start() {
  for (const std::string& type : types_) {
    bus_.on_ready(engine::task_queue(type), [this] {
      std::lock_guard lock(mu_);
      ++ready_generation_;
      wake_.notify_one();
    });
  }
  for (std::size_t i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] { loop(); });
  }
}

void WorkerPool::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    wake_.notify_all();
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  for (const std::string& type : types_) bus_.on_ready(engine::task_queue(type), nullptr);
}

std::size_t WorkerPool::drain(const std::string& queue, const std::string& type) {
  auto tasks = bus_.pull(queue, options_.batch, options_.lease);
  if (!tasks || tasks->empty()) return 0;
  Executor* executor = registry_.find(type);
  for (bus::Delivery& d : *tasks) {
    auto task = engine::decode_task(d.payload);
    if (!task) {
      base::log_warn("dropping an undecodable task", {{"error", task.error().to_string()}});
      (void)bus_.ack(d);
      continue;
    }
    engine::TaskResult result;
    result.run = task->run;
    result.node = task->node;
    result.index = task->index;
    result.iteration = task->index >= 0 ? 0 : task->iteration;
    result.attempt = task->attempt;
    bool finished = false;
    executor->execute(*task, [&](Outcome o) {
      finished = true;
      result.ok = o.ok;
      result.output = std::move(o.output);
      result.error_code = std::move(o.error_code);
      result.error_message = std::move(o.error_message);
      result.retryable = o.retryable;
    });
    // TODO(#4): asynchronous executors (http on a curl multi handle) complete later.
    VENTURE_CHECK_MSG(finished, "built-in executors complete inline");
    const std::string dedup = engine::attempt_key(*task);
    Status s = bus_.enqueue(engine::kResultsQueue, dedup, engine::encode_result(result));
    if (!s) {
      (void)bus_.nack(d, Millis(100));  // try again later; the result is recomputed
      continue;
    }
    (void)bus_.ack(d);
    executed_.fetch_add(1, std::memory_order_relaxed);
  }
  return tasks->size();
}

std::size_t WorkerPool::run_once() {
  std::size_t n = 0;
  for (const std::string& type : types_) n += drain(engine::task_queue(type), type);
  return n;
}

void WorkerPool::loop() {
  while (true) {
    uint64_t seen = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      seen = ready_generation_;
    }
    if (run_once() > 0) continue;
    std::unique_lock lock(mu_);
    Millis wait(1000);
    for (const std::string& type : types_) {
      if (auto t = bus_.next_wake(engine::task_queue(type))) {
        wait = std::min(wait, std::max(Millis(1), *t - clock_.now()));
      }
    }
    wake_.wait_for(lock, wait, [&] { return stopping_ || ready_generation_ != seen; });
  }
}

}  // namespace venture::nodes
