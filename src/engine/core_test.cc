// Goal: the pure engine core (engine/core.h) implements the workflow semantics of SPEC §1–2:
// needs and joins, skips, `if`, on_failure, retries with backoff and deadlines, foreach with
// max_parallel, repeat, sleep timers, operator commands, exactly-once results, patches, the
// snapshot encoding, and Apply's refusal of events that do not fit.
//
// Method: small hand-written definitions compiled with workflow::compile, driven through
// DecideSubmit / DecideResult / DecideTick / DecideCommand / DecidePatch at explicit times; the
// tests assert the emitted event sequence and the resulting state. No clock, no I/O.
#include <gtest/gtest.h>

#include <map>

#include "../../tests/sim/map_ir_source.h"
#include "engine/engine.h"
#include "engine/test_support.h"

namespace venture::engine {
namespace {

using testing::kT0;
using testing::types;

class CoreTest : public ::testing::Test {
 protected:
  void submit(std::string_view definition, json::value inputs = json::object()) {
    auto def = base::parse_json(definition);
    ASSERT_TRUE(def.has_value()) << definition;
    ir_ = irs_.compile_definition(*def);
    ASSERT_NE(ir_, nullptr) << definition;
    ctx_.now = kT0;
    ctx_.random = &random_;
    auto d = decide_submit(s_, "run_1", ir_, std::move(inputs), "", {}, ctx_, irs_);
    ASSERT_TRUE(d.has_value());
    first_ = *d;
  }
  // The repeat iteration in flight, as a worker would echo it from the task.
  int current_iteration(const std::string& node, int index) {
    const int i = s_.ir ? s_.ir->index_of(node) : -1;
    return i < 0 || index >= 0 ? 0 : s_.nodes[static_cast<std::size_t>(i)].iteration;
  }
  Decision ok(const std::string& node, json::value output = nullptr, int index = -1,
              int attempt = 1) {
    TaskResult r{
        "run_1", node, index, current_iteration(node, index), attempt, true, std::move(output),
        "",      "",   true};
    return decide_result(s_, r, ctx_, irs_);
  }
  Decision fail(const std::string& node, std::string code = "boom", bool retryable = true,
                int index = -1, int attempt = 1) {
    TaskResult r{"run_1", node,     index,   current_iteration(node, index),
                 attempt, false,    nullptr, std::move(code),
                 "m",     retryable};
    return decide_result(s_, r, ctx_, irs_);
  }
  Decision tick_at(Time t) {
    ctx_.now = t;
    return decide_tick(s_, ctx_, irs_);
  }
  NodeStatus status(const std::string& node) const {
    return s_.nodes[static_cast<std::size_t>(ir_->index_of(node))].slot.status;
  }
  std::optional<Time> due_of(const Decision& d, const std::string& type) const {
    for (const EventDraft& e : d.events) {
      if (e.type == type) {
        return *parse_time(base::string_or(e.data, "due", ""));
      }
    }
    return std::nullopt;
  }

  sim::MapIrSource irs_;
  base::SeededRandom random_{42};
  DecideContext ctx_;
  RunState s_;
  std::shared_ptr<const workflow::Ir> ir_;
  Decision first_;
};

using V = std::vector<std::string>;

TEST_F(CoreTest, ChainSucceedsWithTheExpectedEvents) {
  submit(R"({"name":"c","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop","needs":["a"]},
            {"id":"c","type":"noop","needs":["b"]}]})");
  EXPECT_EQ(types(first_), (V{"run.submitted", "run.started", "node.started:a"}));
  ASSERT_EQ(first_.dispatches.size(), 1u);
  EXPECT_EQ(first_.dispatches[0].idempotency_key, "run_1/a/0");
  EXPECT_EQ(types(ok("a", 1)), (V{"node.succeeded:a", "node.started:b"}));
  EXPECT_EQ(types(ok("b", 2)), (V{"node.succeeded:b", "node.started:c"}));
  EXPECT_EQ(types(ok("c", 3)), (V{"node.succeeded:c", "run.succeeded"}));
  EXPECT_EQ(s_.status, RunStatus::kSucceeded);
  EXPECT_EQ(s_.nodes[2].slot.output, json::value(3));
}

