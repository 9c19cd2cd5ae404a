// The user API's conversations and groups (docs/PROTOCOL.md, "Conversations and groups"):
// the list, one conversation, group changes, and a message's receipts. Bodies are checked
// here; the rules of groups are the message service's.
#include <algorithm>
#include <unordered_set>

#include "base/ids/ids.hpp"
#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/user_api.hpp"

namespace petchat::gateway::detail {
namespace {

using errors::code;
using errors::fail;

char const* role_name(client::member_role r) {
  switch (r) {
    case client::OWNER:
      return "owner";
    case client::ADMIN:
      return "admin";
    default:
      return "member";
  }
}

json::object conversation_json(user_api const& api, std::string const& me, messages::conversation_view const& v,
                               bool details, spliced_json& out) {
  if (v.bare) return json::object{{"id", v.id}};  // the user left it: nothing of theirs to show
  json::object o{{"id", v.id},
                 {"kind", v.group ? "group" : "direct"},
                 {"title", v.title},
                 {"member_count", v.member_count},
                 {"member", v.member},
                 {"last_activity_ms", std::to_string(v.last_activity_ms)},
                 {"unread_count", v.unread},
                 {"muted", v.muted}};
  if (!v.group) o["peer"] = v.peer;
  o["last_message"] = v.last_message ? message_json(out, *v.last_message) : json::value(nullptr);
  o["read_mark"] = v.read_mark ? json::value(*v.read_mark) : json::value(nullptr);
  if (!details) return o;
  o["description"] = v.description;
  o["ttl_s"] = v.ttl_s;
  o["history_visible"] = v.history_visible;
  o["version"] = v.version;
  o["created_at_ms"] = std::to_string(v.created_at_ms);
  o["owner"] = v.owner.empty() ? json::value(nullptr) : json::value(v.owner);
  json::array members;
  // Whose presence the caller sees (GET /v1/presence): in a group worked out once for all
  // its members, not per member.
  std::unordered_set<std::string> shared;
  if (v.group) {
    auto contacts = api.messages.contacts(me);
    shared.insert(contacts.begin(), contacts.end());
  } else if (api.messages.shares_presence(me, v.peer)) {
    shared.insert(v.peer);
  }
  for (auto const& m : v.members) {
    bool shown = m.user_id == me || (m.shares_presence && shared.count(m.user_id));
    members.push_back(json::object{{"user_id", m.user_id},
                                   {"role", role_name(m.role)},
                                   {"presence", shown ? presence_json(api, m.user_id) : json::value(nullptr)}});
  }
  o["members"] = std::move(members);
  return o;
}

json::array failures_json(std::vector<messages::member_failure> const& failed) {
  json::array out;
  for (auto const& f : failed)
    out.push_back(
        json::object{{"user_id", f.user_id}, {"code", errors::name(f.error.code)}, {"message", f.error.message}});
  return out;
}

response membership_answer(user_api const& api, std::string const& me, messages::membership_result const& r,
                           unsigned status) {
  json::array added;
  for (auto const& u : r.added) added.push_back(json::value(u));
  spliced_json out;
  json::object o{{"conversation", conversation_json(api, me, r.conversation, true, out)},
                 {"added", std::move(added)},
                 {"failed", failures_json(r.failed)}};
  return out.answer(status, o);
}

response conversation_answer(user_api const& api, std::string const& me, messages::conversation_view const& v) {
  spliced_json out;
  auto o = conversation_json(api, me, v, true, out);
  return out.answer(200, o);
}

// A change of a group homed in another region: sent there (docs/FEDERATION.md).
response queued(std::string const& request_id) {
  return json_response(202, json::object{{"queued", true}, {"request_id", request_id}});
}

// Optional typed fields of a body: absent (or null) is nullopt.
errors::result<std::optional<bool>> optional_bool(json::object const& o, char const* key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::optional<bool>();
  if (!it->value().is_bool()) return fail(code::invalid_field, std::string(key) + " must be true or false", key);
  return std::optional<bool>(it->value().as_bool());
}
errors::result<std::optional<std::uint32_t>> optional_u32(json::object const& o, char const* key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::optional<std::uint32_t>();
  auto const& v = it->value();
  bool ok = (v.is_int64() && v.as_int64() >= 0 && v.as_int64() <= UINT32_MAX) ||
            (v.is_uint64() && v.as_uint64() <= UINT32_MAX);
  if (!ok) return fail(code::invalid_field, std::string(key) + " must be a whole number of seconds", key);
  return std::optional<std::uint32_t>(static_cast<std::uint32_t>(v.is_int64() ? v.as_int64() : v.as_uint64()));
}
errors::result<std::vector<std::string>> user_list(json::object const& o, char const* key, bool required) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    if (required) return fail(code::missing_field, std::string(key) + " is required", key);
    return std::vector<std::string>();
  }
  if (!it->value().is_array()) return fail(code::invalid_field, std::string(key) + " must be a list of user ids", key);
  std::vector<std::string> out;
  for (auto const& v : it->value().as_array()) {
    if (!v.is_string()) return fail(code::invalid_field, std::string(key) + " must be a list of user ids", key);
    out.emplace_back(v.as_string());
  }
  return out;
}

