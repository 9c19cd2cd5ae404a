// The push endpoints of the user API (docs/PROTOCOL.md, "Push notifications"): the VAPID
// public key, a device's push targets and its push settings.
#include <algorithm>
#include <cstdio>
#include <string_view>
#include <utility>
#include <vector>

#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/user_api.hpp"
#include "node/notify/notify.hpp"

namespace petchat::gateway {

using errors::code;
using errors::fail;
using namespace detail;

json::object detail::push_target_json(messages::push_target const& t) {
  json::object o{
      {"id", t.id}, {"kind", t.kind}, {"device_id", t.device_id}, {"created_at", format::rfc3339(t.created_at_ms)}};
  if (t.kind == "matrix") {
    o["gateway_url"] = t.endpoint;
    o["app_id"] = t.app_id;
    o["pushkey"] = t.pushkey;
  } else {
    o["endpoint"] = t.endpoint;
  }
  return o;
}

namespace {

// `v` with every object's keys in bytewise order: the same data sent with its keys in
// another order is the same registration (a target registered again as it was).
json::value sorted_keys(json::value const& v) {
  if (v.is_array()) {
    json::array out;
    for (auto const& e : v.as_array()) out.push_back(sorted_keys(e));
    return out;
  }
  if (!v.is_object()) return v;
  std::vector<std::pair<std::string_view, json::value const*>> fields;
  for (auto const& [k, e] : v.as_object()) fields.emplace_back(k, &e);
  std::sort(fields.begin(), fields.end(), [](auto const& a, auto const& b) { return a.first < b.first; });
  json::object out;
  for (auto const& [k, e] : fields) out[k] = sorted_keys(*e);
  return out;
}

// A string member, or "" when absent; invalid_field when it is there but no string.
errors::result<std::string> string_or_empty(json::object const& o, char const* key, std::string const& field) {
  auto const* v = o.if_contains(key);
  if (!v) return std::string();
  if (!v->is_string()) return fail(code::invalid_field, field + " must be a string", field);
  return std::string(v->as_string());
}

awaitable<response> add_target(std::shared_ptr<user_api> api, users::principal who, request r) {
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  auto kind = required_string(*body, "kind");
  if (!kind) co_return error_response(kind.error());
  notify::target_spec spec;
  spec.kind = kind.value();
  if (spec.kind != "webpush" && spec.kind != "unifiedpush" && spec.kind != "matrix")
    co_return error_response(fail(code::invalid_field, "kind must be webpush, unifiedpush or matrix", "kind"));
  auto const& o = body.value();
  if (spec.kind == "matrix") {
    auto url = required_string(o, "gateway_url");
    if (!url) co_return error_response(url.error());
    auto app = required_string(o, "app_id");
    if (!app) co_return error_response(app.error());
    auto key = required_string(o, "pushkey");
    if (!key) co_return error_response(key.error());
    spec.endpoint = url.value();
    spec.app_id = app.value();
    spec.pushkey = key.value();
    if (auto const* data = o.if_contains("data"); data && !data->is_null()) {
      if (!data->is_object()) co_return error_response(fail(code::invalid_field, "data must be an object", "data"));
      spec.data_json = json::serialize(sorted_keys(*data));
    }
  } else {
    auto endpoint = required_string(o, "endpoint");
    if (!endpoint) co_return error_response(endpoint.error());
    spec.endpoint = endpoint.value();
    auto const* keys = o.if_contains("keys");
    if (!keys) co_return error_response(fail(code::missing_field, "keys is required", "keys"));
    if (!keys->is_object()) co_return error_response(fail(code::invalid_field, "keys must be an object", "keys"));
    auto p256dh = string_or_empty(keys->as_object(), "p256dh", "keys.p256dh");
    if (!p256dh) co_return error_response(p256dh.error());
    auto auth = string_or_empty(keys->as_object(), "auth", "keys.auth");
    if (!auth) co_return error_response(auth.error());
    if (p256dh.value().empty())
      co_return error_response(fail(code::missing_field, "keys.p256dh is required", "keys.p256dh"));
    if (auth.value().empty()) co_return error_response(fail(code::missing_field, "keys.auth is required", "keys.auth"));
    spec.p256dh = p256dh.value();
    spec.auth = auth.value();
  }
  // Named: no temporaries inside a co_await expression (GCC 12, docs/ARCHITECTURE.md).
  auto user = api->id_of(who);
  auto t = co_await api->push->add_target(user, who.device_id, std::move(spec));
  if (!t) co_return error_response(t.error());
  co_return json_response(201, push_target_json(t.value()));
}

// "HH:MM" as minutes after midnight.
std::optional<int> minutes_of(json::value const* v) {
  if (!v || !v->is_string()) return std::nullopt;
  auto const& s = v->as_string();
  auto digit = [&s](std::size_t i) { return s[i] >= '0' && s[i] <= '9'; };  // no signs or spaces
  if (s.size() != 5 || !digit(0) || !digit(1) || s[2] != ':' || !digit(3) || !digit(4)) return std::nullopt;
  int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59) return std::nullopt;
  return h * 60 + m;
}

std::string hhmm(int minutes) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02d:%02d", minutes / 60 % 24, minutes % 60);
  return buf;
}

