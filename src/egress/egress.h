// egress: every outbound request Venture makes goes through here (the http node now; LLM, MCP and
// webhooks later). This first part is the address policy of the SSRF guard (ARCHITECTURE §6): which
// IP addresses a request may connect to, and the operator's allow-list; and the validation of a
// request's URL (with curl's own parser) and headers. The libcurl client that
// checks the address it actually connects to (CURLOPT_OPENSOCKETFUNCTION / PREREQFUNCTION), the
// redirect handling and the http node come with the rest of issue #4.
//
// Key types: Address (an IPv4 or IPv6 address), Policy (deny list + allow-list + the host's own
// addresses). Threading: Policy is immutable after construction; share it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/base.h"

namespace venture::egress {

// An IP address; IPv4 is kept as its 4 bytes (not mapped) so the two families never compare equal
// by accident.
struct Address {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4 uses bytes[0..3]

  friend bool operator==(const Address&, const Address&) = default;
};

// Strict numeric forms only: dotted-quad IPv4 ("10.0.0.1") or IPv6 ("::1", "[::1]",
// "::ffff:127.0.0.1"). Host names and the odd IPv4 spellings curl might accept are not addresses
// here: the guard checks the address a connection actually uses. kInvalidArgument otherwise.
[[nodiscard]] Result<Address> parse_address(std::string_view text);
std::string to_string(const Address& a);

// Why the address is never a legitimate destination, or nullopt: private, loopback, link-local,
// metadata, documentation, benchmarking, multicast, reserved and broadcast IPv4 ranges; ::, ::1,
// fc00::/7, fe80::/10, ff00::/8; and IPv4 embedded in IPv6 (mapped, compatible, SIIT-translated,
// NAT64 64:ff9b::/96, 6to4 2002::/16) is judged by the IPv4 it carries, while the local-use NAT64
// prefix 64:ff9b:1::/48 and Teredo 2001::/32 (whose IPv4 is obfuscated) are denied whole.
std::optional<std::string> denied_reason(const Address& a);

// A CIDR block ("10.1.2.0/24", "fd00::/8", or one address).
struct Cidr {
  Address base;
  int prefix = 0;
  bool contains(const Address& a) const;
};
[[nodiscard]] Result<Cidr> parse_cidr(std::string_view text);

// The addresses of this host's interfaces (getifaddrs), which are denied like loopback.
std::vector<Address> local_addresses();

// Host names and header names compare case-insensitively (ASCII).
std::string ascii_lower(std::string_view s);

// A request target as curl will use it: scheme http or https, no userinfo, a host (lower case,
// percent-decoded, IPv6 in brackets), the port (default for the scheme), the URL without its
// fragment, and the origin (for stripping credentials on a cross-origin redirect).
inline constexpr std::size_t kUrlBytesMax = 8192;
struct Target {
  std::string scheme;
  std::string host;
  uint16_t port = 0;
  std::string url;
  std::string origin;  // "https://api.example.com:443"
};
// kInvalidArgument with a plain reason: other schemes, credentials in the URL, control characters
// or spaces, no host, a host with characters no host has, a bad port.
[[nodiscard]] Result<Target> parse_target(std::string_view url);

// A request header a workflow may send: a token name, no CR/LF/NUL in the value, and not one of
// the headers Venture sets itself (Host, Content-Length, Transfer-Encoding, Connection, Upgrade,
// TE). kInvalidArgument naming the header.
[[nodiscard]] Status check_header(std::string_view name, std::string_view value);

class Policy {
 public:
  // `allow`: CIDRs and host names (exact, case-insensitive) that open exceptions to the deny list.
  // kInvalidArgument names the bad entry.
  [[nodiscard]] static Result<Policy> make(const std::vector<std::string>& allow,
                                           std::vector<Address> own_addresses);
  // nullopt when a connection to `address` (reached through the URL host `host`) is allowed;
  // else the reason, for the node's non-retryable `egress_denied` error.
  std::optional<std::string> check(std::string_view host, const Address& address) const;

 private:
  std::vector<Cidr> allow_cidrs_;
  std::vector<std::string> allow_hosts_;  // lower case
  std::vector<Address> own_;
};

}  // namespace venture::egress
