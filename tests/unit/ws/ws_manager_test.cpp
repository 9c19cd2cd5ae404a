// The WebSocket manager with recording streams in place of live connections: who gets
// mailbox news, presence and typing. The manager calls sinks synchronously from the caller's
// thread, so what a sink recorded is there as soon as the call returns.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "base/format/format.hpp"
#include "node/ws/ws.hpp"

namespace {

namespace client = petchat::client;
namespace errors = petchat::errors;
namespace ws = petchat::ws;
using petchat::ws::stream_sink;
using petchat::ws::ws_manager;

std::string const alice = "alice@home";
std::string const bob = "bob@home";
std::string const carol = "carol@home";
std::string const zoe = "zoe@away";  // a user of another region

// A live stream that records what the manager hands it.
class recording_stream final : public stream_sink {
 public:
  struct mailbox_news {
    std::uint64_t head;
    std::shared_ptr<ws::shared_event const> event;
  };
  std::vector<mailbox_news> mailbox;
  std::vector<client::server_frame> frames;

  void on_mailbox(std::uint64_t head, std::shared_ptr<ws::shared_event const> event) override {
    mailbox.push_back({head, std::move(event)});
  }
  void on_frame(client::server_frame frame) override { frames.push_back(std::move(frame)); }

  // The presence frames received, as "user:ONLINE" / "user:OFFLINE".
  std::vector<std::string> presence() const {
    std::vector<std::string> out;
    for (auto const& f : frames)
      if (f.has_presence())
        out.push_back(f.presence().user_id() + (f.presence().state() == client::ONLINE ? ":ONLINE" : ":OFFLINE"));
    return out;
  }
};

using strings = std::vector<std::string>;

// Who may see whose presence (what the message service's contacts() answers).
struct contact_book {
  std::map<std::string, std::vector<std::string>> contacts;
  auto lookup() {
    return [this](std::string const& user) {
      auto it = contacts.find(user);
      return it == contacts.end() ? std::vector<std::string>{} : it->second;
    };
  }
};

std::shared_ptr<recording_stream> attached(ws_manager& m, std::string const& user) {
  auto s = std::make_shared<recording_stream>();
  REQUIRE(m.attach(user, s).ok());
  return s;
}

TEST_CASE("streams attach and detach, at most max_streams_per_user per user") {
  contact_book book;
  ws_manager m(2, book.lookup());
  auto a1 = attached(m, alice);
  auto a2 = attached(m, alice);
  auto b1 = attached(m, bob);  // the limit is per user
  CHECK(m.streams() == 3);

  auto a3 = std::make_shared<recording_stream>();
  auto refused = m.attach(alice, a3);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == errors::code::too_many_streams);
  CHECK(std::string(errors::name(refused.error().code)) == "too_many_streams");
  CHECK(m.streams() == 3);

  m.detach(alice, a1.get());
  CHECK(m.streams() == 2);
  CHECK(m.attach(alice, a3).ok());

  // A stream that went away without detaching frees its place too.
  a2.reset();
  auto a4 = std::make_shared<recording_stream>();
  CHECK(m.attach(alice, a4).ok());

  m.detach(bob, b1.get());
  m.detach(bob, b1.get());  // twice: harmless
  m.detach(carol, b1.get());
  CHECK_FALSE(m.presence(bob).online);
}

TEST_CASE("a user connecting again and again is refused after a burst: each connect is a presence broadcast") {
  contact_book book;
  book.contacts[alice] = {bob};
  ws_manager m(2, book.lookup());
  auto b1 = attached(m, bob);
  CHECK(m.connect_burst() == 60);
  for (std::size_t i = 0; i < m.connect_burst(); ++i) {
    auto s = attached(m, alice);
    m.detach(alice, s.get());
  }
  auto presence_frames = b1->frames.size();
  auto refused = m.attach(alice, std::make_shared<recording_stream>());
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == errors::code::rate_limited);
  CHECK(refused.error().retry_after_s >= 1);
  CHECK_FALSE(m.presence(alice).online);
  CHECK(b1->frames.size() == presence_frames);                        // bob was not told anything
  CHECK(m.attach(carol, std::make_shared<recording_stream>()).ok());  // per user
}

TEST_CASE("typing notices: 10 at once per user, whatever their streams, then 5 a second") {
  contact_book book;
  ws_manager m(10, book.lookup());
  int taken = 0;
  for (int i = 0; i < 30; ++i) taken += m.take_typing(alice);
  CHECK(taken == 10);
  CHECK(m.take_typing(bob));  // per user
}

