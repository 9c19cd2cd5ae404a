// The message service against real stores in a temporary data dir (RocksDB for messages,
// LMDB for the accounts it checks recipients against), driven as the gateway drives it:
// coroutines on an io_context, each call run until its durable write has completed.
#include <map>

#include "node/messages/detail/keys.hpp"
#include "tests/unit/messages/region.hpp"

namespace {

TEST_CASE("a send lands once in each mailbox with gapless seqs, and both sides hear of it") {
  region r;
  std::vector<std::string> ids;
  for (int i = 1; i <= 3; ++i) {
    auto a = r.send(alice, text(bob, "c" + std::to_string(i), "hi " + std::to_string(i)));
    REQUIRE(outcome(a) == "ok");
    CHECK_FALSE(a->duplicate());
    CHECK(a->client_id() == "c" + std::to_string(i));
    CHECK(a->conversation_id() == message_service::conversation_of(alice, bob));
    ids.push_back(a->message_id());
  }
  CHECK_FALSE(r.service.shares_presence(alice, bob));  // bob has not written back yet
  auto reply = r.send(bob, text(alice, "r1", "hello"));
  REQUIRE(outcome(reply) == "ok");
  CHECK(r.service.shares_presence(alice, bob));
  CHECK(r.service.contacts(alice) == std::vector<std::string>{bob});

  CHECK(r.service.mailbox_head(bob) == 4);
  CHECK(r.service.mailbox_head(alice) == 4);
  for (auto const& user : {alice, bob}) {
    auto box = r.service.events_after(user, 0, 100);
    CAPTURE(user);
    REQUIRE(box.events.size() == 4);
    CHECK(box.last_seq == 4);
    for (std::size_t i = 0; i < 4; ++i) CHECK(box.events[i].seq() == i + 1);
    CHECK(box.events[0].message().id() == ids[0]);
    CHECK(box.events[0].message().from() == alice);
    CHECK(box.events[0].message().to() == bob);
    CHECK(box.events[2].message().body().text() == "hi 3");
    CHECK(box.events[3].message().id() == reply->message_id());
  }
  // The listener heard each event once, with its content.
  REQUIRE(r.heard.size() == 8);
  std::vector<std::uint64_t> bob_heads;
  for (auto const& n : r.heard) {
    REQUIRE(n.event);
    CHECK(n.event->seq() == n.head);
    CHECK(n.event->has_message());
    if (n.user == bob) bob_heads.push_back(n.head);
  }
  CHECK(bob_heads == std::vector<std::uint64_t>{1, 2, 3, 4});
}

TEST_CASE("a retried send (same client_id) returns the original acceptance and stores nothing") {
  region r;
  auto first = r.send(alice, text(bob, "same", "once"));
  auto again = r.send(alice, text(bob, "same", "once"));
  auto edited = r.send(alice, text(bob, "same", "another text"));  // the client_id decides
  REQUIRE(outcome(first) == "ok");
  REQUIRE(outcome(again) == "ok");
  REQUIRE(outcome(edited) == "ok");
  CHECK_FALSE(first->duplicate());
  for (auto const* retry : {&again, &edited}) {
    CHECK((*retry)->duplicate());
    CHECK((*retry)->message_id() == first->message_id());
    CHECK((*retry)->conversation_id() == first->conversation_id());
    CHECK((*retry)->sent_at_ms() == first->sent_at_ms());
  }
  CHECK(r.service.mailbox_head(bob) == 1);
  CHECK(r.service.mailbox_head(alice) == 1);
  CHECK(r.heard.size() == 2);
  auto page = r.service.history(bob, first->conversation_id(), {});
  REQUIRE(outcome(page) == "ok");
  CHECK(texts(*page) == std::vector<std::string>{"once"});

  // Client ids belong to their sender: bob's "same" is a message of its own.
  auto bobs = r.send(bob, text(alice, "same", "mine"));
  REQUIRE(outcome(bobs) == "ok");
  CHECK_FALSE(bobs->duplicate());
  CHECK(bobs->message_id() != first->message_id());
  CHECK(r.service.mailbox_head(bob) == 2);
}

TEST_CASE("history pages oldest first and tells whether there is more on either side") {
  region r;
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(r.sent(alice, bob, "c" + std::to_string(i), "m" + std::to_string(i)));
  auto conv = message_service::conversation_of(alice, bob);

  auto newest = r.service.history(bob, conv, {.limit = 2});
  REQUIRE(outcome(newest) == "ok");
  CHECK(texts(*newest) == std::vector<std::string>{"m3", "m4"});
  CHECK(newest->has_more_before);
  CHECK_FALSE(newest->has_more_after);

  auto older = r.service.history(bob, conv, {.before = ids[3], .limit = 2});
  REQUIRE(outcome(older) == "ok");
  CHECK(texts(*older) == std::vector<std::string>{"m1", "m2"});
  CHECK(older->has_more_before);
  CHECK(older->has_more_after);

  auto oldest = r.service.history(alice, conv, {.before = ids[1], .limit = 2});
  REQUIRE(outcome(oldest) == "ok");
  CHECK(texts(*oldest) == std::vector<std::string>{"m0"});
  CHECK_FALSE(oldest->has_more_before);
  CHECK(oldest->has_more_after);

  auto forward = r.service.history(alice, conv, {.after = ids[0], .limit = 2});
  REQUIRE(outcome(forward) == "ok");
  CHECK(texts(*forward) == std::vector<std::string>{"m1", "m2"});
  CHECK(forward->has_more_after);

  CHECK(outcome(r.service.history(carol, conv, {})) == "conversation_not_found");  // as if there were none
  CHECK(outcome(r.service.history(alice, message_service::conversation_of(alice, carol), {})) ==
        "conversation_not_found");
  CHECK(outcome(r.service.history(alice, conv, {.before = "not-an-id"})) == "invalid_field:before");
  CHECK(outcome(r.service.get(carol, ids[0])) == "message_not_found");
  auto one = r.service.get(bob, ids[0]);
  REQUIRE(outcome(one) == "ok");
  CHECK(one->body().text() == "m0");
}

TEST_CASE("acknowledgements and reads reach the sender as receipts; read marks reach the reader's devices") {
  region r;
  auto m1 = r.sent(alice, bob, "c1", "first");
  auto m2 = r.sent(alice, bob, "c2", "second");
  auto conv = message_service::conversation_of(alice, bob);

  CHECK(outcome(r.run(r.service.ack(bob, "phone", 1))) == "ok");
  CHECK(r.service.acked(bob, "phone") == 1);
  auto delivered = r.service.events_after(alice, 2, 10);
  REQUIRE(delivered.events.size() == 1);
  CHECK(delivered.events[0].seq() == 3);
  CHECK(delivered.events[0].receipt().status() == client::DELIVERED);
  CHECK(delivered.events[0].receipt().message_id() == m1);
  CHECK(delivered.events[0].receipt().by() == bob);
  REQUIRE(r.heard.back().event);
  CHECK(r.heard.back().user == alice);
  CHECK(r.heard.back().event->receipt().message_id() == m1);

  // Another device acknowledging the same events: no second receipt.
  CHECK(outcome(r.run(r.service.ack(bob, "laptop", 1))) == "ok");
  CHECK(r.service.acked(bob, "laptop") == 1);
  CHECK(r.service.mailbox_head(alice) == 3);
  CHECK(outcome(r.run(r.service.ack(bob, "phone", 3))) == "invalid_field:seq");  // beyond bob's head (2)

  // Reading up to m2 reads m1 too; m2 was never acknowledged, so DELIVERED comes before READ.
  CHECK(outcome(r.run(r.service.read(bob, conv, m2))) == "ok");
  auto receipts = r.service.events_after(alice, 3, 10);
  REQUIRE(receipts.events.size() == 2);
  CHECK(receipts.events[0].receipt().status() == client::DELIVERED);
  CHECK(receipts.events[0].receipt().message_id() == m2);
  CHECK(receipts.events[1].receipt().status() == client::READ);
  CHECK(receipts.events[1].receipt().message_id() == m2);
  auto mark = r.service.events_after(bob, 2, 10);
  REQUIRE(mark.events.size() == 1);
  CHECK(mark.events[0].read_mark().conversation_id() == conv);
  CHECK(mark.events[0].read_mark().message_id() == m2);
  for (auto const& id : {m1, m2}) {
    auto m = r.service.get(alice, id);
    REQUIRE(outcome(m) == "ok");
    CHECK(m->delivered_at_ms() > 0);
    CHECK(m->read_at_ms() > 0);
  }

  // Read marks only move forward: reading up to m1 now changes nothing.
  CHECK(outcome(r.run(r.service.read(bob, conv, m1))) == "ok");
  CHECK(r.service.mailbox_head(alice) == 5);
  CHECK(r.service.mailbox_head(bob) == 3);

  CHECK(outcome(r.run(r.service.read(bob, "", m1))) == "missing_field:conversation_id");
  CHECK(outcome(r.run(r.service.read(carol, conv, m1))) == "conversation_not_found");
  CHECK(outcome(r.run(r.service.read(bob, conv, std::string(22, 'A')))) == "message_not_found");
}

TEST_CASE("acknowledgements made at once, in either form, are each answered for themselves") {
  region r;
  r.sent(alice, bob, "c1", "one");
  r.sent(alice, bob, "c2", "two");
  r.sent(alice, carol, "c3", "three");  // bob's mailbox: 1, 2; carol's: 1; alice's: 1 to 3

  // Made together, they join whichever gathered write is queued when they arrive (one or
  // a few, as the writer takes them); each gets its own answer.
  std::optional<errors::status> a, b, c, d;
  r.start(r.service.ack(bob, "phone", 1), a);
  r.start(r.service.ack(carol, "phone", 2), b);  // beyond carol's head
  r.start(r.service.ack(bob, "laptop", 2), c);
  r.start(r.service.ack(bob, "phone", 2), d);
  // The callback form, answered on the io_context (which runs until then).
  std::vector<std::string> answered;
  auto running = asio::make_work_guard(r.io);
  r.service.ack(carol, "phone", 1, r.io.get_executor(), [&](errors::status s) {
    answered.push_back(outcome(s));
    running.reset();
  });
  r.finish();
  REQUIRE((a && b && c && d));
  CHECK(outcome(*a) == "ok");
  CHECK(outcome(*b) == "invalid_field:seq");
  CHECK(outcome(*c) == "ok");
  CHECK(outcome(*d) == "ok");
  CHECK(answered == std::vector<std::string>{"ok"});
  CHECK(r.service.acked(bob, "phone") == 2);
  CHECK(r.service.acked(bob, "laptop") == 2);
  CHECK(r.service.acked(carol, "phone") == 1);

  // One DELIVERED per message, whichever device's acknowledgement came first.
  auto receipts = r.service.events_after(alice, 3, 10);
  REQUIRE(receipts.events.size() == 3);
  std::set<std::string> ids;
  for (auto const& e : receipts.events) {
    CHECK(e.receipt().status() == client::DELIVERED);
    ids.insert(e.receipt().message_id());
  }
  CHECK(ids.size() == 3);
}

TEST_CASE("a long stretch is acknowledged in slices, every message delivered once") {
  config::messages_section options;
  options.max_per_second = 100000;
  region r(options);
  constexpr int n = 1100;  // more than one slice of the walk (1,024 events)
  std::vector<std::optional<accepted_result>> sends(n);
  for (int i = 0; i < n; ++i) r.start(r.service.send(alice, text(bob, "c" + std::to_string(i), "m")), sends[i]);
  r.finish();
  for (auto const& s : sends) REQUIRE((s && outcome(*s) == "ok"));

  auto walked = r.service.ack_walked_events();
  CHECK(outcome(r.run(r.service.ack(bob, "phone", n))) == "ok");
  CHECK(r.service.acked(bob, "phone") == n);
  CHECK(r.service.ack_walked_events() - walked == n);
  auto receipts = r.service.events_after(alice, n, 2 * n);
  std::set<std::string> ids;
  for (auto const& e : receipts.events)
    if (e.receipt().status() == client::DELIVERED) ids.insert(e.receipt().message_id());
  CHECK(receipts.events.size() == n);
  CHECK(ids.size() == n);
}

TEST_CASE("a device resumes after its acknowledged seq") {
  region r;
  for (int i = 0; i < 4; ++i) r.sent(alice, bob, "c" + std::to_string(i), "m" + std::to_string(i));

  auto first = r.service.events_after(bob, 0, 2);
  REQUIRE(first.events.size() == 2);
  CHECK(first.last_seq == 2);
  CHECK(outcome(r.run(r.service.ack(bob, "phone", first.last_seq))) == "ok");

  // The device comes back: it gets what follows its acknowledged seq, and nothing twice.
  auto rest = r.service.events_after(bob, r.service.acked(bob, "phone"), 100);
  REQUIRE(rest.events.size() == 2);
  CHECK(rest.events[0].seq() == 3);
  CHECK(rest.events[1].message().body().text() == "m3");
  CHECK(rest.last_seq == 4);
  auto none = r.service.events_after(bob, 4, 100);
  CHECK(none.events.empty());
  CHECK(none.last_seq == 4);

  // Acknowledgements only move forward; other devices keep their own position.
  CHECK(outcome(r.run(r.service.ack(bob, "phone", 1))) == "ok");
  CHECK(r.service.acked(bob, "phone") == 2);
  CHECK(r.service.acked(bob, "tablet") == 0);
  CHECK(r.service.mailbox_head(alice) == 6);  // four messages, two DELIVERED receipts
}

TEST_CASE("a message past its ttl is no longer served, and the sweep removes it") {
  region r;
  auto brief = r.send(alice, text(bob, "short", "gone soon", 1));
  REQUIRE(outcome(brief) == "ok");
  auto kept = r.sent(alice, bob, "long", "stays");
  // The listener was handed the message as stored (reading it back could already be late).
  REQUIRE_FALSE(r.heard.empty());
  REQUIRE(r.heard.front().event);
  auto expires_at = r.heard.front().event->message().expires_at_ms();
  CHECK(expires_at == brief->sent_at_ms() + 1000);

  wait_until_after(expires_at);
  // Reads check the expiry themselves: nothing expired is served, even before a sweep.
  CHECK(outcome(r.service.get(bob, brief->message_id())) == "message_not_found");
  auto box = r.service.events_after(bob, 0, 10);
  REQUIRE(box.events.size() == 1);
  CHECK(box.events[0].message().id() == kept);

  CHECK(r.run(r.service.sweep_expired()) == 1);
  CHECK(r.run(r.service.sweep_expired()) == 0);
  auto page = r.service.history(alice, brief->conversation_id(), {});
  REQUIRE(outcome(page) == "ok");
  CHECK(texts(*page) == std::vector<std::string>{"stays"});

  // A retry after a disappearing message expired is answered, not sent again: its client
  // id is kept for the retention period (at most a day) from the send, however short the TTL.
  auto retried = r.send(alice, text(bob, "short", "gone soon", 1));
  REQUIRE(outcome(retried) == "ok");
  CHECK(retried->duplicate());
  CHECK(retried->message_id() == brief->message_id());
  CHECK(r.service.mailbox_head(bob) == 2);
  // Seqs are never reused.
  auto resent = r.send(alice, text(bob, "short again", "back again"));
  REQUIRE(outcome(resent) == "ok");
  CHECK_FALSE(resent->duplicate());
  CHECK(resent->message_id() != brief->message_id());
  CHECK(r.service.mailbox_head(bob) == 3);
  CHECK(r.service.events_after(bob, 2, 10).events.at(0).seq() == 3);
}

TEST_CASE("a mailbox of messages no longer served is read a slice at a time") {
  // Each skipped event may cost a message read: one call must not walk them all (a stream
  // resuming from 0 reads on an I/O thread).
  config::messages_section options;
  options.max_per_second = 100000;
  region r(options);
  constexpr std::size_t n = 4500;
  std::vector<std::optional<accepted_result>> brief(n);
  for (std::size_t i = 0; i < n; ++i)
    r.start(r.service.send(alice, text(bob, "b" + std::to_string(i), "brief", 1)), brief[i]);
  r.finish();
  std::int64_t last_expiry = 0;
  for (auto const& a : brief) {
    REQUIRE(outcome(*a) == "ok");
    last_expiry = std::max(last_expiry, (*a)->sent_at_ms() + 1000);
  }
  auto kept = r.sent(alice, bob, "kept", "stays");
  wait_until_after(last_expiry);
  auto first = r.service.events_after(bob, 0, 10);
  CHECK(first.events.empty());
  CHECK(first.last_seq == 4096);  // looked that far, and no further
  auto rest = r.service.events_after(bob, first.last_seq, 10);
  REQUIRE(rest.events.size() == 1);
  CHECK(rest.events[0].message().id() == kept);
  CHECK(rest.last_seq == n + 1);
}

TEST_CASE("a message to another region takes its text out of the outbox when it goes") {
  using namespace federation_lanes;
  lanes_home h;
  auto outboxed = [&](std::uint64_t after) {
    auto entry = h.store.outbox_peek("away", after, 1);
    petchat::federation::body body;
    REQUIRE((entry.size() == 1 && body.ParseFromString(entry[0].body)));
    return body;
  };
  // A disappearing message, and one deleted for everyone: neither text outlives its message.
  auto before = h.store.outbox_end("away");
  auto brief = h.home.send(alice, text("dan@away", "brief", "gone in a second", 1));
  REQUIRE(outcome(brief) == "ok");
  auto kept = h.home.sent(alice, "dan@away", "kept", "stays");
  auto unsaid = h.home.sent(alice, "dan@away", "unsaid", "taken back");
  CHECK(outboxed(before).message().body().text() == "gone in a second");
  REQUIRE(outcome(h.home.run(h.home.service.remove(alice, unsaid, true))) == "ok");
  wait_until_after(brief->sent_at_ms() + 1000);
  CHECK(h.home.run(h.home.service.sweep_expired()) == 1);
  auto gone = outboxed(before);
  CHECK(gone.message().id() == brief->message_id());  // its lane position stays
  CHECK_FALSE(gone.message().has_body());
  CHECK(gone.message().expires_at_ms() <= petchat::format::now_ms());
  CHECK(outboxed(before + 1).message().body().text() == "stays");
  auto taken = outboxed(before + 2);
  CHECK(taken.message().id() == unsaid);
  CHECK_FALSE(taken.message().has_body());
  CHECK(outboxed(before + 3).has_deleted());  // and the deletion itself, after it
  CHECK(kept != unsaid);
}

TEST_CASE("a send that breaks a rule is refused with its code and stores nothing") {
  config::messages_section limits;
  limits.max_text_bytes = 16;
  limits.max_per_second = 1;  // a burst of two
  region r(limits);
  auto refusal = [&](client::send s) { return outcome(r.send(alice, std::move(s))); };

  CHECK(refusal(text(bob, "", "hi")) == "missing_field:client_id");
  CHECK(refusal(text(bob, std::string(65, 'x'), "hi")) == "invalid_field:client_id");
  CHECK(refusal(text("", "c", "hi")) == "missing_field:to");
  CHECK(refusal(text(bob, "c", "")) == "missing_field:body");
  CHECK(refusal(text(bob, "c", std::string(17, 'x'))) == "body_too_large:body");
  CHECK(refusal(text(bob, "c", "\xff\xfe")) == "invalid_field:body");
  CHECK(refusal(text("Not A Name", "c", "hi")) == "invalid_field:to");
  CHECK(refusal(text("dave@home", "c", "hi")) == "user_not_found");
  CHECK(refusal(text("bob@elsewhere", "c", "hi")) == "user_not_found");  // a region not federated

  auto deep = text(bob, "c", "");
  auto* level = deep.mutable_body()->mutable_content();  // depth 1
  for (std::size_t depth = 1; depth <= petchat::messages::max_content_depth; ++depth)
    level = (*level->mutable_fields())["a"].mutable_struct_value();
  CHECK(refusal(deep) == "invalid_field:body");

  CHECK(r.service.mailbox_head(alice) == 0);
  CHECK(r.service.mailbox_head(bob) == 0);
  CHECK(r.heard.empty());

  // The rate limit: three sends at once, one more than the burst. They are all started
  // before any completes, so all three are checked within microseconds of each other.
  std::array<std::optional<accepted_result>, 3> burst;
  for (std::size_t i = 0; i < burst.size(); ++i)
    r.start(r.service.send(alice, text(bob, "b" + std::to_string(i), "hi")), burst[i]);
  r.finish();
  int accepted = 0;
  for (auto const& b : burst) {
    REQUIRE(b.has_value());
    if (b->ok()) ++accepted;
  }
  CHECK(accepted == 2);
  REQUIRE(outcome(*burst[2]) == "rate_limited");  // the last one started
  CHECK(burst[2]->error().retry_after_s == 1);
  CHECK(r.service.mailbox_head(bob) == 2);

  // A retry of an accepted send is answered with its acceptance even while the sender is
  // over the rate: the client must be able to learn that its message got through.
  auto retry = r.send(alice, text(bob, "b0", "hi"));
  REQUIRE(outcome(retry) == "ok");
  CHECK(retry->duplicate());
  CHECK(retry->message_id() == (*burst[0])->message_id());
  CHECK(r.service.mailbox_head(bob) == 2);
}

}  // namespace

