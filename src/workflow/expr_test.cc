// Goal: jq expressions and `${{ }}` templates behave as SPEC §1 says: one value per Eval, jq's own
// messages on compile and run-time errors, values converted faithfully both ways, per-thread
// states, and templates that yield JSON values standing alone and strings when embedded. The
// sandbox bounds every evaluation: runaway programs stop at the time budget (the watchdog halts
// them), ranges, array indexes and string growth are bounded, and so is the result size.
// Method: compile and evaluate small programs against literal JSON contexts; run concurrent
// evaluations from several threads; run under the dev preset (ASan/LSan) to catch jv leaks. The
// runaway tests assert the error each program ends with, never a duration.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "workflow/workflow.h"

namespace venture::workflow {
namespace {

json::value j(std::string_view text) { return base::parse_json(text).value(); }

json::value eval_ok(std::string_view program, std::string_view input) {
  Result<Expr> expr = compile_expr(program);
  EXPECT_TRUE(expr) << (expr ? "" : expr.error().message);
  Result<json::value> v = expr->eval(j(input));
  EXPECT_TRUE(v) << (v ? "" : v.error().message);
  return v ? *v : json::value();
}

TEST(Expr, EvaluatesPathsAndBuildsValues) {
  EXPECT_EQ(eval_ok(".a.b", R"({"a":{"b":[1,2]}})"), j("[1,2]"));
  EXPECT_EQ(eval_ok("{x: .a, y: (.a + 1)}", R"({"a":41})"), j(R"({"x":41,"y":42})"));
  EXPECT_EQ(eval_ok(".s | ascii_upcase", R"({"s":"hi"})"), j(R"("HI")"));
  EXPECT_EQ(eval_ok("[.[] | select(. > 1)]", "[1,2,3]"), j("[2,3]"));
  EXPECT_EQ(eval_ok(".missing", "{}"), j("null"));
}

TEST(Expr, ConvertsNumbers) {
  EXPECT_TRUE(eval_ok("3", "null").is_int64());
  EXPECT_TRUE(eval_ok("1.5", "null").is_double());
  EXPECT_EQ(eval_ok("2.0", "null"), json::value(2));
  // Beyond 2^53 jq works in doubles: precision may be lost, documented in README.
  EXPECT_TRUE(eval_ok(".", "18446744073709551615").is_number());
  EXPECT_TRUE(eval_ok("nan", "null").is_null());
  EXPECT_TRUE(eval_ok("infinite", "null").is_double());
}

TEST(Expr, ConvertsStringsWithUnicodeAndNul) {
  EXPECT_EQ(eval_ok(".", R"("h\u00e9\u0000x")"), j(R"("h\u00e9\u0000x")"));
  EXPECT_EQ(eval_ok("keys", R"({"b":1,"a":2})"), j(R"(["a","b"])"));
}

TEST(Expr, NoValueAndSeveralValuesAreErrors) {
  Expr none = compile_expr("empty").value();
  Result<json::value> v = none.eval(j("{}"));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Code::kInvalidArgument);
  EXPECT_EQ(v.error().message, "expression yielded no value");
  Expr many = compile_expr(".[]").value();
  v = many.eval(j("[1,2]"));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message, "expression yielded more than one value");
  Result<std::vector<json::value>> all = many.eval_all(j("[1,2,3]"));
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 3u);
}

TEST(Expr, EvalAllIsBounded) {
  Expr range = compile_expr("range(20000)").value();
  Result<std::vector<json::value>> all = range.eval_all(j("null"));
  ASSERT_FALSE(all);
  EXPECT_EQ(all.error().code, Code::kInvalidArgument);
}

TEST(Expr, CompileErrorCarriesJqMessage) {
  Result<Expr> bad = compile_expr(".a | | .b");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("syntax error"), std::string::npos) << bad.error().message;
  // The sandbox prelude must not show in messages.
  EXPECT_EQ(bad.error().message.find("$ENV"), std::string::npos) << bad.error().message;
  Result<Expr> unknown = compile_expr("nosuchfunction(1)");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("nosuchfunction"), std::string::npos);
  EXPECT_FALSE(compile_expr(""));
  EXPECT_FALSE(compile_expr("   "));
  EXPECT_FALSE(compile_expr(std::string(limits::kExpressionBytesMax + 1, '.')));
  EXPECT_FALSE(compile_expr(std::string_view(".a\0b", 4)));
}

