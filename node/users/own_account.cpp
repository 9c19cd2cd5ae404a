// What a user does to their own account's security (docs/PROTOCOL.md, "Sessions":
// `POST /v1/me/password`, `DELETE /v1/sessions/others`): change the password, knowing the
// current one, and end every other session. Both leave the caller's own session as it is.
#include "base/net/net.hpp"
#include "node/users/detail/service.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice (a double
// free). Every lambda handed to an awaited call is therefore first stored in a named
// variable, and the named variable is moved in.

namespace petchat::users {

namespace {

failure revoked_meanwhile() {
  return fail(code::session_revoked, "this session has been revoked; log in again");
}

// Not 401: the caller's tokens are good (a client that answers a 401 by refreshing and
// then logging out must not log a user out over a typo).
failure wrong_password(std::string message) {
  return fail(code::wrong_password, std::move(message), "current_password");
}

}  // namespace

awaitable<result<std::string>> user_service::change_password(principal who, std::string current, std::string password,
                                                             std::string client_address) {
  auto& m = *impl_;
  if (auto f = m.check_password(password)) {
    f->field = "new_password";
    co_return *f;
  }
  auto device = format::from_base64url(who.device_id);
  if (!device) co_return revoked_meanwhile();
  auto name = who.user_name;
  auto now = now_ms();
  // Guesses at the current password by whoever holds a session (a stolen laptop) wait as
  // failed logins do, on a count of their own: a guesser here must not lock the account's
  // logins, nor the account's failed logins this.
  std::string key = "change:" + name;
  if (auto wait = m.account_limiter.wait_ms(key, now); wait > 0)
    co_return errors::rate_limited("too many wrong passwords; try again later", wait);
  // And each change costs two password hashes: they count among the address's password
  // checks (and its /48's) and its checks in flight, as logins do, so that changes made
  // again and again (right ones too) cannot take every hashing slot.
  std::string address_key = "addr:" + net::limit_key(client_address);
  auto wide = net::wide_limit_key(client_address);
  std::string wide_key = wide.empty() ? "" : "addr:" + wide;
  pending_attempt for_account, for_address, for_wide;
  if (!for_account.begin(m.account_limiter, key, now)) co_return m.busy();
  if (!for_address.begin(m.address_limiter, address_key, now, true)) co_return m.busy();
  if (!wide_key.empty() && !for_wide.begin(m.wide_address_limiter, wide_key, now, true)) co_return m.busy();
  auto user = m.env.read([&](store::lmdb_txn const& txn) { return m.read_user(txn, name); });
  if (!user) co_return revoked_meanwhile();
  auto hash = user->password_hash();
  auto generation = user->password_generation();
  auto slot = m.hash_slot();
  if (!slot) co_return m.busy();
  if (auto next = m.take_password_check(address_key, wide_key); next > 0)
    co_return errors::rate_limited("too many password checks from your address; try again later", next);
  // The current password checked, and only if it is right the new one hashed (at the
  // configured cost), in the same slot.
  auto cpu_work = [hash, current = std::move(current), password = std::move(password), p = m.params()] {
    detail::checked_password checked{detail::verify_password(hash, current), {}, {}};
    if (checked.match) checked.rehash = detail::hash_password(password, p);
    return checked;
  };
  auto checked = co_await async::offload(m.cpu_pool, std::move(cpu_work));
  slot.reset();
  if (!checked.match) {
    m.account_limiter.failed(key, now_ms());
    co_return wrong_password("the current password is wrong");
  }
  m.account_limiter.succeeded(key);
  struct state {
    bool live = true, disabled = false, same = true;
  };
  auto st = std::make_shared<state>();
  store::lmdb_env::write_fn mutation = [&m, st, name, generation, fresh = std::move(checked.rehash),
                                        device = *device](store::lmdb_txn& txn) {
    st->live = m.still_live(txn, name, device);
    auto u = m.read_user(txn, name);
    st->live = st->live && u;
    if (!st->live) return false;
    if (st->disabled = u->disabled(); st->disabled) return false;
    // Set meanwhile by a change of this session's own (two at once): the password checked
    // may not be the account's any more. (A login that hashed the same password again at a
    // new cost keeps the generation.)
    if (st->same = u->password_generation() == generation; !st->same) return false;
    u->set_password_hash(fresh);
    // Device tokens of the old password are worthless now, as after a reset.
    u->set_password_generation(generation + 1);
    txn.put(m.accounts, name, u->SerializeAsString());
    m.revoke_all(txn, name, device);
    return true;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the password could not be stored");
  if (!st->live) co_return revoked_meanwhile();
  if (st->disabled) co_return fail(code::user_disabled, "this account is disabled");
  if (!st->same) co_return wrong_password("the password was changed meanwhile: try again with the new one");
  m.tell_sessions_changed(name);  // the other devices' live streams and push targets end
  // This device's new known-device token (the old one went with the old password).
  now = now_ms();
  detail::access_claims known{name, detail::random_bytes(16), now, now + known_device_ttl_ms, generation + 1};
  co_return detail::sign_device_token(known, m.device_key);
}

awaitable<result<std::size_t>> user_service::revoke_other_sessions(principal who) {
  auto& m = *impl_;
  auto device = format::from_base64url(who.device_id);
  if (!device) co_return revoked_meanwhile();
  struct state {
    bool live = true;
    std::size_t revoked = 0;
  };
  auto st = std::make_shared<state>();
  store::lmdb_env::write_fn mutation = [&m, st, name = who.user_name, device = *device](store::lmdb_txn& txn) {
    st->revoked = 0;
    if (st->live = m.still_live(txn, name, device); !st->live) return false;
    st->revoked = m.revoke_all(txn, name, device);
    return st->revoked > 0;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the sessions could not be revoked");
  if (!st->live) co_return revoked_meanwhile();
  if (st->revoked > 0) m.tell_sessions_changed(who.user_name);
  co_return st->revoked;
}

}  // namespace petchat::users
