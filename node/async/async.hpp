// Bridges from coroutines on the I/O threads to work that must not run there: LMDB writes
// (the commit pipeline's writer thread) and CPU-heavy work such as argon2id (a thread pool).
// The awaiting coroutine resumes on its own executor (its strand), never on the worker.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <functional>
#include <memory>
#include <type_traits>

#include "store/lmdb/lmdb.hpp"
#include "store/rocks/rocks.hpp"

namespace petchat::async {

namespace asio = boost::asio;

// Runs `fn` on `pool` and resumes the caller with its result.
//
// Neither helper is itself a coroutine, and callers should pass named function objects
// (`co_await offload(pool, std::move(work))`), not lambdas written inside the co_await
// expression: GCC 12 mishandles the lifetime of such temporaries (double destruction).
template <typename F, typename R = std::invoke_result_t<F>>
auto offload(asio::thread_pool& pool, F fn) {
  // An exception from `fn` must not escape on the pool thread (that would terminate the
  // process): it travels back and is rethrown in the awaiting coroutine.
  auto initiate = [&pool](auto handler, F fn) {
    asio::post(pool, [handler = std::move(handler), fn = std::move(fn)]() mutable {
      std::exception_ptr error;
      R r{};
      try {
        r = fn();
      } catch (...) {
        error = std::current_exception();
      }
      auto ex = asio::get_associated_executor(handler);
      asio::post(ex, [handler = std::move(handler), error, r = std::move(r)]() mutable {
        std::move(handler)(error, std::move(r));
      });
    });
  };
  return asio::async_initiate<asio::use_awaitable_t<> const, void(std::exception_ptr, R)>(initiate, asio::use_awaitable,
                                                                                          std::move(fn));
}

// Queues `fn` on a commit pipeline (store::lmdb_env or store::rocks_db: both take a
// write function and a completion with the write_outcome) and resumes the caller once the
// group commit holding it is durable (or failed).
template <typename Store>
auto write(Store& store, typename Store::write_fn fn) {
  auto initiate = [&store](auto handler, typename Store::write_fn fn) {
    // done_fn must be copyable; the awaitable handler is move-only, hence the shared_ptr.
    auto shared = std::make_shared<decltype(handler)>(std::move(handler));
    store.submit(std::move(fn), [shared](store::write_outcome outcome) {
      auto ex = asio::get_associated_executor(*shared);
      asio::post(ex, [shared, outcome]() { std::move (*shared)(outcome); });
    });
  };
  return asio::async_initiate<asio::use_awaitable_t<> const, void(store::write_outcome)>(initiate, asio::use_awaitable,
                                                                                         std::move(fn));
}

}  // namespace petchat::async
