// petchat-node: one region's messenger node. Reads the config, opens the stores, starts
// the gateways on an Asio io_context run by N threads, and stops cleanly on SIGTERM/SIGINT.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "base/format/format.hpp"
#include "base/ids/ids.hpp"
#include "federation/federation.hpp"
#include "node/app/lifecycle.hpp"
#include "node/app/node_metrics.hpp"
#include "node/app/reload.hpp"
#include "node/app/startup.hpp"
#include "node/app/upkeep.hpp"
#include "node/config/config.hpp"
#include "node/gateway/gateway.hpp"
#include "node/identity/identity.hpp"
#include "node/log/log.hpp"
#include "node/messages/messages.hpp"
#include "node/metrics/metrics.hpp"
#include "node/notify/notify.hpp"
#include "node/presence/presence.hpp"
#include "node/tls/tls.hpp"
#include "node/users/users.hpp"
#include "node/web/web.hpp"
#include "node/ws/ws.hpp"
#include "store/rocks/rocks.hpp"

namespace {

namespace asio = boost::asio;
using namespace petchat;
using app::explain_sigbus;
using app::ignore_broken_pipes;
using app::listen_on;
using app::raise_open_files_limit;
using app::reload_on_hangup;
using app::start_problems;

constexpr char const* default_config_path = "/etc/petchat/node.toml";
constexpr auto shutdown_grace = std::chrono::milliseconds(4000);

int check_config(std::string const& path) {
  auto r = config::load_file(path);
  config::apply({}, r.config, r.errors);  // (no overrides: the checks of the file's values in effect)
  for (auto const& e : r.errors) std::cerr << "petchat-node: " << e << "\n";
  if (!r.ok()) return 1;
  auto problems = start_problems(r.config);
  for (auto const& e : problems) std::cerr << "petchat-node: " << e << "\n";
  if (!problems.empty()) return 1;
  std::cout << path << ": ok\n";
  return 0;
}

// Phase two of shutdown: once every connection has finished its request (or the grace
// period is over), stop the io_context.
void wait_for_drain(asio::steady_timer& timer, std::vector<gateway::http_server*> servers,
                    std::chrono::steady_clock::time_point deadline, asio::io_context& io) {
  std::size_t open = 0;
  for (auto* s : servers) open += s->connections();
  if (open == 0 || std::chrono::steady_clock::now() >= deadline) {
    if (open > 0) log::get("node")->warn("forcing {} connections closed after the grace period", open);
    io.stop();
    return;
  }
  timer.expires_after(std::chrono::milliseconds(20));
  timer.async_wait(
      [&timer, servers, deadline, &io](boost::system::error_code) { wait_for_drain(timer, servers, deadline, io); });
}

// The data dir, private, locked, bound to its region; the region's key.
identity::region_identity open_data_dir(config::node_config const& cfg, std::string const& config_source,
                                        identity::data_dir_record& record) {
  auto const& data_dir = cfg.node.data_dir;
  identity::prepare_data_dir(data_dir);
  identity::lock_data_dir(data_dir);
  record = identity::claim_data_dir(data_dir, cfg.node.region);
  if (record.upgraded_from >= 0)
    log::get("node")->warn("data dir {} upgraded from format {} to {}", data_dir.string(), record.upgraded_from,
                           record.format);
  explain_sigbus(data_dir);
  auto id = identity::load_or_create(data_dir);
  log::get("node")->info("region {} ({} key {}), data dir format {} made {}, config: {}", cfg.node.region,
                         id.created ? "created" : "loaded", id.public_key_hex(), record.format,
                         format::rfc3339(record.created_at_ms), config_source);
  return id;
}

federation::public_key public_key_of(identity::region_identity const& id) {
  federation::public_key k{};
  std::copy(id.public_key.begin(), id.public_key.end(), k.begin());
  return k;
}

// The link to other regions (null for a standalone region), wired to the message store's
// outbox and inbox and to presence; started once the gateways listen.
std::unique_ptr<federation::link> make_federation(config::node_config const& cfg, federation::directory const& regions,
                                                  identity::region_identity const& id,
                                                  messages::message_service& messages, ws::ws_manager& manager) {
  if (!cfg.federation.enabled()) return nullptr;
  federation::secret_key secret{};
  std::copy(id.secret_key.begin(), id.secret_key.end(), secret.begin());
  // The store wakes the link after each commit that queued outbox entries; the link is
  // made after the store's side of it, and before any traffic.
  auto waker = std::make_shared<std::atomic<federation::link*>>(nullptr);
  auto& fed_store = messages.enable_federation(regions, [waker] {
    if (auto* l = waker->load()) l->wake();
  });
  if (identity::restored_from_backup(cfg.node.data_dir)) {
    // The lane seqs this store hands out next were used before the restore, for envelopes
    // other regions applied: a new epoch makes them start the lanes again at what they
    // confirmed (what this store still holds is sent again, and deduplicated there).
    auto epoch = fed_store.new_outbound_epoch({}, 0);
    log::get("federation")
        ->warn("this data dir was restored from a backup: lanes to other regions continue under a new epoch {}", epoch);
    identity::forget_restored_marker(cfg.node.data_dir);
  }
  auto fed =
      std::make_unique<federation::link>(cfg.federation, regions, secret, fed_store,
                                         presence::from_regions(manager, messages, cfg.federation.presence_interval_s),
                                         presence::snapshot(manager), log::get("federation"));
  *waker = fed.get();
  manager.set_remote_hooks(presence::to_regions(cfg.node.region, *fed));
  return fed;
}

// Assets across regions: this node answers other regions' asset requests and fetches
// theirs through the link (docs/FEDERATION.md, "Assets across regions").
void connect_assets(federation::link& link, assets::asset_service& assets) {
  link.serve_assets([&assets](std::string const& asker, federation::asset_request const& req) {
    auto p = assets.serve_piece(asker, req.hash(), req.offset(), req.length());
    federation::asset_piece out;
    out.set_found(p.found);
    out.set_offset(req.offset());
    out.set_data(std::move(p.data));
    out.set_size(p.size);
    out.set_content_type(p.content_type);
    out.set_width(p.width);
    out.set_height(p.height);
    out.set_thumbnail(p.thumbnail);
    out.set_thumbnail_of(p.thumbnail_of);
    return out;
  });
  assets.fetch_with([&link](std::string const& region, std::string const& hash, std::uint64_t offset,
                            std::uint32_t length) -> std::optional<assets::remote_piece> {
    federation::asset_request req;
    req.set_hash(hash);
    req.set_offset(offset);
    req.set_length(length);
    auto p = link.fetch_asset(region, req, 10000);
    if (!p || (p->found() && p->offset() != offset)) return std::nullopt;
    return assets::remote_piece{p->found(),     std::move(*p->mutable_data()),
                                p->size(),      p->content_type(),
                                p->width(),     p->height(),
                                p->thumbnail(), p->thumbnail_of()};
  });
}

gateway::server_limits limits_of(config::gateway_section const& g) {
  gateway::server_limits l{g.max_header_bytes,
                           g.max_body_bytes,
                           std::chrono::milliseconds(g.request_timeout_ms),
                           std::chrono::milliseconds(g.idle_timeout_ms),
                           g.max_connections,
                           g.max_connections_per_address,
                           {},
                           g.forwarded_rfc7239};
  for (auto const& p : g.trusted_proxies)
    if (auto n = net::parse_network(p, true)) l.trusted_proxies.push_back(*n);  // the config checked them
  return l;
}

// The web client's files (null: off, or not built; said in the log).
std::shared_ptr<web::site const> load_web_client(config::web_section const& cfg) {
  auto log = log::get("node");
  if (!cfg.enabled) return nullptr;
  auto root = web::default_root(cfg.root);
  if (root.empty()) {
    log->warn("web client: not built (ninja -C build) and web.root not set: / answers not_found");
    return nullptr;
  }
  auto site = web::site::load(root);  // a broken directory stops the node: said, not guessed around
  log->info("web client: {} files from {}", site->files(), root.string());
  return site;
}

// The log line, and the banner a person starting the node reads.
void say_ready(std::string const& region, std::string const& listen, bool tls,
               std::filesystem::path const& admin_socket, std::string const& metrics_at, unsigned threads,
               bool web_client) {
  std::string chat = (tls ? "https://" : "http://") + listen;
  log::get("node")->info("chat gateway on {}, admin on unix:{}, metrics {}, {} I/O threads", chat,
                         admin_socket.string(), metrics_at.empty() ? "off" : "on http://" + metrics_at + "/metrics",
                         threads);
  std::string metrics_url = metrics_at.empty() ? "" : "http://" + metrics_at + "/metrics";
  std::string line = "petchat-node ready: region " + region + ", chat on " + chat +
                     ", admin on unix:" + admin_socket.string() +
                     (metrics_url.empty() ? "" : ", metrics on " + metrics_url);
  std::string hints = "  register a user:  curl -X POST " + chat +
                      "/v1/users -H 'Content-Type: application/json' "
                      "-d '{\"name\":\"alice\",\"password\":\"correct horse\"}'\n"
                      "  or as admin:      petchatctl --socket " +
                      admin_socket.string() + " users add alice\n";
  if (web_client) hints += "  chat in a browser: " + chat + "/\n";
  log::ready(
      line, hints,
      {{"url.full", chat + "/"}, {"labels.admin_socket", admin_socket.string()}, {"labels.metrics_url", metrics_url}});
}

int run(config::node_config const& cfg, std::string const& config_source, bool salvage_messages,
        app::reloader& reload) {
  auto log = log::get("node");
  raise_open_files_limit(cfg.gateway.max_connections, !cfg.gateway.tls_cert_file.empty());
  auto const& data_dir = cfg.node.data_dir;
  if (auto why = app::admin_socket_problem(cfg)) throw identity::refusal(*why);
  identity::data_dir_record record;
  auto id = open_data_dir(cfg, config_source, record);
  // Before the stores: their writers tell it of every commit until they stop.
  metrics::registry metrics(PETCHAT_VERSION, cfg.node.region);

  unsigned threads = cfg.node.threads > 0 ? cfg.node.threads : std::max(1u, std::thread::hardware_concurrency());
  asio::io_context io(static_cast<int>(threads));
  asio::thread_pool cpu_pool(std::max(1u, std::thread::hardware_concurrency()));
  users::user_service users(cfg.users, cfg.node.region, cfg.store, data_dir, id, cpu_pool);
  auto message_store = app::open_message_store(cfg, users, salvage_messages);
  if (!message_store) return 1;
  auto& messages = *message_store;
  if (!cfg.store.sync) log->warn("store.sync = false: acknowledged messages can be lost in a crash (benchmarks only)");
  ws::ws_manager manager(cfg.messages.max_streams_per_user,
                         [&messages](std::string const& user) { return messages.contacts(user); });
  messages.set_listener(manager);
  users.on_sessions_changed(
      [&manager, region = cfg.node.region](std::string const& name) { manager.sessions_changed(name + "@" + region); });

  federation::directory regions(cfg.node.region, public_key_of(id), cfg.federation);
  for (auto const& clash : app::region_clashes(cfg)) log->warn("{}", clash);
  auto fed = make_federation(cfg, regions, id, messages, manager);
  if (fed) reload.set_directory(&regions);

  auto stopping = std::make_shared<std::atomic<bool>>(false);
  app::add_node_metrics(metrics, manager, messages, users, data_dir);
  if (fed) app::add_federation_metrics(metrics, *fed);
  messages.set_asset_limits(cfg.assets);
  assets::asset_service assets(cfg.assets, data_dir / "assets", messages);
  if (fed) connect_assets(*fed, assets);
  std::unique_ptr<notify::notification_service> push;
  if (cfg.push.enabled)
    push = std::make_unique<notify::notification_service>(cfg.push, data_dir, messages, users, manager, metrics);
  else
    notify::forget_ended_devices(messages, users, io);
  auto limits = limits_of(cfg.gateway);
  auto site = load_web_client(cfg.web);
  gateway::http_server chat(io, limits,
                            gateway::make_user_api(users, messages, manager, metrics, stopping, {regions, fed.get()},
                                                   &assets, push.get(), site, cfg.metrics.on_gateway,
                                                   cfg.gateway.cors_origins, !cfg.gateway.tls_cert_file.empty()),
                            "gateway");
  chat.stream_bodies(gateway::user_api_streams);
  chat.count_refusals([&metrics](unsigned status) { metrics.http_request("user", status); });
  chat.serve_live_stream({users, messages, manager, metrics, cfg.messages, cfg.node.region});
  std::shared_ptr<tls::server_credentials> tls_credentials;
  if (!cfg.gateway.tls_cert_file.empty()) {
    try {
      tls_credentials = std::make_shared<tls::server_credentials>(cfg.gateway.tls_cert_file, cfg.gateway.tls_key_file);
    } catch (std::exception const& e) {
      throw std::runtime_error(std::string("gateway.tls_cert_file, gateway.tls_key_file: ") + e.what());
    }
    if (!tls_credentials->valid_now())
      log->error("gateway TLS: {}: clients refuse this certificate; install a valid one and reload",
                 tls_credentials->summary());
    else
      log->info("gateway TLS: {}", tls_credentials->summary());
    chat.serve_tls(tls_credentials);
    metrics.add_gauges(
        "petchat_tls_certificate_expiry_timestamp_seconds",
        "When the certificate the chat gateway presents expires (Unix time)", [tls_credentials] {
          return metrics::series{{{{"listener", "gateway"}}, static_cast<double>(tls_credentials->not_after_s())}};
        });
    reload.set_tls(tls_credentials.get());
  }
  auto port = listen_on(chat, cfg.gateway.listen, "gateway.listen");
  config::listen_address bound = cfg.gateway.listen;
  bound.port = port;
  gateway::http_server scrapes(io, limits, gateway::make_metrics_api(metrics), "metrics");
  std::string metrics_at;
  if (cfg.metrics.listen) {
    config::listen_address m = *cfg.metrics.listen;
    m.port = listen_on(scrapes, m, "metrics.listen");
    metrics_at = m.str();
  }

  metrics.add_gauges("petchat_http_connections", "Open HTTP connections (live streams included), by listener",
                     [&chat, &scrapes] {
                       return metrics::series{{{{"listener", "gateway"}}, static_cast<double>(chat.connections())},
                                              {{{"listener", "metrics"}}, static_cast<double>(scrapes.connections())}};
                     });

  backup::snapshots backups(data_dir, users, messages);
  gateway::node_info info{PETCHAT_VERSION, cfg.node.region,     std::filesystem::absolute(data_dir).string(),
                          bound.str(),     metrics_at,          format::now_ms(),
                          record.format,   record.created_at_ms};
  gateway::server_limits admin_limits = limits;
  admin_limits.max_body_bytes = std::max<std::size_t>(limits.max_body_bytes, 65536);
  gateway::http_server admin(
      io, admin_limits,
      gateway::make_admin_api(
          users, messages, metrics, cpu_pool, info, {regions, fed.get()}, &assets, push.get(), &manager,
          [&reload] {
            auto o = reload.reload();
            return gateway::reload_outcome{o.errors, o.applied, o.needs_restart};
          },
          &backups),
      "admin");
  auto admin_socket = cfg.admin_socket();
  admin.listen_unix(admin_socket);

  asio::signal_set hangups(io, SIGHUP);
  reload_on_hangup(hangups, reload);
  asio::steady_timer drain_timer(io);
  app::watchdog watchdog(io);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int signo) {
    if (ec) return;
    log->info("signal {}: stopping (finishing requests in flight)", signo);
    app::notify_stopping();
    watchdog.stop();
    *stopping = true;
    drain_timer.cancel();
    chat.shutdown();
    admin.shutdown();
    scrapes.shutdown();
    assets.stop();
    if (push) push->stop();
    wait_for_drain(drain_timer, {&chat, &admin, &scrapes}, std::chrono::steady_clock::now() + shutdown_grace, io);
  });
  app::stop_if_asked();  // a SIGTERM or SIGINT that came while the node started
  chat.start();
  admin.start();
  if (!metrics_at.empty()) scrapes.start();
  if (push) push->start(io);  // before the link applies anything: its hook sees every message
  if (fed) fed->start();
  assets.start(io);
  app::start_upkeep(io, messages, users, manager, std::chrono::milliseconds(cfg.messages.expiry_sweep_interval_ms),
                    stopping);
  app::finish_account_deletions(io, users, messages, metrics, stopping);
  say_ready(cfg.node.region, bound.str(), tls_credentials != nullptr, admin_socket, metrics_at, threads,
            site != nullptr);
  app::notify_ready("serving region " + cfg.node.region + ", chat on " + bound.str());
  watchdog.start();

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i)
    pool.emplace_back([&io] {
      pthread_setname_np(pthread_self(), "petchat-io");  // seen in top -H, perf, gdb
      io.run();
    });
  io.run();
  for (auto& t : pool) t.join();

  cpu_pool.join();
  if (fed) fed->stop();
  messages.stop();
  users.stop();
  log->info("stopped cleanly");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  app::hold_hangups();
  app::hold_stops();
  // Whatever the node creates is its own: the message store's files, made with the
  // library's default modes, must not be readable by other users whatever the caller's umask.
  ::umask(077);
  ignore_broken_pipes();
  app::route_protobuf_logs();
  CLI::App app{"petchat-node: one region's petchat messenger node"};
  std::string config_path, check_path;
  config::overrides o;
  bool version = false, init = false;
  app.add_option("--config", config_path, "TOML config file (default: /etc/petchat/node.toml if it exists)");
  app.add_option("--check-config", check_path, "validate a config file and exit");
  app.add_option("--region", o.region, "region name (node.region; PETCHAT_REGION in the environment)");
  app.add_flag("--require-region", o.require_region, "refuse to start when no region is configured");
  app.add_option("--data-dir", o.data_dir, "data directory (node.data_dir)");
  app.add_option("--listen", o.listen, "chat gateway address host:port (gateway.listen)");
  app.add_option("--metrics-listen", o.metrics_listen,
                 "Prometheus scrape address host:port, \"\" for none (metrics.listen)");
  app.add_option("--threads", o.threads, "I/O threads, 0 = one per core (node.threads)");
  app.add_option("--log-format", o.log_format, "human or json (log.format)");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error (log.level)");
  app.add_flag("--version", version, "print the version and exit");
  bool salvage = false;
  app.add_flag("--salvage-messages", salvage,
               "open a message store whose write-ahead log is damaged, keeping what precedes the damage");
  app.add_flag("--init", init,
               "create the data dir and the region key if missing, print the region's public key (hex) and exit");
  try {
    app.parse(argc, argv);
  } catch (CLI::ParseError const& e) {
    return app.exit(e);
  }
  if (version) {
    std::cout << "petchat-node " << PETCHAT_VERSION << "\n";
    return 0;
  }
  if (!check_path.empty()) return check_config(check_path);
  if (char const* env = std::getenv("PETCHAT_REGION")) o.region_env = env;
  if (sodium_init() < 0) {  // before any other libsodium call, as its manual requires
    std::cerr << "petchat-node: libsodium cannot be initialised\n";
    return 1;
  }

  std::string source = "built-in defaults";
  config::load_result loaded;
  if (config_path.empty() && std::filesystem::exists(default_config_path)) config_path = default_config_path;
  if (!config_path.empty()) {
    loaded = config::load_file(config_path);
    source = config_path;
  }
  config::apply(o, loaded.config, loaded.errors);
  if (!loaded.ok()) {
    // In JSON mode (when that much of the config was read) the errors are log lines too.
    bool json = loaded.config.log.format == config::log_format::json;
    if (json) log::setup(config::log_format::json, "info", PETCHAT_VERSION);
    for (auto const& e : loaded.errors)
      if (json)
        log::write(*log::get("config"), spdlog::level::err, e,
                   {{"event.action", "config-check"}, {"event.outcome", "failure"}});
      else
        std::cerr << "petchat-node: " << e << "\n";
    return 2;
  }
  auto const& cfg = loaded.config;
  log::setup(cfg.log.format, cfg.log.level, PETCHAT_VERSION, cfg.node.region);
  if (init) {
    try {
      identity::prepare_data_dir(cfg.node.data_dir);
      // Not bound to a region yet: operators make the key first and often set the region
      // only in the config the node is then started with.
      std::cout << identity::load_or_create(cfg.node.data_dir).public_key_hex() << "\n";
      return 0;
    } catch (identity::refusal const& e) {
      std::cerr << "petchat-node: " << e.what() << "\n";
      return 2;
    } catch (std::exception const& e) {
      std::cerr << "petchat-node: " << e.what() << "\n";
      return 1;
    }
  }
  try {
    app::reloader reload(config_path, o, cfg);
    return run(cfg, source, salvage, reload);
  } catch (identity::refusal const& e) {  // an operator must act first: not restarted (exit 2)
    log::get("node")->critical("cannot start: {}", e.what());
    return 2;
  } catch (std::exception const& e) {
    log::get("node")->critical("cannot start: {}", e.what());
    return 1;
  }
}