TEST_CASE("a lane whose state went back waits for the origin's entries after it, or skips only to its floor") {
  using namespace federation_lanes;
  lanes_home h;
  auto lane = [&] { return h.lane(); };
  auto apply = [&](std::vector<federation::local_store::inbound> items) { return h.apply(std::move(items)); };
  std::uint64_t const epoch = 7;
  CHECK(apply({from_away(epoch, 0, 0, 1), from_away(epoch, 0, 0, 2), from_away(epoch, 0, 0, 3)}).empty());
  CHECK(lane() == 3);

  // The origin confirmed up to 8 (as this store's state was before it went back) and still
  // holds everything after 5: this region skips 4..5, no further, and its lane says 5.
  CHECK(apply({from_away(epoch, 8, 5, 9)}) == std::vector<std::string>{"out_of_order"});
  CHECK(lane() == 5);
  // The origin, told 5, sends again from there: applied in order.
  CHECK(apply({from_away(epoch, 5, 5, 6), from_away(epoch, 5, 5, 7), from_away(epoch, 5, 5, 8),
               from_away(epoch, 5, 5, 9)})
            .empty());
  CHECK(lane() == 9);

  // Behind the base but at or above the floor: nothing skipped, nothing applied.
  CHECK(apply({from_away(epoch, 12, 4, 13)}) == std::vector<std::string>{"out_of_order"});
  CHECK(lane() == 9);
  // An origin that says no floor (older than the rule): the lane skips to its base.
  CHECK(apply({from_away(epoch, 12, std::nullopt, 13)}).empty());
  CHECK(lane() == 13);
}

