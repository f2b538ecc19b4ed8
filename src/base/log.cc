#include <atomic>
#include <mutex>
#include <thread>

#include "base/base.h"

namespace venture::base {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::FILE* g_sink = stderr;
std::mutex g_mu;

std::string_view level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      return "off";
  }
  return "info";
}

}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
void set_log_sink(std::FILE* sink) { g_sink = sink; }
LogLevel current_log_level() { return g_level; }

void log(LogLevel level, std::string_view msg, const json::object& fields) {
  if (level < g_level.load(std::memory_order_relaxed) || level == LogLevel::kOff) return;
  RealClock clock;
  json::object o;
  o["ts"] = format_time(clock.now());
  o["level"] = level_name(level);
  o["msg"] = msg;
  for (const auto& kv : fields) o[kv.key()] = kv.value();
  std::string line = json::serialize(o);
  if (line.size() > limits::kLogLineBytesMax) {
    line = json::serialize(json::object{{"ts", o["ts"]},
                                        {"level", o["level"]},
                                        {"msg", std::string(msg.substr(0, 1024))},
                                        {"truncated", true}});
  }
  line += '\n';
  std::lock_guard lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), g_sink);
  std::fflush(g_sink);
}

}  // namespace venture::base
