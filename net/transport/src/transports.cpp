// Transports: start/stop of workers and listeners, the expiry sweep, pause/resume, Network, stats.
#include "edge/net/transport/transports.h"

#include "config_rules.h"
#include "core_link.h"
#include "listener.h"
#include "state.h"
#include "tls_context.h"
#include "worker.h"

#include <boost/asio/post.hpp>

#include <thread>

namespace edge::net {

std::vector<CoreTarget> core_targets(const CoreConfig& c) {
  if (!c.targets.empty()) return c.targets;
  CoreTarget t;
  t.transport = c.transport;
  t.address = c.address;
  t.port = c.port;
  return {t};
}

std::string_view to_string(CoreState s) noexcept {
  switch (s) {
    case CoreState::up:
      return "up";
    case CoreState::probing:
      return "probing";
    default:
      return "down";
  }
}

using detail::State;
using detail::Worker;

namespace {

// Ends the flows that went silent or stalled; runs on each worker for the flows it owns.
void sweep_once(State& st, Worker& w) {
  if (st.paused.load(std::memory_order_acquire)) return;  // a controlled restart is nobody's silence
  const auto now = Clock::now();
  const auto& lim = st.config.limits;
  // A core's own connections to a listener never register: they are exempt from the lifetime.
  const auto from_core_address = [&st](const flow::Endpoint& remote) { return st.core_ip(remote); };
  st.table.collect(w.sweep_buf, static_cast<int>(w.index));
  for (const auto& e : w.sweep_buf) {
    const auto rd = e->read_deadline_raw();
    const auto silent = now - e->last_activity();
    bool dead = false;
    CloseReason why = CloseReason::idle_timeout;
    if (rd != 0 && rd <= now.time_since_epoch().count()) {
      dead = true;
      why = CloseReason::read_timeout;
    } else if (e->registered()) {
      dead = silent > e->flow_timer() + lim.flow_timeout_grace;
      why = CloseReason::flow_timeout;
    } else {
      dead = silent > lim.idle_timeout;
      if (!dead && e->key.transport != flow::Transport::udp &&
          lim.unregistered_connection_lifetime.count() > 0 &&
          now - e->created > lim.unregistered_connection_lifetime && !from_core_address(e->key.remote)) {
        dead = true;
        why = CloseReason::unregistered_lifetime;
      }
    }
    if (!dead) continue;
    if (auto link = e->link.lock()) {
      link->expire(e, why);
    } else {
      st.close_flow(e, why);
    }
  }
  w.sweep_buf.clear();
}

void arm_sweep(State* st, Worker* w) {
  w->sweep_timer.expires_after(st->config.limits.sweep_interval);
  w->sweep_timer.async_wait([st, w](const boost::system::error_code& ec) {
    if (ec || st->stopping.load(std::memory_order_acquire)) return;
    sweep_once(*st, *w);
    arm_sweep(st, w);
  });
}

// The handler's timers on worker 0 (a steady_timer, no thread of its own). They
// run while paused too: a retransmission toward a UDP client is not a new message.
void arm_handler_timer(State* st, Worker* w) {
  w->handler_timer.expires_after(st->config.limits.handler_timer_interval);
  w->handler_timer.async_wait([st, w](const boost::system::error_code& ec) {
    if (ec || st->stopping.load(std::memory_order_acquire)) return;
    if (auto h = st->handler()) h->on_timer(Clock::now(), *st->outbound);
    arm_handler_timer(st, w);
  });
}

}  // namespace

Transports::Transports(TransportConfig config, std::shared_ptr<MessageHandler> handler)
    : config_(std::move(config)), state_(std::make_shared<State>(config_, std::move(handler))) {
  state_->outbound = this;
}

Transports::~Transports() { stop(); }

void Transports::start() {
  State& st = *state_;
  if (!st.workers.empty()) throw TransportError("transports: already started");
  detail::validate(config_);
  st.set_tls(
      detail::needs_server_tls(config_) ? detail::make_server_tls(config_.tls) : nullptr,
      detail::needs_client_tls(config_) ? detail::make_client_tls(config_.tls, config_.core) : nullptr);

  unsigned n = config_.workers;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) st.workers.push_back(std::make_unique<Worker>(i));

