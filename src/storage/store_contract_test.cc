// Goal: the Store contract, one behavioural suite for every implementation: the append/read round
// trip, seqs, a verifying hash chain (per partition) with signed checkpoints, blob
// externalisation, tamper detection naming the first bad seq, idempotency conflicts that write
// nothing while the rest of the group commits, group commit under concurrent appends, fencing,
// and the projections (runs, nodes, workflows, tags, snapshots, settings, tokens, patches,
// approvals).
//
// Method: the fixture (store_contract_test.h) opens the backend named by the test parameter; the
// test binaries instantiate the suite (storage_test: memory, sqlite; storage_postgres_test:
// postgres). Concurrency tests hold the writer (Introspect::hold_writer) so that grouping is
// deterministic; nothing sleeps.
#include "storage/store_contract_test.h"

#include <map>
#include <set>
#include <thread>

namespace venture::storage::testing {

TEST_P(StoreTest, AppendReadRoundTrip) {
  Batch b;
  b.events = {make_event("run.submitted", "run_a", json::object{{"x", 1}}),
              make_event("node.started", "run_a"), make_event("node.started", "run_b")};
  b.events[1].node = "fetch";
  const AppendResult r = must_append(std::move(b));
  EXPECT_EQ(r.first_seq, 1);
  EXPECT_EQ(r.last_seq, 3);
  ASSERT_EQ(r.events.size(), 3u);
  std::map<int, std::string> heads;  // each partition's chain (the single-chain stores: one)
  for (std::size_t i = 0; i < r.events.size(); ++i) {
    EXPECT_EQ(r.events[i].seq, static_cast<int64_t>(i) + 1);
    EXPECT_TRUE(base::is_id(r.events[i].id, "evt"));
    EXPECT_EQ(r.events[i].hash, compute_event_hash(r.events[i]));
    const int p = partition_of(r.events[i].run, store_->partitions());
    auto head = heads.find(p);
    EXPECT_EQ(r.events[i].prev, head == heads.end() ? internal::kZeroHash : head->second);
    heads[p] = r.events[i].hash;
  }
  EXPECT_EQ(read_all(), r.events);
  EXPECT_EQ(*store_->last_seq(), 3);
  auto by_run = store_->read_events(EventFilter{0, 100, "run_a", ""});
  ASSERT_TRUE(by_run);
  EXPECT_EQ(by_run->size(), 2u);
  auto by_type = store_->read_events(EventFilter{1, 100, "", "node."});
  ASSERT_TRUE(by_type);
  ASSERT_EQ(by_type->size(), 2u);
  EXPECT_EQ((*by_type)[0].seq, 2);
  auto limited = store_->read_events(EventFilter{0, 1, "", ""});
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->size(), 1u);
}

TEST_P(StoreTest, SeqsAreContiguousAndChainVerifiesWithCheckpoints) {
  options_.checkpoint_every_events = 10;
  open();
  for (int i = 0; i < 25; ++i) {
    Batch b;
    b.events = {make_event("node.ready", "run_" + std::to_string(i % 3))};
    must_append(std::move(b));
  }
  const std::vector<Event> all = read_all();
  ASSERT_EQ(static_cast<int64_t>(all.size()), *store_->last_seq());
  int checkpoints = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].seq, static_cast<int64_t>(i) + 1);
    checkpoints += all[i].type == "audit.checkpoint" ? 1 : 0;
  }
  EXPECT_GE(checkpoints, 2);
  const VerifyReport report = must_verify();
  EXPECT_TRUE(report.ok) << report.reason;
  EXPECT_EQ(report.checkpoints, checkpoints);
  EXPECT_EQ(report.events, static_cast<int64_t>(all.size()));
}

