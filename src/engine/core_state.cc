// The parts of the pure core that read a whole state: patches, in-flight work, timers, the
// expression context, and the snapshot encoding.
#include <algorithm>

#include "engine/engine.h"

namespace venture::engine {
namespace {

constexpr std::string_view kPhaseNames[] = {"idle", "in_flight", "backoff", "timer"};

json::value OptTimeJson(const std::optional<Time>& t) {
  return t ? json::value(FormatTime(*t)) : json::value();
}

Result<std::optional<Time>> OptTimeFrom(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<Time>();
  if (!v->is_string()) return DataLoss("snapshot: " + std::string(key) + " is not a time");
  VENTURE_ASSIGN_OR_RETURN(Time t, ParseTime(v->get_string()));
  return std::optional<Time>(t);
}

template <class E, std::size_t N>
Result<E> EnumFrom(const json::object& o, std::string_view key,
                   const std::string_view (&names)[N]) {
  const json::string* s = base::FindString(o, key);
  if (s == nullptr) return DataLoss("snapshot: missing " + std::string(key));
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == std::string_view(*s)) return static_cast<E>(i);
  }
  return DataLoss("snapshot: unknown " + std::string(key) + " '" + std::string(*s) + "'");
}

constexpr std::string_view kNodeNames[] = {"pending", "ready",   "running", "waiting",
                                           "succeeded", "failed", "skipped", "cancelled"};
constexpr std::string_view kRunNames[] = {"queued",    "running", "paused",   "waiting",
                                          "succeeded", "failed",  "cancelled"};

json::value SlotToJson(const Slot& s) {
  return json::object{{"status", NodeStatusName(s.status)},
                      {"phase", kPhaseNames[static_cast<int>(s.phase)]},
                      {"attempt", s.attempt},
                      {"due", OptTimeJson(s.due)},
                      {"deadline", OptTimeJson(s.deadline)},
                      {"output", s.output},
                      {"error", s.error}};
}

Result<Slot> SlotFromJson(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return DataLoss("snapshot: slot is not an object");
  Slot s;
  VENTURE_ASSIGN_OR_RETURN(s.status, EnumFrom<NodeStatus>(*o, "status", kNodeNames));
  VENTURE_ASSIGN_OR_RETURN(s.phase, EnumFrom<Phase>(*o, "phase", kPhaseNames));
  s.attempt = static_cast<int>(base::IntOr(*o, "attempt", 0));
  VENTURE_ASSIGN_OR_RETURN(s.due, OptTimeFrom(*o, "due"));
  VENTURE_ASSIGN_OR_RETURN(s.deadline, OptTimeFrom(*o, "deadline"));
  if (const json::value* out = o->if_contains("output")) s.output = *out;
  if (const json::value* err = o->if_contains("error")) s.error = *err;
  return s;
}

json::value NodeToJson(const NodeState& n) {
  json::array items;
  for (const Slot& s : n.item_slots) items.push_back(SlotToJson(s));
  return json::object{{"slot", SlotToJson(n.slot)},   {"iteration", n.iteration},
                      {"expanded", n.expanded},       {"items", n.items},
                      {"item_slots", std::move(items)}, {"outcome", n.outcome},
                      {"started", OptTimeJson(n.started)}, {"finished", OptTimeJson(n.finished)}};
}

Result<NodeState> NodeFromJson(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return DataLoss("snapshot: node is not an object");
  NodeState n;
  const json::value* slot = o->if_contains("slot");
  if (slot == nullptr) return DataLoss("snapshot: node without slot");
  VENTURE_ASSIGN_OR_RETURN(n.slot, SlotFromJson(*slot));
  n.iteration = static_cast<int>(base::IntOr(*o, "iteration", 0));
  const json::value* expanded = o->if_contains("expanded");
  n.expanded = expanded && expanded->is_bool() && expanded->get_bool();
  if (const json::array* items = base::FindArray(*o, "items")) n.items = *items;
  if (const json::array* slots = base::FindArray(*o, "item_slots")) {
    for (const json::value& s : *slots) {
      VENTURE_ASSIGN_OR_RETURN(Slot item, SlotFromJson(s));
      n.item_slots.push_back(std::move(item));
    }
  }
  n.outcome = base::StringOr(*o, "outcome", "");
  VENTURE_ASSIGN_OR_RETURN(n.started, OptTimeFrom(*o, "started"));
  VENTURE_ASSIGN_OR_RETURN(n.finished, OptTimeFrom(*o, "finished"));
  return n;
}

