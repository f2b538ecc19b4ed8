// Private to cli/: the parts of the client commands, declared here so that cli_test.cc can test
// them without a server. Other modules include only cli/cli.h.
//
// Layers, bottom up: Transport (HTTP; CurlTransport in client.cc, a fake in the test) → Api (JSON
// calls, problem+json errors) → commands (commands.cc; one function per command, writing to
// Context's streams) → CLI11 wiring (app.cc). Pure helpers: SseParser (sse.cc), tables and
// problem rendering (output.cc), FollowView (follow.cc), completion scripts (completion.cc).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/base.h"

namespace CLI {  // NOLINT(readability-identifier-naming): CLI11's namespace
class App;
}  // namespace CLI

namespace venture::cli {

// Bounds of the client (STYLE: put a limit on everything).
inline constexpr std::size_t kResponseBytesMax = 64 << 20;  // one non-streamed response body
// One SSE line or event: an event is at most limits::kEventBytesMax of JSON, plus framing.
inline constexpr std::size_t kSseEventBytesMax = limits::kEventBytesMax + (64 << 10);
inline constexpr std::chrono::milliseconds kConnectTimeout{5000};
inline constexpr std::chrono::milliseconds kRequestTimeout{60000};  // a whole non-streamed call
// A stream that delivers no byte for this long is dead (the server sends a keep-alive comment
// every limits::kStreamKeepalive).
inline constexpr std::chrono::milliseconds kStreamStallTimeout{3 * limits::kStreamKeepalive};
// Reconnects in a row without receiving an event in between; then the command fails.
inline constexpr int kStreamReconnectsMax = 10;
inline constexpr std::chrono::milliseconds kReconnectBackoffInitial{250};
inline constexpr std::chrono::milliseconds kReconnectBackoffMax{5000};
inline constexpr std::size_t kListLimitDefault = 50;        // rows a list command asks for
inline constexpr std::size_t kSummaryOutputBytesMax = 400;  // run output shown by the live view

inline constexpr std::string_view kDefaultAddress = "http://127.0.0.1:8000";

struct Context;

// ---- HTTP ------------------------------------------------------------------------------------

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";  // GET, POST, PUT or DELETE
  std::string target;          // path and query: "/v1/runs?status=failed"
  std::string body;            // sent (as application/json) for POST and PUT
  Headers headers;             // extra headers ("Idempotency-Key", "Last-Event-ID", "Accept")
};

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;  // for a stream: only the body of a non-2xx answer
};

// Called with each chunk of a streamed 2xx body; returning false stops the stream.
using ChunkSink = std::function<bool(std::string_view chunk)>;

class Transport {
 public:
  virtual ~Transport() = default;
  // One request with its whole response. Errors (no HTTP answer): kUnavailable when the server
  // cannot be reached or the connection failed, kDeadlineExceeded on a timeout,
  // kResourceExhausted when the body exceeds kResponseBytesMax, kInvalidArgument for a bad
  // address. The messages are ready to show.
  [[nodiscard]] virtual Result<HttpResponse> send(const HttpRequest& request) = 0;
  // A streamed GET. Returns the response once the server ends it or on_chunk returns false; a
  // connection that drops or stalls is an error (kUnavailable / kDeadlineExceeded).
  [[nodiscard]] virtual Result<HttpResponse> stream(const HttpRequest& request,
                                                    const ChunkSink& on_chunk) = 0;
};

// libcurl, HTTP/1.1; `address` is "http://host:port" (no trailing slash); an empty token sends
// no Authorization header.
std::unique_ptr<Transport> new_curl_transport(std::string address, std::string token);

// "http://127.0.0.1:8000": adds "http://" when the scheme is missing, drops trailing slashes.
std::string normalize_address(std::string_view address);
// Percent-encodes everything but RFC 3986 unreserved characters (for path segments and queries).
std::string url_encode(std::string_view text);

// ---- Errors ----------------------------------------------------------------------------------

// The canonical code of an HTTP error status (401 kUnauthenticated, 403 kPermissionDenied, 404
// kNotFound, 409 kFailedPrecondition, 400/422 kInvalidArgument, 429 kResourceExhausted, 503
// kUnavailable, other kInternal).
Code code_of_status(int status);
// The exit code of a failed command: kExitAuth for kUnauthenticated/kPermissionDenied, else
// kExitError.
int exit_code_of(const Error& error);

