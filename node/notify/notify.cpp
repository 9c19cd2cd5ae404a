// The notification service's API and its scheduler (docs/PROTOCOL.md, "Push
// notifications"). The scheduler runs on one strand: it looks at a user when the message
// service says a message reached them (the push hook), when a wait it set runs out, and on
// a periodic sweep of the durable push outbox (which is how pushes pending at a restart go
// out). Looking at a user decides, per target, to wait (a live stream may still
// acknowledge, the coalescing window, a retry's back-off), to let the push go (the device
// has it, do-not-disturb, given up), or to send (deliver.cpp).
#include "node/notify/detail/service.hpp"

#include <algorithm>
#include <cctype>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "base/format/format.hpp"
#include "node/log/log.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::notify {

namespace asio = boost::asio;
using errors::code;
using errors::fail;
using format::now_ms;

namespace {

constexpr std::int64_t sweep_interval_ms = 30000;

boost::asio::ssl::context make_tls(config::push_section const& o) {
  asio::ssl::context tls(asio::ssl::context::tls_client);
  tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                  asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  tls.set_default_verify_paths();
  if (!o.ca_file.empty()) {
    boost::system::error_code ec;
    tls.load_verify_file(o.ca_file, ec);
    if (ec) throw std::runtime_error("push.ca_file " + o.ca_file + ": " + ec.message());
  }
  return tls;
}

}  // namespace

bool detail::session_live(std::vector<users::session_info> const& sessions, std::string const& device) {
  for (auto const& s : sessions)
    if (s.device_id == device) return !s.revoked;
  return false;
}

std::vector<std::string> detail::ended_devices(messages::message_service const& messages,
                                               users::user_service const& users, std::string const& user) {
  std::set<std::string> devices;
  for (auto const& t : messages.push_targets(user)) devices.insert(t.device_id);
  for (auto& d : messages.push_settings_devices(user)) devices.insert(std::move(d));
  if (devices.empty()) return {};
  auto sessions = users.list_sessions(user.substr(0, user.find('@')));
  std::vector<std::string> out;
  for (auto const& device : devices)
    if (!session_live(sessions, device)) out.push_back(device);
  return out;
}

notification_service::impl::impl(config::push_section const& o, std::filesystem::path const& data_dir,
                                 messages::message_service& m, users::user_service& u, ws::ws_manager& s,
                                 metrics::registry& r)
    : options(o),
      messages(m),
      users(u),
      streams(s),
      metrics(r),
      vapid(detail::vapid_key::load_or_create(data_dir / "vapid.pem")),
      policy(o.allow_hosts, o.allow_networks),
      tls(make_tls(o)) {}

notification_service::notification_service(config::push_section const& options, std::filesystem::path const& data_dir,
                                           messages::message_service& messages, users::user_service& users,
                                           ws::ws_manager& streams, metrics::registry& metrics)
    : impl_(std::make_shared<impl>(options, data_dir, messages, users, streams, metrics)) {}

// The io_context has stopped by now: the resolver's strand runs nothing.
notification_service::~notification_service() {
  stop();
  impl_->dns.reset();
}

