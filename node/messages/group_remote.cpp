// A group across regions, the parts that concern another region: at home, a member
// region's request (run_request); in a member region, a group message from another region
// checked against the replica, and parked until the replica reaches the version it was
// sent at (docs/FEDERATION.md, "Groups across regions").
#include "node/log/log.hpp"
#include "node/messages/detail/group_ops.hpp"

namespace petchat::messages::service_detail {

void run_request(message_service::impl const& m, store::rocks_batch& b, federation::group_request const& r,
                 change_state& change) {
  auto first = [&] { return r.users_size() > 0 ? r.users(0) : std::string(); };
  switch (r.request()) {
    case federation::group_request::ADD: {
      std::vector<std::string> given(r.users().begin(), r.users().end());
      op_add(m, b, change, r.by(), candidates(m, given, change.failed));
      break;
    }
    case federation::group_request::REMOVE:
      op_remove(m, b, change, r.by(), first(),
                r.successor().empty() ? std::nullopt : std::optional<std::string>(r.successor()));
      break;
    case federation::group_request::ROLE:
      op_role(m, b, change, r.by(), first(), r.role());
      break;
    case federation::group_request::UPDATE: {
      conversation_patch patch;
      if (r.has_title()) patch.title = r.title();
      if (r.has_description()) patch.description = r.description();
      if (r.has_ttl_s()) patch.ttl_s = r.ttl_s();
      if (r.has_history_visible()) patch.history_visible = r.history_visible();
      op_update(m, b, change, r.by(), patch);
      break;
    }
    case federation::group_request::NO_ACCOUNT:  // from the region of the name, about itself
      if (r.users_size() == 1 && r.users(0) == r.by())
        op_drop_no_account(m, b, change, r.by());
      else
        change.refused = fail(code::invalid_field, "a region speaks only of the name in `by`");
      break;
    default:
      change.refused = fail(code::invalid_field, "a group request of a kind this version does not know");
  }
  if (change.refused)
    log::get("federation")
        ->info("group {}: a request of {} was refused: {}", r.conversation_id(), r.by(), change.refused->message);
}

group_message_fate fate_of(store::rocks_batch& b, std::optional<records::conversation_record> const& c,
                           federation::body const& body) {
  auto const& from = body.message().from();
  if (c && c->group() && member_index(*c, from) >= 0) return group_message_fate::apply;
  std::uint64_t stamp = body.group_version();
  if (stamp == 0) return group_message_fate::refuse;  // an origin that does not stamp: the replica decides
  if (!c || c->version() < stamp) return group_message_fate::park;
  if (!c->group()) return group_message_fate::refuse;
  auto part = load_participant(b, from, body.message().conversation_id());
  bool sent_before_removal = part && !part->member() && part->removed_version() > stamp;
  return sent_before_removal ? group_message_fate::apply : group_message_fate::refuse;
}

bool park_group_message(store::rocks_batch& b, federation::body const& body) {
  auto key = keys::parked_key(body.message().conversation_id());
  auto parked =
      parse<records::parked_group_messages>(b.get(cf::conversations, key)).value_or(records::parked_group_messages{});
  if (parked.bodies_size() >= max_parked) return false;
  parked.add_bodies(body.SerializeAsString());
  b.put(cf::conversations, key, parked.SerializeAsString());
  return true;
}

std::vector<federation::body> unpark_group_messages(store::rocks_batch& b, std::string const& conv,
                                                    std::uint64_t version) {
  std::vector<federation::body> ready;
  auto key = keys::parked_key(conv);
  auto parked = parse<records::parked_group_messages>(b.get(cf::conversations, key));
  if (!parked) return ready;
  records::parked_group_messages left;
  for (auto const& bytes : parked->bodies()) {
    federation::body body;
    if (!body.ParseFromString(bytes)) continue;
    if (body.group_version() > version)
      *left.add_bodies() = bytes;
    else
      ready.push_back(std::move(body));
  }
  if (ready.empty()) return ready;
  if (left.bodies_size() == 0)
    b.erase(cf::conversations, key);
  else
    b.put(cf::conversations, key, left.SerializeAsString());
  return ready;
}

}  // namespace petchat::messages::service_detail
