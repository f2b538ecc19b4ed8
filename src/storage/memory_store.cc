// MemoryStore: the Store contract in memory, for tests and the deterministic simulation.
//
// Append is serialized under one mutex (no group commit: there is no fsync to amortise), so one
// Append is one "transaction" in stats(). Sealing, checkpoints, blobs and Verify are the shared
// core's (log_core.h), so the chain it builds is byte-for-byte the one SQLite would build.
// Events are indexed by run so reads by run cost O(log n + page), never a scan of the log.
#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "storage/log_core.h"
#include "storage/storage.h"

namespace venture::storage {

using internal::ChainState;
using internal::Sealed;

class MemoryStore final : public Store, public internal::Introspect {
 public:
  MemoryStore(Options options, base::Clock& clock, base::Random& random)
      : options_(std::move(options)), clock_(clock), random_(random) {
    chain_.last_cp_time = clock_.now();
  }

  Result<AppendResult> append(Batch batch) override;
  Result<std::vector<Event>> read_events(const EventFilter& filter) override;
  Result<int64_t> last_seq() override {
    std::lock_guard lock(mu_);
    return chain_.seq;
  }
  Result<RunRow> get_run(const std::string& id) override;
  Result<RunPage> list_runs(const RunFilter& filter) override;
  Result<std::vector<std::string>> list_active_runs() override {
    std::lock_guard lock(mu_);
    return std::vector<std::string>(active_.begin(), active_.end());
  }
  Result<std::vector<NodeRow>> get_nodes(const std::string& run) override;
  Result<WorkflowVersionRow> get_workflow_version(const std::string& name,
                                                  const std::string& version) override;
  Result<std::vector<WorkflowVersionRow>> list_workflow_versions(const std::string& name) override;
  Result<std::vector<std::string>> list_workflow_names() override;
  Result<std::vector<TagRow>> list_tags(const std::string& name) override;
  Result<IdempotencyRow> get_idempotency(const std::string& key) override;
  Result<std::optional<Snapshot>> load_snapshot(const std::string& run) override;
  Result<std::optional<std::string>> get_setting(const std::string& key) override;
  Result<std::vector<TokenRow>> list_tokens() override;
  Result<TokenRow> get_token_by_hash(const std::string& hash) override;
  Result<TokenRow> get_token(const std::string& id) override;
  Result<PatchRow> get_patch(const std::string& id) override;
  Result<std::vector<PatchRow>> list_patches(const std::string& run) override;
  Result<ApprovalRow> get_approval(const std::string& id) override;
  Result<ApprovalPage> list_approvals(const ApprovalFilter& filter) override;
  Result<VerifyReport> verify() override;
  Status checkpoint() override;
  Status fence_partition(int partition, int64_t epoch) override {
    std::lock_guard lock(mu_);
    return fences_.raise(partition, epoch);
  }
  int partitions() const override { return 1; }
  Status health() override { return ok(); }

  internal::StoreStats stats() override {
    std::lock_guard lock(mu_);
    return stats_;
  }
  void hold_writer(bool /*hold*/) override {}
  void wait_pending(std::size_t /*n*/) override {}

  void set_faults(const MemoryFaults& faults, uint64_t seed) {
    std::lock_guard lock(mu_);
    faults_ = faults;
    fault_random_ = std::make_unique<base::SeededRandom>(seed);
  }
  void tamper_event(int64_t seq, json::value data) {
    std::lock_guard lock(mu_);
    VENTURE_CHECK(seq >= 1 && seq <= static_cast<int64_t>(events_.size()));
    events_[static_cast<std::size_t>(seq - 1)].data = std::move(data);
  }
  void tamper_blob(const std::string& hash, std::string payload) {
    std::lock_guard lock(mu_);
    blobs_[hash] = std::move(payload);
  }

 private:
  using RunKey = std::pair<int64_t, std::string>;  // (created ms, id)

  Status check_batch(const Batch& batch) const;
  void apply_events(Sealed& sealed);
  void apply_projections(Batch& batch, const AppendResult& result);
  void upsert_run(RunRow row);
  Result<Event> resolve(const Event& stored) const;

