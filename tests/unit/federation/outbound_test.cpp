// The outbound lanes over an in-memory outbox: what goes out next to each region, what is
// forgotten once confirmed, what is sent again, and the lane epoch. The link calls
// take_confirmations() before each publishing round; the tests do the same. At the end,
// the inbound applier: the origins take turns.
#include <doctest/doctest.h>
#include <spdlog/logger.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/format/format.hpp"
#include "federation/detail/applier.hpp"
#include "federation/detail/link_state.hpp"
#include "federation/detail/outbound.hpp"
#include "federation/federation.hpp"

namespace {

namespace federation = petchat::federation;
using federation::detail::outbound_lanes;
using seqs = std::vector<std::uint64_t>;

// The outbox and lane epoch as the message service keeps them, in memory.
class memory_store final : public federation::local_store {
 public:
  // Commits `count` new entries for `destination`, as sends to its users do, made at
  // `created_ms` (long ago by default).
  void queue(std::string const& destination, int count, std::int64_t created_ms = 0) {
    auto& outbox = boxes_[destination];
    for (int i = 0; i < count; ++i) {
      ++outbox.end;
      outbox.entries[outbox.end] = "body " + std::to_string(outbox.end);
      outbox.created[outbox.end] = created_ms;
    }
  }
  // Lane seqs still held for `destination`.
  seqs held(std::string const& destination) {
    seqs out;
    for (auto const& [seq, body] : boxes_[destination].entries) out.push_back(seq);
    return out;
  }
  std::uint64_t epoch() const { return epoch_; }  // the node's (every lane's without its own)
  std::uint64_t epoch(std::string const& destination) const {
    auto it = lane_epochs_.find(destination);
    return it == lane_epochs_.end() ? epoch_ : std::max(epoch_, it->second);
  }
  std::size_t forget_at_once = 1000;              // entries outbox_forget forgets per call at most
  std::vector<std::uint64_t> new_epoch_requests;  // the `above` of each new_outbound_epoch

  // What outbox_confirmed recorded last.
  std::optional<std::uint64_t> recorded(std::string const& destination) { return boxes_[destination].confirmed; }

  std::uint64_t outbox_start(std::string const& destination) override {
    auto const& outbox = boxes_[destination];
    if (outbox.confirmed) return *outbox.confirmed;
    return outbox_floor(destination);
  }
  std::uint64_t outbox_floor(std::string const& destination) override {
    auto const& outbox = boxes_[destination];
    return outbox.entries.empty() ? outbox.end : outbox.entries.begin()->first - 1;
  }
  std::uint64_t outbox_end(std::string const& destination) override { return boxes_[destination].end; }
  std::vector<outgoing> outbox_peek(std::string const& destination, std::uint64_t after, std::size_t limit) override {
    std::vector<outgoing> out;
    auto const& entries = boxes_[destination].entries;
    for (auto it = entries.upper_bound(after); it != entries.end() && out.size() < limit; ++it)
      out.push_back({it->first, it->second});
    return out;
  }
  void outbox_confirmed(std::string const& destination, std::uint64_t lane_seq) override {
    boxes_[destination].confirmed = lane_seq;
  }
  std::uint64_t outbox_forget(std::string const& destination, std::uint64_t floor, std::uint64_t up_to,
                              std::int64_t before_ms) override {
    auto& outbox = boxes_[destination];
    auto it = outbox.entries.upper_bound(floor);
    for (std::size_t n = 0; n < forget_at_once && it != outbox.entries.end() && it->first <= up_to &&
                            outbox.created[it->first] < before_ms;
         ++n) {
      floor = it->first;
      it = outbox.entries.erase(it);
    }
    return floor;
  }
  backlog outbox_backlog(std::string const& destination, std::uint64_t after) override {
    auto const& entries = boxes_[destination].entries;
    return {static_cast<std::uint64_t>(std::distance(entries.upper_bound(after), entries.end())), 0};
  }
  std::vector<std::string> outbox_destinations() override {
    std::vector<std::string> out;
    for (auto const& [destination, outbox] : boxes_) out.push_back(destination);
    return out;
  }
  dropped outbox_drop(std::string const& destination) override {
    auto n = boxes_[destination].entries.size();
    boxes_.erase(destination);
    return {dropped::outcome::done, n, {}};
  }
  std::uint64_t outbound_epoch(std::string const& destination) override { return epoch(destination); }
  std::uint64_t new_outbound_epoch(std::string const& destination, std::uint64_t above) override {
    new_epoch_requests.push_back(above);
    if (destination.empty()) {
      for (auto const& [d, e] : lane_epochs_) above = std::max(above, e);
      return epoch_ = std::max(above, epoch_) + 1;
    }
    return lane_epochs_[destination] = std::max(above, epoch(destination)) + 1;
  }
  std::map<std::string, lane> inbound_lanes() override { return {}; }
  std::uint64_t inbound_position(std::string const&) override { return 0; }
  std::vector<federation::reject_reason> apply(std::vector<inbound> batch) override {
    applied.push_back(std::move(batch));  // the applier thread's; read after it stopped
    return {};
  }
  std::vector<std::vector<inbound>> applied;  // each write's envelopes

