// The standard process_* metrics (as Prometheus's own client libraries name them), read
// from /proc/self at scrape time.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "node/metrics/metrics.hpp"

namespace petchat::metrics {

namespace {

// /proc/self/stat's fields after the command name (which may hold spaces and parens):
// the 1-based field numbers of proc(5) minus 3 index the result.
std::vector<std::string> stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  std::vector<std::string> out;
  if (close == std::string::npos) return out;
  std::istringstream rest(text.substr(close + 2));
  for (std::string f; rest >> f;) out.push_back(f);
  return out;
}

double field(std::vector<std::string> const& f, std::size_t proc5_number) {
  auto i = proc5_number - 3;
  return i < f.size() ? std::stod(f[i]) : 0.0;
}

double boot_time_s() {
  std::ifstream in("/proc/stat");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("btime ", 0) == 0) return std::stod(line.substr(6));
  return 0;
}

double open_fds() {
  std::error_code ec;
  double n = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n;
}

}  // namespace

void add_process_metrics(registry& r) {
  static double const ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  static double const page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  r.add_counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds", [] {
    auto f = stat_fields();
    return (field(f, 14) + field(f, 15)) / ticks;  // utime, stime
  });
  r.add_gauge("process_resident_memory_bytes", "Resident memory size in bytes",
              [] { return field(stat_fields(), 24) * page; });  // rss, in pages
  r.add_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes",
              [] { return field(stat_fields(), 23); });               // vsize
  double started = boot_time_s() + field(stat_fields(), 22) / ticks;  // starttime, ticks after boot
  r.add_gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds",
              [started] { return started; });
  r.add_gauge("process_open_fds", "Open file descriptors", [] { return open_fds(); });
  r.add_gauge("process_max_fds", "The open-files limit (soft)", [] {
    rlimit rl{};
    return ::getrlimit(RLIMIT_NOFILE, &rl) == 0 ? static_cast<double>(rl.rlim_cur) : 0.0;
  });
}

}  // namespace petchat::metrics
