// The in-process bus: the embedded default and the simulation's bus.
//
// Work queues. Each queue has its own mutex and holds its messages in `entries` (by message id);
// a message is in exactly one of three places, named by Entry::state:
//   kReady   its id is in `ready` (FIFO deque);
//   kDelayed its (visible_at, id) is in `delayed` (min-heap), after a Nack with a delay;
//   kLeased  its (lease_until, id) is in `leases` (ordered set, so Ack/Heartbeat erase exactly).
// `dedup` maps a non-empty dedup id to the message holding it, for as long as the message exists.
// Every operation is O(1) or O(log n) in the queue's size plus the messages it returns.
//
// Topics. Subscriptions live in an id-ordered map under `topics_mu_`; Publish collects the
// matching handlers under the lock and calls them after releasing it.
//
// Key-value buckets. Each bucket has its own mutex, a revision counter and its live entries by key;
// a bucket with a ttl also keeps a min-heap of (expiry, key, revision). An entry is absent once
// `now >= expires_at` (checked on every read), and is erased by the next write to the bucket that
// finds it due on the heap (a heap item whose revision is no longer the key's is stale and
// dropped), so the memory held is bounded by the keys written within one ttl.
//
// Callbacks (handlers, on_ready) are shared_ptr copies taken under a lock and run outside it, so a
// callback may call back into the bus without deadlocking, and one replaced or unsubscribed while
// a publish/enqueue is in flight may still run once more.
#include <atomic>
#include <compare>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "bus/bus.h"
#include "bus/subject.h"

namespace venture::bus {
namespace {

using Callback = std::function<void()>;

enum class State { kReady, kDelayed, kLeased };

struct Entry {
  std::string dedup_id;
  json::value payload;
  int deliveries = 0;  // deliveries so far
  State state = State::kReady;
  uint64_t lease = 0;  // valid while kLeased
  Time lease_until{};  // valid while kLeased
};

struct Timed {
  Time at;
  uint64_t id = 0;
  friend auto operator<=>(const Timed&, const Timed&) = default;
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

struct Queue {
  std::mutex mu;
  std::unordered_map<uint64_t, Entry> entries;
  StringMap<uint64_t> dedup;
  std::deque<uint64_t> ready;
  std::priority_queue<Timed, std::vector<Timed>, std::greater<>> delayed;
  std::set<Timed> leases;
  std::size_t dead = 0;
  std::shared_ptr<const Callback> on_ready;
};

struct KvValue {
  std::string value;
  uint64_t revision = 0;
  std::optional<Time> expires_at;  // nullopt: the bucket has no ttl
};

struct KvExpiry {
  Time at;
  uint64_t revision = 0;
  std::string key;
  friend auto operator<=>(const KvExpiry&, const KvExpiry&) = default;
};

struct KvBucket {
  explicit KvBucket(Millis t) : ttl(t) {}
  const Millis ttl;  // 0: entries live for ever
  std::mutex mu;
  uint64_t revision = 0;  // of the last write
  StringMap<KvValue> entries;
  std::priority_queue<KvExpiry, std::vector<KvExpiry>, std::greater<>> expiries;
};

struct DeadLetter {
  uint64_t message_id = 0;
  std::string dedup_id;
  int deliveries = 0;
};

// Work collected under a queue's lock and done after releasing it: the on_ready notification and
// the dead-letter log lines (I/O never happens under the lock).
struct AfterUnlock {
  std::shared_ptr<const Callback> notify;
  std::vector<DeadLetter> dead;

