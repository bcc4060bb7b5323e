// Client TLS contexts for upstream Postgres connections, one per (verification, CA file).
#pragma once

#include <asio/ssl.hpp>

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace pgward::agent {

// Loading a CA bundle costs milliseconds, so contexts are built once and shared by every
// session; asio::ssl::context is safe to use from many streams once configured.
class TlsContexts {
 public:
  // verify=false: encryption without authentication (sslmode prefer/require, as libpq).
  // verify=true: chain checked against `ca_file` (or the system store when empty).
  absl::StatusOr<asio::ssl::context*> Get(bool verify, const std::string& ca_file);
  // A context for plaintext connections; MaybeTlsStream needs one even when TLS is off.
  asio::ssl::context& Plain();

 private:
  absl::Mutex mu_;
  std::map<std::pair<bool, std::string>, std::unique_ptr<asio::ssl::context>> contexts_
      ABSL_GUARDED_BY(mu_);
  asio::ssl::context plain_{asio::ssl::context::tls_client};
};

}  // namespace pgward::agent
