#include "node/ctl/detail/backup.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>

#include "node/ctl/detail/print.hpp"

namespace petchat::ctl::detail {
namespace {

namespace fs = std::filesystem;
using clock = std::chrono::steady_clock;

constexpr int manifest_version = 1;
constexpr char manifest_name[] = "manifest.json";
// In a restore's target until the last file is durable: the node refuses to start on it.
constexpr char restoring_marker[] = "RESTORE-INCOMPLETE";
constexpr char restored_marker[] = "RESTORED-FROM-BACKUP";          // node/identity/identity.hpp
constexpr char restored_mailboxes_marker[] = "RESTORED-MAILBOXES";  // node/identity/identity.hpp

// Root restoring into a directory of the node's user writes as that user (effective ids)
// and reads the backup as root: see restore_backup.
struct ids {
  uid_t uid;
  gid_t gid;
};
std::optional<ids> writer;
void act_as_writer() {
  if (writer && (::setegid(writer->gid) != 0 || ::seteuid(writer->uid) != 0)) std::abort();  // never write as root
}
void act_as_root() {
  if (writer && (::seteuid(0) != 0 || ::setegid(0) != 0)) std::abort();
}

volatile std::sig_atomic_t interrupted = 0;  // SIGINT, SIGTERM or SIGHUP during a copy
extern "C" void on_interrupt(int) {
  interrupted = 1;
}

std::string hex(unsigned char const* p, std::size_t n) {
  std::string out(n * 2, '0');
  sodium_bin2hex(out.data(), out.size() + 1, p, n);
  return out;
}

}  // namespace

void stop_copies_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

std::string size_text(std::uint64_t b) {
  char const* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  std::ostringstream o;
  o.precision(u == 0 ? 0 : 1);
  o << std::fixed << v << " " << units[u];
  return o.str();
}

bool fresh_dir(std::string const& dir_text, std::string& error) {
  fs::path dir(dir_text);
  std::error_code ec;
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode) || !fs::is_empty(dir, ec)) {
      error = dir.string() + " exists and is not an empty directory: give a new path";
      return false;
    }
    // Another user could plant links in it while files are written there.
    if (st.st_uid != ::geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
      error = dir.string() + " belongs to another user, or others may write to it";
      return false;
    }
    return true;
  }
  if (::mkdir(dir.c_str(), 0700) != 0) {
    error = dir.string() + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

namespace {

// A manifest's or the node's relative path, safe to join under a directory: no absolute
// path, no "..", no empty or "." segment (a hostile manifest must not write elsewhere).
bool safe_relative(std::string const& p) {
  if (p.empty() || p.front() == '/' || p.size() > 4096) return false;
  std::size_t start = 0;
  while (start <= p.size()) {
    auto end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    auto seg = p.substr(start, end - start);
    if (seg.empty() || seg == "." || seg == "..") return false;
    start = end + 1;
  }
  return true;
}

// Progress on a terminal: one line, redrawn at most every 100 ms.
struct progress {
  std::uint64_t total = 0, done = 0;
  bool on = ::isatty(STDERR_FILENO) != 0;
  clock::time_point last{};
  char const* verb;
  void add(std::uint64_t n) {
    done += n;
    if (!on || clock::now() - last < std::chrono::milliseconds(100)) return;
    last = clock::now();
    int pct = total ? static_cast<int>(done * 100 / total) : 100;
    std::string bar(30, ' ');
    for (int i = 0; i < pct * 30 / 100; ++i) bar[i] = '#';
    std::cerr << "\r" << verb << " [" << bar << "] " << pct << "% " << size_text(done) << " of " << size_text(total)
              << "   " << std::flush;
  }
  void end() {
    if (on) std::cerr << "\r" << std::string(79, ' ') << "\r" << std::flush;
  }
};

void fsync_path(fs::path const& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Copies `from` to `to` (created, 0600, fsync'd) hashing the bytes; `to` empty: only
// hashes. Returns the hash and size, or sets `error`.
struct copied {
  std::string blake2b;
  std::uint64_t size = 0;
};
// Opens `path` (relative, no "..") inside the directory `base` without following a
// symbolic link anywhere on the way: each directory of the path is opened on its own with
// O_NOFOLLOW, then the file. (openat2's RESOLVE_NO_SYMLINKS would do it in one call, but
// not on kernels before 5.6 nor under older seccomp profiles.)
int open_beneath(fs::path const& base, std::string const& path) {
  int dir = ::open(base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  auto parts = fs::path(path);
  auto last = std::prev(parts.end());
  for (auto it = parts.begin(); dir >= 0 && it != last; ++it) {
    int next = ::openat(dir, it->c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int saved = errno;
    ::close(dir);
    errno = saved;
    dir = next;
  }
  if (dir < 0) return -1;
  int fd = ::openat(dir, last->c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  int saved = errno;
  ::close(dir);
  errno = saved;
  return fd;
}

// Only regular files are read, never through a symbolic link, whether the file or a
// directory on its way is one (a hostile backup or a compromised node must not make a root
// petchatctl read /etc/shadow, or hang on a FIFO); with `owner` set, only files of that
// user (the node's). `path` is relative to `base`.
std::optional<copied> copy_hashing(fs::path const& base, std::string const& path, fs::path const& to, progress& bar,
                                   std::string& error, std::optional<uid_t> owner = std::nullopt) {
  auto from = base / path;
  act_as_root();
  int in = open_beneath(base, path);
  act_as_writer();
  if (in < 0) {
    error = from.string() + (errno == ELOOP || errno == ENOTDIR
                                 ? std::string(": a symbolic link (or one on its way), not a regular file")
                                 : ": " + std::string(std::strerror(errno)));
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(in, &st) != 0 || !S_ISREG(st.st_mode) || (owner && st.st_uid != *owner)) {
    error = from.string() + (owner && st.st_uid != *owner ? ": not owned by the node's user" : ": not a regular file");
    ::close(in);
    return std::nullopt;
  }
  int out = -1;
  if (!to.empty() && (out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
    error = to.string() + ": " + std::strerror(errno);
    ::close(in);
    return std::nullopt;
  }
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, 32);
  std::vector<unsigned char> buf(1 << 20);
  copied c;
  for (;;) {
    if (interrupted) {
      error = "interrupted";
      break;
    }
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error = from.string() + ": " + std::strerror(errno);
    if (n <= 0) break;
    crypto_generichash_update(&state, buf.data(), static_cast<std::size_t>(n));
    for (ssize_t w = 0; out >= 0 && w < n;) {
      ssize_t m = ::write(out, buf.data() + w, static_cast<std::size_t>(n - w));
      if (m < 0 && errno == EINTR) continue;
      if (m < 0) {
        error = to.string() + ": " + std::strerror(errno);
        break;
      }
      w += m;
    }
    if (!error.empty()) break;
    c.size += static_cast<std::uint64_t>(n);
    bar.add(static_cast<std::uint64_t>(n));
  }
  ::close(in);
  if (out >= 0) {
    if (error.empty() && ::fsync(out) != 0) error = to.string() + ": fsync: " + std::strerror(errno);
    ::close(out);
  }
  if (!error.empty()) return std::nullopt;
  unsigned char hash[32];
  crypto_generichash_final(&state, hash, sizeof hash);
  c.blake2b = hex(hash, sizeof hash);
  return c;
}

std::optional<boost::json::object> read_manifest(fs::path const& dir, std::string& error) {
  std::ifstream in(dir / manifest_name);
  if (!in) {
    error = (dir / manifest_name).string() + " is missing: not a petchat backup, or one that was interrupted";
    return std::nullopt;
  }
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  auto v = boost::json::parse(text.str(), ec);
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
    auto c = copy_hashing(dir, path, target, bar, error);
    bool good = c && c->size == f.at("size").to_number<std::uint64_t>() && c->blake2b == f.at("blake2b").as_string();
    if (!good) {
      bar.end();
      if (!quiet)
        std::cout << "damaged: " << path << " (" << (c ? "its size or BLAKE2b hash differs from the manifest" : error)
                  << ")\n";
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
        if (!quiet) std::cout << "unexpected: " << name << " (not in the manifest)\n";
        ok = false;
      }
    }
  }
  return ok;
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
    auto c = copy_hashing(from, path, dir / path, bar, error, node_uid);
    if (!c) return {};
    bytes += c->size;
    listed.push_back(boost::json::object{{"path", path}, {"size", c->size}, {"blake2b", c->blake2b}});
  }
  bar.end();
  for (auto const& e : fs::recursive_directory_iterator(dir))
    if (e.is_directory()) fsync_path(e.path());
  fsync_path(dir.parent_path().empty() ? fs::path(".") : dir.parent_path());  // dir's own entry
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
    fsync_path(tmp);
    fs::rename(tmp, dir / manifest_name);
    fsync_path(dir);
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
    fsync_path(data_dir);
  }
  std::uint64_t bytes = 0;
  if (!check_files(dir, *manifest, data_dir, "restoring", as_json, bytes)) {
    std::cerr << "petchatctl: " << (interrupted ? "interrupted" : "the backup does not match its manifest")
              << "; nothing restored (" << data_dir.string() << " emptied)\n";
    // Everything but the marker, then the marker: a crash meanwhile leaves a data dir the
    // node still refuses, never a half-emptied one it would start on.
    for (auto const& e : fs::directory_iterator(data_dir))
      if (e.path().filename() != restoring_marker) fs::remove_all(e.path());
    fsync_path(data_dir);
    ::unlink((data_dir / restoring_marker).c_str());
    fsync_path(data_dir);
    return false;
  }
  ::chmod(data_dir.c_str(), 0700);  // private like a data dir the node made
  for (auto const& e : fs::recursive_directory_iterator(data_dir)) {
    ::chmod(e.path().c_str(), e.is_directory() ? 0700 : 0600);
    if (e.is_directory()) fsync_path(e.path());
  }
  fsync_path(data_dir);
  // Tells the node that this store went back in time (identity.hpp): its first start moves
  // every mailbox head ahead (by how long ago the backup was made: the marker says when),
  // its first federated start its lanes to a new epoch.
  for (char const* name : {restored_marker, restored_mailboxes_marker}) {
    int marker = ::open((data_dir / name).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    std::string text = name == restored_mailboxes_marker ? field(*manifest, "made_at") + "\n" : "";
    bool written = marker >= 0 && ::write(marker, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    if (!written || ::fsync(marker) != 0) {
      std::cerr << "petchatctl: " << (data_dir / name).string() << ": " << std::strerror(errno) << "\n";
      if (marker >= 0) ::close(marker);
      return false;
    }
    ::close(marker);
  }
  ::unlink((data_dir / restoring_marker).c_str());
  fsync_path(data_dir);
  fsync_path(data_dir.parent_path().empty() ? fs::path(".") : data_dir.parent_path());  // a new dir's own entry
  std::string region = field(*manifest, "region");
  if (as_json) {
    std::cout << boost::json::serialize(boost::json::object{
                     {"restored", true}, {"id", manifest->at("id")}, {"region", region}, {"bytes", bytes}})
              << "\n";
  } else {
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
