// egress::Client: one thread drives a libcurl multi handle; every request goes through the SSRF
// guard. Where each rule of ARCHITECTURE §6 is enforced:
// - URL: parse_target (curl's own parser; http/https, no userinfo) before the first hop and on
//   every redirect (next_hop); CURLOPT_PROTOCOLS_STR and CURLOPT_REDIR_PROTOCOLS_STR are
//   "http,https" as a second lock; CURLOPT_FOLLOWLOCATION is off (Venture follows redirects).
// - Proxy environment ignored (CURLOPT_PROXY "" and CURLOPT_NOPROXY "*"), no ~/.netrc
//   (CURL_NETRC_IGNORED), no cookie engine (CURLOPT_COOKIEFILE is never set), no HSTS or alt-svc
//   cache (never set), no Unix sockets.
// - Addresses: open_socket (CURLOPT_OPENSOCKETFUNCTION) checks every address curl is about to
//   connect to and refuses the socket; check_connection (CURLOPT_PREREQFUNCTION) checks the
//   address and port of the connection each request is about to be sent on, new or reused.
// - DNS pinning: the first address a request connects to for a host name is recorded, and every
//   later hop of that request to the same name gets it through CURLOPT_RESOLVE ("+host:port:ip",
//   a cache entry that expires like a resolved one), so no hop re-resolves the name.
// - Headers: check_header; sizes: the write and header callbacks count bytes and abort past the
//   bounds (and CURLOPT_MAXFILESIZE_LARGE refuses a declared Content-Length at once); time:
//   CURLOPT_TIMEOUT_MS is what is left of the request's budget at each hop.
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "egress/egress.h"
#include "egress/internal.h"

namespace venture::egress {
namespace {

constexpr std::string_view kMethods[] = {"GET",    "POST", "PUT",    "PATCH",
                                         "DELETE", "HEAD", "OPTIONS"};

Response failure(std::string_view code, std::string message, bool retryable) {
  Response r;
  r.error = std::string(code);
  r.message = std::move(message);
  r.retryable = retryable;
  return r;
}

bool is_literal(std::string_view host) { return static_cast<bool>(parse_address(host)); }

// One request, through all its hops. Owned by the client thread once submitted.
struct Transfer {
  Request request;
  std::function<void(Response)> done;
  const Policy* policy = nullptr;
  std::size_t max_header_bytes = 0;
  std::size_t max_response_bytes = 0;
  Millis timeout{0};
  Hop hop;
  std::string first_origin;
  int redirects = 0;
  int max_redirects = 0;
  int64_t deadline_ns = 0;
  std::map<std::string, std::string> pins;  // host name -> the address its first connection used

  // The current hop.
  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
  curl_slist* resolve_list = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {};
  std::string body;
  Headers headers;
  std::size_t header_bytes = 0;
  std::optional<std::string> denied;     // why the guard refused a connection of this hop
  std::optional<std::string> too_large;  // which bound the response passed
  std::string remote_address;

  Transfer() = default;
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;
  ~Transfer() { free_lists(); }

  void free_lists() {
    curl_slist_free_all(header_list);
    curl_slist_free_all(resolve_list);
    header_list = nullptr;
    resolve_list = nullptr;
  }
  void reset_hop() {
    free_lists();
    errbuf[0] = '\0';
    body.clear();
    headers.clear();
    header_bytes = 0;
    denied.reset();
    too_large.reset();
  }
};

// "localhost resolves to 127.0.0.1, which is loopback (127.0.0.0/8)", or the policy's own words
// when the URL named the address itself.
std::string denial(const Transfer& t, const Address& a, const std::string& why) {
  const std::string& host = t.hop.target.host;
  if (auto literal = parse_address(host); literal && *literal == a) return why;
  const std::string text = to_string(a);
  const std::string prefix = text + " is ";
  const std::string rest = why.starts_with(prefix) ? why.substr(prefix.size()) : why;
  return host + " resolves to " + text + ", which is " + rest;
}

std::optional<Address> address_of(const curl_sockaddr* sa) {
  const auto* raw = reinterpret_cast<const unsigned char*>(&sa->addr);
  Address a;
  if (sa->family == AF_INET && sa->addrlen >= sizeof(sockaddr_in)) {
    sockaddr_in sin{};
    std::memcpy(&sin, raw, sizeof sin);
    std::memcpy(a.bytes.data(), &sin.sin_addr, 4);
    return a;
  }
  if (sa->family == AF_INET6 && sa->addrlen >= sizeof(sockaddr_in6)) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, raw, sizeof sin6);
    a.v6 = true;
    std::memcpy(a.bytes.data(), &sin6.sin6_addr, 16);
    return a;
  }
  return std::nullopt;
}

