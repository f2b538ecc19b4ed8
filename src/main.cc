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
Result<base::SigningKey> LoadSigningKey(const std::string& dir) {
  const std::filesystem::path path = std::filesystem::path(dir) / "signing.key";
  std::ifstream in(path);
  std::string hex;
  if (in >> hex) {
    VENTURE_ASSIGN_OR_RETURN(std::string seed, base::Unhex(hex));
    if (seed.size() != 32) return DataLoss(path.string() + " does not hold a 32-byte seed");
    return base::SigningKeyFromSeed(
        std::span(reinterpret_cast<const uint8_t*>(seed.data()), seed.size()));
  }
  const std::string seed_hex = base::RandomSecretHex();
  VENTURE_ASSIGN_OR_RETURN(std::string seed, base::Unhex(seed_hex));
  std::ofstream out(path, std::ios::trunc);
  if (!out) return Unavailable("cannot write " + path.string());
  out << seed_hex << "\n";
  out.close();
  std::filesystem::permissions(path, std::filesystem::perms::owner_read |
                                         std::filesystem::perms::owner_write);
  return base::SigningKeyFromSeed(
      std::span(reinterpret_cast<const uint8_t*>(seed.data()), seed.size()));
}

int Serve(const std::string& data_dir) {
  // Block the signals before any thread starts (the store's writer is the first) so that only
  // sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  base::SetLogSink(stdout);
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    std::cerr << "venture: cannot create the data directory " << data_dir << ": " << ec.message()
              << "\n";
    return cli::kExitError;
  }
  auto key = LoadSigningKey(data_dir);
  if (!key) {
    std::cerr << "venture: " << key.error().message << "\n";
    return cli::kExitError;
  }
  base::RealClock clock;
  base::RealRandom random;
  storage::Options so;
  so.signing_key = *key;
  auto store = storage::OpenSqlite(data_dir, so, clock, random);
  if (!store) {
    std::cerr << "venture: " << store.error().message << "\n";
    return cli::kExitError;
  }
  auto bus = bus::NewMemoryBus(clock);
  nodes::Registry registry;
  nodes::RegisterBuiltins(registry);
  engine::Engine engine(**store, *bus, clock, random, engine::Options{});
  nodes::WorkerPool workers(*bus, registry, clock, nodes::WorkerOptions{});
  if (Status st = engine.Start(); !st) {
    std::cerr << "venture: " << st.error().ToString() << "\n";
    return cli::kExitError;
  }
  workers.Start();
  base::LogInfo("venture serving (embedded engine; the HTTP API arrives with issue #3)",
                {{"data_dir", data_dir}});
  int sig = 0;
  sigwait(&signals, &sig);
  base::LogInfo("shutting down", {{"signal", sig}});
  workers.Stop();
  engine.Stop();
  return cli::kExitOk;
}

int Bench(const bench::BenchOptions& options, const std::string& output) {
  base::SetLogLevel(base::LogLevel::kWarn);  // keep stdout/stderr for the result
  auto r = bench::RunWorkload(options);
  if (!r) {
    std::cerr << "venture bench: " << r.error().ToString() << "\n";
    return r.error().code == Code::kInvalidArgument ? cli::kExitUsage : cli::kExitError;
  }
  if (output == "json") {
    std::cout << bench::ToJsonLine(*r) << "\n";
  } else {
    bench::PrintTable(*r, std::cout);
  }
  return cli::kExitOk;
}

int Main(int argc, char** argv) {
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

  auto* serve = app.add_subcommand("serve", "Run the server (embedded store and bus)");
  std::string data_dir = "./venture-data";
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read once at startup, before any thread exists.
  if (const char* env = std::getenv("VENTURE_DATA_DIR")) data_dir = env;
  serve->add_option("--data-dir", data_dir, "Data directory");

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
    std::cout << cli::VersionString() << "\n";
    return cli::kExitOk;
  }
  if (validate->parsed()) return cli::ValidateFiles(files, output == "json", std::cout);
  if (serve->parsed()) return Serve(data_dir);
  if (bench_cmd->parsed()) return Bench(bo, output);
  return cli::kExitUsage;
}

}  // namespace
}  // namespace venture

int main(int argc, char** argv) { return venture::Main(argc, argv); }
