// Goal: the real engine shell (Engine with Options{threaded = false}) over the in-memory store and
// bus finishes every run in exactly the state the reference model (model.h) predicts, with an
// exactly-once, hash-chain-verified history, despite crashes, lost, duplicated and reordered
// messages and failed appends.
//
// Method: deterministic simulation. Each "world" (one seed) is one store, one ManualClock and a
// sequence of Engine + bus incarnations. The test plays the clients (StartRun with idempotency
// keys, retried with the same key after kUnavailable, sometimes repeated after success) and the
// workers (Pull "tasks.<type>", decide the outcome from the workflow's outcome script, enqueue the
// result on engine::kResultsQueue, Ack; the outcome and output depend on the task's repeat
// iteration). Faults, all drawn from the world's seed: a worker drops a task without acking (lease
// expiry redelivers it), sends the result and crashes before the ack, duplicates a result (with
// and without a dedup id), holds it back and releases it later, or forges a result that names an
// iteration other than the task's (an earlier one of a repeat node, or iteration 1 of a node
// without repeat) with the opposite outcome, which the engine must ignore; the store fails appends
// at a rate; the engine crashes (Engine and bus destroyed, new ones created over the same store,
// start() recovers). The driver also plays the operator: it freezes and unfreezes the engine at
// random points (the freeze outlives engine crashes: it is a store setting), patches running runs
// with a new noop node that needs a settled node or nothing (the run's spec grows with it, so the
// model predicts the new node too), and checks that a patch changing a settled node is refused
// with kFailedPrecondition and leaves the run's version alone. It also plays the people: about 8%
// of the nodes are approval nodes (plain or foreach, quorum 1 or 2) whose plan is to approve or
// reject by vote, or to let the durable timeout decide (approve/reject/fail); voters pick pending
// approvals from the store's projection and vote (distinct names until the quorum), and now and
// then a voter who is not an approver or who votes twice must be refused (kPermissionDenied /
// kFailedPrecondition) with no effect. When nothing can move, the clock
// jumps to the next wake (engine timers, result and task leases), or a frozen engine is unfrozen.
// At the end: the engine is unfrozen, no unfinished run, store verify() ok, every run's status and
// node statuses match the model, at most one settle event per node and per item, and in the
// global event log no node.started or run.started lies between a control.frozen and the next
// control.unfrozen, whose counts match the freezes and unfreezes that succeeded; no approval
// is left pending.
//
// Reproduce a failing world with the printed command: VENTURE_SIM_SEED is the world's seed and
// VENTURE_SIM_RUNS the number of worlds (consecutive seeds).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
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
const Time kStart = from_unix_ms(1'800'000'000'000);
const char* const kTaskTypes[] = {"noop", "fail", "transform"};

struct Faults {
  int drop_task = 0;         // percent of deliveries: worker crashes before doing anything
  int crash_after_send = 0;  // percent: result sent, worker crashes before the ack
  int duplicate = 0;         // percent: result enqueued twice
  int hold = 0;              // percent: result held back and released later
  int stale = 0;             // percent: a forged result of another iteration comes first
  double append_failure = 0;
  int engine_crash_permille = 0;  // per loop iteration
  int freeze_permille = 0;        // per loop iteration while unfrozen
  int patch_permille = 0;         // per loop iteration
};

Faults faults_for(base::Random& r) {
  Faults f;
  if (r.uniform(5) == 0) {
    return f;  // a clean world now and then
  }
  f.drop_task = static_cast<int>(r.uniform(8));
  f.crash_after_send = static_cast<int>(r.uniform(5));
  f.duplicate = static_cast<int>(r.uniform(10));
  f.hold = static_cast<int>(r.uniform(15));
  f.stale = static_cast<int>(r.uniform(20));
  f.append_failure = r.uniform(3) == 0 ? 0.0 : 0.02 * static_cast<double>(r.uniform(5));
  f.engine_crash_permille = static_cast<int>(r.uniform(8));
  f.freeze_permille = static_cast<int>(r.uniform(5));
  f.patch_permille = static_cast<int>(r.uniform(30));
  return f;
}

