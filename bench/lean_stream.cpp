#include "bench/lean_stream.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "client/detail/json_codec.hpp"

namespace petchat::bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t read_size = 16 * 1024;         // asked of each recv
constexpr std::size_t max_frame = 16 * 1024 * 1024;  // larger than any frame the node sends
constexpr std::size_t max_reply_head = 16 * 1024;

enum opcode : int { continuation = 0x0, text = 0x1, binary = 0x2, close_frame = 0x8, ping = 0x9, pong = 0xA };

std::uint64_t big_endian(unsigned char const* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

lean_stream::lean_stream(tcp::socket socket, sdk::encoding frames, std::string already_read)
    : socket_(std::move(socket)),
      encoding_(frames),
      in_(std::max(read_size * 2, already_read.size())),
      mask_seed_(static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(this) >> 4) | 1u) {
  std::memcpy(in_.data(), already_read.data(), already_read.size());
  end_ = already_read.size();
}

asio::awaitable<std::shared_ptr<lean_stream>> lean_stream::open(sdk::endpoint where, std::string access_token,
                                                                sdk::encoding frames) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket socket(ex);
  co_await socket.async_connect(tcp::endpoint(asio::ip::make_address(where.host), where.port), asio::use_awaitable);
  socket.set_option(tcp::no_delay(true));
  // The key (16 bytes, base64) need not be random for us: the node's answer to it is not
  // checked (the node is measured here, not distrusted).
  std::string request = "GET /v1/ws HTTP/1.1\r\nHost: " + where.host + ":" + std::to_string(where.port) +
                        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Key: cGV0Y2hhdCBiZW5jaCB3cw==\r\nSec-WebSocket-Protocol: " +
                        (frames == sdk::encoding::json ? "petchat.v1.json" : "petchat.v1.proto") +
                        "\r\nAuthorization: Bearer " + access_token + "\r\n\r\n";
  co_await asio::async_write(socket, asio::buffer(request), asio::use_awaitable);
  std::string reply;
  std::size_t head_end = std::string::npos;
  while (head_end == std::string::npos) {
    char chunk[4096];
    auto n = co_await socket.async_read_some(asio::buffer(chunk), asio::use_awaitable);
    reply.append(chunk, n);
    head_end = reply.find("\r\n\r\n");
    if (head_end == std::string::npos && reply.size() > max_reply_head)
      throw std::runtime_error("the node's answer to the upgrade has no end");
  }
  if (reply.rfind("HTTP/1.1 101", 0) != 0) throw std::runtime_error("the node refused the upgrade: " + reply);
  // Frames the node sent right after its answer came in the same read.
  co_return std::make_shared<lean_stream>(std::move(socket), frames, reply.substr(head_end + 4));
}

void lean_stream::start(handlers h) {
  h_ = std::move(h);
  // Frames read with the upgrade's answer are taken first, as if just read.
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->take_frames();
    self->after_reading();
  });
}

void lean_stream::close() {
  closing_ = true;
  // Wakes the handler waiting on the socket (it reads the end); the descriptor stays
  // open until the stream goes, so no other socket can take its number meanwhile.
  ::shutdown(socket_.native_handle(), SHUT_RDWR);
}

// One operation is outstanding at any time (a wait to read, or one to write what the
// socket would not take), so the handlers never run at once and need no strand.
void lean_stream::wait_readable() {
  socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](boost::system::error_code ec) {
    if (ec) return self->end(ec.message());
    self->on_readable();
  });
}

void lean_stream::wait_writable() {
  socket_.async_wait(tcp::socket::wait_write, [self = shared_from_this()](boost::system::error_code ec) {
    if (ec) return self->end(ec.message());
    self->on_writable();
  });
}

