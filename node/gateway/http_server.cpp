#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "node/gateway/detail/deadline.hpp"
#include "node/gateway/detail/http_streams.hpp"
#include "node/gateway/detail/requests.hpp"
#include "node/gateway/detail/server_state.hpp"
#include "node/gateway/detail/start_live_stream.hpp"
#include "node/gateway/detail/tls_front.hpp"
#include "node/gateway/gateway.hpp"
#include "node/tls/tls.hpp"

namespace petchat::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Connections past gateway.max_connections that are answered 503 at once (each for at most
// a second); more are closed unanswered.
constexpr std::size_t max_node_refusals = 64;

using detail::connection_control;
using detail::deadline;

}  // namespace

namespace {

using state_ptr = std::shared_ptr<http_server::state>;

// Takes the body over: an answer of a few MiB (a history page) is held once while written.
http::response<http::string_body> to_beast(response r, unsigned version, bool keep_alive, bool head = false) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "petchat");
  if (!r.content_type.empty() && (!r.body.empty() || r.status != 204))
    res.set(http::field::content_type, r.content_type);
  detail::put_headers(res, r.headers);
  // Every answer (JSON, errors that echo a path) is what it says it is, never sniffed.
  if (res.find("X-Content-Type-Options") == res.end()) res.set("X-Content-Type-Options", "nosniff");
  res.keep_alive(keep_alive);
  if (head) {
    // A HEAD answer announces the body's length but carries no body.
    res.content_length(r.body.size());
  } else {
    res.body() = std::move(r.body);
    res.prepare_payload();
  }
  return res;
}

errors::failure read_failure(boost::system::error_code ec, bool timed_out) {
  using errors::code;
  if (timed_out) return errors::fail(code::request_timeout, "the request was not received in time");
  if (ec == http::error::header_limit) return errors::fail(code::header_too_large, "the request headers are too large");
  if (ec == http::error::body_limit) return errors::fail(code::body_too_large, "the request body is too large");
  if (ec == http::error::buffer_overflow)
    return errors::fail(code::bad_request, "malformed HTTP request: a chunk line or trailer is too long");
  return errors::fail(code::bad_request, "malformed HTTP request: " + ec.message());
}

// Half-close, drain briefly, and let the caller close: see below.
template <typename Socket>
awaitable<void> linger(Socket& socket, deadline& timer) {
  // Half-close, then read and discard what the client still sends for a moment: closing
  // with unread data would make the kernel send RST, and the client could lose the answer.
  boost::system::error_code ignored;
  socket.shutdown(Socket::shutdown_send, ignored);
  char sink[4096];
  timer.arm(socket, std::chrono::milliseconds(1000));
  for (std::size_t total = 0; total < (1u << 20);) {
    auto [rec, got] = co_await socket.async_read_some(asio::buffer(sink), use_tuple);
    if (rec) break;
    total += got;
  }
  timer.disarm();
}

template <typename Socket>
awaitable<void> write_and_linger(Socket& socket, deadline& timer, state_ptr st, response const& r) {
  auto res = to_beast(r, 11, false);
  timer.arm(socket, st->limits.request_timeout);
  auto [ec, n] = co_await http::async_write(socket, res, use_tuple);
  timer.disarm();
  (void)n;
  if (!ec) co_await linger(socket, timer);
}

// A request that could not be read (or whose body will not be): answered, and the
// connection closed.
template <typename Socket>
awaitable<void> refuse_unread(state_ptr st, Socket& socket, deadline& timer, errors::failure f,
                              std::string const& client_address) {
  st->log->debug("{}: request refused: {}", client_address, f.message);
  auto res = error_response(f);
  if (st->refused) st->refused(res.status);
  co_await write_and_linger(socket, timer, st, std::move(res));
}

// Registers a connection's shutdown control; returns its id.
std::uint64_t remember(state_ptr const& st, asio::any_io_executor ex, std::shared_ptr<connection_control> control) {
  std::lock_guard lock(st->controls_mutex);
  auto id = st->next_id++;
  st->controls.emplace(id, std::make_pair(std::move(ex), std::move(control)));
  return id;
}

