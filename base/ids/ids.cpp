#include "base/ids/ids.hpp"

namespace petchat::ids {

bool is_valid_name(std::string_view name) noexcept {
  if (name.size() < 3 || name.size() > 32) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string_view region_of(std::string_view user_id) noexcept {
  // A second '@' makes it no user id of any region: "alice@america@europe" must pass
  // neither as a user of europe nor of "america@europe".
  auto at = user_id.find('@');
  if (at == std::string_view::npos || user_id.find('@', at + 1) != std::string_view::npos) return {};
  return user_id.substr(at + 1);
}

std::optional<user_id> parse_user_id(std::string_view text, std::string_view local_region) {
  auto at = text.find('@');
  user_id id;
  if (at == std::string_view::npos) {
    id.name = std::string(text);
    id.region = std::string(local_region);
  } else {
    id.name = std::string(text.substr(0, at));
    id.region = std::string(text.substr(at + 1));
  }
  if (!is_valid_name(id.name) || !is_valid_name(id.region)) return std::nullopt;
  return id;
}

}  // namespace petchat::ids
