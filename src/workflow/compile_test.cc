// Goal: Compile accepts the SPEC §1 example and every node type, builds a correct Ir, and rejects
// each kind of invalid definition with the right JSON Pointer and a plain message, reporting all
// problems at once.
// Method: compile small definitions written inline (JSON) and inspect the Ir or the problems.
#include <gtest/gtest.h>

#include "workflow/workflow.h"

namespace venture::workflow {
namespace {

json::value J(std::string_view text) { return base::ParseJson(text).value(); }

const char* kSpecExample = R"({
  "name": "enrich-and-approve",
  "description": "optional text",
  "inputs": { "type": "object", "required": ["q"],
              "properties": { "q": { "type": "string" } } },
  "defaults": { "timeout": "30s", "retry": { "max_attempts": 3 } },
  "nodes": [
    { "id": "fetch",  "type": "http",
      "config": { "method": "GET",
                  "url": "https://api.example.com/items?q=${{ .inputs.q }}" } },
    { "id": "pick",   "type": "transform", "needs": ["fetch"],
      "config": { "expr": ".nodes.fetch.output.body.items[:3]" } },
    { "id": "review", "type": "approval", "needs": ["pick"],
      "config": { "title": "Publish these?", "show": "${{ .nodes.pick.output }}",
                  "approvers": { "roles": ["approver"] },
                  "quorum": 1, "timeout": "24h", "on_timeout": "reject" } },
    { "id": "publish", "type": "http", "needs": ["review"],
      "if": "${{ .nodes.review.outcome == \"approved\" }}",
      "config": { "method": "POST", "url": "https://api.example.com/publish",
                  "body": "${{ .nodes.pick.output }}" } },
    { "id": "discard", "type": "noop", "needs": ["review"],
      "if": "${{ .nodes.review.outcome != \"approved\" }}" },
    { "id": "done", "type": "noop", "needs": ["publish", "discard"], "join": "any" }
  ],
  "output": "${{ {published: (.nodes.publish.status == \"succeeded\")} }}"
})";

std::string Dump(const Problems& problems) {
  std::string out;
  for (const Problem& p : problems) {
    out += p.path + ": " + p.message + "\n";
  }
  return out;
}

// Compiles a definition made of the given nodes (a JSON array) and returns the problems.
Problems ProblemsOf(std::string_view nodes, std::string_view extra = "") {
  Problems problems;
  std::string text = R"({"name":"t",)" + std::string(extra) + R"("nodes":)" + std::string(nodes) +
                     "}";
  EXPECT_EQ(Compile(J(text), problems), nullptr) << text;
  return problems;
}

