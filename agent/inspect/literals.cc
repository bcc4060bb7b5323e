// Literals: a pg_query_scan client (with a small protobuf reader) and the error-message redactor.
#include "agent/inspect/literals.h"

#include <pg_query.h>  // defines PG_VERSION: keep it out of headers

#include <array>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace pgward::inspect {
namespace {

// Protobuf wire format (protobuf.dev/programming-guides/encoding): tag = field << 3 | wire type.
class ProtoReader {
 public:
  explicit ProtoReader(std::string_view data) : data_(data) {}
  bool Done() const { return pos_ >= data_.size(); }

  std::optional<uint64_t> Varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return std::nullopt;
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    return std::nullopt;
  }

  // Reads one field: its number and, for length-delimited fields, the bytes; varints in `value`.
  bool Field(uint32_t& number, uint64_t& value, std::string_view& bytes) {
    auto tag = Varint();
    if (!tag) return false;
    number = static_cast<uint32_t>(*tag >> 3);
    switch (*tag & 7) {
      case 0: {
        auto v = Varint();
        if (!v) return false;
        value = *v;
        return true;
      }
      case 1: return Skip(8);
      case 2: {
        auto length = Varint();
        if (!length || *length > data_.size() - pos_) return false;
        bytes = data_.substr(pos_, *length);
        pos_ += *length;
        return true;
      }
      case 5: return Skip(4);
      default: return false;
    }
  }

 private:
  bool Skip(size_t n) {
    if (n > data_.size() - pos_) return false;
    pos_ += n;
    return true;
  }
  std::string_view data_;
  size_t pos_ = 0;
};

std::optional<SqlToken> DecodeToken(std::string_view message) {
  ProtoReader reader(message);
  SqlToken token;
  while (!reader.Done()) {
    uint32_t number = 0;
    uint64_t value = 0;
    std::string_view bytes;
    if (!reader.Field(number, value, bytes)) return std::nullopt;
    if (number == 1) token.start = static_cast<int>(value);
    if (number == 2) token.end = static_cast<int>(value);
    if (number == 4) token.kind = static_cast<int>(value);
  }
  return token;
}

bool IsStringConstant(int kind) {
  return kind == kTokenSconst || kind == kTokenUsconst || kind == kTokenBconst || kind == kTokenXconst;
}

// Could `text` hold a quoted or dollar-quoted constant? '$' followed by a digit is a parameter.
bool MayHoldStringConstant(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\'') return true;
    if (text[i] == '$' && i + 1 < text.size() && !absl::ascii_isdigit(static_cast<unsigned char>(text[i + 1]))) {
      return true;
    }
  }
  return false;
}

// The end of a standard-conforming quoted string whose opening quote is at `quote`: quotes are
// doubled inside, and 'a'<newline>'b' continues the literal (scan.l {quotecontinue}). npos if
// it does not end.
size_t EndOfQuoted(std::string_view text, size_t quote) {
  size_t i = quote + 1;
  for (;;) {
    const size_t close = text.find('\'', i);
    if (close == std::string_view::npos) return close;
    if (close + 1 < text.size() && text[close + 1] == '\'') {
      i = close + 2;
      continue;
    }
    size_t next = close + 1;
    bool newline = false;
    while (next < text.size() && absl::ascii_isspace(static_cast<unsigned char>(text[next]))) {
      newline |= text[next] == '\n' || text[next] == '\r';
      ++next;
    }
    if (newline && next < text.size() && text[next] == '\'') {
      i = next + 1;
      continue;
    }
    return close + 1;
  }
}

bool IsIdentifierChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return absl::ascii_isalnum(u) || c == '_' || c == '$' || u >= 0x80;
}

// `needle` occurs in `haystack` as a whole name: not inside a longer identifier.
bool OccursAsName(std::string_view haystack, std::string_view needle) {
  if (needle.empty()) return false;
  for (size_t at = haystack.find(needle); at != std::string_view::npos; at = haystack.find(needle, at + 1)) {
    const bool starts = at == 0 || !IsIdentifierChar(haystack[at - 1]);
    const size_t after = at + needle.size();
    const bool ends = after == haystack.size() || !IsIdentifierChar(haystack[after]);
    if (starts && ends) return true;
  }
  return false;
}

// Quote pairs seen in Postgres messages: ASCII, and what translations use (German „…“, French
// « … », Japanese 「…」, ...). UTF-8 byte strings.
struct QuotePair {
  std::string_view open, close;
};
constexpr std::array<QuotePair, 7> kQuotes = {{
    {"\"", "\""},
    {"\xe2\x80\x9c", "\xe2\x80\x9d"},  // “ ”
    {"\xe2\x80\x9e", "\xe2\x80\x9c"},  // „ “
    {"\xc2\xab", "\xc2\xbb"},          // « »
    {"\xc2\xbb", "\xc2\xab"},          // » «
    {"\xe2\x80\x98", "\xe2\x80\x99"},  // ‘ ’
    {"\xe3\x80\x8c", "\xe3\x80\x8d"},  // 「 」
}};
constexpr std::string_view kEllipsis = "\xe2\x80\xa6";  // …

