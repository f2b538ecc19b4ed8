// Goal: the pure engine core (engine/core.h) implements the workflow semantics of SPEC §1–2:
// needs and joins, skips, `if`, on_failure, retries with backoff and deadlines, foreach with
// max_parallel, repeat, sleep timers, operator commands, exactly-once results, patches, the
// snapshot encoding, and Apply's refusal of events that do not fit.
//
// Method: small hand-written definitions compiled with workflow::Compile, driven through
// DecideSubmit / DecideResult / DecideTick / DecideCommand / DecidePatch at explicit times; the
// tests assert the emitted event sequence and the resulting state. No clock, no I/O.
#include <gtest/gtest.h>

#include <map>

#include "engine/engine.h"

namespace venture::engine {
namespace {

const Time kT0 = FromUnixMs(1'800'000'000'000);

class Irs final : public IrSource {
 public:
  std::shared_ptr<const workflow::Ir> Find(const std::string&, const std::string& v) override {
    auto it = irs_.find(v);
    return it == irs_.end() ? nullptr : it->second;
  }
  std::shared_ptr<const workflow::Ir> CompileDefinition(const json::value& def) override {
    workflow::Problems problems;
    auto ir = workflow::Compile(def, problems);
    if (ir != nullptr) {
      irs_[ir->version] = ir;
    }
    return ir;
  }

 private:
  std::map<std::string, std::shared_ptr<const workflow::Ir>> irs_;
};

std::vector<std::string> Types(const Decision& d) {
  std::vector<std::string> out;
  for (const EventDraft& e : d.events) {
    out.push_back(e.node.empty() ? e.type : e.type + ":" + e.node);
  }
  return out;
}

class CoreTest : public ::testing::Test {
 protected:
  void Submit(std::string_view definition, json::value inputs = json::object()) {
    auto def = base::ParseJson(definition);
    ASSERT_TRUE(def.has_value()) << definition;
    ir_ = irs_.CompileDefinition(*def);
    ASSERT_NE(ir_, nullptr) << definition;
    ctx_.now = kT0;
    ctx_.random = &random_;
    auto d = DecideSubmit(s_, "run_1", ir_, std::move(inputs), "", {}, ctx_, irs_);
    ASSERT_TRUE(d.has_value());
    first_ = *d;
  }
  // The repeat iteration in flight, as a worker would echo it from the task.
  int CurrentIteration(const std::string& node, int index) {
    const int i = s_.ir ? s_.ir->IndexOf(node) : -1;
    return i < 0 || index >= 0 ? 0 : s_.nodes[static_cast<std::size_t>(i)].iteration;
  }
  Decision Ok(const std::string& node, json::value output = nullptr, int index = -1,
              int attempt = 1) {
    TaskResult r{"run_1", node, index, CurrentIteration(node, index), attempt, true,
                 std::move(output), "", "", true};
    return DecideResult(s_, r, ctx_, irs_);
  }
  Decision Fail(const std::string& node, std::string code = "boom", bool retryable = true,
                int index = -1, int attempt = 1) {
    TaskResult r{"run_1", node, index, CurrentIteration(node, index), attempt, false, nullptr,
                 std::move(code), "m", retryable};
    return DecideResult(s_, r, ctx_, irs_);
  }
  Decision TickAt(Time t) {
    ctx_.now = t;
    return DecideTick(s_, ctx_, irs_);
  }
  NodeStatus Status(const std::string& node) const {
    return s_.nodes[static_cast<std::size_t>(ir_->IndexOf(node))].slot.status;
  }
  std::optional<Time> DueOf(const Decision& d, const std::string& type) const {
    for (const EventDraft& e : d.events) {
      if (e.type == type) {
        return *ParseTime(base::StringOr(e.data, "due", ""));
      }
    }
    return std::nullopt;
  }

  Irs irs_;
  base::SeededRandom random_{42};
  DecideContext ctx_;
  RunState s_;
  std::shared_ptr<const workflow::Ir> ir_;
  Decision first_;
};

using V = std::vector<std::string>;

TEST_F(CoreTest, ChainSucceedsWithTheExpectedEvents) {
  Submit(R"({"name":"c","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop","needs":["a"]},
            {"id":"c","type":"noop","needs":["b"]}]})");
  EXPECT_EQ(Types(first_), (V{"run.submitted", "run.started", "node.started:a"}));
  ASSERT_EQ(first_.dispatches.size(), 1u);
  EXPECT_EQ(first_.dispatches[0].idempotency_key, "run_1/a/0");
  EXPECT_EQ(Types(Ok("a", 1)), (V{"node.succeeded:a", "node.started:b"}));
  EXPECT_EQ(Types(Ok("b", 2)), (V{"node.succeeded:b", "node.started:c"}));
  EXPECT_EQ(Types(Ok("c", 3)), (V{"node.succeeded:c", "run.succeeded"}));
  EXPECT_EQ(s_.status, RunStatus::kSucceeded);
  EXPECT_EQ(s_.nodes[2].slot.output, json::value(3));
}

