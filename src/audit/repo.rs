use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Actor, Event, Query, StoredEvent};

/// Event columns, with the chain's columns from `c` (NULL while unchained).
const COLUMNS: &str = "e.pos, c.seq, e.id, e.occurred_at, e.actor_id, e.actor, e.action, \
                       e.object_type, e.object_id, e.outcome, e.client_addr, e.request_id, \
                       e.detail, c.prev_hash, c.hash";

/// The chain's newest link and where its event sits in chaining order.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Head {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub xid: String,
    pub pos: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Link {
    pub seq: i64,
    pub event_id: Uuid,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

#[tracing::instrument(skip_all)]
pub(super) async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    occurred_at: DateTime<Utc>,
    actor: &Actor,
    e: &Event,
) -> sqlx::Result<()> {
    // `pos` and `xid` are assigned by the database (trigger), never by the caller.
    sqlx::query(
        "INSERT INTO audit_events (id, occurred_at, actor_id, actor, action, object_type, \
         object_id, outcome, client_addr, request_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(occurred_at)
    .bind(actor.id)
    .bind(&actor.name)
    .bind(e.action)
    .bind(e.object_type)
    .bind(&e.object_id)
    .bind(e.outcome.as_str())
    .bind(&actor.client_addr)
    .bind(&actor.request_id)
    .bind(&e.detail)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all)]
pub(super) async fn head(conn: &mut PgConnection) -> sqlx::Result<Option<Head>> {
    sqlx::query_as(
        "SELECT c.seq, c.hash, e.xid::text AS xid, e.pos FROM audit_chain c \
         JOIN audit_events e ON e.id = c.event_id ORDER BY c.seq DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await
}

/// Committed events after the head in chaining order, whose transactions are all older
/// than this statement's snapshot: nothing can appear before them later.
#[tracing::instrument(skip_all)]
pub(super) async fn unchained(
    conn: &mut PgConnection,
    head: Option<&Head>,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    let (xid, pos) = after(head);
    sqlx::query_as(
        "SELECT e.pos, NULL::bigint AS seq, e.id, e.occurred_at, e.actor_id, e.actor, e.action, \
         e.object_type, e.object_id, e.outcome, e.client_addr, e.request_id, e.detail, \
         NULL::bytea AS prev_hash, NULL::bytea AS hash \
         FROM audit_events e \
         WHERE (e.xid, e.pos) > ($1::xid8, $2) \
           AND e.xid < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY e.xid, e.pos LIMIT $3",
    )
    .bind(xid)
    .bind(pos)
    .bind(limit)
    .fetch_all(conn)
    .await
}

fn after(head: Option<&Head>) -> (String, i64) {
    match head {
        Some(h) => (h.xid.clone(), h.pos),
        // Before everything: legacy events sit at transaction 0 with positions from 1.
        None => ("0".to_string(), 0),
    }
}

#[tracing::instrument(skip_all, fields(links = links.len()))]
pub(super) async fn insert_links(conn: &mut PgConnection, links: &[Link]) -> sqlx::Result<()> {
    let seqs: Vec<i64> = links.iter().map(|l| l.seq).collect();
    let ids: Vec<Uuid> = links.iter().map(|l| l.event_id).collect();
    let prevs: Vec<Vec<u8>> = links.iter().map(|l| l.prev_hash.clone()).collect();
    let hashes: Vec<Vec<u8>> = links.iter().map(|l| l.hash.clone()).collect();
    sqlx::query(
        "INSERT INTO audit_chain (seq, event_id, prev_hash, hash) \
         SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::bytea[], $4::bytea[])",
    )
    .bind(&seqs)
    .bind(&ids)
    .bind(&prevs)
    .bind(&hashes)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many committed events wait to be chained.
#[tracing::instrument(skip_all)]
pub(super) async fn pending(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let head = head(conn).await?;
    let (xid, pos) = after(head.as_ref());
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events e WHERE (e.xid, e.pos) > ($1::xid8, $2)",
    )
    .bind(xid)
    .bind(pos)
    .fetch_one(conn)
    .await?;
    Ok(n as u64)
}

/// An event at or before the head in chaining order that the chain does not hold.
#[tracing::instrument(skip_all)]
pub(super) async fn behind_head_unchained(
    conn: &mut PgConnection,
    head: Option<&Head>,
) -> sqlx::Result<Option<Uuid>> {
    let (xid, pos) = after(head);
    sqlx::query_scalar(
        "SELECT e.id FROM audit_events e \
         WHERE (e.xid, e.pos) <= ($1::xid8, $2) \
           AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_id = e.id) \
         ORDER BY e.xid, e.pos LIMIT 1",
    )
    .bind(xid)
    .bind(pos)
    .fetch_optional(conn)
    .await
}

/// Chain links from `from_seq` on, each with its event (None when the event is gone).
#[tracing::instrument(skip_all)]
pub(super) async fn chain_from(
    conn: &mut PgConnection,
    from_seq: i64,
    limit: i64,
) -> sqlx::Result<Vec<(Link, Option<StoredEvent>)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        link: Link,
        found: bool,
        #[sqlx(flatten)]
        event: StoredEvent,
    }
    // The event's columns are read through LEFT JOIN; a missing event shows as `found`
    // false (its columns are then filled with placeholders and ignored).
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.seq, c.event_id, c.prev_hash, c.hash, (e.id IS NOT NULL) AS found, \
         COALESCE(e.pos, 0) AS pos, c.event_id AS id, \
         COALESCE(e.occurred_at, 'epoch') AS occurred_at, e.actor_id, COALESCE(e.actor, '') AS actor, \
         COALESCE(e.action, '') AS action, e.object_type, e.object_id, COALESCE(e.outcome, '') AS outcome, \
         e.client_addr, e.request_id, COALESCE(e.detail, '{}') AS detail \
         FROM audit_chain c LEFT JOIN audit_events e ON e.id = c.event_id \
         WHERE c.seq >= $1 ORDER BY c.seq LIMIT $2",
    )
    .bind(from_seq)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.link, r.found.then_some(r.event)))
        .collect())
}

