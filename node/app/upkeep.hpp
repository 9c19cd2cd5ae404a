// The node's timed upkeep on its I/O threads: expired messages swept, remote users'
// presence reports let run out, failing writes tried again, each on its own timer until the
// node stops; and what a crash left unfinished (account deletions), once at start.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>

#include "node/messages/messages.hpp"
#include "node/metrics/metrics.hpp"
#include "node/users/users.hpp"
#include "node/ws/ws.hpp"

namespace petchat::app {

// Sweeps expired messages every `expiry_interval` (messages.expiry_sweep_interval_ms), and
// every second lets remote presence run out and tells contacts what its rate held back
// (ws_manager::expire_remote_presence): a slow or long sweep never holds presence back;
// and, while the message store or the account store refuses writes, tries a write of
// nothing every second (and logs the account store's refusals as they begin and end).
// Each stops at its next tick once `stopping` is set. No errors: a failed sweep is logged.
void start_upkeep(boost::asio::io_context& io, messages::message_service& messages, users::user_service& users,
                  ws::ws_manager& manager, std::chrono::milliseconds expiry_interval,
                  std::shared_ptr<std::atomic<bool>> stopping);

// Finishes the account deletions a crash interrupted (users::unfinished_deletions): each
// one's part in the message store (gateway::finish_account_deletion), tried again every
// 10 s while it fails, until done or the node stops. Once, at start.
void finish_account_deletions(boost::asio::io_context& io, users::user_service& users,
                              messages::message_service& messages, metrics::registry& metrics,
                              std::shared_ptr<std::atomic<bool>> stopping);

}  // namespace petchat::app
