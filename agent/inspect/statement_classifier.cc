// ClassifyStatement: the statement's own class from its top node, plus facts gathered from every
// node below it (function calls, relations, nested statements, SET clauses).
#include "agent/inspect/statement_classifier.h"

#include <array>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "agent/inspect/catalog_rules.h"

namespace pgward::inspect {
namespace {

using nlohmann::json;
using C = StatementClass;

// Statements that run caller-supplied code now (DO, CALL), bind code or existing functions to
// future events and operations (functions, procedures, triggers, event triggers, rules,
// operators, casts, aggregates, types and ranges with support functions, operator classes,
// languages, transforms, access methods, conversions), or reach outside the database (foreign
// data wrappers, servers and tables, subscriptions, extensions, LOAD, ALTER SYSTEM, which can
// set commands the server runs). Their effect cannot be read from the statement text.
constexpr auto kCodeStatements = std::to_array<std::string_view>({
    "DoStmt", "CallStmt", "CreateFunctionStmt", "AlterFunctionStmt", "CreateTrigStmt", "CreateEventTrigStmt",
    "AlterEventTrigStmt", "RuleStmt", "CreatePLangStmt", "CreateTransformStmt", "CreateCastStmt",
    "CreateOpClassStmt", "CreateOpFamilyStmt", "AlterOpFamilyStmt", "AlterOperatorStmt", "AlterTypeStmt",
    "CreateRangeStmt", "CreateConversionStmt", "CreateAmStmt", "CreateFdwStmt", "AlterFdwStmt",
    "CreateForeignServerStmt", "AlterForeignServerStmt", "CreateUserMappingStmt", "AlterUserMappingStmt",
    "CreateForeignTableStmt", "ImportForeignSchemaStmt", "CreateExtensionStmt", "AlterExtensionStmt",
    "AlterExtensionContentsStmt", "CreateSubscriptionStmt", "AlterSubscriptionStmt", "LoadStmt",
    "AlterSystemStmt",
});

// DefineStmt kinds that attach functions: CREATE AGGREGATE / OPERATOR / TYPE (base types have
// input and output functions) / TEXT SEARCH PARSER / TEXT SEARCH TEMPLATE.
constexpr auto kCodeDefineKinds = std::to_array<std::string_view>({
    "OBJECT_AGGREGATE", "OBJECT_OPERATOR", "OBJECT_TYPE", "OBJECT_TSPARSER", "OBJECT_TSTEMPLATE"});

constexpr auto kDmlStatements = std::to_array<std::string_view>({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"});

template <size_t N>
bool OneOf(std::string_view value, const std::array<std::string_view, N>& set) {
  for (std::string_view s : set) {
    if (s == value) return true;
  }
  return false;
}

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
  if (!obj.is_object()) return {};
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

bool BoolMember(const json& obj, std::string_view key) {
  if (!obj.is_object()) return false;
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

const json* ArrayMember(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it != obj.end() && it->is_array() ? &*it : nullptr;
}

// Reads constants' values and remembers that it did: an analysis that read none can be reused for
// a text that differs from this one only in its constants (SqlAnalyzer's shape cache).
class ConstantReader {
 public:
  // The text of a constant: A_Const (string, integer, float, boolean), or a bare String, Integer,
  // Float or Boolean node (DefElem arguments: EXPLAIN (ANALYZE 1), BEGIN ... READ ONLY), as a SET
  // value or function argument. nullopt for anything else (expressions, parameters, DEFAULT).
  std::optional<std::string> Text(const json& node) {
    read_ = true;  // even a nullopt answer depends on whether the argument is a constant
    if (const json* c = Body(node, "A_Const")) {
      if (auto sv = c->find("sval"); sv != c->end() && sv->is_object()) return StringMember(*sv, "sval");
      if (auto iv = c->find("ival"); iv != c->end() && iv->is_object()) return IntegerText(*iv);
      if (auto fv = c->find("fval"); fv != c->end() && fv->is_object()) return StringMember(*fv, "fval");
      if (auto bv = c->find("boolval"); bv != c->end() && bv->is_object()) return BooleanText(*bv);
      return std::nullopt;
    }
    if (const json* s = Body(node, "String")) return StringMember(*s, "sval");
    if (const json* i = Body(node, "Integer")) return IntegerText(*i);
    if (const json* f = Body(node, "Float")) return StringMember(*f, "fval");
    if (const json* b = Body(node, "Boolean")) return BooleanText(*b);
    return std::nullopt;
  }

  // A constant that certainly means true / certainly means false. Anything else (expressions,
  // DEFAULT) may be either.
  bool IsTrue(const json& node) {
    auto text = Text(node);
    return text.has_value() && ParseBool(*text) == true;
  }
  bool IsFalse(const json& node) {
    auto text = Text(node);
    return text.has_value() && ParseBool(*text) == false;
  }

  // A constant names a catalog object (a cast to regclass, regproc, ...): no rule reads that name
  // today, but a decision that could depend on it must not be reused for another name.
  void NoteObjectName() { read_ = true; }

  bool read() const { return read_; }

 private:
  // libpg_query leaves 0 and false out of the JSON: {"ival":{}}, {"boolval":{}}.
  static std::string IntegerText(const json& value) {
    auto v = value.find("ival");
    return v != value.end() && v->is_number_integer() ? std::to_string(v->get<int64_t>()) : std::string("0");
  }
  static std::string BooleanText(const json& value) {
    auto v = value.find("boolval");
    return v != value.end() && v->is_boolean() && v->get<bool>() ? "true" : "false";
  }
  bool read_ = false;
};

// DefElem lists of SET TRANSACTION / SET SESSION CHARACTERISTICS / BEGIN: "transaction_read_only"
// with a value that is not certainly true is READ WRITE.
bool OptionsAllowReadWrite(const json& body, ConstantReader& constants) {
  const json* options = ArrayMember(body, body.contains("options") ? "options" : "args");
  if (options == nullptr) return false;
  for (const auto& option : *options) {
    const json* def = Body(option, "DefElem");
    if (def == nullptr || StringMember(*def, "defname") != "transaction_read_only") continue;
    auto arg = def->find("arg");
    if (arg == def->end() || !constants.IsTrue(*arg)) return true;
  }
  return false;
}

// EXPLAIN runs its statement unless every ANALYZE option is certainly false. Postgres reads the
// options in order and the last one wins (ExplainQuery, explain.c), and defGetBoolean takes
// integers as well as words: EXPLAIN (ANALYZE false, ANALYZE 1) runs it.
bool ExplainAnalyzes(const json& explain, ConstantReader& constants) {
  const json* options = ArrayMember(explain, "options");
  if (options == nullptr) return false;
  bool analyzes = false;
  for (const auto& option : *options) {
    const json* def = Body(option, "DefElem");
    if (def == nullptr || StringMember(*def, "defname") != "analyze") continue;
    auto arg = def->find("arg");
    if (arg == def->end() || !constants.IsFalse(*arg)) analyzes = true;
  }
  return analyzes;
}

// Everything found below the top node.
struct TreeFacts {
  bool dml = false;      // INSERT/UPDATE/DELETE/MERGE anywhere (data-modifying CTE, RULE action, COPY query)
  bool locking = false;  // FOR UPDATE / FOR SHARE anywhere
  bool code_statement = false;  // a nested code statement (CREATE SCHEMA ... CREATE TRIGGER)
  ClassSet function_classes = 0;
  std::string function_note;
  std::string monitoring;
  bool tampers_identity = false;
  bool changes_read_only = false;
  bool changes_lexing = false;
  ConstantReader constants;
  std::vector<int> constant_locations;  // A_Const nodes, for SqlAnalyzer's shape cache
};

void AddFunctionClass(TreeFacts& facts, StatementClass c, std::string_view function) {
  if (facts.function_note.empty()) facts.function_note = "it calls " + std::string(function) + "()";
  facts.function_classes |= ClassBit(c);
}

// SET / SET LOCAL / RESET <name> / SET <name> TO DEFAULT, as a statement, as the body of ALTER
// SYSTEM / ROLE / DATABASE ... SET, or as a SET clause of CREATE/ALTER FUNCTION|PROCEDURE.
void CheckVariableSet(const json& set, TreeFacts& facts) {
  const std::string kind = StringMember(set, "kind");
  if (kind == "VAR_RESET_ALL") return;  // back to the start-up values, which pgward pins
  if (kind == "VAR_SET_MULTI") {        // SET TRANSACTION ..., SET SESSION CHARACTERISTICS AS TRANSACTION ...
    if (OptionsAllowReadWrite(set, facts.constants)) facts.changes_read_only = true;
    return;
  }
  const std::string name = StringMember(set, "name");
  const json* args = ArrayMember(set, "args");
  std::optional<std::string> value;
  if (kind == "VAR_SET_VALUE" && args != nullptr && args->size() == 1) value = facts.constants.Text((*args)[0]);
  if (IsIdentitySetting(name)) facts.tampers_identity = true;
  if (IsReadOnlySetting(name) && !(value.has_value() && ParseBool(*value) == true)) facts.changes_read_only = true;
  if (IsLexingSetting(name) && !IsSafeLexingValue(name, value)) facts.changes_lexing = true;
}

// A function call: set_config by the setting it names, other functions by catalog_rules.
void CheckFunctionCall(const json& call, TreeFacts& facts) {
  const json* funcname = ArrayMember(call, "funcname");
  if (funcname == nullptr || funcname->empty()) return;
  const json* last = Body(funcname->back(), "String");
  const std::string name = last == nullptr ? std::string() : StringMember(*last, "sval");
  const json* args = ArrayMember(call, "args");
  const size_t arg_count = args == nullptr ? 0 : args->size();
  if (EqualsIgnoreCase(name, "set_config")) {
    // set_config(name, value, is_local). A name that is not a constant could be anything: fail closed.
    std::optional<std::string> setting = arg_count > 0 ? facts.constants.Text((*args)[0]) : std::nullopt;
    std::optional<std::string> value = arg_count > 1 ? facts.constants.Text((*args)[1]) : std::nullopt;
    if (!setting.has_value()) {
      facts.tampers_identity = facts.changes_read_only = facts.changes_lexing = true;
      return;
    }
    if (IsIdentitySetting(*setting)) facts.tampers_identity = true;
    if (IsReadOnlySetting(*setting)) facts.changes_read_only = true;
    if (IsLexingSetting(*setting) && !IsSafeLexingValue(*setting, value)) facts.changes_lexing = true;
    return;
  }
  switch (EffectOfFunction(name, arg_count)) {
    case FunctionEffect::kNone: break;
    case FunctionEffect::kWrite: AddFunctionClass(facts, C::kWrite, name); break;
    case FunctionEffect::kMaintenance: AddFunctionClass(facts, C::kMaintenance, name); break;
    case FunctionEffect::kCode: AddFunctionClass(facts, C::kProcedure, name); break;
    case FunctionEffect::kMonitoring:
      if (facts.monitoring.empty()) facts.monitoring = name + "()";
      break;
  }
}

// An object that names a relation: RangeVar, wrapped or as a typed field ("relation": {...}).
void CheckRelation(const json& object, TreeFacts& facts) {
  const std::string relname = StringMember(object, "relname");
  if (facts.monitoring.empty() && IsMonitoringRelation(relname)) facts.monitoring = relname;
}

// One member of an object: `key` is a node type ("FuncCall") or a field name ("relation").
void VisitMember(std::string_view key, const json& value, TreeFacts& facts) {
  if (!value.is_object()) return;
  if (key == "A_Const") {
    auto location = value.find("location");
    if (location != value.end() && location->is_number_integer()) facts.constant_locations.push_back(location->get<int>());
  } else if (key == "FuncCall" || key == "funccall") {  // CallStmt holds its FuncCall unwrapped
    CheckFunctionCall(value, facts);
  } else if (key == "VariableSetStmt" || key == "setstmt") {  // ALTER ... SET holds it unwrapped
    CheckVariableSet(value, facts);
  } else if (OneOf(key, kDmlStatements)) {
    facts.dml = true;
    // UPDATE pg_settings goes through set_config (a rule on the view), for any setting.
    const auto relation = value.find("relation");
    if (relation != value.end() && EqualsIgnoreCase(StringMember(*relation, "relname"), "pg_settings")) {
      facts.tampers_identity = facts.changes_read_only = facts.changes_lexing = true;
    }
  } else if (OneOf(key, kCodeStatements)) {
    facts.code_statement = true;
  } else if (key == "DefineStmt" && OneOf(StringMember(value, "kind"), kCodeDefineKinds)) {
    facts.code_statement = true;
  }
  if (value.contains("relname")) CheckRelation(value, facts);
}

// Depth-first over every node, with an explicit stack: a 1 MiB statement can nest ~500,000 deep.
TreeFacts CollectFacts(const json& root) {
  TreeFacts facts;
  std::vector<const json*> pending{&root};
  while (!pending.empty()) {
    const json* node = pending.back();
    pending.pop_back();
    if (node->is_object()) {
      for (auto it = node->begin(); it != node->end(); ++it) {
        if (it.key() == "lockingClause" && it->is_array() && !it->empty()) facts.locking = true;
        VisitMember(it.key(), *it, facts);
        if (it->is_structured()) pending.push_back(&*it);
      }
    } else if (node->is_array()) {
      for (const auto& child : *node) {
        if (child.is_structured()) pending.push_back(&child);
      }
    }
  }
  return facts;
}

StatementClass ClassOf(const json& stmt, TreeFacts& facts);

// SELECT and friends: read unless it creates a table, locks rows or modifies data in a CTE.
StatementClass ClassOfSelect(const json& select, TreeFacts& facts) {
  if (select.contains("intoClause")) return C::kDdl;  // CREATE TABLE AS semantics
  return facts.locking || facts.dml ? C::kWrite : C::kRead;
}

StatementClass ClassOf(const json& stmt, TreeFacts& facts) {
  const std::string type = NodeType(stmt);
  const json* body = Body(stmt, type);
  if (body == nullptr) return C::kUnknown;

  if (type == "SelectStmt") return ClassOfSelect(*body, facts);
  if (OneOf(type, kDmlStatements) || type == "TruncateStmt" || type == "LockStmt" || type == "RefreshMatViewStmt") {
    return C::kWrite;
  }
  // NOTIFY reaches every listening session; LISTEN receives other sessions' payloads.
  if (type == "NotifyStmt" || type == "ListenStmt") return C::kWrite;
  if (type == "ExplainStmt") {
    auto query = body->find("query");
    if (!ExplainAnalyzes(*body, facts.constants)) return C::kRead;  // plans only; nothing runs
    return query == body->end() ? C::kUnknown : ClassOf(*query, facts);
  }
  if (type == "DeclareCursorStmt") {
    auto query = body->find("query");
    return query == body->end() ? C::kUnknown : ClassOf(*query, facts);
  }
  if (type == "FetchStmt") return C::kRead;  // FETCH/MOVE on a cursor already declared
  if (type == "CopyStmt") {
    // COPY to or from a server file or program reaches outside the database.
    if (BoolMember(*body, "is_program") || !StringMember(*body, "filename").empty()) return C::kProcedure;
    return BoolMember(*body, "is_from") ? C::kCopyIn : C::kCopyOut;
  }
  if (type == "TransactionStmt") return C::kTransaction;
  if (type == "VariableSetStmt" || type == "VariableShowStmt" || type == "DiscardStmt" || type == "PrepareStmt" ||
      type == "DeallocateStmt" || type == "UnlistenStmt" || type == "ClosePortalStmt" ||
      type == "ConstraintsSetStmt") {
    return C::kSession;
  }
  if (type == "ExecuteStmt") return C::kUnknown;  // the prepared statement's text is not visible here
  if (type == "GrantStmt" || type == "GrantRoleStmt" || type == "CreateRoleStmt" || type == "AlterRoleStmt" ||
      type == "AlterRoleSetStmt" || type == "DropRoleStmt" || type == "AlterDefaultPrivilegesStmt" ||
      type == "ReassignOwnedStmt" || type == "DropOwnedStmt") {
    return C::kPrivilege;
  }
  if (type == "VacuumStmt" || type == "CheckPointStmt" || type == "ClusterStmt" || type == "ReindexStmt") {
    return C::kMaintenance;
  }
  if (OneOf(type, kCodeStatements)) return C::kProcedure;
  if (type == "DefineStmt" && OneOf(StringMember(*body, "kind"), kCodeDefineKinds)) return C::kProcedure;
  if (absl::StartsWith(type, "Create") || absl::StartsWith(type, "Alter") || absl::StartsWith(type, "Drop") ||
      type == "RenameStmt" || type == "CommentStmt" || type == "IndexStmt" || type == "ViewStmt" ||
      type == "DefineStmt" || type == "CompositeTypeStmt" || type == "SecLabelStmt") {
    return C::kDdl;
  }
  return C::kUnknown;
}

// SET [SESSION] application_name = <constant>: the shape drivers such as pgJDBC send after login.
bool IsPlainApplicationNameSet(const json& stmt) {
  const json* set = Body(stmt, "VariableSetStmt");
  if (set == nullptr || StringMember(*set, "kind") != "VAR_SET_VALUE" || BoolMember(*set, "is_local")) return false;
  if (!EqualsIgnoreCase(StringMember(*set, "name"), "application_name")) return false;
  const json* args = ArrayMember(*set, "args");
  return args != nullptr && args->size() == 1 && Body((*args)[0], "A_Const") != nullptr;
}

Classification Classify(const json& stmt) {
  Classification out;
  TreeFacts facts = CollectFacts(stmt);
  out.statement_class = ClassOf(stmt, facts);
  out.required_classes = ClassBit(out.statement_class) | facts.function_classes;
  if (facts.function_classes & ~ClassBit(out.statement_class)) out.class_note = facts.function_note;

  const std::string type = NodeType(stmt);
  const json* body = Body(stmt, type);
  // Nested statements run, unless only planned (EXPLAIN without ANALYZE).
  const bool runs = !(type == "ExplainStmt" && body != nullptr && !ExplainAnalyzes(*body, facts.constants));
  auto require = [&](StatementClass c, std::string_view why) {
    if ((out.required_classes & ClassBit(c)) == 0 && out.class_note.empty()) out.class_note = std::string(why);
    out.required_classes |= ClassBit(c);
  };
  if (runs && facts.dml && out.statement_class != C::kWrite) require(C::kWrite, "it contains a data-modifying statement");
  if (runs && facts.locking && out.statement_class != C::kWrite) require(C::kWrite, "it locks rows");
  if (facts.code_statement) require(C::kProcedure, "it defines code that runs later");

  out.tampers_identity = facts.tampers_identity;
  out.changes_read_only = facts.changes_read_only;
  out.changes_lexing = facts.changes_lexing;
  if (type == "TransactionStmt" && body != nullptr && OptionsAllowReadWrite(*body, facts.constants)) out.changes_read_only = true;
  out.monitoring = facts.monitoring;
  out.plain_application_name_set = IsPlainApplicationNameSet(stmt);
  out.resets_session = body != nullptr &&
                       ((type == "VariableSetStmt" && StringMember(*body, "kind") == "VAR_RESET_ALL") ||
                        (type == "DiscardStmt" && StringMember(*body, "target") == "DISCARD_ALL"));
  if (const json* dealloc = Body(stmt, "DeallocateStmt")) out.deallocate_name = StringMember(*dealloc, "name");
  // Last: every read above goes through facts.constants.
  out.literal_independent = !facts.constants.read();
  out.constant_locations = std::move(facts.constant_locations);
  return out;
}

}  // namespace

Classification ClassifyStatement(const json& stmt) {
  try {
    return Classify(stmt);
  } catch (const std::exception&) {
    // Defensive: the accessors above do not throw on well-formed JSON; never let one escape.
    Classification out;
    out.required_classes = ClassBit(StatementClass::kUnknown);
    out.tampers_identity = out.changes_read_only = out.changes_lexing = out.resets_session = true;
    return out;
  }
}

}  // namespace pgward::inspect
