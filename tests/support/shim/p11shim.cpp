// libedge_p11shim.so: a PKCS#11 module that forwards to a real one and injects faults on request.
//
// Environment (the module path is read once at load; the control and stats paths at
// load and again at every C_Initialize, so one process can run several tests)
//   EDGE_P11SHIM_MODULE   the real module to forward to (default: the SoftHSM2 path
//                         found at configure time, EDGE_SOFTHSM_MODULE).
//   EDGE_P11SHIM_CONTROL  the control file holding the rules. Re-read whenever its
//                         inode, size or mtime changes (checked on every call), so a
//                         running test can start and stop faults. Missing or empty
//                         file: every call is forwarded.
//   EDGE_P11SHIM_STATS    optional: a file rewritten (temp + rename) after every
//                         injected fault, at C_Finalize and when the shim is unloaded,
//                         for tests that drive another process (the edge-hsm CLI).
//   EDGE_P11SHIM_STATS_MS optional, with EDGE_P11SHIM_STATS: while the module is
//                         initialised, a thread of the shim also rewrites the stats file
//                         every N ms when a counter changed, so a benchmark can read live
//                         counts of a running daemon (read twice N ms apart to be sure the
//                         file is current). Started by C_Initialize, joined by C_Finalize.
//
// Control file: one rule per line, `#` starts a comment.
//   <function|*> [CKR_NAME|0xHEX] [count=N] [every=N] [after=N] [delay_ms=N] [delay_us=N]
//                [max_concurrent=N] [token_flags=0xHEX]
//     function   one of the wrapped C_ functions below; `*` = all of them but C_Finalize
//     CKR_NAME   fail the call with this code instead of forwarding it
//     count=N    fire at most N times, then the rule is spent
//     every=N    fire on every Nth matching call only (5, 10, 15, ...)
//     after=N    let the first N matching calls through before firing
//     delay_ms=N sleep N ms when the rule fires (then fail or forward)
//     delay_us=N sleep N microseconds when the rule fires (adds to delay_ms; the sleep is
//                a plain nanosleep: it overshoots by the kernel's timer slack, about 50 us
//                by default, and never spins, so a slow HSM costs no CPU)
//     max_concurrent=N  an HSM with N engines: at most N of the calls this rule fires for
//                are inside the module at once (the delay and the real call both count);
//                further callers block until one leaves, in no promised order. For `*`
//                the N slots are shared by every function. Works alone or with a delay
//                or a code; N >= 1.
//   Each matching rule counts the call; the delays of every firing rule add up, the call
//   takes a slot of every firing rule that caps (in file order) before its delay, and the
//   first firing rule (in file order) that has a code decides the failure. Counters of
//   the rules restart when the file is re-read; so do the caps (calls already inside keep
//   the slot of the old rule until they leave).
//   Examples:
//     C_Sign CKR_DEVICE_ERROR count=3
//     C_Sign CKR_SESSION_HANDLE_INVALID every=5
//     * CKR_DEVICE_REMOVED
//     C_Sign delay_ms=300
//     C_Sign delay_us=1000 max_concurrent=4      # 1 ms per MAC, 4 engines: 4,000 MACs/s
//     C_Login CKR_PIN_INCORRECT
//
// Faithfulness to the PKCS#11 rules, so a test sees what a real token would do:
//   - a faulted C_Sign / C_Verify still finishes the real operation (into a scratch
//     buffer, result dropped), because an error return terminates the active operation;
//   - a faulted C_CloseSession / C_CloseAllSessions still closes the real session(s);
//   - every other faulted call is not forwarded (C_Login with a fault never reaches the
//     token, so an injected CKR_PIN_INCORRECT cannot lock a PIN).
//
// Counters: per function, calls seen and faults injected, calls inside the module now and
// the most seen at once (max_inside: after any wait for a max_concurrent slot, so with a
// cap it never exceeds N), calls that had to wait for a slot (waited) and are waiting now;
// the sessions open in the real module (a leak detector) and C_Finalize calls made while
// another thread was inside the module (forbidden by PKCS#11); read in-process through the
// exported edge_p11shim_* functions (dlopen the shim with RTLD_NOLOAD and dlsym them),
// or from the stats file. Everything here is thread-safe.
#include "shim_rules.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef EDGE_SOFTHSM_MODULE
#define EDGE_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#endif

#define SHIM_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using edge::test::shim::Fn;
using edge::test::shim::kFnCount;

