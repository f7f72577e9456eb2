// CoreLink: connect, frame (StreamFramer), deliver (from_core), queue while down, reconnect with back-off.
#include "core_link.h"

#include "error_response.h"
#include "listener.h"
#include "tls_context.h"

#include "edge/net/sip/message.h"

#include <cctype>
#include <random>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

namespace edge::net::detail {

namespace {
// A connect to a silent address would otherwise wait for the kernel's SYN retries (minutes).
constexpr std::chrono::seconds kConnectTimeout{5};

CoreConfig for_target(CoreConfig c, const CoreTarget& t) {
  c.transport = t.transport;
  c.address = t.address;
  c.port = t.port;
  return c;
}

std::string_view via_transport(flow::Transport t) {
  switch (t) {
    case flow::Transport::tls:
      return "TLS";
    case flow::Transport::udp:
      return "UDP";
    default:
      return "TCP";
  }
}

std::string host_text(const std::string& a) { return a.find(':') != std::string::npos ? "[" + a + "]" : a; }

std::string endpoint_host(const flow::Endpoint& e) {
  const auto a = to_asio(e);
  return a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
}
}  // namespace

CoreLink::CoreLink(std::shared_ptr<State> st, Worker& w, std::size_t index, const CoreTarget& target)
    : st_(std::move(st)),
      w_(w),
      index_(index),
      target_(target),
      cfg_(for_target(st_->config.core, target)),
      timer_(w.ctx),
      ka_timer_(w.ctx),
      framer_(st_->sip_limits),
      dgram_(st_->config.limits.max_message_size + 1),
      hc_timer_(w.ctx),
      backoff_(cfg_.reconnect_initial),
      pin_(cfg_.tls_pin_sha256.empty() ? std::nullopt : parse_pin(cfg_.tls_pin_sha256)) {
  std::random_device rd;
  call_id_ = "edge-health-" + std::to_string(index_) + "-" + std::to_string(rd()) + std::to_string(rd());
}

void CoreLink::start() {
  asio::post(w_.ctx, [self = shared_from_this()] {
    State::join(self->w_, self);
    self->connect();
    self->arm_health();
  });
}

CoreState CoreLink::state() const noexcept {
  // The first connection attempt since start counts as probing (its verdict is still to come).
  if (!up_.load(std::memory_order_acquire)) return first_attempt() ? CoreState::probing : CoreState::down;
  if (!health_on() || healthy_.load(std::memory_order_acquire)) return CoreState::up;
  return hc_failures_.load(std::memory_order_acquire) >= cfg_.health_failures ? CoreState::down
                                                                              : CoreState::probing;
}

void CoreLink::set_error(std::string why) {
  std::lock_guard lock(err_mu_);
  last_error_ = std::move(why);
}

CoreStats CoreLink::stats() const {
  CoreStats s;
  s.target = target_;
  s.state = state();
  s.link_up = link_up();
  {
    std::lock_guard lock(err_mu_);
    s.last_error = last_error_;
  }
  s.connects = connects_.load();
  s.disconnects = disconnects_.load();
  s.messages_in = messages_in_.load();
  s.messages_out = messages_out.load();
  s.requests = requests.load();
  s.health_pings = pings_.load();
  s.health_answers = answers_.load();
  s.health_failures = failures_total_.load();
  s.keepalive_timeouts = ka_timeouts_.load();
  s.queued_now = queued();
  s.ever_up = ever_up_.load();
  return s;
}

// Health checks (docs/operations.md, "Several cores"). An OPTIONS that is not
// answered by the time the next one is due counts as failed; so does one
// answered 408 or 5xx. health_failures in a row make the core down.
void CoreLink::arm_health() {
  if (!health_on() || closed_) return;
  hc_timer_.expires_after(cfg_.health_interval);
  hc_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
    if (!e) self->on_health_timer();
  });
}

void CoreLink::on_health_timer() {
  if (closed_) return;
  if (st_->paused.load(std::memory_order_acquire)) {
    // A controlled restart parks reading, and the answers with it: not the core's
    // silence. The OPTIONS out stays outstanding; its answer counts after resume.
    arm_health();
    return;
  }
  if (hc_outstanding_.exchange(false, std::memory_order_acq_rel)) {
    health_failed("OPTIONS unanswered within core.health_interval_ms");
  }
  send_health_ping();
  arm_health();
}