// Renders an error response for a terminal: "title: detail" on the first line, then one
// "path: message" line per errors[] entry (each prefixed with "file: " when file is not empty;
// an entry that repeats the detail without a path is left out). A body that is not a problem
// shows as "HTTP <status>: <its start>". No trailing newline.
std::string render_problem(int status, std::string_view body, std::string_view file = {});

// A JSON API call through ctx.http. A 2xx answer yields its status, raw body and parsed body
// (null when empty); any other is an error whose code follows code_of_status and whose message is
// render_problem(…, file) (with a hint on 401 when no token was found).
struct Reply {
  int status = 0;
  std::string raw;
  json::value body;
};
[[nodiscard]] Result<Reply> call(Context& ctx, std::string method, std::string target,
                                 const json::value* body = nullptr, Headers headers = {},
                                 std::string_view file = {});

// ---- Output helpers --------------------------------------------------------------------------

// Aligned columns separated by two spaces, a header row first, every line ending in '\n'; the
// last column is not padded. Widths count UTF-8 code points; newlines in cells become spaces.
std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows);
// "key  value" lines with the keys aligned; pairs with an empty value are left out.
std::string render_fields(const std::vector<std::pair<std::string, std::string>>& fields);
using base::pretty_json;
// A cell for a JSON value: strings bare, null as "", everything else compact JSON.
std::string cell(const json::value* value);
// "2026-11-23T10:00:00.123Z" → "2026-11-23 10:00:00" (other text unchanged).
std::string short_time(std::string_view rfc3339);
// "120ms", "1.2s", "2m03s", "1h02m".
std::string format_elapsed(Millis elapsed);
// Number of UTF-8 code points.
std::size_t display_width(std::string_view text);
// The first `width` code points of text.
std::string truncate_display(std::string_view text, std::size_t width);

// ---- Arguments -------------------------------------------------------------------------------

// `-i key=value`: the value is JSON when it parses as JSON, otherwise the string itself.
// kInvalidArgument when there is no '=' or the key is empty.
[[nodiscard]] Result<std::pair<std::string, json::value>> parse_assignment(std::string_view text);

// Where the token comes from, in order: the --token flag, $VENTURE_TOKEN, the file
// $VENTURE_DATA_DIR/admin.token, the file ./venture-data/admin.token (`default_data_dir`).
// Empty strings count as unset; the file's content is trimmed. "" when none is found.
std::string resolve_token(std::string_view flag, std::optional<std::string> env_token,
                          std::optional<std::string> env_data_dir,
                          std::string_view default_data_dir = "./venture-data");

// Reads a JSON or YAML file through workflow::parse_document. Errors carry one
// "FILE: /pointer: message" line per problem (kInvalidArgument) or "FILE: cannot open the file".
[[nodiscard]] Result<json::value> read_document(const std::string& file);

// ---- Server-sent events ----------------------------------------------------------------------

struct SseEvent {
  std::string id;    // the last event id at dispatch
  std::string type;  // "message" when the stream names none
  std::string data;  // data lines joined by '\n'
  friend bool operator==(const SseEvent&, const SseEvent&) = default;
};

// The event-stream format of the WHATWG HTML standard, fed in chunks split anywhere: lines end in
// CR, LF or CRLF; `data:` lines accumulate; a blank line dispatches; `:` lines are comments;
// `id:` sets the last event id (kept across events, and across reconnects of one stream).
class SseParser {
 public:
  explicit SseParser(std::size_t bytes_max = kSseEventBytesMax) : bytes_max_(bytes_max) {}
  // Calls on_event for each event completed by this chunk. kResourceExhausted when a line or an
  // event exceeds bytes_max (the parser must then be reset).
  [[nodiscard]] Status feed(std::string_view chunk,
                            const std::function<void(const SseEvent&)>& on_event);
  // Drops a partly received event (the connection dropped); keeps the last event id.
  void reset();
  const std::string& last_event_id() const { return last_id_; }

 private:
  void process_line(std::string_view line, const std::function<void(const SseEvent&)>& on_event);

  std::size_t bytes_max_;
  std::string line_;
  bool skip_lf_ = false;  // the previous chunk ended in CR: a leading LF belongs to it
  std::string data_;
  bool has_data_ = false;
  std::string type_;
  std::string id_buffer_;
  std::string last_id_;
};

