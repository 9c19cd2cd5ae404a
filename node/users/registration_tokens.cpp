// Registration tokens for registration = "token": made, listed and revoked by admins
// (petchatctl tokens), used up by registrations in the same write as the account.
#include <algorithm>

#include "base/format/format.hpp"
#include "node/users/detail/service.hpp"

namespace petchat::users {
namespace {

constexpr std::string_view token_prefix = "prt1.";
constexpr std::size_t id_bytes = 9, secret_bytes = 24, max_note_chars = 200;

struct token_parts {
  std::string id;  // raw
  std::string secret;
};

std::optional<token_parts> parse_token(std::string_view token) {
  if (token.size() > 128 || token.substr(0, token_prefix.size()) != token_prefix) return std::nullopt;
  token.remove_prefix(token_prefix.size());
  auto dot = token.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  auto id = format::from_base64url(token.substr(0, dot));
  auto secret = format::from_base64url(token.substr(dot + 1));
  if (!id || !secret || id->size() != id_bytes || secret->size() != secret_bytes) return std::nullopt;
  return token_parts{std::move(*id), std::move(*secret)};
}

registration_token_info to_info(records::registration_token_record const& r) {
  registration_token_info i;
  i.id = format::base64url(r.id());
  i.note = r.note();
  i.created_at_ms = r.created_at_ms();
  i.expires_at_ms = r.expires_at_ms();
  i.max_uses = r.max_uses();
  i.uses = r.uses();
  i.revoked = r.revoked();
  return i;
}

// The record of `token` if it allows a registration at `now`.
std::optional<records::registration_token_record> usable(store::lmdb_txn const& txn, store::lmdb_db db,
                                                         std::string_view token, std::int64_t now) {
  auto parts = parse_token(token);
  if (!parts) return std::nullopt;
  auto raw = txn.get(db, parts->id);
  records::registration_token_record r;
  if (!raw || !r.ParseFromArray(raw->data(), static_cast<int>(raw->size()))) return std::nullopt;
  // The secret's hash is compared in constant time, whatever else is wrong.
  bool secret_ok = detail::equal_secret(detail::hash_refresh_secret(parts->secret), r.secret_hash());
  if (!secret_ok || to_info(r).state(now) != std::string_view("active")) return std::nullopt;
  return r;
}

}  // namespace

char const* registration_token_info::state(std::int64_t now_ms) const {
  if (revoked) return "revoked";
  if (expires_at_ms != 0 && now_ms >= expires_at_ms) return "expired";
  if (max_uses != 0 && uses >= max_uses) return "used_up";
  return "active";
}

bool user_service::impl::registration_token_usable(store::lmdb_txn const& txn, std::string_view token,
                                                   std::int64_t now) const {
  return usable(txn, registration_tokens, token, now).has_value();
}

bool user_service::impl::use_registration_token(store::lmdb_txn& txn, std::string_view token, std::int64_t now) const {
  auto r = usable(txn, registration_tokens, token, now);
  if (!r) return false;
  r->set_uses(r->uses() + 1);
  txn.put(registration_tokens, r->id(), r->SerializeAsString());
  return true;
}

awaitable<result<registration_token_info>> user_service::create_registration_token(std::uint32_t max_uses,
                                                                                   std::int64_t expires_in_s,
                                                                                   std::string note) {
  auto& m = *impl_;
  auto chars = format::utf8_length(note);
  if (!chars || *chars > max_note_chars) co_return fail(code::invalid_field, "note: at most 200 characters", "note");
  if (expires_in_s < 0 || expires_in_s > 10LL * 365 * 24 * 3600)
    co_return fail(code::invalid_field, "expires_in_s: 0 (never) to ten years", "expires_in_s");
  records::registration_token_record r;
  r.set_id(detail::random_printable_id(id_bytes));
  auto secret = detail::random_bytes(secret_bytes);
  r.set_secret_hash(detail::hash_refresh_secret(secret));
  r.set_created_at_ms(now_ms());
  if (expires_in_s > 0) r.set_expires_at_ms(r.created_at_ms() + expires_in_s * 1000);
  r.set_max_uses(max_uses);
  r.set_note(note);
  store::lmdb_env::write_fn mutation = [&m, key = r.id(), value = r.SerializeAsString()](store::lmdb_txn& txn) {
    return txn.insert(m.registration_tokens, key, value);
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome != store::write_outcome::committed) co_return m.write_failed("the token could not be stored");
  auto info = to_info(r);
  info.token = std::string(token_prefix) + info.id + "." + format::base64url(secret);
  co_return info;
}

std::vector<registration_token_info> user_service::registration_tokens() const {
  auto& m = *impl_;
  auto list = m.env.read([&](store::lmdb_txn const& txn) {
    std::vector<registration_token_info> out;
    txn.for_each(m.registration_tokens, "", [&](std::string_view, std::string_view value) {
      records::registration_token_record r;
      if (r.ParseFromArray(value.data(), static_cast<int>(value.size()))) out.push_back(to_info(r));
      return true;
    });
    return out;
  });
  std::sort(list.begin(), list.end(), [](auto const& a, auto const& b) { return a.created_at_ms < b.created_at_ms; });
  return list;
}

awaitable<result<registration_token_info>> user_service::revoke_registration_token(std::string id) {
  auto& m = *impl_;
  auto raw_id = format::from_base64url(id);
  if (!raw_id || raw_id->size() != id_bytes) co_return fail(code::not_found, "no registration token " + id);
  auto found = std::make_shared<std::optional<records::registration_token_record>>();
  store::lmdb_env::write_fn mutation = [&m, key = *raw_id, found](store::lmdb_txn& txn) {
    found->reset();
    auto raw = txn.get(m.registration_tokens, key);
    records::registration_token_record r;
    if (!raw || !r.ParseFromArray(raw->data(), static_cast<int>(raw->size()))) return false;
    r.set_revoked(true);
    txn.put(m.registration_tokens, key, r.SerializeAsString());
    *found = r;
    return true;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the token could not be revoked");
  if (!*found) co_return fail(code::not_found, "no registration token " + id);
  co_return to_info(**found);
}

}  // namespace petchat::users
