// EdgedProcess: writes edged.conf, runs build/bin/edged in a temp state dir, talks to it by signals and its
// log.
#include "edged_process.h"

#include <signal.h>

#include <charconv>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace edge::test {
namespace {

using Clock = std::chrono::steady_clock;

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string render_config(const EdgedOptions& o) {
  std::ostringstream c;
  c << "# written by tests/integration/edge EdgedProcess\n"
    << "hsm.module = softhsm-lab\n"
    << "hsm.token = edge-lab\n"
    << "hsm.pin_file = hsm/user-pin\n"
    << "sip.flow_token.key_set = " << o.key_set << "\n";
  auto listen = [&](const char* t, std::uint16_t port) {
    if (port != 0) c << "listen = " << t << " 127.0.0.1 " << port << "\n";
  };
  listen("udp", o.udp_port);
  listen("tcp", o.tcp_port);
  listen("tls", o.tls_port);
  listen("ws", o.ws_port);
  listen("wss", o.wss_port);
  c << "core = " << o.core << "\n"
    << "tls.certificate = tls/edge.crt\n"
    << "tls.private_key = tls/edge.key\n"
    << "tls.client_certs = none\n"
    << "sip.flow_timer = " << o.flow_timer << "\n"
    << "sip.require_path = false\n"
    << "log.level = " << o.log_level << "\n";
  if (o.idle_timeout_ms) c << "limits.idle_timeout_ms = " << *o.idle_timeout_ms << "\n";
  if (o.flow_grace_ms) c << "limits.flow_timeout_grace_ms = " << *o.flow_grace_ms << "\n";
  for (const auto& [k, v] : o.extra) c << k << " = " << v << "\n";
  return c.str();
}

std::vector<std::string> lines_with(const std::string& text, std::string_view needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> parse_log_fields(std::string_view line) {
  std::map<std::string, std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '=') ++i;
    if (i >= line.size() || line[i] != '=') {  // a word without '=' (timestamp, level)
      while (i < line.size() && line[i] != ' ') ++i;
      continue;
    }
    std::string key(line.substr(start, i - start));
    ++i;
    std::string value;
    if (i < line.size() && line[i] == '"') {
      ++i;
      while (i < line.size() && line[i] != '"') value += line[i++];
      ++i;
    } else {
      while (i < line.size() && line[i] != ' ') value += line[i++];
    }
    out[key] = value;
  }
  return out;
}

std::uint64_t EdgedStatus::number(const std::string& key) const {
  const std::string v = text(key);
  std::uint64_t n = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size()) {
    throw std::runtime_error("edged status field " + key + "=" + v + " is not a number");
  }
  return n;
}

std::string EdgedStatus::text(const std::string& key) const {
  auto it = fields.find(key);
  if (it == fields.end()) throw std::runtime_error("edged status line has no field " + key);
  return it->second;
}

std::filesystem::path write_aliasing_core_template(const std::filesystem::path& dir) {
  const std::filesystem::path stock = EDGE_SIP_KAMAILIO_TEMPLATE;
  std::string text = read_file(stock);
  const std::string anchor = "request_route {\n";
  const auto at = text.find(anchor);
  if (at == std::string::npos) throw std::runtime_error("no 'request_route {' in " + stock.string());
  text.insert(at + anchor.size(),
              "\t# Edge tests: a TCP connection also answers for its Via sent-by port, so\n"
              "\t# requests to the edge's Path / Record-Route URI (127.0.0.1:5060;transport=tcp)\n"
              "\t# go down the connection the edge opened to us (its core link).\n"
              "\tif (proto == TCP) force_tcp_alias();\n");
  const auto out = dir / "kamailio-edge.cfg.in";
  write_file(out, text);
  return out;
}

std::filesystem::path edged_program() { return EDGE_EDGED_PROGRAM; }
std::filesystem::path edge_hsm_program() { return EDGE_HSM_PROGRAM; }
std::filesystem::path edgectl_program() { return EDGECTL_PROGRAM; }

EdgedProcess::EdgedProcess(EdgedOptions options)
    : options_(std::move(options)), dir_(std::make_unique<TempDir>("edge-edged")) {
  if (!std::filesystem::exists(edged_program())) {
    throw std::runtime_error("edged not built: " + edged_program().string() +
                             " (cmake --build ... --target edged)");
  }
  // SoftHSM is what the lab mode provisions: a missing one fails the test here,
  // with a message, rather than as a puzzling start-up error.
  find_program("softhsm2-util", "softhsm2");
  config_file_ = dir_->path() / "edged.conf";
  if (options_.write_config) write_file(config_file_, render_config(options_));
  launch();
}

void EdgedProcess::launch() {
  ProcessOptions p;
  p.program = edged_program();
  p.args = {"--state-dir", dir_->path().string()};
  p.args.insert(p.args.end(), options_.args.begin(), options_.args.end());
  if (!options_.env.empty()) {
    // env(1) execs edged in place: the process (and its pid) is edged's.
    p.program = find_program("env", "coreutils");
    p.args.insert(p.args.begin(), edged_program().string());
    p.args.insert(p.args.begin(), options_.env.begin(), options_.env.end());
  }
  if (!options_.wrapper.empty()) {
    p.args.insert(p.args.begin(), p.program.string());
    p.args.insert(p.args.begin(), options_.wrapper.begin() + 1, options_.wrapper.end());
    p.program = options_.wrapper.front();
  }
  if (options_.write_config) p.args.insert(p.args.end(), {"--config", config_file_.string()});
  // One log file per start, so a restart's log is read from its beginning.
  p.log_file =
      dir_->path() / (starts_ == 0 ? std::string("edged.log") : "edged-" + std::to_string(starts_) + ".log");
  ++starts_;
  p.working_dir = dir_->path();
  process_ = std::make_unique<ChildProcess>(p);
  const auto deadline = Clock::now() + options_.start_timeout;
  for (;;) {
    const std::string text = log();
    if (text.find("event=started") != std::string::npos) break;
    if (!process_->running()) {
      throw std::runtime_error("edged exited during start-up with status " +
                               std::to_string(process_->exit_status().value_or(-1)) + "; config:\n" +
                               config_text() + "log:\n" + text);
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error("edged did not log event=started within " +
                               std::to_string(options_.start_timeout.count()) + " ms; log:\n" + text);
    }
    sleep_ms(20);
  }
}

