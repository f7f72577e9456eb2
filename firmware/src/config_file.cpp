// Parses edged.conf text and builds the TransportConfig / ProxyConfig / HsmConfig of the daemon.
#include "config_file.h"

#include <edge/hsm/lab.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

namespace edge::firmware {
namespace {

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

template <class T>
T number(const std::string& v, T min, T max, const std::string& what) {
  T out{};
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out < min || out > max) {
    throw ConfigError(what + ": expected a number in " + std::to_string(min) + ".." + std::to_string(max) +
                      ", got '" + v + "'");
  }
  return out;
}

bool boolean(const std::string& v, const std::string& what) {
  if (v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  throw ConfigError(what + ": expected true or false, got '" + v + "'");
}

flow::Transport transport(const std::string& v, const std::string& what) {
  static const std::pair<const char*, flow::Transport> names[] = {{"udp", flow::Transport::udp},
                                                                  {"tcp", flow::Transport::tcp},
                                                                  {"tls", flow::Transport::tls},
                                                                  {"ws", flow::Transport::ws},
                                                                  {"wss", flow::Transport::wss}};
  for (const auto& [name, t] : names) {
    if (v == name) return t;
  }
  throw ConfigError(what + ": unknown transport '" + v + "' (udp, tcp, tls, ws, wss)");
}

std::string resolve(const std::filesystem::path& state_dir, const std::string& p) {
  if (p.empty()) return p;
  const std::filesystem::path path(p);
  return path.is_absolute() ? p : (state_dir / path).string();
}

}  // namespace

net::CoreConfig parse_core_uri(const std::string& uri) {
  net::CoreConfig core;
  core.enabled = true;
  std::string rest;
  if (uri.rfind("sip:", 0) == 0) {
    rest = uri.substr(4);
  } else if (uri.rfind("sips:", 0) == 0) {
    rest = uri.substr(5);
    core.transport = flow::Transport::tls;
  } else {
    throw ConfigError("core: expected a sip: or sips: URI, got '" + uri + "'");
  }
  std::string params;
  if (const auto semi = rest.find(';'); semi != std::string::npos) {
    params = rest.substr(semi + 1);
    rest.resize(semi);
  }
  std::string host, port = "5060";
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string::npos) throw ConfigError("core: unterminated IPv6 reference in '" + uri + "'");
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') throw ConfigError("core: bad host:port in '" + uri + "'");
      port = rest.substr(close + 2);
    }
  } else {
    const auto colon = rest.find(':');
    host = rest.substr(0, colon);
    if (colon != std::string::npos) port = rest.substr(colon + 1);
  }
  if (!flow::Endpoint::parse(host, 0)) {
    throw ConfigError("core: '" + host + "' is not an IP address (the edge never resolves names)");
  }
  core.address = host;
  core.port = number<std::uint16_t>(port, 1, 65535, "core port");
  std::istringstream ps(params);
  for (std::string p; std::getline(ps, p, ';');) {
    if (p.rfind("transport=", 0) == 0) {
      core.transport = transport(p.substr(10), "core transport");
      if (core.transport == flow::Transport::ws || core.transport == flow::Transport::wss) {
        throw ConfigError("core: transport must be udp, tcp or tls");
      }
    }
  }
  return core;
}

