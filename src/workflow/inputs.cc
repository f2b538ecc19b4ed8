// Run inputs against the definition's `inputs` schema: a JSON Schema draft-07 subset. Keywords
// outside the subset (title, default, format, ...) are annotations and ignored. `pattern` uses
// std::regex (ECMAScript, unanchored search) on subjects of at most
// limits::kPatternSubjectBytesMax bytes.
#include <cmath>
#include <limits>
#include <regex>

#include "workflow/internal.h"

namespace venture::workflow {
namespace {

using internal::AddProblem;
using internal::Child;

// Schemas recurse through $ref; a reference loop that consumes no input stops here.
constexpr std::size_t kSchemaDepthMax = 64;
// Patterns whose compiled automaton could grow past this many states are refused (libstdc++
// expands a{n} into n copies).
constexpr std::size_t kPatternStatesMax = 100000;
constexpr std::size_t kPatternBytesMax = 1024;

Result<std::regex> CompilePattern(const std::string& pattern) {
  if (pattern.size() > kPatternBytesMax) {
    return InvalidArgument("pattern longer than " + std::to_string(kPatternBytesMax) + " bytes");
  }
  // A conservative bound: the product of every repetition count times the length.
  std::size_t states = pattern.size() + 1;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '{') {
      continue;
    }
    std::size_t n = 0;
    for (std::size_t j = i + 1; j < pattern.size() && j < i + 12; ++j) {
      const char c = pattern[j];
      if (c >= '0' && c <= '9') {
        n = std::max<std::size_t>(n % 10000000, n * 10 + static_cast<std::size_t>(c - '0'));
      } else if (c != ',') {
        break;
      }
    }
    states *= std::max<std::size_t>(n, 1);
    if (states > kPatternStatesMax) {
      return InvalidArgument("pattern repeats too much to be checked");
    }
  }
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return InvalidArgument(std::string("pattern does not compile: ") + e.what());
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("pattern does not compile: ") + e.what());
  }
}

bool TypeMatches(std::string_view type, const json::value& v) {
  if (type == "integer") {
    return internal::AsInt(v).has_value() || v.is_uint64();
  }
  if (type == "number") {
    return v.is_number();
  }
  if (type == "string") {
    return v.is_string();
  }
  if (type == "boolean") {
    return v.is_bool();
  }
  if (type == "object") {
    return v.is_object();
  }
  if (type == "array") {
    return v.is_array();
  }
  return type == "null" && v.is_null();
}

std::optional<int64_t> IntKeyword(const json::object& s, std::string_view key) {
  const json::value* v = s.if_contains(key);
  return v != nullptr ? internal::AsInt(*v) : std::nullopt;
}

std::size_t CodePoints(const json::string& s) {
  std::size_t n = 0;
  for (char c : s) {
    n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  }
  return n;
}

class Validator {
 public:
  Validator(const json::value& root, Problems& problems) : root_(root), problems_(problems) {}
  void Check(const json::value& schema, const json::value& v, const std::string& path,
             std::size_t depth);

 private:
  bool Passes(const json::value& schema, const json::value& v, std::size_t depth) {
    Problems local;
    Validator(root_, local).Check(schema, v, "", depth);
    return local.empty();
  }
  void Fail(const std::string& path, std::string message) {
    AddProblem(problems_, path, std::move(message));
  }
  void CheckType(const json::object& s, const json::value& v, const std::string& path);
  void CheckObject(const json::object& s, const json::object& v, const std::string& path,
                   std::size_t depth);
  void CheckArray(const json::object& s, const json::array& v, const std::string& path,
                  std::size_t depth);
  void CheckString(const json::object& s, const json::string& v, const std::string& path);
  void CheckNumber(const json::object& s, double v, const std::string& path);
  void CheckCombinators(const json::object& s, const json::value& v, const std::string& path,
                        std::size_t depth);

  const json::value& root_;
  Problems& problems_;
};

