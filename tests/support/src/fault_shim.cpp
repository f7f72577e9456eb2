// FaultShim: writes the shim's control file and reads its counters (see fault_shim.h).
#include <edge/test/fault_shim.h>

#include "../shim/shim_rules.h"

#include <dlfcn.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace edge::test {
namespace {

template <typename Fn>
Fn shim_symbol(const char* name) {
  // RTLD_NOLOAD: only look at the copy the HSM code loaded; never load one ourselves.
  void* h = ::dlopen(shim_module_path(), RTLD_NOW | RTLD_NOLOAD);
  if (!h) return nullptr;
  auto f = reinterpret_cast<Fn>(::dlsym(h, name));
  ::dlclose(h);  // drops the reference NOLOAD added; the loader's own one remains
  return f;
}

}  // namespace

const char* shim_module_path() noexcept { return EDGE_P11SHIM_PATH; }

FaultShim::FaultShim(const SoftHsmToken& token)
    : token_(token),
      control_(token.dir() / "p11shim.control"),
      stats_(token.dir() / "p11shim.stats"),
      history_(token.dir() / "p11shim.history") {
  std::filesystem::create_directory(history_);
  write_file(control_, "", 0644);
  env_module_ = std::make_unique<ScopedEnv>("EDGE_P11SHIM_MODULE", softhsm_module_path());
  env_control_ = std::make_unique<ScopedEnv>("EDGE_P11SHIM_CONTROL", control_.string());
  env_stats_ = std::make_unique<ScopedEnv>("EDGE_P11SHIM_STATS", stats_.string());
  reset_stats();  // counters of a shim an earlier test in this process loaded
}

FaultShim::~FaultShim() = default;

edge::hsm::HsmConfig FaultShim::config() const {
  auto c = token_.config();
  c.module_path = shim_module_path();
  return c;
}

void FaultShim::set(std::string_view rules) {
  auto parsed = shim::parse_rules(rules);
  if (!parsed.errors.empty()) {
    std::string msg = "fault shim rules do not parse:";
    for (const auto& e : parsed.errors) msg += " " + e + ";";
    throw std::invalid_argument(msg);
  }
  // The shim notices a change by inode, size and mtime. mtime is only as fine as the
  // kernel tick, so keep every old version linked: a new file then always gets a new inode.
  std::error_code ec;
  std::filesystem::create_hard_link(control_, history_ / std::to_string(generation_++), ec);
  write_file(control_, rules, 0644);
}

unsigned long long FaultShim::injected() const {
  auto f = shim_symbol<unsigned long long (*)()>("edge_p11shim_injected_total");
  return f ? f() : 0;
}

unsigned long long FaultShim::injected(std::string_view fn) const {
  auto f = shim_symbol<unsigned long long (*)(const char*)>("edge_p11shim_injected");
  return f ? f(std::string(fn).c_str()) : 0;
}

unsigned long long FaultShim::calls(std::string_view fn) const {
  auto f = shim_symbol<unsigned long long (*)(const char*)>("edge_p11shim_calls");
  return f ? f(std::string(fn).c_str()) : 0;
}

long long FaultShim::open_sessions() const {
  auto f = shim_symbol<long long (*)()>("edge_p11shim_open_sessions");
  return f ? f() : 0;
}

unsigned long long FaultShim::finalize_while_busy() const {
  auto f = shim_symbol<unsigned long long (*)()>("edge_p11shim_finalize_while_busy");
  return f ? f() : 0;
}

unsigned long long FaultShim::destroy_unfound() const {
  auto f = shim_symbol<unsigned long long (*)()>("edge_p11shim_destroy_unfound");
  return f ? f() : 0;
}

void FaultShim::reset_stats() {
  if (auto f = shim_symbol<void (*)()>("edge_p11shim_reset_stats")) f();
}

std::map<std::string, unsigned long long> FaultShim::read_stats_file() const {
  std::map<std::string, unsigned long long> out;
  std::ifstream in(stats_);
  std::string line;
  while (std::getline(in, line)) {
    auto sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    out[line.substr(0, sp)] = std::stoull(line.substr(sp + 1));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> FaultShim::child_env() const {
  auto env = token_.child_env();
  env.emplace_back("EDGE_P11SHIM_MODULE", softhsm_module_path());
  env.emplace_back("EDGE_P11SHIM_CONTROL", control_.string());
  env.emplace_back("EDGE_P11SHIM_STATS", stats_.string());
  return env;
}

}  // namespace edge::test
