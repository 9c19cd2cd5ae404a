// Asynchronous name resolution with c-ares (see detail/resolve.hpp). The channel lives on
// a strand of its own: c-ares's sockets are watched by Asio descriptors, its timeouts by a
// timer, and every lookup has a deadline of its own.
#include "node/notify/detail/resolve.hpp"

#include <ares.h>
#include <netinet/in.h>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>

namespace petchat::notify::detail {

namespace asio = boost::asio;

namespace {

constexpr int query_timeout_ms = 2000;  // per try and nameserver; a lookup's deadline is the caller's
constexpr int query_tries = 2;

using handler_type = asio::any_completion_handler<void(resolved)>;

// One lookup: whoever comes first — the answer or the deadline — completes it.
struct lookup {
  lookup(handler_type h, asio::strand<asio::io_context::executor_type> const& s) : handler(std::move(h)), deadline(s) {}
  handler_type handler;
  asio::steady_timer deadline;
  bool done = false;
};

resolved addresses_of(ares_addrinfo const* info) {
  resolved r;
  for (auto const* n = info ? info->nodes : nullptr; n; n = n->ai_next) {
    asio::ip::address a;
    if (n->ai_family == AF_INET) {
      auto const* sin = reinterpret_cast<sockaddr_in const*>(n->ai_addr);
      a = asio::ip::address_v4(ntohl(sin->sin_addr.s_addr));
    } else if (n->ai_family == AF_INET6) {
      auto const* sin6 = reinterpret_cast<sockaddr_in6 const*>(n->ai_addr);
      asio::ip::address_v6::bytes_type bytes;
      std::copy_n(sin6->sin6_addr.s6_addr, bytes.size(), bytes.begin());
      a = asio::ip::address_v6(bytes);
    } else {
      continue;
    }
    if (std::find(r.addresses.begin(), r.addresses.end(), a) == r.addresses.end()) r.addresses.push_back(a);
  }
  return r;
}

}  // namespace

struct name_resolver::core : std::enable_shared_from_this<core> {
  // A socket c-ares uses, watched for what it wants. c-ares closes it, never we.
  struct watch {
    watch(int f, asio::strand<asio::io_context::executor_type> const& s) : fd(f), descriptor(s, f) {}
    int fd;
    asio::posix::stream_descriptor descriptor;
    bool want_read = false, want_write = false;
    bool reading = false, writing = false;
    bool closed = false;
  };

  asio::strand<asio::io_context::executor_type> strand;
  asio::steady_timer timer;  // c-ares's next timeout
  ares_channel channel = nullptr;
  std::map<int, std::shared_ptr<watch>> watches;
  bool down = false;

  explicit core(asio::io_context& io) : strand(asio::make_strand(io)), timer(strand) {}
  ~core() { teardown(); }

  void open(std::vector<std::string> const& nameservers) {
    static std::once_flag library;
    std::call_once(library, [] { ares_library_init(ARES_LIB_INIT_ALL); });
    ares_options o{};
    o.timeout = query_timeout_ms;
    o.tries = query_tries;
    o.sock_state_cb = &core::on_socket_state;
    o.sock_state_cb_data = this;
    char lookups[] = "fb";  // /etc/hosts, then DNS
    o.lookups = lookups;
    int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS;
    if (int rc = ares_init_options(&channel, &o, mask); rc != ARES_SUCCESS)
      throw std::runtime_error(std::string("c-ares cannot start: ") + ares_strerror(rc));
    if (nameservers.empty()) return;
    std::string csv;
    for (auto const& s : nameservers)  // c-ares takes "[v6]" only with a port
      csv += (csv.empty() ? "" : ",") + s + (s.starts_with('[') && s.ends_with(']') ? ":53" : "");
    if (int rc = ares_set_servers_ports_csv(channel, csv.c_str()); rc != ARES_SUCCESS)
      throw std::runtime_error("push.nameservers: " + csv + ": " + ares_strerror(rc));
  }

  // Ends every lookup ("stopped") and lets go of the sockets. Only where nothing else
  // runs on the strand: on it, or once the io_context has stopped.
  void teardown() {
    if (down) return;
    down = true;
    timer.cancel();
    if (channel) ares_destroy(channel);  // answers each lookup with ARES_EDESTRUCTION
    channel = nullptr;
    for (auto& [fd, w] : watches) let_go(*w);
    watches.clear();
  }

  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<core*>(data)->socket_state(fd, readable != 0, writable != 0);
  }

