// Goal: the client commands behave as SPEC §5 says without a server: `workflow validate` prints one
// line per problem; the SSE parser survives chunks split anywhere; a dropped stream resumes from
// the last event with nothing missed or repeated; tables, problems, `-i` and the token lookup
// render and resolve as documented; the follow view renders states and returns the run's exit
// code; commands send the documented requests and map HTTP errors to exit codes; completion
// scripts cover every command. Method: temporary files, a scripted fake Transport, output captured
// in streams, and for the libcurl transport a one-connection-at-a-time HTTP server on a loopback
// port chosen by the kernel.
#include "cli/cli.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/base.h"
#include "cli/internal.h"

namespace venture::cli {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "venture-cli-XXXXXX").string();
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string write(const std::string& name, const std::string& text) const {
    std::string path = path_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---- workflow validate ------------------------------------------------------------------------

class ValidateTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    return dir_.write(name, text);
  }
  TempDir dir_;
};

TEST_F(ValidateTest, ValidFilesPrintOkAndExitZero) {
  const std::string a = write("a.json", R"({"name":"a","nodes":[{"id":"x","type":"noop"}]})");
  const std::string b = write("b.yaml", "name: b\nnodes:\n  - {id: x, type: noop}\n");
  std::ostringstream out;
  EXPECT_EQ(validate_files({a, b}, false, out), kExitOk);
  EXPECT_EQ(out.str(), a + ": ok\n" + b + ": ok\n");
}

TEST_F(ValidateTest, ProblemsArePrintedWithPathsAndExitOne) {
  const std::string bad = write("bad.json", R"({"name":"a","nodes":[{"id":"x","type":"noop",
      "needs":["y"]},{"id":"z","type":"transform","config":{"expr":"| x"}}]})");
  const std::string missing = dir_.path() + "/missing.json";
  std::ostringstream out;
  EXPECT_EQ(validate_files({bad, missing}, false, out), kExitError);
  const std::string text = out.str();
  EXPECT_NE(text.find(bad + ": /nodes/0/needs/0: "), std::string::npos) << text;
  EXPECT_NE(text.find(bad + ": /nodes/1/config/expr: jq: "), std::string::npos) << text;
  EXPECT_NE(text.find(missing + ": cannot open the file\n"), std::string::npos) << text;
  for (char c : text) EXPECT_NE(c, '\r');
}

TEST_F(ValidateTest, JsonOutputIsOneDocument) {
  const std::string bad = write("bad.json", "{");
  std::ostringstream out;
  EXPECT_EQ(validate_files({bad}, true, out), kExitError);
  auto doc = base::parse_json(out.str()).value();
  const auto& first = doc.as_array().at(0).as_object();
  EXPECT_EQ(first.at("file").as_string(), bad);
  EXPECT_EQ(first.at("valid"), false);
  EXPECT_FALSE(first.at("errors").as_array().empty());
}

// ---- SSE parser --------------------------------------------------------------------------------

std::vector<SseEvent> parse_all(SseParser& parser, const std::vector<std::string_view>& chunks) {
  std::vector<SseEvent> events;
  for (std::string_view chunk : chunks) {
    EXPECT_TRUE(parser.feed(chunk, [&](const SseEvent& e) { events.push_back(e); }));
  }
  return events;
}

TEST(SseParserTest, ParsesFieldsCommentsAndMultiLineData) {
  SseParser parser;
  const std::string stream =
      ": keep-alive\n"
      "id: 1\nevent: node.started\ndata: {\"seq\":1}\n\n"
      "id:2\ndata: line one\ndata:line two\n\n"
      ": another comment\n\n"
      "data\n\n"
      "event: x\nunknown: y\nretry: 10\n\n";
  auto events = parse_all(parser, {stream});
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], (SseEvent{"1", "node.started", "{\"seq\":1}"}));
  EXPECT_EQ(events[1], (SseEvent{"2", "message", "line one\nline two"}));
  EXPECT_EQ(events[2], (SseEvent{"2", "message", ""}));  // a bare `data` line: empty data
  EXPECT_EQ(parser.last_event_id(), "2");
}

TEST(SseParserTest, ChunksSplitAnywhereGiveTheSameEvents) {
  const std::string stream =
      "id: 7\r\nevent: a\r\ndata: x\r\n\r\nid: 8\rdata: y\r\rid: 9\ndata: {\"k\": \"v\"}\n\n";
  SseParser whole;
  const auto expected = parse_all(whole, {stream});
  ASSERT_EQ(expected.size(), 3u);
  EXPECT_EQ(expected[1], (SseEvent{"8", "message", "y"}));
  EXPECT_EQ(expected[2], (SseEvent{"9", "message", "{\"k\": \"v\"}"}));
  for (std::size_t i = 0; i <= stream.size(); ++i) {
    for (std::size_t j = i; j <= stream.size(); j += 3) {
      SseParser parser;
      auto events = parse_all(
          parser, {std::string_view(stream).substr(0, i), std::string_view(stream).substr(i, j - i),
                   std::string_view(stream).substr(j)});
      EXPECT_EQ(events, expected) << "split at " << i << ", " << j;
      EXPECT_EQ(parser.last_event_id(), "9");
    }
  }
  SseParser bytewise;
  std::vector<SseEvent> events;
  for (char c : stream) {
    ASSERT_TRUE(
        bytewise.feed(std::string_view(&c, 1), [&](const SseEvent& e) { events.push_back(e); }));
  }
  EXPECT_EQ(events, expected);
}

TEST(SseParserTest, IdWithoutDataStillMovesTheLastIdAndResetDropsAPartialEvent) {
  SseParser parser;
  auto events = parse_all(parser, {"id: 5\n\n", "id: 6\ndata: partial"});
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(parser.last_event_id(), "5");
  parser.reset();  // the connection dropped inside event 6
  events = parse_all(parser, {"\n\ndata: z\n\n"});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (SseEvent{"5", "message", "z"}));
}

