// Goal: the real engine shell (Engine with Options{threaded = false}) over the in-memory store and
// bus finishes every run in exactly the state the reference model (model.h) predicts, with an
// exactly-once, hash-chain-verified history, despite crashes, lost, duplicated and reordered
// messages and failed appends.
//
// Method: deterministic simulation. Each "world" (one seed) is one store, one ManualClock and a
// sequence of Engine + bus incarnations. The test plays the clients (StartRun with idempotency
// keys, retried with the same key after kUnavailable, sometimes repeated after success) and the
// workers (Pull "tasks.<type>", decide the outcome from the workflow's outcome script, enqueue the
// result on engine::kResultsQueue, Ack). Faults, all drawn from the world's seed: a worker drops a
// task without acking (lease expiry redelivers it), sends the result and crashes before the ack,
// duplicates a result (with and without a dedup id), or holds it back and releases it later; the
// store fails appends at a rate; the engine crashes (Engine and bus destroyed, new ones created
// over the same store, Start() recovers). When nothing can move, the clock jumps to the next wake
// (engine timers, result and task leases). At the end: no unfinished run, store Verify() ok, every
// run's status and node statuses match the model, at most one settle event per node and per item.
//
// Reproduce a failing world with the printed command: VENTURE_SIM_SEED is the world's seed and
// VENTURE_SIM_RUNS the number of worlds (consecutive seeds).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <unordered_map>

#include "bus/bus.h"
#include "engine/engine.h"
#include "model.h"
#include "storage/storage.h"

namespace venture::sim {
namespace {

constexpr uint64_t kDefaultSeed = 7000;
constexpr int kDefaultWorlds = 100;
constexpr int kRunsPerWorld = 200;
constexpr Millis kTaskLease{1000};  // far below the nodes' 30 s timeout
const Time kStart = FromUnixMs(1'800'000'000'000);
const char* const kTaskTypes[] = {"noop", "fail", "transform"};

struct Faults {
  int drop_task = 0;        // percent of deliveries: worker crashes before doing anything
  int crash_after_send = 0; // percent: result sent, worker crashes before the ack
  int duplicate = 0;        // percent: result enqueued twice
  int hold = 0;             // percent: result held back and released later
  double append_failure = 0;
  int engine_crash_permille = 0;  // per loop iteration
};

Faults FaultsFor(base::Random& r) {
  Faults f;
  if (r.Uniform(5) == 0) {
    return f;  // a clean world now and then
  }
  f.drop_task = static_cast<int>(r.Uniform(8));
  f.crash_after_send = static_cast<int>(r.Uniform(5));
  f.duplicate = static_cast<int>(r.Uniform(10));
  f.hold = static_cast<int>(r.Uniform(15));
  f.append_failure = r.Uniform(3) == 0 ? 0.0 : 0.02 * static_cast<double>(r.Uniform(5));
  f.engine_crash_permille = static_cast<int>(r.Uniform(8));
  return f;
}

class World {
 public:
  explicit World(uint64_t seed)
      : seed_(seed), rnd_(seed), clock_(kStart), engine_random_(seed * 31 + 7) {
    faults_ = FaultsFor(rnd_);
    storage::Options so;
    std::array<uint8_t, 32> key_seed{};
    key_seed[0] = 1;
    so.signing_key = base::SigningKeyFromSeed(key_seed);
    so.fsync = false;
    store_ = storage::NewMemoryStore(so, clock_, engine_random_);
    if (faults_.append_failure > 0) {
      storage::SetMemoryFaults(*store_, {faults_.append_failure}, seed);
    }
    for (int i = 0; i < kRunsPerWorld; ++i) {
      specs_.push_back(Generate(rnd_, GenOptions{}));
    }
  }

  // "" when every check passes.
  std::string Run();
  int64_t events() const { return events_; }
  int crashes() const { return crashes_; }

 private:
  Status Boot();
  std::string StartNext();
  bool WorkerRound();
  void Handle(const bus::Delivery& d);
  void SendResult(const engine::TaskResult& r, bool duplicate);
  bool ReleaseHeld(bool all);
  std::string Check();
  std::string CheckRun(std::size_t i);

