// The property registry: every edged.conf key as a typed, validated accessor of ApplianceConfig.
#include <arpa/inet.h>
#include <edge/hsm/cell_keys.h>
#include <edge/hsm/keyset.h>
#include <edge/mgmt/error.h>
#include <edge/mgmt/properties.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <sstream>
#include <utility>

namespace edge::mgmt {
namespace {

using v1::ApplianceConfig;
using Getter = std::function<std::string(const ApplianceConfig&)>;
using Setter = std::function<void(ApplianceConfig&, std::string_view)>;

[[noreturn]] void refuse(std::string_view name, const std::string& reason) {
  throw MgmtError(ErrorCode::invalid_argument, std::string(name) + ": " + reason);
}

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    const auto p = s.find(sep);
    const auto part = trim(s.substr(0, p));
    if (!part.empty()) out.push_back(part);
    if (p == std::string_view::npos) return out;
    s.remove_prefix(p + 1);
  }
}

std::vector<std::string> words(std::string_view s) {
  std::istringstream in{std::string(s)};
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::optional<std::uint64_t> to_uint(std::string_view v) {
  std::uint64_t out = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return out;
}

std::uint64_t checked_uint(std::string_view name, std::string_view v, std::uint64_t min, std::uint64_t max) {
  const auto n = to_uint(v);
  if (!n) refuse(name, "'" + std::string(v) + "' is not an unsigned integer");
  if (*n < min || *n > max) {
    refuse(name, std::string(v) + " is out of range " + std::to_string(min) + ".." + std::to_string(max));
  }
  return *n;
}

std::optional<bool> to_bool(std::string_view v) {
  if (v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  return std::nullopt;
}

constexpr std::array<std::pair<const char*, v1::Transport>, 5> kTransports{{{"udp", v1::TRANSPORT_UDP},
                                                                            {"tcp", v1::TRANSPORT_TCP},
                                                                            {"tls", v1::TRANSPORT_TLS},
                                                                            {"ws", v1::TRANSPORT_WS},
                                                                            {"wss", v1::TRANSPORT_WSS}}};

v1::Transport transport_of(std::string_view name, std::string_view v) {
  for (const auto& [text, t] : kTransports) {
    if (v == text) return t;
  }
  refuse(name, "unknown transport '" + std::string(v) + "' (expected udp, tcp, tls, ws or wss)");
}

const char* transport_name(v1::Transport t) {
  for (const auto& [text, tr] : kTransports) {
    if (t == tr) return text;
  }
  return "unspecified";
}

bool ip_literal(const std::string& a) {
  unsigned char buf[16];
  return inet_pton(AF_INET, a.c_str(), buf) == 1 || inet_pton(AF_INET6, a.c_str(), buf) == 1;
}

// One "TRANSPORT ADDRESS PORT" entry of listen / advertise; a listener may add "proxy".
struct Endpoint {
  v1::Transport transport;
  std::string host;
  std::uint32_t port;
  bool proxy = false;
};

Endpoint parse_endpoint(std::string_view name, std::string_view entry, bool listener) {
  const auto w = words(entry);
  const bool proxy = listener && w.size() == 4 && w[3] == "proxy";
  if (w.size() != 3 && !proxy) {
    refuse(name, std::string(listener ? "expected 'TRANSPORT ADDRESS PORT [proxy]', got '"
                                      : "expected 'TRANSPORT ADDRESS PORT', got '") +
                     std::string(entry) + "'");
  }
  Endpoint e{transport_of(name, w[0]), w[1], 0, proxy};
  if (proxy && e.transport == v1::TRANSPORT_UDP) refuse(name, "proxy is for tcp, tls, ws and wss listeners");
  if (listener && !ip_literal(w[1])) refuse(name, "'" + w[1] + "' is not an IP address");
  e.port =
      static_cast<std::uint32_t>(checked_uint(std::string(name) + " port", w[2], listener ? 0 : 1, 65535));
  return e;
}

void add_listeners(ApplianceConfig& c, std::string_view value) {
  for (const auto entry : split(value, ';')) {
    const Endpoint e = parse_endpoint("listen", entry, true);
    auto* l = c.mutable_sip()->add_listeners();
    l->set_transport(e.transport);
    l->set_address(e.host);
    l->set_port(e.port);
    l->set_proxy_protocol(e.proxy);
  }
}

// "10.0.0.0/8", "2001:db8::/32" or one address.
bool address_range(std::string_view entry) {
  const auto slash = entry.find('/');
  const std::string addr(entry.substr(0, slash));
  unsigned char buf[16];
  const bool v4 = inet_pton(AF_INET, addr.c_str(), buf) == 1;
  if (!v4 && inet_pton(AF_INET6, addr.c_str(), buf) != 1) return false;
  if (slash == std::string_view::npos) return true;
  const auto bits = to_uint(entry.substr(slash + 1));
  return bits && *bits <= (v4 ? 32u : 128u);
}

void add_advertise(ApplianceConfig& c, std::string_view value) {
  for (const auto entry : split(value, ';')) {
    const Endpoint e = parse_endpoint("advertise", entry, false);
    auto* a = c.mutable_sip()->add_advertise();
    a->set_transport(e.transport);
    a->set_host(e.host);
    a->set_port(e.port);
  }
}

template <class Range, class Render>
std::string join_list(const Range& r, Render render) {
  std::string out;
  for (const auto& x : r) {
    if (!out.empty()) out += "; ";
    out += render(x);
  }
  return out;
}

std::string endpoint_text(v1::Transport t, const std::string& host, std::uint32_t port) {
  return std::string(transport_name(t)) + " " + host + " " + std::to_string(port);
}

std::string listener_text(const v1::Listener& l) {
  return endpoint_text(l.transport(), l.address(), l.port()) + (l.proxy_protocol() ? " proxy" : "");
}

const char* role_name(v1::Role r) { return r == v1::ROLE_VIEWER ? "viewer" : "operator"; }

// One mgmt.tls.roles entry as written: "uri:<URI>=role", "dns:<name>=role" or "cn:<CN>=role".
std::string role_entry_text(const v1::CertificateRole& r) {
  std::string who = !r.uri().empty()        ? "uri:" + r.uri()
                    : !r.dns_name().empty() ? "dns:" + r.dns_name()
                                            : "cn:" + r.common_name();
  return who + "=" + role_name(r.role());
}

void set_roles(ApplianceConfig& c, std::string_view value) {
  auto* roles = c.mutable_mgmt()->mutable_roles();
  roles->Clear();
  constexpr const char* kShape = "expected 'uri:<URI>=<role>', 'dns:<name>=<role>' or 'cn:<CN>=<role>'";
  for (const auto entry : split(value, ';')) {
    // A URI or CN may itself hold '=', the role never does.
    const auto eq = entry.rfind('=');
    const auto colon = entry.find(':');
    if (eq == std::string_view::npos || colon == std::string_view::npos || colon > eq) {
      refuse("mgmt.tls.roles", std::string(kShape) + ", got '" + std::string(entry) + "'");
    }
    const auto kind = trim(entry.substr(0, colon));
    const auto who = std::string(trim(entry.substr(colon + 1, eq - colon - 1)));
    if (who.empty()) refuse("mgmt.tls.roles", std::string(kShape) + ", got '" + std::string(entry) + "'");
    const auto role = trim(entry.substr(eq + 1));
    auto* r = roles->Add();
    if (kind == "uri") {
      r->set_uri(who);
    } else if (kind == "dns") {
      r->set_dns_name(who);
    } else if (kind == "cn") {
      r->set_common_name(who);
    } else {
      refuse("mgmt.tls.roles", "unknown kind '" + std::string(kind) + "' in '" + std::string(entry) +
                                   "' (expected uri, dns or cn)");
    }
    if (role == "viewer") {
      r->set_role(v1::ROLE_VIEWER);
    } else if (role == "operator") {
      r->set_role(v1::ROLE_OPERATOR);
    } else {
      refuse("mgmt.tls.roles", "unknown role '" + std::string(role) + "' (expected viewer or operator)");
    }
  }
}

std::string u(std::uint64_t v) { return std::to_string(v); }
std::uint64_t n(std::string_view v) { return *to_uint(v); }
std::string b(bool v) { return v ? "true" : "false"; }

struct Builder {
  std::vector<PropertyDescriptor>& out;

  PropertyDescriptor& add(std::string name, PropertyType type, std::string def, v1::RestartClass restart,
                          std::string description, Getter get, Setter set) {
    PropertyDescriptor d;
    d.name = std::move(name);
    d.type = type;
    d.default_value = std::move(def);
    d.restart = restart;
    d.description = std::move(description);
    d.get = std::move(get);
    d.set = std::move(set);
    return out.emplace_back(std::move(d));
  }
  void uint(std::string name, std::uint64_t def, std::uint64_t min, std::uint64_t max,
            v1::RestartClass restart, std::string description, Getter get, Setter set) {
    auto& d = add(std::move(name), PropertyType::uint, u(def), restart, std::move(description),
                  std::move(get), std::move(set));
    d.min = min;
    d.max = max;
  }
  void enumeration(std::string name, std::string def, std::vector<std::string> allowed,
                   v1::RestartClass restart, std::string description, Getter get, Setter set) {
    auto& d = add(std::move(name), PropertyType::enumeration, std::move(def), restart, std::move(description),
                  std::move(get), std::move(set));
    d.allowed = std::move(allowed);
  }
};

}  // namespace

const char* to_string(PropertyType t) noexcept {
  switch (t) {
    case PropertyType::string:
      return "string";
    case PropertyType::boolean:
      return "bool";
    case PropertyType::uint:
      return "uint";
    case PropertyType::enumeration:
      return "enum";
    case PropertyType::list:
      return "list";
  }
  return "unknown";
}

const PropertyRegistry& PropertyRegistry::instance() {
  static const PropertyRegistry registry;
  return registry;
}

// Ranges and defaults are those of firmware/src/config_file.cpp and of net's
// TransportLimits (copied: mgmt never includes a net header).
PropertyRegistry::PropertyRegistry() {
  using C = ApplianceConfig;
  using S = std::string_view;
  using PT = PropertyType;
  Builder p{props_};
  constexpr auto kNone = v1::RESTART_NONE;
  constexpr auto kFrontEnd = v1::RESTART_FRONT_END;
  constexpr auto kListeners = v1::RESTART_LISTENERS;
  constexpr auto kProcess = v1::RESTART_PROCESS;

  // HSM: read once at start-up, so a change waits for the next process start.
  p.add(
      "hsm.module", PT::string, "softhsm-lab", kProcess,
      "PKCS#11 module path, or softhsm-lab for the lab token", [](const C& c) { return c.hsm().module(); },
      [](C& c, S v) { c.mutable_hsm()->set_module(std::string(v)); });
  p.add(
      "hsm.allow_software_token", PT::boolean, "false", kProcess,
      "production mode accepts a software token (SoftHSM) as hsm.module; logged as a warning at start",
      [](const C& c) { return b(c.hsm().allow_software_token()); },
      [](C& c, S v) { c.mutable_hsm()->set_allow_software_token(v == "true"); });
  p.add(
      "hsm.token", PT::string, "edge-lab", kProcess, "token label",
      [](const C& c) { return c.hsm().token_label(); },
      [](C& c, S v) { c.mutable_hsm()->set_token_label(std::string(v)); });
  p.add(
      "hsm.token_uri", PT::string, "", kProcess, "RFC 7512 token URI; wins over hsm.token",
      [](const C& c) { return c.hsm().token_uri(); },
      [](C& c, S v) { c.mutable_hsm()->set_token_uri(std::string(v)); });
  // The PIN has exactly one source: naming one forgets the other.
  p.add(
      "hsm.pin_file", PT::string, "hsm/user-pin", kProcess, "file holding the user PIN (never the PIN)",
      [](const C& c) { return c.hsm().pin_file(); },
      [](C& c, S v) {
        c.mutable_hsm()->set_pin_file(std::string(v));
        if (!v.empty()) c.mutable_hsm()->clear_pin_env();
      });
  p.add(
      "hsm.pin_env", PT::string, "", kProcess, "environment variable holding the user PIN",
      [](const C& c) { return c.hsm().pin_env(); },
      [](C& c, S v) {
        c.mutable_hsm()->set_pin_env(std::string(v));
        if (!v.empty()) c.mutable_hsm()->clear_pin_file();
      });

  // HSM work off the SIP workers (docs/operations.md, "HSM admission control",
  // has the arithmetic behind the defaults). Unset fields read as the default.
  const auto work_uint = [&p](const char* name, std::uint32_t def, std::uint64_t min, std::uint64_t max,
                              v1::RestartClass restart, const char* description,
                              bool (v1::HsmWork::*has)() const, std::uint32_t (v1::HsmWork::*read)() const,
                              void (v1::HsmWork::*write)(std::uint32_t)) {
    p.uint(
        name, def, min, max, restart, description,
        [def, has, read](const C& c) { return u((c.hsm().work().*has)() ? (c.hsm().work().*read)() : def); },
        [write](C& c, S v) { (c.mutable_hsm()->mutable_work()->*write)(static_cast<std::uint32_t>(n(v))); });
  };
  using W = v1::HsmWork;
  work_uint("hsm.work.threads", 0, 0, 64, kProcess, "threads making HSM calls; 0: HSM sessions less two",
            &W::has_threads, &W::threads, &W::set_threads);
  work_uint("hsm.work.max_queued", 1024, 1, 1'000'000, kFrontEnd,
            "HSM jobs waiting at most; past it 503 (streams) or drop (UDP)", &W::has_max_queued,
            &W::max_queued, &W::set_max_queued);
  work_uint("hsm.budget.verify_per_second", 400, 0, 1'000'000, kFrontEnd,
            "cache-missing token verifies per second per source address", &W::has_verify_per_second,
            &W::verify_per_second, &W::set_verify_per_second);
  work_uint("hsm.budget.verify_burst", 1000, 1, 1'000'000, kFrontEnd,
            "cache-missing token verifies a source address may make at once", &W::has_verify_burst,
            &W::verify_burst, &W::set_verify_burst);
  work_uint("hsm.budget.mint_per_second", 200, 0, 1'000'000, kFrontEnd,
            "mints per second per source address for flows not registered", &W::has_mint_per_second,
            &W::mint_per_second, &W::set_mint_per_second);
  work_uint("hsm.budget.mint_burst", 500, 1, 1'000'000, kFrontEnd,
            "mints a source address may make at once for flows not registered", &W::has_mint_burst,
            &W::mint_burst, &W::set_mint_burst);
  work_uint("hsm.negative_cache.entries", 4096, 0, 1 << 20, kFrontEnd,
            "tokens the HSM refused, remembered; 0: off", &W::has_negative_cache_entries,
            &W::negative_cache_entries, &W::set_negative_cache_entries);
  work_uint("hsm.negative_cache.ttl_ms", 30'000, 0, 3'600'000, kFrontEnd,
            "how long a refused token is remembered", &W::has_negative_cache_ttl_ms,
            &W::negative_cache_ttl_ms, &W::set_negative_cache_ttl_ms);
  work_uint("hsm.keyset_refresh_ms", 30'000, 0, 3'600'000, kFrontEnd,
            "how often the key-set view is re-read from the HSM (checked once a second); 0: off",
            &W::has_keyset_refresh_ms, &W::keyset_refresh_ms, &W::set_keyset_refresh_ms);

  p.add(
       "sip.flow_token.key_set", PT::string, "", kFrontEnd,
       "key set of flow-token security; empty: flow-token security off",
       [](const C& c) { return c.sip().flow_token().key_set(); },
       [](C& c, S v) {
         if (!v.empty() && !hsm::valid_key_set_name(v)) {
           refuse("sip.flow_token.key_set",
                  "invalid key set name '" + std::string(v) + "' (1..64 characters of A-Z a-z 0-9 . _ -)");
         }
         c.mutable_sip()->mutable_flow_token()->set_key_set(std::string(v));
       })
      .aliases = {"com.ibm.ws.sip.key.set"};
  p.uint(
      "sip.flow_token.key_version", 0, 0, 0xffffff, kFrontEnd,
      "key version that mints flow tokens; 0: the newest active one",
      [](const C& c) { return u(c.sip().flow_token().key_version()); },
      [](C& c, S v) {
        c.mutable_sip()->mutable_flow_token()->set_key_version(static_cast<std::uint32_t>(n(v)));
      });

  p.add(
      "listen", PT::list, "", kListeners,
      "listeners: 'TRANSPORT ADDRESS PORT [proxy]' entries separated by ';' (proxy: behind a load balancer)",
      [](const C& c) { return join_list(c.sip().listeners(), listener_text); },
      [](C& c, S v) {
        c.mutable_sip()->clear_listeners();
        add_listeners(c, v);
      });
  p.add(
      "advertise", PT::list, "", kFrontEnd,
      "addresses put in Path / Record-Route: 'TRANSPORT HOST PORT' entries separated by ';'",
      [](const C& c) {
        return join_list(c.sip().advertise(), [](const v1::AdvertisedAddress& a) {
          return endpoint_text(a.transport(), a.host(), a.port());
        });
      },
      [](C& c, S v) {
        c.mutable_sip()->clear_advertise();
        add_advertise(c, v);
      });
  p.add(
      "proxy_protocol.trusted_sources", PT::list, "", kListeners,
      "load balancers whose PROXY protocol headers proxy listeners believe: address ranges separated by ';'",
      [](const C& c) {
        return join_list(c.sip().proxy_trusted_sources(), [](const std::string& s) { return s; });
      },
      [](C& c, S v) {
        const auto entries = split(v, ';');
        for (const auto e : entries) {
          if (!address_range(e))
            refuse("proxy_protocol.trusted_sources", "'" + std::string(e) + "' is not an address range");
        }
        c.mutable_sip()->clear_proxy_trusted_sources();
        for (const auto e : entries) c.mutable_sip()->add_proxy_trusted_sources(std::string(e));
      });
  // Empty means no core configured; the front end checks the URI in depth.
  p.add(
      "core", PT::string, "", kListeners,
      "SIP URI of the core, e.g. sip:10.0.0.5:5060;transport=tcp; several cores: a comma-separated list, "
      "each URI with optional ;priority=N (lower first, default its position) and ;weight=N (default 1)",
      [](const C& c) { return c.sip().core_uri(); },
      [](C& c, S v) {
        const auto entries = split(v, ',');
        for (std::size_t i = 0; i < entries.size() && !v.empty(); ++i) {
          std::string_view e = entries[i];
          while (!e.empty() && (e.front() == ' ' || e.front() == '\t')) e.remove_prefix(1);
          while (!e.empty() && (e.back() == ' ' || e.back() == '\t')) e.remove_suffix(1);
          const std::string which = entries.size() > 1
                                        ? "entry " + std::to_string(i + 1) + " '" + std::string(e) + "'"
                                        : "'" + std::string(e) + "'";
          const bool sip = e.rfind("sip:", 0) == 0 && e.size() > 4;
          const bool sips = e.rfind("sips:", 0) == 0 && e.size() > 5;
          if (!sip && !sips) refuse("core", which + " is not a sip: or sips: URI");
          for (const auto param : split(e, ';')) {
            for (const std::string_view key : {"priority=", "weight="}) {
              if (param.rfind(key, 0) != 0) continue;
              const auto num = param.substr(key.size());
              const bool digits =
                  !num.empty() && num.size() <= 5 &&
                  std::all_of(num.begin(), num.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
              const long value = digits ? std::stol(std::string(num)) : -1;
              const long min = key == "weight=" ? 1 : 0;
              if (value < min || value > 65535) {
                refuse("core", which + ": " + std::string(key.substr(0, key.size() - 1)) +
                                   " must be a number in " + std::to_string(min) + "..65535, got '" +
                                   std::string(num) + "'");
              }
            }
          }
        }
        c.mutable_sip()->set_core_uri(std::string(v));
      });
  p.add(
      "core.tls_server_name", PT::string, "", kListeners,
      "name the core's TLS certificate must carry (DNS name, sent as SNI, or IP); empty: the core URI's host",
      [](const C& c) { return c.sip().core_tls_server_name(); },
      [](C& c, S v) { c.mutable_sip()->set_core_tls_server_name(std::string(v)); });
  p.add(
      "core.tls_pin_sha256", PT::string, "", kListeners,
      "SHA-256 (hex, colons allowed) of the core's TLS certificate or public key; empty: no pin",
      [](const C& c) { return c.sip().core_tls_pin_sha256(); },
      [](C& c, S v) {
        const auto digits = std::count_if(
            v.begin(), v.end(), [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)) != 0; });
        const auto colons = std::count(v.begin(), v.end(), ':');
        if (!v.empty() && (digits != 64 || digits + colons != static_cast<std::ptrdiff_t>(v.size()))) {
          refuse("core.tls_pin_sha256", "expected 64 hex digits (SHA-256), got '" + std::string(v) + "'");
        }
        c.mutable_sip()->set_core_tls_pin_sha256(std::string(v));
      });
  // The core link's watch (net CoreConfig; docs/operations.md, "When the core is down").
  const auto core_link_uint = [&p](const char* name, std::uint64_t def, std::uint64_t min, std::uint64_t max,
                                   const char* description, bool (v1::CoreLinkSettings::*has)() const,
                                   std::uint64_t (v1::CoreLinkSettings::*read)() const,
                                   void (v1::CoreLinkSettings::*write)(std::uint64_t)) {
    p.uint(
        name, def, min, max, kListeners, description,
        [def, has, read](const C& c) {
          const auto& l = c.sip().core_link();
          return u((l.*has)() ? (l.*read)() : def);
        },
        [write](C& c, S v) { (c.mutable_sip()->mutable_core_link()->*write)(n(v)); });
  };
  using CL = v1::CoreLinkSettings;
  core_link_uint("core.keepalive_interval_ms", 5'000, 0, 3'600'000,
                 "CRLFCRLF ping to a TCP/TLS core this often (RFC 5626 4.4.1); 0: none",
                 &CL::has_keepalive_interval_ms, &CL::keepalive_interval_ms, &CL::set_keepalive_interval_ms);
  core_link_uint(
      "core.keepalive_timeout_ms", 5'000, 100, 600'000,
      "no pong (or other bytes) from the core this long after a ping: the link is dropped and reconnected",
      &CL::has_keepalive_timeout_ms, &CL::keepalive_timeout_ms, &CL::set_keepalive_timeout_ms);
  core_link_uint("core.max_queue_age_ms", 4'000, 100, 600'000,
                 "a message that waited this long for the core link is dropped, never sent",
                 &CL::has_max_queue_age_ms, &CL::max_queue_age_ms, &CL::set_max_queue_age_ms);
  core_link_uint("core.health_interval_ms", 2'000, 0, 3'600'000,
                 "OPTIONS health check of every core this often (as Kamailio's dispatcher); 0: none",
                 &CL::has_health_interval_ms, &CL::health_interval_ms, &CL::set_health_interval_ms);
  core_link_uint(
      "core.health_failures", 3, 1, 100,
      "health checks failed in a row (unanswered within the interval, or 408/5xx) that mark a core down",
      &CL::has_health_failures, &CL::health_failures, &CL::set_health_failures);

  p.add(
      "tls.certificate", PT::string, "", kFrontEnd, "PEM certificate chain of tls/wss listeners",
      [](const C& c) { return c.sip().tls().certificate_chain_file(); },
      [](C& c, S v) { c.mutable_sip()->mutable_tls()->set_certificate_chain_file(std::string(v)); });
  p.add(
      "tls.private_key", PT::string, "", kFrontEnd, "PEM private key of tls/wss listeners",
      [](const C& c) { return c.sip().tls().private_key_file(); },
      [](C& c, S v) { c.mutable_sip()->mutable_tls()->set_private_key_file(std::string(v)); });
  p.add(
      "tls.ca", PT::string, "", kFrontEnd, "PEM CA bundle for client certificates and the core",
      [](const C& c) { return c.sip().tls().ca_file(); },
      [](C& c, S v) { c.mutable_sip()->mutable_tls()->set_ca_file(std::string(v)); });
  p.enumeration(
      "tls.client_certs", "none", {"none", "optional", "required"}, kFrontEnd,
      "whether tls/wss clients present a certificate",
      [](const C& c) { return c.sip().tls().client_certs(); },
      [](C& c, S v) { c.mutable_sip()->mutable_tls()->set_client_certs(std::string(v)); });

  p.uint(
      "sip.flow_timer", 30, 1, 3600, kFrontEnd, "Flow-Timer (RFC 5626) in seconds",
      [](const C& c) { return u(c.sip().flow_timer()); },
      [](C& c, S v) { c.mutable_sip()->set_flow_timer(static_cast<std::uint32_t>(n(v))); });
  p.add(
      "sip.path_without_supported", PT::boolean, "true", kFrontEnd,
      "Path with the flow token also for a REGISTER without Supported: path (plain phones), "
      "as Kamailio's add_path(); false: RFC 3327 5.2, no Path (or 421 with sip.require_path)",
      [](const C& c) {
        return b(c.sip().has_path_without_supported() ? c.sip().path_without_supported() : true);
      },
      [](C& c, S v) { c.mutable_sip()->set_path_without_supported(v == "true"); });
  p.add(
      "sip.require_path", PT::boolean, "false", kFrontEnd,
      "with sip.path_without_supported false: refuse (421) a REGISTER without Supported: path",
      [](const C& c) { return b(c.sip().require_path()); },
      [](C& c, S v) { c.mutable_sip()->set_require_path(v == "true"); });
  p.add(
      "sip.client_to_client_direct", PT::boolean, "false", kFrontEnd,
      "route a client's token of another flow directly over that flow (RFC 5626 5.3), around the core",
      [](const C& c) { return b(c.sip().client_to_client_direct()); },
      [](C& c, S v) { c.mutable_sip()->set_client_to_client_direct(v == "true"); });
  p.add(
      "sip.freebind", PT::boolean, "false", kListeners,
      "listeners bind with IP_FREEBIND / IPV6_FREEBIND: an address this box does not hold yet "
      "(a VRRP/keepalived virtual address it takes over on a failover)",
      [](const C& c) { return b(c.sip().freebind()); },
      [](C& c, S v) { c.mutable_sip()->set_freebind(v == "true"); });
  p.uint(
      "sip.workers", 0, 0, 256, kListeners, "worker threads; 0: one per core",
      [](const C& c) { return u(c.sip().workers()); },
      [](C& c, S v) { c.mutable_sip()->set_workers(static_cast<std::uint32_t>(n(v))); });

  p.uint(
      "limits.max_connections", 10'000, 1, 10'000'000, kListeners, "stream connections, all listeners",
      [](const C& c) { return u(c.sip().limits().max_connections()); },
      [](C& c, S v) { c.mutable_sip()->mutable_limits()->set_max_connections(n(v)); });
  p.uint(
      "limits.max_per_source_address", 100, 1, 10'000'000, kListeners,
      "stream connections from one IP address",
      [](const C& c) { return u(c.sip().limits().max_per_source_address()); },
      [](C& c, S v) { c.mutable_sip()->mutable_limits()->set_max_per_source_address(n(v)); });
  p.uint(
      "limits.max_udp_flows", 100'000, 1, 10'000'000, kListeners,
      "UDP flows, all UDP listeners; past it the least recently heard unregistered flow is evicted",
      [](const C& c) {
        return u(c.sip().limits().has_max_udp_flows() ? c.sip().limits().max_udp_flows() : 100'000);
      },
      [](C& c, S v) { c.mutable_sip()->mutable_limits()->set_max_udp_flows(n(v)); });
  p.uint(
      "limits.max_message_size", 65'535, 1024, 1 << 20, kListeners, "largest SIP message in bytes",
      [](const C& c) { return u(c.sip().limits().max_message_size()); },
      [](C& c, S v) { c.mutable_sip()->mutable_limits()->set_max_message_size(n(v)); });
  p.uint(
      "limits.idle_timeout_ms", 120'000, 100, 86'400'000, kListeners,
      "silence after which an unregistered flow dies",
      [](const C& c) { return u(c.sip().limits().idle_timeout_ms()); },
      [](C& c, S v) { c.mutable_sip()->mutable_limits()->set_idle_timeout_ms(n(v)); });
  p.uint(
      "limits.unregistered_connection_lifetime_ms", 60'000, 0, 86'400'000, kListeners,
      "a stream connection not registered this long after its accept is closed; keep-alives do not extend "
      "it; 0: off",
      [](const C& c) {
        const auto& l = c.sip().limits();
        return u(l.has_unregistered_connection_lifetime_ms() ? l.unregistered_connection_lifetime_ms()
                                                             : 60'000);
      },
      [](C& c, S v) { c.mutable_sip()->mutable_limits()->set_unregistered_connection_lifetime_ms(n(v)); });
  p.uint(
      "limits.flow_timeout_grace_ms", 30'000, 0, 3'600'000, kListeners,
      "grace beyond Flow-Timer before a registered flow dies",
      [](const C& c) { return u(c.sip().limits().flow_timeout_grace_ms()); },
      [](C& c, S v) { c.mutable_sip()->mutable_limits()->set_flow_timeout_grace_ms(n(v)); });
  p.uint(
      "limits.header_read_timeout_ms", 10'000, 100, 600'000, kListeners, "time to complete a header section",
      [](const C& c) { return u(c.sip().limits().header_read_timeout_ms()); },
      [](C& c, S v) { c.mutable_sip()->mutable_limits()->set_header_read_timeout_ms(n(v)); });
  p.uint(
      "limits.body_read_timeout_ms", 10'000, 100, 600'000, kListeners, "time to complete a body",
      [](const C& c) { return u(c.sip().limits().body_read_timeout_ms()); },
      [](C& c, S v) { c.mutable_sip()->mutable_limits()->set_body_read_timeout_ms(n(v)); });

  p.enumeration(
      "log.level", "info", {"debug", "info", "warn", "error"}, kNone, "log verbosity",
      [](const C& c) { return c.log_level(); }, [](C& c, S v) { c.set_log_level(std::string(v)); });

  // The agent's own endpoints are bound once, at process start.
  p.add(
      "mgmt.socket", PT::string, "mgmt.sock", kProcess, "Unix socket of the management API",
      [](const C& c) { return c.mgmt().unix_socket(); },
      [](C& c, S v) { c.mutable_mgmt()->set_unix_socket(std::string(v)); });
  p.add(
      "mgmt.socket_mode", PT::string, "0660", kProcess, "file mode of the socket, octal",
      [](const C& c) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "%04o", c.mgmt().unix_socket_mode());
        return std::string(buf);
      },
      [](C& c, S v) {
        std::uint32_t mode = 0;
        const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), mode, 8);
        if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || mode > 0777) {
          refuse("mgmt.socket_mode", "'" + std::string(v) + "' is not an octal file mode (0000..0777)");
        }
        c.mutable_mgmt()->set_unix_socket_mode(mode);
      });
  p.add(
      "mgmt.operator_gid", PT::string, "none", kProcess,
      "group whose members are operators on the Unix socket; none: no group",
      [](const C& c) {
        return c.mgmt().operator_gid() < 0 ? std::string("none") : std::to_string(c.mgmt().operator_gid());
      },
      [](C& c, S v) {
        if (v == "none") {
          c.mutable_mgmt()->set_operator_gid(-1);
          return;
        }
        c.mutable_mgmt()->set_operator_gid(
            static_cast<std::int64_t>(checked_uint("mgmt.operator_gid", v, 0, 0x7fffffff)));
      });
  p.add(
      "mgmt.tcp_listen", PT::string, "", kProcess, "HOST:PORT of the mutual-TLS listener; empty: none",
      [](const C& c) { return c.mgmt().tcp_listen(); },
      [](C& c, S v) {
        if (!v.empty()) {
          const auto colon = v.rfind(':');
          if (colon == std::string_view::npos || colon == 0) {
            refuse("mgmt.tcp_listen", "expected HOST:PORT, got '" + std::string(v) + "'");
          }
          checked_uint("mgmt.tcp_listen port", v.substr(colon + 1), 1, 65535);
        }
        c.mutable_mgmt()->set_tcp_listen(std::string(v));
      });
  p.add(
      "mgmt.tls.certificate", PT::string, "", kProcess, "server certificate of mgmt.tcp_listen",
      [](const C& c) { return c.mgmt().tls_certificate(); },
      [](C& c, S v) { c.mutable_mgmt()->set_tls_certificate(std::string(v)); });
  p.add(
      "mgmt.tls.private_key", PT::string, "", kProcess, "private key of mgmt.tcp_listen",
      [](const C& c) { return c.mgmt().tls_private_key(); },
      [](C& c, S v) { c.mutable_mgmt()->set_tls_private_key(std::string(v)); });
  p.add(
      "mgmt.tls.client_ca", PT::string, "", kProcess, "CA that signs management client certificates",
      [](const C& c) { return c.mgmt().client_ca_file(); },
      [](C& c, S v) { c.mutable_mgmt()->set_client_ca_file(std::string(v)); });
  p.add(
      "mgmt.tls.roles", PT::list, "", kProcess,
      "'uri:<URI>=viewer|operator', 'dns:<name>=...', 'cn:<CN>=...' entries separated by ';' (cn: only with "
      "mgmt.tls.cn_fallback)",
      [](const C& c) { return join_list(c.mgmt().roles(), role_entry_text); }, set_roles);
  p.add(
      "mgmt.tls.cn_fallback", PT::boolean, "false", kProcess,
      "let cn: entries of mgmt.tls.roles match the subject CN of a client certificate",
      [](const C& c) { return b(c.mgmt().cn_fallback()); },
      [](C& c, S v) { c.mutable_mgmt()->set_cn_fallback(v == "true"); });
  p.add(
      "mgmt.tls.crl", PT::string, "", kProcess,
      "PEM CRL file of mgmt.tls.client_ca, checked at every handshake; empty: none",
      [](const C& c) { return c.mgmt().crl_file(); },
      [](C& c, S v) { c.mutable_mgmt()->set_crl_file(std::string(v)); });
  p.uint(
      "mgmt.keep_generations", 10, 1, 100, kNone, "committed generations kept for rollback",
      [](const C& c) { return u(c.mgmt().keep_generations()); },
      [](C& c, S v) { c.mutable_mgmt()->set_keep_generations(static_cast<std::uint32_t>(n(v))); });
  p.uint(
      "mgmt.drain_timeout_ms", 2000, 0, 60'000, kNone, "bound on the drain of a controlled restart",
      [](const C& c) { return u(c.mgmt().drain_timeout_ms()); },
      [](C& c, S v) { c.mutable_mgmt()->set_drain_timeout_ms(static_cast<std::uint32_t>(n(v))); });
  // The Prometheus endpoint: process class, as the management listener (the
  // HTTP server is built once at start).
  p.add(
      "metrics.listen", PT::string, "", kProcess,
      "ADDRESS:PORT of the Prometheus endpoint (/metrics), IPv6 in brackets; empty: none (port 0: the OS "
      "picks)",
      [](const C& c) { return c.metrics().listen(); },
      [](C& c, S v) {
        if (!v.empty()) {
          const auto colon = v.rfind(':');
          if (colon == std::string_view::npos || colon == 0)
            refuse("metrics.listen", "expected ADDRESS:PORT, got '" + std::string(v) + "'");
          std::string host(v.substr(0, colon));
          const bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
          if (bracketed) host = host.substr(1, host.size() - 2);
          // An IPv6 literal needs its brackets, or its last group reads as the port.
          if (!ip_literal(host) || (host.find(':') != std::string::npos) != bracketed)
            refuse("metrics.listen", "'" + std::string(v.substr(0, colon)) +
                                         "' is not an IP address (IPv6 in brackets: [::1]:9464)");
          checked_uint("metrics.listen port", v.substr(colon + 1), 0, 65535);
        }
        c.mutable_metrics()->set_listen(std::string(v));
      });
  p.add(
      "metrics.tls.certificate", PT::string, "", kProcess,
      "PEM certificate chain of metrics.listen; set: HTTPS only",
      [](const C& c) { return c.metrics().tls_certificate(); },
      [](C& c, S v) { c.mutable_metrics()->set_tls_certificate(std::string(v)); });
  p.add(
      "metrics.tls.private_key", PT::string, "", kProcess, "private key of metrics.tls.certificate",
      [](const C& c) { return c.metrics().tls_private_key(); },
      [](C& c, S v) { c.mutable_metrics()->set_tls_private_key(std::string(v)); });
  p.add(
      "metrics.tls.client_ca", PT::string, "", kProcess,
      "CA that signs scrapers' client certificates; set: mutual TLS",
      [](const C& c) { return c.metrics().client_ca_file(); },
      [](C& c, S v) { c.mutable_metrics()->set_client_ca_file(std::string(v)); });

  // The cell (docs/operations.md, "Running a cell"): the agent's business only. A
  // change restarts nothing in the SIP front end; the agent (re)starts its cell
  // link with the new values. Joining or leaving moves the front end's key set,
  // which is sip.flow_token.key_set (front-end class), not these.
  p.add(
      "cell.name", PT::string, "", kNone,
      "cell this appliance is a member of, also the name of the cell's key set; empty: no cell "
      "(set by edgectl cell create / join)",
      [](const C& c) { return c.cell().name(); },
      [](C& c, S v) {
        if (!v.empty() && !hsm::valid_key_set_name(v)) {
          refuse("cell.name", "invalid cell name '" + std::string(v) +
                                  "' (1..64 characters of A-Z a-z 0-9 . _ -; it names the cell's key set)");
        }
        c.mutable_cell()->set_name(std::string(v));
      });
  p.add(
      "cell.etcd_endpoints", PT::string, "", kNone,
      "etcd endpoints of the cell's store, comma-separated http://HOST:PORT or https://HOST:PORT (https: "
      "cell.etcd_ca_file verifies them); the first that answers is used",
      [](const C& c) {
        std::string out;
        for (const auto& e : c.cell().etcd_endpoints()) out += (out.empty() ? "" : ",") + e;
        return out;
      },
      [](C& c, S v) {
        const auto entries = split(v, ',');
        std::string scheme;
        for (const auto e : entries) {
          const std::string which = "'" + std::string(e) + "'";
          const auto sep = e.find("://");
          const std::string_view sch = sep == std::string_view::npos ? S{} : e.substr(0, sep);
          if (sch != "http" && sch != "https")
            refuse("cell.etcd_endpoints", which + " is not an http:// or https:// URL");
          if (!scheme.empty() && scheme != sch)
            refuse("cell.etcd_endpoints",
                   "every endpoint uses the same scheme (http or https), got " + which);
          scheme = std::string(sch);
          std::string_view hostport = e.substr(sep + 3);
          if (!hostport.empty() && hostport.back() == '/') hostport.remove_suffix(1);
          const auto colon = hostport.rfind(':');
          if (colon == std::string_view::npos || colon == 0 || hostport.find('/') != std::string_view::npos)
            refuse("cell.etcd_endpoints", which + ": expected SCHEME://HOST:PORT");
          const std::string_view host = hostport.substr(0, colon);
          if (host.front() == '[' ? host.back() != ']' : host.find(':') != std::string_view::npos)
            refuse("cell.etcd_endpoints", which + ": an IPv6 address goes in brackets");
          checked_uint("cell.etcd_endpoints port", hostport.substr(colon + 1), 1, 65535);
        }
        c.mutable_cell()->clear_etcd_endpoints();
        for (const auto e : entries) c.mutable_cell()->add_etcd_endpoints(std::string(e));
      });
  p.add(
      "cell.member_id", PT::string, "", kNone,
      "this appliance's id in the cell (1..64 of A-Z a-z 0-9 . _ -); empty: the host name",
      [](const C& c) { return c.cell().member_id(); },
      [](C& c, S v) {
        if (!v.empty() && !hsm::valid_member_id(v))
          refuse("cell.member_id",
                 "invalid member id '" + std::string(v) + "' (1..64 characters of A-Z a-z 0-9 . _ -)");
        c.mutable_cell()->set_member_id(std::string(v));
      });
  p.add(
      "cell.etcd_ca_file", PT::string, "", kNone,
      "PEM CA that signed the etcd members' certificates (https endpoints); relative: to the state dir",
      [](const C& c) { return c.cell().etcd_ca_file(); },
      [](C& c, S v) { c.mutable_cell()->set_etcd_ca_file(std::string(v)); });
  p.add(
      "cell.etcd_cert_file", PT::string, "", kNone,
      "PEM client certificate for etcd (https endpoints with client authentication); empty: none",
      [](const C& c) { return c.cell().etcd_cert_file(); },
      [](C& c, S v) { c.mutable_cell()->set_etcd_cert_file(std::string(v)); });
  p.add(
      "cell.etcd_key_file", PT::string, "", kNone, "PEM private key of cell.etcd_cert_file",
      [](const C& c) { return c.cell().etcd_key_file(); },
      [](C& c, S v) { c.mutable_cell()->set_etcd_key_file(std::string(v)); });
  p.add(
      "cell.so_pin_file", PT::string, "hsm/so-pin", kNone,
      "file holding the HSM SO PIN that admission of a member uses (edge-hsm cell trust reads it, the "
      "agent never does); relative: to the state dir",
      [](const C& c) { return c.cell().so_pin_file(); },
      [](C& c, S v) { c.mutable_cell()->set_so_pin_file(std::string(v)); });
  p.uint(
      "cell.lease_ttl_s", 10, 3, 300, kNone,
      "seconds a member counts as live in etcd after its last lease refresh",
      [](const C& c) { return u(c.cell().has_lease_ttl_s() ? c.cell().lease_ttl_s() : 10); },
      [](C& c, S v) { c.mutable_cell()->set_lease_ttl_s(static_cast<std::uint32_t>(n(v))); });
  p.uint(
      "cell.retire_after_s", 7200, 60, 2'592'000, kNone,
      "old versions of the cell's key set retire this long after the cell switched minting (at least the "
      "longest registration); the creating member's value is the cell's",
      [](const C& c) { return u(c.cell().has_retire_after_s() ? c.cell().retire_after_s() : 7200); },
      [](C& c, S v) { c.mutable_cell()->set_retire_after_s(static_cast<std::uint32_t>(n(v))); });
  p.uint(
      "cell.etcd_timeout_ms", 2000, 100, 60'000, kNone,
      "deadline of each etcd call: an endpoint that does not answer within it is passed over for the next "
      "(reads), and the cell reports degraded",
      [](const C& c) { return u(c.cell().has_etcd_timeout_ms() ? c.cell().etcd_timeout_ms() : 2000); },
      [](C& c, S v) { c.mutable_cell()->set_etcd_timeout_ms(static_cast<std::uint32_t>(n(v))); });
  p.uint(
      "cell.poll_ms", 1000, 100, 60'000, kNone,
      "interval of the cell loop's passes besides those a change in etcd (its watch) starts; while etcd "
      "is away, how often the member tries again (a failed channel is made afresh) to catch up",
      [](const C& c) { return u(c.cell().has_poll_ms() ? c.cell().poll_ms() : 1000); },
      [](C& c, S v) { c.mutable_cell()->set_poll_ms(static_cast<std::uint32_t>(n(v))); });
}

