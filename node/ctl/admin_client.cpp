#include "node/ctl/admin_client.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace petchat::ctl {

std::optional<admin_reply> call(std::string const& socket_path, std::string const& method, std::string const& target,
                                std::string const& body, std::string& error, int timeout_s, bool* reached,
                                bool* timed_out) {
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
  timeval tv{timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  if (reached) *reached = true;
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: petchat-admin\r\nConnection: close\r\n";
  if (!body.empty()) req += "Content-Type: application/json\r\n";
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  for (std::size_t sent = 0; sent < req.size();) {
    ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = std::strerror(errno);
      return std::nullopt;
    }
    sent += static_cast<std::size_t>(n);
  }
  // The whole answer within the timeout, and at most 64 MiB of it: whatever answers on the
  // socket (a node, or something in its place) cannot hold petchatctl (a cron backup, say)
  // for ever a byte at a time, nor fill its memory.
  constexpr std::size_t most = std::size_t(64) << 20;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  std::string raw;
  char buf[8192];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      error = "no answer within " + std::to_string(timeout_s) + " s";
      if (timed_out) *timed_out = true;
      return std::nullopt;
    }
    timeval wait{static_cast<time_t>(left.count() / 1000000), static_cast<suseconds_t>(left.count() % 1000000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;  // SO_RCVTIMEO: the deadline says
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
    error = "the node sent a reply that is not HTTP";
    return std::nullopt;
  }
  admin_reply reply;
  reply.status = static_cast<unsigned>(std::atoi(raw.c_str() + 9));
  reply.body = raw.substr(head_end + 4);
  return reply;
}

}  // namespace petchat::ctl
