// The user service's state and the helpers its translation units share (users.cpp:
// registration, login, tokens, profiles; admin.cpp: the admin operations).
#pragma once

#include <functional>

#include "node/users/users.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "base/format/format.hpp"
#include "base/ids/ids.hpp"
#include "base/limits/limits.hpp"
#include "node/async/async.hpp"
#include "node/users/detail/login_limiter.hpp"
#include "node/users/detail/passwords.hpp"
#include "node/users/detail/registration_limiter.hpp"
#include "node/users/detail/tokens.hpp"
#include "user_records.pb.h"

namespace petchat::users {
namespace service_detail {

// How long a known-device token exempts its device from the account's lock: a year from
// its last login there (or its password change).
constexpr std::int64_t known_device_ttl_ms = std::int64_t(365) * 24 * 3600 * 1000;

using format::now_ms;

using errors::code;
using errors::fail;
using errors::failure;

inline constexpr std::size_t max_password_bytes = 1024;
inline constexpr std::size_t device_id_bytes = 16;
inline constexpr int max_retired_refresh_hashes = 16;
// Retries of one lost refresh answer (device_record.retry_hash): enough for a client on a bad
// network, few enough that the successors they retire stay among the retired hashes.
inline constexpr std::uint32_t max_refresh_retries = 3;

// Counts code points of valid UTF-8 without control characters (newline allowed if
// `multiline`); returns nullopt if the text breaks those rules.
inline std::optional<failure> check_text(std::string const& field, std::string const& value, std::size_t min,
                                         std::size_t max, bool multiline) {
  auto len = format::plain_text_length(value, multiline);
  if (!len || *len < min || *len > max)
    return fail(code::invalid_field,
                field + " must be " + std::to_string(min) + " to " + std::to_string(max) +
                    " characters of UTF-8 without control characters or direction overrides",
                field);
  if (min > 0 && !format::shows_something(value))
    return fail(code::invalid_field, field + " must have a character that shows, not only spaces or invisible ones",
                field);
  return std::nullopt;
}

inline profile to_profile(records::user_record const& r) {
  return profile{r.name(), r.display_name(), r.about(), r.created_at_ms(), r.disabled(), r.group_adds_contacts_only()};
}

using user_change = std::function<void(store::lmdb_txn&, records::user_record&)>;

inline std::string device_index_key(std::string const& user, std::string const& device_id) {
  return user + '\0' + device_id;
}

// An attempt pending at a limiter while its password is checked (login_limiter::begin): it
// counts as a failure only once it has failed, and attempts in flight hold back further
// ones; ended however the check ends. Not copied: a copy's end would end it early.
class pending_attempt {
 public:
  pending_attempt() = default;
  pending_attempt(pending_attempt const&) = delete;
  pending_attempt& operator=(pending_attempt const&) = delete;
  ~pending_attempt() {
    if (limiter_) limiter_->end(key_);
  }
  // Begins one at `limiter` for `key` (see login_limiter::begin); false: refused, none held.
  bool begin(detail::login_limiter& limiter, std::string key, std::int64_t now_ms, bool cap_only = false) {
    if (!limiter.begin(key, now_ms, cap_only)) return false;
    limiter_ = &limiter;
    key_ = std::move(key);
    return true;
  }

