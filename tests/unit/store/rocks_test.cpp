#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "store/rocks/rocks.hpp"
#include "tests/unit/support.hpp"

using namespace petchat::store;
using petchat::testing::latch;
using petchat::testing::temp_dir;
using petchat::testing::write_sync;

TEST_CASE("put, get, erase and scans in both directions") {
  temp_dir dir;
  rocks_db db(rocks_options{.dir = dir.path});
  CHECK(write_sync(db, [](rocks_batch& b) {
          for (char c = 'a'; c <= 'e'; ++c) b.put(cf::history, std::string("k") + c, std::string(1, c));
          b.erase(cf::history, "kc");
          return true;
        }) == write_outcome::committed);
  CHECK(db.get(cf::history, "ka") == std::optional<std::string>("a"));
  CHECK_FALSE(db.get(cf::history, "kc"));
  CHECK_FALSE(db.get(cf::mailbox, "ka"));  // families are separate
  std::string forward, backward;
  db.scan(cf::history, "kb", "ke", [&](std::string_view, std::string_view v) {
    forward += v;
    return true;
  });
  db.scan_reverse(cf::history, "ka", "ke", [&](std::string_view, std::string_view v) {
    backward += v;
    return true;
  });
  CHECK(forward == "bd");
  CHECK(backward == "dba");
}

TEST_CASE("a request sees the writes of earlier requests in its batch; failures are undone alone") {
  temp_dir dir;
  rocks_db db(rocks_options{.dir = dir.path});
  latch done(4);
  std::vector<write_outcome> outcomes(4);
  std::vector<std::optional<std::string>> seen(4);
  auto counter = [&](int i) {
    return [&, i](rocks_batch& b) {
      auto v = b.get(cf::state, "n");
      int n = v ? std::stoi(*v) : 0;
      seen[i] = v;
      b.put(cf::state, "n", std::to_string(n + 1));
      if (i == 1) return false;                         // declines: its increment is undone
      if (i == 2) throw std::runtime_error("failure");  // fails: likewise
      return true;
    };
  };
  for (int i = 0; i < 4; ++i)
    db.submit(counter(i), [&, i](write_outcome o) {
      outcomes[i] = o;
      done.count_down();
    });
  done.wait();
  CHECK(outcomes[0] == write_outcome::committed);
  CHECK(outcomes[1] == write_outcome::rolled_back);
  CHECK(outcomes[2] == write_outcome::failed);
  CHECK(outcomes[3] == write_outcome::committed);
  CHECK(db.get(cf::state, "n") == std::optional<std::string>("2"));
}

TEST_CASE("concurrent writers are group-committed and survive reopening") {
  temp_dir dir;
  constexpr int n = 3000;
  {
    rocks_db db(rocks_options{.dir = dir.path});
    latch done(n);
    std::atomic<int> committed{0};
    for (int i = 0; i < n; ++i)
      db.submit(
          [i](rocks_batch& b) {
            b.put(cf::messages, "m" + std::to_string(i), "v");
            return true;
          },
          [&](write_outcome o) {
            if (o == write_outcome::committed) committed++;
            done.count_down();
          });
    done.wait();
    CHECK(committed == n);
    MESSAGE("group commits for ", n, " writes: ", db.commits());
    CHECK(db.commits() < n / 2);
  }
  rocks_db db(rocks_options{.dir = dir.path});
  int count = 0;
  db.scan(cf::messages, "", "", [&](std::string_view, std::string_view) {
    ++count;
    return true;
  });
  CHECK(count == n);
}

