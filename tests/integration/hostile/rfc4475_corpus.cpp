// RFC 4475 "SIP Torture Test Messages", written for this project from the RFC's text: each entry
// follows the section's description of what the message exercises (no copied files). Hosts are the
// RFC's example.com / example.net ones; the test runs in a private network namespace where they
// resolve nowhere, so nothing leaves the box. The expected answer is the RFC's for a proxy, applied
// to an edge that forwards every client request to its core and interprets only what RFC 5626 and
// RFC 3261 §16 make it interpret (docs/operations.md, "What the edge answers to malformed or unusual
// requests").
#include "rfc4475_corpus.h"

namespace edge::test::hostile::rfc4475 {
namespace {

// "\n" becomes CRLF (a "\r\n" already written stays), "{S}" the serial, "{CL}" the length of what
// follows the first empty line.
std::string sip(std::string text, const std::string& serial) {
  for (std::size_t p = text.find("{S}"); p != std::string::npos; p = text.find("{S}", p + serial.size()))
    text.replace(p, 3, serial);
  std::string o;
  o.reserve(text.size() + 64);
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) o += '\r';
    o += text[i];
  }
  for (std::size_t p = o.find("{NUL}"); p != std::string::npos; p = o.find("{NUL}", p))
    o.replace(p, 5, 1, '\0');
  const std::size_t body = o.find("\r\n\r\n");
  if (const std::size_t cl = o.find("{CL}"); cl != std::string::npos && body != std::string::npos)
    o.replace(cl, 4, std::to_string(o.size() - (body + 4)));
  return o;
}

// The SDP most of the RFC's INVITEs carry.
constexpr const char* kSdp =
    "v=0\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.3\n"
    "s=-\n"
    "c=IN IP4 192.0.2.3\n"
    "t=0 0\n"
    "m=audio 49217 RTP/AVP 0 12\n"
    "m=video 3227 RTP/AVP 31\n"
    "a=rtpmap:31 LPC\n";

}  // namespace

const char* to_string(Expect e) {
  switch (e) {
    case Expect::forwarded:
      return "forwarded";
    case Expect::edge_400:
      return "400 from the edge";
    case Expect::edge_416:
      return "416 from the edge";
    case Expect::edge_420:
      return "420 from the edge";
    case Expect::edge_483:
      return "483 from the edge";
    case Expect::edge_505:
      return "505 from the edge";
    case Expect::dropped:
      return "dropped";
    case Expect::closed:
      return "closed";
    case Expect::core_or_400:
      return "forwarded or 400";
  }
  return "?";
}

