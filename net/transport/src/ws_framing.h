// The WebSocket framing of a SIP flow (RFC 7118), free of sockets: the upgrade check, the Beast
// stream options, and what one WS message is. WsConnection and the ws fuzz target share it.
#pragma once

#include <boost/beast/http/field.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <cstddef>
#include <string_view>

namespace edge::net::detail {

// True when the comma-separated Sec-WebSocket-Protocol offer contains "sip".
inline bool offers_sip(std::string_view list) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item.size() == 3 && (item[0] | 0x20) == 's' && (item[1] | 0x20) == 'i' && (item[2] | 0x20) == 'p')
      return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// A WS message made only of CR and LF is a keep-alive, answered like CRLF on a stream.
inline bool only_crlf(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c != '\r' && c != '\n') return false;
  return true;
}

// The options a server-side SIP WebSocket runs with, set before the accept: one SIP message
// per WS message (no auto-fragmenting on write, text frames), "sip" answered as subprotocol,
// and messages bounded by `max_message_size` (Beast fails the read with message_too_big).
template <class Next>
void configure_sip_websocket(boost::beast::websocket::stream<Next>& ws, std::size_t max_message_size) {
  namespace websocket = boost::beast::websocket;
  ws.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
    res.set(boost::beast::http::field::sec_websocket_protocol, "sip");
  }));
  ws.read_message_max(max_message_size);
  ws.auto_fragment(false);
  ws.text(true);
}

}  // namespace edge::net::detail