void notification_service::start(asio::io_context& io) {
  auto& m = *impl_;
  // Apple's push service refuses a VAPID subject at localhost (403 BadJwtToken): every
  // Web Push to Safari would fail for good, each refusal looking like the endpoint's fault.
  auto const& subject = m.options.vapid_subject;
  m.vapid_subject_refused = detail::subject_refused(subject);
  if (m.options.enabled && m.vapid_subject_refused)
    log::get("notify")->warn(
        "push.vapid_subject is {}: push services (Apple's) refuse such a subject; set it to "
        "a mailto: or https: address of this service's operator",
        subject);
  m.strand.emplace(asio::make_strand(io));
  m.dns = std::make_unique<detail::name_resolver>(io, m.options.nameservers);
  m.timer = std::make_unique<asio::steady_timer>(*m.strand);
  std::weak_ptr<impl> weak = impl_;
  m.messages.set_push_hook([weak](std::string const& user, std::uint64_t) {
    auto self = weak.lock();
    if (!self || self->stopping) return;
    bool online = self->streams.presence(user).online;
    auto at = now_ms() + (online ? std::int64_t(self->options.live_delay_ms) : 0);
    asio::post(*self->strand, [self, user, at] { self->schedule(user, at); });
  });
  m.users.on_sessions_changed([weak](std::string const& name) {
    auto self = weak.lock();
    if (!self || self->stopping) return;
    auto user = name + "@" + self->users.region();
    asio::post(*self->strand, [self, user] { self->end_sessions(user); });
  });
  m.metrics.add_gauge("petchat_push_outbox_users", "Users with pushes pending (the durable push outbox)", [weak] {
    auto self = weak.lock();
    return self ? double(self->outbox_figures().users) : 0.0;
  });
  m.metrics.add_gauge("petchat_push_outbox_oldest_seconds", "Age of the oldest pending push (0 when none)", [weak] {
    auto self = weak.lock();
    if (!self) return 0.0;
    auto oldest = self->outbox_figures().oldest_ms;
    return oldest ? double(std::max<std::int64_t>(0, now_ms() - oldest)) / 1000.0 : 0.0;
  });
  m.metrics.add_gauge("petchat_push_in_flight", "Push requests on the wire now", [weak] {
    auto self = weak.lock();
    return self ? double(self->in_flight.load()) : 0.0;
  });
  m.metrics.add_gauge("petchat_push_slow_in_flight",
                      "Push requests on the wire now that gave their slot back (unanswered after "
                      "push.slow_after_ms) or went to a host that answered nothing lately",
                      [weak] {
                        auto self = weak.lock();
                        return self ? double(self->demoted_in_flight + self->slow_host_in_flight) : 0.0;
                      });
  auto self = impl_;
  asio::co_spawn(*m.strand, self->run(), asio::detached);
}

void notification_service::stop() {
  auto& m = *impl_;
  if (m.stopping.exchange(true)) return;
  if (m.strand) asio::post(*m.strand, [self = impl_] { self->timer->cancel(); });
}

bool notification_service::enabled() const {
  return impl_->options.enabled;
}

std::string notification_service::vapid_public_key() const {
  return format::base64url(impl_->vapid.public_key());
}

outbox_status notification_service::status() const {
  auto& m = *impl_;
  outbox_status s;
  s.enabled = m.options.enabled;
  // The gauges' figures (at most outbox_counted users, taken at most every 5 s): an
  // operator polling this while the outbox is large must not read it whole each time.
  auto figures = m.outbox_figures();
  s.users = figures.users;
  s.oldest_ms = figures.oldest_ms;
  s.in_flight = m.in_flight;
  s.slow = m.demoted_in_flight + m.slow_host_in_flight;
  {
    std::lock_guard lock(m.retry_mutex);
    s.retrying = m.retry_at.size();
  }
  s.targets = m.messages.push_target_count();
  return s;
}

std::vector<target_status> notification_service::targets_of(std::string const& user_id) const {
  std::vector<target_status> out;
  for (auto& t : impl_->messages.push_targets(user_id)) {
    auto next = impl_->next_try(detail::target_key(t));
    if (next == 0 && t.next_try_ms > now_ms()) next = t.next_try_ms;  // written before a restart
    out.push_back({std::move(t), next});
  }
  return out;
}

// The scheduler, on the strand.

std::int64_t notification_service::impl::next_try(std::string const& key) const {
  std::lock_guard lock(retry_mutex);
  auto it = retry_at.find(key);
  return it == retry_at.end() ? 0 : it->second;
}

void notification_service::impl::schedule(std::string const& user, std::int64_t at) {
  if (stopping) return;
  auto it = due_by_user.find(user);
  if (it != due_by_user.end()) {
    if (it->second <= at) return;
    due.erase({it->second, user});
  }
  due_by_user[user] = at;
  due.emplace(at, user);
  if (timer_at == 0 || at < timer_at) timer->cancel();  // the loop wakes earlier
}

