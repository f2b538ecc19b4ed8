// engine: event-sourced runs. The pure core (RunState, Apply, Decide*; see core.h) and the shell
// around it (Engine) that owns the active runs, turns triggers (requests, task results, timers)
// into decisions, appends each step's events in one group commit, then carries out the commands:
// tasks onto the bus, timers into a heap, events published on the bus.
//
// Ownership and threading: an Engine owns its active runs; exactly one thread (the engine loop,
// or the caller of step() when Options::threaded is false) touches them, so they need no lock.
// The public request methods are thread-safe: they post to a bounded inbox and wait until the
// step that handled them has committed. With threaded = false, a request method drives step()
// itself, so a deterministic driver (the simulation) can call it inline.
//
// Task protocol (bus): the engine enqueues TaskMessage JSON on "tasks.<type>" (dedup id
// "<run>/<node>/<index>/<attempt>"); a worker executes it and enqueues a ResultMessage on
// kResultsQueue. Committed events are published on the bus with the event type as subject.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/base.h"
#include "bus/bus.h"
#include "engine/core.h"
#include "storage/storage.h"
#include "workflow/workflow.h"

namespace venture::engine {

inline constexpr std::string_view kResultsQueue = "engine.results";
std::string task_queue(std::string_view type);  // "tasks.<type>"

json::value encode_task(const Dispatch& d);
[[nodiscard]] Result<Dispatch> decode_task(const json::value& v);
json::value encode_result(const TaskResult& r);
[[nodiscard]] Result<TaskResult> decode_result(const json::value& v);

// Cluster mode (docs/cluster.md): several engine processes share one store and bus. The store's
// log partitions are owned through leases in the bus's KV bucket "owners" (key "p<N>", value the
// engine id; the bucket's ttl is the lease), renewed every lease/4; an owner drives exactly the
// runs of its partitions and fences its appends with the lease revision (storage::Fence), so an
// engine whose lease moved on can write nothing. Requests for runs of partitions this engine does
// not own are forwarded over the bus to the owner ("engine.requests.<p>", answered on
// "engine.replies.<id>"), and task results come back on the partition's "engine.results.<p>".
struct ClusterOptions {
  bool enabled = false;
  std::string id;     // this engine's id, [A-Za-z0-9_-]+; stable across restarts of one process
  bool drive = true;  // false: own no partition, forward every run request (an api-only process)
  Millis lease = limits::kOwnershipLease;
  Millis forward_timeout = limits::kForwardTimeout;
};

struct Options {
  bool threaded = true;
  ClusterOptions cluster;
  std::size_t snapshot_every_events = limits::kSnapshotEveryEvents;
  Millis result_lease{30000};
  std::size_t step_triggers_max = limits::kStepTriggersMax;
  // Adds `links` to each approval.requested event before it is written: given the run id and the
  // event's data, returns [{user, url, expires}] (the api's signed approval links). Optional.
  std::function<json::array(const std::string& run, const json::object& requested)> approval_links;
};

struct StartRequest {
  std::string workflow;         // "name", "name@tag" or "name@b2:…"; or empty with `definition`
  json::value definition;       // an inline definition (registered, tags untouched)
  json::value inputs;           // object (null = {})
  std::string idempotency_key;  // "" = none; scoped by the caller
  std::string body_hash;        // what the key promises: same key + other hash -> error
  std::string by;               // who starts it (token name; "" when unknown)
};

struct StartResponse {
  std::string id;
  std::string status;
  std::string workflow;
  std::string version;
  bool existing = false;  // an idempotent repeat
  std::string replay_of;
};

struct RegisterResponse {
  std::string name;
  std::string version;
  std::vector<std::string> tags;
  bool created = false;  // a new version
};

// A patch proposal (SPEC §3 `POST /v1/runs/{id}/patches`).
struct PatchRequest {
  std::string run;
  json::value ops;  // RFC 6902 operations against the run's current definition
  std::string reason;
  std::string by;       // who proposes (token name); recorded in the row and the events
  bool review = false;  // true: leave it pending_approval; false: apply at once
};

struct PatchResponse {
  std::string id;       // "pat_…"
  std::string status;   // applied|pending_approval|rejected
  std::string version;  // the run's version after apply; "" otherwise
};

struct EngineStats {
  int64_t steps = 0;
  int64_t appends = 0;
  int64_t events = 0;
  int64_t active_runs = 0;
  int64_t owned_partitions = 0;  // cluster mode; every partition (1) otherwise
  int64_t forwarded = 0;         // requests sent to the owning engine (cluster mode)
};

// "engine.results" (one queue) or, in cluster mode, "engine.results.<partition>".
std::string results_queue(int partition, bool cluster);

// Resolves and caches compiled definitions (by version), loading from the store on a miss.
class IrCache final : public IrSource {
 public:
  explicit IrCache(storage::Store& store) : store_(store) {}
  std::shared_ptr<const workflow::Ir> find(const std::string& workflow,
                                           const std::string& version) override;
  std::shared_ptr<const workflow::Ir> compile_definition(const json::value& def) override;
  void put(std::shared_ptr<const workflow::Ir> ir);

