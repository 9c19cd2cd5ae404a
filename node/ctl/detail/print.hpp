// What petchatctl prints for people: numbers as people read them, aligned tables, and
// one printer per kind of answer from the node.
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace petchat::ctl::detail {

namespace json = boost::json;

// 12, 0.25: never an exponent.
std::string number(double v);
// "42 s", "3 min 5 s", "2 h 0 min 9 s", "4 d 1 h 12 min".
std::string duration(std::int64_t seconds);

// Text from the node or a backup as a terminal may show it: control characters, direction
// overrides and bytes that are not UTF-8 as escapes a person reads.
std::string for_terminal(std::string_view s);
// A JSON value as text: strings as they are, null as nothing, numbers by number().
std::string json_string(json::value const& v);
std::string field(json::object const& o, char const* key);
void print_table(std::vector<std::string> const& header, std::vector<std::vector<std::string>> const& rows);

void print_users(json::value const& answer);
void print_user(json::value const& answer);
void print_sessions(json::value const& answer);
void print_assets(json::value const& answer);
void print_verify(json::value const& answer);
void print_status(json::value const& answer);
void print_federation(json::value const& answer);
void print_push(json::value const& answer);
void print_push_targets(json::value const& answer);
void print_online(json::value const& answer);
void print_reload(json::value const& answer);
void print_token(json::value const& answer);
void print_tokens(json::value const& answer);

}  // namespace petchat::ctl::detail