bool Has(const Problems& problems, std::string_view path, std::string_view fragment) {
  for (const Problem& p : problems) {
    if (p.path == path && p.message.find(fragment) != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST(Compile, SpecExample) {
  Problems problems;
  const json::value def = J(kSpecExample);
  std::shared_ptr<const Ir> ir = Compile(def, problems);
  ASSERT_NE(ir, nullptr) << Dump(problems);
  EXPECT_EQ(ir->name, "enrich-and-approve");
  EXPECT_TRUE(ir->version.starts_with("b2:"));
  EXPECT_EQ(ir->version.size(), 3u + 64u);
  EXPECT_EQ(ir->version, VersionOf(def));
  ASSERT_EQ(ir->nodes.size(), 6u);
  EXPECT_EQ(ir->IndexOf("review"), 2);
  EXPECT_EQ(ir->IndexOf("nope"), -1);
  EXPECT_EQ(ir->nodes[5].needs, (std::vector<int>{3, 4}));
  EXPECT_EQ(ir->nodes[5].join, Join::kAny);
  EXPECT_EQ(ir->topo_order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(ir->dependents[2], (std::vector<int>{3, 4}));
  // defaults apply to nodes without their own
  EXPECT_EQ(ir->nodes[0].timeout, Millis(30000));
  EXPECT_EQ(ir->nodes[0].retry.max_attempts, 3);
  EXPECT_EQ(ir->nodes[2].spec->execution, Execution::kGate);
  EXPECT_TRUE(ir->nodes[3].if_expr.has_value());
  EXPECT_EQ(ir->nodes[3].if_expr->text(), ".nodes.review.outcome == \"approved\"");
  EXPECT_TRUE(ir->nodes[1].spec->needs_context);
  EXPECT_TRUE(ir->nodes[1].config.is_static());
  EXPECT_FALSE(ir->nodes[0].config.is_static());
  EXPECT_TRUE(ir->output.has_value());
  EXPECT_TRUE(ir->inputs_schema.is_object());
  Result<json::value> url = ir->nodes[0].config.Render(J(R"({"inputs":{"q":"cats"}})"));
  ASSERT_TRUE(url);
  EXPECT_EQ(url->at("url"), json::value("https://api.example.com/items?q=cats"));
  Result<json::value> out =
      ir->output->Render(J(R"({"nodes":{"publish":{"status":"succeeded"}}})"));
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, J(R"({"published":true})"));
}

TEST(Compile, NodeLevelFields) {
  Problems problems;
  std::shared_ptr<const Ir> ir = Compile(J(R"({"name":"n","defaults":{"timeout":"1m"},"nodes":[
    {"id":"a","type":"noop","timeout":"5s","on_failure":"continue",
     "retry":{"max_attempts":5,"initial_interval":"250ms","backoff_coefficient":1.5,
              "max_interval":"10s","jitter":0.2,"non_retryable":["invalid_argument"]}},
    {"id":"b","type":"sleep","needs":"a","foreach":".inputs.list","max_parallel":4,
     "config":{"duration":"${{ .item }}"}},
    {"id":"c","type":"transform","needs":["b"],"if":false,
     "repeat":{"until":"${{ .output > 3 }}","max_iterations":7,"interval":"1s"},
     "config":{"expr":"${{ .nodes.b.output | length }}"}}]})"),
                                         problems);
  ASSERT_NE(ir, nullptr) << Dump(problems);
  const Node& a = ir->nodes[0];
  EXPECT_EQ(a.timeout, Millis(5000));
  EXPECT_EQ(a.on_failure, OnFailure::kContinue);
  EXPECT_EQ(a.retry.max_attempts, 5);
  EXPECT_EQ(a.retry.initial_interval, Millis(250));
  EXPECT_EQ(a.retry.max_interval, Millis(10000));
  EXPECT_DOUBLE_EQ(a.retry.backoff_coefficient, 1.5);
  EXPECT_DOUBLE_EQ(a.retry.jitter, 0.2);
  EXPECT_EQ(a.retry.non_retryable, (std::vector<std::string>{"invalid_argument"}));
  const Node& b = ir->nodes[1];
  EXPECT_EQ(b.needs, (std::vector<int>{0}));
  EXPECT_EQ(b.max_parallel, 4u);
  EXPECT_EQ(b.foreach->text(), ".inputs.list");
  EXPECT_EQ(b.timeout, Millis(60000));
  EXPECT_EQ(b.spec->execution, Execution::kTimer);
  EXPECT_EQ(b.retry.max_attempts, 1);
  const Node& c = ir->nodes[2];
  EXPECT_EQ(c.if_expr->text(), "false");
  EXPECT_EQ(c.repeat->max_iterations, 7);
  EXPECT_EQ(c.repeat->interval, Millis(1000));
  EXPECT_EQ(c.repeat->until.text(), ".output > 3");
  // transform's expr is kept a bare program for the executor
  EXPECT_EQ(c.config.raw().at("expr"), json::value(".nodes.b.output | length"));
}

TEST(Compile, AllProblemsAreReported) {
  Problems problems;
  EXPECT_EQ(Compile(J(R"({"name":"Bad Name","nodez":[],"nodes":[
      {"id":"a","type":"htp","config":{}},
      {"id":"a","type":"noop","neds":["a"]},
      {"id":"9x","type":"noop"}]})"),
                    problems),
            nullptr);
  EXPECT_TRUE(Has(problems, "/name", "must match")) << Dump(problems);
  EXPECT_TRUE(Has(problems, "/nodez", "did you mean 'nodes'?")) << Dump(problems);
  EXPECT_TRUE(Has(problems, "/nodes/0/type", "unknown node type 'htp'; did you mean 'http'?"))
      << Dump(problems);
  EXPECT_TRUE(Has(problems, "/nodes/1/id", "duplicate id 'a'")) << Dump(problems);
  EXPECT_TRUE(Has(problems, "/nodes/1/neds", "did you mean 'needs'?")) << Dump(problems);
  EXPECT_TRUE(Has(problems, "/nodes/2/id", "must match")) << Dump(problems);
}

TEST(Compile, NeedsProblems) {
  Problems p = ProblemsOf(R"([{"id":"fetch","type":"noop"},
      {"id":"b","type":"noop","needs":["fetc","b","fetch","fetch",3]}])");
  EXPECT_TRUE(Has(p, "/nodes/1/needs/0", "unknown node 'fetc'; did you mean 'fetch'?")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/1/needs/1", "cannot need itself")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/1/needs/3", "listed twice")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/1/needs/4", "expected a node id")) << Dump(p);
}

