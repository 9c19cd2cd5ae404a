// The node's sampled metrics: what the services already keep, read at scrape time
// (docs/PROTOCOL.md, "Metrics"). The gateway and the notification service add their own.
#pragma once

#include <filesystem>

#include "federation/federation.hpp"
#include "node/messages/messages.hpp"
#include "node/metrics/metrics.hpp"
#include "node/users/users.hpp"
#include "node/ws/ws.hpp"

namespace petchat::app {

void add_node_metrics(metrics::registry& metrics, ws::ws_manager& manager, messages::message_service& messages,
                      users::user_service& users, std::filesystem::path const& data_dir);

// Per-region federation figures: the link's state, envelopes, each region's outbox and
// its oldest undelivered entry (what an operator alerts on), inbound backlog, refusals.
// Before the link starts (it also observes what the link applies).
void add_federation_metrics(metrics::registry& metrics, federation::link& link);

}  // namespace petchat::app
