// Self-signed ECDSA P-256 certificate generation (OpenSSL 3 EVP/X509), SHA-256 fingerprints, file reads.
#include "common/crypto/tls_material.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crypto/private_file.h"
#include "common/crypto/random.h"

namespace pgward::crypto {
namespace {

constexpr long kValidityDays = 3650;  // about 10 years: a self-signed cert is pinned, not rotated

struct PkeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct X509Free { void operator()(X509* p) const { X509_free(p); } };
struct BioFree { void operator()(BIO* p) const { BIO_free(p); } };
struct BnFree { void operator()(BIGNUM* p) const { BN_free(p); } };
struct ExtFree { void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); } };

// Appends OpenSSL's queued error (if any) so failures are diagnosable, and clears the queue.
std::string OpenSslError(std::string_view what) {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return std::string(what);
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return absl::StrCat(absl::string_view(what.data(), what.size()), ": ", buf);
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::Status AddExtension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtFree> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext) return absl::InvalidArgumentError(OpenSslError(absl::StrCat("bad certificate extension ", value)));
  if (X509_add_ext(cert, ext.get(), -1) != 1) return absl::InternalError(OpenSslError("X509_add_ext"));
  return absl::OkStatus();
}

absl::Status CreateParentDirectory(const std::string& path) {
  std::string parent = std::filesystem::path(path).parent_path().string();
  return CreatePrivateDirectories(parent);
}

}  // namespace

absl::Status EnsureSelfSignedCertificate(const std::string& cert_path, const std::string& key_path,
                                         const std::string& common_name,
                                         const std::vector<std::string>& extra_sans) {
  if (FileExists(cert_path) && FileExists(key_path)) return absl::OkStatus();

  std::vector<std::string> sans = {"DNS:localhost", "IP:127.0.0.1", "IP:::1"};
  for (const std::string& san : extra_sans) {
    // A ',' would smuggle further entries into OpenSSL's SAN config string.
    bool prefixed = san.rfind("DNS:", 0) == 0 || san.rfind("IP:", 0) == 0;
    if (!prefixed || san.find(',') != std::string::npos || san.size() <= 4) {
      return absl::InvalidArgumentError(absl::StrCat("subjectAltName entry '", san, "' must be DNS:name or IP:addr"));
    }
    sans.push_back(san);
  }

  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_EC_gen("P-256"));
  if (!key) return absl::InternalError(OpenSslError("cannot generate a P-256 key"));
  std::unique_ptr<X509, X509Free> cert(X509_new());
  if (!cert) return absl::ResourceExhaustedError("X509_new");

  // RFC 5280 section 4.1.2.2: a positive serial of at most 20 octets; 127 random bits.
  std::string serial_bytes = RandomBytes(16);
  serial_bytes[0] = static_cast<char>(serial_bytes[0] & 0x7f);
  std::unique_ptr<BIGNUM, BnFree> serial(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(serial_bytes.data()), 16, nullptr));
  if (!serial || X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr ||
      // Back-date an hour so a client with a slightly slow clock accepts it immediately.
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), kValidityDays, 0, nullptr) == nullptr ||
      X509_set_pubkey(cert.get(), key.get()) != 1) {
    return absl::InternalError(OpenSslError("cannot fill in the certificate"));
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                                 -1, -1, 0) != 1 ||
      X509_set_issuer_name(cert.get(), name) != 1) {
    return absl::InvalidArgumentError(OpenSslError("bad certificate common name"));
  }
  // A leaf, not a CA (so strict verifiers such as rustls/webpki accept it as an end entity); clients
  // trust it by pinning the file or its fingerprint.
  const std::pair<int, std::string> extensions[] = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature"},
      {NID_ext_key_usage, "serverAuth,clientAuth"},
      {NID_subject_key_identifier, "hash"},
      {NID_subject_alt_name, absl::StrJoin(sans, ",")},
  };
  for (const auto& [nid, value] : extensions) {
    if (absl::Status s = AddExtension(cert.get(), nid, value); !s.ok()) return s;
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return absl::InternalError(OpenSslError("cannot sign the certificate"));
  }

  std::unique_ptr<BIO, BioFree> key_bio(BIO_new(BIO_s_mem()));
  std::unique_ptr<BIO, BioFree> cert_bio(BIO_new(BIO_s_mem()));
  if (!key_bio || !cert_bio ||
      PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1) {
    return absl::InternalError(OpenSslError("cannot encode PEM"));
  }
  if (absl::Status s = CreateParentDirectory(key_path); !s.ok()) return s;
  if (absl::Status s = CreateParentDirectory(cert_path); !s.ok()) return s;
  // Key first: if we stop in between, the certificate is missing and the next start regenerates both.
  if (absl::Status s = WriteFileAtomically(key_path, BioContents(key_bio.get()), 0600, true); !s.ok()) return s;
  return WriteFileAtomically(cert_path, BioContents(cert_bio.get()), 0644, true);
}

absl::StatusOr<std::string> CertificateSha256Fingerprint(const std::string& cert_pem_path) {
  absl::StatusOr<std::string> pem = ReadFileToString(cert_pem_path);
  if (!pem.ok()) return pem.status();
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  std::unique_ptr<X509, X509Free> cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) return absl::InvalidArgumentError(OpenSslError(absl::StrCat(cert_pem_path, " holds no PEM certificate")));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert.get(), EVP_sha256(), digest, &len) != 1) {
    return absl::InternalError(OpenSslError("X509_digest"));
  }
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    if (i > 0) out.push_back(':');
    out.push_back(kDigits[digest[i] >> 4]);
    out.push_back(kDigits[digest[i] & 15]);
  }
  return out;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string msg = absl::StrCat("cannot open ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::InternalError(msg);
  }
  std::string out;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot read ", path, ": ", std::strerror(err)));
    }
    if (n == 0) break;
    // Checked while reading rather than via fstat so pipes and growing files cannot exceed the bound.
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      ::close(fd);
      return absl::FailedPreconditionError(absl::StrCat(path, " is larger than ", max_bytes, " bytes"));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace pgward::crypto
