// The property registry: types, ranges, aliases, edged.conf import / export.
#include <edge/mgmt/error.h>
#include <edge/mgmt/properties.h>
#include <edge/test/softhsm_fixture.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <utility>

namespace edge::mgmt {
namespace {

using google::protobuf::util::MessageDifferencer;

const PropertyRegistry& reg() { return PropertyRegistry::instance(); }

ErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const MgmtError& e) {
    return e.code();
  }
  ADD_FAILURE() << "no MgmtError thrown";
  return ErrorCode::internal;
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const MgmtError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no MgmtError thrown";
  return "";
}

TEST(Properties, EveryEdgedConfKeyIsRegisteredWithItsRestartClass) {
  for (const char* name : {"hsm.module",
                           "hsm.token",
                           "hsm.token_uri",
                           "hsm.pin_file",
                           "hsm.pin_env",
                           "sip.flow_token.key_set",
                           "sip.flow_token.key_version",
                           "listen",
                           "advertise",
                           "core",
                           "core.health_interval_ms",
                           "core.health_failures",
                           "tls.certificate",
                           "tls.private_key",
                           "tls.ca",
                           "tls.client_certs",
                           "sip.flow_timer",
                           "sip.path_without_supported",
                           "sip.require_path",
                           "sip.client_to_client_direct",
                           "sip.workers",
                           "limits.max_connections",
                           "limits.max_per_source_address",
                           "limits.max_message_size",
                           "limits.idle_timeout_ms",
                           "limits.flow_timeout_grace_ms",
                           "limits.header_read_timeout_ms",
                           "limits.body_read_timeout_ms",
                           "log.level",
                           "mgmt.socket",
                           "mgmt.socket_mode",
                           "mgmt.operator_gid",
                           "mgmt.tcp_listen",
                           "mgmt.tls.certificate",
                           "mgmt.tls.private_key",
                           "mgmt.tls.client_ca",
                           "mgmt.tls.roles",
                           "mgmt.tls.cn_fallback",
                           "mgmt.tls.crl",
                           "mgmt.keep_generations",
                           "mgmt.drain_timeout_ms",
                           "metrics.listen",
                           "metrics.tls.certificate",
                           "metrics.tls.private_key",
                           "metrics.tls.client_ca"}) {
    EXPECT_NE(reg().find(name), nullptr) << name;
  }
  EXPECT_EQ(reg().find("hsm.module")->restart, v1::RESTART_PROCESS);
  EXPECT_EQ(reg().find("listen")->restart, v1::RESTART_LISTENERS);
  EXPECT_EQ(reg().find("advertise")->restart, v1::RESTART_FRONT_END);
  EXPECT_EQ(reg().find("log.level")->restart, v1::RESTART_NONE);
  EXPECT_EQ(reg().find("sip.flow_token.key_set")->restart, v1::RESTART_FRONT_END);
  EXPECT_EQ(reg().find("metrics.listen")->restart, v1::RESTART_PROCESS);
}

// The Prometheus endpoint: off by default, an IP literal (IPv6 in brackets) and a port.
TEST(Properties, MetricsListenIsOffByDefaultAndTakesAnIpLiteralAndAPort) {
  auto c = reg().defaults();
  EXPECT_EQ(c.metrics().listen(), "");
  reg().set(c, "metrics.listen", "127.0.0.1:9464");
  EXPECT_EQ(reg().get(c, "metrics.listen"), "127.0.0.1:9464");
  reg().set(c, "metrics.listen", "0.0.0.0:0");
  EXPECT_EQ(c.metrics().listen(), "0.0.0.0:0");
  reg().set(c, "metrics.listen", "[::1]:9464");
  EXPECT_EQ(c.metrics().listen(), "[::1]:9464");
  reg().set(c, "metrics.listen", "0.0.0.0:0");
  for (const char* bad : {"9464", ":9464", "localhost:9464", "::1:9464", "[127.0.0.1]:9464",
                          "127.0.0.1:65536", "127.0.0.1:x", "[]:9464"}) {
    EXPECT_EQ(code_of([&] { reg().set(c, "metrics.listen", bad); }), ErrorCode::invalid_argument) << bad;
  }
  EXPECT_NE(what_of([&] { reg().set(c, "metrics.listen", "::1:9464"); }).find("IPv6 in brackets"),
            std::string::npos);
  EXPECT_EQ(c.metrics().listen(), "0.0.0.0:0") << "a refused value leaves the configuration as it was";
  reg().unset(c, "metrics.listen");
  EXPECT_EQ(c.metrics().listen(), "");
}