void CoreLink::health_failed(const std::string& why) {
  failures_total_.fetch_add(1, std::memory_order_relaxed);
  const unsigned n = hc_failures_.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (n >= cfg_.health_failures) {
    if (healthy_.exchange(false, std::memory_order_acq_rel)) {
      st_->counters.core_health_downs.fetch_add(1, std::memory_order_relaxed);
    }
    set_error("health check: " + why + " (" + std::to_string(n) + " in a row)");
  }
}

void CoreLink::send_health_ping() {
  if (!health_on() || closed_ || !up_.load(std::memory_order_acquire)) return;
  const bool via_listener = udp_listener != nullptr;
  if (!via_listener && !connected_) return;
  const std::uint32_t seq = ++hc_seq_;
  const flow::Endpoint local = via_listener ? udp_listener_local : key_.local;
  const std::string host = endpoint_host(local);
  std::string tp = flow::to_string(cfg_.transport);
  for (char& ch : tp) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  std::string m;
  m.reserve(400);
  m += "OPTIONS sip:" + host_text(cfg_.address) + ":" + std::to_string(cfg_.port) + ";transport=" + tp +
       " SIP/2.0\r\n";
  m += "Via: SIP/2.0/" + std::string(via_transport(cfg_.transport)) + " " + host + ":" +
       std::to_string(local.port) + ";branch=" + std::string(kHealthBranchPrefix) + std::to_string(index_) +
       "." + std::to_string(seq) + ";rport\r\n";
  m += "Max-Forwards: 70\r\n";
  m += "From: <sip:edge@" + host + ">;tag=edgehealth" + std::to_string(index_) + "\r\n";
  m += "To: <sip:" + host_text(cfg_.address) + ":" + std::to_string(cfg_.port) + ">\r\n";
  m += "Call-ID: " + call_id_ + "\r\n";
  m += "CSeq: " + std::to_string(seq) + " OPTIONS\r\n";
  m += "Content-Length: 0\r\n\r\n";
  pings_.fetch_add(1, std::memory_order_relaxed);
  hc_outstanding_.store(true, std::memory_order_release);
  if (via_listener) {
    udp_listener->send_datagram(to_flow(asio::ip::make_address(cfg_.address), cfg_.port),
                                std::move(m));  // a lost one counts as unanswered
    return;
  }
  queue_.push_back({std::move(m), Clock::now(), true});
  queued_.fetch_add(1, std::memory_order_relaxed);
  write_next();
}

void CoreLink::health_answer(std::uint32_t seq, int status) {
  asio::post(w_.ctx, [self = shared_from_this(), seq, status] {
    if (self->closed_ || seq != self->hc_seq_ || !self->hc_outstanding_.load(std::memory_order_acquire))
      return;
    if (status < 200) return;  // provisional: the final answer decides
    self->hc_outstanding_.store(false, std::memory_order_release);
    self->answers_.fetch_add(1, std::memory_order_relaxed);
    if (status == 408 || status >= 500) {
      self->health_failed("OPTIONS answered " + std::to_string(status));
      return;
    }
    self->hc_failures_.store(0, std::memory_order_release);
    if (!self->healthy_.exchange(true, std::memory_order_acq_rel)) {
      self->ever_up_.store(true, std::memory_order_release);
    }
  });
}

template <class F>
void CoreLink::with_stream(F&& f) {
  if (tls_) {
    f(*tls_);
  } else if (tcp_) {
    f(*tcp_);
  }
}

