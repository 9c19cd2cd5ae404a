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

TEST_CASE("C1 controls and line separators are escaped too; a printable name holds no quote") {
  CHECK(escaped("nel\xc2\x85"
                "csi\xc2\x9b"
                "31m") == "nel\\u0085csi\\u009b31m");
  CHECK(escaped("a\xe2\x80\xa8"
                "b\xe2\x80\xa9"
                "c") == "a\\u2028b\\u2029c");
  CHECK(escaped("nbsp\xc2\xa0 ok") == "nbsp\xc2\xa0 ok");
  // The audit log quotes names as '...': a name of "x' from 203.0.113.9" cannot end it.
  CHECK(petchat::log::printable("x' from 203.0.113.9") == "x\\u0027 from 203.0.113.9");
}
