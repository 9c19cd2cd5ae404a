#include "node/users/users.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "node/async/async.hpp"
#include "node/format/format.hpp"
#include "node/ids/ids.hpp"
#include "node/users/detail/login_limiter.hpp"
#include "node/users/detail/passwords.hpp"
#include "node/users/detail/registration_limiter.hpp"
#include "node/users/detail/tokens.hpp"
#include "user_records.pb.h"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice (a double
// free). Every lambda handed to an awaited call is therefore first stored in a named
// variable, and the named variable is moved in.

namespace petchat::users {
namespace {

using format::now_ms;

using errors::code;
using errors::fail;
using errors::failure;

constexpr std::size_t max_password_bytes = 1024;
constexpr std::size_t device_id_bytes = 16;
constexpr int max_retired_refresh_hashes = 16;

// Counts code points of valid UTF-8 without control characters (newline allowed if
// `multiline`); returns nullopt if the text breaks those rules.
std::optional<std::size_t> text_length(std::string_view s, bool multiline) {
  for (char c : s) {
    auto b = static_cast<unsigned char>(c);
    if ((b < 0x20 || b == 0x7f) && !(multiline && b == '\n')) return std::nullopt;
  }
  return format::utf8_length(s);
}

std::optional<failure> check_text(std::string const& field, std::string const& value, std::size_t min, std::size_t max,
                                  bool multiline) {
  auto len = text_length(value, multiline);
  if (!len || *len < min || *len > max)
    return fail(code::invalid_field,
                field + " must be " + std::to_string(min) + " to " + std::to_string(max) +
                    " characters of UTF-8 without control characters",
                field);
  return std::nullopt;
}

profile to_profile(records::user_record const& r) {
  return profile{r.name(), r.display_name(), r.about(), r.created_at_ms(), r.disabled()};
}

using user_change = std::function<void(store::lmdb_txn&, records::user_record&)>;

std::string device_index_key(std::string const& user, std::string const& device_id) {
  return user + '\0' + device_id;
}

}  // namespace

struct user_service::impl {
  config::users_section options;
  std::string region;
  detail::token_key token_key;
  boost::asio::thread_pool& cpu_pool;
  store::lmdb_env env;
  store::lmdb_db accounts;      // name -> user_record
  store::lmdb_db devices;       // raw device id -> device_record
  store::lmdb_db user_devices;  // name NUL raw device id -> "" (devices of a user)
  detail::login_limiter account_limiter;
  detail::login_limiter address_limiter;
  detail::registration_limiter registrations;
  // Verified against when the user does not exist, so that an unknown name costs as much
  // time as a wrong password and response times do not reveal which names exist.
  std::string dummy_hash;

  impl(config::users_section const& o, std::string r, config::store_section const& store,
       std::filesystem::path const& data_dir, identity::region_identity const& id, boost::asio::thread_pool& pool)
      : options(o),
        region(std::move(r)),
        token_key(id.token_key),
        cpu_pool(pool),
        env(store::lmdb_options{data_dir / "users", store.lmdb_initial_map_mib << 20}),
        accounts(env.open_db("accounts")),
        devices(env.open_db("devices")),
        user_devices(env.open_db("user_devices")),
        account_limiter({o.login_free_attempts, o.login_backoff_initial_ms, o.login_backoff_max_ms}),
        // An address may be shared by many people behind one NAT, so it has its own allowance.
        address_limiter({o.login_free_attempts_per_address, o.login_backoff_initial_ms, o.login_backoff_max_ms}),
        registrations(o.max_registrations_per_address, std::int64_t(o.registration_window_s) * 1000),
        dummy_hash(detail::hash_password(detail::random_bytes(16), params())) {}

  detail::hash_params params() const { return {options.password_hash_ops, options.password_hash_memory_kib}; }

  // Bounds the argon2id work queued on the CPU pool: each hash holds its memory cost, and
  // an unbounded queue would let a flood of logins delay everyone (and use memory).
  std::atomic<std::size_t> hashes_in_flight{0};
  std::size_t max_hashes_in_flight = 4 * std::max(2u, std::thread::hardware_concurrency());

  struct hash_slot_release {
    void operator()(std::atomic<std::size_t>* n) const { n->fetch_sub(1); }
  };
  using slot_guard = std::unique_ptr<std::atomic<std::size_t>, hash_slot_release>;

