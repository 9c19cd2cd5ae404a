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

namespace petchat::config {
namespace {

std::string line_of(toml::node const& n) {
  auto const& src = n.source();
  if (src.begin.line == 0) return "";
  return " (line " + std::to_string(src.begin.line) + ")";
}

// Walks one parsed document, checking each key against the schema below.
class reader {
 public:
  explicit reader(std::vector<std::string>& errors) : errors_(errors) {}

  using key_fn = std::function<void(std::string const& key, toml::node const&)>;
  using section = std::map<std::string, key_fn, std::less<>>;

  void walk(toml::table const& root, std::map<std::string, section, std::less<>> const& schema) {
    for (auto&& [k, v] : root) {
      std::string name(k.str());
      auto s = schema.find(name);
      if (s == schema.end()) {
        fail(name, v, "unknown section");
        continue;
      }
      auto const* table = v.as_table();
      if (!table) {
        fail(name, v, "expected a table ([" + name + "])");
        continue;
      }
      for (auto&& [key, value] : *table) {
        std::string full = name + "." + std::string(key.str());
        auto handler = s->second.find(key.str());
        if (handler == s->second.end()) {
          fail(full, value, "unknown key");
          continue;
        }
        handler->second(full, value);
      }
    }
  }

  void fail(std::string const& key, toml::node const& n, std::string const& why) {
    errors_.push_back(key + line_of(n) + ": " + why);
  }

  template <typename T>
  key_fn integer(T& out, std::int64_t min, std::int64_t max) {
    return [this, &out, min, max](std::string const& key, toml::node const& n) {
      auto v = n.value_exact<std::int64_t>();
      if (!n.is_integer() || !v) return fail(key, n, "expected an integer");
      if (*v < min || *v > max)
        return fail(key, n, "must be between " + std::to_string(min) + " and " + std::to_string(max));
      out = static_cast<T>(*v);
    };
  }

  key_fn boolean(bool& out) {
    return [this, &out](std::string const& key, toml::node const& n) {
      if (!n.is_boolean()) return fail(key, n, "expected true or false");
      out = *n.value<bool>();
    };
  }

  // A string taken as it is.
  key_fn text(std::string& out) {
    return [this, &out](std::string const& key, toml::node const& n) {
      if (!n.is_string()) return fail(key, n, "expected a string");
      out = *n.value<std::string>();
    };
  }

  key_fn string(std::function<std::optional<std::string>(std::string const&)> accept) {
    return [this, accept](std::string const& key, toml::node const& n) {
      if (!n.is_string()) return fail(key, n, "expected a string");
      if (auto why = accept(*n.value<std::string>())) fail(key, n, *why);
    };
  }

