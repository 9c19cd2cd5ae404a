// The collector: assets no message refers to, past their grace period, and expired
// uploads go; their records first, then their files. A crash in between leaves files
// without records, which the next start removes (remove_orphans). And verify: every blob
// re-hashed.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "base/format/format.hpp"
#include "node/assets/detail/service.hpp"
#include "node/async/async.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::assets {

namespace {

constexpr std::size_t collect_batch = 256;

awaitable<void> remove_files(asset_service::impl& s, std::vector<detail::fs::path> paths) {
  auto work = [&s, paths] {
    for (auto const& p : paths) try {
        detail::remove_file(p);
      } catch (detail::file_error const& e) {
        s.log->error("collector: {}", e.what());
      }
    return true;
  };
  co_await async::offload(s.pool, std::move(work));
}

awaitable<void> collect_assets(asset_service::impl& s, std::int64_t now, collect_report& report) {
  for (;;) {
    auto due = s.messages.assets_due(now, collect_batch);
    std::size_t skipped = 0;
    for (auto& [hash, keys] : due) {
      if (!s.try_claim(hash)) {  // an upload of the same bytes: looked at next time
        ++skipped;
        continue;
      }
      // Its thumbnail's claim too, for the write's whole span: an upload of the thumbnail's
      // very bytes (one may save and send a preview) must not be recorded between the
      // write's look at the thumbnail's uploaders and its removal of the thumbnail's record.
      claims_held claimed{s, {hash}};
      auto thumb = s.messages.asset_thumbnail(hash);
      if (!thumb.empty() && thumb != hash) {
        if (!s.try_claim(thumb)) {  // being linked or uploaded: looked at next time
          ++skipped;
          continue;
        }
        claimed.hashes.push_back(thumb);
      }
      // A backup being made must find every blob its checkpoint's messages name: the
      // record and the files go only while none is (messages::blob_removal_gate).
      auto& gate = s.messages.blob_removals();
      if (!gate.try_enter()) co_return;  // next round
      struct entered {
        messages::blob_removal_gate& gate;
        ~entered() { gate.leave(); }
      } leave_after{gate};
      std::error_code ec;
      auto size = detail::fs::file_size(s.files.blob(hash), ec);
      if (ec) size = 0;
      auto r = co_await s.messages.collect_asset(hash, std::move(keys), now);
      if (r && r->removed) {
        std::vector<detail::fs::path> paths;
        for (auto const& blob : r->blobs) {
          if (blob != hash && s.messages.asset_exists(blob)) continue;  // recorded again since
          paths.push_back(s.files.blob(blob));
        }
        co_await remove_files(s, std::move(paths));
        report.assets_removed += r->blobs.size();
        report.bytes_freed += size;
      }
      if (!r) co_return;
    }
    if (due.size() < collect_batch || skipped == due.size()) co_return;
  }
}

awaitable<void> collect_uploads(asset_service::impl& s, std::int64_t now, collect_report& report) {
  // As many more as are busy (a chunk arriving, passed over till next time): expired
  // uploads kept busy at the head of the order must not keep the others from ever going.
  std::size_t busy = 0;
  {
    std::lock_guard lock(s.mutex);
    busy = s.busy.size();
  }
  // Page after page while pages come full (a burst of expiries, complete uploads' records
  // among them, must not wait a minute per page), up to 16 pages a run.
  for (int page = 0; page < 16; ++page) {
    auto expired = s.messages.uploads_expired(now, collect_batch + busy);
    std::size_t ended_here = 0;
    for (auto const& id : expired) {
      if (!s.try_busy(id)) continue;  // a chunk is arriving: next time
      auto ended = co_await s.messages.end_upload(id);
      if (ended) ++ended_here;
      if (ended && ended.value()) {  // one in progress: its file goes
        {
          std::lock_guard lock(s.mutex);
          s.hashes.erase(id);
        }
        std::vector<detail::fs::path> paths{s.files.upload(id)};
        co_await remove_files(s, std::move(paths));
        ++report.uploads_removed;
      }
      s.not_busy(id);
    }
    if (expired.size() < collect_batch + busy || ended_here == 0) co_return;
  }
}

awaitable<void> collect_every(std::shared_ptr<asset_service::impl> s, asset_service* service) {
  while (!s->stopped) {
    s->timer->expires_after(std::chrono::seconds(s->limits.collect_interval_s));
    boost::system::error_code ec;
    co_await s->timer->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (s->stopped) co_return;
    try {
      auto r = co_await service->collect();
      if (r.assets_removed || r.uploads_removed)
        s->log->info("collector: removed {} assets ({} bytes) and {} expired uploads", r.assets_removed, r.bytes_freed,
                     r.uploads_removed);
    } catch (std::exception const& e) {
      s->log->error("collector failed: {}", e.what());
    }
  }
}

}  // namespace

