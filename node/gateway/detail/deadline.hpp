// A deadline on a socket's pending operation, for http_server.cpp (its only includer).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>

namespace petchat::gateway::detail {

namespace asio = boost::asio;

// Cancels the socket's pending operation when the deadline passes, and again every 50 ms
// until the caller disarms it: a cancel that comes while no read or write is pending (a
// composed operation between two of its reads, its last completion queued on the strand)
// recalls nothing, and the operation's next read must not wait for ever. The timer runs on
// the connection's strand, like the coroutine, so the flags need no lock.
//
// cancel() cannot recall a handler whose timer already expired and is queued on the strand;
// `armed` makes such a stale handler do nothing, so it can neither touch a socket (or this
// deadline) that is gone nor cancel the connection's next operation.
class deadline {
 public:
  explicit deadline(asio::any_io_executor ex) : timer_(ex) {}
  ~deadline() { disarm(); }
  template <typename Socket>
  void arm(Socket& socket, std::chrono::milliseconds d) {
    disarm();
    armed_ = std::make_shared<bool>(true);
    fired_ = std::make_shared<bool>(false);
    timer_.expires_after(d);
    wait(socket);
  }
  void disarm() {
    if (armed_) *armed_ = false;
    timer_.cancel();
  }
  bool fired() const { return fired_ && *fired_; }

 private:
  template <typename Socket>
  void wait(Socket& socket) {
    timer_.async_wait([this, &socket, armed = armed_, fired = fired_](boost::system::error_code ec) {
      if (ec || !*armed) return;
      *fired = true;
      boost::system::error_code ignored;
      socket.cancel(ignored);
      timer_.expires_after(std::chrono::milliseconds(50));
      wait(socket);
    });
  }

  asio::steady_timer timer_;
  std::shared_ptr<bool> armed_;
  std::shared_ptr<bool> fired_;
};

}  // namespace petchat::gateway::detail
