// The shared rate limiter (RedisRateLimiter) against a real Redis. Goal: limiter objects that
// stand for separate API processes share one token bucket per (token, tier) with the semantics
// of the in-process limiter, and every Redis failure becomes a 503 (policy closed) or an
// admission (policy open), never a crash, a hang or a 5xx the client caused.
// Method: REDIS_URL (ctest's test services; the test fails when it is missing) for the shared
// behaviour, with a fresh token id per test so runs never share buckets; refill, a clock that
// went back and the exact Retry-After are tested by rewriting a bucket's stored state, not by
// sleeping; redis-servers of the test's own on free ports for a script-cache flush and a
// stop + restart, and a closed port for an unreachable server. The last tests go through the
// application (POST /v1/runs, GET /health) to check the 503 and health mappings.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "api/app.h"
#include "api/redis.h"

extern char** environ;

namespace venture::api {
namespace {

RedisUrl shared_url() {
  const char* text = std::getenv("REDIS_URL");  // NOLINT(concurrency-mt-unsafe): no setenv here
  if (text == nullptr || *text == '\0') {
    ADD_FAILURE() << "REDIS_URL is not set: run this test through ctest (which starts the test "
                     "services) or `export $(cat /tmp/svc/env)` first";
    return {};
  }
  auto url = parse_redis_url(text);
  if (!url) {
    ADD_FAILURE() << url.error().message;
  }
  return url ? *url : RedisUrl{};
}

// A loopback port nothing listens on (bound and released at once).
uint16_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(addr);
  // NOLINTBEGIN(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), size), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size), 0);
  // NOLINTEND(cppcoreguidelines-pro-type-reinterpret-cast)
  close(fd);
  return ntohs(addr.sin_port);
}

// A redis-server of the test's own (no persistence), killed by PID. start() returns once the
// server has logged that it accepts connections.
class RedisServer {
 public:
  explicit RedisServer(uint16_t port) : port_(port) {}
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  ::testing::AssertionResult start() {
    int out[2];
    if (pipe(out) != 0) return ::testing::AssertionFailure() << "pipe failed";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    const std::string port = std::to_string(port_);
    std::vector<std::string> args = {"redis-server", "--port", port, "--bind", "127.0.0.1"};
    args.reserve(args.size() + 6);
    for (const char* more : {"--save", "", "--appendonly", "no", "--daemonize", "no"}) {
      args.emplace_back(more);
    }
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawnp(&pid_, "redis-server", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    if (rc != 0) {
      close(out[0]);
      pid_ = -1;
      return ::testing::AssertionFailure() << "cannot run redis-server: error " << rc;
    }
    // Read its log until it is ready (bounded: 10 s without output fails the test).
    std::string log;
    bool ready = false;
    while (!ready) {
      pollfd p{out[0], POLLIN, 0};
      if (poll(&p, 1, 10000) != 1) break;
      char buffer[4096];
      const ssize_t n = read(out[0], buffer, sizeof(buffer));
      if (n <= 0) break;
      log.append(buffer, static_cast<std::size_t>(n));
      ready = log.find("Ready to accept connections") != std::string::npos;
    }
    // Redis ignores SIGPIPE, so closing the pipe only drops its later log lines.
    close(out[0]);
    if (!ready) return ::testing::AssertionFailure() << "redis-server did not start:\n" << log;
    return ::testing::AssertionSuccess();
  }

  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  RedisUrl url() const { return RedisUrl{"127.0.0.1", port_, 0, "", ""}; }

 private:
  uint16_t port_;
  pid_t pid_ = -1;
};

class RedisLimiterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = shared_url();
    ASSERT_FALSE(url_.host.empty());
    token_ = base::new_id("tok", clock_, random_);
  }

