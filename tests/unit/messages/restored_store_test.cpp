// A message store opened as a restored backup (its heads jumped ahead: salvage.cpp):
// acknowledgements pass the jump without a write per 1,024 seqs of it.
#include "tests/unit/messages/region.hpp"

namespace {

struct recorder final : ws::mailbox_listener {
  void notify_mailbox(std::string const&, std::uint64_t, std::shared_ptr<ws::shared_event const>) override {}
  void presence_shared(std::string const&, std::string const&) override {}
};

}  // namespace

TEST_CASE("after restoring a day-old backup, an acknowledgement passes the heads' jump in one write") {
  temp_dir dir{"restored"};
  asio::thread_pool cpu{1};
  asio::io_context io;
  std::exception_ptr error;
  petchat::identity::region_identity identity{};
  petchat::users::user_service users(cheap_passwords(), "home", config::store_section{}, dir.path, identity, cpu);
  auto run = [&]<typename T>(asio::awaitable<T> op) {
    std::optional<T> out;
    asio::co_spawn(io, await_into(std::move(op), out), [&](std::exception_ptr e) {
      if (e) error = e;
    });
    io.restart();
    io.run();
    if (error) std::rethrow_exception(std::exchange(error, nullptr));
    REQUIRE(out.has_value());
    return std::move(*out);
  };
  for (char const* name : {"alice", "bob"})
    REQUIRE(run(users.register_user(name, "correct horse battery", std::nullopt, "", true, "127.0.0.1")).ok());
  recorder heard;
  config::messages_section options;
  {
    message_service before(options, "home", dir.path, users);
    before.set_listener(heard);
    REQUIRE(outcome(run(before.send(alice, text(bob, "c1", "before the backup")))) == "ok");
    REQUIRE(outcome(run(before.ack(bob, "phone", 1))) == "ok");
    REQUIRE(outcome(run(before.send(alice, text(bob, "c2", "not acknowledged before")))) == "ok");
  }
  // Opened as a backup made a day ago: every head jumps by about 5.5e9 seqs.
  message_service after(options, "home", dir.path, users, true, true, petchat::format::now_ms() - 86'400'000);
  after.set_listener(heard);
  auto sent = run(after.send(alice, text(bob, "c3", "after the restore")));
  REQUIRE(outcome(sent) == "ok");
  auto events = after.events_after(bob, 1, 10);
  REQUIRE(events.events.size() == 2);
  auto newest = events.events.back().seq();
  CHECK(newest > (std::uint64_t(1) << 32));
  auto commits = after.commits();
  auto walked = after.ack_walked_events();
  CHECK(outcome(run(after.ack(bob, "phone", newest))) == "ok");
  CHECK(after.commits() - commits <= 2);  // not ~5 million
  CHECK(after.ack_walked_events() - walked < 4096);
  CHECK(after.acked(bob, "phone") == newest);
  // Both messages after the mark got their DELIVERED receipt.
  std::set<std::string> delivered;
  for (auto const& e : after.events_after(alice, 0, 100).events)
    if (e.has_receipt() && e.receipt().status() == client::DELIVERED) delivered.insert(e.receipt().message_id());
  CHECK(delivered.size() == 3);
  CHECK(delivered.count(sent->message_id()) == 1);
}
