// Goal: the transport's behaviour on real loopback sockets: keep-alive, pipelining, the bounds
// (413, 431, 400, read timeout, connection limit), listener errors, graceful stop, answers given
// later from another thread (and dropped after stop), SSE and WebSocket streams (backlog, live,
// resume, gap filling from the store, end after a terminal event, run streams of interleaved
// runs), TLS, metrics and the raw request decoder.
// Method: a fake Application; a memory store and memory bus written to the way the engine does
// (append, then publish each stored event); raw POSIX sockets for HTTP/SSE so every byte is under
// the test's control; Beast clients on a private io_context for WebSocket and TLS. Every wait has
// a generous deadline so a bug fails the test instead of hanging it; nothing asserts a duration.
#include "api/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace venture::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

constexpr int kWaitMs = 20000;  // generous: a deadline against hangs, never an assertion

std::optional<std::string> query_param(const HttpRequest& r, std::string_view name) {
  for (const auto& [k, v] : r.query) {
    if (k == name) {
      return v;
    }
  }
  return std::nullopt;
}

// Echoes requests at /echo; streams at /v1/events (SSE) and /ws (WebSocket) with the spec taken
// from ?after=&run=&type=&end=1.
class FakeApp final : public Application {
 public:
  Outcome handle(const HttpRequest& r) override {
    Outcome o;
    if (r.path == "/echo") {
      o.route = "/echo";
      json::object body;
      body["method"] = r.method;
      body["path"] = r.path;
      json::array query;
      for (const auto& [k, v] : r.query) {
        query.push_back(json::array{json::string(k), json::string(v)});
      }
      body["query"] = std::move(query);
      json::object headers;
      for (const auto& [k, v] : r.headers) {
        headers[k] = v;
      }
      body["headers"] = std::move(headers);
      body["body"] = r.body;
      body["websocket_upgrade"] = r.websocket_upgrade;
      o.response.body = json::serialize(body);
      o.response.headers.emplace_back("X-Test", "yes");
      return o;
    }
    if (r.path == "/v1/events" || r.path == "/ws") {
      StreamSpec spec;
      spec.after_seq = std::stoll(query_param(r, "after").value_or("0"));
      spec.run = query_param(r, "run").value_or("");
      spec.type_prefix = query_param(r, "type").value_or("");
      spec.end_after_terminal = query_param(r, "end").has_value();
      o.route = r.path;
      if (r.path == "/ws") {
        o.websocket = spec;
      } else {
        o.sse = spec;
      }
      return o;
    }
    o.response.status = 404;
    o.response.content_type = "application/problem+json";
    o.response.body = R"({"type":"about:blank","title":"Not Found","status":404})";
    return o;
  }

  // /later parks its answer for the test to give from its own thread (as the engine's commit
  // callback does); everything else answers at once.
  void handle_async(const HttpRequest& r, Reply reply) override {
    if (r.path != "/later") {
      reply(handle(r));
      return;
    }
    std::lock_guard lock(mu_);
    later_.push_back(std::move(reply));
    cv_.notify_all();
  }

  // Waits (bounded) until `n` answers are parked and takes them.
  std::vector<Reply> take_later(std::size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(20000), [&] { return later_.size() >= n; });
    return std::exchange(later_, {});
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Reply> later_;
};

Outcome text_outcome(int status, std::string body) {
  Outcome o;
  o.route = "/later";
  o.response.status = status;
  o.response.body = std::move(body);
  return o;
}

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// A blocking loopback client on a raw socket; every read waits at most kWaitMs.
class Conn {
 public:
  explicit Conn(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Conn() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  bool connected() const { return fd_ >= 0; }

  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Appends what arrives; false on EOF, error or the deadline.
  bool read_more() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, kWaitMs) <= 0) {
      return false;
    }
    char chunk[8192];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  // True when the peer closes (EOF or reset) before the deadline; discards what arrives.
  bool closed_by_peer() {
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, kWaitMs) <= 0) {
        return false;
      }
      char chunk[8192];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) {
        return true;
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  std::optional<Response> read_response() {
    std::size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!read_more()) {
        return std::nullopt;
      }
    }
    Response r;
    const std::string head = buffer_.substr(0, head_end);
    std::size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    r.status = std::stoi(status_line.substr(9, 3));
    while (line_end != std::string::npos && line_end < head.size()) {
      const std::size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end - start);
      const std::size_t colon = line.find(':');
      if (colon == std::string::npos) {
        continue;
      }
      std::string name = line.substr(0, colon);
      for (char& c : name) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    const std::size_t length =
        r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
    while (buffer_.size() < head_end + 4 + length) {
      if (!read_more()) {
        return std::nullopt;
      }
    }
    r.body = buffer_.substr(head_end + 4, length);
    buffer_.erase(0, head_end + 4 + length);
    return r;
  }

  std::string& buffer() { return buffer_; }

 private:
  int fd_ = -1;
  std::string buffer_;
};

