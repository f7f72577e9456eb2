// Micro benchmarks of the SIP message core: parse typical messages, frame a stream, forward an
// INVITE (parse + edits + serialize), answer a STUN Binding request.
#include <benchmark/benchmark.h>

#include <array>
#include <string>
#include <string_view>

#include "edge/net/sip/editor.h"
#include "edge/net/sip/headers.h"
#include "edge/net/sip/message.h"
#include "edge/net/sip/stun.h"

namespace sip = edge::sip;

namespace {

// A REGISTER as baresip sends it over an outbound TCP flow (603 bytes).
constexpr std::string_view kRegister =
    "REGISTER sip:example.test;transport=tcp SIP/2.0\r\n"
    "Via: SIP/2.0/TCP 127.0.0.1:41234;branch=z9hG4bK3f1c8e2a7b5d;rport;alias\r\n"
    "Contact: <sip:alice-0x55d0@127.0.0.1:41234;transport=tcp;ob>;expires=60;"
    "+sip.instance=\"<urn:uuid:2e7d5a0c-8c3b-4c66-9f1e-3b4c0f7b8a11>\";reg-id=1\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:alice@example.test>\r\n"
    "From: <sip:alice@example.test>;tag=c6a5b7f3e1d2a4b8\r\n"
    "Call-ID: 8a1c3e5f7b9d2f4a\r\n"
    "CSeq: 38122 REGISTER\r\n"
    "User-Agent: baresip v1.0.0 (x86_64/linux)\r\n"
    "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER\r\n"
    "Supported: gruu,outbound,path,replaces\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

constexpr std::string_view kSdp =
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=sendrecv\r\n";

// An INVITE from the core towards a client behind the edge, as Kamailio forwards it.
const std::string kInvite =
    std::string(
        "INVITE sip:alice-0x55d0@127.0.0.1:41234;transport=tcp;ob SIP/2.0\r\n"
        "Record-Route: <sip:core.example.test;transport=tcp;r2=on;lr;ftag=as4f2b1c>\r\n"
        "Record-Route: <sip:192.0.2.1;r2=on;lr;ftag=as4f2b1c>\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK8d3e.5c9f0a1b000000000000000000000000.0\r\n"
        "Via: SIP/2.0/UDP "
        "198.51.100.7:5060;received=198.51.100.7;rport=5060;branch=z9hG4bKas4f2b1c\r\n"
        "Route: <sip:AQEBAAAAAAB_AAABEjQ@edge.example.test;transport=tcp;lr>\r\n"
        "Max-Forwards: 69\r\n"
        "From: \"Carol\" <sip:carol@example.test>;tag=as4f2b1c\r\n"
        "To: <sip:alice@example.test>\r\n"
        "Call-ID: 3c26d3b2e5f8a1@198.51.100.7\r\n"
        "CSeq: 102 INVITE\r\n"
        "Contact: <sip:carol@198.51.100.7:5060>\r\n"
        "Content-Type: application/sdp\r\n"
        "Content-Length: ") +
    std::to_string(kSdp.size()) + "\r\n\r\n" + std::string(kSdp);

constexpr std::string_view k200 =
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1b2c3d4e5f6a7b8c9d0e1f2a;rport=5060\r\n"
    "Via: SIP/2.0/TCP "
    "127.0.0.1:41234;received=127.0.0.1;rport=41234;branch=z9hG4bK3f1c8e2a7b5d;alias\r\n"
    "Path: <sip:AQEBAAAAAAB_AAABEjQ@edge.example.test;lr;ob>\r\n"
    "Contact: <sip:alice-0x55d0@127.0.0.1:41234;transport=tcp;ob>;expires=60;"
    "+sip.instance=\"<urn:uuid:2e7d5a0c-8c3b-4c66-9f1e-3b4c0f7b8a11>\";reg-id=1\r\n"
    "To: <sip:alice@example.test>;tag=7e1a0b9f3c2d5a6b8c9d0e1f2a3b4c5d.a1b2\r\n"
    "From: <sip:alice@example.test>;tag=c6a5b7f3e1d2a4b8\r\n"
    "Call-ID: 8a1c3e5f7b9d2f4a\r\n"
    "CSeq: 38122 REGISTER\r\n"
    "Require: outbound\r\n"
    "Supported: outbound, path\r\n"
    "Server: kamailio (5.6.3 (x86_64/linux))\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

void parse_loop(benchmark::State& state, std::string_view msg) {
  sip::Message m;
  sip::ParseOptions opt;
  opt.stream = true;
  for (auto _ : state) {
    sip::Error e = sip::parse(msg, m, opt);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(m.headers().data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(msg.size()));
}

void BM_SipParseRegister(benchmark::State& state) { parse_loop(state, kRegister); }
void BM_SipParseInviteSdp(benchmark::State& state) { parse_loop(state, kInvite); }
void BM_SipParse200Ok(benchmark::State& state) { parse_loop(state, k200); }

// What an edge does with a REGISTER besides parsing: framing and the outbound checks.
void BM_SipFrameParseInspectRegister(benchmark::State& state) {
  sip::Message m;
  sip::ParseOptions opt;
  opt.stream = true;
  for (auto _ : state) {
    sip::Frame f = sip::frame_stream(kRegister);
    sip::parse(kRegister.substr(0, f.size), m, opt);
    sip::Via v;
    sip::via_at(m, 0, v);
    sip::ContactValue c;
    sip::parse_contact(m.first(sip::HeaderId::contact)->value, c);
    bool path = sip::has_option_tag(m, sip::HeaderId::supported, "path");
    benchmark::DoNotOptimize(path);
    benchmark::DoNotOptimize(c.reg_id);
  }
  state.SetItemsProcessed(state.iterations());
}

// An incoming INVITE: pop our Route, add our Via and Record-Route, Max-Forwards - 1, write out.
void BM_SipForwardInvite(benchmark::State& state) {
  sip::Message m;
  std::string out;
  out.reserve(4096);
  std::uint64_t counter = 0;
  for (auto _ : state) {
    sip::parse(kInvite, m);
    sip::Editor e(m);
    e.pop_routes(1);
    const sip::Branch b = sip::make_branch(0x5eed, ++counter);
    e.push_via({"TCP", "edge.example.test", 5060, b.view(), false});
    e.decrement_max_forwards();
    e.insert_record_route("sip:AQEBAAAAAAB_AAABEjQ@edge.example.test;transport=tcp;lr");
    out.clear();
    e.serialize(out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}

// Only the edit + serialize part, on an already parsed message.
void BM_SipEditSerializeInvite(benchmark::State& state) {
  sip::Message m;
  sip::parse(kInvite, m);
  std::string out;
  out.reserve(4096);
  std::uint64_t counter = 0;
  for (auto _ : state) {
    sip::Editor e(m);
    e.pop_routes(1);
    const sip::Branch b = sip::make_branch(0x5eed, ++counter);
    e.push_via({"TCP", "edge.example.test", 5060, b.view(), false});
    e.decrement_max_forwards();
    e.insert_record_route("sip:AQEBAAAAAAB_AAABEjQ@edge.example.test;transport=tcp;lr");
    out.clear();
    e.serialize(out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_SipStunBinding(benchmark::State& state) {
  const std::array<std::uint8_t, 28> req = {0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1,  2,
                                            3,    4,    5,    6,    7,    8,    9,    10,   11, 12,
                                            0x80, 0x28, 0x00, 0x04, 0,    0,    0,    0};
  std::array<std::uint8_t, 28> signed_req = req;
  const std::uint32_t crc = sip::stun::crc32({req.data(), 20}) ^ 0x5354554eu;
  for (int i = 0; i < 4; ++i)
    signed_req[24 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(crc >> (24 - 8 * i));
  std::array<std::uint8_t, sip::stun::kMaxResponseSize> out{};
  sip::stun::Endpoint ep;
  ep.address = {203, 0, 113, 9};
  ep.port = 40000;
  for (auto _ : state) {
    sip::stun::Message m;
    sip::stun::decode(signed_req, m, true);
    std::size_t n = sip::stun::encode_binding_success(m.transaction_id, ep, out);
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_SipParseRegister);
BENCHMARK(BM_SipParseInviteSdp);
BENCHMARK(BM_SipParse200Ok);
BENCHMARK(BM_SipFrameParseInspectRegister);
BENCHMARK(BM_SipForwardInvite);
BENCHMARK(BM_SipEditSerializeInvite);
BENCHMARK(BM_SipStunBinding);
