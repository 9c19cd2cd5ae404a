// The region's identity: an Ed25519 key pair created on first start under the data dir
// (`region.key`, mode 0600; `region.pub`, hex) and reused afterwards. Federation signs
// envelopes with it; the access-token key is derived from it, so rotating the region key
// also invalidates every outstanding access token.
#pragma once

#include <sodium.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

namespace petchat::identity {

// A data dir (or region key) this node must not use as it is: another region's data, a
// newer format, an unfinished restore, unsafe ownership or modes. Trying again does not
// help until an operator acts, so petchat-node exits with status 2 (the unit does not
// restart it; docs/OPERATIONS.md).
struct refusal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct region_identity {
  std::array<std::uint8_t, crypto_sign_PUBLICKEYBYTES> public_key{};
  std::array<std::uint8_t, crypto_sign_SECRETKEYBYTES> secret_key{};
  // HMAC-SHA-256 key for access tokens, derived from the secret key.
  std::array<std::uint8_t, crypto_auth_hmacsha256_KEYBYTES> token_key{};
  bool created = false;  // true if this start created the key pair

  std::string public_key_hex() const;
};

// Loads `<data_dir>/region.key`, or creates it (and region.pub) if absent. Throws
// std::runtime_error if the file is unreadable, has the wrong size, or is readable by
// group or others (a leaked region key lets anyone speak for the region).
region_identity load_or_create(std::filesystem::path const& data_dir);

// Makes sure `data_dir` is a private directory of this user: creates it (mode 0700) if
// it does not exist; refuses (std::runtime_error naming the directory) one that is not a
// directory, belongs to another user, or is writable by group or others (e.g. /tmp).
// An existing directory's mode is never changed.
void prepare_data_dir(std::filesystem::path const& data_dir);

// What a data dir says about itself, in `<data_dir>/datadir.json`: the region its accounts
// and messages belong to, the layout (format) of its stores, and when it was made.
struct data_dir_record {
  std::string region;
  int format = 0;
  std::int64_t created_at_ms = 0;
  int upgraded_from = -1;  // the format this start migrated from, or -1
};

// The store layout this build reads and writes. Format 0 is a data dir from before
// datadir.json (only `<data_dir>/region`); format 1 adds the record itself; format 2 adds
// group messages' delivered_batch records and keeps the last acknowledging device's
// position in the user's delivered mark (docs/ARCHITECTURE.md, the message store), which a
// build of format 1 would not read or reclaim; format 3 stores a member's events of the
// group messages of one commit as one mailbox entry (a run), whose later events a build of
// format 2 would not see; format 4 stores a group change told to several members once,
// their mailbox entries pointing to it, which a build of format 3 would skip; format 5
// indexes the references to an asset by conversation as well (k/ keys), which a build of
// format 4 would not keep (the message service writes the index of an older store at its
// first start); format 6 indexes push targets by what they push to (k/ keys in `push`),
// written likewise; format 7 indexes the references to an asset that wait for their
// region's proof by conversation (V/ keys), written likewise; format 8 indexes push
// targets by the place they push to (p/ keys in `push`), written likewise. A change to a
// store's key layout raises it and adds a step to the migration in data_dir.cpp.
inline constexpr int data_format = 8;

// Binds `data_dir` to `region` and checks that this build understands its format. The
// first start writes datadir.json (and `<data_dir>/region`, which nodes before 0.2 check),
// fsync'd; a data dir of an older format is migrated first. Throws std::runtime_error
// saying what to do when the data dir belongs to another region (every stored user id and
// message carries the region: starting europe's data as `local` would silently turn
// alice@europe into alice@local), has a newer format than this build knows, or its record
// is damaged. A directory made before either file existed is bound to the region it is
// started with next.
data_dir_record claim_data_dir(std::filesystem::path const& data_dir, std::string const& region);

// The record without changing anything (petchatctl verify and restore read it from
// backups); nullopt when the directory has neither datadir.json nor `region`. Throws
// std::runtime_error if datadir.json is damaged.
std::optional<data_dir_record> read_data_dir_record(std::filesystem::path const& data_dir);

// Left in a data dir by `petchatctl restore` (docs/OPERATIONS.md, "Restoring a federated
// region"): the store went back in time, and the lane seqs it hands out next were used
// before, for envelopes other regions already applied. The node's first federated start on
// it moves its outbound lanes to a new epoch (so nothing new is taken for a replay), then
// removes the marker (forget_restored_marker, fsync'd).
inline constexpr char restored_marker[] = "RESTORED-FROM-BACKUP";
bool restored_from_backup(std::filesystem::path const& data_dir);
void forget_restored_marker(std::filesystem::path const& data_dir);
// Leaves restored_marker and restored_mailboxes_marker (durably) before a salvage of the
// message store: it goes back in time as a restored one does, its lanes must move to a new
// epoch just the same, and its mailbox heads jump at every start until one has done it (a
// salvage stopped after the damaged log was dropped is not a damaged store any more).
void mark_restored(std::filesystem::path const& data_dir);

// Left beside restored_marker by `petchatctl restore`: the mailboxes went back in time
// too, and devices hold seqs past their heads. The node's first start on it, standalone or
// not, moves every mailbox head ahead as a salvage does (so no seq is handed out twice),
// then removes it (forget_restored_mailboxes, fsync'd). It holds the backup's time (RFC
// 3339, as its manifest's made_at), which sets how far the heads jump; empty after a
// salvage, or from a petchatctl of an earlier version.
inline constexpr char restored_mailboxes_marker[] = "RESTORED-MAILBOXES";
bool restored_mailboxes(std::filesystem::path const& data_dir);
// The time the marker holds, in ms; 0 if none (or not a time).
std::int64_t restored_backup_time_ms(std::filesystem::path const& data_dir);
void forget_restored_mailboxes(std::filesystem::path const& data_dir);

// Takes an exclusive lock on `<data_dir>/node.lock` for the life of the process, so two
// nodes never share one data dir. Throws std::runtime_error if another process holds it.
void lock_data_dir(std::filesystem::path const& data_dir);

}  // namespace petchat::identity
