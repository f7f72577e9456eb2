// sipload: RFC 5626 load generator — outbound clients on one side, a registrar/proxy simulator on the other.
//
// Clients (UDP, TCP, TLS, WS or WSS, spread over several 127.0.0.x source addresses) REGISTER through the
// edge with +sip.instance, reg-id, ;ob and "Supported: outbound, path", send CRLF (streams, also inside a
// WS text frame, or a WS ping) or STUN (UDP) keep-alives and answer whatever arrives on their flow. The core
// side accepts the edge's connection, stores each binding's Path and, at a target rate, sends in-dialog
// MESSAGE/OPTIONS or whole INVITE/ACK/BYE calls toward the clients through that Path (the flow token).
// Everything is bounded in count and time and stays on loopback.
// Output: one "key=value" line per figure (see --help).
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/program_options.hpp>

#include <openssl/evp.h>
#include <openssl/ssl.h>

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------------------
// Options

struct Options {
  std::string edge_host = "127.0.0.1";
  std::uint16_t edge_port = 5060;
  std::string core_host = "127.0.0.1";
  std::uint16_t core_port = 5080;
  // > 0: before any client starts, wait up to this long for the edge to connect to the core side
  // and for its first CRLF ping to be answered (edged's core link is up only then, and answers 503
  // at once while it is down); 0: start at once (an edge that connects on the first request).
  double await_core_link_s = 0;
  std::string transport = "tcp";  // udp, tcp, tls, ws, wss
  std::string tls_ca;             // verify the edge's certificate against this file; empty: no verification
  std::string ws_keepalive = "crlf";  // WS keep-alive: CRLFCRLF in a text frame, or a WS ping
  int clients = 100;
  int sources = 8;            // client source addresses 127.0.0.2 .. 127.0.0.(1+sources)
  int reg_sources = 0;        // > 0: client source addresses 127.0.20.1 .. instead (250 per third octet)
  int retry_503_ms = 0;       // > 0: a REGISTER answered 503 is sent again after this many ms
  int register_window = 500;  // REGISTERs (with their connects) outstanding at once
  double keepalive_s = 20;    // CRLF (TCP) / STUN (UDP) interval per flow; 0: none
  int expires = 3600;
  double hold_s = 0;  // idle time after registration (memory per idle flow)
  double rate = 0;    // core -> client requests per second; 0: no load phase
  double duration_s = 10;
  std::string mix = "message";  // message, options, call or a comma list (round robin)
  std::string ramp;             // START:STEP:MAX
  double step_s = 5;
  double max_p99_ms = 100;
  int timeout_ms = 4000;
  int edge_pid = 0;
  double refresh_at_s = -1;  // load phase: every client re-REGISTERs at this time (new tokens)
  double exec_at_s = -1;     // load phase: run exec_cmd (sh -c) at this time
  std::string exec_cmd;
  std::string mark_cmd;      // run (sh -c, waited for) just before and just after the load phase
  double max_seconds = 600;  // hard bound on the whole run
  std::string label;
  // Forged-token flood (with --rate): a quiet load phase, then the same load with the flood beside it.
  double flood_rate = 0;  // forged requests per second over UDP; 0: no flood
  int flood_sources = 1;  // flood source addresses 127.0.10.1 .. (250 per third octet)
  std::string flood_method = "MESSAGE";
  // Calls with a new TCP flow per call (no registration): INVITE ;ob, ACK and the core's BYE over the
  // Record-Route token, then the client closes.
  int flow_calls = 0;     // calls in the measured phase; 0: none
  int call_window = 200;  // flow calls in flight at once
  int warmup_calls = 20;  // before the measured phase (the edge's core connection, caches)
};

// ---------------------------------------------------------------------------------------------------------
// Minimal SIP text handling: enough to route and answer; the edge under test is what must be strict.

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string_view expand_compact(std::string_view name) {
  if (name.size() != 1) return name;
  switch (std::tolower(static_cast<unsigned char>(name[0]))) {
    case 'v':
      return "Via";
    case 'f':
      return "From";
    case 't':
      return "To";
    case 'i':
      return "Call-ID";
    case 'm':
      return "Contact";
    case 'l':
      return "Content-Length";
    case 'k':
      return "Supported";
    case 'c':
      return "Content-Type";
    default:
      return name;
  }
}

struct SipMessage {
  std::string text;
  std::string_view start;
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  bool is_response = false;
  int status = 0;
  std::string_view method;

  bool parse() {
    std::string_view all(text);
    const auto eol = all.find("\r\n");
    if (eol == std::string_view::npos) return false;
    start = all.substr(0, eol);
    if (start.substr(0, 8) == "SIP/2.0 ") {
      is_response = true;
      status = std::atoi(std::string(start.substr(8, 3)).c_str());
    } else {
      method = start.substr(0, start.find(' '));
    }
    std::size_t pos = eol + 2;
    while (pos < all.size()) {
      const auto e = all.find("\r\n", pos);
      if (e == std::string_view::npos || e == pos) break;
      std::string_view line = all.substr(pos, e - pos);
      pos = e + 2;
      const auto colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      headers.emplace_back(expand_compact(trim(line.substr(0, colon))), trim(line.substr(colon + 1)));
    }
    return true;
  }
  std::string_view header(std::string_view name) const {
    for (const auto& [n, v] : headers)
      if (iequals(n, name)) return v;
    return {};
  }
  std::vector<std::string_view> all(std::string_view name) const {
    std::vector<std::string_view> out;
    for (const auto& [n, v] : headers)
      if (iequals(n, name)) out.push_back(v);
    return out;
  }
  // The Request-URI.
  std::string_view ruri() const {
    const auto a = start.find(' ');
    const auto b = start.rfind(' ');
    return a == b ? std::string_view{} : start.substr(a + 1, b - a - 1);
  }
};

// The value of ";name=" in a header (branch, tag), empty when absent.
std::string_view param(std::string_view h, std::string_view name) {
  std::string key = ";" + std::string(name) + "=";
  const auto p = h.find(key);
  if (p == std::string_view::npos) return {};
  auto v = h.substr(p + key.size());
  return v.substr(0, v.find_first_of(";>, \r"));
}

// The URI inside <...> of a name-addr (or the whole value up to ';').
std::string_view addr_uri(std::string_view h) {
  const auto lt = h.find('<');
  if (lt != std::string_view::npos) {
    const auto gt = h.find('>', lt);
    return h.substr(lt + 1, gt - lt - 1);
  }
  return h.substr(0, h.find(';'));
}

// Splits a comma-separated header value list (Path, Record-Route) into name-addr values.
std::vector<std::string> split_list(const std::vector<std::string_view>& values) {
  std::vector<std::string> out;
  for (auto v : values) {
    int depth = 0;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= v.size(); ++i) {
      if (i < v.size() && v[i] == '<') ++depth;
      if (i < v.size() && v[i] == '>') --depth;
      if (i == v.size() || (v[i] == ',' && depth == 0)) {
        auto item = trim(v.substr(start, i - start));
        if (!item.empty()) out.emplace_back(item);
        start = i + 1;
      }
    }
  }
  return out;
}

// Content-Length framing over a byte stream. Leading CRLFs (keep-alive pongs) are counted and skipped.
class StreamFramer {
 public:
  void append(const char* data, std::size_t n) { buf_.append(data, n); }
  // Returns the next complete message, or nullopt; *pongs counts CRLFs skipped between messages.
  std::optional<std::string> next(int* pongs, bool* bad) {
    std::size_t skip = 0;
    while (skip + 1 < buf_.size() && buf_[skip] == '\r' && buf_[skip + 1] == '\n') {
      skip += 2;
      ++*pongs;
    }
    if (skip) buf_.erase(0, skip);
    const auto end = buf_.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (buf_.size() > 65536) *bad = true;
      return std::nullopt;
    }
    std::size_t body = 0;
    std::string_view head(buf_.data(), end);
    for (std::size_t pos = 0; pos < head.size();) {
      auto e = head.find("\r\n", pos);
      if (e == std::string_view::npos) e = head.size();
      auto line = head.substr(pos, e - pos);
      pos = e + 2;
      const auto colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      if (iequals(expand_compact(trim(line.substr(0, colon))), "Content-Length"))
        body = static_cast<std::size_t>(std::atol(std::string(trim(line.substr(colon + 1))).c_str()));
    }
    const auto total = end + 4 + body;
    if (buf_.size() < total) return std::nullopt;
    std::string msg = buf_.substr(0, total);
    buf_.erase(0, total);
    return msg;
  }

 private:
  std::string buf_;
};

// ---------------------------------------------------------------------------------------------------------
// WebSocket (RFC 6455) as RFC 7118 uses it: one SIP message per text frame, client frames masked.
// A small framer of our own: sipload must not share code with the edge it measures.

enum WsOpcode : std::uint8_t {
  kWsCont = 0x0,
  kWsText = 0x1,
  kWsBinary = 0x2,
  kWsClose = 0x8,
  kWsPing = 0x9,
  kWsPong = 0xA
};

std::string base64(const unsigned char* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(std::max(len, 0)));
  return out;
}

// Unpadded base64url (RFC 4648 §5), as flow tokens are written; decode returns nullopt on anything else.
std::string base64url(const std::vector<std::uint8_t>& in) {
  static constexpr char kAlpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (auto b : in) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlpha[(acc >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kAlpha[(acc << (6 - bits)) & 0x3F]);
  return out;
}
std::optional<std::vector<std::uint8_t>> unbase64url(std::string_view s) {
  std::vector<std::uint8_t> out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '-'             ? 62
            : c == '_'             ? 63
                                   : -1;
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + the RFC 6455 GUID)).
std::string ws_accept_key(std::string_view key) {
  const std::string in = std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(in.data(), in.size(), md, &len, EVP_sha1(), nullptr) != 1) return {};
  return base64(md, len);
}

// Masking protects intermediaries' caches from crafted payloads (RFC 6455 §10.3), not secrecy; on loopback
// a fast generator is enough. Also the source of Sec-WebSocket-Key nonces.
std::uint32_t ws_mask_key() {
  static std::uint64_t x = 0x9E3779B97F4A7C15ULL ^ static_cast<std::uint64_t>(getpid());
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return static_cast<std::uint32_t>(x >> 16);
}

// One complete client frame (FIN set, masked) carrying `payload`.
std::string ws_frame(std::uint8_t opcode, std::string_view payload) {
  std::string f;
  f.reserve(payload.size() + 14);
  f.push_back(static_cast<char>(0x80 | opcode));
  const std::size_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xFFFF) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xFF));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i)
      f.push_back(static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xFF));
  }
  const std::uint32_t key = ws_mask_key();
  const std::array<char, 4> mask{static_cast<char>(key >> 24), static_cast<char>(key >> 16),
                                 static_cast<char>(key >> 8), static_cast<char>(key)};
  f.append(mask.data(), 4);
  for (std::size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return f;
}

struct WsFrame {
  std::uint8_t opcode = 0;
  bool fin = true;
  std::string payload;
};

// Server frames off a byte stream. A masked server frame, reserved bits, a fragmented or oversized control
// frame, or a frame above 64 KiB (no SIP message of ours is near that) is a protocol error: *bad.
class WsDecoder {
 public:
  void append(const char* data, std::size_t n) { buf_.append(data, n); }
  std::optional<WsFrame> next(bool* bad) {
    if (buf_.size() < 2) return std::nullopt;
    const auto b0 = static_cast<std::uint8_t>(buf_[0]);
    const auto b1 = static_cast<std::uint8_t>(buf_[1]);
    WsFrame f;
    f.fin = (b0 & 0x80) != 0;
    f.opcode = b0 & 0x0F;
    if ((b0 & 0x70) != 0 || (b1 & 0x80) != 0 || (f.opcode >= 0x8 && (!f.fin || (b1 & 0x7F) > 125))) {
      *bad = true;
      return std::nullopt;
    }
    std::size_t len = b1 & 0x7F, head = 2;
    if (len == 126) {
      if (buf_.size() < 4) return std::nullopt;
      len = (static_cast<std::size_t>(static_cast<std::uint8_t>(buf_[2])) << 8) |
            static_cast<std::uint8_t>(buf_[3]);
      head = 4;
    } else if (len == 127) {
      if (buf_.size() < 10) return std::nullopt;
      std::uint64_t l = 0;
      for (int i = 0; i < 8; ++i) l = (l << 8) | static_cast<std::uint8_t>(buf_[2 + i]);
      if (l > kMaxFrame) {
        *bad = true;
        return std::nullopt;
      }
      len = static_cast<std::size_t>(l);
      head = 10;
    }
    if (len > kMaxFrame) {
      *bad = true;
      return std::nullopt;
    }
    if (buf_.size() < head + len) return std::nullopt;
    f.payload = buf_.substr(head, len);
    buf_.erase(0, head + len);
    return f;
  }

