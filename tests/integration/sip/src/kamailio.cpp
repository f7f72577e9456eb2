// Runs the real Kamailio core for a test: render config, start in its own group, wait, stop by pid.
#include "edge/test/sip/kamailio.h"

#include <signal.h>

#include <stdexcept>
#include <thread>

#include "edge/test/sip/test_ua.h"

#ifndef EDGE_SIP_KAMAILIO_DIR
#error "EDGE_SIP_KAMAILIO_DIR must name tests/integration/sip/kamailio"
#endif

namespace edge::test {
namespace {

using Clock = std::chrono::steady_clock;

// One OPTIONS to the core itself over that transport; true on its 200.
bool probe(Transport t, const Endpoint& where) {
  try {
    TestUa ua("probe", "127.0.0.1");
    ConnectOptions o;
    o.timeout = Millis(300);
    ua.connect(t, where, o);
    SipMessage m = SipMessage::request("OPTIONS", "sip:" + where.host_port());
    m.add_header("Via", ua.via(TestUa::new_branch()));
    m.add_header("Max-Forwards", "70");
    m.add_header("From", "<sip:probe@127.0.0.1>;tag=" + TestUa::new_tag());
    m.add_header("To", "<sip:" + where.host_port() + ">");
    m.add_header("Call-ID", TestUa::new_call_id());
    m.add_header("CSeq", "1 OPTIONS");
    ua.send(m);
    auto r = ua.try_receive(Millis(300));
    return r && r->status() == 200;
  } catch (const std::exception&) {
    return false;  // not up yet
  }
}

}  // namespace

std::string render_template(std::string text, const std::vector<std::pair<std::string, std::string>>& values) {
  for (const auto& [name, value] : values) {
    const std::string key = "@" + name + "@";
    for (std::size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + value.size())) {
      text.replace(at, key.size(), value);
    }
  }
  // A placeholder left over is @[A-Z][A-Z0-9_]*@ (a plain scan: std::regex trips GCC 12's
  // -Wmaybe-uninitialized under ASan, and this is all it was used for).
  const auto upper = [](char c) { return c >= 'A' && c <= 'Z'; };
  for (std::size_t at = text.find('@'); at != std::string::npos; at = text.find('@', at + 1)) {
    std::size_t end = at + 1;
    if (end >= text.size() || !upper(text[end])) continue;
    while (end < text.size() && (upper(text[end]) || (text[end] >= '0' && text[end] <= '9') || text[end] == '_')) {
      ++end;
    }
    if (end < text.size() && text[end] == '@') {
      throw std::runtime_error("template placeholder without a value: " + text.substr(at, end + 1 - at));
    }
  }
  return text;
}

