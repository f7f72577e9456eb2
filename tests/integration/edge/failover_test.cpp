// Issue 15, "Verification across members and edge failover": two edged members (A, B) on ONE SoftHSM
// token (a non-lab HSM named by module path and SOFTHSM2_CONF, as a shared HSM would be), each in a
// network namespace of its own, behind a virtual address (VIP) that moves from A to B: by hand (ip addr)
// and by keepalived (VRRP over the test's bridge). A phone (the test's UDP socket) registers through A;
// A is SIGKILLed; the VIP moves to B; the real Kamailio core calls the phone with A's token in the Route:
// B (sip.freebind, listening on the VIP before it held it) sends the INVITE from VIP:5060 to the address
// and port in the token, the phone's 200 goes back through B, and the phone never re-registers. A TCP
// phone's flow (a connection B never had) gets 430 from B, and a tampered token 403.
//
// Layout (all made by the test, removed by NetLab's destructor even when the test fails):
//   the test's own namespace (netns-run): bridge edgebr0 10.77.0.1/24, Kamailio on 10.77.0.1:5080,
//   the phone and the caller on 10.77.0.1; namespaces ef<pid>a / ef<pid>b: eth0 10.77.0.2 / .3 on the
//   bridge through veth pairs; the VIP 10.77.0.10.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "edge/test/sip/kamailio.h"
#include "edge/test/sip/process.h"
#include "edge/test/sip/test_ua.h"
#include "edged_process.h"

#ifndef EDGE_SOFTHSM_MODULE
#error "EDGE_SOFTHSM_MODULE must name the SoftHSM PKCS#11 module"
#endif

namespace edge::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kHostAddress = "10.77.0.1";  // the bridge: Kamailio, the phone, the caller
constexpr const char* kAddressA = "10.77.0.2";
constexpr const char* kAddressB = "10.77.0.3";
constexpr const char* kVip = "10.77.0.10";
// IPv6 on the bridge: each member's own address, a UDP listener the other member does not have.
constexpr const char* kHostAddress6 = "fd77::1";
constexpr const char* kAddressA6 = "fd77::2";
constexpr const char* kAddressB6 = "fd77::3";
constexpr std::uint16_t kCorePort = 5080;
constexpr const char* kBridge = "edgebr0";
constexpr const char* kKeySet = "cellflow";

struct RunResult {
  int status = -1;
  std::string output;
};

// Runs a program to its end (bounded: 20 s), stdout and stderr in output.
RunResult run(const std::filesystem::path& program, std::vector<std::string> args) {
  static int n = 0;
  TempDir dir("edge-failover-run");
  ProcessOptions p;
  p.program = program;
  p.args = std::move(args);
  p.log_file = dir.path() / ("run-" + std::to_string(++n) + ".log");
  ChildProcess child(p);
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (child.running() && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(10));
  const bool timed_out = child.running();
  RunResult r;
  r.status = child.stop(milliseconds(500));
  r.output = child.log();
  if (timed_out) throw std::runtime_error(program.string() + " did not finish within 20 s: " + r.output);
  return r;
}

std::filesystem::path ip_program() { return find_program("ip", "iproute2"); }

// `ip ARGS...`; throws with the output when it fails.
std::string ip(std::vector<std::string> args) {
  std::string what = "ip";
  for (const auto& a : args) what += " " + a;
  const RunResult r = run(ip_program(), std::move(args));
  if (r.status != 0)
    throw std::runtime_error(what + ": status " + std::to_string(r.status) + ": " + r.output);
  return r.output;
}

// The test's namespaces and links. Namespace names carry our pid (they are global, in /run/netns);
// links live inside the test's private namespace or the named ones, and go with them. Stale
// namespaces of an earlier run that was SIGKILLed (its pid gone) are removed first.
class NetLab {
 public:
  NetLab() : a_("ef" + std::to_string(::getpid()) + "a"), b_("ef" + std::to_string(::getpid()) + "b") {
    remove_stale();
    try {
      ip({"netns", "add", a_});
      made_.push_back(a_);
      ip({"netns", "add", b_});
      made_.push_back(b_);
      ip({"link", "add", kBridge, "type", "bridge"});
      ip({"addr", "add", std::string(kHostAddress) + "/24", "dev", kBridge});
      ip({"addr", "add", std::string(kHostAddress6) + "/64", "dev", kBridge, "nodad"});
      ip({"link", "set", kBridge, "up"});
      ip({"link", "set", "lo", "up"});
      join(a_, "vetha", kAddressA, kAddressA6);
      join(b_, "vethb", kAddressB, kAddressB6);
    } catch (...) {
      cleanup();
      throw;
    }
  }
  ~NetLab() { cleanup(); }
  NetLab(const NetLab&) = delete;
  NetLab& operator=(const NetLab&) = delete;

