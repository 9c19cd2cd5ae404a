// The JSON subprotocol's server frames, written by hand (see json_frames.hpp).
#include <google/protobuf/struct.pb.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/json/json.hpp"
#include "node/gateway/detail/json_frames.hpp"

namespace petchat::gateway::detail::json_frames {
namespace {

using json_text::append_number;
using json_text::append_quoted;
using json_text::append_string;

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
    append_string(out_, k);
    out_.push_back(':');
    return out_;
  }
  void str(std::string_view k, std::string_view v) { append_string(key(k), v); }
  void u64(std::string_view k, std::uint64_t v) { append_quoted(key(k), v); }
  void i64(std::string_view k, std::int64_t v) { append_quoted(key(k), v); }
  void u32(std::string_view k, std::uint32_t v) { append_number(key(k), v); }
  void boolean(std::string_view k, bool v) { key(k).append(v ? "true" : "false"); }
  void enumeration(std::string_view k, int v, std::string const& name) {
    if (name.empty())
      append_number(key(k), v);  // a value this build does not know: its number
    else
      append_string(key(k), name);
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
      return append_string(out, v.string_value());
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

void attachment(std::string& out, client::attachment const& a) {
  object o(out);
  o.str("asset_id", a.asset_id());
  o.str("content_type", a.content_type());
  o.u64("size", a.size());
  o.str("name", a.name());
  o.u32("width", a.width());
  o.u32("height", a.height());
  o.str("thumbnail_id", a.thumbnail_id());
  o.u32("duration_ms", a.duration_ms());
}

void body(std::string& out, client::body const& b) {
  object o(out);
  o.str("text", b.text());
  if (b.has_content()) structure(o.key("content"), b.content());
  auto& list = o.key("attachments");
  list.push_back('[');
  for (int i = 0; i < b.attachments_size(); ++i) {
    if (i > 0) list.push_back(',');
    attachment(list, b.attachments(i));
  }
  list.push_back(']');
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

void conversation_change(std::string& out, client::conversation_change const& c) {
  object o(out);
  o.str("conversation_id", c.conversation_id());
  o.u64("version", c.version());
  o.enumeration("kind", c.kind(), client::change_kind_Name(c.kind()));
  o.str("by", c.by());
  o.i64("at_ms", c.at_ms());
  auto& users = o.key("users");
  users.push_back('[');
  for (int i = 0; i < c.users_size(); ++i) {
    if (i) users.push_back(',');
    append_string(users, c.users(i));
  }
  users.push_back(']');
  o.enumeration("role", c.role(), client::member_role_Name(c.role()));
  o.str("title", c.title());
  o.str("description", c.description());
  o.u32("ttl_s", c.ttl_s());
  o.boolean("history_visible", c.history_visible());
  o.str("reason", c.reason());
}

void request_refused(std::string& out, client::request_refused const& r) {
  object o(out);
  o.str("conversation_id", r.conversation_id());
  o.str("request_id", r.request_id());
  o.str("code", r.code());
  o.str("message", r.message());
  auto& failed = o.key("failed");
  failed.push_back('[');
  for (int i = 0; i < r.failed_size(); ++i) {
    if (i) failed.push_back(',');
    object f(failed);
    f.str("user_id", r.failed(i).user_id());
    f.str("code", r.failed(i).code());
    f.str("message", r.failed(i).message());
  }
  failed.push_back(']');
  o.i64("at_ms", r.at_ms());
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
      ro.u32("recipients", r.recipients());
      ro.u32("delivered_count", r.delivered_count());
      ro.u32("read_count", r.read_count());
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
    case client::event::kConversationChange:
      conversation_change(o.key("conversation_change"), e.conversation_change());
      break;
    case client::event::kRequestRefused:
      request_refused(o.key("request_refused"), e.request_refused());
      break;
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
      w.i64("server_time_ms", f.welcome().server_time_ms());
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
      ao.i64("expires_at_ms", a.expires_at_ms());
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
      eo.u32("retry_after_s", f.error().retry_after_s());
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

}  // namespace

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

void append_message_event(std::string& out, std::uint64_t seq, std::string_view message_json) {
  object o(out);
  o.u64("ref", 0);
  object e(o.key("event"));
  e.u64("seq", seq);
  e.key("message").append(message_json);
}

}  // namespace petchat::gateway::detail::json_frames
