// Following a run: the SSE loop with resumption (stream_run_events), the plain event line, and the
// FollowView state machine behind `run start -f`, `replay -f` and `logs stream`.
#include <algorithm>
#include <thread>

#include "cli/cli.h"
#include "cli/internal.h"

namespace venture::cli {
namespace {

std::string error_text(const json::value* error) {
  if (error == nullptr || error->is_null()) return "";
  if (const json::object* e = error->if_object()) {
    const std::string code = base::string_or(*e, "code", "");
    std::string message = base::string_or(*e, "message", "");
    if (code.empty()) return message;
    return message.empty() ? code : code + ": " + message;
  }
  return cell(error);
}

const json::value* data_member(const json::object& event, std::string_view key) {
  const json::object* data = base::find_object(event, "data");
  return data == nullptr ? nullptr : data->if_contains(key);
}

std::string data_string(const json::object& event, std::string_view key) {
  const json::value* v = data_member(event, key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : "";
}

int64_t data_int(const json::object& event, std::string_view key, int64_t fallback) {
  const json::object* data = base::find_object(event, "data");
  return data == nullptr ? fallback : base::int_or(*data, key, fallback);
}

std::optional<Time> event_time(const json::object& event) {
  const json::string* t = base::find_string(event, "time");
  if (t == nullptr) return std::nullopt;
  auto parsed = parse_time(*t);
  return parsed ? std::optional<Time>(*parsed) : std::nullopt;
}

std::string_view status_symbol(std::string_view status) {
  if (status == "succeeded") return "✓";
  if (status == "failed") return "✗";
  if (status == "running" || status == "retrying") return "●";
  if (status == "waiting") return "◐";
  if (status == "skipped") return "–";
  if (status == "cancelled") return "⊘";
  return "○";  // pending, ready
}

std::string_view status_color(std::string_view status) {
  if (status == "succeeded") return "\x1b[32m";
  if (status == "failed") return "\x1b[31m";
  if (status == "running" || status == "retrying") return "\x1b[33m";
  if (status == "waiting") return "\x1b[36m";
  if (status == "cancelled") return "\x1b[35m";
  return "\x1b[2m";
}

std::string pad(std::string_view text, std::size_t width) {
  const std::size_t w = display_width(text);
  return std::string(text) + std::string(w < width ? width - w : 0, ' ');
}

std::string event_details(const json::object& event, std::string_view type) {
  if (type == "node.started") {
    const int64_t attempt = data_int(event, "attempt", 1);
    return attempt > 1 ? "attempt " + std::to_string(attempt) : "";
  }
  if (type == "node.retrying") {
    return "attempt " + std::to_string(data_int(event, "attempt", 1)) +
           " failed: " + error_text(data_member(event, "error"));
  }
  if (type == "node.failed" || type == "node.item_failed") {
    return error_text(data_member(event, "error"));
  }
  if (type == "run.failed") {
    std::string text = error_text(data_member(event, "error"));
    if (const json::value* e = data_member(event, "error"); e != nullptr && e->is_object()) {
      const std::string node = base::string_or(e->get_object(), "node", "");
      if (!node.empty()) text += " (node " + node + ")";
    }
    return text;
  }
  if (type == "node.succeeded") {
    const json::value* replayed = data_member(event, "replayed");
    return replayed != nullptr && replayed->is_bool() && replayed->get_bool() ? "replayed" : "";
  }
  if (type == "run.submitted") return data_string(event, "workflow");
  if (type == "run.patched") {
    const std::string reason = data_string(event, "reason");
    return "version " + data_string(event, "version") + (reason.empty() ? "" : ": " + reason);
  }
  if (type == "node.repeating") {
    return "iteration " + std::to_string(data_int(event, "iteration", 0));
  }
  return data_string(event, "reason");
}

}  // namespace

bool is_terminal_event(std::string_view type) {
  return type == "run.succeeded" || type == "run.failed" || type == "run.cancelled";
}

bool is_error_event(std::string_view type) {
  return type == "node.failed" || type == "node.retrying" || type == "node.item_failed" ||
         type == "run.failed";
}

std::string format_event_line(const json::object& event) {
  const std::string time = base::string_or(event, "time", "");
  std::string line = time.size() >= 23 && time[10] == 'T' ? time.substr(11, 12) : time;
  const std::string type = base::string_or(event, "type", "?");
  line += " " + type;
  const std::string node = base::string_or(event, "node", "");
  if (!node.empty()) {
    line += " " + node;
    const int64_t index = data_int(event, "index", -1);
    if (index >= 0) line += "[" + std::to_string(index) + "]";
  }
  const std::string details = event_details(event, type);
  if (!details.empty()) line += "  " + details;
  return line;
}

namespace {

// One run's event stream across reconnects: tracks the last seq delivered so that a resumed
// connection neither misses nor repeats an event.
class RunEventStream {
 public:
  RunEventStream(Context& ctx, std::string run, int64_t after_seq, const EventSink& on_event,
                 const std::function<void()>& on_batch)
      : ctx_(ctx),
        run_(std::move(run)),
        last_seq_(after_seq),
        on_event_(on_event),
        on_batch_(on_batch) {}

