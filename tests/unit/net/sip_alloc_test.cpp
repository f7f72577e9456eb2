// Counts heap allocations on the per-message path: parsing, accessors and forwarding edits of
// typical messages allocate nothing once buffers are warm (the architecture's promise).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <new>
#include <string>

#include "edge/net/sip/editor.h"
#include "edge/net/sip/headers.h"
#include "edge/net/sip/message.h"
#include "edge/net/sip/stun.h"

// GCC's -Wmismatched-new-delete (with ASan, -O1) cannot see that this replaced pair is consistent.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// Replaces the global allocator for this test binary only.
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace sip = edge::sip;

namespace {

std::string load(const std::string& name) {
  std::ifstream in(std::string(EDGE_TEST_CORPUS_DIR) + "/" + name, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST(SipAllocations, ParseAndAccessorsAllocateNothing) {
  const std::string files[] = {load("register_baresip_tcp.sip"),  load("invite_sdp_udp.sip"),
                               load("response_200_register.sip"), load("invite_core_to_edge.sip"),
                               load("folded_headers.sip"),        load("invite_ipv6.sip")};
  sip::Message m;
  const long before = g_allocations.load();
  for (int round = 0; round < 100; ++round) {
    for (const std::string& s : files) {
      ASSERT_EQ(sip::parse(s, m), sip::Error::ok);
      sip::Via v;
      ASSERT_EQ(sip::via_at(m, 0, v), sip::Error::ok);
      sip::NameAddr from;
      ASSERT_EQ(sip::from_header(m, from), sip::Error::ok);
      (void)sip::has_option_tag(m, sip::HeaderId::supported, "outbound");
      sip::RouteValue r;
      (void)sip::route_at(m, sip::HeaderId::route, 0, r);
      (void)sip::frame_stream(s);
    }
  }
  EXPECT_EQ(g_allocations.load() - before, 0);
}

TEST(SipAllocations, ForwardingEditsAllocateNothingWithAWarmBuffer) {
  const std::string in = load("invite_core_to_edge.sip");
  sip::Message m;
  std::string out;
  out.reserve(4096);
  const long before = g_allocations.load();
  for (std::uint64_t i = 0; i < 100; ++i) {
    ASSERT_EQ(sip::parse(in, m), sip::Error::ok);
    sip::Editor e(m);
    ASSERT_EQ(e.pop_routes(1), sip::Error::ok);
    ASSERT_EQ(e.push_via({"TCP", "edge.example.test", 5060, sip::make_branch(1, i).view(), false}),
              sip::Error::ok);
    ASSERT_EQ(e.decrement_max_forwards(), sip::Error::ok);
    ASSERT_EQ(e.insert_record_route("sip:AQEBAAAAAAB_AAABEjQ@edge.example.test;transport=tcp;lr"),
              sip::Error::ok);
    out.clear();
    e.serialize(out);
  }
  EXPECT_EQ(g_allocations.load() - before, 0);
}

TEST(SipAllocations, UnusualMessageOverflowsOnceThenReuses) {
  std::string big = load("register_baresip_tcp.sip");
  std::string extra;
  for (int i = 0; i < 60; ++i) extra += "X-H" + std::to_string(i) + ": v\r\n";
  big.insert(big.find("Content-Length"), extra);
  sip::Message m;
  long before = g_allocations.load();
  ASSERT_EQ(sip::parse(big, m), sip::Error::ok);
  EXPECT_EQ(g_allocations.load() - before, 1);  // the overflow slots, once
  before = g_allocations.load();
  for (int i = 0; i < 10; ++i) ASSERT_EQ(sip::parse(big, m), sip::Error::ok);
  EXPECT_EQ(g_allocations.load() - before, 0);
}

TEST(SipAllocations, StunAllocatesNothing) {
  std::array<std::uint8_t, 20> req = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1,  2,
                                      3,    4,    5,    6,    7,    8,    9,    10,   11, 12};
  std::array<std::uint8_t, sip::stun::kMaxResponseSize> out{};
  const long before = g_allocations.load();
  sip::stun::Message m;
  ASSERT_EQ(sip::stun::decode(req, m), sip::stun::Error::ok);
  sip::stun::Endpoint ep;
  ep.address = {192, 0, 2, 1};
  ep.port = 5060;
  EXPECT_GT(sip::stun::encode_binding_success(m.transaction_id, ep, out), 0u);
  EXPECT_EQ(g_allocations.load() - before, 0);
}
