// Shared fixture of the hostile-input tests: edged between Kamailio and test UAs, a registered bystander,
// and the leak checks (edged's open fds from /proc, flows_now) every test ends with.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "edge_fixture.h"

namespace edge::test::hostile {

using Clock = std::chrono::steady_clock;

// Number of open file descriptors of a process (entries of /proc/<pid>/fd).
std::size_t fd_count(pid_t pid);

// What became of a connection after hostile input: an answer (first status), a close, or neither.
struct Outcome {
  std::optional<int> status;
  bool closed = false;
  std::string summary;
};
std::ostream& operator<<(std::ostream& os, const Outcome& o);
// Waits (bounded) until the edge answers or closes the UA's connection; after an
// answer, a short extra wait notices a close that follows it.
Outcome await_outcome(TestUa& u, Millis timeout = Millis(5000));

// A bare TCP connection for bytes no TestUa sends. Blocking, short receive timeout.
class RawStream {
 public:
  explicit RawStream(const Endpoint& to, std::optional<Endpoint> local = std::nullopt);
  void write(std::string_view bytes);
  // false when the write failed (the edge closed the connection).
  bool try_write(std::string_view bytes);
  // Reads until `needle` arrived, EOF, or the deadline; returns all that came.
  std::string read_until(std::string_view needle, Millis timeout);
  bool wait_eof(Millis timeout);
  const std::string& received() const { return received_; }
  bool eof() const { return eof_; }
  int native_handle() { return socket_.native_handle(); }
  void close();

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  std::string received_;
  bool eof_ = false;
};

// One client-to-server WebSocket frame (RFC 6455 §5.2); masked unless told otherwise.
std::string ws_frame(std::uint8_t first_byte, std::string_view payload, bool masked = true);
// The HTTP upgrade request for SIP over WebSocket (RFC 7118).
std::string ws_upgrade(std::uint16_t port);

// A complete OPTIONS request with the given extra header text and body (Content-Length set from body
// unless content_length is given).
std::string options_request(std::string_view extra_headers = {}, std::string_view body = {},
                            std::optional<std::string> content_length = std::nullopt);

class HostileTest : public EdgeTest {
 protected:
  // Short read timeouts so slowloris and stalled bodies end in seconds; short idle timeout so silent
  // half-open connections go; everything else as the lab default.
  EdgedOptions edged_options() override;

  // Registers the bystander (TCP) and takes the baselines.
  void SetUp() override;

  // The daemon is up; the bystander's flow is open and answers a keep-alive; a call from the core reaches
  // it; then every other client closes, and edged's fd count and stream flows return to the baseline.
  void expect_unharmed();
  // Polls until edged's open fd count is back to the baseline; false after the timeout.
  bool fds_back_to_baseline(Millis timeout = Millis(8000));
  // Polls until status shows exactly the bystander's flows (1 TCP, no TLS/WS/WSS) and no other connection.
  bool flows_back_to_baseline(Millis timeout = Millis(8000));

  TestUa* bystander_ = nullptr;
  std::size_t baseline_fds_ = 0;
  int serial_ = 0;
};

}  // namespace edge::test::hostile
