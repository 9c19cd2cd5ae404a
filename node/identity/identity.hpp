// The region's identity: an Ed25519 key pair created on first start under the data dir
// (`region.key`, mode 0600; `region.pub`, hex) and reused afterwards. Federation signs
// envelopes with it; the access-token key is derived from it, so rotating the region key
// also invalidates every outstanding access token.
#pragma once

#include <sodium.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>

namespace petchat::identity {

struct region_identity {
  std::array<std::uint8_t, crypto_sign_PUBLICKEYBYTES> public_key{};
  std::array<std::uint8_t, crypto_sign_SECRETKEYBYTES> secret_key{};
  // HMAC-SHA-256 key for access tokens, derived from the secret key.
  std::array<std::uint8_t, crypto_auth_hmacsha256_KEYBYTES> token_key{};
  bool created = false;  // true if this start created the key pair

  std::string public_key_hex() const;
};

// Loads `<data_dir>/region.key`, or creates it (and region.pub) if absent. Throws
// std::runtime_error if the file is unreadable, has the wrong size, or is readable by
// group or others (a leaked region key lets anyone speak for the region).
region_identity load_or_create(std::filesystem::path const& data_dir);

// Makes sure `data_dir` is a private directory of this user: creates it (mode 0700) if
// it does not exist; refuses (std::runtime_error naming the directory) one that is not a
// directory, belongs to another user, or is writable by group or others (e.g. /tmp).
// An existing directory's mode is never changed.
void prepare_data_dir(std::filesystem::path const& data_dir);

// Binds `data_dir` to `region`: `<data_dir>/region` holds the region's name, written (and
// fsync'd) the first time a node starts on the directory. A later start under another
// name throws std::runtime_error saying both names: every stored user id and message
// carries the region, so starting a region's data as another one (a forgotten --region)
// would silently turn alice@europe into alice@local. A directory made before this file
// existed is bound to the region it is started with next.
void claim_region(std::filesystem::path const& data_dir, std::string const& region);

// Takes an exclusive lock on `<data_dir>/node.lock` for the life of the process, so two
// nodes never share one data dir. Throws std::runtime_error if another process holds it.
void lock_data_dir(std::filesystem::path const& data_dir);

}  // namespace petchat::identity
