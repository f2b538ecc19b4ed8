// Request decoding and the transport's own problem answers (see decode.h).
#include "api/decode.h"

#include <algorithm>
#include <boost/beast/websocket/rfc6455.hpp>
#include <limits>

namespace venture::api {
namespace internal {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

}  // namespace

static std::string_view status_title(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Internal Server Error";
  }
}

HttpResponse transport_problem_response(const TransportProblem& problem) {
  HttpResponse response;
  response.status = problem.status;
  response.content_type = "application/problem+json";
  json::object body;
  // The same shape as the application's problems (api/app.cc), so clients parse one form.
  const std::string_view slug = problem.status == 413   ? "too-large"
                                : problem.status == 431 ? "headers-too-large"
                                : problem.status == 503 ? "unavailable"
                                                        : "bad-request";
  body["type"] = "https://venture.dev/problems/" + std::string(slug);
  body["title"] = status_title(problem.status);
  body["status"] = problem.status;
  body["detail"] = problem.detail;
  body["errors"] = json::array();
  response.body = json::serialize(body);
  return response;
}

// A parse failure as the problem the client gets.
TransportProblem read_problem(const beast::error_code& ec, bool header_done,
                              const ServerOptions& options) {
  if (ec == http::error::header_limit || (ec == http::error::buffer_overflow && !header_done)) {
    return {431, "the request line and headers exceed " +
                     std::to_string(options.header_bytes_max) + " bytes"};
  }
  if (ec == http::error::body_limit) {
    return {413, "the request body exceeds " + std::to_string(options.body_bytes_max) + " bytes"};
  }
  return {400, "malformed request: " + ec.message()};
}

// Read errors after which there is nobody to answer: the peer left, or was too slow.

// Method label for metrics: a fixed set, so a client cannot grow the label space.
std::string method_label(std::string_view method) {
  static constexpr std::string_view kKnown[] = {"GET",    "POST",    "PUT",  "DELETE",
                                                "PATCH",  "HEAD",    "OPTIONS"};
  for (std::string_view known : kKnown) {
    if (method == known) {
      return std::string(known);
    }
  }
  return "other";
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

static Result<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      const int hi = i + 2 < text.size() ? hex_value(text[i + 1]) : -1;
      const int lo = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return invalid_argument_error("malformed percent-encoding in the request target");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace internal

Result<std::vector<std::pair<std::string, std::string>>> parse_form(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!text.empty()) {
    const std::size_t amp = text.find('&');
    const std::string_view part = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view() : text.substr(amp + 1);
    if (part.empty()) {
      continue;
    }
    const std::size_t eq = part.find('=');
    VENTURE_ASSIGN_OR_RETURN(std::string name, internal::percent_decode(part.substr(0, eq), true));
    std::string value;
    if (eq != std::string_view::npos) {
      VENTURE_ASSIGN_OR_RETURN(value, internal::percent_decode(part.substr(eq + 1), true));
    }
    out.emplace_back(std::move(name), std::move(value));
  }
  return out;
}

namespace internal {

static char lower_ascii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// One parsed Beast request as the application sees it. Shared by the sessions and
// decode_raw_request so the fuzzer exercises exactly what the server runs.
Result<HttpRequest> decode_request(const BeastRequest& request, std::string remote) {
  if (request.version() != 10 && request.version() != 11) {
    return invalid_argument_error("unsupported HTTP version");
  }
  const std::string_view target = request.target();
  if (target.empty() || target.front() != '/') {
    return invalid_argument_error("the request target must start with '/'");
  }
  HttpRequest out;
  out.method = std::string(request.method_string());
  out.target = std::string(target);
  const std::size_t question = target.find('?');
  const std::string_view raw_path = target.substr(0, question);
  VENTURE_ASSIGN_OR_RETURN(out.path, percent_decode(raw_path, false));
  if (out.path.find('\0') != std::string::npos) {
    return invalid_argument_error("the request path contains a NUL byte");
  }
  if (question != std::string_view::npos) {
    VENTURE_ASSIGN_OR_RETURN(out.query, parse_form(target.substr(question + 1)));
  }
  for (const auto& field : request) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(), lower_ascii);
    out.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  out.body = request.body();
  out.remote = std::move(remote);
  out.websocket_upgrade = beast::websocket::is_upgrade(request);
  return out;
}

void configure_parser(Parser& parser, const ServerOptions& options) {
  parser.header_limit(static_cast<std::uint32_t>(
      std::min<std::size_t>(options.header_bytes_max, std::numeric_limits<std::uint32_t>::max())));
  parser.body_limit(static_cast<std::uint64_t>(options.body_bytes_max));
}

}  // namespace internal

using internal::Parser;
using internal::TransportProblem;

Result<HttpRequest> decode_raw_request(std::string_view bytes, const ServerOptions& options) {
  Parser parser;
  internal::configure_parser(parser, options);
  parser.eager(true);
  boost::beast::error_code ec;
  std::size_t offset = 0;
  while (!parser.is_done()) {
    const std::size_t used =
        parser.put(boost::asio::const_buffer(bytes.data() + offset, bytes.size() - offset), ec);
    offset += used;
    if (ec == boost::beast::http::error::need_more) {
      if (offset < bytes.size() && used > 0) {
        ec = {};
        continue;
      }
      // The bytes end here: a complete request or a partial one. Beast requires some input
      // before put_eof.
      ec = {};
      if (parser.got_some()) {
        parser.put_eof(ec);
      }
      if (!ec && !parser.is_done()) {
        ec = boost::beast::http::error::partial_message;
      }
    }
    if (ec) {
      break;
    }
    if (used == 0) {
      ec = boost::beast::http::error::partial_message;  // no progress: stop rather than spin
      break;
    }
  }
  if (ec) {
    const TransportProblem problem = internal::read_problem(ec, parser.is_header_done(), options);
    if (problem.status == 400) {
      return invalid_argument_error(problem.detail);
    }
    return resource_exhausted_error(problem.detail);
  }
  return internal::decode_request(parser.get(), "");
}

}  // namespace venture::api
