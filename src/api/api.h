// api: Venture as a service. The HTTP API of SPEC §3 on Boost.Beast: REST endpoints, SSE and
// WebSocket event streams, bearer-token auth with roles, per-token rate limits tiered by
// workflow complexity, RFC 9457 problem+json errors, /health, /metrics and /openapi.json.
//
// Key types: ApiOptions (what `venture serve` configures), Api (the running service). The
// transport (Beast sessions, streams, TLS) and the application (routes, auth, handlers) are
// separate halves joined by api/http.h; only this module knows HTTP status codes.
//
// Threading: Api owns an io_context on ServerOptions::io_threads threads and a blocking pool
// where handlers run (they call the engine, which blocks until a commit). Every method of Api is
// called from the thread that owns it (main).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "api/server.h"
#include "base/base.h"
#include "bus/bus.h"
#include "engine/engine.h"
#include "storage/storage.h"

namespace venture::api {

// Runs per minute per token, by the number of agent nodes in the workflow (the seed platform's
// tiers): none -> simple, 1–2 -> standard, more -> heavy. 0 = unlimited for that tier.
struct RateLimits {
  bool enabled = true;
  int simple_per_minute = 100;
  int standard_per_minute = 20;
  int heavy_per_minute = 5;
};

// A Redis server, for the rate limits shared by every API process of a cluster.
struct RedisUrl {
  std::string host;
  uint16_t port = 6379;
  int db = 0;
  std::string user;      // "" = the default user
  std::string password;  // "" = no AUTH
};
// "redis://[[user]:password@]host[:port][/db]" (user and password percent-encoded, an IPv6 host
// in brackets; port 6379 and db 0 by default) -> parts. kInvalidArgument with a plain message;
// rediss:// (TLS) and unix sockets are not supported.
[[nodiscard]] Result<RedisUrl> parse_redis_url(std::string_view text);

// What a run submission gets while the shared limiter cannot ask Redis (docs/api.md): kClosed
// refuses it with 503 + Retry-After: 1; kOpen admits it unlimited and logs a warning (at most
// one per 10 s).
enum class RedisFailure { kClosed, kOpen };
[[nodiscard]] Result<RedisFailure> parse_redis_failure(std::string_view text);  // closed|open

// Which patch proposals wait for review (SPEC §3 patches): by default those from `agent` tokens.
enum class PatchReview { kAgents, kAll, kNone };
[[nodiscard]] Result<PatchReview> parse_patch_review(std::string_view text);  // agents|all|none

// Signed approval links (SPEC §3 approvals, docs/approvals.md) for people who are not at a
// terminal: one per user named in an approval's `approvers.users`, bound to the approval, the
// user and the content it shows (title, description, show), expiring with the approval's timeout
// (else after limits::kApprovalLinkTtl), deciding at most once. The token is
// base64url(payload JSON) "." base64url(BLAKE2b MAC). Immutable after construction; thread-safe.
class ApprovalLinks {
 public:
  // `key`: the MAC key (derive_key of the server's signing key); `public_url`: the base people
  // reach the server at ("https://venture.example.com").
  ApprovalLinks(std::array<uint8_t, 32> key, std::string public_url, base::Clock& clock,
                base::Random& random);
  static std::array<uint8_t, 32> derive_key(const base::SigningKey& signing_key);
  // "b2:…" of the canonical JSON of {title, description, show} of an approval request.
  static std::string content_hash(const json::value& request);

  // [{user, url, expires}] for the data of an approval.requested event.
  json::array make(const std::string& run, const json::object& requested);

  struct Claim {
    std::string approval;
    std::string user;
    std::string content;  // content_hash at the time of the request
    std::string nonce;
    Time expires{};
  };
  // kNotFound for anything that is not a link this server signed (malformed, forged, altered).
  [[nodiscard]] Result<Claim> verify(std::string_view token) const;
  // The value the confirmation page carries into its POST (proves the page was shown).
  std::string confirmation(const Claim& claim) const;