 private:
  static constexpr std::size_t kMaxFrame = 65536;
  std::string buf_;
};

// A response to `req` carrying its Via, From, To (tagged), Call-ID and CSeq.
std::string make_response(const SipMessage& req, int code, std::string_view reason, std::string_view to_tag,
                          std::string_view extra = {}) {
  std::string r = "SIP/2.0 " + std::to_string(code) + " " + std::string(reason) + "\r\n";
  for (auto v : req.all("Via")) r.append("Via: ").append(v).append("\r\n");
  for (auto v : req.all("Record-Route")) r.append("Record-Route: ").append(v).append("\r\n");
  r.append("From: ").append(req.header("From")).append("\r\n");
  auto to = req.header("To");
  r.append("To: ").append(to);
  if (param(to, "tag").empty() && !to_tag.empty()) r.append(";tag=").append(to_tag);
  r.append("\r\nCall-ID: ").append(req.header("Call-ID")).append("\r\n");
  r.append("CSeq: ").append(req.header("CSeq")).append("\r\n");
  r.append(extra);
  r.append("Content-Length: 0\r\n\r\n");
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// /proc readings of the edge process and its descendants (Kamailio forks its workers).

std::vector<int> process_tree(int root) {
  std::vector<int> out{root};
  std::map<int, std::vector<int>> children;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream in(e.path() / "stat");
    std::string s;
    std::getline(in, s);
    const auto rp = s.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream rest(s.substr(rp + 2));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    children[ppid].push_back(std::stoi(name));
  }
  for (std::size_t i = 0; i < out.size(); ++i)
    for (int c : children[out[i]]) out.push_back(c);
  return out;
}

struct ProcSample {
  double cpu_s = 0;  // utime + stime
  long pss_kb = 0;   // proportional set size (shared memory counted once across the tree)
  long rss_kb = 0;
  long hwm_kb = 0;  // peak RSS (VmHWM), summed over the tree
  int processes = 0;
};

long status_kb(const std::string& text, std::string_view key) {
  const auto p = text.find(std::string(key) + ":");
  return p == std::string::npos ? 0 : std::atol(text.c_str() + p + key.size() + 1);
}

ProcSample sample_edge(int pid) {
  ProcSample out;
  if (pid <= 0) return out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (int p : process_tree(pid)) {
    const std::string dir = "/proc/" + std::to_string(p);
    std::ifstream st(dir + "/stat");
    std::string s;
    std::getline(st, s);
    const auto rp = s.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream rest(s.substr(rp + 2));
    std::string f;
    std::vector<std::string> fields;
    while (rest >> f) fields.push_back(f);
    if (fields.size() < 13) continue;
    // On-CPU nanoseconds of every live thread (schedstat), finer than utime + stime's clock ticks;
    // the ticks of threads that already exited are added from the process's own counters.
    double sched_s = 0;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(dir + "/task", ec)) {
      std::ifstream ss(task.path() / "schedstat");
      double ns = 0;
      if (ss >> ns) sched_s += ns / 1e9;
    }
    const double ticks_s = (std::stod(fields[11]) + std::stod(fields[12])) / tick;  // utime, stime
    out.cpu_s += sched_s > 0 ? sched_s : ticks_s;
    std::ifstream sr(dir + "/smaps_rollup");
    std::stringstream ss;
    ss << sr.rdbuf();
    out.pss_kb += status_kb(ss.str(), "Pss");
    std::ifstream stt(dir + "/status");
    std::stringstream ts;
    ts << stt.rdbuf();
    out.rss_kb += status_kb(ts.str(), "VmRSS");
    out.hwm_kb += status_kb(ts.str(), "VmHWM");
    ++out.processes;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Statistics

struct Stats {
  std::vector<std::uint32_t> latency_us;
  std::map<std::string, std::uint64_t> failures;  // "408", "timeout", "no_binding", "send_error", ...
  std::uint64_t sent = 0;
  std::uint64_t ok = 0;
  double max_gap_ms = 0;
  std::optional<Clock::time_point> last_ok;

  void success(Clock::time_point sent_at, Clock::time_point now) {
    ++ok;
    latency_us.push_back(static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now - sent_at).count()));
    if (last_ok)
      max_gap_ms = std::max(max_gap_ms, std::chrono::duration<double, std::milli>(now - *last_ok).count());
    last_ok = now;
  }
  std::uint64_t failed() const {
    std::uint64_t n = 0;
    for (const auto& [k, v] : failures) n += v;
    return n;
  }
  double percentile_ms(double q) {
    if (latency_us.empty()) return 0;
    std::sort(latency_us.begin(), latency_us.end());
    const auto i = static_cast<std::size_t>(q * static_cast<double>(latency_us.size() - 1));
    return latency_us[i] / 1000.0;
  }
};

void print(const std::string& prefix, const std::string& key, const std::string& value) {
  std::cout << prefix << key << "=" << value << "\n";
}
std::string fmt(double v, int digits = 2) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

// ---------------------------------------------------------------------------------------------------------

class Load;

enum class Transport { udp, tcp, tls, ws, wss };

// One simulated outbound client: its own flow (a UDP socket, or a TCP connection, optionally under TLS,
// optionally upgraded to a WebSocket) from 127.0.0.x.
class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(Load& load, asio::io_context& io, int index);
  void start();
  void send_register();
  void keepalive();
  void close();
  bool registered() const { return registered_; }
  bool alive() const { return alive_; }
  int index() const { return index_; }
  std::string aor() const { return "sip:u" + std::to_string(index_) + "@bench.test"; }

 private:
  Load& load_;
  int index_;
  Transport tr_;
  bool udp_;
  bool tls_on_;  // tls, wss
  bool ws_on_;   // ws, wss
  tcp::socket tcp_;
  std::unique_ptr<asio::ssl::stream<tcp::socket>> tls_;  // takes tcp_ over once connected
  udp::socket udp_sock_;
  udp::endpoint edge_;
  std::string local_ip_;
  std::uint16_t local_port_ = 0;
  std::array<char, 16384> rbuf_{};
  StreamFramer framer_;
  WsDecoder ws_;
  std::string ws_msg_;  // a fragmented text message being gathered
  std::string ws_key_;  // Sec-WebSocket-Key sent in the upgrade
  std::string http_;    // the upgrade request, then the response as it arrives
  std::deque<std::string> wq_;
  bool writing_ = false;
  bool closing_ = false;  // answering the server's WS close: the queue still drains
  bool registered_ = false;
  bool alive_ = false;
  bool reg_pending_ = false;
  int cseq_ = 0;
  int reg_tries_ = 0;
  std::string reg_text_;
  asio::steady_timer reg_timer_;
  Clock::time_point reg_sent_;
  int retries_503_ = 0;  // REGISTERs sent again after a 503 (--retry-503-ms)

  void arm_retransmit();
  std::string sent_by() const;  // Via sent-by and Contact host:port
  std::string contact_param() const;

  // The byte stream under the SIP (or WS) framing: plain TCP or TLS.
  template <class Handler>
  void stream_read(Handler&& h) {
    if (tls_)
      tls_->async_read_some(asio::buffer(rbuf_), std::forward<Handler>(h));
    else
      tcp_.async_read_some(asio::buffer(rbuf_), std::forward<Handler>(h));
  }
  template <class Handler>
  void stream_write(const std::string& data, Handler&& h) {
    if (tls_)
      asio::async_write(*tls_, asio::buffer(data), std::forward<Handler>(h));
    else
      asio::async_write(tcp_, asio::buffer(data), std::forward<Handler>(h));
  }

  void on_connected();
  void on_secure();
  void ws_upgrade();
  void read_upgrade_response();
  bool check_upgrade_response(std::string_view head) const;
  void ready();
  void fail_setup(int status);
  void read();
  void on_stream_bytes(std::size_t n);
  void on_ws_bytes(std::size_t n);
  void on_ws_text(std::string text);
  void on_message(std::string text);
  void write(std::string data);
  void write_raw(std::string bytes);
  void do_write();
  void lost();
  void close_socket();
};

// A connection the edge opened to the core simulator.
class CoreConn : public std::enable_shared_from_this<CoreConn> {
 public:
  CoreConn(Load& load, tcp::socket s) : load_(load), sock_(std::move(s)) {}
  void start() { read(); }
  void write(std::string data);
  bool open() const { return open_; }

 private:
  Load& load_;
  tcp::socket sock_;
  std::array<char, 65536> rbuf_{};
  StreamFramer framer_;
  std::deque<std::string> wq_;
  bool writing_ = false;
  bool open_ = true;
  void read();
  void do_write();
};

// One call on a flow of its own: a fresh TCP connection, INVITE with ;ob in the Contact, ACK over the
// Record-Route (the edge's token), the core's BYE answered on the same connection, which is then closed.
class FlowCall : public std::enable_shared_from_this<FlowCall> {
 public:
  FlowCall(Load& load, asio::io_context& io, int index);
  void start();
  void close();
  const std::string& call_id() const { return call_id_; }

 private:
  Load& load_;
  int index_;
  tcp::socket sock_;
  std::string local_ip_, call_id_, sent_by_;
  std::array<char, 16384> rbuf_{};
  StreamFramer framer_;
  std::deque<std::string> wq_;
  bool writing_ = false, open_ = false, close_after_write_ = false, acked_ = false;
  void read();
  void on_message(std::string text);
  void write(std::string data);
  void do_write();
};

struct Binding {
  std::weak_ptr<CoreConn> conn;
  std::string aor;
  std::string contact_uri;
  std::vector<std::string> first_path;   // the Path of the first registration (tokens minted first)
  std::vector<std::string> latest_path;  // the Path of the newest registration
};

struct Txn {
  Clock::time_point sent;
  int kind = 0;  // 0 message/options, 1 invite, 2 bye, 3 the core's BYE of a flow call
  int binding = 0;
  bool old_token = true;
  std::string call_id;  // kind 3
};

// A flow call as the core sees it (by Call-ID).
struct FlowCallState {
  Clock::time_point started;
  std::weak_ptr<FlowCall> client;
  bool bye_sent = false;
};

class Load {
 public:
  Load(Options o, asio::io_context& io)
      : opt_(std::move(o)), io_(io), tls_ctx_(asio::ssl::context::tls_client), acceptor_(io), tick_(io) {}
  ~Load() { stop_flood(); }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;
  int run();
  asio::ssl::context& tls_context() { return tls_ctx_; }
  Transport transport() const { return transport_; }

  // Called by clients / core connections.
  void client_registered(Client& c, Clock::time_point sent, int status);
  void client_flow_lost() { ++flows_lost_; }
  void count_pong() { ++pongs_; }
  void core_ping_answered() { ++core_pings_answered_; }
  void count_ka() { ++keepalives_; }
  void count_retransmission() { ++retransmissions_; }
  void count_register_503(bool first) {
    ++reg_503_;
    reg_503_clients_ += first;
  }
  void client_answered() { ++client_answers_; }
  void flow_call_failed(const std::string& call_id, const std::string& kind);
  void core_message(const std::shared_ptr<CoreConn>& conn, std::string text);
  bool stopping() const { return stopping_; }
  const Options& opt() const { return opt_; }
  // Client (or flow call) i's source address: 127.0.0.2 .. 127.0.0.(1+sources), or with --reg-sources N
  // 127.0.20.1 .. 127.0.20.250, 127.0.21.1 ... (N addresses, round robin; clear of the flood's 127.0.10-13).
  std::string source_ip(int i) const {
    if (opt_.reg_sources > 0) {
      const int j = i % opt_.reg_sources;
      return "127.0." + std::to_string(20 + j / 250) + "." + std::to_string(1 + j % 250);
    }
    return "127.0.0." + std::to_string(2 + i % std::max(1, opt_.sources));
  }
  // Flood source address i: 127.0.10.1 .. 127.0.10.250, 127.0.11.1 ... (clear of the clients' and edge's).
  static std::string flood_ip(int i) {
    return "127.0." + std::to_string(10 + i / 250) + "." + std::to_string(1 + i % 250);
  }