void lean_stream::on_readable() {
  int fd = socket_.native_handle();
  for (;;) {
    if (in_.size() - end_ < read_size) {
      // Room for a read: first by moving what is left to the front, else by growing.
      if (begin_ > 0) {
        std::memmove(in_.data(), in_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (in_.size() - end_ < read_size) in_.resize(end_ + read_size * 2);
    }
    std::size_t room = in_.size() - end_;
    auto n = ::recv(fd, in_.data() + end_, room, MSG_DONTWAIT);
    if (n > 0) {
      end_ += static_cast<std::size_t>(n);
      take_frames();
      if (ended_) return;
      // A short read emptied the socket: no need to read again just to be told so
      // (the next wait re-arms the readiness, so nothing arriving meanwhile is missed).
      if (static_cast<std::size_t>(n) < room) break;
      continue;
    }
    if (n == 0) return end("the node closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return end(std::strerror(errno));
  }
  after_reading();
}

void lean_stream::after_reading() {
  if (ended_) return;
  if (h_.read_done) h_.read_done(*this);
  on_writable();
}

// Writes what is queued, then waits to read again (or, if the socket would not take it
// all, to write the rest first).
void lean_stream::on_writable() {
  bool all = flush();
  if (ended_) return;
  if (all)
    wait_readable();
  else
    wait_writable();
}

// Takes every whole frame in [begin_, end_).
void lean_stream::take_frames() {
  while (!ended_ && end_ - begin_ >= 2) {
    auto const* p = reinterpret_cast<unsigned char const*>(in_.data() + begin_);
    std::size_t available = end_ - begin_;
    bool fin = (p[0] & 0x80) != 0;
    int op = p[0] & 0x0F;
    bool masked = (p[1] & 0x80) != 0;
    std::uint64_t size = p[1] & 0x7F;
    std::size_t head = 2;
    if (size == 126) {
      if (available < 4) return;
      size = big_endian(p + 2, 2);
      head = 4;
    } else if (size == 127) {
      if (available < 10) return;
      size = big_endian(p + 2, 8);
      head = 10;
    }
    if (size > max_frame) return end("a frame of " + std::to_string(size) + " bytes");
    std::size_t mask_at = head;
    if (masked) head += 4;  // a server never masks; accepted all the same
    if (available < head + size) {
      if (in_.size() < head + size + read_size) in_.resize(head + size + read_size);  // a large frame
      return;
    }
    auto* data = in_.data() + begin_ + head;
    if (masked)
      for (std::size_t i = 0; i < size; ++i) data[i] ^= static_cast<char>(p[mask_at + i % 4]);
    begin_ += head + static_cast<std::size_t>(size);
    if (op >= close_frame) {  // control frames are never fragmented
      handle(op, data, static_cast<std::size_t>(size));
      continue;
    }
    if (op != continuation && fin && fragments_opcode_ == 0) {
      handle(op, data, static_cast<std::size_t>(size));
      continue;
    }
    if (op != continuation) {
      fragments_opcode_ = op;
      fragments_.clear();
    }
    fragments_.append(data, static_cast<std::size_t>(size));
    if (fin) {
      int whole = fragments_opcode_;
      fragments_opcode_ = 0;
      handle(whole, fragments_.data(), fragments_.size());
    }
  }
  if (begin_ == end_) begin_ = end_ = 0;
}

void lean_stream::handle(int op, char const* data, std::size_t size) {
  switch (op) {
    case close_frame:
      return end("the node closed the stream");
    case ping:
      return frame_out(pong, std::string_view(data, size));
    case pong:
      return;
    case text:
    case binary:
      break;
    default:
      return end("a frame of unknown type " + std::to_string(op));
  }
  frame_.Clear();
  bool ok = op == text ? sdk::detail::json_codec::parse(std::string_view(data, size), frame_)
                       : frame_.ParseFromArray(data, static_cast<int>(size));
  if (!ok) return end("a malformed frame from the node");
  if (frame_.has_event()) read_seq_ = std::max(read_seq_, frame_.event().seq());
  if (h_.frame) h_.frame(frame_);
}

void lean_stream::send(client::client_frame const& frame) {
  scratch_.clear();
  if (encoding_ == sdk::encoding::json)
    sdk::detail::json_codec::append(scratch_, frame);
  else if (!frame.SerializeToString(&scratch_))
    throw std::runtime_error("a client frame that cannot be serialized");
  frame_out(encoding_ == sdk::encoding::json ? text : binary, scratch_);
}

bool lean_stream::ack_read() {
  if (read_seq_ <= acked_seq_) return false;
  client::client_frame ack;
  ack.mutable_ack()->set_seq(read_seq_);
  acked_seq_ = read_seq_;
  send(ack);
  return true;
}

// Appends one masked frame to out_ (a client masks every frame: RFC 6455, 5.3).
void lean_stream::frame_out(int op, std::string_view payload) {
  if (sent_ == out_.size()) {
    out_.clear();
    sent_ = 0;
  }
  out_.push_back(static_cast<char>(0x80 | op));
  auto size = payload.size();
  if (size < 126) {
    out_.push_back(static_cast<char>(0x80 | size));
  } else if (size <= 0xFFFF) {
    out_.push_back(static_cast<char>(0x80 | 126));
    for (int shift = 8; shift >= 0; shift -= 8) out_.push_back(static_cast<char>((size >> shift) & 0xFF));
  } else {
    out_.push_back(static_cast<char>(0x80 | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out_.push_back(static_cast<char>((size >> shift) & 0xFF));
  }
  // xorshift32: the mask only has to vary, the node is not a proxy to be confused.
  mask_seed_ ^= mask_seed_ << 13;
  mask_seed_ ^= mask_seed_ >> 17;
  mask_seed_ ^= mask_seed_ << 5;
  char mask[4];
  std::memcpy(mask, &mask_seed_, 4);
  out_.append(mask, 4);
  auto at = out_.size();
  out_.append(payload);
  for (std::size_t i = 0; i < size; ++i) out_[at + i] ^= mask[i % 4];
}

bool lean_stream::flush() {
  int fd = socket_.native_handle();
  while (sent_ < out_.size()) {
    auto n = ::send(fd, out_.data() + sent_, out_.size() - sent_, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) {
      sent_ += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
    end(std::strerror(errno));
    return false;
  }
  return true;
}

void lean_stream::end(std::string why) {
  if (ended_) return;
  ended_ = true;
  // The handlers go with the stream's end: what they hold (their workload's state, which
  // holds the stream) is let go.
  auto h = std::move(h_);
  h_ = {};
  if (h.ended) h.ended(closing_ ? std::string() : why);
}

}  // namespace petchat::bench
