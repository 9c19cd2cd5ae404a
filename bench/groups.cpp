// The groups workload: one sender and a group of M members (the sender included), every one
// on a live stream that reads and acknowledges what it gets, as a client does. The sender
// keeps W sends to the group in flight; the node appends each message to every member's
// mailbox and pushes it to their streams. Measured after a warm-up: messages accepted,
// deliveries (group messages the other members actually read), the node's CPU per delivery
// and per message, the tool's own CPU per delivery. Then the sender stops and the members
// are given time to catch up: the report says whether each had every message.
#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/lean_stream.hpp"
#include "bench/process.hpp"
#include "bench/workload.hpp"
#include "client/client.hpp"

namespace petchat::bench {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using clock_type = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Measuring starts this long after the first send: the first sends pay for cold caches, and
// a large group's streams are still getting each other's presence from connecting.
constexpr auto warm_up = std::chrono::seconds(1);

// What the members' streams and the run share. The atomics are written on the members'
// strands and read by the run on any thread.
struct group_state {
  std::string conversation_id;  // set before any stream opens, read-only after
  std::string payload;
  int window = 8;
  std::atomic<bool> sending{false};  // the sender may send (every member has the group)
  std::atomic<bool> stop{false};     // the sender sends no more (set on its strand)
  std::atomic<bool> closing{false};  // the run closes the streams: their ends are expected
  std::atomic<int> ready{0};         // streams that brought the group's CREATED change
  std::atomic<int> dropped{0};       // streams the node ended before the run did
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> accepted{0};
  // Group messages read by the members other than the sender: one per member and message.
  std::atomic<std::uint64_t> deliveries{0};
  // Acks those members sent (one per read that brought new events: how a client batches
  // them decides how many the node writes).
  std::atomic<std::uint64_t> acks{0};
  // With --read: the members also send a read of the newest group message each read
  // brought (a client showing the conversation does), and how many they sent.
  bool read = false;
  std::atomic<std::uint64_t> reads{0};
};

// One member's stream. The sender's is a client library connection; all of it but
// `received` lives on its strand, where its reader, its one writer (sends and acks) and
// its closing run. The other members' are lean streams (bench/lean_stream.hpp), read and
// acknowledged in their handlers, which never run at once.
struct member_state {
  explicit member_state(asio::any_io_executor ex) : wake(ex) {}
  std::unique_ptr<sdk::connection> stream;  // the sender's
  std::shared_ptr<lean_stream> lean;        // every other member's
  bool sender = false;
  std::uint64_t highest_seq = 0;  // the newest event read
  std::uint64_t acked_seq = 0;    // the newest event acknowledged (or being)
  int in_flight = 0;              // sender: sends not yet accepted
  std::uint64_t counter = 0;      // sender: the next client id
  bool writer_waiting = false;    // the writer sleeps on `wake`
  bool closed = false;
  asio::steady_timer wake;
  std::atomic<std::uint64_t> received{0};  // group messages read (not counted for the sender)
  std::string newest_message;              // the newest group message read, and the newest
  std::string marked_read;                 // marked as read (--read; in the handlers only)
};

struct group_result {
  double seconds = 0;             // the measured interval, after the warm-up
  std::uint64_t messages = 0;     // sends accepted in it
  std::uint64_t deliveries = 0;   // group messages read in it by the members but the sender
  std::uint64_t acks = 0;         // acks sent in it by the members but the sender
  std::uint64_t reads = 0;        // reads sent in it by them (--read)
  std::uint64_t cpu_us = 0;       // the node's, over it
  std::uint64_t tool_cpu_us = 0;  // this process's, over it
  // At the end, once the sender stopped and the members had time to catch up:
  std::uint64_t messages_total = 0;    // every send accepted in the run
  std::uint64_t deliveries_total = 0;  // every group message the members but the sender read
  std::uint64_t sends_unanswered = 0;  // sent, never accepted
  int members_behind = 0;              // members (the sender excepted) missing messages
  std::uint64_t messages_missing = 0;  // over those members
  int streams_dropped = 0;
  double catch_up_s = 0;  // from the sender's stop to the end of the wait
  bool caught_up = false;
};

void wake_writer(member_state& m) {
  if (m.writer_waiting) m.wake.cancel();
}

// The stream's only writer. It alternates one send (the sender, while the window has room)
// and one cumulative ack of the newest event read: whatever arrives while a write is under
// way is acknowledged by the next ack, so acks batch by themselves under load.
asio::awaitable<void> member_writer(std::shared_ptr<member_state> m, std::shared_ptr<group_state> g) {
  while (!m->closed) {
    bool wrote = false;
    if (m->sender && g->sending && !g->stop && m->in_flight < g->window) {
      client::client_frame f;
      f.mutable_send()->set_client_id("g" + std::to_string(m->counter++));
      f.mutable_send()->set_conversation_id(g->conversation_id);
      f.mutable_send()->mutable_body()->set_text(g->payload);
      m->in_flight++;
      g->sent++;
      co_await m->stream->write(f);
      wrote = true;
    }
    if (m->highest_seq > m->acked_seq) {
      client::client_frame f;
      f.mutable_ack()->set_seq(m->highest_seq);
      m->acked_seq = m->highest_seq;
      co_await m->stream->write(f);
      wrote = true;
    }
    if (wrote) continue;
    m->writer_waiting = true;
    m->wake.expires_at(clock_type::time_point::max());
    co_await m->wake.async_wait(use_tuple);
    m->writer_waiting = false;
  }
}

void on_event(member_state& m, group_state& g, client::event const& e) {
  m.highest_seq = std::max(m.highest_seq, e.seq());
  if (e.has_conversation_change() && e.conversation_change().conversation_id() == g.conversation_id &&
      e.conversation_change().kind() == client::CREATED)
    g.ready++;
  // Counted when read, never when sent: a delivery is a message a member has.
  if (!m.sender && e.has_message() && e.message().conversation_id() == g.conversation_id) {
    m.received++;
    g.deliveries++;
    if (g.read) m.newest_message = e.message().id();
  }
}

asio::awaitable<void> member_reader(std::shared_ptr<member_state> m, std::shared_ptr<group_state> g) {
  try {
    for (;;) {
      auto f = co_await m->stream->read();
      if (f.has_event()) {
        on_event(*m, *g, f.event());
      } else if (f.has_accepted()) {
        m->in_flight--;
        g->accepted++;
      } else if (f.has_error()) {
        throw std::runtime_error("node refused a frame: " + f.error().code() + ": " + f.error().message());
      } else {
        continue;  // presence, pong: nothing to acknowledge or to send
      }
      wake_writer(*m);
    }
  } catch (boost::system::system_error const&) {
    // The run closes every stream at its end; a stream the node ended before is reported.
    if (!g->closing) g->dropped++;
  }
}

// A member other than the sender: every event read is counted, and what one read brought
// is acknowledged at once by one cumulative ack.
void start_member(std::shared_ptr<member_state> m, std::shared_ptr<group_state> g) {
  lean_stream::handlers h;
  h.frame = [m, g](client::server_frame const& f) {
    if (f.has_event()) on_event(*m, *g, f.event());
    if (f.has_error()) {
      std::fprintf(stderr, "petchat-bench: the node refused a frame: %s: %s\n", f.error().code().c_str(),
                   f.error().message().c_str());
      m->lean->close();
    }
  };
  h.read_done = [m, g](lean_stream& stream) {
    if (stream.ack_read()) g->acks++;
    if (!g->read || m->newest_message == m->marked_read) return;
    client::client_frame f;
    f.mutable_read()->set_conversation_id(g->conversation_id);
    f.mutable_read()->set_message_id(m->newest_message);
    stream.send(f);
    m->marked_read = m->newest_message;
    g->reads++;
  };
  // A stream the node ended before the run did is reported (as a reader's is).
  h.ended = [g](std::string const& why) {
    if (g->closing) return;
    if (!why.empty()) std::fprintf(stderr, "petchat-bench: a member's stream ended: %s\n", why.c_str());
    g->dropped++;
  };
  m->lean->start(std::move(h));
}

// Run on the sender's strand: once it returns, no send is being decided, so `sent` is final.
asio::awaitable<void> stop_sending(std::shared_ptr<member_state> sender, std::shared_ptr<group_state> g) {
  g->stop = true;
  wake_writer(*sender);
  co_return;
}

asio::awaitable<void> sleep_for(clock_type::duration d) {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex, d);
  co_await timer.async_wait(use_tuple);
}

