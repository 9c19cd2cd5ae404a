// Access and refresh tokens.
//
// Access token: "pa1." base64url(claims) "." base64url(HMAC-SHA-256(key, claims)), where
// claims is a serialized petchat.records.access_token_claims. Verification checks the MAC
// in constant time before it parses anything.
//
// Refresh token: "pr1." base64url(device id) "." base64url(32 random bytes). The node
// stores only a BLAKE2b-256 hash of the random part.
//
// Known-device token: "pk1." base64url(claims) "." base64url(HMAC-SHA-256(device key,
// claims)), the device key derived from the token key (derive_device_key) so that neither
// kind of token passes for the other; the same claims, `device_id` a random id of the
// browser or app that logged in (not a session), and the user's password generation. It
// proves only that this device logged in as that user, with the password they have now:
// its logins are not held back by the lock on the account that anyone's wrong passwords
// cause.
#pragma once

#include <sodium.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace petchat::users::detail {

using token_key = std::array<std::uint8_t, crypto_auth_hmacsha256_KEYBYTES>;

struct access_claims {
  std::string user_name;
  std::string device_id;  // raw 16 bytes
  std::int64_t issued_at_ms = 0;
  std::int64_t expires_at_ms = 0;
  std::uint64_t password_generation = 0;  // known-device tokens only
};

std::string sign_access_token(access_claims const& claims, token_key const& key);

enum class token_status { ok, malformed, bad_signature, expired };

struct verified_token {
  token_status status = token_status::malformed;
  access_claims claims;  // meaningful when status is ok or expired
};

verified_token verify_access_token(std::string_view token, token_key const& key, std::int64_t now_ms);

token_key derive_device_key(token_key const& key);
std::string sign_device_token(access_claims const& claims, token_key const& device_key);
verified_token verify_device_token(std::string_view token, token_key const& key, std::int64_t now_ms);

struct refresh_parts {
  std::string device_id;  // raw 16 bytes
  std::string secret;     // raw 32 bytes
};

// A fresh refresh token for `device_id`, with its secret.
std::pair<std::string, refresh_parts> new_refresh_token(std::string const& device_id);
std::optional<refresh_parts> parse_refresh_token(std::string_view token);
std::string hash_refresh_secret(std::string const& secret);

std::string random_bytes(std::size_t n);

// Random bytes for an id shown to admins in base64url: never starting with '-' (digit 62,
// a first byte of 0xF8-0xFB), or `petchatctl ... revoke <id>` would read it as an option.
std::string random_printable_id(std::size_t n);

// Constant-time equality of two byte strings (false if the sizes differ).
bool equal_secret(std::string_view a, std::string_view b);

}  // namespace petchat::users::detail
