// The store's files as a whole: compaction (space back after expiry) and checkpoints
// (backups, node/backup).
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

}  // namespace petchat::messages