void CoreLink::connect() {
  if (closed_) return;
  const unsigned gen = ++gen_;
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(cfg_.address, ec);
  const flow::Endpoint remote = to_flow(addr, cfg_.port);
  if (cfg_.transport == flow::Transport::udp) {
    udp_.emplace(w_.ctx);
    udp_->open(addr.is_v4() ? udp::v4() : udp::v6(), ec);
    if (!ec) udp_->connect(udp::endpoint(addr, cfg_.port), ec);
    if (ec) {
      drop_connection();
      return;
    }
    key_ = {flow::Transport::udp, to_flow(udp_->local_endpoint(ec)), remote};
    on_connected(gen);
    return;
  }
  if (cfg_.transport == flow::Transport::tls) {
    tls_ctx_ = st_->tls_client();
    tls_.emplace(w_.ctx, *tls_ctx_);
    expect_identity(*tls_);
  } else {
    tcp_.emplace(w_.ctx);
  }
  auto& sock = tls_ ? tls_->lowest_layer() : *tcp_;
  timer_.expires_after(kConnectTimeout);
  timer_.async_wait([self = shared_from_this(), gen](const boost::system::error_code& e) {
    if (!e && gen == self->gen_ && !self->connected_) {
      self->set_error("connect timed out");
      self->drop_connection();
    }
  });
  sock.async_connect(tcp::endpoint(addr, cfg_.port), [self = shared_from_this(), gen, remote,
                                                      this](const boost::system::error_code& e) {
    if (closed_ || gen != gen_) return;
    if (e) {
      set_error("connect: " + e.message());
      drop_connection();
      return;
    }
    boost::system::error_code le;
    auto& s = tls_ ? tls_->lowest_layer() : *tcp_;
    s.set_option(tcp::no_delay(true), le);
    key_ = {cfg_.transport, to_flow(s.local_endpoint(le)), remote};
    if (tls_) {
      tls_->async_handshake(ssl::stream_base::client, [self, gen, this](const boost::system::error_code& he) {
        if (closed_ || gen != gen_) return;
        if (he) {
          st_->counters.tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
          const long vr = SSL_get_verify_result(tls_->native_handle());
          if (vr != X509_V_OK) {
            refuse_identity(X509_verify_cert_error_string(vr));
          } else {
            set_error("TLS handshake: " + he.message());
          }
          drop_connection();
          return;
        }
        if (pin_ && !pin_matches(SSL_get0_peer_certificate(tls_->native_handle()), *pin_)) {
          refuse_identity("certificate does not match core.tls_pin_sha256");
          drop_connection();
          return;
        }
        on_connected(gen);
      });
    } else {
      on_connected(gen);
    }
  });
}

// With a CA the chain is checked by OpenSSL during the handshake (make_client_tls
// sets verify_peer); the name is checked there too, as part of the chain
// verification, so a wrong name fails the handshake with "hostname mismatch" /
// "IP address mismatch". SNI carries DNS names only (RFC 6066 §3: no literals).
void CoreLink::expect_identity(ssl::stream<tcp::socket>& s) {
  SSL* ssl = s.native_handle();
  const std::string name = core_identity_name(cfg_);
  boost::system::error_code ec;
  asio::ip::make_address(name, ec);
  const bool literal = !ec;
  if (!literal) SSL_set_tlsext_host_name(ssl, name.c_str());
  if (st_->config.tls.ca_file.empty()) return;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (literal) {
    X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
  }
}

void CoreLink::refuse_identity(const std::string& why) {
  st_->counters.core_identity_failures.fetch_add(1, std::memory_order_relaxed);
  std::string text = "core " + cfg_.address + ":" + std::to_string(cfg_.port) + " (" +
                     core_identity_name(cfg_) + "): " + why;
  set_error("TLS identity: " + why);
  st_->set_core_identity_error(std::move(text));
}

void CoreLink::on_connected(unsigned gen) {
  timer_.cancel();
  connected_ = true;
  if (pinging()) {
    // A stopped core's kernel still completes the TCP handshake: the link is
    // up only once the core answered a ping, sent at once.
    awaiting_pong_ = true;
    ping_owed_ = true;
    ka_timer_.expires_after(cfg_.keepalive_timeout);
    ka_timer_.async_wait([self = shared_from_this(), gen](const boost::system::error_code& e) {
      if (!e) self->on_keepalive_timer(gen);
    });
  } else {
    set_up();
  }
  write_next();
  do_read(gen);
}

