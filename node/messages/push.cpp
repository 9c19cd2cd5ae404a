// The push records (docs/PROTOCOL.md, "Push notifications"; key layouts in detail/push.hpp):
// devices' targets and settings, and the push outbox, whose entries are written by the same
// writes that put message events in mailboxes (impl::note_push). Sending is node/notify's.
#include <sodium.h>

#include <algorithm>
#include <future>
#include <map>
#include <vector>

#include "node/async/async.hpp"
#include "node/messages/detail/opening.hpp"
#include "node/messages/detail/push.hpp"
#include "node/messages/detail/push_index.hpp"
#include "node/messages/detail/service.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::messages {

using detail::erase_target;
using detail::identity_of;
using detail::place_of;
using detail::put_target;
using detail::take_identity;
using detail::targets_at;

namespace {

push_target view_of(std::string const& user, std::string const& device, std::string const& id,
                    records::push_target_record const& r) {
  push_target t;
  t.id = id;
  t.user = user;
  t.device_id = device;
  t.kind = r.kind();
  t.endpoint = r.endpoint();
  t.place = r.place();
  t.p256dh = r.p256dh();
  t.auth = r.auth();
  t.app_id = r.app_id();
  t.pushkey = r.pushkey();
  t.data_json = r.data_json();
  t.created_at_ms = r.created_at_ms();
  t.pushed_through = r.pushed_through();
  t.last_push_ms = r.last_push_ms();
  t.failures = r.failures();
  t.failing_since_ms = r.failing_since_ms();
  t.attempt_ms = r.attempt_ms();
  t.next_try_ms = r.next_try_ms();
  return t;
}

records::push_target_record record_of(push_target const& t) {
  records::push_target_record r;
  r.set_kind(t.kind);
  r.set_endpoint(t.endpoint);
  r.set_place(t.place);
  r.set_p256dh(t.p256dh);
  r.set_auth(t.auth);
  r.set_app_id(t.app_id);
  r.set_pushkey(t.pushkey);
  r.set_data_json(t.data_json);
  r.set_created_at_ms(t.created_at_ms);
  r.set_pushed_through(t.pushed_through);
  r.set_last_push_ms(t.last_push_ms);
  r.set_failures(t.failures);
  r.set_failing_since_ms(t.failing_since_ms);
  r.set_attempt_ms(t.attempt_ms);
  r.set_next_try_ms(t.next_try_ms);
  return r;
}

// Whether `r` is still the registration `t` was read from (push_target::registered_as): one
// registered with others starts afresh, and what was learnt of the old is not its.
bool as_registered(records::push_target_record const& r, push_target const& t) {
  return view_of(t.user, t.device_id, t.id, r).registered_as(t);
}

bool same_target(records::push_target_record const& a, push_target const& b) {
  if (a.kind() == "matrix") return b.kind == "matrix" && a.app_id() == b.app_id && a.pushkey() == b.pushkey;
  return a.kind() == b.kind && a.endpoint() == b.endpoint;
}

// Calls fn(device, id, record) for each target under `owner` (a user's or a device's).
template <typename Fn>
void scan_targets(message_service::impl const& m, std::string const& user, std::string const& owner, Fn&& fn) {
  auto user_owner = keys::push_targets_owner(user);
  m.db.scan(cf::push, owner, keys::prefix_end(owner), [&](std::string_view key, std::string_view value) {
    auto rest = key.substr(user_owner.size());
    auto nul = rest.find('\0');
    if (nul == std::string_view::npos) return true;
    records::push_target_record r;
    if (!r.ParseFromArray(value.data(), static_cast<int>(value.size()))) return true;
    return fn(std::string(rest.substr(0, nul)), std::string(rest.substr(nul + 1)), r);
  });
}

// Targets stored by earlier requests of the batch the writer is building: the scan of a
// device's targets sees committed ones only, and a batch holds up to a thousand requests
// (as many registrations sent at once). Writer thread only; forgotten at the next batch.
struct batch_targets {
  std::uint64_t generation = 0;
  std::map<std::string, std::vector<push_target>> by_device;  // owner key -> targets
};

std::vector<push_target>& added_in_batch(store::rocks_batch const& b, std::string const& owner) {
  thread_local batch_targets added;
  if (added.generation != b.generation()) {
    added.by_device.clear();
    added.generation = b.generation();
  }
  return added.by_device[owner];
}

}  // namespace

