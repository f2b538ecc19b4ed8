// PgStore: the cluster-mode store on PostgreSQL (libpq). Format and the reasoning behind the
// partitions, the watermark and fencing: docs/storage-format.md "PostgreSQL".
//
// Write path (group commit without a thread). append() queues its batch (bounded by
// kPendingAppendsMax) and waits. A waiting caller becomes a leader when fewer than `leaders_max_`
// groups are in flight: it takes every queued batch (up to kAppendBatchEventsMax events), and
// commits them in ONE transaction on a pooled connection: the shared advisory lock K, then
// SELECT … FOR UPDATE of exactly the partition rows the group touches (in partition order, so
// concurrent groups of this or any other process cannot deadlock), then each batch inside its own
// SAVEPOINT (a failing batch is rolled back alone and its heads restored), the partition rows'
// new heads, and one COMMIT. Statements of a batch go in libpq pipelines (two round trips).
//
// Read path. Reads take a pooled connection. Reads by run go straight to the rows (a run's
// events commit in seq order: its partition is locked while seqs are drawn); global reads and
// last_seq() stop at the watermark (every seq <= it belongs to a finished transaction).
//
// Connections are bounded by Options::pool_size; a lost connection is dropped from the pool and
// the next call reconnects. A COMMIT whose outcome is unknown (the connection died during it) is
// resolved by looking up one of the group's event ids on a fresh connection.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include "storage/log_core.h"
#include "storage/pg_conn.h"
#include "storage/storage.h"

namespace venture::storage {
namespace {

using internal::PartitionHead;
using internal::PgConn;
using internal::PgParam;
using internal::PgParams;
using internal::PgQuery;
using internal::PgResult;

// Bounds of this store. TODO(#5): move to base/limits.h with the other storage bounds.
constexpr int kPartitionsMax = 4096;
constexpr std::size_t kPoolSizeMax = 64;
constexpr int64_t kVerifyPageEvents = 1000;

// Advisory lock keys (two-int form; 0x76656e74 is "vent"). kLogLock: shared by every append
// transaction, exclusive for the watermark. kMigrateLock: one process migrates at a time.
constexpr const char* kLogLockShared = "SELECT pg_advisory_xact_lock_shared(1986358900, 1)";
constexpr const char* kLogLockExclusive = "SELECT pg_advisory_xact_lock(1986358900, 1)";
constexpr const char* kMigrateLock = "SELECT pg_advisory_lock(1986358900, 2)";
constexpr const char* kMigrateUnlock = "SELECT pg_advisory_unlock(1986358900, 2)";

struct Migration {
  int64_t version;
  const char* sql;
};

// Forward-only, the versions of SQLite's (same tables and columns), plus the partitioned log:
// events.part, the partitions rows, log_meta and the event_seq sequence.
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE SEQUENCE event_seq;
CREATE TABLE log_meta (id INT PRIMARY KEY CHECK (id = 1), partitions INT NOT NULL);
CREATE TABLE partitions (part INT PRIMARY KEY, head_seq BIGINT NOT NULL, head_hash TEXT NOT NULL,
  epoch BIGINT NOT NULL, last_cp_seq BIGINT NOT NULL);
CREATE TABLE events (seq BIGINT PRIMARY KEY, part INT NOT NULL, id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL, time_ms BIGINT NOT NULL, run TEXT NOT NULL, node TEXT NOT NULL,
  data TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL, epoch BIGINT NOT NULL DEFAULT 0);
CREATE INDEX events_part_seq ON events (part, seq);
CREATE INDEX events_run_seq ON events (run, seq);
CREATE TABLE blobs (hash TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE runs (id TEXT PRIMARY KEY, workflow TEXT NOT NULL, version TEXT NOT NULL,
  status TEXT NOT NULL, created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, inputs TEXT,
  output TEXT, error TEXT, replay_of TEXT NOT NULL, last_seq BIGINT NOT NULL);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_workflow ON runs (workflow);
CREATE INDEX runs_created ON runs (created_ms, id);
CREATE TABLE run_nodes (run TEXT NOT NULL, node TEXT NOT NULL, status TEXT NOT NULL,
  outcome TEXT NOT NULL, attempts BIGINT NOT NULL, output TEXT, error TEXT, started_ms BIGINT,
  finished_ms BIGINT, PRIMARY KEY (run, node));
CREATE TABLE workflow_versions (name TEXT NOT NULL, version TEXT NOT NULL,
  definition TEXT NOT NULL, created_ms BIGINT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE tags (name TEXT NOT NULL, tag TEXT NOT NULL, version TEXT NOT NULL,
  PRIMARY KEY (name, tag));
CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, body_hash TEXT NOT NULL, run TEXT NOT NULL);
CREATE TABLE snapshots (run TEXT PRIMARY KEY, seq BIGINT NOT NULL, state TEXT NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql"},
    {2, R"sql(
CREATE TABLE tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
  hash TEXT NOT NULL, created_ms BIGINT NOT NULL, revoked BIGINT NOT NULL, revoked_ms BIGINT);
CREATE INDEX tokens_hash ON tokens (hash);
CREATE INDEX tokens_created ON tokens (created_ms, id);
CREATE TABLE patches (id TEXT PRIMARY KEY, run TEXT NOT NULL, status TEXT NOT NULL,
  ops TEXT, reason TEXT NOT NULL, proposed_by TEXT NOT NULL, created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL, decided_by TEXT NOT NULL, decision_reason TEXT NOT NULL,
  version TEXT NOT NULL, error TEXT);
CREATE INDEX patches_run ON patches (run, created_ms, id);
)sql"},
    {3, R"sql(
CREATE TABLE approvals (id TEXT PRIMARY KEY, run TEXT NOT NULL, node TEXT NOT NULL,
  item BIGINT NOT NULL, iteration BIGINT NOT NULL, status TEXT NOT NULL,
  created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, due_ms BIGINT, request TEXT,
  decisions TEXT);
CREATE INDEX approvals_created ON approvals (created_ms, id);
CREATE INDEX approvals_status ON approvals (status, created_ms, id);
CREATE INDEX approvals_run ON approvals (run, created_ms, id);
)sql"},
};

constexpr const char* kEventColumns = "seq, id, type, time_ms, run, node, data, prev, hash";
constexpr const char* kTokenColumns = "id, name, role, hash, created_ms, revoked, revoked_ms";
constexpr const char* kPatchColumns =
    "id, run, status, ops, reason, proposed_by, created_ms, updated_ms, decided_by, "
    "decision_reason, version, error";
constexpr const char* kApprovalColumns =
    "id, run, node, item, iteration, status, created_ms, updated_ms, due_ms, request, decisions";
constexpr const char* kRunColumns =
    "id, workflow, version, status, created_ms, updated_ms, inputs, output, error, replay_of, "
    "last_seq";

// ---- parameters and rows ----

PgParam num(int64_t v) { return std::to_string(v); }
PgParam ms(Time t) { return std::to_string(to_unix_ms(t)); }
PgParam opt_ms(const std::optional<Time>& t) { return t ? ms(*t) : PgParam(); }
// JSON column: null <-> SQL NULL, otherwise compact JSON text.
PgParam json_param(const json::value& v) {
  return v.is_null() ? PgParam() : PgParam(base::compact_json(v));
}

// A statement built piece by piece, numbering its parameters ($1, $2, …) as they are added.
struct Sql {
  std::string text;
  PgParams params;
  std::string add(PgParam v) {
    params.push_back(std::move(v));
    return "$" + std::to_string(params.size());
  }
};

Result<json::value> json_col(const PgResult& r, int row, int col) {
  if (r.is_null(row, col)) {
    return json::value();
  }
  auto v = base::parse_json(r.text(row, col));
  if (!v) {
    return data_loss_error("undecodable JSON column: " + v.error().message);
  }
  return std::move(*v);
}

Result<std::optional<Time>> opt_time_col(const PgResult& r, int row, int col) {
  if (r.is_null(row, col)) {
    return std::optional<Time>();
  }
  VENTURE_ASSIGN_OR_RETURN(int64_t v, r.int64(row, col));
  return std::optional<Time>(from_unix_ms(v));
}

Result<Time> time_col(const PgResult& r, int row, int col) {
  VENTURE_ASSIGN_OR_RETURN(int64_t v, r.int64(row, col));
  return from_unix_ms(v);
}

// The event in row `row` (kEventColumns). kDataLoss when it does not decode.
Result<Event> event_from_row(const PgResult& r, int row) {
  Event e;
  VENTURE_ASSIGN_OR_RETURN(e.seq, r.int64(row, 0));
  e.id = r.text(row, 1);
  e.type = r.text(row, 2);
  VENTURE_ASSIGN_OR_RETURN(e.time, time_col(r, row, 3));
  e.run = r.text(row, 4);
  e.node = r.text(row, 5);
  auto data = base::parse_json(r.text(row, 6));
  if (!data || !data->is_object()) {
    return data_loss_error("event " + std::to_string(e.seq) + ": data is not a JSON object");
  }
  e.data = std::move(*data);
  e.prev = r.text(row, 7);
  e.hash = r.text(row, 8);
  return e;
}

Result<RunRow> run_from_row(const PgResult& r, int row) {
  RunRow x;
  x.id = r.text(row, 0);
  x.workflow = r.text(row, 1);
  x.version = r.text(row, 2);
  x.status = r.text(row, 3);
  VENTURE_ASSIGN_OR_RETURN(x.created, time_col(r, row, 4));
  VENTURE_ASSIGN_OR_RETURN(x.updated, time_col(r, row, 5));
  VENTURE_ASSIGN_OR_RETURN(x.inputs, json_col(r, row, 6));
  VENTURE_ASSIGN_OR_RETURN(x.output, json_col(r, row, 7));
  VENTURE_ASSIGN_OR_RETURN(x.error, json_col(r, row, 8));
  x.replay_of = r.text(row, 9);
  VENTURE_ASSIGN_OR_RETURN(x.last_seq, r.int64(row, 10));
  return x;
}

Result<TokenRow> token_from_row(const PgResult& r, int row) {
  TokenRow t;
  t.id = r.text(row, 0);
  t.name = r.text(row, 1);
  t.role = r.text(row, 2);
  t.hash = r.text(row, 3);
  VENTURE_ASSIGN_OR_RETURN(t.created, time_col(r, row, 4));
  VENTURE_ASSIGN_OR_RETURN(const int64_t revoked, r.int64(row, 5));
  t.revoked = revoked != 0;
  VENTURE_ASSIGN_OR_RETURN(t.revoked_at, opt_time_col(r, row, 6));
  return t;
}

Result<PatchRow> patch_from_row(const PgResult& r, int row) {
  PatchRow p;
  p.id = r.text(row, 0);
  p.run = r.text(row, 1);
  p.status = r.text(row, 2);
  VENTURE_ASSIGN_OR_RETURN(p.ops, json_col(r, row, 3));
  p.reason = r.text(row, 4);
  p.proposed_by = r.text(row, 5);
  VENTURE_ASSIGN_OR_RETURN(p.created, time_col(r, row, 6));
  VENTURE_ASSIGN_OR_RETURN(p.updated, time_col(r, row, 7));
  p.decided_by = r.text(row, 8);
  p.decision_reason = r.text(row, 9);
  p.version = r.text(row, 10);
  VENTURE_ASSIGN_OR_RETURN(p.error, json_col(r, row, 11));
  return p;
}

Result<ApprovalRow> approval_from_row(const PgResult& r, int row) {
  ApprovalRow a;
  a.id = r.text(row, 0);
  a.run = r.text(row, 1);
  a.node = r.text(row, 2);
  VENTURE_ASSIGN_OR_RETURN(a.index, r.int64(row, 3));
  VENTURE_ASSIGN_OR_RETURN(a.iteration, r.int64(row, 4));
  a.status = r.text(row, 5);
  VENTURE_ASSIGN_OR_RETURN(a.created, time_col(r, row, 6));
  VENTURE_ASSIGN_OR_RETURN(a.updated, time_col(r, row, 7));
  VENTURE_ASSIGN_OR_RETURN(a.due, opt_time_col(r, row, 8));
  VENTURE_ASSIGN_OR_RETURN(a.request, json_col(r, row, 9));
  VENTURE_ASSIGN_OR_RETURN(a.decisions, json_col(r, row, 10));
  return a;
}

// Decodes every row with f(result, row).
template <class T, class F>
Result<std::vector<T>> rows_of(const PgResult& r, F f) {
  std::vector<T> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    VENTURE_ASSIGN_OR_RETURN(T x, f(r, i));
    out.push_back(std::move(x));
  }
  return out;
}

// The first column of every row, as text.
std::vector<std::string> first_column(const PgResult& r) {
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(r.text(i, 0));
  }
  return out;
}

