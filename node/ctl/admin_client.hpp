// A small blocking HTTP/1.1 client for the node's admin Unix socket. petchatctl makes one
// request per run, so a blocking socket is the simplest correct tool.
#pragma once

#include <optional>
#include <string>

namespace petchat::ctl {

struct admin_reply {
  unsigned status = 0;
  std::string body;
};

// Sends one request and reads the whole reply. Returns nullopt and sets `error` if the
// socket cannot be reached, the reply is not HTTP, or none came within `timeout_s`;
// `reached` (if given) says whether something listened on the socket, `timed_out` whether
// the answer did not come in time.
std::optional<admin_reply> call(std::string const& socket_path, std::string const& method, std::string const& target,
                                std::string const& body, std::string& error, int timeout_s = 30,
                                bool* reached = nullptr, bool* timed_out = nullptr);

}  // namespace petchat::ctl
