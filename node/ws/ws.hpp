// The WebSocket manager: which live streams each user has open (user -> streams), fan-out
// of mailbox news and of frames to a user's streams, presence (online / offline with
// last-seen) and the typing relay, for local users and, through remote_hooks, other
// regions. It knows streams only through `stream_sink`, so it has no WebSocket or Beast
// code; node/gateway implements the sinks (one live_stream per stream).
//
// Threads: everything but the constructor and set_remote_hooks may be called concurrently
// from any thread. In petchat-node the callers are the I/O threads (each live stream on
// its strand, the user API, the expiry sweep), the federation applier thread (mailbox news
// from inbound envelopes), NATS.c's live-subscription thread (remote presence and typing)
// and the federation manager thread (online_with_contacts_in). One mutex guards the
// registry; it is never held while a sink, `contacts_of` or a hook runs, so they may call
// back into the manager. Nothing here waits for another thread beyond that mutex, but a
// presence change calls `contacts_of` (a message-store read) on the calling thread.
//
// Errors: only attach fails (too_many_streams). An exception from `contacts_of`, a sink or
// a hook propagates to the caller, after any registry change the call made.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/limits/limits.hpp"
#include "client.pb.h"
#include "node/errors/errors.hpp"

namespace petchat::ws {

namespace detail {
// Builds something once, for callers on any thread. Unlike std::call_once (glibc's
// pthread_once ends every first call with a futex wake-up system call, waiters or not,
// and a live stream builds a frame per event), the first build costs an uncontended
// mutex and every later call one atomic load. If the build throws, the next call tries again.
class build_once {
 public:
  template <typename Build>
  void operator()(Build&& build) {
    if (done_.load(std::memory_order_acquire)) return;
    std::lock_guard lock(mutex_);
    if (done_.load(std::memory_order_relaxed)) return;
    build();
    done_.store(true, std::memory_order_release);
  }

 private:
  std::atomic<bool> done_{false};
  std::mutex mutex_;
};
}  // namespace detail

// A committed mailbox event on its way to every live stream of its user. Each stream
// encodes it into a frame of its encoding; the first to need an encoding builds that
// frame and every other stream of the user queues the same bytes (no copy of the event
// or of the frame per stream). Immutable once built; safe to share between threads.
//
// A group message goes to every member's mailbox at a seq of its own: the members' events
// share its content (shared_content), encoded once per encoding, and each member's frame
// is only its seq written around those bytes.
class shared_content {
 public:
  explicit shared_content(client::message m) : message_(std::move(m)) {}
  client::message const& message() const { return message_; }
  // The message's part of an event in encoding `which`: `make(message())` the first time.
  template <typename Make>
  std::string const& part(std::size_t which, Make&& make) const {
    built_[which]([&] { parts_[which] = make(message_); });
    return parts_[which];
  }

 private:
  client::message message_;
  mutable detail::build_once built_[2];
  mutable std::string parts_[2];
};

class shared_event {
 public:
  static constexpr std::size_t encodings = 2;  // the live stream's two subprotocols
  explicit shared_event(client::event e) : event_(std::move(e)) {}
  // An event whose kind is the message in `content` (event() holds only the seq).
  shared_event(std::uint64_t seq, std::shared_ptr<shared_content const> content) : content_(std::move(content)) {
    event_.set_seq(seq);
  }
  client::event const& event() const { return event_; }
  shared_content const* content() const { return content_.get(); }
  // The frame in encoding `which` (< encodings): `make(*this)` the first time.
  template <typename Make>
  std::shared_ptr<std::string const> frame(std::size_t which, Make&& make) const {
    built_[which]([&] { frames_[which] = std::make_shared<std::string const>(make(*this)); });
    return frames_[which];
  }

