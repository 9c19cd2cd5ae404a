// The chat gateway's TLS certificate and key: loaded from PEM files with modern defaults
// (TLS 1.2 and 1.3 only; for 1.2, ECDHE key exchange with AEAD ciphers; no compression, no
// renegotiation), and replaceable while connections run (SIGHUP after a renewal). Each new
// connection takes the current context; open connections keep the one they started with.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

namespace petchat::tls {

// A loaded certificate chain and its key, or why they could not be loaded.
struct loaded {
  std::shared_ptr<boost::asio::ssl::context> context;  // null on failure
  std::string error;                                   // names the file and the reason
  std::string summary;                                 // "subject CN=chat.example.org, valid until ..."
  std::int64_t not_after_s = 0;                        // the certificate's end, Unix seconds
  bool valid_now = false;  // now is within notBefore (less 5 minutes of clock skew)..notAfter
};

// Reads `certificate` (PEM, the server's certificate first, then its chain) and `key` (PEM)
// and checks that they belong together.
loaded load(std::filesystem::path const& certificate, std::filesystem::path const& key);

class server_credentials {
 public:
  // Throws std::runtime_error with load()'s error.
  server_credentials(std::filesystem::path certificate, std::filesystem::path key);

  // Takes a certificate load() made (it must have a context). Any thread.
  void replace(loaded certificate);

  // The context for a new connection. Any thread.
  std::shared_ptr<boost::asio::ssl::context> context() const;
  std::string summary() const;
  std::int64_t not_after_s() const;
  // The certificate in use is valid now (see loaded::valid_now).
  bool valid_now() const;

 private:
  mutable std::mutex mutex_;  // guards the two below; never held across I/O
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::string summary_;
  std::int64_t not_after_s_ = 0;
};

}  // namespace petchat::tls