TEST(Expr, RuntimeErrorCarriesJqMessage) {
  Expr e = compile_expr(".a + 1").value();
  Result<json::value> v = e.eval(j(R"({"a":"x"})"));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Code::kInvalidArgument);
  EXPECT_NE(v.error().message.find("cannot be added"), std::string::npos) << v.error().message;
  v = compile_expr("error(\"boom\")").value().eval(j("null"));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message, "jq: boom");
  v = compile_expr("error({code: 1})").value().eval(j("null"));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message, R"(jq: {"code":1})");
}

TEST(Expr, EnvironmentAndInputsAreHidden) {
  EXPECT_EQ(eval_ok("env", "null"), j("{}"));
  EXPECT_EQ(eval_ok("$ENV", "null"), j("{}"));
  EXPECT_EQ(eval_ok("[inputs]", "null"), j("[]"));
  EXPECT_FALSE(compile_expr("import \"foo\" as foo; .").has_value());
}

TEST(Expr, CacheReturnsSameProgram) {
  Expr a = compile_expr(".x").value();
  Expr b = compile_expr(".x").value();
  EXPECT_EQ(&a.text(), &b.text());
  EXPECT_FALSE(a.empty());
  EXPECT_TRUE(Expr().empty());
}

TEST(Expr, ConcurrentEvaluationUsesPerThreadStates) {
  Expr e = compile_expr(".n * 2").value();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&e, &failures, t] {
      for (int i = 0; i < 200; ++i) {
        json::object in;
        in["n"] = t * 1000 + i;
        Result<json::value> v = e.eval(in);
        if (!v || *v != json::value(2 * (t * 1000 + i))) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures.load(), 0);
}

TEST(Standalone, RecognisesOnlyWholePlaceholders) {
  EXPECT_EQ(standalone_expression("${{ .a }}"), ".a");
  EXPECT_EQ(standalone_expression("  ${{.a}}  "), ".a");
  EXPECT_EQ(standalone_expression("${{ {a: {b: 1}} }}"), "{a: {b: 1}}");
  EXPECT_EQ(standalone_expression("${{ \"}}\" }}"), "\"}}\"");
  EXPECT_FALSE(standalone_expression("x ${{ .a }}"));
  EXPECT_FALSE(standalone_expression("${{ .a }} ${{ .b }}"));
  EXPECT_FALSE(standalone_expression(".a"));
  EXPECT_FALSE(standalone_expression("${{ .a"));
}

TEST(Template, StandaloneYieldsJsonValue) {
  Problems problems;
  Template t = Template::compile(j(R"({"show":"${{ .items }}","n":3})"), "/c", problems);
  ASSERT_TRUE(problems.empty());
  EXPECT_FALSE(t.is_static());
  Result<json::value> v = t.render(j(R"({"items":[1,{"a":true}]})"));
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(*v, j(R"({"show":[1,{"a":true}],"n":3})"));
}

