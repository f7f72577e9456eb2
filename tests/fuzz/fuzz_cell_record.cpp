// libFuzzer target for the cell's version-record decoder and identity splitter (hsm/cell_keys.h):
// bytes from etcd or a token object. decode_record answers nullopt or a record that encodes back
// to exactly the input; split_identity answers two canonical SPKIs or CellKeyError. Never a crash.
#include <edge/hsm/cell_keys.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <vector>

namespace {

// Names the broken invariant before aborting, so a crash report says what went wrong.
#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  if (const auto r = edge::hsm::decode_record(in)) {
    const std::vector<std::uint8_t> again = edge::hsm::encode_record(*r);
    CHECK(again.size() == size && std::equal(again.begin(), again.end(), data));
    CHECK(r->check_value().size() == 16);
  }
  try {
    const auto parts = edge::hsm::split_identity(in);
    CHECK(parts.transport_spki.size() + parts.signing_spki.size() == size);
  } catch (const edge::hsm::CellKeyError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "split_identity threw a foreign exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
