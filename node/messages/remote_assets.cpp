// Other regions' assets (docs/FEDERATION.md, "Assets across regions"; keys in
// detail/assets.hpp): the references a message from another region makes to its
// attachments, the fetches that bring their bytes here, and the answers to other regions'
// requests.
//
// Assets are named by the hash of their bytes, so a hash must not work as a key: a region
// naming in a message of its own the hash of an asset stored here would otherwise give its
// members (whom this region then serves) and the message's recipients here bytes it never
// had. A reference from another region's message therefore counts (`r/`) at once only if
// that region has shown it holds the bytes (`x/`: it sent them all and they hashed to the
// id) or its sender may download them here already; else it waits (`v/`), giving access to
// nobody, until that region has sent the bytes: the fetch of an asset not stored here
// (`f/`), or, for one that is, a fetch made only as that proof (`y/`).
#include <map>

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

namespace {

// Conversations looked at (in the writer: a group's roster is searched) to see whether a
// remote sender may download an asset here already; waiting references turned into
// references per write.
constexpr std::size_t sender_check_max = 16;
constexpr std::size_t promote_per_write = 1024;
// References of one conversation to an asset, and parts of one conversation's members of
// the asking region, looked at per request for a piece of it.
constexpr std::size_t refs_looked_at = 1024;
constexpr std::size_t parts_looked_at = 1024;

std::string fetch_record_key(pending_fetch const& f) {
  return f.proof ? keys::proof_fetch_key(f.hash, f.region) : keys::fetch_key(f.hash);
}

// Whether group `conv` holds, among its newest references to `hash`, a message not
// expired at a position after `after`: one that a member of another region who joined at
// `after` sees (a group whose history is hidden hides those before). Newest first, and
// done at the first: the newest references are the likeliest to be seen.
bool refers_after(message_service::impl const& m, std::string const& hash, std::string const& conv, std::uint64_t after,
                  std::int64_t now) {
  auto first = keys::conversation_refs_first(hash, conv);
  bool found = false;
  std::size_t looked = 0;
  m.db.scan_reverse(cf::assets, first, keys::prefix_end(first), [&](std::string_view key, std::string_view) {
    auto id = key.substr(first.size());
    if (id.size() == 16)  // a message id (nothing else is written here)
      if (auto sm = m.load(std::string(id)); sm && !message_service::impl::expired(*sm, now))
        found = sm->conversation_seq() > after;
    return !found && ++looked < refs_looked_at;
  });
  return found;
}

// Where another region's `user` joined group `conv`, by their part here (nullopt: not a
// member). Read first: a name that is none costs one read, not a walk of references.
std::optional<std::uint64_t> joined_after(message_service::impl const& m, std::string const& user,
                                          std::string const& conv) {
  auto p = parse<records::participant_record>(m.db.get(cf::conversations, keys::participant_key(user, conv)));
  if (!p || !p->member()) return std::nullopt;
  return p->visible_after();
}

// Committed state: whether `user` may see a message with `hash` in one of the first
// conversations holding one. Another region's user in a group by their part only (a region
// naming made-up users in messages with many attachments would have every group's roster
// parsed in the writer); a part not there yet only means the reference waits for the
// region's proof.
bool sees_already(message_service::impl const& m, std::string const& user, std::string const& hash) {
  auto now = now_ms();
  for (auto const& conv : conversations_holding(m, hash, sender_check_max)) {
    if (!keys::is_group(conv)) {
      if (m.member(user, conv)) return true;
      continue;
    }
    if (auto after = joined_after(m, user, conv); after && refers_after(m, hash, conv, *after, now)) return true;
  }
  return false;
}

// A waiting reference's value: its region, and the conversation it will count for.
std::pair<std::string_view, std::string_view> split_pending(std::string_view value) {
  auto nul = value.find('\0');
  if (nul == std::string_view::npos) return {value, {}};
  return {value.substr(0, nul), value.substr(nul + 1)};
}

// Inside a write: asks `region` for `thumb`, the thumbnail it names for `original`: as a
// fetch if it is neither stored nor on its way here, else only as a proof. A request goes
// out either way, so the region cannot learn from it whether the thumbnail is stored here.
void ask_for_thumbnail(store::rocks_batch& b, std::string const& thumb, std::string const& original,
                       std::string const& region) {
  if (thumb.size() != keys::asset_hash_bytes || thumb == original) return;
  records::fetch_record f;
  f.set_region(region);
  f.set_thumbnail_of(original);
  auto wanted = parse<records::fetch_record>(b.get(cf::assets, keys::fetch_key(thumb)));
  if (!wanted && !b.get(cf::assets, keys::asset_key(thumb))) {
    b.put(cf::assets, keys::fetch_key(thumb), f.SerializeAsString());
    return;
  }
  if ((wanted && wanted->region() == region) || b.get(cf::assets, keys::holder_key(thumb, region)) ||
      b.get(cf::assets, keys::proof_fetch_key(thumb, region)))
    return;
  b.put(cf::assets, keys::proof_fetch_key(thumb, region), f.SerializeAsString());
}

// `region` has shown it holds the bytes of `hash`: the references its messages made to it
// count from now on. After the write that recorded it (x/): a message applied since then
// counted at once, and every one applied before is committed, so this scan finds them all.
awaitable<errors::status> count_references(message_service::impl& m, std::string hash, std::string region) {
  for (;;) {
    auto found = std::make_shared<std::vector<std::pair<std::string, std::string>>>();  // v/ key, conversation
    auto first = keys::pending_refs_first(hash);
    m.db.scan(cf::assets, first, keys::prefix_end(first), [&](std::string_view key, std::string_view value) {
      auto [from, conv] = split_pending(value);
      if (from == region) found->emplace_back(key, conv);
      return found->size() < promote_per_write;
    });
    if (found->empty()) co_return errors::ok();
    store::rocks_db::write_fn mutation = [found, hash](store::rocks_batch& b) {
      for (auto const& [key, conv] : *found) {
        auto waiting = b.get(cf::assets, key);
        if (!waiting) continue;  // the message went meanwhile
        auto raw_id = key.substr(2 + keys::asset_hash_bytes);
        keys::erase_pending_ref(b, hash, raw_id, *waiting);
        keys::put_ref(b, hash, raw_id, conv);
      }
      return true;
    };
    auto outcome = co_await async::write(m.db, std::move(mutation));
    if (outcome == store::write_outcome::failed) co_return m.write_failed("references to a fetched asset");
    if (found->size() < promote_per_write) co_return errors::ok();
  }
}

}  // namespace

