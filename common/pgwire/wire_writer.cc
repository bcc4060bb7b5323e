// Appending primitives; lengths are patched in place so a message costs no extra buffer.
#include "common/pgwire/wire_writer.h"

namespace pgward::pgwire {

void AppendInt16(std::string& out, int16_t v) {
  auto u = static_cast<uint16_t>(v);
  out.push_back(static_cast<char>(u >> 8));
  out.push_back(static_cast<char>(u));
}

void AppendUint32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

void AppendInt32(std::string& out, int32_t v) { AppendUint32(out, static_cast<uint32_t>(v)); }

void AppendCString(std::string& out, std::string_view s) {
  size_t nul = s.find('\0');
  if (nul != std::string_view::npos) s = s.substr(0, nul);
  out.append(s);
  out.push_back('\0');
}

size_t BeginMessage(std::string& out, char type) {
  out.push_back(type);
  return BeginUntypedPacket(out);
}

size_t BeginUntypedPacket(std::string& out) {
  size_t offset = out.size();
  out.append(4, '\0');
  return offset;
}

void FinishMessage(std::string& out, size_t length_offset) {
  // The length word counts itself and the body, not the type byte.
  auto len = static_cast<uint32_t>(out.size() - length_offset);
  out[length_offset] = static_cast<char>(len >> 24);
  out[length_offset + 1] = static_cast<char>(len >> 16);
  out[length_offset + 2] = static_cast<char>(len >> 8);
  out[length_offset + 3] = static_cast<char>(len);
}

}  // namespace pgward::pgwire
