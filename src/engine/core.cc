// The pure engine core. Every Decide* emits events through an Emitter that applies each event to
// the state as it is emitted, so "state after decide" and "fold of Apply over the events" are the
// same by construction; the property test checks it anyway.
#include <algorithm>
#include <cmath>

#include "engine/engine.h"

namespace venture::engine {
namespace {

using workflow::Execution;
using workflow::Ir;

constexpr std::string_view kRunStatusNames[] = {"queued",    "running", "paused",   "waiting",
                                                "succeeded", "failed",  "cancelled"};
constexpr std::string_view kNodeStatusNames[] = {"pending",   "ready",  "running", "waiting",
                                                 "succeeded", "failed", "skipped", "cancelled"};

json::value time_json(Time t) { return json::value(format_time(t)); }

std::optional<Time> opt_time(const json::object& o, std::string_view key) {
  const json::string* s = base::find_string(o, key);
  if (s == nullptr) return std::nullopt;
  auto t = parse_time(*s);
  if (!t) return std::nullopt;
  return *t;
}

json::value error_json(std::string_view code, std::string_view message) {
  std::string m(message.substr(0, limits::kErrorMessageBytesMax));
  return json::object{{"code", code}, {"message", m}};
}

int int_field(const json::object& o, std::string_view key, int fallback) {
  return static_cast<int>(base::int_or(o, key, fallback));
}

// Emits events and applies each one to the state immediately.
class Emitter {
 public:
  Emitter(RunState& s, IrSource& irs, const DecideContext& ctx, Decision& d)
      : s_(s), irs_(irs), ctx_(ctx), d_(d) {}

  void emit(std::string type, std::string node, json::object data) {
    Status st = apply(s_, type, node, data, ctx_.now, irs_);
    VENTURE_CHECK_MSG(st.has_value(), "decide emitted an event that apply rejects");
    d_.events.push_back(EventDraft{std::move(type), std::move(node), std::move(data)});
  }
  RunState& state() { return s_; }
  const DecideContext& ctx() { return ctx_; }
  Decision& decision() { return d_; }

