// storage: the durable record. An append-only, hash-chained event log (SPEC §4) with group commit,
// signed audit checkpoints, projections written in the same transaction, content-addressed blobs,
// per-run snapshots and versioned migrations.
//
// Key types: Event (one stored record), Batch (what one append writes atomically), Store (the
// interface), and three implementations: open_sqlite (WAL, embedded default), open_postgres
// (cluster mode: the log split into partitions by run, one hash chain per partition) and
// MemoryStore (tests and simulation; can inject faults). Storage does not interpret workflow
// semantics: the engine computes projection rows and storage writes them.
//
// Threading: every Store method is thread-safe. Append blocks the caller until its batch is
// durable; concurrent Appends are combined into one transaction and one fsync (group commit): by
// SQLite's single writer thread, by up to pool_size / 2 concurrent leader groups on PostgreSQL.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/base.h"

namespace venture::storage {

// One stored event. seq, prev and hash are assigned by the store at commit.
struct Event {
  int64_t seq = 0;
  std::string id;    // "evt_…"
  std::string type;  // "run.started", ...
  Time time{};
  std::string run;   // "" when not about a run
  std::string node;  // "" when not about a node
  json::value data;  // object; when its encoding is over kBlobThresholdBytes it is stored as a blob
  std::string prev;  // "b2:…" hash of the previous event ("b2:000…" for the first)
  std::string hash;  // "b2:…"

