// Goal: Compile accepts the SPEC §1 example and every node type, builds a correct Ir, and rejects
// each kind of invalid definition with the right JSON Pointer and a plain message, reporting all
// problems at once.
// Method: compile small definitions written inline (JSON) and inspect the Ir or the problems.
#include <gtest/gtest.h>

#include "workflow/workflow.h"

namespace venture::workflow {
namespace {

json::value j(std::string_view text) { return base::parse_json(text).value(); }

const char* k_spec_example = R"({
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

std::string dump(const Problems& problems) {
  std::string out;
  for (const Problem& p : problems) {
    out += p.path + ": " + p.message + "\n";
  }
  return out;
}

// Compiles a definition made of the given nodes (a JSON array) and returns the problems.
Problems problems_of(std::string_view nodes, std::string_view extra = "") {
  Problems problems;
  std::string text =
      R"({"name":"t",)" + std::string(extra) + R"("nodes":)" + std::string(nodes) + "}";
  EXPECT_EQ(compile(j(text), problems), nullptr) << text;
  return problems;
}

bool has(const Problems& problems, std::string_view path, std::string_view fragment) {
  for (const Problem& p : problems) {
    if (p.path == path && p.message.find(fragment) != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST(Compile, SpecExample) {
  Problems problems;
  const json::value def = j(k_spec_example);
  std::shared_ptr<const Ir> ir = compile(def, problems);
  ASSERT_NE(ir, nullptr) << dump(problems);
  EXPECT_EQ(ir->name, "enrich-and-approve");
  EXPECT_TRUE(ir->version.starts_with("b2:"));
  EXPECT_EQ(ir->version.size(), 3u + 64u);
  EXPECT_EQ(ir->version, version_of(def));
  ASSERT_EQ(ir->nodes.size(), 6u);
  EXPECT_EQ(ir->index_of("review"), 2);
  EXPECT_EQ(ir->index_of("nope"), -1);
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
  Result<json::value> url = ir->nodes[0].config.render(j(R"({"inputs":{"q":"cats"}})"));
  ASSERT_TRUE(url);
  EXPECT_EQ(url->at("url"), json::value("https://api.example.com/items?q=cats"));
  Result<json::value> out =
      ir->output->render(j(R"({"nodes":{"publish":{"status":"succeeded"}}})"));
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, j(R"({"published":true})"));
}

TEST(Compile, NodeLevelFields) {
  Problems problems;
  std::shared_ptr<const Ir> ir = compile(j(R"({"name":"n","defaults":{"timeout":"1m"},"nodes":[
    {"id":"a","type":"noop","timeout":"5s","on_failure":"continue",
     "retry":{"max_attempts":5,"initial_interval":"250ms","backoff_coefficient":1.5,
              "max_interval":"10s","jitter":0.2,"non_retryable":["invalid_argument"]}},
    {"id":"b","type":"transform","needs":"a","foreach":".inputs.list","max_parallel":4,
     "config":{"expr":".item"}},
    {"id":"c","type":"transform","needs":["b"],"if":false,
     "repeat":{"until":"${{ .output > 3 }}","max_iterations":7,"interval":"1s"},
     "config":{"expr":"${{ .nodes.b.output | length }}"}}]})"),
                                         problems);
  ASSERT_NE(ir, nullptr) << dump(problems);
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
  EXPECT_EQ(b.spec->execution, Execution::kTask);
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
  EXPECT_EQ(compile(j(R"({"name":"Bad Name","nodez":[],"nodes":[
      {"id":"a","type":"htp","config":{}},
      {"id":"a","type":"noop","neds":["a"]},
      {"id":"9x","type":"noop"}]})"),
                    problems),
            nullptr);
  EXPECT_TRUE(has(problems, "/name", "must match")) << dump(problems);
  EXPECT_TRUE(has(problems, "/nodez", "did you mean 'nodes'?")) << dump(problems);
  EXPECT_TRUE(has(problems, "/nodes/0/type", "unknown node type 'htp'; did you mean 'http'?"))
      << dump(problems);
  EXPECT_TRUE(has(problems, "/nodes/1/id", "duplicate id 'a'")) << dump(problems);
  EXPECT_TRUE(has(problems, "/nodes/1/neds", "did you mean 'needs'?")) << dump(problems);
  EXPECT_TRUE(has(problems, "/nodes/2/id", "must match")) << dump(problems);
}

