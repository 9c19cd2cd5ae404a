// The user API's shared state and helpers, for its translation units (user_api.cpp: accounts,
// sessions, messages, presence; conversations_api.cpp: conversations and groups).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "node/gateway/detail/cors.hpp"
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
  assets::asset_service* assets = nullptr;       // null: the node stores no assets
  notify::notification_service* push = nullptr;  // null: the node does not push
  std::shared_ptr<web::site const> web;          // null: no web client at /
  bool serve_metrics = false;                    // GET /metrics here too (metrics.on_gateway)
  detail::cors_policy cors;                      // gateway.cors_origins
  bool https = false;                            // the gateway terminates TLS: pages carry HSTS

  std::string id_of(users::principal const& p) const { return p.user_name + "@" + users.region(); }
};

// The token of an "Authorization: Bearer <token>" header (the scheme in any case); nullopt
// for another scheme or none.
std::optional<std::string_view> bearer_token(std::string_view authorization);
// The caller, from "Authorization: Bearer <token>".
errors::result<users::principal> authenticate(user_api const& api, request const& r);
// 405 with its Allow header.
response method_not_allowed(char const* allowed);
// The answer to `method` /metrics (GET and HEAD scrape; else 405).
response scrape_answer(metrics::registry& metrics, std::string const& method);
// A page of a conversation's history (docs/PROTOCOL.md, History), filters from `query`.
response history_answer(user_api const& api, std::string const& user, std::string const& conv,
                        std::string const& query);
// `limit` of a paged list: 1 to 200 in plain digits, 50 when absent; else invalid_field.
errors::result<std::size_t> page_limit(std::string const& query);
// A user's presence as the API prints it: {"state", "last_seen_at"}.
boost::json::object presence_json(user_api const& api, std::string const& user);
// /v1/conversations and everything under it (a conversation's history too), and
// /v1/messages/{id}/receipts.
awaitable<response> conversations_route(std::shared_ptr<user_api> api, request r);
// /v1/push/... (push_api.cpp); a target as the API prints it (also the admin API's).
awaitable<response> push_route(std::shared_ptr<user_api> api, request r);
boost::json::object push_target_json(messages::push_target const& t);
// /v1/assets and /v1/uploads (assets_api.cpp; downloads in assets_download.cpp).
awaitable<response> assets_route(std::shared_ptr<user_api> api, request r);
// /v1/sessions and everything under it, and /v1/me/password (sessions_api.cpp).
awaitable<response> sessions_route(std::shared_ptr<user_api> api, request r);
// A security event of an account for the audit log (docs/OPERATIONS.md, "Audit log"):
// who (as they named themselves), from where, and the error code when it failed.
void audit_account(char const* action, errors::failure const* failed, std::string const& user, request const& r,
                   std::string const& device = "", bool rehashed = false);

}  // namespace petchat::gateway::detail
