// MgmtServer over a real Unix socket and real mutual TLS: roles, refusals, error codes, events, shutdown.
#include <edge/mgmt/server.h>
#include <grp.h>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <thread>

#include "mgmt_fixture.h"

namespace edge::test {
namespace {
namespace v1 = mgmt::v1;
using ::testing::HasSubstr;
using ::testing::Not;

v1::Status get_status(v1::EdgeManagement::Stub& stub, grpc::Status* st) {
  grpc::ClientContext ctx;
  set_deadline(ctx);
  v1::Status s;
  *st = stub.GetStatus(&ctx, v1::GetStatusRequest(), &s);
  return s;
}

grpc::Status set_property(v1::EdgeManagement::Stub& stub, const std::string& name, const std::string& value) {
  grpc::ClientContext ctx;
  set_deadline(ctx);
  v1::SetPropertyRequest req;
  req.set_name(name);
  req.set_value(value);
  v1::Property p;
  return stub.SetProperty(&ctx, req, &p);
}

grpc::Status apply(v1::EdgeManagement::Stub& stub, v1::ApplyResponse* resp) {
  grpc::ClientContext ctx;
  set_deadline(ctx, std::chrono::seconds(30));
  return stub.Apply(&ctx, v1::ApplyRequest(), resp);
}

class MgmtServerTest : public MgmtFixture {};

TEST(ServerOptionsTest, RelativePathsLandInTheStateDirAndModeDefaults) {
  v1::MgmtSettings m;
  m.set_unix_socket("run/mgmt.sock");
  m.set_operator_gid(1234);
  m.set_tls_certificate("tls/server.pem");
  m.set_tls_private_key("/etc/edge/server.key");
  m.set_client_ca_file("tls/clients-ca.pem");
  mgmt::ServerOptions o = mgmt::server_options(m, "/var/lib/edge");
  EXPECT_EQ(o.unix_socket, "/var/lib/edge/run/mgmt.sock");
  EXPECT_EQ(o.unix_mode, 0660u);
  EXPECT_EQ(o.operator_gid, 1234);
  EXPECT_EQ(o.tls_certificate_file, "/var/lib/edge/tls/server.pem");
  EXPECT_EQ(o.tls_private_key_file, "/etc/edge/server.key");
  EXPECT_EQ(o.client_ca_file, "/var/lib/edge/tls/clients-ca.pem");
  EXPECT_TRUE(o.tcp_listen.empty());
}

TEST_F(MgmtServerTest, UnixSocketServesStatusWithTheConfiguredMode) {
  start_server();
  struct stat st {};
  ASSERT_EQ(::stat(server_->unix_socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  grpc::Status rpc;
  v1::Status s = get_status(*unix_stub(), &rpc);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  EXPECT_EQ(s.version(), "9.9.9-test");
  EXPECT_EQ(s.generation(), 1u);
  EXPECT_GT(server_->tcp_port(), 0);
}

TEST_F(MgmtServerTest, StaleSocketFileIsReplaced) {
  start_server();
  server_.reset();
  // A socket file left behind (as after a crash), then a new server on the same path.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, (state_dir() / "mgmt.sock").c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  start_server();
  grpc::Status rpc;
  get_status(*unix_stub(), &rpc);
  EXPECT_TRUE(rpc.ok()) << rpc.error_message();
}

TEST_F(MgmtServerTest, SocketOfARunningServerIsNotTakenOver) {
  start_server();
  mgmt::ServerOptions second;
  second.unix_socket = server_->unix_socket();
  EXPECT_THROW(mgmt::MgmtServer(*agent_, second), mgmt::MgmtError);
  grpc::Status rpc;
  get_status(*unix_stub(), &rpc);
  EXPECT_TRUE(rpc.ok()) << rpc.error_message();
}

TEST_F(MgmtServerTest, OperatorCertificateRotatesAndApplies) {
  start_server();
  auto ops = tls_stub(&ops_);
  grpc::ClientContext ctx;
  set_deadline(ctx);
  v1::RotateKeySetRequest rot;
  rot.set_name(kKeySet);
  v1::KeySetChange change;
  grpc::Status rpc = ops->RotateKeySet(&ctx, rot, &change);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  EXPECT_TRUE(change.staged());

  v1::ApplyResponse applied;
  rpc = apply(*ops, &applied);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  EXPECT_EQ(applied.generation(), 2u);
  EXPECT_EQ(front_end_.current().sip().flow_token().key_set(), kKeySet);

  grpc::ClientContext gctx;
  set_deadline(gctx);
  v1::ListGenerationsResponse gens;
  ASSERT_TRUE(ops->ListGenerations(&gctx, v1::ListGenerationsRequest(), &gens).ok());
  ASSERT_FALSE(gens.generations().empty());
  EXPECT_EQ(gens.generations().rbegin()->actor(), kOpsActor);
}

TEST_F(MgmtServerTest, ViewerCertificateReadsButMayNotChange) {
  start_server();
  auto watcher = tls_stub(&watcher_);
  grpc::Status rpc;
  get_status(*watcher, &rpc);
  EXPECT_TRUE(rpc.ok()) << rpc.error_message();
  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::ListPropertiesResponse props;
    EXPECT_TRUE(watcher->ListProperties(&ctx, v1::ListPropertiesRequest(), &props).ok());
    EXPECT_FALSE(props.properties().empty());
  }
  rpc = set_property(*watcher, "sip.flow_timer", "60");
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::ApplyResponse applied;
  EXPECT_EQ(apply(*watcher, &applied).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  std::string log = log_.text();
  EXPECT_THAT(log, HasSubstr("event=mgmt_refused"));
  EXPECT_THAT(log, HasSubstr("actor=" + std::string(kWatcherActor) + " rpc=SetProperty"));
  EXPECT_THAT(log, HasSubstr("rpc=Apply code=PERMISSION_DENIED"));
  // Refused before the agent saw it: nothing was staged.
  grpc::ClientContext ctx;
  set_deadline(ctx);
  v1::GetConfigResponse cfg;
  ASSERT_TRUE(watcher->GetConfig(&ctx, v1::GetConfigRequest(), &cfg).ok());
  EXPECT_TRUE(cfg.staged().empty());
}

TEST_F(MgmtServerTest, CertificateWithAnUnlistedSanIsDenied) {
  start_server();
  grpc::Status rpc;
  get_status(*tls_stub(&stranger_), &rpc);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(rpc.error_message(), HasSubstr("uri:spiffe://edge.test/mgmt/stranger"));
  EXPECT_THAT(log_.text(), HasSubstr("rpc=GetStatus code=PERMISSION_DENIED reason=\"client certificate "
                                     "(uri:spiffe://edge.test/mgmt/stranger,cn:stranger) matches no entry"));
}

// The handshake requires a client certificate: a client without one never
// reaches a handler (before, it got UNAUTHENTICATED from the service).
TEST_F(MgmtServerTest, TlsWithoutClientCertificateFailsTheHandshake) {
  start_server();
  grpc::Status rpc;
  get_status(*tls_stub(nullptr), &rpc);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::UNAVAILABLE) << rpc.error_message();
  EXPECT_THAT(log_.text(), Not(HasSubstr("event=mgmt_refused")));
}

TEST_F(MgmtServerTest, CertificateFromAnotherCaFailsTheHandshake) {
  start_server();
  grpc::Status rpc;
  get_status(*tls_stub(&foreign_ops_), &rpc);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::UNAVAILABLE) << rpc.error_message();
  EXPECT_THAT(log_.text(), Not(HasSubstr("event=mgmt_refused")));
}

TEST_F(MgmtServerTest, OperatorSanMayChange) {
  start_server();
  auto ops = tls_stub(&ops_);
  EXPECT_TRUE(set_property(*ops, "sip.flow_timer", "60").ok());
}

TEST_F(MgmtServerTest, RevokedCertificateFailsTheHandshakeAndOthersStillWork) {
  crl_file_ = dir_.path() / "pki" / "clients.crl";
  pki_->write_crl(crl_file_, {revoked_ops_});
  start_server();
  grpc::Status rpc;
  get_status(*tls_stub(&revoked_ops_), &rpc);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::UNAVAILABLE) << rpc.error_message();
  EXPECT_FALSE(set_property(*tls_stub(&revoked_ops_), "sip.flow_timer", "60").ok());
  // Same CA, same URI SAN, not revoked: served.
  EXPECT_TRUE(set_property(*tls_stub(&ops_), "sip.flow_timer", "61").ok());
  get_status(*tls_stub(&watcher_), &rpc);
  EXPECT_TRUE(rpc.ok()) << rpc.error_message();
}

TEST_F(MgmtServerTest, WithoutTheCrlTheSameCertificateIsServed) {
  // The control for the test above: revoked_ops_ is a good certificate until the CRL names it.
  start_server();
  EXPECT_TRUE(set_property(*tls_stub(&revoked_ops_), "sip.flow_timer", "60").ok());
}

TEST_F(MgmtServerTest, CrlFromAnotherCaOrNotACrlIsRefusedAtStart) {
  crl_file_ = dir_.path() / "other-pki" / "other.crl";
  other_pki_->write_crl(crl_file_, {});
  try {
    start_server();
    ADD_FAILURE() << "a CRL of another CA was accepted";
  } catch (const mgmt::MgmtError& e) {
    EXPECT_THAT(e.what(), HasSubstr("not signed by a certificate of the client CA"));
  }
  crl_file_ = server_cert_.cert;  // a certificate, no CRL
  try {
    start_server();
    ADD_FAILURE() << "a file without a CRL was accepted";
  } catch (const mgmt::MgmtError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no PEM CRL"));
  }
}

TEST_F(MgmtServerTest, CnOnlyCertificateIsUnauthenticatedWithoutTheFallback) {
  start_server();
  grpc::Status rpc;
  get_status(*tls_stub(&cn_only_), &rpc);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::UNAUTHENTICATED) << rpc.error_message();
  EXPECT_THAT(rpc.error_message(), HasSubstr("mgmt.tls.cn_fallback"));
  EXPECT_EQ(set_property(*tls_stub(&cn_only_), "sip.flow_timer", "60").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(MgmtServerTest, CnOnlyCertificateGetsItsRoleWithTheFallback) {
  cn_fallback_ = true;
  start_server();
  EXPECT_TRUE(set_property(*tls_stub(&cn_only_), "sip.flow_timer", "60").ok());
  EXPECT_THAT(read_file(state_dir() / "audit.log"), HasSubstr("\"actor\":\"cert:cn:legacy-ops\""));
}

// Connects to the server as uid 65534 (nobody) with primary group `gid` and
// supplementary group `extra_gid` (0: none). The child process only switches
// user, connects and passes the connected socket back over SCM_RIGHTS:
// SO_PEERCRED records who connected, so the calls this process then makes on
// that socket are the child's as far as the server can tell.
int connect_as_nobody(const std::filesystem::path& socket_path, gid_t gid = 65534, gid_t extra_gid = 0) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and _exit (the parent has gRPC threads).
    ::close(pair[0]);
    if (::setgroups(extra_gid == 0 ? 0 : 1, &extra_gid) != 0 || ::setgid(gid) != 0 || ::setuid(65534) != 0)
      ::_exit(10);
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) ::_exit(11);
    char byte = 'x';
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    ::_exit(::sendmsg(pair[1], &msg, 0) == 1 ? 0 : 12);
  }
  ::close(pair[1]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ::close(pair[0]);
    ADD_FAILURE() << "child as nobody failed, exit " << WEXITSTATUS(status);
    return -1;
  }
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  int fd = -1;
  if (::recvmsg(pair[0], &msg, 0) == 1) {
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    if (cm != nullptr && cm->cmsg_type == SCM_RIGHTS) std::memcpy(&fd, CMSG_DATA(cm), sizeof(int));
  }
  ::close(pair[0]);
  return fd;
}

