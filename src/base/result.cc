#include <cstdio>
#include <cstdlib>

#include "base/base.h"

namespace venture {

std::string_view code_name(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kNotFound:
      return "not_found";
    case Code::kAlreadyExists:
      return "already_exists";
    case Code::kPermissionDenied:
      return "permission_denied";
    case Code::kUnauthenticated:
      return "unauthenticated";
    case Code::kFailedPrecondition:
      return "failed_precondition";
    case Code::kAborted:
      return "aborted";
    case Code::kUnavailable:
      return "unavailable";
    case Code::kDeadlineExceeded:
      return "deadline_exceeded";
    case Code::kResourceExhausted:
      return "resource_exhausted";
    case Code::kCancelled:
      return "cancelled";
    case Code::kDataLoss:
      return "data_loss";
    case Code::kInternal:
      return "internal";
    case Code::kUnimplemented:
      return "unimplemented";
  }
  return "unknown";
}

std::string Error::to_string() const {
  std::string out(code_name(code));
  out += ": ";
  out += message;
  return out;
}

void throw_exception_from_error(const Error& e, const boost::source_location& loc) {
  std::fprintf(stderr, "FATAL %s:%u: value() of a Result holding %s\n", loc.file_name(),
               static_cast<unsigned>(loc.line()), e.to_string().c_str());
  std::abort();
}

namespace base {
void check_failed(const char* file, int line, const char* expr, const char* msg) {
  std::fprintf(stderr, "FATAL %s:%d: CHECK(%s) failed%s%s\n", file, line, expr, msg ? ": " : "",
               msg ? msg : "");
  std::fflush(stderr);
  std::abort();
}
}  // namespace base

}  // namespace venture
