// The Prometheus endpoint of a real edged, scraped with a real HTTP client (curl) while SIP traffic
// flows through it to a real Kamailio core: values move with the traffic and agree with the status line
// (one set of counters); malformed and oversized HTTP get a bounded, defined answer; HTTPS and mutual
// TLS with the configured material; nothing listens when it is off; bad TLS material stops the start.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "edge_fixture.h"

namespace edge::test {
namespace {

constexpr std::uint16_t kMetricsPort = 9464;  // a private network namespace per test
const std::string kUrl = "http://127.0.0.1:9464/metrics";

// 127.0.0.1:port as a socket address.
sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// The text exposition format, as far as the tests read it: `name{a="x",b="y"} value`.
std::vector<Sample> parse_exposition(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    const auto brace = line.find('{');
    const auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    if (brace != std::string::npos && brace < space) {
      s.name = line.substr(0, brace);
      const auto close = line.rfind('}', space);
      std::string labels = line.substr(brace + 1, close - brace - 1);
      for (std::size_t p = 0; p < labels.size();) {
        const auto eq = labels.find("=\"", p);
        const auto end = labels.find('"', eq + 2);
        if (eq == std::string::npos || end == std::string::npos) break;
        s.labels[labels.substr(p, eq - p)] = labels.substr(eq + 2, end - eq - 2);
        p = end + 2;  // past `",`
      }
    } else {
      s.name = line.substr(0, space);
    }
    s.value = std::strtod(line.c_str() + space + 1, nullptr);
    out.push_back(std::move(s));
  }
  return out;
}

class Scrape {
 public:
  explicit Scrape(const std::string& text) : text_(text), samples_(parse_exposition(text)) {}
  // The value of the one series with exactly these labels (NaN when absent).
  double value(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& s : samples_)
      if (s.name == name && s.labels == labels) return s.value;
    return std::nan("");
  }
  // Sum over every series of the name whose labels include `subset`.
  double sum(const std::string& name, const std::map<std::string, std::string>& subset = {}) const {
    double total = 0;
    for (const auto& s : samples_) {
      if (s.name != name) continue;
      bool match = true;
      for (const auto& [k, v] : subset) match = match && s.labels.count(k) && s.labels.at(k) == v;
      if (match) total += s.value;
    }
    return total;
  }
  std::size_t lines_matching(const std::string& needle) const {
    std::size_t n = 0;
    for (std::size_t p = text_.find(needle); p != std::string::npos; p = text_.find(needle, p + 1)) ++n;
    return n;
  }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::vector<Sample> samples_;
};