std::string int_array(const std::set<int>& values) {
  std::string out = "{";
  for (int v : values) {
    out += (out.size() > 1 ? "," : "") + std::to_string(v);
  }
  return out + "}";
}

// ---- projection rows as statements ----

// `fences`: the epoch each event's partition was fenced at by its append (0: not fenced), kept
// with the event (outside the hash) so the log shows which owner wrote what.
void add_event_rows(const internal::Sealed& sealed, int partitions,
                    const std::vector<Fence>& fences, std::vector<PgQuery>& q) {
  for (const internal::Blob& blob : sealed.blobs) {
    q.push_back(
        PgQuery{"INSERT INTO blobs (hash, data) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                {blob.hash, blob.payload},
                "blob " + blob.hash});
  }
  for (std::size_t i = 0; i < sealed.stored.size(); ++i) {
    const Event& e = sealed.stored[i];
    const int part = partition_of(e.run, partitions);
    int64_t epoch = 0;
    for (const Fence& f : fences) {
      if (f.partition == part && !e.run.empty()) epoch = f.epoch;
    }
    q.push_back(PgQuery{std::string("INSERT INTO events (part, epoch, ") + kEventColumns +
                            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        {num(part), num(epoch), num(e.seq), e.id, e.type, ms(e.time), e.run, e.node,
                         sealed.stored_text[i], e.prev, e.hash},
                        "event " + e.id});
  }
}

void add_run_rows(const Batch& batch, const AppendResult& result, std::vector<PgQuery>& q) {
  std::unordered_map<std::string_view, int64_t> last_seq;
  for (const Event& e : result.events) {
    if (!e.run.empty()) {
      last_seq[e.run] = e.seq;
    }
  }
  for (const RunRow& r : batch.runs) {
    auto it = last_seq.find(r.id);
    q.push_back(PgQuery{std::string("INSERT INTO runs (") + kRunColumns + R"sql()
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO UPDATE SET workflow = excluded.workflow, version = excluded.version,
  status = excluded.status, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
  inputs = excluded.inputs, output = excluded.output, error = excluded.error,
  replay_of = excluded.replay_of, last_seq = GREATEST(excluded.last_seq, runs.last_seq))sql",
                        {r.id, r.workflow, r.version, r.status, ms(r.created), ms(r.updated),
                         json_param(r.inputs), json_param(r.output), json_param(r.error),
                         r.replay_of, num(it != last_seq.end() ? it->second : 0)},
                        "run " + r.id.substr(0, 80)});
  }
}

void add_other_rows(const Batch& batch, std::vector<PgQuery>& q) {
  for (const NodeRow& n : batch.nodes) {
    q.push_back(PgQuery{R"sql(INSERT INTO run_nodes
(run, node, status, outcome, attempts, output, error, started_ms, finished_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (run, node) DO UPDATE SET status = excluded.status, outcome = excluded.outcome,
  attempts = excluded.attempts, output = excluded.output, error = excluded.error,
  started_ms = excluded.started_ms, finished_ms = excluded.finished_ms)sql",
                        {n.run, n.node, n.status, n.outcome, num(n.attempts), json_param(n.output),
                         json_param(n.error), opt_ms(n.started), opt_ms(n.finished)},
                        "node " + n.node.substr(0, 80)});
  }
  for (const WorkflowVersionRow& w : batch.workflow_versions) {
    q.push_back(PgQuery{R"sql(INSERT INTO workflow_versions (name, version, definition, created_ms)
VALUES ($1, $2, $3, $4) ON CONFLICT (name, version) DO NOTHING)sql",
                        {w.name, w.version, base::compact_json(w.definition), ms(w.created)},
                        "workflow version"});
  }
  for (const TagRow& t : batch.tags) {
    q.push_back(PgQuery{R"sql(INSERT INTO tags (name, tag, version) VALUES ($1, $2, $3)
ON CONFLICT (name, tag) DO UPDATE SET version = excluded.version)sql",
                        {t.name, t.tag, t.version},
                        "tag"});
  }
  for (const Snapshot& s : batch.snapshots) {
    q.push_back(PgQuery{R"sql(INSERT INTO snapshots (run, seq, state) VALUES ($1, $2, $3)
ON CONFLICT (run) DO UPDATE SET seq = excluded.seq, state = excluded.state
WHERE excluded.seq >= snapshots.seq)sql",
                        {s.run, num(s.seq), base::compact_json(s.state)},
                        "snapshot"});
  }
  for (const auto& [key, value] : batch.settings) {
    q.push_back(PgQuery{R"sql(INSERT INTO settings (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = excluded.value)sql",
                        {key, value},
                        "setting"});
  }
}

