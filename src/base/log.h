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
void SetLogLevel(LogLevel level);
void SetLogSink(std::FILE* sink);
LogLevel CurrentLogLevel();

// Writes {"ts":..., "level":..., "msg": msg, ...fields} as one line.
void Log(LogLevel level, std::string_view msg, const boost::json::object& fields = {});

inline void LogInfo(std::string_view m, const boost::json::object& f = {}) {
  Log(LogLevel::kInfo, m, f);
}
inline void LogWarn(std::string_view m, const boost::json::object& f = {}) {
  Log(LogLevel::kWarn, m, f);
}
inline void LogError(std::string_view m, const boost::json::object& f = {}) {
  Log(LogLevel::kError, m, f);
}
inline void LogDebug(std::string_view m, const boost::json::object& f = {}) {
  Log(LogLevel::kDebug, m, f);
}

}  // namespace venture::base
