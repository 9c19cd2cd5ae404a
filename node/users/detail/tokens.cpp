#include "node/users/detail/tokens.hpp"

#include "base/format/format.hpp"
#include "user_records.pb.h"

namespace petchat::users::detail {
namespace {

constexpr std::string_view access_prefix = "pa1.";
constexpr std::string_view refresh_prefix = "pr1.";
constexpr std::string_view device_prefix = "pk1.";
constexpr std::size_t device_id_bytes = 16;
constexpr std::size_t refresh_secret_bytes = 32;
constexpr std::size_t max_token_chars = 1024;

}  // namespace

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  randombytes_buf(out.data(), n);
  return out;
}

std::string random_printable_id(std::size_t n) {
  std::string id;
  do {
    id = random_bytes(n);
  } while (!id.empty() && (static_cast<unsigned char>(id[0]) >> 2) == 62);
  return id;
}

bool equal_secret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {

// "prefix" base64url(claims) "." base64url(MAC of the claims).
std::string sign_claims(std::string_view prefix, access_claims const& claims, token_key const& key) {
  records::access_token_claims pb;
  pb.set_user_name(claims.user_name);
  pb.set_device_id(claims.device_id);
  pb.set_issued_at_ms(claims.issued_at_ms);
  pb.set_expires_at_ms(claims.expires_at_ms);
  pb.set_password_generation(claims.password_generation);
  std::string payload = pb.SerializeAsString();
  std::string mac(crypto_auth_hmacsha256_BYTES, '\0');
  crypto_auth_hmacsha256(reinterpret_cast<unsigned char*>(mac.data()),
                         reinterpret_cast<unsigned char const*>(payload.data()), payload.size(), key.data());
  return std::string(prefix) + format::base64url(payload) + "." + format::base64url(mac);
}

verified_token verify_claims(std::string_view prefix, std::string_view token, token_key const& key,
                             std::int64_t now_ms) {
  verified_token out;
  if (token.size() > max_token_chars || !token.starts_with(prefix)) return out;
  token.remove_prefix(prefix.size());
  auto dot = token.find('.');
  if (dot == std::string_view::npos) return out;
  auto payload = format::from_base64url(token.substr(0, dot));
  auto mac = format::from_base64url(token.substr(dot + 1));
  if (!payload || !mac || mac->size() != crypto_auth_hmacsha256_BYTES) return out;
  if (crypto_auth_hmacsha256_verify(reinterpret_cast<unsigned char const*>(mac->data()),
                                    reinterpret_cast<unsigned char const*>(payload->data()), payload->size(),
                                    key.data()) != 0) {
    out.status = token_status::bad_signature;
    return out;
  }
  records::access_token_claims pb;
  if (!pb.ParseFromString(*payload) || pb.device_id().size() != device_id_bytes) return out;
  out.claims =
      access_claims{pb.user_name(), pb.device_id(), pb.issued_at_ms(), pb.expires_at_ms(), pb.password_generation()};
  out.status = now_ms >= pb.expires_at_ms() ? token_status::expired : token_status::ok;
  return out;
}

}  // namespace

std::string sign_access_token(access_claims const& claims, token_key const& key) {
  return sign_claims(access_prefix, claims, key);
}

verified_token verify_access_token(std::string_view token, token_key const& key, std::int64_t now_ms) {
  return verify_claims(access_prefix, token, key, now_ms);
}

token_key derive_device_key(token_key const& key) {
  static constexpr char context[] = "petchat known-device token key v1";
  token_key out;
  crypto_generichash(out.data(), out.size(), reinterpret_cast<unsigned char const*>(context), sizeof context - 1,
                     key.data(), key.size());
  return out;
}

std::string sign_device_token(access_claims const& claims, token_key const& device_key) {
  return sign_claims(device_prefix, claims, device_key);
}

verified_token verify_device_token(std::string_view token, token_key const& device_key, std::int64_t now_ms) {
  return verify_claims(device_prefix, token, device_key, now_ms);
}

std::pair<std::string, refresh_parts> new_refresh_token(std::string const& device_id) {
  refresh_parts parts{device_id, random_bytes(refresh_secret_bytes)};
  std::string token =
      std::string(refresh_prefix) + format::base64url(parts.device_id) + "." + format::base64url(parts.secret);
  return {std::move(token), std::move(parts)};
}

std::optional<refresh_parts> parse_refresh_token(std::string_view token) {
  if (token.size() > max_token_chars || !token.starts_with(refresh_prefix)) return std::nullopt;
  token.remove_prefix(refresh_prefix.size());
  auto dot = token.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  auto device = format::from_base64url(token.substr(0, dot));
  auto secret = format::from_base64url(token.substr(dot + 1));
  if (!device || !secret || device->size() != device_id_bytes || secret->size() != refresh_secret_bytes)
    return std::nullopt;
  return refresh_parts{std::move(*device), std::move(*secret)};
}

std::string hash_refresh_secret(std::string const& secret) {
  std::string out(32, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                     reinterpret_cast<unsigned char const*>(secret.data()), secret.size(), nullptr, 0);
  return out;
}

}  // namespace petchat::users::detail
