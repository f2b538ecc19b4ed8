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

// JSON column: NULL <-> null.
// The first column of every row, as text.
Result<std::vector<std::string>> read_texts(Stmt& s) {
  std::vector<std::string> out;
  while (true) {
    VENTURE_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) {
      return out;
    }
    out.push_back(s.text(0));
  }
}

Result<json::value> json_column(Stmt& s, int col) {
  if (s.is_null(col)) {
    return json::value();
  }
  auto v = base::parse_json(s.text(col));
  if (!v) {
    return data_loss_error("undecodable JSON column: " + v.error().message);
  }
  return std::move(*v);
}

void bind_json(Stmt& s, int index, const json::value& v, std::string& keep) {
  if (v.is_null()) {
    s.bind_null(index);
    return;
  }
  keep = base::compact_json(v);
  s.bind(index, keep);
}

// Decodes the event in the current row (kEventColumns). kDataLoss when it does not decode.
Result<Event> event_from_row(Stmt& s) {
  Event e;
  e.seq = s.int64(0);
  e.id = s.text(1);
  e.type = s.text(2);
  e.time = from_unix_ms(s.int64(3));
  e.run = s.text(4);
  e.node = s.text(5);
  auto data = base::parse_json(s.text(6));
  if (!data || !data->is_object()) {
    return data_loss_error("event " + std::to_string(e.seq) + ": data is not a JSON object");
  }
  e.data = std::move(*data);
  e.prev = s.text(7);
  e.hash = s.text(8);
  return e;
}

Result<RunRow> run_from_row(Stmt& s) {
  RunRow r;
  r.id = s.text(0);
  r.workflow = s.text(1);
  r.version = s.text(2);
  r.status = s.text(3);
  r.created = from_unix_ms(s.int64(4));
  r.updated = from_unix_ms(s.int64(5));
  VENTURE_ASSIGN_OR_RETURN(r.inputs, json_column(s, 6));
  VENTURE_ASSIGN_OR_RETURN(r.output, json_column(s, 7));
  VENTURE_ASSIGN_OR_RETURN(r.error, json_column(s, 8));
  r.replay_of = s.text(9);
  r.last_seq = s.int64(10);
  return r;
}

TokenRow token_from_row(Stmt& s) {
  TokenRow t;
  t.id = s.text(0);
  t.name = s.text(1);
  t.role = s.text(2);
  t.hash = s.text(3);
  t.created = from_unix_ms(s.int64(4));
  t.revoked = s.int64(5) != 0;
  if (!s.is_null(6)) {
    t.revoked_at = from_unix_ms(s.int64(6));
  }
  return t;
}

Result<PatchRow> patch_from_row(Stmt& s) {
  PatchRow p;
  p.id = s.text(0);
  p.run = s.text(1);
  p.status = s.text(2);
  VENTURE_ASSIGN_OR_RETURN(p.ops, json_column(s, 3));
  p.reason = s.text(4);
  p.proposed_by = s.text(5);
  p.created = from_unix_ms(s.int64(6));
  p.updated = from_unix_ms(s.int64(7));
  p.decided_by = s.text(8);
  p.decision_reason = s.text(9);
  p.version = s.text(10);
  VENTURE_ASSIGN_OR_RETURN(p.error, json_column(s, 11));
  return p;
}

// Reads every remaining row of a statement over kTokenColumns / kPatchColumns.
Result<std::vector<TokenRow>> read_tokens(Stmt& s) {
  std::vector<TokenRow> out;
  while (true) {
    VENTURE_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) {
      return out;
    }
    out.push_back(token_from_row(s));
  }
}

Result<std::vector<PatchRow>> read_patches(Stmt& s) {
  std::vector<PatchRow> out;
  while (true) {
    VENTURE_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) {
      return out;
    }
    VENTURE_ASSIGN_OR_RETURN(PatchRow p, patch_from_row(s));
    out.push_back(std::move(p));
  }
}