struct FileSig {
  bool exists = false;
  ino_t ino = 0;
  off_t size = 0;
  long long mtime_ns = 0;
  bool operator==(const FileSig&) const = default;
};

// The slots of one max_concurrent rule: a counting semaphore.
struct Gate {
  explicit Gate(std::uint64_t n) : limit(n) {}
  std::mutex m;
  std::condition_variable cv;
  const std::uint64_t limit;
  std::uint64_t inside = 0;
};

struct State {
  std::once_flag once;
  void* real_handle = nullptr;
  CK_FUNCTION_LIST* real = nullptr;
  CK_FUNCTION_LIST list{};
  CK_RV load_rv = CKR_OK;

  std::mutex mu;  // guards control_path, stats_path, rules and sig
  std::string control_path;
  std::string stats_path;
  std::atomic<bool> has_control{false};
  std::vector<edge::test::shim::Rule> rules;
  std::vector<std::shared_ptr<Gate>> gates;  // per rule (null: no cap), rebuilt with the rules
  FileSig sig;

  std::array<std::atomic<unsigned long long>, kFnCount> calls{};
  std::array<std::atomic<unsigned long long>, kFnCount> injected{};
  std::atomic<unsigned long long> injected_total{0};
  std::array<std::atomic<int>, kFnCount> inside{};                 // past any slot wait, not yet returned
  std::array<std::atomic<int>, kFnCount> max_inside{};             // high-water mark of inside
  std::array<std::atomic<int>, kFnCount> waiting{};                // blocked on a max_concurrent slot now
  std::array<std::atomic<unsigned long long>, kFnCount> waited{};  // calls that had to wait

  // Sessions open in the real module as far as the calls through the shim tell.
  std::atomic<long long> open_sessions{0};
  // Calls currently inside a wrapper (delays included), and C_Finalize calls made while
  // another thread was inside one: PKCS#11 forbids that (the module tears down the state
  // the other call is using).
  std::atomic<int> in_flight{0};
  std::atomic<unsigned long long> finalize_while_busy{0};
  std::mutex stats_mu;

  // EDGE_P11SHIM_STATS_MS: the periodic stats writer.
  std::mutex writer_mu;
  std::condition_variable writer_cv;
  bool writer_stop = false;
  std::thread writer;
};

// Never destroyed: the stats flusher below runs at unload, after function-local statics
// would already be gone.
State& st() {
  static State* s = new State;
  return *s;
}

// The object handles each open session got from the module (C_FindObjects, C_GenerateKey,
// C_GenerateKeyPair, C_CreateObject), and the C_DestroyObject calls on a handle that the
// session did not get itself: a handle carried over from an earlier session, which a module
// restart may have given to another object since (PKCS#11 handles are not stable across
// C_Finalize / C_Initialize). Forgotten when the session closes.
struct SessionHandles {
  std::mutex mu;
  std::map<CK_SESSION_HANDLE, std::set<CK_OBJECT_HANDLE>> got;  // guarded by mu
  std::atomic<unsigned long long> destroy_unfound{0};
};
SessionHandles& session_handles() {
  static auto* h = new SessionHandles;  // never destroyed, as State
  return *h;
}
void got_handles(CK_SESSION_HANDLE session, const CK_OBJECT_HANDLE* objs, CK_ULONG n) {
  SessionHandles& h = session_handles();
  std::lock_guard lock(h.mu);
  auto& set = h.got[session];
  for (CK_ULONG i = 0; i < n; ++i) set.insert(objs[i]);
}
void forget_session(CK_SESSION_HANDLE session) {
  SessionHandles& h = session_handles();
  std::lock_guard lock(h.mu);
  h.got.erase(session);
}
void forget_all_sessions() {
  SessionHandles& h = session_handles();
  std::lock_guard lock(h.mu);
  h.got.clear();
}
void check_destroy(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE obj) {
  SessionHandles& h = session_handles();
  std::lock_guard lock(h.mu);
  auto it = h.got.find(session);
  if (it == h.got.end() || it->second.count(obj) == 0) h.destroy_unfound.fetch_add(1);
}

FileSig stat_control(const std::string& path) {
  FileSig sig;
  struct stat sb {};
  if (::stat(path.c_str(), &sb) == 0) {
    sig.exists = true;
    sig.ino = sb.st_ino;
    sig.size = sb.st_size;
    sig.mtime_ns = static_cast<long long>(sb.st_mtim.tv_sec) * 1000000000LL + sb.st_mtim.tv_nsec;
  }
  return sig;
}

