// A group homed in another region ("away"), as the region "home" applies what away sends:
// group messages stamped with the group's version at their sender's region, parked while
// home's replica is behind that version, and a removed member's late messages
// (docs/FEDERATION.md, "Groups across regions").
#include "node/messages/detail/conversations.hpp"
#include "node/messages/detail/keys.hpp"
#include "tests/unit/messages/region.hpp"

namespace {

using namespace federation_lanes;
namespace keys = petchat::messages::detail;

std::string const conv = "gTESTGROUP0000000000000001";
std::string const dan = "dan@away";
std::string const erin = "erin@away";

// What away sends, one body after another on its lane to home.
struct away_lane {
  lanes_home h;
  std::uint64_t seq = 0;

  federation::local_store::inbound next(federation::body body) {
    auto item = from_away(1, 0, 0, ++seq);
    body.set_origin("away");
    body.set_destination("home");
    body.set_lane_seq(seq);
    *item.content = std::move(body);
    return item;
  }
  // The group at `version` after `kind` (about `users`), its members `members`.
  federation::local_store::inbound state(std::uint64_t version, client::change_kind kind,
                                         std::vector<std::string> const& members, std::vector<std::string> users) {
    federation::body b;
    auto& gs = *b.mutable_group_state();
    gs.set_conversation_id(conv);
    gs.set_home_region("away");
    for (auto const& m : members) {
      gs.add_members(m);
      gs.add_roles(m == dan ? client::OWNER : client::MEMBER);
    }
    gs.set_title("away's group");
    gs.set_version(version);
    gs.set_created_at_ms(1);
    auto& ch = *gs.add_changes();
    ch.set_conversation_id(conv);
    ch.set_version(version);
    ch.set_kind(kind);
    ch.set_by(dan);
    ch.set_at_ms(petchat::format::now_ms());
    for (auto& u : users) ch.add_users(std::move(u));
    return next(std::move(b));
  }
  // A message from `from`, accepted at away while its replica was at `stamp`; its id in `id`.
  federation::local_store::inbound message(std::string const& from, std::uint64_t stamp, std::string const& text,
                                           std::string* id = nullptr) {
    federation::body b;
    auto& m = *b.mutable_message();
    m.set_id(petchat::format::base64url(keys::new_message_id(keys::region_hash("away"))));
    m.set_conversation_id(conv);
    m.set_from(from);
    m.set_client_id(text);
    m.mutable_body()->set_text(text);
    m.set_sent_at_ms(petchat::format::now_ms());
    m.set_expires_at_ms(m.sent_at_ms() + 3600 * 1000);
    b.set_group_version(stamp);
    if (id) *id = m.id();
    return next(std::move(b));
  }
  federation::local_store::inbound deletion(std::string const& id, std::string const& by) {
    federation::body b;
    b.mutable_deleted()->set_message_id(id);
    b.mutable_deleted()->set_conversation_id(conv);
    b.mutable_deleted()->set_by(by);
    return next(std::move(b));
  }
  std::vector<std::string> apply(std::vector<federation::local_store::inbound> items) {
    return h.apply(std::move(items));
  }

