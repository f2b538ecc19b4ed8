// The libpq functions storage/postgres calls, forwarded to libpq.so.5, which is loaded at the
// first call (the first PostgreSQL connection). See lazylib.h.
#include <libpq-fe.h>

#include "lazylib/lazylib.h"

namespace {

constexpr const char* kSoname = "libpq.so.5";

void* library() {
  static void* const handle = venture::lazylib::open(kSoname, "libpq5");
  return handle;
}

template <typename F>
F resolve(const char* name) {
  return reinterpret_cast<F>(venture::lazylib::symbol(library(), kSoname, name));
}

#define VENTURE_PQ(ret, name, params, args)                              \
  extern "C" ret name params {                                           \
    static const auto real = resolve<ret(*) params>(#name); /* NOLINT */ \
    return real args;                                                    \
  }

}  // namespace

VENTURE_PQ(PGconn*, PQconnectdb, (const char* conninfo), (conninfo))
VENTURE_PQ(PGconn*, PQconnectdbParams,
           (const char* const* keywords, const char* const* values, int expand_dbname),
           (keywords, values, expand_dbname))
VENTURE_PQ(void, PQfinish, (PGconn * c), (c))
VENTURE_PQ(ConnStatusType, PQstatus, (const PGconn* c), (c))
VENTURE_PQ(char*, PQerrorMessage, (const PGconn* c), (c))
VENTURE_PQ(PGresult*, PQexec, (PGconn * c, const char* query), (c, query))
VENTURE_PQ(PGresult*, PQexecParams,
           (PGconn * c, const char* command, int n, const Oid* types, const char* const* values,
            const int* lengths, const int* formats, int result_format),
           (c, command, n, types, values, lengths, formats, result_format))
VENTURE_PQ(PGresult*, PQprepare,
           (PGconn * c, const char* name, const char* query, int n, const Oid* types),
           (c, name, query, n, types))
VENTURE_PQ(PGresult*, PQexecPrepared,
           (PGconn * c, const char* name, int n, const char* const* values, const int* lengths,
            const int* formats, int result_format),
           (c, name, n, values, lengths, formats, result_format))
VENTURE_PQ(int, PQsendQueryPrepared,
           (PGconn * c, const char* name, int n, const char* const* values, const int* lengths,
            const int* formats, int result_format),
           (c, name, n, values, lengths, formats, result_format))
VENTURE_PQ(PGresult*, PQgetResult, (PGconn * c), (c))
VENTURE_PQ(int, PQenterPipelineMode, (PGconn * c), (c))
VENTURE_PQ(int, PQexitPipelineMode, (PGconn * c), (c))
VENTURE_PQ(int, PQpipelineSync, (PGconn * c), (c))
VENTURE_PQ(void, PQclear, (PGresult * r), (r))
VENTURE_PQ(ExecStatusType, PQresultStatus, (const PGresult* r), (r))
VENTURE_PQ(char*, PQresultErrorMessage, (const PGresult* r), (r))
VENTURE_PQ(char*, PQresultErrorField, (const PGresult* r, int field), (r, field))
VENTURE_PQ(char*, PQcmdStatus, (PGresult * r), (r))
VENTURE_PQ(int, PQntuples, (const PGresult* r), (r))
VENTURE_PQ(char*, PQgetvalue, (const PGresult* r, int row, int field), (r, row, field))
VENTURE_PQ(int, PQgetlength, (const PGresult* r, int row, int field), (r, row, field))
VENTURE_PQ(int, PQgetisnull, (const PGresult* r, int row, int field), (r, row, field))