TEST(SseParserTest, OversizedLinesAndEventsAreRefused) {
  SseParser parser(16);
  EXPECT_EQ(parser.feed(std::string(17, 'x'), [](const SseEvent&) {}).error().code,
            Code::kResourceExhausted);
  SseParser events(16);
  EXPECT_EQ(events.feed("data: 0123456\ndata: 0123456\ndata: 0123456\n", [](const SseEvent&) {})
                .error()
                .code,
            Code::kResourceExhausted);
}

// ---- Output helpers ----------------------------------------------------------------------------

TEST(OutputTest, TablesAlignColumnsByCodePoints) {
  const std::string table = render_table(
      {"ID", "STATUS", "NOTE"},
      {{"run_1", "succeeded", "✓ done"}, {"run_22", "failed", ""}, {"r", "x\ny", "last"}});
  EXPECT_EQ(table,
            "ID      STATUS     NOTE\n"
            "run_1   succeeded  ✓ done\n"
            "run_22  failed\n"
            "r       x y        last\n");
  EXPECT_EQ(render_table({"A"}, {}), "A\n");
  EXPECT_EQ(render_fields({{"id", "1"}, {"workflow", "w"}, {"skip", ""}}),
            "id        1\nworkflow  w\n");
}

TEST(OutputTest, HelpersFormatValuesAndTimes) {
  EXPECT_EQ(
      pretty_json(base::parse_json(R"({"a":[1,{}],"b":{"c":"d"},"e":[]})").value()),
      "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": {\n    \"c\": \"d\"\n  },\n  \"e\": []\n}");
  const json::value s = "text", n = 3, nul = nullptr;
  EXPECT_EQ(cell(&s), "text");
  EXPECT_EQ(cell(&n), "3");
  EXPECT_EQ(cell(&nul), "");
  EXPECT_EQ(cell(nullptr), "");
  EXPECT_EQ(short_time("2026-11-23T10:00:00.123Z"), "2026-11-23 10:00:00");
  EXPECT_EQ(short_time("soon"), "soon");
  EXPECT_EQ(format_elapsed(Millis(120)), "120ms");
  EXPECT_EQ(format_elapsed(Millis(1250)), "1.2s");
  EXPECT_EQ(format_elapsed(Millis(123000)), "2m03s");
  EXPECT_EQ(format_elapsed(Millis(3720000)), "1h02m");
  EXPECT_EQ(truncate_display("ab✓cd", 3), "ab✓");
  EXPECT_EQ(display_width("ab✓cd"), 5u);
  EXPECT_EQ(url_encode("b2:ab/c d"), "b2%3Aab%2Fc%20d");
  EXPECT_EQ(normalize_address("localhost:8000/"), "http://localhost:8000");
  EXPECT_EQ(normalize_address("https://x"), "https://x");
}

TEST(OutputTest, ProblemsRenderTitleDetailAndEachError) {
  const std::string body = R"({"type":"https://venture.dev/problems/validation",
    "title":"Unprocessable Content","status":422,"detail":"the definition is invalid",
    "errors":[{"path":"/nodes/0/needs/0","message":"unknown node 'y'"},
              {"path":"","message":"the definition is invalid"},
              {"path":"","message":"another"}]})";
  EXPECT_EQ(render_problem(422, body),
            "Unprocessable Content: the definition is invalid\n"
            "/nodes/0/needs/0: unknown node 'y'\n"
            "another");
  EXPECT_EQ(render_problem(422, body, "wf.yaml"),
            "Unprocessable Content: the definition is invalid\n"
            "wf.yaml: /nodes/0/needs/0: unknown node 'y'\n"
            "wf.yaml: another");
  EXPECT_EQ(render_problem(404, R"({"title":"Not Found","status":404,"detail":""})"), "Not Found");
  EXPECT_EQ(render_problem(502, "<html>bad\ngateway</html>"), "HTTP 502: <html>bad gateway</html>");
  EXPECT_EQ(render_problem(500, ""), "HTTP 500");
  EXPECT_EQ(code_of_status(401), Code::kUnauthenticated);
  EXPECT_EQ(exit_code_of(Error{code_of_status(403), ""}), kExitAuth);
  EXPECT_EQ(exit_code_of(Error{code_of_status(401), ""}), kExitAuth);
  EXPECT_EQ(exit_code_of(Error{code_of_status(409), ""}), kExitError);
  EXPECT_EQ(exit_code_of(unavailable_error("down")), kExitError);
}

TEST(ArgumentsTest, AssignmentsParseJsonElseString) {
  auto kv = [](std::string_view text) { return parse_assignment(text).value(); };
  EXPECT_EQ(kv("n=3").first, "n");
  EXPECT_EQ(kv("n=3").second, json::value(3));
  EXPECT_EQ(kv("b=true").second, json::value(true));
  EXPECT_EQ(kv("o={\"a\":[1]}").second, base::parse_json(R"({"a":[1]})").value());
  EXPECT_EQ(kv("s=hello world").second, json::value("hello world"));
  EXPECT_EQ(kv("q=\"3\"").second, json::value("3"));
  EXPECT_EQ(kv("e=").second, json::value(""));
  EXPECT_EQ(kv("url=a=b").second, json::value("a=b"));
  EXPECT_EQ(kv("n=null").second, json::value(nullptr));
  EXPECT_EQ(parse_assignment("novalue").error().code, Code::kInvalidArgument);
  EXPECT_EQ(parse_assignment("=3").error().code, Code::kInvalidArgument);
}