TEST_P(StoreTest, TimeCheckpointAndForcedCheckpoint) {
  options_.checkpoint_every = Millis(1000);
  open();
  Batch b;
  b.events = {make_event("run.started", "run_a")};
  must_append(b);
  EXPECT_EQ(*store_->last_seq(), 1);
  clock_.advance(Millis(1500));
  must_append(b);
  ASSERT_EQ(*store_->last_seq(), 3);
  EXPECT_EQ(read_all()[2].type, "audit.checkpoint");
  ASSERT_TRUE(store_->checkpoint());  // only the checkpoint itself is uncovered: nothing to do
  EXPECT_EQ(*store_->last_seq(), 3);
  must_append(b);
  ASSERT_TRUE(store_->checkpoint());
  EXPECT_EQ(*store_->last_seq(), 5);
  const json::object cp = read_all()[4].data.as_object();
  if (GetParam() != "postgres") {  // PostgreSQL checkpoints name partition heads instead
    EXPECT_EQ(cp.at("from_seq").as_int64(), 3);
    EXPECT_EQ(cp.at("to_seq").as_int64(), 4);
  }
  EXPECT_TRUE(must_verify().ok);
}

TEST_P(StoreTest, TamperedDataIsDetectedAtItsSeq) {
  options_.checkpoint_every_events = 4;
  open();
  for (int i = 0; i < 10; ++i) {
    Batch b;
    b.events = {make_event("node.ready", "run_a", json::object{{"i", i}})};
    must_append(std::move(b));
  }
  ASSERT_TRUE(must_verify().ok);
  tamper_data(7, json::object{{"i", 999}});
  const VerifyReport report = must_verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 7);
  EXPECT_NE(report.reason.find("hash"), std::string::npos) << report.reason;
}

TEST_P(StoreTest, BlobsRoundTripAndTamperedBlobsAreCaught) {
  const std::string big(100 << 10, 'x');
  Batch b;
  b.events = {make_event("node.succeeded", "run_a", json::object{{"output", big}}),
              make_event("node.succeeded", "run_a", json::object{{"small", 1}})};
  const AppendResult r = must_append(std::move(b));
  const std::vector<Event> all = read_all();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].data.as_object().at("output").as_string(), big);
  EXPECT_EQ(all[0], r.events[0]);
  EXPECT_TRUE(must_verify().ok);
  const std::string payload = base::compact_json(json::object{{"output", big}});
  const std::string hash = base::b2(base::blake2b(payload));
  tamper_blob(hash, base::compact_json(json::object{{"output", "evil"}}));
  const VerifyReport report = must_verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 1);
  auto read = store_->read_events(EventFilter{});
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, Code::kDataLoss);
}

TEST_P(StoreTest, BadEventsAreRejectedAndWriteNothing) {
  Batch ok;
  ok.events = {make_event("run.started", "run_a")};
  must_append(ok);
  auto expect_invalid = [&](Event e) {
    Batch b;
    b.events = {make_event("run.started", "run_a"), std::move(e)};
    b.settings = {{"k", "v"}};
    auto r = store_->append(std::move(b));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Code::kInvalidArgument) << r.error().to_string();
  };
  expect_invalid(make_event("audit.checkpoint", ""));
  expect_invalid(make_event("x", "", json::object{{"$blob", "b2:00"}, {"bytes", 1}}));
  expect_invalid(make_event("", ""));
  expect_invalid(make_event("x", "", json::array{1}));
  expect_invalid(
      make_event("x", "", json::object{{"big", std::string(limits::kEventBytesMax, 'a')}}));
  EXPECT_EQ(*store_->last_seq(), 1);
  EXPECT_FALSE(*store_->get_setting("k"));
  must_append(ok);
  EXPECT_EQ(*store_->last_seq(), 2);
  EXPECT_TRUE(must_verify().ok);
}

