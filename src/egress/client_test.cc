// Goal: egress::Client applies the SSRF guard at every point egress.h promises, and the redirect,
// size, time and shutdown rules hold. Method: real requests through libcurl to tiny in-process
// HTTP/1.1 listeners on loopback (plain sockets, a thread per connection) that count connections
// and record requests, so "never reached the target" is observed at the target; the pure redirect
// and date helpers are called directly. Nothing waits on a clock: requests that must time out go
// to listeners that never answer.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "egress/egress.h"

namespace venture::egress {
namespace {

struct RawRequest {
  std::string method;
  std::string target;
  std::string head;  // request line and headers as received
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  int connection = 0;  // 1-based, in accept order
};

std::string response(int status, const std::string& body,
                     const std::vector<std::string>& extra = {}) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n";
  for (const std::string& h : extra) out += h + "\r\n";
  return out + "\r\n" + body;
}

// A loopback HTTP/1.1 server: keep-alive, one thread per connection. A handler returns the raw
// response, or nullopt to hold the request until the listener stops. Handlers may block in
// wait(), which also ends when the listener stops.
class Listener {
 public:
  using Handler = std::function<std::optional<std::string>(const RawRequest&)>;

  Listener(const std::string& ip, Handler handler, uint16_t port = 0)
      : handler_(std::move(handler)) {
    const bool v6 = ip.find(':') != std::string::npos;
    fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc = -1;
    if (v6) {
      setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(port);
      inet_pton(AF_INET6, ip.c_str(), &a.sin6_addr);
      rc = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
      socklen_t len = sizeof a;
      getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
      port_ = ntohs(a.sin6_port);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
      rc = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
      socklen_t len = sizeof a;
      getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
      port_ = ntohs(a.sin_port);
    }
    EXPECT_EQ(rc, 0) << "bind " << ip << ":" << port;
    EXPECT_EQ(::listen(fd_, 512), 0);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~Listener() { stop(); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  uint16_t port() const { return port_; }

  int connections() {
    std::lock_guard lock(mu_);
    return connections_;
  }
  std::vector<RawRequest> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::size_t count(const std::string& path_prefix) {
    std::lock_guard lock(mu_);
    return static_cast<std::size_t>(std::count_if(
        requests_.begin(), requests_.end(),
        [&](const RawRequest& r) { return r.target.starts_with(path_prefix); }));
  }
  // Blocks until pred() (evaluated under the listener's lock) holds or the listener stops.
  bool wait(const std::function<bool()>& pred) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stopping_ || pred(); });
    return !stopping_;
  }
  // Requests seen so far whose target starts with `prefix`; only inside wait() predicates.
  std::size_t count_locked(const std::string& prefix) const {
    return static_cast<std::size_t>(
        std::count_if(requests_.begin(), requests_.end(),
                      [&](const RawRequest& r) { return r.target.starts_with(prefix); }));
  }
  void wait_requests(std::size_t n) {
    wait([&] { return requests_.size() >= n; });
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    ::shutdown(fd_, SHUT_RDWR);
    if (accept_thread_.joinable()) accept_thread_.join();
    {
      std::lock_guard lock(mu_);
      for (int c : open_) ::shutdown(c, SHUT_RDWR);
    }
    for (auto& t : threads_) t.join();
    ::close(fd_);
  }

