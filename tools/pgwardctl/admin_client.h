// pgwardctl's connection to the gateway's AdminService: TLS channel, bearer token, a 10 s
// deadline per call, and gRPC errors turned into one readable line.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pgward/v1/admin.grpc.pb.h"

namespace pgward::ctl {

struct ClientOptions {
  std::string gateway;     // HOST:PORT
  std::string token_file;  // admin.key or a file holding an admin OIDC token
  std::string ca_file;     // PEM roots; empty: the system's
};

class AdminClient {
 public:
  // Reads the token and CA files; does not contact the gateway yet.
  static absl::StatusOr<std::unique_ptr<AdminClient>> Create(const ClientOptions& options);

  // Runs one unary RPC. The returned status message is ready to print after "pgwardctl: ".
  template <typename Request, typename Response>
  absl::Status Call(grpc::Status (pgward::v1::AdminService::Stub::*method)(grpc::ClientContext*, const Request&,
                                                                          Response*),
                    const Request& request, Response* response) {
    grpc::ClientContext ctx;
    Prepare(ctx);
    return Describe((stub_.get()->*method)(&ctx, request, response));
  }

 private:
  AdminClient(std::string gateway, std::string token, std::unique_ptr<pgward::v1::AdminService::Stub> stub)
      : gateway_(std::move(gateway)), token_(std::move(token)), stub_(std::move(stub)) {}
  void Prepare(grpc::ClientContext& ctx) const;
  absl::Status Describe(const grpc::Status& status) const;

  const std::string gateway_;
  const std::string token_;  // never printed
  std::unique_ptr<pgward::v1::AdminService::Stub> stub_;
};

}  // namespace pgward::ctl
