// Internal: a worker (one thread running one io_context) and what lives on it (WorkerMember).
#pragma once

#include "edge/net/transport/flow_table.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_map>
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
};

}  // namespace edge::net::detail