TEST(Properties, DefaultsMatchTheDaemonAndTransportDefaults) {
  const auto c = reg().defaults();
  EXPECT_EQ(c.sip().flow_token().key_set(), "");  // flow-token security off
  EXPECT_EQ(c.sip().listeners_size(), 0);
  EXPECT_EQ(c.sip().flow_timer(), 30u);
  EXPECT_EQ(c.sip().limits().max_connections(), 10'000u);
  EXPECT_EQ(c.sip().limits().max_message_size(), 65'535u);
  EXPECT_EQ(c.sip().limits().idle_timeout_ms(), 120'000u);
  EXPECT_EQ(c.log_level(), "info");
  EXPECT_EQ(c.mgmt().unix_socket(), "mgmt.sock");
  EXPECT_EQ(c.mgmt().unix_socket_mode(), 0660u);
  EXPECT_EQ(c.mgmt().operator_gid(), -1);
  EXPECT_EQ(c.mgmt().keep_generations(), 10u);
  EXPECT_EQ(c.mgmt().drain_timeout_ms(), 2000u);
  EXPECT_EQ(reg().get(c, "mgmt.operator_gid"), "none");
  EXPECT_EQ(reg().get(c, "mgmt.socket_mode"), "0660");
  // The core link's watch (net CoreConfig), also for a generation stored before it existed.
  EXPECT_EQ(reg().get(c, "core.keepalive_interval_ms"), "5000");
  EXPECT_EQ(reg().get(c, "core.keepalive_timeout_ms"), "5000");
  EXPECT_EQ(reg().get(c, "core.max_queue_age_ms"), "4000");
  const v1::ApplianceConfig before;  // stored before the fields existed: unset, read as the defaults
  EXPECT_EQ(reg().get(before, "core.keepalive_interval_ms"), "5000");
  EXPECT_EQ(reg().get(before, "core.max_queue_age_ms"), "4000");
}

TEST(Properties, CoreLinkWatchIsRangeCheckedAndZeroTurnsPingsOff) {
  auto c = reg().defaults();
  reg().set(c, "core.keepalive_interval_ms", "0");
  EXPECT_EQ(reg().get(c, "core.keepalive_interval_ms"), "0");
  reg().set(c, "core.keepalive_timeout_ms", "2000");
  EXPECT_EQ(c.sip().core_link().keepalive_timeout_ms(), 2000u);
  EXPECT_EQ(code_of([&] { reg().set(c, "core.keepalive_timeout_ms", "0"); }), ErrorCode::invalid_argument);
  EXPECT_EQ(code_of([&] { reg().set(c, "core.max_queue_age_ms", "99"); }), ErrorCode::invalid_argument);
  EXPECT_EQ(reg().find("core.keepalive_interval_ms")->restart, v1::RESTART_LISTENERS);
}

TEST(Properties, EachTypeIsCheckedAndWritten) {
  auto c = reg().defaults();
  // uint with range
  reg().set(c, "sip.flow_timer", "60");
  EXPECT_EQ(c.sip().flow_timer(), 60u);
  EXPECT_EQ(code_of([&] { reg().set(c, "sip.flow_timer", "0"); }), ErrorCode::invalid_argument);
  EXPECT_EQ(code_of([&] { reg().set(c, "sip.flow_timer", "3601"); }), ErrorCode::invalid_argument);
  EXPECT_NE(what_of([&] { reg().set(c, "sip.flow_timer", "0x"); }).find("sip.flow_timer"), std::string::npos);
  EXPECT_EQ(c.sip().flow_timer(), 60u) << "a refused value leaves the configuration as it was";
  // bool, every spelling
  for (const auto& [text, v] : std::vector<std::pair<std::string, bool>>{
           {"true", true}, {"no", false}, {"on", true}, {"0", false}, {"yes", true}, {"off", false}}) {
    reg().set(c, "sip.require_path", text);
    EXPECT_EQ(c.sip().require_path(), v) << text;
  }
  EXPECT_EQ(reg().get(c, "sip.require_path"), "false");
  EXPECT_EQ(code_of([&] { reg().set(c, "sip.require_path", "maybe"); }), ErrorCode::invalid_argument);
  // enum
  reg().set(c, "tls.client_certs", "required");
  EXPECT_EQ(c.sip().tls().client_certs(), "required");
  EXPECT_EQ(code_of([&] { reg().set(c, "log.level", "verbose"); }), ErrorCode::invalid_argument);
  // list
  reg().set(c, "listen", "udp 127.0.0.1 5060; tcp ::1 5061");
  ASSERT_EQ(c.sip().listeners_size(), 2);
  EXPECT_EQ(c.sip().listeners(1).transport(), v1::TRANSPORT_TCP);
  EXPECT_EQ(c.sip().listeners(1).address(), "::1");
  EXPECT_EQ(reg().get(c, "listen"), "udp 127.0.0.1 5060; tcp ::1 5061");
  EXPECT_NE(what_of([&] { reg().set(c, "listen", "tcpx 127.0.0.1 5060"); }).find("unknown transport 'tcpx'"),
            std::string::npos);
  EXPECT_EQ(code_of([&] { reg().set(c, "listen", "udp example.com 5060"); }), ErrorCode::invalid_argument);
  EXPECT_EQ(code_of([&] { reg().set(c, "advertise", "udp edge.example.com 0"); }),
            ErrorCode::invalid_argument);
  reg().set(c, "advertise", "tls edge.example.com 5061");
  EXPECT_EQ(c.sip().advertise(0).host(), "edge.example.com");
  reg().set(c, "mgmt.tls.roles",
            "uri:spiffe://edge.example/a=b=operator; dns:noc.example=viewer; cn:old-ops=operator");
  ASSERT_EQ(c.mgmt().roles_size(), 3);
  EXPECT_EQ(c.mgmt().roles(0).uri(), "spiffe://edge.example/a=b");  // the role is after the last '='
  EXPECT_EQ(c.mgmt().roles(0).role(), v1::ROLE_OPERATOR);
  EXPECT_EQ(c.mgmt().roles(1).dns_name(), "noc.example");
  EXPECT_EQ(c.mgmt().roles(1).role(), v1::ROLE_VIEWER);
  EXPECT_EQ(c.mgmt().roles(2).common_name(), "old-ops");
  EXPECT_EQ(reg().get(c, "mgmt.tls.roles"),
            "uri:spiffe://edge.example/a=b=operator; dns:noc.example=viewer; cn:old-ops=operator");
  EXPECT_EQ(code_of([&] { reg().set(c, "mgmt.tls.roles", "dns:ops-1=admin"); }), ErrorCode::invalid_argument);
  // A bare name (the CN form of before) says what it is: no guessing between CN and SAN.
  EXPECT_EQ(code_of([&] { reg().set(c, "mgmt.tls.roles", "ops-1=operator"); }), ErrorCode::invalid_argument);
  EXPECT_EQ(code_of([&] { reg().set(c, "mgmt.tls.roles", "email:a@b=operator"); }),
            ErrorCode::invalid_argument);
  EXPECT_EQ(code_of([&] { reg().set(c, "mgmt.tls.roles", "uri:=operator"); }), ErrorCode::invalid_argument);
  EXPECT_EQ(reg().get(c, "mgmt.tls.cn_fallback"), "false");
  EXPECT_EQ(code_of([&] { reg().set(c, "mgmt.tls.cn_fallback", "maybe"); }), ErrorCode::invalid_argument);
  // strings with their own shape
  EXPECT_EQ(code_of([&] { reg().set(c, "core", "http://x"); }), ErrorCode::invalid_argument);
  reg().set(c, "core", "sip:10.0.0.5:5060;transport=tcp");
  EXPECT_EQ(c.sip().core_uri(), "sip:10.0.0.5:5060;transport=tcp");
  // Several cores (issue 17): a list, each entry checked, priority / weight numbers in range.
  reg().set(c, "core",
            "sip:10.0.0.5:5060;transport=tcp;priority=1;weight=10, sip:10.0.0.6:5060;transport=tcp");
  EXPECT_EQ(c.sip().core_uri(),
            "sip:10.0.0.5:5060;transport=tcp;priority=1;weight=10, sip:10.0.0.6:5060;transport=tcp");
  EXPECT_NE(what_of([&] {
              reg().set(c, "core", "sip:10.0.0.5:5060, tcp:10.0.0.6");
            }).find("entry 2 'tcp:10.0.0.6'"),
            std::string::npos);
  EXPECT_NE(what_of([&] {
              reg().set(c, "core", "sip:10.0.0.5:5060;weight=0");
            }).find("weight must be a number in 1..65535"),
            std::string::npos);
  EXPECT_EQ(code_of([&] { reg().set(c, "core", "sip:10.0.0.5:5060;priority=99999"); }),
            ErrorCode::invalid_argument);
  EXPECT_EQ(reg().get(c, "core.health_interval_ms"), "2000");
  EXPECT_EQ(reg().get(c, "core.health_failures"), "3");
  EXPECT_EQ(code_of([&] { reg().set(c, "core.health_failures", "0"); }), ErrorCode::invalid_argument);
  reg().set(c, "mgmt.socket_mode", "0600");
  EXPECT_EQ(c.mgmt().unix_socket_mode(), 0600u);
  EXPECT_EQ(code_of([&] { reg().set(c, "mgmt.socket_mode", "0999"); }), ErrorCode::invalid_argument);
  reg().set(c, "mgmt.operator_gid", "1000");
  EXPECT_EQ(c.mgmt().operator_gid(), 1000);
  EXPECT_EQ(code_of([&] { reg().set(c, "sip.flow_token.key_set", "bad name!"); }),
            ErrorCode::invalid_argument);
  // unset restores the default
  reg().unset(c, "sip.flow_timer");
  EXPECT_EQ(c.sip().flow_timer(), 30u);
}

TEST(Properties, PinSourcesExcludeEachOther) {
  auto c = reg().defaults();
  reg().set(c, "hsm.pin_env", "EDGE_PIN");
  EXPECT_EQ(c.hsm().pin_file(), "");
  reg().set(c, "hsm.pin_file", "/etc/edge/pin");
  EXPECT_EQ(c.hsm().pin_env(), "");
}

TEST(Properties, WebSphereAliasNamesTheKeySetProperty) {
  auto c = reg().defaults();
  reg().set(c, "com.ibm.ws.sip.key.set", "sipflow");
  EXPECT_EQ(c.sip().flow_token().key_set(), "sipflow");
  EXPECT_EQ(reg().get(c, "com.ibm.ws.sip.key.set"), "sipflow");
  EXPECT_EQ(reg().find("com.ibm.ws.sip.key.set")->name, "sip.flow_token.key_set");
}

TEST(Properties, UnknownNameIsRefusedByName) {
  auto c = reg().defaults();
  EXPECT_EQ(what_of([&] { reg().set(c, "sip.flowtimer", "1"); }), "unknown property 'sip.flowtimer'");
  EXPECT_EQ(code_of([&] { reg().unset(c, "nope"); }), ErrorCode::invalid_argument);
}

TEST(Properties, ShippedEdgedConfImportsCleanly) {
  const auto c = import_conf_text(edge::test::read_file(EDGE_DEFAULT_CONF), "edged.conf");
  EXPECT_EQ(c.sip().flow_token().key_set(), "sipflow");
  EXPECT_EQ(c.sip().listeners_size(), 5);
  EXPECT_EQ(c.sip().listeners(4).transport(), v1::TRANSPORT_WSS);
  EXPECT_EQ(c.sip().core_uri(), "sip:127.0.0.1:5080;transport=tcp");
  EXPECT_EQ(c.hsm().pin_file(), "hsm/user-pin");
  EXPECT_FALSE(c.sip().client_to_client_direct()) << "a client reaches another client only through the core";
}

// A plain phone (no "Supported: path") gets Path by default, as with Kamailio's
// add_path(); a configuration stored before the property existed reads as true.
TEST(Properties, PathWithoutSupportedIsOnByDefaultAndCanBeTurnedOff) {
  const v1::ApplianceConfig stored_before;  // a generation written before the field existed
  EXPECT_FALSE(stored_before.sip().has_path_without_supported());
  EXPECT_EQ(reg().get(stored_before, "sip.path_without_supported"), "true") << "unset reads as the default";
  auto c = reg().defaults();
  EXPECT_EQ(reg().get(c, "sip.path_without_supported"), "true");
  reg().set(c, "sip.path_without_supported", "false");
  EXPECT_TRUE(c.sip().has_path_without_supported());
  EXPECT_FALSE(c.sip().path_without_supported());
  EXPECT_EQ(reg().get(c, "sip.path_without_supported"), "false");
  EXPECT_EQ(reg().find("sip.path_without_supported")->restart, v1::RESTART_FRONT_END);
  EXPECT_EQ(code_of([&] { reg().set(c, "sip.path_without_supported", "sometimes"); }),
            ErrorCode::invalid_argument);
  const auto shipped = import_conf_text(edge::test::read_file(EDGE_DEFAULT_CONF), "edged.conf");
  EXPECT_EQ(reg().get(shipped, "sip.path_without_supported"), "true");
}

TEST(Properties, ImportErrorsNameOriginAndLine) {
  const std::string text = "# comment\n\nsip.flow_timer = 10\nlisten = udp 127.0.0.1 notaport\n";
  const auto what = what_of([&] { import_conf_text(text, "test.conf"); });
  EXPECT_EQ(what.rfind("test.conf:4: listen", 0), 0u) << what;
  EXPECT_EQ(what_of([&] { import_conf_text("just words\n", "x"); }).rfind("x:1:", 0), 0u);
  EXPECT_NE(what_of([&] { import_conf_text("bogus = 1\n", "x"); }).find("unknown property 'bogus'"),
            std::string::npos);
}

TEST(Properties, ExportImportRoundTrip) {
  auto c = import_conf_text(edge::test::read_file(EDGE_DEFAULT_CONF), "edged.conf");
  reg().set(c, "advertise", "udp 192.0.2.1 5060; tls edge.example.com 5061");
  reg().set(c, "hsm.pin_env", "EDGE_PIN");
  reg().set(c, "mgmt.tls.roles",
            "uri:spiffe://edge.example/ops=operator; dns:watch.example=viewer; cn:x=viewer");
  reg().set(c, "mgmt.tls.cn_fallback", "true");
  reg().set(c, "mgmt.tls.crl", "tls/clients.crl");
  reg().set(c, "mgmt.operator_gid", "100");
  reg().set(c, "limits.flow_timeout_grace_ms", "0");
  const auto text = export_conf_text(c);
  const auto back = import_conf_text(text, "export");
  EXPECT_TRUE(MessageDifferencer::Equals(c, back)) << text;
  EXPECT_TRUE(MessageDifferencer::Equals(reg().defaults(),
                                         import_conf_text(export_conf_text(reg().defaults()), "d")));
}

TEST(Properties, DiffListsEveryChangedProperty) {
  const auto a = reg().defaults();
  auto b = a;
  reg().set(b, "sip.flow_timer", "60");
  reg().set(b, "log.level", "debug");
  const auto d = diff_properties(a, b);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0], "sip.flow_timer: 30 -> 60");
  EXPECT_EQ(d[1], "log.level: info -> debug");
  EXPECT_TRUE(diff_properties(a, a).empty());
}

// The restart class of a change is the registry's: the worst class among the
// changed properties, where a process-class value (read at start only) makes
// a change heavier only when nothing else in it needs a restart.
TEST(Properties, RestartClassOfAChangeIsTheWorstOfTheChangedProperties) {
  const auto base = [] {
    auto c = reg().defaults();
    reg().set(c, "sip.flow_token.key_set", "sipflow");
    reg().set(c, "listen", "udp 127.0.0.1 5060");
    return c;
  }();
  const auto with = [&](std::initializer_list<std::pair<const char*, const char*>> values) {
    auto c = base;
    for (const auto& [name, value] : values) reg().set(c, name, value);
    return c;
  };
  const auto cls = [&](std::initializer_list<std::pair<const char*, const char*>> values) {
    return reg().restart_class(base, with(values));
  };
  EXPECT_EQ(reg().restart_class(base, base), v1::RESTART_NONE) << "nothing changed";
  EXPECT_EQ(cls({{"log.level", "debug"}}), v1::RESTART_NONE);
  EXPECT_EQ(cls({{"sip.flow_timer", "60"}}), v1::RESTART_FRONT_END);
  EXPECT_EQ(cls({{"sip.flow_token.key_version", "2"}}), v1::RESTART_FRONT_END);
  EXPECT_EQ(cls({{"log.level", "debug"}, {"advertise", "udp 192.0.2.1 5060"}}), v1::RESTART_FRONT_END);
  EXPECT_EQ(cls({{"listen", "tcp 127.0.0.1 5060"}}), v1::RESTART_LISTENERS);
  EXPECT_EQ(cls({{"core", "sip:127.0.0.1:5080"}, {"sip.flow_timer", "60"}}), v1::RESTART_LISTENERS);
  EXPECT_EQ(cls({{"hsm.module", "/usr/lib/pkcs11/other.so"}}), v1::RESTART_PROCESS);
  EXPECT_EQ(cls({{"hsm.module", "/usr/lib/pkcs11/other.so"}, {"log.level", "debug"}}), v1::RESTART_PROCESS)
      << "a live value does not hide that the rest waits for the next start";
  EXPECT_EQ(cls({{"mgmt.socket", "other.sock"}, {"sip.flow_timer", "60"}}), v1::RESTART_FRONT_END)
      << "a process-class value does not make a front-end change heavier";
  EXPECT_EQ(cls({{"hsm.token", "other"}, {"listen", "tcp 127.0.0.1 5060"}}), v1::RESTART_LISTENERS);
  // Symmetric: undoing a change (a rollback) is a change of the same class.
  const auto listeners = with({{"listen", "tcp 127.0.0.1 5060"}, {"sip.flow_timer", "60"}});
  EXPECT_EQ(reg().restart_class(listeners, base), reg().restart_class(base, listeners));
  // A property changed alone is a change of its own class (shown for the
  // booleans, which any configuration can flip).
  for (const auto& d : reg().all()) {
    if (d.type != PropertyType::boolean) continue;
    auto c = base;
    reg().set(c, d.name, d.get(base) == "true" ? "false" : "true");
    EXPECT_EQ(reg().restart_class(base, c), d.restart) << d.name;
  }
}

// Behind a load balancer: "proxy" after a stream listener, the trusted balancers as address ranges;
// both survive the edged.conf round trip and need a listener restart.
TEST(Properties, ProxyProtocolListenersAndTrustedSources) {
  v1::ApplianceConfig c = reg().defaults();
  reg().set(c, "listen", "tcp 127.0.0.1 5070 proxy; tls ::1 5071 proxy; udp 127.0.0.1 5060");
  ASSERT_EQ(c.sip().listeners_size(), 3);
  EXPECT_TRUE(c.sip().listeners(0).proxy_protocol());
  EXPECT_TRUE(c.sip().listeners(1).proxy_protocol());
  EXPECT_FALSE(c.sip().listeners(2).proxy_protocol());
  EXPECT_EQ(reg().get(c, "listen"), "tcp 127.0.0.1 5070 proxy; tls ::1 5071 proxy; udp 127.0.0.1 5060");
  EXPECT_EQ(code_of([&] { reg().set(c, "listen", "udp 127.0.0.1 5060 proxy"); }),
            ErrorCode::invalid_argument);
  EXPECT_EQ(code_of([&] { reg().set(c, "listen", "tcp 127.0.0.1 5060 proxi"); }),
            ErrorCode::invalid_argument);

  reg().set(c, "proxy_protocol.trusted_sources", "10.0.1.0/28; 2001:db8::/32; 192.0.2.7");
  ASSERT_EQ(c.sip().proxy_trusted_sources_size(), 3);
  EXPECT_EQ(reg().get(c, "proxy_protocol.trusted_sources"), "10.0.1.0/28; 2001:db8::/32; 192.0.2.7");
  for (const char* bad : {"10.0.0.0/33", "lb.example.com", "10.0.0.0/", "2001:db8::/129"}) {
    EXPECT_EQ(code_of([&] { reg().set(c, "proxy_protocol.trusted_sources", bad); }),
              ErrorCode::invalid_argument)
        << bad;
  }
  EXPECT_EQ(c.sip().proxy_trusted_sources_size(), 3) << "a refused value changes nothing";
  EXPECT_EQ(reg().find("proxy_protocol.trusted_sources")->restart, v1::RESTART_LISTENERS);

  const auto back = import_conf_text(export_conf_text(c), "exported");
  EXPECT_EQ(reg().get(back, "listen"), reg().get(c, "listen"));
  EXPECT_EQ(reg().get(back, "proxy_protocol.trusted_sources"),
            reg().get(c, "proxy_protocol.trusted_sources"));
}

}  // namespace
}  // namespace edge::mgmt
