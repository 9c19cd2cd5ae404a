// One WebSocket session of the live stream (docs/PROTOCOL.md, "Live stream").
//
// Two coroutines share the connection's strand: the reader (this session's main loop:
// authenticate, then read and dispatch client frames) and the writer (the only one that
// writes to the socket, draining a bounded queue; it runs only while there is something to
// write, so an idle connection keeps no writer frame). Everything else reaches the session
// by posting to the strand: mailbox news and presence/typing frames from the manager.
//
// The WebSocket protocol itself (handshake answer, framing, ping/pong, closing handshake)
// is petchat's own (detail/ws_frames.hpp) over the Asio socket: an idle session waits for
// readability with no buffer and no composed operation pending, and reads into a
// per-thread buffer only when bytes are there.
#include "node/gateway/detail/ws_session.hpp"

#include <google/protobuf/util/json_util.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/write.hpp>

#include "node/format/format.hpp"
#include "node/gateway/detail/frame_queue.hpp"
#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/pushed_frames.hpp"
#include "node/gateway/detail/ws_frames.hpp"
#include "node/ids/ids.hpp"
#include "node/log/log.hpp"

namespace petchat::gateway::detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace wsf = ws_frames;
using tcp = asio::ip::tcp;
using errors::code;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

constexpr char const* proto_subprotocol = "petchat.v1.proto";
constexpr char const* json_subprotocol = "petchat.v1.json";
constexpr std::size_t events_per_read = 256;
// Sends and acks one connection may have in the commit pipeline at once; beyond it the
// reader waits, which pushes back on the client through TCP.
constexpr std::size_t max_pipelined = 64;
// A client whose socket accepts nothing for this long while frames wait is cut off.
constexpr auto stall_limit = std::chrono::seconds(5);
// Time a new connection has to authenticate.
constexpr auto auth_deadline = std::chrono::seconds(10);
// An authenticated session re-checks its token this often (and when it expires): an
// expired token, a revoked session or a disabled user ends the live stream too.
constexpr auto session_check_every = std::chrono::seconds(5);
// A connection that sends nothing for half this long is pinged; one silent for this long
// is dropped.
constexpr auto idle_timeout = std::chrono::seconds(300);
// After the close frame is sent, how long the peer's close (or EOF) is waited for.
constexpr auto close_linger = std::chrono::seconds(1);
// Frames one gathered write takes from the queue.
constexpr std::size_t frames_per_write = 64;
// Client frames one session handles before letting the thread run other work.
constexpr std::size_t yield_every = 64;
// Typing frames a client may send: a sustained rate and a burst. More are dropped: typing
// is a hint, and every one is a frame for someone else's connection.
constexpr double typing_per_second = 5;
constexpr double typing_burst = 10;

// Sessions read into this buffer, then hand the bytes to their frame reader at once: the
// buffer is shared by every session of the thread and held by none.
thread_local std::array<char, 16384> read_scratch;

// Close codes (docs/PROTOCOL.md).
constexpr std::uint16_t close_unauthenticated = 4001;
constexpr std::uint16_t close_slow_consumer = 4008;
constexpr std::uint16_t close_too_many_sessions = 4029;
constexpr std::uint16_t close_internal_error = 1011;

// Why a live stream ended: logged and counted (petchat_ws_disconnects_total{reason}). The
// first cause recorded wins (a violation closes the stream, and the socket ending after
// it is not news).
enum class end_reason : std::uint8_t {
  client_closed,      // the client sent a close frame
  connection_lost,    // EOF, reset or a write error without a close
  protocol_error,     // a framing violation (1002, 1007, 1009)
  unauthenticated,    // no or a refused authentication (4001)
  session_ended,      // the token expired, the session was revoked or the user disabled (4001)
  too_many_sessions,  // 4029
  slow_consumer,      // the client stopped reading
  idle,               // nothing received for idle_timeout
  shutting_down,      // the node stops (1001)
  internal_error,     // the server failed to serve it (1011)
};

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
    case end_reason::too_many_sessions:
      return "too_many_sessions";
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

