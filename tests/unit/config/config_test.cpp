#include <doctest/doctest.h>

#include <fstream>

#include "node/config/config.hpp"

using namespace petchat::config;

namespace {
bool any_error_contains(load_result const& r, std::string const& text) {
  for (auto const& e : r.errors)
    if (e.find(text) != std::string::npos) return true;
  return false;
}
}  // namespace

TEST_CASE("empty config is the embedded default") {
  auto r = load_string("");
  REQUIRE(r.ok());
  CHECK(r.config.node.region == "local");
  CHECK(r.config.node.data_dir == "./data");
  CHECK(r.config.gateway.listen.str() == "127.0.0.1:8080");
  CHECK(r.config.admin_socket() == std::filesystem::path("./data/admin.sock"));
  CHECK(r.config.users.registration == registration_policy::open);
}

TEST_CASE("the documented example config/node.toml is valid and matches the defaults") {
  auto r = load_file(PETCHAT_SOURCE_ROOT "/config/node.toml");
  for (auto const& e : r.errors) MESSAGE(e);
  REQUIRE(r.ok());
  node_config d;
  CHECK(r.config.node.region == d.node.region);
  CHECK(r.config.gateway.listen.str() == d.gateway.listen.str());
  CHECK(r.config.gateway.max_body_bytes == d.gateway.max_body_bytes);
  CHECK(r.config.users.password_hash_memory_kib == d.users.password_hash_memory_kib);
  CHECK(r.config.users.login_backoff_max_ms == d.users.login_backoff_max_ms);
}

TEST_CASE("values are read") {
  auto r = load_string(R"(
[node]
region = "eu-west"
threads = 4
[gateway]
listen = "[::1]:9000"
max_body_bytes = 1024
[users]
registration = "token"
registration_token = "0123456789abcdef"
[log]
format = "json"
level = "debug"
)");
  REQUIRE(r.ok());
  CHECK(r.config.node.region == "eu-west");
  CHECK(r.config.node.threads == 4);
  CHECK(r.config.gateway.listen.host == "::1");
  CHECK(r.config.gateway.listen.port == 9000);
  CHECK(r.config.gateway.max_body_bytes == 1024);
  CHECK(r.config.users.registration == registration_policy::token);
  CHECK(r.config.log.format == log_format::json);
}

TEST_CASE("unknown keys and sections name the key and line") {
  auto r = load_string("[node]\nregion = \"abc\"\nreigon = \"x\"\n[nope]\na = 1\n");
  CHECK_FALSE(r.ok());
  CHECK(any_error_contains(r, "node.reigon (line 3): unknown key"));
  CHECK(any_error_contains(r, "nope (line 4)"));
}

TEST_CASE("wrong types name the key") {
  auto r = load_string("[node]\nthreads = \"four\"\n[gateway]\nlisten = 8080\n");
  CHECK(any_error_contains(r, "node.threads (line 2): expected an integer"));
  CHECK(any_error_contains(r, "gateway.listen (line 4): expected a string"));
}

TEST_CASE("out-of-range values name the key") {
  auto r = load_string(
      "[node]\nthreads = -1\nregion = \"Bad Region\"\n[gateway]\nlisten = \"127.0.0.1:70000\"\n"
      "[users]\nregistration = \"maybe\"\n");
  CHECK(r.errors.size() == 4);
  CHECK(any_error_contains(r, "node.threads"));
  CHECK(any_error_contains(r, "node.region"));
  CHECK(any_error_contains(r, "gateway.listen"));
  CHECK(any_error_contains(r, "users.registration (line 7): expected one of open, token, closed"));
}

TEST_CASE("token policy needs a long token") {
  auto r = load_string("[users]\nregistration = \"token\"\nregistration_token = \"short\"\n");
  CHECK(any_error_contains(r, "users.registration_token"));
}

TEST_CASE("messages.max_sessions_per_user is the old name of max_streams_per_user") {
  auto old_name = load_string("[messages]\nmax_sessions_per_user = 3\n");
  REQUIRE(old_name.ok());
  CHECK(old_name.config.messages.max_streams_per_user == 3);
  auto new_name = load_string("[messages]\nmax_streams_per_user = 4\n");
  REQUIRE(new_name.ok());
  CHECK(new_name.config.messages.max_streams_per_user == 4);
  auto both = load_string("[messages]\nmax_streams_per_user = 4\nmax_sessions_per_user = 3\n");
  CHECK(any_error_contains(both, "messages.max_sessions_per_user: the old name of messages.max_streams_per_user"));
}

TEST_CASE("syntax errors give a line") {
  auto r = load_string("[node\nregion = 1\n", "node.toml");
  CHECK_FALSE(r.ok());
  CHECK(any_error_contains(r, "node.toml (line 1)"));
}

