// HTTP GET for OIDC discovery and JWKS documents; an interface so tests can serve them without a network.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace pgward::identity {

class HttpFetcher {
 public:
  virtual ~HttpFetcher() = default;
  // Returns the body of a 200 response. Anything else (other status, timeout, oversized body,
  // TLS failure) is an error whose message names the URL and the failure.
  virtual absl::StatusOr<std::string> Get(const std::string& url) = 0;
  // POSTs `form` (application/x-www-form-urlencoded) with HTTP Basic credentials `user` and
  // `password` (RFC 6749 2.3.1: each form-urlencoded first); the body of a 200 response, as Get.
  virtual absl::StatusOr<std::string> PostForm(const std::string& url, const std::string& form, const std::string& user,
                                               const std::string& password) {
    (void)url, (void)form, (void)user, (void)password;
    return absl::UnimplementedError("POST is not supported by this fetcher");
  }
};

// libcurl implementation: 5 s total timeout, 1 MiB body cap, http and https only (redirects
// allowed only to http/https, and from https only to https), peer verification on, with
// `ca_file` as the trust store when non-empty (system store otherwise). Thread-safe: each Get
// uses its own easy handle.
std::unique_ptr<HttpFetcher> MakeCurlHttpFetcher(const std::string& ca_file);

}  // namespace pgward::identity
