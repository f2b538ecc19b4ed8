// Approvals (SPEC §3): list, show, decide; and the approval-link pages for people who are not at
// a terminal (GET shows what is being approved, only the POST from that page decides).
#include <sstream>

#include "api/app.h"

namespace venture::api {
namespace {

constexpr std::string_view kStatuses[] = {"pending", "approved", "rejected", "timed_out",
                                          "cancelled"};

// The approval's request ({title, description, show, approvers, …}); empty if it has none.
const json::object& request_of(const storage::ApprovalRow& a) {
  static const json::object kNone;
  const json::object* req = a.request.if_object();
  return req != nullptr ? *req : kNone;
}

json::object approval_json(const storage::ApprovalRow& a) {
  const json::object* req = &request_of(a);
  auto field = [&](std::string_view k) {
    const json::value* v = req->if_contains(k);
    return v ? *v : json::value();
  };
  json::array decisions;
  if (const json::array* votes = a.decisions.if_array()) {
    for (const json::value& v : *votes) {
      const json::object* o = v.if_object();
      if (o == nullptr) continue;
      json::object d = *o;
      d.erase("link");  // the link's nonce is the engine's business
      decisions.push_back(std::move(d));
    }
  }
  return json::object{{"id", a.id},
                      {"run", a.run},
                      {"node", a.node},
                      {"index", a.index >= 0 ? json::value(a.index) : json::value()},
                      {"iteration", a.iteration},
                      {"status", a.status},
                      {"title", field("title")},
                      {"description", field("description")},
                      {"show", field("show")},
                      {"approvers", field("approvers")},
                      {"quorum", field("quorum")},
                      {"reject_on_any", field("reject_on_any")},
                      {"allow_self_approval", field("allow_self_approval")},
                      {"on_timeout", field("on_timeout")},
                      {"started_by", field("started_by")},
                      {"due_at", time_or_null(a.due)},
                      {"created_at", format_time(a.created)},
                      {"updated_at", format_time(a.updated)},
                      {"decisions", std::move(decisions)}};
}

// The decision and comment of a decide request (JSON body or the link page's form).
std::optional<engine::Vote> vote_from(const json::object& body, Problem& p) {
  engine::Vote v;
  const json::value* d = body.if_contains("decision");
  if (d == nullptr || !d->is_string() ||
      (d->get_string() != "approve" && d->get_string() != "reject")) {
    p.status = 422;
    p.detail = "decision must be \"approve\" or \"reject\"";
    p.errors.push_back({"/decision", p.detail});
    return std::nullopt;
  }
  v.decision = std::string(d->get_string());
  if (const json::value* c = body.if_contains("comment"); c != nullptr && !c->is_null()) {
    if (!c->is_string() || c->get_string().size() > limits::kApprovalCommentBytesMax) {
      p.status = 422;
      p.detail = "comment must be a string of at most " +
                 std::to_string(limits::kApprovalCommentBytesMax) + " bytes";
      p.errors.push_back({"/comment", p.detail});
      return std::nullopt;
    }
    v.comment = std::string(c->get_string());
  }
  return v;
}

// ---- the link pages ----

std::string escape_html(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A page that nothing can frame, cache, index or leak the link of; no scripts, no remote
// resources, forms only to this server.
Outcome page(int status, const std::string& title, const std::string& body_html) {
  Outcome o;
  o.response.status = status;
  o.response.content_type = "text/html; charset=utf-8";
  o.response.headers = {{"Cache-Control", "no-store"},
                        {"Referrer-Policy", "no-referrer"},
                        {"X-Frame-Options", "DENY"},
                        {"X-Content-Type-Options", "nosniff"},
                        {"X-Robots-Tag", "noindex, nofollow"},
                        {"Content-Security-Policy",
                         "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                         "frame-ancestors 'none'; base-uri 'none'"}};
  std::ostringstream html;
  html << "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
       << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
       << "<meta name=\"robots\" content=\"noindex\"><title>" << escape_html(title)
       << " · Venture</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;"
       << "margin:2rem auto;padding:0 1rem}pre{background:#f4f4f4;padding:.75rem;overflow:auto}"
       << "button{font-size:1rem;padding:.5rem 1.25rem;margin-right:.5rem}"
       << "textarea{width:100%;min-height:4rem}</style></head><body>" << body_html
       << "</body></html>\n";
  o.response.body = html.str();
  return o;
}

Outcome message_page(int status, const std::string& title, const std::string& text) {
  return page(status, title, "<h1>" + escape_html(title) + "</h1><p>" + escape_html(text) + "</p>");
}

std::string describe(const storage::ApprovalRow& a) {
  const json::object* req = &request_of(a);
  std::string html = "<h1>" + escape_html(base::string_or(*req, "title", "Approval")) + "</h1>";
  const std::string description = base::string_or(*req, "description", "");
  if (!description.empty()) html += "<p>" + escape_html(description) + "</p>";
  if (const json::value* show = req->if_contains("show"); show != nullptr && !show->is_null()) {
    html += "<pre>" + escape_html(base::pretty_json(*show)) + "</pre>";
  }
  html += "<p>Run <code>" + escape_html(a.run) + "</code>, step <code>" + escape_html(a.node) +
          "</code>" + (a.index >= 0 ? " item " + std::to_string(a.index) : "") +
          ". Status: <strong>" + escape_html(a.status) + "</strong>.</p>";
  return html;
}

}  // namespace

Outcome App::list_approvals(const HttpRequest& r, const Principal&,
                            const std::vector<std::string>&) {
  Problem p;
  storage::ApprovalFilter f;
  const auto limit = parse_limit(r, 100, p);
  if (!limit) return respond(p);
  f.limit = *limit;
  f.status = r.param("status").value_or("");
  if (!f.status.empty() &&
      std::find(std::begin(kStatuses), std::end(kStatuses), f.status) == std::end(kStatuses)) {
    p.status = 400;
    p.detail = "status must be one of pending, approved, rejected, timed_out, cancelled";
    p.errors.push_back({"/query/status", p.detail});
    return respond(p);
  }
  f.run = r.param("run").value_or("");
  f.cursor = r.param("cursor").value_or("");
  auto page = deps_.store.list_approvals(f);
  if (!page) {
    if (page.error().code == Code::kInvalidArgument) {
      p.status = 400;
      p.detail = "cursor is not one this server gave out";
      p.errors.push_back({"/query/cursor", p.detail});
      return respond(p);
    }
    return respond(problem_from(page.error()));
  }
  json::array items;
  for (const auto& a : page->items) items.push_back(approval_json(a));
  return respond(200, json::object{{"items", std::move(items)},
                                   {"next_cursor", page->next_cursor.empty()
                                                       ? json::value()
                                                       : json::value(page->next_cursor)}});
}

Outcome App::get_approval(const HttpRequest&, const Principal&,
                          const std::vector<std::string>& params) {
  auto a = deps_.store.get_approval(params[0]);
  if (!a) return respond(problem_from(a.error()));
  return respond(200, approval_json(*a));
}

Outcome App::decide_approval(const HttpRequest& r, const Principal& who,
                             const std::vector<std::string>& params) {
  Problem p;
  auto body = parse_body(r, p);
  if (!body) return respond(p);
  auto vote = vote_from(*body, p);
  if (!vote) return respond(p);
  vote->approval = params[0];
  vote->by = who.name;
  vote->role = std::string(role_name(who.role));
  vote->via = "api";
  auto row = deps_.engine.decide_approval(*vote);
  if (!row) return respond(problem_from(row.error()));
  return respond(200, approval_json(*row));
}

// The link's approval, checked: signature, the approval exists and still shows what was signed,
// the person is still an approver. On failure `failed` holds the page to answer with.
std::optional<std::pair<ApprovalLinks::Claim, storage::ApprovalRow>> App::open_link(
    const std::string& token, Outcome& failed) {
  if (options_.links == nullptr) {
    failed = message_page(404, "Link not valid", "Approval links are not enabled here.");
    return std::nullopt;
  }
  auto claim = options_.links->verify(token);
  if (!claim) {
    failed =
        message_page(404, "Link not valid", "This approval link is not valid. Ask for a new one.");
    return std::nullopt;
  }
  auto row = deps_.store.get_approval(claim->approval);
  if (!row || row->request.is_null() ||
      ApprovalLinks::content_hash(row->request) != claim->content ||
      !engine::is_approver(row->request, claim->user, "")) {
    failed = message_page(404, "Link not valid",
                          "This approval link does not match an approval you may decide.");
    return std::nullopt;
  }
  if (deps_.clock.now() >= claim->expires) {
    failed = message_page(410, "Link expired",
                          "This approval link expired at " + format_time(claim->expires) + ".");
    return std::nullopt;
  }
  return std::make_pair(std::move(*claim), std::move(*row));
}

Outcome App::link_page(const HttpRequest&, const Principal&,
                       const std::vector<std::string>& params) {
  Outcome failed;
  auto opened = open_link(params[0], failed);
  if (!opened) return failed;
  const auto& [claim, row] = *opened;
  std::string html = describe(row);
  bool used = false;
  if (const json::array* votes = row.decisions.if_array()) {
    for (const json::value& v : *votes) {
      const json::object* o = v.if_object();
      if (o == nullptr) continue;
      used |= base::string_or(*o, "link", "") == claim.nonce ||
              base::string_or(*o, "by", "") == claim.user;
    }
  }
  if (row.status != "pending") {
    html += "<p>This approval is already decided; nothing more to do.</p>";
  } else if (used) {
    html += "<p>You have already decided on this approval.</p>";
  } else {
    // The form posts back to this very URL; the confirmation value proves the page was shown.
    html += "<form method=\"post\"><input type=\"hidden\" name=\"confirm\" value=\"" +
            escape_html(options_.links->confirmation(claim)) +
            "\"><p><label>Comment (optional)<br><textarea name=\"comment\" maxlength=\"" +
            std::to_string(limits::kApprovalCommentBytesMax) +
            "\"></textarea></label></p><p>Deciding as <strong>" + escape_html(claim.user) +
            "</strong>. Link valid until " + escape_html(format_time(claim.expires)) +
            ".</p><button name=\"decision\" value=\"approve\">Approve</button>"
            "<button name=\"decision\" value=\"reject\">Reject</button></form>";
  }
  return page(200, "Approval", html);
}

Outcome App::link_decide(const HttpRequest& r, const Principal&,
                         const std::vector<std::string>& params) {
  Outcome failed;
  auto opened = open_link(params[0], failed);
  if (!opened) return failed;
  const auto& [claim, row] = *opened;
  auto form = parse_form(r.body);
  json::object fields;
  if (form) {
    for (auto& [k, v] : *form) fields[k] = v;
  }
  if (!form || base::string_or(fields, "confirm", "") != options_.links->confirmation(claim)) {
    return message_page(400, "Not confirmed",
                        "Decide from the approval page itself: open the link and use its "
                        "buttons.");
  }
  Problem p;
  auto vote = vote_from(fields, p);
  if (!vote) return message_page(400, "Choose a decision", p.detail);
  vote->approval = claim.approval;
  vote->by = claim.user;
  vote->via = "link";
  vote->link = claim.nonce;
  auto decided = deps_.engine.decide_approval(*vote);
  if (!decided) {
    const Problem e = problem_from(decided.error());
    return message_page(e.status, e.status == 409 ? "Already decided" : "Not recorded",
                        decided.error().message);
  }
  return page(200, "Recorded",
              "<h1>Recorded</h1><p>Your decision (" + escape_html(vote->decision) +
                  ") on this approval is recorded.</p>" + describe(*decided));
}

}  // namespace venture::api