TEST_F(CoreTest, JoinAllSkipsAndJoinAnyRuns) {
  submit(R"({"name":"j","nodes":[{"id":"a","type":"noop","on_failure":"continue"},
            {"id":"b","type":"noop"},
            {"id":"all","type":"noop","needs":["a","b"]},
            {"id":"any","type":"noop","needs":["a","b"],"join":"any"}]})");
  EXPECT_EQ(types(fail("a", "boom", false)), (V{"node.failed:a", "node.skipped:all"}));
  EXPECT_EQ(types(ok("b")), (V{"node.succeeded:b", "node.started:any"}));
  EXPECT_EQ(types(ok("any")), (V{"node.succeeded:any", "run.succeeded"}));
  EXPECT_EQ(status("all"), NodeStatus::kSkipped);
}

TEST_F(CoreTest, JoinAnySkipsWhenNoNeedSucceeded) {
  submit(R"({"name":"j","nodes":[{"id":"a","type":"noop","on_failure":"continue"},
            {"id":"b","type":"noop","if":"${{ false }}"},
            {"id":"any","type":"noop","needs":["a","b"],"join":"any"}]})");
  EXPECT_EQ(types(fail("a", "boom", false)),
            (V{"node.failed:a", "node.skipped:any", "run.succeeded"}));
}

TEST_F(CoreTest, SkipsPropagate) {
  submit(R"({"name":"s","nodes":[{"id":"a","type":"fail","on_failure":"continue",
            "config":{"retryable":false}},{"id":"b","type":"noop","needs":["a"]},
            {"id":"c","type":"noop","needs":["b"]}]})");
  EXPECT_EQ(types(fail("a", "x", false)),
            (V{"node.failed:a", "node.skipped:b", "node.skipped:c", "run.succeeded"}));
}

TEST_F(CoreTest, IfFalseSkipsAndIfTrueRuns) {
  submit(R"({"name":"i","nodes":[{"id":"a","type":"noop","if":"${{ .inputs.go }}"},
            {"id":"b","type":"noop","if":"${{ .inputs.go | not }}"}]})",
         json::object{{"go", false}});
  EXPECT_EQ(types(first_), (V{"run.submitted", "run.started", "node.skipped:a", "node.started:b"}));
}

TEST_F(CoreTest, OnFailureFailCancelsUnsettledNodesAndFailsTheRun) {
  submit(R"({"name":"f","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop"},
            {"id":"c","type":"noop","needs":["b"]}]})");
  EXPECT_EQ(types(fail("a", "boom", false)),
            (V{"node.failed:a", "node.cancelled:b", "node.cancelled:c", "run.failed"}));
  EXPECT_EQ(s_.status, RunStatus::kFailed);
  EXPECT_EQ(base::string_or(s_.error.as_object(), "node", ""), "a");
  EXPECT_TRUE(ok("b").events.empty());  // a late result of a cancelled node
}

TEST_F(CoreTest, OnFailureContinueKeepsGoing) {
  submit(R"({"name":"f","nodes":[{"id":"a","type":"noop","on_failure":"continue"},
            {"id":"b","type":"noop"}]})");
  EXPECT_EQ(types(fail("a", "boom", false)), (V{"node.failed:a"}));
  EXPECT_EQ(types(ok("b")), (V{"node.succeeded:b", "run.succeeded"}));
}