 private:
  client::event event_;
  std::shared_ptr<shared_content const> content_;
  mutable detail::build_once built_[encodings];
  mutable std::shared_ptr<std::string const> frames_[encodings];
};

// Mailbox events for one user: (seq, event) in seq order.
using mailbox_events = std::vector<std::pair<std::uint64_t, std::shared_ptr<shared_event const>>>;

// One live stream (one WebSocket connection), as the manager sees it. Its calls come from
// whichever thread called the manager (any I/O thread, the federation applier, NATS.c's
// live-subscription thread), possibly concurrently, never under the manager's mutex. They
// must not block: implementations post to their own strand and return at once.
class stream_sink {
 public:
  virtual ~stream_sink() = default;
  // The user's mailbox has events up to `head`; `event` is the one at `head`, or null when
  // the stream should read it from the store. Calls race (each commit reports on its own
  // thread): heads may arrive out of order or twice, so keep the highest.
  virtual void on_mailbox(std::uint64_t head, std::shared_ptr<shared_event const> event) = 0;
  // Several of the user's events at once (their seqs in order), as on_mailbox each.
  virtual void on_mailbox_events(std::shared_ptr<mailbox_events const> const& events) {
    for (auto const& [head, event] : *events) on_mailbox(head, event);
  }
  // A frame that is not a mailbox event (presence, typing).
  virtual void on_frame(client::server_frame frame) = 0;
  // The device the stream belongs to (for `petchatctl online`); constant once attached.
  virtual std::string device_id() const { return {}; }
  // An admin ends the stream (`petchatctl kick`); the device may connect again at once.
  virtual void end_by_admin() {}
  // The same device connected again while its user had as many streams as they may: this
  // older one ends (its connection may have died unnoticed, as a phone's does that changes
  // networks), not the new one.
  virtual void end_superseded() {}
  // The user's sessions may have ended (logout, revocation, ...): check this stream's now.
  virtual void recheck_session() {}
};

struct presence_info {
  bool online = false;
  // When the user's last live stream ended; for another region's user, the reported time
  // or when the report ran out (0 while online). A local user online again keeps the time
  // of the previous end. 0: never seen.
  std::int64_t last_seen_ms = 0;
};

// How presence and typing reach other regions (set by the node when it federates). Both
// hooks run on the thread that called the manager, without its mutex; they must not block
// (petchat-node's hooks call federation::link::send_ephemeral).
struct remote_hooks {
  // This region: tells local users from remote ones (remote_presence needs it).
  std::string local_region;
  // A local user's first live stream opened (online, last_seen_ms 0) or last one ended:
  // called once per other region holding at least one of their contacts, from attach or
  // detach (an I/O thread, the stream's strand).
  std::function<void(std::string const& region, std::string const& user, bool online, std::int64_t last_seen_ms)>
      presence_out;
  // A local user is typing to a user of another region: called from relay_typing instead
  // of any local delivery (the I/O thread of the typing stream). The other region checks
  // whether the recipient is online.
  std::function<void(std::string const& from, std::string const& to, std::string const& conversation_id, bool active)>
      typing_out;
};

// Who receives committed mailbox events. The message service calls it after every commit
// that appended to a mailbox (messages.hpp, set_listener, says on which thread); the
// WebSocket manager is the one implementation in petchat-node.
class mailbox_listener {
 public:
  virtual ~mailbox_listener() = default;
  // `user`'s mailbox has events up to `head`; `event` is the one at `head`, or null when
  // the receiver should read it from the store. Must not block: hand the news on.
  virtual void notify_mailbox(std::string const& user, std::uint64_t head,
                              std::shared_ptr<shared_event const> event) = 0;
  // Several events of `user`'s mailbox at once (the events of one commit), in seq order.
  virtual void notify_mailbox_events(std::string const& user, std::shared_ptr<mailbox_events const> const& events) {
    for (auto const& [head, event] : *events) notify_mailbox(user, head, event);
  }
  // A committed write made `a` and `b` see each other's presence (the second of them
  // wrote to the other): each is shown the other's presence now, not at the next change.
  virtual void presence_shared(std::string const& a, std::string const& b) = 0;
};

class ws_manager final : public mailbox_listener {
 public:
  // Live streams a user may open at once (then one a second): see attach. At least 60, and
  // twice max_streams_per_user (a node configured for many streams per user connects them).
  std::size_t connect_burst() const { return connects_.burst(); }

  // `contacts_of(user)` lists the users who may see `user`'s presence (petchat-node:
  // message_service::contacts, a store scan). It is called on the manager's callers'
  // threads, concurrently, without the manager's mutex. At most `max_streams_per_user` live
  // streams per user.
  ws_manager(std::size_t max_streams_per_user, std::function<std::vector<std::string>(std::string const&)> contacts_of);

