// SqliteStore: the embedded default store, dir/venture.db in WAL mode.
//
// Write path (group commit). One writer thread (std::jthread `writer_`) owns the write connection
// and the chain state. Append queues its batch (bounded by kPendingAppendsMax) and waits on a
// future. The writer takes every queued batch (up to kAppendBatchEventsMax events), opens ONE
// transaction, writes each batch inside its own SAVEPOINT (a failing batch is rolled back alone,
// and its chain advance undone), and COMMITs once: one fsync for the whole group.
//
// Read path. Reads take a connection from a small pool (kReadConnectionsMax) and never wait for the
// writer: WAL readers see the last committed snapshot.
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "storage/log_core.h"
#include "storage/sqlite_conn.h"
#include "storage/storage.h"

namespace venture::storage {
namespace {

using internal::Conn;
using internal::Stmt;

constexpr std::size_t kReadConnectionsMax = 4;
constexpr int64_t kVerifyPageEvents = 1000;

struct Migration {
  int64_t version;
  const char* sql;
};

// Forward-only; each runs once, in its own transaction. Portable SQL (PostgreSQL later).
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
  time_ms BIGINT NOT NULL, run TEXT NOT NULL, node TEXT NOT NULL, data TEXT NOT NULL,
  prev TEXT NOT NULL, hash TEXT NOT NULL);
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
};

constexpr const char* kEventColumns = "seq, id, type, time_ms, run, node, data, prev, hash";
constexpr const char* kRunColumns =
    "id, workflow, version, status, created_ms, updated_ms, inputs, output, error, replay_of, "
    "last_seq";

// JSON column: NULL <-> null.
Result<json::value> JsonColumn(Stmt& s, int col) {
  if (s.IsNull(col)) {
    return json::value();
  }
  auto v = base::ParseJson(s.Text(col));
  if (!v) {
    return DataLoss("undecodable JSON column: " + v.error().message);
  }
  return std::move(*v);
}

void BindJson(Stmt& s, int index, const json::value& v, std::string& keep) {
  if (v.is_null()) {
    s.BindNull(index);
    return;
  }
  keep = base::CompactJson(v);
  s.Bind(index, keep);
}

// Decodes the event in the current row (kEventColumns). kDataLoss when it does not decode.
Result<Event> EventFromRow(Stmt& s) {
  Event e;
  e.seq = s.Int(0);
  e.id = s.Text(1);
  e.type = s.Text(2);
  e.time = FromUnixMs(s.Int(3));
  e.run = s.Text(4);
  e.node = s.Text(5);
  auto data = base::ParseJson(s.Text(6));
  if (!data || !data->is_object()) {
    return DataLoss("event " + std::to_string(e.seq) + ": data is not a JSON object");
  }
  e.data = std::move(*data);
  e.prev = s.Text(7);
  e.hash = s.Text(8);
  return e;
}

Result<RunRow> RunFromRow(Stmt& s) {
  RunRow r;
  r.id = s.Text(0);
  r.workflow = s.Text(1);
  r.version = s.Text(2);
  r.status = s.Text(3);
  r.created = FromUnixMs(s.Int(4));
  r.updated = FromUnixMs(s.Int(5));
  VENTURE_ASSIGN_OR_RETURN(r.inputs, JsonColumn(s, 6));
  VENTURE_ASSIGN_OR_RETURN(r.output, JsonColumn(s, 7));
  VENTURE_ASSIGN_OR_RETURN(r.error, JsonColumn(s, 8));
  r.replay_of = s.Text(9);
  r.last_seq = s.Int(10);
  return r;
}

struct PendingAppend {
  Batch batch;
  bool force_checkpoint = false;
  std::size_t events = 0;
  std::promise<Result<AppendResult>> done;
};

class SqliteStore final : public Store, public internal::Introspect {
 public:
  SqliteStore(std::string path, Options options, base::Clock& clock, base::Random& random,
              std::unique_ptr<Conn> writer, internal::ChainState chain)
      : path_(std::move(path)),
        options_(std::move(options)),
        clock_(clock),
        random_(random),
        writer_conn_(std::move(writer)),
        chain_(std::move(chain)),
        committed_seq_(chain_.seq) {
    writer_ = std::jthread([this] { WriterLoop(); });
  }
  ~SqliteStore() override {
    {
      std::lock_guard lock(queue_mu_);
      stopping_ = true;
      held_ = false;
    }
    queue_cv_.notify_all();
    writer_.join();
  }

