#include "base/format/format.hpp"

#include <doctest/doctest.h>

#include <string>

using petchat::format::clean_file_name;
using petchat::format::from_base64url;
using petchat::format::parse_rfc3339;
using petchat::format::plain_text_length;
using petchat::format::rfc3339;

TEST_CASE("RFC 3339: what history filters accept") {
  CHECK(parse_rfc3339("2026-11-30T06:30:00Z") == 1796020200000);
  CHECK(parse_rfc3339("2026-11-30T06:30:00.123Z") == 1796020200123);
  CHECK(parse_rfc3339("2026-11-30t06:30:00.5z") == 1796020200500);
  CHECK(parse_rfc3339("2026-11-30T07:30:00+01:00") == 1796020200000);
  CHECK(parse_rfc3339("2026-11-30T06:30:00+00:00") == 1796020200000);
  CHECK(parse_rfc3339("2026-11-29T22:30:00-08:00") == 1796020200000);
  CHECK(parse_rfc3339("2024-02-29T00:00:00Z").has_value());  // a leap day
  CHECK(parse_rfc3339("2026-11-30T06:30:00.123456789Z") == 1796020200123);
  // What the printer writes, the parser reads back.
  CHECK(parse_rfc3339(rfc3339(1796020200123)) == 1796020200123);
}

TEST_CASE("RFC 3339: everything else is refused") {
  for (char const* bad :
       {"", "2026-11-30", "2026-11-30T06:30:00", "2026-11-30T06:30Z", "2026-11-30T06:30:00.Z", "2026-01-01T00:00:nanZ",
        "2026-01-01T-5:-9:00Z", "2026-02-31T00:00:00Z", "2025-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
        "2026-11-30T24:00:00Z", "2026-11-30T06:60:00Z", "2026-11-30T06:30:00+0100", "2026-11-30T06:30:00+24:00",
        "2026-11-30 06:30:00Z", "+2026-11-30T06:30:00Z", "1969-12-31T23:59:59Z", "2026-11-30T06:30:00Zjunk",
        "2026-11-30T06:30:00.1234567890Z"})
    CHECK_MESSAGE(!parse_rfc3339(bad), bad);
}

TEST_CASE("base64url: ids and tokens round-trip; anything else is refused") {
  std::string raw("\x00\x01\xfe\xff ids", 8);
  auto text = petchat::format::base64url(raw);
  CHECK(text.find_first_of("+/=") == std::string::npos);
  CHECK(from_base64url(text) == raw);
  CHECK(!from_base64url(text + "="));
  CHECK(!from_base64url("a+b/"));
  CHECK(!from_base64url("a b"));
}

TEST_CASE("plain_text_length: names and lines without controls or reordering") {
  CHECK(plain_text_length("Grüße 😀", false) == 7);
  CHECK(plain_text_length("", false) == 0);
  // Zero-width joiners and direction marks are part of real names.
  CHECK(plain_text_length("👩\u200D💻 \u05E9\u200F", false) == 6);
  CHECK(!plain_text_length("esc\x1b[2J", false));
  CHECK(!plain_text_length("del\x7f", false));
  CHECK(!plain_text_length("csi\u009B2J", false));  // C1, as UTF-8
  CHECK(!plain_text_length("invoice\u202Efdp.exe", false));
  CHECK(!plain_text_length("a\u2066b", true));
  CHECK(!plain_text_length("a\nb", false));
  CHECK(plain_text_length("a\nb", true) == 3);
  CHECK(!plain_text_length("a\u2028b", false));
  CHECK(plain_text_length("a\u2029b", true) == 3);
  CHECK(!plain_text_length("a\rb", true));
  CHECK(!plain_text_length("\xff", true));
  CHECK(!plain_text_length(std::string("a\0b", 3), true));
}

TEST_CASE("clean_file_name: nothing that hides or reorders what a name says") {
  CHECK(clean_file_name("../../etc/passwd") == "passwd");
  CHECK(clean_file_name(std::string("a\0b.txt", 7)) == "a_b.txt");
  // A right-to-left override would show "invoice\u202Efdp.exe" as "invoiceexe.pdf".
  CHECK(clean_file_name("invoice\u202Efdp.exe") == "invoice_fdp.exe");
  CHECK(clean_file_name("a\u2066b\u2069c\u200Fd\u200Be\uFEFFf\u061Cg") == "a_b_c_d_e_f_g");
  CHECK(clean_file_name("c1\u0085x") == "c1_x");  // NEL, a C1 control
  // What reads as itself stays, byte for byte.
  CHECK(clean_file_name("Grüße – 写真 😀.jpg") == "Grüße – 写真 😀.jpg");
  // Characters whose code point ends in the byte of a refused ASCII character are kept:
  // ż is U+017C (| is 0x7C), 个 is U+4E2A (* is 0x2A), Ī is U+012A, ĺ is U+013A (: is 0x3A).
  CHECK(clean_file_name("żółw 个 Ī ĺ.jpg") == "żółw 个 Ī ĺ.jpg");
  CHECK(clean_file_name("a:b?.txt") == "a_b_.txt");
  // Nor dots and spaces at either end, which systems drop when they save a file.
  CHECK(clean_file_name("page.html. . ") == "page.html");
  CHECK(clean_file_name(" .hidden.txt") == "hidden.txt");
  CHECK(clean_file_name("...") == "");
  CHECK(!clean_file_name("\xff"));
}

TEST_CASE("shows_something: a name of only spaces and invisible characters reads as no name") {
  using petchat::format::shows_something;
  CHECK(shows_something("a"));
  CHECK(shows_something("  Zoë  "));
  CHECK(
      shows_something("\xe2\x80\x8b"
                      "x"));                   // a zero-width space before a letter
  CHECK(shows_something("\xf0\x9f\x98\x80"));  // an emoji
  CHECK_FALSE(shows_something(""));
  CHECK_FALSE(shows_something("   "));
  CHECK_FALSE(shows_something("\xe2\x80\x8b"));              // U+200B zero-width space
  CHECK_FALSE(shows_something("\xe2\x80\x8f\xc2\xa0"));      // a right-to-left mark and a no-break space
  CHECK_FALSE(shows_something("\xe3\x85\xa4"));              // U+3164 Hangul filler
  CHECK_FALSE(shows_something("\xe2\xa0\x80"));              // U+2800 Braille blank
  CHECK_FALSE(shows_something("\xef\xbb\xbf\xe3\x80\x80"));  // a byte order mark and an ideographic space
}
