// The asset service's records (docs/PROTOCOL.md, "Assets"; key layouts in detail/assets.hpp): who
// may download an asset, quotas, recording a complete upload, and the attachments of a send.
// Resumable uploads' records are in uploads.cpp, the collector's side and other regions'
// assets in asset_upkeep.cpp; the bytes, node/assets.
#include <sodium.h>

#include <functional>
#include <set>

#include "node/async/async.hpp"
#include "node/messages/detail/asset_records.hpp"
#include "node/messages/detail/service.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::messages {

using detail::complete_upload;
using detail::originals_of;
using detail::over_quota;
using detail::put_asset;
using detail::view_of;

std::string detail::asset_hash_of(std::string_view printed) {
  auto raw = printed.size() == 2 * asset_hash_bytes ? format::from_hex(printed) : std::nullopt;
  return raw ? *raw : std::string();
}

std::string detail::print_asset_hash(std::string const& hash) {
  return format::hex(hash);
}

// Shared with asset_upkeep.cpp (detail/asset_records.hpp).

std::vector<std::string> detail::originals_of(message_service::impl const& m, std::string const& thumb,
                                              records::asset_record const& rec) {
  std::vector<std::string> out;
  auto first = keys::thumbnail_pairs_first(thumb);
  m.db.scan(cf::assets, first, keys::prefix_end(first), [&](std::string_view key, std::string_view) {
    out.emplace_back(key.substr(first.size()));
    return out.size() < 64;
  });
  if (out.empty() && !rec.thumbnail_of().empty()) out.push_back(rec.thumbnail_of());  // from before the pairs
  return out;
}

namespace {

// The first key in [from, end of `prefix`), without the prefix; nullopt if none.
std::optional<std::string> next_under(message_service::impl const& m, cf family, std::string const& prefix,
                                      std::string const& from) {
  std::optional<std::string> rest;
  m.db.scan(family, from, keys::prefix_end(prefix), [&](std::string_view key, std::string_view) {
    rest.emplace(key.substr(prefix.size()));
    return false;
  });
  return rest;
}

// The first conversation at or after `at` holding the asset whose k/ keys start with
// `first` (a conversation id holds no NUL: the NUL ends it in the key).
std::optional<std::string> holder_from(message_service::impl const& m, std::string const& first,
                                       std::string const& at) {
  auto rest = next_under(m, cf::assets, first, first + at);
  if (rest) *rest = rest->substr(0, rest->find('\0'));
  return rest;
}

}  // namespace

void detail::for_each_holding(message_service::impl const& m, std::string const& hash, std::size_t max,
                              std::function<bool(std::string const&)> const& fn) {
  auto first = keys::conversation_refs_first(hash);
  auto conv = holder_from(m, first, "");
  for (std::size_t n = 0; conv && n < max && fn(*conv); ++n)
    conv = holder_from(m, first, *conv + '\x01');  // past every key of this conversation
}

bool detail::for_each_shared(message_service::impl const& m, std::string const& holders, std::string const& user,
                             std::size_t& seeks_left, std::function<bool(std::string const&)> const& fn) {
  std::size_t seeks = 2;
  auto spent = [&](bool out) {
    seeks_left -= std::min(seeks, seeks_left);
    return out;
  };
  auto parts = keys::participants_owner(user) + '\0';
  auto part_from = [&](std::string const& at) { return next_under(m, cf::conversations, parts, parts + at); };
  auto a = holder_from(m, holders, ""), b = part_from("");
  // Each step moves the one behind up to the other: at most twice the smaller set's seeks.
  for (; a && b && seeks < seeks_left; ++seeks) {
    if (*a == *b) {
      if (!fn(*a)) return spent(true);
      a = holder_from(m, holders, *a + '\x01');
      b = part_from(*b + '\0');
      ++seeks;
    } else if (*a < *b) {
      a = holder_from(m, holders, *b);
    } else {
      b = part_from(*a);
    }
  }
  return spent(!a || !b);  // one side ran out, not the seeks
}

