// The parts of the pure core that read a whole state: patches, in-flight work, timers, the
// expression context, and the snapshot encoding.
#include <algorithm>
#include <cctype>

#include "engine/engine.h"

namespace venture::engine {
namespace {

constexpr std::string_view kPhaseNames[] = {"idle", "in_flight", "backoff", "timer", "gate"};

json::value opt_time_json(const std::optional<Time>& t) {
  return t ? json::value(format_time(*t)) : json::value();
}

Result<std::optional<Time>> opt_time_from(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<Time>();
  if (!v->is_string()) return data_loss_error("snapshot: " + std::string(key) + " is not a time");
  VENTURE_ASSIGN_OR_RETURN(Time t, parse_time(v->get_string()));
  return std::optional<Time>(t);
}

template <class E, std::size_t N>
Result<E> enum_from(const json::object& o, std::string_view key,
                    const std::string_view (&names)[N]) {
  const json::string* s = base::find_string(o, key);
  if (s == nullptr) return data_loss_error("snapshot: missing " + std::string(key));
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == std::string_view(*s)) return static_cast<E>(i);
  }
  return data_loss_error("snapshot: unknown " + std::string(key) + " '" + std::string(*s) + "'");
}

constexpr std::string_view kNodeNames[] = {"pending",   "ready",  "running", "waiting",
                                           "succeeded", "failed", "skipped", "cancelled"};
constexpr std::string_view kRunNames[] = {"queued",    "running", "paused",   "waiting",
                                          "succeeded", "failed",  "cancelled"};

json::value slot_to_json(const Slot& s) {
  json::object o{{"status", node_status_name(s.status)},
                 {"phase", kPhaseNames[static_cast<int>(s.phase)]},
                 {"attempt", s.attempt},
                 {"due", opt_time_json(s.due)},
                 {"deadline", opt_time_json(s.deadline)},
                 {"output", s.output},
                 {"error", s.error}};
  if (!s.gate.is_null()) o["gate"] = s.gate;
  return o;
}

Result<Slot> slot_from_json(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return data_loss_error("snapshot: slot is not an object");
  Slot s;
  VENTURE_ASSIGN_OR_RETURN(s.status, enum_from<NodeStatus>(*o, "status", kNodeNames));
  VENTURE_ASSIGN_OR_RETURN(s.phase, enum_from<Phase>(*o, "phase", kPhaseNames));
  s.attempt = static_cast<int>(base::int_or(*o, "attempt", 0));
  VENTURE_ASSIGN_OR_RETURN(s.due, opt_time_from(*o, "due"));
  VENTURE_ASSIGN_OR_RETURN(s.deadline, opt_time_from(*o, "deadline"));
  if (const json::value* out = o->if_contains("output")) s.output = *out;
  if (const json::value* err = o->if_contains("error")) s.error = *err;
  if (const json::value* gate = o->if_contains("gate")) s.gate = *gate;
  return s;
}

json::value node_to_json(const NodeState& n) {
  json::array items;
  for (const Slot& s : n.item_slots) items.push_back(slot_to_json(s));
  return json::object{{"slot", slot_to_json(n.slot)},
                      {"iteration", n.iteration},
                      {"expanded", n.expanded},
                      {"items", n.items},
                      {"item_slots", std::move(items)},
                      {"outcome", n.outcome},
                      {"started", opt_time_json(n.started)},
                      {"finished", opt_time_json(n.finished)}};
}

Result<NodeState> node_from_json(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return data_loss_error("snapshot: node is not an object");
  NodeState n;
  const json::value* slot = o->if_contains("slot");
  if (slot == nullptr) return data_loss_error("snapshot: node without slot");
  VENTURE_ASSIGN_OR_RETURN(n.slot, slot_from_json(*slot));
  n.iteration = static_cast<int>(base::int_or(*o, "iteration", 0));
  const json::value* expanded = o->if_contains("expanded");
  n.expanded = expanded && expanded->is_bool() && expanded->get_bool();
  if (const json::array* items = base::find_array(*o, "items")) n.items = *items;
  if (const json::array* slots = base::find_array(*o, "item_slots")) {
    for (const json::value& s : *slots) {
      VENTURE_ASSIGN_OR_RETURN(Slot item, slot_from_json(s));
      n.item_slots.push_back(std::move(item));
    }
  }
  n.outcome = base::string_or(*o, "outcome", "");
  VENTURE_ASSIGN_OR_RETURN(n.started, opt_time_from(*o, "started"));
  VENTURE_ASSIGN_OR_RETURN(n.finished, opt_time_from(*o, "finished"));
  return n;
}