void Validator::Check(const json::value& schema, const json::value& v, const std::string& path,
                      std::size_t depth) {
  if (depth > kSchemaDepthMax) {
    Fail(path, "the schema nests (or refers to itself) too deeply");
    return;
  }
  if (schema.is_bool()) {
    if (!schema.get_bool()) {
      Fail(path, "no value is allowed here");
    }
    return;
  }
  const json::object* s = schema.if_object();
  if (s == nullptr) {
    return;  // the shape of the schema was checked when the definition was compiled
  }
  if (const json::string* ref = base::FindString(*s, "$ref")) {
    // Draft-07: a $ref replaces every sibling keyword.
    Result<const json::value*> target =
        ref->starts_with("#") ? ResolvePointer(root_, ref->subview(1))
                              : Result<const json::value*>(NotFound("only local refs"));
    if (!target) {
      Fail(path, "the schema's $ref " + internal::Quote(*ref) + " does not resolve");
      return;
    }
    Check(**target, v, path, depth + 1);
    return;
  }
  CheckType(*s, v, path);
  if (const json::value* e = s->if_contains("enum"); e != nullptr && e->is_array()) {
    bool found = false;
    for (const json::value& choice : e->get_array()) {
      found = found || internal::JsonEqual(choice, v);
    }
    if (!found) {
      Fail(path, "must be one of " + base::CompactJson(*e).substr(0, 200));
    }
  }
  if (const json::value* c = s->if_contains("const"); c != nullptr && !internal::JsonEqual(*c, v)) {
    Fail(path, "must be " + base::CompactJson(*c).substr(0, 200));
  }
  if (const json::object* o = v.if_object()) {
    CheckObject(*s, *o, path, depth);
  } else if (const json::array* a = v.if_array()) {
    CheckArray(*s, *a, path, depth);
  } else if (const json::string* str = v.if_string()) {
    CheckString(*s, *str, path);
  } else if (std::optional<double> d = internal::AsNumber(v)) {
    CheckNumber(*s, *d, path);
  }
  CheckCombinators(*s, v, path, depth);
}

void Validator::CheckType(const json::object& s, const json::value& v, const std::string& path) {
  const json::value* type = s.if_contains("type");
  if (type == nullptr) {
    return;
  }
  if (const json::string* one = type->if_string()) {
    if (!TypeMatches(*one, v)) {
      Fail(path, "expected " + std::string(*one) + ", got " + internal::KindName(v));
    }
    return;
  }
  if (const json::array* many = type->if_array()) {
    for (const json::value& t : *many) {
      if (t.is_string() && TypeMatches(t.get_string(), v)) {
        return;
      }
    }
    Fail(path, "expected one of " + base::CompactJson(*type) + ", got " + internal::KindName(v));
  }
}

void Validator::CheckObject(const json::object& s, const json::object& v, const std::string& path,
                            std::size_t depth) {
  const json::object* properties = base::FindObject(s, "properties");
  if (const json::array* required = base::FindArray(s, "required")) {
    for (const json::value& name : *required) {
      if (name.is_string() && !v.contains(name.get_string())) {
        Fail(Child(path, name.get_string()), "required property is missing");
      }
    }
  }
  const json::value* additional = s.if_contains("additionalProperties");
  for (const auto& kv : v) {
    const std::string child = Child(path, kv.key());
    const json::value* property = properties ? properties->if_contains(kv.key()) : nullptr;
    if (property != nullptr) {
      Check(*property, kv.value(), child, depth + 1);
    } else if (additional != nullptr && additional->is_bool() && !additional->get_bool()) {
      Fail(child, "property " + internal::Quote(kv.key()) + " is not allowed");
    } else if (additional != nullptr && additional->is_object()) {
      Check(*additional, kv.value(), child, depth + 1);
    }
  }
  const auto size = static_cast<int64_t>(v.size());
  if (auto m = IntKeyword(s, "minProperties"); m && size < *m) {
    Fail(path, "must have at least " + std::to_string(*m) + " properties");
  }
  if (auto m = IntKeyword(s, "maxProperties"); m && size > *m) {
    Fail(path, "must have at most " + std::to_string(*m) + " properties");
  }
}

void Validator::CheckArray(const json::object& s, const json::array& v, const std::string& path,
                           std::size_t depth) {
  if (const json::value* items = s.if_contains("items")) {
    if (const json::array* tuple = items->if_array()) {
      for (std::size_t i = 0; i < v.size() && i < tuple->size(); ++i) {
        Check((*tuple)[i], v[i], Child(path, i), depth + 1);
      }
    } else {
      for (std::size_t i = 0; i < v.size(); ++i) {
        Check(*items, v[i], Child(path, i), depth + 1);
      }
    }
  }
  const auto size = static_cast<int64_t>(v.size());
  if (auto m = IntKeyword(s, "minItems"); m && size < *m) {
    Fail(path, "must have at least " + std::to_string(*m) + " items");
  }
  if (auto m = IntKeyword(s, "maxItems"); m && size > *m) {
    Fail(path, "must have at most " + std::to_string(*m) + " items");
  }
}