awaitable<response> create(std::shared_ptr<user_api> api, std::string me, request const& r) {
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  messages::group_spec spec;
  auto title = required_string(*body, "title");
  if (!title) co_return error_response(title.error());
  auto description = optional_string(*body, "description");
  if (!description) co_return error_response(description.error());
  auto members = user_list(*body, "members", false);
  if (!members) co_return error_response(members.error());
  auto visible = optional_bool(*body, "history_visible");
  if (!visible) co_return error_response(visible.error());
  auto ttl = optional_u32(*body, "ttl_s");
  if (!ttl) co_return error_response(ttl.error());
  auto client_id = optional_string(*body, "client_id");
  if (!client_id) co_return error_response(client_id.error());
  if (*client_id && (client_id->value().empty() || client_id->value().size() > 64))
    co_return error_response(fail(code::invalid_field, "client_id is 1 to 64 bytes", "client_id"));
  spec.client_id = client_id->value_or("");
  spec.title = *title;
  spec.description = description->value_or("");
  spec.members = std::move(*members);
  spec.history_visible = visible->value_or(false);
  spec.ttl_s = ttl->value_or(0);
  auto made = co_await api->messages.create_group(me, std::move(spec));
  if (!made) co_return error_response(made.error());
  co_return membership_answer(*api, me, *made, made->repeated ? 200 : 201);
}

awaitable<response> patch(std::shared_ptr<user_api> api, std::string me, std::string conv, request const& r) {
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  messages::conversation_patch change;
  auto title = optional_string(*body, "title", false);
  if (!title) co_return error_response(title.error());
  auto description = optional_string(*body, "description", false);
  if (!description) co_return error_response(description.error());
  auto ttl = optional_u32(*body, "ttl_s");
  if (!ttl) co_return error_response(ttl.error());
  auto visible = optional_bool(*body, "history_visible");
  if (!visible) co_return error_response(visible.error());
  auto muted = optional_bool(*body, "muted");
  if (!muted) co_return error_response(muted.error());
  change.title = *title;
  change.description = *description;
  change.ttl_s = *ttl;
  change.history_visible = *visible;
  change.muted = *muted;
  auto v = co_await api->messages.update_conversation(me, conv, std::move(change));
  if (!v) co_return error_response(v.error());
  if (v->queued) co_return queued(v->request_id);
  co_return conversation_answer(*api, me, *v);
}

awaitable<response> member_route(std::shared_ptr<user_api> api, std::string me, std::string conv, std::string user,
                                 request const& r) {
  if (r.method == "DELETE") {
    auto successor = query_param(r.query, "successor");  // named: no temporaries in a co_await expression (GCC 12)
    auto s = co_await api->messages.remove_member(me, conv, user, successor);
    if (!s) co_return error_response(s.error());
    if (*s) co_return queued(**s);
    co_return no_content();
  }
  if (r.method != "PATCH") co_return method_not_allowed("DELETE, PATCH");
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  auto role = required_string(*body, "role");
  if (!role) co_return error_response(role.error());
  auto r_ = *role == "owner"    ? client::OWNER
            : *role == "admin"  ? client::ADMIN
            : *role == "member" ? client::MEMBER
                                : client::MEMBER_ROLE_UNSPECIFIED;
  auto v = co_await api->messages.set_role(me, conv, user, r_);
  if (!v) co_return error_response(v.error());
  if (v->queued) co_return queued(v->request_id);
  co_return conversation_answer(*api, me, *v);
}

