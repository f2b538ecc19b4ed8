// The address policy: every denied range (and its edges), IPv4 embedded in IPv6, the host's own
// addresses, and allow-list exceptions.
#include <gtest/gtest.h>

#include "egress/egress.h"

namespace venture::egress {
namespace {

Address addr(std::string_view text) {
  auto a = parse_address(text);
  EXPECT_TRUE(a) << text;
  return a ? *a : Address{};
}

std::string why(std::string_view text) { return denied_reason(addr(text)).value_or(""); }

TEST(Address, ParsesStrictNumericFormsOnly) {
  EXPECT_EQ(to_string(addr("10.0.0.1")), "10.0.0.1");
  EXPECT_EQ(to_string(addr("[::1]")), "::1");
  EXPECT_TRUE(addr("::ffff:127.0.0.1").v6);
  for (const char* bad : {"", "localhost", "127.1", "0x7f.0.0.1", "2130706433", "017700000001",
                          "1.2.3.4.5", "256.0.0.1", "::g", "[::1", "1.2.3.4 "}) {
    EXPECT_FALSE(parse_address(bad)) << bad;
  }
}

TEST(DenyList, EveryIpv4RangeWithItsEdges) {
  // The first and the last address of every range are denied...
  const std::pair<const char*, const char*> ranges[] = {
      {"0.0.0.0", "0.255.255.255"},         {"10.0.0.0", "10.255.255.255"},
      {"100.64.0.0", "100.127.255.255"},    {"127.0.0.0", "127.255.255.255"},
      {"169.254.0.0", "169.254.255.255"},   {"172.16.0.0", "172.31.255.255"},
      {"192.0.0.0", "192.0.0.255"},         {"192.0.2.0", "192.0.2.255"},
      {"192.168.0.0", "192.168.255.255"},   {"198.18.0.0", "198.19.255.255"},
      {"198.51.100.0", "198.51.100.255"},   {"203.0.113.0", "203.0.113.255"},
      {"224.0.0.0", "239.255.255.255"},     {"240.0.0.0", "255.255.255.255"},
  };
  for (const auto& [first, last] : ranges) {
    EXPECT_NE(why(first), "") << first;
    EXPECT_NE(why(last), "") << last;
  }
  // ...and the public neighbours just outside them are not.
  for (const char* ok : {"1.0.0.0", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0",
                         "126.255.255.255", "128.0.0.0", "169.253.255.255", "169.255.0.0",
                         "172.15.255.255", "172.32.0.0", "191.255.255.255", "192.0.1.0",
                         "192.0.3.0", "192.167.255.255", "192.169.0.0", "198.17.255.255",
                         "198.20.0.0", "198.51.99.255", "198.51.101.0", "203.0.112.255",
                         "203.0.114.0", "223.255.255.255", "8.8.8.8"}) {
    EXPECT_EQ(why(ok), "") << ok;
  }
  EXPECT_NE(why("169.254.169.254").find("metadata"), std::string::npos);
}

TEST(DenyList, Ipv6RangesAndEmbeddedIpv4) {
  EXPECT_NE(why("::").find("unspecified"), std::string::npos);
  EXPECT_NE(why("::1").find("loopback"), std::string::npos);
  EXPECT_NE(why("fc00::1"), "");
  EXPECT_NE(why("fdff:ffff::1"), "");
  EXPECT_NE(why("fe80::1"), "");
  EXPECT_NE(why("febf::1"), "");
  EXPECT_NE(why("ff02::1"), "");
  // IPv4 inside IPv6 is judged by the IPv4.
  EXPECT_NE(why("::ffff:127.0.0.1").find("IPv4-mapped address of 127.0.0.1"), std::string::npos);
  EXPECT_NE(why("::ffff:7f00:1").find("127.0.0.1"), std::string::npos);
  EXPECT_NE(why("::ffff:169.254.169.254").find("metadata"), std::string::npos);
  EXPECT_NE(why("::127.0.0.1").find("IPv4-compatible"), std::string::npos);
  EXPECT_NE(why("::10.0.0.1"), "");
  EXPECT_NE(why("::ffff:0:10.0.0.1").find("translated"), std::string::npos);
  EXPECT_NE(why("64:ff9b::127.0.0.1").find("NAT64"), std::string::npos);
  EXPECT_NE(why("64:ff9b::a9fe:a9fe").find("169.254.169.254"), std::string::npos);
  EXPECT_NE(why("64:ff9b:1::8.8.8.8").find("local-use NAT64"), std::string::npos);
  EXPECT_NE(why("2002:7f00:1::").find("6to4"), std::string::npos);
  EXPECT_NE(why("2002:c0a8:0101::1").find("192.168.1.1"), std::string::npos);
  EXPECT_NE(why("2001:0:4136:e378:8000:63bf:3fff:fdd2").find("Teredo"), std::string::npos);
  // Public addresses, including public IPv4 carried in IPv6, pass.
  for (const char* ok : {"2606:4700:4700::1111", "2001:db9::1", "::ffff:8.8.8.8",
                         "64:ff9b::8.8.8.8", "2002:0808:0808::1", "2001:1::1"}) {
    EXPECT_EQ(why(ok), "") << ok;
  }
}

TEST(Policy, AllowListOpensExactExceptions) {
  auto p = Policy::make({"127.0.0.1/32", "10.1.2.0/24", "Api.Internal", "fd00::/8"}, {});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_FALSE(p->check("127.0.0.1", addr("127.0.0.1")));
  EXPECT_TRUE(p->check("127.0.0.2", addr("127.0.0.2")));  // exact: only the /32
  EXPECT_FALSE(p->check("10.1.2.200", addr("10.1.2.200")));
  EXPECT_TRUE(p->check("10.1.3.1", addr("10.1.3.1")));
  EXPECT_FALSE(p->check("api.internal", addr("10.9.9.9")));  // host names match case-insensitively
  EXPECT_TRUE(p->check("api.internal.evil.com", addr("10.9.9.9")));
  EXPECT_FALSE(p->check("x", addr("fd12::1")));
  EXPECT_TRUE(p->check("x", addr("fe80::1")));
  EXPECT_FALSE(p->check("example.com", addr("93.184.216.34")));
  // An IPv4 CIDR does not open the IPv4-mapped IPv6 spelling (a different family).
  EXPECT_TRUE(p->check("x", addr("::ffff:10.1.2.3")));
}

TEST(Policy, TheHostsOwnAddressesAreDenied) {
  auto p = Policy::make({}, {addr("93.184.216.34"), addr("2606:4700::1")});
  ASSERT_TRUE(p);
  auto why_own = p->check("me", addr("93.184.216.34"));
  ASSERT_TRUE(why_own);
  EXPECT_NE(why_own->find("this host"), std::string::npos);
  EXPECT_TRUE(p->check("me", addr("::ffff:93.184.216.34")));
  EXPECT_TRUE(p->check("me", addr("2606:4700::1")));
  EXPECT_FALSE(p->check("other", addr("93.184.216.35")));
  // The real interfaces include loopback.
  bool loopback = false;
  for (const Address& a : local_addresses()) loopback |= to_string(a) == "127.0.0.1";
  EXPECT_TRUE(loopback);
}

TEST(Policy, BadAllowEntriesAreNamed) {
  for (const char* bad : {"10.0.0.0/33", "::1/129", "10.0.0/8", "bad host", "a_b.example"}) {
    auto p = Policy::make({bad}, {});
    ASSERT_FALSE(p) << bad;
    EXPECT_NE(p.error().message.find("egress.allow"), std::string::npos) << bad;
  }
}

}  // namespace
}  // namespace venture::egress

