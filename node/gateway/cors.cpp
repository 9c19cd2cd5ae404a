// CORS (see detail/cors.hpp).
#include "node/gateway/detail/cors.hpp"

#include <algorithm>

namespace petchat::gateway::detail {

namespace {

constexpr char const* allowed_methods = "GET, HEAD, POST, PUT, PATCH, DELETE";
constexpr char const* allowed_headers =
    "Authorization, Content-Type, Range, If-None-Match, If-Range, Upload-Length, "
    "Upload-Offset";
constexpr char const* exposed_headers =
    "Retry-After, ETag, Location, Content-Range, Content-Disposition, "
    "Accept-Ranges, Upload-Offset, Upload-Length";

}  // namespace

cors_policy::cors_policy(std::vector<std::string> origins) {
  for (auto& o : origins)
    if (o == "*")
      any_ = true;
    else
      origins_.push_back(std::move(o));
}

bool cors_policy::allows(std::string const& origin) const {
  if (origin.empty()) return false;
  return any_ || std::find(origins_.begin(), origins_.end(), origin) != origins_.end();
}

std::optional<response> cors_policy::preflight(request const& r) const {
  if (r.method != "OPTIONS" || r.header("access-control-request-method").empty() || !enabled()) return std::nullopt;
  auto origin = r.header("origin");
  if (!allows(origin)) {
    auto refused = error_response(
        errors::fail(errors::code::cors_origin_forbidden, "origin '" + origin + "' is not in gateway.cors_origins"));
    if (!any_) refused.headers.emplace_back("Vary", "Origin");  // (as every answer while origins are listed)
    return refused;
  }
  response res{204, "", "", {}, nullptr, 0, 0};
  res.headers = {{"Access-Control-Allow-Origin", any_ ? "*" : origin},
                 {"Access-Control-Allow-Methods", allowed_methods},
                 {"Access-Control-Allow-Headers", allowed_headers},
                 {"Access-Control-Max-Age", "600"},
                 {"Vary", "Origin"}};
  return res;
}

void cors_policy::decorate(request const& r, response& res) const {
  if (!enabled()) return;
  // Whatever the origin, or none: an answer cached for one must not be given to another.
  // With any origin allowed, every answer says so (one cached from a request with no
  // Origin is then right for all); else answers vary by origin.
  if (!any_) res.headers.emplace_back("Vary", "Origin");
  if (!any_ && !allows(r.header("origin"))) return;
  res.headers.emplace_back("Access-Control-Allow-Origin", any_ ? "*" : r.header("origin"));
  res.headers.emplace_back("Access-Control-Expose-Headers", exposed_headers);
}

}  // namespace petchat::gateway::detail
