// Forwarding edits (Via, Route, Path, Record-Route, Max-Forwards, Flow-Timer) and serialization.
#include "edge/net/sip/editor.h"

#include <cstring>

#include "edge/net/sip/headers.h"
#include "edge/net/sip/uri.h"
#include "lex.h"
#include "mix64.h"

namespace edge::sip {
namespace {

using detail::mix64;

void put_hex(char* out, std::uint64_t v, int digits) noexcept {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) {
    out[i] = kHex[v & 0xf];
    v >>= 4;
  }
}

std::uint64_t fnv1a(std::uint64_t h, std::string_view s) noexcept {
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h ^ 0xff;  // separator so ("ab","c") and ("a","bc") differ
}

}  // namespace

Branch make_branch(std::uint64_t seed, std::uint64_t counter) noexcept {
  Branch b;
  std::memcpy(b.text_.data(), "z9hG4bK", 7);
  put_hex(b.text_.data() + 7, mix64(counter ^ mix64(seed)), 16);
  put_hex(b.text_.data() + 23, mix64(seed ^ 0x5bd1e9955bd1e995ULL) >> 32, 8);
  return b;
}

Branch make_stateless_branch(std::uint64_t seed, const Message& request) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ mix64(seed);
  Via top;
  if (via_at(request, 0, top) == Error::ok && top.rfc3261_branch()) {
    h = fnv1a(h, top.branch);
    h = fnv1a(h, top.sent_by);
  } else {
    NameAddr from;
    h = fnv1a(h, request.call_id());
    const std::uint32_t cseq = request.cseq().number;
    h = fnv1a(h, std::string_view(reinterpret_cast<const char*>(&cseq), sizeof cseq));
    if (from_header(request, from) == Error::ok) h = fnv1a(h, from.tag());
    h = fnv1a(h, request.request_uri());
  }
  Branch b;
  std::memcpy(b.text_.data(), "z9hG4bK", 7);
  put_hex(b.text_.data() + 7, mix64(h), 16);
  put_hex(b.text_.data() + 23, mix64(h ^ seed) >> 32, 8);
  return b;
}

std::size_t Editor::put(std::string_view s) {
  const std::size_t off = text_size_;
  if (heap_.empty() && text_size_ + s.size() <= kInlineText) {
    if (!s.empty()) std::memcpy(inline_.data() + text_size_, s.data(), s.size());
  } else {
    if (heap_.empty()) heap_.assign(inline_.data(), text_size_);
    heap_.append(s);
  }
  text_size_ += s.size();
  return off;
}

