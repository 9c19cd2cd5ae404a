// Assets across regions (docs/FEDERATION.md, "Assets across regions"). A message from
// another region leaves a fetch entry per attachment not stored here (the message
// service's `f/` keys), or, for one stored here, a fetch only as that region's proof that
// it holds the bytes (`y/`: until then its message's reference gives no access); every
// second the fetcher takes the due ones, asks the holding region for the bytes in pieces
// of 256 KiB into tmp/, hashes them, then places and records the asset (or notes the
// proof) under the hash's claim, which the download itself does not hold.
// A failed try is tried again later (1, 2, 4... up to 10 s apart); an asset the holder
// says it has not for us is given up after 20 tries, and one whose bytes did not match
// their hash 3 times (the holder's copy is damaged: fetched again and again it would
// cost the whole asset every few seconds, for as long as a message names it). A fetch
// slower than 64 KiB/s on average past its first 30 s is a failed try, and a region that
// did not answer is not asked again in the same round. Up to 4 regions are fetched from
// at once, one fetch of each at a time. The other direction: serve_piece.
#include <fcntl.h>
#include <unistd.h>

#include <map>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "base/format/format.hpp"
#include "node/assets/detail/service.hpp"
#include "node/async/async.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::assets {

namespace {

constexpr std::uint32_t piece_bytes = 256u << 10;
constexpr std::uint32_t give_up_after = 20;
constexpr std::uint32_t give_up_after_mismatch = 3;
// A region that answers each piece just in time would hold its fetches (one at a time per
// region) for hours: past its first 30 s a fetch must have averaged 64 KiB/s, else it is
// a failed try like an unanswered one.
constexpr auto fetch_grace = std::chrono::seconds(30);
constexpr std::uint64_t min_fetch_rate = 64u << 10;  // bytes per second
// A thumbnail (at most assets.thumbnail_px on its longer side, as JPEG or PNG) is far
// smaller: another region's "thumbnail" beyond this is not fetched (it would store up to
// max_asset_bytes per attachment, next to the original, charged to no one).
// (A 4,096-pixel JPEG, assets.thumbnail_px's largest, of a noisy photo stays well below.)
constexpr std::uint64_t max_thumbnail_bytes = 16u << 20;

struct fetched {
  enum { ok, missing, mismatch, failed, stopped } outcome = failed;
  messages::new_asset asset;
  std::filesystem::path file;  // ok: the bytes, in tmp/, to be placed
};

// Blocking (the asset pool): the whole asset, piece by piece, into a file of tmp/, hashed.
fetched download(asset_service::impl& s, messages::pending_fetch const& f, std::uint64_t region_bytes) {
  fetched r;
  auto path = s.files.new_tmp();
  detail::tmp_file cleanup{path};
  detail::file_writer out(path, 0);
  detail::hasher h;
  remote_piece first;
  std::uint64_t offset = 0, size = 1;
  auto started = std::chrono::steady_clock::now();
  while (offset < size) {
    if (s.stopped) {  // shutting down: tried again after the restart, as if never begun
      r.outcome = fetched::stopped;
      return r;
    }
    auto spent = std::chrono::steady_clock::now() - started;
    if (spent > fetch_grace &&
        offset < min_fetch_rate *
                     static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(spent).count())) {
      s.log->warn("asset {} from region {}: {} bytes in {} s, too slow; tried again later", print_id(f.hash), f.region,
                  offset, std::chrono::duration_cast<std::chrono::seconds>(spent).count());
      return r;
    }
    auto p = s.fetcher(f.region, f.hash, offset, piece_bytes);
    if (!p) return r;
    if (!p->found) {
      r.outcome = fetched::missing;
      return r;
    }
    if (offset == 0) {
      first = *p;
      size = p->size;
      if (size == 0 || size > (f.thumbnail_of.empty() ? s.limits.max_asset_bytes : max_thumbnail_bytes)) {
        r.outcome = fetched::missing;
        return r;
      }
      // The region's budget: what it has us store already, fetches of this round included.
      auto budget = s.limits.max_fetched_bytes_per_region;
      if (budget != 0 && !f.proof && region_bytes + size > budget) {
        s.log->warn(
            "asset {} from region {}: {} bytes, and {} fetched from that region are stored already "
            "(assets.max_fetched_bytes_per_region {}); tried again later",
            print_id(f.hash), f.region, size, region_bytes, budget);
        return r;
      }
    }
    if (p->data.empty() || offset + p->data.size() > size) return r;
    out.write(p->data.data(), p->data.size());
    h.update(p->data.data(), p->data.size());
    offset += p->data.size();
  }
  if (h.finish() != f.hash) {  // (before the sync: bytes thrown away need none)
    s.log->warn("asset {} from region {}: the bytes do not match their hash", print_id(f.hash), f.region);
    r.outcome = fetched::mismatch;
    return r;
  }
  out.sync();
  r.file = path;
  r.outcome = fetched::ok;
  r.asset.hash = f.hash;
  r.asset.size = size;
  r.asset.content_type = detail::sniff(detail::read_head(path, 256 << 10));  // ours, not theirs
  if (detail::is_image(r.asset.content_type)) {
    r.asset.width = first.width;
    r.asset.height = first.height;
  }
  if (first.thumbnail.size() == detail::hash_bytes) r.asset.thumbnail_hash = first.thumbnail;
  cleanup.armed = false;  // fetch_one's now
  return r;
}