TEST_CASE("a shared event is encoded once per encoding, whichever streams ask and from which threads") {
  client::event plain;
  plain.set_seq(3);
  petchat::ws::shared_event event(plain);
  std::atomic<int> built{0};
  auto encode = [&](petchat::ws::shared_event const& e) {
    ++built;
    return "frame " + std::to_string(e.event().seq());
  };
  std::vector<std::shared_ptr<std::string const>> got(8);
  std::vector<std::thread> streams;
  for (std::size_t i = 0; i < got.size(); ++i) streams.emplace_back([&, i] { got[i] = event.frame(i % 2, encode); });
  for (auto& t : streams) t.join();
  CHECK(built == 2);  // one per encoding
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(*got[i] == "frame 3");
    CHECK(got[i] == got[i % 2]);  // the same bytes, not a copy per stream
  }
}

TEST_CASE("members' events of one group message encode its content once per encoding, each with its own seq") {
  client::message m;
  m.set_id("g1");
  auto content = std::make_shared<petchat::ws::shared_content const>(m);
  std::vector<std::unique_ptr<petchat::ws::shared_event>> members;
  for (std::uint64_t seq = 1; seq <= 6; ++seq)
    members.push_back(std::make_unique<petchat::ws::shared_event>(seq, content));
  std::atomic<int> parts{0};
  auto encode = [&](petchat::ws::shared_event const& e, std::size_t which) {
    REQUIRE(e.content() == content.get());
    auto const& part = e.content()->part(which, [&](client::message const& msg) {
      ++parts;
      return msg.id() + (which == 0 ? "/binary" : "/json");
    });
    return std::to_string(e.event().seq()) + ":" + part;
  };
  std::vector<std::string> got(members.size() * 2);
  std::vector<std::thread> streams;
  for (std::size_t i = 0; i < got.size(); ++i)
    streams.emplace_back([&, i] {
      std::size_t which = i % 2;
      got[i] = *members[i / 2]->frame(which, [&](petchat::ws::shared_event const& e) { return encode(e, which); });
    });
  for (auto& t : streams) t.join();
  CHECK(parts == 2);  // the content once per encoding, for all six members
  for (std::size_t i = 0; i < got.size(); ++i)
    CHECK(got[i] == std::to_string(i / 2 + 1) + ":g1" + (i % 2 == 0 ? "/binary" : "/json"));
  CHECK_FALSE(members[0]->event().has_message());  // the event itself holds only its seq
}

TEST_CASE("mailbox news reaches every stream of its user and no one else") {
  contact_book book;
  ws_manager m(10, book.lookup());
  auto a1 = attached(m, alice);
  auto a2 = attached(m, alice);
  auto b1 = attached(m, bob);

  client::event plain;
  plain.set_seq(7);
  plain.mutable_message()->set_id("m7");
  auto event = std::make_shared<petchat::ws::shared_event const>(plain);
  m.notify_mailbox(alice, 7, event);
  for (auto const& s : {a1, a2}) {
    REQUIRE(s->mailbox.size() == 1);
    CHECK(s->mailbox[0].head == 7);
    CHECK(s->mailbox[0].event == event);  // the same event, not a copy per stream
  }
  CHECK(b1->mailbox.empty());

  // Without the event: the streams read it from the store themselves.
  m.notify_mailbox(alice, 8, nullptr);
  REQUIRE(a1->mailbox.size() == 2);
  CHECK(a1->mailbox[1].head == 8);
  CHECK_FALSE(a1->mailbox[1].event);

  m.detach(alice, a1.get());
  m.notify_mailbox(alice, 9, nullptr);
  CHECK(a1->mailbox.size() == 2);
  CHECK(a2->mailbox.size() == 3);
  m.notify_mailbox(carol, 1, nullptr);  // nobody connected: nothing to do
  CHECK(b1->mailbox.empty());
}

TEST_CASE("several events of one user reach each of their streams in one call, in order, shared") {
  contact_book book;
  ws_manager m(10, book.lookup());
  auto a1 = attached(m, alice);
  auto a2 = attached(m, alice);
  auto b1 = attached(m, bob);
  auto events = std::make_shared<petchat::ws::mailbox_events>();
  for (std::uint64_t seq = 4; seq <= 6; ++seq) {
    client::event plain;
    plain.set_seq(seq);
    plain.mutable_message()->set_id("m" + std::to_string(seq));
    events->emplace_back(seq, std::make_shared<petchat::ws::shared_event const>(plain));
  }
  m.notify_mailbox_events(alice, events);
  for (auto const& s : {a1, a2}) {
    REQUIRE(s->mailbox.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(s->mailbox[i].head == 4 + i);
      CHECK(s->mailbox[i].event == (*events)[i].second);
    }
  }
  CHECK(b1->mailbox.empty());
}

