// jq expressions (libjq 1.6) and `${{ }}` templates.
//
// A jq_state is not thread-safe, so each thread keeps its own cache of compiled states keyed by
// program text; the process-wide cache only remembers which programs compiled (and hands out the
// shared text). Every program runs inside a small prelude that hides the process environment
// (`env`, `$ENV`) and the input/stderr builtins: an expression sees only the context it is given.
// libjq 1.6 headers carry no extern "C" of their own.
extern "C" {
#include <jq.h>
}

#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

#include "workflow/internal.h"

namespace venture::workflow {
namespace {

// jq's bound on nesting is the C stack; conversions in both directions stop here instead.
constexpr int kConvertDepthMax = 512;

// Shadows the builtins that reach outside the given input. Kept on one line so that jq's line
// numbers in error messages stay those of the user's program; also makes `import`/`include`
// (which must come first) a syntax error, so no module is ever read from disk.
constexpr std::string_view kPrelude =
    "{} as $ENV | def env: $ENV; def input: error(\"input is not available\"); "
    "def inputs: empty; def stderr: .; def debug: .; def input_filename: null; ";

std::string truncate(std::string s) {
  if (s.size() > limits::kErrorMessageBytesMax) {
    s.resize(limits::kErrorMessageBytesMax);
    s += "…";
  }
  return s;
}

// Takes ownership of v. A string's text, anything else as compact JSON.
std::string jv_text(jv v) {
  std::string out;
  if (jv_get_kind(v) == JV_KIND_STRING) {
    out.assign(jv_string_value(v), static_cast<std::size_t>(jv_string_length_bytes(jv_copy(v))));
    jv_free(v);
  } else {
    jv dumped = jv_dump_string(v, 0);
    out = jv_string_value(dumped);
    jv_free(dumped);
  }
  return out;
}

// One compiled program of one thread, with the sink for its error callback.
struct JqProgram {
  jq_state* state = nullptr;
  std::string errors;
  ~JqProgram() {
    if (state != nullptr) {
      jq_teardown(&state);
    }
  }
};

void collect_jq_error(void* data, jv message) {
  auto* program = static_cast<JqProgram*>(data);
  std::string text = jv_text(message);
  // jq quotes the whole program, prelude included: keep the user's part only.
  for (std::size_t at = text.find(kPrelude); at != std::string::npos; at = text.find(kPrelude)) {
    text.erase(at, kPrelude.size());
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  // One line per problem: jq's own prefix and shell hint go, the quoted source line follows ": ".
  for (std::string_view noise :
       {std::string_view("jq: error: "), std::string_view(" (Unix shell quoting issues?)")}) {
    for (std::size_t at = text.find(noise); at != std::string::npos; at = text.find(noise)) {
      text.erase(at, noise.size());
    }
  }
  for (std::size_t at = text.find('\n'); at != std::string::npos; at = text.find('\n')) {
    text.replace(at, 1, " ");
  }
  if (text.empty() ||
      (text.starts_with("jq: ") && text.find("compile error") != std::string::npos)) {
    return;  // the "jq: 1 compile error" summary adds nothing
  }
  if (program->errors.size() < limits::kErrorMessageBytesMax) {
    if (!program->errors.empty()) {
      program->errors += "; ";
    }
    program->errors += text;
  }
}

// The calling thread's compiled programs. Bounded: when full it starts over (programs are
// recompiled on demand, so this only costs time).
class ThreadPrograms {
 public:
  Result<JqProgram*> get(const std::string& text) {
    auto it = programs_.find(text);
    if (it != programs_.end()) {
      return it->second.get();
    }
    if (programs_.size() >= limits::kExpressionCacheEntriesMax) {
      programs_.clear();
    }
    auto program = std::make_unique<JqProgram>();
    program->state = jq_init();
    if (program->state == nullptr) {
      return resource_exhausted_error("jq: out of memory");
    }
    jq_set_error_cb(program->state, collect_jq_error, program.get());
    const std::string wrapped = std::string(kPrelude) + text;
    if (jq_compile(program->state, wrapped.c_str()) == 0) {
      std::string message = program->errors.empty() ? "does not compile" : program->errors;
      return invalid_argument_error("jq: " + truncate(std::move(message)));
    }
    JqProgram* raw = program.get();
    programs_.emplace(text, std::move(program));
    return raw;
  }

 private:
  std::unordered_map<std::string, std::unique_ptr<JqProgram>> programs_;
};

thread_local ThreadPrograms tls_programs;

Result<jv> to_jv(const json::value& v, int depth) {
  if (depth > kConvertDepthMax) {
    return invalid_argument_error("value nested deeper than " + std::to_string(kConvertDepthMax));
  }
  switch (v.kind()) {
    case json::kind::null:
      return jv_null();
    case json::kind::bool_:
      return jv_bool(v.get_bool() ? 1 : 0);
    case json::kind::int64:
      return jv_number(static_cast<double>(v.get_int64()));
    case json::kind::uint64:
      return jv_number(static_cast<double>(v.get_uint64()));
    case json::kind::double_:
      return jv_number(v.get_double());
    case json::kind::string: {
      const json::string& s = v.get_string();
      if (s.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        return invalid_argument_error("string too long for jq");
      }
      return jv_string_sized(s.data(), static_cast<int>(s.size()));
    }
    case json::kind::array: {
      jv out = jv_array();
      for (const json::value& e : v.get_array()) {
        Result<jv> item = to_jv(e, depth + 1);
        if (!item) {
          jv_free(out);
          return item.error();
        }
        out = jv_array_append(out, *item);
      }
      return out;
    }
    case json::kind::object: {
      jv out = jv_object();
      for (const auto& kv : v.get_object()) {
        Result<jv> item = to_jv(kv.value(), depth + 1);
        if (!item) {
          jv_free(out);
          return item.error();
        }
        jv key = jv_string_sized(kv.key().data(), static_cast<int>(kv.key().size()));
        out = jv_object_set(out, key, *item);
      }
      return out;
    }
  }
  return jv_null();
}

json::value number_to_json(double d) {
  if (std::isnan(d)) {
    return nullptr;  // JSON has no NaN; jq itself prints null
  }
  if (std::isinf(d)) {
    return d > 0 ? std::numeric_limits<double>::max() : -std::numeric_limits<double>::max();
  }
  // 2^63 is exactly representable; integral values below it become int64 so that 3 stays 3.
  if (d == std::floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
    return static_cast<int64_t>(d);
  }
  return d;
}

// Borrows v (the caller keeps ownership).
Result<json::value> from_jv(jv v, int depth) {
  if (depth > kConvertDepthMax) {
    return invalid_argument_error("jq value nested deeper than " +
                                  std::to_string(kConvertDepthMax));
  }
  switch (jv_get_kind(v)) {
    case JV_KIND_NULL:
      return json::value(nullptr);
    case JV_KIND_TRUE:
      return json::value(true);
    case JV_KIND_FALSE:
      return json::value(false);
    case JV_KIND_NUMBER:
      return number_to_json(jv_number_value(v));
    case JV_KIND_STRING:
      return json::value(json::string_view(
          jv_string_value(v), static_cast<std::size_t>(jv_string_length_bytes(jv_copy(v)))));
    case JV_KIND_ARRAY: {
      json::array out;
      const int n = jv_array_length(jv_copy(v));
      out.reserve(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) {
        jv e = jv_array_get(jv_copy(v), i);
        Result<json::value> item = from_jv(e, depth + 1);
        jv_free(e);
        VENTURE_ASSIGN_OR_RETURN(json::value value, std::move(item));
        out.push_back(std::move(value));
      }
      return json::value(std::move(out));
    }
    case JV_KIND_OBJECT: {
      json::object out;
      for (int it = jv_object_iter(v); jv_object_iter_valid(v, it);
           it = jv_object_iter_next(v, it)) {
        jv key = jv_object_iter_key(v, it);
        jv value = jv_object_iter_value(v, it);
        Result<json::value> item = from_jv(value, depth + 1);
        jv_free(value);
        std::string k = jv_text(key);
        VENTURE_ASSIGN_OR_RETURN(json::value converted, std::move(item));
        out[k] = std::move(converted);
      }
      return json::value(std::move(out));
    }
    default:
      return internal_error("unexpected jq value kind");
  }
}

// Runs program over input and collects up to max_outputs values; one more output is an error.
Result<std::vector<json::value>> run(const std::string& text, const json::value& input,
                                     std::size_t max_outputs) {
  VENTURE_ASSIGN_OR_RETURN(JqProgram * program, tls_programs.get(text));
  VENTURE_ASSIGN_OR_RETURN(jv in, to_jv(input, 0));
  jq_start(program->state, in, 0);
  std::vector<json::value> outputs;
  while (true) {
    jv out = jq_next(program->state);
    if (jv_is_valid(out)) {
      if (outputs.size() >= max_outputs) {
        jv_free(out);
        return invalid_argument_error(max_outputs == 1
                                          ? "expression yielded more than one value"
                                          : "expression yielded more than " +
                                                std::to_string(max_outputs) + " values");
      }
      Result<json::value> value = from_jv(out, 0);
      jv_free(out);
      VENTURE_ASSIGN_OR_RETURN(json::value converted, std::move(value));
      outputs.push_back(std::move(converted));
      continue;
    }
    if (jv_invalid_has_msg(jv_copy(out))) {
      return invalid_argument_error("jq: " + truncate(jv_text(jv_invalid_get_msg(out))));
    }
    jv_free(out);
    break;
  }
  if (jq_halted(program->state) != 0) {
    jv_free(jq_get_exit_code(program->state));
    jv message = jq_get_error_message(program->state);
    if (jv_is_valid(message) && jv_get_kind(message) != JV_KIND_NULL) {
      return invalid_argument_error("jq: halted: " + truncate(jv_text(message)));
    }
    jv_free(message);
  }
  return outputs;
}

struct ExprCache {
  std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<const std::string>> texts;
};

ExprCache& global_cache() {
  static ExprCache* cache = new ExprCache();  // never destroyed: usable during static teardown
  return *cache;
}

}  // namespace

Result<Expr> compile_expr(std::string_view program) {
  if (program.size() > limits::kExpressionBytesMax) {
    return invalid_argument_error("expression of " + std::to_string(program.size()) +
                                  " bytes exceeds the limit of " +
                                  std::to_string(limits::kExpressionBytesMax));
  }
  if (internal::trim(program).empty()) {
    return invalid_argument_error("expression is empty");
  }
  if (program.find('\0') != std::string_view::npos) {
    return invalid_argument_error("expression contains a NUL byte");
  }
  std::string text(program);
  ExprCache& cache = global_cache();
  Expr expr;
  {
    std::lock_guard<std::mutex> lock(cache.mu);
    auto it = cache.texts.find(text);
    if (it != cache.texts.end()) {
      expr.text_ = it->second;
      return expr;
    }
  }
  // Compiling in this thread's cache both validates and warms it for a first Eval here.
  VENTURE_RETURN_IF_ERROR(tls_programs.get(text));
  auto shared = std::make_shared<const std::string>(text);
  {
    std::lock_guard<std::mutex> lock(cache.mu);
    if (cache.texts.size() >= limits::kExpressionCacheEntriesMax) {
      cache.texts.clear();
    }
    cache.texts.emplace(std::move(text), shared);
  }
  expr.text_ = std::move(shared);
  return expr;
}

Result<json::value> Expr::eval(const json::value& input) const {
  VENTURE_CHECK(text_ != nullptr);
  VENTURE_ASSIGN_OR_RETURN(std::vector<json::value> outputs, run(*text_, input, 1));
  if (outputs.empty()) {
    return invalid_argument_error("expression yielded no value");
  }
  return std::move(outputs.front());
}

Result<std::vector<json::value>> Expr::eval_all(const json::value& input) const {
  VENTURE_CHECK(text_ != nullptr);
  return run(*text_, input, limits::kForeachItemsMax);
}

}  // namespace venture::workflow