void add_access_rows(const Batch& batch, std::vector<PgQuery>& q) {
  for (const TokenRow& t : batch.tokens) {
    q.push_back(PgQuery{
        std::string("INSERT INTO tokens (") + kTokenColumns + R"sql()
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, hash = excluded.hash,
  created_ms = excluded.created_ms, revoked = excluded.revoked,
  revoked_ms = excluded.revoked_ms)sql",
        {t.id, t.name, t.role, t.hash, ms(t.created), num(t.revoked ? 1 : 0), opt_ms(t.revoked_at)},
        "token"});
  }
  for (const PatchRow& p : batch.patches) {
    q.push_back(
        PgQuery{std::string("INSERT INTO patches (") + kPatchColumns + R"sql()
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (id) DO UPDATE SET run = excluded.run, status = excluded.status, ops = excluded.ops,
  reason = excluded.reason, proposed_by = excluded.proposed_by,
  created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
  decided_by = excluded.decided_by, decision_reason = excluded.decision_reason,
  version = excluded.version, error = excluded.error)sql",
                {p.id, p.run, p.status, json_param(p.ops), p.reason, p.proposed_by, ms(p.created),
                 ms(p.updated), p.decided_by, p.decision_reason, p.version, json_param(p.error)},
                "patch"});
  }
  for (const ApprovalRow& a : batch.approvals) {
    q.push_back(
        PgQuery{std::string("INSERT INTO approvals (") + kApprovalColumns + R"sql()
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO UPDATE SET run = excluded.run, node = excluded.node, item = excluded.item,
  iteration = excluded.iteration, status = excluded.status, created_ms = excluded.created_ms,
  updated_ms = excluded.updated_ms, due_ms = excluded.due_ms, request = excluded.request,
  decisions = excluded.decisions)sql",
                {a.id, a.run, a.node, num(a.index), num(a.iteration), a.status, ms(a.created),
                 ms(a.updated), opt_ms(a.due), json_param(a.request), json_param(a.decisions)},
                "approval"});
  }
}

// ---- the store ----

struct PendingAppend {
  Batch batch;
  bool force_checkpoint = false;
  std::size_t events = 0;
  bool done = false;  // guarded by PgStore::mu_
  Result<AppendResult> result = AppendResult{};
};

// The locked partition rows of one group transaction.
struct GroupState {
  std::map<int, PartitionHead> heads;  // of the locked partitions, advanced by each batch
  std::map<int, int64_t> epochs;
  int64_t last_cp_seq = 0;  // from partition 0's row, when locked
  bool checkpointed = false;
  bool commit_unknown = false;  // the connection died during COMMIT
};

class PgStore final : public Store, public internal::Introspect {
 public:
  PgStore(std::string url, Options options, base::Clock& clock, base::Random& random,
          int partitions, Time last_cp_time, std::unique_ptr<PgConn> first)
      : url_(std::move(url)),
        options_(std::move(options)),
        clock_(clock),
        random_(random),
        partitions_(partitions),
        leaders_max_(std::max<std::size_t>(1, options_.pool_size / 2)),
        last_cp_time_(last_cp_time) {
    idle_.push_back(std::move(first));
    open_ = 1;
  }

  Result<AppendResult> append(Batch batch) override;
  Result<std::vector<Event>> read_events(const EventFilter& filter) override;
  Result<int64_t> last_seq() override;
  Result<RunRow> get_run(const std::string& id) override;
  Result<RunPage> list_runs(const RunFilter& filter) override;
  Result<std::vector<std::string>> list_active_runs() override;
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
  Status fence_partition(int partition, int64_t epoch) override;
  int partitions() const override { return partitions_; }
  Status health() override;

  internal::StoreStats stats() override {
    std::lock_guard lock(mu_);
    return stats_;
  }
  void hold_writer(bool hold) override {
    {
      std::lock_guard lock(mu_);
      held_ = hold;
    }
    cv_.notify_all();
  }
  void wait_pending(std::size_t n) override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return queue_.size() >= n; });
  }

 private:
  Result<AppendResult> enqueue(PendingAppend& p);
  std::vector<PendingAppend*> take_group();
  void commit_group(const std::vector<PendingAppend*>& group);
  Status run_group(PgConn& conn, const std::vector<PendingAppend*>& group, bool checkpoint_due,
                   std::vector<Result<AppendResult>>& results, GroupState& state);
  Status lock_partitions(PgConn& conn, const std::set<int>& parts, GroupState& state);
  Result<AppendResult> write_one(PgConn& conn, PendingAppend& p, GroupState& state);
  Status write_checkpoint(PgConn& conn, GroupState& state);
  Result<std::vector<PartitionHead>> all_heads(PgConn& conn, const GroupState& state);
  Result<bool> uncovered(PgConn& conn, const std::vector<PartitionHead>& heads,
                         int64_t last_cp_seq);
  Result<bool> landed(const std::vector<PendingAppend*>& group,
                      const std::vector<Result<AppendResult>>& results);

  Result<std::unique_ptr<PgConn>> acquire();
  void release(std::unique_ptr<PgConn> conn);
  template <class F>
  auto with_conn(F f) -> decltype(f(std::declval<PgConn&>()));
  // SELECT columns FROM table WHERE id = $1, decoded by `from`; kNotFound names `what`.
  template <class Row, class F>
  Result<Row> get_by_id(const char* table, const char* columns, std::string_view what,
                        const std::string& id, F from);
  // Rows newest first (created_ms, id) with exact-match filters and the run-cursor paging.
  template <class Page, class Row, class F>
  Result<Page> page_newest_first(const char* table, const char* columns,
                                 const std::vector<std::pair<const char*, std::string>>& filters,
                                 const std::string& cursor, std::size_t limit, F from);
  Result<Event> resolve(PgConn& conn, Event e);
  Result<int64_t> watermark(PgConn& conn);
  Result<std::vector<Event>> query_events(PgConn& conn, const std::string& sql,
                                          const PgParams& params);
  Status verify_partition(PgConn& conn, internal::PartitionVerifier& v, const PartitionHead& row);
  Status verify_claims(PgConn& conn, internal::PartitionVerifier& v0);

  const std::string url_;
  const Options options_;
  base::Clock& clock_;
  base::Random& random_;
  const int partitions_;
  const std::size_t leaders_max_;  // groups in flight at once (each holds a connection)

  std::mutex seal_mu_;  // clock_, random_ and signing, shared by concurrent leaders

  std::mutex mu_;
  std::condition_variable cv_;  // a group finished, the hold changed, or an append was queued
  std::deque<PendingAppend*> queue_;
  std::size_t leaders_ = 0;
  bool held_ = false;
  int64_t events_since_cp_ = 0;  // appended by this process since its last checkpoint
  Time last_cp_time_;
  internal::StoreStats stats_;

  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<PgConn>> idle_;
  std::size_t open_ = 0;  // connections in idle_ or in use
};

// ---- pool ----

Result<std::unique_ptr<PgConn>> PgStore::acquire() {
  std::unique_lock lock(pool_mu_);
  const std::size_t bound = std::max<std::size_t>(1, options_.pool_size);
  pool_cv_.wait(lock, [&] { return !idle_.empty() || open_ < bound; });
  if (!idle_.empty()) {
    std::unique_ptr<PgConn> conn = std::move(idle_.back());
    idle_.pop_back();
    return conn;
  }
  ++open_;
  lock.unlock();
  auto conn = PgConn::connect(url_, options_.fsync);
  if (!conn) {
    std::lock_guard relock(pool_mu_);
    --open_;
    pool_cv_.notify_one();
    return conn.error();
  }
  return std::move(*conn);
}

void PgStore::release(std::unique_ptr<PgConn> conn) {
  std::vector<std::unique_ptr<PgConn>> dropped;
  {
    std::lock_guard lock(pool_mu_);
    if (conn->broken()) {
      // Lost: and the idle ones most likely with it (a server restart or failover ends every
      // session), so drop them all; the next acquire reconnects.
      dropped.swap(idle_);
      dropped.push_back(std::move(conn));
      open_ -= dropped.size();
    } else {
      idle_.push_back(std::move(conn));
    }
  }
  pool_cv_.notify_all();
}

