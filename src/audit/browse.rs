//! The audit browser of auditors (`audit.read`): filters by person, department, record,
//! action and time; pages of rows newest first, with the viewer's page views folded into
//! one row per viewing session; the filtered events as CSV; the chain checked on demand
//! (`audit.verify`); and the overview of the auditor's home page. Every read is audited,
//! and so is a refusal.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

pub use super::repo::BrowseRow;
use super::repo::{self, BrowseFilter};
use super::{Event, Outcome, Verification};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::ReadAudit;
use crate::sheet::csv_field;
use crate::{unit, App};

/// Rows per page of the browser.
pub const PAGE_SIZE: i64 = 50;
/// The most events one CSV export holds (newest first); the filter narrows it.
pub const EXPORT_LIMIT: i64 = 100_000;

/// The actions the vault records, for the browser's choice of action (labels are the
/// catalog's `audit-action-…` words: the action with its dots as dashes).
pub const ACTIONS: &[&str] = &[
    "auth.login",
    "auth.logout",
    "auth.lockout",
    "auth.csrf",
    "user.create",
    "user.disable",
    "user.password_change",
    "user.password_reset",
    "user.preferences",
    "user.manage",
    "user.update",
    "user.enable",
    "totp.enrol",
    "totp.confirm",
    "totp.recovery_code_used",
    "totp.reset",
    "category.create",
    "category.update",
    "record.create",
    "record.read",
    "record.update",
    "record.search",
    "record.unmask",
    "record.export",
    "record.physical_move",
    "register.create",
    "register.manage",
    "register.rename",
    "register.contents",
    "register.export",
    "file.upload",
    "file.view",
    "file.view.open",
    "file.view.page",
    "file.read_content",
    "file.integrity_failure",
    "request.create",
    "request.read",
    "request.approve",
    "request.reject",
    "request.cancel",
    "request.expire",
    "grant.create",
    "grant.list",
    "grant.revoke",
    "grant.expire",
    "loan.manage",
    "loan.checkout",
    "loan.return",
    "loan.register_export",
    "loan.holder_left",
    "access_review.export",
    "access_review.complete",
    "phones.reindex",
    "export.create",
    "export.download",
    "import.run",
    "audit.read",
    "audit.export",
    "audit.verify",
    "scrub.read",
    "report.read",
    "report.stats",
    "report.export",
    "record.propose",
    "record.review",
    "storage.scrub",
    "keys.rotate",
    "keys.retire",
    "vault.backup",
    "vault.restore",
    "request.approved",
    "record.hold",
    "record.hold_release",
    "category.hold",
    "category.hold_release",
    "record.destroy",
    "destruction.read",
    "retention.read",
];

/// The catalog key of an action's label.
pub fn action_key(action: &str) -> String {
    format!("audit-action-{}", action.replace(['.', '_'], "-"))
}

/// What the browser is asked for, as typed (dates in the person's time zone).
#[derive(Debug, Default, Clone, Serialize, rocket::FromForm)]
pub struct Browse {
    pub person: Option<String>,
    pub department: Option<String>,
    pub record: Option<String>,
    pub action: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub page: Option<i64>,
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn date(field: &str, v: &Option<String>) -> AppResult<Option<NaiveDate>> {
    match non_empty(v) {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| AppError::invalid(field, "must be a date (YYYY-MM-DD)")),
    }
}

/// The start of `day` in `tz`, as an instant (the earliest, when the clock jumps).
fn start_of(day: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    let midnight = day.and_hms_opt(0, 0, 0)?;
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// Checks the filter and turns it into what the database compares.
async fn resolve(conn: &mut sqlx::PgConnection, b: &Browse, tz: Tz) -> AppResult<BrowseFilter> {
    crate::text::check_form(
        [
            ("person", &b.person),
            ("department", &b.department),
            ("record", &b.record),
            ("action", &b.action),
            ("from", &b.from),
            ("to", &b.to),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_deref().map(|v| (n, v))),
    )?;
    let action = non_empty(&b.action);
    if let Some(a) = &action {
        if !ACTIONS.contains(&a.as_str()) {
            return Err(AppError::invalid(
                "action",
                "is not an action the vault records",
            ));
        }
    }
    let from = date("from", &b.from)?;
    let to = date("to", &b.to)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(AppError::invalid("to", "is before the start date"));
        }
    }
    let (record, reference) = match non_empty(&b.record) {
        None => (None, None),
        Some(r) => {
            let id = Uuid::parse_str(&r).ok();
            let reference = id.is_none().then_some(r.as_str());
            match repo::find_record(conn, reference, id).await? {
                Some((id, reference)) => (Some(id.to_string()), Some(reference)),
                None => return Err(AppError::invalid("record", "no record has this reference")),
            }
        }
    };
    Ok(BrowseFilter {
        actor: non_empty(&b.person),
        department: non_empty(&b.department),
        record,
        reference,
        action,
        from: from.and_then(|d| start_of(d, tz)),
        // Up to the end of the last day chosen.
        to: to.and_then(|d| d.succ_opt()).and_then(|d| start_of(d, tz)),
        except: None,
    })
}

