// The admin API's /v1/admin/backup (admin_backup.cpp): the snapshot petchatctl backup
// copies (node/backup).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <string>

#include "node/backup/backup.hpp"
#include "node/gateway/gateway.hpp"

namespace petchat::gateway::detail {

// POST makes the snapshot (on `cpu_pool`; `?requester=` its requester's token), GET shows
// the open one, DELETE releases it (`id` is the path's last segment, empty for "whichever
// is open"; `requester`, from /v1/admin/backup/by-requester/{token}: the one asked for with
// that token). `backups` may be null.
boost::asio::awaitable<response> backup_answer(backup::snapshots* backups, boost::asio::thread_pool& cpu_pool,
                                               node_info const& info, request r, std::string id,
                                               std::string requester = {});

}  // namespace petchat::gateway::detail