const PropertyDescriptor* PropertyRegistry::find(std::string_view name) const {
  for (const auto& d : props_) {
    if (d.name == name || std::find(d.aliases.begin(), d.aliases.end(), name) != d.aliases.end()) return &d;
  }
  return nullptr;
}

void PropertyRegistry::set(v1::ApplianceConfig& config, std::string_view name, std::string_view value) const {
  const PropertyDescriptor* d = find(name);
  if (d == nullptr)
    throw MgmtError(ErrorCode::invalid_argument, "unknown property '" + std::string(name) + "'");
  value = trim(value);
  switch (d->type) {
    case PropertyType::uint:
      d->set(config, u(checked_uint(d->name, value, d->min, d->max)));
      return;
    case PropertyType::boolean: {
      const auto v = to_bool(value);
      if (!v) refuse(d->name, "expected true or false, got '" + std::string(value) + "'");
      d->set(config, b(*v));
      return;
    }
    case PropertyType::enumeration: {
      if (std::find(d->allowed.begin(), d->allowed.end(), value) == d->allowed.end()) {
        std::string allowed;
        for (const auto& a : d->allowed) allowed += (allowed.empty() ? "" : ", ") + a;
        refuse(d->name, "expected one of " + allowed + ", got '" + std::string(value) + "'");
      }
      d->set(config, value);
      return;
    }
    case PropertyType::string:
    case PropertyType::list:
      d->set(config, value);
      return;
  }
}

