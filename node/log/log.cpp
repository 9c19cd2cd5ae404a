#include "node/log/log.hpp"

#include "base/format/format.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

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

// Set for the duration of write(): the fields the formatter adds to the line.
thread_local std::span<field const> current_fields;

std::string service_version, service_region;  // set by setup, before any thread logs

std::atomic<config::log_format> active_format{config::log_format::human};

// One ECS document: the standard fields, this node's, and `fields`.
std::string ecs_line(std::int64_t at_ms, char const* level, std::string_view logger, std::string_view message,
                     std::span<field const> fields) {
  std::string line;
  line.reserve(320 + message.size());
  line += "{\"@timestamp\":\"";
  line += format::rfc3339(at_ms);
  line += "\",\"log.level\":\"";
  line += level;
  line += "\",\"message\":\"";
  append_json_escaped(line, message);
  line += "\",\"ecs.version\":\"8.11.0\",\"service.name\":\"petchat-node\"";
  if (!service_version.empty()) {
    line += ",\"service.version\":\"";
    append_json_escaped(line, service_version);
    line += '"';
  }
  if (!service_region.empty()) {
    line += ",\"labels.region\":\"";
    append_json_escaped(line, service_region);
    line += '"';
  }
  line += ",\"log.logger\":\"";
  append_json_escaped(line, logger);
  line += "\",\"process.pid\":";
  line += std::to_string(::getpid());
  for (auto const& f : fields) {
    line += ",\"";
    append_json_escaped(line, f.key);
    line += "\":";
    if (f.number && !f.value.empty()) {
      line += f.value;
    } else {
      line += '"';
      append_json_escaped(line, f.value);
      line += '"';
    }
  }
  return line;
}

// One ECS document per line. Field names follow the Elastic Common Schema.
class ecs_formatter final : public spdlog::formatter {
 public:
  void format(spdlog::details::log_msg const& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    auto line = ecs_line(duration_cast<milliseconds>(msg.time.time_since_epoch()).count(), ecs_level(msg.level),
                         std::string_view(msg.logger_name.data(), msg.logger_name.size()),
                         std::string_view(msg.payload.data(), msg.payload.size()), current_fields);
    line += ",\"process.thread.id\":";
    line += std::to_string(msg.thread_id);
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<ecs_formatter>(); }
};

// The audit logger's level: info at most, so security events are never filtered out by
// a quieter log.level.
spdlog::level::level_enum audit_level(spdlog::level::level_enum shared) {
  return std::min(shared, spdlog::level::info);
}

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
    } else if (n == 2 && c == 0xc2 && static_cast<unsigned char>(text[1]) < 0xa0) {  // C1: U+0080..U+009F
      auto low = static_cast<unsigned char>(text[1]);
      out += "\\u00";
      out += hex[low >> 4];
      out += hex[low & 0xF];
    } else if (n == 3 && text.substr(0, 2) == "\xe2\x80" && (text[2] == '\xa8' || text[2] == '\xa9')) {
      out += text[2] == '\xa8' ? "\\u2028" : "\\u2029";  // line and paragraph separators
    } else {
      out.append(text.data(), n);
    }
    text.remove_prefix(n);
  }
}

void setup(config::log_format format, std::string const& level, std::string const& version, std::string const& region) {
  std::lock_guard lock(setup_mutex);
  service_version = version;
  service_region = region;
  active_format = format;
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
    l->set_level(l->name() == "audit" ? audit_level(shared_level) : shared_level);
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
  logger->set_level(component == "audit" ? audit_level(shared_level) : shared_level);
  logger->flush_on(spdlog::level::info);
  spdlog::register_logger(logger);
  return logger;
}

bool set_level(std::string const& level) {
  static char const* const names[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (std::find(std::begin(names), std::end(names), level) == std::end(names)) return false;
  std::lock_guard lock(setup_mutex);
  shared_level = spdlog::level::from_str(level);
  spdlog::apply_all([&](std::shared_ptr<spdlog::logger> l) {
    l->set_level(l->name() == "audit" ? audit_level(shared_level) : shared_level);
  });
  return true;
}

std::string current_level() {
  std::lock_guard lock(setup_mutex);
  auto name = spdlog::level::to_string_view(shared_level);
  std::string out(name.data(), name.size());
  return out == "warning" ? "warn" : out;
}

std::string printable(std::string_view text) {
  std::string out;
  append_json_escaped(out, text);
  // Quoted in a line as '...' (the audit log): a quote of the client's would end it early,
  // and what follows could pass for the rest of the line to a log reader (fail2ban).
  for (auto at = out.find('\''); at != std::string::npos; at = out.find('\'', at)) out.replace(at, 1, "\\u0027");
  return out;
}

config::log_format current_format() {
  return active_format.load();
}

namespace {

// The line of `message` with `fields`, through `logger` (see write).
void log_with(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view message,
              std::span<field const> fields) {
  if (active_format.load() == config::log_format::json) {
    current_fields = fields;
    logger.log(level, "{}", message);
    current_fields = {};
    return;
  }
  std::string text(message);
  for (auto const& f : fields) {
    if (f.value.empty()) continue;
    text += ' ';
    text += f.key;
    text += '=';
    bool plain =
        std::all_of(f.value.begin(), f.value.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f && c != '"'; });
    if (plain) {
      text += f.value;
    } else {
      text += '"';
      append_json_escaped(text, f.value);
      text += '"';
    }
  }
  logger.log(level, "{}", text);
}

}  // namespace

void write(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view message,
           std::initializer_list<field> fields) {
  if (logger.should_log(level)) log_with(logger, level, message, std::span<field const>(fields.begin(), fields.size()));
}

void audit(std::string_view category, std::string_view action, bool success, std::string_view message,
           std::initializer_list<field> fields) {
  static auto const logger = get("audit");
  auto level = success ? spdlog::level::info : spdlog::level::warn;
  if (!logger->should_log(level)) return;
  std::vector<field> all{{"event.kind", "event"},
                         {"event.category", std::string(category)},
                         {"event.action", std::string(action)},
                         {"event.outcome", success ? "success" : "failure"}};
  all.insert(all.end(), fields.begin(), fields.end());
  log_with(*logger, level, message, all);
}

void ready(std::string const& message, std::string const& human_hints, std::initializer_list<field> fields) {
  if (active_format.load() == config::log_format::json) {
    std::vector<field> all{{"event.action", "node-ready"}};
    all.insert(all.end(), fields.begin(), fields.end());
    auto now =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    auto line = ecs_line(now, "info", "node", message, all) + "}\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
  } else {
    std::fwrite(message.data(), 1, message.size(), stdout);
    std::fputc('\n', stdout);
    std::fwrite(human_hints.data(), 1, human_hints.size(), stdout);
  }
  std::fflush(stdout);
}

std::uint64_t throttle::pass() {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
                 .count();
  std::lock_guard lock(mutex_);
  if (bucket_.take(now, every_ms_, burst_) > 0) {
    ++held_;
    return 0;
  }
  return 1 + std::exchange(held_, 0);
}

}  // namespace petchat::log
