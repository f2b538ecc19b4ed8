// WorkerPool: bus task queues -> executors -> engine result queue.
#include "nodes/nodes.h"

namespace venture::nodes {

WorkerPool::WorkerPool(bus::Bus& bus, const Registry& registry, base::Clock& clock,
                       WorkerOptions options)
    : bus_(bus), registry_(registry), clock_(clock), options_(options), types_(registry.Types()) {}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Start() {
  for (const std::string& type : types_) {
    bus_.OnReady(engine::TaskQueue(type), [this] {
      std::lock_guard lock(mu_);
      ++ready_generation_;
      wake_.notify_one();
    });
  }
  for (std::size_t i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] { Loop(); });
  }
}

void WorkerPool::Stop() {
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
  for (const std::string& type : types_) bus_.OnReady(engine::TaskQueue(type), nullptr);
}

std::size_t WorkerPool::Drain(const std::string& queue, const std::string& type) {
  auto tasks = bus_.Pull(queue, options_.batch, options_.lease);
  if (!tasks || tasks->empty()) return 0;
  Executor* executor = registry_.Find(type);
  for (bus::Delivery& d : *tasks) {
    auto task = engine::DecodeTask(d.payload);
    if (!task) {
      base::LogWarn("dropping an undecodable task", {{"error", task.error().ToString()}});
      (void)bus_.Ack(d);
      continue;
    }
    engine::TaskResult result;
    result.run = task->run;
    result.node = task->node;
    result.index = task->index;
    result.iteration = task->index >= 0 ? 0 : task->iteration;
    result.attempt = task->attempt;
    bool finished = false;
    executor->Execute(*task, [&](Outcome o) {
      finished = true;
      result.ok = o.ok;
      result.output = std::move(o.output);
      result.error_code = std::move(o.error_code);
      result.error_message = std::move(o.error_message);
      result.retryable = o.retryable;
    });
    // TODO(#4): asynchronous executors (http on a curl multi handle) complete later.
    VENTURE_CHECK_MSG(finished, "built-in executors complete inline");
    const std::string dedup = engine::AttemptKey(*task);
    Status s = bus_.Enqueue(engine::kResultsQueue, dedup, engine::EncodeResult(result));
    if (!s) {
      (void)bus_.Nack(d, Millis(100));  // try again later; the result is recomputed
      continue;
    }
    (void)bus_.Ack(d);
    executed_.fetch_add(1, std::memory_order_relaxed);
  }
  return tasks->size();
}

std::size_t WorkerPool::RunOnce() {
  std::size_t n = 0;
  for (const std::string& type : types_) n += Drain(engine::TaskQueue(type), type);
  return n;
}

void WorkerPool::Loop() {
  while (true) {
    uint64_t seen = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      seen = ready_generation_;
    }
    if (RunOnce() > 0) continue;
    std::unique_lock lock(mu_);
    Millis wait(1000);
    for (const std::string& type : types_) {
      if (auto t = bus_.NextWake(engine::TaskQueue(type))) {
        wait = std::min(wait, std::max(Millis(1), *t - clock_.Now()));
      }
    }
    wake_.wait_for(lock, wait, [&] { return stopping_ || ready_generation_ != seen; });
  }
}

}  // namespace venture::nodes