 private:
  Options opt_;
  asio::io_context& io_;
  asio::ssl::context tls_ctx_;  // shared by every TLS/WSS client; no session reuse (each flow a device)
  Transport transport_ = Transport::tcp;
  tcp::acceptor acceptor_;
  asio::steady_timer tick_;
  Clock::time_point run_start_ = Clock::now();
  std::vector<std::shared_ptr<Client>> clients_;
  std::vector<std::shared_ptr<CoreConn>> core_conns_;
  std::unordered_map<std::string, int> binding_index_;  // AoR -> binding
  std::vector<Binding> bindings_;
  std::unordered_map<std::string, Txn> txns_;  // by our Via branch
  std::uint64_t branch_seq_ = 0;
  bool stopping_ = false;

  // Registration phase.
  int started_ = 0;
  int reg_outstanding_ = 0;
  int registered_ = 0;
  int reg_failed_ = 0;
  std::uint64_t reg_503_ = 0, reg_503_clients_ = 0;  // REGISTERs answered 503; clients that got one
  std::vector<std::uint32_t> reg_latency_us_;
  std::vector<Clock::time_point> reg_done_;  // when each first registration succeeded, in order
  bool refreshing_ = false;
  int refreshed_ = 0;

  std::uint64_t core_pings_answered_ = 0;
  std::uint64_t flows_lost_ = 0, pongs_ = 0, keepalives_ = 0, client_answers_ = 0, retransmissions_ = 0;
  std::uint64_t old_token_ok_ = 0, new_token_ok_ = 0, calls_ok_ = 0;
  std::size_t ka_cursor_ = 0;
  Stats stats_;
  std::size_t next_binding_ = 0;
  std::vector<std::string> mix_;
  std::size_t mix_i_ = 0;
  pid_t exec_child_ = 0;

  // Forged-token flood. It runs on a thread of its own (its own io_context: the flood sockets, their
  // answers), so that the legitimate load and its latency are not measured behind our own forged sends.
  // The thread touches only the flood_* members below; the main thread reads them after the join.
  asio::io_context flood_io_{1};
  std::thread flood_thread_;
  std::atomic<bool> flood_sending_{false}, flood_run_{false};
  double flood_seconds_ = 0;  // from the flood's start to its last send
  struct FloodSocket {
    std::unique_ptr<udp::socket> sock;
    std::array<char, 2048> rbuf{};
  };
  std::vector<std::unique_ptr<FloodSocket>> flood_socks_;
  std::string flood_route_pre_, flood_route_post_;  // the Path entry around its token
  std::vector<std::uint8_t> flood_raw_;             // the real token's bytes
  std::size_t flood_tag_at_ = 0;
  bool flood_armed_ = false;  // the next load phase runs with the flood beside it
  std::uint64_t flood_sent_ = 0, flood_send_errors_ = 0, flood_rng_ = 0x243F6A8885A308D3ULL;
  std::map<std::string, std::uint64_t> flood_answers_;  // by status code
  bool setup_flood();
  void flood_read(FloodSocket& fs);
  void send_forged();
  void start_flood();
  void stop_flood();

  // Flow calls.
  std::unordered_map<std::string, FlowCallState> fcalls_;
  std::unordered_map<std::string, std::vector<std::string>> fcall_routes_;  // the core's route set
  std::unordered_map<std::string, std::string> fcall_targets_;              // the caller's Contact
  std::vector<std::shared_ptr<FlowCall>> fcall_clients_;
  int fcall_started_ = 0;
  Stats fcall_stats_;
  void start_flow_call();
  void flow_call_phase(int calls, double rate, const std::string& prefix, bool report);
  void expire_flow_calls();

  void listen_core();
  void accept_core();
  void start_more_clients();
  void run_until(const std::function<bool()>& done, double limit_s, double tick_ms = 5,
                 const std::function<void()>& each = {});
  bool out_of_time() const {
    return std::chrono::duration<double>(Clock::now() - run_start_).count() > opt_.max_seconds;
  }
  void send_request(const std::string& kind);
  void send_in_dialog(int b, const std::string& method, const std::vector<std::string>& route,
                      const std::string& target, const std::string& call_id, int cseq, int kind,
                      bool old_token);
  void expire_txns();
  void keepalive_slice(double dt_s);
  void load_phase(double rate, double seconds, Stats& st, const std::string& prefix, bool report);
  void report_proc(const std::string& prefix, const ProcSample& a, const ProcSample& b, std::uint64_t txns);
  void spawn_exec();
  void run_mark(const char* name = "") {
    if (opt_.mark_cmd.empty()) return;
    ::setenv("SIPLOAD_MARK", name, 1);  // which mark: quiet_start, quiet_end, load_start, load_end
    const int rc = std::system(opt_.mark_cmd.c_str());
    if (rc != 0) std::cerr << "sipload: --mark-cmd exited with " << rc << "\n";
  }
};

// ---------------------------------------------------------------------------------------------------------
// Client

Client::Client(Load& load, asio::io_context& io, int index)
    : load_(load),
      index_(index),
      tr_(load.transport()),
      udp_(tr_ == Transport::udp),
      tls_on_(tr_ == Transport::tls || tr_ == Transport::wss),
      ws_on_(tr_ == Transport::ws || tr_ == Transport::wss),
      tcp_(io),
      udp_sock_(io),
      edge_(asio::ip::make_address(load.opt().edge_host), load.opt().edge_port),
      local_ip_(load.source_ip(index)),
      reg_timer_(io) {}

void Client::start() {
  boost::system::error_code ec;
  const auto local = asio::ip::make_address(local_ip_);
  if (udp_) {
    udp_sock_.open(udp::v4(), ec);
    if (!ec) udp_sock_.bind(udp::endpoint(local, 0), ec);
    if (ec) {
      load_.client_registered(*this, Clock::now(), -1);
      return;
    }
    local_port_ = udp_sock_.local_endpoint().port();
    alive_ = true;
    read();
    send_register();
    return;
  }
  tcp_.open(tcp::v4(), ec);
  if (!ec) tcp_.bind(tcp::endpoint(local, 0), ec);
  if (ec) {
    load_.client_registered(*this, Clock::now(), -1);
    return;
  }
  local_port_ = tcp_.local_endpoint().port();
  reg_sent_ = Clock::now();  // registration latency includes the connect, TLS handshake and WS upgrade
  tcp_.async_connect(tcp::endpoint(edge_.address(), edge_.port()),
                     [self = shared_from_this()](const boost::system::error_code& e) {
                       if (e) {
                         self->fail_setup(-2);
                         return;
                       }
                       self->on_connected();
                     });
}

void Client::on_connected() {
  boost::system::error_code ec;
  tcp_.set_option(tcp::no_delay(true), ec);
  if (!tls_on_) {
    on_secure();
    return;
  }
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket>>(std::move(tcp_), load_.tls_context());
  if (!load_.opt().tls_ca.empty())
    tls_->set_verify_callback(asio::ssl::host_name_verification(load_.opt().edge_host));
  tls_->async_handshake(
      asio::ssl::stream_base::client, [self = shared_from_this()](const boost::system::error_code& e) {
        if (e) {
          std::cerr << "sipload: client " << self->index_ << " TLS handshake: " << e.message() << "\n";
          self->fail_setup(-3);
          return;
        }
        self->on_secure();
      });
}

void Client::on_secure() {
  if (ws_on_)
    ws_upgrade();
  else
    ready();
}

// RFC 6455 §4.1 / RFC 7118 §4.1: the opening handshake with the "sip" subprotocol.
void Client::ws_upgrade() {
  std::array<unsigned char, 16> nonce{};
  for (std::size_t i = 0; i < nonce.size(); i += 4) {
    const std::uint32_t r = ws_mask_key();
    for (std::size_t j = 0; j < 4; ++j) nonce[i + j] = static_cast<unsigned char>(r >> (8 * j));
  }
  ws_key_ = base64(nonce.data(), nonce.size());
  const std::string host = load_.opt().edge_host + ":" + std::to_string(load_.opt().edge_port);
  http_ = "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: " + ws_key_ + "\r\nSec-WebSocket-Version: 13\r\n" +
          "Sec-WebSocket-Protocol: sip\r\nOrigin: http://" + host + "\r\n\r\n";
  stream_write(http_, [self = shared_from_this()](const boost::system::error_code& e, std::size_t) {
    if (e) {
      self->fail_setup(-4);
      return;
    }
    self->http_.clear();
    self->read_upgrade_response();
  });
}

void Client::read_upgrade_response() {
  stream_read([self = shared_from_this()](const boost::system::error_code& e, std::size_t n) {
    if (e) {
      self->fail_setup(-4);
      return;
    }
    self->http_.append(self->rbuf_.data(), n);
    const auto end = self->http_.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (self->http_.size() > 8192) {
        self->fail_setup(-4);
        return;
      }
      self->read_upgrade_response();
      return;
    }
    if (!self->check_upgrade_response(std::string_view(self->http_).substr(0, end + 2))) {
      std::cerr << "sipload: client " << self->index_
                << " WS upgrade refused: " << self->http_.substr(0, self->http_.find("\r\n")) << "\n";
      self->fail_setup(-4);
      return;
    }
    // Frames the server sent right behind its 101 (none expected before our REGISTER).
    if (self->http_.size() > end + 4)
      self->ws_.append(self->http_.data() + end + 4, self->http_.size() - end - 4);
    self->http_.clear();
    self->http_.shrink_to_fit();
    self->ready();
  });
}

// 101, Upgrade: websocket, the accept key of our nonce and "sip" as the subprotocol.
bool Client::check_upgrade_response(std::string_view head) const {
  if (head.substr(0, 13) != "HTTP/1.1 101 " && head.substr(0, 13) != "HTTP/1.1 101\r") return false;
  bool upgrade = false, accept = false, sip = false;
  for (std::size_t pos = head.find("\r\n") + 2; pos < head.size();) {
    auto e = head.find("\r\n", pos);
    if (e == std::string_view::npos) e = head.size();
    const auto line = head.substr(pos, e - pos);
    pos = e + 2;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const auto name = trim(line.substr(0, colon));
    const auto value = trim(line.substr(colon + 1));
    if (iequals(name, "Upgrade")) upgrade = iequals(value, "websocket");
    if (iequals(name, "Sec-WebSocket-Accept")) accept = value == ws_accept_key(ws_key_);
    if (iequals(name, "Sec-WebSocket-Protocol")) sip = iequals(value, "sip");
  }
  return upgrade && accept && sip;
}

void Client::ready() {
  alive_ = true;
  read();
  if (ws_on_ && !load_.stopping()) on_ws_bytes(0);  // anything buffered behind the 101
  send_register();
}

// The flow could not be set up (connect, TLS handshake, WS upgrade): a failed registration.
void Client::fail_setup(int status) {
  close_socket();
  load_.client_registered(*this, reg_sent_, status);
}

std::string Client::sent_by() const {
  // RFC 7118 §5.2: a WebSocket client has no reachable address of its own; a .invalid host says so.
  if (ws_on_) return "c" + std::to_string(index_) + ".invalid";
  return local_ip_ + ":" + std::to_string(local_port_);
}

std::string Client::contact_param() const {
  switch (tr_) {
    case Transport::udp:
      return "udp";
    case Transport::tcp:
      return "tcp";
    case Transport::tls:
      return "tls";
    case Transport::ws:
    case Transport::wss:
      return "ws";  // RFC 7118 §5: transport=ws for both
  }
  return "tcp";
}

std::string via_token(Transport t) {
  switch (t) {
    case Transport::udp:
      return "UDP";
    case Transport::tcp:
      return "TCP";
    case Transport::tls:
      return "TLS";
    case Transport::ws:
      return "WS";
    case Transport::wss:
      return "WSS";
  }
  return "TCP";
}

