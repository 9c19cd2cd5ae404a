#include "node/format/format.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace petchat::format {

std::size_t utf8_sequence(std::string_view s) noexcept {
  if (s.empty()) return 0;
  auto b = static_cast<unsigned char>(s[0]);
  if (b < 0x80) return 1;
  // RFC 3629: the lead byte gives the length and the range of the second byte, which
  // excludes overlong forms, UTF-16 surrogates (ED A0..BF) and code points above U+10FFFF.
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (n > s.size()) return 0;
  auto second = static_cast<unsigned char>(s[1]);
  if (second < lo || second > hi) return 0;
  for (std::size_t i = 2; i < n; ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) return 0;
  return n;
}

std::optional<std::size_t> utf8_length(std::string_view s) noexcept {
  std::size_t count = 0;
  while (!s.empty()) {
    std::size_t n = utf8_sequence(s);
    if (n == 0) return std::nullopt;
    s.remove_prefix(n);
    ++count;
  }
  return count;
}

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string rfc3339(std::int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm;
  gmtime_r(&t, &tm);
  char out[80];
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return out;
}

std::string hex(std::string_view bytes) {
  static char const digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

}  // namespace petchat::format