TEST(ArgumentsTest, TokenLookupOrder) {
  TempDir env_dir, default_dir;
  env_dir.write("admin.token", "env-file-token\n");
  default_dir.write("admin.token", "  default-file-token \n");
  const std::string& def = default_dir.path();
  EXPECT_EQ(resolve_token("flag", "env", env_dir.path(), def), "flag");
  EXPECT_EQ(resolve_token("", "env", env_dir.path(), def), "env");
  EXPECT_EQ(resolve_token("", "", env_dir.path(), def), "env-file-token");
  EXPECT_EQ(resolve_token("", std::nullopt, env_dir.path(), def), "env-file-token");
  EXPECT_EQ(resolve_token("", std::nullopt, env_dir.path() + "/none", def), "default-file-token");
  EXPECT_EQ(resolve_token("", std::nullopt, std::nullopt, def), "default-file-token");
  EXPECT_EQ(resolve_token("", std::nullopt, std::nullopt, def + "/none"), "");
}

TEST(ArgumentsTest, DocumentsReportFileAndPointer) {
  TempDir dir;
  const std::string yaml = dir.write("in.yaml", "q: hello\nn: 3\n");
  EXPECT_EQ(read_document(yaml).value(), base::parse_json(R"({"q":"hello","n":3})").value());
  const std::string bad = dir.write("bad.json", "{\"a\": ");
  auto r = read_document(bad);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().message.starts_with(bad + ": ")) << r.error().message;
  EXPECT_EQ(read_document(dir.path() + "/none").error().message,
            dir.path() + "/none: cannot open the file");
}

// ---- A scripted transport ---------------------------------------------------------------------

struct ScriptedStream {
  std::vector<std::string> chunks;
  Result<HttpResponse> end = HttpResponse{200, "text/event-stream", ""};
};

class FakeTransport final : public Transport {
 public:
  Result<HttpResponse> send(const HttpRequest& request) override {
    requests.push_back(request);
    if (replies.empty()) return unavailable_error("no scripted reply");
    Result<HttpResponse> r = replies.front();
    replies.pop_front();
    return r;
  }
  Result<HttpResponse> stream(const HttpRequest& request, const ChunkSink& on_chunk) override {
    requests.push_back(request);
    if (streams.empty()) return unavailable_error("no scripted stream");
    ScriptedStream s = streams.front();
    streams.pop_front();
    for (const std::string& chunk : s.chunks) {
      if (!on_chunk(chunk)) return HttpResponse{200, "text/event-stream", ""};
    }
    return s.end;
  }
  void reply(int status, std::string body, std::string content_type = "application/json") {
    replies.push_back(HttpResponse{status, std::move(content_type), std::move(body)});
  }

  std::vector<HttpRequest> requests;
  std::deque<Result<HttpResponse>> replies;
  std::deque<ScriptedStream> streams;
};

std::string header(const HttpRequest& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

class CommandTest : public ::testing::Test {
 protected:
  CommandTest() {
    ctx_.http = &http_;
    ctx_.address = "http://127.0.0.1:1";
    ctx_.has_token = true;
    ctx_.backoff_initial = std::chrono::milliseconds(0);
    ctx_.out = &out_;
    ctx_.err = &err_;
  }
  int run(Command command) { return run_command(ctx_, args_, command); }

  FakeTransport http_;
  Context ctx_;
  Args args_;
  std::ostringstream out_, err_;
};

std::string event(int64_t seq, std::string_view type, std::string_view node = "",
                  std::string_view data = "{}", std::string_view time = "10:00:00.000") {
  std::string e = R"({"seq":)" + std::to_string(seq) + R"(,"id":"evt_)" + std::to_string(seq) +
                  R"(","type":")" + std::string(type) + R"(","time":"2026-11-23T)" +
                  std::string(time) + R"(Z","run":"run_1")";
  if (!node.empty()) e += R"(,"node":")" + std::string(node) + "\"";
  return e + R"(,"data":)" + std::string(data) + "}";
}

std::string sse(int64_t seq, std::string_view type, std::string_view node = "",
                std::string_view data = "{}", std::string_view time = "10:00:00.000") {
  return "id: " + std::to_string(seq) + "\nevent: " + std::string(type) +
         "\ndata: " + event(seq, type, node, data, time) + "\n\n";
}

// ---- Event lines and the follow view ----------------------------------------------------------

json::object parse_event(const std::string& text) {
  return base::parse_json(text).value().as_object();
}

TEST(EventLineTest, PlainLinesCarryTimeTypeNodeAndDetails) {
  EXPECT_EQ(
      format_event_line(parse_event(event(1, "node.succeeded", "fetch", "{}", "10:00:01.250"))),
      "10:00:01.250 node.succeeded fetch");
  EXPECT_EQ(format_event_line(parse_event(event(2, "node.started", "fetch", R"({"attempt":2})"))),
            "10:00:00.000 node.started fetch  attempt 2");
  EXPECT_EQ(format_event_line(parse_event(
                event(3, "node.retrying", "fetch",
                      R"({"attempt":1,"error":{"code":"unavailable","message":"503"}})"))),
            "10:00:00.000 node.retrying fetch  attempt 1 failed: unavailable: 503");
  EXPECT_EQ(format_event_line(parse_event(event(4, "node.started", "each", R"({"index":3})"))),
            "10:00:00.000 node.started each[3]");
  EXPECT_EQ(format_event_line(parse_event(event(
                5, "run.failed", "", R"({"error":{"code":"boom","message":"x","node":"f"}})"))),
            "10:00:00.000 run.failed  boom: x (node f)");
  EXPECT_EQ(
      format_event_line(parse_event(event(6, "node.skipped", "d", R"({"reason":"if is false"})"))),
      "10:00:00.000 node.skipped d  if is false");
}

std::vector<std::string> chain_events(bool fail) {
  std::vector<std::string> events = {
      event(10, "run.submitted", "", R"({"workflow":"w"})", "10:00:00.000"),
      event(11, "run.started", "", "{}", "10:00:00.010"),
      event(12, "node.started", "fetch", R"({"attempt":1})", "10:00:00.020"),
      event(13, "node.succeeded", "fetch", R"({"output":1})", "10:00:00.140"),
      event(14, "node.started", "build", R"({"attempt":1})", "10:00:00.150"),
  };
  if (fail) {
    events.push_back(event(15, "node.failed", "build",
                           R"({"error":{"code":"fail","message":"broken"}})", "10:00:00.200"));
    events.push_back(event(16, "run.failed", "",
                           R"({"error":{"code":"fail","message":"broken","node":"build"}})",
                           "10:00:00.210"));
  } else {
    events.push_back(event(15, "node.succeeded", "build", "{}", "10:00:01.150"));
    events.push_back(event(16, "run.succeeded", "", R"({"output":{"ok":true}})", "10:00:01.200"));
  }
  return events;
}

