// The asset service's records in the message store (column family `assets`), kept here
// because a message and the references to its attachments are written in one write.
//
//   a/ hash(32)                 -> asset_record (refs: messages holding it)
//   r/ hash(32) message id(16)  -> conversation id: a message with it as an attachment
//   u/ user NUL hash(32)        -> uploader_record: the user uploaded it
//   w/ hash(32) user            -> "": its uploaders
//   q/ user                     -> be64: bytes the user has stored (uploads in progress at their length)
//   c/ user                     -> be64: the user's uploads in progress
//   p/ upload id                -> upload_record
//   e/ expires_at_ms(8) id      -> "": when an upload in progress expires
//   g/ due_ms(8) hash(32)       -> "": when to see whether an asset is still referenced
#pragma once

#include <cstdint>
#include <string>

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
inline std::string upload_count_key(std::string const& user) {
  return "c/" + user;
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
  auto v = b.get(store::cf::assets, key);
  return v ? from_be64(*v) : 0;
}
inline void add_u64(store::rocks_batch& b, std::string const& key, std::int64_t delta) {
  auto v = static_cast<std::int64_t>(read_u64(b, key)) + delta;
  if (v <= 0)
    b.erase(store::cf::assets, key);
  else
    b.put(store::cf::assets, key, be64(static_cast<std::uint64_t>(v)));
}

// A message with attachments is stored: each of its assets gains a reference. The
// message's attachments were checked before (a missing asset gets no record here).
inline void add_asset_refs(store::rocks_batch& b, std::string const& raw_id, records::stored_message const& sm) {
  for (auto const& a : sm.message().body().attachments()) {
    auto hash = asset_hash_of(a.asset_id());
    if (hash.empty()) continue;
    auto ref = asset_ref_key(hash, raw_id);
    if (b.get(store::cf::assets, ref)) continue;  // the same asset twice in one message
    auto rec = service_detail::parse<records::asset_record>(b.get(store::cf::assets, asset_key(hash)));
    if (!rec) continue;
    b.put(store::cf::assets, ref, sm.message().conversation_id());
    rec->set_refs(rec->refs() + 1);
    b.put(store::cf::assets, asset_key(hash), rec->SerializeAsString());
  }
}

// A message goes (expired, deleted for everyone): its assets lose a reference, and are
// looked at again by the collector `grace_ms` from `now`.
inline void release_asset_refs(store::rocks_batch& b, std::string const& raw_id, records::stored_message const& sm,
                               std::int64_t due_ms) {
  for (auto const& a : sm.message().body().attachments()) {
    auto hash = asset_hash_of(a.asset_id());
    if (hash.empty()) continue;
    auto ref = asset_ref_key(hash, raw_id);
    if (!b.get(store::cf::assets, ref)) continue;
    b.erase(store::cf::assets, ref);
    auto rec = service_detail::parse<records::asset_record>(b.get(store::cf::assets, asset_key(hash)));
    if (!rec) continue;
    rec->set_refs(rec->refs() > 0 ? rec->refs() - 1 : 0);
    b.put(store::cf::assets, asset_key(hash), rec->SerializeAsString());
    if (rec->refs() == 0) b.put(store::cf::assets, collect_key(due_ms, hash), "");
  }
}

}  // namespace petchat::messages::detail
