// Fuzz target: the configuration loaders — the agent's edged.conf import (mgmt::import_conf_text)
// with its export round trip, and the daemon's own parser (firmware parse_config_text), which
// reads every exported generation. Each refuses with its own error type and nothing else.
#include <edge/mgmt/error.h>
#include <edge/mgmt/properties.h>
#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

#include "config_file.h"

namespace {

// Names the broken invariant before aborting, so a crash report says what went wrong.
#define check(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

[[noreturn]] void unexpected(const char* where, const std::exception& e) {
  std::fprintf(stderr, "%s threw a foreign exception: %s\n", where, e.what());
  std::abort();
}

// The daemon's parser: a refusal is a ConfigError, whatever the text.
bool daemon_accepts(const std::string& text) {
  try {
    (void)edge::firmware::parse_config_text(text, "fuzz.conf", "/var/lib/edge-fuzz");
    return true;
  } catch (const edge::firmware::ConfigError&) {
    return false;
  } catch (const std::exception& e) {
    unexpected("parse_config_text", e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)daemon_accepts(text);

  edge::mgmt::v1::ApplianceConfig config;
  try {
    config = edge::mgmt::import_conf_text(text, "fuzz.conf");
  } catch (const edge::mgmt::MgmtError& e) {
    check(e.code() == edge::mgmt::ErrorCode::invalid_argument);
    return 0;
  } catch (const std::exception& e) {
    unexpected("import_conf_text", e);
  }

  // export -> import gives the same configuration, and export is then a fixed point.
  const std::string exported = edge::mgmt::export_conf_text(config);
  edge::mgmt::v1::ApplianceConfig again;
  try {
    again = edge::mgmt::import_conf_text(exported, "exported");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exported text does not import: %s\n%s", e.what(), exported.c_str());
    std::abort();
  }
  check(google::protobuf::util::MessageDifferencer::Equals(config, again));
  check(edge::mgmt::export_conf_text(again) == exported);
  (void)daemon_accepts(exported);
  return 0;
}
