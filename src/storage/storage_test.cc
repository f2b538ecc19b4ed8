// Goal: prove that the single-process Store implementations (memory and SQLite) keep the Store
// contract (store_contract_test.h: round trip, contiguous seqs, a verifying hash chain with signed
// checkpoints, blobs, tamper detection naming the first bad seq, idempotency conflicts inside a
// group, group commit, fencing, the projections), plus memory-only fault injection and the event
// codec.
//
// Method: the shared suite instantiated for "memory" and "sqlite". Each SQLite test gets a fresh
// mkdtemp directory; tampering goes through a separate sqlite3 connection (SQLite) or the test
// hooks (memory).
#include "storage/storage.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <set>

#include "storage/log_core.h"
#include "storage/store_contract_test.h"

namespace venture::storage::testing {
namespace {

std::string make_temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "storage_test.XXXXXX").string();
  char* dir = mkdtemp(tmpl.data());
  VENTURE_CHECK(dir != nullptr);
  return dir;
}

class MemoryBackend final : public Backend {
 public:
  Result<std::unique_ptr<Store>> open(const Options& options, base::Clock& clock,
                                      base::Random& random) override {
    return new_memory_store(options, clock, random);
  }
  void tamper_data(Store& store, int64_t seq, const json::value& data) override {
    tamper_memory_event(store, seq, data);
  }
  void tamper_blob(Store& store, const std::string& hash, const std::string& payload) override {
    internal::tamper_memory_blob(store, hash, payload);
  }
  bool durable() const override { return false; }
  bool queues() const override { return false; }
};

class SqliteBackend final : public Backend {
 public:
  SqliteBackend() : dir_(make_temp_dir()) {}
  ~SqliteBackend() override { std::filesystem::remove_all(dir_); }
  Result<std::unique_ptr<Store>> open(const Options& options, base::Clock& clock,
                                      base::Random& random) override {
    return open_sqlite(dir_, options, clock, random);
  }
  void tamper_data(Store& /*store*/, int64_t seq, const json::value& data) override {
    sql("UPDATE events SET data = ?1 WHERE seq = ?2", base::compact_json(data), seq);
  }
  void tamper_blob(Store& /*store*/, const std::string& hash, const std::string& payload) override {
    sql("UPDATE blobs SET data = ?1 WHERE hash = '" + hash + "' AND ?2 = 0", payload, 0);
  }
  bool durable() const override { return true; }
  bool queues() const override { return true; }

 private:
  // Runs one UPDATE behind the store's back.
  void sql(const std::string& sql, const std::string& text, int64_t key) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ + "/venture.db").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK);
    sqlite3_bind_text(stmt, 1, text.c_str(), static_cast<int>(text.size()), nullptr);
    sqlite3_bind_int64(stmt, 2, key);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }

  std::string dir_;
};

}  // namespace

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "sqlite") {
    return std::make_unique<SqliteBackend>();
  }
  VENTURE_CHECK(name == "memory");
  return std::make_unique<MemoryBackend>();
}

namespace {

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest, ::testing::Values("memory", "sqlite"),
                         [](const auto& param_info) { return param_info.param; });

TEST(PartitionOfTest, StableAndInRange) {
  EXPECT_EQ(partition_of("", 16), 0);
  EXPECT_EQ(partition_of("run_a", 1), 0);
  std::set<int> seen;
  for (int i = 0; i < 200; ++i) {
    const std::string run = "run_" + std::to_string(i);
    const int p = partition_of(run, 16);
    EXPECT_GE(p, 0);
    EXPECT_LT(p, 16);
    EXPECT_EQ(p, partition_of(run, 16));
    seen.insert(p);
  }
  EXPECT_EQ(seen.size(), 16u);  // 200 runs reach every partition
}