 private:
  struct box {
    std::uint64_t end = 0;  // newest lane seq ever queued
    std::map<std::uint64_t, std::string> entries;
    std::map<std::uint64_t, std::int64_t> created;
    std::optional<std::uint64_t> confirmed;
  };
  std::map<std::string, box> boxes_;
  std::uint64_t epoch_ = 1000;
  std::map<std::string, std::uint64_t> lane_epochs_;
};

federation::options with_regions(std::uint32_t resend_after_s, std::uint32_t keep_confirmed_s) {
  federation::options o;
  o.resend_after_s = resend_after_s;
  o.keep_confirmed_s = keep_confirmed_s;
  o.regions = {{"away", {federation::public_key{}}, "", ""}, {"far", {federation::public_key{}}, "", ""}};
  return o;
}

federation::lane_ack ack(std::uint64_t epoch, std::uint64_t seq) {
  federation::lane_ack a;
  a.set_epoch(epoch);
  a.set_seq(seq);
  return a;
}

// When a confirmation was made, by its region's clock: now, unless a test says otherwise.
std::int64_t made(std::int64_t ago_ms = 0) {
  return petchat::format::now_ms() - ago_ms;
}

seqs lane_seqs(outbound_lanes::batch const& b) {
  seqs out;
  for (auto const& e : b.entries) out.push_back(e.lane_seq);
  return out;
}

// Region "home" and its lanes to "away" and "far".
struct origin {
  // By default confirmed entries are forgotten at once (keep_confirmed_s 0).
  explicit origin(std::uint32_t resend_after_s = 3600, std::uint32_t keep_confirmed_s = 0)
      : opt(with_regions(resend_after_s, keep_confirmed_s)),
        dir("home", federation::public_key{}, opt),
        lanes(opt, dir, store, std::make_shared<spdlog::logger>("outbound-test")) {}  // no sinks: quiet

  federation::options opt;
  federation::directory dir;
  memory_store store;
  outbound_lanes lanes;

