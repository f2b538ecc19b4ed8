// The OpenAPI 3.1 document, built from the route table so the two cannot drift; the schemas of
// the bodies are written out here (and checked against real answers by the integration test).
#include <cctype>

#include "api/app.h"

namespace venture::api {
namespace {

json::object schema_ref(std::string_view name) {
  return json::object{{"$ref", "#/components/schemas/" + std::string(name)}};
}

json::object obj(json::object properties, json::array required = {}) {
  json::object o{{"type", "object"}, {"properties", std::move(properties)}};
  if (!required.empty()) o["required"] = std::move(required);
  return o;
}

json::object str() { return json::object{{"type", "string"}}; }
json::object nullable_str() { return json::object{{"type", json::array{"string", "null"}}}; }
json::object integer() { return json::object{{"type", "integer"}}; }
json::object boolean() { return json::object{{"type", "boolean"}}; }
json::object any() { return json::object{}; }
json::object list_of(std::string_view item) {
  return obj({{"items", json::object{{"type", "array"}, {"items", schema_ref(item)}}},
              {"next_cursor", nullable_str()}},
             {"items", "next_cursor"});
}

json::object schemas() {
  json::object s;
  s["Problem"] = obj({{"type", str()},
                      {"title", str()},
                      {"status", integer()},
                      {"detail", str()},
                      {"errors", json::object{{"type", "array"},
                                              {"items", obj({{"path", str()},
                                                             {"message", str()}},
                                                            {"path", "message"})}}}},
                     {"type", "title", "status"});
  s["Status"] = obj({{"status", str()}}, {"status"});
  s["Health"] = obj({{"status", json::object{{"enum", json::array{"ok", "degraded", "down"}}}},
                     {"timestamp", str()},
                     {"version", str()},
                     {"uptime_s", integer()},
                     {"dependencies", json::object{{"type", "object"}}}},
                    {"status", "timestamp", "version", "uptime_s", "dependencies"});
  s["Definition"] = obj({{"name", str()}, {"nodes", json::object{{"type", "array"}}}},
                        {"name", "nodes"});
  s["Registered"] = obj({{"name", str()},
                         {"version", str()},
                         {"tags", json::object{{"type", "array"}, {"items", str()}}}},
                        {"name", "version", "tags"});
  s["WorkflowSummary"] = obj({{"name", str()},
                              {"version", str()},
                              {"versions", integer()},
                              {"tags", json::object{{"type", "object"}}},
                              {"created_at", nullable_str()}},
                             {"name", "version", "tags"});
  s["WorkflowList"] = list_of("WorkflowSummary");
  s["Workflow"] = obj({{"name", str()},
                       {"version", str()},
                       {"tags", json::object{{"type", "array"}, {"items", str()}}},
                       {"created_at", str()},
                       {"definition", schema_ref("Definition")}},
                      {"name", "version", "tags", "definition"});
  s["VersionSummary"] = obj({{"version", str()},
                             {"created_at", str()},
                             {"tags", json::object{{"type", "array"}, {"items", str()}}}},
                            {"version", "created_at", "tags"});
  s["VersionList"] = list_of("VersionSummary");
  s["TagMove"] = obj({{"version", str()}}, {"version"});
  s["Tag"] = obj({{"name", str()}, {"tag", str()}, {"version", str()}}, {"name", "tag", "version"});
  s["RunStart"] = obj({{"workflow", str()},
                       {"definition", schema_ref("Definition")},
                       {"inputs", json::object{{"type", "object"}}}});
  s["RunStarted"] = obj({{"id", str()},
                         {"status", str()},
                         {"workflow", str()},
                         {"version", str()},
                         {"replay_of", nullable_str()}},
                        {"id", "status", "workflow", "version"});
  s["RunSummary"] = obj({{"id", str()},
                         {"workflow", str()},
                         {"version", str()},
                         {"status", str()},
                         {"created_at", str()},
                         {"updated_at", str()},
                         {"replay_of", nullable_str()}},
                        {"id", "workflow", "version", "status"});
  s["RunList"] = list_of("RunSummary");
  s["Node"] = obj({{"status", str()},
                   {"outcome", nullable_str()},
                   {"attempts", integer()},
                   {"output", any()},
                   {"error", any()},
                   {"started_at", nullable_str()},
                   {"finished_at", nullable_str()}},
                  {"status", "attempts"});
  json::object run = s["RunSummary"].as_object();
  run["properties"].as_object()["inputs"] = json::object{{"type", "object"}};
  run["properties"].as_object()["output"] = any();
  run["properties"].as_object()["error"] = any();
  run["properties"].as_object()["nodes"] =
      json::object{{"type", "object"}, {"additionalProperties", schema_ref("Node")}};
  run["required"].as_array().emplace_back("nodes");
  s["Run"] = std::move(run);
  s["RunStatus"] = obj({{"id", str()}, {"status", str()}}, {"id", "status"});
  s["Event"] = obj({{"seq", integer()},
                    {"id", str()},
                    {"type", str()},
                    {"time", str()},
                    {"run", nullable_str()},
                    {"node", nullable_str()},
                    {"data", json::object{{"type", "object"}}},
                    {"prev", str()},
                    {"hash", str()}},
                   {"seq", "id", "type", "time", "data", "prev", "hash"});
  s["EventList"] = list_of("Event");
  s["Reason"] = obj({{"reason", str()}});
  s["Replay"] = obj({{"from_node", str()}}, {"from_node"});
  s["PatchRequest"] = obj({{"ops", json::object{{"type", "array"}}},
                           {"reason", str()},
                           {"review", boolean()}},
                          {"ops"});
  s["PatchCreated"] = obj({{"id", str()}, {"status", str()}, {"version", nullable_str()}},
                          {"id", "status"});
  s["Patch"] = obj({{"id", str()},
                    {"run", str()},
                    {"status", json::object{{"enum", json::array{"pending_approval", "applied",
                                                                 "rejected"}}}},
                    {"ops", json::object{{"type", "array"}}},
                    {"reason", str()},
                    {"proposed_by", str()},
                    {"created_at", str()},
                    {"updated_at", str()},
                    {"decided_by", nullable_str()},
                    {"decision_reason", nullable_str()},
                    {"version", nullable_str()},
                    {"error", any()}},
                   {"id", "run", "status", "ops"});
  s["PatchList"] = list_of("Patch");
  s["ApprovalDecision"] =
      obj({{"decision", json::object{{"enum", json::array{"approve", "reject"}}}},
           {"comment", str()}},
          {"decision"});
  s["Approval"] = obj({{"id", str()},
                       {"run", str()},
                       {"node", str()},
                       {"index", any()},
                       {"iteration", json::object{{"type", "integer"}}},
                       {"status", json::object{{"enum", json::array{"pending", "approved",
                                                                    "rejected", "timed_out",
                                                                    "cancelled"}}}},
                       {"title", str()},
                       {"description", str()},
                       {"show", any()},
                       {"approvers", json::object{{"type", "object"}}},
                       {"quorum", json::object{{"type", "integer"}}},
                       {"reject_on_any", boolean()},
                       {"allow_self_approval", boolean()},
                       {"on_timeout", str()},
                       {"started_by", str()},
                       {"due_at", nullable_str()},
                       {"created_at", str()},
                       {"updated_at", str()},
                       {"decisions", json::object{{"type", "array"}}}},
                      {"id", "run", "node", "status", "decisions"});
  s["ApprovalList"] = list_of("Approval");
  s["Control"] = obj({{"frozen", boolean()}, {"reason", nullable_str()}, {"since", nullable_str()}},
                     {"frozen"});
  s["TokenCreate"] = obj({{"name", str()},
                          {"role", json::object{{"enum", json::array{"admin", "operator",
                                                                     "approver", "viewer",
                                                                     "agent"}}}}},
                         {"name", "role"});
  s["TokenCreated"] = obj({{"id", str()},
                           {"name", str()},
                           {"role", str()},
                           {"token", str()},
                           {"created_at", str()}},
                          {"id", "name", "role", "token"});
  s["TokenSummary"] = obj({{"id", str()},
                           {"name", str()},
                           {"role", str()},
                           {"created_at", str()},
                           {"revoked", boolean()},
                           {"revoked_at", nullable_str()}},
                          {"id", "name", "role", "revoked"});
  s["TokenList"] = list_of("TokenSummary");
  s["Verify"] = obj({{"ok", boolean()},
                     {"events", integer()},
                     {"checkpoints", integer()},
                     {"first_bad_seq", json::object{{"type", json::array{"integer", "null"}}}},
                     {"reason", nullable_str()}},
                    {"ok", "events", "checkpoints"});
  s["Trail"] = obj({{"run", str()}, {"items", json::object{{"type", "array"},
                                                           {"items", schema_ref("Event")}}}},
                   {"run", "items"});
  return s;
}

json::object problem_response(std::string_view description) {
  return json::object{
      {"description", description},
      {"content", json::object{{"application/problem+json",
                                json::object{{"schema", schema_ref("Problem")}}}}}};
}

}  // namespace

json::object App::openapi() const {
  json::object paths;
  for (const Route& route : routes_) {
    json::object op;
    std::string op_id;
    for (char c : route.method) op_id.push_back(static_cast<char>(std::tolower(c)));
    for (char c : route.pattern) {
      op_id.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
    }
    op["operationId"] = op_id;
    op["summary"] = json::string(route.summary);
    json::array parameters;
    for (std::size_t at = route.pattern.find('{'); at != std::string::npos;
         at = route.pattern.find('{', at + 1)) {
      const auto end = route.pattern.find('}', at);
      parameters.push_back(json::object{{"name", route.pattern.substr(at + 1, end - at - 1)},
                                        {"in", "path"},
                                        {"required", true},
                                        {"schema", str()}});
    }
    if (!parameters.empty()) op["parameters"] = std::move(parameters);
    if (!route.request_schema.empty()) {
      json::object media;
      media["schema"] = schema_ref(route.request_schema);
      json::object content;
      content["application/json"] = std::move(media);
      json::object body;
      body["required"] = route.request_schema != "Reason";
      body["content"] = std::move(content);
      op["requestBody"] = std::move(body);
    }
    json::object responses;
    json::object ok;
    ok["description"] = route.summary;
    if (!route.response_schema.empty()) {
      ok["content"] = json::object{
          {"application/json", json::object{{"schema", schema_ref(route.response_schema)}}}};
    } else if (route.pattern == "/metrics") {
      ok["content"] = json::object{{"text/plain", json::object{{"schema", str()}}}};
    }
    if (route.streams && route.success_status == 200) {
      ok["content"].as_object()["text/event-stream"] = json::object{{"schema", str()}};
    }
    responses[std::to_string(route.success_status)] = std::move(ok);
    if (route.roles != kNoAuth) {
      responses["401"] = problem_response("no or an invalid token");
      responses["403"] = problem_response("the token's role may not call this");
    } else {
      op["security"] = json::array{};
    }
    if (route.pattern.find('{') != std::string::npos) {
      responses["404"] = problem_response("no such resource");
    }
    if (route.method != "GET") {
      responses["400"] = problem_response("malformed request");
      responses["409"] = problem_response("not applicable in the current state");
      responses["422"] = problem_response("invalid content, with errors[] paths");
    }
    if (route.pattern == "/v1/runs" && route.method == "POST") {
      responses["429"] = problem_response("rate limited (Retry-After)");
      op["parameters"] = json::array{json::object{{"name", "Idempotency-Key"},
                                                  {"in", "header"},
                                                  {"required", false},
                                                  {"schema", str()}}};
    }
    op["responses"] = std::move(responses);
    if (!paths.contains(route.pattern)) paths[route.pattern] = json::object{};
    std::string method;
    for (char c : route.method) method.push_back(static_cast<char>(std::tolower(c)));
    paths[route.pattern].as_object()[method] = std::move(op);
  }
  return json::object{
      {"openapi", "3.1.0"},
      {"info", json::object{{"title", "Venture API"}, {"version", kVersion}}},
      {"servers", json::array{json::object{{"url", "/"}}}},
      {"security", json::array{json::object{{"bearer", json::array{}}}}},
      {"paths", std::move(paths)},
      {"components",
       json::object{{"schemas", schemas()},
                    {"securitySchemes",
                     json::object{{"bearer", json::object{{"type", "http"},
                                                          {"scheme", "bearer"}}}}}}}};
}

}  // namespace venture::api
