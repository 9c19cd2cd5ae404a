// A TCP stream under the WebSocket stream that can gather several WebSocket frames into one
// TCP write. While "held", writes are copied into a buffer and complete at once; the next
// write after release() sends the buffer and its own bytes with one gathered write. The
// session holds it while it has more frames queued, so a burst of frames costs one syscall
// and one packet instead of one each.
//
// Every write still goes through Beast's WebSocket write path (which serializes writes,
// including its own pings and pongs), so bytes can never interleave: a control frame Beast
// writes while held is buffered in order with the data frames.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <array>
#include <string>

namespace petchat::gateway::detail {

class coalescing_stream {
 public:
  using next_layer_type = boost::asio::ip::tcp::socket;
  using executor_type = next_layer_type::executor_type;

  explicit coalescing_stream(next_layer_type socket) : socket_(std::move(socket)) {}

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  next_layer_type& next_layer() noexcept { return socket_; }
  next_layer_type const& next_layer() const noexcept { return socket_; }

  // Writes are buffered until release(); the first write after it sends them all.
  void hold() noexcept { held_ = true; }
  void release() noexcept { held_ = false; }
  std::size_t buffered() const noexcept { return pending_.size(); }

  template <typename MutableBuffers, typename Handler>
  auto async_read_some(MutableBuffers const& buffers, Handler&& handler) {
    return socket_.async_read_some(buffers, std::forward<Handler>(handler));
  }

  template <typename ConstBuffers, typename Handler>
  auto async_write_some(ConstBuffers const& buffers, Handler&& handler) {
    namespace asio = boost::asio;
    return asio::async_initiate<Handler, void(boost::system::error_code, std::size_t)>(
        [this](auto h, ConstBuffers const& bufs) {
          std::size_t n = asio::buffer_size(bufs);
          if (held_) {
            for (auto it = asio::buffer_sequence_begin(bufs); it != asio::buffer_sequence_end(bufs); ++it)
              pending_.append(static_cast<char const*>(asio::const_buffer(*it).data()), asio::const_buffer(*it).size());
            auto ex = asio::get_associated_executor(h, socket_.get_executor());
            asio::post(ex, [h = std::move(h), n]() mutable { h(boost::system::error_code{}, n); });
            return;
          }
          if (pending_.empty()) return socket_.async_write_some(bufs, std::move(h));
          // Send what was held and this write's bytes together; report only this write's.
          auto held = std::make_shared<std::string>(std::move(pending_));
          pending_.clear();
          std::vector<asio::const_buffer> all;
          all.emplace_back(asio::buffer(*held));
          for (auto it = asio::buffer_sequence_begin(bufs); it != asio::buffer_sequence_end(bufs); ++it)
            all.emplace_back(*it);
          asio::async_write(
              socket_, all,
              [h = std::move(h), held, n](boost::system::error_code ec, std::size_t) mutable { h(ec, ec ? 0 : n); });
        },
        handler, buffers);
  }

 private:
  next_layer_type socket_;
  bool held_ = false;
  std::string pending_;
};

// Beast's WebSocket close handshake tears the transport down through these.
inline void teardown(boost::beast::role_type role, coalescing_stream& s, boost::system::error_code& ec) {
  boost::beast::websocket::teardown(role, s.next_layer(), ec);
}

template <typename TeardownHandler>
void async_teardown(boost::beast::role_type role, coalescing_stream& s, TeardownHandler&& handler) {
  boost::beast::websocket::async_teardown(role, s.next_layer(), std::forward<TeardownHandler>(handler));
}

}  // namespace petchat::gateway::detail
