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

double cost_ratio(std::string const& encoded, hash_params params) {
  // "$argon2id$v=19$m=<KiB>,t=<passes>,p=1$salt$hash"
  auto number_after = [&encoded](std::string_view key) -> double {
    auto at = encoded.find(key);
    if (at == std::string::npos) return 0;
    double v = 0;
    for (auto i = at + key.size(); i < encoded.size() && encoded[i] >= '0' && encoded[i] <= '9'; ++i)
      v = v * 10 + (encoded[i] - '0');
    return v;
  };
  double m = number_after("$m="), t = number_after(",t=");
  if (m <= 0 || t <= 0) return 1;
  return double(params.ops) * double(params.memory_kib) / (t * m);
}

}  // namespace petchat::users::detail
