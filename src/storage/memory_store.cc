// MemoryStore: the Store contract in memory, for tests and the deterministic simulation.
//
// Append is serialized under one mutex (no group commit: there is no fsync to amortise), so one
// Append is one "transaction" in Stats(). Sealing, checkpoints, blobs and Verify are the shared
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
    chain_.last_cp_time = clock_.Now();
  }

  Result<AppendResult> Append(Batch batch) override;
  Result<std::vector<Event>> ReadEvents(const EventFilter& filter) override;
  Result<int64_t> LastSeq() override {
    std::lock_guard lock(mu_);
    return chain_.seq;
  }
  Result<RunRow> GetRun(const std::string& id) override;
  Result<RunPage> ListRuns(const RunFilter& filter) override;
  Result<std::vector<std::string>> ListActiveRuns() override {
    std::lock_guard lock(mu_);
    return std::vector<std::string>(active_.begin(), active_.end());
  }
  Result<std::vector<NodeRow>> GetNodes(const std::string& run) override;
  Result<WorkflowVersionRow> GetWorkflowVersion(const std::string& name,
                                                const std::string& version) override;
  Result<std::vector<WorkflowVersionRow>> ListWorkflowVersions(const std::string& name) override;
  Result<std::vector<std::string>> ListWorkflowNames() override;
  Result<std::vector<TagRow>> ListTags(const std::string& name) override;
  Result<IdempotencyRow> GetIdempotency(const std::string& key) override;
  Result<std::optional<Snapshot>> LoadSnapshot(const std::string& run) override;
  Result<std::optional<std::string>> GetSetting(const std::string& key) override;
  Result<VerifyReport> Verify() override;
  Status Checkpoint() override;

  internal::StoreStats Stats() override {
    std::lock_guard lock(mu_);
    return stats_;
  }
  void HoldWriter(bool /*hold*/) override {}
  void WaitPending(std::size_t /*n*/) override {}

  void SetFaults(const MemoryFaults& faults, uint64_t seed) {
    std::lock_guard lock(mu_);
    faults_ = faults;
    fault_random_ = std::make_unique<base::SeededRandom>(seed);
  }
  void TamperEvent(int64_t seq, json::value data) {
    std::lock_guard lock(mu_);
    VENTURE_CHECK(seq >= 1 && seq <= static_cast<int64_t>(events_.size()));
    events_[static_cast<std::size_t>(seq - 1)].data = std::move(data);
  }
  void TamperBlob(const std::string& hash, std::string payload) {
    std::lock_guard lock(mu_);
    blobs_[hash] = std::move(payload);
  }

 private:
  using RunKey = std::pair<int64_t, std::string>;  // (created ms, id)

  Status CheckBatch(const Batch& batch) const;
  void ApplyEvents(Sealed& sealed);
  void ApplyProjections(Batch& batch, const AppendResult& result);
  void UpsertRun(RunRow row);
  Result<Event> Resolve(const Event& stored) const;

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
  MemoryFaults faults_;
  std::unique_ptr<base::SeededRandom> fault_random_;
  internal::StoreStats stats_;
};

Status MemoryStore::CheckBatch(const Batch& batch) const {
  std::unordered_set<std::string_view> keys;
  for (const IdempotencyRow& row : batch.idempotency) {
    if (idempotency_.contains(row.key) || !keys.insert(row.key).second) {
      return AlreadyExists("idempotency key exists: " + row.key.substr(0, 200));
    }
  }
  std::unordered_set<std::string_view> ids;
  for (const Event& e : batch.events) {
    if (!e.id.empty() && (ids_.contains(e.id) || !ids.insert(e.id).second)) {
      return AlreadyExists("event id exists: " + e.id.substr(0, 80));
    }
  }
  return Ok();
}

Result<AppendResult> MemoryStore::Append(Batch batch) {
  std::lock_guard lock(mu_);
  if (fault_random_ && faults_.append_failure_rate > 0 &&
      fault_random_->UniformDouble() < faults_.append_failure_rate) {
    return Unavailable("injected append failure");
  }
  VENTURE_RETURN_IF_ERROR(CheckBatch(batch));
  const internal::SealContext ctx{&options_, &clock_, &random_};
  VENTURE_ASSIGN_OR_RETURN(Sealed sealed,
                           internal::SealBatch(chain_, std::move(batch.events), false, ctx));
  ApplyEvents(sealed);
  ApplyProjections(batch, sealed.result);
  ++stats_.appends;
  ++stats_.transactions;
  return std::move(sealed.result);
}

