#include "node/users/detail/passwords.hpp"

#include <sodium.h>

#include <stdexcept>

namespace petchat::users::detail {

std::string hash_password(std::string_view password, hash_params params) {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), params.ops,
                            static_cast<std::size_t>(params.memory_kib) * 1024, crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw std::runtime_error("crypto_pwhash_str_alg: out of memory");
  return out;
}

bool verify_password(std::string const& encoded, std::string_view password) {
  return crypto_pwhash_str_verify(encoded.c_str(), password.data(), password.size()) == 0;
}

bool needs_rehash(std::string const& encoded, hash_params params) {
  return crypto_pwhash_str_needs_rehash(encoded.c_str(), params.ops,
                                        static_cast<std::size_t>(params.memory_kib) * 1024) != 0;
}

}  // namespace petchat::users::detail
