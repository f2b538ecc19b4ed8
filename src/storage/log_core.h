// Internal to storage: the logic both stores share, written once. Sealing a batch (seq, prev,
// hash, blob externalisation, automatic checkpoints), the chain state and its undo record, the
// verifier, and small codecs (blob references, run cursors). Neither store re-implements any of
// this; they only move bytes to and from their medium. See docs/storage-format.md.
//
// Threading: nothing here locks. ChainState belongs to the store's single writer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/base.h"
#include "storage/storage.h"

namespace venture::storage::internal {

// "b2:" + 64 zeros: the prev of the first event.
extern const std::string kZeroHash;
inline constexpr std::string_view kCheckpointType = "audit.checkpoint";
inline constexpr std::string_view kBlobKey = "$blob";

// The writer's view of the log's tail. Invariant: pending.size() == seq - cp_from + 1 (the hashes
// of the events not yet covered by a checkpoint, in seq order), or 0 when seq < cp_from.
struct ChainState {
  int64_t seq = 0;                  // last assigned seq (0: empty log)
  std::string hash = kZeroHash;     // hash of event seq
  int64_t cp_from = 1;              // first seq not covered by a checkpoint
  int64_t last_cp_seq = 0;          // seq of the last audit.checkpoint event (0: none)
  Time last_cp_time{};              // time of the last checkpoint (or of open)
  std::vector<base::Hash> pending;  // hashes of events cp_from..seq
};

// Enough to put a ChainState back as it was before one SealBatch (for a rolled-back savepoint).
struct ChainUndo {
  int64_t seq = 0;
  std::string hash;
  int64_t cp_from = 0;
  int64_t last_cp_seq = 0;
  Time last_cp_time{};
  std::size_t pending_size = 0;
  std::optional<std::vector<base::Hash>> pending_before_checkpoint;
};
void undo(ChainState& state, ChainUndo undo);

struct Blob {
  std::string hash;     // "b2:" of payload
  std::string payload;  // CompactJson of the event's data
};

struct SealContext {
  const Options* options = nullptr;
  base::Clock* clock = nullptr;
  base::Random* random = nullptr;
};

// One sealed batch: what to write and what to return.
struct Sealed {
  std::vector<Event> stored;  // as written (blob references in data); includes any checkpoint
  std::vector<std::string> stored_text;  // CompactJson of each stored[i].data
  std::vector<Blob> blobs;
  AppendResult result;  // as returned (payloads in data)
  ChainUndo undo;
};

// Validates events (size, type, data kind), fills empty ids, then assigns seq/prev/hash, moves
// large data to blobs and appends a checkpoint when a threshold is crossed (or force is set and
// events are uncovered). Mutates state only on success. kInvalidArgument on bad events.
[[nodiscard]] Result<Sealed> seal_batch(ChainState& state, std::vector<Event> events, bool force,
                                        const SealContext& ctx);

// Checks and normalises caller events (type, data kind, $blob, depth, size) and fills empty ids;
// returns each event's compact data encoding. kInvalidArgument on a bad event.
[[nodiscard]] Result<std::vector<std::string>> validate_events(std::vector<Event>& events,
                                                               const SealContext& ctx);

// ---- partitioned log (PostgreSQL; docs/storage-format.md "PostgreSQL") ----

// The head of one partition's chain: its last event (seq 0 and kZeroHash when empty).
struct PartitionHead {
  int64_t seq = 0;
  std::string hash = kZeroHash;
};

// Seals validated events (`encoded` is validate_events' output) into their partitions' chains:
// events[i] gets seqs[i] (ascending), prev = the head of partition_of(run), and becomes that head.
// `heads` must hold every partition the events touch. Moves large data to blobs; never adds a
// checkpoint (the store decides that for the whole group). result.first_seq/last_seq are the
// first and last assigned seqs.
// kDataLoss (heads unchanged) if a seq is not above its partition's head (a sequence that was
// set back behind the store's back).
[[nodiscard]] Result<Sealed> seal_partitioned(std::vector<Event> events,
                                              std::vector<std::string> encoded,
                                              std::span<const int64_t> seqs, int partitions,
                                              std::map<int, PartitionHead>& heads);

// One head named by a partitioned checkpoint.
struct HeadClaim {
  int partition = 0;
  int64_t seq = 0;
  std::string hash;
};

// The audit.checkpoint event of a partitioned log: event `seq` of partition 0, linked after
// `prev`, whose data names every partition's head (heads[p] for p in [0, P)), their Merkle root
// and the signature over heads_checkpoint_message.
Event make_heads_checkpoint(const std::vector<PartitionHead>& heads, int64_t seq,
                            const std::string& prev, const SealContext& ctx);
// canonical_json({"heads": heads, "root": root}): what a partitioned checkpoint signs.
std::string heads_checkpoint_message(const json::value& heads, const std::string& root);
// Decodes a partitioned checkpoint's data and checks its root and signature; its claims, or
// kDataLoss naming what is wrong.
[[nodiscard]] Result<std::vector<HeadClaim>> check_heads_checkpoint(const Event& e);

// True if checkpoint data covers anything not yet covered (Store::checkpoint()).
bool has_uncovered(const ChainState& state);

// Builds ChainState from the stored tail: the last event, the last checkpoint (if any) and the
// hashes of events after it. kDataLoss if the last event's hash does not recompute.
[[nodiscard]] Result<ChainState> restore_chain(const std::optional<Event>& last,
                                               const std::optional<Event>& last_checkpoint,
                                               const std::vector<std::string>& tail_hashes,
                                               Time now);

// If data is a blob reference, its hash and byte count.
// The raw chain hash of an event (ComputeEventHash without the "b2:" text form).
base::Hash event_hash(const Event& e);
// canonical_json(event_to_json(e, false)), built without the intermediate JSON object.
std::string canonical_event_text(const Event& e);

struct BlobRef {
  std::string hash;
  int64_t bytes = 0;
};
std::optional<BlobRef> as_blob_ref(const json::value& data);
// Parses and checks a blob payload against its reference (kDataLoss on mismatch).
[[nodiscard]] Result<json::value> decode_blob(const BlobRef& ref, std::string_view payload);

// Streaming verifier: feed every stored event (or its decode error) in seq order, then Finish.
class Verifier {
 public:
  // Returns the payload of a blob, nullopt if absent.
  using BlobLookup = std::function<Result<std::optional<std::string>>(const std::string& hash)>;
  explicit Verifier(BlobLookup lookup) : lookup_(std::move(lookup)) {}

