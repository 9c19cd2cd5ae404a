// The gateways: an HTTP/1.1 server (Boost.Beast) and the two APIs it serves.
//
//  - The user gateway: the chat clients' REST API on TCP (docs/PROTOCOL.md).
//  - The admin gateway: the operators' JSON API on a Unix socket of mode 0600 under the
//    data dir; `petchatctl` speaks to it.
//
// Handlers see plain `request`/`response` values, not Beast types: Beast is compiled in
// http_server.cpp and asio_impl.cpp only, which keeps builds fast.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/net/net.hpp"
#include "node/assets/assets.hpp"
#include "node/backup/backup.hpp"
#include "node/config/config.hpp"
#include "node/errors/errors.hpp"
#include "node/messages/messages.hpp"
#include "node/metrics/metrics.hpp"
#include "node/notify/notify.hpp"
#include "node/users/users.hpp"
#include "node/web/web.hpp"
#include "node/ws/ws.hpp"

namespace petchat::tls {
class server_credentials;  // node/tls/tls.hpp
}

namespace petchat::gateway {

using boost::asio::awaitable;

struct request {
  std::string method;                          // upper case, e.g. "POST"
  std::string path;                            // decoded of nothing: the target up to '?'
  std::string query;                           // after '?', raw
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  // IP for TCP (the peer's, or behind a trusted proxy the client's it names), "unix" for
  // the admin socket.
  std::string client_address;
  // A request whose body is streamed (http_server::stream_bodies): `body` is empty and
  // the handler reads the body from here, at most `body_length` bytes.
  assets::byte_source* body_stream = nullptr;
  std::optional<std::uint64_t> body_length;  // Content-Length, when given

  std::string header(std::string const& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct response {
  unsigned status = 200;
  std::string body;  // JSON unless content_type says otherwise
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  // A body streamed from a file instead of `body`: `file_length` bytes from `file_offset`.
  std::shared_ptr<assets::blob_reader> file;
  std::uint64_t file_offset = 0, file_length = 0;
};

using handler = std::function<awaitable<response>(request)>;

// The JSON error response for `f` (PROTOCOL.md, "Errors").
response error_response(errors::failure const& f);

struct server_limits {
  std::size_t max_header_bytes = 8192;
  std::size_t max_body_bytes = 65536;
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
  std::size_t max_connections = 10000;
  std::size_t max_connections_per_address = 256;  // TCP only; refused with 503 too_many_connections
  // Peers whose Forwarded / X-Forwarded-For name the client (request::client_address);
  // their connections are not held to max_connections_per_address.
  std::vector<net::network> trusted_proxies;
  bool forwarded_rfc7239 = false;  // they write Forwarded (RFC 7239), not X-Forwarded-For
};

// Accepts connections and runs one coroutine per connection on its own strand. Every
// request is read under the header/body/time limits; a violation is answered with the
// matching error code and the connection is closed.
class http_server {
 public:
  http_server(boost::asio::io_context& io, server_limits limits, handler h, std::string name);
  ~http_server();

  // Binds and listens. Throws std::system_error on failure. Returns the bound port.
  std::uint16_t listen_tcp(config::listen_address const& address);
  // Binds a Unix socket (replacing a stale socket file) with mode 0600.
  void listen_unix(std::filesystem::path const& path);

  // Requests for which `streamed(method, path)` is true get their body as a stream
  // (request::body_stream), under no body limit but the handler's own.
  void stream_bodies(std::function<bool(std::string_view method, std::string_view path)> streamed);

  // `counted(status)` is called for each answer the server gives before a handler runs
  // (a request it cannot read, a connection over a limit), from any I/O thread.
  void count_refusals(std::function<void(unsigned status)> counted);

  // Serves the live stream (WebSocket upgrades of GET /v1/ws) on the TCP listener.
  struct live_stream {
    users::user_service& users;
    messages::message_service& messages;
    ws::ws_manager& manager;
    metrics::registry& metrics;
    config::messages_section limits;
    std::string region;
  };
  void serve_live_stream(live_stream services);

  // The TCP listener speaks TLS with these credentials (each new connection takes their
  // current certificate: a reload applies to the next handshake).
  void serve_tls(std::shared_ptr<tls::server_credentials> credentials);

  // Starts the accept loops.
  void start();

  // Phase one of shutdown: stop accepting, close idle keep-alive connections, and let
  // each busy connection finish its request and then close.
  void shutdown();

  // Connections still open.
  std::size_t connections() const;

  struct state;  // defined in http_server.cpp; shared with the connection coroutines

 private:
  std::shared_ptr<state> state_;
};

// The chat clients' API (PROTOCOL.md: health, accounts, sessions), and the web client at `/`.
// The region directory, and the federation link (null when the node is standalone).
struct federation_view {
  federation::directory const& regions;
  federation::link* link = nullptr;
};

handler make_user_api(users::user_service& users, messages::message_service& messages, ws::ws_manager& manager,
                      metrics::registry& metrics, std::shared_ptr<std::atomic<bool>> stopping, federation_view fed,
                      assets::asset_service* assets = nullptr, notify::notification_service* push = nullptr,
                      std::shared_ptr<web::site const> web = nullptr, bool serve_metrics = false,
                      std::vector<std::string> cors_origins = {}, bool https = false);

// The metrics listener's API (metrics.listen): GET /metrics, Prometheus text; anything
// else is not_found.
handler make_metrics_api(metrics::registry& metrics);
// Whether the user API streams the body of a request (uploads: see http_server::stream_bodies).
bool user_api_streams(std::string_view method, std::string_view path);

// What the admin API reports in `status`.
struct node_info {
  std::string version;
  std::string region;
  std::string data_dir;
  std::string listen;
  std::string metrics_listen;  // empty: no metrics listener
  std::int64_t started_at_ms = 0;
  int data_format = 0;                  // datadir.json's format
  std::int64_t data_created_at_ms = 0;  // and when the data dir was made
};

// The operators' API (PROTOCOL.md: admin API); `cpu_pool` runs its whole-table scans and
// the store compaction, so they never stall an I/O thread.
// `petchatctl reload`: the node's config read again (node/app/reload.hpp).
struct reload_outcome {
  std::vector<std::string> errors, applied, needs_restart;
};
using reload_fn = std::function<reload_outcome()>;

// The message store's part of deleting the account `name` (bare, of this region), after
// users::delete_user: its groups left and its push targets removed (each counted in
// petchat_push_targets_removed_total), then the deletion noted as finished. The admin API's
// DELETE runs it, and the node at start for each users::unfinished_deletions (a crash came
// between the two). Errors: those of message_service::account_deleted and
// users::deletion_finished. Any executor.
boost::asio::awaitable<errors::status> finish_account_deletion(users::user_service& users,
                                                               messages::message_service& messages,
                                                               metrics::registry& metrics, std::string name);

handler make_admin_api(users::user_service& users, messages::message_service& messages, metrics::registry& metrics,
                       boost::asio::thread_pool& cpu_pool, node_info info, federation_view fed,
                       assets::asset_service* assets = nullptr, notify::notification_service* push = nullptr,
                       ws::ws_manager* manager = nullptr, reload_fn reload = {}, backup::snapshots* backups = nullptr);

}  // namespace petchat::gateway
