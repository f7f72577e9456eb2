// ClientConnection: write queue, close-once, delivery and pause handling shared by TCP/TLS/WS/WSS sessions.
#include "client_connection.h"

#include <boost/asio/post.hpp>

namespace edge::net::detail {

bool ClientConnection::open(const flow::FlowKey& key) {
  entry_ = st_->open_flow(key, w_, std::weak_ptr<FlowLink>(shared_from_this()));
  if (!entry_) return false;  // cannot happen for a fresh connection: the remote port is ours
  // A core that opened its own connection; TLS: only once its certificate passed (set_core_address).
  core_address_ = transport_ == flow::Transport::tcp && st_->core_ip(key.remote);
  w_.load.fetch_add(1, std::memory_order_relaxed);
  st_->counters.of(transport_).accepted.fetch_add(1, std::memory_order_relaxed);
  State::join(w_, std::static_pointer_cast<WorkerMember>(shared_from_this()));
  return true;
}

bool ClientConnection::send(const FlowEntry&, std::string bytes) {
  if (gone_.load(std::memory_order_acquire)) return false;
  if (!hand_to_worker(w_, queued_, st_->config.limits.max_write_queue, std::move(bytes),
                      [self = shared_from_this()](std::string b) { self->enqueue(std::move(b)); })) {
    st_->counters.send_failures.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void ClientConnection::enqueue(std::string bytes) {
  if (closed_ || closing_after_write_) {
    queued_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  writes_.push_back(std::move(bytes));
  if (!writing_) {
    writing_ = true;
    start_write();
  }
}

void ClientConnection::on_write(const boost::system::error_code& ec, std::size_t n) {
  writing_ = false;
  if (closed_) return;
  if (ec) {
    close_now(CloseReason::io_error);
    return;
  }
  const std::size_t done = in_flight_;
  in_flight_ = 0;
  auto& c = st_->counters.of(transport_);
  c.messages_out.fetch_add(done, std::memory_order_relaxed);
  c.bytes_out.fetch_add(n, std::memory_order_relaxed);
  entry_->messages_out.fetch_add(done, std::memory_order_relaxed);
  entry_->bytes_out.fetch_add(n, std::memory_order_relaxed);
  writes_.erase(writes_.begin(), writes_.begin() + static_cast<std::ptrdiff_t>(done));
  queued_.fetch_sub(done, std::memory_order_relaxed);
  if (!writes_.empty()) {
    writing_ = true;
    start_write();
  } else if (closing_after_write_) {
    close_now(close_reason_);
  }
}

void ClientConnection::close_after_write(CloseReason why) {
  close_reason_ = why;
  if (!writing_ && writes_.empty()) {
    close_now(why);
    return;
  }
  closing_after_write_ = true;
  arm_deadline(st_->config.limits.header_read_timeout);
}

void ClientConnection::close_now(CloseReason why) {
  if (closed_) return;
  closed_ = true;
  gone_.store(true, std::memory_order_release);
  close_socket();
  queued_.fetch_sub(writes_.size(), std::memory_order_relaxed);
  writes_.clear();
  w_.load.fetch_sub(1, std::memory_order_relaxed);
  st_->release(peer_);
  State::leave(w_, this);
  st_->close_flow(entry_, why);
}

void ClientConnection::deliver(std::string_view bytes) {
  const auto now = Clock::now();
  entry_->touch(now);
  entry_->messages_in.fetch_add(1, std::memory_order_relaxed);
  entry_->bytes_in.fetch_add(bytes.size(), std::memory_order_relaxed);
  auto& c = st_->counters.of(transport_);
  c.messages_in.fetch_add(1, std::memory_order_relaxed);
  c.bytes_in.fetch_add(bytes.size(), std::memory_order_relaxed);
  Inbound in;
  in.flow = entry_->key;
  in.bytes = bytes;
  in.received = now;
  in.registered = entry_->registered();
  in.core_address = core_address_;
  st_->deliver(in);
}

bool ClientConnection::park_if_paused() {
  if (!st_->paused.load(std::memory_order_acquire)) return false;
  // A whole message is waiting in our buffer: not the peer's fault, so no read deadline.
  entry_->clear_read_deadline();
  State::park(w_, std::static_pointer_cast<WorkerMember>(shared_from_this()));
  return true;
}

void open_superseding(const std::shared_ptr<State>& st, Worker& w, const flow::FlowKey& key,
                      std::shared_ptr<ClientConnection> s, const asio::ip::address& peer) {
  auto finish = [st, &w, key, s = std::move(s), peer]() mutable {
    asio::post(w.ctx, [st, key, s = std::move(s), peer] {
      if (!st->stopping.load(std::memory_order_acquire) && s->open(key)) {
        s->start();
        return;
      }
      st->release(peer);  // s goes with this handler and closes the socket
    });
  };
  const auto old = st->table.find(key);
  if (!old) {  // ended meanwhile
    finish();
    return;
  }
  st->counters.superseded_flows.fetch_add(1, std::memory_order_relaxed);
  asio::post(st->workers.at(old->worker)->ctx, [st, old, finish = std::move(finish)]() mutable {
    if (auto link = old->link.lock()) {
      link->expire(old, CloseReason::peer_closed);
    } else {
      st->close_flow(old, CloseReason::peer_closed);
    }
    finish();
  });
}

}  // namespace edge::net::detail
