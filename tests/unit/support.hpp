// Small helpers shared by the unit tests.
#pragma once

#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>

namespace petchat::testing {

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

}  // namespace petchat::testing
