// The management API test fixture: real SoftHSM, real Agent, real MgmtServer, throw-away PKI.
#include "mgmt_fixture.h"

#include <edge/mgmt/properties.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

namespace edge::test {
namespace v1 = mgmt::v1;

struct LogCapture::Sink : spdlog::sinks::base_sink<std::mutex> {
  mutable std::mutex text_mu;
  std::string text;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    std::lock_guard lock(text_mu);
    text.append(buf.data(), buf.size());
  }
  void flush_() override {}
};

LogCapture::LogCapture() : sink_(std::make_shared<Sink>()), previous_(spdlog::default_logger()) {
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("mgmt-test", sink_));
}

LogCapture::~LogCapture() { spdlog::set_default_logger(previous_); }

std::string LogCapture::text() const {
  std::lock_guard lock(sink_->text_mu);
  return sink_->text;
}

MgmtFixture::MgmtFixture() {
  hsm_ = std::make_unique<hsm::Hsm>(token_.config());
  hsm_->keysets().create(kKeySet);
  state_dir_ = dir_.path() / "state";
  std::filesystem::create_directories(state_dir_);
  std::filesystem::create_directories(dir_.path() / "pki");
  std::filesystem::create_directories(dir_.path() / "other-pki");
  pki_ = std::make_unique<TestPki>(dir_.path() / "pki");
  other_pki_ = std::make_unique<TestPki>(dir_.path() / "other-pki", "another CA");
  server_cert_ = pki_->issue("edge-mgmt", {"IP:127.0.0.1"});
  ops_ = pki_->issue("ops", {"URI:" + std::string(kOpsUri), "DNS:localhost"});
  watcher_ = pki_->issue("watcher", {"DNS:" + std::string(kWatcherDns)});
  stranger_ = pki_->issue("stranger", {"URI:spiffe://edge.test/mgmt/stranger"});
  cn_only_ = pki_->issue("legacy-ops", {"IP:127.0.0.1"});
  revoked_ops_ = pki_->issue("revoked-ops", {"URI:" + std::string(kOpsUri)});
  foreign_ops_ = other_pki_->issue("ops", {"URI:" + std::string(kOpsUri)});

  v1::ApplianceConfig initial = mgmt::PropertyRegistry::instance().defaults();
  initial.mutable_sip()->mutable_flow_token()->set_key_set(kKeySet);
  mgmt::AgentOptions ao;
  ao.state_dir = state_dir_;
  ao.version = "9.9.9-test";
  ao.drain_bound = std::chrono::milliseconds(200);
  agent_ = std::make_unique<mgmt::Agent>(ao, *hsm_, initial);
  front_end_.apply(agent_->boot_config(), v1::RESTART_LISTENERS);
  front_end_.start();
  agent_->attach_front_end(&front_end_);
}

MgmtFixture::~MgmtFixture() {
  server_.reset();
  if (agent_) agent_->shutdown();
}

void MgmtFixture::start_server(unsigned unix_mode, long operator_gid) {
  v1::MgmtSettings m;
  m.set_unix_socket("mgmt.sock");  // relative: server_options puts it in the state dir
  m.set_unix_socket_mode(unix_mode);
  m.set_operator_gid(operator_gid);
  m.set_tcp_listen("127.0.0.1:0");
  m.set_tls_certificate(server_cert_.cert.string());
  m.set_tls_private_key(server_cert_.key.string());
  m.set_client_ca_file(pki_->ca_file().string());
  m.set_crl_file(crl_file_.string());
  m.set_cn_fallback(cn_fallback_);
  auto* r = m.add_roles();
  r->set_uri(kOpsUri);
  r->set_role(v1::ROLE_OPERATOR);
  r = m.add_roles();
  r->set_dns_name(kWatcherDns);
  r->set_role(v1::ROLE_VIEWER);
  r = m.add_roles();
  r->set_common_name("legacy-ops");
  r->set_role(v1::ROLE_OPERATOR);
  for (const std::string& dns : extra_viewer_dns_) {
    r = m.add_roles();
    r->set_dns_name(dns);
    r->set_role(v1::ROLE_VIEWER);
  }
  server_ = std::make_unique<mgmt::MgmtServer>(*agent_, mgmt::server_options(m, state_dir_));
}

std::unique_ptr<v1::EdgeManagement::Stub> MgmtFixture::unix_stub() {
  return v1::EdgeManagement::NewStub(
      grpc::CreateChannel("unix:" + server_->unix_socket().string(), grpc::InsecureChannelCredentials()));
}

std::unique_ptr<v1::EdgeManagement::Stub> MgmtFixture::tls_stub(const CertFiles* client) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = read_file(pki_->ca_file());
  if (client != nullptr) {
    ssl.pem_cert_chain = read_file(client->cert);
    ssl.pem_private_key = read_file(client->key);
  }
  // A fresh channel per stub: gRPC would otherwise share one TLS connection (one identity) between stubs.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return v1::EdgeManagement::NewStub(grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(server_->tcp_port()), grpc::SslCredentials(ssl), args));
}

void set_deadline(grpc::ClientContext& ctx, std::chrono::seconds s) {
  ctx.set_deadline(std::chrono::system_clock::now() + s);
}

}  // namespace edge::test