 private:
  void accept_loop() {
    while (true) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      std::lock_guard lock(mu_);
      if (stopping_ || c < 0) {
        if (c >= 0) ::close(c);
        return;
      }
      const int id = ++connections_;
      open_.push_back(c);
      threads_.emplace_back([this, c, id] { serve(c, id); });
    }
  }

  static bool read_more(int c, std::string& buf) {
    char tmp[16384];
    const ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<std::size_t>(n));
    return true;
  }

  void serve(int c, int id) {
    std::string buf;
    while (true) {
      std::size_t end = 0;
      bool open = true;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos && (open = read_more(c, buf))) {
      }
      if (!open) break;
      RawRequest r;
      r.connection = id;
      r.head = buf.substr(0, end);
      buf.erase(0, end + 4);
      const auto line_end = r.head.find("\r\n");
      const std::string line = r.head.substr(0, line_end);
      r.method = line.substr(0, line.find(' '));
      r.target = line.substr(r.method.size() + 1, line.rfind(' ') - r.method.size() - 1);
      std::size_t pos = line_end;
      while (pos != std::string::npos && pos < r.head.size()) {
        const std::size_t next = r.head.find("\r\n", pos + 2);
        const std::string h = r.head.substr(pos + 2, next == std::string::npos
                                                         ? std::string::npos
                                                         : next - pos - 2);
        if (const auto colon = h.find(':'); colon != std::string::npos) {
          std::string name = ascii_lower(h.substr(0, colon));
          std::string value = h.substr(colon + 1);
          value.erase(0, value.find_first_not_of(' '));
          r.headers[name] = value;
        }
        pos = next;
      }
      const std::size_t length =
          r.headers.contains("content-length") ? std::stoul(r.headers["content-length"]) : 0;
      while (buf.size() < length && (open = read_more(c, buf))) {
      }
      if (!open) break;
      r.body = buf.substr(0, length);
      buf.erase(0, length);
      {
        std::lock_guard lock(mu_);
        requests_.push_back(r);
      }
      cv_.notify_all();
      const std::optional<std::string> out = handler_(r);
      if (!out) {
        wait([] { return false; });
        break;
      }
      std::size_t sent = 0;
      while (sent < out->size()) {
        const ssize_t n = ::send(c, out->data() + sent, out->size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
      }
      if (out->find("Connection: close") != std::string::npos) break;
    }
    std::lock_guard lock(mu_);
    open_.erase(std::find(open_.begin(), open_.end(), c));
    ::close(c);
  }

  Handler handler_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  int connections_ = 0;
  std::vector<int> open_;
  std::vector<RawRequest> requests_;
  std::vector<std::thread> threads_;
  std::thread accept_thread_;
};

Listener::Handler answer(int status, std::string body) {
  return [status, body](const RawRequest&) { return response(status, body); };
}

Policy policy(std::vector<std::string> allow) {
  auto p = Policy::make(allow, local_addresses());
  EXPECT_TRUE(p);
  return p ? *p : Policy{};
}

// A started client over `allow`.
struct Fixture {
  base::RealClock clock;
  Client client;
  explicit Fixture(std::vector<std::string> allow, ClientOptions o = {})
      : client(clock, with_policy(std::move(o), std::move(allow))) {
    EXPECT_TRUE(client.start());
  }
  static ClientOptions with_policy(ClientOptions o, std::vector<std::string> allow) {
    o.policy = policy(std::move(allow));
    return o;
  }
  Response fetch(Request r) {
    std::promise<Response> p;
    auto f = p.get_future();
    client.send(std::move(r), [&p](Response out) { p.set_value(std::move(out)); });
    return f.get();
  }
  Response get(const std::string& url) {
    Request r;
    r.url = url;
    return fetch(std::move(r));
  }
};