TEST(Compile, NeedsProblems) {
  Problems p = problems_of(R"([{"id":"fetch","type":"noop"},
      {"id":"b","type":"noop","needs":["fetc","b","fetch","fetch",3]}])");
  EXPECT_TRUE(has(p, "/nodes/1/needs/0", "unknown node 'fetc'; did you mean 'fetch'?")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/1/needs/1", "cannot need itself")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/1/needs/3", "listed twice")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/1/needs/4", "expected a node id")) << dump(p);
}

TEST(Compile, CycleIsNamed) {
  Problems p = problems_of(R"([{"id":"start","type":"noop"},
      {"id":"b","type":"noop","needs":["c","start"]},
      {"id":"c","type":"noop","needs":["d"]},
      {"id":"d","type":"noop","needs":["b"]},
      {"id":"after","type":"noop","needs":["d"]}])");
  ASSERT_EQ(p.size(), 1u) << dump(p);
  EXPECT_EQ(p[0].path, "/nodes/1/needs");
  EXPECT_EQ(p[0].message, "cycle: b -> c -> d -> b");
  Problems two = problems_of(R"([{"id":"a","type":"noop","needs":["b"]},
      {"id":"b","type":"noop","needs":["a"]}])");
  ASSERT_EQ(two.size(), 1u) << dump(two);
  EXPECT_EQ(two[0].message, "cycle: a -> b -> a");
}

TEST(Compile, ExpressionsMustCompile) {
  Problems p = problems_of(R"([{"id":"a","type":"noop","if":"${{ .x | | }}",
      "foreach":".[", "config":{"output":"${{ nosuch(1) }}"}},
      {"id":"b","type":"transform","config":{"expr":"map(."}}])");
  EXPECT_TRUE(has(p, "/nodes/0/if", "syntax error")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/foreach", "jq:")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/config/output", "nosuch")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/1/config/expr", "jq:")) << dump(p);
  Problems out = problems_of(R"([{"id":"a","type":"noop"}])", R"("output":{"x":"${{ ) }}"},)");
  EXPECT_TRUE(has(out, "/output/x", "jq:")) << dump(out);
}

TEST(Compile, FlowFieldProblems) {
  Problems p = problems_of(R"([{"id":"a","type":"noop","join":"some","on_failure":"ignore",
      "max_parallel":3,"timeout":"5 minutes","repeat":{"max_iterations":0,"intervl":"1s"},
      "retry":{"max_attempts":0,"backoff_coefficient":0.5,"jitter":2,"non_retryable":[1],
               "initial_interval":"10s","max_interval":"1s"}},
      {"id":"b","type":"noop","foreach":".x","max_parallel":100000,"timeout":"0s"},
      {"id":"c","type":"sleep","foreach":".x","config":{"duration":"1s"}}])");
  EXPECT_TRUE(has(p, "/nodes/0/join", "all, any")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/on_failure", "fail, continue")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/max_parallel", "only allowed together with foreach")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/timeout", "not a duration")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/repeat/until", "required")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/repeat/max_iterations", "between 1 and 1000")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/repeat/intervl", "did you mean 'interval'?")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/retry/max_attempts", "between 1 and 100")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/retry/backoff_coefficient", "from 1")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/retry/jitter", "from 0 to 1")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/retry/non_retryable/0", "expected a string")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/0/retry/max_interval", "initial_interval")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/1/max_parallel", "between 1 and 1000")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/1/timeout", "at least")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/2/foreach", "a sleep node cannot fan out")) << dump(p);
}

