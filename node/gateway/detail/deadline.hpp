// A deadline on a socket's pending operation, for http_server.cpp (its only includer).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>

namespace petchat::gateway::detail {

namespace asio = boost::asio;

// Cancels the socket's pending operation when the deadline passes. The timer runs on the
// connection's strand, like the coroutine, so the flags need no lock.
//
// cancel() cannot recall a handler whose timer already expired and is queued on the strand;
// `armed` makes such a stale handler do nothing, so it can neither touch a socket that is
// gone nor cancel the connection's next operation.
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
    timer_.async_wait([&socket, armed = armed_, fired = fired_](boost::system::error_code ec) {
      if (ec || !*armed) return;
      *fired = true;
      boost::system::error_code ignored;
      socket.cancel(ignored);
    });
  }
  void disarm() {
    if (armed_) *armed_ = false;
    timer_.cancel();
  }
  bool fired() const { return fired_ && *fired_; }

 private:
  asio::steady_timer timer_;
  std::shared_ptr<bool> armed_;
  std::shared_ptr<bool> fired_;
};

}  // namespace petchat::gateway::detail
