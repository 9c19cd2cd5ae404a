// WebSocket framing (RFC 6455) for the server side of the live stream, without I/O.
//
// petchat frames its own WebSocket messages instead of using Beast's stream: an idle
// connection then holds no read buffer and no pending composed operation, only its socket
// waiting for readability (docs/BENCHMARKS.md, "Connections"). Beast still parses the
// HTTP upgrade request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace petchat::gateway::detail::ws_frames {

enum class opcode : std::uint8_t { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

// Close codes petchat sends for framing errors (RFC 6455 section 7.4.1).
inline constexpr std::uint16_t close_normal = 1000;
inline constexpr std::uint16_t close_protocol_error = 1002;
inline constexpr std::uint16_t close_invalid_payload = 1007;
inline constexpr std::uint16_t close_too_big = 1009;

// A whole server frame (unmasked, final) carrying `payload`.
std::string frame(opcode op, std::string_view payload);
// Appends the header of a server frame whose payload is `n` bytes (the payload follows).
void append_header(std::string& out, opcode op, std::size_t n);
inline constexpr std::size_t max_header_bytes = 10;
// A close frame with `code` and `reason` (cut to fit a control frame).
std::string close_frame(std::uint16_t code, std::string_view reason);

// The value of Sec-WebSocket-Accept for a client's Sec-WebSocket-Key.
std::string accept_key(std::string_view client_key);
// True if `key` is a valid Sec-WebSocket-Key: base64 of 16 bytes.
bool valid_client_key(std::string_view key);

// Parses client frames from the bytes fed to it, one event at a time. Keeps memory only
// while it holds bytes: once everything fed has been consumed, it owns nothing.
class reader {
 public:
  struct event {
    enum kind { need_more, message, ping, close, error } what = need_more;
    bool text = false;         // message: a text (else binary) message
    std::string_view payload;  // message, ping: valid until the next feed() or next()
    std::uint16_t code = 0;    // close: the peer's code (1005 if none); error: the close code to send
    std::string reason;        // close: the peer's reason; error: what was wrong
  };

  explicit reader(std::size_t max_message) : max_message_(max_message) {}
  // The largest message taken from here on (a frame announcing more is an error).
  void limit(std::size_t max_message) { max_message_ = max_message; }
  std::size_t limit() const { return max_message_; }

  void feed(std::string_view bytes);
  // The next complete event from what was fed; need_more if none. After an error, the
  // reader is done: the connection must be closed with the event's code.
  event next();
  // Data messages handed out so far, and whether it holds part of one (or of any frame):
  // a peer that keeps a message unfinished for long without finishing any is trickling.
  std::uint64_t messages() const { return messages_; }
  bool partial() const { return pos_ < in_.size() || in_message_; }
  // True if it holds heap memory (beyond what an empty std::string holds inline).
  bool holds_memory() const {
    auto inline_capacity = std::string().capacity();
    return in_.capacity() > inline_capacity || message_.capacity() > inline_capacity;
  }

 private:
  event fail(std::uint16_t code, std::string reason);
  void release_consumed();
  // A frame's header, read from the unconsumed bytes.
  struct frame_header {
    bool fin = false;
    opcode op = opcode::continuation;
    std::uint64_t length = 0;  // of the payload
    std::size_t size = 0;      // of the header, without the 4-byte mask
  };
  // Reads the next frame's header into `h`: true if the bytes hold it and it is allowed
  // here; false with `failure` an error event if it is not, or need_more if more must come.
  bool read_header(frame_header& h, event& failure);
  event close_event(std::string_view body);
  // A data frame: the message it completes, or need_more (a fragment taken).
  event data_event(frame_header const& h, std::string_view body);

  std::size_t max_message_;
  std::string in_;           // bytes fed and not yet consumed (from pos_)
  std::size_t pos_ = 0;      // start of the unconsumed bytes in in_
  std::string message_;      // a fragmented message being assembled
  bool in_message_ = false;  // a fragmented message is in progress
  bool message_text_ = false;
  bool drop_message_ = false;  // message_ was handed out: clear it on the next call
  bool failed_ = false;
  std::uint64_t messages_ = 0;
};

}  // namespace petchat::gateway::detail::ws_frames
