// Web Push's cryptography on OpenSSL 3 (see detail/webpush.hpp).
#include "node/notify/detail/webpush.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "base/format/format.hpp"
#include "node/identity/identity.hpp"

namespace petchat::notify::detail {
namespace {

using pkey_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using pctx_ptr = std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)>;
using mdctx_ptr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
using cipher_ptr = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

pkey_ptr new_p256() {
  return pkey_ptr(EVP_EC_gen("P-256"), EVP_PKEY_free);
}

std::string public_octets(EVP_PKEY* k) {
  unsigned char buf[p256_point_bytes];
  std::size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, buf, sizeof buf, &len) != 1 ||
      len != p256_point_bytes)
    return {};
  return std::string(reinterpret_cast<char*>(buf), len);
}

// A P-256 public key from its uncompressed point; null if it is not one.
pkey_ptr from_point(std::string_view point) {
  pkey_ptr out(nullptr, EVP_PKEY_free);
  if (point.size() != p256_point_bytes || point[0] != 0x04) return out;
  pctx_ptr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr), EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) return out;
  char group[] = "prime256v1";
  std::string copy(point);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
                         OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, copy.data(), copy.size()),
                         OSSL_PARAM_construct_end()};
  EVP_PKEY* k = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &k, EVP_PKEY_PUBLIC_KEY, params) != 1) return out;
  out.reset(k);
  pctx_ptr check(EVP_PKEY_CTX_new_from_pkey(nullptr, k, nullptr), EVP_PKEY_CTX_free);
  if (!check || EVP_PKEY_public_check(check.get()) != 1) out.reset();
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<unsigned char const*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

// HKDF (RFC 5869) with SHA-256, output at most 32 bytes: one round of Expand.
std::string hkdf(std::string_view salt, std::string_view ikm, std::string_view info, std::size_t length) {
  auto prk = hmac_sha256(salt, ikm);
  std::string t(info);
  t.push_back('\x01');
  return hmac_sha256(prk, t).substr(0, length);
}

std::string base64url(std::string_view raw) {
  return format::base64url(std::string(raw));
}

}  // namespace

struct vapid_key::key_holder {
  pkey_ptr key{nullptr, EVP_PKEY_free};
};

vapid_key::vapid_key(std::unique_ptr<key_holder> k) : key_(std::move(k)), public_(public_octets(key_->key.get())) {
  if (public_.size() != p256_point_bytes) throw std::runtime_error("the VAPID key is not a P-256 key");
}
vapid_key::vapid_key(vapid_key&&) noexcept = default;
vapid_key::~vapid_key() = default;

vapid_key vapid_key::load_or_create(std::filesystem::path const& path) {
  auto holder = std::make_unique<key_holder>();
  if (int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    // As region.key: a private key others can read is refused, not used (whoever reads it
    // can push to every browser subscribed here, in this region's name).
    struct stat st;
    if (::fstat(fd, &st) != 0 || (st.st_mode & (S_IRWXG | S_IRWXO))) {
      ::close(fd);
      throw identity::refusal(path.string() +
                              ": readable by group or others (or not to be looked at); run chmod 600 on it "
                              "(the VAPID key signs this region's pushes)");
    }
    FILE* f = ::fdopen(fd, "r");
    if (!f) {
      ::close(fd);
      throw std::runtime_error(path.string() + ": cannot read the VAPID key: " + std::strerror(errno));
    }
    holder->key.reset(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
    std::fclose(f);
    if (!holder->key)  // damaged: an operator must restore it (exit 2, not restarted in a loop)
      throw identity::refusal(path.string() + ": not a PEM private key (the VAPID key; restore it from a backup)");
    return vapid_key(std::move(holder));
  }
  // Only a missing key is made: any other failure to read it must not replace it (every
  // browser subscription is bound to it).
  if (errno != ENOENT) throw std::runtime_error(path.string() + ": cannot read the VAPID key: " + std::strerror(errno));
  holder->key = new_p256();
  if (!holder->key) throw std::runtime_error("could not make a P-256 key pair (VAPID)");
  auto tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error(tmp.string() + ": cannot create (the VAPID key)");
  FILE* f = ::fdopen(fd, "w");
  bool ok = f && PEM_write_PrivateKey(f, holder->key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1 &&
            std::fflush(f) == 0 && ::fsync(fd) == 0;
  if (f)
    std::fclose(f);
  else
    ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error(path.string() + ": cannot write the VAPID key");
  // The rename durable before the key is used: a key lost with it would be made anew at
  // the next start, and every browser subscription bound to this one would stop working.
  int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool synced = dir >= 0 && ::fsync(dir) == 0;
  if (dir >= 0) ::close(dir);
  if (!synced) throw std::runtime_error(path.string() + ": cannot make the VAPID key durable (fsync of its directory)");
  return vapid_key(std::move(holder));
}

std::string vapid_key::authorization(std::string const& audience, std::int64_t expires_s,
                                     std::string const& subject) const {
  auto json_string = [](std::string const& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out.push_back('\\');
      if (static_cast<unsigned char>(c) < 0x20) continue;  // never in an origin or a mailto:
      out.push_back(c);
    }
    return out + "\"";
  };
  std::string header = base64url(R"({"typ":"JWT","alg":"ES256"})");
  std::string claims = base64url("{\"aud\":" + json_string(audience) + ",\"exp\":" + std::to_string(expires_s) +
                                 ",\"sub\":" + json_string(subject) + "}");
  std::string input = header + "." + claims;
  mdctx_ptr md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::size_t der_len = 0;
  if (!md || EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key_->key.get()) != 1 ||
      EVP_DigestSign(md.get(), nullptr, &der_len, reinterpret_cast<unsigned char const*>(input.data()), input.size()) !=
          1)
    return {};
  std::string der(der_len, '\0');
  if (EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(der.data()), &der_len,
                     reinterpret_cast<unsigned char const*>(input.data()), input.size()) != 1)
    return {};
  // JWS wants r || s, 32 bytes each, not OpenSSL's DER.
  auto const* p = reinterpret_cast<unsigned char const*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der_len));
  if (!sig) return {};
  unsigned char raw[64];
  BIGNUM const* r = nullptr;
  BIGNUM const* s = nullptr;
  ECDSA_SIG_get0(sig, &r, &s);
  bool ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
  ECDSA_SIG_free(sig);
  if (!ok) return {};
  return "vapid t=" + input + "." + base64url(std::string_view(reinterpret_cast<char*>(raw), 64)) +
         ", k=" + base64url(public_);
}

