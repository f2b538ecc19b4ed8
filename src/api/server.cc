// The HTTP/1.1 transport on Boost.Beast: one io_context on `io_threads` threads, a strand per
// connection, C++20 coroutines. A session reads one request at a time from its buffer (so
// pipelined requests are answered in order), hands it to Application::handle on the blocking pool
// and writes the answer, or turns the connection into an SSE or WebSocket stream (stream.cc).
// Every read and write has a deadline; every size has a bound (ServerOptions).
#include "api/server.h"

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <condition_variable>
#include <functional>
#include <future>
#include <limits>
#include <mutex>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "api/decode.h"
#include "api/stream.h"

namespace venture::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using internal::BeastRequest;
using internal::configure_parser;
using internal::decode_request;
using internal::method_label;
using internal::Parser;
using internal::read_problem;
using internal::TcpStream;
using internal::TlsStream;
using internal::TransportProblem;

bool is_disconnect(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == http::error::partial_message ||
         ec == asio::error::eof || ec == beast::error::timeout ||
         ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == ssl::error::stream_truncated ||
         ec.category() == asio::error::get_ssl_category();
}

// The first read of a request (the keep-alive wait) takes at most this much.
constexpr std::size_t kFirstReadBytes = 4096;
// Room in a session's buffer beyond the header bound: Beast reads up to 64 KiB at a time, and a
// pipelined request may follow the current one.
constexpr std::size_t kBufferSlackBytes = (64 << 10) + 4096;
// After an error answer, what we read and discard so that closing does not reset the connection
// before the client has read the answer (a "lingering close").
constexpr std::size_t kLingerBytesMax = 1 << 20;
constexpr Millis kLingerMax{1000};
// Accept errors (a full fd table) are retried after this pause instead of spinning.
constexpr Millis kAcceptBackoff{50};
// How often the hub checks the store for events the bus did not carry.
constexpr Millis kHubResyncEvery{1000};

struct SessionBase {
  virtual ~SessionBase() = default;
  // From any thread: close the connection now if it waits for a request, else after the
  // current answer.
  virtual void shut_down() = 0;
};

// Requests whose answers come later (Application::handle_async) park the completion that resumes
// their session here. An answer that arrives after stop() dropped its request finds nothing, so
// nothing is posted to an io_context that is gone.
struct PendingReplies {
  std::mutex mu;
  uint64_t next = 1;
  std::unordered_map<uint64_t, std::function<void(Outcome)>> waiting;

  // Resumes request `id` with its answer (posted to the session's strand); a no-op once dropped.
  void deliver(uint64_t id, Outcome outcome) {
    std::function<void(Outcome)> resume;
    std::lock_guard lock(mu);
    auto it = waiting.find(id);
    if (it == waiting.end()) {
      return;
    }
    resume = std::move(it->second);
    waiting.erase(it);
    resume(std::move(outcome));  // only posts; under the lock so stop() cannot pass it
  }
  // stop(): drops every parked completion; later answers find nothing. Returns them for the
  // caller to destroy outside the lock.
  std::unordered_map<uint64_t, std::function<void(Outcome)>> close() {
    std::lock_guard lock(mu);
    return std::exchange(waiting, {});
  }
};

// Everything the sessions share. Members that handlers touch are declared before `ioc`, so they
// outlive the coroutine frames the io_context destroys.
struct Core {
  Core(ServerOptions o, Application& a, storage::Store& s, bus::Bus& b, Metrics& m, base::Clock& c)
      : options(std::move(o)),
        app(a),
        store(s),
        bus(b),
        metrics(m),
        clock(c),
        pool(static_cast<std::size_t>(std::max(1, options.blocking_threads))) {}

  ServerOptions options;
  Application& app;
  storage::Store& store;
  bus::Bus& bus;
  Metrics& metrics;
  base::Clock& clock;
  asio::thread_pool pool;  // Application::handle and store reads of streams
  std::shared_ptr<PendingReplies> replies = std::make_shared<PendingReplies>();
  std::unique_ptr<ssl::context> tls;
  std::unique_ptr<internal::Hub> hub;

  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> connections{0};