TEST_F(CoreTest, RetryBackoffDueTimesAreExactWithoutJitter) {
  submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","retry":{"max_attempts":4,
            "initial_interval":"1s","backoff_coefficient":2,"max_interval":"3s"}}]})");
  Decision d = fail("a");
  EXPECT_EQ(types(d), (V{"node.retrying:a", "run.waiting"}));  // only a timer is pending
  EXPECT_EQ(due_of(d, "node.retrying"), kT0 + Millis(1000));
  EXPECT_EQ(next_due(s_), kT0 + Millis(1000));
  EXPECT_TRUE(tick_at(kT0 + Millis(999)).events.empty());
  d = tick_at(kT0 + Millis(1000));
  EXPECT_EQ(types(d), (V{"node.started:a", "run.running"}));
  ASSERT_EQ(d.dispatches.size(), 1u);
  EXPECT_EQ(d.dispatches[0].attempt, 2);
  EXPECT_TRUE(fail("a", "boom", true, -1, 1).events.empty());  // a late attempt-1 result
  EXPECT_EQ(due_of(fail("a", "boom", true, -1, 2), "node.retrying"), kT0 + Millis(3000));
  (void)tick_at(kT0 + Millis(3000));
  EXPECT_EQ(due_of(fail("a", "boom", true, -1, 3), "node.retrying"),
            kT0 + Millis(6000));  // 4s capped at max_interval 3s
  (void)tick_at(kT0 + Millis(6000));
  EXPECT_EQ(types(fail("a", "boom", true, -1, 4)), (V{"node.failed:a", "run.failed"}));
}

TEST_F(CoreTest, RetryJitterStaysWithinBounds) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    base::SeededRandom random(seed);
    submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","retry":{"max_attempts":2,
              "initial_interval":"1s","jitter":0.5}}]})");
    ctx_.random = &random;
    const auto due = due_of(fail("a"), "node.retrying");
    ASSERT_TRUE(due.has_value());
    EXPECT_GE(*due, kT0 + Millis(500));
    EXPECT_LE(*due, kT0 + Millis(1500));
  }
}

TEST_F(CoreTest, NonRetryableFailuresAreNotRetried) {
  submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","on_failure":"continue","retry":{
            "max_attempts":5,"non_retryable":["bad_input"]}},
            {"id":"b","type":"noop","on_failure":"continue","retry":{"max_attempts":5}}]})");
  EXPECT_EQ(types(fail("a", "bad_input", true)), (V{"node.failed:a"}));
  EXPECT_EQ(types(fail("b", "other", false)), (V{"node.failed:b", "run.succeeded"}));
}

TEST_F(CoreTest, AttemptDeadlineRetries) {
  submit(R"({"name":"t","nodes":[{"id":"a","type":"noop","timeout":"5s",
            "retry":{"max_attempts":2,"initial_interval":"1s"}}]})");
  EXPECT_EQ(next_due(s_), kT0 + Millis(5000));
  Decision d = tick_at(kT0 + Millis(5000));
  EXPECT_EQ(types(d), (V{"node.retrying:a", "run.waiting"}));
  EXPECT_EQ(base::string_or(d.events[0].data.at("error").as_object(), "code", ""),
            "deadline_exceeded");
  EXPECT_EQ(types(tick_at(kT0 + Millis(6000))), (V{"node.started:a", "run.running"}));
  EXPECT_EQ(types(tick_at(kT0 + Millis(11000))), (V{"node.failed:a", "run.failed"}));
}

TEST_F(CoreTest, ForeachRespectsMaxParallelAndKeepsItemOrder) {
  submit(R"({"name":"f","nodes":[{"id":"a","type":"noop","foreach":"${{ [10,20,30,40,50] }}",
            "max_parallel":2}]})");
  ASSERT_EQ(first_.dispatches.size(), 2u);
  EXPECT_EQ(first_.dispatches[0].index, 0);
  EXPECT_EQ(first_.dispatches[1].index, 1);
  EXPECT_EQ(first_.dispatches[1].idempotency_key, "run_1/a/1");
  Decision d = ok("a", "r1", 1);
  EXPECT_EQ(types(d), (V{"node.item_succeeded:a", "node.started:a"}));
  EXPECT_EQ(d.dispatches.at(0).index, 2);
  for (int i : {2, 0, 4, 3}) {
    d = ok("a", json::value("r" + std::to_string(i)), i);
    EXPECT_FALSE(d.events.empty()) << i;
    int running = 0;
    for (const Slot& it : s_.nodes[0].item_slots) {
      running += it.status == NodeStatus::kRunning ? 1 : 0;
    }
    EXPECT_LE(running, 2);
  }
  EXPECT_EQ(s_.status, RunStatus::kSucceeded);
  EXPECT_EQ(s_.nodes[0].slot.output, (json::array{"r0", "r1", "r2", "r3", "r4"}));
}