// Reads are idempotent: one that fails because its (pooled, possibly stale) connection was lost
// runs once more on a fresh connection.
template <class F>
auto PgStore::with_conn(F f) -> decltype(f(std::declval<PgConn&>())) {
  VENTURE_ASSIGN_OR_RETURN(std::unique_ptr<PgConn> conn, acquire());
  auto result = f(*conn);
  const bool lost = !result && conn->broken();
  release(std::move(conn));
  if (lost) {
    VENTURE_ASSIGN_OR_RETURN(conn, acquire());
    result = f(*conn);
    release(std::move(conn));
  }
  return result;
}

template <class Row, class F>
Result<Row> PgStore::get_by_id(const char* table, const char* columns, std::string_view what,
                               const std::string& id, F from) {
  return with_conn([&](PgConn& c) -> Result<Row> {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r,
        c.query(std::string("SELECT ") + columns + " FROM " + table + " WHERE id = $1", {id}));
    if (r.rows() == 0) {
      return not_found_error(std::string(what) + " " + id.substr(0, 80) + " not found");
    }
    return from(r, 0);
  });
}

template <class Page, class Row, class F>
Result<Page> PgStore::page_newest_first(
    const char* table, const char* columns,
    const std::vector<std::pair<const char*, std::string>>& filters, const std::string& cursor,
    std::size_t limit, F from) {
  limit = std::clamp<std::size_t>(limit, 1, internal::kRunPageMax);
  Sql q;
  q.text = std::string("SELECT ") + columns + " FROM " + table + " WHERE TRUE";
  for (const auto& [column, value] : filters) {
    if (!value.empty()) q.text += std::string(" AND ") + column + " = " + q.add(value);
  }
  if (!cursor.empty()) {
    VENTURE_ASSIGN_OR_RETURN(const auto after, internal::decode_run_cursor(cursor));
    const std::string t = q.add(num(after.first));
    q.text += " AND (created_ms < " + t + " OR (created_ms = " + t + " AND id < " +
              q.add(after.second) + "))";
  }
  q.text +=
      " ORDER BY created_ms DESC, id DESC LIMIT " + q.add(num(static_cast<int64_t>(limit) + 1));
  return with_conn([&](PgConn& c) -> Result<Page> {
    VENTURE_ASSIGN_OR_RETURN(PgResult r, c.query(q.text, q.params));
    Page page;
    VENTURE_ASSIGN_OR_RETURN(page.items, rows_of<Row>(r, from));
    if (page.items.size() > limit) {
      page.items.pop_back();
      const Row& last = page.items.back();
      page.next_cursor = internal::encode_run_cursor(last.created, last.id);
    }
    return page;
  });
}

Status PgStore::health() {
  Status st = with_conn([](PgConn& c) -> Status { return c.exec("SELECT 1"); });
  if (!st) {
    return unavailable_error(st.error().message);
  }
  return ok();
}

// ---- write path ----

Result<AppendResult> PgStore::append(Batch batch) {
  PendingAppend p;
  p.events = batch.events.size();
  p.batch = std::move(batch);
  return enqueue(p);
}

Status PgStore::checkpoint() {
  PendingAppend p;
  p.force_checkpoint = true;
  VENTURE_ASSIGN_OR_RETURN(AppendResult r, enqueue(p));
  (void)r;
  return ok();
}

Result<AppendResult> PgStore::enqueue(PendingAppend& p) {
  std::unique_lock lock(mu_);
  if (queue_.size() >= limits::kPendingAppendsMax) {
    return resource_exhausted_error("storage: too many appends queued");
  }
  queue_.push_back(&p);
  cv_.notify_all();
  while (!p.done) {
    if (!held_ && leaders_ < leaders_max_ && !queue_.empty()) {
      ++leaders_;
      const std::vector<PendingAppend*> group = take_group();
      lock.unlock();
      commit_group(group);
      lock.lock();
      --leaders_;
      for (PendingAppend* g : group) {
        g->done = true;
      }
      cv_.notify_all();
      continue;
    }
    cv_.wait(lock);
  }
  return std::move(p.result);
}

// Under mu_: every queued batch up to kAppendBatchEventsMax events (at least one batch).
std::vector<PendingAppend*> PgStore::take_group() {
  std::vector<PendingAppend*> group;
  std::size_t events = 0;
  while (!queue_.empty() &&
         (group.empty() || events + queue_.front()->events <= limits::kAppendBatchEventsMax)) {
    events += queue_.front()->events;
    group.push_back(queue_.front());
    queue_.pop_front();
  }
  return group;
}

void PgStore::commit_group(const std::vector<PendingAppend*>& group) {
  std::size_t events = 0;
  bool force = false;
  for (const PendingAppend* p : group) {
    events += p->events;
    force = force || p->force_checkpoint;
  }
  bool due = force;
  {
    std::lock_guard lock(mu_);
    due = due || (events > 0 && (events_since_cp_ + static_cast<int64_t>(events) >=
                                     static_cast<int64_t>(options_.checkpoint_every_events) ||
                                 clock_.now() - last_cp_time_ >= options_.checkpoint_every));
  }
  std::vector<Result<AppendResult>> results;
  GroupState state;
  auto conn = acquire();
  Status st = conn ? run_group(**conn, group, due, results, state) : Status(conn.error());
  if (conn) {
    release(std::move(*conn));
  }
  if (!st && state.commit_unknown) {
    // The transaction may or may not have committed: look, rather than guess.
    auto did = landed(group, results);
    st = !did   ? Status(did.error())
         : *did ? ok()
                : Status(unavailable_error("postgres: lost the connection during COMMIT; nothing "
                                           "was written"));
    if (!st) {
      state.checkpointed = false;
    }
  }
  int64_t committed = 0;
  int64_t committed_events = 0;
  for (std::size_t i = 0; i < group.size(); ++i) {
    if (!st) {
      group[i]->result = st.error();
      continue;
    }
    if (results[i]) {
      ++committed;
      committed_events += static_cast<int64_t>(results[i]->events.size());
    }
    group[i]->result = std::move(results[i]);
  }
  std::lock_guard lock(mu_);
  if (st) {
    stats_.appends += committed;
    ++stats_.transactions;
    events_since_cp_ += committed_events;
    if (state.checkpointed) {
      events_since_cp_ = 0;
      last_cp_time_ = clock_.now();
    }
  }
}

Status PgStore::lock_partitions(PgConn& conn, const std::set<int>& parts, GroupState& state) {
  std::vector<PgQuery> q = {PgQuery{"BEGIN", {}, "begin"}, PgQuery{kLogLockShared, {}, "log lock"}};
  if (!parts.empty()) {
    q.push_back(
        PgQuery{"SELECT part, head_seq, head_hash, epoch, last_cp_seq FROM partitions "
                "WHERE part = ANY($1::int[]) ORDER BY part FOR UPDATE",
                {int_array(parts)},
                "lock partitions"});
  }
  VENTURE_ASSIGN_OR_RETURN(std::vector<PgResult> r, conn.pipeline(q));
  if (parts.empty()) {
    return ok();
  }
  const PgResult& rows = r.back();
  if (rows.rows() != static_cast<int>(parts.size())) {
    return data_loss_error("postgres: partition rows are missing");
  }
  for (int i = 0; i < rows.rows(); ++i) {
    VENTURE_ASSIGN_OR_RETURN(const int64_t part, rows.int64(i, 0));
    VENTURE_ASSIGN_OR_RETURN(const int64_t seq, rows.int64(i, 1));
    VENTURE_ASSIGN_OR_RETURN(const int64_t epoch, rows.int64(i, 3));
    VENTURE_ASSIGN_OR_RETURN(const int64_t last_cp, rows.int64(i, 4));
    const int p = static_cast<int>(part);
    state.heads[p] = PartitionHead{seq, rows.text(i, 2)};
    state.epochs[p] = epoch;
    if (p == 0) {
      state.last_cp_seq = last_cp;
    }
  }
  return ok();
}