struct SseEvent {
  int64_t seq = 0;
  std::string type;
  json::value data;
};

// Parses complete SSE blocks from the front of `buffer` (after the response head), dropping
// comments.
void take_sse_events(std::string& buffer, std::vector<SseEvent>& out) {
  std::size_t end;
  while ((end = buffer.find("\n\n")) != std::string::npos) {
    const std::string block = buffer.substr(0, end);
    buffer.erase(0, end + 2);
    SseEvent e;
    bool has_data = false;
    std::size_t pos = 0;
    while (pos <= block.size()) {
      std::size_t nl = block.find('\n', pos);
      if (nl == std::string::npos) {
        nl = block.size();
      }
      const std::string line = block.substr(pos, nl - pos);
      if (line.starts_with("id: ")) {
        e.seq = std::stoll(line.substr(4));
      } else if (line.starts_with("event: ")) {
        e.type = line.substr(7);
      } else if (line.starts_with("data: ")) {
        e.data = json::parse(line.substr(6));
        has_data = true;
      }
      pos = nl + 1;
    }
    if (has_data) {
      out.push_back(std::move(e));
    }
  }
}

// Opens an SSE stream; reads until `n` events arrived (or the stream ended / the deadline).
class SseClient {
 public:
  SseClient(uint16_t port, const std::string& target) : conn_(port) {
    EXPECT_TRUE(conn_.connected());
    EXPECT_TRUE(
        conn_.send("GET " + target + " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"));
    std::size_t head_end;
    while ((head_end = conn_.buffer().find("\r\n\r\n")) == std::string::npos) {
      if (!conn_.read_more()) {
        ADD_FAILURE() << "no SSE response head";
        return;
      }
    }
    head_ = conn_.buffer().substr(0, head_end);
    conn_.buffer().erase(0, head_end + 4);
  }
  const std::string& head() const { return head_; }
  std::vector<SseEvent>& events() { return events_; }
  // False if the stream ended or the deadline passed first.
  bool wait_for(std::size_t n) {
    take_sse_events(conn_.buffer(), events_);
    while (events_.size() < n) {
      if (!conn_.read_more()) {
        return false;
      }
      take_sse_events(conn_.buffer(), events_);
    }
    return true;
  }
  // True when the server ends the stream; collects what arrives before.
  bool wait_closed() {
    const bool closed = conn_.closed_by_peer();
    take_sse_events(conn_.buffer(), events_);
    return closed;
  }

 private:
  Conn conn_;
  std::string head_;
  std::vector<SseEvent> events_;
};

std::vector<int64_t> seqs_of(const std::vector<SseEvent>& events) {
  std::vector<int64_t> out;
  for (const auto& e : events) {
    out.push_back(e.seq);
  }
  return out;
}

std::vector<int64_t> range(int64_t first, int64_t last) {
  std::vector<int64_t> out;
  for (int64_t s = first; s <= last; ++s) {
    out.push_back(s);
  }
  return out;
}

class ServerTest : public ::testing::Test {
 protected:
  ServerTest() : random_(7) {
    storage::Options o;
    o.fsync = false;
    store_ = storage::new_memory_store(o, clock_, random_);
    bus_ = bus::new_memory_bus(clock_);
  }
  ~ServerTest() override {
    if (server_) {
      server_->stop();
    }
  }

  static ServerOptions options() {
    ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.io_threads = 2;
    o.blocking_threads = 2;
    return o;
  }

  void start(ServerOptions o = options()) {
    server_ = std::make_unique<Server>(o, app_, *store_, *bus_, metrics_, clock_);
    const Status s = server_->start();
    ASSERT_TRUE(s) << s.error().to_string();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }

  std::string new_run() { return base::new_id("run", clock_, random_); }

  // Appends events of `run` (one per type) in one batch; publishes them the way the engine does
  // unless `publish` is false. Returns the stored events.
  std::vector<storage::Event> append(const std::string& run, const std::vector<std::string>& types,
                                     bool publish = true) {
    storage::Batch batch;
    for (std::size_t i = 0; i < types.size(); ++i) {
      storage::Event e;
      e.id = base::new_id("evt", clock_, random_);
      e.type = types[i];
      e.time = clock_.now();
      e.run = run;
      e.node = types[i].starts_with("node.") ? "a" : "";
      e.data = json::object{{"i", static_cast<int64_t>(i)}};
      batch.events.push_back(std::move(e));
    }
    auto appended = store_->append(std::move(batch));
    EXPECT_TRUE(appended) << appended.error().to_string();
    if (!appended) {
      return {};
    }
    if (publish) {
      for (const storage::Event& e : appended->events) {
        EXPECT_TRUE(bus_->publish(e.type, storage::event_to_json(e)));
      }
    }
    return appended->events;
  }

