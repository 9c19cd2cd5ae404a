// The message service's unit tests' fixtures: one region "home" as petchat-node wires it,
// against real stores in a temporary data dir, driven as the gateway drives it (coroutines
// on an io_context, each call run until its durable write has completed); and that region
// federated with "away", applying bodies of away's lane.
#pragma once

#include <doctest/doctest.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/format/format.hpp"
#include "federation/federation.hpp"
#include "node/identity/identity.hpp"
#include "node/messages/messages.hpp"
#include "node/users/users.hpp"
#include "tests/unit/support.hpp"

namespace {

namespace asio = boost::asio;
namespace client = petchat::client;
namespace config = petchat::config;
namespace errors = petchat::errors;
namespace ws = petchat::ws;
using petchat::messages::history_page;
using petchat::messages::message_service;
using petchat::testing::temp_dir;
using accepted_result = errors::result<client::accepted>;

std::string const alice = "alice@home";
std::string const bob = "bob@home";
std::string const carol = "carol@home";

template <typename T>
asio::awaitable<void> await_into(asio::awaitable<T> op, std::optional<T>& out) {
  out.emplace(co_await std::move(op));
}

// "ok", or the failure's stable code and the field at fault: "missing_field:to".
template <typename T>
inline std::string outcome(errors::result<T> const& r) {
  if (r.ok()) return "ok";
  std::string s = errors::name(r.error().code);
  return r.error().field.empty() ? s : s + ":" + r.error().field;
}

inline client::send text(std::string const& to, std::string const& client_id, std::string const& body,
                         std::uint32_t ttl_s = 0) {
  client::send s;
  s.set_client_id(client_id);
  s.set_to(to);
  s.mutable_body()->set_text(body);
  s.set_ttl_s(ttl_s);
  return s;
}

inline std::vector<std::string> texts(history_page const& page) {
  std::vector<std::string> out;
  for (auto const& m : page.messages) out.push_back(m.body().text());
  return out;
}

// Expiry is measured by the wall clock: waits until it has passed `ms`.
inline void wait_until_after(std::int64_t ms) {
  while (petchat::format::now_ms() <= ms) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

inline config::users_section cheap_passwords() {
  config::users_section u;
  u.password_hash_ops = 1;
  u.password_hash_memory_kib = 8;
  return u;
}

// One region "home" as petchat-node wires it (node/app/main.cpp), with alice, bob and carol
// registered and the mailbox listener's news recorded.
struct region {
  struct news {
    std::string user;
    std::uint64_t head;
    std::shared_ptr<client::event const> event;
  };

  temp_dir dir{"messages"};
  asio::thread_pool cpu{1};
  asio::io_context io;
  std::exception_ptr error;
  petchat::identity::region_identity identity{};
  petchat::users::user_service users;
  std::vector<news> heard;  // what the listener was told, in order (it runs on `io`, this thread)
  struct recording_listener final : ws::mailbox_listener {
    std::vector<news>& out;
    explicit recording_listener(std::vector<news>& o) : out(o) {}
    void notify_mailbox(std::string const& user, std::uint64_t head,
                        std::shared_ptr<ws::shared_event const> event) override {
      // The event as a stream sends it: a message's content is shared by its events.
      std::shared_ptr<client::event const> plain;
      if (event && event->content()) {
        auto whole = std::make_shared<client::event>(event->event());
        *whole->mutable_message() = event->content()->message();
        plain = std::move(whole);
      } else if (event) {
        plain = std::shared_ptr<client::event const>(event, &event->event());
      }
      out.push_back({user, head, std::move(plain)});
    }
    void presence_shared(std::string const&, std::string const&) override {}
  } recorder{heard};
  message_service service;

  explicit region(config::messages_section const& options = {})
      : users(cheap_passwords(), "home", config::store_section{}, dir.path, identity, cpu),
        service(options, "home", dir.path, users) {
    service.set_listener(recorder);
    for (char const* name : {"alice", "bob", "carol"})
      REQUIRE(run(users.register_user(name, "correct horse battery", std::nullopt, "", true, "127.0.0.1")).ok());
  }
  // The pool's thread may still be inside its post of a completion to `io` when the
  // awaiting coroutine has already finished: it must be done before `io` goes.
  ~region() { cpu.join(); }

  template <typename T>
  void start(asio::awaitable<T> op, std::optional<T>& out) {
    asio::co_spawn(io, await_into(std::move(op), out), [this](std::exception_ptr e) {
      if (e) error = e;
    });
  }
  // Runs everything started until it has completed.
  void finish() {
    io.restart();
    io.run();
    if (error) std::rethrow_exception(std::exchange(error, nullptr));
  }
  template <typename T>
  T run(asio::awaitable<T> op) {
    std::optional<T> out;
    start(std::move(op), out);
    finish();
    REQUIRE(out.has_value());
    return std::move(*out);
  }

  accepted_result send(std::string const& from, client::send s) { return run(service.send(from, std::move(s))); }
  std::string sent(std::string const& from, std::string const& to, std::string const& client_id,
                   std::string const& body) {
    auto a = send(from, text(to, client_id, body));
    REQUIRE(outcome(a) == "ok");
    return a->message_id();
  }
};

namespace federation_lanes {

namespace federation = petchat::federation;

inline federation::options with_away() {
  federation::options o;
  o.regions = {{"away", {federation::public_key{}}, "", ""}};
  return o;
}

// A durable body of away's lane to home: a deletion of a message home never had, which
// applies without effect but takes its lane position.
inline federation::local_store::inbound from_away(std::uint64_t epoch, std::uint64_t base,
                                                  std::optional<std::uint64_t> floor, std::uint64_t seq) {
  federation::body b;
  b.set_origin("away");
  b.set_destination("home");
  b.set_lane_seq(seq);
  b.mutable_deleted()->set_message_id("never-here");
  b.mutable_deleted()->set_by("dan@away");
  return {seq, epoch, base, floor, std::move(b), std::nullopt, "away"};
}

// A region "home" federated with "away": its lane from away, and applying bodies to it.
struct lanes_home {
  explicit lanes_home(config::messages_section const& options = {}) : home(options) {}
  region home;
  federation::options opt = with_away();
  federation::directory dir{"home", federation::public_key{}, opt};
  federation::local_store& store = home.service.enable_federation(dir, [] {});

  std::uint64_t lane() { return store.inbound_lanes()["away"].seq; }
  std::vector<std::string> apply(std::vector<federation::local_store::inbound> items) {
    std::vector<std::string> out;
    for (auto r : store.apply(std::move(items))) out.push_back(federation::to_string(r));
    return out;
  }
};

}  // namespace federation_lanes

}  // namespace
