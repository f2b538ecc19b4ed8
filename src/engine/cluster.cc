// Cluster mode: partition ownership by leases in the bus's KV store, fenced appends, requests
// forwarded to the owning engine, per-partition result queues. See ClusterOptions in engine.h and
// docs/cluster.md. Everything here runs on the engine loop except the bus callbacks, which only
// touch state under mu_.
#include <algorithm>

#include "engine/engine.h"
#include "engine/internal.h"

namespace venture::engine {

namespace {

constexpr std::string_view kOwnersBucket = "owners";
constexpr std::string_view kFlagsBucket = "flags";
constexpr std::string_view kFrozenKey = "frozen";
constexpr std::string_view kHeartbeatSubject = "engine.heartbeat";

std::string owner_key(int p) { return "p" + std::to_string(p); }
std::string requests_queue(int p) { return "engine.requests." + std::to_string(p); }
std::string replies_queue(const std::string& id) { return "engine.replies." + id; }

json::object problems_to_json(const workflow::Problems& problems) {
  json::array out;
  for (const auto& p : problems)
    out.push_back(json::object{{"path", p.path}, {"message", p.message}});
  return json::object{{"items", std::move(out)}};
}

json::value opt_time(const std::optional<Time>& t) {
  return t ? json::value(format_time(*t)) : json::value(nullptr);
}

Time time_or(const json::object& o, std::string_view key) {
  auto t = parse_time(base::string_or(o, key, ""));
  return t ? *t : Time{};
}

json::object approval_to_json(const storage::ApprovalRow& a) {
  return json::object{{"id", a.id},
                      {"run", a.run},
                      {"node", a.node},
                      {"index", a.index},
                      {"iteration", a.iteration},
                      {"status", a.status},
                      {"created", format_time(a.created)},
                      {"updated", format_time(a.updated)},
                      {"due", opt_time(a.due)},
                      {"request", a.request},
                      {"decisions", a.decisions}};
}

storage::ApprovalRow approval_from_json(const json::object& o) {
  storage::ApprovalRow a;
  a.id = base::string_or(o, "id", "");
  a.run = base::string_or(o, "run", "");
  a.node = base::string_or(o, "node", "");
  a.index = base::int_or(o, "index", -1);
  a.iteration = base::int_or(o, "iteration", 0);
  a.status = base::string_or(o, "status", "");
  a.created = time_or(o, "created");
  a.updated = time_or(o, "updated");
  if (auto due = parse_time(base::string_or(o, "due", ""))) a.due = *due;
  if (const json::value* v = o.if_contains("request")) a.request = *v;
  if (const json::value* v = o.if_contains("decisions")) a.decisions = *v;
  return a;
}

json::value member(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr ? *v : json::value(nullptr);
}

}  // namespace

std::string results_queue(int partition, bool cluster) {
  if (!cluster) return std::string(kResultsQueue);
  return std::string(kResultsQueue) + "." + std::to_string(partition);
}

// ---- wire forms ----------------------------------------------------------------------------

json::object Engine::encode_request(const Request& r) {
  json::object o{{"kind", static_cast<int>(r.kind)},
                 {"run", r.run},
                 {"command", static_cast<int>(r.command)},
                 {"reason", r.reason},
                 {"patch_id", r.patch_id},
                 {"approve", r.approve},
                 {"by", r.by},
                 {"from_node", r.from_node},
                 {"start_id", r.start_id},
                 {"hops", r.hops}};
  if (r.kind == Request::Kind::kStart) {
    o["start"] =
        json::object{{"workflow", r.start.workflow},   {"definition", r.start.definition},
                     {"inputs", r.start.inputs},       {"idempotency_key", r.start.idempotency_key},
                     {"body_hash", r.start.body_hash}, {"by", r.start.by}};
  }
  if (r.kind == Request::Kind::kPatch) {
    o["patch"] = json::object{{"run", r.patch.run},
                              {"ops", r.patch.ops},
                              {"reason", r.patch.reason},
                              {"by", r.patch.by},
                              {"review", r.patch.review}};
  }
  if (r.kind == Request::Kind::kApproval) {
    o["vote"] = json::object{{"approval", r.vote.approval}, {"by", r.vote.by},
                             {"role", r.vote.role},         {"decision", r.vote.decision},
                             {"comment", r.vote.comment},   {"via", r.vote.via},
                             {"link", r.vote.link}};
  }
  return o;
}

Result<std::unique_ptr<Engine::Request>> Engine::decode_request(const json::object& o) {
  auto r = std::make_unique<Request>();
  const int64_t kind = base::int_or(o, "kind", -1);
  if (kind < 0 || kind > static_cast<int64_t>(Request::Kind::kApproval)) {
    return invalid_argument_error("forwarded request has no valid kind");
  }
  r->kind = static_cast<Request::Kind>(kind);
  const int64_t command = base::int_or(o, "command", 0);
  if (command < 0 || command > static_cast<int64_t>(Command::kResume)) {
    return invalid_argument_error("forwarded request has no valid command");
  }
  r->command = static_cast<Command>(command);
  r->run = base::string_or(o, "run", "");
  r->reason = base::string_or(o, "reason", "");
  r->patch_id = base::string_or(o, "patch_id", "");
  const json::value* approve = o.if_contains("approve");
  r->approve = approve != nullptr && approve->is_bool() && approve->get_bool();
  r->by = base::string_or(o, "by", "");
  r->from_node = base::string_or(o, "from_node", "");
  r->start_id = base::string_or(o, "start_id", "");
  r->hops = static_cast<int>(base::int_or(o, "hops", 0));
  if (const json::object* s = base::find_object(o, "start")) {
    r->start.workflow = base::string_or(*s, "workflow", "");
    r->start.definition = member(*s, "definition");
    r->start.inputs = member(*s, "inputs");
    r->start.idempotency_key = base::string_or(*s, "idempotency_key", "");
    r->start.body_hash = base::string_or(*s, "body_hash", "");
    r->start.by = base::string_or(*s, "by", "");
  }
  if (const json::object* p = base::find_object(o, "patch")) {
    r->patch.run = base::string_or(*p, "run", "");
    r->patch.ops = member(*p, "ops");
    r->patch.reason = base::string_or(*p, "reason", "");
    r->patch.by = base::string_or(*p, "by", "");
    const json::value* review = p->if_contains("review");
    r->patch.review = review != nullptr && review->is_bool() && review->get_bool();
  }
  if (const json::object* v = base::find_object(o, "vote")) {
    r->vote.approval = base::string_or(*v, "approval", "");
    r->vote.by = base::string_or(*v, "by", "");
    r->vote.role = base::string_or(*v, "role", "");
    r->vote.decision = base::string_or(*v, "decision", "");
    r->vote.comment = base::string_or(*v, "comment", "");
    r->vote.via = base::string_or(*v, "via", "api");
    r->vote.link = base::string_or(*v, "link", "");
  }
  return r;
}

json::object encode_answer(const Reply& reply) {
  json::object o{{"code", static_cast<int>(reply.status ? Code::kOk : reply.status.error().code)},
                 {"message", reply.status ? "" : reply.status.error().message},
                 {"problems", problems_to_json(reply.problems)},
                 {"start", json::object{{"id", reply.start.id},
                                        {"status", reply.start.status},
                                        {"workflow", reply.start.workflow},
                                        {"version", reply.start.version},
                                        {"existing", reply.start.existing},
                                        {"replay_of", reply.start.replay_of}}},
                 {"version", reply.version},
                 {"patch", json::object{{"id", reply.patch.id},
                                        {"status", reply.patch.status},
                                        {"version", reply.patch.version}}}};
  if (!reply.approval.id.empty()) o["approval"] = approval_to_json(reply.approval);
  return o;
}

void apply_answer(const json::object& a, Reply& reply) {
  if (const json::object* s = base::find_object(a, "start")) {
    reply.start.id = base::string_or(*s, "id", "");
    reply.start.status = base::string_or(*s, "status", "");
    reply.start.workflow = base::string_or(*s, "workflow", "");
    reply.start.version = base::string_or(*s, "version", "");
    const json::value* existing = s->if_contains("existing");
    reply.start.existing = existing != nullptr && existing->is_bool() && existing->get_bool();
    reply.start.replay_of = base::string_or(*s, "replay_of", "");
  }
  reply.version = base::string_or(a, "version", "");
  if (const json::object* p = base::find_object(a, "patch")) {
    reply.patch.id = base::string_or(*p, "id", "");
    reply.patch.status = base::string_or(*p, "status", "");
    reply.patch.version = base::string_or(*p, "version", "");
  }
  if (const json::object* ap = base::find_object(a, "approval")) {
    reply.approval = approval_from_json(*ap);
  }
  if (const json::object* pr = base::find_object(a, "problems")) {
    if (const json::array* items = base::find_array(*pr, "items")) {
      for (const json::value& item : *items) {
        if (const json::object* i = item.if_object()) {
          reply.problems.push_back(
              {base::string_or(*i, "path", ""), base::string_or(*i, "message", "")});
        }
      }
    }
  }
  const int64_t code = base::int_or(a, "code", static_cast<int64_t>(Code::kInternal));
  if (code == 0) {
    reply.finish(ok());
    return;
  }
  const bool known = code > 0 && code <= static_cast<int64_t>(Code::kUnimplemented);
  reply.finish(Error{known ? static_cast<Code>(code) : Code::kInternal,
                     base::string_or(a, "message", "the owning engine failed the request")});
}

// ---- dispatch and recovery -----------------------------------------------------------------

Status Engine::dispatch(Dispatch& d) {
  if (options_.cluster.enabled) {
    d.reply = results_queue(storage::partition_of(d.run, partitions_), true);
  }
  return bus_.enqueue(task_queue(d.type), attempt_key(d), encode_task(d));
}

Status Engine::recover(const std::function<bool(const std::string&)>& mine, Time now) {
  VENTURE_ASSIGN_OR_RETURN(std::vector<std::string> active, store_.list_active_runs());
  std::size_t recovered = 0;
  for (const std::string& id : active) {
    if (!mine(id)) continue;
    bool unavailable = false;
    RunState* run = load_run(id, &unavailable);
    if (run == nullptr) {
      if (unavailable) arm(now + Millis(1000), id);  // the store is away: try again soon
      continue;
    }
    ++recovered;
    for (Dispatch& d : in_flight(*run)) {
      if (Status st = dispatch(d); !st) {
        // Enqueued again shortly (redispatch); recovery goes on with the other runs.
        base::log_warn("cannot re-dispatch a task",
                       {{"run", d.run}, {"node", d.node}, {"error", st.error().to_string()}});
        undispatched_.push_back(std::move(d));
      }
    }
    arm(now, id);  // a tick dispatches whatever became ready meanwhile
  }
  base::log_info("engine recovered", {{"runs", recovered}, {"frozen", frozen_}});
  return ok();
}

bool Engine::owns_run(const std::string& run) const {
  if (!options_.cluster.enabled) return true;
  return owned_.contains(storage::partition_of(run, partitions_));
}

std::vector<int> Engine::owned_partitions() const {
  std::lock_guard lock(mu_);
  if (!options_.cluster.enabled) return {0};
  return owned_list_;
}

std::string Engine::new_run_id() {
  std::string id = base::new_id("run", clock_, random_);
  if (!options_.cluster.enabled || owned_.empty()) return id;
  // Prefer a run this engine owns, so a start needs no forwarding (ids are random: a few tries).
  for (int i = 0; i < 256 && !owns_run(id); ++i) id = base::new_id("run", clock_, random_);
  return id;
}

// ---- ownership -----------------------------------------------------------------------------

void Engine::watch_queues() {
  // Every queue this engine reads, flagged by the bus when something may be pullable.
  auto flag = [this](std::string queue) {
    return [this, queue = std::move(queue)] {
      std::lock_guard lock(mu_);
      ready_queues_.insert(queue);
      results_ready_ = true;
      wake_.notify_one();
    };
  };
  bus_.on_ready(replies_queue(options_.cluster.id), flag(replies_queue(options_.cluster.id)));
  for (const auto& [p, owned] : owned_) {
    bus_.on_ready(results_queue(p, true), flag(results_queue(p, true)));
    bus_.on_ready(requests_queue(p), flag(requests_queue(p)));
  }
}

void Engine::take(int partition, uint64_t revision, Time now) {
  owned_[partition] = Owned{revision, static_cast<int64_t>(revision), now};
  mirror_owned();
  base::log_info("partition taken", {{"partition", partition}, {"epoch", revision}});
  watch_queues();
  {
    std::lock_guard lock(mu_);
    ready_queues_.insert(results_queue(partition, true));
    ready_queues_.insert(requests_queue(partition));
  }
  if (Status st = recover(
          [&](const std::string& id) {
            return storage::partition_of(id, partitions_) == partition;
          },
          now);
      !st) {
    // The runs load on demand (results, requests) and the next sweep re-reads the store.
    base::log_warn("cannot recover a partition's runs",
                   {{"partition", partition}, {"error", st.error().to_string()}});
  }
}

void Engine::mirror_owned() {
  std::lock_guard lock(mu_);
  owned_list_.clear();
  for (const auto& [p, o] : owned_) owned_list_.push_back(p);
  stats_.owned_partitions = static_cast<int64_t>(owned_.size());
}

void Engine::lose(int partition, std::string_view why) {
  if (owned_.erase(partition) == 0) return;
  mirror_owned();
  base::log_warn("partition released", {{"partition", partition}, {"why", std::string(why)}});
  bus_.on_ready(results_queue(partition, true), nullptr);
  bus_.on_ready(requests_queue(partition), nullptr);
  for (auto it = runs_.begin(); it != runs_.end();) {
    if (storage::partition_of(it->first, partitions_) == partition) {
      snapshot_events_.erase(it->first);
      armed_.erase(it->first);
      it = runs_.erase(it);
    } else {
      ++it;
    }
  }
}

void Engine::ownership_tick(Time now) {
  const ClusterOptions& c = options_.cluster;
  next_ownership_tick_ = now + c.lease / 4;
  (void)bus_.publish(kHeartbeatSubject,
                     json::object{{"id", c.id}, {"drive", c.drive}, {"owned", owned_.size()}});
  std::size_t live = c.drive ? std::size_t{1} : std::size_t{0};
  {
    std::lock_guard lock(mu_);
    for (auto it = peers_.begin(); it != peers_.end();) {
      if (now - it->second > c.lease) {
        it = peers_.erase(it);
      } else {
        live += it->first != c.id ? std::size_t{1} : std::size_t{0};
        ++it;
      }
    }
  }
  const auto p_count = static_cast<std::size_t>(partitions_);
  const std::size_t share = live == 0 ? 0 : (p_count + live - 1) / live;
  // Renew what we hold; what we cannot renew for 3/4 of a lease we stop driving (its lease may
  // expire any moment, and the fence would refuse our appends anyway).
  std::vector<int> held;
  for (const auto& [p, o] : owned_) held.push_back(p);
  for (int p : held) {
    Owned& o = owned_[p];
    auto renewed = bus_.kv_update(kOwnersBucket, owner_key(p), c.id, o.revision);
    if (renewed) {
      o.revision = *renewed;
      o.renewed = now;
    } else if (renewed.error().code == Code::kFailedPrecondition) {
      lose(p, "the lease was taken over");
    } else if (now - o.renewed >= c.lease * 3 / 4) {
      lose(p, "the lease could not be renewed: " + renewed.error().message);
    }
  }
  if (c.drive) {
    // Give back what is over our share (another engine joined), highest partitions first.
    while (owned_.size() > share && !owned_.empty()) {
      const int p = owned_.rbegin()->first;
      lose(p, "rebalancing");
      (void)bus_.kv_delete(kOwnersBucket, owner_key(p));
    }
    for (int p = 0; p < partitions_ && owned_.size() < share; ++p) {
      if (owned_.contains(p)) continue;
      Result<uint64_t> revision = uint64_t{0};
      auto entry = bus_.kv_get(kOwnersBucket, owner_key(p));
      if (entry) {
        if (entry->value != c.id) continue;  // another engine's
        // Ours from before a restart: take it again with a new revision (a new fence epoch).
        revision = bus_.kv_update(kOwnersBucket, owner_key(p), c.id, entry->revision);
      } else if (entry.error().code == Code::kNotFound) {
        revision = bus_.kv_create(kOwnersBucket, owner_key(p), c.id);
      } else {
        break;  // the bus is down: try again next tick
      }
      if (!revision) continue;  // lost the race for it
      if (Status st = store_.fence_partition(p, static_cast<int64_t>(*revision)); !st) {
        base::log_warn("cannot fence a partition",
                       {{"partition", p}, {"error", st.error().to_string()}});
        (void)bus_.kv_delete(kOwnersBucket, owner_key(p));
        continue;
      }
      take(p, *revision, now);
    }
  }
  // The freeze flag, in case a control event was missed: the KV mirror is the cheap check, the
  // store's setting (written in the same commit as the control event) decides, so a mirror write
  // that failed can never unfreeze anyone.
  if (auto flag = bus_.kv_get(kFlagsBucket, kFrozenKey)) {
    bool frozen = flag->value == "1";
    bool differs = false;
    {
      std::lock_guard lock(mu_);
      differs = frozen != frozen_;
    }
    if (differs) {
      if (auto setting = store_.get_setting("frozen")) {
        frozen = setting->has_value() && **setting == "1";
        if (frozen != (flag->value == "1")) {
          (void)bus_.kv_put(kFlagsBucket, kFrozenKey, frozen ? "1" : "0");  // repair the mirror
        }
        std::lock_guard lock(mu_);
        if (frozen != frozen_) {
          frozen_ = frozen;
          remote_unfreeze_ = !frozen;
        }
      }
    }
  }
}

// ---- forwarding ----------------------------------------------------------------------------

std::optional<int> Engine::target_partition(const Request& r) {
  using Kind = Request::Kind;
  std::string run;
  switch (r.kind) {
    case Kind::kStart:
    case Kind::kReplay:
      run = r.start_id;
      break;
    case Kind::kCommand:
    case Kind::kPatch:
      run = r.run;
      break;
    case Kind::kPatchDecision:
      if (auto row = store_.get_patch(r.patch_id)) run = row->run;
      break;
    case Kind::kApproval:
      if (auto row = store_.get_approval(r.vote.approval)) run = row->run;
      break;
    case Kind::kFreeze:
    case Kind::kUnfreeze:
      break;
  }
  if (run.empty()) return std::nullopt;  // handled here (and answered here if it is unknown)
  return storage::partition_of(run, partitions_);
}

void Engine::forward(std::unique_ptr<Request> r, int partition, Time now) {
  if (r->hops >= 3 || forwarded_.size() >= limits::kForwardedMax) {
    r->reply->finish(unavailable_error("no engine owns partition " + std::to_string(partition) +
                                       " right now; try again"));
    return;
  }
  const std::string corr = base::new_id("fwd", clock_, random_);
  json::object payload = encode_request(*r);
  payload["hops"] = r->hops + 1;
  payload["corr"] = corr;
  payload["reply"] = replies_queue(options_.cluster.id);
  if (Status st = bus_.enqueue(requests_queue(partition), corr, std::move(payload)); !st) {
    r->reply->finish(st);
    return;
  }
  auto f = std::make_unique<Forwarded>();
  f->request = std::move(r);
  f->partition = partition;
  f->deadline = now + options_.cluster.forward_timeout;
  forwarded_.emplace(corr, std::move(f));
  std::lock_guard lock(mu_);
  stats_.forwarded += 1;
}

void Engine::expire_forwarded(Time now) {
  for (auto it = forwarded_.begin(); it != forwarded_.end();) {
    if (it->second->deadline <= now) {
      it->second->request->reply->finish(unavailable_error("the engine owning partition " +
                                                           std::to_string(it->second->partition) +
                                                           " did not answer in time"));
      it = forwarded_.erase(it);
    } else {
      ++it;
    }
  }
}

void Engine::pull_cluster_queues(StepState& st, std::vector<std::unique_ptr<Request>>& requests) {
  std::set<std::string> ready;
  {
    std::lock_guard lock(mu_);
    ready.swap(ready_queues_);
  }
  if (st.ctx.now >= next_queue_sweep_) {
    // A safety net for a missed on_ready: look at every queue once a second.
    next_queue_sweep_ = st.ctx.now + Millis(1000);
    ready.insert(replies_queue(options_.cluster.id));
    for (const auto& [p, o] : owned_) {
      ready.insert(results_queue(p, true));
      ready.insert(requests_queue(p));
    }
  }
  const std::string replies = replies_queue(options_.cluster.id);
  for (const std::string& queue : ready) {
    auto pulled = bus_.pull(queue, options_.step_triggers_max, options_.result_lease);
    if (!pulled) continue;
    if (pulled->size() == options_.step_triggers_max) {
      std::lock_guard lock(mu_);
      ready_queues_.insert(queue);  // more may be waiting
    }
    for (bus::Delivery& d : *pulled) {
      const json::object* o = d.payload.if_object();
      if (queue == replies) {
        if (o != nullptr) {
          auto it = forwarded_.find(base::string_or(*o, "corr", ""));
          if (it != forwarded_.end()) {
            apply_answer(*o, *it->second->request->reply);
            forwarded_.erase(it);
          }
        }
        (void)bus_.ack(d);
        continue;
      }
      if (queue.starts_with("engine.requests.")) {
        auto r = o != nullptr ? decode_request(*o) : invalid_argument_error("not an object");
        if (!r) {
          base::log_warn("dropping an undecodable forwarded request",
                         {{"error", r.error().to_string()}});
          (void)bus_.ack(d);
          continue;
        }
        const std::string corr = base::string_or(*o, "corr", "");
        const std::string reply_to = base::string_or(*o, "reply", "");
        auto delivery = std::make_shared<bus::Delivery>(std::move(d));
        (*r)->reply->on_finish = [this, corr, reply_to, delivery](Reply& reply) {
          json::object answer = encode_answer(reply);
          answer["corr"] = corr;
          if (reply_to.starts_with("engine.replies.")) {
            (void)bus_.enqueue(reply_to, "", std::move(answer));
          }
          (void)bus_.ack(*delivery);
        };
        requests.push_back(std::move(*r));
        continue;
      }
      take_result(std::move(d), st);
      st.triggers += 1;
    }
  }
}

void Engine::add_fences(StepState& st) {
  if (!options_.cluster.enabled) return;
  std::set<int> parts;
  for (const storage::Event& e : st.batch.events) {
    if (!e.run.empty()) parts.insert(storage::partition_of(e.run, partitions_));
  }
  for (int p : parts) {
    auto it = owned_.find(p);
    // A run of a partition we do not own cannot be in a batch (load_run refuses it); fence it
    // with an epoch no owner has, so the store refuses the batch rather than let it through.
    st.batch.fences.push_back({p, it != owned_.end() ? it->second.epoch : -1});
  }
}

}  // namespace venture::engine