// CURLOPT_OPENSOCKETFUNCTION: the guard on every address curl is about to connect to. A refusal
// returns CURL_SOCKET_BAD (curl tries the next address, if any, or fails with
// CURLE_COULDNT_CONNECT) and keeps the reason for the error.
curl_socket_t open_socket(void* clientp, curlsocktype purpose, curl_sockaddr* sa) {
  auto* t = static_cast<Transfer*>(clientp);
  if (purpose != CURLSOCKTYPE_IPCXN) {
    t->denied = "curl asked for a listening socket";
    return CURL_SOCKET_BAD;
  }
  const auto a = address_of(sa);
  if (!a) {
    t->denied = "curl asked for a socket that is not IPv4 or IPv6 (family " +
                std::to_string(sa->family) + ")";
    return CURL_SOCKET_BAD;
  }
  if (auto why = t->policy->check(t->hop.target.host, *a)) {
    t->denied = denial(*t, *a, *why);
    return CURL_SOCKET_BAD;
  }
  return ::socket(sa->family, sa->socktype | SOCK_CLOEXEC, sa->protocol);
}

// CURLOPT_PREREQFUNCTION: runs once the connection a request will use is there, new or reused,
// before anything is sent on it: its address and port are checked again.
int check_connection(void* clientp, char* primary_ip, char* /*local_ip*/, int primary_port,
                     int /*local_port*/) {
  auto* t = static_cast<Transfer*>(clientp);
  const std::string_view ip = primary_ip != nullptr ? primary_ip : "";
  const auto a = parse_address(ip);
  if (!a) {
    t->denied = "the connection's address '" + printable(ip, 64) + "' is not an IP address";
    return CURL_PREREQFUNC_ABORT;
  }
  if (auto why = t->policy->check(t->hop.target.host, *a)) {
    t->denied = denial(*t, *a, *why);
    return CURL_PREREQFUNC_ABORT;
  }
  if (primary_port != t->hop.target.port) {
    t->denied = "the connection goes to port " + std::to_string(primary_port) + ", not " +
                std::to_string(t->hop.target.port);
    return CURL_PREREQFUNC_ABORT;
  }
  t->denied.reset();  // an address refused before this one was connected does not matter
  t->remote_address = to_string(*a);
  if (!is_literal(t->hop.target.host)) t->pins.emplace(t->hop.target.host, t->remote_address);
  return CURL_PREREQFUNC_OK;
}

size_t on_body(char* data, size_t size, size_t count, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t n = size * count;
  if (t->body.size() + n > t->max_response_bytes) {
    t->too_large = "the response body is larger than " + std::to_string(t->max_response_bytes) +
                   " bytes";
    return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
  t->body.append(data, n);
  return n;
}

size_t on_header(char* data, size_t size, size_t count, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  const size_t n = size * count;
  t->header_bytes += n;
  if (t->header_bytes > t->max_header_bytes) {
    t->too_large = "the response headers are larger than " +
                   std::to_string(t->max_header_bytes) + " bytes";
    return 0;
  }
  std::string_view line(data, n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.starts_with("HTTP/")) {
    t->headers.clear();  // a new response (after a 1xx): only the final one's headers count
  } else if (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
    if (!t->headers.empty()) t->headers.back().second += " " + std::string(line.substr(1));
  } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
      value.remove_prefix(1);
    }
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    t->headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return n;
}