  std::unique_ptr<RedisRateLimiter> limiter(RateLimits limits,
                                            RedisFailure on_error = RedisFailure::kClosed) {
    return std::make_unique<RedisRateLimiter>(limits, url_, on_error, clock_);
  }
  std::string key(std::string_view tier) const {
    return "venture:rl:" + token_ + ":" + std::string(tier);
  }
  redis::Reply raw(const std::vector<std::string>& args) {
    auto reply = raw_.command(args);
    EXPECT_TRUE(reply) << reply.error().message;
    return reply ? *reply : redis::Reply{};
  }
  // Redis's own time in ms (the clock the script uses).
  int64_t redis_now_ms() {
    const auto t = raw({"TIME"});
    EXPECT_EQ(t.elements.size(), 2U);
    if (t.elements.size() != 2) return 0;
    return std::stoll(t.elements[0].text) * 1000 + std::stoll(t.elements[1].text) / 1000;
  }

  base::RealClock clock_;
  base::RealRandom random_;
  RedisUrl url_;
  std::string token_;
  redis::Client raw_{shared_url(), clock_};
};

RateLimits simple_limit(int per_minute) {
  RateLimits l;
  l.simple_per_minute = per_minute;
  return l;
}

TEST_F(RedisLimiterTest, TwoProcessesShareOneBucket) {
  // Capacity 5 refills one token per 12 s, far longer than the test takes.
  auto a = limiter(simple_limit(5));
  auto b = limiter(simple_limit(5));
  int allowed = 0;
  for (int i = 0; i < 10; ++i) {
    auto wait = (i % 2 == 0 ? *a : *b).acquire(token_, 0);
    ASSERT_TRUE(wait) << wait.error().message;
    if (!*wait) ++allowed;
    if (i < 5) {
      EXPECT_FALSE(*wait) << "take " << i;
    }
  }
  EXPECT_EQ(allowed, 5);
  for (RedisRateLimiter* l : {a.get(), b.get()}) {
    auto wait = l->acquire(token_, 0);
    ASSERT_TRUE(wait);
    ASSERT_TRUE(*wait);
    EXPECT_GE(**wait, 1);
    EXPECT_LE(**wait, 12);
  }
  // The state is one hash that expires once it would be full again (at most a minute + 1 s).
  EXPECT_EQ(raw({"EXISTS", key("simple")}).integer, 1);
  const int64_t ttl = raw({"PTTL", key("simple")}).integer;
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 61000);
}

TEST_F(RedisLimiterTest, RefillsContinuouslyOnRedisTime) {
  auto l = limiter(simple_limit(5));
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(*l->acquire(token_, 0));
  ASSERT_TRUE(*l->acquire(token_, 0));
  // As if 12 s had passed since the bucket was emptied: one token (5/min) is back.
  raw({"HSET", key("simple"), "tokens", "0", "at_ms", std::to_string(redis_now_ms() - 12000)});
  auto wait = l->acquire(token_, 0);
  ASSERT_TRUE(wait);
  EXPECT_FALSE(*wait);
  wait = l->acquire(token_, 0);
  ASSERT_TRUE(wait && *wait);
  EXPECT_EQ(**wait, 12);  // the whole next token: 12 s at 5/min
  // A full minute refills to capacity, never beyond.
  raw({"HSET", key("simple"), "tokens", "0", "at_ms", std::to_string(redis_now_ms() - 600000)});
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(*l->acquire(token_, 0)) << i;
  EXPECT_TRUE(*l->acquire(token_, 0));
  // A Redis clock that went back (a failover) refills nothing, and the wait stays exact.
  raw({"HSET", key("simple"), "tokens", "0.5", "at_ms", std::to_string(redis_now_ms() + 600000)});
  wait = l->acquire(token_, 0);
  ASSERT_TRUE(wait && *wait);
  EXPECT_EQ(**wait, 6);  // half a token at 5/min
}

TEST_F(RedisLimiterTest, TiersAreSeparateBuckets) {
  RateLimits limits;
  limits.simple_per_minute = 3;
  limits.standard_per_minute = 1;
  limits.heavy_per_minute = 2;
  auto l = limiter(limits);
  EXPECT_FALSE(*l->acquire(token_, 1));
  EXPECT_TRUE(*l->acquire(token_, 2));  // standard (1–2 agents) is empty
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(*l->acquire(token_, 0));
  EXPECT_TRUE(*l->acquire(token_, 0));
  EXPECT_FALSE(*l->acquire(token_, 3));
  EXPECT_FALSE(*l->acquire(token_, 7));
  EXPECT_TRUE(*l->acquire(token_, 4));
  for (std::string_view tier : {"simple", "standard", "heavy"}) {
    EXPECT_EQ(raw({"EXISTS", key(tier)}).integer, 1) << tier;
  }
  // Another token has buckets of its own.
  EXPECT_FALSE(*l->acquire(token_ + "x", 0));
}

