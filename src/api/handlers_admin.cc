// Control (freeze), tokens, audit; the token store. (The rate limiter is in ratelimit.cc.)
#include <filesystem>
#include <fstream>

#include "api/app.h"

namespace venture::api {

Status append_and_publish(storage::Store& store, bus::Bus& bus, storage::Batch batch) {
  VENTURE_ASSIGN_OR_RETURN(auto appended, store.append(std::move(batch)));
  for (const auto& e : appended.events) (void)bus.publish(e.type, storage::event_to_json(e));
  return {};
}

// ---- tokens ----------------------------------------------------------------------------------

Tokens::Tokens(storage::Store& store, bus::Bus& bus, base::Clock& clock, base::Random& random)
    : store_(store), bus_(bus), clock_(clock), random_(random) {}

Tokens::~Tokens() {
  if (subscription_ != 0) bus_.unsubscribe(subscription_);
}

Status Tokens::watch() {
  VENTURE_ASSIGN_OR_RETURN(subscription_, bus_.subscribe("token.*", [this](const bus::Message&) {
    stale_.store(true, std::memory_order_release);
  }));
  return {};
}

Status Tokens::load() {
  VENTURE_ASSIGN_OR_RETURN(auto rows, store_.list_tokens());
  std::lock_guard lock(mu_);
  by_hash_.clear();
  for (const auto& row : rows) {
    if (row.revoked) continue;
    auto role = parse_role(row.role);
    if (!role) continue;
    by_hash_[row.hash] = Principal{row.id, row.name, *role};
  }
  return {};
}

Status Tokens::ensure_admin(const std::string& data_dir) {
  VENTURE_ASSIGN_OR_RETURN(auto rows, store_.list_tokens());
  if (!rows.empty()) return {};
  VENTURE_ASSIGN_OR_RETURN(Created admin, create("admin", kAdmin, "venture"));
  const auto path = std::filesystem::path(data_dir) / "admin.token";
  {
    std::ofstream out(path, std::ios::trunc);
    if (!out) return unavailable_error("cannot write " + path.string());
    out << admin.secret << "\n";
  }
  std::error_code ec;
  std::filesystem::permissions(
      path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write, ec);
  if (ec) return unavailable_error("cannot restrict " + path.string() + ": " + ec.message());
  base::log_info("created the admin token", {{"file", path.string()}});
  return {};
}

std::optional<Principal> Tokens::authenticate(std::string_view secret) {
  if (secret.empty() || secret.size() > 256) return std::nullopt;
  const std::string hash = base::b2(base::blake2b(secret));
  if (stale_.exchange(false, std::memory_order_acq_rel)) {
    if (Status st = load(); !st) stale_.store(true, std::memory_order_release);  // next time
  }
  {
    std::lock_guard lock(mu_);
    auto it = by_hash_.find(hash);
    if (it != by_hash_.end()) return it->second;
  }
  // Created by another API process since the last load: one look in the store.
  auto row = store_.get_token_by_hash(hash);
  if (!row || row->revoked) return std::nullopt;
  auto role = parse_role(row->role);
  if (!role) return std::nullopt;
  std::lock_guard lock(mu_);
  return by_hash_[row->hash] = Principal{row->id, row->name, *role};
}

Result<Tokens::Created> Tokens::create(const std::string& name, Role role, const std::string& by) {
  {
    std::lock_guard lock(mu_);
    if (by_hash_.size() >= limits::kTokensMax) {
      return resource_exhausted_error("at most " + std::to_string(limits::kTokensMax) + " tokens");
    }
  }
  Created c;
  c.secret = "vt_" + base::random_secret_hex();
  c.row.id = base::new_id("tok", clock_, random_);
  c.row.name = name;
  c.row.role = std::string(role_name(role));
  c.row.hash = base::b2(base::blake2b(c.secret));
  c.row.created = clock_.now();
  storage::Batch batch;
  storage::Event ev;
  ev.id = base::new_id("evt", clock_, random_);
  ev.type = "token.created";
  ev.time = c.row.created;
  ev.data = json::object{{"id", c.row.id}, {"name", name}, {"role", c.row.role}, {"by", by}};
  batch.events.push_back(std::move(ev));
  batch.tokens.push_back(c.row);
  VENTURE_RETURN_IF_ERROR(append_and_publish(store_, bus_, std::move(batch)));
  std::lock_guard lock(mu_);
  by_hash_[c.row.hash] = Principal{c.row.id, name, role};
  return c;
}

Status Tokens::revoke(const std::string& id, const std::string& by) {
  VENTURE_ASSIGN_OR_RETURN(storage::TokenRow row, store_.get_token(id));
  if (row.revoked) return {};
  if (row.role == "admin") {
    VENTURE_ASSIGN_OR_RETURN(auto rows, store_.list_tokens());
    const auto admins = std::count_if(
        rows.begin(), rows.end(), [](const auto& t) { return !t.revoked && t.role == "admin"; });
    if (admins <= 1) {
      return failed_precondition_error(
          "cannot revoke the last admin token (create another "
          "admin token first)");
    }
  }
  row.revoked = true;
  row.revoked_at = clock_.now();
  storage::Batch batch;
  storage::Event ev;
  ev.id = base::new_id("evt", clock_, random_);
  ev.type = "token.revoked";
  ev.time = *row.revoked_at;
  ev.data = json::object{{"id", id}, {"name", row.name}, {"by", by}};
  batch.events.push_back(std::move(ev));
  const std::string hash = row.hash;
  batch.tokens.push_back(std::move(row));
  VENTURE_RETURN_IF_ERROR(append_and_publish(store_, bus_, std::move(batch)));
  std::lock_guard lock(mu_);
  by_hash_.erase(hash);
  return {};
}

Result<std::vector<storage::TokenRow>> Tokens::list() { return store_.list_tokens(); }

// ---- handlers --------------------------------------------------------------------------------

json::object App::control_state() {
  json::object o{{"frozen", deps_.engine.frozen()}, {"reason", nullptr}, {"since", nullptr}};
  storage::EventFilter f;
  f.type_prefix = "control.";
  f.limit = limits::kReadPageMax;
  std::optional<storage::Event> last;
  while (true) {
    auto page = deps_.store.read_events(f);
    if (!page || page->empty()) break;
    last = page->back();
    f.after_seq = page->back().seq;
  }
  if (last && last->type == "control.frozen" && deps_.engine.frozen()) {
    o["reason"] =
        last->data.as_object().contains("reason") ? last->data.at("reason") : json::value(nullptr);
    o["since"] = format_time(last->time);
  }
  return o;
}

Outcome App::get_control(const HttpRequest&, const Principal&, const std::vector<std::string>&) {
  return respond(200, control_state());
}

Outcome App::freeze(const HttpRequest& r, const Principal&, const std::vector<std::string>&) {
  Problem p;
  auto body = parse_body(r, p);
  if (!body) return respond(p);
  const std::string reason = base::string_or(*body, "reason", "");
  if (reason.empty()) {
    p.status = 422;
    p.detail = "reason is required: say why everything stops";
    p.errors.push_back({"/reason", p.detail});
    return respond(p);
  }
  if (Status st = deps_.engine.freeze(reason); !st) return respond(problem_from(st.error()));
  return respond(200, control_state());
}

Outcome App::unfreeze(const HttpRequest& r, const Principal&, const std::vector<std::string>&) {
  Problem p;
  auto body = parse_body(r, p);
  if (!body) return respond(p);
  if (Status st = deps_.engine.unfreeze(); !st) return respond(problem_from(st.error()));
  return respond(200, control_state());
}

Outcome App::create_token(const HttpRequest& r, const Principal& who,
                          const std::vector<std::string>&) {
  Problem p;
  auto body = parse_body(r, p);
  if (!body) return respond(p);
  const std::string name = base::string_or(*body, "name", "");
  p.status = 422;
  if (name.empty() || name.size() > limits::kNameLengthMax) {
    p.errors.push_back({"/name", "name is required (1 to 63 characters)"});
  }
  auto role = parse_role(base::string_or(*body, "role", ""));
  if (!role) p.errors.push_back({"/role", role.error().message});
  if (!p.errors.empty()) {
    p.detail = "the token request is not valid";
    return respond(p);
  }
  auto created = tokens_.create(name, *role, who.name);
  if (!created) return respond(problem_from(created.error()));
  return respond(201, json::object{{"id", created->row.id},
                                   {"name", created->row.name},
                                   {"role", created->row.role},
                                   {"token", created->secret},
                                   {"created_at", format_time(created->row.created)}});
}

Outcome App::list_tokens(const HttpRequest&, const Principal&, const std::vector<std::string>&) {
  auto rows = tokens_.list();
  if (!rows) return respond(problem_from(rows.error()));
  json::array items;
  for (const auto& t : *rows) {
    items.push_back(json::object{{"id", t.id},
                                 {"name", t.name},
                                 {"role", t.role},
                                 {"created_at", format_time(t.created)},
                                 {"revoked", t.revoked},
                                 {"revoked_at", time_or_null(t.revoked_at)}});
  }
  return respond(200, json::object{{"items", std::move(items)}, {"next_cursor", nullptr}});
}

Outcome App::revoke_token(const HttpRequest&, const Principal& who,
                          const std::vector<std::string>& params) {
  if (Status st = tokens_.revoke(params[0], who.name); !st) {
    return respond(problem_from(st.error()));
  }
  Outcome o;
  o.response.status = 204;
  o.response.content_type.clear();
  return o;
}

Outcome App::audit_verify(const HttpRequest&, const Principal&, const std::vector<std::string>&) {
  auto report = deps_.store.verify();
  if (!report) return respond(problem_from(report.error()));
  json::array partitions;
  for (const storage::PartitionReport& p : report->partitions) {
    partitions.push_back(json::object{{"partition", p.partition},
                                      {"events", p.events},
                                      {"head_seq", p.head_seq},
                                      {"head_hash", p.head_hash},
                                      {"ok", p.ok}});
  }
  return respond(
      200,
      json::object{
          {"ok", report->ok},
          {"partitions", std::move(partitions)},
          {"events", report->events},
          {"checkpoints", report->checkpoints},
          {"first_bad_seq",
           report->first_bad_seq == 0 ? json::value(nullptr) : json::value(report->first_bad_seq)},
          {"reason", report->reason.empty() ? json::value(nullptr) : json::value(report->reason)}});
}

Outcome App::audit_run(const HttpRequest&, const Principal&,
                       const std::vector<std::string>& params) {
  auto run = deps_.store.get_run(params[0]);
  if (!run) return respond(problem_from(run.error()));
  storage::EventFilter f;
  f.run = params[0];
  f.limit = limits::kReadPageMax;
  json::array items;
  while (items.size() < limits::kRunEventsMax) {
    auto page = deps_.store.read_events(f);
    if (!page) return respond(problem_from(page.error()));
    if (page->empty()) break;
    for (const auto& e : *page) items.push_back(storage::event_to_json(e));
    f.after_seq = page->back().seq;
  }
  return respond(200, json::object{{"run", params[0]}, {"items", std::move(items)}});
}

}  // namespace venture::api
