// petchat-node: one region's messenger node. Reads the config, opens the stores, starts
// the gateways on an Asio io_context run by N threads, and stops cleanly on SIGTERM/SIGINT.
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
#include "node/config/config.hpp"
#include "node/gateway/gateway.hpp"
#include "node/identity/identity.hpp"
#include "node/log/log.hpp"
#include "node/messages/messages.hpp"
#include "node/metrics/metrics.hpp"
#include "node/users/users.hpp"
#include "node/ws/ws.hpp"
#include "store/rocks/rocks.hpp"

namespace {

namespace asio = boost::asio;
using namespace petchat;

constexpr char const* default_config_path = "/etc/petchat/node.toml";
constexpr auto shutdown_grace = std::chrono::milliseconds(4000);

int check_config(std::string const& path) {
  auto r = config::load_file(path);
  for (auto const& e : r.errors) std::cerr << "petchat-node: " << e << "\n";
  if (!r.ok()) return 1;
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

// Every connection is a file descriptor: raise the soft limit to the hard limit, and say
// so if gateway.max_connections still cannot be reached.
void raise_open_files_limit(std::size_t max_connections) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < max_connections + 64)
    log::get("node")->warn("open-files limit {} is below gateway.max_connections {}; raise LimitNOFILE/ulimit -n",
                           rl.rlim_cur, max_connections);
}

// Removes expired messages every `interval` until the node stops; also lets remote users'
// presence reports run out.
asio::awaitable<void> sweep_expired_messages(messages::message_service& messages, ws::ws_manager& manager,
                                             std::chrono::milliseconds interval,
                                             std::shared_ptr<std::atomic<bool>> stopping) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!*stopping) {
    timer.expires_after(interval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (*stopping) break;
    manager.expire_remote_presence();
    try {
      std::size_t n = co_await messages.sweep_expired();
      if (n > 0) log::get("messages")->debug("expired {} messages", n);
    } catch (std::exception const& e) {
      log::get("messages")->error("expiry sweep failed: {}", e.what());
    }
  }
}

// Presence and typing from other regions (verified envelopes, on a NATS thread).
federation::link::ephemeral_handler remote_live_handler(ws::ws_manager& manager, messages::message_service& messages,
                                                        std::uint32_t interval_s) {
  return [&manager, &messages, interval_s](federation::body const& b) {
    auto now = format::now_ms();
    if (b.has_presence()) {
      // A report holds for three refresh intervals: a region that goes silent cannot keep
      // its users online here for longer than that.
      std::int64_t valid_until = now + 3 * std::int64_t(interval_s) * 1000;
      std::vector<std::string> online;
      for (auto const& e : b.presence().entries()) {
        manager.remote_presence(e.user_id(), e.online(), e.last_seen_ms(), valid_until);
        if (e.online()) online.push_back(e.user_id());
      }
      if (b.presence().full()) manager.remote_presence_full(b.origin(), online, now);
    } else if (b.has_typing()) {
      // The same rule as for local typing, seen from the recipient's side.
      auto const& t = b.typing();
      auto target = messages.typing_between(b.typing_to(), t.from());
      if (target && target->conversation_id == t.conversation_id())
        manager.relay_typing(t.from(), b.typing_to(), target->conversation_id, t.active());
    }
  };
}

// The periodic presence refresh for one region: our online users with contacts there.
federation::link::presence_source presence_snapshot(ws::ws_manager& manager) {
  return [&manager](std::string const& region) {
    federation::presence_update u;
    for (auto const& user : manager.online_with_contacts_in(region)) {
      auto* e = u.add_entries();
      e->set_user_id(user);
      e->set_online(true);
    }
    return u;
  };
}

ws::remote_hooks remote_hooks(std::string const& local_region, federation::link& fed) {
  ws::remote_hooks h;
  h.local_region = local_region;
  h.presence_out = [&fed](std::string const& region, std::string const& user, bool online, std::int64_t last_seen) {
    federation::body b;
    auto* e = b.mutable_presence()->add_entries();
    e->set_user_id(user);
    e->set_online(online);
    e->set_last_seen_ms(last_seen);
    fed.send_ephemeral(region, std::move(b));
  };
  h.typing_out = [&fed](std::string const& from, std::string const& to, std::string const& conv, bool active) {
    federation::body b;
    auto* t = b.mutable_typing();
    t->set_from(from);
    t->set_conversation_id(conv);
    t->set_active(active);
    b.set_typing_to(to);
    fed.send_ephemeral(std::string(ids::region_of(to)), std::move(b));
  };
  return h;
}

// LMDB reads its data file through a memory map and has no checksums: a page that a
// truncated or damaged file no longer backs kills the process with SIGBUS inside a read.
// Nothing can be recovered at that point, but the operator is told what it means and what
// to do before the process dies as it would have (the handler is reset, and the faulting
// read raises the signal again). Only async-signal-safe calls: the text is made in advance.
std::string sigbus_text;

