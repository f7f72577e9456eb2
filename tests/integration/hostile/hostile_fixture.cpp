// HostileTest: the bystander, the baselines and the leak checks shared by the hostile-input tests.
#include "hostile_fixture.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <filesystem>
#include <thread>

namespace edge::test::hostile {

std::size_t fd_count(pid_t pid) {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  if (ec) throw std::runtime_error("cannot list /proc/" + std::to_string(pid) + "/fd: " + ec.message());
  return n;
}

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  if (o.status) os << "answered " << *o.status << " (" << o.summary << ")";
  if (o.closed) os << (o.status ? ", then closed" : "closed");
  if (!o.status && !o.closed) os << "no answer and still open";
  return os;
}

Outcome await_outcome(TestUa& u, Millis timeout) {
  Outcome o;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (auto m = u.try_receive(Millis(100))) {
      o.status = m->is_response() ? m->status() : -1;
      o.summary = m->summary();
      break;
    }
    if (!u.is_open()) {
      o.closed = true;
      return o;
    }
  }
  if (o.status && u.transport() != Transport::udp) o.closed = u.wait_closed(Millis(300));
  return o;
}

RawStream::RawStream(const Endpoint& to, std::optional<Endpoint> local) : socket_(io_) {
  const boost::asio::ip::tcp::endpoint remote(to.address, to.port);
  socket_.open(remote.protocol());
  if (local) socket_.bind(boost::asio::ip::tcp::endpoint(local->address, local->port));
  socket_.connect(remote);
  timeval tv{0, 100 * 1000};
  setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

void RawStream::write(std::string_view bytes) {
  boost::asio::write(socket_, boost::asio::buffer(bytes.data(), bytes.size()));
}

bool RawStream::try_write(std::string_view bytes) {
  boost::system::error_code ec;
  boost::asio::write(socket_, boost::asio::buffer(bytes.data(), bytes.size()), ec);
  return !ec;
}

std::string RawStream::read_until(std::string_view needle, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline && !eof_ && (needle.empty() || received_.find(needle) == std::string::npos)) {
    char buf[8192];
    const ssize_t n = ::recv(socket_.native_handle(), buf, sizeof buf, 0);
    if (n > 0) {
      received_.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      eof_ = true;  // EOF or reset: the edge closed the connection
    }
  }
  return received_;
}

bool RawStream::wait_eof(Millis timeout) {
  read_until({}, timeout);
  return eof_;
}

void RawStream::close() {
  boost::system::error_code ec;
  socket_.close(ec);
}

std::string ws_frame(std::uint8_t first_byte, std::string_view payload, bool masked) {
  std::string f;
  f += static_cast<char>(first_byte);
  const std::uint8_t mask_bit = masked ? 0x80 : 0x00;
  if (payload.size() < 126) {
    f += static_cast<char>(mask_bit | payload.size());
  } else if (payload.size() <= 0xffff) {
    f += static_cast<char>(mask_bit | 126);
    f += static_cast<char>((payload.size() >> 8) & 0xff);
    f += static_cast<char>(payload.size() & 0xff);
  } else {
    f += static_cast<char>(mask_bit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) f += static_cast<char>((payload.size() >> shift) & 0xff);
  }
  const std::uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked) f.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    f += masked ? static_cast<char>(payload[i] ^ static_cast<char>(key[i % 4])) : payload[i];
  }
  return f;
}

std::string ws_upgrade(std::uint16_t port) {
  return "GET / HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Protocol: sip\r\n\r\n";
}

std::string options_request(std::string_view extra_headers, std::string_view body,
                            std::optional<std::string> content_length) {
  std::string m = "OPTIONS sip:127.0.0.1 SIP/2.0\r\n";
  m += "Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK" + TestUa::new_branch().substr(7) + ";rport\r\n";
  m += "From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:y@127.0.0.1>\r\n";
  m += "Call-ID: " + TestUa::new_call_id() + "\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n";
  m += extra_headers;
  m += "Content-Length: " + content_length.value_or(std::to_string(body.size())) + "\r\n\r\n";
  m += body;
  return m;
}

EdgedOptions HostileTest::edged_options() {
  EdgedOptions o;
  o.idle_timeout_ms = 3000;
  o.extra = {{"limits.header_read_timeout_ms", "1500"}, {"limits.body_read_timeout_ms", "1500"}};
  return o;
}

void HostileTest::SetUp() {
  EdgeTest::SetUp();
  bystander_ = &ua("bystander");
  ASSERT_EQ(register_through_edge(*bystander_, Transport::tcp).status(), 200);
  ASSERT_TRUE(flows_back_to_baseline()) << "the bystander's flow is not the only one";
  baseline_fds_ = fd_count(edge_->pid());
}

bool HostileTest::fds_back_to_baseline(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const std::size_t n = fd_count(edge_->pid());
    if (n <= baseline_fds_) return true;
    if (Clock::now() > deadline) {
      ADD_FAILURE() << "edged has " << n << " open fds, baseline " << baseline_fds_;
      return false;
    }
    std::this_thread::sleep_for(Millis(100));
  }
}

bool HostileTest::flows_back_to_baseline(Millis timeout) {
  return wait_status(
      [](const EdgedStatus& s) {
        return s.number("flows_tcp") == 1 && s.number("flows_tls") == 0 && s.number("flows_ws") == 0 &&
               s.number("flows_wss") == 0 && s.number("connections") == 1;
      },
      timeout);
}

void HostileTest::expect_unharmed() {
  ASSERT_TRUE(edge_->running()) << "edged died";
  ASSERT_TRUE(bystander_->is_open()) << "the bystander's flow was closed";
  bystander_->send_ping();
  EXPECT_TRUE(bystander_->wait_pong(Millis(3000))) << "the bystander's keep-alive went unanswered";
  TestUa& caller = ua("caller" + std::to_string(++serial_));
  caller.connect(Transport::udp, core_->endpoint(Transport::udp));
  Call c = call(caller, *bystander_);
  caller.send(caller.make_in_dialog(c.caller, "BYE"));
  const SipMessage bye = bystander_->receive_request("BYE");
  bystander_->send(bystander_->make_response(bye, 200, "OK"));
  EXPECT_EQ(caller.receive_response("BYE").status(), 200);
  // Every other client leaves; what they held must go with them.
  for (auto& u : uas_) {
    if (u.get() != bystander_) u->close();
  }
  EXPECT_TRUE(flows_back_to_baseline()) << "stream flows or connections were left behind";
  EXPECT_TRUE(fds_back_to_baseline()) << "edged leaks file descriptors";
}

}  // namespace edge::test::hostile
