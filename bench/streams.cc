// `venture bench streams`: see streams.h and docs/streams.md. One thread: blocking sockets for
// the setup requests, then every subscriber on one epoll set.
#include "bench/streams.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace venture::bench {
namespace {

// Connects still in progress at once (the listen backlog is 4096 on this kind of machine).
constexpr std::size_t kConnectingMax = 512;
// Setup connections that submit the runs (pipelined, so their commits batch).
constexpr int kSubmitConnections = 32;
constexpr int64_t kTimeoutMs = 300000;
constexpr std::size_t kReadBytes = 64 << 10;

int64_t now_us(base::Clock& clock) {
  return std::chrono::duration_cast<std::chrono::microseconds>(clock.now().time_since_epoch())
      .count();
}

double cpu_seconds_self() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// utime + stime of another process from /proc/<pid>/stat; 0 when unreadable.
double cpu_seconds_of(int pid) {
  if (pid <= 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> f;
  std::size_t i = close + 2;
  while (i < text.size()) {
    const std::size_t sp = text.find(' ', i);
    f.push_back(text.substr(i, sp == std::string::npos ? std::string::npos : sp - i));
    if (sp == std::string::npos) break;
    i = sp + 1;
  }
  if (f.size() < 13) return 0;
  const auto ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return (std::strtod(f[11].c_str(), nullptr) + std::strtod(f[12].c_str(), nullptr)) / ticks;
}

Result<int> open_socket(uint16_t port, bool blocking) {
  const int fd = socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
  if (fd < 0) return unavailable_error(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API.
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    const std::string why = std::strerror(errno);
    close(fd);
    return unavailable_error("cannot connect to port " + std::to_string(port) + ": " + why);
  }
  return fd;
}

Status send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return unavailable_error("send failed");
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return ok();
}

std::string http_request(std::string_view method, std::string_view path, const std::string& token,
                         std::string_view body) {
  std::string r;
  r += method;
  r += ' ';
  r += path;
  r += " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token +
       "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
       "\r\n\r\n";
  r += body;
  return r;
}

// A blocking keep-alive connection for the setup requests.
class Conn {
 public:
  Conn() = default;
  ~Conn() {
    if (fd_ >= 0) close(fd_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  Status connect(uint16_t port) {
    VENTURE_ASSIGN_OR_RETURN(fd_, open_socket(port, true));
    return ok();
  }
  int fd() const { return fd_; }
  // Reads one response: (status, body).
  Result<std::pair<int, std::string>> read_response() {
    std::size_t end = 0;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) VENTURE_RETURN_IF_ERROR(fill());
    const int status = std::atoi(buf_.c_str() + 9);
    std::size_t length = 0;
    std::string head = buf_.substr(0, end);
    std::transform(head.begin(), head.end(), head.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; });
    if (const auto at = head.find("content-length: "); at != std::string::npos) {
      length = std::strtoul(head.c_str() + at + 16, nullptr, 10);
    }
    while (buf_.size() < end + 4 + length) VENTURE_RETURN_IF_ERROR(fill());
    std::string body = buf_.substr(end + 4, length);
    buf_.erase(0, end + 4 + length);
    return std::pair<int, std::string>(status, std::move(body));
  }
  Result<std::pair<int, std::string>> call(std::string_view method, std::string_view path,
                                           const std::string& token, std::string_view body) {
    VENTURE_RETURN_IF_ERROR(send_all(fd_, http_request(method, path, token, body)));
    return read_response();
  }

