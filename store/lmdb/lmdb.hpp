// petchat's LMDB engine: an environment, its named databases, short read transactions on
// any thread, and a commit pipeline through which every write goes.
//
// Writes are group-committed: one writer thread takes every request queued since its last
// commit, runs each in its own nested transaction (so one failing request does not undo the
// others), commits the whole batch with one fsync, and only then reports every request's
// outcome. A request that was reported `committed` survives a kill -9.
//
// When the memory map fills up, the writer doubles it and runs the batch again, so a
// growing database never fails a write for lack of map space.
#pragma once

#include <lmdb.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "store/commits.hpp"
#include "store/detail/request_queue.hpp"
#include "store/write_outcome.hpp"

namespace petchat::store {

// A shared mutex on which a waiting exclusive locker blocks new shared lockers (glibc's
// default rwlock lets readers overtake a waiting writer indefinitely).
class writer_preferring_mutex {
 public:
  writer_preferring_mutex();
  ~writer_preferring_mutex();
  writer_preferring_mutex(writer_preferring_mutex const&) = delete;
  writer_preferring_mutex& operator=(writer_preferring_mutex const&) = delete;
  void lock();
  void unlock();
  void lock_shared();
  void unlock_shared();

 private:
  pthread_rwlock_t lock_;
};

// Start-up and programming errors (bad path, corrupt file, misuse): thrown. Expected
// outcomes (not found, key exists) are return values.
class lmdb_error : public std::runtime_error {
 public:
  lmdb_error(std::string const& what, int rc);
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// A named database inside an environment. Cheap to copy; valid for the env's lifetime.
struct lmdb_db {
  MDB_dbi handle = 0;
};

// A transaction handed to readers and writers. Not copyable; never outlives the call
// that handed it out.
class lmdb_txn {
 public:
  explicit lmdb_txn(MDB_txn* txn) : txn_(txn) {}
  lmdb_txn(lmdb_txn const&) = delete;
  lmdb_txn& operator=(lmdb_txn const&) = delete;

  // The value stored under `key`, or nullopt. The view points into the map and is valid
  // until the transaction ends.
  std::optional<std::string_view> get(lmdb_db db, std::string_view key) const;

  // Stores `value` under `key`, replacing any old value. Write transactions only.
  void put(lmdb_db db, std::string_view key, std::string_view value);

  // Stores `value` only if `key` is absent. Returns false (and changes nothing) if present.
  bool insert(lmdb_db db, std::string_view key, std::string_view value);

  // Removes `key`. Returns false if it was absent.
  bool erase(lmdb_db db, std::string_view key);

  // Calls `fn(key, value)` for every entry whose key starts with `prefix`, in key order,
  // until `fn` returns false.
  void for_each(lmdb_db db, std::string_view prefix,
                std::function<bool(std::string_view, std::string_view)> const& fn) const;

  // Number of entries in `db`.
  std::size_t count(lmdb_db db) const;

  MDB_txn* native() const noexcept { return txn_; }

 private:
  MDB_txn* txn_;
};

struct lmdb_options {
  std::filesystem::path dir;                  // created if missing (mode 0700)
  std::size_t initial_map_bytes = 64u << 20;  // grows by doubling when full
  unsigned max_dbs = 16;
  unsigned max_readers = 1024;   // concurrent read transactions
  std::size_t max_batch = 1024;  // requests per group commit
};

class lmdb_env {
 public:
  // Runs inside the writer's transaction. Returns true to keep its changes, false to roll
  // them back. It may run more than once (after the map grows), so it must write its
  // results to its captures idempotently. It must not block.
  using write_fn = std::function<bool(lmdb_txn&)>;
  // Called on the writer thread once the request's fate is final. Must not block: post
  // the outcome to where it is awaited.
  using done_fn = std::function<void(write_outcome)>;

  // Opens (creating if needed) the environment and starts the writer thread.
  // Throws lmdb_error on failure.
  explicit lmdb_env(lmdb_options options);
  ~lmdb_env();  // stops the writer after draining queued requests; closes the env
  lmdb_env(lmdb_env const&) = delete;
  lmdb_env& operator=(lmdb_env const&) = delete;

  // Opens or creates a named database. Call during start-up, before any read or write.
  lmdb_db open_db(char const* name);

  // Runs `fn` with a read-only snapshot and returns what it returns. Safe on any thread;
  // never waits for the writer (only, briefly, for a map resize). `fn` must not call
  // read() again: with a resize waiting, the nested call would deadlock.
  template <typename F>
  auto read(F&& fn) const {
    std::shared_lock gate(resize_gate_);
    read_txn txn(*this);
    return fn(txn.view);
  }

  // Queues a write. `done` is called exactly once, from the writer thread.
  // After stop() the request fails at once.
  void submit(write_fn fn, done_fn done);

  // Finishes queued writes and stops the writer thread. Idempotent.
  void stop();

  std::size_t map_size() const;
  std::size_t used_bytes() const;  // the map's pages in use (up to the last one written)
  std::uint64_t commits() const;   // group commits done (each is one fsync)
  // Why the last group commit failed for want of space or a working disk (ENOSPC, EDQUOT,
  // EIO, EROFS, or a map that could not grow); empty once a commit succeeds again.
  std::string write_error() const;
  // Writes a compacted, consistent copy of the environment (one read snapshot) to
  // `dir`/data.mdb; `dir` must exist and hold no data.mdb. Writers go on meanwhile; a map
  // resize waits for the copy. Blocking. Throws lmdb_error.
  void copy_to(std::filesystem::path const& dir) const;
  // Tells `fn` of every group commit from now on (the node's metrics).
  void observe_commits(commit_observer fn) { observers_.set(std::move(fn)); }

 private:
  // A read transaction taken from the idle ones (renewed) or begun, and reset and given
  // back when done: a read then costs neither an allocation nor the reader-table lock
  // that beginning a transaction takes. An idle (reset) transaction keeps its reader slot
  // but no snapshot, so it holds back no page reuse and no map resize.
  struct read_txn {
    explicit read_txn(lmdb_env const& env);
    ~read_txn();
    lmdb_env const& env;
    MDB_txn* txn = nullptr;
    lmdb_txn view;
  };
  MDB_txn* take_reader() const;
  mutable std::mutex idle_readers_mutex_;       // guards idle_readers_
  mutable std::vector<MDB_txn*> idle_readers_;  // reset read transactions, kept for reuse
  static constexpr std::size_t max_idle_readers = 32;
  struct request {
    write_fn fn;
    done_fn done;
  };

  void run_writer();
  bool commit_batch(std::deque<request>& batch);  // false when the map had to grow
  bool grow_map();                                // false if LMDB refused the new size

  lmdb_options options_;
  MDB_env* env_ = nullptr;

  // Readers hold it shared for the life of a read transaction; the writer holds it
  // exclusively while resizing the map, which LMDB allows only with no live transaction.
  // Writer-preferring, so a steady stream of readers cannot starve a resize.
  mutable writer_preferring_mutex resize_gate_;

  // Copies (copy_to) and map resizes exclude each other without the gate: a copy holds a
  // read transaction for long, and a resize must not hold readers up behind it.
  mutable std::mutex copies_mutex_;
  mutable std::condition_variable copies_done_;
  mutable int copies_ = 0, resizing_ = 0;

  detail::request_queue<request> queue_;

  std::atomic<std::uint64_t> commits_{0};
  mutable std::mutex write_error_mutex_;
  std::string write_error_;  // guarded by write_error_mutex_
  void note_write_error(std::string why);
  commit_observers observers_;
  std::thread writer_;  // last member: starts after everything above is initialized
};

}  // namespace petchat::store