// Whether the region answered (with the bytes, or that it has them not for us).
awaitable<bool> fetch_one(std::shared_ptr<asset_service::impl> s, messages::pending_fetch f,
                          std::uint64_t& region_bytes) {
  auto work = [s, f, region_bytes] { return download(*s, f, region_bytes); };
  fetched r;
  try {
    r = co_await async::offload(s->fetches, std::move(work));
  } catch (std::exception const& e) {
    s->log->error("asset {} from region {}: {}", print_id(f.hash), f.region, e.what());
  }
  if (r.outcome == fetched::ok) {
    detail::tmp_file file{r.file};
    // Placed and recorded under the hash's claim, which an upload of the same bytes (its
    // thumbnail's turn and making included) or the collector holds; the download held none:
    // a region that sends its pieces just fast enough takes hours, and every upload of
    // those bytes would wait.
    co_await s->claim(f.hash);
    claims_held held{*s, {f.hash}};
    // (Linked into place: the tmp/ name goes as `file` does.)
    auto put = [s, from = r.file, hash = f.hash] { return detail::place(from, s->files.blob(hash), true); };
    bool placed = false;
    try {
      co_await async::offload(s->fetches, std::move(put));
      placed = true;
    } catch (std::exception const& e) {
      s->log->error("asset {} from region {}: {}", print_id(f.hash), f.region, e.what());
    }
    if (!placed) {
      co_await s->messages.fetch_failed(f, false);
      co_return true;
    }
    if (!f.proof) region_bytes += r.asset.size;  // (counted by record_fetched if it stores it)
    auto done = co_await s->messages.record_fetched(f, std::move(r.asset));
    if (done && f.proof)
      s->log->info("region {} showed it holds asset {}: its messages' references to it count", f.region,
                   print_id(f.hash));
    else if (done)
      s->log->info("asset {} fetched from region {}", print_id(f.hash), f.region);
    if (done) co_return true;
    co_await s->messages.fetch_failed(f, false);  // stored in part: tried again later, not at once
    co_return true;
  }
  if (r.outcome == fetched::stopped) co_return true;  // not a try: no back-off, nothing counted
  bool drop = (r.outcome == fetched::missing && f.tries + 1 >= give_up_after) ||
              (r.outcome == fetched::mismatch && f.mismatches + 1 >= give_up_after_mismatch);
  if (drop && r.outcome == fetched::missing)
    s->log->warn("asset {}: region {} has it not for us; given up", print_id(f.hash), f.region);
  else if (drop)
    s->log->error(
        "asset {}: region {} sent bytes that do not match their hash {} times; given up (its copy is "
        "damaged?)",
        print_id(f.hash), f.region, f.mismatches + 1);
  co_await s->messages.fetch_failed(f, drop, r.outcome == fetched::mismatch);
  co_return r.outcome == fetched::missing || r.outcome == fetched::mismatch;
}

// One region's due fetches in turn, until one is not answered (that region is not asked
// again this round). Regions are fetched from side by side: one slow or hostile region,
// whose fetch may take hours while its pieces keep coming just fast enough, holds up only
// its own fetches.
awaitable<void> fetch_region(std::shared_ptr<asset_service::impl> s, std::vector<messages::pending_fetch> due) {
  auto region = due.front().region;
  auto region_bytes = due.front().region_bytes;  // as of the round's start, plus what it fetches
  try {
    for (auto& f : due) {
      if (s->stopped) break;
      bool answered = co_await fetch_one(s, std::move(f), region_bytes);
      if (!answered) break;
    }
  } catch (std::exception const& e) {
    s->log->error("fetcher failed for region {}: {}", region, e.what());
  }
  s->fetching.erase(region);
}

}  // namespace

awaitable<void> fetch_every(std::shared_ptr<asset_service::impl> s) {
  while (!s->stopped) {
    s->fetch_timer->expires_after(std::chrono::seconds(1));
    boost::system::error_code ec;
    co_await s->fetch_timer->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (s->stopped) co_return;
    try {
      std::map<std::string, std::vector<messages::pending_fetch>> by_region;
      for (auto& f : s->messages.fetches_due(format::now_ms(), 16))
        if (!s->fetching.count(f.region)) by_region[f.region].push_back(std::move(f));
      for (auto& [region, due] : by_region) {
        if (s->fetching.size() >= detail::regions_fetched_at_once) break;  // the others next round
        s->fetching.insert(region);
        boost::asio::co_spawn(*s->strand, fetch_region(s, std::move(due)), boost::asio::detached);
      }
    } catch (std::exception const& e) {
      s->log->error("fetcher failed: {}", e.what());
    }
  }
}

void asset_service::fetch_with(piece_fetcher fetcher) {
  impl_->fetcher = std::move(fetcher);
}

remote_piece asset_service::serve_piece(std::string const& region, std::string const& hash, std::uint64_t offset,
                                        std::uint32_t length) {
  remote_piece p;
  auto a = impl_->messages.asset_for_region(region, hash);
  if (!a) return p;
  int fd = ::open(impl_->files.blob(hash).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return p;
  // Never more than a piece, whatever the asking region says (a whole asset read into
  // memory per request would let a peer exhaust ours).
  auto want = static_cast<std::size_t>(
      std::min<std::uint64_t>(std::min(length, piece_bytes), a->size - std::min(a->size, offset)));
  p.data.resize(want);
  std::size_t got = 0;
  while (got < want) {
    auto n = ::pread(fd, p.data.data() + got, want - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (got < want) return remote_piece{};  // the bytes are damaged or gone: not found
  p.found = true;
  p.size = a->size;
  p.content_type = a->content_type;
  p.width = a->width;
  p.height = a->height;
  p.thumbnail = a->thumbnail;
  p.thumbnail_of = a->thumbnail_of;
  return p;
}

}  // namespace petchat::assets