 private:
  std::string mac(std::string_view message) const;
  std::array<uint8_t, 32> key_;
  std::string public_url_;
  base::Clock& clock_;
  base::Random& random_;
};

struct ApiOptions {
  ServerOptions server;
  ApprovalLinks* links = nullptr;  // approval links (null: the link pages answer 404)
  std::string data_dir;            // where admin.token is written on first start
  RateLimits rate_limits;
  // "" = token buckets in this process; else the redis:// URL (parse_redis_url) of the buckets
  // every API process shares, and what to do while Redis cannot be reached.
  std::string redis_url;
  RedisFailure redis_failure = RedisFailure::kClosed;
  PatchReview patch_review = PatchReview::kAgents;
  // false (`--services` without api): only /livez, /readyz, /health and /metrics answer; every
  // other route is a 404 naming the services this process runs.
  bool serve_api = true;
  std::string services = "all";
  // Extra entries for /health's dependencies (e.g. the store's state), called per request.
  std::function<json::object()> health_dependencies;
};

// What `venture serve` runs with. Every key has one name in venture.toml (dotted: `tls.cert`),
// one environment variable (VENTURE_ + upper case, dots as underscores: VENTURE_TLS_CERT) and, for
// the common ones, one flag. Precedence: flags > environment > venture.toml > defaults.
struct ServeConfig {
  std::string data_dir = "./venture-data";
  std::string listen = "127.0.0.1:8000";
  std::string store = "sqlite";  // the embedded store in data_dir, or postgres://…
  std::string bus = "memory";    // in-process, or nats://…
  std::string redis;             // redis://… for the shared rate limiter (cluster mode)
  std::string services = "all";
  std::vector<std::string> egress_allow;  // used by the http node (#4)
  std::string public_url;                 // default: http://<listen>
  std::string tls_cert;
  std::string tls_key;
  int io_threads = 2;
  int blocking_threads = 64;
  int workers = 4;
  RateLimits rate_limits;
  std::string redis_failure = "closed";  // rate_limits.on_redis_error: closed | open
  std::string patch_review = "agents";
  std::string log_level = "info";
};

// One configuration key, for the table in docs and for the completion of `--set`.
struct ConfigKey {
  std::string_view name;  // "rate_limits.simple"
  std::string_view help;
};
const std::vector<ConfigKey>& config_keys();

// Layers the configuration. `file` is the venture.toml to read ("" = none); `env` reads the
// environment; `flags` maps key names to the values given on the command line. Errors name the
// source and place: "venture.toml:3:1: unknown key 'listn' (did you mean 'listen'?)",
// "VENTURE_WORKERS: expected an integer".
[[nodiscard]] Result<ServeConfig> load_serve_config(
    const std::string& file, const std::function<const char*(const char*)>& env,
    const std::vector<std::pair<std::string, std::string>>& flags);

// The store a configuration names: "sqlite" (data_dir/venture.db), "memory" (tests), or a
// "postgres://…" / "postgresql://…" URL (cluster mode). kInvalidArgument for anything else.
[[nodiscard]] Result<std::unique_ptr<storage::Store>> open_store(const std::string& spec,
                                                                 const std::string& data_dir,
                                                                 storage::Options options,
                                                                 base::Clock& clock,
                                                                 base::Random& random);
bool is_cluster_store(std::string_view spec);
// The bus: "memory" (in-process) or a "nats://…" URL (JetStream). kInvalidArgument otherwise.
[[nodiscard]] Result<std::unique_ptr<bus::Bus>> open_bus(const std::string& spec,
                                                         base::Clock& clock);

// "host:port" -> parts; kInvalidArgument with a plain message.
[[nodiscard]] Result<std::pair<std::string, uint16_t>> parse_listen(std::string_view text);

class App;

class Api {
 public:
  Api(storage::Store& store, bus::Bus& bus, engine::Engine& engine, base::Clock& clock,
      base::Random& random, ApiOptions options);
  ~Api();
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  // Creates the admin token on first start (an empty token table): writes the secret to
  // <data_dir>/admin.token (mode 0600). Then binds and serves. kUnavailable with a plain message
  // when the address is in use.
  [[nodiscard]] Status start();
  uint16_t port() const;
  void stop_accepting();
  void stop();
  // Marks the service ready for /readyz (after recovery) or not (during shutdown).
  void set_ready(bool ready);
  Metrics& metrics();

 private:
  ApiOptions options_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<App> app_;
  std::unique_ptr<Server> server_;
};

}  // namespace venture::api