 private:
  RunState& s_;
  IrSource& irs_;
  const DecideContext& ctx_;
  Decision& d_;
};

Slot* find_slot(RunState& s, int node, int index) {
  NodeState& n = s.nodes[static_cast<std::size_t>(node)];
  if (index < 0) return &n.slot;
  if (!n.expanded || static_cast<std::size_t>(index) >= n.item_slots.size()) return nullptr;
  return &n.item_slots[static_cast<std::size_t>(index)];
}

Status apply_run(RunState& s, const std::string& type, const json::object& data, Time time,
                 IrSource& irs) {
  if (type == "run.submitted") {
    s.workflow = base::string_or(data, "workflow", "");
    s.version = base::string_or(data, "version", "");
    s.ir = irs.find(s.workflow, s.version);
    if (s.ir == nullptr) return data_loss_error("run.submitted names unknown version " + s.version);
    const json::value* inputs = data.if_contains("inputs");
    s.inputs = inputs ? *inputs : json::value(json::object());
    s.replay_of = base::string_or(data, "replay_of", "");
    s.started_by = base::string_or(data, "by", "");
    s.nodes.assign(s.ir->nodes.size(), NodeState{});
    s.status = RunStatus::kQueued;
    s.created = time;
  } else if (type == "run.started") {
    s.started = true;
    s.status = s.paused ? RunStatus::kPaused : RunStatus::kRunning;
  } else if (type == "run.paused") {
    s.paused = true;
    s.status = RunStatus::kPaused;
  } else if (type == "run.resumed") {
    s.paused = false;
    s.status = s.started ? RunStatus::kRunning : RunStatus::kQueued;
  } else if (type == "run.waiting") {
    s.status = RunStatus::kWaiting;
  } else if (type == "run.running") {
    s.status = RunStatus::kRunning;
  } else if (type == "run.succeeded" || type == "run.failed" || type == "run.cancelled") {
    s.status = type == "run.succeeded" ? RunStatus::kSucceeded
               : type == "run.failed"  ? RunStatus::kFailed
                                       : RunStatus::kCancelled;
    const json::value* out = data.if_contains("output");
    s.output = out ? *out : json::value();
    const json::value* err = data.if_contains("error");
    s.error = err ? *err : json::value();
  } else if (type == "run.patched") {
    const json::value* def = data.if_contains("definition");
    if (def == nullptr) return data_loss_error("run.patched without a definition");
    auto ir = irs.compile_definition(*def);
    if (ir == nullptr)
      return data_loss_error("run.patched carries a definition that does not compile");
    std::vector<NodeState> remapped(ir->nodes.size());
    for (std::size_t i = 0; i < ir->nodes.size(); ++i) {
      const int old = s.ir->index_of(ir->nodes[i].id);
      if (old >= 0) remapped[i] = std::move(s.nodes[static_cast<std::size_t>(old)]);
    }
    s.nodes = std::move(remapped);
    s.ir = std::move(ir);
    s.version = s.ir->version;
  } else {
    return data_loss_error("unknown run event type " + type);
  }
  return ok();
}

Status apply_slot_event(NodeState& n, Slot& slot, const std::string& type, const json::object& data,
                        Time time) {
  if (type == "node.started") {
    slot.status = NodeStatus::kRunning;
    slot.phase = Phase::kInFlight;
    slot.attempt = int_field(data, "attempt", 1);
    slot.deadline = opt_time(data, "deadline");
    slot.due.reset();
    n.slot.status = NodeStatus::kRunning;
    if (!n.started) n.started = time;
  } else if (type == "node.retrying") {
    slot.phase = Phase::kBackoff;
    slot.due = opt_time(data, "due");
    slot.deadline.reset();
    const json::value* err = data.if_contains("error");
    slot.error = err ? *err : json::value();
    if (!slot.due) return data_loss_error("node.retrying without a due time");
  } else {
    return data_loss_error("unknown slot event " + type);
  }
  return ok();
}

void settle_slot(Slot& slot, NodeStatus status) {
  slot.status = status;
  slot.phase = Phase::kIdle;
  slot.due.reset();
  slot.deadline.reset();
}

Status apply_node_settle(NodeState& n, const std::string& type, const json::object& data,
                         Time time) {
  const json::value* out = data.if_contains("output");
  const json::value* err = data.if_contains("error");
  NodeStatus st = NodeStatus::kSucceeded;
  if (type == "node.failed") {
    st = NodeStatus::kFailed;
  } else if (type == "node.skipped") {
    st = NodeStatus::kSkipped;
  } else if (type == "node.cancelled") {
    st = NodeStatus::kCancelled;
  }
  settle_slot(n.slot, st);
  // The output is the settle event's: a repeat node that fails or is cancelled must not keep
  // showing the output of its last completed iteration (node.repeating sets it) as its own.
  n.slot.output = out ? *out : json::value();
  if (err) n.slot.error = *err;
  if (const json::string* oc = base::find_string(data, "outcome")) n.outcome = std::string(*oc);
  for (Slot& item : n.item_slots) {
    if (!is_settled(item.status)) settle_slot(item, NodeStatus::kCancelled);
  }
  n.finished = time;
  return ok();
}

Status apply_node(RunState& s, const std::string& type, const std::string& node,
                  const json::object& data, Time time) {
  if (s.ir == nullptr) return data_loss_error("node event before run.submitted");
  const int idx = s.ir->index_of(node);
  if (idx < 0) return data_loss_error("event names unknown node '" + node + "'");
  NodeState& n = s.nodes[static_cast<std::size_t>(idx)];
  const int index = int_field(data, "index", -1);
  if (type == "node.started" || type == "node.retrying") {
    Slot* slot = find_slot(s, idx, index);
    if (slot == nullptr) return data_loss_error("event names unknown item of '" + node + "'");
    return apply_slot_event(n, *slot, type, data, time);
  }
  if (type == "node.waiting" && data.contains("approval")) {
    Slot* slot = find_slot(s, idx, index);
    if (slot == nullptr) return data_loss_error("event names unknown item of '" + node + "'");
    slot->status = NodeStatus::kWaiting;
    slot->phase = Phase::kGate;
    slot->due = opt_time(data, "due");
    slot->deadline.reset();
    if (!n.started) n.started = time;
    return ok();
  }
  if (type == "node.ready") {
    n.slot.status = NodeStatus::kReady;
  } else if (type == "node.waiting" || type == "node.repeating") {
    n.slot.status = type == "node.waiting" ? NodeStatus::kWaiting : NodeStatus::kRunning;
    n.slot.phase = Phase::kTimer;
    n.slot.due = opt_time(data, "due");
    n.slot.deadline.reset();
    if (!n.slot.due) return data_loss_error(type + " without a due time");
    if (type == "node.repeating") {
      n.iteration = int_field(data, "iteration", n.iteration + 1);
      const json::value* out = data.if_contains("output");
      n.slot.output = out ? *out : json::value();
    }
    if (!n.started) n.started = time;
  } else if (type == "node.expanded") {
    const json::array* items = base::find_array(data, "items");
    if (items == nullptr) return data_loss_error("node.expanded without items");
    n.expanded = true;
    n.items = *items;
    n.item_slots.assign(items->size(), Slot{});
    n.slot.status = NodeStatus::kRunning;
    if (!n.started) n.started = time;
  } else if (type == "node.item_succeeded" || type == "node.item_failed") {
    Slot* slot = find_slot(s, idx, index);
    if (slot == nullptr || index < 0) return data_loss_error("item event names unknown item");
    settle_slot(*slot,
                type == "node.item_succeeded" ? NodeStatus::kSucceeded : NodeStatus::kFailed);
    const json::value* out = data.if_contains("output");
    const json::value* err = data.if_contains("error");
    slot->output = out ? *out : json::value();
    slot->error = err ? *err : json::value();
  } else if (type == "node.succeeded" || type == "node.failed" || type == "node.skipped" ||
             type == "node.cancelled") {
    return apply_node_settle(n, type, data, time);
  } else {
    return data_loss_error("unknown node event type " + type);
  }
  return ok();
}

// approval.requested starts a gate's record; approval.decided adds a vote (or closes it:
// timeout, cancel) and sets its status. The node's own status changes with node.* events.
Status apply_approval(RunState& s, const std::string& type, const std::string& node,
                      const json::object& data, Time time) {
  if (s.ir == nullptr) return data_loss_error(type + " before run.submitted");
  const int idx = s.ir->index_of(node);
  if (idx < 0) return data_loss_error(type + " names unknown node '" + node + "'");
  Slot* slot = find_slot(s, idx, int_field(data, "index", -1));
  if (slot == nullptr) return data_loss_error(type + " names unknown item of '" + node + "'");
  const std::string id = base::string_or(data, "approval", "");
  if (type == "approval.requested") {
    json::object request = data;
    for (std::string_view k : {"approval", "index", "iteration", "due", "links"}) request.erase(k);
    const json::value* due = data.if_contains("due");
    slot->gate = json::object{{"id", id},
                              {"status", "pending"},
                              {"request", std::move(request)},
                              {"decisions", json::array()},
                              {"created", time_json(time)},
                              {"updated", time_json(time)},
                              {"due", due ? *due : json::value()}};
    return ok();
  }
  if (type != "approval.decided") return data_loss_error("unknown approval event type " + type);
  json::object* gate = slot->gate.if_object();
  const std::string status = base::string_or(data, "status", "");
  if (gate == nullptr || base::string_or(*gate, "id", "") != id || status.empty()) {
    return data_loss_error("approval.decided for an unknown approval " + id);
  }
  const std::string decision = base::string_or(data, "decision", "");
  if (decision != "cancel") {
    json::object vote{{"by", base::string_or(data, "by", "")},
                      {"role", base::string_or(data, "role", "")},
                      {"decision", decision},
                      {"comment", base::string_or(data, "comment", "")},
                      {"at", time_json(time)},
                      {"via", base::string_or(data, "via", "api")}};
    if (const json::string* link = base::find_string(data, "link")) vote["link"] = *link;
    (*gate)["decisions"].as_array().push_back(std::move(vote));
  }
  (*gate)["status"] = status;
  (*gate)["updated"] = time_json(time);
  return ok();
}

Status apply_patch_event(const RunState& s, const std::string& type) {
  if (s.ir == nullptr) return data_loss_error(type + " before run.submitted");
  if (type != "patch.proposed" && type != "patch.applied" && type != "patch.rejected") {
    return data_loss_error("unknown patch event type " + type);
  }
  return ok();
}

}  // namespace

std::string_view run_status_name(RunStatus s) { return kRunStatusNames[static_cast<int>(s)]; }
std::string_view node_status_name(NodeStatus s) { return kNodeStatusNames[static_cast<int>(s)]; }

bool is_terminal(RunStatus s) {
  return s == RunStatus::kSucceeded || s == RunStatus::kFailed || s == RunStatus::kCancelled;
}

bool is_settled(NodeStatus s) {
  return s == NodeStatus::kSucceeded || s == NodeStatus::kFailed || s == NodeStatus::kSkipped ||
         s == NodeStatus::kCancelled;
}

bool RunState::operator==(const RunState& o) const {
  return id == o.id && workflow == o.workflow && version == o.version && inputs == o.inputs &&
         status == o.status && paused == o.paused && started == o.started &&
         replay_of == o.replay_of && started_by == o.started_by && output == o.output &&
         error == o.error && nodes == o.nodes && created == o.created && events == o.events;
}

Status apply(RunState& state, const std::string& type, const std::string& node,
             const json::object& data, Time time, IrSource& irs) {
  // patch.proposed|applied|rejected record the review; the graph changes with run.patched.
  Status st = type.starts_with("run.")     ? apply_run(state, type, data, time, irs)
              : type.starts_with("node.")  ? apply_node(state, type, node, data, time)
              : type.starts_with("patch.") ? apply_patch_event(state, type)
              : type.starts_with("approval.")
                  ? apply_approval(state, type, node, data, time)
                  : Status(data_loss_error("event type " + type + " is not about a run"));
  if (!st) return st;
  state.events += 1;
  state.updated = time;
  return ok();
}

// ---- decide -------------------------------------------------------------------------------

namespace {

enum class Readiness { kWait, kReady, kSkip };

Readiness readiness_of(const RunState& s, const workflow::Node& node) {
  int succeeded = 0;
  for (int need : node.needs) {
    const NodeStatus st = s.nodes[static_cast<std::size_t>(need)].slot.status;
    if (!is_settled(st)) {
      if (node.join == workflow::Join::kAll) continue;  // may still skip early below
      return Readiness::kWait;
    }
    if (st == NodeStatus::kSucceeded) {
      ++succeeded;
    } else if (node.join == workflow::Join::kAll) {
      return Readiness::kSkip;  // join all: one need did not succeed
    }
  }
  if (node.join == workflow::Join::kAll) {
    return succeeded == static_cast<int>(node.needs.size()) ? Readiness::kReady : Readiness::kWait;
  }
  return succeeded > 0 || node.needs.empty() ? Readiness::kReady : Readiness::kSkip;
}

// Closes the node's pending approvals (approval.decided with status cancelled) before the node
// settles without them.
void close_gates(Emitter& em, int node, const std::string& reason) {
  const NodeState& n = em.state().nodes[static_cast<std::size_t>(node)];
  const std::string& id = em.state().ir->nodes[static_cast<std::size_t>(node)].id;
  std::vector<std::pair<int, std::string>> open;
  auto look = [&](const Slot& sl, int index) {
    const json::object* g = sl.gate.if_object();
    if (g != nullptr && base::string_or(*g, "status", "") == "pending") {
      open.emplace_back(index, base::string_or(*g, "id", ""));
    }
  };
  look(n.slot, -1);
  for (std::size_t k = 0; k < n.item_slots.size(); ++k) {
    look(n.item_slots[k], static_cast<int>(k));
  }
  for (auto& [index, approval] : open) {
    json::object data{{"approval", std::move(approval)},
                      {"decision", "cancel"},
                      {"comment", reason},
                      {"via", "engine"},
                      {"status", "cancelled"}};
    if (index >= 0) data["index"] = index;
    em.emit("approval.decided", id, std::move(data));
  }
}

void fail_run(Emitter& em, int node, const json::value& error) {
  RunState& s = em.state();
  for (std::size_t i = 0; i < s.nodes.size(); ++i) {
    if (!is_settled(s.nodes[i].slot.status)) {
      close_gates(em, static_cast<int>(i), "run failed");
      em.emit("node.cancelled", s.ir->nodes[i].id, json::object{{"reason", "run failed"}});
    }
  }
  json::object err;
  if (const json::object* e = error.if_object()) err = *e;
  err["node"] = s.ir->nodes[static_cast<std::size_t>(node)].id;
  em.emit("run.failed", "", json::object{{"error", std::move(err)}});
}

void fail_node(Emitter& em, int node, json::value error, const std::string& outcome = "") {
  const workflow::Node& spec = em.state().ir->nodes[static_cast<std::size_t>(node)];
  close_gates(em, node, "node failed");
  json::object data{{"error", error}};
  if (!outcome.empty()) data["outcome"] = outcome;
  em.emit("node.failed", spec.id, std::move(data));
  if (spec.on_failure == workflow::OnFailure::kFail) fail_run(em, node, error);
}

Millis backoff_delay(const workflow::RetryPolicy& p, int attempt, const DecideContext& ctx) {
  double delay = static_cast<double>(p.initial_interval.count()) *
                 std::pow(p.backoff_coefficient, std::max(0, attempt - 1));
  delay = std::min(delay, static_cast<double>(p.max_interval.count()));
  if (p.jitter > 0) {
    const double u = ctx.random ? ctx.random->uniform_double() : 0.5;
    delay *= 1.0 - p.jitter + 2.0 * p.jitter * u;
  }
  return Millis(static_cast<int64_t>(std::max(0.0, delay)));
}

bool is_retryable(const workflow::RetryPolicy& p, int attempt, const json::value& error,
                  bool retryable) {
  if (!retryable || attempt >= p.max_attempts) return false;
  const json::object* e = error.if_object();
  const std::string code = e ? base::string_or(*e, "code", "") : "";
  return std::find(p.non_retryable.begin(), p.non_retryable.end(), code) == p.non_retryable.end();
}

bool can_dispatch(Emitter& em) {
  const RunState& s = em.state();
  return !em.ctx().frozen && !s.paused && s.started && !is_terminal(s.status);
}

}  // namespace

Result<Dispatch> build_dispatch(const RunState& s, int node, int index, int attempt) {
  const workflow::Node& spec = s.ir->nodes[static_cast<std::size_t>(node)];
  const NodeState& n = s.nodes[static_cast<std::size_t>(node)];
  Dispatch d;
  d.run = s.id;
  d.node = spec.id;
  d.type = spec.type;
  d.index = index;
  d.attempt = attempt;
  d.iteration = n.iteration;
  d.idempotency_key = s.id + "/" + spec.id + "/" + std::to_string(index >= 0 ? index : n.iteration);
  if (!spec.spec->needs_context && spec.config.is_static()) {
    d.config = spec.config.raw();
    return d;
  }
  json::object ctx = expression_context(s);
  if (index >= 0) {
    ctx["item"] = n.items[static_cast<std::size_t>(index)];
    ctx["index"] = index;
  }
  if (spec.spec->needs_context) {
    d.config = spec.config.raw();
    d.context = std::move(ctx);
    return d;
  }
  VENTURE_ASSIGN_OR_RETURN(d.config, spec.config.render(ctx));
  return d;
}

namespace {

void start_attempt(Emitter& em, int node, int index, int attempt);
void attempt_failed(Emitter& em, int node, int index, int attempt, json::value error,
                    bool retryable, Millis at_least = Millis(0));
void slot_succeeded(Emitter& em, int node, int index, json::value output,
                    const std::string& outcome = "");
void start_gate(Emitter& em, int node, int index);

void start_attempt(Emitter& em, int node, int index, int attempt) {
  RunState& s = em.state();
  const workflow::Node& spec = s.ir->nodes[static_cast<std::size_t>(node)];
  if (spec.spec->execution == Execution::kGate) {
    start_gate(em, node, index);  // people, not a worker
    return;
  }
  auto d = build_dispatch(s, node, index, attempt);
  if (!d) {
    attempt_failed(em, node, index, attempt, error_json("expression_error", d.error().message),
                   false);
    return;
  }
  json::object data{{"attempt", attempt}, {"deadline", time_json(em.ctx().now + spec.timeout)}};
  if (index >= 0) data["index"] = index;
  em.emit("node.started", spec.id, std::move(data));
  em.decision().dispatches.push_back(std::move(*d));
}

// `at_least`: the remote side's Retry-After; the backoff is never shorter than it.
void attempt_failed(Emitter& em, int node, int index, int attempt, json::value error,
                    bool retryable, Millis at_least) {
  const workflow::Node& spec = em.state().ir->nodes[static_cast<std::size_t>(node)];
  if (is_retryable(spec.retry, attempt, error, retryable)) {
    const Time due =
        em.ctx().now + std::max(backoff_delay(spec.retry, attempt, em.ctx()), at_least);
    json::object data{{"attempt", attempt}, {"error", error}, {"due", time_json(due)}};
    if (index >= 0) data["index"] = index;
    em.emit("node.retrying", spec.id, std::move(data));
    return;
  }
  if (index >= 0) {
    em.emit("node.item_failed", spec.id, json::object{{"index", index}, {"error", error}});
  }
  fail_node(em, node, std::move(error));
}

// Starts pending foreach items up to max_parallel.
void fill_items(Emitter& em, int node) {
  if (!can_dispatch(em)) return;
  const NodeState& n = em.state().nodes[static_cast<std::size_t>(node)];
  const workflow::Node& spec = em.state().ir->nodes[static_cast<std::size_t>(node)];
  std::size_t active = 0;
  for (const Slot& it : n.item_slots) {
    if (it.status == NodeStatus::kRunning || it.status == NodeStatus::kWaiting) ++active;
  }
  for (std::size_t k = 0; k < n.item_slots.size(); ++k) {
    if (spec.max_parallel != 0 && active >= spec.max_parallel) break;
    if (em.state().nodes[static_cast<std::size_t>(node)].slot.status != NodeStatus::kRunning) break;
    if (em.state().nodes[static_cast<std::size_t>(node)].item_slots[k].status ==
        NodeStatus::kPending) {
      start_attempt(em, node, static_cast<int>(k), 1);
      ++active;
    }
  }
}

void finish_repeat(Emitter& em, int node, json::value output) {
  RunState& s = em.state();
  const workflow::Node& spec = s.ir->nodes[static_cast<std::size_t>(node)];
  const int iteration = s.nodes[static_cast<std::size_t>(node)].iteration + 1;
  json::object ctx = expression_context(s);
  ctx["output"] = output;
  ctx["iteration"] = iteration;
  auto done = spec.repeat->until.eval(ctx);
  if (!done) {
    fail_node(em, node, error_json("expression_error", done.error().message));
    return;
  }
  if (done->is_bool() && done->get_bool()) {
    em.emit("node.succeeded", spec.id, json::object{{"output", std::move(output)}});
    return;
  }
  if (iteration >= spec.repeat->max_iterations) {
    fail_node(em, node,
              error_json("max_iterations", "repeat did not reach its condition after " +
                                               std::to_string(iteration) + " iterations"));
    return;
  }
  const Time due = em.ctx().now + spec.repeat->interval;
  em.emit("node.repeating", spec.id,
          json::object{
              {"iteration", iteration}, {"output", std::move(output)}, {"due", time_json(due)}});
}

// `outcome`: an approval's (approved|rejected). A foreach of approvals is approved when every
// item was approved, rejected otherwise.
void slot_succeeded(Emitter& em, int node, int index, json::value output,
                    const std::string& outcome) {
  RunState& s = em.state();
  const workflow::Node& spec = s.ir->nodes[static_cast<std::size_t>(node)];
  if (index < 0) {
    if (spec.repeat && !spec.foreach) {
      finish_repeat(em, node, std::move(output));
      return;
    }
    json::object data{{"output", std::move(output)}};
    if (!outcome.empty()) data["outcome"] = outcome;
    em.emit("node.succeeded", spec.id, std::move(data));
    return;
  }
  em.emit("node.item_succeeded", spec.id, json::object{{"index", index}, {"output", output}});
  const NodeState& n = s.nodes[static_cast<std::size_t>(node)];
  json::array outputs;
  bool approved = true;
  for (const Slot& it : n.item_slots) {
    if (it.status != NodeStatus::kSucceeded) {
      fill_items(em, node);
      return;
    }
    const json::object* g = it.gate.if_object();
    approved = approved && (g == nullptr || base::string_or(*g, "status", "") == "approved");
    outputs.push_back(it.output);
  }
  json::object data{{"output", std::move(outputs)}};
  if (spec.spec->execution == Execution::kGate)
    data["outcome"] = approved ? "approved" : "rejected";
  em.emit("node.succeeded", spec.id, std::move(data));
}

// ---- approvals ----

// The approval's id: a UUIDv7 from the decision's time and random source (deterministic given
// the context, so the core stays pure).
std::string new_approval_id(const RunState& s, const DecideContext& ctx, const std::string& node,
                            int index) {
  class At final : public base::Clock {
   public:
    explicit At(Time t) : t_(t) {}
    Time now() override { return t_; }
    int64_t monotonic_ns() override { return 0; }

   private:
    Time t_;
  };
  At clock(ctx.now);
  if (ctx.random != nullptr) return base::new_id("apr", clock, *ctx.random);
  base::SeededRandom fallback(
      std::hash<std::string>{}(s.id + "/" + node + "/" + std::to_string(index)));
  return base::new_id("apr", clock, fallback);
}

// The request of an approval from its rendered config; an error names the bad field.
Result<json::object> gate_request(const json::value& config, const RunState& s) {
  const json::object* c = config.if_object();
  if (c == nullptr) return invalid_argument_error("config is not an object");
  json::object r;
  for (std::string_view field : {"title", "description"}) {
    const json::value* v = c->if_contains(field);
    if (v != nullptr && !v->is_string()) {
      return invalid_argument_error(std::string(field) + " must be a string");
    }
    r[field] = v ? *v : json::value("");
  }
  const json::value* show = c->if_contains("show");
  r["show"] = show ? *show : json::value();
  const json::object* approvers = base::find_object(*c, "approvers");
  if (approvers == nullptr) return invalid_argument_error("approvers must be an object");
  json::object who;
  std::size_t named = 0;
  for (std::string_view field : {"roles", "users"}) {
    json::array list;
    if (const json::value* v = approvers->if_contains(field)) {
      const json::array* a = v->if_array();
      if (a == nullptr)
        return invalid_argument_error("approvers." + std::string(field) + " must be a list");
      for (const json::value& e : *a) {
        if (!e.is_string()) {
          return invalid_argument_error("approvers." + std::string(field) + " must list strings");
        }
        list.push_back(e);
      }
    }
    named += list.size();
    who[field] = std::move(list);
  }
  if (named == 0) return invalid_argument_error("approvers name nobody");
  r["approvers"] = std::move(who);
  const json::value* quorum = c->if_contains("quorum");
  const int64_t q = quorum == nullptr ? 1 : quorum->is_int64() ? quorum->get_int64() : 0;
  if (q < 1 || q > 1000) return invalid_argument_error("quorum must be an integer from 1 to 1000");
  r["quorum"] = q;
  for (auto [field, fallback] : {std::pair<std::string_view, bool>{"reject_on_any", true},
                                 std::pair<std::string_view, bool>{"allow_self_approval", false}}) {
    const json::value* v = c->if_contains(field);
    if (v != nullptr && !v->is_bool()) {
      return invalid_argument_error(std::string(field) + " must be true or false");
    }
    r[field] = v ? v->get_bool() : fallback;
  }
  const std::string on_timeout = base::string_or(*c, "on_timeout", "reject");
  if (on_timeout != "approve" && on_timeout != "reject" && on_timeout != "fail") {
    return invalid_argument_error("on_timeout must be approve, reject or fail");
  }
  r["on_timeout"] = on_timeout;
  if (const json::value* t = c->if_contains("timeout")) {
    if (!t->is_string()) return invalid_argument_error("timeout must be a duration");
    VENTURE_ASSIGN_OR_RETURN(Millis d, parse_duration(t->get_string()));
    r["timeout_ms"] = d.count();
  }
  r["started_by"] = s.started_by;
  return r;
}

void start_gate(Emitter& em, int node, int index) {
  RunState& s = em.state();
  const workflow::Node& spec = s.ir->nodes[static_cast<std::size_t>(node)];
  const NodeState& n = s.nodes[static_cast<std::size_t>(node)];
  json::object ctx = expression_context(s);
  if (index >= 0) {
    ctx["item"] = n.items[static_cast<std::size_t>(index)];
    ctx["index"] = index;
  }
  auto config = spec.config.render(ctx);
  Result<json::object> request =
      config ? gate_request(*config, s) : Result<json::object>(config.error());
  if (!request) {
    attempt_failed(em, node, index, 1,
                   error_json("invalid_config", "approval: " + request.error().message), false);
    return;
  }
  const std::string id = new_approval_id(s, em.ctx(), spec.id, index);
  json::object data = std::move(*request);
  data["approval"] = id;
  data["iteration"] = n.iteration;
  if (index >= 0) data["index"] = index;
  json::object waiting{{"approval", id}};
  if (const json::value* t = data.if_contains("timeout_ms")) {
    const json::value due = time_json(em.ctx().now + Millis(t->get_int64()));
    data["due"] = due;
    waiting["due"] = due;
  }
  data.erase("timeout_ms");
  if (index >= 0) waiting["index"] = index;
  em.emit("approval.requested", spec.id, std::move(data));
  em.emit("node.waiting", spec.id, std::move(waiting));
}

// The node's output for a settled gate: the decision and the people's votes.
json::object gate_output(const json::object& gate, bool approved) {
  json::array decisions;
  bool timed_out = false;
  if (const json::array* votes = base::find_array(gate, "decisions")) {
    for (const json::value& v : *votes) {
      const json::object& o = v.as_object();
      if (base::string_or(o, "via", "") == "timeout") {
        timed_out = true;
        continue;
      }
      decisions.push_back(json::object{{"by", base::string_or(o, "by", "")},
                                       {"decision", base::string_or(o, "decision", "")},
                                       {"comment", base::string_or(o, "comment", "")},
                                       {"at", base::string_or(o, "at", "")}});
    }
  }
  return json::object{{"decision", approved ? "approve" : "reject"},
                      {"decisions", std::move(decisions)},
                      {"timed_out", timed_out}};
}

// Settles the node (or item) of a gate whose status is no longer pending.
void settle_gate(Emitter& em, int node, int index) {
  const Slot* slot = find_slot(em.state(), node, index);
  const json::object gate = slot->gate.as_object();
  const std::string status = base::string_or(gate, "status", "");
  if (status == "approved" || status == "rejected") {
    const bool approved = status == "approved";
    slot_succeeded(em, node, index, gate_output(gate, approved),
                   approved ? "approved" : "rejected");
    return;
  }
  json::value error =
      error_json("approval_timed_out",
                 "approval " + base::string_or(gate, "id", "") + " timed out (on_timeout: fail)");
  if (index >= 0) {
    em.emit("node.item_failed", em.state().ir->nodes[static_cast<std::size_t>(node)].id,
            json::object{{"index", index}, {"error", error}});
  }
  fail_node(em, node, std::move(error), "timed_out");
}

void gate_timeout(Emitter& em, int node, int index) {
  const Slot* slot = find_slot(em.state(), node, index);
  const json::object& gate = slot->gate.as_object();
  const json::object* request = base::find_object(gate, "request");
  const std::string on_timeout = request ? base::string_or(*request, "on_timeout", "reject") : "";
  json::object data{{"approval", base::string_or(gate, "id", "")},
                    {"decision", "timeout"},
                    {"via", "timeout"},
                    {"comment", "on_timeout: " + on_timeout},
                    {"status", on_timeout == "approve" ? "approved"
                               : on_timeout == "fail"  ? "timed_out"
                                                       : "rejected"}};
  if (index >= 0) data["index"] = index;
  em.emit("approval.decided", em.state().ir->nodes[static_cast<std::size_t>(node)].id,
          std::move(data));
  settle_gate(em, node, index);
}

void start_node(Emitter& em, int node) {
  RunState& s = em.state();
  const workflow::Node& spec = s.ir->nodes[static_cast<std::size_t>(node)];
  if (spec.spec->execution == Execution::kTimer) {
    auto cfg = spec.config.render(expression_context(s));
    const json::object* obj = cfg ? cfg->if_object() : nullptr;
    const json::string* text = obj ? base::find_string(*obj, "duration") : nullptr;
    auto d = text ? parse_duration(*text) : Result<Millis>(invalid_argument_error("no duration"));
    if (!d) {
      fail_node(em, node, error_json("invalid_config", "sleep: " + d.error().message));
      return;
    }
    em.emit("node.waiting", spec.id, json::object{{"due", time_json(em.ctx().now + *d)}});
    return;
  }
  if (spec.foreach) {
    auto items = spec.foreach->eval(expression_context(s));
    if (!items || !items->is_array() || items->get_array().size() > limits::kForeachItemsMax) {
      fail_node(em, node,
                error_json("expression_error",
                           items ? "foreach must yield an array of at most 10000 items"
                                 : items.error().message));
      return;
    }
    const bool empty = items->get_array().empty();
    em.emit("node.expanded", spec.id, json::object{{"items", std::move(*items)}});
    if (empty) {
      em.emit("node.succeeded", spec.id, json::object{{"output", json::array()}});
      return;
    }
    fill_items(em, node);
    return;
  }
  start_attempt(em, node, -1, 1);
}

// Makes a pending node ready/skipped and starts it when it may start now. Returns true if any
// event was emitted.
bool consider_node(Emitter& em, int node) {
  RunState& s = em.state();
  const workflow::Node& spec = s.ir->nodes[static_cast<std::size_t>(node)];
  const NodeStatus st = s.nodes[static_cast<std::size_t>(node)].slot.status;
  if (st == NodeStatus::kPending) {
    const Readiness r = readiness_of(s, spec);
    if (r == Readiness::kWait) return false;
    if (r == Readiness::kSkip) {
      em.emit("node.skipped", spec.id, json::object{{"reason", "needs not satisfied"}});
      return true;
    }
    if (!can_dispatch(em)) {
      em.emit("node.ready", spec.id, {});
      return true;
    }
  } else if (st == NodeStatus::kRunning && s.nodes[static_cast<std::size_t>(node)].expanded) {
    // Items left pending while the run was paused or frozen start on resume/unfreeze.
    fill_items(em, node);
    return false;
  } else if (st != NodeStatus::kReady || !can_dispatch(em)) {
    return false;
  }
  if (spec.if_expr) {
    auto cond = spec.if_expr->eval(expression_context(s));
    if (!cond) {
      fail_node(em, node, error_json("expression_error", "if: " + cond.error().message));
      return true;
    }
    if (!(cond->is_bool() && cond->get_bool())) {
      em.emit("node.skipped", spec.id, json::object{{"reason", "if is false"}});
      return true;
    }
  }
  start_node(em, node);
  return true;
}

// Whether any node can make progress without a timer or a result.
struct Pending {
  bool in_flight = false;
  bool timers = false;
};

Pending scan(const RunState& s) {
  Pending p;
  for (const NodeState& n : s.nodes) {
    auto look = [&](const Slot& sl) {
      if (sl.phase == Phase::kInFlight) p.in_flight = true;
      if (sl.phase == Phase::kBackoff || sl.phase == Phase::kTimer || sl.phase == Phase::kGate) {
        p.timers = true;  // waiting for time or people
      }
    };
    look(n.slot);
    for (const Slot& it : n.item_slots) look(it);
    if (n.slot.status == NodeStatus::kReady) p.in_flight = true;  // startable work
  }
  return p;
}

void finish(Emitter& em) {
  RunState& s = em.state();
  for (const NodeState& n : s.nodes) {
    if (!is_settled(n.slot.status)) return;
  }
  json::value output;
  if (s.ir->output) {
    auto out = s.ir->output->render(expression_context(s));
    if (!out) {
      em.emit("run.failed", "",
              json::object{
                  {"error", error_json("expression_error", "output: " + out.error().message)}});
      return;
    }
    output = std::move(*out);
  }
  em.emit("run.succeeded", "", json::object{{"output", std::move(output)}});
}

// Runs the scheduling loop to a fixpoint, then settles the run status.
void advance(Emitter& em) {
  RunState& s = em.state();
  if (is_terminal(s.status)) return;
  if (!s.started) {
    if (em.ctx().frozen || s.paused) return;
    em.emit("run.started", "", {});
  }
  bool changed = true;
  while (changed && !is_terminal(s.status)) {
    changed = false;
    for (int i : s.ir->topo_order) {
      if (is_terminal(s.status)) break;
      if (consider_node(em, i)) changed = true;
    }
  }
  if (is_terminal(s.status)) return;
  finish(em);
  if (is_terminal(s.status) || s.paused) return;
  const Pending p = scan(s);
  if (!p.in_flight && p.timers && s.status != RunStatus::kWaiting) {
    em.emit("run.waiting", "", {});
  } else if (p.in_flight && s.status == RunStatus::kWaiting) {
    em.emit("run.running", "", {});
  }
}

void fire_timers(Emitter& em) {
  RunState& s = em.state();
  const Time now = em.ctx().now;
  for (std::size_t i = 0; i < s.nodes.size() && !is_terminal(s.status); ++i) {
    const int node = static_cast<int>(i);
    const Slot slot = s.nodes[i].slot;
    if (slot.phase == Phase::kInFlight && slot.deadline && *slot.deadline <= now) {
      attempt_failed(
          em, node, -1, slot.attempt,
          error_json("deadline_exceeded", "attempt " + std::to_string(slot.attempt) + " timed out"),
          true);
    } else if (slot.phase == Phase::kTimer && slot.due && *slot.due <= now) {
      if (s.nodes[i].slot.status == NodeStatus::kWaiting) {
        em.emit("node.succeeded", s.ir->nodes[i].id, json::object{{"output", nullptr}});
      } else if (can_dispatch(em)) {
        start_attempt(em, node, -1, 1);  // the next repeat iteration
      }
    } else if (slot.phase == Phase::kGate && slot.due && *slot.due <= now) {
      gate_timeout(em, node, -1);
    } else if (slot.phase == Phase::kBackoff && slot.due && *slot.due <= now && can_dispatch(em)) {
      start_attempt(em, node, -1, slot.attempt + 1);
    }
    for (std::size_t k = 0; k < s.nodes[i].item_slots.size() && !is_terminal(s.status); ++k) {
      const Slot it = s.nodes[i].item_slots[k];
      const int index = static_cast<int>(k);
      if (it.phase == Phase::kInFlight && it.deadline && *it.deadline <= now) {
        attempt_failed(
            em, node, index, it.attempt,
            error_json("deadline_exceeded", "attempt " + std::to_string(it.attempt) + " timed out"),
            true);
      } else if (it.phase == Phase::kGate && it.due && *it.due <= now) {
        gate_timeout(em, node, index);
      } else if (it.phase == Phase::kBackoff && it.due && *it.due <= now && can_dispatch(em)) {
        start_attempt(em, node, index, it.attempt + 1);
      }
    }
  }
}

}  // namespace

Result<Decision> decide_submit(RunState& state, const std::string& run_id,
                               const std::shared_ptr<const Ir>& ir, json::value inputs,
                               const std::string& replay_of, const json::object& seeded,
                               const DecideContext& ctx, IrSource& irs, const std::string& by,
                               const json::object& seeded_outcomes) {
  VENTURE_CHECK(ir != nullptr);
  state = RunState{};
  state.id = run_id;
  Decision d;
  Emitter em(state, irs, ctx, d);
  json::object data{{"workflow", ir->name}, {"version", ir->version}, {"inputs", inputs}};
  if (!replay_of.empty()) data["replay_of"] = replay_of;
  if (!by.empty()) data["by"] = by;
  em.emit("run.submitted", "", std::move(data));
  for (int i : ir->topo_order) {
    const std::string& id = ir->nodes[static_cast<std::size_t>(i)].id;
    if (const json::value* out = seeded.if_contains(id)) {
      json::object settled{{"output", *out}, {"replayed", true}};
      if (const json::value* oc = seeded_outcomes.if_contains(id)) settled["outcome"] = *oc;
      em.emit("node.succeeded", id, std::move(settled));
    }
  }
  advance(em);
  return d;
}

std::string attempt_key(const std::string& run, const std::string& node, int index, int iteration,
                        int attempt) {
  return run + "/" + node + "/" + std::to_string(index) + "/" + std::to_string(iteration) + "/" +
         std::to_string(attempt);
}

std::string attempt_key(const Dispatch& d) {
  return attempt_key(d.run, d.node, d.index, d.index >= 0 ? 0 : d.iteration, d.attempt);
}

Decision decide_result(RunState& state, const TaskResult& r, const DecideContext& ctx,
                       IrSource& irs) {
  Decision d;
  if (state.ir == nullptr || is_terminal(state.status)) return d;
  const int node = state.ir->index_of(r.node);
  if (node < 0) return d;
  Slot* slot = find_slot(state, node, r.index);
  const int iteration = r.index < 0 ? state.nodes[static_cast<std::size_t>(node)].iteration : 0;
  if (slot == nullptr || slot->phase != Phase::kInFlight || slot->attempt != r.attempt ||
      r.iteration != iteration) {
    return d;  // duplicate or late: the history stays exactly-once
  }
  Emitter em(state, irs, ctx, d);
  if (r.ok) {
    slot_succeeded(em, node, r.index, r.output);
  } else {
    attempt_failed(em, node, r.index, r.attempt, error_json(r.error_code, r.error_message),
                   r.retryable, std::min(Millis(r.retry_after_ms), limits::kRetryAfterMax));
  }
  advance(em);
  return d;
}

Decision decide_tick(RunState& state, const DecideContext& ctx, IrSource& irs) {
  Decision d;
  if (state.ir == nullptr || is_terminal(state.status)) return d;
  Emitter em(state, irs, ctx, d);
  fire_timers(em);
  advance(em);
  return d;
}

Result<Decision> decide_command(RunState& state, Command command, const std::string& reason,
                                const DecideContext& ctx, IrSource& irs) {
  if (state.ir == nullptr) return not_found_error("run " + state.id + " does not exist");
  if (is_terminal(state.status)) {
    return failed_precondition_error("run " + state.id + " is already " +
                                     std::string(run_status_name(state.status)));
  }
  Decision d;
  Emitter em(state, irs, ctx, d);
  switch (command) {
    case Command::kCancel:
      for (std::size_t i = 0; i < state.nodes.size(); ++i) {
        if (!is_settled(state.nodes[i].slot.status)) {
          close_gates(em, static_cast<int>(i), "run cancelled");
          em.emit("node.cancelled", state.ir->nodes[i].id,
                  json::object{{"reason", "run cancelled"}});
        }
      }
      em.emit("run.cancelled", "", json::object{{"reason", reason}});
      break;
    case Command::kPause:
      if (state.paused) return failed_precondition_error("run " + state.id + " is already paused");
      em.emit("run.paused", "", json::object{{"reason", reason}});
      break;
    case Command::kResume:
      if (!state.paused) return failed_precondition_error("run " + state.id + " is not paused");
      em.emit("run.resumed", "", json::object{{"reason", reason}});
      fire_timers(em);
      advance(em);
      break;
  }
  return d;
}

namespace {

struct GateRef {
  int node = -1;
  int index = -1;
};

std::optional<GateRef> locate_gate(const RunState& s, const std::string& id) {
  auto matches = [&](const Slot& sl) {
    const json::object* g = sl.gate.if_object();
    return g != nullptr && base::string_or(*g, "id", "") == id;
  };
  for (std::size_t i = 0; i < s.nodes.size(); ++i) {
    if (matches(s.nodes[i].slot)) return GateRef{static_cast<int>(i), -1};
    for (std::size_t k = 0; k < s.nodes[i].item_slots.size(); ++k) {
      if (matches(s.nodes[i].item_slots[k]))
        return GateRef{static_cast<int>(i), static_cast<int>(k)};
    }
  }
  return std::nullopt;
}

bool lists(const json::object& o, std::string_view key, const std::string& name) {
  const json::array* a = base::find_array(o, key);
  if (a == nullptr || name.empty()) return false;
  return std::any_of(a->begin(), a->end(),
                     [&](const json::value& v) { return v.is_string() && v.get_string() == name; });
}

storage::ApprovalRow row_of(const RunState& s, GateRef ref) {
  const NodeState& n = s.nodes[static_cast<std::size_t>(ref.node)];
  const Slot& slot = ref.index < 0 ? n.slot : n.item_slots[static_cast<std::size_t>(ref.index)];
  const json::object& g = slot.gate.as_object();
  storage::ApprovalRow row;
  row.id = base::string_or(g, "id", "");
  row.run = s.id;
  row.node = s.ir->nodes[static_cast<std::size_t>(ref.node)].id;
  row.index = ref.index;
  row.iteration = n.iteration;
  row.status = base::string_or(g, "status", "");
  row.created = opt_time(g, "created").value_or(Time{});
  row.updated = opt_time(g, "updated").value_or(Time{});
  row.due = opt_time(g, "due");
  if (const json::value* r = g.if_contains("request")) row.request = *r;
  if (const json::value* d = g.if_contains("decisions")) row.decisions = *d;
  return row;
}

}  // namespace

bool is_approver(const json::value& request, const std::string& by, const std::string& role) {
  const json::object* r = request.if_object();
  const json::object* who = r ? base::find_object(*r, "approvers") : nullptr;
  return who != nullptr && (lists(*who, "roles", role) || lists(*who, "users", by));
}

std::optional<storage::ApprovalRow> find_approval(const RunState& state, const std::string& id) {
  auto ref = locate_gate(state, id);
  if (!ref) return std::nullopt;
  return row_of(state, *ref);
}

std::vector<storage::ApprovalRow> changed_approvals(const RunState& state, int node, Time now) {
  std::vector<storage::ApprovalRow> rows;
  if (state.ir == nullptr || node < 0 || static_cast<std::size_t>(node) >= state.nodes.size()) {
    return rows;
  }
  const NodeState& n = state.nodes[static_cast<std::size_t>(node)];
  const json::value stamp = time_json(now);
  auto look = [&](const Slot& sl, int index) {
    const json::object* g = sl.gate.if_object();
    const json::value* updated = g ? g->if_contains("updated") : nullptr;
    if (updated != nullptr && *updated == stamp)
      rows.push_back(row_of(state, GateRef{node, index}));
  };
  look(n.slot, -1);
  for (std::size_t k = 0; k < n.item_slots.size(); ++k) look(n.item_slots[k], static_cast<int>(k));
  return rows;
}

Result<Decision> decide_approval(RunState& state, const Vote& vote, const DecideContext& ctx,
                                 IrSource& irs) {
  if (state.ir == nullptr) return not_found_error("run " + state.id + " does not exist");
  auto ref = locate_gate(state, vote.approval);
  if (!ref) return not_found_error("approval " + vote.approval + " not found");
  if (vote.decision != "approve" && vote.decision != "reject") {
    return invalid_argument_error("decision must be approve or reject");
  }
  const Slot* slot = find_slot(state, ref->node, ref->index);
  const json::object gate = slot->gate.as_object();
  const std::string status = base::string_or(gate, "status", "");
  if (status != "pending") {
    return failed_precondition_error("approval " + vote.approval + " is already " + status);
  }
  if (is_terminal(state.status)) {
    return failed_precondition_error("run " + state.id + " is already " +
                                     std::string(run_status_name(state.status)));
  }
  static const json::object kNone;
  const json::object* request = base::find_object(gate, "request");
  if (request == nullptr) request = &kNone;
  if (!is_approver(*request, vote.by, vote.role)) {
    return permission_denied_error("'" + vote.by + "' (role " +
                                   (vote.role.empty() ? "none" : vote.role) +
                                   ") is not among the approvers of " + vote.approval);
  }
  const json::value* self = request->if_contains("allow_self_approval");
  const bool allow_self = self != nullptr && self->is_bool() && self->get_bool();
  if (vote.decision == "approve" && !allow_self && !vote.by.empty() &&
      vote.by == state.started_by) {
    return permission_denied_error("'" + vote.by + "' started run " + state.id +
                                   " and may not approve it (allow_self_approval is false)");
  }
  int64_t approvals = vote.decision == "approve" ? 1 : 0;
  int64_t rejections = vote.decision == "reject" ? 1 : 0;
  if (const json::array* votes = base::find_array(gate, "decisions")) {
    for (const json::value& v : *votes) {
      const json::object& o = v.as_object();
      if (base::string_or(o, "by", "") == vote.by) {
        return failed_precondition_error("'" + vote.by + "' has already decided on " +
                                         vote.approval);
      }
      if (!vote.link.empty() && base::string_or(o, "link", "") == vote.link) {
        return failed_precondition_error("this link has already been used");
      }
      const std::string d = base::string_or(o, "decision", "");
      approvals += d == "approve" ? 1 : 0;
      rejections += d == "reject" ? 1 : 0;
    }
  }
  const int64_t quorum = std::max<int64_t>(1, base::int_or(*request, "quorum", 1));
  const json::value* any = request->if_contains("reject_on_any");
  const bool reject_on_any = any == nullptr || !any->is_bool() || any->get_bool();
  std::string after = "pending";
  if (approvals >= quorum) {
    after = "approved";
  } else if (rejections > 0 && (reject_on_any || rejections >= quorum)) {
    after = "rejected";
  }
  Decision d;
  Emitter em(state, irs, ctx, d);
  json::object data{{"approval", vote.approval},
                    {"by", vote.by},
                    {"role", vote.role},
                    {"decision", vote.decision},
                    {"comment", vote.comment},
                    {"via", vote.via},
                    {"status", after}};
  if (!vote.link.empty()) data["link"] = vote.link;
  if (ref->index >= 0) data["index"] = ref->index;
  em.emit("approval.decided", state.ir->nodes[static_cast<std::size_t>(ref->node)].id,
          std::move(data));
  if (after != "pending") settle_gate(em, ref->node, ref->index);
  advance(em);
  return d;
}

}  // namespace venture::engine
