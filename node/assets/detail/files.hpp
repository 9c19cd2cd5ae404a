// The asset directory's files, with plain blocking POSIX calls (run on the asset
// service's pool), and the BLAKE2b-256 hasher. Failures throw file_error with errno.
#pragma once

#include <sodium.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace petchat::assets::detail {

namespace fs = std::filesystem;

inline constexpr std::size_t hash_bytes = 32;

// A file of tmp/ removed when the guard goes, however the work ends (an exception too),
// unless disarmed (its owner removes it itself, off the I/O thread).
struct tmp_file {
  fs::path path;
  bool armed = true;
  ~tmp_file() {
    std::error_code ignored;
    if (armed) fs::remove(path, ignored);
  }
};

struct file_error : std::runtime_error {
  file_error(std::string const& what, int e) : std::runtime_error(what), error(e) {}
  int error;  // errno
};

// BLAKE2b-256 (libsodium's crypto_generichash, no key) over bytes fed in order.
class hasher {
 public:
  hasher() { crypto_generichash_init(&state_, nullptr, 0, hash_bytes); }
  void update(char const* data, std::size_t size) {
    crypto_generichash_update(&state_, reinterpret_cast<unsigned char const*>(data), size);
  }
  // The 32-byte hash; the hasher is spent.
  std::string finish() {
    std::string out(hash_bytes, '\0');
    crypto_generichash_final(&state_, reinterpret_cast<unsigned char*>(out.data()), hash_bytes);
    return out;
  }

 private:
  crypto_generichash_state state_;
};

// A file written from its start or from `keep` bytes in (what follows is cut off).
class file_writer {
 public:
  // `direct`: written around the page cache (O_DIRECT) while the pieces allow it (aligned
  // to direct_alignment in memory, length and offset), so that the bytes are not copied
  // once more on their way to the disk; the first piece that does not allow it (the last
  // of a file, say), and a file system without O_DIRECT, go through the page cache.
  file_writer(fs::path const& path, std::uint64_t keep, bool direct = false);
  ~file_writer();
  file_writer(file_writer const&) = delete;
  file_writer& operator=(file_writer const&) = delete;
  // Appends; every writeback_every bytes, the kernel is asked to start writing them to
  // the disk (sync_file_range, without waiting), so that sync() waits only for the tail
  // instead of the whole file (a 1 GiB upload stays under the kernel's own writeback
  // threshold on a machine with much memory, and would be written only at sync()).
  void write(char const* data, std::size_t size);
  void sync();
  static constexpr std::uint64_t writeback_every = 8u << 20;
  static constexpr std::size_t direct_alignment = 4096;

 private:
  bool write_direct(char const* data, std::size_t size);
  void stop_direct();

  int fd_ = -1;
  bool direct_ = false;
  fs::path path_;
  std::uint64_t end_ = 0;      // the file's length as written
  std::uint64_t started_ = 0;  // writeback asked for up to here
};

class file_store {
 public:
  // Creates root/{blobs,uploads,tmp,quarantine} (0700) and empties tmp/.
  explicit file_store(fs::path root);
  fs::path blob(std::string const& hash) const;
  fs::path upload(std::string const& id) const;
  fs::path new_tmp() const;  // a fresh name in tmp/
  fs::path quarantine(std::string const& hash) const;
  fs::path const& root() const { return root_; }

 private:
  fs::path root_;
};

// Feeds a file's first `length` bytes (all of it: UINT64_MAX) to `h`; returns how many.
std::uint64_t feed_file(fs::path const& path, hasher& h, std::uint64_t length = UINT64_MAX);
// The hash of a whole file.
std::string hash_file(fs::path const& path);
// Up to `size` bytes from the start of a file.
std::string read_head(fs::path const& path, std::size_t size);
// Fsyncs `from` (unless the caller did: `synced`), links it at `to` and fsyncs `to`'s directory: the bytes are in place
// for good. False if `to` existed already (the same bytes: it is named by their hash).
bool place(fs::path const& from, fs::path const& to, bool synced = false);
// Removes a file and fsyncs its directory; no error if it is gone already.
void remove_file(fs::path const& path);
void sync_dir(fs::path const& dir);
std::string from_hex(std::string_view printed);  // empty unless 64 lower-case hex digits

}  // namespace petchat::assets::detail
