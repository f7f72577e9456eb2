// WatchEvents stream caps and the audit record of refused calls, over the real server and real gRPC.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../../../mgmt/src/service.h"
#include "mgmt_fixture.h"

namespace edge::test {
namespace {
namespace v1 = mgmt::v1;
using ::testing::HasSubstr;

struct Watch {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::Event>> reader;
};

// Opens a stream and waits for its headers (sent once the server holds a slot) or its refusal.
std::unique_ptr<Watch> open_watch(v1::EdgeManagement::Stub& stub) {
  auto w = std::make_unique<Watch>();
  set_deadline(w->ctx, std::chrono::seconds(30));
  w->reader = stub.WatchEvents(&w->ctx, v1::WatchEventsRequest());
  w->reader->WaitForInitialMetadata();
  return w;
}

grpc::Status close_watch(Watch& w) {
  w.ctx.TryCancel();
  v1::Event ev;
  while (w.reader->Read(&ev)) {
  }
  return w.reader->Finish();
}

// Opens a stream until one is served, which it then cancels: CANCELLED once served; the last
// refusal when none was. The server frees a closed stream's slot when its handler returns,
// which follows the cancel, so this retries (bounded by count, not by time).
grpc::Status open_once_a_slot_frees(v1::EdgeManagement::Stub& stub) {
  grpc::Status st;
  v1::Event ev;
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto w = open_watch(stub);
    // A served stream stays open: cancel it ourselves and see CANCELLED; a refused one ends first.
    w->ctx.TryCancel();
    while (w->reader->Read(&ev)) {
    }
    st = w->reader->Finish();
    if (st.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return st;
}

class MgmtLimitsTest : public MgmtFixture {};

constexpr int kCap = mgmt::ManagementService::kMaxWatchStreamsPerPeer;

TEST_F(MgmtLimitsTest, WatchEventsIsCappedPerPeerAndAClosedStreamFreesItsSlot) {
  start_server();
  auto watcher = tls_stub(&watcher_);
  std::vector<std::unique_ptr<Watch>> open;
  open.reserve(kCap);
  for (int i = 0; i < kCap; ++i) open.push_back(open_watch(*watcher));

  // One more from the same identity: refused, naming the cap.
  auto extra = open_watch(*watcher);
  v1::Event ev;
  EXPECT_FALSE(extra->reader->Read(&ev));
  grpc::Status st = extra->reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("at most " + std::to_string(kCap) + " per peer"));
  EXPECT_THAT(st.error_message(), HasSubstr(kWatcherActor));

  // Another identity is not affected by the watcher's streams.
  auto other = tls_stub(&ops_);
  auto ops_watch = open_watch(*other);

  // Closing one of the watcher's streams frees its slot: the next one is served.
  EXPECT_EQ(close_watch(*open.back()).error_code(), grpc::StatusCode::CANCELLED);
  open.pop_back();
  const grpc::Status again = open_once_a_slot_frees(*watcher);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::CANCELLED) << again.error_message();

  EXPECT_EQ(close_watch(*ops_watch).error_code(), grpc::StatusCode::CANCELLED);
  for (auto& w : open) close_watch(*w);
}

TEST_F(MgmtLimitsTest, WatchEventsIsCappedInTotalAcrossIdentitiesAndAClosedStreamFreesASlot) {
  constexpr int kTotal = mgmt::ManagementService::kMaxWatchStreamsTotal;
  static_assert(kTotal % kCap == 0);
  // kTotal / kCap viewer identities (the watcher and more) fill the total with their per-peer caps.
  std::vector<CertFiles> viewers{watcher_};
  for (int i = 1; i < kTotal / kCap; ++i) {
    const std::string dns = "viewer-" + std::to_string(i) + ".mgmt.test";
    extra_viewer_dns_.push_back(dns);
    viewers.push_back(pki_->issue("viewer-" + std::to_string(i), {"DNS:" + dns}));
  }
  start_server();
  std::vector<std::unique_ptr<v1::EdgeManagement::Stub>> stubs;
  std::vector<std::unique_ptr<Watch>> open;
  open.reserve(kTotal);
  for (const CertFiles& v : viewers) {
    stubs.push_back(tls_stub(&v));
    for (int i = 0; i < kCap; ++i) open.push_back(open_watch(*stubs.back()));
  }
  ASSERT_EQ(open.size(), static_cast<size_t>(kTotal));

  // An identity with no stream of its own is refused by the total, naming it.
  auto ops = tls_stub(&ops_);
  auto refused = open_watch(*ops);
  v1::Event ev;
  EXPECT_FALSE(refused->reader->Read(&ev));
  grpc::Status st = refused->reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("at most " + std::to_string(kTotal) + " in total"));

  // Closing one stream frees a slot. (Every stream that was let in is live: each ends CANCELLED
  // below, where a refused one would end RESOURCE_EXHAUSTED.)
  EXPECT_EQ(close_watch(*open.front()).error_code(), grpc::StatusCode::CANCELLED);
  open.erase(open.begin());

  // The freed slot serves the identity that was refused.
  const grpc::Status again = open_once_a_slot_frees(*ops);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::CANCELLED) << again.error_message();
  for (auto& w : open) EXPECT_EQ(close_watch(*w).error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(MgmtLimitsTest, ARefusedCallIsWrittenToTheAuditLog) {
  start_server();
  auto watcher = tls_stub(&watcher_);
  grpc::ClientContext ctx;
  set_deadline(ctx);
  v1::SetPropertyRequest req;
  req.set_name("sip.flow_timer");
  req.set_value("60");
  v1::Property p;
  ASSERT_EQ(watcher->SetProperty(&ctx, req, &p).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // A certificate that names nobody (a CN and no URI/DNS subjectAltName, CN
  // fallback off) reaches the service and is refused as UNAUTHENTICATED.
  // (No certificate at all no longer gets that far: the handshake fails.)
  grpc::ClientContext ctx2;
  set_deadline(ctx2);
  v1::Status s;
  ASSERT_EQ(tls_stub(&cn_only_)->GetStatus(&ctx2, v1::GetStatusRequest(), &s).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  std::ifstream in(state_dir() / "audit.log");
  ASSERT_TRUE(in.good());
  std::string line;
  std::string denied;
  std::string unauth;
  while (std::getline(in, line)) {
    if (line.find("\"action\":\"SetProperty\"") != std::string::npos) denied = line;
    if (line.find("\"action\":\"GetStatus\"") != std::string::npos) unauth = line;
  }
  EXPECT_THAT(denied, HasSubstr("\"actor\":\"" + std::string(kWatcherActor) + "\""));
  EXPECT_THAT(denied, HasSubstr("\"detail\":\"peer=ipv4:127.0.0.1:"));
  EXPECT_THAT(denied,
              HasSubstr("\"result\":\"refused: PERMISSION_DENIED: role viewer may not call SetProperty"));
  EXPECT_THAT(unauth,
              HasSubstr("\"result\":\"refused: UNAUTHENTICATED: client certificate has no URI or DNS "
                        "subjectAltName (its CN 'legacy-ops' counts only with mgmt.tls.cn_fallback)\""));
}

}  // namespace
}  // namespace edge::test