TEST_CASE("a durable body of a kind this version does not know takes its lane position and is refused") {
  using namespace federation_lanes;
  lanes_home h;
  auto lane = [&] { return h.lane(); };
  auto apply = [&](std::vector<federation::local_store::inbound> items) { return h.apply(std::move(items)); };
  std::uint64_t const epoch = 3;
  CHECK(apply({from_away(epoch, 0, 0, 1)}).empty());
  // A newer origin's kind arrives as a body with none of the kinds this version knows.
  auto unknown = from_away(epoch, 0, 0, 2);
  unknown.content->clear_deleted();
  unknown.refused = federation::reject_reason::malformed;  // as the envelope's checks say of it
  auto unflagged = from_away(epoch, 0, 0, 3);              // and if they did not
  unflagged.content->clear_deleted();
  CHECK(apply({unknown, unflagged, from_away(epoch, 0, 0, 4)}) == std::vector<std::string>{"malformed", "malformed"});
  CHECK(lane() == 4);  // the lane went on past them
  // Without a lane seq it is an ephemeral kind that came through the stream: no position.
  auto ephemeral = from_away(epoch, 0, 0, 5);
  ephemeral.content->set_lane_seq(0);
  CHECK(apply({ephemeral}) == std::vector<std::string>{"malformed"});
  CHECK(lane() == 4);
}

