// Goal: ParseDocument reads JSON and YAML into the same JSON value, infers YAML scalars by the
// YAML 1.2 core schema, and turns every malformed or oversized input into a problem with a
// position instead of a crash; the version does not depend on the syntax.
// Method: parse literal texts (and a 10 MB one) and compare the values and problems.
#include <gtest/gtest.h>

#include "workflow/workflow.h"

namespace venture::workflow {
namespace {

json::value j(std::string_view text) { return base::parse_json(text).value(); }

json::value parse_ok(std::string_view text) {
  Problems problems;
  Result<json::value> v = parse_document(text, problems);
  EXPECT_TRUE(v) << (v ? "" : v.error().message);
  EXPECT_TRUE(problems.empty());
  return v ? *v : json::value();
}

Problem parse_bad(std::string_view text) {
  Problems problems;
  Result<json::value> v = parse_document(text, problems);
  EXPECT_FALSE(v) << text;
  EXPECT_EQ(problems.size(), 1u) << text;
  return problems.empty() ? Problem{} : problems.front();
}

const char* k_yaml = R"(# a comment
name: enrich
description: "quoted: text"
defaults:
  timeout: 30s
  retry: {max_attempts: 3}
nodes:
  - id: fetch
    type: http
    config:
      method: GET
      url: "https://api.example.com/items?q=${{ .inputs.q }}"
  - id: done
    type: noop
    needs: [fetch]
    if: false
)";

const char* k_json = R"({"name":"enrich","description":"quoted: text",
  "defaults":{"timeout":"30s","retry":{"max_attempts":3}},
  "nodes":[{"id":"fetch","type":"http","config":{"method":"GET",
    "url":"https://api.example.com/items?q=${{ .inputs.q }}"}},
   {"id":"done","type":"noop","needs":["fetch"],"if":false}]})";

TEST(Document, YamlAndJsonGiveTheSameValueAndVersion) {
  const json::value y = parse_ok(k_yaml);
  const json::value j = parse_ok(k_json);
  EXPECT_EQ(y, j);
  EXPECT_EQ(version_of(y), version_of(j));
  Problems problems;
  EXPECT_NE(compile(y, problems), nullptr);
}

TEST(Document, YamlScalarsFollowTheCoreSchema) {
  const json::value v = parse_ok(R"(
a: 1
b: -2
c: 1.5
d: 1e3
e: true
f: False
g: null
h: ~
i:
j: "1"
k: '2'
l: 0x1F
m: 0o17
n: 30s
o: 1.0.0
p: !!str 3
q: |
  block
r: 99999999999999999999
)");
  EXPECT_EQ(v, j(R"({"a":1,"b":-2,"c":1.5,"d":1000.0,"e":true,"f":false,"g":null,"h":null,
    "i":null,"j":"1","k":"2","l":31,"m":15,"n":"30s","o":"1.0.0","p":"3","q":"block\n",
    "r":1e20})"));
}

TEST(Document, AnchorsAndAliasesExpand) {
  const json::value v = parse_ok("base: &b {x: 1}\nother: *b\n");
  EXPECT_EQ(v, j(R"({"base":{"x":1},"other":{"x":1}})"));
}

TEST(Document, AliasBombIsBounded) {
  std::string text = "a0: &a0 [\"" + std::string(100, 'x') + "\"]\n";
  for (int i = 1; i < 30; ++i) {
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [*a" + std::to_string(i - 1) +
            ", *a" + std::to_string(i - 1) + "]\n";
  }
  const Problem p = parse_bad(text);
  EXPECT_NE(p.message.find("expands beyond"), std::string::npos) << p.message;
}

TEST(Document, MalformedYamlHasAPosition) {
  Problem p = parse_bad("name: x\nnodes: [a, b\n");
  EXPECT_EQ(p.path, "");
  EXPECT_TRUE(p.message.starts_with("line ")) << p.message;
  p = parse_bad("a: 1\na: 2\n");
  EXPECT_EQ(p.message, "line 2, column 1: duplicate key 'a'");
  p = parse_bad("a: .inf\n");
  EXPECT_NE(p.message.find("cannot be represented"), std::string::npos) << p.message;
  p = parse_bad("? [a]\n: 1\n");
  EXPECT_NE(p.message.find("keys"), std::string::npos) << p.message;
  p = parse_bad("a: 1\n---\nb: 2\n");
  EXPECT_NE(p.message.find("more than one"), std::string::npos) << p.message;
  p = parse_bad("   \n");
  EXPECT_NE(p.message.find("empty"), std::string::npos) << p.message;
  p = parse_bad("a: " + std::string(70, '[') + "1" + std::string(70, ']') + "\n");
  EXPECT_NE(p.message.find("deeper"), std::string::npos) << p.message;
  parse_bad(std::string(5000, '[') + "\n");
  parse_bad("&a [*a]\n");
  // Found by the fuzzer: yaml-cpp 0.7 loops forever on NUL bytes.
  p =
      parse_bad(std::string(",a:\x03\0\0\0"
                            "5\0 00\n",
                            12));
  EXPECT_EQ(p.message, "line 1, column 4: control character 3 is not allowed in YAML");
  // Found by the fuzzer: yaml-cpp 0.7's LoadAll never ends on this input.
  parse_bad("!\t,-\n");
}

TEST(Document, MalformedJsonHasAPosition) {
  Problem p = parse_bad("{\"name\": \"x\",\n  \"nodes\": [}");
  EXPECT_EQ(p.path, "");
  EXPECT_TRUE(p.message.starts_with("line 2, column ")) << p.message;
  p = parse_bad("{\"a\":1} trailing");
  EXPECT_NE(p.message.find("unexpected content"), std::string::npos) << p.message;
  p = parse_bad(std::string(1000, '{'));
  EXPECT_FALSE(p.message.empty());
}

TEST(Document, TenMegabyteStringIsAClearError) {
  const std::string text = "{\"name\":\"" + std::string(10 << 20, 'x') + "\"}";
  Problems problems;
  Result<json::value> v = parse_document(text, problems);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Code::kResourceExhausted);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].message.find("exceeds the limit of 1048576"), std::string::npos);
  const std::string yaml = "name: " + std::string(10 << 20, 'x') + "\n";
  EXPECT_FALSE(parse_document(yaml, problems));
}

TEST(Document, ByteOrderMarkIsSkipped) {
  EXPECT_EQ(parse_ok("\xEF\xBB\xBF{\"a\":1}"), j(R"({"a":1})"));
}

}  // namespace
}  // namespace venture::workflow
