// An http_server's construction and its listeners: a TCP port, and a Unix socket of mode
// 0600 that is never taken over from a live process (see gateway.hpp).
#include <sys/stat.h>

#include <boost/asio/strand.hpp>

#include "node/gateway/detail/server_state.hpp"
#include "node/gateway/gateway.hpp"

namespace petchat::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;

http_server::http_server(asio::io_context& io, server_limits limits, handler h, std::string name)
    : state_(std::make_shared<state>(io, limits, std::move(h), name)) {}

http_server::~http_server() {
  // Remove the socket file only if it is still ours: never another node's that took the
  // path over (it cannot, while we serve it; see listen_unix, but an operator could).
  struct stat st {};
  if (!state_->unix_path.empty() && ::stat(state_->unix_path.c_str(), &st) == 0 && st.st_ino == state_->unix_inode) {
    boost::system::error_code ignored;
    std::filesystem::remove(state_->unix_path, ignored);
  }
}

std::uint16_t http_server::listen_tcp(config::listen_address const& address) {
  auto ip = asio::ip::make_address(address.host);
  tcp::endpoint ep(ip, address.port);
  auto acceptor = std::make_unique<tcp::acceptor>(asio::make_strand(state_->io));
  acceptor->open(ep.protocol());
  acceptor->set_option(tcp::acceptor::reuse_address(true));
  acceptor->bind(ep);
  acceptor->listen(asio::socket_base::max_listen_connections);
  auto port = acceptor->local_endpoint().port();
  state_->tcp_acceptor = std::move(acceptor);
  return port;
}

void http_server::listen_unix(std::filesystem::path const& path) {
  std::error_code ec;
  if (std::filesystem::is_socket(path, ec)) {
    // A socket file left by a process that died is replaced; one that a live process
    // answers on (another node configured with the same admin.socket) is not taken over.
    unix_socket::socket probe(state_->io);
    boost::system::error_code cec;
    probe.connect(unix_socket::endpoint(path.string()), cec);
    if (!cec)
      throw std::runtime_error("admin socket " + path.string() +
                               " is served by another running process (another petchat-node with the same "
                               "admin.socket?); refusing to take it over");
    std::filesystem::remove(path, ec);
  }
  auto acceptor = std::make_unique<unix_socket::acceptor>(asio::make_strand(state_->io));
  acceptor->open(unix_socket());
  // Bind under a umask that leaves the socket 0600 from its first instant: no window in
  // which another local user could connect. Called before the I/O threads start.
  mode_t old = ::umask(0177);
  boost::system::error_code bec;
  acceptor->bind(unix_socket::endpoint(path.string()), bec);
  ::umask(old);
  if (bec) throw boost::system::system_error(bec, "bind " + path.string());
  acceptor->listen();
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) state_->unix_inode = st.st_ino;
  state_->unix_path = path;
  state_->unix_acceptor = std::move(acceptor);
}

}  // namespace petchat::gateway