// ---- Context and commands ----------------------------------------------------------------------

// What a client command needs; built by app.cc from the global options and the environment.
struct Context {
  Transport* http = nullptr;
  std::string address;  // for messages
  bool has_token = false;
  bool json = false;                 // -o json
  bool terminal = false;             // stdout is a terminal: the live follow view
  bool color = false;                // ANSI colors allowed (a terminal and NO_COLOR unset)
  std::size_t terminal_rows = 0;     // 0 when unknown
  std::size_t terminal_columns = 0;  // 0 when unknown
  std::chrono::milliseconds backoff_initial = kReconnectBackoffInitial;
  const CLI::App* root = nullptr;  // for `completion`
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
};

// Every option and positional of the client commands (only one command runs per process).
struct Args {
  std::string address;  // --address; "" = $VENTURE_ADDRESS or the default
  std::string token;    // --token; "" = resolve_token
  std::string output = "table";
  std::string file;                      // workflow register FILE, patch create RUN FILE
  std::string ref;                       // run start FILE|NAME[@TAG], workflow show NAME[@REF]
  std::string name, tag, version, role;  // tag move, token create
  std::string id;                        // RUN, PATCH or token ID
  std::vector<std::string> inputs;       // -i key=value
  std::string inputs_file;               // --inputs FILE
  std::string idempotency_key;
  bool follow = false;
  std::string status, workflow, cursor;  // run list filters
  std::size_t limit = kListLimitDefault;
  std::string reason;
  std::string node;       // logs stream --node
  std::string filter;     // logs stream --filter errors
  int64_t from = 0;       // logs stream --from SEQ (0: from the start)
  std::string from_node;  // replay --from NODE
  std::string shell;      // completion SHELL
  std::string run;        // approvals list --run
  std::string decision;   // approve APPROVAL approve|reject
};

// A command returns its exit code (kExitOk, kExitError for `audit verify` finding a break,
// kExitRunFailed for a followed run that failed) or an error, which run_command prints.
using Command = Result<int> (*)(Context& ctx, const Args& args);

// Runs a command: prints its error ("venture: " and the rendered problem) to ctx.err and maps it
// to an exit code; nothing escapes (an exception is an internal error, exit 1).
int run_command(Context& ctx, const Args& args, Command command);

Result<int> cmd_workflow_register(Context& ctx, const Args& args);
Result<int> cmd_workflow_list(Context& ctx, const Args& args);
Result<int> cmd_workflow_show(Context& ctx, const Args& args);
Result<int> cmd_tag_move(Context& ctx, const Args& args);
Result<int> cmd_run_start(Context& ctx, const Args& args);
Result<int> cmd_run_status(Context& ctx, const Args& args);
Result<int> cmd_run_list(Context& ctx, const Args& args);
Result<int> cmd_run_cancel(Context& ctx, const Args& args);
Result<int> cmd_run_pause(Context& ctx, const Args& args);
Result<int> cmd_run_resume(Context& ctx, const Args& args);
Result<int> cmd_logs_stream(Context& ctx, const Args& args);
Result<int> cmd_patch_create(Context& ctx, const Args& args);
Result<int> cmd_patch_list(Context& ctx, const Args& args);
Result<int> cmd_patch_show(Context& ctx, const Args& args);
Result<int> cmd_patch_approve(Context& ctx, const Args& args);
Result<int> cmd_patch_reject(Context& ctx, const Args& args);
Result<int> cmd_replay(Context& ctx, const Args& args);
Result<int> cmd_approvals_list(Context& ctx, const Args& args);
Result<int> cmd_approvals_show(Context& ctx, const Args& args);
Result<int> cmd_approve(Context& ctx, const Args& args);
Result<int> cmd_freeze(Context& ctx, const Args& args);
Result<int> cmd_unfreeze(Context& ctx, const Args& args);
Result<int> cmd_control_status(Context& ctx, const Args& args);
Result<int> cmd_token_create(Context& ctx, const Args& args);
Result<int> cmd_token_list(Context& ctx, const Args& args);
Result<int> cmd_token_revoke(Context& ctx, const Args& args);
Result<int> cmd_audit_verify(Context& ctx, const Args& args);
Result<int> cmd_health(Context& ctx, const Args& args);
Result<int> cmd_completion(Context& ctx, const Args& args);