const std::string* find_header(const Headers& headers, std::string_view name) {
  const std::string* found = nullptr;
  for (const auto& [n, v] : headers) {
    if (ascii_lower(n) == name) found = &v;  // the last one
  }
  return found;
}

bool has_header(const Headers& headers, std::string_view name) {
  return find_header(headers, name) != nullptr;
}

// The options every easy handle gets, whatever the request; false if libcurl refused one (then
// the request must not go out).
bool set_guard_options(CURL* e, void* t) {
  bool ok = true;
  auto check = [&ok](CURLcode rc) { ok = ok && rc == CURLE_OK; };
  check(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https"));
  check(curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"));
  check(curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L));
  check(curl_easy_setopt(e, CURLOPT_PROXY, ""));
  check(curl_easy_setopt(e, CURLOPT_NOPROXY, "*"));
  check(curl_easy_setopt(e, CURLOPT_NETRC, static_cast<long>(CURL_NETRC_IGNORED)));
  check(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L));
  check(curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket));
  check(curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t));
  check(curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, check_connection));
  check(curl_easy_setopt(e, CURLOPT_PREREQDATA, t));
  return ok;
}

}  // namespace

struct Client::Impl {
  base::Clock& clock;
  ClientOptions options;

  mutable std::mutex mu;
  bool started = false;   // guarded by mu
  bool stopping = false;  // guarded by mu
  bool global_init = false;
  std::deque<std::unique_ptr<Transfer>> submitted;  // guarded by mu
  std::atomic<std::size_t> pending{0};
  CURLM* multi = nullptr;
  std::jthread thread;

  // The client thread's own.
  std::deque<std::unique_ptr<Transfer>> waiting;
  std::unordered_map<Transfer*, std::unique_ptr<Transfer>> active;

  Impl(base::Clock& c, ClientOptions o) : clock(c), options(std::move(o)) {}

  void run();
  void begin(std::unique_ptr<Transfer> owned);
  void start_hop(Transfer& t);
  bool configure(Transfer& t, CURL* e, long remaining_ms);
  void hop_done(CURL* e, CURLcode rc);
  void finish(Transfer& t, Response r);
  void fail_all();
};

Client::Client(base::Clock& clock, ClientOptions options)
    : impl_(std::make_unique<Impl>(clock, std::move(options))) {}

Client::~Client() {
  stop();
  if (impl_->global_init) curl_global_cleanup();
}

Status Client::start() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.started || m.stopping) return failed_precondition_error("the egress client ran already");
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    return internal_error("curl_global_init failed");
  }
  m.global_init = true;
  // Refuse to start on a libcurl that cannot apply the guard (older than 7.85).
  CURL* probe = curl_easy_init();
  if (probe == nullptr) return internal_error("curl_easy_init failed");
  const bool guard_ok = set_guard_options(probe, nullptr);
  curl_easy_cleanup(probe);
  if (!guard_ok) {
    return internal_error(std::string("libcurl ") + curl_version_info(CURLVERSION_NOW)->version +
                          " cannot apply the egress guard (7.85 or later is needed)");
  }
  m.multi = curl_multi_init();
  if (m.multi == nullptr) return internal_error("curl_multi_init failed");
  curl_multi_setopt(m.multi, CURLMOPT_MAXCONNECTS,
                    static_cast<long>(std::max<std::size_t>(1, m.options.max_connections_cached)));
  m.started = true;
  m.thread = std::jthread([&m] { m.run(); });
  return ok();
}

