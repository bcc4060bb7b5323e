// Store: revoked principals and groups (AdminService RevokePrincipal, contract section 9), and
// the identity provider's per-subject token cut-offs (gateway/events).
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gateway/store/store.h"

namespace pgward::store {
namespace {

constexpr char kRevocationColumns[] = "kind, issuer, name, reason, revoked_by, revoked_unix_ms";

const char* Kind(const pgward::v1::Revocation& r) { return r.principal().empty() ? "group" : "principal"; }

std::string Describe(const char* kind, const std::string& name, const std::string& issuer) {
  return absl::StrCat(kind, " \"", name, "\" of ", issuer);
}

pgward::v1::Revocation ReadRevocation(const Statement& q) {
  pgward::v1::Revocation r;
  const std::string kind = q.Text(0);
  r.set_issuer(q.Text(1));
  if (kind == "principal") {
    r.set_principal(q.Text(2));
  } else {
    r.set_group(q.Text(2));
  }
  r.set_reason(q.Text(3));
  r.set_revoked_by(q.Text(4));
  r.set_revoked_unix_ms(q.Int(5));
  return r;
}

}  // namespace

absl::Status Store::Revoke(const pgward::v1::Revocation& r) {
  const std::string& name = r.principal().empty() ? r.group() : r.principal();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare(
      absl::StrCat("INSERT INTO revocations(", kRevocationColumns, ") VALUES (?, ?, ?, ?, ?, ?)"));
  if (!q.ok()) return q.status();
  q->BindText(1, Kind(r)).BindText(2, r.issuer()).BindText(3, name);
  q->BindText(4, r.reason()).BindText(5, r.revoked_by()).BindInt(6, r.revoked_unix_ms());
  absl::Status s = q->Run();
  if (absl::IsAlreadyExists(s)) {
    return absl::AlreadyExistsError(absl::StrCat(Describe(Kind(r), name, r.issuer()), " is already revoked"));
  }
  return s;
}

absl::Status Store::Restore(const pgward::v1::Revocation& r) {
  const std::string& name = r.principal().empty() ? r.group() : r.principal();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare("DELETE FROM revocations WHERE kind = ? AND issuer = ? AND name = ?");
  if (!q.ok()) return q.status();
  q->BindText(1, Kind(r)).BindText(2, r.issuer()).BindText(3, name);
  if (absl::Status s = q->Run(); !s.ok()) return s;
  if (db_->Changes() == 0) {
    return absl::NotFoundError(absl::StrCat(Describe(Kind(r), name, r.issuer()), " is not revoked"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<pgward::v1::Revocation>> Store::ListRevocations() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare(
      absl::StrCat("SELECT ", kRevocationColumns, " FROM revocations ORDER BY revoked_unix_ms, rowid"));
  if (!q.ok()) return q.status();
  std::vector<pgward::v1::Revocation> out;
  while (true) {
    absl::StatusOr<bool> row = q->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(ReadRevocation(*q));
  }
  return out;
}

absl::StatusOr<std::optional<pgward::v1::Revocation>> Store::FindRevocation(const std::string& issuer,
                                                                            const std::string& principal,
                                                                            const std::vector<std::string>& groups) {
  if (issuer.empty()) return std::optional<pgward::v1::Revocation>();
  absl::MutexLock lock(&mu_);
  // The issuer's revocations are few (people revoke by hand); group membership is checked here
  // because the token's group list has no fixed size. The principal's own revocation wins.
  absl::StatusOr<Statement> q = db_->Prepare(absl::StrCat(
      "SELECT ", kRevocationColumns,
      " FROM revocations WHERE issuer = ?1 AND (kind = 'group' OR name = ?2)"
      " ORDER BY kind = 'principal' DESC, revoked_unix_ms"));
  if (!q.ok()) return q.status();
  q->BindText(1, issuer).BindText(2, principal);
  const absl::flat_hash_set<std::string> group_set(groups.begin(), groups.end());
  while (true) {
    absl::StatusOr<bool> row = q->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    pgward::v1::Revocation r = ReadRevocation(*q);
    if (!r.principal().empty() || group_set.contains(r.group())) return std::optional(std::move(r));
  }
  return std::optional<pgward::v1::Revocation>();
}

absl::StatusOr<int64_t> Store::RaiseSubjectCutoff(const std::string& issuer, const std::string& subject,
                                                  int64_t not_before_unix, const std::string& event,
                                                  int64_t received_unix_ms) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare(
      "INSERT INTO subject_cutoffs(issuer, subject, not_before_unix, event, received_unix_ms) VALUES (?, ?, ?, ?, ?) "
      "ON CONFLICT(issuer, subject) DO UPDATE SET not_before_unix = excluded.not_before_unix, "
      "event = excluded.event, received_unix_ms = excluded.received_unix_ms "
      "WHERE excluded.not_before_unix > subject_cutoffs.not_before_unix");
  if (!q.ok()) return q.status();
  q->BindText(1, issuer).BindText(2, subject).BindInt(3, not_before_unix).BindText(4, event).BindInt(5, received_unix_ms);
  if (absl::Status s = q->Run(); !s.ok()) return s;
  absl::StatusOr<Statement> now = db_->Prepare("SELECT not_before_unix FROM subject_cutoffs WHERE issuer = ? AND subject = ?");
  if (!now.ok()) return now.status();
  now->BindText(1, issuer).BindText(2, subject);
  absl::StatusOr<bool> row = now->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::InternalError("subject cut-off vanished after it was written");
  return now->Int(0);
}

absl::StatusOr<int64_t> Store::SubjectCutoff(const std::string& issuer, const std::string& subject) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Statement> q = db_->Prepare("SELECT not_before_unix FROM subject_cutoffs WHERE issuer = ? AND subject = ?");
  if (!q.ok()) return q.status();
  q->BindText(1, issuer).BindText(2, subject);
  absl::StatusOr<bool> row = q->Step();
  if (!row.ok()) return row.status();
  return *row ? q->Int(0) : int64_t{0};
}

}  // namespace pgward::store
