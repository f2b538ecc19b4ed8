// The NATS bus (cluster mode, #5): topics on core NATS, work queues on JetStream, key-value on
// JetStream KV, through the NATS C client (cnats 3.4). The design is in README.md ("NATS").
//
// Naming. With NatsOptions::ns empty, a topic subject is used as is, queue `x` is subject `q.x`
// with the durable pull consumer `q_<escaped x>` in the stream VENTURE_QUEUES, events are captured
// by the stream VENTURE_EVENTS, and KV bucket `b` is the NATS bucket `venture_b`. A namespace `n`
// prefixes every subject with `n.` and names the streams VENTURE-n_QUEUES / VENTURE-n_EVENTS and
// the buckets `venture-n_b` (so tests and deployments sharing a server stay apart).
//
// Leases. A pulled natsMsg is kept in its queue's `held` map under a lease id that is unique in
// this process, until it is acked, nacked, redelivered to this process (the server's redelivery
// makes the old delivery stale) or forgotten (one AckWait after its lease ended: by then the
// server has redelivered it, so nobody can usefully ack it; this bounds memory).
//
// Callbacks. A cnats subscription's closure is a heap SubBox that cnats frees after the
// subscription's last callback (the on-complete callback). The handler runs under the box's
// mutex while the box is active; stopping a subscription deactivates the box under that mutex,
// so once unsubscribe/on_ready(nullptr) returns, the old handler is never called again.
//
// Threading. Every method is thread-safe. cnats forbids concurrent fetches on one subscription,
// so pulls of one queue are serialized by the queue's `pull_mu`. The mutexes held across a
// request (each bounded by kRequestTimeout) are `pull_mu` (fetch, consumer declaration),
// `streams_mu_` and `kv_mu_` (declarations); the others guard memory only. No std::thread: the
// on_ready timer is cnats's idle timeout of the queue's subscription.
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bus/bus.h"
#include "bus/subject.h"

namespace venture::bus {
namespace {

constexpr int64_t kNanosPerMilli = 1'000'000;
// Every JetStream API request (publish acks included) waits at most this long, so a caller is
// never held for more than about two seconds, even when the server vanishes mid-request.
constexpr Millis kRequestTimeout{1500};
constexpr Millis kConnectTimeout{2000};
constexpr Millis kReconnectWait{250};
constexpr int kReconnectBufferBytes = 64 << 20;  // publishes and acks buffered while reconnecting
// A pull asks the server for what is ready now (no_wait); this bounds the wait for the reply.
constexpr Millis kFetchExpires{100};
// A fetch for possible redeliveries only (nothing new pending) waits at most this long.
constexpr Millis kRedeliveryProbe{5};
constexpr std::size_t kFetchBatchMax = 1024;
// on_ready's timer: with nothing arriving on the queue's subject, the callback also runs this
// often while the queue has unacknowledged messages (redeliveries and delayed nacks).
constexpr Millis kReadyTimer{250};
// next_wake: how soon to look again while the consumer has pending or unacked messages, and how
// long a consumer-info answer is reused.
constexpr Millis kWakeSoon{100};
constexpr std::size_t kQueueNameBytesMax = 128;
// Stream bounds (file storage). The events stream is a bounded recent history for consumers
// outside the process (the store is the durable truth); queues and KV buckets hold live state.
constexpr int64_t kEventsMaxAgeNanos = 7LL * 24 * 3600 * 1000 * kNanosPerMilli;
constexpr int64_t kEventsMaxBytes = 1LL << 30;
constexpr int64_t kQueuesMaxBytes = 1LL << 30;
constexpr int64_t kKvMaxBytes = 64LL << 20;
constexpr const char* kMsgIdHeader = "Nats-Msg-Id";
// The event subjects the engine and the API publish (storage event types: "run.started", ...).
constexpr const char* kEventRoots[] = {"workflow", "run",   "node",    "approval",
                                       "patch",    "token", "control", "audit"};

static_assert(kRequestTimeout + kFetchExpires < Millis(2000));
static_assert(kFetchBatchMax <= limits::kQueueDepthMax);

// ---- RAII for cnats objects ----

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
template <class T, void (*F)(T*)>
using Owned = std::unique_ptr<T, Deleter<T, F>>;

using OptionsPtr = Owned<natsOptions, natsOptions_Destroy>;
using ConnectionPtr = Owned<natsConnection, natsConnection_Destroy>;
using JsPtr = Owned<jsCtx, jsCtx_Destroy>;
using SubPtr = Owned<natsSubscription, natsSubscription_Destroy>;
using MsgPtr = Owned<natsMsg, natsMsg_Destroy>;
using KvPtr = Owned<kvStore, kvStore_Destroy>;
using KvEntryPtr = Owned<kvEntry, kvEntry_Destroy>;
using ConsumerInfoPtr = Owned<jsConsumerInfo, jsConsumerInfo_Destroy>;
using StreamInfoPtr = Owned<jsStreamInfo, jsStreamInfo_Destroy>;
using PubAckPtr = Owned<jsPubAck, jsPubAck_Destroy>;
using MetaPtr = Owned<jsMsgMetaData, jsMsgMetaData_Destroy>;

// ---- Errors ----

std::string last_error_text(natsStatus s) {
  const char* text = nats_GetLastError(nullptr);
  std::string out = natsStatus_GetText(s);
  if (text != nullptr && *text != '\0') {
    out += ": ";
    out += text;
  }
  return out;
}

bool is_unavailable(natsStatus s) {
  switch (s) {
    case NATS_TIMEOUT:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_NOT_YET_CONNECTED:
    case NATS_NO_RESPONDERS:
    case NATS_IO_ERROR:
    case NATS_STALE_CONNECTION:
    case NATS_SSL_ERROR:
    case NATS_DRAINING:
    case NATS_CONNECTION_AUTH_FAILED:
      return true;
    default:
      return false;
  }
}

// The canonical error for a failed cnats call (reads cnats's thread-local last error).
Error nats_error(natsStatus s, std::string_view what) {
  std::string message = "bus: " + std::string(what) + ": " + last_error_text(s);
  if (is_unavailable(s)) {
    return unavailable_error(std::move(message));
  }
  if (s == NATS_MAX_PAYLOAD || s == NATS_INVALID_ARG || s == NATS_INVALID_SUBJECT) {
    return invalid_argument_error(std::move(message));
  }
  return internal_error(std::move(message));
}

bool text_has(const std::string& text, std::string_view needle) {
  return text.find(needle) != std::string::npos;
}

// ---- Names ----

// Durable names cannot hold '.', '*', '>' or whitespace. '_' is the escape character, so the
// mapping is injective: '_' -> "__", '.' -> "_d", anything outside [A-Za-z0-9-] -> "_xHH".
std::string durable_name(std::string_view queue) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "q_";
  for (const char c : queue) {
    const auto u = static_cast<unsigned char>(c);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-') {
      out += c;
    } else if (c == '_') {
      out += "__";
    } else if (c == '.') {
      out += "_d";
    } else {
      out += "_x";
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    }
  }
  return out;
}

