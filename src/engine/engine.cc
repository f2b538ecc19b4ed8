// The engine shell: inbox, step loop, group commit, carrying out commands, recovery.
#include "engine/engine.h"

#include "engine/internal.h"

namespace venture::engine {

// ---- IrCache -------------------------------------------------------------------------------

std::shared_ptr<const workflow::Ir> IrCache::Find(const std::string& workflow,
                                                  const std::string& version) {
  {
    std::lock_guard lock(mu_);
    auto it = by_version_.find(version);
    if (it != by_version_.end()) return it->second;
  }
  auto row = store_.GetWorkflowVersion(workflow, version);
  if (!row) return nullptr;
  return CompileDefinition(row->definition);
}

std::shared_ptr<const workflow::Ir> IrCache::CompileDefinition(const json::value& def) {
  const std::string version = workflow::VersionOf(def);
  {
    std::lock_guard lock(mu_);
    auto it = by_version_.find(version);
    if (it != by_version_.end()) return it->second;
  }
  workflow::Problems problems;
  auto ir = workflow::Compile(def, problems);
  if (ir != nullptr) Put(ir);
  return ir;
}

void IrCache::Put(std::shared_ptr<const workflow::Ir> ir) {
  std::lock_guard lock(mu_);
  by_version_.emplace(ir->version, std::move(ir));
}

std::string TaskQueue(std::string_view type) { return "tasks." + std::string(type); }

Engine::Engine(storage::Store& store, bus::Bus& bus, base::Clock& clock, base::Random& random,
               Options options)
    : store_(store), bus_(bus), clock_(clock), random_(random), options_(options), irs_(store) {}

Engine::~Engine() { Stop(); }

Status Engine::Start() {
  auto frozen = store_.GetSetting("frozen");
  if (!frozen) return frozen.error();
  frozen_ = frozen->has_value() && **frozen == "1";
  VENTURE_ASSIGN_OR_RETURN(std::vector<std::string> active, store_.ListActiveRuns());
  const Time now = clock_.Now();
  for (const std::string& id : active) {
    RunState* run = LoadRun(id);
    if (run == nullptr) continue;
    for (const Dispatch& d : InFlight(*run)) {
      VENTURE_RETURN_IF_ERROR(bus_.Enqueue(TaskQueue(d.type), AttemptKey(d), EncodeTask(d)));
    }
    timers_.emplace(now, id);  // a tick dispatches whatever became ready meanwhile
  }
  base::LogInfo("engine recovered", {{"runs", active.size()}, {"frozen", frozen_}});
  bus_.OnReady(kResultsQueue, [this] {
    std::lock_guard lock(mu_);
    results_ready_ = true;
    wake_.notify_one();
  });
  if (options_.threaded) {
    loop_ = std::jthread([this] { Loop(); });
  }
  return Ok();
}

void Engine::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    wake_.notify_all();
  }
  if (loop_.joinable()) loop_.join();
  bus_.OnReady(kResultsQueue, nullptr);
  std::lock_guard lock(mu_);
  for (auto& r : inbox_) r->reply->Finish(Unavailable("the engine is shutting down"));
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

Status Engine::Enqueue(Request request) {
  std::lock_guard lock(mu_);
  if (stopping_) return Unavailable("the engine is shutting down");
  if (inbox_.size() >= limits::kInboxMax) return ResourceExhausted("the engine inbox is full");
  inbox_.push_back(std::make_unique<Request>(std::move(request)));
  wake_.notify_one();
  return Ok();
}

Status Engine::Post(Request request) {
  auto reply = request.reply;
  VENTURE_RETURN_IF_ERROR(Enqueue(std::move(request)));
  if (!options_.threaded) {
    while (true) {
      {
        std::lock_guard lock(reply->mu);
        if (reply->done) break;
      }
      Step();
    }
  }
  std::unique_lock lock(reply->mu);
  reply->cv.wait(lock, [&] { return reply->done; });
  return reply->status;
}

void Engine::Loop() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      if (stopping_) return;
      if (inbox_.empty() && !results_ready_) {
        Millis wait(1000);
        if (!timers_.empty()) {
          wait = std::min(wait, std::max(Millis(0), timers_.top().first - clock_.Now()));
        }
        if (auto lease = bus_.NextWake(kResultsQueue)) {
          wait = std::min(wait, std::max(Millis(0), *lease - clock_.Now()));
        }
        if (wait > Millis(0)) wake_.wait_for(lock, wait);
        if (stopping_) return;
      }
    }
    Step();
  }
}

std::optional<Time> Engine::NextWake() {
  std::optional<Time> t;
  if (!timers_.empty()) t = timers_.top().first;
  if (auto lease = bus_.NextWake(kResultsQueue); lease && (!t || *lease < *t)) t = lease;
  return t;
}

// ---- public requests -------------------------------------------------------------------------

