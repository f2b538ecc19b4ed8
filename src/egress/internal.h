// Helpers shared by the egress sources; not part of the module's API (include egress/egress.h).
#pragma once

#include <curl/curl.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace venture::egress {

// Owners of what curl's URL API hands out.
struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlString {
  char* text = nullptr;
  CurlString() = default;
  CurlString(const CurlString&) = delete;
  CurlString& operator=(const CurlString&) = delete;
  ~CurlString() { curl_free(text); }
};

// `text` (at most `max` bytes of it, then "...") with every byte outside printable ASCII
// percent-encoded, so a remote side's bytes can go into an error message (and so into JSON).
std::string printable(std::string_view text, std::size_t max);

}  // namespace venture::egress