TEST_F(RedisLimiterTest, UnlimitedTierAndDisabledNeverAskRedis) {
  auto unlimited = limiter(simple_limit(0));
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(*unlimited->acquire(token_, 0));
  EXPECT_EQ(raw({"EXISTS", key("simple")}).integer, 0);
  RateLimits off = simple_limit(1);
  off.enabled = false;
  auto disabled = limiter(off);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(*disabled->acquire(token_, 0));
  EXPECT_EQ(raw({"EXISTS", key("simple")}).integer, 0);
  // Not even a closed limiter whose Redis is unreachable refuses them.
  RedisRateLimiter nowhere(simple_limit(0), RedisUrl{"127.0.0.1", free_port(), 0, "", ""},
                           RedisFailure::kClosed, clock_);
  EXPECT_FALSE(*nowhere.acquire(token_, 0));
}

TEST_F(RedisLimiterTest, ConcurrentTakesNeverOverAdmit) {
  auto l = limiter(simple_limit(60));  // one token per second
  const int64_t begin = redis_now_ms();
  std::atomic<int> allowed{0};
  std::atomic<int> failed{0};
  {
    std::vector<std::jthread> threads;
    threads.reserve(8);
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 15; ++i) {
          auto wait = l->acquire(token_, 0);
          if (!wait) {
            ++failed;
          } else if (!*wait) {
            ++allowed;
          }
        }
      });
    }
  }
  const int64_t seconds = (redis_now_ms() - begin) / 1000;
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GE(allowed.load(), 60);
  EXPECT_LE(allowed.load(), 60 + seconds + 1);  // refill while the 120 takes ran
}

// Counts the lines containing `text` that `body` logs.
template <class F>
int warnings_logged(std::string_view text, F body) {
  std::FILE* sink = std::tmpfile();
  if (sink == nullptr) {
    ADD_FAILURE() << "tmpfile failed";
    return -1;
  }
  base::set_log_sink(sink);
  body();
  base::set_log_sink(stderr);
  std::rewind(sink);
  int count = 0;
  char line[4096];
  while (std::fgets(line, sizeof(line), sink) != nullptr) {
    if (std::string_view(line).find(text) != std::string_view::npos) ++count;
  }
  std::fclose(sink);
  return count;
}

TEST_F(RedisLimiterTest, UnreachableRedisClosedRefusesOpenAdmits) {
  const RedisUrl nowhere{"127.0.0.1", free_port(), 0, "", ""};
  const std::string address = "127.0.0.1:" + std::to_string(nowhere.port);
  base::ManualClock manual(Time{} + std::chrono::hours(1000));

  // Closed: kUnavailable naming Redis (its address goes to the log, never to the client), which
  // the handler answers with a 503 problem and Retry-After: 1. One warning per 10 s.
  RedisRateLimiter closed(simple_limit(5), nowhere, RedisFailure::kClosed, manual);
  const int closed_warnings = warnings_logged("run submissions are refused (503)", [&] {
    auto wait = closed.acquire(token_, 0);
    ASSERT_FALSE(wait);
    EXPECT_EQ(wait.error().code, Code::kUnavailable);
    EXPECT_NE(wait.error().message.find("Redis"), std::string::npos) << wait.error().message;
    EXPECT_EQ(wait.error().message.find(address), std::string::npos) << wait.error().message;
    auto problem = check_rate_limit(closed, token_, 0);
    ASSERT_TRUE(problem);
    EXPECT_EQ(problem->status, 503);
    EXPECT_EQ(problem->type, "rate-limiter-unavailable");
    EXPECT_EQ(problem->headers,
              (std::vector<std::pair<std::string, std::string>>{{"Retry-After", "1"}}));
  });
  EXPECT_EQ(closed_warnings, 1);
  auto health = closed.health();
  ASSERT_TRUE(health);
  ASSERT_FALSE(*health);
  EXPECT_EQ(health->error().code, Code::kUnavailable);
  EXPECT_NE(health->error().message.find(address), std::string::npos);  // for operators

  // Open: admitted, with one warning per 10 s however many submissions fail.
  RedisRateLimiter open(simple_limit(1), nowhere, RedisFailure::kOpen, manual);
  const int open_warnings = warnings_logged("rate limits are not enforced", [&] {
    for (int i = 0; i < 5; ++i) EXPECT_FALSE(*open.acquire(token_, 0));
    manual.advance(Millis(9999));
    EXPECT_FALSE(*open.acquire(token_, 0));
    manual.advance(Millis(1));
    EXPECT_FALSE(*open.acquire(token_, 0));
    EXPECT_FALSE(check_rate_limit(open, token_, 0));
  });
  EXPECT_EQ(open_warnings, 2);
}

