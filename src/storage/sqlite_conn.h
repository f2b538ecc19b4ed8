// Internal to storage: a thin RAII layer over one sqlite3 connection with a prepared-statement
// cache. A Conn is used by one thread at a time (the writer's, or a reader holding it from the
// pool); it is not itself synchronised.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/base.h"

namespace venture::storage::internal {

// Maps a SQLite result code to the canonical code (constraint -> kAlreadyExists, corruption ->
// kDataLoss, everything else -> kUnavailable: retry).
Error sqlite_error(sqlite3* db, int rc, std::string_view what);

// A cached statement, reset and unbound when this handle goes out of scope.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { reset(); }

  // Ready to bind and step again.
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  // Text is bound without copying: it must outlive the Step calls.
  void bind(int index, std::string_view text);
  void bind(int index, int64_t value);
  void bind_null(int index);
  // true: a row is available; false: done.
  [[nodiscard]] Result<bool> step();
  [[nodiscard]] Status run();  // Step to completion of a statement that returns no rows

  int64_t int64(int col) { return sqlite3_column_int64(stmt_, col); }
  bool is_null(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string text(int col);

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

class Conn {
 public:
  // Opens (creating) path with WAL, synchronous FULL/OFF and a busy timeout.
  [[nodiscard]] static Result<std::unique_ptr<Conn>> open(const std::string& path, bool fsync);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Runs one or more statements without results.
  [[nodiscard]] Status exec(const char* sql);
  // A cached prepared statement for sql.
  [[nodiscard]] Result<std::unique_ptr<Stmt>> prepare(const std::string& sql);
  // Checkpoints of this connection's WAL run elsewhere: no automatic checkpoint after a commit;
  // `wake(pages)` is called after each commit with the WAL's size in pages.
  void hand_off_checkpoints(void (*wake)(void* arg, int pages), void* arg);
  // One PASSIVE checkpoint (never blocks a writer or a reader; copies what it can).
  [[nodiscard]] Status checkpoint_passive();

 private:
  explicit Conn(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  void (*wake_)(void*, int) = nullptr;
  void* wake_arg_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

}  // namespace venture::storage::internal
