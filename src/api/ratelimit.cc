// Rate limits on run submission: the buckets of this process (RateLimiter), the buckets shared
// through Redis (RedisRateLimiter), redis:// URLs, and the problems a refusal answers with.
#include <openssl/evp.h>

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include "api/app.h"
#include "api/redis.h"

namespace venture::api {
namespace {

// Runs per minute of the tier of a workflow with `agent_nodes` agent nodes (0 = unlimited).
int per_minute(const RateLimits& limits, int agent_nodes) {
  if (agent_nodes == 0) return limits.simple_per_minute;
  if (agent_nodes <= 2) return limits.standard_per_minute;
  return limits.heavy_per_minute;
}

// A bucket refills at capacity per minute, so one untouched for this long is full.
constexpr Millis kFullAfter = std::chrono::minutes(1);

// One take from the bucket KEYS[1] of capacity ARGV[1] (runs per minute), refilled continuously.
// Returns 0 when a token was taken, else the whole seconds (>= 1) until one is available. The
// time is Redis's own (TIME), so API processes with skewed clocks agree; a clock that went back
// (a failover) refills nothing. The hash expires once it would be full again: a missing bucket
// is a full one. Numbers are Lua doubles; tokens are stored with 17 significant digits.
constexpr std::string_view kTakeScript = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local capacity = tonumber(ARGV[1])
local per_ms = capacity / 60000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at_ms')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
else
  tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.max(1, math.ceil((1 - tokens) / per_ms / 1000))
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at_ms',
           string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_ms) + 1000)
return wait
)lua";

// The SHA-1 of the script in hex, as EVALSHA names it.
std::string script_sha1() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned size = 0;
  VENTURE_CHECK(EVP_Digest(kTakeScript.data(), kTakeScript.size(), digest.data(), &size, EVP_sha1(),
                           nullptr) == 1);
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < size; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xFU]);
  }
  return out;
}

// While Redis is down, a warning is logged at most this often.
constexpr Millis kWarningEvery{10000};
constexpr int64_t kNeverWarned = std::numeric_limits<int64_t>::min();

// nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    unsigned value = 0;
    const char* begin = text.data() + i + 1;
    if (i + 2 >= text.size() || std::from_chars(begin, begin + 2, value, 16).ptr != begin + 2) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

// The URL with its user and password replaced, for messages that may be logged.
std::string redacted(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const auto host = scheme + 3;
  const auto at = url.substr(0, url.find('/', host)).rfind('@');
  if (at == std::string_view::npos || at < host) return std::string(url);
  return std::string(url.substr(0, host)) + "***" + std::string(url.substr(at));
}

}  // namespace

// ---- this process's buckets ----------------------------------------------------------------

std::string_view RateLimiter::tier_name(int agent_nodes) {
  if (agent_nodes == 0) return "simple";
  if (agent_nodes <= 2) return "standard";
  return "heavy";
}

std::optional<int64_t> RateLimiter::take(const std::string& token_id, int agent_nodes) {
  if (!limits_.enabled) return std::nullopt;
  const int limit = per_minute(limits_, agent_nodes);
  if (limit <= 0) return std::nullopt;
  const double capacity = limit;
  const double per_second = limit / 60.0;
  const Time now = clock_.now();
  std::lock_guard lock(mu_);
  if (buckets_.size() >= limits::kRateLimitBucketsMax) {
    // Full buckets carry no information; dropping them all is safe and bounds memory.
    std::erase_if(buckets_, [&](const auto& kv) { return now - kv.second.at >= kFullAfter; });
  }
  const std::string key = token_id + "/" + std::string(tier_name(agent_nodes));
  auto [it, fresh] = buckets_.try_emplace(key, Bucket{capacity, now});
  Bucket& b = it->second;
  if (!fresh) {
    const double seconds = std::chrono::duration<double>(now - b.at).count();
    b.tokens = std::min(capacity, b.tokens + std::max(0.0, seconds) * per_second);
    b.at = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return std::nullopt;
  }
  return static_cast<int64_t>(std::ceil((1.0 - b.tokens) / per_second));
}

// ---- buckets in Redis ------------------------------------------------------------------------

RedisRateLimiter::RedisRateLimiter(RateLimits limits, RedisUrl url, RedisFailure on_error,
                                   base::Clock& clock)
    : limits_(limits),
      on_error_(on_error),
      clock_(clock),
      client_(std::make_unique<redis::Client>(std::move(url), clock)),
      warned_at_ms_(kNeverWarned) {}

RedisRateLimiter::~RedisRateLimiter() = default;

Result<int64_t> RedisRateLimiter::run_script(const std::string& key, int capacity) {
  static const std::string kSha = script_sha1();
  const std::string cap = std::to_string(capacity);
  VENTURE_ASSIGN_OR_RETURN(redis::Reply reply, client_->command({"EVALSHA", kSha, "1", key, cap}));
  if (reply.is_error("NOSCRIPT")) {
    // The server lost its script cache (a restart, SCRIPT FLUSH, a failover): EVAL loads it.
    VENTURE_ASSIGN_OR_RETURN(reply,
                             client_->command({"EVAL", std::string(kTakeScript), "1", key, cap}));
  }
  if (reply.type != redis::Reply::Type::kInteger) {
    return unavailable_error("redis " + client_->address() + ": the rate limit script answered " +
                             (reply.is_error() ? reply.text : "a non-integer"));
  }
  return reply.integer;
}