// Forgets an ended connection: its shutdown control and, unless a TLS front counts the
// connection until its own end (`counted`), its place in its address's count.
void forget(state_ptr const& st, std::uint64_t id, std::string const& client_address, bool counted = true) {
  {
    std::lock_guard lock(st->controls_mutex);
    st->controls.erase(id);
  }
  if (!counted) return;
  st->release_address(client_address);
  st->open--;
}

std::size_t field_count(http::request_header<> const& head) {
  return static_cast<std::size_t>(std::distance(head.begin(), head.end()));
}

bool is_live_stream_upgrade(http::request<http::string_body> const& req) {
  std::string_view t = req.target();
  return (t == "/v1/ws" || t.starts_with("/v1/ws?")) && beast::websocket::is_upgrade(req);
}

request to_request(state_ptr const& st, http::request_header<> const& req, std::string const& peer) {
  return detail::to_request(req, peer, st->limits.trusted_proxies, st->limits.forwarded_rfc7239);
}

// Handles one request and writes the answer. False when the connection ends after it
// (also when a streamed body was not read to its end: what is left of it is not drained).
template <typename Socket, typename Message>
awaitable<bool> answer(state_ptr const& st, Socket& socket, deadline& timer, Message const& head, request in,
                       std::function<bool()> const& body_read) {
  bool keep_alive = head.keep_alive();
  bool is_head = head.method() == http::verb::head;
  unsigned version = head.version();
  auto client_address = in.client_address;
  response out;
  try {
    out = co_await st->handle(std::move(in));
  } catch (std::exception const& e) {
    st->log->error("{}: handler failed: {}", client_address, e.what());
    out = error_response(errors::fail(errors::code::internal, "internal error"));
  }
  keep_alive = keep_alive && !st->stopping && (!body_read || body_read());
  if (out.file) {
    bool ok = co_await detail::write_file_response(socket, timer, st->limits.request_timeout, out, version, keep_alive,
                                                   is_head);
    if (ok && !keep_alive) co_await linger(socket, timer);
    co_return (ok && keep_alive);
  }
  auto res = to_beast(std::move(out), version, keep_alive, is_head);
  timer.arm(socket, st->limits.request_timeout);
  auto [ec, n] = co_await http::async_write(socket, res, use_tuple);
  timer.disarm();
  (void)n;
  if (ec) co_return false;
  if (!keep_alive) {
    co_await linger(socket, timer);
    co_return false;
  }
  co_return true;
}

// A request whose body the handler streams (uploads): the header is read, the body is read
// as the handler asks for it.
template <typename Socket>
awaitable<bool> answer_streamed(state_ptr const& st, Socket& socket, deadline& timer, beast::flat_buffer& buffer,
                                http::request_parser<http::empty_body>& head_parser,
                                std::string const& client_address) {
  http::request_parser<http::buffer_body> parser(std::move(head_parser));
  parser.body_limit(boost::none);  // the handler limits the length
  auto const& head = parser.get();
  auto expect = head[http::field::expect];
  bool expect_continue = beast::iequals(expect, "100-continue");
  detail::body_stream<Socket, deadline> body(socket, buffer, parser, timer, st->limits.request_timeout,
                                             expect_continue);
  auto in = to_request(st, head, client_address);
  in.body_stream = &body;
  if (auto len = parser.content_length()) in.body_length = *len;
  std::function<bool()> read_all = [&parser] { return parser.is_done(); };
  co_return co_await answer(st, socket, timer, head, std::move(in), read_all);
}