void Client::send_register() {
  const std::string hostport = sent_by();
  const std::string user = "u" + std::to_string(index_);
  char uuid[64];
  std::snprintf(uuid, sizeof uuid, "00000000-0000-4000-8000-%012x", index_);
  ++cseq_;
  std::string m = "REGISTER sip:bench.test SIP/2.0\r\n";
  m += "Via: SIP/2.0/" + via_token(tr_) + " " + hostport + ";branch=z9hG4bKr" + std::to_string(index_) + "x" +
       std::to_string(cseq_) + ";rport\r\n";
  m += "Max-Forwards: 70\r\n";
  m += "From: <" + aor() + ">;tag=f" + std::to_string(index_) + "\r\n";
  m += "To: <" + aor() + ">\r\n";
  m += "Call-ID: reg" + std::to_string(index_) + "@bench.test\r\n";
  m += "CSeq: " + std::to_string(cseq_) + " REGISTER\r\n";
  m += "Supported: outbound, path\r\n";
  m += "Contact: <sip:" + user + "@" + hostport + ";transport=" + contact_param() +
       ";ob>;reg-id=1;+sip.instance=\"<urn:uuid:" + uuid + ">\"\r\n";
  m += "Expires: " + std::to_string(load_.opt().expires) + "\r\n";
  m += "Content-Length: 0\r\n\r\n";
  reg_sent_ = Clock::now();
  reg_pending_ = true;
  reg_tries_ = 0;
  if (udp_) {
    reg_text_ = m;
    arm_retransmit();
  }
  write(std::move(m));
}

// UDP is unreliable: retransmit the REGISTER as RFC 3261 Timer E does (500 ms doubling), 7 sends in all.
void Client::arm_retransmit() {
  reg_timer_.expires_after(std::chrono::milliseconds(500 << reg_tries_));
  reg_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
    if (e || !self->reg_pending_ || !self->alive_) return;
    if (++self->reg_tries_ >= 7) {
      self->reg_pending_ = false;
      self->load_.client_registered(*self, self->reg_sent_, 408);
      return;
    }
    self->load_.count_retransmission();
    self->write(self->reg_text_);
    self->arm_retransmit();
  });
}

void Client::keepalive() {
  if (!alive_) return;
  load_.count_ka();
  if (udp_) {
    // STUN Binding request (RFC 5389): type 0x0001, length 0, magic cookie, 12-byte transaction id.
    std::string s(20, '\0');
    s[1] = 0x01;
    s[4] = 0x21, s[5] = 0x12, s[6] = static_cast<char>(0xA4), s[7] = 0x42;
    for (int i = 0; i < 4; ++i) s[8 + i] = static_cast<char>((index_ >> (8 * i)) & 0xff);
    write(std::move(s));
  } else if (ws_on_ && load_.opt().ws_keepalive == "ping") {
    write_raw(ws_frame(kWsPing, "sipload"));  // answered by a pong frame
  } else {
    write("\r\n\r\n");  // on WS: inside one text frame (RFC 5626 §3.5.1 over RFC 7118)
  }
}

void Client::read() {
  auto self = shared_from_this();
  if (udp_) {
    udp_sock_.async_receive(asio::buffer(rbuf_), [self](const boost::system::error_code& e, std::size_t n) {
      if (e) return;
      if (n >= 20 && (self->rbuf_[0] == 0x01 || self->rbuf_[0] == 0x00)) {
        self->load_.count_pong();  // STUN Binding response
      } else if (n > 0 && !(n <= 4 && self->rbuf_[0] == '\r')) {
        self->on_message(std::string(self->rbuf_.data(), n));
      }
      self->read();
    });
    return;
  }
  stream_read([self](const boost::system::error_code& e, std::size_t n) {
    if (e) {
      self->lost();
      return;
    }
    if (self->ws_on_)
      self->on_ws_bytes(n);
    else
      self->on_stream_bytes(n);
    if (self->alive_) self->read();
  });
}

void Client::on_stream_bytes(std::size_t n) {
  framer_.append(rbuf_.data(), n);
  for (;;) {
    int pongs = 0;
    bool bad = false;
    auto m = framer_.next(&pongs, &bad);
    for (int i = 0; i < pongs; ++i) load_.count_pong();
    if (bad) {
      lost();
      close_socket();
      return;
    }
    if (!m) break;
    on_message(std::move(*m));
  }
}

void Client::on_ws_bytes(std::size_t n) {
  ws_.append(rbuf_.data(), n);
  for (;;) {
    bool bad = false;
    auto f = ws_.next(&bad);
    if (bad) {
      std::cerr << "sipload: client " << index_ << " WS protocol error from the edge\n";
      lost();
      close_socket();
      return;
    }
    if (!f) break;
    switch (f->opcode) {
      case kWsText:
      case kWsBinary:
        if (f->fin)
          on_ws_text(std::move(f->payload));
        else
          ws_msg_ = std::move(f->payload);
        break;
      case kWsCont:
        ws_msg_ += f->payload;
        if (ws_msg_.size() > 65536) {
          lost();
          close_socket();
          return;
        }
        if (f->fin) on_ws_text(std::exchange(ws_msg_, {}));
        break;
      case kWsPing:
        write_raw(ws_frame(kWsPong, f->payload));
        break;
      case kWsPong:
        load_.count_pong();
        break;
      case kWsClose:
        // Echo the status code (RFC 6455 §5.5.1); the server then closes the TCP connection.
        if (alive_) {
          closing_ = true;
          write_raw(ws_frame(kWsClose, f->payload.substr(0, 2)));
          lost();
        }
        return;
      default:
        break;
    }
  }
}

// A WS message: a CRLF keep-alive answer (what edged sends for our CRLFCRLF) or one SIP message.
void Client::on_ws_text(std::string text) {
  if (!text.empty() && text.find_first_not_of("\r\n") == std::string::npos) {
    load_.count_pong();
    return;
  }
  on_message(std::move(text));
}

void Client::lost() {
  if (!alive_) return;
  alive_ = false;
  if (!load_.stopping()) load_.client_flow_lost();
}

void Client::on_message(std::string text) {
  SipMessage m;
  m.text = std::move(text);
  if (!m.parse()) return;
  if (m.is_response) {
    if (m.header("CSeq").find("REGISTER") != std::string_view::npos && m.status >= 200 && reg_pending_) {
      reg_timer_.cancel();
      if (m.status == 503) load_.count_register_503(!registered_ && retries_503_ == 0);
      // --retry-503-ms: the same client sends its REGISTER again (a new transaction on the same flow)
      // after a fixed delay, Retry-After ignored: what is measured is the edge's admission rate, not a
      // phone's back-off. At most kMaxRetries503 times; the latency counts from the first send.
      constexpr int kMaxRetries503 = 600;
      if (m.status == 503 && !registered_ && load_.opt().retry_503_ms > 0 && retries_503_ < kMaxRetries503 &&
          !load_.stopping()) {
        ++retries_503_;
        reg_timer_.expires_after(std::chrono::milliseconds(load_.opt().retry_503_ms));
        reg_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
          if (e || !self->reg_pending_ || !self->alive_ || self->load_.stopping()) return;
          const auto first_sent = self->reg_sent_;
          self->send_register();
          self->reg_sent_ = first_sent;
        });
        return;
      }
      reg_pending_ = false;
      const bool first = !registered_;
      if (m.status < 300) registered_ = true;
      if (first || m.status >= 300)
        load_.client_registered(*this, reg_sent_, m.status);
      else
        load_.client_registered(*this, reg_sent_, 0);  // a refresh answered
    }
    return;
  }
  if (m.method == "ACK") return;
  load_.client_answered();
  const std::string tag = "ua" + std::to_string(index_);
  if (m.method == "INVITE") {
    const std::string contact = "Contact: <sip:u" + std::to_string(index_) + "@" + sent_by() +
                                ";transport=" + contact_param() + ";ob>\r\n";
    write(make_response(m, 200, "OK", tag, contact));
    return;
  }
  write(make_response(m, 200, "OK", tag));
}

void Client::write(std::string data) {
  if (udp_) {
    auto buf = std::make_shared<std::string>(std::move(data));
    udp_sock_.async_send_to(asio::buffer(*buf), edge_,
                            [buf](const boost::system::error_code&, std::size_t) {});
    return;
  }
  write_raw(ws_on_ ? ws_frame(kWsText, data) : std::move(data));  // one SIP message per WS message
}

void Client::write_raw(std::string bytes) {
  wq_.push_back(std::move(bytes));
  if (!writing_) do_write();
}

void Client::do_write() {
  if (wq_.empty() || (!alive_ && !closing_)) {
    writing_ = false;
    return;
  }
  writing_ = true;
  stream_write(wq_.front(), [self = shared_from_this()](const boost::system::error_code& e, std::size_t) {
    self->wq_.pop_front();
    if (e) {
      self->writing_ = false;
      self->closing_ = false;
      self->lost();
      return;
    }
    self->do_write();
  });
}

void Client::close_socket() {
  boost::system::error_code ec;
  if (tls_) tls_->next_layer().close(ec);
  tcp_.close(ec);
  udp_sock_.close(ec);
}

void Client::close() {
  alive_ = false;
  closing_ = false;
  close_socket();
}

// ---------------------------------------------------------------------------------------------------------
// Core side

void CoreConn::read() {
  sock_.async_read_some(asio::buffer(rbuf_),
                        [self = shared_from_this()](const boost::system::error_code& e, std::size_t n) {
                          if (e) {
                            if (self->open_)
                              std::cerr << "sipload: core connection lost: " << e.message() << "\n";
                            self->open_ = false;
                            return;
                          }
                          self->framer_.append(self->rbuf_.data(), n);
                          for (;;) {
                            int pongs = 0;
                            bool bad = false;
                            auto m = self->framer_.next(&pongs, &bad);
                            if (pongs > 0) {
                              self->write("\r\n");
                              self->load_.core_ping_answered();
                            }
                            if (bad) {
                              std::cerr << "sipload: core connection unframeable, closed\n";
                              self->open_ = false;
                              return;
                            }
                            if (!m) break;
                            self->load_.core_message(self, std::move(*m));
                          }
                          self->read();
                        });
}

void CoreConn::write(std::string data) {
  if (!open_) return;
  wq_.push_back(std::move(data));
  if (!writing_) do_write();
}

void CoreConn::do_write() {
  if (wq_.empty()) {
    writing_ = false;
    return;
  }
  writing_ = true;
  asio::async_write(sock_, asio::buffer(wq_.front()),
                    [self = shared_from_this()](const boost::system::error_code& e, std::size_t) {
                      self->wq_.pop_front();
                      if (e) {
                        self->open_ = false;
                        self->writing_ = false;
                        return;
                      }
                      self->do_write();
                    });
}

