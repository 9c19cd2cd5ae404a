#include "store/rocks/rocks.hpp"

#include "store/rocks/detail/group_commit.hpp"

#include <pthread.h>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include <algorithm>

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <vector>

namespace petchat::store {

using detail::check;
using detail::slice;

namespace {

char const* const family_names[] = {"mailbox",       "messages", "history",  "idempotency", "state", "expiry",
                                    "conversations", "outbox",   "receipts", "assets",      "push"};
static_assert(std::size(family_names) == static_cast<std::size_t>(cf::count_));

// RocksDB's info log, forwarded to the owner's sink instead of a LOG file.
class forwarding_logger final : public rocksdb::Logger {
 public:
  explicit forwarding_logger(std::function<void(int, std::string const&)> sink)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL), sink_(std::move(sink)) {}
  using rocksdb::Logger::Logv;
  void Logv(rocksdb::InfoLogLevel level, char const* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char line[1024];
    std::vsnprintf(line, sizeof line, format, ap);
    sink_(static_cast<int>(level), line);
  }
  void Logv(char const* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }

 private:
  std::function<void(int, std::string const&)> sink_;
};

void to_stderr(int severity, std::string const& line) {
  if (severity >= static_cast<int>(rocksdb::InfoLogLevel::WARN_LEVEL))
    std::fprintf(stderr, "rocksdb: %s\n", line.c_str());
}

// A key's owner: everything up to and including its first NUL (a mailbox's user, a
// history's conversation), or nothing for keys without one. The memtable keeps where it
// last inserted a key of each owner and starts the next insert there: a mailbox or a
// history only grows at its end, and message ids (no NUL, one shared hint) grow with
// time, so most inserts land next to their hint instead of searching the skip list from
// its top (that search was the writer's largest cost).
class owner_prefix final : public rocksdb::SliceTransform {
 public:
  char const* Name() const override { return "petchat.owner_prefix"; }
  rocksdb::Slice Transform(rocksdb::Slice const& key) const override {
    auto const* nul = static_cast<char const*>(std::memchr(key.data(), 0, key.size()));
    return rocksdb::Slice(key.data(), nul ? static_cast<std::size_t>(nul - key.data()) + 1 : 0);
  }
  bool InDomain(rocksdb::Slice const&) const override { return true; }
};

// The same, except that a key without a NUL is its own owner (rocks_options::rewritten):
// such a key rewritten again and again goes next to its previous version directly.
class owner_or_key final : public rocksdb::SliceTransform {
 public:
  char const* Name() const override { return "petchat.owner_or_key"; }
  rocksdb::Slice Transform(rocksdb::Slice const& key) const override {
    auto const* nul = static_cast<char const*>(std::memchr(key.data(), 0, key.size()));
    return rocksdb::Slice(key.data(), nul ? static_cast<std::size_t>(nul - key.data()) + 1 : key.size());
  }
  bool InDomain(rocksdb::Slice const&) const override { return true; }
};

}  // namespace