// Two appends are queued while the writer is held, so they share one transaction: the one with a
// duplicate idempotency key fails alone and writes nothing; the other commits.
TEST_P(StoreTest, DuplicateIdempotencyKeyWritesNothingWhileTheGroupCommits) {
  Batch first;
  first.events = {make_event("run.submitted", "run_a")};
  first.idempotency = {IdempotencyRow{"tok:k1", "b2:aa", "run_a"}};
  must_append(first);
  const int64_t tx_before = internals(*store_).stats().transactions;

  Batch dup;
  dup.events = {make_event("run.submitted", "run_b"), make_event("run.started", "run_b")};
  dup.runs = {make_run("run_b", "wf", "queued", 5)};
  dup.idempotency = {IdempotencyRow{"tok:k2", "b2:bb", "run_b"},
                     IdempotencyRow{"tok:k1", "b2:bb", "run_b"}};
  Batch good;
  good.events = {make_event("run.submitted", "run_c")};
  good.runs = {make_run("run_c", "wf", "queued", 6)};
  internals(*store_).hold_writer(true);
  Result<AppendResult> dup_result = AppendResult{};
  Result<AppendResult> good_result = AppendResult{};
  std::thread t1([&] { dup_result = store_->append(dup); });
  if (queues()) {
    internals(*store_).wait_pending(1);
  } else {
    t1.join();
  }
  std::thread t2([&] { good_result = store_->append(good); });
  internals(*store_).wait_pending(2);
  internals(*store_).hold_writer(false);
  if (t1.joinable()) {
    t1.join();
  }
  t2.join();

  ASSERT_FALSE(dup_result);
  EXPECT_EQ(dup_result.error().code, Code::kAlreadyExists);
  ASSERT_TRUE(good_result) << good_result.error().to_string();
  EXPECT_EQ(good_result->first_seq, 2);
  EXPECT_EQ(*store_->last_seq(), 2);
  EXPECT_EQ(store_->get_run("run_b").error().code, Code::kNotFound);
  EXPECT_EQ(store_->get_idempotency("tok:k2").error().code, Code::kNotFound);
  EXPECT_EQ(store_->get_idempotency("tok:k1")->run, "run_a");
  EXPECT_EQ(store_->get_run("run_c")->last_seq, 2);
  if (queues()) {
    EXPECT_EQ(internals(*store_).stats().transactions, tx_before + 1);
  }
  EXPECT_TRUE(must_verify().ok);
}

// Pipelined appends (append_async) on one chain: once one fails, the later ones of its chain fail
// with kAborted and write nothing; a batch outside the chain and a new chain are unaffected.
TEST_P(StoreTest, ChainedAsyncAppendsStopAfterAFailure) {
  Batch first;
  first.events = {make_event("run.submitted", "run_a")};
  first.idempotency = {IdempotencyRow{"tok:k1", "b2:aa", "run_a"}};
  must_append(first);

  auto chain = std::make_shared<AppendChain>();
  Batch ok1;
  ok1.events = {make_event("run.started", "run_a")};
  ok1.chain = chain;
  Batch dup;
  dup.events = {make_event("run.submitted", "run_b")};
  dup.idempotency = {IdempotencyRow{"tok:k1", "b2:bb", "run_b"}};
  dup.chain = chain;
  Batch after;
  after.events = {make_event("run.started", "run_b")};
  after.runs = {make_run("run_b", "wf", "running", 5)};
  after.chain = chain;
  Batch independent;
  independent.events = {make_event("run.submitted", "run_c")};
  auto f1 = store_->append_async(ok1);
  auto f2 = store_->append_async(dup);
  auto f3 = store_->append_async(after);
  auto f4 = store_->append_async(independent);
  auto r1 = f1.get();
  auto r2 = f2.get();
  auto r3 = f3.get();
  auto r4 = f4.get();
  ASSERT_TRUE(r1) << r1.error().to_string();
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, Code::kAlreadyExists);
  ASSERT_FALSE(r3);
  EXPECT_EQ(r3.error().code, Code::kAborted);
  ASSERT_TRUE(r4) << r4.error().to_string();
  EXPECT_TRUE(chain->broken);
  EXPECT_EQ(store_->get_run("run_b").error().code, Code::kNotFound);
  EXPECT_EQ(*store_->last_seq(), 3);

  Batch fresh;
  fresh.events = {make_event("run.started", "run_c")};
  fresh.chain = std::make_shared<AppendChain>();
  auto r5 = store_->append_async(fresh).get();
  ASSERT_TRUE(r5) << r5.error().to_string();
  EXPECT_EQ(r5->first_seq, 4);
  EXPECT_TRUE(must_verify().ok);
}