class World {
 public:
  explicit World(uint64_t seed)
      : seed_(seed), rnd_(seed), clock_(kStart), engine_random_(seed * 31 + 7) {
    faults_ = faults_for(rnd_);
    storage::Options so;
    std::array<uint8_t, 32> key_seed{};
    key_seed[0] = 1;
    so.signing_key = base::signing_key_from_seed(key_seed);
    so.fsync = false;
    store_ = storage::new_memory_store(so, clock_, engine_random_);
    if (faults_.append_failure > 0) {
      storage::set_memory_faults(*store_, {faults_.append_failure}, seed);
    }
    for (int i = 0; i < kRunsPerWorld; ++i) {
      GenOptions g;
      g.approval_percent = 8;
      specs_.push_back(generate(rnd_, g));
    }
  }

  // "" when every check passes.
  std::string run();
  int64_t events() const { return events_; }
  int64_t repeats() const { return repeats_; }
  int crashes() const { return crashes_; }
  int freezes() const { return freezes_; }
  int patches() const { return patches_; }
  int stale() const { return stale_; }
  int votes() const { return votes_; }
  int refusals() const { return refusals_; }

 private:
  Status boot();
  std::string start_next();
  bool worker_round();
  void handle(const bus::Delivery& d);
  void send_result(const engine::TaskResult& r, bool duplicate);
  void send_stale(const engine::TaskResult& r, bool repeat);
  bool release_held(bool all);
  std::string vote_round(bool all, bool& progress);
  std::string toggle_freeze();
  std::string patch_some();
  std::string patch_settled(std::size_t i, const std::vector<int>& settled);
  std::optional<Time> next_wake();
  std::string check();
  std::string check_run(std::size_t i);
  std::string check_freeze();

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
  int64_t repeats_ = 0;  // node.repeating events: a repeat node began another iteration
  int crashes_ = 0;
  int votes_ = 0;     // decisions the voters recorded
  int refusals_ = 0;  // votes the engine refused as it should (not an approver, twice)
  bool frozen_ = false;  // the last Freeze/Unfreeze that succeeded
  int freezes_ = 0;      // successful Freeze calls
  int unfreezes_ = 0;
  int patches_ = 0;  // nodes patched in
  int stale_ = 0;    // forged results of another iteration
};

bool chance(base::Random& r, int percent) { return static_cast<int>(r.uniform(100)) < percent; }

Status World::boot() {
  engine_.reset();
  bus_ = bus::new_memory_bus(clock_);
  engine::Options o;
  o.threaded = false;
  o.snapshot_every_events = 1 + rnd_.uniform(40);
  engine_ = std::make_unique<engine::Engine>(*store_, *bus_, clock_, engine_random_, o);
  return engine_->start();
}

std::string World::start_next() {
  const std::size_t i = run_ids_.size();
  engine::StartRequest req;
  req.definition = to_definition(specs_[i]);
  req.inputs = inputs(specs_[i]);
  req.idempotency_key = "w" + std::to_string(seed_) + "-" + std::to_string(i);
  req.body_hash = "h" + std::to_string(i);
  std::string id;
  for (int attempt = 0; attempt < 1000 && id.empty(); ++attempt) {
    workflow::Problems problems;
    auto r = engine_->start_run(req, problems);
    if (r) {
      id = r->id;
    } else if (r.error().code != Code::kUnavailable) {
      return "StartRun: " + r.error().to_string();
    }
  }
  if (id.empty()) {
    return "StartRun kept failing";
  }
  if (chance(rnd_, 5)) {  // the client lost the response and asks again with the same key
    workflow::Problems problems;
    auto again = engine_->start_run(req, problems);
    if (again && (again->id != id || !again->existing)) {
      return "a repeated idempotency key started another run " + again->id;
    }
  }
  run_ids_.push_back(id);
  spec_of_[id] = i;
  return "";
}

void World::send_result(const engine::TaskResult& r, bool duplicate) {
  const std::string dedup =
      duplicate && chance(rnd_, 50)
          ? ""
          : engine::attempt_key(r.run, r.node, r.index, r.iteration, r.attempt);
  (void)bus_->enqueue(engine::kResultsQueue, dedup, engine::encode_result(r));
}