  // In-flight requests and open streams, drained by stop().
  std::mutex mu;
  std::condition_variable drained;
  std::size_t busy = 0;
  std::unordered_map<uint64_t, std::weak_ptr<SessionBase>> sessions;
  uint64_t next_session = 1;

  std::unique_ptr<asio::io_context> ioc;
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::vector<std::jthread> threads;

  internal::StreamContext stream_context() {
    return {hub.get(), &metrics, &pool, options.stream_keepalive, options.write_timeout};
  }
};

// Counts a request (or a stream) for the shutdown drain.
class BusyGuard {
 public:
  explicit BusyGuard(Core& core) : core_(core) {
    std::lock_guard lock(core_.mu);
    ++core_.busy;
  }
  ~BusyGuard() {
    std::lock_guard lock(core_.mu);
    --core_.busy;
    core_.drained.notify_all();
  }
  BusyGuard(const BusyGuard&) = delete;
  BusyGuard& operator=(const BusyGuard&) = delete;

 private:
  Core& core_;
};

template <class S>
struct Session final : SessionBase, std::enable_shared_from_this<Session<S>> {
  Session(Core* c, S s, std::string peer)
      : core(c),
        stream(std::move(s)),
        buffer(c->options.header_bytes_max + kBufferSlackBytes),
        remote(std::move(peer)) {}
  ~Session() override {
    {
      std::lock_guard lock(core->mu);
      core->sessions.erase(id);
    }
    core->connections.fetch_sub(1);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void shut_down() override {
    asio::post(executor, [self = this->shared_from_this()] {
      self->closing = true;
      if (self->idle && !self->detached) {
        beast::error_code ignored;
        beast::get_lowest_layer(self->stream).socket().cancel(ignored);
      }
    });
  }

  Core* core;
  uint64_t id = 0;
  S stream;
  asio::any_io_executor executor{stream.get_executor()};  // the strand
  beast::flat_buffer buffer;
  std::string remote;
  // Touched only on the strand.
  bool idle = true;
  bool closing = false;
  bool detached = false;  // the stream moved into a WebSocket
};

template <class S>
asio::awaitable<bool> write_response(S& stream, HttpResponse response, unsigned version,
                                     bool keep_alive, Millis timeout) {
  http::response<http::string_body> res;
  res.version(version);
  const int status = response.status >= 100 && response.status <= 999 ? response.status : 500;
  res.result(static_cast<unsigned>(status));
  res.set(http::field::server, "venture");
  if (!response.content_type.empty()) {
    res.set(http::field::content_type, response.content_type);
  }
  for (const auto& [name, value] : response.headers) {
    res.insert(name, value);
  }
  res.body() = std::move(response.body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  beast::get_lowest_layer(stream).expires_after(timeout);
  auto [ec, n] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
  co_return !ec;
}

// Waits for the first byte of the next request under the idle deadline; false when the
// connection should close instead.
template <class S>
asio::awaitable<bool> wait_for_request(Session<S>& s) {
  if (s.buffer.size() > 0) {
    co_return true;  // pipelined: the next request is already here
  }
  s.idle = true;
  if (s.closing || s.core->stopping.load()) {
    co_return false;
  }
  beast::get_lowest_layer(s.stream).expires_after(s.core->options.idle_timeout);
  auto [ec, n] = co_await s.stream.async_read_some(s.buffer.prepare(kFirstReadBytes),
                                                   asio::as_tuple(asio::use_awaitable));
  s.idle = false;
  if (ec) {
    co_return false;
  }
  s.buffer.commit(n);
  co_return true;
}

// Reads one whole request under the read deadline (started at its first byte).
template <class S>
asio::awaitable<beast::error_code> read_request(Session<S>& s, Parser& parser) {
  beast::get_lowest_layer(s.stream).expires_after(s.core->options.read_timeout);
  auto [ec, n] = co_await http::async_read_header(s.stream, s.buffer, parser,
                                                  asio::as_tuple(asio::use_awaitable));
  if (ec || parser.is_done()) {
    co_return ec;
  }
  const auto expect = parser.get()[http::field::expect];
  if (beast::iequals(expect, "100-continue")) {
    // Same deadline: the whole request, interim answer included, fits in read_timeout.
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    auto [wec, wn] = co_await asio::async_write(s.stream, asio::buffer(kContinue),
                                                asio::as_tuple(asio::use_awaitable));
    if (wec) {
      co_return wec;
    }
  }
  auto [bec, bn] =
      co_await http::async_read(s.stream, s.buffer, parser, asio::as_tuple(asio::use_awaitable));
  co_return bec;
}

Outcome internal_error_outcome() {
  Outcome outcome;
  outcome.response = internal::transport_problem_response({500, "internal error"});
  return outcome;
}

// On the blocking pool: the application answers now or later through `replies`.
void call_application(Application* app, std::shared_ptr<PendingReplies> replies, uint64_t id,
                      const HttpRequest& request) {
  auto answered = std::make_shared<std::atomic<bool>>(false);
  try {
    app->handle_async(request, [replies, id, answered](Outcome outcome) {
      answered->store(true);
      replies->deliver(id, std::move(outcome));
    });
    return;
  } catch (const std::exception& e) {
    // A bug in the application (it must not throw): answer 500 rather than lose the connection.
    base::log_error("api: application threw", {{"error", e.what()}, {"path", request.path}});
  } catch (...) {
    base::log_error("api: application threw", {{"path", request.path}});
  }
  if (!answered->load()) {
    replies->deliver(id, internal_error_outcome());
  }
}

// Runs the application on the pool for `request` and completes with its Outcome on the caller's
// executor (the session's strand), whenever and from whichever thread the answer comes.
template <class Token>
auto async_handle(Core& session_core, HttpRequest decoded, Token&& token) {
  return asio::async_initiate<Token, void(Outcome)>(
      [](auto handler, Core* core, HttpRequest request) {
        using Handler = decltype(handler);
        auto shared = std::make_shared<Handler>(std::move(handler));
        uint64_t id = 0;
        {
          std::lock_guard lock(core->replies->mu);
          id = core->replies->next++;
          core->replies->waiting.emplace(id, [shared](Outcome outcome) {
            const auto executor = asio::get_associated_executor(*shared);
            asio::post(executor, [shared, outcome = std::move(outcome)]() mutable {
              std::move (*shared)(std::move(outcome));
            });
          });
        }
        asio::post(core->pool,
                   [app = &core->app, replies = core->replies, id, request = std::move(request)] {
                     call_application(app, replies, id, request);
                   });
      },
      token, &session_core, std::move(decoded));
}

template <class S>
asio::awaitable<void> close_connection(S& stream, Millis timeout) {
  beast::error_code ignored;
  if constexpr (std::is_same_v<S, TlsStream>) {
    beast::get_lowest_layer(stream).expires_after(timeout);
    // The peer may not answer close_notify; the socket closes either way.
    co_await stream.async_shutdown(asio::as_tuple(asio::use_awaitable));
  } else {
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
  beast::get_lowest_layer(stream).close();
}

// After an error answer: stop sending, read (bounded) what the client still sends, then close, so
// its unread request bytes do not turn our close into a reset that discards the answer.
template <class S>
asio::awaitable<void> linger_close(S& stream) {
  if constexpr (std::is_same_v<S, TcpStream>) {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.expires_after(kLingerMax);
    std::array<char, 4096> scratch{};
    for (std::size_t total = 0; total < kLingerBytesMax;) {
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(scratch),
                                                     asio::as_tuple(asio::use_awaitable));
      if (ec) {
        break;
      }
      total += n;
    }
    stream.close();
  } else {
    co_await close_connection(stream, kLingerMax);
  }
}

enum class Next { kKeepAlive, kClose, kLingerClose, kDetached };

struct Timing {
  std::string method = "unknown";
  std::string route = "unmatched";
  int status = 0;
  int64_t start_ns = 0;
};

void observe(Core& core, const Timing& t) {
  const double seconds = static_cast<double>(core.clock.monotonic_ns() - t.start_ns) / 1e9;
  core.metrics.observe_request(method_label(t.method), t.route, t.status, seconds);
}

template <class S>
asio::awaitable<Next> answer_problem(Session<S>& s, Timing& timing, TransportProblem problem,
                                     unsigned version) {
  timing.status = problem.status;
  observe(*s.core, timing);
  HttpResponse response = internal::transport_problem_response(problem);
  co_await write_response(s.stream, std::move(response), version, false,
                          s.core->options.write_timeout);
  co_return Next::kLingerClose;
}

// Serves a stream outcome; the connection ends with it.
template <class S>
asio::awaitable<Next> answer_stream(Session<S>& s, Timing& timing, Outcome outcome,
                                    BeastRequest request, bool upgrade) {
  Core& core = *s.core;
  if (outcome.sse) {
    timing.status = 200;
    observe(core, timing);
    co_await internal::serve_sse(s.stream, std::move(*outcome.sse), core.stream_context());
    co_return Next::kClose;
  }
  if (!upgrade) {
    TransportProblem problem{400, "this endpoint needs a WebSocket upgrade"};
    co_return co_await answer_problem(s, timing, std::move(problem), request.version());
  }
  timing.status = 101;
  observe(core, timing);
  s.detached = true;
  co_await internal::serve_websocket(std::move(s.stream), std::move(request),
                                     std::move(*outcome.websocket), core.stream_context());
  co_return Next::kDetached;
}

// One request: read, decode, handle on the blocking pool, answer.
template <class S>
asio::awaitable<Next> serve_request(Session<S>& s) {
  Core& core = *s.core;
  BusyGuard busy(core);
  Timing timing;
  timing.start_ns = core.clock.monotonic_ns();
  Parser parser;
  configure_parser(parser, core.options);
  const beast::error_code ec = co_await read_request(s, parser);
  if (parser.is_header_done()) {
    timing.method = std::string(parser.get().method_string());
  }
  if (ec) {
    if (is_disconnect(ec)) {
      co_return Next::kClose;
    }
    TransportProblem problem = read_problem(ec, parser.is_header_done(), core.options);
    co_return co_await answer_problem(s, timing, std::move(problem), 11);
  }
  BeastRequest request = parser.release();
  auto decoded = decode_request(request, s.remote);
  if (!decoded) {
    TransportProblem problem{400, decoded.error().message};
    co_return co_await answer_problem(s, timing, std::move(problem), 11);
  }
  const bool upgrade = decoded->websocket_upgrade;
  Outcome outcome = co_await async_handle(core, std::move(*decoded), asio::use_awaitable);
  if (!outcome.route.empty()) {
    timing.route = outcome.route;
  }
  if (outcome.sse || outcome.websocket) {
    co_return co_await answer_stream(s, timing, std::move(outcome), std::move(request), upgrade);
  }
  const bool keep_alive = request.keep_alive() && !s.closing && !core.stopping.load();
  timing.status = outcome.response.status;
  const bool written =
      co_await write_response(s.stream, std::move(outcome.response), request.version(), keep_alive,
                              core.options.write_timeout);
  observe(core, timing);
  co_return written&& keep_alive ? Next::kKeepAlive : Next::kClose;
}

template <class S>
asio::awaitable<void> run_session(std::shared_ptr<Session<S>> session) {
  Session<S>& s = *session;
  if constexpr (std::is_same_v<S, TlsStream>) {
    beast::get_lowest_layer(s.stream).expires_after(s.core->options.read_timeout);
    auto [ec] = co_await s.stream.async_handshake(ssl::stream_base::server,
                                                  asio::as_tuple(asio::use_awaitable));
    if (ec) {
      beast::get_lowest_layer(s.stream).close();
      co_return;
    }
  }
  Next next = Next::kClose;
  while (co_await wait_for_request(s)) {
    next = co_await serve_request(s);
    if (next != Next::kKeepAlive) {
      break;
    }
  }
  if (next == Next::kDetached) {
    co_return;
  }
  if (next == Next::kLingerClose) {
    co_await linger_close(s.stream);
  } else {
    co_await close_connection(s.stream, s.core->options.write_timeout);
  }
}

void on_session_done(std::exception_ptr e) {
  if (!e) {
    return;
  }
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    base::log_error("api: session failed", {{"error", ex.what()}});
  } catch (...) {
    base::log_error("api: session failed", {{"error", "unknown exception"}});
  }
}

template <class S>
void start_session(Core& core, S stream, std::string remote) {
  auto session = std::make_shared<Session<S>>(&core, std::move(stream), std::move(remote));
  {
    std::lock_guard lock(core.mu);
    session->id = core.next_session++;
    core.sessions.emplace(session->id, session);
  }
  const asio::any_io_executor executor = session->executor;
  asio::co_spawn(executor, run_session(std::move(session)), on_session_done);
}

asio::awaitable<void> accept_loop(Core* core) {
  auto executor = co_await asio::this_coro::executor;
  for (;;) {
    auto [ec, socket] = co_await core->acceptor->async_accept(asio::make_strand(*core->ioc),
                                                              asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !core->acceptor->is_open()) {
      co_return;
    }
    if (ec) {
      base::log_warn("api: accept failed", {{"error", ec.message()}});
      asio::steady_timer backoff(executor, kAcceptBackoff);
      co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    if (core->connections.load() >= core->options.connections_max || core->stopping.load()) {
      beast::error_code ignored;
      socket.close(ignored);  // over the bound: refuse rather than queue
      continue;
    }
    core->connections.fetch_add(1);
    beast::error_code remote_ec;
    const auto endpoint = socket.remote_endpoint(remote_ec);
    std::string remote = remote_ec ? "" : endpoint.address().to_string();
    TcpStream tcp_stream(std::move(socket));
    if (core->tls) {
      start_session(*core, TlsStream(std::move(tcp_stream), *core->tls), std::move(remote));
    } else {
      start_session(*core, std::move(tcp_stream), std::move(remote));
    }
  }
}

asio::awaitable<void> resync_loop(Core* core) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!core->stopping.load()) {
    timer.expires_after(kHubResyncEvery);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      co_return;
    }
    core->hub->resync();
  }
}