TEST(RedisOwnServer, ScriptCacheFlushAndRestart) {
  base::RealClock clock;
  const uint16_t port = free_port();
  RedisServer server(port);
  ASSERT_TRUE(server.start());
  redis::Client raw(server.url(), clock);
  RedisRateLimiter l(simple_limit(3), server.url(), RedisFailure::kClosed, clock);
  ASSERT_TRUE(l.health() && *l.health());

  // SCRIPT FLUSH empties the cache EVALSHA relies on: the NOSCRIPT fallback reloads it and
  // the bucket carries on.
  EXPECT_FALSE(*l.acquire("tok_a", 0));
  ASSERT_TRUE(raw.command({"SCRIPT", "FLUSH"}));
  EXPECT_FALSE(*l.acquire("tok_a", 0));
  EXPECT_FALSE(*l.acquire("tok_a", 0));
  auto wait = l.acquire("tok_a", 0);
  ASSERT_TRUE(wait);
  EXPECT_TRUE(*wait);

  // Stopped: every call fails (closed), quickly; health says down.
  server.stop();
  for (int i = 0; i < 3; ++i) {
    wait = l.acquire("tok_b", 0);
    ASSERT_FALSE(wait);
    EXPECT_EQ(wait.error().code, Code::kUnavailable);
  }
  ASSERT_TRUE(l.health());
  EXPECT_FALSE(*l.health());

  // Restarted on the same port (empty, no scripts): the same limiter works again at once.
  ASSERT_TRUE(server.start());
  wait = l.acquire("tok_b", 0);
  ASSERT_TRUE(wait) << wait.error().message;
  EXPECT_FALSE(*wait);
  EXPECT_TRUE(*l.health());
  EXPECT_TRUE(*l.acquire("tok_a", 0) == std::nullopt);  // the old bucket died with the server
}

TEST(RedisOwnServer, ASilentServerTimesOutInsteadOfBlocking) {
  // A listener that never answers: connections complete in the kernel's backlog, commands get
  // no reply. Each call ends with the bound (limits::kRedisTimeout) rather than hanging.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(addr);
  // NOLINTBEGIN(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), size), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size), 0);
  // NOLINTEND(cppcoreguidelines-pro-type-reinterpret-cast)
  ASSERT_EQ(listen(fd, 16), 0);
  base::RealClock clock;
  RedisRateLimiter l(simple_limit(3), RedisUrl{"127.0.0.1", ntohs(addr.sin_port), 0, "", ""},
                     RedisFailure::kClosed, clock);
  for (int i = 0; i < 2; ++i) {
    auto wait = l.acquire("tok_a", 0);
    ASSERT_FALSE(wait);
    EXPECT_EQ(wait.error().code, Code::kUnavailable);
  }
  auto health = l.health();
  ASSERT_TRUE(health && !*health);
  EXPECT_NE(health->error().message.find("no answer within 500ms"), std::string::npos)
      << health->error().message;
  close(fd);
}