extern "C" void on_sigbus(int) {
  auto written = ::write(STDERR_FILENO, sigbus_text.data(), sigbus_text.size());
  (void)written;
}

void explain_sigbus(std::filesystem::path const& data_dir) {
  sigbus_text = "petchat-node: SIGBUS: a memory-mapped store file could not be read: " + (data_dir / "users").string() +
                "/data.mdb (LMDB) is truncated or damaged (a full disk, a failing device, or a changed file). "
                "Stop the node and restore that directory from a backup; `mdb_dump -a " +
                (data_dir / "users").string() +
                "` shows what is still readable. The message store (RocksDB) has checksums and reports its own "
                "damage instead.\n";
  struct sigaction sa {};
  sa.sa_handler = on_sigbus;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
}

int run(config::node_config const& cfg, std::string const& config_source, bool salvage_messages) {
  auto log = log::get("node");
  raise_open_files_limit(cfg.gateway.max_connections);
  auto const& data_dir = cfg.node.data_dir;
  identity::prepare_data_dir(data_dir);
  identity::lock_data_dir(data_dir);
  explain_sigbus(data_dir);
  auto id = identity::load_or_create(data_dir);
  log->info("region {} ({} key {}), config: {}", cfg.node.region, id.created ? "created" : "loaded",
            id.public_key_hex(), config_source);

  unsigned threads = cfg.node.threads > 0 ? cfg.node.threads : std::max(1u, std::thread::hardware_concurrency());
  asio::io_context io(static_cast<int>(threads));
  asio::thread_pool cpu_pool(std::max(1u, std::thread::hardware_concurrency()));
  users::user_service users(cfg.users, cfg.node.region, cfg.store, data_dir, id, cpu_pool);
  std::unique_ptr<messages::message_service> message_store;
  try {
    message_store = std::make_unique<messages::message_service>(cfg.messages, cfg.node.region, data_dir, users,
                                                                cfg.store.sync, salvage_messages);
  } catch (store::damage_error const& e) {
    // Replaying up to the damage would drop acknowledged messages and hand their seqs out
    // again: the operator decides (docs/PROTOCOL.md, petchatctl: "A damaged message store").
    log->critical("{}", e.what());
    log->critical(
        "restore {} from a backup, or start once with --salvage-messages to keep what precedes the damage "
        "(what follows it is lost; mailbox seqs jump ahead so none is reused)",
        (data_dir / "messages").string());
    return 1;
  }
  auto& messages = *message_store;
  if (!cfg.store.sync) log->warn("store.sync = false: acknowledged messages can be lost in a crash (benchmarks only)");
  ws::ws_manager manager(cfg.messages.max_streams_per_user,
                         [&messages](std::string const& user) { return messages.contacts(user); });
  messages.set_listener([&manager](std::string const& user, std::uint64_t head, auto event) {
    manager.notify_mailbox(user, head, std::move(event));
  });

  federation::public_key region_public{};
  federation::secret_key region_secret{};
  std::copy(id.public_key.begin(), id.public_key.end(), region_public.begin());
  std::copy(id.secret_key.begin(), id.secret_key.end(), region_secret.begin());
  federation::directory regions(cfg.node.region, region_public, cfg.federation);
  std::unique_ptr<federation::link> fed;
  if (cfg.federation.enabled()) {
    auto& fed_store = messages.enable_federation(regions, [&fed] { fed->wake(); });
    fed = std::make_unique<federation::link>(cfg.federation, regions, region_secret, fed_store,
                                             remote_live_handler(manager, messages, cfg.federation.presence_interval_s),
                                             presence_snapshot(manager), log::get("federation"));
    manager.set_remote_hooks(remote_hooks(cfg.node.region, *fed));
  }

  auto stopping = std::make_shared<std::atomic<bool>>(false);
  metrics::registry metrics(PETCHAT_VERSION, cfg.node.region);
  metrics.add_gauge("petchat_ws_streams", "Live streams (WebSocket connections)",
                    [&manager] { return static_cast<double>(manager.streams()); });
  metrics.add_gauge("petchat_ws_sessions", "Deprecated: petchat_ws_streams under its name before 0.2",
                    [&manager] { return static_cast<double>(manager.streams()); });
  metrics.add_gauge("petchat_messages_group_commits", "Group commits (WAL fsyncs) of the message store since start",
                    [&messages] { return static_cast<double>(messages.commits()); });
  metrics.add_gauge("petchat_store_writes_failing", "1 while the message store refuses writes (e.g. a full disk)",
                    [&messages] { return messages.write_error().empty() ? 0.0 : 1.0; });
  metrics.add_gauge("petchat_ack_walked_events_total",
                    "Mailbox events acknowledgements have looked at for delivery receipts since start",
                    [&messages] { return static_cast<double>(messages.ack_walked_events()); });
  if (fed) {
    auto* link = fed.get();
    metrics.add_gauge("petchat_federation_connected", "1 while the NATS link is up",
                      [link] { return link->connected() ? 1.0 : 0.0; });
    metrics.add_gauge("petchat_federation_published_envelopes",
                      "Message bodies JetStream stored for other regions since start (resends included)",
                      [link] { return static_cast<double>(link->published()); });
    metrics.add_gauge("petchat_federation_applied_envelopes", "Inbound bodies applied since start",
                      [link] { return static_cast<double>(link->applied()); });
    metrics.add_gauge("petchat_federation_rejected_envelopes", "Inbound envelopes refused since start (any reason)",
                      [link] { return static_cast<double>(link->rejected()); });
  }
  gateway::server_limits limits{cfg.gateway.max_header_bytes,
                                cfg.gateway.max_body_bytes,
                                std::chrono::milliseconds(cfg.gateway.request_timeout_ms),
                                std::chrono::milliseconds(cfg.gateway.idle_timeout_ms),
                                cfg.gateway.max_connections,
                                cfg.gateway.max_connections_per_address};
  gateway::http_server chat(
      io, limits, gateway::make_user_api(users, messages, manager, metrics, stopping, {regions, fed.get()}), "gateway");
  chat.serve_live_stream({users, messages, manager, metrics, cfg.messages, cfg.node.region});
  auto port = chat.listen_tcp(cfg.gateway.listen);
  config::listen_address bound = cfg.gateway.listen;
  bound.port = port;

  gateway::node_info info{PETCHAT_VERSION, cfg.node.region, std::filesystem::absolute(data_dir).string(), bound.str(),
                          format::now_ms()};
  gateway::server_limits admin_limits = limits;
  admin_limits.max_body_bytes = std::max<std::size_t>(limits.max_body_bytes, 65536);
  gateway::http_server admin(io, admin_limits,
                             gateway::make_admin_api(users, messages, metrics, cpu_pool, info, {regions, fed.get()}),
                             "admin");
  auto admin_socket = cfg.admin_socket();
  admin.listen_unix(admin_socket);

  asio::steady_timer drain_timer(io);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int signo) {
    if (ec) return;
    log->info("signal {}: stopping (finishing requests in flight)", signo);
    *stopping = true;
    drain_timer.cancel();
    chat.shutdown();
    admin.shutdown();
    wait_for_drain(drain_timer, {&chat, &admin}, std::chrono::steady_clock::now() + shutdown_grace, io);
  });

  chat.start();
  admin.start();
  if (fed) fed->start();
  asio::co_spawn(io,
                 sweep_expired_messages(messages, manager,
                                        std::chrono::milliseconds(cfg.messages.expiry_sweep_interval_ms), stopping),
                 asio::detached);
  log->info("chat gateway on http://{}, admin on unix:{}, {} I/O threads", bound.str(), admin_socket.string(), threads);
  std::printf(
      "petchat-node ready: region %s, chat on http://%s, admin on unix:%s\n"
      "  register a user:  curl -X POST http://%s/v1/users -H 'Content-Type: application/json' "
      "-d '{\"name\":\"alice\",\"password\":\"correct horse\"}'\n"
      "  or as admin:      petchatctl --socket %s users add alice\n",
      cfg.node.region.c_str(), bound.str().c_str(), admin_socket.c_str(), bound.str().c_str(), admin_socket.c_str());
  std::fflush(stdout);

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&io] { io.run(); });
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
  CLI::App app{"petchat-node: one region's petchat messenger node"};
  std::string config_path, check_path;
  config::overrides o;
  bool version = false, init = false;
  app.add_option("--config", config_path, "TOML config file (default: /etc/petchat/node.toml if it exists)");
  app.add_option("--check-config", check_path, "validate a config file and exit");
  app.add_option("--region", o.region, "region name (node.region)");
  app.add_option("--data-dir", o.data_dir, "data directory (node.data_dir)");
  app.add_option("--listen", o.listen, "chat gateway address host:port (gateway.listen)");
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
    for (auto const& e : loaded.errors) std::cerr << "petchat-node: " << e << "\n";
    return 2;
  }
  auto const& cfg = loaded.config;
  log::setup(cfg.log.format, cfg.log.level);
  if (init) {
    try {
      identity::prepare_data_dir(cfg.node.data_dir);
      std::cout << identity::load_or_create(cfg.node.data_dir).public_key_hex() << "\n";
      return 0;
    } catch (std::exception const& e) {
      std::cerr << "petchat-node: " << e.what() << "\n";
      return 1;
    }
  }
  try {
    return run(cfg, source, salvage);
  } catch (std::exception const& e) {
    log::get("node")->critical("cannot start: {}", e.what());
    return 1;
  }
}
