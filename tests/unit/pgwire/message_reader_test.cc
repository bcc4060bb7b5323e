// MessageReader behaviour: framing, splits across reads, length bounds, streaming, failure.
#include "common/pgwire/message_reader.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/pgwire/wire_writer.h"
#include "tests/unit/pgwire/recording_handler.h"

namespace pgward::pgwire {
namespace {

using testing::RecordingHandler;

constexpr uint32_t kCap = 1024;

std::string Msg(char type, std::string_view body) {
  std::string out;
  size_t at = BeginMessage(out, type);
  out.append(body);
  FinishMessage(out, at);
  return out;
}

// A header whose length word is `length`, with no body.
std::string Header(char type, uint32_t length) {
  std::string out(1, type);
  AppendUint32(out, length);
  return out;
}

std::string Message(absl::Status st) { return std::string(st.message()); }

TEST_CASE("a whole message in one buffer is reported with views into that buffer",
          "[message_reader]") {
  struct PointerHandler : RecordingHandler {
    absl::Status OnMessage(const MessageView& msg) override {
      raw_data = msg.raw.data();
      return RecordingHandler::OnMessage(msg);
    }
    const char* raw_data = nullptr;
  } handler;
  MessageReader reader(Direction::kFrontend, kCap);
  std::string wire = Msg('Q', std::string("select 1\0", 9));
  REQUIRE(reader.Feed(wire, handler).ok());
  REQUIRE(handler.messages.size() == 1);
  CHECK(handler.raw_data == wire.data());
  CHECK(handler.messages[0].type == 'Q');
  CHECK(handler.messages[0].body == std::string("select 1\0", 9));
  CHECK(handler.messages[0].raw == wire);
  CHECK(reader.AtMessageBoundary());
}

TEST_CASE("two messages in one buffer are both reported in order", "[message_reader]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  std::string wire = Msg('Q', std::string("begin\0", 6)) + Msg('S', "");
  REQUIRE(reader.Feed(wire, handler).ok());
  REQUIRE(handler.messages.size() == 2);
  CHECK(handler.messages[0].type == 'Q');
  CHECK(handler.messages[1].type == 'S');
  CHECK(handler.messages[1].body.empty());
}

TEST_CASE("many messages in one buffer are all reported", "[message_reader]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kBackend, kCap);
  std::string wire;
  for (int i = 0; i < 500; ++i) {
    wire += Msg('D', "row" + std::to_string(i));
    wire += Msg('C', std::string("SELECT 1\0", 9));
  }
  REQUIRE(reader.Feed(wire, handler).ok());
  REQUIRE(handler.messages.size() == 1000);
  CHECK(handler.messages[998].body == "row499");
  CHECK(handler.messages[999].type == 'C');
}

// A mixed stream: buffered, empty, streamed with body, streamed empty, buffered.
std::vector<std::string> MixedBackendMessages() {
  return {Msg('T', std::string("\0\1abc\0", 6)), Msg('2', ""), Msg('D', "0123456789"),
          Msg('d', ""), Msg('E', std::string("SERROR\0\0", 8)),
          Msg('Z', "I")};
}

void CheckMixed(const RecordingHandler& handler, const std::vector<std::string>& msgs) {
  REQUIRE(handler.messages.size() == msgs.size());
  for (size_t i = 0; i < msgs.size(); ++i) {
    CHECK(handler.messages[i].raw == msgs[i]);
    CHECK(handler.messages[i].type == msgs[i][0]);
    CHECK(handler.messages[i].body == msgs[i].substr(5));
  }
  CHECK_FALSE(handler.messages[0].streamed);
  CHECK(handler.messages[2].streamed);
  CHECK(handler.messages[3].streamed);
  CHECK(handler.messages[3].chunks == 1);
  CHECK_FALSE(handler.body_without_header);
}

TEST_CASE("a stream split across two reads at every byte position is reassembled",
          "[message_reader]") {
  std::vector<std::string> msgs = MixedBackendMessages();
  std::string wire;
  for (const auto& m : msgs) wire += m;
  for (size_t split = 0; split <= wire.size(); ++split) {
    CAPTURE(split);
    RecordingHandler handler;
    MessageReader reader(Direction::kBackend, kCap);
    REQUIRE(reader.Feed(std::string_view(wire).substr(0, split), handler).ok());
    REQUIRE(reader.Feed(std::string_view(wire).substr(split), handler).ok());
    CheckMixed(handler, msgs);
    CHECK(reader.AtMessageBoundary());
  }
}

TEST_CASE("a stream fed one byte at a time is reassembled", "[message_reader]") {
  std::vector<std::string> msgs = MixedBackendMessages();
  std::string wire;
  for (const auto& m : msgs) wire += m;
  RecordingHandler handler;
  MessageReader reader(Direction::kBackend, kCap);
  for (char c : wire) REQUIRE(reader.Feed(std::string_view(&c, 1), handler).ok());
  CheckMixed(handler, msgs);
  CHECK(handler.messages[2].chunks == 10);
}

TEST_CASE("AtMessageBoundary is false while a header or body is pending", "[message_reader]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kBackend, kCap);
  CHECK(reader.AtMessageBoundary());
  std::string row = Msg('D', "abcdef");
  std::string cc = Msg('C', std::string("SELECT 1\0", 9));
  REQUIRE(reader.Feed(row.substr(0, 3), handler).ok());
  CHECK_FALSE(reader.AtMessageBoundary());
  REQUIRE(reader.Feed(row.substr(3, 4), handler).ok());
  CHECK_FALSE(reader.AtMessageBoundary());
  REQUIRE(reader.Feed(row.substr(7), handler).ok());
  CHECK(reader.AtMessageBoundary());
  REQUIRE(reader.Feed(cc.substr(0, 8), handler).ok());
  CHECK_FALSE(reader.AtMessageBoundary());
  REQUIRE(reader.Feed(cc.substr(8), handler).ok());
  CHECK(reader.AtMessageBoundary());
}

TEST_CASE("a length word below 4 is refused", "[message_reader][bounds]") {
  uint32_t len = GENERATE(0u, 1u, 3u);
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  absl::Status st = reader.Feed(Header('Q', len), handler);
  CHECK(st.code() == absl::StatusCode::kInvalidArgument);
  CHECK(Message(st) == "invalid length " + std::to_string(len) + " for Query message");
  CHECK(handler.messages.empty());
}

TEST_CASE("a length word of 4 gives an empty body", "[message_reader][bounds]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  REQUIRE(reader.Feed(Header('S', 4), handler).ok());
  REQUIRE(handler.messages.size() == 1);
  CHECK(handler.messages[0].body.empty());
  CHECK(handler.messages[0].raw.size() == 5);
}

TEST_CASE("a buffered message exactly at the cap is accepted", "[message_reader][bounds]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  std::string body(kCap - 5, 'x');
  body.push_back('\0');
  std::string wire = Msg('Q', body);
  REQUIRE(wire.size() == kCap + 1);  // length word == kCap
  REQUIRE(reader.Feed(wire.substr(0, 100), handler).ok());
  REQUIRE(reader.Feed(wire.substr(100), handler).ok());
  REQUIRE(handler.messages.size() == 1);
  CHECK(handler.messages[0].raw == wire);
}

TEST_CASE("a buffered message one byte over the cap is refused from its header alone",
          "[message_reader][bounds]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  absl::Status st = reader.Feed(Header('Q', kCap + 1), handler);
  CHECK(st.code() == absl::StatusCode::kInvalidArgument);
  CHECK(Message(st) == "Query message length 1025 exceeds the limit of 1024");
  CHECK(handler.messages.empty());
}

TEST_CASE("a streamed message is not bound by the buffering cap", "[message_reader][bounds]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kBackend, kCap);
  REQUIRE(reader.Feed(Header('D', kMaxMessageLength), handler).ok());
  REQUIRE(handler.declared_lengths.size() == 1);
  CHECK(handler.declared_lengths[0] == kMaxMessageLength - 4);
  CHECK_FALSE(reader.AtMessageBoundary());
}

TEST_CASE("a streamed message over 1 GiB is refused", "[message_reader][bounds]") {
  auto [dir, type] = GENERATE(std::make_pair(Direction::kBackend, 'D'),
                              std::make_pair(Direction::kBackend, 'd'),
                              std::make_pair(Direction::kFrontend, 'd'));
  RecordingHandler handler;
  MessageReader reader(dir, kCap);
  absl::Status st = reader.Feed(Header(type, kMaxMessageLength + 1), handler);
  CHECK(st.code() == absl::StatusCode::kInvalidArgument);
  CHECK(handler.messages.empty());
}

TEST_CASE("an unknown frontend message type is refused", "[message_reader]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  // 'Z' is ReadyForQuery, a backend-only type.
  absl::Status st = reader.Feed(Msg('Z', "I"), handler);
  CHECK(st.code() == absl::StatusCode::kInvalidArgument);
  CHECK(Message(st) == "unknown frontend message type 'Z'");
  CHECK(handler.messages.empty());
}

TEST_CASE("an unknown backend message type is refused", "[message_reader]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kBackend, kCap);
  absl::Status st = reader.Feed(Msg('Q', std::string("x\0", 2)), handler);
  CHECK(Message(st) == "unknown backend message type 'Q'");
}

TEST_CASE("an unprintable type byte is shown escaped in the error", "[message_reader]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  absl::Status st = reader.Feed(std::string("\x00\x00\x00\x00\x04", 5), handler);
  CHECK(Message(st) == "unknown frontend message type '\\x00'");
}

TEST_CASE("an unknown type is refused as soon as its type byte arrives with a header",
          "[message_reader]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  REQUIRE(reader.Feed(std::string_view("?\0\0", 3), handler).ok());  // header incomplete
  CHECK_FALSE(reader.Feed(std::string_view("\0\x04", 2), handler).ok());
}

TEST_CASE("the reader stays failed after an error", "[message_reader]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  absl::Status first = reader.Feed(Msg('Z', "I"), handler);
  REQUIRE_FALSE(first.ok());
  absl::Status second = reader.Feed(Msg('S', ""), handler);
  CHECK(second == first);
  CHECK(handler.messages.empty());
}

TEST_CASE("a handler error is returned unchanged and stops the reader", "[message_reader]") {
  RecordingHandler handler;
  handler.next_status = absl::PermissionDeniedError("refused by policy");
  MessageReader reader(Direction::kFrontend, kCap);
  std::string wire = Msg('Q', std::string("drop table t\0", 13)) + Msg('S', "");
  absl::Status st = reader.Feed(wire, handler);
  CHECK(st.code() == absl::StatusCode::kPermissionDenied);
  CHECK(handler.messages.size() == 1);  // the Sync after it was not delivered
  handler.next_status = absl::OkStatus();
  CHECK(reader.Feed(Msg('S', ""), handler).code() == absl::StatusCode::kPermissionDenied);
}

TEST_CASE("a streamed body arrives in the chunks it was fed, last flagged once",
          "[message_reader][streaming]") {
  struct ChunkHandler : RecordingHandler {
    absl::Status OnStreamedBody(std::string_view chunk, bool last) override {
      sizes.push_back(chunk.size());
      lasts.push_back(last);
      return RecordingHandler::OnStreamedBody(chunk, last);
    }
    std::vector<size_t> sizes;
    std::vector<bool> lasts;
  } handler;
  MessageReader reader(Direction::kBackend, 16);  // cap far below the row size
  std::string body(100, 'r');
  std::string wire = Msg('D', body) + Msg('C', std::string("SELECT 1\0", 9));
  for (size_t pos = 0; pos < wire.size(); pos += 7) {
    REQUIRE(reader.Feed(std::string_view(wire).substr(pos, 7), handler).ok());
  }
  REQUIRE(handler.messages.size() == 2);
  CHECK(handler.messages[0].body == body);
  CHECK(handler.messages[1].type == 'C');
  // The first 7-byte feed carries the 5-byte header and 2 body bytes; then 14 chunks of 7.
  size_t total = 0;
  for (size_t s : handler.sizes) total += s;
  CHECK(total == 100);
  CHECK(handler.sizes.front() == 2);
  CHECK(handler.sizes.size() == 15);
  for (size_t i = 0; i + 1 < handler.lasts.size(); ++i) CHECK_FALSE(handler.lasts[i]);
  CHECK(handler.lasts.back());
}

TEST_CASE("a zero-length streamed body gives one empty last chunk",
          "[message_reader][streaming]") {
  auto [dir, type] = GENERATE(std::make_pair(Direction::kBackend, 'D'),
                              std::make_pair(Direction::kBackend, 'd'),
                              std::make_pair(Direction::kFrontend, 'd'));
  RecordingHandler handler;
  MessageReader reader(dir, kCap);
  REQUIRE(reader.Feed(Header(type, 4), handler).ok());
  REQUIRE(handler.messages.size() == 1);
  CHECK(handler.messages[0].streamed);
  CHECK(handler.messages[0].chunks == 1);
  CHECK(handler.messages[0].body.empty());
  CHECK_FALSE(handler.in_stream);
  CHECK(reader.AtMessageBoundary());
}

TEST_CASE("frontend CopyData is streamed but frontend Describe is buffered",
          "[message_reader][streaming]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  std::string wire = Msg('d', "1\t2\n") + Msg('D', std::string("S\0", 2)) + Msg('c', "");
  REQUIRE(reader.Feed(wire, handler).ok());
  REQUIRE(handler.messages.size() == 3);
  CHECK(handler.messages[0].streamed);
  CHECK(handler.messages[0].body == "1\t2\n");
  CHECK_FALSE(handler.messages[1].streamed);
  CHECK_FALSE(handler.messages[2].streamed);
}

TEST_CASE("a buffered message split across reads is delivered with the same bytes",
          "[message_reader]") {
  RecordingHandler handler;
  MessageReader reader(Direction::kFrontend, kCap);
  std::string first = Msg('Q', std::string("select 'a'\0", 11));
  std::string second = Msg('Q', std::string("select 'bb'\0", 12));
  std::string wire = first + second;
  // Split inside the second message after the first completed: the buffer is reused.
  REQUIRE(reader.Feed(std::string_view(wire).substr(0, first.size() + 8), handler).ok());
  REQUIRE(reader.Feed(std::string_view(wire).substr(first.size() + 8), handler).ok());
  REQUIRE(handler.messages.size() == 2);
  CHECK(handler.messages[0].raw == first);
  CHECK(handler.messages[1].raw == second);
}

}  // namespace
}  // namespace pgward::pgwire
