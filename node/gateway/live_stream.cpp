// The live stream's connection (see detail/live_stream.hpp): the WebSocket handshake, the
// first authentication, reading and dispatching client frames, and the end of the stream.
//
// The WebSocket protocol itself (handshake answer, framing, ping/pong, closing handshake)
// is petchat's own (detail/ws_frames.hpp) over the Asio socket: an idle stream has one
// read of a few bytes pending and no composed operation, and reads the rest into a
// per-thread buffer only when bytes are there.
#include "node/gateway/detail/live_stream.hpp"
#include "node/gateway/detail/user_api.hpp"

namespace petchat::gateway::detail {
namespace live {

// Sessions read into this buffer, then hand the bytes to their frame reader at once: the
// buffer is shared by every stream of the thread and held by none.
thread_local std::array<char, 16384> read_scratch;

}  // namespace live

// The handshake and the first authentication: its own coroutine, so that its frame (the
// upgrade request, the subprotocol and token strings) is freed before the stream idles.
awaitable<bool> live_stream::open(std::unique_ptr<http::request<http::string_body>> upgrade) {
  auto self = shared_from_this();
  // Subprotocol: binary Protobuf if offered, else JSON (also when none is offered).
  std::string offered;  // every line of the field, as one list (RFC 6455, 11.3.4)
  auto lines = upgrade->equal_range(http::field::sec_websocket_protocol);
  for (auto it = lines.first; it != lines.second; ++it) offered.append(offered.empty() ? "" : ",").append(it->value());
  std::string chosen;
  for (std::size_t pos = 0; pos <= offered.size();) {
    auto comma = offered.find(',', pos);
    if (comma == std::string::npos) comma = offered.size();
    std::string item = offered.substr(pos, comma - pos);
    item.erase(0, item.find_first_not_of(" \t"));  // optional white space: spaces and tabs
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item == proto_subprotocol || (item == json_subprotocol && chosen.empty())) chosen = item;
    pos = comma + 1;
  }
  binary_ = chosen == proto_subprotocol;
  // The handshake's answer (the HTTP server has checked that this is a WebSocket upgrade).
  auto key = std::string((*upgrade)[http::field::sec_websocket_key]);
  http::response<http::string_body> res;
  res.version(11);
  res.set(http::field::server, "petchat");
  bool accepted = false;
  // A refusal is an error object as every other answer's (bad_request; the status says which).
  auto refused = [&res](http::status status, char const* message) {
    res.result(status);
    res.body() = error_response(errors::fail(errors::code::bad_request, message)).body;
  };
  if ((*upgrade)[http::field::sec_websocket_version] != "13") {
    refused(http::status::upgrade_required, "unsupported WebSocket version: 13 is supported");
    res.set(http::field::sec_websocket_version, "13");
  } else if (!wsf::valid_client_key(key)) {
    refused(http::status::bad_request, "missing or malformed Sec-WebSocket-Key");
  } else {
    accepted = true;
    res.result(http::status::switching_protocols);
    res.set(http::field::upgrade, "websocket");
    res.set(http::field::connection, "upgrade");
    res.set(http::field::sec_websocket_accept, wsf::accept_key(key));
    if (!chosen.empty()) res.set(http::field::sec_websocket_protocol, chosen);
  }
  if (!accepted) {
    res.set(http::field::content_type, "application/json");
    res.set("X-Content-Type-Options", "nosniff");  // as every other answer (http_server)
    res.keep_alive(false);
    res.prepare_payload();
  }
  // Written within auth_deadline, and cancelled at shutdown: a client that never reads the
  // answer (a full socket buffer) must not hold the connection with no timer running.
  control_->cancel = [self] {
    boost::system::error_code ignored;
    self->socket_.cancel(ignored);
  };
  control_->idle = true;  // shutdown cancels the write (it cancels only an idle connection)
  if (control_->stop_requested) co_return false;
  auth_deadline_timer_.expires_after(auth_deadline);
  auth_deadline_timer_.async_wait([weak = std::weak_ptr<live_stream>(self)](boost::system::error_code ec) {
    auto s = weak.lock();
    if (ec || !s || s->phase_ != phase::opening) return;
    boost::system::error_code ignored;
    s->socket_.cancel(ignored);
  });
  auto [hec, hn] = co_await http::async_write(socket_, res, use_tuple);
  (void)hn;
  auth_deadline_timer_.cancel();
  if (hec || !accepted) co_return false;
  boost::system::error_code nec;
  socket_.non_blocking(true, nec);  // reads after readability never block the thread
  if (nec) co_return false;
  phase_ = phase::authenticating;

