// The client commands: one function per command of SPEC §5, each one HTTP call (or a stream) and
// its rendering. With -o json a command prints the server's body unchanged, as one document.
#include <filesystem>

#include "cli/cli.h"
#include "cli/internal.h"

namespace venture::cli {
namespace {

std::string str(const json::object* o, std::string_view key) {
  return o == nullptr ? "" : cell(o->if_contains(key));
}

const json::object* object_of(const Reply& r) { return r.body.if_object(); }

void print_raw(Context& ctx, const Reply& r) {
  std::string_view raw = r.raw;
  while (!raw.empty() && (raw.back() == '\n' || raw.back() == '\r')) raw.remove_suffix(1);
  *ctx.out << (raw.empty() ? "{}" : raw) << "\n";
}

// Appends "?k=v&…" for the non-empty values.
std::string with_query(std::string path,
                       const std::vector<std::pair<std::string, std::string>>& params) {
  char sep = '?';
  for (const auto& [key, value] : params) {
    if (value.empty()) continue;
    path += sep + key + "=" + url_encode(value);
    sep = '&';
  }
  return path;
}

std::string list_limit(const Args& args) { return std::to_string(args.limit); }

void print_more_hint(Context& ctx, const json::object* o) {
  if (o == nullptr) return;
  if (const json::string* cursor = base::find_string(*o, "next_cursor")) {
    if (!cursor->empty()) *ctx.err << "more results: --cursor " << std::string(*cursor) << "\n";
  }
}

std::string joined(const json::array* a, std::string_view sep = ", ") {
  std::string out;
  if (a == nullptr) return out;
  for (const json::value& v : *a) {
    if (!out.empty()) out += sep;
    out += cell(&v);
  }
  return out;
}

const json::array& items_of(const Reply& r) {
  static const json::array kEmpty;
  const json::object* o = object_of(r);
  const json::array* items = o == nullptr ? nullptr : base::find_array(*o, "items");
  return items == nullptr ? kEmpty : *items;
}

std::string run_path(const std::string& id) { return "/v1/runs/" + url_encode(id); }

json::object reason_body(const Args& args) {
  json::object body;
  if (!args.reason.empty()) body["reason"] = args.reason;
  return body;
}

std::string error_cell(const json::value* error) {
  if (error == nullptr || error->is_null()) return "";
  if (const json::object* e = error->if_object()) {
    const std::string code = base::string_or(*e, "code", "");
    const std::string message = base::string_or(*e, "message", "");
    return code.empty() ? message : code + ": " + message;
  }
  return cell(error);
}

// "run <id> <status>" for the answers of start, cancel, pause, resume and replay.
Result<int> print_run_line(Context& ctx, const Reply& r, const std::string& suffix = "") {
  if (ctx.json) {
    print_raw(ctx, r);
  } else {
    const json::object* o = object_of(r);
    *ctx.out << "run " << str(o, "id") << " " << str(o, "status") << suffix << "\n";
  }
  return kExitOk;
}

Result<int> run_control(Context& ctx, const Args& args, std::string_view verb) {
  json::value body = reason_body(args);
  VENTURE_ASSIGN_OR_RETURN(Reply r,
                           call(ctx, "POST", run_path(args.id) + "/" + std::string(verb), &body));
  return print_run_line(ctx, r);
}

Result<int> patch_decide(Context& ctx, const Args& args, std::string_view verb) {
  json::value body = reason_body(args);
  VENTURE_ASSIGN_OR_RETURN(
      Reply r,
      call(ctx, "POST", "/v1/patches/" + url_encode(args.id) + "/" + std::string(verb), &body));
  if (ctx.json) {
    print_raw(ctx, r);
  } else {
    const json::object* o = object_of(r);
    *ctx.out << "patch " << str(o, "id") << " " << str(o, "status") << "\n";
  }
  return kExitOk;
}

Result<int> print_control(Context& ctx, const Reply& r) {
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  const json::object* o = object_of(r);
  const json::value* frozen = o == nullptr ? nullptr : o->if_contains("frozen");
  if (frozen != nullptr && frozen->is_bool() && frozen->get_bool()) {
    const std::string since = short_time(str(o, "since"));
    const std::string reason = str(o, "reason");
    *ctx.out << "frozen" << (since.empty() ? "" : " since " + since)
             << (reason.empty() ? "" : ": " + reason) << "\n";
  } else {
    *ctx.out << "not frozen\n";
  }
  return kExitOk;
}

// Inputs from --inputs FILE, then each -i key=value over them.
Result<json::object> collect_inputs(const Args& args) {
  json::object inputs;
  if (!args.inputs_file.empty()) {
    VENTURE_ASSIGN_OR_RETURN(json::value doc, read_document(args.inputs_file));
    if (!doc.is_object()) {
      return invalid_argument_error(args.inputs_file + ": the inputs must be an object");
    }
    inputs = std::move(doc.get_object());
  }
  for (const std::string& assignment : args.inputs) {
    VENTURE_ASSIGN_OR_RETURN(auto kv, parse_assignment(assignment));
    inputs[kv.first] = std::move(kv.second);
  }
  return inputs;
}

void print_run_detail(Context& ctx, const json::object& o) {
  const json::value* output = o.if_contains("output");
  std::string workflow = str(&o, "workflow");
  *ctx.out << render_fields({
      {"id", str(&o, "id")},
      {"workflow", workflow},
      {"version", str(&o, "version")},
      {"status", str(&o, "status")},
      {"created", short_time(str(&o, "created_at"))},
      {"updated", short_time(str(&o, "updated_at"))},
      {"replay of", str(&o, "replay_of")},
      {"error", error_cell(o.if_contains("error"))},
      {"output", output == nullptr || output->is_null() ? "" : json::serialize(*output)},
  });
  const json::object* nodes = base::find_object(o, "nodes");
  if (nodes == nullptr || nodes->empty()) return;
  std::vector<std::vector<std::string>> rows;
  for (const auto& [id, value] : *nodes) {
    const json::object* n = value.if_object();
    std::string elapsed;
    if (n != nullptr) {
      auto started = parse_time(str(n, "started_at"));
      auto finished = parse_time(str(n, "finished_at"));
      if (started && finished) elapsed = format_elapsed(*finished - *started);
    }
    std::string status = str(n, "status");
    if (const std::string outcome = str(n, "outcome"); !outcome.empty()) {
      status += " (" + outcome + ")";
    }
    rows.push_back({std::string(id), status, str(n, "attempts"), elapsed,
                    n == nullptr ? "" : error_cell(n->if_contains("error"))});
  }
  *ctx.out << "\n" << render_table({"NODE", "STATUS", "ATTEMPTS", "DURATION", "ERROR"}, rows);
}

}  // namespace

int run_command(Context& ctx, const Args& args, Command command) {
  try {
    Result<int> r = command(ctx, args);
    ctx.out->flush();
    if (r) return *r;
    *ctx.err << "venture: " << r.error().message << "\n";
    return exit_code_of(r.error());
  } catch (const std::exception& e) {
    // Nothing escapes a command: an exception here is a bug, reported like an error.
    *ctx.err << "venture: internal error: " << e.what() << "\n";
    return kExitError;
  }
}

Result<int> cmd_workflow_register(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(json::value definition, read_document(args.file));
  VENTURE_ASSIGN_OR_RETURN(
      Reply r, call(ctx, "POST", with_query("/v1/workflows", {{"tag", args.tag}}), &definition, {},
                    args.file));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  const json::object* o = object_of(r);
  const std::string tags = joined(o == nullptr ? nullptr : base::find_array(*o, "tags"));
  *ctx.out << (r.status == 201 ? "registered " : "unchanged ") << str(o, "name") << " "
           << str(o, "version") << (tags.empty() ? "" : " (tags: " + tags + ")") << "\n";
  return kExitOk;
}

Result<int> cmd_workflow_list(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(
      Reply r,
      call(ctx, "GET",
           with_query("/v1/workflows", {{"limit", list_limit(args)}, {"cursor", args.cursor}})));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : items_of(r)) {
    const json::object* o = item.if_object();
    const std::string version = str(o, "version");
    std::string tags;
    if (const json::object* t = o == nullptr ? nullptr : base::find_object(*o, "tags")) {
      for (const auto& [tag, tag_version] : *t) {
        if (!tags.empty()) tags += ",";
        tags += std::string(tag);
        // A tag on an older version names it (abbreviated).
        const std::string v = cell(&tag_version);
        if (v != version) tags += "=" + v.substr(0, 15);
      }
    }
    rows.push_back({str(o, "name"), version, tags, short_time(str(o, "created_at"))});
  }
  *ctx.out << render_table({"NAME", "VERSION", "TAGS", "CREATED"}, rows);
  print_more_hint(ctx, object_of(r));
  return kExitOk;
}