  friend bool operator==(const Event&, const Event&) = default;
};

// The event as JSON (SPEC §4 envelope), with or without the hash member.
json::object event_to_json(const Event& e, bool with_hash = true);
// Decodes and validates an envelope (types, id prefixes, hash forms). kInvalidArgument / kDataLoss.
[[nodiscard]] Result<Event> event_from_json(const json::value& v);
// hash = BLAKE2b-256(prev ‖ canonical JSON of the event without hash), over the event as stored:
// for a blob event that is the {"$blob", "bytes"} reference, not the resolved payload.
std::string compute_event_hash(const Event& e);

// Projection rows, computed by the engine and written in the append's transaction.
struct RunRow {
  std::string id;
  std::string workflow;  // name
  std::string version;   // "b2:…" (run-local version after patches)
  std::string status;    // queued|running|paused|waiting|succeeded|failed|cancelled
  Time created{};
  Time updated{};
  json::value inputs;
  json::value output;  // null until terminal
  json::value error;   // null or {code, message, node}
  std::string replay_of;
  int64_t last_seq = 0;  // seq of the run's last event (filled by the store)
};

struct NodeRow {
  std::string run;
  std::string node;
  std::string status;
  std::string outcome;
  int64_t attempts = 0;
  json::value output;
  json::value error;
  std::optional<Time> started;
  std::optional<Time> finished;
};

struct WorkflowVersionRow {
  std::string name;
  std::string version;
  json::value definition;
  Time created{};
};

struct TagRow {
  std::string name;
  std::string tag;
  std::string version;
};

struct IdempotencyRow {
  std::string key;        // scoped by the caller (e.g. token id + header value)
  std::string body_hash;  // "b2:…" of the canonical request
  std::string run;
};

// An API token (SPEC §3). The secret itself is never stored: only its hash.
struct TokenRow {
  std::string id;    // "tok_…"
  std::string name;  // unique by convention (the API checks it); not enforced here
  std::string role;  // admin|operator|approver|viewer|agent
  std::string hash;  // "b2:…" of the secret
  Time created{};
  bool revoked = false;
  std::optional<Time> revoked_at;
  friend bool operator==(const TokenRow&, const TokenRow&) = default;
};

// A patch proposal against a run (SPEC §3 patch review). The engine computes every field.
struct PatchRow {
  std::string id;      // "pat_…"
  std::string run;     // "run_…"
  std::string status;  // pending_approval|applied|rejected
  json::value ops;     // the RFC 6902 operations as proposed
  std::string reason;
  std::string proposed_by;  // token name ("" when unknown)
  Time created{};
  Time updated{};
  std::string decided_by;  // "" until approved or rejected
  std::string decision_reason;
  std::string version;  // the run's version after apply; "" otherwise
  json::value error;    // null or {code, message, errors:[{path, message}]}
  friend bool operator==(const PatchRow&, const PatchRow&) = default;
};

// A human approval (SPEC §3 approvals): one per waiting approval node or foreach item. The engine
// computes every field from the run's approval.* events.
struct ApprovalRow {
  std::string id;      // "apr_…"
  std::string run;     // "run_…"
  std::string node;    // node id
  int64_t index = -1;  // foreach item index, -1 for a plain node
  int64_t iteration = 0;
  std::string status;  // pending|approved|rejected|timed_out|cancelled
  Time created{};
  Time updated{};
  std::optional<Time> due;  // the timeout, if any
  json::value request;      // {title, description, show, approvers, quorum, ...} as requested
  json::value decisions;    // [{by, role, decision, comment, at, via}]
  friend bool operator==(const ApprovalRow&, const ApprovalRow&) = default;
};

struct ApprovalFilter {
  std::string status;  // exact, optional
  std::string run;     // exact, optional
  std::string cursor;  // opaque; "" for the first page
  std::size_t limit = 100;
};

struct ApprovalPage {
  std::vector<ApprovalRow> items;  // newest first
  std::string next_cursor;         // "" when done
};

struct Snapshot {
  std::string run;
  int64_t seq = 0;    // state includes every event of the run up to and including seq
  json::value state;  // engine-defined
};

// Run ownership fencing (cluster mode). The engine that owns a partition holds an epoch (its
// ownership lease's revision); an append carrying a fence commits only if the partition's epoch in
// the store is still that epoch, so an engine whose lease has moved on can write nothing more.
struct Fence {
  int partition = 0;
  int64_t epoch = 0;
  friend bool operator==(const Fence&, const Fence&) = default;
};

// Links the batches of one pipelined writer (Store::append_async): once a batch of a chain fails,
// every later batch of that chain fails with kAborted and writes nothing, so no batch lands whose
// contents were decided on top of one that did not. Only the store sets `broken`; a writer starts
// a new chain after it has seen every result of the broken one.
struct AppendChain {
  std::atomic<bool> broken{false};
};

// What one Append writes atomically: events (in order) plus projection upserts.
struct Batch {
  std::vector<Event> events;  // seq/prev/hash are filled in by the store
  std::vector<RunRow> runs;
  std::vector<NodeRow> nodes;
  std::vector<WorkflowVersionRow> workflow_versions;  // insert-if-absent
  std::vector<TagRow> tags;                           // upsert
  std::vector<IdempotencyRow> idempotency;            // insert; kAlreadyExists if the key exists
  std::vector<Snapshot> snapshots;                    // upsert (latest per run)
  std::vector<std::pair<std::string, std::string>> settings;  // key/value upserts (e.g. "frozen")
  std::vector<TokenRow> tokens;                               // upsert by id
  std::vector<PatchRow> patches;                              // upsert by id
  std::vector<ApprovalRow> approvals;                         // upsert by id
  // Checked in the append's transaction: kFailedPrecondition (nothing written) when any listed
  // partition's epoch is not that fence's epoch. (A vector: one engine step spans the runs of
  // several partitions it owns.) Empty: no check.
  std::vector<Fence> fences;
  // Optional: the pipelined writer's chain (see AppendChain). Null: independent of other batches.
  std::shared_ptr<AppendChain> chain;
};

// The partition of a run (a stable hash of its id), in [0, partitions). Events without a run go
// to partition 0 as well as the runs that hash there.
int partition_of(std::string_view run, int partitions);

struct AppendResult {
  int64_t first_seq = 0;
  int64_t last_seq = 0;
  std::vector<Event> events;  // as stored (seq, prev, hash filled)
};

struct EventFilter {
  int64_t after_seq = 0;
  std::size_t limit = 1000;  // capped at limits::kReadPageMax
  std::string run;           // exact, optional
  std::string type_prefix;   // optional, e.g. "node."
};

struct RunFilter {
  std::string status;
  std::string workflow;
  std::string cursor;  // opaque; "" for the first page
  std::size_t limit = 100;
};

struct RunPage {
  std::vector<RunRow> items;
  std::string next_cursor;  // "" when done
};

// One partition's chain as verify found it (PostgreSQL; the single-chain stores report one).
struct PartitionReport {
  int partition = 0;
  int64_t events = 0;
  int64_t head_seq = 0;   // seq of the partition's last event (0: empty)
  std::string head_hash;  // "b2:…" of that event (kZeroHash form when empty)
  bool ok = true;
};

struct VerifyReport {
  bool ok = true;
  int64_t events = 0;
  int64_t checkpoints = 0;
  int64_t first_bad_seq = 0;  // 0 when ok
  std::string reason;         // what is wrong with first_bad_seq
  std::vector<PartitionReport> partitions;
};

struct Options {
  // Ed25519 key that signs audit.checkpoint events.
  base::SigningKey signing_key;
  // A checkpoint is appended after this many events or this much time, whichever comes first.
  std::size_t checkpoint_every_events = limits::kCheckpointEveryEvents;
  Millis checkpoint_every = limits::kCheckpointEveryDefault;
  // fsync every commit (PRAGMA synchronous=FULL; PostgreSQL synchronous_commit=on). Off only for
  // tests that measure nothing durable.
  bool fsync = true;
  // PostgreSQL: the number of log partitions when the database is created (later opens use the
  // stored number) and the bound of the connection pool.
  int partitions = 16;
  std::size_t pool_size = 8;
};

class Store {
 public:
  virtual ~Store() = default;

