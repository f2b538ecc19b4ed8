// The composition root: parses argv, builds and wires the modules, nothing else.
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "api/api.h"
#include "base/base.h"
#include "bench/streams.h"
#include "bench/workloads.h"
#include "bus/bus.h"
#include "cli/cli.h"
#include "egress/egress.h"
#include "engine/engine.h"
#include "nodes/nodes.h"
#include "storage/storage.h"

namespace venture {
namespace {

// Loads the checkpoint signing key from dir/signing.key (a 32-byte seed, hex), creating it
// (mode 0600) on first start.
Result<base::SigningKey> load_signing_key(const std::string& dir) {
  const std::filesystem::path path = std::filesystem::path(dir) / "signing.key";
  std::ifstream in(path);
  std::string hex;
  if (in >> hex) {
    VENTURE_ASSIGN_OR_RETURN(std::string seed, base::unhex(hex));
    if (seed.size() != 32) return data_loss_error(path.string() + " does not hold a 32-byte seed");
    return base::signing_key_from_seed(
        std::span(reinterpret_cast<const uint8_t*>(seed.data()), seed.size()));
  }
  const std::string seed_hex = base::random_secret_hex();
  VENTURE_ASSIGN_OR_RETURN(std::string seed, base::unhex(seed_hex));
  std::ofstream out(path, std::ios::trunc);
  if (!out) return unavailable_error("cannot write " + path.string());
  out << seed_hex << "\n";
  out.close();
  std::filesystem::permissions(
      path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  return base::signing_key_from_seed(
      std::span(reinterpret_cast<const uint8_t*>(seed.data()), seed.size()));
}

// Finds out early, with a plain message, whether the data directory can be used.
Status prepare_data_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return unavailable_error("cannot create the data directory " + dir + ": " + ec.message());
  const auto probe = std::filesystem::path(dir) / ".write-test";
  {
    std::ofstream out(probe, std::ios::trunc);
    if (!out) return unavailable_error("the data directory " + dir + " is not writable");
  }
  std::filesystem::remove(probe, ec);
  return {};
}

// Holds an exclusive lock on dir/lock for the life of the process: two servers on one data
// directory would both recover and drive the same runs.
Status lock_data_dir(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "lock").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return unavailable_error("cannot open " + path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return failed_precondition_error("the data directory " + dir +
                                     " is in use by another venture process");
  }
  return {};  // the descriptor stays open (and locked) until the process exits
}

// The engine's id in cluster mode: dir/engine.id, created on first start, so a restarted process
// takes its partitions back at once instead of waiting for its old leases to expire.
Result<std::string> load_engine_id(const std::string& dir) {
  const std::filesystem::path path = std::filesystem::path(dir) / "engine.id";
  std::ifstream in(path);
  std::string id;
  if (in >> id) return id;
  id = "eng-" + base::random_secret_hex().substr(0, 16);
  std::ofstream out(path, std::ios::trunc);
  if (!out) return unavailable_error("cannot write " + path.string());
  out << id << "\n";
  return id;
}

// The approval-link key of a cluster: a random secret in the bus's KV bucket "flags", created by
// the first process that needs it (kv_create is atomic, so every process ends with the same).
Result<std::array<uint8_t, 32>> shared_link_key(bus::Bus& bus) {
  VENTURE_RETURN_IF_ERROR(bus.kv_bucket("flags", Millis(0)));
  auto entry = bus.kv_get("flags", "approval_link_key");
  if (!entry && entry.error().code == Code::kNotFound) {
    auto created = bus.kv_create("flags", "approval_link_key", base::random_secret_hex());
    if (!created && created.error().code != Code::kAlreadyExists) return created.error();
    entry = bus.kv_get("flags", "approval_link_key");
  }
  if (!entry) return entry.error();
  return base::blake2b(entry->value);
}

// What `--services` selects: "all", or a comma list of api, engine, workers and
// workers:TYPE[,TYPE...] (a worker type list runs to the next service name).
struct Services {
  bool api = false;
  bool engine = false;
  bool workers = false;
  std::vector<std::string> worker_types;  // empty = every registered type
};

Result<Services> parse_services(std::string_view spec, const nodes::Registry& registry) {
  Services s;
  if (spec == "all" || spec.empty()) return Services{true, true, true, {}};
  bool in_workers = false;
  std::size_t start = 0;
  while (start <= spec.size()) {
    const std::size_t comma = std::min(spec.find(',', start), spec.size());
    std::string_view item = spec.substr(start, comma - start);
    start = comma + 1;
    if (item == "api" || item == "engine" || item == "workers" || item.starts_with("workers:")) {
      in_workers = false;
      if (item == "api") s.api = true;
      if (item == "engine") s.engine = true;
      if (item == "workers") s.workers = true;
      if (item.starts_with("workers:")) {
        s.workers = true;
        in_workers = true;
        item.remove_prefix(8);
      } else {
        continue;
      }
    } else if (!in_workers) {
      return invalid_argument_error("services: unknown service '" + std::string(item) +
                                    "' (use all, or a list of api, engine, workers[:TYPE,...])");
    }
    // A worker type. `approval` is accepted for the seed's hitl-worker: approval nodes are
    // decided by the engine and need no worker.
    if (item == "approval") continue;
    if (registry.find(std::string(item)) == nullptr) {
      std::string known;
      for (const std::string& t : registry.types()) known += (known.empty() ? "" : ", ") + t;
      return invalid_argument_error("services: unknown worker type '" + std::string(item) +
                                    "' (known: " + known + ", approval)");
    }
    s.worker_types.emplace_back(item);
  }
  if (s.workers && s.worker_types.empty() && in_workers) {
    return invalid_argument_error("services: workers: needs at least one node type");
  }
  return s;
}

// Tells systemd (Type=notify) that the server is ready, when it started us with NOTIFY_SOCKET.
void notify_systemd(std::string_view state) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read once; nothing sets the environment.
  const char* socket_path = std::getenv("NOTIFY_SOCKET");
  if (socket_path == nullptr || socket_path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = socket_path;
  if (path.size() >= sizeof addr.sun_path) return;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';  // an abstract socket
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  (void)::sendto(fd, state.data(), state.size(), 0, reinterpret_cast<const sockaddr*>(&addr), len);
  ::close(fd);
}

std::optional<base::LogLevel> parse_log_level(std::string_view text) {
  if (text == "debug") return base::LogLevel::kDebug;
  if (text == "info") return base::LogLevel::kInfo;
  if (text == "warn") return base::LogLevel::kWarn;
  if (text == "error") return base::LogLevel::kError;
  return std::nullopt;
}

// `venture serve`: the embedded store and bus, the engine, the workers and the HTTP API in one
// process until SIGTERM/SIGINT; then a graceful stop (stop accepting, finish in-flight requests
// and tasks, commit the engine's last step, close the store).
int serve(const std::string& config_file,
          const std::vector<std::pair<std::string, std::string>>& flags) {
  // Block the signals before any thread starts (the store's writer is the first) so that only
  // sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A peer that closed its socket (Redis, PostgreSQL, a client) is an error, not a signal.
  std::signal(SIGPIPE, SIG_IGN);
  // The seed's environment names are aliases: VENTURE_STORE, VENTURE_BUS and VENTURE_REDIS win
  // over LEDGER_DB_URL, NATS_URL and REDIS_URL (docs/configuration.md).
  auto env = [](const char* name) -> const char* {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): read at startup, before any thread exists.
    if (const char* v = std::getenv(name)) return v;
    static constexpr std::pair<std::string_view, const char*> kAliases[] = {
        {"VENTURE_STORE", "LEDGER_DB_URL"},
        {"VENTURE_BUS", "NATS_URL"},
        {"VENTURE_REDIS", "REDIS_URL"}};
    for (const auto& [key, alias] : kAliases) {
      // NOLINTNEXTLINE(concurrency-mt-unsafe): as above.
      if (key == name) return std::getenv(alias);
    }
    return nullptr;
  };
  auto config = api::load_serve_config(config_file, env, flags);
  if (!config) {
    std::cerr << "venture serve: " << config.error().message << "\n";
    return cli::kExitUsage;
  }
  const auto level = parse_log_level(config->log_level);
  if (!level) {
    std::cerr << "venture serve: log_level must be debug, info, warn or error\n";
    return cli::kExitUsage;
  }
  base::set_log_level(*level);
  base::set_log_sink(stdout);
  // Every outbound request goes through the egress client and its guard (ARCHITECTURE §6); the
  // allow-list comes from egress.allow (--egress-allow, VENTURE_EGRESS_ALLOW).
  auto policy = egress::Policy::make(config->egress_allow, egress::local_addresses());
  if (!policy) {
    std::cerr << "venture serve: " << policy.error().message << "\n";
    return cli::kExitUsage;
  }
  const auto listen = api::parse_listen(config->listen);
  if (Status st = prepare_data_dir(config->data_dir); !st) {
    std::cerr << "venture serve: " << st.error().message << "\n";
    return cli::kExitError;
  }
  if (Status st = lock_data_dir(config->data_dir); !st) {
    std::cerr << "venture serve: " << st.error().message << "\n";
    return cli::kExitError;
  }
  auto key = load_signing_key(config->data_dir);
  if (!key) {
    std::cerr << "venture serve: " << key.error().message << "\n";
    return cli::kExitError;
  }
  base::RealClock clock;
  base::RealRandom random;
  storage::Options so;
  so.signing_key = *key;
  auto store = api::open_store(config->store, config->data_dir, so, clock, random);
  if (!store) {
    std::cerr << "venture serve: " << store.error().message << "\n";
    return cli::kExitError;
  }
  egress::ClientOptions egress_options;
  egress_options.policy = std::move(*policy);
  egress::Client egress_client(clock, std::move(egress_options));
  if (Status st = egress_client.start(); !st) {
    std::cerr << "venture serve: " << st.error().message << "\n";
    return cli::kExitError;
  }
  auto bus = api::open_bus(config->bus, clock);
  if (!bus) {
    std::cerr << "venture serve: " << bus.error().message << "\n";
    return cli::kExitError;
  }
  nodes::Registry registry;
  nodes::register_builtins(registry);
  nodes::register_http(registry, egress_client, clock);
  // Approval links are signed with a key derived from the signing key and point at public_url.
  // In cluster mode the engine that writes a link and the API process that opens it differ, so
  // the key is one secret shared through the bus's KV store (created once, atomically).
  std::array<uint8_t, 32> link_key = api::ApprovalLinks::derive_key(*key);
  if (config->bus != "memory") {
    auto shared = shared_link_key(**bus);
    if (!shared) {
      std::cerr << "venture serve: " << shared.error().message << "\n";
      return cli::kExitError;
    }
    link_key = *shared;
  }
  api::ApprovalLinks links(link_key, config->public_url, clock, random);
  auto services = parse_services(config->services, registry);
  if (!services) {
    std::cerr << "venture serve: " << services.error().message << "\n";
    return cli::kExitUsage;
  }
  const bool cluster = config->bus != "memory";
  if (!cluster &&
      !(services->api && services->engine && services->workers && services->worker_types.empty())) {
    std::cerr << "venture serve: --services " << config->services
              << " needs cluster mode (--store postgres://… --bus nats://…): the embedded store "
                 "and bus are not shared with other processes\n";
    return cli::kExitUsage;
  }
  engine::Options eo;
  eo.approval_links = [&links](const std::string& run, const json::object& requested) {
    return links.make(run, requested);
  };
  if (cluster) {
    auto id = load_engine_id(config->data_dir);
    if (!id) {
      std::cerr << "venture serve: " << id.error().message << "\n";
      return cli::kExitError;
    }
    eo.cluster.enabled = true;
    eo.cluster.id = *id;
    eo.cluster.drive = services->engine;
  }
  engine::Engine engine(**store, **bus, clock, random, eo);
  nodes::WorkerOptions wo;
  wo.threads = static_cast<std::size_t>(config->workers);
  wo.types = services->worker_types;
  nodes::WorkerPool workers(**bus, registry, clock, wo);