TEST_P(StoreTest, ConcurrentAppendsAreContiguousAndGroupCommitted) {
  constexpr int kThreads = 8;
  constexpr int kAppendsPerThread = 40;
  internals(*store_).hold_writer(true);
  std::vector<std::vector<int64_t>> seqs(kThreads);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAppendsPerThread; ++i) {
        Batch b;
        b.events = {make_event("node.ready", "run_" + std::to_string(t)),
                    make_event("node.started", "run_" + std::to_string(t))};
        auto r = store_->append(std::move(b));
        VENTURE_CHECK(r.has_value());
        seqs[static_cast<std::size_t>(t)].push_back(r->first_seq);
        seqs[static_cast<std::size_t>(t)].push_back(r->last_seq);
      }
    });
  }
  if (queues()) {
    internals(*store_).wait_pending(kThreads);  // the first group holds one append per thread
  }
  internals(*store_).hold_writer(false);
  for (auto& t : threads) {
    t.join();
  }
  std::set<int64_t> all;
  for (const auto& v : seqs) {
    for (std::size_t i = 0; i < v.size(); i += 2) {
      if (GetParam() == "postgres") {
        EXPECT_LT(v[i], v[i + 1]);  // seqs come from a sequence shared by concurrent groups
      } else {
        EXPECT_EQ(v[i] + 1, v[i + 1]);
      }
      all.insert(v[i]);
      all.insert(v[i + 1]);
    }
  }
  ASSERT_EQ(all.size(), 2u * kThreads * kAppendsPerThread);
  EXPECT_EQ(read_all().size(), static_cast<std::size_t>(*store_->last_seq()));
  const internal::StoreStats stats = internals(*store_).stats();
  EXPECT_EQ(stats.appends, kThreads * kAppendsPerThread);
  if (queues()) {
    EXPECT_LT(stats.transactions, stats.appends);
  }
  EXPECT_TRUE(must_verify().ok);
}

TEST_P(StoreTest, RunsListWithFiltersAndCursorPagination) {
  Batch b;
  for (int i = 0; i < 23; ++i) {
    // Pairs share a created time, so the id tie-break matters.
    b.runs.push_back(make_run("run_" + std::string(1, static_cast<char>('a' + i)),
                              i % 2 == 0 ? "alpha" : "beta", i % 3 == 0 ? "succeeded" : "running",
                              1000 + i / 2));
  }
  b.events = {make_event("run.submitted", "run_c")};
  must_append(std::move(b));
  auto page_all = [&](RunFilter f) {
    std::vector<std::string> ids;
    for (int pages = 0; pages < 100; ++pages) {
      auto page = store_->list_runs(f);
      VENTURE_CHECK(page.has_value());
      for (const RunRow& r : page->items) {
        ids.push_back(r.id);
      }
      if (page->next_cursor.empty()) {
        break;
      }
      f.cursor = page->next_cursor;
    }
    return ids;
  };
  const std::vector<std::string> all = page_all(RunFilter{"", "", "", 5});
  ASSERT_EQ(all.size(), 23u);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), 23u);
  EXPECT_EQ(all.front(), "run_w");  // created 1011, the newest
  EXPECT_EQ(all[1], "run_v");       // created 1010, id desc
  EXPECT_EQ(all[2], "run_u");
  EXPECT_EQ(all.back(), "run_a");
  EXPECT_EQ(page_all(RunFilter{"succeeded", "", "", 2}).size(), 8u);
  EXPECT_EQ(page_all(RunFilter{"", "alpha", "", 3}).size(), 12u);
  EXPECT_EQ(page_all(RunFilter{"running", "beta", "", 1}).size(), 7u);
  EXPECT_EQ(store_->list_runs(RunFilter{"", "", "garbage", 5}).error().code,
            Code::kInvalidArgument);
  EXPECT_EQ(store_->get_run("run_c")->last_seq, 1);
  EXPECT_EQ(store_->get_run("run_a")->last_seq, 0);
  EXPECT_EQ(store_->list_active_runs()->size(), 15u);

  Batch update;  // a later batch without an event for run_c keeps its last_seq
  RunRow c = make_run("run_c", "alpha", "failed", 1001);
  c.error = json::object{{"code", "x"}};
  update.runs = {c};
  must_append(std::move(update));
  const RunRow got = *store_->get_run("run_c");
  EXPECT_EQ(got.status, "failed");
  EXPECT_EQ(got.last_seq, 1);
  EXPECT_EQ(got.error, c.error);
  EXPECT_EQ(got.inputs, c.inputs);
  EXPECT_TRUE(got.output.is_null());
  EXPECT_EQ(store_->list_active_runs()->size(), 14u);
}

