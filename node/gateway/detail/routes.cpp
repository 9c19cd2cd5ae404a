// Route templates for metrics labels (see routes.hpp).
#include "node/gateway/detail/routes.hpp"

#include <algorithm>
#include <array>
#include <vector>

namespace petchat::gateway::detail {

namespace {

// The user API's routes (docs/PROTOCOL.md). Any other path is one label: a client naming
// made-up paths (/v1/me/push/users/...) must not make a new time series per request.
constexpr std::array<std::string_view, 30> routes{"/v1/assets",
                                                  "/v1/assets/{id}",
                                                  "/v1/assets/{id}/link",
                                                  "/v1/conversations",
                                                  "/v1/conversations/{id}",
                                                  "/v1/conversations/{id}/members",
                                                  "/v1/conversations/{id}/members/{id}",
                                                  "/v1/conversations/{id}/messages",
                                                  "/v1/me",
                                                  "/v1/me/password",
                                                  "/v1/messages",
                                                  "/v1/messages/{id}",
                                                  "/v1/messages/{id}/receipts",
                                                  "/v1/presence",
                                                  "/v1/presence/{id}",
                                                  "/v1/push/settings",
                                                  "/v1/push/targets",
                                                  "/v1/push/targets/{id}",
                                                  "/v1/push/vapid",
                                                  "/v1/regions",
                                                  "/v1/sessions",
                                                  "/v1/sessions/current",
                                                  "/v1/sessions/others",
                                                  "/v1/sessions/refresh",
                                                  "/v1/sessions/{id}",
                                                  "/v1/uploads",
                                                  "/v1/uploads/{id}",
                                                  "/v1/users",
                                                  "/v1/users/{id}",
                                                  "/v1/ws"};

constexpr std::size_t max_segments = 5;  // the longest route has 5

}  // namespace

std::string route_template(std::string_view path) {
  if (path == "/healthz" || path == "/readyz" || path == "/metrics") return std::string(path);
  if (path != "/v1" && !path.starts_with("/v1/")) return "/*";
  std::vector<std::string_view> segments;
  while (!path.empty()) {
    path.remove_prefix(1);  // the '/'
    auto end = path.find('/');
    segments.push_back(path.substr(0, end));
    path = end == std::string_view::npos ? std::string_view() : path.substr(end);
    if (segments.size() > max_segments) return "/v1/{other}";
  }
  // The route whose segments the path's are: its words as they are, "{id}" for any one
  // (a user may well be called "admin" or "status").
  for (auto route : routes) {
    std::size_t i = 0;
    bool same = true;
    for (auto rest = route; same && !rest.empty(); ++i) {
      rest.remove_prefix(1);
      auto end = rest.find('/');
      auto want = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
      same = i < segments.size() && (want == "{id}" || want == segments[i]);
    }
    if (same && i == segments.size()) return std::string(route);
  }
  return "/v1/{other}";
}

std::string method_label(std::string_view method) {
  static constexpr std::string_view known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  return std::find(std::begin(known), std::end(known), method) != std::end(known) ? std::string(method) : "other";
}

}  // namespace petchat::gateway::detail
