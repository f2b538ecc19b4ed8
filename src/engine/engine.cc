// The engine shell: inbox, step loop, group commit, carrying out commands, recovery.
#include "engine/engine.h"

#include <algorithm>
#include <cctype>

#include "engine/internal.h"

namespace venture::engine {

// ---- IrCache -------------------------------------------------------------------------------

std::shared_ptr<const workflow::Ir> IrCache::find(const std::string& workflow,
                                                  const std::string& version) {
  {
    std::lock_guard lock(mu_);
    auto it = by_version_.find(version);
    if (it != by_version_.end()) return it->second;
  }
  auto row = store_.get_workflow_version(workflow, version);
  if (!row) return nullptr;
  return compile_definition(row->definition);
}

std::shared_ptr<const workflow::Ir> IrCache::compile_definition(const json::value& def) {
  const std::string version = workflow::version_of(def);
  {
    std::lock_guard lock(mu_);
    auto it = by_version_.find(version);
    if (it != by_version_.end()) return it->second;
  }
  workflow::Problems problems;
  auto ir = workflow::compile(def, problems);
  if (ir != nullptr) put(ir);
  return ir;
}

void IrCache::put(std::shared_ptr<const workflow::Ir> ir) {
  std::lock_guard lock(mu_);
  by_version_.emplace(ir->version, std::move(ir));
}

std::string task_queue(std::string_view type) { return "tasks." + std::string(type); }

Engine::Engine(storage::Store& store, bus::Bus& bus, base::Clock& clock, base::Random& random,
               Options options)
    : store_(store), bus_(bus), clock_(clock), random_(random), options_(options), irs_(store) {}

Engine::~Engine() { stop(); }

Status Engine::start() {
  auto frozen = store_.get_setting("frozen");
  if (!frozen) return frozen.error();
  frozen_ = frozen->has_value() && **frozen == "1";
  const Time now = clock_.now();
  const auto wake_on_results = [this] {
    std::lock_guard lock(mu_);
    results_ready_ = true;
    wake_.notify_one();
  };
  if (!options_.cluster.enabled) {
    VENTURE_RETURN_IF_ERROR(recover([](const std::string&) { return true; }, now));
    bus_.on_ready(kResultsQueue, wake_on_results);
  } else {
    const ClusterOptions& c = options_.cluster;
    const bool valid_id =
        !c.id.empty() && c.id.size() <= 64 && std::all_of(c.id.begin(), c.id.end(), [](char ch) {
          return std::isalnum(static_cast<unsigned char>(ch)) != 0 || ch == '_' || ch == '-';
        });
    if (!valid_id) {
      return invalid_argument_error("cluster mode needs an engine id of [A-Za-z0-9_-]");
    }
    partitions_ = store_.partitions();
    VENTURE_RETURN_IF_ERROR(bus_.kv_bucket("owners", c.lease));
    VENTURE_RETURN_IF_ERROR(bus_.kv_bucket("flags", Millis(0)));
    VENTURE_ASSIGN_OR_RETURN(heartbeat_subscription_,
                             bus_.subscribe("engine.heartbeat", [this](const bus::Message& m) {
                               const json::object* o = m.data.if_object();
                               if (o == nullptr) return;
                               const json::value* drive = o->if_contains("drive");
                               if (drive == nullptr || !drive->is_bool() || !drive->get_bool()) {
                                 return;
                               }
                               std::lock_guard lock(mu_);
                               peers_[base::string_or(*o, "id", "")] = clock_.now();
                             }));
    VENTURE_ASSIGN_OR_RETURN(
        control_subscription_, bus_.subscribe("control.*", [this](const bus::Message& m) {
          if (m.subject != "control.frozen" && m.subject != "control.unfrozen") {
            return;
          }
          const bool now_frozen = m.subject == "control.frozen";
          std::lock_guard lock(mu_);
          if (now_frozen == frozen_) return;
          frozen_ = now_frozen;
          remote_unfreeze_ = !now_frozen;
          wake_.notify_one();
        }));
    watch_queues();
    // Take a share of the partitions before saying ready (alone: every partition).
    ownership_tick(now);
  }
  if (options_.threaded) {
    loop_ = std::jthread([this] { loop(); });
  }
  return ok();
}

void Engine::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    wake_.notify_all();
  }
  if (loop_.joinable()) loop_.join();
  bus_.on_ready(kResultsQueue, nullptr);
  if (options_.cluster.enabled) {
    bus_.unsubscribe(heartbeat_subscription_);
    bus_.unsubscribe(control_subscription_);
    bus_.on_ready("engine.replies." + options_.cluster.id, nullptr);
    // Hand the partitions over at once rather than after the lease: a graceful stop.
    std::vector<int> held;
    for (const auto& [p, o] : owned_) held.push_back(p);
    for (int p : held) {
      lose(p, "stopping");
      (void)bus_.kv_delete("owners", "p" + std::to_string(p));
    }
    for (auto& [corr, f] : forwarded_) {
      f->request->reply->finish(unavailable_error("the engine is shutting down"));
    }
    forwarded_.clear();
  }
  std::lock_guard lock(mu_);
  for (auto& r : inbox_) r->reply->finish(unavailable_error("the engine is shutting down"));
  inbox_.clear();
}

