// The Prometheus endpoint: edge_* from the front end's snapshot, process_* from /proc/self, serialized by
// prometheus-cpp, served by Boost.Beast. Labels have bounded values only: transport, method class,
// status code, reason, key set, the configured core; never an address or a user.
#include "metrics.h"

#include <openssl/ssl.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <deque>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>

namespace edge::firmware {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

constexpr flow::Transport kTransports[] = {flow::Transport::udp, flow::Transport::tcp, flow::Transport::tls,
                                           flow::Transport::ws, flow::Transport::wss};

// Families in the order they are added; each is filled before the next is begun.
class Families {
 public:
  MetricFamily& counter(std::string name, std::string help) {
    return add(std::move(name), std::move(help), MetricType::Counter);
  }
  MetricFamily& gauge(std::string name, std::string help) {
    return add(std::move(name), std::move(help), MetricType::Gauge);
  }
  MetricFamily& histogram(std::string name, std::string help) {
    return add(std::move(name), std::move(help), MetricType::Histogram);
  }
  std::vector<MetricFamily> take() {
    return {std::make_move_iterator(families_.begin()), std::make_move_iterator(families_.end())};
  }

 private:
  MetricFamily& add(std::string name, std::string help, MetricType type) {
    families_.push_back(MetricFamily{std::move(name), std::move(help), type, {}});
    return families_.back();
  }
  std::deque<MetricFamily> families_;
};

void sample(MetricFamily& f, double value, Labels labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

double d(std::uint64_t v) { return static_cast<double>(v); }

// Label values in lower case, as Prometheus conventions have them ("udp", not "UDP").
std::string transport_label(flow::Transport t) {
  std::string s = flow::to_string(t);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A histogram from per-bucket (not cumulative) counts; bounds in seconds, the
// last count is the +Inf bucket.
template <std::size_t N, std::size_t B>
void histogram(MetricFamily& f, const std::array<std::uint64_t, N>& counts,
               const std::array<double, B>& bounds, double sum_seconds, Labels labels = {}) {
  static_assert(N == B + 1);
  ClientMetric m;
  m.label = std::move(labels);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < N; ++i) {
    cumulative += counts[i];
    m.histogram.bucket.push_back({cumulative, i < B ? bounds[i] : std::numeric_limits<double>::infinity()});
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = sum_seconds;
  f.metric.push_back(std::move(m));
}

// Bounds in seconds from bounds in units of 1/per_second (1e3: ms, 1e6: us);
// a division, so 100 us is 0.0001 exactly as printed, not 9.999999999999999e-05.
template <std::size_t B>
constexpr std::array<double, B> seconds_from(const std::array<std::uint64_t, B>& bounds, double per_second) {
  std::array<double, B> s{};
  for (std::size_t i = 0; i < B; ++i) s[i] = static_cast<double>(bounds[i]) / per_second;
  return s;
}

class EdgeCollector final : public prometheus::Collectable {
 public:
  EdgeCollector(const SipFrontEnd& fe, std::function<std::uint64_t()> generation)
      : fe_(fe), generation_(std::move(generation)) {}

  std::vector<MetricFamily> Collect() const override {
    const FrontEndSnapshot n = fe_.snapshot();
    Families out;
    front_end(out, n);
    transport(out, n.transport);
    sip(out, n.proxy);
    hsm(out, n);
    core(out, n);
    return out.take();
  }

 private:
  void front_end(Families& out, const FrontEndSnapshot& n) const {
    sample(out.gauge("edge_build_info", "edged's version, as a label"), 1, {{"version", EDGE_VERSION}});
    auto& state = out.gauge("edge_front_end_state", "1 for the SIP front end's current state");
    for (const char* s : {"running", "draining", "stopped", "failed"})
      sample(state, n.state == s ? 1 : 0, {{"state", s}});
    sample(out.gauge("edge_config_generation", "the committed configuration generation that runs"),
           d(generation_ ? generation_() : 0));
    sample(out.gauge("edge_minting_key_version", "the key version new flow tokens are minted with"),
           n.minting_version, {{"key_set", n.key_set}});
    sample(out.counter("edge_restarts_total", "controlled restarts of the SIP front end"), d(n.restarts));
    histogram(
        out.histogram("edge_restart_pause_seconds", "pause of each controlled restart, drain to resume"),
        n.pause_buckets, seconds_from(FrontEndSnapshot::kPauseBoundsMs, 1e3), d(n.pause_sum_us) / 1e6);
    sample(out.gauge("edge_restart_last_pause_seconds", "pause of the last controlled restart"),
           d(n.pause_last_us) * 1e-6);
    sample(out.counter("edge_log_lines_dropped_total", "log lines dropped because the log queue was full"),
           d(n.log_dropped));
    sample(out.counter("edge_log_lines_suppressed_total", "log lines held back by the per-event rate limit"),
           d(n.proxy.log_suppressed));
  }

  static void transport(Families& out, const net::TransportStats& t) {
    auto per = [&](MetricFamily& f, auto field) {
      for (const auto tr : kTransports) sample(f, d(field(t.of(tr))), {{"transport", transport_label(tr)}});
    };
    auto& flows = out.gauge("edge_flows", "live client flows");
    for (const auto tr : kTransports) {
      sample(flows, d(t.flows_now[static_cast<std::size_t>(tr)]), {{"transport", transport_label(tr)}});
    }
    sample(out.gauge("edge_connections", "open client stream connections"), d(t.connections_now));
    per(out.counter("edge_connections_accepted_total", "stream connections accepted"),
        [](const net::TransportCounters& c) { return c.accepted; });
    per(out.counter("edge_flows_opened_total", "client flows created"),
        [](const net::TransportCounters& c) { return c.flows_opened; });
    per(out.counter("edge_flows_closed_total", "client flows ended"),
        [](const net::TransportCounters& c) { return c.flows_closed; });
    auto& msgs =
        out.counter("edge_transport_messages_total", "SIP messages read from and written to clients");
    auto& bytes = out.counter("edge_transport_bytes_total", "bytes read from and written to clients");
    for (const auto tr : kTransports) {
      const auto& c = t.of(tr);
      const std::string name = transport_label(tr);
      sample(msgs, d(c.messages_in), {{"direction", "in"}, {"transport", name}});
      sample(msgs, d(c.messages_out), {{"direction", "out"}, {"transport", name}});
      sample(bytes, d(c.bytes_in), {{"direction", "in"}, {"transport", name}});
      sample(bytes, d(c.bytes_out), {{"direction", "out"}, {"transport", name}});
    }
    per(out.counter("edge_keepalives_total", "keep-alives seen (CRLFCRLF, STUN, WebSocket ping)"),
        [](const net::TransportCounters& c) { return c.keepalives; });
    per(out.counter("edge_keepalive_answers_total", "keep-alive answers sent (CRLF pong, STUN response)"),
        [](const net::TransportCounters& c) { return c.keepalive_answers; });
    auto& refused = out.counter("edge_connections_refused_total", "stream connections refused, by reason");
    sample(refused, d(t.refused_max_connections), {{"reason", "max_connections"}});
    sample(refused, d(t.refused_per_address), {{"reason", "per_source_address"}});
    sample(refused, d(t.tls_handshake_failures), {{"reason", "tls_handshake"}});
    sample(refused, d(t.upgrade_refused), {{"reason", "websocket_upgrade"}});
    // PROXY protocol headers on the listeners marked `proxy` (behind a load balancer).
    auto& pp =
        out.counter("edge_proxy_protocol_headers_total",
                    "PROXY protocol headers on proxy listeners: accepted, or why the connection closed");
    sample(pp, d(t.proxy_accepted), {{"result", "accepted"}});
    sample(pp, d(t.proxy_refused_untrusted), {{"result", "untrusted"}});
    sample(pp, d(t.proxy_refused_missing), {{"result", "missing"}});
    sample(pp, d(t.proxy_refused_malformed), {{"result", "malformed"}});
    sample(pp, d(t.proxy_refused_unsupported), {{"result", "unsupported"}});
    sample(pp, d(t.proxy_refused_timeout), {{"result", "timeout"}});
    sample(out.counter("edge_stun_unsolicited_total",
                       "STUN Binding requests not answered because their source has no flow (no reflection)"),
           d(t.stun_unsolicited));
    auto& closed = out.counter("edge_connections_closed_total", "flows the edge closed, by reason");
    sample(closed, d(t.framing_errors), {{"reason", "framing_error"}});
    sample(closed, d(t.read_timeouts), {{"reason", "read_timeout"}});
    sample(closed, d(t.idle_timeouts), {{"reason", "idle_timeout"}});
    sample(closed, d(t.flow_timeouts), {{"reason", "flow_timeout"}});
    sample(closed, d(t.superseded_flows), {{"reason", "superseded"}});
    sample(closed, d(t.udp_flow_evictions), {{"reason", "evicted"}});
    sample(closed, d(t.unregistered_lifetime_closes), {{"reason", "unregistered_lifetime"}});
    sample(
        out.counter("edge_udp_flows_refused_total",
                    "datagrams from a new source given no flow: registered flows fill limits.max_udp_flows"),
        d(t.udp_flows_refused));
  }

  static void sip(Families& out, const net::ProxyStats& p) {
    auto by_method = [&](MetricFamily& f, const char* key, const char* value,
                         const std::array<std::uint64_t, net::kMethodClasses>& counts) {
      for (std::size_t i = 0; i < net::kMethodClasses; ++i) {
        sample(f, d(counts[i]), {{key, value}, {"method", net::to_string(static_cast<net::MethodClass>(i))}});
      }
    };
    auto& in =
        out.counter("edge_sip_requests_received_total", "SIP requests received, by source and method class");
    by_method(in, "source", "client", p.requests_in_client);
    by_method(in, "source", "core", p.requests_in_core);
    auto& fwd = out.counter("edge_sip_requests_forwarded_total",
                            "SIP requests forwarded, by destination and method class");
    by_method(fwd, "destination", "core", p.requests_out_core);
    by_method(fwd, "destination", "flow", p.requests_out_flow);
    auto& resp = out.counter("edge_sip_responses_received_total", "SIP responses received, by source");
    sample(resp, d(p.responses_from_clients), {{"source", "client"}});
    sample(resp, d(p.responses_from_core), {{"source", "core"}});
    auto& gen =
        out.counter("edge_sip_responses_generated_total", "SIP responses the edge answered itself, by code");
    const std::pair<const char*, std::uint64_t> codes[] = {
        {"200", p.r200_options}, {"400", p.r400}, {"403", p.r403}, {"404", p.r404}, {"408", p.r408},
        {"416", p.r416},         {"420", p.r420}, {"421", p.r421}, {"430", p.r430}, {"439", p.r439},
        {"483", p.r483},         {"500", p.r500}, {"503", p.r503}};
    std::uint64_t listed = 0;
    for (const auto& [code, v] : codes) {
      sample(gen, d(v), {{"code", code}});
      listed += v;
    }
    sample(gen, d(p.local_responses > listed ? p.local_responses - listed : 0), {{"code", "other"}});
    auto& drops = out.counter("edge_drops_total", "SIP messages dropped without an answer, by reason");
    const std::pair<const char*, std::uint64_t> reasons[] = {
        {"unparseable", p.drop_unparseable},
        {"response_not_ours", p.drop_response_not_ours},
        {"response_flow_gone", p.drop_response_flow_gone},
        {"response_core_down", p.drop_response_core_down},
        {"ack_unroutable", p.drop_ack},
        {"answer_undeliverable", p.drop_answer_undeliverable},
        {"edit_failed", p.drop_edit_failed},
        {"hsm_busy_udp", p.drop_hsm_busy}};
    for (const auto& [reason, v] : reasons) sample(drops, d(v), {{"reason", reason}});
    auto& outbound = out.counter("edge_outbound_total", "RFC 5626 work done, by kind");
    sample(outbound, d(p.paths_added), {{"kind", "path_added"}});
    sample(outbound, d(p.record_routes_added), {{"kind", "record_route_added"}});
    sample(outbound, d(p.incoming_via_token), {{"kind", "routed_by_token"}});
    sample(outbound, d(p.outgoing_via_token), {{"kind", "own_token_seen"}});
    sample(outbound, d(p.flow_timers_set), {{"kind", "flow_timer_set"}});
    auto& tx = out.counter("edge_sip_retransmissions_total", "retransmission handling, by kind");
    sample(tx, d(p.retransmissions_absorbed), {{"kind", "absorbed"}});
    sample(tx, d(p.responses_replayed), {{"kind", "response_replayed"}});
    sample(tx, d(p.acks_absorbed), {{"kind", "ack_absorbed"}});
    sample(tx, d(p.retransmissions_to_clients), {{"kind", "sent_to_client"}});
    sample(out.counter("edge_sip_transaction_evictions_total", "transactions evicted from a full table"),
           d(p.transaction_evictions));
  }

  static void hsm(Families& out, const FrontEndSnapshot& n) {
    const auto& h = n.hsm_ops;
    auto& state = out.gauge("edge_hsm_state", "1 for the HSM's current state");
    for (const auto s :
         {hsm::HsmState::available, hsm::HsmState::unavailable, hsm::HsmState::pin_incorrect}) {
      sample(state, n.hsm_state == s ? 1 : 0, {{"state", hsm::to_string(s)}});
    }
    auto& ops = out.counter("edge_hsm_operations_total", "PKCS#11 operations made, by kind");
    const std::pair<const char*, std::uint64_t> kinds[] = {
        {"sign", h.sign},         {"verify", h.verify}, {"find", h.find},
        {"generate", h.generate}, {"login", h.login},   {"session_open", h.session_open}};
    for (const auto& [kind, v] : kinds) sample(ops, d(v), {{"op", kind}});
    sample(out.counter("edge_hsm_failures_total", "HSM operations that ended in an error"), d(h.failures));
    sample(out.counter("edge_hsm_recoveries_total", "session reopen, re-login, re-find and rebuild"),
           d(h.recoveries));
    auto& results =
        out.counter("edge_hsm_mac_operations_total", "flow-token MAC operations, by kind and result");
    auto& latency = out.histogram("edge_hsm_mac_duration_seconds",
                                  "flow-token MAC operations from session checkout to answer");
    constexpr auto kBounds = seconds_from(hsm::kMacLatencyBoundsUs, 1e6);
    for (const auto& [op, m] : {std::pair<const char*, const hsm::MacOpSnapshot&>{"sign", h.mac_sign},
                                std::pair<const char*, const hsm::MacOpSnapshot&>{"verify", h.mac_verify}}) {
      for (std::size_t r = 0; r < hsm::kMacResults; ++r) {
        sample(results, d(m.results[r]),
               {{"op", op}, {"result", hsm::to_string(static_cast<hsm::MacStatus>(r))}});
      }
      histogram(latency, m.buckets, kBounds, d(m.sum_us) * 1e-6, {{"op", op}});
    }
    // The token economy: what the caches saved and what reached the HSM.
    const auto& p = n.proxy;
    auto& mints = out.counter("edge_token_mints_total", "flow tokens needed, by where they came from");
    sample(mints, d(p.mints_hsm), {{"via", "hsm"}});
    sample(mints, d(p.mints_avoided), {{"via", "cache"}});
    auto& verifies = out.counter("edge_token_verifies_total",
                                 "flow-token verifies, by how they were decided (cache: hit, hsm: miss)");
    sample(verifies, d(p.verifies_hsm), {{"via", "hsm"}});
    sample(verifies, d(p.verifies_avoided), {{"via", "cache"}});
    sample(out.counter("edge_token_negative_cache_hits_total",
                       "forged tokens refused by the failed-token cache (resets when the rules are rebuilt)"),
           d(n.negative_cache_hits));
    // HSM work off the I/O path and its admission control.
    const auto& w = n.hsm_work;
    sample(out.gauge("edge_hsm_work_threads", "threads making the proxy's HSM calls"), w.threads);
    sample(out.gauge("edge_hsm_queue_depth", "HSM jobs waiting"), d(w.queued_now));
    sample(out.gauge("edge_hsm_queue_running", "HSM jobs in the HSM now"), d(w.running_now));
    sample(out.gauge("edge_hsm_queue_limit", "hsm.work.max_queued"), d(w.max_queued));
    sample(out.gauge("edge_hsm_queue_peak", "most HSM jobs ever waiting at once"), d(w.queued_peak));
    auto& done = out.counter("edge_hsm_jobs_completed_total", "HSM jobs that ran, by priority class");
    for (std::size_t i = 0; i < flow::kHsmPriorities; ++i) {
      sample(done, d(w.completed_by_priority[i]),
             {{"priority", flow::to_string(static_cast<flow::HsmPriority>(i))}});
    }
    sample(out.counter("edge_hsm_queue_wait_seconds_total", "time HSM jobs waited in the queue, summed"),
           d(w.wait_us_total) * 1e-6);
    sample(out.gauge("edge_hsm_queue_wait_max_seconds", "longest queue wait of an HSM job"),
           d(w.wait_us_max) * 1e-6);
    auto& refused = out.counter("edge_hsm_admissions_refused_total", "HSM work refused by admission control");
    sample(refused, d(w.refused_verify_budget), {{"reason", "verify_budget"}});
    sample(refused, d(w.refused_mint_budget), {{"reason", "mint_budget"}});
    sample(refused, d(w.refused_queue_full), {{"reason", "queue_full"}});
    sample(refused, d(w.shed), {{"reason", "shed"}});
    sample(out.counter("edge_hsm_parked_total", "messages that waited for HSM work"), d(p.hsm_parked));
    sample(out.counter("edge_hsm_resume_dropped_total",
                       "parked messages whose flow was gone when they came back"),
           d(p.hsm_resume_dropped));
  }

  static void core(Families& out, const FrontEndSnapshot& n) {
    if (n.core.empty()) return;
    const auto& t = n.transport;
    // Per configured core (label core: its URI; with one core the configured value, as before).
    auto& up = out.gauge("edge_core_up", "1 while the connection to the core is up");
    auto& state = out.gauge("edge_core_state", "1 for the state the core is in (up, probing, down)");
    auto& connects = out.counter("edge_core_connects_total", "connections made to the core");
    auto& disconnects = out.counter("edge_core_disconnects_total", "connections to the core lost");
    auto& msgs = out.counter("edge_core_messages_total", "SIP messages exchanged with the core");
    auto& depth = out.gauge("edge_core_queue_depth", "messages waiting for the core connection");
    auto& ka = out.counter(
        "edge_core_keepalive_timeouts_total",
        "links to the core dropped because a CRLF ping went unanswered (core.keepalive_timeout_ms)");
    auto& requests =
        out.counter("edge_core_requests_total", "new requests chosen for the core (several cores)");
    auto& pings = out.counter("edge_core_health_checks_total",
                              "OPTIONS health checks sent to the core, by result (answered, failed)");
    for (std::size_t i = 0; i < t.cores.size() && i < n.core_uris.size(); ++i) {
      const net::CoreStats& c = t.cores[i];
      const std::string& uri = n.core_uris[i];
      const Labels core{{"core", uri}};
      sample(up, c.link_up ? 1 : 0, core);
      for (const auto st : {net::CoreState::up, net::CoreState::probing, net::CoreState::down}) {
        sample(state, c.state == st ? 1 : 0, {{"core", uri}, {"state", std::string(net::to_string(st))}});
      }
      sample(connects, d(c.connects), core);
      sample(disconnects, d(c.disconnects), core);
      sample(msgs, d(c.messages_in), {{"core", uri}, {"direction", "in"}});
      sample(msgs, d(c.messages_out), {{"core", uri}, {"direction", "out"}});
      sample(depth, d(c.queued_now), core);
      sample(ka, d(c.keepalive_timeouts), core);
      sample(requests, d(c.requests), core);
      sample(pings, d(c.health_answers), {{"core", uri}, {"result", "answered"}});
      sample(pings, d(c.health_failures), {{"core", uri}, {"result", "failed"}});
    }
    // For the core link as a whole (label core: the configured value).
    const Labels all{{"core", n.core}};
    sample(out.counter("edge_core_identity_failures_total",
                       "TLS connections to the core refused: the certificate was not the configured core's"),
           d(t.core_identity_failures), all);
    sample(out.counter("edge_core_queue_full_total", "messages refused because the core queue was full"),
           d(t.core_queue_full), all);
    sample(out.counter("edge_core_refused_down_total",
                       "messages for the core refused while its link was down (503)"),
           d(t.core_refused_down), all);
    sample(
        out.counter("edge_core_stale_dropped_total",
                    "queued messages dropped unsent because they waited longer than core.max_queue_age_ms"),
        d(t.core_stale_dropped), all);
  }

  const SipFrontEnd& fe_;
  std::function<std::uint64_t()> generation_;
};

// /proc/self, as the Prometheus client libraries' process collectors read it.
class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<MetricFamily> Collect() const override {
    Families out;
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    // Fields after the command name (which may hold spaces), from field 3 on.
    std::vector<std::string> f;
    if (const auto close = stat.rfind(')'); close != std::string::npos) {
      std::istringstream rest(stat.substr(close + 2));
      for (std::string w; rest >> w;) f.push_back(w);
    }
    auto field = [&](std::size_t n) {  // n: the field number of proc(5)
      return n >= 3 && n - 3 < f.size() ? std::strtod(f[n - 3].c_str(), nullptr) : 0.0;
    };
    if (!f.empty()) {
      sample(out.counter("process_cpu_seconds_total", "user and system CPU time spent, in seconds"),
             (field(14) + field(15)) / tick);
      sample(out.gauge("process_virtual_memory_bytes", "virtual memory size in bytes"), field(23));
      sample(out.gauge("process_resident_memory_bytes", "resident memory size in bytes"), field(24) * page);
      sample(out.gauge("process_threads", "threads of the process"), field(20));
      std::ifstream uptime_file("/proc/stat");
      for (std::string line; std::getline(uptime_file, line);) {
        if (line.rfind("btime ", 0) == 0) {
          sample(out.gauge("process_start_time_seconds", "start time since the Unix epoch, in seconds"),
                 std::strtod(line.c_str() + 6, nullptr) + field(22) / tick);
          break;
        }
      }
    }
    // Linux 6.2 and later give the count as the directory's size (22 us); listing
    // it costs about 0.7 us per fd, which with 10,000 flows is 7 ms a scrape.
    std::size_t fds = 0;
    struct stat fd_dir {};
    if (::stat("/proc/self/fd", &fd_dir) == 0 && fd_dir.st_size > 0) {
      fds = static_cast<std::size_t>(fd_dir.st_size);
    } else {
      std::error_code ec;
      for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
           it.increment(ec))
        ++fds;
    }
    sample(out.gauge("process_open_fds", "open file descriptors"), d(fds));
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
      sample(out.gauge("process_max_fds", "the file descriptor limit"), d(lim.rlim_cur));
    }
    return out.take();
  }
};

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::size_t kMaxHeaderBytes = 16'384;
constexpr auto kExchangeTimeout = std::chrono::seconds(10);

