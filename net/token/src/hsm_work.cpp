// HsmWorkQueue: per-source token buckets, a bounded three-class queue, a fixed pool of HSM threads.
#include <edge/net/token/hsm_work.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

namespace edge::flow {

const char* to_string(HsmWorkKind k) noexcept {
  switch (k) {
    case HsmWorkKind::verify:
      return "verify";
    case HsmWorkKind::mint:
      return "mint";
  }
  return "?";
}

const char* to_string(HsmPriority p) noexcept {
  switch (p) {
    case HsmPriority::core:
      return "core";
    case HsmPriority::registered:
      return "registered";
    case HsmPriority::unregistered:
      return "unregistered";
  }
  return "?";
}

const char* to_string(HsmAdmission a) noexcept {
  switch (a) {
    case HsmAdmission::queued:
      return "queued";
    case HsmAdmission::source_budget:
      return "source_budget";
    case HsmAdmission::queue_full:
      return "queue_full";
    case HsmAdmission::stopped:
      return "stopped";
  }
  return "?";
}

std::string HsmWorkConfig::problem() const {
  auto finite = [](double v) { return std::isfinite(v) && v >= 0; };
  if (threads < 1 || threads > 64) return "hsm.work.threads must be 1..64";
  if (max_queued < 1) return "hsm.work.max_queued must be at least 1";
  if (!finite(verify_per_second) || !finite(verify_burst) || verify_burst < 1)
    return "hsm.budget.verify_per_second must be >= 0 and hsm.budget.verify_burst >= 1";
  if (!finite(mint_per_second) || !finite(mint_burst) || mint_burst < 1)
    return "hsm.budget.mint_per_second must be >= 0 and hsm.budget.mint_burst >= 1";
  if (source_slots < 1) return "source_slots must be at least 1";
  return {};
}

HsmWorkQueue::HsmWorkQueue(const HsmWorkConfig& config) : config_(config) {
  if (const std::string p = config_.problem(); !p.empty()) throw std::invalid_argument(p);
  const auto& k = process_hash_key();
  hash_key_ = {k[0] ^ 0x6873'6d2d'776f'726bULL, k[1] + 0x6275'6467'6574'73ULL};  // not the flow table's key
  verify_budget_.resize(config_.source_slots);
  mint_budget_.resize(config_.source_slots);
  stats_.threads = config_.threads;
  stats_.max_queued = config_.max_queued;
  threads_.reserve(config_.threads);
  for (unsigned i = 0; i < config_.threads; ++i) threads_.emplace_back([this] { run_thread(); });
}

HsmWorkQueue::~HsmWorkQueue() { stop(); }

void HsmWorkQueue::configure(const HsmWorkConfig& next) {
  std::lock_guard lock(mu_);
  HsmWorkConfig merged = next;
  merged.threads = config_.threads;            // fixed at start
  merged.source_slots = config_.source_slots;  // the tables keep their size (and their buckets)
  if (const std::string p = merged.problem(); !p.empty()) throw std::invalid_argument(p);
  config_ = merged;
  stats_.max_queued = config_.max_queued;
}

HsmWorkConfig HsmWorkQueue::config() const {
  std::lock_guard lock(mu_);
  return config_;
}

// One source: an IPv4 address, or the /64 of an IPv6 one (a subscriber gets a
// whole prefix, so per-address budgets would be 2^64 budgets). A v4-mapped
// address counts as its IPv4 address.
bool HsmWorkQueue::take_budget(std::vector<Bucket>& table, double rate, double burst, const Endpoint& source,
                               Clock::time_point now) {
  const Endpoint e = source.unmapped();
  std::array<std::uint8_t, 16> id{};
  std::size_t n = 0;
  if (e.family == Family::ipv4) {
    std::copy_n(e.address.begin(), 4, id.begin());
    n = 4;
  } else {
    std::copy_n(e.address.begin(), 8, id.begin());
    id[15] = 6;  // an IPv6 /64 never equals an IPv4 address
    n = 16;
  }
  const std::uint64_t h = siphash13(hash_key_, {id.data(), n});
  Bucket& b = table[h % table.size()];
  auto refill = [&] {
    if (now <= b.refilled) return;  // callers' clocks may be a little behind each other
    const double secs = std::chrono::duration<double>(now - b.refilled).count();
    b.tokens = std::min(burst, b.tokens + secs * rate);
    b.refilled = now;
  };
  if (!b.used) {
    b.used = true;
    b.source = id;
    b.tokens = burst;
    b.refilled = now;
  } else if (b.source != id) {
    // Another source holds the slot: take it over once that one's budget is
    // back to full (it has been quiet); until then the newcomer shares it.
    refill();
    if (b.tokens >= burst) b.source = id;
  } else {
    refill();
  }
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

HsmAdmission HsmWorkQueue::submit(HsmWorkKind kind, HsmPriority priority, const Endpoint& source, Job job,
                                  Clock::time_point now) {
  Job shed;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return HsmAdmission::stopped;
    if (priority != HsmPriority::core) {
      if (kind == HsmWorkKind::verify &&
          !take_budget(verify_budget_, config_.verify_per_second, config_.verify_burst, source, now)) {
        ++stats_.refused_verify_budget;
        return HsmAdmission::source_budget;
      }
      if (kind == HsmWorkKind::mint && priority == HsmPriority::unregistered &&
          !take_budget(mint_budget_, config_.mint_per_second, config_.mint_burst, source, now)) {
        ++stats_.refused_mint_budget;
        return HsmAdmission::source_budget;
      }
    }
    const auto p = static_cast<std::size_t>(priority);
    if (queued_ >= config_.max_queued) {
      // Room for urgent work: the newest waiting job of the least urgent class
      // below this one goes (it is the one that would have waited longest).
      std::size_t victim = kHsmPriorities;
      for (std::size_t q = kHsmPriorities; q-- > p + 1;) {
        if (!queues_[q].empty()) {
          victim = q;
          break;
        }
      }
      if (victim == kHsmPriorities) {
        ++stats_.refused_queue_full;
        return HsmAdmission::queue_full;
      }
      shed = std::move(queues_[victim].back().job);
      queues_[victim].pop_back();
      --queued_;
      ++stats_.shed;
    }
    queues_[p].push_back({std::move(job), now, p});
    ++queued_;
    ++stats_.submitted;
    stats_.queued_peak = std::max(stats_.queued_peak, queued_);
  }
  work_cv_.notify_one();
  if (shed) {
    try {
      shed(false);
    } catch (...) {  // NOLINT(bugprone-empty-catch): documented: a job's exception is dropped
    }
  }
  return HsmAdmission::queued;
}

void HsmWorkQueue::run_thread() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stopped_ || queued_ > 0; });
    if (queued_ == 0) return;  // stopped and nothing left for us
    Entry e;
    for (auto& q : queues_) {
      if (!q.empty()) {
        e = std::move(q.front());
        q.pop_front();
        break;
      }
    }
    --queued_;
    ++running_;
    const std::size_t priority = e.priority;
    const auto waited =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - e.queued).count();
    stats_.wait_us_total += static_cast<std::uint64_t>(waited);
    stats_.wait_us_max = std::max(stats_.wait_us_max, static_cast<std::uint64_t>(waited));
    lock.unlock();
    try {
      e.job(true);
    } catch (...) {  // NOLINT(bugprone-empty-catch): documented: a job's exception is dropped
    }
    e.job = nullptr;  // what it captured goes before the counters say it is done
    lock.lock();
    --running_;
    ++stats_.completed;
    ++stats_.completed_by_priority[priority];
    if (queued_ == 0 && running_ == 0) idle_cv_.notify_all();
  }
}

bool HsmWorkQueue::drain(std::chrono::milliseconds limit) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, limit, [&] { return queued_ == 0 && running_ == 0; });
}

void HsmWorkQueue::stop() {
  std::vector<Job> left;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& q : queues_) {
      for (auto& e : q) left.push_back(std::move(e.job));
      q.clear();
    }
    stats_.shed += left.size();
    queued_ = 0;
  }
  work_cv_.notify_all();
  for (Job& j : left) {
    try {
      j(false);
    } catch (...) {  // NOLINT(bugprone-empty-catch): documented: a job's exception is dropped
    }
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  std::lock_guard lock(mu_);
  idle_cv_.notify_all();
}

HsmWorkStats HsmWorkQueue::stats() const {
  std::lock_guard lock(mu_);
  HsmWorkStats s = stats_;
  s.queued_now = queued_;
  s.running_now = running_;
  return s;
}

}  // namespace edge::flow
