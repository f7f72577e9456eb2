// Header and method name tables, and the Message slot store.
#include "edge/net/sip/message.h"

#include <array>
#include <utility>

#include "lex.h"

namespace edge::sip {
namespace {

struct NameEntry {
  std::string_view lower;  // lower-case canonical name
  HeaderId id;
};

constexpr NameEntry kNames[] = {
    {"via", HeaderId::via},
    {"route", HeaderId::route},
    {"record-route", HeaderId::record_route},
    {"path", HeaderId::path},
    {"contact", HeaderId::contact},
    {"from", HeaderId::from},
    {"to", HeaderId::to},
    {"call-id", HeaderId::call_id},
    {"cseq", HeaderId::cseq},
    {"max-forwards", HeaderId::max_forwards},
    {"content-length", HeaderId::content_length},
    {"content-type", HeaderId::content_type},
    {"content-encoding", HeaderId::content_encoding},
    {"supported", HeaderId::supported},
    {"require", HeaderId::require},
    {"proxy-require", HeaderId::proxy_require},
    {"unsupported", HeaderId::unsupported},
    {"flow-timer", HeaderId::flow_timer},
    {"expires", HeaderId::expires},
    {"retry-after", HeaderId::retry_after},
    {"allow", HeaderId::allow},
    {"user-agent", HeaderId::user_agent},
    {"server", HeaderId::server},
    {"subject", HeaderId::subject},
    {"event", HeaderId::event},
    {"allow-events", HeaderId::allow_events},
    {"refer-to", HeaderId::refer_to},
    {"referred-by", HeaderId::referred_by},
    {"session-expires", HeaderId::session_expires},
    {"accept-contact", HeaderId::accept_contact},
    {"reject-contact", HeaderId::reject_contact},
    {"request-disposition", HeaderId::request_disposition},
    {"identity", HeaderId::identity},
    {"identity-info", HeaderId::identity_info},
};

constexpr std::size_t kMaxNameLen = 20;

// Candidates bucketed by length so a lookup compares against one to four names.
struct Buckets {
  std::array<std::array<std::uint8_t, 6>, kMaxNameLen + 1> idx{};
  std::array<std::uint8_t, kMaxNameLen + 1> n{};
};
constexpr Buckets kBuckets = []() {  // "()" for cppcheck 2.10, which misparses "[] {" here
  Buckets b{};
  for (std::size_t i = 0; i < std::size(kNames); ++i) {
    std::size_t len = kNames[i].lower.size();
    b.idx[len][b.n[len]++] = static_cast<std::uint8_t>(i);
  }
  return b;
}();

// RFC 3261 §7.3.3 and the IANA registry of compact forms.
constexpr std::array<HeaderId, 26> kCompact = [] {
  std::array<HeaderId, 26> t{};
  auto set = [&t](char c, HeaderId id) { t[static_cast<std::size_t>(c - 'a')] = id; };
  set('a', HeaderId::accept_contact);
  set('b', HeaderId::referred_by);
  set('c', HeaderId::content_type);
  set('d', HeaderId::request_disposition);
  set('e', HeaderId::content_encoding);
  set('f', HeaderId::from);
  set('i', HeaderId::call_id);
  set('j', HeaderId::reject_contact);
  set('k', HeaderId::supported);
  set('l', HeaderId::content_length);
  set('m', HeaderId::contact);
  set('n', HeaderId::identity_info);
  set('o', HeaderId::event);
  set('r', HeaderId::refer_to);
  set('s', HeaderId::subject);
  set('t', HeaderId::to);
  set('u', HeaderId::allow_events);
  set('v', HeaderId::via);
  set('x', HeaderId::session_expires);
  set('y', HeaderId::identity);
  return t;
}();

constexpr std::string_view kCanonical[] = {
    "",
    "Via",
    "Route",
    "Record-Route",
    "Path",
    "Contact",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Content-Encoding",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "Flow-Timer",
    "Expires",
    "Retry-After",
    "Allow",
    "User-Agent",
    "Server",
    "Subject",
    "Event",
    "Allow-Events",
    "Refer-To",
    "Referred-By",
    "Session-Expires",
    "Accept-Contact",
    "Reject-Contact",
    "Request-Disposition",
    "Identity",
    "Identity-Info",
};
static_assert(std::size(kCanonical) == static_cast<std::size_t>(HeaderId::count_));

constexpr std::string_view kMethods[] = {
    "",       "INVITE", "ACK",       "BYE",    "CANCEL", "REGISTER", "OPTIONS", "INFO",
    "UPDATE", "PRACK",  "SUBSCRIBE", "NOTIFY", "REFER",  "MESSAGE",  "PUBLISH",
};

}  // namespace

HeaderId header_id(std::string_view name) noexcept {
  if (name.size() == 1) {
    char c = lex::lower(name[0]);
    return (c >= 'a' && c <= 'z') ? kCompact[static_cast<std::size_t>(c - 'a')] : HeaderId::other;
  }
  if (name.size() > kMaxNameLen) return HeaderId::other;
  const auto& bucket = kBuckets.idx[name.size()];
  for (std::size_t k = 0; k < kBuckets.n[name.size()]; ++k) {
    const NameEntry& e = kNames[bucket[k]];
    std::size_t i = 0;
    while (i < name.size() && lex::lower(name[i]) == e.lower[i]) ++i;
    if (i == name.size()) return e.id;
  }
  return HeaderId::other;
}

std::string_view canonical_name(HeaderId id) noexcept {
  auto i = static_cast<std::size_t>(id);
  return i < std::size(kCanonical) ? kCanonical[i] : std::string_view{};
}

bool is_single_valued(HeaderId id) noexcept {
  switch (id) {
    case HeaderId::call_id:
    case HeaderId::cseq:
    case HeaderId::from:
    case HeaderId::to:
    case HeaderId::max_forwards:
    case HeaderId::content_length:
    case HeaderId::flow_timer:
      return true;
    default:
      return false;
  }
}

Method method_from_name(std::string_view name) noexcept {
  for (std::size_t i = 1; i < std::size(kMethods); ++i)
    if (kMethods[i] == name) return static_cast<Method>(i);
  return Method::other;
}

std::string_view method_name(Method m) noexcept {
  auto i = static_cast<std::size_t>(m);
  return i < std::size(kMethods) ? kMethods[i] : std::string_view{};
}

const Header* Message::first(HeaderId id) const noexcept {
  const auto k = static_cast<std::size_t>(id);
  if (k >= first_.size()) return nullptr;
  const std::uint32_t i = first_[k];
  return i == 0 ? nullptr : &headers()[i - 1];
}

std::size_t Message::count(HeaderId id) const noexcept {
  std::size_t n = 0;
  for (const Header& h : headers()) n += h.id == id;
  return n;
}

void Message::reset() noexcept {
  raw_ = start_line_ = method_name_ = request_uri_ = reason_ = body_ = call_id_ = {};
  cseq_ = {};
  content_length_.reset();
  max_forwards_.reset();
  flow_timer_.reset();
  headers_end_ = 0;
  status_ = 0;
  method_ = Method::other;
  header_count_ = 0;
  first_.fill(0);
  overflow_.clear();  // keeps capacity: a reused Message does not allocate again
}

Header& Message::add_slot() {
  if (header_count_ < kInlineHeaders && overflow_.empty()) return inline_[header_count_++];
  if (overflow_.empty()) {
    overflow_.reserve(kInlineHeaders * 2);
    overflow_.assign(inline_.begin(), inline_.begin() + static_cast<std::ptrdiff_t>(header_count_));
  }
  ++header_count_;
  return overflow_.emplace_back();
}

}  // namespace edge::sip
