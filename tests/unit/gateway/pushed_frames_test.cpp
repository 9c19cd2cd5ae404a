// Presence and typing frames waiting for room in a session's queue (pushed_frames.hpp).
#include <doctest/doctest.h>

#include <string>

#include "node/gateway/detail/pushed_frames.hpp"

namespace {

petchat::client::server_frame presence_of(std::string const& user) {
  petchat::client::server_frame f;
  f.mutable_presence()->set_user_id(user);
  return f;
}

}  // namespace

TEST_CASE("pushed frames: one per subject, the latest, in the order subjects arrived") {
  petchat::gateway::detail::pushed_frames p;
  p.push(presence_of("a"));
  p.push(presence_of("b"));
  auto newer = presence_of("a");
  newer.mutable_presence()->set_last_seen_ms(7);
  p.push(newer);
  REQUIRE(p.size() == 2);
  auto first = p.pop();
  CHECK(first.presence().user_id() == "a");
  CHECK(first.presence().last_seen_ms() == 7);
  CHECK(p.pop().presence().user_id() == "b");
  CHECK(p.empty());
}

TEST_CASE("pushed frames: a session that never quite catches up keeps its order") {
  // One frame always waiting while new ones come: the sent subjects are let go of on the
  // way (the set is never empty), and the order stays the order of arrival.
  petchat::gateway::detail::pushed_frames p;
  p.push(presence_of("u0"));
  for (int i = 1; i < 20000; ++i) {
    REQUIRE(p.push(presence_of("u" + std::to_string(i))));
    REQUIRE(p.pop().presence().user_id() == "u" + std::to_string(i - 1));
    REQUIRE(p.size() == 1);
  }
  CHECK(p.pop().presence().user_id() == "u19999");
  CHECK(p.empty());
}