// Caller holds st().mu.
void reload_if_changed(State& s) {
  FileSig now = stat_control(s.control_path);
  if (now == s.sig) return;
  s.sig = now;
  s.rules.clear();
  s.gates.clear();
  if (!now.exists) return;
  std::ifstream in(s.control_path);
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = edge::test::shim::parse_rules(text.str());
  for (const auto& e : parsed.errors) {
    std::fprintf(stderr, "edge_p11shim: %s: %s (rule ignored)\n", s.control_path.c_str(), e.c_str());
  }
  s.rules = std::move(parsed.rules);
  for (const auto& r : s.rules)
    s.gates.push_back(r.max_concurrent ? std::make_shared<Gate>(r.max_concurrent) : nullptr);
}

void write_stats() {
  State& s = st();
  std::string path;
  {
    std::lock_guard lock(s.mu);
    path = s.stats_path;
  }
  if (path.empty()) return;
  std::lock_guard lock(s.stats_mu);
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "injected_total " << s.injected_total.load() << '\n';
    out << "destroy_unfound " << session_handles().destroy_unfound.load() << '\n';
    for (std::size_t i = 0; i < kFnCount; ++i) {
      auto name = edge::test::shim::fn_name(static_cast<Fn>(i));
      out << "calls " << name << ' ' << s.calls[i].load() << '\n';
      out << "injected " << name << ' ' << s.injected[i].load() << '\n';
      out << "max_inside " << name << ' ' << s.max_inside[i].load() << '\n';
      out << "waited " << name << ' ' << s.waited[i].load() << '\n';
    }
  }
  std::rename(tmp.c_str(), path.c_str());
}

// One call through a wrapper, from entry to return: counts it, applies the rules (waits for
// the slots of capping rules, sleeps the delay) and holds the slots until the wrapper returns,
// so the real call counts against the cap too. fault(): the code to fail with (CKR_OK:
// forward).
class Call {
 public:
  explicit Call(Fn f) : idx_(static_cast<std::size_t>(f)) {
    State& s = st();
    s.in_flight.fetch_add(1, std::memory_order_acq_rel);
    s.calls[idx_].fetch_add(1, std::memory_order_relaxed);
    edge::test::shim::Decision d;
    if (s.has_control.load(std::memory_order_acquire)) {
      std::lock_guard lock(s.mu);
      if (!s.control_path.empty()) {
        reload_if_changed(s);
        if (!s.rules.empty()) {
          d = edge::test::shim::decide(s.rules, f);
          for (auto i : d.capped) held_.push_back(s.gates[i]);
        }
      }
    }
    for (auto& g : held_) acquire(*g);
    enter();
    if (d.delay_us) std::this_thread::sleep_for(std::chrono::microseconds(d.delay_us));
    token_flags_ = d.token_flags;
    if (d.rv) {
      fault_ = *d.rv;
      s.injected[idx_].fetch_add(1, std::memory_order_relaxed);
      s.injected_total.fetch_add(1, std::memory_order_relaxed);
      write_stats();
    }
  }
  ~Call() {
    State& s = st();
    // Leave before giving the slots back: a caller let in by the release must never find
    // this call still counted (max_inside <= N is what the tests assert).
    s.inside[idx_].fetch_sub(1, std::memory_order_acq_rel);
    for (auto it = held_.rbegin(); it != held_.rend(); ++it) release(**it);
    s.in_flight.fetch_sub(1, std::memory_order_acq_rel);
  }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;
  CK_RV fault() const noexcept { return fault_; }
  std::uint64_t token_flags() const noexcept { return token_flags_; }

