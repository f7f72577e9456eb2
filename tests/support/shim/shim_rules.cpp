// Parsing and evaluation of the fault shim's rules (see shim_rules.h).
#include "shim_rules.h"

#include "ckr_names.h"

#include <array>
#include <charconv>
#include <cstdio>

namespace edge::test::shim {
namespace {

constexpr std::array<const char*, kFnCount> kFnNames = {
    "C_Initialize",
    "C_Finalize",
    "C_GetInfo",
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismInfo",
    "C_OpenSession",
    "C_CloseSession",
    "C_CloseAllSessions",
    "C_GetSessionInfo",
    "C_Login",
    "C_Logout",
    "C_CreateObject",
    "C_DestroyObject",
    "C_GetAttributeValue",
    "C_SetAttributeValue",
    "C_FindObjectsInit",
    "C_FindObjects",
    "C_FindObjectsFinal",
    "C_SignInit",
    "C_Sign",
    "C_VerifyInit",
    "C_Verify",
    "C_GenerateKey",
    "C_GenerateRandom",
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::optional<std::uint64_t> parse_u64(std::string_view s, int base = 10) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// max_concurrent=0 parses as "no cap" in the Rule; written out it is a mistake.
bool line_has_zero_cap(const std::vector<std::string_view>& words) {
  for (auto w : words) {
    if (w.starts_with("max_concurrent=") && parse_u64(w.substr(15)) == std::uint64_t{0}) return true;
  }
  return false;
}

}  // namespace

const char* fn_name(Fn f) noexcept {
  auto i = static_cast<std::size_t>(f);
  return i < kFnCount ? kFnNames[i] : "C_?";
}

std::optional<Fn> fn_from_name(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kFnCount; ++i) {
    if (name == kFnNames[i]) return static_cast<Fn>(i);
  }
  return std::nullopt;
}

std::optional<CK_RV> ckr_from_name(std::string_view name) noexcept {
  if (name.starts_with("0x") || name.starts_with("0X")) {
    auto v = parse_u64(name.substr(2), 16);
    if (!v || *v == CKR_OK) return std::nullopt;
    return static_cast<CK_RV>(*v);
  }
  for (const auto& n : kCkrNames) {
    if (name == n.name) return n.value;
  }
  return std::nullopt;
}

std::string ckr_to_name(CK_RV rv) {
  if (rv == CKR_OK) return "CKR_OK";
  for (const auto& n : kCkrNames) {
    if (rv == n.value) return n.name;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "CKR_0x%lx", static_cast<unsigned long>(rv));
  return buf;
}

bool Rule::fire() noexcept {
  ++seen;
  if (seen <= after) return false;
  if (count != 0 && fired >= count) return false;
  if (every != 0 && (seen - after) % every != 0) return false;
  ++fired;
  return true;
}

ParseResult parse_rules(std::string_view text) {
  ParseResult out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;

    auto error = [&](const std::string& what) {
      out.errors.push_back("line " + std::to_string(line_no) + ": " + what);
    };
    std::vector<std::string_view> words;
    while (!line.empty()) {
      auto sp = line.find_first_of(" \t");
      words.push_back(line.substr(0, sp));
      line = sp == std::string_view::npos ? std::string_view{} : trim(line.substr(sp));
    }

    Rule r;
    if (words[0] == "*") {
      r.all = true;
    } else if (auto f = fn_from_name(words[0])) {
      r.fn = *f;
    } else {
      error("unknown function " + std::string(words[0]));
      continue;
    }
    bool ok = true;
    for (std::size_t i = 1; i < words.size() && ok; ++i) {
      auto w = words[i];
      auto eq = w.find('=');
      if (eq == std::string_view::npos) {
        auto rv = ckr_from_name(w);
        if (!rv || r.rv) {
          error(r.rv ? "more than one return code" : "unknown return code " + std::string(w));
          ok = false;
        } else {
          r.rv = rv;
        }
        continue;
      }
      auto key = w.substr(0, eq);
      auto raw = w.substr(eq + 1);
      auto val = raw.starts_with("0x") ? parse_u64(raw.substr(2), 16) : parse_u64(raw);
      std::uint64_t* slot = key == "count"            ? &r.count
                            : key == "every"          ? &r.every
                            : key == "after"          ? &r.after
                            : key == "delay_ms"       ? &r.delay_ms
                            : key == "delay_us"       ? &r.delay_us
                            : key == "max_concurrent" ? &r.max_concurrent
                            : key == "token_flags"    ? &r.token_flags
                                                      : nullptr;
      if (!slot || !val) {
        error("bad option " + std::string(w));
        ok = false;
      } else {
        *slot = *val;
      }
    }
    if (!ok) continue;
    if (r.token_flags != 0 && (r.all || r.fn != Fn::C_GetTokenInfo)) {
      error("token_flags=N applies to C_GetTokenInfo only");
      continue;
    }
    if (!r.rv && r.delay_ms == 0 && r.delay_us == 0 && r.max_concurrent == 0 && r.token_flags == 0) {
      error("rule neither fails (CKR_...), delays (delay_ms=N, delay_us=N) nor caps (max_concurrent=N)");
      continue;
    }
    if (r.delay_ms > 3'600'000 || r.delay_us > 3'600'000'000ULL) {
      error("delay above one hour");
      continue;
    }
    if (line_has_zero_cap(words)) {
      error("max_concurrent=0 would block every call for good");
      continue;
    }
    if (!r.all && r.fn == Fn::C_Finalize) {
      error("C_Finalize cannot be faulted");
      continue;
    }
    out.rules.push_back(r);
  }
  return out;
}

Decision decide(std::vector<Rule>& rules, Fn f) {
  Decision d;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    auto& r = rules[i];
    if (!r.matches(f) || !r.fire()) continue;
    d.delay_us += r.delay_ms * 1000 + r.delay_us;
    d.token_flags |= r.token_flags;
    if (r.rv && !d.rv) d.rv = r.rv;
    if (r.max_concurrent) d.capped.push_back(i);
  }
  return d;
}

}  // namespace edge::test::shim
