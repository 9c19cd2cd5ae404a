// Finding the node's admin socket (see detail/locate.hpp).
#include "node/ctl/detail/locate.hpp"

#include <filesystem>

#include "node/config/config.hpp"

namespace petchat::ctl::detail {

namespace {

constexpr char const* default_config = "/etc/petchat/node.toml";
constexpr char const* packaged_socket = "/run/petchat/admin.sock";

}  // namespace

located locate_socket(std::string const& socket, std::string const& data_dir, std::string const& config_path) {
  if (!socket.empty()) return {socket, "--socket", ""};
  if (!data_dir.empty()) return {(std::filesystem::path(data_dir) / "admin.sock").string(), "--data-dir", ""};
  std::error_code ec;
  std::string path = config_path;
  if (path.empty() && std::filesystem::exists(default_config, ec)) path = default_config;
  if (!path.empty()) {
    auto loaded = config::load_file(path);
    if (loaded.ok()) return {loaded.config.admin_socket().string(), "the config " + path, ""};
    std::string why = loaded.errors.empty() ? "unreadable" : loaded.errors.front();
    if (!config_path.empty()) return {"", "", path + ": " + why};
  }
  if (std::filesystem::exists(packaged_socket, ec)) return {packaged_socket, packaged_socket, ""};
  return {"./data/admin.sock", "the default data dir ./data", ""};
}

}  // namespace petchat::ctl::detail