TEST_F(CoreTest, JoinAllSkipsAndJoinAnyRuns) {
  Submit(R"({"name":"j","nodes":[{"id":"a","type":"noop","on_failure":"continue"},
            {"id":"b","type":"noop"},
            {"id":"all","type":"noop","needs":["a","b"]},
            {"id":"any","type":"noop","needs":["a","b"],"join":"any"}]})");
  EXPECT_EQ(Types(Fail("a", "boom", false)), (V{"node.failed:a", "node.skipped:all"}));
  EXPECT_EQ(Types(Ok("b")), (V{"node.succeeded:b", "node.started:any"}));
  EXPECT_EQ(Types(Ok("any")), (V{"node.succeeded:any", "run.succeeded"}));
  EXPECT_EQ(Status("all"), NodeStatus::kSkipped);
}

TEST_F(CoreTest, JoinAnySkipsWhenNoNeedSucceeded) {
  Submit(R"({"name":"j","nodes":[{"id":"a","type":"noop","on_failure":"continue"},
            {"id":"b","type":"noop","if":"${{ false }}"},
            {"id":"any","type":"noop","needs":["a","b"],"join":"any"}]})");
  EXPECT_EQ(Types(Fail("a", "boom", false)),
            (V{"node.failed:a", "node.skipped:any", "run.succeeded"}));
}

TEST_F(CoreTest, SkipsPropagate) {
  Submit(R"({"name":"s","nodes":[{"id":"a","type":"fail","on_failure":"continue",
            "config":{"retryable":false}},{"id":"b","type":"noop","needs":["a"]},
            {"id":"c","type":"noop","needs":["b"]}]})");
  EXPECT_EQ(Types(Fail("a", "x", false)),
            (V{"node.failed:a", "node.skipped:b", "node.skipped:c", "run.succeeded"}));
}

TEST_F(CoreTest, IfFalseSkipsAndIfTrueRuns) {
  Submit(R"({"name":"i","nodes":[{"id":"a","type":"noop","if":"${{ .inputs.go }}"},
            {"id":"b","type":"noop","if":"${{ .inputs.go | not }}"}]})",
         json::object{{"go", false}});
  EXPECT_EQ(Types(first_),
            (V{"run.submitted", "run.started", "node.skipped:a", "node.started:b"}));
}

TEST_F(CoreTest, OnFailureFailCancelsUnsettledNodesAndFailsTheRun) {
  Submit(R"({"name":"f","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop"},
            {"id":"c","type":"noop","needs":["b"]}]})");
  EXPECT_EQ(Types(Fail("a", "boom", false)),
            (V{"node.failed:a", "node.cancelled:b", "node.cancelled:c", "run.failed"}));
  EXPECT_EQ(s_.status, RunStatus::kFailed);
  EXPECT_EQ(base::StringOr(s_.error.as_object(), "node", ""), "a");
  EXPECT_TRUE(Ok("b").events.empty());  // a late result of a cancelled node
}

TEST_F(CoreTest, OnFailureContinueKeepsGoing) {
  Submit(R"({"name":"f","nodes":[{"id":"a","type":"noop","on_failure":"continue"},
            {"id":"b","type":"noop"}]})");
  EXPECT_EQ(Types(Fail("a", "boom", false)), (V{"node.failed:a"}));
  EXPECT_EQ(Types(Ok("b")), (V{"node.succeeded:b", "run.succeeded"}));
}

