// The admin API's /v1/admin/federation (admin_federation.cpp; petchatctl federation).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>
#include <string>

#include "node/gateway/gateway.hpp"

namespace petchat::gateway::detail {

// GET /v1/admin/federation: the link, each region's backlogs (and regions out of the
// directory whose outbox still holds entries), refusals. Blocking: scans the outbox.
boost::json::object federation_status(federation_view const& fed, std::string const& self);

// DELETE /v1/admin/federation/outbox/{region}: gives up what is held for a region out of
// the directory (the link does it on its manager thread; this polls for the answer).
boost::asio::awaitable<response> drop_outbox(federation_view fed, std::string self, std::string region);

}  // namespace petchat::gateway::detail