  // One publishing round to `destination` that JetStream stored: what went out.
  seqs publish(std::string const& destination, std::size_t limit = 100) {
    lanes.take_confirmations();
    auto b = lanes.next(destination, limit);
    if (!b.entries.empty()) lanes.published(destination, b.entries.back().lane_seq);
    return lane_seqs(b);
  }
};

TEST_CASE("each destination gets its outbox in lane order, once, and more as it is queued") {
  origin o;
  o.store.queue("away", 5);
  o.store.queue("far", 2);
  o.lanes.take_confirmations();

  auto first = o.lanes.next("away", 3);
  REQUIRE(lane_seqs(first) == seqs{1, 2, 3});
  CHECK(first.entries[0].body == "body 1");
  CHECK(first.epoch == o.store.epoch());
  CHECK(first.base == 0);
  // Not stored by JetStream (a failed publish): the same entries again.
  CHECK(lane_seqs(o.lanes.next("away", 3)) == seqs{1, 2, 3});

  o.lanes.published("away", 3);
  CHECK(lane_seqs(o.lanes.next("away", 3)) == seqs{4, 5});
  o.lanes.published("away", 5);
  CHECK(o.lanes.next("away", 3).entries.empty());
  CHECK(o.publish("far") == seqs{1, 2});  // lanes are independent

  o.store.queue("away", 1);
  CHECK(o.publish("away") == seqs{6});
  CHECK(o.publish("away").empty());
  CHECK(o.store.held("away") == seqs{1, 2, 3, 4, 5, 6});  // nothing confirmed yet: all kept
}

TEST_CASE("confirmations forget what the destination applied; older ones and strangers change nothing") {
  origin o;
  o.store.queue("away", 5);
  CHECK(o.publish("away") == seqs{1, 2, 3, 4, 5});
  auto epoch = o.store.epoch();
  CHECK(o.lanes.confirmed().at("away") == 0);

  o.lanes.note_ack("away", ack(epoch, 3), made());
  CHECK(o.store.held("away") == seqs{1, 2, 3, 4, 5});  // noted, applied at the next round
  o.lanes.take_confirmations();
  CHECK(o.store.held("away") == seqs{4, 5});
  CHECK(o.lanes.confirmed().at("away") == 3);
  CHECK(o.lanes.next("away", 100).entries.empty());  // 4 and 5 are out, waiting for confirmation

  o.lanes.note_ack("away", ack(epoch, 2), made());  // older news
  o.lanes.take_confirmations();
  CHECK(o.store.held("away") == seqs{4, 5});
  CHECK(o.lanes.confirmed().at("away") == 3);

  // Two confirmations between rounds, the older arriving last: the newest counts.
  o.lanes.note_ack("away", ack(epoch, 5), made());
  o.lanes.note_ack("away", ack(epoch, 4), made(1000));
  o.lanes.take_confirmations();
  CHECK(o.store.held("away").empty());
  CHECK(o.lanes.confirmed().at("away") == 5);

  // A confirmation under an earlier epoch of ours, or from a region not in the directory.
  o.store.queue("away", 2);
  CHECK(o.publish("away") == seqs{6, 7});
  o.lanes.note_ack("away", ack(epoch - 1, 7), made());
  o.lanes.note_ack("stranger", ack(epoch, 7), made());
  o.lanes.take_confirmations();
  CHECK(o.store.held("away") == seqs{6, 7});
  CHECK(o.lanes.confirmed().count("stranger") == 0);
  CHECK(o.store.new_epoch_requests.empty());

  // The next bundle says where the lane stands: base is the confirmed seq.
  o.store.queue("away", 1);
  auto b = o.lanes.next("away", 100);
  CHECK(lane_seqs(b) == seqs{8});
  CHECK(b.base == 5);
}

TEST_CASE("entries left unconfirmed are sent again from the last confirmed seq once the wait is over") {
  SUBCASE("within resend_after_s nothing goes out again") {
    origin o(3600);
    o.store.queue("away", 4);
    CHECK(o.publish("away") == seqs{1, 2, 3, 4});
    o.lanes.note_ack("away", ack(o.store.epoch(), 2), made());
    CHECK(o.publish("away").empty());
    CHECK(o.publish("away").empty());
  }
  SUBCASE("after it, one batch again from the confirmed seq") {
    origin o(0);  // the wait is over as soon as the clock moves
    o.store.queue("away", 4);
    o.lanes.take_confirmations();
    auto first = o.lanes.next("away", 2);
    REQUIRE(lane_seqs(first) == seqs{1, 2});
    o.lanes.published("away", 2);
    // steady_clock must move past the moment the lane began waiting; no other waiting.
    auto t = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() == t) {
    }
    auto again = o.lanes.next("away", 2);
    CHECK(lane_seqs(again) == seqs{1, 2});
    CHECK(again.base == 0);
    CHECK(again.epoch == first.epoch);
    CHECK(o.store.held("away") == seqs{1, 2, 3, 4});

    // Once the destination confirms them, the lane moves on to what it never had.
    o.lanes.published("away", 2);
    o.lanes.note_ack("away", ack(o.store.epoch(), 2), made());
    CHECK(o.publish("away") == seqs{3, 4});
    CHECK(o.store.held("away") == seqs{3, 4});
  }
}

