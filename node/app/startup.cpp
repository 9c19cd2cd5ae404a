// Start-up checks (see startup.hpp).
#include "node/app/startup.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/system/system_error.hpp>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "node/identity/identity.hpp"
#include "node/log/log.hpp"
#include "node/tls/tls.hpp"
#include "store/rocks/rocks.hpp"

namespace petchat::app {

// A listen address's host as an IP address: a literal as it is, a name ("localhost")
// resolved now. Empty when it does not resolve (`why` says why).
std::string listen_ip(std::string const& host, std::string& why) {
  addrinfo hints{};
  hints.ai_flags = AI_PASSIVE | AI_ADDRCONFIG;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || !found) {
    why = rc != 0 ? ::gai_strerror(rc) : "no address";
    return "";
  }
  // IPv4 first: "localhost" should listen where http://127.0.0.1 reaches, not on ::1 alone.
  addrinfo const* pick = found;
  for (auto const* a = found; a; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  char text[INET6_ADDRSTRLEN] = {};
  void const* bytes = pick->ai_family == AF_INET6
                          ? static_cast<void const*>(&reinterpret_cast<sockaddr_in6*>(pick->ai_addr)->sin6_addr)
                          : static_cast<void const*>(&reinterpret_cast<sockaddr_in*>(pick->ai_addr)->sin_addr);
  ::inet_ntop(pick->ai_family, bytes, text, sizeof text);
  ::freeaddrinfo(found);
  return text;
}

// What the config's syntax cannot say but would stop the node at start: listen hosts
// that do not resolve, files it names that cannot be read.
std::vector<std::string> start_problems(config::node_config const& c) {
  std::vector<std::string> out;
  auto host = [&](char const* key, config::listen_address const& a) {
    std::string why;
    if (listen_ip(a.host, why).empty()) out.push_back(std::string(key) + " = \"" + a.str() + "\": " + why);
  };
  host("gateway.listen", c.gateway.listen);
  if (c.metrics.listen) host("metrics.listen", *c.metrics.listen);
  auto readable = [&](char const* key, std::string const& path) {
    if (!path.empty() && ::access(path.c_str(), R_OK) != 0)
      out.push_back(std::string(key) + " = \"" + path + "\": " + std::strerror(errno));
  };
  if (c.push.enabled) readable("push.ca_file", c.push.ca_file);
  if (c.federation.enabled()) {
    readable("federation.credentials_file", c.federation.credentials_file);
    readable("federation.nkey_seed_file", c.federation.nkey_seed_file);
    readable("federation.tls_ca_file", c.federation.tls_ca_file);
    readable("federation.tls_cert_file", c.federation.tls_cert_file);
    readable("federation.tls_key_file", c.federation.tls_key_file);
  }
  if (!c.gateway.tls_cert_file.empty()) {
    auto l = tls::load(c.gateway.tls_cert_file, c.gateway.tls_key_file);
    if (!l.context) out.push_back("gateway.tls_cert_file, gateway.tls_key_file: " + l.error);
  }
  if (c.web.enabled && !c.web.root.empty()) readable("web.root", c.web.root);
  if (auto why = admin_socket_problem(c)) out.push_back(*why);
  return out;
}

std::optional<std::string> admin_socket_problem(config::node_config const& c) {
  if (!c.admin.socket.empty()) {
    // In a directory other users may write to (/tmp, even with its sticky bit), any of them
    // could put a socket of their own at this path first, and petchatctl would hand them
    // the passwords it sends. (The data dir, the default one's, is checked at start.)
    auto const& path = c.admin.socket;
    auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
    struct stat ds {};
    if (::stat(dir.c_str(), &ds) == 0 &&
        ((ds.st_mode & (S_IWGRP | S_IWOTH)) != 0 || (ds.st_uid != 0 && ds.st_uid != ::geteuid())))
      return "admin.socket = \"" + path.string() + "\": its directory " + dir.string() +
             " may be written by other users, who could put a socket of their own there; put the socket in a "
             "directory only the node's user (or root) may write to, such as the data dir or /run/petchat";
    return std::nullopt;
  }
  // A Unix socket's path holds at most 107 bytes; admin.socket itself is checked when the
  // config is read, the default one under the data dir here.
  if (c.admin_socket().string().size() <= 100) return std::nullopt;
  return "node.data_dir = \"" + c.node.data_dir.string() + "\": the admin socket under it (" +
         c.admin_socket().string() + ") would be longer than 100 bytes; set admin.socket to a shorter path";
}

// Listens on a configured address; a failure names the key and the address, and says
// what went wrong in words (not with the library's source location).
std::uint16_t listen_on(gateway::http_server& server, config::listen_address address, char const* key) {
  std::string why, ip = listen_ip(address.host, why);
  if (ip.empty()) throw std::runtime_error(std::string(key) + " = \"" + address.str() + "\": " + why);
  address.host = ip;
  try {
    return server.listen_tcp(address);
  } catch (boost::system::system_error const& e) {
    throw std::runtime_error(std::string(key) + " = \"" + address.str() + "\": " + e.code().message());
  }
}

std::unique_ptr<messages::message_service> open_message_store(config::node_config const& cfg,
                                                              users::user_service& users, bool salvage) {
  auto const& data_dir = cfg.node.data_dir;
  auto log = log::get("node");
  // Restored or salvaged, the store went back in time: its heads jump (after_salvage), its
  // lanes take a new epoch at the first federated start (the marker first: a crash after it).
  bool restored = identity::restored_mailboxes(data_dir);
  std::int64_t backup_time = restored ? identity::restored_backup_time_ms(data_dir) : 0;
  auto open = [&](bool went_back) {
    auto store = std::make_unique<messages::message_service>(cfg.messages, cfg.node.region, data_dir, users,
                                                             cfg.store.sync, went_back, backup_time);
    if (restored) identity::forget_restored_mailboxes(data_dir);
    return store;
  };
  try {
    // --salvage-messages acts only on a store that is damaged: left in a unit file, it must
    // not move every mailbox ahead (and every lane to a new epoch) at each start.
    try {
      auto store = open(restored);
      if (salvage)
        log->warn("--salvage-messages: the message store is not damaged, nothing was salvaged; remove the flag");
      return store;
    } catch (store::damage_error const& e) {
      if (!salvage) throw;
      log->warn("{}: salvaging it (--salvage-messages)", e.what());
    }
    identity::mark_restored(data_dir);  // the heads jump at the next start should this one stop
    restored = true;
    return open(true);
  } catch (store::damage_error const& e) {
    // Replaying up to the damage would drop acknowledged messages and hand their seqs out
    // again: the operator decides (docs/PROTOCOL.md, petchatctl: "A damaged message store").
    log->critical("{}", e.what());
    log->critical(
        "restore {} from a backup, or start once with --salvage-messages to keep what precedes the damage "
        "(what follows it is lost; mailbox seqs jump ahead so none is reused)",
        (data_dir / "messages").string());
    return nullptr;
  }
}

std::vector<std::string> region_clashes(config::node_config const& c) {
  std::vector<std::string> names{c.node.region};
  for (auto const& r : c.federation.regions) names.push_back(r.name);
  std::vector<std::string> out;
  for (auto const& [a, b] : messages::region_hash_clashes(names))
    out.push_back("regions '" + a + "' and '" + b + "' share the 16-bit hash message ids carry to name their " +
                  "region: either could make ids of the other's messages (renaming one avoids it)");
  return out;
}

}  // namespace petchat::app