std::string url(const std::string& host, uint16_t port, const std::string& path = "/") {
  return "http://" + host + ":" + std::to_string(port) + path;
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---- The address guard ----------------------------------------------------------------------

TEST(Guard, DeniedAddressesAreNeverConnected) {
  Listener v4("127.0.0.1", answer(200, "secret"));
  Listener v6("::1", answer(200, "secret"), v4.port());
  Fixture f({});
  const uint16_t p = v4.port();
  const std::string port = std::to_string(p);
  for (const std::string& u :
       {url("127.0.0.1", p), url("localhost", p), url("LOCALHOST", p), url("[::1]", p),
        url("[::ffff:127.0.0.1]", p), url("2130706433", p), url("0x7f000001", p),
        url("0177.0.0.1", p), url("127.1", p), url("0x7f.1", p), url("[::ffff:7f00:1]", p),
        "http://127.0.0.1:" + port + "/#@example.com", url("0.0.0.0", p), url("0", p)}) {
    const Response r = f.get(u);
    EXPECT_EQ(r.error, kEgressDenied) << u << ": " << r.error << " " << r.message;
    EXPECT_FALSE(r.retryable) << u;
    EXPECT_EQ(r.status, 0) << u;
  }
  const Response named = f.get(url("localhost", p));
  EXPECT_TRUE(has(named.message, "localhost resolves to ")) << named.message;
  EXPECT_TRUE(has(named.message, "loopback")) << named.message;
  const Response literal = f.get(url("127.0.0.1", p));
  EXPECT_EQ(literal.message, "127.0.0.1 is loopback (127.0.0.0/8)");
  EXPECT_EQ(v4.connections(), 0);
  EXPECT_EQ(v6.connections(), 0);
}

TEST(Guard, TheAllowListOpensExactlyWhatItNames) {
  Listener ok("127.0.0.1", answer(200, "hello"));
  Listener other("127.0.0.2", answer(200, "secret"));
  Fixture f({"127.0.0.1/32"});
  const Response r = f.get(url("127.0.0.1", ok.port(), "/x"));
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.remote_address, "127.0.0.1");
  EXPECT_EQ(f.get(url("127.0.0.2", other.port())).error, kEgressDenied);
  EXPECT_EQ(other.connections(), 0);

  // A host name entry opens that name (case-insensitively), not the address it resolves to.
  Listener named("127.0.0.1", answer(200, "by name"));
  Fixture g({"localhost"});
  const Response by_name = g.get(url("LocalHost", named.port()));
  ASSERT_TRUE(by_name.ok()) << by_name.message;
  EXPECT_EQ(by_name.body, "by name");
  EXPECT_EQ(g.get(url("127.0.0.1", named.port())).error, kEgressDenied);
  EXPECT_EQ(named.connections(), 1);
}

