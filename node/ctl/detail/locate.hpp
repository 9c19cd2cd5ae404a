// Where petchatctl finds the node's admin socket when not told exactly.
#pragma once

#include <string>

namespace petchat::ctl::detail {

struct located {
  std::string socket;
  std::string how;    // for the "not running" message: where the path came from
  std::string error;  // a config that could not be read: said, not ignored
};

// In this order: --socket; <--data-dir>/admin.sock; the config named by --config (its
// admin.socket, or <node.data_dir>/admin.sock, as the node would use them), or else
// /etc/petchat/node.toml if it exists and names an absolute path that way;
// /run/petchat/admin.sock or /var/lib/petchat/admin.sock (the packaged unit's data dir) if
// it exists; ./data/admin.sock (where `scripts/run-node` keeps it), if it is the caller's
// own (else an error: a socket someone else left in the working directory is not trusted).
located locate_socket(std::string const& socket, std::string const& data_dir, std::string const& config_path);

}  // namespace petchat::ctl::detail
