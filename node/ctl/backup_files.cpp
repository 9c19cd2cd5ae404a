#include "node/ctl/detail/backup_files.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <vector>

namespace petchat::ctl::detail {

namespace fs = std::filesystem;

std::optional<ids> writer;
void act_as_writer() {
  if (writer && (::setegid(writer->gid) != 0 || ::seteuid(writer->uid) != 0)) std::abort();  // never write as root
}
void act_as_root() {
  if (writer && (::seteuid(0) != 0 || ::setegid(0) != 0)) std::abort();
}

volatile std::sig_atomic_t interrupted = 0;
extern "C" void on_interrupt(int) {
  interrupted = 1;
}

namespace {

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

namespace {

// A directory on the way to `dir` (as written, and as its links resolve) that a user other
// than root and this one could change: files are written there by path, so such a user
// could swap a directory for a link while petchatctl (as root, say) writes, chmods or
// removes, and have it act elsewhere. A world- or group-writable directory with the sticky
// bit (/tmp) is fine: others cannot rename what is not theirs. Empty: none.
std::string changeable_parent(fs::path const& dir) {
  auto unsafe = [](fs::path const& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || S_ISLNK(st.st_mode)) return false;  // a link: its target is looked at
    bool others_write = (st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX);
    return (st.st_uid != 0 && st.st_uid != ::geteuid()) || others_write;
  };
  std::error_code ec;
  auto written = fs::absolute(dir, ec).parent_path();
  auto resolved = fs::canonical(written, ec);
  for (auto const& chain : {written, ec ? fs::path() : resolved}) {
    fs::path p;
    for (auto const& part : chain) {
      p /= part;
      if (unsafe(p)) return p.string();
    }
  }
  return {};
}

}  // namespace

bool fresh_dir(std::string const& dir_text, std::string& error) {
  fs::path dir(dir_text);
  std::error_code ec;
  if (auto parent = changeable_parent(dir); !parent.empty()) {
    error = dir.string() + ": " + parent +
            " belongs to another user, or others may write to it: choose a path whose directories only you or root "
            "can change";
    return false;
  }
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

bool fsync_path(fs::path const& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool synced = ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  errno = saved;
  return synced;
}

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
  // Looked at before it is opened: opening a device (a watchdog, a tape) can act, and the
  // name comes from a backup or from the node's answer. An O_PATH descriptor opens
  // nothing; the file it names is then opened through it, so that no other file can be
  // swapped in between (without /proc: by name again, and then it must be the same file).
  int at = ::openat(dir, last->c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  struct stat before {};
  int saved = at < 0 ? errno : ::fstat(at, &before) != 0 ? errno : 0;
  if (saved == 0 && !S_ISREG(before.st_mode)) saved = S_ISLNK(before.st_mode) ? ELOOP : EINVAL;
  int fd = -1;
  if (saved == 0) {
    fd = ::open(("/proc/self/fd/" + std::to_string(at)).c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT) fd = ::openat(dir, last->c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    saved = fd < 0 ? errno : 0;
    struct stat after {};
    if (fd >= 0 && (::fstat(fd, &after) != 0 || after.st_dev != before.st_dev || after.st_ino != before.st_ino)) {
      ::close(fd);
      fd = -1;
      saved = EINVAL;
    }
  }
  if (at >= 0) ::close(at);
  ::close(dir);
  errno = saved;
  return fd;
}

std::optional<copied> copy_hashing(fs::path const& base, std::string const& path, fs::path const& to, progress& bar,
                                   std::string& error, std::optional<uid_t> owner, std::optional<std::uint64_t> size) {
  auto from = base / path;
  act_as_root();
  int in = open_beneath(base, path);
  act_as_writer();
  if (in < 0) {
    error = from.string() + (errno == ELOOP || errno == ENOTDIR
                                 ? std::string(": a symbolic link (or one on its way), not a regular file")
                             : errno == EINVAL ? std::string(": not a regular file")
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
    if (size && c.size > *size) {
      error = from.string() + ": larger than the " + std::to_string(*size) + " bytes listed for it";
      break;
    }
    // With `size`, at most one byte more than it is read.
    auto want = size ? static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), *size + 1 - c.size)) : buf.size();
    ssize_t n = ::read(in, buf.data(), want);
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

}  // namespace petchat::ctl::detail
