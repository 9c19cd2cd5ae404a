// CORS for a web client served from another origin (gateway.cors_origins; off when
// empty). Tokens travel in the Authorization header, never in cookies, so credentials are
// never allowed and a listed origin gets only what its token already grants.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "node/gateway/gateway.hpp"

namespace petchat::gateway::detail {

class cors_policy {
 public:
  explicit cors_policy(std::vector<std::string> origins = {});
  bool enabled() const { return any_ || !origins_.empty(); }

  // The answer to a preflight (OPTIONS with Access-Control-Request-Method) on /v1/: 204
  // with what may be sent, or 403 cors_origin_forbidden for an origin not listed. Nothing
  // for any other request.
  std::optional<response> preflight(request const& r) const;

  // Adds Access-Control-Allow-Origin (and Vary, and the headers a client may read) to the
  // answer of a request from a listed origin.
  void decorate(request const& r, response& res) const;

 private:
  bool allows(std::string const& origin) const;
  std::vector<std::string> origins_;
  bool any_ = false;
};

}  // namespace petchat::gateway::detail
