// Approval links: signed, expiring, per-approver tokens bound to the approval and the content it
// shows. The decision itself goes through the engine (one vote per person; a link's nonce is
// recorded with the vote, so a link decides at most once).
#include <cstring>
#include <span>

#include "api/api.h"

namespace venture::api {
namespace {

constexpr std::string_view kLinkPath = "/approve/";

}  // namespace

ApprovalLinks::ApprovalLinks(std::array<uint8_t, 32> key, std::string public_url,
                             base::Clock& clock, base::Random& random)
    : key_(key), public_url_(std::move(public_url)), clock_(clock), random_(random) {
  while (!public_url_.empty() && public_url_.back() == '/') public_url_.pop_back();
}

std::array<uint8_t, 32> ApprovalLinks::derive_key(const base::SigningKey& signing_key) {
  // A key of its own, derived from the signing seed: a link MAC is never a checkpoint signature.
  return base::blake2b_mac(std::span(signing_key.secret_key.data(), 32),
                           "venture approval links v1");
}

std::string ApprovalLinks::content_hash(const json::value& request) {
  const json::object* r = request.if_object();
  json::object shown;
  for (std::string_view field : {"title", "description", "show"}) {
    const json::value* v = r ? r->if_contains(field) : nullptr;
    shown[field] = v ? *v : json::value();
  }
  return base::b2(base::blake2b(base::canonical_json(shown)));
}

std::string ApprovalLinks::mac(std::string_view message) const {
  const base::Hash h = base::blake2b_mac(key_, message);
  return base::base64url(std::string_view(reinterpret_cast<const char*>(h.data()), h.size()));
}

json::array ApprovalLinks::make(const std::string& run, const json::object& requested) {
  json::array links;
  const json::object* who = base::find_object(requested, "approvers");
  const json::array* users = who ? base::find_array(*who, "users") : nullptr;
  if (users == nullptr) return links;
  Time expires = clock_.now() + limits::kApprovalLinkTtl;
  if (const json::string* due = base::find_string(requested, "due")) {
    if (auto t = parse_time(*due)) expires = *t;
  }
  const std::string approval = base::string_or(requested, "approval", "");
  const std::string content = content_hash(requested);
  for (const json::value& u : *users) {
    if (!u.is_string()) continue;
    const std::string user(u.get_string());
    char nonce[16];
    for (int i = 0; i < 2; ++i) {
      const uint64_t r = random_.next();
      std::memcpy(nonce + 8 * i, &r, 8);
    }
    const json::object payload{{"a", approval},
                               {"u", user},
                               {"r", run},
                               {"h", content},
                               {"e", to_unix_ms(expires)},
                               {"n", base::base64url(std::string_view(nonce, sizeof nonce))}};
    const std::string body = base::base64url(json::serialize(payload));
    const std::string token = body + "." + mac(body);
    links.push_back(json::object{{"user", user},
                                 {"url", public_url_ + std::string(kLinkPath) + token},
                                 {"expires", format_time(expires)}});
  }
  return links;
}

Result<ApprovalLinks::Claim> ApprovalLinks::verify(std::string_view token) const {
  const Error invalid = not_found_error("this approval link is not valid");
  const std::size_t dot = token.find('.');
  if (dot == std::string_view::npos || token.size() > 2048) return invalid;
  const std::string_view body = token.substr(0, dot);
  const std::string expected = mac(body);
  const std::string_view given = token.substr(dot + 1);
  const auto as_bytes = [](std::string_view s) {
    return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  if (!base::equal_secret(as_bytes(expected), as_bytes(given))) return invalid;
  auto text = base::unbase64url(body);
  if (!text) return invalid;
  auto payload = base::parse_json(*text);
  const json::object* o = payload ? payload->if_object() : nullptr;
  if (o == nullptr) return invalid;
  Claim c;
  c.approval = base::string_or(*o, "a", "");
  c.user = base::string_or(*o, "u", "");
  c.content = base::string_or(*o, "h", "");
  c.nonce = base::string_or(*o, "n", "");
  c.expires = from_unix_ms(base::int_or(*o, "e", 0));
  if (c.approval.empty() || c.user.empty() || c.nonce.empty()) return invalid;
  return c;
}

std::string ApprovalLinks::confirmation(const Claim& claim) const {
  return mac("confirm:" + claim.approval + ":" + claim.nonce);
}

}  // namespace venture::api
