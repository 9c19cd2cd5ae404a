// The notification service's state, shared by its translation units (notify.cpp: the API
// and the scheduler; deliver.cpp: what a push says and sending it).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <array>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "base/limits/limits.hpp"
#include "node/notify/detail/https.hpp"
#include "node/notify/detail/webpush.hpp"
#include "node/notify/notify.hpp"

namespace petchat::notify {

namespace detail {

// What one push says (docs/PROTOCOL.md, "The notification").
struct notification {
  std::string user;
  std::uint32_t count = 0;  // messages since the device's position, at most max_count
  std::uint64_t unread = 0;
  std::uint64_t through = 0;  // the mailbox seq it covers
  std::uint64_t seq = 0;      // the newest message's
  std::string conversation_id, message_id, sender_id, preview;
  std::int64_t sent_at_ms = 0;
};
inline constexpr std::uint32_t max_count = 100;

// The key of a target in the scheduler's maps.
inline std::string target_key(messages::push_target const& t) {
  return t.user + '\0' + t.device_id + '\0' + t.id;
}

// Whether the device's session is still there (not logged out, revoked or deleted).
bool session_live(std::vector<users::session_info> const& sessions, std::string const& device);

// `user`'s devices with push targets or settings whose session has ended (logged out,
// revoked): those whose records go. Devices with settings only count too, or they would
// stay for ever (a login makes a new device each time).
std::vector<std::string> ended_devices(messages::message_service const& messages, users::user_service const& users,
                                       std::string const& user);

// Where a target's requests go, one spelling per place (push.max_targets_per_host counts
// by it): "https://", the host in lower case without a final dot (an IP address in its
// canonical form, an IPv4-mapped IPv6 one as IPv4, IPv6 in brackets), ":" and the port
// unless 443 (written as a number: leading zeros and an empty port are 443 too).
std::string place_of(https_url const& url);

// Whether `host` is one of push.bulk_hosts (an exact name, or a name under "*.domain";
// case and a final dot aside): a push service for everyone, not counted per host.
bool bulk_host(std::vector<std::string> const& bulk, std::string_view host);

// Whether push services (Apple's) refuse a VAPID subject: one whose host (a mailto:
// address's domain, an https: URL's host) is localhost or under .local or .invalid.
bool subject_refused(std::string_view subject);

// Whether `now_ms` falls in the device's do-not-disturb window.
bool in_dnd(messages::push_settings const& s, std::int64_t now_ms);

}  // namespace detail

struct notification_service::impl : std::enable_shared_from_this<impl> {
  using strand_type = boost::asio::strand<boost::asio::io_context::executor_type>;

