// The store's upkeep under load it must not stall on: a store opened as a restored backup
// (its heads jumped ahead: salvage.cpp), whose acknowledgements pass the jump without a
// write per 1,024 seqs of it; and expiry sweeps, whose writes are bounded by their work.
#include "node/messages/detail/keys.hpp"
#include "node/messages/detail/lanes.hpp"
#include "tests/unit/messages/region.hpp"

namespace {

struct quiet final : ws::mailbox_listener {
  void notify_mailbox(std::string const&, std::uint64_t, std::shared_ptr<ws::shared_event const>) override {}
  void presence_shared(std::string const&, std::string const&) override {}
};

// A data dir whose message store is opened, closed and opened again (as after a restore),
// with alice and bob registered.
struct reopened {
  temp_dir dir{"reopened"};
  asio::thread_pool cpu{1};
  asio::io_context io;
  std::exception_ptr error;
  petchat::identity::region_identity identity{};
  petchat::users::user_service users{cheap_passwords(), "home", config::store_section{}, dir.path, identity, cpu};
  quiet heard;
  config::messages_section options;

  reopened() {
    for (char const* name : {"alice", "bob"})
      REQUIRE(run(users.register_user(name, "correct horse battery", std::nullopt, "", true, "127.0.0.1")).ok());
  }
  ~reopened() { cpu.join(); }
  std::unique_ptr<message_service> open(bool restored = false, std::int64_t current_at_ms = 0) {
    auto s = std::make_unique<message_service>(options, "home", dir.path, users, true, restored, current_at_ms);
    s->set_listener(heard);
    return s;
  }
  template <typename T>
  T run(asio::awaitable<T> op) {
    std::optional<T> out;
    asio::co_spawn(io, await_into(std::move(op), out), [&](std::exception_ptr e) {
      if (e) error = e;
    });
    io.restart();
    io.run();
    if (error) std::rethrow_exception(std::exchange(error, nullptr));
    REQUIRE(out.has_value());
    return std::move(*out);
  }
};

}  // namespace

TEST_CASE("after restoring a day-old backup, an acknowledgement passes the heads' jump in one write") {
  reopened store;
  {
    auto before = store.open();
    REQUIRE(outcome(store.run(before->send(alice, text(bob, "c1", "before the backup")))) == "ok");
    REQUIRE(outcome(store.run(before->ack(bob, "phone", 1))) == "ok");
    REQUIRE(outcome(store.run(before->send(alice, text(bob, "c2", "not acknowledged before")))) == "ok");
  }
  // Opened as a backup made a day ago: every head jumps by about 5.5e9 seqs.
  auto after = store.open(true, petchat::format::now_ms() - 86'400'000);
  // A device acknowledging its mailbox's head as the welcome gave it, with nothing after the
  // jump: one write too.
  auto head = after->mailbox_head(alice);
  CHECK(head > (std::uint64_t(1) << 32));
  auto before_ack = after->commits();
  CHECK(outcome(store.run(after->ack(alice, "laptop", head))) == "ok");
  CHECK(after->commits() - before_ack <= 2);  // its events before the jump, then the jump
  auto sent = store.run(after->send(alice, text(bob, "c3", "after the restore")));
  REQUIRE(outcome(sent) == "ok");
  auto events = after->events_after(bob, 1, 10);
  REQUIRE(events.events.size() == 2);
  auto newest = events.events.back().seq();
  CHECK(newest > (std::uint64_t(1) << 32));
  auto commits = after->commits();
  auto walked = after->ack_walked_events();
  CHECK(outcome(store.run(after->ack(bob, "phone", newest))) == "ok");
  CHECK(after->commits() - commits <= 2);  // not ~5 million
  CHECK(after->ack_walked_events() - walked < 4096);
  CHECK(after->acked(bob, "phone") == newest);
  // Both messages after the mark got their DELIVERED receipt.
  std::set<std::string> delivered;
  for (auto const& e : after->events_after(alice, 0, 100).events)
    if (e.has_receipt() && e.receipt().status() == client::DELIVERED) delivered.insert(e.receipt().message_id());
  CHECK(delivered.size() == 3);
  CHECK(delivered.count(sent->message_id()) == 1);
}

TEST_CASE("an expiry sweep's write is bounded by the keys it erases; the rest goes at the next") {
  region r;
  petchat::messages::group_spec spec;
  spec.title = "brief";
  spec.members = {bob, carol};
  auto made = r.run(r.service.create_group(alice, spec));
  REQUIRE(outcome(made) == "ok");
  auto group = made->conversation.id;
  std::int64_t last_expiry = 0;
  for (int i = 0; i < 10; ++i) {
    client::send s;
    s.set_client_id("g" + std::to_string(i));
    s.set_conversation_id(group);
    s.mutable_body()->set_text("gone soon");
    s.set_ttl_s(1);
    auto sent = r.send(alice, std::move(s));
    REQUIRE(outcome(sent) == "ok");
    last_expiry = sent->sent_at_ms() + 1000;
  }
  wait_until_after(last_expiry);
  // Each group message counts 1 + 2 per recipient (2 here): a budget of 10 takes two.
  auto first = r.run(r.service.sweep_expired(10000, 10));
  CHECK(first >= 1);
  CHECK(first < 10);
  std::size_t total = first;
  for (int sweeps = 0; sweeps < 20 && total < 10; ++sweeps) total += r.run(r.service.sweep_expired(10000, 10));
  CHECK(total == 10);
  CHECK(r.run(r.service.sweep_expired()) == 0);
  auto page = r.service.history(alice, group, {});
  REQUIRE(outcome(page) == "ok");
  CHECK(page->messages.empty());
}

TEST_CASE("a clock behind the newest stored message does not date new messages before it") {
  namespace keys = petchat::messages::detail;
  using petchat::store::cf;
  reopened store;
  store.open().reset();  // the store's files, empty
  // A message of this region dated ahead of this clock (the clock was set back, or a board
  // without a battery-backed clock booted before NTP set it). Only 3 s ahead: the process's
  // ids stay after it, so later tests' messages are dated up to 3 s ahead too (this test is
  // the file's last, and the binary's: files run in name order).
  auto ahead = petchat::format::now_ms() + 3000;
  {
    petchat::store::rocks_db db(petchat::store::rocks_options{.dir = store.dir.path / "messages"});
    auto hash = keys::region_hash("home");
    auto id = keys::be64(std::uint64_t(ahead)).substr(2) + char(hash >> 8) + char(hash & 0xff) + keys::be64(7);
    REQUIRE(petchat::messages::service_detail::write_blocking(db, [&](petchat::store::rocks_batch& b) {
              b.put(cf::messages, id, "");
              return true;
            }) == petchat::store::write_outcome::committed);
  }
  auto service = store.open();
  auto sent = store.run(service->send(alice, text(bob, "c1", "after the clock went back")));
  REQUIRE(outcome(sent) == "ok");
  CHECK(sent->sent_at_ms() > ahead);
  CHECK(sent->sent_at_ms() < ahead + 60'000);  // right after it, not an hour on
}
