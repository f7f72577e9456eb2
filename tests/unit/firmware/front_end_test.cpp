// SipFrontEnd alone: a controlled restart keeps the proxy state (branch, transactions, counters), and the
// proxy's timers run on a transport worker.
#include "front_end.h"

#include <edge/hsm/hsm.h>
#include <edge/mgmt/properties.h>
#include <edge/test/fault_shim.h>
#include <edge/test/hsm_test_util.h>
#include <edge/test/process.h>
#include <edge/test/sip/ports.h>
#include <edge/test/softhsm_fixture.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace edge::firmware {
namespace {

using namespace std::chrono_literals;

constexpr int kWaitMs = 5000;  // generous: only catches "never"

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

bool readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

// The core next hop: a TCP listener the front end's core link connects to.
class FakeCore {
 public:
  explicit FakeCore(std::uint16_t port) : listener_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    const int one = 1;
    ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const sockaddr_in a = loopback(port);
    EXPECT_EQ(::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listener_.get(), 4), 0);
  }
  bool accept_link() {
    if (!readable(listener_.get(), kWaitMs)) return false;
    conn_.reset(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    return conn_.get() >= 0;
  }
  // One message without a body (every message of these tests), "" on timeout.
  std::string read_message() {
    for (;;) {
      if (const auto end = buf_.find("\r\n\r\n"); end != std::string::npos) {
        std::string m = buf_.substr(0, end + 4);
        buf_.erase(0, end + 4);
        return m;
      }
      if (!readable(conn_.get(), kWaitMs)) return {};
      char b[4096];
      const ssize_t n = ::read(conn_.get(), b, sizeof b);
      if (n <= 0) return {};
      buf_.append(b, static_cast<std::size_t>(n));
    }
  }
  void send(const std::string& bytes) {
    EXPECT_EQ(::write(conn_.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

 private:
  Fd listener_;
  Fd conn_;
  std::string buf_;
};

// A plain UDP phone.
class Phone {
 public:
  Phone() : fd_(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    const sockaddr_in a = loopback(0);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(bound.sin_port);
  }
  std::uint16_t port() const { return port_; }
  void send_to(std::uint16_t edge_port, const std::string& bytes) {
    const sockaddr_in to = loopback(edge_port);
    EXPECT_EQ(
        ::sendto(fd_.get(), bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to),
        static_cast<ssize_t>(bytes.size()));
  }
  std::string receive() {
    if (!readable(fd_.get(), kWaitMs)) return {};
    char b[65536];
    const ssize_t n = ::recv(fd_.get(), b, sizeof b, 0);
    return n > 0 ? std::string(b, static_cast<std::size_t>(n)) : std::string();
  }

 private:
  Fd fd_;
  std::uint16_t port_ = 0;
};

// The value of `name` in the first line that starts with `header`.
std::string param_of_first(const std::string& msg, std::string_view header, std::string_view name) {
  const auto line = msg.find(std::string("\r\n") + std::string(header));
  if (line == std::string::npos) return {};
  const auto eol = msg.find("\r\n", line + 2);
  const std::string l = msg.substr(line + 2, eol - line - 2);
  const auto p = l.find(std::string(name) + "=");
  if (p == std::string::npos) return {};
  const auto v = p + name.size() + 1;
  return l.substr(v, l.find_first_of(";, >", v) - v);
}

// What the core answers: every Via, From, To, Call-ID and CSeq copied.
std::string answer(const std::string& request, int status, std::string_view reason) {
  std::string out = "SIP/2.0 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  std::size_t pos = request.find("\r\n") + 2;
  while (pos < request.size()) {
    const auto eol = request.find("\r\n", pos);
    const std::string line = request.substr(pos, eol - pos);
    if (line.empty()) break;
    for (const char* h : {"Via:", "From:", "To:", "Call-ID:", "CSeq:"}) {
      if (line.rfind(h, 0) == 0) out += line + "\r\n";
    }
    pos = eol + 2;
  }
  return out + "Content-Length: 0\r\n\r\n";
}

std::string request(std::string_view method, std::uint16_t phone_port, std::string_view cseq_method = {}) {
  const std::string p = std::to_string(phone_port);
  return std::string(method) + " sip:bob@127.0.0.1 SIP/2.0\r\n" + "Via: SIP/2.0/UDP 127.0.0.1:" + p +
         ";branch=z9hG4bKfrontend1;rport\r\n"
         "Max-Forwards: 70\r\n"
         "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
         "To: <sip:bob@127.0.0.1>\r\n"
         "Call-ID: frontend-1@127.0.0.1\r\n"
         "CSeq: 1 " +
         std::string(cseq_method.empty() ? method : cseq_method) + "\r\n" +
         "Contact: <sip:alice@127.0.0.1:" + p +
         ">\r\n"
         "Content-Length: 0\r\n\r\n";
}

class FrontEndTest : public ::testing::Test {
 protected:
  explicit FrontEndTest(bool through_shim = false)
      : hsm_(through_shim ? shim_.config() : token_.config()), fe_(hsm_, state_.path()) {}
  void SetUp() override {
    hsm_.keysets().create("sipflow");
    sip_port_ = test::free_port();
    core_port_ = test::free_port();
    core_ = std::make_unique<FakeCore>(core_port_);
  }
  mgmt::v1::ApplianceConfig config(int flow_timer) const {
    // The core is reached over TCP, so the edge listens on TCP too (its Path and
    // Record-Route name it); the phone uses UDP.
    const std::string port = std::to_string(sip_port_);
    return mgmt::import_conf_text(
        "sip.flow_token.key_set = sipflow\n"
        "listen = udp 127.0.0.1 " +
            port + "\nlisten = tcp 127.0.0.1 " + port +
            "\n"
            "core = sip:127.0.0.1:" +
            std::to_string(core_port_) +
            ";transport=tcp\n"
            // FakeCore answers no CRLF pings and no OPTIONS: the link is up at connect.
            "core.keepalive_interval_ms = 0\n"
            "core.health_interval_ms = 0\n"
            "sip.flow_timer = " +
            std::to_string(flow_timer) + "\n",
        "test");
  }
  // The agent's controlled restart, step by step (mgmt::FrontEnd's contract).
  void controlled_restart(const mgmt::v1::ApplianceConfig& next) {
    fe_.drain(2s);
    fe_.apply(next, mgmt::v1::RESTART_FRONT_END);
    fe_.start();
    EXPECT_EQ(fe_.health(), "");
  }

  test::SoftHsmToken token_;
  test::FaultShim shim_{token_};
  hsm::Hsm hsm_;
  test::TempDir state_{"edge-front-end"};
  SipFrontEnd fe_;
  std::uint16_t sip_port_ = 0, core_port_ = 0;
  std::unique_ptr<FakeCore> core_;
};

TEST_F(FrontEndTest, AnInviteForwardedBeforeARestartKeepsItsBranchAndItsTransactionAfterIt) {
  fe_.boot(config(30));
  ASSERT_TRUE(core_->accept_link()) << "the core link never connected";
  Phone phone;

  phone.send_to(sip_port_, request("INVITE", phone.port()));
  const std::string invite = core_->read_message();
  ASSERT_FALSE(invite.empty()) << "the INVITE never reached the core";
  const std::string branch = param_of_first(invite, "Via:", "branch");
  ASSERT_FALSE(branch.empty());
  core_->send(answer(invite, 100, "Trying"));
  const std::string trying = phone.receive();
  ASSERT_EQ(trying.rfind("SIP/2.0 100", 0), 0u) << trying;

  controlled_restart(config(60));

  // The phone did not hear the 100 (as far as it knows) and retransmits: the one
  // transaction table still knows the INVITE and replays the core's answer.
  phone.send_to(sip_port_, request("INVITE", phone.port()));
  EXPECT_EQ(phone.receive(), trying);
  // The caller hangs up: the CANCEL matches the INVITE at the core.
  phone.send_to(sip_port_, request("CANCEL", phone.port()));
  const std::string cancel = core_->read_message();
  ASSERT_EQ(cancel.rfind("CANCEL ", 0), 0u)
      << "the retransmission reached the core, or nothing did: " << cancel;
  EXPECT_EQ(param_of_first(cancel, "Via:", "branch"), branch);

  // Counted across the restart, without adding up proxies.
  const auto s = fe_.status();
  EXPECT_EQ(s.requests_from_clients(), 3u);
  EXPECT_EQ(s.restarts(), 1u);
}

TEST_F(FrontEndTest, TheProxyTimersRunOnATransportWorker) {
  fe_.boot(config(30));
  const auto t0 = fe_.last_tick();
  EXPECT_TRUE(test::wait_until([&] { return fe_.last_tick() > t0; }, 5s)) << "no timer tick";
  // And keep running across a restart (the new rules are ticked).
  controlled_restart(config(60));
  const auto t1 = fe_.last_tick();
  EXPECT_TRUE(test::wait_until([&] { return fe_.last_tick() > t1; }, 5s))
      << "no timer tick after the restart";
}

// The same front end on an HSM whose C_Sign takes 300 ms (the fault shim's latency).
class FrontEndSlowHsmTest : public FrontEndTest {
 protected:
  FrontEndSlowHsmTest() : FrontEndTest(true) {}
  void TearDown() override { shim_.clear(); }
};

TEST_F(FrontEndSlowHsmTest, AControlledRestartWithAMintInFlightLosesNothing) {
  fe_.boot(config(30));
  ASSERT_TRUE(core_->accept_link()) << "the core link never connected";
  shim_.set("C_Sign delay_ms=300");
  const auto signs = hsm_.counters().snapshot().sign;
  Phone phone;
  // A new flow's INVITE needs a Record-Route token: a mint, parked off the worker.
  phone.send_to(sip_port_, request("INVITE", phone.port()));
  ASSERT_TRUE(test::wait_until([&] { return fe_.status().hsm_work().parked() == 1; }, 5s));
  // Its retransmission meanwhile is absorbed (the transaction was recorded).
  phone.send_to(sip_port_, request("INVITE", phone.port()));
  // An apply while the HSM works: the message comes back to the new rules.
  controlled_restart(config(60));
  const std::string invite = core_->read_message();
  ASSERT_EQ(invite.rfind("INVITE ", 0), 0u) << "the INVITE was lost across the restart: " << invite;
  EXPECT_NE(invite.find("Record-Route: <sip:"), std::string::npos) << invite;
  const auto w = fe_.status().hsm_work();
  EXPECT_EQ(w.parked(), 1u);
  EXPECT_EQ(w.resume_dropped(), 0u);
  EXPECT_EQ(w.refused_budget() + w.refused_queue_full() + w.shed(), 0u);
  // One mint for the flow, one for the restart's health check (its sign probe).
  EXPECT_EQ(hsm_.counters().snapshot().sign - signs, 2u);
  // Nothing else reached the core (the retransmission stayed with the edge).
  core_->send(answer(invite, 180, "Ringing"));
  EXPECT_EQ(phone.receive().rfind("SIP/2.0 180", 0), 0u);
}

// Issue 17: after a rebuild of the transports health() waits for every core the
// apply added or changed to come up once; a core nobody answers at fails it and
// names the core, so the agent rolls the apply back. A core that is there passes,
// and a core configured before that is down is an outage, not the apply's fault.
TEST_F(FrontEndTest, HealthFailsForAConfiguredCoreThatNeverComesUp) {
  fe_.boot(config(30));
  ASSERT_TRUE(core_->accept_link());
  const std::uint16_t nobody = test::free_port();
  const std::string port = std::to_string(sip_port_);
  const auto with_core = [&](const std::string& core, const std::string& extra = "") {
    return mgmt::import_conf_text("sip.flow_token.key_set = sipflow\nlisten = udp 127.0.0.1 " + port +
                                      "\nlisten = tcp 127.0.0.1 " + port + "\ncore = " + core +
                                      "\ncore.keepalive_interval_ms = 0\ncore.keepalive_timeout_ms = 100\n"
                                      "core.health_interval_ms = 0\n" +
                                      extra,
                                  "test");
  };
  const std::string there = "sip:127.0.0.1:" + std::to_string(core_port_) + ";transport=tcp";
  const std::string mistyped = "sip:127.0.0.1:" + std::to_string(nobody) + ";transport=tcp";

  fe_.drain(2s);
  fe_.apply(with_core(there + ", " + mistyped), mgmt::v1::RESTART_LISTENERS);
  fe_.start();
  const std::string why = fe_.health();
  EXPECT_NE(why.find(mistyped), std::string::npos) << why;
  EXPECT_NE(why.find("did not come up"), std::string::npos) << why;
  EXPECT_EQ(why.find(there), std::string::npos) << "the core that is there was named: " << why;

  fe_.drain(2s);
  fe_.apply(with_core(there), mgmt::v1::RESTART_LISTENERS);
  fe_.start();
  EXPECT_EQ(fe_.health(), "");
  // The core was there before and is gone now: a limits change (a rebuild) still applies.
  core_.reset();
  fe_.drain(2s);
  fe_.apply(with_core(there, "limits.max_connections = 900\n"), mgmt::v1::RESTART_LISTENERS);
  fe_.start();
  EXPECT_EQ(fe_.health(), "");
  // A restart that keeps the transports does not wait for cores again.
  fe_.drain(2s);
  fe_.apply(with_core(there), mgmt::v1::RESTART_FRONT_END);
  fe_.start();
  EXPECT_EQ(fe_.health(), "");
}

}  // namespace
}  // namespace edge::firmware
