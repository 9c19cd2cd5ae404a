// Child processes for the benchmarks (a petchat-node or petchat-echo started on a free
// loopback port) and what /proc tells about them.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace petchat::bench {

struct child {
  pid_t pid = -1;
  std::uint16_t port = 0;
  std::string ready_line;
};

// Starts `argv` and waits (up to 30 s) for a stdout line starting with `ready_prefix`;
// the port is the number after the last ':' in "...127.0.0.1:PORT". Throws on failure.
child spawn(std::vector<std::string> const& argv, std::string const& ready_prefix);

// SIGTERM (clean) or SIGKILL, then waits. Returns the exit status.
int stop(child& c, bool kill9 = false);

// User + system CPU time of a process (all threads), in microseconds.
std::uint64_t cpu_micros(pid_t pid);
// The same for this process (the tool itself), from the same /proc clock, so that the two
// compare.
std::uint64_t own_cpu_micros();
// Resident memory of a process, in bytes.
std::uint64_t resident_bytes(pid_t pid);

// A fresh temporary directory (removed by the caller).
std::filesystem::path temp_dir(std::string const& tag);

}  // namespace petchat::bench
