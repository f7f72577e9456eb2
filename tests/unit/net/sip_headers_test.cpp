// Structured accessors: SIP URI, Via, name-addr, Route/Record-Route/Path, Contact, option tags.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "edge/net/sip/headers.h"
#include "edge/net/sip/message.h"
#include "edge/net/sip/uri.h"

namespace sip = edge::sip;
using sip::Error;
using sip::HeaderId;

namespace {

std::string load(const std::string& name) {
  std::ifstream in(std::string(EDGE_TEST_CORPUS_DIR) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Parsed {
  std::string bytes;
  sip::Message m;
  explicit Parsed(const std::string& file) : bytes(load(file)) {
    EXPECT_EQ(sip::parse(bytes, m), Error::ok) << file;
  }
};

}  // namespace

TEST(SipUri, FullForm) {
  sip::Uri u;
  ASSERT_EQ(
      sip::parse_uri(
          "sips:alice:secret@example.test:5061;transport=tcp;lr;ob?subject=hi&priority=urgent", u),
      Error::ok);
  EXPECT_EQ(u.scheme, sip::Uri::Scheme::sips);
  EXPECT_EQ(u.user, "alice");
  EXPECT_EQ(u.password, "secret");
  EXPECT_EQ(u.host, "example.test");
  EXPECT_EQ(u.port, 5061);
  EXPECT_EQ(u.params, ";transport=tcp;lr;ob");
  EXPECT_EQ(u.headers, "?subject=hi&priority=urgent");
  EXPECT_EQ(u.transport(), "tcp");
  EXPECT_TRUE(u.lr());
  EXPECT_TRUE(u.ob());
  EXPECT_FALSE(u.has_param("maddr"));
}

TEST(SipUri, HostForms) {
  sip::Uri u;
  ASSERT_EQ(sip::parse_uri("sip:example.test", u), Error::ok);
  EXPECT_FALSE(u.has_user);
  EXPECT_FALSE(u.port);
  ASSERT_EQ(sip::parse_uri("SIP:192.0.2.1:5060", u), Error::ok);
  EXPECT_EQ(u.host, "192.0.2.1");
  ASSERT_EQ(sip::parse_uri("sip:bob@[2001:db8::20]:5060;transport=tcp", u), Error::ok);
  EXPECT_TRUE(u.host_is_ipv6);
  EXPECT_EQ(u.host, "2001:db8::20");
  EXPECT_EQ(u.port, 5060);
  ASSERT_EQ(sip::parse_uri("sip:[::ffff:192.0.2.1]", u), Error::ok);
  EXPECT_TRUE(u.host_is_ipv6);
  // Escapes and user-unreserved characters in the user part; a flow token in base64url.
  ASSERT_EQ(sip::parse_uri("sip:%61lice;x=1?y@h.test;lr", u), Error::ok);
  EXPECT_EQ(u.user, "%61lice;x=1?y");
  ASSERT_EQ(sip::parse_uri("sip:AQEBAAAAAAB_AAABEjQ-x@edge.example.test;lr;ob", u), Error::ok);
  EXPECT_EQ(u.user, "AQEBAAAAAAB_AAABEjQ-x");
}

TEST(SipUri, Rejects) {
  sip::Uri u;
  EXPECT_EQ(sip::parse_uri("tel:+123", u), Error::unsupported_scheme);
  EXPECT_EQ(sip::parse_uri("example.test", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:@host", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:a@b@c", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:[2001:db8::1", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:[not-v6]", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:host:99999", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:host:", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:host:50x", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:ho st", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:-host.test", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:a%zz@host", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:host;lr;;=x", u), Error::bad_uri);
  EXPECT_EQ(sip::parse_uri("sip:host;a b", u), Error::bad_uri);
}

TEST(SipVia, AllParameters) {
  sip::Via v;
  ASSERT_EQ(sip::parse_via(
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK77;received=198.51.100.2;rport=40000;"
                "maddr=224.0.0.1;ttl=16;alias;keep=30",
                v),
            Error::ok);
  EXPECT_EQ(v.protocol_name, "SIP");
  EXPECT_EQ(v.protocol_version, "2.0");
  EXPECT_EQ(v.transport, "UDP");
  EXPECT_EQ(v.host, "192.0.2.1");
  EXPECT_EQ(v.port, 5060);
  EXPECT_EQ(v.sent_by, "192.0.2.1:5060");
  EXPECT_EQ(v.branch, "z9hG4bK77");
  EXPECT_TRUE(v.rfc3261_branch());
  EXPECT_EQ(v.received, "198.51.100.2");
  EXPECT_TRUE(v.rport);
  EXPECT_EQ(v.rport_value, 40000);
  EXPECT_EQ(v.maddr, "224.0.0.1");
  EXPECT_EQ(v.ttl, 16);
  EXPECT_TRUE(v.alias);
  EXPECT_TRUE(v.keep);
  EXPECT_EQ(v.keep_value, 30u);
}

TEST(SipVia, ValuelessRportAndKeepIpv6AndLws) {
  sip::Via v;
  ASSERT_EQ(
      sip::parse_via("SIP / 2.0 / TLS [2001:db8::10]:5071 ; rport ; keep ; branch = z9hG4bKx", v),
      Error::ok);
  EXPECT_EQ(v.transport, "TLS");
  EXPECT_TRUE(v.host_is_ipv6);
  EXPECT_EQ(v.host, "2001:db8::10");
  EXPECT_EQ(v.sent_by, "[2001:db8::10]:5071");
  EXPECT_EQ(v.port, 5071);
  EXPECT_TRUE(v.rport);
  EXPECT_FALSE(v.rport_value);
  EXPECT_TRUE(v.keep);
  EXPECT_FALSE(v.keep_value);
  EXPECT_EQ(v.branch, "z9hG4bKx");
  ASSERT_EQ(sip::parse_via("SIP/2.0/WSS df7jal23ls0d.invalid", v), Error::ok);
  EXPECT_FALSE(v.port);
  EXPECT_TRUE(v.params.empty());
  EXPECT_FALSE(v.rfc3261_branch());
  ASSERT_EQ(sip::parse_via("SIP/2.0/UDP h.test;received=2001:db8::9;x-custom=\"quoted;value\"", v),
            Error::ok);
  EXPECT_EQ(v.received, "2001:db8::9");
  EXPECT_EQ(v.param("x-custom")->value, "\"quoted;value\"");
}

TEST(SipVia, Rejects) {
  sip::Via v;
  for (std::string_view bad :
       {"SIP/2.0 192.0.2.1", "SIP/2.0/UDP", "SIP/2.0/UDP ", "SIP/2.0/UDP 192.0.2.1:99999",
        "SIP/2.0/UDP [2001:db8::1", "SIP/2.0/UDP h;rport=x", "SIP/2.0/UDP h;branch",
        "SIP/2.0/UDP h;ttl=300", "SIP/2.0/UDP h;received=", "SIP/2.0/UDP h junk", "SIP/2.0/UDP h;;",
        "SIP/2.0/UDP h;x=\"open", "SIP/2.0/UDP h;keep=-1"}) {
    EXPECT_NE(sip::parse_via(bad, v), Error::ok) << bad;
  }
}

TEST(SipVia, AcrossLinesAndCommas) {
  Parsed p("response_180_many_vias.sip");
  EXPECT_EQ(sip::via_count(p.m), 3u);
  sip::Via v;
  sip::HeaderValue where;
  ASSERT_EQ(sip::via_at(p.m, 1, v, &where), Error::ok);
  EXPECT_EQ(v.host, "192.0.2.1");
  EXPECT_EQ(where.index_in_line, 1u);
  ASSERT_EQ(sip::via_at(p.m, 2, v, &where), Error::ok);
  EXPECT_EQ(v.received, "198.51.100.7");
  EXPECT_EQ(where.index_in_line, 0u);
  EXPECT_EQ(sip::via_at(p.m, 3, v), Error::no_such_header);

  Parsed f("folded_headers.sip");
  EXPECT_EQ(sip::via_count(f.m), 3u);
  ASSERT_EQ(sip::via_at(f.m, 0, v), Error::ok);
  EXPECT_EQ(v.branch, "z9hG4bKfold1");
  EXPECT_TRUE(v.rport);
  ASSERT_EQ(sip::via_at(f.m, 2, v), Error::ok);
  EXPECT_EQ(v.host, "192.0.2.42");
  EXPECT_EQ(v.branch, "z9hG4bKfold3");

  Parsed six("invite_ipv6.sip");
  ASSERT_EQ(sip::via_at(six.m, 0, v), Error::ok);
  EXPECT_EQ(v.host, "2001:db8::10");
  EXPECT_EQ(v.port, 5070);
  EXPECT_EQ(v.received, "2001:db8::10");
  ASSERT_EQ(sip::via_at(six.m, 1, v), Error::ok);
  EXPECT_EQ(v.host, "2001:db8:0:0:1::5");
  EXPECT_EQ(v.maddr, "[ff02::1]");
  EXPECT_EQ(v.ttl, 1);
}

TEST(SipNameAddr, Forms) {
  sip::NameAddr na;
  ASSERT_EQ(
      sip::parse_name_addr("\"Alice, the \\\"tester\\\"\" <sip:alice@example.test>;tag=1", na),
      Error::ok);
  EXPECT_EQ(na.display_name, "\"Alice, the \\\"tester\\\"\"");
  EXPECT_EQ(na.uri, "sip:alice@example.test");
  EXPECT_EQ(na.tag(), "1");
  EXPECT_TRUE(na.angle_brackets);
  ASSERT_EQ(sip::parse_name_addr("Bob Smith <sip:bob@example.test;transport=tcp>", na), Error::ok);
  EXPECT_EQ(na.display_name, "Bob Smith");
  EXPECT_EQ(na.uri, "sip:bob@example.test;transport=tcp");
  EXPECT_EQ(na.tag(), "");
  // addr-spec: parameters after the URI belong to the header.
  ASSERT_EQ(sip::parse_name_addr("sip:bob@example.test;tag=xyz", na), Error::ok);
  EXPECT_FALSE(na.angle_brackets);
  EXPECT_EQ(na.uri, "sip:bob@example.test");
  EXPECT_EQ(na.tag(), "xyz");
  ASSERT_EQ(sip::parse_name_addr("<tel:+15551234>", na), Error::ok);
  EXPECT_EQ(na.uri, "tel:+15551234");
  EXPECT_NE(sip::parse_name_addr("\"open <sip:a@b>", na), Error::ok);
  EXPECT_NE(sip::parse_name_addr("<sip:a@b", na), Error::ok);
  EXPECT_NE(sip::parse_name_addr("<sip:a@b> junk", na), Error::ok);
  EXPECT_NE(sip::parse_name_addr("<sip:a @b>", na), Error::ok);
  EXPECT_NE(sip::parse_name_addr("", na), Error::ok);
}

TEST(SipNameAddr, FromAndToOfCorpus) {
  Parsed p("register_linphone_tls.sip");
  sip::NameAddr from, to;
  ASSERT_EQ(sip::from_header(p.m, from), Error::ok);
  ASSERT_EQ(sip::to_header(p.m, to), Error::ok);
  EXPECT_EQ(from.tag(), "qV3~jzk2q");
  EXPECT_EQ(to.uri, "sip:bob@sip.example.test");
  EXPECT_EQ(to.tag(), "");
  EXPECT_EQ(sip::from_tag(p.m), "qV3~jzk2q");
  EXPECT_EQ(sip::to_tag(p.m), "");

  Parsed f("folded_headers.sip");
  ASSERT_EQ(sip::from_header(f.m, from), Error::ok);
  EXPECT_EQ(from.tag(), "fold-from");

  Parsed u("message_utf8.sip");
  ASSERT_EQ(sip::from_header(u.m, from), Error::ok);
  EXPECT_EQ(from.display_name, "\"Zoë Ångström\"");
}

TEST(SipRoute, RouteRecordRoutePath) {
  Parsed p("invite_core_to_edge.sip");
  sip::RouteValue r;
  sip::HeaderValue where;
  ASSERT_EQ(sip::route_at(p.m, HeaderId::route, 0, r, &where), Error::ok);
  EXPECT_EQ(r.uri.user, "AQEBAAAAAAB_AAABEjQ");
  EXPECT_EQ(r.uri.host, "edge.example.test");
  EXPECT_EQ(r.uri.transport(), "tcp");
  EXPECT_TRUE(r.uri.lr());
  EXPECT_FALSE(r.uri.ob());
  ASSERT_EQ(sip::route_at(p.m, HeaderId::route, 1, r), Error::ok);
  EXPECT_EQ(r.uri.user, "");
  EXPECT_EQ(sip::route_at(p.m, HeaderId::route, 2, r), Error::no_such_header);
  ASSERT_EQ(sip::route_at(p.m, HeaderId::record_route, 0, r), Error::ok);
  EXPECT_EQ(r.uri.host, "core.example.test");
  EXPECT_EQ(r.uri.param("r2")->value, "on");

  Parsed reg("register_path_forwarded.sip");
  ASSERT_EQ(sip::route_at(reg.m, HeaderId::path, 0, r), Error::ok);
  EXPECT_TRUE(r.uri.ob());
  EXPECT_TRUE(r.uri.lr());

  Parsed six("invite_ipv6.sip");
  ASSERT_EQ(sip::route_at(six.m, HeaderId::route, 0, r), Error::ok);
  EXPECT_TRUE(r.uri.host_is_ipv6);
  EXPECT_EQ(r.uri.host, "2001:db8::1");
  EXPECT_EQ(r.uri.port, 5060);

  // A Route without <> is refused: its ";lr" would be ambiguous.
  EXPECT_EQ(sip::parse_route_value("sip:edge.example.test;lr", r), Error::bad_name_addr);
}

TEST(SipContact, OutboundParameters) {
  Parsed p("register_baresip_tcp.sip");
  sip::ContactValue c;
  ASSERT_EQ(sip::parse_contact(p.m.first(HeaderId::contact)->value, c), Error::ok);
  EXPECT_FALSE(c.star);
  EXPECT_TRUE(c.uri_is_sip);
  EXPECT_TRUE(c.ob());
  EXPECT_EQ(c.uri.transport(), "tcp");
  EXPECT_EQ(c.instance, "<urn:uuid:2e7d5a0c-8c3b-4c66-9f1e-3b4c0f7b8a11>");
  EXPECT_EQ(c.reg_id, 1u);
  EXPECT_EQ(c.expires, 60u);

  Parsed l("register_linphone_tls.sip");
  ASSERT_EQ(sip::parse_contact(l.m.first(HeaderId::contact)->value, c), Error::ok);
  EXPECT_EQ(c.instance, "<urn:uuid:5a1b8c2d-0e3f-4a5b-8c7d-9e0f1a2b3c4d>");
  EXPECT_EQ(c.reg_id, 1u);
  EXPECT_FALSE(c.expires);
  EXPECT_EQ(c.addr.param("+org.linphone.specs")->value, "\"lime\"");

  ASSERT_EQ(sip::parse_contact(" * ", c), Error::ok);
  EXPECT_TRUE(c.star);
  ASSERT_EQ(sip::parse_contact("<tel:+15551234>;expires=0", c), Error::ok);
  EXPECT_FALSE(c.uri_is_sip);
  EXPECT_EQ(c.expires, 0u);
  EXPECT_EQ(sip::parse_contact("<sip:a@b>;reg-id=0", c), Error::bad_contact);
  EXPECT_EQ(sip::parse_contact("<sip:a@b>;reg-id=2147483648", c), Error::bad_contact);
  EXPECT_EQ(sip::parse_contact("<sip:a@b>;reg-id=2147483647", c), Error::ok);
  EXPECT_EQ(sip::parse_contact("<sip:a@b>;expires=soon", c), Error::bad_contact);

  // Several contacts in one line; the commas inside quotes and <> do not split.
  const std::string two =
      "REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: "
      "<sip:a@x>;tag=1\r\nTo: <sip:a@x>\r\n"
      "Call-ID: c\r\nCSeq: 1 REGISTER\r\nContact: \"A, B\" <sip:a@h1;x=1,2>;q=0.5, "
      "<sip:a@h2>\r\n\r\n";
  sip::Message m;
  ASSERT_EQ(sip::parse(two, m), Error::ok);
  sip::ValueIterator it(m, HeaderId::contact);
  sip::HeaderValue hv;
  ASSERT_TRUE(it.next(hv));
  EXPECT_EQ(hv.text, "\"A, B\" <sip:a@h1;x=1,2>;q=0.5");
  ASSERT_TRUE(it.next(hv));
  EXPECT_EQ(hv.text, "<sip:a@h2>");
  EXPECT_FALSE(it.next(hv));
  EXPECT_FALSE(it.error());
}

TEST(SipOptionTags, SupportedRequire) {
  Parsed p("register_baresip_tcp.sip");
  EXPECT_TRUE(sip::has_option_tag(p.m, HeaderId::supported, "outbound"));
  EXPECT_TRUE(sip::has_option_tag(p.m, HeaderId::supported, "PATH"));
  EXPECT_FALSE(sip::has_option_tag(p.m, HeaderId::require, "outbound"));
  Parsed r("response_200_register.sip");
  EXPECT_TRUE(sip::has_option_tag(r.m, HeaderId::require, "outbound"));
  Parsed c("compact_forms.sip");
  EXPECT_TRUE(sip::has_option_tag(c.m, HeaderId::supported, "path"));
}

TEST(SipParams, HeaderParamReader) {
  auto p = sip::find_header_param(" ; a = \"x;y\" ;B;c=[2001:db8::1]", "b");
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->has_value);
  p = sip::find_header_param(";a=\"x;y\";b;c=[2001:db8::1]", "C");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->value, "[2001:db8::1]");
  EXPECT_EQ(sip::unquote("\"x;y\""), "x;y");
  sip::HeaderParamReader bad(";a=\"open");
  sip::Param prm;
  EXPECT_FALSE(bad.next(prm));
  EXPECT_TRUE(bad.error());
}