  Result<AppendResult> Append(Batch batch) override;
  Result<std::vector<Event>> ReadEvents(const EventFilter& filter) override;
  Result<int64_t> LastSeq() override {
    std::lock_guard lock(queue_mu_);
    return committed_seq_;
  }
  Result<RunRow> GetRun(const std::string& id) override;
  Result<RunPage> ListRuns(const RunFilter& filter) override;
  Result<std::vector<std::string>> ListActiveRuns() override;
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
    std::lock_guard lock(queue_mu_);
    return stats_;
  }
  void HoldWriter(bool hold) override {
    {
      std::lock_guard lock(queue_mu_);
      held_ = hold;
    }
    queue_cv_.notify_all();
  }
  void WaitPending(std::size_t n) override {
    std::unique_lock lock(queue_mu_);
    pending_cv_.wait(lock, [&] { return queue_.size() >= n; });
  }

 private:
  Result<AppendResult> Enqueue(std::unique_ptr<PendingAppend> p);
  void WriterLoop();
  void CommitGroup(std::vector<std::unique_ptr<PendingAppend>>& group);
  Result<AppendResult> WriteOne(PendingAppend& p);
  Status WriteEvents(const internal::Sealed& sealed);
  Status WriteProjections(const Batch& batch, const AppendResult& result);
  Status WriteRuns(const Batch& batch, const AppendResult& result);
  Status WriteOtherRows(const Batch& batch);

  // Runs f(Conn&) on a pooled read connection.
  template <class F>
  auto WithReader(F f) -> decltype(f(std::declval<Conn&>()));
  Result<std::unique_ptr<Conn>> AcquireReader();
  void ReleaseReader(std::unique_ptr<Conn> conn);
  Result<Event> Resolve(Conn& conn, Event e);

  const std::string path_;
  const Options options_;
  base::Clock& clock_;
  base::Random& random_;

  // Owned by the writer thread (and by the constructor before it starts).
  std::unique_ptr<Conn> writer_conn_;
  internal::ChainState chain_;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;    // the writer waits for work
  std::condition_variable pending_cv_;  // WaitPending
  std::deque<std::unique_ptr<PendingAppend>> queue_;
  bool stopping_ = false;
  bool held_ = false;
  int64_t committed_seq_ = 0;
  internal::StoreStats stats_;

  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<Conn>> readers_;
  std::size_t readers_open_ = 0;

  std::jthread writer_;  // last: started in the constructor body, joined in the destructor
};

// ---- write path ----

Result<AppendResult> SqliteStore::Append(Batch batch) {
  auto p = std::make_unique<PendingAppend>();
  p->events = batch.events.size();
  p->batch = std::move(batch);
  return Enqueue(std::move(p));
}

Status SqliteStore::Checkpoint() {
  auto p = std::make_unique<PendingAppend>();
  p->force_checkpoint = true;
  VENTURE_ASSIGN_OR_RETURN(AppendResult r, Enqueue(std::move(p)));
  (void)r;
  return Ok();
}

Result<AppendResult> SqliteStore::Enqueue(std::unique_ptr<PendingAppend> p) {
  std::future<Result<AppendResult>> done = p->done.get_future();
  {
    std::lock_guard lock(queue_mu_);
    if (queue_.size() >= limits::kPendingAppendsMax) {
      return ResourceExhausted("storage: too many appends queued");
    }
    VENTURE_CHECK(!stopping_);
    queue_.push_back(std::move(p));
  }
  queue_cv_.notify_one();
  pending_cv_.notify_all();
  return done.get();
}

void SqliteStore::WriterLoop() {
  std::vector<std::unique_ptr<PendingAppend>> group;
  while (true) {
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return stopping_ || (!held_ && !queue_.empty()); });
      if (queue_.empty()) {
        return;  // stopping, and nothing left to write
      }
      std::size_t events = 0;
      while (!queue_.empty() &&
             (group.empty() || events + queue_.front()->events <= limits::kAppendBatchEventsMax)) {
        events += queue_.front()->events;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    CommitGroup(group);
    group.clear();
  }
}

