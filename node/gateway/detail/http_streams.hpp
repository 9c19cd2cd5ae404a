// Streamed bodies for http_server.cpp (the only includer, so Beast stays compiled there):
// a request body read piece by piece into the handler's buffer (uploads), and a response
// body sent from a file (downloads: sendfile, or read piece by piece where the file or the
// socket cannot do that). Neither holds a whole body in memory.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "node/gateway/gateway.hpp"

namespace petchat::gateway::detail {

// `Deadline` is http_server.cpp's `deadline`: arm(socket, duration), disarm(), fired().
// Each read must bring bytes within `timeout`, and the body as a whole must keep up an
// average of min_body_rate bytes per second once `timeout` has passed: a client trickling
// a byte now and then cannot hold its connection (and its upload slot) for ever.
inline constexpr std::uint64_t min_body_rate = 1024;

// How long `bytes` of a body, in either direction, may take in all at min_body_rate after
// the first `timeout`.
inline std::chrono::milliseconds rate_allowance(std::chrono::milliseconds timeout, std::uint64_t bytes) {
  return timeout + std::chrono::milliseconds(bytes * 1000 / min_body_rate);
}

template <typename Socket, typename Deadline>
class body_stream final : public assets::byte_source {
 public:
  using parser_type = boost::beast::http::request_parser<boost::beast::http::buffer_body>;
  body_stream(Socket& socket, boost::beast::flat_buffer& buffer, parser_type& parser, Deadline& timer,
              std::chrono::milliseconds timeout, bool expect_continue)
      : socket_(socket),
        buffer_(buffer),
        parser_(parser),
        timer_(timer),
        timeout_(timeout),
        continue_(expect_continue),
        started_(std::chrono::steady_clock::now()) {}

  // Fills `into` as far as the body goes: fewer bytes than asked only at its end.
  boost::asio::awaitable<errors::result<std::size_t>> read(char* into, std::size_t size) override {
    namespace http = boost::beast::http;
    constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
    // A body that broke off (the last call returned what had arrived before it did) is not
    // read again: the connection is gone, and a read of it would wait for the timeout,
    // holding the upload for that long.
    if (broken_) co_return errors::fail(errors::code::bad_request, "the body broke off");
    if (continue_) {
      // The client waits for this before it sends a body it announced with Expect.
      continue_ = false;
      static constexpr char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
      timer_.arm(socket_, timeout_);
      auto [ec, n] =
          co_await boost::asio::async_write(socket_, boost::asio::buffer(interim, sizeof interim - 1), use_tuple);
      timer_.disarm();
      (void)n;
      if (ec) co_return errors::fail(errors::code::bad_request, "the connection broke");
    }
    std::size_t got = 0;
    while (got < size && !parser_.is_done()) {
      auto& body = parser_.get().body();
      body.data = into + got;
      body.size = size - got;
      timer_.arm(socket_, timeout_);
      auto [ec, n] = co_await http::async_read_some(socket_, buffer_, parser_, use_tuple);
      timer_.disarm();
      (void)n;
      got = size - body.size;
      if (!ec && std::chrono::steady_clock::now() - started_ > rate_allowance(timeout_, total_ + got)) {
        broken_ = true;
        co_return errors::fail(
            errors::code::request_timeout,
            "the body arrives too slowly (under " + std::to_string(min_body_rate) + " bytes per second on average)");
      }
      if (ec == http::error::need_buffer) continue;
      if (ec) {
        broken_ = true;
        if (got > 0) co_return got;  // what arrived counts; the failure comes next call
        if (timer_.fired()) co_return errors::fail(errors::code::request_timeout, "the body was not received in time");
        co_return errors::fail(errors::code::bad_request, "the body broke off: " + ec.message());
      }
    }
    total_ += got;
    co_return got;
  }

  bool complete() const { return parser_.is_done(); }