TEST_CASE("compaction removes deleted data from the files") {
  temp_dir dir;
  std::string marker = "unique-marker-4f1c9e";
  rocks_db db(rocks_options{.dir = dir.path});
  write_sync(db, [&](rocks_batch& b) {
    b.put(cf::messages, "x", marker);
    return true;
  });
  db.compact();
  write_sync(db, [&](rocks_batch& b) {
    b.erase(cf::messages, "x");
    return true;
  });
  db.compact();
  bool found = false;
  for (auto const& f : std::filesystem::recursive_directory_iterator(dir.path)) {
    if (!f.is_regular_file()) continue;
    std::ifstream in(f.path(), std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (content.find(marker) != std::string::npos) {
      MESSAGE("marker still in ", f.path().string());
      found = true;
    }
  }
  CHECK_FALSE(found);
}

TEST_CASE("a filtered family finds what it holds and misses what it does not, in memory, in files and reopened") {
  temp_dir dir;
  auto present = [](int i) { return "p" + std::to_string(i); };
  auto absent = [](int i) { return "q" + std::to_string(i); };
  auto check_all = [&](rocks_db& db) {
    for (int i = 0; i < 500; ++i) {
      CHECK(db.get(cf::receipts, present(i)) == std::optional<std::string>(std::to_string(i)));
      CHECK_FALSE(db.get(cf::receipts, absent(i)));
    }
    CHECK(write_sync(db, [&](rocks_batch& b) {  // a request reads through the same filters
            CHECK(b.get(cf::receipts, present(7)) == std::optional<std::string>("7"));
            CHECK_FALSE(b.get(cf::receipts, absent(7)));
            return false;
          }) == write_outcome::rolled_back);
  };
  {
    rocks_db db(rocks_options{.dir = dir.path, .filtered = {cf::receipts}});
    write_sync(db, [&](rocks_batch& b) {
      for (int i = 0; i < 500; ++i) b.put(cf::receipts, present(i), std::to_string(i));
      return true;
    });
    check_all(db);  // from the memtable
    db.compact();
    check_all(db);  // from a table file with its filter
  }
  rocks_db reopened(rocks_options{.dir = dir.path, .filtered = {cf::receipts}});
  check_all(reopened);
}

TEST_CASE("a rewritten family keeps each key's newest value, in one batch and across many, and reopened") {
  // Its memtable inserts start at the key's previous version (rocks_options::rewritten).
  temp_dir dir;
  auto key = [](int i) { return "d/user" + std::to_string(i); };
  auto owned = [](int i) { return std::string("a/user") + '\0' + std::to_string(i); };
  auto check_all = [&](rocks_db& db, int round) {
    for (int i = 0; i < 50; ++i) {
      CHECK(db.get(cf::state, key(i)) == std::optional<std::string>(std::to_string(round * 1000 + i)));
      CHECK(db.get(cf::state, owned(i)) == std::optional<std::string>(std::to_string(round)));
    }
  };
  {
    rocks_db db(rocks_options{.dir = dir.path, .rewritten = {cf::state}});
    for (int round = 1; round <= 20; ++round) {
      write_sync(db, [&](rocks_batch& b) {
        for (int again = 0; again < 3; ++again)  // the same keys several times in one batch
          for (int i = 49; i >= 0; --i) b.put(cf::state, key(i), std::to_string(round * 1000 + i));
        for (int i = 0; i < 50; ++i) b.put(cf::state, owned(i), std::to_string(round));
        return true;
      });
      check_all(db, round);
    }
    db.compact();
    check_all(db, 20);
  }
  rocks_db reopened(rocks_options{.dir = dir.path, .rewritten = {cf::state}});
  check_all(reopened, 20);
}

TEST_CASE("lazy writes are applied like any other, and survive a clean close") {
  temp_dir dir;
  {
    rocks_db db(rocks_options{.dir = dir.path});
    latch done(1);
    write_outcome outcome = write_outcome::failed;
    db.submit(
        [](rocks_batch& b) {
          b.put(cf::outbox, "dest/x", "entry");
          return true;
        },
        [&](write_outcome o) {
          outcome = o;
          done.count_down();
        },
        rocks_db::durability::lazy);
    done.wait();
    CHECK(outcome == write_outcome::committed);
    CHECK(db.get(cf::outbox, "dest/x") == "entry");
  }
  rocks_db db(rocks_options{.dir = dir.path});
  CHECK(db.get(cf::outbox, "dest/x") == "entry");
}

// Cached families: the writer answers reads of their committed values from memory. What a
// request reads must be the same as without the cache, whether the requests share a batch
// or not, whatever was undone, and however small the cache.
TEST_CASE("cached and recent families read the same as the database, across undone requests and cache restarts") {
  struct setup {
    std::string name;
    rocks_options options;
  };
  std::vector<setup> setups = {
      {"cached, starting over every 2 values", {.dir = {}, .cached = {cf::state}, .cache_entries = 2}},
      {"cached", {.dir = {}, .cached = {cf::state}, .cache_entries = 1000}},
      {"recent, starting over every 2 values", {.dir = {}, .recent = {cf::state}, .recent_bytes = 250}},
      {"recent", {.dir = {}, .recent = {cf::state}}},
      {"recent, values too large to keep", {.dir = {}, .recent = {cf::state}, .recent_value_max = 1}},
  };
  for (auto& [name, o] : setups) {
    CAPTURE(name);
    temp_dir dir;
    o.dir = dir.path;
    {
      rocks_db db(o);
      for (int i = 0; i < 5; ++i)
        CHECK(write_sync(db, [i](rocks_batch& b) {
                b.put(cf::state, "k" + std::to_string(i), "v" + std::to_string(i));
                return true;
              }) == write_outcome::committed);
      // Queued together, so most likely one batch: erase k0, then a request that rewrites
      // it and declines, then one that fails after rewriting k1.
      latch done(4);
      std::vector<std::optional<std::string>> seen(4);
      std::vector<write_outcome> outcomes(4);
      std::vector<rocks_db::write_fn> steps = {
          [&](rocks_batch& b) {
            seen[0] = b.get(cf::state, "k0");
            b.erase(cf::state, "k0");
            return true;
          },
          [&](rocks_batch& b) {
            b.put(cf::state, "k0", "declined");
            seen[1] = b.get(cf::state, "k0");
            return false;
          },
          [&](rocks_batch& b) -> bool {
            b.put(cf::state, "k1", "failed");
            throw std::runtime_error("failure");
          },
          [&](rocks_batch& b) {
            seen[3] = b.get(cf::state, "k0").value_or("absent") + "," + b.get(cf::state, "k1").value_or("absent");
            return true;
          },
      };
      for (std::size_t i = 0; i < steps.size(); ++i)
        db.submit(steps[i], [&, i](write_outcome out) {
          outcomes[i] = out;
          done.count_down();
        });
      done.wait();
      CHECK(seen[0] == std::optional<std::string>("v0"));
      CHECK(seen[1] == std::optional<std::string>("declined"));  // a request sees its own writes
      CHECK(outcomes[1] == write_outcome::rolled_back);
      CHECK(outcomes[2] == write_outcome::failed);
      CHECK(seen[3] == std::optional<std::string>("absent,v1"));
      // Later batches read the committed values, through the cache or not.
      std::string all;
      write_sync(db, [&](rocks_batch& b) {
        for (int i = 0; i < 5; ++i) all += b.get(cf::state, "k" + std::to_string(i)).value_or("-") + " ";
        return true;
      });
      CHECK(all == "- v1 v2 v3 v4 ");
    }
    rocks_db db(o);
    CHECK_FALSE(db.get(cf::state, "k0"));
    CHECK(db.get(cf::state, "k1") == std::optional<std::string>("v1"));
  }
}

TEST_CASE("put_last: reads see each value at once, the batch's last kept value is what commits") {
  temp_dir dir;
  rocks_options o{.dir = dir.path};
  {
    rocks_db db(o);
    // Queued together, so most likely one batch (and correct in any split).
    latch done(6);
    std::vector<std::string> seen;
    std::vector<rocks_db::write_fn> steps = {
        [&](rocks_batch& b) {
          b.put_last(cf::receipts, "counts", "1");
          b.put_last(cf::receipts, "gone", "x");
          b.put_last(cf::receipts, "rewritten", "last");
          return true;
        },
        [&](rocks_batch& b) {
          seen.push_back(b.get(cf::receipts, "counts").value_or("-"));
          b.put_last(cf::receipts, "counts", "2");
          b.erase(cf::receipts, "gone");
          b.put(cf::receipts, "rewritten", "plain");
          return true;
        },
        [&](rocks_batch& b) {
          b.put_last(cf::receipts, "counts", "declined");
          b.put_last(cf::receipts, "only-declined", "y");
          return false;
        },
        [&](rocks_batch& b) -> bool {
          b.put_last(cf::receipts, "counts", "failed");
          throw std::runtime_error("failure");
        },
        [&](rocks_batch& b) {
          seen.push_back(b.get(cf::receipts, "counts").value_or("-"));
          b.put_last(cf::receipts, "counts", "3");
          return true;
        },
        [&](rocks_batch& b) {
          seen.push_back(b.get(cf::receipts, "counts").value_or("-"));
          return true;
        },
    };
    for (auto& step : steps) db.submit(step, [&](write_outcome) { done.count_down(); });
    done.wait();
    CHECK(seen == std::vector<std::string>{"1", "2", "3"});
    CHECK(db.get(cf::receipts, "counts") == std::optional<std::string>("3"));
  }
  rocks_db db(o);  // what the write-ahead log holds
  CHECK(db.get(cf::receipts, "counts") == std::optional<std::string>("3"));
  CHECK_FALSE(db.get(cf::receipts, "gone"));
  CHECK(db.get(cf::receipts, "rewritten") == std::optional<std::string>("plain"));
  CHECK_FALSE(db.get(cf::receipts, "only-declined"));
}

TEST_CASE("remembered values are kept in memory only, undone with their request, and worked out again when forgotten") {
  temp_dir dir;
  int loads = 0;
  std::string loaded = "from the data";
  auto load = [&] {
    ++loads;
    return loaded;
  };
  std::vector<std::string> seen;  // what recall returned, in order (checked on this thread)
  {
    rocks_db db(rocks_options{.dir = dir.path, .cached = {cf::state}});
    // Nothing remembered yet: worked out by `load`, then kept.
    CHECK(write_sync(db, [&](rocks_batch& b) {
            seen.push_back(b.recall(cf::state, "h", load));
            seen.push_back(b.recall(cf::state, "h", load));
            return true;
          }) == write_outcome::committed);
    // A request that remembers and is undone leaves the old value; one that commits keeps
    // its value for later batches, without writing it.
    CHECK(write_sync(db, [&](rocks_batch& b) {
            b.remember(cf::state, "h", "undone");
            seen.push_back(b.recall(cf::state, "h", load));  // the request sees its own
            return false;
          }) == write_outcome::rolled_back);
    CHECK(write_sync(db, [&](rocks_batch& b) {
            seen.push_back(b.recall(cf::state, "h", load));
            b.remember(cf::state, "h", "kept");
            return true;
          }) == write_outcome::committed);
    CHECK(write_sync(db, [&](rocks_batch& b) {
            seen.push_back(b.recall(cf::state, "h", load));
            return true;
          }) == write_outcome::committed);
    CHECK(loads == 1);
    CHECK_FALSE(db.get(cf::state, "h"));  // never written
  }
  // Reopened, the writer has forgotten: the value is worked out again.
  rocks_db db(rocks_options{.dir = dir.path, .cached = {cf::state}});
  loaded = "worked out again";
  CHECK(write_sync(db, [&](rocks_batch& b) {
          seen.push_back(b.recall(cf::state, "h", load));
          return true;
        }) == write_outcome::committed);
  CHECK(loads == 2);
  CHECK(seen == std::vector<std::string>{"from the data", "from the data", "undone", "from the data", "kept",
                                         "worked out again"});
}

TEST_CASE("a part of a request that throws is undone alone; the rest of the request commits") {
  temp_dir dir;
  rocks_db db(rocks_options{.dir = dir.path, .cached = {cf::state}});
  CHECK(write_sync(db, [](rocks_batch& b) {
          b.put(cf::state, "kept", "1");
          b.put(cf::history, "old", "before");
          return true;
        }) == write_outcome::committed);
  std::optional<std::string> error, fine, seen_after;
  CHECK(write_sync(db, [&](rocks_batch& b) {
          b.put(cf::history, "first", "f");
          error = b.attempt([&] {
            b.put(cf::history, "fresh", "x");      // new in this batch: gone again
            b.put(cf::history, "first", "again");  // written before the part: back to "f"
            b.erase(cf::history, "old");
            b.put(cf::state, "kept", "2");  // a cached family
            throw std::runtime_error("unreadable record");
          });
          seen_after = b.get(cf::history, "first");
          fine = b.attempt([&] { b.put(cf::history, "second", "s"); });
          return true;
        }) == write_outcome::committed);
  CHECK(error == std::optional<std::string>("unreadable record"));
  CHECK_FALSE(fine);
  CHECK(seen_after == std::optional<std::string>("f"));
  CHECK(db.get(cf::history, "first") == std::optional<std::string>("f"));
  CHECK(db.get(cf::history, "second") == std::optional<std::string>("s"));
  CHECK(db.get(cf::history, "old") == std::optional<std::string>("before"));
  CHECK_FALSE(db.get(cf::history, "fresh"));
  // The writer's cache holds what was committed, not the undone part's value.
  std::optional<std::string> cached;
  CHECK(write_sync(db, [&](rocks_batch& b) {
          cached = b.get(cf::state, "kept");
          return false;
        }) == write_outcome::rolled_back);
  CHECK(cached == std::optional<std::string>("1"));
}