std::vector<std::string> detail::conversations_holding(message_service::impl const& m, std::string const& hash,
                                                       std::size_t max) {
  // Those of the oldest references first (r/ keys are in message id order: references
  // added later, in however many conversations, do not push these out), in a short pass...
  std::set<std::string> seen;
  std::size_t visited = 0;
  auto first = keys::asset_refs_first(hash);
  m.db.scan(cf::assets, first, keys::prefix_end(first), [&](std::string_view, std::string_view conv) {
    seen.emplace(conv);
    return seen.size() < max && ++visited < 1024;  // this runs in the writer too
  });
  if (seen.size() >= max) return {seen.begin(), seen.end()};
  // ...then more in key order, one seek each (k/ keys), however many references a few
  // conversations hold, up to `max` in all.
  for_each_holding(m, hash, max, [&](std::string const& conv) {
    seen.insert(conv);
    return seen.size() < max;
  });
  return {seen.begin(), seen.end()};
}

asset_view detail::view_of(std::string const& hash, records::asset_record const& rec) {
  asset_view v;
  v.hash = hash;
  v.size = rec.size();
  v.content_type = rec.content_type();
  v.created_at_ms = rec.created_at_ms();
  v.width = rec.width();
  v.height = rec.height();
  v.thumbnail = rec.thumbnail();
  v.thumbnail_of = rec.thumbnail_of();
  return v;
}

records::asset_record detail::put_asset(store::rocks_batch& b, std::string const& hash, std::uint64_t size,
                                        std::string const& type, std::int64_t now, std::int64_t due_ms) {
  if (auto rec = parse<records::asset_record>(b.get(cf::assets, keys::asset_key(hash)))) return *rec;
  records::asset_record rec;
  rec.set_size(size);
  rec.set_content_type(type);
  rec.set_created_at_ms(now);
  b.put(cf::assets, keys::asset_key(hash), rec.SerializeAsString());
  b.put(cf::assets, keys::collect_key(due_ms, hash), "");
  return rec;
}

bool detail::visible_reference(message_service::impl const& m, std::string const& user, std::string const& hash,
                               ref_kind kind, access_budget& request,
                               std::function<bool(records::stored_message const&)> const& fn) {
  check_budget left(request);
  auto holders =
      kind == ref_kind::counted ? keys::conversation_refs_first(hash) : keys::pending_conversation_refs_first(hash);
  auto refs_in = [&](std::string const& conv) {
    return kind == ref_kind::counted ? keys::conversation_refs_first(hash, conv)
                                     : keys::pending_conversation_refs_first(hash, conv);
  };
  // Per conversation and in all: references the user may not see (from before they joined
  // a group whose history is hidden, say) use up one conversation's share, not the others'.
  constexpr std::size_t per_conversation = 1024;
  auto now = now_ms();
  bool found = false;
  auto look = [&](std::string const& conv) {  // false: stop
    if (!m.member(user, conv)) return true;
    auto first = refs_in(conv);
    std::size_t here = 0;
    // Newest first: the message a member just got is likelier theirs than one of years ago.
    m.db.scan_reverse(cf::assets, first, keys::prefix_end(first), [&](std::string_view key, std::string_view) {
      auto id = key.substr(first.size());
      if (id.size() == 16) {  // a message id (nothing else is written here)
        auto sm = m.load(std::string(id));
        found = sm && m.visible(*sm, user, now) && m.may_see(user, *sm) && fn(*sm);
      }
      return !found && ++here < per_conversation && detail::spend(left.keys);
    });
    return !found && left.keys > 0;
  };
  bool walked_all = detail::for_each_shared(m, holders, user, left.seeks, look);
  if (found || left.keys == 0) return found;
  // A direct conversation from before users' parts were kept has none: such conversations
  // are found through the user's own contacts (u/: each names the conversation with that
  // peer; one per person who wrote to them or whom they wrote to).
  auto owner = keys::contacts_owner(user);
  m.db.scan(cf::conversations, keys::first_of(owner), keys::past_last_of(owner),
            [&](std::string_view, std::string_view value) {
              std::string conv(value);
              if (walked_all && m.db.get(cf::conversations, keys::participant_key(user, conv)))
                return detail::spend(left.contacts);  // looked at above
              auto refs = refs_in(conv);
              bool holds = false;
              m.db.scan(cf::assets, refs, keys::prefix_end(refs), [&](std::string_view, std::string_view) {
                holds = true;
                return false;
              });
              return (!holds || look(conv)) && detail::spend(left.contacts);
            });
  return found;
}

