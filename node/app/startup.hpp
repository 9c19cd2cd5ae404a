// Start-up checks of the node: what the config's syntax cannot say but would stop the
// node at start, listening on a configured address with errors in words, and opening the
// message store (damaged, salvaged or restored).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "node/config/config.hpp"
#include "node/gateway/gateway.hpp"
#include "node/messages/messages.hpp"
#include "node/users/users.hpp"

namespace petchat::app {

// A listen address's host as an IP address: a literal as it is, a name ("localhost")
// resolved now, IPv4 first. Empty when it does not resolve (`why` says why).
std::string listen_ip(std::string const& host, std::string& why);

// Listen hosts that do not resolve, files the config names that cannot be read: one line
// per problem, naming the key and the value (petchat-node --check-config).
std::vector<std::string> start_problems(config::node_config const& c);
// Regions of the directory (this one included) whose message ids would name them alike:
// one warning line per pair (messages::region_hash_clashes).
std::vector<std::string> region_clashes(config::node_config const& c);
// The default admin socket's path, under a long data dir, too long for a Unix socket:
// checked before the data dir is claimed and the stores opened (run refuses, exit 2).
std::optional<std::string> admin_socket_problem(config::node_config const& c);

// Listens on a configured address (resolved by listen_ip); a failure names the key and
// the address, and says what went wrong in words (not with the library's source location).
std::uint16_t listen_on(gateway::http_server& server, config::listen_address address, char const* key);

// The message store, or null (said in the log) when its files are damaged and the
// operator has not asked to salvage them. After a restore (identity's markers) or with
// `salvage`, its mailbox heads jump ahead and its lanes are marked for a new epoch.
std::unique_ptr<messages::message_service> open_message_store(config::node_config const& cfg,
                                                              users::user_service& users, bool salvage);

}  // namespace petchat::app
