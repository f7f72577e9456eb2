// FrameBuffer: compact or grow (up to the message limit) only when a read needs the room.
#include "frame_buffer.h"

#include <cstring>

namespace edge::net::detail {

boost::asio::mutable_buffer FrameBuffer::prepare() {
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
  return boost::asio::buffer(buf_.data() + end_, buf_.size() - end_);
}

void FrameBuffer::consume(std::size_t n) noexcept {
  begin_ += n;
  if (begin_ >= end_) begin_ = end_ = 0;
}

}  // namespace edge::net::detail