Result<int> cmd_workflow_show(Context& ctx, const Args& args) {
  std::string name = args.ref;
  std::string version, tag;
  if (const std::size_t at = name.find('@'); at != std::string::npos) {
    const std::string ref = name.substr(at + 1);
    name.resize(at);
    (ref.starts_with("b2:") ? version : tag) = ref;
  }
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "GET",
                                         with_query("/v1/workflows/" + url_encode(name),
                                                    {{"version", version}, {"tag", tag}})));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  const json::object* o = object_of(r);
  *ctx.out << render_fields(
      {{"name", str(o, "name")},
       {"version", str(o, "version")},
       {"tags", joined(o == nullptr ? nullptr : base::find_array(*o, "tags"))},
       {"created", short_time(str(o, "created_at"))}});
  if (const json::value* def = o == nullptr ? nullptr : o->if_contains("definition")) {
    *ctx.out << "definition:\n" << pretty_json(*def) << "\n";
  }
  return kExitOk;
}

Result<int> cmd_tag_move(Context& ctx, const Args& args) {
  json::value body = json::object{{"version", args.version}};
  VENTURE_ASSIGN_OR_RETURN(
      Reply r,
      call(ctx, "PUT", "/v1/workflows/" + url_encode(args.name) + "/tags/" + url_encode(args.tag),
           &body));
  if (ctx.json) {
    print_raw(ctx, r);
  } else {
    const json::object* o = object_of(r);
    *ctx.out << str(o, "name") << "@" << str(o, "tag") << " -> " << str(o, "version") << "\n";
  }
  return kExitOk;
}

