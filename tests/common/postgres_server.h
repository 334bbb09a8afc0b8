// Test harness: a private PostgreSQL 15 server (Debian's postgresql package, installed by
// scripts/deps) in a temporary directory on a free loopback port, trust authentication, one
// database "pipelined". PostgreSQL refuses to run as root: as root, the server runs as the
// `postgres` user (runuser). stop()/start() keep the data: a test can take the server away and
// bring it back under load.
#pragma once

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/common/free_port.h"

namespace pipelined::testing {

class PostgresServer {
 public:
  static constexpr const char* kBin = "/usr/lib/postgresql/15/bin";

  PostgresServer() {
    char tmpl[] = "/tmp/pipelined-pg.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    port_ = free_loopback_port();
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) throw std::runtime_error("PostgreSQL runs as the user postgres, which does not exist (scripts/deps)");
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) throw std::runtime_error("chown " + dir_.string() + " failed");
      as_ = "runuser -u postgres -- ";
    }
    run(std::string(kBin) + "/initdb -D " + data() + " -U pipelined --auth=trust -E UTF8 --locale=C.UTF-8 >" + log("initdb") + " 2>&1",
        "initdb");
    start();
    run(std::string(kBin) + "/createdb -h 127.0.0.1 -p " + std::to_string(port_) + " -U pipelined pipelined", "createdb");
  }
  ~PostgresServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string url() const { return "postgresql://pipelined@127.0.0.1:" + std::to_string(port_) + "/pipelined"; }
  int port() const { return port_; }

  void start() {
    run(std::string(kBin) + "/pg_ctl -D " + data() + " -l " + log("server") + " -w -t 30 -o \"-p " + std::to_string(port_) + " -k " +
            dir_.string() + " -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100\" start >/dev/null",
        "pg_ctl start");
    running_ = true;
  }
  // Fast shutdown: sessions are closed, as when the server goes away.
  void stop() {
    if (!running_) return;
    running_ = false;
    run(std::string(kBin) + "/pg_ctl -D " + data() + " -m fast -w stop >/dev/null 2>&1", "pg_ctl stop", false);
  }
  // Runs SQL through psql; returns its output (unaligned, tuples only).
  std::string psql(const std::string& sql) const {
    const std::string out = (dir_ / "psql.out").string();
    const std::string cmd =
        "psql -X -q -A -t -h 127.0.0.1 -p " + std::to_string(port_) + " -U pipelined -d pipelined -c \"" + sql + "\" >" + out + " 2>&1";
    const int rc = std::system(cmd.c_str());
    std::string text;
    if (FILE* f = std::fopen(out.c_str(), "r")) {
      char buf[4096];
      std::size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
      std::fclose(f);
    }
    if (rc != 0) throw std::runtime_error("psql failed: " + text);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
  }

 private:
  std::string data() const { return (dir_ / "data").string(); }
  std::string log(const std::string& name) const { return (dir_ / (name + ".log")).string(); }

  void run(const std::string& cmd, const std::string& what, bool must = true) const {
    // The server's own directory must be the postgres user's: cd there so runuser can read the cwd.
    const std::string full = "cd " + dir_.string() + " && " + as_ + cmd;
    if (std::system(full.c_str()) != 0 && must) throw std::runtime_error(what + " failed (" + full + "); see " + dir_.string());
  }



  std::filesystem::path dir_;
  int port_ = 0;
  std::string as_;
  bool running_ = false;
};

}  // namespace pipelined::testing
