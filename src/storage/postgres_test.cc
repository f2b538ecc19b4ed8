// Goal: prove that the PostgreSQL store keeps the Store contract (the shared suite of
// store_contract_test.h) and the cluster-mode properties of docs/storage-format.md "PostgreSQL":
// one hash chain per partition and a verify that reports each; several Store objects (standing in
// for processes) appending concurrently on one database with unique seqs and every chain intact;
// a global reader polling read_events(after = last) that never misses an event committed later
// with a smaller seq (the watermark); fencing shared through the database; tampering named at its
// seq; reopening restores the chains; lost connections fail appends cleanly and are re-made.
//
// Method: every test creates its own database (CREATE DATABASE venture_t_<random> over
// VENTURE_TEST_POSTGRES_URL, dropped at the end), so tests are isolated and may run in parallel.
// Without VENTURE_TEST_POSTGRES_URL every test FAILS (never skips): ctest provides it through
// scripts/with-test-services. Tampering and connection kills go through a separate libpq
// connection. Nothing sleeps; concurrency tests join their threads.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>

#include "storage/log_core.h"
#include "storage/storage.h"
#include "storage/store_contract_test.h"

namespace venture::storage::testing {
namespace {

constexpr const char* kUrlVar = "VENTURE_TEST_POSTGRES_URL";

std::string server_url() {
  const char* url = std::getenv(kUrlVar);  // NOLINT(concurrency-mt-unsafe): no setenv here
  return url != nullptr ? url : "";
}

// url with its database name replaced by db ("postgres://u@h:p/x?o" -> "postgres://u@h:p/db?o").
std::string with_database(const std::string& url, const std::string& db) {
  const std::size_t scheme = url.find("://");
  const std::size_t slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  const std::size_t query = url.find('?');
  const std::string base = url.substr(0, slash == std::string::npos ? query : slash);
  return base + "/" + db + (query == std::string::npos ? "" : url.substr(query));
}

// Runs one statement over its own connection; "" or the error message.
std::string run_sql(const std::string& url, const std::string& sql,
                    const std::vector<std::string>& params = {}) {
  PGconn* c = PQconnectdb(url.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string e = PQerrorMessage(c);
    PQfinish(c);
    return "connect: " + e;
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::string& p : params) {
    values.push_back(p.c_str());
  }
  PGresult* r = PQexecParams(c, sql.c_str(), static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0);
  const ExecStatusType st = PQresultStatus(r);
  std::string error =
      st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? "" : PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
  return error;
}

// A fresh database for one test, dropped (with its connections) when this goes away.
class TestDatabase {
 public:
  TestDatabase() {
    if (server_url().empty()) {
      ADD_FAILURE() << kUrlVar << " is not set: this test needs the test PostgreSQL (run it under "
                    << "ctest, or export $(cat /tmp/svc/env) for a manual run)";
      return;
    }
    name_ = "venture_t_" + base::random_secret_hex().substr(0, 16);
    const std::string error = run_sql(server_url(), "CREATE DATABASE " + name_);
    if (!error.empty()) {
      ADD_FAILURE() << "CREATE DATABASE " << name_ << ": " << error;
      name_.clear();
    }
  }
  ~TestDatabase() {
    if (!name_.empty()) {
      const std::string error =
          run_sql(server_url(), "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
      EXPECT_EQ(error, "");
    }
  }
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  // False when the database could not be created (the failure is already recorded).
  bool ok() const { return !name_.empty(); }
  // The URL of this database (an unreachable one when it could not be created: opens then fail).
  std::string url() const {
    return name_.empty() ? "postgres://127.0.0.1:1/none" : with_database(server_url(), name_);
  }
  // Runs a statement behind the stores' backs; fails the test on error.
  void sql(const std::string& statement, const std::vector<std::string>& params = {}) const {
    EXPECT_EQ(run_sql(url(), statement, params), "") << statement;
  }
  // Ends every session on this database (a crash of the stores' connections), from outside it.
  void kill_connections() const {
    EXPECT_EQ(run_sql(server_url(),
                      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                      {name_}),
              "");
  }
  // While false, nobody can connect to this database: the server is "unreachable" for it.
  void allow_connections(bool allow) const {
    EXPECT_EQ(run_sql(server_url(), "ALTER DATABASE " + name_ + " ALLOW_CONNECTIONS " +
                                        (allow ? "true" : "false")),
              "");
  }

 private:
  std::string name_;
};

class PostgresBackend final : public Backend {
 public:
  Result<std::unique_ptr<Store>> open(const Options& options, base::Clock& clock,
                                      base::Random& random) override {
    return open_postgres(db_.url(), options, clock, random);
  }
  void tamper_data(Store& /*store*/, int64_t seq, const json::value& data) override {
    db_.sql("UPDATE events SET data = $1 WHERE seq = $2",
            {base::compact_json(data), std::to_string(seq)});
  }
  void tamper_blob(Store& /*store*/, const std::string& hash, const std::string& payload) override {
    db_.sql("UPDATE blobs SET data = $1 WHERE hash = $2", {payload, hash});
  }
  bool durable() const override { return true; }
  bool queues() const override { return true; }

