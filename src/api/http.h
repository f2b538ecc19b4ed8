// api-internal: the seam between the HTTP transport (server.cc, stream.cc: Beast sessions, SSE,
// WebSocket, TLS, bounds) and the application (app.cc and handlers_*.cc: routes, auth, rate
// limits, problem+json). The transport knows sockets and framing; the application knows the
// endpoints of SPEC §3. Only files of src/api include this header.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/base.h"

namespace venture::api {

// One decoded request. Names of headers are lower case; path and query are percent-decoded.
struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as received, e.g. "/v1/runs?status=running"
  std::string path;    // decoded, without the query, e.g. "/v1/runs/run_01…"
  std::vector<std::pair<std::string, std::string>> query;    // decoded, in order
  std::vector<std::pair<std::string, std::string>> headers;  // names lower case, in order
  std::string body;
  std::string remote;              // peer address, "127.0.0.1"
  bool websocket_upgrade = false;  // a valid WebSocket upgrade request

  // First value, or nullopt.
  std::optional<std::string> header(std::string_view lower_name) const;
  std::optional<std::string> param(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Retry-After, …)
  std::string body;
};

// "a=1&b=x+y%21" -> {{"a","1"},{"b","x y!"}} (application/x-www-form-urlencoded, also query
// strings). kInvalidArgument for malformed percent-encoding.
[[nodiscard]] Result<std::vector<std::pair<std::string, std::string>>> parse_form(
    std::string_view text);

// A live event stream the transport serves after the application accepted the request (auth,
// the run exists, parameters valid). Events come from the store (backlog) and from the bus (live),
// in seq order, without gaps or duplicates, starting after `after_seq`.
struct StreamSpec {
  int64_t after_seq = 0;
  std::string run;                  // only this run's events ("" = every run and global events)
  std::string type_prefix;          // only events whose type starts with this ("" = all)
  bool end_after_terminal = false;  // close after `run`'s run.succeeded|failed|cancelled
};

// What the application answers: a plain response, or a stream to serve on this connection.
struct Outcome {
  HttpResponse response;                // when neither stream is set
  std::optional<StreamSpec> sse;        // answer 200 text/event-stream and stream
  std::optional<StreamSpec> websocket;  // accept the upgrade and stream text frames
  std::string route;                    // route template for metrics: "/v1/runs/{id}"
};

// Completes a request that handle_async answers later: called exactly once, from any thread.
using Reply = std::function<void(Outcome)>;

// The application. Thread-safe. handle() may block (store reads, engine commits), so the
// transport calls it on a blocking pool, never on an io thread. It never throws.
class Application {
 public:
  virtual ~Application() = default;
  virtual Outcome handle(const HttpRequest& request) = 0;
  // What the transport calls (on the blocking pool). An application may return before the
  // answer exists and call `reply` later from another thread (a run start answered from its
  // group commit), so that no pool thread waits. The default answers at once with handle().
  virtual void handle_async(const HttpRequest& request, Reply reply) { reply(handle(request)); }
};

}  // namespace venture::api