  // What `user`'s mailbox holds of the group: "change N" and message texts, in order.
  std::vector<std::string> seen(std::string const& user) {
    std::vector<std::string> out;
    for (auto const& e : h.home.service.events_after(user, 0, 2000).events) {
      if (e.has_conversation_change() && e.conversation_change().conversation_id() == conv)
        out.push_back("change " + std::to_string(e.conversation_change().version()));
      if (e.has_message() && e.message().conversation_id() == conv) out.push_back(e.message().body().text());
    }
    return out;
  }
};

using strings = std::vector<std::string>;

TEST_CASE("a group message that comes before the change it followed waits for it, then reaches the members of then") {
  away_lane a;
  // Stamped 2: dan's region had made bob and alice members by then; home knows nothing yet.
  CHECK(a.apply({a.message(dan, 2, "hello both")}).empty());
  CHECK(a.seen(alice).empty());
  CHECK(a.seen(bob).empty());
  // Version 1 (bob only): not there yet.
  CHECK(a.apply({a.state(1, client::CREATED, {dan, bob}, {dan, bob})}).empty());
  CHECK(a.seen(bob) == strings{"change 1"});
  // Version 2 adds alice: the message comes out, after the change, to both.
  CHECK(a.apply({a.state(2, client::MEMBERS_ADDED, {dan, bob, alice}, {alice})}).empty());
  CHECK(a.seen(alice) == strings{"change 2", "hello both"});
  CHECK(a.seen(bob) == strings{"change 1", "change 2", "hello both"});

  // A message and the change it waits for in one batch (one write): in order.
  CHECK(a.apply({a.message(dan, 3, "after carol joined"),
                 a.state(3, client::MEMBERS_ADDED, {dan, bob, alice, carol}, {carol})})
            .empty());
  CHECK(a.seen(carol) == strings{"change 3", "after carol joined"});
  CHECK(a.seen(alice) == strings{"change 2", "hello both", "change 3", "after carol joined"});
}

TEST_CASE("a parked message its sender deletes never comes out") {
  away_lane a;
  std::string id;
  CHECK(a.apply({a.message(dan, 1, "regretted", &id), a.message(dan, 1, "kept")}).empty());
  CHECK(a.apply({a.deletion(id, "frank@away")}).empty());  // not frank's to delete: it stays
  CHECK(a.apply({a.deletion(id, dan)}).empty());
  CHECK(a.apply({a.state(1, client::CREATED, {dan, alice}, {dan, alice})}).empty());
  CHECK(a.seen(alice) == strings{"change 1", "kept"});
}

TEST_CASE("a parked message deleted before its group came here leaves nothing that judges the group's later ones") {
  away_lane a;
  std::string id;
  CHECK(a.apply({a.message(dan, 5, "never seen", &id)}).empty());  // parked: no copy of the group here
  CHECK(a.apply({a.deletion(id, dan)}).empty());
  CHECK(a.apply({a.state(1, client::CREATED, {dan, alice}, {dan, alice})}).empty());
  // Stamped 2: waits for version 2 (the stamp 5 noted while it was parked once made it
  // look like an origin gone back, and it came out at once, before carol's joining).
  CHECK(a.apply({a.message(dan, 2, "after carol joined")}).empty());
  CHECK(a.seen(alice) == strings{"change 1"});
  CHECK(a.apply({a.state(2, client::MEMBERS_ADDED, {dan, alice, carol}, {carol})}).empty());
  CHECK(a.seen(alice) == strings{"change 1", "change 2", "after carol joined"});
}

TEST_CASE("a deletion from another region tells the members what is known here, nothing else it carried") {
  away_lane a;
  CHECK(a.apply({a.state(1, client::CREATED, {dan, alice}, {dan, alice})}).empty());
  std::string id;
  CHECK(a.apply({a.message(dan, 1, "regretted", &id)}).empty());
  auto d = a.deletion(id, dan);
  auto& deleted = *d.content->mutable_deleted();
  deleted.set_conversation_id("gSOMEOTHERGROUP00000000001");  // not the message's
  deleted.set_at_ms(1);
  deleted.GetReflection()->MutableUnknownFields(&deleted)->AddLengthDelimited(999, std::string(100000, 'x'));
  CHECK(a.apply({std::move(d)}).empty());
  auto events = a.h.home.service.events_after(alice, 0, 10).events;
  REQUIRE(events.size() == 2);  // the change and the deletion (the message's event is passed over)
  REQUIRE(events[1].has_deleted());
  auto const& told = events[1].deleted();
  CHECK(told.message_id() == id);
  CHECK(told.conversation_id() == conv);
  CHECK(told.by() == dan);
  CHECK(told.at_ms() > 1);  // a time that could be: not before the message was sent
  CHECK(told.ByteSizeLong() < 200);
}

TEST_CASE("a home cannot pass a user's contact, or the user, off as the one who added them") {
  away_lane a;
  petchat::users::profile_update only_contacts;
  only_contacts.group_adds_contacts_only = true;
  REQUIRE(a.h.home.run(a.h.home.users.update_profile("alice", only_contacts)));
  a.h.home.sent(alice, bob, "c1", "hi bob");  // alice wrote to bob, not to anyone of away
  for (auto const& [id, adder] : {std::pair{"gBYALICE00000000000000001", alice}, {"gBYBOB0000000000000000001", bob}}) {
    CAPTURE(adder);
    auto st = a.state(1, client::CREATED, {dan, alice}, {dan, alice});
    st.content->mutable_group_state()->set_conversation_id(id);
    st.content->mutable_group_state()->mutable_changes(0)->set_conversation_id(id);
    st.content->mutable_group_state()->mutable_changes(0)->set_by(adder);
    CHECK(a.apply({std::move(st)}).empty());
    CHECK_FALSE(a.h.home.service.is_member(alice, id));  // left out: home is asked to remove her
  }
  // Added by bob while he is a member here (his add went from here through home): believed.
  CHECK(a.apply({a.state(2, client::MEMBERS_ADDED, {dan, bob}, {bob})}).empty());
  auto st = a.state(3, client::MEMBERS_ADDED, {dan, bob, alice}, {alice});
  st.content->mutable_group_state()->mutable_changes(0)->set_by(bob);
  CHECK(a.apply({std::move(st)}).empty());
  CHECK(a.h.home.service.is_member(alice, conv));
}

TEST_CASE("stamps that run far ahead of the replica, or on a conversation that is not a group, are refused") {
  away_lane a;
  CHECK(a.apply({a.state(1, client::CREATED, {dan, alice}, {dan, alice})}).empty());
  // (a home restored from a backup jumps 2^20 and 1 a millisecond: less than 2^40 ahead waits)
  CHECK(a.apply({a.message(dan, (std::uint64_t(1) << 40) + 2, "far ahead")}) == strings{"foreign_user"});
  auto direct = a.message(dan, 1, "not a group");
  direct.content->mutable_message()->set_conversation_id("dNOTAGROUP");
  CHECK(a.apply({direct}) == strings{"foreign_user"});
  CHECK(a.seen(alice) == strings{"change 1"});
}

TEST_CASE("an origin whose stamps went back (restored from a backup) is judged by the replica: members only") {
  away_lane a;
  CHECK(a.apply({a.state(1, client::CREATED, {dan, erin, alice}, {dan, erin, alice})}).empty());
  CHECK(a.apply({a.message(dan, 1, "one")}).empty());
  CHECK(a.apply({a.message(dan, 3, "three")}).empty());  // parked: home is at 1
  // Lower than a stamp away already used: away went back. Dan is a member: taken at once
  // (away accepted it; nothing accepted is lost), not parked behind "three".
  CHECK(a.apply({a.message(dan, 2, "two")}).empty());
  CHECK(a.apply({a.state(2, client::MEMBER_REMOVED, {dan, alice}, {erin})}).empty());
  CHECK(a.apply({a.state(3, client::DETAILS_CHANGED, {dan, alice}, {})}).empty());
  // Erin was removed at 2: a stamp of 1 that went back gives her no late window.
  CHECK(a.apply({a.message(erin, 1, "erin, from the restored away")}) == strings{"foreign_user"});
  CHECK(a.seen(alice) == strings{"change 1", "one", "two", "change 2", "change 3", "three"});
}

TEST_CASE("a group state no honest home sends is refused, and changes nothing") {
  away_lane a;
  CHECK(a.apply({a.state(1, client::CREATED, {dan, alice}, {dan, alice})}).empty());
  auto others = a.state(2, client::DETAILS_CHANGED, {dan, alice}, {});
  others.content->mutable_group_state()->mutable_changes(0)->set_conversation_id("gANOTHERGROUP00000000001");
  auto too_many = a.state(2, client::DETAILS_CHANGED, {dan, alice}, {});
  for (int i = 0; i < 16; ++i)
    *too_many.content->mutable_group_state()->add_changes() = too_many.content->group_state().changes(0);
  auto old_change = a.state(3, client::DETAILS_CHANGED, {dan, alice}, {});
  old_change.content->mutable_group_state()->mutable_changes(0)->set_version(1);
  auto ahead = a.state(2, client::DETAILS_CHANGED, {dan, alice}, {});
  ahead.content->mutable_group_state()->mutable_changes(0)->set_version(3);
  auto twice = a.state(2, client::DETAILS_CHANGED, {dan, alice, alice}, {});
  // One change naming more users than one add can (each local member's event copies them).
  std::vector<std::string> crowd{dan, alice};
  for (int i = 0; i < 1100; ++i) crowd.push_back("user" + std::to_string(i) + "@away");
  auto big_change = a.state(2, client::MEMBERS_ADDED, crowd, {crowd.begin() + 1, crowd.end()});
  for (auto* bad : {&others, &too_many, &old_change, &ahead, &twice, &big_change})
    CHECK(a.apply({*bad}) == strings{"malformed"});
  CHECK(a.apply({a.state(2, client::DETAILS_CHANGED, {dan, alice}, {})}).empty());
  CHECK(a.seen(alice) == strings{"change 1", "change 2"});
}

TEST_CASE("a removed member's messages sent before their region applied the removal are taken, later ones not") {
  away_lane a;
  CHECK(a.apply({a.state(1, client::CREATED, {dan, erin, alice}, {dan, erin, alice})}).empty());
  CHECK(a.apply({a.state(2, client::MEMBER_REMOVED, {dan, alice}, {erin})}).empty());
  // Erin's message accepted by away at version 1, reaching home after the removal: taken.
  CHECK(a.apply({a.message(erin, 1, "erin, before")}).empty());
  // Stamped 2: away had applied the removal, so it must not have accepted it.
  CHECK(a.apply({a.message(erin, 2, "erin, after")}) == strings{"foreign_user"});
  // After a message stamped 2, away's replica is past the removal: a stamp of 1 is stale.
  CHECK(a.apply({a.message(dan, 2, "dan"), a.message(erin, 1, "erin, replayed")}) == strings{"foreign_user"});
  CHECK(a.seen(alice) == strings{"change 1", "change 2", "erin, before", "dan"});
}

TEST_CASE("a removed member's late message that claims a time well after the removal is refused") {
  away_lane a;
  CHECK(a.apply({a.state(1, client::CREATED, {dan, erin, alice}, {dan, erin, alice})}).empty());
  CHECK(a.apply({a.state(2, client::MEMBER_REMOVED, {dan, alice}, {erin})}).empty());
  auto late = a.message(erin, 1, "erin, ten minutes after");
  late.content->mutable_message()->set_sent_at_ms(petchat::format::now_ms() + 10 * 60 * 1000);
  // Ten minutes after a removal made now is ahead of this region's clock too: refused as
  // such before the group's rules are asked (a time after the removal but not ahead of the
  // clock needs a removal more than 5 minutes old, which this test cannot wait for).
  CHECK(a.apply({late}) == strings{"malformed"});
  CHECK(a.seen(alice) == strings{"change 1", "change 2"});
}

TEST_CASE("a home's state names full user ids; nothing is queued for a region the directory does not list") {
  away_lane a;
  // A bare name reads as this region's user but routes nowhere: refused.
  CHECK(a.apply({a.state(1, client::CREATED, {dan, alice, "carol"}, {dan, alice, "carol"})}) == strings{"malformed"});
  CHECK(a.apply({a.state(1, client::CREATED, {dan, alice, "xavier@nowhere"}, {dan, alice, "xavier@nowhere"})}).empty());
  auto before = a.h.store.outbox_end("away");
  client::send s;
  s.set_client_id("to the group");
  s.set_conversation_id(conv);
  s.mutable_body()->set_text("hello");
  REQUIRE(outcome(a.h.home.send(alice, s)) == "ok");
  CHECK(a.h.store.outbox_end("away") == before + 1);  // dan's region gets it
  CHECK(a.h.store.outbox_end("nowhere") == 0);        // a made-up region gets nothing, for ever
}

TEST_CASE("no replica of a group none of this region's names in it can join; home is asked to remove them") {
  away_lane a;
  auto visible = [&](std::uint64_t version, std::vector<std::string> const& members, std::vector<std::string> users) {
    auto st = a.state(version, version == 1 ? client::CREATED : client::MEMBERS_ADDED, members, std::move(users));
    st.content->mutable_group_state()->set_history_visible(true);  // a member who comes sees what was said
    return st;
  };
  // ghost@home has no account: the state is taken (and home asked), but no roster is kept.
  CHECK(a.apply({visible(1, {dan, "ghost@home"}, {dan, "ghost@home"})}).empty());
  auto asked = a.h.store.outbox_peek("away", 0, 10);
  REQUIRE(asked.size() == 1);
  federation::body request;
  REQUIRE(request.ParseFromString(asked[0].body));
  CHECK(request.group_request().request() == federation::group_request::NO_ACCOUNT);
  CHECK(request.group_request().users(0) == "ghost@home");
  // Its messages up to that version have no one here: dropped, not stored (a replica kept
  // them, and so showed them to whoever joined later: stored rosters, for a region's
  // made-up names, were what a hostile home could fill this store with).
  CHECK(a.apply({a.message(dan, 1, "to nobody here")}).empty());
  CHECK(a.apply({a.message(dan, 2, "after alice joined")}).empty());  // parked: home is at 1 here
  // Home adds alice: now there is a member here, and the replica begins.
  CHECK(a.apply({visible(2, {dan, "ghost@home", alice}, {alice})}).empty());
  CHECK(a.seen(alice) == strings{"change 2", "after alice joined"});
  auto page = a.h.home.service.history(alice, conv, {});
  REQUIRE(page.ok());
  CHECK(texts(*page) == strings{"after alice joined"});
}

TEST_CASE("one home makes at most 100,000 stubs here; a stub that becomes a replica frees its place") {
  away_lane a;
  // A first state of group `id` naming only a name of this region with no account.
  auto first_state = [&](std::string const& id, std::uint64_t version, std::vector<std::string> const& members) {
    auto st = a.state(version, version == 1 ? client::CREATED : client::MEMBERS_ADDED, members, {members.back()});
    st.content->mutable_group_state()->set_conversation_id(id);
    st.content->mutable_group_state()->mutable_changes(0)->set_conversation_id(id);
    return st;
  };
  int made = 0;
  auto stub = [&] { return first_state("gSTUB" + std::to_string(made++), 1, {dan, "ghost@home"}); };
  while (made < 100000) {  // the documented limit
    std::vector<federation::local_store::inbound> batch;
    for (int i = 0; i < 10000; ++i) batch.push_back(stub());
    REQUIRE(a.apply(std::move(batch)).empty());
  }
  CHECK(a.apply({stub()}) == strings{"foreign_user"});  // one more group id away made up
  // alice is added to the first: a replica now, no longer a stub, and away may make one more.
  CHECK(a.apply({first_state("gSTUB0", 2, {dan, "ghost@home", alice})}).empty());
  auto told = a.h.home.service.events_after(alice, 0, 10).events;
  REQUIRE(told.size() == 1);
  CHECK(told[0].conversation_change().conversation_id() == "gSTUB0");
  CHECK(a.apply({stub()}).empty());
  CHECK(a.apply({stub()}) == strings{"foreign_user"});
}

TEST_CASE("a group that ended here and is joined again goes on from its positions") {
  away_lane a;
  CHECK(a.apply({a.state(1, client::CREATED, {dan, alice}, {dan, alice})}).empty());
  CHECK(a.apply({a.message(dan, 1, "before the end")}).empty());
  CHECK(a.seen(alice) == strings{"change 1", "before the end"});
  CHECK(a.apply({a.state(2, client::MEMBER_REMOVED, {}, {dan, alice})}).empty());  // everyone went
  // Joined again, its history hidden: bob's period starts now, not at the group's first
  // message (a replica begun anew numbered from 1 again, and he saw "before the end").
  CHECK(a.apply({a.state(3, client::MEMBERS_ADDED, {dan, bob}, {dan, bob})}).empty());
  auto history = [&a] {
    strings out;
    auto page = a.h.home.service.history(bob, conv, {});
    REQUIRE(page);
    for (auto const& m : page->messages) out.push_back(m.body().text());
    return out;
  };
  CHECK(history().empty());
  CHECK(a.apply({a.message(dan, 3, "after")}).empty());
  CHECK(history() == strings{"after"});
  auto v = a.h.home.service.conversation(bob, conv);
  REQUIRE(v);
  CHECK(v->unread == 1);
}

TEST_CASE("at most 1,000 messages of a group wait for its version") {
  away_lane a;
  std::vector<federation::local_store::inbound> waiting;
  for (int i = 0; i < 1000; ++i)  // the documented limit
    waiting.push_back(a.message(dan, 1, "m" + std::to_string(i)));
  CHECK(a.apply(std::move(waiting)).empty());
  CHECK(a.apply({a.message(dan, 1, "one too many")}) == strings{"foreign_user"});
  CHECK(a.apply({a.state(1, client::CREATED, {dan, alice}, {dan, alice})}).empty());
  auto seen = a.seen(alice);
  REQUIRE(seen.size() == 1001);
  CHECK(seen.front() == "change 1");
  CHECK(seen[1] == "m0");
  CHECK(seen.back() == "m999");
}

TEST_CASE("a message without a stamp (from a region of an older version) is taken only from a member") {
  away_lane a;
  CHECK(a.apply({a.message(dan, 0, "before the group")}) == strings{"foreign_user"});  // not parked
  CHECK(a.apply({a.state(1, client::CREATED, {dan, erin, alice}, {dan, erin, alice})}).empty());
  CHECK(a.apply({a.state(2, client::MEMBER_REMOVED, {dan, alice}, {erin})}).empty());
  CHECK(a.apply({a.message(dan, 0, "dan"), a.message(erin, 0, "erin, removed")}) == strings{"foreign_user"});
  CHECK(a.seen(alice) == strings{"change 1", "change 2", "dan"});
}

}  // namespace