// Polls `done` every 10 ms for at most `limit`; whether it came true.
template <typename Done>
asio::awaitable<bool> wait_until(Done done, clock_type::duration limit) {
  auto deadline = clock_type::now() + limit;
  while (!done()) {
    if (clock_type::now() >= deadline) co_return false;
    co_await sleep_for(std::chrono::milliseconds(10));
  }
  co_return true;
}

// Registers and logs in `count` users, one after another (the node hashes their passwords
// with the cheap settings of start_node). The first is the sender.
asio::awaitable<std::vector<sdk::session_tokens>> register_members(sdk::endpoint ep, int count) {
  std::vector<sdk::session_tokens> users;
  for (int i = 0; i < count; ++i) {
    auto t = co_await sdk::register_and_login(ep, "member" + std::to_string(i), "bench-pass", "bench");
    users.push_back(std::move(t));
  }
  co_return users;
}

// The first user creates the group with all the others (docs/PROTOCOL.md, "POST
// /v1/conversations"); returns its id. A member the node refused is a failed run.
asio::awaitable<std::string> create_group(sdk::endpoint ep, std::vector<sdk::session_tokens> users) {
  json::array others;
  for (std::size_t i = 1; i < users.size(); ++i) others.push_back(json::value(users[i].user_id));
  json::object body;
  body["title"] = "bench";
  body["members"] = std::move(others);
  auto r = co_await sdk::http_call(ep, "POST", "/v1/conversations", json::serialize(body), users[0].access_token);
  if (r.status != 201) throw std::runtime_error("creating the group: " + std::to_string(r.status) + " " + r.body);
  auto v = json::parse(r.body).as_object();
  if (!v.at("failed").as_array().empty())
    throw std::runtime_error("the node refused members of the group: " + json::serialize(v.at("failed")));
  co_return std::string(v.at("conversation").as_object().at("id").as_string());
}

