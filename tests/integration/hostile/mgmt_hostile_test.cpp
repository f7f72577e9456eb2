// Issue 8 "Management": the gRPC API on edged's Unix socket given bytes that are no protobuf, fields of
// the wrong wire type, a request over the 4 MiB limit, and concurrent conflicting applies from real
// edgectl processes. (Unauthenticated and wrong-role clients: tests/integration/mgmt.)
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>

#include <edge/mgmt/v1/agent.pb.h>

#include <future>
#include <thread>

#include "hostile_fixture.h"

namespace edge::test::hostile {
namespace {

namespace v1 = edge::mgmt::v1;

class MgmtInput : public HostileTest {
 protected:
  // One unary call of `method` with `bytes` as the serialized request; the status the server gave.
  grpc::Status call_raw(const std::string& method, const std::string& bytes, std::string* reply = nullptr) {
    auto channel = grpc::CreateChannel("unix:" + (edge_->state_dir() / "mgmt.sock").string(),
                                       grpc::InsecureChannelCredentials());
    grpc::GenericStub stub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status s) { done.set_value(std::move(s)); });
    grpc::Status st = done.get_future().get();
    if (reply && st.ok()) {
      std::vector<grpc::Slice> slices;
      (void)response.Dump(&slices);
      reply->clear();
      for (const auto& s : slices) reply->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    return st;
  }
  static constexpr const char* kStatus = "/edge.mgmt.v1.EdgeManagement/GetStatus";
  static constexpr const char* kSetProperty = "/edge.mgmt.v1.EdgeManagement/SetProperty";

