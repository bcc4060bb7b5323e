// ClassifyStatement: statement class and tamper flags from the top node of a parse tree.
#include "agent/inspect/statement_classifier.h"

#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace pgward::inspect {
namespace {

using nlohmann::json;

// The one member of a node object {"TypeName": {...}}, or nullptr.
const json* Body(const json& node, std::string_view type) {
  if (!node.is_object()) return nullptr;
  auto it = node.find(type);
  if (it == node.end() || !it->is_object()) return nullptr;
  return &*it;
}

std::string NodeType(const json& node) {
  if (!node.is_object() || node.size() != 1) return {};
  return node.begin().key();
}

std::string StringMember(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

// True if any object anywhere below `node` has a member named `key` (e.g. "InsertStmt").
bool TreeHasKey(const json& node, std::string_view key) {
  if (node.is_object()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (it.key() == key || TreeHasKey(it.value(), key)) return true;
    }
  } else if (node.is_array()) {
    for (const auto& child : node) {
      if (TreeHasKey(child, key)) return true;
    }
  }
  return false;
}

bool IsIdentitySetting(const std::string& name) {
  return absl::EqualsIgnoreCase(name, "application_name") || absl::StartsWithIgnoreCase(name, "pgward.");
}

bool IsReadOnlySetting(const std::string& name) {
  return absl::EqualsIgnoreCase(name, "default_transaction_read_only") ||
         absl::EqualsIgnoreCase(name, "transaction_read_only");
}

// Postgres parse_bool accepts unique prefixes of true/yes, "on" and "1".
bool IsTrueWord(std::string word) {
  absl::AsciiStrToLower(&word);
  return word == "t" || word == "tr" || word == "tru" || word == "true" || word == "y" || word == "ye" ||
         word == "yes" || word == "on" || word == "1";
}

// A constant that certainly means "true" (A_Const ival != 0, or a true word). Anything else
// (including expressions and DEFAULT) is treated as possibly false.
bool IsTrueConstant(const json& node) {
  if (const json* c = Body(node, "A_Const")) {
    if (auto iv = c->find("ival"); iv != c->end() && iv->is_object()) {
      auto v = iv->find("ival");
      return v != iv->end() && v->is_number_integer() && v->get<int64_t>() != 0;
    }
    if (auto bv = c->find("boolval"); bv != c->end() && bv->is_object()) {
      auto v = bv->find("boolval");
      return v != bv->end() && v->is_boolean() && v->get<bool>();
    }
    if (auto sv = c->find("sval"); sv != c->end() && sv->is_object()) return IsTrueWord(StringMember(*sv, "sval"));
    return false;
  }
  if (const json* s = Body(node, "String")) return IsTrueWord(StringMember(*s, "sval"));
  return false;
}

// DefElem lists of SET TRANSACTION / SET SESSION CHARACTERISTICS / BEGIN: "transaction_read_only"
// with a false value is READ WRITE.
bool OptionsAllowReadWrite(const json& body) {
  auto options = body.find(body.contains("options") ? "options" : "args");
  if (options == body.end() || !options->is_array()) return false;
  for (const auto& option : *options) {
    const json* def = Body(option, "DefElem");
    if (def == nullptr || StringMember(*def, "defname") != "transaction_read_only") continue;
    auto arg = def->find("arg");
    if (arg == def->end() || !IsTrueConstant(*arg)) return true;
  }
  return false;
}

// SET / SET LOCAL / RESET <name> (not RESET ALL), also as the body of ALTER SYSTEM/ROLE/DATABASE.
void CheckVariableSet(const json& set, Classification& out) {
  std::string kind = StringMember(set, "kind");
  if (kind == "VAR_RESET_ALL") return;  // back to the session's start-up values, which pgward set
  std::string name = StringMember(set, "name");
  if (kind == "VAR_SET_MULTI") {  // SET TRANSACTION ..., SET SESSION CHARACTERISTICS AS TRANSACTION ...
    if (OptionsAllowReadWrite(set)) out.changes_read_only = true;
    return;
  }
  if (IsIdentitySetting(name)) out.tampers_identity = true;
  if (IsReadOnlySetting(name)) {
    auto args = set.find("args");
    bool sets_true = kind == "VAR_SET_VALUE" && args != set.end() && args->is_array() && args->size() == 1 &&
                     IsTrueConstant((*args)[0]);
    if (!sets_true) out.changes_read_only = true;
  }
}

// set_config(name, value, is_local) anywhere in the tree (any schema qualification). A first
// argument that is not a string constant could name anything: fail closed.
void CheckSetConfigCalls(const json& node, Classification& out) {
  if (node.is_array()) {
    for (const auto& child : node) CheckSetConfigCalls(child, out);
    return;
  }
  if (!node.is_object()) return;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (it.key() == "FuncCall" && it->is_object()) {
      const json& call = *it;
      auto funcname = call.find("funcname");
      std::string last;
      if (funcname != call.end() && funcname->is_array() && !funcname->empty()) {
        if (const json* s = Body(funcname->back(), "String")) last = StringMember(*s, "sval");
      }
      if (absl::EqualsIgnoreCase(last, "set_config")) {
        std::string setting;
        bool constant = false;
        auto args = call.find("args");
        if (args != call.end() && args->is_array() && !args->empty()) {
          if (const json* c = Body((*args)[0], "A_Const")) {
            if (auto sv = c->find("sval"); sv != c->end() && sv->is_object()) {
              setting = StringMember(*sv, "sval");
              constant = true;
            }
          }
        }
        if (!constant || IsIdentitySetting(setting)) out.tampers_identity = true;
        if (!constant || IsReadOnlySetting(setting)) out.changes_read_only = true;
      }
    }
    CheckSetConfigCalls(it.value(), out);
  }
}