// Opens every member's stream and starts reading it as soon as it is open (the node pushes
// the backlog and presence at once): the sender's on a strand of its own with its reader
// and its writer, the others' as lean streams.
asio::awaitable<std::vector<std::shared_ptr<member_state>>> open_members(options o, sdk::endpoint ep,
                                                                         std::vector<sdk::session_tokens> users,
                                                                         std::shared_ptr<group_state> g) {
  auto ex = co_await asio::this_coro::executor;
  std::vector<std::shared_ptr<member_state>> members;
  for (std::size_t i = 0; i < users.size(); ++i) {
    auto strand = asio::make_strand(ex);
    auto m = std::make_shared<member_state>(strand);
    m->sender = i == 0;
    if (!m->sender) {
      m->lean = co_await lean_stream::open(ep, users[i].access_token, o.encoding);
      start_member(m, g);
      members.push_back(m);
      continue;
    }
    m->stream = co_await asio::co_spawn(
        strand, sdk::connection::open(ep, users[i].access_token, std::nullopt, o.encoding), asio::use_awaitable);
    asio::co_spawn(strand, guarded(member_reader(m, g)), asio::detached);
    asio::co_spawn(strand, guarded(member_writer(m, g)), asio::detached);
    members.push_back(m);
  }
  co_return members;
}

struct reading {
  clock_type::time_point at;
  std::uint64_t accepted = 0, deliveries = 0, acks = 0, reads = 0, cpu_us = 0, tool_cpu_us = 0;
};

reading read_now(group_state const& g, pid_t node) {
  return {clock_type::now(), g.accepted.load(), g.deliveries.load(), g.acks.load(),
          g.reads.load(),    cpu_micros(node),  own_cpu_micros()};
}

