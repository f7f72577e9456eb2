// edged's configuration file (key = value lines) and its translation into the libraries' structs.
#pragma once

#include <edge/hsm/hsm.h>
#include <edge/net/proxy/config.h>
#include <edge/net/token/hsm_work.h>
#include <edge/net/token/token_codec.h>
#include <edge/net/transport/config.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace edge::firmware {

// A configuration problem: what, where ("edged.conf:12: listen: unknown transport 'tcpx'").
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct EdgedConfig {
  std::filesystem::path state_dir;

  // HSM
  bool lab_hsm = true;  // hsm.module = softhsm-lab
  std::string hsm_module;
  // hsm.allow_software_token: production mode accepts a SoftHSM module (by
  // path or by what the module and token report); logged loudly at start.
  bool allow_software_token = false;
  std::string hsm_token = "edge-lab";
  std::string hsm_token_uri;
  hsm::PinSource pin{hsm::PinSource::Kind::file, "hsm/user-pin"};
  // HSM work off the SIP workers: budgets and bound (hsm.work.*, hsm.budget.*);
  // hsm_work.threads 0 until hsm_work_threads() resolves it against the pool.
  flow::HsmWorkConfig hsm_work{.threads = 0};
  std::size_t negative_cache_entries = 4096;             // hsm.negative_cache.entries
  std::chrono::milliseconds negative_cache_ttl{30'000};  // hsm.negative_cache.ttl_ms
  // hsm.keyset_refresh_ms: the key-set view is re-read this often (0: only
  // after the agent's rotate / retire / destroy).
  std::chrono::milliseconds keyset_refresh{30'000};

  // SIP
  std::string key_set = "sipflow";  // empty: flow-token security off
  std::uint32_t key_version = 0;    // the version that mints; 0: the newest active one
  std::vector<net::ListenerConfig> listeners;
  std::vector<std::string> proxy_trusted_sources;  // CIDR ranges; net validates them
  std::vector<net::AdvertisedAddress> advertise;   // empty: derived from listeners
  net::CoreConfig core;
  net::TlsConfig tls;
  std::uint32_t flow_timer = 30;
  // Path for a REGISTER without "Supported: path" too (net::ProxyConfig).
  bool path_without_supported = true;
  bool require_path = false;
  // RFC 5626 §5.3: a request from a client with a valid token of another flow is
  // forwarded over that flow (true) or to the core (false, the default: the core's
  // policy stays on every client-to-client path; the core itself is recognised by
  // its address on any socket).
  bool client_to_client_direct = false;
  unsigned workers = 0;
  // sip.freebind: listeners bind addresses this host does not hold yet (IP_FREEBIND; a VRRP address).
  bool freebind = false;
  net::TransportLimits limits;

  std::string log_level = "info";

  // Why this configuration's core link would not authenticate the core (a TLS
  // core with neither tls.ca nor core.tls_pin_sha256); empty when it would, or
  // when the core link is not TLS. edged --production refuses to start then.
  std::string unverified_core_link() const;

  net::TransportConfig transport_config() const;
  net::ProxyConfig proxy_config() const;
  hsm::HsmConfig hsm_config() const;
  // hsm.work.threads, or when 0 the HSM's session pool less two (kept for the
  // management agent and the recovery thread), at least one.
  unsigned hsm_work_threads() const;
  // The token codec settings of this configuration (the failed-token cache).
  flow::TokenCodecConfig codec_config() const;
};

// Parses `path`; relative paths inside are resolved against state_dir.
// Throws ConfigError naming the file, the line and the problem.
EdgedConfig load_config(const std::filesystem::path& path, const std::filesystem::path& state_dir);
// The same for text; `origin` names it in errors ("generation 7:12: listen: ...").
// Keys under "mgmt." belong to the management agent and are skipped here.
EdgedConfig parse_config_text(const std::string& text, const std::string& origin,
                              const std::filesystem::path& state_dir);

// "sip:127.0.0.1:5080;transport=tcp" -> CoreConfig (IP literals only: the edge never resolves).
net::CoreConfig parse_core_uri(const std::string& uri);
// The `core` value: one URI as above, or a comma-separated list of them, each
// with optional ;priority=N (0..65535, lower first; default: its position) and
// ;weight=N (1..65535, default 1). Throws ConfigError naming the entry.
net::CoreConfig parse_core_list(const std::string& value);

}  // namespace edge::firmware
