// The asset service's records in the message store (column family `assets`), kept here
// because a message and the references to its attachments are written in one write.
//
//   a/ hash(32)                 -> asset_record
//   r/ hash(32) message id(16)  -> conversation id: a message with it as an attachment
//   k/ hash(32) conversation NUL message id(16)
//                               -> "": the same references by conversation (format 5), so
//                                  that an access check looks at each conversation once
//   v/ hash(32) message id(16)  -> region NUL conversation id: such a message from another
//                                  region that has not shown yet that it holds the bytes
//                                  (gives no access until it has: then it becomes an r/)
//   n/ hash(32)                 -> be64: how many such messages, r/ and v/ (also before it
//                                  is stored here)
//   f/ hash(32)                 -> fetch_record: to fetch from the region of a message holding it
//   y/ hash(32) region          -> fetch_record: to fetch from `region` only as its proof
//                                  that it holds the bytes (they may be stored here already)
//   x/ hash(32) region          -> "": `region` has shown it holds the bytes (sent them all)
//   u/ user NUL hash(32)        -> uploader_record: the user uploaded it
//   w/ hash(32) user            -> "": its uploaders
//   q/ user                     -> be64: bytes the user has stored (uploads in progress at their length)
//   c/ user                     -> be64: the user's uploads in progress
//   C/ user                     -> be64: the user's complete uploads whose records are kept
//   p/ upload id                -> upload_record (in progress, or complete: names its asset)
//   e/ expires_at_ms(8) id      -> "": when an upload (its record) expires
//   g/ due_ms(8) hash(32)       -> "": when to see whether an asset is still referenced
//   t/ thumb(32) original(32)   -> "": an original whose thumbnail it is (the same pixels
//                                  with other metadata make the same thumbnail)
//   o/ thumb(32)                -> be64: how many originals it has
//   Q/ region                   -> be64: bytes stored that were fetched from `region`
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/ids/ids.hpp"
#include "message_records.pb.h"
#include "node/messages/detail/conversations.hpp"
#include "node/messages/detail/keys.hpp"
#include "store/rocks/rocks.hpp"