  // The agent still answers, and nothing was staged by the bad requests.
  void expect_agent_serves() {
    std::string reply;
    ASSERT_TRUE(call_raw(kStatus, "", &reply).ok());
    v1::Status s;
    ASSERT_TRUE(s.ParseFromString(reply));
    EXPECT_EQ(s.generation(), 1u);
    EXPECT_FALSE(s.staged_changes()) << "a refused request staged a change";
  }
};

TEST_F(MgmtInput, BytesThatAreNoProtobufAreRefused) {
  const std::string cases[] = {
      std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11),  // a varint key that never ends
      std::string("\x0a\xff\xff\xff\x0f", 5) + "abc",                 // a length far beyond the bytes
      std::string("\x0f", 1),                                         // wire type 7 does not exist
      std::string(1000, '\0'),                                        // field number 0
  };
  for (const std::string& bytes : cases) {
    const grpc::Status st = call_raw(kSetProperty, bytes);
    EXPECT_FALSE(st.ok()) << "garbage was accepted as a SetProperty request";
    EXPECT_NE(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  }
  const grpc::Status unknown = call_raw("/edge.mgmt.v1.EdgeManagement/NoSuchMethod", "x");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  expect_agent_serves();
  expect_unharmed();
}

// Fields of the wrong wire type: name (1, string) sent as a varint, value (2, string) as a fixed64.
// A parser must refuse them or drop them as unknown; either way nothing is staged.
TEST_F(MgmtInput, FieldsOfTheWrongTypeStageNothing) {
  const std::string cases[] = {
      std::string("\x08\x2a", 2),                                                // name as varint 42
      std::string("\x0a\x0esip.flow_timer\x11", 17) + std::string(8, '\x01'),   // value as fixed64
      std::string("\x0a\x0esip.flow_timer\x12\x04\xff\xfe\xfd\xfc", 22),       // value not UTF-8
  };
  for (const std::string& bytes : cases) {
    const grpc::Status st = call_raw(kSetProperty, bytes);
    EXPECT_FALSE(st.ok()) << "a SetProperty with a mistyped field succeeded";
  }
  expect_agent_serves();
  expect_unharmed();
}

// Over the 4 MiB limit (mgmt/src/server.cpp kMaxRequestBytes): RESOURCE_EXHAUSTED, the agent carries on.
TEST_F(MgmtInput, OversizedRequestIsResourceExhausted) {
  v1::SetPropertyRequest big;
  big.set_name("sip.flow_timer");
  big.set_value(std::string(5 * 1024 * 1024, '7'));
  const grpc::Status st = call_raw(kSetProperty, big.SerializeAsString());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  // Just under the limit: parsed, and refused on its merits (not a number).
  big.set_value(std::string(3 * 1024 * 1024, '7'));
  const grpc::Status under = call_raw(kSetProperty, big.SerializeAsString());
  EXPECT_NE(under.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << under.error_message();
  EXPECT_FALSE(under.ok());
  expect_agent_serves();
  expect_unharmed();
}

// Concurrent conflicting applies from real edgectl processes, all with --expect-generation 1: exactly
// one commits generation 2; the others fail (exit 3) and change nothing; flows survive.
TEST_F(MgmtInput, ConcurrentConflictingAppliesCommitExactlyOne) {
  std::string out;
  ASSERT_EQ(edge_->edgectl({"property", "set", "sip.flow_timer", "41"}, &out), 0) << out;
  constexpr int kRacers = 4;
  std::vector<std::unique_ptr<ChildProcess>> racers;
  for (int i = 0; i < kRacers; ++i) {
    ProcessOptions p;
    p.program = edgectl_program();
    p.args = {"--socket", (edge_->state_dir() / "mgmt.sock").string(), "apply", "--expect-generation", "1"};
    p.log_file = edge_->state_dir() / ("racer-" + std::to_string(i) + ".log");
    racers.push_back(std::make_unique<ChildProcess>(p));
  }
  int committed = 0;
  std::string logs;
  for (auto& r : racers) {
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (r->running() && Clock::now() < deadline) std::this_thread::sleep_for(Millis(10));
    const int rc = r->stop(Millis(500));
    logs += "exit " + std::to_string(rc) + ": " + r->log() + "\n";
    if (rc == 0) {
      ++committed;
    } else {
      EXPECT_EQ(rc, 3) << r->log();
    }
  }
  EXPECT_EQ(committed, 1) << logs;
  std::string reply;
  ASSERT_TRUE(call_raw(kStatus, "", &reply).ok());
  v1::Status s;
  ASSERT_TRUE(s.ParseFromString(reply));
  EXPECT_EQ(s.generation(), 2u) << logs;
  EXPECT_EQ(s.front_end().state(), "running");
  // A second round without --expect-generation: every apply commits or is refused, never half.
  ASSERT_EQ(edge_->edgectl({"property", "set", "sip.flow_timer", "42"}, &out), 0) << out;
  std::vector<std::future<int>> plain;
  for (int i = 0; i < kRacers; ++i) {
    plain.push_back(std::async(std::launch::async, [this, i] {
      ProcessOptions p;
      p.program = edgectl_program();
      p.args = {"--socket", (edge_->state_dir() / "mgmt.sock").string(), "apply"};
      p.log_file = edge_->state_dir() / ("plain-" + std::to_string(i) + ".log");
      ChildProcess c(p);
      const auto deadline = Clock::now() + std::chrono::seconds(30);
      while (c.running() && Clock::now() < deadline) std::this_thread::sleep_for(Millis(10));
      return c.stop(Millis(500));
    }));
  }
  int ok = 0;
  for (auto& f : plain) {
    const int rc = f.get();
    EXPECT_TRUE(rc == 0 || rc == 3) << rc;
    ok += rc == 0;
  }
  EXPECT_GE(ok, 1);
  ASSERT_TRUE(call_raw(kStatus, "", &reply).ok());
  ASSERT_TRUE(s.ParseFromString(reply));
  EXPECT_GE(s.generation(), 3u);  // an apply with nothing left staged may commit nothing
  EXPECT_LE(s.generation(), 2u + static_cast<unsigned>(ok));
  EXPECT_FALSE(s.staged_changes());
  EXPECT_EQ(bystander_->register_with().status(), 200);
  expect_unharmed();
}

}  // namespace
}  // namespace edge::test::hostile