TEST_P(StoreTest, OtherProjectionsUpsert) {
  Batch b;
  NodeRow n{"run_a", "fetch", "running", "", 1, nullptr, nullptr, from_unix_ms(5), std::nullopt};
  b.nodes = {n};
  b.workflow_versions = {WorkflowVersionRow{"wf", "b2:v1", json::object{{"a", 1}}, from_unix_ms(1)},
                         WorkflowVersionRow{"wf", "b2:v2", json::object{{"a", 2}}, from_unix_ms(2)},
                         WorkflowVersionRow{"other", "b2:v1", json::object(), from_unix_ms(1)}};
  b.tags = {TagRow{"wf", "stable", "b2:v1"}};
  b.snapshots = {Snapshot{"run_a", 10, json::object{{"s", 10}}}};
  b.settings = {{"frozen", "false"}};
  must_append(std::move(b));

  Batch b2;
  n.status = "succeeded";
  n.attempts = 2;
  n.output = json::object{{"ok", true}};
  n.finished = from_unix_ms(9);
  b2.nodes = {n, NodeRow{"run_a", "parse", "ready", "", 0, nullptr, nullptr, {}, {}}};
  b2.workflow_versions = {
      WorkflowVersionRow{"wf", "b2:v1", json::object{{"a", 99}}, from_unix_ms(1)}};
  b2.tags = {TagRow{"wf", "stable", "b2:v2"}, TagRow{"wf", "beta", "b2:v2"}};
  b2.snapshots = {Snapshot{"run_a", 20, json::object{{"s", 20}}}};
  b2.settings = {{"frozen", "true"}};
  must_append(std::move(b2));
  Batch b3;
  b3.snapshots = {Snapshot{"run_a", 15, json::object{{"s", 15}}}};  // older: ignored
  must_append(std::move(b3));

  const std::vector<NodeRow> nodes = *store_->get_nodes("run_a");
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].node, "fetch");
  EXPECT_EQ(nodes[0].status, "succeeded");
  EXPECT_EQ(nodes[0].attempts, 2);
  EXPECT_EQ(nodes[0].output, n.output);
  EXPECT_EQ(nodes[0].started, from_unix_ms(5));
  EXPECT_EQ(nodes[0].finished, from_unix_ms(9));
  EXPECT_FALSE(nodes[1].started.has_value());
  EXPECT_EQ(store_->get_workflow_version("wf", "b2:v1")->definition, (json::object{{"a", 1}}));
  EXPECT_EQ(store_->get_workflow_version("wf", "b2:v9").error().code, Code::kNotFound);
  const auto versions = *store_->list_workflow_versions("wf");
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0].version, "b2:v2");
  EXPECT_EQ(*store_->list_workflow_names(), (std::vector<std::string>{"other", "wf"}));
  const auto tags = *store_->list_tags("wf");
  ASSERT_EQ(tags.size(), 2u);
  EXPECT_EQ(tags[0].tag, "beta");
  EXPECT_EQ(tags[1].version, "b2:v2");
  EXPECT_EQ((*store_->load_snapshot("run_a"))->seq, 20);
  EXPECT_FALSE(*store_->load_snapshot("run_z"));
  EXPECT_EQ(**store_->get_setting("frozen"), "true");
  EXPECT_FALSE(*store_->get_setting("nope"));
}

TEST_P(StoreTest, TokensUpsertByIdAndAreFoundByHash) {
  TokenRow admin{"tok_b", "admin", "admin", "b2:h1", from_unix_ms(10), false, std::nullopt};
  TokenRow ci{"tok_a", "ci", "operator", "b2:h2", from_unix_ms(20), false, std::nullopt};
  TokenRow same_time{"tok_c", "bot", "viewer", "b2:h3", from_unix_ms(20), false, std::nullopt};
  Batch b;
  b.tokens = {ci, admin, same_time};
  must_append(std::move(b));
  ci.revoked = true;
  ci.revoked_at = from_unix_ms(30);
  Batch b2;
  b2.tokens = {ci};
  must_append(std::move(b2));
  if (durable()) {
    open();  // what was committed survives a reopen
  }
  const std::vector<TokenRow> tokens = *store_->list_tokens();
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_EQ(tokens[0], admin);  // oldest first, then by id
  EXPECT_EQ(tokens[1], ci);
  EXPECT_EQ(tokens[2], same_time);
  EXPECT_EQ(*store_->get_token_by_hash("b2:h2"), ci);
  EXPECT_EQ(*store_->get_token("tok_b"), admin);
  EXPECT_EQ(store_->get_token_by_hash("b2:nope").error().code, Code::kNotFound);
  EXPECT_EQ(store_->get_token("tok_z").error().code, Code::kNotFound);
}

