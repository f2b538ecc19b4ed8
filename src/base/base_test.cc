// Goal: base's vocabulary behaves exactly as documented, including on bad input.
// Method: table-driven checks of each function, the error paths first.
#include <gtest/gtest.h>

#include <set>

#include "base/base.h"

namespace venture {
namespace {

TEST(Result, PropagatesErrors) {
  auto inner = []() -> Result<int> { return NotFound("x"); };
  auto outer = [&]() -> Result<int> {
    VENTURE_ASSIGN_OR_RETURN(int v, inner());
    return v + 1;
  };
  auto r = outer();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kNotFound);
  EXPECT_EQ(r.error().ToString(), "not_found: x");
  auto status = [&]() -> Status {
    VENTURE_RETURN_IF_ERROR(inner());
    return Ok();
  }();
  EXPECT_FALSE(status);
}

TEST(Duration, ParsesUnitsAndRejectsBadInput) {
  EXPECT_EQ(ParseDuration("250ms").value(), Millis(250));
  EXPECT_EQ(ParseDuration("30s").value(), Millis(30000));
  EXPECT_EQ(ParseDuration("5m").value(), Millis(300000));
  EXPECT_EQ(ParseDuration("2h").value(), Millis(7200000));
  EXPECT_EQ(ParseDuration("1d").value(), Millis(86400000));
  EXPECT_EQ(ParseDuration("0s").value(), Millis(0));
  for (const char* bad : {"", "s", "10", "1.5s", "-1s", "10 s", "5w", "99999999999999999999d",
                          "366d", "1s2"}) {
    EXPECT_FALSE(ParseDuration(bad)) << bad;
  }
  EXPECT_EQ(FormatDuration(Millis(90000)), "90s");
  EXPECT_EQ(FormatDuration(Millis(1500)), "1500ms");
  EXPECT_EQ(FormatDuration(Millis(7200000)), "2h");
}

TEST(Time, RoundTripsRfc3339) {
  const Time t = FromUnixMs(1795428000123);
  const std::string s = FormatTime(t);
  EXPECT_EQ(s, "2026-11-23T10:00:00.123Z");
  EXPECT_EQ(ParseTime(s).value(), t);
  EXPECT_EQ(FormatTime(FromUnixMs(0)), "1970-01-01T00:00:00.000Z");
  for (const char* bad : {"", "2026-11-23", "2026-13-01T00:00:00Z", "2026-11-23T10:00:00+01:00",
                          "2026-11-23T10:00:00.12Z", "x026-11-23T10:00:00Z"}) {
    EXPECT_FALSE(ParseTime(bad)) << bad;
  }
}

TEST(Ids, AreUuidV7WithPrefixAndTimeOrdered) {
  base::ManualClock clock(FromUnixMs(1795428000000));
  base::SeededRandom random(7);
  std::set<std::string> seen;
  std::string last;
  for (int i = 0; i < 1000; ++i) {
    clock.Advance(Millis(1));
    std::string id = base::NewId("run", clock, random);
    ASSERT_TRUE(base::IsId(id, "run")) << id;
    EXPECT_EQ(id[4 + 14], '7');  // version nibble
    EXPECT_GT(id, last);
    last = id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_FALSE(base::IsId("run_xyz", "run"));
  EXPECT_FALSE(base::IsId(last, "evt"));
}

TEST(Random, IsDeterministicPerSeed) {
  base::SeededRandom a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    (void)c;
  }
  EXPECT_NE(base::SeededRandom(1).Next(), base::SeededRandom(2).Next());
  for (int i = 0; i < 1000; ++i) EXPECT_LT(a.Uniform(7), 7u);
}

TEST(Json, CanonicalSortsKeysAndIsCompact) {
  auto v = base::ParseJson(R"({ "b": 1, "a": {"z": [1, 2, {"y": null, "x": true}], "c": "s"} })");
  ASSERT_TRUE(v);
  EXPECT_EQ(base::CanonicalJson(*v), R"({"a":{"c":"s","z":[1,2,{"x":true,"y":null}]},"b":1})");
}

TEST(Json, ParseErrorsNameTheLineAndLimits) {
  auto r = base::ParseJson("{\n  \"a\": ,\n}");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  EXPECT_NE(r.error().message.find("line 2"), std::string::npos) << r.error().message;
  EXPECT_FALSE(base::ParseJson("{} {}"));
  EXPECT_FALSE(base::ParseJson(""));
  std::string deep(100, '[');
  deep += std::string(100, ']');
  auto d = base::ParseJson(deep);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, Code::kResourceExhausted);
  auto big = base::ParseJson(std::string(100, ' '), {10, 10});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Code::kResourceExhausted);
}

TEST(Crypto, HashesSignaturesAndMerkle) {
  const base::Hash h = base::Blake2b("abc");
  EXPECT_EQ(base::B2(h).size(), 67u);
  EXPECT_EQ(base::ParseB2(base::B2(h)).value(), h);
  EXPECT_FALSE(base::ParseB2("b2:zz"));
  EXPECT_FALSE(base::ParseB2("sha:" + std::string(64, '0')));
  auto key = base::NewSigningKey();
  auto sig = base::Sign(key, "message");
  EXPECT_TRUE(base::VerifySignature(key.public_key, sig, "message"));
  EXPECT_FALSE(base::VerifySignature(key.public_key, sig, "messagf"));
  sig[0] ^= 1;
  EXPECT_FALSE(base::VerifySignature(key.public_key, sig, "message"));
  std::vector<base::Hash> leaves{base::Blake2b("1"), base::Blake2b("2"), base::Blake2b("3")};
  const base::Hash root = base::MerkleRoot(leaves);
  leaves[2] = base::Blake2b("4");
  EXPECT_NE(root, base::MerkleRoot(leaves));
  EXPECT_EQ(base::MerkleRoot({}), base::Hash{});
  EXPECT_EQ(base::Unhex("zz").has_value(), false);
  EXPECT_EQ(base::RandomSecretHex().size(), 64u);
}

}  // namespace
}  // namespace venture
