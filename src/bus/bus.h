// bus: how modules talk without knowing each other. Topics (publish/subscribe, NATS-style subject
// patterns) and work queues (at-least-once delivery with leases, heartbeats, redelivery on lease
// expiry, de-duplication by message id, and a bound on deliveries).
//
// Key types: Bus (the interface), Delivery (one leased message). Implementation here: NewMemoryBus
// (in-process, the embedded default and the simulation's bus) and new_nats_bus (NATS JetStream,
// cluster mode). Both also hold a small key-value store with revisions (NATS KV semantics) for
// run-ownership leases and shared flags.
//
// Threading: every method is thread-safe. Subscribe handlers and on_ready callbacks run on the
// publishing/enqueuing thread, outside the bus's locks, must be cheap, must not throw and must not
// call back into the bus. A handler unsubscribed (or a callback replaced) while a Publish (Enqueue)
// is in flight on another thread may still be called once more by that Publish (Enqueue).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/base.h"

namespace venture::bus {

struct Message {
  std::string subject;
  json::value data;
};

struct Delivery {
  std::string queue;
  uint64_t message_id = 0;  // unique per enqueued message within the bus
  std::string dedup_id;     // the enqueuer's id ("" = none)
  json::value payload;
  int deliveries = 1;  // 1 on first delivery, +1 on each redelivery
  uint64_t lease = 0;  // identifies this delivery; stale after redelivery
  Time lease_until{};
};

// One key-value entry. revision grows with every write of the bucket (NATS KV semantics).
struct KvEntry {
  std::string value;
  uint64_t revision = 0;
};

struct QueueStats {
  std::size_t ready = 0;   // waiting to be pulled (including delayed)
  std::size_t leased = 0;  // pulled, not yet acked
  std::size_t dead = 0;    // dropped after limits::kDeliveriesMax deliveries
};

class Bus {
 public:
  virtual ~Bus() = default;

  // Topics. Subjects are dot-separated tokens; a pattern may use `*` (one token) and a final `>`
  // (one or more tokens), as in NATS. Delivery is at-most-once and in publish order per publisher.
  [[nodiscard]] virtual Status publish(std::string_view subject, json::value data) = 0;
  using Handler = std::function<void(const Message&)>;
  [[nodiscard]] virtual Result<uint64_t> subscribe(std::string_view pattern, Handler handler) = 0;
  virtual void unsubscribe(uint64_t subscription) = 0;

  // Work queues. Enqueue with a non-empty dedup_id that is already in the queue (ready, delayed or
  // leased) is a successful no-op. kResourceExhausted when the queue holds limits::kQueueDepthMax
  // messages (ready + delayed + leased). A message that comes back from a lease (expiry or Nack)
  // after limits::kDeliveriesMax deliveries is dropped and counted as dead.
  [[nodiscard]] virtual Status enqueue(std::string_view queue, std::string dedup_id,
                                       json::value payload) = 0;
  // Up to `max` ready messages, each leased for `lease` (capped at limits::kLeaseMax). First
  // redelivers messages whose lease has expired (deliveries + 1). Never blocks.
  [[nodiscard]] virtual Result<std::vector<Delivery>> pull(std::string_view queue, std::size_t max,
                                                           Millis lease) = 0;
  // Removes the message. kNotFound if the lease is stale (the message was redelivered).
  [[nodiscard]] virtual Status ack(const Delivery& d) = 0;
  // Returns the message to the queue, visible again after `delay`. kNotFound if stale.
  [[nodiscard]] virtual Status nack(const Delivery& d, Millis delay) = 0;
  // Extends the lease to now + extend. kNotFound if stale.
  [[nodiscard]] virtual Status heartbeat(Delivery& d, Millis extend) = 0;

  // `callback` runs after every Enqueue/Nack to `queue` and when a lease of it expires on Pull, so
  // a consumer can sleep on its own condition variable. One callback per queue; replaces.
  virtual void on_ready(std::string_view queue, std::function<void()> callback) = 0;

  [[nodiscard]] virtual Result<QueueStats> stats(std::string_view queue) = 0;

  // Key-value buckets (names and keys: [A-Za-z0-9_-]+, keys may also hold '.' and '='). A bucket
  // is declared once per process with the time an entry lives after its last write (0 = for
  // ever); declaring it again with the same ttl is a no-op. An expired or deleted entry is absent.
  [[nodiscard]] virtual Status kv_bucket(std::string_view bucket, Millis ttl) = 0;
  // kNotFound when absent.
  [[nodiscard]] virtual Result<KvEntry> kv_get(std::string_view bucket, std::string_view key) = 0;
  // Writes only if the key is absent; returns the new revision. kAlreadyExists otherwise.
  [[nodiscard]] virtual Result<uint64_t> kv_create(std::string_view bucket, std::string_view key,
                                                   std::string value) = 0;
  // Writes only if the key's current revision is `revision` (compare-and-set; renews the ttl);
  // returns the new revision. kFailedPrecondition when the revision differs or the key is absent.
  [[nodiscard]] virtual Result<uint64_t> kv_update(std::string_view bucket, std::string_view key,
                                                   std::string value, uint64_t revision) = 0;
  // Unconditional write; returns the new revision.
  [[nodiscard]] virtual Result<uint64_t> kv_put(std::string_view bucket, std::string_view key,
                                                std::string value) = 0;
  // Removes the key (absent: a successful no-op).
  [[nodiscard]] virtual Status kv_delete(std::string_view bucket, std::string_view key) = 0;
  // kOk when the bus can be used now; kUnavailable (with the reason) while it cannot, e.g. the
  // NATS connection is down and reconnecting. /health reports it.
  [[nodiscard]] virtual Status health() = 0;
  // The earliest time a delayed or leased message of `queue` becomes pullable again (for sleepers);
  // nullopt when there is none.
  virtual std::optional<Time> next_wake(std::string_view queue) = 0;
};

std::unique_ptr<Bus> new_memory_bus(base::Clock& clock);

struct NatsOptions {
  std::string url;               // "nats://127.0.0.1:4222" (several comma-separated for a cluster)
  std::string name = "venture";  // the connection name shown by the server's monitoring
  // Work-queue leases: the JetStream consumer's AckWait (a pull's `lease` is capped at it).
  Millis lease = limits::kLeaseDefault;
  // Namespace ("" or [A-Za-z0-9]{1,24}): when set, every subject on the wire becomes "<ns>.<s>"
  // and the streams and KV buckets get the namespace in their names, so several deployments (or
  // tests) can share one NATS server without seeing each other.
  std::string ns;
  // Messages one queue may hold (ready + unacked); more: enqueue fails with kResourceExhausted.
  std::size_t queue_depth_max = limits::kQueueDepthMax;
};
// Connects to NATS (reconnecting for ever: while it is down operations fail with kUnavailable and
// nothing acknowledged is lost) and declares the JetStream streams and KV buckets Venture uses
// (docs/cluster.md). kUnavailable when the first connection cannot be made.
[[nodiscard]] Result<std::unique_ptr<Bus>> new_nats_bus(const NatsOptions& options,
                                                        base::Clock& clock);

// True if subject matches pattern (NATS rules above).
bool subject_matches(std::string_view pattern, std::string_view subject);

}  // namespace venture::bus
