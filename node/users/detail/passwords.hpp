// argon2id password hashing (libsodium crypto_pwhash). Both calls are CPU- and
// memory-heavy by design: run them off the I/O threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace petchat::users::detail {

struct hash_params {
  std::uint32_t ops = 2;
  std::uint32_t memory_kib = 65536;
};

// Returns the encoded hash ("$argon2id$v=19$m=...,t=...,p=1$salt$hash"), which carries
// its own parameters, so changing the config never breaks existing hashes.
// Throws std::runtime_error if libsodium cannot allocate the memory.
std::string hash_password(std::string_view password, hash_params params);

// True if `password` matches `encoded`. Constant time in the password's content.
bool verify_password(std::string const& encoded, std::string_view password);

// True if `encoded` was made with other parameters (or another algorithm) than `params`.
bool needs_rehash(std::string const& encoded, hash_params params);

// How much longer a check at `params` takes than one of the hash `encoded`, as a factor
// (argon2id's time grows with its passes times its memory): above 1 for a hash made at a
// lower cost than `params`, 1 when it cannot tell.
double cost_ratio(std::string const& encoded, hash_params params);

// A login's check: whether the password matched, and its hash made again at the configured
// cost when the stored one was made at another (empty otherwise).
struct checked_password {
  bool match = false;
  std::string rehash;
  std::chrono::steady_clock::duration took{};  // the check's own time, without the rehash
};

}  // namespace petchat::users::detail
