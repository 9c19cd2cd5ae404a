// The upkeep of the asset records (docs/PROTOCOL.md, "Assets"; keys in detail/assets.hpp):
// what the collector removes, and the figures of `petchatctl assets`. Other regions' assets
// are remote_assets.cpp's.
#include <future>

#include "node/async/async.hpp"
#include "node/messages/detail/asset_records.hpp"
#include "node/messages/detail/service.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::messages {

std::map<std::string, std::vector<std::string>> message_service::assets_due(std::int64_t now, std::size_t max) const {
  std::map<std::string, std::vector<std::string>> out;
  impl_->db.scan(cf::assets, "g/", keys::collect_key(now + 1, ""), [&](std::string_view key, std::string_view) {
    out[keys::after_time(key)].emplace_back(key);
    return out.size() < max;
  });
  return out;
}

std::vector<std::string> message_service::uploads_expired(std::int64_t now, std::size_t max) const {
  std::vector<std::string> out;
  impl_->db.scan(cf::assets, "e/", keys::upload_expiry_key(now + 1, ""), [&](std::string_view key, std::string_view) {
    out.push_back(keys::after_time(key));
    return out.size() < max;
  });
  return out;
}

namespace {

// Inside a write: removes an asset no message refers to, its uploaders' records (their
// quota given back) and its due entries. Its thumbnail goes with it unless something
// refers to that. The uploaders are read from committed state: the caller's claim on the
// hash keeps uploads of the same bytes out of the meantime.
void remove_asset(store::rocks_batch& b, std::string const& hash, records::asset_record const& rec,
                  std::vector<std::pair<std::string, std::uint64_t>> const& uploaders) {
  b.erase(cf::assets, keys::asset_key(hash));
  if (!rec.fetched_from().empty())  // given back to the region it was fetched from
    keys::add_u64(b, keys::region_fetched_key(rec.fetched_from()), -std::int64_t(rec.size()));
  for (auto const& [user, size] : uploaders) {
    b.erase(cf::assets, keys::uploader_key(user, hash));
    b.erase(cf::assets, keys::uploaders_key(hash, user));
    keys::add_u64(b, keys::quota_key(user), -std::int64_t(size));
  }
}

std::vector<std::pair<std::string, std::uint64_t>> uploaders_of(message_service::impl const& m,
                                                                std::string const& hash) {
  std::vector<std::pair<std::string, std::uint64_t>> out;
  auto first = keys::uploaders_first(hash);
  m.db.scan(cf::assets, first, keys::prefix_end(first), [&](std::string_view key, std::string_view) {
    std::string user(key.substr(first.size()));
    auto u = parse<records::uploader_record>(m.db.get(cf::assets, keys::uploader_key(user, hash)));
    out.emplace_back(user, u ? u->size() : 0);
    return true;
  });
  return out;
}

// The keys under `first` (committed state), at most 4096, whole or past `first`.
std::vector<std::string> keys_under(message_service::impl const& m, std::string const& first, bool whole) {
  std::vector<std::string> out;
  m.db.scan(cf::assets, first, keys::prefix_end(first), [&](std::string_view key, std::string_view) {
    out.emplace_back(whole ? key : key.substr(first.size()));
    return out.size() < 4096;
  });
  return out;
}

// The x/ keys of an asset: the regions that showed they hold its bytes.
std::vector<std::string> holders_of(message_service::impl const& m, std::string const& hash) {
  return keys_under(m, keys::holders_first(hash), true);
}

// The originals a thumbnail was linked to (its t/ keys).
std::vector<std::string> originals_of(message_service::impl const& m, std::string const& thumb) {
  return keys_under(m, keys::thumbnail_pairs_first(thumb), false);
}

}  // namespace