// CURLOPT_PREREQFUNCTION runs for a request on a reused connection too: remote_address is only
// ever set there.
TEST(Guard, ReusedConnectionsAreCheckedAgain) {
  Listener l("127.0.0.1", answer(200, "again"));
  Fixture f({"127.0.0.1/32"});
  for (int i = 0; i < 3; ++i) {
    const Response r = f.get(url("127.0.0.1", l.port(), "/" + std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.message;
    EXPECT_EQ(r.remote_address, "127.0.0.1") << i;
  }
  EXPECT_EQ(l.connections(), 1);  // one keep-alive connection served all three
  EXPECT_EQ(l.requests().size(), 3u);
}

TEST(Guard, TheProxyEnvironmentIsIgnored) {
  Listener trap("127.0.0.1", answer(200, "proxy"));
  Listener target("127.0.0.1", answer(200, "direct"));
  const std::string proxy = url("127.0.0.1", trap.port());
  for (const char* name : {"http_proxy", "HTTP_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"}) {
    setenv(name, proxy.c_str(), 1);  // NOLINT(concurrency-mt-unsafe): test setup
  }
  Fixture f({"127.0.0.1/32"});
  const Response r = f.get(url("127.0.0.1", target.port()));
  for (const char* name : {"http_proxy", "HTTP_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"}) {
    unsetenv(name);  // NOLINT(concurrency-mt-unsafe): test teardown
  }
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.body, "direct");
  EXPECT_EQ(trap.connections(), 0);
}

TEST(Guard, BadRequestsNeverConnect) {
  Listener l("127.0.0.1", answer(200, "x"));
  Fixture f({"127.0.0.1/32"});
  const std::string u = url("127.0.0.1", l.port());
  auto req = [&](auto change) {
    Request r;
    r.url = u;
    change(r);
    return f.fetch(std::move(r));
  };
  std::vector<Response> bad = {
      req([](Request& r) { r.method = "TRACE"; }),
      req([](Request& r) { r.method = "CONNECT"; }),
      req([](Request& r) { r.method = "get"; }),
      req([&](Request& r) { r.url = "ftp://127.0.0.1:" + std::to_string(l.port()) + "/"; }),
      req([&](Request& r) { r.url = "http://u:p@127.0.0.1:" + std::to_string(l.port()) + "/"; }),
      req([&](Request& r) { r.url = u + "\r\nX: y"; }),
      req([&](Request& r) { r.url = "http://127.0.0.1:" + std::to_string(l.port()) + "/a b"; }),
      req([](Request& r) { r.headers = {{"X-A", "a\r\nHost: evil"}}; }),
      req([](Request& r) { r.headers = {{"X-A", std::string("a\0b", 3)}}; }),
      req([](Request& r) { r.headers = {{"X-A\r\nHost", "evil"}}; }),
      req([](Request& r) { r.headers = {{"Bad Name", "x"}}; }),
      req([](Request& r) { r.headers = {{"Host", "internal"}}; }),
      req([](Request& r) { r.headers = {{"host", "internal"}}; }),
      req([](Request& r) { r.headers = {{"Transfer-Encoding", "chunked"}}; }),
      req([](Request& r) { r.timeout = Millis(0); }),
      req([](Request& r) { r.max_response_bytes = 0; }),
  };
  for (std::size_t i = 0; i < bad.size(); ++i) {
    EXPECT_EQ(bad[i].error, kInvalidRequest) << i << ": " << bad[i].message;
    EXPECT_FALSE(bad[i].retryable) << i;
  }
  EXPECT_EQ(l.connections(), 0);
}

// ---- Redirects ------------------------------------------------------------------------------

// "/sNNN" answers NNN with Location /echo; "/echo" answers "method|content-type|body".
Listener::Handler redirector() {
  return [](const RawRequest& r) -> std::optional<std::string> {
    if (r.target.starts_with("/s")) {
      return response(std::stoi(r.target.substr(2, 3)), "", {"Location: /echo"});
    }
    const auto ct = r.headers.find("content-type");
    return response(200, r.method + "|" + (ct == r.headers.end() ? "" : ct->second) + "|" +
                             r.body);
  };
}

TEST(Redirects, MethodsAndBodiesFollowBrowserRules) {
  Listener l("127.0.0.1", redirector());
  Fixture f({"127.0.0.1/32"});
  auto send = [&](const std::string& method, int status) {
    Request r;
    r.method = method;
    r.url = url("127.0.0.1", l.port(), "/s" + std::to_string(status));
    r.body = "hi";
    r.headers = {{"Content-Type", "text/plain"}};
    Response out = f.fetch(std::move(r));
    EXPECT_TRUE(out.ok()) << out.message;
    EXPECT_EQ(out.redirects, 1);
    EXPECT_TRUE(out.url.ends_with("/echo")) << out.url;
    return out.body;
  };
  EXPECT_EQ(send("POST", 303), "GET||");
  EXPECT_EQ(send("POST", 301), "GET||");
  EXPECT_EQ(send("POST", 302), "GET||");
  EXPECT_EQ(send("POST", 307), "POST|text/plain|hi");
  EXPECT_EQ(send("POST", 308), "POST|text/plain|hi");
  EXPECT_EQ(send("PUT", 303), "GET||");
  EXPECT_EQ(send("PUT", 301), "PUT|text/plain|hi");
  EXPECT_EQ(send("PATCH", 307), "PATCH|text/plain|hi");
}

TEST(Redirects, CredentialsStayWithTheFirstOrigin) {
  Listener other("127.0.0.1", [](const RawRequest& r) { return response(200, r.head); });
  const std::string cross = url("127.0.0.1", other.port(), "/seen");
  Listener first("127.0.0.1", [&](const RawRequest& r) -> std::optional<std::string> {
    if (r.target == "/same") return response(302, "", {"Location: /seen"});
    if (r.target == "/cross") return response(307, "", {"Location: " + cross});
    return response(200, r.head);
  });
  Fixture f({"127.0.0.1/32"});
  auto send = [&](const std::string& path) {
    Request r;
    r.url = url("127.0.0.1", first.port(), path);
    r.headers = {{"Authorization", "Bearer s3cret"},
                 {"Cookie", "session=abc"},
                 {"Proxy-Authorization", "Basic eA=="},
                 {"X-Keep", "kept"}};
    Response out = f.fetch(std::move(r));
    EXPECT_TRUE(out.ok()) << out.message;
    EXPECT_EQ(out.redirects, 1);
    return out.body;
  };
  const std::string same = send("/same");
  EXPECT_TRUE(has(same, "Authorization: Bearer s3cret")) << same;
  EXPECT_TRUE(has(same, "Cookie: session=abc")) << same;
  EXPECT_TRUE(has(same, "Proxy-Authorization: Basic")) << same;
  const std::string crossed = send("/cross");  // another port: another origin
  EXPECT_FALSE(has(crossed, "s3cret")) << crossed;
  EXPECT_FALSE(has(crossed, "session=abc")) << crossed;
  EXPECT_FALSE(has(crossed, "Proxy-Authorization")) << crossed;
  EXPECT_TRUE(has(crossed, "X-Keep: kept")) << crossed;
}

TEST(Redirects, ToADeniedAddressOrSchemeNothingLeaves) {
  Listener trap4("0.0.0.0", answer(200, "trapped"));
  Listener trap6("::", answer(200, "trapped"), trap4.port());
  const std::string t = std::to_string(trap4.port());
  const std::vector<std::string> targets = {
      "http://127.0.0.2:" + t + "/",      "http://0x7f000002:" + t + "/",
      "http://[::1]:" + t + "/",          "http://[::ffff:127.0.0.2]:" + t + "/",
      "http://0.0.0.0:" + t + "/",        "http://localhost:" + t + "/",
      "gopher://127.0.0.1:" + t + "/_x",  "dict://127.0.0.1:" + t + "/x",
      "ftp://127.0.0.1:" + t + "/",       "file:///etc/passwd",
      "ldap://127.0.0.1:" + t + "/",      "http://u:p@127.0.0.1:" + t + "/",
      "foo://127.0.0.1:" + t + "/",       "//127.0.0.2:" + t + "/",
  };
  std::size_t i = 0;
  Listener allowed("127.0.0.5", [&](const RawRequest& r) {
    return response(302, "", {"Location: " + targets[std::stoul(r.target.substr(1))]});
  });
  Fixture f({"127.0.0.5/32"});
  for (i = 0; i < targets.size(); ++i) {
    const Response r = f.get(url("127.0.0.5", allowed.port(), "/" + std::to_string(i)));
    EXPECT_EQ(r.error, kEgressDenied) << targets[i] << ": " << r.error << " " << r.message;
    EXPECT_FALSE(r.retryable);
  }
  EXPECT_EQ(allowed.requests().size(), targets.size());
  EXPECT_EQ(trap4.connections(), 0);
  EXPECT_EQ(trap6.connections(), 0);
}

TEST(Redirects, AtMostFiveAreFollowed) {
  Listener l("127.0.0.1", [](const RawRequest& r) -> std::optional<std::string> {
    const int n = std::stoi(r.target.substr(6));  // "/loop/N?stop=S"
    const int stop = std::stoi(r.target.substr(r.target.find("stop=") + 5));
    if (n >= stop) return response(200, "after " + std::to_string(n));
    return response(302, "", {"Location: /loop/" + std::to_string(n + 1) +
                                  "?stop=" + std::to_string(stop)});
  });
  Fixture f({"127.0.0.1/32"});
  const Response five = f.get(url("127.0.0.1", l.port(), "/loop/0?stop=5"));
  ASSERT_TRUE(five.ok()) << five.message;
  EXPECT_EQ(five.body, "after 5");
  EXPECT_EQ(five.redirects, 5);
  const Response six = f.get(url("127.0.0.1", l.port(), "/loop/0?stop=6"));
  EXPECT_EQ(six.error, kTooManyRedirects) << six.message;
  EXPECT_EQ(l.count("/loop/"), 12u);  // 6 requests each: the first and 5 redirects
  Request none;
  none.url = url("127.0.0.1", l.port(), "/loop/0?stop=1");
  none.max_redirects = 0;
  EXPECT_EQ(f.fetch(none).error, kTooManyRedirects);
}

// ---- Bounds ---------------------------------------------------------------------------------

TEST(Bounds, ResponseBodyAndHeaders) {
  Listener l("127.0.0.1", [](const RawRequest& r) -> std::optional<std::string> {
    if (r.target == "/exact") return response(200, std::string(1000, 'x'));
    if (r.target == "/declared") return response(200, std::string(1001, 'x'));
    if (r.target == "/chunked") {
      std::string out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
      for (int i = 0; i < 5; ++i) out += "1f4\r\n" + std::string(500, 'y') + "\r\n";
      return out + "0\r\n\r\n";
    }
    std::vector<std::string> many;
    for (int i = 0; i < 80; ++i) many.push_back("X-Filler-" + std::to_string(i) + ": " +
                                                std::string(1000, 'h'));
    return response(200, "small", many);
  });
  Fixture f({"127.0.0.1/32"});
  auto get = [&](const std::string& path) {
    Request r;
    r.url = url("127.0.0.1", l.port(), path);
    r.max_response_bytes = 1000;
    return f.fetch(std::move(r));
  };
  const Response exact = get("/exact");
  ASSERT_TRUE(exact.ok()) << exact.message;
  EXPECT_EQ(exact.body.size(), 1000u);
  for (const char* path : {"/declared", "/chunked", "/headers"}) {
    const Response r = get(path);
    EXPECT_EQ(r.error, kResponseTooLarge) << path << ": " << r.message;
    EXPECT_FALSE(r.retryable);
  }
  EXPECT_TRUE(has(get("/headers").message, "headers")) << get("/headers").message;
}

TEST(Bounds, ARequestThatGetsNoAnswerTimesOut) {
  Listener l("127.0.0.1", [](const RawRequest&) { return std::nullopt; });  // never answers
  Fixture f({"127.0.0.1/32"});
  Request r;
  r.url = url("127.0.0.1", l.port(), "/hold");
  r.timeout = Millis(200);
  const Response out = f.fetch(std::move(r));
  EXPECT_EQ(out.error, kTimeout) << out.message;
  EXPECT_TRUE(out.retryable);
  EXPECT_EQ(l.requests().size(), 1u);
}

// ---- Concurrency and shutdown ---------------------------------------------------------------

// 200 requests are held by the listener until all 200 are there at once: they are in flight
// together on the one client thread.
TEST(Client, ManyRequestsInFlightAtOnce) {
  constexpr std::size_t kN = 200;
  Listener* self = nullptr;
  Listener l("127.0.0.1", [&self](const RawRequest&) -> std::optional<std::string> {
    if (!self->wait([&] { return self->count_locked("/barrier") >= kN; })) return std::nullopt;
    return response(200, "released");
  });
  self = &l;
  Fixture f({"127.0.0.1/32"});
  std::mutex mu;
  std::condition_variable cv;
  std::size_t done = 0;
  std::size_t ok = 0;
  for (std::size_t i = 0; i < kN; ++i) {
    Request r;
    r.url = url("127.0.0.1", l.port(), "/barrier/" + std::to_string(i));
    f.client.send(std::move(r), [&](Response out) {
      std::lock_guard lock(mu);
      ++done;
      ok += out.ok() && out.body == "released" ? 1u : 0u;
      cv.notify_all();
    });
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done == kN; });
  EXPECT_EQ(ok, kN);
  EXPECT_EQ(f.client.pending(), 0u);
}

