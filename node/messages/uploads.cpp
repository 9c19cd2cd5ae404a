// Resumable uploads' records (docs/PROTOCOL.md, "Resumable uploads"; keys in
// detail/assets.hpp): started against the quota, advanced as chunks become durable, and
// once complete kept until they expire, naming the asset they became (a client whose last
// chunk's answer was lost asks). The files are node/assets'.
#include <sodium.h>

#include "node/async/async.hpp"
#include "node/messages/detail/asset_records.hpp"
#include "node/messages/detail/service.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::messages {

using detail::over_quota;

namespace {

upload_view view_of(std::string const& id, records::upload_record const& rec) {
  upload_view v;
  v.id = id;
  v.user = rec.user();
  v.length = rec.length();
  v.offset = rec.offset();
  v.created_at_ms = rec.created_at_ms();
  v.expires_at_ms = rec.expires_at_ms();
  v.name = rec.name();
  v.declared_type = rec.declared_type();
  v.expected_hash = rec.expected_hash();
  v.asset = rec.asset();
  return v;
}

std::string new_upload_id() {
  unsigned char raw[16];
  randombytes_buf(raw, sizeof raw);
  return format::base64url(std::string_view(reinterpret_cast<char const*>(raw), sizeof raw));
}

}  // namespace

// The quota check inside a write: `more` bytes on top of what `user` stores.
std::optional<errors::failure> detail::over_quota(config::assets_section const& limits, std::uint64_t used,
                                                  std::uint64_t more) {
  if (more > limits.max_asset_bytes)
    return fail(code::asset_too_large,
                "the asset is larger than the largest allowed (" + std::to_string(limits.max_asset_bytes) + " bytes)");
  if (used + more <= limits.quota_bytes) return std::nullopt;
  auto f = fail(code::quota_exceeded, "storing " + std::to_string(more) +
                                          " more bytes would exceed your quota: " + std::to_string(used) + " of " +
                                          std::to_string(limits.quota_bytes) + " bytes are in use");
  f.numbers = {{"used_bytes", used}, {"limit_bytes", limits.quota_bytes}, {"needed_bytes", more}};
  return f;
}

bool message_service::upload_exists(std::string const& id) const {
  auto rec = parse<records::upload_record>(impl_->db.get(cf::assets, keys::upload_key(id)));
  return rec && rec->asset().empty();
}