  std::mutex mu_;
  const Options options_;
  base::Clock& clock_;
  base::Random& random_;
  ChainState chain_;
  std::vector<Event> events_;                                     // stored form; events_[seq - 1]
  std::unordered_map<std::string, std::vector<int64_t>> by_run_;  // run -> seqs, ascending
  std::unordered_set<std::string> ids_;
  std::unordered_map<std::string, std::string> blobs_;
  std::unordered_map<std::string, RunRow> runs_;
  std::set<RunKey, std::greater<>> runs_by_created_;  // newest first
  std::set<std::string> active_;
  std::map<std::pair<std::string, std::string>, NodeRow> nodes_;
  std::map<std::pair<std::string, std::string>, WorkflowVersionRow> versions_;
  std::map<std::pair<std::string, std::string>, TagRow> tags_;
  std::unordered_map<std::string, IdempotencyRow> idempotency_;
  std::unordered_map<std::string, Snapshot> snapshots_;
  std::unordered_map<std::string, std::string> settings_;
  std::unordered_map<std::string, TokenRow> tokens_;                       // by id
  std::unordered_map<std::string, std::string> token_by_hash_;             // hash -> id
  std::unordered_map<std::string, PatchRow> patches_;                      // by id
  std::unordered_map<std::string, std::set<std::string>> patches_by_run_;  // run -> ids
  std::unordered_map<std::string, ApprovalRow> approvals_;                 // by id
  std::set<RunKey, std::greater<>> approvals_by_created_;                  // newest first
  MemoryFaults faults_;
  std::unique_ptr<base::SeededRandom> fault_random_;
  internal::StoreStats stats_;
  internal::FenceTable fences_{1};  // the single partition's epoch
};

Status MemoryStore::check_batch(const Batch& batch) const {
  std::unordered_set<std::string_view> keys;
  for (const IdempotencyRow& row : batch.idempotency) {
    if (idempotency_.contains(row.key) || !keys.insert(row.key).second) {
      return already_exists_error("idempotency key exists: " + row.key.substr(0, 200));
    }
  }
  std::unordered_set<std::string_view> ids;
  for (const Event& e : batch.events) {
    if (!e.id.empty() && (ids_.contains(e.id) || !ids.insert(e.id).second)) {
      return already_exists_error("event id exists: " + e.id.substr(0, 80));
    }
  }
  return ok();
}

Result<AppendResult> MemoryStore::append(Batch batch) {
  std::lock_guard lock(mu_);
  if (fault_random_ && faults_.append_failure_rate > 0 &&
      fault_random_->uniform_double() < faults_.append_failure_rate) {
    return unavailable_error("injected append failure");
  }
  VENTURE_RETURN_IF_ERROR(fences_.check(batch.fences));
  VENTURE_RETURN_IF_ERROR(check_batch(batch));
  const internal::SealContext ctx{&options_, &clock_, &random_};
  VENTURE_ASSIGN_OR_RETURN(Sealed sealed,
                           internal::seal_batch(chain_, std::move(batch.events), false, ctx));
  apply_events(sealed);
  apply_projections(batch, sealed.result);
  ++stats_.appends;
  ++stats_.transactions;
  return std::move(sealed.result);
}

void MemoryStore::apply_events(Sealed& sealed) {
  for (internal::Blob& blob : sealed.blobs) {
    blobs_.emplace(blob.hash, std::move(blob.payload));
  }
  for (Event& e : sealed.stored) {
    VENTURE_CHECK(e.seq == static_cast<int64_t>(events_.size()) + 1);
    if (!e.run.empty()) {
      by_run_[e.run].push_back(e.seq);
    }
    ids_.insert(e.id);
    events_.push_back(std::move(e));
  }
}

void MemoryStore::upsert_run(RunRow row) {
  auto it = runs_.find(row.id);
  if (it != runs_.end()) {
    runs_by_created_.erase({to_unix_ms(it->second.created), it->first});
    row.last_seq = std::max(row.last_seq, it->second.last_seq);
  }
  runs_by_created_.insert({to_unix_ms(row.created), row.id});
  if (is_terminal_run_status(row.status)) {
    active_.erase(row.id);
  } else {
    active_.insert(row.id);
  }
  runs_[row.id] = std::move(row);
}

void MemoryStore::apply_projections(Batch& batch, const AppendResult& result) {
  std::unordered_map<std::string_view, int64_t> last_seq;
  for (const Event& e : result.events) {
    if (!e.run.empty()) {
      last_seq[e.run] = e.seq;
    }
  }
  for (RunRow& row : batch.runs) {
    auto it = last_seq.find(row.id);
    row.last_seq = it != last_seq.end() ? it->second : 0;
    upsert_run(std::move(row));
  }
  for (NodeRow& row : batch.nodes) {
    nodes_[{row.run, row.node}] = std::move(row);
  }
  for (WorkflowVersionRow& row : batch.workflow_versions) {
    versions_.try_emplace({row.name, row.version}, std::move(row));
  }
  for (TagRow& row : batch.tags) {
    tags_[{row.name, row.tag}] = std::move(row);
  }
  for (IdempotencyRow& row : batch.idempotency) {
    idempotency_.emplace(row.key, std::move(row));
  }
  for (Snapshot& s : batch.snapshots) {
    auto it = snapshots_.find(s.run);
    if (it == snapshots_.end() || it->second.seq <= s.seq) {
      snapshots_[s.run] = std::move(s);
    }
  }
  for (auto& [key, value] : batch.settings) {
    settings_[key] = std::move(value);
  }
  for (TokenRow& row : batch.tokens) {
    if (auto it = tokens_.find(row.id); it != tokens_.end() && it->second.hash != row.hash) {
      token_by_hash_.erase(it->second.hash);
    }
    token_by_hash_[row.hash] = row.id;
    tokens_[row.id] = std::move(row);
  }
  for (PatchRow& row : batch.patches) {
    if (auto it = patches_.find(row.id); it != patches_.end() && it->second.run != row.run) {
      patches_by_run_[it->second.run].erase(row.id);
    }
    patches_by_run_[row.run].insert(row.id);
    patches_[row.id] = std::move(row);
  }
  for (ApprovalRow& row : batch.approvals) {
    if (auto it = approvals_.find(row.id); it != approvals_.end()) {
      approvals_by_created_.erase({to_unix_ms(it->second.created), row.id});
    }
    approvals_by_created_.insert({to_unix_ms(row.created), row.id});
    approvals_[row.id] = std::move(row);
  }
}

Result<Event> MemoryStore::resolve(const Event& stored) const {
  const std::optional<internal::BlobRef> ref = internal::as_blob_ref(stored.data);
  if (!ref) {
    return stored;
  }
  auto it = blobs_.find(ref->hash);
  if (it == blobs_.end()) {
    return data_loss_error("event " + std::to_string(stored.seq) + ": blob " + ref->hash +
                           " missing");
  }
  VENTURE_ASSIGN_OR_RETURN(json::value data, internal::decode_blob(*ref, it->second));
  Event e = stored;
  e.data = std::move(data);
  return e;
}

Result<std::vector<Event>> MemoryStore::read_events(const EventFilter& filter) {
  std::lock_guard lock(mu_);
  const std::size_t limit = std::min(filter.limit, limits::kReadPageMax);
  std::vector<Event> out;
  auto consider = [&](const Event& e) -> Status {
    if (!filter.type_prefix.empty() && !e.type.starts_with(filter.type_prefix)) {
      return ok();
    }
    VENTURE_ASSIGN_OR_RETURN(Event resolved, resolve(e));
    out.push_back(std::move(resolved));
    return ok();
  };
  const int64_t after = std::max<int64_t>(filter.after_seq, 0);
  if (!filter.run.empty()) {
    auto it = by_run_.find(filter.run);
    if (it == by_run_.end()) {
      return out;
    }
    const std::vector<int64_t>& seqs = it->second;
    for (auto s = std::upper_bound(seqs.begin(), seqs.end(), after);
         s != seqs.end() && out.size() < limit; ++s) {
      VENTURE_RETURN_IF_ERROR(consider(events_[static_cast<std::size_t>(*s - 1)]));
    }
    return out;
  }
  for (auto i = static_cast<std::size_t>(after); i < events_.size() && out.size() < limit; ++i) {
    VENTURE_RETURN_IF_ERROR(consider(events_[i]));
  }
  return out;
}

Result<RunRow> MemoryStore::get_run(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = runs_.find(id);
  if (it == runs_.end()) {
    return not_found_error("run " + id.substr(0, 80) + " not found");
  }
  return it->second;
}

Result<RunPage> MemoryStore::list_runs(const RunFilter& filter) {
  const std::size_t limit = std::clamp<std::size_t>(filter.limit, 1, internal::kRunPageMax);
  std::lock_guard lock(mu_);
  auto it = runs_by_created_.begin();
  if (!filter.cursor.empty()) {
    VENTURE_ASSIGN_OR_RETURN(RunKey after, internal::decode_run_cursor(filter.cursor));
    it = runs_by_created_.upper_bound(after);
  }
  RunPage page;
  for (; it != runs_by_created_.end(); ++it) {
    const RunRow& row = runs_.at(it->second);
    if ((!filter.status.empty() && row.status != filter.status) ||
        (!filter.workflow.empty() && row.workflow != filter.workflow)) {
      continue;
    }
    if (page.items.size() == limit) {
      const RunRow& last = page.items.back();
      page.next_cursor = internal::encode_run_cursor(last.created, last.id);
      break;
    }
    page.items.push_back(row);
  }
  return page;
}

Result<std::vector<NodeRow>> MemoryStore::get_nodes(const std::string& run) {
  std::lock_guard lock(mu_);
  std::vector<NodeRow> out;
  for (auto it = nodes_.lower_bound({run, ""}); it != nodes_.end() && it->first.first == run;
       ++it) {
    out.push_back(it->second);
  }
  return out;
}

Result<WorkflowVersionRow> MemoryStore::get_workflow_version(const std::string& name,
                                                             const std::string& version) {
  std::lock_guard lock(mu_);
  auto it = versions_.find({name, version});
  if (it == versions_.end()) {
    return not_found_error("workflow " + name.substr(0, 80) + " version " + version + " not found");
  }
  return it->second;
}

Result<std::vector<WorkflowVersionRow>> MemoryStore::list_workflow_versions(
    const std::string& name) {
  std::lock_guard lock(mu_);
  std::vector<WorkflowVersionRow> out;
  for (auto it = versions_.lower_bound({name, ""});
       it != versions_.end() && it->first.first == name; ++it) {
    out.push_back(it->second);
  }
  std::sort(out.begin(), out.end(), [](const WorkflowVersionRow& a, const WorkflowVersionRow& b) {
    return a.created != b.created ? a.created > b.created : a.version > b.version;
  });
  return out;
}

Result<std::vector<std::string>> MemoryStore::list_workflow_names() {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [key, row] : versions_) {
    if (out.empty() || out.back() != key.first) {
      out.push_back(key.first);
    }
  }
  return out;
}

