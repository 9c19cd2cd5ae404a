// The node's life under a service manager and signals: systemd's notify protocol (ready,
// reloading, stopping, watchdog), SIGHUP reloads, SIGBUS explained, the open-files limit.
// Without systemd (no NOTIFY_SOCKET) the notifications do nothing.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <filesystem>
#include <string>

#include "node/app/reload.hpp"

namespace petchat::app {

// sd_notify READY=1 with a STATUS line (`systemctl status` shows it).
void notify_ready(std::string const& status);
// sd_notify STOPPING=1: the node finishes requests in flight and stops.
void notify_stopping();

// Pings systemd's watchdog (WATCHDOG=1) every half WatchdogSec from the I/O threads, so a
// node whose event loop is stuck stops pinging and is restarted. Does nothing when the
// unit has no WatchdogSec (WATCHDOG_USEC unset) or the node is not its main process.
// Its timer lives on a strand: stop() comes from the signal handler on any I/O thread.
class watchdog {
 public:
  explicit watchdog(boost::asio::io_context& io);
  void start();
  void stop();

 private:
  void ping();
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  std::chrono::microseconds interval_{0};
  bool stopped_ = false;  // on the strand
};

// SIGHUP (`systemctl reload`, `kill -HUP`) reads the config again: what can change on the
// fly is applied, what cannot is named in the log (app::reloader); systemd is told
// RELOADING=1, then READY=1. Never the default action, which would kill the node.
// A SIGHUP while the node starts (logrotate's postrotate, say) is only noted, and acted on
// once `hangups` waits: hold_hangups is the first thing main does.
void reload_on_hangup(boost::asio::signal_set& hangups, reloader& reload);
void hold_hangups();

// SIGTERM or SIGINT while the node starts (opening stores can take a while: a long WAL
// replay, a migration) is noted, and the node stops as soon as it serves, as it would have
// then; a second one stops it at once. The default action would kill it half-way (and a
// node that is PID 1 in a container would not get the signal at all). hold_stops is the
// second thing main does; stop_if_asked re-raises a noted signal once the node's own
// handler (`signals`) waits for it.
void hold_stops();
void stop_if_asked();

// LMDB reads its data file through a memory map and has no checksums: a page that a
// truncated or damaged file no longer backs kills the process with SIGBUS inside a read.
// This says what that means and what to do before the process dies as it would have.
void explain_sigbus(std::filesystem::path const& data_dir);

// A write to a socket whose peer has gone fails with EPIPE instead of killing the process
// with SIGPIPE. Asio's own sends say so per call (MSG_NOSIGNAL); sendfile(2) (downloads,
// node/assets) cannot, and a TLS client that hangs up mid-download makes the front close
// the socket pair the body is being sent into.
void ignore_broken_pipes();

// Protobuf's own log lines go to the node's log ("protobuf"): a client's frame with text
// that is not UTF-8 made the library print a raw line to stderr for each, outside the log's
// format and level, as fast as a client could send them. Those are the client's mistake (it
// is answered malformed_frame), and the library reports them as errors: every level up to
// ERROR goes to debug; FATAL (the library then aborts) to critical.
void route_protobuf_logs();

// Every connection is a file descriptor: raises the soft limit to the hard limit, and says
// so if gateway.max_connections still cannot be reached.
void raise_open_files_limit(std::size_t max_connections, bool tls);

}  // namespace petchat::app