Result<ApprovalRow> approval_from_row(Stmt& s) {
  ApprovalRow a;
  a.id = s.text(0);
  a.run = s.text(1);
  a.node = s.text(2);
  a.index = s.int64(3);
  a.iteration = s.int64(4);
  a.status = s.text(5);
  a.created = from_unix_ms(s.int64(6));
  a.updated = from_unix_ms(s.int64(7));
  if (!s.is_null(8)) {
    a.due = from_unix_ms(s.int64(8));
  }
  VENTURE_ASSIGN_OR_RETURN(a.request, json_column(s, 9));
  VENTURE_ASSIGN_OR_RETURN(a.decisions, json_column(s, 10));
  return a;
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
    // WAL checkpoints on a thread and connection of their own (PASSIVE: they never block the
    // writer), so a commit never waits for one: inline, each took the writer for milliseconds
    // and showed as the p99 of POST /v1/runs (docs/performance.md). Without that connection the
    // writer keeps checkpointing inline.
    if (auto conn = Conn::open(path_, options_.fsync)) {
      checkpoint_conn_ = std::move(*conn);
      writer_conn_->hand_off_checkpoints(
          [](void* self, int pages) { static_cast<SqliteStore*>(self)->want_checkpoint(pages); },
          this);
      checkpointer_ = std::jthread([this] { checkpoint_loop(); });
    }
    writer_ = std::jthread([this] { writer_loop(); });
  }
  ~SqliteStore() override {
    {
      std::lock_guard lock(queue_mu_);
      stopping_ = true;
      held_ = false;
    }
    queue_cv_.notify_all();
    writer_.join();
    {
      std::lock_guard lock(checkpoint_mu_);
      checkpoint_stopping_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpointer_.joinable()) {
      checkpointer_.join();
    }
    checkpoint_conn_.reset();  // before the writer's connection, the last one, checkpoints
  }

  Result<AppendResult> append(Batch batch) override;
  std::future<Result<AppendResult>> append_async(Batch batch) override;
  Result<std::vector<Event>> read_events(const EventFilter& filter) override;
  Result<int64_t> last_seq() override {
    std::lock_guard lock(queue_mu_);
    return committed_seq_;
  }
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
  // The epochs live in memory (fences_): SQLite is single-process, so the only appender is this
  // store's writer, which checks them inside the group's transaction.
  Status fence_partition(int partition, int64_t epoch) override {
    std::lock_guard lock(fence_mu_);
    return fences_.raise(partition, epoch);
  }
  int partitions() const override { return 1; }
  Status health() override;

  internal::StoreStats stats() override {
    std::lock_guard lock(queue_mu_);
    return stats_;
  }
  void hold_writer(bool hold) override {
    {
      std::lock_guard lock(queue_mu_);
      held_ = hold;
    }
    queue_cv_.notify_all();
  }
  void wait_pending(std::size_t n) override {
    std::unique_lock lock(queue_mu_);
    pending_cv_.wait(lock, [&] { return queue_.size() >= n; });
  }

 private:
  Result<AppendResult> enqueue(std::unique_ptr<PendingAppend> p);
  // Queues p for the writer and returns its future (ready with kResourceExhausted when full).
  std::future<Result<AppendResult>> submit(std::unique_ptr<PendingAppend> p);
  void writer_loop();
  // Called by the writer's WAL hook after each commit.
  void want_checkpoint(int pages) {
    if (pages < kCheckpointPages) {
      return;
    }
    {
      std::lock_guard lock(checkpoint_mu_);
      checkpoint_wanted_ = true;
    }
    checkpoint_cv_.notify_one();
  }
  void checkpoint_loop() {
    for (;;) {
      {
        std::unique_lock lock(checkpoint_mu_);
        checkpoint_cv_.wait(lock, [&] { return checkpoint_stopping_ || checkpoint_wanted_; });
        if (checkpoint_stopping_) {
          return;
        }
        checkpoint_wanted_ = false;
      }
      if (Status s = checkpoint_conn_->checkpoint_passive(); !s) {
        base::log_warn("sqlite: WAL checkpoint failed", {{"error", s.error().to_string()}});
      }
    }
  }
  // As the automatic checkpoint it replaces (PRAGMA wal_autocheckpoint in Conn::open).
  static constexpr int kCheckpointPages = 4000;
  void commit_group(std::vector<std::unique_ptr<PendingAppend>>& group);
  Result<AppendResult> write_one(PendingAppend& p);
  Result<AppendResult> write_batch(PendingAppend& p);  // write_one without the chain logic
  Status write_events(const internal::Sealed& sealed);
  Status write_projections(const Batch& batch, const AppendResult& result);
  Status write_runs(const Batch& batch, const AppendResult& result);
  Status write_other_rows(const Batch& batch);
  Status write_nodes(const Batch& batch);
  Status write_access_rows(const Batch& batch);

  // Runs f(Conn&) on a pooled read connection.
  template <class F>
  auto with_reader(F f) -> decltype(f(std::declval<Conn&>()));
  Result<std::unique_ptr<Conn>> acquire_reader();
  void release_reader(std::unique_ptr<Conn> conn);
  Result<Event> resolve(Conn& conn, Event e);

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

  std::mutex fence_mu_;
  internal::FenceTable fences_{1};  // guarded by fence_mu_

  std::unique_ptr<Conn> checkpoint_conn_;  // owned by the checkpointer thread once started
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_wanted_ = false;
  bool checkpoint_stopping_ = false;
  std::jthread checkpointer_;

  std::jthread writer_;  // last: started in the constructor body, joined in the destructor
};

// ---- write path ----

Result<AppendResult> SqliteStore::append(Batch batch) {
  auto p = std::make_unique<PendingAppend>();
  p->events = batch.events.size();
  p->batch = std::move(batch);
  return enqueue(std::move(p));
}

Status SqliteStore::checkpoint() {
  auto p = std::make_unique<PendingAppend>();
  p->force_checkpoint = true;
  VENTURE_ASSIGN_OR_RETURN(AppendResult r, enqueue(std::move(p)));
  (void)r;
  return ok();
}

std::future<Result<AppendResult>> SqliteStore::append_async(Batch batch) {
  auto p = std::make_unique<PendingAppend>();
  p->events = batch.events.size();
  p->batch = std::move(batch);
  return submit(std::move(p));
}

Result<AppendResult> SqliteStore::enqueue(std::unique_ptr<PendingAppend> p) {
  return submit(std::move(p)).get();
}

std::future<Result<AppendResult>> SqliteStore::submit(std::unique_ptr<PendingAppend> p) {
  std::future<Result<AppendResult>> done = p->done.get_future();
  {
    std::lock_guard lock(queue_mu_);
    if (queue_.size() >= limits::kPendingAppendsMax) {
      if (p->batch.chain) {
        p->batch.chain->broken = true;
      }
      p->done.set_value(resource_exhausted_error("storage: too many appends queued"));
      return done;
    }
    VENTURE_CHECK(!stopping_);
    queue_.push_back(std::move(p));
  }
  queue_cv_.notify_one();
  pending_cv_.notify_all();
  return done;
}

