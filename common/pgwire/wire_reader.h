// Bounds-checked cursor over a message body: every read either succeeds or leaves the
// cursor unchanged and returns false, so decoders never read past the data they were given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pgward::pgwire {

class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}

  bool ReadByte(char* out);
  bool ReadInt16(int16_t* out);   // network byte order
  bool ReadInt32(int32_t* out);   // network byte order
  bool ReadUint32(uint32_t* out);
  // A NUL-terminated String; the view excludes the terminator.
  bool ReadString(std::string_view* out);
  bool ReadBytes(size_t n, std::string_view* out);
  bool Skip(size_t n);

  size_t remaining() const { return data_.size() - pos_; }
  bool AtEnd() const { return pos_ == data_.size(); }
  std::string_view Rest() const { return data_.substr(pos_); }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

// Reads a big-endian integer from 4 bytes the caller knows are there.
inline uint32_t LoadUint32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}

}  // namespace pgward::pgwire
