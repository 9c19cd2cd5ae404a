#include "node/gateway/detail/ws_frames.hpp"

#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/core/detail/sha1.hpp>

#include "base/format/format.hpp"

namespace petchat::gateway::detail::ws_frames {
namespace {

constexpr std::size_t max_control_payload = 125;

bool valid_close_code(std::uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  // 1004-1006 are reserved or may not be sent; 1015 may not be sent.
  return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

}  // namespace

void append_header(std::string& out, opcode op, std::size_t n) {
  out.push_back(static_cast<char>(0x80 | static_cast<std::uint8_t>(op)));  // FIN, no extensions
  if (n < 126) {
    out.push_back(static_cast<char>(n));
  } else if (n <= 0xffff) {
    out.push_back(static_cast<char>(126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((std::uint64_t(n) >> shift) & 0xff));
  }
}

std::string frame(opcode op, std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + max_header_bytes);
  append_header(out, op, payload.size());
  out.append(payload);
  return out;
}

std::string close_frame(std::uint16_t code, std::string_view reason) {
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xff));
  payload.append(reason.substr(0, max_control_payload - 2));
  return frame(opcode::close, payload);
}

std::string accept_key(std::string_view client_key) {
  namespace bd = boost::beast::detail;
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  bd::sha1_context ctx;
  bd::init(ctx);
  bd::update(ctx, client_key.data(), client_key.size());
  bd::update(ctx, guid.data(), guid.size());
  char digest[bd::sha1_context::digest_size];
  bd::finish(ctx, digest);
  std::string out(bd::base64::encoded_size(sizeof(digest)), '\0');
  out.resize(bd::base64::encode(out.data(), digest, sizeof(digest)));
  return out;
}

bool valid_client_key(std::string_view key) {
  namespace bd = boost::beast::detail;
  if (key.size() != 24 || !key.ends_with("==")) return false;
  char raw[bd::base64::decoded_size(24)];
  auto [written, read] = bd::base64::decode(raw, key.data(), 22);
  return written == 16 && read == 22;
}

void reader::release_consumed() {
  if (pos_ == 0) return;
  if (pos_ >= in_.size())
    std::string().swap(in_);  // all consumed: hold no memory
  else
    in_.erase(0, pos_);
  pos_ = 0;
}

void reader::feed(std::string_view bytes) {
  release_consumed();
  in_.append(bytes);
}

reader::event reader::fail(std::uint16_t code, std::string reason) {
  failed_ = true;
  std::string().swap(in_);
  std::string().swap(message_);
  pos_ = 0;
  event e;
  e.what = event::error;
  e.code = code;
  e.reason = std::move(reason);
  return e;
}

bool reader::read_header(frame_header& h, event& failure) {
  auto refuse = [&](std::uint16_t code, std::string reason) {
    failure = fail(code, std::move(reason));
    return false;
  };
  auto const* p = reinterpret_cast<unsigned char const*>(in_.data() + pos_);
  std::size_t avail = in_.size() - pos_;
  if (avail < 2) return false;
  h.fin = (p[0] & 0x80) != 0;
  if ((p[0] & 0x70) != 0) return refuse(close_protocol_error, "reserved bits set (no extension was negotiated)");
  h.op = static_cast<opcode>(p[0] & 0x0f);
  bool control = (p[0] & 0x08) != 0;
  if (h.op != opcode::continuation && h.op != opcode::text && h.op != opcode::binary && h.op != opcode::close &&
      h.op != opcode::ping && h.op != opcode::pong)
    return refuse(close_protocol_error, "unknown opcode");
  if ((p[1] & 0x80) == 0) return refuse(close_protocol_error, "client frames must be masked");
  h.length = p[1] & 0x7f;
  h.size = 2;
  if (h.length == 126) {
    if (avail < 4) return false;
    h.length = (std::uint64_t(p[2]) << 8) | p[3];
    h.size = 4;
  } else if (h.length == 127) {
    if (avail < 10) return false;
    h.length = 0;
    for (int i = 0; i < 8; ++i) h.length = (h.length << 8) | p[2 + i];
    if (h.length >> 63) return refuse(close_protocol_error, "invalid payload length");
    h.size = 10;
  }
  if (control && (!h.fin || h.length > max_control_payload))
    return refuse(close_protocol_error, "control frames must be final and at most 125 bytes");
  if (!control) {
    if (h.op == opcode::continuation && !in_message_) return refuse(close_protocol_error, "continuation of no message");
    if (h.op != opcode::continuation && in_message_)
      return refuse(close_protocol_error, "new message inside a fragmented one");
    std::uint64_t so_far = in_message_ ? message_.size() : 0;
    if (h.length > max_message_ || so_far + h.length > max_message_) return refuse(close_too_big, "message too big");
  }
  return true;
}

reader::event reader::close_event(std::string_view body) {
  event e;
  e.what = event::close;
  e.code = 1005;  // none given
  if (body.size() == 1) return fail(close_protocol_error, "malformed close frame");
  if (body.size() >= 2) {
    e.code =
        static_cast<std::uint16_t>((static_cast<unsigned char>(body[0]) << 8) | static_cast<unsigned char>(body[1]));
    if (!valid_close_code(e.code)) return fail(close_protocol_error, "invalid close code");
    e.reason = std::string(body.substr(2));
    if (!format::utf8_length(e.reason)) return fail(close_invalid_payload, "close reason is not UTF-8");
  }
  return e;
}

reader::event reader::data_event(frame_header const& h, std::string_view body) {
  event e;
  if (h.fin && !in_message_) {  // a whole message in one frame: handed out in place
    if (h.op == opcode::text && !format::utf8_length(body)) return fail(close_invalid_payload, "text is not UTF-8");
    e.what = event::message;
    e.text = h.op == opcode::text;
    e.payload = body;
    ++messages_;
    return e;
  }
  if (!in_message_) {
    in_message_ = true;
    message_text_ = h.op == opcode::text;
  }
  message_.append(body);
  if (!h.fin) return e;  // need_more
  in_message_ = false;
  if (message_text_ && !format::utf8_length(message_)) return fail(close_invalid_payload, "text is not UTF-8");
  drop_message_ = true;
  ++messages_;
  e.what = event::message;
  e.text = message_text_;
  e.payload = message_;
  return e;
}

reader::event reader::next() {
  if (drop_message_) {
    std::string().swap(message_);
    drop_message_ = false;
  }
  if (failed_) return fail(close_protocol_error, "the connection has failed");
  for (;;) {
    if (pos_ >= in_.size()) {
      release_consumed();
      return {};
    }
    event failure;
    frame_header header;
    if (!read_header(header, failure)) return failure;  // need_more, or the error
    auto const* h = &header;
    if (in_.size() - pos_ < h->size + 4 + h->length) return {};  // the whole frame is not here yet
    auto const* key = reinterpret_cast<unsigned char const*>(in_.data() + pos_ + h->size);
    char* payload = in_.data() + pos_ + h->size + 4;
    for (std::uint64_t i = 0; i < h->length; ++i) payload[i] = static_cast<char>(payload[i] ^ key[i & 3]);
    std::string_view body(payload, static_cast<std::size_t>(h->length));
    pos_ += h->size + 4 + static_cast<std::size_t>(h->length);

    if (h->op == opcode::pong) continue;
    if (h->op == opcode::ping) {
      event e;
      e.what = event::ping;
      e.payload = body;
      return e;
    }
    if (h->op == opcode::close) return close_event(body);
    auto e = data_event(*h, body);
    if (e.what != event::need_more) return e;
  }
}

}  // namespace petchat::gateway::detail::ws_frames