// Stops the sender and waits, at most max(10 s, duration), until every send is answered and
// every member has every accepted message; records how far behind they are then.
asio::awaitable<void> catch_up(options o, std::shared_ptr<group_state> g,
                               std::vector<std::shared_ptr<member_state>> members, group_result* out) {
  auto start = clock_type::now();
  co_await asio::co_spawn(members.front()->wake.get_executor(), stop_sending(members.front(), g), asio::use_awaitable);
  auto count_lag = [&] {
    std::uint64_t total = g->accepted.load();
    out->members_behind = 0;
    out->messages_missing = 0;
    for (auto const& m : members) {
      std::uint64_t got = m->received.load();
      if (m->sender || got >= total) continue;
      out->members_behind++;
      out->messages_missing += total - got;
    }
    return out->members_behind == 0;
  };
  auto limit = std::chrono::duration<double>(std::max(10.0, o.duration_s));
  // A dropped stream never catches up: no use waiting for it.
  co_await wait_until([&] { return (g->accepted.load() == g->sent.load() && count_lag()) || g->dropped.load() > 0; },
                      std::chrono::duration_cast<clock_type::duration>(limit));
  out->catch_up_s = std::chrono::duration<double>(clock_type::now() - start).count();
  out->messages_total = g->accepted.load();
  out->sends_unanswered = g->sent.load() - out->messages_total;
  bool all_there = count_lag();
  out->deliveries_total = g->deliveries.load();
  out->streams_dropped = g->dropped.load();
  out->caught_up = all_there && out->sends_unanswered == 0 && out->streams_dropped == 0;
}

asio::awaitable<void> close_members(std::vector<std::shared_ptr<member_state>> members,
                                    std::shared_ptr<group_state> g) {
  g->closing = true;
  for (auto& m : members) {
    if (m->lean) {
      m->lean->close();
      continue;
    }
    asio::post(m->wake.get_executor(), [m] {
      m->closed = true;
      m->wake.cancel();
      m->stream->close();
    });
  }
  co_await sleep_for(std::chrono::milliseconds(300));
}

asio::awaitable<void> group_run(options o, sdk::endpoint ep, pid_t node, group_result* out) {
  auto g = std::make_shared<group_state>();
  g->window = o.window;
  g->read = o.group_reads;
  g->payload = std::string(static_cast<std::size_t>(o.payload), 'x');
  auto users = co_await register_members(ep, o.members);
  g->conversation_id = co_await create_group(ep, users);
  auto members = co_await open_members(o, ep, users, g);
  // Every member's stream brings the CREATED change first thing: then all are in.
  bool in = co_await wait_until([&] { return g->ready.load() >= o.members; }, std::chrono::seconds(60));
  if (!in) throw std::runtime_error("the group's members did not all get its CREATED change within 60 s");
  auto sender = members.front();
  asio::post(sender->wake.get_executor(), [sender, g] {
    g->sending = true;
    wake_writer(*sender);
  });
  co_await sleep_for(warm_up);
  auto before = read_now(*g, node);
  co_await sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(o.duration_s * 1e6)));
  auto after = read_now(*g, node);
  out->seconds = std::chrono::duration<double>(after.at - before.at).count();
  out->messages = after.accepted - before.accepted;
  out->deliveries = after.deliveries - before.deliveries;
  out->acks = after.acks - before.acks;
  out->reads = after.reads - before.reads;
  out->cpu_us = after.cpu_us - before.cpu_us;
  out->tool_cpu_us = after.tool_cpu_us - before.tool_cpu_us;
  co_await catch_up(o, g, members, out);
  co_await close_members(members, g);
}

double per(std::uint64_t amount, std::uint64_t count) {
  return count ? static_cast<double>(amount) / static_cast<double>(count) : 0;
}

double rate(std::uint64_t count, double seconds) {
  return seconds > 0 ? static_cast<double>(count) / seconds : 0;
}

