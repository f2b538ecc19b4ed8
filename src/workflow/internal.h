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
void add_problem(Problems& problems, std::string path, std::string message);

// path + "/" + escaped token.
std::string child(const std::string& path, std::string_view token);
std::string child(const std::string& path, std::size_t index);

// Reports every member of o that is not in allowed, with a "did you mean" when one is close.
void check_fields(const json::object& o, const std::string& path,
                  const std::vector<std::string>& allowed, Problems& problems);

// A string that contains a `${{` placeholder: its value is only known at run time, so static
// checks of the field's type are skipped.
bool is_dynamic(const json::value& v);

// An integral number (int64, uint64 in range, or a double without fraction).
std::optional<int64_t> as_int(const json::value& v);
std::optional<double> as_number(const json::value& v);
std::string kind_name(const json::value& v);

// Validates a duration string; problems under path. minimum_ms: the smallest accepted value.
std::optional<Millis> check_duration(const json::value& v, const std::string& path,
                                     Problems& problems, int64_t minimum_ms = 0);

// Validates an integer in [lo, hi].
std::optional<int64_t> check_int(const json::value& v, const std::string& path, int64_t lo,
                                 int64_t hi, Problems& problems);

// Checks for strings: type and size bound; dynamic values accepted.
void check_string(const json::value& v, const std::string& path, Problems& problems);
void check_string_array(const json::value& v, const std::string& path, Problems& problems);
void check_string_map(const json::value& v, const std::string& path, Problems& problems);
void check_bool(const json::value& v, const std::string& path, Problems& problems);
void check_enum(const json::value& v, const std::string& path,
                const std::vector<std::string>& choices, Problems& problems);

// Splits a jq program from "${{ program }}" or returns a bare program as is.
std::string_view expression_program(std::string_view text);

// Loose shape check of a JSON Schema (the `inputs` of a definition).
void check_schema(const json::value& schema, const std::string& path, Problems& problems);

// Levenshtein distance, with a cap: returns cap + 1 when the distance exceeds cap.
std::size_t edit_distance(std::string_view a, std::string_view b, std::size_t cap);

}  // namespace venture::workflow::internal

namespace venture::workflow::internal {
// [a-z][a-z0-9_]{0,62}
bool is_valid_node_id(std::string_view id);
// 'text', shortened when long.
std::string quote(std::string_view s);
// s without leading and trailing spaces, tabs and line breaks.
std::string_view trim(std::string_view s);
}  // namespace venture::workflow::internal

namespace venture::workflow::internal {
// JSON equality of RFC 6902 `test` and JSON Schema `enum`/`const`: numbers by value, objects
// regardless of member order.
bool json_equal(const json::value& a, const json::value& b);
}  // namespace venture::workflow::internal
