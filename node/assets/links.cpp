// Download links (docs/PROTOCOL.md, "Download links"): "<expiry>.<session>.<mac>", the
// expiry in ms since the epoch and the MAC in base64url, the session as the API prints it.
// The MAC (HMAC-SHA-256 under a key made at start) covers the asset too, so a token opens
// that asset only, and only for the session that asked for it while it is live.
#include <sodium.h>

#include <charconv>

#include "base/format/format.hpp"
#include "node/assets/detail/service.hpp"

namespace petchat::assets {

using errors::code;
using errors::fail;

namespace {

std::string link_mac(std::array<unsigned char, 32> const& key, std::string const& hash, std::string_view device,
                     std::string_view expiry) {
  std::string input = "petchat-asset-link";
  for (auto part : {std::string_view(hash), device, expiry}) {
    input.push_back('\0');
    input.append(part);
  }
  std::array<unsigned char, crypto_auth_hmacsha256_BYTES> mac{};
  crypto_auth_hmacsha256(mac.data(), reinterpret_cast<unsigned char const*>(input.data()), input.size(), key.data());
  return std::string(reinterpret_cast<char const*>(mac.data()), mac.size());
}

}  // namespace

std::string asset_service::link(std::string const& hash, std::string const& device, std::int64_t& expires_at_ms) const {
  expires_at_ms = format::now_ms() + std::int64_t(impl_->limits.link_ttl_s) * 1000;
  auto expiry = std::to_string(expires_at_ms);
  return expiry + "." + device + "." + format::base64url(link_mac(impl_->link_key, hash, device, expiry));
}

result<std::string> asset_service::link_device(std::string const& hash, std::string_view token) const {
  auto invalid = [] { return fail(code::invalid_token, "the link is not valid"); };
  auto first = token.find('.');
  auto second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos) return invalid();
  auto expiry = token.substr(0, first), device = token.substr(first + 1, second - first - 1);
  auto mac = format::from_base64url(token.substr(second + 1));
  if (!mac || mac->size() != crypto_auth_hmacsha256_BYTES) return invalid();
  auto want = link_mac(impl_->link_key, hash, device, expiry);
  if (sodium_memcmp(want.data(), mac->data(), want.size()) != 0) return invalid();
  std::int64_t expires_at_ms = 0;
  auto [end, ec] = std::from_chars(expiry.data(), expiry.data() + expiry.size(), expires_at_ms);
  if (ec != std::errc{} || end != expiry.data() + expiry.size()) return invalid();
  if (expires_at_ms <= format::now_ms()) return fail(code::token_expired, "the link has expired; ask for another");
  return std::string(device);
}

}  // namespace petchat::assets