Result<int> cmd_run_start(Context& ctx, const Args& args) {
  json::object body;
  json::value definition;  // null when started by name
  std::error_code ec;
  if (std::filesystem::is_regular_file(args.ref, ec)) {
    VENTURE_ASSIGN_OR_RETURN(definition, read_document(args.ref));
    body["definition"] = definition;
  } else {
    body["workflow"] = args.ref;
  }
  VENTURE_ASSIGN_OR_RETURN(json::object inputs, collect_inputs(args));
  body["inputs"] = std::move(inputs);
  Headers headers;
  if (!args.idempotency_key.empty()) headers.emplace_back("Idempotency-Key", args.idempotency_key);
  json::value value = std::move(body);
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "POST", "/v1/runs", &value, std::move(headers)));
  if (!args.follow) {
    return print_run_line(ctx, r,
                          r.status == 200 ? " (existing run for this idempotency key)" : "");
  }
  const std::string id = str(object_of(r), "id");
  if (id.empty()) return internal_error("the server's answer has no run id");
  if (!ctx.json && !ctx.terminal) (void)print_run_line(ctx, r);
  return follow_run(ctx, id, definition);
}

Result<int> cmd_run_status(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "GET", run_path(args.id)));
  if (ctx.json) {
    print_raw(ctx, r);
  } else if (const json::object* o = object_of(r)) {
    print_run_detail(ctx, *o);
  }
  return kExitOk;
}

Result<int> cmd_run_list(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "GET",
                                         with_query("/v1/runs", {{"status", args.status},
                                                                 {"workflow", args.workflow},
                                                                 {"limit", list_limit(args)},
                                                                 {"cursor", args.cursor}})));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : items_of(r)) {
    const json::object* o = item.if_object();
    rows.push_back(
        {str(o, "id"), str(o, "workflow"), str(o, "status"), short_time(str(o, "created_at"))});
  }
  *ctx.out << render_table({"ID", "WORKFLOW", "STATUS", "CREATED"}, rows);
  print_more_hint(ctx, object_of(r));
  return kExitOk;
}

Result<int> cmd_run_cancel(Context& ctx, const Args& args) {
  return run_control(ctx, args, "cancel");
}
Result<int> cmd_run_pause(Context& ctx, const Args& args) {
  return run_control(ctx, args, "pause");
}
Result<int> cmd_run_resume(Context& ctx, const Args& args) {
  return run_control(ctx, args, "resume");
}

