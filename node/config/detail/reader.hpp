// The config reader shared by config.cpp (the schema, loading) and sections.cpp (the
// [push] and [federation] sections): walks a parsed document and checks each key, with
// errors naming key and line.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "node/config/config.hpp"

namespace petchat::config::detail {

inline std::string line_of(toml::node const& n) {
  auto const& src = n.source();
  if (src.begin.line == 0) return "";
  return " (line " + std::to_string(src.begin.line) + ")";
}

// Walks one parsed document, checking each key against a schema (config.cpp's schema_of).
class reader {
 public:
  explicit reader(std::vector<std::string>& errors) : errors_(errors) {}

  using key_fn = std::function<void(std::string const& key, toml::node const&)>;
  using section = std::map<std::string, key_fn, std::less<>>;

  void walk(toml::table const& root, std::map<std::string, section, std::less<>> const& schema) {
    for (auto&& [k, v] : root) {
      std::string name(k.str());
      auto s = schema.find(name);
      if (s == schema.end()) {
        fail(name, v, "unknown section");
        continue;
      }
      auto const* table = v.as_table();
      if (!table) {
        fail(name, v, "expected a table ([" + name + "])");
        continue;
      }
      for (auto&& [key, value] : *table) {
        std::string full = name + "." + std::string(key.str());
        auto handler = s->second.find(key.str());
        if (handler == s->second.end()) {
          fail(full, value, "unknown key");
          continue;
        }
        handler->second(full, value);
      }
    }
  }

  void fail(std::string const& key, toml::node const& n, std::string const& why) {
    errors_.push_back(key + line_of(n) + ": " + why);
  }

  template <typename T>
  key_fn integer(T& out, std::int64_t min, std::int64_t max) {
    return [this, &out, min, max](std::string const& key, toml::node const& n) {
      auto v = n.value_exact<std::int64_t>();
      if (!n.is_integer() || !v) return fail(key, n, "expected an integer");
      if (*v < min || *v > max)
        return fail(key, n, "must be between " + std::to_string(min) + " and " + std::to_string(max));
      out = static_cast<T>(*v);
    };
  }

  key_fn boolean(bool& out) {
    return [this, &out](std::string const& key, toml::node const& n) {
      if (!n.is_boolean()) return fail(key, n, "expected true or false");
      out = *n.value<bool>();
    };
  }

  // A string taken as it is.
  key_fn text(std::string& out) {
    return [this, &out](std::string const& key, toml::node const& n) {
      if (!n.is_string()) return fail(key, n, "expected a string");
      out = *n.value<std::string>();
    };
  }

  key_fn string(std::function<std::optional<std::string>(std::string const&)> accept) {
    return [this, accept](std::string const& key, toml::node const& n) {
      if (!n.is_string()) return fail(key, n, "expected a string");
      if (auto why = accept(*n.value<std::string>())) fail(key, n, *why);
    };
  }

 private:
  std::vector<std::string>& errors_;
};

// An array of strings, each checked by `why` (nullopt: fine).
template <typename Check>
reader::key_fn string_list(reader& rd, std::vector<std::string>& out, Check why) {
  return [&rd, &out, why](std::string const& key, toml::node const& n) {
    auto const* arr = n.as_array();
    if (!arr) return rd.fail(key, n, "expected an array of strings");
    out.clear();
    for (auto&& item : *arr) {
      auto v = item.value<std::string>();
      if (!item.is_string())
        rd.fail(key, item, "expected a string");
      else if (auto bad = why(*v))
        rd.fail(key, item, *bad);
      else
        out.push_back(*v);
    }
  };
}

// A string key whose check stores it: fn(value, config) says why not, or nullopt.
template <typename Check>
reader::key_fn checked(reader& rd, node_config& c, Check fn) {
  return rd.string([&c, fn](std::string const& v) { return fn(v, c); });
}

// Why `v` is no NATS subject token (1-64 of letters, digits, - and _), or nullopt.
std::optional<std::string> check_subject_token(std::string const& v);

// The [push] and [federation] sections (sections.cpp).
reader::section push_keys(reader& rd, node_config& c);
reader::section federation_keys(reader& rd, node_config& c);

}  // namespace petchat::config::detail