// "1.2.3.4:9464" / "[::1]:9464" -> endpoint; throws with the reason.
tcp::endpoint parse_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos)
    throw std::runtime_error("metrics: expected HOST:PORT, got '" + listen + "'");
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec) throw std::runtime_error("metrics: '" + host + "' is not an IP address");
  const unsigned long port = std::strtoul(listen.c_str() + colon + 1, nullptr, 10);
  if (port > 65535) throw std::runtime_error("metrics: bad port in '" + listen + "'");
  return {addr, static_cast<std::uint16_t>(port)};
}

std::shared_ptr<asio::ssl::context> make_tls(const MetricsOptions& o) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(c, o.certificate.c_str()) != 1)
    throw std::runtime_error("metrics: cannot load metrics.tls.certificate '" + o.certificate.string() + "'");
  if (SSL_CTX_use_PrivateKey_file(c, o.private_key.c_str(), SSL_FILETYPE_PEM) != 1)
    throw std::runtime_error("metrics: cannot load metrics.tls.private_key '" + o.private_key.string() + "'");
  if (SSL_CTX_check_private_key(c) != 1)
    throw std::runtime_error("metrics: metrics.tls.private_key does not match metrics.tls.certificate");
  if (!o.client_ca.empty()) {
    if (SSL_CTX_load_verify_locations(c, o.client_ca.c_str(), nullptr) != 1)
      throw std::runtime_error("metrics: cannot load metrics.tls.client_ca '" + o.client_ca.string() + "'");
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return ctx;
}

}  // namespace

