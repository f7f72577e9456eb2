// The RFC 5626 edge-proxy rules: what to add, verify, answer and where to send, for every message.
#include "edge/net/proxy/edge_proxy.h"

#include "edge/net/sip/editor.h"
#include "edge/net/sip/headers.h"
#include "edge/net/sip/message.h"
#include "edge/net/sip/response.h"
#include "edge/net/sip/uri.h"
#include "edge/net/token/hsm_outcome.h"
#include "edge/net/token/token.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>

namespace edge::net {

namespace {

using sip::Error;
using sip::HeaderId;
using sip::Method;

bool ieq(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

bool is_stream(flow::Transport t) noexcept { return t == flow::Transport::tcp || t == flow::Transport::tls; }

// The `transport` URI parameter value for a transport (RFC 3261 §19.1.1, RFC 7118);
// empty for UDP, the default.
std::string_view uri_transport(flow::Transport t) noexcept {
  switch (t) {
    case flow::Transport::udp:
      return {};
    case flow::Transport::tcp:
      return "tcp";
    case flow::Transport::tls:
      return "tls";
    case flow::Transport::sctp:
      return "sctp";
    case flow::Transport::tls_sctp:
      return "tls-sctp";
    case flow::Transport::ws:
    case flow::Transport::wss:
      // RFC 7118 §5.2 defines the one value "ws" for WebSocket, secure or not (the
      // Via says WS or WSS, the URI does not); "wss" is no registered transport.
      return "ws";
  }
  return {};
}

// Address text without brackets, for received= (RFC 3581 / RFC 5118) and responses.
struct IpText {
  std::array<char, INET6_ADDRSTRLEN> buf{};
  std::string_view view() const noexcept { return {buf.data(), std::strlen(buf.data())}; }
};
IpText ip_text(const flow::Endpoint& e) noexcept {
  IpText t;
  const int af = e.family == flow::Family::ipv4 ? AF_INET : AF_INET6;
  if (!inet_ntop(af, e.address.data(), t.buf.data(), t.buf.size())) t.buf[0] = '\0';
  return t;
}

// "sip:[user@]host[:port][;transport=x];lr[;ob]" for one of our addresses.
std::string our_uri(const AdvertisedAddress& a, std::string_view user, bool ob) {
  std::string s;
  s.reserve(16 + user.size() + a.host.size());
  s += "sip:";
  if (!user.empty()) {
    s += user;
    s += '@';
  }
  const bool v6 = a.host.find(':') != std::string::npos;
  if (v6) s += '[';
  s += a.host;
  if (v6) s += ']';
  s += ':';
  s += std::to_string(a.port);
  if (auto t = uri_transport(a.transport); !t.empty()) {
    s += ";transport=";
    s += t;
  }
  s += ";lr";
  if (ob) s += ";ob";
  return s;
}

// A Route URI of ours copied for Record-Route without ;ob (RFC 5626 §5.3.1).
std::string without_ob(std::string_view uri_text, const sip::Uri& uri) {
  std::string s;
  const std::size_t params_at = uri.params.empty()
                                    ? uri_text.size() - uri.headers.size()
                                    : static_cast<std::size_t>(uri.params.data() - uri_text.data());
  s.assign(uri_text.substr(0, params_at));
  sip::UriParamReader r(uri.params);
  sip::Param p;
  while (r.next(p)) {
    if (ieq(p.name, "ob")) continue;
    s += ';';
    s += p.name;
    if (p.has_value) {
      s += '=';
      s += p.value;
    }
  }
  return s;
}

// RFC 5658 §3: one Record-Route value will do only when the side the request
// arrived on and the side it leaves on are one address, port and transport. IP
// literals compare as addresses ("2001:db8::10" is "2001:DB8:0::10"), names
// without case.
bool same_interface(const AdvertisedAddress& a, const AdvertisedAddress& b) noexcept {
  if (a.transport != b.transport || a.port != b.port) return false;
  for (const int af : {AF_INET, AF_INET6}) {
    std::array<unsigned char, 16> x{}, y{};
    const bool xa = inet_pton(af, a.host.c_str(), x.data()) == 1;
    const bool ya = inet_pton(af, b.host.c_str(), y.data()) == 1;
    if (xa || ya) return xa && ya && x == y;
  }
  return ieq(a.host, b.host);
}

// RFC 3261 §12.1 and RFC 6665: requests that create a dialog when sent outside one.
bool dialog_forming(const sip::Message& m) {
  switch (m.method()) {
    case Method::invite:
    case Method::subscribe:
    case Method::refer:
    case Method::notify:
      break;
    default:
      return false;
  }
  sip::NameAddr to;
  return sip::to_header(m, to) == Error::ok && to.tag().empty();
}

// The registration time a 2xx to REGISTER grants (RFC 3261 §10.3 step 8): the
// largest Contact expires, a Contact without one taking the Expires header
// (3600 without either, §10.2.1.1). 0 when it lists no binding (a query, or
// every binding removed).
std::uint32_t granted_expiry(const sip::Message& m) {
  std::optional<std::uint32_t> header;
  if (const sip::Header* h = m.first(HeaderId::expires)) {
    std::uint64_t v = 0;
    const std::string_view t = h->value;
    bool digits = !t.empty() && t.size() <= 10;
    for (const char ch : t) {
      if (ch < '0' || ch > '9') {
        digits = false;
        break;
      }
      v = v * 10 + static_cast<std::uint64_t>(ch - '0');
    }
    if (digits) header = static_cast<std::uint32_t>(std::min<std::uint64_t>(v, UINT32_MAX));
  }
  std::uint32_t best = 0;
  sip::ValueIterator it(m, HeaderId::contact);
  sip::HeaderValue hv;
  while (it.next(hv)) {
    sip::ContactValue cv;
    if (sip::parse_contact(hv.text, cv) != Error::ok || cv.star) continue;
    const std::uint32_t e = cv.expires ? *cv.expires : header.value_or(3600);
    if (e > best) best = e;
  }
  return best;
}

std::string restore_strict_route(const ProxyConfig& cfg, const sip::Message& m);

char method_class(Method m) noexcept {
  switch (m) {
    case Method::invite:
      return 'I';
    case Method::ack:
      return 'A';
    case Method::cancel:
      return 'C';
    default:
      return 'N';
  }
}

}  // namespace

// Everything one on_message call works with.
struct EdgeProxy::Ctx {
  Ctx(const Inbound& i, Network& o, Clock::time_point n) : in(i), out(o), now(n), resumed(i.hsm) {}

