// The live stream's writer: its bounded queue, mailbox events and pushed frames pulled into
// it under the watermark, and gathered writes (see detail/live_stream.hpp).
#include "node/gateway/detail/live_stream.hpp"

#include <google/protobuf/io/coded_stream.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace petchat::gateway::detail {

namespace live {

char const* name(end_reason r) {
  switch (r) {
    case end_reason::client_closed:
      return "client_closed";
    case end_reason::connection_lost:
      return "connection_lost";
    case end_reason::protocol_error:
      return "protocol_error";
    case end_reason::unauthenticated:
      return "unauthenticated";
    case end_reason::session_ended:
      return "session_ended";
    case end_reason::too_many_streams:
      return "too_many_streams";
    case end_reason::slow_consumer:
      return "slow_consumer";
    case end_reason::idle:
      return "idle";
    case end_reason::shutting_down:
      return "shutting_down";
    case end_reason::internal_error:
      return "internal_error";
    case end_reason::kicked:
      return "kicked";
    case end_reason::superseded:
      return "superseded";
  }
  return "unknown";
}

end_reason reason_of_close(std::uint16_t code) {
  switch (code) {
    case 1001:
      return end_reason::shutting_down;
    case close_unauthenticated:
      return end_reason::unauthenticated;
    case close_too_many_streams:
      return end_reason::too_many_streams;
    case close_internal_error:
      return end_reason::internal_error;
    case close_kicked:
      return end_reason::kicked;
    case close_superseded:
      return end_reason::superseded;
    case 1002:
    case 1007:
    case 1009:
      return end_reason::protocol_error;
    default:
      return end_reason::client_closed;
  }
}

}  // namespace live

namespace {

// A WebSocket frame's header, then `n` bytes written in place by `write(char*)`: one
// allocation per frame.
template <typename Write>
std::string binary_frame(std::size_t n, Write&& write) {
  std::string out;
  out.reserve(wsf::max_header_bytes + n);
  wsf::append_header(out, wsf::opcode::binary, n);
  std::size_t at = out.size();
  out.resize(at + n);
  write(reinterpret_cast<std::uint8_t*>(out.data() + at));
  return out;
}

// A text frame around the JSON that `write(std::string&)` appends. The JSON goes into a
// per-thread scratch buffer first (its length goes into the header), then is copied once
// into a frame of exactly its size.
template <typename Write>
std::string text_frame(Write&& write) {
  thread_local std::string scratch;
  scratch.clear();
  write(scratch);
  std::string out;
  out.reserve(wsf::max_header_bytes + scratch.size());
  wsf::append_header(out, wsf::opcode::text, scratch.size());
  out.append(scratch);
  if (scratch.capacity() > (1 << 20)) std::string().swap(scratch);  // keep no huge buffer
  return out;
}

// server_frame's `event` field (number 12, length-delimited): its tag byte.
constexpr std::uint8_t event_field_tag = (12 << 3) | 2;
// event's `seq` (number 1, varint) and `message` (number 10, length-delimited).
constexpr std::uint8_t seq_field_tag = (1 << 3) | 0;
constexpr std::uint8_t message_field_tag = (10 << 3) | 2;

}  // namespace

std::string live_stream::encode(client::server_frame const& frame, bool binary) {
  if (binary)
    return binary_frame(frame.ByteSizeLong(), [&](std::uint8_t* at) { frame.SerializeWithCachedSizesToArray(at); });
  return text_frame([&](std::string& out) { json_frames::append(out, frame); });
}

std::string live_stream::encode(client::event const& event, bool binary) {
  if (!binary) return text_frame([&](std::string& out) { json_frames::append(out, event); });
  // The bytes of server_frame{event}, written around the event without copying it into
  // one: the field's tag, its length, the event (ref 0 is not written in proto3).
  std::size_t n = event.ByteSizeLong();
  std::size_t length_bytes = google::protobuf::io::CodedOutputStream::VarintSize64(n);
  return binary_frame(1 + length_bytes + n, [&](std::uint8_t* at) {
    *at++ = event_field_tag;
    at = google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(n, at);
    event.SerializeWithCachedSizesToArray(at);
  });
}

