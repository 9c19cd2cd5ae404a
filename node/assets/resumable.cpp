// Resumable uploads (docs/PROTOCOL.md, "Resumable uploads"): the bytes go to
// uploads/<id>; after each chunk (or what arrived of it) the file is fsync'd and then its
// offset recorded, so the recorded offset is always durable. A chunk starts by cutting the
// file back to that offset: bytes past it may not have reached the disk. A complete
// upload's record names its asset until it expires: the completing chunk, sent again,
// gets the same answer.
#include "node/assets/detail/service.hpp"
#include "node/async/async.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::assets {

using errors::code;
using errors::fail;

namespace {

// A declared length counted while its upload's start is written, so that uploads in one
// request started meanwhile see it (their check reads the committed quota, what is arriving
// and this); given back once the write is done, which counts it itself. Other starts do
// not count it: their writes come after this one's and read the quota it wrote.
struct reservation {
  std::shared_ptr<asset_service::impl> s;
  std::string user;
  std::uint64_t bytes;
  ~reservation() {
    std::lock_guard lock(s->mutex);
    if ((s->starting[user] -= bytes) == 0) s->starting.erase(user);
  }
};

}  // namespace

awaitable<result<messages::upload_view>> asset_service::begin(std::string user, messages::upload_view spec) {
  std::uint64_t streaming = 0;  // the user's uploads in one request arriving count as well
  // (A length over the largest asset is refused by the write: nothing to hold for it.)
  auto holds = spec.length <= impl_->limits.max_asset_bytes ? spec.length : 0;
  {
    std::lock_guard lock(impl_->mutex);
    if (auto it = impl_->streaming.find(user); it != impl_->streaming.end()) streaming = it->second;
    impl_->starting[user] += holds;
  }
  reservation held{impl_, user, holds};
  co_return co_await impl_->messages.begin_upload(std::move(user), std::move(spec), streaming);
}

result<messages::upload_view> asset_service::state(std::string const& user, std::string const& id) const {
  auto up = impl_->messages.upload(user, id);
  if (up && !up->asset.empty() && !find(user, up->asset))
    return fail(code::upload_not_found, "upload '" + id + "' was complete, but the asset it became is gone");
  return up;
}

namespace {

// The append's hold on its upload, given up however the append ends.
struct busy_hold {
  asset_service::impl& s;
  std::string id;
  ~busy_hold() { s.not_busy(id); }
};

}  // namespace

