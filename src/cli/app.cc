// The CLI11 wiring of the client commands: subcommands, options, and the callbacks that build a
// Context (address, token, output mode, terminal) and run a command.
#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <tuple>

#include "cli/cli.h"
#include "cli/internal.h"

namespace venture::cli {
namespace {

// The commands added here, for client_command_ran: top-level names, and verbs under `workflow`.
constexpr std::array<std::string_view, 14> kTopLevel = {
    "tag",    "run",   "logs",  "patch",  "replay",     "freeze",    "unfreeze",
    "status", "token", "audit", "health", "completion", "approvals", "approve"};
constexpr std::array<std::string_view, 3> kWorkflowVerbs = {"register", "list", "show"};

struct State {
  Args args;
  int* exit_code = nullptr;
  const CLI::App* root = nullptr;
};

std::optional<std::string> env(const char* name) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read on the main thread; nothing sets the environment.
  const char* value = std::getenv(name);
  return value == nullptr ? std::nullopt : std::optional<std::string>(value);
}

const CLI::App* find_sub(const CLI::App& app, std::string_view name) {
  for (const CLI::App* sub :
       app.get_subcommands([name](const CLI::App* s) { return s->get_name() == name; })) {
    return sub;
  }
  return nullptr;
}

CLI::App* find_sub(CLI::App& app, std::string_view name) {
  for (CLI::App* sub : app.get_subcommands([name](CLI::App* s) { return s->get_name() == name; })) {
    return sub;
  }
  return nullptr;
}

void add_global_options(CLI::App* cmd, Args& args) {
  if (cmd->get_option_no_throw("--address") == nullptr) {
    cmd->add_option(
        "--address", args.address,
        "Server address (default $VENTURE_ADDRESS or " + std::string(kDefaultAddress) + ")");
  }
  if (cmd->get_option_no_throw("--token") == nullptr) {
    cmd->add_option("--token", args.token,
                    "API token (default $VENTURE_TOKEN, else $VENTURE_DATA_DIR/admin.token, else "
                    "./venture-data/admin.token)");
  }
  if (cmd->get_option_no_throw("--output") == nullptr) {
    cmd->add_option("-o,--output", args.output, "Output format: table|json")
        ->check(CLI::IsMember({"table", "json"}));
  }
}

int execute(State& state, Command command) {
  const Args& args = state.args;
  std::string address = args.address;
  if (address.empty()) address = env("VENTURE_ADDRESS").value_or(std::string(kDefaultAddress));
  address = normalize_address(address);
  const std::string token =
      resolve_token(args.token, env("VENTURE_TOKEN"), env("VENTURE_DATA_DIR"));
  std::unique_ptr<Transport> transport = new_curl_transport(address, token);
  Context ctx;
  ctx.http = transport.get();
  ctx.address = address;
  ctx.has_token = !token.empty();
  ctx.json = args.output == "json";
  ctx.terminal = isatty(STDOUT_FILENO) == 1;
  const std::optional<std::string> no_color = env("NO_COLOR");
  ctx.color = ctx.terminal && (!no_color || no_color->empty());
  if (ctx.terminal) {
    winsize size{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0) {
      ctx.terminal_rows = size.ws_row;
      ctx.terminal_columns = size.ws_col;
    }
  }
  ctx.root = state.root;
  ctx.out = &std::cout;
  ctx.err = &std::cerr;
  return run_command(ctx, args, command);
}

// A leaf command: its options are bound to the shared Args; its callback runs the command.
CLI::App* leaf(CLI::App* parent, const std::string& name, const std::string& description,
               const std::shared_ptr<State>& state, Command command) {
  CLI::App* cmd = parent->add_subcommand(name, description);
  add_global_options(cmd, state->args);
  // The callback owns the state (options hold references into it), as long as the app lives.
  cmd->callback([state, command] { *state->exit_code = execute(*state, command); });
  return cmd;
}

CLI::App* group(CLI::App& app, const std::string& name, const std::string& description) {
  CLI::App* cmd = app.add_subcommand(name, description);
  cmd->require_subcommand(1);
  return cmd;
}

void add_workflow_commands(CLI::App& app, const std::shared_ptr<State>& s) {
  Args& a = s->args;
  CLI::App* wf = find_sub(app, "workflow");
  if (wf == nullptr) wf = group(app, "workflow", "Workflow definitions");
  CLI::App* c =
      leaf(wf, "register", "Register a definition (JSON or YAML file)", s, &cmd_workflow_register);
  c->add_option("FILE", a.file, "Definition file")->required();
  c->add_option("--tag", a.tag, "Also point this tag at the version");
  c = leaf(wf, "list", "List workflows", s, &cmd_workflow_list);
  c->add_option("--limit", a.limit, "Rows per page")->check(CLI::Range(1, 500));
  c->add_option("--cursor", a.cursor, "Continue a previous list");
  c = leaf(wf, "show", "Show a workflow version and its definition", s, &cmd_workflow_show);
  c->add_option("WORKFLOW", a.ref, "NAME, NAME@TAG or NAME@VERSION")->required();

  CLI::App* tag = group(app, "tag", "Workflow tags");
  c = leaf(tag, "move", "Point a tag at a version", s, &cmd_tag_move);
  c->add_option("NAME", a.name, "Workflow name")->required();
  c->add_option("TAG", a.tag, "Tag")->required();
  c->add_option("VERSION", a.version, "Version (b2:…)")->required();
}

void add_run_commands(CLI::App& app, const std::shared_ptr<State>& s) {
  Args& a = s->args;
  CLI::App* run = group(app, "run", "Runs");
  CLI::App* c = leaf(run, "start", "Start a run", s, &cmd_run_start);
  c->add_option("WORKFLOW", a.ref, "A definition file, or NAME[@TAG|@VERSION]")->required();
  c->add_option("-i,--input", a.inputs, "An input as key=value (value: JSON, else a string)")
      ->check(
          [](const std::string& text) {
            auto r = parse_assignment(text);
            return r ? std::string() : r.error().message;
          },
          "key=value");
  c->add_option("--inputs", a.inputs_file, "A JSON or YAML file with the inputs object");
  c->add_option("--idempotency-key", a.idempotency_key, "Start at most one run for this key");
  c->add_flag("-f,--follow", a.follow, "Follow the run until it ends (exit 3 if it fails)");
  c = leaf(run, "status", "Show a run and its nodes", s, &cmd_run_status);
  c->add_option("RUN", a.id, "Run id")->required();
  c = leaf(run, "list", "List runs", s, &cmd_run_list);
  c->add_option("--status", a.status, "Only runs with this status");
  c->add_option("--workflow", a.workflow, "Only runs of this workflow");
  c->add_option("--limit", a.limit, "Rows per page")->check(CLI::Range(1, 500));
  c->add_option("--cursor", a.cursor, "Continue a previous list");
  const std::array<std::tuple<const char*, const char*, Command>, 3> controls = {{
      {"cancel", "Cancel a run", &cmd_run_cancel},
      {"pause", "Pause a run (no new node starts)", &cmd_run_pause},
      {"resume", "Resume a paused run", &cmd_run_resume},
  }};
  for (const auto& [name, description, command] : controls) {
    c = leaf(run, name, description, s, command);
    c->add_option("RUN", a.id, "Run id")->required();
    c->add_option("--reason", a.reason, "Why (recorded in the event)");
  }

  CLI::App* logs = group(app, "logs", "Run events");
  c = leaf(logs, "stream", "Print a run's events until it ends", s, &cmd_logs_stream);
  c->add_option("RUN", a.id, "Run id")->required();
  c->add_option("--node", a.node, "Only this node's events");
  c->add_option("--filter", a.filter, "errors: only failures and retries")
      ->check(CLI::IsMember({"errors"}));
  c->add_option("--from", a.from, "Start at this event seq")->check(CLI::PositiveNumber);

  c = leaf(&app, "replay", "Start a new run reusing the outputs upstream of a node", s,
           &cmd_replay);
  c->add_option("RUN", a.id, "Run id")->required();
  c->add_option("--from", a.from_node, "Re-run this node and everything downstream")->required();
  c->add_flag("-f,--follow", a.follow, "Follow the new run until it ends (exit 3 if it fails)");
}

void add_patch_commands(CLI::App& app, const std::shared_ptr<State>& s) {
  Args& a = s->args;
  CLI::App* patch = group(app, "patch", "Patches of running graphs");
  CLI::App* c =
      leaf(patch, "create", "Propose a patch (RFC 6902 ops) to a run", s, &cmd_patch_create);
  c->add_option("RUN", a.id, "Run id")->required();
  c->add_option("FILE", a.file, "JSON/YAML: an array of ops, or {ops, reason}")->required();
  c->add_option("--reason", a.reason, "Why");
  c = leaf(patch, "list", "List a run's patches", s, &cmd_patch_list);
  c->add_option("RUN", a.id, "Run id")->required();
  c = leaf(patch, "show", "Show a patch", s, &cmd_patch_show);
  c->add_option("PATCH", a.id, "Patch id")->required();
  c = leaf(patch, "approve", "Approve a pending patch", s, &cmd_patch_approve);
  c->add_option("PATCH", a.id, "Patch id")->required();
  c->add_option("--reason", a.reason, "Why");
  c = leaf(patch, "reject", "Reject a pending patch", s, &cmd_patch_reject);
  c->add_option("PATCH", a.id, "Patch id")->required();
  c->add_option("--reason", a.reason, "Why");
}

void add_approval_commands(CLI::App& app, const std::shared_ptr<State>& s) {
  Args& a = s->args;
  CLI::App* approvals = group(app, "approvals", "Human approvals");
  CLI::App* c = leaf(approvals, "list", "List approvals (newest first)", s, &cmd_approvals_list);
  c->add_option("--run", a.run, "Only this run's approvals");
  c->add_option("--status", a.status, "pending|approved|rejected|timed_out|cancelled")
      ->check(CLI::IsMember({"pending", "approved", "rejected", "timed_out", "cancelled"}));
  c->add_option("--limit", a.limit, "Rows per page")->check(CLI::Range(1, 500));
  c->add_option("--cursor", a.cursor, "Continue a previous list");
  c = leaf(approvals, "show", "Show an approval, what it shows and its decisions", s,
           &cmd_approvals_show);
  c->add_option("APPROVAL", a.id, "Approval id")->required();
  c = leaf(&app, "approve", "Decide on an approval", s, &cmd_approve);
  c->add_option("APPROVAL", a.id, "Approval id")->required();
  c->add_option("DECISION", a.decision, "approve or reject")
      ->required()
      ->check(CLI::IsMember({"approve", "reject"}));
  c->add_option("--reason", a.reason, "A comment recorded with the decision");
}

void add_admin_commands(CLI::App& app, const std::shared_ptr<State>& s) {
  Args& a = s->args;
  CLI::App* c = leaf(&app, "freeze", "Stop dispatching work and starting runs", s, &cmd_freeze);
  c->add_option("--reason", a.reason, "Why (recorded in the event)")->required();
  leaf(&app, "unfreeze", "Lift a freeze", s, &cmd_unfreeze);
  leaf(&app, "status", "Show whether the server is frozen", s, &cmd_control_status);

  CLI::App* token = group(app, "token", "API tokens");
  c = leaf(token, "create", "Create a token (its secret is shown once)", s, &cmd_token_create);
  c->add_option("--name", a.name, "A name for the token")->required();
  c->add_option("--role", a.role, "admin|operator|approver|viewer|agent")
      ->required()
      ->check(CLI::IsMember({"admin", "operator", "approver", "viewer", "agent"}));
  c = leaf(token, "list", "List tokens", s, &cmd_token_list);
  c->add_option("--limit", a.limit, "Rows per page")->check(CLI::Range(1, 500));
  c->add_option("--cursor", a.cursor, "Continue a previous list");
  c = leaf(token, "revoke", "Revoke a token", s, &cmd_token_revoke);
  c->add_option("ID", a.id, "Token id")->required();

  CLI::App* audit = group(app, "audit", "Audit trail");
  leaf(audit, "verify", "Verify the event hash chain and checkpoints (exit 1 if broken)", s,
       &cmd_audit_verify);
  leaf(&app, "health", "Show the server's health", s, &cmd_health);
  c = leaf(&app, "completion", "Print a shell completion script", s, &cmd_completion);
  c->add_option("SHELL", a.shell, "bash, zsh or fish")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
}

}  // namespace

void add_client_commands(CLI::App& app, int& exit_code) {
  auto state = std::make_shared<State>();
  state->exit_code = &exit_code;
  state->root = &app;
  // The global options may also come before the command: `venture --address X run list`.
  add_global_options(&app, state->args);
  add_workflow_commands(app, state);
  add_run_commands(app, state);
  add_patch_commands(app, state);
  add_approval_commands(app, state);
  add_admin_commands(app, state);
}

bool client_command_ran(const CLI::App& app) {
  for (std::string_view name : kTopLevel) {
    const CLI::App* sub = find_sub(app, name);
    if (sub != nullptr && sub->parsed()) return true;
  }
  if (const CLI::App* wf = find_sub(app, "workflow"); wf != nullptr && wf->parsed()) {
    for (std::string_view name : kWorkflowVerbs) {
      const CLI::App* sub = find_sub(*wf, name);
      if (sub != nullptr && sub->parsed()) return true;
    }
  }
  return false;
}

}  // namespace venture::cli
