// A process's state, threads, resident memory and open descriptors from /proc, for the benchmarks
// that watch the daemon and its runners (soak, burst_rss).
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include <fstream>
#include <string>

namespace pipelined::bench {

struct Proc {
  bool alive = false;
  long rss_kb = 0, threads = 0, fds = 0;
};

inline Proc read_proc(pid_t pid) {
  Proc p;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("State:", 0) == 0) p.alive = line.find('Z') == std::string::npos && line.find("X (dead)") == std::string::npos;
    if (line.rfind("VmRSS:", 0) == 0) p.rss_kb = std::stol(line.substr(6));
    if (line.rfind("Threads:", 0) == 0) p.threads = std::stol(line.substr(8));
  }
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (const dirent* e = ::readdir(d)) p.fds += e->d_name[0] != '.';
    ::closedir(d);
  }
  return p;
}

}  // namespace pipelined::bench
