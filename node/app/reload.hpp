// Reloading the configuration without a restart (SIGHUP, `petchatctl reload`): the file
// the node was started with is read again, with the same command-line overrides. What can
// change on the fly is applied (log.level; the other regions of the federation's
// directory, [[federation.regions]]; the gateway's TLS certificate and key, read again even
// when their paths are unchanged, as after a renewal); what cannot is named, for a restart.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "federation/federation.hpp"
#include "node/config/config.hpp"
#include "node/tls/tls.hpp"

namespace petchat::app {

class reloader {
 public:
  // `path` empty: the node runs on built-in defaults, and there is nothing to reload.
  reloader(std::string path, config::overrides overrides, config::node_config running);

  struct outcome {
    std::vector<std::string> errors;         // the file does not load: nothing changed
    std::vector<std::string> applied;        // "log.level: info -> debug"
    std::vector<std::string> needs_restart;  // sections that differ from what runs: "[gateway]"
  };
  // Reads, compares, applies and logs. Any thread; one reload at a time.
  outcome reload();

  // The running federation's directory, whose other regions a reload replaces (null: the
  // node is standalone, and region changes need a restart).
  void set_directory(federation::directory* regions);

  // The gateway's TLS credentials, whose files a reload reads again (null: no TLS, and
  // turning it on needs a restart).
  void set_tls(tls::server_credentials* credentials);

 private:
  std::mutex mutex_;
  federation::directory* regions_ = nullptr;
  tls::server_credentials* tls_ = nullptr;
  std::string path_;
  config::overrides overrides_;
  config::node_config running_;
};

}  // namespace petchat::app
