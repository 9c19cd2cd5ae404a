#include "node/tls/tls.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <stdexcept>

namespace petchat::tls {
namespace {

namespace ssl = boost::asio::ssl;

// OpenSSL's reasons for the last failure, oldest first, without its source locations.
std::string openssl_reason() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char const* reason = ERR_reason_error_string(e);
    if (!out.empty()) out += "; ";
    out += reason ? reason : "unknown OpenSSL error";
  }
  return out.empty() ? std::string("unknown OpenSSL error") : out;
}

// A readable file, or why not (the node's user must be able to read it).
std::optional<std::string> unreadable(std::filesystem::path const& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return std::string(std::strerror(errno));
  std::fclose(f);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return std::string("not a regular file");
  return std::nullopt;
}

// Encrypted keys are refused: a node never waits for a password on its terminal.
int no_password(char*, int, int, void*) {
  return 0;
}

// True if `path` holds an unencrypted PEM private key (of whatever certificate).
bool is_private_key(std::filesystem::path const& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  EVP_PKEY* k = PEM_read_PrivateKey(f, nullptr, no_password, nullptr);
  std::fclose(f);
  ERR_clear_error();
  if (!k) return false;
  EVP_PKEY_free(k);
  return true;
}

std::string describe(SSL_CTX* ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (!cert) return "no certificate";
  char subject[256] = {};
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  std::string until = "?";
  if (BIO* b = BIO_new(BIO_s_mem())) {
    if (ASN1_TIME_print(b, X509_get0_notAfter(cert)) == 1) {
      char* data = nullptr;
      long n = BIO_get_mem_data(b, &data);
      if (n > 0) until.assign(data, static_cast<std::size_t>(n));
    }
    BIO_free(b);
  }
  std::string out = std::string("subject ") + subject + ", valid until " + until;
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) out += " (EXPIRED)";
  std::time_t skewed = std::time(nullptr) + 300;  // as valid_now: 5 minutes of clock skew
  if (X509_cmp_time(X509_get0_notBefore(cert), &skewed) > 0) out += " (NOT VALID YET)";
  return out;
}

// A certificate issued a moment ago by a CA whose clock is a little ahead is valid here too.
bool valid_now(SSL_CTX* ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  std::time_t skewed = std::time(nullptr) + 300;
  return cert && X509_cmp_current_time(X509_get0_notAfter(cert)) > 0 &&
         X509_cmp_time(X509_get0_notBefore(cert), &skewed) < 0;
}

std::int64_t not_after(SSL_CTX* ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  std::tm tm{};
  if (!cert || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

}  // namespace

loaded load(std::filesystem::path const& certificate, std::filesystem::path const& key) {
  loaded out;
  if (auto why = unreadable(certificate)) {
    out.error = "certificate " + certificate.string() + ": " + *why;
    return out;
  }
  if (auto why = unreadable(key)) {
    out.error = "key " + key.string() + ": " + *why;
    return out;
  }
  // As region.key and vapid.pem: a private key every local user can read is refused (the
  // group may read it: the packages give it group petchat).
  if (struct stat st{}; ::stat(key.c_str(), &st) == 0 && (st.st_mode & S_IROTH)) {
    out.error = "key " + key.string() + ": readable by every user; run chmod o-r on it";
    return out;
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  // No session tickets: their key would live as long as the context, weakening forward
  // secrecy of resumed sessions (resumption then uses the server's session cache).
  SSL_CTX_set_options(
      c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
  // Elliptic curves only: finite-field groups (ffdhe8192) would let any client make the
  // node spend ~100 times an X25519 key exchange's CPU per handshake.
  if (SSL_CTX_set1_groups_list(c, "X25519:P-256:P-384") != 1) {
    out.error = "TLS key exchange groups: " + openssl_reason();
    return out;
  }
  // TLS 1.2: forward secrecy and AEAD only (TLS 1.3's suites are all of that kind).
  SSL_CTX_set_cipher_list(c,
                          "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_default_passwd_cb(c, no_password);
  if (SSL_CTX_use_certificate_chain_file(c, certificate.c_str()) != 1) {
    out.error = "certificate " + certificate.string() + ": " + openssl_reason();
    return out;
  }
  if (SSL_CTX_use_PrivateKey_file(c, key.c_str(), SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(c) != 1) {
    auto reason = openssl_reason();
    if (is_private_key(key))
      out.error =
          "key " + key.string() + " does not belong to certificate " + certificate.string() + " (" + reason + ")";
    else
      out.error = "key " + key.string() + ": " + reason;
    return out;
  }
  out.summary = describe(c);
  out.not_after_s = not_after(c);
  out.valid_now = valid_now(c);
  out.context = std::move(ctx);
  return out;
}

server_credentials::server_credentials(std::filesystem::path certificate, std::filesystem::path key) {
  auto l = load(certificate, key);
  if (!l.context) throw std::runtime_error(l.error);
  context_ = std::move(l.context);
  summary_ = std::move(l.summary);
  not_after_s_ = l.not_after_s;
}

bool server_credentials::valid_now() const {
  std::lock_guard lock(mutex_);
  return context_ && tls::valid_now(context_->native_handle());
}

void server_credentials::replace(loaded certificate) {
  std::lock_guard lock(mutex_);
  context_ = std::move(certificate.context);
  summary_ = std::move(certificate.summary);
  not_after_s_ = certificate.not_after_s;
}

std::shared_ptr<boost::asio::ssl::context> server_credentials::context() const {
  std::lock_guard lock(mutex_);
  return context_;
}

std::string server_credentials::summary() const {
  std::lock_guard lock(mutex_);
  return summary_;
}

std::int64_t server_credentials::not_after_s() const {
  std::lock_guard lock(mutex_);
  return not_after_s_;
}

}  // namespace petchat::tls