// A result of the same attempt number in an iteration that is not the task's, with the opposite
// outcome: an earlier iteration of a repeat node (iterations only grow, so it is stale for good),
// or iteration 1 of a node without repeat (which never has one).
void World::send_stale(const engine::TaskResult& r, bool repeat) {
  if (repeat && r.iteration == 0) {
    return;
  }
  engine::TaskResult forged = r;
  forged.iteration =
      repeat ? static_cast<int>(rnd_.uniform(static_cast<uint64_t>(r.iteration))) : r.iteration + 1;
  forged.ok = !r.ok;
  forged.output = "done";
  forged.error_code = forged.ok ? "" : "permanent";
  forged.error_message = "forged";
  forged.retryable = false;
  ++stale_;
  (void)bus_->enqueue(engine::kResultsQueue, "", engine::encode_result(forged));
}

void World::handle(const bus::Delivery& d) {
  if (chance(rnd_, faults_.drop_task)) {
    return;  // crashed before executing: the lease expires and the task comes back
  }
  auto task = engine::decode_task(d.payload);
  VENTURE_CHECK(task.has_value());
  const WorkflowSpec& spec = specs_[spec_of_.at(task->run)];
  const int node = std::stoi(task->node.substr(1));
  const int iteration = task->index >= 0 ? 0 : task->iteration;
  const Outcome o = outcome_of(spec, node, task->index, iteration, task->attempt);
  if (o == Outcome::kHang) {
    (void)bus_->ack(d);  // the executor hangs and gives up silently: the deadline fires
    return;
  }
  engine::TaskResult r;
  r.run = task->run;
  r.node = task->node;
  r.index = task->index;
  r.iteration = iteration;
  r.attempt = task->attempt;
  r.ok = o == Outcome::kOk;
  if (r.ok) {
    r.output = output_of(spec, node, task->index, iteration);
  } else {
    r.error_code = error_code(o);
    r.error_message = "scripted";
    r.retryable = retryable(o);
  }
  if (task->index < 0 && chance(rnd_, faults_.stale)) {
    send_stale(r, spec.nodes[static_cast<std::size_t>(node)].repeat);
  }
  if (chance(rnd_, faults_.hold)) {
    held_.push_back(engine::encode_result(r));
  } else {
    send_result(r, false);
  }
  if (chance(rnd_, faults_.duplicate)) {
    send_result(r, true);
  }
  if (chance(rnd_, faults_.crash_after_send)) {
    return;  // result sent, no ack: the task is redelivered and executed again
  }
  (void)bus_->ack(d);
}

bool World::worker_round() {
  bool any = false;
  for (const char* type : kTaskTypes) {
    auto got = bus_->pull(engine::task_queue(type), 64, kTaskLease);
    VENTURE_CHECK(got.has_value());
    for (const bus::Delivery& d : *got) {
      handle(d);
      any = true;
    }
  }
  return any;
}

bool World::release_held(bool all) {
  bool any = false;
  for (std::size_t k = 0; k < held_.size();) {
    if (all || chance(rnd_, 30)) {
      (void)bus_->enqueue(engine::kResultsQueue, "", std::move(held_[k]));
      held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(k));
      any = true;
    } else {
      ++k;
    }
  }
  return any;
}

std::string World::toggle_freeze() {
  const Status st = frozen_ ? engine_->unfreeze() : engine_->freeze("sim");
  if (!st) {
    // kUnavailable: the append failed and nothing was written; the caller tries again later.
    return st.error().code == Code::kUnavailable ? "" : "freeze: " + st.error().to_string();
  }
  frozen_ = !frozen_;
  ++(frozen_ ? freezes_ : unfreezes_);
  if (engine_->frozen() != frozen_) {
    return "Engine::frozen() disagrees after a successful Freeze/Unfreeze";
  }
  return "";
}