void SqliteStore::writer_loop() {
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
    commit_group(group);
    group.clear();
  }
}

void SqliteStore::commit_group(std::vector<std::unique_ptr<PendingAppend>>& group) {
  std::vector<Result<AppendResult>> results;
  results.reserve(group.size());
  const internal::ChainState before = chain_;
  Status status = writer_conn_->exec("BEGIN IMMEDIATE");
  if (status) {
    for (auto& p : group) {
      results.push_back(write_one(*p));
    }
    status = writer_conn_->exec("COMMIT");
    if (!status) {
      (void)writer_conn_->exec("ROLLBACK");
    }
  }
  if (!status) {
    chain_ = before;
    for (auto& p : group) {
      if (p->batch.chain) {
        p->batch.chain->broken = true;  // later batches of its chain must not land either
      }
      p->done.set_value(unavailable_error(path_ + ": " + status.error().message));
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

Result<AppendResult> SqliteStore::write_one(PendingAppend& p) {
  if (p.force_checkpoint && !internal::has_uncovered(chain_)) {
    return AppendResult{};
  }
  if (p.batch.chain && p.batch.chain->broken) {
    return aborted_error("an earlier append of this chain failed");
  }
  auto result = write_batch(p);
  if (!result && p.batch.chain) {
    p.batch.chain->broken = true;
  }
  return result;
}

Result<AppendResult> SqliteStore::write_batch(PendingAppend& p) {
  {
    std::lock_guard lock(fence_mu_);
    VENTURE_RETURN_IF_ERROR(fences_.check(p.batch.fences));
  }
  VENTURE_RETURN_IF_ERROR(writer_conn_->exec("SAVEPOINT batch"));
  const internal::SealContext ctx{&options_, &clock_, &random_};
  auto sealed = internal::seal_batch(chain_, std::move(p.batch.events), p.force_checkpoint, ctx);
  Status status = sealed ? write_events(*sealed) : Status(sealed.error());
  if (status) {
    status = write_projections(p.batch, sealed->result);
  }
  if (!status) {
    if (sealed) {
      internal::undo(chain_, std::move(sealed->undo));
    }
    (void)writer_conn_->exec("ROLLBACK TO batch");
    (void)writer_conn_->exec("RELEASE batch");
    return status.error();
  }
  VENTURE_RETURN_IF_ERROR(writer_conn_->exec("RELEASE batch"));
  return std::move(sealed->result);
}

Status SqliteStore::write_events(const internal::Sealed& sealed) {
  for (const internal::Blob& blob : sealed.blobs) {
    VENTURE_ASSIGN_OR_RETURN(
        auto s,
        writer_conn_->prepare(
            "INSERT INTO blobs (hash, data) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING"));
    s->bind(1, blob.hash);
    s->bind(2, blob.payload);
    VENTURE_RETURN_IF_ERROR(s->run());
  }
  VENTURE_ASSIGN_OR_RETURN(
      auto s, writer_conn_->prepare(std::string("INSERT INTO events (") + kEventColumns +
                                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"));
  for (std::size_t i = 0; i < sealed.stored.size(); ++i) {
    const Event& e = sealed.stored[i];
    s->bind(1, e.seq);
    s->bind(2, e.id);
    s->bind(3, e.type);
    s->bind(4, to_unix_ms(e.time));
    s->bind(5, e.run);
    s->bind(6, e.node);
    s->bind(7, sealed.stored_text[i]);
    s->bind(8, e.prev);
    s->bind(9, e.hash);
    auto r = s->run();
    if (!r) {
      return Error(r.error().code, "event " + e.id + ": " + r.error().message);
    }
    s->reset();
  }
  return ok();
}

Status SqliteStore::write_projections(const Batch& batch, const AppendResult& result) {
  VENTURE_RETURN_IF_ERROR(write_runs(batch, result));
  VENTURE_RETURN_IF_ERROR(write_other_rows(batch));
  return write_access_rows(batch);
}

// Tokens and patches (migration 2): upserts by id.
Status SqliteStore::write_access_rows(const Batch& batch) {
  Conn& c = *writer_conn_;
  for (const TokenRow& t : batch.tokens) {
    VENTURE_ASSIGN_OR_RETURN(auto s,
                             c.prepare(std::string("INSERT INTO tokens (") + kTokenColumns + R"sql()
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, hash = excluded.hash,
  created_ms = excluded.created_ms, revoked = excluded.revoked,
  revoked_ms = excluded.revoked_ms)sql"));
    s->bind(1, t.id);
    s->bind(2, t.name);
    s->bind(3, t.role);
    s->bind(4, t.hash);
    s->bind(5, to_unix_ms(t.created));
    s->bind(6, int64_t{t.revoked ? 1 : 0});
    t.revoked_at ? s->bind(7, to_unix_ms(*t.revoked_at)) : s->bind_null(7);
    VENTURE_RETURN_IF_ERROR(s->run());
  }
  for (const PatchRow& p : batch.patches) {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.prepare(std::string("INSERT INTO patches (") + kPatchColumns + R"sql()
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
ON CONFLICT (id) DO UPDATE SET run = excluded.run, status = excluded.status, ops = excluded.ops,
  reason = excluded.reason, proposed_by = excluded.proposed_by,
  created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
  decided_by = excluded.decided_by, decision_reason = excluded.decision_reason,
  version = excluded.version, error = excluded.error)sql"));
    std::string ops, error;
    s->bind(1, p.id);
    s->bind(2, p.run);
    s->bind(3, p.status);
    bind_json(*s, 4, p.ops, ops);
    s->bind(5, p.reason);
    s->bind(6, p.proposed_by);
    s->bind(7, to_unix_ms(p.created));
    s->bind(8, to_unix_ms(p.updated));
    s->bind(9, p.decided_by);
    s->bind(10, p.decision_reason);
    s->bind(11, p.version);
    bind_json(*s, 12, p.error, error);
    VENTURE_RETURN_IF_ERROR(s->run());
  }
  for (const ApprovalRow& a : batch.approvals) {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.prepare(std::string("INSERT INTO approvals (") + kApprovalColumns + R"sql()
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
ON CONFLICT (id) DO UPDATE SET run = excluded.run, node = excluded.node, item = excluded.item,
  iteration = excluded.iteration, status = excluded.status, created_ms = excluded.created_ms,
  updated_ms = excluded.updated_ms, due_ms = excluded.due_ms, request = excluded.request,
  decisions = excluded.decisions)sql"));
    std::string request, decisions;
    s->bind(1, a.id);
    s->bind(2, a.run);
    s->bind(3, a.node);
    s->bind(4, a.index);
    s->bind(5, a.iteration);
    s->bind(6, a.status);
    s->bind(7, to_unix_ms(a.created));
    s->bind(8, to_unix_ms(a.updated));
    a.due ? s->bind(9, to_unix_ms(*a.due)) : s->bind_null(9);
    bind_json(*s, 10, a.request, request);
    bind_json(*s, 11, a.decisions, decisions);
    VENTURE_RETURN_IF_ERROR(s->run());
  }
  return ok();
}

// A run's workflow, created_ms, inputs and replay_of come from its run.submitted event and never
// change: the first upsert writes them and later ones leave them (and the runs_workflow and
// runs_created index entries) alone, which saves two index rewrites per run per commit.
Status SqliteStore::write_runs(const Batch& batch, const AppendResult& result) {
  if (batch.runs.empty()) {
    return ok();
  }
  std::unordered_map<std::string_view, int64_t> last_seq;
  last_seq.reserve(batch.runs.size());
  for (const Event& e : result.events) {
    if (!e.run.empty()) {
      last_seq[e.run] = e.seq;
    }
  }
  // Prepared once per batch (the cache lookup hashes the whole SQL text), reset after each row.
  VENTURE_ASSIGN_OR_RETURN(
      auto s, writer_conn_->prepare(std::string("INSERT INTO runs (") + kRunColumns + R"sql()
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
ON CONFLICT (id) DO UPDATE SET version = excluded.version,
  status = excluded.status, updated_ms = excluded.updated_ms,
  output = excluded.output, error = excluded.error,
  last_seq = CASE WHEN excluded.last_seq > runs.last_seq THEN excluded.last_seq
             ELSE runs.last_seq END)sql"));
  for (const RunRow& r : batch.runs) {
    std::string inputs, output, error;
    auto it = last_seq.find(r.id);
    s->bind(1, r.id);
    s->bind(2, r.workflow);
    s->bind(3, r.version);
    s->bind(4, r.status);
    s->bind(5, to_unix_ms(r.created));
    s->bind(6, to_unix_ms(r.updated));
    bind_json(*s, 7, r.inputs, inputs);
    bind_json(*s, 8, r.output, output);
    bind_json(*s, 9, r.error, error);
    s->bind(10, r.replay_of);
    s->bind(11, it != last_seq.end() ? it->second : int64_t{0});
    VENTURE_RETURN_IF_ERROR(s->run());
    s->reset();
  }
  return ok();
}

Status SqliteStore::write_nodes(const Batch& batch) {
  if (batch.nodes.empty()) {
    return ok();
  }
  VENTURE_ASSIGN_OR_RETURN(auto s, writer_conn_->prepare(R"sql(INSERT INTO run_nodes
(run, node, status, outcome, attempts, output, error, started_ms, finished_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (run, node) DO UPDATE SET status = excluded.status, outcome = excluded.outcome,
  attempts = excluded.attempts, output = excluded.output, error = excluded.error,
  started_ms = excluded.started_ms, finished_ms = excluded.finished_ms)sql"));
  for (const NodeRow& n : batch.nodes) {
    std::string output, error;
    s->bind(1, n.run);
    s->bind(2, n.node);
    s->bind(3, n.status);
    s->bind(4, n.outcome);
    s->bind(5, n.attempts);
    bind_json(*s, 6, n.output, output);
    bind_json(*s, 7, n.error, error);
    n.started ? s->bind(8, to_unix_ms(*n.started)) : s->bind_null(8);
    n.finished ? s->bind(9, to_unix_ms(*n.finished)) : s->bind_null(9);
    VENTURE_RETURN_IF_ERROR(s->run());
    s->reset();
  }
  return ok();
}

Status SqliteStore::write_other_rows(const Batch& batch) {
  Conn& c = *writer_conn_;
  VENTURE_RETURN_IF_ERROR(write_nodes(batch));
  for (const WorkflowVersionRow& w : batch.workflow_versions) {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare(R"sql(INSERT INTO workflow_versions
(name, version, definition, created_ms) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (name, version) DO NOTHING)sql"));
    const std::string definition = base::compact_json(w.definition);
    s->bind(1, w.name);
    s->bind(2, w.version);
    s->bind(3, definition);
    s->bind(4, to_unix_ms(w.created));
    VENTURE_RETURN_IF_ERROR(s->run());
  }
  for (const TagRow& t : batch.tags) {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare(R"sql(INSERT INTO tags (name, tag, version)
VALUES (?1, ?2, ?3) ON CONFLICT (name, tag) DO UPDATE SET version = excluded.version)sql"));
    s->bind(1, t.name);
    s->bind(2, t.tag);
    s->bind(3, t.version);
    VENTURE_RETURN_IF_ERROR(s->run());
  }
  for (const IdempotencyRow& k : batch.idempotency) {
    VENTURE_ASSIGN_OR_RETURN(
        auto s,
        c.prepare("INSERT INTO idempotency_keys (key, body_hash, run) VALUES (?1, ?2, ?3)"));
    s->bind(1, k.key);
    s->bind(2, k.body_hash);
    s->bind(3, k.run);
    auto r = s->run();
    if (!r) {
      return r.error().code == Code::kAlreadyExists
                 ? already_exists_error("idempotency key exists: " + k.key.substr(0, 200))
                 : r.error();
    }
  }
  for (const Snapshot& snap : batch.snapshots) {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare(R"sql(INSERT INTO snapshots (run, seq, state)
VALUES (?1, ?2, ?3) ON CONFLICT (run) DO UPDATE SET seq = excluded.seq, state = excluded.state
WHERE excluded.seq >= snapshots.seq)sql"));
    const std::string state = base::compact_json(snap.state);
    s->bind(1, snap.run);
    s->bind(2, snap.seq);
    s->bind(3, state);
    VENTURE_RETURN_IF_ERROR(s->run());
  }
  for (const auto& [key, value] : batch.settings) {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare(R"sql(INSERT INTO settings (key, value)
VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value)sql"));
    s->bind(1, key);
    s->bind(2, value);
    VENTURE_RETURN_IF_ERROR(s->run());
  }
  return ok();
}

// ---- read path ----

Result<std::unique_ptr<Conn>> SqliteStore::acquire_reader() {
  std::unique_lock lock(pool_mu_);
  pool_cv_.wait(lock, [&] { return !readers_.empty() || readers_open_ < kReadConnectionsMax; });
  if (!readers_.empty()) {
    std::unique_ptr<Conn> conn = std::move(readers_.back());
    readers_.pop_back();
    return conn;
  }
  ++readers_open_;
  lock.unlock();
  auto conn = Conn::open(path_, options_.fsync);
  if (!conn) {
    std::lock_guard relock(pool_mu_);
    --readers_open_;
    pool_cv_.notify_one();
    return conn.error();
  }
  return std::move(*conn);
}

void SqliteStore::release_reader(std::unique_ptr<Conn> conn) {
  {
    std::lock_guard lock(pool_mu_);
    readers_.push_back(std::move(conn));
  }
  pool_cv_.notify_one();
}

template <class F>
auto SqliteStore::with_reader(F f) -> decltype(f(std::declval<Conn&>())) {
  VENTURE_ASSIGN_OR_RETURN(std::unique_ptr<Conn> conn, acquire_reader());
  auto result = f(*conn);
  release_reader(std::move(conn));
  return result;
}

Result<Event> SqliteStore::resolve(Conn& conn, Event e) {
  const std::optional<internal::BlobRef> ref = internal::as_blob_ref(e.data);
  if (!ref) {
    return e;
  }
  VENTURE_ASSIGN_OR_RETURN(auto s, conn.prepare("SELECT data FROM blobs WHERE hash = ?1"));
  s->bind(1, ref->hash);
  VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
  if (!row) {
    return data_loss_error("event " + std::to_string(e.seq) + ": blob " + ref->hash + " missing");
  }
  VENTURE_ASSIGN_OR_RETURN(e.data, internal::decode_blob(*ref, s->text(0)));
  return e;
}

Result<std::vector<Event>> SqliteStore::read_events(const EventFilter& filter) {
  const std::size_t limit = std::min(filter.limit, limits::kReadPageMax);
  std::string sql = std::string("SELECT ") + kEventColumns + " FROM events WHERE seq > ?1";
  if (!filter.run.empty()) {
    sql += " AND run = ?2";
  }
  if (!filter.type_prefix.empty()) {
    sql += " AND substr(type, 1, ?3) = ?4";
  }
  sql += " ORDER BY seq LIMIT ?5";
  return with_reader([&](Conn& c) -> Result<std::vector<Event>> {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare(sql));
    s->bind(1, filter.after_seq);
    if (!filter.run.empty()) {
      s->bind(2, filter.run);
    }
    if (!filter.type_prefix.empty()) {
      s->bind(3, static_cast<int64_t>(filter.type_prefix.size()));
      s->bind(4, filter.type_prefix);
    }
    s->bind(5, static_cast<int64_t>(limit));
    std::vector<Event> out;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
      if (!row) {
        break;
      }
      VENTURE_ASSIGN_OR_RETURN(Event e, event_from_row(*s));
      VENTURE_ASSIGN_OR_RETURN(Event resolved, resolve(c, std::move(e)));
      out.push_back(std::move(resolved));
    }
    return out;
  });
}

Result<RunRow> SqliteStore::get_run(const std::string& id) {
  return with_reader([&](Conn& c) -> Result<RunRow> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.prepare(std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?1"));
    s->bind(1, id);
    VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) {
      return not_found_error("run " + id.substr(0, 80) + " not found");
    }
    return run_from_row(*s);
  });
}

Result<RunPage> SqliteStore::list_runs(const RunFilter& filter) {
  const std::size_t limit = std::clamp<std::size_t>(filter.limit, 1, internal::kRunPageMax);
  std::pair<int64_t, std::string> after;
  if (!filter.cursor.empty()) {
    VENTURE_ASSIGN_OR_RETURN(after, internal::decode_run_cursor(filter.cursor));
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
  return with_reader([&](Conn& c) -> Result<RunPage> {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare(sql));
    s->bind(1, filter.status);
    s->bind(2, filter.workflow);
    s->bind(3, after.first);
    s->bind(4, after.second);
    s->bind(5, static_cast<int64_t>(limit + 1));
    RunPage page;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
      if (!row) {
        break;
      }
      if (page.items.size() == limit) {
        const RunRow& last = page.items.back();
        page.next_cursor = internal::encode_run_cursor(last.created, last.id);
        break;
      }
      VENTURE_ASSIGN_OR_RETURN(RunRow r, run_from_row(*s));
      page.items.push_back(std::move(r));
    }
    return page;
  });
}

Result<std::vector<std::string>> SqliteStore::list_active_runs() {
  return with_reader([&](Conn& c) -> Result<std::vector<std::string>> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s,
        c.prepare("SELECT id FROM runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled') "
                  "ORDER BY id"));
    return read_texts(*s);
  });
}

Result<std::vector<NodeRow>> SqliteStore::get_nodes(const std::string& run) {
  return with_reader([&](Conn& c) -> Result<std::vector<NodeRow>> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s,
        c.prepare(
            "SELECT run, node, status, outcome, attempts, output, error, started_ms, finished_ms "
            "FROM run_nodes WHERE run = ?1 ORDER BY node"));
    s->bind(1, run);
    std::vector<NodeRow> out;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
      if (!row) {
        return out;
      }
      NodeRow n;
      n.run = s->text(0);
      n.node = s->text(1);
      n.status = s->text(2);
      n.outcome = s->text(3);
      n.attempts = s->int64(4);
      VENTURE_ASSIGN_OR_RETURN(n.output, json_column(*s, 5));
      VENTURE_ASSIGN_OR_RETURN(n.error, json_column(*s, 6));
      if (!s->is_null(7)) {
        n.started = from_unix_ms(s->int64(7));
      }
      if (!s->is_null(8)) {
        n.finished = from_unix_ms(s->int64(8));
      }
      out.push_back(std::move(n));
    }
  });
}

