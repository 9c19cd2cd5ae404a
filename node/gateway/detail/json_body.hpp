// Reading request bodies and writing JSON answers, shared by the user and admin APIs.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "base/format/format.hpp"
#include "client.pb.h"
#include "node/errors/errors.hpp"
#include "node/gateway/gateway.hpp"
#include "node/users/users.hpp"

namespace petchat::gateway::detail {

namespace json = boost::json;

// The body as a JSON object, or invalid_json.
errors::result<json::object> parse_object(std::string const& body);
// The same for an endpoint anyone may call (registration, login): also
// unsupported_media_type unless the body is declared `application/json`. A browser sends a
// cross-site request with another type (text/plain, a form) without asking the node first
// (CORS), so another site cannot make its visitors register accounts or try passwords.
errors::result<json::object> parse_json_request(request const& r);

// A required string field: missing_field if absent (or null), invalid_field if not a string.
errors::result<std::string> required_string(json::object const& o, char const* key);

// An optional string field: nullopt if absent (or null, when `null_ok`), invalid_field if
// it is not a string.
errors::result<std::optional<std::string>> optional_string(json::object const& o, char const* key, bool null_ok = true);

using format::rfc3339;

// A Protobuf message in the JSON mapping the protocol uses (proto field names, defaults
// printed), or nullopt if it cannot be printed. Bodies are checked at the edge so that
// this does not happen; the callers still never send an empty or partial answer.
std::optional<std::string> proto_json(google::protobuf::Message const& m);

response json_response(unsigned status, json::value const& v);

// An answer built as a json::value with exact JSON texts spliced in. Boost.JSON 1.81 reads
// some doubles one unit off (and prints them in its own form), so a message's text from the
// live stream's writer, exact and the same as on the stream, never goes through the tree:
// a placeholder stands there, replaced in the serialized answer.
class spliced_json {
 public:
  spliced_json();
  // A placeholder for `text` (valid JSON) in the tree.
  json::value slot(std::string text);
  response answer(unsigned status, json::value const& v) const;

 private:
  std::string marker_;  // random for each answer: no text a user wrote can name a slot
  std::vector<std::string> texts_;
};

// A message for a REST answer, as the live stream writes it.
json::value message_json(spliced_json& out, client::message const& m);
response no_content();

json::object profile_json(users::profile const& p, std::string const& region);
json::object tokens_json(users::session_tokens const& t, std::string const& region);

// What can still be told of a live-stream JSON frame that is not a valid client_frame:
// its ref (0 if none can be read) and, for a send, how deep body.content nests.
struct json_frame_hint {
  std::uint64_t ref = 0;
  std::size_t content_depth = 0;
};
json_frame_hint inspect_json_frame(std::string_view text);
// The same of a binary frame that Protobuf's parser refused: its ref (a top-level field read
// from the wire) and, for a send that reads with a deeper recursion limit, its content's depth.
json_frame_hint inspect_binary_frame(std::string_view bytes);

// Percent-decodes a path segment or query value; nullopt if malformed.
std::optional<std::string> url_decode(std::string_view s);

// The part of a request target after '?' ("" if none).
inline std::string_view query_of(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

// The decoded value of `key` in a query string ("a=1&b=2"), or nullopt if absent or malformed.
std::optional<std::string> query_param(std::string_view query, std::string const& key);
// invalid_field if a '%' in `query` is not followed by two hex digits: the REST APIs refuse
// such a request before routing it, so that no handler takes a parameter it cannot decode
// for one that is absent (`for=%ZZ` is not "me", `since=%ZZ` is not "no filter").
std::optional<errors::failure> malformed_query(std::string_view query);

}  // namespace petchat::gateway::detail
