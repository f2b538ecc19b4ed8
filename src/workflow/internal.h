// Private helpers shared by the workflow sources. Not included by other modules.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "workflow/workflow.h"

namespace venture::workflow::internal {

// Appends a problem unless limits::kValidationProblemsMax have been recorded already (a hostile
// document must not make the problem list itself unbounded).
void AddProblem(Problems& problems, std::string path, std::string message);

// path + "/" + escaped token.
std::string Child(const std::string& path, std::string_view token);
std::string Child(const std::string& path, std::size_t index);

// Reports every member of o that is not in allowed, with a "did you mean" when one is close.
void CheckFields(const json::object& o, const std::string& path,
                 const std::vector<std::string>& allowed, Problems& problems);

// A string that contains a `${{` placeholder: its value is only known at run time, so static
// checks of the field's type are skipped.
bool IsDynamic(const json::value& v);

// An integral number (int64, uint64 in range, or a double without fraction).
std::optional<int64_t> AsInt(const json::value& v);
std::optional<double> AsNumber(const json::value& v);
std::string KindName(const json::value& v);

// Validates a duration string; problems under path. minimum_ms: the smallest accepted value.
std::optional<Millis> CheckDuration(const json::value& v, const std::string& path,
                                    Problems& problems, int64_t minimum_ms = 0);

// Validates an integer in [lo, hi].
std::optional<int64_t> CheckInt(const json::value& v, const std::string& path, int64_t lo,
                                int64_t hi, Problems& problems);

// Checks for strings: type and size bound; dynamic values accepted.
void CheckString(const json::value& v, const std::string& path, Problems& problems);
void CheckStringArray(const json::value& v, const std::string& path, Problems& problems);
void CheckStringMap(const json::value& v, const std::string& path, Problems& problems);
void CheckBool(const json::value& v, const std::string& path, Problems& problems);
void CheckEnum(const json::value& v, const std::string& path,
               const std::vector<std::string>& choices, Problems& problems);

// Splits a jq program from "${{ program }}" or returns a bare program as is.
std::string_view ExpressionProgram(std::string_view text);

// Loose shape check of a JSON Schema (the `inputs` of a definition).
void CheckSchema(const json::value& schema, const std::string& path, Problems& problems);

// Levenshtein distance, with a cap: returns cap + 1 when the distance exceeds cap.
std::size_t EditDistance(std::string_view a, std::string_view b, std::size_t cap);

}  // namespace venture::workflow::internal

namespace venture::workflow::internal {
// [a-z][a-z0-9_]{0,62}
bool IsValidNodeId(std::string_view id);
// 'text', shortened when long.
std::string Quote(std::string_view s);
}  // namespace venture::workflow::internal

namespace venture::workflow::internal {
// JSON equality of RFC 6902 `test` and JSON Schema `enum`/`const`: numbers by value, objects
// regardless of member order.
bool JsonEqual(const json::value& a, const json::value& b);
}  // namespace venture::workflow::internal