Result<std::vector<TagRow>> MemoryStore::list_tags(const std::string& name) {
  std::lock_guard lock(mu_);
  std::vector<TagRow> out;
  for (auto it = tags_.lower_bound({name, ""}); it != tags_.end() && it->first.first == name;
       ++it) {
    out.push_back(it->second);
  }
  return out;
}

Result<IdempotencyRow> MemoryStore::get_idempotency(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = idempotency_.find(key);
  if (it == idempotency_.end()) {
    return not_found_error("idempotency key not found");
  }
  return it->second;
}

Result<std::optional<Snapshot>> MemoryStore::load_snapshot(const std::string& run) {
  std::lock_guard lock(mu_);
  auto it = snapshots_.find(run);
  if (it == snapshots_.end()) {
    return std::optional<Snapshot>();
  }
  return std::optional<Snapshot>(it->second);
}

Result<std::optional<std::string>> MemoryStore::get_setting(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = settings_.find(key);
  if (it == settings_.end()) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(it->second);
}

Result<std::vector<TokenRow>> MemoryStore::list_tokens() {
  std::lock_guard lock(mu_);
  std::vector<TokenRow> out;
  out.reserve(tokens_.size());
  for (const auto& [id, row] : tokens_) {
    out.push_back(row);
  }
  std::sort(out.begin(), out.end(), [](const TokenRow& a, const TokenRow& b) {
    return internal::oldest_first(a.created, a.id, b.created, b.id);
  });
  return out;
}

