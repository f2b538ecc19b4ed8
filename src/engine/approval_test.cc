// Goal: the approval node in the pure core (SPEC §1 approval, §3 approvals): a run waits while
// an approval is pending; approvers by role or by user; N-of-M quorum; a rejection rejects
// (reject_on_any, or quorum rejections when it is off); self-approval refused unless allowed;
// one vote per person and per link; the timeout is a durable timer with on_timeout
// approve/reject/fail; several approvals pending at once (parallel branches, foreach) resolve
// independently; cancel closes pending approvals; the decision history is in the output, the
// events and the projection row; the state is the fold of the emitted events and survives the
// snapshot encoding.
//
// Method: small definitions driven through decide_submit / decide_approval / decide_tick at
// explicit times; each decision's events are re-folded from scratch and compared with the state.
#include <gtest/gtest.h>

#include "../../tests/sim/map_ir_source.h"
#include "engine/engine.h"
#include "engine/test_support.h"

namespace venture::engine {
namespace {

using testing::kT0;
using testing::types;
using V = std::vector<std::string>;

class ApprovalTest : public ::testing::Test {
 protected:
  void submit(std::string_view definition, const std::string& by = "carol") {
    auto def = base::parse_json(definition);
    ASSERT_TRUE(def.has_value()) << definition;
    ir_ = irs_.compile_definition(*def);
    ASSERT_NE(ir_, nullptr) << definition;
    ctx_.now = kT0;
    ctx_.random = &random_;
    auto d = decide_submit(s_, "run_1", ir_, json::object(), "", {}, ctx_, irs_, by);
    ASSERT_TRUE(d.has_value());
    keep(*d);
    first_ = *d;
  }
  void keep(const Decision& d) {
    for (const EventDraft& e : d.events) log_.emplace_back(e, ctx_.now);
  }
  // Every approval id of the run, in request order.
  std::vector<std::string> approvals() const {
    std::vector<std::string> ids;
    for (const auto& [e, at] : log_) {
      if (e.type == "approval.requested") ids.push_back(base::string_or(e.data, "approval", ""));
    }
    return ids;
  }
  Result<Decision> vote(const std::string& approval, const std::string& by, const std::string& role,
                        const std::string& decision, const std::string& comment = "") {
    Vote v;
    v.approval = approval;
    v.by = by;
    v.role = role;
    v.decision = decision;
    v.comment = comment;
    auto d = decide_approval(s_, v, ctx_, irs_);
    if (d) keep(*d);
    return d;
  }
  Decision tick_at(Time t) {
    ctx_.now = t;
    Decision d = decide_tick(s_, ctx_, irs_);
    keep(d);
    return d;
  }
  const NodeState& node(const std::string& id) const {
    return s_.nodes[static_cast<std::size_t>(ir_->index_of(id))];
  }
  // The state equals the fold of every event emitted so far.
  void expect_fold() {
    RunState folded;
    for (const auto& [e, at] : log_) {
      ASSERT_TRUE(apply(folded, e.type, e.node, e.data, at, irs_).has_value()) << e.type;
    }
    folded.id = s_.id;
    for (std::size_t i = 0; i < folded.nodes.size(); ++i) {
      EXPECT_EQ(folded.nodes[i].slot.gate, s_.nodes[i].slot.gate);
      EXPECT_EQ(folded.nodes[i].slot.status, s_.nodes[i].slot.status);
      EXPECT_EQ(folded.nodes[i].outcome, s_.nodes[i].outcome);
    }
    EXPECT_EQ(folded.status, s_.status);
  }