  config::push_section options;
  messages::message_service& messages;
  users::user_service& users;
  ws::ws_manager& streams;
  metrics::registry& metrics;
  detail::vapid_key vapid;
  detail::address_policy policy;
  boost::asio::ssl::context tls;
  std::unique_ptr<detail::name_resolver> dns;  // set by start
  // Registrations per user (each may look up a name and writes a target): a minute's
  // push.registrations_per_minute.
  limits::rate_buckets registrations{options.registrations_per_minute, 60'000};

  std::optional<strand_type> strand;  // set by start
  std::unique_ptr<boost::asio::steady_timer> timer;
  std::atomic<bool> stopping{false};

  // The scheduler (strand only): when to look at each user again.
  std::map<std::string, std::int64_t> due_by_user;
  std::set<std::pair<std::int64_t, std::string>> due;
  std::int64_t timer_at = 0;  // when the loop wakes (0: not waiting)
  // Targets with a request or a write in flight (strand only).
  std::unordered_set<std::string> busy;
  std::atomic<std::size_t> in_flight{0};
  std::unordered_map<std::string, std::size_t> in_flight_by_user;
  // Which slot a push holds. `prompt`: one of max_in_flight. `demoted`: a prompt push
  // still unanswered after slow_after_ms gives its slot back and holds one of at most
  // max_in_flight of these. `slow_host`: a push to a host whose last request got no answer
  // at all (slow_hosts) holds one of slow_slots(). Counted of in_flight (strand only writes).
  enum class slot_kind { prompt, demoted, slow_host };
  std::atomic<std::size_t> demoted_in_flight{0};
  std::atomic<std::size_t> slow_host_in_flight{0};
  std::size_t prompt_in_flight() const { return in_flight - demoted_in_flight - slow_host_in_flight; }
  // Origins (host and port: a port of a push service's host that drops packets, which
  // anyone may name, must not slow that service for everyone) whose request got no answer
  // (timed out or failed after slow_after_ms): until when they count as such. Any answer
  // from the origin clears it.
  std::unordered_map<std::string, std::int64_t> slow_hosts;
  static constexpr std::int64_t slow_for_ms = 600'000;
  static constexpr std::size_t max_slow_hosts = 10'000;
  std::size_t slow_slots() const { return std::max<std::size_t>(1, options.max_in_flight / 8); }
  bool host_slow(std::string const& host, std::int64_t now);
  void mark_slow(std::string const& host, std::int64_t now);
  // Users with a push due while every slot of its kind was taken: looked at again as
  // such a slot frees up (prompt: waiting[0], slow_host: waiting[1]).
  struct waiting_list {
    std::deque<std::string> users;
    std::unordered_set<std::string> listed;
  };
  std::array<waiting_list, 2> waiting;

  // Targets waiting to try again: when (any thread reads it for the admin API).
  mutable std::mutex retry_mutex;
  std::unordered_map<std::string, std::int64_t> retry_at;  // guarded by retry_mutex
  // Permanent refusals in a row per target, since the node started (guarded by
  // retry_mutex, forgotten with its retries): at max_refusals, the first give_up_s ago or
  // more, the target is removed.
  static constexpr std::uint32_t max_refusals = 10;
  struct refusal_run {
    std::uint32_t count = 0;
    std::int64_t first_ms = 0;
    std::uint32_t uncounted = 0;  // refusals of this node's own (an address it may not reach)
  };
  std::unordered_map<std::string, refusal_run> refusals;
  bool vapid_subject_refused = false;  // push services refuse the subject (set by start)

  impl(config::push_section const& o, std::filesystem::path const& data_dir, messages::message_service& m,
       users::user_service& u, ws::ws_manager& s, metrics::registry& r);

  // notify.cpp, on the strand.
  void schedule(std::string const& user, std::int64_t at_ms);
  boost::asio::awaitable<void> run();
  void process(std::string const& user);
  bool sweep();
  static constexpr std::size_t sweep_page = 10000;
  std::string sweep_after;  // the user a sweep's next page starts after (strand only)
  struct outbox_summary {
    std::size_t users = 0;
    std::int64_t oldest_ms = 0;
    std::int64_t taken_ms = 0;
  };
  static constexpr std::size_t outbox_counted = 100000;
  outbox_summary outbox_figures();
  std::mutex figures_mutex;  // guards figures
  outbox_summary figures;
  void end_sessions(std::string const& user);
  std::int64_t next_try(std::string const& key) const;
  // Runs `op` (a write) for target `key` on the strand, marked busy until it is done;
  // then looks at `user` again.
  void spawn_for(std::string const& key, std::string const& user, boost::asio::awaitable<bool> op);
  boost::asio::awaitable<bool> settle(std::string user, std::uint64_t last_seq);
  boost::asio::awaitable<bool> end_device(std::string user, std::string device);
  boost::asio::awaitable<bool> let_go(messages::push_target t, std::uint64_t through, char const* result);
  void forget_retries(std::string const& prefix);
  // A push request to `user`'s target is done (strand only): its slot is free again.
  void slot_freed(std::string const& user, slot_kind kind);
  // A few users waiting for a slot of `list` look again (all when nothing is in flight).
  void wake_waiting(waiting_list& list);

  // deliver.cpp.
  detail::notification summarize(std::string const& user, std::uint64_t after, std::uint64_t through,
                                 bool previews) const;
  boost::asio::awaitable<bool> send(messages::push_target t, detail::notification n, slot_kind kind);
  std::optional<detail::post_request> request_for(messages::push_target const& t, detail::notification const& n,
                                                  detail::https_url const& url) const;
  std::chrono::milliseconds backoff(std::uint32_t failures) const;
};

}  // namespace petchat::notify