TEST_CASE("a destination ahead of this store starts a new epoch of its lane, which goes again under it") {
  SUBCASE("it applied more of the lane than this store ever wrote (a store restored from a backup)") {
    origin o;
    o.store.queue("away", 3);
    o.store.queue("far", 2);
    CHECK(o.publish("away") == seqs{1, 2, 3});
    CHECK(o.publish("far") == seqs{1, 2});
    auto old_epoch = o.store.epoch();

    o.lanes.note_ack("away", ack(old_epoch, 9), made());
    o.lanes.take_confirmations();
    CHECK(o.store.new_epoch_requests == seqs{old_epoch});
    CHECK(o.store.epoch("away") > old_epoch);
    CHECK(o.store.held("away") == seqs{1, 2, 3});  // nothing counts as confirmed
    auto b = o.lanes.next("away", 100);
    CHECK(b.epoch == o.store.epoch("away"));
    CHECK(b.base == 0);
    CHECK(lane_seqs(b) == seqs{1, 2, 3});
    // The lane to far is not touched: its epoch stays, nothing goes again.
    CHECK(o.store.epoch("far") == old_epoch);
    CHECK(o.lanes.next("far", 100).entries.empty());

    // Under its new epoch away's confirmations work as before; under the old one they no
    // longer count. Far's count under its own.
    o.lanes.note_ack("away", ack(old_epoch, 3), made());
    o.lanes.take_confirmations();
    CHECK(o.store.held("away") == seqs{1, 2, 3});
    o.lanes.note_ack("away", ack(o.store.epoch("away"), 3), made());
    o.lanes.note_ack("far", ack(old_epoch, 2), made());
    o.lanes.take_confirmations();
    CHECK(o.store.held("away").empty());
    CHECK(o.store.held("far").empty());
    CHECK(o.store.new_epoch_requests.size() == 1);
  }
  SUBCASE("it knows a newer epoch of ours (this node's clock went back)") {
    origin o;
    o.store.queue("away", 2);
    CHECK(o.publish("away") == seqs{1, 2});
    auto newer = o.store.epoch() + 500;
    o.lanes.note_ack("away", ack(newer, 1), made());
    o.lanes.take_confirmations();
    CHECK(o.store.new_epoch_requests == seqs{newer});
    CHECK(o.store.epoch("away") > newer);
    auto b = o.lanes.next("away", 100);
    CHECK(b.epoch == o.store.epoch("away"));
    CHECK(lane_seqs(b) == seqs{1, 2});
  }
}

TEST_CASE("a confirmation under an epoch this region cannot have made changes nothing") {
  origin o;
  o.store.queue("away", 2);
  o.store.queue("far", 1);
  CHECK(o.publish("away") == seqs{1, 2});
  CHECK(o.publish("far") == seqs{1});
  auto epoch = o.store.epoch();
  auto a_day_ahead = static_cast<std::uint64_t>(petchat::format::now_ms() + 2LL * 24 * 3600 * 1000) << 16;
  for (auto bogus : {std::numeric_limits<std::uint64_t>::max(), a_day_ahead}) {
    o.lanes.note_ack("away", ack(bogus, 1), made());
    o.lanes.take_confirmations();
  }
  CHECK(o.store.new_epoch_requests.empty());
  CHECK(o.store.epoch() == epoch);
  CHECK(o.store.held("away") == seqs{1, 2});  // not confirmed either
  CHECK(o.lanes.next("far", 100).epoch == epoch);
  o.lanes.note_ack("away", ack(epoch, 2), made());  // the real one still works
  o.lanes.take_confirmations();
  CHECK(o.store.held("away").empty());
}