  // Appends the batch atomically (one transaction, shared with concurrent Appends: group commit),
  // assigning seq, prev and hash. Events whose data encodes over kBlobThresholdBytes are stored
  // with data {"$blob": "b2:…", "bytes": n} and the payload in the blob table. Errors:
  // kAlreadyExists for a duplicate idempotency key (nothing written), kUnavailable for I/O (nothing
  // written), kInvalidArgument for an event over kEventBytesMax.
  [[nodiscard]] virtual Result<AppendResult> append(Batch batch) = 0;
  // Like append, but returns at once; the future yields append's result once the batch is durable
  // (or failed). Batches submitted from one thread commit in submission order; Batch::chain makes
  // a later batch fail with kAborted when an earlier one of its chain failed. The default runs
  // append() inline (the future is ready on return); SQLite queues the batch for its writer, so
  // the caller can prepare the next batch while this one commits.
  [[nodiscard]] virtual std::future<Result<AppendResult>> append_async(Batch batch);

  // Events in seq order after filter.after_seq; blob references are resolved to their payloads.
  [[nodiscard]] virtual Result<std::vector<Event>> read_events(const EventFilter& filter) = 0;
  [[nodiscard]] virtual Result<int64_t> last_seq() = 0;

  [[nodiscard]] virtual Result<RunRow> get_run(const std::string& id) = 0;
  [[nodiscard]] virtual Result<RunPage> list_runs(const RunFilter& filter) = 0;
  // Ids of runs whose status is not terminal (for recovery).
  [[nodiscard]] virtual Result<std::vector<std::string>> list_active_runs() = 0;
  [[nodiscard]] virtual Result<std::vector<NodeRow>> get_nodes(const std::string& run) = 0;