Status PgStore::run_group(PgConn& conn, const std::vector<PendingAppend*>& group,
                          bool checkpoint_due, std::vector<Result<AppendResult>>& results,
                          GroupState& state) {
  std::set<int> parts;
  for (const PendingAppend* p : group) {
    for (const Event& e : p->batch.events) {
      parts.insert(partition_of(e.run, partitions_));
    }
    for (const Fence& f : p->batch.fences) {
      if (internal::check_partition(f.partition, partitions_)) {
        parts.insert(f.partition);
      }
    }
  }
  if (checkpoint_due) {
    parts.insert(0);
  }
  results.assign(group.size(), AppendResult{});
  auto abort = [&conn](const Error& e) -> Status {
    (void)conn.exec("ROLLBACK");
    return e;
  };
  if (Status st = lock_partitions(conn, parts, state); !st) {
    return abort(st.error());
  }
  const std::map<int, PartitionHead> initial = state.heads;
  for (std::size_t i = 0; i < group.size(); ++i) {
    if (group[i]->force_checkpoint) {
      continue;
    }
    results[i] = write_one(conn, *group[i], state);
    if (!results[i] && conn.broken()) {
      return abort(results[i].error());
    }
  }
  if (checkpoint_due) {
    if (Status st = write_checkpoint(conn, state); !st) {
      if (conn.broken()) {
        return abort(st.error());
      }
      for (std::size_t i = 0; i < group.size(); ++i) {
        if (group[i]->force_checkpoint) {
          results[i] = st.error();
        }
      }
    }
  }
  std::vector<PgQuery> updates;
  for (const auto& [part, head] : state.heads) {
    if (part == 0 && state.checkpointed) {
      updates.push_back(PgQuery{
          "UPDATE partitions SET head_seq = $2, head_hash = $3, last_cp_seq = $4 WHERE part = $1",
          {num(part), num(head.seq), head.hash, num(state.last_cp_seq)},
          "partition head"});
    } else if (head.seq != initial.at(part).seq) {
      updates.push_back(
          PgQuery{"UPDATE partitions SET head_seq = $2, head_hash = $3 WHERE part = $1",
                  {num(part), num(head.seq), head.hash},
                  "partition head"});
    }
  }
  if (auto r = conn.pipeline(updates); !r) {
    return abort(r.error());
  }
  if (Status st = conn.commit(); !st) {
    state.commit_unknown = conn.broken();
    if (!state.commit_unknown) {
      (void)conn.exec("ROLLBACK");
    }
    return unavailable_error(st.error().message);  // nothing was written: retry
  }
  return ok();
}

Result<AppendResult> PgStore::write_one(PgConn& conn, PendingAppend& p, GroupState& state) {
  Batch& b = p.batch;
  for (const Fence& f : b.fences) {
    VENTURE_RETURN_IF_ERROR(internal::check_partition(f.partition, partitions_));
    const int64_t epoch = state.epochs.at(f.partition);
    if (epoch != f.epoch) {
      return failed_precondition_error("partition " + std::to_string(f.partition) +
                                       " is at epoch " + std::to_string(epoch) +
                                       ", the append is fenced at " + std::to_string(f.epoch));
    }
  }
  for (const Event& e : b.events) {  // refused before a seq is drawn (PgConn would refuse later)
    if ((e.id + e.type + e.run + e.node).find('\0') != std::string::npos) {
      return invalid_argument_error("event " + e.type.substr(0, 80) + ": text holds a NUL byte");
    }
  }
  std::vector<Event> events = std::move(b.events);
  std::vector<std::string> encoded;
  {
    std::lock_guard lock(seal_mu_);
    const internal::SealContext ctx{&options_, &clock_, &random_};
    VENTURE_ASSIGN_OR_RETURN(encoded, internal::validate_events(events, ctx));
  }
  // First round trip: the savepoint, the idempotency keys (a duplicate stops here, before any
  // seq is drawn) and the seqs.
  std::vector<PgQuery> first = {PgQuery{"SAVEPOINT batch", {}, "savepoint"}};
  for (const IdempotencyRow& k : b.idempotency) {
    first.push_back(
        PgQuery{"INSERT INTO idempotency_keys (key, body_hash, run) VALUES ($1, $2, $3)",
                {k.key, k.body_hash, k.run},
                "idempotency key " + k.key.substr(0, 200)});
  }
  if (!events.empty()) {
    first.push_back(PgQuery{"SELECT nextval('event_seq') FROM generate_series(1, $1::int)",
                            {num(static_cast<int64_t>(events.size()))},
                            "next seqs"});
  }
  auto undo = [&conn](const Error& e) -> Error {
    (void)conn.exec("ROLLBACK TO SAVEPOINT batch; RELEASE SAVEPOINT batch");
    return e;
  };
  auto r1 = conn.pipeline(first);
  if (!r1) {
    return undo(r1.error());
  }
  std::vector<int64_t> seqs;
  if (!events.empty()) {
    const PgResult& rows = r1->back();
    for (int i = 0; i < rows.rows(); ++i) {
      auto seq = rows.int64(i, 0);
      if (!seq) {
        return undo(seq.error());
      }
      seqs.push_back(*seq);
    }
    if (seqs.size() != events.size()) {
      return undo(internal_error("postgres: nextval returned the wrong number of seqs"));
    }
    std::sort(seqs.begin(), seqs.end());
  }
  const std::map<int, PartitionHead> before = state.heads;
  auto sealed = internal::seal_partitioned(std::move(events), std::move(encoded), seqs, partitions_,
                                           state.heads);
  if (!sealed) {
    return undo(sealed.error());
  }
  // Second round trip: blobs, events, projections, release.
  std::vector<PgQuery> second;
  add_event_rows(*sealed, partitions_, b.fences, second);
  add_run_rows(b, sealed->result, second);
  add_other_rows(b, second);
  add_access_rows(b, second);
  second.push_back(PgQuery{"RELEASE SAVEPOINT batch", {}, "release"});
  if (auto r2 = conn.pipeline(second); !r2) {
    state.heads = before;
    return undo(r2.error());
  }
  return std::move(sealed->result);
}

Result<bool> PgStore::uncovered(PgConn& conn, const std::vector<PartitionHead>& heads,
                                int64_t last_cp_seq) {
  if (last_cp_seq == 0) {
    return std::any_of(heads.begin(), heads.end(),
                       [](const PartitionHead& h) { return h.seq != 0; });
  }
  if (heads[0].seq != last_cp_seq) {
    return true;
  }
  VENTURE_ASSIGN_OR_RETURN(
      std::vector<Event> cp,
      query_events(conn, std::string("SELECT ") + kEventColumns + " FROM events WHERE seq = $1",
                   {num(last_cp_seq)}));
  if (cp.empty()) {
    return true;  // a new checkpoint is the safe answer; verify reports the damage
  }
  auto claims = internal::check_heads_checkpoint(cp.front());
  if (!claims || claims->size() != heads.size()) {
    return true;
  }
  for (std::size_t p = 1; p < heads.size(); ++p) {
    if ((*claims)[p].seq != heads[p].seq) {
      return true;
    }
  }
  return false;
}

// Every partition's head as this group sees it: the committed rows, overlaid with the heads of
// the partitions this group has locked and advanced (not yet written back).
Result<std::vector<PartitionHead>> PgStore::all_heads(PgConn& conn, const GroupState& state) {
  VENTURE_ASSIGN_OR_RETURN(
      PgResult rows,
      conn.query("SELECT part, head_seq, head_hash FROM partitions ORDER BY part", {}));
  if (rows.rows() != partitions_) {
    return data_loss_error("postgres: partition rows are missing");
  }
  std::vector<PartitionHead> heads(static_cast<std::size_t>(partitions_));
  for (int i = 0; i < rows.rows(); ++i) {
    VENTURE_ASSIGN_OR_RETURN(const int64_t part, rows.int64(i, 0));
    VENTURE_ASSIGN_OR_RETURN(const int64_t seq, rows.int64(i, 1));
    if (part != i) {
      return data_loss_error("postgres: partition rows are not 0.." +
                             std::to_string(partitions_ - 1));
    }
    heads[static_cast<std::size_t>(i)] = PartitionHead{seq, rows.text(i, 2)};
  }
  for (const auto& [part, head] : state.heads) {
    heads[static_cast<std::size_t>(part)] = head;
  }
  return heads;
}

