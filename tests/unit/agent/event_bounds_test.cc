// Tests for the size bounds on agent event strings (UTF-8-safe cuts with a marker).
#include "agent/control/event_bounds.h"

#include <catch2/catch.hpp>

#include <string>

namespace pgward::agent {
namespace {

bool IsValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || i + length > s.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

TEST_CASE("strings within the bound are unchanged", "[event-bounds]") {
  CHECK(BoundUtf8("", 10) == "");
  CHECK(BoundUtf8("hello", 5) == "hello");
  CHECK(BoundUtf8(std::string(256, 'x'), kMaxEventOtherBytes) == std::string(256, 'x'));
}

TEST_CASE("a long string is cut to the bound, marker included", "[event-bounds]") {
  const std::string cut = BoundUtf8(std::string(300, 'x'), 256);
  CHECK(cut.size() == 256);
  CHECK(cut == std::string(256 - kTruncationMarker.size(), 'x') + std::string(kTruncationMarker));
}

TEST_CASE("a cut never splits a UTF-8 character", "[event-bounds]") {
  // Multibyte characters of 2, 3 and 4 bytes at every alignment against the cut point.
  auto character = GENERATE(as<std::string>{}, "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x90\x98");
  auto offset = GENERATE(0, 1, 2, 3);
  std::string text = std::string(offset, 'a');
  while (text.size() < 400) text += character;
  const size_t max = GENERATE(64, 100, 255, 256);
  const std::string cut = BoundUtf8(text, max);
  INFO("char bytes " << character.size() << ", offset " << offset << ", max " << max);
  CHECK(cut.size() <= max);
  CHECK(cut.size() + character.size() > max);  // nothing more could have been kept
  CHECK(IsValidUtf8(cut));
  CHECK(cut.substr(cut.size() - kTruncationMarker.size()) == kTruncationMarker);
}

TEST_CASE("bytes that are not UTF-8 are cut as single bytes", "[event-bounds]") {
  const std::string garbage(300, '\x80');  // continuation bytes only
  const std::string cut = BoundUtf8(garbage, 100);
  CHECK(cut.size() == 100);
}

TEST_CASE("cutting an already cut string changes nothing", "[event-bounds]") {
  const std::string once = BoundUtf8(std::string(5000, 'y'), kMaxEventErrorBytes);
  CHECK(BoundUtf8(once, kMaxEventErrorBytes) == once);
}

TEST_CASE("a bound smaller than the marker cuts without it", "[event-bounds]") {
  CHECK(BoundUtf8("abcdefghijklmnopqrstuvwxyz", 5) == "abcde");
  CHECK(BoundUtf8("a\xc3\xa9\xc3\xa9", 4) == "a\xc3\xa9");
}

TEST_CASE("every string field of an event has its bound", "[event-bounds]") {
  pgward::v1::AgentEvent event;
  auto* s = event.mutable_statement();
  s->set_statement(std::string(20000, 's'));
  s->set_error(std::string(5000, 'e'));
  s->set_command_tag(std::string(1000, 'c'));
  s->set_sqlstate(std::string(1000, 'q'));
  s->set_fingerprint(std::string(1000, 'f'));
  s->set_protocol(std::string(1000, 'p'));
  s->set_decision(std::string(1000, 'd'));
  s->set_rule(std::string(1000, 'r'));
  s->set_reviewer(std::string(1000, 'v'));
  s->set_session_id(std::string(1000, 'i'));
  BoundEvent(event);
  CHECK(s->statement().size() == kMaxEventStatementBytes);
  CHECK(s->error().size() == kMaxEventErrorBytes);
  for (const std::string* field : {&s->command_tag(), &s->sqlstate(), &s->fingerprint(), &s->protocol(),
                                   &s->decision(), &s->rule(), &s->reviewer(), &s->session_id()}) {
    CHECK(field->size() == kMaxEventOtherBytes);
  }

  pgward::v1::AgentEvent ended;
  ended.mutable_session_ended()->set_reason(std::string(1000, 'x'));
  BoundEvent(ended);
  CHECK(ended.session_ended().reason().size() == kMaxEventOtherBytes);
}

}  // namespace
}  // namespace pgward::agent
