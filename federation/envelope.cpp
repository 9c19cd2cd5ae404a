// The region directory and signed envelopes.
#include <sodium.h>

#include <algorithm>
#include <string_view>

#include "base/ids/ids.hpp"
#include "federation/federation.hpp"

namespace petchat::federation {
namespace {

constexpr std::string_view signing_context{"petchat-federation-v1\0", 22};

std::string signed_bytes(std::string_view body) {
  std::string out(signing_context);
  out.append(body);
  return out;
}

// Conversation ids are 23 or 28 characters (docs/PROTOCOL.md): a longer one is no id at
// all, and would be part of the key of every record that names it. An add names at most
// 1,000 users; a request naming more would only make its home's write work through them.
constexpr std::size_t max_conversation_id = 64;
constexpr int max_request_users = 1000;

bool bad_id(std::string const& conversation_id) {
  return conversation_id.size() > max_conversation_id;
}

// Who a body says acts or is meant: a user id of `region` as it prints (docs/PROTOCOL.md,
// "Names"), else `elsewhere` (another region's user) or malformed (a name of any bytes, which
// would be logged and kept in keys).
std::optional<reject_reason> check_user(std::string const& id, std::string_view region, reject_reason elsewhere) {
  if (ids::region_of(id) != region) return elsewhere;
  auto parsed = ids::parse_user_id(id, region);
  if (!parsed || parsed->str() != id) return reject_reason::malformed;
  return std::nullopt;
}

// A user id of any region as it prints (names a request gives: they are logged, and kept
// in the refusals that go back).
bool printed_user_id(std::string const& id) {
  auto region = ids::region_of(id);
  if (region.empty()) return false;
  auto parsed = ids::parse_user_id(id, region);
  return parsed && parsed->str() == id;
}

// Field checks that need nothing but the body: who may say what.
std::optional<reject_reason> check_body(body const& b, directory const& dir) {
  auto const& origin = b.origin();
  switch (b.kind_case()) {
    case body::kMessage: {
      auto const& m = b.message();
      if (m.id().empty() || m.conversation_id().empty() || bad_id(m.conversation_id()) || b.lane_seq() == 0)
        return reject_reason::malformed;
      if (auto bad = check_user(m.from(), origin, reject_reason::foreign_user)) return bad;
      if (m.to().empty()) return std::nullopt;  // to a group: the destination checks its members
      return check_user(m.to(), dir.self(), reject_reason::wrong_destination);
    }
    case body::kReceipt: {
      auto const& r = b.receipt();
      if (r.message_id().empty() || bad_id(r.conversation_id()) || b.lane_seq() == 0) return reject_reason::malformed;
      return check_user(r.by(), origin, reject_reason::foreign_user);
    }
    case body::kDeleted: {
      auto const& d = b.deleted();
      if (d.message_id().empty() || bad_id(d.conversation_id()) || b.lane_seq() == 0) return reject_reason::malformed;
      return check_user(d.by(), origin, reject_reason::foreign_user);
    }
    case body::kGroupState:
      if (b.group_state().conversation_id().empty() || bad_id(b.group_state().conversation_id()) || b.lane_seq() == 0)
        return reject_reason::malformed;
      if (b.group_state().home_region() != origin) return reject_reason::foreign_user;
      return std::nullopt;
    case body::kGroupRequest:
      if (b.group_request().conversation_id().empty() || bad_id(b.group_request().conversation_id()) ||
          b.group_request().users_size() > max_request_users || b.lane_seq() == 0)
        return reject_reason::malformed;
      if (!std::all_of(b.group_request().users().begin(), b.group_request().users().end(), printed_user_id) ||
          (!b.group_request().successor().empty() && !printed_user_id(b.group_request().successor())))
        return reject_reason::malformed;
      return check_user(b.group_request().by(), origin, reject_reason::foreign_user);
    case body::kGroupRequestRefused:
      if (b.group_request_refused().refusal().conversation_id().empty() ||
          bad_id(b.group_request_refused().refusal().conversation_id()) || b.lane_seq() == 0)
        return reject_reason::malformed;
      return check_user(b.group_request_refused().by(), dir.self(), reject_reason::wrong_destination);
    case body::kPresence:
      for (auto const& e : b.presence().entries())
        if (auto bad = check_user(e.user_id(), origin, reject_reason::foreign_user)) return bad;
      return std::nullopt;
    case body::kAssetRequest:
      if (b.asset_request().hash().size() != 32 || b.asset_request().length() > 262144 || b.lane_seq() != 0)
        return reject_reason::malformed;
      return std::nullopt;
    case body::kAssetPiece:
      if (b.asset_piece().hash().size() != 32 || b.asset_piece().data().size() > 262144 || b.lane_seq() != 0)
        return reject_reason::malformed;
      return std::nullopt;
    case body::kTyping:
      if (bad_id(b.typing().conversation_id())) return reject_reason::malformed;
      if (auto bad = check_user(b.typing().from(), origin, reject_reason::foreign_user)) return bad;
      if (b.typing_to() == "*@" + dir.self()) return std::nullopt;  // a group's members here
      return check_user(b.typing_to(), dir.self(), reject_reason::wrong_destination);
    default:
      break;
  }
  if (b.has_lane_ack()) return std::nullopt;
  return reject_reason::malformed;
}

}  // namespace

directory::directory() : regions_(std::make_shared<entries const>()) {}

directory::directory(std::string self, public_key self_key, options const& o) : self_(std::move(self)) {
  entries list{region_entry{self_, {self_key}, o.public_url, o.location}};
  for (auto const& r : o.regions)
    if (r.name != self_) list.push_back(r);
  regions_.store(std::make_shared<entries const>(std::move(list)));
}

std::shared_ptr<region_entry const> directory::find(std::string_view region) const {
  auto list = regions_.load();
  auto it = std::find_if(list->begin(), list->end(), [&](auto const& r) { return r.name == region; });
  if (it == list->end()) return nullptr;
  return std::shared_ptr<region_entry const>(list, &*it);  // shares the list's life
}

void directory::replace(options const& o) {
  auto now = regions_.load();
  entries list;
  if (!now->empty() && now->front().name == self_) list.push_back(now->front());
  for (auto const& r : o.regions)
    if (r.name != self_) list.push_back(r);
  regions_.store(std::make_shared<entries const>(std::move(list)));
}

char const* to_string(reject_reason r) {
  switch (r) {
    case reject_reason::malformed:
      return "malformed";
    case reject_reason::unknown_region:
      return "unknown_region";
    case reject_reason::bad_signature:
      return "bad_signature";
    case reject_reason::origin_mismatch:
      return "origin_mismatch";
    case reject_reason::wrong_destination:
      return "wrong_destination";
    case reject_reason::foreign_user:
      return "foreign_user";
    case reject_reason::unknown_user:
      return "unknown_user";
    case reject_reason::too_large:
      return "too_large";
    case reject_reason::unknown_message:
      return "unknown_message";
    case reject_reason::replayed:
      return "replayed";
    case reject_reason::out_of_order:
      return "out_of_order";
    case reject_reason::group_request_refused:
      return "group_request_refused";
    case reject_reason::stale:
      return "stale";
    case reject_reason::too_many_contacts:
      return "too_many_contacts";
    case reject_reason::count_:
      break;
  }
  return "unknown";
}

std::string seal(std::vector<std::string> bodies, std::string const& origin, secret_key const& key,
                 std::uint64_t lane_epoch, std::uint64_t lane_base, std::optional<std::uint64_t> lane_floor) {
  bundle all;
  for (auto& b : bodies) all.add_bodies(std::move(b));
  all.set_lane_epoch(lane_epoch);
  all.set_lane_base(lane_base);
  if (lane_floor) all.set_lane_floor(*lane_floor);
  envelope e;
  e.set_origin(origin);
  e.set_body(all.SerializeAsString());
  auto msg = signed_bytes(e.body());
  std::string sig(crypto_sign_BYTES, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(sig.data()), nullptr,
                       reinterpret_cast<unsigned char const*>(msg.data()), msg.size(), key.data());
  e.set_signature(std::move(sig));
  return e.SerializeAsString();
}

opened open(std::string_view bytes, std::string_view subject_origin, directory const& dir) {
  opened out;
  auto refuse = [&out](reject_reason r) {
    out.refused.push_back(r);
    return out;
  };
  envelope e;
  if (!e.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) || e.origin().empty() ||
      e.signature().size() != crypto_sign_BYTES)
    return refuse(reject_reason::malformed);
  auto signer = dir.find(e.origin());
  if (!signer || e.origin() == dir.self()) return refuse(reject_reason::unknown_region);
  // Before the signature's cost: a region's subject carries its own envelopes only.
  if (e.origin() != subject_origin) return refuse(reject_reason::origin_mismatch);
  auto msg = signed_bytes(e.body());
  bool verified = std::any_of(signer->keys.begin(), signer->keys.end(), [&](public_key const& k) {
    return crypto_sign_verify_detached(reinterpret_cast<unsigned char const*>(e.signature().data()),
                                       reinterpret_cast<unsigned char const*>(msg.data()), msg.size(), k.data()) == 0;
  });
  if (!verified) return refuse(reject_reason::bad_signature);
  bundle all;
  if (!all.ParseFromString(e.body()) || all.bodies().empty() ||
      static_cast<std::size_t>(all.bodies_size()) > max_bundle_bodies)
    return refuse(reject_reason::malformed);
  out.lane_epoch = all.lane_epoch();
  out.lane_base = all.lane_base();
  if (all.has_lane_floor()) out.lane_floor = all.lane_floor();
  for (auto const& bytes_of_body : all.bodies()) {
    body b;
    if (!b.ParseFromString(bytes_of_body)) {
      out.refused.push_back(reject_reason::malformed);
      continue;
    }
    if (b.destination() != dir.self()) {  // another lane's envelope: not ours to apply or skip
      out.refused.push_back(reject_reason::wrong_destination);
      continue;
    }
    if (b.origin() != e.origin()) {  // the signer speaks for another region's lane: no effect at all
      out.refused.push_back(reject_reason::origin_mismatch);
      continue;
    }
    auto why = check_body(b, dir);
    out.bodies.push_back({std::move(b), why});
  }
  return out;
}

}  // namespace petchat::federation
