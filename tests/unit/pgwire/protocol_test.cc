// Type tables: which bytes each direction may send, their names, and which are streamed.
#include "common/pgwire/protocol.h"

#include <catch2/catch.hpp>

namespace pgward::pgwire {
namespace {

TEST_CASE("frontend types are known and named as in the docs", "[protocol]") {
  auto [type, name] = GENERATE(table<FrontendType, std::string_view>({
      {FrontendType::kBind, "Bind"}, {FrontendType::kClose, "Close"},
      {FrontendType::kCopyData, "CopyData"}, {FrontendType::kCopyDone, "CopyDone"},
      {FrontendType::kCopyFail, "CopyFail"}, {FrontendType::kDescribe, "Describe"},
      {FrontendType::kExecute, "Execute"}, {FrontendType::kFlush, "Flush"},
      {FrontendType::kFunctionCall, "FunctionCall"}, {FrontendType::kParse, "Parse"},
      {FrontendType::kPassword, "PasswordMessage"}, {FrontendType::kQuery, "Query"},
      {FrontendType::kSync, "Sync"}, {FrontendType::kTerminate, "Terminate"},
  }));
  char c = static_cast<char>(type);
  CHECK(IsKnownType(Direction::kFrontend, c));
  CHECK(TypeName(Direction::kFrontend, c) == name);
}

TEST_CASE("backend types are known and named as in the docs", "[protocol]") {
  auto [type, name] = GENERATE(table<BackendType, std::string_view>({
      {BackendType::kAuthentication, "Authentication"},
      {BackendType::kBackendKeyData, "BackendKeyData"},
      {BackendType::kBindComplete, "BindComplete"},
      {BackendType::kCloseComplete, "CloseComplete"},
      {BackendType::kCommandComplete, "CommandComplete"},
      {BackendType::kCopyData, "CopyData"}, {BackendType::kCopyDone, "CopyDone"},
      {BackendType::kCopyInResponse, "CopyInResponse"},
      {BackendType::kCopyOutResponse, "CopyOutResponse"},
      {BackendType::kCopyBothResponse, "CopyBothResponse"},
      {BackendType::kDataRow, "DataRow"},
      {BackendType::kEmptyQueryResponse, "EmptyQueryResponse"},
      {BackendType::kErrorResponse, "ErrorResponse"},
      {BackendType::kFunctionCallResponse, "FunctionCallResponse"},
      {BackendType::kNegotiateProtocolVersion, "NegotiateProtocolVersion"},
      {BackendType::kNoData, "NoData"}, {BackendType::kNoticeResponse, "NoticeResponse"},
      {BackendType::kNotificationResponse, "NotificationResponse"},
      {BackendType::kParameterDescription, "ParameterDescription"},
      {BackendType::kParameterStatus, "ParameterStatus"},
      {BackendType::kParseComplete, "ParseComplete"},
      {BackendType::kPortalSuspended, "PortalSuspended"},
      {BackendType::kReadyForQuery, "ReadyForQuery"},
      {BackendType::kRowDescription, "RowDescription"},
  }));
  char c = static_cast<char>(type);
  CHECK(IsKnownType(Direction::kBackend, c));
  CHECK(TypeName(Direction::kBackend, c) == name);
}

TEST_CASE("exactly the documented types are known", "[protocol]") {
  int frontend = 0, backend = 0;
  for (int b = 0; b < 256; ++b) {
    frontend += IsKnownType(Direction::kFrontend, static_cast<char>(b));
    backend += IsKnownType(Direction::kBackend, static_cast<char>(b));
  }
  CHECK(frontend == 14);
  CHECK(backend == 24);
  CHECK(TypeName(Direction::kFrontend, 'Z') == "unknown");
  CHECK(TypeName(Direction::kBackend, '\xff') == "unknown");
}

TEST_CASE("only DataRow and CopyData are streamed", "[protocol]") {
  CHECK(IsStreamedType(Direction::kBackend, 'D'));
  CHECK(IsStreamedType(Direction::kBackend, 'd'));
  CHECK(IsStreamedType(Direction::kFrontend, 'd'));
  CHECK_FALSE(IsStreamedType(Direction::kFrontend, 'D'));  // Describe
  CHECK_FALSE(IsStreamedType(Direction::kBackend, 'T'));
}

}  // namespace
}  // namespace pgward::pgwire
