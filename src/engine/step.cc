// One engine step: gather triggers (requests, task results, due timers), decide each against its
// run, append everything in one batch (one group commit), then carry out the commands.
#include <algorithm>
#include <utility>

#include "engine/engine.h"
#include "engine/internal.h"

namespace venture::engine {

namespace {
// How soon a run whose state could not be read (store unavailable) is tried again.
constexpr Millis kReloadRetry{1000};
// How often dispatches the bus refused are enqueued again.
constexpr Millis kRedispatchEvery{500};

// Whether a step's commands may be carried out after the next step is decided (see
// Engine::commit). The simulation (threaded = false) and cluster mode finish each step at once.
bool pipelined(const Options& o) { return o.threaded && !o.cluster.enabled; }
}  // namespace

void Engine::redispatch(Time now) {
  if (undispatched_.empty() || now < next_redispatch_) return;
  next_redispatch_ = now + kRedispatchEvery;
  std::vector<Dispatch> pending;
  pending.swap(undispatched_);
  for (Dispatch& d : pending) {
    // A run that finished or moved to another engine meanwhile needs nothing from us (a new
    // owner re-dispatches its in-flight attempts on recovery).
    if (!runs_.contains(d.run)) continue;
    if (!dispatch(d)) undispatched_.push_back(std::move(d));
  }
}

Result<RunState> Engine::fold_run(const std::string& id) {
  RunState state;
  VENTURE_ASSIGN_OR_RETURN(std::optional<storage::Snapshot> snap, store_.load_snapshot(id));
  if (snap.has_value()) {
    auto s = state_from_json(snap->state, irs_);
    if (s) {
      state = std::move(*s);
    } else {
      base::log_warn("ignoring an unreadable snapshot", {{"run", id}});
    }
  }
  storage::EventFilter f;
  f.run = id;
  f.after_seq = state.last_seq;
  f.limit = limits::kReadPageMax;
  static const json::object kEmpty;
  while (true) {
    VENTURE_ASSIGN_OR_RETURN(std::vector<storage::Event> events, store_.read_events(f));
    for (const storage::Event& e : events) {
      const json::object* data = e.data.if_object();
      VENTURE_RETURN_IF_ERROR(apply(state, e.type, e.node, data ? *data : kEmpty, e.time, irs_));
      state.last_seq = e.seq;
    }
    if (events.size() < f.limit) break;
    f.after_seq = events.back().seq;
  }
  if (state.ir == nullptr) return not_found_error("run " + id + " does not exist");
  state.id = id;
  return state;
}

RunState* Engine::load_run(const std::string& id, bool* unavailable) {
  auto it = runs_.find(id);
  if (it != runs_.end()) return &it->second;
  if (!owns_run(id)) return nullptr;  // cluster mode: another engine drives it
  auto state = fold_run(id);
  if (!state) {
    if (state.error().code != Code::kNotFound) {
      base::log_error("cannot load run", {{"run", id}, {"error", state.error().to_string()}});
      if (unavailable != nullptr) *unavailable = true;
    }
    return nullptr;
  }
  if (is_terminal(state->status)) return nullptr;
  snapshot_events_[id] = state->events;
  return &runs_.emplace(id, std::move(*state)).first->second;
}

void Engine::record(RunState& run, Decision d, StepState& st) {
  if (d.events.empty() && d.dispatches.empty()) return;
  st.touched_runs.insert(run.id);
  for (EventDraft& e : d.events) {
    if (!e.node.empty()) st.touched_nodes.emplace(run.id, e.node);
    if (e.type == "approval.requested" && options_.approval_links) {
      e.data["links"] = options_.approval_links(run.id, e.data);
    }
    storage::Event ev;
    ev.id = base::new_id("evt", clock_, random_);
    ev.type = std::move(e.type);
    ev.time = st.ctx.now;
    ev.run = run.id;
    ev.node = std::move(e.node);
    ev.data = std::move(e.data);
    st.batch.events.push_back(std::move(ev));
  }
  for (Dispatch& dp : d.dispatches) st.dispatches.push_back(std::move(dp));
}

void Engine::handle_start(Request& r, StepState& st) {
  if (r.ir == nullptr) {
    // Forwarded by another engine: resolve and validate here, against the same store.
    auto prepared = prepare_start(r.start, r.reply->problems);
    if (!prepared) {
      r.reply->finish(prepared.error());
      return;
    }
    r.ir = prepared->ir;
    r.register_version = prepared->register_version;
    r.start = std::move(prepared->start);
  }
  const std::string& key = r.start.idempotency_key;
  if (!key.empty()) {
    std::string run_id, hash;
    // A key of this step or of a step still committing is not in the store yet: the answer
    // waits for this step's commit (after theirs), so it never names a run that is not durable.
    bool pending = false;
    const auto find_pending = [&](const StepState& s) {
      if (auto it = s.keys.find(key); it != s.keys.end()) {
        run_id = it->second.first;
        hash = it->second.second;
        pending = true;
      }
    };
    find_pending(st);
    for (const auto& f : inflight_) {
      if (!pending) find_pending(f->st);
    }
    if (!pending) {
      if (auto row = store_.get_idempotency(key)) {
        run_id = row->run;
        hash = row->body_hash;
      }
    }
    if (!run_id.empty()) {
      if (hash != r.start.body_hash) {
        r.reply->finish(
            invalid_argument_error("Idempotency-Key was already used with another request"));
        return;
      }
      auto row = store_.get_run(run_id);
      r.reply->start =
          StartResponse{run_id, row ? row->status : "queued", r.ir->name, r.ir->version, true, ""};
      if (!pending) r.reply->finish(ok());
      return;
    }
  }
  const std::string id = r.start_id.empty() ? new_run_id() : r.start_id;
  if (!r.start_id.empty() && (runs_.contains(id) || store_.get_run(id))) {
    // A forwarded start delivered again (its first owner died after starting it): the same run.
    auto row = store_.get_run(id);
    r.reply->start =
        StartResponse{id, row ? row->status : "queued", r.ir->name, r.ir->version, true, ""};
    r.reply->finish(ok());
    return;
  }
  RunState& run = runs_[id];
  auto d = decide_submit(run, id, r.ir, r.start.inputs, "", {}, st.ctx, irs_, r.start.by);
  if (!d) {
    runs_.erase(id);
    r.reply->finish(d.error());
    return;
  }
  if (r.register_version) {
    st.batch.workflow_versions.push_back({r.ir->name, r.ir->version, r.ir->definition, st.ctx.now});
    r.register_version = false;
  }
  if (!key.empty()) {
    st.keys[key] = {id, r.start.body_hash};
    st.batch.idempotency.push_back({key, r.start.body_hash, id});
  }
  record(run, std::move(*d), st);
  r.reply->start = StartResponse{
      id, std::string(run_status_name(run.status)), r.ir->name, r.ir->version, false, ""};
}

namespace {

// Nodes downstream of `from` (inclusive), which a replay runs again.
std::vector<bool> downstream(const workflow::Ir& ir, int from) {
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

void Engine::handle_replay(Request& r, StepState& st) {
  auto source = fold_run(r.run);
  if (!source) {
    r.reply->finish(source.error());
    return;
  }
  const workflow::Ir& ir = *source->ir;
  const int from = ir.index_of(r.from_node);
  if (from < 0) {
    std::vector<std::string> ids;
    for (const auto& n : ir.nodes) ids.push_back(n.id);
    const std::string near = workflow::closest_match(r.from_node, ids);
    r.reply->finish(invalid_argument_error("run " + r.run + " has no node '" + r.from_node + "'" +
                                           (near.empty() ? "" : "; did you mean '" + near + "'?")));
    return;
  }
  const std::vector<bool> down = downstream(ir, from);
  json::object seeded, outcomes;
  for (std::size_t i = 0; i < ir.nodes.size(); ++i) {
    if (!down[i] && source->nodes[i].slot.status == NodeStatus::kSucceeded) {
      seeded[ir.nodes[i].id] = source->nodes[i].slot.output;
      if (!source->nodes[i].outcome.empty()) outcomes[ir.nodes[i].id] = source->nodes[i].outcome;
    }
  }
  const std::string id = r.start_id.empty() ? new_run_id() : r.start_id;
  if (!r.start_id.empty() && (runs_.contains(id) || store_.get_run(id))) {
    r.reply->start = StartResponse{id, "queued", ir.name, ir.version, true, r.run};
    r.reply->finish(ok());
    return;
  }
  RunState& run = runs_[id];
  auto d = decide_submit(run, id, source->ir, source->inputs, r.run, seeded, st.ctx, irs_, r.by,
                         outcomes);
  if (!d) {
    runs_.erase(id);
    r.reply->finish(d.error());
    return;
  }
  record(run, std::move(*d), st);
  r.reply->start = StartResponse{
      id, std::string(run_status_name(run.status)), ir.name, ir.version, false, r.run};
}

void Engine::handle_request(Request& r, StepState& st) {
  using Kind = Request::Kind;
  if (r.kind == Kind::kStart) {
    handle_start(r, st);
    return;
  }
  if (r.kind == Kind::kReplay) {
    handle_replay(r, st);
    return;
  }
  if (r.kind == Kind::kFreeze || r.kind == Kind::kUnfreeze) {
    const bool freeze = r.kind == Kind::kFreeze;
    storage::Event ev;
    ev.id = base::new_id("evt", clock_, random_);
    ev.type = freeze ? "control.frozen" : "control.unfrozen";
    ev.time = st.ctx.now;
    ev.data = freeze ? json::object{{"reason", r.reason}} : json::object{};
    st.batch.events.push_back(std::move(ev));
    st.batch.settings.emplace_back("frozen", freeze ? "1" : "0");
    st.ctx.frozen = freeze;
    st.freeze_changed = true;
    return;
  }
  if (r.kind == Kind::kPatchDecision) {
    handle_patch_decision(r, st);
    return;
  }
  if (r.kind == Kind::kApproval) {
    handle_approval(r, st);
    return;
  }
  // Commands against one run: load it from the store if it is not active.
  RunState* run = load_run(r.run);
  if (run == nullptr) {
    auto row = store_.get_run(r.run);
    if (!row && row.error().code != Code::kNotFound) {
      r.reply->finish(row.error());  // the store cannot be read now
      return;
    }
    r.reply->finish(row ? failed_precondition_error("run " + r.run + " is already " + row->status)
                        : Status(not_found_error("run " + r.run + " does not exist")));
    return;
  }
  if (r.kind == Kind::kCommand) {
    auto d = decide_command(*run, r.command, r.reason, st.ctx, irs_);
    if (!d) {
      r.reply->finish(d.error());
      return;
    }
    record(*run, std::move(*d), st);
  } else if (r.kind == Kind::kPatch) {
    handle_patch(r, *run, st);
  }
}

void Engine::handle_patch(Request& r, RunState& run, StepState& st) {
  storage::PatchRow row;
  row.id = base::new_id("pat", clock_, random_);
  row.ops = r.patch.ops;
  row.reason = r.patch.reason;
  row.proposed_by = r.patch.by;
  const std::string version = run.version;
  auto d = decide_propose_patch(run, row, r.patch.review, st.ctx, irs_, r.reply->problems);
  if (!d) {
    r.reply->finish(d.error());
    return;
  }
  if (run.version != version) {
    irs_.put(run.ir);
    st.batch.workflow_versions.push_back(
        {run.ir->name, run.ir->version, run.ir->definition, st.ctx.now});
  }
  r.reply->version = row.version;
  r.reply->patch = PatchResponse{row.id, row.status, row.version};
  st.patches[row.id] = row;
  st.batch.patches.push_back(std::move(row));
  record(run, std::move(*d), st);
}

void Engine::handle_patch_decision(Request& r, StepState& st) {
  storage::PatchRow row;
  if (auto it = st.patches.find(r.patch_id); it != st.patches.end()) {
    row = it->second;
  } else {
    auto stored = store_.get_patch(r.patch_id);
    if (!stored) {
      r.reply->finish(stored.error());
      return;
    }
    row = std::move(*stored);
  }
  if (row.status != kPatchPending) {
    r.reply->finish(failed_precondition_error("patch " + row.id + " is already " + row.status));
    return;
  }
  RunState* run = load_run(row.run);
  if (run == nullptr) {
    auto run_row = store_.get_run(row.run);
    r.reply->finish(failed_precondition_error(
        "run " + row.run + (run_row ? " is already " + run_row->status : " does not exist") +
        "; its patches can no longer be decided"));
    return;
  }
  const std::string version = run->version;
  auto d =
      decide_patch_review(*run, row, r.approve, r.by, r.reason, st.ctx, irs_, r.reply->problems);
  if (!d) {
    if (!r.reply->problems.empty()) {
      // Still pending: the row remembers why the approval failed (no event: nothing changed).
      json::array errors;
      for (const auto& p : r.reply->problems) {
        errors.push_back(json::object{{"path", p.path}, {"message", p.message}});
      }
      row.error = json::object{{"code", "invalid_argument"},
                               {"message", d.error().message},
                               {"errors", std::move(errors)}};
      row.updated = st.ctx.now;
      st.patches[row.id] = row;
      st.batch.patches.push_back(std::move(row));
      r.error_after_commit = d.error();
      return;
    }
    r.reply->finish(d.error());
    return;
  }
  if (run->version != version) {
    irs_.put(run->ir);
    st.batch.workflow_versions.push_back(
        {run->ir->name, run->ir->version, run->ir->definition, st.ctx.now});
  }
  r.reply->version = row.version;
  r.reply->patch = PatchResponse{row.id, row.status, row.version};
  st.patches[row.id] = row;
  st.batch.patches.push_back(std::move(row));
  record(*run, std::move(*d), st);
}

void Engine::handle_approval(Request& r, StepState& st) {
  auto row = store_.get_approval(r.vote.approval);
  if (!row) {
    r.reply->finish(row.error());
    return;
  }
  RunState* run = load_run(row->run);
  if (run == nullptr) {
    // The run has finished: its approvals were settled or closed with it.
    r.reply->finish(
        failed_precondition_error("approval " + row->id + " is already " + row->status));
    return;
  }
  auto d = engine::decide_approval(*run, r.vote, st.ctx, irs_);
  if (!d) {
    r.reply->finish(d.error());
    return;
  }
  if (auto now = find_approval(*run, r.vote.approval)) r.reply->approval = std::move(*now);
  record(*run, std::move(*d), st);
}

void Engine::take_result(bus::Delivery d, StepState& st) {
  auto r = decode_result(d.payload);
  if (!r) {
    base::log_warn("dropping an undecodable task result", {{"error", r.error().to_string()}});
  } else if (!handle_result(*r, st)) {
    st.retry.push_back(std::move(d));  // its run cannot be read now: redelivered after a while
    return;
  }
  st.deliveries.push_back(std::move(d));  // acked after the commit
}

bool Engine::handle_result(const TaskResult& result, StepState& st) {
  bool unavailable = false;
  RunState* run = load_run(result.run, &unavailable);
  if (run == nullptr) return !unavailable;  // unknown or finished: a late result
  record(*run, decide_result(*run, result, st.ctx, irs_), st);
  return true;
}

void Engine::add_rows(StepState& st) {
  for (const std::string& id : st.touched_runs) {
    auto it = runs_.find(id);
    if (it == runs_.end()) continue;
    const RunState& s = it->second;
    storage::RunRow row;
    row.id = s.id;
    row.workflow = s.workflow;
    row.version = s.version;
    row.status = std::string(run_status_name(s.status));
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
    const int idx = s.ir->index_of(node_id);
    if (idx < 0) continue;
    const NodeState& n = s.nodes[static_cast<std::size_t>(idx)];
    storage::NodeRow row;
    row.run = run_id;
    row.node = node_id;
    row.status = std::string(node_status_name(n.slot.status));
    row.outcome = n.outcome;
    row.attempts = n.slot.attempt;
    for (const Slot& item : n.item_slots) row.attempts += item.attempt;
    row.output = n.slot.output;
    row.error = n.slot.error;
    row.started = n.started;
    row.finished = n.finished;
    st.batch.nodes.push_back(std::move(row));
    for (storage::ApprovalRow& a : changed_approvals(s, idx, st.ctx.now)) {
      st.batch.approvals.push_back(std::move(a));
    }
  }
  for (auto& snap : pending_snapshots_) st.batch.snapshots.push_back(std::move(snap));
  pending_snapshots_.clear();
}

std::size_t Engine::step() {
  auto owned = std::make_unique<StepState>();
  StepState& st = *owned;
  st.ctx.now = clock_.now();
  st.ctx.random = &random_;
  std::vector<std::unique_ptr<Request>> requests;
  const std::size_t triggers_max =
      pipelined(options_) ? std::min(options_.step_triggers_max, limits::kPipelinedStepTriggers)
                          : options_.step_triggers_max;
  {
    std::lock_guard lock(mu_);
    st.ctx.frozen = frozen_;
    results_ready_ = false;
    while (!inbox_.empty() && requests.size() < triggers_max) {
      requests.push_back(std::move(inbox_.front()));
      inbox_.pop_front();
    }
  }
  st.frozen_before = st.ctx.frozen;
  bool unfrozen_elsewhere = false;
  if (options_.cluster.enabled) {
    {
      std::lock_guard lock(mu_);
      unfrozen_elsewhere = std::exchange(remote_unfreeze_, false);
    }
    expire_forwarded(st.ctx.now);
    redispatch(st.ctx.now);
    if (st.ctx.now >= next_ownership_tick_) ownership_tick(st.ctx.now);
    pull_cluster_queues(st, requests);
  }
  // A request other than a start may be answered at once from the run's state (an error such as
  // "already succeeded"): decide it against durable state only, so carry out the steps still
  // committing first. Starts and results need not wait: what they decide is chained after those
  // steps' batches and answered after its own commit.
  if (std::any_of(requests.begin(), requests.end(),
                  [](const auto& r) { return r->kind != Request::Kind::kStart; })) {
    finish_commits(0);
  }
  for (auto& r : requests) {
    if (options_.cluster.enabled) {
      using Kind = Request::Kind;
      if ((r->kind == Kind::kStart || r->kind == Kind::kReplay) && r->start_id.empty()) {
        r->start_id = new_run_id();
      }
      if (auto p = target_partition(*r); p && !owned_.contains(*p)) {
        forward(std::move(r), *p, st.ctx.now);
        continue;
      }
    }
    handle_request(*r, st);
    bool finished = false;
    {
      std::lock_guard lock(r->reply->mu);
      finished = r->reply->done;
    }
    if (!finished) st.done.push_back(std::move(r));
  }
  if (!options_.cluster.enabled) redispatch(st.ctx.now);
  st.triggers += requests.size();
  auto results = options_.cluster.enabled
                     ? Result<std::vector<bus::Delivery>>(std::vector<bus::Delivery>{})
                     : bus_.pull(kResultsQueue, triggers_max, options_.result_lease);
  if (results && results->size() == triggers_max) {
    std::lock_guard lock(mu_);
    results_ready_ = true;  // more may be waiting: the loop takes them in the next step
  }
  if (results) {
    for (bus::Delivery& d : *results) take_result(std::move(d), st);
    st.triggers += results->size();
  }
  std::set<std::string> due;
  while (!timers_.empty() && timers_.top().first <= st.ctx.now &&
         due.size() < limits::kStepTimersMax) {
    const auto& [t, id] = timers_.top();
    if (auto it = armed_.find(id); it != armed_.end() && it->second == t) {
      armed_.erase(it);
    }
    due.insert(id);
    timers_.pop();
  }
  if ((st.freeze_changed && !st.ctx.frozen) || unfrozen_elsewhere) {
    for (const auto& [id, run] : runs_) due.insert(id);  // unfreeze: dispatch what is ready
  }
  for (const std::string& id : due) {
    bool unavailable = false;
    RunState* run = load_run(id, &unavailable);
    if (run == nullptr) {
      // The store cannot be read now: look again soon, or its timers are lost until a restart.
      if (unavailable) arm(st.ctx.now + kReloadRetry, id);
      continue;
    }
    Decision d = decide_tick(*run, st.ctx, irs_);
    if (d.events.empty() && d.dispatches.empty()) {
      // Nothing fired (a recovered or reloaded run, a stale entry): keep its next timer armed,
      // since Commit re-arms only the runs a step touched.
      if (auto next = next_due(*run); next && *next > st.ctx.now) {
        arm(*next, id);
      }
      continue;
    }
    record(*run, std::move(d), st);
  }
  st.triggers += due.size();
  const std::size_t triggers = st.triggers;
  commit(std::move(owned));
  return triggers;
}

void Engine::commit(std::unique_ptr<StepState> st) {
  auto f = std::make_unique<Inflight>();
  f->write = !st->batch.events.empty() || !pending_snapshots_.empty() || !st->batch.patches.empty();
  if (f->write) {
    add_rows(*st);
    add_fences(*st);
    f->fences = st->batch.fences;
    st->batch.chain = chain_;
    f->appended = store_.append_async(std::move(st->batch));
  } else {
    std::promise<Result<storage::AppendResult>> nothing;
    nothing.set_value(storage::AppendResult{});
    f->appended = nothing.get_future();
  }
  // A freeze changes what the next step may decide, and the simulation and cluster mode expect
  // a step to be carried out when step() returns: those finish at once. Otherwise the engine
  // decides the next step while this one commits.
  const bool now = st->freeze_changed || !pipelined(options_);
  f->st = std::move(*st);
  inflight_.push_back(std::move(f));
  finish_commits(now ? 0 : 1);
}

void Engine::finish_commits(std::size_t keep) {
  const auto ready = [](const Inflight& f) {
    return f.appended.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  };
  while (!inflight_.empty() && (inflight_.size() > keep || ready(*inflight_.front()))) {
    std::unique_ptr<Inflight> f = std::move(inflight_.front());
    inflight_.pop_front();
    finish_commit(*f, ok());
  }
}

void Engine::fail_step(StepState& st, const Error& error) {
  // Nothing was written: forget the decisions. The touched runs reload from the store when next
  // needed; results are redelivered; requests fail back to their callers.
  const Time retry = st.ctx.now + Millis(50);
  for (const std::string& id : st.touched_runs) {
    runs_.erase(id);
    arm(retry, id);
  }
  for (const bus::Delivery& d : st.deliveries) (void)bus_.nack(d, Millis(50));
  for (auto& r : st.done) r->reply->finish(error);
}

void Engine::finish_commit(Inflight& f, const Status& earlier_failure) {
  StepState& st = f.st;
  Result<storage::AppendResult> appended = f.appended.get();
  if (!earlier_failure) {
    // Decided on top of a step that failed: its batch was refused (chain) or wrote nothing.
    VENTURE_CHECK(!appended || !f.write);
    appended = Result<storage::AppendResult>(earlier_failure.error());
  }
  if (!appended && appended.error().code == Code::kFailedPrecondition && !f.fences.empty()) {
    // Fenced: another engine took one of these partitions (our lease lapsed). Stop driving them.
    for (const storage::Fence& fence : f.fences) lose(fence.partition, "fenced by the store");
  }
  for (const bus::Delivery& d : st.retry) (void)bus_.nack(d, kReloadRetry);
  if (!appended) {
    if (earlier_failure) {
      base::log_warn("append failed; the step is retried",
                     {{"error", appended.error().to_string()}});
    }
    fail_step(st, appended.error());
    if (earlier_failure) {
      // Every later step was decided on top of this one: roll them back as well, then start a new
      // chain (the old one is broken and its every batch has now been seen).
      const Status failed = aborted_error("an earlier commit failed: " + appended.error().message);
      while (!inflight_.empty()) {
        std::unique_ptr<Inflight> later = std::move(inflight_.front());
        inflight_.pop_front();
        finish_commit(*later, failed);
      }
      chain_ = std::make_shared<storage::AppendChain>();
    }
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (st.freeze_changed) frozen_ = st.ctx.frozen;
    stats_.steps += 1;
    stats_.appends += f.write ? 1 : 0;
    stats_.events += static_cast<int64_t>(appended->events.size());
  }
  for (const storage::Event& e : appended->events) {
    if (!e.run.empty()) {
      if (auto it = runs_.find(e.run); it != runs_.end()) it->second.last_seq = e.seq;
    }
  }
  if (st.freeze_changed && options_.cluster.enabled) {
    // Every engine reads the flag at its next ownership tick, if it missed the control event.
    (void)bus_.kv_put("flags", "frozen", st.ctx.frozen ? "1" : "0");
  }
  for (Dispatch& d : st.dispatches) {
    if (Status s = dispatch(d); !s) {
      // Enqueued again shortly (redispatch); the history stays consistent either way.
      base::log_warn("cannot dispatch a task; retrying",
                     {{"run", d.run}, {"node", d.node}, {"error", s.error().to_string()}});
      undispatched_.push_back(std::move(d));
    }
  }
  for (const bus::Delivery& d : st.deliveries) (void)bus_.ack(d);
  for (storage::Event& e : appended->events) {
    // The appended events are ours: move the data into the envelope instead of copying it.
    json::value data = std::move(e.data);
    e.data = nullptr;
    json::object envelope = storage::event_to_json(e);
    envelope["data"] = std::move(data);
    (void)bus_.publish(e.type, std::move(envelope));
  }
  for (auto& r : st.done) {
    r->reply->finish(r->error_after_commit ? Status(*r->error_after_commit) : ok());
  }
  after_commit(st);
}

void Engine::after_commit(StepState& st) {
  for (const std::string& id : st.touched_runs) {
    auto it = runs_.find(id);
    if (it == runs_.end()) continue;
    RunState& run = it->second;
    if (is_terminal(run.status)) {
      runs_.erase(it);
      snapshot_events_.erase(id);
      continue;
    }
    if (auto due = next_due(run); due && (*due > st.ctx.now || !st.ctx.frozen)) {
      arm(std::max(*due, st.ctx.now), id);
    }
    // A snapshot must hold exactly the committed events up to last_seq: not while a later step
    // that changed the run is still committing (it is taken when that step is carried out).
    const bool changed_later = std::any_of(inflight_.begin(), inflight_.end(), [&](const auto& f) {
      return f->st.touched_runs.contains(id);
    });
    int64_t& at = snapshot_events_[id];
    if (!changed_later && run.events - at >= static_cast<int64_t>(options_.snapshot_every_events)) {
      pending_snapshots_.push_back({id, run.last_seq, state_to_json(run)});
      at = run.events;
    }
  }
  std::lock_guard lock(mu_);
  stats_.active_runs = static_cast<int64_t>(runs_.size());
}

// ---- task protocol ---------------------------------------------------------------------------

json::value encode_task(const Dispatch& d) {
  json::object o{{"run", d.run},       {"node", d.node},          {"type", d.type},
                 {"index", d.index},   {"attempt", d.attempt},    {"iteration", d.iteration},
                 {"config", d.config}, {"key", d.idempotency_key}};
  if (!d.context.is_null()) o["context"] = d.context;
  if (!d.reply.empty()) o["reply"] = d.reply;
  return o;
}

Result<Dispatch> decode_task(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return invalid_argument_error("task is not an object");
  Dispatch d;
  d.run = base::string_or(*o, "run", "");
  d.node = base::string_or(*o, "node", "");
  d.type = base::string_or(*o, "type", "");
  d.index = static_cast<int>(base::int_or(*o, "index", -1));
  d.attempt = static_cast<int>(base::int_or(*o, "attempt", 0));
  d.iteration = static_cast<int>(base::int_or(*o, "iteration", 0));
  d.idempotency_key = base::string_or(*o, "key", "");
  d.reply = base::string_or(*o, "reply", "");
  if (!d.reply.empty() && !d.reply.starts_with(kResultsQueue)) {
    return invalid_argument_error("task reply queue must be an engine results queue");
  }
  if (const json::value* c = o->if_contains("config")) d.config = *c;
  if (const json::value* c = o->if_contains("context")) d.context = *c;
  if (d.run.empty() || d.node.empty() || d.type.empty() || d.attempt < 1) {
    return invalid_argument_error("task lacks run, node, type or attempt");
  }
  return d;
}

json::value encode_result(const TaskResult& r) {
  json::object o{{"run", r.run},         {"node", r.node},
                 {"index", r.index},     {"iteration", r.iteration},
                 {"attempt", r.attempt}, {"ok", r.ok}};
  if (r.ok) {
    o["output"] = r.output;
  } else {
    json::object err{
        {"code", r.error_code}, {"message", r.error_message}, {"retryable", r.retryable}};
    if (r.retry_after_ms > 0) err["retry_after_ms"] = r.retry_after_ms;
    o["error"] = std::move(err);
  }
  return o;
}

Result<TaskResult> decode_result(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return invalid_argument_error("result is not an object");
  TaskResult r;
  r.run = base::string_or(*o, "run", "");
  r.node = base::string_or(*o, "node", "");
  r.index = static_cast<int>(base::int_or(*o, "index", -1));
  r.iteration = static_cast<int>(base::int_or(*o, "iteration", 0));
  r.attempt = static_cast<int>(base::int_or(*o, "attempt", 0));
  const json::value* ok = o->if_contains("ok");
  if (r.run.empty() || r.node.empty() || r.attempt < 1 || ok == nullptr || !ok->is_bool()) {
    return invalid_argument_error("result lacks run, node, attempt or ok");
  }
  r.ok = ok->get_bool();
  if (r.ok) {
    if (const json::value* out = o->if_contains("output")) r.output = *out;
    return r;
  }
  const json::object* err = base::find_object(*o, "error");
  if (err == nullptr) return invalid_argument_error("failed result without error");
  r.error_code = base::string_or(*err, "code", "error");
  r.error_message = base::string_or(*err, "message", "");
  const json::value* retry = err->if_contains("retryable");
  r.retryable = retry == nullptr || !retry->is_bool() || retry->get_bool();
  r.retry_after_ms = std::clamp<int64_t>(base::int_or(*err, "retry_after_ms", 0), 0,
                                         limits::kRetryAfterMax.count());
  return r;
}

}  // namespace venture::engine