TEST(RedisUrl, ParsesTheUsualSpellings) {
  auto u = parse_redis_url("redis://127.0.0.1:6380/2");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 6380);
  EXPECT_EQ(u->db, 2);
  EXPECT_TRUE(u->password.empty());
  u = parse_redis_url("redis://cache.internal");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "cache.internal");
  EXPECT_EQ(u->port, 6379);
  EXPECT_EQ(u->db, 0);
  u = parse_redis_url("redis://:p%40ss@h:1/");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->password, "p@ss");
  EXPECT_TRUE(u->user.empty());
  EXPECT_EQ(u->port, 1);
  u = parse_redis_url("redis://alice:s3cret@[::1]:7000/0");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->user, "alice");
  EXPECT_EQ(u->password, "s3cret");
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 7000);
  u = parse_redis_url("redis://s3cret@h");  // a password alone (AUTH before Redis 6)
  ASSERT_TRUE(u);
  EXPECT_EQ(u->password, "s3cret");
  EXPECT_TRUE(u->user.empty());
}

TEST(RedisUrl, RejectsMalformedOnesWithAPlainMessage) {
  for (const char* bad :
       {"", "http://h:6379", "redis://", "redis://h:0", "redis://h:65536", "redis://h:x",
        "redis://h:", "redis://h/abc", "redis://h/-1", "rediss://h", "redis://h?db=1",
        "redis://[::1", "redis://[::1]x", "redis://:%zz@h", "redis://:%4@h", "redis://:p@",
        "redis://a b:1", "unix:///tmp/r.sock"}) {
    auto u = parse_redis_url(bad);
    ASSERT_FALSE(u) << bad;
    EXPECT_EQ(u.error().code, Code::kInvalidArgument);
    EXPECT_NE(u.error().message.find("redis://[[user]:password@]host"), std::string::npos)
        << u.error().message;
  }
  // Messages may be logged: they never show the password.
  auto u = parse_redis_url("redis://alice:hunter2@h:0");
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().message.find("hunter2"), std::string::npos) << u.error().message;
  EXPECT_NE(u.error().message.find("redis://***@h:0"), std::string::npos) << u.error().message;
  EXPECT_FALSE(parse_redis_failure("maybe"));
  EXPECT_EQ(*parse_redis_failure("open"), RedisFailure::kOpen);
  EXPECT_EQ(*parse_redis_failure("closed"), RedisFailure::kClosed);
}