TEST_CASE("one origin's messages wait here at most 2,500 in the groups of one home, whatever the others hold") {
  away_lane a;
  // A home ("elsewhere") made groups naming members here and in away; away's members'
  // messages in them wait here for states that never come.
  auto in_group = [&](std::string const& id, int i) {
    auto msg = a.message(dan, 1, "m" + std::to_string(i));
    msg.content->mutable_message()->set_conversation_id(id);
    return msg;
  };
  std::vector<federation::local_store::inbound> waiting;
  for (int g = 0; g < 3; ++g) {
    auto id = keys::new_group_id("elsewhere");
    for (int i = 0; i < (g < 2 ? 1000 : 500); ++i) waiting.push_back(in_group(id, g * 1000 + i));
  }
  CHECK(a.apply(std::move(waiting)).empty());
  CHECK(a.apply({in_group(keys::new_group_id("elsewhere"), -1)}) == strings{"foreign_user"});
  // The groups of another home still have their places.
  CHECK(a.apply({in_group(keys::new_group_id("third"), -2)}).empty());
}

TEST_CASE("a group whose id names another home is not taken from a region that claims it") {
  away_lane a;
  auto with_id = [&](std::string const& id) {
    auto s = a.state(1, client::CREATED, {dan, alice}, {dan, alice});
    s.content->mutable_group_state()->set_conversation_id(id);
    s.content->mutable_group_state()->mutable_changes(0)->set_conversation_id(id);
    return s;
  };
  auto groups_of_alice = [&] {
    std::vector<std::string> out;
    for (auto const& e : a.h.home.service.events_after(alice, 0, 2000).events)
      if (e.has_conversation_change()) out.push_back(e.conversation_change().conversation_id());
    return out;
  };
  auto elsewhere = keys::new_group_id("elsewhere");
  CHECK(elsewhere.size() == 28);
  CHECK(a.apply({with_id(elsewhere)}) == strings{"foreign_user"});
  CHECK(groups_of_alice().empty());
  auto homed_away = keys::new_group_id("away");
  CHECK(a.apply({with_id(homed_away)}).empty());
  CHECK(groups_of_alice() == strings{homed_away});
}