Result<TokenRow> MemoryStore::get_token_by_hash(const std::string& hash) {
  std::lock_guard lock(mu_);
  auto it = token_by_hash_.find(hash);
  if (it == token_by_hash_.end()) {
    return not_found_error("token not found");
  }
  return tokens_.at(it->second);
}

Result<TokenRow> MemoryStore::get_token(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = tokens_.find(id);
  if (it == tokens_.end()) {
    return not_found_error("token " + id.substr(0, 80) + " not found");
  }
  return it->second;
}

Result<ApprovalRow> MemoryStore::get_approval(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = approvals_.find(id);
  if (it == approvals_.end()) {
    return not_found_error("approval " + id.substr(0, 80) + " not found");
  }
  return it->second;
}

Result<ApprovalPage> MemoryStore::list_approvals(const ApprovalFilter& filter) {
  const std::size_t limit = std::clamp<std::size_t>(filter.limit, 1, internal::kRunPageMax);
  std::lock_guard lock(mu_);
  auto it = approvals_by_created_.begin();
  if (!filter.cursor.empty()) {
    VENTURE_ASSIGN_OR_RETURN(RunKey after, internal::decode_run_cursor(filter.cursor));
    it = approvals_by_created_.upper_bound(after);
  }
  ApprovalPage page;
  for (; it != approvals_by_created_.end(); ++it) {
    const ApprovalRow& row = approvals_.at(it->second);
    if ((!filter.status.empty() && row.status != filter.status) ||
        (!filter.run.empty() && row.run != filter.run)) {
      continue;
    }
    if (page.items.size() == limit) {
      const ApprovalRow& last = page.items.back();
      page.next_cursor = internal::encode_run_cursor(last.created, last.id);
      break;
    }
    page.items.push_back(row);
  }
  return page;
}

