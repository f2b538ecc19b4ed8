// Live event streams: the Hub (ring of recent events, fed by the bus, completed from the store) and
// the SSE and WebSocket writers that pull from it. See stream.h for the design.
#include "api/stream.h"

#include <algorithm>
#include <array>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <limits>
#include <utility>

namespace venture::api::internal {
namespace {

namespace http = beast::http;
namespace websocket = beast::websocket;

// Bus payloads queued for the pump. Past this the hub drops them and resyncs from the store, so a
// burst never grows memory and never loses an event.
constexpr std::size_t kPendingMax = limits::kStreamRingEvents;
// Ring entries one pull examines (bounds the time the hub lock is held) and events it returns.
constexpr std::size_t kPullScanMax = 4096;
constexpr std::size_t kPullBatchMax = 512;
// What a WebSocket client may send us (we read only to answer pings and see the close).
constexpr std::size_t kWebSocketReadBytesMax = 64 << 10;

bool is_terminal_type(std::string_view type) {
  return type == "run.succeeded" || type == "run.failed" || type == "run.cancelled";
}

bool matches(const StreamEvent& e, const StreamSpec& spec) {
  return (spec.run.empty() || e.run == spec.run) && e.type.starts_with(spec.type_prefix);
}

}  // namespace

StreamEventPtr make_stream_event(const storage::Event& event) {
  auto out = std::make_shared<StreamEvent>();
  out->seq = event.seq;
  out->type = event.type;
  out->run = event.run;
  out->json = base::compact_json(storage::event_to_json(event));
  out->sse.reserve(out->json.size() + out->type.size() + 40);
  out->sse += "id: ";
  out->sse += std::to_string(event.seq);
  out->sse += "\nevent: ";
  out->sse += out->type;
  out->sse += "\ndata: ";
  out->sse += out->json;
  out->sse += "\n\n";
  return out;
}

// ---------------------------------------------------------------------------------------------
// Hub

// The bus handler may run once more after unsubscribe (bus.h), so it reaches the hub through this
// gate, which stop() closes under its lock.
struct HubGate {
  std::mutex mu;
  Hub* hub = nullptr;
};

Hub::Hub(storage::Store& store, bus::Bus& bus, asio::thread_pool& pool)
    : store_(store), bus_(bus), strand_(asio::make_strand(pool.get_executor())) {}

Hub::~Hub() { stop(); }

Status Hub::start() {
  auto gate = std::make_shared<HubGate>();
  gate->hub = this;
  // Subscribe before reading the position: an event committed in between is then either at or
  // below the position (dropped as known) or in pending (ingested); none is missed.
  auto subscription = bus_.subscribe(">", [gate](const bus::Message& message) {
    std::lock_guard lock(gate->mu);
    if (gate->hub != nullptr) {
      gate->hub->on_message(message);
    }
  });
  if (!subscription) {
    return subscription.error();
  }
  auto last = store_.last_seq();
  if (!last) {
    bus_.unsubscribe(*subscription);
    return last.error();
  }
  {
    std::lock_guard lock(mu_);
    gate_ = gate;
    subscription_ = *subscription;
    subscribed_ = true;
    last_ = *last;
    started_ = true;
    schedule_pump_locked();
  }
  return ok();
}

void Hub::stop() {
  std::shared_ptr<HubGate> gate;
  uint64_t subscription = 0;
  bool subscribed = false;
  {
    std::lock_guard lock(mu_);
    if (stopped_) {
      return;
    }
    stopped_ = true;
    gate = std::move(gate_);
    subscription = subscription_;
    subscribed = subscribed_;
    subscribed_ = false;
    pending_.clear();
    wake_locked(true);
  }
  if (gate) {
    std::lock_guard lock(gate->mu);
    gate->hub = nullptr;
  }
  if (subscribed) {
    bus_.unsubscribe(subscription);
  }
}

void Hub::resync() {
  std::lock_guard lock(mu_);
  if (!started_ || stopped_) {
    return;
  }
  resync_needed_ = true;
  schedule_pump_locked();
}

void Hub::on_message(const bus::Message& message) {
  std::lock_guard lock(mu_);
  if (stopped_) {
    return;
  }
  if (streams_ == 0 && pending_.empty()) {
    // Nobody listens: take the committed event's seq (the store has the event) and move on,
    // without decoding or encoding it. Another publisher's subject has no positive seq.
    const json::object* o = message.data.if_object();
    const json::value* seq = o == nullptr ? nullptr : o->if_contains("seq");
    if (seq != nullptr && seq->is_int64() && seq->get_int64() > 0) {
      if (seq->get_int64() > last_) {
        last_ = seq->get_int64();
        clear_ring_locked();
      }
      return;
    }
  }
  if (pending_.size() >= kPendingMax) {
    resync_needed_ = true;
  } else {
    pending_.push_back(message.data);
  }
  schedule_pump_locked();
}

void Hub::schedule_pump_locked() {
  if (pump_scheduled_ || !started_ || stopped_) {
    return;
  }
  pump_scheduled_ = true;
  asio::post(strand_, [this] { pump(); });
}

int64_t Hub::position() {
  std::lock_guard lock(mu_);
  return last_;
}

void Hub::attach() {
  std::lock_guard lock(mu_);
  ++streams_;
}

void Hub::detach() {
  std::lock_guard lock(mu_);
  --streams_;
}

bool Hub::stopped() {
  std::lock_guard lock(mu_);
  return stopped_;
}

// Runs on strand_ (one pump at a time), so only the pump moves last_ and the ring.
void Hub::pump() {
  std::vector<json::value> batch;
  bool resync = false;
  {
    std::lock_guard lock(mu_);
    pump_scheduled_ = false;
    if (stopped_) {
      return;
    }
    batch.swap(pending_);
    resync = resync_needed_;
    resync_needed_ = false;
  }
  bool appended = false;
  for (const json::value& data : batch) {
    auto event = storage::event_from_json(data);
    if (!event || event->seq <= 0) {
      continue;  // another publisher's subject, not a committed event
    }
    const int64_t last = position();
    if (event->seq <= last) {
      continue;  // already known (filled from the store, or published twice)
    }
    if (event->seq > last + 1) {
      // A seq the bus never carried (a checkpoint, or a publish still in flight): the store has
      // it, since seq N is committed only after every seq below N.
      if (!fill_from_store(event->seq - 1, appended)) {
        resync = true;
        break;
      }
    }
    std::lock_guard lock(mu_);
    if (event->seq == last_ + 1) {
      append_locked(make_stream_event(*event));
      appended = true;
    }
  }
  if (resync && !fill_from_store(std::numeric_limits<int64_t>::max(), appended)) {
    std::lock_guard lock(mu_);
    resync_needed_ = true;  // the store failed; the next resync() tries again
  }
  if (appended) {
    std::lock_guard lock(mu_);
    wake_locked(false);
  }
}

bool Hub::fill_from_store(int64_t up_to, bool& appended) {
  for (;;) {
    const int64_t after = position();
    if (after >= up_to) {
      return true;
    }
    storage::EventFilter filter;
    filter.after_seq = after;
    filter.limit = limits::kStreamBacklogPage;
    auto page = store_.read_events(filter);
    if (!page) {
      base::log_warn("api: stream hub cannot read the store",
                     {{"error", page.error().to_string()}, {"after_seq", after}});
      return false;
    }
    std::lock_guard lock(mu_);
    for (const storage::Event& e : *page) {
      if (e.seq > up_to) {
        break;
      }
      if (e.seq <= last_) {
        continue;
      }
      if (e.seq != last_ + 1) {
        // The store skipped a seq: restart the ring there so it stays contiguous; streams
        // behind it read the store.
        clear_ring_locked();
      }
      append_locked(make_stream_event(e));
      appended = true;
    }
    if (page->size() < limits::kStreamBacklogPage) {
      return true;
    }
  }
}

void Hub::append_locked(StreamEventPtr event) {
  last_ = event->seq;
  if (!event->run.empty()) {
    runs_[event->run].events.push_back(event);
    touched_.push_back(event->run);
  }
  ring_.push_back(std::move(event));
  while (ring_.size() > limits::kStreamRingEvents) {
    const StreamEventPtr& front = ring_.front();
    if (!front->run.empty()) {
      auto it = runs_.find(front->run);
      VENTURE_CHECK(it != runs_.end() && !it->second.events.empty() &&
                    it->second.events.front() == front);
      it->second.events.pop_front();
      if (it->second.events.empty() && it->second.waiters.empty()) {
        runs_.erase(it);
      }
    }
    ring_.pop_front();
  }
}

void Hub::clear_ring_locked() {
  ring_.clear();
  for (auto it = runs_.begin(); it != runs_.end();) {
    it->second.events.clear();
    it = it->second.waiters.empty() ? runs_.erase(it) : std::next(it);
  }
}

namespace {

void wake(std::vector<std::shared_ptr<Waiter>>& waiters) {
  for (const std::shared_ptr<Waiter>& waiter : waiters) {
    waiter->registered = false;
    asio::post(waiter->timer.get_executor(), [waiter] {
      waiter->notified = true;
      waiter->timer.cancel();
    });
  }
  waiters.clear();
}

}  // namespace

void Hub::wake_locked(bool everyone) {
  wake(waiters_);
  if (everyone) {
    for (auto& [run, index] : runs_) {
      wake(index.waiters);
    }
  } else {
    for (const std::string& run : touched_) {
      if (auto it = runs_.find(run); it != runs_.end()) {
        wake(it->second.waiters);
      }
    }
  }
  touched_.clear();
}

void Hub::forget(const StreamSpec& spec, const std::shared_ptr<Waiter>& waiter) {
  std::lock_guard lock(mu_);
  if (!waiter->registered) {
    return;
  }
  waiter->registered = false;
  std::vector<std::shared_ptr<Waiter>>* list = &waiters_;
  auto it = runs_.end();
  if (!spec.run.empty()) {
    it = runs_.find(spec.run);
    if (it == runs_.end()) {
      return;
    }
    list = &it->second.waiters;
  }
  std::erase(*list, waiter);
  if (it != runs_.end() && it->second.waiters.empty() && it->second.events.empty()) {
    runs_.erase(it);
  }
}

// A run's stream: its events after `pos` from the run's index, which holds every event of the
// run that is in the ring (the caller checked that the ring covers pos + 1).
void Hub::pull_run_locked(int64_t pos, const StreamSpec& spec, PullResult& out) {
  out.kind = Pull::kEvents;
  out.pos = last_;
  auto it = runs_.find(spec.run);
  if (it == runs_.end()) {
    return;
  }
  const std::deque<StreamEventPtr>& events = it->second.events;
  auto from = std::upper_bound(events.begin(), events.end(), pos,
                               [](int64_t p, const StreamEventPtr& e) { return p < e->seq; });
  for (; from != events.end(); ++from) {
    if ((*from)->type.starts_with(spec.type_prefix)) {
      out.events.push_back(*from);
      if (out.events.size() >= kPullBatchMax) {
        out.pos = (*from)->seq;
        return;
      }
    }
  }
}

Hub::PullResult Hub::pull(int64_t pos, const StreamSpec& spec,
                          const std::shared_ptr<Waiter>& waiter) {
  PullResult out;
  out.pos = pos;
  std::lock_guard lock(mu_);
  if (stopped_) {
    out.kind = Pull::kStopped;
    return out;
  }
  if (pos >= last_) {
    if (!waiter->registered) {
      waiter->registered = true;
      if (spec.run.empty()) {
        waiters_.push_back(waiter);
      } else {
        runs_[spec.run].waiters.push_back(waiter);
      }
    }
    out.kind = Pull::kWait;
    return out;
  }
  if (ring_.empty() || pos + 1 < ring_.front()->seq) {
    out.kind = Pull::kStore;
    return out;
  }
  if (!spec.run.empty()) {
    pull_run_locked(pos, spec, out);
    return out;
  }
  out.kind = Pull::kEvents;
  auto index = static_cast<std::size_t>(pos + 1 - ring_.front()->seq);
  const std::size_t scan_end = std::min(ring_.size(), index + kPullScanMax);
  for (; index < scan_end; ++index) {
    const StreamEventPtr& e = ring_[index];
    out.pos = e->seq;
    if (matches(*e, spec)) {
      out.events.push_back(e);
      if (out.events.size() >= kPullBatchMax) {
        break;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Streams

namespace {

// Shared by a stream's writer and its reader (both on the session's strand).
struct StreamState {
  explicit StreamState(const asio::any_io_executor& executor)
      : waiter(std::make_shared<Waiter>(executor)) {}
  std::shared_ptr<Waiter> waiter;
  bool client_gone = false;
  bool reader_done = false;
  std::array<char, 512> scratch{};  // SSE: whatever the client sends after its request
};

void reader_finished(StreamState& state) {
  state.client_gone = true;
  state.reader_done = true;
  state.waiter->notified = true;
  state.waiter->timer.cancel();
}

struct BacklogPage {
  bool ok = true;
  std::string error;
  std::vector<StreamEventPtr> events;
  int64_t hub_pos = 0;
};

// Runs on the blocking pool: a store read must not stall the io threads.
asio::awaitable<BacklogPage> read_backlog(Hub* hub, int64_t after, StreamSpec spec) {
  BacklogPage page;
  // Read the position first: every matching event up to it is committed, so a short page means
  // the stream has seen everything up to it.
  page.hub_pos = hub->position();
  storage::EventFilter filter;
  filter.after_seq = after;
  filter.limit = limits::kStreamBacklogPage;
  filter.run = spec.run;
  filter.type_prefix = spec.type_prefix;
  auto events = hub->store().read_events(filter);
  if (!events) {
    page.ok = false;
    page.error = events.error().to_string();
    co_return page;
  }
  page.events.reserve(events->size());
  for (const storage::Event& e : *events) {
    page.events.push_back(make_stream_event(e));
  }
  co_return page;
}

template <class S>
asio::awaitable<bool> write_text(S& stream, std::string text, Millis timeout) {
  beast::get_lowest_layer(stream).expires_after(timeout);
  auto [ec, n] =
      co_await asio::async_write(stream, asio::buffer(text), asio::as_tuple(asio::use_awaitable));
  co_return !ec;
}

template <class S>
struct SseOut {
  S& stream;
  Millis write_timeout;

  static asio::awaitable<bool> send(SseOut& out, std::vector<StreamEventPtr> events,
                                    std::size_t n) {
    if (n == 1) {  // the common live case: write the shared frame, no copy
      beast::get_lowest_layer(out.stream).expires_after(out.write_timeout);
      auto [ec, written] = co_await asio::async_write(out.stream, asio::buffer(events[0]->sse),
                                                      asio::as_tuple(asio::use_awaitable));
      co_return !ec;
    }
    // Several pending events: one write.
    std::string text;
    for (std::size_t i = 0; i < n; ++i) {
      text += events[i]->sse;
    }
    co_return co_await write_text(out.stream, std::move(text), out.write_timeout);
  }
  static asio::awaitable<bool> keepalive(SseOut& out) {
    std::string comment = ": keepalive\n\n";
    co_return co_await write_text(out.stream, std::move(comment), out.write_timeout);
  }
};

template <class WS>
struct WsOut {
  WS& ws;

  static asio::awaitable<bool> send(WsOut& out, std::vector<StreamEventPtr> events, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      auto [ec, written] = co_await out.ws.async_write(asio::buffer(events[i]->json),
                                                       asio::as_tuple(asio::use_awaitable));
      if (ec) {
        co_return false;
      }
    }
    co_return true;
  }
  // Beast sends the pings itself (stream_base::timeout::keep_alive_pings).
  static asio::awaitable<bool> keepalive(WsOut&) { co_return true; }
};

enum class StreamEnd { kTerminal, kClient, kServer, kError };

// The pull loop shared by SSE and WebSocket: backlog from the store, then the ring, parked on the
// waiter's timer in between. Returns why it ended.
template <class Out>
asio::awaitable<StreamEnd> run_stream(Out& out, std::shared_ptr<StreamState> state, StreamSpec spec,
                                      StreamContext context) {
  struct Attached {
    explicit Attached(Hub* h) : hub(h) { hub->attach(); }
    ~Attached() { hub->detach(); }
    Attached(const Attached&) = delete;
    Attached& operator=(const Attached&) = delete;
    Hub* hub;
  } attached(context.hub);
  int64_t pos = spec.after_seq;
  Waiter& waiter = *state->waiter;
  for (;;) {
    if (state->client_gone) {
      co_return StreamEnd::kClient;
    }
    waiter.notified = false;
    Hub::PullResult pulled = context.hub->pull(pos, spec, state->waiter);
    std::vector<StreamEventPtr> events;
    int64_t next_pos = pos;
    if (pulled.kind == Hub::Pull::kStopped) {
      co_return StreamEnd::kServer;
    }
    if (pulled.kind == Hub::Pull::kWait) {
      waiter.timer.expires_after(context.keepalive);
      co_await waiter.timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (!waiter.notified && !state->client_gone && !co_await Out::keepalive(out)) {
        co_return StreamEnd::kError;
      }
      continue;
    }
    if (pulled.kind == Hub::Pull::kStore) {
      BacklogPage page = co_await asio::co_spawn(
          *context.pool, read_backlog(context.hub, pos, spec), asio::use_awaitable);
      if (!page.ok) {
        base::log_warn("api: stream backlog read failed", {{"error", page.error}});
        co_return StreamEnd::kError;
      }
      events = std::move(page.events);
      next_pos = events.empty() ? pos : events.back()->seq;
      if (events.size() < limits::kStreamBacklogPage) {
        next_pos = std::max(next_pos, page.hub_pos);
      }
    } else {
      events = std::move(pulled.events);
      next_pos = pulled.pos;
    }
    std::size_t n = events.size();
    bool terminal = false;
    if (spec.end_after_terminal && !spec.run.empty()) {
      for (std::size_t i = 0; i < events.size(); ++i) {
        if (events[i]->run == spec.run && is_terminal_type(events[i]->type)) {
          n = i + 1;
          terminal = true;
          break;
        }
      }
    }
    if (n > 0) {
      if (state->client_gone || !co_await Out::send(out, std::move(events), n)) {
        co_return state->client_gone ? StreamEnd::kClient : StreamEnd::kError;
      }
      context.metrics->stream_events(static_cast<int64_t>(n));
    }
    if (terminal) {
      co_return StreamEnd::kTerminal;
    }
    pos = next_pos;
  }
}

// Waits (bounded) until the reader coroutine has finished, closing the socket if it lingers, so
// that no operation still refers to the stream when the caller destroys it.
template <class Lowest>
asio::awaitable<void> join_reader(Lowest& lowest, std::shared_ptr<StreamState> state,
                                  Millis grace) {
  while (!state->reader_done) {
    state->waiter->timer.expires_after(grace);
    auto [ec] = co_await state->waiter->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!ec && !state->reader_done) {
      beast::error_code ignored;
      lowest.socket().close(ignored);
    }
  }
}

template <class S>
asio::awaitable<void> sse_reader(S& stream, std::shared_ptr<StreamState> state) {
  for (;;) {
    // A pending read keeps its own (infinite) deadline; writes set theirs before each write.
    beast::get_lowest_layer(stream).expires_never();
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(state->scratch),
                                                   asio::as_tuple(asio::use_awaitable));
    if (ec) {
      break;
    }
  }
  reader_finished(*state);
}

template <class WS>
asio::awaitable<void> websocket_reader(WS& ws, std::shared_ptr<StreamState> state) {
  beast::flat_buffer buffer;
  for (;;) {
    auto [ec, n] = co_await ws.async_read(buffer, asio::as_tuple(asio::use_awaitable));
    if (ec) {
      break;
    }
    buffer.consume(buffer.size());
  }
  reader_finished(*state);
}

void log_reader_exception(std::exception_ptr e) {
  if (!e) {
    return;
  }
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    base::log_error("api: stream reader failed", {{"error", ex.what()}});
  } catch (...) {
    base::log_error("api: stream reader failed", {{"error", "unknown exception"}});
  }
}

struct StreamGauge {
  StreamGauge(Metrics* m, bool ws) : metrics(m), websocket(ws) { metrics->stream_opened(ws); }
  ~StreamGauge() { metrics->stream_closed(websocket); }
  StreamGauge(const StreamGauge&) = delete;
  StreamGauge& operator=(const StreamGauge&) = delete;
  Metrics* metrics;
  bool websocket;
};

template <class S>
asio::awaitable<void> serve_sse_impl(S& stream, StreamSpec spec, StreamContext context) {
  // Close-delimited body: the stream ends when the connection does.
  const std::string head =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
      "Connection: close\r\nServer: venture\r\nX-Accel-Buffering: no\r\n\r\n";
  if (!co_await write_text(stream, head, context.write_timeout)) {
    co_return;
  }
  StreamGauge gauge(context.metrics, false);
  auto state = std::make_shared<StreamState>(stream.get_executor());
  asio::co_spawn(stream.get_executor(), sse_reader(stream, state), log_reader_exception);
  SseOut<S> out{stream, context.write_timeout};
  co_await run_stream(out, state, spec, context);
  context.hub->forget(spec, state->waiter);
  if (!state->reader_done) {
    beast::error_code ignored;
    beast::get_lowest_layer(stream).socket().cancel(ignored);
  }
  co_await join_reader(beast::get_lowest_layer(stream), state, context.write_timeout);
}

template <class S>
asio::awaitable<void> serve_websocket_impl(S stream, BeastRequest request, StreamSpec spec,
                                           StreamContext context) {
  // The WebSocket stream has its own timeouts; the TCP layer's would fire under a pending read.
  beast::get_lowest_layer(stream).expires_never();
  websocket::stream<S> ws(std::move(stream));
  websocket::stream_base::timeout timeout{};
  timeout.handshake_timeout = context.write_timeout;
  timeout.idle_timeout = context.keepalive * 2;  // a ping every keepalive, dead after two
  timeout.keep_alive_pings = true;
  ws.set_option(timeout);
  ws.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& response) { response.set(http::field::server, "venture"); }));
  ws.read_message_max(kWebSocketReadBytesMax);
  auto [ec] = co_await ws.async_accept(request, asio::as_tuple(asio::use_awaitable));
  if (ec) {
    co_return;
  }
  ws.text(true);
  StreamGauge gauge(context.metrics, true);
  auto state = std::make_shared<StreamState>(ws.get_executor());
  asio::co_spawn(ws.get_executor(), websocket_reader(ws, state), log_reader_exception);
  WsOut<websocket::stream<S>> out{ws};
  const StreamEnd end = co_await run_stream(out, state, spec, context);
  context.hub->forget(spec, state->waiter);
  if (!state->client_gone) {
    const websocket::close_reason reason(end == StreamEnd::kServer
                                             ? websocket::close_code::going_away
                                             : websocket::close_code::normal);
    // The peer may be gone already; the reader sees the end either way.
    co_await ws.async_close(reason, asio::as_tuple(asio::use_awaitable));
  }
  co_await join_reader(beast::get_lowest_layer(ws), state, context.write_timeout);
}

}  // namespace

asio::awaitable<void> serve_sse(TcpStream& stream, StreamSpec spec, StreamContext context) {
  return serve_sse_impl(stream, std::move(spec), context);
}

asio::awaitable<void> serve_sse(TlsStream& stream, StreamSpec spec, StreamContext context) {
  return serve_sse_impl(stream, std::move(spec), context);
}

asio::awaitable<void> serve_websocket(TcpStream stream, BeastRequest request, StreamSpec spec,
                                      StreamContext context) {
  return serve_websocket_impl(std::move(stream), std::move(request), std::move(spec), context);
}

asio::awaitable<void> serve_websocket(TlsStream stream, BeastRequest request, StreamSpec spec,
                                      StreamContext context) {
  return serve_websocket_impl(std::move(stream), std::move(request), std::move(spec), context);
}

}  // namespace venture::api::internal
