// Small shared helpers: problem lists, field checks, names, edit distance.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "workflow/internal.h"

namespace venture::workflow {
namespace internal {

void add_problem(Problems& problems, std::string path, std::string message) {
  if (problems.size() < limits::kValidationProblemsMax) {
    problems.push_back({std::move(path), std::move(message)});
  }
}

std::string child(const std::string& path, std::string_view token) {
  return path + "/" + base::escape_pointer_token(token);
}

std::string child(const std::string& path, std::size_t index) {
  return path + "/" + std::to_string(index);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::strchr(" \t\r\n", s.front()) != nullptr) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::strchr(" \t\r\n", s.back()) != nullptr) {
    s.remove_suffix(1);
  }
  return s;
}

std::string quote(std::string_view s) {
  constexpr std::size_t kShownMax = 64;  // keep messages short for hostile keys
  if (s.size() > kShownMax) {
    return "'" + std::string(s.substr(0, kShownMax)) + "…'";
  }
  return "'" + std::string(s) + "'";
}

void check_fields(const json::object& o, const std::string& path,
                  const std::vector<std::string>& allowed, Problems& problems) {
  for (const auto& kv : o) {
    const std::string_view key = kv.key();
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) {
      continue;
    }
    std::string message = "unknown field " + quote(key);
    const std::string suggestion = closest_match(key, allowed);
    if (!suggestion.empty()) {
      message += "; did you mean '" + suggestion + "'?";
    }
    add_problem(problems, child(path, key), std::move(message));
  }
}

bool is_dynamic(const json::value& v) {
  const json::string* s = v.if_string();
  return s != nullptr && s->subview().find("${{") != json::string_view::npos;
}

std::optional<int64_t> as_int(const json::value& v) {
  if (v.is_int64()) {
    return v.get_int64();
  }
  if (v.is_uint64()) {
    if (v.get_uint64() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<int64_t>(v.get_uint64());
  }
  if (v.is_double()) {
    const double d = v.get_double();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) {
      return static_cast<int64_t>(d);
    }
  }
  return std::nullopt;
}

std::optional<double> as_number(const json::value& v) {
  if (v.is_int64()) {
    return static_cast<double>(v.get_int64());
  }
  if (v.is_uint64()) {
    return static_cast<double>(v.get_uint64());
  }
  if (v.is_double()) {
    return v.get_double();
  }
  return std::nullopt;
}

std::string kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "a value";
}

std::optional<Millis> check_duration(const json::value& v, const std::string& path,
                                     Problems& problems, int64_t minimum_ms) {
  const json::string* s = v.if_string();
  if (s == nullptr) {
    add_problem(problems, path, "expected a duration string such as \"30s\", got " + kind_name(v));
    return std::nullopt;
  }
  Result<Millis> d = parse_duration(*s);
  if (!d) {
    add_problem(problems, path, d.error().message);
    return std::nullopt;
  }
  if (d->count() < minimum_ms) {
    add_problem(problems, path, "must be at least " + format_duration(Millis(minimum_ms)));
    return std::nullopt;
  }
  return *d;
}

std::optional<int64_t> check_int(const json::value& v, const std::string& path, int64_t lo,
                                 int64_t hi, Problems& problems) {
  std::optional<int64_t> n = as_int(v);
  if (!n) {
    add_problem(problems, path, "expected an integer, got " + kind_name(v));
    return std::nullopt;
  }
  if (*n < lo || *n > hi) {
    add_problem(problems, path,
                "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    return std::nullopt;
  }
  return n;
}

void check_string(const json::value& v, const std::string& path, Problems& problems) {
  if (!v.is_string()) {
    add_problem(problems, path, "expected a string, got " + kind_name(v));
  }
}

void check_string_array(const json::value& v, const std::string& path, Problems& problems) {
  if (is_dynamic(v)) {
    return;
  }
  const json::array* a = v.if_array();
  if (a == nullptr) {
    add_problem(problems, path, "expected an array of strings, got " + kind_name(v));
    return;
  }
  for (std::size_t i = 0; i < a->size(); ++i) {
    check_string((*a)[i], child(path, i), problems);
  }
}

void check_string_map(const json::value& v, const std::string& path, Problems& problems) {
  if (is_dynamic(v)) {
    return;
  }
  const json::object* o = v.if_object();
  if (o == nullptr) {
    add_problem(problems, path, "expected an object of strings, got " + kind_name(v));
    return;
  }
  for (const auto& kv : *o) {
    check_string(kv.value(), child(path, kv.key()), problems);
  }
}

void check_bool(const json::value& v, const std::string& path, Problems& problems) {
  if (!v.is_bool() && !is_dynamic(v)) {
    add_problem(problems, path, "expected true or false, got " + kind_name(v));
  }
}

void check_enum(const json::value& v, const std::string& path,
                const std::vector<std::string>& choices, Problems& problems) {
  if (is_dynamic(v)) {
    return;
  }
  const json::string* s = v.if_string();
  if (s != nullptr && std::find(choices.begin(), choices.end(), *s) != choices.end()) {
    return;
  }
  std::string list;
  for (const std::string& c : choices) {
    list += (list.empty() ? "" : ", ") + c;
  }
  std::string message = "must be one of " + list;
  if (s != nullptr) {
    const std::string suggestion = closest_match(*s, choices);
    if (!suggestion.empty()) {
      message += "; did you mean '" + suggestion + "'?";
    }
  }
  add_problem(problems, path, std::move(message));
}

std::size_t edit_distance(std::string_view a, std::string_view b, std::size_t cap) {
  const std::size_t diff = a.size() > b.size() ? a.size() - b.size() : b.size() - a.size();
  if (diff > cap) {
    return cap + 1;
  }
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    std::size_t best = row[0];
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      const std::size_t substitution = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitution});
      diagonal = above;
      best = std::min(best, row[j]);
    }
    if (best > cap) {
      return cap + 1;  // every later row is at least this far
    }
  }
  return std::min(row[b.size()], cap + 1);
}

}  // namespace internal

std::string closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  constexpr std::size_t kDistanceMax = 2;
  constexpr std::size_t kWordBytesMax = 256;  // suggestions for huge strings are noise
  if (word.empty() || word.size() > kWordBytesMax) {
    return "";
  }
  std::string best;
  std::size_t best_distance = kDistanceMax + 1;
  for (const std::string& candidate : candidates) {
    const std::size_t d = internal::edit_distance(word, candidate, kDistanceMax);
    // A suggestion must keep something of the word ("x" -> "id" helps no one).
    if (d >= word.size() || d == 0) {
      continue;
    }
    // Ties go to the lexicographically smallest candidate, whatever the list order.
    if (d < best_distance || (d == best_distance && candidate < best)) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

namespace {

bool matches_name(std::string_view s, bool letter_first, std::string_view extra) {
  if (s.empty() || s.size() > 63) {
    return false;
  }
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool lower = c >= 'a' && c <= 'z';
    const bool digit = c >= '0' && c <= '9';
    if (i == 0) {
      if (!(lower || (digit && !letter_first))) {
        return false;
      }
    } else if (!lower && !digit && extra.find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool is_valid_tag_name(std::string_view tag) { return matches_name(tag, false, "._-"); }
bool is_valid_workflow_name(std::string_view name) { return matches_name(name, false, "._-"); }

namespace internal {
bool is_valid_node_id(std::string_view id) { return matches_name(id, true, "_"); }
}  // namespace internal

int Ir::index_of(std::string_view id) const {
  auto it = index.find(std::string(id));
  return it == index.end() ? -1 : it->second;
}

}  // namespace venture::workflow
