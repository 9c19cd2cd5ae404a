// /v1/admin/registration-tokens (docs/PROTOCOL.md, "Admin API").
#include "node/gateway/detail/admin_tokens.hpp"

#include "base/format/format.hpp"
#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/user_api.hpp"

namespace petchat::gateway::detail {
namespace {

using errors::code;
using errors::fail;

constexpr std::int64_t default_expiry_s = 7 * 24 * 3600;

json::object token_json(users::registration_token_info const& t) {
  auto now = format::now_ms();
  json::object o{{"id", t.id},
                 {"state", t.state(now)},
                 {"uses", t.uses},
                 {"max_uses", t.max_uses},
                 {"created_at", format::rfc3339(t.created_at_ms)},
                 {"expires_at", t.expires_at_ms ? json::value(format::rfc3339(t.expires_at_ms)) : json::value(nullptr)},
                 {"note", t.note}};
  if (!t.token.empty()) o["token"] = t.token;
  return o;
}

// A whole number in [0, max] under `key`, or `fallback` when absent.
errors::result<std::int64_t> count_field(json::object const& o, char const* key, std::int64_t fallback,
                                         std::int64_t max) {
  auto const* v = o.if_contains(key);
  if (!v) return fallback;
  if (!v->is_int64() && !v->is_uint64()) return fail(code::invalid_field, std::string(key) + ": a whole number", key);
  auto n =
      v->is_int64() ? v->as_int64() : static_cast<std::int64_t>(std::min<std::uint64_t>(v->as_uint64(), INT64_MAX));
  if (n < 0 || n > max) return fail(code::invalid_field, std::string(key) + ": 0 to " + std::to_string(max), key);
  return n;
}

}  // namespace

awaitable<response> tokens_answer(users::user_service& users, request r, std::string id) {
  if (r.method == "GET" && id.empty()) {
    json::array list;
    for (auto const& t : users.registration_tokens()) list.push_back(token_json(t));
    co_return json_response(200, json::object{{"tokens", std::move(list)}});
  }
  if (r.method == "DELETE" && !id.empty()) {
    auto revoked = co_await users.revoke_registration_token(id);
    if (!revoked) co_return error_response(revoked.error());
    co_return json_response(200, token_json(*revoked));
  }
  if (r.method != "POST" || !id.empty()) co_return method_not_allowed(id.empty() ? "GET, POST" : "DELETE");
  auto body = parse_object(r.body.empty() ? "{}" : r.body);
  if (!body) co_return error_response(body.error());
  auto uses = count_field(*body, "uses", 1, 1'000'000);
  if (!uses) co_return error_response(uses.error());
  auto expires = count_field(*body, "expires_in_s", default_expiry_s, 10LL * 365 * 24 * 3600);
  if (!expires) co_return error_response(expires.error());
  auto note = optional_string(*body, "note");
  if (!note) co_return error_response(note.error());
  std::string text = note->value_or("");  // named: no temporaries inside co_await (GCC 12)
  auto made = co_await users.create_registration_token(static_cast<std::uint32_t>(*uses), *expires, std::move(text));
  if (!made) co_return error_response(made.error());
  co_return json_response(201, token_json(*made));
}

}  // namespace petchat::gateway::detail