  void socket_state(int fd, bool readable, bool writable) {
    auto it = watches.find(fd);
    if (!readable && !writable) {
      if (it != watches.end()) {
        let_go(*it->second);
        watches.erase(it);
      }
      return;
    }
    if (it == watches.end()) {
      try {
        it = watches.emplace(fd, std::make_shared<watch>(fd, strand)).first;
      } catch (std::exception const&) {
        return;  // not watchable: the lookups on it run into their deadlines
      }
    }
    it->second->want_read = readable;
    it->second->want_write = writable;
    arm(it->second);
  }

  static void let_go(watch& w) {
    w.closed = true;
    w.descriptor.release();  // cancels the waits; the socket stays c-ares's
  }

  void arm(std::shared_ptr<watch> const& w) {
    if (w->closed || down) return;
    if (w->want_read && !w->reading) {
      w->reading = true;
      w->descriptor.async_wait(asio::posix::descriptor_base::wait_read,
                               [self = shared_from_this(), w](boost::system::error_code ec) {
                                 w->reading = false;
                                 if (ec || w->closed || self->down) return;
                                 ares_process_fd(self->channel, w->fd, ARES_SOCKET_BAD);
                                 self->arm(w);
                                 self->set_timer();
                               });
    }
    if (w->want_write && !w->writing) {
      w->writing = true;
      w->descriptor.async_wait(asio::posix::descriptor_base::wait_write,
                               [self = shared_from_this(), w](boost::system::error_code ec) {
                                 w->writing = false;
                                 if (ec || w->closed || self->down) return;
                                 ares_process_fd(self->channel, ARES_SOCKET_BAD, w->fd);
                                 self->arm(w);
                                 self->set_timer();
                               });
    }
  }

  // Wakes c-ares when its next query times out (to try again or to give up).
  void set_timer() {
    if (down) return;
    timeval tv{};
    timeval const* next = ares_timeout(channel, nullptr, &tv);
    if (!next) {
      timer.cancel();
      return;
    }
    timer.expires_after(std::chrono::seconds(next->tv_sec) + std::chrono::microseconds(next->tv_usec));
    timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->down) return;
      ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      self->set_timer();
    });
  }

  // On the strand.
  void begin(std::string const& host, std::chrono::milliseconds timeout, std::shared_ptr<lookup> l) {
    if (down) return complete(*l, {{}, "the resolver is stopped"});
    l->deadline.expires_after(timeout);
    l->deadline.async_wait([l](boost::system::error_code ec) {
      if (!ec) complete(*l, {{}, "timed out"});
    });
    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    ares_getaddrinfo(channel, host.c_str(), nullptr, &hints, &core::on_answer, new std::shared_ptr<lookup>(l));
    set_timer();
  }

  static void on_answer(void* arg, int status, int /*timeouts*/, ares_addrinfo* info) {
    std::unique_ptr<std::shared_ptr<lookup>> l(static_cast<std::shared_ptr<lookup>*>(arg));
    resolved r;
    if (status == ARES_SUCCESS) r = addresses_of(info);
    if (info) ares_freeaddrinfo(info);
    if (status == ARES_EDESTRUCTION)
      r.error = "the resolver is stopped";
    else if (status != ARES_SUCCESS)
      r.error = ares_strerror(status);
    else if (r.addresses.empty())
      r.error = "no address";
    complete(**l, std::move(r));
  }

  // Hands the answer to the waiting coroutine, on its executor (once).
  static void complete(lookup& l, resolved r) {
    if (l.done) return;
    l.done = true;
    l.deadline.cancel();
    // Through the strand to the handler's own executor (the waiting coroutine's).
    asio::post(l.deadline.get_executor(), asio::append(std::move(l.handler), std::move(r)));
  }
};

name_resolver::name_resolver(asio::io_context& io, std::vector<std::string> const& nameservers)
    : core_(std::make_shared<core>(io)) {
  core_->open(nameservers);
}

// The io_context has stopped by now (notification_service's destructor): nothing else
// runs on the strand.
name_resolver::~name_resolver() {
  core_->teardown();
}

asio::awaitable<resolved> name_resolver::resolve(std::string host, std::chrono::milliseconds timeout) {
  auto c = core_;
  auto initiate = [c, host = std::move(host), timeout](handler_type handler) {
    auto l = std::make_shared<lookup>(std::move(handler), c->strand);
    asio::post(c->strand, [c, host, timeout, l] { c->begin(host, timeout, l); });
  };
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable) const, void(resolved)>(initiate,
                                                                                               asio::use_awaitable);
}

}  // namespace petchat::notify::detail