TEST_F(CoreTest, EmptyForeachSucceedsWithAnEmptyArray) {
  submit(R"({"name":"f","nodes":[{"id":"a","type":"noop","foreach":"${{ [] }}"}]})");
  EXPECT_EQ(types(first_), (V{"run.submitted", "run.started", "node.expanded:a", "node.succeeded:a",
                              "run.succeeded"}));
  EXPECT_EQ(s_.nodes[0].slot.output, json::array());
}

TEST_F(CoreTest, RepeatRunsUntilTheCondition) {
  submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","repeat":{"until":"${{ .output >= 3 }}",
            "max_iterations":5,"interval":"1s"}}]})");
  EXPECT_EQ(types(ok("a", 1)), (V{"node.repeating:a", "run.waiting"}));
  EXPECT_EQ(types(tick_at(kT0 + Millis(1000))), (V{"node.started:a", "run.running"}));
  (void)ok("a", 2);
  (void)tick_at(kT0 + Millis(2000));
  EXPECT_EQ(types(ok("a", 3)), (V{"node.succeeded:a", "run.succeeded"}));
  EXPECT_EQ(s_.nodes[0].slot.output, json::value(3));
}

TEST_F(CoreTest, RepeatFailsAfterMaxIterations) {
  submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","repeat":{"until":"${{ false }}",
            "max_iterations":2}}]})");
  EXPECT_EQ(types(ok("a")), (V{"node.repeating:a", "run.waiting"}));
  (void)tick_at(kT0);
  EXPECT_EQ(types(ok("a")), (V{"node.failed:a", "run.failed"}));
  EXPECT_EQ(base::string_or(s_.nodes[0].slot.error.as_object(), "code", ""), "max_iterations");
}

TEST_F(CoreTest, SleepIsADurableTimer) {
  submit(R"({"name":"s","nodes":[{"id":"a","type":"sleep","config":{"duration":"2s"}}]})");
  EXPECT_EQ(types(first_), (V{"run.submitted", "run.started", "node.waiting:a", "run.waiting"}));
  EXPECT_EQ(s_.status, RunStatus::kWaiting);
  EXPECT_EQ(next_due(s_), kT0 + Millis(2000));
  // Recovery sees the same timer: the snapshot encoding keeps it.
  auto back = state_from_json(state_to_json(s_), irs_);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(next_due(*back), kT0 + Millis(2000));
  EXPECT_TRUE(tick_at(kT0 + Millis(1999)).events.empty());
  EXPECT_EQ(types(tick_at(kT0 + Millis(2000))), (V{"node.succeeded:a", "run.succeeded"}));
}

TEST_F(CoreTest, PauseResumeCancelAndIllegalCommands) {
  submit(R"({"name":"p","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop",
            "needs":["a"]}]})");
  ASSERT_TRUE(decide_command(s_, Command::kPause, "r", ctx_, irs_).has_value());
  EXPECT_EQ(s_.status, RunStatus::kPaused);
  auto again = decide_command(s_, Command::kPause, "r", ctx_, irs_);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Code::kFailedPrecondition);
  EXPECT_EQ(types(ok("a")), (V{"node.succeeded:a", "node.ready:b"}));  // no dispatch while paused
  auto resumed = decide_command(s_, Command::kResume, "r", ctx_, irs_);
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(types(*resumed), (V{"run.resumed", "node.started:b"}));
  auto not_paused = decide_command(s_, Command::kResume, "r", ctx_, irs_);
  ASSERT_FALSE(not_paused.has_value());
  EXPECT_EQ(not_paused.error().code, Code::kFailedPrecondition);
  auto cancelled = decide_command(s_, Command::kCancel, "r", ctx_, irs_);
  ASSERT_TRUE(cancelled.has_value());
  EXPECT_EQ(types(*cancelled), (V{"node.cancelled:b", "run.cancelled"}));
  auto twice = decide_command(s_, Command::kCancel, "r", ctx_, irs_);
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().code, Code::kFailedPrecondition);
}