std::size_t Editor::put_uint(std::uint64_t v) {
  char buf[20];
  int n = 0;
  do {
    buf[19 - n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  return put({buf + 20 - n, static_cast<std::size_t>(n)});
}

Error Editor::restore_on_error(const Snapshot& s, Error e) {
  if (e == Error::ok) return e;
  edits_ = s.edits;
  count_ = s.count;
  text_size_ = s.text_size;
  if (!heap_.empty()) heap_.resize(text_size_);
  return e;
}

Error Editor::add_edit(std::size_t begin, std::size_t end, std::size_t text_off, std::size_t text_len) {
  if (count_ >= kMaxEdits) return Error::too_many_edits;
  const bool ins = begin == end;
  for (std::size_t k = 0; k < count_; ++k) {
    const Edit& e = edits_[k];
    const bool eins = e.begin == e.end;
    bool clash;
    if (ins && eins)
      clash = false;
    else if (ins)
      clash = e.begin < begin && begin < e.end;
    else if (eins)
      clash = begin < e.begin && e.begin < end;
    else
      clash = begin < e.end && e.begin < end;
    if (clash) return Error::edit_overlap;
  }
  // Keep edits sorted: by position; at one position insertions before a replacement starting
  // there; otherwise in call order.
  std::size_t at = count_;
  while (at > 0) {
    const Edit& e = edits_[at - 1];
    const bool after = e.begin > begin || (e.begin == begin && ins && e.begin != e.end);
    if (!after) break;
    --at;
  }
  for (std::size_t k = count_; k > at; --k) edits_[k] = edits_[k - 1];
  edits_[at] = Edit{static_cast<std::uint32_t>(begin), static_cast<std::uint32_t>(end),
                    static_cast<std::uint32_t>(text_off), static_cast<std::uint32_t>(text_len)};
  ++count_;
  return Error::ok;
}

Error Editor::insert_line(std::size_t at, std::string_view name, std::string_view prefix,
                          std::string_view value, std::string_view suffix) {
  std::size_t off = put(name);
  put(": ");
  put(prefix);
  put(value);
  put(suffix);
  put("\r\n");
  return add_edit(at, at, off, text_size_ - off);
}

// Where a new header of this kind goes: above the first existing one (the top of a
// Path / Record-Route stack is the latest hop), else after the last header.
std::size_t Editor::insert_point(HeaderId id) const noexcept {
  const Header* h = m_->first(id);
  return h ? h->line_begin : m_->headers_end();
}

Error Editor::push_via(const ViaSpec& v) {
  if (!lex::all_token(v.transport) || !lex::all_token(v.branch)) return Error::bad_edit_input;
  std::string_view host = v.host;
  bool bracket = false;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    if (!is_valid_ipv6(host.substr(1, host.size() - 2))) return Error::bad_edit_input;
  } else if (is_valid_ipv6(host)) {
    bracket = true;
  } else if (!is_valid_hostname(host)) {
    return Error::bad_edit_input;
  }
  const Header* first = m_->first(HeaderId::via);
  const std::size_t at = first ? first->line_begin : m_->headers_end();
  std::size_t off = put("Via: SIP/2.0/");
  put(v.transport);
  put(bracket ? " [" : " ");
  put(host);
  if (bracket) put("]");
  if (v.port) {
    put(":");
    put_uint(*v.port);
  }
  put(";branch=");
  put(v.branch);
  if (v.rport) put(";rport");
  if (v.alias) put(";alias");
  put("\r\n");
  return add_edit(at, at, off, text_size_ - off);
}

Error Editor::add_received_rport(std::size_t via_index, std::string_view ip, std::uint16_t port,
                                 bool force_rport) {
  const Snapshot before = snapshot();
  return restore_on_error(before, received_rport(via_index, ip, port, force_rport));
}

Error Editor::received_rport(std::size_t via_index, std::string_view ip, std::uint16_t port,
                             bool force_rport) {
  if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  if (!is_valid_ipv6(ip) && !is_valid_hostname(ip)) return Error::bad_edit_input;
  Via via;
  if (Error e = via_at(*m_, via_index, via); e != Error::ok) return e;
  const std::size_t end = m_->offset_of(via.text) + via.text.size();
  const bool want_rport = via.rport || force_rport;
  // rport first: when it is the last parameter, "=port" and ";received=..." are both insertions
  // at the end of the Via, and call order decides their order.
  if (want_rport) {
    auto p = via.param("rport");
    Error e;
    if (p && p->has_value) {
      std::size_t off = put_uint(port);
      e = add_edit(m_->offset_of(p->value), m_->offset_of(p->value) + p->value.size(), off, text_size_ - off);
    } else if (p) {
      const std::size_t after_name = m_->offset_of(p->name) + p->name.size();
      std::size_t off = put("=");
      put_uint(port);
      e = add_edit(after_name, after_name, off, text_size_ - off);
    } else {
      std::size_t off = put(";rport=");
      put_uint(port);
      e = add_edit(end, end, off, text_size_ - off);
    }
    if (e != Error::ok) return e;
  }
  if (!want_rport && lex::ieq(via.host, ip)) return Error::ok;
  if (auto p = via.param("received"); p && p->has_value) {
    std::size_t off = put(ip);
    return add_edit(m_->offset_of(p->value), m_->offset_of(p->value) + p->value.size(), off, ip.size());
  }
  std::size_t off = put(";received=");
  put(ip);
  return add_edit(end, end, off, text_size_ - off);
}

Error Editor::set_via_keep(std::size_t via_index, std::uint32_t seconds) {
  Via via;
  if (Error e = via_at(*m_, via_index, via); e != Error::ok) return e;
  auto p = via.param("keep");
  if (!p) return Error::no_such_header;
  if (p->has_value) {
    std::size_t off = put_uint(seconds);
    return add_edit(m_->offset_of(p->value), m_->offset_of(p->value) + p->value.size(), off,
                    text_size_ - off);
  }
  const std::size_t after_name = m_->offset_of(p->name) + p->name.size();
  std::size_t off = put("=");
  put_uint(seconds);
  return add_edit(after_name, after_name, off, text_size_ - off);
}

Error Editor::remove_leading_values(HeaderId id, std::size_t count) {
  const Snapshot before = snapshot();
  return restore_on_error(before, remove_values(id, count));
}

Error Editor::remove_values(HeaderId id, std::size_t count) {
  // Removes the first `count` elements across the lines of `id`: whole lines when all their
  // elements go, else the leading elements of the last line touched plus their comma.
  auto hs = m_->headers();
  for (std::size_t hi = 0; hi < hs.size() && count > 0; ++hi) {
    const Header& h = hs[hi];
    if (h.id != id) continue;
    std::string_view rest = h.value;
    std::string_view item;
    bool err = false;
    std::size_t n = 0;
    std::size_t keep_from = 0;  // offset of the first element that stays
    while (lex::split_next(rest, item, err)) {
      if (n == count) {
        keep_from = m_->offset_of(item);
        break;
      }
      ++n;
    }
    if (err) return id == HeaderId::via ? Error::bad_via : Error::bad_name_addr;
    if (n == 0) continue;  // an empty line: nothing to count
    if (keep_from == 0) {
      if (Error e = add_edit(h.line_begin, h.line_end, 0, 0); e != Error::ok) return e;
    } else {
      const std::size_t from = m_->offset_of(h.value);
      if (Error e = add_edit(from, keep_from, 0, 0); e != Error::ok) return e;
    }
    count -= n;
  }
  return count == 0 ? Error::ok : Error::no_such_header;
}

Error Editor::remove_top_via() {
  if (m_->is_request()) return Error::not_a_response;
  if (via_removed_) return Error::edit_overlap;
  Error e = remove_leading_values(HeaderId::via, 1);
  if (e == Error::ok) via_removed_ = true;
  return e;
}

Error Editor::pop_routes(std::size_t count) {
  if (!m_->is_request()) return Error::not_a_request;
  if (routes_popped_) return Error::edit_overlap;
  if (count == 0) return Error::ok;
  Error e = remove_leading_values(HeaderId::route, count);
  if (e == Error::ok) routes_popped_ = true;
  return e;
}

namespace {
bool acceptable_route_uri(std::string_view uri) noexcept {
  Uri u;
  return parse_uri(uri, u) == Error::ok;
}
}  // namespace

Error Editor::insert_path(std::string_view uri) {
  if (!m_->is_request()) return Error::not_a_request;
  if (!acceptable_route_uri(uri)) return Error::bad_edit_input;
  return insert_line(insert_point(HeaderId::path), "Path", "<", uri, ">");
}

Error Editor::insert_record_route(std::string_view uri) {
  if (!acceptable_route_uri(uri)) return Error::bad_edit_input;
  return insert_line(insert_point(HeaderId::record_route), "Record-Route", "<", uri, ">");
}

Error Editor::decrement_max_forwards() {
  if (!m_->is_request()) return Error::not_a_request;
  auto mf = m_->max_forwards();
  if (!mf) {
    std::size_t off = put("Max-Forwards: 70\r\n");
    return add_edit(m_->headers_end(), m_->headers_end(), off, text_size_ - off);
  }
  if (*mf == 0) return Error::max_forwards_exhausted;
  const Header* h = m_->first(HeaderId::max_forwards);
  std::size_t off = put_uint(*mf - 1);
  return add_edit(m_->offset_of(h->value), m_->offset_of(h->value) + h->value.size(), off, text_size_ - off);
}

Error Editor::set_flow_timer(std::uint32_t seconds) {
  if (m_->is_request()) return Error::not_a_response;
  if (const Header* h = m_->first(HeaderId::flow_timer)) {
    std::size_t off = put_uint(seconds);
    return add_edit(m_->offset_of(h->value), m_->offset_of(h->value) + h->value.size(), off,
                    text_size_ - off);
  }
  std::size_t off = put("Flow-Timer: ");
  put_uint(seconds);
  put("\r\n");
  return add_edit(m_->headers_end(), m_->headers_end(), off, text_size_ - off);
}

Error Editor::add_header(std::string_view name, std::string_view value) {
  if (!lex::all_token(name) || !lex::is_one_line(value)) return Error::bad_edit_input;
  HeaderId id = header_id(name);
  // A second copy of a single-valued header would make the output unparseable.
  if (is_single_valued(id) && m_->first(id)) return Error::bad_edit_input;
  return insert_line(m_->headers_end(), name, {}, value, {});
}

Error Editor::ensure_content_length() {
  if (m_->content_length()) return Error::ok;
  std::size_t off = put("Content-Length: ");
  put_uint(m_->body().size());
  put("\r\n");
  return add_edit(m_->headers_end(), m_->headers_end(), off, text_size_ - off);
}

std::size_t Editor::size() const noexcept {
  std::size_t n = m_->raw().size();
  for (std::size_t k = 0; k < count_; ++k) n = n + edits_[k].text_len - (edits_[k].end - edits_[k].begin);
  return n;
}

void Editor::append_range(std::string& out, std::size_t begin, std::size_t end) const {
  const std::string_view raw = m_->raw();
  std::size_t pos = begin;
  for (std::size_t k = 0; k < count_; ++k) {
    const Edit& e = edits_[k];
    if (e.begin < begin || e.end > end || (e.begin == end && e.begin == e.end)) continue;
    out.append(raw.substr(pos, e.begin - pos));
    out.append(text(e));
    pos = e.end;
  }
  out.append(raw.substr(pos, end - pos));
}

void Editor::serialize(std::string& out) const {
  out.reserve(out.size() + size());
  const std::string_view raw = m_->raw();
  std::size_t pos = 0;
  for (std::size_t k = 0; k < count_; ++k) {
    const Edit& e = edits_[k];
    out.append(raw.substr(pos, e.begin - pos));
    out.append(text(e));
    pos = e.end;
  }
  out.append(raw.substr(pos));
}

std::size_t Editor::serialize_to(std::span<char> out) const noexcept {
  const std::size_t total = size();
  if (out.size() < total) return 0;
  const std::string_view raw = m_->raw();
  char* p = out.data();
  auto copy = [&p](std::string_view s) {
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  std::size_t pos = 0;
  for (std::size_t k = 0; k < count_; ++k) {
    const Edit& e = edits_[k];
    copy(raw.substr(pos, e.begin - pos));
    copy(text(e));
    pos = e.end;
  }
  copy(raw.substr(pos));
  return total;
}

std::size_t Editor::pieces(std::span<std::string_view> out) const noexcept {
  const std::string_view raw = m_->raw();
  std::size_t n = 0;
  auto emit = [&](std::string_view s) {
    if (s.empty()) return;
    if (n < out.size()) out[n] = s;
    ++n;
  };
  std::size_t pos = 0;
  for (std::size_t k = 0; k < count_; ++k) {
    const Edit& e = edits_[k];
    emit(raw.substr(pos, e.begin - pos));
    emit(text(e));
    pos = e.end;
  }
  emit(raw.substr(pos));
  return n;
}

}  // namespace edge::sip
