// The metrics of a real SipFrontEnd (SoftHSM key set, loopback sockets) as prometheus-cpp serializes
// them: Prometheus naming conventions, bounded labels, histograms that add up; and the HTTP server on
// an OS-picked port answering a GET over a real socket.
#include "metrics.h"

#include <edge/hsm/hsm.h>
#include <edge/mgmt/properties.h>
#include <edge/test/process.h>
#include <edge/test/sip/ports.h>
#include <edge/test/softhsm_fixture.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <regex>
#include <set>
#include <string>

namespace edge::firmware {
namespace {

// 127.0.0.1:port as a socket address.
sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

class MetricsUnit : public ::testing::Test {
 protected:
  MetricsUnit() : hsm_(token_.config()), fe_(hsm_, state_.path()) {}
  void SetUp() override {
    hsm_.keysets().create("sipflow");
    const std::string port = std::to_string(test::free_port());
    // Nobody listens on the core's port: the core link is down, which the metrics say.
    fe_.boot(mgmt::import_conf_text("sip.flow_token.key_set = sipflow\nlisten = udp 127.0.0.1 " + port +
                                        "\nlisten = tcp 127.0.0.1 " + port + "\ncore = sip:127.0.0.1:" +
                                        std::to_string(test::free_port()) + ";transport=tcp\n",
                                    "test"));
  }
  void TearDown() override { fe_.stop(); }

  test::SoftHsmToken token_;
  test::TempDir state_{"edge-metrics-unit"};
  hsm::Hsm hsm_;
  SipFrontEnd fe_;
};

TEST_F(MetricsUnit, NamesLabelsAndHistogramsFollowThePrometheusConventions) {
  const auto edge = make_edge_collector(fe_, [] { return std::uint64_t{7}; });
  const auto process = make_process_collector();
  auto families = edge->Collect();
  const auto proc = process->Collect();
  families.insert(families.end(), proc.begin(), proc.end());
  ASSERT_GT(families.size(), 40u);

  const std::regex name_re("^(edge|process)_[a-z][a-z0-9_]*$");
  // Label names with bounded values only: never an address, a user or a Call-ID.
  const std::set<std::string> allowed{"transport", "direction", "reason", "method", "source", "destination",
                                      "code",      "kind",      "op",     "result", "priority", "state",
                                      "key_set",   "core",      "version", "via"};
  std::set<std::string> names;
  for (const auto& f : families) {
    SCOPED_TRACE(f.name);
    EXPECT_TRUE(std::regex_match(f.name, name_re));
    EXPECT_TRUE(names.insert(f.name).second) << "two families of one name";
    EXPECT_FALSE(f.help.empty());
    EXPECT_FALSE(f.metric.empty());
    EXPECT_LE(f.metric.size(), 64u) << "label cardinality must stay small";
    const bool total = f.name.size() > 6 && f.name.compare(f.name.size() - 6, 6, "_total") == 0;
    EXPECT_EQ(total, f.type == prometheus::MetricType::Counter) << "counters, and only they, end in _total";
    std::set<std::vector<prometheus::ClientMetric::Label>> series;
    for (const auto& m : f.metric) {
      for (const auto& l : m.label) EXPECT_TRUE(allowed.count(l.name)) << l.name;
      EXPECT_TRUE(series.insert(m.label).second) << "duplicate series";
      if (f.type == prometheus::MetricType::Histogram) {
        ASSERT_FALSE(m.histogram.bucket.empty());
        EXPECT_TRUE(std::isinf(m.histogram.bucket.back().upper_bound));
        EXPECT_EQ(m.histogram.bucket.back().cumulative_count, m.histogram.sample_count);
        for (std::size_t i = 1; i < m.histogram.bucket.size(); ++i) {
          EXPECT_LE(m.histogram.bucket[i - 1].cumulative_count, m.histogram.bucket[i].cumulative_count);
          EXPECT_LT(m.histogram.bucket[i - 1].upper_bound, m.histogram.bucket[i].upper_bound);
        }
        EXPECT_NE(f.name.find("_seconds"), std::string::npos) << "durations in seconds";
      }
    }
  }
  for (const char* n : {"edge_flows", "edge_hsm_mac_duration_seconds", "edge_core_up", "edge_config_generation",
                        "process_open_fds", "process_resident_memory_bytes", "process_cpu_seconds_total"}) {
    EXPECT_TRUE(names.count(n)) << n;
  }
  const std::string text = prometheus::TextSerializer().Serialize(families);
  EXPECT_NE(text.find("edge_config_generation 7\n"), std::string::npos);
  EXPECT_NE(text.find("edge_core_up{core=\"sip:127.0.0.1:"), std::string::npos);
  EXPECT_NE(text.find("# TYPE edge_hsm_mac_duration_seconds histogram"), std::string::npos);
}

TEST_F(MetricsUnit, TheServerAnswersAGetOnThePortTheOsPicked) {
  MetricsOptions o;
  o.listen = "127.0.0.1:0";
  {
    // IPv6 too, in brackets.
    MetricsOptions v6;
    v6.listen = "[::1]:0";
    MetricsServer server(v6, {make_edge_collector(fe_, [] { return std::uint64_t{1}; })});
    EXPECT_NE(server.port(), 0);
  }
  std::uint16_t port = 0;
  {
    MetricsServer server(o, {make_edge_collector(fe_, [] { return std::uint64_t{1}; })});
    port = server.port();
    ASSERT_NE(port, 0);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const sockaddr_in a = loopback(port);
    ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const std::string get = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    ASSERT_EQ(::send(fd, get.data(), get.size(), 0), static_cast<ssize_t>(get.size()));
    std::string reply;
    char buf[8192];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) reply.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    EXPECT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u) << reply.substr(0, 200);
    EXPECT_NE(reply.find("text/plain"), std::string::npos);
    EXPECT_NE(reply.find("edge_front_end_state{state=\"running\"} 1"), std::string::npos);
  }
  // Gone with the server.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const sockaddr_in a = loopback(port);
  EXPECT_NE(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  ::close(fd);
}

TEST(MetricsOptionsTest, RelativePathsAreTakenFromTheStateDirectory) {
  mgmt::v1::MetricsSettings m;
  m.set_listen("127.0.0.1:9464");
  m.set_tls_certificate("tls/edge.crt");
  m.set_tls_private_key("/etc/edge/metrics.key");
  const MetricsOptions o = metrics_options(m, "/var/lib/edge");
  EXPECT_TRUE(o.enabled());
  EXPECT_TRUE(o.tls());
  EXPECT_EQ(o.certificate, "/var/lib/edge/tls/edge.crt");
  EXPECT_EQ(o.private_key, "/etc/edge/metrics.key");
  EXPECT_TRUE(o.client_ca.empty());
  EXPECT_THROW(MetricsServer(MetricsOptions{}, {}), std::invalid_argument);
}

}  // namespace
}  // namespace edge::firmware
