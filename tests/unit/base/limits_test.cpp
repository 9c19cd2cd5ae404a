#include "base/limits/limits.hpp"

#include <doctest/doctest.h>

#include <string>

using petchat::limits::rate_buckets;

TEST_CASE("rate_buckets: as many at once as a window's worth, then one per share of the window") {
  rate_buckets b(3, 60000);  // 3 a minute: one every 20 s
  CHECK(b.take("a", 1000) == 0);
  CHECK(b.take("a", 1000) == 0);
  CHECK(b.take("a", 1000) == 0);
  CHECK(b.take("a", 1000) == 20000);  // the next in 20 s
  CHECK(b.take("b", 1000) == 0);      // per key
  CHECK(b.take("a", 20999) == 1);
  CHECK(b.take("a", 21000) == 0);
  CHECK(b.take("a", 21000) == 20000);
  // A bucket left alone fills up again, and not past its size.
  for (int i = 0; i < 3; ++i) CHECK(b.take("a", 10'000'000) == 0);
  CHECK(b.take("a", 10'000'000) > 0);
  // A clock that goes back gives no more, and holds back no longer than a window.
  CHECK(b.take("a", 5000) == 20000);
}

TEST_CASE("rate_buckets: 0 is no limit; a flood of keys is forgotten, not kept") {
  rate_buckets none(0, 1000);
  for (int i = 0; i < 1000; ++i) CHECK(none.take("a", 0) == 0);
  rate_buckets b(1, 1000, 4);
  for (int i = 0; i < 3; ++i) CHECK(b.take("k" + std::to_string(i), 0) == 0);
  CHECK(b.take("k2", 0) > 0);  // under the bound, every key is kept
  for (int i = 3; i < 100; ++i) CHECK(b.take("k" + std::to_string(i), 0) == 0);
}
