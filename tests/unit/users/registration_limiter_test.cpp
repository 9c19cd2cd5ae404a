// Self-registrations per address (node/users/detail/registration_limiter.hpp): a refused
// registration gives its place back, and no flood of addresses makes the limiter forget
// the counts of the addresses that did register.
#include <doctest/doctest.h>

#include <string>

#include "node/users/detail/registration_limiter.hpp"

using petchat::users::detail::registration_limiter;

namespace {
constexpr std::int64_t hour = 3600 * 1000;
constexpr std::size_t table = 100000;  // the addresses it keeps at most
}  // namespace

TEST_CASE("refused registrations from a flood of addresses leave every address's count as it was") {
  registration_limiter limits(10, hour);
  std::int64_t now = 1000;
  for (int i = 0; i < 10; ++i) REQUIRE(limits.reserve("1.2.3.4", now) == 0);
  CHECK(limits.reserve("1.2.3.4", now) > 0);
  // Each of a flood's requests is refused after its reservation (a bad name, say).
  for (std::size_t i = 0; i <= table; ++i) {
    auto address = "flood " + std::to_string(i);
    REQUIRE(limits.reserve(address, now) == 0);
    limits.release(address);
  }
  CHECK(limits.addresses() == 1);
  CHECK(limits.reserve("1.2.3.4", now) > 0);  // still its ten of the hour
  CHECK(limits.reserve("1.2.3.4", now + hour) == 0);
}

TEST_CASE("a table full of addresses that registered makes a new address wait, and forgets none") {
  registration_limiter limits(1, hour);
  std::int64_t now = 1000;
  for (std::size_t i = 0; i < table; ++i) {
    REQUIRE(limits.reserve("a" + std::to_string(i), now + std::int64_t(i % 7)) == 0);
    limits.created("a" + std::to_string(i));
  }
  auto wait = limits.reserve("newcomer", now + 10);
  CHECK(wait > 0);
  CHECK(wait <= hour);
  CHECK(limits.reserve("a0", now + 10) > 0);  // its count stands
  // Once the first windows end, their places are free again.
  CHECK(limits.reserve("newcomer", now + hour) == 0);
}

TEST_CASE("a table full of refusals that counted (a name taken) forgets them before a new address waits") {
  registration_limiter limits(10, hour);
  std::int64_t now = 1000;
  REQUIRE(limits.reserve("1.2.3.4", now) == 0);
  limits.created("1.2.3.4");
  for (std::size_t i = 1; i < table; ++i) REQUIRE(limits.reserve("taken " + std::to_string(i), now) == 0);
  CHECK(limits.reserve("newcomer", now) == 0);  // the refusals went, not the table's use
  CHECK(limits.addresses() == 2);
  for (int i = 1; i < 10; ++i) REQUIRE(limits.reserve("1.2.3.4", now) == 0);
  CHECK(limits.reserve("1.2.3.4", now) > 0);  // its account counted on
}
