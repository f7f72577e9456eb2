// The cell calls of the management API (issue 15): operator role only, bad arguments answered with a
// reason, local changes of the cell's key set refused. The agent runs on a real SoftHSM token behind
// the real MgmtServer (mutual TLS); no etcd is needed for what is checked here: every call below is
// refused before the cell would talk to one, which the answers say.
#include <grpcpp/grpcpp.h>

#include "edge/test/sip/process.h"
#include "mgmt_fixture.h"

namespace edge::test {
namespace {
namespace v1 = mgmt::v1;
using ::testing::HasSubstr;

class CellApiTest : public MgmtFixture {};

TEST_F(CellApiTest, ViewerMayCallNoneOfTheCellCalls) {
  start_server();
  auto watcher = tls_stub(&watcher_);
  std::vector<std::pair<const char*, grpc::Status>> calls;
  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellCreateRequest r;
    r.set_name("c1");
    r.set_etcd_endpoints("http://127.0.0.1:2379");
    v1::CellStatusResponse resp;
    calls.emplace_back("CellCreate", watcher->CellCreate(&ctx, r, &resp));
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellJoinRequest r;
    r.set_name("c1");
    r.set_etcd_endpoints("http://127.0.0.1:2379");
    v1::CellJoinResponse resp;
    calls.emplace_back("CellJoin", watcher->CellJoin(&ctx, r, &resp));
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellApproveRequest r;
    r.set_member("b");
    r.set_fingerprint("sha256:" + std::string(64, '0'));
    v1::CellStatusResponse resp;
    calls.emplace_back("CellApprove", watcher->CellApprove(&ctx, r, &resp));
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellRotateResponse resp;
    calls.emplace_back("CellRotate", watcher->CellRotate(&ctx, v1::CellRotateRequest(), &resp));
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellRemoveRequest r;
    r.set_member("b");
    v1::CellStatusResponse resp;
    calls.emplace_back("CellRemove", watcher->CellRemove(&ctx, r, &resp));
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellStatusResponse resp;
    calls.emplace_back("CellLeave", watcher->CellLeave(&ctx, v1::CellLeaveRequest(), &resp));
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellStatusResponse resp;
    calls.emplace_back("CellStatus", watcher->CellStatus(&ctx, v1::CellStatusRequest(), &resp));
  }
  const std::string log = log_.text();
  for (const auto& [rpc, st] : calls) {
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << rpc << ": " << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr(std::string("may not call ") + rpc)) << rpc;
    EXPECT_THAT(log, HasSubstr(std::string("rpc=") + rpc + " code=PERMISSION_DENIED")) << rpc;
  }
  // Refused before the agent saw them: no cell property was staged or applied.
  grpc::ClientContext ctx;
  set_deadline(ctx);
  v1::GetConfigResponse cfg;
  ASSERT_TRUE(watcher->GetConfig(&ctx, v1::GetConfigRequest(), &cfg).ok());
  EXPECT_EQ(cfg.committed().cell().name(), "");
  EXPECT_EQ(cfg.candidate().cell().name(), "");
}