// The canonical JSON of one node of a definition, for the immutability check of patches.
std::string node_json(const json::value& def, std::string_view id) {
  const json::object* o = def.if_object();
  const json::array* nodes = o ? base::find_array(*o, "nodes") : nullptr;
  if (nodes == nullptr) return "";
  for (const json::value& n : *nodes) {
    const json::object* no = n.if_object();
    if (no && base::string_or(*no, "id", "") == id) return base::canonical_json(n);
  }
  return "";
}

}  // namespace

json::object expression_context(const RunState& s) {
  json::object nodes;
  for (std::size_t i = 0; i < s.nodes.size(); ++i) {
    const NodeState& n = s.nodes[i];
    json::object entry{{"status", node_status_name(n.slot.status)},
                       {"output", n.slot.output},
                       {"outcome", n.outcome.empty() ? json::value() : json::value(n.outcome)},
                       {"error", n.slot.error}};
    nodes[s.ir->nodes[i].id] = std::move(entry);
  }
  return json::object{
      {"inputs", s.inputs},
      {"nodes", std::move(nodes)},
      {"run", json::object{{"id", s.id}, {"workflow", s.workflow}, {"version", s.version}}}};
}

namespace {

// "/3: path '/nodes/9' does not exist" (workflow::apply_patch) -> {"/ops/3/path", "path …"}.
workflow::Problem ops_problem(const Error& e) {
  const std::string& m = e.message;
  std::size_t digits = 1;
  while (digits < m.size() && std::isdigit(static_cast<unsigned char>(m[digits])) != 0) ++digits;
  if (m.size() < 3 || m[0] != '/' || digits == 1 || m.compare(digits, 2, ": ") != 0) {
    return {"/ops", m};
  }
  std::string path = "/ops" + m.substr(0, digits);
  const std::string message = m.substr(digits + 2);
  std::string member;
  if (message.starts_with("test failed")) {
    member = "/value";
  } else if (message.starts_with("'op'") || message.starts_with("unknown op")) {
    member = "/op";
  } else if (message.find("'value'") != std::string::npos) {
    member = "/value";
  } else if (message.find("'from'") != std::string::npos || message.starts_with("cannot move")) {
    member = "/from";
  } else if (message.starts_with("'path'") || message.starts_with("path ") ||
             message.starts_with("pointer ")) {
    member = "/path";
  }
  return {path + member, message};
}

std::string joined(std::string head, const workflow::Problems& problems) {
  std::size_t shown = 0;
  for (const auto& p : problems) {
    if (++shown > 5) {
      head += " …";
      break;
    }
    head += " " + p.path + ": " + p.message + ";";
  }
  return head;
}

// Applies `ir` to the state: run.patched (carrying the patch id when there is one), then whatever
// the new graph makes ready.
Result<Decision> emit_patched(RunState& state, std::shared_ptr<const workflow::Ir> ir,
                              const json::value& ops, const std::string& reason,
                              const std::string& patch_id, const DecideContext& ctx, IrSource& irs,
                              std::vector<EventDraft> before) {
  Decision d;
  d.events = std::move(before);
  RunState next = state;
  for (const EventDraft& e : d.events) {
    VENTURE_RETURN_IF_ERROR(apply(next, e.type, e.node, e.data, ctx.now, irs));
  }
  json::object data{
      {"version", ir->version}, {"definition", ir->definition}, {"ops", ops}, {"reason", reason}};
  if (!patch_id.empty()) data["patch"] = patch_id;
  VENTURE_RETURN_IF_ERROR(apply(next, "run.patched", "", data, ctx.now, irs));
  d.events.push_back(EventDraft{"run.patched", "", std::move(data)});
  Decision more = decide_tick(next, ctx, irs);
  for (auto& e : more.events) d.events.push_back(std::move(e));
  d.dispatches = std::move(more.dispatches);
  state = std::move(next);
  return d;
}

}  // namespace