  // Registers a live stream of `user` (dead entries are pruned first). Errors:
  // too_many_streams (the user has max_streams_per_user already; nothing changes),
  // rate_limited (more than connect_burst() attaches of the user at once, then more than one
  // a second; with the seconds to wait). When it
  // is the user's first stream, their contacts' streams get an ONLINE frame and
  // presence_out runs, on the calling thread. Called once a live stream's token checks out
  // (node/gateway, on the stream's strand).
  errors::status attach(std::string const& user, std::shared_ptr<stream_sink> const& sink);
  // Forgets a stream (`sink` is only compared; dead entries go too); an unknown user: no
  // effect. When the user has no stream left, last-seen becomes now and contacts learn they
  // are offline (frames, presence_out). No errors. Called when an authenticated live
  // stream ends (on its strand).
  void detach(std::string const& user, stream_sink const* sink);

  // Mailbox news for every live stream of `user` (on_mailbox, on the calling thread). No
  // errors. Called by the message service's mailbox listener: on the I/O thread whose
  // coroutine committed a local change, and on the federation applier thread.
  void notify_mailbox(std::string const& user, std::uint64_t head, std::shared_ptr<shared_event const> event) override;
  void notify_mailbox_events(std::string const& user, std::shared_ptr<mailbox_events const> const& events) override;
  // A typing indicator from `from` to `to` (full user ids). A local `from` typing to another
  // region's user goes to typing_out (if set); otherwise a typing frame goes to each live
  // stream of `to` (none: dropped). No permission check: callers check that they share a
  // conversation (message_service::typing_between). No errors. Called from a live stream's
  // strand and from the federation live handler (NATS.c's live-subscription thread).
  void relay_typing(std::string const& from, std::string const& to, std::string const& conversation_id, bool active);
  // A local user typing in a group: a frame to each local peer's streams, and one typing
  // body per other region holding peers (to "*@<region>": that region tells its own
  // members), not one per remote peer. `peers`: the group's other members (the caller
  // checked that `from` is one).
  void relay_group_typing(std::string const& from, std::vector<std::string> const& peers, std::string const& group,
                          bool active);

  // A user's presence: another region's report while one is held (see remote_presence),
  // else online while the user has a live stream here. Unknown users are offline, never
  // seen. No errors; does not check who may see it (the caller checks shares_presence).
  // Any thread (the user API's GET /v1/presence, on an I/O thread).
  presence_info presence(std::string const& user) const;
  // Each of `a` and `b` with live streams here gets a presence frame about the other (a
  // user of another region as its region last reported). No errors; the caller's thread.
  void presence_shared(std::string const& a, std::string const& b) override;

  // Federation. Once, before traffic and before any other call (the hooks are read without
  // the mutex). petchat-node sets them at start-up on the main thread.
  void set_remote_hooks(remote_hooks hooks);
  // A user of another region, as their region reported: believed until `valid_until_ms`,
  // then offline as of that time (a region that stops reporting cannot keep users online).
  // Ids that do not parse or are of this region are ignored; beyond 200000 remote users
  // the offline ones are forgotten, and if all are online the report is dropped. Only a
  // change of online state sends frames to the user's contacts' live streams, and of one
  // region's changes at most 1,000 a second (20,000 at once): beyond, the state changes at
  // once and the frames follow from expire_remote_presence as the rate allows. No errors.
  // Called from the federation live handler (NATS.c's live-subscription thread).
  // `stamp_ms`: when the origin saw this state, by its clock (0: unknown, taken as it comes);
  // a report older than the one held (a full report read before a change told since, and
  // sent after it) is ignored, unless it is more than a minute older (the origin's clock
  // was set back).
  void remote_presence(std::string const& user, bool online, std::int64_t last_seen_ms, std::int64_t valid_until_ms,
                       std::int64_t stamp_ms = 0);
  // A full report from `region`, read there at `stamp_ms` (as above): its users believed
  // online and not in `online` are offline as of `at_ms` (see remote_presence), unless
  // what is held of them is newer than the report. No errors. Same thread as
  // remote_presence.
  void remote_presence_full(std::string const& region, std::vector<std::string> const& online, std::int64_t at_ms,
                            std::int64_t stamp_ms = 0);
  // Remote users whose report ran out become offline for their contacts here (OFFLINE
  // frames, last seen when the report ran out); changes not told yet are told now, as
  // their region's rate allows. Call every second or so: petchat-node does, on an I/O
  // thread, on a timer of its own (node/app/upkeep.hpp). No errors.
  void expire_remote_presence();
  // Local users with a live stream now who have at least one contact in `region`. Calls
  // contacts_of once per user with a live stream (a store scan each): called by the
  // federation link's presence refresh on its manager thread, not on an I/O thread. No
  // errors.
  std::vector<std::string> online_with_contacts_in(std::string const& region) const;
  // One presence frame per contact of `user` (ONLINE, or OFFLINE with last seen), for a
  // live stream that just authenticated (its strand). No errors.
  std::vector<client::server_frame> presence_of_contacts(std::string const& user) const;