void detail::note_remote_attachments(message_service::impl const& m, store::rocks_batch& b, std::string const& raw_id,
                                     records::stored_message& sm) {
  for (auto& a : *sm.mutable_message()->mutable_body()->mutable_attachments())
    a.set_name(format::clean_file_name(a.name()).value_or(""));
  auto const& msg = sm.message();
  std::string region(ids::region_of(msg.from()));
  for (auto const& a : msg.body().attachments()) {
    auto hash = keys::asset_hash_of(a.asset_id());
    if (hash.empty()) continue;
    auto ref = keys::asset_ref_key(hash, raw_id), pending = keys::pending_ref_key(hash, raw_id);
    if (b.get(cf::assets, ref) || b.get(cf::assets, pending)) continue;  // the same asset twice in one message
    keys::add_u64(b, keys::refs_key(hash), 1);
    bool stored = b.get(cf::assets, keys::asset_key(hash)).has_value();
    bool shown = b.get(cf::assets, keys::holder_key(hash, region)) || (stored && sees_already(m, msg.from(), hash));
    if (shown)
      keys::put_ref(b, hash, raw_id, msg.conversation_id());
    else
      keys::put_pending_ref(b, hash, raw_id, region, msg.conversation_id());
    auto wanted = parse<records::fetch_record>(b.get(cf::assets, keys::fetch_key(hash)));
    records::fetch_record f;
    f.set_region(region);
    if (!stored && !wanted) {
      // Fetched from this region (which shows it holds the bytes). Another region naming
      // the same hash later does not take the fetch over (it could answer "not found" until
      // the fetch is dropped): it gets a proof fetch of its own.
      b.put(cf::assets, keys::fetch_key(hash), f.SerializeAsString());
    } else if (!shown && !(wanted && wanted->region() == region) &&
               !b.get(cf::assets, keys::proof_fetch_key(hash, region))) {
      b.put(cf::assets, keys::proof_fetch_key(hash, region), f.SerializeAsString());
    } else {
      continue;  // nothing new is asked of the region
    }
    ask_for_thumbnail(b, keys::asset_hash_of(a.thumbnail_id()), hash, region);
  }
}

