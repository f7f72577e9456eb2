// Editor, response builder and branch generation: edits land where RFCs say, every other byte
// (and the body) stays as received, and the result parses again.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "edge/net/sip/editor.h"
#include "edge/net/sip/headers.h"
#include "edge/net/sip/message.h"
#include "edge/net/sip/response.h"

namespace sip = edge::sip;
using sip::Error;
using sip::HeaderId;

namespace {

std::string load(const std::string& name) {
  std::ifstream in(std::string(EDGE_TEST_CORPUS_DIR) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string_view> lines_of(const sip::Message& m) {
  std::vector<std::string_view> out;
  for (const sip::Header& h : m.headers())
    out.push_back(m.raw().substr(h.line_begin, h.line_end - h.line_begin));
  return out;
}

// Every header line of `before` whose id is not in `touched` appears in `after`, byte for byte
// and in the same relative order; the start line and the body are identical.
void expect_untouched(const sip::Message& before, const sip::Message& after,
                      std::set<HeaderId> touched) {
  EXPECT_EQ(before.start_line(), after.start_line());
  EXPECT_EQ(before.body(), after.body());
  std::vector<std::string_view> a, b;
  for (const sip::Header& h : before.headers())
    if (!touched.count(h.id))
      a.push_back(before.raw().substr(h.line_begin, h.line_end - h.line_begin));
  for (const sip::Header& h : after.headers())
    if (!touched.count(h.id))
      b.push_back(after.raw().substr(h.line_begin, h.line_end - h.line_begin));
  EXPECT_EQ(a, b);
}

std::string serialize(const sip::Editor& e) {
  std::string out;
  e.serialize(out);
  EXPECT_EQ(out.size(), e.size());
  // The three output paths agree.
  std::string direct(e.size(), '\0');
  EXPECT_EQ(e.serialize_to(direct), e.size());
  EXPECT_EQ(direct, out);
  std::vector<std::string_view> pieces(e.pieces({}));
  EXPECT_EQ(e.pieces(pieces), pieces.size());
  std::string gathered;
  for (auto p : pieces) gathered += p;
  EXPECT_EQ(gathered, out);
  return out;
}

sip::ResponseSpec spec(int status, std::string_view to_tag = {}) {
  sip::ResponseSpec s;
  s.status = status;
  s.to_tag = to_tag;
  return s;
}

}  // namespace

TEST(SipEditor, OutgoingInviteFromUa) {
  const std::string in = load("invite_sdp_udp.sip");
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  sip::Editor e(m);
  ASSERT_EQ(e.add_received_rport(0, "203.0.113.9", 40123), Error::ok);
  const sip::Branch br = sip::make_branch(42, 1);
  ASSERT_EQ(e.push_via({"TCP", "edge.example.test", 5060, br.view(), false}), Error::ok);
  ASSERT_EQ(e.pop_routes(1), Error::ok);
  ASSERT_EQ(e.decrement_max_forwards(), Error::ok);
  ASSERT_EQ(e.insert_record_route("sip:core-side.example.test;transport=tcp;lr"), Error::ok);
  ASSERT_EQ(e.insert_record_route("sip:AQEBAAAAAAB_AAABEjQ@edge.example.test;lr"), Error::ok);
  const std::string out = serialize(e);

  sip::Message f;
  ASSERT_EQ(sip::parse(out, f, {.limits = {}, .stream = true}), Error::ok) << out;
  expect_untouched(
      m, f, {HeaderId::via, HeaderId::route, HeaderId::max_forwards, HeaderId::record_route});
  ASSERT_EQ(sip::via_count(f), 2u);
  sip::Via v;
  ASSERT_EQ(sip::via_at(f, 0, v), Error::ok);
  EXPECT_EQ(v.transport, "TCP");
  EXPECT_EQ(v.host, "edge.example.test");
  EXPECT_EQ(v.port, 5060);
  EXPECT_EQ(v.branch, br.view());
  ASSERT_EQ(sip::via_at(f, 1, v), Error::ok);
  EXPECT_EQ(v.received, "203.0.113.9");
  EXPECT_EQ(v.rport_value, 40123);
  EXPECT_EQ(f.first(HeaderId::via)->value.substr(0, 11), "SIP/2.0/TCP");
  EXPECT_EQ(f.max_forwards(), 69u);
  EXPECT_EQ(f.count(HeaderId::route), 0u);
  sip::RouteValue rr;
  ASSERT_EQ(sip::route_at(f, HeaderId::record_route, 0, rr), Error::ok);
  EXPECT_EQ(rr.uri.host, "core-side.example.test");
  ASSERT_EQ(sip::route_at(f, HeaderId::record_route, 1, rr), Error::ok);
  EXPECT_EQ(rr.uri.user, "AQEBAAAAAAB_AAABEjQ");
  EXPECT_NE(
      out.find("Via: SIP/2.0/UDP "
               "192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=40123;received=203.0.113.9\r\n"),
      std::string::npos);
  EXPECT_EQ(f.content_length(), m.content_length());
}

TEST(SipEditor, IncomingInvitePopsOurRouteFromASharedLine) {
  const std::string in = load("invite_core_to_edge.sip");
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  sip::Editor e(m);
  ASSERT_EQ(e.pop_routes(1), Error::ok);
  ASSERT_EQ(
      e.push_via({"TCP", "edge.example.test", std::nullopt, sip::make_branch(1, 2).view(), false}),
      Error::ok);
  ASSERT_EQ(e.decrement_max_forwards(), Error::ok);
  ASSERT_EQ(e.insert_record_route("sip:AQEBAAAAAAB_AAABEjQ@edge.example.test;transport=tcp;lr"),
            Error::ok);
  const std::string out = serialize(e);
  EXPECT_NE(out.find("\r\nRoute: <sip:edge.example.test;lr>\r\n"), std::string::npos) << out;
  sip::Message f;
  ASSERT_EQ(sip::parse(out, f), Error::ok);
  expect_untouched(
      m, f, {HeaderId::via, HeaderId::route, HeaderId::max_forwards, HeaderId::record_route});
  EXPECT_EQ(f.max_forwards(), 68u);
  // Our Record-Route goes above the core's ones.
  sip::RouteValue rr;
  ASSERT_EQ(sip::route_at(f, HeaderId::record_route, 0, rr), Error::ok);
  EXPECT_EQ(rr.uri.host, "edge.example.test");
  ASSERT_EQ(sip::route_at(f, HeaderId::record_route, 1, rr), Error::ok);
  EXPECT_EQ(rr.uri.host, "core.example.test");
  EXPECT_EQ(sip::via_count(f), 3u);
}

TEST(SipEditor, PopRoutesAcrossLines) {
  const std::string in = load("bye_route_set.sip");
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  for (std::size_t n = 1; n <= 3; ++n) {
    sip::Editor e(m);
    ASSERT_EQ(e.pop_routes(n), Error::ok);
    sip::Message f;
    const std::string out = serialize(e);
    ASSERT_EQ(sip::parse(out, f), Error::ok);
    std::size_t left = 0;
    sip::ValueIterator it(f, HeaderId::route);
    sip::HeaderValue hv;
    while (it.next(hv)) ++left;
    EXPECT_EQ(left, 3 - n);
    expect_untouched(m, f, {HeaderId::route});
    if (n == 1) {
      EXPECT_NE(
          out.find("\r\nRoute: <sip:core.example.test;transport=tcp;r2=on;lr;ftag=as4f2b1c>\r\n"),
          std::string::npos);
    }
    if (n == 2) {
      EXPECT_EQ(f.count(HeaderId::route), 1u);
    }
  }
  sip::Editor e(m);
  EXPECT_EQ(e.pop_routes(4), Error::no_such_header);
  EXPECT_EQ(e.edit_count(), 0u);  // a failed operation leaves nothing half done
  ASSERT_EQ(e.pop_routes(3), Error::ok);
  sip::Editor twice(m);
  ASSERT_EQ(twice.pop_routes(1), Error::ok);
  EXPECT_EQ(twice.pop_routes(1), Error::edit_overlap);
}

TEST(SipEditor, FirstHopRegisterGetsPath) {
  const std::string in = load("register_baresip_tcp.sip");
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  sip::Editor e(m);
  ASSERT_EQ(e.add_received_rport(0, "127.0.0.1", 41234), Error::ok);
  ASSERT_EQ(e.push_via({"UDP", "192.0.2.254", 5060, sip::make_branch(9, 9).view(), true}),
            Error::ok);
  ASSERT_EQ(e.insert_path("sip:AQEBAAAAAAB_AAABEjQ@edge.example.test;lr;ob"), Error::ok);
  ASSERT_EQ(e.decrement_max_forwards(), Error::ok);
  const std::string out = serialize(e);
  sip::Message f;
  ASSERT_EQ(sip::parse(out, f), Error::ok);
  expect_untouched(m, f, {HeaderId::via, HeaderId::path, HeaderId::max_forwards});
  sip::RouteValue path;
  ASSERT_EQ(sip::route_at(f, HeaderId::path, 0, path), Error::ok);
  EXPECT_TRUE(path.uri.ob());
  EXPECT_TRUE(path.uri.lr());
  sip::Via v;
  ASSERT_EQ(sip::via_at(f, 0, v), Error::ok);
  EXPECT_TRUE(v.rport);
  EXPECT_FALSE(v.rport_value);
  ASSERT_EQ(sip::via_at(f, 1, v), Error::ok);
  // rport was asked for: received is added even though it equals the sent-by host (RFC 3581 §4).
  EXPECT_EQ(v.received, "127.0.0.1");
  EXPECT_EQ(v.rport_value, 41234);
  EXPECT_TRUE(v.alias);
}

TEST(SipEditor, PathGoesAboveExistingPath) {
  const std::string in = load("register_path_forwarded.sip");
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  sip::Editor e(m);
  ASSERT_EQ(e.insert_path("sip:second-hop.example.test;lr"), Error::ok);
  sip::Message f;
  const std::string out = serialize(e);
  ASSERT_EQ(sip::parse(out, f), Error::ok);
  sip::RouteValue p;
  ASSERT_EQ(sip::route_at(f, HeaderId::path, 0, p), Error::ok);
  EXPECT_EQ(p.uri.host, "second-hop.example.test");
  ASSERT_EQ(sip::route_at(f, HeaderId::path, 1, p), Error::ok);
  EXPECT_EQ(p.uri.user, "AQEBAAAAAAB_AAABEjQ");
  expect_untouched(m, f, {HeaderId::path});
}

TEST(SipEditor, ReceivedOnlyWhenHostDiffersWithoutRport) {
  const std::string in = load("register_path_forwarded.sip");  // top Via has no rport
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  {
    sip::Editor e(m);
    ASSERT_EQ(e.add_received_rport(0, "192.0.2.1", 5060), Error::ok);
    EXPECT_EQ(e.edit_count(), 0u);
  }
  {
    sip::Editor e(m);
    ASSERT_EQ(e.add_received_rport(0, "192.0.2.99", 5060), Error::ok);
    sip::Message f;
    const std::string out = serialize(e);
    ASSERT_EQ(sip::parse(out, f), Error::ok);
    sip::Via v;
    ASSERT_EQ(sip::via_at(f, 0, v), Error::ok);
    EXPECT_EQ(v.received, "192.0.2.99");
    EXPECT_FALSE(v.rport);
  }
  {
    // An existing received is replaced, and force_rport adds rport.
    sip::Editor e(m);
    ASSERT_EQ(e.add_received_rport(1, "[2001:db8::7]", 6000, true), Error::ok);
    sip::Message f;
    const std::string out = serialize(e);
    ASSERT_EQ(sip::parse(out, f), Error::ok);
    sip::Via v;
    ASSERT_EQ(sip::via_at(f, 1, v), Error::ok);
    EXPECT_EQ(v.received, "2001:db8::7");
    EXPECT_EQ(v.rport_value, 6000);
  }
  sip::Editor bad(m);
  EXPECT_EQ(bad.add_received_rport(0, "not an ip\r\n", 1), Error::bad_edit_input);
  EXPECT_EQ(bad.add_received_rport(5, "192.0.2.1", 1), Error::no_such_header);
}

TEST(SipEditor, ResponseWayBack) {
  const std::string in = load("response_180_many_vias.sip");
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  sip::Editor e(m);
  ASSERT_EQ(e.remove_top_via(), Error::ok);
  EXPECT_EQ(e.remove_top_via(), Error::edit_overlap);
  const std::string out = serialize(e);
  EXPECT_NE(out.find("\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK8d3e."), std::string::npos)
      << out;
  sip::Message f;
  ASSERT_EQ(sip::parse(out, f), Error::ok);
  EXPECT_EQ(sip::via_count(f), 2u);
  expect_untouched(m, f, {HeaderId::via});

  const std::string ok = load("response_200_register.sip");
  ASSERT_EQ(sip::parse(ok, m), Error::ok);
  sip::Editor r(m);
  ASSERT_EQ(r.remove_top_via(), Error::ok);
  ASSERT_EQ(r.set_flow_timer(120), Error::ok);
  const std::string out2 = serialize(r);
  ASSERT_EQ(sip::parse(out2, f), Error::ok);
  EXPECT_EQ(f.flow_timer(), 120u);
  EXPECT_EQ(sip::via_count(f), 1u);
  expect_untouched(m, f, {HeaderId::via, HeaderId::flow_timer});
  sip::Editor req_only(m);
  EXPECT_EQ(req_only.pop_routes(1), Error::not_a_request);
  EXPECT_EQ(req_only.decrement_max_forwards(), Error::not_a_request);
}

TEST(SipEditor, KeepParameter) {
  const std::string in = load("register_linphone_tls.sip");
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  sip::Editor e(m);
  ASSERT_EQ(e.set_via_keep(0, 115), Error::ok);
  ASSERT_EQ(e.add_received_rport(0, "198.51.100.20", 53124), Error::ok);
  const std::string out = serialize(e);
  sip::Message f;
  ASSERT_EQ(sip::parse(out, f), Error::ok);
  sip::Via v;
  ASSERT_EQ(sip::via_at(f, 0, v), Error::ok);
  EXPECT_EQ(v.keep_value, 115u);
  EXPECT_EQ(v.rport_value, 53124);
  EXPECT_EQ(v.received, "198.51.100.20");
  // A second editor on the edited message replaces the value.
  sip::Editor again(f);
  ASSERT_EQ(again.set_via_keep(0, 30), Error::ok);
  sip::Message g;
  const std::string out2 = serialize(again);
  ASSERT_EQ(sip::parse(out2, g), Error::ok);
  ASSERT_EQ(sip::via_at(g, 0, v), Error::ok);
  EXPECT_EQ(v.keep_value, 30u);
  // No keep offered: nothing to fill in.
  const std::string other = load("register_baresip_tcp.sip");
  ASSERT_EQ(sip::parse(other, m), Error::ok);
  sip::Editor none(m);
  EXPECT_EQ(none.set_via_keep(0, 30), Error::no_such_header);
}

TEST(SipEditor, MaxForwards) {
  std::string in = load("compact_forms.sip");  // no Max-Forwards
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  sip::Editor e(m);
  ASSERT_EQ(e.decrement_max_forwards(), Error::ok);
  sip::Message f;
  const std::string out = serialize(e);
  ASSERT_EQ(sip::parse(out, f), Error::ok);
  EXPECT_EQ(f.max_forwards(), 70u);
  expect_untouched(m, f, {HeaderId::max_forwards});

  in = load("register_baresip_tcp.sip");
  in.replace(in.find("Max-Forwards: 70"), 16, "Max-Forwards: 0");
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  sip::Editor zero(m);
  EXPECT_EQ(zero.decrement_max_forwards(), Error::max_forwards_exhausted);
}

TEST(SipEditor, Ipv6AndContentLength) {
  const std::string in = load("response_no_content_length_udp.sip");
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  sip::Editor e(m);
  ASSERT_EQ(e.ensure_content_length(), Error::ok);
  ASSERT_EQ(e.add_header("Server", "edge/0.1"), Error::ok);
  EXPECT_EQ(e.add_header("Bad Name", "x"), Error::bad_edit_input);
  EXPECT_EQ(e.add_header("X", "a\r\nInjected: 1"), Error::bad_edit_input);
  EXPECT_EQ(e.add_header("Call-ID", "second"), Error::bad_edit_input);
  sip::Message f;
  const std::string out = serialize(e);
  ASSERT_EQ(sip::parse(out, f, {.limits = {}, .stream = true}), Error::ok);
  EXPECT_EQ(f.content_length(), 0u);

  const std::string six = load("invite_ipv6.sip");
  ASSERT_EQ(sip::parse(six, m), Error::ok);
  sip::Editor v6(m);
  ASSERT_EQ(v6.push_via({"TCP", "2001:db8::1", 5060, sip::make_branch(3, 4).view(), false}),
            Error::ok);
  EXPECT_EQ(v6.push_via({"TCP", "bad host!", 5060, "z9hG4bKx", false}), Error::bad_edit_input);
  EXPECT_EQ(v6.push_via({"T CP", "h", 5060, "z9hG4bKx", false}), Error::bad_edit_input);
  EXPECT_EQ(v6.insert_path("sip:a@b>\r\nX: y"), Error::bad_edit_input);
  ASSERT_EQ(v6.add_received_rport(1, "2001:db8::abcd", 5099, true), Error::ok);
  const std::string out6 = serialize(v6);
  ASSERT_EQ(sip::parse(out6, f), Error::ok);
  sip::Via v;
  ASSERT_EQ(sip::via_at(f, 0, v), Error::ok);
  EXPECT_TRUE(v.host_is_ipv6);
  EXPECT_EQ(v.sent_by, "[2001:db8::1]:5060");
  // Via indexes name the original message's Vias: its second is now the third.
  ASSERT_EQ(sip::via_at(f, 2, v), Error::ok);
  EXPECT_EQ(v.received, "2001:db8::abcd");
  EXPECT_EQ(v.rport_value, 5099);
  EXPECT_EQ(f.body(), m.body());
}

TEST(SipEditor, OverlapsAndLimits) {
  const std::string in = load("response_200_register.sip");
  sip::Message m;
  ASSERT_EQ(sip::parse(in, m), Error::ok);
  sip::Editor e(m);
  ASSERT_EQ(e.remove_top_via(), Error::ok);
  EXPECT_EQ(e.add_received_rport(0, "192.0.2.9", 1, true), Error::edit_overlap);
  ASSERT_EQ(e.add_received_rport(1, "192.0.2.9", 1, true), Error::ok);

  sip::Editor many(m);
  Error last = Error::ok;
  for (int i = 0; i < 40 && last == Error::ok; ++i)
    last = many.add_header("X-N", std::string(100, 'n'));
  EXPECT_EQ(last, Error::too_many_edits);
  // More text than the inline buffer: moved to the heap, still correct.
  std::string out;
  many.serialize(out);
  sip::Message f;
  ASSERT_EQ(sip::parse(out, f), Error::ok);
  EXPECT_EQ(f.headers().size(), m.headers().size() + many.edit_count());
}

TEST(SipEditor, RoundTripWholeCorpus) {
  for (const auto& entry : std::filesystem::directory_iterator(EDGE_TEST_CORPUS_DIR)) {
    if (entry.path().extension() != ".sip") continue;
    const std::string in = load(entry.path().filename().string());
    sip::Message m;
    ASSERT_EQ(sip::parse(in, m), Error::ok) << entry.path();
    if (!m.is_request() && sip::via_count(m) < 2) continue;  // a response to us: never forwarded
    sip::Editor e(m);
    std::set<HeaderId> touched{HeaderId::via};
    if (m.is_request()) {
      ASSERT_EQ(e.add_received_rport(0, "198.51.100.77", 33333, true), Error::ok) << entry.path();
      ASSERT_EQ(e.push_via({"TLS", "edge.example.test", 5061, sip::make_branch(5, 6).view(), true}),
                Error::ok);
      ASSERT_EQ(e.decrement_max_forwards(), Error::ok);
      touched.insert(HeaderId::max_forwards);
      if (m.first(HeaderId::route)) {
        ASSERT_EQ(e.pop_routes(1), Error::ok);
        touched.insert(HeaderId::route);
      }
      ASSERT_EQ(e.insert_record_route("sip:edge.example.test;lr"), Error::ok);
      touched.insert(HeaderId::record_route);
    } else {
      ASSERT_EQ(e.remove_top_via(), Error::ok);
      ASSERT_EQ(e.set_flow_timer(90), Error::ok);
      touched.insert(HeaderId::flow_timer);
    }
    ASSERT_EQ(e.ensure_content_length(), Error::ok);
    touched.insert(HeaderId::content_length);
    const std::string out = serialize(e);
    sip::Message f;
    ASSERT_EQ(sip::parse(out, f, {.limits = {}, .stream = true}), Error::ok) << entry.path() << "\n"
                                                                             << out;
    expect_untouched(m, f, touched);
    EXPECT_EQ(f.call_id(), m.call_id());
    EXPECT_EQ(f.cseq().number, m.cseq().number);
    EXPECT_EQ(sip::via_count(f), sip::via_count(m) + (m.is_request() ? 1 : -1)) << entry.path();
  }
}

TEST(SipBranch, UniqueAndWellFormed) {
  std::set<std::string> seen;
  for (std::uint64_t i = 0; i < 100000; ++i) {
    sip::Branch b = sip::make_branch(0x1234, i);
    ASSERT_EQ(b.view().substr(0, 7), "z9hG4bK");
    ASSERT_EQ(b.view().size(), sip::Branch::kSize);
    ASSERT_TRUE(seen.insert(std::string(b.view())).second) << i;
  }
  EXPECT_NE(sip::make_branch(1, 7).view(), sip::make_branch(2, 7).view());
  EXPECT_EQ(sip::make_branch(1, 7).view(), sip::make_branch(1, 7).view());
}

TEST(SipBranch, StatelessBranchMatchesForCancel) {
  const std::string invite = load("invite_sdp_udp.sip");
  std::string cancel = invite.substr(0, invite.find("\r\n\r\n") + 4);
  cancel.replace(0, 6, "CANCEL");
  cancel.replace(cancel.find("CSeq: 314159 INVITE"), 19, "CSeq: 314159 CANCEL");
  cancel.replace(cancel.find("Content-Length: "), cancel.size(), "Content-Length: 0\r\n\r\n");
  sip::Message a, c;
  ASSERT_EQ(sip::parse(invite, a), Error::ok);
  ASSERT_EQ(sip::parse(cancel, c), Error::ok);
  EXPECT_EQ(sip::make_stateless_branch(77, a).view(), sip::make_stateless_branch(77, c).view());
  EXPECT_NE(sip::make_stateless_branch(77, a).view(), sip::make_stateless_branch(78, a).view());
  const std::string other = load("invite_core_to_edge.sip");
  sip::Message o;
  ASSERT_EQ(sip::parse(other, o), Error::ok);
  EXPECT_NE(sip::make_stateless_branch(77, a).view(), sip::make_stateless_branch(77, o).view());
}

TEST(SipResponse, FlowFailedFromRequest) {
  const std::string in = load("invite_core_to_edge.sip");
  sip::Message req;
  ASSERT_EQ(sip::parse(in, req), Error::ok);
  const sip::ExtraHeader extra[] = {{"Retry-After", "30"}, {"Server", "edge"}};
  std::string out;
  const sip::Tag tag = sip::make_tag(1, 1);
  sip::ResponseSpec s = spec(430, tag.view());
  s.extra = extra;
  ASSERT_EQ(sip::build_response(req, s, out), Error::ok);
  sip::Message r;
  ASSERT_EQ(sip::parse(out, r, {.limits = {}, .stream = true}), Error::ok) << out;
  EXPECT_EQ(r.status(), 430);
  EXPECT_EQ(r.reason_phrase(), "Flow Failed");
  EXPECT_EQ(r.call_id(), req.call_id());
  EXPECT_EQ(r.cseq().number, 102u);
  EXPECT_EQ(r.cseq().method, "INVITE");
  EXPECT_EQ(sip::via_count(r), 2u);
  EXPECT_EQ(lines_of(r)[0], lines_of(req)[2]);  // first Via line, byte for byte
  sip::NameAddr to, from;
  ASSERT_EQ(sip::to_header(r, to), Error::ok);
  ASSERT_EQ(sip::from_header(r, from), Error::ok);
  EXPECT_EQ(to.tag(), tag.view());
  EXPECT_EQ(from.tag(), "as4f2b1c");
  EXPECT_EQ(r.first(HeaderId::retry_after)->value, "30");
  EXPECT_EQ(r.content_length(), 0u);
  EXPECT_EQ(r.count(HeaderId::record_route), 0u);
  EXPECT_EQ(r.count(HeaderId::contact), 0u);
}

TEST(SipResponse, VariantsAndRejects) {
  const std::string in = load("register_baresip_tcp.sip");
  sip::Message req;
  ASSERT_EQ(sip::parse(in, req), Error::ok);
  for (int code : {400, 403, 404, 416, 420, 421, 430, 483, 503}) {
    std::string out;
    ASSERT_EQ(sip::build_response(req, spec(code, "abc"), out), Error::ok);
    sip::Message r;
    ASSERT_EQ(sip::parse(out, r), Error::ok) << code;
    EXPECT_EQ(r.status(), code);
    EXPECT_FALSE(r.reason_phrase().empty());
  }
  // 100 Trying gets no To tag; received/rport are filled from the source when asked.
  std::string trying;
  sip::ResponseSpec s100 = spec(100, "abc");
  s100.source_ip = "203.0.113.5";
  s100.source_port = 1234;
  ASSERT_EQ(sip::build_response(req, s100, trying), Error::ok);
  sip::Message r;
  ASSERT_EQ(sip::parse(trying, r), Error::ok);
  sip::NameAddr to;
  ASSERT_EQ(sip::to_header(r, to), Error::ok);
  EXPECT_EQ(to.tag(), "");
  sip::Via v;
  ASSERT_EQ(sip::via_at(r, 0, v), Error::ok);
  EXPECT_EQ(v.received, "203.0.113.5");
  EXPECT_EQ(v.rport_value, 1234);
  // Reason and extra headers cannot inject lines.
  std::string out;
  sip::ResponseSpec bad_reason = spec(400);
  bad_reason.reason = "Bad\r\nX: y";
  EXPECT_EQ(sip::build_response(req, bad_reason, out), Error::bad_edit_input);
  const sip::ExtraHeader evil[] = {{"Warning", "399 x\r\nInjected: 1"}};
  sip::ResponseSpec bad_extra = spec(400);
  bad_extra.extra = evil;
  EXPECT_EQ(sip::build_response(req, bad_extra, out), Error::bad_edit_input);
  EXPECT_EQ(sip::build_response(req, spec(99), out), Error::bad_edit_input);
  // An existing To tag is kept; no response to an ACK or to a response.
  const std::string resp = load("response_200_register.sip");
  sip::Message rm;
  ASSERT_EQ(sip::parse(resp, rm), Error::ok);
  EXPECT_EQ(sip::build_response(rm, spec(400), out), Error::not_a_request);
  std::string ack = load("bye_route_set.sip");
  ack.replace(0, 3, "ACK");
  ack.replace(ack.find("2 BYE"), 5, "2 ACK");
  sip::Message am;
  ASSERT_EQ(sip::parse(ack, am), Error::ok);
  EXPECT_EQ(sip::build_response(am, spec(400), out), Error::bad_edit_input);
  std::string bye = load("bye_route_set.sip");
  ASSERT_EQ(sip::parse(bye, am), Error::ok);
  out.clear();
  ASSERT_EQ(sip::build_response(am, spec(481, "new"), out), Error::ok);
  ASSERT_EQ(sip::parse(out, r), Error::ok);
  ASSERT_EQ(sip::to_header(r, to), Error::ok);
  EXPECT_EQ(to.tag(), "as4f2b1c");
}
