// Just enough transaction memory: UDP retransmissions absorbed and answered again (forwarded again across a
// core link bounce), retransmission toward UDP clients, 408 once, 430 once for a flow lost under a request,
// bounded.
#include "proxy_test_support.h"

#include <edge/net/proxy/via_branch.h>

namespace edge::net::testing {
namespace {

using namespace std::chrono_literals;
using sip::HeaderId;

std::string alice_request(std::string_view method, std::string_view branch, std::string_view route = {},
                          std::string_view to_tag = {}) {
  return crlf(
      fill("{m} sip:bob@example.test SIP/2.0\n"
           "Via: SIP/2.0/UDP 10.1.1.7:5062;branch={br};rport\n"
           "{route}"
           "Max-Forwards: 70\n"
           "From: <sip:alice@example.test>;tag=a1\n"
           "To: <sip:bob@example.test>{totag}\n"
           "Call-ID: {br}@10.1.1.7\n"
           "CSeq: 1 {m}\n"
           "Contact: <sip:alice@10.1.1.7:5062;ob>\n"
           "Content-Length: 0\n\n",
           {{"m", std::string(method)},
            {"br", std::string(branch)},
            {"route", route.empty() ? "" : "Route: " + std::string(route) + "\n"},
            {"totag", to_tag.empty() ? "" : ";tag=" + std::string(to_tag)}}));
}

std::string core_to_alice(std::string_view method, std::string_view token) {
  return crlf(
      fill("{m} sip:alice@10.1.1.7:5062;ob SIP/2.0\n"
           "Via: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKcoretx1\n"
           "Route: <sip:{tok}@10.0.0.1:5060;transport=tcp;lr;ob>\n"
           "Max-Forwards: 69\n"
           "From: <sip:dave@example.test>;tag=d1\n"
           "To: <sip:alice@example.test>\n"
           "Call-ID: down-1@10.0.0.2\n"
           "CSeq: 5 {m}\n"
           "Content-Length: 0\n\n",
           {{"m", std::string(method)}, {"tok", std::string(token)}}));
}

class Transactions : public ProxyFixture {};

TEST_F(Transactions, AUdpRetransmissionIsAbsorbedWhenTheCoreIsReliable) {
  const std::string inv = alice_request("INVITE", "z9hG4bKrt1");
  from_client(kAlice, inv);
  ASSERT_TRUE(out_.take().to_core);
  from_client(kAlice, inv);
  from_client(kAlice, inv);
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().retransmissions_absorbed, 2u);
  EXPECT_EQ(proxy_->stats().forwarded_to_core, 1u);
}

TEST_F(Transactions, AfterAProvisionalTheRetransmissionGetsItAgain) {
  const std::string inv = alice_request("INVITE", "z9hG4bKrt2");
  from_client(kAlice, inv);
  Out fwd(out_.take().bytes);
  from_core(answer(fwd.text(), 100));
  const std::string trying = out_.take().bytes;
  from_client(kAlice, inv);
  const FakeNetwork::Sent s = out_.take();
  EXPECT_EQ(s.flow, kAlice);
  EXPECT_EQ(s.bytes, trying);
  EXPECT_EQ(proxy_->stats().responses_replayed, 1u);
}

TEST_F(Transactions, AFinalAnswerFromTheCoreIsReplayedNotForwardedAgain) {
  const std::string msg = alice_request("MESSAGE", "z9hG4bKrt3");
  from_client(kAlice, msg);
  Out fwd(out_.take().bytes);
  from_core(answer(fwd.text(), 202));
  const std::string accepted = out_.take().bytes;
  from_client(kAlice, msg);
  EXPECT_EQ(out_.take().bytes, accepted);
  EXPECT_EQ(proxy_->stats().forwarded_to_core, 1u);
}

TEST_F(Transactions, Our403IsDecidedOnceAndReplayedToRetransmissions) {
  std::string bad = token_of(kBob);
  bad[12] = bad[12] == 'A' ? 'B' : 'A';
  const std::string bye = alice_request("BYE", "z9hG4bKrt4", "<sip:" + bad + "@192.0.2.10:5060;lr>", "b1");
  from_client(kAlice, bye);
  const std::string first = out_.take().bytes;
  EXPECT_EQ(Out(first).status(), 403);
  const auto verifies = oracle_->verifies.load();
  from_client(kAlice, bye);
  EXPECT_EQ(out_.take().bytes, first);  // same bytes, same To tag
  EXPECT_EQ(oracle_->verifies.load(), verifies);
  EXPECT_EQ(proxy_->stats().r403, 1u);
}

TEST_F(Transactions, WithAUdpCoreRetransmissionsGoToTheCore) {
  ProxyConfig cfg = lab_config();
  cfg.core_side = {Transport::udp, "10.0.0.1", 5060};
  make(cfg);
  const std::string inv = alice_request("INVITE", "z9hG4bKrt5");
  from_client(kAlice, inv);
  from_client(kAlice, inv);
  ASSERT_EQ(out_.sent.size(), 2u);
  EXPECT_EQ(out_.sent[0].bytes, out_.sent[1].bytes);  // stateless: the same branch again
}

TEST_F(Transactions, CancelAndAckAreNotRetransmissionsOfTheirInvite) {
  from_client(kAlice, alice_request("INVITE", "z9hG4bKrt6"));
  from_client(kAlice, alice_request("CANCEL", "z9hG4bKrt6"));
  from_client(kAlice, alice_request("ACK", "z9hG4bKrt6", {}, "b1"));
  from_client(kAlice, alice_request("ACK", "z9hG4bKrt6", {}, "b1"));
  EXPECT_EQ(out_.sent.size(), 4u);
  from_client(kAlice, alice_request("CANCEL", "z9hG4bKrt6"));
  EXPECT_EQ(out_.sent.size(), 4u);  // the CANCEL's own retransmission is absorbed
}

TEST_F(Transactions, TowardAUdpClientWeRetransmitAndAnswer408OnceWhenItStaysSilent) {
  from_core(core_to_alice("MESSAGE", token_of(kAlice)));
  const FakeNetwork::Sent first = out_.take();
  ASSERT_EQ(first.flow, kAlice);
  // Timer E: T1, 2*T1, 4*T1, then T2 (4 s) until Timer F (64*T1 = 32 s).
  std::vector<int> at_ms;
  for (int ms = 0; ms <= 33000; ms += 100) {
    proxy_->on_timer(now_ + std::chrono::milliseconds(ms), out_);
    for (const FakeNetwork::Sent& s : out_.sent) {
      if (!s.to_core) {
        EXPECT_EQ(s.bytes, first.bytes);
        at_ms.push_back(ms);
      } else {
        Out r(s.bytes);
        EXPECT_EQ(r.status(), 408);
        EXPECT_EQ(r.via(0).branch, "z9hG4bKcoretx1");  // ours removed
        EXPECT_EQ(r.values(HeaderId::via).size(), 1u);
        at_ms.push_back(-ms);
      }
    }
    out_.sent.clear();
  }
  const std::vector<int> want = {500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500, -32000};
  EXPECT_EQ(at_ms, want);
  EXPECT_EQ(proxy_->stats().r408, 1u);
}

TEST_F(Transactions, AnAnswerFromTheUdpClientStopsRetransmission) {
  from_core(core_to_alice("MESSAGE", token_of(kAlice)));
  Out fwd(out_.take().bytes);
  from_client(kAlice, answer(fwd.text(), 200));
  ASSERT_TRUE(out_.take().to_core);
  for (int s = 0; s <= 40; ++s) proxy_->on_timer(now_ + std::chrono::seconds(s), out_);
  EXPECT_TRUE(out_.sent.empty());
}

TEST_F(Transactions, AnInviteThatGotAProvisionalIsNeitherRetransmittedNorTimedOut) {
  from_core(core_to_alice("INVITE", token_of(kAlice)));
  Out fwd(out_.take().bytes);
  proxy_->on_timer(now_ + 500ms, out_);
  EXPECT_EQ(out_.take().flow, kAlice);
  from_client(kAlice, answer(fwd.text(), 180));
  ASSERT_TRUE(out_.take().to_core);
  for (int s = 1; s <= 40; ++s) proxy_->on_timer(now_ + std::chrono::seconds(s), out_);
  EXPECT_TRUE(out_.sent.empty());
}

// A UDP flow removed (timed out) with a request pending: no more retransmission
// to it, and the core hears 430 at once instead of nothing (or a 408 32 s later).
TEST_F(Transactions, AClosedFlowIsNoLongerRetransmittedToAndTheCoreGets430Once) {
  from_core(core_to_alice("MESSAGE", token_of(kAlice)));
  out_.take();
  out_.close_flow(kAlice);
  proxy_->on_flow_closed(kAlice);
  proxy_->on_timer(now_ + 100ms, out_);
  const FakeNetwork::Sent failed = out_.take();
  ASSERT_TRUE(failed.to_core);
  Out r(failed.bytes);
  EXPECT_EQ(r.status(), 430);
  EXPECT_EQ(r.via(0).branch, "z9hG4bKcoretx1");  // ours removed
  EXPECT_EQ(r.values(HeaderId::via).size(), 1u);
  for (int s = 0; s <= 40; ++s) proxy_->on_timer(now_ + std::chrono::seconds(s), out_);
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().r430, 1u);
  EXPECT_EQ(proxy_->stats().r408, 0u);
}

