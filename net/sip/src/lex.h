// Character classes and small scanners shared by the SIP parser, accessors and editor (internal).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace edge::sip::lex {

// RFC 3261 §25.1 token: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
inline constexpr std::array<bool, 256> kToken = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("-.!%*_+`'~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

inline bool is_token(char c) noexcept { return kToken[static_cast<unsigned char>(c)]; }
inline bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
inline bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool is_alnum(char c) noexcept { return is_alpha(c) || is_digit(c); }
inline bool is_hex(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
inline bool is_wsp(char c) noexcept { return c == ' ' || c == '\t'; }
// Inside a value the parser has already checked that every CR LF is followed by SP/HT
// (folding), so CR and LF there are linear white space.
inline bool is_lws(char c) noexcept { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

inline char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

inline bool ieq(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// A header value or reason phrase we write: one line, no control characters but HT.
inline bool is_one_line(std::string_view v) noexcept {
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

inline bool all_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_token(c)) return false;
  return true;
}

inline std::string_view trim(std::string_view s) noexcept {
  std::size_t b = 0, e = s.size();
  while (b < e && is_lws(s[b])) ++b;
  while (e > b && is_lws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

inline std::size_t skip_lws(std::string_view s, std::size_t i) noexcept {
  while (i < s.size() && is_lws(s[i])) ++i;
  return i;
}

// 1*DIGIT with no sign and no white space, at most `max`.
inline bool parse_uint(std::string_view s, std::uint64_t max, std::uint32_t& out) noexcept {
  if (s.empty()) return false;
  // Leading zeros are legal ("Content-Length: 0000"): drop them before the length check.
  std::size_t z = 0;
  while (z + 1 < s.size() && s[z] == '0') ++z;
  s.remove_prefix(z);
  if (s.size() > 10) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (v > max) return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

// Index of the end of a quoted-string starting at s[i] == '"' (one past the closing quote),
// or npos when it is not terminated. Handles quoted-pair escapes.
inline std::size_t skip_quoted(std::string_view s, std::size_t i) noexcept {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      if (++i >= s.size()) return std::string_view::npos;
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// Takes the next element off a comma-separated header value (RFC 3261 §7.3.1), ignoring commas
// inside quoted strings and <...>. Elements come back trimmed; empty ones are skipped. Returns
// false at the end, or with error set on an unterminated quote or angle bracket.
inline bool split_next(std::string_view& rest, std::string_view& item, bool& error) noexcept {
  while (!rest.empty()) {
    bool angle = false;
    std::size_t i = 0;
    for (; i < rest.size(); ++i) {
      char c = rest[i];
      if (c == '"') {
        std::size_t q = skip_quoted(rest, i);
        if (q == std::string_view::npos) break;
        i = q - 1;
      } else if (c == '<') {
        angle = true;
      } else if (c == '>') {
        angle = false;
      } else if (c == ',' && !angle) {
        break;
      }
    }
    if (angle || (i < rest.size() && rest[i] == '"')) {
      error = true;
      rest = {};
      return false;
    }
    std::string_view t = trim(rest.substr(0, i));
    rest = i < rest.size() ? rest.substr(i + 1) : rest.substr(rest.size());
    if (!t.empty()) {
      item = t;
      return true;
    }
  }
  return false;
}

}  // namespace edge::sip::lex
