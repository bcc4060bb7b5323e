// Splits a typed Postgres v3 message stream into messages for a MessageHandler, never
// consuming bytes it has not validated (PostgreSQL docs, "Message Formats").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/pgwire/protocol.h"

namespace pgward::pgwire {

struct MessageView {
  char type;
  std::string_view body;  // after the 5-byte header
  std::string_view raw;   // 5-byte header + body, ready to forward unchanged
};

// Implemented by the relay and by tests.
class MessageHandler {
 public:
  virtual ~MessageHandler() = default;
  // A whole buffered message. Views are valid only during the call.
  virtual absl::Status OnMessage(const MessageView& msg) = 0;
  // Streamed types (see IsStreamedType) are never buffered whole: the header comes first
  // (raw 5 bytes), then the body in one or more chunks, `last` on the final one (a
  // zero-length body gives one call with an empty chunk and last=true).
  virtual absl::Status OnStreamedHeader(char type, uint32_t body_length,
                                        std::string_view header_raw) = 0;
  virtual absl::Status OnStreamedBody(std::string_view chunk, bool last) = 0;
};

class MessageReader {
 public:
  // `max_buffered_length` caps the length word (which counts itself but not the type
  // byte, as Postgres's pq_getmessage does) of whole-buffered messages, e.g. 64 MiB.
  // Streamed messages are capped at kMaxMessageLength instead.
  MessageReader(Direction dir, uint32_t max_buffered_length);

  MessageReader(const MessageReader&) = delete;
  MessageReader& operator=(const MessageReader&) = delete;

  // Feeds bytes, calling the handler for each unit completed. Zero-copy when a whole
  // message lies in `data`; otherwise it keeps the partial message internally (reusing its
  // buffer; no per-message allocation in steady state).
  // Errors: unknown type for the direction (InvalidArgument "unknown frontend message type
  // 'x'"), length < 4, buffered message longer than the cap, streamed message longer than
  // kMaxMessageLength; or the handler's error, returned unchanged. After an error the
  // reader stays failed and returns that error from every later Feed.
  absl::Status Feed(std::string_view data, MessageHandler& handler);

  // True when no partial message is pending: the stream may end or switch hands here.
  bool AtMessageBoundary() const;
  Direction direction() const { return dir_; }

 private:
  enum class State {
    kHeader,     // collecting the 5-byte header (header_len_ bytes held so far)
    kBuffering,  // collecting a whole message body into buffer_
    kStreaming,  // passing a streamed body through; stream_remaining_ bytes to go
    kFailed,     // an error was returned; status_ holds it
  };

  // Checks a complete header and decides how its body is handled. Returns the body length.
  absl::StatusOr<uint32_t> ValidateHeader(const char* header) const;
  absl::Status Fail(absl::Status status);

  Direction dir_;
  uint32_t max_buffered_length_;
  State state_ = State::kHeader;
  char header_[kHeaderLength] = {};
  size_t header_len_ = 0;
  std::string buffer_;            // header + partial body while kBuffering
  size_t buffer_target_ = 0;      // full raw length of the message being buffered
  uint32_t stream_remaining_ = 0;
  absl::Status status_;
};

}  // namespace pgward::pgwire