 private:
  std::vector<std::string>& errors_;
};

std::optional<std::string> check_region(std::string const& v, node_config& c) {
  if (!ids::is_valid_name(v)) return "region name must be 3-32 characters of a-z 0-9 . _ - starting with a letter";
  c.node.region = v;
  return std::nullopt;
}

std::optional<std::string> check_listen(std::string const& v, node_config& c) {
  auto l = parse_listen(v);
  if (!l) return "expected \"host:port\" with a port from 0 to 65535";
  c.gateway.listen = *l;
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

std::optional<std::string> check_log_level(std::string const& v, node_config& c) {
  static char const* const levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  for (auto l : levels)
    if (v == l) {
      c.log.level = v;
      return std::nullopt;
    }
  return "expected one of trace, debug, info, warn, error, critical, off";
}

std::optional<std::string> check_subject_token(std::string const& v) {
  if (v.empty() || v.size() > 64) return "must be 1 to 64 characters";
  for (char ch : v)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_'))
      return "may only contain letters, digits, - and _ (it is a NATS subject token)";
  return std::nullopt;
}

std::optional<std::string> check_jetstream_domain(std::string const& v, node_config& c) {
  if (!v.empty())
    if (auto why = check_subject_token(v)) return why;
  c.federation.jetstream_domain = v;
  return std::nullopt;
}

std::optional<std::string> check_subject_prefix(std::string const& v, node_config& c) {
  if (auto why = check_subject_token(v)) return why;
  c.federation.subject_prefix = v;
  return std::nullopt;
}

std::optional<federation::public_key> parse_public_key(std::string const& hex) {
  if (hex.size() != 64) return std::nullopt;
  federation::public_key k{};
  for (std::size_t i = 0; i < 32; ++i) {
    auto [end, ec] = std::from_chars(hex.data() + 2 * i, hex.data() + 2 * i + 2, k[i], 16);
    if (ec != std::errc{} || end != hex.data() + 2 * i + 2) return std::nullopt;
  }
  return k;
}

// [[federation.regions]]: name, public_keys (hex Ed25519, one or more), url, location.
void read_regions(reader& rd, std::string const& key, toml::node const& n, federation::options& out) {
  auto const* arr = n.as_array();
  if (!arr) return rd.fail(key, n, "expected an array of tables ([[federation.regions]])");
  for (std::size_t i = 0; i < arr->size(); ++i) {
    auto const* t = (*arr)[i].as_table();
    std::string at = key + "[" + std::to_string(i) + "]";
    if (!t) {
      rd.fail(at, (*arr)[i], "expected a table");
      continue;
    }
    federation::region_entry e;
    for (auto&& [k, v] : *t) {
      std::string name(k.str());
      std::string full = at + "." + name;
      if (name == "public_keys") {
        auto const* keys = v.as_array();
        if (!keys || keys->empty()) {
          rd.fail(full, v, "expected a non-empty array of 64-character hex Ed25519 public keys");
          continue;
        }
        for (auto&& kv : *keys) {
          auto parsed = kv.is_string() ? parse_public_key(*kv.value<std::string>()) : std::nullopt;
          if (!parsed)
            rd.fail(full, kv, "expected a 64-character hex Ed25519 public key (region.pub of that region)");
          else
            e.keys.push_back(*parsed);
        }
        continue;
      }
      if (!v.is_string()) {
        rd.fail(full, v, name == "name" || name == "url" || name == "location" ? "expected a string" : "unknown key");
        continue;
      }
      auto text = *v.value<std::string>();
      if (name == "name") {
        if (!ids::is_valid_name(text) || check_subject_token(text))
          rd.fail(full, v, "region name must be 3-32 characters of a-z 0-9 _ - starting with a letter");
        e.name = text;
      } else if (name == "url") {
        e.url = text;
      } else if (name == "location") {
        e.location = text;
      } else {
        rd.fail(full, v, "unknown key");
      }
    }
    if (e.name.empty()) rd.fail(at, (*arr)[i], "missing name");
    if (e.keys.empty()) rd.fail(at, (*arr)[i], "missing public_keys");
    for (auto const& other : out.regions)
      if (other.name == e.name) rd.fail(at, (*arr)[i], "region '" + e.name + "' is listed twice");
    out.regions.push_back(std::move(e));
  }
}

// An array of strings, each checked by `why` (nullopt: fine).
template <typename Check>
reader::key_fn string_list(reader& rd, std::vector<std::string>& out, Check why) {
  return [&rd, &out, why](std::string const& key, toml::node const& n) {
    auto const* arr = n.as_array();
    if (!arr) return rd.fail(key, n, "expected an array of strings");
    out.clear();
    for (auto&& item : *arr) {
      auto v = item.value<std::string>();
      if (!item.is_string())
        rd.fail(key, item, "expected a string");
      else if (auto bad = why(*v))
        rd.fail(key, item, *bad);
      else
        out.push_back(*v);
    }
  };
}

reader::section push_keys(reader& rd, node_config& c) {
  auto& p = c.push;
  return {
      {"enabled", rd.boolean(p.enabled)},
      {"live_delay_ms", rd.integer(p.live_delay_ms, 0, 600000)},
      {"coalesce_ms", rd.integer(p.coalesce_ms, 0, 86400000)},
      {"give_up_s", rd.integer(p.give_up_s, 1, 30 * 86400)},
      {"retry_initial_ms", rd.integer(p.retry_initial_ms, 10, 3600000)},
      {"retry_max_ms", rd.integer(p.retry_max_ms, 10, 86400000)},
      {"connect_timeout_ms", rd.integer(p.connect_timeout_ms, 100, 600000)},
      {"response_timeout_ms", rd.integer(p.response_timeout_ms, 100, 600000)},
      {"max_in_flight", rd.integer(p.max_in_flight, 1, 100000)},
      {"max_targets_per_device", rd.integer(p.max_targets_per_device, 1, 1000)},
      {"ttl_s", rd.integer(p.ttl_s, 0, 28 * 86400)},
      {"vapid_subject", rd.string([&p](std::string const& v) -> std::optional<std::string> {
         if (!(v.starts_with("mailto:") || v.starts_with("https://")) || v.size() > 256)
           return "expected a mailto: or https: URL of at most 256 bytes";
         p.vapid_subject = v;
         return std::nullopt;
       })},
      {"preview_bytes", rd.integer(p.preview_bytes, 0, 1000)},
      {"ca_file", rd.text(p.ca_file)},
      {"allow_hosts", string_list(rd, p.allow_hosts,
                                  [](std::string const& v) -> std::optional<std::string> {
                                    if (v.empty() || v.size() > 253) return "expected a host name";
                                    return std::nullopt;
                                  })},
      {"allow_networks", string_list(rd, p.allow_networks,
                                     [](std::string const& v) -> std::optional<std::string> {
                                       if (!detail::valid_cidr(v))
                                         return "expected a network in CIDR notation, e.g. 10.0.0.0/8 or fd00::/8";
                                       return std::nullopt;
                                     })},
      {"nameservers", string_list(rd, p.nameservers,
                                  [](std::string const& v) -> std::optional<std::string> {
                                    if (!detail::valid_nameserver(v))
                                      return "expected an IP address with an optional port, e.g. 192.0.2.53:53 or "
                                             "[2001:db8::53]:53";
                                    return std::nullopt;
                                  })},
  };
}

using schema = std::map<std::string, reader::section, std::less<>>;

// A string key whose check stores it: fn(value, config) says why not, or nullopt.
template <typename Check>
reader::key_fn checked(reader& rd, node_config& c, Check fn) {
  return rd.string([&c, fn](std::string const& v) { return fn(v, c); });
}

reader::section federation_keys(reader& rd, node_config& c) {
  return {
      {"nats_urls",
       [&rd, &c](std::string const& key, toml::node const& n) {
         auto const* arr = n.as_array();
         if (!arr || arr->empty()) return rd.fail(key, n, "expected a non-empty array of nats:// or tls:// URLs");
         for (auto&& u : *arr) {
           auto url = u.value<std::string>();
           if (!u.is_string() || !(url->starts_with("nats://") || url->starts_with("tls://")))
             rd.fail(key, u, "expected a nats:// or tls:// URL");
           else
             c.federation.nats_urls.push_back(*url);
         }
       }},
      {"jetstream_domain", checked(rd, c, check_jetstream_domain)},
      {"credentials_file", rd.text(c.federation.credentials_file)},
      {"nkey", rd.text(c.federation.nkey)},
      {"nkey_seed_file", rd.text(c.federation.nkey_seed_file)},
      {"user", rd.text(c.federation.user)},
      {"password", rd.text(c.federation.password)},
      {"tls_ca_file", rd.text(c.federation.tls_ca_file)},
      {"tls_cert_file", rd.text(c.federation.tls_cert_file)},
      {"tls_key_file", rd.text(c.federation.tls_key_file)},
      {"subject_prefix", checked(rd, c, check_subject_prefix)},
      {"retention_s", rd.integer(c.federation.retention_s, 60, 365 * 86400)},
      {"max_stream_bytes", rd.integer(c.federation.max_stream_bytes, 1 << 20, std::int64_t(1) << 50)},
      {"publish_timeout_ms", rd.integer(c.federation.publish_timeout_ms, 100, 600000)},
      {"reconnect_wait_ms", rd.integer(c.federation.reconnect_wait_ms, 10, 600000)},
      {"presence_interval_s", rd.integer(c.federation.presence_interval_s, 1, 3600)},
      {"resend_after_s", rd.integer(c.federation.resend_after_s, 3, 86400)},
      {"public_url", rd.text(c.federation.public_url)},
      {"location", rd.text(c.federation.location)},
      {"regions", [&rd, &c](std::string const& key, toml::node const& n) { read_regions(rd, key, n, c.federation); }}};
}

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
        {"max_connections_per_address", rd.integer(c.gateway.max_connections_per_address, 1, 10000000)}}},
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
        {"password_min_length", rd.integer(c.users.password_min_length, 1, 1024)},
        {"password_hash_ops", rd.integer(c.users.password_hash_ops, 1, 20)},
        {"password_hash_memory_kib", rd.integer(c.users.password_hash_memory_kib, 8, 4 << 20)},
        {"login_free_attempts", rd.integer(c.users.login_free_attempts, 0, 1000)},
        {"login_free_attempts_per_address", rd.integer(c.users.login_free_attempts_per_address, 0, 100000)},
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
        {"group_receipt_events_max_members", rd.integer(c.messages.group_receipt_events_max_members, 0, 100000)},
        {"max_attachments", rd.integer(c.messages.max_attachments, 0, 100)}}},
      {"assets",
       {{"max_asset_bytes", rd.integer(c.assets.max_asset_bytes, 1, std::int64_t(1) << 40)},
        {"quota_bytes", rd.integer(c.assets.quota_bytes, 0, std::int64_t(1) << 50)},
        {"upload_expiry_s", rd.integer(c.assets.upload_expiry_s, 1, 30 * 86400)},
        {"grace_s", rd.integer(c.assets.grace_s, 0, 365 * 86400)},
        {"max_uploads_per_user", rd.integer(c.assets.max_uploads_per_user, 1, 10000)},
        {"max_image_pixels", rd.integer(c.assets.max_image_pixels, 1, std::int64_t(1) << 40)},
        {"thumbnail_px", rd.integer(c.assets.thumbnail_px, 16, 4096)},
        {"collect_interval_s", rd.integer(c.assets.collect_interval_s, 1, 86400)}}},
      {"push", push_keys(rd, c)},
      {"web", {{"enabled", rd.boolean(c.web.enabled)}, {"root", rd.text(c.web.root)}}},
      {"log", {{"format", checked(rd, c, check_log_format)}, {"level", checked(rd, c, check_log_level)}}},
      {"federation", federation_keys(rd, c)},
  };
}