TEST_F(CoreTest, ForeachItemsLeftPendingWhilePausedStartOnResume) {
  submit(R"({"name":"p","nodes":[{"id":"a","type":"noop","foreach":"${{ [1,2] }}",
            "max_parallel":1}]})");
  ASSERT_TRUE(decide_command(s_, Command::kPause, "r", ctx_, irs_).has_value());
  EXPECT_EQ(types(ok("a", 1, 0)), (V{"node.item_succeeded:a"}));
  auto resumed = decide_command(s_, Command::kResume, "r", ctx_, irs_);
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(types(*resumed), (V{"run.resumed", "node.started:a"}));
}

TEST_F(CoreTest, DuplicateAndLateResultsEmitNothing) {
  submit(R"({"name":"d","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop"}]})");
  EXPECT_EQ(types(ok("a")), (V{"node.succeeded:a"}));
  const RunState before = s_;
  EXPECT_TRUE(ok("a").events.empty());                  // duplicate
  EXPECT_TRUE(ok("b", nullptr, -1, 2).events.empty());  // an attempt never started
  EXPECT_TRUE(ok("zz").events.empty());                 // unknown node
  EXPECT_TRUE(ok("b", nullptr, 3).events.empty());      // unknown item
  EXPECT_EQ(s_, before);
}

TEST_F(CoreTest, PatchAddsANodeAndRefusesToChangeSettledOnes) {
  submit(R"({"name":"p","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop",
            "needs":["a"]}]})");
  (void)ok("a");
  auto add = base::parse_json(
      R"([{"op":"add","path":"/nodes/-","value":{"id":"c","type":"noop","needs":["a"]}}])");
  auto d = decide_patch(s_, *add, "more", ctx_, irs_);
  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_EQ(types(*d), (V{"run.patched", "node.started:c"}));
  EXPECT_NE(s_.version, ir_->version);
  auto change = base::parse_json(R"([{"op":"add","path":"/nodes/0/if","value":"${{ false }}"}])");
  auto refused = decide_patch(s_, *change, "no", ctx_, irs_);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Code::kFailedPrecondition);
  auto bad = base::parse_json(R"([{"op":"add","path":"/nodes/-","value":{"id":"d",
      "type":"noop","needs":["nope"]}}])");
  auto invalid = decide_patch(s_, *bad, "bad", ctx_, irs_);
  ASSERT_FALSE(invalid.has_value());
  EXPECT_EQ(invalid.error().code, Code::kInvalidArgument);
  EXPECT_EQ(types(ok("c")), (V{"node.succeeded:c"}));
  EXPECT_EQ(types(ok("b")), (V{"node.succeeded:b", "run.succeeded"}));
}

storage::PatchRow proposal(std::string id, std::string_view ops) {
  storage::PatchRow p;
  p.id = std::move(id);
  p.ops = *base::parse_json(ops);
  p.reason = "why";
  p.proposed_by = "alice";
  return p;
}

constexpr std::string_view kAddC =
    R"([{"op":"add","path":"/nodes/-","value":{"id":"c","type":"noop","needs":["a"]}}])";

TEST_F(CoreTest, ProposedPatchAppliesAtOnceWithItsEvents) {
  submit(R"({"name":"p","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop",
            "needs":["a"]}]})");
  (void)ok("a");
  storage::PatchRow p = proposal("pat_1", kAddC);
  workflow::Problems problems;
  auto d = decide_propose_patch(s_, p, false, ctx_, irs_, problems);
  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_TRUE(problems.empty());
  EXPECT_EQ(types(*d), (V{"patch.proposed", "patch.applied", "run.patched", "node.started:c"}));
  EXPECT_EQ(p.status, "applied");
  EXPECT_EQ(p.run, "run_1");
  EXPECT_EQ(p.version, s_.version);
  EXPECT_EQ(p.decided_by, "alice");
  EXPECT_EQ(p.created, kT0);
  EXPECT_EQ(base::string_or(d->events[0].data, "by", ""), "alice");
  EXPECT_EQ(base::string_or(d->events[1].data, "version", ""), s_.version);
  EXPECT_EQ(base::string_or(d->events[2].data, "patch", ""), "pat_1");
}

