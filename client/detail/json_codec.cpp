#include "client/detail/json_codec.hpp"

#include "base/json/json.hpp"

#include <google/protobuf/util/json_util.h>

#include <boost/json.hpp>
#include <charconv>
#include <cstdint>
#include <stdexcept>

namespace petchat::sdk::detail::json_codec {
namespace {

// ---------------------------------------------------------------- writing client frames

using json_text::append_number;
using json_text::append_quoted;
using json_text::append_string;

void send(std::string& out, client::send const& s) {
  out.append("{\"client_id\":");
  append_string(out, s.client_id());
  // Exactly one of the two is given (docs/PROTOCOL.md): the other is left out.
  if (!s.to().empty()) {
    out.append(",\"to\":");
    append_string(out, s.to());
  }
  if (!s.conversation_id().empty()) {
    out.append(",\"conversation_id\":");
    append_string(out, s.conversation_id());
  }
  if (s.has_body()) {  // written by hand only without content (see append)
    out.append(",\"body\":{\"text\":");
    append_string(out, s.body().text());
    out.push_back('}');
  }
  out.append(",\"ttl_s\":");
  append_number(out, s.ttl_s());
  out.push_back('}');
}

void auth(std::string& out, client::auth const& a) {
  out.append("{\"access_token\":");
  append_string(out, a.access_token());
  if (a.has_after_seq()) {  // absent and 0 differ: absent resumes after the acknowledged seq
    out.append(",\"after_seq\":");
    append_quoted(out, a.after_seq());
  }
  out.push_back('}');
}

// Frames the tool rarely sends, and structured content, through Protobuf's printer.
void print(std::string& out, client::client_frame const& frame) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  std::string text;
  auto status = google::protobuf::util::MessageToJsonString(frame, &text, o);
  if (!status.ok()) throw std::runtime_error("client frame cannot be written as JSON: " + status.ToString());
  out.append(text);
}

// ---------------------------------------------------------------- reading server frames

// Each reader returns false when the value is not what the node writes (docs/PROTOCOL.md),
// and the whole frame then goes to Protobuf's parser.
namespace json = boost::json;

using json_text::fields;
using json_text::read;

// A scalar field through its setter: scalar(x, e, &client::event::set_seq).
template <typename Message, typename T>
bool scalar(json::value const& v, Message& m, void (Message::*setter)(T)) {
  T x{};
  if (!read(v, x)) return false;
  (m.*setter)(x);
  return true;
}

// A uint32 field, which the node writes as a JSON number.
template <typename Message>
bool u32(json::value const& v, Message& m, void (Message::*setter)(std::uint32_t)) {
  std::uint64_t x = 0;
  if (!read(v, x, UINT32_MAX)) return false;
  (m.*setter)(static_cast<std::uint32_t>(x));
  return true;
}

bool empty_object(json::value const& v) {
  return v.is_object() && v.get_object().empty();
}

bool read(json::value const& v, client::body& b) {
  // `content` (a google.protobuf.Struct) is left to Protobuf's parser: its numbers must
  // read exactly as Protobuf reads them, and the tool never sends any. So are attachments,
  // but for the empty list that every body the node writes without one has.
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "text") return read(x, *b.mutable_text());
    return k == "attachments" && x.is_array() && x.get_array().empty();
  });
}

bool read(json::value const& v, client::message& m) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "id") return read(x, *m.mutable_id());
    if (k == "conversation_id") return read(x, *m.mutable_conversation_id());
    if (k == "from") return read(x, *m.mutable_from());
    if (k == "to") return read(x, *m.mutable_to());
    if (k == "client_id") return read(x, *m.mutable_client_id());
    if (k == "sent_at_ms") return scalar(x, m, &client::message::set_sent_at_ms);
    if (k == "body") return read(x, *m.mutable_body());
    if (k == "expires_at_ms") return scalar(x, m, &client::message::set_expires_at_ms);
    if (k == "delivered_at_ms") return scalar(x, m, &client::message::set_delivered_at_ms);
    if (k == "read_at_ms") return scalar(x, m, &client::message::set_read_at_ms);
    return false;
  });
}

bool read(json::value const& v, client::receipt& r) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "message_id") return read(x, *r.mutable_message_id());
    if (k == "conversation_id") return read(x, *r.mutable_conversation_id());
    if (k == "by") return read(x, *r.mutable_by());
    if (k == "at_ms") return scalar(x, r, &client::receipt::set_at_ms);
    if (k == "recipients") return u32(x, r, &client::receipt::set_recipients);
    if (k == "delivered_count") return u32(x, r, &client::receipt::set_delivered_count);
    if (k == "read_count") return u32(x, r, &client::receipt::set_read_count);
    if (k != "status" || !x.is_string()) return false;  // an enum by number is Protobuf's to read
    client::receipt_status status{};
    if (!client::receipt_status_Parse(std::string(x.get_string()), &status)) return false;
    r.set_status(status);
    return true;
  });
}