/// One page of the browser.
#[derive(Debug, Serialize)]
pub struct BrowsePage {
    pub rows: Vec<BrowseRow>,
    /// Rows in all pages.
    pub total: i64,
    pub page: i64,
    pub pages: i64,
}

/// A page of rows for the filter, newest first; `grouped` folds page views into viewing
/// sessions. The read is audited with its filter.
#[tracing::instrument(skip_all)]
pub async fn browse(
    app: &App,
    who: &Principal,
    b: &Browse,
    grouped: bool,
) -> AppResult<BrowsePage> {
    let tz = who.ui().tz;
    unit!(app.db, |tx| {
        tx.authorize::<ReadAudit>(&app.policies, who, None, None)?;
        let f = resolve(&mut tx, b, tz).await?;
        let total = repo::browse_count(&mut tx, &f, grouped).await?;
        let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
        let page = b.page.unwrap_or(1).clamp(1, pages);
        let rows = repo::browse(&mut tx, &f, grouped, (page - 1) * PAGE_SIZE, PAGE_SIZE).await?;
        tx.audit(
            &who.actor(),
            Event::new("audit.read", Outcome::Success).detail(json!({
                "actor": f.actor, "department": f.department, "object": f.record,
                "action": f.action, "from": f.from, "to": f.to, "page": page,
                "grouped": grouped, "returned": rows.len(),
            })),
        )
        .await?;
        Ok(BrowsePage {
            rows,
            total,
            page,
            pages,
        })
    })
}

/// The filtered events (one line each, page views too), newest first, as CSV: UTF-8 with
/// a byte-order mark (so spreadsheets read Chinese right), times in the person's zone,
/// headers in their language. Audited as `audit.export`.
#[tracing::instrument(skip_all)]
pub async fn export_csv(app: &App, who: &Principal, b: &Browse) -> AppResult<String> {
    let ui = who.ui();
    let rows = unit!(app.db, |tx| {
        tx.authorize::<ReadAudit>(&app.policies, who, None, None)?;
        let f = resolve(&mut tx, b, ui.tz).await?;
        let rows = repo::filtered(&mut tx, &f, EXPORT_LIMIT).await?;
        tx.audit(
            &who.actor(),
            Event::new("audit.export", Outcome::Success).detail(json!({
                "actor": f.actor, "department": f.department, "object": f.record,
                "action": f.action, "from": f.from, "to": f.to, "returned": rows.len(),
            })),
        )
        .await?;
        Ok(rows)
    })?;
    let head = [
        "seq",
        "time",
        "person",
        "action",
        "object-type",
        "object",
        "outcome",
        "address",
        "detail",
    ]
    .map(|c| csv_field(&crate::i18n::tr(ui.lang, &format!("audit-col-{c}"), &[])));
    let mut out = String::from("\u{feff}");
    out.push_str(&head.join(","));
    out.push_str("\r\n");
    for r in rows {
        let line = [
            r.seq.map(|s| s.to_string()).unwrap_or_default(),
            r.occurred_at.with_timezone(&ui.tz).to_rfc3339(),
            r.actor,
            r.action,
            r.object_type.unwrap_or_default(),
            r.object_id.unwrap_or_default(),
            r.outcome,
            r.client_addr.unwrap_or_default(),
            r.detail.to_string(),
        ]
        .map(|v| csv_field(&v));
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    Ok(out)
}

/// Walks the whole chain now ([`super::verify`]) for an auditor; the check and its result
/// are audited as `audit.verify`.
#[tracing::instrument(skip_all)]
pub async fn verify_chain(app: &App, who: &Principal) -> AppResult<Verification> {
    app.db
        .authorize::<ReadAudit>(&app.policies, who, None, None)
        .await?;
    let v = super::verify(app.db.pool()).await?;
    let detail = match &v {
        Verification::Intact { events, pending } => {
            json!({"result": "ok", "events": events, "pending": pending})
        }
        Verification::Broken { seq, id, reason } => {
            json!({"result": "broken", "seq": seq, "event": id, "reason": reason})
        }
    };
    let outcome = match &v {
        Verification::Intact { .. } => Outcome::Success,
        Verification::Broken { .. } => Outcome::Failure,
    };
    app.db
        .record(
            &who.actor(),
            Event::new("audit.verify", outcome).detail(detail),
        )
        .await?;
    Ok(v)
}

/// The last time someone checked the chain, and what they found.
#[derive(Debug, Serialize)]
pub struct LastCheck {
    pub at: DateTime<Utc>,
    pub by: String,
    pub ok: bool,
    /// Events found intact, or where the chain broke.
    pub seq: i64,
}

/// What the auditor's home page shows.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// The latest events, page views left out.
    pub recent: Vec<BrowseRow>,
    /// Events in the chain.
    pub chained: i64,
    pub last_check: Option<LastCheck>,
}

