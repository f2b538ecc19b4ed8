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

using internal::add_problem;
using internal::child;

// Schemas recurse through $ref; a reference loop that consumes no input stops here.
constexpr std::size_t kSchemaDepthMax = 64;
// Patterns whose compiled automaton could grow past this many states are refused (libstdc++
// expands a{n} into n copies).
constexpr std::size_t kPatternStatesMax = 100000;
constexpr std::size_t kPatternBytesMax = 1024;

Result<std::regex> compile_pattern(const std::string& pattern) {
  if (pattern.size() > kPatternBytesMax) {
    return invalid_argument_error("pattern longer than " + std::to_string(kPatternBytesMax) +
                                  " bytes");
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
      return invalid_argument_error("pattern repeats too much to be checked");
    }
  }
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return invalid_argument_error(std::string("pattern does not compile: ") + e.what());
  } catch (const std::exception& e) {
    return invalid_argument_error(std::string("pattern does not compile: ") + e.what());
  }
}

bool type_matches(std::string_view type, const json::value& v) {
  if (type == "integer") {
    return internal::as_int(v).has_value() || v.is_uint64();
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

std::optional<int64_t> int_keyword(const json::object& s, std::string_view key) {
  const json::value* v = s.if_contains(key);
  return v != nullptr ? internal::as_int(*v) : std::nullopt;
}

std::size_t code_points(const json::string& s) {
  std::size_t n = 0;
  for (char c : s) {
    n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  }
  return n;
}

class Validator {
 public:
  Validator(const json::value& root, Problems& problems) : root_(root), problems_(problems) {}
  void check(const json::value& schema, const json::value& v, const std::string& path,
             std::size_t depth);

 private:
  bool passes(const json::value& schema, const json::value& v, std::size_t depth) {
    Problems local;
    Validator(root_, local).check(schema, v, "", depth);
    return local.empty();
  }
  void fail(const std::string& path, std::string message) {
    add_problem(problems_, path, std::move(message));
  }
  void check_type(const json::object& s, const json::value& v, const std::string& path);
  void check_object(const json::object& s, const json::object& v, const std::string& path,
                    std::size_t depth);
  void check_array(const json::object& s, const json::array& v, const std::string& path,
                   std::size_t depth);
  void check_string(const json::object& s, const json::string& v, const std::string& path);
  void check_number(const json::object& s, double v, const std::string& path);
  void check_combinators(const json::object& s, const json::value& v, const std::string& path,
                         std::size_t depth);

  const json::value& root_;
  Problems& problems_;
};

void Validator::check(const json::value& schema, const json::value& v, const std::string& path,
                      std::size_t depth) {
  if (depth > kSchemaDepthMax) {
    fail(path, "the schema nests (or refers to itself) too deeply");
    return;
  }
  if (schema.is_bool()) {
    if (!schema.get_bool()) {
      fail(path, "no value is allowed here");
    }
    return;
  }
  const json::object* s = schema.if_object();
  if (s == nullptr) {
    return;  // the shape of the schema was checked when the definition was compiled
  }
  if (const json::string* ref = base::find_string(*s, "$ref")) {
    // Draft-07: a $ref replaces every sibling keyword.
    Result<const json::value*> target =
        ref->starts_with("#") ? resolve_pointer(root_, ref->subview(1))
                              : Result<const json::value*>(not_found_error("only local refs"));
    if (!target) {
      fail(path, "the schema's $ref " + internal::quote(*ref) + " does not resolve");
      return;
    }
    check(**target, v, path, depth + 1);
    return;
  }
  check_type(*s, v, path);
  if (const json::value* e = s->if_contains("enum"); e != nullptr && e->is_array()) {
    bool found = false;
    for (const json::value& choice : e->get_array()) {
      found = found || internal::json_equal(choice, v);
    }
    if (!found) {
      fail(path, "must be one of " + base::compact_json(*e).substr(0, 200));
    }
  }
  if (const json::value* c = s->if_contains("const");
      c != nullptr && !internal::json_equal(*c, v)) {
    fail(path, "must be " + base::compact_json(*c).substr(0, 200));
  }
  if (const json::object* o = v.if_object()) {
    check_object(*s, *o, path, depth);
  } else if (const json::array* a = v.if_array()) {
    check_array(*s, *a, path, depth);
  } else if (const json::string* str = v.if_string()) {
    check_string(*s, *str, path);
  } else if (std::optional<double> d = internal::as_number(v)) {
    check_number(*s, *d, path);
  }
  check_combinators(*s, v, path, depth);
}

void Validator::check_type(const json::object& s, const json::value& v, const std::string& path) {
  const json::value* type = s.if_contains("type");
  if (type == nullptr) {
    return;
  }
  if (const json::string* one = type->if_string()) {
    if (!type_matches(*one, v)) {
      fail(path, "expected " + std::string(*one) + ", got " + internal::kind_name(v));
    }
    return;
  }
  if (const json::array* many = type->if_array()) {
    for (const json::value& t : *many) {
      if (t.is_string() && type_matches(t.get_string(), v)) {
        return;
      }
    }
    fail(path, "expected one of " + base::compact_json(*type) + ", got " + internal::kind_name(v));
  }
}

void Validator::check_object(const json::object& s, const json::object& v, const std::string& path,
                             std::size_t depth) {
  const json::object* properties = base::find_object(s, "properties");
  if (const json::array* required = base::find_array(s, "required")) {
    for (const json::value& name : *required) {
      if (name.is_string() && !v.contains(name.get_string())) {
        fail(child(path, name.get_string()), "required property is missing");
      }
    }
  }
  const json::value* additional = s.if_contains("additionalProperties");
  for (const auto& kv : v) {
    const std::string child_path = child(path, kv.key());
    const json::value* property = properties ? properties->if_contains(kv.key()) : nullptr;
    if (property != nullptr) {
      check(*property, kv.value(), child_path, depth + 1);
    } else if (additional != nullptr && additional->is_bool() && !additional->get_bool()) {
      fail(child_path, "property " + internal::quote(kv.key()) + " is not allowed");
    } else if (additional != nullptr && additional->is_object()) {
      check(*additional, kv.value(), child_path, depth + 1);
    }
  }
  const auto size = static_cast<int64_t>(v.size());
  if (auto m = int_keyword(s, "minProperties"); m && size < *m) {
    fail(path, "must have at least " + std::to_string(*m) + " properties");
  }
  if (auto m = int_keyword(s, "maxProperties"); m && size > *m) {
    fail(path, "must have at most " + std::to_string(*m) + " properties");
  }
}

void Validator::check_array(const json::object& s, const json::array& v, const std::string& path,
                            std::size_t depth) {
  if (const json::value* items = s.if_contains("items")) {
    if (const json::array* tuple = items->if_array()) {
      for (std::size_t i = 0; i < v.size() && i < tuple->size(); ++i) {
        check((*tuple)[i], v[i], child(path, i), depth + 1);
      }
    } else {
      for (std::size_t i = 0; i < v.size(); ++i) {
        check(*items, v[i], child(path, i), depth + 1);
      }
    }
  }
  const auto size = static_cast<int64_t>(v.size());
  if (auto m = int_keyword(s, "minItems"); m && size < *m) {
    fail(path, "must have at least " + std::to_string(*m) + " items");
  }
  if (auto m = int_keyword(s, "maxItems"); m && size > *m) {
    fail(path, "must have at most " + std::to_string(*m) + " items");
  }
}

void Validator::check_string(const json::object& s, const json::string& v,
                             const std::string& path) {
  const auto length = static_cast<int64_t>(code_points(v));
  if (auto m = int_keyword(s, "minLength"); m && length < *m) {
    fail(path, "must be at least " + std::to_string(*m) + " characters long");
  }
  if (auto m = int_keyword(s, "maxLength"); m && length > *m) {
    fail(path, "must be at most " + std::to_string(*m) + " characters long");
  }
  const json::string* pattern = base::find_string(s, "pattern");
  if (pattern == nullptr) {
    return;
  }
  if (v.size() > limits::kPatternSubjectBytesMax) {
    fail(path, "longer than " + std::to_string(limits::kPatternSubjectBytesMax) +
                   " bytes, too long to check against its pattern");
    return;
  }
  Result<std::regex> re = compile_pattern(std::string(*pattern));
  if (!re) {
    fail(path, "the schema's " + re.error().message);
    return;
  }
  try {
    if (!std::regex_search(v.begin(), v.end(), *re)) {
      fail(path, "does not match the pattern " + internal::quote(*pattern));
    }
  } catch (const std::exception& e) {  // regex_error(error_complexity / error_stack)
    fail(path, std::string("could not be checked against its pattern: ") + e.what());
  }
}

void Validator::check_number(const json::object& s, double v, const std::string& path) {
  auto number = [&s](std::string_view key) -> std::optional<double> {
    const json::value* m = s.if_contains(key);
    return m != nullptr ? internal::as_number(*m) : std::nullopt;
  };
  if (auto m = number("minimum"); m && v < *m) {
    fail(path, "must be at least " + base::compact_json(s.at("minimum")));
  }
  if (auto m = number("maximum"); m && v > *m) {
    fail(path, "must be at most " + base::compact_json(s.at("maximum")));
  }
  if (auto m = number("exclusiveMinimum"); m && v <= *m) {
    fail(path, "must be greater than " + base::compact_json(s.at("exclusiveMinimum")));
  }
  if (auto m = number("exclusiveMaximum"); m && v >= *m) {
    fail(path, "must be less than " + base::compact_json(s.at("exclusiveMaximum")));
  }
  if (auto m = number("multipleOf"); m && *m > 0) {
    const double q = v / *m;
    if (std::fabs(q - std::round(q)) > 1e-9) {
      fail(path, "must be a multiple of " + base::compact_json(s.at("multipleOf")));
    }
  }
}

void Validator::check_combinators(const json::object& s, const json::value& v,
                                  const std::string& path, std::size_t depth) {
  if (const json::array* all = base::find_array(s, "allOf")) {
    for (const json::value& sub : *all) {
      check(sub, v, path, depth + 1);
    }
  }
  if (const json::array* any = base::find_array(s, "anyOf")) {
    bool ok = false;
    for (const json::value& sub : *any) {
      ok = ok || passes(sub, v, depth + 1);
    }
    if (!ok) {
      fail(path, "does not match any schema of anyOf");
    }
  }
  if (const json::array* one = base::find_array(s, "oneOf")) {
    std::size_t matched = 0;
    for (const json::value& sub : *one) {
      matched += passes(sub, v, depth + 1) ? 1U : 0U;
    }
    if (matched != 1) {
      fail(path, "matches " + std::to_string(matched) + " schemas of oneOf; exactly one must");
    }
  }
  const json::value* negated = s.if_contains("not");
  if (negated != nullptr && passes(*negated, v, depth + 1)) {
    fail(path, "must not match the schema of 'not'");
  }
}

class SchemaChecker {
 public:
  explicit SchemaChecker(Problems& problems) : problems_(problems) {}
  void check(const json::value& schema, const std::string& path, std::size_t depth);

 private:
  void check_keywords(const json::object& s, const std::string& path, std::size_t depth);
  void check_subschemas(const json::object& s, const std::string& path, std::size_t depth);
  Problems& problems_;
};

void SchemaChecker::check(const json::value& schema, const std::string& path, std::size_t depth) {
  if (depth > kSchemaDepthMax) {
    add_problem(problems_, path, "the schema nests too deeply");
    return;
  }
  if (schema.is_bool()) {
    return;
  }
  const json::object* s = schema.if_object();
  if (s == nullptr) {
    add_problem(problems_, path,
                "a JSON Schema must be an object, got " + internal::kind_name(schema));
    return;
  }
  check_keywords(*s, path, depth);
  check_subschemas(*s, path, depth);
}

void SchemaChecker::check_keywords(const json::object& s, const std::string& path,
                                   std::size_t depth) {
  static const std::vector<std::string> kTypes = {"null",   "boolean", "object", "array",
                                                  "number", "string",  "integer"};
  if (const json::value* type = s.if_contains("type")) {
    const json::array single = type->is_string() ? json::array{*type} : json::array{};
    const json::array* list = type->is_string() ? &single : type->if_array();
    if (list == nullptr) {
      add_problem(problems_, child(path, "type"), "expected a type name or an array of them");
    } else {
      for (const json::value& t : *list) {
        internal::check_enum(t, child(path, "type"), kTypes, problems_);
      }
    }
  }
  for (std::string_view key :
       {"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"}) {
    if (const json::value* v = s.if_contains(key)) {
      internal::check_int(*v, child(path, key), 0, std::numeric_limits<int64_t>::max(), problems_);
    }
  }
  for (std::string_view key :
       {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}) {
    const json::value* v = s.if_contains(key);
    if (v != nullptr && !v->is_number()) {
      add_problem(problems_, child(path, key), "expected a number");
    }
  }
  if (const json::value* r = s.if_contains("required")) {
    internal::check_string_array(*r, child(path, "required"), problems_);
  }
  if (const json::value* e = s.if_contains("enum"); e != nullptr && !e->is_array()) {
    add_problem(problems_, child(path, "enum"), "expected an array");
  }
  if (const json::value* p = s.if_contains("pattern")) {
    Result<std::regex> re = p->is_string()
                                ? compile_pattern(std::string(p->get_string()))
                                : Result<std::regex>(invalid_argument_error("not a string"));
    if (!re) {
      add_problem(problems_, child(path, "pattern"), re.error().message);
    }
  }
  if (const json::value* ref = s.if_contains("$ref")) {
    if (!ref->is_string() || !ref->get_string().starts_with("#")) {
      add_problem(problems_, child(path, "$ref"), "only local references (\"#/definitions/…\")");
    }
  }
  (void)depth;
}

void SchemaChecker::check_subschemas(const json::object& s, const std::string& path,
                                     std::size_t depth) {
  for (std::string_view key : {"properties", "definitions"}) {
    if (const json::value* v = s.if_contains(key)) {
      if (!v->is_object()) {
        add_problem(problems_, child(path, key), "expected an object of schemas");
        continue;
      }
      for (const auto& kv : v->get_object()) {
        check(kv.value(), child(child(path, key), kv.key()), depth + 1);
      }
    }
  }
  for (std::string_view key : {"additionalProperties", "not"}) {
    if (const json::value* v = s.if_contains(key)) {
      check(*v, child(path, key), depth + 1);
    }
  }
  if (const json::value* items = s.if_contains("items")) {
    if (const json::array* tuple = items->if_array()) {
      for (std::size_t i = 0; i < tuple->size(); ++i) {
        check((*tuple)[i], child(child(path, "items"), i), depth + 1);
      }
    } else {
      check(*items, child(path, "items"), depth + 1);
    }
  }
  for (std::string_view key : {"allOf", "anyOf", "oneOf"}) {
    if (const json::value* v = s.if_contains(key)) {
      const json::array* list = v->if_array();
      if (list == nullptr || list->empty()) {
        add_problem(problems_, child(path, key), "expected a non-empty array of schemas");
        continue;
      }
      for (std::size_t i = 0; i < list->size(); ++i) {
        check((*list)[i], child(child(path, key), i), depth + 1);
      }
    }
  }
}

}  // namespace

namespace internal {

void check_schema(const json::value& schema, const std::string& path, Problems& problems) {
  SchemaChecker(problems).check(schema, path, 0);
}

}  // namespace internal

void validate_inputs(const Ir& ir, const json::value& inputs, Problems& problems) {
  if (ir.inputs_schema.is_null()) {
    return;  // no schema: any inputs are accepted
  }
  Validator(ir.inputs_schema, problems).check(ir.inputs_schema, inputs, "/inputs", 0);
}

}  // namespace venture::workflow