// RFC 5626 §5.3: the stream flow a request from the core went out on closes
// before the client's final response (the phone's connection dropped): the core
// gets 430 Flow Failed for it, once, and can try the client's other flow.
TEST_F(Transactions, AStreamFlowThatClosesUnderAPendingRequestFromTheCoreGets430Once) {
  for (const char* method : {"INVITE", "MESSAGE"}) {
    SCOPED_TRACE(method);
    make(lab_config());
    std::string req = core_to_alice(method, token_of(kBob));
    from_core(req);
    const FakeNetwork::Sent fwd = out_.take();
    ASSERT_EQ(fwd.flow, kBob);
    for (int ms = 100; ms <= 2000; ms += 100) proxy_->on_timer(now_ + std::chrono::milliseconds(ms), out_);
    EXPECT_TRUE(out_.sent.empty()) << "nothing is retransmitted on a stream";
    out_.close_flow(kBob);
    proxy_->on_flow_closed(kBob);
    proxy_->on_timer(now_ + 2100ms, out_);
    const FakeNetwork::Sent failed = out_.take();
    ASSERT_TRUE(failed.to_core);
    Out r(failed.bytes);
    EXPECT_EQ(r.status(), 430);
    EXPECT_EQ(r.msg().cseq().method, method);
    EXPECT_EQ(r.values(HeaderId::via).size(), 1u);
    for (int s = 3; s <= 200; s += 5) proxy_->on_timer(now_ + std::chrono::seconds(s), out_);
    EXPECT_TRUE(out_.sent.empty());
    EXPECT_EQ(proxy_->stats().r430, 1u);
  }
}