awaitable<result<collected_asset>> message_service::collect_asset(std::string hash, std::vector<std::string> due,
                                                                  std::int64_t now) {
  auto& m = *impl_;
  auto st = std::make_shared<collected_asset>();
  auto rec = parse<records::asset_record>(m.db.get(cf::assets, keys::asset_key(hash)));
  auto uploaders = uploaders_of(m, hash);
  auto holders = holders_of(m, hash);      // x/ keys: regions that showed they hold the bytes
  auto originals = originals_of(m, hash);  // if it is a thumbnail
  decltype(uploaders) thumb_uploaders;
  decltype(holders) thumb_holders;
  if (rec && !rec->thumbnail().empty()) {
    thumb_uploaders = uploaders_of(m, rec->thumbnail());
    thumb_holders = holders_of(m, rec->thumbnail());
  }
  auto grace_ms = std::int64_t(m.assets.grace_s) * 1000;
  store::rocks_db::write_fn mutation = [&m, st, hash, now, due, uploaders, holders, originals, thumb_uploaders,
                                        thumb_holders, grace_ms](store::rocks_batch& b) {
    *st = collected_asset{};
    for (auto const& key : due) b.erase(cf::assets, key);
    auto rec = parse<records::asset_record>(b.get(cf::assets, keys::asset_key(hash)));
    if (!rec || keys::read_u64(b, keys::refs_key(hash)) > 0) return true;
    // A thumbnail goes with its (last) original, not before: one stored, or one still to be
    // fetched from another region (looked at again after the grace period: that fetch may
    // be given up). An original that went without it (a message deleted before its
    // thumbnail arrived, the thumbnail fetched first) keeps it no longer.
    switch (keys::has_original(b, *rec, hash, originals)) {
      case keys::original::stored:
        return true;
      case keys::original::awaited:
        b.put(cf::assets, keys::collect_key(now + grace_ms, hash), "");
        return true;
      case keys::original::none:  // its pairs go with it: an original linking it later counts afresh
        if (originals.empty()) break;
        for (auto const& o : originals) b.erase(cf::assets, keys::thumbnail_pair_key(hash, o));
        b.erase(cf::assets, keys::originals_key(hash));
        break;
    }
    // An upload of it within the grace period keeps it (its own due entry comes later).
    for (auto const& [user, size] : uploaders) {
      auto u = parse<records::uploader_record>(b.get(cf::assets, keys::uploader_key(user, hash)));
      if (u && u->at_ms() + grace_ms > now) return true;
    }
    remove_asset(b, hash, *rec, uploaders);
    for (auto const& key : holders) b.erase(cf::assets, key);
    st->removed = true;
    st->blobs.push_back(hash);
    auto thumb = parse<records::asset_record>(b.get(cf::assets, keys::asset_key(rec->thumbnail())));
    if (rec->thumbnail().empty() || !thumb) return true;
    bool orphan = keys::unlink_thumbnail(b, *thumb, rec->thumbnail(), hash);
    if (keys::read_u64(b, keys::refs_key(rec->thumbnail())) > 0) return true;
    if (orphan && thumb_uploaders.empty()) {
      remove_asset(b, rec->thumbnail(), *thumb, {});
      for (auto const& key : thumb_holders) b.erase(cf::assets, key);
      st->blobs.push_back(rec->thumbnail());
    } else if (orphan) {  // kept by its uploaders for now: looked at again after the grace period
      b.put(cf::assets, keys::collect_key(now + grace_ms, rec->thumbnail()), "");
    }
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the collector could not remove an asset");
  co_return *st;
}

std::vector<std::pair<std::string, std::uint64_t>> message_service::all_assets() const {
  std::vector<std::pair<std::string, std::uint64_t>> out;
  impl_->db.scan(cf::assets, "a/", "a0", [&](std::string_view key, std::string_view value) {
    records::asset_record rec;
    rec.ParseFromArray(value.data(), static_cast<int>(value.size()));
    out.emplace_back(std::string(key.substr(2)), rec.size());
    return true;
  });
  return out;
}

std::vector<asset_usage> message_service::asset_usage_by_user() const {
  std::vector<asset_usage> out;
  impl_->db.scan(cf::assets, "q/", "q0", [&](std::string_view key, std::string_view value) {
    out.push_back({std::string(key.substr(2)), keys::from_be64(value), 0});
    return true;
  });
  for (auto& u : out)
    if (auto n = impl_->db.get(cf::assets, keys::upload_count_key(u.user))) u.uploads = keys::from_be64(*n);
  return out;
}

namespace {

// A write made before any traffic, waited for; throws store::rocks_error saying `what`
// could not be written.
void write_before_traffic(message_service::impl& m, store::rocks_db::write_fn fn, char const* what) {
  auto done = std::make_shared<std::promise<store::write_outcome>>();
  auto outcome = done->get_future();
  m.db.submit(std::move(fn), [done](store::write_outcome o) { done->set_value(o); });
  if (outcome.get() != store::write_outcome::committed)
    throw store::rocks_error(std::string(what) + " could not be written");
}

}  // namespace

void detail::index_conversation_refs(message_service::impl& m) {
  if (m.db.get(cf::state, keys::conversation_refs_indexed_key())) return;
  constexpr std::size_t per_write = 4096;
  // Where an earlier start stopped (each write records it): a store with many references
  // gets further at every start, however soon each is stopped.
  auto progress = keys::conversation_refs_progress_key();
  std::string from = m.db.get(cf::state, progress).value_or("r/");
  std::size_t indexed = 0;
  for (;;) {
    auto found = std::make_shared<std::vector<std::pair<std::string, std::string>>>();  // r/ key, conversation
    m.db.scan(cf::assets, from, keys::prefix_end("r/"), [&](std::string_view key, std::string_view conv) {
      found->emplace_back(key, conv);
      return found->size() < per_write;
    });
    bool last = found->size() < per_write;
    store::rocks_db::write_fn fn = [found, last, progress](store::rocks_batch& b) {
      for (auto const& [key, conv] : *found) {
        auto hash = key.substr(2, keys::asset_hash_bytes), raw_id = key.substr(2 + keys::asset_hash_bytes);
        b.put(cf::assets, keys::conversation_ref_key(hash, conv, raw_id), "");
      }
      if (last) {
        b.put(cf::state, keys::conversation_refs_indexed_key(), "");
        b.erase(cf::state, progress);
      } else {
        b.put(cf::state, progress, found->back().first + '\0');
      }
      return true;
    };
    write_before_traffic(m, std::move(fn), "the index of asset references by conversation");
    indexed += found->size();
    if (last) break;
    from = found->back().first + '\0';
    if (indexed % (256 * per_write) == 0)
      log::get("assets")->info("indexing asset references by conversation (store format 5): {} so far", indexed);
  }
  if (indexed > 0) log::get("assets")->info("indexed {} asset references by conversation (store format 5)", indexed);
}

void detail::index_pending_refs(message_service::impl& m) {
  if (m.db.get(cf::state, keys::pending_refs_indexed_key())) return;
  // Waiting references last while their region is asked for the bytes: few, and a start
  // stopped meanwhile writes the same keys again.
  constexpr std::size_t per_write = 4096;
  std::string from = keys::pending_refs_first("");
  std::size_t indexed = 0;
  for (;;) {
    auto found = std::make_shared<std::vector<std::pair<std::string, std::string>>>();  // v/ key, its value
    m.db.scan(cf::assets, from, keys::prefix_end(keys::pending_refs_first("")),
              [&](std::string_view key, std::string_view value) {
                found->emplace_back(key, value);
                return found->size() < per_write;
              });
    bool last = found->size() < per_write;
    store::rocks_db::write_fn fn = [found, last](store::rocks_batch& b) {
      for (auto const& [key, value] : *found) {
        auto hash = key.substr(2, keys::asset_hash_bytes), raw_id = key.substr(2 + keys::asset_hash_bytes);
        auto conv = keys::pending_ref_conversation(value);
        b.put(cf::assets, keys::pending_conversation_ref_key(hash, conv, raw_id), "");
      }
      if (last) b.put(cf::state, keys::pending_refs_indexed_key(), "");
      return true;
    };
    write_before_traffic(m, std::move(fn), "the index of waiting asset references by conversation");
    indexed += found->size();
    if (last) break;
    from = found->back().first + '\0';
  }
  if (indexed > 0)
    log::get("assets")->info("indexed {} waiting asset references by conversation (store format 7)", indexed);
}

}  // namespace petchat::messages
