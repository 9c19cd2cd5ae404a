// The push targets' indexes (key layouts in detail/push.hpp): by what a target pushes to
// (k/, so that registering it takes it from everyone else) and by the place it pushes to
// (p/, counted in P/, so that no host is pushed to for more targets than
// push.max_targets_per_host),
// kept by the writes that put and erase targets (push_index.cpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "node/messages/detail/service.hpp"

namespace petchat::messages::detail {

// What a target pushes to: one Web Push or UnifiedPush endpoint, or one Matrix app's
// pushkey, whatever the kind that names it (push_identity_bytes of BLAKE2b).
std::string identity_of(std::string_view kind, std::string_view endpoint, std::string_view app_id,
                        std::string_view pushkey);
std::string identity_of(records::push_target_record const& r);
// Where a target's requests go: the place node/notify gave it (push_target_record.place),
// or for a target registered before, its endpoint (a Matrix gateway's URL) up to its path,
// in lower case, without ":443".
std::string place_of(std::string_view endpoint);
std::string place_of(records::push_target_record const& r);

// Inside a write: the target `r` at `key` is put, or goes, with its index entries (and its
// place's count: the entry is looked up through the batch, so that a target put twice, or
// erased twice, counts once).
void put_target(store::rocks_batch& b, std::string const& key, records::push_target_record const& r);
void erase_target(store::rocks_batch& b, std::string const& key, records::push_target_record const& r);

// Inside a write: every other target that pushes to `identity` goes (a device that changed
// hands, or an app registered again under another account or device, must not be pushed the
// last one's messages); their keys. Targets added by earlier requests of the same batch are
// not seen (two users registering one endpoint at the same moment keep it both).
std::vector<std::string> take_identity(message_service::impl const& m, store::rocks_batch& b,
                                       std::string const& identity, std::string const& keep);

// Inside a write: the targets whose requests go to `place` (this batch's changes included).
std::uint64_t targets_at(store::rocks_batch& b, std::string const& place);

}  // namespace petchat::messages::detail