// A ringing phone whose connection drops minutes into the ringing (before the
// core's Timer C): the 430 still comes.
TEST_F(Transactions, ARingingInviteWhoseFlowClosesGets430) {
  from_core(core_to_alice("INVITE", token_of(kBob)));
  Out fwd(out_.take().bytes);
  from_client(kBob, answer(fwd.text(), 180));
  ASSERT_TRUE(out_.take().to_core);
  now_ += 120s;
  proxy_->on_timer(now_, out_);
  EXPECT_TRUE(out_.sent.empty());
  out_.close_flow(kBob);
  proxy_->on_flow_closed(kBob);
  proxy_->on_timer(now_ + 100ms, out_);
  const FakeNetwork::Sent failed = out_.take();
  ASSERT_TRUE(failed.to_core);
  EXPECT_EQ(Out(failed.bytes).status(), 430);
}

// Answered before the close: nothing more to say.
TEST_F(Transactions, AFinalAnswerBeforeTheFlowClosesMeansNo430) {
  from_core(core_to_alice("INVITE", token_of(kBob)));
  Out fwd(out_.take().bytes);
  from_client(kBob, answer(fwd.text(), 486));
  ASSERT_TRUE(out_.take().to_core);
  out_.close_flow(kBob);
  proxy_->on_flow_closed(kBob);
  for (int s = 0; s <= 40; ++s) proxy_->on_timer(now_ + std::chrono::seconds(s), out_);
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().r430, 0u);
}