TEST(FollowViewTest, PlainModePrintsOneLinePerEventAndTheOutcome) {
  for (bool fail : {false, true}) {
    FollowView view(ViewMode::kPlain, false, "run_1");
    std::ostringstream out;
    for (const std::string& e : chain_events(fail)) view.on_event(e, parse_event(e), out);
    EXPECT_TRUE(view.done());
    view.finish(out);
    std::istringstream lines(out.str());
    std::vector<std::string> got;
    for (std::string line; std::getline(lines, line);) got.push_back(line);
    ASSERT_EQ(got.size(), 8u) << out.str();
    EXPECT_EQ(got[0], "10:00:00.000 run.submitted  w");
    EXPECT_EQ(got[3], "10:00:00.140 node.succeeded fetch");
    if (fail) {
      EXPECT_EQ(got[5], "10:00:00.200 node.failed build  fail: broken");
      EXPECT_EQ(got[7], "run run_1 failed: fail: broken (node build)");
      EXPECT_EQ(view.exit_code(), kExitRunFailed);
    } else {
      EXPECT_EQ(got[7], "run run_1 succeeded");
      EXPECT_EQ(view.exit_code(), kExitOk);
    }
  }
}

TEST(FollowViewTest, JsonModePrintsEachEventUnchanged) {
  FollowView view(ViewMode::kJson, false, "run_1");
  std::ostringstream out;
  std::string expected;
  for (const std::string& e : chain_events(false)) {
    view.on_event(e, parse_event(e), out);
    expected += e + "\n";
  }
  view.finish(out);
  EXPECT_EQ(out.str(), expected);
}

TEST(FollowViewTest, LiveModeDrawsOneLinePerNodeAndRedrawsInPlace) {
  FollowView view(ViewMode::kLive, false, "run_1");
  view.seed(parse_event(R"({"status":"running","nodes":{"fetch":{"status":"pending"},
      "build":{"status":"pending"},"deploy":{"status":"pending"}}})"));
  std::ostringstream out;
  const auto events = chain_events(false);
  for (std::size_t i = 0; i < 5; ++i) view.on_event(events[i], parse_event(events[i]), out);
  EXPECT_EQ(out.str(), "");  // nothing until the redraw
  view.redraw(out);
  EXPECT_EQ(view.live_lines(false), (std::vector<std::string>{
                                        "run run_1 running",
                                        "✓ fetch  succeeded  120ms",
                                        "● build  running",
                                        "○ deploy pending",
                                    }));
  const std::string retry =
      event(20, "node.retrying", "build", R"({"attempt":1,"error":{"code":"x","message":"y"}})");
  view.on_event(retry, parse_event(retry), out);
  const std::string again = event(21, "node.started", "build", R"({"attempt":2})");
  view.on_event(again, parse_event(again), out);
  view.redraw(out);
  EXPECT_EQ(view.live_lines(false)[2], "● build  running (attempt 2)");
  EXPECT_NE(out.str().find("\x1b[4A"), std::string::npos);  // back over the 4 lines drawn
  const std::string ok = event(22, "run.succeeded", "", R"({"output":{"n":1}})", "10:00:02.010");
  view.on_event(ok, parse_event(ok), out);
  std::ostringstream final_out;
  view.finish(final_out);
  EXPECT_NE(final_out.str().find("run run_1 succeeded in 2.0s\noutput: {\"n\":1}\n"),
            std::string::npos)
      << final_out.str();
  EXPECT_EQ(view.exit_code(), kExitOk);
  EXPECT_EQ(view.live_lines(true)[1], "\x1b[32m✓\x1b[0m fetch  succeeded  120ms");
}

// ---- Streams: resumption without loss or repetition -----------------------------------------

TEST_F(CommandTest, ADroppedStreamResumesFromTheLastEventWithoutDuplicates) {
  // The first connection drops inside event 12; the second starts again at 11 (the server may
  // repeat) and runs to the end.
  const std::string e12 = sse(12, "node.started", "fetch", R"({"attempt":1})");
  http_.streams.push_back({{sse(10, "run.submitted") + sse(11, "run.started"), e12.substr(0, 20)},
                           unavailable_error("connection reset")});
  http_.streams.push_back({{sse(11, "run.started") + e12 + sse(13, "node.succeeded", "fetch") +
                            sse(14, "run.cancelled", "", R"({"reason":"enough"})")}});
  args_.id = "run_1";
  EXPECT_EQ(run(&cmd_logs_stream), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(),
            "10:00:00.000 run.submitted\n"
            "10:00:00.000 run.started\n"
            "10:00:00.000 node.started fetch\n"
            "10:00:00.000 node.succeeded fetch\n"
            "10:00:00.000 run.cancelled  enough\n");
  ASSERT_EQ(http_.requests.size(), 2u);
  EXPECT_EQ(http_.requests[0].target, "/v1/runs/run_1/events");
  EXPECT_EQ(header(http_.requests[0], "Accept"), "text/event-stream");
  EXPECT_EQ(header(http_.requests[0], "Last-Event-ID"), "");
  EXPECT_EQ(http_.requests[1].target, "/v1/runs/run_1/events?after=11");
  EXPECT_EQ(header(http_.requests[1], "Last-Event-ID"), "11");
}