void CoreLink::set_up() {
  up_.store(true, std::memory_order_release);
  first_attempt_.store(false, std::memory_order_release);
  backoff_ = cfg_.reconnect_initial;
  connects_.fetch_add(1, std::memory_order_relaxed);
  st_->counters.core_connects.fetch_add(1, std::memory_order_relaxed);
  if (!health_on()) {
    ever_up_.store(true, std::memory_order_release);
  } else {
    // Probing until it answers; the first OPTIONS goes now, not an interval from now.
    hc_outstanding_.store(false, std::memory_order_release);
    send_health_ping();
  }
}

// RFC 5626 §4.4.1 toward the core: ping after keepalive_interval, then wait
// keepalive_timeout for the pong. The deadline runs from when the ping is
// queued, not written: a core that stopped reading (our write stalls) is as
// dead as one that stopped answering.
void CoreLink::arm_keepalive(unsigned gen) {
  if (!pinging()) return;
  awaiting_pong_ = false;
  ka_timer_.expires_after(cfg_.keepalive_interval);
  ka_timer_.async_wait([self = shared_from_this(), gen](const boost::system::error_code& e) {
    if (!e) self->on_keepalive_timer(gen);
  });
}

void CoreLink::on_keepalive_timer(unsigned gen) {
  if (closed_ || gen != gen_ || !connected_) return;
  if (st_->paused.load(std::memory_order_acquire) && up_.load(std::memory_order_relaxed)) {
    // A controlled restart parks our reading, and the pong with it: not the core's silence.
    arm_keepalive(gen);
    return;
  }
  if (awaiting_pong_) {
    st_->counters.core_keepalive_timeouts.fetch_add(1, std::memory_order_relaxed);
    ka_timeouts_.fetch_add(1, std::memory_order_relaxed);
    drop_connection(true, "no answer to a CRLF keep-alive within core.keepalive_timeout_ms");
    return;
  }
  awaiting_pong_ = true;
  ping_owed_ = true;
  ka_timer_.expires_after(cfg_.keepalive_timeout);
  ka_timer_.async_wait([self = shared_from_this(), gen](const boost::system::error_code& e) {
    if (!e) self->on_keepalive_timer(gen);
  });
  write_next();
}

// The pong, or anything else the core sends: it is alive. The next ping goes
// keepalive_interval from now.
void CoreLink::heard_from_core() {
  if (!awaiting_pong_) return;
  const bool first = !up_.load(std::memory_order_relaxed);
  if (first) set_up();
  arm_keepalive(gen_);
  if (first) write_next();  // what a broken connection left queued
}

void CoreLink::do_read(unsigned gen) {
  if (udp_) {
    udp_->async_receive(asio::buffer(dgram_),
                        [self = shared_from_this(), gen](const boost::system::error_code& ec, std::size_t n) {
                          self->on_read(gen, ec, n);
                        });
    return;
  }
  auto space = framer_.prepare();
  with_stream([&](auto& s) {
    s.async_read_some(space, [self = shared_from_this(), gen](const boost::system::error_code& ec,
                                                              std::size_t n) { self->on_read(gen, ec, n); });
  });
}

void CoreLink::on_read(unsigned gen, const boost::system::error_code& ec, std::size_t n) {
  if (closed_ || gen != gen_) return;
  if (udp_) {
    if (ec == asio::error::operation_aborted) return;
    // ICMP "port unreachable" while the core restarts: keep the socket, keep reading.
    if (!ec && n > 0 && n <= st_->config.limits.max_message_size &&
        (dgram_[0] != '\r' && dgram_[0] != '\n')) {
      if (st_->paused.load(std::memory_order_acquire)) {
        parked_ = true;
        parked_dgram_ = n;
        State::park(w_, shared_from_this());
        return;
      }
      deliver({dgram_.data(), n});
    }
    do_read(gen);
    return;
  }
  if (ec) {
    drop_connection();
    return;
  }
  heard_from_core();
  framer_.commit(n);
  process(gen);
}

// The core's stream: CRLFCRLF is answered ahead of the queue, a lone CRLF and
// the read phases mean nothing here (the core is trusted not to stall), and a
// message that cannot be framed ends this connection.
struct CoreLink::Framing {
  CoreLink& l;
  unsigned gen;