 private:
  TestDatabase db_;
};

}  // namespace

std::unique_ptr<Backend> make_backend(const std::string& name) {
  VENTURE_CHECK(name == "postgres");
  return std::make_unique<PostgresBackend>();
}

namespace {

INSTANTIATE_TEST_SUITE_P(Postgres, StoreTest, ::testing::Values("postgres"),
                         [](const auto& param_info) { return param_info.param; });

// ---- PostgreSQL-specific ----

class PostgresTest : public ::testing::Test {
 protected:
  PostgresTest() {
    std::array<uint8_t, 32> seed{};
    seed.fill(9);
    options_.signing_key = base::signing_key_from_seed(seed);
    options_.fsync = false;
    options_.partitions = 4;
  }
  void SetUp() override { ASSERT_TRUE(db_.ok()) << "no test database"; }
  std::unique_ptr<Store> must_open(base::Random& random, const Options& options) {
    auto s = open_postgres(db_.url(), options, clock_, random);
    VENTURE_CHECK_MSG(s.has_value(), s ? "" : s.error().to_string().c_str());
    return std::move(*s);
  }
  std::unique_ptr<Store> must_open(base::Random& random) { return must_open(random, options_); }

  TestDatabase db_;
  base::ManualClock clock_{from_unix_ms(1'800'000'000'000)};
  base::SeededRandom random_{1};
  Options options_;
};

// Checks every partition's chain link by link from the events as read (non-blob events only,
// whose stored form is what read_events returns).
void expect_partition_chains(const std::vector<Event>& all, int partitions) {
  std::map<int, std::string> prev;
  for (const Event& e : all) {
    const int p = partition_of(e.run, partitions);
    auto it = prev.find(p);
    EXPECT_EQ(e.prev, it == prev.end() ? internal::kZeroHash : it->second) << "seq " << e.seq;
    EXPECT_EQ(compute_event_hash(e), e.hash) << "seq " << e.seq;
    prev[p] = e.hash;
  }
}

TEST_F(PostgresTest, EachPartitionHasItsOwnChainAndVerifyReportsEvery) {
  options_.checkpoint_every_events = 7;
  auto store = must_open(random_);
  ASSERT_EQ(store->partitions(), 4);
  for (int i = 0; i < 40; ++i) {
    Batch b;
    b.events = {make_event("node.ready", "run_" + std::to_string(i % 10)),
                make_event("node.started", "run_" + std::to_string((i + 3) % 10))};
    ASSERT_TRUE(store->append(std::move(b)));
  }
  ASSERT_TRUE(store->checkpoint());
  const auto all = *store->read_events(EventFilter{0, limits::kReadPageMax, "", ""});
  expect_partition_chains(all, 4);
  const VerifyReport report = *store->verify();
  ASSERT_TRUE(report.ok) << report.reason;
  ASSERT_EQ(report.partitions.size(), 4u);
  EXPECT_EQ(report.events, static_cast<int64_t>(all.size()));
  EXPECT_GE(report.checkpoints, 5);
  std::set<int> nonempty;
  for (const PartitionReport& p : report.partitions) {
    EXPECT_TRUE(p.ok);
    if (p.events > 0) {
      nonempty.insert(p.partition);
    }
  }
  EXPECT_GE(nonempty.size(), 3u);  // 10 runs spread over 4 partitions
  // The last checkpoint names every partition's head.
  const Event* cp = nullptr;
  for (const Event& e : all) {
    if (e.type == "audit.checkpoint") {
      cp = &e;
    }
  }
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(partition_of(cp->run, 4), 0);
  EXPECT_EQ(cp->data.as_object().at("heads").as_array().size(), 4u);
  EXPECT_TRUE(internal::check_heads_checkpoint(*cp));
}

// Two stores on one database (two engine processes) append from many threads to their own runs
// while a third polls the global log with read_events(after = last seen). Every seq is unique,
// the reader sees every event exactly once and in seq order, and every chain verifies.
TEST_F(PostgresTest, TwoProcessesAppendConcurrentlyAndAReaderMissesNothing) {
  options_.checkpoint_every_events = 50;
  base::SeededRandom random_a{11};
  base::SeededRandom random_b{22};
  base::SeededRandom random_r{33};
  auto a = must_open(random_a);
  auto b = must_open(random_b);
  auto reader = must_open(random_r);
  constexpr int kThreadsPerStore = 4;
  constexpr int kAppendsPerThread = 30;
  std::mutex mu;
  std::set<std::string> appended;  // event ids
  std::set<int64_t> seqs;
  std::atomic<int> writers_left{2 * kThreadsPerStore};
  std::vector<std::thread> threads;
  threads.reserve(std::size_t{2} * kThreadsPerStore);
  for (int t = 0; t < 2 * kThreadsPerStore; ++t) {
    Store* store = t < kThreadsPerStore ? a.get() : b.get();
    threads.emplace_back([&, store, t] {
      for (int i = 0; i < kAppendsPerThread; ++i) {
        Batch batch;
        const std::string run = "run_" + std::to_string(t) + "_" + std::to_string(i % 3);
        batch.events = {make_event("node.ready", run), make_event("node.started", run)};
        auto r = store->append(std::move(batch));
        VENTURE_CHECK_MSG(r.has_value(), r ? "" : r.error().to_string().c_str());
        std::lock_guard lock(mu);
        for (const Event& e : r->events) {
          EXPECT_TRUE(seqs.insert(e.seq).second) << "duplicate seq " << e.seq;
          appended.insert(e.id);
        }
      }
      --writers_left;
    });
  }
  std::vector<Event> seen;
  int64_t last = 0;
  bool drained = false;
  // Poll until the writers are done and one more read after that comes back empty.
  while (!drained) {
    const bool writers_done = writers_left.load() == 0;
    auto page = reader->read_events(EventFilter{last, 1000, "", ""});
    ASSERT_TRUE(page) << page.error().to_string();
    for (Event& e : *page) {
      EXPECT_GT(e.seq, last);
      last = e.seq;
      seen.push_back(std::move(e));
    }
    drained = writers_done && page->empty();
    std::this_thread::yield();
  }
  for (auto& t : threads) {
    t.join();
  }
  std::map<std::string, int> count;
  for (const Event& e : seen) {
    if (e.type != "audit.checkpoint") {
      ++count[e.id];
    }
  }
  EXPECT_EQ(count.size(), appended.size());
  for (const std::string& id : appended) {
    EXPECT_EQ(count[id], 1) << id;
  }
  EXPECT_EQ(appended.size(), 2u * 2 * kThreadsPerStore * kAppendsPerThread);
  expect_partition_chains(seen, 4);
  const VerifyReport report = *reader->verify();
  EXPECT_TRUE(report.ok) << report.reason << " at " << report.first_bad_seq;
  EXPECT_EQ(report.events, static_cast<int64_t>(seen.size()));
  EXPECT_GE(report.checkpoints, 1);
  // A global read from 0 returns the same events, in seq order.
  std::vector<Event> again;
  for (int64_t after = 0;;) {
    auto page = *reader->read_events(EventFilter{after, 500, "", ""});
    if (page.empty()) {
      break;
    }
    after = page.back().seq;
    again.insert(again.end(), page.begin(), page.end());
  }
  EXPECT_EQ(again, seen);
}

// The epoch lives in the partition row: a fence raised through one store shuts out an append
// through another, and survives a reopen.
TEST_F(PostgresTest, FencesAreSharedAndDurable) {
  base::SeededRandom random_b{2};
  auto a = must_open(random_);
  auto b = must_open(random_b);
  const int p = partition_of("run_x", 4);
  ASSERT_TRUE(a->fence_partition(p, 3));
  Batch batch;
  batch.events = {make_event("run.started", "run_x")};
  batch.fences = {Fence{p, 0}};
  EXPECT_EQ(b->append(batch).error().code, Code::kFailedPrecondition);
  batch.fences = {Fence{p, 3}};
  EXPECT_TRUE(b->append(batch));
  EXPECT_EQ(b->fence_partition(p, 2).error().code, Code::kFailedPrecondition);
  a.reset();
  a = must_open(random_);
  EXPECT_EQ(a->fence_partition(p, 2).error().code, Code::kFailedPrecondition);
  batch.fences = {Fence{p, 3}};
  EXPECT_TRUE(a->append(batch));
  EXPECT_TRUE(a->verify()->ok);
}

// Rewriting an event with a recomputed hash breaks the next link (or the partition row's head);
// deleting one is found too. verify names the seq.
TEST_F(PostgresTest, TamperingIsNamedAtItsSeq) {
  auto store = must_open(random_);
  std::vector<Event> written;
  for (int i = 0; i < 12; ++i) {
    Batch b;
    b.events = {make_event("node.ready", "run_t", json::object{{"i", i}})};
    written.push_back(store->append(std::move(b))->events.front());
  }
  ASSERT_TRUE(store->verify()->ok);
  Event forged = written[5];
  forged.data = json::object{{"i", 500}};
  forged.hash = compute_event_hash(forged);
  db_.sql("UPDATE events SET data = $1, hash = $2 WHERE seq = $3",
          {base::compact_json(forged.data), forged.hash, std::to_string(forged.seq)});
  VerifyReport report = *store->verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, written[6].seq) << report.reason;  // its successor's prev
  db_.sql("UPDATE events SET hash = $1 WHERE seq = $2",
          {written[5].hash, std::to_string(forged.seq)});
  report = *store->verify();
  EXPECT_EQ(report.first_bad_seq, written[5].seq) << report.reason;  // hash does not recompute
  db_.sql("DELETE FROM events WHERE seq = $1", {std::to_string(written[11].seq)});
  report = *store->verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, written[5].seq);
}

// A forger who rewrites a partition's last event, its hash and the partition row consistently is
// still caught: a signed checkpoint names the old head.
TEST_F(PostgresTest, CheckpointsPinEveryPartitionHead) {
  std::string run = "run_0";
  for (int i = 1; partition_of(run, 4) == 0; ++i) {
    run = "run_" + std::to_string(i);
  }
  auto store = must_open(random_);
  Batch b;
  b.events = {make_event("node.ready", run, json::object{{"v", 1}})};
  const Event head = store->append(b)->events.front();
  ASSERT_TRUE(store->checkpoint());
  const int64_t cp_seq = *store->last_seq();
  ASSERT_TRUE(store->verify()->ok);
  Event forged = head;
  forged.data = json::object{{"v", 2}};
  forged.hash = compute_event_hash(forged);
  db_.sql("UPDATE events SET data = $1, hash = $2 WHERE seq = $3",
          {base::compact_json(forged.data), forged.hash, std::to_string(forged.seq)});
  db_.sql("UPDATE partitions SET head_hash = $1 WHERE part = $2",
          {forged.hash, std::to_string(partition_of(run, 4))});
  const VerifyReport report = *store->verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, cp_seq) << report.reason;
  EXPECT_NE(report.reason.find("checkpoint names head"), std::string::npos) << report.reason;
}

