#include "base/format/format.hpp"

#include <sodium.h>

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

namespace {

// The code point of one valid UTF-8 sequence.
char32_t code_point(std::string_view seq) {
  auto b = [&](std::size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(seq[i])); };
  switch (seq.size()) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1f) << 6) | (b(1) & 0x3f);
    case 3:
      return ((b(0) & 0x0f) << 12) | ((b(1) & 0x3f) << 6) | (b(2) & 0x3f);
    default:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3f) << 12) | ((b(2) & 0x3f) << 6) | (b(3) & 0x3f);
  }
}

// C1 controls, and the characters that change how a name reads without being seen:
// direction marks, embeddings, overrides and isolates ("invoice\u202Efdp.exe" shows as
// "invoiceexe.pdf"), zero-width characters and the byte order mark.
bool invisible(char32_t c) {
  return (c >= 0x80 && c <= 0x9f) || c == 0x061c || (c >= 0x200b && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) ||
         (c >= 0x2060 && c <= 0x2069) || c == 0xfeff;
}

}  // namespace

std::optional<std::size_t> plain_text_length(std::string_view s, bool multiline) noexcept {
  std::size_t count = 0;
  while (!s.empty()) {
    std::size_t n = utf8_sequence(s);
    if (n == 0) return std::nullopt;
    auto c = code_point(s.substr(0, n));
    bool line_break = c == '\n' || c == 0x2028 || c == 0x2029;
    bool control = (c < 0x20 || (c >= 0x7f && c <= 0x9f)) && c != '\n';
    bool reorders = (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
    if (control || reorders || (line_break && !multiline)) return std::nullopt;
    s.remove_prefix(n);
    ++count;
  }
  return count;
}

bool shows_something(std::string_view s) noexcept {
  while (!s.empty()) {
    std::size_t n = utf8_sequence(s);
    if (n == 0) return false;
    auto c = code_point(s.substr(0, n));
    bool space = c == ' ' || (c >= 0x09 && c <= 0x0d) || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
                 c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000 || c == 0x115f ||
                 c == 0x1160 || c == 0x3164 || c == 0xffa0 || c == 0x2800;
    // Marks that join or vary the character before them and show nothing alone: a soft
    // hyphen, the grapheme joiner, Khmer's inherent vowels, variation selectors, tags,
    // Mongolian selectors, musical formatting.
    bool blank = c == 0xad || c == 0x34f || c == 0x17b4 || c == 0x17b5 || (c >= 0x180b && c <= 0x180f) ||
                 (c >= 0xfe00 && c <= 0xfe0f) || (c >= 0xe0000 && c <= 0xe0fff) || (c >= 0x1d173 && c <= 0x1d17a);
    space = space || blank;
    if (!space && !invisible(c) && c >= 0x20 && c != 0x7f) return true;
    s.remove_prefix(n);
  }
  return false;
}

std::optional<std::string> clean_file_name(std::string_view name) {
  if (!utf8_length(name)) return std::nullopt;
  auto slash = name.find_last_of("/\\");
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  std::string out;
  out.reserve(name.size());
  while (!name.empty()) {
    std::size_t n = utf8_sequence(name);  // valid: checked above
    auto c = code_point(name.substr(0, n));
    bool bad = c < 0x20 || c == 0x7f ||
               (c < 0x80 && std::string_view("\"*:<>?|").find(static_cast<char>(c)) != std::string_view::npos);
    if (bad || invisible(c))
      out.push_back('_');
    else
      out.append(name.substr(0, n));
    name.remove_prefix(n);
  }
  std::size_t lead = out.find_first_not_of(". ");
  out.erase(0, lead == std::string::npos ? out.size() : lead);
  if (out.size() > 255) {
    std::size_t cut = 255;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
  }
  // Nor trailing ones, which systems drop when they save a file: "page.html." and
  // "page.html " say "page.html".
  while (!out.empty() && (out.back() == '.' || out.back() == ' ')) out.pop_back();
  return out;
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

std::string base64url(std::string_view raw) {
  std::string out(sodium_base64_ENCODED_LEN(raw.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<unsigned char const*>(raw.data()), raw.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::optional<std::string> from_base64url(std::string_view text) {
  std::string out(text.size() * 3 / 4 + 3, '\0');
  std::size_t len = 0;
  char const* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(), nullptr,
                        &len, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's civil algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  auto yoe = static_cast<unsigned>(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

// Exactly `n` ASCII digits at `s[at]`; -1 otherwise.
int digits(std::string_view s, std::size_t at, std::size_t n) {
  if (at + n > s.size()) return -1;
  int v = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

}  // namespace

std::optional<std::int64_t> parse_rfc3339(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), every field its exact width.
  int y = digits(s, 0, 4), mo = digits(s, 5, 2), d = digits(s, 8, 2);
  int h = digits(s, 11, 2), mi = digits(s, 14, 2), sec = digits(s, 17, 2);
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
    return std::nullopt;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
    return std::nullopt;
  static constexpr int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (d > month_days[mo - 1] + (mo == 2 && leap(y))) return std::nullopt;
  std::size_t at = 19;
  std::int64_t ms = 0;
  if (s[at] == '.') {
    std::size_t first = ++at;
    for (int scale = 100; at < s.size() && s[at] >= '0' && s[at] <= '9'; ++at, scale /= 10) ms += (s[at] - '0') * scale;
    if (at == first || at - first > 9) return std::nullopt;
  }
  std::int64_t offset_min = 0;
  if (at < s.size() && (s[at] == 'Z' || s[at] == 'z')) {
    ++at;
  } else if (at < s.size() && (s[at] == '+' || s[at] == '-')) {
    int oh = digits(s, at + 1, 2), om = digits(s, at + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59 || at + 3 >= s.size() || s[at + 3] != ':') return std::nullopt;
    offset_min = (s[at] == '+' ? 1 : -1) * (oh * 60 + om);
    at += 6;
  } else {
    return std::nullopt;
  }
  if (at != s.size()) return std::nullopt;
  std::int64_t secs = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 + h * 3600 +
                      mi * 60 + sec - offset_min * 60;
  if (secs < 0) return std::nullopt;
  return secs * 1000 + ms;
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

std::optional<std::string> from_hex(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out(text.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = digit(text[2 * i]), lo = digit(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

}  // namespace petchat::format