TEST_F(CommandTest, LogsFiltersByNodeAndErrorsAndStartsAtFrom) {
  http_.streams.push_back(
      {{sse(5, "node.started", "a") + sse(6, "node.failed", "a", R"({"error":{"code":"c"}})") +
        sse(7, "node.failed", "b", R"({"error":{"code":"d","message":"m"}})") +
        sse(8, "run.failed", "", R"({"error":{"code":"c"}})")}});
  args_.id = "run_1";
  args_.filter = "errors";
  args_.from = 5;
  args_.node = "b";
  EXPECT_EQ(run(&cmd_logs_stream), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "10:00:00.000 node.failed b  d: m\n");
  EXPECT_EQ(http_.requests[0].target, "/v1/runs/run_1/events?after=4");
}

TEST_F(CommandTest, AStreamThatKeepsFailingGivesUp) {
  http_.streams.push_back({{sse(1, "run.submitted")}, unavailable_error("reset")});
  for (int i = 0; i < kStreamReconnectsMax; ++i) {
    http_.streams.push_back({{}, unavailable_error("refused")});
  }
  args_.id = "run_1";
  EXPECT_EQ(run(&cmd_logs_stream), kExitError);
  EXPECT_NE(err_.str().find("lost the event stream of run run_1"), std::string::npos) << err_.str();
  EXPECT_EQ(http_.requests.size(), static_cast<std::size_t>(kStreamReconnectsMax) + 1);
}

TEST_F(CommandTest, AStreamErrorBeforeAnyEventIsReportedAtOnce) {
  http_.streams.push_back(
      {{},
       HttpResponse{404, "application/problem+json",
                    R"({"title":"Not Found","status":404,"detail":"no run 'x'"})"}});
  args_.id = "x";
  EXPECT_EQ(run(&cmd_logs_stream), kExitError);
  EXPECT_EQ(err_.str(), "venture: Not Found: no run 'x'\n");
}

TEST_F(CommandTest, AStreamEndingPastTheTerminalEventAsksForTheRunStatus) {
  http_.streams.push_back({{": keep-alive\n\n"}});
  http_.reply(200, R"({"id":"run_1","status":"succeeded","nodes":{}})");
  args_.id = "run_1";
  args_.from = 100;
  EXPECT_EQ(run(&cmd_logs_stream), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(http_.requests.back().target, "/v1/runs/run_1");
}

// ---- Commands ---------------------------------------------------------------------------------

TEST_F(CommandTest, RunStartSendsTheDefinitionInputsAndIdempotencyKey) {
  TempDir dir;
  args_.ref = dir.write("wf.yaml", "name: w\nnodes:\n  - {id: a, type: noop}\n");
  args_.inputs_file = dir.write("in.json", R"({"q":"file","keep":1})");
  args_.inputs = {"q=cli", "n=3"};
  args_.idempotency_key = "k1";
  http_.reply(201, R"({"id":"run_1","status":"queued","workflow":"w","version":"b2:x"})");
  EXPECT_EQ(run(&cmd_run_start), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "run run_1 queued\n");
  ASSERT_EQ(http_.requests.size(), 1u);
  const HttpRequest& r = http_.requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/v1/runs");
  EXPECT_EQ(header(r, "Idempotency-Key"), "k1");
  EXPECT_EQ(base::parse_json(r.body).value(), base::parse_json(R"({
      "definition":{"name":"w","nodes":[{"id":"a","type":"noop"}]},
      "inputs":{"q":"cli","keep":1,"n":3}})")
                                                  .value());
}

TEST_F(CommandTest, RunStartByNameFollowsTheRunAndExitsThreeWhenItFails) {
  args_.ref = "hello@prod";
  args_.follow = true;
  http_.reply(201, R"({"id":"run_1","status":"queued","workflow":"hello","version":"b2:x"})");
  std::string stream;
  for (const std::string& e : chain_events(true)) {
    const auto o = parse_event(e);
    stream += "id: " + std::to_string(base::int_or(o, "seq", 0)) + "\ndata: " + e + "\n\n";
  }
  http_.streams.push_back({{stream}});
  EXPECT_EQ(run(&cmd_run_start), kExitRunFailed) << err_.str();
  EXPECT_EQ(base::parse_json(http_.requests[0].body).value(),
            base::parse_json(R"({"workflow":"hello@prod","inputs":{}})").value());
  const std::string text = out_.str();
  EXPECT_TRUE(text.starts_with("run run_1 queued\n10:00:00.000 run.submitted")) << text;
  EXPECT_TRUE(text.ends_with("run run_1 failed: fail: broken (node build)\n")) << text;
}

TEST_F(CommandTest, LiveFollowOrdersNodesByTheDefinitionAndEndsWithTheSummary) {
  ctx_.terminal = true;
  ctx_.terminal_rows = 40;
  ctx_.terminal_columns = 80;
  http_.reply(200, R"({"id":"run_1","workflow":"w","version":"b2:v","status":"running",
      "nodes":{"fetch":{"status":"running","attempts":1}}})");
  http_.reply(200, R"({"name":"w","version":"b2:v","definition":{"name":"w","nodes":[
      {"id":"fetch","type":"noop"},{"id":"build","type":"noop"},{"id":"deploy","type":"noop"}]}})");
  std::string stream;
  for (const std::string& e : chain_events(false)) {
    stream += "data: " + e + "\n\n";
  }
  http_.streams.push_back({{stream}});
  EXPECT_EQ(follow_run(ctx_, "run_1").value(), kExitOk) << err_.str();
  EXPECT_EQ(http_.requests[1].target, "/v1/workflows/w?version=b2%3Av");
  const std::string text = out_.str();
  // The first frame (drawn after the one chunk) and the final one.
  EXPECT_NE(text.find("\r\x1b[2Krun run_1 succeeded\n"
                      "\r\x1b[2K✓ fetch  succeeded  120ms\n"
                      "\r\x1b[2K✓ build  succeeded  1.0s\n"
                      "\r\x1b[2K○ deploy pending\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\x1b[4A"), std::string::npos) << text;
  EXPECT_TRUE(text.ends_with("run run_1 succeeded in 1.2s\noutput: {\"ok\":true}\n")) << text;
}

