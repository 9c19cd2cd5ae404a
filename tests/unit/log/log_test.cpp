#include <doctest/doctest.h>

#include <string>

#include "node/log/log.hpp"

using petchat::log::append_json_escaped;

namespace {
std::string escaped(std::string_view s) {
  std::string out;
  append_json_escaped(out, s);
  return out;
}
}  // namespace

TEST_CASE("JSON escaping keeps ECS log lines valid JSON") {
  CHECK(escaped("plain text") == "plain text");
  CHECK(escaped("say \"hi\"") == "say \\\"hi\\\"");
  CHECK(escaped("C:\\path") == "C:\\\\path");
  CHECK(escaped("two\nlines\r\tend") == "two\\nlines\\r\\tend");
  CHECK(escaped(std::string("nul\0bell\x07", 9)) == "nul\\u0000bell\\u0007");
  CHECK(escaped("del\x7f") == "del\\u007f");
}

TEST_CASE("valid UTF-8 passes through; invalid bytes become U+FFFD") {
  CHECK(escaped("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") == "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  CHECK(escaped("bad \xff byte") == "bad \\ufffd byte");
  CHECK(escaped("cut \xe2\x82") == "cut \\ufffd\\ufffd");
  CHECK(escaped("overlong \xc0\xaf") == "overlong \\ufffd\\ufffd");
}
