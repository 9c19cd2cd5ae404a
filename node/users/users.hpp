// The user service: accounts, argon2id credentials, devices (sessions), access and
// refresh tokens, profiles, and the login and registration rate limits. It owns the LMDB
// environment `<data_dir>/users`; every write goes through that environment's commit
// pipeline (one writer thread, group commits), so a write is answered once it is durable.
//
// Threads: everything but the constructor, the destructor and stop() may be called
// concurrently from any thread (the limiters lock; each read takes its own LMDB read
// transaction). The awaitable operations may be started from any Asio executor and resume
// on it; beyond a short LMDB read they never block it: argon2id runs on `cpu_pool` (4
// hashes per core in flight, at least 8; beyond that rate_limited) and commits are awaited.
// The plain calls read on the calling thread and never wait for the writer, only briefly
// for a map resize, which itself waits for the reads in progress (a long scan then stalls
// every new read). list_users, counts and list_sessions(nullopt) scan whole tables: keep
// them off the I/O threads. Blocking: the constructor (one argon2id hash) and stop().
//
// Callers: the chat API and the live stream (node/gateway, on each connection's strand),
// the admin API (the admin socket's connections on the same I/O threads; its list and
// status scans on the CPU pool), and the message service (get_profile, on the caller's
// strand and, for inbound federated messages, on the message store's writer thread).
//
// Expected failures are errors::failure values with the errors::code each call lists
// (wire names in docs/PROTOCOL.md); a write the store does not commit (e.g. after stop())
// is `internal`. A damaged store is no expected failure: reads throw (std::runtime_error,
// store::lmdb_error).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>

#include <cstdint>
#include <filesystem>
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
  bool group_adds_contacts_only = false;  // only people they wrote to may add them to groups
};

struct session_tokens {
  std::string user_name;
  std::string device_id;  // base64url
  std::string access_token;
  std::uint32_t access_token_expires_in_s = 0;
  std::string refresh_token;
  std::uint32_t refresh_token_expires_in_s = 0;
  bool password_rehashed = false;  // a login hashed the password again at the configured cost
  std::string device_token;        // a login's known-device token for the next login
};

struct session_info {
  std::string device_id;  // base64url
  std::string user_name;
  std::string device_name;
  std::int64_t created_at_ms = 0;
  std::int64_t last_refreshed_at_ms = 0;
  bool revoked = false;
};

// A registration token (petchatctl tokens): `token` is set only when it is created, the
// one time it can be seen.
struct registration_token_info {
  std::string id;  // base64url
  std::string token;
  std::string note;
  std::int64_t created_at_ms = 0;
  std::int64_t expires_at_ms = 0;  // 0: never
  std::uint32_t max_uses = 0;      // 0: any number
  std::uint32_t uses = 0;
  bool revoked = false;
  // "active", "used_up", "expired" or "revoked" at `now_ms`.
  char const* state(std::int64_t now_ms) const;
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
  std::optional<bool> group_adds_contacts_only;
};

class user_service {
 public:
  // Opens (creating, mode 0700) `<data_dir>/users` and starts its writer thread, then
  // makes the dummy hash with one argon2id run on the calling thread: start-up only. Throws
  // store::lmdb_error, std::filesystem::filesystem_error, or std::runtime_error (argon2id
  // out of memory). `cpu_pool` runs the password hashes; it must outlive every pending call.
  user_service(config::users_section const& options, std::string region, config::store_section const& store,
               std::filesystem::path const& data_dir, identity::region_identity const& identity,
               boost::asio::thread_pool& cpu_pool);
  ~user_service();  // stop(), then closes the store; no call may be in flight

  // This node's region; constant. Any thread.
  std::string const& region() const;

  // The account store's group commits, each told to `fn` from now on (metrics); its map's
  // bytes in use and its size.
  void observe_commits(store::commit_observer fn);
  std::size_t store_used_bytes() const;
  std::size_t store_map_bytes() const;
  // Why the account store refuses writes now, empty while it takes them: the system's
  // words for a full or failing disk ("No space left on device", "Input/output error"), a
  // map that cannot grow, or an LMDB failure that only a restart mends. Set by a write
  // that failed, cleared by the next one that succeeds. For /readyz, admin status, the
  // metrics and the log, never for a client (its writes get store_unavailable). Any thread.
  std::string write_error() const;
  // While writes fail: a write that changes nothing (a key put and taken out again), to
  // find out whether they work again on a node nobody writes to (not ready: see /readyz).
  // Tried only with 1 MiB free on the store's file system: on a full disk such a small
  // write may fit in pages LMDB reuses while every write that needs a new page still
  // fails. Does nothing while writes work. No errors. Any executor (upkeep: each second).
  awaitable<void> try_writes();