bool valid_p256_point(std::string_view point) {
  return from_point(point) != nullptr;
}

std::optional<std::string> encrypt_aes128gcm(std::string_view plaintext, std::string_view p256dh,
                                             std::string_view auth_secret) {
  constexpr std::uint32_t record_size = 4096;
  // RFC 8291, 4: a push message's body is at most 4096 bytes: the header (salt, record
  // size, key id: 86 bytes), then one record: at most 3994 bytes of plaintext, delimiter
  // and padding, and its 16-byte tag.
  constexpr std::size_t most_record = 4096 - 86 - 16;
  if (auth_secret.size() != auth_secret_bytes || plaintext.size() + 1 > most_record) return std::nullopt;
  auto peer = from_point(p256dh);
  auto ephemeral = new_p256();
  if (!peer || !ephemeral) return std::nullopt;
  auto as_public = public_octets(ephemeral.get());
  // ECDH.
  pctx_ptr dctx(EVP_PKEY_CTX_new_from_pkey(nullptr, ephemeral.get(), nullptr), EVP_PKEY_CTX_free);
  std::size_t secret_len = 32;
  unsigned char secret[32];
  if (!dctx || EVP_PKEY_derive_init(dctx.get()) != 1 || EVP_PKEY_derive_set_peer(dctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(dctx.get(), secret, &secret_len) != 1 || secret_len != 32)
    return std::nullopt;
  // RFC 8291 section 3.3: the input keying material from the auth secret and both keys;
  // then RFC 8188's content-encryption key and nonce from a random salt.
  std::string key_info = "WebPush: info";
  key_info.push_back('\0');
  key_info.append(p256dh).append(as_public);
  auto ikm = hkdf(auth_secret, std::string_view(reinterpret_cast<char*>(secret), 32), key_info, 32);
  std::string salt(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), 16) != 1) return std::nullopt;
  auto cek = hkdf(salt, ikm, std::string_view("Content-Encoding: aes128gcm\0", 28), 16);
  auto nonce = hkdf(salt, ikm, std::string_view("Content-Encoding: nonce\0", 24), 12);
  // One record: the plaintext, the last record's delimiter, then zeros (RFC 8188, 2) up to
  // a multiple of 1 KiB, so that the push service does not learn a preview's or a sender's
  // length from the body's (all but the largest payloads look alike).
  std::string record(plaintext);
  record.push_back('\x02');
  record.resize(std::min<std::size_t>((record.size() + 1023) / 1024 * 1024, most_record), '\0');
  cipher_ptr c(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  std::string out(record.size() + 16, '\0');
  int len = 0, tail = 0;
  if (!c ||
      EVP_EncryptInit_ex(c.get(), EVP_aes_128_gcm(), nullptr, reinterpret_cast<unsigned char const*>(cek.data()),
                         reinterpret_cast<unsigned char const*>(nonce.data())) != 1 ||
      EVP_EncryptUpdate(c.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                        reinterpret_cast<unsigned char const*>(record.data()), static_cast<int>(record.size())) != 1 ||
      EVP_EncryptFinal_ex(c.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &tail) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_GET_TAG, 16, out.data() + len + tail) != 1)
    return std::nullopt;
  out.resize(static_cast<std::size_t>(len + tail) + 16);
  std::string body = salt;
  body.push_back(static_cast<char>(record_size >> 24));
  body.push_back(static_cast<char>((record_size >> 16) & 0xff));
  body.push_back(static_cast<char>((record_size >> 8) & 0xff));
  body.push_back(static_cast<char>(record_size & 0xff));
  body.push_back(static_cast<char>(as_public.size()));
  body += as_public;
  body += out;
  return body;
}

}  // namespace petchat::notify::detail
