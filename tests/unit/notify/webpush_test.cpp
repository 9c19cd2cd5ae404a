// Web Push's encryption (node/notify/detail/webpush.hpp): what the push service can see of
// a body is its length, so bodies come in steps of 1 KiB, and never past RFC 8291's 4,096
// bytes (86 bytes of header, the padded record, a 16-byte tag).
#include <doctest/doctest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <string>

#include "node/notify/detail/webpush.hpp"

using namespace petchat::notify::detail;

namespace {

// A subscription's p256dh: a fresh P-256 public key, uncompressed.
std::string subscriber_key() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  REQUIRE(key != nullptr);
  unsigned char point[65];
  std::size_t length = 0;
  REQUIRE(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &length) == 1);
  EVP_PKEY_free(key);
  return std::string(reinterpret_cast<char*>(point), length);
}

std::size_t body_size(std::size_t plaintext, std::string const& p256dh) {
  auto body = encrypt_aes128gcm(std::string(plaintext, 'x'), p256dh, std::string(auth_secret_bytes, 'a'));
  return body ? body->size() : 0;
}

}  // namespace

TEST_CASE("Web Push bodies: padded to steps of 1 KiB, and never past 4,096 bytes") {
  auto key = subscriber_key();
  CHECK(body_size(1, key) == 86 + 1024 + 16);
  CHECK(body_size(300, key) == 86 + 1024 + 16);   // a push with a short preview or a long one: alike
  CHECK(body_size(1023, key) == 86 + 1024 + 16);  // with its delimiter, 1,024
  CHECK(body_size(1024, key) == 86 + 2048 + 16);
  CHECK(body_size(3072, key) == 4096);  // the last step is cut to what fits
  CHECK(body_size(3993, key) == 4096);
  CHECK(body_size(3994, key) == 0);  // refused: it would not fit
}
