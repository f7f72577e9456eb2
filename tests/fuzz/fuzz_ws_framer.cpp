// Fuzz target: the WebSocket framing of a SIP flow — the HTTP upgrade, then Beast's frame parser
// configured exactly as WsConnection configures it (ws_framing.h), over an in-memory stream.
// Byte 0 picks: bit 0 the input carries its own upgrade request (else a valid one is prepended),
// bits 1-2 the message size limit, bits 3-5 how many bytes one read returns.
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "edge/net/sip/message.h"
#include "ws_framing.h"

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

namespace {

// Names the broken invariant before aborting, so a crash report says what went wrong.
#define check(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

constexpr std::string_view kUpgrade =
    "GET / HTTP/1.1\r\nHost: edge.example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: sip\r\n\r\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 || size > 256 * 1024) return 0;
  const std::uint8_t sel = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  static constexpr std::size_t kLimits[] = {65535, 16, 200, 4096};
  const std::size_t max_message = kLimits[(sel >> 1) & 3];
  static constexpr std::size_t kReads[] = {65536, 1, 2, 3, 7, 64, 100, 1000};
  const std::size_t read_max = kReads[(sel >> 3) & 7];

  boost::asio::io_context ioc;
  beast::test::stream client(ioc);
  websocket::stream<beast::test::stream> ws(ioc);
  ws.next_layer().connect(client);
  ws.next_layer().read_size(read_max);
  // A client sends its frames after the 101: the request goes first, the frames after the accept.
  std::string_view head = kUpgrade, frames = rest;
  if (sel & 1) {
    const std::size_t end = rest.find("\r\n\r\n");
    head = rest.substr(0, end == std::string_view::npos ? rest.size() : end + 4);
    frames = rest.substr(head.size());
  }
  ws.next_layer().append(beast::string_view(head.data(), head.size()));
  ws.next_layer().close_remote();  // reads see the bytes appended, then end of stream

  // The upgrade, as WsConnection::read_upgrade / on_upgrade do it.
  beast::flat_buffer buf;
  http::request_parser<http::empty_body> parser;
  parser.header_limit(8192);
  parser.body_limit(0);
  beast::error_code ec;
  http::read(ws.next_layer(), buf, parser, ec);
  if (ec) return 0;
  const auto& req = parser.get();
  const auto proto = req[http::field::sec_websocket_protocol];
  if (!websocket::is_upgrade(req) ||
      !edge::net::detail::offers_sip(std::string_view(proto.data(), proto.size()))) {
    return 0;
  }
  edge::net::detail::configure_sip_websocket(ws, max_message);
  std::size_t pings = 0;
  ws.control_callback([&pings](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::ping) ++pings;
  });
  ws.accept(req, ec);  // WsConnection drops bytes read past the header section, so do we
  if (ec) return 0;
  ws.next_layer().append(beast::string_view(frames.data(), frames.size()));

  // Every message the peer sends, until it closes or breaks the protocol.
  beast::flat_buffer msg_buf;
  for (int n = 0; n < 4096; ++n) {
    msg_buf.clear();
    ws.read(msg_buf, ec);
    if (ec) break;  // a failed read ends the session
    check(ws.is_message_done());
    const std::string_view msg(static_cast<const char*>(msg_buf.cdata().data()), msg_buf.size());
    check(msg.size() <= max_message);
    if (edge::net::detail::only_crlf(msg)) continue;  // keep-alive
    edge::sip::Message m;
    (void)edge::sip::parse(msg, m);
  }
  check(pings <= frames.size() / 2);  // a ping frame takes at least two bytes
  return 0;
}