void Load::core_message(const std::shared_ptr<CoreConn>& conn, std::string text) {
  SipMessage m;
  m.text = std::move(text);
  if (!m.parse()) return;
  const auto now = Clock::now();
  if (!m.is_response) {
    if (m.method == "REGISTER") {
      const std::string aor(addr_uri(m.header("To")));
      const auto contact = m.header("Contact");
      auto [it, fresh] = binding_index_.try_emplace(aor, static_cast<int>(bindings_.size()));
      if (fresh) bindings_.emplace_back();
      Binding& b = bindings_[static_cast<std::size_t>(it->second)];
      b.conn = conn;
      b.aor = aor;
      b.contact_uri = std::string(addr_uri(contact));
      b.latest_path = split_list(m.all("Path"));
      if (fresh) b.first_path = b.latest_path;
      std::string extra;
      extra += "Contact: " + std::string(contact) + ";expires=" + std::to_string(opt_.expires) + "\r\n";
      for (const auto& p : b.latest_path) extra += "Path: " + p + "\r\n";
      extra += "Require: outbound\r\n";
      conn->write(make_response(m, 200, "OK", "core", extra));
    } else if (m.method == "ACK") {
      // The ACK of a flow call came over the Record-Route token: the core hangs up over the same token.
      auto fc = fcalls_.find(std::string(m.header("Call-ID")));
      if (fc != fcalls_.end() && !fc->second.bye_sent) {
        fc->second.bye_sent = true;
        const std::string branch = "z9hG4bKb" + std::to_string(++branch_seq_);
        std::string bye = "BYE " + fcall_targets_[fc->first] + " SIP/2.0\r\n";
        bye += "Via: SIP/2.0/TCP " + opt_.core_host + ":" + std::to_string(opt_.core_port) +
               ";branch=" + branch + "\r\n";
        for (const auto& r : fcall_routes_[fc->first]) bye += "Route: " + r + "\r\n";
        bye += "Max-Forwards: 70\r\n";
        bye += "From: " + std::string(m.header("To")) + "\r\n";
        bye += "To: " + std::string(m.header("From")) + "\r\n";
        bye += "Call-ID: " + fc->first + "\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
        Txn t;
        t.sent = now;
        t.kind = 3;
        t.call_id = fc->first;
        txns_[branch] = t;
        conn->write(std::move(bye));
      }
    } else if (m.method == "INVITE" && fcalls_.count(std::string(m.header("Call-ID")))) {
      // A flow call reached the core: answer 200 with the Record-Route (make_response copies it) and keep
      // the route set (Record-Route in order, RFC 3261 §12.1.1) and the caller's Contact for the BYE.
      const std::string cid(m.header("Call-ID"));
      fcall_routes_[cid] = split_list(m.all("Record-Route"));
      fcall_targets_[cid] = std::string(addr_uri(m.header("Contact")));
      conn->write(make_response(m, 200, "OK", "core",
                                "Contact: <sip:core@" + opt_.core_host + ":" +
                                    std::to_string(opt_.core_port) + ";transport=tcp>\r\n"));
    } else {
      conn->write(make_response(m, 200, "OK", "core"));  // client -> core requests (none expected)
    }
    return;
  }
  const auto via = m.header("Via");
  const std::string branch(param(via, "branch"));
  auto it = txns_.find(branch);
  if (it == txns_.end() || m.status < 200) return;
  Txn t = it->second;
  txns_.erase(it);
  if (t.kind == 3) {  // the BYE of a flow call: the call is over
    auto fc = fcalls_.find(t.call_id);
    if (fc == fcalls_.end()) return;
    if (m.status >= 300) {
      ++fcall_stats_.failures["bye_" + std::to_string(m.status)];
    } else {
      fcall_stats_.success(fc->second.started, now);
    }
    fcall_routes_.erase(t.call_id);
    fcall_targets_.erase(t.call_id);
    fcalls_.erase(fc);
    return;
  }
  if (m.status >= 300) {
    ++stats_.failures[std::to_string(m.status)];
    return;
  }
  stats_.success(t.sent, now);
  (t.old_token ? old_token_ok_ : new_token_ok_)++;
  if (t.kind == 1) {
    // 2xx to INVITE: ACK and BYE along the route set (the reversed Record-Route, else the Path).
    auto rr = split_list(m.all("Record-Route"));
    std::reverse(rr.begin(), rr.end());
    const auto& b = bindings_[static_cast<std::size_t>(t.binding)];
    if (rr.empty()) rr = t.old_token ? b.first_path : b.latest_path;
    std::string target(addr_uri(m.header("Contact")));
    if (target.empty()) target = b.contact_uri;
    const std::string call_id(m.header("Call-ID"));
    const std::string to(m.header("To"));
    send_in_dialog(t.binding, "ACK", rr, target, call_id, 1, -1, t.old_token);
    send_in_dialog(t.binding, "BYE", rr, target, call_id, 2, 2, t.old_token);
  } else if (t.kind == 2) {
    ++calls_ok_;
  }
}

void Load::send_in_dialog(int b, const std::string& method, const std::vector<std::string>& route,
                          const std::string& target, const std::string& call_id, int cseq, int kind,
                          bool old_token) {
  auto& bind = bindings_[static_cast<std::size_t>(b)];
  auto conn = bind.conn.lock();
  ++stats_.sent;
  if (!conn || !conn->open()) {
    ++stats_.failures["no_core_connection"];
    return;
  }
  const std::string branch = "z9hG4bKc" + std::to_string(++branch_seq_);
  std::string m = method + " " + target + " SIP/2.0\r\n";
  m += "Via: SIP/2.0/TCP " + opt_.core_host + ":" + std::to_string(opt_.core_port) + ";branch=" + branch +
       "\r\n";
  for (const auto& r : route) m += "Route: " + r + "\r\n";
  m += "Max-Forwards: 70\r\n";
  m += "From: <sip:core@bench.test>;tag=core" + call_id.substr(0, 8) + "\r\n";
  std::string to = "To: <" + bind.aor + ">";
  if (method != "INVITE") to += ";tag=ua";
  m += to + "\r\nCall-ID: " + call_id + "\r\n";
  m += "CSeq: " + std::to_string(cseq) + " " + method + "\r\n";
  if (method == "INVITE")
    m +=
        "Contact: <sip:core@" + opt_.core_host + ":" + std::to_string(opt_.core_port) + ";transport=tcp>\r\n";
  if (method == "MESSAGE") {
    m += "Content-Type: text/plain\r\nContent-Length: 12\r\n\r\nsipload ping";
  } else {
    m += "Content-Length: 0\r\n\r\n";
  }
  if (kind >= 0)
    txns_[branch] = Txn{Clock::now(), kind, b, old_token, {}};
  else
    --stats_.sent;  // an ACK is not a transaction
  conn->write(std::move(m));
}

void Load::send_request(const std::string& kind) {
  if (bindings_.empty()) {
    ++stats_.sent;
    ++stats_.failures["no_binding"];
    return;
  }
  const int b = static_cast<int>(next_binding_++ % bindings_.size());
  const auto& bind = bindings_[static_cast<std::size_t>(b)];
  // After a refresh, alternate the tokens minted at the first registration and at the newest one.
  const bool use_old = bind.first_path == bind.latest_path || (branch_seq_ % 2 == 0);
  const auto& route = use_old ? bind.first_path : bind.latest_path;
  const std::string call_id = (kind == "call" ? "c" : "m") + std::to_string(branch_seq_ + 1) + "@core";
  if (kind == "call")
    send_in_dialog(b, "INVITE", route, bind.contact_uri, call_id, 1, 1, use_old);
  else
    send_in_dialog(b, kind == "options" ? "OPTIONS" : "MESSAGE", route, bind.contact_uri, call_id, 1, 0,
                   use_old);
}