bool ExplainAnalyzes(const json& explain) {
  auto options = explain.find("options");
  if (options == explain.end() || !options->is_array()) return false;
  for (const auto& option : *options) {
    const json* def = Body(option, "DefElem");
    if (def == nullptr || StringMember(*def, "defname") != "analyze") continue;
    auto arg = def->find("arg");
    return arg == def->end() || IsTrueConstant(*arg);
  }
  return false;
}

StatementClass ClassOf(const json& stmt);

// SELECT and friends: read unless it creates a table, locks rows or modifies data in a CTE.
StatementClass ClassOfSelect(const json& select) {
  if (select.contains("intoClause")) return StatementClass::kDdl;  // CREATE TABLE AS semantics
  if (TreeHasKey(select, "lockingClause")) return StatementClass::kWrite;
  for (const char* dml : {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}) {
    if (TreeHasKey(select, dml)) return StatementClass::kWrite;
  }
  return StatementClass::kRead;
}

StatementClass ClassOf(const json& stmt) {
  using C = StatementClass;
  const std::string type = NodeType(stmt);
  const json* body = Body(stmt, type);
  if (body == nullptr) return C::kUnknown;

  if (type == "SelectStmt") return ClassOfSelect(*body);
  if (type == "InsertStmt" || type == "UpdateStmt" || type == "DeleteStmt" || type == "MergeStmt" ||
      type == "TruncateStmt" || type == "LockStmt" || type == "RefreshMatViewStmt") {
    return C::kWrite;
  }
  if (type == "ExplainStmt") {
    auto query = body->find("query");
    if (!ExplainAnalyzes(*body)) return C::kRead;  // plans only; nothing runs
    return query == body->end() ? C::kUnknown : ClassOf(*query);
  }
  if (type == "DeclareCursorStmt") {
    auto query = body->find("query");
    return query == body->end() ? C::kUnknown : ClassOf(*query);
  }
  if (type == "FetchStmt") return C::kRead;  // FETCH/MOVE on a cursor already declared
  if (type == "CopyStmt") {
    auto from = body->find("is_from");
    return from != body->end() && from->is_boolean() && from->get<bool>() ? C::kCopyIn : C::kCopyOut;
  }
  if (type == "TransactionStmt") return C::kTransaction;
  if (type == "VariableSetStmt" || type == "VariableShowStmt" || type == "DiscardStmt" || type == "PrepareStmt" ||
      type == "DeallocateStmt" || type == "ListenStmt" || type == "UnlistenStmt" || type == "NotifyStmt" ||
      type == "ClosePortalStmt" || type == "ConstraintsSetStmt") {
    return C::kSession;
  }
  if (type == "ExecuteStmt") return C::kUnknown;  // the prepared statement's text is not visible here
  if (type == "GrantStmt" || type == "GrantRoleStmt" || type == "CreateRoleStmt" || type == "AlterRoleStmt" ||
      type == "AlterRoleSetStmt" || type == "DropRoleStmt" || type == "AlterDefaultPrivilegesStmt" ||
      type == "ReassignOwnedStmt" || type == "DropOwnedStmt") {
    return C::kPrivilege;
  }
  if (type == "VacuumStmt" || type == "CheckPointStmt" || type == "ClusterStmt" || type == "ReindexStmt" ||
      type == "LoadStmt") {
    return C::kMaintenance;
  }
  if (type == "CallStmt" || type == "DoStmt") return C::kProcedure;
  if (absl::StartsWith(type, "Create") || absl::StartsWith(type, "Alter") || absl::StartsWith(type, "Drop") ||
      type == "RenameStmt" || type == "CommentStmt" || type == "IndexStmt" || type == "ViewStmt" ||
      type == "RuleStmt" || type == "DefineStmt" || type == "CompositeTypeStmt" || type == "SecLabelStmt" ||
      type == "ImportForeignSchemaStmt") {
    return C::kDdl;
  }
  return C::kUnknown;
}

// UPDATE pg_settings SET setting = ... goes through set_config (a rule on the view): fail closed.
bool UpdatesPgSettings(const json& stmt) {
  const json* update = Body(stmt, "UpdateStmt");
  if (update == nullptr) return false;
  auto relation = update->find("relation");
  return relation != update->end() && relation->is_object() &&
         absl::EqualsIgnoreCase(StringMember(*relation, "relname"), "pg_settings");
}

void CheckTampering(const json& stmt, Classification& out) {
  const std::string type = NodeType(stmt);
  const json* body = Body(stmt, type);
  if (body == nullptr) return;
  if (type == "VariableSetStmt") CheckVariableSet(*body, out);
  if (type == "AlterSystemStmt" || type == "AlterRoleSetStmt" || type == "AlterDatabaseSetStmt") {
    auto set = body->find("setstmt");
    if (set != body->end() && set->is_object()) CheckVariableSet(*set, out);
  }
  if (type == "TransactionStmt" && OptionsAllowReadWrite(*body)) out.changes_read_only = true;
  if (UpdatesPgSettings(stmt)) {
    out.tampers_identity = true;
    out.changes_read_only = true;
  }
  CheckSetConfigCalls(stmt, out);
}

}  // namespace

Classification ClassifyStatement(const json& stmt) {
  Classification out;
  try {
    out.statement_class = ClassOf(stmt);
    CheckTampering(stmt, out);
    if (const json* dealloc = Body(stmt, "DeallocateStmt")) out.deallocate_name = StringMember(*dealloc, "name");
  } catch (const std::exception&) {
    // Defensive: the accessors above do not throw on well-formed JSON; never let one escape.
    out = Classification{};
    out.tampers_identity = true;
    out.changes_read_only = true;
  }
  return out;
}

}  // namespace pgward::inspect
