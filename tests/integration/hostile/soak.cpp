// edge-soak: holds N registered flows through the real edged (lab default, Kamailio behind it) with churn
// (connect, register, call, disconnect) for T minutes, and prints edged's RSS and open fds every S seconds
// with the error counts. Run through scripts/soak (a private network namespace); not part of CI.
// With --valgrind, edged runs under valgrind --leak-check=full and its summary is printed at the end.
//
// The simulated clients are sharded over worker processes. Why: a TestUa holds its socket plus its own
// io_context (epoll fd, eventfd, timerfd), about 4 fds per flow, while edged needs 1; with a hard
// RLIMIT_NOFILE of 20,000 (this container's, which cannot be raised) one client process tops out below
// 5,000 flows. So there are as many workers as give each a share with share*4+500 <= RLIMIT_NOFILE
// (--workers overrides). They are forked first, before any thread or child process exists (KamailioProcess
// and EdgedProcess start keepers), wait on a pipe for the endpoints and the end time, and count into
// std::atomic counters in a shared anonymous mapping that the parent samples.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <new>
#include <optional>
#include <random>
#include <sstream>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "edge_fixture.h"
#include "hostile_fixture.h"

namespace edge::test::hostile {
namespace {

struct SoakOptions {
  int flows = 5000;
  double minutes = 30;
  int addresses = 64;  // client source addresses 127.0.0.2 .. (the lab default allows 100 per address)
  int sample_seconds = 10;
  int workers = 0;  // 0: as few as the fd limit allows
  bool valgrind = false;
};

[[noreturn]] void usage() {
  std::cerr << "usage: edge-soak [--flows N] [--minutes T] [--addresses K] [--sample-seconds S] [--workers W]"
               " [--valgrind]\n";
  std::exit(2);
}

SoakOptions parse(int argc, char** argv) {
  SoakOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--flows")
      o.flows = std::stoi(value());
    else if (a == "--minutes")
      o.minutes = std::stod(value());
    else if (a == "--addresses")
      o.addresses = std::stoi(value());
    else if (a == "--sample-seconds")
      o.sample_seconds = std::stoi(value());
    else if (a == "--workers")
      o.workers = std::stoi(value());
    else if (a == "--valgrind")
      o.valgrind = true;
    else
      usage();
  }
  // Bounded, whatever the caller asks.
  if (o.flows < 1 || o.flows > 20000 || o.minutes <= 0 || o.minutes > 240 || o.addresses < 1 ||
      o.addresses > 250 || o.sample_seconds < 1 || o.workers < 0 || o.workers > 64 || o.workers > o.flows)
    usage();
  return o;
}

std::uint64_t rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

using Counter = std::atomic<std::uint64_t>;
static_assert(Counter::is_always_lock_free, "the counters are shared between processes");

// Lives in a MAP_SHARED anonymous mapping made before the fork: the workers count, the parent samples.
struct Counters {
  Counter flows_held{0}, registers{0}, calls{0}, churned{0};
  Counter ramp_attempts{0};   // flows the workers tried to open during the ramp
  Counter workers_ramped{0};  // workers done with their ramp
  Counter workers_at_end{0};  // workers past the end time, flows still open, waiting for "close"
  Counter error_register{0}, error_keepalive{0}, error_call{0};
  Counter error_register_reused_4tuple{0};  // a register error on the 4-tuple of a flow closed just before
  std::array<Counter, 700> error_register_status{};  // REGISTER answered with that status instead of 200

