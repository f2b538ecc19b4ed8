// Runs: start (idempotent, rate limited), list, detail, events (JSON, SSE, WebSocket), operator
// controls, replay; and patches with review.
#include <charconv>

#include "api/app.h"

namespace venture::api {
namespace {

json::object run_summary(const storage::RunRow& r) {
  return json::object{
      {"id", r.id},
      {"workflow", r.workflow},
      {"version", r.version},
      {"status", r.status},
      {"created_at", format_time(r.created)},
      {"updated_at", format_time(r.updated)},
      {"replay_of", r.replay_of.empty() ? json::value(nullptr) : json::value(r.replay_of)}};
}

json::object patch_json(const storage::PatchRow& p) {
  auto or_null = [](const std::string& s) {
    return s.empty() ? json::value(nullptr) : json::value(s);
  };
  return json::object{{"id", p.id},
                      {"run", p.run},
                      {"status", p.status},
                      {"ops", p.ops},
                      {"reason", p.reason},
                      {"proposed_by", p.proposed_by},
                      {"created_at", format_time(p.created)},
                      {"updated_at", format_time(p.updated)},
                      {"decided_by", or_null(p.decided_by)},
                      {"decision_reason", or_null(p.decision_reason)},
                      {"version", or_null(p.version)},
                      {"error", p.error}};
}

// ?after= / Last-Event-ID: a non-negative sequence number.
std::optional<int64_t> parse_seq(const std::optional<std::string>& text, Problem& p,
                                 std::string_view where) {
  if (!text || text->empty()) return 0;
  int64_t n = 0;
  const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
  if (ec != std::errc() || ptr != text->data() + text->size() || n < 0) {
    p.status = 400;
    p.detail = std::string(where) + " must be a non-negative event sequence number";
    p.errors.push_back({std::string(where), p.detail});
    return std::nullopt;
  }
  return n;
}

bool wants_sse(const HttpRequest& r) {
  const auto accept = r.header("accept");
  return accept && accept->find("text/event-stream") != std::string::npos;
}

// Agent nodes decide the rate-limit tier (SPEC's seed: 0, 1–2, more).
int count_agent_nodes(const json::value& definition) {
  const auto* o = definition.if_object();
  const json::array* nodes = o ? base::find_array(*o, "nodes") : nullptr;
  if (nodes == nullptr) return 0;
  int n = 0;
  for (const auto& node : *nodes) {
    if (const auto* no = node.if_object(); no && base::string_or(*no, "type", "") == "agent") ++n;
  }
  return n;
}

}  // namespace

std::optional<Outcome> App::prepare_start(const HttpRequest& r, const Principal& who,
                                          engine::StartRequest& req) {
  Problem p;
  auto body = parse_body(r, p);
  if (!body) return respond(p);
  req.by = who.name;
  const json::string* ref = base::find_string(*body, "workflow");
  const json::value* def = body->if_contains("definition");
  if ((ref == nullptr) == (def == nullptr)) {
    p.status = 422;
    p.detail = "give exactly one of workflow (\"name[@tag|@version]\") or definition";
    p.errors.push_back({ref == nullptr ? "/workflow" : "/definition", p.detail});
    return respond(p);
  }
  if (const json::value* w = body->if_contains("workflow"); w && !w->is_string()) {
    p.status = 422;
    p.detail = "workflow must be a string";
    p.errors.push_back({"/workflow", p.detail});
    return respond(p);
  }
  if (ref != nullptr) req.workflow = std::string(*ref);
  if (def != nullptr) req.definition = *def;
  if (const json::value* in = body->if_contains("inputs"); in && !in->is_null()) {
    if (!in->is_object()) {
      p.status = 422;
      p.detail = "inputs must be an object";
      p.errors.push_back({"/inputs", p.detail});
      return respond(p);
    }
    req.inputs = *in;
  }
  // The tier comes from the definition that will run (a reference is resolved through the
  // store; an unknown one is reported by the engine below).
  int agents = 0;
  if (def != nullptr) {
    agents = count_agent_nodes(*def);
  } else {
    agents = agent_nodes_of(req.workflow);
  }
  if (auto refused = check_rate_limit(*limiter_, who.token_id, agents)) return respond(*refused);
  if (auto key = r.header("idempotency-key"); key && !key->empty()) {
    if (key->size() > 255) {
      p.status = 400;
      p.detail = "Idempotency-Key is longer than 255 characters";
      p.errors.push_back({"/headers/idempotency-key", p.detail});
      return respond(p);
    }
    req.idempotency_key = who.token_id + ":" + *key;
    req.body_hash = base::b2(base::blake2b(base::canonical_json(*body)));
  }
  return std::nullopt;
}

namespace {

Outcome started_answer(const engine::StartResponse& started) {
  return respond(started.existing ? 200 : 201, json::object{{"id", started.id},
                                                            {"status", started.status},
                                                            {"workflow", started.workflow},
                                                            {"version", started.version}});
}

}  // namespace

Outcome App::start_run(const HttpRequest& r, const Principal& who,
                       const std::vector<std::string>&) {
  engine::StartRequest req;
  if (auto early = prepare_start(r, who, req)) return std::move(*early);
  workflow::Problems problems;
  auto started = deps_.engine.start_run(std::move(req), problems);
  if (!started) return respond(problem_from(started.error(), std::move(problems)));
  return started_answer(*started);
}

// The same as start_run, answered from the engine's callback after the group commit (on the
// engine thread: it only builds the small answer and posts it to the connection).
void App::start_run_async(const HttpRequest& r, const Principal& who, Reply& reply) {
  engine::StartRequest req;
  if (auto early = prepare_start(r, who, req)) {
    reply(std::move(*early));
    return;
  }
  workflow::Problems problems;
  Status queued = deps_.engine.start_run_async(
      std::move(req), problems, [reply](Result<engine::StartResponse> started) {
        reply(started ? started_answer(*started) : respond(problem_from(started.error())));
      });
  if (!queued) reply(respond(problem_from(queued.error(), std::move(problems))));
}

int App::agent_nodes_of(const std::string& ref) {
  {
    std::lock_guard lock(agents_mu_);
    if (auto it = agents_by_ref_.find(ref); it != agents_by_ref_.end()) {
      if (deps_.clock.now() - it->second.second < std::chrono::seconds(5)) return it->second.first;
    }
  }
  const auto at = ref.find('@');
  const std::string name = ref.substr(0, at);
  std::string selector = at == std::string::npos ? "latest" : ref.substr(at + 1);
  std::string version = selector;
  if (!selector.starts_with("b2:")) {
    auto tags = deps_.store.list_tags(name);
    if (!tags) return 0;
    version.clear();
    for (const auto& t : *tags) {
      if (t.tag == selector) version = t.version;
    }
  }
  auto row = deps_.store.get_workflow_version(name, version);
  const int n = row ? count_agent_nodes(row->definition) : 0;
  std::lock_guard lock(agents_mu_);
  if (agents_by_ref_.size() > limits::kRateLimitBucketsMax) agents_by_ref_.clear();
  agents_by_ref_[ref] = {n, deps_.clock.now()};
  return n;
}

Outcome App::list_runs(const HttpRequest& r, const Principal&, const std::vector<std::string>&) {
  Problem p;
  const auto limit = parse_limit(r, 100, p);
  if (!limit) return respond(p);
  storage::RunFilter f;
  f.status = r.param("status").value_or("");
  f.workflow = r.param("workflow").value_or("");
  f.cursor = r.param("cursor").value_or("");
  f.limit = *limit;
  static constexpr std::string_view kStatuses[] = {"queued",    "running", "paused",   "waiting",
                                                   "succeeded", "failed",  "cancelled"};
  if (!f.status.empty() &&
      std::find(std::begin(kStatuses), std::end(kStatuses), f.status) == std::end(kStatuses)) {
    p.status = 400;
    p.detail =
        "status must be one of queued, running, paused, waiting, succeeded, failed, "
        "cancelled";
    p.errors.push_back({"/query/status", p.detail});
    return respond(p);
  }
  auto page = deps_.store.list_runs(f);
  if (!page) {
    if (page.error().code == Code::kInvalidArgument) {
      p.status = 400;
      p.detail = "cursor is not valid: " + page.error().message;
      p.errors.push_back({"/query/cursor", p.detail});
      return respond(p);
    }
    return respond(problem_from(page.error()));
  }
  json::array items;
  for (const auto& run : page->items) items.push_back(run_summary(run));
  return respond(200, json::object{{"items", std::move(items)},
                                   {"next_cursor", page->next_cursor.empty()
                                                       ? json::value(nullptr)
                                                       : json::value(page->next_cursor)}});
}

Outcome App::get_run(const HttpRequest&, const Principal&, const std::vector<std::string>& params) {
  auto run = deps_.store.get_run(params[0]);
  if (!run) return respond(problem_from(run.error()));
  auto nodes = deps_.store.get_nodes(params[0]);
  if (!nodes) return respond(problem_from(nodes.error()));
  json::object o = run_summary(*run);
  o["inputs"] = run->inputs;
  o["output"] = run->output;
  o["error"] = run->error;
  o["last_seq"] = run->last_seq;
  json::object node_map;
  for (const auto& n : *nodes) {
    node_map[n.node] =
        json::object{{"status", n.status},
                     {"outcome", n.outcome.empty() ? json::value(nullptr) : json::value(n.outcome)},
                     {"attempts", n.attempts},
                     {"output", n.output},
                     {"error", n.error},
                     {"started_at", time_or_null(n.started)},
                     {"finished_at", time_or_null(n.finished)}};
  }
  o["nodes"] = std::move(node_map);
  return respond(200, o);
}

// The JSON page of events, or a stream (SSE when asked by Accept, WebSocket on /ws routes).
Result<Outcome> App::events_stream(const HttpRequest& r, const std::string& run, bool websocket) {
  Problem p;
  auto after = parse_seq(r.param("after"), p, "/query/after");
  if (!after) return respond(p);
  const bool sse = !websocket && wants_sse(r);
  if (sse && !r.param("after")) {
    after = parse_seq(r.header("last-event-id"), p, "/headers/last-event-id");
    if (!after) return respond(p);
  }
  std::string run_filter = run;
  if (run.empty()) run_filter = r.param("run").value_or("");
  const std::string type_prefix = r.param("type").value_or("");
  if (!run.empty()) {
    auto row = deps_.store.get_run(run);
    if (!row) return respond(problem_from(row.error()));
  }
  if (websocket || sse) {
    if (websocket && !r.websocket_upgrade) {
      p.status = 400;
      p.detail =
          "this endpoint needs a WebSocket upgrade (Connection: Upgrade, Upgrade: "
          "websocket)";
      return respond(p);
    }
    StreamSpec spec;
    spec.after_seq = *after;
    spec.run = run_filter;
    spec.type_prefix = type_prefix;
    spec.end_after_terminal = !run.empty();
    Outcome o;
    if (websocket) {
      o.websocket = spec;
    } else {
      o.sse = spec;
    }
    return o;
  }
  const auto limit = parse_limit(r, limits::kListLimitMax, p);
  if (!limit) return respond(p);
  storage::EventFilter f;
  f.after_seq = *after;
  f.limit = *limit;
  f.run = run_filter;
  f.type_prefix = type_prefix;
  VENTURE_ASSIGN_OR_RETURN(auto events, deps_.store.read_events(f));
  json::array items;
  for (const auto& e : events) items.push_back(storage::event_to_json(e));
  json::value next = nullptr;
  if (events.size() == *limit) next = std::to_string(events.back().seq);
  return respond(200, json::object{{"items", std::move(items)}, {"next_cursor", next}});
}

Outcome App::run_events(const HttpRequest& r, const Principal&,
                        const std::vector<std::string>& params) {
  auto o = events_stream(r, params[0], false);
  return o ? std::move(*o) : respond(problem_from(o.error()));
}

Outcome App::run_ws(const HttpRequest& r, const Principal&,
                    const std::vector<std::string>& params) {
  auto o = events_stream(r, params[0], true);
  return o ? std::move(*o) : respond(problem_from(o.error()));
}

Outcome App::all_events(const HttpRequest& r, const Principal&, const std::vector<std::string>&) {
  auto o = events_stream(r, "", false);
  return o ? std::move(*o) : respond(problem_from(o.error()));
}

Outcome App::all_events_ws(const HttpRequest& r, const Principal&,
                           const std::vector<std::string>&) {
  auto o = events_stream(r, "", true);
  return o ? std::move(*o) : respond(problem_from(o.error()));
}

Outcome App::run_command(const HttpRequest& r, const std::string& run, std::string_view verb) {
  Problem p;
  auto body = parse_body(r, p);
  if (!body) return respond(p);
  const std::string reason = base::string_or(*body, "reason", "");
  Status st = verb == "cancel"  ? deps_.engine.cancel(run, reason)
              : verb == "pause" ? deps_.engine.pause(run, reason)
                                : deps_.engine.resume(run, reason);
  if (!st) return respond(problem_from(st.error()));
  auto row = deps_.store.get_run(run);
  if (!row) return respond(problem_from(row.error()));
  return respond(200, json::object{{"id", run}, {"status", row->status}});
}

Outcome App::cancel_run(const HttpRequest& r, const Principal&,
                        const std::vector<std::string>& params) {
  return run_command(r, params[0], "cancel");
}

Outcome App::pause_run(const HttpRequest& r, const Principal&,
                       const std::vector<std::string>& params) {
  return run_command(r, params[0], "pause");
}

Outcome App::resume_run(const HttpRequest& r, const Principal&,
                        const std::vector<std::string>& params) {
  return run_command(r, params[0], "resume");
}

Outcome App::replay_run(const HttpRequest& r, const Principal& who,
                        const std::vector<std::string>& params) {
  Problem p;
  auto body = parse_body(r, p);
  if (!body) return respond(p);
  const json::string* from = base::find_string(*body, "from_node");
  if (from == nullptr) {
    p.status = 422;
    p.detail = "from_node is required (a node id)";
    p.errors.push_back({"/from_node", p.detail});
    return respond(p);
  }
  auto started = deps_.engine.replay(params[0], std::string(*from), who.name);
  if (!started) {
    workflow::Problems errors;
    if (started.error().code == Code::kInvalidArgument) {
      errors.push_back({"/from_node", started.error().message});
    }
    return respond(problem_from(started.error(), std::move(errors)));
  }
  return respond(201, json::object{{"id", started->id},
                                   {"replay_of", params[0]},
                                   {"status", started->status},
                                   {"workflow", started->workflow},
                                   {"version", started->version}});
}

Outcome App::propose_patch(const HttpRequest& r, const Principal& who,
                           const std::vector<std::string>& params) {
  Problem p;
  auto body = parse_body(r, p);
  if (!body) return respond(p);
  const json::value* ops = body->if_contains("ops");
  if (ops == nullptr || !ops->is_array()) {
    p.status = 422;
    p.detail = "ops is required: an array of RFC 6902 operations";
    p.errors.push_back({"/ops", p.detail});
    return respond(p);
  }
  engine::PatchRequest req;
  req.run = params[0];
  req.ops = *ops;
  req.reason = base::string_or(*body, "reason", "");
  req.by = who.name;
  const json::value* review = body->if_contains("review");
  req.review = options_.patch_review == PatchReview::kAll ||
               (options_.patch_review == PatchReview::kAgents && who.role == kAgent) ||
               (review != nullptr && review->is_bool() && review->as_bool());
  workflow::Problems problems;
  auto res = deps_.engine.propose_patch(std::move(req), problems);
  if (!res) return respond(problem_from(res.error(), std::move(problems)));
  return respond(201, json::object{{"id", res->id},
                                   {"status", res->status},
                                   {"version", res->version.empty() ? json::value(nullptr)
                                                                    : json::value(res->version)}});
}

Outcome App::list_patches(const HttpRequest&, const Principal&,
                          const std::vector<std::string>& params) {
  auto run = deps_.store.get_run(params[0]);
  if (!run) return respond(problem_from(run.error()));
  auto patches = deps_.store.list_patches(params[0]);
  if (!patches) return respond(problem_from(patches.error()));
  json::array items;
  for (const auto& pr : *patches) items.push_back(patch_json(pr));
  return respond(200, json::object{{"items", std::move(items)}, {"next_cursor", nullptr}});
}

Outcome App::get_patch(const HttpRequest&, const Principal&,
                       const std::vector<std::string>& params) {
  auto patch = deps_.store.get_patch(params[0]);
  if (!patch) return respond(problem_from(patch.error()));
  return respond(200, patch_json(*patch));
}

Outcome App::decide_patch(const HttpRequest& r, const Principal& who, const std::string& id,
                          bool approve) {
  Problem p;
  auto body = parse_body(r, p);
  if (!body) return respond(p);
  workflow::Problems problems;
  auto res = deps_.engine.decide_patch_proposal(id, approve, who.name,
                                                base::string_or(*body, "reason", ""), problems);
  if (!res) return respond(problem_from(res.error(), std::move(problems)));
  auto patch = deps_.store.get_patch(id);
  if (!patch) return respond(problem_from(patch.error()));
  return respond(200, patch_json(*patch));
}

Outcome App::approve_patch(const HttpRequest& r, const Principal& who,
                           const std::vector<std::string>& params) {
  return decide_patch(r, who, params[0], true);
}

Outcome App::reject_patch(const HttpRequest& r, const Principal& who,
                          const std::vector<std::string>& params) {
  return decide_patch(r, who, params[0], false);
}

}  // namespace venture::api