int EdgedProcess::kill9() {
  if (!process_) return 255;
  ::kill(process_->pid(), SIGKILL);
  return process_->stop(std::chrono::milliseconds(100));
}

void EdgedProcess::restart() {
  if (process_ && process_->running()) stop();
  launch();
}

EdgedProcess::~EdgedProcess() {
  if (process_) process_->stop(std::chrono::milliseconds(3000));  // SIGTERM, SIGKILL after 3 s
}

pid_t EdgedProcess::pid() const { return process_->pid(); }

Endpoint EdgedProcess::endpoint(Transport t) const {
  std::uint16_t port = 0;
  switch (t) {
    case Transport::udp:
      port = options_.udp_port;
      break;
    case Transport::tcp:
      port = options_.tcp_port;
      break;
    case Transport::tls:
      port = options_.tls_port;
      break;
    case Transport::ws:
      port = options_.ws_port;
      break;
    case Transport::wss:
      port = options_.wss_port;
      break;
  }
  if (port == 0) throw std::logic_error("this edged has no " + std::string(via_token(t)) + " listener");
  return loopback(port);
}

std::string EdgedProcess::config_text() const { return read_file(config_file_); }
std::string EdgedProcess::log() const { return process_ ? process_->log() : std::string(); }

std::vector<std::string> EdgedProcess::events(std::string_view name) const {
  return lines_with(log(), "event=" + std::string(name) + " ");
}

bool EdgedProcess::wait_for_log(std::string_view needle, std::chrono::milliseconds timeout,
                                std::size_t after) const {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const std::string text = log();
    if (text.size() > after && text.find(needle, after) != std::string::npos) return true;
    if (Clock::now() > deadline) return false;
    sleep_ms(20);
  }
}

EdgedStatus EdgedProcess::status(std::chrono::milliseconds timeout) {
  const std::size_t before = log().size();
  if (kill(process_->pid(), SIGUSR1) != 0) throw std::runtime_error("cannot signal edged (SIGUSR1)");
  if (!wait_for_log("event=status ", timeout, before)) {
    throw std::runtime_error("edged logged no event=status after SIGUSR1; log:\n" + log());
  }
  // The line may still be being written: wait for its newline.
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const std::string text = log();
    const auto at = text.find("event=status ", before);
    const auto eol = text.find('\n', at);
    if (eol != std::string::npos) {
      const auto bol = text.rfind('\n', at);
      const std::size_t from = bol == std::string::npos ? 0 : bol + 1;
      return EdgedStatus{parse_log_fields(std::string_view(text).substr(from, eol - from))};
    }
    if (Clock::now() > deadline) throw std::runtime_error("edged status line never ended");
    sleep_ms(10);
  }
}

bool EdgedProcess::reload(std::chrono::milliseconds timeout) {
  const std::size_t before = log().size();
  if (kill(process_->pid(), SIGHUP) != 0) throw std::runtime_error("cannot signal edged (SIGHUP)");
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const std::string text = log();
    if (text.find("event=reloaded ", before) != std::string::npos) return true;
    if (text.find("event=reload_failed ", before) != std::string::npos) return false;
    if (Clock::now() > deadline) return false;
    sleep_ms(20);
  }
}

int EdgedProcess::edge_hsm(const std::vector<std::string>& args, std::string* output) const {
  return run_tool(edge_hsm_program(), args, output, "edge-hsm");
}

bool EdgedProcess::running() { return process_ && process_->running(); }

int EdgedProcess::run_tool(const std::filesystem::path& program, const std::vector<std::string>& args,
                           std::string* output, const std::string& name) const {
  ProcessOptions p;
  p.program = find_program("env", "coreutils");
  p.args = {"EDGE_STATE_DIR=" + dir_->path().string(), program.string()};
  p.args.insert(p.args.end(), args.begin(), args.end());
  static int runs = 0;
  p.log_file = dir_->path() / (name + "-" + std::to_string(++runs) + ".log");
  ChildProcess tool(p);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (tool.running() && Clock::now() < deadline) sleep_ms(5);
  const int status = tool.stop(std::chrono::milliseconds(500));
  if (output) *output = tool.log();
  return status;
}

int EdgedProcess::edgectl(const std::vector<std::string>& args, std::string* output) const {
  std::vector<std::string> all = {"--socket", (dir_->path() / "mgmt.sock").string()};
  all.insert(all.end(), args.begin(), args.end());
  return run_tool(edgectl_program(), all, output, "edgectl");
}

std::string start_failure(EdgedOptions o) {
  try {
    EdgedProcess edge(std::move(o));
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "edged started";
}

int EdgedProcess::stop() {
  if (!process_) return 255;
  return process_->stop(std::chrono::milliseconds(5000));
}

}  // namespace edge::test
