// Workflows and tags: register, read, list versions, move tags.
#include <algorithm>
#include <map>

#include "api/app.h"

namespace venture::api {
namespace {

// tag -> version for one workflow, and the reverse (version -> its tags).
struct Tags {
  std::map<std::string, std::string> by_tag;
  std::map<std::string, std::vector<std::string>> by_version;
};

Result<Tags> load_tags(storage::Store& store, const std::string& name) {
  VENTURE_ASSIGN_OR_RETURN(auto rows, store.list_tags(name));
  Tags t;
  for (auto& row : rows) {
    t.by_version[row.version].push_back(row.tag);
    t.by_tag[row.tag] = std::move(row.version);
  }
  for (auto& [v, tags] : t.by_version) std::sort(tags.begin(), tags.end());
  return t;
}

json::array tag_array(const Tags& t, const std::string& version) {
  json::array a;
  if (auto it = t.by_version.find(version); it != t.by_version.end()) {
    for (const auto& tag : it->second) a.emplace_back(tag);
  }
  return a;
}

}  // namespace

Outcome App::register_workflow(const HttpRequest& r, const Principal&,
                               const std::vector<std::string>&) {
  const auto tag = r.param("tag").value_or("");
  if (!tag.empty() && !workflow::is_valid_tag_name(tag)) {
    Problem p;
    p.status = 400;
    p.detail = "tag must match [a-z0-9][a-z0-9._-]{0,62}";
    p.errors.push_back({"/query/tag", p.detail});
    return respond(p);
  }
  // JSON, or YAML when the client says so (the CLI sends JSON either way).
  workflow::Problems problems;
  json::value definition;
  const auto ct = r.header("content-type").value_or("");
  if (ct.find("yaml") != std::string::npos) {
    auto doc = workflow::parse_document(r.body, problems);
    if (!doc) {
      Problem p;
      p.status = 400;
      p.detail = "the body is not a valid YAML document";
      p.errors = std::move(problems);
      return respond(p);
    }
    definition = std::move(*doc);
  } else {
    Problem p;
    auto body = parse_body(r, p);
    if (!body) return respond(p);
    definition = std::move(*body);
  }
  auto reg = deps_.engine.register_workflow(definition, tag, problems);
  if (!reg) return respond(problem_from(reg.error(), std::move(problems)));
  json::array tags;
  for (const auto& t : reg->tags) tags.emplace_back(t);
  return respond(reg->created ? 201 : 200,
                 json::object{{"name", reg->name}, {"version", reg->version}, {"tags", tags}});
}

Outcome App::list_workflows(const HttpRequest& r, const Principal&,
                            const std::vector<std::string>&) {
  Problem p;
  const auto limit = parse_limit(r, 100, p);
  if (!limit) return respond(p);
  auto names = deps_.store.list_workflow_names();
  if (!names) return respond(problem_from(names.error()));
  std::sort(names->begin(), names->end());
  const auto cursor = r.param("cursor").value_or("");
  json::array items;
  std::string next;
  for (const auto& name : *names) {
    if (!cursor.empty() && name <= cursor) continue;
    if (items.size() == *limit) {
      next = json::value_to<std::string>(items.back().as_object().at("name"));
      break;
    }
    auto tags = load_tags(deps_.store, name);
    auto versions = deps_.store.list_workflow_versions(name);
    if (!tags) return respond(problem_from(tags.error()));
    if (!versions) return respond(problem_from(versions.error()));
    json::object tag_map;
    for (const auto& [tag, version] : tags->by_tag) tag_map[tag] = version;
    const auto latest = tags->by_tag.find("latest");
    std::string version = latest != tags->by_tag.end() ? latest->second : "";
    if (version.empty() && !versions->empty()) version = versions->front().version;
    json::value created = nullptr;
    for (const auto& v : *versions) {
      if (v.version == version) created = format_time(v.created);
    }
    items.push_back(json::object{{"name", name},
                                 {"version", version},
                                 {"versions", versions->size()},
                                 {"tags", std::move(tag_map)},
                                 {"created_at", created}});
  }
  return respond(200, json::object{{"items", std::move(items)},
                                   {"next_cursor", next.empty() ? json::value(nullptr)
                                                                : json::value(next)}});
}

Outcome App::get_workflow(const HttpRequest& r, const Principal&,
                          const std::vector<std::string>& params) {
  const std::string& name = params[0];
  const auto version_param = r.param("version");
  const auto tag_param = r.param("tag");
  if (version_param && tag_param) {
    Problem p;
    p.status = 400;
    p.detail = "give ?version= or ?tag=, not both";
    p.errors.push_back({"/query/version", p.detail});
    return respond(p);
  }
  auto tags = load_tags(deps_.store, name);
  if (!tags) return respond(problem_from(tags.error()));
  std::string version;
  if (version_param) {
    version = *version_param;
  } else {
    const std::string tag = tag_param.value_or("latest");
    const auto it = tags->by_tag.find(tag);
    if (it == tags->by_tag.end()) {
      auto names = deps_.store.list_workflow_names();
      const bool known =
          names && std::find(names->begin(), names->end(), name) != names->end();
      return respond(problem_from(not_found_error(
          known ? "workflow '" + name + "' has no tag '" + tag + "'"
                : "workflow '" + name + "' does not exist")));
    }
    version = it->second;
  }
  auto row = deps_.store.get_workflow_version(name, version);
  if (!row) {
    return respond(problem_from(
        row.error().code == Code::kNotFound
            ? not_found_error("workflow '" + name + "' has no version " + version)
            : row.error()));
  }
  return respond(200, json::object{{"name", name},
                                   {"version", row->version},
                                   {"tags", tag_array(*tags, row->version)},
                                   {"created_at", format_time(row->created)},
                                   {"definition", row->definition}});
}

Outcome App::list_versions(const HttpRequest& r, const Principal&,
                           const std::vector<std::string>& params) {
  Problem p;
  const auto limit = parse_limit(r, 100, p);
  if (!limit) return respond(p);
  const std::string& name = params[0];
  auto versions = deps_.store.list_workflow_versions(name);
  if (!versions) return respond(problem_from(versions.error()));
  if (versions->empty()) {
    return respond(problem_from(not_found_error("workflow '" + name + "' does not exist")));
  }
  auto tags = load_tags(deps_.store, name);
  if (!tags) return respond(problem_from(tags.error()));
  // Newest first; the cursor is the last version of the previous page.
  const auto cursor = r.param("cursor").value_or("");
  bool skipping = !cursor.empty();
  json::array items;
  std::string next;
  for (const auto& v : *versions) {
    if (skipping) {
      skipping = v.version != cursor;
      continue;
    }
    if (items.size() == *limit) {
      next = json::value_to<std::string>(items.back().as_object().at("version"));
      break;
    }
    items.push_back(json::object{{"version", v.version},
                                 {"created_at", format_time(v.created)},
                                 {"tags", tag_array(*tags, v.version)}});
  }
  return respond(200, json::object{{"items", std::move(items)},
                                   {"next_cursor", next.empty() ? json::value(nullptr)
                                                                : json::value(next)}});
}

Outcome App::move_tag(const HttpRequest& r, const Principal& who,
                      const std::vector<std::string>& params) {
  const std::string& name = params[0];
  const std::string& tag = params[1];
  Problem p;
  auto body = parse_body(r, p);
  if (!body) return respond(p);
  if (!workflow::is_valid_tag_name(tag)) {
    p.status = 422;
    p.detail = "tag must match [a-z0-9][a-z0-9._-]{0,62}";
    p.errors.push_back({"/tag", p.detail});
    return respond(p);
  }
  const json::string* version = base::find_string(*body, "version");
  if (version == nullptr) {
    p.status = 422;
    p.detail = "version is required (a string, \"b2:…\")";
    p.errors.push_back({"/version", p.detail});
    return respond(p);
  }
  auto row = deps_.store.get_workflow_version(name, std::string(*version));
  if (!row) {
    return respond(problem_from(
        row.error().code == Code::kNotFound
            ? not_found_error("workflow '" + name + "' has no version " + std::string(*version))
            : row.error()));
  }
  auto tags = load_tags(deps_.store, name);
  if (!tags) return respond(problem_from(tags.error()));
  const auto old = tags->by_tag.find(tag);
  storage::Batch batch;
  storage::Event ev;
  ev.id = base::new_id("evt", deps_.clock, deps_.random);
  ev.type = "workflow.tagged";
  ev.time = deps_.clock.now();
  ev.data = json::object{{"name", name},
                         {"tag", tag},
                         {"version", row->version},
                         {"previous", old == tags->by_tag.end() ? json::value(nullptr)
                                                                : json::value(old->second)},
                         {"by", who.name}};
  batch.events.push_back(std::move(ev));
  batch.tags.push_back({name, tag, row->version});
  if (Status st = append_and_publish(deps_.store, deps_.bus, std::move(batch)); !st) {
    return respond(problem_from(st.error()));
  }
  return respond(200, json::object{{"name", name}, {"tag", tag}, {"version", row->version}});
}

}  // namespace venture::api