void SqliteStore::CommitGroup(std::vector<std::unique_ptr<PendingAppend>>& group) {
  std::vector<Result<AppendResult>> results;
  results.reserve(group.size());
  const internal::ChainState before = chain_;
  Status status = writer_conn_->Exec("BEGIN IMMEDIATE");
  if (status) {
    for (auto& p : group) {
      results.push_back(WriteOne(*p));
    }
    status = writer_conn_->Exec("COMMIT");
    if (!status) {
      (void)writer_conn_->Exec("ROLLBACK");
    }
  }
  if (!status) {
    chain_ = before;
    for (auto& p : group) {
      p->done.set_value(Unavailable(path_ + ": " + status.error().message));
    }
    return;
  }
  int64_t committed = 0;
  for (const Result<AppendResult>& r : results) {
    committed += r ? 1 : 0;
  }
  {
    std::lock_guard lock(queue_mu_);
    committed_seq_ = chain_.seq;
    stats_.appends += committed;
    ++stats_.transactions;
  }
  for (std::size_t i = 0; i < group.size(); ++i) {
    group[i]->done.set_value(std::move(results[i]));
  }
}

Result<AppendResult> SqliteStore::WriteOne(PendingAppend& p) {
  if (p.force_checkpoint && !internal::HasUncovered(chain_)) {
    return AppendResult{};
  }
  VENTURE_RETURN_IF_ERROR(writer_conn_->Exec("SAVEPOINT batch"));
  const internal::SealContext ctx{&options_, &clock_, &random_};
  auto sealed = internal::SealBatch(chain_, std::move(p.batch.events), p.force_checkpoint, ctx);
  Status status = sealed ? WriteEvents(*sealed) : Status(sealed.error());
  if (status) {
    status = WriteProjections(p.batch, sealed->result);
  }
  if (!status) {
    if (sealed) {
      internal::Undo(chain_, std::move(sealed->undo));
    }
    (void)writer_conn_->Exec("ROLLBACK TO batch");
    (void)writer_conn_->Exec("RELEASE batch");
    return status.error();
  }
  VENTURE_RETURN_IF_ERROR(writer_conn_->Exec("RELEASE batch"));
  return std::move(sealed->result);
}

