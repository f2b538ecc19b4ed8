// Goal: the pure engine core (DecideSubmit / DecideResult / DecideTick / DecideCommand /
// DecidePatch and Apply) computes, for any workflow, the final statuses that the reference model
// in tests/sim/model.h predicts, with a history that is exactly-once and well ordered.
//
// Method: for each seed, generate a random DAG workflow and an outcome script (per node, item,
// repeat iteration and attempt: succeed, fail retryable, fail non-retryable, hang), compile it,
// and drive the core directly: deliver the results of the emitted dispatches in a random order
// (hung attempts never answer), re-deliver some results late as duplicates and forge results that
// name another repeat iteration than the one in flight (both must emit nothing), pause, resume and
// occasionally cancel, patch in new noop nodes that need a settled node (the model's spec grows
// with them), check that a patch changing a settled node is refused with kFailedPrecondition and
// leaves the state alone, and when nothing is in flight move time to NextDue and DecideTick. Then
// check: the final run and node statuses against the model; folding Apply over every emitted event
// from an empty RunState reproduces the state (operator==); the snapshot encoding round-trips; each
// node and item settles at most once and every node's events follow the legal transition order
// (repeat iterations counted, never past max_iterations); foreach never exceeds max_parallel and
// outputs are in item order.
//
// Reproduce a failure with the printed command (VENTURE_SIM_SEED = the workflow's seed,
// VENTURE_SIM_RUNS = how many consecutive seeds to run).
#include <gtest/gtest.h>

#include <map>

#include "../../tests/sim/map_ir_source.h"
#include "../../tests/sim/model.h"
#include "engine/engine.h"

namespace venture::engine {
namespace {

constexpr uint64_t kDefaultSeed = 20261123;
constexpr int kDefaultRuns = 2500;
const Time kStart = from_unix_ms(1'800'000'000'000);

struct Drive {
  RunState state;
  std::vector<EventDraft> events;
  std::vector<Time> times;
  bool cancelled = false;
  std::string error;
};

// The legal order of one node's events, tracked independently of core.cc.
class TransitionChecker {
 public:
  explicit TransitionChecker(const sim::WorkflowSpec& spec) : spec_(spec) {
    nodes_.resize(spec.nodes.size());
  }
  std::string check(const EventDraft& e);

 private:
  enum class S { kPending, kReady, kRunning, kBackoff, kWaiting, kExpanded, kRepeat, kSettled };
  struct Item {
    S s = S::kPending;
    int attempt = 0;
  };
  struct Node {
    S s = S::kPending;
    int attempt = 0;
    int iteration = 0;  // repeat: completed iterations
    std::vector<Item> items;
  };
  std::string check_item(Node& n, const sim::NodeSpec& spec, const EventDraft& e, int index);
  std::string check_plain(Node& n, const sim::NodeSpec& spec, const EventDraft& e);