// The reason a close frame of ours gives, when no more precise one was recorded.
end_reason reason_of_close(std::uint16_t code) {
  switch (code) {
    case 1001:
      return end_reason::shutting_down;
    case close_unauthenticated:
      return end_reason::unauthenticated;
    case close_too_many_sessions:
      return end_reason::too_many_sessions;
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

class session final : public ws::session_sink, public std::enable_shared_from_this<session> {
 public:
  session(std::shared_ptr<live_services> svc, tcp::socket socket, std::shared_ptr<connection_control> control,
          std::function<void()> on_end)
      : svc_(std::move(svc)),
        socket_(std::move(socket)),
        reader_(svc_->limits.max_frame_bytes),
        control_(std::move(control)),
        on_end_(std::move(on_end)) {}

  // -- session_sink: called from any thread; hop onto the strand.
  void on_mailbox(std::uint64_t head, std::shared_ptr<client::event const> event) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), head, event = std::move(event)] {
      self->guarded([&] {
        self->known_head_ = std::max(self->known_head_, head);
        if (self->stalled()) return self->drop_slow_consumer();
        // Up to date and with room: forward the event as is, no store read.
        if (event && self->authenticated_ && event->seq() == self->sent_seq_ + 1 &&
            self->out_.size() < self->watermark()) {
          client::server_frame f;
          *f.mutable_event() = *event;
          self->sent_seq_ = event->seq();
          self->enqueue(f);
          return;
        }
        self->pump();
      });
    });
  }
  void on_frame(client::server_frame frame) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), f = std::move(frame)]() mutable {
      self->guarded([&] { self->push(std::move(f)); });
    });
  }

  // Answers the handshake and starts reading; the session then lives on its own until
  // the connection ends, when it calls `on_end`.
  awaitable<void> start(std::unique_ptr<http::request<http::string_body>> upgrade);
  // Ends the session: sends what is queued and the close frame if closing, waits for the
  // peer's close, closes the socket and calls `on_end`. Runs once.
  awaitable<void> finish();
  boost::asio::any_io_executor executor() { return socket_.get_executor(); }

 private:
  awaitable<bool> open(std::unique_ptr<http::request<http::string_body>> upgrade);
  // Idle: waits for the socket to be readable with no coroutine suspended (a plain
  // handler holds the session), then runs read_input.
  void wait_readable();
  // Handles every complete frame the socket has, then waits again (or finishes).
  awaitable<void> read_input(std::shared_ptr<session> self);
  // read_input's loop: true if it went back to waiting, false if the session must end.
  awaitable<bool> handle_input(std::shared_ptr<session> const& self);
  // Starts the writer if frames (or a close) wait and it is not running.
  void kick() {
    if (writing_ || writer_done_ || dead_ || (out_.empty() && !close_code_)) return;
    writing_ = true;
    last_progress_ = std::chrono::steady_clock::now();  // stalls count from here, not from the last burst
    asio::co_spawn(socket_.get_executor(), write_loop(shared_from_this()), asio::detached);
  }
  awaitable<void> write_loop(std::shared_ptr<session> self);
  // Watchdog around each write: one the client does not take within stall_limit means it
  // stopped reading. `write_gen_` makes a late timer for an earlier write harmless.
  void watch_write(std::shared_ptr<session> const& self) {
    auto gen = ++write_gen_;
    stall_timer_.expires_after(stall_limit);
    stall_timer_.async_wait([weak = std::weak_ptr<session>(self), gen](boost::system::error_code ec) {
      auto s = weak.lock();
      if (!ec && s && s->write_gen_ == gen) s->drop_slow_consumer();
    });
  }
  void write_finished() {
    ++write_gen_;
    stall_timer_.cancel();
  }
  // `keep_alive` (copied into the coroutine frame) holds the session until it ends.
  awaitable<void> run_pipelined(std::shared_ptr<session> /*keep_alive*/, client::client_frame frame) {
    try {
      co_await dispatch(frame);
    } catch (std::exception const& e) {
      log::get("ws")->error("{}: frame failed: {}", user_id(), e.what());
    }
    --pipelined_;
  }
  static client::client_frame resume_ack(std::uint64_t seq) {
    client::client_frame f;
    f.mutable_ack()->set_seq(seq);
    return f;
  }
  awaitable<bool> authenticate(std::string const& token, std::optional<std::uint64_t> after, std::uint64_t ref);
  // A fresh token for the same session, sent as an `auth` frame while authenticated.
  void reauthenticate(std::string const& token, std::uint64_t ref);
  void schedule_session_check();
  void check_session();
  awaitable<void> dispatch(client::client_frame const& frame);
  void enqueue(client::server_frame const& frame);
  void send_error(std::uint64_t ref, errors::failure const& f) {
    client::server_frame out;
    out.set_ref(ref);
    out.mutable_error()->set_code(errors::name(f.code));
    out.mutable_error()->set_message(f.message);
    enqueue(out);
  }
  // The answer to a frame that is not a client_frame. A JSON one that is still JSON gets
  // its ref back, and a send refused for nesting its content too deep (the Protobuf JSON
  // parser's own limit comes first) gets the same invalid_field as a binary one.
  void send_error_for_unparsed(std::string_view json_text) {
    auto f = errors::fail(code::malformed_frame, "the frame is not a valid client_frame");
    auto hint = inspect_json_frame(json_text);
    if (hint.content_depth > messages::max_content_depth)
      f = errors::fail(
          code::invalid_field,
          "body.content nests objects and lists deeper than " + std::to_string(messages::max_content_depth) + " levels",
          "body");
    send_error(hint.ref, f);
  }
  // Queues a close frame after whatever is queued; the writer sends it and stops.
  void close_with(std::uint16_t code_value, std::string reason) {
    if (close_code_) return;
    ending(reason_of_close(code_value));
    close_code_ = code_value;
    close_reason_ = std::move(reason);
    kick();
  }
  // Mailbox events, then pushed frames, into the queue up to the watermark.
  void pump();
  // A presence or typing frame: coalesced per subject, queued as room allows.
  void push(client::server_frame frame) {
    if (dead_ || close_code_) return;
    pushed_.push(std::move(frame));
    pump();
  }
  // Mailbox events and pushed frames together stay under this many queued frames; the
  // rest of the queue's capacity is for direct answers.
  std::size_t watermark() const { return std::max<std::size_t>(1, svc_->limits.send_queue_frames / 2); }
  // Runs a plain (non-coroutine) handler's work: a failure there (a store read, a record
  // that cannot be parsed) ends this session with 1011, never the process.
  template <typename Fn>
  void guarded(Fn&& fn) {
    try {
      fn();
    } catch (std::exception const& e) {
      log::get("ws")->error("{}: live session failed: {}", user_id(), e.what());
      send_error(0, errors::fail(code::internal, "the session failed on the server; reconnect"));
      close_with(close_internal_error, "internal_error");
    }
  }
  // True (and spends a token) if the client may send a typing frame now.
  bool typing_allowed() {
    auto now = std::chrono::steady_clock::now();
    typing_tokens_ = std::min(
        typing_burst, typing_tokens_ + std::chrono::duration<double>(now - typing_at_).count() * typing_per_second);
    typing_at_ = now;
    if (typing_tokens_ < 1.0) return false;
    typing_tokens_ -= 1.0;
    return true;
  }
  // True if frames are waiting and the socket has accepted none for `stall_limit`: the
  // client has stopped reading.
  bool stalled() const { return !out_.empty() && std::chrono::steady_clock::now() - last_progress_ > stall_limit; }
  void drop_slow_consumer() {
    if (dead_) return;
    ending(end_reason::slow_consumer);
    // Its writes are stuck, so a close frame could not get through either: drop the
    // connection.
    log::get("ws")->warn("{}: client stopped reading ({} frames queued), disconnecting slow consumer", user_id(),
                         out_.size());
    dead_ = true;
    out_.clear();
    boost::system::error_code ignored;
    socket_.close(ignored);
  }
  // Queues a WebSocket control frame (pong, ping) unless the session is closing.
  void enqueue_control(wsf::opcode op, std::string_view payload) {
    if (dead_ || close_code_) return;
    // Bounded like every frame: a client that pings without reading the pongs is not reading.
    if (out_.size() >= svc_->limits.send_queue_frames + max_pipelined) return drop_slow_consumer();
    out_.push(wsf::frame(op, payload));
    kick();
  }
  // Reads what the socket has now into the frame reader (never waits). Not a coroutine:
  // the per-thread buffer is used and released within one call.
  boost::system::error_code read_available() {
    boost::system::error_code ec;
    std::size_t n = socket_.read_some(asio::buffer(read_scratch), ec);
    if (!ec) {
      last_rx_ = std::chrono::steady_clock::now();
      reader_.feed(std::string_view(read_scratch.data(), n));
    }
    return ec;
  }
  // Reads what the socket has (waiting for it if nothing) into the frame reader. False at
  // EOF or on an error.
  awaitable<bool> receive();
  // After the close frame: reads and discards until the peer closes too or close_linger
  // passes, so the close frame is not lost to a reset, then closes the socket.
  awaitable<void> linger_and_close();
  std::string user_id() const { return who_.user_name + "@" + svc_->region; }
  void ending(end_reason r) {
    if (!end_reason_) end_reason_ = r;
  }

  std::shared_ptr<live_services> svc_;
  tcp::socket socket_;
  wsf::reader reader_;  // client frames from the bytes read
  std::shared_ptr<connection_control> control_;
  std::function<void()> on_end_;  // called once, when the connection has ended
  bool finishing_ = false;
  bool binary_ = false;       // replies as Protobuf binary frames (else JSON text); set in open()
  frame_queue out_;           // WebSocket frames waiting for the writer; bounded
  pushed_frames pushed_;      // presence and typing waiting for room in out_, latest per subject
  bool writing_ = false;      // the writer is running
  bool writer_done_ = false;  // the writer sent the close frame or failed: no more writes
  std::chrono::steady_clock::time_point last_rx_ = std::chrono::steady_clock::now();  // bytes last received
  bool dead_ = false;  // the connection is being torn down: queue nothing more
  std::optional<std::uint16_t> close_code_;
  std::optional<end_reason> end_reason_;  // why the stream is ending, once known (see ending)
  std::string close_reason_;
  bool authenticated_ = false;
  users::principal who_;
  std::uint64_t sent_seq_ = 0;           // newest mailbox seq queued to this device
  std::uint64_t known_head_ = 0;         // newest mailbox seq known to exist
  std::size_t pipelined_ = 0;            // sends/acks submitted and not yet answered
  double typing_tokens_ = typing_burst;  // typing frames allowed now
  std::chrono::steady_clock::time_point typing_at_ = std::chrono::steady_clock::now();  // tokens counted up to
  asio::steady_timer stall_timer_{socket_.get_executor()};
  asio::steady_timer auth_timer_{socket_.get_executor()};  // auth deadline, then the session checks
  std::string token_;                                      // the access token the session runs on
  std::uint64_t write_gen_ = 0;                            // bumped when a write starts and when it ends
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();  // last write done
};

