// The chat clients' REST API (docs/PROTOCOL.md). Every request is validated here, at the
// edge, before the user service sees it.
#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/gateway.hpp"

namespace petchat::gateway {
namespace {

using errors::code;
using errors::fail;
using namespace detail;

struct user_api {
  users::user_service& users;
  std::shared_ptr<std::atomic<bool>> stopping;
};

// The caller, from "Authorization: Bearer <token>".
errors::result<users::principal> authenticate(user_api const& api, request const& r) {
  auto h = r.header("authorization");
  if (h.empty()) return fail(code::missing_token, "this endpoint needs an Authorization: Bearer <access token> header");
  constexpr std::string_view scheme = "Bearer ";
  if (h.size() <= scheme.size() || !std::equal(scheme.begin(), scheme.end(), h.begin(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
      }))
    return fail(code::invalid_token, "the Authorization header must be 'Bearer <access token>'");
  return api.users.authenticate(std::string_view(h).substr(scheme.size()));
}

awaitable<response> register_user(std::shared_ptr<user_api> api, request r) {
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  auto name = required_string(*body, "name");
  if (!name) co_return error_response(name.error());
  auto password = required_string(*body, "password");
  if (!password) co_return error_response(password.error());
  auto display = optional_string(*body, "display_name");
  if (!display) co_return error_response(display.error());
  auto token = optional_string(*body, "registration_token");
  if (!token) co_return error_response(token.error());
  auto p = co_await api->users.register_user(name.value(), password.value(), display.value(),
                                             token.value().value_or(""), false);
  if (!p) co_return error_response(p.error());
  co_return json_response(201, profile_json(p.value(), api->users.region()));
}

awaitable<response> login(std::shared_ptr<user_api> api, request r) {
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  auto name = required_string(*body, "name");
  if (!name) co_return error_response(name.error());
  auto password = required_string(*body, "password");
  if (!password) co_return error_response(password.error());
  auto device = required_string(*body, "device_name");
  if (!device) co_return error_response(device.error());
  auto t = co_await api->users.login(name.value(), password.value(), device.value(), r.client_address);
  if (!t) co_return error_response(t.error());
  co_return json_response(201, tokens_json(t.value(), api->users.region()));
}

awaitable<response> refresh(std::shared_ptr<user_api> api, request r) {
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  auto token = required_string(*body, "refresh_token");
  if (!token) co_return error_response(token.error());
  auto t = co_await api->users.refresh(token.value());
  if (!t) co_return error_response(t.error());
  co_return json_response(200, tokens_json(t.value(), api->users.region()));
}

awaitable<response> logout(std::shared_ptr<user_api> api, request r) {
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  auto s = co_await api->users.logout(who.value());
  if (!s) co_return error_response(s.error());
  co_return no_content();
}

awaitable<response> me(std::shared_ptr<user_api> api, request r) {
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  if (r.method == "GET") {
    auto p = api->users.get_profile(who->user_name);
    if (!p) co_return error_response(p.error());
    auto o = profile_json(p.value(), api->users.region());
    o["device_id"] = who->device_id;
    o["device_name"] = who->device_name;
    co_return json_response(200, o);
  }
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  users::profile_update update;
  // In a PATCH, null is not "leave as is" (that is an absent field) but an invalid value.
  auto display = optional_string(*body, "display_name", false);
  if (!display) co_return error_response(display.error());
  auto about = optional_string(*body, "about", false);
  if (!about) co_return error_response(about.error());
  update.display_name = display.value();
  update.about = about.value();
  auto p = co_await api->users.update_profile(who->user_name, update);
  if (!p) co_return error_response(p.error());
  co_return json_response(200, profile_json(p.value(), api->users.region()));
}

awaitable<response> user_profile(std::shared_ptr<user_api> api, request r, std::string id) {
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  auto decoded = url_decode(id);
  if (!decoded) co_return error_response(fail(code::user_not_found, "malformed user id"));
  auto p = api->users.get_profile(*decoded);
  if (!p) co_return error_response(p.error());
  co_return json_response(200, profile_json(p.value(), api->users.region()));
}

response method_not_allowed(char const* allowed) {
  auto r = error_response(fail(code::method_not_allowed, std::string("this endpoint allows ") + allowed));
  r.headers.emplace_back("Allow", allowed);
  return r;
}

awaitable<response> route(std::shared_ptr<user_api> api, request r) {
  auto const& p = r.path;
  auto const& m = r.method;
  if ((p == "/healthz" || p == "/readyz") && m != "GET" && m != "HEAD") co_return method_not_allowed("GET, HEAD");
  if (p == "/healthz") co_return json_response(200, json::object{{"status", "ok"}});
  if (p == "/readyz") {
    if (*api->stopping)
      co_return json_response(503, json::object{{"status", "shutting_down"}, {"region", api->users.region()}});
    co_return json_response(200, json::object{{"status", "ready"},
                                              {"region", api->users.region()},
                                              {"stores", json::object{{"users", "open"}}},
                                              {"federation", "standalone"}});
  }
  if (p == "/v1/users") {
    if (m != "POST") co_return method_not_allowed("POST");
    co_return co_await register_user(api, std::move(r));
  }
  if (p == "/v1/sessions") {
    if (m != "POST") co_return method_not_allowed("POST");
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
  if (p == "/v1/me") {
    if (m != "GET" && m != "PATCH") co_return method_not_allowed("GET, PATCH");
    co_return co_await me(api, std::move(r));
  }
  constexpr std::string_view users_prefix = "/v1/users/";
  if (p.starts_with(users_prefix) && p.size() > users_prefix.size() &&
      p.find('/', users_prefix.size()) == std::string::npos) {
    if (m != "GET") co_return method_not_allowed("GET");
    std::string id = p.substr(users_prefix.size());
    co_return co_await user_profile(api, std::move(r), std::move(id));
  }
  co_return error_response(fail(code::not_found, "no endpoint " + p));
}

}  // namespace

handler make_user_api(users::user_service& users, std::shared_ptr<std::atomic<bool>> stopping) {
  auto api = std::make_shared<user_api>(user_api{users, std::move(stopping)});
  return [api](request r) { return route(api, std::move(r)); };
}

}  // namespace petchat::gateway
