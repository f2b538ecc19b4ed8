// URL and header validation of outbound requests, with curl's own URL parser (so what is checked
// is what curl will use).
#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>

#include "egress/egress.h"

namespace venture::egress {
namespace {

struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlString {
  char* text = nullptr;
  ~CurlString() { curl_free(text); }
};

// A part of the URL, or "" when absent.
std::string part(CURLU* u, CURLUPart which, unsigned flags = 0) {
  CurlString s;
  if (curl_url_get(u, which, &s.text, flags) != CURLUE_OK || s.text == nullptr) return "";
  return s.text;
}

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

Result<Target> parse_target(std::string_view url) {
  if (url.size() > kUrlBytesMax) {
    return invalid_argument_error("the URL is longer than " + std::to_string(kUrlBytesMax) +
                                  " bytes");
  }
  for (char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F || c == ' ') {
      return invalid_argument_error("the URL contains a control character or a space");
    }
  }
  std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
  if (!u) return internal_error("curl_url failed");
  const std::string text(url);
  if (const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0); rc != CURLUE_OK) {
    return invalid_argument_error(std::string("the URL is not valid: ") + curl_url_strerror(rc));
  }
  Target t;
  t.scheme = part(u.get(), CURLUPART_SCHEME);
  t.scheme = ascii_lower(t.scheme);
  if (t.scheme != "http" && t.scheme != "https") {
    return invalid_argument_error("only http and https URLs are allowed, not '" + t.scheme + "'");
  }
  if (!part(u.get(), CURLUPART_USER).empty() || !part(u.get(), CURLUPART_PASSWORD).empty() ||
      !part(u.get(), CURLUPART_OPTIONS).empty()) {
    return invalid_argument_error("credentials in the URL (user:password@) are not allowed; send "
                                  "an Authorization header");
  }
  t.host = part(u.get(), CURLUPART_HOST, CURLU_URLDECODE);
  if (t.host.empty()) return invalid_argument_error("the URL has no host");
  for (char c : t.host) {
    const auto ch = static_cast<unsigned char>(c);
    if (ch <= 0x20 || ch >= 0x7F || c == '%' || c == '@' || c == '\\' || c == '/') {
      return invalid_argument_error("the URL's host contains a character a host cannot have");
    }
  }
  t.host = ascii_lower(t.host);
  const std::string port = part(u.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  unsigned port_number = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (ec != std::errc() || end != port.data() + port.size() || port_number == 0 ||
      port_number > 65535) {
    return invalid_argument_error("the URL's port is not valid");
  }
  t.port = static_cast<uint16_t>(port_number);
  curl_url_set(u.get(), CURLUPART_FRAGMENT, nullptr, 0);  // never sent
  t.url = part(u.get(), CURLUPART_URL);
  t.origin = t.scheme + "://" + t.host + ":" + std::to_string(t.port);
  return t;
}

Status check_header(std::string_view name, std::string_view value) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar)) {
    return invalid_argument_error("header name '" + std::string(name.substr(0, 64)) +
                                  "' is not a valid token");
  }
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return invalid_argument_error("header " + std::string(name) +
                                    " contains CR, LF or NUL");
    }
  }
  const std::string lower = ascii_lower(name);
  for (std::string_view reserved :
       {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te"}) {
    if (lower == reserved) {
      return invalid_argument_error("header " + std::string(name) +
                                    " is set by Venture and cannot be overridden");
    }
  }
  return ok();
}

}  // namespace venture::egress