 private:
  void acquire(Gate& g) {
    std::unique_lock lock(g.m);
    if (g.inside >= g.limit) {
      State& s = st();
      s.waited[idx_].fetch_add(1, std::memory_order_relaxed);
      s.waiting[idx_].fetch_add(1, std::memory_order_acq_rel);
      g.cv.wait(lock, [&] { return g.inside < g.limit; });
      s.waiting[idx_].fetch_sub(1, std::memory_order_acq_rel);
    }
    ++g.inside;
  }
  static void release(Gate& g) {
    {
      std::lock_guard lock(g.m);
      --g.inside;
    }
    g.cv.notify_one();
  }
  void enter() {
    State& s = st();
    const int now = s.inside[idx_].fetch_add(1, std::memory_order_acq_rel) + 1;
    int seen = s.max_inside[idx_].load(std::memory_order_relaxed);
    while (now > seen && !s.max_inside[idx_].compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
  }

  std::size_t idx_;
  CK_RV fault_ = CKR_OK;
  std::uint64_t token_flags_ = 0;
  std::vector<std::shared_ptr<Gate>> held_;
};

// The periodic writer (EDGE_P11SHIM_STATS_MS). It never calls into the real module, and it
// is joined before C_Finalize returns and when the shim is unloaded, so it never outlives
// the module's code.
unsigned long long counters_sum() {
  State& s = st();
  unsigned long long n = 0;
  for (std::size_t i = 0; i < kFnCount; ++i) n += s.calls[i].load() + s.waited[i].load();
  return n;
}
void start_writer() {
  State& s = st();
  const char* ms = std::getenv("EDGE_P11SHIM_STATS_MS");
  const long interval = ms ? std::atol(ms) : 0;
  {
    std::lock_guard lock(s.mu);
    if (interval <= 0 || s.stats_path.empty()) return;
  }
  std::lock_guard lock(s.writer_mu);
  if (s.writer.joinable()) return;
  s.writer_stop = false;
  s.writer = std::thread([interval] {
    State& w = st();
    unsigned long long last = ~0ULL;
    std::unique_lock lk(w.writer_mu);
    while (!w.writer_cv.wait_for(lk, std::chrono::milliseconds(interval), [&] { return w.writer_stop; })) {
      const unsigned long long now = counters_sum();
      if (now == last) continue;
      last = now;
      lk.unlock();
      write_stats();
      lk.lock();
    }
  });
}
void stop_writer() {
  State& s = st();
  std::thread t;
  {
    std::lock_guard lock(s.writer_mu);
    if (!s.writer.joinable()) return;
    s.writer_stop = true;
    t = std::move(s.writer);
  }
  s.writer_cv.notify_all();
  t.join();
}

CK_FUNCTION_LIST& real() { return *st().real; }

// ---- wrappers ---------------------------------------------------------------------------

#define SHIM_GUARD(fn)                   \
  Call shim_call(Fn::fn);                \
  if (CK_RV fault = shim_call.fault()) { \
    return fault;                        \
  }

// The control and stats files are taken from the environment at every C_Initialize, so
// one process can run several tests, each with its own files.
void read_environment() {
  State& s = st();
  std::lock_guard lock(s.mu);
  const char* c = std::getenv("EDGE_P11SHIM_CONTROL");
  const char* p = std::getenv("EDGE_P11SHIM_STATS");
  std::string control = c ? c : "";
  if (control != s.control_path) {
    s.control_path = control;
    s.sig = FileSig{};
    s.rules.clear();
  }
  s.stats_path = p ? p : "";
  s.has_control.store(!s.control_path.empty(), std::memory_order_release);
}

CK_RV w_Initialize(void* args) {
  read_environment();
  CK_RV rv = CKR_OK;
  {
    SHIM_GUARD(C_Initialize)
    rv = real().C_Initialize(args);
  }
  if (rv == CKR_OK) start_writer();
  return rv;
}
CK_RV w_Finalize(void* reserved) {
  if (st().in_flight.load(std::memory_order_acquire) > 0) st().finalize_while_busy.fetch_add(1);
  CK_RV rv = CKR_OK;
  {
    Call call(Fn::C_Finalize);  // counted (and delayed or capped), never faulted: parse_rules refuses it
    rv = real().C_Finalize(reserved);
  }
  if (rv == CKR_OK) {
    st().open_sessions.store(0);
    forget_all_sessions();
  }
  stop_writer();
  write_stats();
  return rv;
}
CK_RV w_GetInfo(CK_INFO* info) {
  SHIM_GUARD(C_GetInfo)
  return real().C_GetInfo(info);
}
CK_RV w_GetSlotList(CK_BBOOL present, CK_SLOT_ID* list, CK_ULONG* count) {
  SHIM_GUARD(C_GetSlotList)
  return real().C_GetSlotList(present, list, count);
}
CK_RV w_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO* info) {
  SHIM_GUARD(C_GetSlotInfo)
  return real().C_GetSlotInfo(slot, info);
}
CK_RV w_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO* info) {
  SHIM_GUARD(C_GetTokenInfo)
  CK_RV rv = real().C_GetTokenInfo(slot, info);
  if (rv == CKR_OK && info != nullptr) info->flags |= static_cast<CK_FLAGS>(shim_call.token_flags());
  return rv;
}
CK_RV w_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO* info) {
  SHIM_GUARD(C_GetMechanismInfo)
  return real().C_GetMechanismInfo(slot, type, info);
}
CK_RV w_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void* app, CK_NOTIFY notify,
                    CK_SESSION_HANDLE* session) {
  SHIM_GUARD(C_OpenSession)
  CK_RV rv = real().C_OpenSession(slot, flags, app, notify, session);
  if (rv == CKR_OK) st().open_sessions.fetch_add(1);
  return rv;
}
CK_RV w_CloseSession(CK_SESSION_HANDLE session) {
  Call call(Fn::C_CloseSession);
  CK_RV fault = call.fault();
  CK_RV rv = real().C_CloseSession(session);
  if (rv == CKR_OK) st().open_sessions.fetch_sub(1);
  forget_session(session);
  return fault ? fault : rv;
}
CK_RV w_CloseAllSessions(CK_SLOT_ID slot) {
  Call call(Fn::C_CloseAllSessions);
  CK_RV fault = call.fault();
  CK_RV rv = real().C_CloseAllSessions(slot);
  if (rv == CKR_OK) st().open_sessions.store(0);  // tests use one token
  forget_all_sessions();
  return fault ? fault : rv;
}
CK_RV w_GetSessionInfo(CK_SESSION_HANDLE session, CK_SESSION_INFO* info) {
  SHIM_GUARD(C_GetSessionInfo)
  return real().C_GetSessionInfo(session, info);
}
CK_RV w_Login(CK_SESSION_HANDLE session, CK_USER_TYPE type, CK_UTF8CHAR* pin, CK_ULONG len) {
  SHIM_GUARD(C_Login)
  return real().C_Login(session, type, pin, len);
}
CK_RV w_Logout(CK_SESSION_HANDLE session) {
  SHIM_GUARD(C_Logout)
  return real().C_Logout(session);
}
CK_RV w_CreateObject(CK_SESSION_HANDLE session, CK_ATTRIBUTE* tmpl, CK_ULONG n, CK_OBJECT_HANDLE* obj) {
  SHIM_GUARD(C_CreateObject)
  CK_RV rv = real().C_CreateObject(session, tmpl, n, obj);
  if (rv == CKR_OK && obj) got_handles(session, obj, 1);
  return rv;
}
CK_RV w_DestroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE obj) {
  SHIM_GUARD(C_DestroyObject)
  check_destroy(session, obj);
  return real().C_DestroyObject(session, obj);
}
CK_RV w_GetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE* tmpl, CK_ULONG n) {
  SHIM_GUARD(C_GetAttributeValue)
  return real().C_GetAttributeValue(session, obj, tmpl, n);
}
CK_RV w_SetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE* tmpl, CK_ULONG n) {
  SHIM_GUARD(C_SetAttributeValue)
  return real().C_SetAttributeValue(session, obj, tmpl, n);
}
CK_RV w_FindObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE* tmpl, CK_ULONG n) {
  SHIM_GUARD(C_FindObjectsInit)
  return real().C_FindObjectsInit(session, tmpl, n);
}
CK_RV w_FindObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE* objs, CK_ULONG max, CK_ULONG* count) {
  SHIM_GUARD(C_FindObjects)
  CK_RV rv = real().C_FindObjects(session, objs, max, count);
  if (rv == CKR_OK && objs && count) got_handles(session, objs, *count);
  return rv;
}
CK_RV w_FindObjectsFinal(CK_SESSION_HANDLE session) {
  SHIM_GUARD(C_FindObjectsFinal)
  return real().C_FindObjectsFinal(session);
}
CK_RV w_SignInit(CK_SESSION_HANDLE session, CK_MECHANISM* mech, CK_OBJECT_HANDLE key) {
  SHIM_GUARD(C_SignInit)
  return real().C_SignInit(session, mech, key);
}
CK_RV w_Sign(CK_SESSION_HANDLE session, CK_BYTE* data, CK_ULONG len, CK_BYTE* sig, CK_ULONG* sig_len) {
  Call call(Fn::C_Sign);
  if (CK_RV fault = call.fault()) {
    // An error return ends the operation: finish the real one so the session is idle.
    std::array<CK_BYTE, 1024> scratch{};
    CK_ULONG scratch_len = scratch.size();
    real().C_Sign(session, data, len, scratch.data(), &scratch_len);
    return fault;
  }
  return real().C_Sign(session, data, len, sig, sig_len);
}
CK_RV w_VerifyInit(CK_SESSION_HANDLE session, CK_MECHANISM* mech, CK_OBJECT_HANDLE key) {
  SHIM_GUARD(C_VerifyInit)
  return real().C_VerifyInit(session, mech, key);
}
CK_RV w_Verify(CK_SESSION_HANDLE session, CK_BYTE* data, CK_ULONG len, CK_BYTE* sig, CK_ULONG sig_len) {
  Call call(Fn::C_Verify);
  if (CK_RV fault = call.fault()) {
    real().C_Verify(session, data, len, sig, sig_len);  // ends the operation
    return fault;
  }
  return real().C_Verify(session, data, len, sig, sig_len);
}
CK_RV w_GenerateKey(CK_SESSION_HANDLE session, CK_MECHANISM* mech, CK_ATTRIBUTE* tmpl, CK_ULONG n,
                    CK_OBJECT_HANDLE* key) {
  SHIM_GUARD(C_GenerateKey)
  CK_RV rv = real().C_GenerateKey(session, mech, tmpl, n, key);
  if (rv == CKR_OK && key) got_handles(session, key, 1);
  return rv;
}
// Not counted nor faulted (no rules for it): forwarded, its handles remembered for the session.
CK_RV w_GenerateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM* mech, CK_ATTRIBUTE* pub_tmpl, CK_ULONG pub_n,
                        CK_ATTRIBUTE* priv_tmpl, CK_ULONG priv_n, CK_OBJECT_HANDLE* pub,
                        CK_OBJECT_HANDLE* priv) {
  CK_RV rv = real().C_GenerateKeyPair(session, mech, pub_tmpl, pub_n, priv_tmpl, priv_n, pub, priv);
  if (rv == CKR_OK && pub && priv) {
    got_handles(session, pub, 1);
    got_handles(session, priv, 1);
  }
  return rv;
}
CK_RV w_GenerateRandom(CK_SESSION_HANDLE session, CK_BYTE* out, CK_ULONG len) {
  SHIM_GUARD(C_GenerateRandom)
  return real().C_GenerateRandom(session, out, len);
}

