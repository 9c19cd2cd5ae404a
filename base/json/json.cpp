#include "base/json/json.hpp"

#include <algorithm>

namespace petchat::json_text {
namespace {

// The length of the valid UTF-8 sequence at s[i] (0 if there is none).
std::size_t utf8_at(std::string_view s, std::size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  std::size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
  if (n == 0 || c > 0xf4 || i + n > s.size()) return 0;
  auto c1 = static_cast<unsigned char>(s[i + 1]);
  if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 > 0x8f))
    return 0;  // overlong, a surrogate, or beyond U+10FFFF
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  return n;
}

}  // namespace

void append_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f) {
      ++i;
      continue;
    }
    std::size_t n = c < 0x80 ? 1 : utf8_at(s, i);
    if (n > 1 && !(n == 3 && c == 0xe2 && s[i + 1] == '\x80' && (s[i + 2] == '\xa8' || s[i + 2] == '\xa9'))) {
      i += n;  // any other well-formed sequence is copied as it is
      continue;
    }
    out.append(s.data() + run, i - run);
    if (n == 0) {
      out.append("\\ufffd");
      n = 1;
    } else if (n == 3) {
      out.append(s[i + 2] == '\xa8' ? "\\u2028" : "\\u2029");
    } else if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c == '\t') {
      out.append("\\t");
    } else {
      out.append("\\u00");
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    }
    i += n;
    run = i;
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

bool read(json::value const& v, std::string& out) {
  if (!v.is_string()) return false;
  out.assign(v.get_string().data(), v.get_string().size());
  return true;
}

bool read(json::value const& v, bool& out) {
  if (!v.is_bool()) return false;
  out = v.get_bool();
  return true;
}

namespace {

// All of `s` as a decimal integer of Int's range: digits only, after a '-' for `negative_ok`.
template <typename Int>
bool digits(json::string const& s, Int& out, bool negative_ok) {
  std::size_t from = negative_ok && !s.empty() && s[0] == '-' ? 1 : 0;
  if (s.size() == from || s.size() > 20 + from ||
      !std::all_of(s.begin() + from, s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

bool read(json::value const& v, std::uint64_t& out, std::uint64_t max) {
  if (v.is_uint64()) {
    out = v.get_uint64();
  } else if (v.is_int64() && v.get_int64() >= 0) {
    out = static_cast<std::uint64_t>(v.get_int64());
  } else if (!v.is_string() || !digits(v.get_string(), out, false)) {
    return false;
  }
  return out <= max;
}

bool read(json::value const& v, std::int64_t& out) {
  if (v.is_int64()) {  // Boost.JSON keeps every integer that fits as int64
    out = v.get_int64();
    return true;
  }
  return v.is_string() && digits(v.get_string(), out, true);
}

}  // namespace petchat::json_text
