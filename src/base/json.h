// Boost.JSON helpers: bounded parsing, canonical serialization and small accessors.
// Canonical JSON (used for hashes and versions): object keys sorted by byte order, no
// insignificant whitespace, Boost.JSON's number formatting. Part of base.
#pragma once

#include <boost/json.hpp>
#include <cstddef>
#include <string>
#include <string_view>

#include "base/result.h"

namespace venture {
namespace json = boost::json;

namespace base {

struct ParseLimits {
  std::size_t bytes_max;
  std::size_t depth_max;
};

// Parses one JSON document; kInvalidArgument with "line L, column C: reason" on bad input,
// kResourceExhausted when over the limits. Never throws.
[[nodiscard]] Result<json::value> parse_json(std::string_view text, ParseLimits limits);
[[nodiscard]] Result<json::value> parse_json(std::string_view text);  // default limits

// Canonical serialization (sorted keys, compact).
std::string canonical_json(const json::value& v);
// Appends s as a JSON string literal (escaped as Boost.JSON escapes).
void append_json_string(std::string_view s, std::string& out);
// Appends the canonical form of v to out (no intermediate string; for hot paths).
void append_canonical_json(const json::value& v, std::string& out);
// Compact serialization in insertion order (cheaper; for storage and the wire).
std::string compact_json(const json::value& v);
// JSON indented by two spaces per level, keys in document order, no trailing newline.
std::string pretty_json(const json::value& value);

// Nullptr if absent or of the wrong kind.
const json::string* find_string(const json::object& o, std::string_view key);
const json::object* find_object(const json::object& o, std::string_view key);
const json::array* find_array(const json::object& o, std::string_view key);
std::string string_or(const json::object& o, std::string_view key, std::string_view fallback);
int64_t int_or(const json::object& o, std::string_view key, int64_t fallback);

// Escapes a JSON Pointer reference token (RFC 6901: ~ -> ~0, / -> ~1).
std::string escape_pointer_token(std::string_view token);

}  // namespace base
}  // namespace venture