namespace venture::egress {
namespace {

TEST(Target, HttpAndHttpsOnlyWithoutCredentials) {
  auto t = parse_target("HTTPS://API.Example.com/v1/x?q=1#frag");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->scheme, "https");
  EXPECT_EQ(t->host, "api.example.com");
  EXPECT_EQ(t->port, 443);
  EXPECT_EQ(t->origin, "https://api.example.com:443");
  EXPECT_EQ(t->url.find("frag"), std::string::npos);
  // curl reads extra slashes as browsers do; the host is what curl will resolve and connect to,
  // which is what the guard then checks.
  t = parse_target("http:///internal.example/x");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "internal.example");
  // curl's parser is not idempotent here; the target is its fixed point (found by egress_fuzz).
  t = parse_target("http://%31%32%37.0/..//");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "127.0.0.0");
  EXPECT_EQ(parse_target(t->url)->url, t->url);
  t = parse_target("http://[::1]:8080/");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "[::1]");
  EXPECT_EQ(t->port, 8080);
  for (const char* bad :
       {"file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://example.com/", "dict://x:11211/",
        "ldap://x/", "javascript:alert(1)", "//example.com/", "http://user:pw@example.com/",
        "http://user@example.com/", "http://example.com\r\nHost: evil/", "http://exa mple.com/",
        "http://example.com:99999/", "http://%00/", "http://a%2fb/",
        "http://example.com@127.0.0.1/", "http://:@example.com/", "http://@example.com/",
        "http://:pw@example.com/", "http://u:@example.com/", ""}) {
    EXPECT_FALSE(parse_target(bad)) << bad;
  }
}

TEST(Target, HeadersAreTokensWithoutLineBreaksAndNotReserved) {
  EXPECT_TRUE(check_header("X-Api-Key", "secret value"));
  EXPECT_TRUE(check_header("Authorization", "Bearer x"));
  EXPECT_FALSE(check_header("X-A", "a\r\nInjected: 1"));
  EXPECT_FALSE(check_header("X-A", std::string("a\0b", 3)));
  EXPECT_FALSE(check_header("X-A\r\nB", "v"));
  EXPECT_FALSE(check_header("X A", "v"));
  EXPECT_FALSE(check_header("", "v"));
  for (const char* reserved : {"Host", "host", "Content-Length", "Transfer-Encoding", "TE"}) {
    auto st = check_header(reserved, "x");
    ASSERT_FALSE(st) << reserved;
    EXPECT_NE(st.error().message.find("cannot be overridden"), std::string::npos);
  }
}

}  // namespace
}  // namespace venture::egress
