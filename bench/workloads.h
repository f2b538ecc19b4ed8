// Benchmark workloads A, B, C and L of ARCHITECTURE.md §8, on the embedded store (SQLite with
// fsync on every commit, or memory) and the in-process bus, or clustered (PostgreSQL + NATS); runs
// are submitted in-process or through the HTTP API (`--via http`: the real server on a loopback
// port, keep-alive clients). Used by `venture bench WORKLOAD`. Benchmarks measure speed; they
// assert nothing.
#pragma once

#include <ostream>
#include <string>

#include "base/base.h"

namespace venture::bench {

struct BenchOptions {
  std::string workload = "A";    // A | B | C | L
  int runs = 0;                  // 0 = the workload's default (A/B 1000, C 20000, L 100)
  int steps = 10;                // K for A and L
  int width = 8;                 // W for B
  std::string store = "sqlite";  // sqlite | memory | postgres://… (cluster)
  std::string bus = "memory";    // memory | nats://… (cluster)
  std::string data_dir;          // "" = a fresh temporary directory, removed afterwards
  int warmup = -1;               // -1 = 20 (5 for L)
  int workers = 1;               // worker threads
  bool fsync = true;
  std::string via = "inprocess";  // inprocess | http (runs submitted through POST /v1/runs)
  int connections = 16;           // HTTP client connections (keep-alive) for --via http
};

struct BenchResult {
  std::string workload;
  int runs = 0;
  int64_t steps = 0;
  int succeeded = 0;
  int failed = 0;
  double wall_s = 0;
  double steps_per_s = 0;
  double runs_per_s = 0;
  double submit_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double per_step_p50_ms = 0;
  int64_t appends = 0;  // group commits during the measured phase
  int64_t events = 0;
  std::string store;  // sqlite | memory | postgres (never the URL: it may hold a password)
  std::string bus;    // memory | nats
  std::string via;
  double submit_p50_ms = 0;  // --via http: POST /v1/runs round trip
  double submit_p99_ms = 0;
};

[[nodiscard]] Result<BenchResult> run_workload(const BenchOptions& options);
json::object to_json(const BenchResult& r);
// One JSON object on one line, with decimals printed plainly ("12.345", not "1.2345E1").
std::string to_json_line(const BenchResult& r);
void print_table(const BenchResult& r, std::ostream& out);

}  // namespace venture::bench