TEST(Client, QueueBoundRefusesAtOnce) {
  Listener l("127.0.0.1", [](const RawRequest&) { return std::nullopt; });
  ClientOptions o;
  o.max_in_flight = 1;
  o.max_queued = 1;
  Fixture f({"127.0.0.1/32"}, o);
  std::atomic<int> calls{0};
  for (int i = 0; i < 2; ++i) {
    Request r;
    r.url = url("127.0.0.1", l.port(), "/held");
    f.client.send(std::move(r), [&calls](Response) { ++calls; });
  }
  Request third;
  third.url = url("127.0.0.1", l.port(), "/refused");
  std::optional<Response> refused;
  f.client.send(std::move(third), [&refused](Response r) { refused = std::move(r); });
  ASSERT_TRUE(refused.has_value());  // inline, on this thread
  EXPECT_EQ(refused->error, kNetworkError);
  EXPECT_TRUE(refused->retryable);
  EXPECT_TRUE(has(refused->message, "pending")) << refused->message;
  f.client.stop();
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(l.count("/refused"), 0u);
}

TEST(Client, StopFailsWhatIsInFlightOnceEach) {
  Listener l("127.0.0.1", [](const RawRequest&) { return std::nullopt; });
  Fixture f({"127.0.0.1/32"});
  std::mutex mu;
  std::vector<Response> results;
  for (int i = 0; i < 3; ++i) {
    Request r;
    r.url = url("127.0.0.1", l.port(), "/held/" + std::to_string(i));
    f.client.send(std::move(r), [&](Response out) {
      std::lock_guard lock(mu);
      results.push_back(std::move(out));
    });
  }
  l.wait_requests(3);
  f.client.stop();
  ASSERT_EQ(results.size(), 3u);
  for (const Response& r : results) {
    EXPECT_EQ(r.error, kNetworkError);
    EXPECT_TRUE(r.retryable);
    EXPECT_TRUE(has(r.message, "stopped")) << r.message;
  }
  f.client.stop();  // idempotent
  std::optional<Response> after;
  Request r;
  r.url = url("127.0.0.1", l.port(), "/late");
  f.client.send(std::move(r), [&after](Response out) { after = std::move(out); });
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->error, kNetworkError);
}

