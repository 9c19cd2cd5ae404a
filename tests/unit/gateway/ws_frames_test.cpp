#include "node/gateway/detail/ws_frames.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace petchat::gateway::detail::ws_frames;

namespace {

// A client frame: masked with a fixed key, as RFC 6455 requires of clients.
std::string client_frame(std::uint8_t first_byte, std::string_view payload, bool masked = true) {
  std::string out;
  out.push_back(static_cast<char>(first_byte));
  std::size_t n = payload.size();
  std::uint8_t mask_bit = masked ? 0x80 : 0;
  if (n < 126) {
    out.push_back(static_cast<char>(mask_bit | n));
  } else if (n <= 0xffff) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((std::uint64_t(n) >> shift) & 0xff));
  }
  unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked) out.append(reinterpret_cast<char const*>(key), 4);
  for (std::size_t i = 0; i < n; ++i) out.push_back(masked ? static_cast<char>(payload[i] ^ key[i & 3]) : payload[i]);
  return out;
}

constexpr std::uint8_t fin = 0x80;

}  // namespace

TEST_CASE("the accept key of RFC 6455's example, and key validation") {
  CHECK(accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  CHECK(valid_client_key("dGhlIHNhbXBsZSBub25jZQ=="));
  CHECK_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ"));       // too short
  CHECK_FALSE(valid_client_key("!!!!IHNhbXBsZSBub25jZQ=="));     // not base64
  CHECK_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZXh4eA="));  // not 16 bytes
}

TEST_CASE("server frames: header lengths and close payloads") {
  CHECK(frame(opcode::text, "hi") == std::string("\x81\x02hi", 4));
  auto mid = frame(opcode::binary, std::string(300, 'x'));
  CHECK(mid.substr(0, 4) == std::string("\x82\x7e\x01\x2c", 4));
  CHECK(mid.size() == 304);
  auto big = frame(opcode::binary, std::string(70000, 'x'));
  CHECK(big.substr(0, 2) == std::string("\x82\x7f", 2));
  CHECK(big.size() == 70010);
  auto c = close_frame(4001, std::string(200, 'r'));
  CHECK(c.size() == 2 + 125);  // a control frame's payload is at most 125 bytes
  CHECK(c.substr(0, 4) == std::string("\x88\x7d\x0f\xa1", 4));
}

TEST_CASE("messages whole, split across reads, fragmented, with control frames between") {
  reader r(1 << 20);
  std::string bytes = client_frame(fin | 1, "hello") + client_frame(fin | 2, std::string(300, 'b')) +
                      client_frame(1, "frag") + client_frame(fin | 9, "ping!") + client_frame(fin | 0, "mented") +
                      client_frame(fin | 10, "pong") +
                      client_frame(fin | 8,
                                   "\x03\xe8"
                                   "bye");
  // Fed one byte at a time: every event comes out once its last byte is in.
  std::vector<std::string> seen;
  for (char ch : bytes) {
    r.feed(std::string_view(&ch, 1));
    for (auto e = r.next(); e.what != reader::event::need_more; e = r.next()) {
      REQUIRE(e.what != reader::event::error);
      if (e.what == reader::event::message) seen.push_back((e.text ? "text:" : "binary:") + std::string(e.payload));
      if (e.what == reader::event::ping) seen.push_back("ping:" + std::string(e.payload));
      if (e.what == reader::event::close) seen.push_back("close:" + std::to_string(e.code) + ":" + e.reason);
    }
  }
  REQUIRE(seen.size() == 5);
  CHECK(seen[0] == "text:hello");
  CHECK(seen[1] == "binary:" + std::string(300, 'b'));
  CHECK(seen[2] == "ping:ping!");  // control frames may come between fragments
  CHECK(seen[3] == "text:fragmented");
  CHECK(seen[4] == "close:1000:bye");
  CHECK_FALSE(r.holds_memory());  // everything consumed: nothing kept
}

TEST_CASE("protocol violations end the connection with the right close code") {
  struct bad {
    std::string bytes;
    std::uint16_t code;
  };
  std::vector<bad> cases = {
      {client_frame(fin | 1, "hi", /*masked=*/false), close_protocol_error},
      {client_frame(fin | 0x40 | 1, "hi"), close_protocol_error},  // RSV1 without an extension
      {client_frame(fin | 3, "hi"), close_protocol_error},         // reserved opcode
      {client_frame(9, "ping"), close_protocol_error},             // fragmented control frame
      {client_frame(fin | 9, std::string(126, 'p')), close_protocol_error},
      {client_frame(fin | 0, "orphan"), close_protocol_error},
      {client_frame(1, "a") + client_frame(fin | 1, "b"), close_protocol_error},
      {client_frame(fin | 1, "\xff\xfe"), close_invalid_payload},
      {client_frame(fin | 1, "\xed\xa0\x80"), close_invalid_payload},      // a UTF-16 surrogate
      {client_frame(fin | 1, "\xe0\x80\xaf"), close_invalid_payload},      // overlong '/'
      {client_frame(fin | 1, "\xf4\x90\x80\x80"), close_invalid_payload},  // above U+10FFFF
      {client_frame(fin | 1, "\xf5\x80\x80\x80"), close_invalid_payload},
      {client_frame(1, "\xe2\x82") + client_frame(fin | 0, "x"), close_invalid_payload},  // split character, then junk
      {client_frame(fin | 8, "\x03"), close_protocol_error},
      {client_frame(fin | 8, "\x03\xed"), close_protocol_error},  // 1005 may not be sent
      {client_frame(fin | 2, std::string(1025, 'x')), close_too_big},
      {client_frame(2, std::string(600, 'x')) + client_frame(fin | 0, std::string(600, 'x')), close_too_big},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(i);
    reader r(1024);
    r.feed(cases[i].bytes);
    auto e = r.next();
    while (e.what == reader::event::message || e.what == reader::event::ping) e = r.next();
    CHECK(e.what == reader::event::error);
    CHECK(e.code == cases[i].code);
  }
}

TEST_CASE("a character split across fragments is valid text; newer close codes are accepted") {
  reader r(1024);
  // "é" (C3 A9) and "€" (E2 82 AC) split between fragments; 4-byte U+10FFFF at the end.
  r.feed(client_frame(1, "caf\xc3") + client_frame(0, "\xa9 \xe2\x82") +
         client_frame(fin | 0, "\xac \xf4\x8f\xbf\xbf"));
  auto e = r.next();
  REQUIRE(e.what == reader::event::message);
  CHECK(e.text);
  CHECK(e.payload == "caf\xc3\xa9 \xe2\x82\xac \xf4\x8f\xbf\xbf");
  r.feed(client_frame(fin | 8, "\x03\xf4"));  // 1012: service restart
  e = r.next();
  REQUIRE(e.what == reader::event::close);
  CHECK(e.code == 1012);
}

TEST_CASE("a too-big message is refused from its header, before its payload arrives") {
  reader r(1024);
  std::string header = client_frame(fin | 2, std::string(5000, 'x')).substr(0, 8);
  r.feed(header);
  auto e = r.next();
  CHECK(e.what == reader::event::error);
  CHECK(e.code == close_too_big);
}

TEST_CASE("the reader says when it holds part of a message and how many it finished") {
  reader r(1 << 20);
  CHECK_FALSE(r.partial());
  auto whole = client_frame(fin | 0x1, "hello");
  r.feed(whole.substr(0, 3));  // a byte now and then
  CHECK(r.next().what == reader::event::need_more);
  CHECK(r.partial());
  CHECK(r.messages() == 0);
  r.feed(whole.substr(3));
  CHECK(r.next().what == reader::event::message);
  CHECK(r.next().what == reader::event::need_more);
  CHECK_FALSE(r.partial());
  CHECK(r.messages() == 1);
  // Fragments: whole frames, but the message stays unfinished until the last.
  r.feed(client_frame(0x1, "one "));
  CHECK(r.next().what == reader::event::need_more);
  CHECK(r.partial());
  r.feed(client_frame(fin | 0x9, "ping"));  // a control frame between: no message finished
  CHECK(r.next().what == reader::event::ping);
  CHECK(r.next().what == reader::event::need_more);
  CHECK(r.partial());
  CHECK(r.messages() == 1);
  r.feed(client_frame(fin | 0x0, "two"));
  auto e = r.next();
  REQUIRE(e.what == reader::event::message);
  CHECK(e.payload == "one two");
  CHECK(r.messages() == 2);
  CHECK(r.next().what == reader::event::need_more);
  CHECK_FALSE(r.partial());
}