  const std::string& a() const { return a_; }
  const std::string& b() const { return b_; }

  // {"/usr/sbin/ip", "netns", "exec", ns}: a ChildProcess command prefix (ip execs the program in place).
  std::vector<std::string> exec_in(const std::string& ns) const {
    return {ip_program().string(), "netns", "exec", ns};
  }
  bool has_vip(const std::string& ns) const {
    return ip({"-n", ns, "-4", "addr", "show", "dev", "eth0"}).find(std::string(kVip) + "/") !=
           std::string::npos;
  }
  void add_vip(const std::string& ns) const {
    ip({"-n", ns, "addr", "add", std::string(kVip) + "/24", "dev", "eth0"});
  }
  void del_vip(const std::string& ns) const {
    ip({"-n", ns, "addr", "del", std::string(kVip) + "/24", "dev", "eth0"});
  }
  // What a router does after a gratuitous ARP: forget where the VIP was.
  void flush_neighbours() const { ip({"neigh", "flush", "dev", kBridge}); }

 private:
  std::string a_, b_;
  std::vector<std::string> made_;

  void join(const std::string& ns, const std::string& veth, const std::string& address,
            const std::string& v6) {
    ip({"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns});
    ip({"link", "set", veth, "master", kBridge});
    ip({"link", "set", veth, "up"});
    ip({"-n", ns, "link", "set", "lo", "up"});
    ip({"-n", ns, "addr", "add", address + "/24", "dev", "eth0"});
    ip({"-n", ns, "addr", "add", v6 + "/64", "dev", "eth0", "nodad"});
    ip({"-n", ns, "link", "set", "eth0", "up"});
  }

  static void remove_stale() {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec)) {
      const std::string name = e.path().filename().string();
      if (name.size() < 4 || name.rfind("ef", 0) != 0) continue;
      const std::string pid = name.substr(2, name.size() - 3);
      if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
      if (std::filesystem::exists("/proc/" + pid)) continue;
      run(ip_program(), {"netns", "del", name});
    }
  }

  void cleanup() noexcept {
    // Deleting a namespace deletes its end of the veth pair, and so the pair; the bridge is ours.
    for (const auto& ns : made_) {
      try {
        run(ip_program(), {"netns", "del", ns});
      } catch (...) {
      }
    }
    made_.clear();
    try {
      run(ip_program(), {"link", "del", kBridge});
    } catch (...) {
    }
  }
};

// One SoftHSM token both members use (a shared network HSM in production), with the key set.
class SharedHsm {
 public:
  SharedHsm() : dir_("edge-failover-hsm") {
    tool({"init-lab-token"});
    tool({"keyset", "create", kKeySet});
  }
  const std::filesystem::path& dir() const { return dir_.path(); }

 private:
  TempDir dir_;
  void tool(std::vector<std::string> args) {
    std::vector<std::string> a = {"EDGE_STATE_DIR=" + dir_.path().string(), edge_hsm_program().string()};
    a.insert(a.end(), args.begin(), args.end());
    const RunResult r = run(find_program("env", "coreutils"), a);
    if (r.status != 0) throw std::runtime_error("edge-hsm failed: " + r.output);
  }
};

