// Cluster mode of the engine shell over one memory store and one memory bus (one partition; no
// workers: the workflow is one approval, decided through the engines): the
// first engine owns it, the second forwards every run request to it; the fence stops an owner
// whose partition was taken; a stopping owner hands the partition over. The real PostgreSQL/NATS
// shape is tested end to end by tests/integration/cluster_test.py.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "engine/engine.h"

namespace venture::engine {
namespace {

const char* kGate = R"({
  "name": "gate",
  "nodes": [
    {"id": "ask", "type": "approval",
     "config": {"title": "Go?", "approvers": {"roles": ["admin"]}, "quorum": 1,
                "allow_self_approval": true}}
  ],
  "output": "${{ .nodes.ask.outcome }}"
})";

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::Options so;
    so.signing_key = base::new_signing_key();
    so.fsync = false;
    store_ = storage::new_memory_store(so, clock_, random_);
    bus_ = bus::new_memory_bus(clock_);
  }
  void TearDown() override {
    for (auto& e : engines_) e->stop();
  }

  Engine& start_engine(const std::string& id, bool drive = true) {
    Options o;
    o.cluster.enabled = true;
    o.cluster.id = id;
    o.cluster.drive = drive;
    o.cluster.lease = Millis(2000);
    o.cluster.forward_timeout = Millis(20000);
    engines_.push_back(std::make_unique<Engine>(*store_, *bus_, clock_, random_, o));
    EXPECT_TRUE(engines_.back()->start());
    return *engines_.back();
  }

  // Waits (bounded) until pred holds; tests assert behaviour, the bound only stops a hang.
  template <typename Pred>
  bool eventually(Pred pred) {
    for (int i = 0; i < 2000; ++i) {
      if (pred()) return true;
      std::this_thread::sleep_for(Millis(5));
    }
    return pred();
  }

  std::string pending_approval(const std::string& run) {
    storage::ApprovalFilter f;
    f.run = run;
    f.status = "pending";
    auto page = store_->list_approvals(f);
    return page && !page->items.empty() ? page->items.front().id : "";
  }

  base::RealClock clock_;
  base::RealRandom random_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<bus::Bus> bus_;
  std::vector<std::unique_ptr<Engine>> engines_;
};

TEST_F(ClusterTest, ANonOwnerForwardsEveryRunRequestToTheOwner) {
  Engine& owner = start_engine("e1");
  Engine& other = start_engine("e2");
  EXPECT_EQ(owner.owned_partitions(), std::vector<int>{0});
  EXPECT_TRUE(other.owned_partitions().empty());

  workflow::Problems problems;
  ASSERT_TRUE(other.register_workflow(base::parse_json(kGate).value(), "", problems));
  auto started = other.start_run({"gate", {}, {}, "", "", "alice"}, problems);
  ASSERT_TRUE(started) << started.error().to_string();
  EXPECT_EQ(started->workflow, "gate");
  EXPECT_GE(other.stats().forwarded, 1);
  ASSERT_TRUE(eventually([&] { return !pending_approval(started->id).empty(); }));

  // A vote through the non-owner: decided by the owner, the row comes back over the bus.
  Vote vote{pending_approval(started->id), "alice", "admin", "approve", "ok", "api", ""};
  auto decided = other.decide_approval(vote);
  ASSERT_TRUE(decided) << decided.error().to_string();
  EXPECT_EQ(decided->status, "approved");
  ASSERT_TRUE(eventually([&] {
    auto row = store_->get_run(started->id);
    return row && row->status == "succeeded";
  }));
  EXPECT_EQ(store_->get_run(started->id)->output, json::value("approved"));

  // Errors travel back with their codes: an unknown run is 404-like, a finished one 409-like.
  EXPECT_EQ(other.cancel("run_does_not_exist", "x").error().code, Code::kNotFound);
  EXPECT_EQ(other.cancel(started->id, "x").error().code, Code::kFailedPrecondition);
  // A second start, cancelled through the non-owner while it waits for its approval.
  auto second = other.start_run({"gate", {}, {}, "", "", "bob"}, problems);
  ASSERT_TRUE(second);
  ASSERT_TRUE(other.cancel(second->id, "no longer needed"));
  EXPECT_EQ(store_->get_run(second->id)->status, "cancelled");
  EXPECT_EQ(owner.stats().forwarded, 0);
}

TEST_F(ClusterTest, InvalidRequestsAreAnsweredWithTheOwnersProblems) {
  start_engine("e1");
  Engine& api_only = start_engine("api", /*drive=*/false);
  workflow::Problems problems;
  ASSERT_TRUE(api_only.register_workflow(base::parse_json(kGate).value(), "", problems));
  auto missing = api_only.start_run({"nope", {}, {}, "", "", ""}, problems);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kNotFound);
  auto started = api_only.start_run({"gate", {}, {}, "", "", ""}, problems);
  ASSERT_TRUE(started);
  json::value ops = base::parse_json(R"([{"op": "remove", "path": "/nodes/0"}])").value();
  workflow::Problems patch_problems;
  auto patched =
      api_only.propose_patch({started->id, ops, "drop the gate", "x", false}, patch_problems);
  ASSERT_FALSE(patched);
  EXPECT_EQ(patched.error().code, Code::kInvalidArgument);
  ASSERT_FALSE(patch_problems.empty()) << "the owner's problems came back with the answer";
  EXPECT_FALSE(patch_problems.front().path.empty());
  EXPECT_TRUE(api_only.owned_partitions().empty());
}

TEST_F(ClusterTest, AFencedOwnerWritesNothingAndStopsDriving) {
  Engine& first = start_engine("e1");
  ASSERT_EQ(first.owned_partitions(), std::vector<int>{0});
  workflow::Problems problems;
  ASSERT_TRUE(first.register_workflow(base::parse_json(kGate).value(), "", problems));
  auto run = first.start_run({"gate", {}, {}, "", "", "alice"}, problems);
  ASSERT_TRUE(run);
  // A newer owner fenced the partition (as a takeover after a lapsed lease does): this engine's
  // next append is refused, nothing is written, and it stops driving the partition.
  ASSERT_TRUE(store_->fence_partition(0, int64_t{1} << 40));
  auto refused = first.cancel(run->id, "x");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::kFailedPrecondition);
  EXPECT_EQ(store_->get_run(run->id)->status, "waiting");
  EXPECT_TRUE(first.owned_partitions().empty());
}

TEST_F(ClusterTest, AStoppingOwnerHandsItsRunsOver) {
  Engine& first = start_engine("e1");
  Engine& second = start_engine("e2");
  workflow::Problems problems;
  ASSERT_TRUE(first.register_workflow(base::parse_json(kGate).value(), "", problems));
  auto run = first.start_run({"gate", {}, {}, "", "", "alice"}, problems);
  ASSERT_TRUE(run);
  ASSERT_TRUE(eventually([&] { return !pending_approval(run->id).empty(); }));
  first.stop();  // deletes its lease: the other engine takes the partition at its next tick
  ASSERT_TRUE(eventually([&] { return second.owned_partitions() == std::vector<int>{0}; }));
  Vote vote{pending_approval(run->id), "alice", "admin", "approve", "", "api", ""};
  auto decided = second.decide_approval(vote);
  ASSERT_TRUE(decided) << decided.error().to_string();
  ASSERT_TRUE(eventually([&] {
    auto row = store_->get_run(run->id);
    return row && row->status == "succeeded";
  }));
}

}  // namespace
}  // namespace venture::engine
