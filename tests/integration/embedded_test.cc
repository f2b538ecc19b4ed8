// Goal: the embedded stack as `venture serve` wires it (SQLite with fsync, in-process bus, threaded
// engine, worker pool) runs the examples, survives a restart with timers and in-flight tasks, holds
// a freeze, honours idempotency keys and operator commands, and leaves a verifying chain.
// Method: real components in a temporary directory; waits are on terminal events delivered by the
// bus (condition variables with generous bounds), never on sleeps.
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "bus/bus.h"
#include "engine/engine.h"
#include "nodes/nodes.h"
#include "storage/storage.h"
#include "workflow/workflow.h"

#ifndef VENTURE_SOURCE_DIR
#error "VENTURE_SOURCE_DIR must be defined"
#endif

namespace venture {
namespace {

class Stack {
 public:
  explicit Stack(const std::string& dir, bool workers = true) : dir_(dir) {
    storage::Options so;
    so.signing_key = base::signing_key_from_seed(std::vector<uint8_t>(32, 7));
    store_ = storage::open_sqlite(dir, so, clock_, random_).value();
    bus_ = bus::new_memory_bus(clock_);
    nodes::register_builtins(registry_);
    for (const char* s : {"run.succeeded", "run.failed", "run.cancelled"}) {
      (void)bus_
          ->subscribe(s,
                      [this](const bus::Message& m) {
                        std::lock_guard lock(mu_);
                        done_[std::string(m.data.at("run").as_string())] = m.subject;
                        cv_.notify_all();
                      })
          .value();
    }
    for (const char* s : {"node.succeeded", "node.failed"}) {
      (void)bus_
          ->subscribe(s,
                      [this](const bus::Message& m) {
                        std::lock_guard lock(mu_);
                        const std::string key = std::string(m.data.at("run").as_string()) + "/" +
                                                std::string(m.data.at("node").as_string());
                        nodes_[key] = m.data.at("data");
                        cv_.notify_all();
                      })
          .value();
    }
    engine_ = std::make_unique<engine::Engine>(*store_, *bus_, clock_, random_, engine::Options{});
    EXPECT_TRUE(engine_->start());
    if (workers) start_workers();
  }
  ~Stack() { shutdown(); }

  void start_workers() {
    workers_ =
        std::make_unique<nodes::WorkerPool>(*bus_, registry_, clock_, nodes::WorkerOptions{});
    workers_->start();
  }
  void shutdown() {
    if (workers_) workers_->stop();
    if (engine_) engine_->stop();
    workers_.reset();
    engine_.reset();
  }
  // The terminal event type of the run, waiting up to two minutes for it.
  std::string wait(const std::string& run) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::minutes(2), [&] { return done_.contains(run); });
    return done_.contains(run) ? done_[run] : "timeout";
  }
  // The data of the node's settle event (node.succeeded or node.failed), waiting up to two
  // minutes for it; null on timeout.
  json::value wait_node(const std::string& run, const std::string& node) {
    const std::string key = run + "/" + node;
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::minutes(2), [&] { return nodes_.contains(key); });
    return nodes_.contains(key) ? nodes_[key] : json::value();
  }
  engine::Engine& engine() { return *engine_; }
  storage::Store& store() { return *store_; }
  bus::Bus& bus() { return *bus_; }

 private:
  std::string dir_;
  base::RealClock clock_;
  base::RealRandom random_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<bus::Bus> bus_;
  nodes::Registry registry_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<nodes::WorkerPool> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::string> done_;
  std::map<std::string, json::value> nodes_;  // "run/node" -> settle event data
};

class EmbeddedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "venture-emb-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static json::value load(const std::string& file) {
    std::ifstream in(std::string(VENTURE_SOURCE_DIR) + "/examples/" + file);
    std::stringstream ss;
    ss << in.rdbuf();
    workflow::Problems problems;
    auto doc = workflow::parse_document(ss.str(), problems);
    EXPECT_TRUE(problems.empty()) << file;
    return doc.value();
  }

  static std::string start(Stack& s, const json::value& def, json::value inputs = {},
                           std::string key = "", std::string hash = "") {
    engine::StartRequest req;
    req.definition = def;
    req.inputs = std::move(inputs);
    req.idempotency_key = std::move(key);
    req.body_hash = std::move(hash);
    workflow::Problems problems;
    auto r = s.engine().start_run(std::move(req), problems);
    EXPECT_TRUE(r) << (r ? "" : r.error().to_string());
    return r ? r->id : "";
  }

  static engine::PatchRequest patch_request(const std::string& run, std::string_view ops,
                                            bool review) {
    return engine::PatchRequest{run, base::parse_json(ops).value(), "because", "ops-bot", review};
  }

  std::string dir_;
};

TEST_F(EmbeddedTest, ExamplesRunToTheirDocumentedResults) {
  Stack s(dir_);
  struct Case {
    const char* file;
    json::value inputs;
    const char* status;
    json::value output;
  };
  const std::vector<Case> cases = {
      {"hello.json", json::object{{"who", "venture"}}, "succeeded", "HELLO, VENTURE"},
      {"fan-out.yaml", json::object{{"items", json::array{1, 2, 3}}}, "succeeded",
       json::object{{"doubled", json::array{2, 4, 6}}, {"sides", json::array{"left", "right"}}}},
      {"branches.json", json::object{{"score", 70}}, "succeeded", "accepted"},
      {"branches.json", json::object{{"score", 10}}, "succeeded", "rejected"},
      {"retries.json", json::object{}, "succeeded",
       json::object{{"flaky", "failed"}, {"fatal", "failed"}}},
      {"timers.yaml", json::object{}, "succeeded", 3},
  };
  for (const Case& c : cases) {
    const std::string run = start(s, load(c.file), c.inputs);
    EXPECT_EQ(s.wait(run), std::string("run.") + c.status) << c.file;
    auto row = s.store().get_run(run);
    ASSERT_TRUE(row) << c.file;
    EXPECT_EQ(row->status, c.status) << c.file;
    EXPECT_EQ(row->output, c.output) << c.file << ": " << json::serialize(row->output);
  }
  // retries: flaky ran 3 attempts and failed (continue); fatal ran once; fallback was skipped.
  auto runs = s.store().list_runs({}).value();
  for (const auto& r : runs.items) {
    if (r.workflow != "retries") continue;
    std::map<std::string, storage::NodeRow> nodes;
    for (auto& n : s.store().get_nodes(r.id).value()) nodes[n.node] = n;
    EXPECT_EQ(nodes["flaky"].status, "failed");
    EXPECT_EQ(nodes["flaky"].attempts, 3);
    EXPECT_EQ(nodes["fatal"].attempts, 1);
    EXPECT_EQ(nodes["fallback"].status, "skipped");
    EXPECT_EQ(nodes["report"].status, "succeeded");
  }
  EXPECT_TRUE(s.store().verify().value().ok);
}

TEST_F(EmbeddedTest, RunsSurviveARestartWithTimersAndInFlightTasks) {
  const json::value sleeper = base::parse_json(R"({"name": "sleeper", "nodes": [
      {"id": "nap", "type": "sleep", "config": {"duration": "300ms"}},
      {"id": "after", "type": "noop", "needs": ["nap"], "config": {"output": "woke"}}]})")
                                  .value();
  const json::value chain = base::parse_json(R"({"name": "chain", "nodes": [
      {"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "needs": ["a"]}]})")
                                .value();
  std::string timer_run, task_run;
  {
    Stack s(dir_, /*workers=*/false);  // no workers: the chain's first task stays in flight
    timer_run = start(s, sleeper);
    task_run = start(s, chain);
    EXPECT_EQ(s.store().get_run(task_run).value().status, "running");
  }  // the process "dies": the in-process bus and its queued task are gone
  Stack s(dir_);
  EXPECT_EQ(s.wait(timer_run), "run.succeeded");
  EXPECT_EQ(s.wait(task_run), "run.succeeded");
  EXPECT_EQ(s.store().get_run(timer_run).value().output, nullptr);
  auto nodes = s.store().get_nodes(timer_run).value();
  for (const auto& n : nodes) EXPECT_EQ(n.status, "succeeded") << n.node;
  EXPECT_TRUE(s.store().verify().value().ok);
}