// Text with a NUL byte cannot be stored faithfully by libpq: refused, nothing written.
TEST_F(PostgresTest, NulBytesAreRefused) {
  auto store = must_open(random_);
  Batch b;
  b.events = {make_event("node.ready", std::string("run_a\0b", 7))};
  auto r = store->append(b);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidArgument) << r.error().to_string();
  EXPECT_EQ(*store->last_seq(), 0);
  EXPECT_TRUE(store->verify()->ok);
}

// Reopening (with a different Options::partitions, which is ignored) restores every chain and
// continues it; a partition row that disagrees with its events fails the open with kDataLoss.
TEST_F(PostgresTest, ReopenRestoresChainsAndContinues) {
  auto store = must_open(random_);
  for (int i = 0; i < 10; ++i) {
    Batch b;
    b.events = {make_event("node.ready", "run_" + std::to_string(i))};
    ASSERT_TRUE(store->append(std::move(b)));
  }
  store.reset();
  Options other = options_;
  other.partitions = 9;
  store = must_open(random_, other);
  EXPECT_EQ(store->partitions(), 4);
  for (int i = 0; i < 10; ++i) {
    Batch b;
    b.events = {make_event("node.ready", "run_" + std::to_string(i))};
    ASSERT_TRUE(store->append(std::move(b)));
  }
  const auto all = *store->read_events(EventFilter{0, limits::kReadPageMax, "", ""});
  EXPECT_EQ(all.size(), 20u);
  expect_partition_chains(all, 4);
  EXPECT_TRUE(store->verify()->ok);
  store.reset();
  db_.sql("UPDATE partitions SET head_hash = $1 WHERE part = $2",
          {"b2:" + std::string(64, '1'), std::to_string(partition_of("run_0", 4))});
  auto bad = open_postgres(db_.url(), options_, clock_, random_);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::kDataLoss);
}

