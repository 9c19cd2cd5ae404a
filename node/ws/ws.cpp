#include "node/ws/ws.hpp"

#include "base/format/format.hpp"
#include "base/ids/ids.hpp"
#include "node/log/log.hpp"

#include <algorithm>
#include <chrono>
#include <set>
#include <tuple>
#include <unordered_set>

namespace petchat::ws {
namespace {

using format::now_ms;

constexpr std::size_t max_remote_users = 200000;                     // presence entries kept for users of other regions
constexpr std::size_t max_remote_per_region = max_remote_users / 2;  // of them, of one region

client::server_frame presence_frame(std::string const& user, bool online, std::int64_t last_seen) {
  client::server_frame f;
  auto* p = f.mutable_presence();
  p->set_user_id(user);
  p->set_state(online ? client::ONLINE : client::OFFLINE);
  if (!online) p->set_last_seen_ms(last_seen);
  return f;
}

}  // namespace

ws_manager::ws_manager(std::size_t max_streams_per_user,
                       std::function<std::vector<std::string>(std::string const&)> contacts_of)
    : max_streams_(max_streams_per_user),
      contacts_of_(std::move(contacts_of)),
      connects_(static_cast<std::uint32_t>(std::max<std::size_t>(60, 2 * max_streams_per_user)),
                std::int64_t(std::max<std::size_t>(60, 2 * max_streams_per_user)) * 1000) {}

errors::status ws_manager::attach(std::string const& user, std::shared_ptr<stream_sink> const& sink) {
  bool first = false;
  std::shared_ptr<stream_sink> superseded;
  {
    std::lock_guard lock(mutex_);
    // A reconnect loop costs a presence broadcast to every contact (and a signature per
    // region of theirs) at every turn: a burst, then one a second.
    if (auto wait_ms = connects_.take(user, now_ms())) {
      return errors::rate_limited(
          "at most " + std::to_string(connects_.burst()) + " connections at once per user, then one a second", wait_ms);
    }
    auto& list = streams_[user];
    std::erase_if(list, [](auto const& w) { return w.expired(); });
    if (list.size() >= max_streams_) {
      // The same device again: its oldest stream goes (a connection that died unnoticed
      // would otherwise count for minutes, and a phone changing networks be refused).
      auto device = sink->device_id();
      auto same = [&](auto const& w) {
        auto s = w.lock();
        return !device.empty() && s && s->device_id() == device;
      };
      auto oldest = std::find_if(list.begin(), list.end(), same);
      if (oldest == list.end())
        return errors::fail(errors::code::too_many_streams,
                            "at most " + std::to_string(max_streams_) + " connections per user");
      superseded = oldest->lock();
      list.erase(oldest);
    }
    first = list.empty();
    list.push_back(sink);
  }
  if (superseded) superseded->end_superseded();  // (told without the mutex)
  // Attached whatever the broadcast meets (a contacts record the store cannot read): the
  // stream is the caller's now, and its end detaches it. Thrown out of here, it left the
  // user online for good, with no stream to detach.
  if (first) publish_presence_safely(user);
  return errors::ok();
}

void ws_manager::publish_presence_safely(std::string const& user) {
  try {
    publish_presence(user);
  } catch (std::exception const& e) {
    log::get("ws")->error("{}: presence not told to contacts: {}", user, e.what());
  }
}

bool ws_manager::take_typing(std::string const& user) {
  return typing_.take(user, now_ms()) == 0;
}

void ws_manager::detach(std::string const& user, stream_sink const* sink) {
  bool last = false;
  std::int64_t at = now_ms();
  {
    std::lock_guard lock(mutex_);
    auto it = streams_.find(user);
    if (it == streams_.end()) return;
    std::erase_if(it->second, [&](auto const& w) {
      auto s = w.lock();
      return !s || s.get() == sink;
    });
    if (it->second.empty()) {
      streams_.erase(it);
      last_seen_[user] = at;
      last = true;
    }
  }
  if (last) publish_presence_safely(user);  // (the stream's end goes on: its socket, its slot)
}

// A local user's first stream opened or last one closed. Broadcasts go one at a time, each
// with the state as it is when it starts: a reconnect (the old stream's detach racing the
// new one's attach on another thread) cannot leave contacts with OFFLINE as the last word
// about a user who is online.
void ws_manager::publish_presence(std::string const& user) {
  std::lock_guard order(presence_order_[std::hash<std::string>{}(user) % presence_order_.size()]);
  bool online = false;
  std::int64_t last_seen = 0;
  {
    std::lock_guard lock(mutex_);
    online = streams_.count(user) > 0;
    if (auto it = last_seen_.find(user); !online && it != last_seen_.end()) last_seen = it->second;
  }
  broadcast_presence(user, online, last_seen);
}

std::vector<std::shared_ptr<stream_sink>> ws_manager::sinks_of(std::string const& user) const {
  std::vector<std::shared_ptr<stream_sink>> out;
  std::lock_guard lock(mutex_);
  auto it = streams_.find(user);
  if (it == streams_.end()) return out;
  for (auto const& w : it->second)
    if (auto s = w.lock()) out.push_back(std::move(s));
  return out;
}

void ws_manager::notify_mailbox(std::string const& user, std::uint64_t head,
                                std::shared_ptr<shared_event const> event) {
  for (auto const& s : sinks_of(user)) s->on_mailbox(head, event);
}

void ws_manager::notify_mailbox_events(std::string const& user, std::shared_ptr<mailbox_events const> const& events) {
  for (auto const& s : sinks_of(user)) s->on_mailbox_events(events);
}

void ws_manager::relay_typing(std::string const& from, std::string const& to, std::string const& conversation_id,
                              bool active) {
  if (hooks_.typing_out && ids::region_of(to) != hooks_.local_region && ids::region_of(from) == hooks_.local_region)
    return hooks_.typing_out(from, to, conversation_id, active);
  client::server_frame f;
  auto* t = f.mutable_typing();
  t->set_from(from);
  t->set_conversation_id(conversation_id);
  t->set_active(active);
  for (auto const& s : sinks_of(to)) s->on_frame(f);
}

void ws_manager::relay_group_typing(std::string const& from, std::vector<std::string> const& peers,
                                    std::string const& group, bool active) {
  std::set<std::string_view> regions;
  for (auto const& peer : peers) {
    auto region = ids::region_of(peer);
    if (region == hooks_.local_region || !hooks_.typing_out)
      relay_typing(from, peer, group, active);
    else if (regions.insert(region).second)
      hooks_.typing_out(from, "*@" + std::string(region), group, active);
  }
}

presence_info ws_manager::presence(std::string const& user) const {
  std::lock_guard lock(mutex_);
  presence_info p;
  if (auto r = remote_.find(user); r != remote_.end()) {
    bool current = r->second.valid_until_ms > now_ms();
    p.online = r->second.online && current;
    p.last_seen_ms = r->second.online ? (current ? 0 : r->second.valid_until_ms) : r->second.last_seen_ms;
    return p;
  }
  p.online = streams_.count(user) > 0;
  if (auto it = last_seen_.find(user); it != last_seen_.end()) p.last_seen_ms = it->second;
  return p;
}

void ws_manager::presence_shared(std::string const& a, std::string const& b) {
  for (auto const& [viewer, seen] : {std::pair{a, b}, std::pair{b, a}}) {
    auto sinks = sinks_of(viewer);
    if (sinks.empty()) continue;
    if (ids::region_of(seen) != hooks_.local_region && !hooks_.local_region.empty()) {
      // A user of another region with no report yet: nothing to say; their region's
      // next report reaches the viewer as a change.
      std::lock_guard lock(mutex_);
      if (!remote_.count(seen)) continue;
    }
    auto p = presence(seen);
    auto frame = presence_frame(seen, p.online, p.online ? 0 : p.last_seen_ms);
    for (auto const& s : sinks) s->on_frame(frame);
  }
}

std::vector<client::server_frame> ws_manager::presence_of_contacts(std::string const& user) const {
  std::vector<client::server_frame> out;
  for (auto const& c : contacts_of_(user)) {
    if (ids::region_of(c) != hooks_.local_region && !hooks_.local_region.empty()) {
      // A user of another region with no report yet: nothing to say (not "offline"), as
      // in presence_shared.
      std::lock_guard lock(mutex_);
      if (!remote_.count(c)) continue;
    }
    auto p = presence(c);
    out.push_back(presence_frame(c, p.online, p.last_seen_ms));
  }
  return out;
}

void ws_manager::broadcast_presence(std::string const& user, bool online, std::int64_t at_ms) {
  auto frame = presence_frame(user, online, at_ms);
  std::vector<std::string> regions;
  for (auto const& c : contacts_of_(user)) {
    for (auto const& s : sinks_of(c)) s->on_frame(frame);
    auto r = std::string(ids::region_of(c));
    if (r != hooks_.local_region && std::find(regions.begin(), regions.end(), r) == regions.end())
      regions.push_back(std::move(r));
  }
  if (hooks_.presence_out && ids::region_of(user) == hooks_.local_region)
    for (auto const& r : regions) hooks_.presence_out(r, user, online, at_ms);
}

void ws_manager::set_remote_hooks(remote_hooks hooks) {
  hooks_ = std::move(hooks);
}

void ws_manager::remote_presence(std::string const& user, bool online, std::int64_t last_seen_ms,
                                 std::int64_t valid_until_ms, std::int64_t stamp_ms) {
  auto id = ids::parse_user_id(user, hooks_.local_region);
  if (!id || id->region == hooks_.local_region) return;
  bool told = false;
  {
    std::lock_guard lock(mutex_);
    if (!remote_.count(user)) {
      // Bounded, and one region may not take the table from the others (a flood of invented
      // users): when the table or the region's share is full, forget whoever is offline (a
      // pass over all of them, at most once a second, not once per newcomer); if they are
      // all online, refuse newcomers. Offline users are forgotten for either bound: a region
      // whose share filled over months with users gone offline still gets new ones in.
      auto full = [&] {
        return remote_per_region_[id->region] >= max_remote_per_region || remote_.size() >= max_remote_users;
      };
      if (full()) {
        auto now = now_ms();
        if (now - remote_swept_ms_ >= 1000) {
          remote_swept_ms_ = now;
          std::erase_if(remote_, [this](auto const& kv) {
            if (kv.second.online || kv.second.told_online) return false;  // contacts not told yet: kept
            --remote_per_region_[std::string(ids::region_of(kv.first))];
            return true;
          });
        }
        if (full()) return;
      }
      ++remote_per_region_[id->region];
    }
    auto& r = remote_[user];
    if (outdated(r, stamp_ms)) return;
    // An accepted report older by more than the tolerance is the origin's clock set back:
    // its stamps count from there on (keeping the higher one would refuse every report
    // for the next minute).
    if (stamp_ms > 0) r.stamp_ms = stamp_ms;
    r.online = online;
    if (!online) r.last_seen_ms = last_seen_ms;
    r.valid_until_ms = valid_until_ms;
    // Each change told is a contacts scan and a frame per contact: one region's changes are
    // told at most 1,000 a second (20,000 at once). Beyond, the state is kept all the same
    // (GET /v1/presence, a stream that connects) and told later (expire_remote_presence).
    told = r.told_online != online && remote_told_.take(id->region, now_ms()) == 0;
    if (told) r.told_online = online;
  }
  if (!told) return;
  auto frame = presence_frame(user, online, last_seen_ms);
  for (auto const& c : contacts_of_(user))
    for (auto const& s : sinks_of(c)) s->on_frame(frame);
}

void ws_manager::remote_presence_full(std::string const& region, std::vector<std::string> const& online,
                                      std::int64_t at_ms, std::int64_t stamp_ms) {
  std::vector<std::string> gone;
  std::unordered_set<std::string_view> now_online(online.begin(), online.end());
  {
    std::lock_guard lock(mutex_);
    for (auto const& [user, r] : remote_)
      if (r.online && ids::region_of(user) == region && !now_online.count(user)) gone.push_back(user);
  }
  for (auto const& u : gone) remote_presence(u, false, at_ms, at_ms, stamp_ms);
}

void ws_manager::expire_remote_presence() {
  std::vector<std::pair<std::string, bool>> due;  // users whose contacts are told now
  auto now = now_ms();
  {
    std::lock_guard lock(mutex_);
    for (auto& [user, r] : remote_) {
      if (r.online && r.valid_until_ms <= now) {
        r.online = false;
        r.last_seen_ms = r.valid_until_ms;
      }
      // Changes not told yet (their region's frames ran over its rate) go out as it allows.
      if (r.online != r.told_online && remote_told_.take(std::string(ids::region_of(user)), now) == 0) {
        r.told_online = r.online;
        due.emplace_back(user, r.online);
      }
    }
  }
  for (auto const& [user, online] : due) {
    auto p = presence(user);
    auto frame = presence_frame(user, online, online ? 0 : p.last_seen_ms);
    for (auto const& c : contacts_of_(user))
      for (auto const& s : sinks_of(c)) s->on_frame(frame);
  }
}

std::vector<std::string> ws_manager::online_with_contacts_in(std::string const& region) const {
  std::vector<std::string> users;
  {
    std::lock_guard lock(mutex_);
    for (auto const& [u, list] : streams_)
      if (!list.empty()) users.push_back(u);
  }
  std::vector<std::string> out;
  for (auto const& u : users) {
    auto contacts = contacts_of_(u);
    if (std::any_of(contacts.begin(), contacts.end(), [&](auto const& c) { return ids::region_of(c) == region; }))
      out.push_back(u);
  }
  return out;
}

std::vector<ws_manager::stream_info> ws_manager::online() const {
  std::vector<std::pair<std::string, std::shared_ptr<stream_sink>>> live;
  {
    std::lock_guard lock(mutex_);
    for (auto const& [user, list] : streams_)
      for (auto const& weak : list)
        if (auto sink = weak.lock()) live.emplace_back(user, std::move(sink));
  }
  std::vector<stream_info> out;  // the sinks are asked without the mutex
  for (auto const& [user, sink] : live) out.push_back({user, sink->device_id()});
  std::sort(out.begin(), out.end(),
            [](auto const& a, auto const& b) { return std::tie(a.user, a.device_id) < std::tie(b.user, b.device_id); });
  return out;
}

void ws_manager::sessions_changed(std::string const& user) {
  for (auto const& s : sinks_of(user)) s->recheck_session();
}

std::size_t ws_manager::kick(std::string const& device_id) {
  std::vector<std::shared_ptr<stream_sink>> live;
  {
    std::lock_guard lock(mutex_);
    for (auto const& [user, list] : streams_)
      for (auto const& weak : list)
        if (auto sink = weak.lock()) live.push_back(std::move(sink));
  }
  std::size_t n = 0;  // the sinks are asked and told without the mutex
  for (auto const& sink : live)
    if (!device_id.empty() && sink->device_id() == device_id) {
      sink->end_by_admin();
      ++n;
    }
  return n;
}

std::size_t ws_manager::streams() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (auto const& [u, list] : streams_) n += list.size();
  return n;
}

}  // namespace petchat::ws
