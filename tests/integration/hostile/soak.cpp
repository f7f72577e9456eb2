// edge-soak: holds N registered flows through the real edged (lab default, Kamailio behind it) with churn
// (connect, register, call, disconnect) for T minutes, and prints edged's RSS and open fds every S seconds
// with the error counts. Run through scripts/soak (a private network namespace); not part of CI.
// With --valgrind, edged runs under valgrind --leak-check=full and its summary is printed at the end.
#include <sys/resource.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <thread>

#include "edge_fixture.h"
#include "hostile_fixture.h"

namespace edge::test::hostile {
namespace {

struct SoakOptions {
  int flows = 5000;
  double minutes = 30;
  int addresses = 64;  // client source addresses 127.0.0.2 .. (the lab default allows 100 per address)
  int sample_seconds = 10;
  bool valgrind = false;
};

[[noreturn]] void usage() {
  std::cerr << "usage: edge-soak [--flows N] [--minutes T] [--addresses K] [--sample-seconds S] [--valgrind]\n";
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
    if (a == "--flows") o.flows = std::stoi(value());
    else if (a == "--minutes") o.minutes = std::stod(value());
    else if (a == "--addresses") o.addresses = std::stoi(value());
    else if (a == "--sample-seconds") o.sample_seconds = std::stoi(value());
    else if (a == "--valgrind") o.valgrind = true;
    else usage();
  }
  // Bounded, whatever the caller asks.
  if (o.flows < 1 || o.flows > 20000 || o.minutes <= 0 || o.minutes > 240 || o.addresses < 1 ||
      o.addresses > 250 || o.sample_seconds < 1)
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

int run(const SoakOptions& o) {
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  // Each simulated client holds its socket plus its own io_context's epoll and
  // event fds, and edged (which inherits the limit) one fd per flow: as root,
  // raise the hard limit too (up to fs.nr_open).
  const rlim_t wanted = static_cast<rlim_t>(o.flows) * 4 + 1000;
  if (nofile.rlim_max < wanted) {
    rlimit raised{wanted, wanted};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) nofile = raised;
  }
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);
  if (nofile.rlim_cur < static_cast<rlim_t>(o.flows) + 200) {
    std::cerr << "edge-soak: RLIMIT_NOFILE " << nofile.rlim_cur << " is too small for " << o.flows << " flows\n";
    return 1;
  }

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
    eo.env = {"EDGE_SOAK=1", find_program("valgrind", "valgrind").string(), "--leak-check=full",
              "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
              "--num-callers=30", "--error-exitcode=99"};
    eo.start_timeout = std::chrono::milliseconds(180'000);
  }
  EdgedProcess edge(eo);
  const pid_t pid = edge.pid();

  std::mt19937 rng(5626);
  std::map<std::string, std::uint64_t> errors;
  std::uint64_t registers = 0, calls = 0, churned = 0;
  auto count_error = [&](const std::string& what, const std::exception& e) {
    if (errors[what]++ < 3) std::cerr << "error " << what << ": " << e.what() << "\n";
  };
  int next_id = 0;
  auto new_flow = [&]() -> std::unique_ptr<TestUa> {
    const int id = next_id++;
    auto u = std::make_unique<TestUa>("soak" + std::to_string(id));
    ConnectOptions co;
    co.local = Endpoint{boost::asio::ip::make_address("127.0.0." + std::to_string(2 + id % o.addresses)), 0};
    try {
      u->connect(Transport::tcp, edge.endpoint(Transport::tcp), co);
      RegisterOptions ro;
      ro.expires = 3600;
      const SipMessage ok = u->register_with(ro);
      ++registers;
      if (ok.status() != 200) {
        ++errors["register_" + std::to_string(ok.status())];
        return nullptr;
      }
    } catch (const std::exception& e) {
      count_error("register", e);
      return nullptr;
    }
    return u;
  };

  const auto start = Clock::now();
  auto elapsed_s = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  auto sample = [&](const char* phase, std::size_t held) {
    std::uint64_t total_errors = 0;
    for (const auto& [k, v] : errors) total_errors += v;
    std::cout << "t=" << static_cast<int>(elapsed_s()) << "s phase=" << phase << " flows_held=" << held
              << " edged_rss_kb=" << rss_kb(pid) << " edged_fds=" << fd_count(pid) << " registers=" << registers
              << " calls=" << calls << " churned=" << churned << " errors=" << total_errors << std::endl;
  };

  std::vector<std::unique_ptr<TestUa>> held;
  held.reserve(static_cast<std::size_t>(o.flows));
  for (int i = 0; i < o.flows; ++i) {
    if (auto u = new_flow()) held.push_back(std::move(u));
    if (i % 1000 == 999) sample("ramp", held.size());
  }
  sample("held", held.size());

  TestUa caller("soak-caller");
  caller.connect(Transport::udp, core.endpoint(Transport::udp));
  const auto end = start + std::chrono::duration<double>(o.minutes * 60);
  auto next_sample = Clock::now() + std::chrono::seconds(o.sample_seconds);
  auto next_keepalive = Clock::now();
  std::size_t keepalive_cursor = 0;
  while (Clock::now() < end && !held.empty()) {
    // Keep-alives: every flow pings within 20 s (Flow-Timer 30 + grace), spread over the loop.
    if (Clock::now() >= next_keepalive) {
      const std::size_t batch = std::max<std::size_t>(1, held.size() / 100);
      for (std::size_t k = 0; k < batch; ++k, ++keepalive_cursor) {
        auto& u = held[keepalive_cursor % held.size()];
        try {
          u->send_ping();
          while (u->try_receive(Millis(0))) {
          }
        } catch (const std::exception& e) {
          count_error("keepalive", e);
        }
      }
      next_keepalive = Clock::now() + Millis(200);
    }
    // Churn: one flow leaves, a new one connects and registers.
    std::uniform_int_distribution<std::size_t> pick(0, held.size() - 1);
    const std::size_t i = pick(rng);
    held[i]->close();
    ++churned;
    if (auto u = new_flow()) {
      held[i] = std::move(u);
    } else {
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
      if (held.empty()) break;
    }
    // A call to a random held flow through the core and the edge, every other round.
    if (churned % 2 == 0) {
      TestUa& callee = *held[pick(rng) % held.size()];
      try {
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
        ++calls;
      } catch (const std::exception& e) {
        count_error("call", e);
        while (caller.try_receive(Millis(0))) {
        }
      }
    }
    if (Clock::now() >= next_sample) {
      sample("churn", held.size());
      next_sample += std::chrono::seconds(o.sample_seconds);
    }
  }
  sample("end", held.size());
  for (auto& u : held) u->close();
  held.clear();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  sample("closed", 0);
  for (const auto& [k, v] : errors) std::cout << "error_count " << k << "=" << v << "\n";
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
  return rc == 0 ? 0 : 1;
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
