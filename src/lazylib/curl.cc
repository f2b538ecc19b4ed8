// The libcurl functions Venture calls (egress, the CLI's client), forwarded to libcurl.so.4,
// which is loaded at the first call. See lazylib.h.
#define CURL_DISABLE_TYPECHECK  // the definitions below, not curl.h's type-checking macros
#include <curl/curl.h>

#include <cstdarg>

#include "lazylib/lazylib.h"

namespace {

constexpr const char* kSoname = "libcurl.so.4";

void* library() {
  static void* const handle = venture::lazylib::open(kSoname, "libcurl4");
  return handle;
}

template <typename F>
F resolve(const char* name) {
  return reinterpret_cast<F>(venture::lazylib::symbol(library(), kSoname, name));
}

// One function: resolved once (a function-local static), then a plain indirect call.
#define VENTURE_CURL(ret, name, params, args)                            \
  extern "C" ret name params {                                           \
    static const auto real = resolve<ret(*) params>(#name); /* NOLINT */ \
    return real args;                                                    \
  }

// The variadic setters and getters take exactly one argument after the option: a long, a
// curl_off_t, a pointer or a function pointer, all passed alike on the 64-bit ABIs Venture
// builds for, so it is forwarded as one pointer-sized value.
#define VENTURE_CURL_VARIADIC(ret, name, handle_type, option_type)                   \
  extern "C" ret name(handle_type handle, option_type option, ...) {                 \
    static const auto real = resolve<ret (*)(handle_type, option_type, ...)>(#name); \
    va_list ap;                                                                      \
    va_start(ap, option);                                                            \
    void* value = va_arg(ap, void*);                                                 \
    va_end(ap);                                                                      \
    return real(handle, option, value);                                              \
  }

}  // namespace

static_assert(sizeof(void*) == sizeof(long) && sizeof(void*) == sizeof(curl_off_t),
              "the variadic forwarding assumes a 64-bit ABI");

VENTURE_CURL(CURLcode, curl_global_init, (long flags), (flags))
VENTURE_CURL(void, curl_global_cleanup, (void), ())
VENTURE_CURL(curl_version_info_data*, curl_version_info, (CURLversion v), (v))
VENTURE_CURL(CURL*, curl_easy_init, (void), ())
VENTURE_CURL(void, curl_easy_cleanup, (CURL * h), (h))
VENTURE_CURL(CURLcode, curl_easy_perform, (CURL * h), (h))
VENTURE_CURL(const char*, curl_easy_strerror, (CURLcode c), (c))
VENTURE_CURL_VARIADIC(CURLcode, curl_easy_setopt, CURL*, CURLoption)
VENTURE_CURL_VARIADIC(CURLcode, curl_easy_getinfo, CURL*, CURLINFO)
VENTURE_CURL(struct curl_slist*, curl_slist_append, (struct curl_slist * l, const char* s), (l, s))
VENTURE_CURL(void, curl_slist_free_all, (struct curl_slist * l), (l))
VENTURE_CURL(CURLM*, curl_multi_init, (void), ())
VENTURE_CURL(CURLMcode, curl_multi_cleanup, (CURLM * m), (m))
VENTURE_CURL(CURLMcode, curl_multi_add_handle, (CURLM * m, CURL* h), (m, h))
VENTURE_CURL(CURLMcode, curl_multi_remove_handle, (CURLM * m, CURL* h), (m, h))
VENTURE_CURL(CURLMcode, curl_multi_perform, (CURLM * m, int* running), (m, running))
VENTURE_CURL(CURLMcode, curl_multi_poll,
             (CURLM * m, struct curl_waitfd extra[], unsigned int n, int timeout_ms, int* ret),
             (m, extra, n, timeout_ms, ret))
VENTURE_CURL(CURLMcode, curl_multi_wakeup, (CURLM * m), (m))
VENTURE_CURL(CURLMsg*, curl_multi_info_read, (CURLM * m, int* left), (m, left))
VENTURE_CURL_VARIADIC(CURLMcode, curl_multi_setopt, CURLM*, CURLMoption)
VENTURE_CURL(CURLU*, curl_url, (void), ())
VENTURE_CURL(void, curl_url_cleanup, (CURLU * u), (u))
VENTURE_CURL(CURLUcode, curl_url_get, (CURLU * u, CURLUPart what, char** part, unsigned int flags),
             (u, what, part, flags))
VENTURE_CURL(CURLUcode, curl_url_set,
             (CURLU * u, CURLUPart what, const char* part, unsigned int flags),
             (u, what, part, flags))
VENTURE_CURL(const char*, curl_url_strerror, (CURLUcode c), (c))
VENTURE_CURL(time_t, curl_getdate, (const char* p, const time_t* unused), (p, unused))
VENTURE_CURL(void, curl_free, (void* p), (p))