TEST_F(MgmtServerTest, UnixPeerWithAnotherUidIsAViewer) {
  ASSERT_EQ(::geteuid(), 0u) << "this test switches a child process to uid 65534 and needs root";
  // nobody must reach the socket: traversable directories and a mode that lets others connect.
  std::filesystem::permissions(dir_.path(), std::filesystem::perms(0711));
  std::filesystem::permissions(state_dir(), std::filesystem::perms(0711));
  start_server(0666);

  int fd = connect_as_nobody(server_->unix_socket());
  ASSERT_GE(fd, 0);
  auto nobody = v1::EdgeManagement::NewStub(grpc::CreateInsecureChannelFromFd("nobody", fd));
  grpc::Status rpc;
  get_status(*nobody, &rpc);
  EXPECT_TRUE(rpc.ok()) << rpc.error_message();
  rpc = set_property(*nobody, "sip.flow_timer", "60");
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(log_.text(), HasSubstr("peer=unix:uid:65534,gid:65534,pid:"));
  EXPECT_THAT(log_.text(), HasSubstr("actor=uid:65534 rpc=SetProperty code=PERMISSION_DENIED"));

  // The same call from this process (uid 0) is an operator's.
  EXPECT_TRUE(set_property(*unix_stub(), "sip.flow_timer", "60").ok());
}