  // Live streams attached and not detached (the petchat_ws_streams gauge, read at each
  // metrics scrape on an I/O thread). Any thread.
  std::size_t streams() const;
  // Every attached live stream: its user and device, by user. Any thread.
  struct stream_info {
    std::string user, device_id;
  };
  std::vector<stream_info> online() const;
  // Ends every live stream of the device (stream_sink::end_by_admin); how many. Any thread.
  std::size_t kick(std::string const& device_id);
  // Whether `user` may send another typing notice now: 5 a second and 10 at once, for all
  // their streams together (a group's notice is a frame for each online member). Any thread.
  bool take_typing(std::string const& user);
  // Sessions of `user` may have ended: each of their streams checks its own at once
  // (stream_sink::recheck_session), not at its next periodic check. Any thread.
  void sessions_changed(std::string const& user);

 private:
  void publish_presence(std::string const& user);
  void publish_presence_safely(std::string const& user);  // errors logged, not thrown
  void broadcast_presence(std::string const& user, bool online, std::int64_t at_ms);
  std::vector<std::shared_ptr<stream_sink>> sinks_of(std::string const& user) const;

  std::size_t max_streams_;
  std::function<std::vector<std::string>(std::string const&)> contacts_of_;

  // Lock order: a presence_order_ mutex, then mutex_; mutex_ is never held while calling out.
  // One local presence broadcast at a time per user (publish_presence); users are spread
  // over the stripes, so that one user's broadcast to many contacts holds up few others.
  std::array<std::mutex, 64> presence_order_;
  mutable std::mutex mutex_;  // guards streams_, last_seen_ and remote_
  std::unordered_map<std::string, std::vector<std::weak_ptr<stream_sink>>> streams_;
  std::unordered_map<std::string, std::int64_t> last_seen_;
  struct remote_state {
    bool online = false;
    std::int64_t last_seen_ms = 0;
    std::int64_t valid_until_ms = 0;
    bool told_online = false;   // what contacts' streams were last told (frames may lag behind)
    std::int64_t stamp_ms = 0;  // when the origin saw the state held (its clock; 0: unknown)
  };
  // Whether a report stamped `stamp_ms` is older than what `r` holds (see remote_presence).
  static bool outdated(remote_state const& r, std::int64_t stamp_ms) {
    return stamp_ms > 0 && stamp_ms < r.stamp_ms && r.stamp_ms - stamp_ms <= 60'000;
  }
  std::unordered_map<std::string, remote_state> remote_;  // users of other regions (guarded)
  std::map<std::string, std::size_t> remote_per_region_;  // remote_'s users by region (guarded)
  std::int64_t remote_swept_ms_ = 0;       // when a full remote_ last had its offline users forgotten (guarded)
  limits::rate_buckets connects_;          // per user: connect_burst() at once, then one a second
  limits::rate_buckets typing_{10, 2000};  // per user: 5 a second, 10 at once
  limits::rate_buckets remote_told_{20000, 20000};  // per region: remote changes told, 1,000 a second
  remote_hooks hooks_;
};

}  // namespace petchat::ws
