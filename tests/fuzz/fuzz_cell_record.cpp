// libFuzzer target for the cell's version-record decoder and identity splitter (hsm/cell_keys.h):
// bytes from etcd or a token object. decode_record answers nullopt or a record that encodes back
// to exactly the input; split_identity answers two canonical SPKIs or CellKeyError. Never a crash.
#include <edge/hsm/cell_keys.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  if (const auto r = edge::hsm::decode_record(in)) {
    const std::vector<std::uint8_t> again = edge::hsm::encode_record(*r);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) std::abort();
    if (r->check_value().size() != 16) std::abort();
  }
  try {
    const auto parts = edge::hsm::split_identity(in);
    if (parts.transport_spki.size() + parts.signing_spki.size() != size) std::abort();
  } catch (const edge::hsm::CellKeyError&) {
  }
  return 0;
}
