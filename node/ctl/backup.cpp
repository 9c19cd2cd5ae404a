#include "node/ctl/detail/backup.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <vector>

#include "base/ids/ids.hpp"
#include "node/ctl/detail/backup_files.hpp"
#include "node/ctl/detail/print.hpp"

namespace petchat::ctl::detail {
namespace {

namespace fs = std::filesystem;

constexpr int manifest_version = 1;
constexpr char manifest_name[] = "manifest.json";
// In a restore's target until the last file is durable: the node refuses to start on it.
constexpr char restoring_marker[] = "RESTORE-INCOMPLETE";
constexpr char restored_marker[] = "RESTORED-FROM-BACKUP";          // node/identity/identity.hpp
constexpr char restored_mailboxes_marker[] = "RESTORED-MAILBOXES";  // node/identity/identity.hpp

// The manifest's text, read as the backup's files are: a regular file, not through a link
// (a FIFO planted in its place must not hang a root verify or restore).
std::optional<std::string> manifest_text(fs::path const& dir, std::string& error) {
  act_as_root();
  int fd = open_beneath(dir, manifest_name);
  act_as_writer();
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    error = (dir / manifest_name).string() + (fd < 0 && errno == ENOENT
                                                  ? " is missing: not a petchat backup, or one that was interrupted"
                                                  : " is not a regular file: not a petchat backup");
    if (fd >= 0) ::close(fd);
    return std::nullopt;
  }
  // A manifest lists the files of a data dir: far below this. A larger one (a sparse file of
  // a terabyte costs nothing to make) is not read into memory.
  constexpr std::size_t max_manifest = 64u << 20;
  if (static_cast<std::uint64_t>(st.st_size) > max_manifest) {
    error = (dir / manifest_name).string() + " is larger than any petchat backup manifest (64 MiB)";
    ::close(fd);
    return std::nullopt;
  }
  std::string text;
  char buf[1 << 16];
  for (ssize_t n; text.size() <= max_manifest && (n = ::read(fd, buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = (dir / manifest_name).string() + ": " + std::strerror(errno);
      ::close(fd);
      return std::nullopt;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

std::optional<boost::json::object> read_manifest(fs::path const& dir, std::string& error) {
  auto text = manifest_text(dir, error);
  if (!text) return std::nullopt;
  boost::system::error_code ec;
  auto v = boost::json::parse(*text, ec);
  auto const* o = !ec && v.is_object() ? &v.as_object() : nullptr;
  auto const* files = o ? o->if_contains("files") : nullptr;
  auto const* version = o ? o->if_contains("petchat_backup") : nullptr;
  if (!files || !files->is_array() || !version || !version->is_int64()) {
    error = (dir / manifest_name).string() + " is damaged (not a petchat backup manifest)";
    return std::nullopt;
  }
  if (version->as_int64() > manifest_version) {
    error = "the backup's manifest is of version " + std::to_string(version->as_int64()) +
            ", newer than this petchatctl reads (" + std::to_string(manifest_version) + ")";
    return std::nullopt;
  }
  for (char const* key : {"id", "region", "made_at"})
    if (!o->contains(key) || !o->at(key).is_string()) {
      error = (dir / manifest_name).string() + " is damaged (no " + key + ")";
      return std::nullopt;
    }
  // The region is printed in the command to start the node on a restore: a name, nothing a
  // shell would take for more.
  if (!petchat::ids::is_valid_name(o->at("region").as_string())) {
    error = (dir / manifest_name).string() + " is damaged (its region is not a region name)";
    return std::nullopt;
  }
  for (auto const& f : files->as_array()) {
    auto const* fo = f.if_object();
    auto const* size = fo ? fo->if_contains("size") : nullptr;
    bool whole = size && (size->is_uint64() || (size->is_int64() && size->as_int64() >= 0));
    if (!fo || !fo->contains("path") || !fo->at("path").is_string() || !whole || !fo->contains("blake2b") ||
        !fo->at("blake2b").is_string() || !safe_relative(std::string(fo->at("path").as_string()))) {
      error = (dir / manifest_name).string() + " is damaged (a file entry without a safe path, a size and blake2b)";
      return std::nullopt;
    }
  }
  // What every data dir has: without it a restore would "succeed" into a node that starts
  // with no accounts, no messages, or a new region key.
  for (char const* needed : {"region.key", "users/data.mdb", "messages/CURRENT"}) {
    auto const& list = files->as_array();
    if (std::none_of(list.begin(), list.end(), [&](auto const& f) { return f.at("path").as_string() == needed; })) {
      error = (dir / manifest_name).string() + " is damaged (it lists no " + needed + ": not a whole data dir)";
      return std::nullopt;
    }
  }
  return v.as_object();
}

// Checks (and, with `into`, copies) every file of the backup. Problems are printed.
bool check_files(fs::path const& dir, boost::json::object const& manifest, fs::path const& into, char const* verb,
                 bool quiet, std::uint64_t& bytes) {
  progress bar;
  bar.verb = verb;
  auto const& files = manifest.at("files").as_array();
  for (auto const& f : files) bar.total += f.at("size").to_number<std::uint64_t>();
  std::set<std::string> listed{manifest_name};
  bool ok = true;
  for (auto const& f : files) {
    std::string path(f.at("path").as_string());
    listed.insert(path);
    fs::path target;
    if (!into.empty()) {
      target = into / path;
      std::error_code ec;
      fs::create_directories(target.parent_path(), ec);
    }
    std::string error;
    auto c = copy_hashing(dir, path, target, bar, error, std::nullopt, f.at("size").to_number<std::uint64_t>());
    bool good = c && c->size == f.at("size").to_number<std::uint64_t>() && c->blake2b == f.at("blake2b").as_string();
    if (!good) {
      bar.end();
      if (!quiet)
        std::cout << "damaged: " << for_terminal(path) << " ("
                  << (c ? "its size or BLAKE2b hash differs from the manifest" : for_terminal(error)) << ")\n";
      ok = false;
      if (!into.empty()) break;  // a restore stops at the first bad file
    }
    bytes += c ? c->size : 0;
  }
  bar.end();
  if (into.empty()) {
    std::error_code ec;
    // Every entry but directories, links included, by its own name (never resolved).
    for (auto const& e : fs::recursive_directory_iterator(dir, ec)) {
      auto name = e.path().lexically_relative(dir).generic_string();
      if (!e.is_symlink() && e.is_directory()) continue;
      if (!listed.count(name)) {
        if (!quiet) std::cout << "unexpected: " << for_terminal(name) << " (not in the manifest)\n";
        ok = false;
      }
    }
  }
  return ok;
}

// Every directory of `dir` (with `all`; else `dir` alone) and `dir`'s own entry in its
// parent made durable; false with `error` if one could not be.
bool synced_tree(fs::path const& dir, std::string& error, bool all = true) {
  std::vector<fs::path> dirs;
  if (all)
    for (auto const& e : fs::recursive_directory_iterator(dir))
      if (e.is_directory()) dirs.push_back(e.path());
  dirs.push_back(dir);
  for (auto const& d : dirs)
    if (!fsync_path(d)) {
      error = d.string() + ": fsync: " + std::strerror(errno);
      return false;
    }
  // The parent may be root's and closed to the restore's writer: synced as root. One this
  // user may not read, or a file system that cannot sync a directory, is left as it is
  // (as before 2026-12-05: only a failure to write counts).
  act_as_root();
  bool parent = fsync_path(dir.parent_path().empty() ? fs::path(".") : dir.parent_path());
  int saved = errno;
  act_as_writer();
  if (parent || saved == EACCES || saved == EPERM || saved == EINVAL) return true;
  error = dir.parent_path().string() + ": fsync: " + std::strerror(saved);
  return false;
}

}  // namespace

boost::json::object copy_snapshot(boost::json::object const& snapshot, std::string const& dir_text, uid_t node_uid,
                                  std::string& error) {
  fs::path dir(dir_text);
  fs::path from(std::string(snapshot.at("dir").as_string()));
  if (!fresh_dir(dir_text, error)) return {};
  progress bar;
  bar.verb = "copying";
  auto const& files = snapshot.at("files").as_array();
  for (auto const& f : files) bar.total += f.at("size").to_number<std::uint64_t>();
  boost::json::array listed;
  std::uint64_t bytes = 0;
  for (auto const& f : files) {
    std::string path(f.at("path").as_string());
    if (!safe_relative(path)) {
      error = "the node named an unsafe path: " + path;
      return {};
    }
    std::error_code ec;
    fs::create_directories((dir / path).parent_path(), ec);
    fs::permissions((dir / path).parent_path(), fs::perms::owner_all, fs::perm_options::replace, ec);
    auto c = copy_hashing(from, path, dir / path, bar, error, node_uid, f.at("size").to_number<std::uint64_t>());
    if (!c) return {};
    bytes += c->size;
    listed.push_back(boost::json::object{{"path", path}, {"size", c->size}, {"blake2b", c->blake2b}});
  }
  bar.end();
  if (!synced_tree(dir, error)) return {};
  boost::json::object manifest{{"petchat_backup", manifest_version},
                               {"id", snapshot.at("id")},
                               {"region", snapshot.at("region")},
                               {"data_format", snapshot.at("data_format")},
                               {"node_version", snapshot.at("node_version")},
                               {"made_at", snapshot.at("made_at")},
                               {"bytes", bytes},
                               {"files", std::move(listed)}};
  {
    auto tmp = dir / (std::string(manifest_name) + ".tmp");
    ::close(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));  // private, as the files
    std::ofstream out(tmp, std::ios::trunc);
    out << boost::json::serialize(manifest) << "\n";
    out.close();
    if (!out) {
      error = tmp.string() + ": cannot write";
      return {};
    }
    if (!fsync_path(tmp)) {
      error = tmp.string() + ": fsync: " + std::strerror(errno);
      return {};
    }
    fs::rename(tmp, dir / manifest_name);
    if (!fsync_path(dir)) {
      error = dir.string() + ": fsync: " + std::strerror(errno) + " (the manifest may not be durable)";
      return {};
    }
  }
  return manifest;
}

bool verify_backup(std::string const& dir_text, bool as_json) {
  fs::path dir(dir_text);
  std::string error;
  auto manifest = read_manifest(dir, error);
  std::uint64_t bytes = 0;
  bool ok = manifest && check_files(dir, *manifest, {}, "verifying", as_json, bytes);
  if (as_json) {
    boost::json::object o{{"ok", ok}, {"bytes", bytes}};
    if (manifest) o["id"] = manifest->at("id"), o["region"] = manifest->at("region");
    if (!error.empty()) o["error"] = error;
    std::cout << boost::json::serialize(o) << "\n";
  } else if (!manifest) {
    std::cerr << "petchatctl: " << error << "\n";
  } else {
    std::cout << (ok ? "ok: " : "DAMAGED: ") << "backup " << field(*manifest, "id") << " of region "
              << field(*manifest, "region") << " made " << field(*manifest, "made_at") << ": "
              << manifest->at("files").as_array().size() << " files, " << size_text(bytes)
              << (ok ? " match the manifest" : " read; see above") << "\n";
  }
  return ok;
}

bool restore_backup(std::string const& dir_text, std::string const& data_dir_text, bool as_json) {
  fs::path dir(dir_text), data_dir(data_dir_text);
  std::string error;
  auto manifest = read_manifest(dir, error);
  if (!manifest) {
    std::cerr << "petchatctl: " << error << "\n";
    return false;
  }
  // Root restoring into a directory the operator prepared for the node (install -d -o petchat
  // -m 0700 ...) writes as its owner: the files are the node's from the start, and nothing
  // that user plants there can make root write elsewhere. The backup is read as root.
  struct stat prepared {};
  bool existed = ::lstat(data_dir.c_str(), &prepared) == 0;
  if (existed && S_ISDIR(prepared.st_mode) && ::geteuid() == 0 && prepared.st_uid != 0) {
    if (::setgroups(0, nullptr) != 0) {
      std::cerr << "petchatctl: setgroups: " << std::strerror(errno) << "\n";
      return false;
    }
    writer = ids{prepared.st_uid, prepared.st_gid};
    act_as_writer();
  }
  if (!fresh_dir(data_dir_text, error)) {
    std::cerr << "petchatctl: " << error << " (restore never overwrites a data dir)\n";
    return false;
  }
  // The marker first: a restore cut short (Ctrl-C, a crash) leaves a data dir the node
  // refuses, not one missing its accounts that it would start on.
  {
    int marker = ::open((data_dir / restoring_marker).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (marker < 0 || ::fsync(marker) != 0) {
      std::cerr << "petchatctl: " << (data_dir / restoring_marker).string() << ": " << std::strerror(errno) << "\n";
      if (marker >= 0) ::close(marker);
      return false;
    }
    ::close(marker);
    if (!fsync_path(data_dir)) {
      std::cerr << "petchatctl: " << data_dir.string() << ": fsync: " << std::strerror(errno) << "\n";
      return false;
    }
  }
  std::uint64_t bytes = 0;
  if (!check_files(dir, *manifest, data_dir, "restoring", as_json, bytes)) {
    std::cerr << "petchatctl: " << (interrupted ? "interrupted" : "the backup does not match its manifest")
              << "; nothing restored (" << data_dir.string() << " emptied)\n";
    // Everything but the marker, then the marker: a crash meanwhile leaves a data dir the
    // node still refuses, never a half-emptied one it would start on.
    for (auto const& e : fs::directory_iterator(data_dir))
      if (e.path().filename() != restoring_marker) fs::remove_all(e.path());
    (void)fsync_path(data_dir);  // failing, the marker stays: the node refuses the dir
    ::unlink((data_dir / restoring_marker).c_str());
    (void)fsync_path(data_dir);
    return false;
  }
  ::chmod(data_dir.c_str(), 0700);  // private like a data dir the node made
  for (auto const& e : fs::recursive_directory_iterator(data_dir))
    ::chmod(e.path().c_str(), e.is_directory() ? 0700 : 0600);
  if (!synced_tree(data_dir, error)) {
    std::cerr << "petchatctl: " << error << "; restore again into an empty directory\n";
    return false;
  }
  // Tells the node that this store went back in time (identity.hpp): its first start moves
  // every mailbox head ahead (by how long ago the backup was made: the marker says when),
  // its first federated start its lanes to a new epoch.
  for (char const* name : {restored_marker, restored_mailboxes_marker}) {
    int marker = ::open((data_dir / name).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    std::string text = name == restored_mailboxes_marker ? std::string(manifest->at("made_at").as_string()) + "\n" : "";
    bool written = marker >= 0 && ::write(marker, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    if (!written || ::fsync(marker) != 0) {
      std::cerr << "petchatctl: " << (data_dir / name).string() << ": " << std::strerror(errno) << "\n";
      if (marker >= 0) ::close(marker);
      return false;
    }
    ::close(marker);
  }
  ::unlink((data_dir / restoring_marker).c_str());
  if (!synced_tree(data_dir, error, false)) {
    std::cerr << "petchatctl: every file is restored, but " << error
              << ": a crash now could bring back the restore's marker (the node would then refuse the "
                 "directory: restore again)\n";
    return false;
  }
  if (as_json) {
    std::cout << boost::json::serialize(boost::json::object{{"restored", true},
                                                            {"id", manifest->at("id")},
                                                            {"region", manifest->at("region")},
                                                            {"bytes", bytes}})
              << "\n";
  } else {
    auto region = field(*manifest, "region");  // as a terminal may show it
    std::cout << "restored backup " << field(*manifest, "id") << " of region " << region << " (made "
              << field(*manifest, "made_at") << ") into " << data_dir.string() << ": "
              << manifest->at("files").as_array().size() << " files, " << size_text(bytes) << "\n"
              << "start the node on it: petchat-node --data-dir " << data_dir.string() << " --region " << region << "\n"
              << "a federated region: read docs/OPERATIONS.md, \"Restoring a federated region\", first\n";
    if (!existed && ::geteuid() == 0)
      std::cout << "the files belong to root: for the packaged node, chown -R petchat:petchat " << data_dir.string()
                << "\n";
  }
  return true;
}

}  // namespace petchat::ctl::detail