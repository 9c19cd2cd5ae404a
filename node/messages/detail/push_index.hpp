// The push targets' indexes (key layouts in detail/push.hpp): by what a target pushes to
// (k/, so that registering it takes it from everyone else) and by the place it pushes to
// (p/, so that no host is pushed to for more targets than push.max_targets_per_host),
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
// Where a target's requests go: its endpoint's (a Matrix gateway's) origin, "https://" and
// the host (lower case) with its port unless 443. Endpoints are checked URLs (node/notify).
std::string place_of(std::string_view endpoint);

// Inside a write: the target `r` at `key` is put, or goes, with its index entries.
void put_target(store::rocks_batch& b, std::string const& key, records::push_target_record const& r);
void erase_target(store::rocks_batch& b, std::string const& key, records::push_target_record const& r);

// Inside a write: every other target that pushes to `identity` goes (a device that changed
// hands, or an app registered again under another account or device, must not be pushed the
// last one's messages); their keys. Targets added by earlier requests of the same batch are
// not seen (two users registering one endpoint at the same moment keep it both).
std::vector<std::string> take_identity(message_service::impl const& m, store::rocks_batch& b,
                                       std::string const& identity, std::string const& keep);

// Committed targets that push to `place`, counted up to `enough`.
std::size_t targets_at(message_service::impl const& m, std::string const& place, std::size_t enough);

}  // namespace petchat::messages::detail