  sim::MapIrSource irs_;
  base::SeededRandom random_{7};
  DecideContext ctx_;
  RunState s_;
  std::shared_ptr<const workflow::Ir> ir_;
  Decision first_;
  std::vector<std::pair<EventDraft, Time>> log_;  // every event with its time
};

constexpr std::string_view kGate = R"({"name":"g","nodes":[
  {"id":"review","type":"approval","config":{"title":"Ship ${{ .run.id }}?",
   "show":{"items":[1,2]},"approvers":{"roles":["approver"],"users":["dave"]},"quorum":2}},
  {"id":"publish","type":"noop","needs":["review"],
   "if":"${{ .nodes.review.outcome == \"approved\" }}"},
  {"id":"discard","type":"noop","needs":["review"],
   "if":"${{ .nodes.review.outcome != \"approved\" }}"}]})";

TEST_F(ApprovalTest, RunWaitsUntilAQuorumApproves) {
  submit(kGate);
  EXPECT_EQ(types(first_), (V{"run.submitted", "run.started", "approval.requested:review",
                              "node.waiting:review", "run.waiting"}));
  EXPECT_TRUE(first_.dispatches.empty());  // people, not workers
  EXPECT_EQ(s_.status, RunStatus::kWaiting);
  EXPECT_EQ(node("review").slot.status, NodeStatus::kWaiting);
  const EventDraft& req = first_.events[2];
  EXPECT_EQ(base::string_or(req.data, "title", ""), "Ship run_1?");  // rendered
  EXPECT_EQ(base::string_or(req.data, "started_by", ""), "carol");
  const std::string id = approvals().at(0);
  EXPECT_TRUE(base::is_id(id, "apr"));

  auto first = vote(id, "alice", "approver", "approve", "fine by me");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(types(*first), (V{"approval.decided:review"}));  // 1 of 2: still waiting
  EXPECT_EQ(base::string_or(first->events[0].data, "status", ""), "pending");
  EXPECT_EQ(s_.status, RunStatus::kWaiting);

  ctx_.now = kT0 + Millis(5000);
  auto second = vote(id, "dave", "operator", "approve");  // by user name
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(types(*second), (V{"approval.decided:review", "node.succeeded:review",
                               "node.started:publish", "node.skipped:discard", "run.running"}));
  EXPECT_EQ(node("review").outcome, "approved");
  const json::object& out = node("review").slot.output.as_object();
  EXPECT_EQ(out.at("decision"), "approve");
  ASSERT_EQ(out.at("decisions").as_array().size(), 2u);
  EXPECT_EQ(out.at("decisions").as_array()[0].at("by"), "alice");
  EXPECT_EQ(out.at("decisions").as_array()[0].at("comment"), "fine by me");
  EXPECT_EQ(out.at("timed_out"), false);

  auto row = find_approval(s_, id);
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->status, "approved");
  EXPECT_EQ(row->node, "review");
  EXPECT_EQ(row->decisions.as_array().size(), 2u);
  EXPECT_EQ(row->request.at("quorum"), 2);
  expect_fold();
}

TEST_F(ApprovalTest, WhoMayDecide) {
  submit(kGate);
  const std::string id = approvals().at(0);
  auto outsider = vote(id, "eve", "operator", "approve");
  ASSERT_FALSE(outsider.has_value());
  EXPECT_EQ(outsider.error().code, Code::kPermissionDenied);
  auto self = vote(id, "carol", "approver", "approve");  // started the run
  ASSERT_FALSE(self.has_value());
  EXPECT_EQ(self.error().code, Code::kPermissionDenied);
  EXPECT_NE(self.error().message.find("allow_self_approval"), std::string::npos);
  auto bad = vote(id, "alice", "approver", "maybe");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
  ASSERT_TRUE(vote(id, "alice", "approver", "approve").has_value());
  auto twice = vote(id, "alice", "approver", "approve");
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().code, Code::kFailedPrecondition);
  auto unknown = vote("apr_nope", "alice", "approver", "approve");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, Code::kNotFound);
  EXPECT_EQ(s_.status, RunStatus::kWaiting);  // refusals change nothing
  expect_fold();
}