  const sim::WorkflowSpec& spec_;
  std::vector<Node> nodes_;
  bool terminal_ = false;
  bool failing_ = false;  // a node with on_failure fail failed: only cancellations may follow
};

int int_of(const json::object& o, const char* key) {
  return static_cast<int>(base::int_or(o, key, -1));
}

std::string TransitionChecker::check_item(Node& n, const sim::NodeSpec& spec, const EventDraft& e,
                                          int index) {
  if (n.s != S::kExpanded || index >= static_cast<int>(n.items.size())) {
    return e.type + " for an item of a node that is not expanded";
  }
  Item& it = n.items[static_cast<std::size_t>(index)];
  const int attempt = int_of(e.data, "attempt");
  if (e.type == "node.started") {
    const bool first = it.s == S::kPending && attempt == 1;
    const bool next = it.s == S::kBackoff && attempt == it.attempt + 1;
    if (!first && !next) {
      return "item started out of order";
    }
    it = Item{S::kRunning, attempt};
    int running = 0;
    for (const Item& x : n.items) {
      running += x.s == S::kRunning ? 1 : 0;
    }
    if (spec.max_parallel > 0 && running > spec.max_parallel) {
      return "foreach runs " + std::to_string(running) + " items, max_parallel is " +
             std::to_string(spec.max_parallel);
    }
  } else if (e.type == "node.retrying") {
    if (it.s != S::kRunning || attempt != it.attempt) {
      return "item retrying while not running that attempt";
    }
    it.s = S::kBackoff;
  } else {  // item_succeeded / item_failed
    if (it.s != S::kRunning) {
      return e.type + " for an item that is not running";
    }
    it.s = S::kSettled;
  }
  return "";
}

std::string TransitionChecker::check_plain(Node& n, const sim::NodeSpec& spec,
                                           const EventDraft& e) {
  const int attempt = int_of(e.data, "attempt");
  const bool fresh = n.s == S::kPending || n.s == S::kReady;
  if (e.type == "node.ready") {
    if (n.s != S::kPending) {
      return "ready from a non-pending node";
    }
    n.s = S::kReady;
  } else if (e.type == "node.waiting" || e.type == "node.expanded") {
    if (!fresh) {
      return e.type + " of a node that already started";
    }
    n.s = e.type == "node.waiting" ? S::kWaiting : S::kExpanded;
    if (const json::array* items = base::find_array(e.data, "items")) {
      n.items.assign(items->size(), Item{});
    }
  } else if (e.type == "node.repeating") {
    if (!spec.repeat || n.s != S::kRunning) {
      return "repeating while no repeat attempt runs";
    }
    n.s = S::kRepeat;
    if (++n.iteration != int_of(e.data, "iteration") || n.iteration >= spec.max_iterations) {
      return "repeating reports iteration " + std::to_string(int_of(e.data, "iteration")) +
             " after " + std::to_string(n.iteration) + " of at most " +
             std::to_string(spec.max_iterations);
    }
  } else if (e.type == "node.started") {
    if (!((fresh || n.s == S::kRepeat) && attempt == 1) &&
        !(n.s == S::kBackoff && attempt == n.attempt + 1)) {
      return "started out of order (attempt " + std::to_string(attempt) + ")";
    }
    n.s = S::kRunning;
    n.attempt = attempt;
  } else if (e.type == "node.retrying") {
    if (n.s != S::kRunning || attempt != n.attempt) {
      return "retrying while not running that attempt";
    }
    n.s = S::kBackoff;
  } else {
    return "unexpected event " + e.type;
  }
  return "";
}

std::string TransitionChecker::check(const EventDraft& e) {
  if (terminal_) {
    return e.type + " after the run ended";
  }
  if (e.node.empty()) {
    terminal_ = e.type == "run.succeeded" || e.type == "run.failed" || e.type == "run.cancelled";
    if (failing_ && e.type != "run.failed") {
      return e.type + " while the run is failing";
    }
    return "";
  }
  const int idx = std::stoi(e.node.substr(1));
  Node& n = nodes_[static_cast<std::size_t>(idx)];
  const sim::NodeSpec& spec = spec_.nodes[static_cast<std::size_t>(idx)];
  if (n.s == S::kSettled) {
    return "node " + e.node + ": " + e.type + " after it settled";
  }
  if (failing_ && e.type != "node.cancelled") {
    return "node " + e.node + ": " + e.type + " while the run is failing";
  }
  const int index = int_of(e.data, "index");
  if (e.type == "node.item_succeeded" || e.type == "node.item_failed" ||
      ((e.type == "node.started" || e.type == "node.retrying") && index >= 0)) {
    std::string why = check_item(n, spec, e, index);
    return why.empty() ? "" : "node " + e.node + ": " + why;
  }
  if (e.type == "node.succeeded" || e.type == "node.failed" || e.type == "node.skipped" ||
      e.type == "node.cancelled") {
    const bool ok_from = e.type == "node.succeeded"
                             ? (n.s == S::kRunning || n.s == S::kWaiting || n.s == S::kExpanded)
                         : e.type == "node.skipped" ? (n.s == S::kPending || n.s == S::kReady)
                                                    : true;
    if (!ok_from) {
      return "node " + e.node + ": " + e.type + " from an illegal state";
    }
    n.s = S::kSettled;
    failing_ = failing_ || (e.type == "node.failed" && !spec.on_failure_continue);
    return "";
  }
  std::string why = check_plain(n, spec, e);
  return why.empty() ? "" : "node " + e.node + ": " + why;
}

TaskResult result_of(const sim::WorkflowSpec& spec, const Dispatch& d, sim::Outcome o) {
  TaskResult r;
  r.run = d.run;
  r.node = d.node;
  r.index = d.index;
  r.iteration = d.index >= 0 ? 0 : d.iteration;
  r.attempt = d.attempt;
  r.ok = o == sim::Outcome::kOk;
  if (r.ok) {
    r.output = sim::output_of(spec, std::stoi(d.node.substr(1)), d.index, r.iteration);
  } else {
    r.error_code = sim::error_code(o);
    r.error_message = "scripted";
    r.retryable = sim::retryable(o);
  }
  return r;
}

// Drives one run of the core with random actions. The spec grows with the nodes patched in.
class Driver {
 public:
  Driver(sim::WorkflowSpec& spec, IrSource& irs, uint64_t seed)
      : spec_(spec), irs_(irs), rnd_(seed ^ 0x5eed) {
    ctx_.now = kStart;
    ctx_.random = &rnd_;
  }
  Drive run(std::shared_ptr<const workflow::Ir> ir);

