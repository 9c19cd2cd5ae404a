#include "bench/process.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace petchat::bench {

child spawn(std::vector<std::string> const& argv, std::string const& ready_prefix) {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    std::vector<char*> args;
    for (auto const& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  child c;
  c.pid = pid;
  std::string buffer;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char chunk[4096];
    ssize_t n = ::read(out[0], chunk, sizeof chunk);
    if (n <= 0) break;
    buffer.append(chunk, static_cast<std::size_t>(n));
    auto pos = buffer.find(ready_prefix);
    if (pos != std::string::npos) {
      auto end = buffer.find('\n', pos);
      if (end == std::string::npos) continue;
      c.ready_line = buffer.substr(pos, end - pos);
      auto host = c.ready_line.find("127.0.0.1:");
      if (host == std::string::npos) break;
      c.port = static_cast<std::uint16_t>(std::stoul(c.ready_line.substr(host + 10)));
      // Keep draining the child's stdout so it never blocks on a full pipe.
      std::thread([fd = out[0]] {
        char sink[4096];
        while (::read(fd, sink, sizeof sink) > 0) {
        }
        ::close(fd);
      }).detach();
      return c;
    }
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  throw std::runtime_error("no '" + ready_prefix + "' from " + argv[0] + "; output: " + buffer);
}

int stop(child& c, bool kill9) {
  if (c.pid <= 0) return -1;
  ::kill(c.pid, kill9 ? SIGKILL : SIGTERM);
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  c.pid = -1;
  return status;
}

std::uint64_t cpu_micros(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the ")" that closes the command name: state is field 3; utime 14, stime 15.
  auto close = all.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(all.substr(close + 2));
  std::string f;
  std::uint64_t utime = 0, stime = 0;
  for (int i = 3; fields >> f; ++i) {
    if (i == 14) utime = std::stoull(f);
    if (i == 15) {
      stime = std::stoull(f);
      break;
    }
  }
  long ticks = ::sysconf(_SC_CLK_TCK);
  return (utime + stime) * 1000000ull / static_cast<std::uint64_t>(ticks);
}

std::uint64_t own_cpu_micros() {
  return cpu_micros(::getpid());
}

std::uint64_t resident_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

std::filesystem::path temp_dir(std::string const& tag) {
  std::string tmpl = "/tmp/petchat-bench-" + tag + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

}  // namespace petchat::bench