Result<std::optional<int64_t>> RedisRateLimiter::acquire(const std::string& token_id,
                                                         int agent_nodes) {
  if (!limits_.enabled) return std::nullopt;
  const int limit = per_minute(limits_, agent_nodes);
  if (limit <= 0) return std::nullopt;
  const std::string key =
      "venture:rl:" + token_id + ":" + std::string(RateLimiter::tier_name(agent_nodes));
  auto wait = run_script(key, limit);
  if (wait) return *wait > 0 ? std::optional<int64_t>(*wait) : std::nullopt;
  // The cause (with Redis's address) goes to the log, at most once per kWarningEvery; the
  // client only learns that the limiter's Redis is unavailable.
  const int64_t now = to_unix_ms(clock_.now());
  int64_t last = warned_at_ms_.load();
  if ((last == kNeverWarned || now - last >= kWarningEvery.count()) &&
      warned_at_ms_.compare_exchange_strong(last, now)) {
    base::log_warn(on_error_ == RedisFailure::kClosed
                       ? "run submissions are refused (503): Redis for the rate limits cannot be "
                         "reached (rate_limits.on_redis_error = closed)"
                       : "rate limits are not enforced: Redis for the rate limits cannot be "
                         "reached (rate_limits.on_redis_error = open)",
                   {{"error", wait.error().message}});
  }
  if (on_error_ == RedisFailure::kOpen) return std::nullopt;
  return unavailable_error("the rate limiter cannot reach its Redis; retry shortly");
}

std::optional<Status> RedisRateLimiter::health() {
  auto reply = client_->command({"PING"});
  if (!reply) return Status(reply.error());
  if (reply->is_error()) {
    return Status(unavailable_error("redis " + client_->address() + ": " + reply->text));
  }
  return Status();
}

// ---- choosing and answering ----------------------------------------------------------------

Result<std::unique_ptr<Limiter>> new_limiter(const ApiOptions& options, base::Clock& clock) {
  if (options.redis_url.empty()) {
    return std::unique_ptr<Limiter>(std::make_unique<RateLimiter>(options.rate_limits, clock));
  }
  VENTURE_ASSIGN_OR_RETURN(RedisUrl url, parse_redis_url(options.redis_url));
  auto limiter = std::make_unique<RedisRateLimiter>(options.rate_limits, std::move(url),
                                                    options.redis_failure, clock);
  if (auto state = limiter->health(); state && !*state) {
    base::log_warn(
        "Redis for the shared rate limits cannot be reached yet",
        {{"error", state->error().message},
         {"on_redis_error", options.redis_failure == RedisFailure::kClosed ? "closed" : "open"}});
  }
  return std::unique_ptr<Limiter>(std::move(limiter));
}

std::optional<Problem> check_rate_limit(Limiter& limiter, const std::string& token_id,
                                        int agent_nodes) {
  auto wait = limiter.acquire(token_id, agent_nodes);
  if (wait && !*wait) return std::nullopt;
  Problem p;
  if (!wait) {
    // The server's dependency failed, not the client: 503, and a retry soon may succeed.
    p.status = 503;
    p.type = "rate-limiter-unavailable";
    p.detail = wait.error().message;
    p.headers.emplace_back("Retry-After", "1");
    return p;
  }
  p.status = 429;
  p.detail = "rate limit of the " + std::string(RateLimiter::tier_name(agent_nodes)) +
             " tier exceeded for this token; retry in " + std::to_string(**wait) + " s";
  p.headers.emplace_back("Retry-After", std::to_string(**wait));
  return p;
}

Result<RedisFailure> parse_redis_failure(std::string_view text) {
  if (text == "closed") return RedisFailure::kClosed;
  if (text == "open") return RedisFailure::kOpen;
  return invalid_argument_error("must be closed or open, not '" + std::string(text) + "'");
}

Result<RedisUrl> parse_redis_url(std::string_view text) {
  constexpr std::string_view kScheme = "redis://";
  const auto bad = [&](std::string_view why) {
    return invalid_argument_error("redis URL '" + redacted(text) + "': " + std::string(why) +
                                  " (expected redis://[[user]:password@]host[:port][/db])");
  };
  if (text.starts_with("rediss://")) return bad("TLS (rediss://) is not supported");
  if (!text.starts_with(kScheme)) return bad("the scheme must be redis://");
  std::string_view rest = text.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) return bad("no query or fragment");
  RedisUrl url;
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty()) {
      const auto [p, ec] = std::from_chars(db.data(), db.data() + db.size(), url.db);
      if (ec != std::errc() || p != db.data() + db.size() || url.db < 0) {
        return bad("the database must be a number (0, 1, ...)");
      }
    }
  }
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    auto user = percent_decode(userinfo.substr(0, colon));
    if (!user) return bad("the user has a bad percent-escape (%XX)");
    url.user = std::move(*user);
    if (colon != std::string_view::npos) {
      auto password = percent_decode(userinfo.substr(colon + 1));
      if (!password) return bad("the password has a bad percent-escape (%XX)");
      url.password = std::move(*password);
    }
    if (colon == std::string_view::npos) {
      // "redis://secret@host" is the common spelling of a password without a user.
      url.password = std::move(url.user);
      url.user.clear();
    }
  }
  std::string_view port;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("an IPv6 host needs a closing ]");
    url.host = std::string(rest.substr(1, close - 1));
    rest = rest.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return bad("junk after the IPv6 host");
    if (!rest.empty()) port = rest.substr(1);
  } else {
    const auto colon = rest.find(':');
    url.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port = rest.substr(colon + 1);
  }
  if (url.host.empty()) return bad("no host");
  for (const char c : url.host) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '.' && c != '-' && c != '_' &&
        c != ':') {
      return bad("the host may hold letters, digits, '.', '-' and '_' only");
    }
  }
  if (!port.empty() || rest.ends_with(':')) {
    unsigned value = 0;
    const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || p != port.data() + port.size() || value < 1 || value > 65535) {
      return bad("the port must be from 1 to 65535");
    }
    url.port = static_cast<uint16_t>(value);
  }
  return url;
}

}  // namespace venture::api
