// The node's configuration: a TOML file (documented example: config/node.toml), then
// command-line flags on top. Every key has a default, so no file at all is a valid
// configuration: a standalone region on 127.0.0.1:8080 with data under ./data.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "federation/options.hpp"

namespace petchat::config {

struct listen_address {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0 lets the kernel choose (tests use this)

  std::string str() const;

  bool operator==(listen_address const&) const = default;
};

enum class registration_policy { open, token, closed };
enum class log_format { human, json };

struct node_section {
  std::string region = "local";
  std::filesystem::path data_dir = "./data";
  int threads = 0;          // I/O threads; 0 means one per core
  bool region_set = false;  // the region was given (file, PETCHAT_REGION or --region), not defaulted

  bool operator==(node_section const&) const = default;
};

struct gateway_section {
  listen_address listen;
  std::size_t max_header_bytes = 8192;
  std::size_t max_body_bytes = 65536;
  std::uint32_t request_timeout_ms = 10000;  // whole request, first byte to last
  std::uint32_t idle_timeout_ms = 60000;     // keep-alive wait for the next request
  std::size_t max_connections = 10000;
  std::size_t max_connections_per_address = 256;  // one client cannot hold every slot
  // Reverse proxies whose X-Forwarded-For / Forwarded name the client (addresses or CIDR
  // networks); from anyone else those headers are ignored.
  std::vector<std::string> trusted_proxies;
  // The one header those proxies write (forwarded_header: "x-forwarded-for", the default,
  // or "forwarded", RFC 7239): the other is the client's own and never read.
  bool forwarded_rfc7239 = false;
  // Origins of a web client served elsewhere that may call the API from a browser
  // ("https://chat.example.org"; "*" for any). Empty: no CORS.
  std::vector<std::string> cors_origins;
  // TLS on the listener (PEM files; both or neither). The files are read again on a reload.
  std::string tls_cert_file;  // the certificate, then its chain
  std::string tls_key_file;

  bool operator==(gateway_section const&) const = default;
};

// The Prometheus scrape listener, apart from the chat gateway so that the node's figures
// are not public; `on_gateway` serves /metrics on the chat gateway too.
struct metrics_section {
  std::optional<listen_address> listen = listen_address{"127.0.0.1", 9464};  // empty: off
  bool on_gateway = false;

  bool operator==(metrics_section const&) const = default;
};

struct admin_section {
  std::filesystem::path socket;  // empty: <data_dir>/admin.sock

  bool operator==(admin_section const&) const = default;
};

struct users_section {
  registration_policy registration = registration_policy::open;
  std::string registration_token;
  std::uint32_t access_token_ttl_s = 900;
  std::uint32_t refresh_token_ttl_s = 30 * 24 * 3600;
  std::uint32_t refresh_retry_grace_s = 60;  // the last exchanged refresh token may come again
  std::size_t password_min_length = 8;
  std::uint32_t password_hash_ops = 2;                     // argon2id passes
  std::uint32_t password_hash_memory_kib = 65536;          // argon2id memory per hash
  std::uint32_t login_free_attempts = 5;                   // per account
  std::uint32_t login_free_attempts_per_address = 20;      // per client address (NATs share one)
  std::uint32_t login_checks_per_address = 0;              // password checks at once per address (0: half the node's)
  std::uint32_t login_checks_per_minute_per_address = 60;  // password checks a minute per address, right or wrong
  std::uint32_t login_backoff_initial_ms = 1000;
  std::uint32_t login_backoff_max_ms = 15 * 60 * 1000;
  std::uint32_t max_registrations_per_address = 10;  // self-registrations per address and window
  std::uint32_t registration_window_s = 3600;
  std::uint32_t max_devices_per_user = 32;  // logged-in devices; the least recently used goes

  bool operator==(users_section const&) const = default;
};

struct store_section {
  std::size_t lmdb_initial_map_mib = 64;
  // fsync before acknowledging. Only benchmarks turn it off, to measure what durability
  // costs: with false, a crash loses acknowledged writes.
  bool sync = true;

  bool operator==(store_section const&) const = default;
};

struct messages_section {
  std::uint32_t retention_s = 30 * 24 * 3600;  // default lifetime of a message
  std::size_t max_text_bytes = 4096;           // body.text
  std::size_t max_content_bytes = 16384;       // body.content, serialized
  std::size_t max_frame_bytes = 262144;        // one WebSocket frame from a client
  std::uint32_t max_per_second = 50;           // sends per user (burst: twice as many)
  std::uint32_t max_streams_per_user = 10;     // live streams (WebSocket connections) per user
  std::size_t send_queue_frames = 1024;        // frames queued to one client before it is cut off
  std::uint32_t delete_for_everyone_window_s = 3600;
  std::uint32_t expiry_sweep_interval_ms = 1000;
  std::size_t max_group_members = 1000;
  std::size_t max_groups_per_user = 500;
  std::uint32_t max_joins_per_hour = 100;          // groups a user is added to by others (0: no limit)
  std::uint32_t max_groups_created_per_day = 100;  // groups a user creates (0: no limit)
  // Direct conversations other regions' users start with a user here (0: no limit).
  std::uint32_t max_remote_contacts_per_hour = 100;
  // Groups with more recipients get count receipts instead of one per member.
  std::size_t group_receipt_events_max_members = 32;
  std::size_t max_attachments = 10;  // attachments of one message

