// petchat's RocksDB engine for the message service: one database with a fixed set of
// column families, consistent reads from any thread, and a commit pipeline through which
// every write goes.
//
// Writes are group-committed like LMDB's (store/lmdb/lmdb.hpp): one writer thread takes
// every queued request, runs each against a shared write batch (reads see the writes of the
// requests before it in the batch, through an in-memory overlay) inside a save point (so a
// request that fails or declines is undone alone), writes the batch with one WAL fsync, and
// only then reports each request's outcome.
//
// Because every write goes through that one thread, it can also keep the committed values
// of small, hot column families (mailbox heads, positions, conversations) in memory: a
// request's reads of them cost a hash lookup instead of a RocksDB Get.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "store/commits.hpp"
#include "store/detail/request_queue.hpp"
#include "store/write_outcome.hpp"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace petchat::store {

// The message service's column families. Key layouts are documented where they are
// built (node/messages).
enum class cf : std::uint8_t {
  mailbox,        // user id NUL seq(8 BE) -> stored_event
  messages,       // message id(16) -> stored_message
  history,        // conversation id NUL message id(16) -> ""
  idempotency,    // sender id NUL client id -> accepted_record
  state,          // small counters and positions (mailbox heads, device acks, read marks)
  expiry,         // expires_at_ms(8 BE) message id(16) -> ""
  conversations,  // conversation id -> conversation_record; "u/" user NUL peer -> conversation id
  outbox,         // federation: destination region NUL lane seq(8 BE) -> federation body
  receipts,       // group messages: message id(16) [NUL user] -> receipt counts [a member's receipt]
  assets,         // assets, their uploaders, references and uploads (node/messages/detail/assets.hpp)
  push,           // push targets, settings and the push outbox (node/messages/push.cpp)
  count_
};

class rocks_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
struct group_commit;
}

// The view a write request gets: reads see the database plus the batch so far.
class rocks_batch {
 public:
  explicit rocks_batch(detail::group_commit& state) : state_(state) {}
  std::optional<std::string> get(cf family, std::string_view key) const;
  void put(cf family, std::string_view key, std::string_view value);
  void erase(cf family, std::string_view key);
  // A put whose key many requests of a batch rewrite (a group message's receipt counts, at
  // each member's acknowledgement): reads see it at once, but only the batch's last value
  // of the key is written, once, when the batch commits.
  void put_last(cf family, std::string_view key, std::string value);
  // Which batch this is: the same for every request of one group commit, another for the
  // next (values written with an earlier one are committed, or gone with a failed write).
  std::uint64_t generation() const;

  // For families the writer keeps in memory (rocks_options::cached) only, and for keys
  // only these two calls touch: values the writer remembers without writing them, because
  // the caller can work them out again from what is written (a mailbox's head from its
  // last entry). `remember` sets the value (undone with the request, kept in memory once
  // the batch commits); `recall` returns it, or, if the writer has none (after a restart,
  // a failed commit, or the cache starting over), what `load` works out from the
  // committed data, which it then keeps.
  void remember(cf family, std::string_view key, std::string value);
  std::string recall(cf family, std::string_view key, std::function<std::string()> const& load);

  // Runs `part` of the request so that, if it throws, what it wrote is undone and the rest
  // of the request stays: returns what it threw (an unreadable record, say), or nothing.
  // One damaged record then costs its own part, not a whole write of many.
  std::optional<std::string> attempt(std::function<void()> const& part);

 private:
  detail::group_commit& state_;
};

struct rocks_options {
  std::filesystem::path dir;     // created if missing (mode 0700)
  std::size_t max_batch = 1024;  // requests per group commit
  bool sync = true;              // fsync the WAL before reporting `committed`
  // Families whose committed values the writer keeps in memory once read or written, up to
  // `cache_entries` values (then it starts over). Only for families that are small per
  // key and read by writes again and again.
  std::vector<cf> cached{};
  std::size_t cache_entries = 200000;
  // Families whose recent values the writer keeps, once read or written, up to
  // `recent_bytes` (keys, values and bookkeeping; then it starts over), values of up to
  // `recent_value_max` bytes only: a value written by one request and read by a later one,
  // such as a mailbox entry that the acknowledgement after its send reads, or a group
  // message that each member's acknowledgement reads. Not for a family also `cached`.
  std::vector<cf> recent{};
  std::size_t recent_bytes = 8 << 20;
  std::size_t recent_value_max = 4096;
  // Families whose point reads mostly look for keys that are not there (a group member's
  // receipt record, which exists only after a read): Bloom filters in their memtables and
  // files let such a miss skip them instead of searching each.
  std::vector<cf> filtered{};
  // Families whose point reads mostly miss but whose keys are written at a rate that
  // memtable filters would slow (each send's idempotency record): Bloom filters in their
  // table files only.
  std::vector<cf> table_filtered{};
  // Families with keys that are rewritten again and again (a user's delivered mark, at
  // each acknowledgement): a memtable insert of a key without a NUL starts where its
  // previous version went, instead of where the family's last such key went.
  std::vector<cf> rewritten{};
  // Where RocksDB's own log goes (severity: 0 debug .. 5 header, RocksDB's InfoLogLevel),
  // instead of LOG files in the store's directory: one file fewer to fill a full disk,
  // and RocksDB's writer of that file is the one that aborted the process on ENOSPC.
  // Empty: warnings and errors go to stderr.
  std::function<void(int severity, std::string const& line)> log{};
  // Opening with a damaged write-ahead log: by default the open fails (damage_error), as
  // replaying up to the damage would silently drop acknowledged writes. `salvage` opens
  // anyway, keeping what precedes the first damaged record (RocksDB's point-in-time
  // recovery); the caller must then make sure nothing handed out before is reused.
  bool salvage = false;
};

