// One live stream (docs/PROTOCOL.md, "Live stream"): the class behind start_live_stream,
// private to node/gateway. Its code is in three files, one per job:
//   live_stream.cpp          the connection: handshake, reading and dispatching input, the end
//   live_stream_out.cpp    the writer: the bounded queue, pulling mailbox events and pushed
//                           frames into it under the watermark, gathered writes
//   live_stream_frames.cpp what client frames do: authentication, session checks, dispatch
//
// Two coroutines share the connection's strand: the reader (authenticate, then read and
// dispatch client frames) and the writer (the only one that writes to the socket, draining
// a bounded queue; it runs only while there is something to write, so an idle connection
// keeps no writer frame). Everything else reaches the stream by posting to the strand:
// mailbox news and presence/typing frames from the manager.
#pragma once

#include "node/gateway/detail/start_live_stream.hpp"

#include <google/protobuf/util/json_util.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/write.hpp>
#include <cstdint>
#include <optional>

#include "base/format/format.hpp"
#include "base/ids/ids.hpp"
#include "node/gateway/detail/frame_queue.hpp"
#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/json_frames.hpp"
#include "node/gateway/detail/pushed_frames.hpp"
#include "node/gateway/detail/ws_frames.hpp"
#include "node/log/log.hpp"

namespace petchat::gateway::detail {
namespace live {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace wsf = ws_frames;
using tcp = asio::ip::tcp;
using errors::code;
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

inline constexpr char const* proto_subprotocol = "petchat.v1.proto";
inline constexpr char const* json_subprotocol = "petchat.v1.json";
inline constexpr std::size_t events_per_read = 256;
// Sends and acks one connection may have in the commit pipeline at once; beyond it the
// reader waits, which pushes back on the client through TCP.
inline constexpr std::size_t max_pipelined = 64;
// Mailbox events and pushed frames are queued only while the queue holds less than this.
inline constexpr std::size_t max_queued_bytes = 1 << 20;
// A client whose socket accepts nothing for this long while frames wait is cut off.
inline constexpr auto stall_limit = std::chrono::seconds(5);
// Time a new connection has to authenticate.
inline constexpr auto auth_deadline = std::chrono::seconds(10);
// The largest frame taken before authentication (an `auth` frame is a few hundred bytes):
// thousands of connections with no token must not each hold a frame of max_frame_bytes.
inline constexpr std::size_t max_auth_frame_bytes = 4096;
// An authenticated stream re-checks its token this often (and when it expires): an
// expired token, a revoked session or a disabled user ends the live stream too.
inline constexpr auto session_check_every = std::chrono::seconds(5);
// A connection that sends nothing for ping_after is pinged (every session check from then
// on); one silent for idle_timeout, the pongs' 30 s included, is dropped: a device gone
// without a close (out of coverage, its battery out) shows offline within 3 minutes.
inline constexpr auto ping_after = std::chrono::seconds(150);
inline constexpr auto idle_timeout = std::chrono::seconds(180);
// A message begun and not finished, with no other finished meanwhile, for this long ends the
// stream (1008): a byte now and then must not hold up to twice max_frame_bytes for good.
inline constexpr auto message_deadline = std::chrono::seconds(60);
inline constexpr std::uint16_t close_policy_violation = 1008;
// After the close frame is sent, how long the peer's close (or EOF) is waited for.
inline constexpr auto close_linger = std::chrono::seconds(1);
// Frames one gathered write takes from the queue.
inline constexpr std::size_t frames_per_write = 64;
// Client frames one stream handles before letting the thread run other work.
inline constexpr std::size_t yield_every = 64;

// The per-thread read buffer (defined in live_stream.cpp).
extern thread_local std::array<char, 16384> read_scratch;

// Close codes (docs/PROTOCOL.md).
inline constexpr std::uint16_t close_unauthenticated = 4001;
inline constexpr std::uint16_t close_too_many_streams = 4029;
inline constexpr std::uint16_t close_kicked = 4010;      // an admin ended the stream; reconnecting is fine
inline constexpr std::uint16_t close_superseded = 4011;  // its device opened another at the limit: not again
inline constexpr std::uint16_t close_internal_error = 1011;

// Why a live stream ended: logged and counted (petchat_ws_disconnects_total{reason}). The
// first cause recorded wins (a violation closes the stream, and the socket ending after
// it is not news).
enum class end_reason : std::uint8_t {
  client_closed,     // the client sent a close frame
  connection_lost,   // EOF, reset or a write error without a close
  protocol_error,    // a framing violation (1002, 1007, 1009)
  unauthenticated,   // no or a refused authentication (4001)
  session_ended,     // the token expired, the session was revoked or the user disabled (4001)
  too_many_streams,  // 4029
  slow_consumer,     // the client stopped reading
  idle,              // nothing received for idle_timeout
  shutting_down,     // the node stops (1001)
  internal_error,    // the server failed to serve it (1011)
  kicked,            // an admin ended it (4010)
  superseded,        // its device opened another stream at the user's limit (4011)
};

// Where a live stream is in its life; it only moves forward (down this list).
enum class phase : std::uint8_t {
  opening,         // the upgrade is being answered
  authenticating,  // upgraded; a token is due within auth_deadline
  live,            // authenticated and attached to the manager: mailbox, pushes, client frames
  closing,         // our close frame is queued behind what was queued; nothing more is queued
  dropped,         // being torn down without (more of) a closing handshake: nothing is queued or written
};

// The writer coroutine: not running, running, or finished for good (it sent the close
// frame, or a write failed).
enum class writer_state : std::uint8_t { idle, running, done };

char const* name(end_reason r);
// The reason a close frame of ours gives, when no more precise one was recorded.
end_reason reason_of_close(std::uint16_t code);

}  // namespace live

using namespace live;

class live_stream final : public ws::stream_sink, public std::enable_shared_from_this<live_stream> {
 public:
  live_stream(std::shared_ptr<live_services> svc, tcp::socket socket, std::shared_ptr<connection_control> control,
              std::function<void()> on_end)
      : svc_(std::move(svc)),
        socket_(std::move(socket)),
        reader_(std::min(svc_->limits.max_frame_bytes, max_auth_frame_bytes)),
        control_(std::move(control)),
        on_end_(std::move(on_end)) {}