void on_loop_done(std::exception_ptr e) { on_session_done(std::move(e)); }

std::string host_port(const asio::ip::address& address, uint16_t port) {
  const std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(port);
}

Status load_tls(Core& core) {
  const ServerOptions& o = core.options;
  if (o.tls_cert_file.empty() && o.tls_key_file.empty()) {
    return ok();
  }
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
    return invalid_argument_error("TLS needs both a certificate file and a key file");
  }
  auto context = std::make_unique<ssl::context>(ssl::context::tls_server);
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  beast::error_code ec;
  context->use_certificate_chain_file(o.tls_cert_file, ec);
  if (ec) {
    return invalid_argument_error("cannot read the TLS certificate file " + o.tls_cert_file + ": " +
                                  ec.message());
  }
  context->use_private_key_file(o.tls_key_file, ssl::context::pem, ec);
  if (ec) {
    return invalid_argument_error("cannot read the TLS key file " + o.tls_key_file + ": " +
                                  ec.message());
  }
  core.tls = std::move(context);
  return ok();
}

Result<tcp::endpoint> listen_endpoint(const ServerOptions& o) {
  beast::error_code ec;
  auto address = asio::ip::make_address(o.host, ec);
  if (ec) {
    if (o.host != "localhost") {
      return invalid_argument_error("cannot parse the listen address '" + o.host + "'");
    }
    address = asio::ip::address_v4::loopback();
  }
  return tcp::endpoint(address, o.port);
}