TEST_F(EmbeddedTest, FreezeStopsDispatchAndRunStartsUntilUnfreeze) {
  Stack s(dir_);
  const json::value chain = base::parse_json(R"({"name": "chain5", "nodes": [
      {"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "needs": ["a"]},
      {"id": "c", "type": "noop", "needs": ["b"]}, {"id": "d", "type": "noop", "needs": ["c"]},
      {"id": "e", "type": "noop", "needs": ["d"]}]})")
                                .value();
  std::vector<std::string> live;
  for (int i = 0; i < 50; ++i) live.push_back(start(s, chain));
  ASSERT_TRUE(s.engine().freeze("incident"));
  EXPECT_TRUE(s.engine().frozen());
  const std::string queued = start(s, chain);
  EXPECT_EQ(s.store().get_run(queued).value().status, "queued");
  // Let the workers drain what was dispatched before the freeze: results still apply.
  const int64_t frozen_at = [&] {
    storage::EventFilter f;
    f.type_prefix = "control.frozen";
    return s.store().read_events(f).value().back().seq;
  }();
  // Drive engine steps (each probe is a commit) until the workers have returned every task that
  // was dispatched before the freeze and the engine has applied every result.
  auto idle = [&] {
    auto t = s.bus().stats(engine::task_queue("noop"));
    auto r = s.bus().stats(engine::kResultsQueue);
    return t && r && t->ready + t->leased + r->ready + r->leased == 0;
  };
  for (int i = 0; i < 10000 && !idle(); ++i) {
    ASSERT_TRUE(s.engine().pause(queued, "probe"));
    ASSERT_TRUE(s.engine().resume(queued, "probe"));
  }
  ASSERT_TRUE(idle());
  ASSERT_TRUE(s.engine().pause(queued, "one more step after the last result"));
  ASSERT_TRUE(s.engine().resume(queued, "probe"));
  storage::EventFilter f;
  f.after_seq = frozen_at;
  f.limit = limits::kReadPageMax;
  for (const auto& e : s.store().read_events(f).value()) {
    EXPECT_NE(e.type, "node.started") << "dispatch while frozen at seq " << e.seq;
    EXPECT_NE(e.type, "run.started") << "run start while frozen at seq " << e.seq;
  }
  ASSERT_TRUE(s.engine().unfreeze());
  for (const auto& run : live) EXPECT_EQ(s.wait(run), "run.succeeded");
  EXPECT_EQ(s.wait(queued), "run.succeeded");
  EXPECT_TRUE(s.store().verify().value().ok);
}

