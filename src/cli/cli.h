// cli: the client commands. In this issue: `workflow validate` (offline, through workflow/) and
// `version`; the commands that talk to the server over HTTP arrive with the API (#3).
// Only cli knows terminal output: functions here write to the streams they are given.
#pragma once

#include <ostream>
#include <string>
#include <vector>

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

}  // namespace venture::cli
