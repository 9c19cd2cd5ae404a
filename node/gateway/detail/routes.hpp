// A request path as the route it was served by, for metrics labels: ids and names become
// "{id}", so a label has a few dozen values, not one per user or message.
#pragma once

#include <string>
#include <string_view>

namespace petchat::gateway::detail {

// "/v1/conversations/c_8f2/messages" -> "/v1/conversations/{id}/messages"; the probes
// and /metrics as they are; a path under /v1/ that is no route "/v1/{other}"; any other
// path outside /v1/ (the web client's files) "/*".
std::string route_template(std::string_view path);

// The method as a label: the standard ones as they are, any other "other".
std::string method_label(std::string_view method);

}  // namespace petchat::gateway::detail
