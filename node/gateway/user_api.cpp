// The chat clients' REST API (docs/PROTOCOL.md). Every request is validated here, at the
// edge, before the user service sees it.
#include "node/gateway/detail/user_api.hpp"
#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/routes.hpp"
#include "node/gateway/gateway.hpp"

#include <google/protobuf/util/json_util.h>
#include <algorithm>

#include <cstdio>
#include <ctime>

#include "base/format/format.hpp"
#include "base/ids/ids.hpp"
#include "node/log/log.hpp"

namespace petchat::gateway {

using errors::code;
using errors::fail;
using namespace detail;

std::optional<std::string_view> detail::bearer_token(std::string_view h) {
  constexpr std::string_view scheme = "bearer ";
  if (h.size() <= scheme.size() || !std::equal(scheme.begin(), scheme.end(), h.begin(), [](char a, char b) {
        return a == std::tolower(static_cast<unsigned char>(b));
      }))
    return std::nullopt;
  return h.substr(scheme.size());
}

// The caller, from "Authorization: Bearer <token>".
errors::result<users::principal> detail::authenticate(user_api const& api, request const& r) {
  auto h = r.header("authorization");
  if (h.empty()) return fail(code::missing_token, "this endpoint needs an Authorization: Bearer <access token> header");
  auto token = bearer_token(h);
  if (!token) return fail(code::invalid_token, "the Authorization header must be 'Bearer <access token>'");
  return api.users.authenticate(*token);
}

namespace {

// What a client wrote, as much of it as a log line keeps: `limit` bytes (cut at a
// character's start) and how long it was.
std::string clipped(std::string_view text, std::size_t limit) {
  if (text.size() <= limit) return std::string(text);
  while (limit > 0 && (static_cast<unsigned char>(text[limit]) & 0xC0) == 0x80) --limit;
  return std::string(text.substr(0, limit)) + "... (" + std::to_string(text.size()) + " bytes)";
}

// Failures a client gets for nothing (no password was checked: refused by a limiter, a
// field or the registration policy) are logged 20 times a second at most, 100 at once; the
// next line let through says how many were held back. Wrong passwords (and disabled
// accounts' right ones) are always logged: their rate is that of the password checks, and
// fail2ban sees every one.
log::throttle cheap_failures(std::chrono::milliseconds(50), 100);

}  // namespace

void detail::audit_account(char const* action, errors::failure const* failed, std::string const& user, request const& r,
                           std::string const& device, bool rehashed) {
  std::uint64_t held = 0;
  if (failed && failed->code != code::invalid_credentials && failed->code != code::wrong_password &&
      failed->code != code::refresh_token_reused && failed->code != code::user_disabled) {
    auto passed = cheap_failures.pass();
    if (passed == 0) return;
    held = passed - 1;
  }
  auto name = clipped(user, 64);
  std::string message = std::string(action) + (failed ? " failed" : "") + " for '" + log::printable(name) + "' from " +
                        r.client_address + (failed ? ": " + std::string(errors::name(failed->code)) : "");
  log::audit("authentication", action, failed == nullptr, message,
             {{"client.ip", r.client_address},
              {"user.name", name},
              {"event.reason", failed ? errors::name(failed->code) : ""},
              {"labels.device_id", device},
              {"labels.held_back", held ? std::to_string(held) : ""},
              {"labels.password_rehashed", rehashed ? "true" : ""},
              {"http.request.method", r.method},
              {"url.path", r.path},
              {"user_agent.original", clipped(r.header("user-agent"), 256)}});
}

namespace {

awaitable<response> register_user(std::shared_ptr<user_api> api, request r) {
  auto body = parse_json_request(r);
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
                                             token.value().value_or(""), false, r.client_address);
  audit_account("user-register", p ? nullptr : &p.error(), name.value(), r);
  if (!p) co_return error_response(p.error());
  co_return json_response(201, profile_json(p.value(), api->users.region()));
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
    o["group_adds"] = p.value().group_adds_contacts_only ? "contacts" : "everyone";
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
  auto adds = optional_string(*body, "group_adds", false);
  if (!adds) co_return error_response(adds.error());
  if (adds.value()) {
    if (*adds.value() != "everyone" && *adds.value() != "contacts")
      co_return error_response(fail(code::invalid_field, "group_adds is \"everyone\" or \"contacts\"", "group_adds"));
    update.group_adds_contacts_only = *adds.value() == "contacts";
  }
  auto p = co_await api->users.update_profile(who->user_name, update);
  if (!p) co_return error_response(p.error());
  auto o = profile_json(p.value(), api->users.region());
  o["group_adds"] = p.value().group_adds_contacts_only ? "contacts" : "everyone";
  co_return json_response(200, o);
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

// The history filters of docs/PROTOCOL.md, from the query string.
errors::result<messages::history_query> history_filters(std::string const& query) {
  messages::history_query q;
  // Checked here too (the message service checks them again), so that a page by `peer`
  // with no conversation yet refuses what one with a conversation refuses.
  for (auto [key, out] : {std::pair{"before", &q.before}, std::pair{"after", &q.after}}) {
    *out = query_param(query, key);
    auto raw = *out ? format::from_base64url(**out) : std::nullopt;
    if (*out && (!raw || raw->size() != 16))  // a message id: 16 bytes
      return fail(code::invalid_field, std::string(key) + " must be a message id", key);
  }
  for (auto [key, out] : {std::pair{"since", &q.since_ms}, std::pair{"until", &q.until_ms}}) {
    if (auto v = query_param(query, key)) {
      auto t = format::parse_rfc3339(*v);
      if (!t) return fail(code::invalid_field, std::string(key) + " must be an RFC 3339 date-time", key);
      *out = t;
    }
  }
  auto limit = page_limit(query);
  if (!limit) return limit.error();
  q.limit = *limit;
  return q;
}

}  // namespace

errors::result<std::size_t> detail::page_limit(std::string const& query) {
  auto v = query_param(query, "limit");
  if (!v) return std::size_t(50);
  // Plain digits only: strtol would also take "+5", " 5" and "0x5".
  bool plain =
      !v->empty() && v->size() <= 3 && std::all_of(v->begin(), v->end(), [](char c) { return c >= '0' && c <= '9'; });
  long n = plain ? std::strtol(v->c_str(), nullptr, 10) : 0;
  if (n < 1 || n > 200) return fail(code::invalid_field, "limit must be a whole number from 1 to 200", "limit");
  return static_cast<std::size_t>(n);
}

json::object detail::presence_json(user_api const& api, std::string const& user) {
  auto p = api.manager.presence(user);
  json::object o{{"state", p.online ? "ONLINE" : "OFFLINE"}};
  // (Online: no last-seen time, as the live stream's presence frames say.)
  o["last_seen_at"] = !p.online && p.last_seen_ms ? json::value(rfc3339(p.last_seen_ms)) : json::value(nullptr);
  return o;
}

response detail::history_answer(user_api const& api, std::string const& user, std::string const& conv,
                                std::string const& query) {
  auto q = history_filters(query);
  if (!q) return error_response(q.error());
  auto page = api.messages.history(user, conv, q.value());
  if (!page) return error_response(page.error());
  json::array list;
  spliced_json out;
  for (auto const& m : page->messages) list.push_back(message_json(out, m));
  return out.answer(200, json::object{{"messages", std::move(list)},
                                      {"has_more_before", page->has_more_before},
                                      {"has_more_after", page->has_more_after}});
}

namespace {

awaitable<response> messages_route(std::shared_ptr<user_api> api, request r) {
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  std::string me = api->id_of(*who);
  auto const& p = r.path;
  if (p == "/v1/messages") {
    if (r.method != "GET") co_return method_not_allowed("GET");
    auto peer = query_param(r.query, "peer");
    if (!peer) co_return error_response(fail(code::missing_field, "the 'peer' parameter is required", "peer"));
    auto id = ids::parse_user_id(*peer, api->users.region());
    if (!id) co_return error_response(fail(code::user_not_found, "no user '" + *peer + "'"));
    // A conversation with a peer whose account was deleted since stays the caller's.
    auto conv = messages::message_service::conversation_of(me, id->str());
    if (api->messages.is_member(me, conv)) co_return history_answer(*api, me, conv, r.query);
    if (id->region == api->users.region() && !api->users.get_profile(id->name))
      co_return error_response(fail(code::user_not_found, "no user '" + *peer + "'"));
    // No conversation yet: an empty page, for the filters a page would take (the answer
    // must not tell whether the two have written to each other).
    if (auto filters = history_filters(r.query); !filters) co_return error_response(filters.error());
    co_return json_response(
        200, json::object{{"messages", json::array()}, {"has_more_before", false}, {"has_more_after", false}});
  }
  // /v1/messages/{id}
  std::string id = url_decode(p.substr(std::string_view("/v1/messages/").size())).value_or("");
  if (r.method == "GET") {
    auto m = api->messages.get(me, id);
    if (!m) co_return error_response(m.error());
    spliced_json out;
    auto v = message_json(out, m.value());
    co_return out.answer(200, v);
  }
  if (r.method == "DELETE") {
    auto scope = query_param(r.query, "for").value_or("me");
    if (scope != "me" && scope != "everyone")
      co_return error_response(fail(code::invalid_field, "for must be 'me' or 'everyone'", "for"));
    auto s = co_await api->messages.remove(me, id, scope == "everyone");
    if (!s) co_return error_response(s.error());
    co_return no_content();
  }
  co_return method_not_allowed("GET, DELETE");
}

awaitable<response> presence_route(std::shared_ptr<user_api> api, request r, std::string target) {
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  if (r.method != "GET") co_return method_not_allowed("GET");
  std::string me = api->id_of(*who);
  auto id = ids::parse_user_id(url_decode(target).value_or(""), api->users.region());
  if (!id) co_return error_response(fail(code::user_not_found, "no user '" + target + "'"));
  std::string them = id->str();
  if (!api->messages.shares_presence(me, them))
    co_return error_response(
        fail(code::presence_hidden, "presence is shared once both of you have written in your conversation"));
  auto o = presence_json(*api, them);
  o["user_id"] = them;
  co_return json_response(200, o);
}

// The region directory: every region a client may connect to (public, no token).
response regions(user_api const& api) {
  json::array list;
  auto all = api.fed.regions.all();
  for (auto const& r : *all) {
    json::array keys;
    for (auto const& k : r.keys)
      keys.push_back(json::value(format::hex({reinterpret_cast<char const*>(k.data()), k.size()})));
    json::object o{{"name", r.name}, {"public_keys", std::move(keys)}};
    o["url"] = r.url.empty() ? json::value(nullptr) : json::value(r.url);
    o["location"] = r.location.empty() ? json::value(nullptr) : json::value(r.location);
    o["self"] = r.name == api.fed.regions.self();
    list.push_back(std::move(o));
  }
  return json_response(200, json::object{{"regions", std::move(list)}});
}

}  // namespace

response detail::method_not_allowed(char const* allowed) {
  auto r = error_response(fail(code::method_not_allowed, std::string("this endpoint allows ") + allowed));
  r.headers.emplace_back("Allow", allowed);
  return r;
}

namespace {

// For /readyz: a region is ready without federation (it works alone), but says how it is.
json::value federation_state(user_api const& api) {
  if (!api.fed.link) return "standalone";
  return api.fed.link->connected() ? "connected" : "disconnected";
}

awaitable<response> route(std::shared_ptr<user_api> api, request r) {
  auto const& p = r.path;
  auto const& m = r.method;
  if ((p == "/healthz" || p == "/readyz") && m != "GET" && m != "HEAD") co_return method_not_allowed("GET, HEAD");
  if (p == "/healthz") co_return json_response(200, json::object{{"status", "ok"}});
  if (p == "/metrics" && api->serve_metrics) co_return scrape_answer(api->metrics, m);
  if (p == "/readyz") {
    if (*api->stopping)
      co_return json_response(503, json::object{{"status", "shutting_down"}, {"region", api->users.region()}});
    // A store refusing writes (a full disk, or an error it cannot resume from until a
    // restart): nothing can be sent (the message store), or nobody can register, log in
    // or stay logged in (the account store), so not ready, though alive (/healthz).
    bool users_failing = !api->users.write_error().empty();
    bool messages_failing = !api->messages.write_error().empty();
    bool failing = users_failing || messages_failing;
    co_return json_response(failing ? 503 : 200,
                            json::object{{"status", failing ? "store_failing" : "ready"},
                                         {"region", api->users.region()},
                                         {"stores", json::object{{"users", users_failing ? "failing" : "open"},
                                                                 {"messages", messages_failing ? "failing" : "open"}}},
                                         {"federation", federation_state(*api)}});
  }
  if (p == "/v1/regions") {
    if (m != "GET") co_return method_not_allowed("GET");
    co_return regions(*api);
  }
  if (p == "/v1/users") {
    if (m != "POST") co_return method_not_allowed("POST");
    co_return co_await register_user(api, std::move(r));
  }
  if (p == "/v1/sessions" || p.starts_with("/v1/sessions/") || p == "/v1/me/password")
    co_return co_await sessions_route(api, std::move(r));
  if (p == "/v1/me") {
    if (m != "GET" && m != "PATCH") co_return method_not_allowed("GET, PATCH");
    co_return co_await me(api, std::move(r));
  }
  if (p == "/v1/conversations" || p.starts_with("/v1/conversations/") ||
      (p.starts_with("/v1/messages/") && p.ends_with("/receipts")))
    co_return co_await conversations_route(api, std::move(r));
  if (p == "/v1/messages" || p.starts_with("/v1/messages/")) co_return co_await messages_route(api, std::move(r));
  if (p.starts_with("/v1/presence/") && p.size() > 13) {
    std::string target = p.substr(13);
    co_return co_await presence_route(api, std::move(r), std::move(target));
  }
  if (p == "/v1/assets" || p.starts_with("/v1/assets/") || p == "/v1/uploads" || p.starts_with("/v1/uploads/"))
    co_return co_await assets_route(api, std::move(r));
  if (p.starts_with("/v1/push/")) co_return co_await push_route(api, std::move(r));
  if (p == "/v1/ws") co_return error_response(fail(code::bad_request, "/v1/ws needs a WebSocket upgrade"));
  constexpr std::string_view users_prefix = "/v1/users/";
  if (p.starts_with(users_prefix) && p.size() > users_prefix.size() &&
      p.find('/', users_prefix.size()) == std::string::npos) {
    if (m != "GET") co_return method_not_allowed("GET");
    std::string id = p.substr(users_prefix.size());
    co_return co_await user_profile(api, std::move(r), std::move(id));
  }
  if (api->web && !p.starts_with("/v1/")) {
    if (auto page = api->web->serve(m, p, r.header("accept-encoding"), r.header("if-none-match"))) {
      if (page->status == 405) co_return method_not_allowed("GET, HEAD");
      // Served over TLS by the node itself: the browser keeps to https for this host (a
      // first visit over http could otherwise be answered by someone else's client).
      if (api->https) page->headers.emplace_back("Strict-Transport-Security", "max-age=31536000");
      co_return response{
          page->status, std::string(page->body), page->content_type, std::move(page->headers), nullptr, 0, 0};
    }
  }
  co_return error_response(fail(code::not_found, "no endpoint " + p));
}

}  // namespace

// Every answer is counted, and timed by route, method and status.
awaitable<response> counted(std::shared_ptr<user_api> api, request r) {
  auto started = std::chrono::steady_clock::now();
  auto path = detail::route_template(r.path);
  auto method = detail::method_label(r.method);
  auto origin = r.header("origin");
  if (auto pre = api->cors.preflight(r)) {
    api->metrics.http_request("user", path, method, pre->status, std::chrono::steady_clock::now() - started);
    co_return *pre;
  }
  request head;  // what CORS looks at, once the request itself has been handed on
  head.method = r.method;
  head.path = r.path;
  head.headers["origin"] = std::move(origin);
  response res;
  bool failed = false;
  try {
    if (auto bad = detail::malformed_query(r.query))
      res = error_response(*bad);
    else
      res = co_await route(api, std::move(r));
  } catch (std::exception const& e) {  // answered here, so that it carries CORS's headers too
    log::get("gateway")->error("{} {}: handler failed: {}", head.method, path, e.what());
    failed = true;
  }
  if (failed) res = error_response(errors::fail(errors::code::internal, "internal error"));
  api->cors.decorate(head, res);
  api->metrics.http_request("user", path, method, res.status, std::chrono::steady_clock::now() - started);
  co_return res;
}

handler make_user_api(users::user_service& users, messages::message_service& messages, ws::ws_manager& manager,
                      metrics::registry& metrics, std::shared_ptr<std::atomic<bool>> stopping, federation_view fed,
                      assets::asset_service* assets, notify::notification_service* push,
                      std::shared_ptr<web::site const> web, bool serve_metrics, std::vector<std::string> cors_origins,
                      bool https) {
  auto api = std::make_shared<user_api>(user_api{users, messages, manager, metrics, std::move(stopping), fed, assets,
                                                 push, std::move(web), serve_metrics,
                                                 detail::cors_policy(std::move(cors_origins)), https});
  return [api](request r) { return counted(api, std::move(r)); };
}

}  // namespace petchat::gateway