std::optional<std::string> detail::awaits_proof(message_service::impl const& m, std::string const& user,
                                                std::string const& hash, access_budget& request) {
  // Only while a region is still asked for the bytes: a fetch given up leaves nothing to
  // wait for (and then nothing is walked).
  auto wanted = parse<records::fetch_record>(m.db.get(cf::assets, keys::fetch_key(hash)));
  bool proofs = false;
  auto first_proof = keys::proof_fetches_first(hash);
  m.db.scan(cf::assets, first_proof, keys::prefix_end(first_proof), [&](std::string_view, std::string_view) {
    proofs = true;
    return false;
  });
  if (!wanted && !proofs) return std::nullopt;
  auto asked = [&](std::string const& region) {
    return (wanted && wanted->region() == region) ||
           (proofs && m.db.get(cf::assets, keys::proof_fetch_key(hash, region)));
  };
  // Of waiting references in messages the user may see (as may_download asks of counted
  // ones): a member who joined after the message, with the history hidden, or who deleted
  // it for themselves, must get the 404 anyone gets, not learn that it is on its way.
  std::optional<std::string> region;
  auto still_asked = [&](records::stored_message const& sm) {
    std::string from(ids::region_of(sm.message().from()));
    if (asked(from)) region = from;
    return region.has_value();
  };
  if (visible_reference(m, user, hash, ref_kind::waiting, request, still_asked)) return region;
  return std::nullopt;
}

std::vector<pending_fetch> message_service::fetches_due(std::int64_t now, std::size_t max) const {
  // Fetches and proofs taken in turn: many fetches due (another region can name any number
  // of hashes) do not keep the proofs from running, nor the other way round. And regions
  // in turn: at most 2 of one region in a round, the scan going on where the last one
  // stopped (at most 4,096 keys a round), so that one region's many hashes, first in key
  // order, do not keep another region's fetches from ever being due.
  constexpr std::size_t per_region = 2, scan_budget = 4096;
  std::vector<pending_fetch> kinds[2];
  for (bool proof : {false, true}) {
    auto& out = kinds[proof];
    std::string first = proof ? "y/" : "f/", end = keys::prefix_end(first);
    auto& cursor = impl_->fetch_cursor[proof];
    std::map<std::string, std::size_t, std::less<>> taken;
    std::size_t scanned = 0;
    auto visit = [&](std::string_view key, std::string_view value) {
      ++scanned;
      cursor.assign(key).push_back('\0');  // the next round starts after it
      records::fetch_record f;
      f.ParseFromArray(value.data(), static_cast<int>(value.size()));
      if (key.size() >= 2 + keys::asset_hash_bytes && f.next_try_ms() <= now && taken[f.region()]++ < per_region)
        out.push_back({std::string(key.substr(2, keys::asset_hash_bytes)), f.region(), f.thumbnail_of(), f.tries(),
                       f.mismatches(), proof});
      return out.size() < max && scanned < scan_budget;
    };
    std::string from = cursor.empty() || cursor < first || cursor >= end ? first : cursor;
    impl_->db.scan(cf::assets, from, end, visit);
    if (out.size() < max && scanned < scan_budget) {  // the end reached: on from the start
      cursor.clear();
      if (from != first) impl_->db.scan(cf::assets, first, from, visit);
      if (out.size() < max && scanned < scan_budget) cursor.clear();
    }
  }
  std::vector<pending_fetch> out;
  for (std::size_t i = 0; out.size() < max && (i < kinds[0].size() || i < kinds[1].size()); ++i)
    for (auto& kind : kinds)
      if (i < kind.size() && out.size() < max) out.push_back(std::move(kind[i]));
  for (auto& f : out) {
    auto used = impl_->db.get(cf::assets, keys::region_fetched_key(f.region));
    f.region_bytes = used && used->size() == 8 ? keys::from_be64(*used) : 0;
  }
  return out;
}