MetricsOptions metrics_options(const mgmt::v1::MetricsSettings& m, const std::filesystem::path& state_dir) {
  auto under = [&](const std::string& p) -> std::filesystem::path {
    if (p.empty()) return {};
    const std::filesystem::path path(p);
    return path.is_absolute() ? path : state_dir / path;
  };
  MetricsOptions o;
  o.listen = m.listen();
  o.certificate = under(m.tls_certificate());
  o.private_key = under(m.tls_private_key());
  o.client_ca = under(m.client_ca_file());
  return o;
}

namespace {
class CellCollector final : public prometheus::Collectable {
 public:
  explicit CellCollector(std::function<mgmt::v1::CellSummary()> summary) : summary_(std::move(summary)) {}
  std::vector<MetricFamily> Collect() const override {
    Families out;
    const mgmt::v1::CellSummary c = summary_ ? summary_() : mgmt::v1::CellSummary();
    if (c.name().empty()) return out.take();
    const Labels cell{{"cell", c.name()}};
    auto& state = out.gauge("edge_cell_state", "1 for this member's cell state");
    for (const char* s : {"joined", "pending", "degraded", "left", "conflict", "failed"})
      sample(state, c.state() == s ? 1 : 0, {{"cell", c.name()}, {"state", s}});
    sample(out.gauge("edge_cell_minting_version", "the cell's minting version (0: unknown)"), c.minting(),
           cell);
    sample(out.gauge("edge_cell_local_minting_version", "the version this member's front end mints"),
           c.local_minting(), cell);
    sample(out.gauge("edge_cell_members", "approved members of the cell"), c.members(), cell);
    sample(out.gauge("edge_cell_members_live", "approved members whose lease in etcd is alive"),
           c.live_members(), cell);
    sample(out.gauge("edge_cell_etcd_up", "1 when this member's last read of etcd succeeded"),
           c.etcd_healthy() ? 1 : 0, cell);
    sample(out.gauge("edge_cell_rotation_in_progress", "1 while a rotation is in phase prepare or switch"),
           c.rotation_phase() == "prepare" || c.rotation_phase() == "switch" ? 1 : 0, cell);
    return out.take();
  }