Result<std::shared_ptr<const workflow::Ir>> check_patch(const RunState& state,
                                                        const json::value& ops,
                                                        workflow::Problems& problems) {
  if (state.ir == nullptr) return not_found_error("run " + state.id + " does not exist");
  if (is_terminal(state.status)) {
    return failed_precondition_error("run " + state.id + " is " +
                                     std::string(run_status_name(state.status)) +
                                     "; it cannot be patched");
  }
  auto def = workflow::apply_patch(state.ir->definition, ops);
  if (!def) {
    problems.push_back(ops_problem(def.error()));
    return Error(def.error().code == Code::kFailedPrecondition ? Code::kFailedPrecondition
                                                               : Code::kInvalidArgument,
                 "the patch does not apply: " + def.error().message);
  }
  const std::size_t before = problems.size();
  auto ir = workflow::compile(*def, problems);
  if (ir == nullptr) {
    const workflow::Problems found(problems.begin() + static_cast<std::ptrdiff_t>(before),
                                   problems.end());
    return invalid_argument_error(joined("the patched definition is invalid:", found));
  }
  if (ir->name != state.ir->name) {
    problems.push_back({"/name", "a patch may not rename the workflow"});
    return invalid_argument_error("a patch may not rename the workflow");
  }
  workflow::Problems touched;
  for (std::size_t i = 0; i < state.nodes.size(); ++i) {
    const NodeStatus st = state.nodes[i].slot.status;
    if (st == NodeStatus::kPending || st == NodeStatus::kReady) continue;
    const std::string& id = state.ir->nodes[i].id;
    if (node_json(state.ir->definition, id) == node_json(ir->definition, id)) continue;
    const int at = ir->index_of(id);
    touched.push_back({"/nodes/" + std::to_string(at >= 0 ? at : static_cast<int>(i)),
                       "node '" + id + "' is " + std::string(node_status_name(st)) +
                           "; started and settled nodes cannot be changed"});
  }
  if (!touched.empty()) {
    problems.insert(problems.end(), touched.begin(), touched.end());
    return failed_precondition_error(
        joined("the patch changes started or settled nodes:", touched));
  }
  if (ir->version == state.version) {
    problems.push_back({"/ops", "the patch changes nothing"});
    return invalid_argument_error("the patch changes nothing");
  }
  return ir;
}

Result<Decision> decide_patch(RunState& state, const json::value& ops, const std::string& reason,
                              const DecideContext& ctx, IrSource& irs) {
  workflow::Problems problems;
  VENTURE_ASSIGN_OR_RETURN(auto ir, check_patch(state, ops, problems));
  return emit_patched(state, std::move(ir), ops, reason, "", ctx, irs, {});
}

Result<Decision> decide_propose_patch(RunState& state, storage::PatchRow& patch, bool review,
                                      const DecideContext& ctx, IrSource& irs,
                                      workflow::Problems& problems) {
  VENTURE_ASSIGN_OR_RETURN(auto ir, check_patch(state, patch.ops, problems));
  patch.run = state.id;
  patch.created = ctx.now;
  patch.updated = ctx.now;
  patch.error = nullptr;
  json::object proposed{{"patch", patch.id},      {"ops", patch.ops},
                        {"reason", patch.reason}, {"by", patch.proposed_by},
                        {"review", review},       {"base_version", state.version}};
  if (review) {
    Decision d;
    VENTURE_RETURN_IF_ERROR(apply(state, "patch.proposed", "", proposed, ctx.now, irs));
    d.events.push_back(EventDraft{"patch.proposed", "", std::move(proposed)});
    patch.status = std::string(kPatchPending);
    patch.version.clear();
    return d;
  }
  std::vector<EventDraft> before;
  before.push_back(EventDraft{"patch.proposed", "", std::move(proposed)});
  before.push_back(EventDraft{"patch.applied", "",
                              json::object{{"patch", patch.id},
                                           {"version", ir->version},
                                           {"by", patch.proposed_by},
                                           {"reason", ""}}});
  VENTURE_ASSIGN_OR_RETURN(Decision d, emit_patched(state, ir, patch.ops, patch.reason, patch.id,
                                                    ctx, irs, std::move(before)));
  patch.status = std::string(kPatchApplied);
  patch.decided_by = patch.proposed_by;
  patch.version = ir->version;
  return d;
}

Result<Decision> decide_patch_review(RunState& state, storage::PatchRow& patch, bool approve,
                                     const std::string& by, const std::string& reason,
                                     const DecideContext& ctx, IrSource& irs,
                                     workflow::Problems& problems) {
  if (patch.status != kPatchPending) {
    return failed_precondition_error("patch " + patch.id + " is already " + patch.status);
  }
  if (patch.run != state.id || state.ir == nullptr) {
    return failed_precondition_error("patch " + patch.id + " does not belong to run " + state.id);
  }
  if (is_terminal(state.status)) {
    return failed_precondition_error("run " + state.id + " is " +
                                     std::string(run_status_name(state.status)) +
                                     "; its patches can no longer be decided");
  }
  Decision d;
  if (!approve) {
    json::object data{{"patch", patch.id}, {"by", by}, {"reason", reason}};
    VENTURE_RETURN_IF_ERROR(apply(state, "patch.rejected", "", data, ctx.now, irs));
    d.events.push_back(EventDraft{"patch.rejected", "", std::move(data)});
    patch.status = std::string(kPatchRejected);
  } else {
    VENTURE_ASSIGN_OR_RETURN(auto ir, check_patch(state, patch.ops, problems));
    std::vector<EventDraft> before;
    before.push_back(EventDraft{
        "patch.applied", "",
        json::object{
            {"patch", patch.id}, {"version", ir->version}, {"by", by}, {"reason", reason}}});
    VENTURE_ASSIGN_OR_RETURN(
        d, emit_patched(state, ir, patch.ops, patch.reason, patch.id, ctx, irs, std::move(before)));
    patch.status = std::string(kPatchApplied);
    patch.version = ir->version;
  }
  patch.decided_by = by;
  patch.decision_reason = reason;
  patch.updated = ctx.now;
  patch.error = nullptr;
  return d;
}

