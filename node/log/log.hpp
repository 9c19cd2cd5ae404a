// Logging for every component: spdlog loggers named after the component ("gateway",
// "users", ...) writing to stderr, either human-readable (colour on a terminal) or as ECS
// JSON lines for Elasticsearch/Kibana (via Filebeat or journald).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "node/config/config.hpp"

namespace petchat::log {

// Installs the sink and level for every logger, existing and future. Call once at start-up.
void setup(config::log_format format, std::string const& level);

// The logger of one component, created on first use.
std::shared_ptr<spdlog::logger> get(std::string const& component);

// Appends `text` to `out` as the inside of a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, so every line stays valid JSON.
void append_json_escaped(std::string& out, std::string_view text);

}  // namespace petchat::log