#[tracing::instrument(skip_all)]
pub(super) async fn list(conn: &mut PgConnection, q: &Query) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_events e LEFT JOIN audit_chain c ON c.event_id = e.id \
         WHERE ($1::text IS NULL OR e.actor = $1 OR e.actor_id::text = $1) \
           AND ($2::text IS NULL OR e.object_id = $2) \
           AND ($3::text IS NULL OR e.action = $3 OR e.action LIKE $3 || '.%') \
           AND ($4::timestamptz IS NULL OR e.occurred_at >= $4) \
           AND ($5::timestamptz IS NULL OR e.occurred_at < $5) \
           AND ($6::bigint IS NULL OR e.pos < $6) \
         ORDER BY e.pos DESC LIMIT $7"
    ))
    .bind(&q.actor)
    .bind(&q.object)
    .bind(&q.action)
    .bind(q.from)
    .bind(q.to)
    .bind(q.before_pos)
    .bind(q.limit)
    .fetch_all(conn)
    .await
}

/// The filters of the audit browser, resolved (a record's reference already turned into
/// its id, dates into instants).
#[derive(Debug, Default, Clone)]
pub(super) struct BrowseFilter {
    pub actor: Option<String>,
    pub department: Option<String>,
    pub record: Option<String>,
    /// The record's reference (events that name the record by it only).
    pub reference: Option<String>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Leave out one action (the home page leaves out page views).
    pub except: Option<String>,
}

/// The events the filter keeps, with the chain's `seq`. `$1`..`$7` are the filter's
/// values and `$8` the record's reference, bound by [`bind_filter`].
const FILTERED: &str = "SELECT e.pos, c.seq, e.id, e.occurred_at, e.actor_id, e.actor, e.action, \
     e.object_type, e.object_id, e.outcome, e.client_addr, e.request_id, e.detail \
     FROM audit_events e LEFT JOIN audit_chain c ON c.event_id = e.id \
     WHERE ($1::text IS NULL OR e.actor = $1) \
       AND ($2::text IS NULL OR e.actor_id IN (SELECT u.id FROM users u WHERE u.department = $2)) \
       AND ($3::text IS NULL OR e.object_id = $3 OR e.detail->>'record' = $3 OR e.detail->>'record_id' = $3 \
            OR e.detail->>'reference' = $8) \
       AND ($4::text IS NULL OR e.action = $4) \
       AND ($5::timestamptz IS NULL OR e.occurred_at >= $5) \
       AND ($6::timestamptz IS NULL OR e.occurred_at < $6) \
       AND ($7::text IS NULL OR e.action <> $7)";

fn bind_filter<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    f: &'q BrowseFilter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(&f.actor)
        .bind(&f.department)
        .bind(&f.record)
        .bind(&f.action)
        .bind(f.from)
        .bind(f.to)
        .bind(&f.except)
        .bind(&f.reference)
}

