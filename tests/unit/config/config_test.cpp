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

TEST_CASE("syntax errors give a line") {
  auto r = load_string("[node\nregion = 1\n", "node.toml");
  CHECK_FALSE(r.ok());
  CHECK(any_error_contains(r, "node.toml (line 1)"));
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