TEST_F(CellApiTest, BadArgumentsGetAnApiErrorWithTheReason) {
  start_server();
  auto ops = tls_stub(&ops_);
  auto create = [&](const std::string& name, const std::string& endpoints, const std::string& member = "") {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellCreateRequest r;
    r.set_name(name);
    r.set_etcd_endpoints(endpoints);
    r.set_member_id(member);
    v1::CellStatusResponse resp;
    return ops->CellCreate(&ctx, r, &resp);
  };
  grpc::Status st = create("", "http://127.0.0.1:2379");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("the cell needs a name"));

  st = create("bad name", "http://127.0.0.1:2379");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("cell.name: invalid cell name 'bad name'"));

  st = create("c1", "");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("--etcd"));

  st = create("c1", "127.0.0.1:2379");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("is not an http:// or https:// URL"));

  st = create("c1", "http://127.0.0.1:2379,https://127.0.0.1:2380");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("the same scheme"));

  st = create("c1", "http://127.0.0.1:99999");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("out of range"));

  st = create("c1", "http://127.0.0.1:2379", "no/slash");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("cell.member_id: invalid member id 'no/slash'"));

  // https without the CA that verifies etcd: refused before anything is applied.
  st = create("c1", "https://127.0.0.1:2379", "a");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("cell.etcd_ca_file"));

  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellApproveRequest r;
    r.set_member("b");
    r.set_fingerprint("sha256:abc");
    v1::CellStatusResponse resp;
    st = ops->CellApprove(&ctx, r, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(st.error_message(), HasSubstr("expected sha256:<64 hex digits>"));
  }
  {
    // Not in a cell: the acts that need one say so.
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellRotateResponse resp;
    st = ops->CellRotate(&ctx, v1::CellRotateRequest(), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(st.error_message(), HasSubstr("not a member of a cell"));
  }
  {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::CellStatusResponse resp;
    st = ops->CellStatus(&ctx, v1::CellStatusRequest(), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(st.error_message(), HasSubstr("not a member of a cell"));
  }

  // Nothing of it was applied, and every refusal is in the audit log.
  grpc::ClientContext ctx;
  set_deadline(ctx);
  v1::GetConfigResponse cfg;
  ASSERT_TRUE(ops->GetConfig(&ctx, v1::GetConfigRequest(), &cfg).ok());
  EXPECT_EQ(cfg.committed().cell().name(), "");
  EXPECT_TRUE(cfg.committed().cell().etcd_endpoints().empty());
  EXPECT_TRUE(cfg.staged().empty());
  const std::string audit = read_file(state_dir() / "audit.log");
  EXPECT_THAT(audit, HasSubstr("cell_create"));
  EXPECT_THAT(audit, HasSubstr("refused: cell.name: invalid cell name"));
  EXPECT_THAT(audit, HasSubstr("cell_approve"));
}

// The cell's properties through the ordinary property calls: validated, restart class none.
TEST_F(CellApiTest, CellPropertiesAreValidatedAndRestartNothing) {
  start_server();
  auto ops = tls_stub(&ops_);
  auto set = [&](const std::string& name, const std::string& value, v1::Property* out = nullptr) {
    grpc::ClientContext ctx;
    set_deadline(ctx);
    v1::SetPropertyRequest r;
    r.set_name(name);
    r.set_value(value);
    v1::Property p;
    auto st = ops->SetProperty(&ctx, r, &p);
    if (out) *out = p;
    return st;
  };
  v1::Property p;
  ASSERT_TRUE(set("cell.lease_ttl_s", "5", &p).ok());
  EXPECT_EQ(p.restart(), v1::RESTART_NONE);
  EXPECT_EQ(p.staged_value(), "5");
  ASSERT_TRUE(set("cell.etcd_timeout_ms", "500", &p).ok());
  EXPECT_EQ(p.staged_value(), "500");
  ASSERT_TRUE(set("cell.poll_ms", "250", &p).ok());
  EXPECT_EQ(p.default_value(), "1000");
  EXPECT_EQ(set("cell.etcd_timeout_ms", "99").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(set("cell.poll_ms", "60001").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status st = set("cell.retire_after_s", "59");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("cell.retire_after_s: 59 is out of range 60.."));
  st = set("cell.etcd_endpoints", "http://[::1:2379");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(set("cell.etcd_endpoints", "http://127.0.0.1:2379, http://[::1]:2379", &p).ok());
  EXPECT_EQ(p.staged_value(), "http://127.0.0.1:2379,http://[::1]:2379");
  grpc::ClientContext ctx;
  set_deadline(ctx);
  v1::Property so;
  v1::GetPropertyRequest g;
  g.set_name("cell.so_pin_file");
  ASSERT_TRUE(ops->GetProperty(&ctx, g, &so).ok());
  EXPECT_EQ(so.default_value(), "hsm/so-pin");
}

}  // namespace
}  // namespace edge::test