namespace {

// Reads workflow_versions rows (name, version, definition, created_ms) from a prepared statement.
Result<std::vector<WorkflowVersionRow>> read_versions(Stmt& s) {
  std::vector<WorkflowVersionRow> out;
  while (true) {
    VENTURE_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) {
      return out;
    }
    WorkflowVersionRow w;
    w.name = s.text(0);
    w.version = s.text(1);
    VENTURE_ASSIGN_OR_RETURN(w.definition, json_column(s, 2));
    w.created = from_unix_ms(s.int64(3));
    out.push_back(std::move(w));
  }
}

}  // namespace

Result<WorkflowVersionRow> SqliteStore::get_workflow_version(const std::string& name,
                                                             const std::string& version) {
  return with_reader([&](Conn& c) -> Result<WorkflowVersionRow> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.prepare("SELECT name, version, definition, created_ms FROM workflow_versions "
                          "WHERE name = ?1 AND version = ?2"));
    s->bind(1, name);
    s->bind(2, version);
    VENTURE_ASSIGN_OR_RETURN(std::vector<WorkflowVersionRow> rows, read_versions(*s));
    if (rows.empty()) {
      return not_found_error("workflow " + name.substr(0, 80) + " version " + version +
                             " not found");
    }
    return std::move(rows.front());
  });
}