Status SqliteStore::WriteEvents(const internal::Sealed& sealed) {
  for (const internal::Blob& blob : sealed.blobs) {
    VENTURE_ASSIGN_OR_RETURN(
        auto s,
        writer_conn_->Prepare(
            "INSERT INTO blobs (hash, data) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING"));
    s->Bind(1, blob.hash);
    s->Bind(2, blob.payload);
    VENTURE_RETURN_IF_ERROR(s->Run());
  }
  VENTURE_ASSIGN_OR_RETURN(
      auto s, writer_conn_->Prepare(std::string("INSERT INTO events (") + kEventColumns +
                                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"));
  for (std::size_t i = 0; i < sealed.stored.size(); ++i) {
    const Event& e = sealed.stored[i];
    s->Bind(1, e.seq);
    s->Bind(2, e.id);
    s->Bind(3, e.type);
    s->Bind(4, ToUnixMs(e.time));
    s->Bind(5, e.run);
    s->Bind(6, e.node);
    s->Bind(7, sealed.stored_text[i]);
    s->Bind(8, e.prev);
    s->Bind(9, e.hash);
    auto r = s->Run();
    if (!r) {
      return Error(r.error().code, "event " + e.id + ": " + r.error().message);
    }
    s->Reset();
  }
  return Ok();
}

Status SqliteStore::WriteProjections(const Batch& batch, const AppendResult& result) {
  VENTURE_RETURN_IF_ERROR(WriteRuns(batch, result));
  return WriteOtherRows(batch);
}

Status SqliteStore::WriteRuns(const Batch& batch, const AppendResult& result) {
  std::unordered_map<std::string_view, int64_t> last_seq;
  for (const Event& e : result.events) {
    if (!e.run.empty()) {
      last_seq[e.run] = e.seq;
    }
  }
  for (const RunRow& r : batch.runs) {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, writer_conn_->Prepare(std::string("INSERT INTO runs (") + kRunColumns + R"sql()
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
ON CONFLICT (id) DO UPDATE SET workflow = excluded.workflow, version = excluded.version,
  status = excluded.status, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
  inputs = excluded.inputs, output = excluded.output, error = excluded.error,
  replay_of = excluded.replay_of,
  last_seq = CASE WHEN excluded.last_seq > runs.last_seq THEN excluded.last_seq
             ELSE runs.last_seq END)sql"));
    std::string inputs, output, error;
    auto it = last_seq.find(r.id);
    s->Bind(1, r.id);
    s->Bind(2, r.workflow);
    s->Bind(3, r.version);
    s->Bind(4, r.status);
    s->Bind(5, ToUnixMs(r.created));
    s->Bind(6, ToUnixMs(r.updated));
    BindJson(*s, 7, r.inputs, inputs);
    BindJson(*s, 8, r.output, output);
    BindJson(*s, 9, r.error, error);
    s->Bind(10, r.replay_of);
    s->Bind(11, it != last_seq.end() ? it->second : int64_t{0});
    VENTURE_RETURN_IF_ERROR(s->Run());
  }
  return Ok();
}

Status SqliteStore::WriteOtherRows(const Batch& batch) {
  Conn& c = *writer_conn_;
  for (const NodeRow& n : batch.nodes) {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.Prepare(R"sql(INSERT INTO run_nodes
(run, node, status, outcome, attempts, output, error, started_ms, finished_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (run, node) DO UPDATE SET status = excluded.status, outcome = excluded.outcome,
  attempts = excluded.attempts, output = excluded.output, error = excluded.error,
  started_ms = excluded.started_ms, finished_ms = excluded.finished_ms)sql"));
    std::string output, error;
    s->Bind(1, n.run);
    s->Bind(2, n.node);
    s->Bind(3, n.status);
    s->Bind(4, n.outcome);
    s->Bind(5, n.attempts);
    BindJson(*s, 6, n.output, output);
    BindJson(*s, 7, n.error, error);
    n.started ? s->Bind(8, ToUnixMs(*n.started)) : s->BindNull(8);
    n.finished ? s->Bind(9, ToUnixMs(*n.finished)) : s->BindNull(9);
    VENTURE_RETURN_IF_ERROR(s->Run());
  }
  for (const WorkflowVersionRow& w : batch.workflow_versions) {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.Prepare(R"sql(INSERT INTO workflow_versions
(name, version, definition, created_ms) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (name, version) DO NOTHING)sql"));
    const std::string definition = base::CompactJson(w.definition);
    s->Bind(1, w.name);
    s->Bind(2, w.version);
    s->Bind(3, definition);
    s->Bind(4, ToUnixMs(w.created));
    VENTURE_RETURN_IF_ERROR(s->Run());
  }
  for (const TagRow& t : batch.tags) {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.Prepare(R"sql(INSERT INTO tags (name, tag, version)
VALUES (?1, ?2, ?3) ON CONFLICT (name, tag) DO UPDATE SET version = excluded.version)sql"));
    s->Bind(1, t.name);
    s->Bind(2, t.tag);
    s->Bind(3, t.version);
    VENTURE_RETURN_IF_ERROR(s->Run());
  }
  for (const IdempotencyRow& k : batch.idempotency) {
    VENTURE_ASSIGN_OR_RETURN(
        auto s,
        c.Prepare("INSERT INTO idempotency_keys (key, body_hash, run) VALUES (?1, ?2, ?3)"));
    s->Bind(1, k.key);
    s->Bind(2, k.body_hash);
    s->Bind(3, k.run);
    auto r = s->Run();
    if (!r) {
      return r.error().code == Code::kAlreadyExists
                 ? AlreadyExists("idempotency key exists: " + k.key.substr(0, 200))
                 : r.error();
    }
  }
  for (const Snapshot& snap : batch.snapshots) {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.Prepare(R"sql(INSERT INTO snapshots (run, seq, state)
VALUES (?1, ?2, ?3) ON CONFLICT (run) DO UPDATE SET seq = excluded.seq, state = excluded.state
WHERE excluded.seq >= snapshots.seq)sql"));
    const std::string state = base::CompactJson(snap.state);
    s->Bind(1, snap.run);
    s->Bind(2, snap.seq);
    s->Bind(3, state);
    VENTURE_RETURN_IF_ERROR(s->Run());
  }
  for (const auto& [key, value] : batch.settings) {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.Prepare(R"sql(INSERT INTO settings (key, value)
VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value)sql"));
    s->Bind(1, key);
    s->Bind(2, value);
    VENTURE_RETURN_IF_ERROR(s->Run());
  }
  return Ok();
}

// ---- read path ----

Result<std::unique_ptr<Conn>> SqliteStore::AcquireReader() {
  std::unique_lock lock(pool_mu_);
  pool_cv_.wait(lock, [&] { return !readers_.empty() || readers_open_ < kReadConnectionsMax; });
  if (!readers_.empty()) {
    std::unique_ptr<Conn> conn = std::move(readers_.back());
    readers_.pop_back();
    return conn;
  }
  ++readers_open_;
  lock.unlock();
  auto conn = Conn::Open(path_, options_.fsync);
  if (!conn) {
    std::lock_guard relock(pool_mu_);
    --readers_open_;
    pool_cv_.notify_one();
    return conn.error();
  }
  return std::move(*conn);
}

void SqliteStore::ReleaseReader(std::unique_ptr<Conn> conn) {
  {
    std::lock_guard lock(pool_mu_);
    readers_.push_back(std::move(conn));
  }
  pool_cv_.notify_one();
}

template <class F>
auto SqliteStore::WithReader(F f) -> decltype(f(std::declval<Conn&>())) {
  VENTURE_ASSIGN_OR_RETURN(std::unique_ptr<Conn> conn, AcquireReader());
  auto result = f(*conn);
  ReleaseReader(std::move(conn));
  return result;
}

Result<Event> SqliteStore::Resolve(Conn& conn, Event e) {
  const std::optional<internal::BlobRef> ref = internal::AsBlobRef(e.data);
  if (!ref) {
    return e;
  }
  VENTURE_ASSIGN_OR_RETURN(auto s, conn.Prepare("SELECT data FROM blobs WHERE hash = ?1"));
  s->Bind(1, ref->hash);
  VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
  if (!row) {
    return DataLoss("event " + std::to_string(e.seq) + ": blob " + ref->hash + " missing");
  }
  VENTURE_ASSIGN_OR_RETURN(e.data, internal::DecodeBlob(*ref, s->Text(0)));
  return e;
}

Result<std::vector<Event>> SqliteStore::ReadEvents(const EventFilter& filter) {
  const std::size_t limit = std::min(filter.limit, limits::kReadPageMax);
  std::string sql = std::string("SELECT ") + kEventColumns + " FROM events WHERE seq > ?1";
  if (!filter.run.empty()) {
    sql += " AND run = ?2";
  }
  if (!filter.type_prefix.empty()) {
    sql += " AND substr(type, 1, ?3) = ?4";
  }
  sql += " ORDER BY seq LIMIT ?5";
  return WithReader([&](Conn& c) -> Result<std::vector<Event>> {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.Prepare(sql));
    s->Bind(1, filter.after_seq);
    if (!filter.run.empty()) {
      s->Bind(2, filter.run);
    }
    if (!filter.type_prefix.empty()) {
      s->Bind(3, static_cast<int64_t>(filter.type_prefix.size()));
      s->Bind(4, filter.type_prefix);
    }
    s->Bind(5, static_cast<int64_t>(limit));
    std::vector<Event> out;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) {
        break;
      }
      VENTURE_ASSIGN_OR_RETURN(Event e, EventFromRow(*s));
      VENTURE_ASSIGN_OR_RETURN(Event resolved, Resolve(c, std::move(e)));
      out.push_back(std::move(resolved));
    }
    return out;
  });
}