  api::ApiOptions ao;
  ao.server.host = listen->first;
  ao.server.port = listen->second;
  ao.server.io_threads = config->io_threads;
  ao.server.blocking_threads = config->blocking_threads;
  ao.server.tls_cert_file = config->tls_cert;
  ao.server.tls_key_file = config->tls_key;
  ao.data_dir = config->data_dir;
  ao.links = &links;
  ao.rate_limits = config->rate_limits;
  ao.patch_review = *api::parse_patch_review(config->patch_review);
  ao.serve_api = services->api;
  ao.redis_url = config->redis;  // "" = per-process buckets
  ao.redis_failure = *api::parse_redis_failure(config->redis_failure);
  ao.services = config->services;
  api::Api service(**store, **bus, engine, clock, random, ao);
  // Listen first so a port in use is reported before a long recovery; /readyz says 503 until
  // the engine has recovered every unfinished run.
  if (Status st = service.start(); !st) {
    std::cerr << "venture serve: " << st.error().message << "\n";
    return cli::kExitError;
  }
  if (Status st = engine.start(); !st) {
    std::cerr << "venture serve: " << st.error().to_string() << "\n";
    service.stop();
    return cli::kExitError;
  }
  if (services->workers) workers.start();
  service.set_ready(true);
  notify_systemd("READY=1");
  const std::string scheme = config->tls_cert.empty() ? "http" : "https";
  base::log_info(
      "venture serving",
      {{"address", scheme + "://" + listen->first + ":" + std::to_string(service.port())},
       {"data_dir", config->data_dir},
       {"services", config->services},
       {"mode", cluster ? "cluster" : "embedded"},
       {"engine_id", eo.cluster.id},
       {"version", kVersion},
       {"admin_token_file", (std::filesystem::path(config->data_dir) / "admin.token").string()}});
  int sig = 0;
  sigwait(&signals, &sig);
  base::log_info("shutting down", {{"signal", sig}});
  notify_systemd("STOPPING=1");
  service.set_ready(false);
  service.stop_accepting();
  service.stop();
  if (services->workers) workers.stop();  // waits for http requests in hand, then abandons them
  egress_client.stop();  // fails what is left; those results are dropped (redelivered later)
  engine.stop();
  base::log_info("stopped");
  return cli::kExitOk;
}

