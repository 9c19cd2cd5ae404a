// One admin call and its exit code (see detail/request.hpp).
#include "node/ctl/detail/request.hpp"

#include <cctype>
#include <iostream>

#include "node/ctl/admin_client.hpp"
#include "node/ctl/detail/backup_files.hpp"
#include "node/ctl/detail/print.hpp"

namespace petchat::ctl::detail {

std::string encode(std::string const& s) {
  static char const hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '@')
      out += static_cast<char>(c);
    else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

int request(context const& ctx, std::string const& method, std::string const& target, json::value const* body,
            json::value& answer, int timeout_s, outcome* out, bool interruptible) {
  outcome unused;
  outcome& o = out ? *out : unused;
  std::string error;
  call_state state;
  auto reply = call(ctx.socket, method, target, body ? json::serialize(*body) : "", error, timeout_s, &state,
                    interruptible ? &interrupted : nullptr);
  o.asked = state.reached;
  o.interrupted = state.interrupted;
  if (!reply && state.interrupted) {
    std::cerr << "petchatctl: interrupted while waiting for the node at " << ctx.socket << "\n";
    return exit_refused;
  }
  // Something is there but gave no usable answer: a node that is busy is not said to be
  // stopped (exit 3), which would send the operator, or a script, to start another or to
  // restart it mid-work (docs/PROTOCOL.md, exit 1).
  if (!reply && state.timed_out) {
    std::cerr << "petchatctl: the node at " << ctx.socket << " did not answer: " << error
              << (state.reached ? "; it may still be working on it" : "; it is running, but takes no connections")
              << ": see its log before asking again\n";
    return exit_refused;
  }
  if (!reply && state.reached) {
    std::cerr << "petchatctl: no usable answer from the node at " << ctx.socket << " (" << error << "): see its log\n";
    return exit_refused;
  }
  if (!reply) {
    std::cerr << "petchatctl: node not running at " << ctx.socket << " (" << error << "; found by " << ctx.found_by
              << "); start petchat-node, or point to it with --socket, --data-dir or --config\n";
    return exit_unreachable;
  }
  o.status = reply->status;
  if (reply->status == 204) {
    answer = json::object{{"ok", true}};
    return exit_ok;
  }
  boost::system::error_code ec;
  answer = json::parse(reply->body, ec);
  if (ec) {
    std::cerr << "petchatctl: the node answered " << reply->status << " with a body that is not JSON\n";
    return exit_refused;
  }
  if (reply->status >= 400) {
    auto const* err = answer.is_object() ? answer.as_object().if_contains("error") : nullptr;
    if (err && err->is_object())
      std::cerr << "petchatctl: error: " << field(err->as_object(), "code") << ": "
                << field(err->as_object(), "message") << "\n";
    else
      std::cerr << "petchatctl: error: HTTP " << reply->status << "\n";
    if (ctx.as_json) std::cout << json::serialize(answer) << "\n";
    return exit_refused;
  }
  return exit_ok;
}

}  // namespace petchat::ctl::detail