 private:
  bool act();
  void take(Decision d);
  void deliver();
  void expect_ignored(const TaskResult& r, const char* what);
  void patch_add();
  void patch_settled();
  std::vector<int> settled_nodes() const;

  sim::WorkflowSpec& spec_;
  IrSource& irs_;
  base::SeededRandom rnd_;
  DecideContext ctx_;
  Drive out_;
  std::vector<Dispatch> pending_;
  std::vector<TaskResult> late_;
  bool may_cancel_ = false;
  bool paused_ = false;
  int patches_ = 0;
};

void Driver::take(Decision d) {
  for (EventDraft& e : d.events) {
    out_.events.push_back(std::move(e));
    out_.times.push_back(ctx_.now);
  }
  for (Dispatch& x : d.dispatches) {
    pending_.push_back(std::move(x));
  }
}

void Driver::expect_ignored(const TaskResult& r, const char* what) {
  Decision d = decide_result(out_.state, r, ctx_, irs_);
  if (!d.events.empty() || !d.dispatches.empty()) {
    out_.error = std::string(what) + " of " + r.node + " (iteration " +
                 std::to_string(r.iteration) + ", attempt " + std::to_string(r.attempt) +
                 ") emitted " + (d.events.empty() ? "a dispatch" : d.events.front().type);
  }
}

void Driver::deliver() {
  const std::size_t k = rnd_.uniform(pending_.size());
  const Dispatch d = pending_[k];
  pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(k));
  const int node = std::stoi(d.node.substr(1));
  const sim::Outcome o =
      sim::outcome_of(spec_, node, d.index, d.index >= 0 ? 0 : d.iteration, d.attempt);
  if (o == sim::Outcome::kHang) {
    return;
  }
  const TaskResult r = result_of(spec_, d, o);
  if (d.index < 0 && rnd_.uniform(6) == 0) {
    // A result that names another iteration of this attempt, with the opposite outcome. (The
    // dispatch may be older than the node's current iteration: never forge that one.)
    const sim::Outcome flipped = r.ok ? sim::Outcome::kFailPermanent : sim::Outcome::kOk;
    TaskResult forged = result_of(spec_, d, flipped);
    forged.iteration = d.iteration > 0
                           ? static_cast<int>(rnd_.uniform(static_cast<uint64_t>(d.iteration)))
                           : d.iteration + 1;
    forged.output = "done";
    if (forged.iteration != out_.state.nodes[static_cast<std::size_t>(node)].iteration) {
      expect_ignored(forged, "a result of another iteration");
    }
  }
  if (rnd_.uniform(10) == 0) {
    late_.push_back(r);
  }
  take(decide_result(out_.state, r, ctx_, irs_));
}

std::vector<int> Driver::settled_nodes() const {
  std::vector<int> settled;
  for (std::size_t i = 0; i < out_.state.nodes.size(); ++i) {
    if (is_settled(out_.state.nodes[i].slot.status)) {
      settled.push_back(static_cast<int>(i));
    }
  }
  return settled;
}

void Driver::patch_add() {
  const std::vector<int> settled = settled_nodes();
  const int need =
      settled.empty() || rnd_.uniform(4) == 0 ? -1 : settled[rnd_.uniform(settled.size())];
  spec_.nodes.push_back(sim::added_node(spec_, need));
  const json::value ops = json::array{json::object{
      {"op", "add"},
      {"path", "/nodes/-"},
      {"value", sim::node_definition(spec_, static_cast<int>(spec_.nodes.size()) - 1)}}};
  auto d = decide_patch(out_.state, ops, "t", ctx_, irs_);
  if (!d) {
    out_.error = "a patch adding " + spec_.nodes.back().id + " was refused: " + d.error().message;
    return;
  }
  ++patches_;
  take(std::move(*d));
}

void Driver::patch_settled() {
  const std::vector<int> settled = settled_nodes();
  if (settled.empty()) {
    return;
  }
  const int node = settled[rnd_.uniform(settled.size())];
  const json::value ops =
      json::array{json::object{{"op", "replace"},
                               {"path", "/nodes/" + std::to_string(node) + "/timeout"},
                               {"value", "45s"}}};
  const RunState before = out_.state;
  auto d = decide_patch(out_.state, ops, "t", ctx_, irs_);
  if (d) {
    out_.error = "a patch changing settled node n" + std::to_string(node) + " was applied";
  } else if (d.error().code != Code::kFailedPrecondition) {
    out_.error = "a patch changing a settled node failed with " + d.error().to_string();
  } else if (!(out_.state == before)) {
    out_.error = "a refused patch changed the state";
  }
}

// One random action; false when the run cannot move any more.
bool Driver::act() {
  const uint64_t roll = rnd_.uniform(100);
  if (!pending_.empty() && roll < 70) {
    deliver();
  } else if (!late_.empty() && roll < 78) {
    expect_ignored(late_[rnd_.uniform(late_.size())], "a duplicate result");
  } else if (roll < 82) {
    auto d =
        decide_command(out_.state, paused_ ? Command::kResume : Command::kPause, "t", ctx_, irs_);
    if (!d) {
      out_.error = "pause/resume refused: " + d.error().message;
      return false;
    }
    paused_ = !paused_;
    take(std::move(*d));
  } else if (roll < 83 && may_cancel_) {
    auto d = decide_command(out_.state, Command::kCancel, "t", ctx_, irs_);
    out_.cancelled = true;
    take(std::move(*d));
  } else if (roll < 85) {
    if (patches_ < 3 && rnd_.uniform(2) == 0) {
      patch_add();
    } else {
      patch_settled();
    }
  } else if (!pending_.empty()) {
    take(decide_tick(out_.state, ctx_, irs_));
  } else if (auto due = next_due(out_.state)) {
    ctx_.now = std::max(ctx_.now, *due);
    take(decide_tick(out_.state, ctx_, irs_));
  } else if (paused_) {
    paused_ = false;
    take(*decide_command(out_.state, Command::kResume, "t", ctx_, irs_));
  } else {
    return false;
  }
  return true;
}

Drive Driver::run(std::shared_ptr<const workflow::Ir> ir) {
  auto d = decide_submit(out_.state, "run_1", ir, sim::inputs(spec_), "", {}, ctx_, irs_);
  if (!d) {
    out_.error = "DecideSubmit: " + d.error().message;
    return out_;
  }
  take(std::move(*d));
  may_cancel_ = rnd_.uniform(20) == 0;
  for (int step = 0; step < 100000 && out_.error.empty(); ++step) {
    if (is_terminal(out_.state.status)) {
      return out_;
    }
    if (!act()) {
      break;
    }
  }
  if (out_.error.empty()) {
    out_.error = "the run is stuck in status " + std::string(run_status_name(out_.state.status));
  }
  return out_;
}

std::string check_outputs(const sim::WorkflowSpec& spec, const RunState& s) {
  for (std::size_t i = 0; i < spec.nodes.size(); ++i) {
    const sim::NodeSpec& n = spec.nodes[i];
    if (!n.foreach || s.nodes[i].slot.status != NodeStatus::kSucceeded) {
      continue;
    }
    json::array want;
    for (int k = 0; k < n.items; ++k) {
      want.push_back(sim::output_of(spec, static_cast<int>(i), k, 0));
    }
    if (s.nodes[i].slot.output != json::value(want)) {
      return "foreach " + n.id + " output " + base::compact_json(s.nodes[i].slot.output) +
             " is not in item order";
    }
  }
  return "";
}

std::string check_history(const sim::WorkflowSpec& spec, const Drive& d, IrSource& irs) {
  TransitionChecker checker(spec);
  RunState folded;
  for (std::size_t i = 0; i < d.events.size(); ++i) {
    const EventDraft& e = d.events[i];
    if (std::string why = checker.check(e); !why.empty()) {
      return "event " + std::to_string(i) + ": " + why;
    }
    if (auto st = apply(folded, e.type, e.node, e.data, d.times[i], irs); !st) {
      return "Apply rejects " + e.type + ": " + st.error().message;
    }
  }
  folded.id = d.state.id;
  if (!(folded == d.state)) {
    return "folding the events does not reproduce the state:\n" +
           base::compact_json(state_to_json(folded)) + "\n" +
           base::compact_json(state_to_json(d.state));
  }
  auto back = state_from_json(state_to_json(d.state), irs);
  if (!back || !(*back == d.state)) {
    return "StateToJson/StateFromJson does not round-trip";
  }
  return check_outputs(spec, d.state);
}

std::string check_one(uint64_t seed) {
  base::SeededRandom gen(seed);
  sim::WorkflowSpec spec = sim::generate(gen, sim::GenOptions{});
  sim::MapIrSource irs;
  auto ir = irs.compile_definition(sim::to_definition(spec));
  if (ir == nullptr) {
    return "the generated definition does not compile: " +
           base::compact_json(sim::to_definition(spec));
  }
  Drive d = Driver(spec, irs, seed).run(ir);
  if (!d.error.empty()) {
    return d.error;
  }
  sim::Observed seen;
  seen.run = std::string(run_status_name(d.state.status));
  for (const NodeState& n : d.state.nodes) {
    seen.nodes.emplace_back(node_status_name(n.slot.status));
  }
  if (const json::object* err = d.state.error.if_object()) {
    seen.error_node = base::string_or(*err, "node", "");
  }
  seen.cancelled_by_operator = d.cancelled;
  if (std::string why = sim::check_final(spec, sim::predict(spec), seen); !why.empty()) {
    return why;
  }
  return check_history(spec, d, irs);
}

TEST(EnginePropertyTest, RandomWorkflowsMatchTheReferenceModel) {
  const uint64_t base_seed = sim::env_seed(kDefaultSeed);
  const int runs = sim::env_runs(kDefaultRuns);
  int failures = 0;
  for (int i = 0; i < runs && failures < 5; ++i) {
    const uint64_t seed = base_seed + static_cast<uint64_t>(i);
    const std::string why = check_one(seed);
    if (!why.empty()) {
      ++failures;
      base::SeededRandom gen(seed);
      ADD_FAILURE() << "seed " << seed << ": " << why << "\n  definition: "
                    << base::compact_json(sim::to_definition(sim::generate(gen, {})))
                    << "\n  reproduce: VENTURE_SIM_SEED=" << seed << " VENTURE_SIM_RUNS=1 "
                    << ::testing::internal::GetArgvs()[0];
    }
  }
  std::printf("property: %d workflows from seed %llu, %d failed\n", runs,
              static_cast<unsigned long long>(base_seed), failures);
}

}  // namespace
}  // namespace venture::engine