Result<RunRow> SqliteStore::GetRun(const std::string& id) {
  return WithReader([&](Conn& c) -> Result<RunRow> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.Prepare(std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?1"));
    s->Bind(1, id);
    VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
    if (!row) {
      return NotFound("run " + id.substr(0, 80) + " not found");
    }
    return RunFromRow(*s);
  });
}

Result<RunPage> SqliteStore::ListRuns(const RunFilter& filter) {
  const std::size_t limit = std::clamp<std::size_t>(filter.limit, 1, internal::kRunPageMax);
  std::pair<int64_t, std::string> after;
  if (!filter.cursor.empty()) {
    VENTURE_ASSIGN_OR_RETURN(after, internal::DecodeRunCursor(filter.cursor));
  }
  std::string sql = std::string("SELECT ") + kRunColumns + " FROM runs WHERE 1 = 1";
  if (!filter.status.empty()) {
    sql += " AND status = ?1";
  }
  if (!filter.workflow.empty()) {
    sql += " AND workflow = ?2";
  }
  if (!filter.cursor.empty()) {
    sql += " AND (created_ms < ?3 OR (created_ms = ?3 AND id < ?4))";
  }
  sql += " ORDER BY created_ms DESC, id DESC LIMIT ?5";
  return WithReader([&](Conn& c) -> Result<RunPage> {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.Prepare(sql));
    s->Bind(1, filter.status);
    s->Bind(2, filter.workflow);
    s->Bind(3, after.first);
    s->Bind(4, after.second);
    s->Bind(5, static_cast<int64_t>(limit + 1));
    RunPage page;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) {
        break;
      }
      if (page.items.size() == limit) {
        const RunRow& last = page.items.back();
        page.next_cursor = internal::EncodeRunCursor(last.created, last.id);
        break;
      }
      VENTURE_ASSIGN_OR_RETURN(RunRow r, RunFromRow(*s));
      page.items.push_back(std::move(r));
    }
    return page;
  });
}

