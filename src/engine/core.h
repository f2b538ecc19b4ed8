// The pure core of the engine: RunState, Apply and Decide. No I/O, no clock, no random source:
// time and randomness arrive in DecideContext. Part of engine; include "engine/engine.h".
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/base.h"
#include "storage/storage.h"
#include "workflow/workflow.h"

namespace venture::engine {

enum class RunStatus { kQueued, kRunning, kPaused, kWaiting, kSucceeded, kFailed, kCancelled };
enum class NodeStatus {
  kPending,
  kReady,
  kRunning,
  kWaiting,
  kSucceeded,
  kFailed,
  kSkipped,
  kCancelled
};

std::string_view run_status_name(RunStatus s);
std::string_view node_status_name(NodeStatus s);
bool is_terminal(RunStatus s);
bool is_settled(NodeStatus s);

// What one attempt of a node (or of one foreach item) is doing.
enum class Phase {
  kIdle,      // nothing in flight
  kInFlight,  // dispatched; waiting for the result of `attempt` (or the deadline)
  kBackoff,   // waiting until `due` to start attempt + 1
  kTimer,     // a sleep node, a repeat interval: waiting until `due`
  kGate,      // an approval: waiting for people; `due` is its timeout, if any
};

struct Slot {  // one unit of execution: a plain node, or one foreach item
  NodeStatus status = NodeStatus::kPending;
  Phase phase = Phase::kIdle;
  int attempt = 0;               // the latest attempt started (1-based)
  std::optional<Time> due;       // kBackoff / kTimer
  std::optional<Time> deadline;  // kInFlight: the attempt's timeout
  json::value output;
  json::value error;  // {code, message} or null
  // An approval (kGate, and kept after it settles): {id, status, request, decisions, created,
  // updated, due}; null for other node types. The fold of the approval.* events.
  json::value gate;
  friend bool operator==(const Slot&, const Slot&) = default;
};

struct NodeState {
  Slot slot;              // the node itself (for foreach: its aggregate status)
  int iteration = 0;      // repeat: completed iterations
  bool expanded = false;  // foreach: items known
  json::array items;      // foreach: the item values
  std::vector<Slot> item_slots;
  std::string outcome;  // approval: approved|rejected|timed_out once settled; "" otherwise
  std::optional<Time> started;
  std::optional<Time> finished;
  friend bool operator==(const NodeState&, const NodeState&) = default;
};

struct RunState {
  std::string id;
  std::string workflow;
  std::string version;
  std::shared_ptr<const workflow::Ir> ir;
  json::value inputs;
  RunStatus status = RunStatus::kQueued;
  bool paused = false;
  bool started = false;  // run.started applied
  std::string replay_of;
  std::string started_by;  // token name of who started the run ("" when unknown)
  json::value output;
  json::value error;
  std::vector<NodeState> nodes;  // parallel to ir->nodes
  Time created{};
  Time updated{};
  int64_t events = 0;    // events of this run applied so far
  int64_t last_seq = 0;  // seq of the last applied event (0 before the first commit)

