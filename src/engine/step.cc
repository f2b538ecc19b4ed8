// One engine step: gather triggers (requests, task results, due timers), decide each against its
// run, append everything in one batch (one group commit), then carry out the commands.
#include <algorithm>

#include "engine/engine.h"
#include "engine/internal.h"

namespace venture::engine {

Result<RunState> Engine::FoldRun(const std::string& id) {
  RunState state;
  VENTURE_ASSIGN_OR_RETURN(std::optional<storage::Snapshot> snap, store_.LoadSnapshot(id));
  if (snap.has_value()) {
    auto s = StateFromJson(snap->state, irs_);
    if (s) {
      state = std::move(*s);
    } else {
      base::LogWarn("ignoring an unreadable snapshot", {{"run", id}});
    }
  }
  storage::EventFilter f;
  f.run = id;
  f.after_seq = state.last_seq;
  f.limit = limits::kReadPageMax;
  static const json::object kEmpty;
  while (true) {
    VENTURE_ASSIGN_OR_RETURN(std::vector<storage::Event> events, store_.ReadEvents(f));
    for (const storage::Event& e : events) {
      const json::object* data = e.data.if_object();
      VENTURE_RETURN_IF_ERROR(Apply(state, e.type, e.node, data ? *data : kEmpty, e.time, irs_));
      state.last_seq = e.seq;
    }
    if (events.size() < f.limit) break;
    f.after_seq = events.back().seq;
  }
  if (state.ir == nullptr) return NotFound("run " + id + " does not exist");
  state.id = id;
  return state;
}

RunState* Engine::LoadRun(const std::string& id) {
  auto it = runs_.find(id);
  if (it != runs_.end()) return &it->second;
  auto state = FoldRun(id);
  if (!state) {
    if (state.error().code != Code::kNotFound) {
      base::LogError("cannot load run", {{"run", id}, {"error", state.error().ToString()}});
    }
    return nullptr;
  }
  if (IsTerminal(state->status)) return nullptr;
  snapshot_events_[id] = state->events;
  return &runs_.emplace(id, std::move(*state)).first->second;
}

void Engine::Record(RunState& run, Decision d, StepState& st) {
  if (d.events.empty() && d.dispatches.empty()) return;
  st.touched_runs.insert(run.id);
  for (EventDraft& e : d.events) {
    if (!e.node.empty()) st.touched_nodes.emplace(run.id, e.node);
    storage::Event ev;
    ev.id = base::NewId("evt", clock_, random_);
    ev.type = std::move(e.type);
    ev.time = st.ctx.now;
    ev.run = run.id;
    ev.node = std::move(e.node);
    ev.data = std::move(e.data);
    st.batch.events.push_back(std::move(ev));
  }
  for (Dispatch& dp : d.dispatches) st.dispatches.push_back(std::move(dp));
}

void Engine::HandleStart(Request& r, StepState& st) {
  const std::string& key = r.start.idempotency_key;
  if (!key.empty()) {
    std::string run_id, hash;
    if (auto it = st.keys.find(key); it != st.keys.end()) {
      run_id = it->second.first;
      hash = it->second.second;
    } else if (auto row = store_.GetIdempotency(key)) {
      run_id = row->run;
      hash = row->body_hash;
    }
    if (!run_id.empty()) {
      if (hash != r.start.body_hash) {
        r.reply->Finish(InvalidArgument("Idempotency-Key was already used with another request"));
        return;
      }
      auto row = store_.GetRun(run_id);
      r.reply->start = StartResponse{run_id, row ? row->status : "queued", r.ir->name,
                                     r.ir->version, true, ""};
      r.reply->Finish(Ok());
      return;
    }
  }
  const std::string id = base::NewId("run", clock_, random_);
  RunState& run = runs_[id];
  auto d = DecideSubmit(run, id, r.ir, r.start.inputs, "", {}, st.ctx, irs_);
  if (!d) {
    runs_.erase(id);
    r.reply->Finish(d.error());
    return;
  }
  if (r.register_version) {
    st.batch.workflow_versions.push_back({r.ir->name, r.ir->version, r.ir->definition,
                                          st.ctx.now});
    r.register_version = false;
  }
  if (!key.empty()) {
    st.keys[key] = {id, r.start.body_hash};
    st.batch.idempotency.push_back({key, r.start.body_hash, id});
  }
  Record(run, std::move(*d), st);
  r.reply->start = StartResponse{id, std::string(RunStatusName(run.status)), r.ir->name,
                                 r.ir->version, false, ""};
}

namespace {

// Nodes downstream of `from` (inclusive), which a replay runs again.
std::vector<bool> Downstream(const workflow::Ir& ir, int from) {
  std::vector<bool> down(ir.nodes.size(), false);
  std::vector<int> stack{from};
  while (!stack.empty()) {
    const int n = stack.back();
    stack.pop_back();
    if (down[static_cast<std::size_t>(n)]) continue;
    down[static_cast<std::size_t>(n)] = true;
    for (int d : ir.dependents[static_cast<std::size_t>(n)]) stack.push_back(d);
  }
  return down;
}

}  // namespace

void Engine::HandleReplay(Request& r, StepState& st) {
  auto source = FoldRun(r.run);
  if (!source) {
    r.reply->Finish(source.error());
    return;
  }
  const workflow::Ir& ir = *source->ir;
  const int from = ir.IndexOf(r.from_node);
  if (from < 0) {
    std::vector<std::string> ids;
    for (const auto& n : ir.nodes) ids.push_back(n.id);
    const std::string near = workflow::ClosestMatch(r.from_node, ids);
    r.reply->Finish(InvalidArgument("run " + r.run + " has no node '" + r.from_node + "'" +
                                    (near.empty() ? "" : "; did you mean '" + near + "'?")));
    return;
  }
  const std::vector<bool> down = Downstream(ir, from);
  json::object seeded;
  for (std::size_t i = 0; i < ir.nodes.size(); ++i) {
    if (!down[i] && source->nodes[i].slot.status == NodeStatus::kSucceeded) {
      seeded[ir.nodes[i].id] = source->nodes[i].slot.output;
    }
  }
  const std::string id = base::NewId("run", clock_, random_);
  RunState& run = runs_[id];
  auto d = DecideSubmit(run, id, source->ir, source->inputs, r.run, seeded, st.ctx, irs_);
  if (!d) {
    runs_.erase(id);
    r.reply->Finish(d.error());
    return;
  }
  Record(run, std::move(*d), st);
  r.reply->start = StartResponse{id, std::string(RunStatusName(run.status)), ir.name,
                                 ir.version, false, r.run};
}

void Engine::HandleRequest(Request& r, StepState& st) {
  using Kind = Request::Kind;
  if (r.kind == Kind::kStart) {
    HandleStart(r, st);
    return;
  }
  if (r.kind == Kind::kReplay) {
    HandleReplay(r, st);
    return;
  }
  if (r.kind == Kind::kFreeze || r.kind == Kind::kUnfreeze) {
    const bool freeze = r.kind == Kind::kFreeze;
    storage::Event ev;
    ev.id = base::NewId("evt", clock_, random_);
    ev.type = freeze ? "control.frozen" : "control.unfrozen";
    ev.time = st.ctx.now;
    ev.data = freeze ? json::object{{"reason", r.reason}} : json::object{};
    st.batch.events.push_back(std::move(ev));
    st.batch.settings.emplace_back("frozen", freeze ? "1" : "0");
    st.ctx.frozen = freeze;
    st.freeze_changed = true;
    return;
  }
  // Commands against one run: load it from the store if it is not active.
  RunState* run = LoadRun(r.run);
  if (run == nullptr) {
    auto row = store_.GetRun(r.run);
    r.reply->Finish(row ? FailedPrecondition("run " + r.run + " is already " + row->status)
                        : Status(NotFound("run " + r.run + " does not exist")));
    return;
  }
  if (r.kind == Kind::kCommand) {
    auto d = DecideCommand(*run, r.command, r.reason, st.ctx, irs_);
    if (!d) {
      r.reply->Finish(d.error());
      return;
    }
    Record(*run, std::move(*d), st);
  } else if (r.kind == Kind::kPatch) {
    auto d = DecidePatch(*run, r.ops, r.reason, st.ctx, irs_);
    if (!d) {
      r.reply->Finish(d.error());
      return;
    }
    irs_.Put(run->ir);
    st.batch.workflow_versions.push_back({run->ir->name, run->ir->version, run->ir->definition,
                                          st.ctx.now});
    r.reply->version = run->version;
    Record(*run, std::move(*d), st);
  }
}

void Engine::HandleResult(const TaskResult& result, StepState& st) {
  RunState* run = LoadRun(result.run);
  if (run == nullptr) return;  // unknown or finished: a late result
  Record(*run, DecideResult(*run, result, st.ctx, irs_), st);
}

void Engine::AddRows(StepState& st) {
  for (const std::string& id : st.touched_runs) {
    auto it = runs_.find(id);
    if (it == runs_.end()) continue;
    const RunState& s = it->second;
    storage::RunRow row;
    row.id = s.id;
    row.workflow = s.workflow;
    row.version = s.version;
    row.status = std::string(RunStatusName(s.status));
    row.created = s.created;
    row.updated = s.updated;
    row.inputs = s.inputs;
    row.output = s.output;
    row.error = s.error;
    row.replay_of = s.replay_of;
    st.batch.runs.push_back(std::move(row));
  }
  for (const auto& [run_id, node_id] : st.touched_nodes) {
    auto it = runs_.find(run_id);
    if (it == runs_.end()) continue;
    const RunState& s = it->second;
    const int idx = s.ir->IndexOf(node_id);
    if (idx < 0) continue;
    const NodeState& n = s.nodes[static_cast<std::size_t>(idx)];
    storage::NodeRow row;
    row.run = run_id;
    row.node = node_id;
    row.status = std::string(NodeStatusName(n.slot.status));
    row.outcome = n.outcome;
    row.attempts = n.slot.attempt;
    for (const Slot& item : n.item_slots) row.attempts += item.attempt;
    row.output = n.slot.output;
    row.error = n.slot.error;
    row.started = n.started;
    row.finished = n.finished;
    st.batch.nodes.push_back(std::move(row));
  }
  for (auto& snap : pending_snapshots_) st.batch.snapshots.push_back(std::move(snap));
  pending_snapshots_.clear();
}

std::size_t Engine::Step() {
  StepState st;
  st.ctx.now = clock_.Now();
  st.ctx.random = &random_;
  std::vector<std::unique_ptr<Request>> requests;
  {
    std::lock_guard lock(mu_);
    st.ctx.frozen = frozen_;
    results_ready_ = false;
    while (!inbox_.empty() && requests.size() < options_.step_triggers_max) {
      requests.push_back(std::move(inbox_.front()));
      inbox_.pop_front();
    }
  }
  st.frozen_before = st.ctx.frozen;
  for (auto& r : requests) {
    HandleRequest(*r, st);
    bool finished = false;
    {
      std::lock_guard lock(r->reply->mu);
      finished = r->reply->done;
    }
    if (!finished) st.done.push_back(std::move(r));
  }
  st.triggers += requests.size();
  auto results = bus_.Pull(kResultsQueue, options_.step_triggers_max, options_.result_lease);
  if (results) {
    for (bus::Delivery& d : *results) {
      auto r = DecodeResult(d.payload);
      if (r) {
        HandleResult(*r, st);
      } else {
        base::LogWarn("dropping an undecodable task result", {{"error", r.error().ToString()}});
      }
      st.deliveries.push_back(std::move(d));
    }
    st.triggers += results->size();
  }
  std::set<std::string> due;
  while (!timers_.empty() && timers_.top().first <= st.ctx.now) {
    due.insert(timers_.top().second);
    timers_.pop();
  }
  if (st.freeze_changed && !st.ctx.frozen) {
    for (const auto& [id, run] : runs_) due.insert(id);  // unfreeze: dispatch what is ready
  }
  for (const std::string& id : due) {
    RunState* run = LoadRun(id);
    if (run == nullptr) {
      continue;
    }
    Decision d = DecideTick(*run, st.ctx, irs_);
    if (d.events.empty() && d.dispatches.empty()) {
      // Nothing fired (a recovered or reloaded run, a stale entry): keep its next timer armed,
      // since Commit re-arms only the runs a step touched.
      if (auto next = NextDue(*run); next && *next > st.ctx.now) {
        timers_.emplace(*next, id);
      }
      continue;
    }
    Record(*run, std::move(d), st);
  }
  st.triggers += due.size();
  Commit(st);
  return st.triggers;
}

void Engine::Commit(StepState& st) {
  const bool write = !st.batch.events.empty() || !pending_snapshots_.empty();
  Result<storage::AppendResult> appended = storage::AppendResult{};
  if (write) {
    AddRows(st);
    appended = store_.Append(std::move(st.batch));
  }
  if (!appended) {
    // Nothing was written: forget the decisions. The touched runs reload from the store when next
    // needed; results are redelivered; requests fail back to their callers.
    base::LogWarn("append failed; the step is retried", {{"error", appended.error().ToString()}});
    const Time retry = st.ctx.now + Millis(50);
    for (const std::string& id : st.touched_runs) {
      runs_.erase(id);
      timers_.emplace(retry, id);
    }
    for (const bus::Delivery& d : st.deliveries) (void)bus_.Nack(d, Millis(50));
    for (auto& r : st.done) r->reply->Finish(appended.error());
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (st.freeze_changed) frozen_ = st.ctx.frozen;
    stats_.steps += 1;
    stats_.appends += write ? 1 : 0;
    stats_.events += static_cast<int64_t>(appended->events.size());
  }
  for (const storage::Event& e : appended->events) {
    if (!e.run.empty()) {
      if (auto it = runs_.find(e.run); it != runs_.end()) it->second.last_seq = e.seq;
    }
  }
  for (const Dispatch& d : st.dispatches) {
    Status s = bus_.Enqueue(TaskQueue(d.type), AttemptKey(d), EncodeTask(d));
    if (!s) {
      // The attempt's deadline fires and retries it; the history stays consistent.
      base::LogWarn("cannot dispatch a task", {{"run", d.run}, {"node", d.node},
                                              {"error", s.error().ToString()}});
    }
  }
  for (const bus::Delivery& d : st.deliveries) (void)bus_.Ack(d);
  for (const storage::Event& e : appended->events) {
    (void)bus_.Publish(e.type, storage::EventToJson(e));
  }
  for (auto& r : st.done) r->reply->Finish(Ok());
  for (const std::string& id : st.touched_runs) {
    auto it = runs_.find(id);
    if (it == runs_.end()) continue;
    RunState& run = it->second;
    if (IsTerminal(run.status)) {
      runs_.erase(it);
      snapshot_events_.erase(id);
      continue;
    }
    if (auto due = NextDue(run); due && (*due > st.ctx.now || !st.ctx.frozen)) {
      timers_.emplace(std::max(*due, st.ctx.now), id);
    }
    int64_t& at = snapshot_events_[id];
    if (run.events - at >= static_cast<int64_t>(options_.snapshot_every_events)) {
      pending_snapshots_.push_back({id, run.last_seq, StateToJson(run)});
      at = run.events;
    }
  }
  std::lock_guard lock(mu_);
  stats_.active_runs = static_cast<int64_t>(runs_.size());
}

// ---- task protocol ---------------------------------------------------------------------------

json::value EncodeTask(const Dispatch& d) {
  json::object o{{"run", d.run},         {"node", d.node},         {"type", d.type},
                 {"index", d.index},     {"attempt", d.attempt},   {"iteration", d.iteration},
                 {"config", d.config},   {"key", d.idempotency_key}};
  if (!d.context.is_null()) o["context"] = d.context;
  return o;
}

Result<Dispatch> DecodeTask(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return InvalidArgument("task is not an object");
  Dispatch d;
  d.run = base::StringOr(*o, "run", "");
  d.node = base::StringOr(*o, "node", "");
  d.type = base::StringOr(*o, "type", "");
  d.index = static_cast<int>(base::IntOr(*o, "index", -1));
  d.attempt = static_cast<int>(base::IntOr(*o, "attempt", 0));
  d.iteration = static_cast<int>(base::IntOr(*o, "iteration", 0));
  d.idempotency_key = base::StringOr(*o, "key", "");
  if (const json::value* c = o->if_contains("config")) d.config = *c;
  if (const json::value* c = o->if_contains("context")) d.context = *c;
  if (d.run.empty() || d.node.empty() || d.type.empty() || d.attempt < 1) {
    return InvalidArgument("task lacks run, node, type or attempt");
  }
  return d;
}

json::value EncodeResult(const TaskResult& r) {
  json::object o{{"run", r.run},         {"node", r.node},       {"index", r.index},
                 {"iteration", r.iteration}, {"attempt", r.attempt}, {"ok", r.ok}};
  if (r.ok) {
    o["output"] = r.output;
  } else {
    o["error"] = json::object{{"code", r.error_code}, {"message", r.error_message},
                              {"retryable", r.retryable}};
  }
  return o;
}

Result<TaskResult> DecodeResult(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return InvalidArgument("result is not an object");
  TaskResult r;
  r.run = base::StringOr(*o, "run", "");
  r.node = base::StringOr(*o, "node", "");
  r.index = static_cast<int>(base::IntOr(*o, "index", -1));
  r.iteration = static_cast<int>(base::IntOr(*o, "iteration", 0));
  r.attempt = static_cast<int>(base::IntOr(*o, "attempt", 0));
  const json::value* ok = o->if_contains("ok");
  if (r.run.empty() || r.node.empty() || r.attempt < 1 || ok == nullptr || !ok->is_bool()) {
    return InvalidArgument("result lacks run, node, attempt or ok");
  }
  r.ok = ok->get_bool();
  if (r.ok) {
    if (const json::value* out = o->if_contains("output")) r.output = *out;
    return r;
  }
  const json::object* err = base::FindObject(*o, "error");
  if (err == nullptr) return InvalidArgument("failed result without error");
  r.error_code = base::StringOr(*err, "code", "error");
  r.error_message = base::StringOr(*err, "message", "");
  const json::value* retry = err->if_contains("retryable");
  r.retryable = retry == nullptr || !retry->is_bool() || retry->get_bool();
  return r;
}

}  // namespace venture::engine
