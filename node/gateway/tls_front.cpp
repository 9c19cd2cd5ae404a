// TLS termination (see detail/tls_front.hpp).
//
// Teardown: deadlines close the TCP socket rather than cancel an operation. An operation
// of Asio's ssl::stream may be parked behind the other direction's (a read that must send
// an alert waits for a pending write); a cancel does not reach it, and once woken it would
// start socket I/O of its own without a deadline. A closed socket fails every operation.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <memory>

#include "node/gateway/detail/tls_front.hpp"

namespace petchat::gateway::detail {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;
using tls_stream = ssl::stream<tcp::socket>;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t piece = 16384;          // one TLS record's plaintext at most
constexpr std::size_t upstream_piece = 4096;  // held while waiting: small (clients send little)
constexpr int pair_buffer = 32768;            // each end of the pair: backpressure shows early

// False once the connection's coroutine frame is gone: a timer's handler may already be
// queued when its timer is cancelled, and must then do nothing.
struct frame_alive {
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  ~frame_alive() { *alive = false; }
};

// The connection's two sockets, and timers that close both when they run out. Everything
// runs on the connection's strand: no lock.
struct relay {
  tls_stream& tls;
  unix_socket::socket& plain;
  std::shared_ptr<bool> alive;
  asio::steady_timer write_timer;  // a write that does not finish in time
  asio::steady_timer end_timer;    // the linger after the gateway's end closed

  void close() {
    boost::system::error_code ignored;
    tls.next_layer().close(ignored);
    plain.close(ignored);
  }
  // Runs `timer` for `d`; if it runs out, the connection is closed.
  void arm(asio::steady_timer& timer, std::chrono::milliseconds d) {
    timer.expires_after(d);
    timer.async_wait([this, alive = alive](boost::system::error_code ec) {
      if (!ec && *alive) close();
    });
  }
};

// Client to gateway: what the TLS stream decrypts is written to the plaintext end. When the
// client stops sending (close_notify, EOF, an error), the gateway reads end-of-stream. The
// write has no deadline of its own: the gateway reads when it is ready (a live stream with
// many requests in flight pushes back on its client, as it does over plain TCP) and ends
// the connection under its own deadlines, which ends this write too.
asio::awaitable<void> upstream(relay& r) {
  std::array<char, upstream_piece> buffer;
  for (;;) {
    auto [ec, n] = co_await r.tls.async_read_some(asio::buffer(buffer), use_tuple);
    if (ec) break;
    auto [wec, written] = co_await asio::async_write(r.plain, asio::buffer(buffer.data(), n), use_tuple);
    (void)written;
    if (wec) break;
  }
  boost::system::error_code ignored;
  r.plain.shutdown(unix_socket::socket::shutdown_send, ignored);
}

// Gateway to client: what the gateway writes is encrypted to the client. When the gateway
// closes its end, the client has a moment for its last bytes (a WebSocket's closing
// handshake), then the connection closes. A write error closes it at once.
asio::awaitable<void> downstream(relay& r, tls_limits limits) {
  r.plain.non_blocking(true);
  for (;;) {
    // The buffer exists only while there is something to send: an idle connection holds none.
    auto [wait_ec] = co_await r.plain.async_wait(unix_socket::socket::wait_read, use_tuple);
    auto buffer = std::make_unique_for_overwrite<char[]>(piece);
    boost::system::error_code ec = wait_ec;
    std::size_t n = 0;
    if (!ec) n = r.plain.read_some(asio::buffer(buffer.get(), piece), ec);
    if (ec == asio::error::would_block) continue;
    if (ec) {
      if (ec == asio::error::eof) {
        boost::system::error_code ignored;
        r.tls.next_layer().shutdown(tcp::socket::shutdown_send, ignored);
        r.arm(r.end_timer, limits.linger);
      } else {
        r.close();
      }
      co_return;
    }
    r.arm(r.write_timer, limits.write);
    auto [wec, written] = co_await asio::async_write(r.tls, asio::buffer(buffer.get(), n), use_tuple);
    r.write_timer.cancel();
    (void)written;
    if (wec) {
      r.close();
      co_return;
    }
  }
}

std::string handshake_failure(boost::system::error_code ec, bool timed_out) {
  if (timed_out) return "TLS handshake not finished in time";
  if (ec == asio::error::eof || ec == ssl::error::stream_truncated) return "TLS handshake: the client closed";
  return "TLS handshake failed: " + ec.message();
}

void small_buffers(int fd) {
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &pair_buffer, sizeof pair_buffer);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &pair_buffer, sizeof pair_buffer);
}

}  // namespace

asio::awaitable<void> terminate_tls(std::shared_ptr<ssl::context> context, tcp::socket socket, tls_limits limits,
                                    std::shared_ptr<connection_control> control, std::function<void(tcp::socket)> serve,
                                    std::function<void(std::string const&, bool)> failed) {
  auto ex = co_await asio::this_coro::executor;
  tls_stream tls(std::move(socket), *context);
  tcp::socket inner(ex);
  unix_socket::socket plain(ex);
  bool timed_out = false, handshake_over = false;
  frame_alive frame;  // after what timers' handlers touch: destroyed before them
  boost::system::error_code ignored;

  // The handshake, within its deadline; the server's shutdown closes it too.
  asio::steady_timer deadline(ex, limits.handshake);
  deadline.async_wait([&tls, &timed_out, &handshake_over, alive = frame.alive](boost::system::error_code ec) {
    if (ec || !*alive || handshake_over) return;  // (a handler queued as the handshake ended)
    timed_out = true;
    boost::system::error_code ignored;
    tls.next_layer().close(ignored);
  });
  control->idle = true;
  control->cancel = [&tls] {
    boost::system::error_code ignored;
    tls.next_layer().close(ignored);
  };
  if (control->stop_requested) control->cancel();
  auto [hec] = co_await tls.async_handshake(ssl::stream_base::server, use_tuple);
  handshake_over = true;
  deadline.cancel();
  control->cancel = nullptr;
  control->idle = false;
  if (hec || control->stop_requested) {
    if (hec) failed(handshake_failure(hec, timed_out), false);
    tls.next_layer().close(ignored);
    co_return;
  }

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    failed(std::string("cannot make a socket pair: ") + std::strerror(errno), true);
    tls.next_layer().close(ignored);
    co_return;
  }
  small_buffers(fds[0]);
  small_buffers(fds[1]);
  boost::system::error_code aec, pec;
  inner.assign(tcp::v6(), fds[0], aec);
  if (aec) ::close(fds[0]);
  plain.assign(unix_socket(), fds[1], pec);
  if (pec) ::close(fds[1]);
  if (aec || pec) {
    failed("cannot use a socket pair: " + (aec ? aec : pec).message(), true);
    tls.next_layer().close(ignored);
    co_return;
  }
  serve(std::move(inner));

  using namespace asio::experimental::awaitable_operators;
  relay r{tls, plain, frame.alive, asio::steady_timer(ex), asio::steady_timer(ex)};
  auto client_to_gateway = upstream(r);  // named: no temporaries in a co_await expression (GCC 12)
  auto gateway_to_client = downstream(r, limits);
  auto both = std::move(client_to_gateway) && std::move(gateway_to_client);
  co_await std::move(both);
  r.write_timer.cancel();
  r.end_timer.cancel();
  r.close();
}

}  // namespace petchat::gateway::detail
