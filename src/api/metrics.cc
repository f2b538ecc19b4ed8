// The process's metrics on prometheus-cpp core: HTTP requests, streams, build info, collectors
// added by the application, and process metrics read from /proc/self at each scrape.
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/server.h"

namespace venture::api {
namespace {

// Fields of /proc/self/stat after the command name (field 3 is index 0).
struct ProcStat {
  double utime_ticks = 0;
  double stime_ticks = 0;
  double start_ticks = 0;  // since boot
  double vsize_bytes = 0;
  double rss_pages = 0;
  bool ok = false;
};

ProcStat read_proc_stat() {
  ProcStat out;
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name is in parentheses and may hold spaces; fields follow the last ')'.
  const std::size_t close = text.rfind(')');
  if (close == std::string::npos) {
    return out;
  }
  std::istringstream fields(text.substr(close + 1));
  std::vector<std::string> f;
  for (std::string field; fields >> field;) {
    f.push_back(field);
  }
  // Field numbers of proc(5): utime 14, stime 15, starttime 22, vsize 23, rss 24.
  if (f.size() < 22) {
    return out;
  }
  auto at = [&f](std::size_t field_number) { return std::stod(f[field_number - 3]); };
  try {
    out.utime_ticks = at(14);
    out.stime_ticks = at(15);
    out.start_ticks = at(22);
    out.vsize_bytes = at(23);
    out.rss_pages = at(24);
    out.ok = true;
  } catch (const std::exception&) {
    out.ok = false;
  }
  return out;
}

double boot_time_seconds() {
  std::ifstream in("/proc/stat");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("btime ")) {
      return std::strtod(line.c_str() + 6, nullptr);
    }
  }
  return 0;
}

double open_fds() {
  std::error_code ec;
  double n = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++n;
  }
  return n;
}

double max_fds() {
  std::ifstream in("/proc/self/limits");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("Max open files")) {
      std::istringstream fields(line.substr(14));
      std::string soft;
      fields >> soft;
      return soft == "unlimited" ? -1 : std::strtod(soft.c_str(), nullptr);
    }
  }
  return 0;
}

std::string process_metrics() {
  std::string out;
  const ProcStat stat = read_proc_stat();
  const long ticks_per_second = sysconf(_SC_CLK_TCK);
  const long page_bytes = sysconf(_SC_PAGESIZE);
  if (stat.ok && ticks_per_second > 0 && page_bytes > 0) {
    const auto ticks = static_cast<double>(ticks_per_second);
    append_metric(out, "process_cpu_seconds_total", "counter",
                  "Total user and system CPU time spent in seconds.",
                  (stat.utime_ticks + stat.stime_ticks) / ticks);
    append_metric(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                  stat.rss_pages * static_cast<double>(page_bytes));
    append_metric(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                  stat.vsize_bytes);
    append_metric(out, "process_start_time_seconds", "gauge",
                  "Start time of the process since unix epoch in seconds.",
                  boot_time_seconds() + stat.start_ticks / ticks);
  }
  append_metric(out, "process_open_fds", "gauge", "Number of open file descriptors.", open_fds());
  append_metric(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                max_fds());
  return out;
}

}  // namespace

void append_metric(std::string& out, const char* name, const char* type, const char* help,
                   double value) {
  char number[64];
  std::snprintf(number, sizeof number, "%.17g", value);
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
  out += name;
  out += ' ';
  out += number;
  out += '\n';
}

struct Metrics::Impl {
  Impl()
      : registry(std::make_shared<prometheus::Registry>()),
        requests(prometheus::BuildCounter()
                     .Name("venture_http_requests_total")
                     .Help("HTTP requests answered, by method, route template and status.")
                     .Register(*registry)),
        durations(prometheus::BuildHistogram()
                      .Name("venture_http_request_duration_seconds")
                      .Help("Time from a request's first byte to its answer, by route template.")
                      .Register(*registry)),
        subscribers(prometheus::BuildGauge()
                        .Name("venture_stream_subscribers")
                        .Help("Open event streams, by kind.")
                        .Register(*registry)),
        events_sent(prometheus::BuildCounter()
                        .Name("venture_stream_events_sent_total")
                        .Help("Events written to SSE and WebSocket subscribers.")
                        .Register(*registry)
                        .Add({})),
        sse(subscribers.Add({{"kind", "sse"}})),
        websocket(subscribers.Add({{"kind", "websocket"}})) {
    prometheus::BuildGauge()
        .Name("venture_build_info")
        .Help("Always 1; the labels name the build.")
        .Register(*registry)
        .Add({{"version", std::string(kVersion)}})
        .Set(1);
  }

  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Histogram>& durations;
  prometheus::Family<prometheus::Gauge>& subscribers;
  prometheus::Counter& events_sent;
  prometheus::Gauge& sse;
  prometheus::Gauge& websocket;

  std::mutex mu;
  std::vector<std::function<std::string()>> collectors;

  // The series of each (method, route, status) seen, so a request does not build and hash label
  // maps. Bounded: methods and routes are fixed sets, statuses are three digits.
  struct Series {
    prometheus::Counter* requests = nullptr;
    prometheus::Histogram* duration = nullptr;
  };
  std::mutex series_mu;
  std::unordered_map<std::string, Series> series;
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {}
Metrics::~Metrics() = default;

prometheus::Registry& Metrics::registry() { return *impl_->registry; }

void Metrics::add_collector(std::function<std::string()> collector) {
  std::lock_guard lock(impl_->mu);
  impl_->collectors.push_back(std::move(collector));
}

void Metrics::observe_request(const std::string& method, const std::string& route, int status,
                              double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  std::string key = method;
  key += ' ';
  key += route;
  key += ' ';
  key += std::to_string(status);
  Impl::Series series;
  {
    std::lock_guard lock(impl_->series_mu);
    auto it = impl_->series.find(key);
    if (it == impl_->series.end()) {
      Impl::Series made;
      made.requests = &impl_->requests.Add(
          {{"method", method}, {"route", route}, {"status", std::to_string(status)}});
      made.duration = &impl_->durations.Add({{"route", route}}, kBuckets);
      it = impl_->series.emplace(std::move(key), made).first;
    }
    series = it->second;
  }
  series.requests->Increment();
  series.duration->Observe(seconds);
}

void Metrics::stream_opened(bool websocket) {
  (websocket ? impl_->websocket : impl_->sse).Increment();
}

void Metrics::stream_closed(bool websocket) {
  (websocket ? impl_->websocket : impl_->sse).Decrement();
}

void Metrics::stream_events(int64_t n) { impl_->events_sent.Increment(static_cast<double>(n)); }

std::string Metrics::render() {
  std::string out = prometheus::TextSerializer().Serialize(impl_->registry->Collect());
  std::vector<std::function<std::string()>> collectors;
  {
    std::lock_guard lock(impl_->mu);
    collectors = impl_->collectors;
  }
  for (const auto& collector : collectors) {
    out += collector();
  }
  out += process_metrics();
  return out;
}

}  // namespace venture::api