TEST_P(StoreTest, PatchesUpsertByIdAndListPerRunOldestFirst) {
  PatchRow p1;
  p1.id = "pat_1";
  p1.run = "run_a";
  p1.status = "pending_approval";
  p1.ops = json::array{json::object{{"op", "remove"}, {"path", "/nodes/1"}}};
  p1.reason = "drop it";
  p1.proposed_by = "ci";
  p1.created = from_unix_ms(100);
  p1.updated = from_unix_ms(100);
  PatchRow p0 = p1;
  p0.id = "pat_0";
  p0.created = p0.updated = from_unix_ms(50);
  p0.status = "applied";
  p0.version = "b2:v2";
  PatchRow other = p1;
  other.id = "pat_2";
  other.run = "run_b";
  Batch b;
  b.patches = {p1, p0, other};
  must_append(std::move(b));
  p1.status = "rejected";
  p1.decided_by = "alice";
  p1.decision_reason = "no";
  p1.updated = from_unix_ms(200);
  p1.error =
      json::object{{"code", "invalid_argument"},
                   {"message", "m"},
                   {"errors", json::array{json::object{{"path", "/ops/0"}, {"message", "x"}}}}};
  Batch b2;
  b2.patches = {p1};
  must_append(std::move(b2));
  if (durable()) {
    open();
  }
  EXPECT_EQ(*store_->get_patch("pat_1"), p1);
  EXPECT_EQ(store_->get_patch("pat_9").error().code, Code::kNotFound);
  const std::vector<PatchRow> a = *store_->list_patches("run_a");
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0], p0);
  EXPECT_EQ(a[1], p1);
  EXPECT_EQ(store_->list_patches("run_b")->size(), 1u);
  EXPECT_TRUE(store_->list_patches("run_z")->empty());
}

TEST_P(StoreTest, ApprovalsUpsertByIdAndPageNewestFirstWithFilters) {
  std::vector<ApprovalRow> rows;
  for (int i = 0; i < 5; ++i) {
    ApprovalRow a;
    a.id = "apr_" + std::to_string(i);
    a.run = i < 3 ? "run_a" : "run_b";
    a.node = "review";
    a.index = i == 4 ? 2 : -1;
    a.status = "pending";
    a.created = a.updated = from_unix_ms(100 + i);
    a.due = i == 0 ? std::optional<Time>(from_unix_ms(9000)) : std::nullopt;
    a.request = json::object{{"title", "t" + std::to_string(i)}, {"quorum", 1}};
    a.decisions = json::array();
    rows.push_back(a);
  }
  Batch b;
  b.approvals = rows;
  must_append(std::move(b));
  rows[1].status = "approved";
  rows[1].updated = from_unix_ms(500);
  rows[1].decisions = json::array{json::object{{"by", "alice"}, {"decision", "approve"}}};
  Batch b2;
  b2.approvals = {rows[1]};
  must_append(std::move(b2));
  if (durable()) {
    open();
  }
  EXPECT_EQ(*store_->get_approval("apr_1"), rows[1]);
  EXPECT_EQ(*store_->get_approval("apr_0"), rows[0]);
  EXPECT_EQ(store_->get_approval("apr_9").error().code, Code::kNotFound);
  ApprovalFilter f;
  f.limit = 2;
  std::vector<std::string> seen;
  while (true) {
    auto page = store_->list_approvals(f);
    ASSERT_TRUE(page.has_value());
    for (const auto& a : page->items) seen.push_back(a.id);
    if (page->next_cursor.empty()) break;
    f.cursor = page->next_cursor;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"apr_4", "apr_3", "apr_2", "apr_1", "apr_0"}));
  ApprovalFilter pending;
  pending.status = "pending";
  pending.run = "run_a";
  auto page = store_->list_approvals(pending);
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->items[0].id, "apr_2");
  EXPECT_EQ(page->items[1].id, "apr_0");
  ApprovalFilter bad;
  bad.cursor = "garbage";
  EXPECT_FALSE(store_->list_approvals(bad).has_value());
}