// Inside SAVEPOINT cp from the first statement, so that any failure leaves the group's
// transaction usable.
Status PgStore::write_checkpoint(PgConn& conn, GroupState& state) {
  VENTURE_RETURN_IF_ERROR(conn.exec("SAVEPOINT cp"));
  auto undo = [&conn](const Error& e) -> Error {
    (void)conn.exec("ROLLBACK TO SAVEPOINT cp; RELEASE SAVEPOINT cp");
    return e;
  };
  auto heads = all_heads(conn, state);
  if (!heads) {
    return undo(heads.error());
  }
  auto due = uncovered(conn, *heads, state.last_cp_seq);
  if (!due || !*due) {
    return due ? Status(conn.exec("RELEASE SAVEPOINT cp")) : Status(undo(due.error()));
  }
  auto seq = conn.query("SELECT nextval('event_seq')", {});
  auto value = seq ? seq->int64(0, 0) : Result<int64_t>(seq.error());
  if (!value || *value <= (*heads)[0].seq) {
    return undo(value ? data_loss_error("postgres: event_seq is behind partition 0's head")
                      : value.error());
  }
  internal::Sealed sealed;
  {
    std::lock_guard lock(seal_mu_);
    const internal::SealContext ctx{&options_, &clock_, &random_};
    sealed.stored.push_back(internal::make_heads_checkpoint(*heads, *value, (*heads)[0].hash, ctx));
  }
  sealed.stored_text.push_back(base::compact_json(sealed.stored.front().data));
  std::vector<PgQuery> q;
  add_event_rows(sealed, partitions_, {}, q);
  q.push_back(PgQuery{"RELEASE SAVEPOINT cp", {}, "release"});
  if (auto r = conn.pipeline(q); !r) {
    return undo(r.error());
  }
  state.heads[0] = PartitionHead{*value, sealed.stored.front().hash};
  state.last_cp_seq = *value;
  state.checkpointed = true;
  return ok();
}

Result<bool> PgStore::landed(const std::vector<PendingAppend*>& group,
                             const std::vector<Result<AppendResult>>& results) {
  std::string id;
  for (std::size_t i = 0; i < group.size() && i < results.size() && id.empty(); ++i) {
    if (results[i] && !results[i]->events.empty()) {
      id = results[i]->events.front().id;
    }
  }
  if (id.empty()) {
    return unavailable_error(
        "postgres: the connection was lost during COMMIT of a group without events; its outcome "
        "is unknown");
  }
  return with_conn([&](PgConn& c) -> Result<bool> {
    VENTURE_ASSIGN_OR_RETURN(PgResult r, c.query("SELECT 1 FROM events WHERE id = $1", {id}));
    return r.rows() > 0;
  });
}

Status PgStore::fence_partition(int partition, int64_t epoch) {
  VENTURE_RETURN_IF_ERROR(internal::check_partition(partition, partitions_));
  return with_conn([&](PgConn& c) -> Status {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r, c.query("UPDATE partitions SET epoch = $2 WHERE part = $1 AND epoch <= $2 "
                            "RETURNING epoch",
                            {num(partition), num(epoch)}));
    if (r.rows() == 1) {
      return ok();
    }
    VENTURE_ASSIGN_OR_RETURN(
        PgResult now, c.query("SELECT epoch FROM partitions WHERE part = $1", {num(partition)}));
    if (now.rows() != 1) {
      return data_loss_error("postgres: partition row " + std::to_string(partition) +
                             " is missing");
    }
    return failed_precondition_error("partition " + std::to_string(partition) + " is at epoch " +
                                     now.text(0, 0) + ", newer than " + std::to_string(epoch));
  });
}

// ---- read path ----

Result<std::vector<Event>> PgStore::query_events(PgConn& conn, const std::string& sql,
                                                 const PgParams& params) {
  VENTURE_ASSIGN_OR_RETURN(PgResult r, conn.query(sql, params));
  return rows_of<Event>(r, event_from_row);
}

Result<Event> PgStore::resolve(PgConn& conn, Event e) {
  const std::optional<internal::BlobRef> ref = internal::as_blob_ref(e.data);
  if (!ref) {
    return e;
  }
  VENTURE_ASSIGN_OR_RETURN(PgResult r,
                           conn.query("SELECT data FROM blobs WHERE hash = $1", {ref->hash}));
  if (r.rows() == 0) {
    return data_loss_error("event " + std::to_string(e.seq) + ": blob " + ref->hash + " missing");
  }
  VENTURE_ASSIGN_OR_RETURN(e.data, internal::decode_blob(*ref, r.text(0, 0)));
  return e;
}

// Takes the log lock exclusively in its own short transaction: every append transaction that
// drew a seq has then finished, so every seq <= the sequence's value is committed or gone.
Result<int64_t> PgStore::watermark(PgConn& conn) {
  auto r = conn.pipeline({PgQuery{"BEGIN", {}, "begin"}, PgQuery{kLogLockExclusive, {}, "lock"},
                          PgQuery{"SELECT last_value, is_called FROM event_seq", {}, "seq"},
                          PgQuery{"COMMIT", {}, "commit"}});
  if (!r) {
    (void)conn.exec("ROLLBACK");
    return r.error();
  }
  const PgResult& seq = (*r)[2];
  if (seq.rows() != 1) {
    return data_loss_error("postgres: event_seq is unreadable");
  }
  VENTURE_ASSIGN_OR_RETURN(const int64_t last, seq.int64(0, 0));
  return seq.text(0, 1) == "t" ? last : 0;
}

Result<int64_t> PgStore::last_seq() {
  return with_conn([&](PgConn& c) { return watermark(c); });
}

Result<std::vector<Event>> PgStore::read_events(const EventFilter& filter) {
  const std::size_t limit = std::min(filter.limit, limits::kReadPageMax);
  return with_conn([&](PgConn& c) -> Result<std::vector<Event>> {
    Sql q;
    q.text = std::string("SELECT ") + kEventColumns + " FROM events WHERE seq > " +
             q.add(num(std::max<int64_t>(filter.after_seq, 0)));
    if (!filter.run.empty()) {
      q.text += " AND run = " + q.add(filter.run);  // one partition: commits in seq order
    } else {
      VENTURE_ASSIGN_OR_RETURN(const int64_t w, watermark(c));
      q.text += " AND seq <= " + q.add(num(w));
    }
    if (!filter.type_prefix.empty()) {
      q.text += " AND starts_with(type, " + q.add(filter.type_prefix) + ")";
    }
    q.text += " ORDER BY seq LIMIT " + q.add(num(static_cast<int64_t>(limit)));
    VENTURE_ASSIGN_OR_RETURN(std::vector<Event> events, query_events(c, q.text, q.params));
    for (Event& e : events) {
      VENTURE_ASSIGN_OR_RETURN(e, resolve(c, std::move(e)));
    }
    return events;
  });
}

Result<RunRow> PgStore::get_run(const std::string& id) {
  return get_by_id<RunRow>("runs", kRunColumns, "run", id, run_from_row);
}

Result<RunPage> PgStore::list_runs(const RunFilter& filter) {
  return page_newest_first<RunPage, RunRow>(
      "runs", kRunColumns, {{"status", filter.status}, {"workflow", filter.workflow}},
      filter.cursor, filter.limit, run_from_row);
}

Result<std::vector<std::string>> PgStore::list_active_runs() {
  return with_conn([&](PgConn& c) -> Result<std::vector<std::string>> {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r,
        c.query("SELECT id FROM runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled') "
                "ORDER BY id",
                {}));
    return first_column(r);
  });
}

Result<std::vector<NodeRow>> PgStore::get_nodes(const std::string& run) {
  return with_conn([&](PgConn& c) -> Result<std::vector<NodeRow>> {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r,
        c.query("SELECT run, node, status, outcome, attempts, output, error, started_ms, "
                "finished_ms FROM run_nodes WHERE run = $1 ORDER BY node",
                {run}));
    return rows_of<NodeRow>(r, [](const PgResult& x, int i) -> Result<NodeRow> {
      NodeRow n;
      n.run = x.text(i, 0);
      n.node = x.text(i, 1);
      n.status = x.text(i, 2);
      n.outcome = x.text(i, 3);
      VENTURE_ASSIGN_OR_RETURN(n.attempts, x.int64(i, 4));
      VENTURE_ASSIGN_OR_RETURN(n.output, json_col(x, i, 5));
      VENTURE_ASSIGN_OR_RETURN(n.error, json_col(x, i, 6));
      VENTURE_ASSIGN_OR_RETURN(n.started, opt_time_col(x, i, 7));
      VENTURE_ASSIGN_OR_RETURN(n.finished, opt_time_col(x, i, 8));
      return n;
    });
  });
}

Result<WorkflowVersionRow> version_from_row(const PgResult& r, int i) {
  WorkflowVersionRow w;
  w.name = r.text(i, 0);
  w.version = r.text(i, 1);
  VENTURE_ASSIGN_OR_RETURN(w.definition, json_col(r, i, 2));
  VENTURE_ASSIGN_OR_RETURN(w.created, time_col(r, i, 3));
  return w;
}