  Result<std::string> run_to_end() {
    int failures = 0;
    std::chrono::milliseconds backoff = ctx_.backoff_initial;
    while (true) {
      parser_.reset();
      got_event_ = false;
      Result<HttpResponse> response =
          ctx_.http->stream(next_request(), [this](auto chunk) { return on_chunk(chunk); });
      std::string why;
      VENTURE_ASSIGN_OR_RETURN(std::string status, settle(response, why));
      if (!status.empty()) return status;
      if (got_event_) {
        failures = 0;
        backoff = ctx_.backoff_initial;
      }
      if (++failures > kStreamReconnectsMax) {
        std::string message = "lost the event stream of run ";
        message += run_;
        message += " after " + std::to_string(kStreamReconnectsMax) + " reconnects: ";
        message += why;
        return unavailable_error(std::move(message));
      }
      std::this_thread::sleep_for(backoff);
      backoff = std::min<std::chrono::milliseconds>(2 * backoff, kReconnectBackoffMax);
    }
  }

 private:
  HttpRequest next_request() const {
    HttpRequest request;
    request.target = "/v1/runs/" + url_encode(run_) + "/events";
    request.headers.emplace_back("Accept", "text/event-stream");
    if (last_seq_ > 0) {
      request.target += "?after=" + std::to_string(last_seq_);
      request.headers.emplace_back("Last-Event-ID", std::to_string(last_seq_));
    }
    return request;
  }

  void on_sse(const SseEvent& e) {
    if (!final_status_.empty()) return;
    auto parsed = base::parse_json(e.data, {kSseEventBytesMax, 4 * limits::kJsonDepthMax});
    if (!parsed || !parsed->is_object()) {
      *ctx_.err << "venture: skipped a malformed event (id " << e.id << ")\n";
      return;
    }
    const json::object& event = parsed->get_object();
    const int64_t seq = base::int_or(event, "seq", -1);
    if (seq <= last_seq_) return;  // delivered before the reconnect
    last_seq_ = seq;
    got_event_ = true;
    on_event_(e.data, event);
    const std::string type = base::string_or(event, "type", "");
    if (is_terminal_event(type)) final_status_ = type.substr(4);
  }

  bool on_chunk(std::string_view chunk) {
    connected_ = true;
    if (Status st = parser_.feed(chunk, [this](const SseEvent& e) { on_sse(e); }); !st) {
      stream_error_ = st.error();
      return false;
    }
    on_batch_();
    return final_status_.empty();
  }

