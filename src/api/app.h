// api-internal: the application half. Routes (one table: dispatch, roles, metrics names and the
// OpenAPI document all come from it), auth, rate limits and the handlers of SPEC §3.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/api.h"
#include "api/http.h"
#include "base/base.h"
#include "engine/engine.h"
#include "storage/storage.h"
#include "workflow/workflow.h"

namespace venture::api {

// Roles of SPEC §3, as a bit set so a route names who may call it.
enum Role : unsigned {
  kAdmin = 1U << 0,
  kOperator = 1U << 1,
  kApprover = 1U << 2,
  kViewer = 1U << 3,
  kAgent = 1U << 4,
};
inline constexpr unsigned kNoAuth = 0;
inline constexpr unsigned kReaders = kAdmin | kOperator | kApprover | kViewer;
[[nodiscard]] Result<Role> parse_role(std::string_view name);
std::string_view role_name(Role role);

struct Principal {
  std::string token_id;
  std::string name;
  Role role = kViewer;
};

// An error answer: status, title and the problems of a validation failure.
struct Problem {
  int status = 400;
  std::string detail;
  workflow::Problems errors;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string type;  // the problem type's slug; "" = the status's ("rate-limited")
};
HttpResponse problem_response(const Problem& p);
// Maps an engine/store error to the status only api may choose: kInvalidArgument 422,
// kNotFound 404, kFailedPrecondition/kAlreadyExists 409, kPermissionDenied 403,
// kUnauthenticated 401, kResourceExhausted 429, kUnavailable/kDeadlineExceeded 503, else 500.
Problem problem_from(const Error& e, workflow::Problems errors = {});
HttpResponse json_response(int status, const json::value& body);

// Tokens: secrets are shown once and stored as BLAKE2b hashes; lookups go through a cache that
// this process keeps in step with its own creates and revokes and, in a cluster, with every other
// API process's: a `token.*` event on the bus marks the cache stale (reloaded by the next lookup),
// and a secret the cache does not know is looked up in the store once.
class Tokens {
 public:
  Tokens(storage::Store& store, bus::Bus& bus, base::Clock& clock, base::Random& random);
  ~Tokens();
  [[nodiscard]] Status load();
  // Subscribes to token.* events (creates and revokes by other processes).
  [[nodiscard]] Status watch();
  // Writes <data_dir>/admin.token (0600) with a new admin token when there is none.
  [[nodiscard]] Status ensure_admin(const std::string& data_dir);
  std::optional<Principal> authenticate(std::string_view secret);
  struct Created {
    storage::TokenRow row;
    std::string secret;
  };
  [[nodiscard]] Result<Created> create(const std::string& name, Role role, const std::string& by);
  [[nodiscard]] Status revoke(const std::string& id, const std::string& by);
  [[nodiscard]] Result<std::vector<storage::TokenRow>> list();

