// The user service's admin operations (petchatctl, the admin API): listing, enabling and
// disabling, passwords, deletion, sessions and counts; and the account store's health.
#include <unistd.h>

#include "node/users/detail/service.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice (a double
// free). Every lambda handed to an awaited call is therefore first stored in a named
// variable, and the named variable is moved in.

namespace petchat::users {

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
  auto changed = co_await impl_->modify_user(*bare, std::move(change));
  if (changed && disabled) impl_->tell_sessions_changed(*bare);  // its live streams end at once
  co_return changed;
}

awaitable<result<profile>> user_service::set_password(std::string name, std::string password) {
  auto& m = *impl_;
  auto bare = m.local_name(name);
  if (!bare) co_return fail(code::user_not_found, "no user '" + name + "'");
  if (auto f = m.check_password(password)) co_return *f;
  if (!get_profile(*bare)) co_return fail(code::user_not_found, "no user '" + name + "'");
  auto hashed = co_await m.hash_new_password(password);
  if (!hashed) co_return hashed.error();
  std::string hash = std::move(hashed.value());
  user_change change = [&m, hash, n = *bare](store::lmdb_txn& txn, records::user_record& u) {
    u.set_password_hash(hash);
    u.set_password_generation(u.password_generation() + 1);
    m.revoke_all(txn, n);
  };
  auto changed = co_await m.modify_user(*bare, std::move(change));
  if (changed) m.tell_sessions_changed(*bare);
  co_return changed;
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
    txn.put(m.unfinished_deletions, n, "");
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
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the account could not be deleted");
  if (outcome == store::write_outcome::rolled_back) co_return fail(code::user_not_found, "no user '" + name + "'");
  m.tell_sessions_changed(*bare);
  co_return errors::ok();
}

std::vector<std::string> user_service::unfinished_deletions() const {
  auto& m = *impl_;
  return m.env.read([&](store::lmdb_txn const& txn) {
    std::vector<std::string> out;
    txn.for_each(m.unfinished_deletions, "", [&](std::string_view key, std::string_view) {
      out.emplace_back(key);
      return true;
    });
    return out;
  });
}

awaitable<errors::status> user_service::deletion_finished(std::string name) {
  auto& m = *impl_;
  auto bare = m.local_name(name);
  if (!bare) co_return errors::ok();
  store::lmdb_env::write_fn mutation = [&m, n = *bare](store::lmdb_txn& txn) {
    if (!txn.get(m.unfinished_deletions, n)) return false;
    txn.erase(m.unfinished_deletions, n);
    return true;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed)
    co_return m.write_failed("the account's deletion could not be noted as done");
  co_return errors::ok();
}

std::string user_service::write_error() const {
  return impl_->env.write_error();
}

awaitable<void> user_service::try_writes() {
  auto& m = *impl_;
  if (m.env.write_error().empty()) co_return;
  // The room the node may use: root may also fill the blocks the file system keeps back.
  // Unknown (statvfs failed): tried all the same.
  std::error_code ec;
  auto room = std::filesystem::space(m.store_dir, ec);
  constexpr std::uintmax_t enough = std::uintmax_t{1} << 20;
  if (!ec && (::geteuid() == 0 ? room.free : room.available) < enough) co_return;
  // No account name holds a NUL: the key is never anybody's, and never committed.
  store::lmdb_env::write_fn probe = [&m](store::lmdb_txn& txn) {
    std::string const key("\0write probe", 12);
    txn.put(m.unfinished_deletions, key, "");
    txn.erase(m.unfinished_deletions, key);
    return true;  // pages written all the same: the commit finds out whether the disk takes them
  };
  co_await async::write(m.env, std::move(probe));
}

void user_service::on_sessions_changed(std::function<void(std::string const& name)> fn) {
  impl_->sessions_changed.push_back(std::move(fn));
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
  // A device already ended is answered at once: repeating the DELETE writes nothing and
  // wakes nobody's live streams (it would be a store write at the caller's rate).
  if (m.env.read([&](store::lmdb_txn const& txn) {
        auto device = m.read_device(txn, *raw);
        return device && device->revoked();
      }))
    co_return errors::ok();
  auto owner = std::make_shared<std::string>();
  auto already = std::make_shared<bool>(false);  // (ended meanwhile)
  store::lmdb_env::write_fn mutation = [&m, id = *raw, owner, already](store::lmdb_txn& txn) {
    auto device = m.read_device(txn, id);
    if (!device) return false;
    *owner = device->user_name();
    if (device->revoked()) {
      *already = true;
      return false;
    }
    device->set_revoked(true);
    txn.put(m.devices, id, device->SerializeAsString());
    return true;
  };
  auto outcome = co_await async::write(m.env, std::move(mutation));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the session could not be revoked");
  if (*already) co_return errors::ok();
  if (outcome == store::write_outcome::rolled_back)
    co_return fail(code::session_not_found, "no session '" + device_id_text + "'");
  m.tell_sessions_changed(*owner);
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
