// The event-stream parser (WHATWG HTML, "Parsing an event stream"), incremental over chunks.
#include "cli/internal.h"

namespace venture::cli {

Status SseParser::feed(std::string_view chunk,
                       const std::function<void(const SseEvent&)>& on_event) {
  while (!chunk.empty()) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (chunk.front() == '\n') {
        chunk.remove_prefix(1);
        continue;
      }
    }
    const std::size_t end = chunk.find_first_of("\r\n");
    if (end == std::string_view::npos) {
      if (line_.size() + chunk.size() > bytes_max_) {
        return resource_exhausted_error("an event-stream line exceeds " +
                                        std::to_string(bytes_max_) + " bytes");
      }
      line_.append(chunk);
      return ok();
    }
    if (line_.size() + end > bytes_max_) {
      return resource_exhausted_error("an event-stream line exceeds " + std::to_string(bytes_max_) +
                                      " bytes");
    }
    skip_lf_ = chunk[end] == '\r';
    if (line_.empty()) {
      process_line(chunk.substr(0, end), on_event);
    } else {
      line_.append(chunk.substr(0, end));
      const std::string line = std::move(line_);
      line_.clear();
      process_line(line, on_event);
    }
    chunk.remove_prefix(end + 1);
    if (data_.size() > bytes_max_) {
      return resource_exhausted_error("an event exceeds " + std::to_string(bytes_max_) + " bytes");
    }
  }
  return ok();
}

void SseParser::process_line(std::string_view line,
                             const std::function<void(const SseEvent&)>& on_event) {
  if (line.empty()) {
    // Dispatch. The last event id is taken even by an event without data.
    last_id_ = id_buffer_;
    if (has_data_) {
      SseEvent event;
      event.id = last_id_;
      event.type = type_.empty() ? "message" : type_;
      event.data = std::move(data_);
      on_event(event);
    }
    data_.clear();
    has_data_ = false;
    type_.clear();
    return;
  }
  if (line.front() == ':') return;  // a comment (the server's keep-alive)
  std::string_view field = line;
  std::string_view value;
  if (const std::size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    type_ = std::string(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) id_buffer_ = std::string(value);
  }
  // `retry` and unknown fields are ignored: the client keeps its own bounded backoff.
}

void SseParser::reset() {
  line_.clear();
  skip_lf_ = false;
  data_.clear();
  has_data_ = false;
  type_.clear();
  id_buffer_ = last_id_;
}

}  // namespace venture::cli