  try {
    for (const auto& l : config_.listeners) {
      Worker& w = st.next_worker();
      auto lis = l.transport == flow::Transport::udp ? detail::make_udp_listener(state_, w, l)
                                                     : detail::make_stream_listener(state_, w, l);
      st.listeners.push_back(lis);
      st.bound.push_back(lis->bound());
    }
  } catch (...) {
    // Nothing runs yet: dropping the io_contexts closes what was bound.
    st.listeners.clear();
    st.bound.clear();
    st.workers.clear();
    throw;
  }
  if (config_.core.enabled) {
    const auto targets = core_targets(config_.core);
    for (std::size_t k = 0; k < targets.size(); ++k) {
      auto link = std::make_shared<detail::CoreLink>(state_, *st.workers[0], k, targets[k]);
      // A UDP core is sent to from our UDP listener (the address in our Via), so
      // a core that answers the Via sent-by (RFC 3261 §18.2.2) reaches a socket we read.
      if (k < st.core_endpoints().size() && targets[k].transport == flow::Transport::udp) {
        for (std::size_t i = 0; i < st.listeners.size(); ++i) {
          if (st.bound[i].transport == flow::Transport::udp &&
              st.bound[i].local.family == st.core_endpoints()[k].family) {
            link->udp_listener = st.listeners[i];
            link->udp_listener_local = st.bound[i].local;
            break;
          }
        }
      }
      st.cores.push_back(std::move(link));
    }
    for (const auto& l : st.cores) l->start();
  }
  arm_handler_timer(&st, st.workers[0].get());
  for (auto& w : st.workers) {
    arm_sweep(&st, w.get());
    w->thread = std::thread([wp = w.get()] { wp->ctx.run(); });
  }
}

void Transports::stop() {
  State& st = *state_;
  {
    std::lock_guard lock(st.redeliver_mu);  // no redelivery posts to a worker from here on
    if (st.workers.empty() || st.stopping.exchange(true)) return;
  }
  for (auto& w : st.workers) {
    boost::asio::post(w->ctx, [sp = &st, wp = w.get()] {
      // Every flow of this worker ends with on_flow_closed, then whatever else lives here.
      sp->table.collect(wp->sweep_buf, static_cast<int>(wp->index));
      for (const auto& e : wp->sweep_buf) {
        if (auto link = e->link.lock()) {
          link->expire(e, CloseReason::shutdown);
        } else {
          sp->close_flow(e, CloseReason::shutdown);
        }
      }
      wp->sweep_buf.clear();
      std::vector<std::shared_ptr<detail::WorkerMember>> rest;
      for (auto& [p, weak] : wp->members)
        if (auto m = weak.lock()) rest.push_back(std::move(m));
      for (auto& m : rest) m->close_now(CloseReason::shutdown);
      wp->parked.clear();
      wp->redelivered.clear();
      wp->sweep_timer.cancel();
      wp->handler_timer.cancel();
      wp->guard.reset();
    });
  }
  // Cancelled operations finish quickly; a worker that still has work after
  // two seconds (a handler stuck in the proxy) is stopped hard.
  for (int i = 0; i < 200; ++i) {
    bool all = true;
    for (auto& w : st.workers) all = all && w->ctx.stopped();
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& w : st.workers) {
    w->ctx.stop();
    if (w->thread.joinable()) w->thread.join();
  }
  st.listeners.clear();
  for (const auto& l : st.cores) l->udp_listener.reset();
  st.cores.clear();
  st.workers.clear();  // destroys leftover handlers and the sessions they hold
  st.counters.core_connected.store(false, std::memory_order_relaxed);
}

void Transports::pause() { state_->paused.store(true, std::memory_order_release); }

void Transports::resume() {
  State& st = *state_;
  st.paused.store(false, std::memory_order_release);
  for (auto& w : st.workers) {
    boost::asio::post(w->ctx, [sp = &st, wp = w.get()] {
      auto parked = std::move(wp->parked);
      wp->parked.clear();
      auto redelivered = std::move(wp->redelivered);
      wp->redelivered.clear();
      for (auto& m : redelivered) sp->deliver_parked(*wp, std::move(m));
      for (auto& r : parked) r->resume_reading();
    });
  }
}