TEST(Compile, ApprovalQuorumMustBeReachableAndRolesKnown) {
  Problems p = problems_of(R"([
      {"id":"a","type":"approval","config":{"title":"t","quorum":3,
        "approvers":{"users":["x","y"]}}},
      {"id":"b","type":"approval","config":{"title":"t","quorum":3,
        "approvers":{"roles":[],"users":["x","y"]}}},
      {"id":"c","type":"approval","config":{"title":"t","quorum":3,
        "approvers":{"roles":["approver"],"users":["x"]}}},
      {"id":"d","type":"approval","config":{"title":"t","approvers":{"roles":["aprover"]}}}])");
  EXPECT_TRUE(has(p, "/nodes/0/config/quorum", "can never be reached")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/1/config/quorum", "can never be reached")) << dump(p);
  EXPECT_FALSE(has(p, "/nodes/2/config/quorum", "")) << dump(p);  // a role may hold many people
  EXPECT_TRUE(has(p, "/nodes/3/config/approvers/roles/0", "did you mean 'approver'?")) << dump(p);
}

TEST(Compile, ConfigSchemas) {
  Problems p = problems_of(R"([
      {"id":"a","type":"sleep","config":{}},
      {"id":"b","type":"sleep","config":{"duration":"soon"}},
      {"id":"c","type":"http","config":{"method":"GETT","url":"ftp://x","headers":{"a":1},
        "query":[],"timeout":"1x","expect_status":[200,700],"max_response_bytes":0,"bodyy":1}},
      {"id":"d","type":"approval","config":{"approvers":{"roles":[]},"quorum":0,
        "on_timeout":"maybe","reject_on_any":"yes"}},
      {"id":"e","type":"fail","config":{"code":1,"retryable":"no"}},
      {"id":"f","type":"transform"},
      {"id":"g","type":"noop","config":"nope"},
      {"id":"h","type":"http","config":{"url":"https://x","expect_status":"${{ .s }}"}},
      {"id":"i","type":"http","config":{"url":"https://x","timeout":"1h",
        "query":{"n":1,"b":true,"l":["a",2],"o":{"x":1},"ll":[[1]]}}}])");
  EXPECT_TRUE(has(p, "/nodes/0/config/duration", "required")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/1/config/duration", "not a duration")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/2/config/method", "did you mean 'GET'?")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/2/config/url", "http:// or https://")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/2/config/headers/a", "expected a string")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/2/config/query", "object of parameters")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/8/config/query/o", "list of them")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/8/config/query/ll", "list of them")) << dump(p);
  EXPECT_FALSE(has(p, "/nodes/8/config/query/n", "")) << dump(p);  // scalars and lists are fine
  EXPECT_FALSE(has(p, "/nodes/8/config/query/l", "")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/8/config/timeout", "at most 15m")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/2/config/timeout", "not a duration")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/2/config/expect_status/1", "between 100 and 599")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/2/config/max_response_bytes", "between 1")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/2/config/bodyy", "did you mean 'body'?")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/3/config/title", "required")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/3/config/approvers", "at least one role or user")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/3/config/quorum", "between 1")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/3/config/on_timeout", "approve, reject, fail")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/3/config/reject_on_any", "true or false")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/4/config/code", "expected a string")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/4/config/retryable", "true or false")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/5/config/expr", "required")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes/6/config", "must be an object")) << dump(p);
  for (const Problem& problem : p) {
    EXPECT_FALSE(problem.path.starts_with("/nodes/7")) << dump(p);
  }
}