// One connection: requests one after another (keep-alive), until the client or the
// server ends it; a live-stream upgrade hands the socket over to the live stream. `counted`:
// its end releases the connection's count (a TLS front's plaintext end leaves that to the
// front, which outlives it).
template <typename Socket>
awaitable<void> serve(state_ptr st, Socket socket, std::string client_address, bool counted = true) {
  auto ex = co_await asio::this_coro::executor;
  auto control = std::make_shared<connection_control>();
  control->cancel = [&socket] {
    boost::system::error_code ignored;
    socket.cancel(ignored);
  };
  std::uint64_t id = remember(st, ex, control);
  deadline timer(ex);
  // What is read and not yet parsed: a header, and then one read's worth of a body. Capped,
  // because Beast keeps a chunk line or a trailer that never ends in it until the deadline.
  beast::flat_buffer buffer(st->limits.max_header_bytes + 65536);
  try {
    // A new connection's first request is due within request_timeout of the accept (header
    // and body): idle_timeout is for keep-alive between requests, not for sockets opened
    // only to be held.
    bool first = true;
    auto const first_due = std::chrono::steady_clock::now() + st->limits.request_timeout;
    while (!st->stopping) {
      // Keep-alive wait: an idle connection costs only its socket, and is closed after
      // idle_timeout or at shutdown.
      if (buffer.size() == 0) {
        control->idle = true;
        timer.arm(socket,
                  first ? std::min(st->limits.idle_timeout, st->limits.request_timeout) : st->limits.idle_timeout);
        auto [ec, n] = co_await socket.async_read_some(buffer.prepare(4096), use_tuple);
        timer.disarm();
        control->idle = false;
        if (ec) break;
        buffer.commit(n);
      }
      control->idle = false;
      http::request_parser<http::empty_body> head_parser;
      head_parser.header_limit(static_cast<std::uint32_t>(st->limits.max_header_bytes));
      head_parser.body_limit(boost::none);  // checked below, once it is known which limit applies
      // One deadline for the whole request, header and body (request_timeout).
      auto request_ends = std::chrono::steady_clock::now() + st->limits.request_timeout;
      if (std::exchange(first, false)) request_ends = std::min(request_ends, first_due);
      timer.arm(socket, std::max(std::chrono::milliseconds(1), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                   request_ends - std::chrono::steady_clock::now())));
      auto [ec, n] = co_await http::async_read_header(socket, buffer, head_parser, use_tuple);
      timer.disarm();
      (void)n;
      if (ec == http::error::end_of_stream && !timer.fired()) break;
      if (ec) {
        co_await refuse_unread(st, socket, timer, read_failure(ec, timer.fired()), client_address);
        break;
      }
      // RFC 9112, 6.3: a Transfer-Encoding that does not end in chunked leaves the body's
      // length unknown (Beast would read none, and the body as the next request).
      if (head_parser.get().count(http::field::transfer_encoding) != 0 && !head_parser.chunked()) {
        co_await refuse_unread(
            st, socket, timer,
            errors::fail(errors::code::bad_request, "malformed HTTP request: a Transfer-Encoding must end in chunked"),
            client_address);
        break;
      }
      if (st->streamed) {
        auto target = head_parser.get().target();
        if (st->streamed(head_parser.get().method_string(), target.substr(0, target.find('?')))) {
          bool more = co_await answer_streamed(st, socket, timer, buffer, head_parser, client_address);
          if (!more) break;
          continue;
        }
      }
      auto length = head_parser.content_length();
      if (length && *length > st->limits.max_body_bytes) {
        co_await refuse_unread(st, socket, timer, read_failure(http::error::body_limit, false), client_address);
        break;
      }
      auto header_fields = field_count(head_parser.get());
      http::request_parser<http::string_body> parser(std::move(head_parser));
      parser.body_limit(st->limits.max_body_bytes);
      timer.arm(socket, std::max(std::chrono::milliseconds(1), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                   request_ends - std::chrono::steady_clock::now())));
      std::tie(ec, n) = co_await http::async_read(socket, buffer, parser, use_tuple);
      timer.disarm();
      // Beast adds a chunked body's trailer fields to the header's: a trailer could then
      // stand in for a header read before the body (X-Forwarded-For, Authorization).
      if (ec || field_count(parser.get()) != header_fields) {
        auto f =
            ec ? read_failure(ec, timer.fired())
               : errors::fail(errors::code::bad_request, "malformed HTTP request: trailer fields are not accepted");
        co_await refuse_unread(st, socket, timer, std::move(f), client_address);
        break;
      }
      if constexpr (std::is_same_v<typename Socket::protocol_type, tcp>) {
        if (st->live && is_live_stream_upgrade(parser.get())) {
          // The HTTP read buffer is not needed any more: give its memory back before a
          // possibly long-lived WebSocket starts (idle connections are counted in KiB).
          // The stream runs as its own coroutine and this one ends: its frame (the HTTP
          // parser's state among it) is not kept for the life of the WebSocket.
          control->cancel = nullptr;
          std::string early(static_cast<char const*>(buffer.data().data()), buffer.size());
          detail::start_live_stream(st->live, std::move(socket),
                                    std::make_unique<http::request<http::string_body>>(parser.release()),
                                    std::move(early), control,
                                    [st, id, client_address, counted] { forget(st, id, client_address, counted); });
          co_return;
        }
      }
      auto in = to_request(st, parser.get(), client_address);
      in.body = std::move(parser.get().body());
      bool more = co_await answer(st, socket, timer, parser.get(), std::move(in), {});
      if (!more) break;
    }
  } catch (std::exception const& e) {
    st->log->error("{}: connection failed: {}", client_address, e.what());
  }
  control->cancel = nullptr;
  boost::system::error_code ignored;
  socket.shutdown(Socket::shutdown_both, ignored);
  socket.close(ignored);
  forget(st, id, client_address, counted);
}

