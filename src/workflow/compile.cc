// Compile: validation of a definition (SPEC §1) and construction of the Ir. Every check reports
// into the problem list and goes on, so one pass shows the author everything that is wrong.
#include <algorithm>
#include <deque>

#include "workflow/internal.h"

namespace venture::workflow {
namespace {

using internal::add_problem;
using internal::child;
using internal::quote;

const std::vector<std::string>& top_fields() {
  static const std::vector<std::string> kFields = {"name",     "description", "inputs",
                                                   "defaults", "nodes",       "output"};
  return kFields;
}

const std::vector<std::string>& node_fields() {
  static const std::vector<std::string> kFields = {"id",    "type",    "needs",        "join",
                                                   "if",    "foreach", "max_parallel", "repeat",
                                                   "retry", "timeout", "on_failure",   "config"};
  return kFields;
}

// Walks the whole document once for the bounds that apply everywhere.
void check_bounds(const json::value& v, const std::string& path, std::size_t depth,
                  Problems& problems) {
  if (depth > limits::kJsonDepthMax) {
    add_problem(problems, path, "nested deeper than " + std::to_string(limits::kJsonDepthMax));
    return;
  }
  if (const json::string* s = v.if_string(); s != nullptr && s->size() > limits::kStringBytesMax) {
    add_problem(problems, path,
                "string of " + std::to_string(s->size()) + " bytes exceeds the limit of " +
                    std::to_string(limits::kStringBytesMax));
  } else if (const json::object* o = v.if_object()) {
    for (const auto& kv : *o) {
      if (kv.key().size() > limits::kStringBytesMax) {
        add_problem(problems, path, "object key exceeds the string limit");
        continue;
      }
      check_bounds(kv.value(), child(path, kv.key()), depth + 1, problems);
    }
  } else if (const json::array* a = v.if_array()) {
    for (std::size_t i = 0; i < a->size(); ++i) {
      check_bounds((*a)[i], child(path, i), depth + 1, problems);
    }
  }
}

class Compiler {
 public:
  explicit Compiler(Problems& problems) : problems_(problems) {}
  std::shared_ptr<const Ir> run(const json::value& definition);

 private:
  std::optional<Expr> compile_expression(const json::value& v, const std::string& path);
  std::optional<RetryPolicy> parse_retry(const json::value& v, const std::string& path);
  void parse_retry_intervals(const json::object& o, const std::string& path, RetryPolicy& retry);
  std::optional<RepeatPolicy> parse_repeat(const json::value& v, const std::string& path);
  std::optional<Millis> parse_timeout(const json::value& v, const std::string& path);
  void parse_header(const json::object& o, Ir& ir);
  void parse_defaults(const json::object& o);
  void parse_nodes(const json::value& v, Ir& ir);
  void parse_node(const json::object& o, const std::string& path, Node& node);
  void parse_node_flow(const json::object& o, const std::string& path, Node& node);
  void parse_node_config(const json::object& o, const std::string& path, Node& node);
  void resolve_needs(Ir& ir);
  void order(Ir& ir);
  void report_cycles(const Ir& ir, const std::vector<bool>& remaining);