 private:
  Status fill() {
    std::array<char, 16384> chunk{};
    const ssize_t n = recv(fd_, chunk.data(), chunk.size(), 0);
    if (n <= 0) return unavailable_error("the server closed the connection");
    buf_.append(chunk.data(), static_cast<std::size_t>(n));
    return ok();
  }
  int fd_ = -1;
  std::string buf_;
};

Status expect(const Result<std::pair<int, std::string>>& r, int status, std::string_view what) {
  if (!r) return r.error();
  if (r->first != status) {
    return unavailable_error(std::string(what) + " answered " + std::to_string(r->first) + ": " +
                             r->second);
  }
  return ok();
}

// Registers the chain and submits the runs while frozen: they are accepted (run.submitted) but
// none starts until the unfreeze that begins the measured phase. Returns the run ids.
Result<std::vector<std::string>> prepare_runs(const StreamBenchOptions& o, Conn& setup) {
  json::array nodes;
  for (int i = 0; i < o.steps; ++i) {
    json::object node{{"id", "s" + std::to_string(i)}, {"type", "noop"}};
    if (i > 0) node["needs"] = json::array{json::value("s" + std::to_string(i - 1))};
    nodes.push_back(std::move(node));
  }
  const json::object definition{{"name", "streams-a"}, {"nodes", std::move(nodes)}};
  VENTURE_RETURN_IF_ERROR(
      expect(setup.call("POST", "/v1/workflows", o.token, json::serialize(definition)), 201,
             "POST /v1/workflows"));
  VENTURE_RETURN_IF_ERROR(expect(
      setup.call("POST", "/v1/control/freeze", o.token, R"({"reason":"venture bench streams"})"),
      200, "POST /v1/control/freeze"));
  std::vector<std::unique_ptr<Conn>> conns;
  const std::string start =
      http_request("POST", "/v1/runs", o.token, R"({"workflow":"streams-a"})");
  std::vector<int> per_conn;
  for (int i = 0; i < kSubmitConnections && i < o.runs; ++i) {
    conns.push_back(std::make_unique<Conn>());
    VENTURE_RETURN_IF_ERROR(conns.back()->connect(o.port));
    per_conn.push_back(o.runs / kSubmitConnections + (i < o.runs % kSubmitConnections ? 1 : 0));
  }
  for (std::size_t i = 0; i < conns.size(); ++i) {
    std::string pipelined;
    for (int k = 0; k < per_conn[i]; ++k) pipelined += start;
    VENTURE_RETURN_IF_ERROR(send_all(conns[i]->fd(), pipelined));
  }
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < conns.size(); ++i) {
    for (int k = 0; k < per_conn[i]; ++k) {
      auto r = conns[i]->read_response();
      VENTURE_RETURN_IF_ERROR(expect(r, 201, "POST /v1/runs"));
      auto v = base::parse_json(r->second);
      if (!v || !v->is_object()) return unavailable_error("POST /v1/runs answered no object");
      ids.push_back(base::string_or(v->as_object(), "id", ""));
    }
  }
  return ids;
}

struct Sub {
  int fd = -1;
  std::string request;
  std::size_t sent = 0;
  bool connected = false;
  bool head = false;    // the response head (200 or 101) arrived
  bool closed = false;  // the stream ended (run streams: after the terminal event)
  bool run_stream = false;
  std::string buf;
  std::string type;       // SSE: the current frame's event type
  int64_t succeeded = 0;  // run.succeeded seen (global subscribers)
};

std::string ws_key(std::size_t i) {
  // Any 16 bytes base64-encoded; the server does not check their randomness.
  std::string key = "dmVudHVyZS1iZW5j" + std::to_string(10000000 + i).substr(1, 6);
  key.resize(22, 'A');
  return key + "==";
}

std::string subscribe_request(const StreamBenchOptions& o, const std::string& path, std::size_t i) {
  std::string r =
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + o.token + "\r\n";
  if (o.kind == "ws") {
    r += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Key: " +
         ws_key(i) + "\r\n\r\n";
  } else {
    r += "Accept: text/event-stream\r\n\r\n";
  }
  return r;
}

struct Tally {
  int64_t release_ms = 0;  // unix ms of the unfreeze: events at or after it are live
  std::vector<double> live_ms;
  int64_t backlog = 0;
  int64_t ready = 0;
  int64_t closed_runs = 0;
};

