#include <algorithm>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "base/net/net.hpp"
#include "node/users/detail/service.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice (a double
// free). Every lambda handed to an awaited call is therefore first stored in a named
// variable, and the named variable is moved in.

namespace petchat::users {

user_service::user_service(config::users_section const& options, std::string region, config::store_section const& store,
                           std::filesystem::path const& data_dir, identity::region_identity const& identity,
                           boost::asio::thread_pool& cpu_pool)
    : impl_(std::make_unique<impl>(options, std::move(region), store, data_dir, identity, cpu_pool)) {}

user_service::~user_service() = default;

std::string const& user_service::region() const {
  return impl_->region;
}

void user_service::observe_commits(store::commit_observer fn) {
  impl_->env.observe_commits(std::move(fn));
}

std::size_t user_service::store_used_bytes() const {
  return impl_->env.used_bytes();
}

std::size_t user_service::store_map_bytes() const {
  return impl_->env.map_size();
}

void user_service::copy_store_to(std::filesystem::path const& dir) const {
  impl_->env.copy_to(dir);
}

void user_service::stop() {
  impl_->env.stop();
}

awaitable<result<profile>> user_service::register_user(std::string name, std::string password,
                                                       std::optional<std::string> display_name,
                                                       std::string registration_token, bool by_admin,
                                                       std::string client_address) {
  auto& m = *impl_;
  // The address's allowance (and its /48's) is reserved before any work and given back
  // unless the attempt counts (keep()), so concurrent registrations cannot overshoot it.
  struct reservations {
    std::vector<std::pair<detail::registration_limiter*, std::string>> held;
    void keep() { held.clear(); }
    void created() {  // kept, as an account made
      for (auto& [limiter, address] : held) limiter->created(address);
      held.clear();
    }
    ~reservations() {
      for (auto& [limiter, address] : held) limiter->release(address);
    }
  } reserved;
  std::string managed_token;  // a token an admin made, used up with the account's write
  if (!by_admin) {
    if (m.options.registration == config::registration_policy::closed)
      co_return fail(code::registration_closed, "this node does not accept self-registration; ask its admin");
    auto wide = net::wide_limit_key(client_address);  // an IPv6 client's /48
    client_address = net::limit_key(client_address);  // an IPv6 client's /64
    auto too_many = [](std::int64_t wait) {
      return errors::rate_limited("too many registrations from your address; try again later", wait);
    };
    if (!wide.empty()) {
      if (auto wait = m.wide_registrations.reserve(wide, now_ms())) co_return too_many(wait);
      reserved.held.emplace_back(&m.wide_registrations, wide);
    }
    if (auto wait = m.registrations.reserve(client_address, now_ms())) co_return too_many(wait);
    reserved.held.emplace_back(&m.registrations, client_address);
    if (m.options.registration == config::registration_policy::token) {
      // The config's token (if set), or one an admin made (checked again in the write).
      bool configured = !m.options.registration_token.empty() &&
                        detail::equal_secret(registration_token, m.options.registration_token);
      if (!configured && m.env.read([&](store::lmdb_txn const& txn) {
            return m.registration_token_usable(txn, registration_token, now_ms());
          }))
        managed_token = registration_token;
      if (!configured && managed_token.empty()) {
        reserved.keep();  // a wrong token counts as a registration: no guessing it
        co_return fail(code::invalid_registration_token, "a valid registration_token is required to register here",
                       "registration_token");
      }
    }
  }
  if (!ids::is_valid_name(name))
    co_return fail(code::invalid_name,
                   "names are 3 to 32 characters of a-z 0-9 . _ - and start with a letter (lower case only)", "name");
  if (auto f = m.check_password(password)) co_return *f;
  if (display_name) {
    if (auto f = check_text("display_name", *display_name, 1, 64, false)) co_return *f;
  }
  // A cheap look first, so a taken name does not cost an argon2id hash. It counts as a
  // registration, so that asking which names exist is as limited as registering.
  if (m.env.read([&](store::lmdb_txn const& txn) { return txn.get(m.accounts, name).has_value(); })) {
    reserved.keep();
    co_return fail(code::name_taken, "the name '" + name + "' is already registered", "name");
  }

  auto hashed = co_await m.hash_new_password(password);
  if (!hashed) co_return hashed.error();
  std::string hash = std::move(hashed.value());

  records::user_record record;
  record.set_name(name);
  record.set_password_hash(hash);
  record.set_display_name(display_name.value_or(name));
  record.set_created_at_ms(now_ms());
  auto value = record.SerializeAsString();
  auto token_refused = std::make_shared<bool>(false);
  store::lmdb_env::write_fn mutation = [&m, name, value, managed_token, token_refused](store::lmdb_txn& txn) {
    *token_refused = !managed_token.empty() && !m.use_registration_token(txn, managed_token, now_ms());
    return !*token_refused && txn.insert(m.accounts, name, value);
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::rolled_back && *token_refused) {  // used up or revoked meanwhile
    reserved.keep();  // counted, as every refusal for the token (docs/PROTOCOL.md)
    co_return fail(code::invalid_registration_token, "a valid registration_token is required to register here",
                   "registration_token");
  }
  if (outcome == store::write_outcome::rolled_back) {
    reserved.keep();
    co_return fail(code::name_taken, "the name '" + name + "' is already registered", "name");
  }
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the account could not be stored");
  reserved.created();  // an account was created: the registration counts
  co_return to_profile(record);
}

namespace {

// A new device of `name` and its refresh token (only the token's hash is kept).
std::pair<records::device_record, std::string> new_device(std::string const& name, std::string const& device_name,
                                                          std::int64_t now, std::uint32_t refresh_ttl_s) {
  auto device_id = detail::random_printable_id(device_id_bytes);
  auto [refresh_token, parts] = detail::new_refresh_token(device_id);
  records::device_record device;
  device.set_device_id(device_id);
  device.set_user_name(name);
  device.set_device_name(device_name);
  device.set_created_at_ms(now);
  device.set_last_refreshed_at_ms(now);
  device.set_refresh_hash(detail::hash_refresh_secret(parts.secret));
  device.set_refresh_expires_at_ms(now + std::int64_t(refresh_ttl_s) * 1000);
  return {std::move(device), std::move(refresh_token)};
}

}  // namespace

awaitable<result<session_tokens>> user_service::login(std::string name_or_id, std::string password,
                                                      std::string device_name, std::string client_address,
                                                      std::string device_token) {
  auto& m = *impl_;
  if (auto f = check_text("device_name", device_name, 1, 64, false)) co_return *f;
  // Only well-formed names get an account counter, so junk names cannot bloat the limiter.
  auto name_opt = m.local_name(name_or_id);
  std::string name = name_opt.value_or("");
  std::string account_key = name_opt ? "user:" + name : "";
  std::string address_key = "addr:" + net::limit_key(client_address);  // an IPv6 client's /64
  auto wide = net::wide_limit_key(client_address);                     // and its /48 (else empty)
  std::string wide_key = wide.empty() ? "" : "addr:" + wide;
  std::int64_t now = now_ms();
  // A device that logged in as this user before is held back by its own failures only:
  // anyone may lock the account (`user:`) with wrong passwords, not its owner's devices.
  // (The token must be of this user, and of the password they have now: a reset makes
  // every device token of before worthless, whoever collected them.)
  std::optional<records::user_record> user;
  if (name_opt) user = m.env.read([&](store::lmdb_txn const& txn) { return m.read_user(txn, name); });
  std::string known_device = detail::random_bytes(16);
  bool known_here = false;
  if (user && !device_token.empty()) {
    auto known = detail::verify_device_token(device_token, m.device_key, now);
    if (known.status == detail::token_status::ok && known.claims.user_name == name &&
        user->password_generation() == known.claims.password_generation) {
      known_device = known.claims.device_id;
      account_key = "device:" + known_device;
      known_here = true;
    }
  }
  // Nor by the failures of others behind its address (a carrier NAT, a shared /64): a known
  // device's failures count against it alone; the address's rate of checks still holds.
  std::int64_t wait = known_here ? 0 : m.address_limiter.wait_ms(address_key, now);
  if (!known_here && !wide_key.empty()) wait = std::max(wait, m.wide_address_limiter.wait_ms(wide_key, now));
  if (name_opt) wait = std::max(wait, m.account_limiter.wait_ms(account_key, now));
  if (wait > 0) {
    co_return errors::rate_limited("too many failed logins; try again later", wait);
  }
  // The attempt is pending (not failed) while its password is checked: a correct password
  // never costs anyone an attempt (pending_attempt).
  pending_attempt for_account, for_address, for_wide;
  if (name_opt && !for_account.begin(m.account_limiter, account_key, now)) co_return m.busy();
  // (A known device's login still counts among the address's logins in flight.)
  if (!for_address.begin(m.address_limiter, address_key, now, known_here)) co_return m.busy();
  if (!wide_key.empty() && !for_wide.begin(m.wide_address_limiter, wide_key, now, known_here)) co_return m.busy();

  std::string hash = user ? user->password_hash() : m.dummy_hash;
  auto slot = m.hash_slot();
  if (!slot) co_return m.busy();
  // (Per /48 too: a new /64 per attempt gains nothing.)
  if (auto next = m.take_password_check(address_key, wide_key); next > 0)
    co_return errors::rate_limited("too many logins from your address; try again later", next);
  // A right password whose hash was made at another cost than the configured one is hashed
  // again at that cost, in the same slot: raising the cost reaches existing accounts at their
  // next login (lowering it too). Only a real account's hash, never the dummy.
  // Only the hash's own time is measured (not the wait for a pool thread, which a padding
  // multiplied would make an account's answer later than a name's that is none).
  auto cpu_work = [hash, password, p = m.params(), real = user.has_value()] {
    auto started = std::chrono::steady_clock::now();
    detail::checked_password checked{detail::verify_password(hash, password), {}, {}};
    checked.took = std::chrono::steady_clock::now() - started;
    if (checked.match && real && detail::needs_rehash(hash, p)) {
      try {
        checked.rehash = detail::hash_password(password, p);
      } catch (std::exception const&) {  // out of memory: the right password still logs in
      }
    }
    return checked;
  };
  auto checked = co_await async::offload(m.cpu_pool, std::move(cpu_work));
  bool match = checked.match;
  slot.reset();
  // A wrong password at an account whose hash was made at a lower cost than the configured
  // one (an operator raised it; it is made again at the next right one) is answered no
  // sooner than one at a name that does not exist (the dummy hash, at the configured
  // cost): an outsider must not tell dormant accounts from names that are none.
  if (user && !match) {
    auto ratio = std::min(detail::cost_ratio(hash, m.params()), 64.0);
    if (ratio > 1.05) {
      boost::asio::steady_timer pad(
          co_await boost::asio::this_coro::executor,
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(checked.took * (ratio - 1)));
      co_await pad.async_wait(boost::asio::use_awaitable);
    }
  }
  if (!user || !match) {
    now = now_ms();
    if (name_opt) m.account_limiter.failed(account_key, now);
    if (!known_here) m.address_limiter.failed(address_key, now, account_key);
    if (!known_here && !wide_key.empty()) m.wide_address_limiter.failed(wide_key, now, account_key);
    co_return fail(code::invalid_credentials, "wrong name or password");
  }
  if (user->disabled()) co_return fail(code::user_disabled, "this account is disabled");
  m.account_limiter.succeeded(account_key);  // (a known device's own: the account's stays)
  // Only the failures at this account come off the address's count (its owner's typos):
  // an attacker's own account must not clear their guesses at others from the address.
  m.address_limiter.forgive_account(address_key, account_key);
  if (!wide_key.empty()) m.wide_address_limiter.forgive_account(wide_key, account_key);

  now = now_ms();
  auto [device, refresh_token] = new_device(name, device_name, now, m.options.refresh_token_ttl_s);
  auto const& device_id = device.device_id();
  auto value = device.SerializeAsString();
  auto generation = user->password_generation();
  auto rehashed = std::make_shared<bool>(false);
  store::lmdb_env::write_fn mutation = [&m, name, device_id = std::string(device_id), value, now, hash, generation,
                                        rehash = std::move(checked.rehash), rehashed](store::lmdb_txn& txn) {
    // The account may have been deleted or disabled while the password was checked, or its
    // password set anew: that revoked every device, and this one must not outlive it. (A
    // hash made again at a new cost keeps the generation: the password is the same.)
    *rehashed = false;
    auto u = m.read_user(txn, name);
    if (!u || u->disabled() || u->password_generation() != generation) return false;
    if (!rehash.empty() && u->password_hash() == hash) {
      u->set_password_hash(rehash);
      txn.put(m.accounts, name, u->SerializeAsString());
      *rehashed = true;
    }
    m.make_room_for_device(txn, name, now);
    txn.put(m.devices, device_id, value);
    txn.put(m.user_devices, device_index_key(name, device_id), "");
    return true;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the session could not be stored");
  if (outcome == store::write_outcome::rolled_back) co_return fail(code::invalid_credentials, "wrong name or password");
  m.tell_sessions_changed(name);  // the device cap may have ended one
  auto tokens = m.issue(device, std::move(refresh_token));
  tokens.password_rehashed = *rehashed;
  detail::access_claims known{name, known_device, now, now + known_device_ttl_ms, generation};
  tokens.device_token = detail::sign_device_token(known, m.device_key);
  co_return tokens;
}

namespace {

// Whether `presented` (a refresh secret's hash) is one the session handed out, revoked or
// not: a made-up token must not reach the writer, nor learn that a session was revoked.
bool any_secret_of(records::device_record const& device, std::string const& presented) {
  bool any = detail::equal_secret(presented, device.refresh_hash()) ||
             (!device.retry_hash().empty() && detail::equal_secret(presented, device.retry_hash()));
  for (auto const& old : device.retired_refresh_hashes()) any = detail::equal_secret(presented, old) || any;
  return any;
}

}  // namespace

awaitable<result<session_tokens>> user_service::refresh(std::string token) {
  auto& m = *impl_;
  auto parts = detail::parse_refresh_token(token);
  if (!parts) co_return fail(code::invalid_refresh_token, "the refresh token is malformed", "refresh_token");
  std::string presented = detail::hash_refresh_secret(parts->secret);
  auto [new_token, new_parts] = detail::new_refresh_token(parts->device_id);
  std::string new_hash = detail::hash_refresh_secret(new_parts.secret);

  auto device_id = parts->device_id;
  // A token nothing here could match (a made-up one) is refused from a read: refreshes need
  // no account, and each write waits on the writer every login and registration waits on.
  bool could_match = m.env.read([&](store::lmdb_txn const& txn) {
    auto device = m.read_device(txn, device_id);
    return device && any_secret_of(*device, presented);
  });
  if (!could_match) co_return fail(code::invalid_refresh_token, "unknown refresh token", "refresh_token");

  struct state {
    std::optional<failure> error;
    records::device_record device;
  };
  auto st = std::make_shared<state>();
  store::lmdb_env::write_fn mutation = [&m, st, device_id, presented, new_hash](store::lmdb_txn& txn) {
    *st = state{};
    auto device = m.read_device(txn, device_id);
    if (!device) {
      st->error = fail(code::invalid_refresh_token, "unknown refresh token", "refresh_token");
      return false;
    }
    if (device->revoked()) {  // (said only to a holder of one of its tokens)
      st->error = any_secret_of(*device, presented)
                      ? fail(code::session_revoked, "this session has been revoked; log in again")
                      : fail(code::invalid_refresh_token, "unknown refresh token", "refresh_token");
      return false;
    }
    std::int64_t now = now_ms();
    bool current = detail::equal_secret(presented, device->refresh_hash());
    // The token exchanged last, again, while its successor is unused: the answer was lost.
    bool retry = !current && !device->retry_hash().empty() && now < device->retry_until_ms() &&
                 device->retries() < max_refresh_retries && detail::equal_secret(presented, device->retry_hash());
    if (current || retry) {
      if (current && now >= device->refresh_expires_at_ms()) {
        st->error = fail(code::invalid_refresh_token, "the refresh token has expired; log in again", "refresh_token");
        return false;
      }
      auto user = m.read_user(txn, device->user_name());
      if (!user) {
        st->error = fail(code::session_revoked, "the account no longer exists");
        return false;
      }
      if (user->disabled()) {
        st->error = fail(code::user_disabled, "this account is disabled");
        return false;
      }
      // Keep the most recent retired hashes (bounded) so that replaying any of them, not
      // only the last one, is recognised as theft. A retry retires the successor it
      // replaces; the token retried keeps its grace, which does not start again.
      auto* retired = device->mutable_retired_refresh_hashes();
      retired->Add(std::string(device->refresh_hash()));
      if (retired->size() > max_retired_refresh_hashes)
        retired->erase(retired->begin(), retired->begin() + (retired->size() - max_retired_refresh_hashes));
      if (current) {  // the grace never outlives the token itself
        device->set_retry_hash(presented);
        device->set_retry_until_ms(
            std::min(now + std::int64_t(m.options.refresh_retry_grace_s) * 1000, device->refresh_expires_at_ms()));
        device->set_retries(0);
      } else {
        device->set_retries(device->retries() + 1);
      }
      device->set_refresh_hash(new_hash);
      device->set_refresh_expires_at_ms(now + std::int64_t(m.options.refresh_token_ttl_s) * 1000);
      device->set_last_refreshed_at_ms(now);
      txn.put(m.devices, device_id, device->SerializeAsString());
      st->device = *device;
      return true;
    }
    bool reused = false;
    for (auto const& old : device->retired_refresh_hashes()) reused = detail::equal_secret(presented, old) || reused;
    if (reused) {
      // A rotated-out token came back: someone holds a copy. Revoke the whole session
      // (durably: this write commits) so neither holder can continue.
      device->set_revoked(true);
      txn.put(m.devices, device_id, device->SerializeAsString());
      st->device = *device;
      st->error = fail(code::refresh_token_reused, "this refresh token was already used; the session is revoked");
      return true;
    }
    st->error = fail(code::invalid_refresh_token, "unknown refresh token", "refresh_token");
    return false;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the session could not be updated");
  if (st->error && st->error->code == code::refresh_token_reused) m.tell_sessions_changed(st->device.user_name());
  if (st->error) co_return *st->error;
  co_return m.issue(st->device, std::move(new_token));
}

result<principal> user_service::authenticate(std::string_view token) const {
  auto& m = *impl_;
  auto v = detail::verify_access_token(token, m.token_key, now_ms());
  switch (v.status) {
    case detail::token_status::ok:
      break;
    case detail::token_status::expired:
      return fail(code::token_expired, "the access token has expired; refresh it");
    default:
      return fail(code::invalid_token, "the access token is not valid");
  }
  return m.principal_of(v.claims.device_id, v.claims.user_name, v.claims.expires_at_ms);
}

result<principal> user_service::session_of(std::string_view device_id) const {
  auto raw = format::from_base64url(device_id);
  if (!raw) return fail(code::session_revoked, "this session has been revoked; log in again");
  return impl_->principal_of(*raw, {}, 0);
}

result<principal> user_service::impl::principal_of(std::string const& device_id, std::string const& user_name,
                                                   std::int64_t expires_at_ms) const {
  auto& m = *this;
  return m.env.read([&](store::lmdb_txn const& txn) -> result<principal> {
    auto device = m.read_device(txn, device_id);
    // A session past its refresh token's life is over too (list_sessions shows it so), for
    // an access token that would outlive it as for the live stream.
    if (!device || device->revoked() || (!user_name.empty() && device->user_name() != user_name) ||
        device->refresh_expires_at_ms() <= now_ms())
      return fail(code::session_revoked, "this session has been revoked; log in again");
    auto user = m.read_user(txn, device->user_name());
    if (!user) return fail(code::session_revoked, "the account no longer exists");
    if (user->disabled()) return fail(code::user_disabled, "this account is disabled");
    return principal{user->name(), format::base64url(device->device_id()), device->device_name(), expires_at_ms};
  });
}

awaitable<errors::status> user_service::logout(principal who) {
  co_return co_await revoke_session(who.device_id);
}

result<profile> user_service::get_profile(std::string const& text) const {
  auto& m = *impl_;
  auto name = m.local_name(text);
  if (!name) return fail(code::user_not_found, "no user '" + text + "' in region " + m.region);
  auto user = m.env.read([&](store::lmdb_txn const& txn) { return m.read_user(txn, *name); });
  if (!user) return fail(code::user_not_found, "no user '" + text + "' in region " + m.region);
  return to_profile(*user);
}

awaitable<result<profile>> user_service::update_profile(std::string name, profile_update update) {
  if (update.display_name) {
    if (auto f = check_text("display_name", *update.display_name, 1, 64, false)) co_return *f;
  }
  if (update.about) {
    if (auto f = check_text("about", *update.about, 0, 280, true)) co_return *f;
  }
  // Nothing to change (a client saving its settings again): answered without a commit,
  // which every login and refresh would otherwise wait behind, as often as it is asked.
  auto now = get_profile(name);
  if (now && (!update.display_name || *update.display_name == now->display_name) &&
      (!update.about || *update.about == now->about) &&
      (!update.group_adds_contacts_only || *update.group_adds_contacts_only == now->group_adds_contacts_only))
    co_return now;
  if (auto wait = impl_->profile_changes.take(name, now_ms()); wait > 0)
    co_return errors::rate_limited(
        "more than " + std::to_string(impl::profile_changes_per_minute) + " profile changes a minute", wait);
  user_change change = [update](store::lmdb_txn&, records::user_record& u) {
    if (update.display_name) u.set_display_name(*update.display_name);
    if (update.about) u.set_about(*update.about);
    if (update.group_adds_contacts_only) u.set_group_adds_contacts_only(*update.group_adds_contacts_only);
  };
  co_return co_await impl_->modify_user(name, std::move(change));
}

}  // namespace petchat::users