// Binds and listens synchronously so that errors reach start()'s caller.
Status open_acceptor(Core& core, const tcp::endpoint& endpoint) {
  core.acceptor = std::make_unique<tcp::acceptor>(asio::make_strand(*core.ioc));
  tcp::acceptor& acceptor = *core.acceptor;
  const std::string where = host_port(endpoint.address(), endpoint.port());
  beast::error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(endpoint, ec);
    if (ec == asio::error::address_in_use) {
      return unavailable_error(where + " is already in use");
    }
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return unavailable_error("cannot listen on " + where + ": " + ec.message());
  }
  return ok();
}

// Each connection holds a descriptor: take the hard limit (no privilege needed) so that
// connections_max, not a small soft default, bounds them.
void raise_fd_limit() {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &files);
  }
}

void run_io(asio::io_context* ioc) {
  for (;;) {
    try {
      ioc->run();
      return;
    } catch (const std::exception& e) {
      // Handlers do not throw (co_spawn handlers log); keep serving if one ever does.
      base::log_error("api: io thread caught an exception", {{"error", e.what()}});
    }
  }
}

}  // namespace

struct Server::Impl {
  Impl(ServerOptions o, Application& a, storage::Store& s, bus::Bus& b, Metrics& m, base::Clock& c)
      : core(std::move(o), a, s, b, m, c) {}
  Core core;
  std::mutex lifecycle_mu;
  bool started = false;
  bool stopped = false;
  uint16_t bound_port = 0;
};

