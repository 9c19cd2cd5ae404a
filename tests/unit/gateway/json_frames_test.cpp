// The hand-written JSON frames against Protobuf's JSON mapping, which defined the protocol's
// JSON before them: every frame must read as the same JSON value, and every client frame
// must be taken or refused as Protobuf's parser takes or refuses it.
#include <doctest/doctest.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <boost/json.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "node/gateway/detail/json_frames.hpp"

namespace {

namespace client = petchat::client;
namespace json = boost::json;
namespace jf = petchat::gateway::detail::json_frames;

std::string protobuf_json(client::server_frame const& f) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string text;
  REQUIRE(google::protobuf::util::MessageToJsonString(f, &text, o).ok());
  return text;
}

// Numbers compare by value: the two writers may spell a double differently (1e+21 and
// 1000000000000000000000 are the same number).
bool same(json::value const& a, json::value const& b) {
  if (a.is_number() && b.is_number()) return a.to_number<double>() == b.to_number<double>();
  if (a.kind() != b.kind()) return false;
  if (a.is_object()) {
    auto const& x = a.get_object();
    auto const& y = b.get_object();
    if (x.size() != y.size()) return false;
    for (auto const& kv : x) {
      auto const* other = y.if_contains(kv.key());
      if (!other || !same(kv.value(), *other)) return false;
    }
    return true;
  }
  if (a.is_array()) {
    auto const& x = a.get_array();
    auto const& y = b.get_array();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!same(x[i], y[i])) return false;
    return true;
  }
  return a == b;
}

void check_written(client::server_frame const& f) {
  std::string ours;
  jf::append(ours, f);
  auto theirs = protobuf_json(f);
  INFO("ours:   ", ours);
  INFO("theirs: ", theirs);
  CHECK(same(json::parse(ours), json::parse(theirs)));
}

client::message sample_message(std::string text) {
  client::message m;
  m.set_id("AaI1MyQHRKhfeWTzf-d5LA");
  m.set_conversation_id("dm8EmKc4indxouFmmnqPVPA");
  m.set_from("alice@eu-west");
  m.set_to("bob@us-east");
  m.set_client_id("c-1");
  m.set_sent_at_ms(1796188873809);
  m.mutable_body()->set_text(std::move(text));
  m.set_expires_at_ms(1798780873809);
  m.set_delivered_at_ms(0);
  m.set_read_at_ms(std::numeric_limits<std::int64_t>::max());
  return m;
}

}  // namespace

TEST_CASE("every kind of server frame reads as the same JSON as Protobuf's") {
  client::server_frame f;
  f.set_ref(std::numeric_limits<std::uint64_t>::max());
  auto* w = f.mutable_welcome();
  w->set_user_id("alice@eu-west");
  w->set_device_id("d1");
  w->set_mailbox_seq(16);
  w->set_resume_after(12);
  check_written(f);

  f.Clear();
  auto* a = f.mutable_accepted();
  a->set_client_id("c\"1\\");
  a->set_message_id("m");
  a->set_sent_at_ms(-5);
  a->set_duplicate(true);
  check_written(f);

  f.Clear();
  f.mutable_event()->set_seq(7);
  *f.mutable_event()->mutable_message() = sample_message("hi");
  check_written(f);
  f.mutable_event()->mutable_message()->clear_body();  // no body at all
  check_written(f);

  for (auto status : {client::DELIVERED, client::READ, client::UNDELIVERABLE, client::RECEIPT_STATUS_UNSPECIFIED}) {
    f.Clear();
    auto* r = f.mutable_event()->mutable_receipt();
    r->set_message_id("m");
    r->set_conversation_id("c");
    r->set_status(status);
    r->set_by("bob@us-east");
    r->set_at_ms(1);
    check_written(f);
    r->set_by("");  // a group's count receipt
    r->set_recipients(999);
    r->set_delivered_count(512);
    r->set_read_count(4294967295u);
    check_written(f);
  }
  for (auto kind : {client::CREATED, client::MEMBERS_ADDED, client::ROLE_CHANGED, client::MEMBER_REMOVED,
                    client::CHANGE_KIND_UNSPECIFIED}) {
    f.Clear();
    auto* c = f.mutable_event()->mutable_conversation_change();
    c->set_conversation_id("gabc");
    c->set_version(18446744073709551615ull);
    c->set_kind(kind);
    c->set_by("alice@eu-west");
    c->set_at_ms(-1);
    if (kind != client::ROLE_CHANGED) {
      c->add_users("bob@eu-west");
      c->add_users("c\"arol\u2028@eu-west");
    }
    c->set_role(kind == client::ROLE_CHANGED ? client::OWNER : client::MEMBER_ROLE_UNSPECIFIED);
    c->set_title("t\n");
    c->set_description("");
    c->set_ttl_s(86400);
    c->set_history_visible(kind == client::CREATED);
    if (kind == client::MEMBER_REMOVED) {  // by nobody, and why
      c->set_by("");
      c->set_reason("user_not_found");
    }
    check_written(f);
  }
  f.Clear();
  auto* refused = f.mutable_event()->mutable_request_refused();
  refused->set_conversation_id("gabc");
  refused->set_request_id("r1");
  refused->set_at_ms(5);
  check_written(f);  // no code, no failed members
  refused->set_code("forbidden_role");
  refused->set_message("your role \"may\" not");
  for (auto const* who : {"ghost@eu-west", "c\u2028@us-east"}) {
    auto* m = refused->add_failed();
    m->set_user_id(who);
    m->set_code("user_not_found");
    m->set_message("no user");
  }
  check_written(f);
  f.Clear();
  f.mutable_event()->mutable_read_mark()->set_message_id("m");
  check_written(f);
  f.Clear();
  f.mutable_event()->mutable_deleted()->set_by("alice@eu-west");
  check_written(f);
  f.Clear();
  f.mutable_presence()->set_user_id("bob@us-east");
  f.mutable_presence()->set_state(client::ONLINE);
  f.mutable_presence()->set_last_seen_ms(3);
  check_written(f);
  f.Clear();
  f.mutable_typing()->set_from("bob@us-east");
  f.mutable_typing()->set_active(true);
  check_written(f);
  f.Clear();
  f.mutable_error()->set_code("rate_limited");
  f.mutable_error()->set_message("more than 10 messages per second");
  check_written(f);
  f.Clear();
  f.mutable_pong();
  check_written(f);
  f.Clear();
  f.mutable_acked()->set_seq(99);
  check_written(f);
  f.Clear();  // no kind: only the ref
  check_written(f);
}