void session::enqueue(client::server_frame const& frame) {
  if (dead_ || close_code_) return;
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
void session::pump() {
  if (!authenticated_ || dead_) return;
  std::size_t watermark = this->watermark();
  while (sent_seq_ < known_head_ && !dead_ && out_.size() < watermark) {
    auto batch = svc_->messages.events_after(user_id(), sent_seq_, std::min(events_per_read, watermark - out_.size()));
    for (auto& e : batch.events) {
      client::server_frame f;
      *f.mutable_event() = std::move(e);
      enqueue(f);
    }
    if (batch.last_seq <= sent_seq_) break;
    sent_seq_ = batch.last_seq;
  }
  while (!pushed_.empty() && !dead_ && !close_code_ && out_.size() < watermark) enqueue(pushed_.pop());
}

awaitable<void> session::write_loop(std::shared_ptr<session> self) {
  for (;;) {
    if (dead_) break;
    if (out_.empty()) {
      if (!close_code_) break;  // drained: the writer ends until kick() starts it again
      writer_done_ = true;
      auto bye = wsf::close_frame(*close_code_, close_reason_);
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
      auth_timer_.expires_after(close_linger);
      auth_timer_.async_wait([weak = std::weak_ptr<session>(self)](boost::system::error_code ec) {
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
      // session finishes.
      ending(end_reason::connection_lost);
      dead_ = true;
      writer_done_ = true;
      boost::system::error_code ignored;
      socket_.close(ignored);
      break;
    }
    last_progress_ = std::chrono::steady_clock::now();
    guarded([&] { pump(); });
  }
  writing_ = false;
}

awaitable<bool> session::authenticate(std::string const& token, std::optional<std::uint64_t> after, std::uint64_t ref) {
  auto who = svc_->users.authenticate(token);
  if (!who) {
    send_error(ref, who.error());
    close_with(close_unauthenticated, errors::name(who.error().code));
    co_return false;
  }
  who_ = who.value();
  std::string uid = user_id();
  auto attached = svc_->manager.attach(uid, shared_from_this());
  if (!attached) {
    send_error(ref, attached.error());
    close_with(close_too_many_sessions, "too_many_sessions");
    co_return false;
  }
  authenticated_ = true;
  token_ = token;
  schedule_session_check();
  known_head_ = svc_->messages.mailbox_head(uid);
  sent_seq_ = after ? std::min(*after, known_head_) : svc_->messages.acked(uid, who_.device_id);
  // Resuming after a seq says the device has processed everything up to it: that counts
  // as its acknowledgement, so an ack lost with a connection does not lose a DELIVERED.
  if (after && sent_seq_ > svc_->messages.acked(uid, who_.device_id)) {
    ++pipelined_;
    asio::co_spawn(socket_.get_executor(), run_pipelined(shared_from_this(), resume_ack(sent_seq_)), asio::detached);
  }
  client::server_frame w;
  w.set_ref(ref);
  auto* welcome = w.mutable_welcome();
  welcome->set_user_id(uid);
  welcome->set_device_id(who_.device_id);
  welcome->set_mailbox_seq(known_head_);
  welcome->set_resume_after(sent_seq_);
  enqueue(w);
  // The contacts' presence streams under the watermark like a mailbox backlog: a user
  // with thousands of contacts gets them all, at the pace the connection takes them.
  for (auto& f : svc_->manager.presence_of_contacts(uid)) pushed_.push(std::move(f));
  pump();
  co_return true;
}

void session::schedule_session_check() {
  auto left = std::chrono::milliseconds(std::max<std::int64_t>(0, who_.token_expires_at_ms - format::now_ms()));
  auth_timer_.expires_after(
      std::min<std::chrono::steady_clock::duration>(session_check_every, left + std::chrono::milliseconds(1)));
  auth_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (auto s = weak.lock(); s && !ec) s->guarded([&] { s->check_session(); });
  });
}

void session::check_session() {
  if (dead_ || close_code_) return;
  // Keep-alive: ping a connection that has been silent for a while; drop a dead one.
  auto silent = std::chrono::steady_clock::now() - last_rx_;
  if (silent >= idle_timeout) {
    log::get("ws")->info("{}: nothing received for {} s, disconnecting", user_id(),
                         std::chrono::duration_cast<std::chrono::seconds>(idle_timeout).count());
    ending(end_reason::idle);
    dead_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
    return;
  }
  if (silent >= idle_timeout / 2) enqueue_control(wsf::opcode::ping, "");
  auto who = svc_->users.authenticate(token_);
  if (!who) {
    ending(end_reason::session_ended);
    send_error(0, who.error());
    close_with(close_unauthenticated, errors::name(who.error().code));
    return;
  }
  schedule_session_check();
}

void session::reauthenticate(std::string const& token, std::uint64_t ref) {
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
  enqueue(w);
}

awaitable<void> session::dispatch(client::client_frame const& frame) {
  auto ref = frame.ref();
  std::string uid = user_id();
  switch (frame.kind_case()) {
    case client::client_frame::kAuth:
      reauthenticate(frame.auth().access_token(), ref);
      co_return;
    case client::client_frame::kSend: {
      auto accepted = co_await svc_->messages.send(uid, frame.send());
      if (!accepted) {
        send_error(ref, accepted.error());
        co_return;
      }
      if (!accepted->duplicate()) svc_->metrics.message_accepted();
      client::server_frame out;
      out.set_ref(ref);
      *out.mutable_accepted() = accepted.value();
      enqueue(out);
      co_return;
    }
    case client::client_frame::kAck: {
      auto s = co_await svc_->messages.ack(uid, who_.device_id, frame.ack().seq());
      if (!s) {
        send_error(ref, s.error());
      } else if (ref != 0) {
        client::server_frame out;
        out.set_ref(ref);
        out.mutable_acked()->set_seq(svc_->messages.acked(uid, who_.device_id));
        enqueue(out);
      }
      co_return;
    }
    case client::client_frame::kRead: {
      auto s = co_await svc_->messages.read(uid, frame.read().conversation_id(), frame.read().message_id());
      if (!s) send_error(ref, s.error());
      co_return;
    }
    case client::client_frame::kTyping: {
      if (!typing_allowed()) co_return;  // dropped: see typing_per_second
      auto to = ids::parse_user_id(frame.typing().to(), svc_->region);
      if (!to) {
        send_error(ref, errors::fail(code::invalid_field, "typing.to must be a user id", "to"));
        co_return;
      }
      auto conv = messages::message_service::conversation_of(uid, to->str());
      if (!svc_->messages.is_member(uid, conv)) {
        send_error(ref, errors::fail(code::conversation_not_found, "no conversation with " + to->str()));
        co_return;
      }
      svc_->manager.relay_typing(uid, to->str(), conv, frame.typing().active());
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

// The handshake and the first authentication: its own coroutine, so that its frame (the
// upgrade request, the subprotocol and token strings) is freed before the session idles.
awaitable<bool> session::open(std::unique_ptr<http::request<http::string_body>> upgrade) {
  auto self = shared_from_this();
  // Subprotocol: binary Protobuf if offered, else JSON (also when none is offered).
  std::string offered((*upgrade)[http::field::sec_websocket_protocol]);
  std::string chosen;
  for (std::size_t pos = 0; pos <= offered.size();) {
    auto comma = offered.find(',', pos);
    if (comma == std::string::npos) comma = offered.size();
    std::string item = offered.substr(pos, comma - pos);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
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
  if ((*upgrade)[http::field::sec_websocket_version] != "13") {
    res.result(http::status::upgrade_required);
    res.set(http::field::sec_websocket_version, "13");
    res.body() = "unsupported WebSocket version: 13 is supported\n";
  } else if (!wsf::valid_client_key(key)) {
    res.result(http::status::bad_request);
    res.body() = "missing or malformed Sec-WebSocket-Key\n";
  } else {
    accepted = true;
    res.result(http::status::switching_protocols);
    res.set(http::field::upgrade, "websocket");
    res.set(http::field::connection, "upgrade");
    res.set(http::field::sec_websocket_accept, wsf::accept_key(key));
    if (!chosen.empty()) res.set(http::field::sec_websocket_protocol, chosen);
  }
  if (!accepted) {
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(false);
    res.prepare_payload();
  }
  auto [hec, hn] = co_await http::async_write(socket_, res, use_tuple);
  (void)hn;
  if (hec || !accepted) co_return false;
  boost::system::error_code nec;
  socket_.non_blocking(true, nec);  // reads after readability never block the thread
  if (nec) co_return false;

  // At shutdown the server closes live sessions with 1001 (going away).
  control_->idle = true;
  control_->cancel = [self] { self->close_with(1001, "shutting_down"); };  // 1001: going away
  if (control_->stop_requested) close_with(1001, "shutting_down");         // shutdown came during the handshake

  std::string token;
  auto auth_header = std::string((*upgrade)[http::field::authorization]);
  if (auth_header.size() > 7 && (auth_header.starts_with("Bearer ") || auth_header.starts_with("bearer ")))
    token = auth_header.substr(7);
  else if (auto q = query_param(query_of(upgrade->target()), "access_token"))
    token = *q;
  upgrade.reset();
  if (!token.empty()) co_await authenticate(token, std::nullopt, 0);
  // An unauthenticated connection gets auth_deadline to present a token; Beast's keep-alive
  // pings would otherwise let it hold a socket forever. (An authenticated one has its
  // session checks on the same timer.)
  if (authenticated_ || close_code_) co_return true;
  auth_timer_.expires_after(auth_deadline);
  auth_timer_.async_wait([weak = std::weak_ptr<session>(self)](boost::system::error_code ec) {
    auto s = weak.lock();
    if (!ec && s && !s->authenticated_) {
      s->send_error(0, errors::fail(code::not_authenticated, "no auth frame in time"));
      s->close_with(close_unauthenticated, "not_authenticated");
    }
  });
  co_return true;
}

awaitable<void> session::start(std::unique_ptr<http::request<http::string_body>> upgrade) {
  // (A co_await in an if condition with one in the branch trips GCC 12: kept apart.)
  bool opened = co_await open(std::move(upgrade));
  if (opened) {
    wait_readable();
    co_return;
  }
  co_await finish();
}

void session::wait_readable() {
  socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](boost::system::error_code ec) {
    if (ec)
      asio::co_spawn(self->socket_.get_executor(), self->finish(), asio::detached);
    else
      asio::co_spawn(self->socket_.get_executor(), self->read_input(self), asio::detached);
  });
}

awaitable<void> session::read_input(std::shared_ptr<session> self) {
  bool waiting = false;
  try {
    waiting = co_await handle_input(self);
  } catch (std::exception const& e) {
    log::get("ws")->error("{}: live session failed: {}", user_id(), e.what());
  }
  if (!waiting) co_await finish();
}

awaitable<bool> session::handle_input(std::shared_ptr<session> const& self) {
  std::size_t handled = 0;
  while (!dead_ && !close_code_) {
    auto ev = reader_.next();
    if (ev.what == wsf::reader::event::need_more) {
      auto rec = read_available();
      if (rec == asio::error::would_block || rec == asio::error::try_again) {
        wait_readable();  // nothing more for now: idle until the socket is readable
        co_return true;
      }
      if (rec) {  // EOF or reset
        ending(end_reason::connection_lost);
        break;
      }
      continue;
    }
    // A client that keeps the socket full must not hold the thread: let others run now
    // and then (this session's writer among them).
    if (++handled % yield_every == 0) co_await asio::post(socket_.get_executor(), asio::use_awaitable);
    if (ev.what == wsf::reader::event::error) {
      if (ev.code == wsf::close_too_big)
        send_error(0, errors::fail(code::frame_too_large,
                                   "frames are limited to " + std::to_string(svc_->limits.max_frame_bytes) + " bytes"));
      close_with(ev.code, ev.reason);
      break;
    }
    if (ev.what == wsf::reader::event::close) {
      ending(end_reason::client_closed);
      close_with(ev.code == 1005 ? wsf::close_normal : ev.code, "");  // the closing handshake's answer
      break;
    }
    if (ev.what == wsf::reader::event::ping) {
      enqueue_control(wsf::opcode::pong, ev.payload);
      continue;
    }
    client::client_frame frame;
    bool parsed = false;
    if (ev.text) {
      google::protobuf::util::JsonParseOptions o;
      o.ignore_unknown_fields = true;
      parsed = google::protobuf::util::JsonStringToMessage(ev.payload, &frame, o).ok();
    } else {
      parsed = frame.ParseFromArray(ev.payload.data(), static_cast<int>(ev.payload.size()));
    }
    if (!authenticated_) {
      if (parsed && frame.kind_case() == client::client_frame::kAuth) {
        std::optional<std::uint64_t> after;
        if (frame.auth().has_after_seq()) after = frame.auth().after_seq();
        co_await authenticate(frame.auth().access_token(), after, frame.ref());
      } else {
        send_error(frame.ref(), errors::fail(code::not_authenticated, "the first frame must be auth"));
        close_with(close_unauthenticated, "not_authenticated");
      }
      continue;
    }
    if (!parsed) {
      send_error_for_unparsed(ev.text ? std::string_view(ev.payload) : std::string_view());
      continue;
    }
    // Sends and acks are pipelined: each goes to the commit pipeline without waiting for
    // the previous one, so one connection's burst shares a group commit. They reach the
    // pipeline in arrival order (each coroutine runs up to its submit before the next
    // starts) and the pipeline completes in order, so `accepted` answers keep that order.
    bool pipelinable =
        frame.kind_case() == client::client_frame::kSend || frame.kind_case() == client::client_frame::kAck;
    if (pipelinable && pipelined_ < max_pipelined) {
      ++pipelined_;
      asio::co_spawn(socket_.get_executor(), run_pipelined(self, std::move(frame)), asio::detached);
    } else {
      co_await dispatch(frame);
    }
  }
  co_return false;
}

awaitable<void> session::finish() {
  if (finishing_) co_return;
  finishing_ = true;
  auto self = shared_from_this();
  if (authenticated_) svc_->manager.detach(user_id(), this);
  auth_timer_.cancel();
  control_->cancel = nullptr;
  if (!close_code_) dead_ = true;
  // Let the writer send what is queued and the close frame, then wait for the peer's.
  if (close_code_ && !dead_) {
    asio::steady_timer grace(socket_.get_executor());
    for (int waits = 0; !dead_ && (writing_ || !writer_done_) && waits < 25; ++waits) {  // at most 0.5 s
      grace.expires_after(std::chrono::milliseconds(20));
      co_await grace.async_wait(use_tuple);
    }
    if (!dead_ && writer_done_ && !writing_) co_await linger_and_close();
  }
  dead_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  auto why = end_reason_.value_or(end_reason::connection_lost);
  svc_->metrics.live_stream_ended(name(why));
  bool notable = why == end_reason::slow_consumer || why == end_reason::internal_error || why == end_reason::idle;
  log::get("ws")->log(notable ? spdlog::level::info : spdlog::level::debug, "{}: live stream ended: {}",
                      authenticated_ ? user_id() : std::string("(unauthenticated)"), name(why));
  if (auto done = std::exchange(on_end_, nullptr)) done();
}

awaitable<bool> session::receive() {
  for (;;) {
    auto [wec] = co_await socket_.async_wait(tcp::socket::wait_read, use_tuple);
    if (wec) co_return false;
    auto rec = read_available();
    if (rec == asio::error::would_block || rec == asio::error::try_again) continue;
    co_return !rec;  // false: EOF or reset
  }
}

awaitable<void> session::linger_and_close() {
  asio::steady_timer deadline(socket_.get_executor());
  deadline.expires_after(close_linger);
  deadline.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (auto s = weak.lock(); s && !ec) {
      boost::system::error_code ignored;
      s->socket_.cancel(ignored);
    }
  });
  bool peer_closed = false;
  while (!peer_closed && co_await receive()) {
    for (auto ev = reader_.next(); ev.what != wsf::reader::event::need_more; ev = reader_.next()) {
      if (ev.what == wsf::reader::event::close || ev.what == wsf::reader::event::error) {
        peer_closed = true;
        break;
      }
    }
  }
  deadline.cancel();
  boost::system::error_code ignored;
  socket_.close(ignored);
}

}  // namespace

void start_websocket(std::shared_ptr<live_services> services, tcp::socket socket,
                     std::unique_ptr<http::request<http::string_body>> upgrade,
                     std::shared_ptr<connection_control> control, std::function<void()> on_end) {
  auto ex = socket.get_executor();
  auto s = std::make_shared<session>(std::move(services), std::move(socket), std::move(control), std::move(on_end));
  asio::co_spawn(ex, s->start(std::move(upgrade)), [s](std::exception_ptr failure) {
    if (!failure) return;
    try {
      std::rethrow_exception(failure);
    } catch (std::exception const& e) {
      log::get("ws")->error("live session failed: {}", e.what());
    }
    asio::co_spawn(s->executor(), s->finish(), asio::detached);
  });
}

}  // namespace petchat::gateway::detail