// ---- The pure helpers -----------------------------------------------------------------------

TEST(Location, ResolvesLikeABrowser) {
  const std::string base = "http://a.example/b/c?d=1";
  auto at = [&](std::string_view loc) -> std::string {
    auto r = resolve_location(base, loc);
    return r ? *r : "ERROR";
  };
  EXPECT_EQ(at("x"), "http://a.example/b/x");
  EXPECT_EQ(at("/x?y=2"), "http://a.example/x?y=2");
  EXPECT_EQ(at("../../../up"), "http://a.example/up");
  EXPECT_EQ(at("?q=3"), "http://a.example/b/c?q=3");
  EXPECT_EQ(at("//evil.example/p"), "http://evil.example/p");
  EXPECT_EQ(at("https://b.example:8443/"), "https://b.example:8443/");
  EXPECT_EQ(at("  /trimmed  "), "http://a.example/trimmed");
  EXPECT_EQ(at("/a b"), "http://a.example/a%20b");
  EXPECT_EQ(at("file:///etc/passwd"), "file:///etc/passwd");
  EXPECT_EQ(at("gopher://127.0.0.1:70/_x"), "gopher://127.0.0.1:70/_x");
  EXPECT_EQ(at(""), "ERROR");
  EXPECT_EQ(at("/x\ty"), "ERROR");
  EXPECT_EQ(at(std::string("/x\0y", 4)), "ERROR");
}