TEST_CASE("a config path that is not a readable file is an error, not the defaults") {
  auto dir = load_file(PETCHAT_SOURCE_ROOT "/config");  // a directory opens, and reads as nothing
  REQUIRE(dir.errors.size() == 1);
  CHECK(dir.errors[0].find("a directory, not a config file") != std::string::npos);
  CHECK(load_file("/dev/null").ok());  // the defaults, as asked (the Docker first run uses it)
  auto missing = load_file(PETCHAT_SOURCE_ROOT "/config/no-such-file.toml");
  REQUIRE(missing.errors.size() == 1);
  CHECK(missing.errors[0].find("cannot read the file") != std::string::npos);
}

TEST_CASE("flags override and are validated") {
  node_config c;
  std::vector<std::string> errors;
  overrides o;
  o.region = "us-east";
  o.listen = "127.0.0.1:0";
  apply(o, c, errors);
  CHECK(errors.empty());
  CHECK(c.node.region == "us-east");
  CHECK(c.gateway.listen.port == 0);
  overrides bad;
  bad.listen = "nonsense";
  bad.threads = -3;
  apply(bad, c, errors);
  CHECK(errors.size() == 2);
}

TEST_CASE("parse_listen") {
  CHECK(parse_listen("0.0.0.0:80")->port == 80);
  CHECK_FALSE(parse_listen("localhost"));
  CHECK_FALSE(parse_listen(":80"));
  CHECK_FALSE(parse_listen("a:"));
  CHECK_FALSE(parse_listen("a:1x"));
}

TEST_CASE("federation: absent means standalone") {
  auto r = load_string("");
  REQUIRE(r.ok());
  CHECK_FALSE(r.config.federation.enabled());
  CHECK(r.config.federation.regions.empty());
}

TEST_CASE("federation: the section and the region directory are read") {
  std::string key(64, 'a');
  auto r = load_string(R"(
[federation]
nats_urls = ["nats://127.0.0.1:4222", "tls://hub.example.org:4222"]
jetstream_domain = "eu-west"
retention_s = 86400
presence_interval_s = 5
public_url = "https://eu.example.org"

[[federation.regions]]
name = "us-east"
public_keys = [")" + key +
                       R"(", ")" + std::string(64, '0') + R"("]
url = "https://us.example.org"
location = "40.7,-74.0"
)");
  for (auto const& e : r.errors) MESSAGE(e);
  REQUIRE(r.ok());
  auto const& f = r.config.federation;
  CHECK(f.enabled());
  CHECK(f.nats_urls.size() == 2);
  CHECK(f.jetstream_domain == "eu-west");
  CHECK(f.retention_s == 86400);
  CHECK(f.presence_interval_s == 5);
  REQUIRE(f.regions.size() == 1);
  CHECK(f.regions[0].name == "us-east");
  REQUIRE(f.regions[0].keys.size() == 2);
  CHECK(f.regions[0].keys[0][0] == 0xaa);
  CHECK(f.regions[0].keys[1][31] == 0x00);
  CHECK(f.regions[0].location == "40.7,-74.0");
}

TEST_CASE("federation: broken directory entries name the key") {
  auto r = load_string(R"(
[federation]
nats_urls = ["http://not-nats"]
subject_prefix = "a.b"

[[federation.regions]]
name = "X"
public_keys = ["abcd"]
colour = "blue"

[[federation.regions]]
url = "https://nameless.example.org"
)");
  CHECK_FALSE(r.ok());
  CHECK(any_error_contains(r, "federation.nats_urls"));
  CHECK(any_error_contains(r, "federation.subject_prefix"));
  CHECK(any_error_contains(r, "federation.regions[0].name"));
  CHECK(any_error_contains(r, "federation.regions[0].public_keys"));
  CHECK(any_error_contains(r, "federation.regions[0].colour (line 9): unknown key"));
  CHECK(any_error_contains(r, "federation.regions[1] (line 11): missing name"));
  CHECK(any_error_contains(r, "federation.regions[1] (line 11): missing public_keys"));
}

TEST_CASE("federation: regions without NATS, half-set credentials") {
  auto r = load_string(R"(
[federation]
tls_cert_file = "/etc/petchat/nats.crt"
nkey = "UABC"

[[federation.regions]]
name = "us-east"
public_keys = [")" + std::string(64, 'b') +
                       R"("]
)");
  CHECK_FALSE(r.ok());
  CHECK(any_error_contains(r, "federation.regions: listed, but federation.nats_urls is not set"));
  CHECK(any_error_contains(r, "tls_key_file"));
  CHECK(any_error_contains(r, "nkey_seed_file"));
}