// A fence commits an append only at the partition's current epoch; raising the epoch shuts out
// the old holder; a lower epoch cannot be set; bad partitions are invalid arguments.
TEST_P(StoreTest, FencedAppendsCommitOnlyAtTheCurrentEpoch) {
  const int p = partition_of("run_a", store_->partitions());
  ASSERT_GE(p, 0);
  ASSERT_LT(p, store_->partitions());
  Batch b;
  b.events = {make_event("run.started", "run_a")};
  b.fences = {Fence{p, 0}};
  must_append(b);  // every partition starts at epoch 0
  ASSERT_TRUE(store_->fence_partition(p, 5));
  const int64_t last = *store_->last_seq();
  Batch stale = b;
  stale.settings = {{"stale", "yes"}};
  auto r = store_->append(stale);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kFailedPrecondition) << r.error().to_string();
  EXPECT_EQ(*store_->last_seq(), last);
  EXPECT_FALSE(*store_->get_setting("stale"));
  b.fences = {Fence{p, 5}};
  const AppendResult fenced = must_append(b);
  EXPECT_GT(fenced.first_seq, last);
  EXPECT_EQ(store_->fence_partition(p, 4).error().code, Code::kFailedPrecondition);
  EXPECT_TRUE(store_->fence_partition(p, 5));  // the same epoch again is fine
  EXPECT_TRUE(store_->fence_partition(p, 6));
  EXPECT_EQ(store_->fence_partition(-1, 1).error().code, Code::kInvalidArgument);
  EXPECT_EQ(store_->fence_partition(store_->partitions(), 1).error().code, Code::kInvalidArgument);
  Batch out_of_range;
  out_of_range.fences = {Fence{store_->partitions(), 0}};
  EXPECT_EQ(store_->append(out_of_range).error().code, Code::kInvalidArgument);
  Batch no_events;  // a fence also guards a batch that only writes projections
  no_events.settings = {{"k", "v"}};
  no_events.fences = {Fence{p, 5}};
  EXPECT_EQ(store_->append(no_events).error().code, Code::kFailedPrecondition);
  EXPECT_FALSE(*store_->get_setting("k"));
  const VerifyReport report = must_verify();
  EXPECT_TRUE(report.ok) << report.reason;
  EXPECT_EQ(static_cast<int>(report.partitions.size()), store_->partitions());
  EXPECT_TRUE(store_->health());
}

// verify() reports each partition's chain: its event count and head.
TEST_P(StoreTest, VerifyReportsEveryPartitionHead) {
  for (int i = 0; i < 12; ++i) {
    Batch b;
    b.events = {make_event("node.ready", "run_" + std::to_string(i))};
    must_append(std::move(b));
  }
  ASSERT_TRUE(store_->checkpoint());
  const std::vector<Event> all = read_all();
  const VerifyReport report = must_verify();
  ASSERT_TRUE(report.ok) << report.reason;
  ASSERT_EQ(static_cast<int>(report.partitions.size()), store_->partitions());
  int64_t events = 0;
  for (const PartitionReport& pr : report.partitions) {
    EXPECT_TRUE(pr.ok);
    events += pr.events;
    const Event* head = nullptr;
    for (const Event& e : all) {
      if (partition_of(e.run, store_->partitions()) == pr.partition) {
        head = &e;
      }
    }
    EXPECT_EQ(pr.head_seq, head != nullptr ? head->seq : 0);
    EXPECT_EQ(pr.head_hash, head != nullptr ? head->hash : internal::kZeroHash);
  }
  EXPECT_EQ(events, static_cast<int64_t>(all.size()));
  EXPECT_EQ(report.events, static_cast<int64_t>(all.size()));
}

}  // namespace venture::storage::testing
