// OpCounters snapshot and the MAC latency histogram.
#include <edge/hsm/counters.h>

#include <algorithm>

namespace edge::hsm {

void MacOpCounters::record(std::size_t result, std::chrono::steady_clock::duration took) noexcept {
  const auto us = static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
  const auto* bound = std::lower_bound(kMacLatencyBoundsUs.begin(), kMacLatencyBoundsUs.end(), us);
  buckets_[static_cast<std::size_t>(bound - kMacLatencyBoundsUs.begin())].fetch_add(1, std::memory_order_relaxed);
  results_[std::min(result, kMacResults - 1)].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(us, std::memory_order_relaxed);
}

MacOpSnapshot MacOpCounters::snapshot() const noexcept {
  MacOpSnapshot s;
  for (std::size_t i = 0; i < kMacLatencyBuckets; ++i) {
    s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    s.count += s.buckets[i];
  }
  for (std::size_t i = 0; i < kMacResults; ++i) s.results[i] = results_[i].load(std::memory_order_relaxed);
  s.sum_us = sum_us_.load(std::memory_order_relaxed);
  return s;
}

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
  s.mac_sign = mac_sign.snapshot();
  s.mac_verify = mac_verify.snapshot();
  return s;
}

}  // namespace edge::hsm
