#include "node/gateway/detail/json_frames.hpp"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <vector>

namespace petchat::gateway::detail::json_frames {
namespace {

// The length of the valid UTF-8 sequence at s[i] (0 if there is none).
std::size_t utf8_at(std::string_view s, std::size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  std::size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
  if (n == 0 || c > 0xf4 || i + n > s.size()) return 0;
  auto c1 = static_cast<unsigned char>(s[i + 1]);
  if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 > 0x8f))
    return 0;  // overlong, a surrogate, or beyond U+10FFFF
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  return n;
}

// A JSON string. Control characters, the quote and the backslash are escaped, and so are
// U+2028 and U+2029 (JavaScript source cannot hold them raw); bytes that are not UTF-8
// (never accepted at the edge) become U+FFFD, so the frame is always valid text.
void string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f) {
      ++i;
      continue;
    }
    std::size_t n = c < 0x80 ? 1 : utf8_at(s, i);
    if (n > 1 && !(n == 3 && c == 0xe2 && s[i + 1] == '\x80' && (s[i + 2] == '\xa8' || s[i + 2] == '\xa9'))) {
      i += n;  // any other well-formed sequence is copied as it is
      continue;
    }
    out.append(s.data() + run, i - run);
    if (n == 0) {
      out.append("\\ufffd");
      n = 1;
    } else if (n == 3) {
      out.append(s[i + 2] == '\xa8' ? "\\u2028" : "\\u2029");
    } else if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c == '\t') {
      out.append("\\t");
    } else {
      out.append("\\u00");
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    }
    i += n;
    run = i;
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

template <typename Int>
void quoted(std::string& out, Int v) {  // 64-bit integers are strings in the JSON mapping
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.push_back('"');
  out.append(buf, r.ptr);
  out.push_back('"');
}

