// WorkerPool: bus task queues -> executors -> engine result queue. An executor completes inline
// or later from any thread; whichever thread calls `done` reports the result and acks the task.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <unordered_map>

#include "nodes/nodes.h"

namespace venture::nodes {

struct WorkerPool::Shared {
  std::mutex mu;
  std::condition_variable wake;     // worker threads: tasks ready, room in hand, stop
  std::condition_variable settled;  // stop(): a task in hand completed
  bool stopping = false;
  bool abandoned = false;  // stop() gave up on the tasks still in hand
  uint64_t ready_generation = 0;
  std::size_t reserved = 0;    // slots taken by pulls under way
  std::size_t completing = 0;  // `done` calls inside the bus right now
  uint64_t next_id = 1;
  // The tasks in hand by id, without their payloads: what ack, nack and heartbeat need.
  std::unordered_map<uint64_t, bus::Delivery> in_hand;
  std::optional<Time> next_heartbeat;  // the earliest lease_until - lease/2 in hand
  std::atomic<int64_t> executed{0};
};

namespace {

using SharedPtr = std::shared_ptr<WorkerPool::Shared>;

// What `done` does: reports the result, then acks the task; nothing once the pool has abandoned
// the task (its lease expires and the bus redelivers it).
void complete(const SharedPtr& s, bus::Bus* bus, uint64_t id, const std::string& dedup,
              const std::string& reply, const engine::TaskResult& result) {
  bus::Delivery d;
  {
    std::lock_guard lock(s->mu);
    if (s->abandoned) return;
    auto it = s->in_hand.find(id);
    VENTURE_CHECK_MSG(it != s->in_hand.end(), "an executor called done twice");
    d = std::move(it->second);
    s->in_hand.erase(it);
    ++s->completing;
  }
  const std::string_view queue = reply.empty() ? engine::kResultsQueue : std::string_view(reply);
  if (Status st = bus->enqueue(queue, dedup, engine::encode_result(result)); st) {
    (void)bus->ack(d);
    s->executed.fetch_add(1, std::memory_order_relaxed);
  } else {
    (void)bus->nack(d, Millis(100));  // try again later; the result is recomputed
  }
  {
    std::lock_guard lock(s->mu);
    --s->completing;
    ++s->ready_generation;  // room for another pull
  }
  s->wake.notify_one();
  s->settled.notify_all();
}

}  // namespace

WorkerPool::WorkerPool(bus::Bus& bus, const Registry& registry, base::Clock& clock,
                       WorkerOptions options)
    : bus_(bus),
      registry_(registry),
      clock_(clock),
      options_(options),
      types_(options.types.empty() ? registry.types() : options.types),
      shared_(std::make_shared<Shared>()) {
  VENTURE_CHECK(options_.lease > Millis(0));
  for (const std::string& type : types_) {
    VENTURE_CHECK_MSG(registry.find(type) != nullptr, "worker type is not registered");
  }
  options_.max_in_flight = std::max<std::size_t>(1, options_.max_in_flight);
}

WorkerPool::~WorkerPool() { stop(); }

int64_t WorkerPool::executed() const { return shared_->executed.load(); }

std::size_t WorkerPool::in_flight() const {
  std::lock_guard lock(shared_->mu);
  return shared_->in_hand.size();
}

void WorkerPool::start() {
  for (const std::string& type : types_) {
    bus_.on_ready(engine::task_queue(type), [s = shared_] {
      {
        std::lock_guard lock(s->mu);
        ++s->ready_generation;
      }
      s->wake.notify_one();
    });
  }
  for (std::size_t i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] { loop(); });
  }
}

void WorkerPool::stop() {
  Shared& s = *shared_;
  {
    std::lock_guard lock(s.mu);
    if (s.stopping) return;
    s.stopping = true;
  }
  s.wake.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  for (const std::string& type : types_) bus_.on_ready(engine::task_queue(type), nullptr);
  std::unique_lock lock(s.mu);
  s.settled.wait_for(lock, options_.drain, [&s] { return s.in_hand.empty() && s.completing == 0; });
  if (!s.in_hand.empty()) {
    base::log_info("abandoning tasks in hand; the bus redelivers them",
                   {{"tasks", static_cast<int64_t>(s.in_hand.size())}});
  }
  s.abandoned = true;
  s.settled.wait(lock, [&s] { return s.completing == 0; });
}