// Memory-only: injected faults fail whole appends, deterministically from the seed.
TEST(MemoryFaultsTest, FailedAppendsWriteNothingAndAreDeterministic) {
  base::ManualClock clock(from_unix_ms(0));
  auto run = [&](uint64_t seed) {
    base::SeededRandom random(1);
    std::unique_ptr<Store> store = new_memory_store(Options{}, clock, random);
    set_memory_faults(*store, MemoryFaults{0.5}, seed);
    std::vector<bool> pattern;
    int64_t ok = 0;
    for (int i = 0; i < 100; ++i) {
      Batch b;
      b.events = {make_event("node.ready", "run_a")};
      b.settings = {{"k" + std::to_string(i), "v"}};
      auto r = store->append(std::move(b));
      pattern.push_back(r.has_value());
      if (r) {
        ++ok;
      } else {
        EXPECT_EQ(r.error().code, Code::kUnavailable);
        EXPECT_FALSE(*store->get_setting("k" + std::to_string(i)));
      }
    }
    EXPECT_GT(ok, 20);
    EXPECT_LT(ok, 80);
    EXPECT_EQ(*store->last_seq(), ok);
    EXPECT_TRUE(store->verify()->ok);
    return pattern;
  };
  EXPECT_EQ(run(9), run(9));
  EXPECT_NE(run(9), run(10));
}

TEST(EventJsonTest, RoundTripAndStrictDecoding) {
  Event e;
  e.seq = 42;
  e.id = "evt_0192f3c4-5b6a-7c8d-9e0f-123456789abc";
  e.type = "node.succeeded";
  e.time = from_unix_ms(1'700'000'000'123);
  e.run = "run_x";
  e.node = "fetch";
  e.data = json::object{{"b", 1}, {"a", json::array{1, 2}}};
  e.prev = internal::kZeroHash;
  e.hash = compute_event_hash(e);
  const json::object j = event_to_json(e);
  EXPECT_EQ(j.at("time").as_string(), "2023-11-14T22:13:20.123Z");
  auto back = event_from_json(j);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, e);
  auto broken = [&](const char* key, json::value v) {
    json::object o = j;
    if (v.is_null()) {
      o.erase(key);
    } else {
      o[key] = std::move(v);
    }
    auto r = event_from_json(o);
    return !r && r.error().code == Code::kInvalidArgument;
  };
  EXPECT_TRUE(broken("seq", nullptr));
  EXPECT_TRUE(broken("seq", -1));
  EXPECT_TRUE(broken("seq", 1.5));
  EXPECT_TRUE(broken("id", "run_0192f3c4-5b6a-7c8d-9e0f-123456789abc"));
  EXPECT_TRUE(broken("type", ""));
  EXPECT_TRUE(broken("time", "yesterday"));
  EXPECT_TRUE(broken("data", json::array{}));
  EXPECT_TRUE(broken("prev", "b2:00"));
  EXPECT_TRUE(broken("hash", json::string("b2:" + std::string(64, 'A'))));
  EXPECT_TRUE(broken("extra", 1));
  EXPECT_FALSE(event_from_json(json::value(1)));
  // The hash covers prev: a different prev gives a different hash.
  Event other = e;
  other.prev = "b2:" + std::string(64, '1');
  EXPECT_NE(compute_event_hash(other), e.hash);
}

// The hand-written canonical text that the chain hashes must equal the generic canonical JSON of
// the envelope, for every shape of member (escapes, unicode, nested data, empty run/node).
TEST(EventHashTest, FastCanonicalTextEqualsGenericCanonicalJson) {
  std::vector<Event> events(4);
  events[0].data = json::object{{"z", 1}, {"a", json::array{1, "x", nullptr}}};
  events[1].data = json::object{{"quote\"and\\slash", "tab\there\nnewline\x01"}};
  events[1].run = "run_x";
  events[1].node = "n\"ode";
  events[2].data = json::object{{"uni", "h\xc3\xa9llo \xe2\x82\xac"}, {"d", 1.5}, {"b", true}};
  events[3].data = nullptr;
  int64_t seq = 1;
  for (Event& e : events) {
    e.seq = seq++;
    e.id = "evt_0192f3c4-5b6a-7c8d-9e0f-123456789abc";
    e.type = "node.started";
    e.time = from_unix_ms(1795428000123);
    e.prev = "b2:" + std::string(64, '0');
    EXPECT_EQ(internal::canonical_event_text(e), base::canonical_json(event_to_json(e, false)));
  }
}

}  // namespace
}  // namespace venture::storage::testing