void MemoryStore::ApplyEvents(Sealed& sealed) {
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

void MemoryStore::UpsertRun(RunRow row) {
  auto it = runs_.find(row.id);
  if (it != runs_.end()) {
    runs_by_created_.erase({ToUnixMs(it->second.created), it->first});
    row.last_seq = std::max(row.last_seq, it->second.last_seq);
  }
  runs_by_created_.insert({ToUnixMs(row.created), row.id});
  if (IsTerminalRunStatus(row.status)) {
    active_.erase(row.id);
  } else {
    active_.insert(row.id);
  }
  runs_[row.id] = std::move(row);
}

void MemoryStore::ApplyProjections(Batch& batch, const AppendResult& result) {
  std::unordered_map<std::string_view, int64_t> last_seq;
  for (const Event& e : result.events) {
    if (!e.run.empty()) {
      last_seq[e.run] = e.seq;
    }
  }
  for (RunRow& row : batch.runs) {
    auto it = last_seq.find(row.id);
    row.last_seq = it != last_seq.end() ? it->second : 0;
    UpsertRun(std::move(row));
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
}

Result<Event> MemoryStore::Resolve(const Event& stored) const {
  const std::optional<internal::BlobRef> ref = internal::AsBlobRef(stored.data);
  if (!ref) {
    return stored;
  }
  auto it = blobs_.find(ref->hash);
  if (it == blobs_.end()) {
    return DataLoss("event " + std::to_string(stored.seq) + ": blob " + ref->hash + " missing");
  }
  VENTURE_ASSIGN_OR_RETURN(json::value data, internal::DecodeBlob(*ref, it->second));
  Event e = stored;
  e.data = std::move(data);
  return e;
}

Result<std::vector<Event>> MemoryStore::ReadEvents(const EventFilter& filter) {
  std::lock_guard lock(mu_);
  const std::size_t limit = std::min(filter.limit, limits::kReadPageMax);
  std::vector<Event> out;
  auto consider = [&](const Event& e) -> Status {
    if (!filter.type_prefix.empty() && !e.type.starts_with(filter.type_prefix)) {
      return Ok();
    }
    VENTURE_ASSIGN_OR_RETURN(Event resolved, Resolve(e));
    out.push_back(std::move(resolved));
    return Ok();
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

Result<RunRow> MemoryStore::GetRun(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = runs_.find(id);
  if (it == runs_.end()) {
    return NotFound("run " + id.substr(0, 80) + " not found");
  }
  return it->second;
}

Result<RunPage> MemoryStore::ListRuns(const RunFilter& filter) {
  const std::size_t limit = std::clamp<std::size_t>(filter.limit, 1, internal::kRunPageMax);
  std::lock_guard lock(mu_);
  auto it = runs_by_created_.begin();
  if (!filter.cursor.empty()) {
    VENTURE_ASSIGN_OR_RETURN(RunKey after, internal::DecodeRunCursor(filter.cursor));
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
      page.next_cursor = internal::EncodeRunCursor(last.created, last.id);
      break;
    }
    page.items.push_back(row);
  }
  return page;
}

Result<std::vector<NodeRow>> MemoryStore::GetNodes(const std::string& run) {
  std::lock_guard lock(mu_);
  std::vector<NodeRow> out;
  for (auto it = nodes_.lower_bound({run, ""}); it != nodes_.end() && it->first.first == run;
       ++it) {
    out.push_back(it->second);
  }
  return out;
}

Result<WorkflowVersionRow> MemoryStore::GetWorkflowVersion(const std::string& name,
                                                           const std::string& version) {
  std::lock_guard lock(mu_);
  auto it = versions_.find({name, version});
  if (it == versions_.end()) {
    return NotFound("workflow " + name.substr(0, 80) + " version " + version + " not found");
  }
  return it->second;
}

Result<std::vector<WorkflowVersionRow>> MemoryStore::ListWorkflowVersions(const std::string& name) {
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

Result<std::vector<std::string>> MemoryStore::ListWorkflowNames() {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [key, row] : versions_) {
    if (out.empty() || out.back() != key.first) {
      out.push_back(key.first);
    }
  }
  return out;
}

Result<std::vector<TagRow>> MemoryStore::ListTags(const std::string& name) {
  std::lock_guard lock(mu_);
  std::vector<TagRow> out;
  for (auto it = tags_.lower_bound({name, ""}); it != tags_.end() && it->first.first == name;
       ++it) {
    out.push_back(it->second);
  }
  return out;
}

Result<IdempotencyRow> MemoryStore::GetIdempotency(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = idempotency_.find(key);
  if (it == idempotency_.end()) {
    return NotFound("idempotency key not found");
  }
  return it->second;
}

Result<std::optional<Snapshot>> MemoryStore::LoadSnapshot(const std::string& run) {
  std::lock_guard lock(mu_);
  auto it = snapshots_.find(run);
  if (it == snapshots_.end()) {
    return std::optional<Snapshot>();
  }
  return std::optional<Snapshot>(it->second);
}

Result<std::optional<std::string>> MemoryStore::GetSetting(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = settings_.find(key);
  if (it == settings_.end()) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(it->second);
}

Result<VerifyReport> MemoryStore::Verify() {
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
    if (!verifier.Add(e)) {
      break;
    }
  }
  return verifier.Finish();
}

Status MemoryStore::Checkpoint() {
  std::lock_guard lock(mu_);
  if (!internal::HasUncovered(chain_)) {
    return Ok();
  }
  const internal::SealContext ctx{&options_, &clock_, &random_};
  VENTURE_ASSIGN_OR_RETURN(Sealed sealed, internal::SealBatch(chain_, {}, true, ctx));
  ApplyEvents(sealed);
  ++stats_.transactions;
  return Ok();
}

std::unique_ptr<Store> NewMemoryStore(Options options, base::Clock& clock, base::Random& random) {
  base::InitCrypto();
  return std::make_unique<MemoryStore>(std::move(options), clock, random);
}

void SetMemoryFaults(Store& memory_store, const MemoryFaults& faults, uint64_t seed) {
  auto* store = dynamic_cast<MemoryStore*>(&memory_store);
  VENTURE_CHECK(store != nullptr);
  store->SetFaults(faults, seed);
}

void TamperMemoryEvent(Store& memory_store, int64_t seq, json::value data) {
  auto* store = dynamic_cast<MemoryStore*>(&memory_store);
  VENTURE_CHECK(store != nullptr);
  store->TamperEvent(seq, std::move(data));
}

void internal::TamperMemoryBlob(Store& memory_store, const std::string& hash, std::string payload) {
  auto* store = dynamic_cast<MemoryStore*>(&memory_store);
  VENTURE_CHECK(store != nullptr);
  store->TamperBlob(hash, std::move(payload));
}

internal::Introspect& internal::Internals(Store& store) {
  auto* introspect = dynamic_cast<Introspect*>(&store);
  VENTURE_CHECK(introspect != nullptr);
  return *introspect;
}

}  // namespace venture::storage
