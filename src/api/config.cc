// venture.toml + VENTURE_* + flags, layered over the defaults of ServeConfig.
#include <toml++/toml.h>

#include <charconv>
#include <sstream>

#include "api/api.h"
#include "workflow/workflow.h"

namespace venture::api {
namespace {

enum class Kind { kString, kInt, kBool, kList };

struct KeySpec {
  ConfigKey key;
  Kind kind;
  std::string* (*string_field)(ServeConfig&) = nullptr;
  int* (*int_field)(ServeConfig&) = nullptr;
  bool* (*bool_field)(ServeConfig&) = nullptr;
  std::vector<std::string>* (*list_field)(ServeConfig&) = nullptr;
};

// clang-format off
const std::vector<KeySpec>& specs() {
  static const std::vector<KeySpec> kSpecs = {
    {{"data_dir", "directory of the embedded store, keys and admin.token"}, Kind::kString,
     [](ServeConfig& c) { return &c.data_dir; }},
    {{"listen", "HOST:PORT of the HTTP API"}, Kind::kString,
     [](ServeConfig& c) { return &c.listen; }},
    {{"store", "sqlite (embedded) | postgres://… (cluster; alias LEDGER_DB_URL)"}, Kind::kString,
     [](ServeConfig& c) { return &c.store; }},
    {{"bus", "memory (embedded) | nats://… (cluster; alias NATS_URL)"}, Kind::kString,
     [](ServeConfig& c) { return &c.bus; }},
    {{"redis", "redis://… shared rate limits (cluster; alias REDIS_URL)"}, Kind::kString,
     [](ServeConfig& c) { return &c.redis; }},
    {{"services", "modules this process runs: all | api,engine,workers"}, Kind::kString,
     [](ServeConfig& c) { return &c.services; }},
    {{"egress.allow", "CIDRs and host names the http node may reach despite the guard"},
     Kind::kList, nullptr, nullptr, nullptr,
     [](ServeConfig& c) { return &c.egress_allow; }},
    {{"public_url", "URL people use to reach this server (links)"}, Kind::kString,
     [](ServeConfig& c) { return &c.public_url; }},
    {{"tls.cert", "PEM certificate chain: serve HTTPS"}, Kind::kString,
     [](ServeConfig& c) { return &c.tls_cert; }},
    {{"tls.key", "PEM private key for tls.cert"}, Kind::kString,
     [](ServeConfig& c) { return &c.tls_key; }},
    {{"http.io_threads", "threads running the io_context"}, Kind::kInt, nullptr,
     [](ServeConfig& c) { return &c.io_threads; }},
    {{"http.blocking_threads", "threads running handlers"}, Kind::kInt, nullptr,
     [](ServeConfig& c) { return &c.blocking_threads; }},
    {{"workers", "embedded worker threads"}, Kind::kInt, nullptr,
     [](ServeConfig& c) { return &c.workers; }},
    {{"rate_limits.enabled", "per-token run submission limits"}, Kind::kBool, nullptr, nullptr,
     [](ServeConfig& c) { return &c.rate_limits.enabled; }},
    {{"rate_limits.simple", "runs/min per token, workflows without agent nodes (0 = off)"},
     Kind::kInt, nullptr, [](ServeConfig& c) { return &c.rate_limits.simple_per_minute; }},
    {{"rate_limits.standard", "runs/min per token, 1–2 agent nodes"}, Kind::kInt, nullptr,
     [](ServeConfig& c) { return &c.rate_limits.standard_per_minute; }},
    {{"rate_limits.heavy", "runs/min per token, 3+ agent nodes"}, Kind::kInt, nullptr,
     [](ServeConfig& c) { return &c.rate_limits.heavy_per_minute; }},
    {{"rate_limits.on_redis_error", "while Redis is down: closed (503) | open (unlimited)"},
     Kind::kString, [](ServeConfig& c) { return &c.redis_failure; }},
    {{"patch_review", "which patches wait for review: agents | all | none"}, Kind::kString,
     [](ServeConfig& c) { return &c.patch_review; }},
    {{"log_level", "debug | info | warn | error"}, Kind::kString,
     [](ServeConfig& c) { return &c.log_level; }},
  };
  return kSpecs;
}
// clang-format on

const KeySpec* find_spec(std::string_view name) {
  for (const auto& s : specs()) {
    if (s.key.name == name) return &s;
  }
  return nullptr;
}

std::string env_name(std::string_view key) {
  std::string out = "VENTURE_";
  for (char c : key) {
    out.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out;
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in{std::string(text)};
  while (std::getline(in, item, ',')) {
    const auto b = item.find_first_not_of(" \t");
    const auto e = item.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
  }
  return out;
}

// Sets a key from text (environment and flags); `where` prefixes the error.
Status set_from_text(ServeConfig& c, const KeySpec& s, std::string_view text,
                     const std::string& where) {
  switch (s.kind) {
    case Kind::kString:
      *s.string_field(c) = std::string(text);
      return {};
    case Kind::kList:
      *s.list_field(c) = split_list(text);
      return {};
    case Kind::kInt: {
      int v = 0;
      const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || p != text.data() + text.size()) {
        return invalid_argument_error(where + ": expected an integer, got '" + std::string(text) +
                                      "'");
      }
      *s.int_field(c) = v;
      return {};
    }
    case Kind::kBool:
      if (text == "true" || text == "1" || text == "on" || text == "yes") {
        *s.bool_field(c) = true;
      } else if (text == "false" || text == "0" || text == "off" || text == "no") {
        *s.bool_field(c) = false;
      } else {
        return invalid_argument_error(where + ": expected true or false, got '" +
                                      std::string(text) + "'");
      }
      return {};
  }
  return {};
}

std::string place(const std::string& file, const toml::node& n) {
  const auto& src = n.source();
  return file + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

Status set_from_toml(ServeConfig& c, const KeySpec& s, const toml::node& n,
                     const std::string& where) {
  switch (s.kind) {
    case Kind::kString:
      if (auto v = n.value<std::string>(); v && n.is_string()) {
        *s.string_field(c) = *v;
        return {};
      }
      return invalid_argument_error(where + ": " + std::string(s.key.name) + " must be a string");
    case Kind::kInt:
      if (auto v = n.value<int64_t>(); v && n.is_integer() && *v >= 0 && *v <= 1'000'000) {
        *s.int_field(c) = static_cast<int>(*v);
        return {};
      }
      return invalid_argument_error(where + ": " + std::string(s.key.name) +
                                    " must be an integer from 0 to 1000000");
    case Kind::kBool:
      if (n.is_boolean()) {
        *s.bool_field(c) = *n.value<bool>();
        return {};
      }
      return invalid_argument_error(where + ": " + std::string(s.key.name) + " must be a boolean");
    case Kind::kList:
      if (const auto* arr = n.as_array()) {
        std::vector<std::string> out;
        for (const auto& item : *arr) {
          if (!item.is_string()) {
            return invalid_argument_error(place(where.substr(0, where.find(':')), item) + ": " +
                                          std::string(s.key.name) + " must hold strings");
          }
          out.push_back(*item.value<std::string>());
        }
        *s.list_field(c) = std::move(out);
        return {};
      }
      if (auto v = n.value<std::string>(); v && n.is_string()) {
        *s.list_field(c) = split_list(*v);
        return {};
      }
      return invalid_argument_error(where + ": " + std::string(s.key.name) +
                                    " must be an array of strings");
  }
  return {};
}

Status load_toml(ServeConfig& c, const std::string& file) {
  toml::table doc;
  try {
    doc = toml::parse_file(file);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    return invalid_argument_error(file + ":" + std::to_string(b.line) + ":" +
                                  std::to_string(b.column) + ": " + std::string(e.description()));
  } catch (const std::exception& e) {
    return invalid_argument_error(file + ": " + e.what());
  }
  std::vector<std::string> names;
  for (const auto& s : specs()) names.emplace_back(s.key.name);
  Status result;
  // Walk every leaf (tables flatten to dotted names) so an unknown key is an error, not ignored.
  std::function<Status(const toml::table&, const std::string&)> walk =
      [&](const toml::table& t, const std::string& prefix) -> Status {
    for (const auto& [k, v] : t) {
      const std::string name = prefix + std::string(k.str());
      const KeySpec* s = find_spec(name);
      if (s == nullptr && v.is_table()) {
        VENTURE_RETURN_IF_ERROR(walk(*v.as_table(), name + "."));
        continue;
      }
      if (s == nullptr) {
        const std::string guess = workflow::closest_match(name, names);
        return invalid_argument_error(place(file, v) + ": unknown key '" + name + "'" +
                                      (guess.empty() ? "" : " (did you mean '" + guess + "'?)"));
      }
      VENTURE_RETURN_IF_ERROR(set_from_toml(c, *s, v, place(file, v)));
    }
    return {};
  };
  return walk(doc, "");
}

Status check(const ServeConfig& c) {
  VENTURE_RETURN_IF_ERROR(parse_listen(c.listen));
  if (c.io_threads < 1 || c.io_threads > 64) {
    return invalid_argument_error("http.io_threads must be from 1 to 64");
  }
  if (c.blocking_threads < 1 || c.blocking_threads > 256) {
    return invalid_argument_error("http.blocking_threads must be from 1 to 256");
  }
  if (c.workers < 1 || c.workers > 256) return invalid_argument_error("workers must be 1 to 256");
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return invalid_argument_error("tls.cert and tls.key go together: set both or neither");
  }
  VENTURE_RETURN_IF_ERROR(parse_patch_review(c.patch_review));
  if (c.store != "sqlite" && !is_cluster_store(c.store)) {
    return invalid_argument_error("store must be sqlite or a postgres:// URL, not '" + c.store +
                                  "'");
  }
  if (c.bus != "memory" && !c.bus.starts_with("nats://") && !c.bus.starts_with("tls://")) {
    return invalid_argument_error("bus must be memory or a nats:// URL, not '" + c.bus + "'");
  }
  if (!c.redis.empty()) {
    if (auto url = parse_redis_url(c.redis); !url) {
      return invalid_argument_error("redis: " + url.error().message);
    }
  }
  if (auto failure = parse_redis_failure(c.redis_failure); !failure) {
    return invalid_argument_error("rate_limits.on_redis_error: " + failure.error().message);
  }
  if (is_cluster_store(c.store) != (c.bus != "memory")) {
    return invalid_argument_error(
        "cluster mode needs both a postgres:// store and a nats:// bus (store '" + c.store +
        "', bus '" + c.bus + "')");
  }
  return {};
}

}  // namespace

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> kKeys = [] {
    std::vector<ConfigKey> out;
    for (const auto& s : specs()) out.push_back(s.key);
    return out;
  }();
  return kKeys;
}

