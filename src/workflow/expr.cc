// jq expressions (libjq 1.6) and `${{ }}` templates.
//
// A jq_state is not thread-safe, so each thread keeps its own cache of compiled states keyed by
// program text; the process-wide cache only remembers which programs compiled (and hands out the
// shared text). Every program runs inside a small prelude that hides the process environment
// (`env`, `$ENV`) and the input/stderr builtins: an expression sees only the context it is given;
// the prelude also bounds ranges, array indexes and string/array growth. Every evaluation runs
// within a time budget (limits::kExpressionTimeDefault) enforced by one watchdog thread that
// halts runaway states; results are capped at limits::kNodeOutputBytesMax.
// libjq 1.6 headers carry no extern "C" of their own.
extern "C" {
#include <jq.h>
}

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "workflow/internal.h"

namespace venture::workflow {
namespace {

// jq's bound on nesting is the C stack; conversions in both directions stop here instead.
constexpr int kConvertDepthMax = 512;

// The sandbox prelude, prepended to every program. It shadows the builtins that reach outside
// the given input (`env`, `$ENV`, input, stderr) and `halt`/`halt_error` (only the watchdog halts
// a state: jq_halt asserts that the state is not halted yet). It bounds what jq lets a program
// allocate in one step: range counts, array indexes written (setpath and the assignments built
// on it: `=`, `|=`, `+=`, fromstream) and arrays concatenated, up to kExpressionItemsMax; strings
// built by `*` and `+`, up to kExpressionStringBytesMax. Each shadowed builtin keeps its jq 1.6
// meaning (and cartesian order) otherwise; `_venture_*` reach the originals. Kept on one line so
// that jq's line numbers in error messages stay those of the user's program; also makes
// `import`/`include` (which must come first) a syntax error, so no module is ever read from disk.
std::string make_prelude() {
  const std::string items = std::to_string(limits::kExpressionItemsMax);
  const std::string bytes = std::to_string(limits::kExpressionStringBytesMax);
  const std::string too_many = "error(\"more than " + items + " items\")";
  const std::string too_long = "error(\"a string of more than " + bytes + " bytes\")";
  // clang-format off
  return "{} as $ENV | def env: $ENV; def input: error(\"input is not available\"); "
         "def inputs: empty; def stderr: .; def debug: .; def input_filename: null; "
         "def halt: error(\"halt is not available\"); "
         "def halt_error: error(\"halt_error is not available\"); "
         "def halt_error($code): error(\"halt_error is not available\"); "
         "def _venture_plus(a; b): a + b; def _venture_multiply(a; b): a * b; "
         "def _venture_setpath(p; v): setpath(p; v); def _venture_range($f; $u): range($f; $u); "
         "def _plus(a; b): b as $b | a as $a | ($a | type) as $t | "
         "if $t == \"string\" and ($b | type) == \"string\" and "
         "_venture_plus($a | utf8bytelength; $b | utf8bytelength) > " + bytes + " then " +
         too_long + " elif $t == \"array\" and ($b | type) == \"array\" and "
         "_venture_plus($a | length; $b | length) > " + items + " then " + too_many +
         " else _venture_plus($a; $b) end; "
         "def _multiply(a; b): b as $b | a as $a | "
         "if ($a | type) == \"string\" and ($b | type) == \"number\" and "
         "_venture_multiply($a | utf8bytelength; $b) > " + bytes + " then " + too_long +
         " elif ($a | type) == \"number\" and ($b | type) == \"string\" and "
         "_venture_multiply($b | utf8bytelength; $a) > " + bytes + " then " + too_long +
         " else _venture_multiply($a; $b) end; "
         "def setpath(p; v): v as $v | p as $p | if ($p | type) == \"array\" and "
         "($p | map(select(type == \"number\" and . > " + items + ")) | length) > 0 then "
         "error(\"an array index above " + items + "\") else _venture_setpath($p; $v) end; "
         "def _assign(paths; value): value as $v | reduce path(paths) as $p (.; setpath($p; $v)); "
         "def _modify(paths; update): reduce path(paths) as $p (.; label $out | "
         "(setpath($p; getpath($p) | update) | ., break $out), delpaths([$p])); "
         "def fromstream(f): { x: null, e: false } as $init | foreach f as $i ($init; "
         "if .e then $init else . end | if $i | length == 2 then "
         "setpath([\"e\"]; $i[0] | length == 0) | setpath([\"x\"] + $i[0]; $i[1]) "
         "else setpath([\"e\"]; $i[0] | length == 1) end; if .e then .x else empty end); "
         "def range($f; $u): if ($f | type) == \"number\" and ($u | type) == \"number\" and "
         "$u - $f > " + items + " then " + too_many + " else _venture_range($f; $u) end; "
         "def range($n): range(0; $n); "
         "def range($f; $u; $by): if ($f | type) == \"number\" and ($u | type) == \"number\" "
         "and ($by | type) == \"number\" and $by != 0 and ($u - $f) / $by > " + items +
         " then " + too_many + " elif $by > 0 then $f | while(. < $u; . + $by) "
         "elif $by < 0 then $f | while(. > $u; . + $by) else empty end; ";
  // clang-format on
}

const std::string& prelude() {
  static const std::string* text = new std::string(make_prelude());  // never destroyed
  return *text;
}

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
  const std::string& sandbox = prelude();
  for (std::size_t at = text.find(sandbox); at != std::string::npos; at = text.find(sandbox)) {
    text.erase(at, sandbox.size());
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

// The time budget of evaluations. One thread per process (started on first use, never stopped)
// watches every evaluation in progress: an evaluation arms it with its jq_state before jq_next and
// disarms it after. When an armed evaluation passes its deadline the watchdog calls jq_halt on its
// state from this thread: jq 1.6 checks `halted` at the top of its interpreter loop, so the
// evaluation's jq_next returns (an invalid value) at its next instruction. Builtins implemented in
// C are not interrupted; the prelude bounds the ones that could run long or allocate much.
//
// Safety: the watchdog touches a state only under mu_ and only while it is armed; disarm takes
// mu_, so once it returns the state is the evaluator's alone (and is discarded if it was halted:
// a halted state is never run again). Arming does not wake the watchdog unless the new deadline
// comes before its planned wake-up, so a fast evaluation costs two uncontended lock operations.
class Watchdog {
 public:
  static Watchdog& instance() {
    static Watchdog* watchdog = new Watchdog();  // never destroyed: its thread outlives main
    return *watchdog;
  }

  uint64_t arm(jq_state* state, Millis budget) {
    std::lock_guard lock(mu_);
    const uint64_t ticket = next_ticket_++;
    const int64_t deadline = clock_.monotonic_ns() + budget.count() * 1'000'000;
    entries_.emplace(ticket, Entry{state, deadline, false});
    if (deadline < wake_ns_) {
      cv_.notify_one();
    }
    return ticket;
  }

  // True if the watchdog halted the state (the evaluation ran out of time).
  bool disarm(uint64_t ticket) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(ticket);
    VENTURE_CHECK(it != entries_.end());
    const bool halted = it->second.halted;
    entries_.erase(it);
    return halted;
  }

 private:
  struct Entry {
    jq_state* state;
    int64_t deadline_ns;
    bool halted;
  };

  Watchdog() : thread_([this] { loop(); }) {}

  void loop() {
    std::unique_lock lock(mu_);
    while (true) {
      const int64_t now = clock_.monotonic_ns();
      // With nothing armed, sleep one default budget: anything armed meanwhile with at least
      // that budget is due no earlier than this wake-up.
      int64_t next = now + limits::kExpressionTimeDefault.count() * 1'000'000;
      for (auto& [ticket, entry] : entries_) {
        if (entry.halted) {
          continue;
        }
        if (entry.deadline_ns <= now) {
          jq_halt(entry.state, jv_invalid(), jv_string("time limit"));
          entry.halted = true;
        } else {
          next = std::min(next, entry.deadline_ns);
        }
      }
      wake_ns_ = next;
      cv_.wait_for(lock, std::chrono::nanoseconds(next - now));
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Entry> entries_;
  uint64_t next_ticket_ = 1;
  int64_t wake_ns_ = 0;  // when the watchdog wakes next (monotonic ns)
  base::RealClock clock_;
  std::jthread thread_;  // last: started once the members above exist
};

// Arms the watchdog for one evaluation; disarms on destruction unless disarm() was called.
class Armed {
 public:
  Armed(jq_state* state, Millis budget) : ticket_(Watchdog::instance().arm(state, budget)) {}
  ~Armed() {
    if (ticket_ != 0) {
      (void)Watchdog::instance().disarm(ticket_);
    }
  }
  Armed(const Armed&) = delete;
  Armed& operator=(const Armed&) = delete;
  // True if the evaluation was halted for running out of time.
  bool disarm() {
    const bool halted = Watchdog::instance().disarm(ticket_);
    ticket_ = 0;
    return halted;
  }

 private:
  uint64_t ticket_;
};

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
    const std::string wrapped = prelude() + text;
    if (jq_compile(program->state, wrapped.c_str()) == 0) {
      std::string message = program->errors.empty() ? "does not compile" : program->errors;
      return invalid_argument_error("jq: " + truncate(std::move(message)));
    }
    JqProgram* raw = program.get();
    programs_.emplace(text, std::move(program));
    return raw;
  }
  // Forgets (and tears down) a program whose state must not run again (a halted one).
  void discard(const std::string& text) { programs_.erase(text); }

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

// Borrows v (the caller keeps ownership). `budget` is what is left of the bytes that the results
// of one evaluation may take (about their compact JSON size); running out is an error.
Result<json::value> from_jv(jv v, int depth, std::size_t& budget) {
  if (depth > kConvertDepthMax) {
    return invalid_argument_error("jq value nested deeper than " +
                                  std::to_string(kConvertDepthMax));
  }
  std::size_t cost = 8;
  if (jv_get_kind(v) == JV_KIND_STRING) {
    cost += static_cast<std::size_t>(jv_string_length_bytes(jv_copy(v)));
  }
  if (cost > budget) {
    return resource_exhausted_error("expression result exceeds " +
                                    std::to_string(limits::kNodeOutputBytesMax) + " bytes");
  }
  budget -= cost;
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
        Result<json::value> item = from_jv(e, depth + 1, budget);
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
        Result<json::value> item = from_jv(value, depth + 1, budget);
        jv_free(value);
        std::string k = jv_text(key);
        if (k.size() > budget) {
          return resource_exhausted_error("expression result exceeds " +
                                          std::to_string(limits::kNodeOutputBytesMax) + " bytes");
        }
        budget -= k.size();
        VENTURE_ASSIGN_OR_RETURN(json::value converted, std::move(item));
        out[k] = std::move(converted);
      }
      return json::value(std::move(out));
    }
    default:
      return internal_error("unexpected jq value kind");
  }
}