TEST(Compile, TopLevelProblems) {
  Problems p;
  EXPECT_EQ(compile(j("[]"), p), nullptr);
  EXPECT_TRUE(has(p, "", "must be an object")) << dump(p);
  p.clear();
  EXPECT_EQ(compile(j(R"({"description":5,"defaults":{"timeout":"x","retri":{}},
      "inputs":{"type":"string"},"nodes":[]})"),
                    p),
            nullptr);
  EXPECT_TRUE(has(p, "/name", "required")) << dump(p);
  EXPECT_TRUE(has(p, "/description", "expected a string")) << dump(p);
  EXPECT_TRUE(has(p, "/defaults/timeout", "not a duration")) << dump(p);
  EXPECT_TRUE(has(p, "/defaults/retri", "did you mean 'retry'?")) << dump(p);
  EXPECT_TRUE(has(p, "/inputs/type", "must describe an object")) << dump(p);
  EXPECT_TRUE(has(p, "/nodes", "at least one node")) << dump(p);
  p.clear();
  EXPECT_EQ(compile(j(R"({"name":"x"})"), p), nullptr);
  EXPECT_TRUE(has(p, "/nodes", "required")) << dump(p);
}

TEST(Compile, Bounds) {
  json::array nodes;
  for (std::size_t i = 0; i <= limits::kNodesMax; ++i) {
    nodes.push_back(j(R"({"type":"noop"})"));
    nodes.back().as_object()["id"] = "n" + std::to_string(i);
  }
  json::object def;
  def["name"] = "big";
  def["nodes"] = nodes;
  Problems p;
  EXPECT_EQ(compile(def, p), nullptr);
  EXPECT_TRUE(has(p, "/nodes", "exceed the limit of 1000")) << dump(p);
  // Exactly the limit compiles.
  nodes.pop_back();
  def["nodes"] = nodes;
  p.clear();
  EXPECT_NE(compile(def, p), nullptr) << dump(p);
  // A long string anywhere; a long expression.
  Problems s = problems_of(R"([{"id":"a","type":"noop","config":{"output":")" +
                           std::string(limits::kStringBytesMax + 1, 'x') + R"("}}])");
  EXPECT_TRUE(has(s, "/nodes/0/config/output", "exceeds the limit")) << dump(s);
  Problems e = problems_of(R"([{"id":"a","type":"noop","if":")" +
                           std::string(limits::kExpressionBytesMax + 1, '.') + R"("}])");
  EXPECT_TRUE(has(e, "/nodes/0/if", "exceeds the limit")) << dump(e);
  Problems d = problems_of(R"([{"id":"a","type":"noop"}])",
                           R"("description":")" + std::string(20000, 'd') + R"(",)");
  EXPECT_TRUE(has(d, "/description", "longer than")) << dump(d);
}

TEST(Compile, ProblemListIsBounded) {
  json::array nodes;
  for (int i = 0; i < 900; ++i) {
    nodes.push_back(j(R"({"id":"A","type":"x","a":1,"b":2})"));
  }
  json::object def;
  def["name"] = "many";
  def["nodes"] = nodes;
  Problems p;
  EXPECT_EQ(compile(def, p), nullptr);
  EXPECT_EQ(p.size(), limits::kValidationProblemsMax);
}

TEST(Compile, VersionIsCanonical) {
  const json::value a = j(R"({"name":"v","nodes":[{"id":"a","type":"noop"}]})");
  const json::value b = j(R"({ "nodes" : [ { "type":"noop", "id":"a" } ], "name":"v" })");
  const json::value c = j(R"({"name":"v","nodes":[{"id":"b","type":"noop"}]})");
  EXPECT_EQ(version_of(a), version_of(b));
  EXPECT_NE(version_of(a), version_of(c));
  EXPECT_EQ(version_of(a), version_of(a));
}

TEST(Catalog, Types) {
  EXPECT_EQ(node_type_names(),
            (std::vector<std::string>{"approval", "fail", "http", "noop", "sleep", "transform"}));
  ASSERT_NE(find_node_type("sleep"), nullptr);
  EXPECT_EQ(find_node_type("sleep")->execution, Execution::kTimer);
  EXPECT_EQ(find_node_type("approval")->execution, Execution::kGate);
  EXPECT_EQ(find_node_type("http")->execution, Execution::kTask);
  EXPECT_TRUE(find_node_type("transform")->needs_context);
  EXPECT_EQ(find_node_type("nope"), nullptr);
}

}  // namespace
}  // namespace venture::workflow
