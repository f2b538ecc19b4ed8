// nodes: what a node type does. The Executor interface, the Registry of executors by type, the
// built-in executors (noop, fail, transform; `sleep` is carried out by the engine as a durable
// timer and so has no executor), the http executor (on egress::Client), and the WorkerPool that
// takes tasks from the bus, runs them and reports results.
//
// Threading: a WorkerPool owns `threads` worker threads; each pulls from the task queues of the
// registered types with a lease and starts the executor on that thread. An executor completes
// inline (the built-ins) or later from any thread (http, on the egress client's thread); whoever
// calls `done` enqueues the result on engine::kResultsQueue and then acks the task
// (at-least-once: a crash between the two redelivers the task; the engine ignores the duplicate
// result). The tasks in hand (pulled, not yet acked) are bounded by WorkerOptions::max_in_flight,
// and the worker threads heartbeat their leases while they wait, so a long request keeps its
// task. Executors must be thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/base.h"
#include "bus/bus.h"
#include "egress/egress.h"
#include "engine/engine.h"

namespace venture::nodes {

// What an attempt produced.
struct Outcome {
  bool ok = true;
  json::value output;
  std::string error_code;
  std::string error_message;
  bool retryable = true;
  // The remote side asked to wait this long before trying again (HTTP Retry-After); the engine's
  // backoff is never shorter (TaskResult::retry_after_ms, capped at limits::kRetryAfterMax).
  Millis retry_after{0};

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

// http (docs/http.md): one request through `client` per attempt, completing on the client's
// thread. `clock` dates an HTTP-date Retry-After when the response has no Date header. Both must
// outlive the registry's workers.
void register_http(Registry& registry, egress::Client& client, base::Clock& clock);

struct WorkerOptions {
  std::size_t threads = 1;
  std::size_t batch = 64;  // tasks pulled at once
  // Each pulled task is leased this long; the worker threads extend the lease of a task still in
  // hand (an http request) when half of it is left, so no request outlives its lease.
  Millis lease{30000};
  // Tasks in hand at once (pulled, not yet acked); pulls stop while the pool is full.
  std::size_t max_in_flight = limits::kWorkerInFlightDefault;
  // stop() waits this long for tasks still in hand, then abandons them: their results are
  // dropped and their leases left to expire, so the bus redelivers them (at-least-once).
  Millis drain = limits::kShutdownDrainMax;
  // The node types this pool takes tasks of (`--services workers:http,noop`); empty = every type
  // of the registry. Each must be registered (the constructor CHECKs; validate first).
  std::vector<std::string> types;
};

class WorkerPool {
 public:
  WorkerPool(bus::Bus& bus, const Registry& registry, base::Clock& clock, WorkerOptions options);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void start();
  // Stops pulling, joins the threads, waits up to options.drain for the tasks still in hand and
  // abandons the rest (a `done` called later does nothing). Idempotent.
  void stop();
  // Results reported (enqueued and acked) so far.
  int64_t executed() const;
  // Tasks pulled and not yet completed.
  std::size_t in_flight() const;

  // Starts every ready task once on the calling thread (deterministic drivers) and extends the
  // leases that are due (by the injected clock); returns the count of tasks started. Inline
  // executors (the built-ins) have reported their results when it returns.
  std::size_t run_once();

  // State shared with `done` callbacks, which may run after the pool is gone.
  struct Shared;

 private:
  void loop();
  std::size_t drain(const std::string& queue, const std::string& type);
  // Extends the leases of tasks in hand that are past half their lease.
  void heartbeat();

  bus::Bus& bus_;
  const Registry& registry_;
  base::Clock& clock_;
  WorkerOptions options_;
  std::vector<std::string> types_;
  std::shared_ptr<Shared> shared_;
  std::vector<std::jthread> threads_;
};

}  // namespace venture::nodes