  bool on_message(std::string_view m) {
    if (l.st_->paused.load(std::memory_order_acquire)) {
      l.parked_ = true;
      State::park(l.w_, l.shared_from_this());
      return false;  // stays buffered; resume_reading() delivers it
    }
    l.deliver(m);
    return !l.closed_ && gen == l.gen_;
  }
  void on_keepalive(KeepAlive k) {
    if (k == KeepAlive::ping) l.enqueue_front_pong();
  }
  void on_phase(ReadPhase) {}
  void on_error(const FramingError& e) {
    if (e.oversized && e.error == sip::Error::content_length_too_large) {
      // One message over limits.max_message_size (its Content-Length says so):
      // it alone is refused (513 to a request), the link and what follows stay.
      std::string answer = error_response(e.bytes, 513, l.st_->config);
      if (l.framer_.skip_oversized()) {
        l.st_->counters.oversized.fetch_add(1, std::memory_order_relaxed);
        skipped = true;
        if (!answer.empty()) {
          l.queued_.fetch_add(1, std::memory_order_relaxed);
          l.enqueue(std::move(answer), Clock::now());
        }
        return;
      }
    }
    // The core broke the stream: start over on a fresh connection.
    l.st_->counters.framing_errors.fetch_add(1, std::memory_order_relaxed);
    l.drop_connection(false, "the core's stream could not be framed");
  }
  bool skipped = false;
};

void CoreLink::process(unsigned gen) {
  for (;;) {
    Framing cb{*this, gen};
    const Drained d = framer_.drain(cb);
    if (cb.skipped && !closed_ && gen == gen_) continue;  // go on after the skipped message
    if (d == Drained::read_more) do_read(gen);
    return;
  }
}

void CoreLink::count_in() {
  messages_in_.fetch_add(1, std::memory_order_relaxed);
  st_->counters.core_messages_in.fetch_add(1, std::memory_order_relaxed);
}

void CoreLink::deliver(std::string_view bytes) {
  if (st_->take_health_answer(bytes)) return;
  count_in();
  Inbound in;
  in.flow = key_;
  in.from_core = true;
  in.bytes = bytes;
  in.received = Clock::now();
  st_->deliver(in);
}

void CoreLink::resume_reading() {
  if (closed_ || !parked_ || !connected_) return;
  parked_ = false;
  if (udp_) {
    deliver({dgram_.data(), parked_dgram_});
    do_read(gen_);
  } else {
    process(gen_);
  }
}