TEST_CASE("an epoch more than a day ahead of this region's clock is refused and takes no lane position") {
  using namespace federation_lanes;
  lanes_home h;
  auto epoch_at = [](std::int64_t ms) { return static_cast<std::uint64_t>(ms) << 16; };
  auto now = petchat::format::now_ms();
  CHECK(h.apply({from_away(epoch_at(now), 0, 0, 1)}).empty());
  CHECK(h.lane() == 1);
  // Signed with a leaked or retired key: it would hold the lane above every epoch to come.
  for (auto ahead : {epoch_at(now + 2LL * 24 * 3600 * 1000), ~std::uint64_t{0} - 1})
    CHECK(h.apply({from_away(ahead, 1, 1, 2)}) == std::vector<std::string>{"malformed"});
  CHECK(h.lane() == 1);
  // The origin's next bundle, in the epoch its clock makes, goes on.
  CHECK(h.apply({from_away(epoch_at(now), 0, 0, 2)}).empty());
  CHECK(h.lane() == 2);
}

namespace {

// dan@away's receipt for alice's message `id`, as away's lane brings it (seq `seq`).
petchat::federation::local_store::inbound receipt_from_away(std::string const& id, client::receipt_status status,
                                                            std::int64_t at_ms, std::uint64_t seq) {
  auto item = federation_lanes::from_away(5, 0, 0, seq);
  item.content->clear_deleted();
  auto& r = *item.content->mutable_receipt();
  r.set_message_id(id);
  r.set_conversation_id(message_service::conversation_of(alice, "dan@away"));
  r.set_by("dan@away");
  r.set_status(status);
  r.set_at_ms(at_ms);
  return item;
}

}  // namespace