#undef SHIM_GUARD

CK_RV shim_get_function_list(CK_FUNCTION_LIST** out);

void load() {
  State& s = st();
  read_environment();
  const char* module = std::getenv("EDGE_P11SHIM_MODULE");
  if (!module || !*module) module = EDGE_SOFTHSM_MODULE;

  s.real_handle = ::dlopen(module, RTLD_NOW | RTLD_LOCAL);
  if (!s.real_handle) {
    std::fprintf(stderr, "edge_p11shim: cannot load %s: %s\n", module, ::dlerror());
    s.load_rv = CKR_GENERAL_ERROR;
    return;
  }
  auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(s.real_handle, "C_GetFunctionList"));
  if (!get || get(&s.real) != CKR_OK || !s.real) {
    std::fprintf(stderr, "edge_p11shim: %s has no usable C_GetFunctionList\n", module);
    s.load_rv = CKR_GENERAL_ERROR;
    return;
  }
  s.list = *s.real;
  s.list.C_GetFunctionList = shim_get_function_list;
  s.list.C_Initialize = w_Initialize;
  s.list.C_Finalize = w_Finalize;
  s.list.C_GetInfo = w_GetInfo;
  s.list.C_GetSlotList = w_GetSlotList;
  s.list.C_GetSlotInfo = w_GetSlotInfo;
  s.list.C_GetTokenInfo = w_GetTokenInfo;
  s.list.C_GetMechanismInfo = w_GetMechanismInfo;
  s.list.C_OpenSession = w_OpenSession;
  s.list.C_CloseSession = w_CloseSession;
  s.list.C_CloseAllSessions = w_CloseAllSessions;
  s.list.C_GetSessionInfo = w_GetSessionInfo;
  s.list.C_Login = w_Login;
  s.list.C_Logout = w_Logout;
  s.list.C_CreateObject = w_CreateObject;
  s.list.C_DestroyObject = w_DestroyObject;
  s.list.C_GetAttributeValue = w_GetAttributeValue;
  s.list.C_SetAttributeValue = w_SetAttributeValue;
  s.list.C_FindObjectsInit = w_FindObjectsInit;
  s.list.C_FindObjects = w_FindObjects;
  s.list.C_FindObjectsFinal = w_FindObjectsFinal;
  s.list.C_SignInit = w_SignInit;
  s.list.C_Sign = w_Sign;
  s.list.C_VerifyInit = w_VerifyInit;
  s.list.C_Verify = w_Verify;
  s.list.C_GenerateKey = w_GenerateKey;
  s.list.C_GenerateKeyPair = w_GenerateKeyPair;
  s.list.C_GenerateRandom = w_GenerateRandom;
}

