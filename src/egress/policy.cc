// The address policy of the SSRF guard: the deny list of ARCHITECTURE §6, IPv4 embedded in IPv6,
// the host's own addresses, and the operator's allow-list.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

#include "egress/egress.h"

namespace venture::egress {
namespace {

struct V4Range {
  uint32_t base;
  int prefix;
  std::string_view what;
};

constexpr uint32_t v4(int a, int b, int c, int d) {
  return (static_cast<uint32_t>(a) << 24) | (static_cast<uint32_t>(b) << 16) |
         (static_cast<uint32_t>(c) << 8) | static_cast<uint32_t>(d);
}

// IANA special-purpose IPv4 blocks that are never a public destination.
constexpr V4Range kDeniedV4[] = {
    {v4(0, 0, 0, 0), 8, "\"this network\" (0.0.0.0/8)"},
    {v4(10, 0, 0, 0), 8, "private (10.0.0.0/8)"},
    {v4(100, 64, 0, 0), 10, "shared address space (100.64.0.0/10)"},
    {v4(127, 0, 0, 0), 8, "loopback (127.0.0.0/8)"},
    {v4(169, 254, 0, 0), 16, "link-local and cloud metadata (169.254.0.0/16)"},
    {v4(172, 16, 0, 0), 12, "private (172.16.0.0/12)"},
    {v4(192, 0, 0, 0), 24, "IETF protocol assignments (192.0.0.0/24)"},
    {v4(192, 0, 2, 0), 24, "documentation (192.0.2.0/24)"},
    {v4(192, 168, 0, 0), 16, "private (192.168.0.0/16)"},
    {v4(198, 18, 0, 0), 15, "benchmarking (198.18.0.0/15)"},
    {v4(198, 51, 100, 0), 24, "documentation (198.51.100.0/24)"},
    {v4(203, 0, 113, 0), 24, "documentation (203.0.113.0/24)"},
    {v4(224, 0, 0, 0), 4, "multicast (224.0.0.0/4)"},
    {v4(240, 0, 0, 0), 4, "reserved and broadcast (240.0.0.0/4)"},
};

uint32_t v4_of(const uint8_t* b) {
  return (static_cast<uint32_t>(b[0]) << 24) | (static_cast<uint32_t>(b[1]) << 16) |
         (static_cast<uint32_t>(b[2]) << 8) | static_cast<uint32_t>(b[3]);
}

std::optional<std::string> denied_v4(uint32_t a) {
  for (const V4Range& r : kDeniedV4) {
    const uint32_t mask = r.prefix == 0 ? 0 : ~uint32_t{0} << (32 - r.prefix);
    if ((a & mask) == r.base) return std::string(r.what);
  }
  return std::nullopt;
}

bool prefix_is(const Address& a, std::initializer_list<uint8_t> prefix) {
  return std::equal(prefix.begin(), prefix.end(), a.bytes.begin());
}

bool all_zero(const uint8_t* b, std::size_t n) {
  return std::all_of(b, b + n, [](uint8_t x) { return x == 0; });
}

Address from_v4(uint32_t a) {
  Address out;
  out.bytes[0] = static_cast<uint8_t>(a >> 24);
  out.bytes[1] = static_cast<uint8_t>(a >> 16);
  out.bytes[2] = static_cast<uint8_t>(a >> 8);
  out.bytes[3] = static_cast<uint8_t>(a);
  return out;
}

// The reason for an IPv4 address carried inside an IPv6 one.
std::optional<std::string> embedded(const Address& a, const uint8_t* v4_bytes,
                                    std::string_view form) {
  const uint32_t inner = v4_of(v4_bytes);
  if (auto why = denied_v4(inner)) {
    return std::string(form) + " of " + to_string(from_v4(inner)) + ", " + *why;
  }
  (void)a;
  return std::nullopt;
}

}  // namespace

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<Address> parse_address(std::string_view text) {
  if (text.size() > 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty() || text.size() > 45) {
    return invalid_argument_error("'" + std::string(text) + "' is not an IP address");
  }
  const std::string s(text);
  Address a;
  if (s.find(':') == std::string::npos) {
    in_addr v4addr{};
    if (inet_pton(AF_INET, s.c_str(), &v4addr) != 1) {
      return invalid_argument_error("'" + s + "' is not an IP address");
    }
    std::memcpy(a.bytes.data(), &v4addr, 4);
    return a;
  }
  in6_addr v6addr{};
  if (inet_pton(AF_INET6, s.c_str(), &v6addr) != 1) {
    return invalid_argument_error("'" + s + "' is not an IP address");
  }
  a.v6 = true;
  std::memcpy(a.bytes.data(), &v6addr, 16);
  return a;
}

std::string to_string(const Address& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.v6 ? AF_INET6 : AF_INET, a.bytes.data(), buf, sizeof buf);
  return buf;
}