TEST(Location, NextHopRules) {
  Hop h;
  h.method = "POST";
  h.target = *parse_target("https://api.example.com/start");
  h.headers = {{"Authorization", "a"}, {"cookie", "c"}, {"Content-Type", "application/json"},
               {"X-Other", "o"}};
  h.body = "{}";
  const std::string origin = h.target.origin;
  auto names = [](const Hop& x) {
    std::vector<std::string> out;
    for (const auto& [n, v] : x.headers) out.push_back(ascii_lower(n));
    return out;
  };
  using V = std::vector<std::string>;
  auto n303 = next_hop(h, 303, "/done", origin);
  ASSERT_TRUE(n303);
  EXPECT_EQ(n303->method, "GET");
  EXPECT_EQ(n303->body, "");
  EXPECT_EQ(names(*n303), (V{"authorization", "cookie", "x-other"}));
  auto n307 = next_hop(h, 307, "https://API.example.com:443/again", origin);
  ASSERT_TRUE(n307);
  EXPECT_EQ(n307->method, "POST");
  EXPECT_EQ(n307->body, "{}");
  EXPECT_EQ(names(*n307), (V{"authorization", "cookie", "content-type", "x-other"}));
  for (const char* other : {"http://api.example.com/", "https://api.example.com:444/",
                            "https://other.example.com/"}) {
    auto n = next_hop(h, 308, other, origin);
    ASSERT_TRUE(n) << other;
    EXPECT_EQ(names(*n), (V{"content-type", "x-other"})) << other;
  }
  Hop head = h;
  head.method = "HEAD";
  EXPECT_EQ(next_hop(head, 303, "/x", origin)->method, "HEAD");
  auto denied = next_hop(h, 302, "file:///etc/passwd", origin);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, Code::kPermissionDenied);
  EXPECT_TRUE(has(denied.error().message, "file")) << denied.error().message;
  EXPECT_EQ(next_hop(h, 302, "http://user:pw@api.example.com/", origin).error().code,
            Code::kPermissionDenied);
}