TEST_CASE("contacts are told when a user's first stream attaches and the last detaches") {
  contact_book book;
  book.contacts = {{alice, {bob}}, {bob, {alice}}};
  ws_manager m(10, book.lookup());
  auto b1 = attached(m, bob);
  auto c1 = attached(m, carol);  // not a contact of alice's

  auto a1 = attached(m, alice);
  CHECK(b1->presence() == strings{"alice@home:ONLINE"});
  CHECK(m.presence(alice).online);
  auto a2 = attached(m, alice);
  m.detach(alice, a1.get());
  CHECK(b1->presence().size() == 1);  // alice is still online on a2

  auto before = petchat::format::now_ms();
  m.detach(alice, a2.get());
  CHECK(b1->presence() == strings{"alice@home:ONLINE", "alice@home:OFFLINE"});
  auto last_seen = b1->frames.back().presence().last_seen_ms();
  CHECK(last_seen >= before);
  CHECK(last_seen <= petchat::format::now_ms());
  auto p = m.presence(alice);
  CHECK_FALSE(p.online);
  CHECK(p.last_seen_ms == last_seen);
  CHECK(c1->frames.empty());

  // A device that connects later is told its contacts' presence.
  auto frames = m.presence_of_contacts(bob);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].presence().user_id() == alice);
  CHECK(frames[0].presence().state() == client::OFFLINE);
  CHECK(frames[0].presence().last_seen_ms() == last_seen);
}

TEST_CASE("typing is relayed to the target's streams only while the target is online") {
  contact_book book;
  ws_manager m(10, book.lookup());
  std::vector<std::tuple<std::string, std::string, std::string, bool>> sent;  // through federation
  petchat::ws::remote_hooks hooks;
  hooks.local_region = "home";
  hooks.typing_out = [&sent](std::string const& from, std::string const& to, std::string const& conv, bool active) {
    sent.emplace_back(from, to, conv, active);
  };
  m.set_remote_hooks(hooks);
  auto a1 = attached(m, alice);
  m.relay_typing(alice, bob, "conv", true);  // bob is offline: dropped, never stored

  auto b1 = attached(m, bob);
  auto b2 = attached(m, bob);
  CHECK(b1->frames.empty());
  m.relay_typing(alice, bob, "conv", true);
  for (auto const& s : {b1, b2}) {
    REQUIRE(s->frames.size() == 1);
    REQUIRE(s->frames[0].has_typing());
    CHECK(s->frames[0].typing().from() == alice);
    CHECK(s->frames[0].typing().conversation_id() == "conv");
    CHECK(s->frames[0].typing().active());
  }
  CHECK(a1->frames.empty());

  CHECK(sent.empty());

  // To a user of another region it goes through the federation hook, not to local streams.
  m.relay_typing(alice, zoe, "conv2", false);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0] == std::tuple<std::string, std::string, std::string, bool>{alice, zoe, "conv2", false});
  CHECK(b1->frames.size() == 1);
}

TEST_CASE("remote presence is believed until its report runs out, then contacts see the user offline") {
  contact_book book;
  book.contacts = {{zoe, {alice}}, {alice, {zoe}}};
  ws_manager m(10, book.lookup());
  std::vector<std::tuple<std::string, std::string, bool>> told;  // region, user, online
  petchat::ws::remote_hooks hooks;
  hooks.local_region = "home";
  hooks.presence_out = [&told](std::string const& region, std::string const& user, bool online, std::int64_t) {
    told.emplace_back(region, user, online);
  };
  m.set_remote_hooks(hooks);

  // alice's own presence goes to the regions of her contacts.
  auto a1 = attached(m, alice);
  REQUIRE(told.size() == 1);
  CHECK(told[0] == std::tuple<std::string, std::string, bool>{"away", alice, true});
  CHECK(m.online_with_contacts_in("away") == strings{alice});
  CHECK(m.online_with_contacts_in("elsewhere").empty());

  auto now = petchat::format::now_ms();
  m.remote_presence(zoe, true, 0, now + 60000);
  CHECK(a1->presence() == strings{"zoe@away:ONLINE"});
  CHECK(m.presence(zoe).online);
  m.remote_presence(zoe, true, 0, now + 60000);  // a refresh that changes nothing is not pushed
  CHECK(a1->frames.size() == 1);

  // The latest report's validity ended (as if its region went silent): the sweep turns zoe
  // offline, as of the end of the report, once.
  std::int64_t ran_out_at = now - 1;
  m.remote_presence(zoe, true, 0, ran_out_at);
  CHECK(a1->frames.size() == 1);
  CHECK_FALSE(m.presence(zoe).online);
  m.expire_remote_presence();
  CHECK(a1->presence() == strings{"zoe@away:ONLINE", "zoe@away:OFFLINE"});
  CHECK(a1->frames.back().presence().last_seen_ms() == ran_out_at);
  CHECK(m.presence(zoe).last_seen_ms == ran_out_at);
  m.expire_remote_presence();
  CHECK(a1->frames.size() == 2);

  // A full report from zoe's region that no longer names her: offline at once.
  m.remote_presence(zoe, true, 0, now + 60000);
  CHECK(a1->frames.size() == 3);
  m.remote_presence_full("away", {}, now + 5);
  CHECK(a1->presence().back() == "zoe@away:OFFLINE");
  CHECK(a1->frames.back().presence().last_seen_ms() == now + 5);

  // Another region cannot speak for this region's users.
  m.remote_presence(bob, true, 0, now + 60000);
  CHECK_FALSE(m.presence(bob).online);

  // A full report read before a change, and come after it, does not undo it: zoe came
  // online at t, told at once; the report read at t - 1 s (without her) arrives next.
  std::int64_t t = now + 10'000;
  m.remote_presence(zoe, true, 0, now + 60000, t);
  CHECK(m.presence(zoe).online);
  m.remote_presence_full("away", {}, now + 6, t - 1000);
  CHECK(m.presence(zoe).online);
  CHECK(a1->presence().back() == "zoe@away:ONLINE");
  m.remote_presence(zoe, false, t - 500, t - 500, t - 500);  // an older change, come late
  CHECK(m.presence(zoe).online);
  m.remote_presence(zoe, false, t + 1000, t + 1000, t + 1000);  // a newer one counts
  CHECK_FALSE(m.presence(zoe).online);
  // A report more than a minute older: the origin's clock was set back; taken.
  m.remote_presence(zoe, true, 0, now + 60000, t - 120'000);
  CHECK(m.presence(zoe).online);

  m.detach(alice, a1.get());
  REQUIRE(told.size() == 2);
  CHECK(told[1] == std::tuple<std::string, std::string, bool>{"away", alice, false});
}

}  // namespace