awaitable<errors::status> message_service::record_fetched(pending_fetch f, new_asset a) {
  auto& m = *impl_;
  auto now = now_ms();
  auto due = now + std::int64_t(m.assets.grace_s) * 1000;
  // The fetch's own record goes last, once the references counted: a crash (or a failed
  // write) before then leaves it, and the fetch is made again and finishes the job.
  store::rocks_db::write_fn mutation = [f, a, now, due](store::rocks_batch& b) {
    // The region sent every byte and they hashed to the id: it holds them.
    b.put(cf::assets, keys::holder_key(f.hash, f.region), "");
    // An original's thumbnail, never a thumbnail's own (a region naming one for each
    // would chain fetches without end).
    if (f.thumbnail_of.empty()) ask_for_thumbnail(b, a.thumbnail_hash, f.hash, f.region);
    // Another region's word for which thumbnail an original has is taken only for bytes it
    // sends: a hash already stored here (someone's asset, or another original's thumbnail)
    // it named would give its members access to those bytes.
    if (b.get(cf::assets, keys::asset_key(f.hash))) return true;
    auto rec = put_asset(b, f.hash, a.size, a.content_type, now, due);
    rec.set_width(a.width);
    rec.set_height(a.height);
    rec.set_fetched_from(f.region);  // charged to that region's budget until collected
    keys::add_u64(b, keys::region_fetched_key(f.region), std::int64_t(a.size));
    if (!f.thumbnail_of.empty()) keys::link_thumbnail(b, rec, f.hash, f.thumbnail_of);
    // (Stored already as this original's thumbnail, fetched first, it is this original's.)
    // (A thumbnail fetched as one has none of its own, whatever the answer names.)
    if (f.thumbnail_of.empty() && a.thumbnail_hash.size() == keys::asset_hash_bytes && a.thumbnail_hash != f.hash &&
        (!b.get(cf::assets, keys::asset_key(a.thumbnail_hash)) ||
         b.get(cf::assets, keys::thumbnail_pair_key(a.thumbnail_hash, f.hash))))
      rec.set_thumbnail(a.thumbnail_hash);
    b.put(cf::assets, keys::asset_key(f.hash), rec.SerializeAsString());
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("a fetched asset could not be stored");
  auto counted = co_await count_references(m, f.hash, f.region);
  if (!counted) co_return counted;
  store::rocks_db::write_fn done = [f](store::rocks_batch& b) {
    b.erase(cf::assets, fetch_record_key(f));
    return true;
  };
  if (co_await async::write(m.db, std::move(done)) == store::write_outcome::failed)
    co_return m.write_failed("a fetch done could not be recorded");
  co_return errors::ok();
}

awaitable<errors::status> message_service::fetch_failed(pending_fetch f, bool drop, bool mismatch) {
  auto& m = *impl_;
  auto now = now_ms();
  store::rocks_db::write_fn mutation = [f, drop, mismatch, now](store::rocks_batch& b) {
    auto rec = parse<records::fetch_record>(b.get(cf::assets, fetch_record_key(f)));
    if (!rec) return false;
    if (drop) {
      b.erase(cf::assets, fetch_record_key(f));
      return true;
    }
    // Again after 1, 2, 4... seconds, at most 10 s apart.
    rec->set_tries(rec->tries() + 1);
    if (mismatch) rec->set_mismatches(rec->mismatches() + 1);
    rec->set_next_try_ms(now + std::min<std::int64_t>(10000, std::int64_t(1000) << std::min(rec->tries(), 4u)));
    b.put(cf::assets, fetch_record_key(f), rec->SerializeAsString());
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
  auto now = now_ms();
  // A member of the region who may see a message holding it: in a group whose history is
  // hidden, one who joined before that message (else the region could fetch, by its hash,
  // a file sent before its members came, or learn that it was).
  for (auto const& original : originals)
    for (auto const& conv : conversations_holding(m, original, 4096)) {
      auto c = m.conversation(conv);
      if (!c) continue;
      bool group = keys::is_group(conv);
      // The earliest that one of the region's members here joined (read for up to
      // parts_looked_at of them), then one look for a message after it.
      std::optional<std::uint64_t> earliest;
      std::size_t parts = 0;
      for (auto const& member : c->members()) {
        if (ids::region_of(member) != region) continue;
        if (!group) return view_of(hash, *rec);
        if (auto after = joined_after(m, member, conv)) earliest = std::min(earliest.value_or(*after), *after);
        if ((earliest && *earliest == 0) || ++parts == parts_looked_at) break;
      }
      if (earliest && refers_after(m, original, conv, *earliest, now)) return view_of(hash, *rec);
    }
  return std::nullopt;
}

}  // namespace petchat::messages
