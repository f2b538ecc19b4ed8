// api-internal: the HTTP/1.1 transport on Boost.Beast and the metrics registry. No Beast/Asio
// types appear here, so the application files compile without Beast.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "api/http.h"
#include "base/base.h"
#include "bus/bus.h"
#include "storage/storage.h"

namespace prometheus {
class Registry;
}

namespace venture::api {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0 = an ephemeral port (see Server::port)
  int io_threads = 2;
  int blocking_threads = 8;  // where Application::handle runs
  std::string tls_cert_file;  // both set = TLS on the listener (PEM)
  std::string tls_key_file;
  std::size_t body_bytes_max = limits::kHttpBodyBytesMax;
  std::size_t header_bytes_max = limits::kHttpHeaderBytesMax;
  Millis read_timeout = limits::kHttpReadTimeout;
  Millis idle_timeout = limits::kHttpIdleTimeout;
  Millis write_timeout = limits::kHttpWriteTimeout;
  std::size_t connections_max = limits::kHttpConnectionsMax;
  Millis stream_keepalive = limits::kStreamKeepalive;
};

// The process's metrics. Everything is registered up front; the transport counts requests and
// streams, the application and main add gauges through `registry()` or `add_collector`.
class Metrics {
 public:
  Metrics();
  ~Metrics();
  prometheus::Registry& registry();
  // A function called at each scrape that returns extra exposition text (already formatted,
  // `venture_` names), e.g. engine and store statistics.
  void add_collector(std::function<std::string()> collector);
  // Counts one finished request: venture_http_requests_total{method,route,status} and
  // venture_http_request_duration_seconds{route} (histogram).
  void observe_request(const std::string& method, const std::string& route, int status,
                       double seconds);
  void stream_opened(bool websocket);  // venture_stream_subscribers{kind} gauge
  void stream_closed(bool websocket);
  void stream_events(int64_t n);       // venture_stream_events_sent_total
  // The full Prometheus text exposition: registry + collectors + process metrics
  // (process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
  // process_open_fds, process_max_fds, process_start_time_seconds, venture_build_info).
  std::string render();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Appends one sample in the text exposition format (# HELP, # TYPE, name value): for collectors.
void append_metric(std::string& out, const char* name, const char* type, const char* help,
                   double value);

class Server {
 public:
  Server(ServerOptions options, Application& app, storage::Store& store, bus::Bus& bus,
         Metrics& metrics, base::Clock& clock);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens, then starts the io threads. kUnavailable with a plain message for an
  // address in use ("127.0.0.1:8000 is already in use") or a bad address; kInvalidArgument for
  // unreadable TLS files.
  [[nodiscard]] Status start();
  uint16_t port() const;  // the bound port (useful with port 0)
  // Graceful stop, step 1: close the listener; open connections finish their current request.
  void stop_accepting();
  // Step 2: end every stream and idle connection, wait (up to limits::kShutdownDrainMax) for
  // in-flight requests, join all threads. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Decodes one raw HTTP/1.1 request (bytes as received) the way the server does: Beast's parser
// with the options' header/body bounds, then path/query percent-decoding and header lowering.
// Errors are the problem the server would answer (kInvalidArgument: 400; kResourceExhausted: 413
// or 431). For the request-decoding fuzz target and its tests.
[[nodiscard]] Result<HttpRequest> decode_raw_request(std::string_view bytes,
                                                     const ServerOptions& options);

}  // namespace venture::api
