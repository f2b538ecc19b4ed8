// The composition root: parses argv, builds and wires the modules, nothing else.
#include <CLI/CLI.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "base/base.h"
#include "bench/workloads.h"
#include "bus/bus.h"
#include "cli/cli.h"
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

int serve(const std::string& data_dir) {
  // Block the signals before any thread starts (the store's writer is the first) so that only
  // sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  base::set_log_sink(stdout);
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    std::cerr << "venture: cannot create the data directory " << data_dir << ": " << ec.message()
              << "\n";
    return cli::kExitError;
  }
  auto key = load_signing_key(data_dir);
  if (!key) {
    std::cerr << "venture: " << key.error().message << "\n";
    return cli::kExitError;
  }
  base::RealClock clock;
  base::RealRandom random;
  storage::Options so;
  so.signing_key = *key;
  auto store = storage::open_sqlite(data_dir, so, clock, random);
  if (!store) {
    std::cerr << "venture: " << store.error().message << "\n";
    return cli::kExitError;
  }
  auto bus = bus::new_memory_bus(clock);
  nodes::Registry registry;
  nodes::register_builtins(registry);
  engine::Engine engine(**store, *bus, clock, random, engine::Options{});
  nodes::WorkerPool workers(*bus, registry, clock, nodes::WorkerOptions{});
  if (Status st = engine.start(); !st) {
    std::cerr << "venture: " << st.error().to_string() << "\n";
    return cli::kExitError;
  }
  workers.start();
  base::log_info("venture serving (embedded engine; the HTTP API arrives with issue #3)",
                 {{"data_dir", data_dir}});
  int sig = 0;
  sigwait(&signals, &sig);
  base::log_info("shutting down", {{"signal", sig}});
  workers.stop();
  engine.stop();
  return cli::kExitOk;
}

int bench(const bench::BenchOptions& options, const std::string& output) {
  base::set_log_level(base::LogLevel::kWarn);  // keep stdout/stderr for the result
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

  auto* serve_cmd = app.add_subcommand("serve", "Run the server (embedded store and bus)");
  std::string data_dir = "./venture-data";
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read once at startup, before any thread exists.
  if (const char* env = std::getenv("VENTURE_DATA_DIR")) data_dir = env;
  serve_cmd->add_option("--data-dir", data_dir, "Data directory");

  auto* bench_cmd = app.add_subcommand("bench", "Run a benchmark workload in-process");
  bench::BenchOptions bo;
  bench_cmd->add_option("WORKLOAD", bo.workload, "A, B, C or L")->required();
  bench_cmd->add_option("--runs", bo.runs, "Number of measured runs");
  bench_cmd->add_option("--steps", bo.steps, "Steps per run (A, L)")->check(CLI::Range(1, 1000));
  bench_cmd->add_option("--width", bo.width, "Parallel steps (B)")->check(CLI::Range(1, 998));
  bench_cmd->add_option("--store", bo.store, "sqlite|memory")
      ->check(CLI::IsMember({"sqlite", "memory"}));
  bench_cmd->add_option("--workers", bo.workers, "Worker threads")->check(CLI::Range(1, 64));
  bench_cmd->add_option("--warmup", bo.warmup, "Warm-up runs");
  bench_cmd->add_option("--data-dir", bo.data_dir, "Store directory (default: a temp dir)");
  bench_cmd->add_option("-o,--output", output, "table|json")
      ->check(CLI::IsMember({"table", "json"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? cli::kExitOk : cli::kExitUsage;
  }
  if (version->parsed()) {
    std::cout << cli::version_string() << "\n";
    return cli::kExitOk;
  }
  if (validate->parsed()) return cli::validate_files(files, output == "json", std::cout);
  if (serve_cmd->parsed()) return serve(data_dir);
  if (bench_cmd->parsed()) return bench(bo, output);
  return cli::kExitUsage;
}

}  // namespace
}  // namespace venture

int main(int argc, char** argv) { return venture::main(argc, argv); }