  // At shutdown the server closes live streams with 1001 (going away).
  control_->idle = true;
  control_->cancel = [self] { self->close_with(1001, "shutting_down"); };  // 1001: going away
  if (control_->stop_requested) close_with(1001, "shutting_down");         // shutdown came during the handshake

  std::string token;
  auto auth_header = std::string((*upgrade)[http::field::authorization]);
  if (auto bearer = bearer_token(auth_header))  // as REST reads it: the scheme in any case
    token = *bearer;
  else if (auto q = query_param(query_of(upgrade->target()), "access_token"))
    token = *q;
  upgrade.reset();
  std::optional<std::uint64_t> no_resume;  // named: no temporaries in a co_await expression (GCC 12)
  if (!token.empty() && accepting()) co_await authenticate(token, no_resume, 0);  // not once closing
  // An unauthenticated connection gets auth_deadline to present a token; keep-alive pings
  // would otherwise let it hold a socket forever.
  if (phase_ != phase::authenticating) co_return true;
  auth_deadline_timer_.expires_after(auth_deadline);
  auth_deadline_timer_.async_wait([weak = std::weak_ptr<live_stream>(self)](boost::system::error_code ec) {
    auto s = weak.lock();
    if (!ec && s && s->phase_ == phase::authenticating) {
      s->send_error(0, errors::fail(code::not_authenticated, "no auth frame in time"));
      s->close_with(close_unauthenticated, "not_authenticated");
    }
  });
  co_return true;
}

awaitable<void> live_stream::start(std::unique_ptr<http::request<http::string_body>> upgrade, std::string early) {
  // (A co_await in an if condition with one in the branch trips GCC 12: kept apart.)
  bool opened = co_await open(std::move(upgrade));
  if (!opened) {
    co_await finish();
    co_return;
  }
  if (early.empty()) {
    wait_readable();
    co_return;
  }
  handled_ = 0;  // frames that came with the upgrade request: read first, in order
  reader_.feed(early);
  on_readable();
}

// A read, not a wait for readability: Asio re-registers the socket with epoll (an
// epoll_ctl system call) for every wait, but not for a read on a socket whose last read
// came up short, which is how a stream comes here. The read takes a few bytes into the
// stream's own small buffer (an ack or two); the frame reader takes the rest from the
// thread's buffer.
void live_stream::wait_readable() {
  handled_ = 0;
  socket_.async_read_some(asio::buffer(first_bytes_),
                          [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                            if (ec) {
                              if (ec != asio::error::operation_aborted) self->ending(end_reason::connection_lost);
                              asio::co_spawn(self->socket_.get_executor(), self->finish(), asio::detached);
                              return;
                            }
                            self->took(self->first_bytes_.data(), n, self->first_bytes_.size());
                            self->on_readable();
                          });
}

void live_stream::on_readable() {
  client::client_frame pending;
  input_step step = input_step::next;
  try {
    while (step == input_step::next) step = step_input(pending);
  } catch (std::exception const& e) {  // as read_input(): told, then 1011 (a store read that threw)
    log::get("ws")->error("{}: live stream failed: {}", user_id(), e.what());
    send_error(0, errors::fail(code::internal, "the live stream failed on the server; reconnect"));
    close_with(close_internal_error, "internal_error");
    step = input_step::end;
  }
  if (step == input_step::wait) return;
  if (step == input_step::end)
    asio::co_spawn(socket_.get_executor(), finish(), asio::detached);
  else
    asio::co_spawn(socket_.get_executor(), read_input(shared_from_this(), step, std::move(pending)), asio::detached);
}

awaitable<void> live_stream::read_input(std::shared_ptr<live_stream> /*keep_alive*/, input_step step,
                                        client::client_frame pending) {
  bool waiting = false;
  try {
    waiting = co_await handle_input(step, std::move(pending));
  } catch (std::exception const& e) {  // as guarded(): the client is told, then the stream ends with 1011
    log::get("ws")->error("{}: live stream failed: {}", user_id(), e.what());
    send_error(0, errors::fail(code::internal, "the live stream failed on the server; reconnect"));
    close_with(close_internal_error, "internal_error");
  }
  if (!waiting) co_await finish();
}

