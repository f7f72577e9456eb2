// Counters of HSM operations by kind, exposed in status and used by tests and benchmarks.
#pragma once

#include <atomic>
#include <cstdint>

namespace edge::hsm {

struct OpCountersSnapshot {
  std::uint64_t sign = 0;          // C_Sign calls made for MAC sign
  std::uint64_t verify = 0;        // C_Sign calls made to verify a tag
  std::uint64_t find = 0;          // object searches (C_FindObjectsInit)
  std::uint64_t generate = 0;      // C_GenerateKey
  std::uint64_t login = 0;         // C_Login
  std::uint64_t session_open = 0;  // C_OpenSession
  std::uint64_t recoveries = 0;    // session reopen / re-login / re-find / rebuild
  std::uint64_t failures = 0;      // operations that ended in an error
  std::uint64_t total() const { return sign + verify + find + generate + login + session_open; }
};

class OpCounters {
 public:
  std::atomic<std::uint64_t> sign{0}, verify{0}, find{0}, generate{0}, login{0}, session_open{0},
      recoveries{0}, failures{0};
  OpCountersSnapshot snapshot() const noexcept;
};

}  // namespace edge::hsm
