// The workloads: build the embedded stack (store, bus, engine, workers), register the workflow,
// warm up, then submit and time every run from just before its submit call to the moment its
// terminal event is published (after the commit that made it durable).
#include "bench/workloads.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <unordered_map>

#include "bus/bus.h"
#include "engine/engine.h"
#include "nodes/nodes.h"
#include "storage/storage.h"

namespace venture::bench {
namespace {

json::value definition(const BenchOptions& o) {
  json::array nodes;
  if (o.workload == "B") {
    nodes.push_back(json::object{{"id", "start"}, {"type", "noop"}});
    json::array par;
    for (int i = 0; i < o.width; ++i) {
      const std::string id = "par" + std::to_string(i);
      nodes.push_back(json::object{{"id", id}, {"type", "noop"}, {"needs", json::array{"start"}}});
      par.emplace_back(id);
    }
    nodes.push_back(json::object{{"id", "join"}, {"type", "noop"}, {"needs", std::move(par)}});
  } else {
    const int k = o.workload == "C" ? 1 : o.steps;
    for (int i = 0; i < k; ++i) {
      json::object n{{"id", "s" + std::to_string(i)}, {"type", "noop"}};
      if (i > 0) n["needs"] = json::array{json::value("s" + std::to_string(i - 1))};
      nodes.push_back(std::move(n));
    }
  }
  std::string name = "bench-";
  name += static_cast<char>(std::tolower(o.workload[0]));
  return json::object{{"name", name}, {"nodes", std::move(nodes)}};
}

// Completion tracking, fed by the bus subscription on terminal run events.
class Tracker {
 public:
  explicit Tracker(base::Clock& clock) : clock_(clock) {}

  void submitted(const std::string& run, int64_t t_ns) {
    std::lock_guard lock(mu_);
    submitted_[run] = t_ns;
  }
  void terminal(const bus::Message& m) {
    const int64_t now = clock_.monotonic_ns();
    const json::object* o = m.data.if_object();
    if (o == nullptr) return;
    std::lock_guard lock(mu_);
    done_[base::string_or(*o, "run", "")] = {now, m.subject == "run.succeeded"};
    cv_.notify_all();
  }
  // Waits until `count` runs have finished (bounded: the engine must finish them).
  bool wait(std::size_t count, Millis timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_.size() >= count; });
  }
  void reset() {
    std::lock_guard lock(mu_);
    submitted_.clear();
    done_.clear();
  }
  // Latencies in ms of runs submitted and finished; counts successes.
  std::vector<double> latencies(int& succeeded, int& failed, int64_t& last_ns) {
    std::lock_guard lock(mu_);
    std::vector<double> out;
    succeeded = failed = 0;
    last_ns = 0;
    for (const auto& [run, t] : submitted_) {
      auto it = done_.find(run);
      if (it == done_.end()) continue;
      out.push_back(static_cast<double>(it->second.first - t) / 1e6);
      (it->second.second ? succeeded : failed) += 1;
      last_ns = std::max(last_ns, it->second.first);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  base::Clock& clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, int64_t> submitted_;
  std::unordered_map<std::string, std::pair<int64_t, bool>> done_;
};

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto i = static_cast<std::size_t>(std::lround(p * static_cast<double>(sorted.size() - 1)));
  return sorted[std::min(i, sorted.size() - 1)];
}

struct Stack {
  base::RealClock clock;
  base::RealRandom random;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<bus::Bus> bus;
  nodes::Registry registry;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<nodes::WorkerPool> workers;
};

Status submit(Stack& s, Tracker& tracker, const std::string& workflow, int count, bool closed) {
  std::mutex mu;
  std::condition_variable cv;
  int pending = 0;
  Status failure;
  for (int i = 0; i < count; ++i) {
    engine::StartRequest req;
    req.workflow = workflow;
    workflow::Problems problems;
    const int64_t t = s.clock.monotonic_ns();
    {
      std::lock_guard lock(mu);
      ++pending;
    }
    Status st = s.engine->start_run_async(std::move(req), problems,
                                          [&, t](Result<engine::StartResponse> r) {
                                            std::lock_guard lock(mu);
                                            if (r) {
                                              tracker.submitted(r->id, t);
                                            } else {
                                              failure = r.error();
                                            }
                                            --pending;
                                            cv.notify_all();
                                          });
    if (!st) return st;
    if (closed) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return pending == 0; });
      lock.unlock();
      if (!tracker.wait(static_cast<std::size_t>(i) + 1, Millis(60000))) {
        return deadline_exceeded_error("a run did not finish within 60 s");
      }
    }
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return pending == 0; });
  return failure;
}

// Opens the store in `dir` and builds the bus, engine and worker pool on it (not started).
Status open_stack(const BenchOptions& o, const std::string& dir, Stack& s) {
  storage::Options so;
  so.signing_key = base::new_signing_key();
  so.fsync = o.fsync;
  if (o.store == "memory") {
    s.store = storage::new_memory_store(so, s.clock, s.random);
  } else if (o.store == "sqlite") {
    VENTURE_ASSIGN_OR_RETURN(s.store, storage::open_sqlite(dir, so, s.clock, s.random));
  } else {
    return invalid_argument_error("unknown store '" + o.store + "' (use sqlite or memory)");
  }
  s.bus = bus::new_memory_bus(s.clock);
  nodes::register_builtins(s.registry);
  s.engine =
      std::make_unique<engine::Engine>(*s.store, *s.bus, s.clock, s.random, engine::Options{});
  nodes::WorkerOptions wo;
  wo.threads = static_cast<std::size_t>(std::max(1, o.workers));
  s.workers = std::make_unique<nodes::WorkerPool>(*s.bus, s.registry, s.clock, wo);
  return ok();
}

}  // namespace

