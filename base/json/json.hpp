// Reading and writing the protocol's JSON mapping by hand (docs/PROTOCOL.md), shared by
// the node (node/gateway/detail/json_frames) and the client library (client/detail):
// string escaping and 64-bit integers as strings when writing; when reading, Boost.JSON
// values taken only where they are sure to mean what Protobuf's JSON parser would make of
// them, with that parser as the fallback for the whole text.
#pragma once

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace petchat::json_text {

namespace json = boost::json;

// -- writing

// A JSON string. Control characters, the quote and the backslash are escaped, and so are
// U+2028 and U+2029 (JavaScript source cannot hold them raw); bytes that are not UTF-8
// become U+FFFD, so the text is always valid UTF-8.
void append_string(std::string& out, std::string_view s);

template <typename Int>
void append_number(std::string& out, Int v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// 64-bit integers are strings in the JSON mapping (JavaScript's numbers cannot hold them).
template <typename Int>
void append_quoted(std::string& out, Int v) {
  out.push_back('"');
  append_number(out, v);
  out.push_back('"');
}

// -- reading: each returns false when it is not sure (the caller then falls back)

bool read(json::value const& v, std::string& out);
bool read(json::value const& v, bool& out);
// A JSON number or a string of decimal digits, within `max` (negative: false).
bool read(json::value const& v, std::uint64_t& out, std::uint64_t max = UINT64_MAX);
// A JSON number or a string of decimal digits with an optional '-'.
bool read(json::value const& v, std::int64_t& out);

// Reads the members of the object `v` with `field(key, value)`, which returns false for a
// key it does not know or a value it is not sure of.
template <typename Field>
bool fields(json::value const& v, Field&& field) {
  if (!v.is_object()) return false;
  for (auto const& kv : v.get_object())
    if (!field(std::string_view(kv.key()), kv.value())) return false;
  return true;
}

// Parses `text` with Boost.JSON (a stack arena first: most frames need no heap) and hands
// the value to `read(value, out)`; if that is not sure, or the text is not JSON, `out` is
// cleared and read by Protobuf's JSON parser (unknown fields ignored), whose answer counts.
// Given the value as Boost.JSON read it, when it did: a name given twice then counts with
// its last value there too (Protobuf's parser would merge the two, or refuse a kind twice);
// not when it holds a double, which Boost.JSON 1.81 does not always read to the nearest.
inline bool holds_double(json::value const& v) {
  switch (v.kind()) {
    case json::kind::double_:
      return true;
    case json::kind::array:
      return std::any_of(v.get_array().begin(), v.get_array().end(), holds_double);
    case json::kind::object:
      return std::any_of(v.get_object().begin(), v.get_object().end(),
                         [](auto const& kv) { return holds_double(kv.value()); });
    default:
      return false;
  }
}

template <typename Message, typename Read>
bool parse(std::string_view text, Message& out, Read&& read) {
  std::string read_once;
  {
    unsigned char buffer[4096];
    json::monotonic_resource memory(buffer, sizeof buffer);
    boost::system::error_code ec;
    auto v = json::parse(text, ec, &memory);
    if (!ec && read(v, out)) return true;
    if (!ec && !holds_double(v)) read_once = json::serialize(v);
  }
  out.Clear();
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  return google::protobuf::util::JsonStringToMessage(read_once.empty() ? text : std::string_view(read_once), &out, o)
      .ok();
}

}  // namespace petchat::json_text