  [[nodiscard]] virtual Result<WorkflowVersionRow> get_workflow_version(
      const std::string& name, const std::string& version) = 0;
  // Versions of one workflow, newest first.
  [[nodiscard]] virtual Result<std::vector<WorkflowVersionRow>> list_workflow_versions(
      const std::string& name) = 0;
  [[nodiscard]] virtual Result<std::vector<std::string>> list_workflow_names() = 0;
  [[nodiscard]] virtual Result<std::vector<TagRow>> list_tags(const std::string& name) = 0;
  [[nodiscard]] virtual Result<IdempotencyRow> get_idempotency(const std::string& key) = 0;
  [[nodiscard]] virtual Result<std::optional<Snapshot>> load_snapshot(const std::string& run) = 0;
  [[nodiscard]] virtual Result<std::optional<std::string>> get_setting(const std::string& key) = 0;

  // Every token, revoked ones included, oldest first (created, then id).
  [[nodiscard]] virtual Result<std::vector<TokenRow>> list_tokens() = 0;
  // The token whose secret hashes to `hash` (revoked ones too: the caller checks). kNotFound.
  [[nodiscard]] virtual Result<TokenRow> get_token_by_hash(const std::string& hash) = 0;
  [[nodiscard]] virtual Result<TokenRow> get_token(const std::string& id) = 0;  // kNotFound
  [[nodiscard]] virtual Result<PatchRow> get_patch(const std::string& id) = 0;  // kNotFound
  // The patches of one run, oldest first (created, then id).
  [[nodiscard]] virtual Result<std::vector<PatchRow>> list_patches(const std::string& run) = 0;
  [[nodiscard]] virtual Result<ApprovalRow> get_approval(const std::string& id) = 0;  // kNotFound
  [[nodiscard]] virtual Result<ApprovalPage> list_approvals(const ApprovalFilter& filter) = 0;

  // Recomputes the whole chain, every checkpoint's Merkle root and signature, and every blob's
  // hash; names the first bad event.
  [[nodiscard]] virtual Result<VerifyReport> verify() = 0;

  // Appends a checkpoint now if any event is not yet covered (also done automatically).
  [[nodiscard]] virtual Status checkpoint() = 0;

  // Fencing (see Fence): raises the partition's epoch to `epoch`, so appends fenced with an older
  // epoch fail from now on. kFailedPrecondition if the stored epoch is already higher.
  [[nodiscard]] virtual Status fence_partition(int partition, int64_t epoch) = 0;
  // The number of log partitions (1 for the single-chain stores).
  virtual int partitions() const = 0;
  // kOk when the store can be used now; kUnavailable (with the reason) while it cannot.
  [[nodiscard]] virtual Status health() = 0;
};

// Opens (creating if needed) the SQLite store in dir/venture.db and runs pending migrations.
[[nodiscard]] Result<std::unique_ptr<Store>> open_sqlite(const std::string& dir, Options options,
                                                         base::Clock& clock, base::Random& random);

// Connects to PostgreSQL (libpq URL "postgres://user@host:port/db"), runs pending migrations (the
// same versions as SQLite) and restores every partition's chain. kUnavailable when the server
// cannot be reached.
[[nodiscard]] Result<std::unique_ptr<Store>> open_postgres(const std::string& url, Options options,
                                                           base::Clock& clock,
                                                           base::Random& random);

// Faults a MemoryStore can inject, for tests and the simulation.
struct MemoryFaults {
  // Each Append fails with kUnavailable (writing nothing) with this probability.
  double append_failure_rate = 0;
};

// In-memory store with the same semantics (chain, checkpoints, projections, blobs).
class MemoryStore;
[[nodiscard]] std::unique_ptr<Store> new_memory_store(Options options, base::Clock& clock,
                                                      base::Random& random);
// Sets faults on a store made by NewMemoryStore (CHECKs that it is one).
void set_memory_faults(Store& memory_store, const MemoryFaults& faults, uint64_t seed);
// Test hook: overwrite the stored data of event seq (to prove Verify catches tampering).
void tamper_memory_event(Store& memory_store, int64_t seq, json::value data);

bool is_terminal_run_status(std::string_view status);

}  // namespace venture::storage
