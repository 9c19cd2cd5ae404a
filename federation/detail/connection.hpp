// The NATS connection and its JetStream context: options (servers, credentials, TLS),
// connecting (or retrying in the background), NATS.c's connection callbacks, core-NATS
// publishing for the live subjects, and closing so that no callback runs afterwards.
//
// Threads: open() and close() on the manager thread (close() after it stopped its loop);
// publish_live() from any thread; the callbacks run on NATS.c's threads and only touch
// link_state.
#pragma once

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "federation/detail/link_state.hpp"

namespace petchat::federation::detail {

// NATS.c's text for a status, the JetStream error code if any, and the thread's last error.
std::string nats_error(natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0));

class nats_connection {
 public:
  explicit nats_connection(link_state& state);
  nats_connection(nats_connection const&) = delete;
  nats_connection& operator=(nats_connection const&) = delete;

  // Connects (once in the foreground, which says why it failed; then retrying in the
  // background) and makes the JetStream context. False when the options are unusable or
  // there is no JetStream context: the state's last error says why.
  bool open();
  // After NATS.c closed the connection for good (state's `closed`: an authorization error
  // twice in a row, an error it does not know): a new connection, as open(). The old one is
  // destroyed a minute later (another thread may still hold it for a publish or request).
  bool reopen();
  // Closes, then waits up to 1 s for NATS.c's last callback. False if it did not come: a
  // callback may still run, so the caller must keep this object and the state alive.
  bool close();

  // Manager thread only.
  natsConnection* nc() const { return nc_; }
  jsCtx* js() const { return js_; }
  // Connected to a server right now (NATS.c's own view). Any thread, as server_url().
  bool up() const;
  // The server's URL while up(), else "".
  std::string server_url() const;

  // Core NATS publish for the live subjects: dropped while disconnected or after close().
  void publish_live(std::string const& subject, std::string const& data);
  // A core NATS request and its reply (any thread but NATS.c's): nullopt while
  // disconnected, after close(), or when no reply came within `timeout_ms`.
  std::optional<std::string> request_live(std::string const& subject, std::string const& data, int timeout_ms);

  // JetStream's asynchronous publish errors since the last reset (manager thread).
  void reset_publish_failures() { publish_failures_ = 0; }
  int publish_failures() const { return publish_failures_.load(); }

 private:
  bool set_options();
  static void on_connected(natsConnection* nc, void* self);
  static void on_disconnected(natsConnection* nc, void* self);
  static void on_closed(natsConnection* nc, void* self);
  static void on_error(natsConnection* nc, natsSubscription* sub, natsStatus err, void* self);
  static void on_publish_error(jsCtx* js, jsPubAckErr* pae, void* self);

  link_state& s_;
  natsOptions* nopts_ = nullptr;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  std::atomic<natsConnection*> live_nc_{nullptr};  // nc_ for other threads; cleared before close
  std::atomic<int> publish_failures_{0};

  struct retired {
    natsConnection* nc;
    std::chrono::steady_clock::time_point at;
  };
  std::vector<retired> retired_;  // closed connections not yet destroyed (manager thread)
  // A callback's connection is not the one in use (one replaced: reopen()).
  bool is_old(natsConnection* nc);
  bool destroy_retired(bool all);
  // True once `nc`'s closed callback, its last, has run (waiting up to `up_to`).
  bool wait_closed(natsConnection* nc, std::chrono::milliseconds up_to);
  void destroy(natsConnection* nc);

  std::mutex closed_mutex_;
  std::condition_variable closed_cv_;
  std::vector<natsConnection*> closed_;  // connections whose last callback ran, not yet destroyed
  natsConnection* current_ = nullptr;    // the connection in use (NATS.c's threads read it)
};

}  // namespace petchat::federation::detail