std::size_t WorkerPool::drain(const std::string& queue, const std::string& type) {
  Shared& s = *shared_;
  std::size_t room = 0;
  {
    std::lock_guard lock(s.mu);
    const std::size_t held = s.in_hand.size() + s.reserved;
    room = held >= options_.max_in_flight ? 0
                                          : std::min(options_.batch, options_.max_in_flight - held);
    s.reserved += room;
  }
  if (room == 0) return 0;
  auto tasks = bus_.pull(queue, room, options_.lease);
  std::vector<std::pair<uint64_t, engine::Dispatch>> started;
  std::vector<std::pair<bus::Delivery, engine::Dispatch>> decoded;
  if (tasks) {
    for (bus::Delivery& d : *tasks) {
      auto task = engine::decode_task(d.payload);
      if (!task) {
        base::log_warn("dropping an undecodable task", {{"error", task.error().to_string()}});
        (void)bus_.ack(d);
        continue;
      }
      d.payload = nullptr;  // from here on only the lease matters
      decoded.emplace_back(std::move(d), std::move(*task));
    }
  }
  {
    std::lock_guard lock(s.mu);
    s.reserved -= room;
    for (auto& [d, task] : decoded) {
      const uint64_t id = s.next_id++;
      const Time beat = d.lease_until - options_.lease / 2;
      if (!s.next_heartbeat || beat < *s.next_heartbeat) s.next_heartbeat = beat;
      s.in_hand.emplace(id, std::move(d));
      started.emplace_back(id, std::move(task));
    }
  }
  if (!tasks || tasks->empty()) return 0;
  Executor* executor = registry_.find(type);
  for (auto& [id, task] : started) {
    engine::TaskResult result;
    result.run = task.run;
    result.node = task.node;
    result.index = task.index;
    result.iteration = task.index >= 0 ? 0 : task.iteration;
    result.attempt = task.attempt;
    executor->execute(task, [s = shared_, bus = &bus_, id = id, dedup = engine::attempt_key(task),
                             reply = task.reply, result](Outcome o) mutable {
      result.ok = o.ok;
      result.output = std::move(o.output);
      result.error_code = std::move(o.error_code);
      result.error_message = std::move(o.error_message);
      result.retryable = o.retryable;
      result.retry_after_ms = std::max<int64_t>(0, o.retry_after.count());
      complete(s, bus, id, dedup, reply, result);
    });
  }
  return tasks->size();
}

std::size_t WorkerPool::run_once() {
  std::size_t n = 0;
  for (const std::string& type : types_) n += drain(engine::task_queue(type), type);
  heartbeat();
  return n;
}

void WorkerPool::heartbeat() {
  Shared& s = *shared_;
  const Time now = clock_.now();
  const Millis half = options_.lease / 2;
  std::vector<std::pair<uint64_t, bus::Delivery>> due;
  {
    std::lock_guard lock(s.mu);
    if (!s.next_heartbeat || *s.next_heartbeat > now) return;
    s.next_heartbeat.reset();
    for (const auto& [id, d] : s.in_hand) {
      if (d.lease_until - half <= now) {
        due.emplace_back(id, d);
      } else if (!s.next_heartbeat || d.lease_until - half < *s.next_heartbeat) {
        s.next_heartbeat = d.lease_until - half;
      }
    }
  }
  for (auto& [id, d] : due) {
    // kNotFound when the task completed meanwhile (acked) or its lease was lost: nothing to do.
    if (!bus_.heartbeat(d, options_.lease)) continue;
    std::lock_guard lock(s.mu);
    auto it = s.in_hand.find(id);
    if (it == s.in_hand.end()) continue;
    it->second.lease_until = d.lease_until;
    const Time beat = d.lease_until - half;
    if (!s.next_heartbeat || beat < *s.next_heartbeat) s.next_heartbeat = beat;
  }
}

void WorkerPool::loop() {
  Shared& s = *shared_;
  while (true) {
    uint64_t seen = 0;
    bool full = false;
    {
      std::lock_guard lock(s.mu);
      if (s.stopping) return;
      seen = s.ready_generation;
    }
    if (run_once() > 0) continue;
    std::optional<Time> beat;
    {
      std::lock_guard lock(s.mu);
      full = s.in_hand.size() + s.reserved >= options_.max_in_flight;
      beat = s.next_heartbeat;
    }
    const Time now = clock_.now();
    Millis wait(1000);
    if (!full) {  // a full pool cannot pull: only a completion (or a heartbeat) matters
      for (const std::string& type : types_) {
        if (auto t = bus_.next_wake(engine::task_queue(type))) {
          wait = std::min(wait, std::max(Millis(1), *t - now));
        }
      }
    }
    if (beat) wait = std::min(wait, std::max(Millis(1), *beat - now));
    std::unique_lock lock(s.mu);
    s.wake.wait_for(lock, wait, [&] { return s.stopping || s.ready_generation != seen; });
  }
}

}  // namespace venture::nodes