asio::awaitable<void> notification_service::impl::run() {
  auto self = shared_from_this();
  std::int64_t next_sweep = 0;
  while (!stopping) {
    auto now = now_ms();
    if (now >= next_sweep) {
      next_sweep = now + sweep_interval_ms;
      try {
        if (sweep()) next_sweep = now;  // more pages: after what is due now
      } catch (std::exception const& e) {
        log::get("notify")->error("push: reading the push outbox failed: {}", e.what());
      }
    }
    while (!due.empty() && due.begin()->first <= now && !stopping) {
      auto user = due.begin()->second;
      due.erase(due.begin());
      due_by_user.erase(user);
      try {
        process(user);
      } catch (std::exception const& e) {
        log::get("notify")->error("push: looking at {} failed: {}", user, e.what());
      }
    }
    auto wake = next_sweep;
    if (!due.empty()) wake = std::min(wake, due.begin()->first);
    timer_at = wake;
    timer->expires_after(std::chrono::milliseconds(std::max<std::int64_t>(wake - now_ms(), 0)));
    co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    timer_at = 0;
  }
}

// Every user in the outbox is looked at (at start: the pushes a restart left pending), a
// page at a time so that the strand's other work goes on between pages. True if the pass
// is not finished (the next page is due at once).
bool notification_service::impl::sweep() {
  auto now = now_ms();
  auto page = messages.push_outbox(sweep_page, sweep_after);
  for (auto const& p : page) schedule(p.user, now);
  sweep_after = page.size() < sweep_page ? std::string() : page.back().user;
  return !sweep_after.empty();
}

// The outbox's gauges, from one scan of at most outbox_counted users, taken at most every
// 5 seconds: a scrape must not read a large outbox (after an outage) twice on an I/O thread.
notification_service::impl::outbox_summary notification_service::impl::outbox_figures() {
  std::lock_guard lock(figures_mutex);
  auto now = now_ms();
  if (figures.taken_ms != 0 && now - figures.taken_ms < 5000) return figures;
  outbox_summary fresh;
  fresh.taken_ms = now;
  auto all = messages.push_outbox(outbox_counted);
  fresh.users = all.size();
  for (auto const& p : all)
    if (fresh.oldest_ms == 0 || p.since_ms < fresh.oldest_ms) fresh.oldest_ms = p.since_ms;
  figures = fresh;
  return figures;
}

void notification_service::impl::spawn_for(std::string const& key, std::string const& user, asio::awaitable<bool> op) {
  busy.insert(key);
  auto self = shared_from_this();
  // A write that failed (the store refuses writes: a full disk) is not tried again at
  // once: the user is looked at again a second later, not in a loop.
  auto wrapped = [](std::shared_ptr<impl> self, std::string key, std::string user,
                    asio::awaitable<bool> op) -> asio::awaitable<void> {
    bool ok = false;
    try {
      ok = co_await std::move(op);
    } catch (std::exception const& e) {
      log::get("notify")->error("push: {}", e.what());
    }
    self->busy.erase(key);
    self->schedule(user, now_ms() + (ok ? 0 : 1000));
  };
  asio::co_spawn(*strand, wrapped(self, key, user, std::move(op)), asio::detached);
}

asio::awaitable<bool> notification_service::impl::settle(std::string user, std::uint64_t last_seq) {
  auto done = co_await messages.push_settled(user, last_seq);
  co_return bool(done);
}

asio::awaitable<bool> notification_service::impl::end_device(std::string user, std::string device) {
  auto removed = co_await messages.remove_device_push(user, device);
  if (!removed) co_return false;
  for (std::size_t i = 0; i < removed.value(); ++i) metrics.push_target_removed("session_ended");
  forget_retries(user + '\0' + device + '\0');
  co_return true;
}

// A push that will not be sent: the target counts as pushed through `through`, and its
// failures start again from nothing.
asio::awaitable<bool> notification_service::impl::let_go(messages::push_target t, std::uint64_t through,
                                                         char const* result) {
  if (result) metrics.push_sent(t.kind, result);
  forget_retries(detail::target_key(t));
  t.pushed_through = through;
  t.failures = 0;
  t.failing_since_ms = 0;
  t.next_try_ms = 0;
  auto done = co_await messages.push_tried(t);
  co_return bool(done);
}