// Pulls up to max_outputs values from a started state; one more output is an error.
Status collect(jq_state* state, std::size_t max_outputs, std::vector<json::value>& outputs) {
  std::size_t budget = limits::kNodeOutputBytesMax;
  while (true) {
    jv out = jq_next(state);
    if (jv_is_valid(out)) {
      if (outputs.size() >= max_outputs) {
        jv_free(out);
        return invalid_argument_error(max_outputs == 1
                                          ? "expression yielded more than one value"
                                          : "expression yielded more than " +
                                                std::to_string(max_outputs) + " values");
      }
      Result<json::value> value = from_jv(out, 0, budget);
      jv_free(out);
      VENTURE_ASSIGN_OR_RETURN(json::value converted, std::move(value));
      outputs.push_back(std::move(converted));
      continue;
    }
    if (jv_invalid_has_msg(jv_copy(out))) {
      return invalid_argument_error("jq: " + truncate(jv_text(jv_invalid_get_msg(out))));
    }
    jv_free(out);
    return ok();
  }
}

// Runs program over input within the time budget and collects up to max_outputs values.
Result<std::vector<json::value>> run(const std::string& text, const json::value& input,
                                     std::size_t max_outputs) {
  VENTURE_ASSIGN_OR_RETURN(JqProgram * program, tls_programs.get(text));
  VENTURE_ASSIGN_OR_RETURN(jv in, to_jv(input, 0));
  const Millis budget = limits::kExpressionTimeDefault;
  std::vector<json::value> outputs;
  Status status;
  bool timed_out = false;
  {
    Armed armed(program->state, budget);
    jq_start(program->state, in, 0);
    status = collect(program->state, max_outputs, outputs);
    timed_out = armed.disarm();
  }
  if (timed_out) {
    tls_programs.discard(text);  // halted: never run this state again
    return resource_exhausted_error("expression exceeded its time limit of " +
                                    format_duration(budget));
  }
  VENTURE_RETURN_IF_ERROR(status);
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