Result<std::vector<WorkflowVersionRow>> SqliteStore::list_workflow_versions(
    const std::string& name) {
  return with_reader([&](Conn& c) -> Result<std::vector<WorkflowVersionRow>> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s,
        c.prepare(
            "SELECT name, version, definition, created_ms FROM workflow_versions WHERE name = ?1 "
            "ORDER BY created_ms DESC, version DESC"));
    s->bind(1, name);
    return read_versions(*s);
  });
}

Result<std::vector<std::string>> SqliteStore::list_workflow_names() {
  return with_reader([&](Conn& c) -> Result<std::vector<std::string>> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.prepare("SELECT DISTINCT name FROM workflow_versions ORDER BY name"));
    return read_texts(*s);
  });
}

Result<std::vector<TagRow>> SqliteStore::list_tags(const std::string& name) {
  return with_reader([&](Conn& c) -> Result<std::vector<TagRow>> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.prepare("SELECT name, tag, version FROM tags WHERE name = ?1 ORDER BY tag"));
    s->bind(1, name);
    std::vector<TagRow> out;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
      if (!row) {
        return out;
      }
      out.push_back(TagRow{s->text(0), s->text(1), s->text(2)});
    }
  });
}

Result<IdempotencyRow> SqliteStore::get_idempotency(const std::string& key) {
  return with_reader([&](Conn& c) -> Result<IdempotencyRow> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.prepare("SELECT key, body_hash, run FROM idempotency_keys WHERE key = ?1"));
    s->bind(1, key);
    VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) {
      return not_found_error("idempotency key not found");
    }
    return IdempotencyRow{s->text(0), s->text(1), s->text(2)};
  });
}

