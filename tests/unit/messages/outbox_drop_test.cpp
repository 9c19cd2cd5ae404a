// `petchatctl federation drop-outbox`'s store side (node/messages/lanes.cpp): every entry and
// the lane's seqs go, in writes of at most `at_once` entries, whatever the lane's seqs and
// however many entries are held; a region listed again meanwhile stops it.
#include <doctest/doctest.h>

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
namespace federation = petchat::federation;
using outcome = federation::local_store::dropped::outcome;
using petchat::messages::service_detail::drop_outbox;
using petchat::messages::service_detail::write_blocking;

// The lane to "gone" handed out seqs up to `end`; entries from `first` to `end` are held.
void hold(rocks_db& db, std::uint64_t first, std::uint64_t end) {
  rocks_db::write_fn fn = [first, end](rocks_batch& b) {
    b.put(cf::state, keys::outbound_lane_key("gone"), keys::be64(end));
    b.put(cf::state, keys::outbound_confirmed_key("gone"), keys::be64(first > 0 ? first - 1 : 0));
    for (auto seq = first; seq <= end; ++seq) b.put(cf::outbox, keys::outbox_key("gone", seq), "body");
    b.put(cf::outbox, keys::outbox_key("kept", 1), "another region's");
    return true;
  };
  REQUIRE(write_blocking(db, std::move(fn)) == petchat::store::write_outcome::committed);
}

std::size_t held(rocks_db& db, std::string const& destination) {
  std::size_t n = 0;
  db.scan(cf::outbox, keys::outbox_key(destination, 0), keys::past_last_of(destination),
          [&](std::string_view, std::string_view) { return ++n, true; });
  return n;
}

}  // namespace

TEST_CASE("drop_outbox erases every entry and the lane's seqs, whatever their number") {
  struct shape {
    std::uint64_t first, end;
  };
  // Nothing held past many seqs (a drained lane), exactly a write's worth, more than one,
  // a gap before the first held.
  for (auto [first, end] : {shape{11, 10}, shape{1, 4}, shape{1, 8}, shape{1, 9}, shape{5, 13}}) {
    CAPTURE(first);
    CAPTURE(end);
    temp_dir dir{"drop"};
    rocks_db db(rocks_options{.dir = dir.path});
    hold(db, first, end);
    auto out = drop_outbox(db, nullptr, "gone", 4);
    CHECK(out.what == outcome::done);
    CHECK(out.entries == end + 1 - first);
    CHECK(held(db, "gone") == 0);
    CHECK(held(db, "kept") == 1);
    CHECK_FALSE(db.get(cf::state, keys::outbound_lane_key("gone")));
    CHECK_FALSE(db.get(cf::state, keys::outbound_confirmed_key("gone")));
  }
}

TEST_CASE("drop_outbox stops when the region is listed again, the lane confirmed up to what went") {
  temp_dir dir{"drop"};
  rocks_db db(rocks_options{.dir = dir.path});
  hold(db, 1, 10);
  federation::options o;
  o.regions = {{"gone", {federation::public_key{}}, "", ""}};
  federation::directory listed{"home", federation::public_key{}, o};
  auto out = drop_outbox(db, &listed, "gone", 4);
  CHECK(out.what == outcome::listed);
  CHECK(out.entries == 0);  // listed before the first write: nothing went
  CHECK(held(db, "gone") == 10);
  CHECK(keys::from_be64(*db.get(cf::state, keys::outbound_lane_key("gone"))) == 10);
  CHECK(keys::from_be64(*db.get(cf::state, keys::outbound_confirmed_key("gone"))) == 0);
}
