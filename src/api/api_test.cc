// The application half without sockets: configuration layering, the rate limiter, routing, auth
// and roles, problem shapes, and the OpenAPI document against the route table.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "api/app.h"

namespace venture::api {
namespace {

using Env = std::map<std::string, std::string>;

std::function<const char*(const char*)> env_of(const Env& env) {
  return [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
}

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << text;
  return path.string();
}

TEST(Config, FlagsBeatEnvironmentBeatFileBeatDefaults) {
  const std::string file = write_temp("venture-config-test.toml",
                                      "listen = \"127.0.0.1:9001\"\nworkers = 3\n"
                                      "[rate_limits]\nsimple = 7\nstandard = 2\n");
  Env env{{"VENTURE_LISTEN", "127.0.0.1:9002"}, {"VENTURE_RATE_LIMITS_SIMPLE", "8"}};
  auto c = load_serve_config(file, env_of(env), {{"listen", "127.0.0.1:9003"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->listen, "127.0.0.1:9003");            // flag
  EXPECT_EQ(c->rate_limits.simple_per_minute, 8);    // environment over file
  EXPECT_EQ(c->rate_limits.standard_per_minute, 2);  // file
  EXPECT_EQ(c->workers, 3);                          // file
  EXPECT_EQ(c->rate_limits.heavy_per_minute, 5);     // default
  EXPECT_EQ(c->data_dir, "./venture-data");
  EXPECT_EQ(c->public_url, "http://127.0.0.1:9003");
}

TEST(Config, ErrorsNameTheSourceAndPlace) {
  Env none;
  const std::string typo = write_temp("venture-config-typo.toml", "\nlistn = \"x:1\"\n");
  auto c = load_serve_config(typo, env_of(none), {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("venture-config-typo.toml:2:"), std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find("did you mean 'listen'"), std::string::npos);

  const std::string syntax = write_temp("venture-config-syntax.toml", "workers = = 3\n");
  c = load_serve_config(syntax, env_of(none), {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("venture-config-syntax.toml:1:"), std::string::npos);

  const std::string type = write_temp("venture-config-type.toml", "workers = \"many\"\n");
  c = load_serve_config(type, env_of(none), {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("workers must be an integer"), std::string::npos);

  Env bad{{"VENTURE_WORKERS", "lots"}};
  c = load_serve_config("", env_of(bad), {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("VENTURE_WORKERS"), std::string::npos);

  c = load_serve_config("", env_of(none), {{"listen", "nohost"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("HOST:PORT"), std::string::npos);

  c = load_serve_config("", env_of(none), {{"tls.cert", "/x.pem"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("tls.key"), std::string::npos);
}

TEST(Config, ListsFromTextOrArrays) {
  Env env{{"VENTURE_EGRESS_ALLOW", "10.1.2.0/24, api.internal"}};
  auto c = load_serve_config("", env_of(env), {});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->egress_allow, (std::vector<std::string>{"10.1.2.0/24", "api.internal"}));
  const std::string file =
      write_temp("venture-config-list.toml", "[egress]\nallow = [\"192.168.0.0/16\"]\n");
  Env none;
  c = load_serve_config(file, env_of(none), {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->egress_allow, (std::vector<std::string>{"192.168.0.0/16"}));
}

TEST(RateLimiter, BucketsPerTokenAndTierRefill) {
  base::ManualClock clock(Time{} + std::chrono::hours(1000));
  RateLimits limits;
  limits.simple_per_minute = 3;
  limits.standard_per_minute = 1;
  RateLimiter limiter(limits, clock);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(limiter.take("tok_a", 0));
  auto wait = limiter.take("tok_a", 0);
  ASSERT_TRUE(wait);
  EXPECT_EQ(*wait, 20);  // one token per 20 s at 3/min
  EXPECT_FALSE(limiter.take("tok_b", 0));  // another token has its own bucket
  EXPECT_FALSE(limiter.take("tok_a", 1));  // another tier too
  EXPECT_TRUE(limiter.take("tok_a", 2));
  clock.advance(Millis(20000));
  EXPECT_FALSE(limiter.take("tok_a", 0));
  EXPECT_TRUE(limiter.take("tok_a", 0));
  limits.enabled = false;
  RateLimiter off(limits, clock);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(off.take("tok_a", 5));
}

class AppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("venture-app-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    storage::Options so;
    so.signing_key = base::new_signing_key();
    store_ = storage::new_memory_store(so, clock_, random_);
    bus_ = bus::new_memory_bus(clock_);
    engine_ = std::make_unique<engine::Engine>(*store_, *bus_, clock_, random_, engine::Options{});
    ASSERT_TRUE(engine_->start());
    ApiOptions options;
    options.data_dir = dir_.string();
    app_ = std::make_unique<App>(AppDeps{*store_, *bus_, *engine_, clock_, random_, metrics_},
                                 options);
    ASSERT_TRUE(app_->start());
    ASSERT_TRUE(app_->ensure_admin());
    std::ifstream(dir_ / "admin.token") >> admin_;
    ASSERT_EQ(admin_.substr(0, 3), "vt_");
  }
  void TearDown() override {
    engine_->stop();
    std::filesystem::remove_all(dir_);
  }

  HttpResponse call(const std::string& method, const std::string& path, const std::string& token,
                    const std::string& body = "") {
    HttpRequest r;
    r.method = method;
    r.path = path;
    r.target = path;
    r.body = body;
    if (!token.empty()) r.headers.emplace_back("authorization", "Bearer " + token);
    return app_->handle(r).response;
  }

  std::string token_for(const std::string& role) {
    auto r = call("POST", "/v1/tokens", admin_,
                  R"({"name":")" + role + R"(-test","role":")" + role + R"("})");
    EXPECT_EQ(r.status, 201) << r.body;
    return std::string(json::parse(r.body).at("token").as_string());
  }

  std::filesystem::path dir_;
  base::RealClock clock_;
  base::SeededRandom random_{7};
  Metrics metrics_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<bus::Bus> bus_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<App> app_;
  std::string admin_;
};

TEST_F(AppTest, EveryRouteChecksTokenAndRole) {
  std::map<std::string, std::string> tokens;
  for (const char* role : {"admin", "operator", "approver", "viewer", "agent"}) {
    tokens[role] = token_for(role);
  }
  for (const Route& route : app_->routes()) {
    std::string path = route.pattern;
    for (auto at = path.find('{'); at != std::string::npos; at = path.find('{')) {
      path.replace(at, path.find('}', at) - at + 1, "x");
    }
    if (route.roles == kNoAuth) {
      EXPECT_NE(call(route.method, path, "").status, 401) << route.pattern;
      continue;
    }
    EXPECT_EQ(call(route.method, path, "").status, 401) << route.method << " " << route.pattern;
    EXPECT_EQ(call(route.method, path, "vt_unknown").status, 401) << route.pattern;
    for (const auto& [name, token] : tokens) {
      const Role role = *parse_role(name);
      const int status = call(route.method, path, token).status;
      if ((route.roles & role) == 0) {
        EXPECT_EQ(status, 403) << name << " " << route.method << " " << route.pattern;
      } else {
        EXPECT_NE(status, 403) << name << " " << route.method << " " << route.pattern;
        EXPECT_NE(status, 401) << name << " " << route.method << " " << route.pattern;
        EXPECT_LT(status, 500) << name << " " << route.method << " " << route.pattern;
      }
    }
  }
}

TEST_F(AppTest, ProblemsHaveTheRfc9457ShapeWithPaths) {
  auto r = call("POST", "/v1/workflows", admin_,
                R"({"name":"x","nodes":[{"id":"a","type":"nope"}]})");
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.content_type, "application/problem+json");
  auto v = json::parse(r.body).as_object();
  EXPECT_EQ(v.at("status").as_int64(), 422);
  EXPECT_EQ(v.at("errors").as_array()[0].at("path").as_string(), "/nodes/0/type");
  r = call("POST", "/v1/workflows", admin_, "{\"name\": ");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("line 1"), std::string::npos) << r.body;
  EXPECT_EQ(call("GET", "/v1/runs/run_nope", admin_).status, 404);
  EXPECT_EQ(call("GET", "/v1/nothing", admin_).status, 404);
  EXPECT_EQ(call("DELETE", "/v1/runs", admin_).status, 405);
  HttpRequest bad_limit;
  bad_limit.method = "GET";
  bad_limit.path = "/v1/runs";
  bad_limit.query.emplace_back("limit", "0");
  bad_limit.headers.emplace_back("authorization", "Bearer " + admin_);
  r = app_->handle(bad_limit).response;
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("/query/limit"), std::string::npos);
}

TEST_F(AppTest, OpenApiDescribesExactlyTheRoutes) {
  const json::object doc = app_->openapi();
  EXPECT_EQ(doc.at("openapi").as_string(), "3.1.0");
  std::set<std::string> documented;
  for (const auto& [path, item] : doc.at("paths").as_object()) {
    for (const auto& [method, op] : item.as_object()) {
      std::string m(method);
      for (auto& c : m) c = static_cast<char>(std::toupper(c));
      documented.insert(m + " " + std::string(path));
      // Every referenced schema exists.
      const std::string text = json::serialize(op);
      for (auto at = text.find("#/components/schemas/"); at != std::string::npos;
           at = text.find("#/components/schemas/", at + 1)) {
        const auto start = at + 21;
        const std::string name = text.substr(start, text.find('"', start) - start);
        EXPECT_TRUE(doc.at("components").at("schemas").as_object().contains(name)) << name;
      }
    }
  }
  std::set<std::string> routed;
  for (const Route& r : app_->routes()) routed.insert(r.method + " " + r.pattern);
  EXPECT_EQ(documented, routed);
}

TEST_F(AppTest, MetricsIncludeTheEngineAndProcess) {
  const auto r = call("GET", "/metrics", admin_);
  EXPECT_EQ(r.status, 200);
  for (const char* name : {"venture_engine_steps_total", "venture_events_appended_total",
                           "venture_runs_active", "venture_frozen 0", "process_open_fds"}) {
    EXPECT_NE(r.body.find(name), std::string::npos) << name;
  }
}

TEST_F(AppTest, RevokedTokensStopWorkingAndTheLastAdminStays) {
  const std::string viewer = token_for("viewer");
  EXPECT_EQ(call("GET", "/v1/runs", viewer).status, 200);
  HttpRequest lower;  // the scheme is case-insensitive; spaces around the secret are ignored
  lower.method = "GET";
  lower.path = "/v1/runs";
  lower.headers.emplace_back("authorization", "bearer  " + viewer + " ");
  EXPECT_EQ(app_->handle(lower).response.status, 200);
  auto list = json::parse(call("GET", "/v1/tokens", admin_).body);
  std::string viewer_id, admin_id;
  for (const auto& t : list.at("items").as_array()) {
    if (t.at("role").as_string() == "viewer") viewer_id = std::string(t.at("id").as_string());
    if (t.at("role").as_string() == "admin") admin_id = std::string(t.at("id").as_string());
    EXPECT_FALSE(t.as_object().contains("token"));
  }
  EXPECT_EQ(call("DELETE", "/v1/tokens/" + viewer_id, admin_).status, 204);
  EXPECT_EQ(call("GET", "/v1/runs", viewer).status, 401);
  EXPECT_EQ(call("DELETE", "/v1/tokens/" + admin_id, admin_).status, 409);
}

}  // namespace
}  // namespace venture::api
