// The Redis client of the shared rate limiter: blocking hiredis connections in a bounded pool,
// every call within one deadline (see redis.h for the contract).
#include "api/redis.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <sys/time.h>

#include <cerrno>
#include <csignal>
#include <ctime>
#include <optional>

namespace venture::api::redis {
namespace {

// hiredis writes with write(2), so a peer that went away raises SIGPIPE, which ends the process
// unless it is handled. Blocks SIGPIPE on this thread for one call and discards one raised
// meanwhile (libpq does the same), so the failure arrives as EPIPE instead.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
};

// hiredis bounds the nesting of a reply (its reader's stack), so the recursion is bounded too.
Reply convert(const redisReply& r) {
  Reply out;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.text.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.text.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::kError;
      out.text.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      out.elements.reserve(r.elements);
      for (std::size_t i = 0; i < r.elements; ++i) out.elements.push_back(convert(*r.element[i]));
      break;
    default:
      out.type = Reply::Type::kNil;
      break;
  }
  return out;
}

// An idle connection whose socket is readable has been closed by the server (a restart, a
// timeout, CLIENT KILL): no reply is outstanding on it, so there is nothing else to read.
bool closed_by_server(const redisContext* c) {
  pollfd p{c->fd, POLLIN, 0};
  return poll(&p, 1, 0) != 0;
}

std::string format_address(const RedisUrl& url) {
  const bool v6 = url.host.find(':') != std::string::npos;
  return (v6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
}

}  // namespace

bool Reply::is_error(std::string_view code) const {
  return type == Type::kError && text.starts_with(code) &&
         (text.size() == code.size() || text[code.size()] == ' ');
}

// The end of one call, on the injected clock's monotonic time.
struct Client::Deadline {
  base::Clock& clock;
  int64_t at_ns;

  int64_t left_ns() const { return at_ns - clock.monotonic_ns(); }
  // The time left as hiredis wants it; nullopt once less than a microsecond is left (a zero
  // timeval would mean "no timeout" to hiredis).
  std::optional<timeval> left() const {
    const int64_t us = left_ns() / 1000;
    if (us < 1) return std::nullopt;
    return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
  }
};

Client::Client(RedisUrl url, base::Clock& clock, Millis timeout, std::size_t connections_max)
    : url_(std::move(url)),
      address_(format_address(url_)),
      clock_(clock),
      timeout_(timeout),
      connections_max_(connections_max) {
  VENTURE_CHECK(timeout_ > Millis(0));
  VENTURE_CHECK(connections_max_ > 0);
}

Client::~Client() {
  std::lock_guard lock(mu_);
  // Destroying the client while a call is in flight is a bug of its owner.
  VENTURE_CHECK(open_ == idle_.size());
  for (redisContext* c : idle_) redisFree(c);
}

Error Client::unavailable(std::string_view why) const {
  return unavailable_error("redis " + address_ + ": " + std::string(why));
}

Result<Reply> Client::command(const std::vector<std::string>& args) {
  const Deadline deadline{
      clock_, clock_.monotonic_ns() +
                  std::chrono::duration_cast<std::chrono::nanoseconds>(timeout_).count()};
  VENTURE_ASSIGN_OR_RETURN(redisContext * c, checkout(deadline));
  auto reply = round_trip(c, args, deadline);
  checkin(c, reply.has_value());
  return reply;
}

Result<redisContext*> Client::checkout(const Deadline& deadline) {
  std::vector<redisContext*> closed;
  redisContext* found = nullptr;
  {
    std::unique_lock lock(mu_);
    const auto usable = [&] {
      while (!idle_.empty() && closed_by_server(idle_.back())) {
        closed.push_back(idle_.back());
        idle_.pop_back();
        --open_;
      }
      return !idle_.empty() || open_ < connections_max_;
    };
    if (!freed_.wait_for(lock, std::chrono::nanoseconds(std::max<int64_t>(0, deadline.left_ns())),
                         usable)) {
      return unavailable("all " + std::to_string(connections_max_) + " connections stayed busy");
    }
    if (!idle_.empty()) {
      found = idle_.back();
      idle_.pop_back();
    } else {
      ++open_;  // reserved for the connection made below
    }
  }
  for (redisContext* c : closed) redisFree(c);
  if (found != nullptr) return found;
  auto made = connect(deadline);
  if (!made) {
    std::lock_guard lock(mu_);
    --open_;
    freed_.notify_one();
  }
  return made;
}

void Client::checkin(redisContext* context, bool healthy) {
  std::vector<redisContext*> dropped;
  {
    std::lock_guard lock(mu_);
    if (healthy) {
      idle_.push_back(context);
    } else {
      // A failed connection is unusable; its idle siblings most likely share its fate (the
      // server restarted or the network broke), so the next calls start afresh.
      dropped.swap(idle_);
      dropped.push_back(context);
      open_ -= dropped.size();
    }
  }
  freed_.notify_all();
  for (redisContext* c : dropped) redisFree(c);
}

Result<redisContext*> Client::connect(const Deadline& deadline) {
  const auto left = deadline.left();
  if (!left) return unavailable("no time left to connect");
  // (A host name is resolved by getaddrinfo, which the timeout does not bound: prefer an IP.)
  redisContext* c = redisConnectWithTimeout(url_.host.c_str(), url_.port, *left);
  if (c == nullptr) return unavailable("cannot allocate a connection");
  if (c->err != 0) {
    Error e = unavailable(c->errstr);
    redisFree(c);
    return e;
  }
  const auto setup = [&](const std::vector<std::string>& args, std::string_view what) -> Status {
    auto reply = round_trip(c, args, deadline);
    if (!reply) return reply.error();
    if (reply->is_error()) return unavailable(std::string(what) + " failed: " + reply->text);
    return {};
  };
  Status ready;
  if (!url_.password.empty()) {
    ready = url_.user.empty() ? setup({"AUTH", url_.password}, "AUTH")
                              : setup({"AUTH", url_.user, url_.password}, "AUTH");
  }
  if (ready && url_.db != 0) ready = setup({"SELECT", std::to_string(url_.db)}, "SELECT");
  if (!ready) {
    redisFree(c);
    return ready.error();
  }
  return c;
}

Result<Reply> Client::round_trip(redisContext* context, const std::vector<std::string>& args,
                                 const Deadline& deadline) {
  const auto left = deadline.left();
  if (!left) return unavailable("no answer within " + format_duration(timeout_));
  if (redisSetTimeout(context, *left) != REDIS_OK) return unavailable("cannot set a timeout");
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  void* raw = nullptr;
  int error_number = 0;
  {
    const SigpipeGuard guard;
    raw = redisCommandArgv(context, static_cast<int>(args.size()), argv.data(), lengths.data());
    error_number = errno;
  }
  if (raw == nullptr) {
    if (context->err == REDIS_ERR_IO && (error_number == EAGAIN || error_number == EWOULDBLOCK)) {
      return unavailable("no answer within " + format_duration(timeout_));
    }
    return unavailable(context->errstr[0] != '\0' ? context->errstr : "the connection failed");
  }
  Reply reply = convert(*static_cast<const redisReply*>(raw));
  freeReplyObject(raw);
  return reply;
}

}  // namespace venture::api::redis