 private:
  storage::Store& store_;
  bus::Bus& bus_;
  base::Clock& clock_;
  base::Random& random_;
  std::mutex mu_;
  std::unordered_map<std::string, Principal> by_hash_;
  std::atomic<bool> stale_{false};
  uint64_t subscription_ = 0;
};

// Rate limits on run submission: token buckets per (token, tier), capacity = the tier's runs per
// minute, refilled continuously (RateLimits; 0 per minute = unlimited, disabled = always allowed).
// Two implementations with the same semantics: RateLimiter (this process's buckets, the default)
// and RedisRateLimiter (buckets in Redis shared by every API process). Thread-safe.
class Limiter {
 public:
  virtual ~Limiter() = default;
  // nullopt when allowed (and one taken); else the seconds until one is available (>= 1, for
  // Retry-After). kUnavailable when the buckets cannot be reached and the policy is closed.
  [[nodiscard]] virtual Result<std::optional<int64_t>> acquire(const std::string& token_id,
                                                               int agent_nodes) = 0;
  // The state of the limiter's outside dependency for /health; nullopt when it has none.
  virtual std::optional<Status> health() = 0;
};

// The limiter /v1/runs uses: RedisRateLimiter when options.redis_url is set, else RateLimiter.
// kInvalidArgument for a malformed redis_url. Does not wait for Redis: an unreachable one is
// logged and reported by /health.
[[nodiscard]] Result<std::unique_ptr<Limiter>> new_limiter(const ApiOptions& options,
                                                           base::Clock& clock);

// The answer to a run submission the limiter refuses: 429 with Retry-After, or 503 with
// Retry-After: 1 (type rate-limiter-unavailable) when it could not decide; nullopt when allowed.
std::optional<Problem> check_rate_limit(Limiter& limiter, const std::string& token_id,
                                        int agent_nodes);

// This process's buckets. Memory is bounded by limits::kRateLimitBucketsMax.
class RateLimiter final : public Limiter {
 public:
  RateLimiter(RateLimits limits, base::Clock& clock) : limits_(limits), clock_(clock) {}
  // As acquire, which never fails here.
  std::optional<int64_t> take(const std::string& token_id, int agent_nodes);
  Result<std::optional<int64_t>> acquire(const std::string& token_id, int agent_nodes) override {
    return take(token_id, agent_nodes);
  }
  std::optional<Status> health() override { return std::nullopt; }
  static std::string_view tier_name(int agent_nodes);

 private:
  struct Bucket {
    double tokens = 0;
    Time at{};
  };
  RateLimits limits_;
  base::Clock& clock_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

namespace redis {
class Client;
}  // namespace redis

// Buckets shared by every API process through Redis: one hash `venture:rl:<token_id>:<tier>`
// {tokens, at_ms} with a PEXPIRE, updated by one atomic Lua script per take on Redis's own clock
// (TIME), so processes with skewed clocks agree. Each call waits at most limits::kRedisTimeout;
// after a failure the next call reconnects. While Redis cannot be reached, `on_error` decides:
// kClosed -> kUnavailable, kOpen -> allowed; either way the cause is logged (a warning at most
// once per 10 s), not told to the client.
class RedisRateLimiter final : public Limiter {
 public:
  RedisRateLimiter(RateLimits limits, RedisUrl url, RedisFailure on_error, base::Clock& clock);
  ~RedisRateLimiter() override;
  Result<std::optional<int64_t>> acquire(const std::string& token_id, int agent_nodes) override;
  // PING: kOk, or kUnavailable naming Redis and why.
  std::optional<Status> health() override;

 private:
  [[nodiscard]] Result<int64_t> run_script(const std::string& key, int capacity);

  RateLimits limits_;
  RedisFailure on_error_;
  base::Clock& clock_;
  std::unique_ptr<redis::Client> client_;
  std::atomic<int64_t> warned_at_ms_;  // the last "Redis is down" warning (unix ms)
};

class App;
using HandlerFn = Outcome (App::*)(const HttpRequest&, const Principal&,
                                   const std::vector<std::string>&);
// A handler that may answer later through `reply` (from another thread), see handle_async.
using AsyncHandlerFn = void (App::*)(const HttpRequest&, const Principal&, Reply&);

struct Route {
  std::string method;
  std::string pattern;  // "/v1/runs/{id}/events"
  unsigned roles;       // kNoAuth: no token needed
  HandlerFn handler;
  std::string summary;          // for OpenAPI
  std::string request_schema;   // "" = no body; else a component name
  std::string response_schema;  // component name of the success body
  int success_status = 200;
  bool streams = false;                 // also answers SSE / WebSocket
  AsyncHandlerFn async = nullptr;       // what handle_async calls instead of `handler`, when set
  std::vector<std::string> parts = {};  // `pattern` split at '/', made once by App's constructor
};

struct AppDeps {
  storage::Store& store;
  bus::Bus& bus;
  engine::Engine& engine;
  base::Clock& clock;
  base::Random& random;
  Metrics& metrics;
};

class App final : public Application {
 public:
  App(AppDeps deps, const ApiOptions& options);
  [[nodiscard]] Status start();  // loads the tokens
  // Creates the admin token on first start (after the listener is bound, so a failed start
  // leaves nothing behind).
  [[nodiscard]] Status ensure_admin();
  Outcome handle(const HttpRequest& request) override;
  // As handle, but a run start answers from the engine's commit callback: no thread waits.
  void handle_async(const HttpRequest& request, Reply reply) override;
  void set_ready(bool ready) { ready_ = ready; }
  const std::vector<Route>& routes() const { return routes_; }
  // The OpenAPI 3.1 document of routes().
  json::object openapi() const;