TEST_F(CoreTest, RetryBackoffDueTimesAreExactWithoutJitter) {
  Submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","retry":{"max_attempts":4,
            "initial_interval":"1s","backoff_coefficient":2,"max_interval":"3s"}}]})");
  Decision d = Fail("a");
  EXPECT_EQ(Types(d), (V{"node.retrying:a", "run.waiting"}));  // only a timer is pending
  EXPECT_EQ(DueOf(d, "node.retrying"), kT0 + Millis(1000));
  EXPECT_EQ(NextDue(s_), kT0 + Millis(1000));
  EXPECT_TRUE(TickAt(kT0 + Millis(999)).events.empty());
  d = TickAt(kT0 + Millis(1000));
  EXPECT_EQ(Types(d), (V{"node.started:a", "run.running"}));
  ASSERT_EQ(d.dispatches.size(), 1u);
  EXPECT_EQ(d.dispatches[0].attempt, 2);
  EXPECT_TRUE(Fail("a", "boom", true, -1, 1).events.empty());  // a late attempt-1 result
  EXPECT_EQ(DueOf(Fail("a", "boom", true, -1, 2), "node.retrying"), kT0 + Millis(3000));
  (void)TickAt(kT0 + Millis(3000));
  EXPECT_EQ(DueOf(Fail("a", "boom", true, -1, 3), "node.retrying"),
            kT0 + Millis(6000));  // 4s capped at max_interval 3s
  (void)TickAt(kT0 + Millis(6000));
  EXPECT_EQ(Types(Fail("a", "boom", true, -1, 4)), (V{"node.failed:a", "run.failed"}));
}

TEST_F(CoreTest, RetryJitterStaysWithinBounds) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    base::SeededRandom random(seed);
    Submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","retry":{"max_attempts":2,
              "initial_interval":"1s","jitter":0.5}}]})");
    ctx_.random = &random;
    const auto due = DueOf(Fail("a"), "node.retrying");
    ASSERT_TRUE(due.has_value());
    EXPECT_GE(*due, kT0 + Millis(500));
    EXPECT_LE(*due, kT0 + Millis(1500));
  }
}

TEST_F(CoreTest, NonRetryableFailuresAreNotRetried) {
  Submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","on_failure":"continue","retry":{
            "max_attempts":5,"non_retryable":["bad_input"]}},
            {"id":"b","type":"noop","on_failure":"continue","retry":{"max_attempts":5}}]})");
  EXPECT_EQ(Types(Fail("a", "bad_input", true)), (V{"node.failed:a"}));
  EXPECT_EQ(Types(Fail("b", "other", false)), (V{"node.failed:b", "run.succeeded"}));
}

TEST_F(CoreTest, AttemptDeadlineRetries) {
  Submit(R"({"name":"t","nodes":[{"id":"a","type":"noop","timeout":"5s",
            "retry":{"max_attempts":2,"initial_interval":"1s"}}]})");
  EXPECT_EQ(NextDue(s_), kT0 + Millis(5000));
  Decision d = TickAt(kT0 + Millis(5000));
  EXPECT_EQ(Types(d), (V{"node.retrying:a", "run.waiting"}));
  EXPECT_EQ(base::StringOr(d.events[0].data.at("error").as_object(), "code", ""),
            "deadline_exceeded");
  EXPECT_EQ(Types(TickAt(kT0 + Millis(6000))), (V{"node.started:a", "run.running"}));
  EXPECT_EQ(Types(TickAt(kT0 + Millis(11000))), (V{"node.failed:a", "run.failed"}));
}

TEST_F(CoreTest, ForeachRespectsMaxParallelAndKeepsItemOrder) {
  Submit(R"({"name":"f","nodes":[{"id":"a","type":"noop","foreach":"${{ [10,20,30,40,50] }}",
            "max_parallel":2}]})");
  ASSERT_EQ(first_.dispatches.size(), 2u);
  EXPECT_EQ(first_.dispatches[0].index, 0);
  EXPECT_EQ(first_.dispatches[1].index, 1);
  EXPECT_EQ(first_.dispatches[1].idempotency_key, "run_1/a/1");
  Decision d = Ok("a", "r1", 1);
  EXPECT_EQ(Types(d), (V{"node.item_succeeded:a", "node.started:a"}));
  EXPECT_EQ(d.dispatches.at(0).index, 2);
  for (int i : {2, 0, 4, 3}) {
    d = Ok("a", json::value("r" + std::to_string(i)), i);
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
  Submit(R"({"name":"f","nodes":[{"id":"a","type":"noop","foreach":"${{ [] }}"}]})");
  EXPECT_EQ(Types(first_), (V{"run.submitted", "run.started", "node.expanded:a",
                              "node.succeeded:a", "run.succeeded"}));
  EXPECT_EQ(s_.nodes[0].slot.output, json::array());
}

