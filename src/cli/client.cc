// The HTTP client of the CLI: libcurl's easy interface (one connection per call, HTTP/1.1), the
// JSON call helper and the mapping of HTTP errors to Error and exit codes.
#include <curl/curl.h>

#include <memory>
#include <mutex>

#include "cli/cli.h"
#include "cli/internal.h"

namespace venture::cli {
namespace {

void global_init() {
  // libcurl's global state is set up once per process, before any handle.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// State shared with the write callback of one transfer.
struct Transfer {
  CURL* handle = nullptr;
  const ChunkSink* on_chunk = nullptr;  // null: collect the whole body
  std::string body;
  bool stopped = false;    // on_chunk asked to stop
  bool too_large = false;  // the collected body passed kResponseBytesMax
};

bool is_success(long status) { return status >= 200 && status < 300; }

size_t write_callback(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  long status = 0;
  curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &status);
  if (t->on_chunk != nullptr && is_success(status)) {
    if (!(*t->on_chunk)(std::string_view(data, n))) {
      t->stopped = true;
      return 0;  // CURLE_WRITE_ERROR ends the transfer
    }
    return n;
  }
  if (t->body.size() + n > kResponseBytesMax) {
    t->too_large = true;
    return 0;
  }
  t->body.append(data, n);
  return n;
}

class CurlTransport final : public Transport {
 public:
  CurlTransport(std::string address, std::string token)
      : address_(std::move(address)), token_(std::move(token)) {
    global_init();
  }

  Result<HttpResponse> send(const HttpRequest& request) override {
    return perform(request, nullptr);
  }
  Result<HttpResponse> stream(const HttpRequest& request, const ChunkSink& on_chunk) override {
    return perform(request, &on_chunk);
  }

 private:
  Result<HttpResponse> perform(const HttpRequest& request, const ChunkSink* on_chunk);
  Error transfer_error(CURLcode rc, const char* detail) const;

  std::string address_;
  std::string token_;
};

Result<HttpResponse> CurlTransport::perform(const HttpRequest& request, const ChunkSink* on_chunk) {
  std::unique_ptr<CURL, CurlDeleter> handle(curl_easy_init());
  if (handle == nullptr) return internal_error("cannot initialise libcurl");
  CURL* h = handle.get();
  const std::string url = address_ + request.target;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(kConnectTimeout.count()));
  if (on_chunk == nullptr) {
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(kRequestTimeout.count()));
  } else {
    // A stream has no deadline, but one that delivers nothing (not even the server's
    // keep-alive comments) for kStreamStallTimeout is dead.
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(
        h, CURLOPT_LOW_SPEED_TIME,
        static_cast<long>(
            std::chrono::duration_cast<std::chrono::seconds>(kStreamStallTimeout).count()));
  }
  curl_easy_setopt(h, CURLOPT_USERAGENT, "venture-cli/0.1.0");

  curl_slist* raw_list = nullptr;
  auto add_header = [&raw_list](const std::string& line) {
    raw_list = curl_slist_append(raw_list, line.c_str());
  };
  if (!token_.empty()) add_header("Authorization: Bearer " + token_);
  bool has_accept = false;
  for (const auto& [name, value] : request.headers) {
    if (name == "Accept") has_accept = true;
    std::string line = name;
    line += ": ";
    line += value;
    add_header(line);
  }
  if (!has_accept) add_header("Accept: application/json");
  const bool has_body = request.method == "POST" || request.method == "PUT";
  if (has_body) {
    add_header("Content-Type: application/json");
    add_header("Expect:");  // no 100-continue round trip for large bodies
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  }
  std::unique_ptr<curl_slist, SlistDeleter> header_list(raw_list);
  if (request.method != "GET" && request.method != "POST") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, header_list.get());

  Transfer transfer;
  transfer.handle = h;
  transfer.on_chunk = on_chunk;
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &write_callback);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &transfer);
  char error_buffer[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);

  const CURLcode rc = curl_easy_perform(h);
  HttpResponse response;
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  response.status = static_cast<int>(status);
  char* content_type = nullptr;
  curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &content_type);
  if (content_type != nullptr) response.content_type = content_type;
  response.body = std::move(transfer.body);
  if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && transfer.stopped)) return response;
  if (transfer.too_large) {
    return resource_exhausted_error("the server's answer exceeds " +
                                    std::to_string(kResponseBytesMax >> 20) + " MiB");
  }
  return transfer_error(rc, error_buffer);
}

Error CurlTransport::transfer_error(CURLcode rc, const char* detail) const {
  const std::string why = detail != nullptr && detail[0] != '\0' ? detail : curl_easy_strerror(rc);
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
      return unavailable_error("cannot reach the server at " + address_ +
                               " (is `venture serve` running?)");
    case CURLE_OPERATION_TIMEDOUT:
      return deadline_exceeded_error("the server at " + address_ + " did not answer in time (" +
                                     why + ")");
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return invalid_argument_error("bad server address '" + address_ + "': " + why);
    default:
      return unavailable_error("the connection to " + address_ + " failed: " + why);
  }
}

bool is_unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

}  // namespace

std::unique_ptr<Transport> new_curl_transport(std::string address, std::string token) {
  return std::make_unique<CurlTransport>(std::move(address), std::move(token));
}

std::string normalize_address(std::string_view address) {
  std::string out(address);
  if (out.find("://") == std::string::npos) out = "http://" + out;
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out;
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (is_unreserved(c)) {
      out += c;
    } else {
      const auto b = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 0xF];
    }
  }
  return out;
}

Code code_of_status(int status) {
  switch (status) {
    case 400:
    case 422:
      return Code::kInvalidArgument;
    case 401:
      return Code::kUnauthenticated;
    case 403:
      return Code::kPermissionDenied;
    case 404:
      return Code::kNotFound;
    case 409:
      return Code::kFailedPrecondition;
    case 429:
      return Code::kResourceExhausted;
    case 503:
      return Code::kUnavailable;
    default:
      return Code::kInternal;
  }
}

int exit_code_of(const Error& error) {
  return error.code == Code::kUnauthenticated || error.code == Code::kPermissionDenied ? kExitAuth
                                                                                       : kExitError;
}

Result<Reply> call(Context& ctx, std::string method, std::string target, const json::value* body,
                   Headers headers, std::string_view file) {
  HttpRequest request;
  request.method = std::move(method);
  request.target = std::move(target);
  request.headers = std::move(headers);
  if (body != nullptr) {
    request.body = json::serialize(*body);
  } else if (request.method == "POST" || request.method == "PUT") {
    request.body = "{}";
  }
  VENTURE_ASSIGN_OR_RETURN(HttpResponse response, ctx.http->send(request));
  if (response.status < 200 || response.status >= 300) {
    std::string message = render_problem(response.status, response.body, file);
    if (response.status == 401 && !ctx.has_token) {
      message +=
          "\nno token found: pass --token, set VENTURE_TOKEN, or set VENTURE_DATA_DIR to the "
          "server's data directory (admin.token)";
    }
    return Error{code_of_status(response.status), std::move(message)};
  }
  Reply reply;
  reply.status = response.status;
  reply.raw = std::move(response.body);
  if (reply.raw.find_first_not_of(" \t\r\n") != std::string::npos) {
    auto parsed = base::parse_json(reply.raw, {kResponseBytesMax, 4 * limits::kJsonDepthMax});
    if (!parsed) {
      return internal_error("the server's answer to " + request.target +
                            " is not JSON: " + parsed.error().message);
    }
    reply.body = std::move(*parsed);
  }
  return reply;
}

}  // namespace venture::cli
