// Tests for self-signed certificate generation, fingerprints and bounded file reads.
#include "common/crypto/tls_material.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <regex>
#include <string>

#include "common/crypto/private_file.h"
#include "tests/unit/crypto/temp_dir.h"

namespace pgward::crypto {
namespace {

using testing::TempDir;

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

struct X509Free { void operator()(X509* p) const { X509_free(p); } };
struct PkeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct BioFree { void operator()(BIO* p) const { BIO_free(p); } };

std::unique_ptr<X509, X509Free> LoadCert(const std::string& path) {
  std::string pem = ReadFileToString(path).value();
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return std::unique_ptr<X509, X509Free>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

std::unique_ptr<EVP_PKEY, PkeyFree> LoadKey(const std::string& path) {
  std::string pem = ReadFileToString(path).value();
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return std::unique_ptr<EVP_PKEY, PkeyFree>(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

TEST_CASE("Self-signed certificate is generated with a private key and stable fingerprint", "[tls]") {
  TempDir dir;
  std::string cert_path = dir.File("tls/gateway.crt");
  std::string key_path = dir.File("tls/gateway.key");
  REQUIRE(EnsureSelfSignedCertificate(cert_path, key_path, "pgward-gateway", {"DNS:gw.example", "IP:10.0.0.7"}).ok());
  CHECK(ModeOf(key_path) == 0600);
  CHECK(ModeOf(dir.File("tls")) == 0700);

  absl::StatusOr<std::string> fingerprint = CertificateSha256Fingerprint(cert_path);
  REQUIRE(fingerprint.ok());
  CHECK(std::regex_match(*fingerprint, std::regex("([0-9A-F]{2}:){31}[0-9A-F]{2}")));

  // A second call with both files present must not regenerate: clients pin this fingerprint.
  REQUIRE(EnsureSelfSignedCertificate(cert_path, key_path, "pgward-gateway", {}).ok());
  CHECK(CertificateSha256Fingerprint(cert_path).value() == *fingerprint);
}

TEST_CASE("Self-signed certificate has the requested names, key and validity", "[tls]") {
  TempDir dir;
  std::string cert_path = dir.File("c.crt");
  std::string key_path = dir.File("c.key");
  REQUIRE(EnsureSelfSignedCertificate(cert_path, key_path, "pgward-gateway", {"DNS:gw.example", "IP:10.0.0.7"}).ok());
  auto cert = LoadCert(cert_path);
  auto key = LoadKey(key_path);
  REQUIRE(cert);
  REQUIRE(key);

  CHECK(X509_check_private_key(cert.get(), key.get()) == 1);
  CHECK(EVP_PKEY_is_a(key.get(), "EC"));
  char group[64] = {};
  size_t group_len = 0;
  REQUIRE(EVP_PKEY_get_group_name(key.get(), group, sizeof(group), &group_len) == 1);
  CHECK(std::string(group) == "prime256v1");
  // Self-signed: its own key verifies it.
  CHECK(X509_verify(cert.get(), key.get()) == 1);

  for (const char* host : {"localhost", "gw.example"}) {
    INFO(host);
    CHECK(X509_check_host(cert.get(), host, 0, 0, nullptr) == 1);
  }
  CHECK(X509_check_host(cert.get(), "other.example", 0, 0, nullptr) == 0);
  for (const char* ip : {"127.0.0.1", "::1", "10.0.0.7"}) {
    INFO(ip);
    CHECK(X509_check_ip_asc(cert.get(), ip, 0) == 1);
  }
  CHECK(X509_check_ip_asc(cert.get(), "10.0.0.8", 0) == 0);

  // Valid now and for at least 9 more years.
  int days = 0;
  int secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(cert.get())) == 1);
  CHECK(days > 9 * 365);
  CHECK(X509_cmp_current_time(X509_get0_notBefore(cert.get())) < 0);
}

TEST_CASE("Self-signed certificate verifies when the client trusts the file itself", "[tls]") {
  // This is how a Postgres client uses it (sslrootcert=gateway.crt, sslmode=verify-full).
  TempDir dir;
  std::string cert_path = dir.File("c.crt");
  REQUIRE(EnsureSelfSignedCertificate(cert_path, dir.File("c.key"), "pgward-gateway", {}).ok());
  auto cert = LoadCert(cert_path);
  std::unique_ptr<X509_STORE, void (*)(X509_STORE*)> store(X509_STORE_new(), X509_STORE_free);
  REQUIRE(X509_STORE_add_cert(store.get(), cert.get()) == 1);
  std::unique_ptr<X509_STORE_CTX, void (*)(X509_STORE_CTX*)> ctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
  REQUIRE(X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) == 1);
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx.get()), "localhost", 0);
  int ok = X509_verify_cert(ctx.get());
  INFO(X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
  CHECK(ok == 1);
}

TEST_CASE("Self-signed certificate is regenerated if the key file is missing", "[tls]") {
  TempDir dir;
  std::string cert_path = dir.File("c.crt");
  std::string key_path = dir.File("c.key");
  REQUIRE(EnsureSelfSignedCertificate(cert_path, key_path, "cn", {}).ok());
  std::string before = CertificateSha256Fingerprint(cert_path).value();
  REQUIRE(std::remove(key_path.c_str()) == 0);
  REQUIRE(EnsureSelfSignedCertificate(cert_path, key_path, "cn", {}).ok());
  CHECK(CertificateSha256Fingerprint(cert_path).value() != before);
  CHECK(X509_check_private_key(LoadCert(cert_path).get(), LoadKey(key_path).get()) == 1);
}

TEST_CASE("Self-signed certificate refuses malformed subjectAltName entries", "[tls]") {
  TempDir dir;
  auto bad = GENERATE(as<std::string>{}, "gw.example", "DNS:a,DNS:b", "URI:http://x", "IP:not-an-ip", "DNS:");
  INFO(bad);
  CHECK_FALSE(EnsureSelfSignedCertificate(dir.File("c.crt"), dir.File("c.key"), "cn", {bad}).ok());
  struct stat st {};
  CHECK(::stat(dir.File("c.key").c_str(), &st) != 0);
}

TEST_CASE("Fingerprint of a missing or non-certificate file is an error", "[tls]") {
  TempDir dir;
  CHECK(absl::IsNotFound(CertificateSha256Fingerprint(dir.File("absent.crt")).status()));
  REQUIRE(WriteFileAtomically(dir.File("junk.crt"), "not a certificate", 0644, true).ok());
  CHECK(absl::IsInvalidArgument(CertificateSha256Fingerprint(dir.File("junk.crt")).status()));
}

TEST_CASE("ReadFileToString enforces its size bound", "[tls]") {
  TempDir dir;
  std::string path = dir.File("f");
  REQUIRE(WriteFileAtomically(path, std::string(100, 'a'), 0644, true).ok());
  CHECK(ReadFileToString(path, 100).value().size() == 100);
  CHECK(absl::IsFailedPrecondition(ReadFileToString(path, 99).status()));
  CHECK(absl::IsNotFound(ReadFileToString(dir.File("missing")).status()));
}

TEST_CASE("WriteFileAtomically without overwrite keeps the first file", "[tls]") {
  TempDir dir;
  std::string path = dir.File("k");
  REQUIRE(WriteFileAtomically(path, "first", 0600, false).ok());
  CHECK(absl::IsAlreadyExists(WriteFileAtomically(path, "second", 0600, false)));
  CHECK(ReadFileToString(path).value() == "first");
  REQUIRE(WriteFileAtomically(path, "third", 0600, true).ok());
  CHECK(ReadFileToString(path).value() == "third");
  // No temporary files are left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  CHECK(entries == 1);
}

}  // namespace
}  // namespace pgward::crypto