void Client::send(Request request, std::function<void(Response)> done) {
  Impl& m = *impl_;
  auto t = std::make_unique<Transfer>();
  t->request = std::move(request);
  t->done = std::move(done);
  t->policy = &m.options.policy;
  t->max_header_bytes = m.options.max_header_bytes;
  std::string refusal;
  {
    std::lock_guard lock(m.mu);
    if (!m.started || m.stopping) {
      refusal = "the egress client is not running";
    } else if (m.pending.load() >= m.options.max_in_flight + m.options.max_queued) {
      refusal = "the egress client has " + std::to_string(m.pending.load()) +
                " requests pending; try again later";
    } else {
      m.pending.fetch_add(1);
      m.submitted.push_back(std::move(t));
      curl_multi_wakeup(m.multi);
      return;
    }
  }
  t->done(failure(kNetworkError, std::move(refusal), true));
}

void Client::stop() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    if (m.stopping) return;
    m.stopping = true;
    if (m.multi != nullptr) curl_multi_wakeup(m.multi);
  }
  if (m.thread.joinable()) m.thread.join();
}

std::size_t Client::pending() const { return impl_->pending.load(); }

void Client::Impl::run() {
  while (true) {
    {
      std::lock_guard lock(mu);
      if (stopping) break;
      while (!submitted.empty()) {
        waiting.push_back(std::move(submitted.front()));
        submitted.pop_front();
      }
    }
    while (active.size() < std::max<std::size_t>(1, options.max_in_flight) && !waiting.empty()) {
      std::unique_ptr<Transfer> t = std::move(waiting.front());
      waiting.pop_front();
      begin(std::move(t));
    }
    int running = 0;
    curl_multi_perform(multi, &running);
    bool finished = false;
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* e = msg->easy_handle;
      const CURLcode rc = msg->data.result;
      hop_done(e, rc);  // invalidates msg
      finished = true;
    }
    if (finished) continue;  // fill freed slots and start new hops before sleeping
    curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
  fail_all();
}

void Client::Impl::begin(std::unique_ptr<Transfer> owned) {
  Transfer& t = *owned;
  active.emplace(&t, std::move(owned));
  const Request& r = t.request;
  if (std::find(std::begin(kMethods), std::end(kMethods), r.method) == std::end(kMethods)) {
    finish(t, failure(kInvalidRequest, "method '" + printable(r.method, 32) +
                                           "' is not one of GET, POST, PUT, PATCH, DELETE, HEAD, "
                                           "OPTIONS",
                      false));
    return;
  }
  auto target = parse_target(r.url);
  if (!target) {
    finish(t, failure(kInvalidRequest, target.error().message, false));
    return;
  }
  for (const auto& [name, value] : r.headers) {
    if (Status s = check_header(name, value); !s) {
      finish(t, failure(kInvalidRequest, printable(s.error().message, 300), false));
      return;
    }
  }
  if (r.body.size() > limits::kEgressRequestBytesMax) {
    finish(t, failure(kInvalidRequest,
                      "the request body is larger than " +
                          std::to_string(limits::kEgressRequestBytesMax) + " bytes",
                      false));
    return;
  }
  if (r.timeout <= Millis(0) || r.timeout > limits::kEgressTimeoutMax) {
    finish(t, failure(kInvalidRequest,
                      "the timeout must be more than 0 and at most " +
                          format_duration(limits::kEgressTimeoutMax),
                      false));
    return;
  }
  if (r.max_response_bytes == 0 || r.max_response_bytes > limits::kNodeOutputBytesMax) {
    finish(t, failure(kInvalidRequest,
                      "max_response_bytes must be 1 to " +
                          std::to_string(limits::kNodeOutputBytesMax),
                      false));
    return;
  }
  t.max_response_bytes = r.max_response_bytes;
  t.max_redirects = std::clamp(r.max_redirects, 0, limits::kEgressRedirectsMax);
  t.timeout = r.timeout;
  t.hop.method = r.method;
  t.hop.target = std::move(*target);
  t.hop.headers = r.headers;
  t.hop.body = r.body;
  t.first_origin = t.hop.target.origin;
  t.deadline_ns = clock.monotonic_ns() +
                  std::chrono::duration_cast<std::chrono::nanoseconds>(r.timeout).count();
  start_hop(t);
}