void Validator::CheckString(const json::object& s, const json::string& v,
                            const std::string& path) {
  const auto length = static_cast<int64_t>(CodePoints(v));
  if (auto m = IntKeyword(s, "minLength"); m && length < *m) {
    Fail(path, "must be at least " + std::to_string(*m) + " characters long");
  }
  if (auto m = IntKeyword(s, "maxLength"); m && length > *m) {
    Fail(path, "must be at most " + std::to_string(*m) + " characters long");
  }
  const json::string* pattern = base::FindString(s, "pattern");
  if (pattern == nullptr) {
    return;
  }
  if (v.size() > limits::kPatternSubjectBytesMax) {
    Fail(path, "longer than " + std::to_string(limits::kPatternSubjectBytesMax) +
                   " bytes, too long to check against its pattern");
    return;
  }
  Result<std::regex> re = CompilePattern(std::string(*pattern));
  if (!re) {
    Fail(path, "the schema's " + re.error().message);
    return;
  }
  try {
    if (!std::regex_search(v.begin(), v.end(), *re)) {
      Fail(path, "does not match the pattern " + internal::Quote(*pattern));
    }
  } catch (const std::exception& e) {  // regex_error(error_complexity / error_stack)
    Fail(path, std::string("could not be checked against its pattern: ") + e.what());
  }
}

void Validator::CheckNumber(const json::object& s, double v, const std::string& path) {
  auto number = [&s](std::string_view key) -> std::optional<double> {
    const json::value* m = s.if_contains(key);
    return m != nullptr ? internal::AsNumber(*m) : std::nullopt;
  };
  if (auto m = number("minimum"); m && v < *m) {
    Fail(path, "must be at least " + base::CompactJson(s.at("minimum")));
  }
  if (auto m = number("maximum"); m && v > *m) {
    Fail(path, "must be at most " + base::CompactJson(s.at("maximum")));
  }
  if (auto m = number("exclusiveMinimum"); m && v <= *m) {
    Fail(path, "must be greater than " + base::CompactJson(s.at("exclusiveMinimum")));
  }
  if (auto m = number("exclusiveMaximum"); m && v >= *m) {
    Fail(path, "must be less than " + base::CompactJson(s.at("exclusiveMaximum")));
  }
  if (auto m = number("multipleOf"); m && *m > 0) {
    const double q = v / *m;
    if (std::fabs(q - std::round(q)) > 1e-9) {
      Fail(path, "must be a multiple of " + base::CompactJson(s.at("multipleOf")));
    }
  }
}

void Validator::CheckCombinators(const json::object& s, const json::value& v,
                                 const std::string& path, std::size_t depth) {
  if (const json::array* all = base::FindArray(s, "allOf")) {
    for (const json::value& sub : *all) {
      Check(sub, v, path, depth + 1);
    }
  }
  if (const json::array* any = base::FindArray(s, "anyOf")) {
    bool ok = false;
    for (const json::value& sub : *any) {
      ok = ok || Passes(sub, v, depth + 1);
    }
    if (!ok) {
      Fail(path, "does not match any schema of anyOf");
    }
  }
  if (const json::array* one = base::FindArray(s, "oneOf")) {
    std::size_t matched = 0;
    for (const json::value& sub : *one) {
      matched += Passes(sub, v, depth + 1) ? 1U : 0U;
    }
    if (matched != 1) {
      Fail(path, "matches " + std::to_string(matched) + " schemas of oneOf; exactly one must");
    }
  }
  const json::value* negated = s.if_contains("not");
  if (negated != nullptr && Passes(*negated, v, depth + 1)) {
    Fail(path, "must not match the schema of 'not'");
  }
}

class SchemaChecker {
 public:
  explicit SchemaChecker(Problems& problems) : problems_(problems) {}
  void Check(const json::value& schema, const std::string& path, std::size_t depth);

 private:
  void CheckKeywords(const json::object& s, const std::string& path, std::size_t depth);
  void CheckSubschemas(const json::object& s, const std::string& path, std::size_t depth);
  Problems& problems_;
};

void SchemaChecker::Check(const json::value& schema, const std::string& path,
                          std::size_t depth) {
  if (depth > kSchemaDepthMax) {
    AddProblem(problems_, path, "the schema nests too deeply");
    return;
  }
  if (schema.is_bool()) {
    return;
  }
  const json::object* s = schema.if_object();
  if (s == nullptr) {
    AddProblem(problems_, path, "a JSON Schema must be an object, got " +
                                    internal::KindName(schema));
    return;
  }
  CheckKeywords(*s, path, depth);
  CheckSubschemas(*s, path, depth);
}

