// Redirect rules (Location resolution with curl's URL parser, method rewriting, credentials on a
// change of origin) and HTTP dates (Retry-After). Pure functions; the Client applies them.
#include <curl/curl.h>

#include <algorithm>
#include <charconv>
#include <memory>

#include "egress/egress.h"
#include "egress/internal.h"

namespace venture::egress {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool drop_on_get(std::string_view name) {
  const std::string n = ascii_lower(name);
  return n == "content-type" || n == "content-encoding" || n == "content-language" ||
         n == "content-location";
}

bool credential(std::string_view name) {
  const std::string n = ascii_lower(name);
  return n == "authorization" || n == "cookie" || n == "proxy-authorization";
}

}  // namespace

std::string printable(std::string_view text, std::size_t max) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7F) {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    } else {
      out += c;
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

bool is_redirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

Result<std::string> resolve_location(std::string_view base, std::string_view location) {
  location = trim(location);
  if (location.empty()) return invalid_argument_error("the Location header is empty");
  if (location.size() > kUrlBytesMax) {
    return invalid_argument_error("the Location is longer than " + std::to_string(kUrlBytesMax) +
                                  " bytes");
  }
  for (char c : location) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      return invalid_argument_error("the Location contains a control character");
    }
  }
  std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
  if (!u) return internal_error("curl_url failed");
  const std::string base_text(base);
  if (curl_url_set(u.get(), CURLUPART_URL, base_text.c_str(), 0) != CURLUE_OK) {
    return invalid_argument_error("the URL redirected from is not absolute");
  }
  // The flags curl's own redirect following uses, and any scheme (refused by name later).
  const std::string text(location);
  const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, text.c_str(),
                                    CURLU_URLENCODE | CURLU_ALLOW_SPACE |
                                        CURLU_NON_SUPPORT_SCHEME);
  if (rc != CURLUE_OK) {
    return invalid_argument_error(std::string("the Location is not a URL: ") +
                                  curl_url_strerror(rc));
  }
  CurlString out;
  if (curl_url_get(u.get(), CURLUPART_URL, &out.text, 0) != CURLUE_OK || out.text == nullptr) {
    return invalid_argument_error("the Location is not a URL");
  }
  return std::string(out.text);
}

Result<Hop> next_hop(const Hop& current, int status, std::string_view location,
                     std::string_view first_origin) {
  auto absolute = resolve_location(current.target.url, location);
  if (!absolute) {
    return invalid_argument_error("redirect to '" + printable(location, 200) + "': " +
                                  absolute.error().message);
  }
  auto target = parse_target(*absolute);
  if (!target) {
    return permission_denied_error("redirect to '" + printable(*absolute, 200) +
                                   "' refused: " + target.error().message);
  }
  Hop next;
  next.method = current.method;
  next.target = std::move(*target);
  next.body = current.body;
  next.headers = current.headers;
  const bool to_get = (status == 303 && current.method != "HEAD") ||
                      ((status == 301 || status == 302) && current.method == "POST");
  if (to_get) {
    next.method = "GET";
    next.body.clear();
    std::erase_if(next.headers, [](const auto& h) { return drop_on_get(h.first); });
  }
  if (next.target.origin != first_origin) {
    std::erase_if(next.headers, [](const auto& h) { return credential(h.first); });
  }
  return next;
}

std::optional<Time> parse_http_date(std::string_view text) {
  text = trim(text);
  if (text.empty() || text.size() > 64) return std::nullopt;
  const std::string s(text);
  const time_t t = curl_getdate(s.c_str(), nullptr);
  if (t < 0) return std::nullopt;
  return from_unix_ms(static_cast<int64_t>(t) * 1000);
}

std::optional<Millis> parse_retry_after(std::string_view value, Time reference) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  const Millis cap = limits::kRetryAfterMax;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return cap;  // more than 31 years: far beyond the cap
    int64_t seconds = 0;
    std::from_chars(value.data(), value.data() + value.size(), seconds);
    return std::min(Millis(seconds * 1000), cap);
  }
  const auto date = parse_http_date(value);
  if (!date) return std::nullopt;
  const Millis delta = std::chrono::duration_cast<Millis>(*date - reference);
  return std::clamp(delta, Millis(0), cap);
}

}  // namespace venture::egress
