// Names and user ids. A user id is `name@region`; the region part names the user's home
// node, so routing is a pure function of the id. Rules are in docs/PROTOCOL.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace petchat::ids {

// True if `name` is 3..32 characters of [a-z0-9._-] starting with a letter. Used for
// user names and region names alike.
bool is_valid_name(std::string_view name) noexcept;

struct user_id {
  std::string name;
  std::string region;

  std::string str() const { return name + "@" + region; }
};

// The region part of a full user id (after its '@'), or "" (no region) if it has no '@' or
// more than one. Names are not checked: federation uses this on ids from other regions to
// refuse a user that does not belong to the envelope's origin.
std::string_view region_of(std::string_view user_id) noexcept;

// Parses `name@region`, or a bare `name` meaning a user of `local_region`. Returns
// nullopt if either part breaks the name rules.
std::optional<user_id> parse_user_id(std::string_view text, std::string_view local_region);

}  // namespace petchat::ids