TEST(Compile, CycleIsNamed) {
  Problems p = ProblemsOf(R"([{"id":"start","type":"noop"},
      {"id":"b","type":"noop","needs":["c","start"]},
      {"id":"c","type":"noop","needs":["d"]},
      {"id":"d","type":"noop","needs":["b"]},
      {"id":"after","type":"noop","needs":["d"]}])");
  ASSERT_EQ(p.size(), 1u) << Dump(p);
  EXPECT_EQ(p[0].path, "/nodes/1/needs");
  EXPECT_EQ(p[0].message, "cycle: b -> c -> d -> b");
  Problems two = ProblemsOf(R"([{"id":"a","type":"noop","needs":["b"]},
      {"id":"b","type":"noop","needs":["a"]}])");
  ASSERT_EQ(two.size(), 1u) << Dump(two);
  EXPECT_EQ(two[0].message, "cycle: a -> b -> a");
}

TEST(Compile, ExpressionsMustCompile) {
  Problems p = ProblemsOf(R"([{"id":"a","type":"noop","if":"${{ .x | | }}",
      "foreach":".[", "config":{"output":"${{ nosuch(1) }}"}},
      {"id":"b","type":"transform","config":{"expr":"map(."}}])");
  EXPECT_TRUE(Has(p, "/nodes/0/if", "syntax error")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/foreach", "jq:")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/config/output", "nosuch")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/1/config/expr", "jq:")) << Dump(p);
  Problems out = ProblemsOf(R"([{"id":"a","type":"noop"}])", R"("output":{"x":"${{ ) }}"},)");
  EXPECT_TRUE(Has(out, "/output/x", "jq:")) << Dump(out);
}

TEST(Compile, FlowFieldProblems) {
  Problems p = ProblemsOf(R"([{"id":"a","type":"noop","join":"some","on_failure":"ignore",
      "max_parallel":3,"timeout":"5 minutes","repeat":{"max_iterations":0,"intervl":"1s"},
      "retry":{"max_attempts":0,"backoff_coefficient":0.5,"jitter":2,"non_retryable":[1],
               "initial_interval":"10s","max_interval":"1s"}},
      {"id":"b","type":"noop","foreach":".x","max_parallel":100000,"timeout":"0s"}])");
  EXPECT_TRUE(Has(p, "/nodes/0/join", "all, any")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/on_failure", "fail, continue")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/max_parallel", "only allowed together with foreach")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/timeout", "not a duration")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/repeat/until", "required")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/repeat/max_iterations", "between 1 and 1000")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/repeat/intervl", "did you mean 'interval'?")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/retry/max_attempts", "between 1 and 100")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/retry/backoff_coefficient", "from 1")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/retry/jitter", "from 0 to 1")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/retry/non_retryable/0", "expected a string")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/0/retry/max_interval", "initial_interval")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/1/max_parallel", "between 1 and 1000")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/1/timeout", "at least")) << Dump(p);
}

TEST(Compile, ConfigSchemas) {
  Problems p = ProblemsOf(R"([
      {"id":"a","type":"sleep","config":{}},
      {"id":"b","type":"sleep","config":{"duration":"soon"}},
      {"id":"c","type":"http","config":{"method":"GETT","url":"ftp://x","headers":{"a":1},
        "query":[],"timeout":"1x","expect_status":[200,700],"max_response_bytes":0,"bodyy":1}},
      {"id":"d","type":"approval","config":{"approvers":{"roles":[]},"quorum":0,
        "on_timeout":"maybe","reject_on_any":"yes"}},
      {"id":"e","type":"fail","config":{"code":1,"retryable":"no"}},
      {"id":"f","type":"transform"},
      {"id":"g","type":"noop","config":"nope"},
      {"id":"h","type":"http","config":{"url":"https://x","expect_status":"${{ .s }}"}}])");
  EXPECT_TRUE(Has(p, "/nodes/0/config/duration", "required")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/1/config/duration", "not a duration")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/2/config/method", "did you mean 'GET'?")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/2/config/url", "http:// or https://")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/2/config/headers/a", "expected a string")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/2/config/query", "object of strings")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/2/config/timeout", "not a duration")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/2/config/expect_status/1", "between 100 and 599")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/2/config/max_response_bytes", "between 1")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/2/config/bodyy", "did you mean 'body'?")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/3/config/title", "required")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/3/config/approvers", "at least one role or user")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/3/config/quorum", "between 1")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/3/config/on_timeout", "approve, reject, fail")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/3/config/reject_on_any", "true or false")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/4/config/code", "expected a string")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/4/config/retryable", "true or false")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/5/config/expr", "required")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes/6/config", "must be an object")) << Dump(p);
  for (const Problem& problem : p) {
    EXPECT_FALSE(problem.path.starts_with("/nodes/7")) << Dump(p);
  }
}

