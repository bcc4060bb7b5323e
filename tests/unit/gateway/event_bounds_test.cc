// Agent event fields are cut to fixed bounds at UTF-8 character boundaries, with a mark.
#include <catch2/catch.hpp>

#include <string>

#include "gateway/broker/event_bounds.h"

namespace pgward::gateway {
namespace {

// True if `s` is well-formed UTF-8 (enough for these tests: lead bytes and continuations).
bool WellFormedUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto lead = static_cast<unsigned char>(s[i]);
    const size_t length = lead < 0x80 ? 1 : (lead & 0xe0) == 0xc0 ? 2 : (lead & 0xf0) == 0xe0 ? 3
                                          : (lead & 0xf8) == 0xf0 ? 4 : 0;
    if (length == 0 || i + length > s.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

TEST_CASE("text within the bound is left alone", "[bounds]") {
  std::string text = GENERATE(std::string(), std::string("SELECT 1"), std::string(256, 'x'));
  const std::string before = text;
  CHECK_FALSE(TruncateUtf8(text, 256));
  CHECK(text == before);
}

TEST_CASE("a cut never splits a UTF-8 character and stays within the bound", "[bounds]") {
  // One-, two-, three- and four-byte characters, repeated past the bound, at every offset.
  const std::string unit = GENERATE(std::string("a"), std::string("\xc3\xa9"), std::string("\xe2\x82\xac"),
                                    std::string("\xf0\x9f\x90\x98"));
  const size_t prefix = GENERATE(0, 1, 2, 3);
  const size_t bound = GENERATE(41, 64, 100, 256, 4096);
  std::string text(prefix, 'p');
  while (text.size() < bound * 3) text += unit;
  const size_t original = text.size();
  INFO("unit " << unit.size() << " bytes, prefix " << prefix << ", bound " << bound);
  REQUIRE(TruncateUtf8(text, bound));
  CHECK(text.size() <= bound);
  CHECK(WellFormedUtf8(text));
  const std::string mark = "\xe2\x80\xa6[truncated ";
  const size_t at = text.rfind(mark);
  REQUIRE(at != std::string::npos);
  // The mark says how many bytes of the original are gone.
  const std::string removed = text.substr(at + mark.size(), text.size() - at - mark.size() - std::string(" bytes]").size());
  CHECK(std::stoul(removed) == original - at);
  CHECK(text.substr(text.size() - 7) == " bytes]");
}

TEST_CASE("every text field of a statement event is bounded", "[bounds]") {
  pgward::v1::StatementEvent e;
  e.set_session_id(std::string(1000, 's'));
  e.set_protocol(std::string(1000, 'p'));
  e.set_statement(std::string(5 << 20, 'q'));
  e.set_fingerprint(std::string(1000, 'f'));
  e.set_command_tag(std::string(1000, 't'));
  e.set_sqlstate(std::string(1000, 'c'));
  e.set_error(std::string(30 << 20, 'e'));
  e.set_decision(std::string(1000, 'd'));
  e.set_rule(std::string(1000, 'r'));
  e.set_reviewer(std::string(1000, 'v'));
  REQUIRE(BoundStatementEvent(e));
  CHECK(e.statement().size() <= kMaxStatementBytes);
  CHECK(e.statement().size() > kMaxStatementBytes - 64);
  CHECK(e.error().size() <= kMaxErrorBytes);
  for (const std::string* field : {&e.session_id(), &e.protocol(), &e.fingerprint(), &e.command_tag(), &e.sqlstate(),
                                   &e.decision(), &e.rule(), &e.reviewer()}) {
    CHECK(field->size() <= kMaxShortFieldBytes);
    CHECK(field->find("[truncated ") != std::string::npos);
  }
  CHECK(e.ByteSizeLong() < 32 * 1024);

  pgward::v1::StatementEvent small;
  small.set_statement("SELECT $1");
  small.set_session_id("s1");
  CHECK_FALSE(BoundStatementEvent(small));
  CHECK(small.statement() == "SELECT $1");
}

TEST_CASE("session-ended events are bounded too", "[bounds]") {
  pgward::v1::SessionEnded e;
  e.set_session_id(std::string(300, 's'));
  e.set_reason(std::string(1 << 20, 'r'));
  REQUIRE(BoundSessionEnded(e));
  CHECK(e.session_id().size() <= kMaxShortFieldBytes);
  CHECK(e.reason().size() <= kMaxShortFieldBytes);
}

TEST_CASE("an outcome outside ok, error and unknown is cleared, for the store to derive", "[bounds]") {
  pgward::v1::StatementEvent e;
  const std::string kept = GENERATE(std::string("ok"), std::string("error"), std::string("unknown"));
  e.set_outcome(kept);
  BoundStatementEvent(e);
  CHECK(e.outcome() == kept);
  const std::string bogus = GENERATE(std::string("OK"), std::string("unknown "), std::string(300, 'x'));
  e.set_outcome(bogus);
  BoundStatementEvent(e);
  CHECK(e.outcome().empty());
}

}  // namespace
}  // namespace pgward::gateway