Result<std::vector<std::string>> SqliteStore::ListActiveRuns() {
  return WithReader([&](Conn& c) -> Result<std::vector<std::string>> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s,
        c.Prepare("SELECT id FROM runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled') "
                  "ORDER BY id"));
    std::vector<std::string> out;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) {
        return out;
      }
      out.push_back(s->Text(0));
    }
  });
}

Result<std::vector<NodeRow>> SqliteStore::GetNodes(const std::string& run) {
  return WithReader([&](Conn& c) -> Result<std::vector<NodeRow>> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s,
        c.Prepare(
            "SELECT run, node, status, outcome, attempts, output, error, started_ms, finished_ms "
            "FROM run_nodes WHERE run = ?1 ORDER BY node"));
    s->Bind(1, run);
    std::vector<NodeRow> out;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) {
        return out;
      }
      NodeRow n;
      n.run = s->Text(0);
      n.node = s->Text(1);
      n.status = s->Text(2);
      n.outcome = s->Text(3);
      n.attempts = s->Int(4);
      VENTURE_ASSIGN_OR_RETURN(n.output, JsonColumn(*s, 5));
      VENTURE_ASSIGN_OR_RETURN(n.error, JsonColumn(*s, 6));
      if (!s->IsNull(7)) {
        n.started = FromUnixMs(s->Int(7));
      }
      if (!s->IsNull(8)) {
        n.finished = FromUnixMs(s->Int(8));
      }
      out.push_back(std::move(n));
    }
  });
}

Result<WorkflowVersionRow> SqliteStore::GetWorkflowVersion(const std::string& name,
                                                           const std::string& version) {
  VENTURE_ASSIGN_OR_RETURN(std::vector<WorkflowVersionRow> all, ListWorkflowVersions(name));
  for (WorkflowVersionRow& w : all) {
    if (w.version == version) {
      return std::move(w);
    }
  }
  return NotFound("workflow " + name.substr(0, 80) + " version " + version + " not found");
}

