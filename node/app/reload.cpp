// Reloading the configuration (see reload.hpp).
#include "node/app/reload.hpp"

#include "node/log/log.hpp"

namespace petchat::app {

reloader::reloader(std::string path, config::overrides overrides, config::node_config running)
    : path_(std::move(path)), overrides_(std::move(overrides)), running_(std::move(running)) {}

void reloader::set_directory(federation::directory* regions) {
  std::lock_guard lock(mutex_);
  regions_ = regions;
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
  if (next.log.level != running_.log.level) {
    log::set_level(next.log.level);
    out.applied.push_back("log.level: " + running_.log.level + " -> " + next.log.level);
    running_.log.level = next.log.level;
  }
  if (regions_ && next.federation.regions != running_.federation.regions) {
    auto names = [](std::vector<federation::region_entry> const& list) {
      std::string out;
      for (auto const& r : list) out += (out.empty() ? "" : ", ") + r.name + "/" + std::to_string(r.keys.size());
      return out.empty() ? std::string("none") : out;
    };
    regions_->replace(next.federation);
    out.applied.push_back("federation.regions (region/keys): " + names(running_.federation.regions) + " -> " +
                          names(next.federation.regions));
    running_.federation.regions = next.federation.regions;
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
