// The operators' API on the admin Unix socket (docs/PROTOCOL.md, "Admin API"). Whoever can
// open the socket (mode 0600) is the node's administrator.
#include <algorithm>
#include <charconv>
#include <chrono>

#include "base/ids/ids.hpp"
#include "node/async/async.hpp"
#include "node/gateway/detail/admin_backup.hpp"
#include "node/gateway/detail/admin_federation.hpp"
#include "node/gateway/detail/admin_tokens.hpp"
#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/user_api.hpp"
#include "node/gateway/gateway.hpp"
#include "node/log/log.hpp"

namespace petchat::gateway {
namespace {

using errors::code;
using errors::fail;
using namespace detail;

struct admin_api {
  users::user_service& users;
  messages::message_service& messages;
  metrics::registry& metrics;
  boost::asio::thread_pool& cpu_pool;  // whole-table scans and compaction run here, not on I/O threads
  node_info info;
  federation_view fed;
  assets::asset_service* assets = nullptr;
  notify::notification_service* push = nullptr;
  ws::ws_manager* manager = nullptr;     // who is online
  reload_fn reload;                      // the config read again
  backup::snapshots* backups = nullptr;  // petchatctl backup's snapshots
};

// `petchatctl reload`: what was applied, what needs a restart; a config that does not load
// changes nothing and is config_invalid with its errors.
response reload_answer(admin_api const& api, request const& r) {
  if (r.method != "POST") return method_not_allowed("POST");
  if (!api.reload) return error_response(fail(code::not_found, "this node cannot reload"));
  auto o = api.reload();
  auto strings = [](std::vector<std::string> const& v) {
    json::array a;
    for (auto const& s : v) a.push_back(json::string(s));
    return a;
  };
  if (!o.errors.empty()) {
    std::string all;
    for (auto const& e : o.errors) all += (all.empty() ? "" : "; ") + e;
    return error_response(fail(code::config_invalid, all));
  }
  return json_response(200, json::object{{"applied", strings(o.applied)}, {"needs_restart", strings(o.needs_restart)}});
}

// `petchatctl online`: every live stream, by user and device.
response online_answer(admin_api const& api) {
  json::array streams;
  std::size_t users = 0;
  std::string last;
  if (api.manager)
    for (auto const& s : api.manager->online()) {
      if (s.user != last) ++users;
      last = s.user;
      streams.push_back(json::object{{"user_id", s.user}, {"device_id", s.device_id}});
    }
  return json_response(200, json::object{{"users", users}, {"streams", std::move(streams)}});
}

// `petchatctl log-level [LEVEL]`: the level every logger writes from, changed at once.
response log_answer(request const& r) {
  if (r.method == "PUT") {
    auto body = parse_object(r.body);
    if (!body) return error_response(body.error());
    auto level = required_string(*body, "level");
    if (!level) return error_response(level.error());
    if (!log::set_level(level.value()))
      return error_response(
          fail(code::invalid_field, "level: expected one of trace, debug, info, warn, error, critical, off", "level"));
  } else if (r.method != "GET") {
    return method_not_allowed("GET, PUT");
  }
  return json_response(200, json::object{{"level", log::current_level()}});
}

// `petchatctl push status` and `push targets <name>`.
response push_answer(admin_api const& api, request const& r, std::string const& action) {
  if (!api.push && action.empty())
    return json_response(200, json::object{{"enabled", false},
                                           {"outbox", json::object{{"users", 0}, {"oldest_age_s", 0}}},
                                           {"in_flight", 0},
                                           {"slow_in_flight", 0},
                                           {"retrying", 0},
                                           {"targets", 0}});
  if (!api.push) return error_response(fail(code::push_disabled, "this node does not send push notifications"));
  if (action.empty()) {
    auto s = api.push->status();
    auto now = format::now_ms();
    return json_response(
        200, json::object{{"enabled", s.enabled},
                          {"outbox", json::object{{"users", s.users},
                                                  {"oldest_age_s", s.oldest_ms ? (now - s.oldest_ms) / 1000 : 0}}},
                          {"in_flight", s.in_flight},
                          {"slow_in_flight", s.slow},
                          {"retrying", s.retrying},
                          {"targets", s.targets}});
  }
  if (action != "targets") return error_response(fail(code::not_found, "no endpoint " + r.path));
  auto name = query_param(r.query, "user");
  if (!name) return error_response(fail(code::missing_field, "?user=<name> is required", "user"));
  auto at = name->find('@');
  auto bare = name->substr(0, at);
  // Only this region's users have targets here: alice@elsewhere is not our alice.
  if (at != std::string::npos && name->substr(at + 1) != api.info.region)
    return error_response(fail(code::user_not_found, "no user '" + *name + "' in region " + api.info.region));
  if (!api.users.get_profile(bare)) return error_response(fail(code::user_not_found, "no user '" + *name + "'"));
  json::array list;
  for (auto const& t : api.push->targets_of(bare + "@" + api.info.region)) {
    auto o = push_target_json(t.target);
    o["user_id"] = t.target.user;
    o["pushed_through_seq"] = std::to_string(t.target.pushed_through);
    o["last_push_at"] = t.target.last_push_ms ? json::value(rfc3339(t.target.last_push_ms)) : json::value(nullptr);
    o["failures"] = t.target.failures;
    o["next_try_at"] = t.next_try_ms ? json::value(rfc3339(t.next_try_ms)) : json::value(nullptr);
    list.push_back(std::move(o));
  }
  return json_response(200, json::object{{"targets", std::move(list)}});
}

// Sweeps expired messages, then flushes and compacts the store. Compaction rewrites files
// and can take seconds: it runs on the CPU pool so no I/O thread stalls.
awaitable<response> compact(std::shared_ptr<admin_api> api) {
  std::size_t expired = 0;
  for (;;) {
    std::size_t n = co_await api->messages.sweep_expired();
    expired += n;
    if (n == 0) break;
  }
  auto work = [api] {
    api->messages.compact();
    return true;
  };
  co_await async::offload(api->cpu_pool, std::move(work));
  co_return json_response(200, json::object{{"expired", expired}});
}

// `petchatctl assets`: usage per user and in total; collect now; verify every blob.
awaitable<response> assets_action(std::shared_ptr<admin_api> api, request r, std::string action) {
  if (!api->assets) co_return error_response(fail(code::not_found, "this node stores no assets"));
  if (action.empty()) {
    if (r.method != "GET") co_return method_not_allowed("GET");
    auto work = [api] {
      std::uint64_t bytes = 0, count = 0;
      for (auto const& [hash, size] : api->messages.all_assets()) {
        bytes += size;
        ++count;
      }
      json::array users;
      for (auto const& u : api->messages.asset_usage_by_user())
        users.push_back(json::object{{"user_id", u.user}, {"bytes", u.bytes}, {"uploads", u.uploads}});
      return json::value(json::object{{"assets", count}, {"bytes", bytes}, {"users", std::move(users)}});
    };
    co_return json_response(200, co_await async::offload(api->cpu_pool, std::move(work)));
  }
  if (r.method != "POST") co_return method_not_allowed("POST");
  if (action == "collect") {
    auto done = co_await api->assets->collect();
    co_return json_response(200, json::object{{"assets_removed", done.assets_removed},
                                              {"uploads_removed", done.uploads_removed},
                                              {"bytes_freed", done.bytes_freed}});
  }
  if (action == "verify") {
    auto v = co_await api->assets->verify();
    json::array missing(v.missing.begin(), v.missing.end()), bad(v.quarantined.begin(), v.quarantined.end());
    co_return json_response(200, json::object{{"checked", v.checked},
                                              {"skipped", v.skipped},
                                              {"missing", std::move(missing)},
                                              {"quarantined", std::move(bad)}});
  }
  co_return error_response(fail(code::not_found, "no endpoint " + r.path));
}

json::object user_entry(admin_api const& api, users::profile const& p) {
  return json::object{{"id", p.name + "@" + api.info.region},   {"name", p.name},
                      {"display_name", p.display_name},         {"disabled", p.disabled},
                      {"created_at", rfc3339(p.created_at_ms)}, {"sessions", api.users.active_sessions_of(p.name)}};
}

response user_answer(admin_api const& api, errors::result<users::profile> const& p, unsigned status = 200) {
  if (!p) return error_response(p.error());
  return json_response(status, user_entry(api, p.value()));
}

response status_answer(errors::status const& s) {
  if (!s) return error_response(s.error());
  return no_content();
}

// An account deleted, then taken out of its groups; that second step also runs for an
// account deleted before (a DELETE repeated after the first one's second step failed).
awaitable<response> delete_account(std::shared_ptr<admin_api> api, std::string name) {
  auto deleted = co_await api->users.delete_user(name);
  if (!deleted && deleted.error().code != code::user_not_found) co_return error_response(deleted.error());
  auto id = ids::parse_user_id(name, api->users.region());
  if (id && id->region == api->users.region()) {
    auto finished = co_await finish_account_deletion(api->users, api->messages, api->metrics, id->name);
    if (!finished) co_return error_response(finished.error());
  }
  co_return status_answer(deleted);
}

// The message store's health: whether it takes writes, and whether it was ever opened past
// a damaged write-ahead log (what followed the damage is lost).
json::object messages_status(admin_api const& api) {
  auto salvaged = api.messages.salvaged_at_ms();
  auto failing = api.messages.write_error();
  json::object entries;
  for (auto const& [kind, n] : api.messages.stored_entries()) entries[kind] = n;
  return json::object{{"writes", failing.empty() ? "ok" : "failing"},
                      {"stored_entries", std::move(entries)},
                      {"write_error", failing.empty() ? json::value(nullptr) : json::value(failing)},
                      {"salvaged_at", salvaged ? json::value(rfc3339(salvaged)) : json::value(nullptr)}};
}

// The account store's health, as the message store's: whether it takes writes, and if not
// why (the system's words for a full or failing disk, or an LMDB failure).
json::object users_status(admin_api const& api, users::stats const& c) {
  auto failing = api.users.write_error();
  return json::object{{"total", c.users},
                      {"disabled", c.disabled_users},
                      {"writes", failing.empty() ? "ok" : "failing"},
                      {"write_error", failing.empty() ? json::value(nullptr) : json::value(failing)}};
}

json::object status(admin_api const& api) {
  auto c = api.users.counts();
  auto now = format::now_ms();
  return json::object{
      {"version", api.info.version},
      {"region", api.info.region},
      {"started_at", rfc3339(api.info.started_at_ms)},
      {"uptime_s", (now - api.info.started_at_ms) / 1000},
      {"data_dir", api.info.data_dir},
      {"data_format", api.info.data_format},
      {"data_created_at", rfc3339(api.info.data_created_at_ms)},
      {"listen", api.info.listen},
      {"metrics_listen", api.info.metrics_listen.empty() ? json::value(nullptr) : json::value(api.info.metrics_listen)},
      {"users", users_status(api, c)},
      {"sessions", json::object{{"active", c.active_sessions}}},
      {"messages", messages_status(api)}};
}

awaitable<response> add_user(std::shared_ptr<admin_api> api, request r) {
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  auto name = required_string(*body, "name");
  if (!name) co_return error_response(name.error());
  auto password = required_string(*body, "password");
  if (!password) co_return error_response(password.error());
  auto display = optional_string(*body, "display_name");
  if (!display) co_return error_response(display.error());
  co_return user_answer(
      *api, co_await api->users.register_user(name.value(), password.value(), display.value(), "", true, "admin"), 201);
}

awaitable<response> user_action(std::shared_ptr<admin_api> api, request r, std::string name, std::string action) {
  if (action == "disable" || action == "enable") {
    if (r.method != "POST") co_return method_not_allowed("POST");
    co_return user_answer(*api, co_await api->users.set_disabled(name, action == "disable"));
  }
  if (action == "password") {
    if (r.method != "POST") co_return method_not_allowed("POST");
    auto body = parse_object(r.body);
    if (!body) co_return error_response(body.error());
    auto password = required_string(*body, "password");
    if (!password) co_return error_response(password.error());
    co_return user_answer(*api, co_await api->users.set_password(name, password.value()));
  }
  co_return error_response(fail(code::not_found, "no endpoint " + r.path));
}

// The path's segments, decoded; a segment that does not decode is "\x01", which names
// nothing (route() refuses such a path first: once it was "", and `DELETE
// /v1/admin/backup/%zz` let go of whatever snapshot was open).
std::vector<std::string> segments(std::string const& path) {
  std::vector<std::string> out;
  std::size_t pos = 1;
  while (pos <= path.size()) {
    auto end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    out.push_back(url_decode(path.substr(pos, end - pos)).value_or("\x01"));
    pos = end + 1;
  }
  return out;
}

awaitable<response> route(std::shared_ptr<admin_api> api, request r) {
  auto const& m = r.method;
  if (r.path == "/metrics") co_return scrape_answer(api->metrics, m);
  auto seg = segments(r.path);  // "/v1/admin/users/alice/disable" -> v1 admin users alice disable
  if (std::find(seg.begin(), seg.end(), "\x01") != seg.end())
    co_return error_response(fail(code::invalid_field, "the path's percent-encoding does not decode"));
  if (seg.size() < 3 || seg[0] != "v1" || seg[1] != "admin")
    co_return error_response(fail(code::not_found, "no endpoint " + r.path));
  auto const& what = seg[2];
  if (what == "status" && seg.size() == 3) {
    if (m != "GET") co_return method_not_allowed("GET");
    // Counting scans every account and session: off the I/O threads.
    auto work = [api] { return json::value(status(*api)); };
    co_return json_response(200, co_await async::offload(api->cpu_pool, std::move(work)));
  }
  if (what == "users" && seg.size() == 3) {
    if (m == "GET") {
      // Paged by name: ?after=<name>&limit=<n> (default and most: 1000).
      std::string after = query_param(r.query, "after").value_or("");
      auto limit_text = query_param(r.query, "limit").value_or("1000");
      std::size_t limit = 0;
      auto [end, ec] = std::from_chars(limit_text.data(), limit_text.data() + limit_text.size(), limit);
      if (ec != std::errc{} || end != limit_text.data() + limit_text.size() || limit < 1 || limit > 1000)
        co_return error_response(fail(code::invalid_field, "limit: expected 1 to 1000", "limit"));
      auto work = [api, after, limit] {
        json::object page;
        json::array list;
        std::string last;
        bool more = false;
        for (auto const& p : api->users.list_users()) {
          if (p.name <= after && !after.empty()) continue;
          if (list.size() == limit) {
            more = true;
            break;
          }
          list.push_back(user_entry(*api, p));
          last = p.name;
        }
        page["users"] = std::move(list);
        page["next_after"] = more ? json::value(last) : json::value(nullptr);
        return page;
      };
      co_return json_response(200, co_await async::offload(api->cpu_pool, std::move(work)));
    }
    if (m == "POST") co_return co_await add_user(api, std::move(r));
    co_return method_not_allowed("GET, POST");
  }
  if (what == "users" && seg.size() == 4) {
    if (m == "DELETE") co_return co_await delete_account(api, seg[3]);
    if (m == "GET") co_return user_answer(*api, api->users.get_profile(seg[3]));
    co_return method_not_allowed("GET, DELETE");
  }
  if (what == "users" && seg.size() == 5) co_return co_await user_action(api, std::move(r), seg[3], seg[4]);
  if (what == "sessions" && seg.size() == 3) {
    if (m != "GET") co_return method_not_allowed("GET");
    auto user = query_param(r.query, "user");
    if (user && !api->users.get_profile(*user))
      co_return error_response(fail(code::user_not_found, "no user '" + *user + "'"));
    // Every session of the node (no user named) is a scan of them all: off the I/O threads.
    auto work = [api, user] {
      json::array list;
      for (auto const& s : api->users.list_sessions(user))
        list.push_back(json::object{{"device_id", s.device_id},
                                    {"user_id", s.user_name + "@" + api->info.region},
                                    {"device_name", s.device_name},
                                    {"created_at", rfc3339(s.created_at_ms)},
                                    {"last_refreshed_at", rfc3339(s.last_refreshed_at_ms)},
                                    {"revoked", s.revoked}});
      return json::value(json::object{{"sessions", std::move(list)}});
    };
    co_return json_response(200, co_await async::offload(api->cpu_pool, std::move(work)));
  }
  if (what == "federation" && seg.size() == 3) {
    if (m != "GET") co_return method_not_allowed("GET");
    auto work = [api] { return json::value(federation_status(api->fed, api->info.region)); };  // scans the outbox
    co_return json_response(200, co_await async::offload(api->cpu_pool, std::move(work)));
  }
  if (what == "federation" && seg.size() == 5 && seg[3] == "outbox") {
    if (m != "DELETE") co_return method_not_allowed("DELETE");
    co_return co_await drop_outbox(api->fed, api->info.region, seg[4]);
  }
  if (what == "messages" && seg.size() == 4 && seg[3] == "compact") {
    if (m != "POST") co_return method_not_allowed("POST");
    co_return co_await compact(api);
  }
  if (what == "assets" && seg.size() <= 4) {
    // Named first: GCC 12 mishandles a temporary made inside a co_await expression.
    std::string action = seg.size() == 4 ? seg[3] : std::string();
    co_return co_await assets_action(api, std::move(r), std::move(action));
  }
  if (what == "push" && seg.size() <= 4) {
    if (m != "GET") co_return method_not_allowed("GET");
    // Off the I/O threads: the count of targets is a scan of them all.
    auto work = [api, r, action = seg.size() == 4 ? seg[3] : std::string()] { return push_answer(*api, r, action); };
    co_return co_await async::offload(api->cpu_pool, std::move(work));
  }
  if (what == "online" && seg.size() == 3) {
    if (m != "GET") co_return method_not_allowed("GET");
    co_return online_answer(*api);
  }
  if (what == "online" && seg.size() == 4) {  // kick: end the device's live streams
    if (m != "DELETE") co_return method_not_allowed("DELETE");
    std::size_t n = api->manager ? api->manager->kick(seg[3]) : 0;
    if (n == 0) co_return error_response(fail(code::not_found, "no live stream of device " + seg[3]));
    co_return json_response(200, json::object{{"kicked", n}});
  }
  if (what == "log" && seg.size() == 3) co_return log_answer(r);
  if (what == "reload" && seg.size() == 3) co_return reload_answer(*api, r);
  if (what == "registration-tokens" && seg.size() <= 4) {
    std::string id = seg.size() == 4 ? seg[3] : "";  // named: no temporaries inside co_await (GCC 12)
    co_return co_await tokens_answer(api->users, std::move(r), std::move(id));
  }
  // `/v1/admin/backup/` or `.../by-requester/` names no snapshot: taken as none, it would
  // release whichever is open.
  if (what == "backup" && seg.size() >= 4 && seg.back().empty())
    co_return error_response(fail(code::invalid_field, "a snapshot id or requester token is needed"));
  if (what == "backup" && seg.size() <= 4) {
    std::string id = seg.size() == 4 ? seg[3] : "";
    co_return co_await backup_answer(api->backups, api->cpu_pool, api->info, std::move(r), std::move(id));
  }
  if (what == "backup" && seg.size() == 5 && seg[3] == "by-requester") {
    std::string token = seg[4];
    co_return co_await backup_answer(api->backups, api->cpu_pool, api->info, std::move(r), "", std::move(token));
  }
  if (what == "sessions" && seg.size() == 4) {
    if (m != "DELETE") co_return method_not_allowed("DELETE");
    co_return status_answer(co_await api->users.revoke_session(seg[3]));
  }
  co_return error_response(fail(code::not_found, "no endpoint " + r.path));
}

}  // namespace

awaitable<errors::status> finish_account_deletion(users::user_service& users, messages::message_service& messages,
                                                  metrics::registry& metrics, std::string name) {
  auto left = co_await messages.account_deleted(name + "@" + users.region());
  if (!left) co_return left.error();
  for (std::size_t i = 0; i < *left; ++i) metrics.push_target_removed("session_ended");
  co_return co_await users.deletion_finished(name);
}

// What an admin request changes, for the audit log: the action ("admin-user-disable") and
// the account, session or whatever it names; nothing for reads.
struct admin_change {
  std::string action, target;
};

std::optional<admin_change> change_of(request const& r) {
  if (r.method == "GET" || r.method == "HEAD") return std::nullopt;
  auto seg = segments(r.path);
  if (seg.size() < 3 || seg[0] != "v1" || seg[1] != "admin") return std::nullopt;
  auto const& what = seg[2];
  if (what == "users" && seg.size() == 3) {
    auto body = parse_object(r.body);
    auto const* name = body ? body->if_contains("name") : nullptr;
    return admin_change{"admin-user-add", name && name->is_string() ? std::string(name->as_string()) : ""};
  }
  if (what == "users" && seg.size() == 4)
    return admin_change{r.method == "DELETE" ? "admin-user-delete" : "admin-user-" + r.method, seg[3]};
  if (what == "users" && seg.size() == 5) return admin_change{"admin-user-" + seg[4], seg[3]};
  if (what == "sessions" && seg.size() == 4) return admin_change{"admin-session-revoke", seg[3]};
  if (what == "online" && seg.size() == 4) return admin_change{"admin-device-kick", seg[3]};
  if (what == "registration-tokens")
    return admin_change{r.method == "POST" ? "admin-token-create" : "admin-token-revoke",
                        seg.size() == 4 ? seg[3] : ""};
  if (what == "backup")
    return admin_change{r.method == "POST" ? "admin-backup" : "admin-backup-release", seg.size() == 4 ? seg[3] : ""};
  std::string action = "admin";
  for (std::size_t i = 2; i < seg.size(); ++i) action += "-" + seg[i];
  return admin_change{action, ""};
}

awaitable<response> counted(std::shared_ptr<admin_api> api, request r) {
  auto change = change_of(r);
  std::string method = r.method, path = r.path;
  response res;
  if (auto bad = malformed_query(r.query))
    res = error_response(*bad);
  else
    res = co_await route(api, std::move(r));
  api->metrics.http_request("admin", res.status);
  if (change)
    log::audit(
        "configuration", change->action, res.status < 400,
        change->action + (change->target.empty() ? "" : " " + change->target) + ": " + std::to_string(res.status),
        {{"user.target.name", change->target},
         {"http.request.method", method},
         {"url.path", path},
         {"http.response.status_code", std::to_string(res.status), true},
         {"client.ip", "unix"}});
  co_return res;
}

handler make_admin_api(users::user_service& users, messages::message_service& messages, metrics::registry& metrics,
                       boost::asio::thread_pool& cpu_pool, node_info info, federation_view fed,
                       assets::asset_service* assets, notify::notification_service* push, ws::ws_manager* manager,
                       reload_fn reload, backup::snapshots* backups) {
  auto api = std::make_shared<admin_api>(admin_api{users, messages, metrics, cpu_pool, std::move(info), fed, assets,
                                                   push, manager, std::move(reload), backups});
  return [api](request r) { return counted(api, std::move(r)); };
}

}  // namespace petchat::gateway