Server::Server(ServerOptions options, Application& app, storage::Store& store, bus::Bus& bus,
               Metrics& metrics, base::Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), app, store, bus, metrics, clock)) {}

Server::~Server() { stop(); }

Status Server::start() {
  std::lock_guard lifecycle(impl_->lifecycle_mu);
  Core& core = impl_->core;
  if (impl_->started) {
    return failed_precondition_error("the server was already started");
  }
  VENTURE_RETURN_IF_ERROR(load_tls(core));
  raise_fd_limit();
  VENTURE_ASSIGN_OR_RETURN(const tcp::endpoint endpoint, listen_endpoint(core.options));
  const int io_threads = std::max(1, core.options.io_threads);
  core.ioc = std::make_unique<asio::io_context>(io_threads);
  core.work = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
      core.ioc->get_executor());
  if (Status opened = open_acceptor(core, endpoint); !opened) {
    core.acceptor.reset();
    return opened;
  }
  impl_->bound_port = core.acceptor->local_endpoint().port();
  core.hub = std::make_unique<internal::Hub>(core.store, core.bus, core.pool);
  if (Status hub = core.hub->start(); !hub) {
    core.acceptor.reset();
    return hub;
  }
  impl_->started = true;
  asio::co_spawn(core.acceptor->get_executor(), accept_loop(&core), on_loop_done);
  asio::co_spawn(asio::make_strand(*core.ioc), resync_loop(&core), on_loop_done);
  for (int i = 0; i < io_threads; ++i) {
    core.threads.emplace_back(run_io, core.ioc.get());
  }
  return ok();
}