// The REGISTERs use AORs no other message calls (the RFC's own reuse sip:user@example.com): the
// core registers their Contacts, and a later INVITE to that AOR would come back through the edge
// to a Contact with escaped headers (answered 400 by the edge, relayed by the core).
std::vector<Message> corpus(const std::string& s) {
  using E = Expect;
  const std::string sdp = kSdp;
  std::vector<Message> v;
  auto add = [&](const char* name, const char* section, const std::string& text, E udp, E stream) {
    v.push_back({name, section, sip(text, s), udp, stream});
  };

  // ---- 3.1.1 Valid messages: a proxy accepts and forwards every one --------------------------

  // 3.1.1.1: short tortuous INVITE: folding everywhere, LWS around separators, compact and
  // unknown headers, a leading-zero Max-Forwards and CSeq, case games in the Request-URI.
  add("wsinv", "3.1.1.1",
      "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\n"
      "TO :\n"
      " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\n"
      "from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\n"
      "  ;\n"
      "  tag = 98asjd8\n"
      "MaX-fOrWaRdS: 0068\n"
      "Call-ID: wsinv.ndaksdj{S}@192.0.2.1\n"
      "Content-Length   : {CL}\n"
      "cseq: 0009\n"
      "  INVITE\n"
      "Via  : SIP  /   2.0\n"
      " /UDP\n"
      "    192.0.2.2;branch=390skdjuw{S}\n"
      "s :\n"
      "NewFangledHeader:   newfangled value\n"
      " continued newfangled value\n"
      "UnknownHeaderWithUnusualValue: ;;,,;;,;\n"
      "Content-Type: application/sdp\n"
      "Route:\n"
      " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\n"
      "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\n"
      "  branch  =   z9hG4bK9ikj8{S}  ,\n"
      " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\n"
      " z9hG4bK30239{S}\n"
      "m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\n"
      "      newvalue ;\n"
      "  secondparam ; q = 0.33\n"
      "\n" +
          sdp,
      E::forwarded, E::forwarded);

  // 3.1.1.2: every character the grammar allows in a method, header names, URIs and quoted strings.
  add("intmeth", "3.1.1.2",
      "!interesting-Method0123456789_*+`.%indeed'~ "
      "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
      "@example.com SIP/2.0\n"
      "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~{S}\n"
      "To: \"BEL:\\\x07 NUL:\\{NUL} DEL:\\\x7F\" "
      "<sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\n"
      "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>"
      ";fromParam''~+*_!.-%="
      "\"\xD1\x80\xD0\xB0\xD0\xB1\xD0\xBE\xD1\x82\xD0\xB0\xD1\x8E\xD1\x89\xD0\xB8\xD0\xB9\""
      ";tag=_token~1'+`*%!-.\n"
      "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{{S}\n"
      "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\n"
      "Max-Forwards: 255\n"
      "extensionHeader-!.%*+_`'~:\xEF\xBB\xBF\xE5\xA4\xA7\xE5\x81\x9C\xE9\x9B\xBB\n"
      "Content-Length: 0\n"
      "\n",
      E::forwarded, E::forwarded);

  // 3.1.1.3: %-escaping where it is legal (user part, parameters), and where it escapes nothing.
  add("esc01", "3.1.1.3",
      "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\n"
      "To: sip:%75se%72@example.com\n"
      "From: <sip:I%20have%20spaces@example.net>;tag=938\n"
      "Max-Forwards: 87\n"
      "i: esc01.239409asdfakjkn23onasd0-3234{S}\n"
      "CSeq: 234234 INVITE\n"
      "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw{S}\n"
      "C: application/sdp\n"
      "Contact:\n"
      "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\n"
      "Content-Length: {CL}\n"
      "\n" +
          sdp,
      E::forwarded, E::forwarded);

  // 3.1.1.4: escaped NULs in the user parts of To and Contact.
  add("escnull", "3.1.1.4",
      "REGISTER sip:example.com SIP/2.0\n"
      "To: sip:null-%00-null@example.com\n"
      "From: sip:null-%00-null@example.com;tag=839923423\n"
      "Max-Forwards: 70\n"
      "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd{S}\n"
      "CSeq: 14398234 REGISTER\n"
      "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw{S}\n"
      "Contact: <sip:%00@host5.example.com>\n"
      "Contact: <sip:%00%00@host5.example.com>\n"
      "L:0\n"
      "\n",
      E::forwarded, E::forwarded);

  // 3.1.1.5: a % that escapes nothing in the method, legal because % is a token character.
  add("esc02", "3.1.1.5",
      "RE%47IST%45R sip:registrar.example.com SIP/2.0\n"
      "To: \"%Z%45\" <sip:resource@example.com>\n"
      "From: \"%Z%45\" <sip:resource@example.com>;tag=f232jadfj23\n"
      "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf{S}\n"
      "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234{S}\n"
      "CSeq: 29344 RE%47IST%45R\n"
      "Max-Forwards: 70\n"
      "Contact: <sip:alias1@host1.example.com>\n"
      "C%6Fntact: <sip:alias2@host2.example.com>\n"
      "Contact: <sip:alias3@host3.example.com>\n"
      "l: 0\n"
      "\n",
      E::forwarded, E::forwarded);

  // 3.1.1.6: no LWS between a display name and the "<".
  add("lwsdisp", "3.1.1.6",
      "OPTIONS sip:user@example.com SIP/2.0\n"
      "To: sip:user@example.com\n"
      "From: caller<sip:caller@example.com>;tag=323\n"
      "Max-Forwards: 70\n"
      "Call-ID: lwsdisp.1234abcd{S}@funky.example.com\n"
      "CSeq: 60 OPTIONS\n"
      "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw{S}\n"
      "l: 0\n"
      "\n",
      E::forwarded, E::forwarded);

  // 3.1.1.7: long values: a long tag, a long display name, many Via values, a long Call-ID and
  // an unknown header with a long value (kept under the edge's header-line limit).
  {
    const std::string longs(2000, 'a');
    std::string vias;
    for (int i = 0; i < 30; ++i)
      vias += "Via: SIP/2.0/TCP sip" + std::to_string(i) + ".example.com;branch=z9hG4bK" + std::to_string(i) +
              "longreq{S}\n";
    add("longreq", "3.1.1.7",
        "INVITE sip:user@example.com SIP/2.0\n"
        "To: \"I have a user name of " +
            longs +
            " lengths\" <sip:user@example.com>\n"
            "From: sip:caller@example.net;tag=" +
            longs +
            "\n"
            "Call-ID: longreq." +
            longs +
            "{S}@example.com\n"
            "CSeq: 1 INVITE\n"
            "Max-Forwards: 70\n"
            "Via: SIP/2.0/TCP sip33.example.com;branch=z9hG4bKlongreq{S}\n" +
            vias + "Unknown-LongHeader: " + longs +
            "\n"
            "Content-Type: application/sdp\n"
            "l: {CL}\n"
            "\n" +
            sdp,
        E::forwarded, E::forwarded);
  }

  // 3.1.1.8: extra octets after the Content-Length body of a datagram (here a second request):
  // discarded on UDP (RFC 3261 §18.3); on a stream they are the next message, forwarded as well.
  add("dblreq", "3.1.1.8",
      "REGISTER sip:example.com SIP/2.0\n"
      "To: sip:j.user@example.com\n"
      "From: sip:j.user@example.com;tag=43251j3j324\n"
      "Max-Forwards: 8\n"
      "I: dblreq{S}@192.0.2.15\n"
      "Contact: sip:j.user@host.example.com\n"
      "CSeq: 8 REGISTER\n"
      "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492{S}\n"
      "Content-Length: 0\n"
      "\n"
      "INVITE sip:joe@example.com SIP/2.0\n"
      "t: sip:joe@example.com\n"
      "From: sip:caller@example.net;tag=141334\n"
      "Max-Forwards: 8\n"
      "Call-ID: dblreq.0ha0isnda977644900765{S}@192.0.2.15\n"
      "CSeq: 8 INVITE\n"
      "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234{S}\n"
      "Content-Type: application/sdp\n"
      "Content-Length: 0\n"
      "\n",
      E::forwarded, E::forwarded);

  // 3.1.1.9: semicolons in the user part of the Request-URI (a parameter-looking user).
  add("semiuri", "3.1.1.9",
      "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\n"
      "To: sip:j_user@example.com\n"
      "From: sip:caller@example.org;tag=33242\n"
      "Max-Forwards: 3\n"
      "Call-ID: semiuri.0ha0isndaksdj{S}\n"
      "CSeq: 8 OPTIONS\n"
      "Accept: application/sdp, application/pkcs7-mime,\n"
      "        multipart/mixed, multipart/signed,\n"
      "        message/sip, message/sipfrag\n"
      "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw{S}\n"
      "l: 0\n"
      "\n",
      E::forwarded, E::forwarded);

  // 3.1.1.10: Via values with known, unusual and unknown transports.
  add("transports", "3.1.1.10",
      "OPTIONS sip:user@example.com SIP/2.0\n"
      "To: sip:user@example.com\n"
      "From: <sip:caller@example.com>;tag=323\n"
      "Max-Forwards: 70\n"
      "Call-ID: transports.kijh4akdnaqjkwendsasfdj{S}\n"
      "Accept: application/sdp\n"
      "CSeq: 60 OPTIONS\n"
      "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw{S}\n"
      "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\n"
      "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\n"
      "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\n"
      "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\n"
      "l: 0\n"
      "\n",
      E::forwarded, E::forwarded);

  // 3.1.1.11: a multipart/mixed body whose second part is binary (not UTF-8, not text).
  {
    const std::string binary(
        "\x30\x82\x01\x52\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\xa0\x82\x01\x43\xff\x00\x80", 22);
    add("mpart01", "3.1.1.11",
        "MESSAGE sip:kumiko@example.org SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-{S};rport\n"
        "Max-Forwards: 70\n"
        "Route: <sip:127.0.0.1:5080>\n"
        "Identity: "
        "r5mwreLuyDRYBi/0TiPwEsY3rEVsk/"
        "G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/"
        "XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=\n"
        "Contact: <sip:fluffy@127.0.0.1:5070>\n"
        "To: <sip:kumiko@example.org>\n"
        "From: <sip:fluffy@example.com>;tag=2fb0dcc9\n"
        "Call-ID: mpart01.3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..{S}\n"
        "CSeq: 1 MESSAGE\n"
        "Content-Transfer-Encoding: binary\n"
        "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\n"
        "Date: Sat, 15 Oct 2005 04:44:56 GMT\n"
        "User-Agent: SIPimp.org/0.2.5 (curses)\n"
        "Content-Length: {CL}\n"
        "\n"
        "--7a9cbec02ceef655\n"
        "Content-Type: text/plain\n"
        "Content-Transfer-Encoding: binary\n"
        "\n"
        "Hello\n"
        "--7a9cbec02ceef655\n"
        "Content-Type: application/octet-stream\n"
        "Content-Transfer-Encoding: binary\n"
        "\n" +
            binary +
            "\n"
            "--7a9cbec02ceef655--\n",
        E::forwarded, E::forwarded);
  }

  // 3.1.1.12 / 3.1.1.13: responses with an unusual (non-ASCII, "\xff"-free UTF-8) and an empty
  // reason phrase. Their top Via is not the edge's: a response that is not ours is dropped.
  add("unreason", "3.1.1.12",
      "SIP/2.0 200 = 2**3 * 5**2 \xD0\xBD\xD0\xBE \xD1\x81\xD1\x82\xD0\xBE "
      "\xD0\xB4\xD0\xB5\xD0\xB2\xD1\x8F\xD0\xBD\xD0\xBE\xD1\x81\xD1\x82\xD0\xBE "
      "\xD0\xB4\xD0\xB5\xD0\xB2\xD1\x8F\xD1\x82\xD1\x8C - "
      "\xD0\xBF\xD1\x80\xD0\xBE\xD1\x81\xD1\x82\xD0\xBE\xD0\xB5\n"
      "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923{S}\n"
      "Call-ID: unreason.1234ksdfak3j2erwedfsASdf{S}\n"
      "CSeq: 35 INVITE\n"
      "From: sip:user@example.com;tag=11141343\n"
      "To: sip:user@example.edu;tag=2229\n"
      "Content-Length: {CL}\n"
      "Content-Type: application/sdp\n"
      "Contact: <sip:user@host198.example.com>\n"
      "\n" +
          sdp,
      E::dropped, E::dropped);
  add("noreason", "3.1.1.13",
      "SIP/2.0 100 \n"
      "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe{S}\n"
      "Call-ID: noreason.asndj203insdf99223ndf{S}\n"
      "CSeq: 35 INVITE\n"
      "From: <sip:user@example.com>;tag=39ansfi3\n"
      "To: <sip:user@example.edu>;tag=902jndnke3\n"
      "Content-Length: 0\n"
      "Contact: <sip:user@host105.example.com>\n"
      "\n",
      E::dropped, E::dropped);

  // ---- 3.1.2 Invalid messages: 400 where the edge reads the broken part -----------------------

  // 3.1.2.1: extraneous separators in Via and Contact parameters.
  add("badinv01", "3.1.2.1",
      "INVITE sip:user@example.com SIP/2.0\n"
      "To: sip:j.user@example.com\n"
      "From: sip:caller@example.net;tag=134161461246\n"
      "Max-Forwards: 7\n"
      "Call-ID: badinv01.0ha0isndaksdjasdf3234nas{S}\n"
      "CSeq: 8 INVITE\n"
      "Via: SIP/2.0/UDP 192.0.2.15;;,;,,\n"
      "Contact: \"Joe\" <sip:joe@example.org>;;;;\n"
      "Content-Length: {CL}\n"
      "Content-Type: application/sdp\n"
      "\n" +
          sdp,
      E::edge_400, E::edge_400);

  // 3.1.2.2: Content-Length larger than the message: a datagram is 400; a stream waits for the rest
  // and closes at limits.body_read_timeout_ms.
  add("clerr", "3.1.2.2",
      "INVITE sip:user@example.com SIP/2.0\n"
      "Max-Forwards: 80\n"
      "To: sip:j.user@example.com\n"
      "From: sip:caller@example.net;tag=93942939o2\n"
      "Contact: <sip:caller@hungry.example.net>\n"
      "Call-ID: clerr.0ha0isndaksdjweiafasdk3{S}\n"
      "CSeq: 8 INVITE\n"
      "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523{S}\n"
      "Content-Type: application/sdp\n"
      "Content-Length: 9999\n"
      "\n" +
          sdp,
      E::edge_400, E::closed);

  // 3.1.2.3: a negative Content-Length.
  add("ncl", "3.1.2.3",
      "INVITE sip:user@example.com SIP/2.0\n"
      "Max-Forwards: 254\n"
      "To: sip:j.user@example.com\n"
      "From: sip:caller@example.net;tag=32394234\n"
      "Call-ID: ncl.0ha0isndaksdj2193423r542w35{S}\n"
      "CSeq: 0 INVITE\n"
      "Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw{S}\n"
      "Contact: <sip:caller@example53.example.net>\n"
      "Content-Type: application/sdp\n"
      "Content-Length: -999\n"
      "\n" +
          sdp,
      E::edge_400, E::closed);

  // 3.1.2.4: scalar values above their ranges (Max-Forwards 300, a CSeq over 2**32).
  add("scalar02", "3.1.2.4",
      "REGISTER sip:example.com SIP/2.0\n"
      "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3{S}\n"
      "To: <sip:user@example.com>\n"
      "From: <sip:user@example.com>;tag=239232jh3\n"
      "CSeq: 36893488147419103232 REGISTER\n"
      "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32{S}\n"
      "Max-Forwards: 300\n"
      "Expires: 10000000000000000000000000000000000000000\n"
      "Contact: <sip:user@host129.example.com>\n"
      "  ;expires=280297596632815\n"
      "Content-Length: 0\n"
      "\n",
      E::edge_400, E::edge_400);

  // 3.1.2.5: a response with overlarge scalars: not ours, dropped.
  add("scalarlg", "3.1.2.5",
      "SIP/2.0 503 Service Unavailable\n"
      "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw{S};received=192.0.2.129\n"
      "To: <sip:user@example.com>\n"
      "From: <sip:other@example.net>;tag=2easdjfejw\n"
      "CSeq: 9292394834772304023312 OPTIONS\n"
      "Call-ID: scalarlg.9292394834772304023312{S}\n"
      "Retry-After: 949302838503028349304023988\n"
      "Warning: 1812 overture \"In Progress\"\n"
      "Content-Length: 0\n"
      "\n",
      E::dropped, E::dropped);

  // 3.1.2.6: an unterminated quoted string in a display name. The edge reads no display name:
  // forwarded (the core may refuse it) or 400, never silence.
  add("quotbal", "3.1.2.6",
      "INVITE sip:user@example.com SIP/2.0\n"
      "To: \"Mr. J. User <sip:j.user@example.com>\n"
      "From: sip:caller@example.net;tag=93334\n"
      "Max-Forwards: 10\n"
      "Call-ID: quotbal.aksdj{S}\n"
      "Contact: <sip:caller@host59.example.net>\n"
      "CSeq: 0 INVITE\n"
      "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234{S}\n"
      "Content-Type: application/sdp\n"
      "Content-Length: {CL}\n"
      "\n" +
          sdp,
      E::core_or_400, E::core_or_400);

  // 3.1.2.7: the Request-URI enclosed in <>.
  add("ltgtruri", "3.1.2.7",
      "INVITE <sip:user@example.com> SIP/2.0\n"
      "To: sip:user@example.com\n"
      "From: sip:caller@example.net;tag=39291\n"
      "Max-Forwards: 23\n"
      "Call-ID: ltgtruri.1@192.0.2.5{S}\n"
      "CSeq: 1 INVITE\n"
      "Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKkdjuw{S}\n"
      "Contact: <sip:caller@host5.example.net>\n"
      "Content-Type: application/sdp\n"
      "Content-Length: {CL}\n"
      "\n" +
          sdp,
      E::edge_400, E::edge_400);

  // 3.1.2.8: LWS inside the Request-URI.
  add("lwsruri", "3.1.2.8",
      "INVITE sip:user@example.com; lr SIP/2.0\n"
      "To: sip:user@example.com;tag=3xfe-9921883-z9f\n"
      "From: sip:caller@example.net;tag=231413434\n"
      "Max-Forwards: 5\n"
      "Call-ID: lwsruri.2098asdfnkqwweq{S}\n"
      "CSeq: 2353 INVITE\n"
      "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395{S}\n"
      "Contact: <sip:caller@host1.example.net>\n"
      "Content-Type: application/sdp\n"
      "Content-Length: {CL}\n"
      "\n" +
          sdp,
      E::edge_400, E::edge_400);

  // 3.1.2.9: several SP between the Request-Line elements.
  add("lwsstart", "3.1.2.9",
      "INVITE  sip:user@example.com  SIP/2.0\n"
      "Max-Forwards: 8\n"
      "To: sip:user@example.com\n"
      "From: sip:caller@example.net;tag=8814\n"
      "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com{S}\n"
      "CSeq: 1893884 INVITE\n"
      "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923{S}\n"
      "Contact: <sip:caller@host1.example.net>\n"
      "Content-Type: application/sdp\n"
      "Content-Length: {CL}\n"
      "\n" +
          sdp,
      E::edge_400, E::edge_400);

  // 3.1.2.10: SP at the end of the Request-Line.
  add("trws", "3.1.2.10",
      "OPTIONS sip:remote-target@example.com SIP/2.0  \n"
      "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK299342093{S}\n"
      "To: <sip:remote-target@example.com>\n"
      "From: <sip:local-resource@example.com>;tag=329429089\n"
      "Call-ID: trws.oicu34958239neffasdhr2345r{S}\n"
      "Accept: application/sdp\n"
      "CSeq: 238923 OPTIONS\n"
      "Max-Forwards: 70\n"
      "Content-Length: 0\n"
      "\n",
      E::edge_400, E::edge_400);

  // 3.1.2.11: escaped headers in the Request-URI: a proxy must not forward them; 400.
  add("escruri", "3.1.2.11",
      "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\n"
      "To: sip:user@example.com\n"
      "From: sip:caller@example.net;tag=341518\n"
      "Max-Forwards: 7\n"
      "Contact: <sip:caller@host39923.example.net>\n"
      "Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5{S}\n"
      "CSeq: 39234321 INVITE\n"
      "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw{S}\n"
      "Content-Type: application/sdp\n"
      "Content-Length: {CL}\n"
      "\n" +
          sdp,
      E::edge_400, E::edge_400);

  // 3.1.2.12: a Date with a time zone other than GMT: a proxy forwards it.
  add("baddate", "3.1.2.12",
      "INVITE sip:user@example.com SIP/2.0\n"
      "To: sip:user@example.com\n"
      "From: sip:caller@example.net;tag=2234923\n"
      "Max-Forwards: 70\n"
      "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234{S}\n"
      "CSeq: 1392934 INVITE\n"
      "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw{S}\n"
      "Date: Fri, 01 Jan 2010 16:00:00 EST\n"
      "Contact: <sip:caller@host5.example.net>\n"
      "Content-Type: application/sdp\n"
      "Content-Length: {CL}\n"
      "\n" +
          sdp,
      E::forwarded, E::forwarded);

  // 3.1.2.13: a Contact URI with headers not enclosed in <>. The edge reads Contact only to tell an
  // outbound REGISTER: forwarded (the registrar decides) or 400.
  add("regbadct", "3.1.2.13",
      "REGISTER sip:example.com SIP/2.0\n"
      "To: sip:regbadct@example.com\n"
      "From: sip:regbadct@example.com;tag=998332\n"
      "Max-Forwards: 70\n"
      "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1{S}\n"
      "CSeq: 1 REGISTER\n"
      "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw{S}\n"
      "Contact: sip:regbadct@example.com?Route=%3Csip:sip.example.com%3E\n"
      "l: 0\n"
      "\n",
      E::core_or_400, E::core_or_400);

  // 3.1.2.14: spaces inside an addr-spec (To, From): not read by the edge; forwarded or 400.
  add("badaspec", "3.1.2.14",
      "OPTIONS sip:user@example.org SIP/2.0\n"
      "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234{S}\n"
      "Max-Forwards: 70\n"
      "From: \"Bell, Alexander\" <sip:a.g.bell@example.com>;tag=433423\n"
      "To: \"Watson, Thomas\" < sip:t.watson@example.org >\n"
      "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3{S}\n"
      "Accept: application/sdp\n"
      "CSeq: 3923239 OPTIONS\n"
      "l: 0\n"
      "\n",
      E::core_or_400, E::core_or_400);

  // 3.1.2.15: non-token characters in an unquoted display name: forwarded or 400.
  add("baddn", "3.1.2.15",
      "OPTIONS sip:t.watson@example.org SIP/2.0\n"
      "Via: SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw{S}\n"
      "Max-Forwards: 70\n"
      "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43\n"
      "To: Watson, Thomas <sip:t.watson@example.org>\n"
      "Call-ID: baddn.31415@c.example.com{S}\n"
      "Accept: application/sdp\n"
      "CSeq: 3923239 OPTIONS\n"
      "l: 0\n"
      "\n",
      E::core_or_400, E::core_or_400);

  // 3.1.2.16: an unknown protocol version: 505.
  add("badvers", "3.1.2.16",
      "OPTIONS sip:t.watson@example.org SIP/7.0\n"
      "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw{S}\n"
      "Max-Forwards:     70\n"
      "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\n"
      "To:      T. Watson <sip:t.watson@example.org>\n"
      "Call-ID: badvers.31417@c.example.com{S}\n"
      "CSeq:    1 OPTIONS\n"
      "l: 0\n"
      "\n",
      E::edge_505, E::edge_505);

  // 3.1.2.17: the CSeq method differs from the request's method.
  add("mismatch01", "3.1.2.17",
      "OPTIONS sip:user@example.com SIP/2.0\n"
      "To: sip:j.user@example.com\n"
      "From: sip:caller@example.net;tag=34525\n"
      "Max-Forwards: 6\n"
      "Call-ID: mismatch01.dfaosidfoiwe83ifkdf{S}\n"
      "CSeq: 8 INVITE\n"
      "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw{S}\n"
      "l: 0\n"
      "\n",
      E::edge_400, E::edge_400);

  // 3.1.2.18: an unknown method whose CSeq names another method.
  add("mismatch02", "3.1.2.18",
      "NEWMETHOD sip:user@example.com SIP/2.0\n"
      "To: sip:j.user@example.com\n"
      "From: sip:caller@example.net;tag=34525\n"
      "Max-Forwards: 6\n"
      "Call-ID: mismatch02.dfaosidfoiwe83ifkdf{S}\n"
      "CSeq: 8 INVITE\n"
      "Contact: <sip:caller@host.example.net>\n"
      "Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw{S}\n"
      "Content-Type: application/sdp\n"
      "l: {CL}\n"
      "\n" +
          sdp,
      E::edge_400, E::edge_400);

  // 3.1.2.19: a response code over 699: dropped.
  add("bigcode", "3.1.2.19",
      "SIP/2.0 4294967301 better not break the receiver\n"
      "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe{S}\n"
      "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i{S}\n"
      "CSeq: 353494 INVITE\n"
      "From: <sip:user@example.com>;tag=39ansfi3\n"
      "To: <sip:user@example.edu>;tag=902jndnke3\n"
      "Content-Length: 0\n"
      "Contact: <sip:user@host105.example.com>\n"
      "\n",
      E::dropped, E::dropped);

  // ---- 3.2 Transaction layer ---------------------------------------------------------------

  // 3.2.1: a branch without the RFC 3261 magic cookie: valid, forwarded.
  add("badbranch", "3.2.1",
      "OPTIONS sip:user@example.com SIP/2.0\n"
      "To: sip:user@example.com\n"
      "From: sip:caller@example.org;tag=33242\n"
      "Max-Forwards: 3\n"
      "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{S}\n"
      "Accept: application/sdp\n"
      "Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n{S}\n"
      "CSeq: 8 OPTIONS\n"
      "l: 0\n"
      "\n",
      E::forwarded, E::forwarded);

  // ---- 3.3 Application layer ---------------------------------------------------------------

  // 3.3.1: Call-ID, From and To missing: 400 from what reads.
  add("insuf", "3.3.1",
      "INVITE sip:user@example.com SIP/2.0\n"
      "CSeq: 193942 INVITE\n"
      "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf{S}\n"
      "Content-Type: application/sdp\n"
      "l: {CL}\n"
      "\n" +
          sdp,
      E::edge_400, E::edge_400);

  // 3.3.2: a Request-URI scheme nobody knows: 416.
  add("unkscm", "3.3.2",
      "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\n"
      "To: sip:user@example.com\n"
      "From: sip:caller@example.net;tag=384\n"
      "Max-Forwards: 3\n"
      "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34{S}\n"
      "CSeq: 3923423 OPTIONS\n"
      "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234{S}\n"
      "Content-Length: 0\n"
      "\n",
      E::edge_416, E::edge_416);

  // 3.3.3: a registered scheme that never names a SIP resource: an edge treats it as unknown, 416.
  add("novelsc", "3.3.3",
      "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\n"
      "To: sip:user@example.com\n"
      "From: sip:caller@example.net;tag=384\n"
      "Max-Forwards: 3\n"
      "Call-ID: novelsc.asdfasser0q239nwsdfasdkl34{S}\n"
      "CSeq: 3923423 OPTIONS\n"
      "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234{S}\n"
      "Content-Length: 0\n"
      "\n",
      E::edge_416, E::edge_416);

  // 3.3.4: unknown schemes in To, From and Contact: the edge does not route by them; forwarded.
  add("unksm2", "3.3.4",
      "REGISTER sip:example.com SIP/2.0\n"
      "To: isbn:2983792873\n"
      "From: <http://www.example.com>;tag=3234233\n"
      "Call-ID: unksm2.daksdj@hyphenated-host.example.com{S}\n"
      "CSeq: 234902 REGISTER\n"
      "Max-Forwards: 70\n"
      "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw{S}\n"
      "Contact: <name:John_Smith>\n"
      "l: 0\n"
      "\n",
      E::core_or_400, E::core_or_400);

  // 3.3.5: Require and Proxy-Require with tags nobody supports: the proxy answers 420 listing the
  // Proxy-Require one (Require is for the UAS).
  add("bext01", "3.3.5",
      "OPTIONS sip:user@example.com SIP/2.0\n"
      "To: sip:j_user@example.com\n"
      "From: sip:caller@example.net;tag=242etr\n"
      "Max-Forwards: 6\n"
      "Call-ID: bext01.0ha0isndaksdj{S}\n"
      "Require: nothingSupportsThis, nothingSupportsThisEither\n"
      "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\n"
      "CSeq: 8 OPTIONS\n"
      "Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw{S}\n"
      "Content-Length: 0\n"
      "\n",
      E::edge_420, E::edge_420);

  // 3.3.6: an unknown Content-Type: for the UAS to refuse (415), a proxy forwards.
  add("invut", "3.3.6",
      "INVITE sip:user@example.com SIP/2.0\n"
      "Contact: <sip:caller@host5.example.net>\n"
      "To: sip:j.user@example.com\n"
      "From: sip:caller@example.net;tag=8392034\n"
      "Max-Forwards: 70\n"
      "Call-ID: invut.0ha0isndaksdjadsfij34n23d{S}\n"
      "CSeq: 235448 INVITE\n"
      "Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw{S}\n"
      "Content-Type: application/unknownformat\n"
      "Content-Length: {CL}\n"
      "\n"
      "<audio>\n"
      " <pcmu port=\"443\"/>\n"
      "</audio>\n",
      E::forwarded, E::forwarded);

  // 3.3.7: an unknown authorization scheme: for the registrar; forwarded.
  add("regaut01", "3.3.7",
      "REGISTER sip:example.com SIP/2.0\n"
      "To: sip:j.user@example.com\n"
      "From: sip:j.user@example.com;tag=87321hj23128\n"
      "Max-Forwards: 8\n"
      "Call-ID: regaut01.0ha0isndaksdj{S}\n"
      "CSeq: 9338 REGISTER\n"
      "Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw{S}\n"
      "Authorization: NoOneKnowsThisScheme opaque-data=here\n"
      "Content-Length:0\n"
      "\n",
      E::forwarded, E::forwarded);

  // 3.3.8: several values in single-valued headers (Call-ID, To, From, Max-Forwards): 400.
  add("multi01", "3.3.8",
      "INVITE sip:user@company.com SIP/2.0\n"
      "Contact: <sip:caller@host25.example.net>\n"
      "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw{S}\n"
      "Max-Forwards: 70\n"
      "CSeq: 5 INVITE\n"
      "Call-ID: multi01.98asdh@192.0.2.1{S}\n"
      "CSeq: 59 INVITE\n"
      "Call-ID: multi01.98asdh@192.0.2.2{S}\n"
      "From: sip:caller@example.com;tag=3413415\n"
      "To: sip:user@example.com\n"
      "To: sip:other@example.net\n"
      "From: sip:caller@example.net;tag=2923420123\n"
      "Content-Type: application/sdp\n"
      "l: {CL}\n"
      "Contact: <sip:caller@host36.example.net>\n"
      "Max-Forwards: 5\n"
      "\n" +
          sdp,
      E::edge_400, E::edge_400);

  // 3.3.9: two different Content-Length values: 400 (a stream cannot be framed: 400, then closed).
  add("mcl01", "3.3.9",
      "OPTIONS sip:user@example.com SIP/2.0\n"
      "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423{S}\n"
      "To: <sip:user@example.com>\n"
      "From: <sip:other@example.net>;tag=3923942\n"
      "Call-ID: mcl01.fhuaksdfsasdf{S}\n"
      "CSeq: 15932 OPTIONS\n"
      "Content-Length: 13\n"
      "Max-Forwards: 60\n"
      "Content-Length: 5\n"
      "Content-Type: text/plain\n"
      "\n"
      "There's no way to know how many octets are supposed to be here.\n",
      E::edge_400, E::closed);

  // 3.3.10: a 200 whose Via sent-by is a broadcast address: not ours, dropped.
  add("bcast", "3.3.10",
      "SIP/2.0 200 OK\n"
      "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923{S}\n"
      "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\n"
      "Call-ID: bcast.1234ksdfak3j2erwedfsASdf{S}\n"
      "CSeq: 35 INVITE\n"
      "From: sip:user@example.com;tag=11141343\n"
      "To: sip:user@example.edu;tag=2229\n"
      "Content-Length: 0\n"
      "Contact: <sip:user@host28.example.com>\n"
      "\n",
      E::dropped, E::dropped);

  // 3.3.11: Max-Forwards 0 to a resource that is not the edge: 483.
  add("zeromf", "3.3.11",
      "OPTIONS sip:user@example.com SIP/2.0\n"
      "To: sip:user@example.com\n"
      "From: sip:caller@example.net;tag=3ghsd41\n"
      "Call-ID: zeromf.1234abcd{S}@funky.example.com\n"
      "CSeq: 60 OPTIONS\n"
      "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw{S}\n"
      "Max-Forwards: 0\n"
      "l: 0\n"
      "\n",
      E::edge_483, E::edge_483);

  // 3.3.12 / 3.3.13 / 3.3.14: REGISTERs whose Contacts carry header parameters, URI parameters
  // and an escaped header: for the registrar; forwarded.
  add("cparam01", "3.3.12",
      "REGISTER sip:example.com SIP/2.0\n"
      "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw{S}\n"
      "Max-Forwards: 70\n"
      "From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe\n"
      "To: sip:watson@example.com\n"
      "Call-ID: cparam01.70710@saturn.example.com{S}\n"
      "CSeq: 2 REGISTER\n"
      "Contact: sip:+19725552222@gw1.example.net;unknownparam\n"
      "l: 0\n"
      "\n",
      E::forwarded, E::forwarded);
  add("cparam02", "3.3.13",
      "REGISTER sip:example.com SIP/2.0\n"
      "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw{S}\n"
      "Max-Forwards: 70\n"
      "From: sip:watson@example.com;tag=838293\n"
      "To: sip:watson@example.com\n"
      "Call-ID: cparam02.70710@saturn.example.com{S}\n"
      "CSeq: 3 REGISTER\n"
      "Contact: <sip:+19725552222@gw1.example.net;unknownparam>\n"
      "l: 0\n"
      "\n",
      E::forwarded, E::forwarded);
  add("regescrt", "3.3.14",
      "REGISTER sip:example.com SIP/2.0\n"
      "To: sip:regescrt@example.com\n"
      "From: sip:regescrt@example.com;tag=8\n"
      "Max-Forwards: 70\n"
      "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1{S}\n"
      "CSeq: 14398234 REGISTER\n"
      "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw{S}\n"
      "M: <sip:regescrt@example.com?Route=%3Csip:sip.example.com%3E>\n"
      "L:0\n"
      "\n",
      E::forwarded, E::forwarded);

  // 3.3.15: an Accept nobody can satisfy: for the UAS; forwarded.
  add("sdp01", "3.3.15",
      "INVITE sip:user@example.com SIP/2.0\n"
      "To: sip:j_user@example.com\n"
      "Contact: <sip:caller@host15.example.net>\n"
      "From: sip:caller@example.net;tag=234\n"
      "Max-Forwards: 5\n"
      "Call-ID: sdp01.ndaksdj9342dasdd{S}\n"
      "Accept: text/nobodyKnowsThis\n"
      "CSeq: 8 INVITE\n"
      "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw{S}\n"
      "Content-Length: {CL}\n"
      "Content-Type: application/sdp\n"
      "\n" +
          sdp,
      E::forwarded, E::forwarded);

  // ---- 3.4 Backward compatibility ------------------------------------------------------------

  // 3.4.1: RFC 2543 syntax: no magic cookie, no From tag: forwarded.
  add("inv2543", "3.4.1",
      "INVITE sip:UserB@example.com SIP/2.0\n"
      "Via: SIP/2.0/UDP iftgw.example.com\n"
      "From: <sip:+13035551111@ift.client.example.net;user=phone>\n"
      "Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>\n"
      "To: sip:+16505552222@ss1.example.net;user=phone\n"
      "Call-ID: inv2543.1717@ift.client.example.com{S}\n"
      "CSeq: 56 INVITE\n"
      "Content-Type: application/sdp\n"
      "Content-Length: {CL}\n"
      "\n" +
          sdp,
      E::forwarded, E::forwarded);

  return v;
}

}  // namespace edge::test::hostile::rfc4475