void PropertyRegistry::unset(v1::ApplianceConfig& config, std::string_view name) const {
  const PropertyDescriptor* d = find(name);
  if (d == nullptr)
    throw MgmtError(ErrorCode::invalid_argument, "unknown property '" + std::string(name) + "'");
  d->set(config, d->default_value);
}

std::string PropertyRegistry::get(const v1::ApplianceConfig& config, std::string_view name) const {
  const PropertyDescriptor* d = find(name);
  if (d == nullptr)
    throw MgmtError(ErrorCode::invalid_argument, "unknown property '" + std::string(name) + "'");
  return d->get(config);
}

v1::RestartClass PropertyRegistry::restart_class(const v1::ApplianceConfig& current,
                                                 const v1::ApplianceConfig& next) const {
  v1::RestartClass worst = v1::RESTART_NONE;
  bool process = false;
  for (const auto& d : props_) {
    if (d.get(current) == d.get(next)) continue;
    if (d.restart == v1::RESTART_PROCESS) {
      process = true;
    } else if (d.restart > worst) {
      worst = d.restart;
    }
  }
  return worst == v1::RESTART_NONE && process ? v1::RESTART_PROCESS : worst;
}

v1::ApplianceConfig PropertyRegistry::defaults() const {
  v1::ApplianceConfig c;
  c.set_schema_version(1);
  for (const auto& d : props_) d.set(c, d.default_value);
  return c;
}

