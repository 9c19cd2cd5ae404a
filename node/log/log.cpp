#include "node/log/log.hpp"

#include "base/format/format.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include <unistd.h>

namespace petchat::log {
namespace {

std::mutex setup_mutex;  // guards the sink and level below
spdlog::sink_ptr shared_sink;
spdlog::level::level_enum shared_level = spdlog::level::info;

char const* ecs_level(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

// One ECS document per line. Field names follow the Elastic Common Schema.
class ecs_formatter final : public spdlog::formatter {
 public:
  void format(spdlog::details::log_msg const& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    auto stamp = format::rfc3339(duration_cast<milliseconds>(msg.time.time_since_epoch()).count());
    std::string line;
    line.reserve(256 + msg.payload.size());
    line += "{\"@timestamp\":\"";
    line += stamp;
    line += "\",\"log.level\":\"";
    line += ecs_level(msg.level);
    line += "\",\"message\":\"";
    append_json_escaped(line, std::string_view(msg.payload.data(), msg.payload.size()));
    line += "\",\"ecs.version\":\"8.11.0\",\"service.name\":\"petchat-node\",\"log.logger\":\"";
    append_json_escaped(line, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    line += "\",\"process.pid\":";
    line += std::to_string(::getpid());
    line += ",\"process.thread.id\":";
    line += std::to_string(msg.thread_id);
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<ecs_formatter>(); }
};

}  // namespace

void append_json_escaped(std::string& out, std::string_view text) {
  static char const hex[] = "0123456789abcdef";
  while (!text.empty()) {
    auto c = static_cast<unsigned char>(text[0]);
    std::size_t n = format::utf8_sequence(text);
    if (n == 0) {
      out += "\\ufffd";
      n = 1;
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xF];
    } else {
      out.append(text.data(), n);
    }
    text.remove_prefix(n);
  }
}

void setup(config::log_format format, std::string const& level) {
  std::lock_guard lock(setup_mutex);
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  if (format == config::log_format::json) {
    sink->set_formatter(std::make_unique<ecs_formatter>());
  } else {
    sink->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
  shared_sink = sink;
  shared_level = spdlog::level::from_str(level);
  spdlog::apply_all([&](std::shared_ptr<spdlog::logger> l) {
    l->sinks().assign({shared_sink});
    l->set_level(shared_level);
  });
}

std::shared_ptr<spdlog::logger> get(std::string const& component) {
  std::lock_guard lock(setup_mutex);
  if (auto existing = spdlog::get(component)) return existing;
  if (!shared_sink) {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
    shared_sink = sink;
  }
  auto logger = std::make_shared<spdlog::logger>(component, shared_sink);
  logger->set_level(shared_level);
  logger->flush_on(spdlog::level::info);
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace petchat::log