// A copy of the harness's Kamailio template that also listens on the bridge (the members reach it there).
std::filesystem::path bridged_core_template(const std::filesystem::path& dir) {
  std::string text = read_file(EDGE_SIP_KAMAILIO_TEMPLATE);
  const std::string anchor = "@LISTEN@\n";
  const auto at = text.find(anchor);
  if (at == std::string::npos) throw std::runtime_error("no @LISTEN@ in the Kamailio template");
  text.insert(at + anchor.size(), std::string("listen=udp:") + kHostAddress + ":" +
                                      std::to_string(kCorePort) + "\nlisten=tcp:" + kHostAddress + ":" +
                                      std::to_string(kCorePort) + "\nmhomed=1\n");
  auto path = dir / "kamailio-bridged.cfg.in";
  write_file(path, text);
  return path;
}

// A member: edged in namespace ns, listening on the VIP (sip.freebind: before it holds it), on the shared
// HSM, and on UDP on its own IPv6 address (a listener the other member does not have).
EdgedOptions member(const NetLab& lab, const std::string& ns, const std::string& own, const SharedHsm& hsm) {
  EdgedOptions o;
  o.udp_port = o.tcp_port = o.tls_port = o.ws_port = o.wss_port = 0;  // our own listen lines below
  o.core = std::string("sip:") + kHostAddress + ":" + std::to_string(kCorePort) + ";transport=udp";
  o.key_set = kKeySet;
  o.wrapper = lab.exec_in(ns);
  o.env = {"SOFTHSM2_CONF=" + (hsm.dir() / "hsm" / "softhsm2.conf").string()};
  o.extra = {{"hsm.module", EDGE_SOFTHSM_MODULE},
             {"hsm.token", "edge-lab"},
             {"hsm.pin_file", (hsm.dir() / "hsm" / "user-pin").string()},
             {"listen", std::string("udp ") + kVip + " 5060"},
             {"listen", std::string("tcp ") + kVip + " 5060"},
             {"listen", "udp " + own + " 5060"},
             {"sip.freebind", "true"},
             // A standby's OPTIONS leave from the VIP, and their answers reach the member holding it.
             {"core.health_interval_ms", "0"}};
  return o;
}

bool eventually(const std::function<bool()>& f, milliseconds within) {
  const auto deadline = Clock::now() + within;
  while (Clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(milliseconds(100));
  }
  return f();
}

Endpoint host_endpoint(const char* address, std::uint16_t port) {
  return {boost::asio::ip::make_address(address), port};
}

// The token of a Path URI: "<sip:TOKEN@10.77.0.10:5060;lr;ob>" -> TOKEN.
std::string token_of(const std::string& path) {
  const auto colon = path.find("sip:");
  const auto at = path.find('@');
  if (colon == std::string::npos || at == std::string::npos || at < colon) return {};
  return path.substr(colon + 4, at - colon - 4);
}

class EdgeFailover : public ::testing::Test {
 protected:
  void SetUp() override {
    find_program("keepalived", "keepalived");  // fails, never skips, when it is missing
    lab_ = std::make_unique<NetLab>();
    hsm_ = std::make_unique<SharedHsm>();
    core_dir_ = std::make_unique<TempDir>("edge-failover-core");
    KamailioOptions k;
    k.port = kCorePort;
    k.config_template = bridged_core_template(core_dir_->path());
    core_ = std::make_unique<KamailioProcess>(k);
  }
  void TearDown() override {
    if (HasFailure()) {
      for (auto* e : {a_.get(), b_.get()}) {
        if (e) std::cerr << "---- edged " << (e == a_.get() ? "A" : "B") << " log\n" << e->log() << "\n";
      }
      if (core_) std::cerr << "---- kamailio log\n" << core_->log() << "\n";
      for (const auto& k : keepalived_logs_) std::cerr << "---- keepalived log\n" << read_file(k) << "\n";
    }
    keepalived_.clear();
    a_.reset();
    b_.reset();
    core_.reset();
    core_dir_.reset();
    hsm_.reset();
    lab_.reset();
  }

  void start_members() {
    a_ = std::make_unique<EdgedProcess>(member(*lab_, lab_->a(), kAddressA6, *hsm_));
    b_ = std::make_unique<EdgedProcess>(member(*lab_, lab_->b(), kAddressB6, *hsm_));
  }