bool Client::Impl::configure(Transfer& t, CURL* e, long remaining_ms) {
  bool ok = set_guard_options(e, &t);
  auto check = [&ok](CURLcode rc) { ok = ok && rc == CURLE_OK; };
  check(curl_easy_setopt(e, CURLOPT_URL, t.hop.target.url.c_str()));
  check(curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(&t)));
  check(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body));
  check(curl_easy_setopt(e, CURLOPT_WRITEDATA, static_cast<void*>(&t)));
  check(curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header));
  check(curl_easy_setopt(e, CURLOPT_HEADERDATA, static_cast<void*>(&t)));
  check(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.errbuf));
  check(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, remaining_ms));
  const long connect_ms = static_cast<long>(options.connect_timeout.count());
  check(curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, std::min(remaining_ms, connect_ms)));
  check(curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L));
  const std::string& method = t.hop.method;
  if (method != "HEAD") {
    check(curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                           static_cast<curl_off_t>(t.max_response_bytes)));
  }
  const bool send_body = !t.hop.body.empty() || method == "POST" || method == "PUT" ||
                         method == "PATCH";
  if (method == "HEAD") {
    check(curl_easy_setopt(e, CURLOPT_NOBODY, 1L));
  } else if (method == "GET" && !send_body) {
    check(curl_easy_setopt(e, CURLOPT_HTTPGET, 1L));
  } else {
    if (method != "POST") check(curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method.c_str()));
    if (send_body) {
      check(curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                             static_cast<curl_off_t>(t.hop.body.size())));
      check(curl_easy_setopt(e, CURLOPT_POSTFIELDS, t.hop.body.c_str()));
    }
  }
  // The request's headers; "Name;" sends an empty value ("Name:" would remove the header).
  for (const auto& [name, value] : t.hop.headers) {
    const std::string line = value.empty() ? name + ";" : name + ": " + value;
    t.header_list = curl_slist_append(t.header_list, line.c_str());
  }
  if (!has_header(t.hop.headers, "expect")) {
    t.header_list = curl_slist_append(t.header_list, "Expect:");  // no 100-continue round trip
  }
  if (send_body && method != "HEAD" && !has_header(t.hop.headers, "content-type")) {
    // curl would claim application/x-www-form-urlencoded.
    t.header_list = curl_slist_append(t.header_list, "Content-Type:");
  }
  check(curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.header_list));
  // DNS pinning: a name this request connected to before goes to the same address.
  if (auto pin = t.pins.find(t.hop.target.host); pin != t.pins.end()) {
    const bool v6 = pin->second.find(':') != std::string::npos;
    const std::string entry = "+" + t.hop.target.host + ":" + std::to_string(t.hop.target.port) +
                              ":" + (v6 ? "[" + pin->second + "]" : pin->second);
    t.resolve_list = curl_slist_append(t.resolve_list, entry.c_str());
    check(curl_easy_setopt(e, CURLOPT_RESOLVE, t.resolve_list));
  }
  return ok;
}

void Client::Impl::start_hop(Transfer& t) {
  const int64_t remaining_ns = t.deadline_ns - clock.monotonic_ns();
  const long remaining_ms = static_cast<long>(remaining_ns / 1'000'000);
  if (remaining_ms <= 0) {
    finish(t, failure(kTimeout,
                      "no complete response within " + format_duration(t.timeout) + " (" +
                          std::to_string(t.redirects) + " redirects followed)",
                      true));
    return;
  }
  t.reset_hop();
  CURL* e = curl_easy_init();
  if (e == nullptr) {
    finish(t, failure(kNetworkError, "curl_easy_init failed", true));
    return;
  }
  t.easy = e;
  if (!configure(t, e, remaining_ms)) {
    curl_easy_cleanup(e);
    t.easy = nullptr;
    finish(t, failure(kNetworkError, "libcurl refused an option of the egress guard", false));
    return;
  }
  if (curl_multi_add_handle(multi, e) != CURLM_OK) {
    curl_easy_cleanup(e);
    t.easy = nullptr;
    finish(t, failure(kNetworkError, "curl_multi_add_handle failed", true));
  }
}

