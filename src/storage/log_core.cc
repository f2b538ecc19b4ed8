// The chain, checkpoint, blob and verify logic shared by both stores. Format:
// docs/storage-format.md.
#include "storage/log_core.h"

#include <charconv>
#include <utility>

namespace venture::storage::internal {

const std::string kZeroHash = "b2:" + std::string(64, '0');

namespace {

std::size_t depth(const json::value& v) {
  std::size_t deepest = 0;
  if (const json::object* o = v.if_object()) {
    for (const auto& m : *o) {
      deepest = std::max(deepest, depth(m.value()));
    }
    return deepest + 1;
  }
  if (const json::array* a = v.if_array()) {
    for (const auto& x : *a) {
      deepest = std::max(deepest, depth(x));
    }
    return deepest + 1;
  }
  return 0;
}

// Assigns seq and prev to e, computes its hash and advances the chain.
void link(ChainState& state, Event& e) {
  e.seq = state.seq + 1;
  e.prev = state.hash;
  // pending.back() is the binary form of state.hash whenever pending is not empty (every linked
  // event pushes its hash): hash with it rather than parsing the hex text back.
  const base::Hash h = state.pending.empty()
                           ? event_hash(e)
                           : base::blake2b(std::span<const uint8_t>(state.pending.back().data(),
                                                                    state.pending.back().size()),
                                           canonical_event_text(e));
  e.hash = base::b2(h);
  state.seq = e.seq;
  state.hash = e.hash;
  state.pending.push_back(h);
  VENTURE_CHECK(state.pending.size() == static_cast<std::size_t>(state.seq - state.cp_from + 1));
}

// Appends an audit.checkpoint to out.stored when one is due.
void maybe_checkpoint(ChainState& state, bool force, const SealContext& ctx, Sealed& out) {
  if (!has_uncovered(state)) {
    return;
  }
  const Time now = ctx.clock->now();
  const auto count = static_cast<std::size_t>(state.seq - state.cp_from + 1);
  const bool due = force || count >= ctx.options->checkpoint_every_events ||
                   now - state.last_cp_time >= ctx.options->checkpoint_every;
  if (!due) {
    return;
  }
  const int64_t from = state.cp_from;
  const int64_t to = state.seq;
  const std::string root = base::b2(base::merkle_root(state.pending));
  const auto signature = base::sign(ctx.options->signing_key, checkpoint_message(from, to, root));
  Event cp;
  cp.id = base::new_id("evt", *ctx.clock, *ctx.random);
  cp.type = std::string(kCheckpointType);
  cp.time = now;
  cp.data = json::object{{"from_seq", from},
                         {"to_seq", to},
                         {"root", root},
                         {"public_key", base::hex(ctx.options->signing_key.public_key)},
                         {"signature", base::hex(signature)}};
  out.undo.pending_before_checkpoint = std::move(state.pending);
  state.pending.clear();
  state.cp_from = to + 1;
  link(state, cp);
  state.last_cp_seq = cp.seq;
  state.last_cp_time = now;
  out.stored_text.push_back(base::compact_json(cp.data));
  out.stored.push_back(std::move(cp));
}

}  // namespace

Result<std::vector<std::string>> validate_events(std::vector<Event>& events,
                                                 const SealContext& ctx) {
  std::vector<std::string> encoded(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    Event& e = events[i];
    if (e.type.empty() || e.type == kCheckpointType) {
      return invalid_argument_error("event type '" + e.type + "' may not be appended");
    }
    if (e.data.is_null()) {
      e.data = json::object();
    }
    if (!e.data.is_object()) {
      return invalid_argument_error("event " + e.type + ": data must be an object");
    }
    if (e.data.get_object().contains(kBlobKey)) {
      return invalid_argument_error("event " + e.type +
                                    ": data may not use the reserved member $blob");
    }
    if (depth(e.data) > limits::kJsonDepthMax) {
      return invalid_argument_error("event " + e.type + ": data nests deeper than kJsonDepthMax");
    }
    if (e.id.empty()) {
      e.id = base::new_id("evt", *ctx.clock, *ctx.random);
    } else if (!base::is_id(e.id, "evt")) {
      return invalid_argument_error("event id '" + e.id.substr(0, 80) + "' is not an evt_ id");
    }
    encoded[i] = base::compact_json(e.data);
    if (encoded[i].size() > limits::kEventBytesMax) {
      return invalid_argument_error("event " + e.type + ": data of " +
                                    std::to_string(encoded[i].size()) +
                                    " bytes exceeds kEventBytesMax");
    }
  }
  return encoded;
}

namespace {

// The stored form of e: its data moved to a blob (recorded in out) when its encoding is over
// kBlobThresholdBytes. Appends the stored data's text to out.stored_text.
Event stored_form(const Event& e, std::string encoded, Sealed& out) {
  Event stored;
  stored.id = e.id;
  stored.type = e.type;
  stored.time = e.time;
  stored.run = e.run;
  stored.node = e.node;
  if (encoded.size() > limits::kBlobThresholdBytes) {
    const std::string hash = base::b2(base::blake2b(encoded));
    stored.data = json::object{{kBlobKey, hash}, {"bytes", encoded.size()}};
    out.blobs.push_back(Blob{hash, std::move(encoded)});
    out.stored_text.push_back(base::compact_json(stored.data));
  } else {
    stored.data = e.data;
    out.stored_text.push_back(std::move(encoded));
  }
  return stored;
}

}  // namespace

void undo(ChainState& state, ChainUndo undo) {
  state.seq = undo.seq;
  state.hash = std::move(undo.hash);
  state.cp_from = undo.cp_from;
  state.last_cp_seq = undo.last_cp_seq;
  state.last_cp_time = undo.last_cp_time;
  if (undo.pending_before_checkpoint) {
    state.pending = std::move(*undo.pending_before_checkpoint);
  }
  VENTURE_CHECK(state.pending.size() >= undo.pending_size);
  state.pending.resize(undo.pending_size);
}

bool has_uncovered(const ChainState& state) { return state.seq > state.last_cp_seq; }

Result<Sealed> seal_batch(ChainState& state, std::vector<Event> events, bool force,
                          const SealContext& ctx) {
  VENTURE_ASSIGN_OR_RETURN(std::vector<std::string> encoded, validate_events(events, ctx));
  Sealed out;
  out.undo = ChainUndo{state.seq,          state.hash,           state.cp_from, state.last_cp_seq,
                       state.last_cp_time, state.pending.size(), std::nullopt};
  out.stored.reserve(events.size() + 1);
  out.stored_text.reserve(events.size() + 1);
  out.result.events.reserve(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    Event& e = events[i];
    Event stored = stored_form(e, std::move(encoded[i]), out);
    link(state, stored);
    e.seq = stored.seq;
    e.prev = stored.prev;
    e.hash = stored.hash;
    out.stored.push_back(std::move(stored));
    out.result.events.push_back(std::move(e));
  }
  if (!out.result.events.empty()) {
    out.result.first_seq = out.result.events.front().seq;
    out.result.last_seq = out.result.events.back().seq;
  }
  maybe_checkpoint(state, force, ctx, out);
  return out;
}

Result<ChainState> restore_chain(const std::optional<Event>& last,
                                 const std::optional<Event>& last_checkpoint,
                                 const std::vector<std::string>& tail_hashes, Time now) {
  ChainState state;
  state.last_cp_time = now;
  if (!last) {
    return state;
  }
  if (compute_event_hash(*last) != last->hash) {
    return data_loss_error("event " + std::to_string(last->seq) +
                           ": stored hash does not recompute");
  }
  state.seq = last->seq;
  state.hash = last->hash;
  if (last_checkpoint) {
    const json::object* d = last_checkpoint->data.if_object();
    const int64_t to = d != nullptr ? base::int_or(*d, "to_seq", -1) : -1;
    if (to < 0 || to >= last_checkpoint->seq) {
      return data_loss_error("checkpoint " + std::to_string(last_checkpoint->seq) + ": bad to_seq");
    }
    state.cp_from = to + 1;
    state.last_cp_seq = last_checkpoint->seq;
    state.last_cp_time = last_checkpoint->time;
  }
  if (tail_hashes.size() != static_cast<std::size_t>(state.seq - state.cp_from + 1)) {
    return data_loss_error("event log has gaps after seq " + std::to_string(state.cp_from));
  }
  for (const std::string& text : tail_hashes) {
    auto h = base::parse_b2(text);
    if (!h) {
      return data_loss_error("event log holds a malformed hash '" + text.substr(0, 80) + "'");
    }
    state.pending.push_back(*h);
  }
  return state;
}

std::optional<BlobRef> as_blob_ref(const json::value& data) {
  const json::object* o = data.if_object();
  if (o == nullptr || !o->contains(kBlobKey)) {
    return std::nullopt;
  }
  return BlobRef{base::string_or(*o, kBlobKey, ""), base::int_or(*o, "bytes", -1)};
}

Result<json::value> decode_blob(const BlobRef& ref, std::string_view payload) {
  if (base::b2(base::blake2b(payload)) != ref.hash ||
      static_cast<int64_t>(payload.size()) != ref.bytes) {
    return data_loss_error("blob " + ref.hash + " does not match its content");
  }
  auto v = base::parse_json(payload);
  if (!v || !v->is_object()) {
    return data_loss_error("blob " + ref.hash + " is not a JSON object");
  }
  return std::move(*v);
}

VerifyReport Verifier::finish() const {
  VerifyReport report = report_;
  report.partitions = {PartitionReport{0, report_.events, expect_seq_ - 1, prev_, report_.ok}};
  return report;
}

bool Verifier::fail(int64_t seq, std::string reason) {
  report_.ok = false;
  report_.first_bad_seq = seq;
  report_.reason = std::move(reason);
  return false;
}

bool Verifier::add_undecodable(int64_t row_seq, const std::string& why) {
  if (!report_.ok) {
    return false;
  }
  return fail(std::min(row_seq, expect_seq_), "undecodable event: " + why);
}

bool Verifier::add(const Event& e) {
  if (!report_.ok) {
    return false;
  }
  if (e.seq != expect_seq_) {
    return fail(std::min(e.seq, expect_seq_), "seq out of order: expected " +
                                                  std::to_string(expect_seq_) + ", found " +
                                                  std::to_string(e.seq));
  }
  if (e.prev != prev_) {
    return fail(e.seq, "prev does not match the hash of the previous event");
  }
  const base::Hash h = event_hash(e);
  if (base::b2(h) != e.hash) {
    return fail(e.seq, "hash does not recompute");
  }
  if (e.type == kCheckpointType) {
    std::string reason = check_checkpoint(e);
    if (!reason.empty()) {
      return fail(e.seq, std::move(reason));
    }
    ++report_.checkpoints;
    pending_.clear();
    cp_from_ = e.seq;
  }
  std::string reason = check_blob(e);
  if (!reason.empty()) {
    return fail(e.seq, std::move(reason));
  }
  pending_.push_back(h);
  prev_ = e.hash;
  ++expect_seq_;
  ++report_.events;
  return true;
}

std::string Verifier::check_checkpoint(const Event& e) const {
  const json::object* data = e.data.if_object();
  if (data == nullptr) {
    return "checkpoint data is not an object";
  }
  const json::object& d = *data;
  const int64_t from = base::int_or(d, "from_seq", -1);
  const int64_t to = base::int_or(d, "to_seq", -1);
  if (from != cp_from_ || to != e.seq - 1) {
    return "checkpoint range " + std::to_string(from) + ".." + std::to_string(to) +
           " does not tile the log (expected " + std::to_string(cp_from_) + ".." +
           std::to_string(e.seq - 1) + ")";
  }
  const std::string root = base::string_or(d, "root", "");
  if (root != base::b2(base::merkle_root(pending_))) {
    return "checkpoint root does not match the events it covers";
  }
  auto key = base::unhex(base::string_or(d, "public_key", ""));
  auto sig = base::unhex(base::string_or(d, "signature", ""));
  if (!key || !sig || key->size() != 32 || sig->size() != 64) {
    return "checkpoint has a malformed public_key or signature";
  }
  const auto* k = reinterpret_cast<const uint8_t*>(key->data());
  const auto* s = reinterpret_cast<const uint8_t*>(sig->data());
  if (!base::verify_signature(std::span<const uint8_t>(k, key->size()),
                              std::span<const uint8_t>(s, sig->size()),
                              checkpoint_message(from, to, root))) {
    return "checkpoint signature does not verify";
  }
  return "";
}

std::string Verifier::check_blob(const Event& e) const { return check_blob_ref(e, lookup_); }

std::string check_blob_ref(const Event& e, const Verifier::BlobLookup& lookup) {
  const std::optional<BlobRef> ref = as_blob_ref(e.data);
  if (!ref) {
    return "";
  }
  auto payload = lookup(ref->hash);
  if (!payload) {
    return "blob " + ref->hash + " unreadable: " + payload.error().message;
  }
  if (!payload->has_value()) {
    return "blob " + ref->hash + " is missing";
  }
  auto decoded = decode_blob(*ref, **payload);
  if (!decoded) {
    return decoded.error().message;
  }
  return "";
}

Status check_partition(int partition, int partitions) {
  if (partition < 0 || partition >= partitions) {
    return invalid_argument_error("partition " + std::to_string(partition) + " is not in [0, " +
                                  std::to_string(partitions) + ")");
  }
  return ok();
}

Status FenceTable::check(const std::vector<Fence>& fences) const {
  for (const Fence& f : fences) {
    VENTURE_RETURN_IF_ERROR(check_partition(f.partition, static_cast<int>(epochs_.size())));
    const int64_t stored = epochs_[static_cast<std::size_t>(f.partition)];
    if (stored != f.epoch) {
      return failed_precondition_error("partition " + std::to_string(f.partition) +
                                       " is at epoch " + std::to_string(stored) +
                                       ", the append is fenced at " + std::to_string(f.epoch));
    }
  }
  return ok();
}

Status FenceTable::raise(int partition, int64_t epoch) {
  VENTURE_RETURN_IF_ERROR(check_partition(partition, static_cast<int>(epochs_.size())));
  int64_t& stored = epochs_[static_cast<std::size_t>(partition)];
  if (stored > epoch) {
    return failed_precondition_error("partition " + std::to_string(partition) + " is at epoch " +
                                     std::to_string(stored) + ", newer than " +
                                     std::to_string(epoch));
  }
  stored = epoch;
  return ok();
}

// ---- partitioned log ----

Result<Sealed> seal_partitioned(std::vector<Event> events, std::vector<std::string> encoded,
                                std::span<const int64_t> seqs, int partitions,
                                std::map<int, PartitionHead>& heads) {
  VENTURE_CHECK(events.size() == encoded.size() && events.size() == seqs.size());
  const std::map<int, PartitionHead> before = heads;
  Sealed out;
  out.stored.reserve(events.size());
  out.stored_text.reserve(events.size());
  out.result.events.reserve(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    Event& e = events[i];
    Event stored = stored_form(e, std::move(encoded[i]), out);
    auto head = heads.find(partition_of(e.run, partitions));
    VENTURE_CHECK(head != heads.end());
    if (seqs[i] <= head->second.seq) {
      heads = before;
      return data_loss_error("seq " + std::to_string(seqs[i]) + " is not above the head " +
                             std::to_string(head->second.seq) + " of partition " +
                             std::to_string(head->first));
    }
    stored.seq = seqs[i];
    stored.prev = head->second.hash;
    stored.hash = compute_event_hash(stored);
    head->second = PartitionHead{stored.seq, stored.hash};
    e.seq = stored.seq;
    e.prev = stored.prev;
    e.hash = stored.hash;
    out.stored.push_back(std::move(stored));
    out.result.events.push_back(std::move(e));
  }
  if (!out.result.events.empty()) {
    out.result.first_seq = out.result.events.front().seq;
    out.result.last_seq = out.result.events.back().seq;
  }
  return out;
}

namespace {

base::Hash raw_or_zero(const std::string& b2) {
  auto h = base::parse_b2(b2);
  return h ? *h : base::Hash{};
}

}  // namespace

std::string heads_checkpoint_message(const json::value& heads, const std::string& root) {
  return base::canonical_json(json::object{{"heads", heads}, {"root", root}});
}

Event make_heads_checkpoint(const std::vector<PartitionHead>& heads, int64_t seq,
                            const std::string& prev, const SealContext& ctx) {
  json::array named;
  std::vector<base::Hash> leaves;
  named.reserve(heads.size());
  leaves.reserve(heads.size());
  for (std::size_t p = 0; p < heads.size(); ++p) {
    named.push_back(json::object{
        {"partition", static_cast<int64_t>(p)}, {"seq", heads[p].seq}, {"hash", heads[p].hash}});
    leaves.push_back(raw_or_zero(heads[p].hash));
  }
  const std::string root = base::b2(base::merkle_root(leaves));
  const json::value heads_json = std::move(named);
  const auto signature =
      base::sign(ctx.options->signing_key, heads_checkpoint_message(heads_json, root));
  Event cp;
  cp.id = base::new_id("evt", *ctx.clock, *ctx.random);
  cp.type = std::string(kCheckpointType);
  cp.time = ctx.clock->now();
  cp.data = json::object{{"heads", heads_json},
                         {"root", root},
                         {"public_key", base::hex(ctx.options->signing_key.public_key)},
                         {"signature", base::hex(signature)}};
  cp.seq = seq;
  cp.prev = prev;
  cp.hash = compute_event_hash(cp);
  return cp;
}

Result<std::vector<HeadClaim>> check_heads_checkpoint(const Event& e) {
  const json::object* d = e.data.if_object();
  const json::value* heads = d != nullptr ? d->if_contains("heads") : nullptr;
  if (heads == nullptr || !heads->is_array() || heads->get_array().empty()) {
    return data_loss_error("checkpoint has no heads");
  }
  std::vector<HeadClaim> claims;
  std::vector<base::Hash> leaves;
  for (const json::value& h : heads->get_array()) {
    const json::object* o = h.if_object();
    if (o == nullptr) {
      return data_loss_error("checkpoint head is not an object");
    }
    HeadClaim c{static_cast<int>(base::int_or(*o, "partition", -1)), base::int_or(*o, "seq", -1),
                base::string_or(*o, "hash", "")};
    auto raw = base::parse_b2(c.hash);
    if (c.partition != static_cast<int>(claims.size()) || c.seq < 0 || !raw) {
      return data_loss_error("checkpoint head " + std::to_string(claims.size()) + " is malformed");
    }
    leaves.push_back(*raw);
    claims.push_back(std::move(c));
  }
  const std::string root = base::string_or(*d, "root", "");
  if (root != base::b2(base::merkle_root(leaves))) {
    return data_loss_error("checkpoint root does not match the heads it names");
  }
  auto key = base::unhex(base::string_or(*d, "public_key", ""));
  auto sig = base::unhex(base::string_or(*d, "signature", ""));
  if (!key || !sig || key->size() != 32 || sig->size() != 64) {
    return data_loss_error("checkpoint has a malformed public_key or signature");
  }
  const auto* k = reinterpret_cast<const uint8_t*>(key->data());
  const auto* s = reinterpret_cast<const uint8_t*>(sig->data());
  if (!base::verify_signature(std::span<const uint8_t>(k, key->size()),
                              std::span<const uint8_t>(s, sig->size()),
                              heads_checkpoint_message(*heads, root))) {
    return data_loss_error("checkpoint signature does not verify");
  }
  return claims;
}

void PartitionVerifier::fail(int64_t seq, std::string reason) {
  if (first_bad_seq_ == 0 || seq < first_bad_seq_) {
    first_bad_seq_ = std::max<int64_t>(seq, 1);
    reason_ = "partition " + std::to_string(partition_) + ": " + std::move(reason);
  }
}

bool PartitionVerifier::add_undecodable(int64_t row_seq, const std::string& why) {
  fail(row_seq, "undecodable event: " + why);
  return false;
}

bool PartitionVerifier::add(const Event& e) {
  if (first_bad_seq_ != 0) {
    return false;
  }
  if (e.seq <= head_.seq) {
    fail(e.seq, "seq out of order after " + std::to_string(head_.seq));
    return false;
  }
  if (partition_of(e.run, partitions_) != partition_) {
    fail(e.seq, "event of run '" + e.run.substr(0, 80) + "' is in the wrong partition");
    return false;
  }
  if (e.prev != head_.hash) {
    fail(e.seq, "prev does not match the hash of the previous event");
    return false;
  }
  if (compute_event_hash(e) != e.hash) {
    fail(e.seq, "hash does not recompute");
    return false;
  }
  if (e.type == kCheckpointType) {
    auto claims = check_heads_checkpoint(e);
    if (!claims) {
      fail(e.seq, claims.error().message);
      return false;
    }
    if (partition_ != 0 || static_cast<int>(claims->size()) != partitions_) {
      fail(e.seq, "checkpoint is not in partition 0 or does not name every partition");
      return false;
    }
    ++checkpoints_;
    claims_.emplace_back(e.seq, std::move(*claims));
  }
  if (std::string reason = check_blob_ref(e, lookup_); !reason.empty()) {
    fail(e.seq, std::move(reason));
    return false;
  }
  head_ = PartitionHead{e.seq, e.hash};
  ++events_;
  return true;
}

std::string encode_run_cursor(Time created, const std::string& id) {
  return std::to_string(to_unix_ms(created)) + "." + id;
}

Result<std::pair<int64_t, std::string>> decode_run_cursor(const std::string& cursor) {
  const std::size_t dot = cursor.find('.');
  int64_t ms = 0;
  if (dot == std::string::npos || dot + 1 >= cursor.size()) {
    return invalid_argument_error("bad runs cursor");
  }
  const char* end = cursor.data() + dot;
  auto [ptr, ec] = std::from_chars(cursor.data(), end, ms);
  if (ec != std::errc() || ptr != end) {
    return invalid_argument_error("bad runs cursor");
  }
  return std::make_pair(ms, cursor.substr(dot + 1));
}

std::string checkpoint_message(int64_t from_seq, int64_t to_seq, const std::string& root) {
  return base::canonical_json(
      json::object{{"from_seq", from_seq}, {"to_seq", to_seq}, {"root", root}});
}

}  // namespace venture::storage::internal

namespace venture::storage {

int partition_of(std::string_view run, int partitions) {
  if (run.empty() || partitions <= 1) {
    return 0;
  }
  // The first 8 bytes of BLAKE2b-256, big-endian: stable across builds, platforms and versions
  // (std::hash is not), so every process and every release maps a run to the same partition.
  const base::Hash h = base::blake2b(run);
  uint64_t x = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    x = (x << 8) | h[i];
  }
  return static_cast<int>(x % static_cast<uint64_t>(partitions));
}

}  // namespace venture::storage