// Subjects of the bus's own traffic, which topic subscribers never see (as with the memory bus,
// where queues and topics are separate): request replies (`_INBOX.`), JetStream and KV (`$`),
// and, after the namespace is stripped, the queues (`q.`).
bool is_internal(std::string_view wire_subject, std::string_view topic) {
  return wire_subject.starts_with("_INBOX.") || wire_subject.starts_with('$') ||
         topic.starts_with("q.");
}

bool is_valid_ns(std::string_view ns) {
  if (ns.size() > kKvBucketBytesMax / 2) {
    return false;
  }
  return std::all_of(ns.begin(), ns.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  });
}

// ---- Subscriptions ----

// The closure of one asynchronous cnats subscription. Freed by cnats's on-complete callback.
struct SubBox {
  std::mutex mu;
  bool active = true;
  std::function<void(natsMsg*)> fn;  // nullptr msg: the subscription's idle timer fired
};

void on_sub_msg(natsConnection* /*nc*/, natsSubscription* /*sub*/, natsMsg* msg, void* closure) {
  const MsgPtr owned(msg);
  auto* box = static_cast<SubBox*>(closure);
  std::lock_guard lock(box->mu);
  if (box->active && box->fn) {
    box->fn(msg);
  }
}

void on_sub_complete(void* closure) { delete static_cast<SubBox*>(closure); }

// An active cnats subscription with its box. stop() (or the destructor) guarantees no further
// handler call once it returns.
class AsyncSub {
 public:
  AsyncSub() = default;
  AsyncSub(const AsyncSub&) = delete;
  AsyncSub& operator=(const AsyncSub&) = delete;
  ~AsyncSub() { stop(); }

  // Subscribes `subject`; `idle` > 0 also calls fn(nullptr) after each `idle` without messages.
  Status start(natsConnection* nc, const std::string& subject, Millis idle,
               std::function<void(natsMsg*)> fn) {
    auto box = std::make_unique<SubBox>();
    box->fn = std::move(fn);
    natsSubscription* sub = nullptr;
    const natsStatus s =
        idle > Millis(0)
            ? natsConnection_SubscribeTimeout(&sub, nc, subject.c_str(), idle.count(), on_sub_msg,
                                              box.get())
            : natsConnection_Subscribe(&sub, nc, subject.c_str(), on_sub_msg, box.get());
    if (s != NATS_OK) {
      return nats_error(s, "subscribe '" + subject + "'");
    }
    sub_.reset(sub);
    box_ = box.get();
    if (natsSubscription_SetOnCompleteCB(sub, on_sub_complete, box_) == NATS_OK) {
      (void)box.release();  // cnats frees it after the last callback
    } else {
      // Keep the box alive for ever rather than risk a callback into freed memory (never seen:
      // SetOnCompleteCB fails only for a synchronous or invalid subscription).
      base::log_warn("bus: cannot watch a NATS subscription's completion", {{"subject", subject}});
      (void)box.release();
    }
    return ok();
  }

  void stop() {
    if (!sub_) {
      return;
    }
    {
      std::lock_guard lock(box_->mu);
      box_->active = false;
      box_->fn = nullptr;
    }
    (void)natsSubscription_Unsubscribe(sub_.get());
    sub_.reset();
    box_ = nullptr;
  }

 private:
  SubPtr sub_;
  SubBox* box_ = nullptr;  // owned by cnats once the subscription exists
};

// ---- Queues ----

struct Held {
  MsgPtr msg;
  uint64_t seq = 0;
  Time lease_until{};
};

struct LeaseKey {
  Time until;
  uint64_t lease = 0;
  friend auto operator<=>(const LeaseKey&, const LeaseKey&) = default;
};

struct QueueState {
  QueueState(std::string n, std::string s) : name(std::move(n)), subject(std::move(s)) {
    durable = durable_name(name);
  }
  const std::string name;
  const std::string subject;  // the NATS subject of the queue's messages
  std::string durable;

  // The bound pull subscription; created on first enqueue/pull/stats, guarded by pull_mu.
  std::mutex pull_mu;
  SubPtr pull_sub;
  std::atomic<bool> consumer_ready{false};

  // Deliveries held by this process, by lease id; `by_seq` finds the holder of a stream
  // sequence; `expiry` orders them for forgetting.
  std::mutex leases_mu;
  std::unordered_map<uint64_t, Held> held;
  std::unordered_map<uint64_t, uint64_t> by_seq;
  std::set<LeaseKey> expiry;

  std::atomic<std::size_t> dead{0};

  std::mutex ready_mu;  // guards ready_sub (the on_ready subscription)
  std::unique_ptr<AsyncSub> ready_sub;

  // The last consumer info (for next_wake and the on_ready timer).
  std::mutex info_mu;
  std::optional<Time> info_at;
  uint64_t num_pending = 0;
  int64_t num_ack_pending = 0;
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

class NatsBus final : public Bus {
 public:
  NatsBus(NatsOptions options, base::Clock& clock);
  ~NatsBus() override;
  NatsBus(const NatsBus&) = delete;
  NatsBus& operator=(const NatsBus&) = delete;

  Status connect();

  Status publish(std::string_view subject, json::value data) override;
  Result<uint64_t> subscribe(std::string_view pattern, Handler handler) override;
  void unsubscribe(uint64_t subscription) override;

  Status enqueue(std::string_view queue, std::string dedup_id, json::value payload) override;
  Result<std::vector<Delivery>> pull(std::string_view queue, std::size_t max,
                                     Millis lease) override;
  Status ack(const Delivery& d) override;
  Status nack(const Delivery& d, Millis delay) override;
  Status heartbeat(Delivery& d, Millis extend) override;
  void on_ready(std::string_view queue, std::function<void()> callback) override;
  Result<QueueStats> stats(std::string_view queue) override;
  std::optional<Time> next_wake(std::string_view queue) override;

