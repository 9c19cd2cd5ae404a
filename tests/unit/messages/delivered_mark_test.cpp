// A user's delivered mark (node/messages/detail/delivered_mark.hpp) keeps the positions of
// the 8 groups acknowledged last in itself; the least recent one leaves for its own key
// (`dg/`), unless the user's part in that group is forgotten (a left group whose retention
// passed, forget_former_member), whose key would then stay for ever.
#include <doctest/doctest.h>

#include "node/messages/detail/delivered_mark.hpp"
#include "node/messages/detail/keys.hpp"
#include "node/messages/detail/lanes.hpp"
#include "tests/unit/support.hpp"

namespace {

using petchat::store::cf;
using petchat::store::rocks_batch;
using petchat::store::rocks_db;
using petchat::store::rocks_options;
using petchat::testing::temp_dir;
namespace keys = petchat::messages::detail;
using petchat::messages::service_detail::delivered_mark;
using petchat::messages::service_detail::write_blocking;

std::string const user = "alice@home";

std::string group(int i) {
  return "g" + std::string(22, char('A' + i));
}

void write(rocks_db& db, rocks_db::write_fn fn) {
  REQUIRE(write_blocking(db, std::move(fn)) == petchat::store::write_outcome::committed);
}

// The user acknowledges message `seq` of each of `groups`, in that order, in one write.
void acknowledge(rocks_db& db, std::vector<int> const& groups, std::uint64_t seq) {
  write(db, [&](rocks_batch& b) {
    delivered_mark mark(b, user);
    for (int g : groups) mark.advance(group(g), seq);
    mark.write();
    return true;
  });
}

}  // namespace

TEST_CASE("a group leaving the delivered mark keeps its position under its own key while the user has a part in it") {
  temp_dir dir{"mark"};
  rocks_db db(rocks_options{.dir = dir.path});
  // Parts in groups 1 to 9; none in group 0 (forgotten: left long ago).
  write(db, [](rocks_batch& b) {
    for (int g = 1; g <= 9; ++g) b.put(cf::conversations, keys::participant_key(user, group(g)), "");
    return true;
  });
  acknowledge(db, {0, 1, 2, 3, 4, 5, 6, 7}, 5);  // the mark is full
  CHECK_FALSE(db.get(cf::state, keys::delivered_position_key(user, group(0))));
  acknowledge(db, {8, 9}, 6);  // groups 0 and then 1 leave the mark, least recent first
  CHECK_FALSE(db.get(cf::state, keys::delivered_position_key(user, group(0))));
  auto kept = db.get(cf::state, keys::delivered_position_key(user, group(1)));
  REQUIRE(kept);
  CHECK(keys::from_be64(*kept) == 5);
  // Positions are answered alike from the mark and from their own key (a write that
  // writes nothing).
  write_blocking(db, [](rocks_batch& b) {
    delivered_mark mark(b, user);
    CHECK(mark.position(group(1)) == 5);
    CHECK(mark.position(group(2)) == 5);
    CHECK(mark.position(group(9)) == 6);
    CHECK(mark.position(group(0)) == 0);
    return false;
  });
}