// Patches a random unfinished run: a new noop node that needs a settled node (or nothing), or
// (see PatchSettled) a change to a settled node that must be refused.
std::string World::patch_some() {
  if (run_ids_.empty()) {
    return "";
  }
  const std::size_t i = rnd_.uniform(run_ids_.size());
  const std::string& id = run_ids_[i];
  auto row = store_->get_run(id);
  auto nodes = store_->get_nodes(id);
  if (!row || !nodes || storage::is_terminal_run_status(row->status)) {
    return "";
  }
  std::vector<int> settled;
  for (const storage::NodeRow& n : *nodes) {
    if (n.status == "succeeded" || n.status == "failed" || n.status == "skipped") {
      settled.push_back(std::stoi(n.node.substr(1)));
    }
  }
  if (!settled.empty() && chance(rnd_, 30)) {
    return patch_settled(i, settled);
  }
  WorkflowSpec next = specs_[i];
  const int need = settled.empty() || chance(rnd_, 25) ? -1 : settled[rnd_.uniform(settled.size())];
  next.nodes.push_back(added_node(next, need));
  const json::value ops = json::array{
      json::object{{"op", "add"},
                   {"path", "/nodes/-"},
                   {"value", node_definition(next, static_cast<int>(next.nodes.size()) - 1)}}};
  auto version = engine_->patch(id, ops, "sim");
  if (!version) {
    return version.error().code == Code::kUnavailable
               ? ""
               : "run " + id + ": a patch adding a node failed: " + version.error().to_string();
  }
  specs_[i] = std::move(next);
  ++patches_;
  return "";
}

std::string World::patch_settled(std::size_t i, const std::vector<int>& settled) {
  const std::string& id = run_ids_[i];
  const int node = settled[rnd_.uniform(settled.size())];
  const json::value ops =
      json::array{json::object{{"op", "replace"},
                               {"path", "/nodes/" + std::to_string(node) + "/timeout"},
                               {"value", "45s"}}};
  auto before = store_->get_run(id);
  auto version = engine_->patch(id, ops, "sim");
  auto after = store_->get_run(id);
  if (version) {
    return "run " + id + ": a patch changing settled node n" + std::to_string(node) +
           " was applied";
  }
  if (version.error().code != Code::kFailedPrecondition) {
    return "run " + id + ": a patch changing a settled node failed with " +
           version.error().to_string();
  }
  if (!before || !after || before->version != after->version) {
    return "run " + id + ": a refused patch changed the run's version";
  }
  return "";
}

std::optional<Time> World::next_wake() {
  std::optional<Time> wake = engine_->next_wake();
  for (const char* type : kTaskTypes) {
    auto t = bus_->next_wake(engine::task_queue(type));
    if (t && (!wake || *t < *wake)) {
      wake = t;
    }
  }
  return wake;
}

std::string World::run() {
  if (auto st = boot(); !st) {
    return "Start: " + st.error().to_string();
  }
  for (int64_t loop = 0;; ++loop) {
    if (loop > 2'000'000) {
      return "the world does not settle";
    }
    bool progress = false;
    if (run_ids_.size() < specs_.size() && chance(rnd_, 40)) {
      if (std::string why = start_next(); !why.empty()) {
        return why;
      }
      progress = true;
    }
    const uint64_t freeze_roll = rnd_.uniform(1000);
    if (freeze_roll < static_cast<uint64_t>(frozen_ ? 30 : faults_.freeze_permille)) {
      if (std::string why = toggle_freeze(); !why.empty()) {
        return why;
      }
    }
    if (static_cast<int>(rnd_.uniform(1000)) < faults_.patch_permille) {
      if (std::string why = patch_some(); !why.empty()) {
        return why;
      }
    }
    progress = engine_->step() > 0 || progress;
    progress = worker_round() || progress;
    progress = (!held_.empty() && release_held(!progress)) || progress;
    if (std::string why = vote_round(!progress, progress); !why.empty()) {
      return why;
    }
    if (static_cast<int>(rnd_.uniform(1000)) < faults_.engine_crash_permille) {
      ++crashes_;
      if (auto st = boot(); !st) {
        return "restart: " + st.error().to_string();
      }
      continue;
    }
    if (progress || run_ids_.size() < specs_.size()) {
      continue;
    }
    const std::optional<Time> wake = next_wake();
    if (frozen_ && (!wake || chance(rnd_, 50))) {
      if (std::string why = toggle_freeze(); !why.empty()) {
        return why;
      }
      continue;
    }
    if (!wake) {
      break;
    }
    clock_.set(std::max(clock_.now() + Millis(1), *wake));
  }
  return check();
}

