// JSON-lines logging: one object per line {"ts","level","msg",...fields}. One logger for the whole
// process, thread-safe; the sink and level are set by main. Part of base.
#pragma once

#include <boost/json.hpp>
#include <cstdio>
#include <string_view>

namespace venture::base {

enum class LogLevel { kDebug = 0, kInfo, kWarn, kError, kOff };

// Sets the minimum level and the sink (default: stderr, kInfo). Not for use concurrently with
// logging; call from main before starting components.
void set_log_level(LogLevel level);
void set_log_sink(std::FILE* sink);
LogLevel current_log_level();

// Writes {"ts":..., "level":..., "msg": msg, ...fields} as one line.
void log(LogLevel level, std::string_view msg, const boost::json::object& fields = {});

inline void log_info(std::string_view m, const boost::json::object& f = {}) {
  log(LogLevel::kInfo, m, f);
}
inline void log_warn(std::string_view m, const boost::json::object& f = {}) {
  log(LogLevel::kWarn, m, f);
}
inline void log_error(std::string_view m, const boost::json::object& f = {}) {
  log(LogLevel::kError, m, f);
}
inline void log_debug(std::string_view m, const boost::json::object& f = {}) {
  log(LogLevel::kDebug, m, f);
}

}  // namespace venture::base
