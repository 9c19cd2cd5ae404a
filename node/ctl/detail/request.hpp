// One admin call as petchatctl makes it (request.cpp): the request, what is said on stderr
// when it fails, and the exit code scripts rely on (docs/PROTOCOL.md, "petchatctl").
#pragma once

#include <boost/json.hpp>

#include <string>

namespace petchat::ctl::detail {

// 0 done; 1 the node refused, or answered with no JSON or not the JSON the command expects,
// or something at the socket gave no usable answer (none in time, a hang-up, not HTTP: a
// node that may be busy), and a backup that failed or was interrupted; 2 a usage error; 3
// the node is not running: no socket, connection refused.
constexpr int exit_ok = 0, exit_refused = 1, exit_usage = 2, exit_unreachable = 3;

struct context {
  std::string socket;
  std::string found_by;  // where the socket's path came from
  bool as_json = false;
  // The node did what was asked, and its answer reports a problem a script must see (a
  // check that found damage): the answer is printed, and petchatctl exits 1.
  bool found_problems = false;
};

// How a request went, beyond its exit code.
struct outcome {
  bool asked = false;        // petchatctl connected: the node may have acted on the request
  unsigned status = 0;       // the answer's HTTP status; 0 when no HTTP answer came
  bool interrupted = false;  // a signal ended the wait (with `interruptible` only)
};

// A path segment or query value, percent-encoded.
std::string encode(std::string const& s);

// Performs one admin call; prints errors; returns the exit code and the parsed answer (an
// answer of 204 reads as {"ok": true}). With `interruptible`, SIGINT, SIGTERM or SIGHUP
// (once stop_copies_on_signals() is in force) end the wait at once: exit 1.
int request(context const& ctx, std::string const& method, std::string const& target, boost::json::value const* body,
            boost::json::value& answer, int timeout_s = 30, outcome* out = nullptr, bool interruptible = false);

}  // namespace petchat::ctl::detail
