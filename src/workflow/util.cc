// Small shared helpers: problem lists, field checks, names, edit distance.
#include <algorithm>
#include <cmath>
#include <limits>

#include "workflow/internal.h"

namespace venture::workflow {
namespace internal {

void AddProblem(Problems& problems, std::string path, std::string message) {
  if (problems.size() < limits::kValidationProblemsMax) {
    problems.push_back({std::move(path), std::move(message)});
  }
}

std::string Child(const std::string& path, std::string_view token) {
  return path + "/" + base::EscapePointerToken(token);
}

std::string Child(const std::string& path, std::size_t index) {
  return path + "/" + std::to_string(index);
}

std::string Quote(std::string_view s) {
  constexpr std::size_t kShownMax = 64;  // keep messages short for hostile keys
  if (s.size() > kShownMax) {
    return "'" + std::string(s.substr(0, kShownMax)) + "…'";
  }
  return "'" + std::string(s) + "'";
}

void CheckFields(const json::object& o, const std::string& path,
                 const std::vector<std::string>& allowed, Problems& problems) {
  for (const auto& kv : o) {
    const std::string_view key = kv.key();
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) {
      continue;
    }
    std::string message = "unknown field " + Quote(key);
    const std::string suggestion = ClosestMatch(key, allowed);
    if (!suggestion.empty()) {
      message += "; did you mean '" + suggestion + "'?";
    }
    AddProblem(problems, Child(path, key), std::move(message));
  }
}

bool IsDynamic(const json::value& v) {
  const json::string* s = v.if_string();
  return s != nullptr && s->subview().find("${{") != json::string_view::npos;
}

std::optional<int64_t> AsInt(const json::value& v) {
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

std::optional<double> AsNumber(const json::value& v) {
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

std::string KindName(const json::value& v) {
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

std::optional<Millis> CheckDuration(const json::value& v, const std::string& path,
                                    Problems& problems, int64_t minimum_ms) {
  const json::string* s = v.if_string();
  if (s == nullptr) {
    AddProblem(problems, path,
               "expected a duration string such as \"30s\", got " + KindName(v));
    return std::nullopt;
  }
  Result<Millis> d = ParseDuration(*s);
  if (!d) {
    AddProblem(problems, path, d.error().message);
    return std::nullopt;
  }
  if (d->count() < minimum_ms) {
    AddProblem(problems, path, "must be at least " + FormatDuration(Millis(minimum_ms)));
    return std::nullopt;
  }
  return *d;
}

std::optional<int64_t> CheckInt(const json::value& v, const std::string& path, int64_t lo,
                                int64_t hi, Problems& problems) {
  std::optional<int64_t> n = AsInt(v);
  if (!n) {
    AddProblem(problems, path, "expected an integer, got " + KindName(v));
    return std::nullopt;
  }
  if (*n < lo || *n > hi) {
    AddProblem(problems, path,
               "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    return std::nullopt;
  }
  return n;
}

void CheckString(const json::value& v, const std::string& path, Problems& problems) {
  if (!v.is_string()) {
    AddProblem(problems, path, "expected a string, got " + KindName(v));
  }
}

void CheckStringArray(const json::value& v, const std::string& path, Problems& problems) {
  if (IsDynamic(v)) {
    return;
  }
  const json::array* a = v.if_array();
  if (a == nullptr) {
    AddProblem(problems, path, "expected an array of strings, got " + KindName(v));
    return;
  }
  for (std::size_t i = 0; i < a->size(); ++i) {
    CheckString((*a)[i], Child(path, i), problems);
  }
}

void CheckStringMap(const json::value& v, const std::string& path, Problems& problems) {
  if (IsDynamic(v)) {
    return;
  }
  const json::object* o = v.if_object();
  if (o == nullptr) {
    AddProblem(problems, path, "expected an object of strings, got " + KindName(v));
    return;
  }
  for (const auto& kv : *o) {
    CheckString(kv.value(), Child(path, kv.key()), problems);
  }
}

void CheckBool(const json::value& v, const std::string& path, Problems& problems) {
  if (!v.is_bool() && !IsDynamic(v)) {
    AddProblem(problems, path, "expected true or false, got " + KindName(v));
  }
}

void CheckEnum(const json::value& v, const std::string& path,
               const std::vector<std::string>& choices, Problems& problems) {
  if (IsDynamic(v)) {
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
    const std::string suggestion = ClosestMatch(*s, choices);
    if (!suggestion.empty()) {
      message += "; did you mean '" + suggestion + "'?";
    }
  }
  AddProblem(problems, path, std::move(message));
}

std::size_t EditDistance(std::string_view a, std::string_view b, std::size_t cap) {
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

std::string ClosestMatch(std::string_view word, const std::vector<std::string>& candidates) {
  constexpr std::size_t kDistanceMax = 2;
  constexpr std::size_t kWordBytesMax = 256;  // suggestions for huge strings are noise
  if (word.empty() || word.size() > kWordBytesMax) {
    return "";
  }
  std::string best;
  std::size_t best_distance = kDistanceMax + 1;
  for (const std::string& candidate : candidates) {
    const std::size_t d = internal::EditDistance(word, candidate, kDistanceMax);
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

bool MatchesName(std::string_view s, bool letter_first, std::string_view extra) {
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

bool IsValidTagName(std::string_view tag) { return MatchesName(tag, false, "._-"); }
bool IsValidWorkflowName(std::string_view name) { return MatchesName(name, false, "._-"); }

namespace internal {
bool IsValidNodeId(std::string_view id) { return MatchesName(id, true, "_"); }
}  // namespace internal

int Ir::IndexOf(std::string_view id) const {
  auto it = index.find(std::string(id));
  return it == index.end() ? -1 : it->second;
}

}  // namespace venture::workflow
