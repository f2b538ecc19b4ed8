// The application: the route table, auth and role checks, and the meta endpoints. Handlers of
// the resources are in handlers_*.cc.
#include "api/app.h"

#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

namespace venture::api {
namespace {

constexpr std::string_view kProblemBase = "https://venture.dev/problems/";

std::string_view status_title(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 503:
      return "Service Unavailable";
    default:
      return status >= 500 ? "Internal Server Error" : "Error";
  }
}

std::string_view status_slug(int status) {
  switch (status) {
    case 400:
      return "bad-request";
    case 401:
      return "unauthenticated";
    case 403:
      return "forbidden";
    case 404:
      return "not-found";
    case 405:
      return "method-not-allowed";
    case 409:
      return "conflict";
    case 415:
      return "unsupported-media-type";
    case 422:
      return "validation";
    case 429:
      return "rate-limited";
    case 503:
      return "unavailable";
    default:
      return "error";
  }
}

// Splits "/v1/runs/x" into {"v1","runs","x"}; empty segments are kept so "//" does not match.
std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path[0] != '/') return out;
  path.remove_prefix(1);
  while (true) {
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool match(const std::vector<std::string>& parts, const std::vector<std::string_view>& path,
           std::vector<std::string>& params) {
  if (parts.size() != path.size()) return false;
  params.clear();
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (!parts[i].empty() && parts[i].front() == '{') {
      if (path[i].empty()) return false;
      params.emplace_back(path[i]);
    } else if (parts[i] != path[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<std::string> HttpRequest::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return std::nullopt;
}

std::optional<std::string> HttpRequest::param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return std::nullopt;
}

Result<Role> parse_role(std::string_view name) {
  if (name == "admin") return kAdmin;
  if (name == "operator") return kOperator;
  if (name == "approver") return kApprover;
  if (name == "viewer") return kViewer;
  if (name == "agent") return kAgent;
  return invalid_argument_error("role must be one of admin, operator, approver, viewer, agent");
}

std::string_view role_name(Role role) {
  switch (role) {
    case kAdmin:
      return "admin";
    case kOperator:
      return "operator";
    case kApprover:
      return "approver";
    case kViewer:
      return "viewer";
    case kAgent:
      return "agent";
  }
  return "viewer";
}

HttpResponse json_response(int status, const json::value& body) {
  HttpResponse r;
  r.status = status;
  r.body = json::serialize(body);
  return r;
}

HttpResponse problem_response(const Problem& p) {
  json::object o;
  o["type"] =
      std::string(kProblemBase) + (p.type.empty() ? std::string(status_slug(p.status)) : p.type);
  o["title"] = status_title(p.status);
  o["status"] = p.status;
  o["detail"] = p.detail;
  json::array errors;
  for (const auto& e : p.errors) {
    errors.push_back(json::object{{"path", e.path}, {"message", e.message}});
  }
  o["errors"] = std::move(errors);
  HttpResponse r = json_response(p.status, o);
  r.content_type = "application/problem+json";
  r.headers = p.headers;
  return r;
}

Problem problem_from(const Error& e, workflow::Problems errors) {
  Problem p;
  p.detail = e.message;
  p.errors = std::move(errors);
  switch (e.code) {
    case Code::kInvalidArgument:
      p.status = 422;
      break;
    case Code::kNotFound:
      p.status = 404;
      break;
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition:
    case Code::kAborted:
      p.status = 409;
      break;
    case Code::kPermissionDenied:
      p.status = 403;
      break;
    case Code::kUnauthenticated:
      p.status = 401;
      break;
    case Code::kResourceExhausted:
      p.status = 429;
      break;
    case Code::kUnavailable:
    case Code::kDeadlineExceeded:
    case Code::kCancelled:
      p.status = 503;
      break;
    default:
      p.status = 500;
      break;
  }
  if (p.status == 422 && p.errors.empty()) p.errors.push_back({"", e.message});
  return p;
}

Outcome respond(int status, const json::value& body) {
  Outcome o;
  o.response = json_response(status, body);
  return o;
}

Outcome respond(const Problem& p) {
  Outcome o;
  o.response = problem_response(p);
  return o;
}

Result<json::object> parse_body(const HttpRequest& r, Problem& problem) {
  problem.status = 400;
  if (auto ct = r.header("content-type"); ct && !ct->empty() &&
                                          ct->find("json") == std::string::npos &&
                                          ct->find("x-www-form-urlencoded") == std::string::npos) {
    // (curl -d sends x-www-form-urlencoded; its body is still the JSON the user typed.)
    problem.status = 415;
    problem.detail = "the body must be JSON (Content-Type: application/json)";
    return invalid_argument_error(problem.detail);
  }
  if (r.body.empty()) return json::object{};
  auto v = base::parse_json(r.body);
  if (!v) {
    problem.detail = "the body is not valid JSON: " + v.error().message;
    problem.errors.push_back({"", v.error().message});
    return invalid_argument_error(problem.detail);
  }
  if (!v->is_object()) {
    problem.detail = "the body must be a JSON object";
    problem.errors.push_back({"", "expected an object"});
    return invalid_argument_error(problem.detail);
  }
  return std::move(v->as_object());
}

std::optional<std::size_t> parse_limit(const HttpRequest& r, std::size_t fallback, Problem& p) {
  const auto text = r.param("limit");
  if (!text) return fallback;
  std::size_t n = 0;
  const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
  if (ec != std::errc() || ptr != text->data() + text->size() || n < 1 ||
      n > limits::kListLimitMax) {
    p.status = 400;
    p.detail = "limit must be an integer from 1 to " + std::to_string(limits::kListLimitMax);
    p.errors.push_back({"/query/limit", p.detail});
    return std::nullopt;
  }
  return n;
}

json::value time_or_null(const std::optional<Time>& t) {
  if (!t) return nullptr;
  return json::value(format_time(*t));
}

App::App(AppDeps deps, const ApiOptions& options)
    : deps_(deps), options_(options), tokens_(deps.store, deps.bus, deps.clock, deps.random) {
  constexpr unsigned kOps = kAdmin | kOperator;
  constexpr unsigned kReview = kAdmin | kApprover;
  constexpr unsigned kStart = kOps | kAgent;
  constexpr unsigned kRunReaders = kReaders | kAgent;
  // Who may reach the decide endpoint; the approval's own approvers list decides who may vote.
  constexpr unsigned kDecide = kAdmin | kOperator | kApprover;
  // clang-format off
  routes_ = {
    {"GET", "/livez", kNoAuth, &App::livez, "Liveness", "", "Status", 200},
    {"GET", "/readyz", kNoAuth, &App::readyz, "Readiness", "", "Status", 200},
    {"GET", "/health", kNoAuth, &App::health, "Health with dependency states", "", "Health", 200},
    {"GET", "/metrics", kReaders, &App::metrics, "Prometheus metrics", "", "", 200},
    {"GET", "/openapi.json", kReaders, &App::openapi_doc, "This document", "", "", 200},
    {"POST", "/v1/workflows", kOps, &App::register_workflow, "Register a workflow definition",
     "Definition", "Registered", 201},
    {"GET", "/v1/workflows", kRunReaders, &App::list_workflows, "List workflows", "",
     "WorkflowList", 200},
    {"GET", "/v1/workflows/{name}", kRunReaders, &App::get_workflow,
     "A workflow version (?version= or ?tag=, default latest)", "", "Workflow", 200},
    {"GET", "/v1/workflows/{name}/versions", kRunReaders, &App::list_versions,
     "Versions of a workflow, newest first", "", "VersionList", 200},
    {"PUT", "/v1/workflows/{name}/tags/{tag}", kOps, &App::move_tag, "Move a tag to a version",
     "TagMove", "Tag", 200},
    {"POST", "/v1/runs", kStart, &App::start_run, "Start a run (Idempotency-Key honoured)",
     "RunStart", "RunStarted", 201, false, &App::start_run_async},
    {"GET", "/v1/runs", kRunReaders, &App::list_runs, "List runs (?status=&workflow=)", "",
     "RunList", 200},
    {"GET", "/v1/runs/{id}", kRunReaders, &App::get_run, "A run with its nodes", "", "Run", 200},
    {"GET", "/v1/runs/{id}/events", kRunReaders, &App::run_events,
     "A run's events (?after=&limit=); SSE with Accept: text/event-stream", "", "EventList",
     200, true},
    {"GET", "/v1/runs/{id}/ws", kRunReaders, &App::run_ws,
     "A run's events over WebSocket from ?after=", "", "", 101, true},
    {"GET", "/v1/events", kReaders, &App::all_events,
     "All events (?type= prefix, ?run=); SSE with Accept: text/event-stream", "", "EventList",
     200, true},
    {"GET", "/v1/events/ws", kReaders, &App::all_events_ws,
     "All events over WebSocket (?type=, ?run=, ?after=)", "", "", 101, true},
    {"POST", "/v1/runs/{id}/cancel", kOps, &App::cancel_run, "Cancel a run", "Reason",
     "RunStatus", 200},
    {"POST", "/v1/runs/{id}/pause", kOps, &App::pause_run, "Pause a run", "Reason", "RunStatus",
     200},
    {"POST", "/v1/runs/{id}/resume", kOps, &App::resume_run, "Resume a run", "Reason",
     "RunStatus", 200},
    {"POST", "/v1/runs/{id}/replay", kOps, &App::replay_run,
     "A new run reusing the outputs of nodes not downstream of from_node", "Replay",
     "RunStarted", 201},
    {"POST", "/v1/runs/{id}/patches", kStart, &App::propose_patch,
     "Patch the running graph (RFC 6902)", "PatchRequest", "PatchCreated", 201},
    {"GET", "/v1/runs/{id}/patches", kRunReaders, &App::list_patches, "A run's patches", "",
     "PatchList", 200},
    {"GET", "/v1/patches/{id}", kRunReaders, &App::get_patch, "A patch", "", "Patch", 200},
    {"POST", "/v1/patches/{id}/approve", kReview, &App::approve_patch,
     "Approve a pending patch", "Reason", "Patch", 200},
    {"POST", "/v1/patches/{id}/reject", kReview, &App::reject_patch, "Reject a pending patch",
     "Reason", "Patch", 200},
    {"GET", "/v1/approvals", kReaders, &App::list_approvals,
     "List approvals (?status=&run=), newest first", "", "ApprovalList", 200},
    {"GET", "/v1/approvals/{id}", kReaders, &App::get_approval, "An approval with its decisions",
     "", "Approval", 200},
    {"POST", "/v1/approvals/{id}/decide", kDecide, &App::decide_approval,
     "Approve or reject (403 unless among the approval's approvers; 409 once decided)",
     "ApprovalDecision", "Approval", 200},
    {"GET", "/approve/{token}", kNoAuth, &App::link_page,
     "An approval link's confirmation page (HTML; shows, never decides)", "", "", 200},
    {"POST", "/approve/{token}", kNoAuth, &App::link_decide,
     "Record a decision from the link's page (HTML form)", "", "", 200},
    {"GET", "/v1/control", kReaders, &App::get_control, "The global freeze state", "",
     "Control", 200},
    {"POST", "/v1/control/freeze", kAdmin, &App::freeze,
     "Freeze: no task is dispatched and no run starts", "Reason", "Control", 200},
    {"POST", "/v1/control/unfreeze", kAdmin, &App::unfreeze, "Unfreeze", "", "Control", 200},
    {"POST", "/v1/tokens", kAdmin, &App::create_token, "Create an API token (secret shown once)",
     "TokenCreate", "TokenCreated", 201},
    {"GET", "/v1/tokens", kAdmin, &App::list_tokens, "List API tokens", "", "TokenList", 200},
    {"DELETE", "/v1/tokens/{id}", kAdmin, &App::revoke_token, "Revoke an API token", "", "",
     204},
    {"GET", "/v1/audit/verify", kReaders, &App::audit_verify,
     "Verify the hash chain and the signed checkpoints", "", "Verify", 200},
    {"GET", "/v1/audit/runs/{id}", kReaders, &App::audit_run, "A run's trail with hashes", "",
     "Trail", 200},
  };
  // clang-format on
  for (Route& route : routes_) {
    for (std::string_view part : segments(route.pattern)) route.parts.emplace_back(part);
  }
}

Status App::start() {
  started_ = deps_.clock.now();
  VENTURE_ASSIGN_OR_RETURN(limiter_, new_limiter(options_, deps_.clock));
  deps_.metrics.add_collector([&engine = deps_.engine] {
    const engine::EngineStats s = engine.stats();
    std::string out;
    append_metric(out, "venture_engine_steps_total", "counter", "Engine steps (one commit each).",
                  static_cast<double>(s.steps));
    append_metric(out, "venture_engine_appends_total", "counter", "Appends made by the engine.",
                  static_cast<double>(s.appends));
    append_metric(out, "venture_events_appended_total", "counter", "Events the engine appended.",
                  static_cast<double>(s.events));
    append_metric(out, "venture_runs_active", "gauge", "Runs the engine holds in memory.",
                  static_cast<double>(s.active_runs));
    append_metric(out, "venture_frozen", "gauge", "1 while the global freeze holds.",
                  engine.frozen() ? 1 : 0);
    return out;
  });
  VENTURE_RETURN_IF_ERROR(tokens_.watch());
  return tokens_.load();
}

Status App::ensure_admin() { return tokens_.ensure_admin(options_.data_dir); }

const Route* App::find_route(const HttpRequest& request, std::vector<std::string>& params,
                             Principal& principal, Outcome& early) {
  const auto path = segments(request.path);
  const Route* found = nullptr;
  bool path_known = false;
  for (const Route& route : routes_) {
    if (!match(route.parts, path, params)) continue;
    path_known = true;
    if (route.method == request.method) {
      found = &route;
      break;
    }
  }
  if (found != nullptr && !options_.serve_api && found->pattern != "/livez" &&
      found->pattern != "/readyz" && found->pattern != "/health" && found->pattern != "/metrics") {
    // `--services` without api: this process answers only its probes and metrics.
    Problem p;
    p.status = 404;
    p.detail = "this process does not serve the API (--services " + options_.services +
               "); use a process started with --services api";
    early = respond(p);
    early.route = "unmatched";
    return nullptr;
  }
  if (found == nullptr) {
    Problem p;
    p.status = path_known ? 405 : 404;
    p.detail = path_known ? request.method + " is not allowed on " + request.path
                          : "no route for " + request.path;
    early = respond(p);
    early.route = "unmatched";
    return nullptr;
  }
  if (found->roles == kNoAuth) return found;
  const auto auth = request.header("authorization");
  std::optional<Principal> who;
  // The scheme is case-insensitive (RFC 9110 §11.1).
  if (auth && auth->size() > 7) {
    std::string scheme = auth->substr(0, 7);
    for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view secret = std::string_view(*auth).substr(7);
    while (!secret.empty() && secret.front() == ' ') secret.remove_prefix(1);
    while (!secret.empty() && secret.back() == ' ') secret.remove_suffix(1);
    if (scheme == "bearer ") who = tokens_.authenticate(secret);
  }
  if (!who) {
    Problem p;
    p.status = 401;
    p.detail = auth ? "the token is not valid (unknown or revoked)"
                    : "an Authorization: Bearer <token> header is required";
    p.headers.emplace_back("WWW-Authenticate", "Bearer");
    early = respond(p);
    early.route = found->pattern;
    return nullptr;
  }
  if ((found->roles & who->role) == 0) {
    Problem p;
    p.status = 403;
    p.detail = "the role " + std::string(role_name(who->role)) + " may not " + request.method +
               " " + found->pattern;
    early = respond(p);
    early.route = found->pattern;
    return nullptr;
  }
  principal = std::move(*who);
  return found;
}

Outcome App::handle(const HttpRequest& request) {
  std::vector<std::string> params;
  Principal principal;
  Outcome early;
  const Route* found = find_route(request, params, principal, early);
  if (found == nullptr) return early;
  Outcome o = (this->*(found->handler))(request, principal, params);
  o.route = found->pattern;
  return o;
}

void App::handle_async(const HttpRequest& request, Reply reply) {
  std::vector<std::string> params;
  Principal principal;
  Outcome early;
  const Route* found = find_route(request, params, principal, early);
  if (found == nullptr) {
    reply(std::move(early));
    return;
  }
  if (found->async == nullptr) {
    Outcome o = (this->*(found->handler))(request, principal, params);
    o.route = found->pattern;
    reply(std::move(o));
    return;
  }
  Reply labelled = [reply = std::move(reply), route = found->pattern](Outcome o) {
    o.route = route;
    reply(std::move(o));
  };
  (this->*(found->async))(request, principal, labelled);
}

Outcome App::livez(const HttpRequest&, const Principal&, const std::vector<std::string>&) {
  return respond(200, json::object{{"status", "ok"}});
}

Outcome App::readyz(const HttpRequest&, const Principal&, const std::vector<std::string>&) {
  if (!ready_) {
    Problem p;
    p.status = 503;
    p.detail = "not ready (starting or shutting down)";
    return respond(p);
  }
  return respond(200, json::object{{"status", "ok"}});
}

Outcome App::health(const HttpRequest&, const Principal&, const std::vector<std::string>&) {
  // A dependency that is down degrades the service (200: the process is alive and recovers when
  // the dependency does; readiness is /readyz); only an engine that is not running (starting or
  // shutting down) makes it down (503), so a load balancer can act on it.
  json::object deps;
  bool degraded = false;
  const auto entry = [&](std::string_view name, const Status& state) {
    deps[name] = state ? json::object{{"status", "ok"}}
                       : json::object{{"status", "down"}, {"error", state.error().message}};
    if (!state) degraded = true;
  };
  entry("store", deps_.store.health());
  entry("bus", deps_.bus.health());
  if (limiter_) {
    if (auto redis = limiter_->health()) entry("redis", *redis);
  }
  const auto stats = deps_.engine.stats();
  deps["engine"] = json::object{{"status", ready_ ? "ok" : "down"},
                                {"frozen", deps_.engine.frozen()},
                                {"active_runs", stats.active_runs},
                                {"owned_partitions", deps_.engine.owned_partitions().size()},
                                {"forwarded", stats.forwarded}};
  if (options_.health_dependencies) {
    for (auto& [k, v] : options_.health_dependencies()) deps[k] = v;
  }
  const std::string_view status = !ready_ ? "down" : degraded ? "degraded" : "ok";
  const auto now = deps_.clock.now();
  json::object body{
      {"status", status},
      {"timestamp", format_time(now)},
      {"version", kVersion},
      {"uptime_s", std::chrono::duration_cast<std::chrono::seconds>(now - started_).count()},
      {"dependencies", std::move(deps)}};
  return respond(status == "down" ? 503 : 200, body);
}

Outcome App::metrics(const HttpRequest&, const Principal&, const std::vector<std::string>&) {
  Outcome o;
  o.response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  o.response.body = deps_.metrics.render();
  return o;
}

Outcome App::openapi_doc(const HttpRequest&, const Principal&, const std::vector<std::string>&) {
  return respond(200, openapi());
}

}  // namespace venture::api