TEST_CASE("a receipt from the recipient's region: UNDELIVERABLE after DELIVERED is not told") {
  using namespace federation_lanes;
  lanes_home h;
  auto m = h.home.sent(alice, "dan@away", "c1", "to away");
  auto now = petchat::format::now_ms();
  CHECK(h.apply({receipt_from_away(m, client::DELIVERED, now, 1), receipt_from_away(m, client::UNDELIVERABLE, now, 2)})
            .empty());
  auto told = h.home.service.events_after(alice, 1, 10);
  REQUIRE(told.events.size() == 1);
  CHECK(told.events[0].receipt().status() == client::DELIVERED);
}

TEST_CASE("a receipt from the recipient's region: a time out of range is moved into it") {
  using namespace federation_lanes;
  lanes_home h;
  auto before = petchat::format::now_ms();
  auto m = h.home.sent(alice, "dan@away", "c1", "to away");
  auto m2 = h.home.sent(alice, "dan@away", "c2", "to away again");
  // A day ahead, and no time at all ("0" would read as "not delivered").
  CHECK(h.apply({receipt_from_away(m, client::DELIVERED, before + 86400000, 1),
                 receipt_from_away(m2, client::DELIVERED, 0, 2)})
            .empty());
  auto after = petchat::format::now_ms();
  auto told = h.home.service.events_after(alice, 2, 10);
  REQUIRE(told.events.size() == 2);
  for (auto const& e : told.events) {
    CHECK(e.receipt().status() == client::DELIVERED);
    CHECK(e.receipt().at_ms() >= before);
    CHECK(e.receipt().at_ms() <= after);
  }
}

