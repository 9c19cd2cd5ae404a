// What petchatctl prints for people: tables and the node's answers (see detail/print.hpp).
#include "node/ctl/detail/print.hpp"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string_view>

#include "base/format/format.hpp"

namespace petchat::ctl::detail {

std::string number(double v) {
  char buf[64];
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string duration(std::int64_t seconds) {
  if (seconds < 60) return std::to_string(seconds) + " s";
  auto d = seconds / 86400, h = seconds % 86400 / 3600, m = seconds % 3600 / 60, s = seconds % 60;
  std::string out;
  if (d) out += std::to_string(d) + " d ";
  if (d || h) out += std::to_string(h) + " h ";
  out += std::to_string(m) + " min";
  if (!d) out += " " + std::to_string(s) + " s";
  return out;
}

// Text from the node as a terminal may show it: what could move the cursor, set the
// terminal's title or clipboard, or reorder the line (control characters, C1 ones in UTF-8
// too, direction overrides; bytes that are not UTF-8) as escapes a person reads.
std::string for_terminal(std::string_view s) {
  std::string out;
  while (!s.empty()) {
    auto n = format::utf8_sequence(s);
    auto seq = s.substr(0, n == 0 ? 1 : n);
    if (n != 0 && format::plain_text_length(seq, false)) {
      out.append(seq);
    } else {
      char buf[8];
      for (unsigned char b : seq) {
        std::snprintf(buf, sizeof buf, "\\x%02x", b);
        out += buf;
      }
    }
    s.remove_prefix(seq.size());
  }
  return out;
}

std::string json_string(json::value const& v) {
  if (v.is_string()) return for_terminal(v.as_string());
  if (v.is_null()) return "";
  if (v.is_double()) return number(v.as_double());  // Boost.JSON would print 0 as "0E0"
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

void print_users(json::value const& answer) {
  std::vector<std::vector<std::string>> rows;
  for (auto const& u : answer.as_object().at("users").as_array()) {
    auto const& o = u.as_object();
    rows.push_back({field(o, "id"), field(o, "display_name"), o.at("disabled").as_bool() ? "disabled" : "active",
                    field(o, "sessions"), field(o, "created_at")});
  }
  print_table({"ID", "DISPLAY NAME", "STATE", "SESSIONS", "CREATED"}, rows);
  auto const* next = answer.as_object().if_contains("next_after");
  if (next && next->is_string())
    std::cout << "more: petchatctl users list --after " << for_terminal(next->as_string()) << "\n";
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
  if (auto const* skipped = o.if_contains("skipped"); skipped && skipped->is_int64() && skipped->as_int64() > 0)
    std::cout << "skipped " << skipped->as_int64() << " in use (or while a backup was made): run it again\n";
  for (auto const& id : o.at("missing").as_array())
    std::cout << "missing bytes: " << for_terminal(id.as_string()) << "\n";
  for (auto const& id : o.at("quarantined").as_array())
    std::cout << "damaged, moved to quarantine/: " << for_terminal(id.as_string()) << "\n";
}

void print_status(json::value const& answer) {
  auto const& o = answer.as_object();
  auto const& u = o.at("users").as_object();
  auto const& s = o.at("sessions").as_object();
  print_table({"FIELD", "VALUE"},
              {{"version", field(o, "version")},
               {"region", field(o, "region")},
               {"uptime", o.at("uptime_s").is_number() ? duration(o.at("uptime_s").to_number<std::int64_t>())
                                                       : field(o, "uptime_s")},
               {"started", field(o, "started_at")},
               {"listen", field(o, "listen")},
               {"metrics", o.contains("metrics_listen") && !o.at("metrics_listen").is_null()
                               ? "http://" + field(o, "metrics_listen") + "/metrics"
                               : "off"},
               {"data dir",
                field(o, "data_dir") + (o.contains("data_format") ? " (format " + field(o, "data_format") + ", made " +
                                                                        field(o, "data_created_at") + ")"
                                                                  : "")},
               {"users", field(u, "total") + " (" + field(u, "disabled") + " disabled)"},
               {"sessions", field(s, "active") + " active"}});
  if (auto w = field(u, "writes"); !w.empty() && w != "ok")  // (empty: a node from before it was told)
    std::cout << "account store: WRITES FAILING: " << field(u, "write_error") << "\n";
  if (auto const* m = o.if_contains("messages"); m && m->is_object()) {
    auto const& ms = m->as_object();
    if (field(ms, "writes") != "ok") std::cout << "message store: WRITES FAILING: " << field(ms, "write_error") << "\n";
    if (!field(ms, "salvaged_at").empty())
      std::cout << "message store: salvaged past a damaged write-ahead log, or restored from a backup, at "
                << field(ms, "salvaged_at") << " (mailbox seqs jumped 1,048,576 ahead)\n";
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
               {"inbound applied up to",
                field(o, "applied_position") + " (stream ends at " + field(o, "stream_last_seq") + ")"},
               {"inbound backlog", field(o, "inbound_backlog")},
               {"published since start", field(o, "published")},
               {"applied since start", field(o, "applied")}});
  std::cout << "\n";
  std::vector<std::vector<std::string>> rows;
  for (auto const& r : o.at("regions").as_array()) {
    auto const& ro = r.as_object();
    auto listed = ro.if_contains("listed");
    bool unlisted = listed && listed->is_bool() && !listed->as_bool();
    rows.push_back({field(ro, "region") + (unlisted ? " (not listed: drop-outbox gives it up)" : ""),
                    field(ro, "outbox"), duration(ro.at("oldest_undelivered_s").to_number<std::int64_t>()),
                    field(ro, "inbound")});
  }
  print_table({"REGION", "WAITING TO GO", "OLDEST UNDELIVERED", "WAITING TO BE APPLIED"}, rows);
  std::cout << "\n";
  rows.clear();
  for (auto const& [reason, n] : o.at("rejects").as_object())
    rows.push_back({for_terminal(reason), json::serialize(n)});
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
                                   {"oldest pending", duration(outbox.at("oldest_age_s").to_number<std::int64_t>())},
                                   {"requests in flight", field(o, "in_flight")},
                                   {"of them slow", field(o, "slow_in_flight")},
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

void print_online(json::value const& answer) {
  auto const& o = answer.as_object();
  std::vector<std::vector<std::string>> rows;
  for (auto const& s : o.at("streams").as_array())
    rows.push_back({field(s.as_object(), "user_id"), field(s.as_object(), "device_id")});
  std::cout << field(o, "users") << " users online, " << rows.size() << " live streams\n";
  if (!rows.empty()) print_table({"USER", "DEVICE ID"}, rows);
}

void print_reload(json::value const& answer) {
  auto const& o = answer.as_object();
  auto const& applied = o.at("applied").as_array();
  auto const& restart = o.at("needs_restart").as_array();
  if (applied.empty()) std::cout << "nothing to apply\n";
  for (auto const& a : applied) std::cout << "applied: " << json_string(a) << "\n";
  for (auto const& s : restart) std::cout << "changed, takes effect after a restart: " << json_string(s) << "\n";
}

namespace {

std::string uses_text(json::object const& t) {
  auto max = field(t, "max_uses");
  return field(t, "uses") + " of " + (max == "0" ? std::string("any number") : max);
}

}  // namespace

void print_token(json::value const& answer) {
  auto const& t = answer.as_object();
  if (t.contains("token"))
    std::cout << field(t, "token") << "\n(shown only now) allows " << uses_text(t) << " registrations, "
              << (t.at("expires_at").is_null() ? std::string("never expires") : "until " + field(t, "expires_at"))
              << "; id " << field(t, "id") << "\n";
  else
    std::cout << "token " << field(t, "id") << ": " << field(t, "state") << ", used " << uses_text(t) << "\n";
}

void print_tokens(json::value const& answer) {
  std::vector<std::vector<std::string>> rows;
  for (auto const& v : answer.as_object().at("tokens").as_array()) {
    auto const& t = v.as_object();
    rows.push_back({field(t, "id"), field(t, "state"), uses_text(t),
                    t.at("expires_at").is_null() ? std::string("never") : field(t, "expires_at"),
                    field(t, "created_at"), field(t, "note")});
  }
  if (rows.empty()) {
    std::cout << "no registration tokens\n";
    return;
  }
  print_table({"ID", "STATE", "USES", "EXPIRES", "CREATED", "NOTE"}, rows);
}

}  // namespace petchat::ctl::detail