TEST_CASE("confirmed entries are held for keep_confirmed_s, and sent again to a destination that went back") {
  auto now = petchat::format::now_ms();
  origin o(3600, 3600);                      // held for an hour
  o.store.queue("away", 3, now - 7200'000);  // made two hours ago
  o.store.queue("away", 4, now);             // 4..7, just made
  auto epoch = o.store.epoch();
  CHECK(o.publish("away") == seqs{1, 2, 3, 4, 5, 6, 7});
  o.lanes.note_ack("away", ack(epoch, 6), made());
  o.lanes.take_confirmations();
  CHECK(o.lanes.confirmed().at("away") == 6);
  CHECK(o.store.recorded("away") == 6);
  CHECK(o.store.held("away") == seqs{4, 5, 6, 7});  // the old ones forgotten, the young confirmed ones held
  auto b = o.lanes.next("away", 100);
  CHECK(b.entries.empty());
  CHECK(b.base == 6);
  CHECK(b.floor == 3);

  SUBCASE("gone back to a seq still held: from there again, and the position recorded") {
    o.lanes.note_ack("away", ack(epoch, 4), made());
    o.lanes.take_confirmations();
    CHECK(o.lanes.confirmed().at("away") == 4);
    CHECK(o.store.recorded("away") == 4);
    auto again = o.lanes.next("away", 100);
    CHECK(lane_seqs(again) == seqs{5, 6, 7});
    CHECK(again.base == 4);
    CHECK(again.epoch == epoch);
    CHECK(o.store.new_epoch_requests.empty());
    // A restart of this node starts from the recorded position.
    outbound_lanes restarted(o.opt, o.dir, o.store, std::make_shared<spdlog::logger>("outbound-test"));
    restarted.take_confirmations();
    CHECK(lane_seqs(restarted.next("away", 100)) == seqs{5, 6, 7});
  }
  SUBCASE("a restored destination's honest confirmation beats an older one replayed in the same round") {
    o.lanes.note_ack("away", ack(epoch, 4), made());        // it went back to 4 (restored)
    o.lanes.note_ack("away", ack(epoch, 6), made(60'000));  // its old one, captured and replayed
    o.lanes.take_confirmations();
    CHECK(o.lanes.confirmed().at("away") == 4);
    CHECK(lane_seqs(o.lanes.next("away", 100)) == seqs{5, 6, 7});
    o.lanes.note_ack("away", ack(epoch, 6), made(60'000));  // and replayed again alone: older, ignored
    o.lanes.take_confirmations();
    CHECK(o.lanes.confirmed().at("away") == 4);
  }
  SUBCASE("an older confirmation replayed, or a second going back within a minute, changes nothing") {
    o.lanes.note_ack("away", ack(epoch, 4), made(60'000));  // made before the one taken (seq 6)
    o.lanes.take_confirmations();
    CHECK(o.lanes.confirmed().at("away") == 6);
    CHECK(o.lanes.next("away", 100).entries.empty());
    o.lanes.note_ack("away", ack(epoch, 5), made());  // a fresh one: taken
    o.lanes.take_confirmations();
    CHECK(o.lanes.confirmed().at("away") == 5);
    CHECK(lane_seqs(o.lanes.next("away", 100)) == seqs{6, 7});
    o.lanes.published("away", 7);
    o.lanes.note_ack("away", ack(epoch, 7), made());
    o.lanes.take_confirmations();
    CHECK(o.lanes.confirmed().at("away") == 7);
    o.lanes.note_ack("away", ack(epoch, 4), made());  // back again at once: not before a minute
    o.lanes.take_confirmations();
    CHECK(o.lanes.confirmed().at("away") == 7);
    CHECK(o.store.recorded("away") == 7);
  }
  SUBCASE("many old entries are forgotten over several rounds, a stretch per round") {
    origin m(3600, 3600);
    m.store.forget_at_once = 2;
    m.store.queue("away", 5, now - 7200'000);
    m.store.queue("away", 1, now);
    CHECK(m.publish("away") == seqs{1, 2, 3, 4, 5, 6});
    m.lanes.note_ack("away", ack(m.store.epoch(), 6), made());
    m.lanes.take_confirmations();
    CHECK(m.store.held("away") == seqs{3, 4, 5, 6});
    m.lanes.take_confirmations();
    CHECK(m.store.held("away") == seqs{5, 6});
    m.lanes.take_confirmations();
    CHECK(m.store.held("away") == seqs{6});
    m.lanes.take_confirmations();  // nothing old left: the young one stays
    CHECK(m.store.held("away") == seqs{6});
    CHECK(m.lanes.next("away", 100).floor == 5);
  }
  SUBCASE("gone back below what is held: nothing to send again; it skips to the floor") {
    o.lanes.note_ack("away", ack(epoch, 1), made());
    o.lanes.take_confirmations();
    CHECK(o.lanes.confirmed().at("away") == 6);
    o.store.queue("away", 1, now);
    auto next = o.lanes.next("away", 100);
    CHECK(lane_seqs(next) == seqs{8});
    CHECK(next.floor == 3);
    // The destination skips to the floor and says so: then 4..7 go again.
    o.lanes.published("away", 8);
    o.lanes.note_ack("away", ack(epoch, 3), made());
    o.lanes.take_confirmations();
    CHECK(lane_seqs(o.lanes.next("away", 100)) == seqs{4, 5, 6, 7, 8});
  }
}

// The link's manager, woken from a pause, gathers what more requests queue before it
// publishes (federation.batch_delay_ms): until `enough` woke it since the round began, or
// the time is up, or the link stops.
TEST_CASE("the link gathers envelopes for a bundle until enough came, the time is up, or it stops") {
  using std::chrono::steady_clock;
  auto opt = with_regions(3600, 0);
  federation::directory dir("home", federation::public_key{}, opt);
  memory_store store;
  federation::detail::link_state state(opt, dir, federation::secret_key{}, store,
                                       std::make_shared<spdlog::logger>("link-test"));
  constexpr auto long_time = std::chrono::seconds(20);  // waited this long: it did not end early
  auto started = steady_clock::now();
  constexpr auto short_time = std::chrono::milliseconds(50);
  state.begin_round();
  for (int i = 0; i < 8; ++i) state.wake();
  CHECK(state.pause(long_time));  // woken
  state.gather(long_time, 8);     // 8 came since the round began: no wait
  CHECK(steady_clock::now() - started < long_time);
  SUBCASE("fewer than enough: it waits the whole time") {
    state.begin_round();  // the wake-ups before the round are its own
    for (int i = 0; i < 7; ++i) state.wake();
    started = steady_clock::now();
    state.gather(short_time, 8);
    CHECK(steady_clock::now() - started >= short_time);
    CHECK_FALSE(state.pause(std::chrono::milliseconds(1)));  // the gather spent the wake-ups
  }
  SUBCASE("the eighth wake-up from another thread ends it") {
    state.begin_round();
    for (int i = 0; i < 7; ++i) state.wake();
    std::thread later([&state] { state.wake(); });
    started = steady_clock::now();
    state.gather(long_time, 8);
    later.join();
    CHECK(steady_clock::now() - started < long_time);
  }
  SUBCASE("stopping ends it") {
    state.begin_round();
    std::thread stop([&state] {
      state.stopping = true;
      state.wake();
    });
    started = steady_clock::now();
    state.gather(long_time, 8);
    stop.join();
    CHECK(steady_clock::now() - started < long_time);
  }
}

// --- The inbound applier -----------------------------------------------------------------

// One body of an envelope at stream seq `seq` from `origin` (no content: its position moves).
std::vector<federation::local_store::inbound> envelope_of(std::string const& origin, std::uint64_t seq,
                                                          std::size_t bodies) {
  federation::local_store::inbound i;
  i.stream_seq = seq;
  i.origin = origin;
  return std::vector(bodies, i);
}

TEST_CASE("the applier takes one envelope of each origin in turn: a long backlog delays another origin by one write") {
  auto opt = with_regions(3600, 0);
  federation::directory dir("home", federation::public_key{}, opt);
  memory_store store;
  federation::detail::link_state state(opt, dir, federation::secret_key{}, store,
                                       std::make_shared<spdlog::logger>("applier-test"));
  federation::detail::inbound_applier applier(state);
  auto& away = applier.add("away");
  auto& far = applier.add("far");
  // away's backlog (8 envelopes of 256 bodies, stream seqs 1-8) is queued before far's one body (9).
  for (std::uint64_t seq = 1; seq <= 8; ++seq) REQUIRE(applier.push(away, envelope_of("away", seq, 256), 0));
  REQUIRE(applier.push(far, envelope_of("far", 9, 1), 0));
  applier.start();
  applier.stop();  // applies what is queued, then ends

  REQUIRE(store.applied.size() == 5);
  // The first write: away's first envelope, then far's (in stream order, away's second).
  auto const& first = store.applied.front();
  CHECK(first.size() == 257);
  CHECK(first.front().origin == "away");
  CHECK(first.back().origin == "far");
  // Every write within 512 bodies, whole envelopes; away's in its stream order.
  std::vector<std::uint64_t> away_seqs;
  for (auto const& write : store.applied) {
    CHECK(write.size() <= 512);
    for (auto const& i : write)
      if (i.origin == "away" && (away_seqs.empty() || away_seqs.back() != i.stream_seq))
        away_seqs.push_back(i.stream_seq);
  }
  CHECK(away_seqs == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8});
  // What may be purged, per origin.
  CHECK(away.applied_seq == 8);
  CHECK(far.applied_seq == 9);
}

}  // namespace
