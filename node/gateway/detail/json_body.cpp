#include "node/gateway/detail/json_body.hpp"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/wire_format_lite.h>
#include <sodium.h>

#include <boost/algorithm/string/predicate.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "node/gateway/detail/json_frames.hpp"
#include "node/log/log.hpp"

namespace petchat::gateway::detail {

using errors::code;
using errors::fail;

errors::result<json::object> parse_object(std::string const& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return fail(code::invalid_json, "the body is not valid JSON: " + ec.message());
  if (!v.is_object()) return fail(code::invalid_json, "the body must be a JSON object");
  return std::move(v.as_object());
}

errors::result<json::object> parse_json_request(request const& r) {
  auto header = r.header("content-type");
  std::string_view type(header);
  type = type.substr(0, std::min(type.find(';'), type.size()));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  if (!boost::iequals(type, "application/json"))
    return fail(code::unsupported_media_type, "the body must be sent as Content-Type: application/json");
  return parse_object(r.body);
}

std::optional<std::string> proto_json(google::protobuf::Message const& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(m, &text, o).ok()) return std::nullopt;
  return text;
}

spliced_json::spliced_json() {
  unsigned char bytes[16];
  randombytes_buf(bytes, sizeof bytes);  // never fails, needs no file descriptor
  char hex[2 * sizeof bytes + 1];
  sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
  marker_ = std::string("petchat-splice-") + hex + "-";
}

json::value spliced_json::slot(std::string text) {
  texts_.push_back(std::move(text));
  return json::string(marker_ + std::to_string(texts_.size() - 1));
}

response spliced_json::answer(unsigned status, json::value const& v) const {
  if (texts_.empty()) return json_response(status, v);
  auto tree = json::serialize(v);
  std::string out;
  out.reserve(tree.size() + texts_.size() * 256);
  auto const quoted = '"' + marker_;
  std::size_t from = 0;
  for (auto at = tree.find(quoted); at != std::string::npos; at = tree.find(quoted, from)) {
    auto digits = at + quoted.size();
    auto end = tree.find('"', digits);
    if (end == std::string::npos) break;
    std::size_t i = 0;
    auto [ptr, ec] = std::from_chars(tree.data() + digits, tree.data() + end, i);
    if (ec != std::errc{} || ptr != tree.data() + end || i >= texts_.size()) break;
    out.append(tree, from, at - from).append(texts_[i]);
    from = end + 1;
  }
  out.append(tree, from, std::string::npos);
  return response{status, std::move(out), "application/json", {{"Cache-Control", "no-store"}}, nullptr, 0, 0};
}

json::value message_json(spliced_json& out, client::message const& m) {
  std::string text;
  json_frames::append(text, m);
  return out.slot(std::move(text));
}

namespace {

// Nesting depth of objects and arrays in `v` (a scalar is 0), counted no further than `cap`.
std::size_t nesting(json::value const& v, std::size_t cap) {
  if (cap == 0) return 0;
  std::size_t inner = 0;
  if (auto const* o = v.if_object()) {
    for (auto const& kv : *o) inner = std::max(inner, nesting(kv.value(), cap - 1));
    return 1 + inner;
  }
  if (auto const* a = v.if_array()) {
    for (auto const& item : *a) inner = std::max(inner, nesting(item, cap - 1));
    return 1 + inner;
  }
  return 0;
}

}  // namespace

json_frame_hint inspect_json_frame(std::string_view text) {
  json_frame_hint hint;
  if (text.empty()) return hint;
  json::parse_options deep;
  deep.max_depth = 256;  // frames are at most max_frame_bytes: this stays small
  boost::system::error_code ec;
  auto v = json::parse(text, ec, {}, deep);
  if (ec || !v.is_object()) return hint;
  auto const& o = v.as_object();
  if (auto const* ref = o.if_contains("ref")) {
    if (ref->is_uint64()) hint.ref = ref->as_uint64();
    if (ref->is_int64() && ref->as_int64() > 0) hint.ref = static_cast<std::uint64_t>(ref->as_int64());
    if (ref->is_string()) {
      auto const& digits = ref->as_string();
      std::uint64_t n = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      if (!digits.empty() && ec == std::errc{} && end == digits.data() + digits.size())
        hint.ref = n;  // not out of range
    }
  }
  if (auto const* send = o.if_contains("send"); send && send->is_object())
    if (auto const* body = send->as_object().if_contains("body"); body && body->is_object())
      if (auto const* content = body->as_object().if_contains("content")) hint.content_depth = nesting(*content, 300);
  return hint;
}

