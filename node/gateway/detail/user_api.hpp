// The user API's shared state and helpers, for its translation units (user_api.cpp: accounts,
// sessions, messages, presence; conversations_api.cpp: conversations and groups).
#pragma once

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "node/gateway/gateway.hpp"

namespace petchat::gateway::detail {

using boost::asio::awaitable;

struct user_api {
  users::user_service& users;
  messages::message_service& messages;
  ws::ws_manager& manager;
  metrics::registry& metrics;
  std::shared_ptr<std::atomic<bool>> stopping;
  federation_view fed;

  std::string id_of(users::principal const& p) const { return p.user_name + "@" + users.region(); }
};

// The caller, from "Authorization: Bearer <token>".
errors::result<users::principal> authenticate(user_api const& api, request const& r);
// 405 with its Allow header.
response method_not_allowed(char const* allowed);
// A page of a conversation's history (docs/PROTOCOL.md, History), filters from `query`.
response history_answer(user_api const& api, std::string const& user, std::string const& conv,
                        std::string const& query);
// /v1/conversations and everything under it, and /v1/messages/{id}/receipts.
awaitable<response> conversations_route(std::shared_ptr<user_api> api, request r);

}  // namespace petchat::gateway::detail
