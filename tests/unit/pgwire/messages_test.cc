// Body decoders (including their refusal of truncated input) and builder round-trips
// through MessageReader and the decoders.
#include "common/pgwire/messages.h"

#include <catch2/catch.hpp>

#include <functional>
#include <string>

#include "common/pgwire/message_reader.h"
#include "common/pgwire/wire_writer.h"
#include "tests/unit/pgwire/recording_handler.h"

namespace pgward::pgwire {
namespace {

using testing::RecordingHandler;
using namespace std::string_literals;

// Runs `wire` through a reader and returns the single message it must contain.
testing::RecordedMessage ReadOne(Direction dir, const std::string& wire) {
  RecordingHandler handler;
  MessageReader reader(dir, 1 << 20);
  absl::Status st = reader.Feed(wire, handler);
  REQUIRE(st.ok());
  REQUIRE(handler.messages.size() == 1);
  REQUIRE(reader.AtMessageBoundary());
  return handler.messages[0];
}

// --- decoders ---------------------------------------------------------------------------

TEST_CASE("Parse decodes names, query and parameter type count", "[messages]") {
  std::string body = "s1\0select $1\0"s;
  AppendInt16(body, 2);
  AppendInt32(body, 23);
  AppendInt32(body, 25);
  auto m = DecodeParse(body);
  REQUIRE(m.ok());
  CHECK(m->statement == "s1");
  CHECK(m->query == "select $1");
  CHECK(m->param_type_count == 2);
}

std::string ValidBind() {
  std::string body = "p1\0s1\0"s;
  AppendInt16(body, 1);   // one parameter format code
  AppendInt16(body, 0);
  AppendInt16(body, 2);   // two parameters
  AppendInt32(body, 3);
  body += "abc";
  AppendInt32(body, -1);  // NULL
  AppendInt16(body, 1);   // one result format code
  AppendInt16(body, 1);
  return body;
}

TEST_CASE("Bind decodes portal and statement and checks the rest for bounds", "[messages]") {
  std::string body = ValidBind();  // decoders return views: keep the body alive
  auto m = DecodeBind(body);
  REQUIRE(m.ok());
  CHECK(m->portal == "p1");
  CHECK(m->statement == "s1");
}

TEST_CASE("Bind with a negative length other than -1 is refused", "[messages]") {
  std::string body = "\0\0"s;
  AppendInt16(body, 0);
  AppendInt16(body, 1);
  AppendInt32(body, -2);
  AppendInt16(body, 0);
  CHECK_FALSE(DecodeBind(body).ok());
}

TEST_CASE("Bind with negative counts is refused", "[messages]") {
  std::string body = "\0\0"s;
  AppendInt16(body, -1);
  CHECK_FALSE(DecodeBind(body).ok());
}

TEST_CASE("Execute, Describe and Close decode", "[messages]") {
  std::string exec = "portal\0"s;
  AppendInt32(exec, 50);
  auto e = DecodeExecute(exec);
  REQUIRE(e.ok());
  CHECK(e->portal == "portal");
  CHECK(e->max_rows == 50);

  std::string describe = "Pcur\0"s;
  auto d = DecodeDescribeOrClose(describe);
  REQUIRE(d.ok());
  CHECK(d->kind == 'P');
  CHECK(d->name == "cur");
  CHECK_FALSE(DecodeDescribeOrClose("Xname\0"s).ok());
}

TEST_CASE("ErrorResponse takes severity from V over S and ignores unknown fields",
          "[messages]") {
  std::string body = "SFEHLER\0VERROR\0C42P01\0Mno table\0Dd\0Hh\0Pfoo\0\0"s;
  auto f = DecodeErrorOrNotice(body);
  REQUIRE(f.ok());
  CHECK(f->severity == "ERROR");
  CHECK(f->sqlstate == "42P01");
  CHECK(f->message == "no table");
  CHECK(f->detail == "d");
  CHECK(f->hint == "h");
  std::string old_body = "SFATAL\0C28000\0Mx\0\0"s;  // before 9.6: no V field
  auto old = DecodeErrorOrNotice(old_body);
  REQUIRE(old.ok());
  CHECK(old->severity == "FATAL");
}

TEST_CASE("ReadyForQuery accepts only I, T and E", "[messages]") {
  CHECK(*DecodeReadyForQuery("T") == 'T');
  CHECK_FALSE(DecodeReadyForQuery("X").ok());
  CHECK_FALSE(DecodeReadyForQuery("II").ok());
}

TEST_CASE("Authentication decodes each supported request", "[messages]") {
  std::string md5;
  AppendInt32(md5, kAuthMd5Password);
  md5 += "salt";
  auto a = DecodeAuthentication(md5);
  REQUIRE(a.ok());
  CHECK(a->code == kAuthMd5Password);
  CHECK(a->data == "salt");

  std::string sasl;
  AppendInt32(sasl, kAuthSasl);
  sasl += "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"s;
  auto s = DecodeAuthentication(sasl);
  REQUIRE(s.ok());
  CHECK(SplitSaslMechanisms(s->data) ==
        std::vector<std::string_view>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});