TEST(Template, EmbeddedIsInterpolated) {
  Problems problems;
  Template t = Template::compile(
      j(R"({"url":"https://x/items?q=${{ .q }}&n=${{ .n }}&o=${{ .o }}","h":["a${{ .s }}"]})"),
      "/c", problems);
  ASSERT_TRUE(problems.empty());
  Result<json::value> v = t.render(j(R"({"q":"cats","n":2,"o":{"k":[1]},"s":null})"));
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(*v, j(R"({"url":"https://x/items?q=cats&n=2&o={\"k\":[1]}","h":["anull"]})"));
}

TEST(Template, StaticTemplateIsReturnedAsIs) {
  Problems problems;
  Template t = Template::compile(j(R"({"a":[1,"two",{"b":null}]})"), "/c", problems);
  EXPECT_TRUE(t.is_static());
  EXPECT_EQ(t.render(json::value()).value(), j(R"({"a":[1,"two",{"b":null}]})"));
  Template lit = Template::literal(json::value("${{ .x }}"));
  EXPECT_TRUE(lit.is_static());
  EXPECT_EQ(lit.render(json::value()).value(), json::value("${{ .x }}"));
}

TEST(Template, CompileProblemsCarryThePath) {
  Problems problems;
  Template t = Template::compile(j(R"({"a":{"b/c":["ok","${{ .x | | }}"]},"d":"${{ .y"})"),
                                 "/nodes/0/config", problems);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].path, "/nodes/0/config/a/b~1c/1");
  EXPECT_NE(problems[0].message.find("syntax error"), std::string::npos);
  EXPECT_EQ(problems[1].path, "/nodes/0/config/d");
  EXPECT_NE(problems[1].message.find("unterminated"), std::string::npos);
  EXPECT_TRUE(t.is_static());
}

TEST(Template, RenderErrorNamesThePath) {
  Problems problems;
  Template t =
      Template::compile(j(R"({"a":"${{ .x + 1 }}","b":"n=${{ empty }}"})"), "/c", problems);
  ASSERT_TRUE(problems.empty());
  Result<json::value> v = t.render(j(R"({"x":"s"})"));
  ASSERT_FALSE(v);
  EXPECT_TRUE(v.error().message.starts_with("/c/a: jq:")) << v.error().message;
  v = t.render(j(R"({"x":1})"));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message, "/c/b: expression yielded no value");
}

Error eval_error(std::string_view program, std::string_view input = "null") {
  Result<Expr> expr = compile_expr(program);
  EXPECT_TRUE(expr) << program << ": " << (expr ? "" : expr.error().message);
  if (!expr) {
    return Error(Code::kInternal, "does not compile");
  }
  Result<json::value> v = expr->eval(j(input));
  EXPECT_FALSE(v) << program << " yielded a value";
  return v ? Error(Code::kInternal, "no error") : v.error();
}

constexpr std::string_view kTimeLimit = "expression exceeded its time limit of 1s";

TEST(Sandbox, RunawayProgramsStopAtTheTimeLimit) {
  for (std::string_view program :
       {"def f: f; f", "[repeat(.)]", "[limit(1e9; repeat(1))]", "until(false; .)",
        "[recurse(. + 1)] | length", "last(range(1e6) | range(1e6))", "[while(true; .)]"}) {
    const Error e = eval_error(program, "1");
    EXPECT_EQ(e.code, Code::kResourceExhausted) << program;
    EXPECT_EQ(e.message, kTimeLimit) << program;
  }
  // The same thread's cached state was discarded: the next evaluation of the same program (and
  // of another one) starts clean.
  EXPECT_EQ(eval_error("def f: f; f").message, kTimeLimit);
  EXPECT_EQ(eval_ok(".a + 1", R"({"a": 1})"), j("2"));
  EXPECT_EQ(eval_ok("first(repeat(.))", "7"), j("7"));
}

TEST(Sandbox, AllocationsAreBounded) {
  for (std::string_view program : {"[range(1e10)]", "[range(0; 1e10)]", "[range(0; 1e10; 1)]"}) {
    const Error e = eval_error(program);
    EXPECT_EQ(e.code, Code::kInvalidArgument) << program;
    EXPECT_NE(e.message.find("more than 1000000 items"), std::string::npos) << e.message;
  }
  for (std::string_view program :
       {"\"x\" * 1e9", "1e9 * \"x\"", "\"x\" * 1e5 | until(length > 1e12; . + .)",
        "\"x\" * 1e7 | . + ."}) {
    const Error e = eval_error(program);
    EXPECT_EQ(e.code, Code::kInvalidArgument) << program;
    EXPECT_NE(e.message.find("a string of more than 16777216 bytes"), std::string::npos)
        << program << ": " << e.message;
  }
  EXPECT_NE(eval_error("[range(1e6)] | until(length > 1e12; . + .)").message.find("items"),
            std::string::npos);
  for (std::string_view program : {".[1e9] = 1", ".[1e9] |= 1", ".[1e9] += 1", "setpath([1e9]; 1)",
                                   "fromstream([[1e9], 1], [[1e9]])", "{a: []} | .a[2e6] = 1"}) {
    const Error e = eval_error(program);
    EXPECT_NE(e.message.find("an array index above 1000000"), std::string::npos)
        << program << ": " << e.message;
  }
  // halt would race the watchdog (jq_halt asserts the state is not halted yet): not available.
  EXPECT_NE(eval_error("halt").message.find("halt is not available"), std::string::npos);
  EXPECT_NE(eval_error("\"x\" | halt_error").message.find("not available"), std::string::npos);
  // Results are capped: 17 strings of 1 MiB each is over kNodeOutputBytesMax (16 MiB).
  const Error big = eval_error("[range(17) | \"x\" * 1048576]");
  EXPECT_EQ(big.code, Code::kResourceExhausted);
  EXPECT_NE(big.message.find("result exceeds"), std::string::npos) << big.message;
}

TEST(Sandbox, ShadowedBuiltinsKeepTheirMeaning) {
  EXPECT_EQ(eval_ok("[range(3)]", "null"), j("[0,1,2]"));
  EXPECT_EQ(eval_ok("[range(1; 3)]", "null"), j("[1,2]"));
  EXPECT_EQ(eval_ok("[range(0; 10; 3)]", "null"), j("[0,3,6,9]"));
  EXPECT_EQ(eval_ok("[range(5; 0; -2)]", "null"), j("[5,3,1]"));
  EXPECT_EQ(eval_ok("[range(0, 1; 3, 4)]", "null"), j("[0,1,2,0,1,2,3,1,2,1,2,3]"));
  EXPECT_EQ(eval_ok("[(1, 2) + (10, 20)]", "null"), j("[11,12,21,22]"));
  EXPECT_EQ(eval_ok("[(1, 2) * (3, 4)]", "null"), j("[3,6,4,8]"));
  EXPECT_EQ(eval_ok("[\"ab\" * 2, null + 1, [1] + [2], {a: 1} + {b: 2}, \"a\" + \"b\"]", "null"),
            j(R"(["abab", 1, [1,2], {"a":1,"b":2}, "ab"])"));
  EXPECT_EQ(eval_ok("{a: {b: 1}} * {a: {c: 2}}", "null"), j(R"({"a":{"b":1,"c":2}})"));
  EXPECT_EQ(eval_ok("[1, 2, 3] | .[] |= empty", "null"), j("[2]"));  // jq 1.6's own answer
  EXPECT_EQ(eval_ok("{a: 1} | .b.c += 5 | .a = 7", "null"), j(R"({"a":7,"b":{"c":5}})"));
  EXPECT_EQ(eval_ok("null | .[2] = 1", "null"), j("[null,null,1]"));
  EXPECT_EQ(eval_ok("[1, [2]] | [tostream] | fromstream(.[])", "null"), j("[1,[2]]"));
  EXPECT_EQ(eval_ok("reduce range(3) as $i ({}; .[$i | tostring] = $i)", "null"),
            j(R"({"0":0,"1":1,"2":2})"));
  const Error bad = eval_error("{} - 1");
  EXPECT_NE(bad.message.find("cannot be subtracted"), std::string::npos) << bad.message;
  EXPECT_NE(eval_error("range(\"a\")").message.find("Range bounds must be numeric"),
            std::string::npos);
}

TEST(Sandbox, ARunawayEvaluationDoesNotHoldUpOtherThreads) {
  Expr runaway = compile_expr("def f: f; f").value();
  Expr fine = compile_expr("[range(.n)] | add").value();
  std::atomic<int> failures{0};
  std::atomic<bool> done{false};
  Error stopped(Code::kInternal, "not run");
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    Result<json::value> v = runaway.eval(j("null"));
    stopped = v ? Error(Code::kInternal, "yielded") : v.error();
    done = true;
  });
  std::atomic<int> evaluations{0};
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      // At least 200 evaluations each, and on until the runaway one has been stopped.
      for (int i = 0; i < 200 || !done; ++i) {
        const int n = 1 + (t * 7 + i) % 50;
        Result<json::value> v = fine.eval(json::object{{"n", n}});
        if (!v || *v != json::value(n * (n - 1) / 2)) {
          ++failures;
        }
        ++evaluations;
      }
    });
  }
  for (std::thread& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GE(evaluations.load(), 600);
  EXPECT_EQ(stopped.message, kTimeLimit);
}

}  // namespace
}  // namespace venture::workflow
