// State: admission, flow open/close, handler delivery, the TLS contexts in use, worker choice.
#include "state.h"

#include "core_link.h"

#include "address.h"

#include <algorithm>

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
    if (auto e = flow::Endpoint::parse(cfg.core.address, cfg.core.port)) core_endpoint_ = e->unmapped();
  }
}

bool State::core_ip(const flow::Endpoint& remote) const noexcept {
  if (!core_endpoint_) return false;
  const flow::Endpoint r = remote.unmapped();
  return r.family == core_endpoint_->family && r.address == core_endpoint_->address;
}

bool State::core_udp_peer(const flow::Endpoint& remote) const noexcept {
  return core_ip(remote) && remote.port == core_endpoint_->port;
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

std::shared_ptr<FlowEntry> State::open_flow(const flow::FlowKey& key, Worker& w,
                                            std::weak_ptr<FlowLink> link) {
  auto e = std::make_shared<FlowEntry>(key, w.index, std::move(link), Clock::now());
  if (!table.insert(e)) return nullptr;
  counters.of(key.transport).flows_opened.fetch_add(1, std::memory_order_relaxed);
  return e;
}

void State::close_flow(const std::shared_ptr<FlowEntry>& entry, CloseReason why) {
  if (!entry) return;
  // Gone for routing before anyone hears of it (flow_alive false, send_to_flow false).
  table.erase(*entry);
  counters.of(entry->key.transport).flows_closed.fetch_add(1, std::memory_order_relaxed);
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
    if (core) w = &core->worker();
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