  Status kv_bucket(std::string_view bucket, Millis ttl) override;
  Result<KvEntry> kv_get(std::string_view bucket, std::string_view key) override;
  Result<uint64_t> kv_create(std::string_view bucket, std::string_view key,
                             std::string value) override;
  Result<uint64_t> kv_update(std::string_view bucket, std::string_view key, std::string value,
                             uint64_t revision) override;
  Result<uint64_t> kv_put(std::string_view bucket, std::string_view key,
                          std::string value) override;
  Status kv_delete(std::string_view bucket, std::string_view key) override;
  Status health() override;

 private:
  std::string wire(std::string_view subject) const {
    return prefix_.empty() ? std::string(subject) : prefix_ + std::string(subject);
  }
  Status check_connected();
  // kInvalidArgument when `bytes` exceed the server's max_payload.
  Status check_size(std::size_t bytes);
  Status declare_stream(jsStreamConfig& config);
  Status declare_streams();
  Status watch_dead_letters();
  void on_dead_letter(natsMsg* msg);

  Result<QueueState*> queue_state(std::string_view queue);
  QueueState* find_queue(std::string_view queue);
  Status ensure_consumer(QueueState& q);
  // A request had no responder: the stream or the consumer is gone (a server that lost its
  // store). The next use declares them again.
  void lost_stream(QueueState& q) {
    streams_ready_.store(false, std::memory_order_release);
    q.consumer_ready.store(false, std::memory_order_release);
  }
  Result<Delivery> take(QueueState& q, natsMsg* raw, Time now, Millis lease);
  void forget_expired(QueueState& q, Time now);
  void refresh_info(QueueState& q, const jsConsumerInfo& info, Time now);
  Result<ConsumerInfoPtr> consumer_info(QueueState& q);
  // Runs fn on the held delivery `d` and forgets it if `release`; kNotFound when stale.
  Status with_held(const Delivery& d, bool release,
                   const std::function<Status(QueueState&, Held&)>& fn);

  Result<kvStore*> kv_find(std::string_view bucket, std::string_view key);
  Error kv_write_error(natsStatus s, std::string_view key, Code mismatch);

  const NatsOptions options_;
  base::Clock& clock_;
  std::string prefix_;  // "" or "<ns>."
  std::string events_stream_;
  std::string queues_stream_;
  std::string kv_prefix_;

  ConnectionPtr nc_;
  JsPtr js_;
  jsOptions js_options_{};

  std::atomic<uint64_t> next_lease_{1};
  // False when a request found no stream to answer it (the server lost its store): the next
  // ensure_consumer declares the streams again.
  std::atomic<bool> streams_ready_{false};
  std::mutex streams_mu_;

  std::shared_mutex queues_mu_;
  StringMap<std::unique_ptr<QueueState>> queues_;
  StringMap<QueueState*> by_durable_;  // guarded by queues_mu_

  std::mutex topics_mu_;
  std::map<uint64_t, std::unique_ptr<AsyncSub>> subscriptions_;
  uint64_t next_subscription_ = 1;

  std::unique_ptr<AsyncSub> dead_sub_;

