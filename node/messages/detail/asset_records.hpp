// Helpers of the asset records shared by node/messages/assets.cpp, uploads.cpp and asset_upkeep.cpp.
#pragma once

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "node/messages/detail/service.hpp"

namespace petchat::messages::detail {

// Each conversation holding a message with `hash` as an attachment (committed state), in
// key order, one seek each (k/ keys): at most `max`, until `fn` returns false.
void for_each_holding(message_service::impl const& m, std::string const& hash, std::size_t max,
                      std::function<bool(std::string const&)> const& fn);
// What one request's access checks may do in all (a thumbnail's and each of its
// originals', a message's attachments'): four checks' worth, each check taking at most
// one check's (check_budget), so that neither 65 checks multiply one's bound nor one walk
// over others' references uses up what the next needs.
struct access_budget {
  std::size_t seeks = 4 * 32768, contacts = 4 * 4096, keys = 4 * 16384;
};
// One check's share of `request` (at most 32,768 seeks, 4,096 contacts, 16,384 references);
// what it spends comes off the request's when it ends.
struct check_budget : access_budget {
  explicit check_budget(access_budget& r)
      : access_budget{std::min<std::size_t>(32768, r.seeks), std::min<std::size_t>(4096, r.contacts),
                      std::min<std::size_t>(16384, r.keys)},
        request(r),
        start(*this) {}
  ~check_budget() {
    request.seeks -= start.seeks - seeks;
    request.contacts -= start.contacts - contacts;
    request.keys -= start.keys - keys;
  }
  check_budget(check_budget const&) = delete;
  check_budget& operator=(check_budget const&) = delete;
  access_budget& request;
  access_budget start;
};
// Takes one of `left`: false once none is left.
inline bool spend(std::size_t& left) {
  return left > 0 && --left > 0;
}
// Each conversation holding it in which `user` has a part (p/ records: every group they
// are or were in, and the direct conversations since the conversation list), in key
// order: a leapfrog of the two key orders, about twice the smaller set's seeks, at most
// `seeks_left` (which it lowers by those it made); until `fn` returns false. False if it
// stopped for want of seeks.
// `holders`: the prefix of the keys naming the conversations (k/hash, or V/hash).
bool for_each_shared(message_service::impl const& m, std::string const& holders, std::string const& user,
                     std::size_t& seeks_left, std::function<bool(std::string const&)> const& fn);
// Which references to an asset a walk looks at: counted ones (k/), or ones waiting for
// their region's proof (V/).
enum class ref_kind { counted, waiting };
// Whether a message referring to `hash` (references of `kind`) that `user` may see (a
// current member, not one who joined after it with the history hidden, nor one who hid it
// or whose copy expired) is one `fn` accepts. The conversations looked at are those both
// holding such references and the user's own (parts, p/; then contacts, u/, for direct
// conversations from before parts were kept), newest references first, within one check's
// share of `request`: references in other conversations cannot crowd the user's out.
bool visible_reference(message_service::impl const& m, std::string const& user, std::string const& hash, ref_kind kind,
                       access_budget& request, std::function<bool(records::stored_message const&)> const& fn);
// Distinct conversations holding a message with `hash` as an attachment (committed
// state): those of its oldest references (from its first 1,024), then more in key order,
// at most `max` in all.
std::vector<std::string> conversations_holding(message_service::impl const& m, std::string const& hash,
                                               std::size_t max);
// The originals whose thumbnail `thumb` (its record `rec`) is, at most 64 (committed state).
std::vector<std::string> originals_of(message_service::impl const& m, std::string const& thumb,
                                      records::asset_record const& rec);
// An asset as the API shows it.
asset_view view_of(std::string const& hash, records::asset_record const& rec);
// Inside a write: the asset record of a new blob (or the one there is), and when the
// collector is to look at it.
records::asset_record put_asset(store::rocks_batch& b, std::string const& hash, std::uint64_t size,
                                std::string const& type, std::int64_t now, std::int64_t due_ms);

// The quota check inside a write: `more` bytes on top of the `used` bytes of a user's.
// asset_too_large or quota_exceeded (with the numbers), else nullopt.
std::optional<errors::failure> over_quota(config::assets_section const& limits, std::uint64_t used, std::uint64_t more);
// Inside a write (uploads.cpp): upload `id` is complete, its reservation given back; its
// record names the asset (`hash`) until it expires.
void complete_upload(store::rocks_batch& b, std::string const& id, std::string const& hash);

// Inside a write (the message service's side of federation, remote_assets.cpp), before
// the message is stored: the references a message from another region (to be stored as
// `raw_id`) makes to its attachments, counted at once or waiting for its region's proof,
// and the fetches they need; and its attachments' names cleaned as this region cleans its
// own users' (another region's word is not taken for them).
void note_remote_attachments(message_service::impl const& m, store::rocks_batch& b, std::string const& raw_id,
                             records::stored_message& sm);
// Committed state: the region `user` waits for to show it holds the bytes of `hash` (a
// message of that region in one of the user's conversations refers to it, and the region
// is still asked for them); nullopt if none. Its walk takes from `request` (the request's
// budget, shared with its other checks).
std::optional<std::string> awaits_proof(message_service::impl const& m, std::string const& user,
                                        std::string const& hash, access_budget& request);

// Before any traffic, once per store: the k/ index of every r/ reference (a store of
// format 4 had none). Throws store::rocks_error if it cannot be written.
void index_conversation_refs(message_service::impl& m);
// Likewise, once per store: the V/ index of every v/ waiting reference (a store of format
// 6 had none).
void index_pending_refs(message_service::impl& m);

}  // namespace petchat::messages::detail