// The flow closes while the send is under way (posted to its worker, or its
// session closing as we hand it over): the send fails and the close reported
// the flow too; the core gets one 430, not two.
TEST_F(Transactions, AFlowClosingDuringTheSendGetsTheCoreOne430) {
  const std::string token = token_of(kBob);
  out_.send_hook = [this](const FlowKey& f) {
    out_.close_flow(f);
    proxy_->on_flow_closed(f);
    return false;
  };
  from_core(core_to_alice("INVITE", token));
  out_.send_hook = nullptr;
  for (int ms = 100; ms <= 1000; ms += 100) proxy_->on_timer(now_ + std::chrono::milliseconds(ms), out_);
  std::size_t to_core_430 = 0;
  for (const FakeNetwork::Sent& s : out_.sent) to_core_430 += s.to_core && Out(s.bytes).status() == 430;
  EXPECT_EQ(to_core_430, 1u);
  EXPECT_EQ(out_.sent.size(), 1u);
  EXPECT_EQ(proxy_->stats().r430, 1u);
}

// A send that fails at once (the flow gone before the close was reported): 430 at once, once.
TEST_F(Transactions, ASendThatFailsAtOnceIsAnswered430Once) {
  const std::string token = token_of(kBob);
  out_.send_hook = [](const FlowKey&) { return false; };
  from_core(core_to_alice("MESSAGE", token));
  out_.send_hook = nullptr;
  const FakeNetwork::Sent failed = out_.take();
  ASSERT_TRUE(failed.to_core);
  EXPECT_EQ(Out(failed.bytes).status(), 430);
  out_.close_flow(kBob);
  proxy_->on_flow_closed(kBob);
  for (int s = 0; s <= 40; ++s) proxy_->on_timer(now_ + std::chrono::seconds(s), out_);
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().r430, 1u);
}

// A UDP client's retransmission absorbed while the core link was being
// re-established would otherwise be lost without an answer: once the link went
// down (or came back) since the request was forwarded, the retransmission is a
// new try. While down it gets 503 with Retry-After (and that is replayed).
TEST_F(Transactions, ARetransmissionAfterTheCoreLinkWentDownIsAnswered503) {
  const std::string msg = alice_request("MESSAGE", "z9hG4bKbounce1");
  from_client(kAlice, msg);
  ASSERT_TRUE(out_.take().to_core);
  from_client(kAlice, msg);
  EXPECT_TRUE(out_.sent.empty());  // the link is as it was: absorbed
  out_.core_up = false;
  out_.core_epoch = 1;  // the link went down
  from_client(kAlice, msg);
  const FakeNetwork::Sent r = out_.take();
  EXPECT_EQ(r.flow, kAlice);
  Out busy(r.bytes);
  EXPECT_EQ(busy.status(), 503);
  EXPECT_FALSE(busy.header("Retry-After").empty());
  from_client(kAlice, msg);
  EXPECT_EQ(out_.take().bytes, r.bytes) << "the 503 is replayed to the next retransmission";
}

// ... and after the reconnect it goes to the core again (the same bytes: the
// core's own transaction absorbs it should the first have arrived after all).
TEST_F(Transactions, ARetransmissionAfterTheCoreLinkCameBackIsForwardedAgain) {
  const std::string msg = alice_request("MESSAGE", "z9hG4bKbounce2");
  from_client(kAlice, msg);
  const FakeNetwork::Sent first = out_.take();
  ASSERT_TRUE(first.to_core);
  out_.core_epoch = 2;  // down and up again
  from_client(kAlice, msg);
  const FakeNetwork::Sent again = out_.take();
  ASSERT_TRUE(again.to_core);
  EXPECT_EQ(again.bytes, first.bytes);
  from_client(kAlice, msg);
  EXPECT_TRUE(out_.sent.empty()) << "with the link unchanged since, absorbed again";
  EXPECT_EQ(proxy_->stats().forwarded_to_core, 2u);
}

// A request the core answered is replayed, however the link went since.
TEST_F(Transactions, AnAnsweredRetransmissionIsReplayedWhateverTheLinkDid) {
  const std::string msg = alice_request("MESSAGE", "z9hG4bKbounce3");
  from_client(kAlice, msg);
  Out fwd(out_.take().bytes);
  from_core(answer(fwd.text(), 202));
  const std::string accepted = out_.take().bytes;
  out_.core_epoch = 5;
  from_client(kAlice, msg);
  EXPECT_EQ(out_.take().bytes, accepted);
  EXPECT_EQ(proxy_->stats().forwarded_to_core, 1u);
}