  Inbound in;  // a copy: from_core is decided again for a core's own connection
  Network& out;
  sip::Message msg;
  Clock::time_point now;
  const flow::HsmOutcome* resumed;         // set when the message comes back from HSM work
  std::shared_ptr<Redelivery> redelivery;  // fetched once the message needs the HSM
  IpText src;                              // in.flow.remote address text
  std::string restored;                    // a strict-routed request rewritten (restore_strict_route)
  std::string tx_key;                      // upstream transaction key (UDP client), empty when untracked
  // Our Route values at the top of the request (RFC 3261 §16.4), in order.
  struct OwnRoute {
    std::string_view uri_text;
    sip::Uri uri;
    // A user part that is no token (an outbound proxy configured as
    // sip:alice@edge;lr) is ordinary loose routing (docs/token-format.md).
    bool has_token() const noexcept { return uri.has_user && flow::token_shaped(uri.user); }
  };
  std::array<OwnRoute, ProxyLimits::kMaxOwnRoutes> routes{};
  std::size_t own_routes = 0;       // how many of them are popped when forwarding
  const OwnRoute* token = nullptr;  // the one whose token picked the flow
};

EdgeProxy::EdgeProxy(std::shared_ptr<ProxyState> state, ProxyConfig config,
                     std::shared_ptr<flow::TokenCodec> codec)
    : state_(std::move(state)),
      counters_(state_ ? &state_->counters() : nullptr),
      config_(std::move(config)),
      codec_(std::move(codec)),
      retry_after_(std::to_string(config_.limits.retry_after_seconds)) {
  if (!state_) throw std::invalid_argument("proxy: no ProxyState given");
  config_.validate();
  if (config_.flow_token_security && !codec_)
    throw std::invalid_argument("proxy: flow-token security enabled but no TokenCodec given");
}

EdgeProxy::~EdgeProxy() = default;

void EdgeProxy::log(LogLevel level, LogEvent event, std::string_view fields, Clock::time_point now) {
  state_->log(level, event, fields, now);
}

// ---------------------------------------------------------------------------------------------
// Entry points

void EdgeProxy::on_message(const Inbound& in, Network& out) {
  Ctx c(in, out, in.received == Clock::time_point{} ? Clock::now() : in.received);
  sip::ParseOptions opts;
  opts.stream = is_stream(in.flow.transport);
  if (Error e = sip::parse(in.bytes, c.msg, opts); e != Error::ok) {
    // The headers a 400/505 copies are usually there behind a broken start line, a
    // duplicated header or a missing one: answer from what reads (RFC 3261 §8.2.6,
    // §16.3 step 1, §21.5.6) instead of silence. Error path only.
    sip::Message salvaged;
    const bool read = sip::salvage(in.bytes, salvaged, opts.limits) == Error::ok;
    unparseable(in, out, read ? &salvaged : nullptr, sip::suggested_status(e));
    return;
  }
  // RFC 3261 §16.4: a strict-routing previous hop put our Record-Route URI in
  // the Request-URI. Carry on with the loose-routed request it stands for.
  if (c.msg.is_request()) {
    c.restored = restore_strict_route(config_, c.msg);
    if (!c.restored.empty()) {
      sip::Message loose;
      if (sip::parse(c.restored, loose, opts) != Error::ok) {  // the last Route cannot be a Request-URI
        if (!c.in.from_core) c.src = ip_text(c.in.flow.remote);
        reply(c, 400, "Bad Route");
        return;
      }
      c.in.bytes = c.restored;
      c.msg = std::move(loose);
    }
  }
  // A core that opened its own connection (or TLS session) to one of our
  // listeners: its requests name the core in their top Via.
  if (!c.in.from_core && c.in.core_address && c.msg.is_request() && via_names_core(c.msg))
    c.in.from_core = true;
  if (c.msg.is_request())
    on_request(c);
  else
    on_response(c);
}

bool EdgeProxy::been_to_core_through_us(const sip::Message& m) const noexcept {
  const AdvertisedAddress& us = config_.core_side;
  const std::size_t n = sip::via_count(m);
  for (std::size_t i = 0; i < n; ++i) {
    sip::Via v;
    if (sip::via_at(m, i, v) != Error::ok) return false;
    const std::uint16_t port = v.port ? *v.port : (ieq(v.transport, "TLS") ? 5061 : 5060);
    if (port != us.port || !ieq(v.host, us.host)) continue;
    const std::optional<DecodedBranch> d = state_->branches().decode(v.branch);
    if (d && d->from_client) return true;
  }
  return false;
}

bool EdgeProxy::via_names_core(const sip::Message& m) const noexcept {
  const AdvertisedAddress& core = config_.core_address;
  sip::Via top;
  if (core.host.empty() || sip::via_at(m, 0, top) != Error::ok) return false;
  const std::uint16_t port = top.port ? *top.port : (ieq(top.transport, "TLS") ? 5061 : 5060);
  if (port == core.port && ieq(top.host, core.host)) return true;
  for (const AdvertisedAddress& other : config_.other_core_addresses) {  // several cores
    if (port == other.port && ieq(top.host, other.host)) return true;
  }
  return false;
}

void EdgeProxy::on_flow_closed(const FlowKey& flow) { state_->on_flow_closed(flow); }

void EdgeProxy::on_timer(Clock::time_point now, Network& net) { state_->on_timer(now, net); }

// ---------------------------------------------------------------------------------------------
// Local answers

void EdgeProxy::unparseable(const Inbound& in, Network& out, const sip::Message* m, int status) {
  // Never an answer to a response or an ACK (RFC 3261 §17). On a connection the answer goes
  // back on it whatever it lacks: never silence on a stream. A datagram is answered only when
  // it carries a Via, so random junk sent to the UDP port is not reflected.
  const bool answerable = m && m->method() != Method::ack &&
                          (in.flow.transport != flow::Transport::udp || m->first(HeaderId::via));
  const Clock::time_point now = in.received == Clock::time_point{} ? Clock::now() : in.received;
  std::string resp;
  sip::ResponseSpec spec;
  spec.status = status == 0 ? 400 : status;
  const sip::Tag tag = state_->next_tag();  // an ACK for it is ours to absorb (is_own_tag)
  spec.to_tag = tag.view();
  const IpText src = ip_text(in.flow.remote);
  if (!in.from_core) {  // RFC 3581, as for every answer to a client
    spec.source_ip = src.view();
    spec.source_port = in.flow.remote.port;
  }
  if (!answerable || sip::build_response(*m, spec, resp) != Error::ok) {
    bump(counters_->drop_unparseable);
    log(LogLevel::debug, LogEvent::dropped, "reason=unparseable flow=" + flow::to_string(in.flow), now);
    return;
  }
  state_->count_status(spec.status);
  log(LogLevel::info, LogEvent::bad_request,
      "status=" + std::to_string(spec.status) + " flow=" + flow::to_string(in.flow), now);
  const bool sent =
      in.from_core ? out.send_to_core(std::move(resp)) : out.send_to_flow(in.flow, std::move(resp));
  if (!sent) bump(counters_->drop_answer_undeliverable);
}

void EdgeProxy::reply(Ctx& c, int status, std::string_view reason, std::string_view extra_name,
                      std::string_view extra_value) {
  if (c.msg.method() == Method::ack) {  // RFC 3261 §17: an ACK is never answered
    bump(counters_->drop_ack);
    return;
  }
  sip::ExtraHeader extra[2];
  std::size_t n = 0;
  if (!extra_name.empty()) extra[n++] = {extra_name, extra_value};
  if (status == 503) extra[n++] = {"Retry-After", retry_after_};
  const sip::Tag tag = state_->next_tag();
  sip::ResponseSpec spec;
  spec.status = status;
  spec.reason = reason;
  spec.to_tag = tag.view();
  spec.extra = {extra, n};
  if (!c.in.from_core) {
    spec.source_ip = c.src.view();
    spec.source_port = c.in.flow.remote.port;
  }
  std::string bytes;
  if (sip::build_response(c.msg, spec, bytes) != Error::ok) {
    bump(counters_->drop_unparseable);
    return;
  }
  send_reply_bytes(c, status, std::move(bytes));
}

void EdgeProxy::send_reply_bytes(Ctx& c, int status, std::string bytes) {
  state_->count_status(status);
  if (!c.tx_key.empty()) state_->transactions().upstream_response(c.tx_key, c.in.flow, status, bytes, c.now);
  const bool sent =
      c.in.from_core ? c.out.send_to_core(std::move(bytes)) : c.out.send_to_flow(c.in.flow, std::move(bytes));
  if (!sent) bump(counters_->drop_answer_undeliverable);
}

// ---------------------------------------------------------------------------------------------
// Requests

namespace {
// Our URI? Host and port against every address we advertise (a missing port is the
// scheme's default). Only ever compared, never resolved.
bool is_ours(const ProxyConfig& cfg, const sip::Uri& u) noexcept {
  const bool tls = u.scheme == sip::Uri::Scheme::sips || ieq(u.transport(), "tls");
  const std::uint16_t port = u.port ? *u.port : (tls ? 5061 : 5060);
  auto match = [&](const AdvertisedAddress& a) { return a.port == port && ieq(a.host, u.host); };
  if (match(cfg.core_side)) return true;
  for (const AdvertisedAddress& a : cfg.client_side)
    if (match(a)) return true;
  return false;
}
}  // namespace

namespace {
bool has_uri_param(const sip::Uri& u, std::string_view name) noexcept {
  sip::UriParamReader r(u.params);
  sip::Param p;
  while (r.next(p))
    if (ieq(p.name, name)) return true;
  return false;
}

// RFC 3261 §16.4: "If the Request-URI contains a value this proxy previously
// placed into a Record-Route header field, the proxy MUST replace the
// Request-URI in the request with the last value from the Route header field,
// and remove that value from the Route header field." Our Record-Route URIs
// are our host and port with `lr` (every one we write has it) or with a
// token-shaped user part (a strict router may strip lr). A request to us
// without either (an OPTIONS ping, `sip:bob@<edge address>`) is none of them,
// and without a Route there is nothing to restore. The URI itself goes on top
// of Route, where the usual processing pops it and reads its token: the text
// of the loose-routed request, or empty when `m` is not strict-routed.
std::string restore_strict_route(const ProxyConfig& cfg, const sip::Message& m) {
  sip::Uri ru;
  if (sip::parse_uri(m.request_uri(), ru) != Error::ok || !is_ours(cfg, ru)) return {};
  if (!has_uri_param(ru, "lr") && !(ru.has_user && flow::token_shaped(ru.user))) return {};
  sip::ValueIterator it(m, HeaderId::route);
  sip::HeaderValue hv, last, before_last;
  bool any = false;
  while (it.next(hv)) {
    before_last = last;
    last = hv;
    any = true;
  }
  if (!any || it.error()) return {};
  sip::RouteValue target;
  if (sip::parse_route_value(last.text, target) != Error::ok) return {};
  const std::string_view raw = m.raw();
  const auto headers = m.headers();
  std::size_t first_route = 0;  // line of the first Route header: our URI goes above it
  while (headers[first_route].id != HeaderId::route) ++first_route;
  const sip::Header& line = headers[last.header_index];
  // The last value goes with its comma, or with its line when it is alone on it.
  std::size_t cut_begin = line.line_begin, cut_end = line.line_end;
  if (last.index_in_line > 0) {
    cut_begin = m.offset_of(before_last.text) + before_last.text.size();
    cut_end = m.offset_of(last.text) + last.text.size();
  }
  const std::size_t ruri_begin = m.offset_of(m.request_uri());
  const std::size_t ruri_end = ruri_begin + m.request_uri().size();
  const std::size_t route_at = headers[first_route].line_begin;
  std::string out;
  out.reserve(raw.size() + 16);
  out.append(raw.substr(0, ruri_begin));
  out.append(target.addr.uri);
  out.append(raw.substr(ruri_end, route_at - ruri_end));
  out.append("Route: <").append(m.request_uri()).append(">\r\n");
  out.append(raw.substr(route_at, cut_begin - route_at));
  out.append(raw.substr(cut_end));
  return out;
}

// The Request-URI schemes an edge proxies (RFC 3261 §16.3 step 2): sip, sips (RFC 3261)
// and tel (RFC 3966). The parser has checked `scheme ":"`.
bool understood_scheme(std::string_view ruri) noexcept {
  const std::string_view scheme = ruri.substr(0, ruri.find(':'));
  return ieq(scheme, "sip") || ieq(scheme, "sips") || ieq(scheme, "tel");
}

// The option tags a request may name in Proxy-Require to us: outbound (RFC 5626, the
// edge proxy role) and path (RFC 3327, which the edge implements). Anything else is 420.
bool supported_proxy_option(std::string_view tag) noexcept {
  return ieq(tag, "outbound") || ieq(tag, "path");
}
}  // namespace

void EdgeProxy::on_request(Ctx& c) {
  const sip::Message& m = c.msg;
  if (!c.resumed) {
    bump(c.in.from_core ? counters_->requests_from_core : counters_->requests_from_clients);
    bump(c.in.from_core ? counters_->requests_in_core : counters_->requests_in_client, m.method());
  }
  if (!c.in.from_core) c.src = ip_text(c.in.flow.remote);

  // The ACK for a final response of ours (RFC 3261 §17.1.1.3: sent hop by hop, with
  // the To tag we gave) ends here: forwarding it would hand the next hop an ACK for a
  // transaction it never saw.
  if (m.method() == Method::ack && state_->own_tag(sip::to_tag(m))) {
    bump(counters_->acks_absorbed);
    return;
  }

  // A UDP client retransmits until it hears from us: absorb and replay (§17.2).
  if (!c.in.from_core && c.in.flow.transport == flow::Transport::udp && m.method() != Method::ack) {
    const sip::Branch unique = state_->stateless_branch(m);
    const ViaBranch b = state_->branches().for_client(unique.view().substr(7), c.in.flow);
    std::string key(b.view());
    key += method_class(m.method());
    // A message back from HSM work was recorded when it first came in (its
    // retransmissions meanwhile were absorbed): carry on with that entry.
    TransactionTable::UpstreamHit hit;
    if (!c.resumed)
      hit = state_->transactions().upstream_request(key, c.in.flow, c.now, c.out.core_link_epoch());
    if (hit.seen == TransactionTable::Seen::retransmission) {
      if (!hit.replay.empty()) {
        bump(counters_->responses_replayed);
        if (!c.out.send_to_flow(c.in.flow, std::move(hit.replay))) bump(counters_->drop_answer_undeliverable);
        return;
      }
      if (config_.core_side.transport != flow::Transport::udp) {
        bump(counters_->retransmissions_absorbed);
        return;
      }
      // A UDP core runs its own server transaction: give it the retransmission.
    }
    c.tx_key = std::move(key);
  }

  // Find our own Route values on top (RFC 3261 §16.4), and the token among them.
  {
    sip::ValueIterator it(m, HeaderId::route);
    sip::HeaderValue hv;
    while (c.own_routes < config_.limits.max_own_routes && it.next(hv)) {
      sip::RouteValue rv;
      if (sip::parse_route_value(hv.text, rv) != Error::ok) {
        reply(c, 400, "Bad Route");
        return;
      }
      if (!is_ours(config_, rv.uri)) break;
      c.routes[c.own_routes++] = {rv.addr.uri, rv.uri};
    }
    if (it.error()) {
      reply(c, 400, "Bad Route");
      return;
    }
  }

  // OPTIONS to us (a keep-alive ping from either side): we answer it ourselves,
  // even with Max-Forwards 0 (RFC 3261 §11, §16.3 step 3).
  if (m.method() == Method::options && m.count(HeaderId::route) == 0) {
    sip::Uri ru;
    if (sip::parse_uri(m.request_uri(), ru) == Error::ok && !ru.has_user && is_ours(config_, ru)) {
      reply(c, 200);
      return;
    }
  }
  // RFC 3261 §16.3 step 2: a Request-URI scheme we do not understand (an ACK is never answered).
  if (!understood_scheme(m.request_uri())) {
    if (m.method() == Method::ack) {
      bump(counters_->drop_ack);
      return;
    }
    reply(c, 416);
    return;
  }
  // RFC 3261 §19.1.1 table 1: no headers in a Request-URI; a proxy must not forward them
  // (RFC 4475 escruri), and the edge does not rewrite the Request-URI: 400.
  if (sip::Uri ru; sip::parse_uri(m.request_uri(), ru) == Error::ok && !ru.headers.empty()) {
    reply(c, 400, "Headers In Request-URI");
    return;
  }
  if (auto mf = m.max_forwards(); mf && *mf == 0) {
    reply(c, 483);
    return;
  }
  // §16.3 step 5: an option tag in Proxy-Require we do not support is 420 with Unsupported
  // listing it. Not for ACK (never answered) nor CANCEL (its INVITE had the same header, §8.2.2.3).
  if (m.method() != Method::ack && m.method() != Method::cancel) {
    std::string unsupported;
    sip::ValueIterator it(m, HeaderId::proxy_require);
    sip::HeaderValue hv;
    while (it.next(hv)) {
      if (hv.text.empty() || supported_proxy_option(hv.text)) continue;
      if (!unsupported.empty()) unsupported += ", ";
      unsupported += hv.text;
    }
    if (!unsupported.empty()) {
      reply(c, 420, {}, "Unsupported", unsupported);
      return;
    }
  }
  if (c.in.from_core)
    request_from_core(c);
  else
    request_from_client(c);
}

bool EdgeProxy::check_token(Ctx& c, std::string_view token, const flow::FlowToken* own, FlowKey& flow) {
  if (!config_.flow_token_security) {  // we never issue tokens, so this is none of ours
    reply(c, 403, "Invalid Flow Token");
    return false;
  }
  flow::VerifyResult v;
  if (!verify_now(c, token, own, v)) return false;
  if (v.status == flow::TokenStatus::valid) {
    flow = v.flow;
    return true;
  }
  const std::string who = c.in.from_core ? std::string("from=core") : "flow=" + flow::to_string(c.in.flow);
  if (v.status == flow::TokenStatus::hsm_unavailable) {
    log(LogLevel::warn, LogEvent::hsm_unavailable, "op=verify " + who, c.now);
    reply(c, 503);
    return false;
  }
  // Our URIs only ever carry our tokens, so any other user part (foreign shape,
  // malformed, altered) is a failed integrity check: 403 (RFC 5626 §5.3.1), not 400.
  log(LogLevel::info, LogEvent::token_rejected,
      std::string("status=403 why=") + flow::to_string(v.status) + " " + who, c.now);
  reply(c, 403, "Invalid Flow Token");
  return false;
}

// ---------------------------------------------------------------------------------------------
// HSM work: answered by a cache on the worker, or parked for the HsmWorkQueue

bool EdgeProxy::offloading(Ctx& c) {
  if (state_->hsm_work() == nullptr) return false;
  if (!c.redelivery) c.redelivery = c.out.redelivery();
  return c.redelivery != nullptr;
}

bool EdgeProxy::verify_now(Ctx& c, std::string_view token, const flow::FlowToken* own,
                           flow::VerifyResult& v) {
  const bool answered = c.resumed && c.resumed->kind == flow::HsmWorkKind::verify &&
                        c.resumed->codec == codec_ && c.resumed->token == token;
  if (std::optional<flow::VerifyResult> cached = codec_->verify_cached(token, own)) {
    v = *cached;
    if (!answered) bump(counters_->verifies_avoided);
    return true;
  }
  if (answered) {
    if (!c.resumed->ran) {
      bump(counters_->hsm_shed);
      hsm_refused(c, flow::HsmWorkKind::verify, "shed");
      return false;
    }
    v = c.resumed->verify;
    return true;
  }
  if (!offloading(c)) {
    v = codec_->verify(token, own);
    bump(v.source == flow::VerifySource::hsm ? counters_->verifies_hsm : counters_->verifies_avoided);
    return true;
  }
  park(c, flow::HsmWorkKind::verify, token, nullptr);
  return false;
}

bool EdgeProxy::mint_now(Ctx& c, const std::shared_ptr<flow::FlowToken>& ft, flow::MintResult& mr) {
  const bool answered = c.resumed && c.resumed->kind == flow::HsmWorkKind::mint &&
                        c.resumed->codec == codec_ && c.resumed->flow == ft->flow();
  if (std::optional<flow::MintResult> held = ft->cached(*codec_)) {
    mr = *held;
    if (!answered) bump(counters_->mints_avoided);
    return true;
  }
  if (answered) {
    if (!c.resumed->ran) {
      bump(counters_->hsm_shed);
      hsm_refused(c, flow::HsmWorkKind::mint, "shed");
      return false;
    }
    mr = c.resumed->mint;
    return true;
  }
  if (!offloading(c)) {
    const std::uint64_t before = ft->mints();
    mr = ft->get(*codec_);
    bump(ft->mints() != before ? counters_->mints_hsm : counters_->mints_avoided);
    return true;
  }
  park(c, flow::HsmWorkKind::mint, {}, ft);
  return false;
}

void EdgeProxy::park(Ctx& c, flow::HsmWorkKind kind, std::string_view token,
                     std::shared_ptr<flow::FlowToken> ft) {
  const flow::HsmPriority priority = c.in.from_core    ? flow::HsmPriority::core
                                     : c.in.registered ? flow::HsmPriority::registered
                                                       : flow::HsmPriority::unregistered;
  auto outcome = std::make_shared<flow::HsmOutcome>();
  outcome->kind = kind;
  outcome->codec = codec_;
  outcome->token.assign(token);
  if (ft) outcome->flow = ft->flow();
  ParkedMessage parked;
  parked.flow = c.in.flow;
  parked.from_core = c.in.from_core;
  parked.registered = c.in.registered;
  parked.bytes.assign(c.in.bytes);  // the one copy: the view dies with this call
  parked.received = c.now;
  // Runs once, on a queue thread (run) or where it was shed (not run). Holds the
  // codec, not the proxy: the rules may be replaced meanwhile, and the message
  // then goes to the rules current when it comes back. The counters belong to
  // the state, which outlives its queue.
  auto job = [counters = counters_, codec = codec_, ft = std::move(ft), outcome = std::move(outcome),
              parked = std::move(parked),
              target = std::weak_ptr<Redelivery>(c.redelivery)](bool run) mutable {
    if (run) {
      if (outcome->kind == flow::HsmWorkKind::verify) {
        outcome->verify = codec->verify(outcome->token);
        bump(outcome->verify.source == flow::VerifySource::hsm ? counters->verifies_hsm
                                                               : counters->verifies_avoided);
      } else {
        const std::uint64_t before = ft->mints();
        outcome->mint = ft->get(*codec);
        bump(ft->mints() != before ? counters->mints_hsm : counters->mints_avoided);
      }
      outcome->ran = true;
    }
    parked.outcome = std::move(outcome);
    const std::shared_ptr<Redelivery> to = target.lock();
    bump(to && to->redeliver(std::move(parked)) ? counters->hsm_resumed : counters->hsm_resume_dropped);
  };
  switch (state_->hsm_work()->submit(kind, priority, c.in.flow.remote, std::move(job))) {
    case flow::HsmAdmission::queued:
      bump(counters_->hsm_parked);
      return;
    case flow::HsmAdmission::source_budget:
      bump(counters_->hsm_refused_budget);
      hsm_refused(c, kind, "source_budget");
      return;
    case flow::HsmAdmission::queue_full:
      bump(counters_->hsm_refused_queue_full);
      hsm_refused(c, kind, "queue_full");
      return;
    case flow::HsmAdmission::stopped:
      hsm_refused(c, kind, "stopped");
      return;
  }
}

// HSM work this request needs was refused or shed: 503 with Retry-After on a
// stream and to the core; on UDP nothing (a spoofed source would turn our answers
// into a reflector), and the transaction is forgotten so a retransmission is a
// new try once the budget refilled.
void EdgeProxy::hsm_refused(Ctx& c, flow::HsmWorkKind kind, const char* why) {
  const bool udp_client = !c.in.from_core && c.in.flow.transport == flow::Transport::udp;
  if (state_->logging()) {
    const std::string who = c.in.from_core ? std::string("from=core") : "flow=" + flow::to_string(c.in.flow);
    log(LogLevel::warn, LogEvent::hsm_busy,
        std::string("op=") + flow::to_string(kind) + " why=" + why +
            (udp_client ? " action=drop " : " status=503 ") + who,
        c.now);
  }
  if (udp_client) {
    bump(counters_->drop_hsm_busy);
    if (!c.tx_key.empty()) state_->transactions().forget_request(c.tx_key);
    return;
  }
  reply(c, 503);
}

void EdgeProxy::request_from_client(Ctx& c) {
  const sip::Message& m = c.msg;
  // RFC 5626 §5.3, value by value: the client's own token ("outgoing") is popped
  // and routing continues with the next value; a token naming another flow
  // ("incoming") ends the walk.
  std::shared_ptr<flow::FlowToken> own;
  std::size_t pop = 0;
  for (std::size_t i = 0; i < c.own_routes; ++i) {
    const Ctx::OwnRoute& r = c.routes[i];
    if (r.has_token()) {
      if (!own) own = c.out.flow_token(c.in.flow);
      FlowKey named;
      if (!check_token(c, r.uri.user, own.get(), named)) return;
      if (!(named == c.in.flow)) {
        if (config_.client_to_client_direct) {
          c.own_routes = i + 1;
          c.token = &r;
          forward_to_flow(c, named, dialog_forming(m));
          return;
        }
        // Leave it for the core, which sends the request back through us: its
        // policy stays on the path of every client-to-client request.
        break;
      }
      bump(counters_->outgoing_via_token);
    }
    pop = i + 1;
  }
  c.own_routes = pop;
  // RFC 3261 §16.3 step 4: a request that already went to the core through us
  // (our Via toward the core, with a branch of ours, is in its stack) and comes
  // back from a client flow would go to the core again: a loop (a core we do
  // not recognise as the core, sending through its own connection), not a spiral.
  if (been_to_core_through_us(m)) {
    log(LogLevel::info, LogEvent::bad_request, "status=482 flow=" + flow::to_string(c.in.flow), c.now);
    reply(c, 482, "Loop Detected");
    return;
  }
  bool outbound_register = false;
  if (m.method() == Method::register_) {
    sip::ValueIterator it(m, HeaderId::contact);
    sip::HeaderValue hv;
    while (it.next(hv)) {
      sip::ContactValue cv;
      if (sip::parse_contact(hv.text, cv) == Error::ok && cv.reg_id && !cv.instance.empty())
        outbound_register = true;
    }
  }
  forward_to_core(c, dialog_forming(m), outbound_register);
}

void EdgeProxy::request_from_core(Ctx& c) {
  const sip::Message& m = c.msg;
  // From the core every value of ours goes; the first token names the flow (after
  // an RFC 5658 double Record-Route both values may carry it). It is never the
  // presenting flow's own: the verified cache, then the HSM, decide.
  for (std::size_t i = 0; i < c.own_routes; ++i) {
    if (!c.routes[i].has_token()) continue;
    FlowKey named;
    if (!check_token(c, c.routes[i].uri.user, nullptr, named)) return;
    c.token = &c.routes[i];
    forward_to_flow(c, named, dialog_forming(m));
    return;
  }
  // No token: nothing here names a client flow, and we never route to a host named
  // in a message. RFC 3261 §8.2.2.1 / §16.3: 416 for a scheme we cannot serve,
  // otherwise 404.
  if (m.method() == Method::ack) {
    bump(counters_->drop_ack);
    return;
  }
  sip::Uri ru;
  if (sip::parse_uri(m.request_uri(), ru) == Error::unsupported_scheme) {
    reply(c, 416);
    return;
  }
  reply(c, 404, "No Flow For Request");
}

void EdgeProxy::forward_to_core(Ctx& c, bool dialog, bool outbound_register) {
  const sip::Message& m = c.msg;
  sip::Editor ed(m);
  Error e = Error::ok;
  auto step = [&](Error r) {
    if (e == Error::ok) e = r;
  };
  if (c.own_routes) step(ed.pop_routes(c.own_routes));
  step(ed.decrement_max_forwards());
  step(ed.add_received_rport(0, c.src.view(), c.in.flow.remote.port));

  const sip::Branch unique = state_->stateless_branch(m);
  const ViaBranch branch = state_->branches().for_client(unique.view().substr(7), c.in.flow);
  // rport (RFC 3581): a core answers where the request came from; alias (RFC
  // 5923): on a stream it may send its requests for our sent-by down this connection.
  step(ed.push_via({flow::to_string(config_.core_side.transport), config_.core_side.host,
                    config_.core_side.port, branch.view(), true, is_stream(config_.core_side.transport)}));

  // RFC 3327 / RFC 5626 §5.1: Path on REGISTER, Record-Route on dialog-forming
  // requests, each with this flow's token (minted once per flow, then cached).
  std::string path_uri, rr_client, rr_core;
  const bool first_hop = sip::via_count(m) == 1;
  bool want_path = false;
  if (m.method() == Method::register_) {
    // A UA without "Supported: path" (a plain RFC 3261 phone) gets the same Path
    // unless sip.path_without_supported is off: else the registrar knows it only by
    // our core-side address, and calls for it never find its flow. Nothing else is
    // added: no "Require: path" (RFC 3327 §5.2 ties it to a UA that asked; Kamailio's
    // add_path() adds none; with it Kamailio 5.6 crashed on an RFC 4475 REGISTER).
    if (!sip::has_option_tag(m, HeaderId::supported, "path") && !config_.path_without_supported) {
      // RFC 3327 §5.2: no Path for a UA that did not ask; 421 when we insist.
      if (config_.require_path) {
        reply(c, 421, {}, "Require", "path");
        return;
      }
    } else if (!config_.flow_token_security) {
      // §5.1: a first hop must put a token in Path or reject; we have no tokens.
      if (outbound_register && first_hop) {
        reply(c, 439);
        return;
      }
    } else {
      want_path = true;
    }
  }
  const bool want_rr = dialog && config_.flow_token_security;
  if (want_path || want_rr) {
    std::shared_ptr<flow::FlowToken> ft = c.out.flow_token(c.in.flow);
    if (!ft) {  // the flow closed while we were at it: nowhere to answer
      bump(counters_->drop_answer_undeliverable);
      return;
    }
    flow::MintResult mr;
    if (!mint_now(c, ft, mr)) return;
    if (mr.status != flow::MintStatus::ok) {
      if (mr.status == flow::MintStatus::invalid_flow) {
        log(LogLevel::error, LogEvent::internal,
            "op=mint why=invalid_flow flow=" + flow::to_string(c.in.flow), c.now);
        reply(c, 500);
        return;
      }
      log(LogLevel::warn, LogEvent::hsm_unavailable,
          std::string("op=mint why=") + flow::to_string(mr.status) + " flow=" + flow::to_string(c.in.flow),
          c.now);
      reply(c, 503);
      return;
    }
    const std::string_view token = mr.token.view();
    if (want_path) {
      // ;ob only as the first hop of an outbound REGISTER (§5.1 MUST NOT otherwise).
      path_uri = our_uri(config_.core_side, token, outbound_register && first_hop);
      step(ed.insert_path(path_uri));
      if (e == Error::ok) bump(counters_->paths_added);
    }
    if (want_rr) {
      const AdvertisedAddress* client = config_.client_address(c.in.flow);
      if (!client || same_interface(*client, config_.core_side)) {
        rr_core = our_uri(config_.core_side, token, false);
        step(ed.insert_record_route(rr_core));
      } else {
        // RFC 5658: the core-facing value on top (the core's side of the route
        // set), the UA-facing one below it, carrying the token.
        rr_core = our_uri(config_.core_side, {}, false);
        rr_client = our_uri(*client, token, false);
        step(ed.insert_record_route(rr_core));
        step(ed.insert_record_route(rr_client));
      }
      if (e == Error::ok) bump(counters_->record_routes_added);
    }
  }
  std::string bytes;
  if (!finish_edit(c, ed, e, bytes)) return;
  if (bytes.size() > config_.limits.max_core_message_size) {
    // Our Via, Record-Route and Path took it over what the core side carries
    // (ProxyLimits::max_core_message_size): answered here, never sent to break
    // the shared link or be lost as a datagram (RFC 3261 §21.5.12).
    log(LogLevel::info, LogEvent::bad_request,
        "status=513 size=" + std::to_string(bytes.size()) + " flow=" + flow::to_string(c.in.flow), c.now);
    reply(c, 513, "Message Too Large");
    return;
  }
  if (!c.out.send_to_core(std::move(bytes))) {
    log(LogLevel::warn, LogEvent::core_unavailable, "flow=" + flow::to_string(c.in.flow), c.now);
    reply(c, 503, "Core Unreachable");
    return;
  }
  bump(counters_->forwarded_to_core);
  bump(counters_->requests_out_core, c.msg.method());
}

// The last step of a request's edits: Content-Length, then the bytes to send. False
// (and answered) when any step failed.
bool EdgeProxy::finish_edit(Ctx& c, sip::Editor& ed, Error e, std::string& bytes) {
  if (e == Error::ok) e = ed.ensure_content_length();
  if (e != Error::ok) {
    edit_failed(c, e);
    return false;
  }
  ed.serialize(bytes);
  return true;
}

// An edit the editor refused (a limit, a header it cannot rewrite): counted, logged and
// answered, never forwarded half-edited.
void EdgeProxy::edit_failed(Ctx& c, Error e) {
  bump(counters_->drop_edit_failed);
  log(LogLevel::error, LogEvent::internal, std::string("op=edit why=") + std::string(sip::reason(e)), c.now);
  reply(c, sip::suggested_status(e) >= 400 ? sip::suggested_status(e) : 500);
}

void EdgeProxy::forward_to_flow(Ctx& c, const FlowKey& flow, bool dialog) {
  const sip::Message& m = c.msg;
  bump(counters_->incoming_via_token);
  if (!c.out.flow_reachable(flow)) {
    log(LogLevel::info, LogEvent::flow_failed, "status=430 flow=" + flow::to_string(flow), c.now);
    reply(c, 430);
    return;
  }
  const AdvertisedAddress* us = config_.client_address(flow);
  if (!us) us = &config_.client_side.front();
  sip::Editor ed(m);
  Error e = Error::ok;
  auto step = [&](Error r) {
    if (e == Error::ok) e = r;
  };
  step(ed.pop_routes(c.own_routes));
  step(ed.decrement_max_forwards());
  if (!c.in.from_core) step(ed.add_received_rport(0, c.src.view(), c.in.flow.remote.port));
  const sip::Branch unique = state_->stateless_branch(m);
  // The branch says where the response goes: the core, or the client that sent it.
  const ViaBranch branch = c.in.from_core ? state_->branches().for_core(unique.view().substr(7))
                                          : state_->branches().for_client(unique.view().substr(7), c.in.flow);
  step(ed.push_via({flow::to_string(flow.transport), us->host, us->port, branch.view(), false}));
  std::string rr_copy, rr_client;
  if (dialog) {
    // §5.3.1: stay on the path with a copy of the Route URI, without ;ob; RFC 5658:
    // the UA-facing value on top (the client's side), carrying the token.
    rr_copy = without_ob(c.token->uri_text, c.token->uri);
    if (!same_interface(*us, config_.core_side)) {
      rr_client = our_uri(*us, c.token->uri.user, false);
      step(ed.insert_record_route(rr_client));
    }
    step(ed.insert_record_route(rr_copy));
    if (e == Error::ok) bump(counters_->record_routes_added);
  }
  std::string bytes;
  if (!finish_edit(c, ed, e, bytes)) return;
  // A request from the core is remembered until the client's final response:
  // should the flow close first (a send that was posted to its worker, writes
  // still queued, a UDP flow timing out) the core gets 430 for it, once (RFC
  // 5626 §5.3). Recorded before the send, so a close racing it finds it. And
  // nobody retransmits on the UDP leg of a request the core sent over a
  // reliable connection: we do, and answer 408 once if the client stays silent.
  const bool track = c.in.from_core && m.method() != Method::ack;
  std::string key;
  if (track) {
    key.assign(branch.view());
    key += method_class(m.method());
    const bool retransmit =
        flow.transport == flow::Transport::udp && config_.core_side.transport != flow::Transport::udp;
    state_->transactions().downstream_request(key, flow, m.method() == Method::invite, bytes, c.now,
                                              retransmit);
  }
  if (!c.out.send_to_flow(flow, std::move(bytes))) {
    // Answered here unless the flow's close already took the entry (its 430 is due).
    if (!track || state_->transactions().take_downstream(key)) {
      log(LogLevel::info, LogEvent::flow_failed, "status=430 flow=" + flow::to_string(flow), c.now);
      reply(c, 430);
    }
    return;
  }
  bump(counters_->forwarded_to_flow);
  bump(counters_->requests_out_flow, m.method());
}

// ---------------------------------------------------------------------------------------------
// Responses

void EdgeProxy::on_response(Ctx& c) {
  const sip::Message& m = c.msg;
  bump(c.in.from_core ? counters_->responses_from_core : counters_->responses_from_clients);
  sip::Via top;
  std::optional<DecodedBranch> d;
  if (sip::via_at(m, 0, top) == Error::ok) {
    sip::Uri sent_by;  // compare sent-by like a URI host/port
    sent_by.host = top.host;
    sent_by.port = top.port;
    if (ieq(top.transport, "TLS")) sent_by.scheme = sip::Uri::Scheme::sips;
    if (is_ours(config_, sent_by)) d = state_->branches().decode(top.branch);
  }
  // A response from the core goes back to the client flow in our branch; one from a
  // client goes to the core. A client may send one toward another client's flow
  // only when we sent it that client's request directly (client_to_client_direct):
  // otherwise an `f` branch of ours it saw deeper in a Via stack would let it
  // answer around the core.
  const bool acceptable =
      d && (c.in.from_core ? d->from_client : (!d->from_client || config_.client_to_client_direct));
  if (!acceptable || sip::via_count(m) < 2) {
    bump(counters_->drop_response_not_ours);
    log(LogLevel::debug, LogEvent::dropped, "reason=response_not_ours flow=" + flow::to_string(c.in.flow),
        c.now);
    return;
  }
  const int status = m.status();
  std::string key(top.branch);
  key += method_class(sip::method_from_name(m.cseq().method));
  if (!c.in.from_core) state_->transactions().downstream_response(key, status, c.now);

  sip::Editor ed(m);
  Error e = ed.remove_top_via();
  // RFC 5626 §5.4 / RFC 6223: a 2xx to an outbound REGISTER learns how long we
  // keep the flow without traffic; keep= gets the same value. Only as the first
  // hop (our Via and the UA's): behind another proxy the Flow-Timer is not ours.
  // Any other registration (plain RFC 3327 Path, or through another proxy)
  // keeps its flow for as long as the registrar granted (the largest expires
  // of the 2xx), as Kamailio does with tcp_persistent; keep= is honoured too.
  const std::uint32_t ft = config_.flow_timer_seconds;
  const bool register_ok = d->from_client && status >= 200 && status < 300 &&
                           sip::method_from_name(m.cseq().method) == Method::register_;
  const bool registered =
      register_ok && sip::via_count(m) == 2 && sip::has_option_tag(m, HeaderId::require, "outbound");
  const std::uint32_t granted = register_ok && !registered ? granted_expiry(m) : 0;
  if (registered && e == Error::ok) e = ed.set_flow_timer(ft);
  if ((registered || granted > 0) && e == Error::ok) {
    if (Error k = ed.set_via_keep(1, ft); k != Error::ok && k != Error::no_such_header) e = k;
  }
  if (e == Error::ok) e = ed.ensure_content_length();
  if (e != Error::ok) {
    bump(counters_->drop_edit_failed);
    log(LogLevel::error, LogEvent::internal,
        std::string("op=edit_response why=") + std::string(sip::reason(e)), c.now);
    return;
  }
  std::string bytes;
  ed.serialize(bytes);
  if (!d->from_client) {
    if (!c.out.send_to_core(std::move(bytes))) {
      bump(counters_->drop_response_core_down);
      return;
    }
    bump(counters_->forwarded_to_core);
    return;
  }
  if (d->flow.transport == flow::Transport::udp)
    state_->transactions().upstream_response(key, d->flow, status, bytes, c.now);
  if (!c.out.send_to_flow(d->flow, std::move(bytes))) {
    // RFC 3261 §18.2.2 would open a new connection; an edge never does.
    bump(counters_->drop_response_flow_gone);
    log(LogLevel::info, LogEvent::dropped, "reason=flow_gone flow=" + flow::to_string(d->flow), c.now);
    return;
  }
  bump(counters_->forwarded_to_flow);
  if (registered) {
    c.out.mark_registered(d->flow, std::chrono::seconds(ft));
    bump(counters_->flow_timers_set);
  } else if (granted > 0) {
    c.out.mark_registered(d->flow, std::chrono::seconds(granted));
  }
}

}  // namespace edge::net
