// petchatctl: the admin's command line. Talks JSON over HTTP to the node's admin Unix
// socket. Exit codes scripts can rely on (docs/PROTOCOL.md, "petchatctl"; detail/request.hpp):
//   0 success, 1 the node refused (error code on stderr), its answer is not the JSON
//   expected, or something at the socket gave no usable answer (none in time, not HTTP: a
//   node that may be busy), 2 usage error, 3 the node is not running (no socket, refused).
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <vector>

#include "node/ctl/admin_client.hpp"
#include "node/ctl/detail/backup.hpp"
#include "node/ctl/detail/locate.hpp"
#include "node/ctl/detail/print.hpp"
#include "node/ctl/detail/request.hpp"

namespace {

namespace json = boost::json;
using namespace petchat::ctl::detail;

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

// Compaction, collection and verification walk the whole store: an hour before giving up.
constexpr int long_work_s = 3600;

// The words of the command line, filled in by the parser.
struct arguments {
  std::string name, display_name, device_id, user_filter, region, after, dir, data_dir, expires = "7d";
  int limit = 100;
  long uses = 1;
  bool abort = false;
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
  auto* list = users->add_subcommand("list", "list accounts by name, a page at a time");
  list->add_option("--after", a.after, "start after this name (the previous page's last)");
  list->add_option("--limit", a.limit, "accounts per page, 1 to 1000")->capture_default_str();
  out.push_back({list, [&a](context& c, json::value& ans, show_fn& show) {
                   show = print_users;
                   std::string target = "/v1/admin/users?limit=" + std::to_string(a.limit);
                   if (!a.after.empty()) target += "&after=" + encode(a.after);
                   return request(c, "GET", target, nullptr, ans);
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

// After a backup failed, or was interrupted: lets go of what the node may hold for it, the
// snapshot `id` or (none) the one open or being made for `requester`, and says what came
// of it. Not cut short by a signal: it is what an interruption asks for.
void release_after_failure(context const& c, std::string const& id, std::string const& requester) {
  std::string error;
  // Without the id, by this backup's own token: never another backup's snapshot.
  auto target = id.empty() ? "/v1/admin/backup/by-requester/" + requester : "/v1/admin/backup/" + encode(id);
  auto reply = petchat::ctl::call(c.socket, "DELETE", target, "", error);
  if (reply && reply->status == 200)
    std::cerr << "petchatctl: backup: the node's snapshot is released\n";
  else if (reply && reply->status == 404)
    std::cerr << "petchatctl: backup: the node holds no snapshot for it\n";
  else
    std::cerr << "petchatctl: backup: the node's snapshot may still be open ("
              << (reply ? "HTTP " + std::to_string(reply->status) : error)
              << "): release it with petchatctl backup --abort\n";
}

// petchatctl backup: the node makes a snapshot, petchatctl copies it, the node drops it.
int take_backup(context& c, arguments const& a, json::value& ans) {
  if (a.abort) return request(c, "DELETE", "/v1/admin/backup", nullptr, ans);
  auto started = std::chrono::steady_clock::now();
  if (std::string why; !fresh_dir(a.dir, why)) {  // before the node does any work
    std::cerr << "petchatctl: backup: " << why << "\n";
    return exit_usage;
  }
  struct stat sock {};
  if (::stat(c.socket.c_str(), &sock) != 0) sock.st_uid = ::geteuid();  // request() then says it is not running
  json::value snapshot;
  // From here on, an interruption (Ctrl-C, SIGTERM) still releases the snapshot: one that
  // comes while the node makes it ends the wait, and the release tells the node to drop
  // the snapshot once it is made (the copy stops at once).
  stop_copies_on_signals();
  // Making the snapshot flushes the message store and copies the account store: allow time.
  outcome made;
  unsigned char token[16];
  randombytes_buf(token, sizeof token);
  char requester[sizeof token * 2 + 1];
  sodium_bin2hex(requester, sizeof requester, token, sizeof token);
  if (int rc = request(c, "POST", std::string("/v1/admin/backup?requester=") + requester, nullptr, snapshot, 600, &made,
                       true);
      rc != exit_ok) {
    // Unless the node refused (409: another backup's snapshot is open, not to be touched;
    // 500: nothing was left), it may be making one, or have made one whose answer was
    // unusable: whatever it holds is let go.
    if (made.asked && made.status < 400) release_after_failure(c, "", requester);
    return rc;
  }
  std::string error, id;
  json::object manifest;
  try {
    auto const& o = snapshot.as_object();
    if (auto const* v = o.if_contains("id"); v && v->is_string()) id = std::string(v->as_string());
    manifest = copy_snapshot(o, a.dir, sock.st_uid, error);
  } catch (std::exception const& e) {  // an answer not of the shape expected
    error = std::string("the node's answer is not a snapshot as expected (") + e.what() + ")";
  }
  if (!error.empty()) {
    std::cerr << "petchatctl: backup failed: " << for_terminal(error) << " (" << a.dir
              << " is incomplete: it has no manifest)\n";
    release_after_failure(c, id, requester);
    return exit_refused;
  }
  // The backup is whole once its manifest is written: a snapshot the node could not be told
  // to let go is said, not a failure (its error on stderr only, not as the JSON answer).
  json::value released;
  auto quiet = c;
  quiet.as_json = false;
  // (No id in the answer: let go by this backup's own token, never whichever is open.)
  auto release =
      id.empty() ? std::string("/v1/admin/backup/by-requester/") + requester : "/v1/admin/backup/" + encode(id);
  if (request(quiet, "DELETE", release, nullptr, released) != exit_ok)
    std::cerr << "petchatctl: the backup in " << a.dir << " is complete, but the node may still hold its snapshot "
              << "(let go when the node restarts, or by the next backup once six hours old)\n";
  manifest["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ans = std::move(manifest);
  return exit_ok;
}

// "7d", "12h", "30m", "90s", "0" or "never" in seconds; nullopt for anything else.
std::optional<long long> parse_duration(std::string const& text) {
  if (text == "never" || text == "0") return 0;
  std::size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (std::exception const&) {
    return std::nullopt;
  }
  std::string unit = text.substr(used);
  long long scale = unit == "d" ? 86400 : unit == "h" ? 3600 : unit == "m" ? 60 : unit == "s" || unit.empty() ? 1 : 0;
  if (scale == 0 || n <= 0 || n > 3650LL * 86400 / scale) return std::nullopt;
  return n * scale;
}

std::vector<command> token_commands(CLI::App& app, arguments& a) {
  std::vector<command> out;
  auto* tokens =
      app.add_subcommand("tokens", "registration tokens for users.registration = \"token\"")->require_subcommand(1);
  auto* create = tokens->add_subcommand("create", "make a token; it is shown once");
  create->add_option("--uses", a.uses, "registrations it allows, 0 for any number")->capture_default_str();
  create->add_option("--expires", a.expires, "how long it works: 7d, 12h, 30m, or never")->capture_default_str();
  create->add_option("--note", a.name, "what it is for (shown in the list)");
  out.push_back({create, [&a](context& c, json::value& ans, show_fn& show) {
                   auto expires = parse_duration(a.expires);
                   if (!expires || a.uses < 0) {
                     std::cerr << "petchatctl: tokens create: --expires takes 7d, 12h, 30m, 90s or never; --uses "
                                  "0 or more\n";
                     return exit_usage;
                   }
                   json::value body = json::object{{"uses", a.uses}, {"expires_in_s", *expires}, {"note", a.name}};
                   show = print_token;
                   return request(c, "POST", "/v1/admin/registration-tokens", &body, ans);
                 }});
  out.push_back({tokens->add_subcommand("list", "every token: state, uses, expiry"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = print_tokens;
                   return request(c, "GET", "/v1/admin/registration-tokens", nullptr, ans);
                 }});
  auto* revoke = tokens->add_subcommand("revoke", "stop a token from working at once");
  revoke->add_option("id", a.device_id, "the token's id (tokens list)")->required();
  out.push_back({revoke, [&a](context& c, json::value& ans, show_fn& show) {
                   show = print_token;
                   return request(c, "DELETE", "/v1/admin/registration-tokens/" + encode(a.device_id), nullptr, ans);
                 }});
  return out;
}

std::vector<command> backup_commands(CLI::App& app, arguments& a) {
  std::vector<command> out;
  auto* backup = app.add_subcommand("backup", "copy a consistent snapshot of the running node into DIR");
  backup->add_option("dir", a.dir, "the backup's directory: new, or empty");
  backup->add_flag("--abort", a.abort, "release the snapshot an interrupted backup left open");
  out.push_back({backup, [&a](context& c, json::value& ans, show_fn& show) {
                   if (a.dir.empty() && !a.abort) {
                     std::cerr << "petchatctl: backup: give the backup's directory\n";
                     return exit_usage;
                   }
                   show = [&a](json::value const& v) {
                     auto const& o = v.as_object();
                     if (a.abort) {
                       std::cout << "released the open snapshot\n";
                       return;
                     }
                     std::cout << "backup " << field(o, "id") << " of region " << field(o, "region") << ": "
                               << o.at("files").as_array().size() << " files, "
                               << size_text(o.at("bytes").to_number<std::uint64_t>()) << " in "
                               << number(o.at("seconds").to_number<double>()) << " s, into " << a.dir
                               << " (check it with: petchatctl verify " << a.dir << ")\n";
                   };
                   return take_backup(c, a, ans);
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
                   return request(c, "POST", "/v1/admin/messages/compact", nullptr, ans, long_work_s);
                 }});
  auto* assets = app.add_subcommand("assets", "stored files: usage, collection, verification");
  out.push_back({assets->add_subcommand("collect", "remove now what is due: unreferenced assets, expired uploads"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = [](json::value const& v) {
                     auto const& o = v.as_object();
                     std::cout << "removed " << field(o, "assets_removed") << " assets (" << field(o, "bytes_freed")
                               << " bytes) and " << field(o, "uploads_removed") << " expired uploads\n";
                   };
                   return request(c, "POST", "/v1/admin/assets/collect", nullptr, ans, long_work_s);
                 }});
  out.push_back({assets->add_subcommand("verify", "re-hash every stored file; quarantine the damaged"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = print_verify;
                   int rc = request(c, "POST", "/v1/admin/assets/verify", nullptr, ans, long_work_s);
                   // Damaged or missing files: exit 1 (a cron job notices), after the report.
                   auto const* o = ans.if_object();
                   for (auto const* key : {"quarantined", "missing"}) {
                     auto const* list = o ? o->if_contains(key) : nullptr;
                     if (rc == exit_ok && list && list->is_array() && !list->as_array().empty())
                       c.found_problems = true;
                   }
                   return rc;
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
  out.push_back({app.add_subcommand("online", "who is online: users and devices with a live stream"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = print_online;
                   return request(c, "GET", "/v1/admin/online", nullptr, ans);
                 }});
  auto* kick = app.add_subcommand("kick", "end a device's live streams now (it may reconnect; revoke to stop it)");
  kick->add_option("device_id", a.device_id)->required();
  out.push_back({kick, [&a](context& c, json::value& ans, show_fn& show) {
                   show = [&a](json::value const& v) {
                     std::cout << "kicked " << field(v.as_object(), "kicked") << " live streams of " << a.device_id
                               << "\n";
                   };
                   return request(c, "DELETE", "/v1/admin/online/" + encode(a.device_id), nullptr, ans);
                 }});
  auto* level = app.add_subcommand("log-level", "show the log level, or set it at once (no restart)");
  level->add_option("level", a.name, "trace, debug, info, warn, error, critical or off");
  out.push_back({level, [&a](context& c, json::value& ans, show_fn& show) {
                   show = [](json::value const& v) {
                     std::cout << "log level: " << field(v.as_object(), "level") << "\n";
                   };
                   if (a.name.empty()) return request(c, "GET", "/v1/admin/log", nullptr, ans);
                   json::value body = json::object{{"level", a.name}};
                   return request(c, "PUT", "/v1/admin/log", &body, ans);
                 }});
  out.push_back({app.add_subcommand("reload", "read the node's config again: apply what can change, name the rest"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = print_reload;
                   return request(c, "POST", "/v1/admin/reload", nullptr, ans);
                 }});
  auto* federation = app.add_subcommand("federation", "the link to other regions")->require_subcommand(1);
  out.push_back({federation->add_subcommand("status", "link state, known regions, backlogs, rejected envelopes"),
                 [](context& c, json::value& ans, show_fn& show) {
                   show = print_federation;
                   return request(c, "GET", "/v1/admin/federation", nullptr, ans);
                 }});
  auto* drop = federation->add_subcommand(
      "drop-outbox", "give up everything held for a region taken out of federation.regions (decommissioned)");
  drop->add_option("region", a.region)->required();
  out.push_back({drop, [&a](context& c, json::value& ans, show_fn& show) {
                   show = [](json::value const& v) {
                     auto const& o = v.as_object();
                     std::cout << "dropped " << field(o, "dropped") << " outbox entries to " << field(o, "region")
                               << "\n";
                   };
                   return request(c, "DELETE", "/v1/admin/federation/outbox/" + encode(a.region), nullptr, ans, 90);
                 }});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  ::umask(077);  // backups and restored data dirs are private, whatever the caller's umask
  CLI::App app{"petchatctl: administer a petchat node through its admin socket"};
  app.footer(
      "The node is found by --socket, else --data-dir, else the config (--config, or /etc/petchat/node.toml\n"
      "when it exists), else /run/petchat/admin.sock, else ./data.\n"
      "Exit codes: 0 done; 1 the node refused (its error code on stderr), its answer is not the JSON\n"
      "expected, it gave no usable answer (none in time, a hang-up, not HTTP: it may be busy, see its\n"
      "log), or a backup failed or was interrupted; 2 a usage error (unknown command or flag, missing\n"
      "argument); 3 the node is not running (no socket, connection refused).");
  app.require_subcommand(1);
  app.set_version_flag("--version", "petchatctl " PETCHAT_VERSION);
  context ctx;
  std::string data_dir, socket, config_path;
  app.add_option("--socket", socket, "the node's admin socket");
  app.add_option("--data-dir", data_dir, "the node's data directory (its admin socket is admin.sock there)");
  app.add_option("--config", config_path, "the node's config file (default: /etc/petchat/node.toml if it exists)");
  app.add_flag("--json", ctx.as_json, "print the node's JSON answer instead of a table");
  arguments args;
  auto commands = other_commands(app, args);
  for (auto& c : backup_commands(app, args)) commands.push_back(std::move(c));
  for (auto& c : token_commands(app, args)) commands.push_back(std::move(c));
  // Local: a backup's files, no node.
  auto* verify = app.add_subcommand("verify", "check a backup's files against its manifest (no node needed)");
  verify->add_option("backup", args.dir, "the backup's directory")->required();
  auto* restore =
      app.add_subcommand("restore", "copy a backup into a new data dir, checking every file (node stopped)");
  restore->add_option("backup", args.dir, "the backup's directory")->required();
  restore->add_option("data_dir", args.data_dir, "the data dir to make: new, or an empty directory")->required();
  for (auto& c : users_commands(app, args)) commands.push_back(std::move(c));

  try {
    app.parse(argc, argv);
  } catch (CLI::ParseError const& e) {
    int rc = app.exit(e);
    return rc == 0 ? exit_ok : exit_usage;
  }
  if (sodium_init() < 0) {  // before the backup commands hash anything
    std::cerr << "petchatctl: libsodium cannot be initialised\n";
    return exit_refused;
  }
  if (verify->parsed() || restore->parsed()) {
    if (restore->parsed()) stop_copies_on_signals();
    try {
      bool ok = verify->parsed() ? verify_backup(args.dir, ctx.as_json)
                                 : restore_backup(args.dir, args.data_dir, ctx.as_json);
      return ok ? exit_ok : exit_refused;
    } catch (std::exception const& e) {
      std::cerr << "petchatctl: " << e.what() << "\n";
      return exit_refused;
    }
  }
  auto where = locate_socket(socket, data_dir, config_path);
  if (!where.error.empty()) {
    std::cerr << "petchatctl: " << where.error << "\n";
    return exit_usage;
  }
  ctx.socket = where.socket;
  ctx.found_by = where.how;

  json::value answer;
  show_fn show;
  try {
    for (auto const& c : commands) {
      if (!c.sub->parsed()) continue;
      if (int rc = c.run(ctx, answer, show); rc != exit_ok) return rc;
      break;
    }
  } catch (std::exception const& e) {
    std::cerr << "petchatctl: " << e.what() << "\n";
    return exit_refused;
  }
  int done = ctx.found_problems ? exit_refused : exit_ok;
  if (ctx.found_problems) std::cerr << "petchatctl: the node's report names damaged or missing files\n";
  if (ctx.as_json) {
    std::cout << json::serialize(answer) << "\n";
    return done;
  }
  if (!show) return done;
  // The table is made whole before any of it is printed: an answer of another shape (a
  // node of another version, or something else on the socket) prints no half of one.
  std::ostringstream table;
  auto* terminal = std::cout.rdbuf(table.rdbuf());
  try {
    show(answer);
  } catch (std::exception const& e) {
    std::cout.rdbuf(terminal);
    std::cerr << "petchatctl: the node's answer is not what petchatctl expects (" << e.what()
              << "): --json prints it as it is\n";
    return exit_refused;
  }
  std::cout.rdbuf(terminal);
  std::cout << table.str() << std::flush;
  return done;
}
