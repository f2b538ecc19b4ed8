// The v1 node type catalog and the config schema of each type. A config value may be a `${{ }}`
// string wherever a scalar is expected: its static check is skipped and the value is only known at
// dispatch. Required fields are reported at the missing field's own path.
#include <algorithm>
#include <array>

#include "workflow/internal.h"

namespace venture::workflow {
namespace {

using internal::add_problem;
using internal::child;
using internal::is_dynamic;

const json::object* config_object(const json::value& config, const std::string& path,
                                  Problems& problems) {
  const json::object* o = config.if_object();
  if (o == nullptr) {
    add_problem(problems, path, "config must be an object, got " + internal::kind_name(config));
  }
  return o;
}

void require(const json::object& o, std::string_view field, const std::string& path,
             Problems& problems) {
  if (!o.contains(field)) {
    add_problem(problems, child(path, field), "required field is missing");
  }
}

void check_config_duration(const json::value& v, const std::string& path, Problems& problems) {
  if (!is_dynamic(v)) {
    internal::check_duration(v, path, problems);
  }
}

void validate_noop(const json::value& config, const std::string& path, Problems& problems) {
  if (const json::object* o = config_object(config, path, problems)) {
    internal::check_fields(*o, path, {"output"}, problems);
  }
}

void validate_fail(const json::value& config, const std::string& path, Problems& problems) {
  const json::object* o = config_object(config, path, problems);
  if (o == nullptr) {
    return;
  }
  internal::check_fields(*o, path, {"code", "message", "retryable"}, problems);
  for (std::string_view field : {"code", "message"}) {
    if (const json::value* v = o->if_contains(field)) {
      internal::check_string(*v, child(path, field), problems);
    }
  }
  if (const json::value* v = o->if_contains("retryable")) {
    internal::check_bool(*v, child(path, "retryable"), problems);
  }
}

void validate_sleep(const json::value& config, const std::string& path, Problems& problems) {
  const json::object* o = config_object(config, path, problems);
  if (o == nullptr) {
    return;
  }
  internal::check_fields(*o, path, {"duration"}, problems);
  require(*o, "duration", path, problems);
  if (const json::value* v = o->if_contains("duration")) {
    check_config_duration(*v, child(path, "duration"), problems);
  }
}

void validate_transform(const json::value& config, const std::string& path, Problems& problems) {
  const json::object* o = config_object(config, path, problems);
  if (o == nullptr) {
    return;
  }
  internal::check_fields(*o, path, {"expr"}, problems);
  require(*o, "expr", path, problems);
  const json::value* v = o->if_contains("expr");
  if (v == nullptr) {
    return;
  }
  const json::string* s = v->if_string();
  if (s == nullptr) {
    add_problem(problems, child(path, "expr"),
                "expected a jq program string, got " + internal::kind_name(*v));
    return;
  }
  Result<Expr> expr = compile_expr(internal::expression_program(*s));
  if (!expr) {
    add_problem(problems, child(path, "expr"), expr.error().message);
  }
}

void check_status(const json::value& v, const std::string& path, Problems& problems) {
  if (!is_dynamic(v)) {
    internal::check_int(v, path, 100, 599, problems);
  }
}

// Query parameters: a value is a scalar (sent as text) or a list of scalars (the name repeats).
void check_query(const json::value& v, const std::string& path, Problems& problems) {
  if (is_dynamic(v)) {
    return;
  }
  const json::object* o = v.if_object();
  if (o == nullptr) {
    add_problem(problems, path, "expected an object of parameters, got " + internal::kind_name(v));
    return;
  }
  auto scalar = [](const json::value& x) { return x.is_string() || x.is_number() || x.is_bool(); };
  for (const auto& kv : *o) {
    const json::value& value = kv.value();
    const json::array* list = value.if_array();
    const bool ok =
        scalar(value) || (list != nullptr && std::all_of(list->begin(), list->end(), scalar));
    if (!ok) {
      add_problem(problems, child(path, kv.key()),
                  "expected a string, number, boolean or a list of them, got " +
                      internal::kind_name(value));
    }
  }
}

void check_http_fields(const json::object& o, const std::string& path, Problems& problems) {
  if (const json::value* v = o.if_contains("method")) {
    internal::check_enum(*v, child(path, "method"),
                         {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}, problems);
  }
  if (const json::value* v = o.if_contains("url")) {
    const json::string* s = v->if_string();
    if (s == nullptr) {
      add_problem(problems, child(path, "url"),
                  "expected a string, got " + internal::kind_name(*v));
    } else if (!is_dynamic(*v) && !s->starts_with("http://") && !s->starts_with("https://")) {
      add_problem(problems, child(path, "url"), "must be an http:// or https:// URL");
    }
  }
  if (const json::value* v = o.if_contains("headers")) {
    internal::check_string_map(*v, child(path, "headers"), problems);
  }
  if (const json::value* v = o.if_contains("query")) {
    check_query(*v, child(path, "query"), problems);
  }
  if (const json::value* v = o.if_contains("timeout"); v != nullptr && !is_dynamic(*v)) {
    const auto d = internal::check_duration(*v, child(path, "timeout"), problems);
    if (d && *d > limits::kEgressTimeoutMax) {
      add_problem(problems, child(path, "timeout"),
                  "at most " + format_duration(limits::kEgressTimeoutMax) + " per request");
    }
  }
  if (const json::value* v = o.if_contains("max_response_bytes"); v != nullptr && !is_dynamic(*v)) {
    internal::check_int(*v, child(path, "max_response_bytes"), 1,
                        static_cast<int64_t>(limits::kNodeOutputBytesMax), problems);
  }
}

void validate_http(const json::value& config, const std::string& path, Problems& problems) {
  const json::object* o = config_object(config, path, problems);
  if (o == nullptr) {
    return;
  }
  internal::check_fields(*o, path,
                         {"method", "url", "headers", "query", "body", "timeout", "expect_status",
                          "max_response_bytes"},
                         problems);
  require(*o, "url", path, problems);
  check_http_fields(*o, path, problems);
  const json::value* expect = o->if_contains("expect_status");
  if (expect == nullptr) {
    return;
  }
  const std::string expect_path = child(path, "expect_status");
  if (const json::array* a = expect->if_array()) {
    if (a->empty()) {
      add_problem(problems, expect_path, "must list at least one status");
    }
    for (std::size_t i = 0; i < a->size(); ++i) {
      check_status((*a)[i], child(expect_path, i), problems);
    }
  } else {
    check_status(*expect, expect_path, problems);
  }
}

void check_approvers(const json::value& v, const std::string& path, Problems& problems) {
  const json::object* o = v.if_object();
  if (o == nullptr) {
    add_problem(problems, path, "expected an object {roles, users}, got " + internal::kind_name(v));
    return;
  }
  internal::check_fields(*o, path, {"roles", "users"}, problems);
  bool any = false;
  for (std::string_view field : {"roles", "users"}) {
    if (const json::value* list = o->if_contains(field)) {
      internal::check_string_array(*list, child(path, field), problems);
      any |= is_dynamic(*list) || (list->is_array() && !list->get_array().empty());
    }
  }
  // A misspelt role would leave nobody able to decide.
  if (const json::value* roles = o->if_contains("roles"); roles != nullptr && roles->is_array()) {
    const json::array& list = roles->get_array();
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (list[i].is_string() && !is_dynamic(list[i])) {
        internal::check_enum(list[i], child(child(path, "roles"), i),
                             {"admin", "operator", "approver", "viewer", "agent"}, problems);
      }
    }
  }
  if (!any) {
    add_problem(problems, path, "name at least one role or user");
  }
}

void check_approval_fields(const json::object& o, const std::string& path, Problems& problems) {
  for (std::string_view field : {"title", "description"}) {
    if (const json::value* v = o.if_contains(field)) {
      internal::check_string(*v, child(path, field), problems);
    }
  }
  if (const json::value* v = o.if_contains("approvers")) {
    check_approvers(*v, child(path, "approvers"), problems);
  }
  if (const json::value* v = o.if_contains("quorum"); v != nullptr && !is_dynamic(*v)) {
    internal::check_int(*v, child(path, "quorum"), 1, 1000, problems);
  }
  if (const json::value* v = o.if_contains("timeout")) {
    check_config_duration(*v, child(path, "timeout"), problems);
  }
  if (const json::value* v = o.if_contains("on_timeout")) {
    internal::check_enum(*v, child(path, "on_timeout"), {"approve", "reject", "fail"}, problems);
  }
  for (std::string_view field : {"allow_self_approval", "reject_on_any"}) {
    if (const json::value* v = o.if_contains(field)) {
      internal::check_bool(*v, child(path, field), problems);
    }
  }
}

void validate_approval(const json::value& config, const std::string& path, Problems& problems) {
  const json::object* o = config_object(config, path, problems);
  if (o == nullptr) {
    return;
  }
  internal::check_fields(*o, path,
                         {"title", "description", "show", "approvers", "quorum", "timeout",
                          "on_timeout", "allow_self_approval", "reject_on_any"},
                         problems);
  require(*o, "title", path, problems);
  require(*o, "approvers", path, problems);
  check_approval_fields(*o, path, problems);
  // A quorum larger than the people who may decide can never be reached.
  const json::object* who = base::find_object(*o, "approvers");
  const json::value* quorum = o->if_contains("quorum");
  const json::array* roles = who != nullptr ? base::find_array(*who, "roles") : nullptr;
  const bool no_roles = who != nullptr && (!who->contains("roles") || (roles && roles->empty()));
  if (no_roles && quorum != nullptr && quorum->is_int64()) {
    const json::array* users = base::find_array(*who, "users");
    if (users != nullptr && quorum->get_int64() > static_cast<int64_t>(users->size())) {
      add_problem(problems, child(path, "quorum"),
                  "quorum " + std::to_string(quorum->get_int64()) + " can never be reached by " +
                      std::to_string(users->size()) + " named user(s)");
    }
  }
}

const std::array<NodeTypeSpec, 6>& catalog() {
  static const std::array<NodeTypeSpec, 6> kCatalog = {{
      {"approval", Execution::kGate, false, validate_approval},
      {"fail", Execution::kTask, false, validate_fail},
      {"http", Execution::kTask, false, validate_http},
      {"noop", Execution::kTask, false, validate_noop},
      {"sleep", Execution::kTimer, false, validate_sleep},
      {"transform", Execution::kTask, true, validate_transform},
  }};
  return kCatalog;
}

}  // namespace

const NodeTypeSpec* find_node_type(std::string_view name) {
  for (const NodeTypeSpec& spec : catalog()) {
    if (spec.name == name) {
      return &spec;
    }
  }
  return nullptr;
}

std::vector<std::string> node_type_names() {
  std::vector<std::string> names;
  for (const NodeTypeSpec& spec : catalog()) {
    names.push_back(spec.name);
  }
  return names;
}

}  // namespace venture::workflow
