// State: admission, flow open/close, handler delivery, the TLS contexts in use, worker choice.
#include "state.h"

#include "core_link.h"

#include "address.h"

#include "edge/net/sip/headers.h"
#include "edge/net/sip/message.h"

#include <algorithm>
#include <charconv>

namespace edge::net::detail {

State::State(const TransportConfig& cfg, std::shared_ptr<MessageHandler> h)
    : config(cfg),
      sip_limits{cfg.limits.max_message_size, sip::Limits{}.max_header_line, sip::Limits{}.max_headers},
      handler_(std::move(h)) {
  // validate() refused any range that does not parse.
  for (const auto& s : cfg.proxy_trusted_sources) {
    if (auto c = Cidr::parse(s)) trusted_proxies_.push_back(*c);
  }
  if (cfg.core.enabled) {
    for (const auto& t : core_targets(cfg.core)) {
      if (auto e = flow::Endpoint::parse(t.address, t.port)) core_endpoints_.push_back(e->unmapped());
    }
  }
}

bool State::core_ip(const flow::Endpoint& remote) const noexcept {
  const flow::Endpoint r = remote.unmapped();
  return std::any_of(core_endpoints_.begin(), core_endpoints_.end(),
                     [&](const flow::Endpoint& c) { return r.family == c.family && r.address == c.address; });
}

bool State::core_udp_peer(const flow::Endpoint& remote) const noexcept {
  const flow::Endpoint r = remote.unmapped();
  return std::any_of(core_endpoints_.begin(), core_endpoints_.end(), [&](const flow::Endpoint& c) {
    return r.family == c.family && r.address == c.address && r.port == c.port;
  });
}

// "SIP/2.0 200 ..." whose top Via carries our health branch: z9hG4bK-edge-health-<core>.<cseq>.
bool State::take_health_answer(std::string_view bytes) {
  if (cores.empty() || config.core.health_interval.count() <= 0) return false;
  if (bytes.substr(0, 8) != "SIP/2.0 " || bytes.find(kHealthBranchPrefix) == std::string_view::npos)
    return false;
  sip::Message m;
  if (sip::parse(bytes, m) != sip::Error::ok || m.is_request()) return false;
  sip::Via v;
  if (sip::via_at(m, 0, v) != sip::Error::ok ||
      v.branch.substr(0, kHealthBranchPrefix.size()) != kHealthBranchPrefix)
    return false;
  const std::string_view rest = v.branch.substr(kHealthBranchPrefix.size());
  const auto dot = rest.find('.');
  std::size_t index = 0;
  std::uint32_t seq = 0;
  if (dot == std::string_view::npos) return true;  // ours, but mangled: nobody else's either
  const auto a = std::from_chars(rest.data(), rest.data() + dot, index);
  const auto b = std::from_chars(rest.data() + dot + 1, rest.data() + rest.size(), seq);
  if (a.ec != std::errc() || b.ec != std::errc() || index >= cores.size()) return true;
  cores[index]->health_answer(seq, m.status());
  return true;
}

void State::count_core_in(const flow::Endpoint& remote) {
  const flow::Endpoint r = remote.unmapped();
  for (std::size_t i = 0; i < core_endpoints_.size() && i < cores.size(); ++i) {
    const auto& c = core_endpoints_[i];
    if (c.family == r.family && c.address == r.address && c.port == r.port &&
        cores[i]->target().transport == flow::Transport::udp) {
      cores[i]->count_in();
      return;
    }
  }
  counters.core_messages_in.fetch_add(1, std::memory_order_relaxed);
}

namespace {
std::uint64_t fnv1a(std::string_view s) noexcept {
  std::uint64_t h = 1469598103934665603ull;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}
}  // namespace

std::shared_ptr<CoreLink> State::choose_core(std::string_view bytes) {
  if (cores.empty()) return nullptr;
  const bool response = bytes.substr(0, 8) == "SIP/2.0 ";
  if (cores.size() == 1) {
    // One core: a response goes to it whatever its health (the core's own
    // transaction waits for it); a request only while it is not down.
    const auto& l = cores.front();
    return response || l->state() != CoreState::down || l->first_attempt() ? l : nullptr;
  }
  sip::Message m;
  const bool parsed = sip::parse(bytes, m) == sip::Error::ok;
  if (parsed && response && !m.is_request()) {
    // RFC 3261 §18.2.2: a response goes where its (now top) Via says: the core that sent the request.
    sip::Via v;
    if (sip::via_at(m, 0, v) == sip::Error::ok) {
      const std::uint16_t port = v.port ? *v.port : (v.transport == "TLS" ? 5061 : 5060);
      if (auto e = flow::Endpoint::parse(v.host, port)) {
        const flow::Endpoint r = e->unmapped();
        // The core of that address and the Via's transport; else of that address (a UDP core beside a TCP
        // one).
        std::shared_ptr<CoreLink> by_address;
        for (std::size_t i = 0; i < core_endpoints_.size() && i < cores.size(); ++i) {
          const auto& c = core_endpoints_[i];
          if (c.family != r.family || c.address != r.address || c.port != r.port) continue;
          if (v.transport == flow::to_string(cores[i]->target().transport)) return cores[i];
          if (!by_address) by_address = cores[i];
        }
        if (by_address) return by_address;
      }
    }
  }
  // RFC 3261 §18.1.1: a request above 1300 bytes (path MTU unknown) goes over
  // a congestion-controlled transport: to a reliable core when one is usable.
  const bool large = !response && bytes.size() > kUdpRequestLimit &&
                     std::any_of(cores.begin(), cores.end(), [](const auto& l) {
                       return l->target().transport != flow::Transport::udp && l->state() != CoreState::down;
                     });
  // The best healthy cores (lowest priority number); none up: those still
  // probing; none of those: one whose first connection attempt is under way.
  const std::uint64_t h = parsed ? fnv1a(m.call_id()) : 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto eligible = [pass, large](const CoreLink& l) {
      if (large && l.target().transport == flow::Transport::udp) return false;
      const CoreState s = l.state();
      if (pass == 0) return s == CoreState::up;
      if (pass == 1) return s == CoreState::probing;
      return l.first_attempt();
    };
    std::uint32_t best = UINT32_MAX;
    std::uint64_t total = 0;
    for (const auto& l : cores) {
      if (!eligible(*l)) continue;
      if (l->target().priority < best) {
        best = l->target().priority;
        total = 0;
      }
      if (l->target().priority == best) total += std::max<std::uint32_t>(1, l->target().weight);
    }
    if (total == 0) continue;
    std::uint64_t r = h % total;
    for (const auto& l : cores) {
      if (!eligible(*l) || l->target().priority != best) continue;
      const std::uint64_t w = std::max<std::uint32_t>(1, l->target().weight);
      if (r < w) return l;
      r -= w;
    }
  }
  return nullptr;
}

