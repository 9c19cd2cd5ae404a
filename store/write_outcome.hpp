// What became of one write request in a commit pipeline (LMDB's or RocksDB's).
#pragma once

namespace petchat::store {

enum class write_outcome {
  committed,    // the request's changes are durable (fsync'd)
  rolled_back,  // the request chose not to write (returned false); nothing changed
  failed,       // the request threw, or the batch could not be committed; nothing changed
};

}  // namespace petchat::store
