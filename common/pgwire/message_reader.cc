// Typed-message splitter. Each header is validated before any of its body is consumed;
// large-by-nature messages (rows, COPY data) are streamed so memory stays bounded no matter
// how big a result is, and everything else is buffered up to a cap.
#include "common/pgwire/message_reader.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/pgwire/wire_reader.h"

namespace pgward::pgwire {
namespace {

// Debian's Abseil is built with its own string_view type, which StrCat cannot take from a
// std::string_view directly.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// A buffer grown for one unusually large message is released afterwards so an idle
// session does not keep it; below this it is kept for reuse.
constexpr size_t kRetainedBufferCapacity = 64 * 1024;

std::string_view DirectionName(Direction dir) {
  return dir == Direction::kFrontend ? "frontend" : "backend";
}

// Shows a type byte in an error without echoing arbitrary binary.
std::string PrintableType(char type) {
  auto u = static_cast<unsigned char>(type);
  if (u >= 0x20 && u < 0x7f) return std::string(1, type);
  return absl::StrCat("\\x", absl::Hex(u, absl::kZeroPad2));
}

}  // namespace

MessageReader::MessageReader(Direction dir, uint32_t max_buffered_length)
    : dir_(dir), max_buffered_length_(std::min(max_buffered_length, kMaxMessageLength)) {}

bool MessageReader::AtMessageBoundary() const {
  return state_ == State::kHeader && header_len_ == 0;
}

absl::Status MessageReader::Fail(absl::Status status) {
  state_ = State::kFailed;
  status_ = status;
  buffer_ = std::string();
  return status;
}

absl::StatusOr<uint32_t> MessageReader::ValidateHeader(const char* header) const {
  const char type = header[0];
  if (!IsKnownType(dir_, type)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown ", AbslView(DirectionName(dir_)),
                                                   " message type '", PrintableType(type),
                                                   "'"));
  }
  const uint32_t len = LoadUint32(header + 1);
  if (len < 4) {
    return absl::InvalidArgumentError(absl::StrCat("invalid length ", len, " for ",
                                                   AbslView(TypeName(dir_, type)), " message"));
  }
  const uint32_t cap = IsStreamedType(dir_, type) ? kMaxMessageLength : max_buffered_length_;
  if (len > cap) {
    return absl::InvalidArgumentError(absl::StrCat(AbslView(TypeName(dir_, type)), " message length ",
                                                   len, " exceeds the limit of ", cap));
  }
  return len - 4;
}

absl::Status MessageReader::Feed(std::string_view data, MessageHandler& handler) {
  while (true) {
    switch (state_) {
      case State::kFailed:
        return status_;

      case State::kHeader: {
        if (data.empty()) return absl::OkStatus();
        const char* header;
        bool header_in_data = false;
        if (header_len_ == 0 && data.size() >= kHeaderLength) {
          header = data.data();
          header_in_data = true;
        } else {
          size_t take = std::min(kHeaderLength - header_len_, data.size());
          std::copy_n(data.data(), take, header_ + header_len_);
          header_len_ += take;
          data.remove_prefix(take);
          if (header_len_ < kHeaderLength) return absl::OkStatus();
          header = header_;
        }
        absl::StatusOr<uint32_t> body_len = ValidateHeader(header);
        if (!body_len.ok()) return Fail(body_len.status());
        const char type = header[0];
        const std::string_view header_raw(header, kHeaderLength);

        if (IsStreamedType(dir_, type)) {
          absl::Status st = handler.OnStreamedHeader(type, *body_len, header_raw);
          if (header_in_data) data.remove_prefix(kHeaderLength);
          header_len_ = 0;
          if (!st.ok()) return Fail(st);
          if (*body_len == 0) {
            st = handler.OnStreamedBody({}, true);
            if (!st.ok()) return Fail(st);
          } else {
            stream_remaining_ = *body_len;
            state_ = State::kStreaming;
          }
          continue;
        }

        const size_t total = kHeaderLength + *body_len;
        if (header_in_data && data.size() >= total) {
          // Fast path: the whole message is in the caller's buffer; hand out views of it.
          std::string_view raw = data.substr(0, total);
          data.remove_prefix(total);
          absl::Status st = handler.OnMessage({type, raw.substr(kHeaderLength), raw});
          if (!st.ok()) return Fail(st);
          continue;
        }
        buffer_.clear();
        buffer_.append(header, kHeaderLength);
        if (header_in_data) data.remove_prefix(kHeaderLength);
        header_len_ = 0;
        buffer_target_ = total;
        state_ = State::kBuffering;
        continue;
      }

      case State::kBuffering: {
        size_t take = std::min(buffer_target_ - buffer_.size(), data.size());
        buffer_.append(data.data(), take);
        data.remove_prefix(take);
        if (buffer_.size() < buffer_target_) return absl::OkStatus();
        std::string_view raw(buffer_);
        state_ = State::kHeader;
        absl::Status st = handler.OnMessage({raw[0], raw.substr(kHeaderLength), raw});
        if (!st.ok()) return Fail(st);
        if (buffer_.capacity() > kRetainedBufferCapacity) {
          buffer_ = std::string();
        } else {
          buffer_.clear();
        }
        continue;
      }

      case State::kStreaming: {
        if (data.empty()) return absl::OkStatus();
        size_t take = std::min<size_t>(stream_remaining_, data.size());
        stream_remaining_ -= static_cast<uint32_t>(take);
        const bool last = stream_remaining_ == 0;
        if (last) state_ = State::kHeader;
        absl::Status st = handler.OnStreamedBody(data.substr(0, take), last);
        data.remove_prefix(take);
        if (!st.ok()) return Fail(st);
        continue;
      }
    }
  }
}

}  // namespace pgward::pgwire
