// ParseDocument: JSON or YAML text to a JSON value. yaml-cpp throws; every exception is caught here
// and becomes a problem with the line and column of its mark.
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <regex>
#include <sstream>

#include "workflow/internal.h"

namespace venture::workflow {
namespace {

std::string position(const YAML::Mark& mark) {
  if (mark.is_null()) {
    return "";
  }
  return "line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1) +
         ": ";
}

bool is_one_of(const std::string& s, std::initializer_list<const char*> choices) {
  for (const char* c : choices) {
    if (s == c) {
      return true;
    }
  }
  return false;
}

// A plain scalar resolved by the YAML 1.2 core schema. nullopt: not representable in JSON.
std::optional<json::value> resolve_plain(const std::string& s) {
  static const std::regex kInt("[-+]?[0-9]+");
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  static const std::regex kOctal("0o[0-7]+");
  static const std::regex kHex("0x[0-9a-fA-F]+");
  if (s.empty() || is_one_of(s, {"~", "null", "Null", "NULL"})) {
    return json::value(nullptr);
  }
  if (is_one_of(s, {"true", "True", "TRUE"})) {
    return json::value(true);
  }
  if (is_one_of(s, {"false", "False", "FALSE"})) {
    return json::value(false);
  }
  if (s.size() > 64) {
    return json::value(json::string(s));  // no number is this long; spare the regexes
  }
  const bool octal = std::regex_match(s, kOctal);
  const bool hex = std::regex_match(s, kHex);
  if (std::regex_match(s, kInt) || octal || hex) {
    errno = 0;
    const char* digits = octal || hex ? s.c_str() + 2 : s.c_str();
    const long long n = std::strtoll(digits, nullptr, octal ? 8 : (hex ? 16 : 10));
    if (errno == 0) {
      return json::value(static_cast<int64_t>(n));
    }
    return json::value(std::strtod(s.c_str(), nullptr));  // out of int64 range: a double
  }
  if (std::regex_match(s, kFloat)) {
    return json::value(std::strtod(s.c_str(), nullptr));
  }
  if (is_one_of(s, {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
                    ".nan", ".NaN", ".NAN"})) {
    return std::nullopt;
  }
  return json::value(json::string(s));
}

class YamlConverter {
 public:
  Result<json::value> convert(const YAML::Node& node, std::size_t depth);

 private:
  Result<json::value> convert_map(const YAML::Node& node, std::size_t depth);
  Status spend(const YAML::Node& node, std::size_t bytes) {
    // Aliases let a small text expand to a huge value ("billion laughs"): the expanded document is
    // held to the same bound as the text.
    if (bytes > budget_) {
      return resource_exhausted_error(position(node.Mark()) + "document expands beyond " +
                                      std::to_string(limits::kDefinitionBytesMax) + " bytes");
    }
    budget_ -= bytes;
    return ok();
  }
  std::size_t budget_ = limits::kDefinitionBytesMax;
};

Result<json::value> YamlConverter::convert_map(const YAML::Node& node, std::size_t depth) {
  json::object out;
  // By value: yaml-cpp's iterator yields a temporary pair, so `it->first` would dangle.
  for (const YAML::detail::iterator_value kv : node) {
    const YAML::Node key = kv.first;
    if (!key.IsScalar()) {
      return invalid_argument_error(position(key.Mark()) + "mapping keys must be plain strings");
    }
    const std::string& k = key.Scalar();
    VENTURE_RETURN_IF_ERROR(spend(key, k.size() + 8));
    if (out.contains(k)) {
      return invalid_argument_error(position(key.Mark()) + "duplicate key " + internal::quote(k));
    }
    VENTURE_ASSIGN_OR_RETURN(json::value value, convert(kv.second, depth + 1));
    out[k] = std::move(value);
  }
  return json::value(std::move(out));
}

Result<json::value> YamlConverter::convert(const YAML::Node& node, std::size_t depth) {
  if (depth > limits::kJsonDepthMax) {
    return resource_exhausted_error(position(node.Mark()) + "nesting deeper than " +
                                    std::to_string(limits::kJsonDepthMax));
  }
  VENTURE_RETURN_IF_ERROR(spend(node, 8));
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return json::value(nullptr);
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      VENTURE_RETURN_IF_ERROR(spend(node, s.size()));
      // "?" marks a plain scalar; quoted and block scalars ("!") and !!str stay strings.
      if (node.Tag() != "?") {
        return json::value(json::string(s));
      }
      std::optional<json::value> v = resolve_plain(s);
      if (!v) {
        return invalid_argument_error(position(node.Mark()) + "'" + s +
                                      "' (infinity or NaN) cannot be represented in JSON");
      }
      return *std::move(v);
    }
    case YAML::NodeType::Sequence: {
      json::array out;
      for (const YAML::Node& item : node) {
        VENTURE_ASSIGN_OR_RETURN(json::value value, convert(item, depth + 1));
        out.push_back(std::move(value));
      }
      return json::value(std::move(out));
    }
    case YAML::NodeType::Map:
      return convert_map(node, depth);
  }
  return internal_error("unexpected YAML node type");
}

