// The client's side of the live stream's JSON subprotocol (petchat.v1.json), cheap enough
// for the benchmark tool: a load generator that spends more CPU per frame than the node
// measures itself, not the node.
//
// Client frames the tool sends in bulk (send, ack, auth) are written by hand in the
// protocol's JSON mapping (docs/PROTOCOL.md: proto field names, 64-bit integers as
// strings); any other frame goes through Protobuf's printer. Server frames are read with
// Boost.JSON into the Protobuf message; anything not expected (an unknown field, a wrong
// type, an enum by number, structured content) goes to Protobuf's parser, with unknown
// fields ignored as the protocol asks of clients. The node's side of the same mapping is
// node/gateway/detail/json_frames.hpp.
#pragma once

#include <string>
#include <string_view>

#include "client.pb.h"

namespace petchat::sdk::detail::json_codec {

// Appends `frame` as JSON text to `out`. Throws std::runtime_error if Protobuf's printer
// refuses a frame that is not written by hand (a `body.content` it cannot print).
void append(std::string& out, client::client_frame const& frame);

// Reads a server frame into `out` (which must be empty); false if the text is not one.
bool parse(std::string_view text, client::server_frame& out);

}  // namespace petchat::sdk::detail::json_codec