// "URI[;priority=N][;weight=N], URI..." (docs/operations.md, "Several cores").
// One URI: the single core, as before. An entry without priority= gets its
// position (1, 2, ...): the list is an order of preference.
net::CoreConfig parse_core_list(const std::string& value) {
  std::vector<std::string> entries;
  {
    std::istringstream in(value);
    for (std::string e; std::getline(in, e, ',');) entries.push_back(trim(e));
  }
  if (entries.empty()) throw ConfigError("core: empty");
  net::CoreConfig out;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::string& e = entries[i];
    const std::string which =
        entries.size() > 1 ? "core entry " + std::to_string(i + 1) + " ('" + e + "')" : "core";
    if (e.empty()) throw ConfigError(which + ": empty entry in the core list (a stray comma?)");
    net::CoreConfig one;
    try {
      one = parse_core_uri(e);
    } catch (const ConfigError& err) {
      throw ConfigError(entries.size() > 1 ? which + ": " + err.what() : std::string(err.what()));
    }
    net::CoreTarget t;
    t.transport = one.transport;
    t.address = one.address;
    t.port = one.port;
    t.priority = static_cast<std::uint32_t>(i + 1);
    std::istringstream ps(e.find(';') == std::string::npos ? std::string() : e.substr(e.find(';') + 1));
    for (std::string p; std::getline(ps, p, ';');) {
      if (p.rfind("priority=", 0) == 0)
        t.priority = number<std::uint32_t>(p.substr(9), 0, 65535, which + ": priority");
      if (p.rfind("weight=", 0) == 0)
        t.weight = number<std::uint32_t>(p.substr(7), 1, 65535, which + ": weight");
    }
    if (i == 0) {
      out = one;
    } else {
      // Beside a UDP first core, TCP/TLS cores may come: requests above 1300 bytes
      // go to them (RFC 3261 §18.1.1), the Via's transport rewritten to theirs.
      if (t.transport != out.transport && out.transport != flow::Transport::udp) {
        throw ConfigError(which + ": transport " + lower(flow::to_string(t.transport)) +
                          " differs from the first core's (" + lower(flow::to_string(out.transport)) +
                          "); every core must use the same transport (the Via, Path and Record-Route the "
                          "edge adds toward the core name one), except TCP or TLS cores beside a UDP "
                          "first core");
      }
      for (const auto& prev : out.targets) {
        if (prev.address == t.address && prev.port == t.port && prev.transport == t.transport) {
          throw ConfigError(which + ": " + t.address + ":" + std::to_string(t.port) + " is listed twice");
        }
      }
    }
    out.targets.push_back(t);
  }
  if (out.targets.size() == 1 && out.targets[0].weight == 1 && out.targets[0].priority == 1)
    out.targets.clear();
  return out;
}

EdgedConfig load_config(const std::filesystem::path& path, const std::filesystem::path& state_dir) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read configuration file " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  return parse_config_text(text.str(), path.filename().string(), state_dir);
}

