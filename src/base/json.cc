#include <algorithm>
#include <vector>

#include "base/base.h"

namespace venture::base {
namespace {

void line_column(std::string_view text, std::size_t offset, std::size_t& line, std::size_t& col) {
  line = 1;
  col = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
}

}  // namespace

// Strings without characters that need escaping (the common case) are copied as they are.
void append_json_string(std::string_view s, std::string& out) {
  for (char c : s) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      out += json::serialize(json::string_view(s.data(), s.size()));
      return;
    }
  }
  out += '"';
  out += s;
  out += '"';
}

namespace {

void canonical(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::object: {
      const json::object& o = v.get_object();
      std::vector<const json::key_value_pair*> items;
      items.reserve(o.size());
      for (const auto& kv : o) items.push_back(&kv);
      std::sort(items.begin(), items.end(),
                [](const auto* a, const auto* b) { return a->key() < b->key(); });
      out += '{';
      bool first = true;
      for (const auto* kv : items) {
        if (!first) out += ',';
        first = false;
        append_json_string(kv->key(), out);
        out += ':';
        canonical(kv->value(), out);
      }
      out += '}';
      return;
    }
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v.get_array()) {
        if (!first) out += ',';
        first = false;
        canonical(e, out);
      }
      out += ']';
      return;
    }
    case json::kind::string:
      append_json_string(v.get_string(), out);
      return;
    default:
      out += json::serialize(v);
  }
}

}  // namespace

Result<json::value> parse_json(std::string_view text, ParseLimits limits) {
  if (text.size() > limits.bytes_max) {
    return resource_exhausted_error("JSON document of " + std::to_string(text.size()) +
                                    " bytes exceeds the limit of " +
                                    std::to_string(limits.bytes_max));
  }
  json::parse_options opts;
  opts.max_depth = limits.depth_max;
  json::stream_parser p(json::storage_ptr(), opts);
  boost::system::error_code ec;
  const std::size_t n = p.write_some(text.data(), text.size(), ec);
  if (!ec && n < text.size()) {
    // Trailing content after a complete value.
    std::size_t line = 0, col = 0;
    line_column(text, n, line, col);
    return invalid_argument_error("line " + std::to_string(line) + ", column " +
                                  std::to_string(col) +
                                  ": unexpected content after the JSON value");
  }
  if (!ec) p.finish(ec);
  if (ec) {
    std::size_t line = 0, col = 0;
    line_column(text, n, line, col);
    if (ec == json::error::too_deep) {
      return resource_exhausted_error("JSON nesting deeper than " +
                                      std::to_string(limits.depth_max));
    }
    return invalid_argument_error("line " + std::to_string(line) + ", column " +
                                  std::to_string(col) + ": " + ec.message());
  }
  return p.release();
}

Result<json::value> parse_json(std::string_view text) {
  return parse_json(text, {limits::kEventBytesMax, limits::kJsonDepthMax});
}

std::string canonical_json(const json::value& v) {
  std::string out;
  canonical(v, out);
  return out;
}

void append_canonical_json(const json::value& v, std::string& out) { canonical(v, out); }

std::string compact_json(const json::value& v) { return json::serialize(v); }

const json::string* find_string(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v ? v->if_string() : nullptr;
}

const json::object* find_object(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v ? v->if_object() : nullptr;
}

const json::array* find_array(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v ? v->if_array() : nullptr;
}

std::string string_or(const json::object& o, std::string_view key, std::string_view fallback) {
  const json::string* s = find_string(o, key);
  return s ? std::string(*s) : std::string(fallback);
}

int64_t int_or(const json::object& o, std::string_view key, int64_t fallback) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return fallback;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
    return static_cast<int64_t>(v->get_uint64());
  }
  return fallback;
}

std::string escape_pointer_token(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

void append_pretty(const json::value& v, int depth, std::string& out) {
  const std::string indent(static_cast<std::size_t>(2 * (depth + 1)), ' ');
  const std::string closing(static_cast<std::size_t>(2 * depth), ' ');
  if (const json::object* o = v.if_object(); o != nullptr && !o->empty()) {
    out += "{\n";
    bool first = true;
    for (const auto& [key, value] : *o) {
      if (!first) out += ",\n";
      first = false;
      out += indent;
      append_json_string(key, out);
      out += ": ";
      append_pretty(value, depth + 1, out);
    }
    out += "\n" + closing + "}";
  } else if (const json::array* a = v.if_array(); a != nullptr && !a->empty()) {
    out += "[\n";
    bool first = true;
    for (const auto& value : *a) {
      if (!first) out += ",\n";
      first = false;
      out += indent;
      append_pretty(value, depth + 1, out);
    }
    out += "\n" + closing + "]";
  } else {
    out += json::serialize(v);
  }
}

}  // namespace

std::string pretty_json(const json::value& value) {
  std::string out;
  append_pretty(value, 0, out);
  return out;
}

}  // namespace venture::base
