// The live stream's JSON subprotocol (petchat.v1.json) without Protobuf's generic JSON
// mapping on the hot path: frames are written by hand from the schema, and client frames
// are read with Boost.JSON into the Protobuf message.
//
// The output is the JSON mapping the protocol documents (docs/PROTOCOL.md: proto field
// names, every primitive field printed, 64-bit integers as strings, enums by name) — the
// same JSON values Protobuf's printer makes (tests/unit/gateway/json_frames_test.cpp
// checks them against each other). Reading takes the frames clients send; anything it is
// not sure of (an unknown or misspelt field, a wrong type, two kinds in one frame) goes
// to Protobuf's parser, so what is accepted and refused is exactly what it was.
#pragma once

#include <string>
#include <string_view>

#include "client.pb.h"

namespace petchat::gateway::detail::json_frames {

// Appends `frame` as JSON text to `out`.
void append(std::string& out, client::server_frame const& frame);
// Appends the server_frame that holds `event` (ref 0), without building one.
void append(std::string& out, client::event const& event);
// Appends a message as the REST API serves it (the same object as in an event).
void append(std::string& out, client::message const& message);
// Appends the server_frame of a message event (ref 0) at `seq` whose message is
// `message_json`, already written by the call above: the same text as append(event).
void append_message_event(std::string& out, std::uint64_t seq, std::string_view message_json);

// Reads a client frame; false if it is not one (as Protobuf's JSON parser, with unknown
// fields ignored, would decide).
bool parse(std::string_view text, client::client_frame& out);

}  // namespace petchat::gateway::detail::json_frames