void print_json(options const& o, group_result const& r) {
  json::object j{{"workload", "groups"},
                 {"members", o.members},
                 {"window", o.window},
                 {"payload", o.payload},
                 {"durable", o.durable},
                 {"encoding", o.encoding == sdk::encoding::json ? "json" : "proto"},
                 {"warm_up_s", std::chrono::duration<double>(warm_up).count()},
                 {"seconds", r.seconds},
                 {"messages", r.messages},
                 {"deliveries", r.deliveries},
                 {"messages_per_s", rate(r.messages, r.seconds)},
                 {"deliveries_per_s", rate(r.deliveries, r.seconds)},
                 {"deliveries_per_message", per(r.deliveries, r.messages)},
                 {"acks_per_delivery", per(r.acks, r.deliveries)},
                 {"reads_per_delivery", per(r.reads, r.deliveries)},
                 {"server_cpu_us_per_delivery", per(r.cpu_us, r.deliveries)},
                 {"server_cpu_us_per_message", per(r.cpu_us, r.messages)},
                 {"tool_cpu_us_per_delivery", per(r.tool_cpu_us, r.deliveries)},
                 {"messages_total", r.messages_total},
                 {"deliveries_total", r.deliveries_total},
                 {"caught_up", r.caught_up},
                 {"catch_up_s", r.catch_up_s},
                 {"members_behind", r.members_behind},
                 {"messages_missing", r.messages_missing},
                 {"streams_dropped", r.streams_dropped},
                 {"sends_unanswered", r.sends_unanswered}};
  std::cout << json::serialize(j) << "\n";
}

void print_table(options const& o, group_result const& r) {
  double cpu_per_delivery = per(r.cpu_us, r.deliveries);
  double tool_per_delivery = per(r.tool_cpu_us, r.deliveries);
  std::printf("groups: %d members (1 sender), window %d, %s frames, durability %s, %.1f s after a %.0f s warm-up\n",
              o.members, o.window, o.encoding == sdk::encoding::json ? "json" : "proto", o.durable ? "on" : "off",
              r.seconds, std::chrono::duration<double>(warm_up).count());
  std::printf("  accepted                     %llu messages, %.0f messages/s\n",
              static_cast<unsigned long long>(r.messages), rate(r.messages, r.seconds));
  std::printf("  delivered                    %llu to members, %.0f deliveries/s (%.2f per message)\n",
              static_cast<unsigned long long>(r.deliveries), rate(r.deliveries, r.seconds),
              per(r.deliveries, r.messages));
  std::printf("  acknowledged                 %llu acks, %.3f per delivery\n", static_cast<unsigned long long>(r.acks),
              per(r.acks, r.deliveries));
  if (o.group_reads)
    std::printf("  marked read                  %llu reads, %.3f per delivery\n",
                static_cast<unsigned long long>(r.reads), per(r.reads, r.deliveries));
  std::printf("  server CPU                   %.2f us per delivery, %.1f us per message\n", cpu_per_delivery,
              per(r.cpu_us, r.messages));
  std::printf("  tool CPU                     %.2f us per delivery\n", tool_per_delivery);
  // As for the other workloads: a tool as costly as the node saturates first.
  if (r.deliveries > 0 && tool_per_delivery >= cpu_per_delivery)
    std::printf("  the tool, not the node, is the limit of this run (tool CPU >= server CPU)\n");
  if (r.caught_up) {
    std::printf(
        "  caught up                    yes: the %d other members had all %llu messages %.2f s after the "
        "sender stopped\n",
        o.members - 1, static_cast<unsigned long long>(r.messages_total), r.catch_up_s);
    return;
  }
  std::printf(
      "  caught up                    NO, after %.1f s: %d of %d members lack %llu of %llu messages in all; "
      "%d streams dropped; %llu sends unanswered\n",
      r.catch_up_s, r.members_behind, o.members - 1, static_cast<unsigned long long>(r.messages_missing),
      static_cast<unsigned long long>(r.messages_total), r.streams_dropped,
      static_cast<unsigned long long>(r.sends_unanswered));
}

}  // namespace

int group_workload(options const& o) {
  auto n = start_node(o);
  group_result r;
  try {
    run(o, group_run(o, n.endpoint(), n.process.pid, &r));
  } catch (...) {
    remove_node(n);
    throw;
  }
  remove_node(n);
  if (o.as_json)
    print_json(o, r);
  else
    print_table(o, r);
  return 0;
}

}  // namespace petchat::bench