// Forgets the retry times of targets whose key starts with `prefix`.
void notification_service::impl::forget_retries(std::string const& prefix) {
  std::lock_guard lock(retry_mutex);
  std::erase_if(retry_at, [&](auto const& entry) { return entry.first.starts_with(prefix); });
  std::erase_if(refusals, [&](auto const& entry) { return entry.first.starts_with(prefix); });
}

void notification_service::impl::slot_freed(std::string const& user, slot_kind kind) {
  --in_flight;
  if (kind == slot_kind::demoted) --demoted_in_flight;
  if (kind == slot_kind::slow_host) --slow_host_in_flight;
  if (auto it = in_flight_by_user.find(user); it != in_flight_by_user.end() && --it->second == 0)
    in_flight_by_user.erase(it);
  if (kind != slot_kind::demoted || in_flight == 0) wake_waiting(waiting[kind == slot_kind::slow_host ? 1 : 0]);
  if (in_flight == 0) wake_waiting(waiting[kind == slot_kind::slow_host ? 0 : 1]);
}

void notification_service::impl::wake_waiting(waiting_list& list) {
  // Each takes a slot, or waits for its own time.
  auto now = now_ms();
  for (std::size_t woken = 0; !list.users.empty() && (woken < 4 || in_flight == 0); ++woken) {
    auto next = std::move(list.users.front());
    list.users.pop_front();
    list.listed.erase(next);
    // The first four a millisecond apart, in the line's order: at the same time they would
    // be looked at in name order, and a user whose name sorts late could lose every round.
    schedule(next, now + static_cast<std::int64_t>(std::min<std::size_t>(woken, 4)));
  }
}

bool notification_service::impl::host_slow(std::string const& host, std::int64_t now) {
  auto it = slow_hosts.find(host);
  if (it == slow_hosts.end()) return false;
  if (it->second > now) return true;
  slow_hosts.erase(it);
  return false;
}

void notification_service::impl::mark_slow(std::string const& host, std::int64_t now) {
  if (slow_hosts.size() >= max_slow_hosts) std::erase_if(slow_hosts, [now](auto const& h) { return h.second <= now; });
  if (slow_hosts.size() < max_slow_hosts || slow_hosts.contains(host)) slow_hosts[host] = now + slow_for_ms;
}

// Removes the targets of the user's devices whose sessions ended.
void notification_service::impl::end_sessions(std::string const& user) {
  for (auto const& device : detail::ended_devices(messages, users, user)) {
    auto key = "end/" + user + '/' + device;
    if (!busy.contains(key)) spawn_for(key, user, end_device(user, device));
  }
}

