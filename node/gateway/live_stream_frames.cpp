// What the live stream's client frames do: authentication, the periodic session checks,
// and the dispatch of every other frame to the services (see detail/live_stream.hpp).
#include "node/gateway/detail/live_stream.hpp"

namespace petchat::gateway::detail {

awaitable<bool> live_stream::authenticate(std::string const& token, std::optional<std::uint64_t> after,
                                          std::uint64_t ref) {
  auto who = svc_->users.authenticate(token);
  if (!who) {
    send_error(ref, who.error());
    close_with(close_unauthenticated, errors::name(who.error().code));
    co_return false;
  }
  std::string uid = who->user_name + "@" + svc_->region;
  device_ = who->device_id;  // before the manager can ask for it
  auto attached = svc_->manager.attach(uid, shared_from_this());
  if (!attached) {
    send_error(ref, attached.error());  // too_many_streams, or rate_limited (connecting again and again)
    close_with(close_too_many_streams, errors::name(attached.error().code));
    co_return false;
  }
  who_ = who.value();  // attached: the stream's end detaches it
  // A revocation committed between authenticate() and attach() found no stream of the
  // session to tell: the session is looked at again now that one is there to be told.
  if (auto again = svc_->users.authenticate(token); !again) {
    send_error(ref, again.error());
    close_with(close_unauthenticated, errors::name(again.error().code));
    co_return false;
  }
  phase_ = phase::live;  // (nothing suspends between the reader's accepting() and here)
  reader_.limit(svc_->limits.max_frame_bytes);
  auth_deadline_timer_.cancel();
  token_ = token;
  schedule_session_check();
  known_head_ = svc_->messages.mailbox_head(uid);
  sent_seq_ = after ? std::min(*after, known_head_) : svc_->messages.acked(uid, who_.device_id);
  // Resuming after a seq says the device has processed everything up to it: that counts
  // as its acknowledgement, so an ack lost with a connection does not lose a DELIVERED.
  if (after && sent_seq_ > svc_->messages.acked(uid, who_.device_id)) submit_ack(sent_seq_, 0);
  client::server_frame w;
  w.set_ref(ref);
  auto* welcome = w.mutable_welcome();
  welcome->set_user_id(uid);
  welcome->set_device_id(who_.device_id);
  welcome->set_mailbox_seq(known_head_);
  welcome->set_resume_after(sent_seq_);
  welcome->set_server_time_ms(format::now_ms());
  enqueue(w);
  // The contacts' presence streams under the watermark like a mailbox backlog: a user
  // with thousands of contacts gets them all, at the pace the connection takes them.
  for (auto& f : svc_->manager.presence_of_contacts(uid)) pushed_.push(std::move(f));
  pump();
  co_return true;
}

void live_stream::schedule_session_check() {
  auto left = std::chrono::milliseconds(std::max<std::int64_t>(0, who_.token_expires_at_ms - format::now_ms()));
  session_check_timer_.expires_after(
      std::min<std::chrono::steady_clock::duration>(session_check_every, left + std::chrono::milliseconds(1)));
  session_check_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (auto s = weak.lock(); s && !ec) s->guarded([&] { s->check_session(); });
  });
}

void live_stream::check_session() {
  if (phase_ != phase::live) return;
  // Keep-alive: ping a connection that has been silent for a while; drop a dead one.
  auto silent = std::chrono::steady_clock::now() - last_rx_;
  if (silent >= idle_timeout) {
    log::get("ws")->info("{}: nothing received for {} s, disconnecting", user_id(),
                         std::chrono::duration_cast<std::chrono::seconds>(idle_timeout).count());
    ending(end_reason::idle);
    phase_ = phase::dropped;
    boost::system::error_code ignored;
    socket_.close(ignored);
    return;
  }
  if (silent >= ping_after) enqueue_control(wsf::opcode::ping, "");
  auto now = std::chrono::steady_clock::now();
  if (!reader_.partial() || reader_.messages() != messages_seen_) {
    messages_seen_ = reader_.messages();
    progress_at_ = now;
  } else if (now - progress_at_ >= message_deadline) {
    log::get("ws")->info("{}: a message unfinished for {} s, disconnecting", user_id(),
                         std::chrono::duration_cast<std::chrono::seconds>(message_deadline).count());
    ending(end_reason::idle);
    close_with(close_policy_violation, "message_too_slow");
    return;
  }
  auto who = svc_->users.authenticate(token_);
  if (!who) {
    ending(end_reason::session_ended);
    send_error(0, who.error());
    close_with(close_unauthenticated, errors::name(who.error().code));
    return;
  }
  schedule_session_check();
}