namespace {

// The uploader, and a current member of a conversation who may see a message there that
// refers to the asset: not one who joined a group after it with its history hidden, nor
// one who hid it or whose copy expired. The conversations looked at are those both holding
// the asset and the user's (their parts, p/), so references in other conversations,
// however many, do not push the user's own out of reach; the bounds are on one request's
// work.
bool may_download(message_service::impl const& m, std::string const& user, std::string const& hash,
                  detail::access_budget& request) {
  if (m.db.get(cf::assets, keys::uploader_key(user, hash))) return true;
  auto any = [](records::stored_message const&) { return true; };
  return detail::visible_reference(m, user, hash, detail::ref_kind::counted, request, any);
}

errors::failure no_asset() {
  return fail(code::asset_not_found, "no such asset");
}

errors::failure pending(std::string const& region) {
  auto f = fail(code::asset_pending, "the asset is still on its way from region '" + region + "'");
  f.retry_after_s = 2;
  return f;
}

// An asset `user` may not download (yet): asset_pending if a message of another region in
// one of their conversations refers to it and that region is still asked for its bytes,
// else asset_not_found.
errors::failure pending_or_none(message_service::impl const& m, std::string const& user, std::string const& hash,
                                detail::access_budget& request) {
  if (auto region = detail::awaits_proof(m, user, hash, request)) return pending(*region);
  return no_asset();
}

// An asset not stored here: on its way from another region (asset_pending) to one who may
// see it, else as pending_or_none.
errors::failure fetching_or_none(message_service::impl const& m, std::string const& user, std::string const& hash) {
  detail::access_budget left;  // one for every check of the request
  auto f = parse<records::fetch_record>(m.db.get(cf::assets, keys::fetch_key(hash)));
  if (!f) return pending_or_none(m, user, hash, left);
  auto const& original = f->thumbnail_of().empty() ? hash : f->thumbnail_of();
  if (may_download(m, user, original, left)) return pending(f->region());
  return pending_or_none(m, user, original, left);
}

}  // namespace

void message_service::set_asset_limits(config::assets_section const& limits) {
  impl_->assets = limits;
}

bool message_service::asset_exists(std::string const& hash) const {
  return impl_->db.get(cf::assets, keys::asset_key(hash)).has_value();
}

std::string message_service::asset_thumbnail(std::string const& hash) const {
  auto rec = parse<records::asset_record>(impl_->db.get(cf::assets, keys::asset_key(hash)));
  return rec ? rec->thumbnail() : std::string();
}

result<asset_view> message_service::asset_for(std::string const& user, std::string const& hash) const {
  auto& m = *impl_;
  auto rec = parse<records::asset_record>(m.db.get(cf::assets, keys::asset_key(hash)));
  if (!rec) return fetching_or_none(m, user, hash);
  detail::access_budget left;  // one for the thumbnail and all its originals
  auto originals = originals_of(m, hash, *rec);
  bool allowed = std::ranges::any_of(originals, [&](std::string const& original) {  // cheap: before any walk
    return m.db.get(cf::assets, keys::uploader_key(user, original)) && asset_exists(original);
  });
  allowed = allowed || may_download(m, user, hash, left);
  for (auto const& original : originals)
    allowed = allowed || (asset_exists(original) && may_download(m, user, original, left));
  if (!allowed) {
    for (auto const& original : originals)
      if (auto region = detail::awaits_proof(m, user, original, left)) return pending(*region);
    return pending_or_none(m, user, hash, left);
  }
  auto v = view_of(hash, *rec);
  if (auto mine = parse<records::uploader_record>(m.db.get(cf::assets, keys::uploader_key(user, hash)))) {
    v.uploaded_by_caller = true;
    v.name = mine->name();
    v.declared_type = mine->declared_type();
    v.created_at_ms = mine->at_ms();  // the caller's own upload, as its answer said (record_asset)
  }
  return v;
}

result<bool> message_service::quota_allows(std::string const& user, std::uint64_t length,
                                           std::uint64_t streaming) const {
  auto& m = *impl_;
  auto used = m.db.get(cf::assets, keys::quota_key(user));
  if (auto bad = over_quota(m.assets, (used ? keys::from_be64(*used) : 0) + streaming, length)) return *bad;
  return true;
}