Result<int> cmd_logs_stream(Context& ctx, const Args& args) {
  const int64_t after = args.from > 0 ? args.from - 1 : 0;
  auto on_event = [&](std::string_view raw, const json::object& event) {
    if (!args.node.empty() && base::string_or(event, "node", "") != args.node) return;
    if (args.filter == "errors" && !is_error_event(base::string_or(event, "type", ""))) return;
    if (ctx.json) {
      *ctx.out << raw << "\n";
    } else {
      *ctx.out << format_event_line(event) << "\n";
    }
  };
  VENTURE_ASSIGN_OR_RETURN(std::string status, stream_run_events(ctx, args.id, after, on_event,
                                                                 [&] { ctx.out->flush(); }));
  (void)status;  // logs prints the events; the run's outcome is not the command's
  return kExitOk;
}

Result<int> cmd_patch_create(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(json::value doc, read_document(args.file));
  json::object body;
  if (doc.is_array()) {
    body["ops"] = std::move(doc);
  } else if (const json::object* o = doc.if_object();
             o != nullptr && base::find_array(*o, "ops") != nullptr) {
    body["ops"] = o->at("ops");
    if (const json::string* reason = base::find_string(*o, "reason")) body["reason"] = *reason;
  } else {
    return invalid_argument_error(args.file +
                                  ": expected an array of JSON Patch operations or an object "
                                  "with `ops`");
  }
  if (!args.reason.empty()) body["reason"] = args.reason;
  json::value value = std::move(body);
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "POST", run_path(args.id) + "/patches", &value));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  const json::object* o = object_of(r);
  const std::string version = str(o, "version");
  *ctx.out << "patch " << str(o, "id") << " " << str(o, "status")
           << (version.empty() ? "" : " (version " + version + ")") << "\n";
  return kExitOk;
}

Result<int> cmd_patch_list(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "GET", run_path(args.id) + "/patches"));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : items_of(r)) {
    const json::object* o = item.if_object();
    rows.push_back({str(o, "id"), str(o, "status"), str(o, "proposed_by"),
                    short_time(str(o, "created_at")), str(o, "reason")});
  }
  *ctx.out << render_table({"ID", "STATUS", "PROPOSED BY", "CREATED", "REASON"}, rows);
  return kExitOk;
}

Result<int> cmd_patch_show(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "GET", "/v1/patches/" + url_encode(args.id)));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  const json::object* o = object_of(r);
  *ctx.out << render_fields(
      {{"id", str(o, "id")},
       {"run", str(o, "run")},
       {"status", str(o, "status")},
       {"version", str(o, "version")},
       {"reason", str(o, "reason")},
       {"proposed by", str(o, "proposed_by")},
       {"created", short_time(str(o, "created_at"))},
       {"decided by", str(o, "decided_by")},
       {"decision", str(o, "decision_reason")},
       {"error", error_cell(o == nullptr ? nullptr : o->if_contains("error"))}});
  if (const json::value* ops = o == nullptr ? nullptr : o->if_contains("ops")) {
    *ctx.out << "ops:\n" << pretty_json(*ops) << "\n";
  }
  return kExitOk;
}

Result<int> cmd_patch_approve(Context& ctx, const Args& args) {
  return patch_decide(ctx, args, "approve");
}
Result<int> cmd_patch_reject(Context& ctx, const Args& args) {
  return patch_decide(ctx, args, "reject");
}

Result<int> cmd_replay(Context& ctx, const Args& args) {
  json::value body = json::object{{"from_node", args.from_node}};
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "POST", run_path(args.id) + "/replay", &body));
  const std::string suffix = " (replay of " + args.id + " from " + args.from_node + ")";
  if (!args.follow) return print_run_line(ctx, r, suffix);
  const std::string id = str(object_of(r), "id");
  if (id.empty()) return internal_error("the server's answer has no run id");
  if (!ctx.json && !ctx.terminal) (void)print_run_line(ctx, r, suffix);
  return follow_run(ctx, id);
}

Result<int> cmd_freeze(Context& ctx, const Args& args) {
  json::value body = reason_body(args);
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "POST", "/v1/control/freeze", &body));
  return print_control(ctx, r);
}

Result<int> cmd_unfreeze(Context& ctx, const Args& args) {
  json::value body = reason_body(args);
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "POST", "/v1/control/unfreeze", &body));
  return print_control(ctx, r);
}

