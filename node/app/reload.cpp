// Reloading the configuration (see reload.hpp).
#include "node/app/reload.hpp"

#include "node/app/startup.hpp"
#include "node/log/log.hpp"

namespace petchat::app {

reloader::reloader(std::string path, config::overrides overrides, config::node_config running)
    : path_(std::move(path)), overrides_(std::move(overrides)), running_(std::move(running)) {}

void reloader::set_directory(federation::directory* regions) {
  std::lock_guard lock(mutex_);
  regions_ = regions;
}

void reloader::set_tls(tls::server_credentials* credentials) {
  std::lock_guard lock(mutex_);
  tls_ = credentials;
}

reloader::outcome reloader::reload() {
  std::lock_guard lock(mutex_);
  auto log = log::get("node");
  outcome out;
  if (path_.empty()) {
    out.errors.push_back("the node was started without a config file: there is nothing to reload");
    log->warn("reload: {}", out.errors.front());
    return out;
  }
  auto loaded = config::load_file(path_);
  config::apply(overrides_, loaded.config, loaded.errors);
  if (!loaded.ok()) {
    out.errors = loaded.errors;
    for (auto const& e : out.errors) log->error("reload refused, nothing changed: {}", e);
    return out;
  }
  auto const& next = loaded.config;
  // The certificate is loaded before anything is applied: files that do not load refuse
  // the whole reload, and the running certificate stays.
  bool tls_stays_on = tls_ && !next.gateway.tls_cert_file.empty();
  tls::loaded certificate;
  if (tls_stays_on) {
    certificate = tls::load(next.gateway.tls_cert_file, next.gateway.tls_key_file);
    // One expired or not valid yet (a renewal hook that installed a stale file) would fail
    // every new connection: the running certificate stays, if it is valid itself (else a
    // reload that changes something else must not be refused for it).
    if (certificate.context && !certificate.valid_now && tls_->valid_now())
      certificate.error = "certificate " + next.gateway.tls_cert_file + " is not valid now (" + certificate.summary +
                          "); the running certificate stays";
    if (!certificate.context || !certificate.error.empty()) {
      out.errors.push_back("gateway.tls_cert_file, gateway.tls_key_file: " + certificate.error);
      for (auto const& e : out.errors) log->error("reload refused, nothing changed: {}", e);
      return out;
    }
  }
  // Against the level in force, not the file's last one: a reload undoes a
  // `petchatctl log-level` set meanwhile, as the docs say.
  if (auto now = log::current_level(); next.log.level != now) {
    log::set_level(next.log.level);
    out.applied.push_back("log.level: " + now + " -> " + next.log.level);
  }
  running_.log.level = next.log.level;
  // The directory is taken only from a file that still federates through the same NATS: one
  // read half-written (an editor saving in place) or emptied must not drop every region of a
  // running link. Otherwise [federation] waits for a restart, as a whole.
  if (regions_ && next.federation.regions != running_.federation.regions &&
      next.federation.nats_urls == running_.federation.nats_urls) {
    auto names = [](std::vector<federation::region_entry> const& list) {
      std::string out;
      for (auto const& r : list) out += (out.empty() ? "" : ", ") + r.name + "/" + std::to_string(r.keys.size());
      return out.empty() ? std::string("none") : out;
    };
    regions_->replace(next.federation);
    for (auto const& clash : region_clashes(next)) log::get("node")->warn("{}", clash);
    out.applied.push_back("federation.regions (region/keys): " + names(running_.federation.regions) + " -> " +
                          names(next.federation.regions));
    running_.federation.regions = next.federation.regions;
  }
  if (tls_stays_on) {
    auto summary = certificate.summary;
    if (!certificate.valid_now)  // taken only because the running one is not valid either
      log->error("reload: the new gateway TLS certificate is not valid now either ({}): clients refuse it", summary);
    tls_->replace(std::move(certificate));
    out.applied.push_back("gateway TLS certificate " + next.gateway.tls_cert_file + ": " + summary);
    running_.gateway.tls_cert_file = next.gateway.tls_cert_file;
    running_.gateway.tls_key_file = next.gateway.tls_key_file;
  }
  auto differs = [&](bool changed, char const* section) {
    if (changed) out.needs_restart.push_back(section);
  };
  differs(next.node != running_.node, "[node]");
  differs(next.gateway != running_.gateway, "[gateway]");
  differs(next.metrics != running_.metrics, "[metrics]");
  differs(next.admin != running_.admin, "[admin]");
  differs(next.users != running_.users, "[users]");
  differs(next.store != running_.store, "[store]");
  differs(next.messages != running_.messages, "[messages]");
  differs(next.assets != running_.assets, "[assets]");
  differs(next.push != running_.push, "[push]");
  differs(next.web != running_.web, "[web]");
  differs(next.log.format != running_.log.format, "[log] format");
  differs(next.federation != running_.federation, "[federation]");
  for (auto const& a : out.applied) log->info("reload: applied {}", a);
  if (out.applied.empty()) log->info("reload: {} read again; nothing to apply", path_);
  for (auto const& s : out.needs_restart)
    log->warn("reload: {} changed in {}, and takes effect only after a restart", s, path_);
  return out;
}

}  // namespace petchat::app
