// A scripted SIP user agent for tests: UDP, TCP, TLS, WS, WSS on v4/v6 loopback; every wait bounded.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "edge/test/sip/message.h"
#include "edge/test/sip/stun.h"
#include "edge/test/sip/transport.h"

namespace edge::test {

using Millis = std::chrono::milliseconds;
inline constexpr Millis kDefaultTimeout{5000};

// Thrown when a bounded wait ends without what it waited for. Carries the
// UA's transcript so the failure says what did arrive.
struct TimeoutError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TlsOptions {
  std::filesystem::path ca_file;    // empty: the server certificate is not verified
  std::string verify_name;          // DNS name or IP to check; empty: the server's address
  std::filesystem::path cert_file;  // client certificate (optional, with key_file)
  std::filesystem::path key_file;
};

struct ConnectOptions {
  std::optional<Endpoint> local;  // bind here before connecting (port 0: any)
  TlsOptions tls;
  std::string ws_path = "/";
  std::string ws_protocol = "sip";   // Sec-WebSocket-Protocol offered (RFC 7118 §4); empty: none
  Millis timeout = kDefaultTimeout;  // TCP connect + TLS and WS handshakes
};

// Who the UA is. The instance URN and reg-id go into REGISTER (RFC 5626 §4.2).
struct UaProfile {
  std::string user = "alice";
  std::string domain = "127.0.0.1";  // AOR domain and REGISTER Request-URI host
  std::string instance;              // "urn:uuid:..."; a fresh random one when empty at construction
  int reg_id = 1;
  // Pre-loaded Route for requests outside a dialog (an outbound proxy, RFC 3261
  // §8.1.2), e.g. "<sip:127.0.0.1:5060;transport=tcp;lr>"; empty: none.
  std::string outbound_proxy;
};

// Dialog state as RFC 3261 §12 defines it, enough to send ACK, BYE, re-INVITE.
struct Dialog {
  std::string call_id;
  std::string local;   // our From/To header value, with our tag
  std::string remote;  // the peer's, with its tag
  std::string local_tag;
  std::string remote_tag;
  std::string remote_target;           // the peer's Contact URI
  std::vector<std::string> route_set;  // Route values in sending order
  std::uint32_t local_cseq = 0;
  std::uint32_t invite_cseq = 0;

  // UAC side: from the INVITE we sent and the 2xx (or 1xx with To tag) we got (§12.1.2).
  static Dialog as_uac(const SipMessage& invite, const SipMessage& response);
  // UAS side: from the INVITE we received and the To tag we answer with (§12.1.1).
  static Dialog as_uas(const SipMessage& invite, std::string local_tag);
};

struct RegisterOptions {
  std::string request_uri;  // empty: "sip:<domain>"
  int expires = 60;
  bool outbound = true;        // +sip.instance, reg-id, Supported: outbound
  bool supported_path = true;  // Supported: path (RFC 3327 §5: edges add Path only then)
  bool ob_in_contact = true;   // ";ob" on the Contact URI
  std::vector<std::pair<std::string, std::string>> extra_headers;
};

// A random (version 4) UUID, "f81d4fae-7dec-41d0-8765-00a0c91e6bf6", for +sip.instance.
std::string random_uuid();

class TestUa {
 public:
  explicit TestUa(std::string user = "alice", std::string domain = "127.0.0.1");
  explicit TestUa(UaProfile profile);
  ~TestUa();
  TestUa(TestUa&&) noexcept;
  TestUa& operator=(TestUa&&) noexcept;

  UaProfile& profile();
  const UaProfile& profile() const;

  // Opens the flow: a connected UDP socket, a TCP connection, a TLS session,
  // or a WebSocket (Upgrade with Sec-WebSocket-Protocol: sip, text frames).
  // Throws std::runtime_error (TimeoutError on a deadline) when it cannot.
  void connect(Transport transport, const Endpoint& server, const ConnectOptions& options = {});
  // Closes the flow (WebSocket close frame first; TCP/TLS just close). Idempotent.
  void close();
  bool is_open() const;
  Transport transport() const;
  Endpoint local_endpoint() const;
  Endpoint server_endpoint() const;

  // --- I/O. A datagram, or a WebSocket text message, carries exactly one send.
  void send_raw(std::string_view bytes);
  void send(const SipMessage& message);
  std::optional<SipMessage> try_receive(Millis timeout = kDefaultTimeout);
  SipMessage receive(Millis timeout = kDefaultTimeout);
  // The first request with that method; other messages stay queued for later receives.
  SipMessage receive_request(std::string_view method, Millis timeout = kDefaultTimeout);
  // The first final (>= 200) response whose CSeq method matches; provisional
  // responses of that method are dropped on the way, others stay queued.
  SipMessage receive_response(std::string_view cseq_method, Millis timeout = kDefaultTimeout);
  // True once the peer has closed the flow (EOF, reset, WebSocket close).
  bool wait_closed(Millis timeout = kDefaultTimeout);
  // Every message sent and received so far, timestamped, for failure output.
  std::string transcript() const;

  // --- Keep-alives (RFC 5626 §4.4)
  void send_ping();  // CRLFCRLF
  // Waits for (and consumes) one CRLF pong.
  bool wait_pong(Millis timeout = kDefaultTimeout);
  // UDP only: sends a Binding request, returns the matching response. Throws on timeout.
  StunBindingResponse stun_binding(Millis timeout = kDefaultTimeout);
  // UDP only: the next STUN datagram, raw (for malformed-input tests).
  std::optional<std::vector<std::uint8_t>> try_receive_stun(Millis timeout = kDefaultTimeout);
  void send_bytes(std::span<const std::uint8_t> bytes);

  // --- Builders. Via sent-by and Contact use the flow's local address.
  std::string aor() const;                         // sip:alice@127.0.0.1
  std::string contact_uri(bool ob = true) const;   // sip:alice@127.0.0.1:40001;transport=tcp;ob
  std::string via(std::string_view branch) const;  // SIP/2.0/TCP 127.0.0.1:40001;branch=..;rport
  static std::string new_branch();                 // "z9hG4bK" + random
  static std::string new_tag();
  static std::string new_call_id();

  // One Call-ID for all REGISTERs of this UA, CSeq rising (RFC 3261 §10.2).
  SipMessage make_register(const RegisterOptions& options = {});
  // make_register + send + receive_response("REGISTER").
  SipMessage register_with(const RegisterOptions& options = {}, Millis timeout = kDefaultTimeout);
  // An INVITE to target_uri (Request-URI and To) with an SDP offer; empty sdp: make_sdp(local address).
  SipMessage make_invite(std::string_view target_uri, std::string sdp = {});
  // A response copying Via, From, To, Call-ID, CSeq (and Record-Route for
  // INVITE 1xx/2xx, RFC 3261 §12.1.1). to_tag is added when To has none; INVITE
  // 1xx/2xx get our Contact; body (SDP) optional.
  SipMessage make_response(const SipMessage& request, int status, std::string_view reason, std::string_view to_tag = {},
                           std::string body = {});
  // ACK for a 2xx: new transaction, sent along the route set (§13.2.2.4).
  SipMessage make_ack(const Dialog& dialog) const;
  // ACK for a non-2xx final response: same branch as the INVITE, hop by hop (§17.1.1.3).
  static SipMessage make_ack_for_failure(const SipMessage& invite, const SipMessage& response);
  // A request inside the dialog (BYE, INFO, re-INVITE, ...); bumps the dialog's CSeq.
  SipMessage make_in_dialog(Dialog& dialog, std::string_view method);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edge::test