  // -- stream_sink: called from any thread; hop onto the strand.
  void on_mailbox(std::uint64_t head, std::shared_ptr<ws::shared_event const> event) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), head, event = std::move(event)] {
      self->guarded([&] { self->take_event(head, event); });
    });
  }
  // The events of one commit in one hop onto the strand, so that they leave in one write.
  void on_mailbox_events(std::shared_ptr<ws::mailbox_events const> const& events) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), events] {
      self->guarded([&] {
        for (auto const& [head, event] : *events)
          if (!self->take_event(head, event)) break;
      });
    });
  }
  std::string device_id() const override { return device_; }
  void end_by_admin() override {
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->close_with(close_kicked, "kicked"); });
  }
  void end_superseded() override {
    asio::post(socket_.get_executor(),
               [self = shared_from_this()] { self->close_with(close_superseded, "superseded"); });
  }
  void recheck_session() override {  // the periodic check, now (it then waits its period again)
    session_changed_ = true;         // and before the next frame is taken, whichever comes first
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      if (self->session_changed_.exchange(false)) self->guarded([&] { self->check_session(); });
    });
  }
  void on_frame(client::server_frame frame) override {
    asio::post(socket_.get_executor(), [self = shared_from_this(), f = std::move(frame)]() mutable {
      self->guarded([&] { self->push(std::move(f)); });
    });
  }

  // Answers the handshake and starts reading; the stream then lives on its own until
  // the connection ends, when it calls `on_end`.
  awaitable<void> start(std::unique_ptr<http::request<http::string_body>> upgrade, std::string early);
  // Ends the stream: sends what is queued and the close frame if closing, waits for the
  // peer's close, closes the socket and calls `on_end`. Runs once.
  awaitable<void> finish();
  boost::asio::any_io_executor executor() { return socket_.get_executor(); }

 private:
  awaitable<bool> open(std::unique_ptr<http::request<http::string_body>> upgrade);
  // Idle: waits for bytes with no coroutine suspended (a plain handler holds the stream),
  // reading the first few into first_bytes_, then runs on_readable.
  void wait_readable();
  // What one step of reading input came to (step_input).
  enum class input_step {
    next,         // a frame handled, or bytes read: go on
    wait,         // nothing more for now: waiting for readability again
    end,          // the stream must end (finish)
    yield,        // yield_every frames handled: let others run first
    await_frame,  // `pending` needs a coroutine: the first auth, or a frame dispatched in turn
  };
  // Takes the next frame (reading the socket when the reader needs more) and handles it
  // if that takes no waiting: acks and sends while the pipeline has room, pings, errors.
  // Never suspends.
  input_step step_input(client::client_frame& pending);
  // The socket is readable: the frames that need no waiting are handled in this call, with
  // no coroutine (most of a busy stream's input: acks and sends); the first that needs
  // one, or a yield, continues in read_input.
  void on_readable();
  // Handles `step` (and `pending`), then goes on reading until the stream waits or ends.
  awaitable<void> read_input(std::shared_ptr<live_stream> keep_alive, input_step step, client::client_frame pending);
  // read_input's loop: true if it went back to waiting, false if the stream must end.
  awaitable<bool> handle_input(input_step step, client::client_frame pending);
  // Starts the writer if frames (or a close) wait and it is not running, in a handler of
  // its own: whatever the handlers queued before it ran leaves in its write.
  void kick() {
    if (writer_ != writer_state::idle || phase_ == phase::dropped || (out_.empty() && phase_ != phase::closing)) return;
    writer_ = writer_state::running;
    last_progress_ = std::chrono::steady_clock::now();  // stalls count from here, not from the last burst
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->write_now(); });
  }
  // The writer (writer_ is running): what is queued goes out in gathered non-blocking
  // writes, here, with no coroutine, as long as the socket takes all of it; what it does
  // not take (and the close frame) goes on in write_loop, which waits for the socket and
  // watches for a client that stopped reading.
  void write_now();
  // One write under the stall watchdog; then more is pulled into the queue (pump). False
  // if the write failed (the stream is dropped).
  awaitable<bool> write_buffers(std::shared_ptr<live_stream> const& self,
                                std::vector<asio::const_buffer> const& buffers);
  // `rest` (of which `written` bytes are out already) first, then the queue.
  awaitable<void> write_loop(std::shared_ptr<live_stream> self, std::vector<queued_frame> rest, std::size_t written);
  // A write failed: the connection is broken. Closing it ends the idle reader's wait, so
  // the stream finishes.
  void write_failed() {
    ending(end_reason::connection_lost);
    phase_ = phase::dropped;
    boost::system::error_code ignored;
    socket_.close(ignored);
  }
  // Watchdog around each write: one the client does not take within stall_limit means it
  // stopped reading. `write_gen_` makes a late timer for an earlier write harmless.
  void watch_write(std::shared_ptr<live_stream> const& self) {
    auto gen = ++write_gen_;
    stall_timer_.expires_after(stall_limit);
    stall_timer_.async_wait([weak = std::weak_ptr<live_stream>(self), gen](boost::system::error_code ec) {
      auto s = weak.lock();
      if (!ec && s && s->write_gen_ == gen) s->drop_slow_consumer();
    });
  }
  void write_finished() {
    ++write_gen_;
    stall_timer_.cancel();
  }
  // `keep_alive` (copied into the coroutine frame) holds the stream until it ends.
  awaitable<void> run_pipelined(std::shared_ptr<live_stream> /*keep_alive*/, client::client_frame frame) {
    try {
      co_await dispatch(frame);
    } catch (std::exception const& e) {  // a store read that failed: the request gets its answer
      log::get("ws")->error("{}: frame failed: {}", user_id(), e.what());
      send_error(frame.ref(), errors::fail(code::internal, "the request failed on the server; try again"));
    }
    --pipelined_;
  }
  // An acknowledgement gathered with other streams' into one write (message_service::ack),
  // counted as pipelined until answered; the answer: an error, or `acked` for a ref.
  void submit_ack(std::uint64_t seq, std::uint64_t ref);
  void answer_ack(std::uint64_t ref, errors::status const& s);
  awaitable<bool> authenticate(std::string const& token, std::optional<std::uint64_t> after, std::uint64_t ref);
  // A fresh token for the same session, sent as an `auth` frame while authenticated.
  void reauthenticate(std::string const& token, std::uint64_t ref);
  void schedule_session_check();
  void check_session();
  awaitable<void> dispatch(client::client_frame const& frame);
  // Queues a frame for the writer (and starts it). A client that lets frames pile up
  // beyond the queue's limit is not reading: it is dropped.
  void enqueue(client::server_frame const& frame) { enqueue(encode(frame, binary_)); }
  template <typename Frame>  // std::string, or std::shared_ptr<std::string const>
  void enqueue(Frame frame) {
    if (!accepting()) return;
    // Mailbox events and pushed frames stay under the watermark (pump) and answers under
    // max_pipelined, so only control frames and unpipelined answers can pile up beyond
    // this: a client that lets them do so is not reading.
    if (out_.size() >= svc_->limits.send_queue_frames + max_pipelined) return drop_slow_consumer();
    out_.push(std::move(frame));
    kick();
  }
  // On the strand: the mailbox has events up to `head`; `event` is the one at `head` (or
  // null). Forwards it, or reads the store (pump). False if the stream was dropped.
  bool take_event(std::uint64_t head, std::shared_ptr<ws::shared_event const> const& event);
  // A whole WebSocket frame holding `frame`, or a server_frame holding `event`, in the
  // given encoding (binary: Protobuf; else JSON text).
  static std::string encode(client::server_frame const& frame, bool binary);
  static std::string encode(client::event const& event, bool binary);
  static std::string encode(ws::shared_event const& event, bool binary);
  // An error's message as a stream sends it: at most 256 bytes (cut at a character), as
  // many quote the client's own input (an id of 60 KiB) and a client that does not read
  // holds up to 1,088 answers queued.
  static std::string for_people(std::string const& message) {
    constexpr std::size_t most = 256;
    if (message.size() <= most) return message;
    std::size_t cut = most;
    while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
    return message.substr(0, cut) + "\u2026";
  }
  void send_error(std::uint64_t ref, errors::failure const& f) {
    client::server_frame out;
    out.set_ref(ref);
    out.mutable_error()->set_code(errors::name(f.code));
    out.mutable_error()->set_message(for_people(f.message));
    out.mutable_error()->set_retry_after_s(f.retry_after_s);
    enqueue(out);
  }
  // The answer to a frame that is not a client_frame: its ref back if it can be read, and a
  // send refused for nesting its content too deep (the Protobuf parsers' own limits come
  // before the protocol's) gets invalid_field, in either encoding.
  void send_error_for_unparsed(std::string_view payload, bool text) {
    auto f = errors::fail(code::malformed_frame, "the frame is not a valid client_frame");
    auto hint = text ? inspect_json_frame(payload) : inspect_binary_frame(payload);
    if (hint.content_depth > messages::max_content_depth)
      f = errors::fail(
          code::invalid_field,
          "body.content nests objects and lists deeper than " + std::to_string(messages::max_content_depth) + " levels",
          "body");
    send_error(hint.ref, f);
  }
  // Queues a close frame after whatever is queued; the writer sends it and stops.
  void close_with(std::uint16_t code_value, std::string reason) {
    if (!accepting()) return;
    ending(reason_of_close(code_value));
    phase_ = phase::closing;
    close_code_ = code_value;
    close_reason_ = std::move(reason);
    kick();
  }
  // Mailbox events, then pushed frames, into the queue up to the watermark.
  void pump();
  // A presence or typing frame: coalesced per subject, queued as room allows.
  void push(client::server_frame frame) {
    if (!accepting()) return;
    pushed_.push(std::move(frame));
    pump();
  }
  // Mailbox events and pushed frames together stay under this many queued frames; the
  // rest of the queue's capacity is for direct answers.
  std::size_t watermark() const { return std::max<std::size_t>(1, svc_->limits.send_queue_frames / 2); }
  // Room for more mailbox events and pushed frames: under the watermark in frames and in
  // bytes (512 frames of large messages would be tens of MiB held for a slow reader).
  bool has_room() const { return out_.size() < watermark() && out_.bytes() < max_queued_bytes; }
  // Runs a plain (non-coroutine) handler's work: a failure there (a store read, a record
  // that cannot be parsed) ends this stream with 1011, never the process.
  template <typename Fn>
  void guarded(Fn&& fn) {
    try {
      fn();
    } catch (std::exception const& e) {
      log::get("ws")->error("{}: live stream failed: {}", user_id(), e.what());
      send_error(0, errors::fail(code::internal, "the live stream failed on the server; reconnect"));
      close_with(close_internal_error, "internal_error");
    }
  }
  // True if frames are waiting and the socket has accepted none for `stall_limit`: the
  // client has stopped reading.
  bool stalled() const { return !out_.empty() && std::chrono::steady_clock::now() - last_progress_ > stall_limit; }
  void drop_slow_consumer() {
    if (phase_ == phase::dropped) return;
    ending(end_reason::slow_consumer);
    // Its writes are stuck, so a close frame could not get through either: drop the
    // connection.
    log::get("ws")->warn("{}: client stopped reading ({} frames queued), disconnecting slow consumer", user_id(),
                         out_.size());
    phase_ = phase::dropped;
    out_.clear();
    boost::system::error_code ignored;
    socket_.close(ignored);
  }
  // Queues a WebSocket control frame (pong, ping) unless the stream is closing.
  // Bounded like every frame: a client that pings without reading the pongs is not reading.
  void enqueue_control(wsf::opcode op, std::string_view payload) { enqueue(wsf::frame(op, payload)); }
  // Answers a client's ping. A pong still waiting to be written takes the new one's place
  // (RFC 6455 5.5.3: only the latest ping need be answered): a client that pings without
  // reading, before it has even authenticated, holds one pong here, not a queue of them.
  void answer_ping(std::string_view payload) {
    auto pong = wsf::frame(wsf::opcode::pong, payload);
    if (waiting_pong_ && out_.replace_waiting(*waiting_pong_, pong)) return;
    auto number = out_.pushed();
    enqueue(std::move(pong));
    waiting_pong_.reset();
    if (out_.pushed() == number + 1) waiting_pong_ = number;  // queued (not refused as closing)
  }
  // Reads what the socket has now into the frame reader (never waits). Not a coroutine:
  // the per-thread buffer is used and released within one call.
  boost::system::error_code read_available() {
    boost::system::error_code ec;
    std::size_t n = socket_.read_some(asio::buffer(read_scratch), ec);
    if (!ec) took(read_scratch.data(), n, read_scratch.size());
    return ec;
  }
  // `n` bytes read into `data` by a read of up to `asked`: to the frame reader.
  void took(char const* data, std::size_t n, std::size_t asked) {
    drained_ = n < asked;
    last_rx_ = std::chrono::steady_clock::now();
    reader_.feed(std::string_view(data, n));
  }
  // Reads what the socket has (waiting for it if nothing) into the frame reader. False at
  // EOF, on an error, or once `until` has passed.
  awaitable<bool> receive(std::chrono::steady_clock::time_point until);
  // After the close frame: reads and discards until the peer closes too or close_linger
  // passes, so the close frame is not lost to a reset, then closes the socket.
  awaitable<void> linger_and_close();
  std::string user_id() const { return who_.user_name + "@" + svc_->region; }
  // Frames may still be queued: not closing, not dropped.
  bool accepting() const { return phase_ <= phase::live; }
  // The stream got as far as live (who_ is set only then).
  bool authenticated() const { return !who_.user_name.empty(); }
  void ending(end_reason r) {
    if (!end_reason_) end_reason_ = r;
  }

  std::shared_ptr<live_services> svc_;
  tcp::socket socket_;
  wsf::reader reader_;  // client frames from the bytes read
  std::shared_ptr<connection_control> control_;
  std::function<void()> on_end_;  // called once, when the connection has ended
  phase phase_ = phase::opening;
  // The last read returned less than it asked for: the socket had nothing more then, so
  // the reader waits for readability instead of reading again to be told so (EAGAIN).
  bool drained_ = false;
  std::array<char, 64> first_bytes_{};         // what wait_readable's read takes
  std::size_t handled_ = 0;                    // frames handled since the stream last waited or yielded
  bool finish_started_ = false;                // finish() runs once (it waits, so a second call must not start over)
  bool binary_ = false;                        // replies as Protobuf binary frames (else JSON text); set in open()
  frame_queue out_;                            // WebSocket frames waiting for the writer; bounded
  std::optional<std::uint64_t> waiting_pong_;  // out_'s number of the last pong queued
  std::vector<queued_frame> burst_;            // write_now's frames being written (kept for its capacity)
  pushed_frames pushed_;                       // presence and typing waiting for room in out_, latest per subject
  writer_state writer_ = writer_state::idle;
  std::chrono::steady_clock::time_point last_rx_ = std::chrono::steady_clock::now();  // bytes last received
  // When the reader last held no partial message or had just finished one (check_session).
  std::chrono::steady_clock::time_point progress_at_ = std::chrono::steady_clock::now();
  std::uint64_t messages_seen_ = 0;
  std::uint16_t close_code_ = 0;          // of our close frame, once closing
  std::optional<end_reason> end_reason_;  // why the stream is ending, once known (see ending)
  std::string close_reason_;
  users::principal who_;          // set once authenticated and attached
  std::string device_;            // who_.device_id, written once before attaching
  std::uint64_t sent_seq_ = 0;    // newest mailbox seq queued to this device
  std::uint64_t known_head_ = 0;  // newest mailbox seq known to exist
  std::size_t pipelined_ = 0;     // sends/acks submitted and not yet answered
  std::uint64_t acked_here_ = 0;  // the highest seq this stream's acks made durable
  asio::steady_timer stall_timer_{socket_.get_executor()};
  asio::steady_timer auth_deadline_timer_{socket_.get_executor()};  // while authenticating
  asio::steady_timer session_check_timer_{socket_.get_executor()};  // while live: token, session, idleness
  std::atomic<bool> session_changed_{false};  // set by recheck_session (any thread): check before the next frame
  asio::steady_timer close_linger_timer_{socket_.get_executor()};  // after our close frame
  std::string token_;                                              // the access token the stream runs on
  std::uint64_t write_gen_ = 0;                                    // bumped when a write starts and when it ends
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();  // last write done
};

}  // namespace petchat::gateway::detail