TEST(RedisUrl, ConfigurationRejectsBadValuesAtStartup) {
  const auto env = [](const char* name) -> const char* {
    return std::string_view(name) == "VENTURE_RATE_LIMITS_ON_REDIS_ERROR" ? "open" : nullptr;
  };
  auto c = load_serve_config("", env, {{"redis", "redis://10.0.0.5:6380/1"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->redis, "redis://10.0.0.5:6380/1");
  EXPECT_EQ(c->redis_failure, "open");
  const auto none = [](const char*) -> const char* { return nullptr; };
  c = load_serve_config("", none, {});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->redis_failure, "closed");
  c = load_serve_config("", none, {{"redis", "redis://h:99999"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("redis"), std::string::npos);
  EXPECT_NE(c.error().message.find("port"), std::string::npos) << c.error().message;
  c = load_serve_config("", none, {{"rate_limits.on_redis_error", "sometimes"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("rate_limits.on_redis_error"), std::string::npos);
  ApiOptions options;
  options.redis_url = "redis://h:x";
  base::RealClock clock;
  auto made = new_limiter(options, clock);
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error().code, Code::kInvalidArgument);
}

// Through the application: the 429 and 503 answers of POST /v1/runs and /health's redis entry.
class RedisAppTest : public ::testing::Test {
 protected:
  void start(const RedisUrl& url, RedisFailure on_error) {
    dir_ = std::filesystem::temp_directory_path() /
           ("venture-ratelimit-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    storage::Options so;
    so.signing_key = base::new_signing_key();
    store_ = storage::new_memory_store(so, clock_, random_);
    bus_ = bus::new_memory_bus(clock_);
    engine_ = std::make_unique<engine::Engine>(*store_, *bus_, clock_, random_, engine::Options{});
    ASSERT_TRUE(engine_->start());
    ApiOptions options;
    options.data_dir = dir_.string();
    options.rate_limits.simple_per_minute = 1;
    options.redis_url = "redis://" + url.host + ":" + std::to_string(url.port);
    options.redis_failure = on_error;
    app_ = std::make_unique<App>(AppDeps{*store_, *bus_, *engine_, clock_, random_, metrics_},
                                 options);
    ASSERT_TRUE(app_->start());
    ASSERT_TRUE(app_->ensure_admin());
    app_->set_ready(true);
    std::ifstream(dir_ / "admin.token") >> admin_;
  }
  void TearDown() override {
    if (engine_) engine_->stop();
    std::filesystem::remove_all(dir_);
  }
  HttpResponse call(const std::string& method, const std::string& path,
                    const std::string& body = "") {
    HttpRequest r;
    r.method = method;
    r.path = path;
    r.target = path;
    r.body = body;
    r.headers.emplace_back("authorization", "Bearer " + admin_);
    return app_->handle(r).response;
  }
  HttpResponse start_run() {
    return call("POST", "/v1/runs",
                R"({"definition":{"name":"rl","nodes":[{"id":"a","type":"noop"}]}})");
  }
  static std::optional<std::string> header(const HttpResponse& r, std::string_view name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return std::nullopt;
  }

  std::filesystem::path dir_;
  base::RealClock clock_;
  base::SeededRandom random_{11};
  Metrics metrics_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<bus::Bus> bus_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<App> app_;
  std::string admin_;
};

TEST_F(RedisAppTest, ClosedPolicyAnswers503WithRetryAfterAndHealthDegrades) {
  start(RedisUrl{"127.0.0.1", free_port(), 0, "", ""}, RedisFailure::kClosed);
  const HttpResponse r = start_run();
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(r.content_type, "application/problem+json");
  EXPECT_EQ(header(r, "Retry-After"), "1");
  const auto body = json::parse(r.body).as_object();
  EXPECT_EQ(body.at("type").as_string(), "https://venture.dev/problems/rate-limiter-unavailable");
  EXPECT_EQ(body.at("status").as_int64(), 503);
  EXPECT_NE(std::string(body.at("detail").as_string()).find("Redis"), std::string::npos);

  const HttpResponse h = call("GET", "/health");
  EXPECT_EQ(h.status, 200) << h.body;  // alive; a dependency is down
  const auto health = json::parse(h.body).as_object();
  EXPECT_EQ(health.at("status").as_string(), "degraded");
  const auto& redis = health.at("dependencies").at("redis").as_object();
  EXPECT_EQ(redis.at("status").as_string(), "down");
  EXPECT_FALSE(redis.at("error").as_string().empty());
  EXPECT_EQ(health.at("dependencies").at("store").at("status").as_string(), "ok");

  app_->set_ready(false);  // shutting down: the engine no longer runs
  EXPECT_EQ(call("GET", "/health").status, 503);
}

TEST_F(RedisAppTest, OpenPolicyAdmits) {
  start(RedisUrl{"127.0.0.1", free_port(), 0, "", ""}, RedisFailure::kOpen);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(start_run().status, 201);  // over simple = 1/min
}

TEST_F(RedisAppTest, SharedLimitAnswers429AndHealthIsOk) {
  start(shared_url(), RedisFailure::kClosed);
  // The admin token is new to every run of the test, so its bucket is fresh.
  EXPECT_EQ(start_run().status, 201);
  const HttpResponse r = start_run();
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(json::parse(r.body).at("type").as_string(),
            "https://venture.dev/problems/rate-limited");
  const auto retry = header(r, "Retry-After");
  ASSERT_TRUE(retry);
  EXPECT_GE(std::stoi(*retry), 1);
  EXPECT_LE(std::stoi(*retry), 60);
  const auto health = json::parse(call("GET", "/health").body).as_object();
  EXPECT_EQ(health.at("status").as_string(), "ok");
  EXPECT_EQ(health.at("dependencies").at("redis").as_object(), (json::object{{"status", "ok"}}));
}

}  // namespace
}  // namespace venture::api
