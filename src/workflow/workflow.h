// workflow: the definition format of SPEC §1. Parsing (JSON and YAML), validation with a JSON
// Pointer path and a plain message per problem, jq expressions (libjq) compiled once and cached,
// `${{ }}` templates, compilation to an immutable IR, the content-hash version, the catalog of node
// types, run-input validation (JSON Schema draft-07 subset), RFC 6902 JSON Patch and RFC 6901 JSON
// Pointer.
//
// Key types: Ir (a compiled definition; immutable, shared), Expr (a compiled jq program), Template
// (a config value with `${{ }}` placeholders), Problem (path + message).
//
// Threading: everything is thread-safe. Expr::eval uses a per-thread jq state cache, so concurrent
// evaluation needs no lock of its own; one process-wide watchdog thread enforces the time budget.
// Pure: nothing here performs I/O or reads the clock, except that watchdog's deadline.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/base.h"

namespace venture::workflow {

// One validation problem: a JSON Pointer into the document ("/nodes/2/needs/0") and a message.
struct Problem {
  std::string path;
  std::string message;
  friend bool operator==(const Problem&, const Problem&) = default;
};
using Problems = std::vector<Problem>;

// A compiled jq program. Copyable and cheap (shared). Evaluation yields exactly one value: a
// program that yields none or several is an error (kInvalidArgument), as is a jq runtime error
// (including the sandbox's bounds on ranges, array indexes and string sizes). An evaluation that
// runs past limits::kExpressionTimeDefault, or whose results exceed limits::kNodeOutputBytesMax,
// fails with kResourceExhausted ("expression exceeded its time limit of 1s").
class Expr {
 public:
  Expr() = default;
  const std::string& text() const { return *text_; }
  bool empty() const { return text_ == nullptr; }
  [[nodiscard]] Result<json::value> eval(const json::value& input) const;
  // Like Eval, but every output; bounded by limits::kForeachItemsMax outputs.
  [[nodiscard]] Result<std::vector<json::value>> eval_all(const json::value& input) const;

 private:
  friend Result<Expr> compile_expr(std::string_view program);
  std::shared_ptr<const std::string> text_;
};

// Compiles a jq program (cached by text; limits::kExpressionCacheEntriesMax entries).
// kInvalidArgument with jq's message when it does not compile.
[[nodiscard]] Result<Expr> compile_expr(std::string_view program);

// If text is exactly "${{ program }}" (surrounding whitespace allowed) returns program.
std::optional<std::string_view> standalone_expression(std::string_view text);

// A JSON value in which strings may contain `${{ expr }}`: a string that is exactly one placeholder
// yields the expression's JSON value; placeholders embedded in text are interpolated as strings
// (strings verbatim, other values as compact JSON).
class Template {
 public:
  Template() = default;
  // Compiles every placeholder; problems are reported under `path`.
  static Template compile(const json::value& value, const std::string& path, Problems& problems);
  // A template that is returned as-is.
  static Template literal(json::value value);
  bool is_static() const { return compiled_ == nullptr; }
  const json::value& raw() const { return raw_; }
  [[nodiscard]] Result<json::value> render(const json::value& context) const;