void notification_service::impl::process(std::string const& user) {
  auto pending = messages.pending_push(user);
  if (!pending) return;
  auto now = now_ms();
  auto last_seq = pending->last_seq;
  auto targets = messages.push_targets(user);
  auto settle_key = "settle/" + user;
  if (!options.enabled || targets.empty()) {
    if (!busy.contains(settle_key)) spawn_for(settle_key, user, settle(user, last_seq));
    return;
  }
  auto name = user.substr(0, user.find('@'));
  auto sessions = users.list_sessions(name);
  auto profile = users.get_profile(name);
  bool disabled = !profile || profile.value().disabled;  // a disabled account is not pushed
  bool online = streams.presence(user).online;
  bool settled = true;
  std::int64_t wake = 0;
  auto wake_at = [&](std::int64_t at) { wake = wake == 0 ? at : std::min(wake, at); };
  std::set<std::string> ended;
  for (auto& t : targets) {
    auto key = detail::target_key(t);
    if (busy.contains(key)) {
      settled = false;  // its end looks again
      continue;
    }
    if (!detail::session_live(sessions, t.device_id)) {
      auto end_key = "end/" + user + '/' + t.device_id;
      if (ended.insert(t.device_id).second && !busy.contains(end_key))
        spawn_for(end_key, user, end_device(user, t.device_id));
      settled = false;
      continue;
    }
    auto position = std::max(messages.acked(user, t.device_id), t.pushed_through);
    if (position >= last_seq) continue;
    settled = false;
    if (disabled) {
      spawn_for(key, user, let_go(t, last_seq, nullptr));
      continue;
    }
    // Times a clock since stepped back wrote ahead of now count as now: a push made while
    // the clock ran months fast must not silence the target (or keep it from giving up)
    // until the clock gets there again.
    t.last_push_ms = std::min(t.last_push_ms, now);
    t.attempt_ms = std::min(t.attempt_ms, now);
    t.failing_since_ms = std::min(t.failing_since_ms, now);
    if (t.failures > 0 && now - t.failing_since_ms > std::int64_t(options.give_up_s) * 1000) {
      spawn_for(key, user, let_go(t, last_seq, "dropped"));
      continue;
    }
    // Even the newest message waiting is older than push.give_up_s (the node was down for
    // days, push was off): news of then is no notification now. (Never while a push could
    // still be waiting for a live stream and the coalescing window.)
    auto stale_ms = std::max<std::int64_t>(std::int64_t(options.give_up_s) * 1000,
                                           std::int64_t(options.coalesce_ms) + options.live_delay_ms + 5000);
    if (now - pending->last_ms > stale_ms) {
      spawn_for(key, user, let_go(t, last_seq, "dropped"));
      continue;
    }
    std::int64_t at = now;
    // A live stream gets live_delay_ms to acknowledge the newest message; a stream of
    // messages cannot put the push off beyond the coalescing window.
    if (online)
      at = std::max(at, std::min({pending->last_ms, pending->since_ms + std::int64_t(options.coalesce_ms), now}) +
                            std::int64_t(options.live_delay_ms));
    at = std::max(at, t.last_push_ms + std::int64_t(options.coalesce_ms));
    // A push was on its way when the node stopped: it may have arrived.
    if (t.attempt_ms) at = std::max(at, t.attempt_ms + std::int64_t(options.coalesce_ms));
    at = std::max(at, next_try(key));
    // A back-off written before a restart (bounded: a clock stepped back waits no longer
    // than the longest back-off, or a day's Retry-After).
    at = std::max(at, std::min(t.next_try_ms, now + std::max<std::int64_t>(options.retry_max_ms, 86'400'000)));
    if (at > now) {
      wake_at(at);
      continue;
    }
    // No slot: the user is looked at again when one of theirs is free (spawn_for), or
    // when one of the node's is (slot_freed), not by polling.
    if (auto mine = in_flight_by_user.find(user);
        mine != in_flight_by_user.end() && mine->second >= options.max_in_flight_per_user) {
      settled = false;
      continue;
    }
    // A host that answered nothing lately shares a few slots with such hosts; the
    // others take the prompt slots.
    std::string why;
    auto url = detail::parse_https_url(t.endpoint, why);
    bool slow = url && host_slow(url->origin, now);
    if (slow ? slow_host_in_flight >= slow_slots() : prompt_in_flight() >= options.max_in_flight) {
      settled = false;
      auto& list = waiting[slow ? 1 : 0];
      if (list.listed.insert(user).second) list.users.push_back(user);
      continue;
    }
    auto settings = messages.push_settings_of(user, t.device_id);
    if (detail::in_dnd(settings, now)) {
      spawn_for(key, user, let_go(t, last_seq, nullptr));
      continue;
    }
    auto n = summarize(user, position, last_seq, settings.previews);
    if (n.count == 0) {
      spawn_for(key, user, let_go(t, last_seq, nullptr));
      continue;
    }
    ++in_flight;
    if (slow) ++slow_host_in_flight;
    ++in_flight_by_user[user];
    spawn_for(key, user, send(std::move(t), std::move(n), slow ? slot_kind::slow_host : slot_kind::prompt));
  }
  if (settled && !busy.contains(settle_key))
    spawn_for(settle_key, user, settle(user, last_seq));
  else if (wake != 0)
    schedule(user, wake);
}

}  // namespace petchat::notify
