// The http executor (docs/http.md): one request per attempt through egress::Client, completing
// on the client's thread; the response becomes {status, headers, body}.
#include <algorithm>
#include <cctype>

#include "nodes/nodes.h"

namespace venture::nodes {
namespace {

// A parsed, checked config: what to send and what counts as success.
struct HttpSpec {
  egress::Request request;
  std::vector<int> expect_status;  // empty: any 2xx
};

Outcome invalid_config(std::string message) {
  return Outcome::failure("invalid_config", std::move(message), false);
}

// A scalar as text for a header or query value; nullopt for objects, arrays and null.
std::optional<std::string> scalar_text(const json::value& v) {
  if (const json::string* s = v.if_string()) return std::string(*s);
  if (v.is_bool()) return v.get_bool() ? "true" : "false";
  if (v.is_number()) return base::compact_json(v);
  return std::nullopt;
}

Result<egress::Headers> parse_pairs(const json::object& cfg, std::string_view field,
                                    bool arrays) {
  egress::Headers out;
  const json::value* v = cfg.if_contains(field);
  if (v == nullptr || v->is_null()) return out;
  const json::object* o = v->if_object();
  if (o == nullptr) return invalid_argument_error(std::string(field) + " must be an object");
  for (const auto& kv : *o) {
    const json::array* list = arrays ? kv.value().if_array() : nullptr;
    const json::array single{kv.value()};
    for (const json::value& item : list != nullptr ? *list : single) {
      auto text = scalar_text(item);
      if (!text) {
        return invalid_argument_error(std::string(field) + "." + std::string(kv.key()) +
                                      " must be a string, number or boolean");
      }
      out.emplace_back(std::string(kv.key()), std::move(*text));
    }
  }
  return out;
}

Result<std::vector<int>> parse_expect(const json::object& cfg) {
  std::vector<int> out;
  const json::value* v = cfg.if_contains("expect_status");
  if (v == nullptr || v->is_null()) return out;
  const json::array single{*v};
  const json::array* list = v->is_array() ? &v->get_array() : &single;
  if (list->empty()) return invalid_argument_error("expect_status lists no status");
  for (const json::value& item : *list) {
    const auto code = item.if_int64();
    if (code == nullptr || *code < 100 || *code > 599) {
      return invalid_argument_error(
          "expect_status must be a status (100 to 599) or a list of them");
    }
    out.push_back(static_cast<int>(*code));
  }
  return out;
}

Result<Millis> parse_timeout(const json::object& cfg) {
  const json::value* v = cfg.if_contains("timeout");
  if (v == nullptr || v->is_null()) return limits::kEgressTimeoutDefault;
  Millis t{0};
  if (const json::string* s = v->if_string()) {
    auto d = parse_duration(*s);
    if (!d) return invalid_argument_error("timeout: " + d.error().message);
    t = *d;
  } else {
    return invalid_argument_error("timeout must be a duration such as \"30s\"");
  }
  if (t <= Millis(0) || t > limits::kEgressTimeoutMax) {
    return invalid_argument_error("timeout must be more than 0 and at most " +
                                  format_duration(limits::kEgressTimeoutMax));
  }
  return t;
}

bool has_header(const egress::Headers& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& h) { return egress::ascii_lower(h.first) == name; });
}

Result<HttpSpec> parse_spec(const engine::Dispatch& task) {
  const json::object* cfg = task.config.if_object();
  if (cfg == nullptr) return invalid_argument_error("the http config must be an object");
  HttpSpec spec;
  egress::Request& r = spec.request;
  if (const json::value* m = cfg->if_contains("method"); m != nullptr && !m->is_null()) {
    const json::string* s = m->if_string();
    if (s == nullptr) return invalid_argument_error("method must be a string");
    r.method = std::string(*s);
    for (char& c : r.method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  const json::string* url = base::find_string(*cfg, "url");
  if (url == nullptr) return invalid_argument_error("url must be a string");
  VENTURE_ASSIGN_OR_RETURN(egress::Headers query, parse_pairs(*cfg, "query", true));
  r.url = std::string(*url);
  if (!query.empty()) {
    auto with_query = egress::append_query(r.url, query);
    // A URL that does not parse is the client's to report (invalid_request), as without a query.
    if (with_query) r.url = std::move(*with_query);
  }
  VENTURE_ASSIGN_OR_RETURN(egress::Headers headers, parse_pairs(*cfg, "headers", false));
  // Venture's own headers win over the workflow's: the receiver de-duplicates retries by it.
  std::erase_if(headers, [](const auto& h) {
    return egress::ascii_lower(h.first) == "idempotency-key";
  });
  r.headers = std::move(headers);
  if (const json::value* body = cfg->if_contains("body"); body != nullptr && !body->is_null()) {
    const bool text = body->is_string();
    r.body = text ? std::string(body->get_string()) : base::compact_json(*body);
    if (!has_header(r.headers, "content-type")) {
      r.headers.emplace_back("Content-Type",
                             text ? "text/plain; charset=utf-8" : "application/json");
    }
  }
  r.headers.emplace_back("Idempotency-Key", task.idempotency_key);
  if (!has_header(r.headers, "user-agent")) {
    r.headers.emplace_back("User-Agent", "venture/" + std::string(kVersion));
  }
  VENTURE_ASSIGN_OR_RETURN(r.timeout, parse_timeout(*cfg));
  const json::value* max_bytes = cfg->if_contains("max_response_bytes");
  if (const json::value* v = max_bytes; v != nullptr && !v->is_null()) {
    const auto n = v->if_int64();
    if (n == nullptr || *n < 1 || *n > static_cast<int64_t>(limits::kNodeOutputBytesMax)) {
      return invalid_argument_error("max_response_bytes must be 1 to " +
                                    std::to_string(limits::kNodeOutputBytesMax));
    }
    r.max_response_bytes = static_cast<std::size_t>(*n);
  }
  VENTURE_ASSIGN_OR_RETURN(spec.expect_status, parse_expect(*cfg));
  return spec;
}

// Strict UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF).
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16) |
                       (static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8) |
                       static_cast<uint32_t>(static_cast<unsigned char>(in[i + 2]));
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string latin1_to_utf8(std::string_view in) {
  std::string out;
  for (char c : in) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80) {
      out += c;
    } else {
      out += static_cast<char>(0xC0 | (u >> 6));
      out += static_cast<char>(0x80 | (u & 0x3F));
    }
  }
  return out;
}