  uint64_t seed_;
  base::SeededRandom rnd_;
  base::ManualClock clock_;
  base::SeededRandom engine_random_;
  Faults faults_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<bus::Bus> bus_;
  std::unique_ptr<engine::Engine> engine_;
  std::vector<WorkflowSpec> specs_;
  std::vector<std::string> run_ids_;
  std::unordered_map<std::string, std::size_t> spec_of_;
  std::vector<json::value> held_;
  int64_t events_ = 0;
  int crashes_ = 0;
};

bool Chance(base::Random& r, int percent) { return static_cast<int>(r.Uniform(100)) < percent; }

Status World::Boot() {
  engine_.reset();
  bus_ = bus::NewMemoryBus(clock_);
  engine::Options o;
  o.threaded = false;
  o.snapshot_every_events = 1 + rnd_.Uniform(40);
  engine_ = std::make_unique<engine::Engine>(*store_, *bus_, clock_, engine_random_, o);
  return engine_->Start();
}

std::string World::StartNext() {
  const std::size_t i = run_ids_.size();
  engine::StartRequest req;
  req.definition = ToDefinition(specs_[i]);
  req.inputs = Inputs(specs_[i]);
  req.idempotency_key = "w" + std::to_string(seed_) + "-" + std::to_string(i);
  req.body_hash = "h" + std::to_string(i);
  std::string id;
  for (int attempt = 0; attempt < 1000 && id.empty(); ++attempt) {
    workflow::Problems problems;
    auto r = engine_->StartRun(req, problems);
    if (r) {
      id = r->id;
    } else if (r.error().code != Code::kUnavailable) {
      return "StartRun: " + r.error().ToString();
    }
  }
  if (id.empty()) {
    return "StartRun kept failing";
  }
  if (Chance(rnd_, 5)) {  // the client lost the response and asks again with the same key
    workflow::Problems problems;
    auto again = engine_->StartRun(req, problems);
    if (again && (again->id != id || !again->existing)) {
      return "a repeated idempotency key started another run " + again->id;
    }
  }
  run_ids_.push_back(id);
  spec_of_[id] = i;
  return "";
}

void World::SendResult(const engine::TaskResult& r, bool duplicate) {
  const std::string dedup = duplicate && Chance(rnd_, 50) ? "" :
      "r/" + r.run + "/" + r.node + "/" + std::to_string(r.index) + "/" + std::to_string(r.attempt);
  (void)bus_->Enqueue(engine::kResultsQueue, dedup, engine::EncodeResult(r));
}

void World::Handle(const bus::Delivery& d) {
  if (Chance(rnd_, faults_.drop_task)) {
    return;  // crashed before executing: the lease expires and the task comes back
  }
  auto task = engine::DecodeTask(d.payload);
  VENTURE_CHECK(task.has_value());
  const WorkflowSpec& spec = specs_[spec_of_.at(task->run)];
  const int node = std::stoi(task->node.substr(1));
  const Outcome o = OutcomeOf(spec, node, task->index, task->attempt);
  if (o == Outcome::kHang) {
    (void)bus_->Ack(d);  // the executor hangs and gives up silently: the deadline fires
    return;
  }
  engine::TaskResult r;
  r.run = task->run;
  r.node = task->node;
  r.index = task->index;
  r.iteration = task->index >= 0 ? 0 : task->iteration;
  r.attempt = task->attempt;
  r.ok = o == Outcome::kOk;
  if (r.ok) {
    r.output = OutputOf(spec, node, task->index);
  } else {
    r.error_code = ErrorCode(o);
    r.error_message = "scripted";
    r.retryable = Retryable(o);
  }
  if (Chance(rnd_, faults_.hold)) {
    held_.push_back(engine::EncodeResult(r));
  } else {
    SendResult(r, false);
  }
  if (Chance(rnd_, faults_.duplicate)) {
    SendResult(r, true);
  }
  if (Chance(rnd_, faults_.crash_after_send)) {
    return;  // result sent, no ack: the task is redelivered and executed again
  }
  (void)bus_->Ack(d);
}

bool World::WorkerRound() {
  bool any = false;
  for (const char* type : kTaskTypes) {
    auto got = bus_->Pull(engine::TaskQueue(type), 64, kTaskLease);
    VENTURE_CHECK(got.has_value());
    for (const bus::Delivery& d : *got) {
      Handle(d);
      any = true;
    }
  }
  return any;
}

bool World::ReleaseHeld(bool all) {
  bool any = false;
  for (std::size_t k = 0; k < held_.size();) {
    if (all || Chance(rnd_, 30)) {
      (void)bus_->Enqueue(engine::kResultsQueue, "", std::move(held_[k]));
      held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(k));
      any = true;
    } else {
      ++k;
    }
  }
  return any;
}

std::string World::Run() {
  if (auto st = Boot(); !st) {
    return "Start: " + st.error().ToString();
  }
  for (int64_t loop = 0;; ++loop) {
    if (loop > 2'000'000) {
      return "the world does not settle";
    }
    bool progress = false;
    if (run_ids_.size() < specs_.size() && Chance(rnd_, 40)) {
      if (std::string why = StartNext(); !why.empty()) {
        return why;
      }
      progress = true;
    }
    progress = engine_->Step() > 0 || progress;
    progress = WorkerRound() || progress;
    progress = (!held_.empty() && ReleaseHeld(!progress)) || progress;
    if (static_cast<int>(rnd_.Uniform(1000)) < faults_.engine_crash_permille) {
      ++crashes_;
      if (auto st = Boot(); !st) {
        return "restart: " + st.error().ToString();
      }
      continue;
    }
    if (progress || run_ids_.size() < specs_.size()) {
      continue;
    }
    std::optional<Time> wake = engine_->NextWake();
    for (const char* type : kTaskTypes) {
      auto t = bus_->NextWake(engine::TaskQueue(type));
      if (t && (!wake || *t < *wake)) {
        wake = t;
      }
    }
    if (!wake) {
      break;
    }
    clock_.Set(std::max(clock_.Now() + Millis(1), *wake));
  }
  return Check();
}

std::string World::CheckRun(std::size_t i) {
  const std::string& id = run_ids_[i];
  const WorkflowSpec& spec = specs_[i];
  auto row = store_->GetRun(id);
  auto nodes = store_->GetNodes(id);
  if (!row || !nodes) {
    return "run " + id + " has no projection rows";
  }
  Observed seen;
  seen.run = row->status;
  std::map<std::string, std::string> by_id;
  for (const storage::NodeRow& n : *nodes) {
    by_id[n.node] = n.status;
  }
  for (const NodeSpec& n : spec.nodes) {
    seen.nodes.push_back(by_id.count(n.id) ? by_id[n.id] : "missing");
  }
  if (const json::object* err = row->error.if_object()) {
    seen.error_node = base::StringOr(*err, "node", "");
  }
  std::string why = CheckFinal(spec, Predict(spec), seen);
  if (!why.empty()) {
    return "run " + id + " (workflow " + std::to_string(i) + "): " + why + "\n  definition: " +
           base::CompactJson(ToDefinition(spec));
  }
  storage::EventFilter f;
  f.run = id;
  f.limit = limits::kReadPageMax;
  auto events = store_->ReadEvents(f);
  if (!events) {
    return "ReadEvents: " + events.error().ToString();
  }
  events_ += static_cast<int64_t>(events->size());
  std::map<std::string, int> settles;
  for (const storage::Event& e : *events) {
    const bool node_settle = e.type == "node.succeeded" || e.type == "node.failed" ||
                             e.type == "node.skipped" || e.type == "node.cancelled";
    const bool item_settle = e.type == "node.item_succeeded" || e.type == "node.item_failed";
    const json::object* data = e.data.if_object();
    const int64_t index = data ? base::IntOr(*data, "index", -1) : -1;
    if ((node_settle && ++settles[e.node] > 1) ||
        (item_settle && ++settles[e.node + "#" + std::to_string(index)] > 1)) {
      return "run " + id + ": " + e.node + " settles twice (" + e.type + ")";
    }
  }
  return "";
}

std::string World::Check() {
  auto active = store_->ListActiveRuns();
  if (!active || !active->empty()) {
    return "runs left unfinished: " + std::to_string(active ? active->size() : 0);
  }
  auto report = store_->Verify();
  if (!report || !report->ok) {
    return "store Verify fails: " + (report ? report->reason : report.error().ToString());
  }
  for (std::size_t i = 0; i < run_ids_.size(); ++i) {
    if (std::string why = CheckRun(i); !why.empty()) {
      return why;
    }
  }
  return "";
}

TEST(EngineSimTest, RandomWorldsMatchTheReferenceModel) {
  base::SetLogLevel(base::LogLevel::kError);  // injected faults log warnings by design
  const uint64_t base_seed = EnvSeed(kDefaultSeed);
  const int worlds = EnvRuns(kDefaultWorlds);
  base::RealClock real;
  const int64_t started = real.MonotonicNs();
  int64_t events = 0;
  int crashes = 0;
  int failed = 0;
  for (int w = 0; w < worlds && failed < 3; ++w) {
    const uint64_t seed = base_seed + static_cast<uint64_t>(w);
    World world(seed);
    const std::string why = world.Run();
    events += world.events();
    crashes += world.crashes();
    if (!why.empty()) {
      ++failed;
      ADD_FAILURE() << "world seed " << seed << ": " << why << "\n  reproduce: VENTURE_SIM_SEED="
                    << seed << " VENTURE_SIM_RUNS=1 build/h-sim/tests/sim/engine_sim_test";
    }
  }
  const double secs = static_cast<double>(real.MonotonicNs() - started) / 1e9;
  std::printf("sim: %d worlds x %d runs from seed %llu: %lld events, %d engine crashes, "
              "%d failed worlds, %.1f s\n",
              worlds, kRunsPerWorld, static_cast<unsigned long long>(base_seed),
              static_cast<long long>(events), crashes, failed, secs);
}

}  // namespace
}  // namespace venture::sim
