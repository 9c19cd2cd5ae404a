// Uploads, downloads and the start-up check of the asset service (the collector is in
// collect.cpp). Each upload streams its body to a file on the service's pool, hashing as
// it goes; once complete it is sniffed, thumbnailed, linked into place and recorded.
#include <fcntl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sodium.h>

#include "base/format/format.hpp"
#include "node/assets/detail/service.hpp"
#include "node/async/async.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::assets {

using errors::code;
using errors::fail;

std::string print_id(std::string const& hash) {
  return format::hex(hash);
}

std::string parse_id(std::string_view printed) {
  return detail::from_hex(printed);
}

errors::failure asset_service::impl::file_failure(detail::file_error const& e) const {
  log->error("asset files: {}", e.what());
  if (e.error == ENOSPC || e.error == EDQUOT) {
    auto f = fail(code::store_unavailable, "the node's disk is full: nothing was stored; try again later");
    f.retry_after_s = 5;
    return f;
  }
  return fail(code::internal, "the asset could not be stored");
}

awaitable<void> asset_service::impl::claim(std::string const& hash) {
  std::chrono::milliseconds const long_time = std::chrono::hours(1);
  for (;;) {
    bool got = co_await claim_within(hash, long_time);
    if (got) co_return;
  }
}

awaitable<bool> asset_service::impl::claim_within(std::string const& hash, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  // Looked at again after 5 ms, then less and less often, up to every 100 ms: a claim is
  // mostly held briefly, and hundreds of uploads waiting must not wake 200 times a second each.
  auto wait = std::chrono::milliseconds(5);
  for (;;) {
    if (try_claim(hash)) co_return true;
    if (std::chrono::steady_clock::now() >= until) co_return false;
    boost::asio::steady_timer pause(co_await boost::asio::this_coro::executor, wait);
    co_await pause.async_wait(boost::asio::use_awaitable);
    wait = std::min(wait * 2, std::chrono::milliseconds(100));
  }
}

bool asset_service::impl::try_claim(std::string const& hash) {
  std::lock_guard lock(mutex);
  return claims.insert(hash).second;
}

void asset_service::impl::release(std::string const& hash) {
  std::lock_guard lock(mutex);
  claims.erase(hash);
}

namespace {

struct piece {
  std::size_t bytes = 0;
  std::optional<errors::failure> error;
};

awaitable<piece> read_piece(byte_source& body, char* into, std::size_t want) {
  piece p;
  if (want == 0) co_return p;
  auto n = co_await body.read(into, want);
  if (!n)
    p.error = n.error();
  else if (n.value() == 0)
    p.error = fail(code::bad_request, "the body ended before its Content-Length");
  else
    p.bytes = n.value();
  co_return p;
}

// A failed write is its result, not an exception: thrown, it would cancel the read beside
// it, and the group would throw the read's cancellation instead (awaitable_operators).
awaitable<std::optional<detail::file_error>> write_piece(boost::asio::thread_pool& pool, detail::file_writer& out,
                                                         char const* data, std::size_t size) {
  auto work = [&out, data, size]() -> std::optional<detail::file_error> {
    try {
      out.write(data, size);
    } catch (detail::file_error const& e) {
      return e;
    }
    return std::nullopt;
  };
  co_return co_await async::offload(pool, std::move(work));
}

awaitable<bool> hash_piece(boost::asio::thread_pool& pool, detail::hasher& h, char const* data, std::size_t size) {
  auto work = [&h, data, size] {
    h.update(data, size);
    return true;
  };
  co_return co_await async::offload(pool, std::move(work));
}

}  // namespace

awaitable<detail::copied> asset_service::impl::copy_body(byte_source& body, detail::file_writer& out, detail::hasher& h,
                                                         std::uint64_t length) {
  using namespace boost::asio::experimental::awaitable_operators;
  detail::copied c;
  // Two buffers: while one piece is written and hashed (on two pool threads), the next is
  // read. Small buffers when many uploads run at once: memory stays bounded.
  std::size_t size = active_copies.fetch_add(1) < 16 ? (512u << 10) : (32u << 10);
  // Aligned, so that the file can be written around the page cache (file_writer, direct).
  auto aligned = [](std::size_t n) {
    auto* p = static_cast<char*>(std::aligned_alloc(detail::file_writer::direct_alignment, n));
    if (!p) throw std::bad_alloc();
    return std::unique_ptr<char, void (*)(void*)>(p, std::free);
  };
  auto now = aligned(size), next = aligned(size);
  auto want = [&](std::uint64_t after) {
    return static_cast<std::size_t>(std::min<std::uint64_t>(size, length - std::min(length, after)));
  };
  auto p = co_await read_piece(body, now.get(), want(0));
  detail::hasher before;  // the hash without the piece on its way: kept if its write fails
  try {
    while (!p.error && p.bytes > 0) {
      before = h;
      auto [following, failed, hashed] =
          co_await (read_piece(body, next.get(), want(c.bytes + p.bytes)) &&
                    write_piece(pool, out, now.get(), p.bytes) && hash_piece(pool, h, now.get(), p.bytes));
      (void)hashed;
      if (failed) {
        // The piece hashed alongside the failed write is taken out again: the hash is that
        // of the c.bytes written, and the next chunk goes on from it instead of hashing the
        // whole file again.
        c.error = file_failure(*failed);
        h = before;
        break;
      }
      c.bytes += p.bytes;
      p = std::move(following);
      std::swap(now, next);
    }
    if (p.error && !c.error) c.error = p.error;
  } catch (...) {
    active_copies.fetch_sub(1);
    throw;
  }
  active_copies.fetch_sub(1);
  co_return c;
}

