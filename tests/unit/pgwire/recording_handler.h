// Test MessageHandler that records every callback, reassembling streamed bodies, so tests
// can compare what the reader reported against the messages that were fed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/pgwire/message_reader.h"

namespace pgward::pgwire::testing {

struct RecordedMessage {
  char type;
  std::string body;
  std::string raw;      // header + body as reported (streamed: header_raw + all chunks)
  bool streamed;
  int chunks = 0;       // streamed only: number of OnStreamedBody calls
};

class RecordingHandler : public MessageHandler {
 public:
  absl::Status OnMessage(const MessageView& msg) override {
    messages.push_back({msg.type, std::string(msg.body), std::string(msg.raw), false});
    return next_status;
  }
  absl::Status OnStreamedHeader(char type, uint32_t body_length,
                                std::string_view header_raw) override {
    messages.push_back({type, "", std::string(header_raw), true});
    declared_lengths.push_back(body_length);
    in_stream = true;
    return next_status;
  }
  absl::Status OnStreamedBody(std::string_view chunk, bool last) override {
    if (!in_stream) {
      body_without_header = true;
      return absl::OkStatus();
    }
    RecordedMessage& m = messages.back();
    m.body.append(chunk);
    m.raw.append(chunk);
    ++m.chunks;
    if (last) in_stream = false;
    return next_status;
  }

  std::vector<RecordedMessage> messages;
  std::vector<uint32_t> declared_lengths;
  bool in_stream = false;
  bool body_without_header = false;
  absl::Status next_status = absl::OkStatus();
};

}  // namespace pgward::pgwire::testing