Result<PatchRow> MemoryStore::get_patch(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = patches_.find(id);
  if (it == patches_.end()) {
    return not_found_error("patch " + id.substr(0, 80) + " not found");
  }
  return it->second;
}

Result<std::vector<PatchRow>> MemoryStore::list_patches(const std::string& run) {
  std::lock_guard lock(mu_);
  std::vector<PatchRow> out;
  if (auto it = patches_by_run_.find(run); it != patches_by_run_.end()) {
    for (const std::string& id : it->second) {
      out.push_back(patches_.at(id));
    }
  }
  std::sort(out.begin(), out.end(), [](const PatchRow& a, const PatchRow& b) {
    return internal::oldest_first(a.created, a.id, b.created, b.id);
  });
  return out;
}

Result<VerifyReport> MemoryStore::verify() {
  std::lock_guard lock(mu_);
  internal::Verifier verifier(
      [this](const std::string& hash) -> Result<std::optional<std::string>> {
        auto it = blobs_.find(hash);
        if (it == blobs_.end()) {
          return std::optional<std::string>();
        }
        return std::optional<std::string>(it->second);
      });
  for (const Event& e : events_) {
    if (!verifier.add(e)) {
      break;
    }
  }
  return verifier.finish();
}

Status MemoryStore::checkpoint() {
  std::lock_guard lock(mu_);
  if (!internal::has_uncovered(chain_)) {
    return ok();
  }
  const internal::SealContext ctx{&options_, &clock_, &random_};
  VENTURE_ASSIGN_OR_RETURN(Sealed sealed, internal::seal_batch(chain_, {}, true, ctx));
  apply_events(sealed);
  ++stats_.transactions;
  return ok();
}

std::unique_ptr<Store> new_memory_store(Options options, base::Clock& clock, base::Random& random) {
  base::init_crypto();
  return std::make_unique<MemoryStore>(std::move(options), clock, random);
}

void set_memory_faults(Store& memory_store, const MemoryFaults& faults, uint64_t seed) {
  auto* store = dynamic_cast<MemoryStore*>(&memory_store);
  VENTURE_CHECK(store != nullptr);
  store->set_faults(faults, seed);
}

void tamper_memory_event(Store& memory_store, int64_t seq, json::value data) {
  auto* store = dynamic_cast<MemoryStore*>(&memory_store);
  VENTURE_CHECK(store != nullptr);
  store->tamper_event(seq, std::move(data));
}

void internal::tamper_memory_blob(Store& memory_store, const std::string& hash,
                                  std::string payload) {
  auto* store = dynamic_cast<MemoryStore*>(&memory_store);
  VENTURE_CHECK(store != nullptr);
  store->tamper_blob(hash, std::move(payload));
}

internal::Introspect& internal::internals(Store& store) {
  auto* introspect = dynamic_cast<Introspect*>(&store);
  VENTURE_CHECK(introspect != nullptr);
  return *introspect;
}

}  // namespace venture::storage
