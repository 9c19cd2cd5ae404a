// The live stream's writer: its bounded queue, mailbox events and pushed frames pulled into
// it under the watermark, and gathered writes (see detail/live_stream.hpp).
#include "node/gateway/detail/live_stream.hpp"

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
    case 1002:
    case 1007:
    case 1009:
      return end_reason::protocol_error;
    default:
      return end_reason::client_closed;
  }
}

}  // namespace live

void live_stream::enqueue(client::server_frame const& frame) {
  if (!accepting()) return;
  // Mailbox events and pushed frames stay under the watermark (pump) and answers under
  // max_pipelined, so only control frames and unpipelined answers can pile up beyond
  // this: a client that lets them do so is not reading.
  if (out_.size() >= svc_->limits.send_queue_frames + max_pipelined) return drop_slow_consumer();
  std::string out;
  if (binary_) {
    // Serialized in place behind the WebSocket header: one allocation per frame.
    std::size_t n = frame.ByteSizeLong();
    out.reserve(wsf::max_header_bytes + n);
    wsf::append_header(out, wsf::opcode::binary, n);
    std::size_t at = out.size();
    out.resize(at + n);
    frame.SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(out.data() + at));
  } else {
    auto json = proto_json(frame);
    if (!json && frame.has_event() && frame.event().has_message()) {
      // Stored before the edge checked bodies: the event goes out without its content
      // rather than as an empty frame (which would cost the client that seq).
      log::get("ws")->error("{}: event {} cannot be encoded as JSON; sent without its content", user_id(),
                            frame.event().seq());
      client::server_frame plain = frame;
      plain.mutable_event()->mutable_message()->mutable_body()->clear_content();
      json = proto_json(plain);
    }
    if (!json) {
      log::get("ws")->error("{}: a frame cannot be encoded as JSON; not sent", user_id());
      return;
    }
    out = wsf::frame(wsf::opcode::text, *json);
  }
  out_.push(std::move(out));
  kick();
}

// Mailbox events are pulled from the store, never pushed: the queue holds at most half
// its capacity of them, and the writer pulls more as it drains. So a device that
// reconnects with a long backlog streams it at its own pace instead of being cut off,
// and memory stays bounded whatever the backlog.
void live_stream::pump() {
  if (phase_ != phase::live) return;
  std::size_t watermark = this->watermark();
  while (sent_seq_ < known_head_ && phase_ == phase::live && out_.size() < watermark) {
    auto batch = svc_->messages.events_after(user_id(), sent_seq_, std::min(events_per_read, watermark - out_.size()));
    for (auto& e : batch.events) {
      client::server_frame f;
      *f.mutable_event() = std::move(e);
      enqueue(f);
    }
    if (batch.last_seq <= sent_seq_) break;
    sent_seq_ = batch.last_seq;
  }
  while (!pushed_.empty() && phase_ == phase::live && out_.size() < watermark) enqueue(pushed_.pop());
}

awaitable<void> live_stream::write_loop(std::shared_ptr<live_stream> self) {
  bool for_good = false;  // the close frame went out, or a write failed: no more writes
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
    std::vector<std::string> burst;
    std::vector<asio::const_buffer> buffers;
    while (!out_.empty() && burst.size() < frames_per_write) burst.push_back(out_.pop());
    for (auto const& f : burst) buffers.push_back(asio::buffer(f));
    watch_write(self);
    auto [ec, n] = co_await asio::async_write(socket_, buffers, use_tuple);
    write_finished();
    (void)n;
    if (ec) {
      // The connection is broken: close it, so the idle reader's wait ends and the
      // stream finishes.
      ending(end_reason::connection_lost);
      phase_ = phase::dropped;
      for_good = true;
      boost::system::error_code ignored;
      socket_.close(ignored);
      break;
    }
    last_progress_ = std::chrono::steady_clock::now();
    guarded([&] { pump(); });
  }
  writer_ = for_good ? writer_state::done : writer_state::idle;
}

}  // namespace petchat::gateway::detail
