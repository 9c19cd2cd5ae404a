// The web client's files (see web.hpp).
#include "node/web/web.hpp"

#include <sodium.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#ifndef PETCHAT_WEB_DIR
#define PETCHAT_WEB_DIR "/usr/share/petchat/web"
#endif

namespace petchat::web {

namespace fs = std::filesystem;

namespace {

// What a page may do (docs/PROTOCOL.md, "The web client"): scripts and styles from the
// node only (no inline code), connections back to the node only, no framing, no form
// ever submitted by the browser itself (the client's forms are handled by its code), and
// Trusted Types for every script sink: markup assigned as a string (innerHTML and the like)
// throws, and the only script URL the page may make is its service worker's (policy
// `petchat`, web/src/trusted.ts).
constexpr char const* content_security_policy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self' blob:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types petchat";
// Powerful browser features the client does not use, off for the page and anything it could load.
constexpr char const* permissions_policy =
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), display-capture=()";

std::string type_of(fs::path const& p) {
  static std::map<std::string, std::string, std::less<>> const types = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".webmanifest", "application/manifest+json"},
      {".map", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".webp", "image/webp"},
      {".woff2", "font/woff2"},
      {".txt", "text/plain; charset=utf-8"},
  };
  auto it = types.find(p.extension().string());
  return it == types.end() ? "application/octet-stream" : it->second;
}

std::string read_all(fs::path const& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("web client: cannot read " + p.string());
  std::ostringstream out;
  out << in.rdbuf();
  return std::move(out).str();
}

std::string etag_of(std::string const& body, char const* suffix) {
  std::array<unsigned char, 16> h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<unsigned char const*>(body.data()), body.size(), nullptr, 0);
  std::array<char, 33> hex{};
  sodium_bin2hex(hex.data(), hex.size(), h.data(), h.size());
  return "\"" + std::string(hex.data()) + suffix + "\"";
}

bool accepts_gzip(std::string_view accept_encoding) {
  // "gzip" listed without q=0 (a client that lists it with q=0 refuses it).
  std::size_t at = 0;
  while (at < accept_encoding.size()) {
    auto end = accept_encoding.find(',', at);
    auto item = accept_encoding.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
    at = end == std::string_view::npos ? accept_encoding.size() : end + 1;
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    auto semi = item.find(';');
    auto name = item.substr(0, semi);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (name != "gzip" && name != "x-gzip") continue;
    if (semi == std::string_view::npos) return true;
    auto params = item.substr(semi + 1);
    auto q = params.find("q=");
    if (q == std::string_view::npos) return true;
    auto value = params.substr(q + 2);
    value = value.substr(0, value.find_first_of(" ;,"));
    double weight = 1;
    std::from_chars(value.data(), value.data() + value.size(), weight);
    return weight > 0;
  }
  return false;
}

bool etag_matches(std::string_view if_none_match, std::string const& etag) {
  if (if_none_match == "*") return true;
  return if_none_match.find(etag) != std::string_view::npos;
}

}  // namespace

std::shared_ptr<site const> site::load(fs::path const& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw std::runtime_error("web client: " + root.string() + " is not a directory");
  if (!fs::is_regular_file(root / "index.html", ec))
    throw std::runtime_error("web client: " + root.string() + " has no index.html (build it: ninja -C build)");
  auto out = std::make_shared<site>();
  std::map<std::string, std::string> gzipped;  // URL path of the plain file -> its gzip body
  std::size_t total = 0;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);  // links not followed
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    auto name = it->path().filename().string();
    if (name.starts_with(".")) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    // Symbolic links are not served (nor followed into directories): nothing outside.
    if (it->is_symlink() || !it->is_regular_file()) continue;
    if (out->files_.size() + gzipped.size() >= max_files)
      throw std::runtime_error("web client: more than " + std::to_string(max_files) + " files in " + root.string());
    auto body = read_all(it->path());
    total += body.size();
    if (total > max_total_bytes) throw std::runtime_error("web client: more than 64 MiB in " + root.string());
    auto url = "/" + it->path().lexically_relative(root).generic_string();  // no link resolved
    if (url.ends_with(".gz") && url.size() > 4) {
      gzipped[url.substr(0, url.size() - 3)] = std::move(body);
      continue;
    }
    file f;
    f.type = type_of(it->path());
    f.etag = etag_of(body, "");
    f.immutable = url.starts_with("/assets/");
    f.body = std::move(body);
    out->files_.emplace(std::move(url), std::move(f));
  }
  if (ec) throw std::runtime_error("web client: cannot list " + root.string() + ": " + ec.message());
  for (auto& [url, body] : gzipped) {
    auto it = out->files_.find(url);
    if (it == out->files_.end()) continue;
    it->second.gzip_etag = etag_of(it->second.body, "-gz");
    it->second.gzip = std::move(body);
  }
  return out;
}

std::optional<reply> site::serve(std::string_view method, std::string_view path, std::string_view accept_encoding,
                                 std::string_view if_none_match) const {
  if (path == "/") path = "/index.html";
  auto it = files_.find(path);
  if (it == files_.end()) return std::nullopt;
  auto const& f = it->second;
  reply r;
  if (method != "GET" && method != "HEAD") {
    r.status = 405;
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  bool gzip = !f.gzip.empty() && accepts_gzip(accept_encoding);
  auto const& etag = gzip ? f.gzip_etag : f.etag;
  r.content_type = f.type;
  r.headers = {{"ETag", etag},
               {"Cache-Control", f.immutable ? "public, max-age=31536000, immutable" : "no-cache"},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"},
               // Only this node's own pages may load its files (no other site embeds them).
               {"Cross-Origin-Resource-Policy", "same-origin"}};
  if (!f.gzip.empty()) r.headers.emplace_back("Vary", "Accept-Encoding");
  if (f.type.starts_with("text/html")) {
    r.headers.emplace_back("Content-Security-Policy", content_security_policy);
    r.headers.emplace_back("Permissions-Policy", permissions_policy);
    r.headers.emplace_back("X-Frame-Options", "DENY");
    // A page that opened this one (window.open) gets no handle on it: it cannot later send
    // the tab to a look-alike login page.
    r.headers.emplace_back("Cross-Origin-Opener-Policy", "same-origin");
  } else {
    // Not a page, but opened as one directly (an SVG is a document) or run as a worker (the
    // service worker takes its policy from its own answer): allowed nothing.
    bool script = f.type.starts_with("text/javascript") || f.type.starts_with("application/javascript");
    r.headers.emplace_back("Content-Security-Policy", script ? "default-src 'none'" : "default-src 'none'; sandbox");
  }
  if (etag_matches(if_none_match, etag)) {
    r.status = 304;
    return r;
  }
  if (gzip) r.headers.emplace_back("Content-Encoding", "gzip");
  r.body = gzip ? f.gzip : f.body;
  return r;
}

fs::path default_root(fs::path const& configured) {
  if (!configured.empty()) return configured;
  std::error_code ec;
  fs::path installed = PETCHAT_WEB_DIR;
  if (fs::is_regular_file(installed / "index.html", ec)) return installed;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto built = self.parent_path() / ".." / ".." / "web" / "dist";
    if (fs::is_regular_file(built / "index.html", ec)) return built.lexically_normal();
  }
  return {};
}

}  // namespace petchat::web