// Every connection of the store is killed while appends run: each append either committed or
// failed with kUnavailable; the store reconnects by itself; whatever committed verifies and
// survives a reopen (the closest a test gets to kill -9 of the process).
TEST_F(PostgresTest, LostConnectionsFailCleanlyAndReconnect) {
  auto store = must_open(random_);
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};
  std::mutex mu;
  std::set<std::string> committed;
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000 && !stop.load(); ++i) {
        Batch b;
        b.events = {make_event("node.ready", "run_k" + std::to_string(t))};
        auto r = store->append(std::move(b));
        if (r) {
          std::lock_guard lock(mu);
          committed.insert(r->events.front().id);
        } else {
          EXPECT_EQ(r.error().code, Code::kUnavailable) << r.error().to_string();
          ++failed;
        }
      }
    });
  }
  // Kill twice, each time once some appends have committed since the last kill (spinning on the
  // counters, not sleeping), so kills land in the middle of group transactions.
  for (std::size_t k = 1; k <= 2; ++k) {
    while (true) {
      std::lock_guard lock(mu);
      if (committed.size() >= 20 * k) {
        break;
      }
    }
    db_.kill_connections();
  }
  stop = true;
  for (auto& t : threads) {
    t.join();
  }
  RecordProperty("failed_appends", failed.load());
  // The next calls reconnect (health retries a stale pooled connection itself).
  EXPECT_TRUE(store->health());
  Batch b;
  b.events = {make_event("node.ready", "run_after")};
  auto after = store->append(b);
  if (!after) {  // a group may still pick up one stale pooled connection (writes never retry)
    after = store->append(b);
  }
  ASSERT_TRUE(after) << after.error().to_string();
  store.reset();
  store = must_open(random_);
  const auto all = *store->read_events(EventFilter{0, limits::kReadPageMax, "", ""});
  std::set<std::string> stored;
  for (const Event& e : all) {
    stored.insert(e.id);
  }
  for (const std::string& id : committed) {
    EXPECT_TRUE(stored.contains(id)) << id;
  }
  const VerifyReport report = *store->verify();
  EXPECT_TRUE(report.ok) << report.reason;
}