// application/json, text/json and any +json media type.
bool is_json_type(std::string_view content_type) {
  std::string type = egress::ascii_lower(content_type.substr(0, content_type.find(';')));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.erase(0, 1);
  return type == "application/json" || type == "text/json" || type.ends_with("+json");
}

const std::string* header_value(const egress::Headers& headers, std::string_view lower_name) {
  const std::string* found = nullptr;
  for (const auto& [n, v] : headers) {
    if (egress::ascii_lower(n) == lower_name) found = &v;
  }
  return found;
}

// The output of a response as the node reports it (docs/http.md).
json::object response_output(egress::Response& r) {
  json::object headers;
  for (auto& [name, value] : r.headers) {
    const std::string key = egress::ascii_lower(name);
    // Header values are bytes; bytes that are not UTF-8 are read as ISO-8859-1 (obs-text).
    std::string text = valid_utf8(value) ? value : latin1_to_utf8(value);
    if (json::value* existing = headers.if_contains(key)) {
      existing->get_string().append(", " + text);
    } else {
      headers[key] = text;
    }
  }
  json::object out{{"status", r.status}, {"headers", std::move(headers)}};
  const std::string* type = header_value(r.headers, "content-type");
  if (type != nullptr && is_json_type(*type)) {
    auto parsed = base::parse_json(r.body, {limits::kNodeOutputBytesMax, limits::kJsonDepthMax});
    if (parsed) {
      out["body"] = std::move(*parsed);
      return out;
    }
  }
  if (valid_utf8(r.body)) {
    out["body"] = json::string(r.body);
  } else {
    out["body"] = nullptr;
    out["body_base64"] = base64(r.body);
  }
  return out;
}

bool expected(const std::vector<int>& expect, int status) {
  if (expect.empty()) return status >= 200 && status <= 299;
  return std::find(expect.begin(), expect.end(), status) != expect.end();
}

// A valid UTF-8 prefix of the body for an error message, control characters blanked.
std::string snippet(std::string_view body) {
  std::string s(body.substr(0, 200));
  while (!s.empty() && !valid_utf8(s)) s.pop_back();
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return s;
}

Outcome to_outcome(egress::Response r, const std::vector<int>& expect, const std::string& method,
                   base::Clock& clock) {
  if (!r.ok()) return Outcome::failure(std::move(r.error), std::move(r.message), r.retryable);
  if (!expected(expect, r.status)) {
    // 429 and 5xx may succeed later; any other status will not.
    const bool retryable = r.status == 429 || r.status >= 500;
    // The URL without its query: a query may carry a secret, and messages go into the log.
    const std::string url = r.url.substr(0, r.url.find('?'));
    std::string message = method + " " + url + " answered " + std::to_string(r.status);
    if (const std::string s = snippet(r.body); !s.empty()) message += ": " + s;
    Outcome o = Outcome::failure("http_status", std::move(message), retryable);
    if (retryable) {
      if (const std::string* after = header_value(r.headers, "retry-after")) {
        const std::string* date = header_value(r.headers, "date");
        std::optional<Time> reference = date ? egress::parse_http_date(*date) : std::nullopt;
        if (auto wait = egress::parse_retry_after(*after, reference.value_or(clock.now()))) {
          o.retry_after = *wait;
        }
      }
    }
    return o;
  }
  json::object out = response_output(r);
  if (r.body.size() > (1u << 20) &&
      base::compact_json(out).size() > limits::kNodeOutputBytesMax) {
    return Outcome::failure(std::string(egress::kResponseTooLarge),
                            "the node's output would be larger than " +
                                std::to_string(limits::kNodeOutputBytesMax) + " bytes",
                            false);
  }
  return Outcome::success(std::move(out));
}

class Http final : public Executor {
 public:
  Http(egress::Client& client, base::Clock& clock) : client_(client), clock_(clock) {}

  void execute(const engine::Dispatch& task, std::function<void(Outcome)> done) override {
    auto spec = parse_spec(task);
    if (!spec) {
      done(invalid_config(spec.error().message));
      return;
    }
    std::string method = spec->request.method;
    client_.send(std::move(spec->request),
                 [done = std::move(done), expect = std::move(spec->expect_status),
                  method = std::move(method), clock = &clock_](egress::Response r) {
                   done(to_outcome(std::move(r), expect, method, *clock));
                 });
  }

 private:
  egress::Client& client_;
  base::Clock& clock_;
};

}  // namespace

void register_http(Registry& registry, egress::Client& client, base::Clock& clock) {
  // Registering http twice is a bug in the composition root.
  VENTURE_CHECK(registry.add("http", std::make_unique<Http>(client, clock)));
}

}  // namespace venture::nodes