namespace {

struct finished_files {
  std::string content_type;
  detail::image_facts image;
  std::string thumbnail_hash;
  std::uint64_t thumbnail_size = 0;
  bool placed = false;  // this upload put the blob in place (it was not there)
};

}  // namespace

awaitable<result<messages::asset_view>> asset_service::impl::finish(std::string user, detail::fs::path file,
                                                                    messages::new_asset a, std::string upload_id) {
  co_await claim(a.hash);
  claims_held guard{*this, {a.hash}};
  // Known: recorded, and its bytes there (a blob `verify` quarantined is placed again).
  std::error_code unknown;  // (a stat that fails: placed again, which finds out what is wrong)
  bool known = messages.asset_exists(a.hash) && detail::fs::exists(files.blob(a.hash), unknown);
  // Stored without a thumbnail (made too slowly, a full tmp/, its thumbnail's claim busy):
  // this upload of the same bytes tries again.
  bool thumbless = known && messages.asset_thumbnail(a.hash).empty();
  auto thumb_path = files.new_tmp();
  detail::tmp_file thumb_file{thumb_path};
  auto sniff = [&file] {
    finished_files f;
    f.content_type = detail::sniff(detail::read_head(file, 256 << 10));
    return f;
  };
  finished_files f;
  try {
    f = co_await async::offload(pool, std::move(sniff));
    if ((!known || thumbless) && detail::is_image(f.content_type)) {
      // One image of a user's at a time in the thumbnail line (one thread, first come first
      // served): a user uploading many costly images waits for their own, and holds up
      // everyone else's by one image at most. (A claim's key of more than 32 bytes, which no
      // hash's claim is.)
      std::string turn = "the thumbnail line's turn of user " + user;
      co_await claim(turn);
      claims_held in_line{*this, {turn}};
      auto examine = [this, &file, &thumb_path, &f] {
        f.image = detail::examine_image(file, thumb_path, limits.max_image_pixels, limits.thumbnail_px,
                                        std::chrono::milliseconds(limits.thumbnail_time_limit_ms));
        if (f.image.thumbnail) {
          f.thumbnail_hash = detail::hash_file(thumb_path);
          std::error_code ec;
          f.thumbnail_size = detail::fs::file_size(thumb_path, ec);
          if (ec) throw detail::file_error(thumb_path.string() + ": " + ec.message(), ec.value());
        }
        return true;
      };
      co_await async::offload(images, std::move(examine));
      if (f.image.timed_out)
        log->warn(
            "asset {}: {}x{} image stored without a thumbnail: not made within assets.thumbnail_time_limit_ms "
            "({} ms)",
            print_id(a.hash), f.image.width, f.image.height, limits.thumbnail_time_limit_ms);
    }
  } catch (detail::file_error const& e) {
    co_return file_failure(e);
  }
  // A blob is linked or unlinked only by the holder of its hash's claim: the thumbnail's
  // too, which the collector (its last original gone) or a refused upload may be removing.
  // Not waited for without end: an upload of the thumbnail's bytes holds that claim while
  // it waits for its own thumbnail's.
  if (!f.thumbnail_hash.empty() && f.thumbnail_hash != a.hash) {
    std::chrono::milliseconds const patience = std::chrono::seconds(5);
    bool got = co_await claim_within(f.thumbnail_hash, patience);
    if (got) {
      guard.hashes.push_back(f.thumbnail_hash);
    } else {
      log->warn("asset {}: its thumbnail {} is busy elsewhere; stored without one", print_id(a.hash),
                print_id(f.thumbnail_hash));
      f.thumbnail_hash.clear();
      f.thumbnail_size = 0;
    }
  }
  auto place = [this, &a, &file, &thumb_path, &f, known] {
    if (!f.thumbnail_hash.empty()) detail::place(thumb_path, files.blob(f.thumbnail_hash));
    std::error_code ignored;
    std::filesystem::remove(thumb_path, ignored);                          // tmp/: nothing there needs to last
    if (!known) f.placed = detail::place(file, files.blob(a.hash), true);  // fsync'd as it was written
    return true;
  };
  try {
    co_await async::offload(pool, std::move(place));
  } catch (detail::file_error const& e) {
    co_return file_failure(e);
  }
  a.content_type = f.content_type;
  a.width = f.image.width;
  a.height = f.image.height;
  a.thumbnail_hash = f.thumbnail_hash;
  a.thumbnail_size = f.thumbnail_size;
  auto hash = a.hash;
  auto recorded = co_await messages.record_asset(user, std::move(a), upload_id);
  if (!recorded && f.placed && !messages.asset_exists(hash)) {
    // Refused (the quota): the bytes this upload put in place go again, its thumbnail's too
    // unless another original's record names it (both claims are held here).
    auto thumb = f.thumbnail_hash.empty() || messages.asset_exists(f.thumbnail_hash) ? "" : f.thumbnail_hash;
    auto undo = [this, hash, thumb] {
      try {
        detail::remove_file(files.blob(hash));
        if (!thumb.empty()) detail::remove_file(files.blob(thumb));
      } catch (detail::file_error const& e) {  // the refusal stands; the start-up check finds the rest
        log->error("asset files: {}", e.what());
      }
      return true;
    };
    co_await async::offload(pool, std::move(undo));
  }
  co_return recorded;
}

