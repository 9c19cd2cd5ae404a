// The RocksDB writer thread's state (group_commit): the batch being built, what it holds by
// key, the save points that undo one request, and the committed values the writer keeps in
// memory. Private to store/rocks: rocks.cpp runs the writer, batch.cpp is the view of it a
// request gets (rocks_batch).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <array>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "store/rocks/rocks.hpp"

namespace petchat::store::detail {

inline void check(rocksdb::Status const& s, char const* what) {
  if (!s.ok()) throw rocks_error(std::string(what) + ": " + s.ToString());
}

inline rocksdb::Slice slice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}

// The writer thread's state: the batch being built, what it holds by key (so a request
// reads the writes before it), and the committed values of the cached families.
struct group_commit {
  using value = std::optional<std::string>;  // nullopt: absent (never written, or deleted)

  rocksdb::DB* db;
  rocksdb::ColumnFamilyHandle* const* cfs;
  std::array<bool, static_cast<std::size_t>(cf::count_)> cached{};
  std::size_t cache_limit;

  rocksdb::WriteBatch batch;
  std::uint64_t generation = 0;                    // batches finished so far (rocks_batch::generation)
  std::unordered_map<std::string, value> written;  // key (family byte + key) -> its value in the batch
  // How to undo the running request's writes to `written`: the entry (elements of an
  // unordered_map keep their address) and what it held before (nullopt: nothing).
  std::vector<std::pair<std::pair<std::string const, value>*, std::optional<value>>> undo;
  // Committed values of cached families, and of recent families (rocks_options::recent)
  // with what they take. Open addressing: these hold up to hundreds of thousands of keys,
  // looked up several times per mailbox event, and a node-based map's lookup was a chain
  // of cache misses.
  boost::unordered_flat_map<std::string, value> cache;
  std::array<bool, static_cast<std::size_t>(cf::count_)> recent_family{};
  boost::unordered_flat_map<std::string, value> recent;
  std::size_t recent_size = 0;
  std::size_t recent_limit;
  std::size_t recent_value_max;

  group_commit(rocksdb::DB* d, rocksdb::ColumnFamilyHandle* const* c, rocks_options const& o)
      : db(d),
        cfs(c),
        cache_limit(o.cache_entries),
        recent_limit(o.recent_bytes),
        recent_value_max(o.recent_value_max) {
    for (auto family : o.cached) cached[static_cast<std::size_t>(family)] = true;
    for (auto family : o.recent)
      if (!cached[static_cast<std::size_t>(family)]) recent_family[static_cast<std::size_t>(family)] = true;
  }

  bool is_recent(cf family) const { return recent_family[static_cast<std::size_t>(family)]; }

  // What an entry of `recent` takes: its key, its value and the map's node, roughly.
  static std::size_t recent_cost(std::string const& key, value const& v) {
    constexpr std::size_t node = 96;
    return key.capacity() + (v ? v->capacity() : 0) + node;
  }

  bool too_large(value const& v) const { return v && v->size() > recent_value_max; }
  // Counts a new entry of `recent`, starting over first if it would not fit.
  void admit_recent(std::size_t cost) {
    if (recent_size + cost > recent_limit) {
      recent.clear();
      recent_size = 0;
    }
    recent_size += cost;
  }

  // Keeps a committed value of a recent family's key (an entry moved out of `written`), or
  // forgets the key when the value is too large to keep.
  void keep_recent(decltype(written)::node_type node) {
    if (auto it = recent.find(node.key()); it != recent.end()) {
      recent_size -= recent_cost(it->first, it->second);
      recent.erase(it);
    }
    if (too_large(node.mapped())) return;
    admit_recent(recent_cost(node.key(), node.mapped()));
    recent.emplace(std::move(node.key()), std::move(node.mapped()));
  }

  // `key` of `family` as the maps hold it (family byte + key), built in a buffer the
  // writer reuses: a lookup allocates nothing. Valid until the next call.
  std::string probe;
  std::string const& tag(cf family, std::string_view key) {
    probe.assign(1, static_cast<char>(family));
    probe.append(key);
    return probe;
  }
  static cf family_of(std::string const& tagged) { return static_cast<cf>(tagged[0]); }

  // Keys put with put_last in this batch (some may since have been undone or rewritten):
  // each is written once, with what `written` holds for it, just before the batch commits.
  std::unordered_set<std::string> last_keys;

  void write_last_values() {
    for (auto const& tagged : last_keys) {
      auto it = written.find(tagged);
      if (it == written.end()) continue;  // only an undone request put it
      auto* family = cfs[static_cast<int>(family_of(tagged))];
      rocksdb::Slice key(tagged.data() + 1, tagged.size() - 1);
      if (it->second)
        check(batch.Put(family, key, rocksdb::Slice(*it->second)), "Put");
      else
        check(batch.Delete(family, key), "Delete");
    }
    last_keys.clear();
  }

  void record(std::string const& tagged, value v) {
    auto it = written.find(tagged);
    bool fresh = it == written.end();
    if (fresh) it = written.emplace(tagged, std::nullopt).first;
    undo.emplace_back(&*it, fresh ? std::nullopt : std::optional<value>(std::move(it->second)));
    it->second = std::move(v);
  }

  void begin_request() {
    undo.clear();
    batch.SetSavePoint();
  }
  void keep_request() { check(batch.PopSavePoint(), "PopSavePoint"); }
  void undo_request() {
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
      if (it->second)
        it->first->second = std::move(*it->second);
      else
        written.erase(it->first->first);
    }
    check(batch.RollbackToSavePoint(), "RollbackToSavePoint");
  }

  // A part of the running request (rocks_batch::attempt): undone alone if it throws.
  std::size_t begin_part() {
    batch.SetSavePoint();
    return undo.size();
  }
  void keep_part() { check(batch.PopSavePoint(), "PopSavePoint"); }
  void undo_part(std::size_t mark) {
    // An entry the part made fresh is erased here; no entry before `mark` points at it
    // (the key was not in `written` when the part began).
    while (undo.size() > mark) {
      auto& [entry, before] = undo.back();
      if (before)
        entry->second = std::move(*before);
      else
        written.erase(written.find(entry->first));
      undo.pop_back();
    }
    check(batch.RollbackToSavePoint(), "RollbackToSavePoint");
  }

  // After the batch's fate is known: committed values of cached families are remembered;
  // after a failed write nothing cached can be trusted.
  void finish(bool committed) {
    ++generation;
    if (!committed) {
      cache.clear();
      recent.clear();
      recent_size = 0;
    } else {
      // The entries move into the cache as they are (no copies of keys or values).
      for (auto it = written.begin(); it != written.end();) {
        if (!cached[static_cast<std::size_t>(family_of(it->first))]) {
          if (is_recent(family_of(it->first))) {
            keep_recent(written.extract(it++));
            continue;
          }
          ++it;
          continue;
        }
        if (cache.size() >= cache_limit) cache.clear();
        auto node = written.extract(it++);
        cache.insert_or_assign(std::move(node.key()), std::move(node.mapped()));
      }
    }
    written.clear();
    undo.clear();
    last_keys.clear();
    batch.Clear();
  }
};

}  // namespace petchat::store::detail