// While the database cannot be reached, health() and every call say kUnavailable; once it can,
// the store reconnects by itself.
TEST_F(PostgresTest, HealthFollowsTheServer) {
  auto store = must_open(random_);
  EXPECT_TRUE(store->health());
  db_.allow_connections(false);
  db_.kill_connections();
  const Status down = store->health();
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, Code::kUnavailable);
  Batch b;
  b.events = {make_event("node.ready", "run_h")};
  auto failed = store->append(b);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, Code::kUnavailable);
  EXPECT_EQ(store->last_seq().error().code, Code::kUnavailable);
  db_.allow_connections(true);
  EXPECT_TRUE(store->health());
  ASSERT_TRUE(store->append(b));
  EXPECT_EQ(store->read_events(EventFilter{})->size(), 1u);
  EXPECT_TRUE(store->verify()->ok);
}

TEST_F(PostgresTest, UnreachableServerIsUnavailable) {
  auto s = open_postgres("postgres://venture@127.0.0.1:1/none?connect_timeout=2", options_, clock_,
                         random_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kUnavailable) << s.error().to_string();
  Options bad = options_;
  bad.partitions = 0;
  EXPECT_EQ(open_postgres(db_.url(), bad, clock_, random_).error().code, Code::kInvalidArgument);
}

}  // namespace
}  // namespace venture::storage::testing
