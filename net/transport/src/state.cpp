// Shared transport state: admission, flow open/close, handler delivery, TLS contexts, helpers.
#include "state.h"

#include "edge/net/sip/message.h"
#include "edge/net/sip/response.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>

namespace edge::net::detail {

flow::Endpoint to_flow(const asio::ip::address& a, std::uint16_t port) {
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    return flow::Endpoint::v4({b[0], b[1], b[2], b[3]}, port);
  }
  const auto b = a.to_v6().to_bytes();
  std::array<std::uint8_t, 16> x{};
  std::copy(b.begin(), b.end(), x.begin());
  return flow::Endpoint::v6(x, port);
}

asio::ip::address to_asio(const flow::Endpoint& e) {
  if (e.family == flow::Family::ipv4) {
    return asio::ip::address_v4({e.address[0], e.address[1], e.address[2], e.address[3]});
  }
  asio::ip::address_v6::bytes_type b{};
  std::copy(e.address.begin(), e.address.end(), b.begin());
  return asio::ip::address_v6(b);
}

State::State(const TransportConfig& cfg, std::shared_ptr<MessageHandler> h)
    : config(cfg),
      sip_limits{cfg.limits.max_message_size, sip::Limits{}.max_header_line, sip::Limits{}.max_headers},
      handler_(std::move(h)) {}

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
  if (connections_.fetch_add(1, std::memory_order_relaxed) >= config.limits.max_connections) {
    connections_.fetch_sub(1, std::memory_order_relaxed);
    counters.refused_max_connections.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
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
  connections_.fetch_sub(1, std::memory_order_relaxed);
  counters.refused_per_address.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void State::release(const asio::ip::address& from) {
  const flow::Endpoint key = to_flow(from, 0).unmapped();
  {
    std::lock_guard lock(addr_mu_);
    auto it = per_address_.find(key);
    if (it != per_address_.end() && --it->second == 0) per_address_.erase(it);
  }
  connections_.fetch_sub(1, std::memory_order_relaxed);
}

std::shared_ptr<FlowEntry> State::open_flow(const flow::FlowKey& key, Worker& w, std::weak_ptr<FlowLink> link) {
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
    case CloseReason::idle_timeout: counters.idle_timeouts.fetch_add(1, std::memory_order_relaxed); break;
    case CloseReason::flow_timeout: counters.flow_timeouts.fetch_add(1, std::memory_order_relaxed); break;
    case CloseReason::read_timeout: counters.read_timeouts.fetch_add(1, std::memory_order_relaxed); break;
    default: break;
  }
  if (auto h = handler()) h->on_flow_closed(entry->key);
}

void State::deliver(const Inbound& in) {
  if (auto h = handler()) h->on_message(in, *outbound);
}

asio::mutable_buffer FrameBuffer::prepare() {
  if (begin_ == end_) begin_ = end_ = 0;
  if (end_ == buf_.size()) {
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    } else if (buf_.size() < max_) {
      buf_.resize(std::min(max_, buf_.size() * 2));
    }
  }
  return asio::buffer(buf_.data() + end_, buf_.size() - end_);
}

void FrameBuffer::consume(std::size_t n) noexcept {
  begin_ += n;
  scanned = 0;
  if (begin_ >= end_) begin_ = end_ = 0;
}

namespace {

[[noreturn]] void tls_fail(const std::string& what, const std::string& file, const boost::system::error_code& ec) {
  throw TransportError("tls: cannot load " + what + " " + file + ": " + ec.message());
}

void restrict_versions(ssl::context& ctx) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
}

}  // namespace

std::shared_ptr<ssl::context> make_server_tls(const TlsConfig& cfg) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  restrict_versions(*ctx);
  boost::system::error_code ec;
  if (cfg.certificate_chain_file.empty()) throw TransportError("tls: no certificate chain file configured");
  if (cfg.private_key_file.empty()) throw TransportError("tls: no private key file configured");
  ctx->use_certificate_chain_file(cfg.certificate_chain_file, ec);
  if (ec) tls_fail("certificate chain", cfg.certificate_chain_file, ec);
  ctx->use_private_key_file(cfg.private_key_file, ssl::context::pem, ec);
  if (ec) tls_fail("private key", cfg.private_key_file, ec);
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    throw TransportError("tls: private key " + cfg.private_key_file + " does not match the certificate");
  }
  if (!cfg.ca_file.empty()) {
    ctx->load_verify_file(cfg.ca_file, ec);
    if (ec) tls_fail("CA file", cfg.ca_file, ec);
  }
  switch (cfg.client_certs) {
    case ClientCertPolicy::none: ctx->set_verify_mode(ssl::verify_none); break;
    case ClientCertPolicy::optional: ctx->set_verify_mode(ssl::verify_peer); break;
    case ClientCertPolicy::required:
      ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      break;
  }
  if (cfg.client_certs != ClientCertPolicy::none && cfg.ca_file.empty()) {
    throw TransportError("tls: client certificates requested but no CA file configured");
  }
  return ctx;
}

std::shared_ptr<ssl::context> make_client_tls(const TlsConfig& cfg, const CoreConfig& core) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  restrict_versions(*ctx);
  boost::system::error_code ec;
  if (!cfg.ca_file.empty()) {
    ctx->load_verify_file(cfg.ca_file, ec);
    if (ec) tls_fail("CA file", cfg.ca_file, ec);
    ctx->set_verify_mode(ssl::verify_peer);
  } else {
    // No CA configured: the core link is only encrypted, not authenticated.
    ctx->set_verify_mode(ssl::verify_none);
  }
  if (!cfg.certificate_chain_file.empty() && !cfg.private_key_file.empty()) {
    ctx->use_certificate_chain_file(cfg.certificate_chain_file, ec);
    if (ec) tls_fail("certificate chain", cfg.certificate_chain_file, ec);
    ctx->use_private_key_file(cfg.private_key_file, ssl::context::pem, ec);
    if (ec) tls_fail("private key", cfg.private_key_file, ec);
  }
  (void)core;
  return ctx;
}

std::string error_response(std::string_view bytes, int status, const TransportConfig& cfg) {
  if (status == 0) return {};
  // Parse as a datagram so a message without (or with a broken) Content-Length
  // still yields its Via/From/To/Call-ID/CSeq; only the header section is needed.
  const std::size_t end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) return {};
  // Content-Length lines are what usually broke the framing: leave them out
  // (a datagram parse does not need one). This is the rare error path; the copy is fine.
  std::string head;
  head.reserve(end + 4);
  std::string_view rest = bytes.substr(0, end + 2);
  while (!rest.empty()) {
    std::size_t eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol + 2);
    rest.remove_prefix(line.size());
    std::string_view name = line.substr(0, line.find(':'));
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (sip::header_id(name) == sip::HeaderId::content_length) continue;
    head.append(line);
  }
  head.append("\r\n");
  sip::Message msg;
  sip::ParseOptions opt;
  opt.limits.max_message_size = head.size() + 1;
  if (sip::parse(head, msg, opt) != sip::Error::ok || !msg.is_request()) return {};
  std::string out;
  sip::ExtraHeader server{"Server", cfg.server_header};
  sip::ResponseSpec spec;
  spec.status = status;
  if (!cfg.server_header.empty()) spec.extra = {&server, 1};
  if (sip::build_response(msg, spec, out) != sip::Error::ok) return {};
  return out;
}

}  // namespace edge::net::detail
