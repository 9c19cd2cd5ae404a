// A session's queue of encoded frames (frame_queue.hpp): numbers by which a waiting frame
// is found again (a pong replaced by the next ping's).
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "node/gateway/detail/frame_queue.hpp"

using petchat::gateway::detail::frame_queue;

TEST_CASE("frame queue: a waiting frame is replaced in place, one written or cleared away is not") {
  frame_queue q;
  CHECK(q.pushed() == 0);
  q.push(std::string("event one"));
  auto pong = q.pushed();
  q.push(std::string("pong a"));
  q.push(std::make_shared<std::string const>("shared event"));
  CHECK(q.replace_waiting(pong, "pong bb"));
  CHECK(q.bytes() == 9 + 7 + 12);
  CHECK_FALSE(q.replace_waiting(pong + 1, "x"));    // a shared frame is not the stream's own
  CHECK_FALSE(q.replace_waiting(q.pushed(), "x"));  // not pushed yet
  CHECK(q.pop().bytes() == "event one");
  CHECK(q.pop().bytes() == "pong bb");
  CHECK_FALSE(q.replace_waiting(pong, "pong c"));  // written: a new pong is pushed instead
  auto next = q.pushed();
  q.push(std::string("pong c"));
  q.clear();  // a dropped stream's queue
  CHECK_FALSE(q.replace_waiting(next, "pong d"));
  CHECK(q.pushed() == next + 1);  // numbers are never given again
}

TEST_CASE("frame queue: numbers hold across the compaction of a queue that never drains") {
  frame_queue q;
  for (int i = 0; i < 100; ++i) q.push(std::string("f" + std::to_string(i)));
  for (int i = 0; i < 70; ++i) q.pop();  // past compact_after: the consumed prefix is dropped
  auto pong = q.pushed();
  q.push(std::string("pong"));
  for (int i = 0; i < 5; ++i) q.pop();
  CHECK(q.replace_waiting(pong, "pong 2"));
  CHECK(q.replace_waiting(90, "f90 again"));
  while (q.size() > 1) {
    auto f = q.pop();
    if (f.bytes().starts_with("f90")) CHECK(f.bytes() == "f90 again");
  }
  CHECK(q.pop().bytes() == "pong 2");
}