// Runs curl (a real HTTP client) with ARGS; the body lands in `body`, the
// HTTP status (or 000 when no response came) is the return value.
struct CurlResult {
  int exit = -1;
  std::string status;  // "200", "000", ...
  std::string body;
  std::string log;
};
CurlResult curl(const std::filesystem::path& dir, std::vector<std::string> args) {
  static int runs = 0;
  const auto n = std::to_string(++runs);
  const auto body = dir / ("curl-" + n + ".body");
  ProcessOptions p;
  p.program = find_program("curl", "curl");
  p.args = {"-sS", "--max-time", "10", "-o", body.string(), "-w", "%{http_code}"};
  p.args.insert(p.args.end(), args.begin(), args.end());
  p.log_file = dir / ("curl-" + n + ".log");
  ChildProcess c(p);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (c.running() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CurlResult r;
  r.exit = c.stop(std::chrono::milliseconds(500));
  r.log = c.log();
  r.status = r.log.size() >= 3 ? r.log.substr(r.log.size() - 3) : r.log;
  if (std::filesystem::exists(body)) r.body = read_file(body);
  return r;
}

// Sends raw bytes to 127.0.0.1:port and returns what came back before the
// server closed (bounded: 5 s of silence ends it).
std::string raw_http(std::uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "socket failed";
  const sockaddr_in a = loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "connect failed";
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (std::size_t sent = 0; sent < request.size();) {
    const auto n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close before reading it all
    sent += static_cast<std::size_t>(n);
  }
  std::string reply;
  char buf[4096];
  for (;;) {
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return reply;
}

bool port_open(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const sockaddr_in a = loopback(port);
  const bool open = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return open;
}

class Metrics : public EdgeTest {
 protected:
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.extra = {{"metrics.listen", "127.0.0.1:" + std::to_string(kMetricsPort)}};
    return o;
  }
  Scrape scrape() {
    const CurlResult r = curl(edge_->state_dir(), {kUrl});
    EXPECT_EQ(r.exit, 0) << r.log;
    EXPECT_EQ(r.status, "200") << r.log;
    return Scrape(r.body);
  }
};

TEST_F(Metrics, ValuesMoveWithTrafficAndAgreeWithTheStatusLine) {
  ASSERT_TRUE(edge_->wait_for_log("event=metrics_listening address=127.0.0.1:9464 port=9464 tls=false",
                                  std::chrono::milliseconds(2000)))
      << edge_->log();
  const Scrape before = scrape();
  EXPECT_EQ(before.value("edge_front_end_state", {{"state", "running"}}), 1);
  EXPECT_EQ(before.value("edge_hsm_state", {{"state", "available"}}), 1);
  EXPECT_EQ(before.value("edge_config_generation"), 1);
  EXPECT_EQ(before.value("edge_minting_key_version", {{"key_set", "sipflow"}}), 1);
  EXPECT_EQ(before.value("edge_core_up", {{"core", "sip:127.0.0.1:5080;transport=tcp"}}), 1);
  EXPECT_EQ(before.value("edge_flows", {{"transport", "tcp"}}), 0);
  EXPECT_GT(before.value("process_open_fds"), 0);
  EXPECT_GT(before.value("process_resident_memory_bytes"), 1e6);
  EXPECT_GT(before.value("process_start_time_seconds"), 1.7e9);
  EXPECT_GE(before.value("process_max_fds"), before.value("process_open_fds"));

  TestUa& alice = ua("alice");
  TestUa& bob = ua("bob");
  ASSERT_EQ(register_through_edge(alice, Transport::tcp).status(), 200);
  ASSERT_EQ(register_through_edge(bob, Transport::udp).status(), 200);
  const Call c = call(alice, bob);
  ASSERT_EQ(c.invite_received.method(), "INVITE");

  // The transport counts its writes after they leave: wait until the status line is quiet.
  ASSERT_TRUE(wait_status([](const EdgedStatus& s) { return s.number("requests_from_clients") >= 4; }));
  const EdgedStatus status = edge_->status();
  const Scrape after = scrape();
  const std::map<std::string, std::string> client{{"source", "client"}};
  EXPECT_EQ(after.value("edge_sip_requests_received_total", {{"method", "register"}, {"source", "client"}}), 2);
  EXPECT_GE(after.value("edge_sip_requests_received_total", {{"method", "invite"}, {"source", "client"}}), 1);
  EXPECT_GE(after.value("edge_sip_requests_forwarded_total", {{"destination", "flow"}, {"method", "invite"}}), 1);
  EXPECT_EQ(after.value("edge_flows", {{"transport", "tcp"}}), 1);
  EXPECT_EQ(after.value("edge_flows", {{"transport", "udp"}}), 1);
  EXPECT_GE(after.value("edge_connections"), 1);
  EXPECT_GE(after.value("edge_outbound_total", {{"kind", "path_added"}}), 2);
  // Two registrations, two flows: two tokens minted in the HSM, timed in the histogram.
  EXPECT_EQ(after.value("edge_token_mints_total", {{"via", "hsm"}}), 2);
  EXPECT_GE(after.value("edge_hsm_mac_operations_total", {{"op", "sign"}, {"result", "ok"}}),
            before.value("edge_hsm_mac_operations_total", {{"op", "sign"}, {"result", "ok"}}) + 2);
  const double signs = after.value("edge_hsm_mac_duration_seconds_count", {{"op", "sign"}});
  EXPECT_EQ(after.value("edge_hsm_mac_duration_seconds_bucket", {{"op", "sign"}, {"le", "+Inf"}}), signs);
  EXPECT_EQ(after.lines_matching("edge_hsm_mac_duration_seconds_bucket{op=\"sign\",le=\"+Inf\"}"), 1u);
  EXPECT_GT(after.value("edge_hsm_mac_duration_seconds_sum", {{"op", "sign"}}), 0);
  EXPECT_GT(after.value("edge_transport_messages_total", {{"direction", "in"}, {"transport", "tcp"}}), 0);

  // One source of truth: what the status line says is what the metrics say
  // (no traffic between the two reads).
  EXPECT_EQ(after.sum("edge_sip_requests_received_total", client),
            static_cast<double>(status.number("requests_from_clients")));
  EXPECT_EQ(after.sum("edge_sip_requests_received_total", {{"source", "core"}}),
            static_cast<double>(status.number("requests_from_core")));
  EXPECT_EQ(after.value("edge_hsm_operations_total", {{"op", "sign"}}),
            static_cast<double>(status.number("hsm_sign")));
  EXPECT_EQ(after.value("edge_token_verifies_total", {{"via", "cache"}}),
            static_cast<double>(status.number("verifies_avoided")));
  EXPECT_EQ(after.value("edge_sip_responses_generated_total", {{"code", "403"}}),
            static_cast<double>(status.number("r403")));

  // A controlled restart shows as a restart with its pause.
  ASSERT_TRUE(edge_->reload());
  const Scrape restarted = scrape();
  EXPECT_EQ(restarted.value("edge_restarts_total"), before.value("edge_restarts_total") + 1);
  EXPECT_EQ(restarted.value("edge_restart_pause_seconds_count"), before.value("edge_restart_pause_seconds_count") + 1);
  EXPECT_GT(restarted.value("edge_restart_last_pause_seconds"), 0);
}

TEST_F(Metrics, MalformedAndOversizedRequestsGetABoundedAnswerAndTheEndpointStaysUp) {
  // Not HTTP at all.
  const std::string garbage = raw_http(kMetricsPort, "\x16\x03\x01 not http at all\r\n\r\n");
  EXPECT_EQ(garbage.rfind("HTTP/1.1 400", 0), 0u) << garbage;
  EXPECT_NE(garbage.find("bad request:"), std::string::npos) << garbage;
  // A request head over the 16 KB bound.
  const std::string huge =
      raw_http(kMetricsPort, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: " + std::string(64 * 1024, 'a') + "\r\n\r\n");
  EXPECT_EQ(huge.rfind("HTTP/1.1 431", 0), 0u) << huge.substr(0, 200);
  EXPECT_EQ(huge.find("edge_"), std::string::npos) << "no metrics for an oversized request";
  // Another path, another method.
  EXPECT_EQ(curl(edge_->state_dir(), {"http://127.0.0.1:9464/nothing-here"}).status, "404");
  const CurlResult post = curl(edge_->state_dir(), {"-X", "DELETE", kUrl});
  EXPECT_EQ(post.status, "405") << post.log;
  EXPECT_EQ(post.body.find("edge_flows"), std::string::npos);
  // A body is refused (GET has none).
  const CurlResult body = curl(edge_->state_dir(), {"-X", "GET", "--data", "x=1", kUrl});
  EXPECT_EQ(body.status, "413") << body.log;
  // More connections at once than the bound: the extra ones are closed, the endpoint serves on.
  std::vector<int> held;
  for (std::size_t i = 0; i < 20; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const sockaddr_in a = loopback(kMetricsPort);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) held.push_back(fd);
  }
  for (const int fd : held) ::close(fd);
  // Half a request, then silence: the connection is the client's problem, not the endpoint's.
  std::thread slow([] { raw_http(kMetricsPort, "GET /metr"); });
  const Scrape s = scrape();
  EXPECT_EQ(s.value("edge_front_end_state", {{"state", "running"}}), 1);
  slow.join();
  EXPECT_TRUE(edge_->running());
}

// The dashboard (docs/grafana/edge-dashboard.json) queries only what edged exports.
TEST_F(Metrics, EveryMetricTheDashboardQueriesIsExported) {
  const std::string dashboard = read_file(EDGE_DASHBOARD_JSON);
  const Scrape s = scrape();
  const std::regex name(R"(\b(edge|process)_[a-z0-9_]+)");
  std::size_t checked = 0;
  for (auto it = std::sregex_iterator(dashboard.begin(), dashboard.end(), name); it != std::sregex_iterator(); ++it) {
    const std::string n = it->str();
    if (n == "edge_hsm_mac_duration_seconds") continue;  // the histogram's family name; its series carry suffixes
    ++checked;
    EXPECT_TRUE(s.text().find("\n" + n + "{") != std::string::npos || s.text().find("\n" + n + " ") != std::string::npos)
        << n << " is in the dashboard but not on /metrics";
  }
  EXPECT_GT(checked, 20u);
}

class MetricsOff : public EdgeTest {};

TEST_F(MetricsOff, NothingListensWhenItIsNotConfigured) {
  EXPECT_FALSE(port_open(kMetricsPort));
  EXPECT_TRUE(edge_->events("metrics_listening").empty()) << edge_->log();
  const CurlResult r = curl(edge_->state_dir(), {kUrl});
  EXPECT_NE(r.exit, 0);
  EXPECT_EQ(r.status, "000") << r.log;
}

// HTTPS with the lab certificate (its SAN names 127.0.0.1), then mutual TLS
// with a CA and a client certificate made here with the openssl tool.
class MetricsTls : public EdgeTest {
 protected:
  EdgedOptions edged_options() override {
    EdgedOptions o;
    o.extra = {{"metrics.listen", "127.0.0.1:9464"},
               {"metrics.tls.certificate", "tls/edge.crt"},
               {"metrics.tls.private_key", "tls/edge.key"}};
    return o;
  }
};

TEST_F(MetricsTls, ServesHttpsOnlyWithTheConfiguredCertificate) {
  const auto dir = edge_->state_dir();
  const CurlResult ok = curl(dir, {"--cacert", edge_->certificate().string(), "https://127.0.0.1:9464/metrics"});
  EXPECT_EQ(ok.status, "200") << ok.log;
  EXPECT_NE(ok.body.find("edge_front_end_state{state=\"running\"} 1"), std::string::npos) << ok.body.substr(0, 300);
  const CurlResult plain = curl(dir, {kUrl});
  EXPECT_NE(plain.status, "200") << plain.log;
  EXPECT_EQ(plain.body.find("edge_flows"), std::string::npos);
  const CurlResult old_tls =
      curl(dir, {"--cacert", edge_->certificate().string(), "--tls-max", "1.1", "https://127.0.0.1:9464/metrics"});
  EXPECT_NE(old_tls.exit, 0) << "TLS 1.1 must be refused: " << old_tls.log;
}

int openssl(const std::filesystem::path& dir, const std::vector<std::string>& args) {
  ProcessOptions p;
  p.program = find_program("openssl", "openssl");
  p.args = args;
  p.working_dir = dir;
  p.log_file = dir / "openssl.log";
  ChildProcess c(p);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (c.running() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return c.stop(std::chrono::milliseconds(500));
}

TEST(MetricsMutualTls, OnlyAScraperWithACertificateOfTheClientCaGetsIn) {
  TempDir pki("edge-metrics-pki");
  const auto d = pki.path();
  auto ok = [&](const std::vector<std::string>& a) { ASSERT_EQ(openssl(d, a), 0) << read_file(d / "openssl.log"); };
  ok({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
      "-out", "ca.crt", "-subj", "/CN=scrapers", "-days", "2"});
  ok({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "prom.key", "-out",
      "prom.csr", "-subj", "/CN=prometheus"});
  ok({"x509", "-req", "-in", "prom.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
      "prom.crt", "-days", "2"});
  ok({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "other.key",
      "-out", "other.crt", "-subj", "/CN=someone-else", "-days", "2"});

  EdgedOptions o;
  o.extra = {{"metrics.listen", "127.0.0.1:9464"},
             {"metrics.tls.certificate", "tls/edge.crt"},
             {"metrics.tls.private_key", "tls/edge.key"},
             {"metrics.tls.client_ca", (d / "ca.crt").string()}};
  EdgedProcess edge(o);
  ASSERT_TRUE(edge.wait_for_log("client_certs=required", std::chrono::milliseconds(2000))) << edge.log();
  const std::string url = "https://127.0.0.1:9464/metrics";
  const std::string ca = edge.certificate().string();
  const CurlResult none = curl(d, {"--cacert", ca, url});
  EXPECT_NE(none.status, "200") << none.log;
  const CurlResult stranger = curl(d, {"--cacert", ca, "--cert", (d / "other.crt").string(), "--key",
                                       (d / "other.key").string(), url});
  EXPECT_NE(stranger.status, "200") << stranger.log;
  const CurlResult scraper = curl(d, {"--cacert", ca, "--cert", (d / "prom.crt").string(), "--key",
                                      (d / "prom.key").string(), url});
  EXPECT_EQ(scraper.status, "200") << scraper.log;
  EXPECT_NE(scraper.body.find("edge_hsm_state{state=\"available\"} 1"), std::string::npos);
  EXPECT_EQ(edge.stop(), 0) << edge.log();
}

TEST(MetricsConfig, BadMaterialOrATakenPortStopsTheStartWithTheReason) {
  EdgedOptions o;
  o.extra = {{"metrics.listen", "127.0.0.1:9464"},
             {"metrics.tls.certificate", "tls/missing.crt"},
             {"metrics.tls.private_key", "tls/edge.key"}};
  std::string why = start_failure(o);
  EXPECT_NE(why.find("status 5"), std::string::npos) << why;
  EXPECT_NE(why.find("cannot load metrics.tls.certificate"), std::string::npos) << why;

  o.extra = {{"metrics.listen", "127.0.0.1:9464"}, {"metrics.tls.certificate", "tls/edge.crt"}};
  why = start_failure(o);
  EXPECT_NE(why.find("status 5"), std::string::npos) << why;
  EXPECT_NE(why.find("metrics.tls.private_key is not"), std::string::npos) << why;

  // The port is taken (here by a listener of our own).
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const sockaddr_in a = loopback(kMetricsPort);
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  o.extra = {{"metrics.listen", "127.0.0.1:9464"}};
  why = start_failure(o);
  ::close(fd);
  EXPECT_NE(why.find("status 5"), std::string::npos) << why;
  EXPECT_NE(why.find("metrics: cannot serve on '127.0.0.1:9464'"), std::string::npos) << why;

  // A name, not an address: refused by the property registry (configuration error).
  o.extra = {{"metrics.listen", "localhost:9464"}};
  why = start_failure(o);
  EXPECT_NE(why.find("status 3"), std::string::npos) << why;
  EXPECT_NE(why.find("is not an IP address"), std::string::npos) << why;
}

}  // namespace
}  // namespace edge::test
