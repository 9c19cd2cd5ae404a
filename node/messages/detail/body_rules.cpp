#include "node/messages/detail/body_rules.hpp"

#include <cmath>

#include "base/format/format.hpp"

namespace petchat::messages::detail {
namespace {

// Depth-first over a Value tree with an explicit depth bound: recursion stops at
// max_content_depth + 1, so a hostile body cannot exhaust the stack here either (the
// Protobuf parser itself bounds nesting at 100).
std::optional<std::string> check_value(google::protobuf::Value const& v, std::size_t depth);

std::optional<std::string> check_struct(google::protobuf::Struct const& s, std::size_t depth) {
  if (depth > max_content_depth)
    return "body.content nests objects and lists deeper than " + std::to_string(max_content_depth) + " levels";
  for (auto const& [key, value] : s.fields()) {
    if (!format::utf8_length(key)) return std::string("body.content has a key that is not UTF-8");
    if (auto bad = check_value(value, depth)) return bad;
  }
  return std::nullopt;
}

std::optional<std::string> check_value(google::protobuf::Value const& v, std::size_t depth) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kNumberValue:
      if (!std::isfinite(v.number_value())) return std::string("body.content has a number that is not finite");
      return std::nullopt;
    case google::protobuf::Value::kStringValue:
      if (!format::utf8_length(v.string_value())) return std::string("body.content has a string that is not UTF-8");
      return std::nullopt;
    case google::protobuf::Value::kStructValue:
      return check_struct(v.struct_value(), depth + 1);
    case google::protobuf::Value::kListValue:
      if (depth + 1 > max_content_depth)
        return "body.content nests objects and lists deeper than " + std::to_string(max_content_depth) + " levels";
      for (auto const& item : v.list_value().values())
        if (auto bad = check_value(item, depth + 1)) return bad;
      return std::nullopt;
    case google::protobuf::Value::kNullValue:
    case google::protobuf::Value::kBoolValue:
      return std::nullopt;
    default:
      return std::string("body.content has a value of no kind");
  }
}

}  // namespace

std::optional<body_violation> check_body(client::body const& body, body_limits limits) {
  // Every size first, then every shape (docs/PROTOCOL.md: body_too_large before invalid_field).
  if (body.text().size() > limits.max_text_bytes)
    return body_violation{true, "body.text is larger than " + std::to_string(limits.max_text_bytes) + " bytes"};
  if (body.attachments_size() > 100) return body_violation{true, "body.attachments has more than 100 entries"};
  if (body.has_content() && body.content().ByteSizeLong() > limits.max_content_bytes)
    return body_violation{true, "body.content is larger than " + std::to_string(limits.max_content_bytes) + " bytes"};
  if (!format::utf8_length(body.text())) return body_violation{false, "body.text must be UTF-8"};
  for (auto const& a : body.attachments()) {
    // What a node fills in is checked too: a message from another region carries it.
    if (a.asset_id().size() > 64 || a.thumbnail_id().size() > 64 || a.content_type().size() > 255 ||
        a.name().size() > 1024 || !format::utf8_length(a.name()) || !format::utf8_length(a.content_type()))
      return body_violation{false, "body.attachments: a field is too long or not UTF-8"};
  }
  if (!body.has_content()) return std::nullopt;
  if (auto bad = check_struct(body.content(), 1)) return body_violation{false, *bad};
  return std::nullopt;
}

}  // namespace petchat::messages::detail
