// Logging for every component: spdlog loggers named after the component ("gateway",
// "users", ...) writing to stderr, either human-readable (colour on a terminal) or as ECS
// JSON lines for Elasticsearch/Kibana (via Filebeat or journald).
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/limits/limits.hpp"
#include "node/config/config.hpp"

namespace petchat::log {

// Installs the sink and level for every logger, existing and future. Call once at start-up.
// `version` and `region` go into every JSON line (service.version, labels.region).
void setup(config::log_format format, std::string const& level, std::string const& version = "",
           std::string const& region = "");

// Changes the level of every logger at run time (the audit category stays at info or
// more); false for a name that is not a level.
bool set_level(std::string const& level);
std::string current_level();

// The format set up (human until setup says otherwise).
config::log_format current_format();

// A structured field of a log line, by its Elastic Common Schema name ("client.ip",
// "user.name", "http.response.status_code", "event.action", ...).
struct field {
  std::string_view key;
  std::string value;
  bool number = false;  // written as a JSON number
};

// A line with fields: in JSON mode each is a field of the ECS document; in human mode
// they follow the message as " key=value". The logger's level applies as usual.
void write(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view message,
           std::initializer_list<field> fields);

// A security or audit event (logger "audit", always at info or warn, whatever log.level
// says of other loggers): ECS event.kind "event", event.category, event.action (e.g.
// "user-login"), event.outcome ("success" or "failure"). Failures are warnings.
void audit(std::string_view category, std::string_view action, bool success, std::string_view message,
           std::initializer_list<field> fields);

// The ready line the node prints on stdout when it serves: as is in human mode, as an ECS
// document (event.action "node-ready") in JSON mode, so every line of every stream parses.
void ready(std::string const& message, std::string const& human_hints, std::initializer_list<field> fields);

// The logger of one component, created on first use.
std::shared_ptr<spdlog::logger> get(std::string const& component);

// `text` safe inside a human log line: as the inside of a JSON string (below), and no
// single quote (\u0027: the audit log quotes names as '...'), so a client's text cannot
// forge a line, end its quote early, or hide in control characters.
std::string printable(std::string_view text);

// Appends `text` to `out` as the inside of a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, so every line stays valid JSON.
void append_json_escaped(std::string& out, std::string_view text);

// Lets a repeated line through once per `every` on average, `burst` at once: a flood of
// refused connections must not fill the disk with one warning each. Any thread.
class throttle {
 public:
  explicit throttle(std::chrono::milliseconds every, std::uint32_t burst = 1)
      : every_ms_(every.count()), burst_(burst) {}
  // 0 if this one is held back; else 1 + how many were held back since the last let through.
  std::uint64_t pass();

 private:
  std::int64_t every_ms_;
  std::int64_t burst_;
  std::mutex mutex_;
  limits::token_bucket bucket_;  // guarded
  std::uint64_t held_ = 0;       // guarded
};

}  // namespace petchat::log
