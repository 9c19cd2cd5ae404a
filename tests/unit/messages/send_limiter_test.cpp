// The per-user send rate (node/messages/detail/send_limiter.hpp): a burst of twice the rate.
#include <doctest/doctest.h>

#include "node/messages/detail/send_limiter.hpp"

using petchat::messages::service_detail::send_limiter;

TEST_CASE("a sender has a burst of twice the rate, then waits") {
  send_limiter limiter(2);
  for (int i = 0; i < 4; ++i) CHECK(limiter.allow("alice"));
  CHECK_FALSE(limiter.allow("alice"));
  CHECK(limiter.allow("bob"));  // each sender their own
}