TEST_CASE("a home's refusal reaches only a user here who is or was a member of the group") {
  away_lane a;
  CHECK(a.apply({a.state(1, client::CREATED, {dan, alice}, {dan, alice})}).empty());
  auto refusal = [&](std::string const& by) {
    federation::body b;
    auto& told = *b.mutable_group_request_refused();
    told.set_by(by);
    told.mutable_refusal()->set_conversation_id(conv);
    told.mutable_refusal()->set_request_id("r0000000000000001");
    told.mutable_refusal()->set_code("forbidden_role");
    told.mutable_refusal()->set_message("refused");
    return a.next(std::move(b));
  };
  auto refusals_of = [&](std::string const& user) {
    int n = 0;
    for (auto const& e : a.h.home.service.events_after(user, 0, 2000).events) n += e.has_request_refused();
    return n;
  };
  CHECK(a.apply({refusal(bob)}) == strings{"foreign_user"});  // never in the group
  CHECK(refusals_of(bob) == 0);
  CHECK(a.apply({refusal(alice)}).empty());
  CHECK(refusals_of(alice) == 1);
}

TEST_CASE("a first state of a group with no member here is not kept") {
  away_lane a;
  CHECK(a.apply({a.state(1, client::CREATED, {dan, erin}, {dan, erin})}) == strings{"foreign_user"});
  // Nothing was stored: the group's first state naming alice is its first here.
  CHECK(a.apply({a.state(2, client::MEMBERS_ADDED, {dan, erin, alice}, {alice})}).empty());
  CHECK(a.seen(alice) == strings{"change 2"});
}

TEST_CASE("a replica's no-account list is searched sorted, and one from before it was sorted end to end") {
  using petchat::messages::service_detail::has_no_account;
  petchat::records::conversation_record c;
  for (int i = 99; i >= 0; --i) c.add_no_account("name" + std::to_string(i) + "@home");  // not in order
  CHECK(has_no_account(c, "name0@home"));
  CHECK(has_no_account(c, "name57@home"));
  CHECK_FALSE(has_no_account(c, "alice@home"));
  std::sort(c.mutable_no_account()->begin(), c.mutable_no_account()->end());
  c.set_no_account_sorted(true);
  CHECK(has_no_account(c, "name0@home"));
  CHECK(has_no_account(c, "name99@home"));
  CHECK_FALSE(has_no_account(c, "alice@home"));
}