// The canonical JSON of one node of a definition, for the immutability check of patches.
std::string NodeJson(const json::value& def, std::string_view id) {
  const json::object* o = def.if_object();
  const json::array* nodes = o ? base::FindArray(*o, "nodes") : nullptr;
  if (nodes == nullptr) return "";
  for (const json::value& n : *nodes) {
    const json::object* no = n.if_object();
    if (no && base::StringOr(*no, "id", "") == id) return base::CanonicalJson(n);
  }
  return "";
}

}  // namespace

json::object ExpressionContext(const RunState& s) {
  json::object nodes;
  for (std::size_t i = 0; i < s.nodes.size(); ++i) {
    const NodeState& n = s.nodes[i];
    json::object entry{{"status", NodeStatusName(n.slot.status)},
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

Result<Decision> DecidePatch(RunState& state, const json::value& ops, const std::string& reason,
                             const DecideContext& ctx, IrSource& irs) {
  if (state.ir == nullptr) return NotFound("run " + state.id + " does not exist");
  if (IsTerminal(state.status)) {
    return FailedPrecondition("run " + state.id + " is " +
                              std::string(RunStatusName(state.status)) + "; it cannot be patched");
  }
  VENTURE_ASSIGN_OR_RETURN(json::value def, workflow::ApplyPatch(state.ir->definition, ops));
  workflow::Problems problems;
  auto ir = workflow::Compile(def, problems);
  if (ir == nullptr) {
    std::string msg = "the patched definition is invalid:";
    for (const auto& p : problems) msg += " " + p.path + ": " + p.message + ";";
    return InvalidArgument(msg);
  }
  if (ir->name != state.ir->name) return InvalidArgument("a patch may not rename the workflow");
  for (std::size_t i = 0; i < state.nodes.size(); ++i) {
    const NodeStatus st = state.nodes[i].slot.status;
    if (st == NodeStatus::kPending || st == NodeStatus::kReady) continue;
    const std::string& id = state.ir->nodes[i].id;
    if (NodeJson(state.ir->definition, id) != NodeJson(ir->definition, id)) {
      return FailedPrecondition("node '" + id + "' is " + std::string(NodeStatusName(st)) +
                                "; started and settled nodes cannot be changed");
    }
  }
  if (ir->version == state.version) return InvalidArgument("the patch changes nothing");
  // Emit through a fresh decide: run.patched, then whatever the new graph makes ready.
  Decision d;
  RunState next = state;
  json::object data{{"version", ir->version}, {"definition", ir->definition},
                    {"ops", ops}, {"reason", reason}};
  VENTURE_RETURN_IF_ERROR(Apply(next, "run.patched", "", data, ctx.now, irs));
  d.events.push_back(EventDraft{"run.patched", "", std::move(data)});
  Decision more = DecideTick(next, ctx, irs);
  for (auto& e : more.events) d.events.push_back(std::move(e));
  d.dispatches = std::move(more.dispatches);
  state = std::move(next);
  return d;
}

std::vector<Dispatch> InFlight(const RunState& s) {
  std::vector<Dispatch> out;
  if (s.ir == nullptr || IsTerminal(s.status)) return out;
  for (std::size_t i = 0; i < s.nodes.size(); ++i) {
    const NodeState& n = s.nodes[i];
    const int node = static_cast<int>(i);
    if (n.slot.phase == Phase::kInFlight && n.item_slots.empty()) {
      if (auto d = BuildDispatch(s, node, -1, n.slot.attempt)) out.push_back(std::move(*d));
    }
    for (std::size_t k = 0; k < n.item_slots.size(); ++k) {
      if (n.item_slots[k].phase == Phase::kInFlight) {
        auto d = BuildDispatch(s, node, static_cast<int>(k), n.item_slots[k].attempt);
        if (d) out.push_back(std::move(*d));
      }
    }
  }
  return out;
}

std::optional<Time> NextDue(const RunState& s) {
  std::optional<Time> best;
  if (IsTerminal(s.status)) return best;
  auto consider = [&](const Slot& sl) {
    std::optional<Time> t;
    if (sl.phase == Phase::kInFlight) t = sl.deadline;
    if ((sl.phase == Phase::kBackoff || sl.phase == Phase::kTimer) && !s.paused) t = sl.due;
    if (t && (!best || *t < *best)) best = t;
  };
  for (const NodeState& n : s.nodes) {
    consider(n.slot);
    for (const Slot& it : n.item_slots) consider(it);
  }
  return best;
}

json::value StateToJson(const RunState& s) {
  json::array nodes;
  for (const NodeState& n : s.nodes) nodes.push_back(NodeToJson(n));
  return json::object{{"id", s.id},
                      {"workflow", s.workflow},
                      {"version", s.version},
                      {"inputs", s.inputs},
                      {"status", RunStatusName(s.status)},
                      {"paused", s.paused},
                      {"started", s.started},
                      {"replay_of", s.replay_of},
                      {"output", s.output},
                      {"error", s.error},
                      {"nodes", std::move(nodes)},
                      {"created", FormatTime(s.created)},
                      {"updated", FormatTime(s.updated)},
                      {"events", s.events},
                      {"last_seq", s.last_seq}};
}

Result<RunState> StateFromJson(const json::value& v, IrSource& irs) {
  const json::object* o = v.if_object();
  if (o == nullptr) return DataLoss("snapshot is not an object");
  RunState s;
  s.id = base::StringOr(*o, "id", "");
  s.workflow = base::StringOr(*o, "workflow", "");
  s.version = base::StringOr(*o, "version", "");
  s.ir = irs.Find(s.workflow, s.version);
  if (s.ir == nullptr) return DataLoss("snapshot names unknown version " + s.version);
  if (const json::value* in = o->if_contains("inputs")) s.inputs = *in;
  VENTURE_ASSIGN_OR_RETURN(s.status, EnumFrom<RunStatus>(*o, "status", kRunNames));
  const json::value* paused = o->if_contains("paused");
  s.paused = paused && paused->is_bool() && paused->get_bool();
  const json::value* started = o->if_contains("started");
  s.started = started && started->is_bool() && started->get_bool();
  s.replay_of = base::StringOr(*o, "replay_of", "");
  if (const json::value* out = o->if_contains("output")) s.output = *out;
  if (const json::value* err = o->if_contains("error")) s.error = *err;
  const json::array* nodes = base::FindArray(*o, "nodes");
  if (nodes == nullptr || nodes->size() != s.ir->nodes.size()) {
    return DataLoss("snapshot nodes do not match version " + s.version);
  }
  for (const json::value& n : *nodes) {
    VENTURE_ASSIGN_OR_RETURN(NodeState ns, NodeFromJson(n));
    s.nodes.push_back(std::move(ns));
  }
  VENTURE_ASSIGN_OR_RETURN(s.created, ParseTime(base::StringOr(*o, "created", "")));
  VENTURE_ASSIGN_OR_RETURN(s.updated, ParseTime(base::StringOr(*o, "updated", "")));
  s.events = base::IntOr(*o, "events", 0);
  s.last_seq = base::IntOr(*o, "last_seq", 0);
  return s;
}

}  // namespace venture::engine
