// Internal to storage: a thin RAII layer over one libpq connection (PGconn) with a per-connection
// prepared-statement cache and pipelined execution. Every parameter and result is text format.
// A PgConn is used by one thread at a time (whoever holds it from the store's pool); it is not
// itself synchronised. Blocking: every call waits for the server.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/base.h"

namespace venture::storage::internal {

// A statement parameter in text form; nullopt is SQL NULL.
using PgParam = std::optional<std::string>;
using PgParams = std::vector<PgParam>;

// One result set, freed when the handle goes away. Values are external data: int64() validates.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* res) : res_(res, &PQclear) {}

  int rows() const { return res_ ? PQntuples(res_.get()) : 0; }
  // Out-of-range rows read as NULL / "" / kDataLoss, never as a crash.
  bool is_null(int row, int col) const { return !res_ || PQgetisnull(res_.get(), row, col) != 0; }
  std::string text(int row, int col) const;
  // kDataLoss when the column is not a decimal integer.
  [[nodiscard]] Result<int64_t> int64(int row, int col) const;

 private:
  std::shared_ptr<PGresult> res_;
};

// One statement of a pipeline. `what` names it in an error message.
struct PgQuery {
  std::string sql;
  PgParams params;
  std::string what;
};

class PgConn {
 public:
  // Connects (connect_timeout kConnectTimeout unless the URL sets one) and sets the session's
  // synchronous_commit from `fsync`. kUnavailable when the server cannot be reached.
  [[nodiscard]] static Result<std::unique_ptr<PgConn>> connect(const std::string& url, bool fsync);
  ~PgConn();
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  // True once the connection is lost: the pool drops it and the next call reconnects.
  bool broken() const { return poisoned_ || PQstatus(conn_) != CONNECTION_OK; }

  // Runs one or more statements without parameters or results (simple protocol).
  [[nodiscard]] Status exec(const std::string& sql);
  // COMMIT, checking that the server really committed: COMMIT of a transaction that an earlier
  // error aborted "succeeds" with the tag ROLLBACK, which is reported here as kAborted.
  [[nodiscard]] Status commit();
  // Runs a cached prepared statement (prepared on first use on this connection).
  [[nodiscard]] Result<PgResult> query(const std::string& sql, const PgParams& params);
  // Runs the statements as pipelines of up to kPipelineDepthMax (one round trip each) and returns
  // their results in order. On the first failure the statements after it in its pipeline are not
  // run (the server skips them) and its error is returned; the caller rolls back.
  [[nodiscard]] Result<std::vector<PgResult>> pipeline(const std::vector<PgQuery>& queries);

 private:
  explicit PgConn(PGconn* conn) : conn_(conn) {}
  // The cached statement name for sql, preparing it if needed.
  Result<std::string> prepare(const std::string& sql);
  // The error of a failed result (or of the connection when res is null).
  Error error(const PGresult* res, std::string_view what) const;
  Result<std::vector<PgResult>> run_pipeline(const std::vector<PgQuery>& queries, std::size_t begin,
                                             std::size_t end);

  PGconn* conn_;
  bool poisoned_ = false;  // a pipeline ended out of step: never reuse this connection
  std::unordered_map<std::string, std::string> prepared_;  // sql -> statement name
};

}  // namespace venture::storage::internal
