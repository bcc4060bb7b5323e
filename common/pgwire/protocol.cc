// Type-byte tables for both directions; names follow the Postgres docs' "Message Formats".
#include "common/pgwire/protocol.h"

#include <array>

namespace pgward::pgwire {
namespace {

struct TypeTable {
  std::array<std::string_view, 256> names{};
};

constexpr TypeTable MakeFrontendTable() {
  TypeTable t;
  t.names['B'] = "Bind";
  t.names['C'] = "Close";
  t.names['d'] = "CopyData";
  t.names['c'] = "CopyDone";
  t.names['f'] = "CopyFail";
  t.names['D'] = "Describe";
  t.names['E'] = "Execute";
  t.names['H'] = "Flush";
  t.names['F'] = "FunctionCall";
  t.names['P'] = "Parse";
  t.names['p'] = "PasswordMessage";
  t.names['Q'] = "Query";
  t.names['S'] = "Sync";
  t.names['X'] = "Terminate";
  return t;
}

constexpr TypeTable MakeBackendTable() {
  TypeTable t;
  t.names['R'] = "Authentication";
  t.names['K'] = "BackendKeyData";
  t.names['2'] = "BindComplete";
  t.names['3'] = "CloseComplete";
  t.names['C'] = "CommandComplete";
  t.names['d'] = "CopyData";
  t.names['c'] = "CopyDone";
  t.names['G'] = "CopyInResponse";
  t.names['H'] = "CopyOutResponse";
  t.names['W'] = "CopyBothResponse";
  t.names['D'] = "DataRow";
  t.names['I'] = "EmptyQueryResponse";
  t.names['E'] = "ErrorResponse";
  t.names['V'] = "FunctionCallResponse";
  t.names['v'] = "NegotiateProtocolVersion";
  t.names['n'] = "NoData";
  t.names['N'] = "NoticeResponse";
  t.names['A'] = "NotificationResponse";
  t.names['t'] = "ParameterDescription";
  t.names['S'] = "ParameterStatus";
  t.names['1'] = "ParseComplete";
  t.names['s'] = "PortalSuspended";
  t.names['Z'] = "ReadyForQuery";
  t.names['T'] = "RowDescription";
  return t;
}

constexpr TypeTable kFrontendTable = MakeFrontendTable();
constexpr TypeTable kBackendTable = MakeBackendTable();

const TypeTable& TableFor(Direction dir) {
  return dir == Direction::kFrontend ? kFrontendTable : kBackendTable;
}

}  // namespace

bool IsKnownType(Direction dir, char type) {
  return !TableFor(dir).names[static_cast<unsigned char>(type)].empty();
}

std::string_view TypeName(Direction dir, char type) {
  std::string_view name = TableFor(dir).names[static_cast<unsigned char>(type)];
  return name.empty() ? std::string_view("unknown") : name;
}

bool IsStreamedType(Direction dir, char type) {
  if (type == 'd') return true;  // CopyData, both directions
  return dir == Direction::kBackend && type == 'D';  // DataRow
}

}  // namespace pgward::pgwire
