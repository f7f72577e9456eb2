// UDP listener: one socket per listener on one worker; STUN / CRLF / SIP demultiplexing; UDP flows.
#include "address.h"
#include "listener.h"

#include "edge/net/sip/stun.h"

#include <boost/asio/post.hpp>

#include <list>
#include <unordered_map>

namespace edge::net::detail {

namespace {

namespace stun = sip::stun;

// One socket read by one worker. Datagrams carry no connection state, so
// spreading one port over workers buys little on the small core counts this
// appliance has, while one reader keeps per-flow ordering trivial and lets
// STUN answers and SIP leave from the exact port the client sent to.
class UdpListener final : public Listener, public FlowLink, public std::enable_shared_from_this<UdpListener> {
 public:
  UdpListener(std::shared_ptr<State> st, Worker& w, const ListenerConfig& cfg)
      : st_(std::move(st)),
        w_(w),
        cfg_(cfg),
        sock_(w.ctx),
        // One byte more than the limit: a datagram that fills it was larger (Linux truncates silently).
        buf_(st_->config.limits.max_message_size + 1) {}

  void bind() {
    const udp::endpoint ep(parse_address(cfg_), cfg_.port);
    boost::system::error_code ec;
    bind_udp(sock_, ep, ec, st_->config.freebind);
    if (ec) throw_bind_error(cfg_, ec);
    // Sends are synchronous and must never block the worker: a full socket
    // buffer drops the datagram, as the network might.
    sock_.non_blocking(true, ec);
    local_ = to_flow(sock_.local_endpoint());
  }

  void start() {
    asio::post(w_.ctx, [self = shared_from_this()] {
      State::join(self->w_, self);
      self->do_receive();
    });
  }

  BoundListener bound() const override { return {flow::Transport::udp, local_}; }

  void resume_reading() override {
    if (closed_ || !parked_) return;
    parked_ = false;
    handle(parked_size_);
    do_receive();
  }

  void close_now(CloseReason) override {
    if (closed_) return;
    closed_ = true;
    closed_flag_.store(true, std::memory_order_release);
    boost::system::error_code ec;
    sock_.close(ec);
    State::leave(w_, this);
  }

  bool send(const FlowEntry& flow, std::string bytes) override {
    return send_key(flow.key, std::move(bytes));
  }

  bool send_datagram(const flow::Endpoint& to, std::string bytes) override {
    return send_key({flow::Transport::udp, local_, to}, std::move(bytes));
  }

  bool send_unheld(const flow::FlowKey& key, std::string bytes) override {
    if (!(key.local == local_)) return false;
    return send_key(key, std::move(bytes), true);
  }

  void expire(const std::shared_ptr<FlowEntry>& flow, CloseReason why) override {
    forget(flow->key);
    st_->close_flow(flow, why);
  }