  std::uint64_t errors() const {
    std::uint64_t n = error_register + error_keepalive + error_call + error_register_reused_4tuple;
    for (const auto& c : error_register_status) n += c;
    return n;
  }
};

// Reads one '\n'-terminated line from a blocking fd; nullopt on EOF or error.
std::optional<std::string> read_line(int fd) {
  std::string line;
  char ch = 0;
  for (;;) {
    const ssize_t n = read(fd, &ch, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    if (ch == '\n') return line;
    line.push_back(ch);
  }
}

bool write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// What the parent sends each worker once edged and the core are up.
struct Start {
  Endpoint edge_tcp;
  Endpoint core_udp;
  Clock::time_point end;  // steady_clock is CLOCK_MONOTONIC: one time line for all the processes
};

std::string format_start(const Start& s) {
  std::ostringstream out;
  out << "start " << s.edge_tcp.address.to_string() << " " << s.edge_tcp.port << " "
      << s.core_udp.address.to_string() << " " << s.core_udp.port << " " << s.end.time_since_epoch().count()
      << "\n";
  return out.str();
}

std::optional<Start> parse_start(const std::string& line) {
  std::istringstream in(line);
  std::string word, edge_addr, core_addr;
  unsigned edge_port = 0, core_port = 0;
  Clock::rep end = 0;
  if (!(in >> word >> edge_addr >> edge_port >> core_addr >> core_port >> end) || word != "start")
    return std::nullopt;
  Start s;
  s.edge_tcp = Endpoint{boost::asio::ip::make_address(edge_addr), static_cast<std::uint16_t>(edge_port)};
  s.core_udp = Endpoint{boost::asio::ip::make_address(core_addr), static_cast<std::uint16_t>(core_port)};
  s.end = Clock::time_point(Clock::duration(end));
  return s;
}

// One worker's share: the flow slots w, w+W, w+2W, ... A slot is one device: churn closes its flow and
// opens a new one that registers the same AOR (soak<slot>) with the same +sip.instance and reg-id, so the
// core replaces the binding (RFC 5626 §4.2; every 200 lists one Contact) and its location table stays at
// N bindings however long the soak runs. With a fresh AOR per flow, as before, it grew by one binding per
// churn, which since edged sets TCP_NODELAY (~1,400 churns/s instead of ~45) means millions in 30 minutes
// against Kamailio's 512 MB. The slot also keeps its source address (127.0.0.2 + slot % addresses):
// 5,000 flows over 64 addresses average 78 per address, and when a random flow was replaced by one on a
// round-robin address, single addresses wandered past edged's per-address limit of 100 (a simulation of
// 2 million such churns peaks at 112).
class Worker {
 public:
  Worker(const SoakOptions& o, int index, int count, Counters& c)
      : o_(o), index_(index), count_(count), c_(c), rng_(5626 + static_cast<unsigned>(index)) {}

  int run(int control_fd) {
    const auto line = read_line(control_fd);
    if (!line) return 0;  // the parent gave up before starting (it kills us anyway)
    const auto start = parse_start(*line);
    if (!start) {
      std::cerr << "edge-soak worker " << index_ << ": bad start line \"" << *line << "\"\n";
      return 1;
    }
    start_ = *start;

    // After the fork, so each worker draws from random state of its own.
    for (int slot = index_; slot < o_.flows; slot += count_)
      instances_.push_back("urn:uuid:" + random_uuid());
    std::vector<Flow> held;
    for (int slot = index_; slot < o_.flows; slot += count_) {
      if (auto f = open_slot(slot)) {
        held.push_back(std::move(*f));
        ++c_.flows_held;
      }
      ++c_.ramp_attempts;
    }
    ++c_.workers_ramped;

    auto next_keepalive = Clock::now();
    std::size_t keepalive_cursor = 0;
    std::uint64_t churned = 0;
    while (Clock::now() < start_.end && !held.empty()) {
      // Keep-alives: every flow pings within 20 s (Flow-Timer 30 + grace), spread over the loop.
      if (Clock::now() >= next_keepalive) {
        const std::size_t batch = std::max<std::size_t>(1, held.size() / 100);
        for (std::size_t k = 0; k < batch; ++k, ++keepalive_cursor) {
          auto& u = held[keepalive_cursor % held.size()].ua;
          try {
            u->send_ping();
            while (u->try_receive(Millis(0))) {
            }
          } catch (const std::exception& e) {
            count_error("keepalive", c_.error_keepalive, e);
          }
        }
        next_keepalive = Clock::now() + Millis(200);
      }
      // Churn: one flow leaves, a new one connects and registers in its slot (flows_held counts the slot).
      std::uniform_int_distribution<std::size_t> pick(0, held.size() - 1);
      const std::size_t i = pick(rng_);
      forget_old_closes();
      recently_closed_[held[i].local] = Clock::now();
      held[i].ua->close();
      ++c_.churned;
      ++churned;
      if (auto f = open_slot(held[i].slot)) {
        held[i] = std::move(*f);
      } else {
        held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
        --c_.flows_held;
        if (held.empty()) break;
      }
      // A call to a random held flow through the core and the edge, every other round.
      if (churned % 2 == 0) call(*held[pick(rng_) % held.size()].ua);
    }
    ++c_.workers_at_end;
    // The parent samples "end" with every flow still open, then says "close".
    read_line(control_fd);
    for (auto& f : held) f.ua->close();
    c_.flows_held -= held.size();
    held.clear();
    return 0;
  }

 private:
  struct Flow {
    std::unique_ptr<TestUa> ua;
    int slot;
    std::string local;  // host:port the flow's connection came from
  };

  // The first three of a kind are printed, with the UA's transcript the exception carries (cut short).
  void count_error(const char* what, Counter& counter, const std::exception& e) {
    if (counter++ >= 3) return;
    constexpr std::size_t kMax = 16384;
    const std::string_view text = e.what();
    std::cerr << "error " << what << " (worker " << index_ << "): " << text.substr(0, kMax);
    if (text.size() > kMax) std::cerr << "\n... (" << text.size() - kMax << " more bytes)";
    std::cerr << "\n";
  }

  // A client that closes its connection with bytes unread (a late pong) sends RST, which frees the port at
  // once (no TIME_WAIT); the next flow of a slot binds the same address right away and now and then gets
  // that port, so its connection has the 4-tuple of a flow edged may not have seen close yet. edged
  // dropped such a connection unanswered until 7e0043a (now the new flow supersedes the stale one), about
  // once per 200,000 churns here. Register errors on such a 4-tuple are counted apart
  // (register_reused_4tuple): they point at edged's handling of that case, not at the soak.
  void forget_old_closes() {
    const auto now = Clock::now();
    if (now < next_forget_) return;
    std::erase_if(recently_closed_,
                  [&](const auto& kv) { return now - kv.second > std::chrono::seconds(2); });
    next_forget_ = now + std::chrono::seconds(1);
  }

  // The slot's device connects and registers; when that fails (counted as an error), it tries once more
  // at once, as a device would, so one failure does not cost the soak a flow. Two in a row give it up.
  std::optional<Flow> open_slot(int slot) {
    if (auto f = new_flow(slot)) return f;
    return new_flow(slot);
  }

  std::optional<Flow> new_flow(int slot) {
    UaProfile profile;
    profile.user = "soak" + std::to_string(slot);
    profile.instance = instances_[static_cast<std::size_t>(slot / count_)];
    Flow f{std::make_unique<TestUa>(profile), slot, {}};
    TestUa* u = f.ua.get();
    ConnectOptions co;
    co.local =
        Endpoint{boost::asio::ip::make_address("127.0.0." + std::to_string(2 + slot % o_.addresses)), 0};
    try {
      u->connect(Transport::tcp, start_.edge_tcp, co);
      f.local = u->local_endpoint().host_port();
      RegisterOptions ro;
      ro.expires = 3600;
      const SipMessage ok = u->register_with(ro);
      ++c_.registers;
      if (ok.status() != 200) {
        const auto s = static_cast<std::size_t>(ok.status());
        ++c_.error_register_status[s < c_.error_register_status.size() ? s : 0];
        return std::nullopt;
      }
    } catch (const std::exception& e) {
      const auto closed = f.local.empty() ? recently_closed_.end() : recently_closed_.find(f.local);
      if (closed == recently_closed_.end()) {
        count_error("register", c_.error_register, e);
      } else if (c_.error_register_reused_4tuple++ < 3) {
        const std::string what = e.what();
        std::cerr << "error register_reused_4tuple (worker " << index_ << "): the flow from " << f.local
                  << " has the 4-tuple of a flow closed "
                  << std::chrono::duration<double, std::milli>(Clock::now() - closed->second).count()
                  << " ms before: " << what.substr(0, what.find('\n')) << "\n";
      }
      return std::nullopt;
    }
    return f;
  }

  // A caller of its own for each call: a TestUa keeps a transcript of all it sent and received, and one
  // caller for the whole soak grew to over a gigabyte in 17 minutes (~800,000 calls). Then a UDP send
  // "timed out" (most likely the append itself: TestUa takes the send's deadline before it appends), the
  // UA closed its socket, and every later call of that worker failed.
  void call(TestUa& callee) {
    TestUa caller("soak-caller" + std::to_string(index_));
    try {
      caller.connect(Transport::udp, start_.core_udp);
      SipMessage inv = caller.make_invite(callee.aor());
      caller.send(inv);
      const SipMessage got = callee.receive_request("INVITE", Millis(3000));
      const std::string tag = TestUa::new_tag();
      callee.send(callee.make_response(got, 200, "OK", tag, make_sdp("127.0.0.1", 40002)));
      const SipMessage ok = caller.receive_response("INVITE", Millis(3000));
      if (ok.status() != 200) throw std::runtime_error("INVITE answered " + ok.summary());
      Dialog d = Dialog::as_uac(inv, ok);
      caller.send(caller.make_ack(d));
      callee.receive_request("ACK", Millis(3000));
      caller.send(caller.make_in_dialog(d, "BYE"));
      const SipMessage bye = callee.receive_request("BYE", Millis(3000));
      callee.send(callee.make_response(bye, 200, "OK"));
      caller.receive_response("BYE", Millis(3000));
      ++c_.calls;
    } catch (const std::exception& e) {
      count_error("call", c_.error_call, e);
    }
  }

  const SoakOptions& o_;
  const int index_;
  const int count_;
  Counters& c_;
  std::mt19937 rng_;
  Start start_;
  std::vector<std::string> instances_;  // +sip.instance of this worker's slots, by slot / count_
  std::unordered_map<std::string, Clock::time_point> recently_closed_;  // local host:port -> when
  Clock::time_point next_forget_{};
};

// The worker processes, seen from the parent. Whatever way the parent leaves (a start-up failure throws),
// the destructor kills and reaps the workers still running: no orphans. A worker also gets SIGKILL when
// the parent dies (PR_SET_PDEATHSIG).
class Workers {
 public:
  Workers(const SoakOptions& o, int count, Counters& c) {
    try {
      start(o, count, c);
    } catch (...) {
      kill_all();  // no destructor runs for a constructor that throws
      throw;
    }
  }

  ~Workers() { kill_all(); }
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  int count() const { return static_cast<int>(procs_.size()); }

  // The soak is over or failed: the workers not reaped yet go now, quietly.
  void kill_all() noexcept {
    for (auto& p : procs_) {
      if (!p.status) kill(p.pid, SIGKILL);
    }
    for (auto& p : procs_) {
      if (!p.status) {
        int st = 0;
        while (waitpid(p.pid, &st, 0) < 0 && errno == EINTR) {
        }
        p.status = 128 + SIGKILL;
      }
      if (p.control >= 0) close(p.control);
      p.control = -1;
    }
  }

  // Sends a line to every worker still running.
  void tell(const std::string& line) {
    for (auto& p : procs_) {
      if (!p.status && !write_all(p.control, line)) reap(p, false);
    }
  }

  // Reaps the workers that have exited; returns how many have (ever) exited.
  int poll_exited() {
    int n = 0;
    for (auto& p : procs_) {
      if (!p.status) reap(p, false);
      if (p.status) ++n;
    }
    return n;
  }

  // Waits until every worker has exited, up to the deadline; then kills and reaps the rest.
  void wait_all(Clock::time_point deadline) {
    while (poll_exited() < count() && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (auto& p : procs_) {
      if (p.status) continue;
      std::cerr << "edge-soak: worker pid " << p.pid << " did not exit in time, killing it\n";
      kill(p.pid, SIGKILL);
      reap(p, true);
    }
  }

  // Workers that died or exited non-zero (so far), each reported once on stderr as it is reaped.
  std::uint64_t failed() const {
    std::uint64_t n = 0;
    for (const auto& p : procs_) n += p.status && *p.status != 0 ? 1 : 0;
    return n;
  }

 private:
  // Forks the workers; each waits on its pipe for the start line.
  void start(const SoakOptions& o, int count, Counters& c) {
    const pid_t parent = getpid();
    for (int w = 0; w < count; ++w) {
      int fds[2];
      // Close-on-exec: edged and Kamailio must not hold a worker's pipe.
      if (pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
      const pid_t pid = fork();
      if (pid < 0) {
        const int e = errno;
        close(fds[0]);
        close(fds[1]);
        throw std::system_error(e, std::generic_category(), "fork");
      }
      if (pid == 0) {
        close(fds[1]);
        for (const auto& p : procs_) close(p.control);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(3);  // the parent died before the line above
        int rc = 1;
        try {
          rc = Worker(o, w, count, c).run(fds[0]);
        } catch (const std::exception& e) {
          std::cerr << "edge-soak worker " << w << ": " << e.what() << "\n";
        } catch (...) {
        }
        std::cerr.flush();
        _exit(rc);  // never the parent's destructors (its TempDirs, its children) in a worker
      }
      close(fds[0]);
      procs_.push_back(Proc{pid, fds[1], std::nullopt});
    }
  }

  struct Proc {
    pid_t pid;
    int control;                // write end of the worker's pipe
    std::optional<int> status;  // exit code, 128 + signal when killed
  };

  // waitpid on that pid only: the keepers of edged and Kamailio are our children too.
  static void reap(Proc& p, bool block) {
    int st = 0;
    pid_t r;
    do {
      r = waitpid(p.pid, &st, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return;
    p.status = r < 0 ? 255 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (*p.status != 0) {
      std::cerr << "error worker: pid " << p.pid << " "
                << (r < 0 || WIFEXITED(st) ? "exited with " + std::to_string(*p.status)
                                           : "killed by signal " + std::to_string(WTERMSIG(st)))
                << "\n";
    }
  }

  std::vector<Proc> procs_;
};

int run(const SoakOptions& o) {
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  // edged (which inherits the limit) needs one fd per flow; each client process 4 per flow plus some
  // (see the top of the file). As root, raise the hard limit too (up to fs.nr_open) when possible.
  const rlim_t wanted = static_cast<rlim_t>(o.flows) * 4 + 1000;
  if (nofile.rlim_max < wanted) {
    rlimit raised{wanted, wanted};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) nofile = raised;
  }
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);
  if (nofile.rlim_cur < static_cast<rlim_t>(o.flows) + 200 || nofile.rlim_cur < 1000) {
    std::cerr << "edge-soak: RLIMIT_NOFILE " << nofile.rlim_cur << " is too small for " << o.flows
              << " flows\n";
    return 1;
  }
  const auto per_worker_max = static_cast<int>(std::min<rlim_t>((nofile.rlim_cur - 500) / 4, 1'000'000));
  const int workers = o.workers > 0 ? o.workers : (o.flows + per_worker_max - 1) / per_worker_max;
  const int share = (o.flows + workers - 1) / workers;
  if (share > per_worker_max) {
    std::cerr << "edge-soak: with " << workers << " worker(s) one holds up to " << share
              << " flows, but RLIMIT_NOFILE " << nofile.rlim_cur << " allows " << per_worker_max
              << " (flows*4+500 fds per worker)\n";
    return 1;
  }
  std::cout << "soak: flows=" << o.flows << " minutes=" << o.minutes << " workers=" << workers
            << " flows_per_worker<=" << share << " nofile=" << nofile.rlim_cur << std::endl;

  void* mem = mmap(nullptr, sizeof(Counters), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
  Counters& c = *new (mem) Counters();
  // A worker that exited early must not kill the parent when it writes to its pipe.
  std::signal(SIGPIPE, SIG_IGN);
  // First, before any thread or child process: the workers.
  Workers pool(o, workers, c);

  TempDir template_dir("edge-soak-core");
  KamailioOptions ko;
  ko.config_template = write_aliasing_core_template(template_dir.path());
  // Thousands of bindings and a steady stream of transactions: 32 MB of shared
  // memory (the tests' default) runs out after a few minutes.
  ko.shm_mb = 512;
  ko.pkg_mb = 32;
  KamailioProcess core(ko);
  EdgedOptions eo;
  eo.write_config = false;  // the lab default (firmware/edged.conf)
  if (o.valgrind) {
    // env(1) execs what follows its NAME=VALUE operands: valgrind, which then runs edged in the same process.
    eo.env = {"EDGE_SOAK=1",
              find_program("valgrind", "valgrind").string(),
              "--leak-check=full",
              "--show-leak-kinds=definite,indirect",
              "--errors-for-leak-kinds=definite,indirect",
              "--num-callers=30",
              "--error-exitcode=99"};
    eo.start_timeout = std::chrono::milliseconds(180'000);
  }
  EdgedProcess edge(eo);
  const pid_t pid = edge.pid();

  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.minutes * 60));
  auto elapsed_s = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  auto sample = [&](const char* phase) {
    const std::uint64_t total_errors = c.errors() + pool.failed();
    std::cout << "t=" << static_cast<int>(elapsed_s()) << "s phase=" << phase
              << " flows_held=" << c.flows_held << " edged_rss_kb=" << rss_kb(pid)
              << " edged_fds=" << fd_count(pid) << " registers=" << c.registers << " calls=" << c.calls
              << " churned=" << c.churned << " errors=" << total_errors << std::endl;
  };
  auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); };

  pool.tell(format_start(Start{edge.endpoint(Transport::tcp), core.endpoint(Transport::udp), end}));
  // Ramp: a sample each time another 1,000 flows have been tried, over all workers.
  std::uint64_t next_mark = 1000;
  while (c.workers_ramped + static_cast<std::uint64_t>(pool.poll_exited()) <
             static_cast<std::uint64_t>(workers) &&
         Clock::now() < end) {
    if (c.ramp_attempts >= next_mark) {
      sample("ramp");
      while (c.ramp_attempts >= next_mark) next_mark += 1000;
    }
    pause();
  }
  if (c.ramp_attempts >= next_mark) sample("ramp");
  sample("held");

  auto next_sample = Clock::now() + std::chrono::seconds(o.sample_seconds);
  while (Clock::now() < end && pool.poll_exited() < workers) {
    if (Clock::now() >= next_sample) {
      sample("churn");
      next_sample += std::chrono::seconds(o.sample_seconds);
    }
    pause();
  }
  // A worker finishes the round it is in (a call waits 3 s per step at most): bounded.
  const auto grace = Clock::now() + std::chrono::seconds(60);
  while (c.workers_at_end + static_cast<std::uint64_t>(pool.poll_exited()) <
             static_cast<std::uint64_t>(workers) &&
         Clock::now() < grace)
    pause();
  sample("end");
  pool.tell("close\n");
  pool.wait_all(Clock::now() + std::chrono::seconds(120));
  std::this_thread::sleep_for(std::chrono::seconds(3));
  sample("closed");

  const std::pair<const char*, const Counter*> kinds[] = {
      {"call", &c.error_call},
      {"keepalive", &c.error_keepalive},
      {"register", &c.error_register},
      {"register_reused_4tuple", &c.error_register_reused_4tuple}};
  for (const auto& [k, v] : kinds) {
    if (*v > 0) std::cout << "error_count " << k << "=" << *v << "\n";
  }
  for (std::size_t s = 0; s < c.error_register_status.size(); ++s) {
    if (c.error_register_status[s] > 0)
      std::cout << "error_count register_" << s << "=" << c.error_register_status[s] << "\n";
  }
  if (pool.failed() > 0) std::cout << "error_count worker=" << pool.failed() << "\n";
  const EdgedStatus st = edge.status(std::chrono::milliseconds(30000));
  std::cout << "edged_status flows_tcp=" << st.text("flows_tcp") << " connections=" << st.text("connections")
            << " r503=" << st.text("r503") << " hsm_sign=" << st.text("hsm_sign") << "\n";
  const int rc = edge.stop();
  std::cout << "edged_exit=" << rc << "\n";
  if (o.valgrind) {
    const std::string log = edge.log();
    for (const char* key : {"definitely lost", "indirectly lost", "possibly lost", "still reachable",
                            "ERROR SUMMARY", "Invalid read", "Invalid write", "uninitialised"}) {
      std::size_t at = 0;
      while ((at = log.find(key, at)) != std::string::npos) {
        const std::size_t bol = log.rfind('\n', at) + 1;
        std::cout << "valgrind: " << log.substr(bol, log.find('\n', at) - bol) << "\n";
        at = log.find('\n', at);
      }
    }
  }
  return rc == 0 && pool.failed() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace edge::test::hostile

int main(int argc, char** argv) {
  try {
    return edge::test::hostile::run(edge::test::hostile::parse(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "edge-soak: " << e.what() << "\n";
    return 1;
  }
}
