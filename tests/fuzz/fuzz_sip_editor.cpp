// Fuzz target: parse -> edit -> serialize -> parse. Byte 0 picks the edits, the rest is the
// message. Aborts when the output does not parse or an untouched byte changed.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "edge/net/sip/editor.h"
#include "edge/net/sip/headers.h"
#include "edge/net/sip/message.h"
#include "edge/net/sip/response.h"

namespace sip = edge::sip;
using sip::Error;
using sip::HeaderId;

namespace {

// Names the broken invariant before aborting, so a crash report says what went wrong.
#define check(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

std::vector<std::string_view> untouched_lines(const sip::Message& m,
                                              const std::set<HeaderId>& touched) {
  std::vector<std::string_view> out;
  for (const sip::Header& h : m.headers())
    if (!touched.count(h.id))
      out.push_back(m.raw().substr(h.line_begin, h.line_end - h.line_begin));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t sel = data[0];
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  sip::Message m;
  if (sip::parse(in, m) != Error::ok) return 0;

  sip::Editor e(m);
  std::set<HeaderId> touched;
  long via_delta = 0;
  const bool v6 = sel & 0x80;
  const std::string_view src = v6 ? "2001:db8::7" : "198.51.100.7";
  const sip::Branch branch = sip::make_branch(sel, size);
  if (sel & 0x01 && e.add_received_rport(sel & 0x02 ? 1 : 0, src, 5060, sel & 0x04) == Error::ok)
    touched.insert(HeaderId::via);
  if (m.is_request()) {
    if (sel & 0x08 && e.push_via({"TCP", v6 ? "2001:db8::1" : "edge.example.test", 5060,
                                  branch.view(), true}) == Error::ok) {
      touched.insert(HeaderId::via);
      ++via_delta;
    }
    if (sel & 0x10 && e.pop_routes(sel & 0x02 ? 2 : 1) == Error::ok)
      touched.insert(HeaderId::route);
    if (sel & 0x20) {
      if (e.insert_path("sip:AQEBAAAAAAB_AAABEjQ@edge.example.test;lr;ob") == Error::ok)
        touched.insert(HeaderId::path);
      if (e.insert_record_route("sip:edge.example.test;lr") == Error::ok)
        touched.insert(HeaderId::record_route);
      if (e.insert_record_route("sip:[2001:db8::1]:5061;transport=tls;lr") == Error::ok)
        touched.insert(HeaderId::record_route);
    }
    const Error mf = sel & 0x40 ? e.decrement_max_forwards() : Error::no_such_header;
    if (mf == Error::ok) touched.insert(HeaderId::max_forwards);
    check(mf != Error::max_forwards_exhausted || m.max_forwards() == 0u);
  } else {
    if (sel & 0x08 && e.remove_top_via() == Error::ok) {
      touched.insert(HeaderId::via);
      --via_delta;
    }
    if (sel & 0x10 && e.set_flow_timer(sel) == Error::ok) touched.insert(HeaderId::flow_timer);
  }
  if (sel & 0x20 && e.set_via_keep(0, 30) == Error::ok) touched.insert(HeaderId::via);
  if (sel & 0x04 && e.ensure_content_length() == Error::ok)
    touched.insert(HeaderId::content_length);

  std::string out;
  e.serialize(out);
  check(out.size() == e.size());
  std::string direct(e.size(), '\0');
  check(e.serialize_to(direct) == e.size() && direct == out);
  std::vector<std::string_view> pieces(e.pieces({}));
  check(e.pieces(pieces) == pieces.size());
  std::string gathered;
  for (auto p : pieces) gathered += p;
  check(gathered == out);

  // The edits add at most a few hundred bytes and a handful of lines.
  sip::ParseOptions relaxed;
  relaxed.limits.max_message_size += 4096;
  relaxed.limits.max_header_line += 4096;
  relaxed.limits.max_headers += 16;
  sip::Message f;
  const Error again = sip::parse(out, f, relaxed);
  if (again == Error::missing_header) {
    // Legitimate only when the removed top Via was the only Via: a response for us alone.
    check(via_delta < 0 && m.count(HeaderId::via) == 1);
    return 0;
  }
  check(again == Error::ok);
  check(f.start_line() == m.start_line());
  check(f.body() == m.body());
  check(f.call_id() == m.call_id());
  check(f.cseq().number == m.cseq().number && f.cseq().method == m.cseq().method);
  if (touched.count(HeaderId::via)) {
    sip::ValueIterator it(m, HeaderId::via);
    sip::HeaderValue hv;
    std::size_t n = 0;
    while (it.next(hv)) ++n;
    if (!it.error())
      check(sip::via_count(f) == static_cast<std::size_t>(static_cast<long>(n) + via_delta));
  }
  check(untouched_lines(m, touched) == untouched_lines(f, touched));

  // A locally generated response to a request must parse too.
  if (m.is_request() && m.method() != sip::Method::ack) {
    sip::ResponseSpec spec;
    spec.status = 400 + sel % 200;
    spec.to_tag = "fz";
    if (sel & 0x01) {
      spec.source_ip = src;
      spec.source_port = 4000;
    }
    std::string resp;
    if (sip::build_response(m, spec, resp) == Error::ok) {
      sip::Message r;
      check(sip::parse(resp, r, relaxed) == Error::ok);
      check(r.status() == spec.status && r.call_id() == m.call_id());
    }
  }
  return 0;
}