TEST_F(EmbeddedTest, IdempotencyKeysAndOperatorCommands) {
  Stack s(dir_);
  const json::value sleeper = base::parse_json(R"({"name": "sleeper", "nodes": [
      {"id": "nap", "type": "sleep", "config": {"duration": "1h"}}]})")
                                  .value();
  const std::string a = start(s, sleeper, {}, "key-1", "b2:one");
  const std::string b = start(s, sleeper, {}, "key-1", "b2:one");
  EXPECT_EQ(a, b);
  engine::StartRequest other;
  other.definition = sleeper;
  other.idempotency_key = "key-1";
  other.body_hash = "b2:two";
  workflow::Problems problems;
  auto conflict = s.engine().start_run(other, problems);
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().code, Code::kInvalidArgument);

  EXPECT_EQ(s.store().get_run(a).value().status, "waiting");
  auto resume = s.engine().resume(a, "not paused");
  ASSERT_FALSE(resume);
  EXPECT_EQ(resume.error().code, Code::kFailedPrecondition);
  ASSERT_TRUE(s.engine().pause(a, "hold"));
  EXPECT_EQ(s.store().get_run(a).value().status, "paused");
  EXPECT_EQ(s.engine().pause(a, "again").error().code, Code::kFailedPrecondition);
  ASSERT_TRUE(s.engine().resume(a, "go"));
  ASSERT_TRUE(s.engine().cancel(a, "enough"));
  EXPECT_EQ(s.wait(a), "run.cancelled");
  EXPECT_EQ(s.engine().cancel(a, "twice").error().code, Code::kFailedPrecondition);
  EXPECT_EQ(s.engine().cancel("run_nope", "x").error().code, Code::kNotFound);

  // Replay from the last node reuses nothing downstream and runs it again.
  const json::value chain = base::parse_json(R"({"name": "chain", "nodes": [
      {"id": "a", "type": "noop", "config": {"output": 1}},
      {"id": "b", "type": "transform", "needs": ["a"], "config": {"expr": ".nodes.a.output + 1"}}],
      "output": "${{ .nodes.b.output }}"})")
                                .value();
  const std::string c = start(s, chain);
  EXPECT_EQ(s.wait(c), "run.succeeded");
  auto replay = s.engine().replay(c, "b");
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->replay_of, c);
  EXPECT_EQ(s.wait(replay->id), "run.succeeded");
  EXPECT_EQ(s.store().get_run(replay->id).value().output, 2);
  EXPECT_EQ(s.engine().replay(c, "bb").error().code, Code::kInvalidArgument);
  EXPECT_TRUE(s.store().verify().value().ok);
}

