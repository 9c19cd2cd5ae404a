// The one rule a message body must satisfy, checked at every edge where a body enters the
// node (a client's `send`, a federation envelope), so that every later encoder (Protobuf,
// its JSON mapping, Boost.JSON in the REST layer) can serve what was accepted. A body that
// an encoder cannot print would make its conversation unreadable until it expires.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "client.pb.h"
#include "node/messages/messages.hpp"

namespace petchat::messages::detail {

// max_content_depth (messages.hpp) is 16: Boost.JSON refuses more than 32 levels, and a
// message wraps the content in two.
using messages::max_content_depth;

struct body_limits {
  std::size_t max_text_bytes;
  std::size_t max_content_bytes;
};

// Why the body breaks the rule (for the client: which part and what), or nullopt if it
// holds: text UTF-8 within max_text_bytes, content within
// max_content_bytes and max_content_depth, every number in it finite (JSON has no NaN or
// infinity), every string and key valid UTF-8.
struct body_violation {
  bool too_large = false;  // the size limits (body_too_large), else the shape (invalid_field)
  std::string message;
};
std::optional<body_violation> check_body(client::body const& body, body_limits limits);

}  // namespace petchat::messages::detail
