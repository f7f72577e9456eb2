// EdgeTest: starts Kamailio and edged for each test, stops both (edged must exit 0), dumps logs on failure.
#include "edge_fixture.h"

#include <array>
#include <thread>

namespace edge::test {
namespace {

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int b64url_value(char c) {
  const auto p = kAlphabet.find(c);
  return p == std::string_view::npos ? -1 : static_cast<int>(p);
}

}  // namespace

std::optional<std::uint32_t> token_key_version(const std::string& token) {
  if (token.size() < 8) return std::nullopt;
  // 8 characters = 6 bytes: format version, key version (4), flags.
  std::array<std::uint8_t, 6> raw{};
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t out = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    const int v = b64url_value(token[i]);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      raw[out++] = static_cast<std::uint8_t>((acc >> bits) & 0xff);
    }
  }
  if (raw[0] != 1) return std::nullopt;  // format v1
  return (std::uint32_t{raw[1]} << 24) | (std::uint32_t{raw[2]} << 16) | (std::uint32_t{raw[3]} << 8) |
         raw[4];
}

std::string tamper_token(const std::string& token) {
  std::string t = token;
  if (t.empty()) return "x";
  const std::size_t i = t.size() / 2;
  t[i] = t[i] == 'A' ? 'B' : 'A';
  return t;
}

std::string path_token(const SipMessage& ok) {
  const auto paths = ok.header_values("Path");
  if (paths.empty()) return {};
  return uri_user(uri_of(paths.front()));
}

void EdgeTest::SetUp() {
  KamailioOptions co;
  if (core_routing() == CoreRouting::reuse_edge_connection) {
    core_template_dir_ = std::make_unique<TempDir>("edge-core-template");
    co.config_template = write_aliasing_core_template(core_template_dir_->path());
  }
  core_ = std::make_unique<KamailioProcess>(co);
  dump_.add("kamailio log", [this] { return core_ ? core_->log() : std::string("(not started)"); });
  edge_ = std::make_unique<EdgedProcess>(edged_options());
  dump_.add("edged config", [this] { return edge_ ? edge_->config_text() : std::string(); });
  dump_.add("edged log", [this] { return edge_ ? edge_->log() : std::string("(not started)"); });
}

void EdgeTest::TearDown() {
  dump_.dump();
  dump_.clear();
  for (auto& u : uas_) u->close();
  uas_.clear();
  if (edge_) {
    const bool was_running = edge_->running();
    const int status = edge_->stop();
    if (was_running) {
      EXPECT_EQ(status, 0) << "edged did not exit 0 on SIGTERM; log:\n" << edge_->log();
    } else {
      ADD_FAILURE() << "edged was no longer running at the end of the test (status " << status << "); log:\n"
                    << edge_->log();
    }
    edge_.reset();
  }
  core_.reset();
  core_template_dir_.reset();
}

TestUa& EdgeTest::ua(const std::string& user) {
  uas_.push_back(std::make_unique<TestUa>(user));
  TestUa* u = uas_.back().get();
  dump_.add("UA " + user, [u] { return u->transcript(); });
  return *u;
}

ConnectOptions EdgeTest::connect_options() const { return ConnectOptions{}; }

SipMessage EdgeTest::register_through_edge(TestUa& u, Transport t) {
  u.connect(t, edge_->endpoint(t), connect_options());
  return u.register_with();
}

EdgeTest::Call EdgeTest::call(TestUa& caller, TestUa& callee) {
  Call c;
  c.invite_sent = caller.make_invite(callee.aor());
  caller.send(c.invite_sent);
  c.invite_received = callee.receive_request("INVITE");
  const std::string tag = TestUa::new_tag();
  callee.send(callee.make_response(c.invite_received, 200, "OK", tag,
                                   make_sdp(callee.local_endpoint().host(), 40002)));
  const SipMessage ok = caller.receive_response("INVITE");
  if (ok.status() != 200) throw std::runtime_error("call: INVITE answered " + ok.summary());
  c.caller = Dialog::as_uac(c.invite_sent, ok);
  c.callee = Dialog::as_uas(c.invite_received, tag);
  caller.send(caller.make_ack(c.caller));
  callee.receive_request("ACK");
  return c;
}

bool EdgeTest::wait_status(const std::function<bool(const EdgedStatus&)>& pred,
                           std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred(edge_->status())) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace edge::test
