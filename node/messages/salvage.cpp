// Opening the message store past a damaged write-ahead log (--salvage-messages): what the
// service does once, before any traffic, so that no mailbox seq is handed out twice.
#include <future>
#include <set>

#include "node/messages/detail/service.hpp"

namespace petchat::messages {

void message_service::impl::after_salvage() {
  constexpr std::uint64_t gap = std::uint64_t(1) << 20;
  // Every mailbox: those with a floor, and those with entries (one seek per user).
  std::set<std::string> users;
  db.scan(cf::state, keys::heads_first(), keys::heads_past_last(), [&](std::string_view key, std::string_view) {
    users.emplace(key.substr(keys::heads_first().size()));
    return true;
  });
  // And every account: one whose whole mailbox came after the damage has neither.
  for (auto const& p : this->users.list_users()) users.insert(p.name + "@" + region);
  for (std::string from;;) {
    std::optional<std::string> user;
    db.scan(cf::mailbox, from, "", [&](std::string_view key, std::string_view) {
      user = std::string(key.substr(0, key.find('\0')));
      return false;
    });
    if (!user) break;
    from = keys::past_last_of(*user);
    users.insert(std::move(*user));
  }
  std::vector<std::pair<std::string, std::uint64_t>> heads;
  for (auto const& user : users) heads.emplace_back(keys::head_key(user), stored_head(user));
  auto done = std::make_shared<std::promise<store::write_outcome>>();
  auto outcome = done->get_future();
  store::rocks_db::write_fn fn = [heads](store::rocks_batch& b) {
    for (auto const& [key, head] : heads) b.put(cf::state, key, keys::be64(head + gap));
    b.put(cf::state, keys::salvaged_key(), keys::be64(static_cast<std::uint64_t>(now_ms())));
    return true;
  };
  db.submit(std::move(fn), [done](store::write_outcome o) { done->set_value(o); });
  if (outcome.get() != store::write_outcome::committed)
    throw store::rocks_error("salvage: the heads could not be moved");
  log::get("messages")
      ->error(
          "the message store was salvaged (--salvage-messages: whatever was written after the damage is lost) or "
          "restored from a backup: the {} mailboxes continue {} seqs further on so that no seq is reused",
          heads.size(), gap);
}

}  // namespace petchat::messages
