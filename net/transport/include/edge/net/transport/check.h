// Whether a transport configuration would start here and now: asked before a restart commits to it.
#pragma once

#include "edge/net/transport/config.h"

#include <string>
#include <vector>

namespace edge::net {

// "" when Transports(next).start() would succeed as far as configuration,
// addresses and TLS material go; otherwise the first reason it would not, in
// the words start() throws, e.g.
//   "tcp 127.0.0.1:5060: cannot bind: address in use"
//   "tcp 1.2.3:5060: not an IP address"
//   "tls: cannot load certificate chain /etc/edge/cert.pem: No such file or directory"
//   "tls: private key /etc/edge/key.pem does not match the certificate"
// In this order:
//  1. the rules start() applies first (transports, core address, limits);
//  2. every listener's address is an IP literal;
//  3. no two stream listeners (tcp, tls, ws, wss), and no two UDP listeners,
//     share an address and a port other than 0;
//  4. the TLS material loads exactly as start() loads it (the listeners'
//     context when a listener is tls or wss, the core link's when the core is
//     tls), so a key that does not match its certificate is refused;
//  5. every listener with a port other than 0 that is not in `already_bound`
//     (same transport, address and port: what a running instance holds now,
//     and would collide with itself) can be bound: a socket is bound with the
//     options its listener uses and closed at once.
// Nothing stays open and no thread is started; any thread, any time.
std::string check(const TransportConfig& next, const std::vector<ListenerConfig>& already_bound = {});

}  // namespace edge::net