Result<WorkflowVersionRow> PgStore::get_workflow_version(const std::string& name,
                                                         const std::string& version) {
  return with_conn([&](PgConn& c) -> Result<WorkflowVersionRow> {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r, c.query("SELECT name, version, definition, created_ms FROM workflow_versions "
                            "WHERE name = $1 AND version = $2",
                            {name, version}));
    if (r.rows() == 0) {
      return not_found_error("workflow " + name.substr(0, 80) + " version " +
                             version.substr(0, 80) + " not found");
    }
    return version_from_row(r, 0);
  });
}

Result<std::vector<WorkflowVersionRow>> PgStore::list_workflow_versions(const std::string& name) {
  return with_conn([&](PgConn& c) -> Result<std::vector<WorkflowVersionRow>> {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r, c.query("SELECT name, version, definition, created_ms FROM workflow_versions "
                            "WHERE name = $1 ORDER BY created_ms DESC, version DESC",
                            {name}));
    return rows_of<WorkflowVersionRow>(r, version_from_row);
  });
}

Result<std::vector<std::string>> PgStore::list_workflow_names() {
  return with_conn([&](PgConn& c) -> Result<std::vector<std::string>> {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r, c.query("SELECT DISTINCT name FROM workflow_versions ORDER BY name", {}));
    return first_column(r);
  });
}

Result<std::vector<TagRow>> PgStore::list_tags(const std::string& name) {
  return with_conn([&](PgConn& c) -> Result<std::vector<TagRow>> {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r,
        c.query("SELECT name, tag, version FROM tags WHERE name = $1 ORDER BY tag", {name}));
    std::vector<TagRow> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      out.push_back(TagRow{r.text(i, 0), r.text(i, 1), r.text(i, 2)});
    }
    return out;
  });
}

Result<IdempotencyRow> PgStore::get_idempotency(const std::string& key) {
  return with_conn([&](PgConn& c) -> Result<IdempotencyRow> {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r,
        c.query("SELECT key, body_hash, run FROM idempotency_keys WHERE key = $1", {key}));
    if (r.rows() == 0) {
      return not_found_error("idempotency key not found");
    }
    return IdempotencyRow{r.text(0, 0), r.text(0, 1), r.text(0, 2)};
  });
}

Result<std::optional<Snapshot>> PgStore::load_snapshot(const std::string& run) {
  return with_conn([&](PgConn& c) -> Result<std::optional<Snapshot>> {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r, c.query("SELECT run, seq, state FROM snapshots WHERE run = $1", {run}));
    if (r.rows() == 0) {
      return std::optional<Snapshot>();
    }
    Snapshot snap;
    snap.run = r.text(0, 0);
    VENTURE_ASSIGN_OR_RETURN(snap.seq, r.int64(0, 1));
    VENTURE_ASSIGN_OR_RETURN(snap.state, json_col(r, 0, 2));
    return std::optional<Snapshot>(std::move(snap));
  });
}

Result<std::optional<std::string>> PgStore::get_setting(const std::string& key) {
  return with_conn([&](PgConn& c) -> Result<std::optional<std::string>> {
    VENTURE_ASSIGN_OR_RETURN(PgResult r,
                             c.query("SELECT value FROM settings WHERE key = $1", {key}));
    if (r.rows() == 0) {
      return std::optional<std::string>();
    }
    return std::optional<std::string>(r.text(0, 0));
  });
}

Result<std::vector<TokenRow>> PgStore::list_tokens() {
  return with_conn([&](PgConn& c) -> Result<std::vector<TokenRow>> {
    VENTURE_ASSIGN_OR_RETURN(PgResult r, c.query(std::string("SELECT ") + kTokenColumns +
                                                     " FROM tokens ORDER BY created_ms, id",
                                                 {}));
    return rows_of<TokenRow>(r, token_from_row);
  });
}

Result<TokenRow> PgStore::get_token_by_hash(const std::string& hash) {
  return with_conn([&](PgConn& c) -> Result<TokenRow> {
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r, c.query(std::string("SELECT ") + kTokenColumns +
                                " FROM tokens WHERE hash = $1 ORDER BY created_ms, id LIMIT 1",
                            {hash}));
    if (r.rows() == 0) {
      return not_found_error("token not found");
    }
    return token_from_row(r, 0);
  });
}

Result<TokenRow> PgStore::get_token(const std::string& id) {
  return get_by_id<TokenRow>("tokens", kTokenColumns, "token", id, token_from_row);
}

Result<PatchRow> PgStore::get_patch(const std::string& id) {
  return get_by_id<PatchRow>("patches", kPatchColumns, "patch", id, patch_from_row);
}

Result<std::vector<PatchRow>> PgStore::list_patches(const std::string& run) {
  return with_conn([&](PgConn& c) -> Result<std::vector<PatchRow>> {
    VENTURE_ASSIGN_OR_RETURN(PgResult r,
                             c.query(std::string("SELECT ") + kPatchColumns +
                                         " FROM patches WHERE run = $1 ORDER BY created_ms, id",
                                     {run}));
    return rows_of<PatchRow>(r, patch_from_row);
  });
}

Result<ApprovalRow> PgStore::get_approval(const std::string& id) {
  return get_by_id<ApprovalRow>("approvals", kApprovalColumns, "approval", id, approval_from_row);
}

Result<ApprovalPage> PgStore::list_approvals(const ApprovalFilter& filter) {
  return page_newest_first<ApprovalPage, ApprovalRow>(
      "approvals", kApprovalColumns, {{"status", filter.status}, {"run", filter.run}},
      filter.cursor, filter.limit, approval_from_row);
}

// ---- verify ----

Status PgStore::verify_partition(PgConn& conn, internal::PartitionVerifier& v,
                                 const PartitionHead& row) {
  const std::string sql = std::string("SELECT ") + kEventColumns +
                          " FROM events WHERE part = $1 AND seq > $2 ORDER BY seq LIMIT $3";
  const int part = v.report().partition;
  int64_t after = 0;
  bool more = true;
  while (more) {
    VENTURE_ASSIGN_OR_RETURN(PgResult r,
                             conn.query(sql, {num(part), num(after), num(kVerifyPageEvents)}));
    for (int i = 0; i < r.rows() && more; ++i) {
      VENTURE_ASSIGN_OR_RETURN(after, r.int64(i, 0));
      auto e = event_from_row(r, i);
      more = e ? v.add(*e) : v.add_undecodable(after, e.error().message);
    }
    more = more && r.rows() == kVerifyPageEvents;
  }
  const PartitionReport got = v.report();
  if (got.ok && (got.head_seq != row.seq || got.head_hash != row.hash)) {
    v.fail(std::max(got.head_seq, row.seq),
           "the partition row's head (seq " + std::to_string(row.seq) +
               ") does not match its last event (seq " + std::to_string(got.head_seq) + ")");
  }
  return ok();
}

Status PgStore::verify_claims(PgConn& conn, internal::PartitionVerifier& v0) {
  const auto claims = v0.claims();  // copied: v0.fail below must not invalidate the loop
  for (const auto& [cp_seq, heads] : claims) {
    std::string seqs = "{";
    for (const internal::HeadClaim& c : heads) {
      seqs += (seqs.size() > 1 ? "," : "") + std::to_string(c.seq);
    }
    VENTURE_ASSIGN_OR_RETURN(
        PgResult r, conn.query("SELECT seq, part, hash FROM events WHERE seq = ANY($1::bigint[])",
                               {seqs + "}"}));
    std::map<int64_t, std::pair<int64_t, std::string>> found;
    for (int i = 0; i < r.rows(); ++i) {
      VENTURE_ASSIGN_OR_RETURN(const int64_t seq, r.int64(i, 0));
      VENTURE_ASSIGN_OR_RETURN(const int64_t part, r.int64(i, 1));
      found[seq] = {part, r.text(i, 2)};
    }
    for (const internal::HeadClaim& c : heads) {
      auto it = found.find(c.seq);
      const bool good = c.seq == 0 ? c.hash == internal::kZeroHash
                                   : it != found.end() && it->second.first == c.partition &&
                                         it->second.second == c.hash;
      if (!good) {
        v0.fail(cp_seq, "checkpoint names head seq " + std::to_string(c.seq) + " of partition " +
                            std::to_string(c.partition) +
                            ", which is not that partition's event with that hash");
        break;
      }
    }
  }
  return ok();
}