KamailioProcess::KamailioProcess(KamailioOptions options) : options_(std::move(options)) {
  const auto program = find_program("kamailio", "kamailio");
  dir_ = std::make_unique<TempDir>("edge-kamailio");
  const auto& dir = dir_->path();

  std::string defines;
  std::string listen;
  auto add_listen = [&](std::string_view proto, std::string_view host, std::uint16_t port) {
    listen += "listen=" + std::string(proto) + ":" + std::string(host) + ":" + std::to_string(port) + "\n";
  };
  for (std::string_view proto : {"udp", "tcp"}) {
    add_listen(proto, "127.0.0.1", options_.port);
    if (options_.ipv6) add_listen(proto, "[::1]", options_.port);
  }
  std::string tls_config;
  if (options_.tls_port != 0 || options_.wss_port != 0) {
    defines += "#!define WITH_TLS\n";
    if (options_.tls_cert.cert.empty()) {
      std::filesystem::create_directories(dir / "pki");
      pki_ = std::make_unique<TestPki>(dir / "pki");
      options_.tls_cert = pki_->issue("core-kamailio");
      ca_file_ = pki_->ca_file();
    }
    // The tls module's own file format; client certificates only when a CA is given.
    std::string verify = options_.tls_ca.empty() ? "no" : "yes";
    std::string server = "[server:default]\nmethod = TLSv1.2+\nverify_certificate = " + verify +
                         "\nrequire_certificate = " + verify + "\nprivate_key = " + options_.tls_cert.key.string() +
                         "\ncertificate = " + options_.tls_cert.cert.string() + "\n";
    if (!options_.tls_ca.empty()) server += "ca_list = " + options_.tls_ca.string() + "\n";
    tls_config = (dir / "tls.cfg").string();
    write_file(tls_config, server +
                               "\n[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
                               "require_certificate = no\n");
    if (options_.tls_port != 0) add_listen("tls", "127.0.0.1", options_.tls_port);
  }
  if (options_.ws_port != 0 || options_.wss_port != 0) {
    defines += "#!define WITH_WEBSOCKET\n";
    if (options_.ws_port != 0) add_listen("tcp", "127.0.0.1", options_.ws_port);
    if (options_.wss_port != 0) add_listen("tls", "127.0.0.1", options_.wss_port);
  }

  auto template_path = options_.config_template.empty()
                           ? std::filesystem::path(EDGE_SIP_KAMAILIO_DIR) / "kamailio.cfg.in"
                           : options_.config_template;
  std::string text = read_file(template_path);
  if (text.empty()) throw std::runtime_error("cannot read Kamailio config template " + template_path.string());
  config_file_ = dir / "kamailio.cfg";
  write_file(config_file_, render_template(text, {{"DEFINES", defines},
                                                  {"LISTEN", listen},
                                                  {"SERVER_HEADER", options_.server_header},
                                                  {"TLS_CONFIG", tls_config}}));

  // -DD keeps the main process in the foreground as our child (its workers
  // share its process group); -E sends the log to stderr, i.e. the log file.
  ProcessOptions p;
  p.program = program;
  p.args = {"-f",  config_file_.string(),
            "-P",  (dir / "kamailio.pid").string(),
            "-w",  dir.string(),
            "-Y",  dir.string(),
            "-DD", "-E",
            "-m",  std::to_string(options_.shm_mb),
            "-M",  std::to_string(options_.pkg_mb)};
  p.log_file = dir / "kamailio.log";
  process_ = std::make_unique<ChildProcess>(p);

  const auto deadline = Clock::now() + options_.start_timeout;
  for (;;) {
    if (!process_->running()) {
      throw std::runtime_error("kamailio exited (status " + std::to_string(process_->exit_status().value_or(-1)) +
                               ") before it was ready; log:\n" + log());
    }
    if (probe(Transport::udp, endpoint(Transport::udp)) && probe(Transport::tcp, endpoint(Transport::tcp))) break;
    if (Clock::now() > deadline) {
      throw std::runtime_error("kamailio did not answer OPTIONS on " + endpoint(Transport::udp).host_port() +
                               " within " + std::to_string(options_.start_timeout.count()) + " ms; log:\n" + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

KamailioProcess::~KamailioProcess() { stop(); }

Endpoint KamailioProcess::endpoint(Transport transport, bool v6) const {
  std::uint16_t port = 0;
  switch (transport) {
    case Transport::udp:
    case Transport::tcp: port = options_.port; break;
    case Transport::tls: port = options_.tls_port; break;
    case Transport::ws: port = options_.ws_port; break;
    case Transport::wss: port = options_.wss_port; break;
  }
  if (port == 0) throw std::logic_error("this Kamailio has no " + std::string(via_token(transport)) + " listener");
  if (v6 && (!options_.ipv6 || (transport != Transport::udp && transport != Transport::tcp))) {
    throw std::logic_error("this Kamailio has no IPv6 " + std::string(via_token(transport)) + " listener");
  }
  return loopback(port, v6);
}

std::string KamailioProcess::route_uri(Transport transport) const {
  return "sip:" + endpoint(transport).host_port() + ";transport=" + std::string(uri_transport(transport)) + ";lr";
}

const std::filesystem::path& KamailioProcess::log_file() const { return process_->log_file(); }
std::string KamailioProcess::log() const { return process_ ? process_->log() : std::string(); }
bool KamailioProcess::running() { return process_ && process_->running(); }

void KamailioProcess::stop() {
  if (process_) process_->stop();
}

void KamailioProcess::signal_group(int sig) {
  if (process_ && process_->pid() > 0) ::kill(-process_->pid(), sig);
}

}  // namespace edge::test