  void run(std::string_view queue) const {
    for (const DeadLetter& d : dead) {
      base::log_warn("bus: message dead-lettered after too many deliveries",
                     {{"queue", queue},
                      {"message_id", d.message_id},
                      {"dedup_id", d.dedup_id},
                      {"deliveries", d.deliveries}});
    }
    if (notify) {
      (*notify)();
    }
  }
};

// Removes a message that will never be delivered again (acked or dead). Caller holds q.mu.
void erase(Queue& q, std::unordered_map<uint64_t, Entry>::iterator it) {
  if (!it->second.dedup_id.empty()) {
    q.dedup.erase(it->second.dedup_id);
  }
  q.entries.erase(it);
}

// Moves a message that came back from a lease (expiry or Nack) to ready/delayed, or to the dead
// count once it has been delivered limits::kDeliveriesMax times. Caller holds q.mu and has already
// removed the message's lease from q.leases.
void requeue(Queue& q, std::unordered_map<uint64_t, Entry>::iterator it, Time visible_at, Time now,
             AfterUnlock& after) {
  Entry& e = it->second;
  if (static_cast<std::size_t>(e.deliveries) >= limits::kDeliveriesMax) {
    after.dead.push_back({it->first, e.dedup_id, e.deliveries});
    ++q.dead;
    erase(q, it);
    return;
  }
  e.lease = 0;
  if (visible_at <= now) {
    e.state = State::kReady;
    q.ready.push_back(it->first);
  } else {
    e.state = State::kDelayed;
    q.delayed.push({visible_at, it->first});
  }
}

// Returns expired leases to the queue and makes due delayed messages ready. Caller holds q.mu.
// Returns true if an expired lease was processed.
bool reclaim(Queue& q, Time now, AfterUnlock& after) {
  bool expired = false;
  while (!q.leases.empty() && q.leases.begin()->at <= now) {
    const uint64_t id = q.leases.begin()->id;
    q.leases.erase(q.leases.begin());
    auto it = q.entries.find(id);
    VENTURE_CHECK(it != q.entries.end() && it->second.state == State::kLeased);
    requeue(q, it, now, now, after);
    expired = true;
  }
  while (!q.delayed.empty() && q.delayed.top().at <= now) {
    const uint64_t id = q.delayed.top().id;
    q.delayed.pop();
    auto it = q.entries.find(id);
    VENTURE_CHECK(it != q.entries.end() && it->second.state == State::kDelayed);
    it->second.state = State::kReady;
    q.ready.push_back(id);
  }
  return expired;
}

Time later(Time now, Millis d, Millis cap) { return now + std::min(d, cap); }

class MemoryBus final : public Bus {
 public:
  explicit MemoryBus(base::Clock& clock) : clock_(clock) {}

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
  Status health() override { return ok(); }

 private:
  enum class KvWrite { kCreate, kUpdate, kPut };
  struct Subscription {
    std::string pattern;
    std::shared_ptr<const Handler> handler;
  };

  // nullptr if the queue was never created. Queues are never destroyed, so the pointer stays valid.
  Queue* find(std::string_view name);
  Queue& find_or_create(std::string_view name);
  // The leased entry `d` refers to, or kNotFound if its lease is stale. Caller holds the lock.
  static Result<std::unordered_map<uint64_t, Entry>::iterator> leased(Queue& q, const Delivery& d);
  // The declared bucket, after validating the names (kInvalidArgument) and that the bucket was
  // declared (kFailedPrecondition). Buckets are never destroyed, so the pointer stays valid.
  Result<KvBucket*> kv_find(std::string_view bucket, std::string_view key);
  Result<uint64_t> kv_write(std::string_view bucket, std::string_view key, std::string value,
                            KvWrite mode, uint64_t revision);

  base::Clock& clock_;
  std::atomic<uint64_t> next_message_id_{1};
  std::atomic<uint64_t> next_lease_{1};

  std::shared_mutex queues_mu_;
  StringMap<std::unique_ptr<Queue>> queues_;

  std::mutex topics_mu_;
  std::map<uint64_t, Subscription> subscriptions_;  // by id: subscription order
  uint64_t next_subscription_ = 1;