CK_RV shim_get_function_list(CK_FUNCTION_LIST** out) {
  if (!out) return CKR_ARGUMENTS_BAD;
  State& s = st();
  std::call_once(s.once, load);
  if (s.load_rv != CKR_OK) return s.load_rv;
  *out = &s.list;
  return CKR_OK;
}

struct Flusher {
  ~Flusher() {
    stop_writer();  // a process that exits without C_Finalize
    write_stats();
  }
} flusher;

}  // namespace

SHIM_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST** out) { return shim_get_function_list(out); }

// Faults injected so far, all functions together.
SHIM_EXPORT unsigned long long edge_p11shim_injected_total(void) { return st().injected_total.load(); }

// Calls seen / faults injected for one function ("C_Login"); 0 for unknown names.
SHIM_EXPORT unsigned long long edge_p11shim_calls(const char* fn) {
  auto f = edge::test::shim::fn_from_name(fn ? fn : "");
  return f ? st().calls[static_cast<std::size_t>(*f)].load() : 0;
}
SHIM_EXPORT unsigned long long edge_p11shim_injected(const char* fn) {
  auto f = edge::test::shim::fn_from_name(fn ? fn : "");
  return f ? st().injected[static_cast<std::size_t>(*f)].load() : 0;
}

// Sessions currently open in the real module, from the calls that went through the shim
// (C_OpenSession minus C_CloseSession; C_CloseAllSessions and C_Finalize reset it).
SHIM_EXPORT long long edge_p11shim_open_sessions(void) { return st().open_sessions.load(); }