namespace {

// dan@away's message to alice, made by away `ms_from_now` ms from now (its id says that
// time and away), as away's lane brings it (seq `seq`).
petchat::federation::local_store::inbound message_from_away(std::int64_t ms_from_now, std::string const& text_body,
                                                            std::uint64_t seq) {
  namespace keys = petchat::messages::detail;
  auto item = federation_lanes::from_away(5, 0, 0, seq);
  item.content->clear_deleted();
  auto at = petchat::format::now_ms() + ms_from_now;
  std::string raw = keys::be64(static_cast<std::uint64_t>(at)).substr(2);
  auto hash = keys::region_hash("away");
  raw += static_cast<char>(hash >> 8);
  raw += static_cast<char>(hash & 0xff);
  raw += keys::be64(seq);
  auto& m = *item.content->mutable_message();
  m.set_id(petchat::format::base64url(raw));
  m.set_conversation_id(message_service::conversation_of(alice, "dan@away"));
  m.set_from("dan@away");
  m.set_to(alice);
  m.set_client_id("d" + std::to_string(seq));
  m.set_sent_at_ms(at);
  m.set_expires_at_ms(petchat::format::now_ms() + 3600000);
  m.mutable_body()->set_text(text_body);
  return item;
}

std::string last_of(region& r, std::string const& user) {
  auto page = r.service.conversations(user, 10, std::nullopt);
  REQUIRE(outcome(page) == "ok");
  REQUIRE(page->conversations.size() == 1);
  auto const& last = page->conversations[0].last_message;
  return last ? last->body().text() : "";
}

}  // namespace

