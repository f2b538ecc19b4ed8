// VENTURE_CHECK: always-on invariant assertions. A broken invariant is a bug and crashes at once;
// never CHECK external data (validate it and return an Error instead). Part of base.
#pragma once

namespace venture::base {
[[noreturn]] void check_failed(const char* file, int line, const char* expr, const char* msg);
}  // namespace venture::base

#define VENTURE_CHECK(cond)                                              \
  do {                                                                   \
    if (!(cond)) [[unlikely]] {                                          \
      ::venture::base::check_failed(__FILE__, __LINE__, #cond, nullptr); \
    }                                                                    \
  } while (false)

#define VENTURE_CHECK_MSG(cond, msg)                                   \
  do {                                                                 \
    if (!(cond)) [[unlikely]] {                                        \
      ::venture::base::check_failed(__FILE__, __LINE__, #cond, (msg)); \
    }                                                                  \
  } while (false)
