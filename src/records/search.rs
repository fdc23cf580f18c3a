//! Search: reference code, partial title and names (trigram index over title, reference and
//! non-sensitive values), exact phone or ID number through the blind index, category subtree,
//! filing date range and physical location. Results are masked `RecordView`s, limited to
//! the categories the policy lets the caller read, paginated, and every search is audited
//! (criteria named, never a phone or ID number searched for).
//!
//! Partial text (`q`) is answered in two steps, newest first:
//! 1. the newest records that pass every other criterion (`window`: the `created_at`
//!    index, read backwards) are matched against the fragment; when the page is full there,
//!    it is the page (the window is a prefix of the full ordering), so a fragment that
//!    matches most records (公司, "Ltd") stops after a few dozen rows instead of sorting all
//!    its matches; this step is skipped while the table holds no more records than the
//!    window (the indexes then find no more candidates than the window would read);
//! 2. otherwise the fragment is rare among recent records and the full query runs from the
//!    indexes: the trigram index (`records_search_trgm_idx`) for Latin text, and for text
//!    with Chinese, Japanese or Korean characters the GIN index over their unigrams and
//!    bigrams (`records_search_cjk_idx`, `search_cjk_grams`), which also answers one- and
//!    two-character fragments that no trigram covers. Candidates are always rechecked
//!    against the searched text, so hits are exact.
//!
//! The match is ILIKE, or LIKE when the fragment has no letter with case (Chinese,
//! digits): then both mean the same, and LIKE costs a fraction of ILIKE, which lowercases
//! every text it tests. The window is larger when the match is cheap.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::model::{Category, CategoryId, Record, RecordView};
use super::schema::{normalize_id_number, normalize_phone};
use super::{categories, repo, view};
use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::ReadRecord;
use crate::tx::Tx;
use crate::{unit, App};

pub const PER_PAGE: i64 = 25;

/// Newest records (after the other criteria) a text search looks at before it turns to the
/// indexes: a fragment with a page of hits among them is answered from them alone. Sized
/// so that a fragment just too rare to fill a page there costs about as much again from
/// the indexes (candidates ≈ records × PER_PAGE / window), at 1,000,000 records.
fn window(uncased: bool) -> i64 {
    if uncased {
        10_000
    } else {
        4_000
    }
}

/// The window of a deep page: four times the rows it skips and shows, so that a fragment
/// held by a quarter of the records or more pages from the window; at most this.
const MAX_WINDOW: i64 = 100_000;

/// Whether `q` has no character with case (Chinese, digits, punctuation), so that LIKE
/// matches what ILIKE would.
fn uncased(q: &str) -> bool {
    q.to_lowercase() == q && q.to_uppercase() == q
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, rocket::FromForm)]
pub struct SearchQuery {
    pub q: Option<String>,
    pub phone: Option<String>,
    pub id_number: Option<String>,
    /// A category code or id: that category and everything below it.
    pub category: Option<String>,
    /// Filed on or after (YYYY-MM-DD).
    pub from: Option<String>,
    /// Filed on or before (YYYY-MM-DD).
    pub to: Option<String>,
    pub storeroom: Option<String>,
    pub shelf: Option<String>,
    #[field(name = "box")]
    #[serde(rename = "box")]
    pub box_code: Option<String>,
    pub status: Option<String>,
    pub page: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchPage {
    pub hits: Vec<RecordView>,
    pub page: i64,
    pub per_page: i64,
    pub has_more: bool,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn date(field: &str, v: Option<&str>) -> AppResult<Option<NaiveDate>> {
    v.map(|s| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| AppError::invalid(field, "must be a date as YYYY-MM-DD"))
    })
    .transpose()
}

/// `CODE-YYYY-NNNNNN`, the shape of a reference code.
fn looks_like_reference(q: &str) -> bool {
    let parts: Vec<&str> = q.split('-').collect();
    matches!(parts.as_slice(), [code, year, seq]
        if (2..=12).contains(&code.len())
            && code.starts_with(|c: char| c.is_ascii_alphabetic())
            && code.chars().all(|c| c.is_ascii_alphanumeric())
            && year.len() == 4 && year.chars().all(|c| c.is_ascii_digit())
            && seq.len() >= 6 && seq.chars().all(|c| c.is_ascii_digit()))
}

