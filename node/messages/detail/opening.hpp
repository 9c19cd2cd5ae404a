// What the message service does once as it opens its store, before any traffic
// (salvage.cpp; the push targets' indexes in push_index.cpp).
#pragma once

#include "node/messages/detail/service.hpp"

namespace petchat::messages::detail {

// Message ids (and so sent_at_ms and expiry times) made from now on come after the newest
// this region stored, even when the wall clock is behind it at start (a board without a
// battery-backed clock, before NTP has set it): a new message must not sort before older
// ones in history, read marks and conversation lists, nor expire as soon as the clock is
// set. Logs a warning saying how far behind the clock is. Looks at the newest 4,096 ids; not
// past the newest of another region's among them by more than the skew allowed (this
// region's newest may be from a time its clock ran ahead).
void keep_ids_ahead(message_service::impl const& m);

// A store of format 7 or before: every push target is indexed by what it pushes to (format
// 6) and by where (format 8), 2,048 targets per durable write, once (a key in `state` says
// it is done; a start stopped meanwhile does it again, which writes the same keys). Throws
// store::rocks_error if it cannot be written (push_index.cpp).
void index_push_targets(message_service::impl& m);

}  // namespace petchat::messages::detail