TEST_F(CoreTest, RepeatRunsUntilTheCondition) {
  Submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","repeat":{"until":"${{ .output >= 3 }}",
            "max_iterations":5,"interval":"1s"}}]})");
  EXPECT_EQ(Types(Ok("a", 1)), (V{"node.repeating:a", "run.waiting"}));
  EXPECT_EQ(Types(TickAt(kT0 + Millis(1000))), (V{"node.started:a", "run.running"}));
  (void)Ok("a", 2);
  (void)TickAt(kT0 + Millis(2000));
  EXPECT_EQ(Types(Ok("a", 3)), (V{"node.succeeded:a", "run.succeeded"}));
  EXPECT_EQ(s_.nodes[0].slot.output, json::value(3));
}

TEST_F(CoreTest, RepeatFailsAfterMaxIterations) {
  Submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","repeat":{"until":"${{ false }}",
            "max_iterations":2}}]})");
  EXPECT_EQ(Types(Ok("a")), (V{"node.repeating:a", "run.waiting"}));
  (void)TickAt(kT0);
  EXPECT_EQ(Types(Ok("a")), (V{"node.failed:a", "run.failed"}));
  EXPECT_EQ(base::StringOr(s_.nodes[0].slot.error.as_object(), "code", ""), "max_iterations");
}

TEST_F(CoreTest, SleepIsADurableTimer) {
  Submit(R"({"name":"s","nodes":[{"id":"a","type":"sleep","config":{"duration":"2s"}}]})");
  EXPECT_EQ(Types(first_), (V{"run.submitted", "run.started", "node.waiting:a", "run.waiting"}));
  EXPECT_EQ(s_.status, RunStatus::kWaiting);
  EXPECT_EQ(NextDue(s_), kT0 + Millis(2000));
  // Recovery sees the same timer: the snapshot encoding keeps it.
  auto back = StateFromJson(StateToJson(s_), irs_);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(NextDue(*back), kT0 + Millis(2000));
  EXPECT_TRUE(TickAt(kT0 + Millis(1999)).events.empty());
  EXPECT_EQ(Types(TickAt(kT0 + Millis(2000))), (V{"node.succeeded:a", "run.succeeded"}));
}

TEST_F(CoreTest, PauseResumeCancelAndIllegalCommands) {
  Submit(R"({"name":"p","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop",
            "needs":["a"]}]})");
  ASSERT_TRUE(DecideCommand(s_, Command::kPause, "r", ctx_, irs_).has_value());
  EXPECT_EQ(s_.status, RunStatus::kPaused);
  auto again = DecideCommand(s_, Command::kPause, "r", ctx_, irs_);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Code::kFailedPrecondition);
  EXPECT_EQ(Types(Ok("a")), (V{"node.succeeded:a", "node.ready:b"}));  // no dispatch while paused
  auto resumed = DecideCommand(s_, Command::kResume, "r", ctx_, irs_);
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(Types(*resumed), (V{"run.resumed", "node.started:b"}));
  auto not_paused = DecideCommand(s_, Command::kResume, "r", ctx_, irs_);
  ASSERT_FALSE(not_paused.has_value());
  EXPECT_EQ(not_paused.error().code, Code::kFailedPrecondition);
  auto cancelled = DecideCommand(s_, Command::kCancel, "r", ctx_, irs_);
  ASSERT_TRUE(cancelled.has_value());
  EXPECT_EQ(Types(*cancelled), (V{"node.cancelled:b", "run.cancelled"}));
  auto twice = DecideCommand(s_, Command::kCancel, "r", ctx_, irs_);
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().code, Code::kFailedPrecondition);
}

TEST_F(CoreTest, ForeachItemsLeftPendingWhilePausedStartOnResume) {
  Submit(R"({"name":"p","nodes":[{"id":"a","type":"noop","foreach":"${{ [1,2] }}",
            "max_parallel":1}]})");
  ASSERT_TRUE(DecideCommand(s_, Command::kPause, "r", ctx_, irs_).has_value());
  EXPECT_EQ(Types(Ok("a", 1, 0)), (V{"node.item_succeeded:a"}));
  auto resumed = DecideCommand(s_, Command::kResume, "r", ctx_, irs_);
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(Types(*resumed), (V{"run.resumed", "node.started:a"}));
}

TEST_F(CoreTest, DuplicateAndLateResultsEmitNothing) {
  Submit(R"({"name":"d","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop"}]})");
  EXPECT_EQ(Types(Ok("a")), (V{"node.succeeded:a"}));
  const RunState before = s_;
  EXPECT_TRUE(Ok("a").events.empty());                      // duplicate
  EXPECT_TRUE(Ok("b", nullptr, -1, 2).events.empty());      // an attempt never started
  EXPECT_TRUE(Ok("zz").events.empty());                     // unknown node
  EXPECT_TRUE(Ok("b", nullptr, 3).events.empty());          // unknown item
  EXPECT_EQ(s_, before);
}

