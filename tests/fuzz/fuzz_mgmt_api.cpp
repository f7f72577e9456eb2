// Fuzz target: the management API's request handlers. The input is a sequence of calls (method,
// caller role, request bytes parsed with ParseFromArray) to an Agent over a real SoftHSM token and a
// front end that always works; every call ends in a response or an MgmtError, never anything else.
#include <edge/hsm/hsm.h>
#include <edge/hsm/keyset.h>
#include <edge/mgmt/agent.h>
#include <edge/mgmt/error.h>
#include <edge/mgmt/properties.h>
#include <edge/test/fake_front_end.h>
#include <edge/test/softhsm_fixture.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>

namespace mgmt = edge::mgmt;
namespace v1 = edge::mgmt::v1;
namespace fs = std::filesystem;

namespace {

// SoftHSM's file store and the agent's store both fsync: on a disk that is most of an input's time.
bool prefer_memory_tmp() {
  if (std::getenv("TMPDIR") == nullptr && fs::is_directory("/dev/shm")) ::setenv("TMPDIR", "/dev/shm", 0);
  return true;
}

// One SoftHSM token for the whole run (made once: SoftHSM reads its configuration at C_Initialize).
struct Env {
  Env() {
    spdlog::set_level(spdlog::level::off);
    hsm.keysets().create("sipflow");
    const auto& reg = mgmt::PropertyRegistry::instance();
    initial = reg.defaults();
    reg.set(initial, "sip.flow_token.key_set", "sipflow");
    reg.set(initial, "listen", "udp 127.0.0.1 5060");
  }
  ~Env() { fs::remove_all(state, ec); }
  bool memory_tmp = prefer_memory_tmp();  // before the token: it is made under TMPDIR
  edge::test::SoftHsmToken token;
  edge::hsm::Hsm hsm{token.config()};
  v1::ApplianceConfig initial;
  fs::path state = fs::temp_directory_path() / ("edge-fuzz-mgmt-" + std::to_string(::getpid()));
  std::error_code ec;
};

Env& env() {
  static Env e;
  return e;
}

[[noreturn]] void unexpected(int method, const std::exception& e) {
  std::fprintf(stderr, "method %d threw a foreign exception: %s\n", method, e.what());
  std::abort();
}

template <class Request>
bool parse(const std::uint8_t* data, std::size_t size, Request& r) {
  return r.ParseFromArray(data, static_cast<int>(size));
}

// Calls method `m` (0..18) with a request parsed from the bytes; returns whether the call touched
// the HSM's key sets, which the next input must not see.
bool call(mgmt::Agent& a, int m, const mgmt::Caller& c, const std::uint8_t* d, std::size_t n) {
  switch (m) {
    case 0:
      (void)a.status();
      return false;
    case 1:
      (void)a.list_key_sets();
      return false;
    case 2: {
      v1::GetKeySetRequest r;
      if (parse(d, n, r)) (void)a.get_key_set(r.name());
      return false;
    }
    case 3: {
      v1::CreateKeySetRequest r;
      if (parse(d, n, r)) (void)a.create_key_set(c, r);
      return true;
    }
    case 4: {
      v1::RotateKeySetRequest r;
      if (parse(d, n, r)) (void)a.rotate_key_set(c, r);
      return true;
    }
    case 5: {
      v1::RetireKeyVersionRequest r;
      if (parse(d, n, r)) (void)a.retire_key_version(c, r);
      return true;
    }
    case 6: {
      v1::DestroyKeySetRequest r;
      if (parse(d, n, r)) (void)a.destroy_key_set(c, r);
      return true;
    }
    case 7:
      (void)a.list_properties();
      return false;
    case 8: {
      v1::GetPropertyRequest r;
      if (parse(d, n, r)) (void)a.get_property(r.name());
      return false;
    }
    case 9: {
      v1::SetPropertyRequest r;
      if (parse(d, n, r)) (void)a.set_property(c, r);
      return false;
    }
    case 10: {
      v1::UnsetPropertyRequest r;
      if (parse(d, n, r)) (void)a.unset_property(c, r);
      return false;
    }
    case 11:
      (void)a.get_config();
      return false;
    case 12:
      (void)a.discard_staged(c);
      return false;
    case 13: {
      v1::ApplyRequest r;
      if (parse(d, n, r)) (void)a.apply(c, r);
      return false;
    }
    case 14:
      (void)a.confirm(c);
      return false;
    case 15: {
      v1::RollbackRequest r;
      if (parse(d, n, r)) (void)a.rollback(c, r);
      return false;
    }
    case 16:
      (void)a.list_generations();
      return false;
    case 17:
      (void)a.restart_front_end(c);
      return false;
    default:
      (void)a.events();
      return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)env();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 16 * 1024) return 0;
  Env& e = env();
  fs::remove_all(e.state, e.ec);
  fs::create_directories(e.state);
  bool keys_touched = false;
  {
    edge::test::FakeFrontEnd fe;
    mgmt::AgentOptions o;
    o.state_dir = e.state;
    o.drain_bound = std::chrono::milliseconds(10);
    mgmt::Agent agent(o, e.hsm, e.initial);
    agent.attach_front_end(&fe);
    // Each call: method byte, role byte, 1-byte length, the request's bytes.
    for (std::size_t i = 0, calls = 0; i + 3 <= size && calls < 24; ++calls) {
      const int method = data[i] % 19;
      const mgmt::Caller caller{"uid:1000", static_cast<v1::Role>(data[i + 1] % 3)};
      const std::size_t len = std::min<std::size_t>(data[i + 2], size - i - 3);
      const std::uint8_t* req = data + i + 3;
      i += 3 + len;
      try {
        keys_touched |= call(agent, method, caller, req, len);
      } catch (const mgmt::MgmtError&) {
      } catch (const std::exception& ex) {
        unexpected(method, ex);
      }
    }
    agent.shutdown();
    agent.attach_front_end(nullptr);
  }
  if (keys_touched) {
    for (const auto& ks : e.hsm.keysets().list()) e.hsm.keysets().destroy(ks.name);
    e.hsm.keysets().create("sipflow");
  }
  return 0;
}
