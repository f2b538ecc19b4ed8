// libpq wrapper: connection, prepared-statement cache, pipelines and error mapping.
#include "storage/pg_conn.h"

#include <charconv>
#include <cstring>

namespace venture::storage::internal {
namespace {

// Bounds of this wrapper. A pipeline is synced every kPipelineDepthMax statements so that neither
// side's socket buffer fills while the other waits (libpq's blocking-mode pipeline caveat).
constexpr std::size_t kPipelineDepthMax = 128;
constexpr const char* kConnectTimeoutSeconds = "5";
constexpr const char* kStatementTimeout = "60s";
constexpr std::size_t kPreparedMax = 512;  // distinct statements cached per connection

// SQLSTATE -> canonical code. Unique violations are conflicts; connection, resource and
// serialization failures are retryable; anything else is a bug in our SQL or data the server
// rejected.
Code code_of(std::string_view sqlstate) {
  if (sqlstate == "23505") {
    return Code::kAlreadyExists;
  }
  if (sqlstate.starts_with("08") || sqlstate.starts_with("40") || sqlstate.starts_with("53") ||
      sqlstate.starts_with("57") || sqlstate.starts_with("55") || sqlstate.empty()) {
    return Code::kUnavailable;
  }
  if (sqlstate.starts_with("22") || sqlstate.starts_with("23")) {
    return Code::kInvalidArgument;
  }
  return Code::kInternal;
}

std::string first_line(const char* text) {
  std::string s = text != nullptr ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s.substr(0, 500);
}

}  // namespace

std::string PgResult::text(int row, int col) const {
  const char* v = res_ ? PQgetvalue(res_.get(), row, col) : nullptr;  // null when out of range
  return v == nullptr ? std::string()
                      : std::string(v, static_cast<std::size_t>(PQgetlength(res_.get(), row, col)));
}

Result<int64_t> PgResult::int64(int row, int col) const {
  const char* v = res_ ? PQgetvalue(res_.get(), row, col) : nullptr;
  if (v == nullptr) {
    return data_loss_error("row " + std::to_string(row) + " is missing");
  }
  const char* end = v + PQgetlength(res_.get(), row, col);
  int64_t out = 0;
  auto [ptr, ec] = std::from_chars(v, end, out);
  if (ec != std::errc() || ptr != end) {
    return data_loss_error("column " + std::to_string(col) + " is not an integer");
  }
  return out;
}

Result<std::unique_ptr<PgConn>> PgConn::connect(const std::string& url, bool fsync) {
  // Later keywords override earlier ones, so a connect_timeout in the URL wins.
  // TCP keepalives notice a vanished server within ~25 s even while a call blocks on a read.
  const char* keys[] = {"connect_timeout",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "application_name",
                        "dbname",
                        nullptr};
  const char* values[] = {kConnectTimeoutSeconds, "10", "5", "3", "venture", url.c_str(), nullptr};
  PGconn* raw = PQconnectdbParams(keys, values, 1);
  if (raw == nullptr) {
    return unavailable_error("postgres: out of memory connecting");
  }
  std::unique_ptr<PgConn> conn(new PgConn(raw));
  if (PQstatus(raw) != CONNECTION_OK) {
    return unavailable_error("postgres: cannot connect: " + first_line(PQerrorMessage(raw)));
  }
  // Notices ("… already exists, skipping") would go to stderr; errors come back as results.
  VENTURE_RETURN_IF_ERROR(conn->exec("SET client_min_messages = warning"));
  // Every statement (a lock wait included) has a deadline: kUnavailable after it, never a hang.
  VENTURE_RETURN_IF_ERROR(
      conn->exec(std::string("SET statement_timeout = '") + kStatementTimeout + "'"));
  VENTURE_RETURN_IF_ERROR(
      conn->exec(fsync ? "SET synchronous_commit = on" : "SET synchronous_commit = off"));
  return conn;
}

PgConn::~PgConn() { PQfinish(conn_); }

Error PgConn::error(const PGresult* res, std::string_view what) const {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const char* message = res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn_);
  if (message == nullptr || *message == '\0') {
    message = PQerrorMessage(conn_);
  }
  Code code = code_of(state != nullptr ? state : "");
  if (broken()) {
    code = Code::kUnavailable;
  }
  return Error(code, "postgres: " + std::string(what) + ": " + first_line(message));
}

Status PgConn::exec(const std::string& sql) {
  PGresult* res = PQexec(conn_, sql.c_str());
  const ExecStatusType st = res != nullptr ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    Error e = error(res, sql.substr(0, 60));
    PQclear(res);
    return e;
  }
  PQclear(res);
  return ok();
}

Status PgConn::commit() {
  PGresult* res = PQexec(conn_, "COMMIT");
  if (res == nullptr || PQresultStatus(res) != PGRES_COMMAND_OK) {
    Error e = error(res, "commit");
    PQclear(res);
    return e;
  }
  const std::string tag = PQcmdStatus(res);
  PQclear(res);
  if (tag != "COMMIT") {
    return aborted_error("postgres: the transaction was rolled back (" + tag + ")");
  }
  return ok();
}