TEST_F(CoreTest, PatchAddsANodeAndRefusesToChangeSettledOnes) {
  Submit(R"({"name":"p","nodes":[{"id":"a","type":"noop"},{"id":"b","type":"noop",
            "needs":["a"]}]})");
  (void)Ok("a");
  auto add = base::ParseJson(
      R"([{"op":"add","path":"/nodes/-","value":{"id":"c","type":"noop","needs":["a"]}}])");
  auto d = DecidePatch(s_, *add, "more", ctx_, irs_);
  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_EQ(Types(*d), (V{"run.patched", "node.started:c"}));
  EXPECT_NE(s_.version, ir_->version);
  auto change = base::ParseJson(R"([{"op":"add","path":"/nodes/0/if","value":"${{ false }}"}])");
  auto refused = DecidePatch(s_, *change, "no", ctx_, irs_);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Code::kFailedPrecondition);
  auto bad = base::ParseJson(R"([{"op":"add","path":"/nodes/-","value":{"id":"d",
      "type":"noop","needs":["nope"]}}])");
  auto invalid = DecidePatch(s_, *bad, "bad", ctx_, irs_);
  ASSERT_FALSE(invalid.has_value());
  EXPECT_EQ(invalid.error().code, Code::kInvalidArgument);
  EXPECT_EQ(Types(Ok("c")), (V{"node.succeeded:c"}));
  EXPECT_EQ(Types(Ok("b")), (V{"node.succeeded:b", "run.succeeded"}));
}

TEST_F(CoreTest, StateJsonRoundTrips) {
  Submit(R"({"name":"j","nodes":[{"id":"a","type":"noop","foreach":"${{ [1,2,3] }}",
            "max_parallel":2,"retry":{"max_attempts":3}},{"id":"b","type":"sleep",
            "config":{"duration":"1m"}}]})");
  (void)Fail("a", "x", true, 0);
  (void)Ok("a", json::object{{"k", 1}}, 1);
  auto back = StateFromJson(StateToJson(s_), irs_);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(*back, s_);
  EXPECT_EQ(StateToJson(*back), StateToJson(s_));
}

TEST_F(CoreTest, ApplyRejectsEventsThatDoNotFit) {
  Submit(R"({"name":"a","nodes":[{"id":"a","type":"noop"}]})");
  auto unknown_node = Apply(s_, "node.succeeded", "zz", {}, kT0, irs_);
  ASSERT_FALSE(unknown_node.has_value());
  EXPECT_EQ(unknown_node.error().code, Code::kDataLoss);
  for (const char* type : {"node.exploded", "run.exploded", "weird"}) {
    auto st = Apply(s_, type, type[0] == 'n' ? "a" : "", {}, kT0, irs_);
    ASSERT_FALSE(st.has_value()) << type;
    EXPECT_EQ(st.error().code, Code::kDataLoss) << type;
  }
  RunState empty;
  auto early = Apply(empty, "node.started", "a", {}, kT0, irs_);
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().code, Code::kDataLoss);
}

// Every repeat iteration restarts at attempt 1, so a result names its iteration: a duplicate of
// iteration 0's result arriving while iteration 1 is in flight must change nothing, and the two
// iterations' tasks have different dedup ids.
TEST_F(CoreTest, RepeatIgnoresALateResultOfAnEarlierIteration) {
  Submit(R"({"name":"r","nodes":[{"id":"a","type":"noop","repeat":{"until":"${{ .output >= 3 }}",
            "max_iterations":5}}]})");
  (void)Ok("a", 1);
  Decision next = TickAt(kT0);
  ASSERT_EQ(next.dispatches.size(), 1u);
  EXPECT_EQ(next.dispatches[0].iteration, 1);
  EXPECT_EQ(AttemptKey(next.dispatches[0]), "run_1/a/-1/1/1");
  TaskResult late{"run_1", "a", -1, /*iteration=*/0, /*attempt=*/1, true, 1, "", "", true};
  EXPECT_TRUE(DecideResult(s_, late, ctx_, irs_).events.empty());
  EXPECT_FALSE(Ok("a", 2).events.empty());  // iteration 1's own result applies
}

}  // namespace
}  // namespace venture::engine
