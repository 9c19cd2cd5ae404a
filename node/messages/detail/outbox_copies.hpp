// A message's copies in the outbox (what goes to other regions' recipients) are listed in
// its stored_message and withdrawn when it goes: expired, or deleted for everyone. The
// outbox keeps an entry until its destination confirmed it and federation.keep_confirmed_s
// after (7 days), or as long as the destination is away; a disappearing message's text
// must not stay that long on disk (nor in backups taken meanwhile).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "federation.pb.h"
#include "message_records.pb.h"
#include "node/messages/detail/keys.hpp"
#include "store/rocks/rocks.hpp"

namespace petchat::messages::detail {

inline void note_outbox_copy(records::stored_message& sm, std::string_view destination, std::uint64_t lane_seq) {
  auto* ref = sm.add_outbox_entries();
  ref->set_destination(std::string(destination));
  ref->set_lane_seq(lane_seq);
}

// The entry keeps its lane position (lanes have no gaps) and the message's ids, but loses
// its body and is dated expired: a destination that gets it (not yet sent, or sent again)
// drops it as a message that expired on the way, as any version does.
inline void withdraw_outbox_copies(store::rocks_batch& b, records::stored_message const& sm) {
  for (auto const& ref : sm.outbox_entries()) {
    auto key = outbox_key(ref.destination(), ref.lane_seq());
    federation::body body;
    auto value = b.get(store::cf::outbox, key);
    // Forgotten already; or, after the lane was given up (drop-outbox) and begun again, another
    // message's place now: only this message's own copy is withdrawn.
    if (!value || !body.ParseFromString(*value) || body.message().id() != sm.message().id()) continue;
    body.mutable_message()->clear_body();
    body.mutable_message()->set_expires_at_ms(1);
    b.put(store::cf::outbox, key, body.SerializeAsString());
  }
}

}  // namespace petchat::messages::detail