// One event's JSON as it arrived at `arrival_us`.
void record(std::string_view json, int64_t arrival_us, Sub& sub, Tally& tally) {
  const std::size_t at = json.find("\"time\":\"");
  if (at == std::string_view::npos) return;
  auto t = parse_time(json.substr(at + 8, 24));
  if (!t) return;
  const int64_t event_ms = to_unix_ms(*t);
  if (event_ms >= tally.release_ms) {
    tally.live_ms.push_back(static_cast<double>(arrival_us) / 1000.0 -
                            static_cast<double>(event_ms));
  } else {
    ++tally.backlog;
  }
  if (json.find("\"type\":\"run.succeeded\"") != std::string_view::npos) ++sub.succeeded;
}

void parse_sse(Sub& sub, int64_t arrival_us, Tally& tally) {
  std::size_t start = 0;
  for (std::size_t nl; (nl = sub.buf.find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string_view line(sub.buf.data() + start, nl - start);
    if (line.starts_with("data: ")) record(line.substr(6), arrival_us, sub, tally);
  }
  sub.buf.erase(0, start);
}

// Server frames are unmasked. Answers pings and the close handshake (client frames are masked;
// a zero key leaves the payload as is).
void parse_ws(Sub& sub, int64_t arrival_us, Tally& tally) {
  std::size_t pos = 0;
  for (;;) {
    if (sub.buf.size() - pos < 2) break;
    const auto b0 = static_cast<unsigned char>(sub.buf[pos]);
    const auto b1 = static_cast<unsigned char>(sub.buf[pos + 1]);
    std::size_t header = 2;
    uint64_t length = b1 & 0x7FU;
    if (length == 126) {
      if (sub.buf.size() - pos < 4) break;
      length = (uint64_t{static_cast<unsigned char>(sub.buf[pos + 2])} << 8U) |
               static_cast<unsigned char>(sub.buf[pos + 3]);
      header = 4;
    } else if (length == 127) {
      if (sub.buf.size() - pos < 10) break;
      length = 0;
      for (std::size_t k = 0; k < 8; ++k) {
        length = (length << 8U) | static_cast<unsigned char>(sub.buf[pos + 2 + k]);
      }
      header = 10;
    }
    if (sub.buf.size() - pos < header + length) break;
    const std::string_view payload(sub.buf.data() + pos + header, length);
    const unsigned opcode = b0 & 0x0FU;
    if (opcode == 1) {
      record(payload, arrival_us, sub, tally);
    } else if (opcode == 9) {
      std::string pong = "\x8A";
      pong += static_cast<char>(0x80U | static_cast<unsigned>(std::min<uint64_t>(length, 125)));
      pong.append(4, '\0');
      pong += payload.substr(0, 125);
      (void)send(sub.fd, pong.data(), pong.size(), MSG_NOSIGNAL);
    } else if (opcode == 8) {
      const std::string close_frame("\x88\x80\0\0\0\0", 6);
      (void)send(sub.fd, close_frame.data(), close_frame.size(), MSG_NOSIGNAL);
    }
    pos += header + length;
  }
  sub.buf.erase(0, pos);
}

// Reads what is there; false when the connection ended.
bool read_sub(Sub& sub, const StreamBenchOptions& o, base::Clock& clock, Tally& tally,
              std::vector<char>& chunk) {
  for (;;) {
    const ssize_t n = recv(sub.fd, chunk.data(), chunk.size(), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) return false;
    const int64_t arrival = now_us(clock);
    sub.buf.append(chunk.data(), static_cast<std::size_t>(n));
    if (!sub.head) {
      const std::size_t end = sub.buf.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      if (sub.buf.compare(0, 12, "HTTP/1.1 200") != 0 &&
          sub.buf.compare(0, 12, "HTTP/1.1 101") != 0) {
        return false;
      }
      sub.head = true;
      ++tally.ready;
      sub.buf.erase(0, end + 4);
    }
    if (o.kind == "ws") {
      parse_ws(sub, arrival, tally);
    } else {
      parse_sse(sub, arrival, tally);
    }
  }
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

class Client {
 public:
  Client(const StreamBenchOptions& o, base::Clock& clock) : o_(o), clock_(clock) {}
  ~Client() {
    for (Sub& s : subs_) {
      if (s.fd >= 0) close(s.fd);
    }
    if (epoll_ >= 0) close(epoll_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Status open_all(const std::vector<std::string>& ids) {
    epoll_ = epoll_create1(0);
    if (epoll_ < 0) return unavailable_error("epoll_create1 failed");
    const std::string run_path = o_.kind == "ws" ? "/ws" : "/events";
    for (const std::string& id : ids) {
      for (int k = 0; k < o_.per_run; ++k) {
        Sub s;
        s.run_stream = true;
        s.request = subscribe_request(o_, "/v1/runs/" + id + run_path, subs_.size());
        subs_.push_back(std::move(s));
      }
    }
    for (int k = 0; k < o_.global; ++k) {
      Sub s;
      const std::string path = o_.kind == "ws" ? "/v1/events/ws?type=run." : "/v1/events?type=run.";
      s.request = subscribe_request(o_, path, subs_.size());
      subs_.push_back(std::move(s));
    }
    // Connect a bounded number at a time; the loop below sends each request once connected.
    std::size_t next = 0;
    while (tally_.ready < static_cast<int64_t>(subs_.size())) {
      while (next < subs_.size() &&
             next - static_cast<std::size_t>(tally_.ready) < kConnectingMax) {
        VENTURE_RETURN_IF_ERROR(connect_sub(next++));
      }
      VENTURE_RETURN_IF_ERROR(poll(100));
    }
    return ok();
  }

  // The measured phase: until every run stream ended and every global one saw each run succeed.
  Status run(int64_t deadline_us) {
    while (now_us(clock_) < deadline_us) {
      if (tally_.closed_runs == static_cast<int64_t>(o_.per_run) * o_.runs && globals_done()) {
        return ok();
      }
      VENTURE_RETURN_IF_ERROR(poll(100));
    }
    return deadline_exceeded_error("the streams did not finish in time (" +
                                   std::to_string(tally_.closed_runs) + " run streams ended)");
  }

  Tally& tally() { return tally_; }
  std::size_t subscribers() const { return subs_.size(); }

 private:
  bool globals_done() const {
    return std::all_of(subs_.begin(), subs_.end(),
                       [this](const Sub& s) { return s.run_stream || s.succeeded >= o_.runs; });
  }

  Status connect_sub(std::size_t i) {
    Sub& s = subs_[i];
    VENTURE_ASSIGN_OR_RETURN(s.fd, open_socket(o_.port, false));
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = i;
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, s.fd, &ev) != 0) return unavailable_error("epoll_ctl");
    return ok();
  }

  void on_writable(std::size_t i) {
    Sub& s = subs_[i];
    while (s.sent < s.request.size()) {
      const ssize_t n =
          send(s.fd, s.request.data() + s.sent, s.request.size() - s.sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      s.sent += static_cast<std::size_t>(n);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    (void)epoll_ctl(epoll_, EPOLL_CTL_MOD, s.fd, &ev);
  }

  Status poll(int timeout_ms) {
    std::array<epoll_event, 1024> events{};
    const int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0 && errno != EINTR) return unavailable_error("epoll_wait failed");
    for (int k = 0; k < n; ++k) {
      const auto i = static_cast<std::size_t>(events[static_cast<std::size_t>(k)].data.u64);
      Sub& s = subs_[i];
      const uint32_t what = events[static_cast<std::size_t>(k)].events;
      if ((what & EPOLLOUT) != 0 && s.sent < s.request.size()) on_writable(i);
      if ((what & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0 || s.closed) continue;
      if (!read_sub(s, o_, clock_, tally_, chunk_)) {
        if (!s.head) {
          return unavailable_error("a subscription was refused: " + s.buf.substr(0, 200));
        }
        s.closed = true;
        if (s.run_stream) ++tally_.closed_runs;
        (void)epoll_ctl(epoll_, EPOLL_CTL_DEL, s.fd, nullptr);
        close(s.fd);
        s.fd = -1;
      }
    }
    return ok();
  }

  const StreamBenchOptions& o_;
  base::Clock& clock_;
  int epoll_ = -1;
  std::vector<Sub> subs_;
  Tally tally_;
  std::vector<char> chunk_ = std::vector<char>(kReadBytes);
};

}  // namespace

Result<std::string> run_streams(const StreamBenchOptions& o) {
  if (o.kind != "sse" && o.kind != "ws") return invalid_argument_error("--kind is sse or ws");
  if (o.port == 0 || o.token.empty()) {
    return invalid_argument_error("streams needs --port and --token of a running server");
  }
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &files);
  }
  base::RealClock clock;
  Conn setup;
  VENTURE_RETURN_IF_ERROR(setup.connect(o.port));
  VENTURE_ASSIGN_OR_RETURN(const std::vector<std::string> ids, prepare_runs(o, setup));
  Client client(o, clock);
  const int64_t open_start = now_us(clock);
  VENTURE_RETURN_IF_ERROR(client.open_all(ids));
  const double open_s = static_cast<double>(now_us(clock) - open_start) / 1e6;
  // The measured phase starts with the unfreeze; its answer is read after the phase.
  const double client_cpu0 = cpu_seconds_self();
  const double server_cpu0 = cpu_seconds_of(o.server_pid);
  const int64_t release_us = now_us(clock);
  client.tally().release_ms = release_us / 1000;
  VENTURE_RETURN_IF_ERROR(
      send_all(setup.fd(), http_request("POST", "/v1/control/unfreeze", o.token, "{}")));
  VENTURE_RETURN_IF_ERROR(client.run(release_us + kTimeoutMs * 1000));
  const double wall_s = static_cast<double>(now_us(clock) - release_us) / 1e6;
  const double client_cpu = cpu_seconds_self() - client_cpu0;
  const double server_cpu = cpu_seconds_of(o.server_pid) - server_cpu0;
  VENTURE_RETURN_IF_ERROR(expect(setup.read_response(), 200, "POST /v1/control/unfreeze"));
  Tally& t = client.tally();
  const auto live = static_cast<int64_t>(t.live_ms.size());
  const double p50 = percentile(t.live_ms, 0.5);
  const double p99 = percentile(t.live_ms, 0.99);
  const double max = t.live_ms.empty() ? 0 : *std::max_element(t.live_ms.begin(), t.live_ms.end());
  // One line, decimals printed plainly (json::serialize would print 1.5E1).
  const std::vector<std::pair<std::string, double>> numbers = {
      {"open_s", open_s},
      {"wall_s", wall_s},
      {"deliveries_per_s", static_cast<double>(live) / wall_s},
      {"p50_ms", p50},
      {"p99_ms", p99},
      {"max_ms", max},
      {"client_cpu_s", client_cpu},
      {"server_cpu_s", o.server_pid > 0 ? server_cpu : -1}};
  std::string line =
      "{\"workload\":\"streams\",\"kind\":\"" + o.kind + "\",\"runs\":" + std::to_string(o.runs) +
      ",\"steps\":" + std::to_string(o.steps) +
      ",\"subscribers\":" + std::to_string(client.subscribers()) +
      ",\"per_run\":" + std::to_string(o.per_run) + ",\"global\":" + std::to_string(o.global) +
      ",\"deliveries_live\":" + std::to_string(live) +
      ",\"deliveries_backlog\":" + std::to_string(t.backlog);
  for (const auto& [name, value] : numbers) {
    std::array<char, 64> text{};
    std::snprintf(text.data(), text.size(), "%.2f", value);
    line += ",\"" + name + "\":" + text.data();
  }
  return line + "}";
}

}  // namespace venture::bench
