// Soak: the pipelined binary on configs/default.yaml under mixed load for a long time, against a
// faulty provider-sim (500s, hangs, connection resets, malformed answers, 429 with Retry-After).
// 8 clients send POST /translate (a menu image) and POST /analyze (1-3 medicine images), plain and
// over server-sent events, with random X-User-Id so both rollout arms serve; a rollout with shadow
// runs on each pipeline and is stepped, rolled back and started again, and plugins are reloaded,
// every few minutes (pipectl). Every 10 s one line: requests by status, daemon RSS, the runners'
// RSS, open fds, threads, metric rows. At the end: rows lost, crashes, RSS growth from minute 10
// (or from 1/3 of a shorter run) to the end, failures by status and error class.
//   build/bench/soak [--seconds 1800] [--clients 8] [--time-scale 0.1] [--max-rss-mb 8192] [--check]
// --check: exit 1 when the daemon died, metric rows were lost, RSS grew more than 10 % (runs of 10
// minutes or more), or a request failed in a way the injected faults do not explain.
#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "bench/proc_status.h"
#include "tests/server/menu_daemon.h"
#include "tests/server/sse_client.h"

namespace {

using pipelined::bench::Proc;
using pipelined::bench::read_proc;
using pipelined::testing::MenuDaemon;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace http = boost::beast::http;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

// A multipart/form-data body with one part per file, all under `field`; {body, content type}.
std::pair<std::string, std::string> multipart_files(const std::string& field, const std::vector<std::string>& paths) {
  const std::string boundary = "soak-boundary-41d2";
  std::string body;
  for (const auto& path : paths)
    body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + field + "\"; filename=\"" + path.substr(path.rfind('/') + 1) +
            "\"\r\nContent-Type: image/png\r\n\r\n" + harness::read_file(path) + "\r\n";
  body += "--" + boundary + "--\r\n";
  return {std::move(body), "multipart/form-data; boundary=" + boundary};
}

struct Request {
  std::string pipeline, target, body, type;
};

struct Outcome {
  int status = 0;     // the HTTP status the request had (a stream's error event carries it); 0: no answer
  std::string klass;  // error class, or what went wrong on the connection
  bool partial = false;
};

// The error class of an error body {"error": {"status", "message", "class"?}}.
std::string error_class(const json& body) {
  if (!body.is_object() || !body.contains("error") || !body["error"].is_object()) return "-";
  return body["error"].value("class", "-");
}

Outcome plain(unsigned short port, const Request& r, const std::string& user) {
  Outcome o;
  try {
    pipelined::testing::HttpClient client(port);
    const auto res = client.request(http::verb::post, r.target, r.body, r.type, {{"X-User-Id", user}});
    o.status = res.result_int();
    const json body = json::parse(res.body(), nullptr, false);
    if (o.status == 200)
      o.partial = body.is_object() && body.value("partial", false);
    else
      o.klass = error_class(body);
  } catch (const std::exception& e) {
    o.klass = std::string("connection: ") + e.what();
  }
  return o;
}

Outcome streamed(unsigned short port, const Request& r, const std::string& user) {
  Outcome o;
  try {
    const auto s = pipelined::testing::post_events(port, r.target, r.body, r.type, {{"X-User-Id", user}});
    o.status = s.status;
    if (s.status != 200) {
      o.klass = error_class(json::parse(s.body, nullptr, false));
    } else if (s.events.empty()) {
      o = {0, "stream: no events"};
    } else if (s.events.back().name == "result") {
      o.partial = s.events.back().data.is_object() && s.events.back().data.value("partial", false);
    } else if (s.events.back().name == "error") {
      // The status the plain request would have had (docs/server-sent-events.md).
      o.status = s.events.back().data["error"].value("status", 0);
      o.klass = error_class(s.events.back().data);
    } else {
      o = {0, "stream: ended on '" + s.events.back().name + "'"};
    }
  } catch (const std::exception& e) {
    o.klass = std::string("connection: ") + e.what();
  }
  return o;
}

// Failures the injected faults explain: a provider error, hang, reset or malformed answer that
// survived retries and fallback (502 upstream/malformed/rate_limited, 504 timeout).
bool explained(int status, const std::string& klass) {
  return (status == 502 && (klass == "upstream" || klass == "malformed" || klass == "rate_limited")) ||
         (status == 504 && klass == "timeout");
}

struct Tally {
  std::mutex mu;
  long ok = 0, partial = 0, failed = 0;
  std::map<int, long> by_status;                                                    // every answer, 200 included
  std::map<std::tuple<std::string, std::string, int, std::string>, long> failures;  // pipeline, mode, status, class
  void add(const std::string& pipeline, bool sse, const Outcome& o) {
    std::lock_guard lock(mu);
    ++by_status[o.status];
    if (o.status == 200) {
      ++ok;
      partial += o.partial;
    } else {
      ++failed;
      ++failures[{pipeline, sse ? "events" : "plain", o.status, o.klass}];
    }
  }
};

// `pipectl ARGS --socket SOCKET`; returns the exit code, `out` its output.
int pipectl(const std::string& socket, const std::string& args, std::string& out) {
  const std::string cmd = std::string(PIPECTL_BINARY) + " --socket " + socket + " " + args + " 2>&1";
  out.clear();
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return -1;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
  const int rc = ::pclose(f);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

struct Sample {
  double t = 0;
  double daemon_rss = 0, runners_rss = 0;  // bytes
};

// Mean of daemon (or daemon + runners) RSS over the samples in [from, to).
double mean_rss(const std::vector<Sample>& samples, double from, double to, bool with_runners) {
  double sum = 0;
  int n = 0;
  for (const auto& s : samples)
    if (s.t >= from && s.t < to) sum += s.daemon_rss + (with_runners ? s.runners_rss : 0), ++n;
  return n ? sum / n : 0;
}

}  // namespace

int main(int argc, char** argv) {
  int seconds = 1800, clients = 8;
  long max_rss_mb = 8192;
  bool too_big = false;
  std::string time_scale = "0.1";
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 < argc && a == "--seconds")
      seconds = std::stoi(argv[++i]);
    else if (i + 1 < argc && a == "--clients")
      clients = std::stoi(argv[++i]);
    else if (i + 1 < argc && a == "--time-scale")
      time_scale = argv[++i];
    else if (i + 1 < argc && a == "--max-rss-mb")
      max_rss_mb = std::stol(argv[++i]);
    else if (a == "--check")
      check = true;
    else {
      std::cerr << "usage: " << argv[0] << " [--seconds N] [--clients N] [--time-scale S] [--max-rss-mb M] [--check]\n";
      return 2;
    }
  }
  std::signal(SIGPIPE, SIG_IGN);  // a reset connection must not end the soak

  // Provider timeouts of 5 s instead of 60 s: a hung provider call (--timeout-rate) should fail
  // and be retried within the run, not hold a client for a minute.
  auto short_timeouts = [](std::string& yaml) {
    harness::replace_all(yaml, "    timeout_ms: 60000\n", "    timeout_ms: 5000\n");
    harness::replace_all(yaml, "    auth_header: key ", "    timeout_ms: 5000\n    auth_header: key ");
    harness::replace_all(yaml, "    auth_header: x-goog-api-key\n", "    auth_header: x-goog-api-key\n    timeout_ms: 5000\n");
  };
  const std::vector<std::string> sim_args = {"--time-scale",   time_scale, "--seed",       "7",    "--error-rate",     "0.02",
                                             "--timeout-rate", "0.005",    "--reset-rate", "0.01", "--malformed-rate", "0.01",
                                             "--rpm-limit",    "800"};
  std::string sim_line;
  for (const auto& a : sim_args) sim_line += " " + a;
  std::printf("soak: %d s, %d clients, provider-sim%s\n", seconds, clients, sim_line.c_str());
  std::fflush(stdout);
  MenuDaemon daemon(sim_args, {}, "", short_timeouts);
  const std::string socket = daemon.dir() / "admin.sock";
  const auto admin = [&](const std::string& target) {
    try {
      return json::parse(pipelined::testing::admin_request(socket, http::verb::get, target).body(), nullptr, false);
    } catch (const std::exception&) {
      return json();  // the daemon is gone or busy; the sample says so by its zeros
    }
  };
  // The daemon's pid (MenuDaemon keeps it private): our child process named pipelined.
  pid_t pid = 0;
  if (DIR* d = ::opendir("/proc")) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
      std::string text((std::istreambuf_iterator<char>(stat)), {});
      const auto close = text.rfind(')');
      if (close == std::string::npos || text.find("(pipelined)") == std::string::npos) continue;
      std::istringstream rest(text.substr(close + 2));
      char state;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid == ::getpid()) pid = std::stoi(e->d_name);
    }
    ::closedir(d);
  }
  if (pid == 0) {
    std::cerr << "soak: cannot find the daemon's pid\n";
    return 1;
  }

  std::vector<Request> requests;
  for (const char* menu : {"menu_ja_5", "menu_zh_8", "menu_ja_12", "menu_zh_20"}) {
    const auto [body, type] = pipelined::testing::multipart_file("file", MenuDaemon::menu(menu));
    requests.push_back({"menu", "/translate", body, type});
  }
  const std::string med = (harness::source_dir() / "tests/fixtures/medicine/").string();
  for (const auto& files : std::vector<std::vector<std::string>>{{"medicine_1"},
                                                                 {"medicine_2", "medicine_3"},
                                                                 {"medicine_4", "medicine_5", "medicine_6"},
                                                                 {"medicine_1", "medicine_unreadable"}}) {
    std::vector<std::string> paths;
    for (const auto& f : files) paths.push_back(med + f + ".png");
    const auto [body, type] = multipart_files("files", paths);
    requests.push_back({"medicine", "/analyze", body, type});
  }

  Tally tally;
  std::atomic<bool> stop{false};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      std::mt19937 rng(1000 + c);
      while (!stop) {
        const Request& r = requests[rng() % requests.size()];
        const bool sse = rng() % 2 == 0;
        const std::string user = "user-" + std::to_string(rng() % 10000);
        tally.add(r.pipeline, sse, sse ? streamed(daemon.port(), r, user) : plain(daemon.port(), r, user));
      }
    });

  // Operator actions: per pipeline a cycle of rollout 50 % -> 75 % -> 25 % -> rollback, one step every
  // `period`; plugin reloads half a period after each step. Three minutes in a full run; a short
  // run still goes through one cycle.
  const double period = seconds >= 900 ? 180 : std::max(10.0, seconds / 5.0);
  const std::vector<std::string> reloads = {"menu_ocr_tesseract_serial menu_describe_parallel",
                                            "medicine_ocr_parallel menu_translate_serial", "menu_ocr_tesseract_parallel medicine_analysis",
                                            ""};
  int step = 0, reload = 0, actions_refused = 0;
  auto act = [&](const std::string& args) {
    std::string out;
    const int rc = pipectl(socket, args, out);
    actions_refused += rc != 0;
    const std::string first = out.substr(0, out.find('\n'));
    std::printf("  [%4.0f s] pipectl %s -> %d%s%s\n", seconds_since(start), args.c_str(), rc, first.empty() ? "" : ": ", first.c_str());
  };
  auto rollout_step = [&] {
    static const char* shares[] = {"50", "75", "25"};
    for (const char* p : {"menu", "medicine"}) {
      if (step % 4 == 3)
        act(std::string("rollback --pipeline ") + p + " --reason soak");
      else
        act(std::string("rollout --pipeline ") + p + " --percent " + shares[step % 4] + " --shadow 10 --reason soak");
    }
    ++step;
  };
  rollout_step();
  // On their own thread: a reload can take seconds under load, and must not delay the samples.
  std::thread operator_thread([&] {
    for (double next_step = period, next_reload = period / 2; !stop;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const double t = seconds_since(start);
      if (t >= next_step) {
        rollout_step();
        next_step += period;
      }
      if (t >= next_reload) {
        act("plugins reload " + reloads[reload++ % reloads.size()]);
        next_reload += period;
      }
    }
  });

  std::vector<Sample> samples;
  long runner_crashes = 0;
  bool died = false;
  std::printf("%6s %7s %6s %-28s %11s %13s %5s %7s %14s\n", "t s", "ok", "part", "failed by status", "daemon MiB", "runners MiB", "fds",
              "threads", "rows ok/lost");
  auto sample = [&] {
    const Proc p = read_proc(pid);
    if (!p.alive) {
      died = true;
      return;
    }
    Sample s{seconds_since(start), p.rss_kb * 1024.0, 0};
    int runners = 0;
    const json plugins = admin("/admin/plugins");
    std::set<long> pids;
    long crashes = 0;
    if (plugins.is_object())
      for (const auto& e : plugins["plugins"]) {
        if (!e.contains("runner")) continue;
        crashes += e["runner"].value("crashes", 0L);
        const long rpid = e["runner"].value("pid", 0L);
        if (e["runner"].value("up", false) && rpid > 0 && pids.insert(rpid).second) {
          s.runners_rss += e["runner"].value("rss_bytes", 0.0);
          ++runners;
        }
      }
    runner_crashes = std::max(runner_crashes, crashes);
    const json rollout = admin("/admin/rollout");
    const json m = rollout.is_object() ? rollout.value("metrics", json::object()) : json::object();
    std::string failed;
    long ok, partial;
    {
      std::lock_guard lock(tally.mu);
      ok = tally.ok, partial = tally.partial;
      for (const auto& [status, n] : tally.by_status)
        if (status != 200) failed += (failed.empty() ? "" : " ") + std::to_string(status) + ":" + std::to_string(n);
    }
    samples.push_back(s);
    std::printf("%6.0f %7ld %6ld %-28s %11.1f %9.1f (%d) %5ld %7ld %8ld/%ld\n", s.t, ok, partial, failed.empty() ? "-" : failed.c_str(),
                mib(s.daemon_rss), mib(s.runners_rss), runners, p.fds, p.threads, m.value("written", 0L), m.value("lost", 0L));
    std::fflush(stdout);
  };

  for (double next_sample = 10; seconds_since(start) < seconds && !died;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const double t = seconds_since(start);
    if (t >= next_sample) {
      sample();
      while (next_sample <= t) next_sample += 10;
    }
    if (!samples.empty() && samples.back().daemon_rss > max_rss_mb * 1048576.0) {
      std::printf("daemon RSS over --max-rss-mb %ld: stopping early, the machine is shared\n", max_rss_mb);
      too_big = true;
      break;
    }
  }
  stop = true;
  operator_thread.join();
  std::printf("stopping the clients (each finishes its request)\n");
  std::fflush(stdout);
  for (auto& t : threads) t.join();
  died = died || !read_proc(pid).alive;

  // The recorder writes in batches: let the queue empty before counting rows.
  json m = json::object();
  for (int i = 0; i < 100 && !died; ++i) {
    const json rollout = admin("/admin/rollout");
    m = rollout.is_object() ? rollout.value("metrics", json::object()) : json::object();
    if (m.value("queued", 0L) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!died) sample();

  std::printf("\n## soak, %d s, %d clients, provider-sim%s\n\n", seconds, clients, sim_line.c_str());
  std::printf("requests: %ld ok (%ld partial), %ld failed; operator actions refused: %d\n", tally.ok, tally.partial, tally.failed,
              actions_refused);
  long unexplained = 0;
  if (!tally.failures.empty()) {
    std::printf("\n| pipeline | mode | status | class | requests | explained by the faults |\n|---|---|---|---|---|---|\n");
    for (const auto& [key, n] : tally.failures) {
      const auto& [pipeline, mode, status, klass] = key;
      const bool ok = explained(status, klass);
      unexplained += ok ? 0 : n;
      std::printf("| %s | %s | %d | %s | %ld | %s |\n", pipeline.c_str(), mode.c_str(), status, klass.c_str(), n, ok ? "yes" : "**no**");
    }
  }
  const long lost = m.value("lost", 0L);
  std::printf("\nmetric rows: %ld written, %ld queued, %ld lost %s\n", m.value("written", 0L), m.value("queued", 0L), lost,
              m.value("lost_by_cause", json::object()).dump().c_str());
  std::printf("daemon: %s; runner crashes: %ld\n", died ? "DIED" : "alive to the end, 0 crashes", runner_crashes);

  // RSS growth: the mean over the minute from minute 10 (1/3 of a shorter run) against the mean
  // over the last minute, so a single sample taken during a burst does not decide.
  const double end = samples.empty() ? 0 : samples.back().t;
  const double from = seconds >= 900 ? 600 : seconds / 3.0;
  const double window = std::min(60.0, std::max(10.0, (end - from) / 3));
  const double d0 = mean_rss(samples, from, from + window, false), d1 = mean_rss(samples, end - window, end + 1, false);
  const double a0 = mean_rss(samples, from, from + window, true), a1 = mean_rss(samples, end - window, end + 1, true);
  const double dg = d0 > 0 ? 100 * (d1 / d0 - 1) : 0, ag = a0 > 0 ? 100 * (a1 / a0 - 1) : 0;
  std::printf(
      "RSS growth, mean of %.0f s from %.0f s against the last %.0f s: daemon %.1f -> %.1f MiB (%+.1f %%), daemon + runners %.1f -> %.1f "
      "MiB (%+.1f %%)\n",
      window, from, window, mib(d0), mib(d1), dg, mib(a0), mib(a1), ag);
  const bool rss_checked = seconds >= 600;
  if (!rss_checked) std::printf("RSS check skipped: the run is shorter than 10 minutes\n");

  bool fail = false;
  if (died) fail = true, std::printf("FAIL: the daemon died\n");
  if (too_big) fail = true, std::printf("FAIL: daemon RSS passed %ld MiB\n", max_rss_mb);
  if (lost > 0) fail = true, std::printf("FAIL: %ld metric rows lost\n", lost);
  if (rss_checked && (dg > 10 || ag > 10)) fail = true, std::printf("FAIL: RSS grew more than 10 %%\n");
  if (unexplained > 0) fail = true, std::printf("FAIL: %ld failed requests the faults do not explain\n", unexplained);
  if (tally.ok == 0) fail = true, std::printf("FAIL: no request succeeded\n");
  std::printf("%s\n", fail ? "soak: FAIL" : "soak: pass");
  return check && fail ? 1 : 0;
}
