// About how many bytes a message takes in a JSON answer: what pages of messages (history,
// the conversation list) are bounded by. Its stored size alone is not enough: a sender can
// make the JSON six times that with characters JSON escapes (a control character becomes
// `\u00XX`), or numbers that print longer than the 8 bytes they are stored in.
#pragma once

#include <cstddef>
#include <string_view>

#include "client.pb.h"

namespace petchat::messages::detail {

// The bytes escaping adds to `s` as a JSON string (base/json: a control character or DEL
// 6 bytes for 1, `"` and `\` 2, U+2028 and U+2029 6 for 3).
inline std::size_t escaping_adds(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f)
      n += 5;
    else if (c == '"' || c == '\\')
      n += 1;
    else if (c == 0xe2 && i + 2 < s.size() && s[i + 1] == '\x80' && (s[i + 2] == '\xa8' || s[i + 2] == '\xa9'))
      n += 3;
  }
  return n;
}

// What a content value's JSON adds to its stored size. Protobuf's framing of a map entry, a
// list element or a string (tags and lengths, 3 to 8 bytes) is at least the JSON's quotes,
// colon and comma, so only escapes count, and a number's digits (up to 24 characters for
// its 9 to 11 stored bytes), and `false` or `null` for their 2. Content nests at most 16
// deep (body_rules).
inline std::size_t content_adds(google::protobuf::Value const& v) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kStringValue:
      return escaping_adds(v.string_value());
    case google::protobuf::Value::kNumberValue:
      return 16;
    case google::protobuf::Value::kStructValue: {
      std::size_t n = 0;
      for (auto const& [key, value] : v.struct_value().fields()) n += escaping_adds(key) + content_adds(value);
      return n;
    }
    case google::protobuf::Value::kListValue: {
      std::size_t n = 0;
      for (auto const& value : v.list_value().values()) n += content_adds(value);
      return n;
    }
    default:
      return 4;  // null, true, false
  }
}

// The message's JSON, about: its stored size plus what escapes and numbers add, and the
// names of its fields (256 bytes for a message's, 128 for each attachment's).
inline std::size_t json_cost(client::message const& m) {
  std::size_t n = m.ByteSizeLong() + 256 + escaping_adds(m.body().text());
  for (auto const& [key, value] : m.body().content().fields()) n += escaping_adds(key) + content_adds(value);
  // Every string of an attachment: a message from another region carries what its node
  // filled in, checked only for length and UTF-8 (body_rules).
  for (auto const& a : m.body().attachments())
    n += 128 + escaping_adds(a.name()) + escaping_adds(a.asset_id()) + escaping_adds(a.thumbnail_id()) +
         escaping_adds(a.content_type());
  return n;
}

}  // namespace petchat::messages::detail