rocks_db::rocks_db(rocks_options options) : options_(std::move(options)) {
  std::filesystem::create_directories(options_.dir);
  ::chmod(options_.dir.c_str(), 0700);
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  // Old WAL files are deleted once their data is flushed, so deleted data does not linger.
  db_options.WAL_ttl_seconds = 0;
  db_options.WAL_size_limit_MB = 0;
  db_options.keep_log_file_num = 5;
  // Recovery after kill -9 replays the WAL: capping it (RocksDB flushes memtables to stay
  // under the cap) bounds start-up time whatever the amount of stored data.
  db_options.max_total_wal_size = 32 << 20;
  // One thread writes (the writer below): concurrent memtable inserts buy nothing, and the
  // insert hints (owner_prefix) work only without them.
  db_options.allow_concurrent_memtable_write = false;
  if (!options_.log) options_.log = to_stderr;  // RocksDB's lines and ours go to one sink
  db_options.info_log = std::make_shared<forwarding_logger>(options_.log);
  // A torn last record is what a crash mid-write leaves (it was never acknowledged) and is
  // dropped; damage anywhere else would lose acknowledged writes and is refused (see
  // rocks_options::salvage).
  db_options.wal_recovery_mode = options_.salvage ? rocksdb::WALRecoveryMode::kPointInTimeRecovery
                                                  : rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  rocksdb::ColumnFamilyOptions family_options;
  family_options.write_buffer_size = 16 << 20;
  family_options.memtable_insert_with_hint_prefix_extractor = std::make_shared<owner_prefix>();
  rocksdb::ColumnFamilyOptions filtered_options = family_options;
  filtered_options.memtable_prefix_bloom_size_ratio = 0.05;
  filtered_options.memtable_whole_key_filtering = true;
  rocksdb::BlockBasedTableOptions filtered_tables;
  filtered_tables.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  filtered_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(filtered_tables));
  auto listed = [](std::vector<cf> const& families, std::size_t i) {
    return std::find(families.begin(), families.end(), static_cast<cf>(i)) != families.end();
  };
  rocksdb::ColumnFamilyOptions table_filtered_options = family_options;
  table_filtered_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(filtered_tables));
  for (std::size_t i = 0; i < std::size(family_names); ++i) {
    auto chosen = listed(options_.filtered, i)         ? filtered_options
                  : listed(options_.table_filtered, i) ? table_filtered_options
                                                       : family_options;
    if (listed(options_.rewritten, i))
      chosen.memtable_insert_with_hint_prefix_extractor = std::make_shared<owner_or_key>();
    families.emplace_back(family_names[i], chosen);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto opened = rocksdb::DB::Open(db_options, options_.dir.string(), families, &handles, &raw);
  if (opened.IsCorruption())
    throw damage_error("the store " + options_.dir.string() + " is damaged (" + opened.ToString() +
                       "); it was not opened, and nothing was changed");
  check(opened, "open RocksDB");
  db_.reset(raw);
  // handles[0] is the default family, which petchat does not use.
  db_->DestroyColumnFamilyHandle(handles[0]);
  for (std::size_t i = 1; i < handles.size(); ++i) cfs_[i - 1] = handles[i];
  writer_ = std::thread([this] { run_writer(); });
}

rocks_db::~rocks_db() {
  stop();
  for (auto* h : cfs_)
    if (h) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

void rocks_db::submit(write_fn fn, done_fn done, durability d) {
  request r{std::move(fn), std::move(done), d};
  if (!queue_.push(r)) r.done(write_outcome::failed);
}

void rocks_db::stop() {
  queue_.stop();
  if (writer_.joinable()) writer_.join();
}

std::optional<std::string> rocks_db::get(cf family, std::string_view key) const {
  std::string value;
  auto s = db_->Get(rocksdb::ReadOptions(), cfs_[static_cast<int>(family)], slice(key), &value);
  if (s.IsNotFound()) return std::nullopt;
  check(s, "Get");
  return value;
}

void rocks_db::scan(cf family, std::string_view from, std::string_view to, visit_fn const& fn) const {
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper = slice(to);
  if (!to.empty()) ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[static_cast<int>(family)]));
  for (it->Seek(slice(from)); it->Valid(); it->Next()) {
    auto k = it->key();
    auto v = it->value();
    if (!fn(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()))) break;
  }
  check(it->status(), "iterate");
}

void rocks_db::scan_reverse(cf family, std::string_view from, std::string_view to, visit_fn const& fn) const {
  rocksdb::ReadOptions ro;
  rocksdb::Slice lower = slice(from);
  ro.iterate_lower_bound = &lower;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[static_cast<int>(family)]));
  if (to.empty())
    it->SeekToLast();
  else {
    it->SeekForPrev(slice(to));
    // SeekForPrev lands on `to` itself if present; the range excludes it.
    if (it->Valid() && it->key() == slice(to)) it->Prev();
  }
  for (; it->Valid(); it->Prev()) {
    auto k = it->key();
    auto v = it->value();
    if (!fn(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()))) break;
  }
  check(it->status(), "iterate");
}

std::uint64_t rocks_db::estimated_keys(cf family) const {
  std::uint64_t n = 0;
  db_->GetIntProperty(cfs_[static_cast<int>(family)], rocksdb::DB::Properties::kEstimateNumKeys, &n);
  return n;
}

rocks_db::disk_use rocks_db::disk() const {
  disk_use d;
  for (auto* h : cfs_) {
    std::uint64_t v = 0;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kLiveSstFilesSize, &v)) d.live_sst_bytes += v;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kEstimatePendingCompactionBytes, &v))
      d.pending_compaction_bytes += v;
  }
  rocksdb::VectorLogPtr wal;
  if (db_->GetSortedWalFiles(wal).ok())
    for (auto const& f : wal) d.wal_bytes += f->SizeFileBytes();
  return d;
}

void rocks_db::compact() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  for (auto* h : cfs_) check(db_->Flush(fo, h), "Flush");
  rocksdb::CompactRangeOptions co;
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (auto* h : cfs_) check(db_->CompactRange(co, h, nullptr, nullptr), "CompactRange");
}