  // Returns false once a bad event has been found (callers may stop feeding).
  bool add(const Event& e);
  // A row whose seq is known but whose content does not decode.
  bool add_undecodable(int64_t row_seq, const std::string& why);
  // The report, with one PartitionReport (partition 0) for the single chain.
  VerifyReport finish() const;

 private:
  bool fail(int64_t seq, std::string reason);
  std::string check_checkpoint(const Event& e) const;
  std::string check_blob(const Event& e) const;

  BlobLookup lookup_;
  VerifyReport report_;
  int64_t expect_seq_ = 1;
  std::string prev_ = kZeroHash;
  int64_t cp_from_ = 1;
  std::vector<base::Hash> pending_;
};

// Fencing for the single-process stores (memory, SQLite): the epoch of each partition, kept in
// memory under the caller's lock. check: kFailedPrecondition unless every fence names its
// partition's stored epoch (kInvalidArgument for a partition out of range); raise: see
// Store::fence_partition.
class FenceTable {
 public:
  explicit FenceTable(int partitions) : epochs_(static_cast<std::size_t>(partitions), 0) {}
  [[nodiscard]] Status check(const std::vector<Fence>& fences) const;
  [[nodiscard]] Status raise(int partition, int64_t epoch);

 private:
  std::vector<int64_t> epochs_;
};

// kInvalidArgument unless 0 <= partition < partitions.
[[nodiscard]] Status check_partition(int partition, int partitions);

// "" when e's blob reference (if any) resolves to a payload with the named hash and length, else
// why not.
std::string check_blob_ref(const Event& e, const Verifier::BlobLookup& lookup);

// Streaming verifier of one partition of a partitioned log: feed its events in seq order (seqs
// ascend, with gaps), then report(). Checks the partition (partition_of(run)), prev links,
// hashes, blobs and every checkpoint's root and signature; the checkpoints' claims are collected
// for the store to check against the other partitions.
class PartitionVerifier {
 public:
  PartitionVerifier(int partition, int partitions, Verifier::BlobLookup lookup)
      : partition_(partition), partitions_(partitions), lookup_(std::move(lookup)) {}
  // Returns false once a bad event has been found.
  bool add(const Event& e);
  bool add_undecodable(int64_t row_seq, const std::string& why);
  // Marks the partition bad at seq (a check made outside, e.g. the partition row's head).
  void fail(int64_t seq, std::string reason);

  PartitionReport report() const {
    return PartitionReport{partition_, events_, head_.seq, head_.hash, first_bad_seq_ == 0};
  }
  int64_t first_bad_seq() const { return first_bad_seq_; }
  const std::string& reason() const { return reason_; }
  int64_t checkpoints() const { return checkpoints_; }
  // (checkpoint seq, the heads it names), in seq order.
  const std::vector<std::pair<int64_t, std::vector<HeadClaim>>>& claims() const { return claims_; }

 private:
  int partition_;
  int partitions_;
  Verifier::BlobLookup lookup_;
  PartitionHead head_;
  int64_t events_ = 0;
  int64_t checkpoints_ = 0;
  int64_t first_bad_seq_ = 0;
  std::string reason_;
  std::vector<std::pair<int64_t, std::vector<HeadClaim>>> claims_;
};

// Opaque ListRuns cursor: the (created, id) of the last item of the previous page.
std::string encode_run_cursor(Time created, const std::string& id);
[[nodiscard]] Result<std::pair<int64_t, std::string>> decode_run_cursor(const std::string& cursor);
inline constexpr std::size_t kRunPageMax = 500;

// The order of list_tokens and list_patches: created ascending, then id (UUIDv7: time ordered).
inline bool oldest_first(Time a_created, const std::string& a_id, Time b_created,
                         const std::string& b_id) {
  return a_created != b_created ? a_created < b_created : a_id < b_id;
}

// The payload signed by a checkpoint: canonical JSON of {from_seq, to_seq, root}.
std::string checkpoint_message(int64_t from_seq, int64_t to_seq, const std::string& root);

// Counters and test hooks every store implements (reached by dynamic_cast from a Store&).
struct StoreStats {
  int64_t appends = 0;       // Append calls that committed
  int64_t transactions = 0;  // commits (one per group for SQLite, one per append for memory)
};
class Introspect {
 public:
  virtual ~Introspect() = default;
  virtual StoreStats stats() = 0;
  // Test hook: while held, the writer takes no work, so concurrent Appends pile up into one group.
  virtual void hold_writer(bool hold) = 0;
  // Test hook: blocks until at least n Appends are queued for the writer.
  virtual void wait_pending(std::size_t n) = 0;
};
Introspect& internals(Store& store);

// Test hook: overwrite a blob payload of a MemoryStore.
void tamper_memory_blob(Store& memory_store, const std::string& hash, std::string payload);

}  // namespace venture::storage::internal
