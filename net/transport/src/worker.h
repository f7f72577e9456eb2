// Internal: a worker (one thread running one io_context) and what lives on it (WorkerMember).
#pragma once

#include "edge/net/transport/flow_table.h"
#include "edge/net/transport/message_handler.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace edge::net::detail {

namespace asio = boost::asio;

// Something on a worker that stops delivering while paused and carries on when resumed.
class WorkerMember {
 public:
  virtual ~WorkerMember() = default;
  virtual void resume_reading() = 0;            // on its worker
  virtual void close_now(CloseReason why) = 0;  // on its worker
};

struct Worker {
  explicit Worker(unsigned i)
      : index(i), guard(asio::make_work_guard(ctx)), sweep_timer(ctx), handler_timer(ctx) {}
  const unsigned index;
  asio::io_context ctx{1};  // one thread runs it: handlers need no strand
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::thread thread;
  std::atomic<std::size_t> load{0};  // live connections owned by this worker
  asio::steady_timer sweep_timer;
  asio::steady_timer handler_timer;  // worker 0 only: MessageHandler::on_timer
  // Touched only on this worker's thread.
  std::unordered_map<WorkerMember*, std::weak_ptr<WorkerMember>> members;
  std::vector<std::shared_ptr<WorkerMember>>
      parked;  // strong: a parked session has no pending operation holding it
  std::vector<std::shared_ptr<FlowEntry>> sweep_buf;
  std::vector<ParkedMessage> redelivered;  // back from HSM work while paused: delivered on resume
};

// Hands bytes to the worker that owns a connection, bounded: takes one of
// `limit` places in `queued` (the owner gives it back when the bytes are
// written or dropped) and calls enqueue(bytes) there, at once when already on
// that worker, else posted. False, and nothing done, when every place is
// taken. Any thread; never blocks.
template <class Enqueue>
bool hand_to_worker(Worker& w, std::atomic<std::size_t>& queued, std::size_t limit, std::string bytes,
                    Enqueue enqueue) {
  if (queued.fetch_add(1, std::memory_order_relaxed) >= limit) {
    queued.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  if (w.ctx.get_executor().running_in_this_thread()) {
    enqueue(std::move(bytes));
  } else {
    asio::post(w.ctx, [e = std::move(enqueue), b = std::move(bytes)]() mutable { e(std::move(b)); });
  }
  return true;
}

}  // namespace edge::net::detail
