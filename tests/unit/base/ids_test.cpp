#include <doctest/doctest.h>

#include "base/ids/ids.hpp"

using namespace petchat::ids;

TEST_CASE("region_of: the part after the one '@'") {
  CHECK(region_of("alice@europe") == "europe");
  CHECK(region_of("alice").empty());
  CHECK(region_of("alice@").empty());
  // A second '@' belongs to no region: neither "europe" nor "america@europe".
  CHECK(region_of("alice@america@europe").empty());
}

TEST_CASE("parse_user_id: full ids, bare names, and the name rules") {
  auto full = parse_user_id("alice@eu-west", "local");
  REQUIRE(full);
  CHECK(full->name == "alice");
  CHECK(full->region == "eu-west");
  CHECK(full->str() == "alice@eu-west");
  auto bare = parse_user_id("bob", "europe");
  REQUIRE(bare);
  CHECK(bare->str() == "bob@europe");
  CHECK_FALSE(parse_user_id("Alice@europe", "local"));
  CHECK_FALSE(parse_user_id("al", "local"));
  CHECK_FALSE(parse_user_id("alice@europe@asia", "local"));
  CHECK_FALSE(parse_user_id("alice@", "local"));
}

TEST_CASE("is_valid_name") {
  CHECK(is_valid_name("abc"));
  CHECK(is_valid_name("a.b_c-9"));
  CHECK_FALSE(is_valid_name("9abc"));
  CHECK_FALSE(is_valid_name(std::string(33, 'a')));
  CHECK_FALSE(is_valid_name("ab"));
}
