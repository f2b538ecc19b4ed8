#include "storage/sqlite_conn.h"

#include <limits>

namespace venture::storage::internal {

namespace {
constexpr int kBusyTimeoutMs = 5000;
}  // namespace

Error sqlite_error(sqlite3* db, int rc, std::string_view what) {
  std::string message = std::string(what) + ": " + sqlite3_errstr(rc);
  if (db != nullptr) {
    message += " (" + std::string(sqlite3_errmsg(db)) + ")";
  }
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return already_exists_error(std::move(message));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return data_loss_error(std::move(message));
    default:
      return unavailable_error(std::move(message));
  }
}

void Stmt::bind(int index, std::string_view text) {
  VENTURE_CHECK(text.size() <= static_cast<std::size_t>(std::numeric_limits<int>::max()));
  // A null destructor is SQLITE_STATIC (the macro is an old-style cast).
  const int rc =
      sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), nullptr);
  VENTURE_CHECK(rc == SQLITE_OK);
}

void Stmt::bind(int index, int64_t value) {
  VENTURE_CHECK(sqlite3_bind_int64(stmt_, index, value) == SQLITE_OK);
}

void Stmt::bind_null(int index) { VENTURE_CHECK(sqlite3_bind_null(stmt_, index) == SQLITE_OK); }

Result<bool> Stmt::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return sqlite_error(db_, rc, "sqlite step");
}

Status Stmt::run() {
  VENTURE_ASSIGN_OR_RETURN(bool row, step());
  (void)row;
  return ok();
}

std::string Stmt::text(int col) {
  const auto* p = sqlite3_column_text(stmt_, col);
  const int n = sqlite3_column_bytes(stmt_, col);
  if (p == nullptr) {
    return "";
  }
  return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
}

Result<std::unique_ptr<Conn>> Conn::open(const std::string& path, bool fsync) {
  // Memory statistics take a global mutex on every SQLite malloc and free; nothing reads them.
  // Only possible before SQLite initialises (the first open); later it is a harmless no-op.
  static const int kMemstatusOff = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)kMemstatusOff;
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    Error e = sqlite_error(db, rc, "cannot open SQLite database '" + path + "'");
    sqlite3_close_v2(db);
    return e;
  }
  std::unique_ptr<Conn> conn(new Conn(db));
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  VENTURE_RETURN_IF_ERROR(conn->exec("PRAGMA journal_mode=WAL"));
  VENTURE_RETURN_IF_ERROR(conn->exec(fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF"));
  // Page cache of up to 64 MiB (default 2 MiB): the hot pages of the runs, run_nodes and event
  // indexes stay in memory instead of being read back from the OS on every commit. Memory is
  // taken only as pages are used.
  VENTURE_RETURN_IF_ERROR(conn->exec("PRAGMA cache_size=-65536"));
  // Checkpoint the WAL every 4000 pages (16 MiB; default 1000): a page rewritten by many commits
  // is copied into the database once per checkpoint, and checkpoints run a quarter as often. (The
  // store's writer hands its checkpoints to a thread of their own: hand_off_checkpoints.)
  VENTURE_RETURN_IF_ERROR(conn->exec("PRAGMA wal_autocheckpoint=4000"));
  return conn;
}

void Conn::hand_off_checkpoints(void (*wake)(void* arg, int pages), void* arg) {
  wake_ = wake;
  wake_arg_ = arg;
  // Replaces the automatic checkpoint (itself a WAL hook) with the hand-off.
  sqlite3_wal_hook(
      db_,
      [](void* self, sqlite3*, const char*, int pages) {
        auto* conn = static_cast<Conn*>(self);
        conn->wake_(conn->wake_arg_, pages);
        return SQLITE_OK;
      },
      this);
}

Status Conn::checkpoint_passive() {
  const int rc =
      sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
    return sqlite_error(db_, rc, "WAL checkpoint failed");
  }
  return ok();
}

Conn::~Conn() {
  for (auto& [sql, stmt] : cache_) {
    sqlite3_finalize(stmt);
  }
  sqlite3_close_v2(db_);
}

Status Conn::exec(const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string what = std::string("sqlite exec '") + std::string(sql).substr(0, 40) + "'";
    sqlite3_free(err);
    return sqlite_error(db_, rc, what);
  }
  return ok();
}

Result<std::unique_ptr<Stmt>> Conn::prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
      return sqlite_error(db_, rc, "sqlite prepare");
    }
    it = cache_.emplace(sql, stmt).first;
  }
  return std::make_unique<Stmt>(db_, it->second);
}

}  // namespace venture::storage::internal
