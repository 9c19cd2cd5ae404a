#include "node/app/upkeep.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>

#include "node/gateway/gateway.hpp"
#include "node/log/log.hpp"

namespace petchat::app {

namespace asio = boost::asio;

namespace {

asio::awaitable<void> sweep_expired_messages(messages::message_service& messages, std::chrono::milliseconds interval,
                                             std::shared_ptr<std::atomic<bool>> stopping) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!*stopping) {
    timer.expires_after(interval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (*stopping) break;
    try {
      std::size_t n = co_await messages.sweep_expired();
      if (n > 0) log::get("messages")->debug("expired {} messages", n);
    } catch (std::exception const& e) {
      log::get("messages")->error("expiry sweep failed: {}", e.what());
    }
  }
}

asio::awaitable<void> expire_remote_presence(ws::ws_manager& manager, std::shared_ptr<std::atomic<bool>> stopping) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!*stopping) {
    timer.expires_after(std::chrono::seconds(1));
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (*stopping) break;
    try {
      manager.expire_remote_presence();
    } catch (std::exception const& e) {  // a contacts scan that failed: tried again in a second
      log::get("ws")->error("remote presence could not be brought up to date: {}", e.what());
    }
  }
}

// While a store refuses writes, a write of nothing each second: a node nobody writes to
// (its clients sent elsewhere because /readyz says it is not ready) finds out that writes
// work again. The account store's refusals are logged here, as they begin, change and end
// (the message store logs its own): clients are told only store_unavailable.
asio::awaitable<void> try_failing_writes(messages::message_service& messages, users::user_service& users,
                                         std::shared_ptr<std::atomic<bool>> stopping) {
  auto log = log::get("users");
  std::string logged;  // the account store's refusal last logged; empty: none
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!*stopping) {
    timer.expires_after(std::chrono::seconds(1));
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (*stopping) break;
    if (!messages.write_error().empty()) co_await messages.try_writes();
    auto why = users.write_error();
    if (why != logged) {
      if (why.empty())
        log->warn("the account store takes writes again");
      else
        log->error("the account store refuses writes: {} (answered store_unavailable; /readyz says store_failing)",
                   why);
      logged = why;
    }
    if (!why.empty()) co_await users.try_writes();
  }
}

asio::awaitable<void> finish_deletions(users::user_service& users, messages::message_service& messages,
                                       metrics::registry& metrics, std::shared_ptr<std::atomic<bool>> stopping) {
  auto log = log::get("users");
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto left = users.unfinished_deletions();
  while (!left.empty() && !*stopping) {
    std::vector<std::string> failed;
    for (auto& name : left) {
      errors::status done = errors::ok();
      try {
        done = co_await gateway::finish_account_deletion(users, messages, metrics, name);
      } catch (std::exception const& e) {
        done = errors::fail(errors::code::internal, e.what());
      }
      if (done) {
        log->info("the deletion of account '{}' that a stop interrupted is finished", name);
        continue;
      }
      log->error("the deletion of account '{}' could not be finished (tried again in 10 s): {}", name,
                 done.error().message);
      failed.push_back(std::move(name));
    }
    left.swap(failed);
    if (left.empty()) break;
    timer.expires_after(std::chrono::seconds(10));
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace

void finish_account_deletions(asio::io_context& io, users::user_service& users, messages::message_service& messages,
                              metrics::registry& metrics, std::shared_ptr<std::atomic<bool>> stopping) {
  asio::co_spawn(io, finish_deletions(users, messages, metrics, std::move(stopping)), asio::detached);
}

void start_upkeep(asio::io_context& io, messages::message_service& messages, users::user_service& users,
                  ws::ws_manager& manager, std::chrono::milliseconds expiry_interval,
                  std::shared_ptr<std::atomic<bool>> stopping) {
  asio::co_spawn(io, sweep_expired_messages(messages, expiry_interval, stopping), asio::detached);
  asio::co_spawn(io, expire_remote_presence(manager, stopping), asio::detached);
  asio::co_spawn(io, try_failing_writes(messages, users, stopping), asio::detached);
}

}  // namespace petchat::app