Result<std::vector<WorkflowVersionRow>> SqliteStore::ListWorkflowVersions(const std::string& name) {
  return WithReader([&](Conn& c) -> Result<std::vector<WorkflowVersionRow>> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s,
        c.Prepare(
            "SELECT name, version, definition, created_ms FROM workflow_versions WHERE name = ?1 "
            "ORDER BY created_ms DESC, version DESC"));
    s->Bind(1, name);
    std::vector<WorkflowVersionRow> out;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) {
        return out;
      }
      WorkflowVersionRow w;
      w.name = s->Text(0);
      w.version = s->Text(1);
      VENTURE_ASSIGN_OR_RETURN(w.definition, JsonColumn(*s, 2));
      w.created = FromUnixMs(s->Int(3));
      out.push_back(std::move(w));
    }
  });
}

Result<std::vector<std::string>> SqliteStore::ListWorkflowNames() {
  return WithReader([&](Conn& c) -> Result<std::vector<std::string>> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.Prepare("SELECT DISTINCT name FROM workflow_versions ORDER BY name"));
    std::vector<std::string> out;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) {
        return out;
      }
      out.push_back(s->Text(0));
    }
  });
}

Result<std::vector<TagRow>> SqliteStore::ListTags(const std::string& name) {
  return WithReader([&](Conn& c) -> Result<std::vector<TagRow>> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.Prepare("SELECT name, tag, version FROM tags WHERE name = ?1 ORDER BY tag"));
    s->Bind(1, name);
    std::vector<TagRow> out;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) {
        return out;
      }
      out.push_back(TagRow{s->Text(0), s->Text(1), s->Text(2)});
    }
  });
}

Result<IdempotencyRow> SqliteStore::GetIdempotency(const std::string& key) {
  return WithReader([&](Conn& c) -> Result<IdempotencyRow> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.Prepare("SELECT key, body_hash, run FROM idempotency_keys WHERE key = ?1"));
    s->Bind(1, key);
    VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
    if (!row) {
      return NotFound("idempotency key not found");
    }
    return IdempotencyRow{s->Text(0), s->Text(1), s->Text(2)};
  });
}

Result<std::optional<Snapshot>> SqliteStore::LoadSnapshot(const std::string& run) {
  return WithReader([&](Conn& c) -> Result<std::optional<Snapshot>> {
    VENTURE_ASSIGN_OR_RETURN(auto s,
                             c.Prepare("SELECT run, seq, state FROM snapshots WHERE run = ?1"));
    s->Bind(1, run);
    VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
    if (!row) {
      return std::optional<Snapshot>();
    }
    Snapshot snap;
    snap.run = s->Text(0);
    snap.seq = s->Int(1);
    VENTURE_ASSIGN_OR_RETURN(snap.state, JsonColumn(*s, 2));
    return std::optional<Snapshot>(std::move(snap));
  });
}

Result<std::optional<std::string>> SqliteStore::GetSetting(const std::string& key) {
  return WithReader([&](Conn& c) -> Result<std::optional<std::string>> {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT value FROM settings WHERE key = ?1"));
    s->Bind(1, key);
    VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
    if (!row) {
      return std::optional<std::string>();
    }
    return std::optional<std::string>(s->Text(0));
  });
}

Result<VerifyReport> SqliteStore::Verify() {
  VENTURE_ASSIGN_OR_RETURN(const int64_t last, LastSeq());
  return WithReader([&](Conn& c) -> Result<VerifyReport> {
    internal::Verifier verifier(
        [&c](const std::string& hash) -> Result<std::optional<std::string>> {
          VENTURE_ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT data FROM blobs WHERE hash = ?1"));
          s->Bind(1, hash);
          VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
          return row ? std::optional<std::string>(s->Text(0)) : std::nullopt;
        });
    const std::string sql = std::string("SELECT ") + kEventColumns +
                            " FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3";
    int64_t after = 0;
    bool more = true;
    while (more && after < last) {
      VENTURE_ASSIGN_OR_RETURN(auto s, c.Prepare(sql));
      s->Bind(1, after);
      s->Bind(2, last);
      s->Bind(3, kVerifyPageEvents);
      int64_t rows = 0;
      while (more) {
        VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
        if (!row) {
          break;
        }
        ++rows;
        after = s->Int(0);
        auto e = EventFromRow(*s);
        more = e ? verifier.Add(*e) : verifier.AddUndecodable(after, e.error().message);
      }
      more = more && rows == kVerifyPageEvents;
    }
    VerifyReport report = verifier.Finish();
    if (report.ok && report.events != last) {
      report.ok = false;
      report.first_bad_seq = report.events + 1;
      report.reason = "event missing";
    }
    return report;
  });
}