Result<RegisterResponse> Engine::RegisterWorkflow(const json::value& definition,
                                                  const std::string& tag,
                                                  workflow::Problems& problems) {
  if (!tag.empty() && !workflow::IsValidTagName(tag)) {
    problems.push_back({"/tag", "tag must match [a-z0-9][a-z0-9._-]{0,62}"});
    return InvalidArgument("invalid tag");
  }
  auto ir = workflow::Compile(definition, problems);
  if (ir == nullptr) return InvalidArgument("the definition is invalid");
  irs_.Put(ir);
  RegisterResponse resp{ir->name, ir->version, {"latest"}, false};
  if (!tag.empty() && tag != "latest") resp.tags.push_back(tag);
  auto existing = store_.GetWorkflowVersion(ir->name, ir->version);
  resp.created = !existing;
  storage::Batch batch;
  const Time now = clock_.Now();
  batch.workflow_versions.push_back({ir->name, ir->version, ir->definition, now});
  for (const std::string& t : resp.tags) batch.tags.push_back({ir->name, t, ir->version});
  json::array tags;
  for (const std::string& t : resp.tags) tags.emplace_back(t);
  storage::Event e;
  e.id = base::NewId("evt", clock_, random_);
  e.type = "workflow.registered";
  e.time = now;
  e.data = json::object{{"name", ir->name}, {"version", ir->version}, {"tags", std::move(tags)},
                        {"new_version", resp.created}};
  batch.events.push_back(std::move(e));
  VENTURE_ASSIGN_OR_RETURN(storage::AppendResult appended, store_.Append(std::move(batch)));
  for (const storage::Event& ev : appended.events) {
    (void)bus_.Publish(ev.type, storage::EventToJson(ev));
  }
  return resp;
}

Result<std::shared_ptr<const workflow::Ir>> Engine::Resolve(const std::string& ref) {
  const std::size_t at = ref.find('@');
  const std::string name = ref.substr(0, at);
  std::string selector = at == std::string::npos ? "latest" : ref.substr(at + 1);
  if (!workflow::IsValidWorkflowName(name)) {
    return InvalidArgument("'" + name + "' is not a valid workflow name");
  }
  std::string version = selector;
  if (!selector.starts_with("b2:")) {
    VENTURE_ASSIGN_OR_RETURN(std::vector<storage::TagRow> tags, store_.ListTags(name));
    version.clear();
    for (const auto& t : tags) {
      if (t.tag == selector) version = t.version;
    }
    if (version.empty()) {
      return NotFound("workflow '" + name + "' has no tag '" + selector + "'");
    }
  }
  auto ir = irs_.Find(name, version);
  if (ir == nullptr) return NotFound("workflow '" + name + "' has no version " + version);
  return ir;
}

Result<Engine::Request> Engine::PrepareStart(StartRequest request,
                                             workflow::Problems& problems) {
  Request r;
  r.kind = Request::Kind::kStart;
  if (!request.workflow.empty()) {
    VENTURE_ASSIGN_OR_RETURN(r.ir, Resolve(request.workflow));
  } else {
    r.ir = workflow::Compile(request.definition, problems);
    if (r.ir == nullptr) return InvalidArgument("the definition is invalid");
    irs_.Put(r.ir);
    r.register_version = !store_.GetWorkflowVersion(r.ir->name, r.ir->version);
  }
  if (request.inputs.is_null()) request.inputs = json::object();
  if (!request.inputs.is_object()) {
    problems.push_back({"/inputs", "inputs must be an object"});
    return InvalidArgument("invalid inputs");
  }
  workflow::ValidateInputs(*r.ir, request.inputs, problems);
  if (!problems.empty()) return InvalidArgument("the inputs do not match the workflow's schema");
  r.start = std::move(request);
  return r;
}

Result<StartResponse> Engine::StartRun(StartRequest request, workflow::Problems& problems) {
  VENTURE_ASSIGN_OR_RETURN(Request r, PrepareStart(std::move(request), problems));
  auto reply = r.reply;
  VENTURE_RETURN_IF_ERROR(Post(std::move(r)));
  return reply->start;
}

Status Engine::StartRunAsync(StartRequest request, workflow::Problems& problems,
                             std::function<void(Result<StartResponse>)> done) {
  VENTURE_ASSIGN_OR_RETURN(Request r, PrepareStart(std::move(request), problems));
  r.reply->callback = std::move(done);
  return Enqueue(std::move(r));
}

Status Engine::Cancel(const std::string& run, const std::string& reason) {
  Request r;
  r.kind = Request::Kind::kCommand;
  r.command = Command::kCancel;
  r.run = run;
  r.reason = reason;
  return Post(std::move(r));
}

Status Engine::Pause(const std::string& run, const std::string& reason) {
  Request r;
  r.kind = Request::Kind::kCommand;
  r.command = Command::kPause;
  r.run = run;
  r.reason = reason;
  return Post(std::move(r));
}

Status Engine::Resume(const std::string& run, const std::string& reason) {
  Request r;
  r.kind = Request::Kind::kCommand;
  r.command = Command::kResume;
  r.run = run;
  r.reason = reason;
  return Post(std::move(r));
}

Result<std::string> Engine::Patch(const std::string& run, const json::value& ops,
                                  const std::string& reason) {
  Request r;
  r.kind = Request::Kind::kPatch;
  r.run = run;
  r.ops = ops;
  r.reason = reason;
  auto reply = r.reply;
  VENTURE_RETURN_IF_ERROR(Post(std::move(r)));
  return reply->version;
}

Result<StartResponse> Engine::Replay(const std::string& run, const std::string& from_node) {
  Request r;
  r.kind = Request::Kind::kReplay;
  r.run = run;
  r.from_node = from_node;
  auto reply = r.reply;
  VENTURE_RETURN_IF_ERROR(Post(std::move(r)));
  return reply->start;
}

Status Engine::Freeze(const std::string& reason) {
  Request r;
  r.kind = Request::Kind::kFreeze;
  r.reason = reason;
  return Post(std::move(r));
}

Status Engine::Unfreeze() {
  Request r;
  r.kind = Request::Kind::kUnfreeze;
  return Post(std::move(r));
}

}  // namespace venture::engine
