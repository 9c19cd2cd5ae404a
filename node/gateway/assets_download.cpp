// Downloads of assets (docs/PROTOCOL.md, "GET /v1/assets/{id}"): access, the safe way to
// serve what a user uploaded (type, disposition, sandbox), conditional and range requests.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <vector>

#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/user_api.hpp"

namespace petchat::gateway {

using errors::code;
using errors::fail;
using namespace detail;

namespace {

// Types shown in place; everything else is a download of application/octet-stream.
bool shown_inline(std::string_view t) {
  if (t == "image/svg+xml") return false;
  return t == "image/jpeg" || t == "image/png" || t == "image/gif" || t == "image/webp" || t == "image/heic" ||
         t == "image/heif" || t == "image/avif" || t == "image/bmp" || t.starts_with("audio/") ||
         t.starts_with("video/");
}
bool safe_type(std::string_view t) {
  return shown_inline(t) || t == "text/plain";
}

// The extensions that fit a type the node sniffs, its usual one first (none: not listed).
std::vector<std::string_view> const& extensions_of(std::string_view t) {
  static std::map<std::string_view, std::vector<std::string_view>> const known{
      {"image/jpeg", {"jpg", "jpeg", "jpe", "jfif"}},
      {"image/png", {"png"}},
      {"image/gif", {"gif"}},
      {"image/webp", {"webp"}},
      {"application/pdf", {"pdf"}},
      {"audio/ogg", {"ogg", "oga", "opus"}},
      {"audio/mpeg", {"mp3", "mpga"}},
      {"video/mp4", {"mp4", "m4v", "m4a"}}};
  static std::vector<std::string_view> const none;
  auto it = known.find(t);
  return it == known.end() ? none : it->second;
}

std::string extension_of(std::string_view t) {
  if (t == "text/plain") return ".txt";
  auto const& fit = extensions_of(t);
  return fit.empty() ? "" : "." + std::string(fit.front());
}

// A name whose extension fits the sniffed type: a file that is both a picture and a page,
// named `holiday.jpg.html`, would otherwise be saved as a page the system opens as one.
// Types with known extensions get theirs appended when the name has none of them; other
// names keep theirs unless it is one a system opens as active content and the bytes were
// not sniffed as that very content (an Office file's type holds "xml", and is no page).
std::string fitting_name(std::string name, std::string_view type) {
  static std::map<std::string_view, std::string_view> const active{
      {"htm", "html"},
      {"html", "html"},
      {"xhtml", "html"},
      {"xht", "html"},
      {"shtml", "html"},
      {"mht", "html"},
      {"mhtml", "html"},
      {"hta", "html"},
      {"svg", "svg"},
      {"svgz", "svg"},
      {"xml", "xml"},
      {"xsl", "xml"},
      {"js", "script"},
      {"mjs", "script"},
      {"url", ""},
      {"desktop", ""},
      {"lnk", ""},
      {"scf", ""},
      // Windows shell and location files: opened, or merely shown, they fetch what they name
      // (an icon on a remote share gives the user's NTLM hash away).
      {"library-ms", ""},
      {"searchconnector-ms", ""},
      {"webloc", ""},
      {"inetloc", ""}};
  auto dot = name.rfind('.');
  std::string ext = dot == std::string::npos ? "" : name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (auto const& fit = extensions_of(type); !fit.empty())
    return std::find(fit.begin(), fit.end(), ext) != fit.end() ? name : name + "." + std::string(fit.front());
  auto kind = type == "text/html" || type == "application/xhtml+xml"          ? "html"
              : type == "image/svg+xml"                                       ? "svg"
              : type == "text/xml" || type == "application/xml"               ? "xml"
              : type == "text/javascript" || type == "application/javascript" ? "script"
                                                                              : "";
  auto needs = active.find(ext);
  if (needs == active.end() || (!needs->second.empty() && needs->second == kind)) return name;
  return name + (type.starts_with("text/") ? ".txt" : ".bin");
}

// Content-Disposition with a cleaned name: an ASCII fallback and the UTF-8 name.
std::string disposition(bool attachment, std::string const& name) {
  std::string ascii, encoded;
  static char const hex[] = "0123456789ABCDEF";
  for (unsigned char c : name) {
    ascii.push_back(c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '%' ? static_cast<char>(c) : '_');
    if (std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == '~') {
      encoded.push_back(static_cast<char>(c));
    } else {
      encoded.push_back('%');
      encoded.push_back(hex[c >> 4]);
      encoded.push_back(hex[c & 15]);
    }
  }
  return std::string(attachment ? "attachment" : "inline") + "; filename=\"" + ascii + "\"; filename*=UTF-8''" +
         encoded;
}

struct byte_range {
  std::uint64_t first = 0, length = 0;
};

// Digits; more than 64 bits of them count as the greatest number (a range's end or a
// suffix that long is cut to the size, as a smaller one past it is).
std::optional<std::uint64_t> number(std::string_view s) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || end != s.data() + s.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) return std::numeric_limits<std::uint64_t>::max();
  if (ec != std::errc{}) return std::nullopt;
  return v;
}