 private:
  detail::login_limiter* limiter_ = nullptr;
  std::string key_;
};

}  // namespace service_detail

using namespace service_detail;

struct user_service::impl {
  config::users_section options;
  std::string region;
  detail::token_key token_key;
  detail::token_key device_key;  // known-device tokens' (tokens.hpp)
  boost::asio::thread_pool& cpu_pool;
  std::filesystem::path store_dir;  // <data_dir>/users
  store::lmdb_env env;
  store::lmdb_db accounts;              // name -> user_record
  store::lmdb_db devices;               // raw device id -> device_record
  store::lmdb_db user_devices;          // name NUL raw device id -> "" (devices of a user)
  store::lmdb_db registration_tokens;   // raw id -> registration_token_record
  store::lmdb_db unfinished_deletions;  // name -> "" (deleted here; the message store's part not done)
  detail::login_limiter account_limiter;
  detail::login_limiter address_limiter;
  detail::login_limiter wide_address_limiter;  // the same per IPv6 /48, at 16 times the free attempts
  // Password checks per address over time, whatever their outcome: the failure limiter
  // counts only wrong passwords, so without this one address logging in again and again
  // with right ones (its own accounts) could keep every password check busy.
  limits::rate_buckets address_checks;
  limits::rate_buckets wide_checks;  // the same per IPv6 /48, at 16 times the allowance
  detail::registration_limiter registrations;
  // The same per IPv6 /48, at 16 times the allowance: a subscriber given a /48 (or /56)
  // holds 65,536 (or 256) /64s, each with its own allowance above.
  detail::registration_limiter wide_registrations;
  // Changes of an account's own profile (PATCH /v1/me) that write: each is a commit every
  // login and refresh waits behind.
  limits::rate_buckets profile_changes{profile_changes_per_minute, 60000};
  static constexpr std::uint32_t profile_changes_per_minute = 30;
  // Verified against when the user does not exist, so that an unknown name costs as much
  // time as a wrong password and response times do not reveal which names exist.
  std::string dummy_hash;
  // Told after a commit that may have ended sessions of a user (set before traffic).
  std::vector<std::function<void(std::string const& name)>> sessions_changed;
  void tell_sessions_changed(std::string const& name) const {
    for (auto const& fn : sessions_changed) fn(name);
  }

  impl(config::users_section const& o, std::string r, config::store_section const& store,
       std::filesystem::path const& data_dir, identity::region_identity const& id, boost::asio::thread_pool& pool)
      : options(o),
        region(std::move(r)),
        token_key(id.token_key),
        device_key(detail::derive_device_key(id.token_key)),
        cpu_pool(pool),
        store_dir(data_dir / "users"),
        env(store::lmdb_options{store_dir, store.lmdb_initial_map_mib << 20}),
        accounts(env.open_db("accounts")),
        devices(env.open_db("devices")),
        user_devices(env.open_db("user_devices")),
        registration_tokens(env.open_db("registration_tokens")),
        unfinished_deletions(env.open_db("unfinished_deletions")),
        account_limiter({o.login_free_attempts, o.login_backoff_initial_ms, o.login_backoff_max_ms}),
        // An address may be shared by many people behind one NAT, so it has its own allowance.
        // Nor may one address hold more than half of the node's password checks at once.
        // Its failures run out too (as many an hour as it has free): a shared address's
        // typos would otherwise add up for good, and any further one lock it.
        address_limiter(
            {o.login_free_attempts_per_address, o.login_backoff_initial_ms, o.login_backoff_max_ms, 100000,
             o.login_checks_per_address ? o.login_checks_per_address : static_cast<std::uint32_t>(hash_capacity(o) / 2),
             3600000 / std::max<std::int64_t>(1, std::int64_t(o.login_free_attempts_per_address))}),
        // A /48 holds 65,536 /64s: a new one per attempt must not buy new free attempts. Its
        // failures run out (as many an hour as it has free), and its locks are short: a
        // carrier's thousands of subscribers may share one, and their typos add up.
        wide_address_limiter(
            {o.login_free_attempts_per_address * 16, o.login_backoff_initial_ms,
             std::min<std::int64_t>(o.login_backoff_max_ms, 60000), 100000,
             o.login_checks_per_address ? o.login_checks_per_address : static_cast<std::uint32_t>(hash_capacity(o) / 2),
             3600000 / std::max<std::int64_t>(1, std::int64_t(o.login_free_attempts_per_address) * 16)}),
        address_checks(o.login_checks_per_minute_per_address, 60000),
        wide_checks(o.login_checks_per_minute_per_address * 16, 60000),
        registrations(o.max_registrations_per_address, std::int64_t(o.registration_window_s) * 1000),
        wide_registrations(o.max_registrations_per_address * 16, std::int64_t(o.registration_window_s) * 1000),
        dummy_hash(detail::hash_password(detail::random_bytes(16), params())) {}

  detail::hash_params params() const { return {options.password_hash_ops, options.password_hash_memory_kib}; }

  // The answer to a write the store did not take: store_unavailable while its disk is full
  // or failing (lmdb_env::write_error), internal otherwise.
  failure write_failed(std::string const& what) const { return errors::write_failure(what, env.write_error()); }

