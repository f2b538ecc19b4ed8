// Goal: JSON Pointer (RFC 6901) and JSON Patch (RFC 6902) follow the RFCs, including their
// examples, and fail atomically with the op index in the message.
// Method: table-driven cases taken from RFC 6901 §5 and RFC 6902 Appendix A, plus error cases.
#include <gtest/gtest.h>

#include "workflow/workflow.h"

namespace venture::workflow {
namespace {

json::value j(std::string_view text) { return base::parse_json(text).value(); }

const char* k_rfc6901_doc = R"({"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3,
  "g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8})";

TEST(Pointer, Rfc6901Examples) {
  const json::value doc = j(k_rfc6901_doc);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", k_rfc6901_doc},
      {"/foo", R"(["bar","baz"])"},
      {"/foo/0", R"("bar")"},
      {"/", "0"},
      {"/a~1b", "1"},
      {"/c%d", "2"},
      {"/e^f", "3"},
      {"/g|h", "4"},
      {"/i\\j", "5"},
      {"/k\"l", "6"},
      {"/ ", "7"},
      {"/m~0n", "8"},
  };
  for (const auto& [pointer, expected] : cases) {
    Result<const json::value*> v = resolve_pointer(doc, pointer);
    ASSERT_TRUE(v) << pointer << ": " << v.error().message;
    EXPECT_EQ(**v, j(expected)) << pointer;
  }
}

TEST(Pointer, Errors) {
  const json::value doc = j(R"({"a":[1,2],"b":{"c":null}})");
  EXPECT_EQ(resolve_pointer(doc, "a").error().code, Code::kInvalidArgument);
  EXPECT_EQ(resolve_pointer(doc, "/a~2").error().code, Code::kInvalidArgument);
  EXPECT_EQ(resolve_pointer(doc, "/a~").error().code, Code::kInvalidArgument);
  EXPECT_EQ(resolve_pointer(doc, "/x").error().code, Code::kNotFound);
  EXPECT_EQ(resolve_pointer(doc, "/a/2").error().code, Code::kNotFound);
  EXPECT_EQ(resolve_pointer(doc, "/a/-").error().code, Code::kNotFound);
  EXPECT_EQ(resolve_pointer(doc, "/a/01").error().code, Code::kInvalidArgument);
  EXPECT_EQ(resolve_pointer(doc, "/a/x").error().code, Code::kInvalidArgument);
  EXPECT_EQ(resolve_pointer(doc, "/b/c/d").error().code, Code::kNotFound);
  EXPECT_TRUE(resolve_pointer(doc, "/b/c").value()->is_null());
}

struct PatchCase {
  const char* name;
  const char* doc;
  const char* ops;
  const char* expected;  // nullptr: the patch fails
};

// RFC 6902 Appendix A (A.1–A.16) and a few more.
const PatchCase kCases[] = {
    {"A.1 add object member", R"({"foo":"bar"})", R"([{"op":"add","path":"/baz","value":"qux"}])",
     R"({"baz":"qux","foo":"bar"})"},
    {"A.2 add array element", R"({"foo":["bar","baz"]})",
     R"([{"op":"add","path":"/foo/1","value":"qux"}])", R"({"foo":["bar","qux","baz"]})"},
    {"A.3 remove object member", R"({"baz":"qux","foo":"bar"})",
     R"([{"op":"remove","path":"/baz"}])", R"({"foo":"bar"})"},
    {"A.4 remove array element", R"({"foo":["bar","qux","baz"]})",
     R"([{"op":"remove","path":"/foo/1"}])", R"({"foo":["bar","baz"]})"},
    {"A.5 replace", R"({"baz":"qux","foo":"bar"})",
     R"([{"op":"replace","path":"/baz","value":"boo"}])", R"({"baz":"boo","foo":"bar"})"},
    {"A.6 move value", R"({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}})",
     R"([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}])",
     R"({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}})"},
    {"A.7 move array element", R"({"foo":["all","grass","cows","eat"]})",
     R"([{"op":"move","from":"/foo/1","path":"/foo/3"}])",
     R"({"foo":["all","cows","eat","grass"]})"},
    {"A.8 test success", R"({"baz":"qux","foo":["a",2,"c"]})",
     R"([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}])",
     R"({"baz":"qux","foo":["a",2,"c"]})"},
    {"A.9 test failure", R"({"baz":"qux"})", R"([{"op":"test","path":"/baz","value":"bar"}])",
     nullptr},
    {"A.10 add nested member", R"({"foo":"bar"})",
     R"([{"op":"add","path":"/child","value":{"grandchild":{}}}])",
     R"({"foo":"bar","child":{"grandchild":{}}})"},
    {"A.11 ignore unrecognized elements", R"({"foo":"bar"})",
     R"([{"op":"add","path":"/baz","value":"qux","xyz":123}])", R"({"foo":"bar","baz":"qux"})"},
    {"A.12 add to nonexistent target", R"({"foo":"bar"})",
     R"([{"op":"add","path":"/baz/bat","value":"qux"}])", nullptr},
    {"A.14 ~ escape ordering", R"({"/":9,"~1":10})", R"([{"op":"test","path":"/~01","value":10}])",
     R"({"/":9,"~1":10})"},
    {"A.15 comparing strings and numbers", R"({"/":9,"~1":10})",
     R"([{"op":"test","path":"/~01","value":"10"}])", nullptr},
    {"A.16 add array value", R"({"foo":["bar"]})",
     R"([{"op":"add","path":"/foo/-","value":["abc","def"]}])", R"({"foo":["bar",["abc","def"]]})"},
    {"replace root", R"({"a":1})", R"([{"op":"replace","path":"","value":[1]}])", "[1]"},
    {"add root", R"({"a":1})", R"([{"op":"add","path":"","value":{"b":2}}])", R"({"b":2})"},
    {"copy", R"({"a":{"b":[1]}})", R"([{"op":"copy","from":"/a/b","path":"/c"}])",
     R"({"a":{"b":[1]},"c":[1]})"},
    {"move to same place", R"({"a":1})", R"([{"op":"move","from":"/a","path":"/a"}])",
     R"({"a":1})"},
    {"test numbers by value", R"({"a":1})", R"([{"op":"test","path":"/a","value":1.0}])",
     R"({"a":1})"},
    {"test objects unordered", R"({"a":{"x":1,"y":2}})",
     R"([{"op":"test","path":"/a","value":{"y":2,"x":1}}])", R"({"a":{"x":1,"y":2}})"},
    {"add past end", R"({"a":[1]})", R"([{"op":"add","path":"/a/2","value":3}])", nullptr},
    {"remove missing", R"({"a":1})", R"([{"op":"remove","path":"/b"}])", nullptr},
    {"replace missing", R"({"a":1})", R"([{"op":"replace","path":"/b","value":1}])", nullptr},
    {"move into own child", R"({"a":{"b":{}}})", R"([{"op":"move","from":"/a","path":"/a/b/c"}])",
     nullptr},
    {"unknown op", R"({})", R"([{"op":"ad","path":"/a","value":1}])", nullptr},
    {"missing value", R"({})", R"([{"op":"add","path":"/a"}])", nullptr},
    {"missing from", R"({})", R"([{"op":"copy","path":"/a"}])", nullptr},
    {"op not object", R"({})", R"([1])", nullptr},
    {"leading zero index", R"({"a":[1,2]})", R"([{"op":"remove","path":"/a/01"}])", nullptr},
    {"remove root", R"({"a":1})", R"([{"op":"remove","path":""}])", nullptr},
};

TEST(Patch, Cases) {
  for (const PatchCase& c : kCases) {
    const json::value doc = j(c.doc);
    Result<json::value> out = apply_patch(doc, j(c.ops));
    if (c.expected == nullptr) {
      EXPECT_FALSE(out) << c.name;
      if (!out) {
        EXPECT_TRUE(out.error().message.starts_with("/0: "))
            << c.name << ": " << out.error().message;
      }
    } else {
      ASSERT_TRUE(out) << c.name << ": " << out.error().message;
      EXPECT_EQ(*out, j(c.expected)) << c.name;
    }
    EXPECT_EQ(doc, j(c.doc)) << c.name << ": the input must be untouched";
  }
}

TEST(Patch, ErrorsNameTheOpAndCodes) {
  const json::value doc = j(R"({"nodes":[{"id":"a"}]})");
  Result<json::value> out = apply_patch(doc, j(R"([
    {"op":"add","path":"/nodes/-","value":{"id":"b"}},
    {"op":"test","path":"/nodes/1/id","value":"b"},
    {"op":"test","path":"/nodes/0/id","value":"x"}])"));
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Code::kFailedPrecondition);
  EXPECT_TRUE(out.error().message.starts_with("/2: test failed")) << out.error().message;
  out = apply_patch(doc, j(R"([{"op":"test","path":"/nodes","value":[{"id":"a"}]},
                               {"op":"remove","path":"/nodes/9"}])"));
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Code::kInvalidArgument);
  EXPECT_TRUE(out.error().message.starts_with("/1: path '/nodes/9'")) << out.error().message;
  EXPECT_FALSE(apply_patch(doc, j("{}")));
}