bool State::trusted_proxy(const asio::ip::address& from) const {
  const flow::Endpoint a = to_flow(from, 0).unmapped();
  return std::any_of(trusted_proxies_.begin(), trusted_proxies_.end(),
                     [&](const Cidr& c) { return c.contains(a); });
}

std::shared_ptr<ssl::context> State::tls_server() const {
  std::lock_guard lock(tls_mu_);
  return tls_server_;
}
std::shared_ptr<ssl::context> State::tls_client() const {
  std::lock_guard lock(tls_mu_);
  return tls_client_;
}
void State::set_tls(std::shared_ptr<ssl::context> server, std::shared_ptr<ssl::context> client) {
  std::lock_guard lock(tls_mu_);
  tls_server_ = std::move(server);
  tls_client_ = std::move(client);
}

Worker& State::least_loaded() noexcept {
  // Ties go round-robin so an idle start does not pile everything on worker 0.
  const unsigned start = rr_.fetch_add(1, std::memory_order_relaxed);
  // There is always at least one worker (the transport layer starts one per thread, minimum one).
  Worker* best = workers[start % workers.size()].get();
  for (std::size_t i = 1; i < workers.size(); ++i) {
    Worker& w = *workers[(start + i) % workers.size()];
    if (w.load.load(std::memory_order_relaxed) < best->load.load(std::memory_order_relaxed)) best = &w;
  }
  return *best;
}

Worker& State::next_worker() noexcept {
  return *workers[rr_.fetch_add(1, std::memory_order_relaxed) % workers.size()];
}

bool State::admit(const asio::ip::address& from) {
  if (!admit_total()) return false;
  if (admit_source(from)) return true;
  release_total();
  return false;
}

void State::release(const asio::ip::address& from) {
  release_source(from);
  release_total();
}

