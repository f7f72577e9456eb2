// The lab TLS certificate: self-signed, made on first run, kept under the state directory.
#pragma once

#include <filesystem>

namespace edge::firmware {

// Writes an ECDSA P-256 key (mode 0600) and a self-signed certificate for
// CN=edge-lab, SAN IP:127.0.0.1, IP:::1, DNS:localhost, valid 825 days, when
// either file is missing. Never overwrites existing material. Returns true
// when it created them. Throws std::runtime_error with OpenSSL's reason.
bool ensure_lab_certificate(const std::filesystem::path& cert, const std::filesystem::path& key);

}  // namespace edge::firmware