 private:
  // Private representation: the implementer of workflow/ may change these members freely.
  struct Compiled;
  json::value raw_;
  std::shared_ptr<const Compiled> compiled_;  // null iff the template has no placeholders
};

enum class Join { kAll, kAny };
enum class OnFailure { kFail, kContinue };

struct RetryPolicy {
  int max_attempts = 1;  // 1 = no retry; <= limits::kAttemptsMax
  Millis initial_interval{1000};
  double backoff_coefficient = 2.0;  // >= 1
  Millis max_interval{300000};
  double jitter = 0.0;  // fraction in [0, 1]: the delay is scaled by a factor in [1 - j, 1 + j]
  std::vector<std::string> non_retryable;  // error codes that are never retried
};

struct RepeatPolicy {
  Expr until;               // over {output, iteration, ...context}; true stops
  int max_iterations = 10;  // <= limits::kRepeatIterationsMax
  Millis interval{0};
};

// Flags of a node type that the engine needs.
enum class Execution {
  kTask,   // dispatched to a worker through the bus (noop, fail, transform, http)
  kTimer,  // carried out by the engine as a durable timer (sleep)
  kGate,   // waits for an external decision (approval)
};

struct NodeTypeSpec {
  std::string name;
  Execution execution = Execution::kTask;
  bool needs_context = false;  // the task carries the expression context (transform)
  // Validates the config object; problems are reported under path ("/nodes/3/config").
  void (*validate_config)(const json::value& config, const std::string& path,
                          Problems& problems) = nullptr;
};

// The v1 catalog: noop, fail, sleep, transform, http, approval. nullptr when unknown.
const NodeTypeSpec* find_node_type(std::string_view name);
std::vector<std::string> node_type_names();

struct Node {
  std::string id;
  std::string type;
  const NodeTypeSpec* spec = nullptr;
  std::vector<int> needs;  // indexes into Ir::nodes
  Join join = Join::kAll;
  std::optional<Expr> if_expr;
  std::optional<Expr> foreach;
  std::size_t max_parallel = 0;  // 0 = unbounded (foreach only)
  std::optional<RepeatPolicy> repeat;
  RetryPolicy retry;
  Millis timeout = limits::kTimeoutDefault;  // per attempt
  OnFailure on_failure = OnFailure::kFail;
  Template config;  // `${{ }}` rendered at dispatch (transform's `expr` is left raw)
};

// A compiled, validated definition. Immutable; share it.
struct Ir {
  std::string name;
  std::string version;        // "b2:…" of the canonical definition
  json::value definition;     // the definition as registered
  json::value inputs_schema;  // null when absent
  std::vector<Node> nodes;    // in definition order
  std::vector<int> topo_order;
  std::vector<std::vector<int>> dependents;    // reverse of needs
  std::unordered_map<std::string, int> index;  // id -> position
  std::optional<Template> output;
  int index_of(std::string_view id) const;  // -1 if absent
};

// Parses text as JSON (first non-space character '{') or YAML. Problems carry "" or a pointer and
// "line L, column C: …". Over limits::kDefinitionBytesMax is a problem, not a crash.
[[nodiscard]] Result<json::value> parse_document(std::string_view text, Problems& problems);

// Validates and compiles. Returns nullptr with every problem found when invalid.
std::shared_ptr<const Ir> compile(const json::value& definition, Problems& problems);

// "b2:" + hex BLAKE2b-256 of the canonical JSON.
std::string version_of(const json::value& definition);

// Validates run inputs against the Ir's inputs schema (draft-07 subset: type, enum, const,
// properties, required, additionalProperties, items, min/max(Length|Items|imum), exclusive*,
// multipleOf, pattern, allOf/anyOf/oneOf/not, $ref to #/definitions). Problems are reported under
// "/inputs…".
void validate_inputs(const Ir& ir, const json::value& inputs, Problems& problems);

// RFC 6901. Errors: kInvalidArgument (malformed pointer), kNotFound (no such location).
[[nodiscard]] Result<const json::value*> resolve_pointer(const json::value& doc,
                                                         std::string_view pointer);

// RFC 6902: applies every op to a copy of doc, atomically. Errors name the op: "/3: path
// '/nodes/9' does not exist" (kInvalidArgument) or a failed `test` (kFailedPrecondition).
[[nodiscard]] Result<json::value> apply_patch(const json::value& doc, const json::value& ops);

// Tag names: [a-z0-9][a-z0-9._-]{0,62}. Workflow names: the same pattern (SPEC §1).
bool is_valid_tag_name(std::string_view tag);
bool is_valid_workflow_name(std::string_view name);

// "did you mean 'fetch'?" helper: the closest candidate within edit distance 2, or "".
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace venture::workflow