Result<std::optional<Snapshot>> SqliteStore::load_snapshot(const std::string& run) {
  return with_reader([&](Conn& c) -> Result<std::optional<Snapshot>> {
    VENTURE_ASSIGN_OR_RETURN(auto s,
                             c.prepare("SELECT run, seq, state FROM snapshots WHERE run = ?1"));
    s->bind(1, run);
    VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) {
      return std::optional<Snapshot>();
    }
    Snapshot snap;
    snap.run = s->text(0);
    snap.seq = s->int64(1);
    VENTURE_ASSIGN_OR_RETURN(snap.state, json_column(*s, 2));
    return std::optional<Snapshot>(std::move(snap));
  });
}

Result<std::optional<std::string>> SqliteStore::get_setting(const std::string& key) {
  return with_reader([&](Conn& c) -> Result<std::optional<std::string>> {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare("SELECT value FROM settings WHERE key = ?1"));
    s->bind(1, key);
    VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) {
      return std::optional<std::string>();
    }
    return std::optional<std::string>(s->text(0));
  });
}

Result<std::vector<TokenRow>> SqliteStore::list_tokens() {
  return with_reader([&](Conn& c) -> Result<std::vector<TokenRow>> {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare(std::string("SELECT ") + kTokenColumns +
                                               " FROM tokens ORDER BY created_ms, id"));
    return read_tokens(*s);
  });
}