awaitable<collect_report> asset_service::collect() {
  collect_report report;
  auto now = format::now_ms();
  co_await collect_assets(*impl_, now, report);
  co_await collect_uploads(*impl_, now, report);
  co_return report;
}

// The collector and the fetcher run on one strand, where stop() cancels their timers.
void asset_service::start(boost::asio::io_context& io) {
  auto strand = boost::asio::make_strand(io);
  impl_->strand = strand;
  impl_->timer = std::make_unique<boost::asio::steady_timer>(strand);
  impl_->fetch_timer = std::make_unique<boost::asio::steady_timer>(strand);
  boost::asio::co_spawn(strand, collect_every(impl_, this), boost::asio::detached);
  if (impl_->fetcher) boost::asio::co_spawn(strand, fetch_every(impl_), boost::asio::detached);
}

void asset_service::stop() {
  impl_->stopped = true;
  if (!impl_->strand) return;
  boost::asio::post(*impl_->strand, [s = impl_] {
    if (s->timer) s->timer->cancel();
    if (s->fetch_timer) s->fetch_timer->cancel();
  });
}

namespace {

// Blocking (the `checks` thread).
verify_report verify_all(asset_service::impl& s) {
  verify_report report;
  for (auto const& [hash, size] : s.messages.all_assets()) {
    if (s.stopped) break;  // shutting down: the report goes to no one
    auto path = s.files.blob(hash);
    std::error_code ec;
    if (!detail::fs::exists(path, ec)) {
      if (s.messages.asset_exists(hash)) {  // (not collected meanwhile)
        ++report.checked;
        report.missing.push_back(print_id(hash));
      }
      continue;
    }
    if (!s.try_claim(hash)) {
      ++report.skipped;
      continue;
    }
    claims_held held{s, {hash}};
    ++report.checked;
    try {
      if (detail::hash_file(path) == hash && detail::fs::file_size(path) == size) continue;
      // A backup being made must find every blob its checkpoint names (as the collector).
      auto& gate = s.messages.blob_removals();
      if (!gate.try_enter()) {
        --report.checked;
        ++report.skipped;
        continue;
      }
      struct entered {
        messages::blob_removal_gate& gate;
        ~entered() { gate.leave(); }
      } leave_after{gate};
      auto to = s.files.quarantine(hash);
      detail::fs::rename(path, to);
      detail::sync_dir(to.parent_path());
      detail::sync_dir(path.parent_path());
      report.quarantined.push_back(print_id(hash));
      s.log->error("asset {}: its bytes no longer match its hash: moved to quarantine/", print_id(hash));
    } catch (std::exception const& e) {
      s.log->error("verify {}: {}", print_id(hash), e.what());
      report.missing.push_back(print_id(hash));
    }
  }
  return report;
}

}  // namespace

awaitable<verify_report> asset_service::verify() {
  auto s = impl_;
  auto work = [s] { return verify_all(*s); };
  co_return co_await async::offload(s->checks, std::move(work));
}

}  // namespace petchat::assets
