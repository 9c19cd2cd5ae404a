// The asset service (docs/PROTOCOL.md, "Assets"): uploads streamed to disk and hashed as
// they arrive, content sniffing (libmagic), thumbnails (libvips), downloads, and the
// collector. The records are the message service's, so that a message and the references
// to its attachments are one write; the bytes are files under the asset directory:
//
//   blobs/<2 hex>/<64 hex>   an asset's bytes, named by their BLAKE2b-256 hash
//   uploads/<upload id>      a resumable upload's bytes so far (durable up to its offset)
//   tmp/                     single-request uploads and thumbnails being made; emptied at start
//   quarantine/              blobs whose bytes no longer match their name (verify)
//
// A blob is linked into place (fsync'd, then the directory fsync'd) before its record is
// written, and unlinked after its record is erased: a crash in between leaves a file
// without a record, which the start-up check removes. Nothing is ever a record without
// its bytes.
//
// Blocking file work (writes, fsync, hashing, sniffing, thumbnails, reads) runs on the
// service's own small thread pool, never on an I/O thread.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "node/config/config.hpp"
#include "node/errors/errors.hpp"
#include "node/messages/messages.hpp"

namespace petchat::assets {

using boost::asio::awaitable;
using errors::result;

// A request body, as the gateway's HTTP connection hands it over.
class byte_source {
 public:
  virtual ~byte_source() = default;
  // Up to `size` bytes into `into`: how many (0: the body is complete), or a failure (the
  // connection broke or timed out).
  virtual awaitable<result<std::size_t>> read(char* into, std::size_t size) = 0;
};

// What one send_to moved from the file to the socket.
struct sent_piece {
  std::size_t bytes = 0;     // 0 and not socket_full: the file has nothing at that offset
  bool socket_full = false;  // the socket took nothing now: wait until it is writable
  bool unsupported = false;  // the file or the socket cannot do it: use read() instead
};

// An asset opened for download: read it in pieces from any offset.
class blob_reader {
 public:
  virtual ~blob_reader() = default;
  virtual awaitable<result<std::size_t>> read(std::uint64_t offset, char* into, std::size_t size) = 0;
  // Up to `size` bytes from `offset` straight into `socket` (a connected stream socket in
  // non-blocking mode), with no copy through user space (sendfile(2)), on the asset pool:
  // a page-cache miss waits there, never on an I/O thread. Takes what the socket has room
  // for now. The disk is asked to read ahead while the socket drains, up to `end` (the end
  // of what is being sent) at most.
  virtual awaitable<result<sent_piece>> send_to(int socket, std::uint64_t offset, std::size_t size,
                                                std::uint64_t end) = 0;
};

struct chunk_result {
  messages::upload_view upload;
  std::optional<messages::asset_view> asset;  // the upload is complete
};

struct collect_report {
  std::size_t assets_removed = 0;
  std::size_t uploads_removed = 0;
  std::uint64_t bytes_freed = 0;
};

struct verify_report {
  std::size_t checked = 0;
  std::size_t skipped = 0;               // in use (being uploaded, linked or collected), or a backup running
  std::vector<std::string> missing;      // printed ids: a record without its bytes
  std::vector<std::string> quarantined;  // printed ids: bytes that no longer match the hash
};

// A piece of an asset as another region sends it (docs/FEDERATION.md, "Assets across
// regions").
struct remote_piece {
  bool found = false;
  std::string data;
  std::uint64_t size = 0;
  std::string content_type;
  std::uint32_t width = 0, height = 0;
  std::string thumbnail, thumbnail_of;  // hashes
};
// Asks `region` for bytes of an asset: nullopt when no answer came. Blocking.
using piece_fetcher = std::function<std::optional<remote_piece>(std::string const& region, std::string const& hash,
                                                                std::uint64_t offset, std::uint32_t length)>;

// The printed form of an asset hash: 64 lower-case hex digits; and back (empty if not).
std::string print_id(std::string const& hash);
std::string parse_id(std::string_view printed);

class asset_service {
 public:
  // Creates the directories (0700) and removes what a crash left behind: tmp/, blobs and
  // upload files without records. Call before traffic.
  asset_service(config::assets_section limits, std::filesystem::path dir, messages::message_service& messages);
  ~asset_service();
  asset_service(asset_service const&) = delete;
  asset_service& operator=(asset_service const&) = delete;

  config::assets_section const& limits() const;

  // One request: `length` bytes from `body`. Errors: asset_too_large, quota_exceeded,
  // bad_request (the body ended early), store_unavailable, internal.
  awaitable<result<messages::asset_view>> upload(std::string user, std::string name, std::string declared_type,
                                                 std::uint64_t length, byte_source& body);

  // Resumable uploads. Errors as messages::message_service's, and for append:
  // offset_mismatch (the failure's numbers hold the upload's offset), upload_overflow,
  // upload_busy, hash_mismatch. Bytes of an interrupted append that arrived are kept.
  awaitable<result<messages::upload_view>> begin(std::string user, messages::upload_view spec);
  result<messages::upload_view> state(std::string const& user, std::string const& id) const;
  awaitable<result<chunk_result>> append(std::string user, std::string id, std::uint64_t offset, std::uint64_t length,
                                         byte_source& body);
  awaitable<errors::status> cancel(std::string user, std::string id);

  // Download: the asset if `user` may have it (else asset_not_found), and its bytes.
  result<messages::asset_view> find(std::string const& user, std::string const& hash) const;
  std::unique_ptr<blob_reader> open(std::string const& hash);

  // Download links (docs/PROTOCOL.md, "Download links"): a token that lets a browser GET
  // one asset without an Authorization header, as session `device` (base64url), until
  // `expires_at_ms` (assets.link_ttl_s from now). Signed with a key this process made at
  // start, so a restart ends them all. link_device: the session a token of this asset was
  // made for; invalid_token (not one, or another asset's), token_expired.
  std::string link(std::string const& hash, std::string const& device, std::int64_t& expires_at_ms) const;
  result<std::string> link_device(std::string const& hash, std::string_view token) const;

  // Other regions: before start(), how to fetch from them (without it nothing is fetched);
  // and another region's request answered (blocking: the disk is read; any thread).
  void fetch_with(piece_fetcher fetcher);
  remote_piece serve_piece(std::string const& region, std::string const& hash, std::uint64_t offset,
                           std::uint32_t length);

  // Starts the periodic collector on `io` (every assets.collect_interval_s) and the fetcher
  // of other regions' assets (every second); stop() ends them.
  void start(boost::asio::io_context& io);
  void stop();
  // Collects what is due now: assets no message refers to past their grace period, and
  // expired uploads.
  awaitable<collect_report> collect();
  // Re-hashes every blob; moves those that do not match into quarantine/ (their records
  // stay: the asset then reports missing bytes). On a thread of its own, one at a time.
  awaitable<verify_report> verify();

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace petchat::assets