std::optional<std::string> denied_reason(const Address& a) {
  if (!a.v6) return denied_v4(v4_of(a.bytes.data()));
  const uint8_t* b = a.bytes.data();
  if (all_zero(b, 16)) return "the unspecified address (::)";
  if (all_zero(b, 15) && b[15] == 1) return "loopback (::1)";
  if ((b[0] & 0xFE) == 0xFC) return "unique local (fc00::/7)";
  if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) return "link-local (fe80::/10)";
  if (b[0] == 0xFF) return "multicast (ff00::/8)";
  // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), ::ffff:0:a.b.c.d (SIIT translated).
  if (all_zero(b, 10) && b[10] == 0xFF && b[11] == 0xFF) {
    return embedded(a, b + 12, "IPv4-mapped address");
  }
  if (all_zero(b, 12)) return embedded(a, b + 12, "IPv4-compatible address");
  if (all_zero(b, 8) && b[8] == 0xFF && b[9] == 0xFF && b[10] == 0 && b[11] == 0) {
    return embedded(a, b + 12, "IPv4-translated address");
  }
  if (prefix_is(a, {0x00, 0x64, 0xFF, 0x9B}) && all_zero(b + 4, 8)) {
    return embedded(a, b + 12, "NAT64 address (64:ff9b::/96)");
  }
  if (prefix_is(a, {0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01})) {
    return "local-use NAT64 (64:ff9b:1::/48)";
  }
  if (prefix_is(a, {0x20, 0x02})) return embedded(a, b + 2, "6to4 address (2002::/16)");
  if (prefix_is(a, {0x20, 0x01, 0x00, 0x00})) return "Teredo (2001::/32)";
  return std::nullopt;
}

bool Cidr::contains(const Address& a) const {
  if (a.v6 != base.v6) return false;
  int left = prefix;
  for (std::size_t i = 0; left > 0; ++i, left -= 8) {
    const uint8_t mask = left >= 8 ? 0xFF : static_cast<uint8_t>(0xFF << (8 - left));
    if ((a.bytes[i] & mask) != (base.bytes[i] & mask)) return false;
  }
  return true;
}

Result<Cidr> parse_cidr(std::string_view text) {
  const auto slash = text.find('/');
  VENTURE_ASSIGN_OR_RETURN(Address base, parse_address(text.substr(0, slash)));
  const int bits = base.v6 ? 128 : 32;
  int prefix = bits;
  if (slash != std::string_view::npos) {
    const auto p = text.substr(slash + 1);
    const auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (ec != std::errc() || ptr != p.data() + p.size() || prefix < 0 || prefix > bits) {
      return invalid_argument_error("'" + std::string(text) +
                                    "' has no valid prefix length (0 to " +
                                    std::to_string(bits) + ")");
    }
  }
  return Cidr{base, prefix};
}

std::vector<Address> local_addresses() {
  std::vector<Address> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    Address a;
    if (i->ifa_addr->sa_family == AF_INET) {
      sockaddr_in sin{};
      std::memcpy(&sin, i->ifa_addr, sizeof sin);
      std::memcpy(a.bytes.data(), &sin.sin_addr, 4);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      sockaddr_in6 sin6{};
      std::memcpy(&sin6, i->ifa_addr, sizeof sin6);
      a.v6 = true;
      std::memcpy(a.bytes.data(), &sin6.sin6_addr, 16);
    } else {
      continue;
    }
    out.push_back(a);
  }
  freeifaddrs(list);
  return out;
}

Result<Policy> Policy::make(const std::vector<std::string>& allow,
                            std::vector<Address> own_addresses) {
  Policy p;
  for (const std::string& entry : allow) {
    if (entry.empty()) continue;
    const bool looks_numeric = entry.find(':') != std::string::npos ||
                               entry.find('/') != std::string::npos ||
                               std::isdigit(static_cast<unsigned char>(entry.back())) != 0;
    if (looks_numeric) {
      auto cidr = parse_cidr(entry);
      if (!cidr) return invalid_argument_error("egress.allow: " + cidr.error().message);
      p.allow_cidrs_.push_back(*cidr);
      continue;
    }
    const bool host_chars = std::all_of(entry.begin(), entry.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.';
    });
    if (!host_chars || entry.size() > 253) {
      return invalid_argument_error("egress.allow: '" + entry +
                                    "' is neither a CIDR block nor a host name");
    }
    p.allow_hosts_.push_back(ascii_lower(entry));
  }
  p.own_ = std::move(own_addresses);
  return p;
}

std::optional<std::string> Policy::check(std::string_view host, const Address& address) const {
  const std::string h = ascii_lower(host);
  if (std::find(allow_hosts_.begin(), allow_hosts_.end(), h) != allow_hosts_.end()) {
    return std::nullopt;
  }
  for (const Cidr& c : allow_cidrs_) {
    if (c.contains(address)) return std::nullopt;
  }
  if (auto why = denied_reason(address)) {
    return to_string(address) + " is " + *why;
  }
  // This host's addresses, also when written as IPv4-mapped IPv6.
  Address plain = address;
  const uint8_t* b = address.bytes.data();
  if (address.v6 && all_zero(b, 10) && b[10] == 0xFF && b[11] == 0xFF) {
    plain = from_v4(v4_of(b + 12));
  }
  if (std::find(own_.begin(), own_.end(), plain) != own_.end()) {
    return to_string(address) + " is an address of this host";
  }
  return std::nullopt;
}

}  // namespace venture::egress
