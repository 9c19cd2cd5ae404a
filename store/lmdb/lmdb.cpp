#include "lmdb.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <vector>

namespace petchat::store {
namespace {

// Thrown inside a batch when the map is full: the writer aborts the batch, grows the map
// and runs the batch again.
struct map_full {};

void check(int rc, char const* what) {
  if (rc == MDB_MAP_FULL) throw map_full{};
  if (rc != MDB_SUCCESS) throw lmdb_error(what, rc);
}

MDB_val to_val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view to_view(MDB_val const& v) {
  return {static_cast<char const*>(v.mv_data), v.mv_size};
}

}  // namespace

writer_preferring_mutex::writer_preferring_mutex() {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&lock_, &attr);
  pthread_rwlockattr_destroy(&attr);
}
writer_preferring_mutex::~writer_preferring_mutex() {
  pthread_rwlock_destroy(&lock_);
}
void writer_preferring_mutex::lock() {
  pthread_rwlock_wrlock(&lock_);
}
void writer_preferring_mutex::unlock() {
  pthread_rwlock_unlock(&lock_);
}
void writer_preferring_mutex::lock_shared() {
  pthread_rwlock_rdlock(&lock_);
}
void writer_preferring_mutex::unlock_shared() {
  pthread_rwlock_unlock(&lock_);
}

lmdb_error::lmdb_error(std::string const& what, int rc)
    : std::runtime_error(what + ": " + mdb_strerror(rc)), code_(rc) {}

std::optional<std::string_view> lmdb_txn::get(lmdb_db db, std::string_view key) const {
  MDB_val k = to_val(key), v;
  int rc = mdb_get(txn_, db.handle, &k, &v);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  check(rc, "mdb_get");
  return to_view(v);
}

void lmdb_txn::put(lmdb_db db, std::string_view key, std::string_view value) {
  MDB_val k = to_val(key), v = to_val(value);
  check(mdb_put(txn_, db.handle, &k, &v, 0), "mdb_put");
}

bool lmdb_txn::insert(lmdb_db db, std::string_view key, std::string_view value) {
  MDB_val k = to_val(key), v = to_val(value);
  int rc = mdb_put(txn_, db.handle, &k, &v, MDB_NOOVERWRITE);
  if (rc == MDB_KEYEXIST) return false;
  check(rc, "mdb_put");
  return true;
}

bool lmdb_txn::erase(lmdb_db db, std::string_view key) {
  MDB_val k = to_val(key);
  int rc = mdb_del(txn_, db.handle, &k, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  check(rc, "mdb_del");
  return true;
}

void lmdb_txn::for_each(lmdb_db db, std::string_view prefix,
                        std::function<bool(std::string_view, std::string_view)> const& fn) const {
  MDB_cursor* cursor = nullptr;
  check(mdb_cursor_open(txn_, db.handle, &cursor), "mdb_cursor_open");
  std::unique_ptr<MDB_cursor, void (*)(MDB_cursor*)> guard(cursor, mdb_cursor_close);
  MDB_val k = to_val(prefix), v;
  int rc = prefix.empty() ? mdb_cursor_get(cursor, &k, &v, MDB_FIRST) : mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS) {
    auto key = to_view(k);
    if (!key.starts_with(prefix) || !fn(key, to_view(v))) return;
    rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) check(rc, "mdb_cursor_get");
}

std::size_t lmdb_txn::count(lmdb_db db) const {
  MDB_stat st;
  check(mdb_stat(txn_, db.handle, &st), "mdb_stat");
  return st.ms_entries;
}

namespace {
MDB_txn* begin_read(MDB_env* env) {
  MDB_txn* txn = nullptr;
  check(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn), "mdb_txn_begin(read)");
  return txn;
}
}  // namespace

MDB_txn* lmdb_env::take_reader() const {
  MDB_txn* txn = nullptr;
  {
    std::lock_guard lock(idle_readers_mutex_);
    if (!idle_readers_.empty()) {
      txn = idle_readers_.back();
      idle_readers_.pop_back();
    }
  }
  if (txn && mdb_txn_renew(txn) != MDB_SUCCESS) {
    mdb_txn_abort(txn);
    txn = nullptr;
  }
  return txn ? txn : begin_read(env_);
}

lmdb_env::read_txn::read_txn(lmdb_env const& e) : env(e), txn(e.take_reader()), view(txn) {}