  std::string cont;
  AppendInt32(cont, kAuthSaslContinue);
  cont += "r=abc,s=xyz,i=4096";
  auto c = DecodeAuthentication(cont);
  REQUIRE(c.ok());
  CHECK(c->data == "r=abc,s=xyz,i=4096");

  std::string unknown;
  AppendInt32(unknown, 99);
  CHECK_FALSE(DecodeAuthentication(unknown).ok());
  std::string ok_with_data;
  AppendInt32(ok_with_data, kAuthOk);
  ok_with_data += "x";
  CHECK_FALSE(DecodeAuthentication(ok_with_data).ok());
}

TEST_CASE("decoders refuse trailing bytes", "[messages]") {
  CHECK_FALSE(DecodeQuery("select 1\0x"s).ok());
  CHECK_FALSE(DecodeCommandComplete("SELECT 1\0\0"s).ok());
  CHECK_FALSE(DecodeBind(ValidBind() + "z").ok());
  CHECK_FALSE(DecodeParameterStatus("a\0b\0c"s).ok());
  CHECK_FALSE(DecodeErrorOrNotice("Mx\0\0junk"s).ok());
  CHECK_FALSE(DecodeBackendKeyData("123456789").ok());
}

// For every decoder: the valid body decodes, and every strict prefix of it is refused.
TEST_CASE("every decoder refuses every truncation of a valid body", "[messages][truncation]") {
  using Decoder = std::function<bool(std::string_view)>;
  std::string parse = "s\0select $1\0"s;
  AppendInt16(parse, 1);
  AppendInt32(parse, 23);
  std::string execute = "p\0"s;
  AppendInt32(execute, 0);
  std::string key;
  AppendInt32(key, 7);
  AppendUint32(key, 9);
  std::string md5;
  AppendInt32(md5, kAuthMd5Password);
  md5 += "abcd";
  std::string sasl;
  AppendInt32(sasl, kAuthSasl);
  sasl += "SCRAM-SHA-256\0\0"s;

  auto [name, body, decode] = GENERATE_COPY(table<std::string, std::string, Decoder>({
      {"Query", "select 1\0"s, [](auto b) { return DecodeQuery(b).ok(); }},
      {"Parse", parse, [](auto b) { return DecodeParse(b).ok(); }},
      {"Bind", ValidBind(), [](auto b) { return DecodeBind(b).ok(); }},
      {"Execute", execute, [](auto b) { return DecodeExecute(b).ok(); }},
      {"Describe", "Sname\0"s, [](auto b) { return DecodeDescribeOrClose(b).ok(); }},
      {"CommandComplete", "INSERT 0 1\0"s, [](auto b) { return DecodeCommandComplete(b).ok(); }},
      {"ErrorResponse", "SERROR\0C42501\0Mdenied\0\0"s,
       [](auto b) { return DecodeErrorOrNotice(b).ok(); }},
      {"ReadyForQuery", "I", [](auto b) { return DecodeReadyForQuery(b).ok(); }},
      {"ParameterStatus", "TimeZone\0UTC\0"s, [](auto b) { return DecodeParameterStatus(b).ok(); }},
      {"BackendKeyData", key, [](auto b) { return DecodeBackendKeyData(b).ok(); }},
      {"AuthenticationMD5", md5, [](auto b) { return DecodeAuthentication(b).ok(); }},
      {"AuthenticationSASL", sasl, [](auto b) { return DecodeAuthentication(b).ok(); }},
      {"PasswordMessage", "secret\0"s, [](auto b) { return DecodePasswordMessage(b).ok(); }},
  }));
  CAPTURE(name);
  REQUIRE(decode(body));
  for (size_t n = 0; n < body.size(); ++n) {
    CAPTURE(n);
    CHECK_FALSE(decode(std::string_view(body).substr(0, n)));
  }
}

TEST_CASE("RowsFromCommandTag reads the row count of counting tags", "[messages]") {
  auto [tag, rows] = GENERATE(table<std::string, int64_t>({
      {"SELECT 5", 5},
      {"SELECT 0", 0},
      {"INSERT 0 3", 3},
      {"INSERT 16384 1", 1},
      {"UPDATE 12", 12},
      {"DELETE 7", 7},
      {"MERGE 2", 2},
      {"COPY 1000000", 1000000},
      {"MOVE 4", 4},
      {"FETCH 9", 9},
      {"SELECT 9223372036854775807", 9223372036854775807},
      {"CREATE TABLE", -1},
      {"BEGIN", -1},
      {"INSERT 3", -1},
      {"SELECT", -1},
      {"SELECT ", -1},
      {"SELECT x", -1},
      {"SELECT 5 6", -1},
      {"SELECT -1", -1},
      {"SELECT 99999999999999999999", -1},
      {"", -1},
  }));
  CAPTURE(tag);
  CHECK(RowsFromCommandTag(tag) == rows);
}

// --- builders round-trip through the reader and decoders ---------------------------------

TEST_CASE("ErrorResponse and NoticeResponse round-trip", "[builders]") {
  std::string out;
  AppendErrorResponse(out, "FATAL", "28000", "authentication failed", "", "get a new token");
  auto msg = ReadOne(Direction::kBackend, out);
  CHECK(msg.type == 'E');
  auto f = DecodeErrorOrNotice(msg.body);
  REQUIRE(f.ok());
  CHECK(f->severity == "FATAL");
  CHECK(f->sqlstate == "28000");
  CHECK(f->message == "authentication failed");
  CHECK(f->detail.empty());
  CHECK(f->hint == "get a new token");

  out.clear();
  AppendNoticeResponse(out, "WARNING", "01000", "careful", "detail");
  msg = ReadOne(Direction::kBackend, out);
  CHECK(msg.type == 'N');
  CHECK(DecodeErrorOrNotice(msg.body)->detail == "detail");
}

TEST_CASE("builders cut strings at an embedded NUL", "[builders]") {
  std::string out;
  AppendErrorResponse(out, "ERROR", "42501", "denied\0secret"s);
  auto msg = ReadOne(Direction::kBackend, out);
  auto f = DecodeErrorOrNotice(msg.body);
  REQUIRE(f.ok());
  CHECK(f->message == "denied");
}

TEST_CASE("authentication and session-start messages round-trip", "[builders]") {
  std::string out;
  AppendAuthenticationOk(out);
  auto a = DecodeAuthentication(ReadOne(Direction::kBackend, out).body);
  REQUIRE(a.ok());
  CHECK(a->code == kAuthOk);

  out.clear();
  AppendAuthenticationCleartextPassword(out);
  CHECK(DecodeAuthentication(ReadOne(Direction::kBackend, out).body)->code ==
        kAuthCleartextPassword);

  out.clear();
  AppendParameterStatus(out, "application_name", "pgward:bot");
  auto ps_msg = ReadOne(Direction::kBackend, out);
  auto ps = DecodeParameterStatus(ps_msg.body);
  REQUIRE(ps.ok());
  CHECK(ps->first == "application_name");
  CHECK(ps->second == "pgward:bot");

  out.clear();
  AppendBackendKeyData(out, -5, 0xfffffffe);
  auto key = DecodeBackendKeyData(ReadOne(Direction::kBackend, out).body);
  REQUIRE(key.ok());
  CHECK(key->first == -5);
  CHECK(key->second == 0xfffffffeu);

  out.clear();
  AppendReadyForQuery(out, 'E');
  CHECK(*DecodeReadyForQuery(ReadOne(Direction::kBackend, out).body) == 'E');
}

TEST_CASE("frontend builders round-trip", "[builders]") {
  std::string out;
  AppendQuery(out, "select 1");
  auto q = ReadOne(Direction::kFrontend, out);
  CHECK(q.type == 'Q');
  CHECK(*DecodeQuery(q.body) == "select 1");

  out.clear();
  AppendPasswordMessage(out, "eyJhbGciOi.token");
  auto pw = ReadOne(Direction::kFrontend, out);
  CHECK(*DecodePasswordMessage(pw.body) == "eyJhbGciOi.token");

  out.clear();
  AppendSync(out);
  CHECK(ReadOne(Direction::kFrontend, out).type == 'S');
  out.clear();
  AppendTerminate(out);
  CHECK(ReadOne(Direction::kFrontend, out).raw == "X\0\0\0\x04"s);
}

TEST_CASE("SASL responses carry the mechanism and raw data", "[builders]") {
  std::string out;
  AppendSaslInitialResponse(out, "SCRAM-SHA-256", "n,,n=,r=nonce");
  auto msg = ReadOne(Direction::kFrontend, out);
  CHECK(msg.type == 'p');
  std::string expected = "SCRAM-SHA-256\0"s;
  AppendInt32(expected, 13);
  expected += "n,,n=,r=nonce";
  CHECK(msg.body == expected);

  out.clear();
  AppendSaslResponse(out, "c=biws,r=nonce,p=proof");
  CHECK(ReadOne(Direction::kFrontend, out).body == "c=biws,r=nonce,p=proof");
}

TEST_CASE("a login reply built into one buffer reads back split at every position",
          "[builders]") {
  std::string out;
  AppendAuthenticationOk(out);
  AppendParameterStatus(out, "server_version", "15.4");
  AppendBackendKeyData(out, 1, 2);
  AppendReadyForQuery(out, 'I');
  for (size_t split = 0; split <= out.size(); ++split) {
    CAPTURE(split);
    RecordingHandler handler;
    MessageReader reader(Direction::kBackend, 1024);
    REQUIRE(reader.Feed(std::string_view(out).substr(0, split), handler).ok());
    REQUIRE(reader.Feed(std::string_view(out).substr(split), handler).ok());
    REQUIRE(handler.messages.size() == 4);
    CHECK(handler.messages[0].type == 'R');
    CHECK(handler.messages[1].type == 'S');
    CHECK(handler.messages[2].type == 'K');
    CHECK(*DecodeReadyForQuery(handler.messages[3].body) == 'I');
  }
}

}  // namespace
}  // namespace pgward::pgwire