  // Self-registration subject to users.registration (open, token, closed) and to
  // users.max_registrations_per_address for `client_address` (a slot is taken up front and
  // given back unless an account is created); `by_admin` bypasses both. The password is
  // hashed on the CPU pool, then the account written.
  // Errors: registration_closed, invalid_registration_token, invalid_name, weak_password,
  // invalid_field (display_name), name_taken (also for the name of a deleted account:
  // names are never reused), rate_limited (the address's allowance, or the node is busy
  // hashing; retry_after_s set), internal. Any executor.
  awaitable<result<profile>> register_user(std::string name, std::string password,
                                           std::optional<std::string> display_name, std::string registration_token,
                                           bool by_admin, std::string client_address);

  // `name` is a bare name or `name@region`; `client_address` keys the per-address limit.
  // Every attempt costs one argon2id verify on the CPU pool, also for an unknown, deleted
  // or malformed name (which answers invalid_credentials, never invalid_name). A failed one
  // counts against the address and a well-formed local name; a correct one never does.
  // The new device is the user's newest: expired sessions of the user are pruned, and
  // beyond users.max_devices_per_user the least recently used one is ended (forgotten).
  // Errors: invalid_field (device_name), invalid_credentials (also when the account is
  // deleted or disabled while the password is checked), user_disabled (only after a correct
  // password), rate_limited (back-off after failures, too many attempts in flight, or busy;
  // retry_after_s set), internal. Any executor. `device_token` (may be empty): the known-
  // device token an earlier login of this user on this device got; while valid, this
  // login's failures count against that device, not the account (whose lock anyone's wrong
  // passwords cause). A successful login answers a new one (session_tokens::device_token).
  awaitable<result<session_tokens>> login(std::string name, std::string password, std::string device_name,
                                          std::string client_address, std::string device_token = "");

  // New access and refresh tokens for the session; the presented refresh token is retired
  // (the last 16 are kept). A retired token coming back means it was copied: the session is
  // revoked (durably) and the answer is refresh_token_reused. One LMDB write; no argon2id,
  // no rate limit. Errors: invalid_refresh_token (malformed, unknown, expired, or its
  // session forgotten, e.g. by delete_user), session_revoked (the session was revoked,
  // whichever token is presented), user_disabled, refresh_token_reused, internal.
  // Any executor.
  awaitable<result<session_tokens>> refresh(std::string refresh_token);

  // Checks an access token: format and signature, expiry, then (fresh from the store) that
  // the session exists and is not revoked and the user not disabled. Cheap: one HMAC and
  // one LMDB read transaction, on the calling thread. Errors: invalid_token (malformed or
  // bad signature), token_expired (checked before the store), session_revoked (revoked or
  // forgotten session, or deleted account), user_disabled. Any thread.
  result<principal> authenticate(std::string_view access_token) const;
  // The holder of a live session (`device_id` base64url), as authenticate finds them from
  // a token of it: for capabilities the session made (download links). Errors as
  // authenticate's: session_revoked, user_disabled.
  result<principal> session_of(std::string_view device_id) const;

  // Revokes the caller's session (revoke_session of who.device_id). Errors:
  // session_not_found (the session was forgotten meanwhile), internal. Any executor.
  awaitable<errors::status> logout(principal who);
  // The caller changes their password (own_account.cpp): `current` must be the account's
  // (guesses wait as failed logins do, on a count of their own; the two hashes count among
  // `client_address`'s password checks), `password` is checked as set_password's; every
  // other session of the user is revoked in the same commit, the caller's stays. Answers
  // the caller's device a new known-device token. Errors: invalid_credentials (field
  // current_password; also when another change of this session's came first),
  // weak_password (field new_password), rate_limited, session_revoked, internal.
  awaitable<result<std::string>> change_password(principal who, std::string current, std::string password,
                                                 std::string client_address);
  // Revokes every session of the caller's user but the caller's own; how many. Errors:
  // session_revoked, internal. Any executor.
  awaitable<result<std::size_t>> revoke_other_sessions(principal who);

  // A user of this region by bare name or `name@region`; disabled users are found
  // (disabled = true), deleted ones are not. Errors: user_not_found (also for a malformed
  // name or another region's user). Any thread: one LMDB read transaction.
  result<profile> get_profile(std::string const& name) const;
  // Sets the fields present. `name` is a bare name (the caller's principal), not resolved.
  // Errors: invalid_field (display_name: 1 to 64 characters; about: 0 to 280, newlines
  // allowed; UTF-8 without control characters), user_not_found, internal. Any executor.
  awaitable<result<profile>> update_profile(std::string name, profile_update update);

