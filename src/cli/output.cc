// Pure helpers of the client commands: tables, fields, pretty JSON, problem rendering, argument
// parsing and the token lookup.
#include <algorithm>
#include <fstream>
#include <sstream>

#include "cli/internal.h"
#include "workflow/workflow.h"

namespace venture::cli {
namespace {

bool is_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

std::string one_line(std::string_view text) {
  std::string out(text);
  std::replace(out.begin(), out.end(), '\n', ' ');
  std::replace(out.begin(), out.end(), '\r', ' ');
  return out;
}

std::string trim(std::string_view text) {
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "";
  const std::size_t last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

// The trimmed content of a small file, or "" when it cannot be read.
std::string read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::string buf(4096, '\0');  // a token is 100 bytes or so; more is not a token file
  in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
  buf.resize(static_cast<std::size_t>(in.gcount()));
  return trim(buf);
}

}  // namespace

std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return !is_continuation(c); }));
}

std::string truncate_display(std::string_view text, std::size_t width) {
  std::size_t points = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (!is_continuation(text[i])) {
      if (points == width) return std::string(text.substr(0, i));
      ++points;
    }
  }
  return std::string(text);
}

std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(header.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], display_width(row[i]));
    }
  };
  measure(header);
  for (const auto& row : rows) measure(row);
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t i = 0; i < widths.size(); ++i) {
      const std::string text = i < row.size() ? one_line(row[i]) : "";
      line += text;
      if (i + 1 < widths.size()) line += std::string(widths[i] - display_width(text) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  emit(header);
  for (const auto& row : rows) emit(row);
  return out;
}

std::string render_fields(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::size_t width = 0;
  for (const auto& [key, value] : fields) {
    if (!value.empty()) width = std::max(width, display_width(key));
  }
  std::string out;
  for (const auto& [key, value] : fields) {
    if (value.empty()) continue;
    out += key;
    out.append(width - display_width(key) + 2, ' ');
    out += value;
    out += "\n";
  }
  return out;
}

std::string cell(const json::value* value) {
  if (value == nullptr || value->is_null()) return "";
  if (const json::string* s = value->if_string()) return std::string(*s);
  return json::serialize(*value);
}

std::string short_time(std::string_view rfc3339) {
  // "2026-11-23T10:00:00.123Z": the date, a space, the time to the second.
  if (rfc3339.size() >= 19 && rfc3339[10] == 'T') {
    return std::string(rfc3339.substr(0, 10)) + " " + std::string(rfc3339.substr(11, 8));
  }
  return std::string(rfc3339);
}

std::string format_elapsed(Millis elapsed) {
  const int64_t ms = std::max<int64_t>(0, elapsed.count());
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms < 60000) {
    const int64_t tenths = ms / 100;
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + "s";
  }
  auto two = [](int64_t n) { return (n < 10 ? "0" : "") + std::to_string(n); };
  const int64_t s = ms / 1000;
  if (s < 3600) return std::to_string(s / 60) + "m" + two(s % 60) + "s";
  return std::to_string(s / 3600) + "h" + two(s % 3600 / 60) + "m";
}

std::string render_problem(int status, std::string_view body, std::string_view file) {
  auto parsed = base::parse_json(body);
  const json::object* o = parsed ? parsed->if_object() : nullptr;
  if (o == nullptr || (o->if_contains("title") == nullptr && o->if_contains("detail") == nullptr)) {
    std::string text = one_line(trim(body));
    if (text.size() > 200) text = truncate_display(text, 200) + "…";
    return "HTTP " + std::to_string(status) + (text.empty() ? "" : ": " + text);
  }
  const std::string title = base::string_or(*o, "title", "HTTP " + std::to_string(status));
  const std::string detail = base::string_or(*o, "detail", "");
  std::string out = title;
  if (!detail.empty() && detail != title) out += ": " + detail;
  if (const json::array* errors = base::find_array(*o, "errors")) {
    for (const json::value& e : *errors) {
      const json::object* eo = e.if_object();
      if (eo == nullptr) continue;
      const std::string path = base::string_or(*eo, "path", "");
      const std::string message = base::string_or(*eo, "message", "");
      if (path.empty() && (message.empty() || message == detail)) continue;
      out += "\n";
      if (!file.empty()) {
        out += file;
        out += ": ";
      }
      if (!path.empty()) {
        out += path;
        out += ": ";
      }
      out += message;
    }
  }
  return out;
}

Result<std::pair<std::string, json::value>> parse_assignment(std::string_view text) {
  const std::size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return invalid_argument_error("expected key=value, got '" + std::string(text) + "'");
  }
  std::string key(text.substr(0, eq));
  const std::string_view raw = text.substr(eq + 1);
  auto parsed = base::parse_json(raw, {limits::kInputsBytesMax, limits::kJsonDepthMax});
  if (parsed && !raw.empty()) return std::make_pair(std::move(key), std::move(*parsed));
  return std::make_pair(std::move(key), json::value(json::string(raw)));
}

std::string resolve_token(std::string_view flag, std::optional<std::string> env_token,
                          std::optional<std::string> env_data_dir,
                          std::string_view default_data_dir) {
  if (!flag.empty()) return std::string(flag);
  if (env_token && !env_token->empty()) return *env_token;
  if (env_data_dir && !env_data_dir->empty()) {
    std::string token = read_token_file(*env_data_dir + "/admin.token");
    if (!token.empty()) return token;
  }
  return read_token_file(std::string(default_data_dir) + "/admin.token");
}

Result<json::value> read_document(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return invalid_argument_error(file + ": cannot open the file");
  // Read at most one byte over the limit so that a huge file is refused without reading it all.
  std::string text(limits::kDefinitionBytesMax + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  workflow::Problems problems;
  auto doc = workflow::parse_document(text, problems);
  if (doc && problems.empty()) return std::move(*doc);
  std::string message;
  for (const workflow::Problem& p : problems) {
    if (!message.empty()) message += "\n";
    message += file + ": " + (p.path.empty() ? p.message : p.path + ": " + p.message);
  }
  if (message.empty()) message = file + ": " + (doc ? "invalid document" : doc.error().message);
  return invalid_argument_error(std::move(message));
}

}  // namespace venture::cli
