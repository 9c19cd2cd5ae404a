// Helpers of the asset records shared by node/messages/assets.cpp and asset_upkeep.cpp.
#pragma once

#include <string>
#include <vector>

#include "node/messages/detail/service.hpp"

namespace petchat::messages::detail {

// Distinct conversations holding a message with `hash` as an attachment, at most `max`
// (committed state).
std::vector<std::string> conversations_holding(message_service::impl const& m, std::string const& hash,
                                               std::size_t max);
// The originals whose thumbnail `thumb` (its record `rec`) is, at most 64 (committed state).
std::vector<std::string> originals_of(message_service::impl const& m, std::string const& thumb,
                                      records::asset_record const& rec);
// An asset as the API shows it.
asset_view view_of(std::string const& hash, records::asset_record const& rec);
// Inside a write: the asset record of a new blob (or the one there is), and when the
// collector is to look at it.
records::asset_record put_asset(store::rocks_batch& b, std::string const& hash, std::uint64_t size,
                                std::string const& type, std::int64_t now, std::int64_t due_ms);

}  // namespace petchat::messages::detail
