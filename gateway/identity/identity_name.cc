// Identity name checks: see identity_name.h.
#include "gateway/identity/identity_name.h"

#include <cstdint>

namespace pgward::identity {
namespace {

bool IsRefusedCodePoint(uint32_t cp) {
  if (cp < 0x20 || cp == 0x7f) return true;           // C0 controls and DEL
  if (cp >= 0x80 && cp <= 0x9f) return true;          // C1 controls
  if (cp == 0x2028 || cp == 0x2029) return true;      // line and paragraph separators
  if (cp == 0x061c || cp == 0x200e || cp == 0x200f) return true;  // bidi marks
  if (cp >= 0x202a && cp <= 0x202e) return true;      // bidi embeddings and overrides
  if (cp >= 0x2066 && cp <= 0x2069) return true;      // bidi isolates
  return false;
}

// Decodes one code point at `s[i]` per RFC 3629 section 4; false if malformed.
bool DecodeUtf8(std::string_view s, size_t& i, uint32_t& cp) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t lead = byte(i);
  size_t length;
  uint32_t min;
  if (lead < 0x80) {
    cp = lead;
    i += 1;
    return true;
  } else if ((lead & 0xe0) == 0xc0) {
    length = 2, cp = lead & 0x1f, min = 0x80;
  } else if ((lead & 0xf0) == 0xe0) {
    length = 3, cp = lead & 0x0f, min = 0x800;
  } else if ((lead & 0xf8) == 0xf0) {
    length = 4, cp = lead & 0x07, min = 0x10000;
  } else {
    return false;  // a continuation byte or 0xf8..0xff where a character must start
  }
  if (s.size() - i < length) return false;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return false;
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
  i += length;
  return true;
}

}  // namespace

absl::Status CheckIdentityName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("is empty");
  if (name.size() > kMaxIdentityNameBytes) return absl::InvalidArgumentError("is longer than 1024 bytes");
  for (size_t i = 0; i < name.size();) {
    uint32_t cp = 0;
    if (!DecodeUtf8(name, i, cp)) return absl::InvalidArgumentError("is not valid UTF-8");
    if (IsRefusedCodePoint(cp)) {
      return absl::InvalidArgumentError("contains a control, line-separator or bidirectional-formatting character");
    }
  }
  return absl::OkStatus();
}

}  // namespace pgward::identity
