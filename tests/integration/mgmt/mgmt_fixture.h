// MgmtFixture: an Agent on a fresh SoftHSM token and state dir, a recording FrontEnd, test PKI, MgmtServer.
#pragma once

#include <edge/hsm/hsm.h>
#include <edge/mgmt/agent.h>
#include <edge/mgmt/front_end.h>
#include <edge/mgmt/server.h>
#include <edge/mgmt/v1/agent.grpc.pb.h>
#include <edge/test/fake_front_end.h>
#include <edge/test/sip/pki.h>
#include <edge/test/softhsm_fixture.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/logger.h>

#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace edge::test {

// Thread-safe capture of what spdlog writes (the server logs refusals from gRPC threads).
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  std::string text() const;

 private:
  struct Sink;
  std::shared_ptr<Sink> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

class MgmtFixture : public ::testing::Test {
 protected:
  static constexpr const char* kKeySet = "flow";
  static constexpr const char* kOpsUri = "spiffe://edge.test/mgmt/ops";
  static constexpr const char* kWatcherDns = "watcher.mgmt.test";
  static constexpr const char* kOpsActor = "cert:uri:spiffe://edge.test/mgmt/ops";
  static constexpr const char* kWatcherActor = "cert:dns:watcher.mgmt.test";

  MgmtFixture();
  ~MgmtFixture() override;

  // Starts MgmtServer on <state>/mgmt.sock and on 127.0.0.1:0 with mutual TLS,
  // through server_options(). Roles: uri:kOpsUri operator, dns:kWatcherDns
  // viewer, cn:legacy-ops operator (counts only with cn_fallback_), dns:NAME
  // viewer for each of extra_viewer_dns_; the CRL crl_file_ when set.
  void start_server(unsigned unix_mode = 0660, long operator_gid = -1);

  std::unique_ptr<mgmt::v1::EdgeManagement::Stub> unix_stub();
  // Mutual TLS to the TCP listener presenting `client` (nullptr: no client certificate).
  std::unique_ptr<mgmt::v1::EdgeManagement::Stub> tls_stub(const CertFiles* client);

  const std::filesystem::path& state_dir() const { return state_dir_; }

  SoftHsmToken token_;
  std::unique_ptr<hsm::Hsm> hsm_;
  TempDir dir_{"edge-mgmt-test"};
  std::filesystem::path state_dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<TestPki> other_pki_;
  // ops_: URI SAN kOpsUri; watcher_: DNS SAN kWatcherDns; stranger_: an
  // unlisted URI; cn_only_: CN legacy-ops, an IP SAN only; revoked_ops_: URI
  // kOpsUri (for CRL tests); foreign_ops_: kOpsUri from another CA.
  CertFiles server_cert_, ops_, watcher_, stranger_, cn_only_, revoked_ops_, foreign_ops_;
  bool cn_fallback_ = false;
  std::filesystem::path crl_file_;
  // More viewer identities for start_server: dns:NAME=viewer for each name.
  std::vector<std::string> extra_viewer_dns_;
  LogCapture log_;
  FakeFrontEnd front_end_;  // healthy, records what the agent asked of it
  std::unique_ptr<mgmt::Agent> agent_;
  std::unique_ptr<mgmt::MgmtServer> server_;
};

// The client-side deadline every test call gets (a hang fails instead of blocking CTest's timeout).
void set_deadline(grpc::ClientContext& ctx, std::chrono::seconds s = std::chrono::seconds(10));

}  // namespace edge::test
