// The admin API's /v1/admin/registration-tokens (admin_tokens.cpp; petchatctl tokens).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>

#include "node/gateway/gateway.hpp"

namespace petchat::gateway::detail {

// GET lists, POST creates ({"uses", "expires_in_s", "note"}, all optional), DELETE .../{id}
// revokes. `id` is the path's segment after registration-tokens, empty if none.
boost::asio::awaitable<response> tokens_answer(users::user_service& users, request r, std::string id);

}  // namespace petchat::gateway::detail
