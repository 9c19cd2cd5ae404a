// The notification service (docs/PROTOCOL.md, "Push notifications"): devices' push targets
// (Web Push, UnifiedPush, Matrix push gateways), and pushes to the devices that did not
// get a new message live, from the durable push outbox the message service writes with
// each message (node/messages/push.cpp).
//
// Threads: register/remove/settings calls from any executor; everything else (the
// scheduler, the sends, their state) runs on the service's own strand of the node's
// io_context. Sends never block: a slow endpoint holds only its own coroutine.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "node/config/config.hpp"
#include "node/errors/errors.hpp"
#include "node/messages/messages.hpp"
#include "node/metrics/metrics.hpp"
#include "node/users/users.hpp"
#include "node/ws/ws.hpp"

namespace petchat::notify {

using boost::asio::awaitable;
using errors::result;

// A target as a client registers it (strings as given; the service checks them).
struct target_spec {
  std::string kind;       // "webpush", "unifiedpush", "matrix"
  std::string endpoint;   // Web Push: the push resource; Matrix: the gateway URL
  std::string p256dh;     // base64url
  std::string auth;       // base64url
  std::string app_id;     // Matrix
  std::string pushkey;    // Matrix
  std::string data_json;  // Matrix: the data object, serialized
};

struct outbox_status {
  bool enabled = false;
  std::size_t users = 0;       // users with pushes pending
  std::int64_t oldest_ms = 0;  // since when the oldest is pending (0: none)
  std::size_t in_flight = 0;   // requests on the wire
  std::size_t slow = 0;        // of them, those holding no ordinary slot (push.slow_after_ms)
  std::size_t retrying = 0;    // targets waiting to try again
  std::size_t targets = 0;     // registered
};

// A target with what the scheduler knows of it (admin).
struct target_status {
  messages::push_target target;
  std::int64_t next_try_ms = 0;  // 0: not waiting to retry
};

class notification_service {
 public:
  // Loads or makes the VAPID key (<data_dir>/vapid.pem). Throws std::runtime_error if it
  // cannot, or if push.ca_file cannot be read.
  notification_service(config::push_section const& options, std::filesystem::path const& data_dir,
                       messages::message_service& messages, users::user_service& users, ws::ws_manager& streams,
                       metrics::registry& metrics);
  ~notification_service();

  // Hooks into the message service and schedules what the outbox holds; before traffic.
  void start(boost::asio::io_context& io);
  // Stops scheduling; sends in flight end with the io_context.
  void stop();

  bool enabled() const;
  // The VAPID public key, base64url of the 65-byte point.
  std::string vapid_public_key() const;

  // Registers a target of the device `device_id` of `user_id` (name@region). Errors:
  // invalid_field (field named), push_endpoint_forbidden, too_many_push_targets, push_disabled.
  awaitable<result<messages::push_target>> add_target(std::string user_id, std::string device_id, target_spec spec);
  // Errors: push_target_not_found.
  awaitable<errors::status> remove_target(std::string user_id, std::string device_id, std::string id);

  outbox_status status() const;
  std::vector<target_status> targets_of(std::string const& user_id) const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

// With push disabled (no notification_service): a device whose session ends (a logout, a
// revocation) still loses its push targets and settings, as the service would remove them:
// their endpoints are not kept in the store and its backups for a device gone for good.
void forget_ended_devices(messages::message_service& messages, users::user_service& users, boost::asio::io_context& io);

}  // namespace petchat::notify