// A connection over its address's cap (`claimed_address`: its place taken over the cap) or
// the node's gets a clear answer, written within a second, and is closed without reading
// anything.
awaitable<void> refuse(state_ptr st, tcp::socket socket, std::string claimed_address) {
  auto ex = co_await asio::this_coro::executor;
  deadline timer(ex);
  auto f = claimed_address.empty()
               ? errors::fail(errors::code::too_many_connections, "the node holds as many connections as it takes (" +
                                                                      std::to_string(st->limits.max_connections) +
                                                                      "); try again later")
               : errors::fail(
                     errors::code::too_many_connections,
                     "too many connections from your address (at most " +
                         std::to_string(st->limits.max_connections_per_address) + ", or " +
                         std::to_string(st->limits.max_connections_per_address * detail::address_counts::wide_factor) +
                         " from an IPv6 /48)");
  auto answer = error_response(f);
  if (st->refused) st->refused(answer.status);
  auto res = to_beast(std::move(answer), 11, false);
  timer.arm(socket, std::chrono::milliseconds(1000));
  auto [ec, n] = co_await http::async_write(socket, res, use_tuple);
  timer.disarm();
  (void)ec;
  (void)n;
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
  if (!claimed_address.empty()) st->release_address(claimed_address);
  st->open--;
}

// A TLS connection: the handshake, then serve() on its plaintext (see
// detail/tls_front.hpp). Counted until the TLS connection itself ends, after its plaintext.
awaitable<void> serve_tls(state_ptr st, tcp::socket socket, std::string client_address) {
  auto ex = co_await asio::this_coro::executor;
  auto control = std::make_shared<connection_control>();
  struct counted {
    state_ptr st;
    std::uint64_t id;
    std::string const& address;
    ~counted() { forget(st, id, address); }
  } count{st, remember(st, ex, control), client_address};
  detail::tls_limits limits{std::min<std::chrono::milliseconds>(st->limits.request_timeout, std::chrono::seconds(10)),
                            st->limits.request_timeout, std::chrono::milliseconds(1000)};
  auto serve_plain = [&](tcp::socket plain) {
    asio::co_spawn(ex, serve(st, std::move(plain), client_address, false), asio::detached);
  };
  auto failed = [&](std::string const& why, bool ours) {
    if (ours)
      st->log->warn("{}: {}", client_address, why);
    else
      st->log->debug("{}: {}", client_address, why);
  };
  co_await detail::terminate_tls(st->tls->context(), std::move(socket), limits, control, serve_plain, failed);
}