  bool operator==(messages_section const&) const = default;
};

// The asset service (docs/PROTOCOL.md, "Assets").
struct assets_section {
  std::uint64_t max_asset_bytes = std::uint64_t(2) << 30;  // one asset
  std::uint64_t quota_bytes = std::uint64_t(10) << 30;     // stored per user, uploads in progress included
  // Stored here, fetched from one other region (its messages' attachments); 0: no limit.
  std::uint64_t max_fetched_bytes_per_region = std::uint64_t(100) << 30;
  std::uint32_t upload_expiry_s = 86400;          // an incomplete upload is removed after
  std::uint32_t grace_s = 86400;                  // an unreferenced asset lives on so long
  std::uint32_t max_uploads_per_user = 20;        // resumable uploads in progress
  std::uint64_t max_image_pixels = 100000000;     // larger images get no thumbnail
  std::uint32_t thumbnail_px = 320;               // a thumbnail's longer side at most
  std::uint32_t thumbnail_time_limit_ms = 10000;  // one image's thumbnail: stopped after
  std::uint32_t collect_interval_s = 60;          // how often the collector runs
  std::uint32_t link_ttl_s = 300;                 // a download link's life

  bool operator==(assets_section const&) const = default;
};

// Push notifications (docs/PROTOCOL.md, "Push notifications"; config/node.toml).
struct push_section {
  bool enabled = true;
  std::uint32_t live_delay_ms = 2000;  // a device with a live stream may acknowledge first
  std::uint32_t coalesce_ms = 10000;   // at most one push per target per interval
  std::uint32_t give_up_s = 86400;     // a push not sent by then is dropped
  std::uint32_t retry_initial_ms = 1000;
  std::uint32_t retry_max_ms = 300000;
  std::uint32_t connect_timeout_ms = 5000;
  std::uint32_t response_timeout_ms = 10000;
  std::size_t max_in_flight = 256;
  std::size_t max_in_flight_per_user = 8;  // one user's slow endpoints cannot take every slot
  // A push still unanswered after this gives its slot back (to at most max_in_flight such);
  // a host whose push got no answer at all, this late, shares max(1, max_in_flight / 8)
  // slots with such hosts for 10 minutes, or until it answers.
  std::uint32_t slow_after_ms = 3000;
  std::size_t max_targets_per_device = 10;
  std::size_t max_targets_per_user = 20;  // new targets past it are refused
  // Targets of all users whose requests go to one origin (host and port), unless the host is
  // one of bulk_hosts (an exact name, or "*.domain" for names under it): many accounts
  // must not make the node send every message's push to one host a thousand times.
  std::size_t max_targets_per_host = 1000;
  std::vector<std::string> bulk_hosts{"fcm.googleapis.com", "updates.push.services.mozilla.com", "web.push.apple.com",
                                      "*.notify.windows.com", "ntfy.sh"};
  std::uint32_t registrations_per_minute = 20;  // per user; each may look up a name
  std::uint32_t ttl_s = 86400;                  // Web Push TTL
  std::string vapid_subject = "mailto:admin@localhost";
  std::size_t preview_bytes = 100;
  std::string ca_file;                      // extra CAs for push endpoints
  std::vector<std::string> allow_hosts;     // host names allowed though not public
  std::vector<std::string> allow_networks;  // CIDR networks allowed though not public
  std::vector<std::string> nameservers;     // "address[:port]"; empty: /etc/resolv.conf's

  bool operator==(push_section const&) const = default;
};

// The web client at `/` (docs/PROTOCOL.md, "The web client").
struct web_section {
  bool enabled = true;
  std::string root;  // empty: the installed client, or the build tree's

  bool operator==(web_section const&) const = default;
};

struct log_section {
  log_format format = log_format::human;
  std::string level = "info";

  bool operator==(log_section const&) const = default;
};

struct node_config {
  node_section node;
  gateway_section gateway;
  admin_section admin;
  metrics_section metrics;
  users_section users;
  store_section store;
  messages_section messages;
  assets_section assets;
  push_section push;
  web_section web;
  log_section log;
  federation::options federation;  // [federation]; no NATS URLs: standalone

  std::filesystem::path admin_socket() const {
    return admin.socket.empty() ? node.data_dir / "admin.sock" : admin.socket;
  }
};

// Errors name the key and, when it came from a file, the line: "users.registration (line
// 12): expected one of open, token, closed".
struct load_result {
  node_config config;
  std::vector<std::string> errors;  // empty on success

  bool ok() const { return errors.empty(); }
};

// Reads and validates a TOML file. Unknown keys, wrong types, out-of-range values and
// syntax errors are all reported, not just the first.
load_result load_file(std::filesystem::path const& path);

// Parses TOML text (for tests and --check-config); `source` names it in errors.
load_result load_string(std::string const& text, std::string const& source = "config");

// Command-line values that override the file. Each is validated like the file's key.
struct overrides {
  std::optional<std::string> region;
  std::optional<std::string> region_env;  // PETCHAT_REGION: over the file, under --region
  bool require_region = false;            // --require-region: a defaulted region is an error
  std::optional<std::string> data_dir;
  std::optional<std::string> listen;
  std::optional<std::string> metrics_listen;
  std::optional<int> threads;
  std::optional<std::string> log_format;
  std::optional<std::string> log_level;
};

// Applies `o` to `config`, appending an error per invalid value.
void apply(overrides const& o, node_config& config, std::vector<std::string>& errors);

// Parses "host:port" (IPv4 or a name, or "[v6]:port").
std::optional<listen_address> parse_listen(std::string const& text);

}  // namespace petchat::config
