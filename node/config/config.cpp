#include "node/config/config.hpp"

#include <toml++/toml.h>

#include <cctype>
#include <charconv>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "base/ids/ids.hpp"
#include "node/config/detail/addresses.hpp"
#include "node/config/detail/reader.hpp"

namespace petchat::config {
namespace {

using detail::check_subject_token;
using detail::checked;
using detail::federation_keys;
using detail::push_keys;
using detail::reader;
using detail::string_list;

std::optional<std::string> check_region(std::string const& v, node_config& c) {
  if (!ids::is_valid_name(v)) return "region name must be 3-32 characters of a-z 0-9 . _ - starting with a letter";
  c.node.region = v;
  c.node.region_set = true;
  return std::nullopt;
}

std::optional<std::string> check_listen(std::string const& v, node_config& c) {
  auto l = parse_listen(v);
  if (!l) return "expected \"host:port\" with a port from 0 to 65535";
  c.gateway.listen = *l;
  return std::nullopt;
}

std::optional<std::string> check_metrics_listen(std::string const& v, node_config& c) {
  if (v.empty()) {
    c.metrics.listen.reset();
    return std::nullopt;
  }
  auto l = parse_listen(v);
  if (!l) return "expected \"host:port\" with a port from 0 to 65535, or \"\" for no metrics listener";
  c.metrics.listen = *l;
  return std::nullopt;
}

std::optional<std::string> check_log_format(std::string const& v, node_config& c) {
  if (v == "human")
    c.log.format = log_format::human;
  else if (v == "json")
    c.log.format = log_format::json;
  else
    return "expected one of human, json";
  return std::nullopt;
}

std::optional<std::string> check_forwarded_header(std::string const& v, node_config& c) {
  if (v != "x-forwarded-for" && v != "forwarded") return "expected one of x-forwarded-for, forwarded";
  c.gateway.forwarded_rfc7239 = v == "forwarded";
  return std::nullopt;
}

std::optional<std::string> check_log_level(std::string const& v, node_config& c) {
  static char const* const levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  for (auto l : levels)
    if (v == l) {
      c.log.level = v;
      return std::nullopt;
    }
  return "expected one of trace, debug, info, warn, error, critical, off";
}

using schema = std::map<std::string, reader::section, std::less<>>;

schema schema_of(reader& rd, node_config& c) {
  return {
      {"node",
       {{"region", checked(rd, c, check_region)},
        {"data_dir", checked(rd, c,
                             [](std::string const& v, node_config& c) -> std::optional<std::string> {
                               if (v.empty()) return "must not be empty";
                               c.node.data_dir = v;
                               return std::nullopt;
                             })},
        {"threads", rd.integer(c.node.threads, 0, 256)}}},
      {"gateway",
       {{"listen", checked(rd, c, check_listen)},
        {"max_header_bytes", rd.integer(c.gateway.max_header_bytes, 512, 1 << 20)},
        {"max_body_bytes", rd.integer(c.gateway.max_body_bytes, 256, 64 << 20)},
        {"request_timeout_ms", rd.integer(c.gateway.request_timeout_ms, 100, 600000)},
        {"idle_timeout_ms", rd.integer(c.gateway.idle_timeout_ms, 100, 3600000)},
        {"max_connections", rd.integer(c.gateway.max_connections, 1, 10000000)},
        {"max_connections_per_address", rd.integer(c.gateway.max_connections_per_address, 1, 10000000)},
        {"trusted_proxies", string_list(rd, c.gateway.trusted_proxies,
                                        [](std::string const& v) -> std::optional<std::string> {
                                          if (!detail::valid_network_or_address(v))
                                            return "expected an IP address or a network in CIDR notation, e.g. "
                                                   "127.0.0.1 or 10.0.0.0/8";
                                          // 0.0.0.0/0 would let every client name its own address,
                                          // past every per-address limit (IPv4 is held as
                                          // ::ffff:a.b.c.d/96+: ::/8 covers all of it too).
                                          if (detail::network_too_wide(v))
                                            return "a network wider than /8 trusts nearly every address: any "
                                                   "client could claim another's address past the per-address "
                                                   "limits; list the proxies' own addresses or network";
                                          return std::nullopt;
                                        })},
        {"forwarded_header", checked(rd, c, check_forwarded_header)},
        {"cors_origins", string_list(rd, c.gateway.cors_origins, detail::check_origin)},
        {"tls_cert_file", rd.text(c.gateway.tls_cert_file)},
        {"tls_key_file", rd.text(c.gateway.tls_key_file)}}},
      {"admin",
       {{"socket", checked(rd, c,
                           [](std::string const& v, node_config& c) -> std::optional<std::string> {
                             if (v.size() > 100) return "socket path must be at most 100 bytes";
                             c.admin.socket = v;
                             return std::nullopt;
                           })}}},
      {"users",
       {{"registration", checked(rd, c,
                                 [](std::string const& v, node_config& c) -> std::optional<std::string> {
                                   if (v == "open")
                                     c.users.registration = registration_policy::open;
                                   else if (v == "token")
                                     c.users.registration = registration_policy::token;
                                   else if (v == "closed")
                                     c.users.registration = registration_policy::closed;
                                   else
                                     return "expected one of open, token, closed";
                                   return std::nullopt;
                                 })},
        {"registration_token", rd.text(c.users.registration_token)},
        {"access_token_ttl_s", rd.integer(c.users.access_token_ttl_s, 1, 86400)},
        {"refresh_token_ttl_s", rd.integer(c.users.refresh_token_ttl_s, 60, 365 * 86400)},
        {"refresh_retry_grace_s", rd.integer(c.users.refresh_retry_grace_s, 0, 600)},
        {"password_min_length", rd.integer(c.users.password_min_length, 1, 1024)},
        {"password_hash_ops", rd.integer(c.users.password_hash_ops, 1, 20)},
        {"password_hash_memory_kib", rd.integer(c.users.password_hash_memory_kib, 8, 4 << 20)},
        {"login_free_attempts", rd.integer(c.users.login_free_attempts, 0, 1000)},
        {"login_free_attempts_per_address", rd.integer(c.users.login_free_attempts_per_address, 0, 100000)},
        {"login_checks_per_address", rd.integer(c.users.login_checks_per_address, 0, 100000)},
        {"login_checks_per_minute_per_address", rd.integer(c.users.login_checks_per_minute_per_address, 0, 60000)},
        {"login_backoff_initial_ms", rd.integer(c.users.login_backoff_initial_ms, 1, 3600000)},
        {"login_backoff_max_ms", rd.integer(c.users.login_backoff_max_ms, 1, 86400000)},
        {"max_registrations_per_address", rd.integer(c.users.max_registrations_per_address, 0, 10000000)},
        {"registration_window_s", rd.integer(c.users.registration_window_s, 1, 365 * 86400)},
        {"max_devices_per_user", rd.integer(c.users.max_devices_per_user, 1, 100000)}}},
      {"store",
       {{"lmdb_initial_map_mib", rd.integer(c.store.lmdb_initial_map_mib, 1, 1 << 20)},
        {"sync", rd.boolean(c.store.sync)}}},
      {"messages",
       {{"retention_s", rd.integer(c.messages.retention_s, 1, 10 * 365 * 86400)},
        {"max_text_bytes", rd.integer(c.messages.max_text_bytes, 16, 1 << 20)},
        {"max_content_bytes", rd.integer(c.messages.max_content_bytes, 0, 1 << 20)},
        {"max_frame_bytes", rd.integer(c.messages.max_frame_bytes, 1024, 16 << 20)},
        {"max_per_second", rd.integer(c.messages.max_per_second, 1, 100000)},
        {"max_streams_per_user", rd.integer(c.messages.max_streams_per_user, 1, 1000000)},
        {"max_sessions_per_user", rd.integer(c.messages.max_streams_per_user, 1, 1000000)},  // its name before 0.2
        {"send_queue_frames", rd.integer(c.messages.send_queue_frames, 4, 1 << 20)},
        {"delete_for_everyone_window_s", rd.integer(c.messages.delete_for_everyone_window_s, 0, 365 * 86400)},
        {"expiry_sweep_interval_ms", rd.integer(c.messages.expiry_sweep_interval_ms, 10, 3600000)},
        {"max_group_members", rd.integer(c.messages.max_group_members, 2, 100000)},
        {"max_groups_per_user", rd.integer(c.messages.max_groups_per_user, 1, 1000000)},
        {"max_joins_per_hour", rd.integer(c.messages.max_joins_per_hour, 0, 1000000)},
        {"max_groups_created_per_day", rd.integer(c.messages.max_groups_created_per_day, 0, 1000000)},
        {"max_remote_contacts_per_hour", rd.integer(c.messages.max_remote_contacts_per_hour, 0, 1000000)},
        {"group_receipt_events_max_members", rd.integer(c.messages.group_receipt_events_max_members, 0, 100000)},
        {"max_attachments", rd.integer(c.messages.max_attachments, 0, 100)}}},
      {"assets",
       {{"max_asset_bytes", rd.integer(c.assets.max_asset_bytes, 1, std::int64_t(1) << 40)},
        {"quota_bytes", rd.integer(c.assets.quota_bytes, 0, std::int64_t(1) << 50)},
        {"max_fetched_bytes_per_region", rd.integer(c.assets.max_fetched_bytes_per_region, 0, std::int64_t(1) << 50)},
        {"upload_expiry_s", rd.integer(c.assets.upload_expiry_s, 1, 30 * 86400)},
        {"grace_s", rd.integer(c.assets.grace_s, 0, 365 * 86400)},
        {"max_uploads_per_user", rd.integer(c.assets.max_uploads_per_user, 1, 10000)},
        {"max_image_pixels", rd.integer(c.assets.max_image_pixels, 1, std::int64_t(1) << 40)},
        {"thumbnail_px", rd.integer(c.assets.thumbnail_px, 16, 4096)},
        {"thumbnail_time_limit_ms", rd.integer(c.assets.thumbnail_time_limit_ms, 1, 600000)},
        {"collect_interval_s", rd.integer(c.assets.collect_interval_s, 1, 86400)},
        {"link_ttl_s", rd.integer(c.assets.link_ttl_s, 1, 86400)}}},
      {"push", push_keys(rd, c)},
      {"web", {{"enabled", rd.boolean(c.web.enabled)}, {"root", rd.text(c.web.root)}}},
      {"metrics", {{"listen", checked(rd, c, check_metrics_listen)}, {"on_gateway", rd.boolean(c.metrics.on_gateway)}}},
      {"log", {{"format", checked(rd, c, check_log_format)}, {"level", checked(rd, c, check_log_level)}}},
      {"federation", federation_keys(rd, c)},
  };
}

// Rules that span keys.
void check_combinations(toml::table const& root, node_config const& c, std::vector<std::string>& errors) {
  if (auto const* m = root["messages"].as_table();
      m && m->contains("max_streams_per_user") && m->contains("max_sessions_per_user"))
    errors.push_back("messages.max_sessions_per_user: the old name of messages.max_streams_per_user; set only one");
  // Empty: only tokens an admin makes (petchatctl tokens create) let people register.
  if (!c.users.registration_token.empty() && c.users.registration_token.size() < 16)
    errors.push_back("users.registration_token: must be at least 16 characters (or empty)");
  if (!c.federation.enabled() && !c.federation.regions.empty())
    errors.push_back("federation.regions: listed, but federation.nats_urls is not set");
  if (c.gateway.tls_cert_file.empty() != c.gateway.tls_key_file.empty())
    errors.push_back("gateway.tls_cert_file and gateway.tls_key_file: set both or neither");
  if ((c.federation.tls_cert_file.empty()) != (c.federation.tls_key_file.empty()))
    errors.push_back("federation.tls_cert_file and federation.tls_key_file: set both or neither");
  if (!c.federation.tls_server_name.empty() && !c.federation.uses_tls())
    errors.push_back(
        "federation.tls_server_name: set, but TLS to NATS is off (no tls_ca_file or tls_cert_file, no tls:// URL)");
  if (int(!c.federation.credentials_file.empty()) + int(!c.federation.nkey.empty()) + int(!c.federation.user.empty()) >
      1)
    errors.push_back(
        "federation.credentials_file, federation.nkey, federation.user: set at most one kind of NATS authentication");
  if (c.federation.password.empty() != c.federation.user.empty())
    errors.push_back("federation.user and federation.password: set both or neither");
  if (c.federation.nkey.empty() != c.federation.nkey_seed_file.empty())
    errors.push_back("federation.nkey and federation.nkey_seed_file: set both or neither");
  if (c.push.retry_max_ms < c.push.retry_initial_ms)
    errors.push_back("push.retry_max_ms: must not be less than push.retry_initial_ms");
  if (c.users.login_backoff_max_ms < c.users.login_backoff_initial_ms)
    errors.push_back("users.login_backoff_max_ms: must not be less than users.login_backoff_initial_ms");
}

load_result validate(toml::table const& root) {
  load_result r;
  reader rd(r.errors);
  rd.walk(root, schema_of(rd, r.config));
  check_combinations(root, r.config, r.errors);
  return r;
}

}  // namespace

std::string listen_address::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<listen_address> parse_listen(std::string const& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  std::string host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.back() != ']' || host.size() < 3) return std::nullopt;
    host = host.substr(1, host.size() - 2);
  }
  std::string_view port_text(text.data() + colon + 1, text.size() - colon - 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port_text.empty() || port > 65535)
    return std::nullopt;
  return listen_address{host, static_cast<std::uint16_t>(port)};
}