TEST_CASE("a conversation's last message moves forward only, and never to a time well ahead") {
  using namespace federation_lanes;
  lanes_home h;
  h.home.sent(alice, "dan@away", "c1", "alice, now");
  // Sent by dan an hour ago, arriving now (a partition healed): not the last one.
  CHECK(h.apply({message_from_away(-3600000, "dan, an hour ago", 1)}).empty());
  CHECK(last_of(h.home, alice) == "alice, now");
  // An id a day ahead (a clock, or a region, that is wrong): refused, and its sender told
  // (UNDELIVERABLE, to away); it would otherwise stay the newest for a day in a client.
  auto told = h.store.outbox_end("away");
  CHECK(h.apply({message_from_away(86400000, "dan, from tomorrow", 2)}) == std::vector<std::string>{"malformed"});
  CHECK(last_of(h.home, alice) == "alice, now");
  REQUIRE(h.store.outbox_end("away") == told + 1);
  auto entry = h.store.outbox_peek("away", told, 1);
  petchat::federation::body receipt;
  REQUIRE((entry.size() == 1 && receipt.ParseFromString(entry[0].body)));
  CHECK(receipt.receipt().status() == client::UNDELIVERABLE);
  // A message of now is.
  wait_until_after(petchat::format::now_ms() + 2);
  CHECK(h.apply({message_from_away(0, "dan, now", 3)}).empty());
  CHECK(last_of(h.home, alice) == "dan, now");
}