Result<TokenRow> SqliteStore::get_token_by_hash(const std::string& hash) {
  return with_reader([&](Conn& c) -> Result<TokenRow> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.prepare(std::string("SELECT ") + kTokenColumns +
                          " FROM tokens WHERE hash = ?1 ORDER BY created_ms, id LIMIT 1"));
    s->bind(1, hash);
    VENTURE_ASSIGN_OR_RETURN(std::vector<TokenRow> rows, read_tokens(*s));
    if (rows.empty()) {
      return not_found_error("token not found");
    }
    return std::move(rows.front());
  });
}

Result<TokenRow> SqliteStore::get_token(const std::string& id) {
  return with_reader([&](Conn& c) -> Result<TokenRow> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.prepare(std::string("SELECT ") + kTokenColumns + " FROM tokens WHERE id = ?1"));
    s->bind(1, id);
    VENTURE_ASSIGN_OR_RETURN(std::vector<TokenRow> rows, read_tokens(*s));
    if (rows.empty()) {
      return not_found_error("token " + id.substr(0, 80) + " not found");
    }
    return std::move(rows.front());
  });
}

Result<PatchRow> SqliteStore::get_patch(const std::string& id) {
  return with_reader([&](Conn& c) -> Result<PatchRow> {
    VENTURE_ASSIGN_OR_RETURN(
        auto s, c.prepare(std::string("SELECT ") + kPatchColumns + " FROM patches WHERE id = ?1"));
    s->bind(1, id);
    VENTURE_ASSIGN_OR_RETURN(std::vector<PatchRow> rows, read_patches(*s));
    if (rows.empty()) {
      return not_found_error("patch " + id.substr(0, 80) + " not found");
    }
    return std::move(rows.front());
  });
}

Result<std::vector<PatchRow>> SqliteStore::list_patches(const std::string& run) {
  return with_reader([&](Conn& c) -> Result<std::vector<PatchRow>> {
    VENTURE_ASSIGN_OR_RETURN(auto s,
                             c.prepare(std::string("SELECT ") + kPatchColumns +
                                       " FROM patches WHERE run = ?1 ORDER BY created_ms, id"));
    s->bind(1, run);
    return read_patches(*s);
  });
}

Result<ApprovalRow> SqliteStore::get_approval(const std::string& id) {
  return with_reader([&](Conn& c) -> Result<ApprovalRow> {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare(std::string("SELECT ") + kApprovalColumns +
                                               " FROM approvals WHERE id = ?1"));
    s->bind(1, id);
    VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) {
      return not_found_error("approval " + id.substr(0, 80) + " not found");
    }
    return approval_from_row(*s);
  });
}

Result<ApprovalPage> SqliteStore::list_approvals(const ApprovalFilter& filter) {
  const std::size_t limit = std::clamp<std::size_t>(filter.limit, 1, internal::kRunPageMax);
  std::pair<int64_t, std::string> after;
  if (!filter.cursor.empty()) {
    VENTURE_ASSIGN_OR_RETURN(after, internal::decode_run_cursor(filter.cursor));
  }
  std::string sql = std::string("SELECT ") + kApprovalColumns + " FROM approvals WHERE 1 = 1";
  if (!filter.status.empty()) {
    sql += " AND status = ?1";
  }
  if (!filter.run.empty()) {
    sql += " AND run = ?2";
  }
  if (!filter.cursor.empty()) {
    sql += " AND (created_ms < ?3 OR (created_ms = ?3 AND id < ?4))";
  }
  sql += " ORDER BY created_ms DESC, id DESC LIMIT ?5";
  return with_reader([&](Conn& c) -> Result<ApprovalPage> {
    VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare(sql));
    s->bind(1, filter.status);
    s->bind(2, filter.run);
    s->bind(3, after.first);
    s->bind(4, after.second);
    s->bind(5, static_cast<int64_t>(limit + 1));
    ApprovalPage page;
    while (true) {
      VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
      if (!row) {
        break;
      }
      if (page.items.size() == limit) {
        const ApprovalRow& last = page.items.back();
        page.next_cursor = internal::encode_run_cursor(last.created, last.id);
        break;
      }
      VENTURE_ASSIGN_OR_RETURN(ApprovalRow a, approval_from_row(*s));
      page.items.push_back(std::move(a));
    }
    return page;
  });
}

