// URL and header validation of outbound requests, with curl's own URL parser (so what is checked
// is what curl will use).
#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>

#include "egress/egress.h"
#include "egress/internal.h"

namespace venture::egress {
namespace {

// A part of the URL, or "" when absent.
std::string part(CURLU* u, CURLUPart which, unsigned flags = 0) {
  CurlString s;
  if (curl_url_get(u, which, &s.text, flags) != CURLUE_OK || s.text == nullptr) return "";
  return s.text;
}

// Whether the URL has the part at all (an empty user is still a user).
bool has_part(CURLU* u, CURLUPart which) {
  CurlString s;
  return curl_url_get(u, which, &s.text, 0) == CURLUE_OK && s.text != nullptr;
}

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

namespace {

Result<Target> parse_target_once(std::string_view url) {
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
  // Any userinfo at all, even an empty one ("http://:@host/" makes curl send Basic auth).
  if (has_part(u.get(), CURLUPART_USER) || has_part(u.get(), CURLUPART_PASSWORD) ||
      has_part(u.get(), CURLUPART_OPTIONS)) {
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

}  // namespace

// curl's parser is not idempotent on every input ("http://%31%32%37.0/" gives host "127.0" and
// the URL "http://127.0/", which parses to host "127.0.0.0"): the URL is normalised until it is
// a fixed point, so the target's host is the host curl will use for the URL it is given.
Result<Target> parse_target(std::string_view url) {
  VENTURE_ASSIGN_OR_RETURN(Target t, parse_target_once(url));
  for (int i = 0; i < 3; ++i) {
    VENTURE_ASSIGN_OR_RETURN(Target again, parse_target_once(t.url));
    if (again.url == t.url && again.host == t.host && again.port == t.port) return t;
    t = std::move(again);
  }
  return invalid_argument_error("the URL has no stable form");
}

Result<std::string> append_query(std::string_view url,
                                 const std::vector<std::pair<std::string, std::string>>& params) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  auto encode = [](std::string_view in) {
    std::string out;
    for (char c : in) {
      const auto u = static_cast<unsigned char>(c);
      if (std::isalnum(u) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
        out += c;
      } else {
        out += '%';
        out += kHex[u >> 4];
        out += kHex[u & 0xF];
      }
    }
    return out;
  };
  std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
  if (!u) return internal_error("curl_url failed");
  const std::string text(url);
  if (const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0); rc != CURLUE_OK) {
    return invalid_argument_error(std::string("the URL is not valid: ") + curl_url_strerror(rc));
  }
  for (const auto& [name, value] : params) {
    const std::string pair = encode(name) + "=" + encode(value);
    if (curl_url_set(u.get(), CURLUPART_QUERY, pair.c_str(), CURLU_APPENDQUERY) != CURLUE_OK) {
      return invalid_argument_error("cannot add the query parameter " + encode(name));
    }
  }
  std::string out = part(u.get(), CURLUPART_URL);
  if (out.empty()) return invalid_argument_error("the URL is not valid");
  return out;
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