  // A phone (user) on the bridge, its flow to the VIP over t, registered through whichever member holds it.
  std::unique_ptr<TestUa> phone(const std::string& user, Transport t, const char* edge = kVip,
                                const char* local = kHostAddress) {
    auto ua = std::make_unique<TestUa>(user, kHostAddress);
    ConnectOptions c;
    c.local = host_endpoint(local, 0);
    ua->connect(t, host_endpoint(edge, 5060), c);
    return ua;
  }
  std::unique_ptr<TestUa> caller() {
    auto ua = std::make_unique<TestUa>("caller", kHostAddress);
    ConnectOptions c;
    c.local = host_endpoint(kHostAddress, 0);
    ua->connect(Transport::udp, host_endpoint(kHostAddress, kCorePort), c);
    return ua;
  }

  // keepalived for ns (-n: stays our child; -l: logs to its log file; its VRRP child shares its group).
  // track: the pid of the member's edged, checked every second (a vrrp_script, as docs/operations.md
  // recommends with systemctl): when it is gone the instance goes to FAULT and gives the VIP up. 0: none.
  ChildProcess& start_keepalived(const std::string& ns, const std::string& self, const std::string& peer,
                                 int priority, pid_t track = 0) {
    const auto dir = core_dir_->path() / ("keepalived-" + ns);
    std::filesystem::create_directories(dir);
    const auto conf = dir / "keepalived.conf";
    std::string script, tracking;
    if (track != 0) {
      script = "vrrp_script edged_alive {\n  script \"" + find_program("kill", "procps").string() + " -0 " +
               std::to_string(track) + "\"\n  interval 1\n  fall 1\n  rise 1\n}\n";
      tracking = "  track_script {\n    edged_alive\n  }\n";
    }
    write_file(conf, "global_defs {\n  router_id " + ns +
                         "\n  vrrp_garp_master_repeat 3\n  script_user root\n}\n" + script +
                         "vrrp_instance EDGE {\n  state BACKUP\n  interface eth0\n  virtual_router_id 77\n"
                         "  priority " +
                         std::to_string(priority) +
                         "\n  advert_int 1\n"
                         "  unicast_src_ip " +
                         self + "\n  unicast_peer {\n    " + peer + "\n  }\n  virtual_ipaddress {\n    " +
                         kVip + "/24 dev eth0\n  }\n" + tracking + "}\n");
    ProcessOptions p;
    auto prefix = lab_->exec_in(ns);
    p.program = prefix.front();
    p.args.assign(prefix.begin() + 1, prefix.end());
    const auto keepalived = find_program("keepalived", "keepalived");
    for (const std::string& a :
         {keepalived.string(), std::string("-n"), std::string("-l"), std::string("-D"), std::string("-P"),
          std::string("-f"), conf.string(), std::string("-p"), (dir / "keepalived.pid").string(),
          std::string("-r"), (dir / "vrrp.pid").string()}) {
      p.args.push_back(a);
    }
    p.log_file = dir / "keepalived.log";
    keepalived_logs_.push_back(p.log_file);
    keepalived_.push_back(std::make_unique<ChildProcess>(p));
    return *keepalived_.back();
  }

  // The phone, registered through A (over UDP), is called through B after the VIP moved there.
  void expect_call_through_b(TestUa& alice, const std::string& token_a) {
    ASSERT_TRUE(eventually([&] { return lab_->has_vip(lab_->b()); }, milliseconds(15000)))
        << "the VIP never reached B";
    EXPECT_FALSE(lab_->has_vip(lab_->a()));
    lab_->flush_neighbours();
    const std::uint64_t b_clients_before = b_->status().number("requests_from_clients");

    auto bob = caller();
    const SipMessage invite = bob->make_invite(alice.aor());
    bob->send(invite);
    // The phone's socket is connected to VIP:5060: it receives only what comes from there.
    const SipMessage in = alice.receive_request("INVITE", milliseconds(10000));
    // From B (its Via names the VIP), along A's token (kept in the Record-Route, RFC 5626 §5.3.1).
    EXPECT_NE(in.header("Via").value_or("").find(std::string(kVip) + ":5060"), std::string::npos)
        << in.summary();
    bool rr_has_token = false;
    for (const auto& rr : in.header_values("Record-Route"))
      rr_has_token = rr_has_token || rr.find(token_a) != std::string::npos;
    EXPECT_TRUE(rr_has_token) << in.summary();
    // B adopted the flow: the phone's RFC 5626 keep-alive (STUN) to the VIP is answered.
    EXPECT_NO_THROW(alice.stun_binding(milliseconds(5000)));
    alice.send(alice.make_response(in, 200, "OK", TestUa::new_tag(), {}));
    const SipMessage ok = bob->receive_response("INVITE", milliseconds(10000));
    EXPECT_EQ(ok.status(), 200) << ok.summary() << "\n" << bob->transcript();

    const EdgedStatus s = b_->status();
    EXPECT_GE(s.number("udp_unheld_sends"), 1u) << "B sent over a flow it never held";
    EXPECT_EQ(s.number("udp_no_listener"), 0u);
    EXPECT_EQ(s.number("requests_from_clients"), b_clients_before)
        << "the phone never re-registered (through B)";
    EXPECT_EQ(s.number("r430"), 0u);
  }

