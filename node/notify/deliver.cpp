// What a push says and sending it (docs/PROTOCOL.md, "The notification", "Web Push and
// UnifiedPush", "Matrix push gateway"): the notification from the user's mailbox, the
// request of each kind, and what each answer means for the target.
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <random>
#include <utility>

#include "base/format/format.hpp"
#include "node/log/log.hpp"
#include "node/notify/detail/service.hpp"

namespace petchat::notify {

namespace asio = boost::asio;
namespace json = boost::json;
using format::now_ms;

namespace {

// `text` cut to at most `max` bytes at a UTF-8 character boundary.
std::string cut_utf8(std::string const& text, std::size_t max) {
  if (text.size() <= max) return text;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80) --end;
  return text.substr(0, end);
}

json::object payload_of(detail::notification const& n) {
  json::object o;
  o["v"] = 1;
  o["type"] = "messages";
  o["user_id"] = n.user;
  o["count"] = n.count;
  o["unread"] = n.unread;
  o["conversation_id"] = n.conversation_id;
  o["message_id"] = n.message_id;
  o["sender_id"] = n.sender_id;
  o["seq"] = std::to_string(n.seq);
  o["sent_at"] = format::rfc3339(n.sent_at_ms);
  if (!n.preview.empty()) o["preview"] = n.preview;
  return o;
}

enum class outcome { ok, retry, gone, failed };

char const* name_of(outcome o) {
  switch (o) {
    case outcome::ok:
      return "ok";
    case outcome::retry:
      return "retry";
    case outcome::gone:
      return "gone";
    default:
      return "failed";
  }
}

// What an answer means. A Matrix gateway's 200 lists the pushkeys it rejected.
outcome judge(messages::push_target const& t, detail::http_answer const& a) {
  if (a.status == 0) return a.forbidden ? outcome::failed : outcome::retry;
  if (a.status == 404 || a.status == 410) return outcome::gone;
  if (a.status >= 200 && a.status < 300) {
    if (t.kind != "matrix") return outcome::ok;
    boost::system::error_code ec;
    auto v = json::parse(a.body, ec);
    if (!ec && v.is_object())
      if (auto const* rejected = v.as_object().if_contains("rejected"); rejected && rejected->is_array())
        for (auto const& key : rejected->as_array())
          if (key.is_string() && key.as_string() == t.pushkey) return outcome::gone;
    return outcome::ok;
  }
  if (a.status == 408 || a.status == 425 || a.status == 429 || a.status >= 500) return outcome::retry;
  return outcome::failed;  // redirects (never followed) and other refusals
}

// Whether `t` is still registered as it was when its push was decided (committed state):
// an answer of the endpoint or gateway it was sent to says nothing of one registered since
// under its id (a Matrix pushkey moved to another gateway, new keys).
bool still_registered(messages::message_service const& messages, messages::push_target const& t) {
  auto now = messages.push_targets(t.user, t.device_id);
  return std::ranges::any_of(now, [&](messages::push_target const& c) { return c.id == t.id && c.registered_as(t); });
}

}  // namespace

// The messages to `user` after `after` up to `through` (seqs are gapless per user): the
// newest max_window events are read, in pages, so that the newest message is always the
// one reported, whatever receipts and own messages came between (and the window before,
// if that one has none).
detail::notification notification_service::impl::summarize(std::string const& user, std::uint64_t after,
                                                           std::uint64_t through, bool previews) const {
  constexpr std::uint64_t max_window = 1000;
  constexpr std::size_t page = 200;
  detail::notification n;
  n.user = user;
  n.through = through;
  std::map<std::string, bool> muted;
  std::optional<client::message> newest;
  std::uint64_t counted = 0;
  // A window with nothing to tell (receipts, own and muted messages) is followed by the one
  // before it, down to `after`, up to max_windows: a message before a thousand such events
  // must not be let go unpushed.
  constexpr std::uint64_t max_windows = 10;
  std::uint64_t end = through;
  for (std::uint64_t w = 0; !newest && end > after && w < max_windows; ++w) {
    auto start = std::max(after, end > max_window ? end - max_window : 0);
    for (auto from = start; from < end;) {
      auto read = messages.events_after(user, from, page);
      for (auto const& e : read.events) {
        if (e.seq() > end || !e.has_message()) continue;
        auto const& msg = e.message();
        if (msg.from() == user) continue;
        auto [it, fresh] = muted.try_emplace(msg.conversation_id(), false);
        if (fresh) {
          auto c = messages.conversation(user, msg.conversation_id());
          it->second = c && c.value().muted;
        }
        if (it->second) continue;
        ++counted;
        n.seq = e.seq();
        newest = msg;
      }
      if (read.last_seq <= from) break;  // nothing more
      from = read.last_seq;
    }
    end = start;
  }
  n.count = static_cast<std::uint32_t>(std::min<std::uint64_t>(counted, detail::max_count));
  if (!newest) return n;
  n.conversation_id = newest->conversation_id();
  n.message_id = newest->id();
  n.sender_id = newest->from();
  n.sent_at_ms = newest->sent_at_ms();
  if (previews) n.preview = cut_utf8(newest->body().text(), options.preview_bytes);
  if (auto list = messages.conversations(user, 200, std::nullopt))
    for (auto const& c : list.value().conversations) n.unread += c.unread;
  return n;
}