fn like_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Characters searched through `search_cjk_grams` (the same classes as its regular
/// expression in migrations/20261129110100_cjk_search.sql): kana, CJK ideographs
/// (extension A, the unified block, compatibility ideographs, the supplementary planes)
/// and Hangul syllables.
pub fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30ff}'
        | '\u{3400}'..='\u{4dbf}'
        | '\u{4e00}'..='\u{9fff}'
        | '\u{ac00}'..='\u{d7af}'
        | '\u{f900}'..='\u{faff}'
        | '\u{20000}'..='\u{3ffff}')
}

/// The grams of `search_cjk_grams` a text holding `q` must hold: of each run of CJK
/// characters in `q`, its one character if it has one, else each of its bigrams. Empty when
/// `q` has no CJK character.
pub fn cjk_query_grams(q: &str) -> Vec<String> {
    let mut grams: Vec<String> = Vec::new();
    let mut run: Vec<char> = Vec::new();
    let mut flush = |run: &mut Vec<char>| {
        match run.as_slice() {
            [] => {}
            [c] => grams.push(c.to_string()),
            _ => grams.extend(run.windows(2).map(|w| w.iter().collect::<String>())),
        }
        run.clear();
    };
    for c in q.chars() {
        if is_cjk(c) {
            run.push(c);
        } else {
            flush(&mut run);
        }
    }
    flush(&mut run);
    grams.sort();
    grams.dedup();
    grams
}

/// What the audit trail may say about a free-text query: not one that looks like a phone
/// or ID number (those go through the blind index and are never recorded); digits count in
/// any script (full-width `１３８…` as a Chinese input method types them, too).
fn auditable_text(q: &str) -> String {
    if q.chars().filter(|c| c.is_numeric()).count() >= 6 {
        "[redacted: digits]".into()
    } else {
        q.chars().take(100).collect()
    }
}

/// Searches the records `who` may see, masked; the search (and any value a `none` masking
/// rule shows) is audited in the same unit of work.
#[tracing::instrument(skip_all)]
pub async fn search(app: &App, who: &Principal, query: SearchQuery) -> AppResult<SearchPage> {
    // Query strings follow the same text rules as bodies: no control characters (a NUL
    // would otherwise reach PostgreSQL and its log).
    crate::text::check_form(
        [
            ("q", &query.q),
            ("phone", &query.phone),
            ("id_number", &query.id_number),
            ("category", &query.category),
            ("from", &query.from),
            ("to", &query.to),
            ("storeroom", &query.storeroom),
            ("shelf", &query.shelf),
            ("box", &query.box_code),
            ("status", &query.status),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_deref().map(|v| (n, v))),
    )?;
    unit!(app.db, |tx| search_in(&mut tx, app, who, query).await)
}