Result<BenchResult> run_workload(const BenchOptions& o) {
  if (o.workload != "A" && o.workload != "B" && o.workload != "C" && o.workload != "L") {
    return invalid_argument_error("unknown workload '" + o.workload + "' (use A, B, C or L)");
  }
  const int runs = o.runs > 0 ? o.runs : o.workload == "C" ? 20000 : o.workload == "L" ? 100 : 1000;
  const int warmup = o.warmup >= 0 ? o.warmup : (o.workload == "L" ? 5 : 20);
  Stack s;
  std::string dir = o.data_dir;
  const bool temp = dir.empty();
  if (temp) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "venture-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr)
      return unavailable_error("cannot create a temporary directory");
    dir = tmpl;
  }
  VENTURE_RETURN_IF_ERROR(open_stack(o, dir, s));
  Tracker tracker(s.clock);
  for (const char* subject : {"run.succeeded", "run.failed", "run.cancelled"}) {
    VENTURE_ASSIGN_OR_RETURN(uint64_t sub, s.bus->subscribe(subject, [&](const bus::Message& m) {
      tracker.terminal(m);
    }));
    (void)sub;
  }
  VENTURE_RETURN_IF_ERROR(s.engine->start());
  s.workers->start();
  workflow::Problems problems;
  VENTURE_ASSIGN_OR_RETURN(engine::RegisterResponse reg,
                           s.engine->register_workflow(definition(o), "", problems));
  const bool closed = o.workload == "L";
  VENTURE_RETURN_IF_ERROR(submit(s, tracker, reg.name, warmup, closed));
  if (!tracker.wait(static_cast<std::size_t>(warmup), Millis(120000))) {
    return deadline_exceeded_error("warm-up runs did not finish");
  }
  tracker.reset();
  const engine::EngineStats before = s.engine->stats();
  const int64_t t0 = s.clock.monotonic_ns();
  VENTURE_RETURN_IF_ERROR(submit(s, tracker, reg.name, runs, closed));
  const int64_t t_submitted = s.clock.monotonic_ns();
  const bool all = tracker.wait(static_cast<std::size_t>(runs), Millis(600000));
  const engine::EngineStats after = s.engine->stats();
  s.workers->stop();
  s.engine->stop();

  BenchResult r;
  r.workload = o.workload;
  r.runs = runs;
  r.store = o.store;
  int64_t last_ns = 0;
  std::vector<double> lat = tracker.latencies(r.succeeded, r.failed, last_ns);
  const int k = o.workload == "B" ? o.width + 2 : o.workload == "C" ? 1 : o.steps;
  r.steps = static_cast<int64_t>(r.succeeded) * k;
  r.wall_s = static_cast<double>(std::max(last_ns, t_submitted) - t0) / 1e9;
  r.steps_per_s = r.wall_s > 0 ? static_cast<double>(r.steps) / r.wall_s : 0;
  r.runs_per_s = r.wall_s > 0 ? r.succeeded / r.wall_s : 0;
  r.submit_per_s = runs / (static_cast<double>(t_submitted - t0) / 1e9);
  r.p50_ms = percentile(lat, 0.50);
  r.p99_ms = percentile(lat, 0.99);
  r.per_step_p50_ms = r.p50_ms / k;
  r.appends = after.appends - before.appends;
  r.events = after.events - before.events;
  s.workers.reset();
  s.engine.reset();
  s.store.reset();
  if (temp) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  if (!all) return deadline_exceeded_error("not every run finished within 600 s");
  return r;
}

json::object to_json(const BenchResult& r) {
  return json::object{{"workload", r.workload},
                      {"runs", r.runs},
                      {"steps", r.steps},
                      {"succeeded", r.succeeded},
                      {"failed", r.failed},
                      {"wall_s", r.wall_s},
                      {"steps_per_s", r.steps_per_s},
                      {"runs_per_s", r.runs_per_s},
                      {"submit_per_s", r.submit_per_s},
                      {"p50_ms", r.p50_ms},
                      {"p99_ms", r.p99_ms},
                      {"per_step_p50_ms", r.per_step_p50_ms},
                      {"group_commits", r.appends},
                      {"events", r.events},
                      {"store", r.store}};
}

std::string to_json_line(const BenchResult& r) {
  std::string out = "{";
  bool first = true;
  for (const auto& kv : to_json(r)) {
    if (!first) out += ",";
    first = false;
    out += json::serialize(json::string_view(kv.key()));
    out += ":";
    if (kv.value().is_double()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3f", kv.value().get_double());
      out += buf;
    } else {
      out += json::serialize(kv.value());
    }
  }
  return out + "}";
}

void print_table(const BenchResult& r, std::ostream& out) {
  out << "workload " << r.workload << " (" << r.store << ")\n"
      << "  runs         " << r.runs << " (" << r.succeeded << " succeeded, " << r.failed
      << " failed)\n"
      << "  steps        " << r.steps << "\n"
      << "  wall         " << r.wall_s << " s\n"
      << "  steps/s      " << r.steps_per_s << "\n"
      << "  runs/s       " << r.runs_per_s << "\n"
      << "  latency p50  " << r.p50_ms << " ms, p99 " << r.p99_ms << " ms\n"
      << "  per step p50 " << r.per_step_p50_ms << " ms\n"
      << "  commits      " << r.appends << " for " << r.events << " events\n";
}

}  // namespace venture::bench