 private:
  std::function<mgmt::v1::CellSummary()> summary_;
};
}  // namespace

std::shared_ptr<prometheus::Collectable> make_cell_collector(std::function<mgmt::v1::CellSummary()> summary) {
  return std::make_shared<CellCollector>(std::move(summary));
}

std::shared_ptr<prometheus::Collectable> make_edge_collector(const SipFrontEnd& front_end,
                                                             std::function<std::uint64_t()> generation) {
  return std::make_shared<EdgeCollector>(front_end, std::move(generation));
}

std::shared_ptr<prometheus::Collectable> make_process_collector() {
  return std::make_shared<ProcessCollector>();
}

// Exchanges point to the Impl, not own it: the io_context (a member) destroys
// the ones still pending when it goes, before the members they use.
struct MetricsServer::Impl {
  MetricsOptions options;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectors;
  std::shared_ptr<asio::ssl::context> tls;
  std::atomic<std::size_t> connections{0};
  std::uint16_t port = 0;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::thread thread;

  std::string body() const {
    std::vector<MetricFamily> all;
    for (const auto& c : collectors) {
      auto f = c->Collect();
      all.insert(all.end(), std::make_move_iterator(f.begin()), std::make_move_iterator(f.end()));
    }
    return prometheus::TextSerializer().Serialize(all);
  }