std::string live_stream::encode(ws::shared_event const& shared, bool binary) {
  auto const* content = shared.content();
  if (!content) return encode(shared.event(), binary);
  std::uint64_t seq = shared.event().seq();
  if (!binary) {
    auto const& part = content->part(1, [](client::message const& m) {
      std::string json;
      json_frames::append(json, m);
      return json;
    });
    return text_frame([&](std::string& out) { json_frames::append_message_event(out, seq, part); });
  }
  // event{seq, message} as Protobuf writes it (fields in number order, seq only if not 0),
  // with the message field's bytes shared by every member's event.
  using google::protobuf::io::CodedOutputStream;
  auto const& part = content->part(0, [](client::message const& m) {
    std::size_t n = m.ByteSizeLong();
    std::string bytes(1 + CodedOutputStream::VarintSize64(n) + n, '\0');
    auto* at = reinterpret_cast<std::uint8_t*>(bytes.data());
    *at++ = message_field_tag;
    at = CodedOutputStream::WriteVarint64ToArray(n, at);
    m.SerializeWithCachedSizesToArray(at);
    return bytes;
  });
  std::size_t n = (seq ? 1 + CodedOutputStream::VarintSize64(seq) : 0) + part.size();
  return binary_frame(1 + CodedOutputStream::VarintSize64(n) + n, [&](std::uint8_t* at) {
    *at++ = event_field_tag;
    at = CodedOutputStream::WriteVarint64ToArray(n, at);
    if (seq) {
      *at++ = seq_field_tag;
      at = CodedOutputStream::WriteVarint64ToArray(seq, at);
    }
    std::memcpy(at, part.data(), part.size());
  });
}

bool live_stream::take_event(std::uint64_t head, std::shared_ptr<ws::shared_event const> const& event) {
  known_head_ = std::max(known_head_, head);
  if (stalled()) {
    drop_slow_consumer();
    return false;
  }
  // Up to date and with room: forward the event as is, no store read, in the frame its
  // user's other streams of this encoding send too.
  if (event && phase_ == phase::live && event->event().seq() == sent_seq_ + 1 && has_room()) {
    sent_seq_ = event->event().seq();
    bool binary = binary_;
    enqueue(event->frame(binary ? 0 : 1, [binary](ws::shared_event const& e) { return encode(e, binary); }));
    return true;
  }
  pump();
  return true;
}

// Mailbox events are pulled from the store, never pushed: the queue holds at most half
// its capacity of them, and the writer pulls more as it drains. So a device that
// reconnects with a long backlog streams it at its own pace instead of being cut off,
// and memory stays bounded whatever the backlog.
void live_stream::pump() {
  if (phase_ != phase::live) return;
  std::size_t watermark = this->watermark();
  // A few reads a turn: a backlog of events to skip (hidden or expired messages) is read a
  // slice at a time between other streams' work, not in one go.
  constexpr int reads_per_turn = 4;
  int reads = 0;
  while (sent_seq_ < known_head_ && phase_ == phase::live && has_room()) {
    if (reads++ == reads_per_turn) {  // (presence and typing wait for the backlog's end)
      asio::post(socket_.get_executor(), [self = shared_from_this()] { self->pump(); });
      return;
    }
    auto batch = svc_->messages.events_after(user_id(), sent_seq_, std::min(events_per_read, watermark - out_.size()));
    auto before = sent_seq_;
    bool full = false;
    for (auto const& e : batch.events) {
      if (!has_room()) {  // the bytes' watermark: the rest is read again once it drains
        full = true;
        break;
      }
      enqueue(encode(e, binary_));
      sent_seq_ = e.seq();
    }
    if (full || phase_ != phase::live) break;
    if (batch.last_seq <= before) break;
    sent_seq_ = batch.last_seq;
  }
  while (!pushed_.empty() && phase_ == phase::live && has_room()) enqueue(pushed_.pop());
}

