// Postgres v3 wire protocol constants, message type enums and their names for logs
// (PostgreSQL docs, "Frontend/Backend Protocol", sections "Message Flow" and "Message Formats").
#pragma once

#include <cstdint>
#include <string_view>

namespace pgward::pgwire {

// Protocol 3.0 as sent in a StartupMessage: major 3 in the high 16 bits, minor 0 in the low.
inline constexpr uint32_t kProtocolVersion3 = 196608;
// Special "protocol versions" of untyped first packets: 1234.5679, 1234.5680, 1234.5678.
inline constexpr uint32_t kSslRequestCode = 80877103;
inline constexpr uint32_t kGssEncRequestCode = 80877104;
inline constexpr uint32_t kCancelRequestCode = 80877102;
// Same bound as the server's MAX_STARTUP_PACKET_LENGTH (src/include/libpq/pqcomm.h).
inline constexpr uint32_t kMaxStartupPacketLength = 10000;
// Largest length word accepted for any typed message, buffered or streamed. Postgres
// cannot allocate more than MaxAllocSize (1 GiB - 1) for one message either.
inline constexpr uint32_t kMaxMessageLength = 1u << 30;
// Type byte + Int32 length word.
inline constexpr size_t kHeaderLength = 5;

// Frontend = client -> server messages, backend = server -> client messages.
enum class Direction { kFrontend, kBackend };

enum class FrontendType : char {
  kBind = 'B',
  kClose = 'C',
  kCopyData = 'd',
  kCopyDone = 'c',
  kCopyFail = 'f',
  kDescribe = 'D',
  kExecute = 'E',
  kFlush = 'H',
  kFunctionCall = 'F',
  kParse = 'P',
  // Also GSSResponse, SASLInitialResponse and SASLResponse: the meaning of 'p' depends
  // on the authentication exchange in progress.
  kPassword = 'p',
  kQuery = 'Q',
  kSync = 'S',
  kTerminate = 'X',
};

enum class BackendType : char {
  kAuthentication = 'R',
  kBackendKeyData = 'K',
  kBindComplete = '2',
  kCloseComplete = '3',
  kCommandComplete = 'C',
  kCopyData = 'd',
  kCopyDone = 'c',
  kCopyInResponse = 'G',
  kCopyOutResponse = 'H',
  kCopyBothResponse = 'W',
  kDataRow = 'D',
  kEmptyQueryResponse = 'I',
  kErrorResponse = 'E',
  kFunctionCallResponse = 'V',
  kNegotiateProtocolVersion = 'v',
  kNoData = 'n',
  kNoticeResponse = 'N',
  kNotificationResponse = 'A',
  kParameterDescription = 't',
  kParameterStatus = 'S',
  kParseComplete = '1',
  kPortalSuspended = 's',
  kReadyForQuery = 'Z',
  kRowDescription = 'T',
};

// True when `type` is a message type the given direction may send.
bool IsKnownType(Direction dir, char type);
// The message's name as the Postgres docs spell it ("Query", "DataRow", ...), or "unknown".
std::string_view TypeName(Direction dir, char type);
// True for the types MessageReader streams instead of buffering: backend DataRow and
// CopyData, frontend CopyData. These are the only messages that can be large in a healthy
// session; everything else is bounded by the reader's buffering cap.
bool IsStreamedType(Direction dir, char type);

}  // namespace pgward::pgwire
