// The user service: accounts, argon2id credentials, devices (sessions), access and
// refresh tokens, profiles, and the login rate limit. It owns the LMDB environment
// `<data_dir>/users`; every write goes through that environment's commit pipeline, and
// every password hash runs on the CPU pool, so no call here blocks an I/O thread.
//
// Expected failures are returned as errors::failure values with the codes listed in
// docs/PROTOCOL.md.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "node/config/config.hpp"
#include "node/errors/errors.hpp"
#include "node/identity/identity.hpp"
#include "store/lmdb/lmdb.hpp"

namespace petchat::users {

using boost::asio::awaitable;
using errors::result;

struct profile {
  std::string name;
  std::string display_name;
  std::string about;
  std::int64_t created_at_ms = 0;
  bool disabled = false;
};

struct session_tokens {
  std::string user_name;
  std::string device_id;  // base64url
  std::string access_token;
  std::uint32_t access_token_expires_in_s = 0;
  std::string refresh_token;
  std::uint32_t refresh_token_expires_in_s = 0;
};

struct session_info {
  std::string device_id;  // base64url
  std::string user_name;
  std::string device_name;
  std::int64_t created_at_ms = 0;
  std::int64_t last_refreshed_at_ms = 0;
  bool revoked = false;
};

// Who is calling, once an access token has been checked.
struct principal {
  std::string user_name;
  std::string device_id;  // base64url
  std::string device_name;
  std::int64_t token_expires_at_ms = 0;  // of the access token that proved it
};

struct stats {
  std::size_t users = 0;
  std::size_t disabled_users = 0;
  std::size_t active_sessions = 0;
};

struct profile_update {
  std::optional<std::string> display_name;
  std::optional<std::string> about;
};

class user_service {
 public:
  // Opens `<data_dir>/users`. Throws on start-up failure.
  user_service(config::users_section const& options, std::string region, config::store_section const& store,
               std::filesystem::path const& data_dir, identity::region_identity const& identity,
               boost::asio::thread_pool& cpu_pool);
  ~user_service();

  std::string const& region() const;

  // Self-registration subject to the registration policy and to
  // users.max_registrations_per_address for `client_address`; `by_admin` bypasses both.
  // Errors: registration_closed, invalid_registration_token, invalid_name, weak_password,
  // invalid_field (display_name), name_taken (also for the name of a deleted account:
  // names are never reused), rate_limited (the address's allowance, or the node is busy
  // hashing; retry_after_s set), internal. Any I/O thread.
  awaitable<result<profile>> register_user(std::string name, std::string password,
                                           std::optional<std::string> display_name, std::string registration_token,
                                           bool by_admin, std::string client_address);

  // `name` is a bare name or `name@region`; `client_address` keys the per-address limit.
  // A failed password counts against the account and the address; a correct one never
  // does. The new device is the user's newest: expired sessions of the user are pruned,
  // and beyond users.max_devices_per_user the least recently used one is ended.
  // Errors: invalid_field, invalid_credentials, user_disabled, rate_limited (back-off after
  // failures, or busy; retry_after_s set), internal. Any I/O thread.
  awaitable<result<session_tokens>> login(std::string name, std::string password, std::string device_name,
                                          std::string client_address);

  awaitable<result<session_tokens>> refresh(std::string refresh_token);

  // Checks an access token: signature, expiry, then (fresh from the store) that the
  // session is not revoked and the user not disabled. Cheap: one HMAC and one LMDB read.
  result<principal> authenticate(std::string_view access_token) const;

  awaitable<errors::status> logout(principal who);

  result<profile> get_profile(std::string const& name) const;
  awaitable<result<profile>> update_profile(std::string name, profile_update update);

  // Admin operations.
  std::vector<profile> list_users() const;
  std::size_t active_sessions_of(std::string const& name) const;
  awaitable<result<profile>> set_disabled(std::string name, bool disabled);
  awaitable<result<profile>> set_password(std::string name, std::string password);  // revokes all sessions
  // Deletes an account for good: its sessions end at once, its profile and credentials
  // are erased, and the name stays taken forever (a tombstone), so nobody can register it
  // and inherit what others sent to it. Errors: user_not_found, internal.
  awaitable<errors::status> delete_user(std::string name);
  std::vector<session_info> list_sessions(std::optional<std::string> user) const;
  awaitable<errors::status> revoke_session(std::string device_id);
  stats counts() const;

  // Finishes queued writes and closes the store.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace petchat::users