namespace petchat::messages::detail {

inline constexpr std::size_t asset_hash_bytes = 32;

inline std::string asset_key(std::string const& hash) {
  return "a/" + hash;
}
inline std::string asset_ref_key(std::string const& hash, std::string const& raw_id) {
  return "r/" + hash + raw_id;
}
inline std::string asset_refs_first(std::string const& hash) {
  return "r/" + hash;
}
inline std::string conversation_ref_key(std::string const& hash, std::string const& conv, std::string const& raw_id) {
  return "k/" + hash + conv + '\0' + raw_id;
}
inline std::string conversation_refs_first(std::string const& hash) {
  return "k/" + hash;
}
inline std::string conversation_refs_first(std::string const& hash, std::string const& conv) {
  return "k/" + hash + conv + '\0';
}
// In the state family: every r/ has its k/ (written once by index_conversation_refs).
inline std::string conversation_refs_indexed_key() {
  return "asset_refs_by_conversation";
}
// In the state family, while that index is being written: the r/ key to go on from.
inline std::string conversation_refs_progress_key() {
  return "asset_refs_by_conversation_from";
}
inline std::string pending_ref_key(std::string const& hash, std::string const& raw_id) {
  return "v/" + hash + raw_id;
}
inline std::string pending_refs_first(std::string const& hash) {
  return "v/" + hash;
}
// The same waiting reference by conversation (format 7; written with its v/, and for a
// store of format 6 by index_pending_refs): a download's answer (asset_pending or not)
// looks in the user's own conversations, as for a counted reference (k/), so waiting
// references elsewhere cannot crowd theirs out.
inline std::string pending_conversation_refs_first(std::string const& hash) {
  return "V/" + hash;
}
inline std::string pending_conversation_refs_first(std::string const& hash, std::string const& conv) {
  return "V/" + hash + conv + '\0';
}
inline std::string pending_conversation_ref_key(std::string const& hash, std::string const& conv,
                                                std::string const& raw_id) {
  return pending_conversation_refs_first(hash, conv) + raw_id;
}
// In the state family: every v/ has its V/ (written once by index_pending_refs, format 7).
inline std::string pending_refs_indexed_key() {
  return "pending_asset_refs_by_conversation";
}
// A waiting reference's value: its region, NUL, the conversation it will count for.
inline std::string pending_ref_value(std::string const& region, std::string const& conv) {
  return region + '\0' + conv;
}
inline std::string pending_ref_conversation(std::string_view value) {
  auto nul = value.find('\0');
  return nul == std::string_view::npos ? std::string() : std::string(value.substr(nul + 1));
}
// Puts and erases a waiting reference with its index entry.
inline void put_pending_ref(store::rocks_batch& b, std::string const& hash, std::string const& raw_id,
                            std::string const& region, std::string const& conv) {
  b.put(store::cf::assets, pending_ref_key(hash, raw_id), pending_ref_value(region, conv));
  b.put(store::cf::assets, pending_conversation_ref_key(hash, conv, raw_id), "");
}
inline void erase_pending_ref(store::rocks_batch& b, std::string const& hash, std::string const& raw_id,
                              std::string_view value) {
  b.erase(store::cf::assets, pending_ref_key(hash, raw_id));
  b.erase(store::cf::assets, pending_conversation_ref_key(hash, pending_ref_conversation(value), raw_id));
}
inline std::string proof_fetch_key(std::string const& hash, std::string const& region) {
  return "y/" + hash + region;
}
inline std::string proof_fetches_first(std::string const& hash) {
  return "y/" + hash;
}
inline std::string holder_key(std::string const& hash, std::string const& region) {
  return "x/" + hash + region;
}
inline std::string holders_first(std::string const& hash) {
  return "x/" + hash;
}
inline std::string refs_key(std::string const& hash) {
  return "n/" + hash;
}
inline std::string fetch_key(std::string const& hash) {
  return "f/" + hash;
}
inline std::string uploader_key(std::string const& user, std::string const& hash) {
  return "u/" + user + '\0' + hash;
}
inline std::string uploaders_key(std::string const& hash, std::string const& user) {
  return "w/" + hash + user;
}
inline std::string uploaders_first(std::string const& hash) {
  return "w/" + hash;
}
inline std::string quota_key(std::string const& user) {
  return "q/" + user;
}
inline std::string region_fetched_key(std::string const& region) {
  return "Q/" + region;
}
inline std::string upload_count_key(std::string const& user) {
  return "c/" + user;
}
inline std::string completed_uploads_key(std::string const& user) {
  return "C/" + user;
}
inline std::string upload_key(std::string const& id) {
  return "p/" + id;
}
inline std::string upload_expiry_key(std::int64_t at_ms, std::string const& id) {
  return "e/" + be64(static_cast<std::uint64_t>(at_ms)) + id;
}
inline std::string collect_key(std::int64_t due_ms, std::string const& hash) {
  return "g/" + be64(static_cast<std::uint64_t>(due_ms)) + hash;
}
// The end of a scan of every key starting with `prefix` (binary keys: the prefix plus one).
inline std::string prefix_end(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}
// The hash of a collect_key, the id of an upload_expiry_key.
inline std::string after_time(std::string_view key) {
  return std::string(key.substr(10));
}

// The 32-byte hash of a printed asset id (64 lower-case hex digits), or empty.
std::string asset_hash_of(std::string_view printed);
std::string print_asset_hash(std::string const& hash);

inline std::uint64_t read_u64(store::rocks_batch& b, std::string const& key) {
  return service_detail::read_count(b, store::cf::assets, key);
}
inline void add_u64(store::rocks_batch& b, std::string const& key, std::int64_t delta) {
  service_detail::add_count(b, store::cf::assets, key, delta);
}

// Inside a write: the reference of message `raw_id` in `conv` to `hash` gives access (r/,
// and its k/), or no longer does.
inline void put_ref(store::rocks_batch& b, std::string const& hash, std::string const& raw_id,
                    std::string const& conv) {
  b.put(store::cf::assets, asset_ref_key(hash, raw_id), conv);
  b.put(store::cf::assets, conversation_ref_key(hash, conv, raw_id), "");
}
inline void erase_ref(store::rocks_batch& b, std::string const& hash, std::string const& raw_id,
                      std::string const& conv) {
  b.erase(store::cf::assets, asset_ref_key(hash, raw_id));
  b.erase(store::cf::assets, conversation_ref_key(hash, conv, raw_id));
}

// A message with attachments is stored: each of its assets gains a reference (counted
// whether or not the asset is stored here yet: one from another region is fetched).
inline void add_asset_refs(store::rocks_batch& b, std::string const& raw_id, records::stored_message const& sm) {
  for (auto const& a : sm.message().body().attachments()) {
    auto hash = asset_hash_of(a.asset_id());
    if (hash.empty()) continue;
    auto ref = asset_ref_key(hash, raw_id);
    if (b.get(store::cf::assets, ref)) continue;  // the same asset twice in one message
    put_ref(b, hash, raw_id, sm.message().conversation_id());
    add_u64(b, refs_key(hash), 1);
  }
}

// A message goes (expired, deleted for everyone): its assets lose a reference (given or
// still waiting for its region's proof). One no message refers to any more is looked at by
// the collector at `due_ms`, and is not fetched from another region any more.
inline void release_asset_refs(store::rocks_batch& b, std::string const& raw_id, records::stored_message const& sm,
                               std::int64_t due_ms) {
  for (auto const& a : sm.message().body().attachments()) {
    auto hash = asset_hash_of(a.asset_id());
    if (hash.empty()) continue;
    auto ref = asset_ref_key(hash, raw_id);
    auto pending = pending_ref_key(hash, raw_id);
    if (auto conv = b.get(store::cf::assets, ref))
      erase_ref(b, hash, raw_id, *conv);
    else if (auto waiting = b.get(store::cf::assets, pending))
      erase_pending_ref(b, hash, raw_id, *waiting);
    else
      continue;
    add_u64(b, refs_key(hash), -1);
    if (read_u64(b, refs_key(hash)) > 0) continue;
    b.put(store::cf::assets, collect_key(due_ms, hash), "");
    std::string region(ids::region_of(sm.message().from()));
    b.erase(store::cf::assets, fetch_key(hash));
    b.erase(store::cf::assets, proof_fetch_key(hash, region));
    // And its thumbnail's, asked for on its behalf (ask_for_thumbnail), unless a message
    // holds the thumbnail itself: else those would be tried for ever, however many made-up
    // thumbnails a region named.
    auto thumb = asset_hash_of(a.thumbnail_id());
    if (thumb.empty() || read_u64(b, refs_key(thumb)) > 0) continue;
    for (auto const& key : {fetch_key(thumb), proof_fetch_key(thumb, region)}) {
      auto v = b.get(store::cf::assets, key);
      records::fetch_record f;
      if (v && f.ParseFromString(*v) && f.thumbnail_of() == hash) b.erase(store::cf::assets, key);
    }
  }
}

inline std::string thumbnail_pair_key(std::string const& thumb, std::string const& original) {
  return "t/" + thumb + original;
}
inline std::string thumbnail_pairs_first(std::string const& thumb) {
  return "t/" + thumb;
}
inline std::string originals_key(std::string const& thumb) {
  return "o/" + thumb;
}

// Inside a write: `original` has `thumb` (its record `rec`) as its thumbnail. Every original
// gets a pair, so that each gives access to the thumbnail and the thumbnail goes only with
// the last; the first stays the record's thumbnail_of (write `rec` after). A thumbnail from
// before the pairs gets the pair of its first original here too.
inline void link_thumbnail(store::rocks_batch& b, records::asset_record& rec, std::string const& thumb,
                           std::string const& original) {
  if (rec.thumbnail_of().empty()) rec.set_thumbnail_of(original);
  for (auto const& o : {rec.thumbnail_of(), original}) {
    auto key = thumbnail_pair_key(thumb, o);
    if (b.get(store::cf::assets, key)) continue;
    b.put(store::cf::assets, key, "");
    add_u64(b, originals_key(thumb), 1);
  }
}

// Inside a write: `original` goes. True if `thumb` (its record `rec`) has no original left.
inline bool unlink_thumbnail(store::rocks_batch& b, records::asset_record const& rec, std::string const& thumb,
                             std::string const& original) {
  auto key = thumbnail_pair_key(thumb, original);
  if (b.get(store::cf::assets, key)) {
    b.erase(store::cf::assets, key);
    add_u64(b, originals_key(thumb), -1);
  } else if (read_u64(b, originals_key(thumb)) == 0) {  // from before the pairs: its one original
    return rec.thumbnail_of().empty() || rec.thumbnail_of() == original ||
           !b.get(store::cf::assets, asset_key(rec.thumbnail_of()));
  }
  return read_u64(b, originals_key(thumb)) == 0;
}

// Inside a write: whether the thumbnail `thumb` (its record `rec`; `originals`: its t/
// pairs as read before the write) still has an original: one stored, or one still to be
// fetched. A pair whose original is neither keeps it no longer; a pair added since the
// read (the count changed) keeps it, to be looked at again.
enum class original { none, stored, awaited };
inline original has_original(store::rocks_batch& b, records::asset_record const& rec, std::string const& thumb,
                             std::vector<std::string> const& originals) {
  auto linked = read_u64(b, originals_key(thumb));
  if (linked == 0)  // from before the pairs: its one original
    return !rec.thumbnail_of().empty() && b.get(store::cf::assets, asset_key(rec.thumbnail_of())) ? original::stored
                                                                                                  : original::none;
  if (linked != originals.size()) return original::stored;
  auto found = original::none;
  for (auto const& o : originals) {
    if (b.get(store::cf::assets, asset_key(o))) return original::stored;
    if (b.get(store::cf::assets, fetch_key(o))) found = original::awaited;
  }
  return found;
}

}  // namespace petchat::messages::detail
