// Private to engine/: the request and step records shared by engine.cc and step.cc.
#pragma once

#include <functional>
#include <future>
#include <optional>
#include <set>
#include <unordered_map>

#include "engine/engine.h"

namespace venture::engine {

struct Reply {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status;
  StartResponse start;
  std::string version;
  PatchResponse patch;
  storage::ApprovalRow approval;
  workflow::Problems problems;  // filled before finish() with an error
  // Called once with the outcome instead of waking a waiter (asynchronous requests).
  std::function<void(Result<StartResponse>)> callback;
  // Called once after the outcome is recorded (a request forwarded from another engine: sends
  // the answer back). Runs on the thread that finishes the request.
  std::function<void(Reply&)> on_finish;

  void finish(const Status& s) {
    std::function<void(Result<StartResponse>)> cb;
    std::function<void(Reply&)> after;
    {
      std::lock_guard lock(mu);
      if (done) return;
      status = s;
      done = true;
      cb = std::move(callback);
      after = std::move(on_finish);
      cv.notify_all();
    }
    if (cb) cb(s ? Result<StartResponse>(start) : Result<StartResponse>(s.error()));
    if (after) after(*this);
  }
};

struct Engine::Request {
  enum class Kind {
    kStart,
    kCommand,
    kPatch,
    kPatchDecision,
    kReplay,
    kFreeze,
    kUnfreeze,
    kApproval
  };
  Kind kind = Kind::kStart;
  StartRequest start;
  std::shared_ptr<const workflow::Ir> ir;
  bool register_version = false;
  std::string run;
  Command command = Command::kCancel;
  std::string reason;
  PatchRequest patch;    // kPatch (run is `run`)
  std::string patch_id;  // kPatchDecision
  bool approve = false;  // kPatchDecision
  std::string by;        // kPatchDecision, kReplay
  Vote vote;             // kApproval
  std::string from_node;
  // kStart, kReplay: the new run's id, chosen before routing (cluster mode) so that a request
  // redelivered to a new owner finds the run it already started; "" = chosen when handled.
  std::string start_id;
  int hops = 0;  // times this request was forwarded between engines
  // A request that failed but still writes (a failed approval records its error on the patch
  // row): answered with this error after the commit, so the caller reads what was written.
  std::optional<Error> error_after_commit;
  std::shared_ptr<Reply> reply = std::make_shared<Reply>();
};

// A request sent to the engine that owns its run's partition, waiting for the answer.
struct Engine::Forwarded {
  std::unique_ptr<Request> request;
  int partition = 0;
  Time deadline{};
};

// The wire form of the answers to requests forwarded between engines (cluster.cc).
json::object encode_answer(const Reply& reply);
void apply_answer(const json::object& answer, Reply& reply);

struct Engine::StepState {
  DecideContext ctx;
  storage::Batch batch;
  std::set<std::string> touched_runs;
  std::set<std::pair<std::string, std::string>> touched_nodes;
  std::vector<Dispatch> dispatches;
  std::vector<bus::Delivery> deliveries;
  std::vector<bus::Delivery> retry;  // results whose run could not be read: redelivered later
  std::vector<std::unique_ptr<Request>> done;  // succeeded; replied to after the commit
  std::unordered_map<std::string, std::pair<std::string, std::string>> keys;  // key -> run, hash
  std::unordered_map<std::string, storage::PatchRow> patches;  // rows decided in this step
  bool freeze_changed = false;
  bool frozen_before = false;
  std::size_t triggers = 0;
};

// A step whose batch is committing (or committed) and whose commands are not yet carried out.
struct Engine::Inflight {
  StepState st;
  bool write = false;
  std::vector<storage::Fence> fences;
  std::future<Result<storage::AppendResult>> appended;
};

}  // namespace venture::engine
