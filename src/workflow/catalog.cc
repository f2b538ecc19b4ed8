// The v1 node type catalog and the config schema of each type. A config value may be a `${{ }}`
// string wherever a scalar is expected: its static check is skipped and the value is only known at
// dispatch. Required fields are reported at the missing field's own path.
#include <algorithm>
#include <array>

#include "workflow/internal.h"

namespace venture::workflow {
namespace {

using internal::AddProblem;
using internal::Child;
using internal::IsDynamic;

const json::object* ConfigObject(const json::value& config, const std::string& path,
                                 Problems& problems) {
  const json::object* o = config.if_object();
  if (o == nullptr) {
    AddProblem(problems, path, "config must be an object, got " + internal::KindName(config));
  }
  return o;
}

void Require(const json::object& o, std::string_view field, const std::string& path,
             Problems& problems) {
  if (!o.contains(field)) {
    AddProblem(problems, Child(path, field), "required field is missing");
  }
}

void CheckConfigDuration(const json::value& v, const std::string& path, Problems& problems) {
  if (!IsDynamic(v)) {
    internal::CheckDuration(v, path, problems);
  }
}

void ValidateNoop(const json::value& config, const std::string& path, Problems& problems) {
  if (const json::object* o = ConfigObject(config, path, problems)) {
    internal::CheckFields(*o, path, {"output"}, problems);
  }
}

void ValidateFail(const json::value& config, const std::string& path, Problems& problems) {
  const json::object* o = ConfigObject(config, path, problems);
  if (o == nullptr) {
    return;
  }
  internal::CheckFields(*o, path, {"code", "message", "retryable"}, problems);
  for (std::string_view field : {"code", "message"}) {
    if (const json::value* v = o->if_contains(field)) {
      internal::CheckString(*v, Child(path, field), problems);
    }
  }
  if (const json::value* v = o->if_contains("retryable")) {
    internal::CheckBool(*v, Child(path, "retryable"), problems);
  }
}

void ValidateSleep(const json::value& config, const std::string& path, Problems& problems) {
  const json::object* o = ConfigObject(config, path, problems);
  if (o == nullptr) {
    return;
  }
  internal::CheckFields(*o, path, {"duration"}, problems);
  Require(*o, "duration", path, problems);
  if (const json::value* v = o->if_contains("duration")) {
    CheckConfigDuration(*v, Child(path, "duration"), problems);
  }
}

void ValidateTransform(const json::value& config, const std::string& path, Problems& problems) {
  const json::object* o = ConfigObject(config, path, problems);
  if (o == nullptr) {
    return;
  }
  internal::CheckFields(*o, path, {"expr"}, problems);
  Require(*o, "expr", path, problems);
  const json::value* v = o->if_contains("expr");
  if (v == nullptr) {
    return;
  }
  const json::string* s = v->if_string();
  if (s == nullptr) {
    AddProblem(problems, Child(path, "expr"),
               "expected a jq program string, got " + internal::KindName(*v));
    return;
  }
  Result<Expr> expr = CompileExpr(internal::ExpressionProgram(*s));
  if (!expr) {
    AddProblem(problems, Child(path, "expr"), expr.error().message);
  }
}

void CheckStatus(const json::value& v, const std::string& path, Problems& problems) {
  if (!IsDynamic(v)) {
    internal::CheckInt(v, path, 100, 599, problems);
  }
}

void CheckHttpFields(const json::object& o, const std::string& path, Problems& problems) {
  if (const json::value* v = o.if_contains("method")) {
    internal::CheckEnum(*v, Child(path, "method"),
                        {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}, problems);
  }
  if (const json::value* v = o.if_contains("url")) {
    const json::string* s = v->if_string();
    if (s == nullptr) {
      AddProblem(problems, Child(path, "url"), "expected a string, got " + internal::KindName(*v));
    } else if (!IsDynamic(*v) && !s->starts_with("http://") && !s->starts_with("https://")) {
      AddProblem(problems, Child(path, "url"), "must be an http:// or https:// URL");
    }
  }
  for (std::string_view field : {"headers", "query"}) {
    if (const json::value* v = o.if_contains(field)) {
      internal::CheckStringMap(*v, Child(path, field), problems);
    }
  }
  if (const json::value* v = o.if_contains("timeout")) {
    CheckConfigDuration(*v, Child(path, "timeout"), problems);
  }
  if (const json::value* v = o.if_contains("max_response_bytes"); v != nullptr && !IsDynamic(*v)) {
    internal::CheckInt(*v, Child(path, "max_response_bytes"), 1,
                       static_cast<int64_t>(limits::kNodeOutputBytesMax), problems);
  }
}

void ValidateHttp(const json::value& config, const std::string& path, Problems& problems) {
  const json::object* o = ConfigObject(config, path, problems);
  if (o == nullptr) {
    return;
  }
  internal::CheckFields(*o, path,
                        {"method", "url", "headers", "query", "body", "timeout", "expect_status",
                         "max_response_bytes"},
                        problems);
  Require(*o, "url", path, problems);
  CheckHttpFields(*o, path, problems);
  const json::value* expect = o->if_contains("expect_status");
  if (expect == nullptr) {
    return;
  }
  const std::string expect_path = Child(path, "expect_status");
  if (const json::array* a = expect->if_array()) {
    if (a->empty()) {
      AddProblem(problems, expect_path, "must list at least one status");
    }
    for (std::size_t i = 0; i < a->size(); ++i) {
      CheckStatus((*a)[i], Child(expect_path, i), problems);
    }
  } else {
    CheckStatus(*expect, expect_path, problems);
  }
}

void CheckApprovers(const json::value& v, const std::string& path, Problems& problems) {
  const json::object* o = v.if_object();
  if (o == nullptr) {
    AddProblem(problems, path, "expected an object {roles, users}, got " + internal::KindName(v));
    return;
  }
  internal::CheckFields(*o, path, {"roles", "users"}, problems);
  bool any = false;
  for (std::string_view field : {"roles", "users"}) {
    if (const json::value* list = o->if_contains(field)) {
      internal::CheckStringArray(*list, Child(path, field), problems);
      any |= IsDynamic(*list) || (list->is_array() && !list->get_array().empty());
    }
  }
  if (!any) {
    AddProblem(problems, path, "name at least one role or user");
  }
}

void CheckApprovalFields(const json::object& o, const std::string& path, Problems& problems) {
  for (std::string_view field : {"title", "description"}) {
    if (const json::value* v = o.if_contains(field)) {
      internal::CheckString(*v, Child(path, field), problems);
    }
  }
  if (const json::value* v = o.if_contains("approvers")) {
    CheckApprovers(*v, Child(path, "approvers"), problems);
  }
  if (const json::value* v = o.if_contains("quorum"); v != nullptr && !IsDynamic(*v)) {
    internal::CheckInt(*v, Child(path, "quorum"), 1, 1000, problems);
  }
  if (const json::value* v = o.if_contains("timeout")) {
    CheckConfigDuration(*v, Child(path, "timeout"), problems);
  }
  if (const json::value* v = o.if_contains("on_timeout")) {
    internal::CheckEnum(*v, Child(path, "on_timeout"), {"approve", "reject", "fail"}, problems);
  }
  for (std::string_view field : {"allow_self_approval", "reject_on_any"}) {
    if (const json::value* v = o.if_contains(field)) {
      internal::CheckBool(*v, Child(path, field), problems);
    }
  }
}

void ValidateApproval(const json::value& config, const std::string& path, Problems& problems) {
  const json::object* o = ConfigObject(config, path, problems);
  if (o == nullptr) {
    return;
  }
  internal::CheckFields(*o, path,
                        {"title", "description", "show", "approvers", "quorum", "timeout",
                         "on_timeout", "allow_self_approval", "reject_on_any"},
                        problems);
  Require(*o, "title", path, problems);
  Require(*o, "approvers", path, problems);
  CheckApprovalFields(*o, path, problems);
}

const std::array<NodeTypeSpec, 6>& Catalog() {
  static const std::array<NodeTypeSpec, 6> kCatalog = {{
      {"approval", Execution::kGate, false, ValidateApproval},
      {"fail", Execution::kTask, false, ValidateFail},
      {"http", Execution::kTask, false, ValidateHttp},
      {"noop", Execution::kTask, false, ValidateNoop},
      {"sleep", Execution::kTimer, false, ValidateSleep},
      {"transform", Execution::kTask, true, ValidateTransform},
  }};
  return kCatalog;
}

}  // namespace

const NodeTypeSpec* FindNodeType(std::string_view name) {
  for (const NodeTypeSpec& spec : Catalog()) {
    if (spec.name == name) {
      return &spec;
    }
  }
  return nullptr;
}

std::vector<std::string> NodeTypeNames() {
  std::vector<std::string> names;
  for (const NodeTypeSpec& spec : Catalog()) {
    names.push_back(spec.name);
  }
  return names;
}

}  // namespace venture::workflow
