// The fixture of the Store contract suite (store_contract_test.cc), shared by storage_test
// (memory, SQLite) and storage_postgres_test (PostgreSQL): one behavioural suite, parameterised by
// backend name. Each test binary compiles store_contract_test.cc, defines make_backend() for the
// names it instantiates and instantiates StoreTest with them.
//
// Every test gets a fresh store (a mkdtemp directory, a fresh database, or a new MemoryStore), a
// ManualClock and a SeededRandom. Tampering goes behind the store's back through the backend.
// Concurrency tests hold the writer (Introspect::hold_writer) so that grouping is deterministic;
// nothing sleeps.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "storage/log_core.h"
#include "storage/storage.h"

namespace venture::storage::testing {

using internal::internals;

// One backend under test: how to open it and how to damage it behind the store's back.
class Backend {
 public:
  virtual ~Backend() = default;
  // Opens the store on this backend's medium (the same medium on every call: a reopen).
  virtual Result<std::unique_ptr<Store>> open(const Options& options, base::Clock& clock,
                                              base::Random& random) = 0;
  virtual void tamper_data(Store& store, int64_t seq, const json::value& data) = 0;
  virtual void tamper_blob(Store& store, const std::string& hash, const std::string& payload) = 0;
  // Whether a reopen keeps what was committed.
  virtual bool durable() const = 0;
  // Whether appends queue for a group-committing writer (hold_writer / wait_pending work).
  virtual bool queues() const = 0;
};

// Defined by each test binary for the backend names it instantiates the suite with.
std::unique_ptr<Backend> make_backend(const std::string& name);

inline Event make_event(std::string type, std::string run, json::value data = json::object()) {
  Event e;
  e.type = std::move(type);
  e.run = std::move(run);
  e.time = from_unix_ms(1'700'000'000'000);
  e.data = std::move(data);
  return e;
}

inline RunRow make_run(std::string id, std::string workflow, std::string status,
                       int64_t created_ms) {
  RunRow r;
  r.id = std::move(id);
  r.workflow = std::move(workflow);
  r.version = "b2:" + std::string(64, 'a');
  r.status = std::move(status);
  r.created = from_unix_ms(created_ms);
  r.updated = from_unix_ms(created_ms + 1);
  r.inputs = json::object{{"n", 1}};
  return r;
}

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    backend_ = make_backend(GetParam());
    std::array<uint8_t, 32> seed{};
    seed.fill(7);
    options_.signing_key = base::signing_key_from_seed(seed);
    options_.fsync = false;
    open();
  }
  void TearDown() override {
    store_.reset();
    backend_.reset();
  }
  bool durable() const { return backend_->durable(); }
  bool queues() const { return backend_->queues(); }
  void open() {
    store_.reset();
    auto s = backend_->open(options_, clock_, random_);
    ASSERT_TRUE(s) << s.error().to_string();
    store_ = std::move(*s);
  }
  void tamper_data(int64_t seq, const json::value& data) {
    backend_->tamper_data(*store_, seq, data);
  }
  void tamper_blob(const std::string& hash, const std::string& payload) {
    backend_->tamper_blob(*store_, hash, payload);
  }
  AppendResult must_append(Batch b) {
    auto r = store_->append(std::move(b));
    VENTURE_CHECK_MSG(r.has_value(), r ? "" : r.error().to_string().c_str());
    return std::move(*r);
  }
  std::vector<Event> read_all() {
    auto r = store_->read_events(EventFilter{0, limits::kReadPageMax, "", ""});
    VENTURE_CHECK(r.has_value());
    return std::move(*r);
  }
  VerifyReport must_verify() {
    auto r = store_->verify();
    VENTURE_CHECK(r.has_value());
    return *r;
  }

  std::unique_ptr<Backend> backend_;
  base::ManualClock clock_{from_unix_ms(1'700'000'000'000)};
  base::SeededRandom random_{42};
  Options options_;
  std::unique_ptr<Store> store_;
};

}  // namespace venture::storage::testing
