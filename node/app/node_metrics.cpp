// The node's sampled metrics (see node_metrics.hpp).
#include "node/app/node_metrics.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <mutex>

#include "base/format/format.hpp"

namespace petchat::app {

namespace {

// The link's status, taken at most once a second: a scrape reads several families from
// it, and taking it scans the outbox.
class federation_snapshots {
 public:
  explicit federation_snapshots(federation::link& link) : link_(link) {}
  federation::status get() {
    std::lock_guard lock(mutex_);
    auto now = std::chrono::steady_clock::now();
    if (now - taken_ >= std::chrono::seconds(1)) {
      status_ = link_.snapshot();
      taken_ = now;
    }
    return status_;
  }

 private:
  federation::link& link_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point taken_{};
  federation::status status_;
};

double data_dir_bytes(std::filesystem::path const& dir, bool available) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return 0;
  return static_cast<double>(available ? st.f_bavail : st.f_blocks) * static_cast<double>(st.f_frsize);
}

}  // namespace

void add_node_metrics(metrics::registry& metrics, ws::ws_manager& manager, messages::message_service& messages,
                      users::user_service& users, std::filesystem::path const& data_dir) {
  metrics.add_gauge("petchat_ws_streams", "Live streams (WebSocket connections)",
                    [&manager] { return static_cast<double>(manager.streams()); });
  metrics.add_gauge("petchat_ws_sessions", "Deprecated: petchat_ws_streams under its name before 0.2",
                    [&manager] { return static_cast<double>(manager.streams()); });
  // One series per store (it was the message store's alone, without a label): an alert or
  // a panel on the bare name sees both.
  metrics.add_gauges("petchat_store_writes_failing",
                     "1 while the store refuses writes (e.g. a full disk): messages (RocksDB), users (LMDB)",
                     [&messages, &users] {
                       return metrics::series{{{{"store", "messages"}}, messages.write_error().empty() ? 0.0 : 1.0},
                                              {{{"store", "users"}}, users.write_error().empty() ? 0.0 : 1.0}};
                     });
  metrics.add_counter("petchat_ack_walked_events_total",
                      "Mailbox events acknowledgements have looked at for delivery receipts",
                      [&messages] { return static_cast<double>(messages.ack_walked_events()); });
  messages.observe_commits([&metrics](std::size_t requests, std::chrono::nanoseconds took) {
    metrics.store_committed("messages", requests, took);
  });
  users.observe_commits([&metrics](std::size_t requests, std::chrono::nanoseconds took) {
    metrics.store_committed("users", requests, took);
  });
  metrics.add_gauge("petchat_store_lmdb_used_bytes", "The account store's (LMDB) pages in use",
                    [&users] { return static_cast<double>(users.store_used_bytes()); });
  metrics.add_gauge("petchat_store_lmdb_map_bytes", "The account store's (LMDB) map size; it doubles when full",
                    [&users] { return static_cast<double>(users.store_map_bytes()); });
  metrics.add_gauges(
      "petchat_store_rocksdb_bytes",
      "The message store (RocksDB) on disk: live SST files, write-ahead log, pending compaction", [&messages] {
        auto d = messages.disk();
        return metrics::series{{{{"kind", "live_sst"}}, static_cast<double>(d.live_sst_bytes)},
                               {{{"kind", "wal"}}, static_cast<double>(d.wal_bytes)},
                               {{{"kind", "pending_compaction"}}, static_cast<double>(d.pending_compaction_bytes)}};
      });
  metrics.add_gauge("petchat_data_dir_available_bytes", "Free space for the node on the data directory's file system",
                    [data_dir] { return data_dir_bytes(data_dir, true); });
  metrics.add_gauge("petchat_data_dir_size_bytes", "Size of the data directory's file system",
                    [data_dir] { return data_dir_bytes(data_dir, false); });
  metrics::add_process_metrics(metrics);
}

void add_federation_metrics(metrics::registry& metrics, federation::link& link) {
  auto snapshots = std::make_shared<federation_snapshots>(link);
  link.observe_applied([&metrics](std::string const& origin, std::int64_t created_at_ms) {
    // Clamped: a peer's absurd created_at_ms must not overflow the conversion.
    auto ms = std::clamp<std::int64_t>(format::now_ms() - created_at_ms, 0, 30LL * 24 * 3600 * 1000);
    metrics.federation_applied(origin, std::chrono::milliseconds(ms));
  });
  metrics.add_gauge("petchat_federation_connected", "1 while the NATS link is up",
                    [&link] { return link.connected() ? 1.0 : 0.0; });
  metrics.add_counter("petchat_federation_envelopes_published_total",
                      "Message bodies JetStream stored for other regions (resends included)",
                      [&link] { return static_cast<double>(link.published()); });
  metrics.add_counter("petchat_federation_envelopes_applied_total", "Bodies from other regions applied",
                      [&link] { return static_cast<double>(link.applied()); });
  metrics.add_counters("petchat_federation_envelopes_rejected_total", "Envelopes from other regions refused, by reason",
                       [snapshots] {
                         metrics::series out;
                         for (auto const& [reason, n] : snapshots->get().rejects)
                           out.push_back({{{"reason", reason}}, static_cast<double>(n)});
                         return out;
                       });
  metrics.add_gauges("petchat_federation_outbox_entries",
                     "Entries for a region not yet confirmed applied there (to go, or on the way)", [snapshots] {
                       metrics::series out;
                       for (auto const& r : snapshots->get().regions)
                         out.push_back({{{"region", r.region}}, static_cast<double>(r.outbox)});
                       return out;
                     });
  metrics.add_gauges("petchat_federation_oldest_undelivered_seconds",
                     "Age of the oldest entry a region has not confirmed (0 when none): the region's lag", [snapshots] {
                       metrics::series out;
                       for (auto const& r : snapshots->get().regions)
                         out.push_back({{{"region", r.region}}, r.oldest_undelivered_ms / 1000.0});
                       return out;
                     });
  metrics.add_gauges("petchat_federation_inbound_entries", "Entries from a region waiting to be applied here",
                     [snapshots] {
                       metrics::series out;
                       for (auto const& r : snapshots->get().regions)
                         out.push_back({{{"region", r.region}}, static_cast<double>(r.inbound)});
                       return out;
                     });
}

}  // namespace petchat::app