  std::unique_ptr<NetLab> lab_;
  std::unique_ptr<SharedHsm> hsm_;
  std::unique_ptr<TempDir> core_dir_;
  std::unique_ptr<KamailioProcess> core_;
  std::unique_ptr<EdgedProcess> a_, b_;
  std::vector<std::unique_ptr<ChildProcess>> keepalived_;
  std::vector<std::filesystem::path> keepalived_logs_;
};

// The VIP moved by hand (what keepalived does, step by step): A's tokens verify on B; the UDP phone is
// reached from the VIP without re-registering; a TCP flow B never had gets 430; a tampered token 403.
TEST_F(EdgeFailover, UdpFlowSurvivesTheVipMovingByHandTcpGets430TamperedGets403) {
  lab_->add_vip(lab_->a());
  // Without sip.freebind the standby cannot listen on the VIP it does not hold yet.
  EdgedOptions no_freebind = member(*lab_, lab_->b(), kAddressB6, *hsm_);
  for (auto& [key, value] : no_freebind.extra) {
    if (key == "sip.freebind") value = "false";
  }
  const std::string why = start_failure(no_freebind);
  EXPECT_NE(why.find("address not available"), std::string::npos) << why;
  start_members();

  auto alice = phone("alice", Transport::udp);
  const SipMessage reg = alice->register_with();
  ASSERT_EQ(reg.status(), 200) << reg.summary() << "\n" << alice->transcript();
  const auto paths = reg.header_values("Path");
  ASSERT_EQ(paths.size(), 1u) << reg.summary();
  const std::string token_a = token_of(paths[0]);
  ASSERT_FALSE(token_a.empty()) << paths[0];

  auto carol = phone("carol", Transport::tcp);
  ASSERT_EQ(carol->register_with().status(), 200) << carol->transcript();
  // dave registers through A's own IPv6 address: his token names a local address B has no
  // listener on (the Path still names the VIP, A's core side).
  auto dave = phone("dave", Transport::udp, kAddressA6, kHostAddress6);
  ASSERT_EQ(dave->register_with().status(), 200) << dave->transcript();

  // mallory's binding carries alice's token with one character changed (a registrar or a path tampered with).
  std::string tampered = token_a;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  auto mallory = std::make_unique<TestUa>("mallory", kHostAddress);
  {
    ConnectOptions c;
    c.local = host_endpoint(kHostAddress, 0);
    mallory->connect(Transport::udp, host_endpoint(kHostAddress, kCorePort), c);
    RegisterOptions r;
    r.outbound = false;
    r.extra_headers = {{"Path", "<sip:" + tampered + "@" + kVip + ":5060;lr>"}};
    ASSERT_EQ(mallory->register_with(r).status(), 200) << mallory->transcript();
  }
  ASSERT_EQ(a_->status().number("requests_from_clients"), 3u);

  // A dies (no drain, nothing handed over); the VIP moves to B.
  a_->kill9();
  lab_->del_vip(lab_->a());
  lab_->add_vip(lab_->b());
  expect_call_through_b(*alice, token_a);

  auto bob = caller();
  // carol's TCP connection was A's: gone with A (RFC 5626 §5.3: 430, and the phone re-registers).
  const SipMessage to_carol = bob->make_invite(carol->aor());
  bob->send(to_carol);
  const SipMessage r430 = bob->receive_response("INVITE", milliseconds(10000));
  EXPECT_EQ(r430.status(), 430) << r430.summary();
  bob->send(TestUa::make_ack_for_failure(to_carol, r430));
  // The tampered token fails B's HSM check: 403, not 430.
  const SipMessage to_mallory = bob->make_invite(mallory->aor());
  bob->send(to_mallory);
  const SipMessage r403 = bob->receive_response("INVITE", milliseconds(10000));
  EXPECT_EQ(r403.status(), 403) << r403.summary();
  bob->send(TestUa::make_ack_for_failure(to_mallory, r403));

  // dave's token is valid, but B cannot send from [fd77::2]:5060: 430 (the flow is gone for B), counted.
  const SipMessage to_dave = bob->make_invite(dave->aor());
  bob->send(to_dave);
  const SipMessage dave430 = bob->receive_response("INVITE", milliseconds(10000));
  EXPECT_EQ(dave430.status(), 430) << dave430.summary();
  bob->send(TestUa::make_ack_for_failure(to_dave, dave430));

  const EdgedStatus s = b_->status();
  EXPECT_EQ(s.number("r430"), 2u);
  EXPECT_EQ(s.number("udp_no_listener"), 1u);
  EXPECT_EQ(s.number("r403"), 1u);
  EXPECT_GE(s.number("verifies_hsm"), 2u) << "B checked A's tokens in the (shared) HSM";
}