Result<std::string> PgConn::prepare(const std::string& sql) {
  if (auto it = prepared_.find(sql); it != prepared_.end()) {
    return it->second;
  }
  if (prepared_.size() >= kPreparedMax) {
    PQclear(PQexec(conn_, "DEALLOCATE ALL"));
    prepared_.clear();
  }
  std::string name = "v" + std::to_string(prepared_.size());
  PGresult* res = PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr);
  const bool good = res != nullptr && PQresultStatus(res) == PGRES_COMMAND_OK;
  if (!good) {
    Error e = error(res, "prepare " + sql.substr(0, 60));
    PQclear(res);
    return e;
  }
  PQclear(res);
  prepared_.emplace(sql, name);
  return name;
}

namespace {

// Pointers into params for libpq (which reads them during the call). Text parameters end at
// their first NUL, so one holding a NUL would be stored cut short: kInvalidArgument instead.
Result<std::vector<const char*>> values_of(const PgParams& params, std::string_view what) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const PgParam& p : params) {
    if (p && p->find('\0') != std::string::npos) {
      return invalid_argument_error("postgres: " + std::string(what) +
                                    ": a text value holds a NUL byte");
    }
    values.push_back(p ? p->c_str() : nullptr);
  }
  return values;
}

}  // namespace

Result<PgResult> PgConn::query(const std::string& sql, const PgParams& params) {
  VENTURE_ASSIGN_OR_RETURN(const std::vector<const char*> values, values_of(params, "query"));
  VENTURE_ASSIGN_OR_RETURN(const std::string name, prepare(sql));
  PGresult* res = PQexecPrepared(conn_, name.c_str(), static_cast<int>(values.size()),
                                 values.data(), nullptr, nullptr, 0);
  const ExecStatusType st = res != nullptr ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    Error e = error(res, sql.substr(0, 60));
    PQclear(res);
    return e;
  }
  return PgResult(res);
}

Result<std::vector<PgResult>> PgConn::pipeline(const std::vector<PgQuery>& queries) {
  std::vector<PgResult> out;
  out.reserve(queries.size());
  for (std::size_t begin = 0; begin < queries.size(); begin += kPipelineDepthMax) {
    const std::size_t end = std::min(queries.size(), begin + kPipelineDepthMax);
    VENTURE_ASSIGN_OR_RETURN(std::vector<PgResult> part, run_pipeline(queries, begin, end));
    for (PgResult& r : part) {
      out.push_back(std::move(r));
    }
  }
  return out;
}

Result<std::vector<PgResult>> PgConn::run_pipeline(const std::vector<PgQuery>& queries,
                                                   std::size_t begin, std::size_t end) {
  std::vector<std::string> names;
  std::vector<std::vector<const char*>> values;
  names.reserve(end - begin);
  values.reserve(end - begin);
  for (std::size_t i = begin; i < end; ++i) {
    VENTURE_ASSIGN_OR_RETURN(std::vector<const char*> v,
                             values_of(queries[i].params, queries[i].what));
    values.push_back(std::move(v));
    VENTURE_ASSIGN_OR_RETURN(std::string name, prepare(queries[i].sql));
    names.push_back(std::move(name));
  }
  if (PQenterPipelineMode(conn_) != 1) {
    return error(nullptr, "enter pipeline mode");
  }
  std::optional<Error> failure;
  std::size_t sent = 0;
  for (std::size_t i = begin; i < end && !failure; ++i) {
    const std::vector<const char*>& v = values[i - begin];
    if (PQsendQueryPrepared(conn_, names[i - begin].c_str(), static_cast<int>(v.size()), v.data(),
                            nullptr, nullptr, 0) != 1) {
      failure = error(nullptr, queries[i].what);
      break;
    }
    ++sent;
  }
  if (PQpipelineSync(conn_) != 1 && !failure) {
    failure = error(nullptr, "pipeline sync");
  }
  std::vector<PgResult> out;
  out.reserve(sent);
  // Each statement yields its result(s) then a null; the sync yields PGRES_PIPELINE_SYNC.
  for (std::size_t i = 0; i < sent && !broken(); ++i) {
    PgResult kept;
    while (PGresult* res = PQgetResult(conn_)) {
      const ExecStatusType st = PQresultStatus(res);
      // The failing statement's error, or (a statement skipped after it) the abort.
      if ((st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED) && !failure) {
        failure = error(res, queries[begin + i].what);
      }
      kept = PgResult(res);
    }
    out.push_back(std::move(kept));
  }
  // Then the sync's result. A null here is a stray statement end; more than a few mean the sync
  // was never sent (a failed send), so stop waiting.
  for (int nulls = 0; !broken() && nulls < 3;) {
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) {
      ++nulls;
      continue;
    }
    const ExecStatusType st = PQresultStatus(res);
    PQclear(res);
    if (st == PGRES_PIPELINE_SYNC) {
      break;
    }
  }
  if (broken()) {
    return failure ? *failure : error(nullptr, "pipeline");
  }
  if (PQexitPipelineMode(conn_) != 1) {
    poisoned_ = true;
    return unavailable_error("postgres: pipeline out of step: " +
                             first_line(PQerrorMessage(conn_)));
  }
  if (failure) {
    return *failure;
  }
  return out;
}

}  // namespace venture::storage::internal