  // Admin operations (node/gateway/admin_api.cpp). A `name` or `user` here is a bare name
  // or `name@region` of this region.

  // Every account not deleted (disabled ones too), in name order. A whole-table scan on
  // the calling thread (the admin API runs it on the CPU pool). No errors.
  std::vector<profile> list_users() const;
  // How many of the user's sessions are neither revoked nor expired (0 for an unknown
  // name). Scans that user's sessions on the calling thread. No errors.
  std::size_t active_sessions_of(std::string const& name) const;
  // Disables or enables an account (idempotent). Sessions are kept, but while it is
  // disabled authenticate and refresh answer user_disabled (and login, after a correct
  // password); enabling it again lets the sessions neither revoked nor expired work again.
  // Errors: user_not_found, internal. Any executor.
  awaitable<result<profile>> set_disabled(std::string name, bool disabled);
  // Replaces the password (argon2id on the CPU pool) and revokes all the user's sessions
  // in the same commit. Errors: user_not_found, weak_password, rate_limited (the node is
  // busy hashing; retry_after_s set), internal. Any executor.
  awaitable<result<profile>> set_password(std::string name, std::string password);
  // Deletes an account for good: its sessions are forgotten at once (authenticate answers
  // session_revoked; an open live stream ends at its next session check), its profile and
  // credentials are erased, and the name stays taken forever (a tombstone), so nobody can
  // register it and inherit what others sent to it. The message store is not touched
  // (unfinished_deletions).
  // Errors: user_not_found (also when already deleted), internal. Any executor.
  awaitable<errors::status> delete_user(std::string name);
  // Accounts delete_user deleted whose part in the message store (their groups left, their
  // push targets removed: message_service::account_deleted) is not known to be done:
  // delete_user notes the name in its own commit and deletion_finished forgets it, so a
  // deletion a crash interrupted between the two is finished at the next start. Bare names
  // in name order. Deletions from before this note was kept are not listed. No errors.
  // Any thread: one LMDB read transaction.
  std::vector<std::string> unfinished_deletions() const;
  // Forgets the note (`name` bare or `name@region`; nothing for a name without one).
  // Errors: internal (the write failed: the deletion is finished again at the next start).
  // Any executor.
  awaitable<errors::status> deletion_finished(std::string name);
  // The sessions of `user`, or of everyone if nullopt (a whole-table scan on the calling
  // thread); none for an unknown name. A session is listed until a login of the user
  // prunes it (expired, or revoked beyond the device cap); `revoked` is also true once it
  // has expired. No errors.
  std::vector<session_info> list_sessions(std::optional<std::string> user) const;
  // Revokes a session by its base64url device id; revoking a revoked one succeeds. Its
  // record stays (see list_sessions), so refresh answers session_revoked, not
  // invalid_refresh_token. Errors: session_not_found (malformed id, or no such session),
  // internal. Any executor.
  awaitable<errors::status> revoke_session(std::string device_id);
  // Registration tokens for registration = "token" (docs/PROTOCOL.md, "Registration
  // tokens"). Each registration with one uses it up by one, in the same write as the
  // account. create: max_uses 0 = any number, expires_in_s 0 = never; errors invalid_field
  // (a note over 200 characters), internal. revoke: not_found, internal. Any executor.
  awaitable<result<registration_token_info>> create_registration_token(std::uint32_t max_uses,
                                                                       std::int64_t expires_in_s, std::string note);
  std::vector<registration_token_info> registration_tokens() const;
  awaitable<result<registration_token_info>> revoke_registration_token(std::string id);
  // Who is told (each function given, in order), after the commit, that sessions of a user
  // (bare name) may have ended: logout, revocation, a reused refresh token, a password
  // reset, deletion, disabling, the device cap. Before traffic; it runs on the caller's
  // executor and must not block.
  void on_sessions_changed(std::function<void(std::string const& name)> fn);
  // Users, disabled users and active sessions (neither revoked nor expired): two
  // whole-table scans in separate read transactions (not one snapshot), on the calling
  // thread (the admin API runs it on the CPU pool). No errors.
  stats counts() const;

  // A compacted, consistent copy of the account store in `dir`/data.mdb for a backup (see
  // store::lmdb_env::copy_to). Blocking: call off the I/O threads.
  void copy_store_to(std::filesystem::path const& dir) const;

  // Finishes queued writes and joins the writer thread (blocks). Idempotent. Writes after
  // it fail with internal; reads work until destruction. petchat-node calls it once its
  // I/O threads and CPU pool have stopped.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace petchat::users