// The store's files are damaged (e.g. its write-ahead log): it was not opened.
struct damage_error : rocks_error {
  using rocks_error::rocks_error;
};

class rocks_db {
 public:
  // Runs on the writer thread; true keeps its changes, false undoes them. Must not block.
  using write_fn = std::function<bool(rocks_batch&)>;
  // Called on the writer thread once the request's fate is final; must not block.
  using done_fn = std::function<void(write_outcome)>;
  using visit_fn = std::function<bool(std::string_view key, std::string_view value)>;

  // Opens (creating if needed) the database and starts the writer. Throws damage_error if
  // its files are damaged (see rocks_options::salvage), rocks_error on other failures.
  explicit rocks_db(rocks_options options);
  ~rocks_db();  // drains queued writes, stops the writer, closes the database
  rocks_db(rocks_db const&) = delete;
  rocks_db& operator=(rocks_db const&) = delete;

  // Queues a write; `done` is called exactly once. After stop() it fails at once.
  // `lazy` writes need no fsync of their own (losing them in a crash is harmless, e.g.
  // trimming what will be redone): a batch of only lazy writes skips the WAL fsync.
  enum class durability { fsync, lazy };
  void submit(write_fn fn, done_fn done, durability d = durability::fsync);

  // Committed state. Safe on any thread.
  std::optional<std::string> get(cf family, std::string_view key) const;

  // Visits keys in [from, to) in order (to empty: no upper bound) until `fn` returns false.
  void scan(cf family, std::string_view from, std::string_view to, visit_fn const& fn) const;

  // Visits keys in [from, to) in reverse order until `fn` returns false.
  void scan_reverse(cf family, std::string_view from, std::string_view to, visit_fn const& fn) const;

  // RocksDB's estimate of the live keys in `family` (exact after compact()).
  std::uint64_t estimated_keys(cf family) const;

  // Sizes on disk, for the node's metrics: live SST files, the write-ahead log, and what
  // compaction still has to rewrite (RocksDB's estimate), over every column family.
  struct disk_use {
    std::uint64_t live_sst_bytes = 0, wal_bytes = 0, pending_compaction_bytes = 0;
  };
  disk_use disk() const;

  // Flushes memtables and compacts every column family, so deleted data leaves the disk.
  void compact();

  // A consistent copy of the committed state in `dir` (which must not exist, on the same
  // file system): the memtables flushed, SST files hard-linked, the rest copied (RocksDB's
  // checkpoint). Writes go on meanwhile. Blocking. Throws rocks_error.
  void checkpoint_to(std::filesystem::path const& dir);

  // Finishes queued writes and stops the writer thread. Idempotent.
  void stop();

  std::uint64_t commits() const { return commits_.load(std::memory_order_relaxed); }
  // Tells `fn` of every group commit from now on (the node's metrics).
  void observe_commits(commit_observer fn) { observers_.set(std::move(fn)); }

  // Why writes are failing now (e.g. "IO error: No space left on device"), empty while
  // they succeed. After a failed write the writer asks RocksDB to resume before each
  // later batch (at most once a second), so the store recovers by itself once the cause
  // is gone (space freed); nothing acknowledged is lost meanwhile, later writes fail. An
  // error RocksDB does not resume from (fatal: an I/O error on its log) says so and asks for
  // a restart.
  std::string write_error() const;

 private:
  struct request {
    write_fn fn;
    done_fn done;
    durability durable = durability::fsync;
  };
  void run_writer();
  void commit_batch(std::deque<request>& batch, detail::group_commit& state);

  rocks_options options_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* cfs_[static_cast<int>(cf::count_)] = {};

  detail::request_queue<request> queue_;

  std::atomic<std::uint64_t> commits_{0};
  commit_observers observers_;
  mutable std::mutex error_mutex_;  // guards write_error_
  std::string write_error_;
  std::chrono::steady_clock::time_point last_resume_{};  // writer thread only
  std::string last_resume_error_;                        // writer thread only: logged once each
  std::thread writer_;                                   // last: starts after everything above exists
};

}  // namespace petchat::store