std::optional<detail::post_request> notification_service::impl::request_for(messages::push_target const& t,
                                                                            detail::notification const& n,
                                                                            detail::https_url const& url) const {
  detail::post_request r;
  if (t.kind == "matrix") {
    json::object data;
    boost::system::error_code ec;
    if (auto v = json::parse(t.data_json, ec); !ec && v.is_object()) data = v.as_object();
    bool ids_only = false;
    if (auto const* f = data.if_contains("format")) ids_only = f->is_string() && f->as_string() == "event_id_only";
    json::object device{
        {"app_id", t.app_id}, {"pushkey", t.pushkey}, {"pushkey_ts", t.created_at_ms / 1000}, {"data", data}};
    json::object note{{"event_id", n.message_id},
                      {"room_id", n.conversation_id},
                      {"prio", "high"},
                      {"counts", json::object{{"unread", n.unread}}},
                      {"devices", json::array{device}}};
    if (!ids_only) {
      note["type"] = "m.room.message";
      note["sender"] = n.sender_id;
      note["content"] = json::object{{"petchat", payload_of(n)}};
    }
    r.content_type = "application/json";
    r.body = json::serialize(json::object{{"notification", note}});
    return r;
  }
  // One aes128gcm push holds 3993 bytes of plaintext: a preview that escapes into more is cut further.
  auto plain = json::serialize(payload_of(n));
  for (auto shorter = n; plain.size() > 3800 && !shorter.preview.empty();) {
    shorter.preview = cut_utf8(shorter.preview, shorter.preview.size() / 2);
    plain = json::serialize(payload_of(shorter));
  }
  auto sealed = detail::encrypt_aes128gcm(plain, t.p256dh, t.auth);
  if (!sealed) return std::nullopt;
  auto expires = now_ms() / 1000 + 12 * 3600;
  r.content_type = "application/octet-stream";
  r.body = std::move(*sealed);
  r.headers = {{"Content-Encoding", "aes128gcm"},
               {"TTL", std::to_string(options.ttl_s)},
               {"Urgency", "high"},
               {"Topic", "petchat"},
               {"Authorization", vapid.authorization(url.origin, expires, options.vapid_subject)}};
  return r;
}

// Exponential back-off with jitter: initial * 2^(failures-1), at most retry_max_ms, and a
// random point in its upper half, so that targets failing together do not retry together.
std::chrono::milliseconds notification_service::impl::backoff(std::uint32_t failures) const {
  double d = options.retry_initial_ms;
  for (std::uint32_t i = 1; i < failures && d < options.retry_max_ms; ++i) d *= 2;
  d = std::min<double>(d, options.retry_max_ms);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> half(d / 2, d);
  return std::chrono::milliseconds(static_cast<std::int64_t>(half(rng)));
}