  std::mutex kv_mu_;  // guards the registry only; each bucket has its own mutex
  StringMap<std::unique_ptr<KvBucket>> buckets_;
};

Queue* MemoryBus::find(std::string_view name) {
  std::shared_lock lock(queues_mu_);
  auto it = queues_.find(name);
  return it == queues_.end() ? nullptr : it->second.get();
}

Queue& MemoryBus::find_or_create(std::string_view name) {
  if (Queue* q = find(name)) {
    return *q;
  }
  std::unique_lock lock(queues_mu_);
  auto it = queues_.find(name);
  if (it == queues_.end()) {
    it = queues_.emplace(std::string(name), std::make_unique<Queue>()).first;
  }
  return *it->second;
}

Status MemoryBus::publish(std::string_view subject, json::value data) {
  if (!is_valid_subject(subject)) {
    return invalid_argument_error("bus: invalid subject '" + std::string(subject) + "'");
  }
  std::vector<std::shared_ptr<const Handler>> handlers;
  {
    std::lock_guard lock(topics_mu_);
    for (const auto& [id, sub] : subscriptions_) {
      if (subject_matches(sub.pattern, subject)) {
        handlers.push_back(sub.handler);
      }
    }
  }
  if (handlers.empty()) {
    return ok();
  }
  const Message message{std::string(subject), std::move(data)};
  for (const auto& handler : handlers) {
    (*handler)(message);
  }
  return ok();
}

Result<uint64_t> MemoryBus::subscribe(std::string_view pattern, Handler handler) {
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
  const uint64_t id = next_subscription_++;
  subscriptions_.emplace(
      id, Subscription{std::string(pattern), std::make_shared<const Handler>(std::move(handler))});
  return id;
}

void MemoryBus::unsubscribe(uint64_t subscription) {
  std::lock_guard lock(topics_mu_);
  subscriptions_.erase(subscription);
}

Status MemoryBus::enqueue(std::string_view queue, std::string dedup_id, json::value payload) {
  if (queue.empty()) {
    return invalid_argument_error("bus: empty queue name");
  }
  Queue& q = find_or_create(queue);
  AfterUnlock after;
  {
    std::lock_guard lock(q.mu);
    if (!dedup_id.empty() && q.dedup.contains(dedup_id)) {
      return ok();
    }
    if (q.entries.size() >= limits::kQueueDepthMax) {
      return resource_exhausted_error("bus: queue '" + std::string(queue) + "' is full");
    }
    const uint64_t id = next_message_id_.fetch_add(1, std::memory_order_relaxed);
    if (!dedup_id.empty()) {
      q.dedup.emplace(dedup_id, id);
    }
    q.entries.emplace(id, Entry{std::move(dedup_id), std::move(payload)});
    q.ready.push_back(id);
    after.notify = q.on_ready;
  }
  after.run(queue);
  return ok();
}

Result<std::vector<Delivery>> MemoryBus::pull(std::string_view queue, std::size_t max,
                                              Millis lease) {
  if (queue.empty()) {
    return invalid_argument_error("bus: empty queue name");
  }
  if (lease <= Millis(0)) {
    return invalid_argument_error("bus: lease must be positive");
  }
  std::vector<Delivery> out;
  Queue* q = find(queue);
  if (q == nullptr || max == 0) {
    return out;
  }
  const Time now = clock_.now();
  const Time until = later(now, lease, limits::kLeaseMax);
  AfterUnlock after;
  {
    std::lock_guard lock(q->mu);
    if (reclaim(*q, now, after)) {
      after.notify = q->on_ready;
    }
    out.reserve(std::min(max, q->ready.size()));
    while (out.size() < max && !q->ready.empty()) {
      const uint64_t id = q->ready.front();
      q->ready.pop_front();
      Entry& e = q->entries.at(id);
      VENTURE_CHECK(e.state == State::kReady);
      e.state = State::kLeased;
      e.deliveries += 1;
      e.lease = next_lease_.fetch_add(1, std::memory_order_relaxed);
      e.lease_until = until;
      q->leases.insert({until, id});
      out.push_back(
          Delivery{std::string(queue), id, e.dedup_id, e.payload, e.deliveries, e.lease, until});
    }
  }
  after.run(queue);
  return out;
}

Result<std::unordered_map<uint64_t, Entry>::iterator> MemoryBus::leased(Queue& q,
                                                                        const Delivery& d) {
  auto it = q.entries.find(d.message_id);
  if (it == q.entries.end() || it->second.state != State::kLeased || it->second.lease != d.lease) {
    return not_found_error("bus: stale lease for message " + std::to_string(d.message_id));
  }
  return it;
}

Status MemoryBus::ack(const Delivery& d) {
  Queue* q = find(d.queue);
  if (q == nullptr) {
    return not_found_error("bus: no queue '" + d.queue + "'");
  }
  std::lock_guard lock(q->mu);
  VENTURE_ASSIGN_OR_RETURN(auto it, leased(*q, d));
  q->leases.erase({it->second.lease_until, it->first});
  erase(*q, it);
  return ok();
}

Status MemoryBus::nack(const Delivery& d, Millis delay) {
  if (delay < Millis(0)) {
    return invalid_argument_error("bus: negative nack delay");
  }
  Queue* q = find(d.queue);
  if (q == nullptr) {
    return not_found_error("bus: no queue '" + d.queue + "'");
  }
  const Time now = clock_.now();
  AfterUnlock after;
  {
    std::lock_guard lock(q->mu);
    VENTURE_ASSIGN_OR_RETURN(auto it, leased(*q, d));
    q->leases.erase({it->second.lease_until, it->first});
    requeue(*q, it, later(now, delay, limits::kDurationMax), now, after);
    after.notify = q->on_ready;
  }
  after.run(d.queue);
  return ok();
}

Status MemoryBus::heartbeat(Delivery& d, Millis extend) {
  if (extend <= Millis(0)) {
    return invalid_argument_error("bus: heartbeat extension must be positive");
  }
  Queue* q = find(d.queue);
  if (q == nullptr) {
    return not_found_error("bus: no queue '" + d.queue + "'");
  }
  const Time until = later(clock_.now(), extend, limits::kLeaseMax);
  std::lock_guard lock(q->mu);
  VENTURE_ASSIGN_OR_RETURN(auto it, leased(*q, d));
  q->leases.erase({it->second.lease_until, it->first});
  q->leases.insert({until, it->first});
  it->second.lease_until = until;
  d.lease_until = until;
  return ok();
}

void MemoryBus::on_ready(std::string_view queue, std::function<void()> callback) {
  VENTURE_CHECK(!queue.empty());
  Queue& q = find_or_create(queue);
  std::shared_ptr<const Callback> shared;
  if (callback) {
    shared = std::make_shared<const Callback>(std::move(callback));
  }
  std::lock_guard lock(q.mu);
  q.on_ready = std::move(shared);
}

Result<QueueStats> MemoryBus::stats(std::string_view queue) {
  if (queue.empty()) {
    return invalid_argument_error("bus: empty queue name");
  }
  QueueStats stats;
  Queue* q = find(queue);
  if (q == nullptr) {
    return stats;
  }
  std::lock_guard lock(q->mu);
  stats.ready = q->ready.size() + q->delayed.size();
  stats.leased = q->leases.size();
  stats.dead = q->dead;
  return stats;
}

std::optional<Time> MemoryBus::next_wake(std::string_view queue) {
  Queue* q = find(queue);
  if (q == nullptr) {
    return std::nullopt;
  }
  std::lock_guard lock(q->mu);
  std::optional<Time> wake;
  if (!q->delayed.empty()) {
    wake = q->delayed.top().at;
  }
  if (!q->leases.empty() && (!wake || q->leases.begin()->at < *wake)) {
    wake = q->leases.begin()->at;
  }
  return wake;
}

// ---- Key-value ----

// True if `v` is live at `now`.
bool live(const KvValue& v, Time now) { return !v.expires_at || now < *v.expires_at; }

// Erases the entries whose expiry is due. Caller holds b.mu.
void expire(KvBucket& b, Time now) {
  while (!b.expiries.empty() && b.expiries.top().at <= now) {
    const KvExpiry& due = b.expiries.top();
    auto it = b.entries.find(due.key);
    if (it != b.entries.end() && it->second.revision == due.revision) {
      b.entries.erase(it);
    }
    b.expiries.pop();
  }
}

Status MemoryBus::kv_bucket(std::string_view bucket, Millis ttl) {
  if (!is_valid_kv_bucket(bucket)) {
    return invalid_argument_error("bus: invalid kv bucket name '" + std::string(bucket) + "'");
  }
  if (ttl < Millis(0) || ttl > limits::kDurationMax) {
    return invalid_argument_error("bus: kv ttl out of range");
  }
  std::lock_guard lock(kv_mu_);
  auto it = buckets_.find(bucket);
  if (it == buckets_.end()) {
    buckets_.emplace(std::string(bucket), std::make_unique<KvBucket>(ttl));
    return ok();
  }
  if (it->second->ttl != ttl) {
    return failed_precondition_error("bus: kv bucket '" + std::string(bucket) +
                                     "' already declared with another ttl");
  }
  return ok();
}

Result<KvBucket*> MemoryBus::kv_find(std::string_view bucket, std::string_view key) {
  if (!is_valid_kv_key(key)) {
    return invalid_argument_error("bus: invalid kv key '" + std::string(key) + "'");
  }
  if (!is_valid_kv_bucket(bucket)) {
    return invalid_argument_error("bus: invalid kv bucket name '" + std::string(bucket) + "'");
  }
  std::lock_guard lock(kv_mu_);
  auto it = buckets_.find(bucket);
  if (it == buckets_.end()) {
    return failed_precondition_error("bus: kv bucket '" + std::string(bucket) +
                                     "' was not declared");
  }
  return it->second.get();
}

Result<KvEntry> MemoryBus::kv_get(std::string_view bucket, std::string_view key) {
  VENTURE_ASSIGN_OR_RETURN(KvBucket * b, kv_find(bucket, key));
  const Time now = clock_.now();
  std::lock_guard lock(b->mu);
  auto it = b->entries.find(key);
  if (it == b->entries.end() || !live(it->second, now)) {
    return not_found_error("bus: no kv key '" + std::string(key) + "'");
  }
  return KvEntry{it->second.value, it->second.revision};
}

Result<uint64_t> MemoryBus::kv_write(std::string_view bucket, std::string_view key,
                                     std::string value, KvWrite mode, uint64_t revision) {
  VENTURE_ASSIGN_OR_RETURN(KvBucket * b, kv_find(bucket, key));
  if (value.size() > kKvValueBytesMax) {
    return invalid_argument_error("bus: kv value too large");
  }
  const Time now = clock_.now();
  std::lock_guard lock(b->mu);
  expire(*b, now);
  auto it = b->entries.find(key);
  const bool present = it != b->entries.end() && live(it->second, now);
  if (mode == KvWrite::kCreate && present) {
    return already_exists_error("bus: kv key '" + std::string(key) + "' exists");
  }
  if (mode == KvWrite::kUpdate && (!present || it->second.revision != revision)) {
    return failed_precondition_error("bus: kv key '" + std::string(key) + "' is not at revision " +
                                     std::to_string(revision));
  }
  if (it == b->entries.end()) {
    it = b->entries.emplace(std::string(key), KvValue{}).first;
  }
  KvValue& v = it->second;
  v.value = std::move(value);
  v.revision = ++b->revision;
  v.expires_at.reset();
  if (b->ttl > Millis(0)) {
    v.expires_at = now + b->ttl;
    b->expiries.push({*v.expires_at, v.revision, it->first});
  }
  return v.revision;
}

Result<uint64_t> MemoryBus::kv_create(std::string_view bucket, std::string_view key,
                                      std::string value) {
  return kv_write(bucket, key, std::move(value), KvWrite::kCreate, 0);
}

Result<uint64_t> MemoryBus::kv_update(std::string_view bucket, std::string_view key,
                                      std::string value, uint64_t revision) {
  return kv_write(bucket, key, std::move(value), KvWrite::kUpdate, revision);
}

Result<uint64_t> MemoryBus::kv_put(std::string_view bucket, std::string_view key,
                                   std::string value) {
  return kv_write(bucket, key, std::move(value), KvWrite::kPut, 0);
}

Status MemoryBus::kv_delete(std::string_view bucket, std::string_view key) {
  VENTURE_ASSIGN_OR_RETURN(KvBucket * b, kv_find(bucket, key));
  std::lock_guard lock(b->mu);
  expire(*b, clock_.now());
  b->entries.erase(std::string(key));
  // Like a NATS delete marker, a delete is a write: it consumes a revision.
  ++b->revision;
  return ok();
}

}  // namespace

std::unique_ptr<Bus> new_memory_bus(base::Clock& clock) {
  return std::make_unique<MemoryBus>(clock);
}

}  // namespace venture::bus