  // A slot for one password hash, or an empty guard if the node is saturated.
  slot_guard hash_slot() {
    if (hashes_in_flight.fetch_add(1) >= max_hashes_in_flight) {
      hashes_in_flight.fetch_sub(1);
      return slot_guard(nullptr);
    }
    return slot_guard(&hashes_in_flight);
  }

  static failure busy() {
    auto f = fail(code::rate_limited, "the node is busy checking passwords; try again shortly");
    // (also for logins of one account or address already in flight: see login)
    f.retry_after_s = 1;
    return f;
  }

  // The account called `name`, if it exists (a deleted account's tombstone does not).
  std::optional<records::user_record> read_user(store::lmdb_txn const& txn, std::string const& name) const {
    auto raw = txn.get(accounts, name);
    if (!raw) return std::nullopt;
    records::user_record r;
    if (!r.ParseFromArray(raw->data(), static_cast<int>(raw->size()))) throw std::runtime_error("corrupt user record");
    if (r.deleted()) return std::nullopt;
    return r;
  }

  // Inside a login's write: removes `name`'s sessions whose refresh token has expired, and
  // ends the least recently used ones until a new one fits under max_devices_per_user.
  // Revoked sessions stay until they expire (a replayed refresh token must still be
  // recognised), but never more of them than the cap.
  void make_room_for_device(store::lmdb_txn& txn, std::string const& name, std::int64_t now) {
    std::vector<records::device_record> live, revoked;
    std::vector<std::string> ids;
    txn.for_each(user_devices, name + '\0', [&](std::string_view key, std::string_view) {
      ids.emplace_back(key.substr(name.size() + 1));
      return true;
    });
    auto forget = [&](std::string const& id) {
      txn.erase(devices, id);
      txn.erase(user_devices, device_index_key(name, id));
    };
    for (auto const& id : ids) {
      auto d = read_device(txn, id);
      if (!d || d->refresh_expires_at_ms() <= now) {
        forget(id);
        continue;
      }
      (d->revoked() ? revoked : live).push_back(std::move(*d));
    }
    auto least_recent_first = [](auto const& a, auto const& b) {
      return a.last_refreshed_at_ms() < b.last_refreshed_at_ms();
    };
    std::sort(live.begin(), live.end(), least_recent_first);
    std::sort(revoked.begin(), revoked.end(), least_recent_first);
    for (std::size_t i = 0; i + options.max_devices_per_user <= live.size(); ++i) forget(live[i].device_id());
    for (std::size_t i = 0; i + options.max_devices_per_user < revoked.size(); ++i) forget(revoked[i].device_id());
  }

  std::optional<records::device_record> read_device(store::lmdb_txn const& txn, std::string const& id) const {
    auto raw = txn.get(devices, id);
    if (!raw) return std::nullopt;
    records::device_record r;
    if (!r.ParseFromArray(raw->data(), static_cast<int>(raw->size())))
      throw std::runtime_error("corrupt device record");
    return r;
  }

  std::optional<failure> check_password(std::string const& password) const {
    if (password.size() < options.password_min_length || password.size() > max_password_bytes)
      return fail(code::weak_password,
                  "the password must be " + std::to_string(options.password_min_length) + " to " +
                      std::to_string(max_password_bytes) + " bytes long",
                  "password");
    return std::nullopt;
  }

  // Resolves a name or id of this region to a bare name.
  std::optional<std::string> local_name(std::string const& text) const {
    auto id = ids::parse_user_id(text, region);
    if (!id || id->region != region) return std::nullopt;
    return id->name;
  }

  session_tokens issue(records::device_record const& device, std::string refresh_token) const {
    std::int64_t now = now_ms();
    detail::access_claims claims{device.user_name(), device.device_id(), now,
                                 now + std::int64_t(options.access_token_ttl_s) * 1000};
    return session_tokens{device.user_name(),
                          format::base64url(device.device_id()),
                          detail::sign_access_token(claims, token_key),
                          options.access_token_ttl_s,
                          std::move(refresh_token),
                          options.refresh_token_ttl_s};
  }