TEST_CASE("a region's presence changes are told at most 20,000 at once; the rest later, none lost") {
  contact_book book;
  ws_manager m(10, book.lookup());
  m.set_remote_hooks({"home", {}, {}});
  for (int i = 0; i < 25000; ++i) book.contacts["user" + std::to_string(i) + "@away"] = {alice};
  auto a = attached(m, alice);
  auto frames_before = a->frames.size();
  auto until = petchat::format::now_ms() + 60000;
  auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 25000; ++i) m.remote_presence("user" + std::to_string(i) + "@away", true, 0, until);
  auto took = std::chrono::steady_clock::now() - started;
  auto told = a->frames.size() - frames_before;
  CHECK(told >= 20000);
  // 1,000 more a second: all of them only if the loop took 5 s (a sanitizer build may).
  if (took < std::chrono::seconds(4)) CHECK(told < 25000);
  CHECK(m.presence("user24999@away").online);  // the state all the same
  // The rest are told by the sweep as the rate allows (1,000 a second): a few seconds.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (a->frames.size() - frames_before < 25000 && std::chrono::steady_clock::now() < deadline) {
    m.expire_remote_presence();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(a->frames.size() - frames_before == 25000);
}

namespace {

// The manager of region "home", with no hooks to other regions.
void serve_region_home(ws_manager& m) {
  petchat::ws::remote_hooks hooks;
  hooks.local_region = "home";
  m.set_remote_hooks(hooks);
}

}  // namespace

TEST_CASE("one region's users may take at most half of the remote presence table") {
  contact_book book;
  ws_manager m(10, book.lookup());
  serve_region_home(m);
  auto until = petchat::format::now_ms() + 60000;
  for (int i = 0; i < 100000; ++i) m.remote_presence("user" + std::to_string(i) + "@flood", true, 0, until);
  CHECK(m.presence("user99999@flood").online);
  m.remote_presence("user100000@flood", true, 0, until);
  CHECK_FALSE(m.presence("user100000@flood").online);
  m.remote_presence(zoe, true, 0, until);  // another region's users still get in
  CHECK(m.presence(zoe).online);
}

TEST_CASE("a region whose share filled with users since gone offline still gets new ones in") {
  contact_book book;
  ws_manager m(10, book.lookup());
  serve_region_home(m);
  auto until = petchat::format::now_ms() + 60000;
  for (int i = 0; i < 100000; ++i) m.remote_presence("user" + std::to_string(i) + "@busy", true, 0, until);
  for (int i = 0; i < 100000; ++i) m.remote_presence("user" + std::to_string(i) + "@busy", false, 1, until);
  // Months of users who came and went: the share is full of offline ones, which are forgotten
  // to let a newcomer in (the table as a whole is far from full).
  m.remote_presence("newcomer@busy", true, 0, until);
  CHECK(m.presence("newcomer@busy").online);
}
