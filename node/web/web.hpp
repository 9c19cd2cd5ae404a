// The web client's files, served by the user gateway at `/` (docs/PROTOCOL.md, "The web
// client"): read once at start into memory — nothing on disk is looked up per request, so
// no path a client sends can reach outside the directory — with their gzip siblings, an
// ETag each, and the headers that keep the page safe (a strict Content-Security-Policy).
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace petchat::web {

inline constexpr std::size_t max_files = 2000;
inline constexpr std::size_t max_total_bytes = 64 * 1024 * 1024;

struct reply {
  unsigned status = 200;
  std::string_view body;  // into the site, which outlives it
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
};

class site {
 public:
  // Every regular file under `root` (names starting with '.' and symbolic links skipped;
  // `x.gz` is the gzip form of `x`). Throws std::runtime_error saying what is wrong (missing, no index.html,
  // too many files or bytes).
  static std::shared_ptr<site const> load(std::filesystem::path const& root);

  // The answer to `method` on `path` (the target up to '?'), or nullopt when no file is
  // there. "/" is index.html. Only GET and HEAD (else 405).
  std::optional<reply> serve(std::string_view method, std::string_view path, std::string_view accept_encoding,
                             std::string_view if_none_match) const;

  std::size_t files() const { return files_.size(); }

  struct file {
    std::string body, gzip;  // gzip: empty when there is none
    std::string type, etag, gzip_etag;
    bool immutable = false;  // under /assets/: its name carries its hash
  };

 private:
  std::map<std::string, file, std::less<>> files_;  // by URL path
};

// The directory of the client the build made or the package installed: `configured` if
// not empty, else the first of <datadir>/petchat/web (installed) and <the binary's
// directory>/../../web/dist (the build tree) that has an index.html; empty if none has.
std::filesystem::path default_root(std::filesystem::path const& configured);

}  // namespace petchat::web