TEST(Patch, OpsAreBounded) {
  json::array ops;
  for (std::size_t i = 0; i <= limits::kPatchOpsMax; ++i) {
    ops.push_back(j(R"({"op":"test","path":"","value":{}})"));
  }
  EXPECT_FALSE(apply_patch(j("{}"), ops));
  ops.pop_back();
  EXPECT_TRUE(apply_patch(j("{}"), ops));
}

TEST(Patch, CopyGrowthIsBounded) {
  json::array ops;
  ops.push_back(j(R"({"op":"add","path":"/a","value":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"})"));
  // Copying the root into alternating members grows the document like Fibonacci numbers.
  for (int i = 0; i < 60; ++i) {
    ops.push_back(j(i % 2 == 0 ? R"({"op":"copy","from":"","path":"/a"})"
                               : R"({"op":"copy","from":"","path":"/b"})"));
  }
  Result<json::value> out = apply_patch(j("{}"), ops);
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Code::kResourceExhausted);
}

TEST(Names, ClosestMatchAndPatterns) {
  EXPECT_EQ(closest_match("fetc", {"fetch", "pick"}), "fetch");
  EXPECT_EQ(closest_match("tyep", {"type", "id"}), "type");
  EXPECT_EQ(closest_match("zzzzzz", {"fetch"}), "");
  EXPECT_EQ(closest_match("ab", {"ac", "ad"}), "ac");  // tie: lexicographically smallest
  EXPECT_EQ(closest_match("ab", {"ad", "ac"}), "ac");
  EXPECT_EQ(closest_match("x", {"id"}), "");
  EXPECT_TRUE(is_valid_workflow_name("enrich-and-approve"));
  EXPECT_TRUE(is_valid_workflow_name("0.v1_x"));
  EXPECT_FALSE(is_valid_workflow_name("-x"));
  EXPECT_FALSE(is_valid_workflow_name("Upper"));
  EXPECT_FALSE(is_valid_workflow_name(""));
  EXPECT_FALSE(is_valid_workflow_name(std::string(64, 'a')));
  EXPECT_TRUE(is_valid_workflow_name(std::string(63, 'a')));
  EXPECT_TRUE(is_valid_tag_name("latest"));
  EXPECT_FALSE(is_valid_tag_name("a b"));
}

}  // namespace
}  // namespace venture::workflow