  // Bounds the argon2id work queued on the CPU pool: each hash holds its memory cost, and
  // an unbounded queue would let a flood of logins delay everyone (and use memory).
  std::atomic<std::size_t> hashes_in_flight{0};
  std::size_t max_hashes_in_flight = hash_capacity(options);
  // Four per core, and no more than 1 GiB of hash memory at once: the cores counted are the
  // host's (a container's quota is not seen), and each hash holds password_hash_memory_kib.
  static std::size_t hash_capacity(config::users_section const& o) {
    std::size_t by_memory = (std::size_t{1} << 20) / std::max<std::size_t>(1, o.password_hash_memory_kib);
    return std::max<std::size_t>(
        2, std::min<std::size_t>(4 * std::max(2u, std::thread::hardware_concurrency()), by_memory));
  }

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

  // Takes one password check from the address (an IPv6 client's /64) and its /48 (empty:
  // none), counted only when a password is about to be checked, so that a "busy" answer
  // costs nothing; the /48's only once the /64's allows it (a /64 refused again and again
  // must not use up its /48's checks, and with them every other /64 of it). 0, or how long
  // to wait (ms).
  std::int64_t take_password_check(std::string const& address_key, std::string const& wide_key) {
    if (auto next = address_checks.take(address_key, now_ms()); next > 0) return next;
    if (auto next = wide_key.empty() ? std::int64_t{0} : wide_checks.take(wide_key, now_ms()); next > 0) {
      address_checks.give_back(address_key);
      return next;
    }
    return 0;
  }

  static failure busy() {
    // (also for logins of one account or address already in flight: see login)
    return errors::rate_limited("the node is busy checking passwords; try again shortly", 1000);
  }

  // The argon2id hash of a new password, made on the CPU pool within a slot; busy() if
  // the node is saturated. (Registration and admin password changes.)
  boost::asio::awaitable<errors::result<std::string>> hash_new_password(std::string password) {
    auto p = params();
    auto slot = hash_slot();
    if (!slot) co_return busy();
    auto cpu_work = [password = std::move(password), p] { return detail::hash_password(password, p); };
    co_return co_await async::offload(cpu_pool, std::move(cpu_work));
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

  // A registration token (prt1.<id>.<secret>) that allows one more registration at `now`
  // (registration_tokens.cpp). use_registration_token also counts the use, in `txn`.
  bool registration_token_usable(store::lmdb_txn const& txn, std::string_view token, std::int64_t now) const;
  bool use_registration_token(store::lmdb_txn& txn, std::string_view token, std::int64_t now) const;

  // The holder of live session `device_id` (raw); `user_name`, when given, must be its owner.
  result<principal> principal_of(std::string const& device_id, std::string const& user_name,
                                 std::int64_t expires_at_ms) const;
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
                          options.refresh_token_ttl_s,
                          false,
                          {}};
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
    if (outcome == store::write_outcome::failed) co_return write_failed("the account could not be stored");
    if (outcome == store::write_outcome::rolled_back || !*out)
      co_return fail(code::user_not_found, "no user '" + name + "' in region " + region);
    co_return to_profile(**out);
  }

  // Marks every session of `name` revoked but `keep` (a raw device id), inside a write
  // transaction; how many of them were live (expired ones are marked too, not counted: the
  // session list did not show them).
  std::size_t revoke_all(store::lmdb_txn& txn, std::string const& name, std::string const& keep = {}) {
    std::vector<std::string> ids;
    txn.for_each(user_devices, name + '\0', [&](std::string_view key, std::string_view) {
      ids.emplace_back(key.substr(name.size() + 1));
      return true;
    });
    std::size_t revoked = 0;
    auto now = now_ms();
    for (auto const& id : ids) {
      auto device = id == keep ? std::nullopt : read_device(txn, id);
      if (!device || device->revoked()) continue;
      device->set_revoked(true);
      txn.put(devices, id, device->SerializeAsString());
      if (device->refresh_expires_at_ms() > now) ++revoked;
    }
    return revoked;
  }

  // Whether `device` (raw) is still a live session of `name`: inside a write, a session
  // revoked while its request was on its way must not act any more.
  bool still_live(store::lmdb_txn const& txn, std::string const& name, std::string const& device) const {
    auto d = read_device(txn, device);
    return d && !d->revoked() && d->user_name() == name;
  }
};

}  // namespace petchat::users
