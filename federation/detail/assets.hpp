// Asset fetches between regions (docs/FEDERATION.md, "Assets across regions"): a core NATS
// request on <prefix>.v1.asset.<holder>.<asker> carrying a signed asset_request, answered
// with a signed asset_piece. Nothing here is durable: the asker keeps what it still has to
// fetch in its own store and asks again after a failure.
//
// Threads: setup() and destroy() on the manager thread; fetch() on any thread but NATS.c's
// (it blocks up to its timeout); the request callback on NATS.c's thread of its
// subscription (it calls the node's asset_server there, which may read the disk).
#pragma once

#include <nats/nats.h>

#include <map>

#include "base/limits/limits.hpp"
#include "federation/detail/connection.hpp"
#include "federation/detail/link_state.hpp"

namespace petchat::federation::detail {

class asset_exchange {
 public:
  asset_exchange(link_state& state, nats_connection& conn) : s_(state), conn_(conn) {}

  void serve(link::asset_server server) { server_ = std::move(server); }
  // Subscribes to this region's asset subject if it is not (manager thread, after a
  // reconnect). False with the error set if it could not.
  bool setup();
  // Stops taking requests and waits (up to 2 s) for the one being answered: link::stop,
  // before anything the answer uses goes.
  void drain();
  void destroy();

  std::optional<asset_piece> fetch(std::string const& region, asset_request const& request, int timeout_ms);

 private:
  static void on_request(natsConnection* nc, natsSubscription* sub, natsMsg* msg, void* self);
  void answer(natsMsg* msg);

  link_state& s_;
  nats_connection& conn_;
  link::asset_server server_;
  natsSubscription* sub_ = nullptr;  // manager thread only
  // Pieces served to each asking region: at most pieces_per_second on average, as many at
  // once (62.5 MiB/s of 256 KiB pieces; a whole number of ms apart: 4). A region past it gets no answer (it asks again
  // after its back-off): one region replaying signed requests must not have this node read, sign and send without end.
  // Told in the log at most once a minute per region (NATS.c's thread of the subscription only).
  static constexpr std::uint32_t pieces_per_second = 250;
  limits::rate_buckets served_{pieces_per_second, 1000, 1024};
  std::map<std::string, std::int64_t> told_over_;
};

}  // namespace petchat::federation::detail
