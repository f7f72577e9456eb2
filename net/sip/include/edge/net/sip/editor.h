// Rewrites a parsed message for forwarding: a sorted list of edits applied while copying spans
// of the original, so untouched bytes (and the body) go out exactly as received.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "edge/net/sip/error.h"
#include "edge/net/sip/message.h"

namespace edge::sip {

// An RFC 3261 branch ("z9hG4bK" + 24 hex digits) in a fixed buffer: no allocation.
class Branch {
 public:
  std::string_view view() const noexcept { return {text_.data(), kSize}; }
  static constexpr std::size_t kSize = 7 + 24;

 private:
  friend Branch make_branch(std::uint64_t, std::uint64_t) noexcept;
  friend Branch make_stateless_branch(std::uint64_t, const Message&) noexcept;
  std::array<char, kSize> text_{};
};

// Unique per (seed, counter): for a fixed seed the first 16 digits are a bijection of the
// counter, so a node never repeats a branch until the counter wraps; the seed (random per
// start) keeps nodes and restarts apart. No global state: the caller owns seed and counter.
Branch make_branch(std::uint64_t seed, std::uint64_t counter) noexcept;
// RFC 3261 §16.11: a stateless forwarder must give a retransmission, and the CANCEL or
// non-2xx ACK of an INVITE, the branch it gave the INVITE. Derived from the request's top Via
// branch (or, for pre-RFC 3261 peers, Call-ID, CSeq number, From tag and Request-URI).
Branch make_stateless_branch(std::uint64_t seed, const Message& request) noexcept;

struct ViaSpec {
  std::string_view transport;  // "UDP", "TCP", "TLS", "WS", "WSS"
  std::string_view host;       // host name, IPv4, or IPv6 (brackets added when missing)
  std::optional<std::uint16_t> port;
  std::string_view branch;  // e.g. make_branch(...).view()
  bool rport = false;       // ask the next hop to fill rport (RFC 3581)
  bool alias = false;       // offer the connection for requests to sent-by (RFC 5923)
};

class Editor {
 public:
  // m and the buffer it views must outlive the editor.
  explicit Editor(const Message& m) noexcept : m_(&m) {}
  Editor(const Editor&) = delete;
  Editor& operator=(const Editor&) = delete;

  // Adds our Via above the first one.
  Error push_via(const ViaSpec& via);
  // RFC 3581 / RFC 3261 §18.2.1 on the index-th Via: received when the sent-by host differs from
  // the source or rport was asked for; rport=port when the Via has rport (or force_rport).
  Error add_received_rport(std::size_t via_index, std::string_view source_ip, std::uint16_t source_port,
                           bool force_rport = false);
  // RFC 6223: gives the index-th Via's keep parameter a value. no_such_header when the Via has
  // no keep parameter: only a UA that offered keep-alives gets one.
  Error set_via_keep(std::size_t via_index, std::uint32_t seconds);
  // Removes the top Via of a response (ours, on the way back).
  Error remove_top_via();
  // Removes the first `count` Route values (ours; two after an RFC 5658 double Record-Route).
  Error pop_routes(std::size_t count = 1);
  // Adds "Path: <uri>" above existing Path headers (RFC 3327 §5.1: the top is the nearest hop).
  Error insert_path(std::string_view uri);
  // Adds "Record-Route: <uri>" above existing ones; call twice for RFC 5658 (the first call's
  // value ends up on top).
  Error insert_record_route(std::string_view uri);
  // RFC 3261 §16.6 step 3: Max-Forwards - 1, or "Max-Forwards: 70" when absent;
  // max_forwards_exhausted when it is 0 (answer 483).
  Error decrement_max_forwards();
  // RFC 5626 §5.4: Flow-Timer on a 2xx to REGISTER; replaces an existing one.
  Error set_flow_timer(std::uint32_t seconds);
  // Any other header, appended after the last one. name must be a token, value one line.
  Error add_header(std::string_view name, std::string_view value);
  // Adds Content-Length when the message came without (a datagram going onto a stream).
  Error ensure_content_length();

  std::size_t edit_count() const noexcept { return count_; }
  // Size of the serialized message.
  std::size_t size() const noexcept;
  // Appends the edited message to out (one reserve, then copies).
  void serialize(std::string& out) const;
  // Writes into out (at least size() bytes); returns bytes written or 0 when out is too small.
  std::size_t serialize_to(std::span<char> out) const noexcept;
  // Gather-write view: fills out with the pieces in order (views into the original buffer and
  // into this editor) and returns how many there are; when it exceeds out.size(), nothing useful
  // was written and the caller retries with that many slots. Valid until the next edit.
  std::size_t pieces(std::span<std::string_view> out) const noexcept;
  // Appends original[begin, end) with the edits that fall inside it: lets a response builder
  // copy request header lines as this editor changed them.
  void append_range(std::string& out, std::size_t begin, std::size_t end) const;

 private:
  struct Edit {
    std::uint32_t begin;  // range of the original replaced by text
    std::uint32_t end;
    std::uint32_t text_off;
    std::uint32_t text_len;
  };
  static constexpr std::size_t kMaxEdits = 32;
  static constexpr std::size_t kInlineText = 1024;

  // A failed operation leaves no partial edits behind: multi-edit operations restore this.
  struct Snapshot {
    std::array<Edit, kMaxEdits> edits;
    std::size_t count;
    std::size_t text_size;
  };
  Snapshot snapshot() const noexcept { return {edits_, count_, text_size_}; }
  Error restore_on_error(const Snapshot& s, Error e);

  Error add_edit(std::size_t begin, std::size_t end, std::size_t text_off, std::size_t text_len);
  Error insert_line(std::size_t at, std::string_view name, std::string_view value_prefix,
                    std::string_view value, std::string_view value_suffix);
  Error remove_leading_values(HeaderId id, std::size_t count);
  Error remove_values(HeaderId id, std::size_t count);
  Error received_rport(std::size_t via_index, std::string_view ip, std::uint16_t port, bool force_rport);
  std::size_t insert_point(HeaderId id) const noexcept;

  // Text storage for edits: inline first, heap only for unusually large insertions.
  std::size_t put(std::string_view s);
  std::size_t put_uint(std::uint64_t v);
  std::string_view text(const Edit& e) const noexcept {
    return {(heap_.empty() ? inline_.data() : heap_.data()) + e.text_off, e.text_len};
  }

  const Message* m_;
  std::array<Edit, kMaxEdits> edits_{};  // sorted by position, insertions before replacements
  std::size_t count_ = 0;
  std::array<char, kInlineText> inline_{};
  std::string heap_;
  std::size_t text_size_ = 0;
  bool routes_popped_ = false;
  bool via_removed_ = false;
};

}  // namespace edge::sip