bool CoreLink::send(std::string bytes) {
  // RFC 3261 §16.9: the core cannot be reached now; the caller answers 503 at
  // once instead of holding the request for a reconnect that may take long.
  // Only the first connection attempt after start is waited for (it takes a
  // round trip): messages then queue, and wait no longer than max_queue_age.
  if (!up_.load(std::memory_order_acquire) && !first_attempt_.load(std::memory_order_acquire)) {
    st_->counters.core_refused_down.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (!hand_to_worker(w_, queued_, cfg_.max_queued, std::move(bytes),
                      [self = shared_from_this(), at = Clock::now()](std::string b) {
                        self->enqueue(std::move(b), at);
                      })) {
    st_->counters.core_queue_full.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void CoreLink::enqueue(std::string bytes, Clock::time_point at) {
  if (closed_) {
    queued_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  queue_.push_back({std::move(bytes), at});
  write_next();
}

// Messages that waited longer than max_queue_age (the link was behind, or broke
// under them and reconnected) are dropped unwritten: their senders have
// retransmitted, been answered or given up by now.
void CoreLink::drop_stale() {
  const auto oldest = Clock::now() - cfg_.max_queue_age;
  while (!queue_.empty() && queue_.front().at < oldest) {
    queue_.pop_front();
    queued_.fetch_sub(1, std::memory_order_relaxed);
    st_->counters.core_stale_dropped.fetch_add(1, std::memory_order_relaxed);
  }
}

void CoreLink::enqueue_front_pong() {
  // The pong is not counted against the queue bound; it is tiny and answers the core at once.
  pongs_ += 1;
  write_next();
}

void CoreLink::write_next() {
  if (!connected_ || writing_ || closed_) return;
  const unsigned gen = gen_;
  if (ping_owed_ && !udp_) {
    writing_ = true;
    with_stream([&](auto& s) {
      asio::async_write(s, asio::buffer("\r\n\r\n", 4),
                        [self = shared_from_this(), gen](const boost::system::error_code& ec, std::size_t) {
                          self->writing_ = false;
                          if (self->closed_ || gen != self->gen_) return;
                          if (ec) {
                            self->drop_connection();
                            return;
                          }
                          self->ping_owed_ = false;
                          self->write_next();
                        });
    });
    return;
  }
  if (pongs_ > 0) {
    writing_ = true;
    with_stream([&](auto& s) {
      asio::async_write(s, asio::buffer("\r\n", 2),
                        [self = shared_from_this(), gen](const boost::system::error_code& ec, std::size_t) {
                          self->writing_ = false;
                          if (self->closed_ || gen != self->gen_) return;
                          if (ec) {
                            self->drop_connection();
                            return;
                          }
                          --self->pongs_;
                          self->write_next();
                        });
    });
    return;
  }
  drop_stale();
  if (queue_.empty() || !up_.load(std::memory_order_relaxed)) return;
  writing_ = true;
  auto done = [self = shared_from_this(), gen](const boost::system::error_code& ec, std::size_t) {
    self->writing_ = false;
    if (self->closed_ || gen != self->gen_) return;
    if (ec && !self->udp_) {
      self->drop_connection();
      return;
    }
    // UDP: a failed send (ICMP from an earlier datagram) loses this datagram, like the network would.
    const bool ping = self->queue_.front().ping;
    self->queue_.pop_front();
    self->queued_.fetch_sub(1, std::memory_order_relaxed);
    if (!ping) {
      self->messages_out.fetch_add(1, std::memory_order_relaxed);
      self->st_->counters.core_messages_out.fetch_add(1, std::memory_order_relaxed);
    }
    self->write_next();
  };
  if (udp_) {
    udp_->async_send(asio::buffer(queue_.front().bytes), std::move(done));
  } else {
    with_stream([&](auto& s) { asio::async_write(s, asio::buffer(queue_.front().bytes), std::move(done)); });
  }
}

void CoreLink::drop_connection(bool abortive, std::string_view why) {
  if (up_.load(std::memory_order_relaxed)) {
    st_->counters.core_disconnects.fetch_add(1, std::memory_order_relaxed);
    disconnects_.fetch_add(1, std::memory_order_relaxed);
    if (!closed_) set_error(std::string(why));
  }
  // A new connection is probed afresh.
  healthy_.store(false, std::memory_order_release);
  hc_failures_.store(0, std::memory_order_release);
  hc_outstanding_.store(false, std::memory_order_release);
  connected_ = false;
  up_.store(false, std::memory_order_release);
  first_attempt_.store(false, std::memory_order_release);
  writing_ = false;
  parked_ = false;
  pongs_ = 0;
  ping_owed_ = false;
  awaiting_pong_ = false;
  ka_timer_.cancel();
  ++gen_;  // every handler of the old connection is now stale
  boost::system::error_code ec;
  if (abortive) {
    auto* s = tls_ ? &tls_->lowest_layer() : tcp_ ? &*tcp_ : nullptr;
    if (s) s->set_option(asio::socket_base::linger(true, 0), ec);
  }
  if (tls_) tls_->lowest_layer().close(ec);
  if (tcp_) tcp_->close(ec);
  if (udp_) udp_->close(ec);
  // Handlers still reference the old socket objects until they run, so the
  // objects are replaced (not destroyed) only on the next connect.
  framer_.clear();
  if (closed_) return;
  timer_.expires_after(backoff_);
  backoff_ = std::min(cfg_.reconnect_max, backoff_ * 2);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
    if (!e) self->connect();
  });
}

void CoreLink::close_now(CloseReason) {
  if (closed_) return;
  closed_ = true;
  timer_.cancel();
  hc_timer_.cancel();
  drop_connection();
  queued_.fetch_sub(queue_.size(), std::memory_order_relaxed);
  queue_.clear();
  State::leave(w_, this);
}

}  // namespace edge::net::detail