void message_service::impl::note_push(store::rocks_batch& b, std::string const& user, std::uint64_t seq) {
  auto key = keys::push_pending_key(user);
  auto now = now_ms();
  records::push_pending_record p;
  if (auto v = b.get(cf::push, key); !(v && p.ParseFromString(*v))) p.set_since_ms(now);
  p.set_last_seq(seq);
  p.set_last_ms(now);
  b.put(cf::push, key, p.SerializeAsString());
}

void message_service::set_push_hook(std::function<void(std::string const&, std::uint64_t)> hook) {
  auto& m = *impl_;
  m.push.set_hook(std::move(hook));
  std::unordered_set<std::string> users;
  std::string const first = "t/";
  m.db.scan(cf::push, first, keys::prefix_end(first), [&](std::string_view key, std::string_view) {
    auto rest = key.substr(first.size());
    users.emplace(rest.substr(0, rest.find('\0')));
    return true;
  });
  m.push.reset(std::move(users));
}

awaitable<result<push_target>> message_service::add_push_target(push_target t, push_limits limits) {
  auto& m = *impl_;
  struct state {
    bool too_many = false;
    bool too_many_for_user = false;
    bool too_many_at_place = false;
    push_target stored;
    std::size_t taken = 0;  // other targets that pushed to the same place
  };
  auto st = std::make_shared<state>();
  store::rocks_db::write_fn mutation = [&m, st, t, limits](store::rocks_batch& b) {
    st->too_many = st->too_many_for_user = st->too_many_at_place = false;
    st->stored = t;
    auto owner = keys::push_device_owner(t.user, t.device_id);
    std::size_t count = 0;
    std::optional<std::string> same;
    records::push_target_record before;
    m.db.scan(cf::push, owner, keys::prefix_end(owner), [&](std::string_view key, std::string_view value) {
      ++count;
      records::push_target_record r;
      if (r.ParseFromArray(value.data(), static_cast<int>(value.size())) && same_target(r, t)) {
        same = std::string(key.substr(owner.size()));
        before = r;
      }
      return true;
    });
    auto& batch = added_in_batch(b, owner);
    for (auto const& a : batch) {
      ++count;
      if (same_target(record_of(a), t)) {  // as for the committed ones: Matrix by app and pushkey
        same = a.id;
        before = record_of(a);
      }
    }
    if (same) {  // the same target again: what was pushed to it stands
      // As this batch left it (an earlier registration in it may have changed it).
      if (auto now = b.get(cf::push, keys::push_target_key(t.user, t.device_id, *same))) before.ParseFromString(*now);
      st->stored.id = *same;
      st->stored.pushed_through = std::max(t.pushed_through, before.pushed_through());
      st->stored.last_push_ms = before.last_push_ms();
      // Registered again as it was (an app does so at every start): how it has fared stands
      // too, or a target that always fails would never be given up, and a Retry-After would
      // end at each registration. New keys, data or gateway start it afresh.
      if (as_registered(before, t)) {
        st->stored.attempt_ms = before.attempt_ms();  // (else the old registration's push: not this one's)
        st->stored.created_at_ms = before.created_at_ms();
        st->stored.failures = before.failures();
        st->stored.failing_since_ms = before.failing_since_ms();
        st->stored.next_try_ms = before.next_try_ms();
      }
    }
    // What pushes to the same place elsewhere goes first: the room it leaves on this device
    // and the user's others counts (moving an endpoint between devices at the limit works).
    auto key = keys::push_target_key(t.user, t.device_id, st->stored.id);
    auto identity = identity_of(t.kind, t.endpoint, t.app_id, t.pushkey);
    auto taken = take_identity(m, b, identity, key);
    st->taken = taken.size();
    auto user_owner = keys::push_targets_owner(t.user);
    auto under = [&taken](std::string const& prefix) {
      return static_cast<std::size_t>(
          std::count_if(taken.begin(), taken.end(), [&](std::string const& k) { return k.starts_with(prefix); }));
    };
    if (!same && count - under(owner) >= limits.per_device) {
      st->too_many = true;
      return false;  // (what take_identity erased goes back with the write)
    }
    if (!same) {
      // Over all the user's devices: the committed ones and this device's in this batch
      // (another device's added in this very batch is not seen: at most one per device
      // past the limit, and devices are capped).
      std::size_t of_user = batch.size(), freed = under(user_owner);
      m.db.scan(cf::push, user_owner, keys::prefix_end(user_owner),
                [&](std::string_view, std::string_view) { return ++of_user < limits.per_user + freed; });
      if (of_user - freed >= limits.per_user) {
        st->too_many_for_user = true;
        return false;
      }
    }
    // Over all users, where its requests go (as this batch left them: those it took are
    // gone from there). A target registered again with another gateway moves there, and
    // counts there.
    auto record = record_of(st->stored);
    bool moves = same && place_of(before) != place_of(record);
    if ((!same || moves) && limits.per_place > 0 && targets_at(b, place_of(record)) >= limits.per_place) {
      st->too_many_at_place = true;
      return false;
    }
    if (same) erase_target(b, key, before);  // its index entries as they were
    put_target(b, key, record);
    if (!same) batch.push_back(st->stored);
    m.push.add(t.user);
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (st->too_many)
    co_return fail(code::too_many_push_targets,
                   "this device has " + std::to_string(limits.per_device) + " push targets already: remove one first");
  if (st->too_many_for_user)
    co_return fail(code::too_many_push_targets, "your devices have " + std::to_string(limits.per_user) +
                                                    " push targets already: remove one, or log a device out");
  if (st->too_many_at_place)
    co_return fail(code::too_many_push_targets, "this node pushes to " + place_of(record_of(t)) +
                                                    " for as many targets as it may (push.max_targets_per_host)");
  if (outcome != store::write_outcome::committed) co_return m.write_failed("the push target could not be stored");
  if (st->taken > 0)
    log::get("push")->info("a push target of {}'s took over {} other target(s) that pushed to the same place",
                           log::printable(t.user), st->taken);
  co_return st->stored;
}

awaitable<result<bool>> message_service::remove_push_target(std::string user, std::string device_id, std::string id,
                                                            std::optional<push_target> sent) {
  auto& m = *impl_;
  auto found = std::make_shared<bool>(false);
  store::rocks_db::write_fn mutation = [found, user, device_id, id, sent](store::rocks_batch& b) {
    auto key = keys::push_target_key(user, device_id, id);
    auto v = b.get(cf::push, key);
    records::push_target_record r;
    bool parsed = v && r.ParseFromString(*v);
    *found = v && (!sent || (parsed && as_registered(r, *sent)));  // (registered anew since: not this one)
    if (*found) parsed ? erase_target(b, key, r) : b.erase(cf::push, key);
    return *found;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the push target could not be removed");
  co_return *found;
}

awaitable<result<std::size_t>> message_service::remove_device_push(std::string user, std::string device_id) {
  auto& m = *impl_;
  auto removed = std::make_shared<std::size_t>(0);
  store::rocks_db::write_fn mutation = [&m, removed, user, device_id](store::rocks_batch& b) {
    auto owner = keys::push_device_owner(user, device_id);
    std::vector<std::string> found;  // keys
    m.db.scan(cf::push, owner, keys::prefix_end(owner), [&](std::string_view key, std::string_view) {
      found.emplace_back(key);
      return true;
    });
    for (auto const& key : found) {
      records::push_target_record r;
      auto now = b.get(cf::push, key);  // as this batch left it
      now&& r.ParseFromString(*now) ? erase_target(b, key, r) : b.erase(cf::push, key);
    }
    *removed = found.size();
    b.erase(cf::push, keys::push_settings_key(user, device_id));
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome != store::write_outcome::committed) co_return m.write_failed("the push targets could not be removed");
  co_return *removed;
}

awaitable<result<std::size_t>> message_service::remove_user_push(std::string user) {
  auto& m = *impl_;
  auto targets = std::make_shared<std::size_t>(0);
  store::rocks_db::write_fn mutation = [&m, user, targets](store::rocks_batch& b) {
    std::vector<std::string> found;  // keys
    for (auto const& owner : {keys::push_targets_owner(user), "s/" + user + '\0'})
      m.db.scan(cf::push, owner, keys::prefix_end(owner), [&](std::string_view key, std::string_view) {
        found.emplace_back(key);
        return true;
      });
    *targets = 0;
    for (auto const& key : found) {
      records::push_target_record r;
      bool target = key.starts_with("t/");
      *targets += target;
      auto now = target ? b.get(cf::push, key) : std::nullopt;  // as this batch left it
      now&& r.ParseFromString(*now) ? erase_target(b, key, r) : b.erase(cf::push, key);
    }
    b.erase(cf::push, keys::push_pending_key(user));
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome != store::write_outcome::committed) co_return m.write_failed("the push records could not be removed");
  co_return *targets;
}

std::vector<std::string> message_service::push_settings_devices(std::string const& user) const {
  std::vector<std::string> out;
  auto owner = "s/" + user + '\0';
  impl_->db.scan(cf::push, owner, keys::prefix_end(owner), [&](std::string_view key, std::string_view) {
    out.emplace_back(key.substr(owner.size()));
    return out.size() < 10000;
  });
  return out;
}

awaitable<result<bool>> message_service::push_tried(push_target t) {
  auto& m = *impl_;
  store::rocks_db::write_fn mutation = [t](store::rocks_batch& b) {
    auto key = keys::push_target_key(t.user, t.device_id, t.id);
    records::push_target_record r;
    auto v = b.get(cf::push, key);
    if (!v || !r.ParseFromString(*v) || !as_registered(r, t)) return false;  // removed, or registered anew, meanwhile
    r.set_pushed_through(std::max(r.pushed_through(), t.pushed_through));
    r.set_last_push_ms(t.last_push_ms);  // not the larger: a time a clock stepped back wrote would stay
    r.set_failures(t.failures);
    r.set_failing_since_ms(t.failing_since_ms);
    r.set_attempt_ms(t.attempt_ms);
    r.set_next_try_ms(t.next_try_ms);
    b.put(cf::push, key, r.SerializeAsString());
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the push could not be recorded");
  co_return outcome == store::write_outcome::committed;
}

std::vector<push_target> message_service::push_targets(std::string const& user,
                                                       std::optional<std::string> const& device) const {
  std::vector<push_target> out;
  auto owner = device ? keys::push_device_owner(user, *device) : keys::push_targets_owner(user);
  scan_targets(*impl_, user, owner,
               [&](std::string const& dev, std::string const& id, records::push_target_record const& r) {
                 out.push_back(view_of(user, dev, id, r));
                 return true;
               });
  return out;
}

std::size_t message_service::push_target_count() const {
  std::size_t n = 0;
  std::string const first = "t/";
  impl_->db.scan(cf::push, first, keys::prefix_end(first), [&](std::string_view, std::string_view) {
    ++n;
    return true;
  });
  return n;
}

push_settings message_service::push_settings_of(std::string const& user, std::string const& device_id) const {
  push_settings s;
  auto r = parse<records::push_settings_record>(impl_->db.get(cf::push, keys::push_settings_key(user, device_id)));
  if (!r) return s;
  s.previews = r->previews();
  s.dnd = r->dnd();
  s.dnd_start_min = r->dnd_start_min();
  s.dnd_end_min = r->dnd_end_min();
  s.utc_offset_min = r->utc_offset_min();
  return s;
}

awaitable<errors::status> message_service::set_push_settings(std::string user, std::string device_id, push_settings s) {
  auto& m = *impl_;
  records::push_settings_record r;
  r.set_previews(s.previews);
  r.set_dnd(s.dnd);
  r.set_dnd_start_min(s.dnd_start_min);
  r.set_dnd_end_min(s.dnd_end_min);
  r.set_utc_offset_min(s.utc_offset_min);
  store::rocks_db::write_fn mutation = [key = keys::push_settings_key(user, device_id),
                                        value = r.SerializeAsString()](store::rocks_batch& b) {
    b.put(cf::push, key, value);
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome != store::write_outcome::committed) co_return m.write_failed("the push settings could not be stored");
  co_return errors::ok();
}

namespace {
push_pending pending_of(std::string user, records::push_pending_record const& r) {
  return {std::move(user), r.since_ms(), r.last_ms(), r.last_seq()};
}
}  // namespace

std::vector<push_pending> message_service::push_outbox(std::size_t max, std::string const& after) const {
  std::vector<push_pending> out;
  std::string const first = "o/";
  // The first key past `after`'s: its name with a NUL byte appended (names hold none).
  auto from = after.empty() ? first : keys::push_pending_key(after) + std::string(1, '\0');
  impl_->db.scan(cf::push, from, keys::prefix_end(first), [&](std::string_view key, std::string_view value) {
    records::push_pending_record r;
    if (r.ParseFromArray(value.data(), static_cast<int>(value.size())))
      out.push_back(pending_of(std::string(key.substr(first.size())), r));
    return out.size() < max;
  });
  return out;
}

std::optional<push_pending> message_service::pending_push(std::string const& user) const {
  auto r = parse<records::push_pending_record>(impl_->db.get(cf::push, keys::push_pending_key(user)));
  if (!r) return std::nullopt;
  return pending_of(user, *r);
}

awaitable<errors::status> message_service::push_settled(std::string user, std::uint64_t last_seq) {
  auto& m = *impl_;
  store::rocks_db::write_fn mutation = [user, last_seq](store::rocks_batch& b) {
    auto key = keys::push_pending_key(user);
    records::push_pending_record r;
    auto v = b.get(cf::push, key);
    if (!v || !r.ParseFromString(*v) || r.last_seq() != last_seq) return false;
    b.erase(cf::push, key);
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the push outbox could not be updated");
  co_return errors::ok();
}

}  // namespace petchat::messages