  // After one connection: the run's final status, or "" to reconnect (with `why` set), or an
  // error that ends the stream.
  Result<std::string> settle(const Result<HttpResponse>& response, std::string& why) {
    if (!final_status_.empty()) return final_status_;
    if (stream_error_) return *stream_error_;
    if (!response) {
      const Code code = response.error().code;
      if (!connected_ || (code != Code::kUnavailable && code != Code::kDeadlineExceeded)) {
        return response.error();
      }
      why = response.error().message;
      return std::string();
    }
    if (response->status < 200 || response->status >= 300) {
      // Only a server that is restarting (503) is waited for, and only once it has answered.
      if (!connected_ || response->status != 503) {
        return Error{code_of_status(response->status),
                     render_problem(response->status, response->body)};
      }
      why = render_problem(response->status, response->body);
      return std::string();
    }
    if (response->content_type.find("text/event-stream") == std::string::npos) {
      return internal_error("the server did not answer with an event stream (Content-Type " +
                            response->content_type + ")");
    }
    connected_ = true;
    // A clean end before the terminal event: the run may have ended before `after_seq`, or the
    // server is going away. The run's status tells which.
    Result<Reply> detail = call(ctx_, "GET", "/v1/runs/" + url_encode(run_));
    if (!detail) {
      const Code code = detail.error().code;
      if (code != Code::kUnavailable && code != Code::kDeadlineExceeded) return detail.error();
      why = detail.error().message;  // the server is restarting: reconnect
      return std::string();
    }
    const json::object* o = detail->body.if_object();
    std::string status = o == nullptr ? "" : base::string_or(*o, "status", "");
    if (status == "succeeded" || status == "failed" || status == "cancelled") return status;
    why = "the server ended the stream before the run ended";
    return std::string();
  }

