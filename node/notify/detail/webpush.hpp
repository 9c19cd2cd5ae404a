// Web Push's cryptography (docs/PROTOCOL.md, "Web Push and UnifiedPush"), on OpenSSL: the
// node's VAPID key pair (RFC 8292), the ES256 JWT that authorizes a push, and the
// `aes128gcm` message encryption to a subscription's keys (RFC 8291, RFC 8188).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace petchat::notify::detail {

inline constexpr std::size_t p256_point_bytes = 65;  // uncompressed: 0x04 || x || y
inline constexpr std::size_t auth_secret_bytes = 16;

// The node's P-256 key pair for VAPID. Thread-safe once made (signing only reads it).
class vapid_key {
 public:
  // Reads `path` (PEM), or makes a key pair and writes it there (0600, fsync'd, renamed
  // into place). Throws std::runtime_error saying what failed.
  static vapid_key load_or_create(std::filesystem::path const& path);
  vapid_key(vapid_key&&) noexcept;
  ~vapid_key();

  // The uncompressed public key (65 bytes).
  std::string const& public_key() const { return public_; }
  // `Authorization` for a push to an endpoint of `audience` ("https://host[:port]"),
  // expiring at `expires_s` (Unix seconds): "vapid t=<jwt>, k=<public key>".
  std::string authorization(std::string const& audience, std::int64_t expires_s, std::string const& subject) const;

 private:
  struct key_holder;
  explicit vapid_key(std::unique_ptr<key_holder> k);
  std::unique_ptr<key_holder> key_;
  std::string public_;
};

// Whether `point` is a valid uncompressed P-256 point (a subscription's p256dh).
bool valid_p256_point(std::string_view point);

// `plaintext` encrypted for a subscription (its p256dh and auth secret) as one aes128gcm
// record: salt, record size, the sender's ephemeral public key, ciphertext. nullopt if the
// keys are unusable.
std::optional<std::string> encrypt_aes128gcm(std::string_view plaintext, std::string_view p256dh,
                                             std::string_view auth_secret);

}  // namespace petchat::notify::detail
