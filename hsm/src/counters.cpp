// OpCounters snapshot.
#include <edge/hsm/counters.h>

namespace edge::hsm {

OpCountersSnapshot OpCounters::snapshot() const noexcept {
  OpCountersSnapshot s;
  s.sign = sign.load(std::memory_order_relaxed);
  s.verify = verify.load(std::memory_order_relaxed);
  s.find = find.load(std::memory_order_relaxed);
  s.generate = generate.load(std::memory_order_relaxed);
  s.login = login.load(std::memory_order_relaxed);
  s.session_open = session_open.load(std::memory_order_relaxed);
  s.recoveries = recoveries.load(std::memory_order_relaxed);
  s.failures = failures.load(std::memory_order_relaxed);
  return s;
}

}  // namespace edge::hsm
