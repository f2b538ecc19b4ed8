// Goal: ValidateInputs enforces the draft-07 subset named in workflow.h, with problems under
// "/inputs…", and Compile rejects malformed input schemas (bad types, uncompilable patterns).
// Method: compile a definition per schema and validate literal inputs against it.
#include <gtest/gtest.h>

#include "workflow/workflow.h"

namespace venture::workflow {
namespace {

json::value j(std::string_view text) { return base::parse_json(text).value(); }

std::shared_ptr<const Ir> with_schema(std::string_view schema) {
  Problems problems;
  std::string text =
      R"({"name":"s","inputs":)" + std::string(schema) + R"(,"nodes":[{"id":"a","type":"noop"}]})";
  std::shared_ptr<const Ir> ir = compile(j(text), problems);
  EXPECT_NE(ir, nullptr) << (problems.empty() ? "" : problems[0].path + problems[0].message);
  return ir;
}

Problems check(const Ir& ir, std::string_view inputs) {
  Problems problems;
  validate_inputs(ir, j(inputs), problems);
  return problems;
}

TEST(Inputs, RequiredAndTypes) {
  auto ir = with_schema(R"({"type":"object","required":["q"],"properties":{"q":{"type":"string"},
      "n":{"type":"integer","minimum":1,"maximum":10},"tags":{"type":"array",
      "items":{"type":"string"},"maxItems":2}},"additionalProperties":false})");
  EXPECT_TRUE(check(*ir, R"({"q":"x","n":3,"tags":["a"]})").empty());
  Problems p = check(*ir, R"({})");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].path, "/inputs/q");
  EXPECT_EQ(p[0].message, "required property is missing");
  p = check(*ir, R"({"q":1,"n":2.5,"tags":["a",2,"c"],"extra":true})");
  ASSERT_EQ(p.size(), 5u);
  EXPECT_EQ(p[0].path, "/inputs/q");
  EXPECT_EQ(p[1].path, "/inputs/n");
  EXPECT_EQ(p[2].path, "/inputs/tags/1");
  EXPECT_EQ(p[3].path, "/inputs/tags");
  EXPECT_EQ(p[4].path, "/inputs/extra");
  p = check(*ir, R"({"q":"x","n":11})");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].message, "must be at most 10");
  EXPECT_EQ(check(*ir, "[]").size(), 1u);
}

TEST(Inputs, StringsNumbersEnumsConst) {
  auto ir = with_schema(R"({"properties":{"s":{"minLength":2,"maxLength":3,"pattern":"^[a-z]+$"},
      "u":{"minLength":2,"maxLength":2},
      "e":{"enum":["a",1]},"c":{"const":{"k":1}},"m":{"multipleOf":0.5,"exclusiveMinimum":0,
      "exclusiveMaximum":2}}})");
  EXPECT_TRUE(check(*ir, R"({"s":"ab","e":1.0,"c":{"k":1},"m":1.5})").empty());
  EXPECT_TRUE(check(*ir, R"({"u":"éé"})").empty());  // lengths count characters
  EXPECT_EQ(check(*ir, R"({"s":"a"})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"s":"abcd"})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"s":"A1"})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"e":"b"})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"c":{"k":2}})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"m":0.3})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"m":2})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"m":0})").size(), 1u);
  Problems p = check(*ir, R"({"s":")" + std::string(5000, 'a') + R"("})");
  ASSERT_EQ(p.size(), 2u);  // maxLength and the pattern subject bound
  EXPECT_NE(p[1].message.find("too long"), std::string::npos);
}

TEST(Inputs, CombinatorsAndRefs) {
  auto ir = with_schema(R"({"definitions":{"pos":{"type":"integer","minimum":1}},
      "properties":{"a":{"$ref":"#/definitions/pos"},
        "b":{"anyOf":[{"type":"string"},{"type":"null"}]},
        "c":{"oneOf":[{"type":"integer"},{"type":"number"}]},
        "d":{"allOf":[{"type":"string"},{"minLength":2}]},
        "e":{"not":{"type":"string"}},
        "f":{"type":["string","null"]},
        "g":{"$ref":"#"}}})");
  EXPECT_TRUE(check(*ir, R"({"a":1,"b":null,"c":1.5,"d":"xy","e":1,"f":null,"g":{}})").empty());
  EXPECT_EQ(check(*ir, R"({"a":0})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"b":1})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"c":1})").size(), 1u);  // matches both
  EXPECT_EQ(check(*ir, R"({"d":"x"})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"e":"x"})").size(), 1u);
  EXPECT_EQ(check(*ir, R"({"f":1})").size(), 1u);
  Problems deep = check(*ir, R"({"g":{"g":{"a":0}}})");
  ASSERT_EQ(deep.size(), 1u);
  EXPECT_EQ(deep[0].path, "/inputs/g/g/a");
}

TEST(Inputs, SelfReferenceLoopIsBounded) {
  auto ir = with_schema(R"({"definitions":{"x":{"$ref":"#/definitions/x"}},
      "properties":{"a":{"$ref":"#/definitions/x"},"b":{"$ref":"#/definitions/none"}}})");
  Problems p = check(*ir, R"({"a":1,"b":1})");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_NE(p[0].message.find("too deeply"), std::string::npos);
  EXPECT_NE(p[1].message.find("does not resolve"), std::string::npos);
}

TEST(Inputs, NoSchemaAcceptsAnything) {
  Problems problems;
  auto ir = compile(j(R"({"name":"s","nodes":[{"id":"a","type":"noop"}]})"), problems);
  ASSERT_NE(ir, nullptr);
  EXPECT_TRUE(check(*ir, R"({"anything":[1]})").empty());
}

TEST(Inputs, MalformedSchemasAreProblems) {
  Problems p;
  EXPECT_EQ(compile(j(R"({"name":"s","inputs":{"type":"object","properties":{
      "a":{"type":"strng"},"b":{"pattern":"(unclosed"},"c":{"minLength":-1},"d":5,
      "e":{"pattern":"(a{1000}){1000}"},"f":{"anyOf":[]},"g":{"$ref":"http://x"}},
      "required":"q"},"nodes":[{"id":"a","type":"noop"}]})"),
                    p),
            nullptr);
  auto has = [&p](std::string_view path) {
    for (const Problem& problem : p) {
      if (problem.path == path) {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(has("/inputs/properties/a/type"));
  EXPECT_TRUE(has("/inputs/properties/b/pattern"));
  EXPECT_TRUE(has("/inputs/properties/c/minLength"));
  EXPECT_TRUE(has("/inputs/properties/d"));
  EXPECT_TRUE(has("/inputs/properties/e/pattern"));
  EXPECT_TRUE(has("/inputs/properties/f/anyOf"));
  EXPECT_TRUE(has("/inputs/properties/g/$ref"));
  EXPECT_TRUE(has("/inputs/required"));
}

}  // namespace
}  // namespace venture::workflow