TEST_F(CoreTest, ReviewedPatchWaitsThenAppliesOrIsRejected) {
  submit(R"({"name":"p","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop",
            "needs":["a"]}]})");
  const std::string version = s_.version;
  storage::PatchRow p = proposal("pat_1", kAddC);
  workflow::Problems problems;
  auto d = decide_propose_patch(s_, p, true, ctx_, irs_, problems);
  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_EQ(types(*d), (V{"patch.proposed"}));
  EXPECT_EQ(p.status, "pending_approval");
  EXPECT_EQ(s_.version, version);  // nothing applied
  EXPECT_EQ(s_.nodes.size(), 2u);

  (void)ok("a");
  ctx_.now = kT0 + Millis(5);
  auto approved = decide_patch_review(s_, p, true, "bob", "fine", ctx_, irs_, problems);
  ASSERT_TRUE(approved.has_value()) << approved.error().message;
  EXPECT_EQ(types(*approved), (V{"patch.applied", "run.patched", "node.started:c"}));
  EXPECT_EQ(p.status, "applied");
  EXPECT_EQ(p.decided_by, "bob");
  EXPECT_EQ(p.decision_reason, "fine");
  EXPECT_EQ(p.updated, kT0 + Millis(5));
  EXPECT_EQ(p.version, s_.version);
  EXPECT_NE(s_.version, version);

  auto again = decide_patch_review(s_, p, true, "bob", "", ctx_, irs_, problems);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Code::kFailedPrecondition);

  storage::PatchRow q =
      proposal("pat_2", R"([{"op":"add","path":"/nodes/-","value":{"id":"d","type":"noop"}}])");
  ASSERT_TRUE(decide_propose_patch(s_, q, true, ctx_, irs_, problems).has_value());
  const std::string before = s_.version;
  auto rejected = decide_patch_review(s_, q, false, "carol", "no", ctx_, irs_, problems);
  ASSERT_TRUE(rejected.has_value());
  EXPECT_EQ(types(*rejected), (V{"patch.rejected"}));
  EXPECT_EQ(q.status, "rejected");
  EXPECT_EQ(q.decided_by, "carol");
  EXPECT_EQ(s_.version, before);
  EXPECT_TRUE(problems.empty());
}

TEST_F(CoreTest, ApprovalRevalidatesAgainstTheCurrentState) {
  submit(R"({"name":"p","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop",
            "needs":["a"]}]})");
  storage::PatchRow p =
      proposal("pat_1", R"([{"op":"add","path":"/nodes/1/timeout","value":"45s"}])");
  workflow::Problems problems;
  ASSERT_TRUE(decide_propose_patch(s_, p, true, ctx_, irs_, problems).has_value());
  (void)ok("a");  // b starts: it may no longer change
  const RunState before = s_;
  auto d = decide_patch_review(s_, p, true, "bob", "", ctx_, irs_, problems);
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code, Code::kFailedPrecondition);  // the shell answers 422
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].path, "/nodes/1");
  EXPECT_EQ(p.status, "pending_approval");
  EXPECT_EQ(s_, before);
  (void)ok("b");  // the run succeeds: its patches can no longer be decided
  problems.clear();
  auto late = decide_patch_review(s_, p, false, "bob", "", ctx_, irs_, problems);
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code, Code::kFailedPrecondition);
  EXPECT_TRUE(problems.empty());
}

