#include "node/identity/identity.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "base/format/format.hpp"
#include "node/identity/detail/files.hpp"

namespace petchat::identity {
using detail::file_error;

namespace {

constexpr char token_key_context[] = "petchat access token key v1";

void derive_token_key(region_identity& id) {
  // Keyed BLAKE2b of a fixed context: the token key is bound to this region key alone.
  crypto_generichash(id.token_key.data(), id.token_key.size(),
                     reinterpret_cast<unsigned char const*>(token_key_context), sizeof token_key_context - 1,
                     id.secret_key.data(), crypto_generichash_KEYBYTES_MAX);
}

}  // namespace

namespace detail {

std::runtime_error file_error(std::filesystem::path const& p, char const* what) {
  return std::runtime_error(p.string() + ": " + what + ": " + std::strerror(errno));
}

void write_durably(std::filesystem::path const& dir, std::string const& name, std::string_view bytes, unsigned mode) {
  auto path = dir / name;
  auto tmp = dir / (name + ".tmp");
  int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (out < 0) throw file_error(tmp, "create");
  ::fchmod(out, mode);  // a leftover temporary file keeps its old mode through O_TRUNC
  for (std::size_t done = 0; done < bytes.size();) {
    ssize_t n = ::write(out, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      auto error = file_error(tmp, "write");
      ::close(out);
      throw error;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(out) != 0) {
    auto error = file_error(tmp, "fsync");
    ::close(out);
    throw error;
  }
  ::close(out);
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw file_error(path, "rename");
  // The rename is durable only once the directory is.
  int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0 || ::fsync(d) != 0) {
    auto error = file_error(dir, "fsync");
    if (d >= 0) ::close(d);
    throw error;
  }
  ::close(d);
}

}  // namespace detail

std::string region_identity::public_key_hex() const {
  return format::hex({reinterpret_cast<char const*>(public_key.data()), public_key.size()});
}

region_identity load_or_create(std::filesystem::path const& data_dir) {
  region_identity id;
  auto key_path = data_dir / "region.key";
  int fd = ::open(key_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw file_error(key_path, "stat");
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
      ::close(fd);
      throw refusal(key_path.string() +
                    ": readable by group or others; run chmod 600 on it (a leaked region key "
                    "lets anyone speak for this region)");
    }
    ssize_t n = ::read(fd, id.secret_key.data(), id.secret_key.size());
    char extra;
    bool trailing = ::read(fd, &extra, 1) > 0;
    ::close(fd);
    if (n != static_cast<ssize_t>(id.secret_key.size()) || trailing)
      throw refusal(key_path.string() + ": not a region key (expected 64 bytes)");
    crypto_sign_ed25519_sk_to_pk(id.public_key.data(), id.secret_key.data());
  } else if (errno == ENOENT) {
    crypto_sign_keypair(id.public_key.data(), id.secret_key.data());
    // region.pub first: a crash between the two leaves no key, and the next start makes a
    // new pair (and a new region.pub) before any account depends on it.
    detail::write_durably(data_dir, "region.pub", id.public_key_hex() + "\n", 0644);
    detail::write_durably(data_dir, "region.key",
                          {reinterpret_cast<char const*>(id.secret_key.data()), id.secret_key.size()}, 0600);
    id.created = true;
  } else {
    throw file_error(key_path, "open");
  }
  derive_token_key(id);
  return id;
}

void prepare_data_dir(std::filesystem::path const& data_dir) {
  struct stat st {};
  if (::stat(data_dir.c_str(), &st) != 0) {
    if (errno != ENOENT) throw file_error(data_dir, "stat");
    if (data_dir.has_parent_path()) std::filesystem::create_directories(data_dir.parent_path());
    if (::mkdir(data_dir.c_str(), 0700) != 0 && errno != EEXIST) throw file_error(data_dir, "mkdir");
    if (::stat(data_dir.c_str(), &st) != 0) throw file_error(data_dir, "stat");
  }
  // The data dir holds the region key and every message: another user must not be able
  // to replace files in it. Changing an existing directory's mode could break whatever
  // else uses it (think --data-dir /tmp), so an unsafe one is refused instead.
  if (!S_ISDIR(st.st_mode)) throw refusal(data_dir.string() + " is not a directory");
  if (st.st_uid != ::geteuid())
    throw refusal("data dir " + data_dir.string() + " belongs to another user (uid " + std::to_string(st.st_uid) +
                  "); use a directory of the user the node runs as");
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    throw refusal("data dir " + data_dir.string() +
                  " is writable by group or others (unsafe: another user could replace its files); "
                  "use a private directory (chmod 700) or a new path");
}

void lock_data_dir(std::filesystem::path const& data_dir) {
  auto path = data_dir / "node.lock";
  // Deliberately never closed: the lock lives as long as the process.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw file_error(path, "open");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      throw std::runtime_error(data_dir.string() + " is in use by another petchat-node (" + path.string() +
                               " is locked)");
    throw file_error(path, "flock");
  }
}

}  // namespace petchat::identity