  bool operator==(const RunState& o) const;
};

// An event the core produces; the shell adds id, time, seq and hash.
struct EventDraft {
  std::string type;
  std::string node;  // "" for run-level events
  json::object data;
};

// One task to put on the bus for a worker.
struct Dispatch {
  std::string run;
  std::string node;
  std::string type;
  int index = -1;  // foreach item index, -1 for a plain node
  int attempt = 1;
  int iteration = 0;            // repeat iteration
  json::value config;           // rendered
  json::value context;          // only for node types with needs_context
  std::string idempotency_key;  // "<run>/<node>/<index or iteration>"
  // The queue the worker reports to; set by the engine shell (never by decide), "" = the
  // default kResultsQueue. In cluster mode the results queue of the run's partition.
  std::string reply;
};

// The identity of one attempt, "<run>/<node>/<index>/<iteration>/<attempt>": the bus dedup id of
// its task and of its result.
std::string attempt_key(const std::string& run, const std::string& node, int index, int iteration,
                        int attempt);
std::string attempt_key(const Dispatch& d);

// The result of one attempt, as reported by a worker.
struct TaskResult {
  std::string run;
  std::string node;
  int index = -1;
  int iteration = 0;  // echoed from the Dispatch: a repeat's iterations reuse attempt numbers
  int attempt = 1;
  bool ok = false;
  json::value output;
  std::string error_code;  // "" when ok
  std::string error_message;
  bool retryable = true;
  int64_t retry_after_ms = 0;  // the remote side asked to wait this long (HTTP Retry-After)
};

// Operator commands against one run.
enum class Command { kCancel, kPause, kResume };

struct DecideContext {
  Time now{};
  bool frozen = false;
  base::Random* random = nullptr;  // jitter; required when any retry policy has jitter > 0
};

struct Decision {
  std::vector<EventDraft> events;
  std::vector<Dispatch> dispatches;
};

// Resolves versions to compiled definitions (content-addressed, so memoising is pure).
class IrSource {
 public:
  virtual ~IrSource() = default;
  virtual std::shared_ptr<const workflow::Ir> find(const std::string& workflow,
                                                   const std::string& version) = 0;
  // Compiles a run-local definition carried by a run.patched event.
  virtual std::shared_ptr<const workflow::Ir> compile_definition(const json::value& def) = 0;
};

// Folds one event into the state. kDataLoss when the event does not fit the state (unknown node,
// undecodable data): the log and the code disagree, which recovery must surface, not hide.
[[nodiscard]] Status apply(RunState& state, const std::string& type, const std::string& node,
                           const json::object& data, Time time, IrSource& irs);

// A new run: run.submitted (+ run.started and the first dispatches unless frozen). `seeded` holds
// outputs of nodes that a replay reuses (they settle as succeeded at once).
// `by` is who starts it (token name), which approval nodes use to refuse self-approval.
[[nodiscard]] Result<Decision> decide_submit(RunState& state, const std::string& run_id,
                                             const std::shared_ptr<const workflow::Ir>& ir,
                                             json::value inputs, const std::string& replay_of,
                                             const json::object& seeded, const DecideContext& ctx,
                                             IrSource& irs, const std::string& by = "",
                                             const json::object& seeded_outcomes = {});

// Each Decide* mutates `state` by applying the events it emits (so the state after equals the fold
// of Apply over the events) and returns them with the dispatches to carry out after commit.
Decision decide_result(RunState& state, const TaskResult& result, const DecideContext& ctx,
                       IrSource& irs);
// Timers that are due at ctx.now, and dispatch of ready work after an unfreeze.
Decision decide_tick(RunState& state, const DecideContext& ctx, IrSource& irs);
// kFailedPrecondition when the command does not apply in the current state.
[[nodiscard]] Result<Decision> decide_command(RunState& state, Command command,
                                              const std::string& reason, const DecideContext& ctx,
                                              IrSource& irs);
// Applies a JSON Patch to the run's definition at once, without a proposal (check_patch's errors,
// problems joined into the message): run.patched and whatever the new graph makes ready.
[[nodiscard]] Result<Decision> decide_patch(RunState& state, const json::value& ops,
                                            const std::string& reason, const DecideContext& ctx,
                                            IrSource& irs);

// Patch review (SPEC §3). A proposal is a storage::PatchRow: the core fills its status, times,
// decision and version; the shell chooses its id and writes the row in the step's batch.
inline constexpr std::string_view kPatchPending = "pending_approval";
inline constexpr std::string_view kPatchApplied = "applied";
inline constexpr std::string_view kPatchRejected = "rejected";

// Checks `ops` against the run as it is now: the patched definition must compile, keep its name,
// differ from the current one, and leave every started or settled node byte-for-byte unchanged.
// Returns the compiled result. Errors, each with `problems` filled (JSON Pointers into the ops,
// "/ops/0/path", or into the patched definition, "/nodes/2/needs/0"):
// kInvalidArgument (bad ops, invalid result, rename, no change); kFailedPrecondition (a `test` op
// failed, or a started or settled node would change: one problem per node). A terminal run is
// kFailedPrecondition with no problem.
[[nodiscard]] Result<std::shared_ptr<const workflow::Ir>> check_patch(const RunState& state,
                                                                      const json::value& ops,
                                                                      workflow::Problems& problems);

// A new proposal `patch` (the caller sets id, ops, reason, proposed_by; run is filled). Checked
// now with check_patch (its errors, `patch` untouched). review: emits patch.proposed and leaves
// it pending_approval. Otherwise emits patch.proposed, patch.applied, run.patched and whatever
// the new graph makes ready; the patch is applied (decided_by = proposed_by) with its version.
[[nodiscard]] Result<Decision> decide_propose_patch(RunState& state, storage::PatchRow& patch,
                                                    bool review, const DecideContext& ctx,
                                                    IrSource& irs, workflow::Problems& problems);

// Approves or rejects a pending proposal. kFailedPrecondition (no problem) when it is not
// pending, belongs to another run, or the run is terminal. Approve re-checks the ops against the
// run's CURRENT state: on failure returns check_patch's error and leaves `patch` pending (the
// caller may record the error); on success emits patch.applied + run.patched (+ dispatches).
// Reject emits patch.rejected.
[[nodiscard]] Result<Decision> decide_patch_review(RunState& state, storage::PatchRow& patch,
                                                   bool approve, const std::string& by,
                                                   const std::string& reason,
                                                   const DecideContext& ctx, IrSource& irs,
                                                   workflow::Problems& problems);

// Approvals (SPEC §1 approval node, §3 approvals). A person's decision on one pending approval.
struct Vote {
  std::string approval;  // "apr_…"
  std::string by;        // token name (the person)
  std::string role;      // the token's role
  std::string decision;  // approve|reject
  std::string comment;
  std::string via = "api";  // api|link
  std::string link;         // the link's nonce when via == link (a link decides once)
};

// Records one vote: approval.decided, and when it settles the approval (quorum approvals, or a
// rejection under reject_on_any / quorum rejections) the node's result and whatever that makes
// ready. kNotFound (no such approval in this run), kPermissionDenied (not among the approvers,
// or the person who started the run approving without allow_self_approval),
// kFailedPrecondition (already decided, this person already voted, this link was used, or the
// run is terminal), kInvalidArgument (decision is not approve|reject).
[[nodiscard]] Result<Decision> decide_approval(RunState& state, const Vote& vote,
                                               const DecideContext& ctx, IrSource& irs);

// The row of approval `id` if this run has it.
std::optional<storage::ApprovalRow> find_approval(const RunState& state, const std::string& id);

// Whether `by` with `role` is among the approvers of a gate's request (roles or users).
bool is_approver(const json::value& request, const std::string& by, const std::string& role);

// Rows of node `node`'s gates (the node's and its items') that events at time `now` changed
// (their `updated` == now). Every approval.* event names its node, so the shell asks only for the
// nodes a step touched.
std::vector<storage::ApprovalRow> changed_approvals(const RunState& state, int node, Time now);

// The task for one attempt (config rendered against the current context).
[[nodiscard]] Result<Dispatch> build_dispatch(const RunState& state, int node, int index,
                                              int attempt);

// In-flight attempts of a state (to re-dispatch after a restart: the embedded bus is volatile).
std::vector<Dispatch> in_flight(const RunState& state);
// The earliest timer or deadline of the state, if any.
std::optional<Time> next_due(const RunState& state);

// The expression context: {inputs, nodes:{id:{status,output,outcome,error}}, run:{id,workflow,
// version}}.
json::object expression_context(const RunState& state);

// Snapshot encoding of a state (the Ir is referenced by version and resolved through irs).
json::value state_to_json(const RunState& state);
[[nodiscard]] Result<RunState> state_from_json(const json::value& v, IrSource& irs);

}  // namespace venture::engine
