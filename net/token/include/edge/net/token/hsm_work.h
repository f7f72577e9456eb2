// HSM work off the I/O path: a bounded, prioritised queue in front of a small pool of threads that
// make the HSM calls (mints and cache-missing verifies), with per-source-address budgets.
#pragma once

#include <edge/net/token/flow_key.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace edge::flow {

// What a piece of HSM work is for; each kind has its own per-source budget.
enum class HsmWorkKind : std::uint8_t {
  verify,  // a token that neither the flow, the verified cache nor the failed-tag cache decided
  mint,    // a flow's first token (or its first under a new key version)
};
const char* to_string(HsmWorkKind k) noexcept;

// Served in this order when work waits (lower first). The core and flows that
// registered are the site's legitimate traffic; a flood can only come from
// sources that never registered (or from registered ones, whose verifies are
// still budgeted per source).
enum class HsmPriority : std::uint8_t {
  core = 0,          // a request from the configured core next hop
  registered = 1,    // a request on a flow that registered through us
  unregistered = 2,  // everything else
};
inline constexpr std::size_t kHsmPriorities = 3;
const char* to_string(HsmPriority p) noexcept;

// What submit() decided.
enum class HsmAdmission : std::uint8_t {
  queued,         // the job runs (or is shed, see Job) later, exactly once
  source_budget,  // the source address spent its budget for this kind: not queued
  queue_full,     // max_queued jobs wait and none of them is less urgent: not queued
  stopped,        // stop() ran: not queued
};
const char* to_string(HsmAdmission a) noexcept;

// Operator properties (hsm.work.*, hsm.budget.*). Rates are per second per
// source address (IPv4 address, or IPv6 /64: one subscriber's prefix), refilled
// continuously up to the burst. The core is never budgeted; mints on a
// registered flow (a re-mint after a rotation) are not either.
struct HsmWorkConfig {
  unsigned threads = 4;           // HSM calls at once: size to the HSM's session pool (fixed at start)
  std::size_t max_queued = 1024;  // jobs waiting, all classes together
  double verify_per_second = 400;
  double verify_burst = 1000;
  double mint_per_second = 200;  // mints for flows that have not registered
  double mint_burst = 500;
  // Budget slots (direct-mapped by a keyed hash of the source). Two sources in
  // one slot share its budget, never more than one source's worth of work.
  std::size_t source_slots = 8192;

  // Empty when usable, else the reason ("hsm.work.threads must be 1..64").
  std::string problem() const;
};

struct HsmWorkStats {
  std::uint64_t submitted = 0;  // jobs queued
  std::uint64_t completed = 0;  // jobs that ran
  std::uint64_t shed = 0;       // queued jobs pushed out by more urgent work before they ran
  std::uint64_t refused_verify_budget = 0, refused_mint_budget = 0, refused_queue_full = 0;
  std::array<std::uint64_t, kHsmPriorities> completed_by_priority{};
  std::size_t queued_now = 0, running_now = 0, queued_peak = 0;
  std::uint64_t wait_us_max = 0;    // longest queue wait of a job that ran
  std::uint64_t wait_us_total = 0;  // sum of the queue waits of the jobs that ran
  unsigned threads = 0;
  std::size_t max_queued = 0;
};

// The queue and its threads. Thread-safe; submit() never blocks on the HSM (a
// short mutex only), so an I/O worker can call it.
//
// A job is called exactly once: job(true) on one of the pool's threads to do
// its HSM work, or job(false) when it was shed (a more urgent job needed its
// place) or the queue stopped with it waiting; job(false) runs on the thread
// that shed or stopped it and must not block either. A job that throws is
// counted as completed and its exception dropped.
class HsmWorkQueue {
 public:
  using Job = std::function<void(bool run)>;
  using Clock = std::chrono::steady_clock;

  explicit HsmWorkQueue(const HsmWorkConfig& config = {});
  ~HsmWorkQueue();  // stop()
  HsmWorkQueue(const HsmWorkQueue&) = delete;
  HsmWorkQueue& operator=(const HsmWorkQueue&) = delete;

  // Queues `job` unless the source's budget for `kind` (when it applies to
  // `priority`) is spent or the queue is full. A full queue makes room for a
  // more urgent job by shedding the newest waiting job of the least urgent
  // class below it.
  HsmAdmission submit(HsmWorkKind kind, HsmPriority priority, const Endpoint& source, Job job,
                      Clock::time_point now = Clock::now());

  // Budgets and the queue bound of the next submits (a controlled restart
  // applies new properties); the thread count stays what the queue started
  // with. Throws std::invalid_argument on config.problem().
  void configure(const HsmWorkConfig& config);
  HsmWorkConfig config() const;

  // Waits until nothing is queued or running (tests, shutdown), or `limit`.
  bool drain(std::chrono::milliseconds limit);
  // Sheds every waiting job (job(false)), lets running ones finish, joins the
  // threads. Later submits answer `stopped`. Idempotent.
  void stop();

  HsmWorkStats stats() const;

 private:
  struct Entry {
    Job job;
    Clock::time_point queued;
    std::size_t priority = 0;
  };
  struct Bucket {
    std::array<std::uint8_t, 16> source{};
    bool used = false;
    double tokens = 0;
    Clock::time_point refilled{};
  };
  bool take_budget(std::vector<Bucket>& table, double rate, double burst, const Endpoint& source,
                   Clock::time_point now);
  void run_thread();

  mutable std::mutex mu_;
  std::condition_variable work_cv_, idle_cv_;
  HsmWorkConfig config_;
  std::array<std::deque<Entry>, kHsmPriorities> queues_;
  std::size_t queued_ = 0, running_ = 0;
  bool stopped_ = false;
  std::vector<std::thread> threads_;
  std::vector<Bucket> verify_budget_, mint_budget_;
  std::array<std::uint64_t, 2> hash_key_{};
  HsmWorkStats stats_;
};

}  // namespace edge::flow
