// The node's timed upkeep on its I/O threads: expired messages swept, and remote users'
// presence reports let run out, each on its own timer until the node stops.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>

#include "node/messages/messages.hpp"
#include "node/ws/ws.hpp"

namespace petchat::app {

// Sweeps expired messages every `expiry_interval` (messages.expiry_sweep_interval_ms), and
// every second lets remote presence run out and tells contacts what its rate held back
// (ws_manager::expire_remote_presence): a slow or long sweep never holds presence back.
// Both stop at their next tick once `stopping` is set. No errors: a failed sweep is logged.
void start_upkeep(boost::asio::io_context& io, messages::message_service& messages, ws::ws_manager& manager,
                  std::chrono::milliseconds expiry_interval, std::shared_ptr<std::atomic<bool>> stopping);

}  // namespace petchat::app