 private:
  Socket& socket_;
  boost::beast::flat_buffer& buffer_;
  parser_type& parser_;
  Deadline& timer_;
  std::chrono::milliseconds timeout_;
  bool continue_;
  bool broken_ = false;
  std::chrono::steady_clock::time_point started_;
  std::uint64_t total_ = 0;  // bytes returned by earlier reads
};

// A response's own headers onto Beast's: a name given twice keeps both values where HTTP
// lists them (Vary: the web files' Accept-Encoding and CORS's Origin), else the last.
template <typename Fields>
void put_headers(Fields& res, std::vector<std::pair<std::string, std::string>> const& headers) {
  for (auto const& [k, v] : headers) {
    auto it = res.find(k);
    if (it != res.end() && boost::beast::iequals(k, "vary"))
      res.set(k, std::string(it->value()) + ", " + v);
    else
      res.set(k, v);
  }
}

// Writes a response whose body comes from `r.file`: the header, then the file's bytes in
// pieces. False if the connection failed (or the file ended early: the answer is then cut
// short, and the connection must close).
template <typename Socket, typename Deadline>
boost::asio::awaitable<bool> write_file_response(Socket& socket, Deadline& timer, std::chrono::milliseconds timeout,
                                                 response const& r, unsigned version, bool keep_alive, bool head) {
  namespace http = boost::beast::http;
  constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
  http::response<http::empty_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "petchat");
  res.set(http::field::content_type, r.content_type);
  put_headers(res, r.headers);
  res.keep_alive(keep_alive);
  res.content_length(r.file_length);
  http::response_serializer<http::empty_body> sr(res);
  timer.arm(socket, timeout);
  auto [ec, n] = co_await http::async_write_header(socket, sr, use_tuple);
  timer.disarm();
  (void)n;
  if (ec) co_return false;
  if (head) co_return true;
  // Straight from the file to the socket (sendfile, on the asset pool), waiting for the
  // socket between pieces under the deadline, as long as the file and socket allow it.
  // A reader held to the same least average rate as an upload's sender: one that takes a
  // few bytes now and then cannot keep a connection and the blob's descriptor for days.
  std::uint64_t sent = 0;
  auto const began = std::chrono::steady_clock::now();
  auto time_left = [&sent, began, timeout] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(rate_allowance(timeout, sent) -
                                                                      (std::chrono::steady_clock::now() - began));
    return std::min(left, timeout);
  };
  boost::system::error_code blocking;
  if (!socket.native_non_blocking()) socket.native_non_blocking(true, blocking);
  if (!blocking) {
    for (;;) {
      auto piece = co_await r.file->send_to(
          socket.native_handle(), r.file_offset + sent,
          static_cast<std::size_t>(std::min<std::uint64_t>(r.file_length - sent, std::uint64_t(8) << 20)),
          r.file_offset + r.file_length);
      if (!piece) co_return false;
      if (piece->unsupported) break;
      sent += piece->bytes;
      if (sent == r.file_length) co_return true;
      if (piece->bytes == 0 && !piece->socket_full) co_return false;  // the file ended early: the answer is cut short
      auto left = time_left();
      if (left.count() <= 0) co_return false;
      timer.arm(socket, left);
      auto [wait_error] = co_await socket.async_wait(Socket::wait_write, use_tuple);
      timer.disarm();
      if (wait_error) co_return false;
    }
  }
  // Else two buffers: the next piece is read from the file while the last is written.
  using namespace boost::asio::experimental::awaitable_operators;
  auto size = static_cast<std::size_t>(std::min<std::uint64_t>(r.file_length - sent, 256u << 10));
  std::vector<char> now(size), next(size);
  auto read_at = [&r, size](std::uint64_t at, char* into) -> boost::asio::awaitable<std::size_t> {
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(size, r.file_length - at));
    if (want == 0) co_return 0;
    auto got = co_await r.file->read(r.file_offset + at, into, want);
    co_return got ? got.value() : 0;
  };
  auto write_out = [&socket, &timer, &time_left](char const* data, std::size_t n) -> boost::asio::awaitable<bool> {
    auto left = time_left();
    if (left.count() <= 0) co_return false;
    timer.arm(socket, left);
    auto [write_error, written] = co_await boost::asio::async_write(socket, boost::asio::buffer(data, n),
                                                                    boost::asio::as_tuple(boost::asio::use_awaitable));
    timer.disarm();
    co_return !write_error && written == n;
  };
  std::size_t have = co_await read_at(sent, now.data());
  while (sent < r.file_length) {
    if (have == 0) co_return false;  // the file ended early: the answer is cut short
    auto [following, ok] = co_await (read_at(sent + have, next.data()) && write_out(now.data(), have));
    if (!ok) co_return false;
    sent += have;
    have = following;
    std::swap(now, next);
  }
  co_return true;
}

}  // namespace petchat::gateway::detail