json_frame_hint inspect_binary_frame(std::string_view bytes) {
  json_frame_hint hint;
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<std::uint8_t const*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  bool send = false;
  for (std::uint32_t tag = in.ReadTag(); tag != 0; tag = in.ReadTag()) {
    auto field = WireFormatLite::GetTagFieldNumber(tag);
    if (field == client::client_frame::kRefFieldNumber && WireFormatLite::GetTagWireType(tag) == 0) {
      std::uint64_t ref = 0;
      if (!in.ReadVarint64(&ref)) break;
      hint.ref = ref;
      continue;
    }
    send |= field == client::client_frame::kSendFieldNumber;
    if (!WireFormatLite::SkipField(&in, tag)) break;
  }
  if (!send) return hint;
  // Deeper than Protobuf's default of 100, within what a frame of max_frame_bytes can nest
  // and an I/O thread's stack takes.
  google::protobuf::io::CodedInputStream again(reinterpret_cast<std::uint8_t const*>(bytes.data()),
                                               static_cast<int>(bytes.size()));
  again.SetRecursionLimit(2000);
  client::client_frame frame;  // read only past the default limit: far deeper than content may be
  if (frame.ParseFromCodedStream(&again) && again.ConsumedEntireMessage() && frame.send().body().has_content())
    hint.content_depth = messages::max_content_depth + 1;
  return hint;
}

errors::result<std::string> required_string(json::object const& o, char const* key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null())
    return fail(code::missing_field, std::string("the field '") + key + "' is required", key);
  if (!it->value().is_string()) return fail(code::invalid_field, std::string("'") + key + "' must be a string", key);
  return std::string(it->value().as_string());
}

errors::result<std::optional<std::string>> optional_string(json::object const& o, char const* key, bool null_ok) {
  auto it = o.find(key);
  if (it == o.end() || (null_ok && it->value().is_null())) return std::optional<std::string>();
  if (!it->value().is_string()) return fail(code::invalid_field, std::string("'") + key + "' must be a string", key);
  return std::optional<std::string>(std::string(it->value().as_string()));
}

// Answers about accounts, sessions and messages are nobody's to keep: not in the browser's
// cache (a shared computer), nor in a proxy's.
response json_response(unsigned status, json::value const& v) {
  return response{status, json::serialize(v), "application/json", {{"Cache-Control", "no-store"}}, nullptr, 0, 0};
}

response no_content() {
  return response{204, "", "application/json", {}, nullptr, 0, 0};
}

json::object profile_json(users::profile const& p, std::string const& region) {
  return json::object{{"id", p.name + "@" + region},    {"name", p.name},   {"region", region},
                      {"display_name", p.display_name}, {"about", p.about}, {"created_at", rfc3339(p.created_at_ms)}};
}

json::object tokens_json(users::session_tokens const& t, std::string const& region) {
  return json::object{
      {"user_id", t.user_name + "@" + region}, {"device_id", t.device_id},
      {"access_token", t.access_token},        {"access_token_expires_in_s", t.access_token_expires_in_s},
      {"refresh_token", t.refresh_token},      {"refresh_token_expires_in_s", t.refresh_token_expires_in_s}};
}

std::optional<std::string> url_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::optional<errors::failure> malformed_query(std::string_view query) {
  if (query.empty() || url_decode(query)) return std::nullopt;
  return errors::fail(errors::code::invalid_field,
                      "the query string is malformed: a '%' must be followed by two hex digits");
}

std::optional<std::string> query_param(std::string_view query, std::string const& key) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    if (part.starts_with(key + "=")) return url_decode(part.substr(key.size() + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

}  // namespace petchat::gateway::detail

namespace petchat::gateway {

response error_response(errors::failure const& f) {
  std::string body = "{\"error\":{\"code\":\"";
  body += errors::name(f.code);
  body += "\",\"message\":\"";
  log::append_json_escaped(body, f.message);
  body += "\"";
  if (!f.field.empty()) {
    body += ",\"field\":\"";
    log::append_json_escaped(body, f.field);
    body += "\"";
  }
  if (f.retry_after_s > 0) body += ",\"retry_after_s\":" + std::to_string(f.retry_after_s);
  for (auto const& [name, value] : f.numbers) body += ",\"" + name + "\":" + std::to_string(value);
  body += "}}";
  response r{
      errors::http_status(f.code), std::move(body), "application/json", {{"Cache-Control", "no-store"}}, nullptr, 0, 0};
  if (f.retry_after_s > 0) r.headers.emplace_back("Retry-After", std::to_string(f.retry_after_s));
  return r;
}

}  // namespace petchat::gateway