  base::RealClock clock_;
  base::SeededRandom random_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<bus::Bus> bus_;
  FakeApp app_;
  Metrics metrics_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Request / response

TEST_F(ServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  start();
  Conn c(port_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto first = c.read_response();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(first->headers["server"], "venture");
  EXPECT_EQ(first->headers["content-type"], "application/json");
  EXPECT_EQ(first->headers["x-test"], "yes");
  ASSERT_TRUE(c.send("POST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
  auto second = c.read_response();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 200);
  const json::object body = json::parse(second->body).as_object();
  EXPECT_EQ(body.at("method").as_string(), "POST");
  EXPECT_EQ(body.at("body").as_string(), "hello");
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  Conn c(port_);
  ASSERT_TRUE(
      c.send("GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
             "POST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
             "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto first = c.read_response();
  auto second = c.read_response();
  auto third = c.read_response();
  ASSERT_TRUE(first && second && third);
  EXPECT_EQ(json::parse(first->body).at("query").as_array()[0].as_array()[1].as_string(), "1");
  EXPECT_EQ(json::parse(second->body).at("body").as_string(), "abc");
  EXPECT_EQ(third->status, 404);
}

TEST_F(ServerTest, AnswerGivenLaterFromAnotherThreadIsWrittenInOrder) {
  start();
  Conn c(port_);
  ASSERT_TRUE(
      c.send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::vector<Reply> parked = app_.take_later(1);
  ASSERT_EQ(parked.size(), 1u);
  std::jthread answer([reply = parked[0]] { reply(text_outcome(201, R"({"later":true})")); });
  auto first = c.read_response();
  auto second = c.read_response();
  ASSERT_TRUE(first);
  ASSERT_TRUE(second);
  EXPECT_EQ(first->status, 201);
  EXPECT_EQ(first->body, R"({"later":true})");
  EXPECT_EQ(second->status, 200);
}

TEST_F(ServerTest, AnswerAfterStopIsDroppedWithoutHarm) {
  start();
  Conn c(port_);
  ASSERT_TRUE(c.send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::vector<Reply> parked = app_.take_later(1);
  ASSERT_EQ(parked.size(), 1u);
  server_->stop();  // waits out the drain bound for the answer that never comes, then drops it
  parked[0](text_outcome(200, "{}"));  // a no-op now
  parked.clear();
  EXPECT_FALSE(c.read_response());
}

TEST_F(ServerTest, DecodesTargetAndLowersHeaderNames) {
  start();
  Conn c(port_);
  ASSERT_TRUE(c.send("GET /echo?a=1+2&b=%2Fx&flag HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: V\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  const json::value body = json::parse(r->body);
  EXPECT_EQ(body.at("path").as_string(), "/echo");
  const json::array& q = body.at("query").as_array();
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q[0].as_array()[1].as_string(), "1 2");
  EXPECT_EQ(q[1].as_array()[1].as_string(), "/x");
  EXPECT_EQ(q[2].as_array()[0].as_string(), "flag");
  EXPECT_EQ(body.at("headers").at("x-mixed-case").as_string(), "V");
}

TEST_F(ServerTest, ContentLengthOverTheBoundIs413) {
  ServerOptions o = options();
  o.body_bytes_max = 1024;
  start(o);
  Conn c(port_);
  ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->headers["content-type"], "application/problem+json");
  EXPECT_EQ(json::parse(r->body).at("status").as_int64(), 413);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(ServerTest, ChunkedBodyOverTheBoundIs413) {
  ServerOptions o = options();
  o.body_bytes_max = 1024;
  start(o);
  Conn c(port_);
  std::string request = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) {
    request += "400\r\n" + std::string(1024, 'x') + "\r\n";
  }
  request += "0\r\n\r\n";
  ASSERT_TRUE(c.send(request));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

TEST_F(ServerTest, ChunkedBodyWithinTheBoundIsDecoded) {
  start();
  Conn c(port_);
  ASSERT_TRUE(
      c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->body).at("body").as_string(), "abcde");
}

TEST_F(ServerTest, HeadersOverTheBoundAre431) {
  ServerOptions o = options();
  o.header_bytes_max = 2048;
  start(o);
  Conn c(port_);
  ASSERT_TRUE(
      c.send("GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  EXPECT_EQ(r->headers["content-type"], "application/problem+json");
}

TEST_F(ServerTest, MalformedRequestLineIs400AndCloses) {
  start();
  Conn c(port_);
  ASSERT_TRUE(c.send("THIS IS NOT HTTP\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  const json::value body = json::parse(r->body);
  EXPECT_EQ(body.at("type").as_string(), "https://venture.dev/problems/bad-request");
  EXPECT_TRUE(body.at("errors").as_array().empty());
  EXPECT_EQ(body.at("title").as_string(), "Bad Request");
  EXPECT_EQ(body.at("status").as_int64(), 400);
  EXPECT_TRUE(body.at("detail").is_string());
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(ServerTest, BadHeaderAndBadTargetAre400) {
  start();
  for (const std::string& request :
       {std::string("GET /echo HTTP/1.1\r\nBad Header\r\n\r\n"),
        std::string("GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        std::string("GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("GET http://example.com/echo HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("GET /echo HTTP/2.0\r\nHost: x\r\n\r\n")}) {
    Conn c(port_);
    ASSERT_TRUE(c.send(request));
    auto r = c.read_response();
    ASSERT_TRUE(r) << request;
    EXPECT_EQ(r->status, 400) << request;
  }
}

TEST_F(ServerTest, SlowClientIsDisconnected) {
  ServerOptions o = options();
  o.read_timeout = Millis(200);
  start(o);
  Conn c(port_);
  ASSERT_TRUE(c.send("GET /echo HTTP/1.1\r\nHost: x\r\n"));  // never finishes the head
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_TRUE(c.buffer().empty());  // closed without an answer
}

TEST_F(ServerTest, ConnectionsOverTheBoundAreClosed) {
  ServerOptions o = options();
  o.connections_max = 1;
  start(o);
  Conn first(port_);
  ASSERT_TRUE(first.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(first.read_response());  // accepted and counted
  Conn second(port_);
  ASSERT_TRUE(second.connected());  // the kernel accepts; the server then closes it
  EXPECT_TRUE(second.closed_by_peer());
  ASSERT_TRUE(first.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(first.read_response());
}

TEST_F(ServerTest, StopAcceptingRefusesNewConnectionsButServesOpenOnes) {
  start();
  Conn open(port_);
  ASSERT_TRUE(open.connected());
  ASSERT_TRUE(open.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(open.read_response());
  server_->stop_accepting();
  Conn refused(port_);
  EXPECT_FALSE(refused.connected());
  ASSERT_TRUE(open.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = open.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, StopClosesIdleConnectionsAndIsIdempotent) {
  start();
  Conn idle(port_);
  ASSERT_TRUE(idle.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(idle.read_response());
  server_->stop();
  EXPECT_TRUE(idle.closed_by_peer());
  server_->stop();
}

TEST_F(ServerTest, PortInUseIsUnavailableWithAPlainMessage) {
  start();
  ServerOptions o = options();
  o.port = port_;
  Server second(o, app_, *store_, *bus_, metrics_, clock_);
  const Status s = second.start();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kUnavailable);
  EXPECT_EQ(s.error().message, "127.0.0.1:" + std::to_string(port_) + " is already in use");
}

TEST_F(ServerTest, UnparsableHostIsInvalidArgument) {
  ServerOptions o = options();
  o.host = "not an address";
  Server server(o, app_, *store_, *bus_, metrics_, clock_);
  const Status s = server.start();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kInvalidArgument);
}

TEST_F(ServerTest, UnreadableTlsFilesAreInvalidArgument) {
  ServerOptions o = options();
  o.tls_cert_file = "/nonexistent/cert.pem";
  o.tls_key_file = "/nonexistent/key.pem";
  Server server(o, app_, *store_, *bus_, metrics_, clock_);
  const Status s = server.start();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// SSE

TEST_F(ServerTest, SseServesBacklogThenLiveThenResumesWithoutGapsOrDuplicates) {
  const std::string run = new_run();
  const std::string other = new_run();
  append(run, {"run.submitted", "run.started", "node.ready"});
  append(other, {"run.submitted"});
  start();
  std::vector<int64_t> all;
  {
    SseClient sse(port_, "/v1/events?run=" + run);
    EXPECT_NE(sse.head().find("200 OK"), std::string::npos);
    EXPECT_NE(sse.head().find("text/event-stream"), std::string::npos);
    EXPECT_NE(sse.head().find("Cache-Control: no-cache"), std::string::npos);
    ASSERT_TRUE(sse.wait_for(3));
    append(run, {"node.started", "node.succeeded"});
    append(other, {"run.started"});
    append(run, {"run.succeeded"});
    ASSERT_TRUE(sse.wait_for(6));
    for (const SseEvent& e : sse.events()) {
      EXPECT_EQ(e.data.at("run").as_string(), run);
      EXPECT_EQ(e.data.at("seq").as_int64(), e.seq);
      EXPECT_EQ(e.data.at("type").as_string(), e.type);
      EXPECT_TRUE(e.data.as_object().contains("hash"));
    }
    all = seqs_of(sse.events());
    EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
    EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
    EXPECT_EQ(sse.events()[3].type, "node.started");
  }
  // Resume after the third event: exactly the last three again.
  SseClient resumed(port_, "/v1/events?run=" + run + "&after=" + std::to_string(all[2]));
  ASSERT_TRUE(resumed.wait_for(3));
  EXPECT_EQ(seqs_of(resumed.events()), std::vector<int64_t>(all.begin() + 3, all.end()));
}

TEST_F(ServerTest, SseTypePrefixFilters) {
  const std::string run = new_run();
  append(run, {"run.submitted", "node.ready", "node.started", "run.started"});
  start();
  SseClient sse(port_, "/v1/events?type=node.");
  ASSERT_TRUE(sse.wait_for(2));
  append(run, {"run.paused", "node.succeeded"});
  ASSERT_TRUE(sse.wait_for(3));
  for (const SseEvent& e : sse.events()) {
    EXPECT_TRUE(e.type.starts_with("node.")) << e.type;
  }
  EXPECT_EQ(sse.events()[2].type, "node.succeeded");
}

TEST_F(ServerTest, SseFillsEventsTheBusNeverCarriedFromTheStore) {
  const std::string run = new_run();
  start();
  SseClient sse(port_, "/v1/events");
  append(run, {"run.submitted"});
  append(run, {"run.started"}, /*publish=*/false);  // a gap in the bus feed
  append(run, {"node.ready"});
  ASSERT_TRUE(sse.wait_for(3));
  // A trailing unpublished event (as a checkpoint is) arrives through the hub's resync.
  append(run, {"node.started"}, /*publish=*/false);
  ASSERT_TRUE(sse.wait_for(4));
  const std::vector<int64_t> seqs = seqs_of(sse.events());
  EXPECT_EQ(seqs, range(seqs.front(), seqs.front() + static_cast<int64_t>(seqs.size()) - 1));
  EXPECT_EQ(sse.events()[1].type, "run.started");
  EXPECT_EQ(sse.events()[3].type, "node.started");
}

TEST_F(ServerTest, SseEndsAfterTheRunsTerminalEvent) {
  const std::string run = new_run();
  const std::string other = new_run();
  append(run, {"run.submitted", "run.started"});
  start();
  SseClient sse(port_, "/v1/events?end=1&run=" + run);
  ASSERT_TRUE(sse.wait_for(2));
  append(other, {"run.succeeded"});  // another run's terminal event does not end it
  append(run, {"node.succeeded", "run.failed"});
  EXPECT_TRUE(sse.wait_closed());
  ASSERT_EQ(sse.events().size(), 4u);
  EXPECT_EQ(sse.events().back().type, "run.failed");
}

TEST_F(ServerTest, SseForAnAlreadyTerminalRunEndsAfterTheBacklog) {
  const std::string run = new_run();
  append(run, {"run.submitted", "run.started", "run.cancelled"});
  start();
  SseClient sse(port_, "/v1/events?end=1&run=" + run);
  EXPECT_TRUE(sse.wait_closed());
  ASSERT_EQ(sse.events().size(), 3u);
  EXPECT_EQ(sse.events().back().type, "run.cancelled");
}

TEST_F(ServerTest, SseThousandSubscribersEachGetEveryEvent) {
  const std::string run = new_run();
  append(run, {"run.submitted"});
  start();
  std::vector<std::unique_ptr<SseClient>> clients;
  for (int i = 0; i < 1000; ++i) {
    clients.push_back(std::make_unique<SseClient>(port_, "/v1/events?run=" + run));
  }
  for (int i = 0; i < 20; ++i) {
    append(run, {"node.started"});
  }
  for (auto& c : clients) {
    ASSERT_TRUE(c->wait_for(21));
    const std::vector<int64_t> seqs = seqs_of(c->events());
    EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
    EXPECT_EQ(std::adjacent_find(seqs.begin(), seqs.end()), seqs.end());
  }
}

TEST_F(ServerTest, SseRunStreamsOfInterleavedRunsGetOnlyTheirRunsEvents) {
  std::vector<std::string> runs;
  for (int i = 0; i < 5; ++i) {
    runs.push_back(new_run());
    append(runs.back(), {"run.submitted"});
  }
  start();
  std::vector<std::unique_ptr<SseClient>> clients;
  for (const std::string& run : runs) {
    clients.push_back(std::make_unique<SseClient>(port_, "/v1/events?run=" + run));
    clients.push_back(std::make_unique<SseClient>(port_, "/v1/events?type=node.&run=" + run));
  }
  {
    // A subscriber that leaves while parked on its run takes its waiter back; the run's later
    // events still reach the others.
    SseClient gone(port_, "/v1/events?run=" + runs[0]);
    ASSERT_TRUE(gone.wait_for(1));
  }
  for (int round = 0; round < 3; ++round) {
    for (const std::string& run : runs) {
      append(run, {"node.started", "node.succeeded"});
    }
  }
  for (std::size_t i = 0; i < clients.size(); ++i) {
    const bool nodes_only = i % 2 == 1;
    ASSERT_TRUE(clients[i]->wait_for(nodes_only ? 6 : 7));
    const std::vector<int64_t> seqs = seqs_of(clients[i]->events());
    EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
    EXPECT_EQ(std::adjacent_find(seqs.begin(), seqs.end()), seqs.end());
    for (const SseEvent& e : clients[i]->events()) {
      EXPECT_EQ(e.data.at("run").as_string(), runs[i / 2]);
      if (nodes_only) {
        EXPECT_TRUE(e.type.starts_with("node.")) << e.type;
      }
    }
  }
}

TEST_F(ServerTest, StopEndsOpenStreams) {
  start();
  SseClient sse(port_, "/v1/events");
  append(new_run(), {"run.submitted"});
  ASSERT_TRUE(sse.wait_for(1));
  server_->stop();
  EXPECT_TRUE(sse.wait_closed());
}

// ---------------------------------------------------------------------------------------------
// WebSocket

struct WsResult {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<json::value> frames;
  bool done = false;
  bool closed_by_server = false;
  int close_code = 0;
  std::string error;
};

asio::awaitable<void> ws_client(uint16_t port, std::string target, WsResult* out) {
  websocket::stream<beast::tcp_stream> ws(co_await asio::this_coro::executor);
  beast::get_lowest_layer(ws).expires_after(std::chrono::seconds(30));
  auto [cec] = co_await beast::get_lowest_layer(ws).async_connect(
      tcp::endpoint(asio::ip::address_v4::loopback(), port), asio::as_tuple(asio::use_awaitable));
  beast::get_lowest_layer(ws).expires_never();
  if (!cec) {
    auto [hec] =
        co_await ws.async_handshake("127.0.0.1", target, asio::as_tuple(asio::use_awaitable));
    cec = hec;
  }
  if (cec) {
    std::lock_guard lock(out->mu);
    out->error = cec.message();
  }
  while (!cec) {
    beast::flat_buffer buffer;
    auto [ec, n] = co_await ws.async_read(buffer, asio::as_tuple(asio::use_awaitable));
    std::lock_guard lock(out->mu);
    if (ec) {
      out->closed_by_server = ec == websocket::error::closed;
      out->close_code = ws.reason().code;
      break;
    }
    EXPECT_TRUE(ws.got_text());
    out->frames.push_back(json::parse(beast::buffers_to_string(buffer.data())));
    out->cv.notify_all();
  }
  std::lock_guard lock(out->mu);
  out->done = true;
  out->cv.notify_all();
}

// Runs a WebSocket client on its own io_context and thread.
class WsClient {
 public:
  WsClient(uint16_t port, std::string target) {
    asio::co_spawn(ioc_, ws_client(port, std::move(target), &result_), asio::detached);
    thread_ = std::thread([this] { ioc_.run_for(std::chrono::seconds(60)); });
  }
  ~WsClient() {
    ioc_.stop();
    thread_.join();
  }
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  bool wait_for(std::size_t n) {
    std::unique_lock lock(result_.mu);
    return result_.cv.wait_for(lock, std::chrono::milliseconds(kWaitMs), [&] {
      return result_.frames.size() >= n || result_.done;
    }) && result_.frames.size() >= n;
  }
  bool wait_done() {
    std::unique_lock lock(result_.mu);
    return result_.cv.wait_for(lock, std::chrono::milliseconds(kWaitMs),
                               [&] { return result_.done; });
  }
  WsResult& result() { return result_; }

 private:
  asio::io_context ioc_;
  WsResult result_;
  std::thread thread_;
};

TEST_F(ServerTest, WebSocketServesBacklogLiveAndEndsAfterTerminal) {
  const std::string run = new_run();
  append(run, {"run.submitted", "run.started"});
  start();
  WsClient ws(port_, "/ws?end=1&run=" + run);
  ASSERT_TRUE(ws.wait_for(2)) << ws.result().error;
  append(run, {"node.succeeded"});
  append(new_run(), {"run.started"});
  append(run, {"run.succeeded"});
  ASSERT_TRUE(ws.wait_done());
  std::lock_guard lock(ws.result().mu);
  const auto& frames = ws.result().frames;
  ASSERT_EQ(frames.size(), 4u);
  for (std::size_t i = 1; i < frames.size(); ++i) {
    EXPECT_LT(frames[i - 1].at("seq").as_int64(), frames[i].at("seq").as_int64());
    EXPECT_EQ(frames[i].at("run").as_string(), run);
  }
  EXPECT_EQ(frames.back().at("type").as_string(), "run.succeeded");
  EXPECT_TRUE(ws.result().closed_by_server);
  EXPECT_EQ(ws.result().close_code, static_cast<int>(websocket::close_code::normal));
}

TEST_F(ServerTest, WebSocketResumesAfterSeq) {
  const std::string run = new_run();
  auto events = append(run, {"run.submitted", "run.started", "node.ready", "node.started"});
  start();
  WsClient ws(port_, "/ws?run=" + run + "&after=" + std::to_string(events[1].seq));
  ASSERT_TRUE(ws.wait_for(2));
  append(run, {"node.succeeded"});
  ASSERT_TRUE(ws.wait_for(3));
  std::lock_guard lock(ws.result().mu);
  const auto& frames = ws.result().frames;
  EXPECT_EQ(frames[0].at("seq").as_int64(), events[2].seq);
  EXPECT_EQ(frames[1].at("seq").as_int64(), events[3].seq);
  EXPECT_EQ(frames[2].at("type").as_string(), "node.succeeded");
}

TEST_F(ServerTest, WebSocketEndpointWithoutUpgradeIs400) {
  start();
  Conn c(port_);
  ASSERT_TRUE(c.send("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->headers["content-type"], "application/problem+json");
}

// ---------------------------------------------------------------------------------------------
// TLS

struct TlsResult {
  std::string error;
  int status = 0;
  std::string body;
};

// Sends `requests` POST /echo requests, or one GET of `stream_target` (read to the end), over TLS.
asio::awaitable<void> tls_client(uint16_t port, asio::ssl::context* context, int requests,
                                 std::string stream_target, TlsResult* out) {
  beast::ssl_stream<beast::tcp_stream> stream(co_await asio::this_coro::executor, *context);
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
  auto [ec] = co_await beast::get_lowest_layer(stream).async_connect(
      tcp::endpoint(asio::ip::address_v4::loopback(), port), asio::as_tuple(asio::use_awaitable));
  if (!ec) {
    std::tie(ec) = co_await stream.async_handshake(asio::ssl::stream_base::client,
                                                   asio::as_tuple(asio::use_awaitable));
  }
  for (int i = 0; i < requests && !ec; ++i) {
    http::request<http::string_body> req{http::verb::post, "/echo", 11};
    if (!stream_target.empty()) {
      req = http::request<http::string_body>{http::verb::get, stream_target, 11};
    }
    req.set(http::field::host, "localhost");
    if (stream_target.empty()) {
      req.body() = "secret";
    }
    req.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, req, asio::as_tuple(asio::use_awaitable));
    ec = wec;
    if (ec) {
      break;
    }
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    auto [rec, rn] =
        co_await http::async_read(stream, buffer, res, asio::as_tuple(asio::use_awaitable));
    ec = rec;
    out->status = static_cast<int>(res.result_int());
    out->body = res.body();
  }
  if (ec) {
    out->error = ec.message();
  }
}

TlsResult run_tls_client(uint16_t port, asio::ssl::context& context, int requests,
                         std::string stream_target) {
  asio::io_context ioc;
  TlsResult result;
  asio::co_spawn(ioc, tls_client(port, &context, requests, std::move(stream_target), &result),
                 asio::detached);
  ioc.run_for(std::chrono::seconds(60));
  return result;
}

TEST_F(ServerTest, TlsRoundTrip) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("venture-tls-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string();
  const std::string key = (dir / "key.pem").string();
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -keyout " +
      key + " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0);
  ServerOptions o = options();
  o.tls_cert_file = cert;
  o.tls_key_file = key;
  start(o);

  asio::ssl::context client(asio::ssl::context::tls_client);
  client.set_verify_mode(asio::ssl::verify_peer);
  client.load_verify_file(cert);
  // Two requests on one connection (keep-alive over TLS).
  const TlsResult echo = run_tls_client(port_, client, 2, "");
  EXPECT_EQ(echo.error, "");
  EXPECT_EQ(echo.status, 200);
  EXPECT_EQ(json::parse(echo.body).at("body").as_string(), "secret");

  // An SSE stream over TLS, read to its end (the run is terminal).
  const std::string run = new_run();
  append(run, {"run.submitted", "run.started", "run.succeeded"});
  const TlsResult sse = run_tls_client(port_, client, 1, "/v1/events?end=1&run=" + run);
  EXPECT_TRUE(sse.error.empty() || sse.error == "stream truncated") << sse.error;
  EXPECT_EQ(sse.status, 200);
  std::string body = sse.body;
  std::vector<SseEvent> events;
  take_sse_events(body, events);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events.back().type, "run.succeeded");

  // Plain HTTP on the TLS port is not answered as HTTP.
  Conn plain(port_);
  ASSERT_TRUE(plain.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(plain.closed_by_peer());
  EXPECT_EQ(plain.buffer().find("HTTP/1.1 200"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Metrics

TEST_F(ServerTest, MetricsCountRequestsAndStreams) {
  start();
  {
    Conn c(port_);
    ASSERT_TRUE(c.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\nBROKEN\r\n\r\n"));
    ASSERT_TRUE(c.read_response());
    ASSERT_TRUE(c.read_response());  // the 400
  }
  const std::string run = new_run();
  append(run, {"run.submitted"});
  SseClient sse(port_, "/v1/events?run=" + run);
  ASSERT_TRUE(sse.wait_for(1));
  const std::string text = metrics_.render();
  for (const std::string name :
       {"venture_http_requests_total{method=\"GET\",route=\"/echo\",status=\"200\"} 1",
        "status=\"400\"", "route=\"unmatched\"",
        "venture_http_request_duration_seconds_bucket{route=\"/echo\",le=",
        "venture_stream_subscribers{kind=\"sse\"} 1",
        "venture_stream_subscribers{kind=\"websocket\"} 0", "venture_stream_events_sent_total",
        "venture_build_info{version=", "process_cpu_seconds_total", "process_resident_memory_bytes",
        "process_open_fds", "process_max_fds", "process_start_time_seconds",
        "process_virtual_memory_bytes"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name << "\n" << text;
  }
}

TEST(MetricsTest, CollectorsAreAppended) {
  Metrics metrics;
  metrics.add_collector([] { return std::string("venture_engine_runs_active 3\n"); });
  EXPECT_NE(metrics.render().find("venture_engine_runs_active 3\n"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// decode_raw_request

TEST(DecodeRawRequestTest, DecodesPathQueryHeadersAndBody) {
  auto r = decode_raw_request(
      "POST /v1/runs/x%20y?a=1+2&b=%2F&c HTTP/1.1\r\nHost: h\r\nX-Up: V\r\n"
      "Content-Length: 4\r\n\r\nbody",
      ServerOptions{});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->method, "POST");
  EXPECT_EQ(r->target, "/v1/runs/x%20y?a=1+2&b=%2F&c");
  EXPECT_EQ(r->path, "/v1/runs/x y");
  const std::vector<std::pair<std::string, std::string>> query = {
      {"a", "1 2"}, {"b", "/"}, {"c", ""}};
  EXPECT_EQ(r->query, query);
  ASSERT_GE(r->headers.size(), 2u);
  EXPECT_EQ(r->headers[1].first, "x-up");
  EXPECT_EQ(r->headers[1].second, "V");
  EXPECT_EQ(r->body, "body");
  EXPECT_FALSE(r->websocket_upgrade);
}

TEST(DecodeRawRequestTest, PlusInThePathStaysAPlus) {
  auto r = decode_raw_request("GET /a+b HTTP/1.1\r\nHost: h\r\n\r\n", ServerOptions{});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->path, "/a+b");
}

TEST(DecodeRawRequestTest, ChunkedBody) {
  auto r = decode_raw_request(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
      ServerOptions{});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->body, "ab");
}

TEST(DecodeRawRequestTest, WebSocketUpgrade) {
  auto r = decode_raw_request(
      "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
      ServerOptions{});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->websocket_upgrade);
}

TEST(DecodeRawRequestTest, RejectsBadInputWithTheServersProblems) {
  ServerOptions o;
  o.header_bytes_max = 1024;
  o.body_bytes_max = 16;
  struct Case {
    std::string bytes;
    Code code;
  };
  const std::vector<Case> cases = {
      {"GET /a%00 HTTP/1.1\r\nHost: h\r\n\r\n", Code::kInvalidArgument},
      {"GET /a%4 HTTP/1.1\r\nHost: h\r\n\r\n", Code::kInvalidArgument},
      {"GET a HTTP/1.1\r\nHost: h\r\n\r\n", Code::kInvalidArgument},
      {"GET * HTTP/1.1\r\nHost: h\r\n\r\n", Code::kInvalidArgument},
      {"GET / HTTP/1.1\r\nHost: h\r\n", Code::kInvalidArgument},  // incomplete
      {"", Code::kInvalidArgument},
      {"GET / HTTP/9.9\r\nHost: h\r\n\r\n", Code::kInvalidArgument},
      {"GET / HTTP/1.1\r\nX: " + std::string(2000, 'a') + "\r\n\r\n", Code::kResourceExhausted},
      {"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n" + std::string(17, 'a'),
       Code::kResourceExhausted},
      {"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab", Code::kInvalidArgument},
  };
  for (const Case& c : cases) {
    auto r = decode_raw_request(c.bytes, o);
    ASSERT_FALSE(r) << c.bytes;
    EXPECT_EQ(r.error().code, c.code) << c.bytes;
  }
}

}  // namespace
}  // namespace venture::api