lmdb_env::read_txn::~read_txn() {
  mdb_txn_reset(txn);
  {
    std::lock_guard lock(env.idle_readers_mutex_);
    if (env.idle_readers_.size() < max_idle_readers) {
      env.idle_readers_.push_back(txn);
      return;
    }
  }
  mdb_txn_abort(txn);
}

namespace {

void sync_directory(std::filesystem::path const& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // nothing to make durable, or no permission to: the commit's fsyncs still hold
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

lmdb_env::lmdb_env(lmdb_options options) : options_(std::move(options)) {
  std::filesystem::create_directories(options_.dir);
  ::chmod(options_.dir.c_str(), 0700);
  check(mdb_env_create(&env_), "mdb_env_create");
  try {
    check(mdb_env_set_maxdbs(env_, options_.max_dbs), "mdb_env_set_maxdbs");
    // One reader slot per concurrent read transaction: I/O threads, admin calls, writer.
    check(mdb_env_set_maxreaders(env_, options_.max_readers), "mdb_env_set_maxreaders");
    check(mdb_env_set_mapsize(env_, options_.initial_map_bytes), "mdb_env_set_mapsize");
    // MDB_NOTLS: read transactions are not tied to a thread, so any I/O thread may read.
    // Synchronous commits are kept (no MDB_NOSYNC): a committed write is on disk.
    int rc = mdb_env_open(env_, options_.dir.c_str(), MDB_NOTLS, 0600);
    if (rc != MDB_SUCCESS) throw lmdb_error("mdb_env_open " + options_.dir.string(), rc);
    // A new environment's files (and a new directory) are durable in their directories
    // before any commit counts on them: LMDB fsyncs the file's data, not its name.
    sync_directory(options_.dir);
    if (options_.dir.has_parent_path()) sync_directory(options_.dir.parent_path());
    // An existing environment may already be larger than the configured start size.
    MDB_envinfo info;
    mdb_env_info(env_, &info);
    options_.initial_map_bytes = info.me_mapsize;
  } catch (...) {
    mdb_env_close(env_);
    throw;
  }
  writer_ = std::thread([this] { run_writer(); });
}

lmdb_env::~lmdb_env() {
  stop();
  for (auto* txn : idle_readers_) mdb_txn_abort(txn);
  mdb_env_close(env_);
}

lmdb_db lmdb_env::open_db(char const* name) {
  MDB_txn* txn = nullptr;
  check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
  lmdb_db db;
  int rc = mdb_dbi_open(txn, name, MDB_CREATE, &db.handle);
  if (rc != MDB_SUCCESS) {
    mdb_txn_abort(txn);
    throw lmdb_error(std::string("mdb_dbi_open ") + name, rc);
  }
  check(mdb_txn_commit(txn), "mdb_txn_commit");
  return db;
}

void lmdb_env::submit(write_fn fn, done_fn done) {
  request r{std::move(fn), std::move(done)};
  if (!queue_.push(r)) r.done(write_outcome::failed);
}

void lmdb_env::stop() {
  queue_.stop();
  if (writer_.joinable()) writer_.join();
}

std::size_t lmdb_env::map_size() const {
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  return info.me_mapsize;
}

std::size_t lmdb_env::used_bytes() const {
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(env_, &info);
  mdb_env_stat(env_, &st);
  return (info.me_last_pgno + 1) * static_cast<std::size_t>(st.ms_psize);
}

void lmdb_env::copy_to(std::filesystem::path const& dir) const {
  // Not under the resize gate (a resize waiting behind a long copy would hold up every
  // reader): a resize waits for the copy instead (grow_map), and a copy for a resize.
  {
    std::unique_lock lock(copies_mutex_);
    copies_done_.wait(lock, [this] { return resizing_ == 0; });
    ++copies_;
  }
  struct done_copying {
    lmdb_env const* env;
    ~done_copying() {
      std::lock_guard lock(env->copies_mutex_);
      --env->copies_;
      env->copies_done_.notify_all();
    }
  } copying{this};
  int rc = mdb_env_copy2(env_, dir.c_str(), MDB_CP_COMPACT);
  if (rc != MDB_SUCCESS) throw lmdb_error("mdb_env_copy2 " + dir.string(), rc);
}

std::uint64_t lmdb_env::commits() const {
  return commits_.load(std::memory_order_relaxed);
}

void lmdb_env::run_writer() {
  pthread_setname_np(pthread_self(), "lmdb-writer");  // seen in top -H, perf, gdb
  for (;;) {
    auto batch = queue_.take(options_.max_batch);
    if (batch.empty()) return;  // stopped, and everything queued is done
    while (!commit_batch(batch)) {
      if (!grow_map()) {
        // The map cannot grow (address space or disk exhausted): fail this batch, keep
        // serving; later batches may fit.
        note_write_error("the users store cannot grow");
        for (auto& r : batch) r.done(write_outcome::failed);
        break;
      }
    }
  }
}

bool lmdb_env::commit_batch(std::deque<request>& batch) {
  std::vector<write_outcome> outcomes(batch.size(), write_outcome::failed);
  MDB_txn* parent = nullptr;
  try {
    std::shared_lock gate(resize_gate_);
    check(mdb_txn_begin(env_, nullptr, 0, &parent), "mdb_txn_begin(write)");
    for (std::size_t i = 0; i < batch.size(); ++i) {
      // Each request gets a nested transaction so that its failure or rollback leaves
      // the other requests of the batch untouched.
      MDB_txn* child = nullptr;
      check(mdb_txn_begin(env_, parent, 0, &child), "mdb_txn_begin(nested)");
      try {
        lmdb_txn txn(child);
        if (batch[i].fn(txn)) {
          // mdb_txn_commit frees the handle even when it fails: never abort it after this.
          int rc = mdb_txn_commit(child);
          child = nullptr;
          check(rc, "mdb_txn_commit(nested)");
          outcomes[i] = write_outcome::committed;
        } else {
          mdb_txn_abort(child);
          child = nullptr;
          outcomes[i] = write_outcome::rolled_back;
        }
      } catch (map_full const&) {
        if (child) mdb_txn_abort(child);
        throw;
      } catch (...) {
        if (child) mdb_txn_abort(child);
        outcomes[i] = write_outcome::failed;
      }
    }
    // The group commit: one fsync makes every request of the batch durable.
    auto started = std::chrono::steady_clock::now();
    int rc = mdb_txn_commit(parent);
    parent = nullptr;
    check(rc, "mdb_txn_commit");
    commits_.fetch_add(1, std::memory_order_relaxed);
    observers_.committed(batch.size(), std::chrono::steady_clock::now() - started);
    // Only a commit that wrote pages shows the disk takes writes again.
    if (std::find(outcomes.begin(), outcomes.end(), write_outcome::committed) != outcomes.end()) note_write_error({});
  } catch (map_full const&) {
    if (parent) mdb_txn_abort(parent);
    return false;
  } catch (lmdb_error const& e) {
    if (parent) mdb_txn_abort(parent);
    for (auto& o : outcomes) o = write_outcome::failed;
    int rc = e.code();
    if (rc == ENOSPC || rc == EDQUOT || rc == EIO || rc == EROFS) note_write_error(std::strerror(rc));
    // LMDB takes no write after a failed meta page write: only a restart helps.
    if (rc == MDB_PANIC) note_write_error("the users store failed and takes no writes until the node restarts");
  } catch (...) {
    if (parent) mdb_txn_abort(parent);
    for (auto& o : outcomes) o = write_outcome::failed;
  }
  for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(outcomes[i]);
  return true;
}

void lmdb_env::note_write_error(std::string why) {
  std::lock_guard lock(write_error_mutex_);
  write_error_ = std::move(why);
}

std::string lmdb_env::write_error() const {
  std::lock_guard lock(write_error_mutex_);
  return write_error_;
}

bool lmdb_env::grow_map() {
  // A copy's read transaction must end before the map may change; readers go on
  // meanwhile (only this writer waits), which taking the gate first would not allow.
  {
    std::unique_lock lock(copies_mutex_);
    copies_done_.wait(lock, [this] { return copies_ == 0; });
    ++resizing_;
  }
  struct done_resizing {
    lmdb_env* env;
    ~done_resizing() {
      std::lock_guard lock(env->copies_mutex_);
      --env->resizing_;
      env->copies_done_.notify_all();
    }
  } resizing{this};
  std::unique_lock gate(resize_gate_);
  std::size_t next = map_size() * 2;
  return mdb_env_set_mapsize(env_, next) == MDB_SUCCESS;
}

}  // namespace petchat::store