std::shared_ptr<Redelivery> Transports::redelivery() { return state_; }

bool Transports::paused() const noexcept { return state_->paused.load(std::memory_order_acquire); }

void Transports::set_handler(std::shared_ptr<MessageHandler> handler) {
  state_->set_handler(std::move(handler));
}

void Transports::reload_tls(const TlsConfig& tls) {
  TransportConfig next = config_;
  next.tls = tls;
  auto server = detail::needs_server_tls(next) ? detail::make_server_tls(tls) : nullptr;  // throws, old stays
  auto client = detail::needs_client_tls(next) ? detail::make_client_tls(tls, next.core) : nullptr;
  state_->set_tls(std::move(server), std::move(client));
  config_.tls = tls;
}

std::vector<BoundListener> Transports::listening() const { return state_->bound; }

std::uint16_t Transports::port(flow::Transport t, flow::Family f) const {
  for (const auto& b : state_->bound)
    if (b.transport == t && b.local.family == f) return b.local.port;
  return 0;
}

TransportStats Transports::stats() const {
  const auto& c = state_->counters;
  TransportStats s;
  for (std::size_t i = 0; i < s.per_transport.size(); ++i) {
    const auto& a = c.per_transport[i];
    auto& o = s.per_transport[i];
    o.accepted = a.accepted.load();
    o.flows_opened = a.flows_opened.load();
    o.flows_closed = a.flows_closed.load();
    o.messages_in = a.messages_in.load();
    o.messages_out = a.messages_out.load();
    o.bytes_in = a.bytes_in.load();
    o.bytes_out = a.bytes_out.load();
    o.keepalives = a.keepalives.load();
    o.keepalive_answers = a.keepalive_answers.load();
    s.flows_now[i] = state_->table.count(static_cast<flow::Transport>(i));
  }
  s.connections_now = state_->connections();
  s.refused_max_connections = c.refused_max_connections.load();
  s.refused_per_address = c.refused_per_address.load();
  s.superseded_flows = c.superseded_flows.load();
  s.oversized = c.oversized.load();
  s.framing_errors = c.framing_errors.load();
  s.read_timeouts = c.read_timeouts.load();
  s.unregistered_lifetime_closes = c.unregistered_lifetime_closes.load();
  s.idle_timeouts = c.idle_timeouts.load();
  s.flow_timeouts = c.flow_timeouts.load();
  s.udp_garbage = c.udp_garbage.load();
  s.stun_unsolicited = c.stun_unsolicited.load();
  s.udp_flow_evictions = c.udp_flow_evictions.load();
  s.udp_flows_refused = c.udp_flows_refused.load();
  s.udp_unheld_sends = c.udp_unheld_sends.load();
  s.udp_no_listener = c.udp_no_listener.load();
  s.send_failures = c.send_failures.load();
  s.upgrade_refused = c.upgrade_refused.load();
  s.tls_handshake_failures = c.tls_handshake_failures.load();
  s.proxy_accepted = c.proxy_accepted.load();
  s.proxy_refused_untrusted = c.proxy_refused[0].load();
  s.proxy_refused_missing = c.proxy_refused[1].load();
  s.proxy_refused_malformed = c.proxy_refused[2].load();
  s.proxy_refused_unsupported = c.proxy_refused[3].load();
  s.proxy_refused_timeout = c.proxy_refused[4].load();
  s.core_connected = false;
  for (const auto& l : state_->cores) {
    s.core_connected = s.core_connected || l->link_up();
    s.cores.push_back(l->stats());
    s.core_queued_now += l->queued();
  }
  s.core_connects = c.core_connects.load();
  s.core_disconnects = c.core_disconnects.load();
  s.core_messages_in = c.core_messages_in.load();
  s.core_messages_out = c.core_messages_out.load();
  s.core_queue_full = c.core_queue_full.load();
  s.core_keepalive_timeouts = c.core_keepalive_timeouts.load();
  s.core_refused_down = c.core_refused_down.load();
  s.core_stale_dropped = c.core_stale_dropped.load();
  s.core_identity_failures = c.core_identity_failures.load();
  s.core_identity_error = state_->core_identity_error();
  s.redelivered = c.redelivered.load();
  s.redelivery_dropped = c.redelivery_dropped.load();
  return s;
}

