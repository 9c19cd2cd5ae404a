// Finding the node's admin socket (see detail/locate.hpp).
#include "node/ctl/detail/locate.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "node/config/config.hpp"

namespace petchat::ctl::detail {

namespace {

constexpr char const* default_config = "/etc/petchat/node.toml";
constexpr char const* run_socket = "/run/petchat/admin.sock";
constexpr char const* packaged_socket = "/var/lib/petchat/admin.sock";  // the unit's StateDirectory

}  // namespace

located locate_socket(std::string const& socket, std::string const& data_dir, std::string const& config_path) {
  if (!socket.empty()) return {socket, "--socket", ""};
  if (!data_dir.empty()) return {(std::filesystem::path(data_dir) / "admin.sock").string(), "--data-dir", ""};
  std::error_code ec;
  std::string path = config_path;
  if (path.empty() && std::filesystem::exists(default_config, ec)) path = default_config;
  if (!path.empty()) {
    auto loaded = config::load_file(path);
    auto socket_path = loaded.config.admin_socket();
    // A relative data dir is relative to where the node runs, which only --config vouches
    // for: the packaged unit gives the node its data dir on the command line instead.
    if (loaded.ok() && (!config_path.empty() || socket_path.is_absolute()))
      return {socket_path.string(), "the config " + path, ""};
    std::string why = loaded.errors.empty() ? "unreadable" : loaded.errors.front();
    if (!config_path.empty()) return {"", "", path + ": " + why};
  }
  for (auto const* candidate : {run_socket, packaged_socket})
    if (std::filesystem::exists(candidate, ec)) return {candidate, candidate, ""};
  // Where this is run: anyone who can write here could have left a socket that takes the
  // passwords `users add` sends. Only one of the caller's own is used unasked.
  // And only in a ./data of the caller's that no one else can write: else another user
  // could put one there between this check and the connection.
  std::string fallback = "./data/admin.sock";
  struct stat dir {};
  if (::lstat("./data", &dir) == 0 &&
      (!S_ISDIR(dir.st_mode) || dir.st_uid != ::geteuid() || (dir.st_mode & (S_IWGRP | S_IWOTH)) != 0))
    return {"", "",
            "./data is not a directory of this user's that only they can write: its admin.sock is not used unless "
            "named with --socket or --data-dir"};
  struct stat st {};
  if (::lstat(fallback.c_str(), &st) == 0 && st.st_uid != ::geteuid())
    return {"", "",
            fallback + " belongs to another user (uid " + std::to_string(st.st_uid) +
                "): not used unless named with --socket or --data-dir"};
  return {fallback, "the default data dir ./data", ""};
}

}  // namespace petchat::ctl::detail
