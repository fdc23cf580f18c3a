use sqlx::PgConnection;

use super::{Query, StoredEvent};

const COLUMNS: &str = "seq, id, occurred_at, actor_id, actor, action, object_type, object_id, \
                       outcome, client_addr, request_id, detail, prev_hash, hash";

pub(super) async fn last(conn: &mut PgConnection) -> sqlx::Result<Option<(i64, Vec<u8>)>> {
    sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(conn)
        .await
}

pub(super) async fn insert(conn: &mut PgConnection, e: &StoredEvent) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (seq, id, occurred_at, actor_id, actor, action, object_type, \
         object_id, outcome, client_addr, request_id, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(e.seq)
    .bind(e.id)
    .bind(e.occurred_at)
    .bind(e.actor_id)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.object_type)
    .bind(&e.object_id)
    .bind(&e.outcome)
    .bind(&e.client_addr)
    .bind(&e.request_id)
    .bind(&e.detail)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn batch_from(
    conn: &mut PgConnection,
    from_seq: i64,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2"
    ))
    .bind(from_seq)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub(super) async fn list(conn: &mut PgConnection, q: &Query) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_events \
         WHERE ($1::text IS NULL OR actor = $1 OR actor_id::text = $1) \
           AND ($2::text IS NULL OR object_id = $2) \
           AND ($3::text IS NULL OR action = $3 OR action LIKE $3 || '.%') \
           AND ($4::timestamptz IS NULL OR occurred_at >= $4) \
           AND ($5::timestamptz IS NULL OR occurred_at < $5) \
           AND ($6::bigint IS NULL OR seq < $6) \
         ORDER BY seq DESC LIMIT $7"
    ))
    .bind(&q.actor)
    .bind(&q.object)
    .bind(&q.action)
    .bind(q.from)
    .bind(q.to)
    .bind(q.before_seq)
    .bind(q.limit)
    .fetch_all(conn)
    .await
}