TEST_F(ApprovalTest, SelfApprovalWhenAllowedAndSelfRejectionAlways) {
  submit(R"({"name":"g","nodes":[{"id":"a","type":"approval","config":{"title":"t",
     "approvers":{"users":["carol"]},"allow_self_approval":true}}]})");
  ASSERT_TRUE(vote(approvals().at(0), "carol", "operator", "approve").has_value());
  EXPECT_EQ(s_.status, RunStatus::kSucceeded);

  s_ = RunState{};
  log_.clear();
  submit(R"({"name":"g","nodes":[{"id":"a","type":"approval","config":{"title":"t",
     "approvers":{"users":["carol"]}}}]})");
  ASSERT_TRUE(vote(approvals().at(0), "carol", "operator", "reject").has_value());
  EXPECT_EQ(node("a").outcome, "rejected");
}

TEST_F(ApprovalTest, ARejectionRejectsUnlessReviewersMustAgree) {
  submit(kGate);
  auto r = vote(approvals().at(0), "alice", "approver", "reject", "no");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(node("review").outcome, "rejected");
  EXPECT_EQ(node("review").slot.status, NodeStatus::kSucceeded);  // a decision, not a failure
  EXPECT_EQ(node("discard").slot.status, NodeStatus::kRunning);
  EXPECT_EQ(node("publish").slot.status, NodeStatus::kSkipped);

  s_ = RunState{};
  log_.clear();
  submit(R"({"name":"g","nodes":[{"id":"a","type":"approval","config":{"title":"t",
     "approvers":{"roles":["approver"]},"quorum":2,"reject_on_any":false}}]})");
  const std::string id = approvals().at(0);
  ASSERT_TRUE(vote(id, "u1", "approver", "reject").has_value());
  EXPECT_EQ(s_.status, RunStatus::kWaiting);  // one rejection of two needed
  ASSERT_TRUE(vote(id, "u2", "approver", "approve").has_value());
  EXPECT_EQ(s_.status, RunStatus::kWaiting);
  ASSERT_TRUE(vote(id, "u3", "approver", "reject").has_value());
  EXPECT_EQ(node("a").outcome, "rejected");
  EXPECT_EQ(node("a").slot.output.at("decisions").as_array().size(), 3u);
  expect_fold();
}

TEST_F(ApprovalTest, TimeoutIsADurableTimerWithEachOnTimeout) {
  for (std::string on : {"approve", "reject", "fail"}) {
    SCOPED_TRACE(on);
    s_ = RunState{};
    log_.clear();
    submit(std::string(R"({"name":"g","nodes":[{"id":"a","type":"approval","config":{"title":"t",
       "approvers":{"roles":["approver"]},"timeout":"1h","on_timeout":")") +
           on + R"("}}]})");
    ASSERT_EQ(next_due(s_), kT0 + Millis(3'600'000));
    EXPECT_TRUE(types(tick_at(kT0 + Millis(3'599'999))).empty());
    // The state survives a snapshot (a restart) before the timer fires.
    auto back = state_from_json(state_to_json(s_), irs_);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, s_);
    s_ = std::move(*back);
    Decision d = tick_at(kT0 + Millis(3'600'000));
    const NodeState& a = node("a");
    if (on == "fail") {
      EXPECT_EQ(types(d), (V{"approval.decided:a", "node.failed:a", "run.failed"}));
      EXPECT_EQ(a.outcome, "timed_out");
      EXPECT_EQ(a.slot.error.at("code"), "approval_timed_out");
    } else {
      EXPECT_EQ(types(d), (V{"approval.decided:a", "node.succeeded:a", "run.succeeded"}));
      EXPECT_EQ(a.outcome, on == "approve" ? "approved" : "rejected");
      EXPECT_EQ(a.slot.output.at("timed_out"), true);
      EXPECT_TRUE(a.slot.output.at("decisions").as_array().empty());
    }
    EXPECT_EQ(find_approval(s_, approvals().at(0))->status, on == "approve"  ? "approved"
                                                            : on == "reject" ? "rejected"
                                                                             : "timed_out");
    expect_fold();
  }
}

