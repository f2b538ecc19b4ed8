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
bool IsB2(std::string_view text) {
  auto h = base::ParseB2(text);
  return h && base::B2(*h) == text;
}

Result<int64_t> SeqFrom(const json::value& v) {
  if (v.is_int64() && v.get_int64() >= 0) {
    return v.get_int64();
  }
  if (v.is_uint64() &&
      v.get_uint64() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return static_cast<int64_t>(v.get_uint64());
  }
  return InvalidArgument("event: seq must be a non-negative integer");
}

Result<std::string> StringMember(const json::object& o, std::string_view key, bool allow_empty,
                                 std::size_t max) {
  const json::string* s = base::FindString(o, key);
  if (s == nullptr) {
    return InvalidArgument("event: missing or non-string member '" + std::string(key) + "'");
  }
  if ((!allow_empty && s->empty()) || s->size() > max) {
    return InvalidArgument("event: member '" + std::string(key) + "' has a bad length");
  }
  return std::string(*s);
}

}  // namespace

json::object EventToJson(const Event& e, bool with_hash) {
  json::object o;
  o["seq"] = e.seq;
  o["id"] = e.id;
  o["type"] = e.type;
  o["time"] = FormatTime(e.time);
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

Result<Event> EventFromJson(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) {
    return InvalidArgument("event: not a JSON object");
  }
  for (const auto& member : *o) {
    const std::string_view k = member.key();
    if (k != "seq" && k != "id" && k != "type" && k != "time" && k != "run" && k != "node" &&
        k != "data" && k != "prev" && k != "hash") {
      return InvalidArgument("event: unknown member '" + std::string(k.substr(0, 64)) + "'");
    }
  }
  Event e;
  const json::value* seq = o->if_contains("seq");
  if (seq == nullptr) {
    return InvalidArgument("event: missing member 'seq'");
  }
  VENTURE_ASSIGN_OR_RETURN(e.seq, SeqFrom(*seq));
  VENTURE_ASSIGN_OR_RETURN(e.id, StringMember(*o, "id", false, limits::kIdLengthMax + 8));
  if (!base::IsId(e.id, "evt")) {
    return InvalidArgument("event: id is not an evt_ id");
  }
  VENTURE_ASSIGN_OR_RETURN(e.type, StringMember(*o, "type", false, kTypeLengthMax));
  VENTURE_ASSIGN_OR_RETURN(std::string time, StringMember(*o, "time", false, 64));
  VENTURE_ASSIGN_OR_RETURN(e.time, ParseTime(time));
  VENTURE_ASSIGN_OR_RETURN(e.run, StringMember(*o, "run", true, kRunNodeLengthMax));
  VENTURE_ASSIGN_OR_RETURN(e.node, StringMember(*o, "node", true, kRunNodeLengthMax));
  const json::value* data = o->if_contains("data");
  if (data == nullptr || !data->is_object()) {
    return InvalidArgument("event: data must be an object");
  }
  e.data = *data;
  VENTURE_ASSIGN_OR_RETURN(e.prev, StringMember(*o, "prev", false, 67));
  if (!IsB2(e.prev)) {
    return InvalidArgument("event: prev is not a lowercase b2: hash");
  }
  if (o->contains("hash")) {
    VENTURE_ASSIGN_OR_RETURN(e.hash, StringMember(*o, "hash", false, 67));
    if (!IsB2(e.hash)) {
      return InvalidArgument("event: hash is not a lowercase b2: hash");
    }
  }
  return e;
}

std::string ComputeEventHash(const Event& e) { return base::B2(internal::EventHash(e)); }

std::string internal::CanonicalEventText(const Event& e) {
  // The members of EventToJson(e, false) in sorted key order, written directly: this is the hot
  // path of every append. event_test checks it equals CanonicalJson(EventToJson(e, false)).
  std::string out;
  out.reserve(192);
  out += "{\"data\":";
  base::AppendCanonicalJson(e.data, out);
  auto member = [&out](std::string_view key, std::string_view value) {
    out += ",\"";
    out += key;
    out += "\":";
    base::AppendJsonString(value, out);
  };
  member("id", e.id);
  member("node", e.node);
  member("prev", e.prev);
  member("run", e.run);
  out += ",\"seq\":";
  out += std::to_string(e.seq);
  member("time", FormatTime(e.time));
  member("type", e.type);
  out += '}';
  return out;
}

base::Hash internal::EventHash(const Event& e) {
  const std::string canonical = CanonicalEventText(e);
  auto prev = base::ParseB2(e.prev);
  if (!prev) {
    // Not a valid link: hash its text instead, so the result differs from every valid chain.
    return base::Blake2b(e.prev + canonical);
  }
  return base::Blake2b(std::span<const uint8_t>(prev->data(), prev->size()), canonical);
}

bool IsTerminalRunStatus(std::string_view status) {
  return status == "succeeded" || status == "failed" || status == "cancelled";
}

}  // namespace venture::storage
