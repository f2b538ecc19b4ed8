// Fuzz target: bytes through the guard's parsers, which see what remote sides and workflows send:
// parse_target (a workflow's URL), check_header (its headers), resolve_location + next_hop (a
// server's Location against a fixed allowed URL) and parse_retry_after. They must never crash,
// hang or grow without bound; and a target they accept must hold the guard's invariants (http or
// https, a host without bytes no host has, an origin built from them).
//
// Input layout: the first byte picks what the rest is fed to; for check_header and the redirect,
// the rest splits at the first '\n' into two fields.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/base.h"
#include "egress/egress.h"

namespace {

using venture::egress::Hop;
using venture::egress::Target;

void check_target(const Target& t) {
  VENTURE_CHECK(t.scheme == "http" || t.scheme == "https");
  VENTURE_CHECK(!t.host.empty() && t.port != 0);
  for (char c : t.host) {
    const auto u = static_cast<unsigned char>(c);
    VENTURE_CHECK(u > 0x20 && u < 0x7F && c != '@' && c != '%' && c != '\\' && c != '/');
  }
  VENTURE_CHECK(t.origin == t.scheme + "://" + t.host + ":" + std::to_string(t.port));
  // What the guard accepted parses again to the same target (the URL it hands to curl).
  auto again = venture::egress::parse_target(t.url);
  VENTURE_CHECK(again && again->host == t.host && again->port == t.port);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto nl = all.find('\n');
  const std::string_view first = all.substr(0, nl);
  const std::string_view second = nl == std::string_view::npos ? "" : all.substr(nl + 1);
  switch (data[0] % 4) {
    case 0:
      if (auto t = venture::egress::parse_target(all)) check_target(*t);
      break;
    case 1:
      (void)venture::egress::check_header(first, second);
      break;
    case 2: {
      auto base = venture::egress::parse_target("http://api.example.com:8080/a/b?c=d");
      VENTURE_CHECK(base);
      Hop hop{"POST", *base, {{"Authorization", "x"}, {"Content-Type", "text/plain"}}, "body"};
      const int statuses[] = {301, 302, 303, 307, 308};
      const int status = statuses[first.size() % 5];
      if (auto next = venture::egress::next_hop(hop, status, second, base->origin)) {
        check_target(next->target);
        if (next->target.origin != base->origin) {
          for (const auto& [name, value] : next->headers) {
            VENTURE_CHECK(venture::egress::ascii_lower(name) != "authorization");
          }
        }
      }
      (void)venture::egress::resolve_location(first, second);
      break;
    }
    default: {
      auto wait = venture::egress::parse_retry_after(all, venture::from_unix_ms(0));
      VENTURE_CHECK(!wait || (*wait >= venture::Millis(0) &&
                              *wait <= venture::limits::kRetryAfterMax));
      break;
    }
  }
  return 0;
}