  std::mutex kv_mu_;  // guards buckets_; held while declaring a bucket
  StringMap<std::pair<KvPtr, Millis>> buckets_;
};

// ---- Connection ----

void on_disconnected(natsConnection* nc, void* closure);
void on_reconnected(natsConnection* nc, void* closure);

NatsBus::NatsBus(NatsOptions options, base::Clock& clock)
    : options_(std::move(options)), clock_(clock) {
  if (options_.ns.empty()) {
    events_stream_ = "VENTURE_EVENTS";
    queues_stream_ = "VENTURE_QUEUES";
    kv_prefix_ = "venture_";
  } else {
    prefix_ = options_.ns + ".";
    events_stream_ = "VENTURE-" + options_.ns + "_EVENTS";
    queues_stream_ = "VENTURE-" + options_.ns + "_QUEUES";
    kv_prefix_ = "venture-" + options_.ns + "_";
  }
}

NatsBus::~NatsBus() {
  // Stop every handler first (no callback runs once these return), then flush buffered acks
  // and close the connection.
  dead_sub_.reset();
  {
    std::lock_guard lock(topics_mu_);
    subscriptions_.clear();
  }
  {
    std::unique_lock lock(queues_mu_);
    for (auto& [name, q] : queues_) {
      std::lock_guard ready(q->ready_mu);
      q->ready_sub.reset();
    }
  }
  if (nc_) {
    (void)natsConnection_FlushTimeout(nc_.get(), kRequestTimeout.count());
  }
  {
    std::unique_lock lock(queues_mu_);
    for (auto& [name, q] : queues_) {
      std::lock_guard held(q->leases_mu);
      q->held.clear();  // unacked deliveries: the server redelivers them after AckWait
      q->pull_sub.reset();
    }
  }
  {
    std::lock_guard lock(kv_mu_);
    buckets_.clear();
  }
  js_.reset();
  if (nc_) {
    natsConnection_Close(nc_.get());
    nc_.reset();
  }
}

void on_disconnected(natsConnection* nc, void* /*closure*/) {
  if (natsConnection_IsClosed(nc)) {
    return;  // our own close, not an outage
  }
  const char* text = nullptr;
  (void)natsConnection_GetLastError(nc, &text);
  base::log_warn("bus: NATS disconnected; reconnecting",
                 {{"reason", text != nullptr && *text != '\0' ? text : "connection lost"}});
}

void on_reconnected(natsConnection* /*nc*/, void* /*closure*/) {
  base::log_info("bus: NATS reconnected");
}

Status NatsBus::connect() {
  natsOptions* raw = nullptr;
  if (natsStatus s = natsOptions_Create(&raw); s != NATS_OK) {
    return nats_error(s, "natsOptions_Create");
  }
  const OptionsPtr opts(raw);
  natsStatus s = natsOptions_SetURL(raw, options_.url.c_str());
  if (s == NATS_OK) s = natsOptions_SetName(raw, options_.name.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(raw, kConnectTimeout.count());
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(raw, -1);  // for ever
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(raw, kReconnectWait.count());
  if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(raw, kReconnectBufferBytes);
  // A request in flight when the connection drops fails at once instead of timing out.
  if (s == NATS_OK) s = natsOptions_SetFailRequestsOnDisconnect(raw, true);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(raw, on_disconnected, nullptr);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(raw, on_reconnected, nullptr);
  if (s != NATS_OK) {
    return nats_error(s, "NATS options");
  }
  natsConnection* nc = nullptr;
  if (s = natsConnection_Connect(&nc, raw); s != NATS_OK) {
    Error e = nats_error(s, "connect to '" + options_.url + "'");
    e.code = Code::kUnavailable;
    return e;
  }
  nc_.reset(nc);
  jsOptions_Init(&js_options_);
  js_options_.Wait = kRequestTimeout.count();
  jsCtx* js = nullptr;
  if (s = natsConnection_JetStream(&js, nc, &js_options_); s != NATS_OK) {
    return nats_error(s, "JetStream context");
  }
  js_.reset(js);
  VENTURE_RETURN_IF_ERROR(declare_streams());
  streams_ready_.store(true);
  return watch_dead_letters();
}

// Creates the stream, or updates an existing one to this configuration.
Status NatsBus::declare_stream(jsStreamConfig& config) {
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_AddStream(&info, js_.get(), &config, &js_options_, &code);
  if (s != NATS_OK && code == JSStreamNameExistErr) {
    s = js_UpdateStream(&info, js_.get(), &config, &js_options_, &code);
  }
  const StreamInfoPtr owned(info);
  if (s != NATS_OK) {
    return nats_error(s, std::string("declare stream ") + config.Name);
  }
  return ok();
}

Status NatsBus::declare_streams() {
  std::vector<std::string> subjects;
  subjects.reserve(std::size(kEventRoots));
  for (const char* root : kEventRoots) {
    subjects.push_back(prefix_ + root + ".>");
  }
  std::vector<const char*> subject_ptrs;
  subject_ptrs.reserve(subjects.size());
  for (const std::string& subject : subjects) {
    subject_ptrs.push_back(subject.c_str());
  }
  jsStreamConfig events;
  jsStreamConfig_Init(&events);
  events.Name = events_stream_.c_str();
  events.Subjects = subject_ptrs.data();
  events.SubjectsLen = static_cast<int>(subject_ptrs.size());
  events.Retention = js_LimitsPolicy;
  events.Storage = js_FileStorage;
  events.MaxAge = kEventsMaxAgeNanos;
  events.MaxBytes = kEventsMaxBytes;
  events.Discard = js_DiscardOld;
  VENTURE_RETURN_IF_ERROR(declare_stream(events));

  const std::string queue_subjects = prefix_ + "q.>";
  const char* queue_subject_ptr = queue_subjects.c_str();
  jsStreamConfig queues;
  jsStreamConfig_Init(&queues);
  queues.Name = queues_stream_.c_str();
  queues.Subjects = &queue_subject_ptr;
  queues.SubjectsLen = 1;
  queues.Retention = js_WorkQueuePolicy;
  queues.Storage = js_FileStorage;
  queues.MaxBytes = kQueuesMaxBytes;
  queues.MaxMsgsPerSubject = static_cast<int64_t>(options_.queue_depth_max);
  queues.Discard = js_DiscardNew;
  queues.DiscardNewPerSubject = true;
  return declare_stream(queues);
}

// Counts (and removes from the work-queue stream, which would otherwise keep it for ever) every
// message that reached MaxDeliver on one of this namespace's queues.
Status NatsBus::watch_dead_letters() {
  auto sub = std::make_unique<AsyncSub>();
  VENTURE_RETURN_IF_ERROR(
      sub->start(nc_.get(), "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + queues_stream_ + ".*",
                 Millis(0), [this](natsMsg* msg) { on_dead_letter(msg); }));
  dead_sub_ = std::move(sub);
  return ok();
}

void NatsBus::on_dead_letter(natsMsg* msg) {
  if (msg == nullptr) {
    return;
  }
  const std::string_view text(natsMsg_GetData(msg),
                              static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  auto advisory = base::parse_json(text);
  if (!advisory || !advisory->is_object()) {
    return;
  }
  const json::object& o = advisory->as_object();
  const json::string* consumer = base::find_string(o, "consumer");
  const json::value* seq = o.if_contains("stream_seq");
  if (consumer == nullptr || seq == nullptr || !seq->is_number()) {
    return;
  }
  QueueState* q = nullptr;
  {
    std::shared_lock lock(queues_mu_);
    auto it = by_durable_.find(std::string_view(*consumer));
    q = it == by_durable_.end() ? nullptr : it->second;
  }
  boost::system::error_code ec;
  const auto stream_seq = seq->to_number<uint64_t>(ec);
  if (ec) {
    return;
  }
  base::log_warn(
      "bus: message dead-lettered after too many deliveries",
      {{"queue", q != nullptr ? q->name : std::string(*consumer)}, {"message_id", stream_seq}});
  if (q != nullptr) {
    q->dead.fetch_add(1, std::memory_order_relaxed);
  }
  // Several processes may race to delete it; only the first succeeds, which is fine.
  (void)js_DeleteMsg(js_.get(), queues_stream_.c_str(), stream_seq, &js_options_, nullptr);
}

Status NatsBus::check_connected() {
  const natsConnStatus st = natsConnection_Status(nc_.get());
  if (st == NATS_CONN_STATUS_CONNECTED) {
    return ok();
  }
  const char* text = nullptr;
  (void)natsConnection_GetLastError(nc_.get(), &text);
  std::string reason = st == NATS_CONN_STATUS_CLOSED ? "closed" : "disconnected, reconnecting";
  if (text != nullptr && *text != '\0') {
    reason += " (" + std::string(text) + ")";
  }
  return unavailable_error("bus: NATS connection " + reason);
}

Status NatsBus::health() { return check_connected(); }

Status NatsBus::check_size(std::size_t bytes) {
  const int64_t max = natsConnection_GetMaxPayload(nc_.get());
  if (max > 0 && bytes > static_cast<uint64_t>(max)) {
    return invalid_argument_error("bus: message of " + std::to_string(bytes) +
                                  " bytes over the server's max_payload of " + std::to_string(max));
  }
  return ok();
}

// ---- Topics ----

Status NatsBus::publish(std::string_view subject, json::value data) {
  if (!is_valid_subject(subject)) {
    return invalid_argument_error("bus: invalid subject '" + std::string(subject) + "'");
  }
  if (subject.starts_with("q.")) {
    return invalid_argument_error("bus: subjects under 'q.' are the queues' ('" +
                                  std::string(subject) + "')");
  }
  VENTURE_RETURN_IF_ERROR(check_connected());
  const std::string payload = base::compact_json(data);
  VENTURE_RETURN_IF_ERROR(check_size(payload.size()));
  const std::string wire_subject = wire(subject);
  const natsStatus s = natsConnection_Publish(nc_.get(), wire_subject.c_str(), payload.data(),
                                              static_cast<int>(payload.size()));
  if (s != NATS_OK) {
    return nats_error(s, "publish '" + wire_subject + "'");
  }
  return ok();
}

Result<uint64_t> NatsBus::subscribe(std::string_view pattern, Handler handler) {
  if (!is_valid_pattern(pattern)) {
    return invalid_argument_error("bus: invalid subject pattern '" + std::string(pattern) + "'");
  }
  if (!handler) {
    return invalid_argument_error("bus: empty handler");
  }
  std::lock_guard lock(topics_mu_);
  if (subscriptions_.size() >= limits::kTopicSubscribersMax) {
    return resource_exhausted_error("bus: too many subscriptions");
  }
  auto sub = std::make_unique<AsyncSub>();
  const std::size_t strip = prefix_.size();
  VENTURE_RETURN_IF_ERROR(sub->start(
      nc_.get(), wire(pattern), Millis(0), [strip, handler = std::move(handler)](natsMsg* msg) {
        if (msg == nullptr) {
          return;
        }
        const std::string_view subject(natsMsg_GetSubject(msg));
        if (subject.size() <= strip || is_internal(subject, subject.substr(strip))) {
          return;
        }
        const std::string_view text(natsMsg_GetData(msg),
                                    static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
        auto data = base::parse_json(text);
        if (!data) {
          base::log_warn("bus: dropping a malformed topic message", {{"subject", subject}});
          return;
        }
        handler(Message{std::string(subject.substr(strip)), std::move(*data)});
      }));
  const uint64_t id = next_subscription_++;
  subscriptions_.emplace(id, std::move(sub));
  return id;
}

void NatsBus::unsubscribe(uint64_t subscription) {
  std::unique_ptr<AsyncSub> sub;
  {
    std::lock_guard lock(topics_mu_);
    auto it = subscriptions_.find(subscription);
    if (it == subscriptions_.end()) {
      return;
    }
    sub = std::move(it->second);
    subscriptions_.erase(it);
  }
  sub->stop();  // outside topics_mu_: it waits for a running handler
}

// ---- Queues ----

QueueState* NatsBus::find_queue(std::string_view queue) {
  std::shared_lock lock(queues_mu_);
  auto it = queues_.find(queue);
  return it == queues_.end() ? nullptr : it->second.get();
}

Result<QueueState*> NatsBus::queue_state(std::string_view queue) {
  if (queue.empty() || queue.size() > kQueueNameBytesMax || !is_valid_subject(queue)) {
    return invalid_argument_error("bus: invalid queue name '" + std::string(queue) + "'");
  }
  if (QueueState* q = find_queue(queue)) {
    return q;
  }
  std::unique_lock lock(queues_mu_);
  auto it = queues_.find(queue);
  if (it == queues_.end()) {
    auto q = std::make_unique<QueueState>(std::string(queue), wire("q." + std::string(queue)));
    by_durable_.emplace(q->durable, q.get());
    it = queues_.emplace(std::string(queue), std::move(q)).first;
  }
  return it->second.get();
}

// Declares the queue's durable consumer (or updates it to this configuration) and binds the pull
// subscription. Idempotent; caller holds q.pull_mu.
Status NatsBus::ensure_consumer(QueueState& q) {
  if (q.consumer_ready.load(std::memory_order_acquire)) {
    return ok();
  }
  VENTURE_RETURN_IF_ERROR(check_connected());
  if (!streams_ready_.load(std::memory_order_acquire)) {
    std::lock_guard lock(streams_mu_);
    if (!streams_ready_.load(std::memory_order_acquire)) {
      VENTURE_RETURN_IF_ERROR(declare_streams());
      streams_ready_.store(true, std::memory_order_release);
    }
  }
  jsConsumerConfig config;
  jsConsumerConfig_Init(&config);
  config.Durable = q.durable.c_str();
  config.FilterSubject = q.subject.c_str();
  config.AckPolicy = js_AckExplicit;
  config.DeliverPolicy = js_DeliverAll;
  config.AckWait = options_.lease.count() * kNanosPerMilli;
  config.MaxDeliver = static_cast<int64_t>(limits::kDeliveriesMax);
  config.MaxAckPending = static_cast<int64_t>(options_.queue_depth_max);
  jsConsumerInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s =
      js_AddConsumer(&info, js_.get(), queues_stream_.c_str(), &config, &js_options_, &code);
  if (s != NATS_OK && code == JSConsumerNameExistErr) {
    s = js_UpdateConsumer(&info, js_.get(), queues_stream_.c_str(), &config, &js_options_, &code);
  }
  const ConsumerInfoPtr owned_info(info);
  if (s != NATS_OK) {
    return nats_error(s, "declare consumer " + q.durable);
  }
  jsSubOptions sub_options;
  jsSubOptions_Init(&sub_options);
  sub_options.Stream = queues_stream_.c_str();
  sub_options.Consumer = q.durable.c_str();
  natsSubscription* sub = nullptr;
  s = js_PullSubscribe(&sub, js_.get(), q.subject.c_str(), q.durable.c_str(), &js_options_,
                       &sub_options, &code);
  if (s != NATS_OK) {
    return nats_error(s, "bind consumer " + q.durable);
  }
  if (q.pull_sub) {
    (void)natsSubscription_Unsubscribe(q.pull_sub.get());  // bound: the consumer stays
  }
  q.pull_sub.reset(sub);
  q.consumer_ready.store(true, std::memory_order_release);
  return ok();
}

Status NatsBus::enqueue(std::string_view queue, std::string dedup_id, json::value payload) {
  VENTURE_ASSIGN_OR_RETURN(QueueState * q, queue_state(queue));
  VENTURE_RETURN_IF_ERROR(check_connected());
  if (!q->consumer_ready.load(std::memory_order_acquire)) {
    std::lock_guard lock(q->pull_mu);
    VENTURE_RETURN_IF_ERROR(ensure_consumer(*q));
  }
  const std::string data = base::compact_json(payload);
  VENTURE_RETURN_IF_ERROR(check_size(data.size()));
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = kRequestTimeout.count();
  po.ExpectStream = queues_stream_.c_str();
  // JetStream de-duplicates per stream, and every queue shares one stream: scope the id by the
  // queue (a task and its result carry the same attempt key).
  const std::string msg_id = dedup_id.empty() ? "" : std::string(queue) + "|" + dedup_id;
  if (!msg_id.empty()) {
    po.MsgId = msg_id.c_str();
  }
  jsPubAck* ack = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_Publish(&ack, js_.get(), q->subject.c_str(), data.data(),
                                  static_cast<int>(data.size()), &po, &code);
  const PubAckPtr owned(ack);
  if (s == NATS_OK) {
    return ok();
  }
  if (s == NATS_NO_RESPONDERS) {
    lost_stream(*q);
  }
  Error e = nats_error(s, "enqueue on '" + std::string(queue) + "'");
  if (text_has(e.message, "maximum messages") || code == JSStreamStoreFailedErr) {
    return resource_exhausted_error("bus: queue '" + std::string(queue) + "' is full (" +
                                    e.message + ")");
  }
  return e;
}

// Registers the fetched message as a delivery held by this process. A message that cannot be
// decoded is terminated (never redelivered), logged and counted dead.
Result<Delivery> NatsBus::take(QueueState& q, natsMsg* raw, Time now, Millis lease) {
  MsgPtr msg(raw);
  jsMsgMetaData* meta_raw = nullptr;
  natsStatus s = natsMsg_GetMetaData(&meta_raw, msg.get());
  const MetaPtr meta(meta_raw);
  const std::string_view text(natsMsg_GetData(msg.get()),
                              static_cast<std::size_t>(natsMsg_GetDataLength(msg.get())));
  auto payload = s == NATS_OK ? base::parse_json(text) : Result<json::value>(json::value());
  if (s != NATS_OK || !payload) {
    (void)natsMsg_Term(msg.get(), &js_options_);
    q.dead.fetch_add(1, std::memory_order_relaxed);
    base::log_warn("bus: dead-lettering a malformed queue message",
                   {{"queue", q.name},
                    {"error", s != NATS_OK ? last_error_text(s) : payload.error().to_string()}});
    return data_loss_error("bus: malformed message");
  }
  Delivery d;
  d.queue = q.name;
  d.message_id = meta->Sequence.Stream;
  const char* dedup = nullptr;
  if (natsMsgHeader_Get(msg.get(), kMsgIdHeader, &dedup) == NATS_OK && dedup != nullptr) {
    const std::string_view id(dedup);
    const std::size_t bar = id.find('|');
    d.dedup_id = std::string(bar == std::string_view::npos ? id : id.substr(bar + 1));
  }
  d.payload = std::move(*payload);
  d.deliveries = static_cast<int>(std::min<uint64_t>(meta->NumDelivered, 1U << 30));
  d.lease = next_lease_.fetch_add(1, std::memory_order_relaxed);
  d.lease_until = now + std::min(lease, options_.lease);
  std::lock_guard lock(q.leases_mu);
  if (auto old = q.by_seq.find(d.message_id); old != q.by_seq.end()) {
    // Redelivered to this process: the earlier delivery is stale.
    auto it = q.held.find(old->second);
    VENTURE_CHECK(it != q.held.end());
    q.expiry.erase({it->second.lease_until, old->second});
    q.held.erase(it);
  }
  q.by_seq[d.message_id] = d.lease;
  q.held.emplace(d.lease, Held{std::move(msg), d.message_id, d.lease_until});
  q.expiry.insert({d.lease_until, d.lease});
  return d;
}

// Forgets deliveries whose lease ended one AckWait ago: the server has redelivered them.
void NatsBus::forget_expired(QueueState& q, Time now) {
  std::lock_guard lock(q.leases_mu);
  while (!q.expiry.empty() && q.expiry.begin()->until + options_.lease <= now) {
    const uint64_t lease = q.expiry.begin()->lease;
    q.expiry.erase(q.expiry.begin());
    auto it = q.held.find(lease);
    VENTURE_CHECK(it != q.held.end());
    q.by_seq.erase(it->second.seq);
    q.held.erase(it);
  }
}

Result<std::vector<Delivery>> NatsBus::pull(std::string_view queue, std::size_t max, Millis lease) {
  VENTURE_ASSIGN_OR_RETURN(QueueState * q, queue_state(queue));
  if (lease <= Millis(0)) {
    return invalid_argument_error("bus: lease must be positive");
  }
  std::vector<Delivery> out;
  if (max == 0) {
    return out;
  }
  VENTURE_RETURN_IF_ERROR(check_connected());
  const Time now = clock_.now();
  forget_expired(*q, now);
  // With cnats 3.4 and nats-server 2.9 a no_wait fetch that finds nothing still waits for its
  // expiry (~100 ms per empty pull), so ask the consumer first (one cheap round trip) and fetch
  // exactly what it has ready. Messages leased and not held here may be due for redelivery: then
  // a short probe fetch.
  VENTURE_ASSIGN_OR_RETURN(ConsumerInfoPtr info, consumer_info(*q));
  const auto pending = static_cast<std::size_t>(info->NumPending);
  const auto unacked = static_cast<std::size_t>(std::max<int64_t>(0, info->NumAckPending));
  std::size_t held_here = 0;
  {
    std::lock_guard lock(q->leases_mu);
    held_here = q->held.size();
  }
  const std::size_t probe = unacked > held_here ? unacked - held_here : 0;
  if (pending == 0 && probe == 0) {
    return out;
  }
  natsMsgList list{};
  {
    std::lock_guard lock(q->pull_mu);
    VENTURE_RETURN_IF_ERROR(ensure_consumer(*q));
    jsFetchRequest request;
    jsFetchRequest_Init(&request);
    request.Batch =
        static_cast<int>(std::min({max, kFetchBatchMax, pending > 0 ? pending : probe}));
    request.NoWait = true;
    request.Expires = (pending > 0 ? kFetchExpires : kRedeliveryProbe).count() * kNanosPerMilli;
    const natsStatus s = natsSubscription_FetchRequest(&list, q->pull_sub.get(), &request);
    if (s == NATS_NOT_FOUND || s == NATS_TIMEOUT) {
      return out;  // nothing ready
    }
    if (s == NATS_NO_RESPONDERS) {
      lost_stream(*q);
    }
    if (s != NATS_OK) {
      return nats_error(s, "pull from '" + std::string(queue) + "'");
    }
  }
  out.reserve(static_cast<std::size_t>(list.Count));
  for (int i = 0; i < list.Count; ++i) {
    natsMsg* msg = list.Msgs[i];
    list.Msgs[i] = nullptr;  // take() owns it
    if (auto d = take(*q, msg, now, lease)) {
      out.push_back(std::move(*d));
    }
  }
  natsMsgList_Destroy(&list);
  return out;
}

Status NatsBus::with_held(const Delivery& d, bool release,
                          const std::function<Status(QueueState&, Held&)>& fn) {
  QueueState* q = find_queue(d.queue);
  if (q == nullptr) {
    return not_found_error("bus: no queue '" + d.queue + "'");
  }
  std::lock_guard lock(q->leases_mu);
  auto it = q->held.find(d.lease);
  if (it == q->held.end() || it->second.seq != d.message_id) {
    return not_found_error("bus: stale lease for message " + std::to_string(d.message_id));
  }
  VENTURE_RETURN_IF_ERROR(fn(*q, it->second));
  if (release) {
    q->expiry.erase({it->second.lease_until, it->first});
    q->by_seq.erase(it->second.seq);
    q->held.erase(it);
  }
  return ok();
}

// Acks, nacks and heartbeats are fire-and-forget publishes: while reconnecting they wait in the
// reconnect buffer and reach the server after the reconnection (a lost one only causes a
// redelivery). They fail only on a closed connection.
Status NatsBus::ack(const Delivery& d) {
  return with_held(d, true, [this](QueueState& /*q*/, Held& h) -> Status {
    if (natsStatus s = natsMsg_Ack(h.msg.get(), &js_options_); s != NATS_OK) {
      return nats_error(s, "ack");
    }
    return ok();
  });
}

Status NatsBus::nack(const Delivery& d, Millis delay) {
  if (delay < Millis(0)) {
    return invalid_argument_error("bus: negative nack delay");
  }
  const Millis capped = std::min(delay, limits::kDurationMax);
  return with_held(d, true, [this, capped](QueueState& /*q*/, Held& h) -> Status {
    const natsStatus s = capped > Millis(0)
                             ? natsMsg_NakWithDelay(h.msg.get(), capped.count(), &js_options_)
                             : natsMsg_Nak(h.msg.get(), &js_options_);
    if (s != NATS_OK) {
      return nats_error(s, "nack");
    }
    return ok();
  });
}

Status NatsBus::heartbeat(Delivery& d, Millis extend) {
  if (extend <= Millis(0)) {
    return invalid_argument_error("bus: heartbeat extension must be positive");
  }
  const Time until = clock_.now() + std::min(extend, options_.lease);
  const uint64_t lease = d.lease;
  VENTURE_RETURN_IF_ERROR(
      with_held(d, false, [this, until, lease](QueueState& q, Held& h) -> Status {
        if (natsStatus s = natsMsg_InProgress(h.msg.get(), &js_options_); s != NATS_OK) {
          return nats_error(s, "heartbeat");
        }
        q.expiry.erase({h.lease_until, lease});
        h.lease_until = until;
        q.expiry.insert({until, lease});
        return ok();
      }));
  d.lease_until = until;
  return ok();
}

void NatsBus::refresh_info(QueueState& q, const jsConsumerInfo& info, Time now) {
  std::lock_guard lock(q.info_mu);
  q.info_at = now;
  q.num_pending = info.NumPending;
  q.num_ack_pending = info.NumAckPending;
}

Result<ConsumerInfoPtr> NatsBus::consumer_info(QueueState& q) {
  VENTURE_RETURN_IF_ERROR(check_connected());
  if (!q.consumer_ready.load(std::memory_order_acquire)) {
    std::lock_guard lock(q.pull_mu);
    VENTURE_RETURN_IF_ERROR(ensure_consumer(q));
  }
  jsConsumerInfo* info = nullptr;
  const natsStatus s = js_GetConsumerInfo(&info, js_.get(), queues_stream_.c_str(),
                                          q.durable.c_str(), &js_options_, nullptr);
  ConsumerInfoPtr owned(info);
  if (s != NATS_OK) {
    return nats_error(s, "consumer info " + q.durable);
  }
  refresh_info(q, *owned, clock_.now());
  return owned;
}

Result<QueueStats> NatsBus::stats(std::string_view queue) {
  VENTURE_ASSIGN_OR_RETURN(QueueState * q, queue_state(queue));
  VENTURE_ASSIGN_OR_RETURN(ConsumerInfoPtr info, consumer_info(*q));
  QueueStats stats;
  stats.ready = static_cast<std::size_t>(info->NumPending);
  stats.leased = static_cast<std::size_t>(std::max<int64_t>(0, info->NumAckPending));
  stats.dead = q->dead.load(std::memory_order_relaxed);
  return stats;
}

std::optional<Time> NatsBus::next_wake(std::string_view queue) {
  QueueState* q = find_queue(queue);
  if (q == nullptr) {
    return std::nullopt;
  }
  const Time now = clock_.now();
  bool fresh = false;
  {
    std::lock_guard lock(q->info_mu);
    fresh = q->info_at && *q->info_at + kWakeSoon > now && *q->info_at <= now;
  }
  if (!fresh && !consumer_info(*q)) {
    return now + kWakeSoon;  // cannot tell: look again soon
  }
  std::lock_guard lock(q->info_mu);
  if (q->num_pending > 0 || q->num_ack_pending > 0) {
    return now + kWakeSoon;
  }
  return std::nullopt;
}

void NatsBus::on_ready(std::string_view queue, std::function<void()> callback) {
  auto q_or = queue_state(queue);
  VENTURE_CHECK_MSG(q_or.has_value(), "on_ready: invalid queue name");
  QueueState* q = *q_or;
  std::unique_ptr<AsyncSub> old;
  std::lock_guard lock(q->ready_mu);
  old = std::move(q->ready_sub);
  if (old) {
    old->stop();  // the old callback never runs again
  }
  if (!callback) {
    return;
  }
  auto sub = std::make_unique<AsyncSub>();
  // Every enqueue is a message on the queue's subject (core NATS sees what JetStream stores);
  // the idle timer covers redeliveries and delayed nacks, which produce no such message.
  Status s =
      sub->start(nc_.get(), q->subject, kReadyTimer, [q, cb = std::move(callback)](natsMsg* msg) {
        if (msg == nullptr) {
          std::lock_guard info(q->info_mu);
          if (q->num_ack_pending == 0 && q->num_pending == 0 && q->info_at) {
            return;
          }
        }
        cb();
      });
  if (!s) {
    base::log_error("bus: on_ready cannot subscribe",
                    {{"queue", q->name}, {"error", s.error().to_string()}});
    return;
  }
  q->ready_sub = std::move(sub);
}

// ---- Key-value ----

Status NatsBus::kv_bucket(std::string_view bucket, Millis ttl) {
  if (!is_valid_kv_bucket(bucket)) {
    return invalid_argument_error("bus: invalid kv bucket name '" + std::string(bucket) + "'");
  }
  if (ttl < Millis(0) || ttl > limits::kDurationMax) {
    return invalid_argument_error("bus: kv ttl out of range");
  }
  std::lock_guard lock(kv_mu_);
  if (auto it = buckets_.find(bucket); it != buckets_.end()) {
    if (it->second.second != ttl) {
      return failed_precondition_error("bus: kv bucket '" + std::string(bucket) +
                                       "' already declared with another ttl");
    }
    return ok();
  }
  VENTURE_RETURN_IF_ERROR(check_connected());
  const std::string name = kv_prefix_ + std::string(bucket);
  kvConfig config;
  kvConfig_Init(&config);
  config.Bucket = name.c_str();
  config.History = 1;
  config.TTL = ttl.count() * kNanosPerMilli;
  config.StorageType = js_FileStorage;
  config.MaxBytes = kKvMaxBytes;
  config.MaxValueSize = static_cast<int32_t>(kKvValueBytesMax);
  kvStore* kv = nullptr;
  if (natsStatus s = js_CreateKeyValue(&kv, js_.get(), &config); s != NATS_OK) {
    Error e = nats_error(s, "declare kv bucket " + name);
    if (text_has(e.message, "already in use")) {
      e.code = Code::kFailedPrecondition;  // exists with another configuration (ttl)
    }
    return e;
  }
  buckets_.emplace(std::string(bucket), std::make_pair(KvPtr(kv), ttl));
  return ok();
}

Result<kvStore*> NatsBus::kv_find(std::string_view bucket, std::string_view key) {
  if (!is_valid_kv_key(key)) {
    return invalid_argument_error("bus: invalid kv key '" + std::string(key) + "'");
  }
  std::lock_guard lock(kv_mu_);
  auto it = buckets_.find(bucket);
  if (it == buckets_.end()) {
    return failed_precondition_error("bus: kv bucket '" + std::string(bucket) +
                                     "' was not declared");
  }
  VENTURE_RETURN_IF_ERROR(check_connected());
  return it->second.first.get();  // buckets are never dropped before the bus
}

Error NatsBus::kv_write_error(natsStatus s, std::string_view key, Code mismatch) {
  Error e = nats_error(s, "kv write '" + std::string(key) + "'");
  if (text_has(e.message, "wrong last sequence")) {
    e.code = mismatch;
  }
  return e;
}

Result<KvEntry> NatsBus::kv_get(std::string_view bucket, std::string_view key) {
  VENTURE_ASSIGN_OR_RETURN(kvStore * kv, kv_find(bucket, key));
  const std::string k(key);
  kvEntry* raw = nullptr;
  const natsStatus s = kvStore_Get(&raw, kv, k.c_str());
  const KvEntryPtr entry(raw);
  if (s == NATS_NOT_FOUND) {
    return not_found_error("bus: no kv key '" + k + "'");
  }
  if (s != NATS_OK) {
    return nats_error(s, "kv get '" + k + "'");
  }
  const auto* data = static_cast<const char*>(kvEntry_Value(entry.get()));
  const int len = kvEntry_ValueLen(entry.get());
  return KvEntry{
      std::string(data == nullptr ? "" : data, data == nullptr ? 0 : static_cast<std::size_t>(len)),
      kvEntry_Revision(entry.get())};
}

Result<uint64_t> NatsBus::kv_create(std::string_view bucket, std::string_view key,
                                    std::string value) {
  VENTURE_ASSIGN_OR_RETURN(kvStore * kv, kv_find(bucket, key));
  if (value.size() > kKvValueBytesMax) {
    return invalid_argument_error("bus: kv value too large");
  }
  const std::string k(key);
  uint64_t revision = 0;
  const natsStatus s =
      kvStore_Create(&revision, kv, k.c_str(), value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) {
    return kv_write_error(s, key, Code::kAlreadyExists);
  }
  return revision;
}

Result<uint64_t> NatsBus::kv_update(std::string_view bucket, std::string_view key,
                                    std::string value, uint64_t revision) {
  VENTURE_ASSIGN_OR_RETURN(kvStore * kv, kv_find(bucket, key));
  if (value.size() > kKvValueBytesMax) {
    return invalid_argument_error("bus: kv value too large");
  }
  if (revision == 0) {  // cnats would read 0 as "must not exist"; no live entry has revision 0
    return failed_precondition_error("bus: kv key '" + std::string(key) + "' is not at revision 0");
  }
  const std::string k(key);
  uint64_t next = 0;
  const natsStatus s =
      kvStore_Update(&next, kv, k.c_str(), value.data(), static_cast<int>(value.size()), revision);
  if (s != NATS_OK) {
    return kv_write_error(s, key, Code::kFailedPrecondition);
  }
  return next;
}

Result<uint64_t> NatsBus::kv_put(std::string_view bucket, std::string_view key, std::string value) {
  VENTURE_ASSIGN_OR_RETURN(kvStore * kv, kv_find(bucket, key));
  if (value.size() > kKvValueBytesMax) {
    return invalid_argument_error("bus: kv value too large");
  }
  const std::string k(key);
  uint64_t revision = 0;
  const natsStatus s =
      kvStore_Put(&revision, kv, k.c_str(), value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) {
    return nats_error(s, "kv put '" + k + "'");
  }
  return revision;
}

Status NatsBus::kv_delete(std::string_view bucket, std::string_view key) {
  VENTURE_ASSIGN_OR_RETURN(kvStore * kv, kv_find(bucket, key));
  const std::string k(key);
  if (natsStatus s = kvStore_Delete(kv, k.c_str()); s != NATS_OK) {
    return nats_error(s, "kv delete '" + k + "'");
  }
  return ok();
}

}  // namespace

Result<std::unique_ptr<Bus>> new_nats_bus(const NatsOptions& options, base::Clock& clock) {
  if (options.url.empty()) {
    return invalid_argument_error("bus: empty NATS url");
  }
  if (!is_valid_ns(options.ns)) {
    return invalid_argument_error("bus: invalid NATS namespace '" + options.ns + "'");
  }
  if (options.lease <= Millis(0) || options.lease > limits::kLeaseMax) {
    return invalid_argument_error("bus: NATS lease out of range");
  }
  if (options.queue_depth_max == 0 || options.queue_depth_max > limits::kQueueDepthMax) {
    return invalid_argument_error("bus: NATS queue depth out of range");
  }
  auto bus = std::make_unique<NatsBus>(options, clock);
  VENTURE_RETURN_IF_ERROR(bus->connect());
  return std::unique_ptr<Bus>(std::move(bus));
}

}  // namespace venture::bus