Result<std::pair<std::string, uint16_t>> parse_listen(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return invalid_argument_error("listen address '" + std::string(text) +
                                  "' must be HOST:PORT, e.g. 127.0.0.1:8000");
  }
  std::string host(text.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const auto port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || p != port_text.data() + port_text.size() || port > 65535) {
    return invalid_argument_error("listen address '" + std::string(text) +
                                  "' has no valid port (0 to 65535)");
  }
  return std::pair{host, static_cast<uint16_t>(port)};
}

Result<ServeConfig> load_serve_config(
    const std::string& file, const std::function<const char*(const char*)>& env,
    const std::vector<std::pair<std::string, std::string>>& flags) {
  ServeConfig c;
  if (!file.empty()) VENTURE_RETURN_IF_ERROR(load_toml(c, file));
  for (const auto& s : specs()) {
    const std::string name = env_name(s.key.name);
    if (const char* v = env(name.c_str()); v != nullptr) {
      VENTURE_RETURN_IF_ERROR(set_from_text(c, s, v, name));
    }
  }
  for (const auto& [key, value] : flags) {
    const KeySpec* s = find_spec(key);
    if (s == nullptr) return invalid_argument_error("unknown configuration key '" + key + "'");
    VENTURE_RETURN_IF_ERROR(set_from_text(c, *s, value, "--" + key));
  }
  VENTURE_RETURN_IF_ERROR(check(c));
  if (c.public_url.empty()) c.public_url = "http://" + c.listen;
  return c;
}

}  // namespace venture::api
