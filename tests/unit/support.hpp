// Small helpers shared by the unit tests.
#pragma once

#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>

#include "store/write_outcome.hpp"

namespace petchat::testing {

namespace store = petchat::store;

// A fresh directory under /tmp, removed with everything in it.
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(std::string const& tag = "unit") {
    std::string tmpl = "/tmp/petchat-" + tag + "-XXXXXX";
    path = ::mkdtemp(tmpl.data());
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
};

// Waits for `n` completions reported from other threads.
struct latch {
  std::mutex m;
  std::condition_variable cv;
  int left;
  explicit latch(int n) : left(n) {}
  void count_down() {
    std::lock_guard l(m);
    if (--left == 0) cv.notify_all();
  }
  void wait() {
    std::unique_lock l(m);
    cv.wait(l, [&] { return left == 0; });
  }
};

// Submits one write to a commit pipeline (store::lmdb_env or store::rocks_db) and waits
// for its outcome.
template <typename Store>
store::write_outcome write_sync(Store& store, typename Store::write_fn fn) {
  latch done(1);
  store::write_outcome out{};
  store.submit(std::move(fn), [&](store::write_outcome o) {
    out = o;
    done.count_down();
  });
  done.wait();
  return out;
}

}  // namespace petchat::testing
