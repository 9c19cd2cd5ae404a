// Counts failed logins per key (an account, or a client address) and imposes a growing
// back-off once a key has used up its free attempts. In memory: a restart forgets, which
// costs an attacker a restart of our node they cannot cause.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace petchat::users::detail {

class login_limiter {
 public:
  struct options {
    std::uint32_t free_attempts = 5;
    std::int64_t initial_backoff_ms = 1000;
    std::int64_t max_backoff_ms = 15 * 60 * 1000;
    std::size_t max_keys = 100000;  // memory bound; stale keys are pruned past it
    std::uint32_t max_pending = 0;  // attempts of one key in flight at once (0: no cap beyond begin's rule)
    // One failure forgotten per this many ms since the last one (0: only a success forgets):
    // for a key thousands share (an IPv6 /48), whose everyday typos must not add up to a lock.
    std::int64_t forget_one_every_ms = 0;
  };

  explicit login_limiter(options o) : options_(o) {}

  // Milliseconds `key` must still wait before its next attempt; 0 if it may try now.
  std::int64_t wait_ms(std::string const& key, std::int64_t now_ms);

  // Records a failed attempt; past the free attempts it (re)starts the back-off, doubling
  // it with every further failure up to the maximum. `account`: the account it was at,
  // for a key many people share (a client address; see forgive_account).
  void failed(std::string const& key, std::int64_t now_ms, std::string_view account = {});

  // Forgets `key`'s failures and any lock (attempts still in flight stay counted).
  void succeeded(std::string const& key);
  // For a shared key (a client address): someone logged into `account` from it. The
  // failures made at that account from it (their own typos) are taken off its count; the
  // failures at other accounts stay, and so does any lock: an attacker's own account must
  // not clear the guesses made at others. The last few accounts are remembered per key.
  void forgive_account(std::string const& key, std::string_view account);

  // An attempt is about to check a password. False if attempts already in flight could
  // use up the free attempts (one is always allowed): a burst of concurrent guesses must
  // not all pass the back-off check while the first ones are still hashing. Counting
  // the attempt as pending rather than as failed means a correct password is never
  // counted against anyone; nor may one key have more than options::max_pending in
  // flight. Every true is followed by end(). `cap_only`: only the cap on attempts in flight
  // holds (a known device's login, which this key's failures do not hold back).
  bool begin(std::string const& key, std::int64_t now_ms, bool cap_only = false);
  // The attempt that begin() allowed is over (call failed() or succeeded() as well when
  // the password was checked).
  void end(std::string const& key);

  // Keys currently tracked (the memory bound is options::max_keys).
  std::size_t tracked_keys();

 private:
  struct entry {
    std::uint32_t failures = 0;
    std::int64_t locked_until_ms = 0;
    std::int64_t last_failure_ms = 0;
    std::uint32_t pending = 0;  // attempts between begin() and end()
    // (a hash of the account, its failures) for the last accounts failed at from this key
    std::vector<std::pair<std::size_t, std::uint32_t>> by_account;
  };
  static constexpr std::size_t accounts_kept = 8;
  void prune(std::int64_t now_ms);
  void forget_some(entry& e, std::int64_t now_ms) const;  // options::forget_one_every_ms

  options options_;
  std::mutex mutex_;  // guards entries_; held only for map operations, never across I/O
  std::unordered_map<std::string, entry> entries_;
};

}  // namespace petchat::users::detail