// ---- open ----

Status Migrate(Conn& c, Time now) {
  VENTURE_RETURN_IF_ERROR(
      c.Exec("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
             "applied_ms BIGINT NOT NULL)"));
  int64_t current = 0;
  {
    VENTURE_ASSIGN_OR_RETURN(auto s,
                             c.Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
    VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
    current = row ? s->Int(0) : 0;
  }
  const int64_t latest = std::end(kMigrations)[-1].version;
  if (current > latest) {
    return FailedPrecondition("database schema version " + std::to_string(current) +
                              " is newer than this binary's " + std::to_string(latest));
  }
  for (const Migration& m : kMigrations) {
    if (m.version <= current) {
      continue;
    }
    VENTURE_RETURN_IF_ERROR(c.Exec("BEGIN IMMEDIATE"));
    Status st = c.Exec(m.sql);
    if (st) {
      VENTURE_ASSIGN_OR_RETURN(
          auto s, c.Prepare("INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)"));
      s->Bind(1, m.version);
      s->Bind(2, ToUnixMs(now));
      st = s->Run();
    }
    if (!st) {
      (void)c.Exec("ROLLBACK");
      return st.error();
    }
    VENTURE_RETURN_IF_ERROR(c.Exec("COMMIT"));
  }
  return Ok();
}

Result<std::optional<Event>> QueryOneEvent(Conn& c, const std::string& where) {
  VENTURE_ASSIGN_OR_RETURN(
      auto s, c.Prepare(std::string("SELECT ") + kEventColumns + " FROM events " + where +
                        " ORDER BY seq DESC LIMIT 1"));
  VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
  if (!row) {
    return std::optional<Event>();
  }
  VENTURE_ASSIGN_OR_RETURN(Event e, EventFromRow(*s));
  return std::optional<Event>(std::move(e));
}

Result<internal::ChainState> LoadChain(Conn& c, Time now) {
  VENTURE_ASSIGN_OR_RETURN(std::optional<Event> last, QueryOneEvent(c, ""));
  VENTURE_ASSIGN_OR_RETURN(std::optional<Event> cp,
                           QueryOneEvent(c, "WHERE type = 'audit.checkpoint'"));
  int64_t from = 1;
  if (cp) {
    const json::object* d = cp->data.if_object();
    from = (d != nullptr ? base::IntOr(*d, "to_seq", -2) : -2) + 1;
  }
  std::vector<std::string> tail;
  VENTURE_ASSIGN_OR_RETURN(auto s,
                           c.Prepare("SELECT hash FROM events WHERE seq >= ?1 ORDER BY seq"));
  s->Bind(1, from);
  while (true) {
    VENTURE_ASSIGN_OR_RETURN(bool row, s->Step());
    if (!row) {
      break;
    }
    tail.push_back(s->Text(0));
  }
  return internal::RestoreChain(last, cp, tail, now);
}

Error WithPath(const std::string& path, const Error& e) {
  return Error(e.code, "storage " + path + ": " + e.message);
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqlite(const std::string& dir, Options options,
                                          base::Clock& clock, base::Random& random) {
  base::InitCrypto();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Unavailable("storage: cannot create directory '" + dir + "': " + ec.message());
  }
  const std::string path = (std::filesystem::path(dir) / "venture.db").string();
  auto conn = Conn::Open(path, options.fsync);
  if (!conn) {
    return WithPath(path, conn.error());
  }
  const Time now = clock.Now();
  if (auto st = Migrate(**conn, now); !st) {
    return WithPath(path, st.error());
  }
  auto chain = LoadChain(**conn, now);
  if (!chain) {
    return WithPath(path, chain.error());
  }
  return std::unique_ptr<Store>(std::make_unique<SqliteStore>(
      path, std::move(options), clock, random, std::move(*conn), std::move(*chain)));
}

}  // namespace venture::storage