TEST_F(CoreTest, PatchProblemsPointIntoTheOpsOrTheDefinition) {
  submit(R"({"name":"p","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop"}]})");
  auto problems_of = [&](std::string_view ops) {
    storage::PatchRow p = proposal("pat_x", ops);
    workflow::Problems problems;
    auto d = decide_propose_patch(s_, p, false, ctx_, irs_, problems);
    EXPECT_FALSE(d.has_value()) << ops;
    return problems;
  };
  auto bad_path = problems_of(R"([{"op":"remove","path":"/nodes/9"}])");
  ASSERT_EQ(bad_path.size(), 1u);
  EXPECT_EQ(bad_path[0].path, "/ops/0/path");
  auto bad_op = problems_of(
      R"([{"op":"add","path":"/description","value":"x"},{"op":"ad","path":"/x","value":1}])");
  ASSERT_EQ(bad_op.size(), 1u);
  EXPECT_EQ(bad_op[0].path, "/ops/1/op");
  EXPECT_NE(bad_op[0].message.find("did you mean 'add'"), std::string::npos);
  auto bad_need = problems_of(
      R"([{"op":"add","path":"/nodes/-","value":{"id":"d","type":"noop","needs":["nope"]}}])");
  ASSERT_FALSE(bad_need.empty());
  EXPECT_EQ(bad_need[0].path, "/nodes/2/needs/0");
  EXPECT_EQ(problems_of(R"({"op":"add"})").at(0).path, "/ops");
  EXPECT_EQ(problems_of(R"([])").at(0).path, "/ops");  // changes nothing
  EXPECT_EQ(problems_of(R"([{"op":"replace","path":"/name","value":"q"}])").at(0).path, "/name");
  EXPECT_EQ(s_.version, ir_->version);
}

TEST_F(CoreTest, StateJsonRoundTrips) {
  submit(R"({"name":"j","nodes":[{"id":"a","type":"noop","foreach":"${{ [1,2,3] }}",
            "max_parallel":2,"retry":{"max_attempts":3}},{"id":"b","type":"sleep",
            "config":{"duration":"1m"}}]})");
  (void)fail("a", "x", true, 0);
  (void)ok("a", json::object{{"k", 1}}, 1);
  auto back = state_from_json(state_to_json(s_), irs_);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(*back, s_);
  EXPECT_EQ(state_to_json(*back), state_to_json(s_));
}

TEST_F(CoreTest, ApplyRejectsEventsThatDoNotFit) {
  submit(R"({"name":"a","nodes":[{"id":"a","type":"noop"}]})");
  auto unknown_node = apply(s_, "node.succeeded", "zz", {}, kT0, irs_);
  ASSERT_FALSE(unknown_node.has_value());
  EXPECT_EQ(unknown_node.error().code, Code::kDataLoss);
  for (const char* type : {"node.exploded", "run.exploded", "weird"}) {
    auto st = apply(s_, type, type[0] == 'n' ? "a" : "", {}, kT0, irs_);
    ASSERT_FALSE(st.has_value()) << type;
    EXPECT_EQ(st.error().code, Code::kDataLoss) << type;
  }
  RunState empty;
  auto early = apply(empty, "node.started", "a", {}, kT0, irs_);
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().code, Code::kDataLoss);
}

// Every repeat iteration restarts at attempt 1, so a result names its iteration: a duplicate of
// iteration 0's result arriving while iteration 1 is in flight must change nothing, and the two
// iterations' tasks have different dedup ids.
TEST_F(CoreTest, RepeatIgnoresALateResultOfAnEarlierIteration) {
  submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","repeat":{"until":"${{ .output >= 3 }}",
            "max_iterations":5}}]})");
  (void)ok("a", 1);
  Decision next = tick_at(kT0);
  ASSERT_EQ(next.dispatches.size(), 1u);
  EXPECT_EQ(next.dispatches[0].iteration, 1);
  EXPECT_EQ(attempt_key(next.dispatches[0]), "run_1/a/-1/1/1");
  TaskResult late{"run_1", "a", -1, /*iteration=*/0, /*attempt=*/1, true, 1, "", "", true};
  EXPECT_TRUE(decide_result(s_, late, ctx_, irs_).events.empty());
  EXPECT_FALSE(ok("a", 2).events.empty());  // iteration 1's own result applies
}

}  // namespace
}  // namespace venture::engine
