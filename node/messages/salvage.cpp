// Opening the message store: past a damaged write-ahead log (--salvage-messages) or as a
// restored backup, so that no mailbox seq is handed out twice; and with a clock behind the
// newest message id (detail/opening.hpp). What the service does once, before any traffic.
#include <algorithm>
#include <future>
#include <optional>
#include <set>

#include "node/log/log.hpp"
#include "node/messages/detail/group_ops.hpp"
#include "node/messages/detail/opening.hpp"

namespace petchat::messages {

namespace {

// How far every head jumps. Past a damaged log: 2^20, more events than the log the damage
// dropped can have held (the log is kept under 32 MiB). Restored from a backup: also as
// many as one mailbox can have taken since the backup was made, at 64 events a
// millisecond, far more than a node commits (so a backup restored twice, the second time
// after the first copy ran for a while, does not hand out the first copy's seqs again);
// counted over four years at most, so that seqs stay below 2^53 (exact in JavaScript's
// numbers) for hundreds of restores.
// Groups homed here jump the same way, by 1 version a millisecond (a change is a durable
// write of its own): restored twice from one backup, the second copy's versions still pass
// the first's.
std::uint64_t jump(std::int64_t current_at_ms, std::int64_t per_ms = 64) {
  constexpr std::uint64_t least = std::uint64_t(1) << 20;
  constexpr std::int64_t most_ms = 4LL * 366 * 24 * 3600 * 1000;
  if (current_at_ms <= 0) return least;
  auto since = std::clamp<std::int64_t>(now_ms() - current_at_ms, 0, most_ms);
  return least + static_cast<std::uint64_t>(since * per_ms);
}

}  // namespace

void message_service::impl::after_salvage(std::int64_t current_at_ms) {
  auto gap = jump(current_at_ms);
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
  store::rocks_db::write_fn fn = [heads, gap](store::rocks_batch& b) {
    for (auto const& [key, head] : heads) b.put(cf::state, key, keys::be64(head + gap));
    b.put(cf::state, keys::salvaged_key(), keys::be64(static_cast<std::uint64_t>(now_ms())));
    return true;
  };
  db.submit(std::move(fn), [done](store::write_outcome o) { done->set_value(o); });
  if (outcome.get() != store::write_outcome::committed)
    throw store::rocks_error("salvage: the heads could not be moved");
  // Groups homed here went back too, behind the replicas of other regions (and a region of
  // members may have gone back with them): their versions jump, and their states go out.
  auto versions = jump(current_at_ms, 1);
  if (auto n = service_detail::jump_homed_groups(*this, versions))
    log::get("messages")
        ->warn(
            "{} groups homed here continue {} versions further on; their state goes to their "
            "members' regions",
            n, versions);
  log::get("messages")
      ->error(
          "the message store was salvaged (--salvage-messages: whatever was written after the damage is lost) or "
          "restored from a backup: the {} mailboxes continue {} seqs further on so that no seq is reused",
          heads.size(), gap);
}

void detail::keep_ids_ahead(message_service::impl const& m) {
  std::int64_t newest = 0;
  std::optional<std::int64_t> remote;  // the newest of another region's, within the same look
  std::size_t looked = 0;
  m.db.scan_reverse(cf::messages, "", "", [&](std::string_view key, std::string_view) {
    bool own = keys::message_id_region_hash(key) == m.region_hash;
    if (own && newest == 0) newest = keys::message_id_time_ms(key);
    if (!own && !remote) remote = keys::message_id_time_ms(key);
    return (newest == 0 || !remote) && ++looked < 4096;
  });
  // Other regions' ids were checked against this clock as they came (at most max_skew_ms
  // ahead of it): ids of this region's far past them were made while this clock ran ahead,
  // and dating new ones after those would have other regions refuse them as from the future.
  if (remote) newest = std::min(newest, *remote + service_detail::max_skew_ms);
  auto now = now_ms();
  if (newest < now) return;
  log::get("messages")
      ->warn(
          "the clock is {} ms behind the newest message stored here: new messages are dated after it until the clock "
          "catches up (check NTP)",
          newest - now + 1);
  keys::keep_ids_after(newest);
}

}  // namespace petchat::messages