  Context& ctx_;
  const std::string run_;
  int64_t last_seq_;
  const EventSink& on_event_;
  const std::function<void()>& on_batch_;
  SseParser parser_;
  std::string final_status_;  // set by the terminal event
  bool connected_ = false;    // a connection has been answered with 2xx once
  bool got_event_ = false;    // the current connection delivered an event
  std::optional<Error> stream_error_;
};

}  // namespace

Result<std::string> stream_run_events(Context& ctx, const std::string& run, int64_t after_seq,
                                      const EventSink& on_event,
                                      const std::function<void()>& on_batch) {
  RunEventStream stream(ctx, run, after_seq, on_event, on_batch);
  return stream.run_to_end();
}

FollowView::FollowView(ViewMode mode, bool color, std::string run, std::size_t columns)
    : mode_(mode), color_(color), run_(std::move(run)), columns_(columns) {}

FollowView::NodeState& FollowView::node(const std::string& id) {
  for (NodeState& n : nodes_) {
    if (n.id == id) return n;
  }
  nodes_.push_back(NodeState{});
  nodes_.back().id = id;
  return nodes_.back();
}

void FollowView::seed_order(const json::value& definition) {
  const json::object* o = definition.if_object();
  const json::array* nodes = o == nullptr ? nullptr : base::find_array(*o, "nodes");
  if (nodes == nullptr) return;
  for (const json::value& n : *nodes) {
    const json::object* node_object = n.if_object();
    const std::string id = node_object == nullptr ? "" : base::string_or(*node_object, "id", "");
    if (!id.empty()) (void)node(id);
  }
}

void FollowView::seed(const json::object& run_detail) {
  const std::string status = base::string_or(run_detail, "status", "");
  if (!status.empty()) run_status_ = status;
  const json::object* nodes = base::find_object(run_detail, "nodes");
  if (nodes == nullptr) return;
  for (const auto& [id, value] : *nodes) {
    NodeState& n = node(std::string(id));
    const json::object* o = value.if_object();
    if (o == nullptr) continue;
    n.status = base::string_or(*o, "status", n.status);
    n.attempt = base::int_or(*o, "attempts", n.attempt);
    n.detail = error_text(o->if_contains("error"));
    if (const json::string* t = base::find_string(*o, "started_at")) {
      if (auto parsed = parse_time(*t)) n.started = *parsed;
    }
    if (const json::string* t = base::find_string(*o, "finished_at")) {
      if (auto parsed = parse_time(*t)) n.finished = *parsed;
    }
  }
}

void FollowView::apply(const json::object& event) {
  const std::string type = base::string_or(event, "type", "");
  const std::optional<Time> time = event_time(event);
  if (type.starts_with("run.")) {
    if (type == "run.submitted") {
      run_status_ = "queued";
      run_started_ = time;
    } else if (type == "run.started" || type == "run.resumed" || type == "run.running") {
      run_status_ = "running";
      if (!run_started_) run_started_ = time;
    } else if (type == "run.paused" || type == "run.waiting") {
      run_status_ = type.substr(4);
    } else if (is_terminal_event(type)) {
      run_status_ = type.substr(4);
      run_finished_ = time;
      done_ = true;
      if (type == "run.succeeded") {
        const json::value* output = data_member(event, "output");
        run_output_ = output == nullptr ? "" : json::serialize(*output);
      } else {
        run_error_ = event_details(event, type);
      }
    }
    return;
  }
  const std::string id = base::string_or(event, "node", "");
  if (!type.starts_with("node.") || id.empty()) return;
  NodeState& n = node(id);
  if (type == "node.ready") {
    n.status = "ready";
  } else if (type == "node.started") {
    n.status = "running";
    n.attempt = std::max(n.attempt, data_int(event, "attempt", 1));
    n.detail.clear();
    if (!n.started) n.started = time;
  } else if (type == "node.retrying") {
    n.status = "retrying";
    n.attempt = std::max(n.attempt, data_int(event, "attempt", 1));
    n.detail = error_text(data_member(event, "error"));
  } else if (type == "node.waiting") {
    n.status = "waiting";
    if (!n.started) n.started = time;
  } else if (type == "node.expanded") {
    const json::value* items = data_member(event, "items");
    n.items_total = items != nullptr && items->is_array()
                        ? static_cast<int64_t>(items->get_array().size())
                        : -1;
  } else if (type == "node.item_succeeded" || type == "node.item_failed") {
    ++n.items_done;
  } else if (type == "node.repeating") {
    n.status = "running";
    n.detail = "iteration " + std::to_string(data_int(event, "iteration", 0));
  } else if (type == "node.succeeded" || type == "node.failed" || type == "node.skipped" ||
             type == "node.cancelled") {
    n.status = type.substr(5);
    n.finished = time;
    n.replayed = event_details(event, type) == "replayed";
    n.detail = type == "node.succeeded" ? "" : event_details(event, type);
  }
}

void FollowView::on_event(std::string_view raw, const json::object& event, std::ostream& out) {
  apply(event);
  switch (mode_) {
    case ViewMode::kJson:
      out << raw << "\n";
      break;
    case ViewMode::kPlain:
      out << format_event_line(event) << "\n";
      break;
    case ViewMode::kLive:
      break;  // drawn by redraw, once per received chunk
  }
}

void FollowView::set_final_status(const std::string& status) {
  if (done_) return;
  run_status_ = status;
  done_ = true;
}

int FollowView::exit_code() const { return run_status_ == "succeeded" ? kExitOk : kExitRunFailed; }

std::string FollowView::node_line(const NodeState& n, std::size_t id_width, bool colored) const {
  std::string text = pad(n.id, id_width) + " " + n.status;
  const bool active = n.status == "running" || n.status == "retrying";
  if (n.status == "retrying") {
    text += " (attempt " + std::to_string(n.attempt) + " failed: " + n.detail + ")";
  } else if (active && n.attempt > 1) {
    text += " (attempt " + std::to_string(n.attempt) + ")";
  }
  if (active && n.items_total >= 0) {
    text += "  " + std::to_string(n.items_done) + "/" + std::to_string(n.items_total) + " items";
  }
  if (n.status == "running" && !n.detail.empty()) text += "  " + n.detail;
  if ((n.status == "succeeded" || n.status == "failed") && n.started && n.finished) {
    text += "  " + format_elapsed(*n.finished - *n.started);
  }
  if (n.replayed) text += "  replayed";
  if (!active && n.status != "succeeded" && !n.detail.empty()) text += "  " + n.detail;
  if (columns_ > 2) text = truncate_display(text, columns_ - 3);
  const std::string_view symbol = status_symbol(n.status);
  if (!colored) return std::string(symbol) + " " + text;
  return std::string(status_color(n.status)) + std::string(symbol) + "\x1b[0m " + text;
}

std::vector<std::string> FollowView::live_lines(bool colored) const {
  std::vector<std::string> lines;
  std::string header = "run " + run_ + " " + run_status_;
  if (columns_ > 1) header = truncate_display(header, columns_ - 1);
  lines.push_back(std::move(header));
  std::size_t width = 0;
  for (const NodeState& n : nodes_) width = std::max(width, display_width(n.id));
  for (const NodeState& n : nodes_) lines.push_back(node_line(n, width, colored));
  return lines;
}

void FollowView::redraw(std::ostream& out) {
  if (mode_ != ViewMode::kLive) return;
  const std::vector<std::string> lines = live_lines(color_);
  // Back to the first line drawn last time; every line is cleared before it is rewritten. The
  // frame never shrinks (nodes are only added), so no stale line is left below it.
  if (drawn_ > 0) out << "\x1b[" << drawn_ << "A";
  for (const std::string& line : lines) out << "\r\x1b[2K" << line << "\n";
  drawn_ = lines.size();
  out.flush();
}

void FollowView::finish(std::ostream& out) {
  switch (mode_) {
    case ViewMode::kJson:
      break;
    case ViewMode::kPlain:
      out << "run " << run_ << " " << run_status_ << (run_error_.empty() ? "" : ": " + run_error_)
          << "\n";
      break;
    case ViewMode::kLive: {
      redraw(out);
      std::string summary = "run " + run_ + " " + run_status_;
      if (run_started_ && run_finished_) {
        summary += " in " + format_elapsed(*run_finished_ - *run_started_);
      }
      if (!run_error_.empty()) summary += ": " + run_error_;
      if (color_) {
        summary = std::string(status_color(run_status_)) + summary + "\x1b[0m";
      }
      out << summary << "\n";
      if (!run_output_.empty() && run_output_ != "null") {
        std::string output = "output: " + run_output_;
        std::size_t width = kSummaryOutputBytesMax;
        if (columns_ > 1) width = std::min(width, columns_ - 1);
        if (display_width(output) > width) output = truncate_display(output, width - 1) + "…";
        out << output << "\n";
      }
      break;
    }
  }
  out.flush();
}

Result<int> follow_run(Context& ctx, const std::string& run, const json::value& definition) {
  ViewMode mode = ctx.json ? ViewMode::kJson : ctx.terminal ? ViewMode::kLive : ViewMode::kPlain;
  FollowView view(mode, ctx.color, run, ctx.terminal_columns);
  if (mode == ViewMode::kLive) {
    VENTURE_ASSIGN_OR_RETURN(Reply detail, call(ctx, "GET", "/v1/runs/" + url_encode(run)));
    const json::object* o = detail.body.if_object();
    if (!definition.is_null()) {
      view.seed_order(definition);
    } else if (o != nullptr) {
      // Best effort: without the definition, nodes appear as their first event arrives.
      auto wf = call(ctx, "GET",
                     "/v1/workflows/" + url_encode(base::string_or(*o, "workflow", "")) +
                         "?version=" + url_encode(base::string_or(*o, "version", "")));
      const json::object* w = wf ? wf->body.if_object() : nullptr;
      if (const json::value* def = w == nullptr ? nullptr : w->if_contains("definition")) {
        view.seed_order(*def);
      }
    }
    if (o != nullptr) view.seed(*o);
    // A frame taller than the terminal cannot be redrawn in place: plain lines instead.
    if (ctx.terminal_rows > 0 && view.node_count() + 3 > ctx.terminal_rows) {
      view = FollowView(ViewMode::kPlain, ctx.color, run, ctx.terminal_columns);
    }
  }
  VENTURE_ASSIGN_OR_RETURN(std::string status,
                           stream_run_events(
                               ctx, run, 0,
                               [&](std::string_view raw, const json::object& event) {
                                 view.on_event(raw, event, *ctx.out);
                               },
                               [&] {
                                 view.redraw(*ctx.out);
                                 ctx.out->flush();
                               }));
  view.set_final_status(status);
  view.finish(*ctx.out);
  return view.exit_code();
}

}  // namespace venture::cli