async fn search_in(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    query: SearchQuery,
) -> AppResult<SearchPage> {
    let page = query.page.unwrap_or(1).clamp(1, 10_000);
    let all = categories::all_in(tx).await?;
    let visible: Vec<&Category> = all
        .iter()
        .filter(|c| app.policies.allows::<ReadRecord>(who, &c.resource()))
        .collect();
    let mut scope: Vec<Uuid> = visible.iter().map(|c| c.id.0).collect();
    let sees_all = scope.len() == all.len();
    if let Some(cat) = given(&query.category) {
        let root = all
            .iter()
            .find(|c| c.code.eq_ignore_ascii_case(cat) || c.id.to_string() == cat)
            .ok_or_else(|| AppError::invalid("category", "no such category"))?;
        let sub: Vec<Uuid> = categories::subtree(&all, root.id)
            .into_iter()
            .map(|c| c.0)
            .collect();
        scope.retain(|id| sub.contains(id));
    }
    let from = date("from", given(&query.from))?;
    let to = date("to", given(&query.to))?;
    let phone = match given(&query.phone) {
        Some(p) => Some(
            normalize_phone(p)
                .ok_or_else(|| AppError::invalid("phone", "is not a phone number"))?,
        ),
        None => None,
    };
    let id_number = match given(&query.id_number) {
        Some(p) => Some(
            normalize_id_number(p)
                .ok_or_else(|| AppError::invalid("id_number", "is not a valid ID number"))?,
        ),
        None => None,
    };
    let status = given(&query.status).map(str::to_string);
    if let Some(s) = &status {
        if super::model::PhysicalStatus::parse(s).is_none() {
            return Err(AppError::invalid(
                "status",
                "must be in_store, on_loan, missing or destroyed",
            ));
        }
    }
    let text = given(&query.q).map(str::to_string);
    if text
        .as_deref()
        .is_some_and(|t| t.chars().count() < 2 && !t.chars().all(is_cjk))
    {
        return Err(AppError::invalid(
            "q",
            "must be at least 2 characters, or one Chinese character",
        ));
    }
    let location = (
        given(&query.storeroom),
        given(&query.shelf),
        given(&query.box_code),
    );
    // Every criterion but the partial text, on `records r`.
    let criteria = |qb: &mut QueryBuilder<Postgres>| {
        if !sees_all || given(&query.category).is_some() {
            qb.push(" AND r.category_id = ANY(")
                .push_bind(scope.clone())
                .push(")");
        }
        if let Some(p) = &phone {
            qb.push(
                " AND r.id IN (SELECT record_id FROM record_sensitive_values WHERE blind_index = ",
            )
            .push_bind(app.keys.blind_index("phone", p))
            .push(")");
        }
        if let Some(p) = &id_number {
            qb.push(
                " AND r.id IN (SELECT record_id FROM record_sensitive_values WHERE blind_index = ",
            )
            .push_bind(app.keys.blind_index("id_number", p))
            .push(")");
        }
        if let Some(d) = from {
            qb.push(" AND r.created_at >= ")
                .push_bind(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()));
        }
        if let Some(d) = to {
            qb.push(" AND r.created_at < ").push_bind(
                d.succ_opt()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc()),
            );
        }
        if location != (None, None, None) || status.is_some() {
            qb.push(
                " AND r.id IN (SELECT p.record_id FROM record_physical p LEFT JOIN boxes b ON b.id = p.box_id \
                 LEFT JOIN shelves s ON s.id = b.shelf_id LEFT JOIN storerooms sr ON sr.id = s.storeroom_id WHERE TRUE",
            );
            if let Some(v) = location.0 {
                qb.push(" AND sr.code = ").push_bind(v.to_string());
            }
            if let Some(v) = location.1 {
                qb.push(" AND s.code = ").push_bind(v.to_string());
            }
            if let Some(v) = location.2 {
                qb.push(" AND b.code = ").push_bind(v.to_string());
            }
            if let Some(v) = &status {
                qb.push(" AND p.status = ").push_bind(v.clone());
            }
            qb.push(")");
        }
    };
    let offset = (page - 1) * PER_PAGE;
    let page_of = |qb: &mut QueryBuilder<Postgres>| {
        qb.push(" ORDER BY r.created_at DESC, r.id DESC LIMIT ")
            .push_bind(PER_PAGE + 1)
            .push(" OFFSET ")
            .push_bind(offset);
    };
    let fragment = text.as_deref().filter(|t| !looks_like_reference(t));

    let conn: &mut sqlx::PgConnection = tx;
    let mut rows: Vec<Record> = Vec::new();
    if scope.is_empty() {
        // Nothing the caller may read: no query.
    } else if let Some(t) = fragment {
        // Step 1: the newest records (see the module's comment).
        let mut full = false;
        let uncased = uncased(t);
        let like = if uncased { " LIKE " } else { " ILIKE " };
        let window = window(uncased).max(((offset + PER_PAGE + 1) * 4).min(MAX_WINDOW));
        if offset + PER_PAGE < window {
            let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
                "SELECT {} FROM (SELECT r.* FROM records r WHERE TRUE",
                repo::RECORD_COLUMNS
            ));
            criteria(&mut qb);
            qb.push(" ORDER BY r.created_at DESC, r.id DESC LIMIT ")
                .push_bind(window)
                .push(") r WHERE r.search_text")
                .push(like)
                .push_bind(like_pattern(t))
                // A table no larger than the window is left to the indexes alone: their
                // candidates are no more than the window would read (a gating filter,
                // evaluated once, from the planner's row count).
                .push(
                    " AND (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'records'::regclass)::float8 > ",
                )
                .push_bind(window as f64);
            page_of(&mut qb);
            rows = qb.build_query_as().fetch_all(&mut *conn).await?;
            full = rows.len() as i64 > PER_PAGE;
        }
        // Step 2: from the indexes, planned for these values (an unnamed statement: a
        // generic plan would not know how rare the fragment is).
        if !full {
            let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
                "SELECT {} FROM records r WHERE TRUE",
                repo::RECORD_COLUMNS
            ));
            criteria(&mut qb);
            let grams = cjk_query_grams(t);
            if !grams.is_empty() {
                qb.push(" AND search_cjk_grams(r.search_text) @> ")
                    .push_bind(grams)
                    .push("::text[]");
            }
            qb.push(" AND r.search_text")
                .push(like)
                .push_bind(like_pattern(t));
            page_of(&mut qb);
            rows = qb
                .build_query_as()
                .persistent(false)
                .fetch_all(&mut *conn)
                .await?;
        }
    } else {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {} FROM records r WHERE TRUE",
            repo::RECORD_COLUMNS
        ));
        criteria(&mut qb);
        if let Some(t) = &text {
            // An exact reference uses its unique index; a trigram scan of it would not.
            qb.push(" AND r.reference = ").push_bind(t.to_uppercase());
        }
        page_of(&mut qb);
        rows = qb.build_query_as().fetch_all(&mut *conn).await?;
    }
    let has_more = rows.len() as i64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id.0).collect();
    let mut sealed: HashMap<Uuid, Vec<_>> = HashMap::new();
    for (id, v) in repo::sealed_values_of(&mut *conn, &ids).await? {
        sealed.entry(id).or_default().push(v);
    }
    let mut physical: HashMap<Uuid, _> = repo::physical_of(&mut *conn, &ids)
        .await?
        .into_iter()
        .collect();
    let by_id: HashMap<CategoryId, &Category> = all.iter().map(|c| (c.id, c)).collect();
    // Search never unmasks by grant; only a `none` rule of the masking policy shows a
    // value as stored, and those hits are audited below.
    let how = super::masking::Unmask {
        policy: &app.masking,
        roles: &who.user().roles,
        grant: false,
    };
    let hits: Vec<RecordView> = rows
        .iter()
        .filter_map(|r| {
            let c = by_id.get(&r.category_id)?;
            Some(view::make(
                &app.keys,
                c,
                r,
                sealed.get(&r.id.0).map(Vec::as_slice).unwrap_or_default(),
                physical.remove(&r.id.0),
                &how,
            ))
        })
        .collect();
    tx.audit(
        &who.actor(),
        Event::new("record.search", Outcome::Success).detail(json!({
            "q": text.as_deref().map(auditable_text),
            "phone": phone.is_some(),
            "id_number": id_number.is_some(),
            "category": given(&query.category),
            "from": given(&query.from), "to": given(&query.to),
            "storeroom": location.0, "shelf": location.1, "box": location.2, "status": status,
            "page": page, "hits": hits.len(),
        })),
    )
    .await?;
    let unmasked: Vec<_> = hits
        .iter()
        .filter(|h| !h.unmasked().is_empty())
        .map(|h| json!({"record": h.id, "reference": h.reference, "fields": h.unmasked()}))
        .collect();
    if !unmasked.is_empty() {
        tx.audit(
            &who.actor(),
            Event::new("record.unmask", Outcome::Success)
                .detail(json!({"kind": "masking policy", "via": "search", "records": unmasked})),
        )
        .await?;
    }
    Ok(SearchPage {
        hits,
        page,
        per_page: PER_PAGE,
        has_more,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_in_any_script_are_kept_out_of_the_trail() {
        use super::auditable_text;
        assert_eq!(auditable_text("13812345678"), "[redacted: digits]");
        assert_eq!(
            auditable_text("１３８１２３４５６７８"),
            "[redacted: digits]"
        );
        assert_eq!(auditable_text("合同 138 1234"), "[redacted: digits]");
        assert_eq!(auditable_text("宏达 2024"), "宏达 2024");
    }

    #[test]
    fn query_grams_and_case() {
        use super::{cjk_query_grams, uncased};
        assert_eq!(cjk_query_grams("宏"), ["宏"]);
        assert_eq!(cjk_query_grams("宏达"), ["宏达"]);
        assert_eq!(cjk_query_grams("上海宏达"), ["上海", "宏达", "海宏"]);
        assert_eq!(cjk_query_grams("Acme宏 Trading"), ["宏"]);
        assert_eq!(cjk_query_grams("上海Bluepeak科技"), ["上海", "科技"]);
        assert_eq!(cjk_query_grams("宏达宏达"), ["宏达", "达宏"]);
        assert!(cjk_query_grams("Bluepeak 2026").is_empty());
        assert!(uncased("宏达 2026-05"));
        assert!(!uncased("宏达a"));
        assert!(!uncased("ß"));
    }

    #[test]
    fn reference_shapes() {
        assert!(super::looks_like_reference("CONTR-2026-000123"));
        assert!(super::looks_like_reference("contr-2026-000123"));
        assert!(!super::looks_like_reference("shanghai pud"));
        assert!(!super::looks_like_reference("CONTR-2026"));
        assert!(!super::looks_like_reference("Smith-Jones-Partners"));
    }
}
