// The workflow generator and reference model (see model.h). The model deliberately does not reuse
// anything from engine/: it walks the nodes in definition order (needs only name earlier nodes)
// and computes each status from the needs' statuses, the `if`, and the outcome script.
#include "model.h"

#include <algorithm>
#include <cstdlib>

namespace venture::sim {
namespace {

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

int pick(base::Random& r, int n) { return static_cast<int>(r.uniform(static_cast<uint64_t>(n))); }
bool chance(base::Random& r, int percent) { return pick(r, 100) < percent; }

void gen_retry(base::Random& r, NodeSpec& n) {
  if (!chance(r, 60)) {
    return;
  }
  n.has_retry = true;
  n.max_attempts = 1 + pick(r, 4);
  n.initial_ms = chance(r, 50) ? 100 : 1000;
  n.coefficient = chance(r, 50) ? 1.5 : 2.0;
  n.max_ms = 2000;
  n.jitter = chance(r, 30) ? 0.3 : 0.0;
  n.fatal_listed = chance(r, 50);
}

void gen_if(base::Random& r, NodeSpec& n) {
  const int roll = pick(r, 100);
  if (roll < 55) {
    return;
  }
  if (roll < 63) {
    n.if_kind = IfKind::kTrue;
  } else if (roll < 70) {
    n.if_kind = IfKind::kFalse;
  } else if (roll < 80) {
    n.if_kind = IfKind::kInputFlag;
  } else if (!n.needs.empty()) {
    n.if_need = n.needs[static_cast<std::size_t>(pick(r, static_cast<int>(n.needs.size())))];
    n.if_kind = roll < 90 ? IfKind::kNeedSucceeded : IfKind::kNeedOutputIs;
    n.if_value = pick(r, 3);
  }
}

void gen_approval(base::Random& r, NodeSpec& n) {
  n.type = "approval";
  const int k = pick(r, 5);
  n.plan = static_cast<ApprovalPlan>(k);
  n.quorum = 1 + pick(r, 2);
  if (n.plan != ApprovalPlan::kApprove && n.plan != ApprovalPlan::kReject) {
    n.approval_timeout_ms = 100 * (1 + pick(r, 30));
  }
  if (chance(r, 30)) {
    n.foreach = true;
    n.items = pick(r, 4);
    n.max_parallel = chance(r, 50) ? 1 + pick(r, 2) : 0;
  }
}

void gen_type(base::Random& r, NodeSpec& n, const GenOptions& o) {
  if (o.approval_percent > 0 && chance(r, o.approval_percent)) {
    gen_approval(r, n);
    return;
  }
  const int roll = pick(r, 100);
  n.type = roll < 45 ? "noop" : roll < 60 ? "fail" : roll < 85 ? "transform" : "sleep";
  if (n.type == "sleep") {
    n.sleep_ms = 100 * (1 + pick(r, 30));
    return;
  }
  if (n.type == "fail") {
    const int k = pick(r, 3);
    n.fail_kind = k == 0   ? Outcome::kFailRetryable
                  : k == 1 ? Outcome::kFailFatal
                           : Outcome::kFailPermanent;
  } else {
    n.fail_percent = chance(r, 50) ? 0 : 10 + pick(r, 50);
    n.hang_percent = o.allow_hang && chance(r, 20) ? 10 + pick(r, 20) : 0;
  }
  if (chance(r, 25)) {
    n.foreach = true;
    n.items = pick(r, 5);
    n.max_parallel = chance(r, 50) ? 1 + pick(r, 3) : 0;
  } else if (chance(r, 30)) {
    n.repeat = true;
    n.until = chance(r, 50) ? UntilKind::kIterationAtLeast : UntilKind::kOutputDone;
    n.until_iterations = 1 + pick(r, 3);
    n.max_iterations = 1 + pick(r, 4);
    n.interval_ms = 100 * pick(r, 4);
  }
}

json::value retry_json(const NodeSpec& n) {
  json::array non_retryable;
  if (n.fatal_listed) {
    non_retryable.emplace_back("fatal");
  }
  json::object retry{{"max_attempts", n.max_attempts},
                     {"initial_interval", format_duration(Millis(n.initial_ms))},
                     {"backoff_coefficient", n.coefficient},
                     {"max_interval", format_duration(Millis(n.max_ms))},
                     {"non_retryable", std::move(non_retryable)}};
  if (n.jitter > 0) {
    retry["jitter"] = n.jitter;
  }
  return retry;
}

std::string if_text(const WorkflowSpec& spec, const NodeSpec& n) {
  switch (n.if_kind) {
    case IfKind::kNone:
      return "";
    case IfKind::kTrue:
      return "${{ true }}";
    case IfKind::kFalse:
      return "${{ false }}";
    case IfKind::kInputFlag:
      return "${{ .inputs.flag }}";
    case IfKind::kNeedSucceeded:
      return "${{ .nodes." + spec.nodes[static_cast<std::size_t>(n.if_need)].id +
             ".status == \"succeeded\" }}";
    case IfKind::kNeedOutputIs:
      return "${{ .nodes." + spec.nodes[static_cast<std::size_t>(n.if_need)].id +
             ".output == " + std::to_string(n.if_value) + " }}";
  }
  return "";
}

json::value config_json(const NodeSpec& n) {
  if (n.type == "sleep") {
    return json::object{{"duration", format_duration(Millis(n.sleep_ms))}};
  }
  if (n.type == "fail") {
    return json::object{{"code", error_code(n.fail_kind)},
                        {"message", "scripted failure"},
                        {"retryable", retryable(n.fail_kind)}};
  }
  if (n.type == "transform") {
    return json::object{{"expr", ".inputs"}};
  }
  if (n.type == "approval") {
    json::object c{{"title", "approve " + n.id + "?"},
                   {"approvers", json::object{{"roles", json::array{"approver"}}}},
                   {"quorum", n.quorum}};
    if (n.approval_timeout_ms > 0) {
      c["timeout"] = format_duration(Millis(n.approval_timeout_ms));
      c["on_timeout"] = n.plan == ApprovalPlan::kTimeoutApprove  ? "approve"
                        : n.plan == ApprovalPlan::kTimeoutReject ? "reject"
                                                                 : "fail";
    }
    return c;
  }
  return json::object();
}

json::value repeat_json(const NodeSpec& n) {
  const std::string until = n.until == UntilKind::kIterationAtLeast
                                ? ".iteration >= " + std::to_string(n.until_iterations)
                                : ".output == \"done\"";
  return json::object{{"until", "${{ " + until + " }}"},
                      {"max_iterations", n.max_iterations},
                      {"interval", format_duration(Millis(n.interval_ms))}};
}

json::value node_json(const WorkflowSpec& spec, const NodeSpec& n) {
  json::object o{{"id", n.id}, {"type", n.type}, {"config", config_json(n)}, {"timeout", "30s"}};
  if (!n.needs.empty()) {
    json::array needs;
    for (int k : n.needs) {
      needs.emplace_back(spec.nodes[static_cast<std::size_t>(k)].id);
    }
    o["needs"] = std::move(needs);
  }
  o["join"] = n.join_any ? "any" : "all";
  if (n.if_kind != IfKind::kNone) {
    o["if"] = if_text(spec, n);
  }
  if (n.on_failure_continue) {
    o["on_failure"] = "continue";
  }
  if (n.has_retry) {
    o["retry"] = retry_json(n);
  }
  if (n.repeat) {
    o["repeat"] = repeat_json(n);
  }
  if (n.foreach) {
    std::string list = "[";
    for (int k = 0; k < n.items; ++k) {
      list += (k > 0 ? "," : "") + std::to_string(k);
    }
    o["foreach"] = "${{ " + list + "] }}";
    if (n.max_parallel > 0) {
      o["max_parallel"] = n.max_parallel;
    }
  }
  return o;
}

// Whether a failing attempt is retried.
bool will_retry(const NodeSpec& n, Outcome o, int attempt) {
  if (attempt >= n.max_attempts || o == Outcome::kFailPermanent) {
    return false;
  }
  return !(o == Outcome::kFailFatal && n.fatal_listed);
}

// The final status of one slot (a plain node or one item) in one repeat iteration: attempts
// until one succeeds or fails for good.
bool slot_succeeds(const WorkflowSpec& spec, int node, int index, int iteration) {
  const NodeSpec& n = spec.nodes[static_cast<std::size_t>(node)];
  for (int attempt = 1;; ++attempt) {
    const Outcome o = outcome_of(spec, node, index, iteration, attempt);
    if (o == Outcome::kOk) {
      return true;
    }
    if (!will_retry(n, o, attempt)) {
      return false;
    }
  }
}

// A repeat node: the iteration (0-based) after which `until` holds, or -1 when an iteration
// fails or max_iterations pass without it (code max_iterations).
int repeat_ends(const WorkflowSpec& spec, int node) {
  const NodeSpec& n = spec.nodes[static_cast<std::size_t>(node)];
  for (int iteration = 0; iteration < n.max_iterations; ++iteration) {
    if (!slot_succeeds(spec, node, -1, iteration)) {
      return -1;
    }
    const bool done = n.until == UntilKind::kIterationAtLeast
                          ? iteration + 1 >= n.until_iterations
                          : output_of(spec, node, -1, iteration) == json::value("done");
    if (done) {
      return iteration;
    }
  }
  return -1;
}

json::value ideal_output(const WorkflowSpec& spec, const std::vector<std::string>& status,
                         int node) {
  const NodeSpec& n = spec.nodes[static_cast<std::size_t>(node)];
  if (status[static_cast<std::size_t>(node)] != "succeeded" || n.type == "sleep") {
    return nullptr;
  }
  if (n.type == "approval") {
    return json::object{{"decision", "people's"}};  // never equal to an `if`'s number
  }
  if (n.foreach) {
    json::array out;
    for (int k = 0; k < n.items; ++k) {
      out.push_back(output_of(spec, node, k, 0));
    }
    return out;
  }
  return output_of(spec, node, -1, n.repeat ? repeat_ends(spec, node) : 0);
}

bool if_holds(const WorkflowSpec& spec, const std::vector<std::string>& status, const NodeSpec& n) {
  switch (n.if_kind) {
    case IfKind::kNone:
    case IfKind::kTrue:
      return true;
    case IfKind::kFalse:
      return false;
    case IfKind::kInputFlag:
      return spec.flag;
    case IfKind::kNeedSucceeded:
      return status[static_cast<std::size_t>(n.if_need)] == "succeeded";
    case IfKind::kNeedOutputIs:
      return ideal_output(spec, status, n.if_need) == json::value(n.if_value);
  }
  return true;
}

}  // namespace

WorkflowSpec generate(base::Random& r, const GenOptions& o) {
  WorkflowSpec spec;
  spec.name = "sim";
  spec.flag = chance(r, 50);
  const int count = 1 + pick(r, o.nodes_max);
  for (int i = 0; i < count; ++i) {
    NodeSpec n;
    n.id = "n" + std::to_string(i);
    for (int k = 0; k < i; ++k) {
      if (chance(r, i > 4 ? 20 : 35)) {
        n.needs.push_back(k);
      }
    }
    n.join_any = chance(r, 30);
    gen_type(r, n, o);
    gen_if(r, n);
    n.on_failure_continue = chance(r, 60);
    gen_retry(r, n);
    n.script = r.next();
    spec.nodes.push_back(std::move(n));
  }
  return spec;
}

json::value to_definition(const WorkflowSpec& spec) {
  json::array nodes;
  for (const NodeSpec& n : spec.nodes) {
    nodes.push_back(node_json(spec, n));
  }
  return json::object{{"name", spec.name}, {"nodes", std::move(nodes)}};
}

json::value inputs(const WorkflowSpec& spec) { return json::object{{"flag", spec.flag}}; }

json::value node_definition(const WorkflowSpec& spec, int node) {
  return node_json(spec, spec.nodes[static_cast<std::size_t>(node)]);
}

NodeSpec added_node(const WorkflowSpec& spec, int need) {
  NodeSpec n;
  n.id = "n" + std::to_string(spec.nodes.size());
  n.type = "noop";
  if (need >= 0) {
    n.needs.push_back(need);
  }
  n.script = mix(spec.nodes.size());
  return n;
}

Outcome outcome_of(const WorkflowSpec& spec, int node, int index, int iteration, int attempt) {
  const NodeSpec& n = spec.nodes[static_cast<std::size_t>(node)];
  if (n.type == "fail") {
    return n.fail_kind;
  }
  const uint64_t key =
      (static_cast<uint64_t>(index + 2) * uint64_t{1000003} + static_cast<uint64_t>(iteration)) *
          uint64_t{1009} +
      static_cast<uint64_t>(attempt);
  const uint64_t h = mix(n.script ^ mix(key));
  const int roll = static_cast<int>(h % 100);
  if (roll < n.hang_percent) {
    return Outcome::kHang;
  }
  if (roll < n.hang_percent + n.fail_percent) {
    const int k = static_cast<int>((h >> 20) % 3);
    return k == 0   ? Outcome::kFailRetryable
           : k == 1 ? Outcome::kFailFatal
                    : Outcome::kFailPermanent;
  }
  return Outcome::kOk;
}

json::value output_of(const WorkflowSpec& spec, int node, int index, int iteration) {
  if (index >= 0) {
    return json::value(index * 10);
  }
  const NodeSpec& n = spec.nodes[static_cast<std::size_t>(node)];
  if (!n.repeat) {
    return json::value(node % 3);
  }
  if (n.until == UntilKind::kIterationAtLeast) {
    return json::value((node + iteration) % 3);  // the last iteration's output is the node's
  }
  const uint64_t h = mix(n.script ^ mix(uint64_t{0xd0e} + static_cast<uint64_t>(iteration)));
  return json::value(h % 100 < 40 ? "done" : "more");
}

std::string error_code(Outcome o) {
  switch (o) {
    case Outcome::kFailFatal:
      return "fatal";
    case Outcome::kFailPermanent:
      return "permanent";
    case Outcome::kHang:
      return "deadline_exceeded";
    default:
      return "transient";
  }
}

bool retryable(Outcome o) { return o != Outcome::kFailPermanent; }

Expected predict(const WorkflowSpec& spec) {
  Expected e;
  e.run = "succeeded";
  for (std::size_t i = 0; i < spec.nodes.size(); ++i) {
    const NodeSpec& n = spec.nodes[i];
    int succeeded = 0;
    for (int k : n.needs) {
      succeeded += e.nodes[static_cast<std::size_t>(k)] == "succeeded" ? 1 : 0;
    }
    const bool ready = n.join_any ? (n.needs.empty() || succeeded > 0)
                                  : succeeded == static_cast<int>(n.needs.size());
    std::string status;
    if (!ready || !if_holds(spec, e.nodes, n)) {
      status = "skipped";
    } else if (n.type == "sleep") {
      status = "succeeded";
    } else if (n.type == "approval") {
      // A rejection is an answer (succeeded); only a timeout with on_timeout fail fails (and
      // a foreach of no items asks nobody).
      const bool fails = n.plan == ApprovalPlan::kTimeoutFail && (!n.foreach || n.items > 0);
      status = fails ? "failed" : "succeeded";
    } else {
      bool ok = true;
      const int slots = n.foreach ? n.items : 1;
      for (int k = 0; k < slots && ok; ++k) {
        ok = n.repeat ? repeat_ends(spec, static_cast<int>(i)) >= 0
                      : slot_succeeds(spec, static_cast<int>(i), n.foreach ? k : -1, 0);
      }
      status = ok ? "succeeded" : "failed";
    }
    if (status == "failed" && !n.on_failure_continue) {
      e.run = "failed";
    }
    e.nodes.push_back(status);
  }
  return e;
}

namespace {

// A node that settled (not cancelled) must have had settled, uncancelled needs; the only
// exception is an early skip under join all, which needs one settled need that did not succeed.
std::string check_needs(const WorkflowSpec& spec, const Observed& seen, std::size_t i) {
  const NodeSpec& n = spec.nodes[i];
  bool any_cancelled = false;
  bool early_skip_reason = false;
  for (int k : n.needs) {
    const std::string& st = seen.nodes[static_cast<std::size_t>(k)];
    any_cancelled = any_cancelled || st == "cancelled";
    early_skip_reason = early_skip_reason || (st == "failed" || st == "skipped");
  }
  if (!any_cancelled || seen.nodes[i] == "cancelled") {
    return "";
  }
  if (seen.nodes[i] == "skipped" && !n.join_any && early_skip_reason) {
    return "";
  }
  return "node " + n.id + " is " + seen.nodes[i] + " although a need was cancelled";
}

}  // namespace

std::string check_final(const WorkflowSpec& spec, const Expected& expected, const Observed& seen) {
  if (seen.nodes.size() != spec.nodes.size()) {
    return "node count differs";
  }
  const bool cut_short = seen.cancelled_by_operator || expected.run == "failed";
  const std::string want_run = seen.cancelled_by_operator ? "cancelled" : expected.run;
  if (seen.run != want_run) {
    return "run is " + seen.run + ", model says " + want_run;
  }
  int fatal_failures = 0;
  int failed_at = -1;
  for (std::size_t i = 0; i < spec.nodes.size(); ++i) {
    const std::string& st = seen.nodes[i];
    if (st != expected.nodes[i] && !(cut_short && st == "cancelled")) {
      return "node " + spec.nodes[i].id + " is " + st + ", model says " + expected.nodes[i];
    }
    if (std::string why = check_needs(spec, seen, i); !why.empty()) {
      return why;
    }
    if (st == "failed" && !spec.nodes[i].on_failure_continue) {
      ++fatal_failures;
      failed_at = static_cast<int>(i);
    }
  }
  if (seen.cancelled_by_operator) {
    return fatal_failures == 0 ? "" : "a cancelled run has a failed node with on_failure fail";
  }
  if (expected.run == "succeeded") {
    return "";
  }
  if (fatal_failures != 1) {
    return "a failed run has " + std::to_string(fatal_failures) + " failed on_failure=fail nodes";
  }
  if (seen.error_node != spec.nodes[static_cast<std::size_t>(failed_at)].id) {
    return "run error names '" + seen.error_node + "', the failed node is " +
           spec.nodes[static_cast<std::size_t>(failed_at)].id;
  }
  return "";
}

uint64_t env_seed(uint64_t fallback) {
  const char* v = std::getenv("VENTURE_SIM_SEED");
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

int env_runs(int fallback) {
  const char* v = std::getenv("VENTURE_SIM_RUNS");
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

}  // namespace venture::sim
