// Presence and typing across regions: what the WebSocket manager learns here goes out on
// the federation link's live subjects, and what other regions report comes in to the
// manager, under the same rules as local presence and typing (presence only between
// contacts; typing only within a conversation both are in). Nothing here is durable:
// a lost report is replaced by the next refresh.
#pragma once

#include <cstdint>
#include <string>

#include "federation/federation.hpp"
#include "node/messages/messages.hpp"
#include "node/ws/ws.hpp"

namespace petchat::presence {

// The link's handler for verified live envelopes (presence reports, typing) from other
// regions. Runs on NATS.c's live-subscription thread; reads the message store (the typing
// rule) and tells the manager. A report holds for three refresh intervals (`interval_s`):
// a region that goes silent cannot keep its users online here for longer.
federation::link::ephemeral_handler from_regions(ws::ws_manager& manager, messages::message_service& messages,
                                                 std::uint32_t interval_s);

// The link's periodic refresh for one region: this region's online users who have
// contacts there. Runs on the link's manager thread.
federation::link::presence_source snapshot(ws::ws_manager& manager);

// How the manager's presence changes and typing to other regions' users go out: one live
// envelope each, to the region concerned. Runs on the thread that changed presence or
// relayed the typing (an I/O thread).
ws::remote_hooks to_regions(std::string const& local_region, federation::link& link);

}  // namespace petchat::presence