void rocks_db::checkpoint_to(std::filesystem::path const& dir) {
  rocksdb::Checkpoint* raw = nullptr;
  check(rocksdb::Checkpoint::Create(db_.get(), &raw), "Checkpoint::Create");
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  check(checkpoint->CreateCheckpoint(dir.string()), "CreateCheckpoint");  // flushes first (log_size_for_flush 0)
}

void rocks_db::run_writer() {
  pthread_setname_np(pthread_self(), "rocks-writer");  // seen in top -H, perf, gdb
  // RocksDB counts every operation into a thread-local perf context unless told not to
  // (its default level counts); nothing here reads those counts.
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  detail::group_commit state(db_.get(), cfs_, options_);
  for (;;) {
    auto batch = queue_.take(options_.max_batch);
    if (batch.empty()) return;  // stopped, and everything queued is done
    commit_batch(batch, state);
  }
}

std::string rocks_db::write_error() const {
  std::lock_guard lock(error_mutex_);
  return write_error_;
}

void rocks_db::commit_batch(std::deque<request>& batch, detail::group_commit& state) {
  // After a failed write RocksDB refuses every write until it is told to resume (a full
  // disk stops it for good otherwise). Try again before this batch, once a second at most.
  if (!write_error().empty() && std::chrono::steady_clock::now() - last_resume_ >= std::chrono::seconds(1)) {
    last_resume_ = std::chrono::steady_clock::now();
    auto r = db_->Resume();
    // Tried once a second while writes fail (the node's upkeep writes nothing to find out):
    // the same refusal is logged once, not every second.
    if (!r.ok() && r.ToString() != last_resume_error_)
      options_.log(static_cast<int>(rocksdb::InfoLogLevel::INFO_LEVEL), "resume: " + r.ToString());
    last_resume_error_ = r.ok() ? "" : r.ToString();
  }
  std::vector<write_outcome> outcomes(batch.size(), write_outcome::failed);
  rocks_batch view(state);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    state.begin_request();
    bool keep = false;
    try {
      keep = batch[i].fn(view);
      outcomes[i] = keep ? write_outcome::committed : write_outcome::rolled_back;
    } catch (std::exception const& e) {
      outcomes[i] = write_outcome::failed;
      options_.log(static_cast<int>(rocksdb::InfoLogLevel::ERROR_LEVEL), std::string("a write failed: ") + e.what());
    } catch (...) {
      outcomes[i] = write_outcome::failed;
    }
    if (keep)
      state.keep_request();
    else
      state.undo_request();
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync &&
            std::any_of(batch.begin(), batch.end(), [](request const& r) { return r.durable == durability::fsync; });
  // The group commit: one WAL fsync makes every request of the batch durable.
  state.write_last_values();
  // Every request rolled back (a repeated send, a read mark already there): nothing to write,
  // unless writes are failing (a write is what finds out they work again).
  if (state.batch.Count() == 0 && write_error().empty()) {
    state.finish(true);  // nothing to make durable: no WAL record, no fsync
    for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(outcomes[i]);
    return;
  }
  auto started = std::chrono::steady_clock::now();
  auto s = db_->Write(wo, &state.batch);
  auto took = std::chrono::steady_clock::now() - started;
  state.finish(s.ok());
  if (!s.ok()) {
    for (auto& o : outcomes) o = write_outcome::failed;
    std::lock_guard lock(error_mutex_);
    if (write_error_.empty()) {
      write_error_ = s.ToString();
      // A full disk is resumed from; an I/O error on the log is not (RocksDB refuses to
      // resume past a fatal error): only a restart, which replays the log, brings writes back.
      if (s.severity() >= rocksdb::Status::Severity::kFatalError)
        write_error_ += " (the store cannot resume from this error: restart the node)";
      options_.log(static_cast<int>(rocksdb::InfoLogLevel::ERROR_LEVEL), "writes are failing: " + write_error_);
    }
  } else {
    commits_.fetch_add(1, std::memory_order_relaxed);
    observers_.committed(batch.size(), took);
    // RocksDB may also have recovered by itself (its own retry once space is back).
    std::lock_guard lock(error_mutex_);
    if (!write_error_.empty()) {
      write_error_.clear();
      options_.log(static_cast<int>(rocksdb::InfoLogLevel::WARN_LEVEL), "writes resumed");
    }
  }
  for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(outcomes[i]);
}

}  // namespace petchat::store
