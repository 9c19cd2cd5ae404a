#include "node/presence/presence.hpp"

#include <algorithm>
#include <memory>

#include "base/format/format.hpp"
#include "base/ids/ids.hpp"
#include "node/presence/detail/budget.hpp"

namespace petchat::presence {

namespace {
constexpr int max_presence_entries = 1000;
constexpr std::uint32_t max_interval_s = 3600;  // federation.presence_interval_s's own bound
}  // namespace

federation::link::ephemeral_handler from_regions(ws::ws_manager& manager, messages::message_service& messages,
                                                 std::uint32_t interval_s) {
  auto limiter = std::make_shared<detail::typing_limiter>();
  auto budget = std::make_shared<detail::presence_budget>();
  auto frames = std::make_shared<detail::typing_frames_budget>();
  return [&manager, &messages, interval_s, limiter, budget, frames](federation::body const& b) {
    auto now = format::now_ms();
    if (b.has_presence()) {
      // A region sends its users in chunks of 500 (federation/detail/publisher.cpp): more in
      // one body is not an honest region's, and each entry costs a lookup under a lock.
      if (b.presence().entries_size() > max_presence_entries) return;
      if (!budget->allow(b.origin(), b.presence().entries_size(), b.presence().full(), now)) return;
      // Believed for 3 refreshes of the sender's (regions may set presence_interval_s apart).
      auto theirs = b.presence().interval_s();
      auto refresh_s = theirs >= 1 && theirs <= max_interval_s ? theirs : interval_s;
      std::int64_t valid_until = now + 3 * std::int64_t(refresh_s) * 1000;
      // When the origin saw what it reports: a refresh, when it read it (it may come after a
      // change told since); a change, when it sent it.
      auto stamp = b.presence().read_at_ms() > 0 ? b.presence().read_at_ms() : b.created_at_ms();
      std::vector<std::string> online;
      for (auto const& e : b.presence().entries()) {
        manager.remote_presence(e.user_id(), e.online(), e.last_seen_ms(), valid_until, stamp);
        if (e.online()) online.push_back(e.user_id());
      }
      if (b.presence().full()) manager.remote_presence_full(b.origin(), online, now, stamp);
    } else if (b.has_typing()) {
      // The same rule as for local typing, seen from the recipient's side.
      auto const& t = b.typing();
      if (!limiter->allow(t.from(), now)) return;
      // In a group, for every member here ("*@<this region>": one body per region, not per
      // member): the typist is a member as this region's replica says, by their part here
      // first (no roster is read for a typist who is none: a region could name thousands).
      bool group = t.conversation_id().starts_with('g');  // a group's id (docs/PROTOCOL.md)
      bool typist = group && messages.is_member(t.from(), t.conversation_id());
      if (b.typing_to().starts_with("*@")) {
        auto here = ids::region_of(b.typing_to());
        if (!typist) return;
        // One frame's worth first, before the roster is read (up to the group's size of
        // names): the region's budget bounds that reading too; the rest once counted.
        if (!frames->allow(b.origin(), 1, now)) return;
        auto peers = messages.group_peers(t.from(), t.conversation_id());
        if (!peers) return;
        auto roster = peers->size();
        std::erase_if(*peers, [&](std::string const& peer) { return ids::region_of(peer) != here; });
        // A frame per member here, and at least one per 100 names read: a region's typists
        // in a group of 100,000 cannot have its roster read 5,000 times a second.
        auto cost = std::max<std::size_t>(peers->size(), roster / 100);
        if (cost > 1 && !frames->allow(b.origin(), cost - 1, now)) return;
        for (auto const& peer : *peers) manager.relay_typing(t.from(), peer, t.conversation_id(), t.active());
        return;
      }
      if (!frames->allow(b.origin(), 1, now)) return;
      // In a group: both are members as this region's replica says.
      if (typist)  // (not a group, or a typist who is none: to the direct conversation's check)
        if (auto peers = messages.group_peers(b.typing_to(), t.conversation_id())) {
          if (std::find(peers->begin(), peers->end(), t.from()) != peers->end())
            manager.relay_typing(t.from(), b.typing_to(), t.conversation_id(), t.active());
          return;
        }
      auto target = messages.typing_between(b.typing_to(), t.from());
      if (target && target->conversation_id == t.conversation_id())
        manager.relay_typing(t.from(), b.typing_to(), target->conversation_id, t.active());
    }
  };
}

federation::link::presence_source snapshot(ws::ws_manager& manager) {
  return [&manager](std::string const& region) {
    federation::presence_update u;
    u.set_read_at_ms(format::now_ms());  // before reading: a change after it is newer
    for (auto const& user : manager.online_with_contacts_in(region)) {
      auto* e = u.add_entries();
      e->set_user_id(user);
      e->set_online(true);
    }
    return u;
  };
}

ws::remote_hooks to_regions(std::string const& local_region, federation::link& fed) {
  ws::remote_hooks h;
  h.local_region = local_region;
  h.presence_out = [&fed](std::string const& region, std::string const& user, bool online, std::int64_t last_seen) {
    federation::body b;
    auto* e = b.mutable_presence()->add_entries();
    e->set_user_id(user);
    e->set_online(online);
    e->set_last_seen_ms(last_seen);
    fed.send_ephemeral(region, std::move(b));
  };
  h.typing_out = [&fed](std::string const& from, std::string const& to, std::string const& conv, bool active) {
    federation::body b;
    auto* t = b.mutable_typing();
    t->set_from(from);
    t->set_conversation_id(conv);
    t->set_active(active);
    b.set_typing_to(to);
    fed.send_ephemeral(std::string(ids::region_of(to)), std::move(b));
  };
  return h;
}

}  // namespace petchat::presence