TEST_F(Transactions, MemoryIsBoundedAndEntriesExpire) {
  ProxyStateOptions options;
  options.max_transactions = 4;
  make(lab_config(), options);
  for (int i = 0; i < 10; ++i) from_client(kAlice, alice_request("MESSAGE", "z9hG4bKb" + std::to_string(i)));
  EXPECT_EQ(out_.sent.size(), 10u);
  EXPECT_EQ(proxy_->stats().transaction_evictions, 6u);
  out_.sent.clear();
  // The newest is remembered; the oldest was evicted and goes to the core again.
  from_client(kAlice, alice_request("MESSAGE", "z9hG4bKb9"));
  EXPECT_TRUE(out_.sent.empty());
  from_client(kAlice, alice_request("MESSAGE", "z9hG4bKb0"));
  EXPECT_EQ(out_.sent.size(), 1u);
  out_.sent.clear();
  // After 64*T1 nothing is remembered.
  now_ += 33s;
  proxy_->on_timer(now_, out_);
  from_client(kAlice, alice_request("MESSAGE", "z9hG4bKb9"));
  EXPECT_EQ(out_.sent.size(), 1u);
}

// A controlled restart replaces the rules (EdgeProxy) and keeps the ProxyState:
// transactions begun before it end as if nothing had happened.
class AcrossARestart : public ProxyFixture {
 protected:
  // What an apply of sip.flow_timer does: new rules over the same state. The
  // replaced rules stay alive and their timers keep being driven, as a front
  // end that kept the old proxy until its transactions ended would: whatever
  // they still send shows a transaction that the restart split in two.
  void apply() {
    replaced_.push_back(std::move(proxy_));
    ProxyConfig next = config_;
    next.flow_timer_seconds += 30;
    swap_rules(next);
  }
  void tick_for(std::chrono::milliseconds span) {
    for (auto ms = 0ms; ms <= span; ms += 100ms) {
      proxy_->on_timer(now_ + ms, out_);
      for (const auto& p : replaced_) p->on_timer(now_ + ms, out_);
    }
  }
  void close_flow(const FlowKey& f) {
    out_.close_flow(f);
    proxy_->on_flow_closed(f);  // the transport layer tells the current handler only
  }

  std::vector<std::unique_ptr<EdgeProxy>> replaced_;
};

TEST_F(AcrossARestart, TheCancelOfAnInviteForwardedBeforeItCarriesTheSameBranch) {
  from_client(kAlice, alice_request("INVITE", "z9hG4bKar1"));
  const std::string invite_branch(Out(out_.take().bytes).via(0).branch);
  apply();
  from_client(kAlice, alice_request("CANCEL", "z9hG4bKar1"));
  EXPECT_EQ(Out(out_.take().bytes).via(0).branch, invite_branch);
  from_client(kAlice, alice_request("ACK", "z9hG4bKar1", {}, "b1"));  // after a non-2xx: same branch
  EXPECT_EQ(Out(out_.take().bytes).via(0).branch, invite_branch);
}

TEST_F(AcrossARestart, AUdpRetransmissionIsStillAbsorbedByTheOneTransactionTable) {
  const std::string inv = alice_request("INVITE", "z9hG4bKar2");
  from_client(kAlice, inv);
  ASSERT_TRUE(out_.take().to_core);
  apply();
  from_client(kAlice, inv);
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().retransmissions_absorbed, 1u);
}

TEST_F(AcrossARestart, WithAUdpCoreTheRetransmissionCarriesTheSameBranch) {
  ProxyConfig cfg = lab_config();
  cfg.core_side = {Transport::udp, "10.0.0.1", 5060};
  make(cfg);
  const std::string inv = alice_request("INVITE", "z9hG4bKar3");
  from_client(kAlice, inv);
  const std::string first = out_.take().bytes;
  apply();
  from_client(kAlice, inv);
  const std::string again = out_.take().bytes;
  EXPECT_EQ(Out(again).via(0).branch, Out(first).via(0).branch);
  EXPECT_EQ(again, first);
}

