// A small blocking HTTP/1.1 client for the node's admin Unix socket. petchatctl makes one
// request per run, so a blocking socket is the simplest correct tool.
#pragma once

#include <csignal>
#include <optional>
#include <string>

namespace petchat::ctl {

struct admin_reply {
  unsigned status = 0;
  std::string body;
};

// How a call went, beyond its reply.
struct call_state {
  bool reached = false;      // connected: the request may have reached the node
  bool timed_out = false;    // no connection, or no whole answer, within the timeout
  bool interrupted = false;  // `stop` was set (by a signal) before the answer came
};

// Sends one request and reads the whole reply. Returns nullopt and sets `error` if the
// socket cannot be reached, the reply is not HTTP, none came within `timeout_s` (one
// deadline for the connection, the request and the answer: a node whose queue of
// connections is full times out as one that does not answer), or `*stop` became non-zero
// while waiting (checked whenever a signal cuts a wait short; null: never).
std::optional<admin_reply> call(std::string const& socket_path, std::string const& method, std::string const& target,
                                std::string const& body, std::string& error, int timeout_s = 30,
                                call_state* state = nullptr, volatile std::sig_atomic_t const* stop = nullptr);

}  // namespace petchat::ctl
