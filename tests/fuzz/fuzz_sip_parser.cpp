// Fuzz target: SIP parser, stream framer and every structured accessor on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "edge/net/sip/headers.h"
#include "edge/net/sip/message.h"
#include "edge/net/sip/uri.h"

namespace sip = edge::sip;

namespace {

// Names the broken invariant before aborting, so a crash report says what went wrong.
#define check(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

bool inside(std::string_view outer, std::string_view v) {
  return v.empty() || (v.data() >= outer.data() && v.data() + v.size() <= outer.data() + outer.size());
}

void exercise(const sip::Message& m, std::string_view in) {
  const std::string_view raw = m.raw();
  check(inside(in, raw));
  check(inside(raw, m.body()));
  check(m.headers_end() + 2 <= raw.size());
  for (const sip::Header& h : m.headers()) {
    check(h.line_begin < h.line_end && h.line_end <= m.headers_end());
    check(inside(raw, h.name) && inside(raw, h.value));
    check(!h.name.empty());
  }
  if (m.content_length()) check(m.body().size() == *m.content_length());

  sip::Uri uri;
  if (m.is_request()) (void)sip::parse_uri(m.request_uri(), uri);
  sip::Via via;
  for (std::size_t i = 0; sip::via_at(m, i, via) != sip::Error::no_such_header && i < 64; ++i) {
    check(inside(raw, via.branch) && inside(raw, via.host) && inside(raw, via.params));
  }
  for (sip::HeaderId id : {sip::HeaderId::route, sip::HeaderId::record_route, sip::HeaderId::path}) {
    sip::RouteValue r;
    for (std::size_t i = 0; sip::route_at(m, id, i, r) != sip::Error::no_such_header && i < 64; ++i) {
      (void)r.uri.lr();
      (void)r.uri.transport();
    }
  }
  sip::ValueIterator it(m, sip::HeaderId::contact);
  sip::HeaderValue hv;
  while (it.next(hv)) {
    sip::ContactValue c;
    if (sip::parse_contact(hv.text, c) == sip::Error::ok) check(inside(raw, c.instance));
  }
  sip::NameAddr na;
  if (sip::from_header(m, na) == sip::Error::ok) (void)na.tag();
  if (sip::to_header(m, na) == sip::Error::ok) (void)na.tag();
  (void)sip::has_option_tag(m, sip::HeaderId::require, "outbound");
  (void)sip::has_option_tag(m, sip::HeaderId::supported, "path");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  sip::Message m;
  sip::ParseOptions opt;
  for (bool stream : {false, true}) {
    opt.stream = stream;
    if (sip::parse(in, m, opt) == sip::Error::ok) exercise(m, in);
  }
  // Small limits reach the limit checks with small inputs.
  opt.limits.max_message_size = 512;
  opt.limits.max_header_line = 64;
  opt.limits.max_headers = 8;
  if (sip::parse(in, m, opt) == sip::Error::ok) exercise(m, in);

  const sip::Frame f = sip::frame_stream(in);
  if (f.status == sip::FrameStatus::message || f.status == sip::FrameStatus::keep_alive ||
      f.status == sip::FrameStatus::stray_crlf) {
    check(f.size > 0 && f.size <= in.size());
  }
  if (f.status == sip::FrameStatus::message) {
    opt = {};
    opt.stream = true;
    if (sip::parse(in.substr(0, f.size), m, opt) == sip::Error::ok) exercise(m, in);
  }
  // Resuming a search must give the answer a fresh search gives.
  const sip::Frame half = sip::frame_stream(in.substr(0, size / 2));
  if (half.status == sip::FrameStatus::need_more) {
    const sip::Frame resumed = sip::frame_stream(in, {}, half.scanned);
    check(resumed.status == f.status && resumed.size == f.size && resumed.error == f.error);
  }
  return 0;
}