  // The answer to one request; every answer closes the connection.
  http::response<http::string_body> answer(const http::request_parser<http::empty_body>* parsed,
                                           http::status status, std::string text) const {
    http::response<http::string_body> r{status, 11};
    r.set(http::field::server, "edged");
    r.set(http::field::connection, "close");
    if (parsed != nullptr) {
      const auto& req = parsed->get();
      r.version(req.version());
      const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
      if (status == http::status::ok && req.target() != "/metrics") {
        status = http::status::not_found;
        text = "not found: the metrics are at /metrics\n";
      } else if (status == http::status::ok && !get) {
        status = http::status::method_not_allowed;
        r.set(http::field::allow, "GET, HEAD");
        text = "method not allowed: GET /metrics\n";
      } else if (status == http::status::ok) {
        r.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        text = body();
      }
      r.result(status);
      if (req.method() == http::verb::head) {
        r.content_length(text.size());
        r.keep_alive(false);
        return r;
      }
    }
    if (status != http::status::ok) r.set(http::field::content_type, "text/plain; charset=utf-8");
    r.body() = std::move(text);
    r.prepare_payload();
    r.keep_alive(false);
    return r;
  }

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) serve(std::move(s));
      accept();
    });
  }

  void serve(tcp::socket s) {
    if (connections.fetch_add(1) >= MetricsServer::kMaxConnections) {
      connections.fetch_sub(1);
      boost::system::error_code ignored;
      s.close(ignored);  // a scraper retries; a flood does not pile up
      return;
    }
    if (tls) {
      auto c = std::make_shared<Exchange<beast::ssl_stream<beast::tcp_stream>>>(
          this, beast::tcp_stream(std::move(s)), *tls);
      c->start_tls();
    } else {
      std::make_shared<Exchange<beast::tcp_stream>>(this, beast::tcp_stream(std::move(s)))->start();
    }
  }

  // One connection: (handshake,) one request, one answer, close. Bounded by kExchangeTimeout.
  template <class Stream>
  struct Exchange : std::enable_shared_from_this<Exchange<Stream>> {
    template <class... A>
    Exchange(Impl* s, A&&... a) : server(s), stream(std::forward<A>(a)...) {
      parser.header_limit(kMaxHeaderBytes);
      parser.body_limit(0);
    }
    ~Exchange() { server->connections.fetch_sub(1); }

    beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream); }

    void start_tls() {
      tcp().expires_after(kExchangeTimeout);
      if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
        stream.async_handshake(
            asio::ssl::stream_base::server, [self = this->shared_from_this()](boost::system::error_code ec) {
              if (ec) {
                spdlog::debug("event=metrics_http error=\"tls handshake: {}\"", ec.message());
                return;  // the socket closes with us
              }
              self->read();
            });
      }
    }
    void start() {
      tcp().expires_after(kExchangeTimeout);
      read();
    }
    void read() {
      http::async_read(stream, buffer, parser,
                       [self = this->shared_from_this()](boost::system::error_code ec, std::size_t) {
                         self->on_read(ec);
                       });
    }
    void on_read(boost::system::error_code ec) {
      if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::connection_reset)
        return;  // nothing (complete) to answer
      if (ec == http::error::header_limit) {
        write(server->answer(nullptr, http::status::request_header_fields_too_large,
                             "request head over 16384 bytes\n"));
      } else if (ec == http::error::body_limit) {
        write(server->answer(nullptr, http::status::payload_too_large, "no request body is accepted\n"));
      } else if (ec) {
        write(server->answer(nullptr, http::status::bad_request, "bad request: " + ec.message() + "\n"));
      } else {
        write(server->answer(&parser, http::status::ok, {}));
      }
    }
    void write(http::response<http::string_body> r) {
      response = std::move(r);
      http::async_write(
          stream, response,
          [self = this->shared_from_this()](boost::system::error_code, std::size_t) { self->close(); });
    }
    void close() {
      boost::system::error_code ignored;
      if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
        // No close_notify round trip: the answer is framed by Content-Length.
        tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
      } else {
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      }
    }

    Impl* server;
    Stream stream;
    beast::flat_buffer buffer{kMaxHeaderBytes};
    http::request_parser<http::empty_body> parser;
    http::response<http::string_body> response;
  };
};

