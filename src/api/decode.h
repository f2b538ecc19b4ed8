// api-internal: request decoding and the transport's error answers, without coroutines (so the
// request fuzz target builds on its own: clang 14 cannot compile the coroutine sessions with the
// fuzzer's sanitizers). Included by server.cc, stream.cc and request_fuzz.cc's library.
#pragma once

#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <string>
#include <string_view>

#include "api/http.h"
#include "api/server.h"

namespace venture::api::internal {

using Parser = boost::beast::http::request_parser<boost::beast::http::string_body>;
using BeastRequest = boost::beast::http::request<boost::beast::http::string_body>;

// A problem the transport answers itself (malformed HTTP, bounds).
struct TransportProblem {
  int status = 400;
  std::string detail;
};
HttpResponse transport_problem_response(const TransportProblem& problem);
// A parse failure as the problem the client gets (400, 413 or 431).
TransportProblem read_problem(const boost::beast::error_code& ec, bool header_done,
                              const ServerOptions& options);
// The method as a metrics label (known methods, else "OTHER").
std::string method_label(std::string_view method);
// Beast's request as the application's HttpRequest (percent-decoding, lower-case names).
[[nodiscard]] Result<HttpRequest> decode_request(const BeastRequest& request, std::string remote);
void configure_parser(Parser& parser, const ServerOptions& options);

}  // namespace venture::api::internal