 private:
  storage::Store& store_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const workflow::Ir>> by_version_;
};

class Engine {
 public:
  Engine(storage::Store& store, bus::Bus& bus, base::Clock& clock, base::Random& random,
         Options options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Recovers every unfinished run from the store (snapshot + events), re-arms its timers and
  // re-dispatches its in-flight attempts; then starts the loop thread when threaded.
  [[nodiscard]] Status start();
  // Stops accepting requests, finishes the current step, joins the loop.
  void stop();

  // Validates and registers; moves `tag` (and "latest") to the version. kInvalidArgument with
  // `problems` filled when invalid.
  [[nodiscard]] Result<RegisterResponse> register_workflow(const json::value& definition,
                                                           const std::string& tag,
                                                           workflow::Problems& problems);
  // kNotFound (unknown workflow/tag/version), kInvalidArgument (+ problems: invalid definition or
  // inputs, idempotency key reused with another body), kUnavailable (store down).
  [[nodiscard]] Result<StartResponse> start_run(StartRequest request, workflow::Problems& problems);
  // Like StartRun, but returns once the request is queued; `done` runs on the engine thread after
  // the commit (keep it cheap). Errors before queueing are returned and `done` is not called.
  [[nodiscard]] Status start_run_async(StartRequest request, workflow::Problems& problems,
                                       std::function<void(Result<StartResponse>)> done);
  // kNotFound, kFailedPrecondition (not applicable in the run's state).
  [[nodiscard]] Status cancel(const std::string& run, const std::string& reason);
  [[nodiscard]] Status pause(const std::string& run, const std::string& reason);
  [[nodiscard]] Status resume(const std::string& run, const std::string& reason);
  // Proposes a patch, validated now against the run's current state. review = false: applied in
  // one commit (events patch.proposed, patch.applied, run.patched; status applied). review = true:
  // patch.proposed only, status pending_approval, the run is unaffected. Errors: kNotFound
  // (unknown run), kFailedPrecondition (the run is terminal), kInvalidArgument with `problems`
  // (JSON Pointers into the request, "/ops/0/path", or into the patched definition,
  // "/nodes/2/needs/0"): invalid ops or result, or a change to a started or settled node (422).
  [[nodiscard]] Result<PatchResponse> propose_patch(PatchRequest request,
                                                    workflow::Problems& problems);
  // Approves or rejects a pending patch. Approve re-validates against the run's CURRENT state:
  // valid -> patch.applied + run.patched, status applied; no longer valid -> kInvalidArgument
  // with `problems`, the patch stays pending (its row's `error` records why). Reject ->
  // patch.rejected, status rejected. kNotFound (unknown patch); kFailedPrecondition (the patch is
  // not pending, or its run is terminal).
  [[nodiscard]] Result<PatchResponse> decide_patch_proposal(const std::string& patch_id,
                                                            bool approve, const std::string& by,
                                                            const std::string& reason,
                                                            workflow::Problems& problems);
  // propose_patch(review = false) under the pre-review contract: returns the run's new version;
  // a change to a started or settled node (or a failed `test` op) is kFailedPrecondition.
  [[nodiscard]] Result<std::string> patch(const std::string& run, const json::value& ops,
                                          const std::string& reason);
  [[nodiscard]] Result<StartResponse> replay(const std::string& run, const std::string& from_node,
                                             const std::string& by = "");
  // Records a person's decision on a pending approval (see decide_approval in core.h for the
  // rules and errors) and returns the approval as it is after the commit. kNotFound for an
  // unknown approval.
  [[nodiscard]] Result<storage::ApprovalRow> decide_approval(const Vote& vote);
  [[nodiscard]] Status freeze(const std::string& reason);
  [[nodiscard]] Status unfreeze();
  bool frozen() const;

  // Partitions this engine owns now (cluster mode; {0} otherwise).
  std::vector<int> owned_partitions() const;

  // One step (threaded = false): decide everything available now, commit once, carry out.
  // Returns the number of triggers handled.
  std::size_t step();
  // When the next timer is due or a result lease expires (for a driver that moves a clock).
  std::optional<Time> next_wake();
  EngineStats stats() const;

 private:
  struct Request;
  struct StepState;
  struct Owned {
    uint64_t revision = 0;  // the KV revision of our lease (renewals change it)
    int64_t epoch = 0;      // the revision we fenced the partition with when we took it
    Time renewed{};
  };
  struct Forwarded;
  struct Inflight;

  Status post(Request request);
  Status enqueue(Request request);
  [[nodiscard]] Result<Request> prepare_start(StartRequest request, workflow::Problems& problems);
  void loop();
  void arm(Time due, const std::string& run);
  Status command(Command command, const std::string& run, const std::string& reason);
  [[nodiscard]] Result<std::shared_ptr<const workflow::Ir>> resolve(const std::string& ref);
  [[nodiscard]] Result<RunState> fold_run(const std::string& id);
  // The active run, loaded from the store on a miss; nullptr when it does not exist, is
  // finished, belongs to another engine, or cannot be read now (then *unavailable = true).
  RunState* load_run(const std::string& id, bool* unavailable = nullptr);
  [[nodiscard]] Result<PatchResponse> post_patch(Request request, workflow::Problems& problems);
  void handle_replay(Request& r, StepState& st);
  void handle_patch(Request& r, RunState& run, StepState& st);
  void handle_patch_decision(Request& r, StepState& st);
  void handle_approval(Request& r, StepState& st);
  void handle_request(Request& r, StepState& st);
  void handle_start(Request& r, StepState& st);
  // Decodes and applies one pulled result; the delivery is acked after the commit, or nacked
  // when its run cannot be read now.
  void take_result(bus::Delivery d, StepState& st);
  // false: the run cannot be read now (store unavailable); the result must come back later.
  bool handle_result(const TaskResult& result, StepState& st);
  void record(RunState& run, Decision d, StepState& st);
  // Submits the step's batch (pipelined: the next step is decided while it commits) and carries
  // out the commands of every earlier step whose commit finished.
  void commit(std::unique_ptr<StepState> st);
  // Carries out committed steps in order until at most `keep` are in flight (waiting for their
  // commits); with keep > 0 it also finishes the oldest ones already durable.
  void finish_commits(std::size_t keep);
  // Carries out one step after its commit: the commands on success, the rollback on failure.
  void finish_commit(Inflight& f, const Status& earlier_failure);
  void fail_step(StepState& st, const Error& error);
  void after_commit(StepState& st);  // evicts finished runs, arms timers, schedules snapshots
  void add_rows(StepState& st);
  // Cluster mode (cluster.cc).
  Status dispatch(Dispatch& d);  // sets d.reply
  Status recover(const std::function<bool(const std::string&)>& mine, Time now);
  bool owns_run(const std::string& run) const;  // loop thread
  void ownership_tick(Time now);
  void take(int partition, uint64_t revision, Time now);
  void lose(int partition, std::string_view why);
  void mirror_owned();  // owned_ -> owned_list_ and stats (for callers on other threads)
  void watch_queues();
  void pull_cluster_queues(StepState& st, std::vector<std::unique_ptr<Request>>& requests);
  std::optional<int> target_partition(const Request& r);
  void forward(std::unique_ptr<Request> r, int partition, Time now);
  void expire_forwarded(Time now);
  void add_fences(StepState& st);
  std::string new_run_id();
  // The wire form of requests forwarded between engines (cluster.cc).
  static json::object encode_request(const Request& r);
  [[nodiscard]] static Result<std::unique_ptr<Request>> decode_request(const json::object& o);

  storage::Store& store_;
  bus::Bus& bus_;
  base::Clock& clock_;
  base::Random& random_;
  Options options_;
  IrCache irs_;

  // Inbox: the only state shared between request threads and the loop.
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Request>> inbox_;
  bool stopping_ = false;
  bool results_ready_ = false;
  bool frozen_ = false;
  EngineStats stats_;

  // Loop-owned state.
  std::unordered_map<std::string, RunState> runs_;
  std::unordered_map<std::string, int64_t> snapshot_events_;  // events at the last snapshot
  std::vector<storage::Snapshot> pending_snapshots_;
  // Pipelined commits, oldest first (at most two: the one committing and the one just decided).
  // Nothing of a step is carried out (dispatch, ack, publish, reply) before its batch is durable,
  // and steps are carried out in order. Every batch is linked by chain_, so when one fails no later
  // one lands; its failure rolls back every later step too (see finish_commits).
  std::deque<std::unique_ptr<Inflight>> inflight_;
  std::shared_ptr<storage::AppendChain> chain_ = std::make_shared<storage::AppendChain>();
  using TimerEntry = std::pair<Time, std::string>;
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> timers_;
  std::unordered_map<std::string, Time> armed_;  // run -> the earliest due time in timers_
  // Dispatches the bus refused (it was down): enqueued again every kRedispatchEvery until it
  // takes them, so an outage delays tasks instead of leaving them to their attempt deadline.
  std::vector<Dispatch> undispatched_;
  Time next_redispatch_{};
  void redispatch(Time now);
  // Cluster mode. owned_ and forwarded_ belong to the loop; the mirrors below are for callers.
  int partitions_ = 1;
  std::map<int, Owned> owned_;
  std::map<std::string, std::unique_ptr<Forwarded>> forwarded_;  // by correlation id
  Time next_ownership_tick_{};
  Time next_queue_sweep_{};
  uint64_t heartbeat_subscription_ = 0;
  uint64_t control_subscription_ = 0;
  std::map<std::string, Time> peers_;   // engine id -> last heartbeat (under mu_)
  std::set<std::string> ready_queues_;  // queues an on_ready callback flagged (under mu_)
  bool remote_unfreeze_ = false;        // another engine unfroze (under mu_)
  std::vector<int> owned_list_;         // a copy of owned_'s keys (under mu_)
  std::jthread loop_;
};

}  // namespace venture::engine