void Client::Impl::hop_done(CURL* e, CURLcode rc) {
  void* priv = nullptr;
  curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
  VENTURE_CHECK(priv != nullptr);
  Transfer& t = *static_cast<Transfer*>(priv);
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(multi, e);
  curl_easy_cleanup(e);  // its connection stays in the multi handle's pool
  t.easy = nullptr;
  t.free_lists();
  if (t.denied) {
    finish(t, failure(kEgressDenied, *t.denied, false));
    return;
  }
  if (t.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    finish(t, failure(kResponseTooLarge,
                      t.too_large.value_or("the response body is larger than " +
                                           std::to_string(t.max_response_bytes) + " bytes"),
                      false));
    return;
  }
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    finish(t, failure(kTimeout,
                      "no complete response within " + format_duration(t.timeout) + " (" +
                          std::to_string(t.redirects) + " redirects followed)",
                      true));
    return;
  }
  if (rc != CURLE_OK) {
    std::string what = curl_easy_strerror(rc);
    if (t.errbuf[0] != '\0') what += ": " + printable(t.errbuf, 300);
    finish(t, failure(kNetworkError, std::move(what), true));
    return;
  }
  const int code = static_cast<int>(status);
  if (is_redirect(code)) {
    if (const std::string* location = find_header(t.headers, "location")) {
      if (t.redirects >= t.max_redirects) {
        finish(t, failure(kTooManyRedirects,
                          "more than " + std::to_string(t.max_redirects) +
                              " redirects (the last to '" + printable(*location, 200) + "')",
                          false));
        return;
      }
      auto next = next_hop(t.hop, code, *location, t.first_origin);
      if (!next) {
        finish(t, failure(kEgressDenied, next.error().message, false));
        return;
      }
      t.hop = std::move(*next);
      ++t.redirects;
      start_hop(t);
      return;
    }
  }
  Response r;
  r.status = code;
  r.headers = std::move(t.headers);
  r.body = std::move(t.body);
  r.url = t.hop.target.url;
  r.remote_address = t.remote_address;
  r.redirects = t.redirects;
  finish(t, std::move(r));
}

void Client::Impl::finish(Transfer& t, Response r) {
  auto it = active.find(&t);
  VENTURE_CHECK(it != active.end());
  std::unique_ptr<Transfer> owned = std::move(it->second);
  active.erase(it);
  auto done = std::move(owned->done);
  owned.reset();
  pending.fetch_sub(1);
  done(std::move(r));
}

void Client::Impl::fail_all() {
  std::deque<std::unique_ptr<Transfer>> rest;
  {
    std::lock_guard lock(mu);
    rest.swap(submitted);
  }
  for (auto& [raw, t] : active) {
    if (t->easy != nullptr) {
      curl_multi_remove_handle(multi, t->easy);
      curl_easy_cleanup(t->easy);
      t->easy = nullptr;
    }
    rest.push_back(std::move(t));
  }
  active.clear();
  for (auto& t : waiting) rest.push_back(std::move(t));
  waiting.clear();
  {
    std::lock_guard lock(mu);  // send() and stop() read `multi` under mu
    curl_multi_cleanup(multi);
    multi = nullptr;
  }
  for (auto& t : rest) {
    auto done = std::move(t->done);
    t.reset();
    pending.fetch_sub(1);
    done(failure(kNetworkError, "the egress client stopped before the response", true));
  }
}

}  // namespace venture::egress
