// The [push] and [federation] sections of the config (see detail/reader.hpp).
#include <algorithm>
#include <cctype>
#include <charconv>

#include "base/ids/ids.hpp"
#include "node/config/detail/addresses.hpp"
#include "node/config/detail/reader.hpp"

namespace petchat::config::detail {

namespace {

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

std::optional<std::string> check_tls_server_name(std::string const& v, node_config& c) {
  bool plain = !v.empty() && v.size() <= 253 && std::all_of(v.begin(), v.end(), [](unsigned char ch) {
    return std::isalnum(ch) || ch == '.' || ch == '-' || ch == ':' || ch == '_';
  });
  if (!plain) return "expected a DNS name or an IP address, e.g. nats.example.org";
  c.federation.tls_server_name = v;
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

}  // namespace

std::optional<std::string> check_subject_token(std::string const& v) {
  if (v.empty() || v.size() > 64) return "must be 1 to 64 characters";
  for (char ch : v)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_'))
      return "may only contain letters, digits, - and _ (it is a NATS subject token)";
  return std::nullopt;
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
      {"max_in_flight_per_user", rd.integer(p.max_in_flight_per_user, 1, 100000)},
      {"slow_after_ms", rd.integer(p.slow_after_ms, 100, 600000)},
      {"max_targets_per_device", rd.integer(p.max_targets_per_device, 1, 1000)},
      {"max_targets_per_user", rd.integer(p.max_targets_per_user, 1, 100000)},
      {"max_targets_per_host", rd.integer(p.max_targets_per_host, 1, 100000000)},
      {"bulk_hosts", string_list(rd, p.bulk_hosts,
                                 [](std::string const& v) -> std::optional<std::string> {
                                   auto name = v.starts_with("*.") ? v.substr(2) : v;
                                   if (name.empty() || name.size() > 253 || name.find('*') != std::string::npos)
                                     return "expected a host name, or *. and a domain";
                                   return std::nullopt;
                                 })},
      {"registrations_per_minute", rd.integer(p.registrations_per_minute, 1, 100000)},
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
                                       if (!valid_cidr(v))
                                         return "expected a network in CIDR notation, e.g. 10.0.0.0/8 or fd00::/8";
                                       return std::nullopt;
                                     })},
      {"nameservers", string_list(rd, p.nameservers,
                                  [](std::string const& v) -> std::optional<std::string> {
                                    if (!valid_nameserver(v))
                                      return "expected an IP address with an optional port, e.g. 192.0.2.53:53 or "
                                             "[2001:db8::53]:53";
                                    return std::nullopt;
                                  })},
  };
}

reader::section federation_keys(reader& rd, node_config& c) {
  return {
      {"nats_urls",
       [&rd, &c](std::string const& key, toml::node const& n) {
         auto const* arr = n.as_array();  // (empty: federation off, as when absent)
         if (!arr) return rd.fail(key, n, "expected an array of nats:// or tls:// URLs");
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
      {"tls_server_name", checked(rd, c, check_tls_server_name)},
      {"subject_prefix", checked(rd, c, check_subject_prefix)},
      {"retention_s", rd.integer(c.federation.retention_s, 60, 365 * 86400)},
      {"max_stream_bytes", rd.integer(c.federation.max_stream_bytes, 1 << 20, std::int64_t(1) << 50)},
      {"publish_timeout_ms", rd.integer(c.federation.publish_timeout_ms, 100, 600000)},
      {"reconnect_wait_ms", rd.integer(c.federation.reconnect_wait_ms, 10, 600000)},
      {"presence_interval_s", rd.integer(c.federation.presence_interval_s, 1, 3600)},
      {"resend_after_s", rd.integer(c.federation.resend_after_s, 3, 86400)},
      {"batch_delay_ms", rd.integer(c.federation.batch_delay_ms, 0, 1000)},
      {"keep_confirmed_s", rd.integer(c.federation.keep_confirmed_s, 0, 365 * 86400)},
      {"public_url", rd.text(c.federation.public_url)},
      {"location", rd.text(c.federation.location)},
      {"regions", [&rd, &c](std::string const& key, toml::node const& n) { read_regions(rd, key, n, c.federation); }}};
}

}  // namespace petchat::config::detail