awaitable<bool> live_stream::handle_input(input_step step, client::client_frame pending) {
  for (;;) {
    if (step == input_step::wait) co_return true;
    if (step == input_step::end) co_return false;
    if (step == input_step::yield) {
      // A client that keeps the socket full must not hold the thread: let others run now
      // and then (this stream's writer among them).
      auto executor = socket_.get_executor();  // named: no temporaries in a co_await expression (GCC 12)
      co_await asio::post(executor, asio::use_awaitable);
    } else if (step == input_step::await_frame && phase_ == phase::authenticating) {
      std::optional<std::uint64_t> after;
      if (pending.auth().has_after_seq()) after = pending.auth().after_seq();
      co_await authenticate(pending.auth().access_token(), after, pending.ref());
    } else if (step == input_step::await_frame) {
      co_await dispatch(pending);
    }
    step = step_input(pending);
  }
}

live_stream::input_step live_stream::step_input(client::client_frame& pending) {
  if (!accepting()) return input_step::end;
  if (handled_ >= yield_every) {
    handled_ = 0;
    return input_step::yield;
  }
  auto ev = reader_.next();
  if (ev.what == wsf::reader::event::need_more) {
    // After a short read the socket had nothing more: wait for it rather than read again.
    if (std::exchange(drained_, false)) {
      wait_readable();
      return input_step::wait;
    }
    auto rec = read_available();
    if (rec == asio::error::would_block || rec == asio::error::try_again) {
      wait_readable();  // nothing more for now: idle until the socket is readable
      return input_step::wait;
    }
    if (rec) {  // EOF or reset
      ending(end_reason::connection_lost);
      return input_step::end;
    }
    // A read counts as a frame: a stream of frames the reader consumes itself (pongs, empty
    // fragments) must let the thread go now and then, as events do.
    ++handled_;
    return input_step::next;
  }
  ++handled_;
  if (ev.what == wsf::reader::event::error) {
    if (ev.code == wsf::close_too_big)
      send_error(
          0, errors::fail(code::frame_too_large, "frames are limited to " + std::to_string(reader_.limit()) + " bytes" +
                                                     (authenticated() ? "" : " before authentication")));
    close_with(ev.code, ev.reason);
    return input_step::end;
  }
  if (ev.what == wsf::reader::event::close) {
    ending(end_reason::client_closed);
    close_with(ev.code == 1005 ? wsf::close_normal : ev.code, "");  // the closing handshake's answer
    return input_step::end;
  }
  if (ev.what == wsf::reader::event::ping) {
    answer_ping(ev.payload);
    return input_step::next;
  }
  client::client_frame frame;
  bool parsed = false;
  if (ev.text) {
    parsed = json_frames::parse(ev.payload, frame);
  } else {
    parsed = frame.ParseFromArray(ev.payload.data(), static_cast<int>(ev.payload.size()));
  }
  if (phase_ == phase::authenticating) {
    if (parsed && frame.kind_case() == client::client_frame::kAuth) {
      pending = std::move(frame);
      return input_step::await_frame;
    }
    send_error(frame.ref(), errors::fail(code::not_authenticated, "the first frame must be auth"));
    close_with(close_unauthenticated, "not_authenticated");
    return input_step::next;  // no longer accepting: the next step ends the stream
  }
  if (!parsed) {
    send_error_for_unparsed(ev.payload, ev.text);
    return input_step::next;
  }
  // A session of the user ended since the last frame (recheck_session): no frame is taken
  // before this stream's own session is checked, even if the posted check has not run.
  if (session_changed_.exchange(false)) {
    check_session();
    if (!accepting()) return input_step::next;  // it ended: the next step ends the stream
  }
  // Sends and acks are pipelined: each goes to the commit pipeline without waiting for
  // the previous one, so one connection's burst shares a group commit. Sends reach the
  // pipeline in arrival order (each coroutine runs up to its submit before the next
  // starts) and the pipeline completes in order, so `accepted` answers keep that order.
  // Acks join the write that gathers every stream's (no coroutine of their own).
  bool room = pipelined_ < max_pipelined;
  if (room && frame.kind_case() == client::client_frame::kAck) {
    submit_ack(frame.ack().seq(), frame.ref());
    return input_step::next;
  }
  if (room && frame.kind_case() == client::client_frame::kSend) {
    ++pipelined_;
    asio::co_spawn(socket_.get_executor(), run_pipelined(shared_from_this(), std::move(frame)), asio::detached);
    return input_step::next;
  }
  pending = std::move(frame);
  return input_step::await_frame;
}