asset_service::asset_service(config::assets_section limits, std::filesystem::path dir,
                             messages::message_service& messages)
    : impl_(std::make_shared<impl>(limits, std::move(dir), messages)) {
  detail::start_images();
  randombytes_buf(impl_->link_key.data(), impl_->link_key.size());
  impl_->remove_orphans();
}

asset_service::~asset_service() {
  stop();
  impl_->fetches.join();  // a fetch in progress stops at its next piece (stopped)
  impl_->checks.join();   // a verify stops after the file it hashes (stopped)
  impl_->images.join();
  impl_->pool.join();
}

config::assets_section const& asset_service::limits() const {
  return impl_->limits;
}

awaitable<result<messages::asset_view>> asset_service::upload(std::string user, std::string name,
                                                              std::string declared_type, std::uint64_t length,
                                                              byte_source& body) {
  auto s = impl_;
  if (length == 0) co_return fail(code::invalid_field, "an asset has at least one byte", "content-length");
  // Uploads of one request count against the quota while they arrive, as resumable ones do
  // from their start: many at once must not each pass a check none of them has counted in.
  {
    std::lock_guard lock(s->mutex);
    auto starting = s->starting.find(user);  // resumable uploads whose start is being written
    auto pending = s->streaming[user] + (starting == s->starting.end() ? 0 : starting->second);
    if (auto ok = s->messages.quota_allows(user, length, pending); !ok) {
      if (s->streaming[user] == 0) s->streaming.erase(user);
      co_return ok.error();
    }
    s->streaming[user] += length;
  }
  struct arriving {
    impl& s;
    std::string const& user;
    std::uint64_t length;
    ~arriving() {
      std::lock_guard lock(s.mutex);
      if ((s.streaming[user] -= length) == 0) s.streaming.erase(user);
    }
  } counted{*s, user, length};
  auto path = s->files.new_tmp();
  detail::tmp_file tmp_file{path};  // an exception on the way must not leave up to 2 GiB in tmp/
  std::unique_ptr<detail::file_writer> out;
  try {
    out = std::make_unique<detail::file_writer>(path, 0, true);
  } catch (detail::file_error const& e) {
    co_return s->file_failure(e);
  }
  detail::hasher h;
  auto copied = co_await s->copy_body(body, *out, h, length);
  auto sync = [&out] {
    out->sync();
    out.reset();
    return true;
  };
  std::optional<errors::failure> failed = copied.error;
  if (!failed) try {
      co_await async::offload(s->pool, std::move(sync));
    } catch (detail::file_error const& e) {
      failed = s->file_failure(e);
    }
  std::optional<result<messages::asset_view>> answer;
  if (failed) {
    answer.emplace(*failed);
  } else {
    messages::new_asset a;
    a.hash = h.finish();
    a.size = length;
    a.name = std::move(name);
    a.declared_type = std::move(declared_type);
    answer.emplace(co_await s->finish(user, path, std::move(a), ""));
  }
  out.reset();
  auto drop = [path] {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
    return true;
  };
  tmp_file.armed = false;  // removed on the pool, not on this thread (a large file's unlink takes a while)
  co_await async::offload(s->pool, std::move(drop));
  co_return std::move(*answer);
}