TEST(Compile, TopLevelProblems) {
  Problems p;
  EXPECT_EQ(Compile(J("[]"), p), nullptr);
  EXPECT_TRUE(Has(p, "", "must be an object")) << Dump(p);
  p.clear();
  EXPECT_EQ(Compile(J(R"({"description":5,"defaults":{"timeout":"x","retri":{}},
      "inputs":{"type":"string"},"nodes":[]})"),
                    p),
            nullptr);
  EXPECT_TRUE(Has(p, "/name", "required")) << Dump(p);
  EXPECT_TRUE(Has(p, "/description", "expected a string")) << Dump(p);
  EXPECT_TRUE(Has(p, "/defaults/timeout", "not a duration")) << Dump(p);
  EXPECT_TRUE(Has(p, "/defaults/retri", "did you mean 'retry'?")) << Dump(p);
  EXPECT_TRUE(Has(p, "/inputs/type", "must describe an object")) << Dump(p);
  EXPECT_TRUE(Has(p, "/nodes", "at least one node")) << Dump(p);
  p.clear();
  EXPECT_EQ(Compile(J(R"({"name":"x"})"), p), nullptr);
  EXPECT_TRUE(Has(p, "/nodes", "required")) << Dump(p);
}

TEST(Compile, Bounds) {
  json::array nodes;
  for (std::size_t i = 0; i <= limits::kNodesMax; ++i) {
    nodes.push_back(J(R"({"type":"noop"})"));
    nodes.back().as_object()["id"] = "n" + std::to_string(i);
  }
  json::object def;
  def["name"] = "big";
  def["nodes"] = nodes;
  Problems p;
  EXPECT_EQ(Compile(def, p), nullptr);
  EXPECT_TRUE(Has(p, "/nodes", "exceed the limit of 1000")) << Dump(p);
  // Exactly the limit compiles.
  nodes.pop_back();
  def["nodes"] = nodes;
  p.clear();
  EXPECT_NE(Compile(def, p), nullptr) << Dump(p);
  // A long string anywhere; a long expression.
  Problems s = ProblemsOf(R"([{"id":"a","type":"noop","config":{"output":")" +
                          std::string(limits::kStringBytesMax + 1, 'x') + R"("}}])");
  EXPECT_TRUE(Has(s, "/nodes/0/config/output", "exceeds the limit")) << Dump(s);
  Problems e = ProblemsOf(R"([{"id":"a","type":"noop","if":")" +
                          std::string(limits::kExpressionBytesMax + 1, '.') + R"("}])");
  EXPECT_TRUE(Has(e, "/nodes/0/if", "exceeds the limit")) << Dump(e);
  Problems d = ProblemsOf(R"([{"id":"a","type":"noop"}])",
                          R"("description":")" + std::string(20000, 'd') + R"(",)");
  EXPECT_TRUE(Has(d, "/description", "longer than")) << Dump(d);
}

TEST(Compile, ProblemListIsBounded) {
  json::array nodes;
  for (int i = 0; i < 900; ++i) {
    nodes.push_back(J(R"({"id":"A","type":"x","a":1,"b":2})"));
  }
  json::object def;
  def["name"] = "many";
  def["nodes"] = nodes;
  Problems p;
  EXPECT_EQ(Compile(def, p), nullptr);
  EXPECT_EQ(p.size(), limits::kValidationProblemsMax);
}

TEST(Compile, VersionIsCanonical) {
  const json::value a = J(R"({"name":"v","nodes":[{"id":"a","type":"noop"}]})");
  const json::value b = J(R"({ "nodes" : [ { "type":"noop", "id":"a" } ], "name":"v" })");
  const json::value c = J(R"({"name":"v","nodes":[{"id":"b","type":"noop"}]})");
  EXPECT_EQ(VersionOf(a), VersionOf(b));
  EXPECT_NE(VersionOf(a), VersionOf(c));
  EXPECT_EQ(VersionOf(a), VersionOf(a));
}

TEST(Catalog, Types) {
  EXPECT_EQ(NodeTypeNames(),
            (std::vector<std::string>{"approval", "fail", "http", "noop", "sleep", "transform"}));
  ASSERT_NE(FindNodeType("sleep"), nullptr);
  EXPECT_EQ(FindNodeType("sleep")->execution, Execution::kTimer);
  EXPECT_EQ(FindNodeType("approval")->execution, Execution::kGate);
  EXPECT_EQ(FindNodeType("http")->execution, Execution::kTask);
  EXPECT_TRUE(FindNodeType("transform")->needs_context);
  EXPECT_EQ(FindNodeType("nope"), nullptr);
}

}  // namespace
}  // namespace venture::workflow