std::string World::check_run(std::size_t i) {
  const std::string& id = run_ids_[i];
  const WorkflowSpec& spec = specs_[i];
  auto row = store_->get_run(id);
  auto nodes = store_->get_nodes(id);
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
    seen.error_node = base::string_or(*err, "node", "");
  }
  std::string why = check_final(spec, predict(spec), seen);
  if (!why.empty()) {
    return "run " + id + " (workflow " + std::to_string(i) + "): " + why +
           "\n  definition: " + base::compact_json(to_definition(spec));
  }
  storage::EventFilter f;
  f.run = id;
  f.limit = limits::kReadPageMax;
  auto events = store_->read_events(f);
  if (!events) {
    return "ReadEvents: " + events.error().to_string();
  }
  events_ += static_cast<int64_t>(events->size());
  std::map<std::string, int> settles;
  for (const storage::Event& e : *events) {
    repeats_ += e.type == "node.repeating" ? 1 : 0;
    const bool node_settle = e.type == "node.succeeded" || e.type == "node.failed" ||
                             e.type == "node.skipped" || e.type == "node.cancelled";
    const bool item_settle = e.type == "node.item_succeeded" || e.type == "node.item_failed";
    const json::object* data = e.data.if_object();
    const int64_t index = data ? base::int_or(*data, "index", -1) : -1;
    if ((node_settle && ++settles[e.node] > 1) ||
        (item_settle && ++settles[e.node + "#" + std::to_string(index)] > 1)) {
      return "run " + id + ": " + e.node + " settles twice (" + e.type + ")";
    }
  }
  return "";
}

// The kill switch, from the global event log: while frozen (between a control.frozen and the next
// control.unfrozen, by seq) no task is dispatched (node.started) and no run starts (run.started).
std::string World::check_freeze() {
  storage::EventFilter f;
  f.limit = limits::kReadPageMax;
  bool frozen = false;
  int freezes = 0;
  int unfreezes = 0;
  while (true) {
    auto events = store_->read_events(f);
    if (!events) {
      return "ReadEvents: " + events.error().to_string();
    }
    for (const storage::Event& e : *events) {
      if (e.type == "control.frozen" || e.type == "control.unfrozen") {
        frozen = e.type == "control.frozen";
        ++(frozen ? freezes : unfreezes);
      } else if (frozen && (e.type == "node.started" || e.type == "run.started")) {
        return "event seq " + std::to_string(e.seq) + " " + e.type + " of run " + e.run +
               " lies inside a freeze";
      }
    }
    if (events->size() < f.limit) {
      break;
    }
    f.after_seq = events->back().seq;
  }
  if (frozen || frozen_ || engine_->frozen()) {
    return "the world ends frozen";
  }
  if (freezes != freezes_ || unfreezes != unfreezes_) {
    return "the log holds " + std::to_string(freezes) + " freezes and " +
           std::to_string(unfreezes) + " unfreezes, the driver made " + std::to_string(freezes_) +
           " and " + std::to_string(unfreezes_);
  }
  return "";
}