void SchemaChecker::CheckKeywords(const json::object& s, const std::string& path,
                                  std::size_t depth) {
  static const std::vector<std::string> kTypes = {"null",   "boolean", "object", "array",
                                                  "number", "string",  "integer"};
  if (const json::value* type = s.if_contains("type")) {
    const json::array single = type->is_string() ? json::array{*type} : json::array{};
    const json::array* list = type->is_string() ? &single : type->if_array();
    if (list == nullptr) {
      AddProblem(problems_, Child(path, "type"), "expected a type name or an array of them");
    } else {
      for (const json::value& t : *list) {
        internal::CheckEnum(t, Child(path, "type"), kTypes, problems_);
      }
    }
  }
  for (std::string_view key : {"minLength", "maxLength", "minItems", "maxItems", "minProperties",
                               "maxProperties"}) {
    if (const json::value* v = s.if_contains(key)) {
      internal::CheckInt(*v, Child(path, key), 0, std::numeric_limits<int64_t>::max(), problems_);
    }
  }
  for (std::string_view key :
       {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}) {
    const json::value* v = s.if_contains(key);
    if (v != nullptr && !v->is_number()) {
      AddProblem(problems_, Child(path, key), "expected a number");
    }
  }
  if (const json::value* r = s.if_contains("required")) {
    internal::CheckStringArray(*r, Child(path, "required"), problems_);
  }
  if (const json::value* e = s.if_contains("enum"); e != nullptr && !e->is_array()) {
    AddProblem(problems_, Child(path, "enum"), "expected an array");
  }
  if (const json::value* p = s.if_contains("pattern")) {
    Result<std::regex> re = p->is_string() ? CompilePattern(std::string(p->get_string()))
                                           : Result<std::regex>(InvalidArgument("not a string"));
    if (!re) {
      AddProblem(problems_, Child(path, "pattern"), re.error().message);
    }
  }
  if (const json::value* ref = s.if_contains("$ref")) {
    if (!ref->is_string() || !ref->get_string().starts_with("#")) {
      AddProblem(problems_, Child(path, "$ref"), "only local references (\"#/definitions/…\")");
    }
  }
  (void)depth;
}

void SchemaChecker::CheckSubschemas(const json::object& s, const std::string& path,
                                    std::size_t depth) {
  for (std::string_view key : {"properties", "definitions"}) {
    if (const json::value* v = s.if_contains(key)) {
      if (!v->is_object()) {
        AddProblem(problems_, Child(path, key), "expected an object of schemas");
        continue;
      }
      for (const auto& kv : v->get_object()) {
        Check(kv.value(), Child(Child(path, key), kv.key()), depth + 1);
      }
    }
  }
  for (std::string_view key : {"additionalProperties", "not"}) {
    if (const json::value* v = s.if_contains(key)) {
      Check(*v, Child(path, key), depth + 1);
    }
  }
  if (const json::value* items = s.if_contains("items")) {
    if (const json::array* tuple = items->if_array()) {
      for (std::size_t i = 0; i < tuple->size(); ++i) {
        Check((*tuple)[i], Child(Child(path, "items"), i), depth + 1);
      }
    } else {
      Check(*items, Child(path, "items"), depth + 1);
    }
  }
  for (std::string_view key : {"allOf", "anyOf", "oneOf"}) {
    if (const json::value* v = s.if_contains(key)) {
      const json::array* list = v->if_array();
      if (list == nullptr || list->empty()) {
        AddProblem(problems_, Child(path, key), "expected a non-empty array of schemas");
        continue;
      }
      for (std::size_t i = 0; i < list->size(); ++i) {
        Check((*list)[i], Child(Child(path, key), i), depth + 1);
      }
    }
  }
}

}  // namespace

namespace internal {

void CheckSchema(const json::value& schema, const std::string& path, Problems& problems) {
  SchemaChecker(problems).Check(schema, path, 0);
}

}  // namespace internal

void ValidateInputs(const Ir& ir, const json::value& inputs, Problems& problems) {
  if (ir.inputs_schema.is_null()) {
    return;  // no schema: any inputs are accepted
  }
  Validator(ir.inputs_schema, problems).Check(ir.inputs_schema, inputs, "/inputs", 0);
}

}  // namespace venture::workflow