Result<VerifyReport> PgStore::verify() {
  return with_conn([&](PgConn& c) -> Result<VerifyReport> {
    // One snapshot for the whole check: rows and events agree even while appends go on.
    VENTURE_RETURN_IF_ERROR(c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    auto report = [&]() -> Result<VerifyReport> {
      VENTURE_ASSIGN_OR_RETURN(
          PgResult rows,
          c.query("SELECT part, head_seq, head_hash FROM partitions ORDER BY part", {}));
      if (rows.rows() != partitions_) {
        return data_loss_error("postgres: partition rows are missing");
      }
      auto lookup = [&c](const std::string& hash) -> Result<std::optional<std::string>> {
        VENTURE_ASSIGN_OR_RETURN(PgResult r,
                                 c.query("SELECT data FROM blobs WHERE hash = $1", {hash}));
        return r.rows() > 0 ? std::optional<std::string>(r.text(0, 0)) : std::nullopt;
      };
      std::vector<internal::PartitionVerifier> verifiers;
      for (int p = 0; p < partitions_; ++p) {
        verifiers.emplace_back(p, partitions_, lookup);
        VENTURE_ASSIGN_OR_RETURN(const int64_t head_seq, rows.int64(p, 1));
        VENTURE_RETURN_IF_ERROR(
            verify_partition(c, verifiers.back(), PartitionHead{head_seq, rows.text(p, 2)}));
      }
      VENTURE_RETURN_IF_ERROR(verify_claims(c, verifiers.front()));
      VENTURE_ASSIGN_OR_RETURN(
          PgResult stray,
          c.query("SELECT MIN(seq) FROM events WHERE part < 0 OR part >= $1", {num(partitions_)}));
      if (!stray.is_null(0, 0)) {
        VENTURE_ASSIGN_OR_RETURN(const int64_t seq, stray.int64(0, 0));
        verifiers.front().fail(seq, "event is in no partition");
      }
      VerifyReport out;
      for (const internal::PartitionVerifier& v : verifiers) {
        out.partitions.push_back(v.report());
        out.events += v.report().events;
        out.checkpoints += v.checkpoints();
        if (v.first_bad_seq() != 0 &&
            (out.first_bad_seq == 0 || v.first_bad_seq() < out.first_bad_seq)) {
          out.ok = false;
          out.first_bad_seq = v.first_bad_seq();
          out.reason = v.reason();
        }
      }
      return out;
    }();
    (void)c.exec(report ? "COMMIT" : "ROLLBACK");
    return report;
  });
}

// ---- open ----

Status migrate_locked(PgConn& c, Time now) {
  VENTURE_RETURN_IF_ERROR(
      c.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
             "applied_ms BIGINT NOT NULL)"));
  VENTURE_ASSIGN_OR_RETURN(PgResult r,
                           c.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {}));
  VENTURE_ASSIGN_OR_RETURN(const int64_t current, r.int64(0, 0));
  const int64_t latest = std::end(kMigrations)[-1].version;
  if (current > latest) {
    return failed_precondition_error("database schema version " + std::to_string(current) +
                                     " is newer than this binary's " + std::to_string(latest));
  }
  for (const Migration& m : kMigrations) {
    if (m.version <= current) {
      continue;
    }
    VENTURE_RETURN_IF_ERROR(c.exec("BEGIN"));
    Status st = c.exec(m.sql);
    if (st) {
      auto ins = c.query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
                         {num(m.version), ms(now)});
      st = ins ? ok() : Status(ins.error());
    }
    if (!st) {
      (void)c.exec("ROLLBACK");
      return st.error();
    }
    VENTURE_RETURN_IF_ERROR(c.exec("COMMIT"));
  }
  return ok();
}

// Runs pending migrations and creates the partition rows, one process at a time. Returns the
// stored number of partitions (the first open's Options::partitions).
Result<int> migrate(PgConn& c, Time now, int partitions) {
  VENTURE_RETURN_IF_ERROR(c.exec(kMigrateLock));
  auto run = [&]() -> Result<int> {
    VENTURE_RETURN_IF_ERROR(migrate_locked(c, now));
    VENTURE_ASSIGN_OR_RETURN(
        PgResult ins,
        c.query("INSERT INTO log_meta (id, partitions) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                {num(partitions)}));
    (void)ins;
    VENTURE_ASSIGN_OR_RETURN(PgResult r,
                             c.query("SELECT partitions FROM log_meta WHERE id = 1", {}));
    VENTURE_ASSIGN_OR_RETURN(const int64_t stored, r.rows() == 1 ? r.int64(0, 0) : int64_t{0});
    if (stored < 1 || stored > kPartitionsMax) {
      return data_loss_error("log_meta holds a bad partition count");
    }
    VENTURE_ASSIGN_OR_RETURN(
        PgResult rows,
        c.query("INSERT INTO partitions (part, head_seq, head_hash, epoch, last_cp_seq) "
                "SELECT g, 0, $2, 0, 0 FROM generate_series(0, $1::int - 1) AS g "
                "ON CONFLICT (part) DO NOTHING",
                {num(stored), internal::kZeroHash}));
    (void)rows;
    return static_cast<int>(stored);
  }();
  (void)c.exec(kMigrateUnlock);
  return run;
}

// Checks that every partition row names its partition's last event and that event's hash
// recomputes (kDataLoss otherwise); returns the time of the last checkpoint (or now).
Result<Time> check_heads(PgConn& c, int partitions, Time now) {
  VENTURE_ASSIGN_OR_RETURN(
      PgResult rows,
      c.query("SELECT part, head_seq, head_hash, last_cp_seq FROM partitions ORDER BY part", {}));
  if (rows.rows() != partitions) {
    return data_loss_error("partition rows are missing");
  }
  std::vector<PgQuery> lasts;
  lasts.reserve(static_cast<std::size_t>(partitions));
  for (int p = 0; p < partitions; ++p) {
    lasts.push_back(PgQuery{std::string("SELECT ") + kEventColumns +
                                " FROM events WHERE part = $1 ORDER BY seq DESC LIMIT 1",
                            {num(p)},
                            "last event"});
  }
  VENTURE_ASSIGN_OR_RETURN(std::vector<PgResult> last, c.pipeline(lasts));
  for (int p = 0; p < partitions; ++p) {
    VENTURE_ASSIGN_OR_RETURN(const int64_t head_seq, rows.int64(p, 1));
    const std::string head_hash = rows.text(p, 2);
    const PgResult& r = last[static_cast<std::size_t>(p)];
    bool good = r.rows() == 0 && head_seq == 0;
    if (r.rows() == 1) {
      VENTURE_ASSIGN_OR_RETURN(Event e, event_from_row(r, 0));
      good = e.seq == head_seq && e.hash == head_hash && compute_event_hash(e) == e.hash;
    }
    if (!good) {
      return data_loss_error("partition " + std::to_string(p) +
                             ": the head row does not match the partition's last event");
    }
  }
  VENTURE_ASSIGN_OR_RETURN(const int64_t last_cp, rows.int64(0, 3));
  if (last_cp == 0) {
    return now;
  }
  VENTURE_ASSIGN_OR_RETURN(PgResult cp,
                           c.query("SELECT time_ms FROM events WHERE seq = $1", {num(last_cp)}));
  if (cp.rows() != 1) {
    return data_loss_error("the last checkpoint (seq " + std::to_string(last_cp) + ") is missing");
  }
  return time_col(cp, 0, 0);
}

}  // namespace

Result<std::unique_ptr<Store>> open_postgres(const std::string& url, Options options,
                                             base::Clock& clock, base::Random& random) {
  base::init_crypto();
  if (options.partitions < 1 || options.partitions > kPartitionsMax) {
    return invalid_argument_error("storage: partitions must be in [1, " +
                                  std::to_string(kPartitionsMax) + "]");
  }
  if (options.pool_size < 1 || options.pool_size > kPoolSizeMax) {
    return invalid_argument_error("storage: pool_size must be in [1, " +
                                  std::to_string(kPoolSizeMax) + "]");
  }
  VENTURE_ASSIGN_OR_RETURN(std::unique_ptr<PgConn> conn, PgConn::connect(url, options.fsync));
  const Time now = clock.now();
  VENTURE_ASSIGN_OR_RETURN(const int partitions, migrate(*conn, now, options.partitions));
  VENTURE_ASSIGN_OR_RETURN(const Time last_cp_time, check_heads(*conn, partitions, now));
  return std::unique_ptr<Store>(std::make_unique<PgStore>(
      url, std::move(options), clock, random, partitions, last_cp_time, std::move(conn)));
}

}  // namespace venture::storage
