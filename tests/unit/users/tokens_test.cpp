#include <doctest/doctest.h>
#include <sodium.h>

#include <vector>

#include "node/users/detail/login_limiter.hpp"
#include "node/users/detail/passwords.hpp"
#include "node/users/detail/tokens.hpp"

using namespace petchat::users::detail;

namespace {
token_key make_key(std::uint8_t fill) {
  token_key k;
  k.fill(fill);
  return k;
}
access_claims claims(std::int64_t now) {
  return {"alice", std::string(16, 'd'), now, now + 60000};
}
}  // namespace

TEST_CASE("access token round trip") {
  REQUIRE(sodium_init() >= 0);
  auto key = make_key(1);
  auto token = sign_access_token(claims(1000), key);
  auto v = verify_access_token(token, key, 2000);
  REQUIRE(v.status == token_status::ok);
  CHECK(v.claims.user_name == "alice");
  CHECK(v.claims.device_id == std::string(16, 'd'));
  CHECK(v.claims.expires_at_ms == 61000);
}

TEST_CASE("expired access token") {
  auto key = make_key(1);
  auto token = sign_access_token(claims(1000), key);
  CHECK(verify_access_token(token, key, 61000).status == token_status::expired);
}

TEST_CASE("forged access token: signed with another key") {
  auto token = sign_access_token(claims(1000), make_key(2));
  CHECK(verify_access_token(token, make_key(1), 2000).status == token_status::bad_signature);
}

TEST_CASE("tampered access token: every single-character change is refused") {
  auto key = make_key(1);
  auto token = sign_access_token(claims(1000), key);
  for (std::size_t i = 0; i < token.size(); ++i) {
    auto t = token;
    t[i] = t[i] == 'A' ? 'B' : 'A';
    auto status = verify_access_token(t, key, 2000).status;
    CHECK_MESSAGE(status != token_status::ok, "position ", i);
  }
}

TEST_CASE("tampered claims with a recomputed payload but old MAC") {
  auto key = make_key(1);
  auto token = sign_access_token(claims(1000), key);
  auto other = sign_access_token(access_claims{"mallory", std::string(16, 'd'), 1000, 61000}, make_key(9));
  // mallory's claims with alice's MAC
  auto mac = token.substr(token.rfind('.'));
  auto forged = other.substr(0, other.rfind('.')) + mac;
  CHECK(verify_access_token(forged, key, 2000).status == token_status::bad_signature);
}

TEST_CASE("garbage access tokens are malformed") {
  auto key = make_key(1);
  for (std::string t :
       std::vector<std::string>{"", "pa1.", "pa1..", "xyz", "pa1.!!!.###", "pr1.abc.def", std::string(5000, 'a')})
    CHECK(verify_access_token(t, key, 0).status == token_status::malformed);
}

TEST_CASE("refresh tokens parse back to their parts; hashes differ per secret") {
  auto [token, parts] = new_refresh_token(std::string(16, 'x'));
  auto parsed = parse_refresh_token(token);
  REQUIRE(parsed);
  CHECK(parsed->device_id == parts.device_id);
  CHECK(parsed->secret == parts.secret);
  auto [token2, parts2] = new_refresh_token(std::string(16, 'x'));
  CHECK(token2 != token);
  CHECK(hash_refresh_secret(parts.secret) != hash_refresh_secret(parts2.secret));
  CHECK_FALSE(parse_refresh_token("pr1.short.short"));
  CHECK_FALSE(parse_refresh_token(token.substr(0, token.size() - 2)));
}

TEST_CASE("argon2id hashing") {
  hash_params p{1, 8192};
  auto h = hash_password("correct horse", p);
  CHECK(h.starts_with("$argon2id$"));
  CHECK(verify_password(h, "correct horse"));
  CHECK_FALSE(verify_password(h, "correct horsE"));
  CHECK_FALSE(verify_password(h, ""));
  CHECK(hash_password("correct horse", p) != h);  // salted
}

TEST_CASE("login limiter: free attempts, then doubling back-off, reset on success") {
  login_limiter l({3, 1000, 5000, 100});
  std::int64_t t = 0;
  for (int i = 0; i < 3; ++i) {
    CHECK(l.wait_ms("k", t) == 0);
    l.failed("k", t);
  }
  CHECK(l.wait_ms("k", t) == 0);
  l.failed("k", t);  // 4th failure: 1 s
  CHECK(l.wait_ms("k", t) == 1000);
  t += 1000;
  l.failed("k", t);  // 2 s
  CHECK(l.wait_ms("k", t) == 2000);
  t += 2000;
  l.failed("k", t);  // 4 s
  t += 4000;
  l.failed("k", t);  // capped at 5 s
  CHECK(l.wait_ms("k", t) == 5000);
  CHECK(l.wait_ms("other", t) == 0);
  l.succeeded("k");
  CHECK(l.wait_ms("k", t) == 0);
}