  Problems& problems_;
  std::size_t expressions_ = 0;
  std::optional<RetryPolicy> default_retry_;
  std::optional<Millis> default_timeout_;
  std::vector<const json::value*> needs_values_;  // per node: its `needs` value, or null
};

std::optional<Expr> Compiler::compile_expression(const json::value& v, const std::string& path) {
  std::string program;
  if (v.is_bool()) {
    program = v.get_bool() ? "true" : "false";  // YAML `if: false` arrives as a boolean
  } else if (const json::string* s = v.if_string()) {
    program = std::string(internal::expression_program(*s));
  } else {
    add_problem(problems_, path, "expected a jq expression string, got " + internal::kind_name(v));
    return std::nullopt;
  }
  if (++expressions_ > limits::kExpressionsMax) {
    add_problem(problems_, path,
                "more than " + std::to_string(limits::kExpressionsMax) + " expressions");
    return std::nullopt;
  }
  Result<Expr> expr = compile_expr(program);
  if (!expr) {
    add_problem(problems_, path, expr.error().message);
    return std::nullopt;
  }
  return *expr;
}

std::optional<Millis> Compiler::parse_timeout(const json::value& v, const std::string& path) {
  return internal::check_duration(v, path, problems_, 1);
}

void Compiler::parse_retry_intervals(const json::object& o, const std::string& path,
                                     RetryPolicy& retry) {
  if (const json::value* v = o.if_contains("initial_interval")) {
    if (auto d = internal::check_duration(*v, child(path, "initial_interval"), problems_)) {
      retry.initial_interval = *d;
    }
  }
  if (const json::value* v = o.if_contains("max_interval")) {
    if (auto d = internal::check_duration(*v, child(path, "max_interval"), problems_)) {
      retry.max_interval = *d;
      if (retry.max_interval < retry.initial_interval) {
        add_problem(problems_, child(path, "max_interval"),
                    "must not be shorter than initial_interval");
      }
    }
  }
}

std::optional<RetryPolicy> Compiler::parse_retry(const json::value& v, const std::string& path) {
  const json::object* o = v.if_object();
  if (o == nullptr) {
    add_problem(problems_, path, "expected an object, got " + internal::kind_name(v));
    return std::nullopt;
  }
  internal::check_fields(*o, path,
                         {"max_attempts", "initial_interval", "backoff_coefficient", "max_interval",
                          "jitter", "non_retryable"},
                         problems_);
  RetryPolicy retry;
  retry.initial_interval = limits::kRetryIntervalDefault;
  retry.max_interval = limits::kRetryIntervalMaxDefault;
  if (const json::value* m = o->if_contains("max_attempts")) {
    if (auto n = internal::check_int(*m, child(path, "max_attempts"), 1,
                                     static_cast<int64_t>(limits::kAttemptsMax), problems_)) {
      retry.max_attempts = static_cast<int>(*n);
    }
  }
  parse_retry_intervals(*o, path, retry);
  if (const json::value* b = o->if_contains("backoff_coefficient")) {
    std::optional<double> d = internal::as_number(*b);
    if (!d || !(*d >= 1.0 && *d <= 1000.0)) {
      add_problem(problems_, child(path, "backoff_coefficient"), "must be a number from 1 to 1000");
    } else {
      retry.backoff_coefficient = *d;
    }
  }
  if (const json::value* j = o->if_contains("jitter")) {
    std::optional<double> d = internal::as_number(*j);
    if (!d || !(*d >= 0.0 && *d <= 1.0)) {
      add_problem(problems_, child(path, "jitter"), "must be a number from 0 to 1");
    } else {
      retry.jitter = *d;
    }
  }
  if (const json::value* n = o->if_contains("non_retryable")) {
    internal::check_string_array(*n, child(path, "non_retryable"), problems_);
    if (const json::array* a = n->if_array()) {
      for (const json::value& code : *a) {
        if (code.is_string()) {
          retry.non_retryable.emplace_back(code.get_string());
        }
      }
    }
  }
  return retry;
}

std::optional<RepeatPolicy> Compiler::parse_repeat(const json::value& v, const std::string& path) {
  const json::object* o = v.if_object();
  if (o == nullptr) {
    add_problem(
        problems_, path,
        "expected an object {until, max_iterations, interval}, got " + internal::kind_name(v));
    return std::nullopt;
  }
  internal::check_fields(*o, path, {"until", "max_iterations", "interval"}, problems_);
  RepeatPolicy repeat;
  if (const json::value* u = o->if_contains("until")) {
    if (auto expr = compile_expression(*u, child(path, "until"))) {
      repeat.until = *expr;
    }
  } else {
    add_problem(problems_, child(path, "until"), "required field is missing");
  }
  if (const json::value* m = o->if_contains("max_iterations")) {
    if (auto n =
            internal::check_int(*m, child(path, "max_iterations"), 1,
                                static_cast<int64_t>(limits::kRepeatIterationsMax), problems_)) {
      repeat.max_iterations = static_cast<int>(*n);
    }
  }
  if (const json::value* i = o->if_contains("interval")) {
    if (auto d = internal::check_duration(*i, child(path, "interval"), problems_)) {
      repeat.interval = *d;
    }
  }
  return repeat;
}

void Compiler::parse_header(const json::object& o, Ir& ir) {
  internal::check_fields(o, "", top_fields(), problems_);
  if (const json::value* name = o.if_contains("name")) {
    const json::string* s = name->if_string();
    if (s == nullptr || !is_valid_workflow_name(*s)) {
      add_problem(problems_, "/name",
                  "must match [a-z0-9][a-z0-9._-]{0,62} (lowercase letters, digits, '.', '_', "
                  "'-')");
    } else {
      ir.name = std::string(*s);
    }
  } else {
    add_problem(problems_, "/name", "required field is missing");
  }
  if (const json::value* d = o.if_contains("description")) {
    if (!d->is_string()) {
      add_problem(problems_, "/description", "expected a string, got " + internal::kind_name(*d));
    } else if (d->get_string().size() > limits::kDescriptionBytesMax) {
      add_problem(problems_, "/description",
                  "longer than " + std::to_string(limits::kDescriptionBytesMax) + " bytes");
    }
  }
  if (const json::value* inputs = o.if_contains("inputs")) {
    internal::check_schema(*inputs, "/inputs", problems_);
    const json::object* schema = inputs->if_object();
    const json::value* type = schema != nullptr ? schema->if_contains("type") : nullptr;
    if (type != nullptr && !(type->is_string() && type->get_string() == "object")) {
      add_problem(problems_, "/inputs/type", "the inputs schema must describe an object");
    }
    ir.inputs_schema = *inputs;
  }
  if (const json::value* out = o.if_contains("output")) {
    ir.output = Template::compile(*out, "/output", problems_);
  }
}

void Compiler::parse_defaults(const json::object& o) {
  const json::value* v = o.if_contains("defaults");
  if (v == nullptr) {
    return;
  }
  const json::object* d = v->if_object();
  if (d == nullptr) {
    add_problem(problems_, "/defaults", "expected an object, got " + internal::kind_name(*v));
    return;
  }
  internal::check_fields(*d, "/defaults", {"timeout", "retry"}, problems_);
  if (const json::value* t = d->if_contains("timeout")) {
    default_timeout_ = parse_timeout(*t, "/defaults/timeout");
  }
  if (const json::value* r = d->if_contains("retry")) {
    default_retry_ = parse_retry(*r, "/defaults/retry");
  }
}

void Compiler::parse_nodes(const json::value& v, Ir& ir) {
  const json::array* nodes = v.if_array();
  if (nodes == nullptr) {
    add_problem(problems_, "/nodes", "expected an array of nodes, got " + internal::kind_name(v));
    return;
  }
  if (nodes->empty()) {
    add_problem(problems_, "/nodes", "a workflow needs at least one node");
    return;
  }
  if (nodes->size() > limits::kNodesMax) {
    add_problem(problems_, "/nodes",
                std::to_string(nodes->size()) + " nodes exceed the limit of " +
                    std::to_string(limits::kNodesMax));
    return;
  }
  ir.nodes.resize(nodes->size());
  needs_values_.assign(nodes->size(), nullptr);
  for (std::size_t i = 0; i < nodes->size(); ++i) {
    const std::string path = child("/nodes", i);
    const json::object* o = (*nodes)[i].if_object();
    if (o == nullptr) {
      add_problem(problems_, path,
                  "expected a node object, got " + internal::kind_name((*nodes)[i]));
      continue;
    }
    needs_values_[i] = o->if_contains("needs");
    parse_node(*o, path, ir.nodes[i]);
    const std::string& id = ir.nodes[i].id;
    if (id.empty()) {
      continue;
    }
    auto [it, inserted] = ir.index.emplace(id, static_cast<int>(i));
    if (!inserted) {
      add_problem(
          problems_, child(path, "id"),
          "duplicate id '" + id + "' (first used by /nodes/" + std::to_string(it->second) + ")");
    }
  }
}

void Compiler::parse_node(const json::object& o, const std::string& path, Node& node) {
  internal::check_fields(o, path, node_fields(), problems_);
  if (const json::value* id = o.if_contains("id")) {
    const json::string* s = id->if_string();
    if (s == nullptr || !internal::is_valid_node_id(*s)) {
      add_problem(problems_, child(path, "id"),
                  "must match [a-z][a-z0-9_]{0,62} (a lowercase letter, then letters, digits, "
                  "'_')");
    } else {
      node.id = std::string(*s);
    }
  } else {
    add_problem(problems_, child(path, "id"), "required field is missing");
  }
  if (const json::value* type = o.if_contains("type")) {
    const json::string* s = type->if_string();
    node.spec = s != nullptr ? find_node_type(*s) : nullptr;
    if (node.spec == nullptr) {
      std::string message = "unknown node type";
      if (s != nullptr) {
        message += " " + quote(*s);
        const std::string suggestion = closest_match(*s, node_type_names());
        if (!suggestion.empty()) {
          message += "; did you mean '" + suggestion + "'?";
        }
      }
      add_problem(problems_, child(path, "type"), std::move(message));
    } else {
      node.type = node.spec->name;
    }
  } else {
    add_problem(problems_, child(path, "type"), "required field is missing");
  }
  parse_node_flow(o, path, node);
  parse_node_config(o, path, node);
}

void Compiler::parse_node_flow(const json::object& o, const std::string& path, Node& node) {
  if (const json::value* v = o.if_contains("join")) {
    internal::check_enum(*v, child(path, "join"), {"all", "any"}, problems_);
    node.join = v->is_string() && v->get_string() == "any" ? Join::kAny : Join::kAll;
  }
  if (const json::value* v = o.if_contains("on_failure")) {
    internal::check_enum(*v, child(path, "on_failure"), {"fail", "continue"}, problems_);
    const bool go_on = v->is_string() && v->get_string() == "continue";
    node.on_failure = go_on ? OnFailure::kContinue : OnFailure::kFail;
  }
  if (const json::value* v = o.if_contains("if")) {
    node.if_expr = compile_expression(*v, child(path, "if"));
  }
  if (const json::value* v = o.if_contains("foreach")) {
    node.foreach = compile_expression(*v, child(path, "foreach"));
    // A sleep is one durable timer of its node, not a task per item.
    if (node.spec != nullptr && node.spec->execution == Execution::kTimer) {
      add_problem(problems_, child(path, "foreach"),
                  "a sleep node cannot fan out (it is one durable timer); put foreach on the "
                  "work and one sleep after it");
    }
  }
  if (const json::value* v = o.if_contains("max_parallel")) {
    if (!o.contains("foreach")) {
      add_problem(problems_, child(path, "max_parallel"), "only allowed together with foreach");
    } else if (auto n =
                   internal::check_int(*v, child(path, "max_parallel"), 1,
                                       static_cast<int64_t>(limits::kMaxParallelMax), problems_)) {
      node.max_parallel = static_cast<std::size_t>(*n);
    }
  }
  if (const json::value* v = o.if_contains("repeat")) {
    node.repeat = parse_repeat(*v, child(path, "repeat"));
    // A decision is final: asking the same people again is a new approval node.
    if (node.spec != nullptr && node.spec->execution == Execution::kGate) {
      add_problem(problems_, child(path, "repeat"),
                  "an approval node cannot repeat (a decision is final); add another approval "
                  "node after it");
    }
  }
  const json::value* retry = o.if_contains("retry");
  if (retry != nullptr) {
    node.retry = parse_retry(*retry, child(path, "retry")).value_or(RetryPolicy{});
  } else if (default_retry_) {
    node.retry = *default_retry_;
  }
  const json::value* timeout = o.if_contains("timeout");
  if (timeout != nullptr) {
    node.timeout = parse_timeout(*timeout, child(path, "timeout")).value_or(node.timeout);
  } else if (default_timeout_) {
    node.timeout = *default_timeout_;
  }
}

void Compiler::parse_node_config(const json::object& o, const std::string& path, Node& node) {
  const json::value* config = o.if_contains("config");
  const json::value empty = json::object();
  const json::value& value = config != nullptr ? *config : empty;
  if (node.spec == nullptr) {
    return;  // unknown type: already reported, and there is no schema to check against
  }
  const std::string config_path = child(path, "config");
  node.spec->validate_config(value, config_path, problems_);
  if (!node.spec->needs_context) {
    node.config = Template::compile(value, config_path, problems_);
    return;
  }
  // The executor evaluates `expr` against the context itself: keep it a bare program.
  json::value literal = value;
  if (json::object* lo = literal.if_object()) {
    if (json::value* expr = lo->if_contains("expr"); expr != nullptr && expr->is_string()) {
      *expr = json::string(internal::expression_program(expr->get_string()));
    }
  }
  node.config = Template::literal(std::move(literal));
}

void Compiler::resolve_needs(Ir& ir) {
  std::vector<std::string> ids;
  for (const Node& node : ir.nodes) {
    if (!node.id.empty()) {
      ids.push_back(node.id);
    }
  }
  for (std::size_t i = 0; i < ir.nodes.size(); ++i) {
    const json::value* v = needs_values_[i];
    if (v == nullptr) {
      continue;
    }
    const std::string path = child(child("/nodes", i), "needs");
    // A single id is accepted as a one-element list (as in GitHub Actions).
    const json::array single = v->is_string() ? json::array{*v} : json::array{};
    const json::array* list = v->is_string() ? &single : v->if_array();
    if (list == nullptr) {
      add_problem(problems_, path, "expected an array of node ids, got " + internal::kind_name(*v));
      continue;
    }
    if (list->size() > limits::kNeedsPerNodeMax) {
      add_problem(problems_, path, "too many needs");
      continue;
    }
    Node& node = ir.nodes[i];
    for (std::size_t j = 0; j < list->size(); ++j) {
      const std::string need_path = v->is_string() ? path : child(path, j);
      const json::string* s = (*list)[j].if_string();
      if (s == nullptr) {
        add_problem(problems_, need_path, "expected a node id string");
        continue;
      }
      const int target = ir.index_of(*s);
      if (target < 0) {
        std::string message = "unknown node " + quote(*s);
        const std::string suggestion = closest_match(*s, ids);
        if (!suggestion.empty()) {
          message += "; did you mean '" + suggestion + "'?";
        }
        add_problem(problems_, need_path, std::move(message));
      } else if (static_cast<std::size_t>(target) == i) {
        add_problem(problems_, need_path, "a node cannot need itself");
      } else if (std::find(node.needs.begin(), node.needs.end(), target) != node.needs.end()) {
        add_problem(problems_, need_path, "'" + std::string(*s) + "' is listed twice");
      } else {
        node.needs.push_back(target);
      }
    }
  }
}

// Kahn's algorithm in definition order (deterministic); what is left over lies on or behind a
// cycle.
void Compiler::order(Ir& ir) {
  const std::size_t n = ir.nodes.size();
  ir.dependents.assign(n, {});
  std::vector<std::size_t> missing(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    missing[i] = ir.nodes[i].needs.size();
    for (int need : ir.nodes[i].needs) {
      ir.dependents[static_cast<std::size_t>(need)].push_back(static_cast<int>(i));
    }
  }
  std::deque<int> ready;
  for (std::size_t i = 0; i < n; ++i) {
    if (missing[i] == 0) {
      ready.push_back(static_cast<int>(i));
    }
  }
  while (!ready.empty()) {
    const int u = ready.front();
    ready.pop_front();
    ir.topo_order.push_back(u);
    for (int d : ir.dependents[static_cast<std::size_t>(u)]) {
      if (--missing[static_cast<std::size_t>(d)] == 0) {
        ready.push_back(d);
      }
    }
  }
  if (ir.topo_order.size() < n) {
    std::vector<bool> remaining(n, true);
    for (int u : ir.topo_order) {
      remaining[static_cast<std::size_t>(u)] = false;
    }
    report_cycles(ir, remaining);
  }
}

// Depth-first search over the needs of the nodes left by Kahn's algorithm; every back edge closes
// a cycle, reported from its smallest node index so that the message is stable.
void Compiler::report_cycles(const Ir& ir, const std::vector<bool>& remaining) {
  constexpr std::size_t kCyclesReportedMax = 10;
  enum : uint8_t { kWhite, kGray, kBlack };
  const std::size_t n = ir.nodes.size();
  std::vector<uint8_t> color(n, kWhite);
  std::vector<std::pair<std::size_t, std::size_t>> stack;  // (node, next position in needs)
  std::size_t reported = 0;
  for (std::size_t start = 0; start < n && reported < kCyclesReportedMax; ++start) {
    if (!remaining[start] || color[start] != kWhite) {
      continue;
    }
    color[start] = kGray;
    stack.emplace_back(start, 0);
    while (!stack.empty()) {
      const std::size_t u = stack.back().first;
      const std::vector<int>& needs = ir.nodes[u].needs;
      if (stack.back().second == needs.size()) {
        color[u] = kBlack;
        stack.pop_back();
        continue;
      }
      const auto v = static_cast<std::size_t>(needs[stack.back().second++]);
      if (!remaining[v] || color[v] == kBlack) {
        continue;
      }
      if (color[v] == kWhite) {
        color[v] = kGray;
        stack.emplace_back(v, 0);
        continue;
      }
      if (reported++ >= kCyclesReportedMax) {
        continue;
      }
      std::vector<std::size_t> cycle;
      auto at =
          std::find_if(stack.begin(), stack.end(), [v](const auto& e) { return e.first == v; });
      for (; at != stack.end(); ++at) {
        cycle.push_back(at->first);
      }
      std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
      std::string message = "cycle:";
      for (std::size_t c : cycle) {
        message += " " + ir.nodes[c].id + " ->";
      }
      message += " " + ir.nodes[cycle.front()].id;
      add_problem(problems_, child(child("/nodes", cycle.front()), "needs"), std::move(message));
    }
  }
}

std::shared_ptr<const Ir> Compiler::run(const json::value& definition) {
  const json::object* o = definition.if_object();
  if (o == nullptr) {
    add_problem(problems_, "",
                "a workflow definition must be an object, got " + internal::kind_name(definition));
    return nullptr;
  }
  check_bounds(definition, "", 0, problems_);
  auto ir = std::make_shared<Ir>();
  parse_defaults(*o);  // first: nodes without their own timeout/retry inherit these
  parse_header(*o, *ir);
  if (const json::value* nodes = o->if_contains("nodes")) {
    parse_nodes(*nodes, *ir);
  } else {
    add_problem(problems_, "/nodes", "required field is missing");
  }
  resolve_needs(*ir);
  order(*ir);
  if (!problems_.empty()) {
    return nullptr;
  }
  ir->definition = definition;
  ir->version = version_of(definition);
  return ir;
}

}  // namespace

std::shared_ptr<const Ir> compile(const json::value& definition, Problems& problems) {
  // A local list: validity must not depend on what the caller's list already holds.
  Problems local;
  std::shared_ptr<const Ir> ir = Compiler(local).run(definition);
  for (Problem& p : local) {
    internal::add_problem(problems, std::move(p.path), std::move(p.message));
  }
  return ir;
}

std::string version_of(const json::value& definition) {
  return base::b2(base::blake2b(base::canonical_json(definition)));
}

}  // namespace venture::workflow
