// egress: every outbound request Venture makes goes through here (the http node now; LLM, MCP and
// webhooks later), behind the SSRF guard of ARCHITECTURE §6.
//
// - The address policy: which IP addresses a request may connect to (the deny list, IPv4 embedded
//   in IPv6, this host's own addresses) and the operator's allow-list (Policy).
// - Request validation with curl's own URL parser (parse_target) and of headers (check_header),
//   and the redirect rules (resolve_location, next_hop).
// - Client: a libcurl multi handle driven by one thread of its own; thousands of requests in
//   flight, keep-alive connections reused, and the guard applied to the address every
//   connection actually uses (CURLOPT_OPENSOCKETFUNCTION for new connections,
//   CURLOPT_PREREQFUNCTION for every request, also on a reused connection), redirects followed
//   hop by hop with the checks repeated, DNS pinned within a request, sizes and time bounded.
//
// Key types: Address, Policy, Target, Request, Response, Client. Threading: Policy is immutable
// after construction (share it); the free functions are pure; Client is thread-safe (send from
// any thread; callbacks run on the client's thread).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
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

// A request target as curl will use it: scheme http or https, no userinfo (not even an empty
// "http://:@host/"), a host (lower case, percent-decoded, IPv6 in brackets), the port (default
// for the scheme), the URL without its fragment in curl's normal form (a fixed point of curl's
// parser, so parsing `url` again gives this host), and the origin (for stripping credentials on
// a cross-origin redirect).
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

// `url` with `params` appended to its query ("a=1&b=2"), names and values percent-encoded (all but
// RFC 3986 unreserved characters), with curl's URL parser (CURLU_APPENDQUERY); a fragment stays
// last. kInvalidArgument when curl cannot parse the URL.
[[nodiscard]] Result<std::string> append_query(
    std::string_view url, const std::vector<std::pair<std::string, std::string>>& params);

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

// ---- Redirects (pure; the Client applies them hop by hop) -------------------------------------

using Headers = std::vector<std::pair<std::string, std::string>>;

// 301, 302, 303, 307, 308.
bool is_redirect(int status);

// The absolute URL a Location header points at, resolved against `base` (an absolute URL) with
// curl's URL parser: relative references, any scheme (judged later by parse_target); spaces and
// 8-bit bytes are percent-encoded as browsers do. kInvalidArgument when it is no URL reference.
[[nodiscard]] Result<std::string> resolve_location(std::string_view base,
                                                   std::string_view location);

// What one hop of a request sends.
struct Hop {
  std::string method;
  Target target;
  Headers headers;
  std::string body;
};

// The hop after a redirect response `status` with `location` from `current`. Browser rules:
// 303 becomes GET without a body (HEAD stays HEAD); 301 and 302 turn a POST into a GET without a
// body; 307 and 308 keep the method and the body. When the method becomes GET the body's headers
// (Content-Type, Content-Encoding, Content-Language, Content-Location) go too. Authorization,
// Cookie and Proxy-Authorization are sent only to `first_origin` (the origin of the request as
// submitted): a hop to any other origin goes without them. kPermissionDenied (the guard refuses
// the target: another scheme, credentials in the URL, a bad host or port) or kInvalidArgument
// (the Location is not a URL), each naming the Location.
[[nodiscard]] Result<Hop> next_hop(const Hop& current, int status, std::string_view location,
                                   std::string_view first_origin);

// ---- HTTP dates ------------------------------------------------------------------------------

// An HTTP-date (IMF-fixdate, RFC 850 or asctime form, RFC 9110 §5.6.7), or nullopt.
std::optional<Time> parse_http_date(std::string_view text);
// A Retry-After value: delay-seconds, or an HTTP-date taken relative to `reference` (the
// response's Date header when it has one, else the receiver's clock); never negative, capped at
// limits::kRetryAfterMax. nullopt when the value is neither.
std::optional<Millis> parse_retry_after(std::string_view value, Time reference);

// ---- The client ------------------------------------------------------------------------------

// The error codes of a failed Response (also the http node's error codes).
inline constexpr std::string_view kEgressDenied = "egress_denied";      // the guard refused
inline constexpr std::string_view kInvalidRequest = "invalid_request";  // bad URL/method/header
inline constexpr std::string_view kTimeout = "timeout";                 // Request::timeout passed
inline constexpr std::string_view kNetworkError = "network_error";      // DNS, connect, TLS, I/O
inline constexpr std::string_view kResponseTooLarge = "response_too_large";
inline constexpr std::string_view kTooManyRedirects = "too_many_redirects";

struct Request {
  std::string method = "GET";  // GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS
  std::string url;             // absolute http(s) URL; judged by parse_target
  Headers headers;             // each judged by check_header
  std::string body;            // sent when not empty (POST, PUT, PATCH: always, maybe empty)
  Millis timeout = limits::kEgressTimeoutDefault;  // the whole request, across redirects
  std::size_t max_response_bytes = limits::kEgressResponseBytesDefault;  // the body, per hop
  int max_redirects = limits::kEgressRedirectsMax;  // 0..kEgressRedirectsMax
};

struct Response {
  // Success (error empty): the final response, whatever its status.
  int status = 0;
  Headers headers;  // of the final response, names as received, in order
  std::string body;
  std::string url;             // the URL of the final hop
  std::string remote_address;  // the address the guard last approved (CURLOPT_PREREQFUNCTION)
  int redirects = 0;           // redirects followed
  // Failure: one of the codes above, a message naming the reason, and whether trying again may
  // help (timeout and network_error).
  std::string error;
  std::string message;
  bool retryable = false;

  bool ok() const { return error.empty(); }
};

struct ClientOptions {
  Policy policy;
  std::size_t max_in_flight = limits::kEgressInFlightDefault;  // transfers on the multi handle
  std::size_t max_queued = limits::kEgressQueuedMax;  // beyond them, waiting for a slot
  std::size_t max_connections_cached = limits::kEgressConnectionsCachedMax;
  Millis connect_timeout = limits::kEgressConnectTimeout;
  std::size_t max_header_bytes = limits::kEgressResponseHeaderBytesMax;  // per hop
};

// The one way out. start() spawns the client thread that drives a libcurl multi handle
// (curl_multi_poll; send() queues under a mutex and wakes it with curl_multi_wakeup); no thread
// per request. Connections stay in the multi handle's pool and are reused by later requests to
// the same origin.
//
// Example:
//   egress::Client client(clock, {.policy = *egress::Policy::make({}, egress::local_addresses())});
//   VENTURE_CHECK(client.start());
//   client.send({.url = "https://api.example.com/items"}, [](egress::Response r) { ... });
//   ...
//   client.stop();
class Client {
 public:
  // `clock` measures each request's time budget across its hops (monotonic_ns).
  Client(base::Clock& clock, ClientOptions options);
  ~Client();  // stop()
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // kInternal when libcurl cannot be set up. Call once.
  [[nodiscard]] Status start();
  // Queues the request. `done` runs exactly once, on the client thread, and must be cheap (it
  // holds up every other transfer), must not throw and must not call stop(). Before start(),
  // after stop(), or with max_in_flight + max_queued requests already pending, `done` runs at
  // once on the calling thread with a retryable network_error.
  void send(Request request, std::function<void(Response)> done);
  // Fails every request still pending with a retryable network_error ("the egress client
  // stopped"), then joins the client thread. Idempotent.
  void stop();
  // Requests sent and not yet done.
  std::size_t pending() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace venture::egress