 private:
  // adopt: the flow is not (yet) ours; send_now opens it (Listener::send_unheld).
  bool send_key(const flow::FlowKey& key, std::string bytes, bool adopt = false) {
    if (closed_flag_.load(std::memory_order_acquire)) return false;
    if (queued_.fetch_add(1, std::memory_order_relaxed) >= st_->config.limits.max_write_queue) {
      queued_.fetch_sub(1, std::memory_order_relaxed);
      st_->counters.send_failures.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    const udp::endpoint to(to_asio(key.remote), key.remote.port);
    if (w_.ctx.get_executor().running_in_this_thread()) {
      send_now(to, bytes, key, adopt);
    } else {
      asio::post(w_.ctx, [self = shared_from_this(), to, b = std::move(bytes), key, adopt] {
        self->send_now(to, b, key, adopt);
      });
    }
    return true;
  }

  void send_now(const udp::endpoint& to, std::string_view bytes, const flow::FlowKey& key, bool adopt) {
    queued_.fetch_sub(1, std::memory_order_relaxed);
    if (closed_) return;
    if (adopt) adopt_flow(key);
    boost::system::error_code ec;
    const std::size_t n = sock_.send_to(asio::buffer(bytes.data(), bytes.size()), to, 0, ec);
    if (ec) {
      st_->counters.send_failures.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    auto& c = st_->counters.of(flow::Transport::udp);
    c.messages_out.fetch_add(1, std::memory_order_relaxed);
    c.bytes_out.fetch_add(n, std::memory_order_relaxed);
    if (auto e = st_->table.find(key)) {
      e->messages_out.fetch_add(1, std::memory_order_relaxed);
      e->bytes_out.fetch_add(n, std::memory_order_relaxed);
    }
  }

  // A flow the core reached us over with a valid token, which this process never
  // held (after a failover or a restart): opened here, on the worker, as if its
  // client had sent to us, unregistered (idle timeout, LRU) until it registers
  // through us; its answers and STUN keep-alives then find it. Without room
  // (limits.max_udp_flows full of registered flows) the request still goes.
  void adopt_flow(const flow::FlowKey& key) {
    if (st_->table.find(key)) return;
    st_->counters.udp_unheld_sends.fetch_add(1, std::memory_order_relaxed);
    if (!make_room()) {
      st_->counters.udp_flows_refused.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (st_->open_flow(key, w_, std::weak_ptr<FlowLink>(shared_from_this()), true)) heard_from(key);
  }

  void do_receive() {
    if (closed_) return;
    sock_.async_receive_from(asio::buffer(buf_), remote_,
                             [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                               self->on_receive(ec, n);
                             });
  }

  void on_receive(const boost::system::error_code& ec, std::size_t n) {
    if (closed_ || ec == asio::error::operation_aborted) return;
    // Other errors (ICMP port unreachable reported on a later receive) concern
    // one peer, never the socket: keep reading.
    if (!ec) {
      if (!handle(n)) return;  // parked
    }
    do_receive();
  }

  flow::FlowKey key_of_remote() const { return {flow::Transport::udp, local_, to_flow(remote_)}; }

  // False when the datagram was parked (paused); it is handled on resume.
  bool handle(std::size_t n) {
    auto& c = st_->counters.of(flow::Transport::udp);
    if (n > st_->config.limits.max_message_size) {
      st_->counters.oversized.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    const std::span<const std::uint8_t> d(buf_.data(), n);
    switch (stun::classify_datagram(d)) {
      case stun::DatagramKind::stun:
        answer_stun(d);
        return true;
      case stun::DatagramKind::keep_alive:
        // RFC 5626 uses STUN on UDP; a CRLF datagram still proves the flow alive. No answer.
        c.keepalives.fetch_add(1, std::memory_order_relaxed);
        if (auto e = st_->table.find(key_of_remote())) e->touch(Clock::now());
        return true;
      case stun::DatagramKind::sip:
        break;
      case stun::DatagramKind::unknown:
        st_->counters.udp_garbage.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    if (st_->paused.load(std::memory_order_acquire)) {
      parked_ = true;
      parked_size_ = n;
      State::park(w_, shared_from_this());
      return false;
    }
    const auto key = key_of_remote();
    auto e = st_->table.find(key);
    if (!e) {
      if (!make_room()) {
        st_->counters.udp_flows_refused.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
      e = st_->open_flow(key, w_, std::weak_ptr<FlowLink>(shared_from_this()));
      if (!e) e = st_->table.find(key);
      if (!e) return true;
    }
    if (e->registered()) {
      forget(key);
    } else {
      heard_from(key);
    }
    const auto now = Clock::now();
    e->touch(now);
    e->messages_in.fetch_add(1, std::memory_order_relaxed);
    e->bytes_in.fetch_add(n, std::memory_order_relaxed);
    c.messages_in.fetch_add(1, std::memory_order_relaxed);
    c.bytes_in.fetch_add(n, std::memory_order_relaxed);
    Inbound in;
    in.flow = key;
    in.from_core = st_->core_udp_peer(key.remote);
    in.bytes = std::string_view(reinterpret_cast<const char*>(buf_.data()), n);
    if (in.from_core) {
      if (st_->take_health_answer(in.bytes)) return true;  // a UDP core's answer to our OPTIONS
      st_->count_core_in(key.remote);
    }
    in.received = now;
    in.registered = e->registered();
    st_->deliver(in);
    return true;
  }

  void answer_stun(std::span<const std::uint8_t> d) {
    stun::Message m;
    if (stun::decode(d, m) != stun::Error::ok || !m.is_binding_request()) {
      // Responses, indications and broken requests get nothing (RFC 5389 §7.3).
      st_->counters.udp_garbage.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    // Only a source that has a flow (it sent SIP on this port and the flow has not expired) gets an
    // answer: otherwise anyone could make the edge reflect a response, larger than the request, at a
    // spoofed address. RFC 5626 §4.4.2 keep-alives follow a REGISTER, so a real client always has one.
    const auto entry = st_->table.find(key_of_remote());
    if (!entry) {
      st_->counters.stun_unsolicited.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    auto& c = st_->counters.of(flow::Transport::udp);
    c.keepalives.fetch_add(1, std::memory_order_relaxed);
    std::array<std::uint8_t, stun::kMaxResponseSize> out{};
    std::size_t size = 0;
    if (m.unknown_count > 0) {
      size = stun::encode_binding_error(m.transaction_id, 420, "Unknown Attribute",
                                        {m.unknown_required.data(), m.unknown_count}, out);
    } else {
      stun::Endpoint mapped;
      const flow::Endpoint r = to_flow(remote_);
      mapped.ipv6 = r.family == flow::Family::ipv6;
      mapped.address = r.address;
      mapped.port = r.port;
      size = stun::encode_binding_success(m.transaction_id, mapped, out);
      entry->touch(Clock::now());
    }
    if (size == 0) return;
    boost::system::error_code ec;
    sock_.send_to(asio::buffer(out.data(), size), remote_, 0, ec);
    if (!ec) c.keepalive_answers.fetch_add(1, std::memory_order_relaxed);
  }

  // The unregistered-flow LRU. Every UDP flow this listener opened and not yet
  // seen registered is in it, least recently heard from first; registered flows
  // leave it (lazily: when next heard from or reached by eviction), so only a
  // flow that never registered can be evicted. Worker-local: no lock.
  void heard_from(const flow::FlowKey& key) {
    if (const auto it = lru_pos_.find(key); it != lru_pos_.end()) {
      lru_.splice(lru_.end(), lru_, it->second);
      return;
    }
    lru_pos_.emplace(key, lru_.insert(lru_.end(), key));
  }
  void forget(const flow::FlowKey& key) {
    if (const auto it = lru_pos_.find(key); it != lru_pos_.end()) {
      lru_.erase(it->second);
      lru_pos_.erase(it);
    }
  }
  // Below limits.max_udp_flows, or made so by evicting this listener's least
  // recently heard unregistered flows; false when only registered flows (or
  // other listeners' flows) fill the table: the new source gets no flow.
  bool make_room() {
    const std::size_t max = st_->config.limits.max_udp_flows;
    while (st_->table.count(flow::Transport::udp) >= max) {
      if (lru_.empty()) return false;
      const flow::FlowKey victim = lru_.front();
      lru_pos_.erase(victim);
      lru_.pop_front();
      const auto e = st_->table.find(victim);
      if (!e || e->registered()) continue;
      st_->counters.udp_flow_evictions.fetch_add(1, std::memory_order_relaxed);
      st_->close_flow(e, CloseReason::evicted);
    }
    return true;
  }

  std::shared_ptr<State> st_;
  Worker& w_;
  ListenerConfig cfg_;
  udp::socket sock_;
  std::vector<std::uint8_t> buf_;  // reused for every datagram
  udp::endpoint remote_;
  flow::Endpoint local_;
  bool closed_ = false;
  std::atomic<bool> closed_flag_{false};
  bool parked_ = false;
  std::size_t parked_size_ = 0;
  std::atomic<std::size_t> queued_{0};
  std::list<flow::FlowKey> lru_;  // unregistered flows, least recently heard from first
  std::unordered_map<flow::FlowKey, std::list<flow::FlowKey>::iterator, flow::FlowKeyHash> lru_pos_;
};

}  // namespace

std::shared_ptr<Listener> make_udp_listener(const std::shared_ptr<State>& st, Worker& w,
                                            const ListenerConfig& cfg) {
  auto l = std::make_shared<UdpListener>(st, w, cfg);
  l->bind();
  l->start();
  return l;
}

}  // namespace edge::net::detail
