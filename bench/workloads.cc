// The workloads: build the embedded stack (store, bus, engine, workers), register the workflow,
// warm up, then submit and time every run from just before its submit call to the moment its
// terminal event is published (after the commit that made it durable).
#include "bench/workloads.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "api/api.h"
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

// A minimal blocking HTTP/1.1 client on one keep-alive connection: enough to drive POST
// /v1/runs with the least client overhead (the server is what is measured).
class HttpConnection {
 public:
  ~HttpConnection() {
    if (fd_ >= 0) close(fd_);
  }
  Status connect(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return unavailable_error("socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API.
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      return unavailable_error("cannot connect to the API on port " + std::to_string(port));
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return ok();
  }
  // Sends one request and returns (status, body).
  Result<std::pair<int, std::string>> post(const std::string& path, const std::string& token,
                                           const std::string& body) {
    std::string req =
        "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
    for (std::size_t off = 0; off < req.size();) {
      const ssize_t n = ::send(fd_, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return unavailable_error("send failed");
      off += static_cast<std::size_t>(n);
    }
    std::size_t header_end = std::string::npos;
    while ((header_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      VENTURE_RETURN_IF_ERROR(fill());
    }
    const int status = std::atoi(buf_.c_str() + 9);
    std::size_t length = 0;
    const auto cl = buf_.find("Content-Length: ");
    const auto cl_lower = buf_.find("content-length: ");
    const auto at = cl < header_end ? cl : cl_lower;
    if (at < header_end) length = std::strtoul(buf_.c_str() + at + 16, nullptr, 10);
    while (buf_.size() < header_end + 4 + length) VENTURE_RETURN_IF_ERROR(fill());
    std::string out = buf_.substr(header_end + 4, length);
    buf_.erase(0, header_end + 4 + length);
    return std::pair{status, std::move(out)};
  }

 private:
  Status fill() {
    char chunk[16384];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return unavailable_error("the API closed the connection");
    buf_.append(chunk, static_cast<std::size_t>(n));
    return ok();
  }
  int fd_ = -1;
  std::string buf_;
};

struct Stack {
  base::RealClock clock;
  base::RealRandom random;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<bus::Bus> bus;
  nodes::Registry registry;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<nodes::WorkerPool> workers;
  std::unique_ptr<api::Api> api;  // --via http
  std::string token;
  std::mutex submit_mu;
  std::vector<double> submit_ms;  // POST round trips
};

// --via http: `count` POST /v1/runs over `connections` keep-alive connections (one thread each);
// closed = one at a time, each waiting for the previous run to finish (workload L).
Status submit_http(Stack& s, Tracker& tracker, const std::string& workflow, int count, bool closed,
                   int connections) {
  const std::string body = "{\"workflow\":\"" + workflow + "\"}";
  const int threads = closed ? 1 : std::max(1, std::min(connections, count));
  std::vector<Status> results(static_cast<std::size_t>(threads));
  std::atomic<int> next{0};
  std::atomic<int> finished{0};
  auto client = [&](std::size_t slot) {
    HttpConnection c;
    if (Status st = c.connect(s.api->port()); !st) {
      results[slot] = st;
      return;
    }
    std::vector<double> local;
    for (int i = next++; i < count; i = next++) {
      const int64_t t = s.clock.monotonic_ns();
      auto r = c.post("/v1/runs", s.token, body);
      if (!r) {
        results[slot] = r.error();
        return;
      }
      if (r->first != 201) {
        results[slot] = unavailable_error("POST /v1/runs answered " + std::to_string(r->first) +
                                          ": " + r->second);
        return;
      }
      local.push_back(static_cast<double>(s.clock.monotonic_ns() - t) / 1e6);
      auto v = base::parse_json(r->second);
      if (!v || !v->is_object()) {
        results[slot] = unavailable_error("POST /v1/runs answered no JSON object");
        return;
      }
      tracker.submitted(base::string_or(v->as_object(), "id", ""), t);
      if (closed) {
        const int done = ++finished;
        if (!tracker.wait(static_cast<std::size_t>(done), Millis(60000))) {
          results[slot] = deadline_exceeded_error("a run did not finish within 60 s");
          return;
        }
      }
    }
    std::lock_guard lock(s.submit_mu);
    s.submit_ms.insert(s.submit_ms.end(), local.begin(), local.end());
  };
  std::vector<std::thread> pool;
  for (std::size_t i = 0; i < results.size(); ++i) pool.emplace_back(client, i);
  for (auto& t : pool) t.join();
  for (auto& r : results) VENTURE_RETURN_IF_ERROR(r);
  return ok();
}

Status submit(Stack& s, Tracker& tracker, const std::string& workflow, int count, bool closed,
              const BenchOptions& o) {
  if (o.via == "http") return submit_http(s, tracker, workflow, count, closed, o.connections);
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
  VENTURE_ASSIGN_OR_RETURN(s.store, api::open_store(o.store, dir, so, s.clock, s.random));
  VENTURE_ASSIGN_OR_RETURN(s.bus, api::open_bus(o.bus, s.clock));
  nodes::register_builtins(s.registry);
  s.engine =
      std::make_unique<engine::Engine>(*s.store, *s.bus, s.clock, s.random, engine::Options{});
  nodes::WorkerOptions wo;
  wo.threads = static_cast<std::size_t>(std::max(1, o.workers));
  s.workers = std::make_unique<nodes::WorkerPool>(*s.bus, s.registry, s.clock, wo);
  if (o.via == "http") {
    api::ApiOptions ao;
    ao.server.port = 0;
    // A run start is answered from its group commit and holds no blocking thread meanwhile, so
    // a small pool keeps every connection's submission in flight.
    ao.server.blocking_threads = 8;
    ao.data_dir = dir;
    ao.rate_limits.enabled = false;  // the benchmark measures the API, not the limiter
    s.api = std::make_unique<api::Api>(*s.store, *s.bus, *s.engine, s.clock, s.random, ao);
  }
  return ok();
}

}  // namespace

Result<BenchResult> run_workload(const BenchOptions& o) {
  if (o.via != "inprocess" && o.via != "http") {
    return invalid_argument_error("unknown --via '" + o.via + "' (use inprocess or http)");
  }
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
  if (s.api) {
    VENTURE_RETURN_IF_ERROR(s.api->start());
    s.api->set_ready(true);
    std::ifstream in(std::filesystem::path(dir) / "admin.token");
    in >> s.token;
  }
  workflow::Problems problems;
  VENTURE_ASSIGN_OR_RETURN(engine::RegisterResponse reg,
                           s.engine->register_workflow(definition(o), "", problems));
  const bool closed = o.workload == "L";
  VENTURE_RETURN_IF_ERROR(submit(s, tracker, reg.name, warmup, closed, o));
  if (!tracker.wait(static_cast<std::size_t>(warmup), Millis(120000))) {
    return deadline_exceeded_error("warm-up runs did not finish");
  }
  tracker.reset();
  const engine::EngineStats before = s.engine->stats();
  const int64_t t0 = s.clock.monotonic_ns();
  {
    std::lock_guard lock(s.submit_mu);
    s.submit_ms.clear();
  }
  VENTURE_RETURN_IF_ERROR(submit(s, tracker, reg.name, runs, closed, o));
  const int64_t t_submitted = s.clock.monotonic_ns();
  const bool all = tracker.wait(static_cast<std::size_t>(runs), Millis(600000));
  const engine::EngineStats after = s.engine->stats();
  if (s.api) s.api->stop();
  s.workers->stop();
  s.engine->stop();

  BenchResult r;
  r.via = o.via;
  std::sort(s.submit_ms.begin(), s.submit_ms.end());
  r.submit_p50_ms = percentile(s.submit_ms, 0.50);
  r.submit_p99_ms = percentile(s.submit_ms, 0.99);
  r.workload = o.workload;
  r.runs = runs;
  r.store = api::is_cluster_store(o.store) ? "postgres" : o.store;
  r.bus = o.bus == "memory" ? "memory" : "nats";
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
  s.api.reset();
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
                      {"store", r.store},
                      {"bus", r.bus},
                      {"via", r.via},
                      {"submit_p50_ms", r.submit_p50_ms},
                      {"submit_p99_ms", r.submit_p99_ms}};
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
  out << "workload " << r.workload << " (" << r.store << ", " << r.bus << ", " << r.via << ")\n"
      << "  runs         " << r.runs << " (" << r.succeeded << " succeeded, " << r.failed
      << " failed)\n"
      << "  steps        " << r.steps << "\n"
      << "  wall         " << r.wall_s << " s\n"
      << "  steps/s      " << r.steps_per_s << "\n"
      << "  runs/s       " << r.runs_per_s << "\n"
      << "  latency p50  " << r.p50_ms << " ms, p99 " << r.p99_ms << " ms\n"
      << "  per step p50 " << r.per_step_p50_ms << " ms\n"
      << "  commits      " << r.appends << " for " << r.events << " events\n";
  if (r.via == "http") {
    out << "  submit/s     " << r.submit_per_s << " (POST p50 " << r.submit_p50_ms << " ms, p99 "
        << r.submit_p99_ms << " ms)\n";
  }
}

}  // namespace venture::bench
