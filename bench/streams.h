// The live-stream benchmark (`venture bench streams`): many SSE or WebSocket subscribers on one
// running server while workload A runs, measuring each delivery's latency (arrival time minus the
// event's own `time`). A lean client: one thread, non-blocking sockets on epoll, so that 10,000
// subscribers cost the client little next to the server on the same machine. It drives a server
// started elsewhere (bench/streams.sh starts one) and asserts nothing beyond every subscriber
// getting its events; the scenario is described in docs/streams.md.
#pragma once

#include <cstdint>
#include <string>

#include "base/base.h"

namespace venture::bench {

struct StreamBenchOptions {
  uint16_t port = 0;         // the server on 127.0.0.1
  std::string token;         // an operator or admin token (the bench freezes and unfreezes)
  int runs = 1000;           // runs of workload A
  int steps = 10;            // no-op steps per run (a chain)
  int per_run = 10;          // subscribers to each run's stream
  int global = 10;           // subscribers to /v1/events?type=run. (all runs' run.* events)
  std::string kind = "sse";  // sse | ws
  int server_pid = 0;        // > 0: report the server's CPU time during the measured phase
};

// Runs the scenario and returns one JSON line: subscribers, deliveries (live and backlog),
// latency p50/p99/max (ms) of live deliveries, wall time, client and server CPU seconds
// (server_cpu_s -1 without server_pid).
[[nodiscard]] Result<std::string> run_streams(const StreamBenchOptions& options);

}  // namespace venture::bench