json::object settings_json(messages::push_settings const& s) {
  json::object o{{"previews", s.previews}};
  if (s.dnd)
    o["dnd"] = json::object{
        {"start", hhmm(s.dnd_start_min)}, {"end", hhmm(s.dnd_end_min)}, {"utc_offset_min", s.utc_offset_min}};
  else
    o["dnd"] = nullptr;
  return o;
}

awaitable<response> put_settings(std::shared_ptr<user_api> api, users::principal who, request r) {
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  messages::push_settings s;
  auto const& o = body.value();
  if (auto const* p = o.if_contains("previews"); p && !p->is_null()) {
    if (!p->is_bool())
      co_return error_response(fail(code::invalid_field, "previews must be true or false", "previews"));
    s.previews = p->as_bool();
  }
  if (auto const* d = o.if_contains("dnd"); d && !d->is_null()) {
    if (!d->is_object()) co_return error_response(fail(code::invalid_field, "dnd must be an object or null", "dnd"));
    auto start = minutes_of(d->as_object().if_contains("start"));
    auto end = minutes_of(d->as_object().if_contains("end"));
    if (!start) co_return error_response(fail(code::invalid_field, "dnd.start must be \"HH:MM\"", "dnd.start"));
    if (!end) co_return error_response(fail(code::invalid_field, "dnd.end must be \"HH:MM\"", "dnd.end"));
    std::int64_t offset = 0;
    if (auto const* off = d->as_object().if_contains("utc_offset_min"); off && !off->is_null()) {
      if (!off->is_int64() || off->as_int64() < -840 || off->as_int64() > 840)
        co_return error_response(
            fail(code::invalid_field, "dnd.utc_offset_min must be an integer from -840 to 840", "dnd.utc_offset_min"));
      offset = off->as_int64();
    }
    s.dnd = true;
    s.dnd_start_min = *start;
    s.dnd_end_min = *end;
    s.utc_offset_min = int(offset);
  }
  auto user = api->id_of(who);
  auto done = co_await api->messages.set_push_settings(user, who.device_id, s);
  if (!done) co_return error_response(done.error());
  co_return json_response(200, settings_json(s));
}

}  // namespace

awaitable<response> detail::push_route(std::shared_ptr<user_api> api, request r) {
  auto const& p = r.path;
  auto const& m = r.method;
  if (!api->push) co_return error_response(fail(code::push_disabled, "this node does not send push notifications"));
  if (p == "/v1/push/vapid") {
    if (m != "GET") co_return method_not_allowed("GET");
    co_return json_response(200, json::object{{"public_key", api->push->vapid_public_key()}});
  }
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  auto user = api->id_of(who.value());
  if (p == "/v1/push/targets") {
    if (m == "POST") co_return co_await add_target(api, who.value(), std::move(r));
    if (m != "GET") co_return method_not_allowed("GET, POST");
    json::array list;
    for (auto const& t : api->messages.push_targets(user, who->device_id)) list.push_back(push_target_json(t));
    co_return json_response(200, json::object{{"targets", list}});
  }
  constexpr std::string_view one = "/v1/push/targets/";
  if (p.starts_with(one) && p.size() > one.size() && p.find('/', one.size()) == std::string::npos) {
    if (m != "DELETE") co_return method_not_allowed("DELETE");
    auto id = p.substr(one.size());
    auto done = co_await api->push->remove_target(user, who->device_id, id);
    if (!done) co_return error_response(done.error());
    co_return no_content();
  }
  if (p == "/v1/push/settings") {
    if (m == "PUT") co_return co_await put_settings(api, who.value(), std::move(r));
    if (m != "GET") co_return method_not_allowed("GET, PUT");
    co_return json_response(200, settings_json(api->messages.push_settings_of(user, who->device_id)));
  }
  co_return error_response(fail(code::not_found, "no endpoint " + p));
}

}  // namespace petchat::gateway
