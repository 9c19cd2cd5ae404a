// The WebSocket manager: who is connected (user -> device -> live streams), fan-out of
// mailbox news and of frames to a user's streams, presence (online / offline with
// last-seen) and typing relay. It knows streams only through `stream_sink`, so it has no
// WebSocket or Beast code; node/gateway implements the sinks.
//
// Thread-safety: every method may be called from any thread. The registry is guarded by
// one mutex that is never held while a sink does work: sinks only post to their own strand.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "client.pb.h"
#include "node/errors/errors.hpp"

namespace petchat::ws {

// One live connection, as the manager sees it. Implementations post to their own strand
// and return at once.
class stream_sink {
 public:
  virtual ~stream_sink() = default;
  // The user's mailbox has events up to `head`; `event` is the one at `head` if known.
  virtual void on_mailbox(std::uint64_t head, std::shared_ptr<client::event const> event) = 0;
  // A frame that is not a mailbox event (presence, typing).
  virtual void on_frame(client::server_frame frame) = 0;
};

struct presence_info {
  bool online = false;
  std::int64_t last_seen_ms = 0;  // when the last device left (0: never seen)
};

// How presence and typing reach other regions (set by the node when it federates).
struct remote_hooks {
  std::string local_region;
  // A local user went online or offline and has contacts in `region`.
  std::function<void(std::string const& region, std::string const& user, bool online, std::int64_t last_seen_ms)>
      presence_out;
  // A local user is typing to a user of another region.
  std::function<void(std::string const& from, std::string const& to, std::string const& conversation_id, bool active)>
      typing_out;
};

class ws_manager {
 public:
  // `contacts_of(user)` lists the users who may see `user`'s presence.
  ws_manager(std::size_t max_streams_per_user,
             std::function<std::vector<std::string>(std::string const&)> contacts_of);

  // Registers a live stream. too_many_streams if the user is at the limit. When it is the
  // user's first stream, their contacts are told they are online.
  errors::status attach(std::string const& user, std::shared_ptr<stream_sink> const& sink);
  // Forgets a stream; when it was the user's last, contacts are told they are offline.
  void detach(std::string const& user, stream_sink const* sink);

  // Mailbox news for every stream of `user`.
  void notify_mailbox(std::string const& user, std::uint64_t head, std::shared_ptr<client::event const> event);
  // A typing indicator from `from` to `to`, if `to` is online.
  void relay_typing(std::string const& from, std::string const& to, std::string const& conversation_id, bool active);

  presence_info presence(std::string const& user) const;

  // Federation. Before traffic.
  void set_remote_hooks(remote_hooks hooks);
  // A user of another region, as their region reported: believed until `valid_until_ms`,
  // then offline as of the report (a region that stops reporting cannot keep users online).
  void remote_presence(std::string const& user, bool online, std::int64_t last_seen_ms, std::int64_t valid_until_ms);
  // A full report from `region`: its users believed online and not in `online` are offline.
  void remote_presence_full(std::string const& region, std::vector<std::string> const& online, std::int64_t at_ms);
  // Remote users whose report ran out become offline for their contacts here (call
  // every second or so).
  void expire_remote_presence();
  // Local users online now who have contacts in `region`.
  std::vector<std::string> online_with_contacts_in(std::string const& region) const;
  // Presence frames for the contacts of `user` (for a device that just connected).
  std::vector<client::server_frame> presence_of_contacts(std::string const& user) const;

  std::size_t streams() const;

 private:
  void broadcast_presence(std::string const& user, bool online, std::int64_t at_ms);
  std::vector<std::shared_ptr<stream_sink>> sinks_of(std::string const& user) const;

  std::size_t max_streams_;
  std::function<std::vector<std::string>(std::string const&)> contacts_of_;

  mutable std::mutex mutex_;  // guards streams_, last_seen_ and remote_
  std::unordered_map<std::string, std::vector<std::weak_ptr<stream_sink>>> streams_;
  std::unordered_map<std::string, std::int64_t> last_seen_;
  struct remote_state {
    bool online = false;
    std::int64_t last_seen_ms = 0;
    std::int64_t valid_until_ms = 0;
  };
  std::unordered_map<std::string, remote_state> remote_;  // users of other regions (guarded)
  remote_hooks hooks_;
};

}  // namespace petchat::ws