void live_stream::reauthenticate(std::string const& token, std::uint64_t ref) {
  auto who = svc_->users.authenticate(token);
  if (!who) return send_error(ref, who.error());  // the current token still holds until it expires
  if (who->user_name != who_.user_name || who->device_id != who_.device_id)
    return send_error(ref, errors::fail(code::invalid_token, "that token belongs to another session"));
  who_ = who.value();
  token_ = token;
  schedule_session_check();
  client::server_frame w;
  w.set_ref(ref);
  auto* welcome = w.mutable_welcome();
  welcome->set_user_id(user_id());
  welcome->set_device_id(who_.device_id);
  welcome->set_mailbox_seq(known_head_);
  welcome->set_resume_after(sent_seq_);
  welcome->set_server_time_ms(format::now_ms());
  enqueue(w);
}

void live_stream::submit_ack(std::uint64_t seq, std::uint64_t ref) {
  // At or below what this stream's acknowledgements already made durable: it changes
  // nothing, and is answered here, not by the writer every sender waits on (a client
  // repeating an ack costs a read at most).
  if (seq <= acked_here_) return answer_ack(ref, errors::ok());
  // Beyond the newest event the mailbox has: refused here too (a read), not by the writer
  // each time the client repeats it.
  if (seq > known_head_ && seq > svc_->messages.mailbox_head(user_id()))
    return answer_ack(ref,
                      errors::fail(code::invalid_field, "ack.seq is beyond the newest event of the mailbox", "seq"));
  ++pipelined_;
  svc_->messages.ack(user_id(), who_.device_id, seq, socket_.get_executor(),
                     [self = shared_from_this(), ref, seq](errors::status s) {
                       --self->pipelined_;
                       if (s) self->acked_here_ = std::max(self->acked_here_, seq);
                       // A plain handler: the answer's store read failing ends this stream only.
                       self->guarded([&] { self->answer_ack(ref, s); });
                     });
}

void live_stream::answer_ack(std::uint64_t ref, errors::status const& s) {
  if (!s) return send_error(ref, s.error());
  if (ref == 0) return;
  client::server_frame out;
  out.set_ref(ref);
  out.mutable_acked()->set_seq(svc_->messages.acked(user_id(), who_.device_id));
  enqueue(out);
}

awaitable<void> live_stream::dispatch(client::client_frame const& frame) {
  auto ref = frame.ref();
  std::string uid = user_id();
  switch (frame.kind_case()) {
    case client::client_frame::kAuth:
      reauthenticate(frame.auth().access_token(), ref);
      co_return;
    case client::client_frame::kSend: {
      auto started = std::chrono::steady_clock::now();
      auto accepted = co_await svc_->messages.send(uid, frame.send());
      if (!accepted) {
        svc_->metrics.message_rejected(errors::name(accepted.error().code));
        send_error(ref, accepted.error());
        co_return;
      }
      if (!accepted->duplicate()) svc_->metrics.message_accepted(std::chrono::steady_clock::now() - started);
      client::server_frame out;
      out.set_ref(ref);
      *out.mutable_accepted() = accepted.value();
      enqueue(out);
      co_return;
    }
    case client::client_frame::kAck: {  // (the pipeline was full; as submit_ack)
      auto seq = frame.ack().seq();
      errors::status s = errors::ok();
      if (seq > acked_here_) s = co_await svc_->messages.ack(uid, who_.device_id, seq);
      if (s) acked_here_ = std::max(acked_here_, seq);
      answer_ack(ref, s);
      co_return;
    }
    case client::client_frame::kRead: {
      auto s = co_await svc_->messages.read(uid, frame.read().conversation_id(), frame.read().message_id());
      if (!s) send_error(ref, s.error());
      co_return;
    }
    case client::client_frame::kTyping: {
      // Dropped beyond the user's rate (ws_manager::take_typing): typing is a hint, and
      // every notice is a frame for someone else's connections.
      if (!svc_->manager.take_typing(uid)) co_return;
      auto const& t = frame.typing();
      if (!t.to().empty() && !t.conversation_id().empty()) {  // as for a send
        send_error(ref, errors::fail(code::invalid_field, "typing names both to and conversation_id", "to"));
        co_return;
      }
      if (t.to().empty() && t.conversation_id().empty()) {
        send_error(ref, errors::fail(code::missing_field, "typing names neither to nor conversation_id", "to"));
        co_return;
      }
      if (auto const& group = t.conversation_id(); !group.empty()) {
        auto peers = svc_->messages.group_peers(uid, group);
        if (!peers) {
          send_error(ref, peers.error());
          co_return;
        }
        svc_->manager.relay_group_typing(uid, *peers, group, frame.typing().active());
        co_return;
      }
      auto typing = svc_->messages.typing_between(uid, frame.typing().to());
      if (!typing) {
        send_error(ref, typing.error());
        co_return;
      }
      svc_->manager.relay_typing(uid, typing->to, typing->conversation_id, frame.typing().active());
      co_return;
    }
    case client::client_frame::kPing: {
      client::server_frame out;
      out.set_ref(ref);
      out.mutable_pong();
      enqueue(out);
      co_return;
    }
    default:
      send_error(ref, errors::fail(code::unknown_frame, "the frame has no known kind"));
      co_return;
  }
}

}  // namespace petchat::gateway::detail