bool IsHexDigit(char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); }

}  // namespace

std::optional<std::vector<SqlToken>> DecodeScanResult(std::string_view protobuf) {
  std::vector<SqlToken> tokens;
  ProtoReader reader(protobuf);
  while (!reader.Done()) {
    uint32_t number = 0;
    uint64_t value = 0;
    std::string_view bytes;
    if (!reader.Field(number, value, bytes)) return std::nullopt;
    if (number != 2) continue;  // 1: version
    auto token = DecodeToken(bytes);
    if (!token) return std::nullopt;
    tokens.push_back(*token);
  }
  return tokens;
}

std::optional<std::vector<SqlToken>> ScanSql(std::string_view sql) {
  const std::string owned(sql);  // NUL-terminated
  PgQueryScanResult result = pg_query_scan(owned.c_str());
  std::optional<std::vector<SqlToken>> tokens;
  if (result.error == nullptr) tokens = DecodeScanResult(std::string_view(result.pbuf.data, result.pbuf.len));
  pg_query_free_scan_result(result);
  if (!tokens) return tokens;
  for (SqlToken& t : *tokens) {
    if (t.start < 0 || t.end < t.start || static_cast<size_t>(t.end) > sql.size()) return std::nullopt;
    // libpg_query 15 reports U&'...' (USCONST) tokens with end == start: find the end here.
    if (t.kind == kTokenUsconst && t.end == t.start) {
      const size_t quote = static_cast<size_t>(t.start) + 2;  // after U&
      if (quote >= sql.size() || sql[quote] != '\'') return std::nullopt;
      const size_t end = EndOfQuoted(sql, quote);
      if (end == std::string_view::npos) return std::nullopt;
      t.end = static_cast<int>(end);
    }
  }
  return tokens;
}

std::optional<std::string> ReplaceRemainingLiterals(std::string_view normalized) {
  if (!MayHoldStringConstant(normalized)) return std::string(normalized);
  auto tokens = ScanSql(normalized);
  if (!tokens) return std::nullopt;
  int next = 1;
  for (const SqlToken& t : *tokens) {
    int n = 0;
    std::string_view digits = normalized.substr(t.start + 1, t.end - t.start - 1);
    if (t.kind == kTokenParam && absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), &n) && n >= next) {
      next = n + 1;
    }
  }
  std::string out;
  size_t copied = 0;
  for (const SqlToken& t : *tokens) {
    if (!IsStringConstant(t.kind)) continue;
    out.append(normalized.substr(copied, t.start - copied));
    absl::StrAppend(&out, "$", next++);
    copied = t.end;
  }
  out.append(normalized.substr(copied));
  return out;
}

std::string RedactErrorMessage(std::string_view message, std::string_view sqlstate, std::string_view known_text) {
  if (sqlstate == "P0001" || sqlstate == "P0004") return "(message raised by database code; not captured)";
  std::string out;
  size_t i = 0;
  while (i < message.size()) {
    const QuotePair* quote = nullptr;
    for (const QuotePair& q : kQuotes) {
      if (message.substr(i, q.open.size()) == q.open) {
        quote = &q;
        break;
      }
    }
    if (quote != nullptr) {
      const size_t content = i + quote->open.size();
      const size_t close = message.find(quote->close, content);
      if (close != std::string_view::npos) {
        std::string_view inside = message.substr(content, close - content);
        out.append(quote->open);
        out.append(OccursAsName(known_text, inside) ? inside : kEllipsis);
        out.append(quote->close);
        i = close + quote->close.size();
        continue;
      }
      // An unmatched quote: everything after it could be the value.
      out.append(quote->open);
      out.append(kEllipsis);
      break;
    }
    // 0x followed by hex digits, not inside a word: bytes of the caller's data.
    if (message[i] == '0' && i + 2 < message.size() && (message[i + 1] == 'x' || message[i + 1] == 'X') &&
        IsHexDigit(message[i + 2]) && (i == 0 || !IsIdentifierChar(message[i - 1]))) {
      out.append("0x");
      out.append(kEllipsis);
      i += 2;
      while (i < message.size() && IsHexDigit(message[i])) ++i;
      continue;
    }
    out.push_back(message[i]);
    ++i;
  }
  return out;
}

}  // namespace pgward::inspect
