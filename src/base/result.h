// Error vocabulary: venture::Error with the canonical codes, Result<T>, and the propagation macros.
// Part of base; include "base/base.h".
#pragma once

#include <boost/system/result.hpp>
#include <string>
#include <string_view>
#include <utility>

namespace venture {

// Canonical codes, with Abseil's retry meaning: kUnavailable retry the call, kAborted reload and
// re-decide, kFailedPrecondition do not retry.
enum class Code : int {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kUnauthenticated,
  kFailedPrecondition,
  kAborted,
  kUnavailable,
  kDeadlineExceeded,
  kResourceExhausted,
  kCancelled,
  kDataLoss,
  kInternal,
  kUnimplemented,
};

// Stable snake_case name of a code ("invalid_argument"), used in events and problem types.
std::string_view code_name(Code code);

struct Error {
  Code code = Code::kInternal;
  std::string message;

  Error() = default;
  Error(Code c, std::string m) : code(c), message(std::move(m)) {}

  // "invalid_argument: message"
  std::string to_string() const;
  friend bool operator==(const Error&, const Error&) = default;
};

// Reached only when .value() is called on a Result holding an error: a bug, so it crashes.
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

template <class T>
using Result = boost::system::result<T, Error>;
using Status = Result<void>;

inline Status ok() { return {}; }

inline Error invalid_argument_error(std::string m) {
  return {Code::kInvalidArgument, std::move(m)};
}
inline Error not_found_error(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Error already_exists_error(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Error failed_precondition_error(std::string m) {
  return {Code::kFailedPrecondition, std::move(m)};
}
inline Error permission_denied_error(std::string m) {
  return {Code::kPermissionDenied, std::move(m)};
}
inline Error aborted_error(std::string m) { return {Code::kAborted, std::move(m)}; }
inline Error unavailable_error(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Error resource_exhausted_error(std::string m) {
  return {Code::kResourceExhausted, std::move(m)};
}
inline Error data_loss_error(std::string m) { return {Code::kDataLoss, std::move(m)}; }
inline Error internal_error(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Error deadline_exceeded_error(std::string m) {
  return {Code::kDeadlineExceeded, std::move(m)};
}
inline Error cancelled_error(std::string m) { return {Code::kCancelled, std::move(m)}; }

}  // namespace venture

#define VENTURE_CONCAT_INNER(a, b) a##b
#define VENTURE_CONCAT(a, b) VENTURE_CONCAT_INNER(a, b)

// Returns the error of a Result/Status expression from the enclosing function.
#define VENTURE_RETURN_IF_ERROR(expr)                                \
  do {                                                               \
    auto&& venture_status_ = (expr);                                 \
    if (!venture_status_) return std::move(venture_status_).error(); \
  } while (false)

// `lhs` may be a declaration (`auto x`) and `tmp` is a generated name, so neither can be
// parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define VENTURE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp) return std::move(tmp).error();            \
  lhs = std::move(*tmp)
// NOLINTEND(bugprone-macro-parentheses)

// VENTURE_ASSIGN_OR_RETURN(auto x, Foo()); assigns the value or returns the error.
#define VENTURE_ASSIGN_OR_RETURN(lhs, expr) \
  VENTURE_ASSIGN_OR_RETURN_IMPL(VENTURE_CONCAT(venture_result_, __LINE__), lhs, expr)

// Coroutine twins.
#define VENTURE_CO_RETURN_IF_ERROR(expr)                                \
  do {                                                                  \
    auto&& venture_status_ = (expr);                                    \
    if (!venture_status_) co_return std::move(venture_status_).error(); \
  } while (false)

// NOLINTBEGIN(bugprone-macro-parentheses): as VENTURE_ASSIGN_OR_RETURN_IMPL.
#define VENTURE_CO_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                     \
  if (!tmp) co_return std::move(tmp).error();            \
  lhs = std::move(*tmp)
// NOLINTEND(bugprone-macro-parentheses)

#define VENTURE_CO_ASSIGN_OR_RETURN(lhs, expr) \
  VENTURE_CO_ASSIGN_OR_RETURN_IMPL(VENTURE_CONCAT(venture_result_, __LINE__), lhs, expr)