// C_DestroyObject calls on a handle the session had not got from the module itself.
SHIM_EXPORT unsigned long long edge_p11shim_destroy_unfound(void) {
  return session_handles().destroy_unfound.load();
}

// C_Finalize calls made while another thread was inside a call of this module.
SHIM_EXPORT unsigned long long edge_p11shim_finalize_while_busy(void) {
  return st().finalize_while_busy.load();
}

// Calls of one function inside the module right now (past any max_concurrent wait), the
// most seen at once, calls blocked on a max_concurrent slot now, and calls that had to wait.
SHIM_EXPORT int edge_p11shim_inside(const char* fn) {
  auto f = edge::test::shim::fn_from_name(fn ? fn : "");
  return f ? st().inside[static_cast<std::size_t>(*f)].load() : 0;
}
SHIM_EXPORT int edge_p11shim_max_inside(const char* fn) {
  auto f = edge::test::shim::fn_from_name(fn ? fn : "");
  return f ? st().max_inside[static_cast<std::size_t>(*f)].load() : 0;
}
SHIM_EXPORT int edge_p11shim_waiting(const char* fn) {
  auto f = edge::test::shim::fn_from_name(fn ? fn : "");
  return f ? st().waiting[static_cast<std::size_t>(*f)].load() : 0;
}
SHIM_EXPORT unsigned long long edge_p11shim_waited(const char* fn) {
  auto f = edge::test::shim::fn_from_name(fn ? fn : "");
  return f ? st().waited[static_cast<std::size_t>(*f)].load() : 0;
}

// Zeroes every counter (not the rules' own counters, nor the open-session count; the
// high-water marks restart from the calls inside now).
SHIM_EXPORT void edge_p11shim_reset_stats(void) {
  State& s = st();
  for (auto& c : s.calls) c.store(0);
  for (auto& c : s.injected) c.store(0);
  for (std::size_t i = 0; i < kFnCount; ++i) s.max_inside[i].store(s.inside[i].load());
  for (auto& c : s.waited) c.store(0);
  s.injected_total.store(0);
  s.finalize_while_busy.store(0);
}
