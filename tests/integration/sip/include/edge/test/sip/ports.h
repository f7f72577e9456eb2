// Free loopback ports for test listeners.
#pragma once

#include <cstdint>

namespace edge::test {

// A port that is free on 127.0.0.1 for both UDP and TCP at the time of the
// call (SIP listeners usually take both), and on ::1 too when v6 is set.
// The kernel picks it; there is a window before the caller binds, harmless
// inside a test's private network namespace, where nobody else binds.
std::uint16_t free_port(bool also_v6 = false);

}  // namespace edge::test