awaitable<result<upload_view>> message_service::begin_upload(std::string user, upload_view spec,
                                                             std::uint64_t streaming) {
  auto& m = *impl_;
  struct state {
    std::optional<errors::failure> refused;
    records::upload_record rec;
  };
  auto st = std::make_shared<state>();
  auto id = new_upload_id();
  auto now = now_ms();
  st->rec.set_user(user);
  st->rec.set_length(spec.length);
  st->rec.set_created_at_ms(now);
  st->rec.set_expires_at_ms(now + std::int64_t(m.assets.upload_expiry_s) * 1000);
  st->rec.set_name(spec.name);
  st->rec.set_declared_type(spec.declared_type);
  st->rec.set_expected_hash(spec.expected_hash);
  store::rocks_db::write_fn mutation = [&m, st, user, id, streaming](store::rocks_batch& b) {
    st->refused.reset();
    auto used = keys::read_u64(b, keys::quota_key(user)) + streaming;  // one-request uploads arriving too
    if (st->refused = over_quota(m.assets, used, st->rec.length()); st->refused) return false;
    if (keys::read_u64(b, keys::upload_count_key(user)) >= m.assets.max_uploads_per_user) {
      st->refused = fail(code::too_many_uploads, "you have " + std::to_string(m.assets.max_uploads_per_user) +
                                                     " uploads in progress already: finish or delete one first");
      st->refused->retry_after_s = 60;
      return false;
    }
    keys::add_u64(b, keys::quota_key(user), std::int64_t(st->rec.length()));
    keys::add_u64(b, keys::upload_count_key(user), 1);
    b.put(cf::assets, keys::upload_key(id), st->rec.SerializeAsString());
    b.put(cf::assets, keys::upload_expiry_key(st->rec.expires_at_ms(), id), "");
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the upload could not be started");
  if (st->refused) co_return *st->refused;
  co_return view_of(id, st->rec);
}

result<upload_view> message_service::upload(std::string const& user, std::string const& id) const {
  auto rec = parse<records::upload_record>(impl_->db.get(cf::assets, keys::upload_key(id)));
  if (!rec || rec->user() != user || rec->expires_at_ms() <= now_ms())
    return fail(code::upload_not_found, "no upload '" + id + "' of yours");
  return view_of(id, *rec);
}

awaitable<errors::status> message_service::advance_upload(std::string id, std::uint64_t offset) {
  auto& m = *impl_;
  store::rocks_db::write_fn mutation = [id, offset](store::rocks_batch& b) {
    auto rec = parse<records::upload_record>(b.get(cf::assets, keys::upload_key(id)));
    if (!rec || offset <= rec->offset()) return false;
    rec->set_offset(offset);
    b.put(cf::assets, keys::upload_key(id), rec->SerializeAsString());
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the upload's progress could not be stored");
  co_return errors::ok();
}

namespace {

// Complete uploads whose records a user keeps at once (a client asks what its upload
// became only if the answer was lost): beyond, a completion's record goes at once, so that
// uploads completed again and again cannot grow the store until they expire.
constexpr std::uint64_t max_completed_kept = 64;

// Inside a write: gives an upload's reservation back (a complete one holds none: it counts
// among the user's complete ones kept).
void release_upload(store::rocks_batch& b, records::upload_record const& rec) {
  if (!rec.asset().empty()) {
    keys::add_u64(b, keys::completed_uploads_key(rec.user()), -1);
    return;
  }
  keys::add_u64(b, keys::quota_key(rec.user()), -std::int64_t(rec.length()));
  keys::add_u64(b, keys::upload_count_key(rec.user()), -1);
}

// Inside a write: removes an upload's record and gives its reservation back. Whether it was
// in progress (not complete); nullopt: there was none.
std::optional<bool> drop_upload(store::rocks_batch& b, std::string const& id) {
  auto rec = parse<records::upload_record>(b.get(cf::assets, keys::upload_key(id)));
  if (!rec) return std::nullopt;
  b.erase(cf::assets, keys::upload_key(id));
  b.erase(cf::assets, keys::upload_expiry_key(rec->expires_at_ms(), id));
  release_upload(b, *rec);
  return rec->asset().empty();
}

}  // namespace

void detail::complete_upload(store::rocks_batch& b, std::string const& id, std::string const& hash) {
  auto rec = parse<records::upload_record>(b.get(cf::assets, keys::upload_key(id)));
  if (!rec || !rec->asset().empty()) return;
  release_upload(b, *rec);
  if (keys::read_u64(b, keys::completed_uploads_key(rec->user())) >= max_completed_kept) {
    b.erase(cf::assets, keys::upload_key(id));
    b.erase(cf::assets, keys::upload_expiry_key(rec->expires_at_ms(), id));
    return;
  }
  keys::add_u64(b, keys::completed_uploads_key(rec->user()), 1);
  rec->set_offset(rec->length());
  rec->set_asset(hash);
  b.put(cf::assets, keys::upload_key(id), rec->SerializeAsString());
}

awaitable<result<bool>> message_service::end_upload(std::string id) {
  auto& m = *impl_;
  auto dropped = std::make_shared<bool>(false);
  store::rocks_db::write_fn mutation = [id, dropped](store::rocks_batch& b) {
    auto there = drop_upload(b, id);
    *dropped = there.value_or(false);
    return there.has_value();
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the upload could not be removed");
  co_return *dropped;
}

}  // namespace petchat::messages