bool Engine::frozen() const {
  std::lock_guard lock(mu_);
  return frozen_;
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

Status Engine::enqueue(Request request) {
  std::lock_guard lock(mu_);
  if (stopping_) return unavailable_error("the engine is shutting down");
  if (inbox_.size() >= limits::kInboxMax)
    return resource_exhausted_error("the engine inbox is full");
  inbox_.push_back(std::make_unique<Request>(std::move(request)));
  wake_.notify_one();
  return ok();
}

Status Engine::post(Request request) {
  auto reply = request.reply;
  VENTURE_RETURN_IF_ERROR(enqueue(std::move(request)));
  if (!options_.threaded) {
    while (true) {
      {
        std::lock_guard lock(reply->mu);
        if (reply->done) break;
      }
      step();
    }
  }
  std::unique_lock lock(reply->mu);
  reply->cv.wait(lock, [&] { return reply->done; });
  return reply->status;
}

void Engine::loop() {
  while (true) {
    bool idle = false;
    {
      std::unique_lock lock(mu_);
      if (stopping_) break;
      idle = inbox_.empty() && !results_ready_;
      if (idle && inflight_.empty()) {
        Millis wait(1000);
        if (!timers_.empty()) {
          wait = std::min(wait, std::max(Millis(0), timers_.top().first - clock_.now()));
        }
        if (auto lease = bus_.next_wake(kResultsQueue)) {
          wait = std::min(wait, std::max(Millis(0), *lease - clock_.now()));
        }
        if (options_.cluster.enabled) {
          wait = std::min(wait, std::max(Millis(0), next_ownership_tick_ - clock_.now()));
        }
        if (!undispatched_.empty()) {
          wait = std::min(wait, std::max(Millis(0), next_redispatch_ - clock_.now()));
        }
        if (wait > Millis(0)) wake_.wait_for(lock, wait);
        if (stopping_) break;
        idle = false;
      }
    }
    if (idle) {
      // Nothing new to decide: carry out the steps still committing (their commands are what
      // brings the next triggers).
      finish_commits(0);
      continue;
    }
    step();
  }
  finish_commits(0);  // stopping: every decided step is carried out (or failed) before the join
}

void Engine::arm(Time due, const std::string& run) {
  // One pending entry per run at its earliest due time; a later due is re-armed after that entry
  // fires (the tick computes the run's next due). Keeps the heap bounded by the active runs.
  auto [it, inserted] = armed_.try_emplace(run, due);
  if (!inserted) {
    if (it->second <= due) {
      return;
    }
    it->second = due;
  }
  timers_.emplace(due, run);
}

std::optional<Time> Engine::next_wake() {
  std::optional<Time> t;
  if (!timers_.empty()) t = timers_.top().first;
  if (auto lease = bus_.next_wake(kResultsQueue); lease && (!t || *lease < *t)) t = lease;
  return t;
}

// ---- public requests -------------------------------------------------------------------------

Result<RegisterResponse> Engine::register_workflow(const json::value& definition,
                                                   const std::string& tag,
                                                   workflow::Problems& problems) {
  if (!tag.empty() && !workflow::is_valid_tag_name(tag)) {
    problems.push_back({"/tag", "tag must match [a-z0-9][a-z0-9._-]{0,62}"});
    return invalid_argument_error("invalid tag");
  }
  auto ir = workflow::compile(definition, problems);
  if (ir == nullptr) return invalid_argument_error("the definition is invalid");
  irs_.put(ir);
  RegisterResponse resp{ir->name, ir->version, {"latest"}, false};
  if (!tag.empty() && tag != "latest") resp.tags.push_back(tag);
  auto existing = store_.get_workflow_version(ir->name, ir->version);
  resp.created = !existing;
  storage::Batch batch;
  const Time now = clock_.now();
  batch.workflow_versions.push_back({ir->name, ir->version, ir->definition, now});
  for (const std::string& t : resp.tags) batch.tags.push_back({ir->name, t, ir->version});
  json::array tags;
  for (const std::string& t : resp.tags) tags.emplace_back(t);
  storage::Event e;
  e.id = base::new_id("evt", clock_, random_);
  e.type = "workflow.registered";
  e.time = now;
  e.data = json::object{{"name", ir->name},
                        {"version", ir->version},
                        {"tags", std::move(tags)},
                        {"new_version", resp.created}};
  batch.events.push_back(std::move(e));
  VENTURE_ASSIGN_OR_RETURN(storage::AppendResult appended, store_.append(std::move(batch)));
  for (const storage::Event& ev : appended.events) {
    (void)bus_.publish(ev.type, storage::event_to_json(ev));
  }
  return resp;
}

Result<std::shared_ptr<const workflow::Ir>> Engine::resolve(const std::string& ref) {
  const std::size_t at = ref.find('@');
  const std::string name = ref.substr(0, at);
  std::string selector = at == std::string::npos ? "latest" : ref.substr(at + 1);
  if (!workflow::is_valid_workflow_name(name)) {
    return invalid_argument_error("'" + name + "' is not a valid workflow name");
  }
  std::string version = selector;
  if (!selector.starts_with("b2:")) {
    VENTURE_ASSIGN_OR_RETURN(std::vector<storage::TagRow> tags, store_.list_tags(name));
    version.clear();
    for (const auto& t : tags) {
      if (t.tag == selector) version = t.version;
    }
    if (version.empty()) {
      return not_found_error("workflow '" + name + "' has no tag '" + selector + "'");
    }
  }
  auto ir = irs_.find(name, version);
  if (ir == nullptr) return not_found_error("workflow '" + name + "' has no version " + version);
  return ir;
}

Result<Engine::Request> Engine::prepare_start(StartRequest request, workflow::Problems& problems) {
  Request r;
  r.kind = Request::Kind::kStart;
  if (!request.workflow.empty()) {
    VENTURE_ASSIGN_OR_RETURN(r.ir, resolve(request.workflow));
  } else {
    r.ir = workflow::compile(request.definition, problems);
    if (r.ir == nullptr) return invalid_argument_error("the definition is invalid");
    irs_.put(r.ir);
    r.register_version = !store_.get_workflow_version(r.ir->name, r.ir->version);
  }
  if (request.inputs.is_null()) request.inputs = json::object();
  if (!request.inputs.is_object()) {
    problems.push_back({"/inputs", "inputs must be an object"});
    return invalid_argument_error("invalid inputs");
  }
  workflow::validate_inputs(*r.ir, request.inputs, problems);
  if (!problems.empty())
    return invalid_argument_error("the inputs do not match the workflow's schema");
  r.start = std::move(request);
  return r;
}

Result<StartResponse> Engine::start_run(StartRequest request, workflow::Problems& problems) {
  VENTURE_ASSIGN_OR_RETURN(Request r, prepare_start(std::move(request), problems));
  auto reply = r.reply;
  VENTURE_RETURN_IF_ERROR(post(std::move(r)));
  return reply->start;
}

Status Engine::start_run_async(StartRequest request, workflow::Problems& problems,
                               std::function<void(Result<StartResponse>)> done) {
  VENTURE_ASSIGN_OR_RETURN(Request r, prepare_start(std::move(request), problems));
  r.reply->callback = std::move(done);
  return enqueue(std::move(r));
}

Status Engine::command(Command command, const std::string& run, const std::string& reason) {
  Request r;
  r.kind = Request::Kind::kCommand;
  r.command = command;
  r.run = run;
  r.reason = reason;
  return post(std::move(r));
}

Status Engine::cancel(const std::string& run, const std::string& reason) {
  return command(Command::kCancel, run, reason);
}

Status Engine::pause(const std::string& run, const std::string& reason) {
  return command(Command::kPause, run, reason);
}

Status Engine::resume(const std::string& run, const std::string& reason) {
  return command(Command::kResume, run, reason);
}

Result<PatchResponse> Engine::post_patch(Request request, workflow::Problems& problems) {
  auto reply = request.reply;
  const Status status = post(std::move(request));
  problems.insert(problems.end(), reply->problems.begin(), reply->problems.end());
  if (!status) return status.error();
  return reply->patch;
}

namespace {

// The review API answers 422 for every patch that does not validate, including one that would
// change a started or settled node (the core's kFailedPrecondition with problems).
Error as_review_error(const Error& e, const workflow::Problems& problems, std::size_t before) {
  if (e.code == Code::kFailedPrecondition && problems.size() > before) {
    return invalid_argument_error(e.message);
  }
  return e;
}

}  // namespace

Result<PatchResponse> Engine::propose_patch(PatchRequest request, workflow::Problems& problems) {
  Request r;
  r.kind = Request::Kind::kPatch;
  r.run = request.run;
  r.patch = std::move(request);
  const std::size_t before = problems.size();
  auto result = post_patch(std::move(r), problems);
  if (!result) return as_review_error(result.error(), problems, before);
  return result;
}

Result<PatchResponse> Engine::decide_patch_proposal(const std::string& patch_id, bool approve,
                                                    const std::string& by,
                                                    const std::string& reason,
                                                    workflow::Problems& problems) {
  Request r;
  r.kind = Request::Kind::kPatchDecision;
  r.patch_id = patch_id;
  r.approve = approve;
  r.by = by;
  r.reason = reason;
  const std::size_t before = problems.size();
  auto result = post_patch(std::move(r), problems);
  if (!result) return as_review_error(result.error(), problems, before);
  return result;
}

Result<std::string> Engine::patch(const std::string& run, const json::value& ops,
                                  const std::string& reason) {
  Request r;
  r.kind = Request::Kind::kPatch;
  r.run = run;
  r.patch = PatchRequest{run, ops, reason, "", false};
  workflow::Problems problems;
  VENTURE_ASSIGN_OR_RETURN(PatchResponse response, post_patch(std::move(r), problems));
  return response.version;
}

Result<StartResponse> Engine::replay(const std::string& run, const std::string& from_node,
                                     const std::string& by) {
  Request r;
  r.kind = Request::Kind::kReplay;
  r.run = run;
  r.from_node = from_node;
  r.by = by;
  auto reply = r.reply;
  VENTURE_RETURN_IF_ERROR(post(std::move(r)));
  return reply->start;
}

Result<storage::ApprovalRow> Engine::decide_approval(const Vote& vote) {
  Request r;
  r.kind = Request::Kind::kApproval;
  r.vote = vote;
  auto reply = r.reply;
  VENTURE_RETURN_IF_ERROR(post(std::move(r)));
  return reply->approval;
}

Status Engine::freeze(const std::string& reason) {
  Request r;
  r.kind = Request::Kind::kFreeze;
  r.reason = reason;
  return post(std::move(r));
}

Status Engine::unfreeze() {
  Request r;
  r.kind = Request::Kind::kUnfreeze;
  return post(std::move(r));
}

}  // namespace venture::engine