// Whether a Range header is in bytes (the unit is case-insensitive). A unit that is no
// token (empty, with spaces) is malformed, not another unit: refused below.
bool bytes_unit(std::string_view h) {
  auto eq = h.find('=');
  if (eq == std::string_view::npos) return true;  // malformed: refused as such below
  auto unit = h.substr(0, eq);
  auto tchar = [](unsigned char c) {
    return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  };
  if (unit.empty() || !std::all_of(unit.begin(), unit.end(), tchar)) return true;
  return unit.size() == 5 && std::equal(unit.begin(), unit.end(), "bytes", [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

// Whether an If-None-Match header names `etag`: `*`, or a list of tags compared weakly
// (RFC 9110, 13.1.2: `W/"x"` matches `"x"`).
bool matches_any(std::string_view h, std::string_view etag) {
  auto trim = [](std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
  };
  if (trim(h) == "*") return true;
  while (!h.empty()) {
    auto comma = h.find(',');
    auto tag = trim(h.substr(0, comma));
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == etag) return true;
    h = comma == std::string_view::npos ? std::string_view{} : h.substr(comma + 1);
  }
  return false;
}

// One range of a Range header against `size`: nullopt if it is malformed, names several
// ranges, or cannot be satisfied.
std::optional<byte_range> parse_range(std::string_view h, std::uint64_t size) {
  constexpr std::string_view unit = "bytes=";  // (any case: bytes_unit)
  if (h.size() < unit.size() || h[unit.size() - 1] != '=') return std::nullopt;
  h.remove_prefix(unit.size());
  if (h.find(',') != std::string_view::npos) return std::nullopt;
  auto dash = h.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto first = h.substr(0, dash), last = h.substr(dash + 1);
  if (first.empty()) {  // the last n bytes
    auto n = number(last);
    if (!n || *n == 0 || size == 0) return std::nullopt;
    auto len = std::min(*n, size);
    return byte_range{size - len, len};
  }
  auto a = number(first);
  if (!a || *a >= size) return std::nullopt;
  std::uint64_t b = size - 1;
  if (!last.empty()) {
    auto given = number(last);
    if (!given || *given < *a) return std::nullopt;
    b = std::min(*given, size - 1);
  }
  return byte_range{*a, b - *a + 1};
}

}  // namespace

// `by_link`: a download link's GET (a browser's navigation, not the client's fetch): always
// a download, kept by no cache, and no Referer to whatever the file opens.
awaitable<response> download(std::shared_ptr<user_api> api, request r, users::principal const& who, std::string id,
                             bool by_link) {
  auto hash = assets::parse_id(id);
  auto a = hash.empty() ? errors::result<messages::asset_view>(fail(code::asset_not_found, "no such asset"))
                        : api->assets->find(api->id_of(who), hash);
  if (!a) co_return error_response(a.error());
  auto etag = "\"" + id + "\"";
  response res;
  res.headers = {{"ETag", etag},
                 {"Accept-Ranges", "bytes"},
                 {"X-Content-Type-Options", "nosniff"},
                 {"Content-Security-Policy", "default-src 'none'; sandbox"}};
  if (by_link) {
    res.headers.emplace_back("Cache-Control", "no-store");
    res.headers.emplace_back("Referrer-Policy", "no-referrer");
  } else {
    res.headers.emplace_back("Cache-Control", "private, max-age=31536000, immutable");
    // Kept by a browser for the token that fetched it only: not handed to a request
    // without one (or with another user's) from its cache.
    res.headers.emplace_back("Vary", "Authorization");
  }
  std::string name;
  if (auto asked = query_param(r.query, "name")) {
    auto clean = format::clean_file_name(*asked);
    if (!clean) co_return error_response(fail(code::invalid_field, "name must be UTF-8", "name"));
    name = *clean;
  }
  if (matches_any(r.header("if-none-match"), etag)) {
    res.status = 304;
    res.content_type.clear();
    co_return res;
  }
  bool safe = safe_type(a->content_type);
  res.content_type = safe ? a->content_type : "application/octet-stream";
  if (name.empty() && a->uploaded_by_caller) name = a->name;
  if (name.empty()) name = id + extension_of(a->content_type);
  name = fitting_name(std::move(name), a->content_type);
  res.headers.emplace_back("Content-Disposition", disposition(by_link || !shown_inline(a->content_type), name));
  res.file_offset = 0;
  res.file_length = a->size;
  auto range = r.header("range");
  auto if_range = r.header("if-range");
  // A range in a unit other than bytes is ignored (RFC 9110, 14.2): the whole asset.
  if (!range.empty() && !bytes_unit(range)) range = {};
  if (!range.empty() && (if_range.empty() || if_range == etag)) {
    auto part = parse_range(range, a->size);
    if (!part) {
      auto bad =
          error_response(fail(code::range_not_satisfiable, "one range of bytes within the asset's " +
                                                               std::to_string(a->size) + " bytes, e.g. bytes=0-1023"));
      bad.headers.emplace_back("Content-Range", "bytes */" + std::to_string(a->size));
      co_return bad;
    }
    res.status = 206;
    res.file_offset = part->first;
    res.file_length = part->length;
    res.headers.emplace_back("Content-Range", "bytes " + std::to_string(part->first) + "-" +
                                                  std::to_string(part->first + part->length - 1) + "/" +
                                                  std::to_string(a->size));
  }
  res.file = api->assets->open(hash);
  // Collected meanwhile (its last message went a moment ago): as if it had never been.
  if (!res.file && !api->assets->find(api->id_of(who), hash))
    co_return error_response(fail(code::asset_not_found, "no such asset"));
  if (!res.file) co_return error_response(fail(code::internal, "the asset's bytes cannot be read"));
  co_return res;
}

}  // namespace petchat::gateway
