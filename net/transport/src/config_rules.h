// Internal: what a TransportConfig must say before anything is bound or loaded (start() and check() ask).
#pragma once

#include "edge/net/transport/config.h"

namespace edge::net::detail {

// Throws TransportError naming the first problem: a transport a listener or the
// core cannot use, a core address that is not an IP literal, limits out of range.
void validate(const TransportConfig& c);

}  // namespace edge::net::detail
