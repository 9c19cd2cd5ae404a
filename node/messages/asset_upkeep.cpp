// The upkeep of the asset records (docs/PROTOCOL.md, "Assets"; keys in detail/assets.hpp):
// what the collector removes, and other regions' assets, fetched here and served from here
// (docs/FEDERATION.md, "Assets across regions"); and the figures of `petchatctl assets`.
#include "node/async/async.hpp"
#include "node/messages/detail/asset_records.hpp"
#include "node/messages/detail/service.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::messages {

using detail::conversations_holding;
using detail::originals_of;
using detail::put_asset;
using detail::view_of;

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
void remove_asset(store::rocks_batch& b, std::string const& hash,
                  std::vector<std::pair<std::string, std::uint64_t>> const& uploaders) {
  b.erase(cf::assets, keys::asset_key(hash));
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

}  // namespace

awaitable<result<collected_asset>> message_service::collect_asset(std::string hash, std::vector<std::string> due,
                                                                  std::int64_t now) {
  auto& m = *impl_;
  auto st = std::make_shared<collected_asset>();
  auto rec = parse<records::asset_record>(m.db.get(cf::assets, keys::asset_key(hash)));
  auto uploaders = uploaders_of(m, hash);
  decltype(uploaders) thumb_uploaders;
  if (rec && !rec->thumbnail().empty()) thumb_uploaders = uploaders_of(m, rec->thumbnail());
  auto grace_ms = std::int64_t(m.assets.grace_s) * 1000;
  store::rocks_db::write_fn mutation = [&m, st, hash, now, due, uploaders, thumb_uploaders,
                                        grace_ms](store::rocks_batch& b) {
    *st = collected_asset{};
    for (auto const& key : due) b.erase(cf::assets, key);
    auto rec = parse<records::asset_record>(b.get(cf::assets, keys::asset_key(hash)));
    if (!rec || keys::read_u64(b, keys::refs_key(hash)) > 0) return true;
    // A thumbnail goes with its (last) original, not before.
    if (keys::has_original(b, *rec, hash)) return true;
    // An upload of it within the grace period keeps it (its own due entry comes later).
    for (auto const& [user, size] : uploaders) {
      auto u = parse<records::uploader_record>(b.get(cf::assets, keys::uploader_key(user, hash)));
      if (u && u->at_ms() + grace_ms > now) return true;
    }
    remove_asset(b, hash, uploaders);
    st->removed = true;
    st->blobs.push_back(hash);
    auto thumb = parse<records::asset_record>(b.get(cf::assets, keys::asset_key(rec->thumbnail())));
    if (rec->thumbnail().empty() || !thumb) return true;
    bool orphan = keys::unlink_thumbnail(b, *thumb, rec->thumbnail(), hash);
    if (keys::read_u64(b, keys::refs_key(rec->thumbnail())) > 0) return true;
    if (orphan && thumb_uploaders.empty()) {
      remove_asset(b, rec->thumbnail(), {});
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

std::vector<pending_fetch> message_service::fetches_due(std::int64_t now, std::size_t max) const {
  std::vector<pending_fetch> out;
  impl_->db.scan(cf::assets, "f/", "f0", [&](std::string_view key, std::string_view value) {
    records::fetch_record f;
    f.ParseFromArray(value.data(), static_cast<int>(value.size()));
    if (f.next_try_ms() <= now) out.push_back({std::string(key.substr(2)), f.region(), f.thumbnail_of(), f.tries()});
    return out.size() < max;
  });
  return out;
}

awaitable<errors::status> message_service::record_fetched(pending_fetch f, new_asset a) {
  auto& m = *impl_;
  auto now = now_ms();
  auto due = now + std::int64_t(m.assets.grace_s) * 1000;
  store::rocks_db::write_fn mutation = [f, a, now, due](store::rocks_batch& b) {
    b.erase(cf::assets, keys::fetch_key(f.hash));
    // Another region's word for which thumbnail an original has is taken only for bytes it
    // sends: a hash already stored here (someone's asset, or another original's thumbnail)
    // it named would give its members access to those bytes.
    if (b.get(cf::assets, keys::asset_key(f.hash))) return true;
    auto rec = put_asset(b, f.hash, a.size, a.content_type, now, due);
    rec.set_width(a.width);
    rec.set_height(a.height);
    if (!f.thumbnail_of.empty()) keys::link_thumbnail(b, rec, f.hash, f.thumbnail_of);
    if (!a.thumbnail_hash.empty() && a.thumbnail_hash != f.hash &&
        !b.get(cf::assets, keys::asset_key(a.thumbnail_hash))) {
      rec.set_thumbnail(a.thumbnail_hash);
      records::fetch_record next;
      next.set_region(f.region);
      next.set_thumbnail_of(f.hash);
      b.put(cf::assets, keys::fetch_key(a.thumbnail_hash), next.SerializeAsString());
    }
    b.put(cf::assets, keys::asset_key(f.hash), rec.SerializeAsString());
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("a fetched asset could not be stored");
  co_return errors::ok();
}

awaitable<errors::status> message_service::fetch_failed(pending_fetch f, bool drop) {
  auto& m = *impl_;
  auto now = now_ms();
  store::rocks_db::write_fn mutation = [f, drop, now](store::rocks_batch& b) {
    auto rec = parse<records::fetch_record>(b.get(cf::assets, keys::fetch_key(f.hash)));
    if (!rec) return false;
    if (drop) {
      b.erase(cf::assets, keys::fetch_key(f.hash));
      return true;
    }
    // Again after 1, 2, 4... seconds, at most 10 s apart.
    rec->set_tries(rec->tries() + 1);
    rec->set_next_try_ms(now + std::min<std::int64_t>(10000, std::int64_t(1000) << std::min(rec->tries(), 4u)));
    b.put(cf::assets, keys::fetch_key(f.hash), rec->SerializeAsString());
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("a fetch could not be put off");
  co_return errors::ok();
}

std::optional<asset_view> message_service::asset_for_region(std::string const& region, std::string const& hash) const {
  auto& m = *impl_;
  auto rec = parse<records::asset_record>(m.db.get(cf::assets, keys::asset_key(hash)));
  if (!rec) return std::nullopt;
  auto originals = originals_of(m, hash, *rec);
  originals.push_back(hash);
  for (auto const& original : originals)
    for (auto const& conv : conversations_holding(m, original, 4096)) {
      auto c = m.conversation(conv);
      if (!c) continue;
      for (auto const& member : c->members())
        if (ids::region_of(member) == region) return view_of(hash, *rec);
    }
  return std::nullopt;
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

}  // namespace petchat::messages