TEST_F(CommandTest, ListsRenderTablesAndJsonIsTheBodyUnchanged) {
  const std::string body =
      R"({"items":[{"id":"run_1","workflow":"hello","version":"b2:a","status":"succeeded",)"
      R"("created_at":"2026-11-23T10:00:00.000Z","updated_at":"x","replay_of":null}],)"
      R"("next_cursor":"c2"})";
  http_.reply(200, body);
  args_.status = "succeeded";
  EXPECT_EQ(run(&cmd_run_list), kExitOk);
  EXPECT_EQ(out_.str(),
            "ID     WORKFLOW  STATUS     CREATED\n"
            "run_1  hello     succeeded  2026-11-23 10:00:00\n");
  EXPECT_EQ(err_.str(), "more results: --cursor c2\n");
  EXPECT_EQ(http_.requests[0].target, "/v1/runs?status=succeeded&limit=50");
  out_.str("");
  ctx_.json = true;
  http_.reply(200, body);
  EXPECT_EQ(run(&cmd_run_list), kExitOk);
  EXPECT_EQ(out_.str(), body + "\n");
}

TEST_F(CommandTest, AuthErrorsExitFourAndExplainAMissingToken) {
  http_.reply(401, R"({"title":"Unauthorized","status":401,"detail":"a bearer token is required"})",
              "application/problem+json");
  ctx_.has_token = false;
  EXPECT_EQ(run(&cmd_control_status), kExitAuth);
  EXPECT_TRUE(
      err_.str().starts_with("venture: Unauthorized: a bearer token is required\n"
                             "no token found"))
      << err_.str();
  err_.str("");
  http_.reply(403, R"({"title":"Forbidden","status":403,"detail":"role viewer may not freeze"})");
  args_.reason = "x";
  EXPECT_EQ(run(&cmd_freeze), kExitAuth);
  EXPECT_EQ(err_.str(), "venture: Forbidden: role viewer may not freeze\n");
}

TEST_F(CommandTest, ValidationErrorsOfARegisteredFileNameTheFile) {
  TempDir dir;
  args_.file = dir.write("wf.json", R"({"name":"w","nodes":[]})");
  args_.tag = "prod";
  http_.reply(422, R"({"title":"Unprocessable Content","status":422,"detail":"invalid",
      "errors":[{"path":"/nodes","message":"at least one node"}]})");
  EXPECT_EQ(run(&cmd_workflow_register), kExitError);
  EXPECT_EQ(err_.str(), "venture: Unprocessable Content: invalid\n" + args_.file +
                            ": /nodes: at least one node\n");
  EXPECT_EQ(http_.requests[0].target, "/v1/workflows?tag=prod");
  // A file that does not parse never reaches the server.
  args_.file = dir.write("bad.yaml", "name: [");
  err_.str("");
  EXPECT_EQ(run(&cmd_workflow_register), kExitError);
  EXPECT_TRUE(err_.str().starts_with("venture: " + args_.file + ": ")) << err_.str();
  EXPECT_EQ(http_.requests.size(), 1u);
}

TEST_F(CommandTest, SmallCommandsSendTheDocumentedRequests) {
  struct Case {
    Command command;
    Args args;
    std::string reply;
    std::string method, target, body, output;
  };
  Args show;
  show.ref = "hello@b2:ab";
  Args move;
  move.name = "hello";
  move.tag = "prod";
  move.version = "b2:ab";
  Args cancel;
  cancel.id = "run_1";
  cancel.reason = "stop";
  Args revoke;
  revoke.id = "tok_1";
  Args replay;
  replay.id = "run_1";
  replay.from_node = "build";
  Args token;
  token.name = "ci";
  token.role = "operator";
  const std::vector<Case> cases = {
      {&cmd_workflow_show, show, R"({"name":"hello","version":"b2:ab","tags":["prod"]})", "GET",
       "/v1/workflows/hello?version=b2%3Aab", "",
       "name     hello\nversion  b2:ab\ntags     prod\n"},
      {&cmd_tag_move, move, R"({"name":"hello","tag":"prod","version":"b2:ab"})", "PUT",
       "/v1/workflows/hello/tags/prod", R"({"version":"b2:ab"})", "hello@prod -> b2:ab\n"},
      {&cmd_run_cancel, cancel, R"({"id":"run_1","status":"cancelled"})", "POST",
       "/v1/runs/run_1/cancel", R"({"reason":"stop"})", "run run_1 cancelled\n"},
      {&cmd_token_revoke, revoke, "", "DELETE", "/v1/tokens/tok_1", "", "revoked token tok_1\n"},
      {&cmd_replay, replay, R"({"id":"run_2","replay_of":"run_1","status":"queued"})", "POST",
       "/v1/runs/run_1/replay", R"({"from_node":"build"})",
       "run run_2 queued (replay of run_1 from build)\n"},
      {&cmd_token_create, token, R"({"id":"tok_2","name":"ci","role":"operator","token":"s3"})",
       "POST", "/v1/tokens", R"({"name":"ci","role":"operator"})",
       "id     tok_2\nname   ci\nrole   operator\ntoken  s3\n"},
      {&cmd_unfreeze, Args{}, R"({"frozen":false,"reason":null,"since":null})", "POST",
       "/v1/control/unfreeze", "{}", "not frozen\n"},
  };
  for (const Case& c : cases) {
    http_.requests.clear();
    out_.str("");
    http_.reply(c.reply.empty() ? 204 : 200, c.reply);
    args_ = c.args;
    EXPECT_EQ(run(c.command), kExitOk) << c.target << ": " << err_.str();
    ASSERT_EQ(http_.requests.size(), 1u);
    EXPECT_EQ(http_.requests[0].method, c.method);
    EXPECT_EQ(http_.requests[0].target, c.target);
    if (!c.body.empty()) {
      EXPECT_EQ(base::parse_json(http_.requests[0].body).value(), base::parse_json(c.body).value())
          << c.target;
    }
    EXPECT_EQ(out_.str(), c.output) << c.target;
  }
}

