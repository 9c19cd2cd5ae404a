// The user API's sessions and credentials (docs/PROTOCOL.md, "Accounts and sessions"): log
// in, refresh, log out, the caller's devices, and the caller's own password change and
// "log out everywhere else". Each is an audit event (detail::audit_account).
#include <algorithm>

#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/user_api.hpp"

namespace petchat::gateway {

using errors::code;
using errors::fail;
using namespace detail;

namespace {

awaitable<response> login(std::shared_ptr<user_api> api, request r) {
  auto body = parse_json_request(r);
  if (!body) co_return error_response(body.error());
  auto name = required_string(*body, "name");
  if (!name) co_return error_response(name.error());
  auto password = required_string(*body, "password");
  if (!password) co_return error_response(password.error());
  auto device = required_string(*body, "device_name");
  if (!device) co_return error_response(device.error());
  auto known = optional_string(*body, "device_token");
  if (!known) co_return error_response(known.error());
  auto t = co_await api->users.login(name.value(), password.value(), device.value(), r.client_address,
                                     known.value().value_or(""));
  audit_account("user-login", t ? nullptr : &t.error(), name.value(), r, "", t && t.value().password_rehashed);
  if (!t) {
    if (t.error().code == code::invalid_credentials) api->metrics.login_failed();
    co_return error_response(t.error());
  }
  auto answer = tokens_json(t.value(), api->users.region());
  answer["device_token"] = t.value().device_token;
  co_return json_response(201, answer);
}

awaitable<response> refresh(std::shared_ptr<user_api> api, request r) {
  auto body = parse_json_request(r);
  if (!body) co_return error_response(body.error());
  auto token = required_string(*body, "refresh_token");
  if (!token) co_return error_response(token.error());
  auto t = co_await api->users.refresh(token.value());
  if (!t && t.error().code == code::refresh_token_reused)  // a stolen token, or a client's bug: the session ends
    audit_account("token-refresh-reuse", &t.error(), "", r);
  if (!t) co_return error_response(t.error());
  co_return json_response(200, tokens_json(t.value(), api->users.region()));
}

awaitable<response> logout(std::shared_ptr<user_api> api, request r) {
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  auto s = co_await api->users.logout(who.value());
  audit_account("user-logout", s ? nullptr : &s.error(), who->user_name, r, who->device_id);
  if (!s) co_return error_response(s.error());
  // The browser's cache goes too: it holds the attachments this session downloaded.
  auto done = no_content();
  done.headers.emplace_back("Clear-Site-Data", "\"cache\"");
  co_return done;
}

// The caller's own devices: GET lists the sessions not revoked; DELETE /{device_id} ends
// one (another user's device is session_not_found: no telling whose it is).
awaitable<response> own_sessions(std::shared_ptr<user_api> api, request r, std::string device_id) {
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  auto sessions = api->users.list_sessions(who->user_name);
  if (device_id.empty()) {
    json::array list;
    for (auto const& s : sessions)
      if (!s.revoked)
        list.push_back(json::object{{"device_id", s.device_id},
                                    {"device_name", s.device_name},
                                    {"created_at", rfc3339(s.created_at_ms)},
                                    {"last_refreshed_at", rfc3339(s.last_refreshed_at_ms)},
                                    {"current", s.device_id == who->device_id}});
    co_return json_response(200, json::object{{"sessions", std::move(list)}});
  }
  bool own = std::any_of(sessions.begin(), sessions.end(), [&](auto const& s) { return s.device_id == device_id; });
  if (!own) co_return error_response(fail(code::session_not_found, "no device " + device_id + " of yours"));
  auto revoked = co_await api->users.revoke_session(device_id);
  audit_account("session-revoke", revoked ? nullptr : &revoked.error(), who->user_name, r, device_id);
  if (!revoked) co_return error_response(revoked.error());
  auto done = no_content();
  if (device_id == who->device_id) done.headers.emplace_back("Clear-Site-Data", "\"cache\"");  // as a logout
  co_return done;
}

// POST /v1/me/password: a new password for one who knows the current one; the other
// devices are logged out.
awaitable<response> change_password(std::shared_ptr<user_api> api, request r) {
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  auto body = parse_json_request(r);
  if (!body) co_return error_response(body.error());
  auto current = required_string(*body, "current_password");
  if (!current) co_return error_response(current.error());
  auto fresh = required_string(*body, "new_password");
  if (!fresh) co_return error_response(fresh.error());
  auto changed = co_await api->users.change_password(who.value(), current.value(), fresh.value(), r.client_address);
  audit_account("password-change", changed ? nullptr : &changed.error(), who->user_name, r, who->device_id);
  if (!changed) co_return error_response(changed.error());
  co_return json_response(200, json::object{{"device_token", changed.value()}});
}

// DELETE /v1/sessions/others: every device of the caller's but this one is logged out.
awaitable<response> end_other_sessions(std::shared_ptr<user_api> api, request r) {
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  auto ended = co_await api->users.revoke_other_sessions(who.value());
  audit_account("sessions-revoke-others", ended ? nullptr : &ended.error(), who->user_name, r, who->device_id);
  if (!ended) co_return error_response(ended.error());
  co_return json_response(200, json::object{{"ended", ended.value()}});
}

}  // namespace

awaitable<response> detail::sessions_route(std::shared_ptr<user_api> api, request r) {
  auto const& p = r.path;
  auto const& m = r.method;
  if (p == "/v1/me/password") {
    if (m != "POST") co_return method_not_allowed("POST");
    co_return co_await change_password(api, std::move(r));
  }
  if (p == "/v1/sessions" && m != "GET") {
    if (m != "POST") co_return method_not_allowed("GET, POST");
    co_return co_await login(api, std::move(r));
  }
  if (p == "/v1/sessions/refresh") {
    if (m != "POST") co_return method_not_allowed("POST");
    co_return co_await refresh(api, std::move(r));
  }
  if (p == "/v1/sessions/current") {
    if (m != "DELETE") co_return method_not_allowed("DELETE");
    co_return co_await logout(api, std::move(r));
  }
  if (p == "/v1/sessions/others") {
    if (m != "DELETE") co_return method_not_allowed("DELETE");
    co_return co_await end_other_sessions(api, std::move(r));
  }
  if (p == "/v1/sessions" && m == "GET") co_return co_await own_sessions(api, std::move(r), std::string());
  constexpr std::string_view sessions_prefix = "/v1/sessions/";
  if (p.starts_with(sessions_prefix) && p.size() > sessions_prefix.size() &&
      p.find('/', sessions_prefix.size()) == std::string::npos) {
    if (m != "DELETE") co_return method_not_allowed("DELETE");
    std::string device = p.substr(sessions_prefix.size());
    co_return co_await own_sessions(api, std::move(r), std::move(device));
  }
  co_return error_response(fail(code::not_found, "no endpoint " + p));
}

}  // namespace petchat::gateway