TEST_F(ApprovalTest, ParallelAndForeachApprovalsResolveIndependently) {
  submit(R"({"name":"g","nodes":[
    {"id":"left","type":"approval","config":{"title":"L","approvers":{"roles":["approver"]}}},
    {"id":"right","type":"approval","config":{"title":"R","approvers":{"roles":["approver"]}}},
    {"id":"each","type":"approval","foreach":"${{ [\"x\",\"y\",\"z\"] }}",
     "config":{"title":"item ${{ .item }}","approvers":{"roles":["approver"]}}},
    {"id":"end","type":"noop","needs":["left","right","each"]}]})");
  const std::vector<std::string> ids = approvals();
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(s_.status, RunStatus::kWaiting);
  // Decide in an order unrelated to the request order.
  ASSERT_TRUE(vote(ids[3], "a", "approver", "approve").has_value());  // each[1]
  ASSERT_TRUE(vote(ids[1], "a", "approver", "reject").has_value());   // right
  ASSERT_TRUE(vote(ids[2], "a", "approver", "approve").has_value());  // each[0]
  EXPECT_EQ(node("each").slot.status, NodeStatus::kRunning);
  ASSERT_TRUE(vote(ids[4], "a", "approver", "approve").has_value());  // each[2]
  EXPECT_EQ(node("each").outcome, "approved");
  EXPECT_EQ(node("each").slot.output.as_array().size(), 3u);
  EXPECT_EQ(node("right").outcome, "rejected");
  EXPECT_EQ(s_.status, RunStatus::kWaiting);
  ASSERT_TRUE(vote(ids[0], "a", "approver", "approve").has_value());  // left
  EXPECT_EQ(node("end").slot.status, NodeStatus::kRunning);  // all three settled (succeeded)
  EXPECT_EQ(s_.status, RunStatus::kRunning);
  for (const std::string& id : ids) EXPECT_NE(find_approval(s_, id)->status, "pending");
  EXPECT_EQ(find_approval(s_, ids[2])->index, 0);
  expect_fold();
}

TEST_F(ApprovalTest, CancelClosesPendingApprovals) {
  submit(kGate);
  const std::string id = approvals().at(0);
  auto d = decide_command(s_, Command::kCancel, "stop", ctx_, irs_);
  ASSERT_TRUE(d.has_value());
  keep(*d);
  EXPECT_EQ(types(*d).at(0), "approval.decided:review");
  EXPECT_EQ(find_approval(s_, id)->status, "cancelled");
  auto late = vote(id, "alice", "approver", "approve");
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code, Code::kFailedPrecondition);
  expect_fold();
}

TEST_F(ApprovalTest, ChangedApprovalsAreTheOnesTouchedNow) {
  submit(kGate);
  const int review = ir_->index_of("review");
  EXPECT_EQ(changed_approvals(s_, review, kT0).size(), 1u);
  EXPECT_TRUE(changed_approvals(s_, ir_->index_of("publish"), kT0).empty());  // no gate
  ctx_.now = kT0 + Millis(1);
  EXPECT_TRUE(changed_approvals(s_, review, ctx_.now).empty());
  ASSERT_TRUE(vote(approvals().at(0), "alice", "approver", "approve").has_value());
  ASSERT_EQ(changed_approvals(s_, review, ctx_.now).size(), 1u);
  EXPECT_EQ(changed_approvals(s_, review, ctx_.now)[0].decisions.as_array().size(), 1u);
}

TEST_F(ApprovalTest, ADynamicConfigThatIsInvalidFailsTheNode) {
  submit(R"({"name":"g","nodes":[{"id":"a","type":"approval","config":{"title":"t",
     "approvers":{"roles":["approver"]},"quorum":"${{ \"two\" }}"}}]})");
  EXPECT_EQ(node("a").slot.status, NodeStatus::kFailed);
  EXPECT_EQ(node("a").slot.error.at("code"), "invalid_config");
  EXPECT_EQ(s_.status, RunStatus::kFailed);
}

}  // namespace
}  // namespace venture::engine
