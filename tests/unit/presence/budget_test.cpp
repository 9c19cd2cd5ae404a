// What presence reports and typing notices from other regions may cost here
// (node/presence/detail/budget.hpp): a region flooding reports, or `full` reports that each
// make a pass over every remote user, is held to a budget per region (honest snapshots fit
// in it), and one inventing typists cannot keep the others' out.
#include "node/presence/detail/budget.hpp"

#include <doctest/doctest.h>

namespace {

using petchat::presence::detail::presence_budget;
using petchat::presence::detail::typing_frames_budget;
using petchat::presence::detail::typing_limiter;

TEST_CASE("presence from a region is held to a budget of entries, refilled over time") {
  presence_budget budget;
  std::int64_t now = 1'000'000;
  // A whole snapshot of the 100,000 users kept per region, in chunks of 500, at once.
  for (int i = 0; i < 200; ++i) REQUIRE(budget.allow("europe", 500, false, now));
  // A flood beyond it is refused...
  int taken = 0;
  while (budget.allow("europe", 1000, false, now)) ++taken;
  CHECK(taken == 20);  // 120,000 in all
  CHECK_FALSE(budget.allow("europe", 1, false, now));
  // ...while another region's reports are not held back by it.
  CHECK(budget.allow("america", 1000, false, now));
  // 20,000 entries come back a second.
  CHECK_FALSE(budget.allow("europe", 1000, false, now + 49));
  CHECK(budget.allow("europe", 1000, false, now + 50));
  CHECK(budget.allow("europe", 19000, false, now + 1000));
  CHECK_FALSE(budget.allow("europe", 1000, false, now + 1000));
  // A clock stepped back gives nothing back, and takes nothing.
  CHECK_FALSE(budget.allow("europe", 1000, false, now));
  CHECK_FALSE(budget.allow("europe", 1001, false, now + 1050));
  CHECK(budget.allow("europe", 1000, false, now + 1050));
}

TEST_CASE("a region's full reports are taken at most twice a second") {
  presence_budget budget;
  std::int64_t now = 1'000'000;
  CHECK(budget.allow("europe", 10, true, now));
  CHECK_FALSE(budget.allow("europe", 0, true, now + 1));
  CHECK_FALSE(budget.allow("europe", 0, true, now + 499));
  CHECK(budget.allow("europe", 10, false, now + 499));  // changes in between still count
  CHECK(budget.allow("europe", 0, true, now + 500));
  CHECK(budget.allow("america", 0, true, now + 500));
}

TEST_CASE("typists of other regions: ten notices a second each, and one region cannot fill the table") {
  typing_limiter limiter;
  std::int64_t now = 1'000'000;
  for (int i = 0; i < 10; ++i) CHECK(limiter.allow("ann@europe", now));
  CHECK_FALSE(limiter.allow("ann@europe", now + 999));
  CHECK(limiter.allow("ann@europe", now + 1001));
  // A region inventing typists gets 20,000 in the table at once (ann is one of them)...
  for (int i = 1; i < 20000; ++i) REQUIRE(limiter.allow("made-up-" + std::to_string(i) + "@europe", now + 1001));
  CHECK_FALSE(limiter.allow("one-more@europe", now + 1001));
  CHECK(limiter.allow("ann@europe", now + 1001));  // those in it go on
  // ...and another region's typists still get in.
  CHECK(limiter.allow("bob@america", now + 1001));
  // Once the invented ones are idle for a second, they are swept and room comes back.
  CHECK(limiter.allow("one-more@europe", now + 2500));
}

TEST_CASE("typing frames from one region: 10,000 at once, then 5,000 a second; regions apart") {
  typing_frames_budget budget;
  std::int64_t now = 1'000'000;
  CHECK(budget.allow("europe", 9000, now));        // a notice to a group of 9,000 here
  CHECK_FALSE(budget.allow("europe", 1001, now));  // the burst is spent
  CHECK(budget.allow("europe", 1000, now));
  CHECK_FALSE(budget.allow("europe", 1, now));
  CHECK(budget.allow("america", 1, now));               // another region's own budget
  CHECK_FALSE(budget.allow("europe", 600, now + 100));  // 500 came back in 100 ms
  CHECK(budget.allow("europe", 500, now + 100));
  CHECK(budget.allow("europe", 10000, now + 10000));  // never more than the burst
  CHECK_FALSE(budget.allow("europe", 1, now + 10000));
}

}  // namespace