awaitable<result<chunk_result>> asset_service::append(std::string user, std::string id, std::uint64_t offset,
                                                      std::uint64_t length, byte_source& body) {
  auto s = impl_;
  auto up = s->messages.upload(user, id);
  if (!up) co_return up.error();
  if (offset != up->offset) {
    auto f = fail(code::offset_mismatch, "the upload is at offset " + std::to_string(up->offset) + ", not " +
                                             std::to_string(offset) +
                                             (up->asset.empty() ? "" : ": it is complete (GET it for its asset)"));
    f.numbers = {{"offset", up->offset}};
    co_return f;
  }
  // Written so that it cannot wrap: a Content-Length near 2^64 once passed the check.
  if (offset > up->length || length > up->length - offset)
    co_return fail(code::upload_overflow, "the chunk of " + std::to_string(length) + " bytes at offset " +
                                              std::to_string(offset) + " would end past the upload's length " +
                                              std::to_string(up->length));
  if (!up->asset.empty()) {  // complete: its answer again (the first may have been lost)
    auto a = find(user, up->asset);
    if (!a) co_return fail(code::upload_not_found, "upload '" + id + "' was complete, but the asset it became is gone");
    co_return chunk_result{*up, std::move(a.value())};
  }
  if (!s->try_busy(id)) co_return fail(code::upload_busy, "another request is sending to this upload");
  busy_hold hold{*s, id};
  // Read again now that this request holds the upload: another one (a chunk, a DELETE, the
  // collector) may have finished between the first read and try_busy, and truncating the
  // file to a stale offset would destroy bytes already made durable.
  auto current = s->messages.upload(user, id);
  if (!current) co_return current.error();
  if (current->offset != offset) {
    auto f = fail(code::offset_mismatch,
                  "the upload is at offset " + std::to_string(current->offset) + ", not " + std::to_string(offset));
    f.numbers = {{"offset", current->offset}};
    co_return f;
  }

  // The hash so far: kept from the last chunk, or read again from the file (after a restart).
  std::optional<detail::partial_hash> known;
  {
    std::lock_guard lock(s->mutex);
    auto it = s->hashes.find(id);
    if (it != s->hashes.end() && it->second.offset == offset) known = it->second;
  }
  auto path = s->files.upload(id);
  detail::hasher h;
  std::unique_ptr<detail::file_writer> out;
  bool lost = false;  // its file holds less than its offset: restored from a backup, say
  auto prepare = [&] {
    if (known) {
      h = known->h;
    } else if (offset > 0) {
      std::error_code unknown;  // not known whether it is there (EACCES, EIO): a failure, not a loss
      bool there = std::filesystem::exists(path, unknown);
      if (unknown) throw detail::file_error("upload " + id + ": " + unknown.message(), unknown.value());
      if (!there || detail::feed_file(path, h, offset) != offset) {
        lost = true;
        detail::remove_file(path);
        return true;
      }
      std::lock_guard lock(s->mutex);  // kept at once: an empty chunk must not make it read again
      s->hashes[id] = detail::partial_hash{offset, h};
    }
    out = std::make_unique<detail::file_writer>(path, offset, true);
    return true;
  };
  try {
    co_await async::offload(s->pool, std::move(prepare));
  } catch (detail::file_error const& e) {
    co_return s->file_failure(e);
  }
  if (lost) {  // the upload ends (its quota given back): the client starts again, not 500s until it expires
    co_await s->messages.end_upload(id);
    co_return fail(code::upload_not_found, "upload '" + id +
                                               "' lost the bytes it had received (the node was restored from a "
                                               "backup, or its file is gone): start the upload again");
  }
  auto copied = co_await s->copy_body(body, *out, h, length);
  // The file's first bytes: its directory entry made durable too, or a power loss could
  // leave the recorded offset without the file.
  auto sync = [&out, &path, offset] {
    out->sync();
    out.reset();
    if (offset == 0) detail::sync_dir(path.parent_path());
    return true;
  };
  try {
    co_await async::offload(s->pool, std::move(sync));
  } catch (detail::file_error const& e) {
    co_return s->file_failure(e);
  }
  std::uint64_t now_at = offset + copied.bytes;
  if (copied.error || now_at < up->length) {
    // What arrived is kept: recorded, and its hash kept for the next chunk (a failed write's
    // piece is in neither: copy_body). Nothing written: the hash kept before stands.
    if (copied.bytes > 0) {
      auto moved = co_await s->messages.advance_upload(id, now_at);
      if (!moved) co_return moved.error();
    }
    std::lock_guard lock(s->mutex);
    if (copied.bytes > 0) s->hashes[id] = detail::partial_hash{now_at, h};
  }
  if (copied.error || now_at < up->length) {
    if (copied.error && copied.bytes > 0) {  // what arrived before the failure is kept: told where it stands
      auto f = *copied.error;
      f.numbers = {{"offset", now_at}};
      co_return f;
    }
    if (copied.error) co_return *copied.error;
    up->offset = now_at;
    co_return chunk_result{*up, std::nullopt};
  }
  {
    std::lock_guard lock(s->mutex);
    s->hashes.erase(id);
  }
  messages::new_asset a;
  a.hash = h.finish();
  a.size = up->length;
  a.name = up->name;
  a.declared_type = up->declared_type;
  if (!up->expected_hash.empty() && up->expected_hash != a.hash) {
    co_await s->messages.end_upload(id);
    auto drop = [path] {
      detail::remove_file(path);
      return true;
    };
    co_await async::offload(s->pool, std::move(drop));
    co_return fail(code::hash_mismatch, "the bytes' hash is " + print_id(a.hash) + ", not the declared " +
                                            print_id(up->expected_hash) + ": nothing was stored");
  }
  auto done = co_await s->finish(user, path, std::move(a), id);
  if (!done) co_return done.error();
  auto drop = [path] {
    detail::remove_file(path);
    return true;
  };
  co_await async::offload(s->pool, std::move(drop));
  up->offset = up->length;
  co_return chunk_result{*up, std::move(done.value())};
}

awaitable<errors::status> asset_service::cancel(std::string user, std::string id) {
  auto s = impl_;
  auto up = state(user, id);  // a complete upload whose asset is gone is none, as for GET
  if (!up) co_return up.error();
  if (!s->try_busy(id)) co_return fail(code::upload_busy, "another request is sending to this upload");
  busy_hold hold{*s, id};
  auto ended = co_await s->messages.end_upload(id);
  if (!ended) co_return ended.error();
  {
    std::lock_guard lock(s->mutex);
    s->hashes.erase(id);
  }
  auto drop = [path = s->files.upload(id)] {
    detail::remove_file(path);
    return true;
  };
  co_await async::offload(s->pool, std::move(drop));
  co_return errors::ok();
}

}  // namespace petchat::assets