std::vector<Dispatch> in_flight(const RunState& s) {
  std::vector<Dispatch> out;
  if (s.ir == nullptr || is_terminal(s.status)) return out;
  for (std::size_t i = 0; i < s.nodes.size(); ++i) {
    const NodeState& n = s.nodes[i];
    const int node = static_cast<int>(i);
    if (n.slot.phase == Phase::kInFlight && n.item_slots.empty()) {
      if (auto d = build_dispatch(s, node, -1, n.slot.attempt)) out.push_back(std::move(*d));
    }
    for (std::size_t k = 0; k < n.item_slots.size(); ++k) {
      if (n.item_slots[k].phase == Phase::kInFlight) {
        auto d = build_dispatch(s, node, static_cast<int>(k), n.item_slots[k].attempt);
        if (d) out.push_back(std::move(*d));
      }
    }
  }
  return out;
}

std::optional<Time> next_due(const RunState& s) {
  std::optional<Time> best;
  if (is_terminal(s.status)) return best;
  auto consider = [&](const Slot& sl) {
    std::optional<Time> t;
    if (sl.phase == Phase::kInFlight) t = sl.deadline;
    if ((sl.phase == Phase::kBackoff || sl.phase == Phase::kTimer) && !s.paused) t = sl.due;
    if (sl.phase == Phase::kGate) t = sl.due;  // an approval's timeout runs while paused too
    if (t && (!best || *t < *best)) best = t;
  };
  for (const NodeState& n : s.nodes) {
    consider(n.slot);
    for (const Slot& it : n.item_slots) consider(it);
  }
  return best;
}

json::value state_to_json(const RunState& s) {
  json::array nodes;
  for (const NodeState& n : s.nodes) nodes.push_back(node_to_json(n));
  return json::object{{"id", s.id},
                      {"workflow", s.workflow},
                      {"version", s.version},
                      {"inputs", s.inputs},
                      {"status", run_status_name(s.status)},
                      {"paused", s.paused},
                      {"started", s.started},
                      {"replay_of", s.replay_of},
                      {"started_by", s.started_by},
                      {"output", s.output},
                      {"error", s.error},
                      {"nodes", std::move(nodes)},
                      {"created", format_time(s.created)},
                      {"updated", format_time(s.updated)},
                      {"events", s.events},
                      {"last_seq", s.last_seq}};
}

Result<RunState> state_from_json(const json::value& v, IrSource& irs) {
  const json::object* o = v.if_object();
  if (o == nullptr) return data_loss_error("snapshot is not an object");
  RunState s;
  s.id = base::string_or(*o, "id", "");
  s.workflow = base::string_or(*o, "workflow", "");
  s.version = base::string_or(*o, "version", "");
  s.ir = irs.find(s.workflow, s.version);
  if (s.ir == nullptr) return data_loss_error("snapshot names unknown version " + s.version);
  if (const json::value* in = o->if_contains("inputs")) s.inputs = *in;
  VENTURE_ASSIGN_OR_RETURN(s.status, enum_from<RunStatus>(*o, "status", kRunNames));
  const json::value* paused = o->if_contains("paused");
  s.paused = paused && paused->is_bool() && paused->get_bool();
  const json::value* started = o->if_contains("started");
  s.started = started && started->is_bool() && started->get_bool();
  s.replay_of = base::string_or(*o, "replay_of", "");
  s.started_by = base::string_or(*o, "started_by", "");
  if (const json::value* out = o->if_contains("output")) s.output = *out;
  if (const json::value* err = o->if_contains("error")) s.error = *err;
  const json::array* nodes = base::find_array(*o, "nodes");
  if (nodes == nullptr || nodes->size() != s.ir->nodes.size()) {
    return data_loss_error("snapshot nodes do not match version " + s.version);
  }
  for (const json::value& n : *nodes) {
    VENTURE_ASSIGN_OR_RETURN(NodeState ns, node_from_json(n));
    s.nodes.push_back(std::move(ns));
  }
  VENTURE_ASSIGN_OR_RETURN(s.created, parse_time(base::string_or(*o, "created", "")));
  VENTURE_ASSIGN_OR_RETURN(s.updated, parse_time(base::string_or(*o, "updated", "")));
  s.events = base::int_or(*o, "events", 0);
  s.last_seq = base::int_or(*o, "last_seq", 0);
  return s;
}

}  // namespace venture::engine