/// The auditor's overview: recent events (no page views), the chain's length and the last
/// check. Audited as an `audit.read`.
#[tracing::instrument(skip_all)]
pub async fn overview(app: &App, who: &Principal, recent: i64) -> AppResult<Overview> {
    unit!(app.db, |tx| {
        tx.authorize::<ReadAudit>(&app.policies, who, None, None)?;
        let f = BrowseFilter {
            except: Some(repo::PAGE_VIEW.to_string()),
            ..Default::default()
        };
        let rows = repo::browse(&mut tx, &f, false, 0, recent.clamp(1, 100)).await?;
        let chained = repo::chained(&mut tx).await?;
        let last_check = repo::latest_of(&mut tx, "audit.verify").await?.map(|e| {
            let ok = e.detail.get("result").and_then(|r| r.as_str()) == Some("ok");
            let key = if ok { "events" } else { "seq" };
            LastCheck {
                at: e.occurred_at,
                by: e.actor,
                ok,
                seq: e.detail.get(key).and_then(|n| n.as_i64()).unwrap_or(0),
            }
        });
        tx.audit(
            &who.actor(),
            Event::new("audit.read", Outcome::Success)
                .detail(json!({"overview": true, "returned": rows.len()})),
        )
        .await?;
        Ok(Overview {
            recent: rows,
            chained,
            last_check,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The literals of `pattern` + `"…"` in the code outside the tests.
    fn literals_after(pattern: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for (_, text) in crate::source_scan::files(&["src"], &["rs"]) {
            let text = crate::source_scan::without_tests(&text);
            for (at, _) in text.match_indices(pattern) {
                let rest = text[at + pattern.len()..].trim_start();
                if let Some(lit) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                    out.insert(lit.to_string());
                }
            }
        }
        out
    }

    #[test]
    fn every_event_the_code_records_can_be_chosen_and_is_named() {
        let recorded = literals_after("Event::new(");
        assert!(recorded.len() > 40, "{recorded:?}");
        let missing: Vec<_> = recorded
            .iter()
            .filter(|a| !ACTIONS.contains(&a.as_str()))
            .collect();
        assert!(missing.is_empty(), "not in ACTIONS: {missing:?}");
        let mut objects = literals_after(".object(");
        objects.extend(["storeroom", "shelf", "box"].map(String::from)); // register levels
        for o in &objects {
            for lang in crate::i18n::Lang::ALL {
                let key = format!("audit-object-{o}");
                assert!(crate::i18n::has(lang, &key), "{key} ({lang:?})");
            }
        }
    }

    #[test]
    fn every_action_has_a_label_in_both_languages() {
        for a in ACTIONS {
            for lang in crate::i18n::Lang::ALL {
                assert!(crate::i18n::has(lang, &action_key(a)), "{a} ({lang:?})");
            }
        }
    }

    #[test]
    fn days_start_in_the_persons_zone() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let t = start_of(d, chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-28T16:00:00+00:00");
    }
}
