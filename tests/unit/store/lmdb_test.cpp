#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/lmdb/lmdb.hpp"
#include "tests/unit/support.hpp"

using namespace petchat::store;
using petchat::testing::latch;
using petchat::testing::temp_dir;
using petchat::testing::write_sync;

TEST_CASE("put, get, insert, erase, for_each, count") {
  temp_dir dir;
  lmdb_env env({dir.path, 1 << 20});
  auto db = env.open_db("t");
  CHECK(write_sync(env, [&](lmdb_txn& t) {
          t.put(db, "a:1", "one");
          t.put(db, "a:2", "two");
          t.put(db, "b:1", "three");
          return true;
        }) == write_outcome::committed);
  env.read([&](lmdb_txn const& t) {
    CHECK(t.get(db, "a:1") == std::optional<std::string_view>("one"));
    CHECK_FALSE(t.get(db, "zzz"));
    CHECK(t.count(db) == 3);
    std::vector<std::string> keys;
    t.for_each(db, "a:", [&](std::string_view k, std::string_view) {
      keys.emplace_back(k);
      return true;
    });
    CHECK(keys == std::vector<std::string>{"a:1", "a:2"});
    return 0;
  });
  bool inserted = true;
  CHECK(write_sync(env, [&](lmdb_txn& t) {
          inserted = t.insert(db, "a:1", "again");
          return true;
        }) == write_outcome::committed);
  CHECK_FALSE(inserted);
  write_sync(env, [&](lmdb_txn& t) { return t.erase(db, "a:1"); });
  CHECK(env.read([&](lmdb_txn const& t) { return t.count(db); }) == 2);
}

TEST_CASE("a rolled-back or failing request leaves the rest of its batch intact") {
  temp_dir dir;
  lmdb_env env({dir.path, 1 << 20});
  auto db = env.open_db("t");
  latch done(3);
  std::vector<write_outcome> outcomes(3);
  // Queue all three before the writer can take the first alone: they share a batch or not,
  // and the outcome must be the same either way.
  env.submit(
      [&](lmdb_txn& t) {
        t.put(db, "keep", "1");
        return true;
      },
      [&](write_outcome o) {
        outcomes[0] = o;
        done.count_down();
      });
  env.submit(
      [&](lmdb_txn& t) {
        t.put(db, "rollback", "1");
        return false;
      },
      [&](write_outcome o) {
        outcomes[1] = o;
        done.count_down();
      });
  env.submit(
      [&](lmdb_txn& t) -> bool {
        t.put(db, "throw", "1");
        throw std::runtime_error("bug");
      },
      [&](write_outcome o) {
        outcomes[2] = o;
        done.count_down();
      });
  done.wait();
  CHECK(outcomes[0] == write_outcome::committed);
  CHECK(outcomes[1] == write_outcome::rolled_back);
  CHECK(outcomes[2] == write_outcome::failed);
  env.read([&](lmdb_txn const& t) {
    CHECK(t.get(db, "keep"));
    CHECK_FALSE(t.get(db, "rollback"));
    CHECK_FALSE(t.get(db, "throw"));
    return 0;
  });
}

TEST_CASE("concurrent writers are group-committed") {
  temp_dir dir;
  lmdb_env env({dir.path, 8 << 20});
  auto db = env.open_db("t");
  constexpr int n = 2000;
  latch done(n);
  std::atomic<int> committed{0};
  for (int i = 0; i < n; ++i)
    env.submit(
        [&, i](lmdb_txn& t) {
          t.put(db, "k" + std::to_string(i), "v");
          return true;
        },
        [&](write_outcome o) {
          if (o == write_outcome::committed) committed++;
          done.count_down();
        });
  done.wait();
  CHECK(committed == n);
  CHECK(env.read([&](lmdb_txn const& t) { return t.count(db); }) == n);
  // Each commit is one fsync; far fewer of them than requests shows batching works.
  MESSAGE("commits for ", n, " writes: ", env.commits());
  CHECK(env.commits() < n / 2);
}

TEST_CASE("the map grows instead of failing") {
  temp_dir dir;
  lmdb_env env({dir.path, 64 << 10});  // 64 KiB: full after a few writes
  auto db = env.open_db("t");
  std::string big(4000, 'x');
  for (int i = 0; i < 500; ++i)
    REQUIRE(write_sync(env, [&, i](lmdb_txn& t) {
              t.put(db, "k" + std::to_string(i), big);
              return true;
            }) == write_outcome::committed);
  CHECK(env.map_size() > (1u << 20));
  CHECK(env.read([&](lmdb_txn const& t) { return t.count(db); }) == 500);
}

TEST_CASE("read transactions are reused across map growth, from any thread, and see every commit") {
  temp_dir dir;
  lmdb_env env({dir.path, 64 << 10});
  auto db = env.open_db("t");
  std::string big(4000, 'r');
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  // Readers on other threads keep taking and giving back transactions while the map grows.
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r)
    readers.emplace_back([&] {
      while (!done)
        env.read([&](lmdb_txn const& t) {
          if (auto v = t.get(db, "k0"); v && *v != big) ++bad;
          return 0;
        });
    });
  for (int i = 0; i < 300; ++i) {
    REQUIRE(write_sync(env, [&, i](lmdb_txn& t) {
              t.put(db, "k" + std::to_string(i), big);
              return true;
            }) == write_outcome::committed);
    // This thread's read right after the commit sees it, whatever transaction it reuses.
    CHECK(env.read([&](lmdb_txn const& t) { return t.get(db, "k" + std::to_string(i)).has_value(); }));
  }
  done = true;
  for (auto& t : readers) t.join();
  CHECK(env.map_size() > (1u << 20));
  CHECK(bad == 0);
  CHECK(env.read([&](lmdb_txn const& t) { return t.count(db); }) == 300);
}

TEST_CASE("data survives closing and reopening a grown map, and it grows again") {
  temp_dir dir;
  std::size_t grown = 0;
  auto db_name = "t";
  {
    lmdb_env env({dir.path, 64 << 10});
    auto db = env.open_db(db_name);
    std::string big(4000, 'y');
    for (int i = 0; i < 100; ++i)
      write_sync(env, [&, i](lmdb_txn& t) {
        t.put(db, "k" + std::to_string(i), big);
        return true;
      });
    grown = env.map_size();
  }
  lmdb_env env({dir.path, 64 << 10});
  auto db = env.open_db(db_name);
  CHECK(env.read([&](lmdb_txn const& t) { return t.count(db); }) == 100);
  // LMDB reopens at the file's size (at least), not below the data already stored.
  CHECK(env.map_size() >= std::filesystem::file_size(dir.path / "data.mdb"));
  std::string big(4000, 'z');
  for (int i = 100; i < 300; ++i)
    REQUIRE(write_sync(env, [&, i](lmdb_txn& t) {
              t.put(db, "k" + std::to_string(i), big);
              return true;
            }) == write_outcome::committed);
  CHECK(env.map_size() > grown);
}

TEST_CASE("writes after stop fail at once") {
  temp_dir dir;
  lmdb_env env({dir.path, 1 << 20});
  auto db = env.open_db("t");
  env.stop();
  CHECK(write_sync(env, [&](lmdb_txn& t) {
          t.put(db, "a", "b");
          return true;
        }) == write_outcome::failed);
}
