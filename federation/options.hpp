// The [federation] config section and the region directory's entries: plain data with no
// dependency (no NATS, no Protobuf), so that node/config can hold them without depending on
// the link.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace petchat::federation {

using public_key = std::array<std::uint8_t, 32>;
using secret_key = std::array<std::uint8_t, 64>;

// One region of the federation, as the directory (static config) describes it.
struct region_entry {
  std::string name;
  // Keys envelopes of this region may be signed with. More than one while a key rotates.
  std::vector<public_key> keys;
  std::string url;       // public base URL clients connect to, e.g. https://eu.example.org
  std::string location;  // optional "latitude,longitude" for nearest-region choice

  bool operator==(region_entry const&) const = default;
};

// The [federation] config section.
struct options {
  std::vector<std::string> nats_urls;  // empty: federation off, the node is standalone
  std::string jetstream_domain;        // JetStream domain of the node's own nats-server
  std::string credentials_file;        // NATS .creds (user JWT + nkey seed)
  std::string nkey;                    // public nkey (U...) for nkey authentication
  std::string nkey_seed_file;          // its seed file
  std::string user;                    // user/password authentication
  std::string password;
  std::string tls_ca_file;  // any of the tls_* set: TLS to NATS
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name every NATS server's certificate must carry (a DNS name or an IP address); empty:
  // each server's own host in its URL (Debian's NATS.c checks that by itself).
  std::string tls_server_name;
  std::string subject_prefix = "petchat";
  std::uint32_t retention_s = 7 * 24 * 3600;  // how long the inbound stream keeps traffic
  std::uint64_t max_stream_bytes = 1ull << 30;
  std::uint32_t publish_timeout_ms = 5000;
  std::uint32_t reconnect_wait_ms = 1000;
  std::uint32_t presence_interval_s = 10;  // remote presence is at most 3x this stale
  // Woken from an idle pause, the link waits up to this long before it publishes (less once
  // 8 requests queued envelopes), so that what the outbox gets meanwhile shares the bundle
  // (one signature, one JetStream message, one commit where it is applied); 0: at once.
  std::uint32_t batch_delay_ms = 5;
  std::uint32_t resend_after_s = 10;  // unconfirmed envelopes are sent again after this (then backing off)
  // Confirmed envelopes are held this long, to send again to a destination restored from a
  // backup; 0 forgets them at once.
  std::uint32_t keep_confirmed_s = 7 * 24 * 3600;
  std::string public_url;  // this region's entry in GET /v1/regions
  std::string location;
  std::vector<region_entry> regions;  // the other regions

  bool enabled() const { return !nats_urls.empty(); }
  bool uses_tls() const {
    return !tls_ca_file.empty() || !tls_cert_file.empty() ||
           std::any_of(nats_urls.begin(), nats_urls.end(), [](auto const& u) { return u.starts_with("tls://"); });
  }

  bool operator==(options const&) const = default;
};

}  // namespace petchat::federation