Result<VerifyReport> SqliteStore::verify() {
  VENTURE_ASSIGN_OR_RETURN(const int64_t last, last_seq());
  return with_reader([&](Conn& c) -> Result<VerifyReport> {
    internal::Verifier verifier(
        [&c](const std::string& hash) -> Result<std::optional<std::string>> {
          VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare("SELECT data FROM blobs WHERE hash = ?1"));
          s->bind(1, hash);
          VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
          return row ? std::optional<std::string>(s->text(0)) : std::nullopt;
        });
    const std::string sql = std::string("SELECT ") + kEventColumns +
                            " FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3";
    int64_t after = 0;
    bool more = true;
    while (more && after < last) {
      VENTURE_ASSIGN_OR_RETURN(auto s, c.prepare(sql));
      s->bind(1, after);
      s->bind(2, last);
      s->bind(3, kVerifyPageEvents);
      int64_t rows = 0;
      while (more) {
        VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
        if (!row) {
          break;
        }
        ++rows;
        after = s->int64(0);
        auto e = event_from_row(*s);
        more = e ? verifier.add(*e) : verifier.add_undecodable(after, e.error().message);
      }
      more = more && rows == kVerifyPageEvents;
    }
    VerifyReport report = verifier.finish();
    if (report.ok && report.events != last) {
      report.ok = false;
      report.first_bad_seq = report.events + 1;
      report.reason = "event missing";
      report.partitions.front().ok = false;
    }
    return report;
  });
}

Status SqliteStore::health() {
  Status st = with_reader([](Conn& c) -> Status { return c.exec("SELECT 1"); });
  if (!st) {
    return unavailable_error("storage " + path_ + ": " + st.error().message);
  }
  return ok();
}

// ---- open ----

Status migrate(Conn& c, Time now) {
  VENTURE_RETURN_IF_ERROR(
      c.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
             "applied_ms BIGINT NOT NULL)"));
  int64_t current = 0;
  {
    VENTURE_ASSIGN_OR_RETURN(auto s,
                             c.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
    VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
    current = row ? s->int64(0) : 0;
  }
  const int64_t latest = std::end(kMigrations)[-1].version;
  if (current > latest) {
    return failed_precondition_error("database schema version " + std::to_string(current) +
                                     " is newer than this binary's " + std::to_string(latest));
  }
  for (const Migration& m : kMigrations) {
    if (m.version <= current) {
      continue;
    }
    VENTURE_RETURN_IF_ERROR(c.exec("BEGIN IMMEDIATE"));
    Status st = c.exec(m.sql);
    if (st) {
      VENTURE_ASSIGN_OR_RETURN(
          auto s, c.prepare("INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)"));
      s->bind(1, m.version);
      s->bind(2, to_unix_ms(now));
      st = s->run();
    }
    if (!st) {
      (void)c.exec("ROLLBACK");
      return st.error();
    }
    VENTURE_RETURN_IF_ERROR(c.exec("COMMIT"));
  }
  return ok();
}

Result<std::optional<Event>> query_one_event(Conn& c, const std::string& where) {
  VENTURE_ASSIGN_OR_RETURN(
      auto s, c.prepare(std::string("SELECT ") + kEventColumns + " FROM events " + where +
                        " ORDER BY seq DESC LIMIT 1"));
  VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
  if (!row) {
    return std::optional<Event>();
  }
  VENTURE_ASSIGN_OR_RETURN(Event e, event_from_row(*s));
  return std::optional<Event>(std::move(e));
}

Result<internal::ChainState> load_chain(Conn& c, Time now) {
  VENTURE_ASSIGN_OR_RETURN(std::optional<Event> last, query_one_event(c, ""));
  VENTURE_ASSIGN_OR_RETURN(std::optional<Event> cp,
                           query_one_event(c, "WHERE type = 'audit.checkpoint'"));
  int64_t from = 1;
  if (cp) {
    const json::object* d = cp->data.if_object();
    from = (d != nullptr ? base::int_or(*d, "to_seq", -2) : -2) + 1;
  }
  std::vector<std::string> tail;
  VENTURE_ASSIGN_OR_RETURN(auto s,
                           c.prepare("SELECT hash FROM events WHERE seq >= ?1 ORDER BY seq"));
  s->bind(1, from);
  while (true) {
    VENTURE_ASSIGN_OR_RETURN(bool row, s->step());
    if (!row) {
      break;
    }
    tail.push_back(s->text(0));
  }
  return internal::restore_chain(last, cp, tail, now);
}

Error with_path(const std::string& path, const Error& e) {
  return Error(e.code, "storage " + path + ": " + e.message);
}

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite(const std::string& dir, Options options,
                                           base::Clock& clock, base::Random& random) {
  base::init_crypto();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return unavailable_error("storage: cannot create directory '" + dir + "': " + ec.message());
  }
  const std::string path = (std::filesystem::path(dir) / "venture.db").string();
  auto conn = Conn::open(path, options.fsync);
  if (!conn) {
    return with_path(path, conn.error());
  }
  const Time now = clock.now();
  if (auto st = migrate(**conn, now); !st) {
    return with_path(path, st.error());
  }
  auto chain = load_chain(**conn, now);
  if (!chain) {
    return with_path(path, chain.error());
  }
  return std::unique_ptr<Store>(std::make_unique<SqliteStore>(
      path, std::move(options), clock, random, std::move(*conn), std::move(*chain)));
}

}  // namespace venture::storage