/// One row of the audit browser: an event, or (with `grouped`) one viewing session's page
/// views (same person, grant and file) folded into one row.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct BrowseRow {
    pub pos: i64,
    pub seq: Option<i64>,
    /// The event's id; none for a viewing session (several events).
    pub id: Option<Uuid>,
    /// The (last) event's time.
    pub occurred_at: DateTime<Utc>,
    /// A viewing session's first page view.
    pub first_at: Option<DateTime<Utc>>,
    pub actor: String,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub outcome: String,
    pub client_addr: Option<String>,
    pub detail: serde_json::Value,
    /// A viewing session's pages, in order.
    pub pages: Option<Vec<i32>>,
    /// How many events the row stands for.
    pub events: i64,
}

/// The page view action the viewer logs, folded into sessions by the browser.
pub(super) const PAGE_VIEW: &str = "file.view.page";

fn browse_sql(grouped: bool) -> String {
    if grouped {
        format!(
            "WITH f AS ({FILTERED}) \
             SELECT pos, seq, id, occurred_at, NULL::timestamptz AS first_at, actor, action, \
                    object_type, object_id, outcome, client_addr, detail, NULL::int[] AS pages, \
                    1::bigint AS events \
             FROM f WHERE action <> '{PAGE_VIEW}' \
             UNION ALL \
             SELECT max(pos), NULL::bigint, NULL::uuid, max(occurred_at), min(occurred_at), actor, \
                    '{PAGE_VIEW}', min(object_type), object_id, outcome, max(client_addr), \
                    jsonb_build_object('grant', detail->>'grant', 'record', max(detail->>'record')), \
                    array_agg(DISTINCT CASE WHEN detail->>'page' ~ '^[0-9]{{1,9}}$' \
                      THEN (detail->>'page')::int END) \
                      FILTER (WHERE detail->>'page' ~ '^[0-9]{{1,9}}$'), \
                    count(*) \
             FROM f WHERE action = '{PAGE_VIEW}' \
             GROUP BY actor_id, actor, detail->>'grant', object_id, outcome"
        )
    } else {
        format!(
            "SELECT pos, seq, id, occurred_at, NULL::timestamptz AS first_at, actor, action, \
                    object_type, object_id, outcome, client_addr, detail, NULL::int[] AS pages, \
                    1::bigint AS events \
             FROM ({FILTERED}) f"
        )
    }
}

/// One page of the browser's rows, newest first.
#[tracing::instrument(skip_all)]
pub(super) async fn browse(
    conn: &mut PgConnection,
    f: &BrowseFilter,
    grouped: bool,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<BrowseRow>> {
    let sql = format!(
        "SELECT * FROM ({}) b ORDER BY pos DESC OFFSET $9 LIMIT $10",
        browse_sql(grouped)
    );
    bind_filter(sqlx::query_as(&sql), f)
        .bind(offset)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// How many rows the browser has for the filter.
#[tracing::instrument(skip_all)]
pub(super) async fn browse_count(
    conn: &mut PgConnection,
    f: &BrowseFilter,
    grouped: bool,
) -> sqlx::Result<i64> {
    let sql = format!("SELECT count(*) FROM ({}) b", browse_sql(grouped));
    let (n,): (i64,) = bind_filter(sqlx::query_as(&sql), f).fetch_one(conn).await?;
    Ok(n)
}

/// The filtered events one by one, newest first (the CSV export), at most `limit`.
#[tracing::instrument(skip_all)]
pub(super) async fn filtered(
    conn: &mut PgConnection,
    f: &BrowseFilter,
    limit: i64,
) -> sqlx::Result<Vec<BrowseRow>> {
    let sql = format!(
        "SELECT * FROM ({}) b ORDER BY pos DESC LIMIT $9",
        browse_sql(false)
    );
    bind_filter(sqlx::query_as(&sql), f)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// The record with this reference or id: its id and reference, if any.
#[tracing::instrument(skip_all)]
pub(super) async fn find_record(
    conn: &mut PgConnection,
    reference: Option<&str>,
    id: Option<Uuid>,
) -> sqlx::Result<Option<(Uuid, String)>> {
    sqlx::query_as("SELECT id, reference FROM records WHERE reference = $1 OR id = $2 LIMIT 1")
        .bind(reference)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The newest event of `action`, if any.
#[tracing::instrument(skip_all)]
pub(super) async fn latest_of(
    conn: &mut PgConnection,
    action: &str,
) -> sqlx::Result<Option<StoredEvent>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_events e LEFT JOIN audit_chain c ON c.event_id = e.id \
         WHERE e.action = $1 ORDER BY e.pos DESC LIMIT 1"
    ))
    .bind(action)
    .fetch_optional(conn)
    .await
}

/// The chain's length (its head's `seq`; 0 when empty).
#[tracing::instrument(skip_all)]
pub(super) async fn chained(conn: &mut PgConnection) -> sqlx::Result<i64> {
    Ok(head(conn).await?.map(|h| h.seq).unwrap_or(0))
}
