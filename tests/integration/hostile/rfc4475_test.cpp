// Issue 17: every RFC 4475 torture message (rfc4475_corpus.cpp) sent to the real edged over UDP, TCP
// and TLS, with Kamailio as its core: each gets the answer the RFC's text says for a proxy (forwarded
// to the core, answered by the edge, or dropped), and afterwards edged still serves the bystander's
// flow, and its fds and flows are back to the baseline.
#include <unistd.h>

#include <thread>

#include "hostile_fixture.h"
#include "rfc4475_corpus.h"

namespace edge::test::hostile {
namespace {

using rfc4475::Expect;

bool from_core(const SipMessage& r) { return r.header("Server").value_or("") == kCoreServer; }

class Rfc4475 : public HostileTest, public ::testing::WithParamInterface<Transport> {
 protected:
  // Requests that reached the core: its request_route logs one "core: <method> <uri>" line each
  // (tests/integration/sip/kamailio/kamailio.cfg.in); one its own parser refuses (Kamailio does
  // not take every valid RFC 4475 message) logs a parse_msg() error instead.
  std::size_t core_requests() {
    const std::string log = core_->log();
    std::size_t n = 0;
    for (std::string_view mark : {"core: ", "parse_msg()"})
      for (std::size_t p = log.find(mark); p != std::string::npos; p = log.find(mark, p + mark.size())) ++n;
    return n;
  }
  bool core_saw_more_than(std::size_t before) {
    for (int i = 0; i < 20; ++i) {
      if (core_requests() > before) return true;
      std::this_thread::sleep_for(Millis(100));
    }
    return false;
  }

  // Responses until a final one (or the deadline, or the close); provisional ones are skipped.
  std::optional<SipMessage> final_response(TestUa& u, Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline && u.is_open()) {
      auto m = u.try_receive(Millis(100));
      if (m && m->is_response() && m->status() >= 200) return m;
      if (m && m->is_request()) ADD_FAILURE() << "a request came back: " << m->summary();
    }
    return std::nullopt;
  }

  void check(const rfc4475::Message& msg, Expect e, TestUa& u, std::size_t forwarded_before) {
    switch (e) {
      case Expect::forwarded:
      case Expect::core_or_400: {
        const auto r = final_response(u, Millis(3000));
        if (r && !from_core(*r)) {
          if (e == Expect::core_or_400) {
            EXPECT_EQ(r->status(), 400) << "answered by the edge: " << r->summary();
          } else {
            ADD_FAILURE() << "the edge answered instead of forwarding: " << r->summary();
          }
          return;
        }
        if (!r) {
          EXPECT_TRUE(core_saw_more_than(forwarded_before)) << "neither forwarded nor answered";
        }
        return;
      }
      case Expect::edge_400:
      case Expect::edge_416:
      case Expect::edge_420:
      case Expect::edge_483:
      case Expect::edge_505: {
        const int want = e == Expect::edge_400   ? 400
                         : e == Expect::edge_416 ? 416
                         : e == Expect::edge_420 ? 420
                         : e == Expect::edge_483 ? 483
                                                 : 505;
        const auto r = final_response(u, Millis(4000));
        ASSERT_TRUE(r.has_value()) << "no answer";
        EXPECT_EQ(r->status(), want) << r->summary();
        EXPECT_FALSE(from_core(*r)) << "the core answered, not the edge: " << r->summary();
        if (want == 420) {
          EXPECT_NE(r->header("Unsupported").value_or("").find("noProxiesSupportThis"), std::string::npos)
              << r->summary();
        }
        return;
      }
      case Expect::dropped: {
        const auto m = u.try_receive(Millis(1000));
        EXPECT_FALSE(m.has_value()) << m->summary();
        EXPECT_TRUE(u.is_open());
        return;
      }
      case Expect::closed: {
        const Outcome o = await_outcome(u, Millis(6000));
        EXPECT_TRUE(o.closed) << o;
        if (o.status) {
          EXPECT_EQ(*o.status, 400) << o;
        }
        return;
      }
    }
    (void)msg;
  }
};

TEST_P(Rfc4475, EveryMessageGetsTheAnswerTheRfcGivesAProxy) {
  const Transport t = GetParam();
  const std::string serial = "-" + std::string(via_token(t)) + std::to_string(::getpid());
  int n = 0;
  for (const rfc4475::Message& m : rfc4475::corpus(serial)) {
    const Expect e = t == Transport::udp ? m.udp : m.stream;
    SCOPED_TRACE(std::string("RFC 4475 ") + m.section + " " + m.name + ": expected " + rfc4475::to_string(e));
    TestUa& u = ua("t4475-" + std::to_string(++n));
    u.connect(t, edge_->endpoint(t), connect_options());
    const std::size_t before = core_requests();
    u.send_raw(m.bytes);
    check(m, e, u, before);
    u.close();
  }
  expect_unharmed();
}

INSTANTIATE_TEST_SUITE_P(Transports, Rfc4475,
                         ::testing::Values(Transport::udp, Transport::tcp, Transport::tls),
                         [](const ::testing::TestParamInfo<Transport>& p) {
                           return std::string(via_token(p.param));
                         });

}  // namespace
}  // namespace edge::test::hostile