EdgedConfig parse_config_text(const std::string& text, const std::string& origin,
                              const std::filesystem::path& state_dir) {
  std::istringstream in(text);
  EdgedConfig c;
  c.state_dir = state_dir;
  c.core.enabled = false;
  // The core's TLS identity, applied once the core URI is known (any line order).
  std::string core_tls_server_name, core_tls_pin_sha256;
  // The core link's watch, applied once the core URI is known too.
  const net::CoreConfig core_defaults;
  std::chrono::milliseconds core_keepalive_interval = core_defaults.keepalive_interval;
  std::chrono::milliseconds core_keepalive_timeout = core_defaults.keepalive_timeout;
  std::chrono::milliseconds core_max_queue_age = core_defaults.max_queue_age;
  // core.health_*: the property defaults (mgmt/src/properties.cpp), not net's (off).
  std::chrono::milliseconds core_health_interval{2'000};
  unsigned core_health_failures = 3;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = origin + ":" + std::to_string(lineno);
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    const auto eq = t.find('=');
    if (eq == std::string::npos) throw ConfigError(where + ": expected 'key = value'");
    const std::string key = trim(t.substr(0, eq));
    const std::string value = trim(t.substr(eq + 1));
    const std::string what = std::string(where).append(": ").append(key);
    try {
      if (key == "hsm.module") {
        c.lab_hsm = value == "softhsm-lab";
        c.hsm_module = c.lab_hsm ? "" : value;
      } else if (key == "hsm.allow_software_token") {
        c.allow_software_token = boolean(value, what);
      } else if (key == "hsm.token") {
        c.hsm_token = value;
      } else if (key == "hsm.token_uri") {
        c.hsm_token_uri = value;
      } else if (key == "hsm.pin_file" || key == "hsm.pin_env") {
        // One of the two names the PIN's source; the other is written empty.
        if (!value.empty())
          c.pin = {key == "hsm.pin_file" ? hsm::PinSource::Kind::file : hsm::PinSource::Kind::env, value};
      } else if (key == "hsm.work.threads") {
        c.hsm_work.threads = number<unsigned>(value, 0, 64, what);
      } else if (key == "hsm.work.max_queued") {
        c.hsm_work.max_queued = number<std::size_t>(value, 1, 1'000'000, what);
      } else if (key == "hsm.budget.verify_per_second") {
        c.hsm_work.verify_per_second = number<std::uint32_t>(value, 0, 1'000'000, what);
      } else if (key == "hsm.budget.verify_burst") {
        c.hsm_work.verify_burst = number<std::uint32_t>(value, 1, 1'000'000, what);
      } else if (key == "hsm.budget.mint_per_second") {
        c.hsm_work.mint_per_second = number<std::uint32_t>(value, 0, 1'000'000, what);
      } else if (key == "hsm.budget.mint_burst") {
        c.hsm_work.mint_burst = number<std::uint32_t>(value, 1, 1'000'000, what);
      } else if (key == "hsm.negative_cache.entries") {
        c.negative_cache_entries = number<std::size_t>(value, 0, 1 << 20, what);
      } else if (key == "hsm.negative_cache.ttl_ms") {
        c.negative_cache_ttl = std::chrono::milliseconds(number<std::int64_t>(value, 0, 3'600'000, what));
      } else if (key == "hsm.keyset_refresh_ms") {
        c.keyset_refresh = std::chrono::milliseconds(number<std::int64_t>(value, 0, 3'600'000, what));
      } else if (key == "sip.flow_token.key_set" || key == "com.ibm.ws.sip.key.set") {
        if (!value.empty() && !hsm::valid_key_set_name(value)) {
          throw ConfigError(std::string(what).append(": invalid key set name '").append(value).append("'"));
        }
        c.key_set = value;
      } else if (key == "sip.flow_token.key_version") {
        c.key_version = number<std::uint32_t>(value, 0, 0xffffffu, what);
      } else if (key.rfind("mgmt.", 0) == 0 || key.rfind("metrics.", 0) == 0 || key.rfind("cell.", 0) == 0) {
        // The management agent's, the metrics endpoint's and the cell's own settings:
        // the registry validated them; mgmt/ and the daemon use them.
      } else if (key == "listen" || key == "advertise") {
        const auto w = words(value);
        // listen = TRANSPORT ADDRESS PORT [proxy]: "proxy" takes PROXY protocol headers from
        // proxy_protocol.trusted_sources (docs/operations.md, "Behind a load balancer").
        const bool proxy = key == "listen" && w.size() == 4 && w[3] == "proxy";
        if (w.size() != 3 && !proxy) {
          throw ConfigError(what + (key == "listen" ? ": expected 'TRANSPORT ADDRESS PORT [proxy]'"
                                                    : ": expected 'TRANSPORT ADDRESS PORT'"));
        }
        const auto tr = transport(w[0], what);
        const auto port = number<std::uint16_t>(w[2], key == "listen" ? 0 : 1, 65535, what + " port");
        if (key == "listen") {
          if (!flow::Endpoint::parse(w[1], port))
            throw ConfigError(what + ": '" + w[1] + "' is not an IP address");
          c.listeners.push_back({tr, w[1], port, proxy});
        } else {
          c.advertise.push_back({tr, w[1], port});
        }
      } else if (key == "proxy_protocol.trusted_sources") {
        c.proxy_trusted_sources.clear();
        std::istringstream list(value);
        for (std::string entry; std::getline(list, entry, ';');) {
          if (const std::string e = trim(entry); !e.empty()) c.proxy_trusted_sources.push_back(e);
        }
      } else if (key == "core") {
        c.core = parse_core_list(value);
      } else if (key == "core.tls_server_name") {
        core_tls_server_name = value;
      } else if (key == "core.tls_pin_sha256") {
        core_tls_pin_sha256 = value;
      } else if (key == "core.keepalive_interval_ms") {
        core_keepalive_interval = std::chrono::milliseconds(number<std::int64_t>(value, 0, 3'600'000, what));
      } else if (key == "core.keepalive_timeout_ms") {
        core_keepalive_timeout = std::chrono::milliseconds(number<std::int64_t>(value, 100, 600'000, what));
      } else if (key == "core.health_interval_ms") {
        core_health_interval = std::chrono::milliseconds(number<std::int64_t>(value, 0, 3'600'000, what));
      } else if (key == "core.health_failures") {
        core_health_failures = number<unsigned>(value, 1, 100, what);
      } else if (key == "core.max_queue_age_ms") {
        core_max_queue_age = std::chrono::milliseconds(number<std::int64_t>(value, 100, 600'000, what));
      } else if (key == "tls.certificate") {
        c.tls.certificate_chain_file = value;
      } else if (key == "tls.private_key") {
        c.tls.private_key_file = value;
      } else if (key == "tls.ca") {
        c.tls.ca_file = value;
      } else if (key == "tls.client_certs") {
        if (value == "none")
          c.tls.client_certs = net::ClientCertPolicy::none;
        else if (value == "optional")
          c.tls.client_certs = net::ClientCertPolicy::optional;
        else if (value == "required")
          c.tls.client_certs = net::ClientCertPolicy::required;
        else
          throw ConfigError(what + ": expected none, optional or required");
      } else if (key == "sip.flow_timer") {
        c.flow_timer = number<std::uint32_t>(value, 1, 3600, what);
      } else if (key == "sip.path_without_supported") {
        c.path_without_supported = boolean(value, what);
      } else if (key == "sip.require_path") {
        c.require_path = boolean(value, what);
      } else if (key == "sip.client_to_client_direct") {
        c.client_to_client_direct = boolean(value, what);
      } else if (key == "sip.freebind") {
        c.freebind = boolean(value, what);
      } else if (key == "sip.workers") {
        c.workers = number<unsigned>(value, 0, 256, what);
      } else if (key == "limits.max_connections") {
        c.limits.max_connections = number<std::size_t>(value, 1, 10'000'000, what);
      } else if (key == "limits.max_per_source_address") {
        c.limits.max_per_source_address = number<std::size_t>(value, 1, 10'000'000, what);
      } else if (key == "limits.max_udp_flows") {
        c.limits.max_udp_flows = number<std::size_t>(value, 1, 10'000'000, what);
      } else if (key == "limits.max_message_size") {
        c.limits.max_message_size = number<std::size_t>(value, 1024, 1 << 20, what);
      } else if (key == "limits.idle_timeout_ms") {
        c.limits.idle_timeout = std::chrono::milliseconds(number<std::int64_t>(value, 100, 86'400'000, what));
      } else if (key == "limits.unregistered_connection_lifetime_ms") {
        c.limits.unregistered_connection_lifetime =
            std::chrono::milliseconds(number<std::int64_t>(value, 0, 86'400'000, what));
      } else if (key == "limits.flow_timeout_grace_ms") {
        c.limits.flow_timeout_grace =
            std::chrono::milliseconds(number<std::int64_t>(value, 0, 3'600'000, what));
      } else if (key == "limits.header_read_timeout_ms") {
        c.limits.header_read_timeout =
            std::chrono::milliseconds(number<std::int64_t>(value, 100, 600'000, what));
      } else if (key == "limits.body_read_timeout_ms") {
        c.limits.body_read_timeout =
            std::chrono::milliseconds(number<std::int64_t>(value, 100, 600'000, what));
      } else if (key == "log.level") {
        if (value != "debug" && value != "info" && value != "warn" && value != "error") {
          throw ConfigError(what + ": expected debug, info, warn or error");
        }
        c.log_level = value;
      } else {
        throw ConfigError(what + ": unknown key");
      }
    } catch (const ConfigError&) {
      throw;
    } catch (const std::exception& e) {
      throw ConfigError(what + ": " + e.what());
    }
  }
  if (c.listeners.empty()) throw ConfigError(origin + ": no listen line");
  if (!c.core.enabled) throw ConfigError(origin + ": no core next hop (core = sip:IP:PORT;transport=tcp)");
  c.core.tls_server_name = core_tls_server_name;
  c.core.tls_pin_sha256 = core_tls_pin_sha256;
  c.core.keepalive_interval = core_keepalive_interval;
  c.core.keepalive_timeout = core_keepalive_timeout;
  c.core.max_queue_age = core_max_queue_age;
  c.core.health_interval = core_health_interval;
  c.core.health_failures = core_health_failures;
  c.tls.certificate_chain_file = resolve(state_dir, c.tls.certificate_chain_file);
  c.tls.private_key_file = resolve(state_dir, c.tls.private_key_file);
  c.tls.ca_file = resolve(state_dir, c.tls.ca_file);
  if (c.pin.kind == hsm::PinSource::Kind::file) c.pin.location = resolve(state_dir, c.pin.location);
  return c;
}

std::string EdgedConfig::unverified_core_link() const {
  if (core.transport != flow::Transport::tls || !tls.ca_file.empty() || !core.tls_pin_sha256.empty())
    return {};
  return "the TLS link to the core is not authenticated: set tls.ca (the core's certificate is then checked "
         "against it and core.tls_server_name) or core.tls_pin_sha256";
}

net::TransportConfig EdgedConfig::transport_config() const {
  net::TransportConfig t;
  t.listeners = listeners;
  t.tls = tls;
  t.core = core;
  t.limits = limits;
  t.workers = workers;
  t.freebind = freebind;
  t.proxy_trusted_sources = proxy_trusted_sources;
  return t;
}

net::ProxyConfig EdgedConfig::proxy_config() const {
  net::ProxyConfig p;
  if (!advertise.empty()) {
    p.client_side = advertise;
  } else {
    for (const auto& l : listeners) p.client_side.push_back({l.transport, l.address, l.port});
  }
  // The core reaches us on our listener of the core link's transport.
  p.core_side = {core.transport, {}, 0};
  for (const auto& a : p.client_side) {
    if (a.transport == core.transport) {
      p.core_side = a;
      break;
    }
  }
  if (p.core_side.host.empty()) {
    throw ConfigError("no listener of the core's transport (" + std::string(flow::to_string(core.transport)) +
                      ") for the core to reach the edge on");
  }
  // Where the core itself sends from: its own connections to our listeners are recognised by it.
  if (core.enabled) {
    p.core_address = {core.transport, core.address, core.port};
    for (std::size_t i = 1; i < core.targets.size(); ++i) {
      p.other_core_addresses.push_back({core.transport, core.targets[i].address, core.targets[i].port});
    }
  }
  // What the core link carries (513 above it): its framer's limit, and a datagram's on UDP.
  p.limits.max_core_message_size = core.transport == flow::Transport::udp
                                       ? std::min(limits.max_message_size, net::ProxyLimits::kMaxUdpPayload)
                                       : limits.max_message_size;
  p.flow_timer_seconds = flow_timer;
  p.path_without_supported = path_without_supported;
  p.require_path = require_path;
  p.client_to_client_direct = client_to_client_direct;
  p.flow_token_security = !key_set.empty();
  p.key_set = key_set;
  return p;
}

hsm::HsmConfig EdgedConfig::hsm_config() const {
  hsm::HsmConfig h = lab_hsm ? hsm::lab_hsm_config(state_dir, hsm_token) : hsm::HsmConfig{};
  if (!lab_hsm) h.module_path = hsm_module;
  h.token.label = hsm_token;
  h.token.uri = hsm_token_uri;
  h.pin = pin;
  // The MAC calls come from SIP workers: a rebuild or a lost login must never
  // stall one (they answer unavailable, 503, while the HSM's thread recovers).
  h.background_recovery = true;
  return h;
}

unsigned EdgedConfig::hsm_work_threads() const {
  if (hsm_work.threads != 0) return hsm_work.threads;
  const std::size_t sessions = hsm_config().max_sessions;
  return static_cast<unsigned>(sessions > 3 ? sessions - 2 : 1);
}

flow::TokenCodecConfig EdgedConfig::codec_config() const {
  flow::TokenCodecConfig t;
  t.failed_cache_capacity = negative_cache_entries;
  t.failed_cache_ttl = negative_cache_ttl;
  return t;
}

}  // namespace edge::firmware