int bench(const bench::BenchOptions& options, bench::StreamBenchOptions streams,
          const std::string& output) {
  base::set_log_level(base::LogLevel::kWarn);  // keep stdout/stderr for the result
  if (options.workload == "streams") {
    if (options.runs > 0) streams.runs = options.runs;
    streams.steps = options.steps;
    auto r = bench::run_streams(streams);
    if (!r) {
      std::cerr << "venture bench: " << r.error().to_string() << "\n";
      return r.error().code == Code::kInvalidArgument ? cli::kExitUsage : cli::kExitError;
    }
    std::cout << *r << "\n";
    return cli::kExitOk;
  }
  auto r = bench::run_workload(options);
  if (!r) {
    std::cerr << "venture bench: " << r.error().to_string() << "\n";
    return r.error().code == Code::kInvalidArgument ? cli::kExitUsage : cli::kExitError;
  }
  if (output == "json") {
    std::cout << bench::to_json_line(*r) << "\n";
  } else {
    bench::print_table(*r, std::cout);
  }
  return cli::kExitOk;
}

int main(int argc, char** argv) {
  CLI::App app{"Venture: governed, durable orchestration for AI-agent workflows", "venture"};
  app.require_subcommand(1);
  std::string output = "table";

  auto* version = app.add_subcommand("version", "Print the version");

  auto* wf = app.add_subcommand("workflow", "Workflow definitions");
  wf->require_subcommand(1);
  auto* validate = wf->add_subcommand("validate", "Validate definition files offline");
  std::vector<std::string> files;
  validate->add_option("FILE", files, "JSON or YAML definition files")->required();
  validate->add_option("-o,--output", output, "table|json")
      ->check(CLI::IsMember({"table", "json"}));

  auto* serve_cmd = app.add_subcommand("serve", "Run the server: HTTP API, engine and workers");
  std::string config_file;
  // Flags map onto configuration keys (see docs/configuration.md); only those given are set.
  std::vector<std::pair<std::string, std::string>> serve_flags;
  auto flag = [&](const std::string& name, const std::string& key, const std::string& help) {
    serve_cmd->add_option_function<std::string>(
        name, [&serve_flags, key](const std::string& v) { serve_flags.emplace_back(key, v); },
        help);
  };
  flag("--data-dir", "data_dir", "Data directory (default ./venture-data)");
  flag("--listen", "listen", "HOST:PORT of the API (default 127.0.0.1:8000)");
  flag("--store", "store", "sqlite (embedded) or postgres://… (cluster)");
  flag("--bus", "bus", "memory (embedded) or nats://… (cluster)");
  flag("--redis", "redis", "redis://… shared rate limits (cluster)");
  flag("--services", "services", "Modules to run (default all)");
  flag("--egress-allow", "egress.allow", "CIDRs/hosts the http node may reach");
  flag("--public-url", "public_url", "URL people use to reach this server");
  flag("--tls-cert", "tls.cert", "PEM certificate: serve HTTPS");
  flag("--tls-key", "tls.key", "PEM private key");
  flag("--workers", "workers", "Embedded worker threads");
  serve_cmd->add_option("--config", config_file,
                        "venture.toml (default ./venture.toml if present)");

  auto* bench_cmd = app.add_subcommand("bench", "Run a benchmark workload in-process");
  bench::BenchOptions bo;
  bench_cmd->add_option("WORKLOAD", bo.workload, "A, B, C, L or streams")->required();
  bench_cmd->add_option("--runs", bo.runs, "Number of measured runs");
  bench_cmd->add_option("--steps", bo.steps, "Steps per run (A, L)")->check(CLI::Range(1, 1000));
  bench_cmd->add_option("--width", bo.width, "Parallel steps (B)")->check(CLI::Range(1, 998));
  bench_cmd->add_option("--store", bo.store, "sqlite|memory|postgres://… (a fresh database)");
  bench_cmd->add_option("--bus", bo.bus, "memory|nats://… (with a postgres:// store)");
  bench_cmd->add_option("--workers", bo.workers, "Worker threads")->check(CLI::Range(1, 64));
  bench_cmd->add_option("--warmup", bo.warmup, "Warm-up runs");
  bench_cmd->add_option("--data-dir", bo.data_dir, "Store directory (default: a temp dir)");
  bench_cmd->add_option("--via", bo.via, "inprocess|http (submit through the API)")
      ->check(CLI::IsMember({"inprocess", "http"}));
  bench_cmd->add_option("--connections", bo.connections, "HTTP client connections (--via http)")
      ->check(CLI::Range(1, 1024));
  bench_cmd->add_option("-o,--output", output, "table|json")
      ->check(CLI::IsMember({"table", "json"}));
  // `venture bench streams`: a client of a running server (bench/streams.sh starts one).
  bench::StreamBenchOptions so;
  bench_cmd->add_option("--port", so.port, "streams: the server's port on 127.0.0.1");
  bench_cmd->add_option("--token", so.token, "streams: an admin token");
  bench_cmd->add_option("--per-run", so.per_run, "streams: subscribers per run")
      ->check(CLI::Range(0, 1000));
  bench_cmd->add_option("--global", so.global, "streams: subscribers to all runs' run.* events")
      ->check(CLI::Range(0, 10000));
  bench_cmd->add_option("--kind", so.kind, "streams: sse|ws")->check(CLI::IsMember({"sse", "ws"}));
  bench_cmd->add_option("--server-pid", so.server_pid, "streams: report this process's CPU");

  int client_exit_code = cli::kExitOk;
  cli::add_client_commands(app, client_exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? cli::kExitOk : cli::kExitUsage;
  }
  if (cli::client_command_ran(app)) return client_exit_code;
  if (version->parsed()) {
    std::cout << cli::version_string() << "\n";
    return cli::kExitOk;
  }
  if (validate->parsed()) return cli::validate_files(files, output == "json", std::cout);
  if (serve_cmd->parsed()) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): read once at startup, before any thread exists.
    if (const char* env = std::getenv("VENTURE_CONFIG"); config_file.empty() && env) {
      config_file = env;
    }
    if (config_file.empty() && std::filesystem::exists("venture.toml")) {
      config_file = "venture.toml";
    }
    return serve(config_file, serve_flags);
  }
  if (bench_cmd->parsed()) return bench(bo, so, output);
  return cli::kExitUsage;
}

}  // namespace
}  // namespace venture

int main(int argc, char** argv) {
  // Threads get 256 MiB stacks (reserved, touched only when used): libjq frees values
  // recursively, so a deeply nested value built by a user's expression within its time budget
  // must not overflow the evaluating thread's stack (see src/workflow/README.md).
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) == 0) {
    pthread_attr_setstacksize(&attr, std::size_t{256} << 20);
    pthread_setattr_default_np(&attr);
    pthread_attr_destroy(&attr);
  }
  return venture::main(argc, argv);
}