uint16_t Server::port() const { return impl_->bound_port; }

void Server::stop_accepting() {
  Core& core = impl_->core;
  if (!core.acceptor || !core.ioc) {
    return;
  }
  auto close = [&core] {
    beast::error_code ignored;
    core.acceptor->close(ignored);
  };
  if (core.ioc->stopped() || core.ioc->get_executor().running_in_this_thread()) {
    close();
    return;
  }
  // The acceptor belongs to its strand; close it there and wait, so that a connect attempt after
  // this returns is refused.
  std::promise<void> done;
  asio::post(core.acceptor->get_executor(), [&close, &done] {
    close();
    done.set_value();
  });
  done.get_future().wait();
}

void Server::stop() {
  std::lock_guard lifecycle(impl_->lifecycle_mu);
  Core& core = impl_->core;
  if (!impl_->started || impl_->stopped) {
    impl_->stopped = true;
    return;
  }
  impl_->stopped = true;
  stop_accepting();
  core.stopping.store(true);
  core.hub->stop();  // streams end
  std::vector<std::shared_ptr<SessionBase>> sessions;
  {
    std::lock_guard lock(core.mu);
    for (auto& [id, weak] : core.sessions) {
      if (auto session = weak.lock()) {
        sessions.push_back(std::move(session));
      }
    }
  }
  for (auto& session : sessions) {
    session->shut_down();
  }
  sessions.clear();
  {
    std::unique_lock lock(core.mu);
    core.drained.wait_for(lock, limits::kShutdownDrainMax, [&core] { return core.busy == 0; });
  }
  core.work.reset();
  core.ioc->stop();
  for (std::jthread& thread : core.threads) {
    thread.join();
  }
  core.threads.clear();
  core.pool.stop();
  core.pool.join();
  // Requests still waiting for an answer (past the drain) are dropped here, while the
  // io_context they would resume on still exists.
  core.replies->close().clear();
  // Destroy what is bound to the io_context, then the io_context (and the coroutine frames it
  // still holds) while everything they refer to is alive.
  core.acceptor.reset();
  core.ioc.reset();
}

}  // namespace venture::api