bool State::admit_total() {
  if (connections_.fetch_add(1, std::memory_order_relaxed) >= config.limits.max_connections) {
    connections_.fetch_sub(1, std::memory_order_relaxed);
    counters.refused_max_connections.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void State::release_total() { connections_.fetch_sub(1, std::memory_order_relaxed); }

bool State::admit_source(const asio::ip::address& from) {
  const flow::Endpoint key = to_flow(from, 0).unmapped();
  {
    std::lock_guard lock(addr_mu_);
    std::size_t& n = per_address_[key];
    if (n < config.limits.max_per_source_address) {
      ++n;
      return true;
    }
    if (n == 0) per_address_.erase(key);
  }
  counters.refused_per_address.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void State::release_source(const asio::ip::address& from) {
  const flow::Endpoint key = to_flow(from, 0).unmapped();
  std::lock_guard lock(addr_mu_);
  auto it = per_address_.find(key);
  if (it != per_address_.end() && --it->second == 0) per_address_.erase(it);
}

std::shared_ptr<FlowEntry> State::open_flow(const flow::FlowKey& key, Worker& w, std::weak_ptr<FlowLink> link,
                                            bool adopted) {
  auto e = std::make_shared<FlowEntry>(key, w.index, std::move(link), Clock::now());
  e->adopted = adopted;
  if (!table.insert(e)) return nullptr;
  counters.of(key.transport).flows_opened.fetch_add(1, std::memory_order_relaxed);
  if (key.transport == flow::Transport::udp) forget_closed_udp(key);
  return e;
}

bool State::closed_udp(const flow::FlowKey& key) const {
  if (!any_closed_udp_.load(std::memory_order_acquire)) return false;
  std::lock_guard lock(closed_udp_mu_);
  return closed_udp_.contains(key);
}

void State::remember_closed_udp(const flow::FlowKey& key) {
  std::lock_guard lock(closed_udp_mu_);
  if (!closed_udp_.insert(key).second) return;
  closed_udp_order_.push_back(key);
  const std::size_t max = std::max<std::size_t>(1, config.limits.max_udp_flows);
  while (closed_udp_.size() > max && !closed_udp_order_.empty()) {
    closed_udp_.erase(closed_udp_order_.front());
    closed_udp_order_.pop_front();
  }
  // Keys opened again leave the set, not the queue: keep the queue bounded too.
  while (closed_udp_order_.size() > 2 * max) {
    closed_udp_.erase(closed_udp_order_.front());
    closed_udp_order_.pop_front();
  }
  any_closed_udp_.store(true, std::memory_order_release);
}

void State::forget_closed_udp(const flow::FlowKey& key) {
  if (!any_closed_udp_.load(std::memory_order_acquire)) return;
  std::lock_guard lock(closed_udp_mu_);
  closed_udp_.erase(key);
}

std::shared_ptr<Listener> State::udp_listener_at(const flow::Endpoint& local) const {
  // listeners / bound are set once in Transports::start(), before any message.
  for (std::size_t i = 0; i < bound.size() && i < listeners.size(); ++i) {
    if (bound[i].transport == flow::Transport::udp && bound[i].local == local) return listeners[i];
  }
  return nullptr;
}

void State::close_flow(const std::shared_ptr<FlowEntry>& entry, CloseReason why) {
  if (!entry) return;
  // Gone for routing before anyone hears of it (flow_alive false, send_to_flow false).
  table.erase(*entry);
  counters.of(entry->key.transport).flows_closed.fetch_add(1, std::memory_order_relaxed);
  if (entry->key.transport == flow::Transport::udp && why != CloseReason::shutdown &&
      (!entry->adopted || entry->registered())) {
    remember_closed_udp(entry->key);
  }
  switch (why) {
    case CloseReason::idle_timeout:
      counters.idle_timeouts.fetch_add(1, std::memory_order_relaxed);
      break;
    case CloseReason::flow_timeout:
      counters.flow_timeouts.fetch_add(1, std::memory_order_relaxed);
      break;
    case CloseReason::read_timeout:
      counters.read_timeouts.fetch_add(1, std::memory_order_relaxed);
      break;
    case CloseReason::unregistered_lifetime:
      counters.unregistered_lifetime_closes.fetch_add(1, std::memory_order_relaxed);
      break;
    default:
      break;
  }
  if (auto h = handler()) h->on_flow_closed(entry->key);
}

void State::deliver(const Inbound& in) {
  if (auto h = handler()) h->on_message(in, *outbound);
}

bool State::redeliver(ParkedMessage m) {
  std::lock_guard lock(redeliver_mu);
  if (stopping.load(std::memory_order_acquire) || workers.empty()) {
    counters.redelivery_dropped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  Worker* w = nullptr;
  if (m.from_core) {
    if (!cores.empty()) w = &cores.front()->worker();  // every core link lives on one worker
  } else if (auto e = table.find(m.flow)) {
    w = workers[e->worker].get();
  } else if (m.flow.transport == flow::Transport::udp) {
    // A UDP peer whose entry expired meanwhile is still reachable through the
    // listener socket; any worker can hand it to the proxy.
    w = workers.front().get();
  }
  if (w == nullptr) {
    counters.redelivery_dropped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  asio::post(w->ctx, [this, w, pm = std::move(m)]() mutable { deliver_parked(*w, std::move(pm)); });
  return true;
}

void State::deliver_parked(Worker& w, ParkedMessage m) {
  if (stopping.load(std::memory_order_acquire)) return;
  if (paused.load(std::memory_order_acquire)) {
    w.redelivered.push_back(std::move(m));
    return;
  }
  Inbound in;
  in.flow = m.flow;
  in.from_core = m.from_core;
  in.bytes = m.bytes;
  in.received = m.received;
  in.registered = m.registered;
  if (!m.from_core) {
    if (auto e = table.find(m.flow)) in.registered = e->registered();
  }
  in.hsm = m.outcome.get();
  counters.redelivered.fetch_add(1, std::memory_order_relaxed);
  deliver(in);
}

}  // namespace edge::net::detail