TEST_F(CommandTest, AuditVerifyExitsOneWhenTheChainIsBroken) {
  http_.reply(200, R"({"ok":true,"events":10,"checkpoints":2,"first_bad_seq":null,"reason":""})");
  EXPECT_EQ(run(&cmd_audit_verify), kExitOk);
  EXPECT_EQ(out_.str(), "ok: 10 events and 2 checkpoints verified\n");
  out_.str("");
  http_.reply(200, R"({"ok":false,"events":10,"checkpoints":2,"first_bad_seq":7,
      "reason":"hash mismatch"})");
  EXPECT_EQ(run(&cmd_audit_verify), kExitError);
  EXPECT_EQ(out_.str(), "FAILED: the chain breaks at seq 7: hash mismatch\n");
}

TEST_F(CommandTest, PatchFilesAreAnArrayOrAnObjectWithOps) {
  TempDir dir;
  args_.id = "run_1";
  args_.file = dir.write("p.yaml", "ops:\n  - {op: remove, path: /nodes/2}\nreason: from file\n");
  http_.reply(201, R"({"id":"pat_1","status":"applied","version":"b2:v"})");
  EXPECT_EQ(run(&cmd_patch_create), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "patch pat_1 applied (version b2:v)\n");
  EXPECT_EQ(base::parse_json(http_.requests[0].body).value(),
            base::parse_json(R"({"ops":[{"op":"remove","path":"/nodes/2"}],
                                 "reason":"from file"})")
                .value());
  args_.file = dir.write("p.json", R"([{"op":"test","path":"/name","value":"w"}])");
  args_.reason = "flag";
  http_.reply(201, R"({"id":"pat_2","status":"pending_approval","version":null})");
  EXPECT_EQ(run(&cmd_patch_create), kExitOk) << err_.str();
  EXPECT_EQ(base::parse_json(http_.requests[1].body).value().as_object().at("reason"), "flag");
  args_.file = dir.write("bad.json", R"({"op":"remove"})");
  EXPECT_EQ(run(&cmd_patch_create), kExitError);
  EXPECT_NE(err_.str().find("expected an array"), std::string::npos);
}

TEST_F(CommandTest, HealthShowsADownServerAndExitsOne) {
  http_.reply(503, R"({"status":"down","version":"0.1.0","uptime_s":5,
      "dependencies":{"store":{"status":"down"}}})");
  EXPECT_EQ(run(&cmd_health), kExitError);
  EXPECT_NE(out_.str().find("status   down\n"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("store       down\n"), std::string::npos) << out_.str();
}

TEST_F(CommandTest, RunStatusShowsNodes) {
  http_.reply(200, R"({"id":"run_1","workflow":"w","version":"b2:v","status":"failed",
      "error":{"code":"fail","message":"boom"},"output":null,"nodes":{
      "a":{"status":"succeeded","attempts":1,"started_at":"2026-11-23T10:00:00.000Z",
           "finished_at":"2026-11-23T10:00:00.120Z"},
      "b":{"status":"failed","attempts":3,"error":{"code":"fail","message":"boom"}}}})");
  args_.id = "run_1";
  EXPECT_EQ(run(&cmd_run_status), kExitOk);
  EXPECT_NE(out_.str().find("error     fail: boom\n"), std::string::npos) << out_.str();
  EXPECT_NE(out_.str().find("NODE  STATUS     ATTEMPTS  DURATION  ERROR\n"
                            "a     succeeded  1         120ms\n"
                            "b     failed     3                   fail: boom\n"),
            std::string::npos)
      << out_.str();
}

// ---- libcurl against a loopback server -------------------------------------------------------