// ---- Following a run -------------------------------------------------------------------------

// Called once per event, in seq order: the event's JSON text as received and the parsed object.
using EventSink = std::function<void(std::string_view raw, const json::object& event)>;

// Streams a run's events over SSE from after `after_seq` until its terminal event (run.succeeded,
// run.failed, run.cancelled). A dropped connection is resumed with Last-Event-ID (and ?after=) so
// that no event is missed or delivered twice; kStreamReconnectsMax failures in a row end it.
// on_batch runs after each received chunk (the live view redraws there).
// Returns the run's final status ("succeeded", "failed" or "cancelled"). When the server ends the
// stream without the terminal event (a --from past it), the status comes from GET /v1/runs/{id}.
[[nodiscard]] Result<std::string> stream_run_events(Context& ctx, const std::string& run,
                                                    int64_t after_seq, const EventSink& on_event,
                                                    const std::function<void()>& on_batch);

// `-f`: follows a run with a FollowView (live in a terminal, plain lines otherwise, ndjson with
// -o json) until it ends; kExitOk if it succeeded, kExitRunFailed if it failed or was cancelled.
// The live view orders nodes as `definition` lists them (null: fetched from GET /v1/workflows).
[[nodiscard]] Result<int> follow_run(Context& ctx, const std::string& run,
                                     const json::value& definition = nullptr);

// One plain line for an event, without newline: "HH:MM:SS.mmm type node[index] details" (UTC),
// details being the attempt, the error "code: message", or the reason.
std::string format_event_line(const json::object& event);
bool is_terminal_event(std::string_view type);
bool is_error_event(std::string_view type);  // node.failed|retrying|item_failed, run.failed

enum class ViewMode {
  kPlain,  // one line per event and a final "run ID STATUS" line
  kLive,   // one line per node, redrawn in place with ANSI cursor moves
  kJson,   // each event's JSON on its own line (ndjson)
};

// The state machine behind `-f`: folds a run's events into run and node states and renders them.
class FollowView {
 public:
  FollowView(ViewMode mode, bool color, std::string run, std::size_t columns = 0);
  // Node order from a definition (its `nodes[].id`), so that nodes without state yet show as
  // pending in the live view. Call before seed.
  void seed_order(const json::value& definition);
  // Initial states from GET /v1/runs/{id} (its `nodes` object), for the live view.
  void seed(const json::object& run_detail);
  void on_event(std::string_view raw, const json::object& event, std::ostream& out);
  // Live view: redraws the node lines in place. A no-op in the other modes.
  void redraw(std::ostream& out);
  // The final line(s): the run's outcome (and output, in the live view).
  void finish(std::ostream& out);
  // The run ended without its terminal event reaching the view (see stream_run_events).
  void set_final_status(const std::string& status);
  bool done() const { return done_; }
  const std::string& run_status() const { return run_status_; }
  // kExitOk if the run succeeded, kExitRunFailed if it failed or was cancelled.
  int exit_code() const;
  std::size_t node_count() const { return nodes_.size(); }
  // The lines of the live view, without colors and cursor moves (for tests and for redraw).
  std::vector<std::string> live_lines(bool colored) const;

 private:
  struct NodeState {
    std::string id;
    std::string status = "pending";
    int64_t attempt = 0;
    std::string detail;  // an error or a reason
    std::optional<Time> started, finished;
    int64_t items_total = -1;
    int64_t items_done = 0;
    bool replayed = false;
  };
  NodeState& node(const std::string& id);
  void apply(const json::object& event);
  std::string node_line(const NodeState& n, std::size_t id_width, bool colored) const;

  ViewMode mode_;
  bool color_;
  std::string run_;
  std::size_t columns_;
  std::vector<NodeState> nodes_;
  std::string run_status_ = "queued";
  std::string run_error_;
  std::string run_output_;
  std::optional<Time> run_started_, run_finished_;
  bool done_ = false;
  std::size_t drawn_ = 0;  // lines drawn by the last redraw
};

// ---- Completion ------------------------------------------------------------------------------

// A completion script for bash, zsh or fish generated from the app's subcommand tree (every
// subcommand and option, with descriptions where the shell shows them). kInvalidArgument for
// another shell.
[[nodiscard]] Result<std::string> completion_script(const CLI::App& app, std::string_view shell);

}  // namespace venture::cli