// Patch review: a direct patch applies in one commit; a reviewed one leaves the run alone until
// approved (then the run runs the new graph) or rejected; decisions are final.
TEST_F(EmbeddedTest, PatchesApplyDirectlyOrAfterReview) {
  Stack s(dir_);
  const json::value held = base::parse_json(R"({"name": "held", "nodes": [
      {"id": "gate", "type": "sleep", "config": {"duration": "1h"}},
      {"id": "after", "type": "noop", "needs": ["gate"]}]})")
                               .value();
  const std::string run = start(s, held);
  const std::string v0 = s.store().get_run(run).value().version;
  workflow::Problems problems;
  auto direct = s.engine().propose_patch(
      patch_request(run, R"([{"op": "add", "path": "/nodes/-", "value": {"id": "extra_a",
          "type": "noop", "config": {"output": "a"}}}])",
                    false),
      problems);
  ASSERT_TRUE(direct) << direct.error().to_string();
  EXPECT_EQ(direct->status, "applied");
  EXPECT_TRUE(direct->id.starts_with("pat_"));
  EXPECT_NE(direct->version, v0);
  EXPECT_EQ(s.store().get_run(run).value().version, direct->version);
  EXPECT_EQ(s.wait_node(run, "extra_a").at("output"), "a");
  const storage::PatchRow direct_row = s.store().get_patch(direct->id).value();
  EXPECT_EQ(direct_row.status, "applied");
  EXPECT_EQ(direct_row.proposed_by, "ops-bot");
  EXPECT_EQ(direct_row.version, direct->version);

  auto pending = s.engine().propose_patch(
      patch_request(run, R"([{"op": "add", "path": "/nodes/-", "value": {"id": "extra_b",
          "type": "noop", "config": {"output": "b"}}}])",
                    true),
      problems);
  ASSERT_TRUE(pending) << pending.error().to_string();
  EXPECT_EQ(pending->status, "pending_approval");
  EXPECT_EQ(pending->version, "");
  EXPECT_EQ(s.store().get_run(run).value().version, direct->version);  // unaffected
  for (const auto& n : s.store().get_nodes(run).value()) EXPECT_NE(n.node, "extra_b");
  auto approved = s.engine().decide_patch_proposal(pending->id, true, "lead", "ok", problems);
  ASSERT_TRUE(approved) << approved.error().to_string();
  EXPECT_EQ(approved->status, "applied");
  EXPECT_EQ(s.store().get_run(run).value().version, approved->version);
  EXPECT_EQ(s.wait_node(run, "extra_b").at("output"), "b");  // the run uses the new graph
  const storage::PatchRow approved_row = s.store().get_patch(pending->id).value();
  EXPECT_EQ(approved_row.decided_by, "lead");
  EXPECT_EQ(approved_row.decision_reason, "ok");
  auto twice = s.engine().decide_patch_proposal(pending->id, true, "lead", "", problems);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, Code::kFailedPrecondition);

  auto doomed = s.engine().propose_patch(
      patch_request(run, R"([{"op": "add", "path": "/nodes/-", "value": {"id": "extra_c",
          "type": "noop"}}])",
                    true),
      problems);
  ASSERT_TRUE(doomed);
  auto rejected = s.engine().decide_patch_proposal(doomed->id, false, "lead", "no", problems);
  ASSERT_TRUE(rejected) << rejected.error().to_string();
  EXPECT_EQ(rejected->status, "rejected");
  EXPECT_EQ(s.store().get_run(run).value().version, approved->version);
  EXPECT_EQ(s.engine().decide_patch_proposal(doomed->id, true, "lead", "", problems).error().code,
            Code::kFailedPrecondition);
  EXPECT_EQ(s.engine().decide_patch_proposal("pat_nope", true, "lead", "", problems).error().code,
            Code::kNotFound);
  EXPECT_TRUE(problems.empty());

  const auto rows = s.store().list_patches(run).value();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].id, direct->id);
  EXPECT_EQ(rows[2].status, "rejected");
  storage::EventFilter f;
  f.run = run;
  f.type_prefix = "patch.";
  std::vector<std::string> types;
  for (const auto& e : s.store().read_events(f).value()) types.push_back(e.type);
  EXPECT_EQ(types, (std::vector<std::string>{"patch.proposed", "patch.applied", "patch.proposed",
                                             "patch.applied", "patch.proposed", "patch.rejected"}));
  ASSERT_TRUE(s.engine().cancel(run, "done"));
  EXPECT_TRUE(s.store().verify().value().ok);
}

