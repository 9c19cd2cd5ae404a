// The asset service's state, shared by its translation units (assets.cpp: uploads and
// downloads; resumable.cpp: resumable uploads; collect.cpp: the collector and verify;
// fetch.cpp: assets of other regions).
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <set>

#include "node/assets/assets.hpp"
#include "node/assets/detail/files.hpp"
#include "node/assets/detail/images.hpp"
#include "node/log/log.hpp"

namespace petchat::assets {
namespace detail {

// What copy_body moved from a request body to a file.
struct copied {
  std::uint64_t bytes = 0;
  std::optional<errors::failure> error;  // the body broke off, or the file could not be written
};

// A resumable upload's hash so far, kept between its chunks.
struct partial_hash {
  std::uint64_t offset = 0;
  hasher h;
};

// Regions the fetcher takes assets from at once (fetch.cpp), one fetch of each at a time.
constexpr std::size_t regions_fetched_at_once = 4;

}  // namespace detail

struct asset_service::impl {
  config::assets_section limits;
  std::array<unsigned char, 32> link_key{};  // download links' (links.cpp), made at start
  detail::file_store files;
  messages::message_service& messages;
  boost::asio::thread_pool pool{2};  // blocking file work: uploads' writes and hashes, downloads
  // Thumbnails one at a time on a thread of their own: an image's decode may take a second
  // and hundreds of MB, and must neither stall every upload and download nor run twice at once.
  boost::asio::thread_pool images{1};
  // `petchatctl assets verify`: one at a time, on a thread of its own (on the node's CPU
  // pool it held a thread that logins hash passwords on, for as long as it re-hashed).
  boost::asio::thread_pool checks{1};
  // Fetches from other regions: their waits on the network (up to hours for a large asset
  // from a slow region) are not the pool's. One thread per region fetched from at once.
  boost::asio::thread_pool fetches{detail::regions_fetched_at_once};
  std::set<std::string> fetching;  // regions being fetched from (the fetcher's strand only)
  std::shared_ptr<spdlog::logger> log = log::get("assets");
  std::atomic<std::size_t> active_copies{0};

  std::mutex mutex;                                    // guards the four below; never held across I/O
  std::set<std::string> claims;                        // hashes being placed or collected; users in the thumbnail line
  std::set<std::string> busy;                          // uploads with an append (or removal) running
  std::map<std::string, detail::partial_hash> hashes;  // upload id -> its hash so far
  std::map<std::string, std::uint64_t> streaming;      // user -> bytes of one-request uploads arriving
  std::map<std::string, std::uint64_t> starting;       // user -> declared bytes of resumable starts being written

  std::optional<boost::asio::strand<boost::asio::io_context::executor_type>> strand;  // of the two timers
  std::unique_ptr<boost::asio::steady_timer> timer;                                   // the collector's
  std::unique_ptr<boost::asio::steady_timer> fetch_timer;                             // the fetcher's
  piece_fetcher fetcher;                                                              // set before start
  std::atomic<bool> stopped{false};

  impl(config::assets_section l, std::filesystem::path dir, messages::message_service& m)
      : limits(l), files(std::move(dir)), messages(m) {}

  errors::failure file_failure(detail::file_error const& e) const;

  // A hash's claim: while one upload places it or the collector removes it, no other may.
  // A blob is linked or unlinked only by the holder of its hash's claim.
  awaitable<void> claim(std::string const& hash);
  awaitable<bool> claim_within(std::string const& hash, std::chrono::milliseconds limit);
  bool try_claim(std::string const& hash);
  void release(std::string const& hash);
  bool try_busy(std::string const& id) {
    std::lock_guard lock(mutex);
    return busy.insert(id).second;
  }
  void not_busy(std::string const& id) {
    std::lock_guard lock(mutex);
    busy.erase(id);
  }

  // Streams `length` bytes of `body` into `out` and `h`.
  awaitable<detail::copied> copy_body(byte_source& body, detail::file_writer& out, detail::hasher& h,
                                      std::uint64_t length);
  // A complete upload in `file` (hashed, fsync'd): sniffed, thumbnailed, placed, recorded
  // (with the end of `upload_id`, if any).
  awaitable<result<messages::asset_view>> finish(std::string user, detail::fs::path file, messages::new_asset a,
                                                 std::string upload_id);
  void remove_orphans();
};

// Claims on hashes given back however the work ends (an exception too: a claim kept for
// good would hold every later upload of those bytes).
struct claims_held {
  asset_service::impl& s;
  std::vector<std::string> hashes;
  ~claims_held() {
    for (auto const& h : hashes) s.release(h);
  }
};

// The fetcher's loop (fetch.cpp), started by asset_service::start.
awaitable<void> fetch_every(std::shared_ptr<asset_service::impl> s);

}  // namespace petchat::assets