v1::ApplianceConfig import_conf_text(std::string_view text, std::string_view origin) {
  const PropertyRegistry& reg = PropertyRegistry::instance();
  // The defaults have no listeners: each listen / advertise line adds one.
  v1::ApplianceConfig c = reg.defaults();
  int lineno = 0;
  std::istringstream in{std::string(text)};
  for (std::string raw; std::getline(in, raw);) {
    ++lineno;
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') continue;
    const std::string where = std::string(origin) + ":" + std::to_string(lineno);
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) {
      throw MgmtError(ErrorCode::invalid_argument, where + ": expected 'key = value'");
    }
    const std::string_view key = trim(line.substr(0, eq));
    const std::string_view value = trim(line.substr(eq + 1));
    try {
      if (key == "listen") {
        add_listeners(c, value);
      } else if (key == "advertise") {
        add_advertise(c, value);
      } else {
        reg.set(c, key, value);
      }
    } catch (const MgmtError& e) {
      throw MgmtError(e.code(), where + ": " + e.what());
    }
  }
  return c;
}

std::string export_conf_text(const v1::ApplianceConfig& config) {
  std::string out = "# edged configuration, exported by the management agent.\n";
  for (const auto& d : PropertyRegistry::instance().all()) {
    if (d.name == "listen") {
      for (const auto& l : config.sip().listeners()) out += "listen = " + listener_text(l) + "\n";
    } else if (d.name == "advertise") {
      for (const auto& a : config.sip().advertise()) {
        out += "advertise = " + endpoint_text(a.transport(), a.host(), a.port()) + "\n";
      }
    } else {
      out += d.name + " = " + d.get(config) + "\n";
    }
  }
  return out;
}

std::vector<std::string> diff_properties(const v1::ApplianceConfig& from, const v1::ApplianceConfig& to) {
  std::vector<std::string> out;
  const auto show = [](const std::string& v) { return v.empty() ? std::string("\"\"") : v; };
  for (const auto& d : PropertyRegistry::instance().all()) {
    const std::string a = d.get(from), b2 = d.get(to);
    if (a != b2) out.push_back(d.name + ": " + show(a) + " -> " + show(b2));
  }
  return out;
}

}  // namespace edge::mgmt