template <typename Acceptor>
awaitable<void> accept_loop(state_ptr st, Acceptor& acceptor) {
  for (;;) {
    auto strand = asio::make_strand(st->io);
    auto [ec, socket] = co_await acceptor.async_accept(strand, use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || st->stopping) co_return;
      // Typically EMFILE/ENFILE: retrying at once would spin on an I/O thread.
      st->log->warn("accept failed: {}; pausing accepts for 100 ms", ec.message());
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    if (st->open >= st->limits.max_connections) {
      if (auto n = st->refusals_logged.pass())
        st->log->warn(
            "connection refused: {} connections open (gateway.max_connections); {} refusal(s) since the "
            "last such line",
            st->open.load(), n);
      // A plain-text client is told (as over its address's cap) while few such answers are
      // being written; past them, and on a TLS port, the connection is just closed.
      if constexpr (std::is_same_v<Acceptor, tcp::acceptor>) {
        if (!st->tls && st->open < st->limits.max_connections + max_node_refusals) {
          st->open++;
          asio::co_spawn(strand, refuse(st, std::move(socket), {}), asio::detached);
        }
      }
      continue;  // the socket closes as it goes out of scope
    }
    st->open++;
    std::string address = "unix";
    if constexpr (std::is_same_v<Acceptor, tcp::acceptor>) {
      boost::system::error_code rec;
      auto ep = socket.remote_endpoint(rec);
      address = rec ? "unknown" : ep.address().to_string();
      socket.set_option(tcp::no_delay(true), rec);
      if (!st->claim_address(address)) {
        if (auto n = st->refusals_logged.pass())
          st->log->warn(
              "connection from {} refused: {} open (gateway.max_connections_per_address); {} refusal(s) "
              "since the last such line",
              address, st->limits.max_connections_per_address, n);
        if (st->tls) {
          // On a TLS port a plain-text answer would read as a protocol error: just closed.
          st->open--;
          continue;
        }
        // Counted like any connection until the answer is out, so a flood of refusals is
        // bounded by max_connections too.
        st->claim_address_over_cap(address);
        asio::co_spawn(strand, refuse(st, std::move(socket), std::move(address)), asio::detached);
        continue;
      }
      if (st->tls) {
        asio::co_spawn(strand, serve_tls(st, std::move(socket), std::move(address)), asio::detached);
        continue;
      }
    } else {
      st->claim_address_over_cap(address);
    }
    asio::co_spawn(strand, serve(st, std::move(socket), std::move(address)), asio::detached);
  }
}

}  // namespace

void http_server::count_refusals(std::function<void(unsigned)> counted) {
  state_->refused = std::move(counted);
}

void http_server::stream_bodies(std::function<bool(std::string_view, std::string_view)> streamed) {
  state_->streamed = std::move(streamed);
}

void http_server::serve_live_stream(live_stream s) {
  state_->live = std::make_shared<detail::live_services>(std::move(s));
}

void http_server::serve_tls(std::shared_ptr<tls::server_credentials> credentials) {
  state_->tls = std::move(credentials);
}

void http_server::start() {
  if (state_->tcp_acceptor)
    asio::co_spawn(state_->tcp_acceptor->get_executor(), accept_loop(state_, *state_->tcp_acceptor), asio::detached);
  if (state_->unix_acceptor)
    asio::co_spawn(state_->unix_acceptor->get_executor(), accept_loop(state_, *state_->unix_acceptor), asio::detached);
}

void http_server::shutdown() {
  auto st = state_;
  st->stopping = true;
  // Each acceptor is closed on its own strand, where its accept loop runs.
  if (st->tcp_acceptor)
    asio::post(st->tcp_acceptor->get_executor(), [st] {
      boost::system::error_code ignored;
      st->tcp_acceptor->close(ignored);
    });
  if (st->unix_acceptor)
    asio::post(st->unix_acceptor->get_executor(), [st] {
      boost::system::error_code ignored;
      st->unix_acceptor->close(ignored);
    });
  std::lock_guard lock(st->controls_mutex);
  for (auto& [id, entry] : st->controls) {
    asio::post(entry.first, [control = entry.second] {
      control->stop_requested = true;
      if (control->idle && control->cancel) control->cancel();
    });
  }
}

std::size_t http_server::connections() const {
  return state_->open.load();
}

}  // namespace petchat::gateway