void Load::expire_txns() {
  const auto limit = Clock::now() - std::chrono::milliseconds(opt_.timeout_ms);
  for (auto it = txns_.begin(); it != txns_.end();) {
    if (it->second.sent < limit) {
      ++stats_.failures["timeout"];
      it = txns_.erase(it);
    } else {
      ++it;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Flow calls: a new TCP connection per call

FlowCall::FlowCall(Load& load, asio::io_context& io, int index)
    : load_(load),
      index_(index),
      sock_(io),
      local_ip_(load.source_ip(index)),
      call_id_("fc" + std::to_string(index) + "@bench.test") {}

void FlowCall::start() {
  boost::system::error_code ec;
  sock_.open(tcp::v4(), ec);
  if (!ec) sock_.bind(tcp::endpoint(asio::ip::make_address(local_ip_), 0), ec);
  if (ec) {
    load_.flow_call_failed(call_id_, "bind");
    return;
  }
  sent_by_ = local_ip_ + ":" + std::to_string(sock_.local_endpoint().port());
  const auto& o = load_.opt();
  sock_.async_connect(tcp::endpoint(asio::ip::make_address(o.edge_host), o.edge_port),
                      [self = shared_from_this()](const boost::system::error_code& e) {
                        if (e) {
                          self->load_.flow_call_failed(self->call_id_, "connect");
                          return;
                        }
                        boost::system::error_code ec2;
                        self->sock_.set_option(tcp::no_delay(true), ec2);
                        self->open_ = true;
                        self->read();
                        const std::string i = std::to_string(self->index_);
                        std::string m = "INVITE sip:core@bench.test SIP/2.0\r\n";
                        m += "Via: SIP/2.0/TCP " + self->sent_by_ + ";branch=z9hG4bKi" + i + ";rport\r\n";
                        m += "Max-Forwards: 70\r\n";
                        m += "From: <sip:c" + i + "@bench.test>;tag=fc" + i + "\r\n";
                        m += "To: <sip:core@bench.test>\r\n";
                        m += "Call-ID: " + self->call_id_ + "\r\nCSeq: 1 INVITE\r\n";
                        m += "Contact: <sip:c" + i + "@" + self->sent_by_ + ";transport=tcp;ob>\r\n";
                        m += "Supported: outbound\r\nContent-Length: 0\r\n\r\n";
                        self->write(std::move(m));
                      });
}

void FlowCall::read() {
  sock_.async_read_some(asio::buffer(rbuf_),
                        [self = shared_from_this()](const boost::system::error_code& e, std::size_t n) {
                          if (e) {
                            if (self->open_ && !self->close_after_write_)
                              self->load_.flow_call_failed(self->call_id_, "flow_closed");
                            self->open_ = false;
                            return;
                          }
                          self->framer_.append(self->rbuf_.data(), n);
                          for (;;) {
                            int pongs = 0;
                            bool bad = false;
                            auto m = self->framer_.next(&pongs, &bad);
                            if (bad) {
                              self->load_.flow_call_failed(self->call_id_, "unframeable");
                              self->close();
                              return;
                            }
                            if (!m) break;
                            self->on_message(std::move(*m));
                          }
                          if (self->open_) self->read();
                        });
}

void FlowCall::on_message(std::string text) {
  SipMessage m;
  m.text = std::move(text);
  if (!m.parse()) return;
  if (m.is_response) {
    if (m.status < 200 || m.header("CSeq").find("INVITE") == std::string_view::npos) return;
    if (m.status >= 300) {
      load_.flow_call_failed(call_id_, "invite_" + std::to_string(m.status));
      close();
      return;
    }
    if (acked_) return;  // a retransmitted 2xx
    acked_ = true;
    // ACK along the route set: the Record-Route reversed (RFC 3261 §12.1.2), to the core's Contact.
    auto rr = split_list(m.all("Record-Route"));
    std::reverse(rr.begin(), rr.end());
    std::string a = "ACK " + std::string(addr_uri(m.header("Contact"))) + " SIP/2.0\r\n";
    a += "Via: SIP/2.0/TCP " + sent_by_ + ";branch=z9hG4bKa" + std::to_string(index_) + ";rport\r\n";
    for (const auto& r : rr) a += "Route: " + r + "\r\n";
    a += "Max-Forwards: 70\r\n";
    a += "From: " + std::string(m.header("From")) + "\r\nTo: " + std::string(m.header("To")) + "\r\n";
    a += "Call-ID: " + call_id_ + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    write(std::move(a));
    return;
  }
  if (m.method == "BYE") {
    close_after_write_ = true;  // the call is over: the flow goes once the 200 is out
    write(make_response(m, 200, "OK", ""));
    return;
  }
  if (m.method != "ACK") write(make_response(m, 200, "OK", "ua" + std::to_string(index_)));
}

void FlowCall::write(std::string data) {
  if (!open_) return;
  wq_.push_back(std::move(data));
  if (!writing_) do_write();
}

void FlowCall::do_write() {
  if (wq_.empty() || !open_) {
    writing_ = false;
    if (close_after_write_ && open_) close();
    return;
  }
  writing_ = true;
  asio::async_write(sock_, asio::buffer(wq_.front()),
                    [self = shared_from_this()](const boost::system::error_code& e, std::size_t) {
                      self->wq_.pop_front();
                      if (e) {
                        self->writing_ = false;
                        if (self->open_) self->load_.flow_call_failed(self->call_id_, "send_error");
                        self->close();
                        return;
                      }
                      self->do_write();
                    });
}

void FlowCall::close() {
  open_ = false;
  boost::system::error_code ec;
  sock_.shutdown(tcp::socket::shutdown_both, ec);
  sock_.close(ec);
}

void Load::flow_call_failed(const std::string& call_id, const std::string& kind) {
  auto it = fcalls_.find(call_id);
  if (it == fcalls_.end()) return;  // already over
  if (stopping_) return;
  ++fcall_stats_.failures[kind];
  if (auto c = it->second.client.lock()) c->close();
  fcall_routes_.erase(call_id);
  fcall_targets_.erase(call_id);
  fcalls_.erase(it);
}

void Load::start_flow_call() {
  auto c = std::make_shared<FlowCall>(*this, io_, fcall_started_++);
  fcalls_[c->call_id()] = FlowCallState{Clock::now(), c, false};
  ++fcall_stats_.sent;
  fcall_clients_.push_back(c);
  c->start();
}

void Load::expire_flow_calls() {
  const auto limit = Clock::now() - std::chrono::milliseconds(opt_.timeout_ms);
  std::vector<std::string> old;
  for (const auto& [id, st] : fcalls_)
    if (st.started < limit) old.push_back(id);
  for (const auto& id : old) flow_call_failed(id, "timeout");
  // BYE transactions of expired calls.
  for (auto it = txns_.begin(); it != txns_.end();) {
    if (it->second.kind == 3 && !fcalls_.count(it->second.call_id))
      it = txns_.erase(it);
    else
      ++it;
  }
  // Finished calls' sockets are closed; drop them.
  std::erase_if(fcall_clients_,
                [this](const std::shared_ptr<FlowCall>& c) { return !fcalls_.count(c->call_id()); });
}

// `calls` calls at `rate` per second, at most --call-window at once; then what is in flight finishes.
void Load::flow_call_phase(int calls, double rate, const std::string& prefix, bool report) {
  fcall_stats_ = Stats{};
  const auto start = Clock::now();
  int started = 0;
  auto last_expire = start;
  run_until([&] { return started >= calls && fcalls_.empty(); },
            calls / std::max(rate, 1e-3) + opt_.timeout_ms / 1000.0 + 2, 1,
            [&] {
              const double t = std::chrono::duration<double>(Clock::now() - start).count();
              const auto due = std::min<std::int64_t>(calls, static_cast<std::int64_t>(t * rate) + 1);
              while (started < due && static_cast<int>(fcalls_.size()) < opt_.call_window) {
                start_flow_call();
                ++started;
              }
              if (Clock::now() - last_expire > std::chrono::milliseconds(100)) {
                expire_flow_calls();
                last_expire = Clock::now();
              }
            });
  if (!fcalls_.empty()) fcall_stats_.failures["unfinished"] += fcalls_.size();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (!report) return;
  print(prefix, "calls", std::to_string(fcall_stats_.sent));
  print(prefix, "calls_ok", std::to_string(fcall_stats_.ok));
  print(prefix, "failures", std::to_string(fcall_stats_.failed()));
  for (const auto& [k, v] : fcall_stats_.failures) print(prefix, "failures_" + k, std::to_string(v));
  print(prefix, "offered_rate", fmt(rate, 1));
  print(prefix, "achieved_rate", fmt(static_cast<double>(fcall_stats_.ok) / std::max(elapsed, 1e-6), 1));
  print(prefix, "latency_p50_ms", fmt(fcall_stats_.percentile_ms(0.50), 3));
  print(prefix, "latency_p99_ms", fmt(fcall_stats_.percentile_ms(0.99), 3));
  print(prefix, "latency_max_ms", fmt(fcall_stats_.percentile_ms(1.0), 3));
}

// ---------------------------------------------------------------------------------------------------------
// Forged-token flood: requests whose Route carries a well-formed token of a real flow with a random tag

bool Load::setup_flood() {
  if (bindings_.empty() || bindings_.front().first_path.empty()) {
    std::cerr << "sipload: --flood-rate needs a registered client whose Path carries a token\n";
    return false;
  }
  const std::string& path = bindings_.front().first_path.front();  // <sip:TOKEN@host:port;...>
  const auto a = path.find("sip:");
  const auto b = path.find('@', a);
  if (a == std::string::npos || b == std::string::npos) return false;
  const std::string token = path.substr(a + 4, b - a - 4);
  auto raw = unbase64url(token);
  // Format v1 (docs/token-format.md): 34 bytes (IPv4) or 58 (IPv6); the 16-byte tag ends the token.
  if (!raw || (raw->size() != 34 && raw->size() != 58) || base64url(*raw) != token) {
    std::cerr << "sipload: the Path token is not a v1 flow token: " << token << "\n";
    return false;
  }
  flood_raw_ = *raw;
  flood_tag_at_ = raw->size() - 16;
  flood_route_pre_ = path.substr(0, a + 4);
  flood_route_post_ = path.substr(b);
  for (int i = 0; i < opt_.flood_sources; ++i) {
    auto fs = std::make_unique<FloodSocket>();
    fs->sock = std::make_unique<udp::socket>(flood_io_);
    boost::system::error_code ec;
    fs->sock->open(udp::v4(), ec);
    if (!ec) fs->sock->bind(udp::endpoint(asio::ip::make_address(flood_ip(i)), 0), ec);
    if (ec) {
      std::cerr << "sipload: flood source " << flood_ip(i) << ": " << ec.message() << "\n";
      return false;
    }
    flood_read(*fs);
    flood_socks_.push_back(std::move(fs));
  }
  return true;
}

void Load::flood_read(FloodSocket& fs) {
  fs.sock->async_receive(asio::buffer(fs.rbuf),
                         [this, &fs](const boost::system::error_code& e, std::size_t n) {
                           if (e) return;
                           if (n > 12 && std::string_view(fs.rbuf.data(), 8) == "SIP/2.0 ")
                             ++flood_answers_[std::string(fs.rbuf.data() + 8, 3)];
                           flood_read(fs);
                         });
}

// The flood thread: forged requests at --flood-rate while flood_sending_, answers read until stop_flood().
// Bounded: each round sends at most what is due by then, and the main thread always stops it.
void Load::start_flood() {
  stop_flood();
  flood_sent_ = 0;
  flood_answers_.clear();
  flood_seconds_ = 0;
  flood_sending_ = true;
  flood_run_ = true;
  flood_thread_ = std::thread([this] {
    const auto start = Clock::now();
    auto last = start;
    while (flood_run_.load()) {
      if (flood_sending_.load()) {
        const double t = std::chrono::duration<double>(Clock::now() - start).count();
        const auto fdue = static_cast<std::uint64_t>(t * opt_.flood_rate);
        while (flood_sent_ < fdue && flood_sending_.load()) send_forged();
        last = Clock::now();
      }
      flood_io_.restart();
      flood_io_.run_for(std::chrono::microseconds(500));
    }
    flood_seconds_ = std::chrono::duration<double>(last - start).count();
  });
}

void Load::stop_flood() {
  flood_sending_ = false;
  flood_run_ = false;
  if (flood_thread_.joinable()) flood_thread_.join();
}

void Load::send_forged() {
  auto& fs = *flood_socks_[flood_sent_ % flood_socks_.size()];
  ++flood_sent_;
  auto raw = flood_raw_;
  for (std::size_t i = flood_tag_at_; i < raw.size(); ++i) {
    flood_rng_ ^= flood_rng_ << 13;
    flood_rng_ ^= flood_rng_ >> 7;
    flood_rng_ ^= flood_rng_ << 17;
    raw[i] = static_cast<std::uint8_t>(flood_rng_ >> 24);
  }
  const auto local = fs.sock->local_endpoint();
  const std::string n = std::to_string(flood_sent_);
  const std::string& method = opt_.flood_method;
  std::string m = method + " sip:u0@bench.test SIP/2.0\r\n";
  m += "Via: SIP/2.0/UDP " + local.address().to_string() + ":" + std::to_string(local.port()) +
       ";branch=z9hG4bKx" + n + ";rport\r\n";
  m += "Route: " + flood_route_pre_ + base64url(raw) + flood_route_post_ + "\r\n";
  m += "Max-Forwards: 70\r\nFrom: <sip:mallory@bench.test>;tag=x" + n + "\r\nTo: <sip:u0@bench.test>\r\n";
  m += "Call-ID: x" + n + "@flood\r\nCSeq: 1 " + method + "\r\n";
  if (method == "INVITE")
    m +=
        "Contact: <sip:mallory@" + local.address().to_string() + ":" + std::to_string(local.port()) + ">\r\n";
  m += "Content-Length: 0\r\n\r\n";
  boost::system::error_code ec;
  // Synchronous and non-blocking: a full socket buffer drops the datagram, as the network would.
  fs.sock->non_blocking(true, ec);
  fs.sock->send_to(asio::buffer(m), udp::endpoint(asio::ip::make_address(opt_.edge_host), opt_.edge_port), 0,
                   ec);
  if (ec) ++flood_send_errors_;
}

void Load::client_registered(Client& c, Clock::time_point sent, int status) {
  if (refreshing_) {
    if (status == 0)
      ++refreshed_;
    else
      ++stats_.failures["refresh_" + std::to_string(status)];
    --reg_outstanding_;
    return;
  }
  --reg_outstanding_;
  if (status >= 200 && status < 300) {
    ++registered_;
    reg_done_.push_back(Clock::now());
    reg_latency_us_.push_back(static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent).count()));
  } else if (status != 0) {
    ++reg_failed_;
    std::cerr << "sipload: client " << c.index() << " register failed: "
              << (status == -1   ? "bind"
                  : status == -2 ? "connect"
                  : status == -3 ? "tls handshake"
                  : status == -4 ? "ws upgrade"
                                 : std::to_string(status))
              << "\n";
  }
  start_more_clients();
}

void Load::start_more_clients() {
  while (started_ < opt_.clients && reg_outstanding_ < opt_.register_window && !stopping_) {
    auto c = std::make_shared<Client>(*this, io_, started_++);
    clients_.push_back(c);
    ++reg_outstanding_;
    c->start();
  }
}

void Load::listen_core() {
  tcp::endpoint ep(asio::ip::make_address(opt_.core_host), opt_.core_port);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen();
  accept_core();
}

void Load::accept_core() {
  acceptor_.async_accept([this](const boost::system::error_code& e, tcp::socket s) {
    if (e) return;
    boost::system::error_code ec;
    s.set_option(tcp::no_delay(true), ec);
    auto c = std::make_shared<CoreConn>(*this, std::move(s));
    core_conns_.push_back(c);
    c->start();
    accept_core();
  });
}

void Load::run_until(const std::function<bool()>& done, double limit_s, double tick_ms,
                     const std::function<void()>& each) {
  const auto end =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limit_s));
  auto last = Clock::now();
  while (!done() && Clock::now() < end && !out_of_time()) {
    io_.run_for(std::chrono::microseconds(static_cast<long>(tick_ms * 1000)));
    const auto now = Clock::now();
    keepalive_slice(std::chrono::duration<double>(now - last).count());
    last = now;
    if (each) each();
  }
}

// Spreads keep-alives evenly: over one interval every client sends one.
void Load::keepalive_slice(double dt_s) {
  if (opt_.keepalive_s <= 0 || clients_.empty()) return;
  static double carry = 0;
  carry += dt_s / opt_.keepalive_s * static_cast<double>(clients_.size());
  while (carry >= 1) {
    carry -= 1;
    clients_[ka_cursor_++ % clients_.size()]->keepalive();
  }
}