response receipts(user_api const& api, std::string const& me, std::string const& message_id) {
  auto rc = api.messages.receipts(me, message_id);
  if (!rc) return error_response(rc.error());
  json::array members;
  for (auto const& m : rc->members)
    members.push_back(json::object{{"user_id", m.user_id},
                                   {"delivered_at_ms", std::to_string(m.delivered_at_ms)},
                                   {"read_at_ms", std::to_string(m.read_at_ms)}});
  return json_response(200, json::object{{"message_id", rc->message_id},
                                         {"conversation_id", rc->conversation_id},
                                         {"recipients", rc->recipients},
                                         {"delivered_count", rc->delivered_count},
                                         {"read_count", rc->read_count},
                                         {"members", std::move(members)}});
}

}  // namespace

awaitable<response> conversations_route(std::shared_ptr<user_api> api, request r) {
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  std::string me = api->id_of(*who);
  std::string_view p = r.path;
  if (p.starts_with("/v1/messages/")) {  // .../{id}/receipts
    if (r.method != "GET") co_return method_not_allowed("GET");
    auto id = p.substr(13, p.size() - 13 - std::string_view("/receipts").size());
    co_return receipts(*api, me, url_decode(id).value_or(""));
  }
  if (p == "/v1/conversations") {
    if (r.method == "POST") co_return co_await create(api, me, r);
    if (r.method != "GET") co_return method_not_allowed("GET, POST");
    auto limit = page_limit(r.query);
    if (!limit) co_return error_response(limit.error());
    auto page = api->messages.conversations(me, *limit, query_param(r.query, "before"));
    if (!page) co_return error_response(page.error());
    json::array list;
    spliced_json out;
    for (auto const& v : page->conversations) list.push_back(conversation_json(*api, me, v, false, out));
    json::object o{{"conversations", std::move(list)},
                   {"next", page->next ? json::value(*page->next) : json::value(nullptr)}};
    co_return out.answer(200, o);
  }
  // /v1/conversations/{id}[/members[/{user}]]
  auto rest = p.substr(std::string_view("/v1/conversations/").size());
  auto slash = rest.find('/');
  std::string conv = url_decode(rest.substr(0, slash)).value_or("");
  auto tail = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (tail == "/messages") {
    if (r.method != "GET") co_return method_not_allowed("GET");
    co_return history_answer(*api, me, conv, r.query);
  }
  if (tail.empty()) {
    if (r.method == "PATCH") co_return co_await patch(api, me, conv, r);
    if (r.method != "GET") co_return method_not_allowed("GET, PATCH");
    auto v = api->messages.conversation(me, conv);
    if (!v) co_return error_response(v.error());
    co_return conversation_answer(*api, me, *v);
  }
  if (tail == "/members") {
    if (r.method != "POST") co_return method_not_allowed("POST");
    auto body = parse_object(r.body);
    if (!body) co_return error_response(body.error());
    auto users = user_list(*body, "members", true);
    if (!users) co_return error_response(users.error());
    auto added = co_await api->messages.add_members(me, conv, std::move(*users));
    if (!added) co_return error_response(added.error());
    if (added->queued)
      co_return json_response(
          202,
          json::object{{"queued", true}, {"request_id", added->request_id}, {"failed", failures_json(added->failed)}});
    co_return membership_answer(*api, me, *added, 200);
  }
  if (tail.starts_with("/members/") && tail.size() > 9 && tail.find('/', 9) == std::string_view::npos) {
    auto user = url_decode(tail.substr(9));
    if (!user) co_return error_response(fail(code::user_not_found, "malformed user id"));
    co_return co_await member_route(api, me, conv, *user, r);
  }
  co_return error_response(fail(code::not_found, "no endpoint " + r.path));
}

}  // namespace petchat::gateway::detail