TEST_CASE("a message alone (as REST serves it) reads as the same JSON as Protobuf's") {
  auto m = sample_message("rest");
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string theirs;
  REQUIRE(google::protobuf::util::MessageToJsonString(m, &theirs, o).ok());
  std::string ours;
  jf::append(ours, m);
  INFO("ours:   ", ours);
  INFO("theirs: ", theirs);
  CHECK(same(json::parse(ours), json::parse(theirs)));
}

TEST_CASE("a message event written around the message's shared JSON is the text of the event itself") {
  auto m = sample_message("shared by every member");
  std::string part;
  jf::append(part, m);
  for (std::uint64_t seq : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{300}, std::uint64_t{1} << 63}) {
    CAPTURE(seq);
    client::event e;
    e.set_seq(seq);
    *e.mutable_message() = m;
    std::string whole, around;
    jf::append(whole, e);
    jf::append_message_event(around, seq, part);
    CHECK(around == whole);
  }
}

TEST_CASE("text of every kind is escaped as JSON and reads back the same") {
  std::string every_control;
  for (char c = 1; c < 0x20; ++c) every_control.push_back(c);
  for (std::string text : {std::string("plain"), std::string("quote \" backslash \\ slash /"), every_control,
                           std::string("\x7f delete"), std::string("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"),
                           std::string("line\xe2\x80\xa8separators\xe2\x80\xa9"), std::string("<script>&amp;</script>"),
                           std::string("nul \0 inside", 12), std::string()}) {
    client::server_frame f;
    f.mutable_event()->set_seq(1);
    *f.mutable_event()->mutable_message() = sample_message(text);
    check_written(f);
    std::string ours;
    jf::append(ours, f);
    CHECK(json::parse(ours).at("event").at("message").at("body").at("text").as_string() == text);
  }
}

TEST_CASE("bytes that are not UTF-8 become U+FFFD, so the frame is still valid text") {
  client::server_frame f;
  *f.mutable_event()->mutable_message() = sample_message("bad \xff\xfe and cut \xe2\x82");
  std::string ours;
  jf::append(ours, f);
  auto text = json::parse(ours).at("event").at("message").at("body").at("text").as_string();
  CHECK(text == "bad \xef\xbf\xbd\xef\xbf\xbd and cut \xef\xbf\xbd\xef\xbf\xbd");
}