result<messages::asset_view> asset_service::find(std::string const& user, std::string const& hash) const {
  return impl_->messages.asset_for(user, hash);
}

namespace {

class file_reader final : public blob_reader {
 public:
  file_reader(int fd, boost::asio::thread_pool& pool) : fd_(fd), pool_(pool) {}
  ~file_reader() override { ::close(fd_); }
  awaitable<result<std::size_t>> read(std::uint64_t offset, char* into, std::size_t size) override {
    auto work = [fd = fd_, offset, into, size]() -> long {
      for (;;) {
        auto n = ::pread(fd, into, size, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR) continue;
        return n;
      }
    };
    long n = co_await async::offload(pool_, std::move(work));
    if (n < 0) co_return fail(code::internal, "the asset could not be read");
    co_return static_cast<std::size_t>(n);
  }
  awaitable<result<sent_piece>> send_to(int socket, std::uint64_t offset, std::size_t size,
                                        std::uint64_t end) override {
    auto work = [fd = fd_, socket, offset, size, end]() -> std::pair<long, int> {
      for (;;) {
        auto at = static_cast<off_t>(offset);
        auto n = ::sendfile(socket, fd, &at, size);
        if (n < 0 && errno == EINTR) continue;
        int error = n < 0 ? errno : 0;
        // The disk reads the next window while the socket drains: sendfile's own read-ahead
        // stops when the socket is full, and the disk would wait for the network each time.
        auto ahead = std::min<std::uint64_t>(2 * size, end > std::uint64_t(at) ? end - std::uint64_t(at) : 0);
        if (n > 0 && ahead > 0) ::posix_fadvise(fd, at, static_cast<off_t>(ahead), POSIX_FADV_WILLNEED);
        return {n, error};
      }
    };
    auto [n, error] = co_await async::offload(pool_, std::move(work));
    sent_piece piece;
    if (n >= 0) {
      piece.bytes = static_cast<std::size_t>(n);
    } else if (error == EAGAIN || error == EWOULDBLOCK) {
      piece.socket_full = true;
    } else if (error == EINVAL || error == ENOSYS) {
      piece.unsupported = true;
    } else {
      co_return fail(code::internal, "the asset could not be sent");
    }
    co_return piece;
  }

 private:
  int fd_;
  boost::asio::thread_pool& pool_;
};

}  // namespace

std::unique_ptr<blob_reader> asset_service::open(std::string const& hash) {
  int fd = ::open(impl_->files.blob(hash).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    impl_->log->error("asset {}: its bytes are missing ({})", print_id(hash), std::strerror(errno));
    return nullptr;
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return std::make_unique<file_reader>(fd, impl_->pool);
}

void asset_service::impl::remove_orphans() {
  std::size_t removed = 0;
  // Files only: anything else there (a directory an operator made, say) is not ours to
  // remove, and is no reason not to start.
  auto orphan = [&](detail::fs::directory_entry const& e) {
    std::error_code ec;
    if (!e.is_regular_file(ec)) {
      log->warn("{} is not a file the asset store made; left as it is", e.path().string());
      return;
    }
    try {
      detail::remove_file(e.path());
      ++removed;
    } catch (std::exception const& x) {
      log->warn("{} (left by a crash) could not be removed: {}", e.path().string(), x.what());
    }
  };
  auto walk = [&](detail::fs::path const& dir, auto&& each) {
    try {
      for (auto const& e : detail::fs::directory_iterator(dir)) each(e);
    } catch (std::exception const& x) {
      log->warn("{} could not be looked through for files left by a crash: {}", dir.string(), x.what());
    }
  };
  walk(files.root() / "blobs", [&](detail::fs::directory_entry const& shard) {
    auto name = shard.path().filename().string();  // two hex digits: the hashes' first byte
    bool ours = name.size() == 2 && std::all_of(name.begin(), name.end(), [](char c) {
                  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                });
    std::error_code ec;
    if (!ours || !shard.is_directory(ec)) return;
    walk(shard.path(), [&](detail::fs::directory_entry const& e) {
      auto hash = detail::from_hex(e.path().filename().string());
      if (!hash.empty() && messages.asset_exists(hash)) return;
      orphan(e);
    });
  });
  walk(files.root() / "uploads", [&](detail::fs::directory_entry const& e) {
    if (!messages.upload_exists(e.path().filename().string())) orphan(e);
  });
  if (removed) log->warn("removed {} asset files without records (left by a crash)", removed);
}

}  // namespace petchat::assets