MetricsServer::MetricsServer(const MetricsOptions& options,
                             std::vector<std::shared_ptr<prometheus::Collectable>> collectors)
    : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.options = options;
  d.collectors = std::move(collectors);
  if (!options.enabled()) throw std::invalid_argument("metrics: no metrics.listen");
  if (options.tls() && options.private_key.empty())
    throw std::runtime_error("metrics: metrics.tls.certificate is set but metrics.tls.private_key is not");
  if (!options.tls() && (!options.private_key.empty() || !options.client_ca.empty()))
    throw std::runtime_error("metrics: metrics.tls.private_key / client_ca need metrics.tls.certificate");
  if (options.tls()) d.tls = make_tls(options);
  const tcp::endpoint ep = parse_listen(options.listen);
  boost::system::error_code ec;
  d.acceptor.open(ep.protocol(), ec);
  if (!ec) d.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) d.acceptor.bind(ep, ec);
  if (!ec) d.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("metrics: cannot serve on '" + options.listen + "': " + ec.message());
  d.port = d.acceptor.local_endpoint().port();
  d.accept();
  d.thread = std::thread([&d] {
    for (;;) {
      try {
        d.io.run();
        return;
      } catch (const std::exception& e) {  // a collector threw: that scrape is lost, not the endpoint
        spdlog::warn("event=metrics_http error=\"{}\"", e.what());
      }
    }
  });
}

MetricsServer::~MetricsServer() {
  asio::post(impl_->io, [d = impl_.get()] {
    boost::system::error_code ignored;
    d->acceptor.close(ignored);
    d->io.stop();  // exchanges in flight end with the io_context
  });
  impl_->thread.join();
}

std::uint16_t MetricsServer::port() const noexcept { return impl_->port; }
const MetricsOptions& MetricsServer::options() const noexcept { return impl_->options; }

}  // namespace edge::firmware
