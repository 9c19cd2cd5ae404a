// petchatctl backup, restore and verify (docs/OPERATIONS.md, "Backup and restore"): the
// files of the node's snapshot copied into a backup directory with a manifest of their
// sizes and BLAKE2b-256 hashes, checked against it, and copied back into a data dir.
#pragma once

#include <boost/json.hpp>

#include <sys/types.h>

#include <string>

namespace petchat::ctl::detail {

// "12.5 MiB".
std::string size_text(std::uint64_t bytes);

// `dir` made (0700), or an existing empty directory; false with `error` otherwise.
bool fresh_dir(std::string const& dir, std::string& error);

// Copies the snapshot the node described (its POST /v1/admin/backup answer) into `dir`
// (new, or empty), hashing as it copies, then writes `dir`/manifest.json last: a backup
// without a manifest is an interrupted one. Progress on stderr when it is a terminal.
// Returns the manifest, or sets `error`.
// Reads only regular files of `node_uid` (the admin socket's owner), never through links.
boost::json::object copy_snapshot(boost::json::object const& snapshot, std::string const& dir, uid_t node_uid,
                                  std::string& error);

// From now on SIGINT, SIGTERM and SIGHUP end a copy (backup, restore) cleanly: the backup's
// snapshot is released, a restore's target emptied.
void stop_copies_on_signals();

// Checks every file of the backup in `dir` against its manifest. Prints one line per
// problem and a summary; returns true when the backup is whole. With `as_json`, prints
// one JSON document instead.
bool verify_backup(std::string const& dir, bool as_json);

// Copies the backup in `dir` into `data_dir` (new, or an empty directory, whose owner the
// files then get when run as root), checking every file's hash as it copies; refuses a
// backup that does not match its manifest. Prints what to do next. Returns true on success.
bool restore_backup(std::string const& dir, std::string const& data_dir, bool as_json);

}  // namespace petchat::ctl::detail