awaitable<void> live_stream::finish() {
  if (finish_started_) co_return;
  finish_started_ = true;
  auto self = shared_from_this();
  if (authenticated()) svc_->manager.detach(user_id(), this);
  auth_deadline_timer_.cancel();
  session_check_timer_.cancel();
  control_->cancel = nullptr;
  if (phase_ != phase::closing) phase_ = phase::dropped;
  // Let the writer send what is queued and the close frame, then wait for the peer's.
  if (phase_ == phase::closing) {
    asio::steady_timer grace(socket_.get_executor());
    for (int waits = 0; phase_ == phase::closing && writer_ != writer_state::done && waits < 25; ++waits) {
      grace.expires_after(std::chrono::milliseconds(20));  // at most 0.5 s in all
      co_await grace.async_wait(use_tuple);
    }
    if (phase_ == phase::closing && writer_ == writer_state::done) co_await linger_and_close();
  }
  phase_ = phase::dropped;
  close_linger_timer_.cancel();
  boost::system::error_code ignored;
  socket_.close(ignored);
  auto why = end_reason_.value_or(end_reason::connection_lost);
  svc_->metrics.live_stream_ended(name(why));
  bool notable = why == end_reason::slow_consumer || why == end_reason::internal_error || why == end_reason::idle;
  log::get("ws")->log(notable ? spdlog::level::info : spdlog::level::debug, "{}: live stream ended: {}",
                      authenticated() ? user_id() : std::string("(unauthenticated)"), name(why));
  if (auto done = std::exchange(on_end_, nullptr)) done();
}

awaitable<bool> live_stream::receive(std::chrono::steady_clock::time_point until) {
  for (;;) {
    if (std::chrono::steady_clock::now() >= until) co_return false;
    auto [wec] = co_await socket_.async_wait(tcp::socket::wait_read, use_tuple);
    if (wec) co_return false;
    auto rec = read_available();
    if (rec == asio::error::would_block || rec == asio::error::try_again) continue;
    co_return !rec;  // false: EOF or reset
  }
}

awaitable<void> live_stream::linger_and_close() {
  // The same timer the writer armed when the close frame left: re-armed from now.
  close_linger_timer_.expires_after(close_linger);
  close_linger_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (auto s = weak.lock(); s && !ec) {
      boost::system::error_code ignored;
      s->socket_.cancel(ignored);
    }
  });
  // The timer's cancel recalls only a wait that is pending: one whose completion was
  // already queued when it fired is not, so the time is also looked at before each wait.
  auto until = std::chrono::steady_clock::now() + close_linger;
  bool peer_closed = false;
  while (!peer_closed && co_await receive(until)) {
    for (auto ev = reader_.next(); ev.what != wsf::reader::event::need_more; ev = reader_.next()) {
      if (ev.what == wsf::reader::event::close || ev.what == wsf::reader::event::error) {
        peer_closed = true;
        break;
      }
    }
  }
  close_linger_timer_.cancel();
  boost::system::error_code ignored;
  socket_.close(ignored);
}

void start_live_stream(std::shared_ptr<live_services> services, tcp::socket socket,
                       std::unique_ptr<http::request<http::string_body>> upgrade, std::string early,
                       std::shared_ptr<connection_control> control, std::function<void()> on_end) {
  auto ex = socket.get_executor();
  auto s = std::make_shared<live_stream>(std::move(services), std::move(socket), std::move(control), std::move(on_end));
  asio::co_spawn(ex, s->start(std::move(upgrade), std::move(early)), [s](std::exception_ptr failure) {
    if (!failure) return;
    try {
      std::rethrow_exception(failure);
    } catch (std::exception const& e) {
      log::get("ws")->error("live stream failed: {}", e.what());
    }
    asio::co_spawn(s->executor(), s->finish(), asio::detached);
  });
}

}  // namespace petchat::gateway::detail
