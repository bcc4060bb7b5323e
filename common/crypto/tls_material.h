// Self-signed TLS certificate generation, certificate fingerprints and bounded file reads.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pgward::crypto {

// If either file is missing, generates a self-signed ECDSA P-256 certificate valid about 10 years with
// subjectAltName DNS:localhost, IP:127.0.0.1, IP:::1 plus `extra_sans` (each "DNS:name" or "IP:addr"),
// creating parent directories with mode 0700 and writing the key with mode 0600. If both exist, does
// nothing (the certificate, and so its fingerprint, stays stable across restarts).
absl::Status EnsureSelfSignedCertificate(const std::string& cert_path, const std::string& key_path,
                                         const std::string& common_name,
                                         const std::vector<std::string>& extra_sans);

// SHA-256 over the DER of the first certificate in a PEM file, as "AB:CD:..." (95 characters).
absl::StatusOr<std::string> CertificateSha256Fingerprint(const std::string& cert_pem_path);

// Reads a whole file; NotFound if missing, FailedPrecondition if larger than max_bytes.
absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes = 1 << 20);

}  // namespace pgward::crypto