void Load::spawn_exec() {
  const char* argv[] = {"/bin/sh", "-c", opt_.exec_cmd.c_str(), nullptr};
  if (posix_spawn(&exec_child_, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0)
    exec_child_ = 0;
  std::cerr << "sipload: exec started: " << opt_.exec_cmd << "\n";
}

void Load::load_phase(double rate, double seconds, Stats& st, const std::string& prefix, bool report) {
  stats_ = Stats{};
  old_token_ok_ = new_token_ok_ = calls_ok_ = 0;
  const auto start = Clock::now();
  std::uint64_t offered = 0;
  bool exec_done = opt_.exec_at_s < 0, refresh_done = opt_.refresh_at_s < 0;
  int refresh_cursor = 0;
  auto last_expire = start;
  if (flood_armed_) start_flood();
  run_until([&] { return Clock::now() - start >= std::chrono::duration<double>(seconds); }, seconds + 1, 1,
            [&] {
              const double t = std::chrono::duration<double>(Clock::now() - start).count();
              const auto due = static_cast<std::uint64_t>(t * rate);
              while (offered < due) {
                send_request(mix_[mix_i_++ % mix_.size()]);
                ++offered;
              }
              if (!exec_done && t >= opt_.exec_at_s) {
                exec_done = true;
                spawn_exec();
              }
              if (!refresh_done && t >= opt_.refresh_at_s) {
                refreshing_ = true;
                while (refresh_cursor < static_cast<int>(clients_.size()) &&
                       reg_outstanding_ < opt_.register_window) {
                  auto& c = clients_[static_cast<std::size_t>(refresh_cursor++)];
                  if (c->alive()) {
                    ++reg_outstanding_;
                    c->send_register();
                  }
                }
                if (refresh_cursor >= static_cast<int>(clients_.size())) refresh_done = true;
              }
              if (Clock::now() - last_expire > std::chrono::milliseconds(100)) {
                expire_txns();
                last_expire = Clock::now();
              }
            });
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  flood_sending_ = false;  // the flood lasts as long as the load it runs beside; answers are still read
  // Let what is in flight finish (bounded by the transaction timeout).
  run_until([&] { return txns_.empty(); }, opt_.timeout_ms / 1000.0 + 0.5, 1, [&] { expire_txns(); });
  expire_txns();
  refreshing_ = false;
  st = stats_;
  if (!report) return;
  // Transactions (a call is two: INVITE and BYE) offered and answered per second.
  print(prefix, "offered_rate", fmt(static_cast<double>(st.sent) / seconds, 1));
  print(prefix, "achieved_rate", fmt(static_cast<double>(st.ok) / elapsed, 1));
  print(prefix, "transactions_sent", std::to_string(st.sent));
  print(prefix, "transactions_ok", std::to_string(st.ok));
  print(prefix, "calls_ok", std::to_string(calls_ok_));
  print(prefix, "failures", std::to_string(st.failed()));
  for (const auto& [k, v] : st.failures) print(prefix, "failures_" + k, std::to_string(v));
  print(prefix, "latency_p50_ms", fmt(st.percentile_ms(0.50), 3));
  print(prefix, "latency_p90_ms", fmt(st.percentile_ms(0.90), 3));
  print(prefix, "latency_p99_ms", fmt(st.percentile_ms(0.99), 3));
  print(prefix, "latency_max_ms", fmt(st.percentile_ms(1.0), 3));
  print(prefix, "max_gap_ms", fmt(st.max_gap_ms, 1));
  if (opt_.refresh_at_s >= 0) {
    print(prefix, "refreshed", std::to_string(refreshed_));
    int changed = 0;
    for (const auto& b : bindings_) changed += b.first_path != b.latest_path;
    print(prefix, "paths_changed", std::to_string(changed));
    print(prefix, "old_token_ok", std::to_string(old_token_ok_));
    print(prefix, "new_token_ok", std::to_string(new_token_ok_));
  }
}

void Load::report_proc(const std::string& prefix, const ProcSample& a, const ProcSample& b,
                       std::uint64_t txns) {
  if (opt_.edge_pid <= 0) return;
  print(prefix, "edge_cpu_s", fmt(b.cpu_s - a.cpu_s, 3));
  if (txns)
    print(prefix, "edge_cpu_us_per_transaction",
          fmt((b.cpu_s - a.cpu_s) * 1e6 / static_cast<double>(txns), 2));
  print(prefix, "edge_rss_peak_kb", std::to_string(b.hwm_kb));
  print(prefix, "edge_pss_kb", std::to_string(b.pss_kb));
  print(prefix, "edge_processes", std::to_string(b.processes));
}

int Load::run() {
  std::stringstream ms(opt_.mix);
  for (std::string k; std::getline(ms, k, ',');)
    if (!k.empty()) mix_.push_back(k);
  if (mix_.empty()) mix_.push_back("message");
  if (!opt_.label.empty()) print("", "label", opt_.label);
  print("", "transport", opt_.transport);
  const std::map<std::string, Transport> transports{{"udp", Transport::udp},
                                                    {"tcp", Transport::tcp},
                                                    {"tls", Transport::tls},
                                                    {"ws", Transport::ws},
                                                    {"wss", Transport::wss}};
  transport_ = transports.at(opt_.transport);
  if (transport_ == Transport::tls || transport_ == Transport::wss) {
    SSL_CTX_set_min_proto_version(tls_ctx_.native_handle(), TLS1_2_VERSION);
    if (opt_.tls_ca.empty()) {
      tls_ctx_.set_verify_mode(asio::ssl::verify_none);  // the lab certificate is self-signed
    } else {
      tls_ctx_.load_verify_file(opt_.tls_ca);
      tls_ctx_.set_verify_mode(asio::ssl::verify_peer);
    }
  }
  listen_core();
  if (opt_.await_core_link_s > 0) {
    run_until([&] { return core_pings_answered_ > 0; }, opt_.await_core_link_s, 5);
    if (core_pings_answered_ == 0) {
      std::cerr << "sipload: the edge's core link was not up within " << opt_.await_core_link_s
                << " s; starting anyway\n";
    }
  }
  const ProcSample before = sample_edge(opt_.edge_pid);
  if (opt_.edge_pid > 0) print("", "edge_pss_kb_before", std::to_string(before.pss_kb));

  // Phase 1: registration (a burst bounded by the register window). One client registers alone first,
  // so the edge's connection to the core exists before the burst, as it would in service.
  const int window = opt_.register_window;
  opt_.register_window = 1;
  start_more_clients();
  run_until([&] { return registered_ + reg_failed_ >= std::min(1, opt_.clients); }, 10, 5);
  opt_.register_window = window;
  const auto reg_start = Clock::now();
  start_more_clients();
  run_until([&] { return registered_ + reg_failed_ >= opt_.clients; }, opt_.max_seconds, 5);
  const double reg_s = std::chrono::duration<double>(Clock::now() - reg_start).count();
  const ProcSample after_reg = sample_edge(opt_.edge_pid);
  print("register_", "clients", std::to_string(opt_.clients));
  print("register_", "registered", std::to_string(registered_));
  print("register_", "failures", std::to_string(opt_.clients - registered_));
  print("register_", "seconds", fmt(reg_s, 3));
  print("register_", "udp_retransmissions", std::to_string(retransmissions_));
  print("register_", "rate", fmt(registered_ / std::max(reg_s, 1e-6), 1));
  // The rate over the second half of the successful registrations (from the n/2-th to the last): the
  // steady rate once any initial burst allowance is spent.
  if (reg_done_.size() >= 4) {
    const std::size_t h = reg_done_.size() / 2;
    const double s = std::chrono::duration<double>(reg_done_.back() - reg_done_[h]).count();
    print("register_", "rate_second_half",
          fmt(static_cast<double>(reg_done_.size() - 1 - h) / std::max(s, 1e-6), 1));
  }
  print("register_", "refused_503", std::to_string(reg_503_));
  print("register_", "clients_refused_503", std::to_string(reg_503_clients_));
  {
    Stats s;
    s.latency_us = reg_latency_us_;
    print("register_", "latency_p50_ms", fmt(s.percentile_ms(0.5), 3));
    print("register_", "latency_p99_ms", fmt(s.percentile_ms(0.99), 3));
  }
  report_proc("register_", before, after_reg, static_cast<std::uint64_t>(registered_));

  // Phase 2: idle hold (keep-alives only): memory per idle flow.
  if (opt_.hold_s > 0) {
    const std::uint64_t ka0 = keepalives_, pong0 = pongs_;
    run_until([] { return false; }, opt_.hold_s, 20);
    const ProcSample held = sample_edge(opt_.edge_pid);
    int alive = 0;
    for (const auto& c : clients_) alive += c->alive() && c->registered();
    print("idle_", "flows", std::to_string(alive));
    print("idle_", "keepalives_sent", std::to_string(keepalives_ - ka0));
    print("idle_", "keepalive_answers", std::to_string(pongs_ - pong0));
    print("idle_", "flows_lost", std::to_string(flows_lost_));
    if (opt_.edge_pid > 0 && alive > 0) {
      print("idle_", "edge_pss_kb", std::to_string(held.pss_kb));
      print("idle_", "edge_rss_kb", std::to_string(held.rss_kb));
      print("idle_", "memory_per_flow_bytes",
            fmt(static_cast<double>(held.pss_kb - before.pss_kb) * 1024.0 / alive, 0));
      print("idle_", "edge_cpu_s", fmt(held.cpu_s - after_reg.cpu_s, 3));
    }
  }

  // Phase 3: core -> client load at a fixed rate, or a ramp to the highest rate that holds.
  if (!opt_.ramp.empty()) {
    double r0 = 0, step = 0, rmax = 0;
    if (std::sscanf(opt_.ramp.c_str(), "%lf:%lf:%lf", &r0, &step, &rmax) != 3 || step <= 0) {
      std::cerr << "sipload: --ramp START:STEP:MAX\n";
      return 2;
    }
    double best = 0;
    for (double r = r0; r <= rmax && !out_of_time(); r += step) {
      Stats st;
      double p99 = 0;
      bool pass = false;
      // A step fails only when it fails twice in a row: a shared machine stalls now and then.
      for (int attempt = 0; attempt < 2 && !pass; ++attempt) {
        load_phase(r, opt_.step_s, st, "", false);
        p99 = st.percentile_ms(0.99);
        const double achieved = static_cast<double>(st.ok) / opt_.step_s;
        pass = st.failed() == 0 && p99 <= opt_.max_p99_ms && achieved >= 0.95 * r;
      }
      std::cerr << "sipload: ramp rate=" << r << " ok=" << st.ok << " failed=" << st.failed()
                << " p99_ms=" << p99 << (pass ? " pass" : " FAIL");
      for (const auto& [kind, n] : st.failures) std::cerr << " " << kind << "=" << n;
      std::cerr << "\n";
      // The step's latency distribution and rates ride after the original three fields, for
      // tests/bench/plot (latency against offered rate); p99 is the one that decides.
      print("ramp_", "step_" + fmt(r, 0),
            std::string(pass ? "pass" : "fail") + ",p99_ms=" + fmt(p99, 2) +
                ",failures=" + std::to_string(st.failed()) + ",p50_ms=" + fmt(st.percentile_ms(0.50), 3) +
                ",p90_ms=" + fmt(st.percentile_ms(0.90), 3) +
                ",offered_rate=" + fmt(static_cast<double>(st.sent) / opt_.step_s, 1) +
                ",achieved_rate=" + fmt(static_cast<double>(st.ok) / opt_.step_s, 1));
      if (!pass) break;
      best = r;
    }
    print("", "max_rate", fmt(best, 0));
  } else if (opt_.rate > 0 && opt_.flow_calls == 0) {
    // The edge's CPU with keep-alives only (its timers, sweeps): the baseline a transaction adds to.
    const ProcSample q0 = sample_edge(opt_.edge_pid);
    const auto quiet_start = Clock::now();
    run_until([] { return false; }, std::min(2.0, opt_.duration_s), 20);
    const ProcSample q1 = sample_edge(opt_.edge_pid);
    const double idle_cpu_per_s =
        (q1.cpu_s - q0.cpu_s) / std::chrono::duration<double>(Clock::now() - quiet_start).count();
    if (opt_.flood_rate > 0) {
      // The same load without the flood first: the quiet figures the flood's are compared with.
      if (!setup_flood()) return 2;
      run_mark("quiet_start");
      const ProcSample qa = sample_edge(opt_.edge_pid);
      Stats qst;
      load_phase(opt_.rate, opt_.duration_s, qst, "quiet_", true);
      const ProcSample qb = sample_edge(opt_.edge_pid);
      run_mark("quiet_end");
      report_proc("quiet_", qa, qb, qst.ok);
      flood_armed_ = true;
    }
    run_mark("load_start");
    const ProcSample a = sample_edge(opt_.edge_pid);
    const auto load_start = Clock::now();
    Stats st;
    load_phase(opt_.rate, opt_.duration_s, st, "load_", true);
    const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();
    const ProcSample b = sample_edge(opt_.edge_pid);
    if (flood_armed_) {
      flood_armed_ = false;
      run_until([] { return false; }, 0.3, 5);  // late answers to the flood (read by its thread)
      stop_flood();
    }
    run_mark("load_end");
    report_proc("load_", a, b, st.ok);
    if (opt_.flood_rate > 0) {
      std::uint64_t answered = 0;
      for (const auto& [code, n] : flood_answers_) answered += n;
      print("flood_", "sources", std::to_string(flood_socks_.size()));
      print("flood_", "offered_rate", fmt(opt_.flood_rate, 1));
      print("flood_", "sent", std::to_string(flood_sent_));
      print("flood_", "seconds", fmt(flood_seconds_, 3));
      print("flood_", "sent_rate", fmt(static_cast<double>(flood_sent_) / std::max(flood_seconds_, 1e-6), 1));
      print("flood_", "send_errors", std::to_string(flood_send_errors_));
      print("flood_", "answered", std::to_string(answered));
      for (const auto& [code, n] : flood_answers_) print("flood_", "answered_" + code, std::to_string(n));
      print("flood_", "unanswered", std::to_string(flood_sent_ > answered ? flood_sent_ - answered : 0));
    }
    if (opt_.edge_pid > 0 && st.ok > 0) {
      print("load_", "edge_cpu_idle_ms_per_s", fmt(idle_cpu_per_s * 1e3, 2));
      print("load_", "edge_cpu_us_per_transaction_marginal",
            fmt((b.cpu_s - a.cpu_s - idle_cpu_per_s * load_s) * 1e6 / static_cast<double>(st.ok), 2));
    }
  }

  // Phase 4: calls with a new TCP flow per call (no registration needed).
  if (opt_.flow_calls > 0) {
    flow_call_phase(opt_.warmup_calls, std::max(opt_.rate, 1.0), "", false);
    if (fcall_stats_.failed() > 0)
      std::cerr << "sipload: " << fcall_stats_.failed() << " of " << opt_.warmup_calls
                << " warm-up calls failed\n";
    run_mark("load_start");
    const ProcSample a = sample_edge(opt_.edge_pid);
    flow_call_phase(opt_.flow_calls, opt_.rate > 0 ? opt_.rate : 100, "flowcall_", true);
    const ProcSample b = sample_edge(opt_.edge_pid);
    run_mark("load_end");
    report_proc("flowcall_", a, b, fcall_stats_.ok);  // edge_cpu_us_per_transaction: per call here
    if (opt_.edge_pid > 0 && fcall_stats_.ok > 0)
      print("flowcall_", "edge_cpu_us_per_call",
            fmt((b.cpu_s - a.cpu_s) * 1e6 / static_cast<double>(fcall_stats_.ok), 2));
  }

  int alive = 0;
  for (const auto& c : clients_) alive += c->alive();
  print("", "flows_lost", std::to_string(flows_lost_));
  print("", "flows_alive", std::to_string(alive));
  print("", "keepalives_sent", std::to_string(keepalives_));
  print("", "keepalive_answers", std::to_string(pongs_));
  if (exec_child_ > 0) {
    int status = 0;
    for (int i = 0; i < 300 && waitpid(exec_child_, &status, WNOHANG) == 0; ++i) usleep(100000);
    print("", "exec_status", std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  }
  const ProcSample end = sample_edge(opt_.edge_pid);
  if (opt_.edge_pid > 0) {
    print("", "edge_cpu_s_total", fmt(end.cpu_s - before.cpu_s, 3));
    print("", "edge_rss_peak_kb", std::to_string(end.hwm_kb));
  }
  stopping_ = true;
  stop_flood();
  for (auto& c : clients_) c->close();
  for (auto& c : fcall_clients_) c->close();
  for (auto& f : flood_socks_) {
    boost::system::error_code ec;
    f->sock->close(ec);
  }
  io_.run_for(std::chrono::milliseconds(50));
  std::cout.flush();
  if (opt_.flow_calls > 0 && fcall_stats_.ok != static_cast<std::uint64_t>(opt_.flow_calls)) return 1;
  return registered_ == opt_.clients ? 0 : 1;
}

}  // namespace

namespace {

int run_main(int argc, char** argv) {
  namespace po = boost::program_options;
  Options o;
  std::string edge = "127.0.0.1:5060", core = "127.0.0.1:5080";
  po::options_description desc(
      "sipload: RFC 5626 outbound clients + a registrar/proxy simulator, loopback only.\n"
      "Prints one key=value line per figure. Options");
  desc.add_options()("help", "this text")("edge", po::value(&edge)->default_value(edge),
                                          "edge listener HOST:PORT the clients register through")(
      "core-listen", po::value(&core)->default_value(core), "core simulator TCP listener HOST:PORT")(
      "transport", po::value(&o.transport)->default_value(o.transport),
      "client flows: udp, tcp, tls, ws (RFC 7118) or wss")(
      "tls-ca", po::value(&o.tls_ca),
      "tls/wss: verify the edge's certificate (and 127.x address) against this PEM file; default: no "
      "verification (the lab certificate is self-signed)")(
      "ws-keepalive", po::value(&o.ws_keepalive)->default_value(o.ws_keepalive),
      "ws/wss keep-alive: crlf (CRLFCRLF in a text frame) or ping (a WS ping)")(
      "clients", po::value(&o.clients)->default_value(o.clients), "simulated outbound clients (flows)")(
      "sources", po::value(&o.sources)->default_value(o.sources), "client source addresses 127.0.0.2..")(
      "reg-sources", po::value(&o.reg_sources)->default_value(o.reg_sources),
      "N > 0: client source addresses 127.0.20.1.. instead (N of them, 250 per third octet, 1..1000): each "
      "new client socket binds to the next one, round robin (a burst from many sites)")(
      "retry-503-ms", po::value(&o.retry_503_ms)->default_value(o.retry_503_ms),
      "MS > 0: a REGISTER answered 503 is sent again on its flow after MS ms (Retry-After ignored; at "
      "most 600 times); register_refused_503 counts the 503s either way")(
      "register-window", po::value(&o.register_window)->default_value(o.register_window),
      "REGISTERs (and connects) outstanding at once")(
      "keepalive", po::value(&o.keepalive_s)->default_value(o.keepalive_s),
      "seconds between keep-alives per flow (CRLFCRLF on TCP/TLS/WS, STUN on UDP); 0: none")(
      "expires", po::value(&o.expires)->default_value(o.expires), "REGISTER Expires")(
      "hold", po::value(&o.hold_s)->default_value(o.hold_s),
      "seconds idle after registering (memory per flow)")("rate", po::value(&o.rate)->default_value(o.rate),
                                                          "core -> client requests per second; 0: none")(
      "duration", po::value(&o.duration_s)->default_value(o.duration_s), "seconds of load at --rate")(
      "mix", po::value(&o.mix)->default_value(o.mix), "comma list of message, options, call (round robin)")(
      "ramp", po::value(&o.ramp), "START:STEP:MAX: raise the rate until failures or p99 exceed the bound")(
      "step-seconds", po::value(&o.step_s)->default_value(o.step_s), "seconds per ramp step")(
      "max-p99-ms", po::value(&o.max_p99_ms)->default_value(o.max_p99_ms), "ramp: latency bound")(
      "timeout-ms", po::value(&o.timeout_ms)->default_value(o.timeout_ms),
      "a transaction unanswered this long fails")("edge-pid", po::value(&o.edge_pid)->default_value(0),
                                                  "edge process (and its children): CPU, RSS, PSS")(
      "refresh-at", po::value(&o.refresh_at_s)->default_value(-1),
      "load phase: re-REGISTER every client at this second (tokens minted after a rotation)")(
      "exec-at", po::value(&o.exec_at_s)->default_value(-1), "load phase: run --exec at this second")(
      "exec", po::value(&o.exec_cmd), "shell command for --exec-at (e.g. a key rotation)")(
      "mark-cmd", po::value(&o.mark_cmd), "shell command run just before and after the load phase")(
      "max-seconds", po::value(&o.max_seconds)->default_value(o.max_seconds), "hard bound on the whole run")(
      "await-core-link", po::value(&o.await_core_link_s)->default_value(o.await_core_link_s),
      "seconds to wait for the edge's core link (its first CRLF ping answered) before clients start")(
      "label", po::value(&o.label), "printed as label=...")(
      "flood-rate", po::value(&o.flood_rate)->default_value(0),
      "with --rate: forged-token requests per second over UDP (a registered flow's Path token, random "
      "tag), during a second load phase after a quiet one (quiet_* and load_* figures, flood_*)")(
      "flood-sources", po::value(&o.flood_sources)->default_value(o.flood_sources),
      "flood source addresses 127.0.10.1.. (250 per third octet), one UDP socket each")(
      "flood-method", po::value(&o.flood_method)->default_value(o.flood_method),
      "MESSAGE, OPTIONS or INVITE")(
      "flow-calls", po::value(&o.flow_calls)->default_value(0),
      "calls, each on a new TCP flow: INVITE ;ob, core answers 200, ACK over the Record-Route token, the "
      "core's BYE over it, 200, the client closes (--rate: calls per second; flowcall_* figures)")(
      "call-window", po::value(&o.call_window)->default_value(o.call_window), "flow calls in flight at once")(
      "warmup-calls", po::value(&o.warmup_calls)->default_value(o.warmup_calls),
      "flow calls before the measured ones (not counted)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "sipload: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  auto split = [](const std::string& hp, std::string* host, std::uint16_t* port) {
    const auto c = hp.rfind(':');
    *host = hp.substr(0, c);
    *port = static_cast<std::uint16_t>(std::stoi(hp.substr(c + 1)));
  };
  split(edge, &o.edge_host, &o.edge_port);
  split(core, &o.core_host, &o.core_port);
  if (o.transport != "tcp" && o.transport != "udp" && o.transport != "tls" && o.transport != "ws" &&
      o.transport != "wss") {
    std::cerr << "sipload: --transport udp, tcp, tls, ws or wss\n";
    return 2;
  }
  if (o.ws_keepalive != "crlf" && o.ws_keepalive != "ping") {
    std::cerr << "sipload: --ws-keepalive crlf or ping\n";
    return 2;
  }
  if (o.clients < 0 || o.clients > 200000 || o.max_seconds <= 0 || o.rate > 1e6) {
    std::cerr << "sipload: --clients 0..200000, --rate <= 1e6, --max-seconds > 0\n";
    return 2;
  }
  // Client addresses 127.0.0.2 .. 127.0.0.253, or at most 1,000 of 127.0.20.1 .. 127.0.23.250; retries
  // 1 ms .. 10 s apart.
  if (o.sources < 1 || o.sources > 252 || o.reg_sources < 0 || o.reg_sources > 1000 || o.retry_503_ms < 0 ||
      o.retry_503_ms > 10000) {
    std::cerr << "sipload: --sources 1..252, --reg-sources 0..1000, --retry-503-ms 0..10000\n";
    return 2;
  }
  // Bounded: at most 1,000 flood sources (127.0.10.1 .. 127.0.13.250) and 200,000 forged requests/s;
  // at most 1,000,000 flow calls, 10,000 in flight.
  if (o.flood_rate < 0 || o.flood_rate > 200000 || o.flood_sources < 1 || o.flood_sources > 1000 ||
      (o.flood_rate > 0 && (o.rate <= 0 || o.clients < 1)) || o.flow_calls < 0 || o.flow_calls > 1000000 ||
      o.call_window < 1 || o.call_window > 10000 || o.warmup_calls < 0 || o.warmup_calls > 10000 ||
      (o.flood_method != "MESSAGE" && o.flood_method != "OPTIONS" && o.flood_method != "INVITE")) {
    std::cerr << "sipload: --flood-rate 0..200000 (needs --rate and --clients), --flood-sources 1..1000, "
                 "--flood-method MESSAGE|OPTIONS|INVITE, --flow-calls 0..1000000, --call-window 1..10000\n";
    return 2;
  }
  // Loopback only: the edge and the core must be 127.x addresses.
  if (o.edge_host.rfind("127.", 0) != 0 || o.core_host.rfind("127.", 0) != 0) {
    std::cerr << "sipload: loopback addresses only\n";
    return 2;
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  asio::io_context io(1);
  Load load(o, io);
  try {
    return load.run();
  } catch (const std::exception& e) {
    std::cerr << "sipload: " << e.what() << "\n";
    return 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_main(argc, argv);
  } catch (const std::exception& e) {  // a malformed --edge / --core-listen port, out of memory
    std::cerr << "sipload: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "sipload: unknown exception\n";
  }
  return 2;
}