// One push to one target, on the strand; `in_flight` was counted for it. False if what
// followed could not be written (the user is then looked at again a little later).
asio::awaitable<bool> notification_service::impl::send(messages::push_target t, detail::notification n,
                                                       slot_kind kind) {
  auto self = shared_from_this();
  auto logger = log::get("notify");
  auto key = detail::target_key(t);
  // The slot counted for this push is given back once, however this ends (a throw too);
  // of the kind it holds then (the slow timer may demote it).
  struct slot_state {
    slot_kind kind;
    bool held = true;
  };
  struct slot_guard {
    impl* m;
    std::string user;
    std::shared_ptr<slot_state> state;
    void give_back() {
      if (std::exchange(state->held, false)) m->slot_freed(user, state->kind);
    }
    ~slot_guard() { give_back(); }
  } slot{this, t.user, std::make_shared<slot_state>(slot_state{kind, true})};
  // Written before the request goes out, so that after a crash the push that may have
  // arrived is not repeated within the coalescing window (the outcome clears it).
  t.attempt_ms = now_ms();
  auto still_there = co_await messages.push_tried(t);
  if (!still_there || !*still_there) {  // not recorded, or removed since it was decided (logout, revoked)
    slot.give_back();
    if (still_there) forget_retries(key);
    co_return bool(still_there);
  }
  t.attempt_ms = 0;
  std::string why;
  auto url = detail::parse_https_url(t.endpoint, why);
  std::optional<detail::post_request> request;
  if (url) request = request_for(t, n, *url);
  detail::http_answer answer;
  // Named: no temporaries inside a co_await expression (GCC 12, docs/ARCHITECTURE.md).
  detail::timeouts const limits{std::chrono::milliseconds(options.connect_timeout_ms),
                                std::chrono::milliseconds(options.response_timeout_ms)};
  if (request) {
    detail::post_request body = std::move(*request);
    // The lookup, connection and handshake take up to connect and answer timeouts: a
    // logout or a DELETE meanwhile keeps the push (and its preview) from going out.
    body.still_wanted = [this, t, previewed = !n.preview.empty()] {
      auto const& user = t.user;
      auto const& device = t.device_id;
      // Its session's end removes the target a moment later: ended is as good as removed.
      if (!detail::session_live(users.list_sessions(user.substr(0, user.find('@'))), device)) return false;
      // Previews turned off, or do-not-disturb begun, meanwhile: the push is made again
      // (without the text), or not at all.
      auto settings = messages.push_settings_of(user, device);
      if ((previewed && !settings.previews) || detail::in_dnd(settings, now_ms())) return false;
      // Still registered as it was: a pushkey moved to another gateway, or new keys, under
      // the same id, must not get a push made for the old one (its sender, its preview).
      return still_registered(messages, t);
    };
    // Unanswered after slow_after_ms: a prompt slot goes back to prompt pushes (while
    // fewer than max_in_flight are demoted).
    auto const slow_by = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.slow_after_ms);
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer slow_timer(ex, slow_by);
    if (slot.state->kind == slot_kind::prompt)
      slow_timer.async_wait([this, self, state = slot.state](boost::system::error_code ec) {
        if (ec || !state->held || state->kind != slot_kind::prompt) return;
        if (demoted_in_flight >= options.max_in_flight) return;
        state->kind = slot_kind::demoted;
        ++demoted_in_flight;
        wake_waiting(waiting[0]);
      });
    answer = co_await detail::post(tls, policy, *dns, *url, std::move(body), limits);
    slow_timer.cancel();
    // No answer at all, and not at once (a timeout, a connection dropped after a while):
    // the host's next pushes take the slow hosts' slots. Any answer clears that.
    if (answer.status != 0)
      slow_hosts.erase(url->origin);
    else if (!answer.withdrawn && std::chrono::steady_clock::now() >= slow_by)
      mark_slow(url->origin, now_ms());
  } else {
    answer.error = url ? "the subscription's keys are unusable" : "the endpoint is no URL: " + why;
    answer.forbidden = answer.forbidden_for_good = true;
  }
  slot.give_back();
  if (answer.withdrawn) {
    forget_retries(key);
    // Nothing went out: the attempt written above must not hold the push made again
    // (without its preview) for a coalescing window, as a push that may have arrived would.
    auto recorded = co_await messages.push_tried(t);
    co_return bool(recorded);
  }
  auto result = judge(t, answer);
  metrics.push_sent(t.kind, name_of(result));
  auto now = now_ms();
  auto set_retry = [&](std::int64_t at) {
    std::lock_guard lock(retry_mutex);
    retry_at[key] = at;
  };
  auto what = answer.status ? "HTTP " + std::to_string(answer.status) : answer.error;
  if (result == outcome::retry) {
    if (t.failures++ == 0) t.failing_since_ms = now;
    auto wait = backoff(t.failures);
    if (answer.retry_after_s && (answer.status == 429 || answer.status == 503))
      wait = std::max<std::chrono::milliseconds>(wait, std::chrono::seconds(*answer.retry_after_s));
    set_retry(now + wait.count());
    t.next_try_ms = now + wait.count();  // kept too: a restart does not retry at once
    logger->info("push to {} ({} of {}): {}; trying again in {} ms", t.kind, t.device_id, t.user, what, wait.count());
    auto recorded = co_await messages.push_tried(t);  // the failures, for petchatctl and the give-up
    if (recorded && !*recorded) forget_retries(key);  // removed meanwhile: no retry to remember
    co_return bool(recorded);
  }
  if (result == outcome::gone) {
    forget_retries(key);
    // Only the registration the push went to (one registered anew meanwhile stays: checked
    // in the write).
    std::optional<messages::push_target> sent = t;  // (named: no temporaries in a co_await, GCC 12)
    auto removed = co_await messages.remove_push_target(t.user, t.device_id, t.id, std::move(sent));
    if (removed && removed.value()) {
      logger->info("push target {} of {} is gone ({}): removed", t.kind, t.user, what);
      metrics.push_target_removed("gone");
    }
    co_return bool(removed);
  }
  {  // its retry only: the refusals in a row stay counted
    std::lock_guard lock(retry_mutex);
    retry_at.erase(key);
  }
  if (result == outcome::failed) {
    // An answer about a registration replaced since (a pushkey moved to another gateway)
    // counts for nothing.
    if (!still_registered(messages, t)) co_return true;
    // Refused by the endpoint again and again (an endpoint that always answers 400, a lost
    // VAPID key): the target goes, as a gone one does, after max_refusals in a row over at
    // least give_up_s; told once, not per push. Not for an address refused here for a
    // while (a name that resolves privately for a while: a literal address or a port not
    // allowed counts), nor while the node's own VAPID subject is one push services refuse:
    // the operator's fix would find the targets gone.
    bool counted = answer.status != 0 ? !(t.kind != "matrix" && vapid_subject_refused) : answer.forbidden_for_good;
    std::uint32_t refused = 0;
    bool remove = false;
    if (counted) {
      std::lock_guard lock(retry_mutex);
      auto& r = refusals[key];
      if (r.count++ == 0) r.first_ms = now;
      refused = r.count;
      remove = r.count >= max_refusals && now - r.first_ms >= std::int64_t(options.give_up_s) * 1000;
      if (remove) refusals.erase(key);
    } else {  // not counted towards removal; counted for the warning, which is said once
      std::lock_guard lock(retry_mutex);
      refused = ++refusals[key].uncounted;
    }
    if (refused <= 1) logger->warn("push to {} ({} of {}) refused for good: {}", t.kind, t.device_id, t.user, what);
    if (remove) {
      std::optional<messages::push_target> sent = t;
      auto removed = co_await messages.remove_push_target(t.user, t.device_id, t.id, std::move(sent));
      if (removed && removed.value()) {
        logger->warn("push target {} ({} of {}) refused {} times in a row ({}): removed", t.kind, t.device_id, t.user,
                     refused, what);
        metrics.push_target_removed("refused");
      }
      co_return bool(removed);
    }
  } else {
    std::lock_guard lock(retry_mutex);
    refusals.erase(key);
  }
  // Refused or not, a request went out: the coalescing window holds for the next one (an
  // endpoint that always refuses must not get one request per message).
  t.last_push_ms = now;
  t.failures = 0;
  t.failing_since_ms = 0;
  t.next_try_ms = 0;
  t.pushed_through = n.through;
  auto recorded = co_await messages.push_tried(t);
  // Sent but not recorded (the store refuses writes): not sent again before the window.
  if (!recorded && result == outcome::ok) set_retry(now + std::int64_t(options.coalesce_ms));
  co_return bool(recorded);
}

}  // namespace petchat::notify
