// A real outbound SIP client (baresip 1.0), configured, started and stopped by a test.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "edge/test/sip/message.h"
#include "edge/test/sip/process.h"
#include "edge/test/sip/transport.h"

namespace edge::test {

struct BaresipOptions {
  std::string user = "alice";
  std::string domain = "127.0.0.1";  // AOR domain (never resolved: the outbound proxy is numeric)
  Endpoint outbound;  // where it registers and sends everything (the core today, the edge later)
  Transport transport = Transport::tcp;  // udp, tcp or tls
  std::string instance_uuid;             // empty: random
  // true: an RFC 5626 client (sipnat=outbound, the uuid module: +sip.instance,
  // reg-id=1, Supported: gruu, outbound, path). false: a plain RFC 3261 phone, the
  // outbound proxy only a pre-loaded Route: no +sip.instance, no reg-id, no
  // Supported header at all (what baresip 1.0 sends without them).
  bool sip_outbound = true;
  int regint = 60;  // registration interval, seconds
  std::string answermode = "auto";
  std::filesystem::path ca_file;                  // TLS: CA to verify the outbound proxy (sip_cafile)
  std::vector<std::string> extra_account_params;  // appended to the account line
  // -t: baresip quits by itself after this long, a last resort behind ChildProcess.
  std::chrono::seconds lifetime{60};
};

// One SIP message from baresip's -s trace: "TCP 127.0.0.1:a -> 127.0.0.1:b" + the message.
struct SipTraceEntry {
  std::string transport;  // as printed: "TCP", "UDP", "TLS"
  Endpoint source;
  Endpoint destination;
  SipMessage message;
};

// Writes a config dir (config, accounts, uuid without trailing newline), runs
//   baresip -f DIR -n 127.0.0.1 -t LIFETIME -s
// with stdin on /dev/null and stdout+stderr in a log, and lets a test wait for
// output or for traced SIP messages. Modules: g711 (codecs), aubridge (audio
// source/player that needs no device), uuid (temporary, reads DIR/uuid),
// account, menu (auto answer); no stdio (no terminal).
class BaresipProcess {
 public:
  explicit BaresipProcess(BaresipOptions options);
  ~BaresipProcess();
  BaresipProcess(const BaresipProcess&) = delete;
  BaresipProcess& operator=(const BaresipProcess&) = delete;

  const BaresipOptions& options() const { return options_; }
  std::string instance_urn() const;  // "urn:uuid:<instance_uuid>"
  std::string aor() const;           // "sip:alice@127.0.0.1"
  const std::filesystem::path& config_dir() const;
  const std::filesystem::path& log_file() const;
  std::string output() const;

  // True once the output contains needle (polls the log; bounded).
  bool wait_for_output(std::string_view needle, std::chrono::milliseconds timeout);
  // Every traced SIP message so far, in order.
  std::vector<SipTraceEntry> sip_trace() const;
  // The first traced message (from the start) satisfying pred; nullopt on timeout.
  std::optional<SipTraceEntry> wait_for_trace(const std::function<bool(const SipTraceEntry&)>& pred,
                                              std::chrono::milliseconds timeout);
  // Waits for a 2xx to REGISTER (with a non-zero expiry) in the trace.
  std::optional<SipTraceEntry> wait_registered(std::chrono::milliseconds timeout);

  bool running();
  void stop();

 private:
  BaresipOptions options_;
  std::unique_ptr<TempDir> dir_;
  std::filesystem::path config_dir_;
  std::unique_ptr<ChildProcess> process_;
};

// Parses baresip's -s trace output (exposed for the harness's own unit test).
std::vector<SipTraceEntry> parse_baresip_trace(std::string_view output);

}  // namespace edge::test
