// The JSON subprotocol's client frames, read with Boost.JSON (see json_frames.hpp).
#include <google/protobuf/struct.pb.h>

#include <cstdint>

#include "base/json/json.hpp"
#include "node/gateway/detail/json_frames.hpp"

namespace petchat::gateway::detail::json_frames {
namespace {

// Reading: each reader returns false when it is not sure Protobuf's parser would take the
// value the same way, and the whole frame then goes to that parser.
namespace json = boost::json;
using json_text::fields;
using json_text::read;

// Protobuf's parser takes a field's proto name and its lowerCamel JSON name.
bool named(std::string_view key, std::string_view proto, std::string_view camel = {}) {
  return key == proto || (!camel.empty() && key == camel);
}

bool read(json::value const& v, google::protobuf::Value& out);

bool read(json::object const& o, google::protobuf::Struct& out) {
  auto& members = *out.mutable_fields();
  for (auto const& kv : o)
    if (!read(kv.value(), members[std::string(kv.key())])) return false;
  return true;
}

bool read(json::value const& v, google::protobuf::Value& out) {
  switch (v.kind()) {
    case json::kind::null:
      out.set_null_value(google::protobuf::NULL_VALUE);
      return true;
    case json::kind::bool_:
      out.set_bool_value(v.get_bool());
      return true;
    case json::kind::int64:
      out.set_number_value(static_cast<double>(v.get_int64()));
      return true;
    case json::kind::uint64:
      out.set_number_value(static_cast<double>(v.get_uint64()));
      return true;
    case json::kind::double_:
      // Boost.JSON 1.81 reads a fraction or exponent to within one unit in the last
      // place, not always to the nearest double: such a number is Protobuf's to read.
      return false;
    case json::kind::string:
      out.set_string_value(std::string(v.get_string()));
      return true;
    case json::kind::array: {
      auto* list = out.mutable_list_value();
      for (auto const& item : v.get_array())
        if (!read(item, *list->add_values())) return false;
      return true;
    }
    case json::kind::object:
      return read(v.get_object(), *out.mutable_struct_value());
  }
  return false;
}

bool read(json::value const& v, client::auth& a) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (named(k, "access_token", "accessToken")) return read(x, *a.mutable_access_token());
    std::uint64_t after = 0;
    if (named(k, "after_seq", "afterSeq") && read(x, after)) {
      a.set_after_seq(after);
      return true;
    }
    return false;
  });
}

bool read(json::value const& v, client::body& b) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (named(k, "text")) return read(x, *b.mutable_text());
    if (named(k, "content") && x.is_object()) return read(x.get_object(), *b.mutable_content());
    return false;
  });
}

bool read(json::value const& v, client::send& s) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (named(k, "client_id", "clientId")) return read(x, *s.mutable_client_id());
    if (named(k, "to")) return read(x, *s.mutable_to());
    if (named(k, "conversation_id", "conversationId")) return read(x, *s.mutable_conversation_id());
    if (named(k, "body")) return read(x, *s.mutable_body());
    std::uint64_t ttl = 0;
    if (named(k, "ttl_s", "ttlS") && read(x, ttl, UINT32_MAX)) {
      s.set_ttl_s(static_cast<std::uint32_t>(ttl));
      return true;
    }
    return false;
  });
}

bool read(json::value const& v, client::ack& a) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    std::uint64_t seq = 0;
    if (!named(k, "seq") || !read(x, seq)) return false;
    a.set_seq(seq);
    return true;
  });
}

bool read(json::value const& v, client::read& r) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (named(k, "conversation_id", "conversationId")) return read(x, *r.mutable_conversation_id());
    if (named(k, "message_id", "messageId")) return read(x, *r.mutable_message_id());
    return false;
  });
}

bool read(json::value const& v, client::typing& t) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (named(k, "to")) return read(x, *t.mutable_to());
    if (named(k, "conversation_id", "conversationId")) return read(x, *t.mutable_conversation_id());
    bool active = false;
    if (!named(k, "active") || !read(x, active)) return false;
    t.set_active(active);
    return true;
  });
}

bool read(json::value const& v, client::client_frame& f) {
  bool kind = false;  // a frame with two kinds is Protobuf's to refuse
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (named(k, "ref")) {
      std::uint64_t ref = 0;
      if (!read(x, ref)) return false;
      f.set_ref(ref);
      return true;
    }
    if (kind) return false;
    kind = true;
    if (named(k, "send")) return read(x, *f.mutable_send());
    if (named(k, "ack")) return read(x, *f.mutable_ack());
    if (named(k, "read")) return read(x, *f.mutable_read());
    if (named(k, "typing")) return read(x, *f.mutable_typing());
    if (named(k, "auth")) return read(x, *f.mutable_auth());
    if (named(k, "ping")) {
      f.mutable_ping();
      return x.is_object() && x.get_object().empty();
    }
    return false;
  });
}

}  // namespace

bool parse(std::string_view text, client::client_frame& out) {
  return json_text::parse(text, out, [](json::value const& v, client::client_frame& f) { return read(v, f); });
}

}  // namespace petchat::gateway::detail::json_frames
