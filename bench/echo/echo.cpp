// petchat-echo: the ceiling for petchat's own stack. A bare Boost.Beast WebSocket server
// with the node's threading (an io_context on N threads, a strand per connection, C++20
// coroutines) that sends every frame straight back. petchat-bench measures it with the
// same client code, so every petchat figure can be quoted as a ratio of the bare transport.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> echo_session(tcp::socket socket) {
  websocket::stream<tcp::socket> ws(std::move(socket));
  auto [aec] = co_await ws.async_accept(use_tuple);
  if (aec) co_return;
  beast::flat_buffer buffer;
  for (;;) {
    buffer.clear();
    auto [rec, n] = co_await ws.async_read(buffer, use_tuple);
    if (rec) co_return;
    ws.binary(ws.got_binary());
    auto [wec, m] = co_await ws.async_write(buffer.data(), use_tuple);
    if (wec) co_return;
    (void)n;
    (void)m;
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, asio::io_context& io) {
  for (;;) {
    auto strand = asio::make_strand(io);
    auto [ec, socket] = co_await acceptor.async_accept(strand, use_tuple);
    if (ec) co_return;
    socket.set_option(tcp::no_delay(true));
    asio::co_spawn(strand, echo_session(std::move(socket)), asio::detached);
  }
}

int main(int argc, char** argv) {
  unsigned threads = argc > 1 ? static_cast<unsigned>(std::stoul(argv[1])) : std::thread::hardware_concurrency();
  asio::io_context io(static_cast<int>(threads));
  tcp::acceptor acceptor(asio::make_strand(io), tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::printf("petchat-echo ready: ws://127.0.0.1:%u\n", acceptor.local_endpoint().port());
  std::fflush(stdout);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { io.stop(); });
  asio::co_spawn(acceptor.get_executor(), accept_loop(acceptor, io), asio::detached);
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  return 0;
}
