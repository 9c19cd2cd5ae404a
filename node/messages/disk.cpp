// The store's files as a whole: compaction (space back after expiry), checkpoints
// (backups, node/backup), and RocksDB's own log.
#include "node/messages/detail/service.hpp"

namespace petchat::messages {

void message_service::compact() {
  impl_->db.compact();
}

void message_service::checkpoint_to(std::filesystem::path const& dir) {
  impl_->db.checkpoint_to(dir);
}

blob_removal_gate& message_service::blob_removals() {
  return impl_->blob_removals;
}

void message_service::impl::rocksdb_log(int severity, std::string const& line) {
  static auto const logger = log::get("rocksdb");
  if (severity <= 1)
    logger->debug("{}", line);
  else if (severity == 2)
    logger->warn("{}", line);
  else
    logger->error("{}", line);
}

}  // namespace petchat::messages