TEST_CASE("structured content reads as the same JSON, numbers by value") {
  json::value content = json::parse(R"({
    "n": 3, "half": 1.5, "big": 1e21, "neg": -0.25, "huge": -9223372036854775808, "max": 18446744073709551615,
    "yes": true, "no": false, "nothing": null, "s": "x\"y",
    "list": [1, "two", [3, {"four": 4}], {}], "empty": {}, "k\"ey\n": "escaped key",
    "deep": {"a": {"b": {"c": [[]]}}}
  })");
  std::string payload =
      R"({"send":{"client_id":"c","to":"bob@us-east","body":{"text":"t","content":)" + json::serialize(content) + "}}}";
  client::client_frame in;
  REQUIRE(jf::parse(payload, in));
  client::server_frame f;
  auto* m = f.mutable_event()->mutable_message();
  *m = sample_message("with content");
  *m->mutable_body() = in.send().body();
  check_written(f);
  std::string ours;
  jf::append(ours, f);
  INFO("ours: ", ours);
  CHECK(same(json::parse(ours).at("event").at("message").at("body").at("content"), content));
}

TEST_CASE("attachments read as the same JSON as Protobuf's, and come back through the reader") {
  client::server_frame f;
  auto* m = f.mutable_event()->mutable_message();
  *m = sample_message("");
  auto* photo = m->mutable_body()->add_attachments();
  photo->set_asset_id(std::string(64, 'a'));
  photo->set_content_type("image/jpeg");
  photo->set_size(std::numeric_limits<std::uint64_t>::max());
  photo->set_name("caf\xc3\xa9 \"1\".jpg");
  photo->set_width(4000);
  photo->set_height(3000);
  photo->set_thumbnail_id(std::string(64, 'b'));
  auto* voice = m->mutable_body()->add_attachments();
  voice->set_asset_id(std::string(64, 'c'));
  voice->set_duration_ms(86400000);
  check_written(f);
  m->mutable_body()->clear_attachments();
  check_written(f);  // no attachments: an empty list, as Protobuf prints it

  std::string payload = R"({"send":{"client_id":"c","to":"bob","body":{"attachments":[{"asset_id":")" +
                        std::string(64, 'd') + R"(","name":"a.ogg","duration_ms":1500}]}}})";
  client::client_frame in;
  REQUIRE(jf::parse(payload, in));
  REQUIRE(in.send().body().attachments_size() == 1);
  CHECK(in.send().body().attachments(0).asset_id() == std::string(64, 'd'));
  CHECK(in.send().body().attachments(0).name() == "a.ogg");
  CHECK(in.send().body().attachments(0).duration_ms() == 1500);
}

TEST_CASE("numbers in content are read to the nearest double") {
  for (char const* n : {"0.1", "1e-300", "123456789012345680000", "2.2250738585072014e-308", "9007199254740993",
                        "0.30000000000000004", "1.7976931348623157e308"}) {
    INFO("number: ", n);
    std::string payload = std::string(R"({"send":{"body":{"content":{"n":)") + n + "}}}}";
    client::client_frame in;
    REQUIRE(jf::parse(payload, in));
    CHECK(in.send().body().content().fields().at("n").number_value() == std::strtod(n, nullptr));
  }
}

