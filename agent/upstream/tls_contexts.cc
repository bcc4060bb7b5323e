#include "agent/upstream/tls_contexts.h"

namespace pgward::agent {

absl::StatusOr<asio::ssl::context*> TlsContexts::Get(bool verify, const std::string& ca_file) {
  absl::MutexLock lock(&mu_);
  auto key = std::make_pair(verify, verify ? ca_file : std::string());
  auto it = contexts_.find(key);
  if (it != contexts_.end()) return it->second.get();
  auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
  asio::error_code ec;
  if (verify) {
    context->set_verify_mode(asio::ssl::verify_peer, ec);
    if (ca_file.empty()) {
      context->set_default_verify_paths(ec);
    } else {
      context->load_verify_file(ca_file, ec);
    }
    if (ec) {
      return absl::FailedPreconditionError("cannot load the CA file for sslmode=verify-full: " +
                                           ec.message());
    }
  } else {
    context->set_verify_mode(asio::ssl::verify_none, ec);
  }
  asio::ssl::context* raw = context.get();
  contexts_.emplace(key, std::move(context));
  return raw;
}

asio::ssl::context& TlsContexts::Plain() { return plain_; }

}  // namespace pgward::agent