// Invalid patches are 422 with a pointer per problem; an approval is re-validated against the
// run as it is then; a run that finished leaves its pending patches undecidable.
TEST_F(EmbeddedTest, PatchValidationAndApprovalAgainstTheCurrentState) {
  Stack s(dir_, /*workers=*/false);  // `a` stays in flight until the workers start
  const json::value def = base::parse_json(R"({"name": "settle", "nodes": [
      {"id": "a", "type": "noop"}, {"id": "b", "type": "noop", "needs": ["a"]},
      {"id": "gate", "type": "sleep", "needs": ["b"], "config": {"duration": "1h"}}]})")
                              .value();
  const std::string run = start(s, def);
  workflow::Problems problems;
  auto invalid = s.engine().propose_patch(
      patch_request(run, R"([{"op": "remove", "path": "/nodes/7"}])", false), problems);
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().code, Code::kInvalidArgument);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].path, "/ops/0/path");
  problems.clear();
  auto bad_need = s.engine().propose_patch(
      patch_request(run, R"([{"op": "add", "path": "/nodes/1/needs/-", "value": "zz"}])", true),
      problems);
  ASSERT_FALSE(bad_need);
  EXPECT_EQ(bad_need.error().code, Code::kInvalidArgument);
  ASSERT_FALSE(problems.empty());
  EXPECT_EQ(problems[0].path, "/nodes/1/needs/1");
  problems.clear();
  auto started = s.engine().propose_patch(
      patch_request(run, R"([{"op": "add", "path": "/nodes/0/timeout", "value": "5s"}])", false),
      problems);
  ASSERT_FALSE(started);  // `a` has started: it may not change
  EXPECT_EQ(started.error().code, Code::kInvalidArgument);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].path, "/nodes/0");
  EXPECT_EQ(s.engine().propose_patch(patch_request("run_nope", "[]", false), problems).error().code,
            Code::kNotFound);
  problems.clear();

  auto pending = s.engine().propose_patch(
      patch_request(run, R"([{"op": "add", "path": "/nodes/1/timeout", "value": "5s"}])", true),
      problems);
  ASSERT_TRUE(pending) << pending.error().to_string();
  s.start_workers();
  ASSERT_FALSE(s.wait_node(run, "b").is_null());  // b settled before the approval
  auto late = s.engine().decide_patch_proposal(pending->id, true, "lead", "", problems);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, Code::kInvalidArgument);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].path, "/nodes/1");
  const storage::PatchRow row = s.store().get_patch(pending->id).value();
  EXPECT_EQ(row.status, "pending_approval");
  EXPECT_EQ(row.error.at("errors").at(0).at("path"), "/nodes/1");

  ASSERT_TRUE(s.engine().cancel(run, "finish"));
  EXPECT_EQ(s.wait(run), "run.cancelled");
  problems.clear();
  auto after_end = s.engine().decide_patch_proposal(pending->id, false, "lead", "", problems);
  ASSERT_FALSE(after_end);
  EXPECT_EQ(after_end.error().code, Code::kFailedPrecondition);
  auto on_finished = s.engine().propose_patch(
      patch_request(run, R"([{"op": "add", "path": "/nodes/-", "value": {"id": "z",
          "type": "noop"}}])",
                    false),
      problems);
  ASSERT_FALSE(on_finished);
  EXPECT_EQ(on_finished.error().code, Code::kFailedPrecondition);
  EXPECT_TRUE(s.store().verify().value().ok);
}

// A runaway jq program (a transform node's `def f: f; f`) is stopped at the expression time
// budget: its node fails with the time-limit error (not retried) while other runs keep going.
TEST_F(EmbeddedTest, RunawayExpressionFailsItsNodeAndOtherRunsProgress) {
  Stack s(dir_);
  const json::value runaway = base::parse_json(R"({"name": "runaway", "nodes": [
      {"id": "spin", "type": "transform", "config": {"expr": "def f: f; f"},
       "retry": {"max_attempts": 3}}]})")
                                  .value();
  const json::value chain = base::parse_json(R"({"name": "chain", "nodes": [
      {"id": "a", "type": "noop"},
      {"id": "b", "type": "transform", "needs": ["a"], "config": {"expr": "[range(10)] | add"}}],
      "output": "${{ .nodes.b.output }}"})")
                                .value();
  const std::string stuck = start(s, runaway);
  std::vector<std::string> others;
  for (int i = 0; i < 20; ++i) others.push_back(start(s, chain));
  for (const auto& run : others) {
    EXPECT_EQ(s.wait(run), "run.succeeded");
    EXPECT_EQ(s.store().get_run(run).value().output, 45);
  }
  EXPECT_EQ(s.wait(stuck), "run.failed");
  const storage::NodeRow spin = s.store().get_nodes(stuck).value().at(0);
  EXPECT_EQ(spin.status, "failed");
  EXPECT_EQ(spin.attempts, 1);  // an expression error is not retried
  EXPECT_EQ(spin.error.at("code"), "expression_error");
  EXPECT_EQ(spin.error.at("message"), "expression exceeded its time limit of 1s");
  EXPECT_TRUE(s.store().verify().value().ok);
}

}  // namespace
}  // namespace venture