TEST_CASE("client frames are read as Protobuf's parser reads them, and refused where it refuses them") {
  std::vector<std::string> frames = {
      R"({"ref":"1","send":{"client_id":"c1","to":"bob@us-east","body":{"text":"hi"}}})",
      R"({"ref":2,"send":{"clientId":"c1","to":"bob","body":{"text":"hi"},"ttlS":"60"}})",
      R"({"send":{"client_id":"c1","to":"bob","body":{"text":"hi","content":{"a":[1,2,{"b":null}]}},"ttl_s":4294967295}})",
      R"({"send":{"client_id":"c1","to":"bob","body":{"text":"hi"},"ttl_s":4294967296}})",
      R"({"send":{"client_id":"c1","to":"bob","body":{"text":"hi"},"ttl_s":-1}})",
      R"({"send":{"client_id":"c1","to":"bob","body":{"text":"hi"},"ttl_s":1.5}})",
      R"({"send":{"client_id":"c1","to":"bob","body":{"text":"hi"},"ttl_s":"1e2"}})",
      R"({"send":{"client_id":7,"to":"bob"}})",
      R"({"send":{"client_id":null,"to":"bob"}})",
      R"({"send":{"client_id":"c","to":"bob","unknown":{"x":1}}})",
      R"({"send":null})",
      R"({"send":[]})",
      R"({"ack":{"seq":"18446744073709551615"}})",
      R"({"ack":{"seq":"18446744073709551616"}})",
      R"({"ack":{"seq":"-1"}})",
      R"({"ack":{"seq":12}, "ref":"5"})",
      R"({"ack":{"seq":" 12"}})",
      R"({"ack":{}})",
      R"({"ack":{"seq":1},"send":{"client_id":"c"}})",
      R"({"read":{"conversation_id":"c","messageId":"m"}})",
      R"({"typing":{"to":"bob","active":true}})",
      R"({"typing":{"conversation_id":"gabc","active":false}})",
      R"({"typing":{"conversationId":"gabc","active":true}})",
      R"({"send":{"client_id":"c1","conversation_id":"gabc","body":{"text":"to the group"}}})",
      R"({"send":{"client_id":"c1","conversationId":"gabc","to":"bob","body":{"text":"both"}}})",
      R"({"send":{"client_id":"c1","conversation_id":5,"body":{"text":"hi"}}})",
      R"({"typing":{"to":"bob","active":"true"}})",
      R"({"typing":{"to":"bob","active":1}})",
      R"({"auth":{"access_token":"t","after_seq":"0"}})",
      R"({"auth":{"accessToken":"t"}})",
      R"({"auth":{"access_token":"t","after_seq":null}})",
      R"({"ping":{}})",
      R"({"ping":{"x":1}})",
      R"({"ping":null})",
      R"({"ref":"-3","ping":{}})",
      R"({"future_kind":{"x":1}})",
      R"({})",
      R"([])",
      R"("send")",
      R"({"send":{"client_id":"c"})",
      R"({"send":{"client_id":"c"}} trailing)",
      R"({"send":{"client_id":"\ud83d\ude00"}})",
  };
  for (auto const& text : frames) {
    INFO("frame: ", text);
    client::client_frame ours;
    bool ours_ok = jf::parse(text, ours);
    client::client_frame theirs;
    google::protobuf::util::JsonParseOptions o;
    o.ignore_unknown_fields = true;
    bool theirs_ok = google::protobuf::util::JsonStringToMessage(text, &theirs, o).ok();
    CHECK(ours_ok == theirs_ok);
    if (ours_ok && theirs_ok) CHECK(google::protobuf::util::MessageDifferencer::Equals(ours, theirs));
  }
}

TEST_CASE("damaged client frames are taken or refused as Protobuf's parser decides") {
  // Valid frames with bytes flipped, cut short or repeated: every variant is read the same
  // way by both parsers (a name repeated in one object is the one known difference, and
  // these damages do not make one).
  std::vector<std::string> seeds = {
      R"({"ref":"12","send":{"client_id":"c-1","to":"bob@us-east","body":{"text":"hi \u00e9 there"},"ttl_s":60}})",
      R"({"ack":{"seq":"123456"}})",
      R"({"ref":7,"read":{"conversation_id":"dm8EmKc4","message_id":"AaI1MyQHRKhfeWTzf-d5LA"}})",
      R"({"typing":{"to":"bob@us-east","active":false}})",
      R"({"auth":{"access_token":"v1.abc.def","after_seq":"99"}})",
      R"({"send":{"client_id":"c","to":"b","body":{"text":"t","content":{"k":[1,2,{"x":"y"}],"n":null}}}})",
  };
  std::uint64_t state = 0x9e3779b97f4a7c15ULL;  // a fixed sequence: the test is repeatable
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  static constexpr char alphabet[] = "{}[]\":,0123456789-.eE tfnul\\abc";
  int taken = 0;
  int refused = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string text = seeds[next() % seeds.size()];
    int damages = 1 + static_cast<int>(next() % 3);
    for (int d = 0; d < damages && !text.empty(); ++d) {
      std::size_t at = next() % text.size();
      switch (next() % 4) {
        case 0:
          text[at] = alphabet[next() % (sizeof alphabet - 1)];
          break;
        case 1:
          text.erase(at, 1);
          break;
        case 2:
          text.insert(at, 1, alphabet[next() % (sizeof alphabet - 1)]);
          break;
        default:
          text.resize(at);
      }
    }
    client::client_frame ours;
    client::client_frame theirs;
    google::protobuf::util::JsonParseOptions o;
    o.ignore_unknown_fields = true;
    bool theirs_ok = google::protobuf::util::JsonStringToMessage(text, &theirs, o).ok();
    bool ours_ok = jf::parse(text, ours);
    INFO("frame: ", text);
    CHECK(ours_ok == theirs_ok);
    if (ours_ok && theirs_ok) CHECK(google::protobuf::util::MessageDifferencer::Equals(ours, theirs));
    ++(theirs_ok ? taken : refused);
  }
  // The damages make both kinds: frames still taken (a changed value) and frames refused.
  CHECK(taken > 100);
  CHECK(refused > 100);
}