Result<int> cmd_control_status(Context& ctx, const Args&) {
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "GET", "/v1/control"));
  return print_control(ctx, r);
}

Result<int> cmd_token_create(Context& ctx, const Args& args) {
  json::value body = json::object{{"name", args.name}, {"role", args.role}};
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "POST", "/v1/tokens", &body));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  const json::object* o = object_of(r);
  *ctx.out << render_fields({{"id", str(o, "id")},
                             {"name", str(o, "name")},
                             {"role", str(o, "role")},
                             {"created", short_time(str(o, "created_at"))},
                             {"token", str(o, "token")}});
  *ctx.err << "The token is shown only once: store it now.\n";
  return kExitOk;
}

Result<int> cmd_token_list(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(
      Reply r,
      call(ctx, "GET",
           with_query("/v1/tokens", {{"limit", list_limit(args)}, {"cursor", args.cursor}})));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : items_of(r)) {
    const json::object* o = item.if_object();
    const json::value* revoked = o == nullptr ? nullptr : o->if_contains("revoked");
    // `revoked` is a bool (with `revoked_at`) or the time of the revocation.
    std::string revoked_text;
    if (revoked != nullptr && revoked->is_bool() && revoked->get_bool()) {
      revoked_text = short_time(str(o, "revoked_at"));
      if (revoked_text.empty()) revoked_text = "yes";
    } else if (revoked != nullptr && revoked->is_string()) {
      revoked_text = short_time(revoked->get_string());
    }
    rows.push_back({str(o, "id"), str(o, "name"), str(o, "role"), short_time(str(o, "created_at")),
                    revoked_text});
  }
  *ctx.out << render_table({"ID", "NAME", "ROLE", "CREATED", "REVOKED"}, rows);
  print_more_hint(ctx, object_of(r));
  return kExitOk;
}

Result<int> cmd_token_revoke(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "DELETE", "/v1/tokens/" + url_encode(args.id)));
  if (ctx.json) {
    // 204 has no body; scripts still get one document.
    if (r.raw.empty()) {
      r.raw = json::serialize(json::object{{"id", args.id}, {"revoked", true}});
    }
    print_raw(ctx, r);
  } else {
    *ctx.out << "revoked token " << args.id << "\n";
  }
  return kExitOk;
}

Result<int> cmd_audit_verify(Context& ctx, const Args&) {
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "GET", "/v1/audit/verify"));
  const json::object* o = object_of(r);
  const json::value* ok_value = o == nullptr ? nullptr : o->if_contains("ok");
  const bool ok = ok_value != nullptr && ok_value->is_bool() && ok_value->get_bool();
  if (ctx.json) {
    print_raw(ctx, r);
  } else if (ok) {
    const json::array* parts = o == nullptr ? nullptr : base::find_array(*o, "partitions");
    *ctx.out << "ok: " << str(o, "events") << " events and " << str(o, "checkpoints")
             << " checkpoints verified";
    if (parts != nullptr && parts->size() > 1) {
      *ctx.out << " (" << parts->size() << " partitions, each chain intact)";
    }
    *ctx.out << "\n";
  } else {
    const std::string seq = str(o, "first_bad_seq");
    const std::string reason = str(o, "reason");
    *ctx.out << "FAILED" << (seq.empty() ? "" : ": the chain breaks at seq " + seq)
             << (reason.empty() ? "" : ": " + reason) << "\n";
  }
  return ok ? kExitOk : kExitError;
}

Result<int> cmd_health(Context& ctx, const Args&) {
  HttpRequest request;
  request.target = "/health";
  VENTURE_ASSIGN_OR_RETURN(HttpResponse response, ctx.http->send(request));
  // A down server may answer 503 with the same document: show it either way.
  auto parsed = base::parse_json(response.body);
  const json::object* o = parsed ? parsed->if_object() : nullptr;
  const std::string status = str(o, "status");
  if (o == nullptr || status.empty()) {
    return Error{code_of_status(response.status), render_problem(response.status, response.body)};
  }
  const bool healthy =
      response.status >= 200 && response.status < 300 && (status == "ok" || status == "degraded");
  if (ctx.json) {
    print_raw(ctx, Reply{response.status, response.body, json::value()});
    return healthy ? kExitOk : kExitError;
  }
  std::string uptime;
  if (const json::value* u = o->if_contains("uptime_s"); u != nullptr && u->is_number()) {
    uptime = format_elapsed(Millis(static_cast<int64_t>(u->to_number<double>() * 1000)));
  }
  *ctx.out << render_fields({{"status", status},
                             {"version", str(o, "version")},
                             {"uptime", uptime},
                             {"time", str(o, "timestamp")}});
  if (const json::object* deps = base::find_object(*o, "dependencies"); deps && !deps->empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& [name, value] : *deps) {
      const json::object* d = value.if_object();
      rows.push_back({std::string(name), d != nullptr ? str(d, "status") : cell(&value)});
    }
    *ctx.out << "\n" << render_table({"DEPENDENCY", "STATUS"}, rows);
  }
  return healthy ? kExitOk : kExitError;
}

