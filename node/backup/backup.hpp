// Online backups (petchatctl backup): the node makes a consistent snapshot of its data dir
// inside it (`<data_dir>/backups/<id>`), petchatctl copies it out, checksums every file
// into the backup's manifest, and tells the node to release it. Making the snapshot costs
// little space and time: the message store's SST files and the assets' blobs are hard
// links to immutable files, the account store is a compacted copy.
//
// Consistency across the stores: the message store is checkpointed first, then the
// accounts copied, then the asset blobs linked. Every account a message in the snapshot
// names was created before the checkpoint, so it is in the copy (unless deleted since,
// which the backup then also shows); every blob a message references was complete before
// its message was accepted, and the asset collector removes none from before the
// checkpoint until the links are made (messages::blob_removal_gate), so it is linked.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace petchat::users {
class user_service;
}
namespace petchat::messages {
class message_service;
}

namespace petchat::backup {

struct file {
  std::string path;  // relative to the snapshot's directory, '/'-separated
  std::uint64_t size = 0;
};

struct snapshot {
  std::string id;  // "20261203T041502Z-1a2b": when it was made, and a random tag
  std::filesystem::path dir;
  std::int64_t made_at_ms = 0;
  std::vector<file> files;  // sorted by path
  std::uint64_t bytes = 0;
  std::string requester;  // the token its requester gave (petchatctl: a random one), or empty
};

// A backup is already open (another petchatctl backup is copying, or one was interrupted).
struct busy_error : std::runtime_error {
  busy_error(std::string what, std::int64_t since_ms) : std::runtime_error(std::move(what)), since_ms(since_ms) {}
  std::int64_t since_ms;
};

class snapshots {
 public:
  // Removes what an earlier run left in `<data_dir>/backups` (a snapshot only lives as long
  // as the node that made it).
  snapshots(std::filesystem::path const& data_dir, users::user_service& users, messages::message_service& messages);

  // Makes the snapshot: one at a time (busy_error while one is open; one open for more than
  // six hours is taken for an interrupted backup's and released). Blocking (seconds
  // for a big store: the message store flushes): call off the I/O threads. Throws
  // std::runtime_error (and removes what it made) on a store or file error.
  // `requester`: a token the requester may release it by before it has learnt its id.
  snapshot take(std::string requester = {});

  // Removes the open snapshot with `id` (or any, if `id` is empty); false if none matches.
  // With no id while one is being made (its requester gave up waiting, or was
  // interrupted): that one is removed as soon as it is made, and its take() throws.
  bool release(std::string const& id);
  // The same for the snapshot asked for with `requester` (not empty) only, open or being
  // made: a requester that gave up waiting lets go of its own, never of another backup's.
  bool release_requested(std::string const& requester);

  std::optional<snapshot> open() const;

 private:
  std::filesystem::path data_dir_, root_;
  users::user_service& users_;
  messages::message_service& messages_;
  mutable std::mutex mutex_;
  std::optional<snapshot> open_;
  bool making_ = false;
  std::string making_requester_;  // the requester of the one being made
  // Requesters that let go before their snapshot was begun, and when (forgotten after 15
  // minutes, at most 64 kept; a take() with one makes nothing and forgets it).
  std::vector<std::pair<std::string, std::int64_t>> gave_up_;
  bool abandoned_ = false;  // released while being made
};

}  // namespace petchat::backup