TEST_F(AcrossARestart, AnInviteRingingAcrossItGetsIts200ToTheCallerAndNo408IsSent) {
  from_core(core_to_alice("INVITE", token_of(kAlice)));
  Out fwd(out_.take().bytes);
  apply();
  from_client(kAlice, answer(fwd.text(), 180));  // the phone rings: heard by the new rules
  ASSERT_TRUE(out_.take().to_core);
  tick_for(10s);
  EXPECT_TRUE(out_.sent.empty()) << "the INVITE retransmitted after its 180";
  from_client(kAlice, answer(fwd.text(), 200));
  const FakeNetwork::Sent ok = out_.take();
  ASSERT_TRUE(ok.to_core);
  EXPECT_EQ(Out(ok.bytes).status(), 200);
  tick_for(40s);
  EXPECT_TRUE(out_.sent.empty()) << "retransmission or 408 after the answer";
  EXPECT_EQ(proxy_->stats().r408, 0u);
}

TEST_F(AcrossARestart, AnAnswerAfterItStopsTheRetransmissionsOfARequestSentBeforeIt) {
  from_core(core_to_alice("MESSAGE", token_of(kAlice)));
  Out fwd(out_.take().bytes);
  apply();
  from_client(kAlice, answer(fwd.text(), 200));
  ASSERT_TRUE(out_.take().to_core);
  tick_for(40s);
  EXPECT_TRUE(out_.sent.empty());
  EXPECT_EQ(proxy_->stats().retransmissions_to_clients, 0u);
}

TEST_F(AcrossARestart, AFlowClosedAfterItEndsTheTransactionsBegunBeforeIt) {
  from_core(core_to_alice("MESSAGE", token_of(kAlice)));
  out_.take();
  apply();
  close_flow(kAlice);
  tick_for(40s);
  // One 430 (the flow failed under the request), from whichever rules tick first; no 408, no retransmission.
  ASSERT_EQ(out_.sent.size(), 1u);
  EXPECT_TRUE(out_.sent[0].to_core);
  EXPECT_EQ(Out(out_.sent[0].bytes).status(), 430);
  EXPECT_EQ(proxy_->stats().r408, 0u);
}

TEST_F(AcrossARestart, CountersKeepCountingWithoutArithmetic) {
  from_client(kAlice, alice_request("MESSAGE", "z9hG4bKar4"));
  out_.take();
  const std::shared_ptr<ProxyState> before = proxy_->state();
  apply();
  from_client(kAlice, alice_request("MESSAGE", "z9hG4bKar5"));
  out_.take();
  EXPECT_EQ(proxy_->state(), before);
  EXPECT_EQ(proxy_->stats().requests_from_clients, 2u);
  EXPECT_EQ(proxy_->stats().forwarded_to_core, 2u);
  EXPECT_EQ(state_->stats().requests_from_clients, 2u);
}

TEST(ViaBranchCodec, RoundTripsIpv4AndIpv6FlowsAndRejectsAnyChange) {
  const BranchCodec codec({1, 2});
  const std::string unique = "0123456789abcdef01234567";
  for (const FlowKey& f : {kAlice, kCarol}) {
    const ViaBranch b = codec.for_client(unique, f);
    const std::string text(b.view());
    EXPECT_EQ(text.substr(0, 7), "z9hG4bK");
    const auto d = codec.decode(text);
    ASSERT_TRUE(d);
    EXPECT_TRUE(d->from_client);
    EXPECT_EQ(d->flow, f);
    for (std::size_t i = 7; i < text.size(); ++i) {
      std::string bad = text;
      bad[i] = bad[i] == 'A' ? 'B' : 'A';
      EXPECT_FALSE(codec.decode(bad)) << i;
    }
    EXPECT_FALSE(BranchCodec({1, 3}).decode(text));  // another process key
  }
  const auto core = codec.decode(codec.for_core(unique).view());
  ASSERT_TRUE(core);
  EXPECT_FALSE(core->from_client);
  EXPECT_FALSE(codec.decode("z9hG4bK776asdhds"));
}

}  // namespace
}  // namespace edge::net::testing