// The same failover driven by keepalived (VRRP, unicast over the bridge) in A's and B's namespaces:
// A (priority 150) holds the VIP; A's edged is SIGKILLed and its keepalived stopped; B takes over the
// VIP and the phone, registered through A, is called through B.
TEST_F(EdgeFailover, UdpFlowSurvivesAKeepalivedFailover) {
  ChildProcess& ka = start_keepalived(lab_->a(), kAddressA, kAddressB, 150);
  start_keepalived(lab_->b(), kAddressB, kAddressA, 100);
  ASSERT_TRUE(eventually([&] { return lab_->has_vip(lab_->a()); }, milliseconds(15000)))
      << "keepalived never gave A the VIP";
  EXPECT_FALSE(lab_->has_vip(lab_->b()));
  start_members();

  auto alice = phone("alice", Transport::udp);
  const SipMessage reg = alice->register_with();
  ASSERT_EQ(reg.status(), 200) << reg.summary() << "\n" << alice->transcript();
  ASSERT_EQ(reg.header_values("Path").size(), 1u) << reg.summary();
  const std::string token_a = token_of(reg.header_values("Path")[0]);

  a_->kill9();
  ka.stop(milliseconds(3000));  // SIGTERM to its group: it leaves VRRP (priority 0), dropping the VIP
  expect_call_through_b(*alice, token_a);
}

// The failure keepalived is there for: A's edged dies (SIGKILL) on a box that stays up. A's keepalived
// tracks it (vrrp_script), goes to FAULT and gives the VIP up; B takes it; the phone registered through A
// is called through B. Both keepalived run to the end of the test.
TEST_F(EdgeFailover, UdpFlowSurvivesEdgedDyingUnderKeepalivedTracking) {
  start_members();  // sip.freebind: both listen on the VIP before keepalived hands it out
  start_keepalived(lab_->a(), kAddressA, kAddressB, 150, a_->pid());
  ChildProcess& kb = start_keepalived(lab_->b(), kAddressB, kAddressA, 100, b_->pid());
  ASSERT_TRUE(eventually([&] { return lab_->has_vip(lab_->a()); }, milliseconds(15000)))
      << "keepalived never gave A the VIP";
  EXPECT_FALSE(lab_->has_vip(lab_->b()));

  auto alice = phone("alice", Transport::udp);
  const SipMessage reg = alice->register_with();
  ASSERT_EQ(reg.status(), 200) << reg.summary() << "\n" << alice->transcript();
  ASSERT_EQ(reg.header_values("Path").size(), 1u) << reg.summary();
  const std::string token_a = token_of(reg.header_values("Path")[0]);

  a_->kill9();
  expect_call_through_b(*alice, token_a);
  EXPECT_TRUE(kb.running()) << "B's keepalived exited";
}

}  // namespace
}  // namespace edge::test