TEST(Dates, RetryAfterSecondsAndDates) {
  const Time ref = *parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT");
  EXPECT_EQ(to_unix_ms(ref), 1445412480000);
  EXPECT_EQ(parse_retry_after("120", ref), Millis(120000));
  EXPECT_EQ(parse_retry_after(" 0 ", ref), Millis(0));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:02 GMT", ref), Millis(2000));
  EXPECT_EQ(parse_retry_after("Wednesday, 21-Oct-15 07:28:05 GMT", ref), Millis(5000));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", ref), Millis(0));  // past
  EXPECT_EQ(parse_retry_after("99999999999999", ref), limits::kRetryAfterMax);
  EXPECT_EQ(parse_retry_after("86400", ref), limits::kRetryAfterMax);
  EXPECT_FALSE(parse_retry_after("", ref));
  EXPECT_FALSE(parse_retry_after("soon", ref));
  EXPECT_FALSE(parse_retry_after("-5", ref));
}

// (curl writes the percent-encodings of a query in lower case.)
TEST(Query, AppendedAndEncoded) {
  auto u = append_query("http://a.example/p?x=1#frag", {{"q", "a b&c=d"}, {"k=", "\xC3\xA9"}});
  ASSERT_TRUE(u);
  EXPECT_EQ(*u, "http://a.example/p?x=1&q=a%20b%26c%3dd&k%3d=%c3%a9#frag");
  EXPECT_EQ(*append_query("http://a.example", {{"a", "1"}}), "http://a.example/?a=1");
  EXPECT_FALSE(append_query("not a url", {{"a", "1"}}));
}

}  // namespace
}  // namespace venture::egress
