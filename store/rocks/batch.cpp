// rocks_batch: what a write request reads and writes, through the writer's state
// (detail/group_commit.hpp): its batch, then the writer's caches, then the database.
#include "store/rocks/detail/group_commit.hpp"
#include "store/rocks/rocks.hpp"

namespace petchat::store {

using detail::check;
using detail::slice;

std::optional<std::string> rocks_batch::get(cf family, std::string_view key) const {
  auto& st = state_;
  auto const& tagged = st.tag(family, key);
  if (auto it = st.written.find(tagged); it != st.written.end()) return it->second;
  bool cached = st.cached[static_cast<std::size_t>(family)];
  if (cached)
    if (auto it = st.cache.find(tagged); it != st.cache.end()) return it->second;
  bool recent = st.is_recent(family);
  if (recent)
    if (auto it = st.recent.find(tagged); it != st.recent.end()) return it->second;
  std::optional<std::string> result;
  std::string value;
  auto s = st.db->Get(rocksdb::ReadOptions(), st.cfs[static_cast<int>(family)], slice(key), &value);
  if (!s.IsNotFound()) {
    check(s, "Get");
    result = std::move(value);
  }
  if (cached) {
    if (st.cache.size() >= st.cache_limit) st.cache.clear();
    st.cache.emplace(tagged, result);
  } else if (recent && !st.too_large(result)) {  // a miss: the key is not in `recent`
    std::string kept = tagged;
    st.admit_recent(detail::group_commit::recent_cost(kept, result));
    st.recent.emplace(std::move(kept), result);
  }
  return result;
}

void rocks_batch::put(cf family, std::string_view key, std::string_view value) {
  check(state_.batch.Put(state_.cfs[static_cast<int>(family)], slice(key), slice(value)), "Put");
  state_.record(state_.tag(family, key), std::string(value));
}

void rocks_batch::put_last(cf family, std::string_view key, std::string value) {
  auto const& tagged = state_.tag(family, key);
  state_.last_keys.insert(tagged);
  state_.record(tagged, std::move(value));
}

std::uint64_t rocks_batch::generation() const {
  return state_.generation;
}

void rocks_batch::erase(cf family, std::string_view key) {
  check(state_.batch.Delete(state_.cfs[static_cast<int>(family)], slice(key)), "Delete");
  state_.record(state_.tag(family, key), std::nullopt);
}

void rocks_batch::remember(cf family, std::string_view key, std::string value) {
  state_.record(state_.tag(family, key), std::move(value));
}

std::string rocks_batch::recall(cf family, std::string_view key, std::function<std::string()> const& load) {
  auto& st = state_;
  auto const& probe = st.tag(family, key);
  if (auto it = st.written.find(probe); it != st.written.end() && it->second) return *it->second;
  if (auto it = st.cache.find(probe); it != st.cache.end() && it->second) return *it->second;
  std::string tagged = probe;  // load() may use the batch, and with it the probe
  std::string value = load();
  if (st.cache.size() >= st.cache_limit) st.cache.clear();
  st.cache.insert_or_assign(std::move(tagged), value);
  return value;
}

std::optional<std::string> rocks_batch::attempt(std::function<void()> const& part) {
  auto mark = state_.begin_part();
  try {
    part();
  } catch (std::exception const& e) {
    state_.undo_part(mark);
    return std::string(e.what());
  } catch (...) {
    state_.undo_part(mark);
    return std::string("an unknown error");
  }
  state_.keep_part();
  return std::nullopt;
}

}  // namespace petchat::store
