// Issue 8 "Hostile input" over UDP: oversized datagrams, 10,000 headers, bad Content-Length, bad STUN,
// and a flood from one address. UDP has no connection to close: bad input is answered 400 when the
// datagram holds what a response needs, otherwise dropped (and counted); nothing else changes.
#include <thread>

#include "hostile_fixture.h"

namespace edge::test::hostile {
namespace {

using Bytes = std::vector<std::uint8_t>;

// A STUN header (RFC 5389 §6): type, length, magic cookie, transaction id; then `attrs` verbatim.
Bytes stun(std::uint16_t type, std::uint16_t length, const Bytes& attrs, std::uint32_t cookie = 0x2112A442) {
  Bytes b = {static_cast<std::uint8_t>(type >> 8), static_cast<std::uint8_t>(type),
             static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)};
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(cookie >> s));
  for (int i = 0; i < 12; ++i) b.push_back(static_cast<std::uint8_t>(0xA0 + i));
  b.insert(b.end(), attrs.begin(), attrs.end());
  return b;
}

class UdpInput : public HostileTest {
 protected:
  TestUa& evil() {
    TestUa& u = ua("evil-udp" + std::to_string(++serial_));
    u.connect(Transport::udp, edge_->endpoint(Transport::udp));
    return u;
  }
};

TEST_F(UdpInput, OversizedAndOverlongDatagramsAreDroppedOrAnswered400) {
  TestUa& u = evil();
  // A 64 KiB header line (the largest datagram UDP carries is 65,507 bytes, under max_message_size):
  // over the 8 KiB header-line limit: 400, or dropped; never forwarded.
  u.send_raw(options_request("X-Long: " + std::string(65'000 - 300, 'a') + "\r\n"));
  if (auto r = u.try_receive(Millis(1000))) {
    EXPECT_TRUE(r->status() == 400 || r->status() == 513) << r->summary();
  }
  // 10,000 headers (50 KB): over the header count limit: 400 or dropped, never forwarded.
  std::string many;
  for (int i = 0; i < 10000; ++i) many += "A:1\r\n";
  u.send_raw(options_request(many));
  if (auto r = u.try_receive(Millis(1000))) {
    EXPECT_TRUE(r->status() == 400 || r->status() == 513) << r->summary();
  }
  expect_unharmed();
}

TEST_F(UdpInput, BadContentLengthsAndTruncationGet400OrAreDropped) {
  TestUa& u = evil();
  for (const std::string& bytes : {options_request({}, {}, "-1"), options_request("Content-Length: 7\r\n", "abc"),
                                   options_request({}, "abc", "10"),
                                   options_request().substr(0, 60)}) {
    SCOPED_TRACE(bytes.substr(0, 80));
    u.send_raw(bytes);
    if (auto r = u.try_receive(Millis(700))) {
      EXPECT_EQ(r->status(), 400) << r->summary();
    }
  }
  // Smaller than the body: RFC 3261 §18.3, the extra bytes are discarded and the request is processed.
  u.send_raw(options_request({}, "0123456789", "2"));
  const auto r = u.try_receive(Millis(3000));
  ASSERT_TRUE(r.has_value()) << "a request with trailing bytes was not processed";
  EXPECT_NE(r->status(), 400) << r->summary();
  expect_unharmed();
}

// STUN with bad lengths or attributes: no answer (or a STUN error), never a crash; a good Binding
// request is still answered afterwards.
TEST_F(UdpInput, BadStunIsDroppedAndGoodStunStillAnswered) {
  TestUa& u = evil();
  u.send_raw(options_request());  // STUN is answered only to a source that has a flow
  ASSERT_TRUE(u.try_receive(Millis(3000)).has_value());
  const Bytes cases[] = {
      stun(0x0001, 400, {}),                                // length beyond the datagram
      stun(0x0001, 3, {0, 0, 0}),                           // length not a multiple of 4
      stun(0x0001, 8, {0x80, 0x22, 0x00, 0x40, 1, 2, 3, 4}),  // attribute longer than the message
      stun(0x0001, 8, {0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4}),  // unknown comprehension-required attribute
      stun(0x0001, 0, {}, 0xdeadbeef),                      // bad magic cookie (not STUN per RFC 5389)
      stun(0x0111, 0, {}),                                  // a Binding error response, unsolicited
      Bytes{0x00, 0x01},                                    // two bytes
  };
  for (const Bytes& b : cases) {
    u.send_bytes(b);
    if (auto answer = u.try_receive_stun(Millis(300))) {
      // Only a STUN error response (class bits 0x0110) is acceptable.
      ASSERT_GE(answer->size(), 2u);
      const int cls = (((*answer)[0] & 0x01) << 8) | ((*answer)[1] & 0x10);
      EXPECT_EQ(cls, 0x0110) << "a success answer to bad STUN";
    }
    EXPECT_FALSE(u.try_receive(Millis(10))) << "bad STUN got a SIP answer";
  }
  const StunBindingResponse ok = u.stun_binding(Millis(2000));
  ASSERT_TRUE(ok.mapped.has_value());
  EXPECT_EQ(ok.mapped->port, u.local_endpoint().port);
  expect_unharmed();
}

// A flood from one address: 20,000 datagrams (garbage, REGISTER-less requests, STUN) in a few seconds,
// bounded; edged stays up, keeps one UDP flow for that address, serves the bystander meanwhile.
TEST_F(UdpInput, FloodFromOneAddressIsBounded) {
  TestUa& u = evil();
  const std::string request = options_request();
  const Bytes binding = make_stun_binding_request(random_stun_transaction_id());
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  int sent = 0;
  for (; sent < 20'000 && Clock::now() < deadline; ++sent) {
    switch (sent % 3) {
      case 0: u.send_raw("\xff garbage " + std::to_string(sent)); break;
      case 1: u.send_raw(request); break;
      default: u.send_bytes(binding); break;
    }
    if (sent % 500 == 0) std::this_thread::sleep_for(Millis(5));
  }
  std::cout << "flood: " << sent << " datagrams\n";
  const EdgedStatus s = edge_->status();
  EXPECT_LE(s.number("flows_udp"), 1u) << "one source address, one UDP flow";
  EXPECT_GT(s.number("udp_garbage"), 0u);
  expect_unharmed();
}

}  // namespace
}  // namespace edge::test::hostile
