// Internal: the common part of a client connection (TCP, TLS, WS, WSS) and how one starts on its worker.
#pragma once

#include "address.h"
#include "state.h"
#include "worker.h"

#include "edge/net/transport/flow_table.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace edge::net::detail {

// What a PROXY protocol listener learnt before the session starts: the client
// its balancer's header names (the flow's remote instead of the balancer), and
// the bytes read past the header (the start of the SIP, TLS or HTTP stream).
struct Preamble {
  std::optional<flow::Endpoint> remote;
  std::string bytes;
};

// One client connection, owned by one worker for its whole life. Everything
// except send() runs on that worker's thread, so no member needs a lock.
class ClientConnection : public FlowLink,
                         public WorkerMember,
                         public std::enable_shared_from_this<ClientConnection> {
 public:
  ClientConnection(std::shared_ptr<State> st, Worker& w, flow::Transport t, asio::ip::address peer)
      : st_(std::move(st)), w_(w), transport_(t), peer_(std::move(peer)) {}

  // FlowLink
  bool send(const FlowEntry& flow, std::string bytes) override;
  void expire(const std::shared_ptr<FlowEntry>&, CloseReason why) override { close_now(why); }
  // WorkerMember
  void close_now(CloseReason why) override;

  // On the worker, right after construction: flow entry, membership, then start().
  bool open(const flow::FlowKey& key);
  virtual void start() = 0;
  void keep_tls(std::shared_ptr<ssl::context> ctx) { tls_ctx_ = std::move(ctx); }
  // Bytes already read from the socket; start() consumes them before reading.
  void set_preread(std::string bytes) { preread_ = std::move(bytes); }

 protected:
  // Async write of the first in_flight_ (>= 1) entries of writes_; calls on_write.
  virtual void start_write() = 0;
  virtual void close_socket() noexcept = 0;

  void enqueue(std::string bytes);  // on the worker
  void on_write(const boost::system::error_code& ec, std::size_t n);
  // After an error answer: stop reading, close once the answer is out (bounded
  // by the header timeout in case the peer does not read).
  void close_after_write(CloseReason why);
  void touch() { entry_->touch(Clock::now()); }
  void arm_deadline(std::chrono::milliseconds d) { entry_->set_read_deadline(Clock::now() + d); }
  void deliver(std::string_view bytes);
  // True when paused: the session parked itself and will be resumed.
  bool park_if_paused();

  std::shared_ptr<State> st_;
  std::shared_ptr<ssl::context> tls_ctx_;  // outlives the SSL stream below (declared first)
  Worker& w_;
  const flow::Transport transport_;
  const asio::ip::address peer_;
  std::shared_ptr<FlowEntry> entry_;
  std::string preread_;
  std::deque<std::string> writes_;  // push_back keeps the bytes of earlier entries in place
  std::size_t in_flight_ = 0;       // entries of writes_ the current write carries
  bool writing_ = false;
  bool closing_after_write_ = false;
  bool core_address_ = false;  // Inbound::core_address of everything read here
  CloseReason close_reason_ = CloseReason::peer_closed;
  bool closed_ = false;            // worker-only
  std::atomic<bool> gone_{false};  // any thread: send() fails fast
  std::atomic<std::size_t> queued_{0};
};

// The flow table still holds a flow with the new connection's 4-tuple. The
// kernel accepts a connection only when no live socket has its 4-tuple, so the
// old connection is already dead (the client reset it and reused its port)
// and only its worker has not read the reset yet. Ends the old flow on its own
// worker, then opens and starts the new session on w; when even that fails the
// new connection is closed and its admission given back. Behind a load
// balancer the 4-tuple is the client's as its header names it: a second
// balancer connection naming the same client (it reconnected from the same
// port before the balancer closed the old one) takes the flow over the same way.
void open_superseding(const std::shared_ptr<State>& st, Worker& w, const flow::FlowKey& key,
                      std::shared_ptr<ClientConnection> s, const asio::ip::address& peer);

// Builds a session on worker w for an accepted socket and starts it; gives the
// admission back when the peer is already gone.
// `keep` is the TLS context a TLS session reads through: reload_tls() swaps the
// State's context for new connections while established ones keep theirs.
template <class Session, class... Args>
void launch(const std::shared_ptr<State>& st, Worker& w, flow::Transport t, tcp::socket& sock,
            const asio::ip::address& peer, Preamble pre, std::shared_ptr<ssl::context> keep, Args&&... args) {
  boost::system::error_code ec1, ec2;
  const auto local = sock.local_endpoint(ec1);
  const auto remote = sock.remote_endpoint(ec2);
  if (ec1 || ec2) {
    // The peer left between accept and now; give its admission back.
    st->release(peer);
    return;
  }
  auto s = std::make_shared<Session>(st, w, t, peer, std::forward<Args>(args)...);
  s->keep_tls(std::move(keep));
  s->set_preread(std::move(pre.bytes));
  // The flow is named after the client (its token, Via received, per-source
  // budgets); the entry's link is this connection, the balancer's socket.
  const flow::FlowKey key{t, to_flow(local), pre.remote ? *pre.remote : to_flow(remote)};
  if (!s->open(key)) {
    open_superseding(st, w, key, std::move(s), peer);
    return;
  }
  s->start();
}

// launch() of Connection<tcp::socket> for tcp / ws, or of
// Connection<ssl::stream<tcp::socket>> reading through `tls` for tls / wss.
template <template <class> class Connection>
void launch_plain_or_tls(const std::shared_ptr<State>& st, Worker& w, tcp::socket sock, flow::Transport t,
                         const asio::ip::address& peer, std::shared_ptr<ssl::context> tls, Preamble pre) {
  if (t == flow::Transport::tls || t == flow::Transport::wss) {
    auto& ctx = *tls;
    launch<Connection<ssl::stream<tcp::socket>>>(st, w, t, sock, peer, std::move(pre), std::move(tls),
                                                 std::move(sock), ctx);
  } else {
    launch<Connection<tcp::socket>>(st, w, t, sock, peer, std::move(pre), nullptr, std::move(sock));
  }
}

// Factories used by the stream acceptor (socket already on worker w's io_context): TCP and TLS
// (stream_connection.cpp), WS and WSS (ws_connection.cpp). `tls` is the listener's context for tls / wss;
// `peer` is the address whose admission the session gives back when it ends.
void start_stream_connection(const std::shared_ptr<State>& st, Worker& w, tcp::socket sock, flow::Transport t,
                             const asio::ip::address& peer, std::shared_ptr<ssl::context> tls,
                             Preamble pre = {});
void start_ws_connection(const std::shared_ptr<State>& st, Worker& w, tcp::socket sock, flow::Transport t,
                         const asio::ip::address& peer, std::shared_ptr<ssl::context> tls, Preamble pre = {});

// On a PROXY protocol listener (proxy_protocol.cpp): reads the header (bounded
// in size and by header_read_timeout) before the session starts on w. From a
// trusted balancer (`trusted`: only the total was admitted) the header is
// required and its client is admitted by source; from anyone else (admitted
// in full) a header is refused and the bytes go to the session unchanged.
void start_proxied_connection(const std::shared_ptr<State>& st, Worker& w, tcp::socket sock,
                              flow::Transport t, const asio::ip::address& peer, bool trusted,
                              std::shared_ptr<ssl::context> tls);

}  // namespace edge::net::detail