 private:
  // Meta.
  Outcome livez(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome readyz(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome health(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome metrics(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome openapi_doc(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  // Workflows and tags.
  Outcome register_workflow(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome list_workflows(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome get_workflow(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome list_versions(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome move_tag(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  // Runs.
  Outcome start_run(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  void start_run_async(const HttpRequest&, const Principal&, Reply& reply);
  // The checks and the engine request of a run start; an early answer (a problem) when refused.
  std::optional<Outcome> prepare_start(const HttpRequest&, const Principal&,
                                       engine::StartRequest& req);
  Outcome list_runs(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome get_run(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome run_events(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome run_ws(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome all_events(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome all_events_ws(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome cancel_run(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome pause_run(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome resume_run(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome replay_run(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  // Patches.
  Outcome propose_patch(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome list_patches(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome get_patch(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome approve_patch(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome reject_patch(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  // Approvals and approval links.
  Outcome list_approvals(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome get_approval(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome decide_approval(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome link_page(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome link_decide(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  std::optional<std::pair<ApprovalLinks::Claim, storage::ApprovalRow>> open_link(
      const std::string& token, Outcome& failed);
  // Control, tokens, audit.
  Outcome get_control(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome freeze(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome unfreeze(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome create_token(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome list_tokens(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome revoke_token(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome audit_verify(const HttpRequest&, const Principal&, const std::vector<std::string>&);
  Outcome audit_run(const HttpRequest&, const Principal&, const std::vector<std::string>&);

  Outcome run_command(const HttpRequest&, const std::string& run, std::string_view verb);
  Outcome decide_patch(const HttpRequest&, const Principal&, const std::string& id, bool approve);
  // Matches the route, authenticates and checks the role: the route, or nullptr with `early`
  // (404, 405, 401, 403) filled.
  const Route* find_route(const HttpRequest& request, std::vector<std::string>& params,
                          Principal& principal, Outcome& early);
  Result<Outcome> events_stream(const HttpRequest& r, const std::string& run, bool websocket);
  json::object control_state();
  int agent_nodes_of(const std::string& ref);

  AppDeps deps_;
  ApiOptions options_;
  Tokens tokens_;
  std::unique_ptr<Limiter> limiter_;  // made by start()
  std::vector<Route> routes_;
  std::atomic<bool> ready_{false};
  std::mutex agents_mu_;
  std::unordered_map<std::string, std::pair<int, Time>> agents_by_ref_;  // ref -> agent nodes
  Time started_{};
};

// Helpers shared by the handler files.
// Appends events the API itself records (tags, tokens) and publishes them for live streams, as
// the engine does with its own.
[[nodiscard]] Status append_and_publish(storage::Store& store, bus::Bus& bus, storage::Batch batch);
// Parses a JSON object body; a Problem (400) for bad JSON or a non-object.
[[nodiscard]] Result<json::object> parse_body(const HttpRequest& r, Problem& problem);
// ?limit= in [1, kListLimitMax] (default `fallback`); a Problem (400) otherwise.
std::optional<std::size_t> parse_limit(const HttpRequest& r, std::size_t fallback, Problem& p);
json::value time_or_null(const std::optional<Time>& t);
Outcome respond(int status, const json::value& body);
Outcome respond(const Problem& p);

}  // namespace venture::api
