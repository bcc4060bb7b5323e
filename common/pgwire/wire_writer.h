// Appending primitives for building Postgres messages in a caller-owned buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pgward::pgwire {

void AppendInt16(std::string& out, int16_t v);
void AppendInt32(std::string& out, int32_t v);
void AppendUint32(std::string& out, uint32_t v);
// A String: `s` up to its first NUL (the format cannot carry one), then the terminator.
void AppendCString(std::string& out, std::string_view s);

// Writes the type byte and a placeholder length word; returns the offset of the length word
// for FinishMessage, which fills it in once the body is appended.
size_t BeginMessage(std::string& out, char type);
// For untyped packets (startup, SSL, cancel): only the placeholder length word.
size_t BeginUntypedPacket(std::string& out);
void FinishMessage(std::string& out, size_t length_offset);

}  // namespace pgward::pgwire
