// The file work under petchatctl's backup, verify and restore (backup.cpp): copies that
// hash as they go and never follow a link, paths checked before they are joined, the
// effective ids a root restore writes with, and fsyncs whose failures are reported.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "node/ctl/detail/backup.hpp"

namespace petchat::ctl::detail {

// Root restoring into a directory of the node's user writes as that user (effective ids)
// and reads the backup as root: see restore_backup.
struct ids {
  uid_t uid;
  gid_t gid;
};
extern std::optional<ids> writer;
void act_as_writer();
void act_as_root();

extern volatile std::sig_atomic_t interrupted;  // SIGINT, SIGTERM or SIGHUP during a copy

// A manifest's or the node's relative path, safe to join under a directory: no absolute
// path, no "..", no empty or "." segment (a hostile manifest must not write elsewhere).
bool safe_relative(std::string const& p);

// Progress on a terminal: one line, redrawn at most every 100 ms.
struct progress {
  std::uint64_t total = 0, done = 0;
  bool on = ::isatty(STDERR_FILENO) != 0;
  std::chrono::steady_clock::time_point last{};
  char const* verb;
  void add(std::uint64_t n) {
    done += n;
    if (!on || std::chrono::steady_clock::now() - last < std::chrono::milliseconds(100)) return;
    last = std::chrono::steady_clock::now();
    // More than the total (a file larger than its manifest says) shows as 100%.
    int pct = total ? static_cast<int>(std::min<std::uint64_t>(done * 100 / total, 100)) : 100;
    std::string bar(30, ' ');
    for (int i = 0; i < pct * 30 / 100; ++i) bar[i] = '#';
    std::cerr << "\r" << verb << " [" << bar << "] " << pct << "% " << size_text(done) << " of " << size_text(total)
              << "   " << std::flush;
  }
  void end() {
    if (on) std::cerr << "\r" << std::string(79, ' ') << "\r" << std::flush;
  }
};

// fsync of a file or directory; false (errno set) if it could not be opened or synced: a
// backup or restore whose last step is not durable must not say it succeeded.
bool fsync_path(std::filesystem::path const& p);

// Opens `path` (relative, no "..") inside the directory `base` without following a
// symbolic link anywhere on the way: each directory of the path is opened on its own with
// O_NOFOLLOW, then the file (O_NONBLOCK: a FIFO does not hold the open up), and only if
// it is a regular file before it is opened (a device's open can act): -1 with errno, ELOOP
// for a link, EINVAL for another kind of file.
// (openat2's RESOLVE_NO_SYMLINKS would do it in one call, but not on kernels before 5.6
// nor under older seccomp profiles.)
int open_beneath(std::filesystem::path const& base, std::string const& path);

struct copied {
  std::string blake2b;
  std::uint64_t size = 0;
};
// Copies `from` to `to` (created, 0600, fsync'd) hashing the bytes; `to` empty: only
// hashes. Returns the hash and size, or sets `error`.
// Only regular files are read, never through a symbolic link, whether the file or a
// directory on its way is one (a hostile backup or a compromised node must not make a root
// petchatctl read /etc/shadow, or hang on a FIFO); with `owner` set, only files of that
// user (the node's). `path` is relative to `base`. With `size`, a file found larger is an
// error as soon as that shows (a hostile backup's file of zeros must not fill the target
// disk or take hours to hash).
std::optional<copied> copy_hashing(std::filesystem::path const& base, std::string const& path,
                                   std::filesystem::path const& to, progress& bar, std::string& error,
                                   std::optional<uid_t> owner = std::nullopt,
                                   std::optional<std::uint64_t> size = std::nullopt);

}  // namespace petchat::ctl::detail
