// The workflow generator and the reference model shared by the engine property test
// (src/engine/property_test.cc) and the deterministic simulation (tests/sim/sim_test.cc).
//
// generate() builds a random DAG workflow (noop/fail/transform/sleep nodes, and approval nodes
// with a voting plan when GenOptions::approval_percent > 0, needs among earlier
// nodes, join all/any, `if` from a small fixed set, on_failure, retry policies, foreach with
// max_parallel, repeat with `until` from a small fixed set) plus an outcome script: outcome_of()
// and output_of() are pure functions of (node, item, iteration, attempt), so the workers of every
// test agree with the model. added_node() makes the noop node a test patches into a running run.
// predict() is the reference model: a direct computation, written independently of
// engine/core.cc, of each node's final status when the run is not cut short (a repeat node
// succeeds when `until` holds after an iteration within max_iterations, else fails), and of the
// run's final status. check_final() compares an observed end state with
// the prediction, allowing the one freedom the semantics leave: when a run fails (or is cancelled)
// nodes that had not settled yet are cancelled.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/base.h"

namespace venture::sim {

enum class Outcome {
  kOk,
  kFailRetryable,  // code "transient", retryable
  kFailFatal,      // code "fatal", retryable unless the policy lists "fatal" as non_retryable
  kFailPermanent,  // code "permanent", retryable = false
  kHang,           // no result ever arrives; the attempt's deadline fails it (retryable)
};

enum class IfKind { kNone, kTrue, kFalse, kInputFlag, kNeedSucceeded, kNeedOutputIs };

// What the people (the simulation's voters) do with an approval node's approvals.
enum class ApprovalPlan { kApprove, kReject, kTimeoutApprove, kTimeoutReject, kTimeoutFail };

// repeat.until: ".iteration >= until_iterations", or ".output == \"done\"" where each
// iteration's output is "done" or "more" by the script.
enum class UntilKind { kIterationAtLeast, kOutputDone };

struct NodeSpec {
  std::string id;
  std::string type;  // noop | fail | transform | sleep | approval (GenOptions::approval_percent)
  std::vector<int> needs;
  bool join_any = false;
  IfKind if_kind = IfKind::kNone;
  int if_need = -1;  // kNeedSucceeded / kNeedOutputIs
  int if_value = 0;  // kNeedOutputIs
  bool on_failure_continue = false;
  bool has_retry = false;
  int max_attempts = 1;
  int64_t initial_ms = 1000;
  double coefficient = 2.0;
  int64_t max_ms = 300000;
  double jitter = 0;
  bool fatal_listed = false;  // "fatal" in non_retryable
  bool foreach = false;
  int items = 0;
  int max_parallel = 0;  // 0 = absent
  int64_t sleep_ms = 0;
  bool repeat = false;  // plain task nodes only (not foreach, not sleep)
  UntilKind until = UntilKind::kIterationAtLeast;
  int until_iterations = 1;  // kIterationAtLeast
  int max_iterations = 1;
  int64_t interval_ms = 0;
  Outcome fail_kind = Outcome::kFailRetryable;  // type fail: what every attempt reports
  int fail_percent = 0;                         // task nodes: chance an attempt fails
  int hang_percent = 0;  // task nodes: chance an attempt hangs (when allowed)
  uint64_t script = 0;
  ApprovalPlan plan = ApprovalPlan::kApprove;  // approval nodes
  int quorum = 1;                              // approval nodes
  int64_t approval_timeout_ms = 0;             // approval nodes with a kTimeout* plan
};

struct WorkflowSpec {
  std::string name;
  bool flag = false;  // inputs.flag
  std::vector<NodeSpec> nodes;
};

struct GenOptions {
  int nodes_max = 12;
  bool allow_hang = true;
  // Percent of nodes that are approval nodes (a driver must then vote: the simulation does).
  int approval_percent = 0;
};

WorkflowSpec generate(base::Random& random, const GenOptions& options);
json::value to_definition(const WorkflowSpec& spec);
json::value inputs(const WorkflowSpec& spec);
// The definition of one node (what ToDefinition puts in "nodes"), e.g. for a patch's "add" op.
json::value node_definition(const WorkflowSpec& spec, int node);
// A noop node that always succeeds, with id "n<nodes.size()>" and `need` as its only need (-1:
// none), for a test to append to the spec when it patches the node into a running run.
NodeSpec added_node(const WorkflowSpec& spec, int need);

// What attempt `attempt` (1-based) of node `node` (item `index`, -1 for a plain node) in repeat
// iteration `iteration` (0-based, Dispatch::iteration; 0 for items and non-repeat nodes) does.
Outcome outcome_of(const WorkflowSpec& spec, int node, int index, int iteration, int attempt);
// The output a successful attempt reports (the same for every attempt of an iteration).
json::value output_of(const WorkflowSpec& spec, int node, int index, int iteration);
// Error code and retryable flag a failing outcome reports.
std::string error_code(Outcome o);
bool retryable(Outcome o);

struct Expected {
  std::vector<std::string> nodes;  // ideal status of each node: succeeded|failed|skipped
  std::string run;                 // succeeded | failed
};

Expected predict(const WorkflowSpec& spec);

struct Observed {
  std::string run;
  std::vector<std::string> nodes;
  std::string error_node;  // run error's node ("" if none)
  bool cancelled_by_operator = false;
};

// "" when the observation is allowed by the prediction, otherwise what is wrong.
std::string check_final(const WorkflowSpec& spec, const Expected& expected, const Observed& seen);

// Seed from VENTURE_SIM_SEED (or fallback) and a count from VENTURE_SIM_RUNS (or fallback).
uint64_t env_seed(uint64_t fallback);
int env_runs(int fallback);

}  // namespace venture::sim