TEST_CASE("another region's users start at most max_remote_contacts_per_hour conversations with a user here") {
  using namespace federation_lanes;
  config::messages_section o;
  o.max_remote_contacts_per_hour = 2;
  lanes_home h(o);
  // dan@away, erin@away and frank@away write to alice: the third conversation is one too
  // many this hour, and its sender is told (UNDELIVERABLE to away).
  std::vector<std::string> refused;
  for (auto [seq, from] : std::vector<std::pair<std::uint64_t, std::string>>{
           {1, "dan@away"}, {2, "erin@away"}, {3, "frank@away"}, {4, "dan@away"}}) {
    auto item = message_from_away(0, "hello from " + from, seq);
    auto& m = *item.content->mutable_message();
    m.set_from(from);
    m.set_conversation_id(message_service::conversation_of(alice, from));
    auto told = h.store.outbox_end("away");
    auto got = h.apply({item});
    refused.push_back(got.empty() ? "" : got.front());
    if (!got.empty()) {
      REQUIRE(h.store.outbox_end("away") == told + 1);
      auto entry = h.store.outbox_peek("away", told, 1);
      petchat::federation::body receipt;
      REQUIRE((entry.size() == 1 && receipt.ParseFromString(entry[0].body)));
      CHECK(receipt.receipt().status() == client::UNDELIVERABLE);
      CHECK(receipt.receipt().by() == alice);
    }
  }
  // dan's second message is in a conversation that exists: not counted, taken.
  CHECK(refused == std::vector<std::string>{"", "", "too_many_contacts", ""});
  auto page = h.home.service.conversations(alice, 50, std::nullopt);
  REQUIRE(page.ok());
  CHECK(page->conversations.size() == 2);
}

TEST_CASE("regions whose message ids would name them alike are found") {
  // Two names with the same 16-bit hash: found by trying (about 65,000 names at most).
  std::map<std::uint16_t, std::string> seen;
  std::pair<std::string, std::string> twins;
  for (int i = 0; twins.first.empty(); ++i) {
    auto name = "region" + std::to_string(i);
    auto [it, fresh] = seen.try_emplace(petchat::messages::detail::region_hash(name), name);
    if (!fresh) twins = {it->second, name};
  }
  CHECK(petchat::messages::region_hash_clashes({"europe", "america", "asia"}).empty());
  auto clashes = petchat::messages::region_hash_clashes({twins.first, "europe", twins.second});
  REQUIRE(clashes.size() == 1);
  CHECK(clashes[0] == twins);
}
