// cli: the client commands of SPEC §5. `workflow validate` (offline, through workflow/) and
// `version` are called by main.cc; every command that talks to the server over HTTP (libcurl) is
// added to main's CLI11 app by add_client_commands and runs from its subcommand's callback.
// Only cli knows terminal output: functions here write to the streams they are given (the client
// commands to stdout and stderr).
//
// Threading: single-threaded; the client commands block on the network.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace CLI {  // NOLINT(readability-identifier-naming): CLI11's namespace
class App;
}  // namespace CLI

namespace venture::cli {

// Exit codes (SPEC §5).
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitRunFailed = 3;
inline constexpr int kExitAuth = 4;

// `venture workflow validate FILE...`: one line per problem, "FILE: /json/pointer: message" (the
// pointer is omitted for problems of the whole document); "FILE: ok" for a valid file when
// `quiet` is false. Returns kExitError if any file has a problem or cannot be read.
int validate_files(const std::vector<std::string>& files, bool json_output, std::ostream& out);

std::string version_string();

// Adds every client subcommand of SPEC §5 except serve, bench, version, workflow validate (which
// main.cc keeps): workflow register|list|show, tag move, run start|status|list|cancel|pause|resume,
// logs stream, patch create|list|show|approve|reject, replay, freeze, unfreeze, status,
// token create|list|revoke, audit verify, health, completion bash|zsh|fish. Each sets exit_code
// when it runs (callbacks, during app.parse); the global options --address, --token and -o are
// accepted before the command and on every client command. `app` must outlive the parse.
void add_client_commands(CLI::App& app, int& exit_code);
// True if app.parse ran one of the commands added above (its exit code is then set).
bool client_command_ran(const CLI::App& app);

}  // namespace venture::cli