const FlowTable& Transports::flows() const { return state_->table; }

std::shared_ptr<FlowEntry> Transports::find_flow(const FlowKey& key) const { return state_->table.find(key); }

bool Transports::send_to_flow(const FlowKey& flow, std::string bytes) {
  auto e = state_->table.find(flow);
  if (!e) {
    // A UDP flow we do not hold (State::closed_udp): from the listener on the token's local address.
    if (flow.transport != flow::Transport::udp || state_->closed_udp(flow)) return false;
    const auto l = state_->udp_listener_at(flow.local);
    if (!l) {
      state_->counters.udp_no_listener.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    return l->send_unheld(flow, std::move(bytes));
  }
  auto link = e->link.lock();
  if (!link) return false;
  return link->send(*e, std::move(bytes));
}

bool Transports::send_to_core(std::string bytes) {
  State& st = *state_;
  // cores is set once in start(); cleared only after the workers are joined.
  const auto core = st.choose_core(bytes);
  if (!core) {
    // Several cores, none up, probing or connecting: RFC 3261 §16.9, 503 at once.
    st.counters.core_refused_down.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (st.cores.size() > 1) {
    core->requests.fetch_add(1, std::memory_order_relaxed);
    const flow::Transport via = config_.core.transport;  // what the proxy's Via toward the core names
    if (core->target().transport != via && bytes.rfind("SIP/2.0 ", 0) != 0) {
      // A request moved to a reliable core (RFC 3261 §18.1.1): its top Via (ours) says so.
      const std::string from = std::string("SIP/2.0/") + flow::to_string(via);
      const std::string to = std::string("SIP/2.0/") + flow::to_string(core->target().transport);
      if (const auto v = bytes.find(from); v != std::string::npos && v < bytes.find("\r\n\r\n"))
        bytes.replace(v, from.size(), to);
    }
  }
  // A UDP core gets its datagrams from our UDP listener (the address in our Via):
  // a core that answers the Via sent-by (RFC 3261 §18.2.2) reaches a socket we read.
  if (const auto& l = core->udp_listener) {
    if (!l->send_datagram(st.core_endpoints()[core->index()], std::move(bytes))) return false;
    st.counters.core_messages_out.fetch_add(1, std::memory_order_relaxed);
    core->messages_out.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return core->send(std::move(bytes));
}

std::uint64_t Transports::core_link_epoch() const noexcept {
  const auto& c = state_->counters;
  return c.core_connects.load(std::memory_order_relaxed) + c.core_disconnects.load(std::memory_order_relaxed);
}

bool Transports::flow_alive(const FlowKey& flow) const { return state_->table.find(flow) != nullptr; }

bool Transports::flow_reachable(const FlowKey& flow) const {
  if (state_->table.find(flow) != nullptr) return true;
  // RFC 5626 §5.3: 430 when the flow is gone. A stream flow we do not hold is
  // (a connection lives on one box); a UDP flow is gone only when we held it
  // and closed it, or when no listener of ours has its local address: we
  // cannot send from the address the client knows (counted: udp_no_listener).
  if (flow.transport != flow::Transport::udp || state_->closed_udp(flow)) return false;
  if (state_->udp_listener_at(flow.local)) return true;
  state_->counters.udp_no_listener.fetch_add(1, std::memory_order_relaxed);
  return false;
}

std::shared_ptr<flow::FlowToken> Transports::flow_token(const FlowKey& flow) {
  auto e = state_->table.find(flow);
  return e ? e->token : nullptr;
}

void Transports::mark_registered(const FlowKey& flow, std::chrono::seconds flow_timer) {
  if (auto e = state_->table.find(flow)) e->mark_registered(flow_timer);
}

}  // namespace edge::net