// The people: in 30% of the rounds (every round when nothing else moves) the plan of each
// pending approval's node decides. kApprove/kReject plans vote (distinct voters until the quorum
// or the first rejection); kTimeout* plans never vote and let the durable timer decide. Now and
// then a voter who is not an approver, or one voting twice, must be refused without effect.
std::string World::vote_round(bool all, bool& progress) {
  // The people look now and then (every round when nothing else moves): one read of the
  // projection per look, not per loop iteration.
  if (!all && !chance(rnd_, 30)) return "";
  storage::ApprovalFilter f;
  f.status = "pending";
  f.limit = 500;
  auto page = store_->list_approvals(f);
  if (!page) return "";  // an injected store fault: try again next round
  for (const storage::ApprovalRow& a : page->items) {
    const auto it = spec_of_.find(a.run);
    if (it == spec_of_.end()) return "an approval of an unknown run " + a.run;
    const WorkflowSpec& spec = specs_[it->second];
    const NodeSpec* node = nullptr;
    for (const NodeSpec& n : spec.nodes) {
      if (n.id == a.node) node = &n;
    }
    if (node == nullptr || node->type != "approval") {
      return "approval " + a.id + " of node " + a.node + " which is not an approval node";
    }
    if (node->plan != ApprovalPlan::kApprove && node->plan != ApprovalPlan::kReject) continue;
    const std::size_t voted = a.decisions.is_array() ? a.decisions.as_array().size() : 0;
    engine::Vote v;
    v.approval = a.id;
    v.decision = node->plan == ApprovalPlan::kApprove ? "approve" : "reject";
    v.role = "approver";
    v.by = "voter" + std::to_string(voted);
    const int roll = static_cast<int>(rnd_.uniform(100));
    Code expected = Code::kOk;
    if (roll < 8) {
      v.role = "viewer";  // not among the approvers
      expected = Code::kPermissionDenied;
    } else if (roll < 16 && voted > 0) {
      v.by = "voter0";  // voted already
      expected = Code::kFailedPrecondition;
    }
    auto r = engine_->decide_approval(v);
    if (r && expected == Code::kOk) {
      ++votes_;
      progress = true;
    } else if (!r && r.error().code == expected) {
      ++refusals_;
    } else if (!r && (r.error().code == Code::kUnavailable ||
                      r.error().code == Code::kFailedPrecondition)) {
      // a failed append (nothing written), or the run ended meanwhile (a failure elsewhere
      // closed the approval): the list is a snapshot
    } else {
      return "decide_approval(" + v.by + " as " + v.role + ") on " + a.id + ": expected " +
             std::to_string(static_cast<int>(expected)) + ", got " +
             (r ? std::string("ok") : r.error().to_string());
    }
  }
  return "";
}

std::string World::check() {
  auto active = store_->list_active_runs();
  if (!active || !active->empty()) {
    return "runs left unfinished: " + std::to_string(active ? active->size() : 0);
  }
  auto report = store_->verify();
  if (!report || !report->ok) {
    return "store Verify fails: " + (report ? report->reason : report.error().to_string());
  }
  for (std::size_t i = 0; i < run_ids_.size(); ++i) {
    if (std::string why = check_run(i); !why.empty()) {
      return why;
    }
  }
  storage::ApprovalFilter pending;
  pending.status = "pending";
  auto left = store_->list_approvals(pending);
  if (!left || !left->items.empty()) {
    return "approvals left pending after every run finished: " +
           (left ? left->items.front().id : left.error().to_string());
  }
  return check_freeze();
}

TEST(EngineSimTest, RandomWorldsMatchTheReferenceModel) {
  base::set_log_level(base::LogLevel::kError);  // injected faults log warnings by design
  const uint64_t base_seed = env_seed(kDefaultSeed);
  const int worlds = env_runs(kDefaultWorlds);
  base::RealClock real;
  const int64_t started = real.monotonic_ns();
  int64_t events = 0;
  int64_t repeats = 0;
  int crashes = 0;
  int freezes = 0;
  int patches = 0;
  int stale = 0;
  int votes = 0;
  int refusals = 0;
  int failed = 0;
  for (int w = 0; w < worlds && failed < 3; ++w) {
    const uint64_t seed = base_seed + static_cast<uint64_t>(w);
    World world(seed);
    const std::string why = world.run();
    events += world.events();
    repeats += world.repeats();
    crashes += world.crashes();
    freezes += world.freezes();
    patches += world.patches();
    stale += world.stale();
    votes += world.votes();
    refusals += world.refusals();
    if (!why.empty()) {
      ++failed;
      ADD_FAILURE() << "world seed " << seed << ": " << why
                    << "\n  reproduce: VENTURE_SIM_SEED=" << seed << " VENTURE_SIM_RUNS=1 "
                    << ::testing::internal::GetArgvs()[0];
    }
  }
  const double secs = static_cast<double>(real.monotonic_ns() - started) / 1e9;
  std::printf(
      "sim: %d worlds x %d runs from seed %llu: %lld events (%lld repeat iterations), "
      "%d engine crashes, %d freezes, %d patched nodes, %d forged stale results, "
      "%d approval votes (%d refused as they should be), %d failed worlds, %.1f s\n",
      worlds, kRunsPerWorld, static_cast<unsigned long long>(base_seed),
      static_cast<long long>(events), static_cast<long long>(repeats), crashes, freezes, patches,
      stale, votes, refusals, failed, secs);
}

}  // namespace
}  // namespace venture::sim