// Accepts connections on 127.0.0.1 (a kernel-chosen port) and answers each with the next canned
// response, recording the requests' heads. A response is written as is and the socket closed,
// so a response without its end simulates a dropped connection.
class LoopbackServer {
 public:
  explicit LoopbackServer(std::vector<std::string> responses) : responses_(std::move(responses)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    EXPECT_EQ(listen(fd_, 8), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~LoopbackServer() {
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }
  // Waits until every response has been served; returns the requests' heads.
  std::vector<std::string> join() {
    thread_.join();
    return heads_;
  }
  LoopbackServer(const LoopbackServer&) = delete;
  LoopbackServer& operator=(const LoopbackServer&) = delete;
  std::string address() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  void serve() {
    for (const std::string& response : responses_) {
      const int conn = accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      std::string head;
      char buf[4096];
      while (head.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = read(conn, buf, sizeof buf);
        if (n <= 0) break;
        head.append(buf, static_cast<std::size_t>(n));
      }
      heads_.push_back(head);
      (void)!write(conn, response.data(), response.size());
      shutdown(conn, SHUT_RDWR);
      close(conn);
    }
  }

  std::vector<std::string> responses_;
  std::vector<std::string> heads_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST(CurlTransportTest, SendsTheTokenAndResumesADroppedStream) {
  const std::string sse_head =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
  auto chunk = [](const std::string& s) {
    std::ostringstream o;
    o << std::hex << s.size() << "\r\n" << s << "\r\n";
    return o.str();
  };
  const std::string e1 = sse(1, "run.submitted"), e2 = sse(2, "run.succeeded");
  std::vector<std::string> heads;
  std::ostringstream out, err;
  {
    LoopbackServer server({
        sse_head + chunk(e1) + chunk(e2.substr(0, 10)),  // dropped inside event 2
        sse_head + chunk(e2) + "0\r\n\r\n",
    });
    auto transport = new_curl_transport(server.address(), "secret");
    Context ctx;
    ctx.http = transport.get();
    ctx.backoff_initial = std::chrono::milliseconds(0);
    ctx.out = &out;
    ctx.err = &err;
    Args args;
    args.id = "run_1";
    EXPECT_EQ(run_command(ctx, args, &cmd_logs_stream), kExitOk) << err.str();
    heads = server.join();
  }
  EXPECT_EQ(out.str(), "10:00:00.000 run.submitted\n10:00:00.000 run.succeeded\n");
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_NE(heads[0].find("GET /v1/runs/run_1/events HTTP/1.1\r\n"), std::string::npos);
  EXPECT_NE(heads[0].find("Authorization: Bearer secret\r\n"), std::string::npos) << heads[0];
  EXPECT_NE(heads[0].find("Accept: text/event-stream\r\n"), std::string::npos);
  EXPECT_NE(heads[1].find("GET /v1/runs/run_1/events?after=1 HTTP/1.1\r\n"), std::string::npos);
  EXPECT_NE(heads[1].find("Last-Event-ID: 1\r\n"), std::string::npos) << heads[1];
}

TEST(CurlTransportTest, ARefusedConnectionSaysWhereTheServerShouldBe) {
  // A port that was just bound and released: nothing listens there.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);
  const std::string address = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto transport = new_curl_transport(address, "");
  auto r = transport->send(HttpRequest{"GET", "/health", "", {}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kUnavailable);
  EXPECT_EQ(r.error().message,
            "cannot reach the server at " + address + " (is `venture serve` running?)");
}

// ---- CLI11 wiring and completion --------------------------------------------------------------

// The app as main.cc builds it (a `workflow` command with `validate` and a `version`), plus the
// client commands.
struct MainLikeApp {
  MainLikeApp() {
    app.require_subcommand(1);
    app.add_subcommand("version", "Print the version");
    CLI::App* wf = app.add_subcommand("workflow", "Workflow definitions");
    wf->require_subcommand(1);
    validate = wf->add_subcommand("validate", "Validate definition files offline");
    validate->add_option("FILE", files)->required();
    validate->add_option("-o,--output", output);
    add_client_commands(app, exit_code);
  }
  CLI::App app{"venture", "venture"};
  CLI::App* validate = nullptr;
  std::vector<std::string> files;
  std::string output;
  int exit_code = -1;
};

int parse(MainLikeApp& m, const std::vector<std::string>& args) {
  std::vector<const char*> argv = {"venture"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  try {
    m.app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return e.get_exit_code() == 0 ? kExitOk : kExitUsage;
  }
  return kExitOk;
}

TEST(AppTest, ClientCommandsRunFromTheirCallbacks) {
  MainLikeApp m;
  std::ostringstream captured;
  std::streambuf* old = std::cout.rdbuf(captured.rdbuf());
  const int rc = parse(m, {"completion", "bash"});
  std::cout.rdbuf(old);
  EXPECT_EQ(rc, kExitOk);
  EXPECT_TRUE(client_command_ran(m.app));
  EXPECT_EQ(m.exit_code, kExitOk);
  EXPECT_NE(captured.str().find("complete -o default -F _venture venture"), std::string::npos);

  MainLikeApp v;
  EXPECT_EQ(parse(v, {"workflow", "validate", "x.json", "-o", "json"}), kExitOk);
  EXPECT_FALSE(client_command_ran(v.app));
  EXPECT_EQ(v.exit_code, -1);
  EXPECT_EQ(v.output, "json");
}

TEST(AppTest, BadArgumentsAreUsageErrors) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"run", "start", "w", "-i", "novalue"},
           {"run", "start"},
           {"run"},
           {"freeze"},
           {"token", "create", "--name", "x", "--role", "king"},
           {"completion", "tcsh"},
           {"run", "list", "-o", "yaml"},
           {"logs", "stream", "r", "--filter", "warnings"},
       }) {
    MainLikeApp m;
    EXPECT_EQ(parse(m, args), kExitUsage) << args[0];
    EXPECT_FALSE(client_command_ran(m.app) && m.exit_code != -1) << args[0];
  }
}

std::vector<std::string> all_paths(const CLI::App& app, const std::string& prefix) {
  std::vector<std::string> out;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_name().empty()) continue;
    const std::string path = prefix + " " + sub->get_name();
    out.push_back(path);
    for (const std::string& p : all_paths(*sub, path)) out.push_back(p);
  }
  return out;
}

TEST(CompletionTest, ScriptsCoverEveryCommand) {
  MainLikeApp m;
  const std::vector<std::string> paths = all_paths(m.app, "venture");
  for (const char* expected :
       {"venture workflow register", "venture workflow validate", "venture tag move",
        "venture run start", "venture run resume", "venture logs stream", "venture patch reject",
        "venture replay", "venture freeze", "venture unfreeze", "venture status",
        "venture token revoke", "venture audit verify", "venture health", "venture completion",
        "venture version"}) {
    EXPECT_NE(std::find(paths.begin(), paths.end(), expected), paths.end()) << expected;
  }
  for (const char* shell : {"bash", "zsh", "fish"}) {
    const std::string script = completion_script(m.app, shell).value();
    for (const std::string& path : paths) {
      // Each command is a case of the path walk (as its full path) and offered under its parent.
      EXPECT_NE(script.find("'" + path + "'"), std::string::npos) << shell << ": " << path;
      const std::string name = path.substr(path.rfind(' ') + 1);
      EXPECT_NE(script.find(name), std::string::npos) << shell << ": " << name;
    }
    EXPECT_NE(script.find("idempotency-key"), std::string::npos) << shell;
  }
  EXPECT_NE(completion_script(m.app, "bash").value().find("'venture run') words='start status"),
            std::string::npos);
  EXPECT_NE(
      completion_script(m.app, "fish")
          .value()
          .find("complete -c venture -f -n 'test (__venture_path) = '\\''venture run'\\''' -a "
                "'start' -d 'Start a run'"),
      std::string::npos);
  EXPECT_EQ(completion_script(m.app, "tcsh").error().code, Code::kInvalidArgument);
}

}  // namespace
}  // namespace venture::cli
