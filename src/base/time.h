// Time, clocks, randomness, ids and durations. Time and randomness are always injected
// (Clock&, Random&) so that the engine core, the simulation and tests are deterministic.
// Only base/ may read the real clock or a real random source (the tidy test enforces it).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "base/result.h"

namespace venture {

using Millis = std::chrono::milliseconds;
// Wall-clock time with millisecond resolution (UTC, Unix epoch).
using Time = std::chrono::time_point<std::chrono::system_clock, Millis>;

inline int64_t to_unix_ms(Time t) { return t.time_since_epoch().count(); }
inline Time from_unix_ms(int64_t ms) { return Time(Millis(ms)); }

// RFC 3339 with milliseconds, always UTC: "2026-11-23T10:00:00.123Z".
std::string format_time(Time t);
[[nodiscard]] Result<Time> parse_time(std::string_view text);

// "250ms", "30s", "5m", "2h", "1d" (one integer and one unit; 0 allowed). Bounded by
// limits::kDurationMax so arithmetic never overflows.
[[nodiscard]] Result<Millis> parse_duration(std::string_view text);
// The shortest exact spelling: 90000ms -> "90s", 1500 -> "1500ms".
std::string format_duration(Millis d);

namespace base {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Time now() = 0;
  // Monotonic nanoseconds for measuring intervals (benchmarks, latencies); not comparable
  // across processes.
  virtual int64_t monotonic_ns() = 0;
};

// The real clock: system_clock for Now, steady_clock for MonotonicNs.
class RealClock final : public Clock {
 public:
  Time now() override;
  int64_t monotonic_ns() override;
};

// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Time start) : now_(start) {}
  Time now() override;
  int64_t monotonic_ns() override;
  void advance(Millis d);
  void set(Time t);

 private:
  std::mutex mu_;
  Time now_;
};

class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t next() = 0;
  // Uniform in [0, n); n > 0.
  uint64_t uniform(uint64_t n);
  // Uniform in [0, 1).
  double uniform_double();
};

// splitmix64-seeded xoshiro256**: deterministic for a seed. Thread-safe.
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed);
  uint64_t next() override;

 private:
  std::mutex mu_;
  uint64_t s_[4];
};

// Seeded once from the OS entropy source.
class RealRandom final : public Random {
 public:
  RealRandom();
  uint64_t next() override;

 private:
  SeededRandom inner_;
};

// "run_0192f3c4-5b6a-7c8d-9e0f-123456789abc": a UUIDv7 (RFC 9562, time-ordered) with a type
// prefix. prefix is one of "run", "evt", "apr", "pat", "tok", ... without the underscore.
std::string new_id(std::string_view prefix, Clock& clock, Random& random);

// True if text is prefix + "_" + a UUID in canonical lowercase form.
bool is_id(std::string_view text, std::string_view prefix);

}  // namespace base
}  // namespace venture
