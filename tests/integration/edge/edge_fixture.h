// Shared fixture of the edge tests: Kamailio (registrar/proxy) behind edged, test UAs in front of it.
//
//   TestUa / baresip --flow--> edged 127.0.0.1:5060.. --core link--> Kamailio 127.0.0.1:5080
//          ^                                                            | lookup -> Path
//          +---------------- same flow <---- edged <--- Route: <sip:TOKEN@127.0.0.1:5060;transport=tcp;lr;ob>
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "edge/test/sip/gtest_support.h"
#include "edge/test/sip/kamailio.h"
#include "edge/test/sip/message.h"
#include "edge/test/sip/test_ua.h"
#include "edged_process.h"

namespace edge::test {

inline constexpr const char* kCoreServer = "core-kamailio";

// Decodes the key version (bytes 1..4, big endian) of a v1 flow token
// (base64url, no padding; docs/token-format.md). nullopt when it does not decode.
std::optional<std::uint32_t> token_key_version(const std::string& token);
// The same token with one character changed (in the middle, to another
// base64url character), so the text stays well-formed but the MAC fails.
std::string tamper_token(const std::string& token);
// The flow token in the first Path of a 200 to REGISTER (user part of its URI).
std::string path_token(const SipMessage& ok);

// How the core sends requests to the edge (to the Path / Record-Route URI 127.0.0.1:5060;transport=tcp).
enum class CoreRouting {
  // The core reuses the connection edged opened to it (the "core link"): the
  // rendered Kamailio config calls force_tcp_alias() on TCP requests, so that
  // connection also answers for the Via's sent-by port (RFC 5923-style reuse).
  // edged recognises requests from the core only on its core link (Inbound::from_core).
  reuse_edge_connection,
  // The harness's Kamailio config as it is: Kamailio opens a connection of its own to 127.0.0.1:5060.
  stock,
};

class EdgeTest : public ::testing::Test {
 protected:
  // Tests override these to configure edged and the core before SetUp starts them.
  virtual EdgedOptions edged_options() { return {}; }
  virtual CoreRouting core_routing() { return CoreRouting::reuse_edge_connection; }

  void SetUp() override;
  void TearDown() override;

  TestUa& ua(const std::string& user);
  ConnectOptions connect_options() const;  // TLS/WSS: the edge's self-signed certificate is not verified
  // Connects the UA to the edge over t and registers it (outbound, Supported: path);
  // returns the final response (the test checks it).
  SipMessage register_through_edge(TestUa& u, Transport t);

  // A call from `caller` to `callee` (registered through the edge) via the core:
  // INVITE -> callee's flow, 200, ACK. Returns the dialogs (caller's, callee's).
  struct Call {
    SipMessage invite_sent;      // as the caller sent it
    SipMessage invite_received;  // as it arrived on the callee's flow
    Dialog caller;
    Dialog callee;
  };
  Call call(TestUa& caller, TestUa& callee);

  // Polls edged's status (SIGUSR1) until pred holds; bounded.
  bool wait_status(const std::function<bool(const EdgedStatus&)>& pred,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

  std::unique_ptr<TempDir> core_template_dir_;
  std::unique_ptr<KamailioProcess> core_;
  std::unique_ptr<EdgedProcess> edge_;
  std::vector<std::unique_ptr<TestUa>> uas_;
  FailureDump dump_;
};

}  // namespace edge::test