load_result load_string(std::string const& text, std::string const& source) {
  try {
    return validate(toml::parse(text, source));
  } catch (toml::parse_error const& e) {
    load_result r;
    std::ostringstream msg;
    msg << source << " (line " << e.source().begin.line << "): " << e.description();
    r.errors.push_back(msg.str());
    return r;
  }
}

load_result load_file(std::filesystem::path const& path) {
  load_result failed;
  // A directory opens as a stream too, and reads as nothing: all defaults, silently.
  // (/dev/null is fine: the defaults, as asked.)
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    failed.errors.push_back(path.string() + ": a directory, not a config file");
    return failed;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    failed.errors.push_back(path.string() + ": cannot read the file");
    return failed;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    failed.errors.push_back(path.string() + ": reading the file failed");
    return failed;
  }
  return load_string(text.str(), path.string());
}

void apply(overrides const& o, node_config& c, std::vector<std::string>& errors) {
  auto flag = [&](char const* name, std::optional<std::string> const& v, auto check) {
    if (!v) return;
    if (auto why = check(*v, c)) errors.push_back(std::string("--") + name + ": " + *why);
  };
  // The region in effect, when it is not the file's: where it came from.
  std::optional<std::string> from;
  if (o.region_env && !o.region) {
    if (auto why = check_region(*o.region_env, c))
      errors.push_back("PETCHAT_REGION: " + *why);
    else
      from = "PETCHAT_REGION";
  }
  if (o.region) {
    if (auto why = check_region(*o.region, c))
      errors.push_back("--region: " + *why);
    else
      from = "--region";
  }
  // Checked on the region in effect, wherever it came from (the file's alone when nothing
  // replaces it, as for --check-config).
  if (c.federation.enabled() && check_subject_token(c.node.region))
    errors.push_back(from.value_or("node.region") +
                     ": a federated region's name is part of NATS subjects and stream names: use only a-z 0-9 _ - "
                     "(no dots)");
  if (o.require_region && !c.node.region_set)
    errors.push_back(
        "no region is configured, and --require-region (as in the packaged unit) refuses the default 'local': "
        "every account and message carries its region's name, which cannot change later. Set the environment "
        "variable PETCHAT_REGION (Debian: `dpkg-reconfigure petchat-node` writes it to "
        "/etc/default/petchat-node; RPM: /etc/sysconfig/petchat-node; containers: -e PETCHAT_REGION=...), "
        "node.region in the config file, or --region");
  flag("listen", o.listen, check_listen);
  flag("metrics-listen", o.metrics_listen, check_metrics_listen);
  flag("log-format", o.log_format, check_log_format);
  flag("log-level", o.log_level, check_log_level);
  if (o.data_dir) {
    if (o.data_dir->empty())
      errors.push_back("--data-dir: must not be empty");
    else
      c.node.data_dir = *o.data_dir;
  }
  if (o.threads) {
    if (*o.threads < 0 || *o.threads > 256)
      errors.push_back("--threads: must be between 0 and 256");
    else
      c.node.threads = *o.threads;
  }
}

}  // namespace petchat::config
