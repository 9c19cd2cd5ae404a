// petchatctl: the admin's command line. Talks JSON over HTTP to the node's admin Unix
// socket. Exit codes scripts can rely on:
//   0 success, 1 the node refused (error code on stderr), 2 usage error,
//   3 the node is not reachable (not running, or wrong socket).
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <functional>
#include <iostream>
#include <vector>

#include "node/ctl/admin_client.hpp"

namespace {

namespace json = boost::json;

constexpr int exit_ok = 0, exit_refused = 1, exit_usage = 2, exit_unreachable = 3;

std::string json_string(json::value const& v) {
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_null()) return "";
  return json::serialize(v);
}

std::string field(json::object const& o, char const* key) {
  auto it = o.find(key);
  return it == o.end() ? "" : json_string(it->value());
}

// A plain aligned table for people.
void print_table(std::vector<std::string> const& header, std::vector<std::vector<std::string>> const& rows) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (auto const& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  auto line = [&](std::vector<std::string> const& r) {
    std::string s;
    for (std::size_t i = 0; i < r.size(); ++i) {
      s += r[i];
      if (i + 1 < r.size()) s += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << s << "\n";
  };
  line(header);
  for (auto const& r : rows) line(r);
}

std::string read_password(char const* prompt) {
  std::string pw;
  if (::isatty(STDIN_FILENO)) {
    std::fprintf(stderr, "%s", prompt);
    termios old;
    tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    std::getline(std::cin, pw);
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::fprintf(stderr, "\n");
  } else {
    std::getline(std::cin, pw);
  }
  if (!pw.empty() && pw.back() == '\r') pw.pop_back();
  return pw;
}

std::string encode(std::string const& s) {
  static char const hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '@')
      out += static_cast<char>(c);
    else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

struct context {
  std::string socket;
  bool as_json = false;
};

// Performs one admin call; prints errors; returns the exit code and the parsed answer.
int request(context const& ctx, std::string const& method, std::string const& target, json::value const* body,
            json::value& answer) {
  std::string error;
  auto reply = petchat::ctl::call(ctx.socket, method, target, body ? json::serialize(*body) : "", error);
  if (!reply) {
    std::cerr << "petchatctl: node not running at " << ctx.socket << " (" << error
              << "); start petchat-node, or point to it with --socket or --data-dir\n";
    return exit_unreachable;
  }
  if (reply->status == 204) {
    answer = json::object{{"ok", true}};
    return exit_ok;
  }
  boost::system::error_code ec;
  answer = json::parse(reply->body, ec);
  if (ec) {
    std::cerr << "petchatctl: the node answered " << reply->status << " with a body that is not JSON\n";
    return exit_refused;
  }
  if (reply->status >= 400) {
    auto const* err = answer.is_object() ? answer.as_object().if_contains("error") : nullptr;
    if (err && err->is_object())
      std::cerr << "petchatctl: error: " << field(err->as_object(), "code") << ": "
                << field(err->as_object(), "message") << "\n";
    else
      std::cerr << "petchatctl: error: HTTP " << reply->status << "\n";
    if (ctx.as_json) std::cout << json::serialize(answer) << "\n";
    return exit_refused;
  }
  return exit_ok;
}

void print_users(json::value const& answer) {
  std::vector<std::vector<std::string>> rows;
  for (auto const& u : answer.as_object().at("users").as_array()) {
    auto const& o = u.as_object();
    rows.push_back({field(o, "id"), field(o, "display_name"), o.at("disabled").as_bool() ? "disabled" : "active",
                    field(o, "sessions"), field(o, "created_at")});
  }
  print_table({"ID", "DISPLAY NAME", "STATE", "SESSIONS", "CREATED"}, rows);
}

void print_user(json::value const& answer) {
  auto const& o = answer.as_object();
  std::cout << field(o, "id") << " (" << field(o, "display_name")
            << "): " << (o.at("disabled").as_bool() ? "disabled" : "active") << ", " << field(o, "sessions")
            << " active sessions\n";
}

void print_sessions(json::value const& answer) {
  std::vector<std::vector<std::string>> rows;
  for (auto const& s : answer.as_object().at("sessions").as_array()) {
    auto const& o = s.as_object();
    rows.push_back({field(o, "device_id"), field(o, "user_id"), field(o, "device_name"),
                    o.at("revoked").as_bool() ? "revoked" : "active", field(o, "last_refreshed_at")});
  }
  print_table({"DEVICE ID", "USER", "DEVICE", "STATE", "LAST REFRESH"}, rows);
}

void print_assets(json::value const& answer) {
  auto const& o = answer.as_object();
  std::vector<std::vector<std::string>> rows;
  for (auto const& u : o.at("users").as_array()) {
    auto const& e = u.as_object();
    rows.push_back({field(e, "user_id"), field(e, "bytes"), field(e, "uploads")});
  }
  rows.push_back({"(total: " + field(o, "assets") + " assets)", field(o, "bytes"), ""});
  print_table({"USER", "BYTES", "UPLOADS IN PROGRESS"}, rows);
}

void print_verify(json::value const& answer) {
  auto const& o = answer.as_object();
  std::cout << "checked " << field(o, "checked") << " assets\n";
  for (auto const& id : o.at("missing").as_array()) std::cout << "missing bytes: " << id.as_string() << "\n";
  for (auto const& id : o.at("quarantined").as_array())
    std::cout << "damaged, moved to quarantine/: " << id.as_string() << "\n";
}

void print_status(json::value const& answer) {
  auto const& o = answer.as_object();
  auto const& u = o.at("users").as_object();
  auto const& s = o.at("sessions").as_object();
  print_table({"FIELD", "VALUE"}, {{"version", field(o, "version")},
                                   {"region", field(o, "region")},
                                   {"uptime", field(o, "uptime_s") + " s"},
                                   {"started", field(o, "started_at")},
                                   {"listen", field(o, "listen")},
                                   {"data dir", field(o, "data_dir")},
                                   {"users", field(u, "total") + " (" + field(u, "disabled") + " disabled)"},
                                   {"sessions", field(s, "active") + " active"}});
  if (auto const* m = o.if_contains("messages"); m && m->is_object()) {
    auto const& ms = m->as_object();
    if (field(ms, "writes") != "ok") std::cout << "message store: WRITES FAILING: " << field(ms, "write_error") << "\n";
    if (!field(ms, "salvaged_at").empty())
      std::cout << "message store: salvaged past a damaged write-ahead log at " << field(ms, "salvaged_at")
                << " (what followed the damage was lost)\n";
  }
}

void print_federation(json::value const& answer) {
  auto const& o = answer.as_object();
  if (!o.at("enabled").as_bool()) {
    std::cout << "region " << field(o, "region") << " is standalone (no [federation] in its config)\n";
    return;
  }
  print_table({"FIELD", "VALUE"},
              {{"region", field(o, "region")},
               {"link", o.at("connected").as_bool() ? "connected to " + field(o, "server") : "DISCONNECTED"},
               {"last error", field(o, "last_error")},
               {"inbound stream", field(o, "stream")},
               {"inbound applied", field(o, "applied_position") + " of " + field(o, "stream_last_seq")},
               {"inbound backlog", field(o, "inbound_backlog")},
               {"published since start", field(o, "published")},
               {"applied since start", field(o, "applied")}});
  std::cout << "\n";
  std::vector<std::vector<std::string>> rows;
  for (auto const& r : o.at("regions").as_array()) {
    auto const& ro = r.as_object();
    rows.push_back(
        {field(ro, "region"), field(ro, "outbox"), field(ro, "oldest_undelivered_s") + " s", field(ro, "inbound")});
  }
  print_table({"REGION", "WAITING TO GO", "OLDEST UNDELIVERED", "WAITING TO BE APPLIED"}, rows);
  std::cout << "\n";
  rows.clear();
  for (auto const& [reason, n] : o.at("rejects").as_object()) rows.push_back({std::string(reason), json::serialize(n)});
  if (rows.empty())
    std::cout << "no envelopes rejected\n";
  else
    print_table({"REJECTED", "COUNT"}, rows);
}

void print_push(json::value const& answer) {
  auto const& o = answer.as_object();
  if (!o.at("enabled").as_bool()) {
    std::cout << "push notifications are off (push.enabled = false)\n";
    return;
  }
  auto const& outbox = o.at("outbox").as_object();
  print_table({"FIELD", "VALUE"}, {{"push", "on"},
                                   {"targets", field(o, "targets")},
                                   {"users with pushes pending", field(outbox, "users")},
                                   {"oldest pending", field(outbox, "oldest_age_s") + " s"},
                                   {"requests in flight", field(o, "in_flight")},
                                   {"targets retrying", field(o, "retrying")}});
}

void print_push_targets(json::value const& answer) {
  std::vector<std::vector<std::string>> rows;
  for (auto const& t : answer.as_object().at("targets").as_array()) {
    auto const& to = t.as_object();
    auto where = to.contains("endpoint") ? field(to, "endpoint") : field(to, "gateway_url");
    auto last = field(to, "last_push_at");
    rows.push_back({field(to, "id"), field(to, "device_id"), field(to, "kind"), where, field(to, "pushed_through_seq"),
                    last.empty() ? "never" : last, field(to, "failures")});
  }
  if (rows.empty())
    std::cout << "no push targets\n";
  else
    print_table({"ID", "DEVICE", "KIND", "ENDPOINT", "PUSHED THROUGH", "LAST PUSH", "FAILURES"}, rows);
}

// The words of the command line, filled in by the parser.
struct arguments {
  std::string name, display_name, device_id, user_filter;
};

using show_fn = std::function<void(json::value const&)>;

// One subcommand: its request to the node, and how its answer is printed.
struct command {
  CLI::App* sub;
  std::function<int(context&, json::value& answer, show_fn& show)> run;
};

std::vector<command> users_commands(CLI::App& app, arguments& a) {
  auto* users = app.add_subcommand("users", "manage accounts")->require_subcommand(1);
  std::vector<command> out;
  out.push_back({users->add_subcommand("list", "list all accounts"), [](context& c, json::value& ans, show_fn& show) {
                   show = print_users;
                   return request(c, "GET", "/v1/admin/users", nullptr, ans);
                 }});
  auto* add = users->add_subcommand("add", "create an account (password from stdin)");
  add->add_option("name", a.name, "user name")->required();
  add->add_option("--display-name", a.display_name, "display name");
  out.push_back({add, [&a](context& c, json::value& ans, show_fn& show) {
                   json::object body{{"name", a.name}, {"password", read_password("password: ")}};
                   if (!a.display_name.empty()) body["display_name"] = a.display_name;
                   json::value v = body;
                   show = print_user;
                   return request(c, "POST", "/v1/admin/users", &v, ans);
                 }});
  for (std::string verb : {"disable", "enable"}) {
    auto* sub = users->add_subcommand(
        verb, verb == "disable" ? "refuse the user's logins and tokens at once" : "allow a disabled user again");
    sub->add_option("name", a.name)->required();
    out.push_back({sub, [&a, verb](context& c, json::value& ans, show_fn& show) {
                     show = print_user;
                     return request(c, "POST", "/v1/admin/users/" + encode(a.name) + "/" + verb, nullptr, ans);
                   }});
  }
  auto* del = users->add_subcommand("delete", "delete the account and its sessions");
  del->add_option("name", a.name)->required();
  out.push_back({del, [&a](context& c, json::value& ans, show_fn& show) {
                   show = [&a](json::value const&) { std::cout << "deleted " << a.name << "\n"; };
                   return request(c, "DELETE", "/v1/admin/users/" + encode(a.name), nullptr, ans);
                 }});
  auto* passwd = users->add_subcommand("passwd", "set a new password (from stdin); revokes sessions");
  passwd->add_option("name", a.name)->required();
  out.push_back({passwd, [&a](context& c, json::value& ans, show_fn& show) {
                   json::value v = json::object{{"password", read_password("new password: ")}};
                   show = print_user;
                   return request(c, "POST", "/v1/admin/users/" + encode(a.name) + "/password", &v, ans);
                 }});
  return out;
}

std::vector<command> other_commands(CLI::App& app, arguments& a) {
  std::vector<command> out;
  out.push_back({app.add_subcommand("status", "node version, region, uptime and counts"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = print_status;
                   return request(c, "GET", "/v1/admin/status", nullptr, ans);
                 }});
  auto* sessions = app.add_subcommand("sessions", "manage device sessions")->require_subcommand(1);
  auto* list = sessions->add_subcommand("list", "list sessions");
  list->add_option("--user", a.user_filter, "only this user's sessions");
  out.push_back({list, [&a](context& c, json::value& ans, show_fn& show) {
                   std::string target = "/v1/admin/sessions";
                   if (!a.user_filter.empty()) target += "?user=" + encode(a.user_filter);
                   show = print_sessions;
                   return request(c, "GET", target, nullptr, ans);
                 }});
  auto* revoke = sessions->add_subcommand("revoke", "revoke a session at once");
  revoke->add_option("device_id", a.device_id)->required();
  out.push_back({revoke, [&a](context& c, json::value& ans, show_fn& show) {
                   show = [&a](json::value const&) { std::cout << "revoked " << a.device_id << "\n"; };
                   return request(c, "DELETE", "/v1/admin/sessions/" + encode(a.device_id), nullptr, ans);
                 }});
  auto* messages = app.add_subcommand("messages", "manage the message store")->require_subcommand(1);
  out.push_back({messages->add_subcommand("compact", "remove expired messages now and reclaim their disk space"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = [](json::value const& v) {
                     std::cout << "removed " << field(v.as_object(), "expired")
                               << " expired messages; store compacted\n";
                   };
                   return request(c, "POST", "/v1/admin/messages/compact", nullptr, ans);
                 }});
  auto* assets = app.add_subcommand("assets", "stored files: usage, collection, verification");
  out.push_back({assets->add_subcommand("collect", "remove now what is due: unreferenced assets, expired uploads"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = [](json::value const& v) {
                     auto const& o = v.as_object();
                     std::cout << "removed " << field(o, "assets_removed") << " assets (" << field(o, "bytes_freed")
                               << " bytes) and " << field(o, "uploads_removed") << " expired uploads\n";
                   };
                   return request(c, "POST", "/v1/admin/assets/collect", nullptr, ans);
                 }});
  out.push_back({assets->add_subcommand("verify", "re-hash every stored file; quarantine the damaged"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = print_verify;
                   return request(c, "POST", "/v1/admin/assets/verify", nullptr, ans);
                 }});
  // After its subcommands: the first parsed command runs, and `assets` is parsed with them.
  out.push_back({assets, [](context& c, json::value& ans, show_fn& show) {
                   show = print_assets;
                   return request(c, "GET", "/v1/admin/assets", nullptr, ans);
                 }});
  auto* push = app.add_subcommand("push", "push notifications: the outbox, a user's targets")->require_subcommand(1);
  out.push_back({push->add_subcommand("status", "the push outbox, requests in flight, retries"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = print_push;
                   return request(c, "GET", "/v1/admin/push", nullptr, ans);
                 }});
  auto* push_targets = push->add_subcommand("targets", "a user's push targets and what was pushed to them");
  push_targets->add_option("name", a.name, "user name")->required();
  out.push_back({push_targets, [&a](context& c, json::value& ans, show_fn& show) {
                   show = print_push_targets;
                   return request(c, "GET", "/v1/admin/push/targets?user=" + encode(a.name), nullptr, ans);
                 }});
  auto* federation = app.add_subcommand("federation", "the link to other regions")->require_subcommand(1);
  out.push_back({federation->add_subcommand("status", "link state, known regions, backlogs, rejected envelopes"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = print_federation;
                   return request(c, "GET", "/v1/admin/federation", nullptr, ans);
                 }});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"petchatctl: administer a petchat node through its admin socket"};
  app.require_subcommand(1);
  context ctx;
  std::string data_dir = "./data";
  std::string socket;
  app.add_option("--socket", socket, "admin socket (default: <data-dir>/admin.sock)");
  app.add_option("--data-dir", data_dir, "the node's data directory")->capture_default_str();
  app.add_flag("--json", ctx.as_json, "print the node's JSON answer instead of a table");
  arguments args;
  auto commands = other_commands(app, args);
  for (auto& c : users_commands(app, args)) commands.push_back(std::move(c));

  try {
    app.parse(argc, argv);
  } catch (CLI::ParseError const& e) {
    int rc = app.exit(e);
    return rc == 0 ? exit_ok : exit_usage;
  }
  ctx.socket = socket.empty() ? data_dir + "/admin.sock" : socket;

  json::value answer;
  show_fn show;
  for (auto const& c : commands) {
    if (!c.sub->parsed()) continue;
    if (int rc = c.run(ctx, answer, show); rc != exit_ok) return rc;
    break;
  }
  if (ctx.as_json)
    std::cout << json::serialize(answer) << "\n";
  else if (show)
    show(answer);
  return exit_ok;
}