TEST_F(MgmtServerTest, UnixPeerInTheOperatorGroupIsAnOperator) {
  ASSERT_EQ(::geteuid(), 0u) << "this test switches a child process to uid 65534 and needs root";
  std::filesystem::permissions(dir_.path(), std::filesystem::perms(0711));
  std::filesystem::permissions(state_dir(), std::filesystem::perms(0711));
  constexpr gid_t kOperators = 4242;
  start_server(0666, kOperators);

  int by_primary = connect_as_nobody(server_->unix_socket(), kOperators);
  ASSERT_GE(by_primary, 0);
  auto primary = v1::EdgeManagement::NewStub(grpc::CreateInsecureChannelFromFd("primary", by_primary));
  grpc::Status rpc = set_property(*primary, "sip.flow_timer", "61");
  EXPECT_TRUE(rpc.ok()) << rpc.error_message();

  int by_supplementary = connect_as_nobody(server_->unix_socket(), 65534, kOperators);
  ASSERT_GE(by_supplementary, 0);
  auto supplementary =
      v1::EdgeManagement::NewStub(grpc::CreateInsecureChannelFromFd("extra", by_supplementary));
  rpc = set_property(*supplementary, "sip.flow_timer", "62");
  EXPECT_TRUE(rpc.ok()) << rpc.error_message();

  int outsider = connect_as_nobody(server_->unix_socket());
  ASSERT_GE(outsider, 0);
  auto viewer = v1::EdgeManagement::NewStub(grpc::CreateInsecureChannelFromFd("outsider", outsider));
  EXPECT_EQ(set_property(*viewer, "sip.flow_timer", "63").error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(MgmtServerTest, WatchEventsSeesAnApply) {
  start_server();
  auto stub = unix_stub();
  grpc::ClientContext wctx;
  set_deadline(wctx, std::chrono::seconds(30));
  auto reader = stub->WatchEvents(&wctx, v1::WatchEventsRequest());
  reader->WaitForInitialMetadata();  // subscribed from here on

  grpc::ClientContext rctx;
  set_deadline(rctx);
  v1::RotateKeySetRequest rot;
  rot.set_name(kKeySet);
  v1::KeySetChange change;
  ASSERT_TRUE(stub->RotateKeySet(&rctx, rot, &change).ok());
  v1::ApplyResponse applied;
  grpc::Status rpc = apply(*stub, &applied);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();

  v1::Event ev;
  bool seen_apply = false;
  while (!seen_apply && reader->Read(&ev)) seen_apply = ev.kind() == v1::Event::APPLY;
  ASSERT_TRUE(seen_apply);
  EXPECT_TRUE(ev.ok());
  EXPECT_EQ(ev.generation(), applied.generation());
  EXPECT_EQ(ev.actor(), "uid:0");
  wctx.TryCancel();
  reader->Finish();
}

TEST_F(MgmtServerTest, ShutdownEndsEventStreamsAndRemovesTheSocket) {
  start_server();
  auto stub = unix_stub();
  grpc::ClientContext wctx;
  set_deadline(wctx, std::chrono::seconds(30));
  auto reader = stub->WatchEvents(&wctx, v1::WatchEventsRequest());
  reader->WaitForInitialMetadata();
  auto t0 = std::chrono::steady_clock::now();
  server_->shutdown();
  v1::Event ev;
  while (reader->Read(&ev)) {
  }
  reader->Finish();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "mgmt.sock"));
}

TEST_F(MgmtServerTest, AgentRefusalsMapToTheirStatusCodes) {
  start_server();
  auto stub = unix_stub();
  grpc::Status rpc = set_property(*stub, "sip.no_such_property", "1");
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(rpc.error_message(), HasSubstr("sip.no_such_property"));

  v1::ApplyResponse applied;
  EXPECT_EQ(apply(*stub, &applied).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  grpc::ClientContext gctx;
  set_deadline(gctx);
  v1::GetKeySetRequest get;
  get.set_name("missing");
  v1::KeySet ks;
  EXPECT_EQ(stub->GetKeySet(&gctx, get, &ks).error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext cctx;
  set_deadline(cctx);
  v1::CreateKeySetRequest create;
  create.set_name(kKeySet);
  v1::KeySetChange change;
  EXPECT_EQ(stub->CreateKeySet(&cctx, create, &change).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

}  // namespace
}  // namespace edge::test
