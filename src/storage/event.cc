// The event envelope (SPEC §4): JSON codec and chain hash. See docs/storage-format.md.
#include <limits>
#include <string>

#include "storage/log_core.h"
#include "storage/storage.h"

namespace venture::storage {
namespace {

constexpr std::size_t kTypeLengthMax = 127;
constexpr std::size_t kRunNodeLengthMax = 255;

// A "b2:" hash in its one printed form (lowercase hex), so text round-trips exactly.
bool is_b2(std::string_view text) {
  auto h = base::parse_b2(text);
  return h && base::b2(*h) == text;
}

Result<int64_t> seq_from(const json::value& v) {
  if (v.is_int64() && v.get_int64() >= 0) {
    return v.get_int64();
  }
  if (v.is_uint64() &&
      v.get_uint64() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return static_cast<int64_t>(v.get_uint64());
  }
  return invalid_argument_error("event: seq must be a non-negative integer");
}

Result<std::string> string_member(const json::object& o, std::string_view key, bool allow_empty,
                                  std::size_t max) {
  const json::string* s = base::find_string(o, key);
  if (s == nullptr) {
    return invalid_argument_error("event: missing or non-string member '" + std::string(key) + "'");
  }
  if ((!allow_empty && s->empty()) || s->size() > max) {
    return invalid_argument_error("event: member '" + std::string(key) + "' has a bad length");
  }
  return std::string(*s);
}

}  // namespace

json::object event_to_json(const Event& e, bool with_hash) {
  json::object o;
  o["seq"] = e.seq;
  o["id"] = e.id;
  o["type"] = e.type;
  o["time"] = format_time(e.time);
  o["run"] = e.run;
  o["node"] = e.node;
  o["data"] = e.data;
  o["prev"] = e.prev;
  // An unsealed event has no hash; omitting it keeps the codec a bijection.
  if (with_hash && !e.hash.empty()) {
    o["hash"] = e.hash;
  }
  return o;
}

Result<Event> event_from_json(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) {
    return invalid_argument_error("event: not a JSON object");
  }
  for (const auto& member : *o) {
    const std::string_view k = member.key();
    if (k != "seq" && k != "id" && k != "type" && k != "time" && k != "run" && k != "node" &&
        k != "data" && k != "prev" && k != "hash") {
      return invalid_argument_error("event: unknown member '" + std::string(k.substr(0, 64)) + "'");
    }
  }
  Event e;
  const json::value* seq = o->if_contains("seq");
  if (seq == nullptr) {
    return invalid_argument_error("event: missing member 'seq'");
  }
  VENTURE_ASSIGN_OR_RETURN(e.seq, seq_from(*seq));
  VENTURE_ASSIGN_OR_RETURN(e.id, string_member(*o, "id", false, limits::kIdLengthMax + 8));
  if (!base::is_id(e.id, "evt")) {
    return invalid_argument_error("event: id is not an evt_ id");
  }
  VENTURE_ASSIGN_OR_RETURN(e.type, string_member(*o, "type", false, kTypeLengthMax));
  VENTURE_ASSIGN_OR_RETURN(std::string time, string_member(*o, "time", false, 64));
  VENTURE_ASSIGN_OR_RETURN(e.time, parse_time(time));
  VENTURE_ASSIGN_OR_RETURN(e.run, string_member(*o, "run", true, kRunNodeLengthMax));
  VENTURE_ASSIGN_OR_RETURN(e.node, string_member(*o, "node", true, kRunNodeLengthMax));
  const json::value* data = o->if_contains("data");
  if (data == nullptr || !data->is_object()) {
    return invalid_argument_error("event: data must be an object");
  }
  e.data = *data;
  VENTURE_ASSIGN_OR_RETURN(e.prev, string_member(*o, "prev", false, 67));
  if (!is_b2(e.prev)) {
    return invalid_argument_error("event: prev is not a lowercase b2: hash");
  }
  if (o->contains("hash")) {
    VENTURE_ASSIGN_OR_RETURN(e.hash, string_member(*o, "hash", false, 67));
    if (!is_b2(e.hash)) {
      return invalid_argument_error("event: hash is not a lowercase b2: hash");
    }
  }
  return e;
}

std::string compute_event_hash(const Event& e) { return base::b2(internal::event_hash(e)); }

std::string internal::canonical_event_text(const Event& e) {
  // The members of event_to_json(e, false) in sorted key order, written directly: this is the hot
  // path of every append. event_test checks it equals canonical_json(event_to_json(e, false)).
  std::string out;
  out.reserve(192);
  out += "{\"data\":";
  base::append_canonical_json(e.data, out);
  auto member = [&out](std::string_view key, std::string_view value) {
    out += ",\"";
    out += key;
    out += "\":";
    base::append_json_string(value, out);
  };
  member("id", e.id);
  member("node", e.node);
  member("prev", e.prev);
  member("run", e.run);
  out += ",\"seq\":";
  out += std::to_string(e.seq);
  member("time", format_time(e.time));
  member("type", e.type);
  out += '}';
  return out;
}

base::Hash internal::event_hash(const Event& e) {
  const std::string canonical = canonical_event_text(e);
  auto prev = base::parse_b2(e.prev);
  if (!prev) {
    // Not a valid link: hash its text instead, so the result differs from every valid chain.
    return base::blake2b(e.prev + canonical);
  }
  return base::blake2b(std::span<const uint8_t>(prev->data(), prev->size()), canonical);
}

std::future<Result<AppendResult>> Store::append_async(Batch batch) {
  std::promise<Result<AppendResult>> done;
  std::shared_ptr<AppendChain> chain = batch.chain;
  if (chain && chain->broken) {
    done.set_value(aborted_error("an earlier append of this chain failed"));
  } else {
    Result<AppendResult> r = append(std::move(batch));
    if (!r && chain) {
      chain->broken = true;
    }
    done.set_value(std::move(r));
  }
  return done.get_future();
}

bool is_terminal_run_status(std::string_view status) {
  return status == "succeeded" || status == "failed" || status == "cancelled";
}

}  // namespace venture::storage