template <typename Int>
void number(std::string& out, Int v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void number(std::string& out, double v) {
  if (!std::isfinite(v)) {  // refused at the edge; JSON has no such numbers
    out.append("null");
    return;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // the shortest text that reads back as v
  out.append(buf, r.ptr);
}

// Writes `"key":` with the separator before it when it is not the object's first.
class object {
 public:
  explicit object(std::string& out) : out_(out) { out_.push_back('{'); }
  ~object() { out_.push_back('}'); }
  object(object const&) = delete;
  object& operator=(object const&) = delete;

  std::string& key(std::string_view k) {
    if (!first_) out_.push_back(',');
    first_ = false;
    out_.push_back('"');
    out_.append(k);
    out_.append("\":");
    return out_;
  }
  // A key that needs escaping (content's own keys).
  std::string& any_key(std::string_view k) {
    if (!first_) out_.push_back(',');
    first_ = false;
    string(out_, k);
    out_.push_back(':');
    return out_;
  }
  void str(std::string_view k, std::string_view v) { string(key(k), v); }
  void u64(std::string_view k, std::uint64_t v) { quoted(key(k), v); }
  void i64(std::string_view k, std::int64_t v) { quoted(key(k), v); }
  void boolean(std::string_view k, bool v) { key(k).append(v ? "true" : "false"); }
  void enumeration(std::string_view k, int v, std::string const& name) {
    if (name.empty())
      number(key(k), v);  // a value this build does not know: its number
    else
      string(key(k), name);
  }

 private:
  std::string& out_;
  bool first_ = true;
};

void value(std::string& out, google::protobuf::Value const& v);

void structure(std::string& out, google::protobuf::Struct const& s) {
  // Keys in order, so that the same content is always the same text.
  std::vector<std::pair<std::string const*, google::protobuf::Value const*>> fields;
  fields.reserve(s.fields().size());
  for (auto const& [k, v] : s.fields()) fields.emplace_back(&k, &v);
  std::sort(fields.begin(), fields.end(), [](auto const& a, auto const& b) { return *a.first < *b.first; });
  object o(out);
  for (auto const& [k, v] : fields) value(o.any_key(*k), *v);
}

void value(std::string& out, google::protobuf::Value const& v) {
  using google::protobuf::Value;
  switch (v.kind_case()) {
    case Value::kNumberValue:
      return number(out, v.number_value());
    case Value::kStringValue:
      return string(out, v.string_value());
    case Value::kBoolValue:
      out.append(v.bool_value() ? "true" : "false");
      return;
    case Value::kStructValue:
      return structure(out, v.struct_value());
    case Value::kListValue: {
      out.push_back('[');
      bool first = true;
      for (auto const& item : v.list_value().values()) {
        if (!first) out.push_back(',');
        first = false;
        value(out, item);
      }
      out.push_back(']');
      return;
    }
    default:  // null, or no kind at all
      out.append("null");
  }
}

void body(std::string& out, client::body const& b) {
  object o(out);
  o.str("text", b.text());
  if (b.has_content()) structure(o.key("content"), b.content());
}

void message(std::string& out, client::message const& m) {
  object o(out);
  o.str("id", m.id());
  o.str("conversation_id", m.conversation_id());
  o.str("from", m.from());
  o.str("to", m.to());
  o.str("client_id", m.client_id());
  o.i64("sent_at_ms", m.sent_at_ms());
  if (m.has_body()) body(o.key("body"), m.body());
  o.i64("expires_at_ms", m.expires_at_ms());
  o.i64("delivered_at_ms", m.delivered_at_ms());
  o.i64("read_at_ms", m.read_at_ms());
}

void event(std::string& out, client::event const& e) {
  object o(out);
  o.u64("seq", e.seq());
  switch (e.kind_case()) {
    case client::event::kMessage:
      message(o.key("message"), e.message());
      break;
    case client::event::kReceipt: {
      auto const& r = e.receipt();
      object ro(o.key("receipt"));
      ro.str("message_id", r.message_id());
      ro.str("conversation_id", r.conversation_id());
      ro.enumeration("status", r.status(), client::receipt_status_Name(r.status()));
      ro.str("by", r.by());
      ro.i64("at_ms", r.at_ms());
      break;
    }
    case client::event::kReadMark: {
      auto const& r = e.read_mark();
      object ro(o.key("read_mark"));
      ro.str("conversation_id", r.conversation_id());
      ro.str("message_id", r.message_id());
      ro.i64("at_ms", r.at_ms());
      break;
    }
    case client::event::kDeleted: {
      auto const& d = e.deleted();
      object d_o(o.key("deleted"));
      d_o.str("message_id", d.message_id());
      d_o.str("conversation_id", d.conversation_id());
      d_o.str("by", d.by());
      d_o.i64("at_ms", d.at_ms());
      break;
    }
    default:
      break;
  }
}

void kind(object& o, client::server_frame const& f) {
  switch (f.kind_case()) {
    case client::server_frame::kWelcome: {
      object w(o.key("welcome"));
      w.str("user_id", f.welcome().user_id());
      w.str("device_id", f.welcome().device_id());
      w.u64("mailbox_seq", f.welcome().mailbox_seq());
      w.u64("resume_after", f.welcome().resume_after());
      return;
    }
    case client::server_frame::kAccepted: {
      auto const& a = f.accepted();
      object ao(o.key("accepted"));
      ao.str("client_id", a.client_id());
      ao.str("message_id", a.message_id());
      ao.str("conversation_id", a.conversation_id());
      ao.i64("sent_at_ms", a.sent_at_ms());
      ao.boolean("duplicate", a.duplicate());
      return;
    }
    case client::server_frame::kEvent:
      return event(o.key("event"), f.event());
    case client::server_frame::kPresence: {
      auto const& p = f.presence();
      object po(o.key("presence"));
      po.str("user_id", p.user_id());
      po.enumeration("state", p.state(), client::presence_state_Name(p.state()));
      po.i64("last_seen_ms", p.last_seen_ms());
      return;
    }
    case client::server_frame::kTyping: {
      auto const& t = f.typing();
      object to(o.key("typing"));
      to.str("from", t.from());
      to.str("conversation_id", t.conversation_id());
      to.boolean("active", t.active());
      return;
    }
    case client::server_frame::kError: {
      object eo(o.key("error"));
      eo.str("code", f.error().code());
      eo.str("message", f.error().message());
      return;
    }
    case client::server_frame::kPong:
      o.key("pong").append("{}");
      return;
    case client::server_frame::kAcked: {
      object ao(o.key("acked"));
      ao.u64("seq", f.acked().seq());
      return;
    }
    default:
      return;
  }
}

// Reading: each reader returns false when it is not sure Protobuf's parser would take the
// value the same way, and the whole frame then goes to that parser.
namespace json = boost::json;

// Protobuf's parser takes a field's proto name and its lowerCamel JSON name.
bool named(std::string_view key, std::string_view proto, std::string_view camel = {}) {
  return key == proto || (!camel.empty() && key == camel);
}

bool read(json::value const& v, std::string& out) {
  if (!v.is_string()) return false;
  out.assign(v.get_string().data(), v.get_string().size());
  return true;
}

bool read(json::value const& v, bool& out) {
  if (!v.is_bool()) return false;
  out = v.get_bool();
  return true;
}

// An unsigned integer, as a JSON number or a string of decimal digits, within `max`.
bool read(json::value const& v, std::uint64_t& out, std::uint64_t max = UINT64_MAX) {
  if (v.is_uint64()) {
    out = v.get_uint64();
  } else if (v.is_int64() && v.get_int64() >= 0) {
    out = static_cast<std::uint64_t>(v.get_int64());
  } else if (v.is_string()) {
    auto const& s = v.get_string();
    if (s.empty() || s.size() > 20 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return false;
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return false;
  } else {
    return false;
  }
  return out <= max;
}

bool read(json::value const& v, google::protobuf::Value& out);

bool read(json::object const& o, google::protobuf::Struct& out) {
  auto& fields = *out.mutable_fields();
  for (auto const& kv : o)
    if (!read(kv.value(), fields[std::string(kv.key())])) return false;
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

// Reads the fields of `o` with `field(key, value)`, which returns false for a key it does
// not know or a value it is not sure of.
template <typename Field>
bool fields(json::value const& v, Field&& field) {
  if (!v.is_object()) return false;
  for (auto const& kv : v.get_object())
    if (!field(std::string_view(kv.key()), kv.value())) return false;
  return true;
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
  {
    unsigned char buffer[4096];  // most frames parse without touching the heap
    json::monotonic_resource memory(buffer, sizeof buffer);
    boost::system::error_code ec;
    auto v = json::parse(text, ec, &memory);
    if (!ec && read(v, out)) return true;
  }
  out.Clear();
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  return google::protobuf::util::JsonStringToMessage(text, &out, o).ok();
}

void append(std::string& out, client::server_frame const& frame) {
  object o(out);
  o.u64("ref", frame.ref());
  kind(o, frame);
}

void append(std::string& out, client::message const& m) {
  message(out, m);
}

void append(std::string& out, client::event const& e) {
  object o(out);
  o.u64("ref", 0);
  event(o.key("event"), e);
}

}  // namespace petchat::gateway::detail::json_frames