TEST_CASE("a key whose failures run out: everyday failures never add up to a lock, a burst does") {
  login_limiter l({3, 1000, 5000, 100, 0, 10000});  // one failure forgotten every 10 s
  std::int64_t t = 0;
  for (int i = 0; i < 50; ++i, t += 10000) {  // one every 10 s, for 500 s
    CHECK(l.wait_ms("k", t) == 0);
    l.failed("k", t);
  }
  CHECK(l.wait_ms("k", t) == 0);
  for (int i = 0; i < 4; ++i) l.failed("k", t);  // (the last one forgotten by now) 4: over the 3 free
  CHECK(l.wait_ms("k", t) == 1000);
  t += 40000;  // all 4 forgotten: the next failure is a first one again
  l.failed("k", t);
  CHECK(l.wait_ms("k", t) == 0);
}

TEST_CASE("a shared key's success forgives the failures at that account only") {
  login_limiter l({3, 1000, 5000, 100});
  l.failed("addr", 0, "user:carol");  // carol's typo
  l.failed("addr", 0, "user:bob");    // guesses at others
  l.failed("addr", 0, "user:dan");
  l.forgive_account("addr", "user:mallory");  // an own account with no failures: nothing off
  l.failed("addr", 0, "user:erin");           // 4: locked
  CHECK(l.wait_ms("addr", 0) == 1000);
  l.forgive_account("addr", "user:carol");  // carol logs in: her typo comes off, the lock stays
  CHECK(l.wait_ms("addr", 0) == 1000);
  l.failed("addr", 2000, "user:bob");  // 4 again (3 at others, 1 more): locked
  CHECK(l.wait_ms("addr", 2000) == 1000);
  l.forgive_account("addr", "user:carol");  // forgiven once only
  l.failed("addr", 5000, "user:bob");       // 5: the back-off doubles
  CHECK(l.wait_ms("addr", 5000) == 2000);
}

TEST_CASE("a success keeps the attempts still in flight counted") {
  login_limiter l({5, 1000, 5000, 100, 2});
  REQUIRE(l.begin("k", 0));
  REQUIRE(l.begin("k", 0));
  CHECK_FALSE(l.begin("k", 0));  // max_pending: two at once
  l.succeeded("k");              // a third party's success does not free the slots
  CHECK_FALSE(l.begin("k", 0));
  l.end("k");
  CHECK(l.begin("k", 0));
  l.end("k");
  l.end("k");
  CHECK(l.tracked_keys() == 0);
}

TEST_CASE("login limiter stays bounded under a flood of keys") {
  login_limiter l({0, 1, 1, 100});
  for (int i = 0; i < 10000; ++i) {
    l.failed("k" + std::to_string(i), i * 10);
    REQUIRE(l.tracked_keys() <= 100);
  }
  // Entries are pruned once their 1 ms lock has passed: the latest key is still locked.
  CHECK(l.wait_ms("k9999", 99990) == 1);
}

TEST_CASE("a flood of one-off keys does not wash out the account under attack") {
  login_limiter l({3, 60000, 60000, 100});
  // The target has used its free attempts but is not locked yet...
  for (int i = 0; i < 3; ++i) l.failed("user:target", 0);
  REQUIRE(l.wait_ms("user:target", 1) == 0);
  // ...then a flood of distinct names forces pruning many times over...
  for (int i = 0; i < 5000; ++i) l.failed("user:junk" + std::to_string(i), 1);
  CHECK(l.tracked_keys() <= 100);
  // ...and its next failure still locks it: its count survived.
  l.failed("user:target", 2);
  CHECK(l.wait_ms("user:target", 3) > 0);
}

TEST_CASE("a stored hash's cost against the configured one: how much longer a check at the latter takes") {
  CHECK(cost_ratio("$argon2id$v=19$m=16384,t=2,p=1$c2FsdHNhbHQ$aGFzaA", hash_params{4, 16384}) == doctest::Approx(2.0));
  CHECK(cost_ratio("$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaA", hash_params{2, 16384}) ==
        doctest::Approx(0.25));
  CHECK(cost_ratio("not a hash", hash_params{4, 16384}) == 1.0);
}
