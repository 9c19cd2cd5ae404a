// TLS termination (see detail/tls_front.hpp).
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>

#include "node/gateway/detail/deadline.hpp"
#include "node/gateway/detail/tls_front.hpp"

namespace petchat::gateway::detail {
namespace {

namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;
using tls_stream = ssl::stream<tcp::socket>;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t piece = 16384;  // one TLS record's plaintext at most

// What the two directions share (both run on the connection's strand: no lock).
struct relay_state {
  bool plain_closed = false;  // the gateway's side closed: the client gets nothing more
};

// Client to gateway: what the TLS stream decrypts is written to the plaintext end. When the
// client stops sending (close_notify, EOF, an error), the gateway reads end-of-stream.
asio::awaitable<void> upstream(tls_stream& tls, unix_socket::socket& plain, relay_state& s,
                               std::chrono::milliseconds write_timeout) {
  deadline timer(co_await asio::this_coro::executor);
  std::array<char, piece> buffer;
  while (!s.plain_closed) {
    auto [ec, n] = co_await tls.async_read_some(asio::buffer(buffer), use_tuple);
    if (ec) break;
    timer.arm(plain, write_timeout);
    auto [wec, written] = co_await asio::async_write(plain, asio::buffer(buffer.data(), n), use_tuple);
    timer.disarm();
    (void)written;
    if (wec) break;
  }
  boost::system::error_code ignored;
  if (!s.plain_closed) plain.shutdown(unix_socket::socket::shutdown_send, ignored);
}

// Gateway to client: what the gateway writes is encrypted to the client. When the gateway
// closes its end (or the client cannot be written to), the upstream read is ended too.
asio::awaitable<void> downstream(tls_stream& tls, unix_socket::socket& plain, relay_state& s,
                                 std::chrono::milliseconds write_timeout) {
  deadline timer(co_await asio::this_coro::executor);
  std::array<char, piece> buffer;
  for (;;) {
    auto [ec, n] = co_await plain.async_read_some(asio::buffer(buffer), use_tuple);
    if (ec) break;
    timer.arm(tls.next_layer(), write_timeout);
    auto [wec, written] = co_await asio::async_write(tls, asio::buffer(buffer.data(), n), use_tuple);
    timer.disarm();
    (void)written;
    if (wec) break;
  }
  s.plain_closed = true;
  boost::system::error_code ignored;
  tls.next_layer().cancel(ignored);
}

std::string handshake_failure(boost::system::error_code ec, bool timed_out) {
  if (timed_out) return "TLS handshake not finished in time";
  if (ec == asio::error::eof || ec == ssl::error::stream_truncated) return "TLS handshake: the client closed";
  return "TLS handshake failed: " + ec.message();
}

}  // namespace

asio::awaitable<void> terminate_tls(std::shared_ptr<ssl::context> context, tcp::socket socket, tls_limits limits,
                                    std::function<void(tcp::socket)> serve,
                                    std::function<void(std::string const&)> failed) {
  auto ex = co_await asio::this_coro::executor;
  tls_stream tls(std::move(socket), *context);
  boost::system::error_code ignored;
  deadline timer(ex);
  timer.arm(tls.next_layer(), limits.handshake);
  auto [hec] = co_await tls.async_handshake(ssl::stream_base::server, use_tuple);
  timer.disarm();
  if (hec) {
    failed(handshake_failure(hec, timer.fired()));
    tls.next_layer().close(ignored);
    co_return;
  }
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    failed(std::string("socketpair: ") + std::strerror(errno));
    tls.next_layer().close(ignored);
    co_return;
  }
  tcp::socket inner(ex);
  unix_socket::socket plain(ex);
  boost::system::error_code aec, pec;
  inner.assign(tcp::v6(), fds[0], aec);
  plain.assign(unix_socket(), fds[1], pec);
  if (aec || pec) {
    if (aec) ::close(fds[0]);
    if (pec) ::close(fds[1]);
    failed("socket pair: " + (aec ? aec : pec).message());
    tls.next_layer().close(ignored);
    co_return;
  }
  serve(std::move(inner));

  using namespace asio::experimental::awaitable_operators;
  relay_state state;
  co_await (upstream(tls, plain, state, limits.write) && downstream(tls, plain, state, limits.write));
  plain.close(ignored);
  if (state.plain_closed && tls.next_layer().is_open()) {
    // The gateway closed first: say so (close_notify), briefly, and close.
    timer.arm(tls.next_layer(), std::chrono::milliseconds(1000));
    auto [sec] = co_await tls.async_shutdown(use_tuple);
    timer.disarm();
    (void)sec;
  }
  tls.next_layer().close(ignored);
}

}  // namespace petchat::gateway::detail