Result<int> cmd_completion(Context& ctx, const Args& args) {
  if (ctx.root == nullptr) return internal_error("no command tree");
  VENTURE_ASSIGN_OR_RETURN(std::string script, completion_script(*ctx.root, args.shell));
  *ctx.out << script;
  return kExitOk;
}

// ---- approvals ----

namespace {

std::string approval_path(const std::string& id) { return "/v1/approvals/" + url_encode(id); }

// "alice approve, bob reject" — who decided what so far.
std::string votes_cell(const json::object* o) {
  const json::array* votes = o == nullptr ? nullptr : base::find_array(*o, "decisions");
  std::string out;
  if (votes == nullptr) return out;
  for (const json::value& v : *votes) {
    const json::object* d = v.if_object();
    if (d == nullptr) continue;
    if (!out.empty()) out += ", ";
    const std::string by = str(d, "by");
    out += (by.empty() ? str(d, "via") : by) + " " + str(d, "decision");
  }
  return out;
}

}  // namespace

Result<int> cmd_approvals_list(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "GET",
                                         with_query("/v1/approvals", {{"status", args.status},
                                                                      {"run", args.run},
                                                                      {"limit", list_limit(args)},
                                                                      {"cursor", args.cursor}})));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : items_of(r)) {
    const json::object* o = item.if_object();
    std::string node = str(o, "node");
    if (const json::value* index = o ? o->if_contains("index") : nullptr;
        index != nullptr && index->is_int64()) {
      node += "[" + std::to_string(index->get_int64()) + "]";
    }
    rows.push_back({str(o, "id"), str(o, "status"), str(o, "run"), node, str(o, "title"),
                    short_time(str(o, "due_at")), votes_cell(o)});
  }
  *ctx.out << render_table({"ID", "STATUS", "RUN", "NODE", "TITLE", "DUE", "DECISIONS"}, rows);
  print_more_hint(ctx, object_of(r));
  return kExitOk;
}

Result<int> cmd_approvals_show(Context& ctx, const Args& args) {
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "GET", approval_path(args.id)));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  const json::object* o = object_of(r);
  const json::value* approvers = o ? o->if_contains("approvers") : nullptr;
  *ctx.out << render_fields({{"id", str(o, "id")},
                             {"status", str(o, "status")},
                             {"title", str(o, "title")},
                             {"description", str(o, "description")},
                             {"run", str(o, "run")},
                             {"node", str(o, "node")},
                             {"approvers", cell(approvers)},
                             {"quorum", cell(o ? o->if_contains("quorum") : nullptr)},
                             {"started by", str(o, "started_by")},
                             {"due", short_time(str(o, "due_at"))},
                             {"on timeout", str(o, "on_timeout")},
                             {"decisions", votes_cell(o)}});
  if (const json::value* show = o ? o->if_contains("show") : nullptr;
      show != nullptr && !show->is_null()) {
    *ctx.out << "show:\n" << pretty_json(*show) << "\n";
  }
  return kExitOk;
}

Result<int> cmd_approve(Context& ctx, const Args& args) {
  json::object body{{"decision", args.decision}};
  if (!args.reason.empty()) body["comment"] = args.reason;
  json::value value = std::move(body);
  VENTURE_ASSIGN_OR_RETURN(Reply r, call(ctx, "POST", approval_path(args.id) + "/decide", &value));
  if (ctx.json) {
    print_raw(ctx, r);
    return kExitOk;
  }
  const json::object* o = object_of(r);
  *ctx.out << "approval " << str(o, "id") << " " << str(o, "status") << " (" << votes_cell(o)
           << ")\n";
  return kExitOk;
}

}  // namespace venture::cli
