// Bounds-checked reads over a message body.
#include "common/pgwire/wire_reader.h"

#include <cstring>

namespace pgward::pgwire {

bool WireReader::ReadByte(char* out) {
  if (remaining() < 1) return false;
  *out = data_[pos_++];
  return true;
}

bool WireReader::ReadInt16(int16_t* out) {
  if (remaining() < 2) return false;
  const auto* u = reinterpret_cast<const unsigned char*>(data_.data() + pos_);
  *out = static_cast<int16_t>((uint16_t{u[0]} << 8) | uint16_t{u[1]});
  pos_ += 2;
  return true;
}

bool WireReader::ReadUint32(uint32_t* out) {
  if (remaining() < 4) return false;
  *out = LoadUint32(data_.data() + pos_);
  pos_ += 4;
  return true;
}

bool WireReader::ReadInt32(int32_t* out) {
  uint32_t u;
  if (!ReadUint32(&u)) return false;
  *out = static_cast<int32_t>(u);
  return true;
}

bool WireReader::ReadString(std::string_view* out) {
  const void* nul = std::memchr(data_.data() + pos_, '\0', remaining());
  if (nul == nullptr) return false;
  size_t len = static_cast<const char*>(nul) - (data_.data() + pos_);
  *out = data_.substr(pos_, len);
  pos_ += len + 1;
  return true;
}

bool WireReader::ReadBytes(size_t n, std::string_view* out) {
  if (remaining() < n) return false;
  *out = data_.substr(pos_, n);
  pos_ += n;
  return true;
}

bool WireReader::Skip(size_t n) {
  if (remaining() < n) return false;
  pos_ += n;
  return true;
}

}  // namespace pgward::pgwire
