// Internal: the read buffer of a stream (client connection, core link) that messages are framed in.
#pragma once

#include <boost/asio/buffer.hpp>

#include <algorithm>
#include <cstddef>
#include <string_view>
#include <vector>

namespace edge::net::detail {

// A growable read buffer for stream framing: starts small (most phones send a
// few KiB), grows up to the message limit, and is reused for every message.
// Bytes not yet consumed stay where they are until the next prepare() needs the room.
class FrameBuffer {
 public:
  explicit FrameBuffer(std::size_t max_message)
      : max_(max_message), buf_(std::min<std::size_t>(4096, max_message)) {}
  // Free space to read into; empty when the buffer holds max bytes of an unfinished message.
  boost::asio::mutable_buffer prepare();
  void commit(std::size_t n) noexcept { end_ += n; }
  std::string_view data() const noexcept { return {buf_.data() + begin_, end_ - begin_}; }
  void consume(std::size_t n) noexcept;
  void clear() noexcept { begin_ = end_ = 0; }
  bool empty() const noexcept { return begin_ == end_; }

 private:
  std::size_t max_;
  std::vector<char> buf_;
  std::size_t begin_ = 0, end_ = 0;
};

}  // namespace edge::net::detail