// YAML 1.2 forbids C0 control characters other than tab, LF and CR (§5.1); yaml-cpp 0.7 can loop
// forever on a NUL byte, so they are refused before it sees them.
Status check_yaml_characters(std::string_view text) {
  std::size_t line = 1;
  std::size_t column = 1;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F) {
      return invalid_argument_error("line " + std::to_string(line) + ", column " +
                                    std::to_string(column) + ": control character " +
                                    std::to_string(c) + " is not allowed in YAML");
    }
    if (c == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return ok();
}

// Counts documents through the event API. yaml-cpp 0.7's LoadAll can loop forever (on "!\t,-"
// HandleNextDocument keeps returning true without consuming input), so at most two are read.
class DocumentCounter final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { last_start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
  YAML::Mark last_start = YAML::Mark::null_mark();
};

Result<json::value> parse_yaml(std::string_view text) {
  VENTURE_RETURN_IF_ERROR(check_yaml_characters(text));
  try {
    std::istringstream stream{std::string(text)};
    YAML::Parser parser(stream);
    DocumentCounter counter;
    int documents = 0;
    while (documents < 2 && parser.HandleNextDocument(counter)) {
      ++documents;
    }
    if (documents == 0) {
      return invalid_argument_error("the document is empty");
    }
    if (documents > 1) {
      return invalid_argument_error(position(counter.last_start) +
                                    "more than one YAML document (remove the '---')");
    }
    return YamlConverter().convert(YAML::Load(std::string(text)), 0);
  } catch (const YAML::Exception& e) {
    return invalid_argument_error(position(e.mark) + e.msg);
  } catch (const std::exception& e) {
    return invalid_argument_error(std::string("YAML: ") + e.what());
  }
}

}  // namespace

Result<json::value> parse_document(std::string_view text, Problems& problems) {
  Result<json::value> parsed = [&]() -> Result<json::value> {
    if (text.size() > limits::kDefinitionBytesMax) {
      return resource_exhausted_error("document of " + std::to_string(text.size()) +
                                      " bytes exceeds the limit of " +
                                      std::to_string(limits::kDefinitionBytesMax));
    }
    if (text.starts_with("\xEF\xBB\xBF")) {
      text.remove_prefix(3);  // a UTF-8 byte order mark, as some editors write
    }
    const std::size_t first = text.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) {
      return invalid_argument_error("the document is empty");
    }
    if (text[first] == '{') {
      return base::parse_json(text, {limits::kDefinitionBytesMax, limits::kJsonDepthMax});
    }
    return parse_yaml(text);
  }();
  if (!parsed) {
    internal::add_problem(problems, "", parsed.error().message);
  }
  return parsed;
}

}  // namespace venture::workflow