bool read(json::value const& v, client::read_mark& r) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "conversation_id") return read(x, *r.mutable_conversation_id());
    if (k == "message_id") return read(x, *r.mutable_message_id());
    if (k == "at_ms") return scalar(x, r, &client::read_mark::set_at_ms);
    return false;
  });
}

bool read(json::value const& v, client::deleted& d) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "message_id") return read(x, *d.mutable_message_id());
    if (k == "conversation_id") return read(x, *d.mutable_conversation_id());
    if (k == "by") return read(x, *d.mutable_by());
    if (k == "at_ms") return scalar(x, d, &client::deleted::set_at_ms);
    return false;
  });
}

bool read(json::value const& v, client::event& e) {
  bool kind = false;  // a second kind in one event is Protobuf's to refuse
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "seq") return scalar(x, e, &client::event::set_seq);
    if (kind) return false;
    kind = true;
    if (k == "message") return read(x, *e.mutable_message());
    if (k == "receipt") return read(x, *e.mutable_receipt());
    if (k == "read_mark") return read(x, *e.mutable_read_mark());
    if (k == "deleted") return read(x, *e.mutable_deleted());
    return false;
  });
}

bool read(json::value const& v, client::welcome& w) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "user_id") return read(x, *w.mutable_user_id());
    if (k == "device_id") return read(x, *w.mutable_device_id());
    if (k == "mailbox_seq") return scalar(x, w, &client::welcome::set_mailbox_seq);
    if (k == "resume_after") return scalar(x, w, &client::welcome::set_resume_after);
    return false;
  });
}

bool read(json::value const& v, client::accepted& a) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "client_id") return read(x, *a.mutable_client_id());
    if (k == "message_id") return read(x, *a.mutable_message_id());
    if (k == "conversation_id") return read(x, *a.mutable_conversation_id());
    if (k == "sent_at_ms") return scalar(x, a, &client::accepted::set_sent_at_ms);
    if (k == "duplicate") return scalar(x, a, &client::accepted::set_duplicate);
    return false;
  });
}

bool read(json::value const& v, client::presence& p) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "user_id") return read(x, *p.mutable_user_id());
    if (k == "last_seen_ms") return scalar(x, p, &client::presence::set_last_seen_ms);
    if (k != "state" || !x.is_string()) return false;
    client::presence_state state{};
    if (!client::presence_state_Parse(std::string(x.get_string()), &state)) return false;
    p.set_state(state);
    return true;
  });
}

bool read(json::value const& v, client::typing_notice& t) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "from") return read(x, *t.mutable_from());
    if (k == "conversation_id") return read(x, *t.mutable_conversation_id());
    if (k == "active") return scalar(x, t, &client::typing_notice::set_active);
    return false;
  });
}

bool read(json::value const& v, client::error& e) {
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "code") return read(x, *e.mutable_code());
    if (k == "message") return read(x, *e.mutable_message());
    return false;
  });
}

bool read(json::value const& v, client::acked& a) {
  return fields(
      v, [&](std::string_view k, json::value const& x) { return k == "seq" && scalar(x, a, &client::acked::set_seq); });
}

bool read(json::value const& v, client::server_frame& f) {
  bool kind = false;  // a second kind in one frame is Protobuf's to refuse
  return fields(v, [&](std::string_view k, json::value const& x) {
    if (k == "ref") return scalar(x, f, &client::server_frame::set_ref);
    if (kind) return false;
    kind = true;
    if (k == "welcome") return read(x, *f.mutable_welcome());
    if (k == "accepted") return read(x, *f.mutable_accepted());
    if (k == "event") return read(x, *f.mutable_event());
    if (k == "presence") return read(x, *f.mutable_presence());
    if (k == "typing") return read(x, *f.mutable_typing());
    if (k == "error") return read(x, *f.mutable_error());
    if (k == "acked") return read(x, *f.mutable_acked());
    if (k != "pong") return false;
    f.mutable_pong();
    return empty_object(x);
  });
}

}  // namespace

void append(std::string& out, client::client_frame const& frame) {
  bool by_hand = frame.has_ack() || frame.has_auth() || (frame.has_send() && !frame.send().body().has_content());
  if (!by_hand) return print(out, frame);
  out.push_back('{');
  if (frame.ref() != 0) {  // 0 means "no reference", and a default is left out
    out.append("\"ref\":");
    append_quoted(out, frame.ref());
    out.push_back(',');
  }
  if (frame.has_send()) {
    out.append("\"send\":");
    send(out, frame.send());
  } else if (frame.has_ack()) {
    out.append("\"ack\":{\"seq\":");
    append_quoted(out, frame.ack().seq());
    out.push_back('}');
  } else {
    out.append("\"auth\":");
    auth(out, frame.auth());
  }
  out.push_back('}');
}

bool parse(std::string_view text, client::server_frame& out) {
  return json_text::parse(text, out, [](json::value const& v, client::server_frame& f) { return read(v, f); });
}

}  // namespace petchat::sdk::detail::json_codec
