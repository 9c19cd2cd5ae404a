#include "node/ctl/admin_client.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace petchat::ctl {

namespace {

using steady = std::chrono::steady_clock;

// Bounds the socket's next blocking call (`option`: SO_SNDTIMEO for connect and send,
// SO_RCVTIMEO for recv) by what is left until `deadline`; false once nothing is left. (A
// zero timeval would mean no bound at all: it is never set.)
// Sets the socket's timeout for `option` to what is left before `deadline`, and to at most
// a quarter of a second when a signal may stop the wait: a signal that lands after `stop`
// was looked at and before the call blocks is then seen that much later, not at the
// deadline. False when the deadline has passed.
bool bound_by(int fd, int option, steady::time_point deadline, bool stoppable) {
  auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - steady::now());
  if (left.count() <= 0) return false;
  if (stoppable) left = std::min(left, std::chrono::microseconds(250000));
  timeval tv{static_cast<time_t>(left.count() / 1000000), static_cast<suseconds_t>(left.count() % 1000000)};
  ::setsockopt(fd, SOL_SOCKET, option, &tv, sizeof tv);
  return true;
}

}  // namespace

std::optional<admin_reply> call(std::string const& socket_path, std::string const& method, std::string const& target,
                                std::string const& body, std::string& error, int timeout_s, call_state* state,
                                volatile std::sig_atomic_t const* stop) {
  call_state unused;
  call_state& st = state ? *state : unused;
  auto const deadline = steady::now() + std::chrono::seconds(timeout_s);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    error = "socket path too long";
    return std::nullopt;
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } guard{fd};
  // A signal cuts each wait below short (EINTR: the handlers are installed without
  // SA_RESTART, and a socket call with a timeout is never restarted anyway); then `stop`
  // says whether to give up. True, with `error` set, when the wait is over.
  auto give_up = [&](int option, std::string const& what) {
    if (stop && *stop) {
      error = "interrupted";
      st.interrupted = true;
      return true;
    }
    if (bound_by(fd, option, deadline, stop != nullptr)) return false;
    error = what + " within " + std::to_string(timeout_s) + " s";
    st.timed_out = true;
    return true;
  };
  // connect() on a Unix stream socket waits, under SO_SNDTIMEO, while the node's queue of
  // connections is full (EAGAIN when that runs out); after EINTR the socket is still
  // unconnected, and connecting again is safe.
  for (;;) {
    if (give_up(SO_SNDTIMEO, "no connection accepted")) return std::nullopt;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    if (errno == EINTR || errno == EAGAIN) continue;  // the deadline and `stop` decide
    error = std::strerror(errno);
    return std::nullopt;
  }
  st.reached = true;
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: petchat-admin\r\nConnection: close\r\n";
  if (!body.empty()) req += "Content-Type: application/json\r\n";
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  for (std::size_t sent = 0; sent < req.size();) {
    if (give_up(SO_SNDTIMEO, "the request was not taken")) return std::nullopt;
    ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) {
      error = std::strerror(errno);
      return std::nullopt;
    }
    sent += static_cast<std::size_t>(n);
  }
  // The whole answer within the timeout, and at most 64 MiB of it: whatever answers on the
  // socket (a node, or something in its place) cannot hold petchatctl (a cron backup, say)
  // for ever a byte at a time, nor fill its memory.
  constexpr std::size_t most = std::size_t(64) << 20;
  std::string raw;
  char buf[8192];
  for (;;) {
    if (give_up(SO_RCVTIMEO, "no answer")) return std::nullopt;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;  // see above
    if (n < 0) {
      error = std::strerror(errno);
      return std::nullopt;
    }
    if (n == 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
    if (raw.size() > most) {
      error = "the answer is larger than 64 MiB";
      return std::nullopt;
    }
  }
  // "HTTP/1.1 200 OK\r\n...headers...\r\n\r\nbody" (Connection: close, so the body runs to EOF).
  auto head_end = raw.find("\r\n\r\n");
  if (!raw.starts_with("HTTP/1.") || raw.size() < 12 || head_end == std::string::npos) {
    error = raw.empty() ? "the node closed the connection without an answer" : "the node sent a reply that is not HTTP";
    return std::nullopt;
  }
  // Three digits, 2xx, 4xx or 5xx: anything else is no answer of the node's (a 1xx or 3xx
  // below 400 would otherwise be taken as a success).
  auto digits = std::string_view(raw).substr(9, 3);
  bool status_ok =
      raw[8] == ' ' && std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
      digits >= "200" && digits <= "599" && digits[0] != '3' && (raw.size() == 12 || raw[12] == ' ' || raw[12] == '\r');
  if (!status_ok) {
    error = "the node sent a reply that is not HTTP";
    return std::nullopt;
  }
  admin_reply reply;
  reply.status = static_cast<unsigned>(std::atoi(raw.c_str() + 9));
  reply.body = raw.substr(head_end + 4);
  return reply;
}

}  // namespace petchat::ctl
