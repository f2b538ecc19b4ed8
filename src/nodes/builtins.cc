// The built-in executors.
#include "nodes/nodes.h"
#include "workflow/workflow.h"

namespace venture::nodes {
namespace {

// noop: outputs config.output (already rendered by the engine) or null.
class Noop final : public Executor {
 public:
  void execute(const engine::Dispatch& task, std::function<void(Outcome)> done) override {
    const json::object* cfg = task.config.if_object();
    const json::value* out = cfg ? cfg->if_contains("output") : nullptr;
    done(Outcome::success(out ? *out : json::value()));
  }
};

// fail: always fails with config.code / message / retryable (defaults: "failed", "", true).
class Fail final : public Executor {
 public:
  void execute(const engine::Dispatch& task, std::function<void(Outcome)> done) override {
    const json::object* cfg = task.config.if_object();
    std::string code = cfg ? base::string_or(*cfg, "code", "failed") : "failed";
    std::string message = cfg ? base::string_or(*cfg, "message", "") : "";
    const json::value* r = cfg ? cfg->if_contains("retryable") : nullptr;
    const bool retryable = r == nullptr || !r->is_bool() || r->get_bool();
    if (message.empty()) message = "the fail node failed on purpose";
    done(Outcome::failure(std::move(code), std::move(message), retryable));
  }
};

// transform: evaluates config.expr (a jq program) over the task's context.
class Transform final : public Executor {
 public:
  void execute(const engine::Dispatch& task, std::function<void(Outcome)> done) override {
    const json::object* cfg = task.config.if_object();
    const json::string* expr = cfg ? base::find_string(*cfg, "expr") : nullptr;
    if (expr == nullptr) {
      done(Outcome::failure("invalid_config", "transform needs config.expr", false));
      return;
    }
    std::string_view program = *expr;
    if (auto inner = workflow::standalone_expression(program)) program = *inner;
    auto compiled = workflow::compile_expr(program);
    if (!compiled) {
      done(Outcome::failure("expression_error", compiled.error().message, false));
      return;
    }
    auto out = compiled->eval(task.context);
    if (!out) {
      done(Outcome::failure("expression_error", out.error().message, false));
      return;
    }
    done(Outcome::success(std::move(*out)));
  }
};

}  // namespace

Outcome Outcome::success(json::value output) {
  Outcome o;
  o.output = std::move(output);
  return o;
}

Outcome Outcome::failure(std::string code, std::string message, bool retryable) {
  Outcome o;
  o.ok = false;
  o.error_code = std::move(code);
  o.error_message = std::move(message);
  o.retryable = retryable;
  return o;
}

Status Registry::add(std::string type, std::unique_ptr<Executor> executor) {
  if (executors_.contains(type)) {
    return already_exists_error("node type '" + type + "' has an executor already");
  }
  executors_.emplace(std::move(type), std::move(executor));
  return ok();
}

Executor* Registry::find(std::string_view type) const {
  auto it = executors_.find(type);
  return it == executors_.end() ? nullptr : it->second.get();
}

std::vector<std::string> Registry::types() const {
  std::vector<std::string> out;
  for (const auto& [type, _] : executors_) out.push_back(type);
  return out;
}

void register_builtins(Registry& registry) {
  // Registering the built-ins twice is a bug in the composition root.
  VENTURE_CHECK(registry.add("noop", std::make_unique<Noop>()));
  VENTURE_CHECK(registry.add("fail", std::make_unique<Fail>()));
  VENTURE_CHECK(registry.add("transform", std::make_unique<Transform>()));
}

}  // namespace venture::nodes
