// Goal: base's vocabulary behaves exactly as documented, including on bad input.
// Method: table-driven checks of each function, the error paths first.
#include "base/base.h"

#include <gtest/gtest.h>

#include <set>

namespace venture {
namespace {

TEST(Result, PropagatesErrors) {
  auto inner = []() -> Result<int> { return not_found_error("x"); };
  auto outer = [&]() -> Result<int> {
    VENTURE_ASSIGN_OR_RETURN(int v, inner());
    return v + 1;
  };
  auto r = outer();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kNotFound);
  EXPECT_EQ(r.error().to_string(), "not_found: x");
  auto status = [&]() -> Status {
    VENTURE_RETURN_IF_ERROR(inner());
    return ok();
  }();
  EXPECT_FALSE(status);
}

TEST(Duration, ParsesUnitsAndRejectsBadInput) {
  EXPECT_EQ(parse_duration("250ms").value(), Millis(250));
  EXPECT_EQ(parse_duration("30s").value(), Millis(30000));
  EXPECT_EQ(parse_duration("5m").value(), Millis(300000));
  EXPECT_EQ(parse_duration("2h").value(), Millis(7200000));
  EXPECT_EQ(parse_duration("1d").value(), Millis(86400000));
  EXPECT_EQ(parse_duration("0s").value(), Millis(0));
  for (const char* bad :
       {"", "s", "10", "1.5s", "-1s", "10 s", "5w", "99999999999999999999d", "366d", "1s2"}) {
    EXPECT_FALSE(parse_duration(bad)) << bad;
  }
  EXPECT_EQ(format_duration(Millis(90000)), "90s");
  EXPECT_EQ(format_duration(Millis(1500)), "1500ms");
  EXPECT_EQ(format_duration(Millis(7200000)), "2h");
}

TEST(Time, RoundTripsRfc3339) {
  const Time t = from_unix_ms(1795428000123);
  const std::string s = format_time(t);
  EXPECT_EQ(s, "2026-11-23T10:00:00.123Z");
  EXPECT_EQ(parse_time(s).value(), t);
  EXPECT_EQ(format_time(from_unix_ms(0)), "1970-01-01T00:00:00.000Z");
  for (const char* bad : {"", "2026-11-23", "2026-13-01T00:00:00Z", "2026-11-23T10:00:00+01:00",
                          "2026-11-23T10:00:00.12Z", "x026-11-23T10:00:00Z"}) {
    EXPECT_FALSE(parse_time(bad)) << bad;
  }
}

TEST(Ids, AreUuidV7WithPrefixAndTimeOrdered) {
  base::ManualClock clock(from_unix_ms(1795428000000));
  base::SeededRandom random(7);
  std::set<std::string> seen;
  std::string last;
  for (int i = 0; i < 1000; ++i) {
    clock.advance(Millis(1));
    std::string id = base::new_id("run", clock, random);
    ASSERT_TRUE(base::is_id(id, "run")) << id;
    EXPECT_EQ(id[4 + 14], '7');  // version nibble
    EXPECT_GT(id, last);
    last = id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_FALSE(base::is_id("run_xyz", "run"));
  EXPECT_FALSE(base::is_id(last, "evt"));
}

TEST(Random, IsDeterministicPerSeed) {
  base::SeededRandom a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    (void)c;
  }
  EXPECT_NE(base::SeededRandom(1).next(), base::SeededRandom(2).next());
  for (int i = 0; i < 1000; ++i) EXPECT_LT(a.uniform(7), 7u);
}

TEST(Json, CanonicalSortsKeysAndIsCompact) {
  auto v = base::parse_json(R"({ "b": 1, "a": {"z": [1, 2, {"y": null, "x": true}], "c": "s"} })");
  ASSERT_TRUE(v);
  EXPECT_EQ(base::canonical_json(*v), R"({"a":{"c":"s","z":[1,2,{"x":true,"y":null}]},"b":1})");
}

TEST(Json, ParseErrorsNameTheLineAndLimits) {
  auto r = base::parse_json("{\n  \"a\": ,\n}");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  EXPECT_NE(r.error().message.find("line 2"), std::string::npos) << r.error().message;
  EXPECT_FALSE(base::parse_json("{} {}"));
  EXPECT_FALSE(base::parse_json(""));
  std::string deep(100, '[');
  deep += std::string(100, ']');
  auto d = base::parse_json(deep);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, Code::kResourceExhausted);
  auto big = base::parse_json(std::string(100, ' '), {10, 10});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Code::kResourceExhausted);
}

TEST(Crypto, HashesSignaturesAndMerkle) {
  const base::Hash h = base::blake2b("abc");
  EXPECT_EQ(base::b2(h).size(), 67u);
  EXPECT_EQ(base::parse_b2(base::b2(h)).value(), h);
  EXPECT_FALSE(base::parse_b2("b2:zz"));
  EXPECT_FALSE(base::parse_b2("sha:" + std::string(64, '0')));
  auto key = base::new_signing_key();
  auto sig = base::sign(key, "message");
  EXPECT_TRUE(base::verify_signature(key.public_key, sig, "message"));
  EXPECT_FALSE(base::verify_signature(key.public_key, sig, "messagf"));
  sig[0] ^= 1;
  EXPECT_FALSE(base::verify_signature(key.public_key, sig, "message"));
  std::vector<base::Hash> leaves{base::blake2b("1"), base::blake2b("2"), base::blake2b("3")};
  const base::Hash root = base::merkle_root(leaves);
  leaves[2] = base::blake2b("4");
  EXPECT_NE(root, base::merkle_root(leaves));
  EXPECT_EQ(base::merkle_root({}), base::Hash{});
  EXPECT_EQ(base::unhex("zz").has_value(), false);
  EXPECT_EQ(base::random_secret_hex().size(), 64u);
}

}  // namespace
}  // namespace venture
