// nodes: what a node type does. The Executor interface, the Registry of executors by type, the
// built-in executors (noop, fail, transform; `sleep` is carried out by the engine as a durable
// timer and so has no executor), and the WorkerPool that takes tasks from the bus, runs them and
// reports results.
//
// Threading: a WorkerPool owns `threads` worker threads; each pulls from the task queues of the
// registered types with a lease, runs the executor on that thread, heartbeats nothing (built-ins
// finish well within the lease), enqueues the result on engine::kResultsQueue and then acks the
// task (at-least-once: a crash between the two redelivers the task; the engine ignores the
// duplicate result). Executors must be thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/base.h"
#include "bus/bus.h"
#include "engine/engine.h"

namespace venture::nodes {

// What an attempt produced.
struct Outcome {
  bool ok = true;
  json::value output;
  std::string error_code;
  std::string error_message;
  bool retryable = true;

  static Outcome success(json::value output);
  static Outcome failure(std::string code, std::string message, bool retryable);
};

class Executor {
 public:
  virtual ~Executor() = default;
  // Runs one attempt and calls `done` exactly once (inline or later, from any thread).
  virtual void execute(const engine::Dispatch& task, std::function<void(Outcome)> done) = 0;
};

class Registry {
 public:
  // kAlreadyExists if the type has an executor already (nothing changes).
  [[nodiscard]] Status add(std::string type, std::unique_ptr<Executor> executor);
  Executor* find(std::string_view type) const;
  std::vector<std::string> types() const;

 private:
  std::map<std::string, std::unique_ptr<Executor>, std::less<>> executors_;
};

// noop, fail, transform.
void register_builtins(Registry& registry);

struct WorkerOptions {
  std::size_t threads = 1;
  std::size_t batch = 64;  // tasks pulled at once
  Millis lease{30000};
};

class WorkerPool {
 public:
  WorkerPool(bus::Bus& bus, const Registry& registry, base::Clock& clock, WorkerOptions options);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void start();
  void stop();  // finishes the tasks in hand, joins the threads
  int64_t executed() const { return executed_.load(); }

  // Runs every ready task once on the calling thread (deterministic drivers); returns the count.
  std::size_t run_once();

 private:
  void loop();
  std::size_t drain(const std::string& queue, const std::string& type);

  bus::Bus& bus_;
  const Registry& registry_;
  base::Clock& clock_;
  WorkerOptions options_;
  std::vector<std::string> types_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  uint64_t ready_generation_ = 0;
  std::atomic<int64_t> executed_{0};
  std::vector<std::jthread> threads_;
};

}  // namespace venture::nodes
