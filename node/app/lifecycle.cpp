#include "node/app/lifecycle.hpp"

#include <signal.h>

#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <atomic>
#include <csignal>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>

#include <google/protobuf/stubs/logging.h>

#include "node/log/log.hpp"

namespace petchat::app {

void notify_ready(std::string const& status) {
  ::sd_notify(0, ("READY=1\nSTATUS=" + status).c_str());
}

void notify_stopping() {
  ::sd_notify(0, "STOPPING=1\nSTATUS=stopping: finishing requests in flight");
}

watchdog::watchdog(boost::asio::io_context& io) : strand_(io.get_executor()), timer_(strand_) {
  std::uint64_t usec = 0;
  // > 0 only when systemd set WATCHDOG_USEC (and WATCHDOG_PID is this process, if set).
  if (::sd_watchdog_enabled(0, &usec) > 0 && usec > 0) interval_ = std::chrono::microseconds(usec / 2);
}

void watchdog::start() {
  if (interval_.count() == 0) return;
  log::get("node")->info("systemd watchdog: pinging every {} ms", interval_.count() / 1000);
  boost::asio::dispatch(strand_, [this] { ping(); });
}

void watchdog::stop() {
  boost::asio::dispatch(strand_, [this] {
    stopped_ = true;
    timer_.cancel();
  });
}

void watchdog::ping() {
  if (stopped_) return;
  ::sd_notify(0, "WATCHDOG=1");
  timer_.expires_after(interval_);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) ping();
  });
}

namespace {

std::atomic<int> early_hangup{0};  // lock-free: the signal may land on any thread
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void note_hangup(int) {
  early_hangup = 1;
}

std::atomic<int> early_stop{0};

extern "C" void note_stop(int signo) {
  if (early_stop.exchange(signo) != 0) {  // asked twice: the default action, now
    ::signal(signo, SIG_DFL);
    ::raise(signo);
  }
}

void reload_now(reloader& reload) {
  ::sd_notify(0, "RELOADING=1\nSTATUS=reading the configuration again");
  log::get("node")->info("SIGHUP: reading the configuration again");
  reload.reload();
  ::sd_notify(0, "READY=1\nSTATUS=serving (configuration read again)");
}

}  // namespace

void hold_hangups() {
  struct sigaction sa {};
  sa.sa_handler = note_hangup;
  sa.sa_flags = SA_RESTART;  // start-up's blocking calls go on as if nothing came
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGHUP, &sa, nullptr);
}

void hold_stops() {
  struct sigaction sa {};
  sa.sa_handler = note_stop;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
}

void stop_if_asked() {
  if (int signo = early_stop.exchange(0); signo != 0) ::raise(signo);  // now the node's own handler's
}

void reload_on_hangup(boost::asio::signal_set& hangups, reloader& reload) {
  // The signal set's handler has replaced note_hangup by now: a hangup that arrived while
  // the node started is acted on once it serves (and has told systemd READY=1).
  if (early_hangup.exchange(0) != 0) {
    boost::asio::post(hangups.get_executor(), [&reload] { reload_now(reload); });
  }
  hangups.async_wait([&hangups, &reload](boost::system::error_code ec, int) {
    if (ec) return;
    reload_now(reload);
    reload_on_hangup(hangups, reload);
  });
}

namespace {

// Only async-signal-safe calls in the handler: the text is made in advance.
std::string sigbus_text;

extern "C" void on_sigbus(int) {
  auto written = ::write(STDERR_FILENO, sigbus_text.data(), sigbus_text.size());
  (void)written;
}

}  // namespace

void explain_sigbus(std::filesystem::path const& data_dir) {
  sigbus_text = "petchat-node: SIGBUS: a memory-mapped store file could not be read: " + (data_dir / "users").string() +
                "/data.mdb (LMDB) is truncated or damaged (a full disk, a failing device, or a changed file). "
                "Stop the node and restore that directory from a backup; `mdb_dump -a " +
                (data_dir / "users").string() +
                "` shows what is still readable. The message store (RocksDB) has checksums and reports its own "
                "damage instead.\n";
  struct sigaction sa {};
  sa.sa_handler = on_sigbus;
  sa.sa_flags = SA_RESETHAND;  // the faulting read raises the signal again, and the process dies
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
}

void ignore_broken_pipes() {
  struct sigaction sa {};
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGPIPE, &sa, nullptr);
}

void route_protobuf_logs() {
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel level, char const* file, int line, std::string const& message) {
        static auto const log = log::get("protobuf");   // once: the registry's lock not per line
        if (level <= google::protobuf::LOGLEVEL_ERROR)  // a frame's bad UTF-8 is an ERROR there
          log->debug("{} ({}:{})", message, file, line);
        else
          log->critical("{} ({}:{})", message, file, line);
      });
}

void raise_open_files_limit(std::size_t max_connections, bool tls) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  // A TLS connection holds three descriptors: its socket and a socket pair (tls_front.cpp);
  // any connection one more while it downloads an asset (the blob's).
  std::size_t per_connection = tls ? 4 : 2;
  if (rl.rlim_cur < max_connections * per_connection + 64)
    log::get("node")->warn(
        "open-files limit {} is below what gateway.max_connections {} needs ({} per connection{}); "
        "raise LimitNOFILE/ulimit -n",
        rl.rlim_cur, max_connections, per_connection, tls ? " with TLS" : "");
}

}  // namespace petchat::app
