// api-internal: a small synchronous Redis client on hiredis 0.14, for the shared rate limiter.
//
// Key types: redis::Reply (one RESP2 reply), redis::Client (a bounded pool of blocking
// connections to one server). The URL type and its parser are public (api.h: RedisUrl,
// parse_redis_url) so that main can reject a malformed URL at startup.
//
// Contract: every call takes at most `timeout` in all — waiting for a free connection,
// connecting (+ AUTH, SELECT) and the command's round trip — and fails with kUnavailable
// otherwise. A connection that failed is closed, so the next call connects anew (no background
// reconnect thread). A reply of type error (a script error, NOSCRIPT, WRONGTYPE) is a value, not
// an error: the caller decides what it means.
//
// Threading: Client is thread-safe; each connection is used by one thread at a time.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "api/api.h"
#include "base/base.h"

struct redisContext;

namespace venture::api::redis {

struct Reply {
  enum class Type { kString, kArray, kInteger, kNil, kStatus, kError };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string text;  // kString, kStatus, kError
  std::vector<Reply> elements;

  bool is_error() const { return type == Type::kError; }
  // An error reply whose code (first word) is `code`: "NOSCRIPT No matching script..."
  bool is_error(std::string_view code) const;
};

class Client {
 public:
  // `clock` measures the deadline of each call (monotonic_ns).
  Client(RedisUrl url, base::Clock& clock, Millis timeout = limits::kRedisTimeout,
         std::size_t connections_max = limits::kRedisConnectionsMax);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends one command (binary-safe arguments) and reads its reply. kUnavailable (message
  // "redis HOST:PORT: why") when Redis cannot be reached, the connection fails or the call
  // would take longer than the timeout.
  [[nodiscard]] Result<Reply> command(const std::vector<std::string>& args);

  // "HOST:PORT", for messages.
  const std::string& address() const { return address_; }

 private:
  struct Deadline;
  [[nodiscard]] Result<redisContext*> checkout(const Deadline& deadline);
  void checkin(redisContext* context, bool healthy);
  [[nodiscard]] Result<redisContext*> connect(const Deadline& deadline);
  [[nodiscard]] Result<Reply> round_trip(redisContext* context,
                                         const std::vector<std::string>& args,
                                         const Deadline& deadline);
  Error unavailable(std::string_view why) const;

  const RedisUrl url_;
  const std::string address_;
  base::Clock& clock_;
  const Millis timeout_;
  const std::size_t connections_max_;

  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<redisContext*> idle_;  // guarded by mu_
  std::size_t open_ = 0;             // connections idle or in use; guarded by mu_
};

}  // namespace venture::api::redis