  // Runs a read-modify-write of one user record through the commit pipeline.
  awaitable<result<profile>> modify_user(std::string name, user_change change) {
    auto out = std::make_shared<std::optional<records::user_record>>();
    store::lmdb_env::write_fn mutation = [this, name, change, out](store::lmdb_txn& txn) {
      out->reset();
      auto user = read_user(txn, name);
      if (!user) return false;
      change(txn, *user);
      txn.put(accounts, name, user->SerializeAsString());
      *out = std::move(*user);
      return true;
    };
    auto outcome = co_await async::write(env, std::move(mutation));
    if (outcome == store::write_outcome::failed) co_return fail(code::internal, "the account could not be stored");
    if (outcome == store::write_outcome::rolled_back || !*out)
      co_return fail(code::user_not_found, "no user '" + name + "' in region " + region);
    co_return to_profile(**out);
  }

  // Marks every session of `name` revoked, inside a write transaction.
  void revoke_all(store::lmdb_txn& txn, std::string const& name) {
    std::vector<std::string> ids;
    txn.for_each(user_devices, name + '\0', [&](std::string_view key, std::string_view) {
      ids.emplace_back(key.substr(name.size() + 1));
      return true;
    });
    for (auto const& id : ids) {
      auto device = read_device(txn, id);
      if (!device || device->revoked()) continue;
      device->set_revoked(true);
      txn.put(devices, id, device->SerializeAsString());
    }
  }
};

user_service::user_service(config::users_section const& options, std::string region, config::store_section const& store,
                           std::filesystem::path const& data_dir, identity::region_identity const& identity,
                           boost::asio::thread_pool& cpu_pool)
    : impl_(std::make_unique<impl>(options, std::move(region), store, data_dir, identity, cpu_pool)) {}

user_service::~user_service() = default;

std::string const& user_service::region() const {
  return impl_->region;
}

void user_service::stop() {
  impl_->env.stop();
}

awaitable<result<profile>> user_service::register_user(std::string name, std::string password,
                                                       std::optional<std::string> display_name,
                                                       std::string registration_token, bool by_admin,
                                                       std::string client_address) {
  auto& m = *impl_;
  // The address's allowance is reserved before any work and given back unless an account
  // is created, so concurrent registrations cannot overshoot it.
  struct reservation {
    detail::registration_limiter* limiter = nullptr;
    std::string address;
    ~reservation() {
      if (limiter) limiter->release(address);
    }
  } reserved;
  if (!by_admin) {
    if (m.options.registration == config::registration_policy::closed)
      co_return fail(code::registration_closed, "this node does not accept self-registration; ask its admin");
    if (m.options.registration == config::registration_policy::token &&
        !detail::equal_secret(registration_token, m.options.registration_token))
      co_return fail(code::invalid_registration_token, "a valid registration_token is required to register here",
                     "registration_token");
    if (auto wait = m.registrations.reserve(client_address, now_ms())) {
      auto f = fail(code::rate_limited, "too many registrations from your address; try again later");
      f.retry_after_s = static_cast<std::uint32_t>((wait + 999) / 1000);
      co_return f;
    }
    reserved.address = client_address;  // (assigned member-wise: a temporary's destructor would release it)
    reserved.limiter = &m.registrations;
  }
  if (!ids::is_valid_name(name))
    co_return fail(code::invalid_name,
                   "names are 3 to 32 characters of a-z 0-9 . _ - and start with a letter (lower case only)", "name");
  if (auto f = m.check_password(password)) co_return *f;
  if (display_name) {
    if (auto f = check_text("display_name", *display_name, 1, 64, false)) co_return *f;
  }
  // A cheap look first, so a taken name does not cost an argon2id hash.
  if (m.env.read([&](store::lmdb_txn const& txn) { return txn.get(m.accounts, name).has_value(); }))
    co_return fail(code::name_taken, "the name '" + name + "' is already registered", "name");

  auto params = m.params();
  auto slot = m.hash_slot();
  if (!slot) co_return m.busy();
  auto cpu_work = [password, params] { return detail::hash_password(password, params); };
  std::string hash = co_await async::offload(m.cpu_pool, std::move(cpu_work));
  slot.reset();

  records::user_record record;
  record.set_name(name);
  record.set_password_hash(hash);
  record.set_display_name(display_name.value_or(name));
  record.set_created_at_ms(now_ms());
  auto value = record.SerializeAsString();
  store::lmdb_env::write_fn mutation = [&m, name, value](store::lmdb_txn& txn) {
    return txn.insert(m.accounts, name, value);
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::rolled_back)
    co_return fail(code::name_taken, "the name '" + name + "' is already registered", "name");
  if (outcome == store::write_outcome::failed) co_return fail(code::internal, "the account could not be stored");
  reserved.limiter = nullptr;  // an account was created: the registration counts
  co_return to_profile(record);
}

awaitable<result<session_tokens>> user_service::login(std::string name_or_id, std::string password,
                                                      std::string device_name, std::string client_address) {
  auto& m = *impl_;
  if (auto f = check_text("device_name", device_name, 1, 64, false)) co_return *f;
  // Only well-formed names get an account counter, so junk names cannot bloat the limiter.
  auto name_opt = m.local_name(name_or_id);
  std::string name = name_opt.value_or("");
  std::string account_key = name_opt ? "user:" + name : "";
  std::string address_key = "addr:" + client_address;
  std::int64_t now = now_ms();
  std::int64_t wait = m.address_limiter.wait_ms(address_key, now);
  if (name_opt) wait = std::max(wait, m.account_limiter.wait_ms(account_key, now));
  if (wait > 0) {
    auto f = fail(code::rate_limited, "too many failed logins; try again later");
    f.retry_after_s = static_cast<std::uint32_t>((wait + 999) / 1000);
    co_return f;
  }
  // The attempt is pending (not failed) while its password is checked: it counts as a
  // failure only once it has failed, so a correct password never costs anyone an attempt,
  // and attempts in flight hold back further ones (see login_limiter::begin).
  struct attempt {
    detail::login_limiter* limiter = nullptr;
    std::string key;
    ~attempt() {
      if (limiter) limiter->end(key);
    }
  } for_account, for_address;
  if (name_opt) {
    if (!m.account_limiter.begin(account_key, now)) co_return m.busy();
    for_account.key = account_key;
    for_account.limiter = &m.account_limiter;
  }
  if (!m.address_limiter.begin(address_key, now)) co_return m.busy();
  for_address.key = address_key;
  for_address.limiter = &m.address_limiter;

  std::optional<records::user_record> user;
  if (name_opt) user = m.env.read([&](store::lmdb_txn const& txn) { return m.read_user(txn, name); });
  std::string hash = user ? user->password_hash() : m.dummy_hash;
  auto slot = m.hash_slot();
  if (!slot) co_return m.busy();
  auto cpu_work = [hash, password] { return detail::verify_password(hash, password); };
  bool match = co_await async::offload(m.cpu_pool, std::move(cpu_work));
  slot.reset();
  if (!user || !match) {
    now = now_ms();
    if (name_opt) m.account_limiter.failed(account_key, now);
    m.address_limiter.failed(address_key, now);
    co_return fail(code::invalid_credentials, "wrong name or password");
  }
  if (user->disabled()) co_return fail(code::user_disabled, "this account is disabled");
  m.account_limiter.succeeded(account_key);
  m.address_limiter.succeeded(address_key);

  // Printed, a device id must not start with '-' (base64url digit 62: a first byte of
  // 0xF8-0xFB), or `petchatctl sessions revoke <id>` would read it as an option.
  std::string device_id;
  do {
    device_id = detail::random_bytes(device_id_bytes);
  } while ((static_cast<unsigned char>(device_id[0]) >> 2) == 62);
  auto [refresh_token, parts] = detail::new_refresh_token(device_id);
  now = now_ms();
  records::device_record device;
  device.set_device_id(device_id);
  device.set_user_name(name);
  device.set_device_name(device_name);
  device.set_created_at_ms(now);
  device.set_last_refreshed_at_ms(now);
  device.set_refresh_hash(detail::hash_refresh_secret(parts.secret));
  device.set_refresh_expires_at_ms(now + std::int64_t(m.options.refresh_token_ttl_s) * 1000);
  auto value = device.SerializeAsString();
  store::lmdb_env::write_fn mutation = [&m, name, device_id, value, now](store::lmdb_txn& txn) {
    // The account may have been deleted or disabled while the password was checked.
    auto u = m.read_user(txn, name);
    if (!u || u->disabled()) return false;
    m.make_room_for_device(txn, name, now);
    txn.put(m.devices, device_id, value);
    txn.put(m.user_devices, device_index_key(name, device_id), "");
    return true;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return fail(code::internal, "the session could not be stored");
  if (outcome == store::write_outcome::rolled_back) co_return fail(code::invalid_credentials, "wrong name or password");
  co_return m.issue(device, std::move(refresh_token));
}

awaitable<result<session_tokens>> user_service::refresh(std::string token) {
  auto& m = *impl_;
  auto parts = detail::parse_refresh_token(token);
  if (!parts) co_return fail(code::invalid_refresh_token, "the refresh token is malformed", "refresh_token");
  std::string presented = detail::hash_refresh_secret(parts->secret);
  auto [new_token, new_parts] = detail::new_refresh_token(parts->device_id);
  std::string new_hash = detail::hash_refresh_secret(new_parts.secret);

  struct state {
    std::optional<failure> error;
    records::device_record device;
  };
  auto st = std::make_shared<state>();
  auto device_id = parts->device_id;
  store::lmdb_env::write_fn mutation = [&m, st, device_id, presented, new_hash](store::lmdb_txn& txn) {
    *st = state{};
    auto device = m.read_device(txn, device_id);
    if (!device) {
      st->error = fail(code::invalid_refresh_token, "unknown refresh token", "refresh_token");
      return false;
    }
    if (device->revoked()) {
      st->error = fail(code::session_revoked, "this session has been revoked; log in again");
      return false;
    }
    std::int64_t now = now_ms();
    if (detail::equal_secret(presented, device->refresh_hash())) {
      if (now >= device->refresh_expires_at_ms()) {
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
      // only the last one, is recognised as theft.
      auto* retired = device->mutable_retired_refresh_hashes();
      retired->Add(std::string(device->refresh_hash()));
      if (retired->size() > max_retired_refresh_hashes)
        retired->erase(retired->begin(), retired->begin() + (retired->size() - max_retired_refresh_hashes));
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
      st->error = fail(code::refresh_token_reused, "this refresh token was already used; the session is revoked");
      return true;
    }
    st->error = fail(code::invalid_refresh_token, "unknown refresh token", "refresh_token");
    return false;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return fail(code::internal, "the session could not be updated");
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
  return m.env.read([&](store::lmdb_txn const& txn) -> result<principal> {
    auto device = m.read_device(txn, v.claims.device_id);
    if (!device || device->revoked() || device->user_name() != v.claims.user_name)
      return fail(code::session_revoked, "this session has been revoked; log in again");
    auto user = m.read_user(txn, v.claims.user_name);
    if (!user) return fail(code::session_revoked, "the account no longer exists");
    if (user->disabled()) return fail(code::user_disabled, "this account is disabled");
    return principal{user->name(), format::base64url(device->device_id()), device->device_name(),
                     v.claims.expires_at_ms};
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
  user_change change = [update](store::lmdb_txn&, records::user_record& u) {
    if (update.display_name) u.set_display_name(*update.display_name);
    if (update.about) u.set_about(*update.about);
  };
  co_return co_await impl_->modify_user(name, std::move(change));
}

std::vector<profile> user_service::list_users() const {
  auto& m = *impl_;
  return m.env.read([&](store::lmdb_txn const& txn) {
    std::vector<profile> out;
    txn.for_each(m.accounts, "", [&](std::string_view, std::string_view value) {
      records::user_record r;
      if (r.ParseFromArray(value.data(), static_cast<int>(value.size())) && !r.deleted()) out.push_back(to_profile(r));
      return true;
    });
    return out;
  });
}

std::size_t user_service::active_sessions_of(std::string const& name) const {
  std::size_t n = 0;
  for (auto const& s : list_sessions(name))
    if (!s.revoked) ++n;
  return n;
}

awaitable<result<profile>> user_service::set_disabled(std::string name, bool disabled) {
  auto bare = impl_->local_name(name);
  if (!bare) co_return fail(code::user_not_found, "no user '" + name + "'");
  user_change change = [disabled](store::lmdb_txn&, records::user_record& u) { u.set_disabled(disabled); };
  co_return co_await impl_->modify_user(*bare, std::move(change));
}

awaitable<result<profile>> user_service::set_password(std::string name, std::string password) {
  auto& m = *impl_;
  auto bare = m.local_name(name);
  if (!bare) co_return fail(code::user_not_found, "no user '" + name + "'");
  if (auto f = m.check_password(password)) co_return *f;
  if (!get_profile(*bare)) co_return fail(code::user_not_found, "no user '" + name + "'");
  auto params = m.params();
  auto slot = m.hash_slot();
  if (!slot) co_return m.busy();
  auto cpu_work = [password, params] { return detail::hash_password(password, params); };
  std::string hash = co_await async::offload(m.cpu_pool, std::move(cpu_work));
  slot.reset();
  user_change change = [&m, hash, n = *bare](store::lmdb_txn& txn, records::user_record& u) {
    u.set_password_hash(hash);
    m.revoke_all(txn, n);
  };
  co_return co_await m.modify_user(*bare, std::move(change));
}

awaitable<errors::status> user_service::delete_user(std::string name) {
  auto& m = *impl_;
  auto bare = m.local_name(name);
  if (!bare) co_return fail(code::user_not_found, "no user '" + name + "'");
  store::lmdb_env::write_fn mutation = [&m, n = *bare](store::lmdb_txn& txn) {
    if (!m.read_user(txn, n)) return false;
    // The tombstone keeps the name (and nothing else) forever.
    records::user_record tombstone;
    tombstone.set_name(n);
    tombstone.set_deleted(true);
    txn.put(m.accounts, n, tombstone.SerializeAsString());
    std::vector<std::string> keys;
    txn.for_each(m.user_devices, n + '\0', [&](std::string_view key, std::string_view) {
      keys.emplace_back(key);
      return true;
    });
    for (auto const& key : keys) {
      txn.erase(m.devices, key.substr(n.size() + 1));
      txn.erase(m.user_devices, key);
    }
    return true;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return fail(code::internal, "the account could not be deleted");
  if (outcome == store::write_outcome::rolled_back) co_return fail(code::user_not_found, "no user '" + name + "'");
  co_return errors::ok();
}

std::vector<session_info> user_service::list_sessions(std::optional<std::string> user) const {
  auto& m = *impl_;
  std::optional<std::string> bare;
  if (user) {
    bare = m.local_name(*user);
    if (!bare) return {};
  }
  return m.env.read([&](store::lmdb_txn const& txn) {
    std::vector<session_info> out;
    auto add = [&](records::device_record const& d) {
      bool expired = d.refresh_expires_at_ms() <= now_ms();
      out.push_back(session_info{format::base64url(d.device_id()), d.user_name(), d.device_name(), d.created_at_ms(),
                                 d.last_refreshed_at_ms(), d.revoked() || expired});
    };
    if (bare) {
      txn.for_each(m.user_devices, *bare + '\0', [&](std::string_view key, std::string_view) {
        if (auto d = m.read_device(txn, std::string(key.substr(bare->size() + 1)))) add(*d);
        return true;
      });
    } else {
      txn.for_each(m.devices, "", [&](std::string_view, std::string_view value) {
        records::device_record d;
        if (d.ParseFromArray(value.data(), static_cast<int>(value.size()))) add(d);
        return true;
      });
    }
    return out;
  });
}

awaitable<errors::status> user_service::revoke_session(std::string device_id_text) {
  auto& m = *impl_;
  auto raw = format::from_base64url(device_id_text);
  if (!raw || raw->size() != device_id_bytes)
    co_return fail(code::session_not_found, "no session '" + device_id_text + "'");
  store::lmdb_env::write_fn mutation = [&m, id = *raw](store::lmdb_txn& txn) {
    auto device = m.read_device(txn, id);
    if (!device) return false;
    device->set_revoked(true);
    txn.put(m.devices, id, device->SerializeAsString());
    return true;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return fail(code::internal, "the session could not be revoked");
  if (outcome == store::write_outcome::rolled_back)
    co_return fail(code::session_not_found, "no session '" + device_id_text + "'");
  co_return errors::ok();
}

stats user_service::counts() const {
  stats s;
  for (auto const& p : list_users()) {
    s.users++;
    if (p.disabled) s.disabled_users++;
  }
  for (auto const& d : list_sessions(std::nullopt))
    if (!d.revoked) s.active_sessions++;
  return s;
}

}  // namespace petchat::users