void live_stream::write_now() {
  // Bursts written before the thread is let run other streams' work (a long backlog is
  // written a watermark at a time, each pulled from the store by pump()).
  constexpr int bursts_per_turn = 4;
  int fd = socket_.native_handle();
  for (int burst_count = 0;; ++burst_count) {
    if (phase_ == phase::dropped) break;
    if (out_.empty()) {
      if (phase_ != phase::closing) break;
      asio::co_spawn(socket_.get_executor(), write_loop(shared_from_this(), {}, 0), asio::detached);  // the close frame
      return;
    }
    if (burst_count == bursts_per_turn) {
      asio::post(socket_.get_executor(), [self = shared_from_this()] { self->write_now(); });
      return;
    }
    auto& burst = burst_;
    burst.clear();
    std::array<iovec, frames_per_write> iov;
    std::size_t total = 0;
    while (!out_.empty() && burst.size() < frames_per_write) burst.push_back(out_.pop());
    // Pointed at once every frame is in place: a push_back may move the frames before it,
    // and a short frame's bytes (a pong, a ping) live inside the frame, not on the heap.
    for (std::size_t i = 0; i < burst.size(); ++i) {
      auto bytes = burst[i].bytes();
      iov[i] = {const_cast<char*>(bytes.data()), bytes.size()};
      total += bytes.size();
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = burst.size();
    ssize_t n;
    do n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      write_failed();
      writer_ = writer_state::done;
      return;
    }
    std::size_t written = n < 0 ? 0 : static_cast<std::size_t>(n);
    if (written < total) {  // the socket is full: the rest waits for it
      asio::co_spawn(socket_.get_executor(), write_loop(shared_from_this(), std::exchange(burst_, {}), written),
                     asio::detached);
      return;
    }
    burst.clear();  // the frames' bytes go now, not at the next write
    last_progress_ = std::chrono::steady_clock::now();
    guarded([&] { pump(); });
  }
  writer_ = writer_state::idle;
}

awaitable<bool> live_stream::write_buffers(std::shared_ptr<live_stream> const& self,
                                           std::vector<asio::const_buffer> const& buffers) {
  // The watchdog is for a client that takes nothing for stall_limit, not for a slow link
  // still taking bytes: each part the socket takes (at most 64 KiB, asio's default) starts
  // it again, so a burst of 1 MiB to a client reading 100 kB/s goes out in full.
  watch_write(self);
  std::size_t taken = 0;
  auto progress = [this, &self, &taken](boost::system::error_code const& ec, std::size_t n) -> std::size_t {
    if (ec) return 0;
    if (n > taken) {
      taken = n;
      last_progress_ = std::chrono::steady_clock::now();
      watch_write(self);
    }
    return 65536;
  };
  auto [ec, n] = co_await asio::async_write(socket_, buffers, progress, use_tuple);
  write_finished();
  (void)n;
  if (ec) {
    write_failed();
    co_return false;
  }
  last_progress_ = std::chrono::steady_clock::now();
  guarded([&] { pump(); });
  co_return true;
}

awaitable<void> live_stream::write_loop(std::shared_ptr<live_stream> self, std::vector<queued_frame> rest,
                                        std::size_t written) {
  bool for_good = false;  // the close frame went out, or a write failed: no more writes
  if (!rest.empty()) {
    std::vector<asio::const_buffer> buffers;
    for (auto const& f : rest) {
      auto bytes = f.bytes();
      std::size_t skip = std::min(written, bytes.size());
      written -= skip;
      if (skip < bytes.size()) buffers.push_back(asio::buffer(bytes.data() + skip, bytes.size() - skip));
    }
    bool wrote = co_await write_buffers(self, buffers);
    if (!wrote) {
      writer_ = writer_state::done;
      co_return;
    }
  }
  for (;;) {
    if (phase_ == phase::dropped) break;
    if (out_.empty()) {
      if (phase_ != phase::closing) break;  // drained: the writer ends until kick() starts it again
      for_good = true;
      auto bye = wsf::close_frame(close_code_, close_reason_);
      // A client that stopped reading cannot take the close frame either: the same
      // watchdog as for any write drops it.
      watch_write(self);
      auto [cec, cn] = co_await asio::async_write(socket_, asio::buffer(bye), use_tuple);
      write_finished();
      (void)cn;
      boost::system::error_code ignored;
      if (!cec) socket_.shutdown(tcp::socket::shutdown_send, ignored);
      // The peer answers with its close, which wakes the idle reader to finish; one that
      // does not answer is not waited for past the linger.
      close_linger_timer_.expires_after(close_linger);
      close_linger_timer_.async_wait([weak = std::weak_ptr<live_stream>(self)](boost::system::error_code ec) {
        if (auto s = weak.lock(); s && !ec) {
          boost::system::error_code ignored;
          s->socket_.cancel(ignored);
        }
      });
      break;
    }
    // Everything queued (up to frames_per_write) leaves in one gathered write.
    std::vector<queued_frame> burst;
    std::vector<asio::const_buffer> buffers;
    while (!out_.empty() && burst.size() < frames_per_write) burst.push_back(out_.pop());
    for (auto const& f : burst) buffers.push_back(asio::buffer(f.bytes()));
    bool wrote = co_await write_buffers(self, buffers);
    if (!wrote) {
      for_good = true;
      break;
    }
  }
  writer_ = for_good ? writer_state::done : writer_state::idle;
}

}  // namespace petchat::gateway::detail
