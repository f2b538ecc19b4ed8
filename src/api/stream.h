// api-internal: live event streams (SSE and WebSocket) and the Hub that feeds them. Included only
// by server.cc and stream.cc, so Beast stays inside the transport.
//
// The Hub keeps the last limits::kStreamRingEvents committed events, contiguous by seq, fed from
// the bus (subject ">") and completed from the store whenever the bus feed skips a seq (checkpoints
// are never published). Streams pull from it: a stream reads its backlog from the store until it
// reaches the hub's position, then reads the ring, and parks on a timer the hub cancels when new
// events arrive. Nothing is pushed to a stream, so a slow subscriber only delays itself. A per-run
// index of the ring lets a run's stream read only its run's events and be woken only by them.
//
// Threading: the Hub's state is behind one mutex; its store reads run on the blocking pool through
// a strand, never on the io threads. A stream runs on its session's strand.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/server.h"

namespace venture::api::internal {

namespace asio = boost::asio;
namespace beast = boost::beast;

using TcpStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using BeastRequest = beast::http::request<beast::http::string_body>;

// One committed event, encoded once for every subscriber.
struct StreamEvent {
  int64_t seq = 0;
  std::string type;
  std::string run;
  std::string json;  // storage::event_to_json, compact, one line
  std::string sse;   // the SSE frame: "id: <seq>\nevent: <type>\ndata: <json>\n\n"
};
using StreamEventPtr = std::shared_ptr<const StreamEvent>;

StreamEventPtr make_stream_event(const storage::Event& event);

// A parked stream. The hub posts `wake` to the timer's strand; the stream re-reads the ring.
struct Waiter {
  explicit Waiter(const asio::any_io_executor& executor) : timer(executor) {}
  asio::steady_timer timer;
  bool notified = false;    // touched only on the stream's strand
  bool registered = false;  // guarded by Hub::mu_
};

struct HubGate;

class Hub {
 public:
  Hub(storage::Store& store, bus::Bus& bus, asio::thread_pool& pool);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // Subscribes to the bus and reads the store's last seq (the hub's starting position).
  [[nodiscard]] Status start();
  // Unsubscribes and wakes every parked stream; streams then end. Idempotent.
  void stop();
  // Catches up with the store (events the bus never carried, e.g. a trailing checkpoint). Called
  // periodically by the server; cheap when nothing is missing.
  void resync();

  enum class Pull { kEvents, kWait, kStore, kStopped };
  struct PullResult {
    Pull kind = Pull::kWait;
    std::vector<StreamEventPtr> events;  // matching events after `pos`, when kEvents
    int64_t pos = 0;                     // the last seq examined (matching or not)
  };
  // Events after `pos` from the ring. kStore when the ring no longer holds pos+1; kWait (and the
  // waiter is registered, atomically with the check) when nothing after pos is known yet;
  // kStopped once stop() ran.
  PullResult pull(int64_t pos, const StreamSpec& spec, const std::shared_ptr<Waiter>& waiter);
  // A stream that ends while parked takes its waiter back (else it would stay registered until
  // its run's next event).
  void forget(const StreamSpec& spec, const std::shared_ptr<Waiter>& waiter);
  // Every event up to this seq is in the ring or in the store.
  int64_t position();
  // Streams open on the hub (run_stream attaches and detaches). While none is, the hub only
  // advances its position per event and keeps no ring: nobody reads it, and a stream that opens
  // later reads what it missed from the store, as it does for anything older than the ring.
  void attach();
  void detach();
  bool stopped();

  storage::Store& store() { return store_; }

 private:
  void on_message(const bus::Message& message);
  void schedule_pump_locked();
  void pump();
  // Reads (position, up_to] from the store into the ring; false on a store error.
  bool fill_from_store(int64_t up_to, bool& appended);
  void append_locked(StreamEventPtr event);
  void clear_ring_locked();
  // Wakes the waiters of every run that got an event since the last wake, and the unfiltered
  // waiters; `everyone` also wakes every run's (stop).
  void wake_locked(bool everyone);
  void pull_run_locked(int64_t pos, const StreamSpec& spec, PullResult& out);

  storage::Store& store_;
  bus::Bus& bus_;
  asio::strand<asio::thread_pool::executor_type> strand_;

  std::mutex mu_;
  bool started_ = false;
  bool stopped_ = false;
  std::shared_ptr<HubGate> gate_;
  uint64_t subscription_ = 0;
  bool subscribed_ = false;
  int64_t last_ = 0;  // hub position
  std::deque<StreamEventPtr> ring_;
  // Per run: its events in the ring (in seq order) and the streams of that run parked on it, so
  // an event wakes only its run's streams and a run's stream reads only its run's events.
  struct RunIndex {
    std::deque<StreamEventPtr> events;
    std::vector<std::shared_ptr<Waiter>> waiters;
  };
  std::unordered_map<std::string, RunIndex> runs_;
  std::vector<std::string> touched_;              // runs with events since the last wake
  std::vector<std::shared_ptr<Waiter>> waiters_;  // parked streams without a run filter
  std::vector<json::value> pending_;              // raw bus payloads not yet ingested (bounded)
  int64_t streams_ = 0;                           // attached streams
  bool pump_scheduled_ = false;
  bool resync_needed_ = false;
};

// What a stream needs from the server.
struct StreamContext {
  Hub* hub = nullptr;
  Metrics* metrics = nullptr;
  asio::thread_pool* pool = nullptr;
  Millis keepalive{0};
  Millis write_timeout{0};
};

// Serves an SSE response on `stream` (the response head included). Returns when the stream ends;
// the caller then closes the connection.
asio::awaitable<void> serve_sse(TcpStream& stream, StreamSpec spec, StreamContext context);
asio::awaitable<void> serve_sse(TlsStream& stream, StreamSpec spec, StreamContext context);

// Accepts the WebSocket upgrade `request` on `stream` and serves the events as text frames.
asio::awaitable<void> serve_websocket(TcpStream stream, BeastRequest request, StreamSpec spec,
                                      StreamContext context);
asio::awaitable<void> serve_websocket(TlsStream stream, BeastRequest request, StreamSpec spec,
                                      StreamContext context);

}  // namespace venture::api::internal