awaitable<result<asset_view>> message_service::record_asset(std::string user, new_asset a, std::string upload_id) {
  auto& m = *impl_;
  struct state {
    std::optional<errors::failure> refused;
    records::asset_record rec;
  };
  auto st = std::make_shared<state>();
  auto now = now_ms();
  auto due = now + std::int64_t(m.assets.grace_s) * 1000;
  store::rocks_db::write_fn mutation = [&m, st, user, a, upload_id, now, due](store::rocks_batch& b) {
    st->refused.reset();
    if (!upload_id.empty()) complete_upload(b, upload_id, a.hash);
    auto mine = keys::uploader_key(user, a.hash);
    if (auto again = parse<records::uploader_record>(b.get(cf::assets, mine))) {
      again->set_at_ms(now);  // the grace period starts again
      b.put(cf::assets, mine, again->SerializeAsString());
    } else {
      if (st->refused = over_quota(m.assets, keys::read_u64(b, keys::quota_key(user)), a.size); st->refused)
        return false;
      records::uploader_record u;
      u.set_size(a.size);
      u.set_at_ms(now);
      u.set_name(a.name);
      u.set_declared_type(a.declared_type);
      b.put(cf::assets, mine, u.SerializeAsString());
      b.put(cf::assets, keys::uploaders_key(a.hash, user), "");
      keys::add_u64(b, keys::quota_key(user), std::int64_t(a.size));
    }
    bool fresh = !b.get(cf::assets, keys::asset_key(a.hash));
    st->rec = put_asset(b, a.hash, a.size, a.content_type, now, due);
    if (fresh) st->rec.set_width(a.width), st->rec.set_height(a.height);
    // Also for bytes stored before without one (this upload made it: finish).
    bool thumbnail = !a.thumbnail_hash.empty() && a.thumbnail_hash != a.hash && st->rec.thumbnail().empty();
    if (thumbnail) {
      auto thumb = put_asset(b, a.thumbnail_hash, a.thumbnail_size, "image/jpeg", now, due);
      keys::link_thumbnail(b, thumb, a.thumbnail_hash, a.hash);  // never takes it from another original
      b.put(cf::assets, keys::asset_key(a.thumbnail_hash), thumb.SerializeAsString());
      st->rec.set_thumbnail(a.thumbnail_hash);
    }
    if (fresh || thumbnail) b.put(cf::assets, keys::asset_key(a.hash), st->rec.SerializeAsString());
    // Looked at again after a grace period from now: an upload never attached lives so long.
    if (!fresh) b.put(cf::assets, keys::collect_key(due, a.hash), "");
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the asset could not be stored");
  if (st->refused) co_return *st->refused;
  auto v = view_of(a.hash, st->rec);
  // The caller's upload, as of now: the stored bytes' own time would tell since when
  // someone else has held the same file here.
  v.created_at_ms = now;
  v.uploaded_by_caller = true;
  v.name = a.name;
  v.declared_type = a.declared_type;
  co_return v;
}

// Before a send's write: each attachment names an asset the sender may download; the
// node's facts about it replace whatever the client said. Not in a write: the write checks
// again that each asset is still there (attachments_stored).
std::optional<errors::failure> fill_attachments(message_service::impl const& m, std::string const& from,
                                                client::body& body) {
  if (static_cast<std::size_t>(body.attachments_size()) > m.options.max_attachments)
    return fail(code::invalid_field,
                "a message carries at most " + std::to_string(m.options.max_attachments) + " attachments", "body");
  detail::access_budget left;  // one for all the attachments
  for (auto& a : *body.mutable_attachments()) {
    auto hash = keys::asset_hash_of(a.asset_id());
    if (hash.empty())
      return fail(code::invalid_field, "an attachment's asset_id must be 64 lower-case hex digits", "body");
    auto rec = parse<records::asset_record>(m.db.get(cf::assets, keys::asset_key(hash)));
    if (!rec || !may_download(m, from, hash, left))
      return fail(code::asset_not_found, "no asset '" + a.asset_id() + "' of yours to attach", "body");
    if (a.duration_ms() > 86400000)
      return fail(code::invalid_field, "an attachment's duration_ms is at most 86400000", "body");
    auto name = format::clean_file_name(a.name());
    if (!name) return fail(code::invalid_field, "an attachment's name must be UTF-8", "body");
    a.set_name(*name);
    a.set_content_type(rec->content_type());
    a.set_size(rec->size());
    a.set_width(rec->width());
    a.set_height(rec->height());
    a.set_thumbnail_id(rec->thumbnail().empty() ? "" : keys::print_asset_hash(rec->thumbnail()));
  }
  return std::nullopt;
}

bool attachments_stored(store::rocks_batch& b, client::body const& body) {
  for (auto const& a : body.attachments())
    if (!b.get(cf::assets, keys::asset_key(keys::asset_hash_of(a.asset_id())))) return false;
  return true;
}

}  // namespace petchat::messages
