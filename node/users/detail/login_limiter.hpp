// Counts failed logins per key (an account, or a client address) and imposes a growing
// back-off once a key has used up its free attempts. In memory: a restart forgets, which
// costs an attacker a restart of our node they cannot cause.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace petchat::users::detail {

class login_limiter {
 public:
  struct options {
    std::uint32_t free_attempts = 5;
    std::int64_t initial_backoff_ms = 1000;
    std::int64_t max_backoff_ms = 15 * 60 * 1000;
    std::size_t max_keys = 100000;  // memory bound; stale keys are pruned past it
    std::uint32_t max_pending = 0;  // attempts of one key in flight at once (0: no cap beyond begin's rule)
  };

  explicit login_limiter(options o) : options_(o) {}

  // Milliseconds `key` must still wait before its next attempt; 0 if it may try now.
  std::int64_t wait_ms(std::string const& key, std::int64_t now_ms);

  // Records a failed attempt; past the free attempts it (re)starts the back-off, doubling
  // it with every further failure up to the maximum.
  void failed(std::string const& key, std::int64_t now_ms);

  // Forgets `key`'s failures and any lock (attempts still in flight stay counted).
  void succeeded(std::string const& key);
  // Takes one failure off `key`'s count, leaving any lock: for a key many people share (a
  // client address), where one person's success must not wipe out another's failures.
  void forgive_one(std::string const& key);

  // An attempt is about to check a password. False if attempts already in flight could
  // use up the free attempts (one is always allowed): a burst of concurrent guesses must
  // not all pass the back-off check while the first ones are still hashing. Counting
  // the attempt as pending rather than as failed means a correct password is never
  // counted against anyone; nor may one key have more than options::max_pending in
  // flight. Every true is followed by end().
  bool begin(std::string const& key, std::int64_t now_ms);
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
  };
  void prune(std::int64_t now_ms);

  options options_;
  std::mutex mutex_;  // guards entries_; held only for map operations, never across I/O
  std::unordered_map<std::string, entry> entries_;
};

}  // namespace petchat::users::detail
