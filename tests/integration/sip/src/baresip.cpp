// Runs a real baresip outbound client for a test and reads its SIP trace.
#include "edge/test/sip/baresip.h"

#include <stdexcept>
#include <thread>

#include "edge/test/sip/test_ua.h"

namespace edge::test {
namespace {

std::filesystem::path module_dir() {
  for (const char* d : {"/usr/lib/baresip/modules", "/usr/lib/x86_64-linux-gnu/baresip/modules"}) {
    if (std::filesystem::exists(std::filesystem::path(d) / "account.so")) return d;
  }
  throw std::runtime_error("baresip modules not found: install the Debian package baresip-core");
}

// "127.0.0.1:5080" or "[::1]:5080".
std::optional<Endpoint> parse_endpoint(std::string_view s) {
  std::size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string host(s.substr(0, colon));
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(host, ec);
  if (ec) return std::nullopt;
  try {
    int port = std::stoi(std::string(s.substr(colon + 1)));
    return Endpoint{addr, static_cast<std::uint16_t>(port)};
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::vector<SipTraceEntry> parse_baresip_trace(std::string_view out) {
  // Each traced message: ESC"[36;1m#\n" "PROTO src -> dst\n" message ESC"[;m".
  static constexpr std::string_view kStart = "\x1b[36;1m#\n";
  static constexpr std::string_view kEnd = "\x1b[;m";
  std::vector<SipTraceEntry> entries;
  for (std::size_t at = out.find(kStart); at != std::string_view::npos; at = out.find(kStart, at)) {
    at += kStart.size();
    std::size_t eol = out.find('\n', at);
    std::size_t end = out.find(kEnd, at);
    if (eol == std::string_view::npos || end == std::string_view::npos) break;  // still being written
    std::string_view line = out.substr(at, eol - at);
    std::string_view text = out.substr(eol + 1, end - eol - 1);
    at = end;
    std::size_t sp = line.find(' ');
    std::size_t arrow = line.find(" -> ");
    if (sp == std::string_view::npos || arrow == std::string_view::npos || arrow <= sp) continue;
    auto src = parse_endpoint(line.substr(sp + 1, arrow - sp - 1));
    auto dst = parse_endpoint(line.substr(arrow + 4));
    if (!src || !dst) continue;
    try {
      entries.push_back({std::string(line.substr(0, sp)), *src, *dst, SipMessage::parse(text)});
    } catch (const ParseError&) {
      continue;  // a keep-alive or a fragment: not a SIP message
    }
  }
  return entries;
}

BaresipProcess::BaresipProcess(BaresipOptions options) : options_(std::move(options)) {
  const auto program = find_program("baresip", "baresip-core");
  const auto modules = module_dir();
  if (options_.outbound.port == 0) throw std::invalid_argument("BaresipProcess: outbound endpoint not set");
  if (options_.transport != Transport::udp && options_.transport != Transport::tcp &&
      options_.transport != Transport::tls) {
    throw std::invalid_argument("BaresipProcess: baresip 1.0 speaks UDP, TCP or TLS");
  }
  if (options_.instance_uuid.empty()) options_.instance_uuid = random_uuid();
  dir_ = std::make_unique<TempDir>("edge-baresip");
  config_dir_ = dir_->path() / "config";
  std::filesystem::create_directories(config_dir_);

  const std::string bind = options_.outbound.address.to_string();
  // Headless: no stdio (no terminal to read), aubridge stands in for a sound
  // card (ausine would refuse 8 kHz PCMU and make baresip answer 486).
  std::string config =
      "poll_method epoll\n"
      "sip_listen " +
      (options_.outbound.address.is_v6() ? "[" + bind + "]" : bind) +
      ":0\n"
      "audio_player aubridge,nil\n"
      "audio_source aubridge,nil\n"
      "audio_alert aubridge,nil\n"
      "module_path " +
      modules.string() +
      "\n"
      "module g711.so\n"
      "module aubridge.so\n" +
      std::string(options_.sip_outbound ? "module_tmp uuid.so\n" : "") +  // no uuid: no +sip.instance
      "module_tmp account.so\n"
      "module_app menu.so\n";
  if (!options_.ca_file.empty()) config += "sip_cafile " + options_.ca_file.string() + "\n";
  write_file(config_dir_ / "config", config);
  // The uuid module reads the instance id verbatim: a trailing newline would become part of it.
  write_file(config_dir_ / "uuid", options_.instance_uuid);
  const std::string tp(uri_transport(options_.transport));
  std::string account = "<sip:" + options_.user + "@" + options_.domain + ";transport=" + tp +
                        ">;outbound=\"sip:" + options_.outbound.host_port() + ";transport=" + tp + "\"" +
                        (options_.sip_outbound ? ";sipnat=outbound" : "") +
                        ";regint=" + std::to_string(options_.regint) + ";answermode=" + options_.answermode;
  for (const auto& extra : options_.extra_account_params) account += ";" + extra;
  write_file(config_dir_ / "accounts", account + "\n");

  ProcessOptions p;
  p.program = program;
  p.args = {"-f", config_dir_.string(), "-n", bind, "-t", std::to_string(options_.lifetime.count()), "-s"};
  p.log_file = dir_->path() / "baresip.log";
  p.working_dir = dir_->path();
  process_ = std::make_unique<ChildProcess>(p);
}

BaresipProcess::~BaresipProcess() { stop(); }

std::string BaresipProcess::instance_urn() const { return "urn:uuid:" + options_.instance_uuid; }
std::string BaresipProcess::aor() const { return "sip:" + options_.user + "@" + options_.domain; }
const std::filesystem::path& BaresipProcess::config_dir() const { return config_dir_; }
const std::filesystem::path& BaresipProcess::log_file() const { return process_->log_file(); }
std::string BaresipProcess::output() const { return process_ ? process_->log() : std::string(); }
std::vector<SipTraceEntry> BaresipProcess::sip_trace() const { return parse_baresip_trace(output()); }

bool BaresipProcess::wait_for_output(std::string_view needle, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool alive = running();
    if (output().find(needle) != std::string::npos) return true;
    if (!alive || std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::optional<SipTraceEntry> BaresipProcess::wait_for_trace(
    const std::function<bool(const SipTraceEntry&)>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool alive = running();
    for (auto& e : sip_trace()) {
      if (pred(e)) return e;
    }
    if (!alive || std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::optional<SipTraceEntry> BaresipProcess::wait_registered(std::chrono::milliseconds timeout) {
  return wait_for_trace(
      [](const SipTraceEntry& e) {
        const auto& m = e.message;
        // The 200 to an un-REGISTER carries no Contact: only a live binding counts.
        return m.is_response() && m.status() / 100 == 2 && m.cseq_method() == "REGISTER" &&
               m.has_header("Contact");
      },
      timeout);
}

bool BaresipProcess::running() { return process_ && process_->running(); }

void BaresipProcess::stop() {
  if (process_) process_->stop();
}

}  // namespace edge::test