// Rules that span keys.
void check_combinations(toml::table const& root, node_config const& c, std::vector<std::string>& errors) {
  if (auto const* m = root["messages"].as_table();
      m && m->contains("max_streams_per_user") && m->contains("max_sessions_per_user"))
    errors.push_back("messages.max_sessions_per_user: the old name of messages.max_streams_per_user; set only one");
  if (c.users.registration == registration_policy::token && c.users.registration_token.size() < 16)
    errors.push_back("users.registration_token: must be at least 16 characters when users.registration = \"token\"");
  if (c.federation.enabled() && check_subject_token(c.node.region))
    errors.push_back(
        "node.region: a federated region's name is part of NATS subjects and stream names: use only "
        "a-z 0-9 _ - (no dots)");
  if (!c.federation.enabled() && !c.federation.regions.empty())
    errors.push_back("federation.regions: listed, but federation.nats_urls is not set");
  if ((c.federation.tls_cert_file.empty()) != (c.federation.tls_key_file.empty()))
    errors.push_back("federation.tls_cert_file and federation.tls_key_file: set both or neither");
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
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    load_result r;
    r.errors.push_back(path.string() + ": cannot read the file");
    return r;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return load_string(text.str(), path.string());
}

void apply(overrides const& o, node_config& c, std::vector<std::string>& errors) {
  auto flag = [&](char const* name, std::optional<std::string> const& v, auto check) {
    if (!v) return;
    if (auto why = check(*v, c)) errors.push_back(std::string("--") + name + ": " + *why);
  };
  flag("region", o.region, check_region);
  flag("listen", o.listen, check_listen);
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
