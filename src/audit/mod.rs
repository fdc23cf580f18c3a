//! The tamper-evident audit trail.
//!
//! Guarantees:
//! - Events are inserted in the caller's transaction, so an action and its trace commit or
//!   roll back together (fail closed: if the event cannot be written, the action fails).
//!   Inserting takes no lock: audited actions run side by side.
//! - One sequencer at a time ([`sequence`], under a transaction-scoped advisory lock that
//!   only sequencers take) chains committed events, in batches, into `audit_chain`: chain
//!   row `seq` n+1 carries `prev_hash` = hash of `seq` n. Events are chained in the order
//!   (inserting transaction id, insertion position), and only once every transaction with
//!   a lower id has finished, so no event can ever appear behind the chain's head. The
//!   server runs it every [`SEQUENCE_INTERVAL`] and on a clean stop; a crash at any point
//!   loses nothing (a pass is one transaction; the next pass starts from the head).
//! - `hash = SHA-256(prev_hash ‖ canonical(event))`, where the canonical encoding is a JSON
//!   array of the event's fields (with its chain `seq`) in fixed order with object keys
//!   sorted; [`verify`] recomputes it, names the first event that does not match, that is
//!   missing or out of order, and reports events not chained yet.
//! - The database refuses UPDATE, DELETE and TRUNCATE on both tables, assigns an event's
//!   position itself (an event cannot be back-dated behind the head), and the server's
//!   runtime role may not disable the triggers; the chain catches what a superuser does.
//!
//! Details must never carry secrets or sensitive values: callers pass names and ids only.

pub mod browse;
pub mod checkpoint;
mod repo;

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::AppResult;
use crate::telemetry::RequestMeta;

/// Advisory-lock key held by the one sequencer that chains events ("audseq" in ASCII).
const SEQUENCER_LOCK: i64 = 0x6175_6473_6571;
const GENESIS: [u8; 32] = [0; 32];
/// Events chained per sequencer transaction.
const SEQUENCE_BATCH: i64 = 5_000;
/// How often the server chains new events.
pub const SEQUENCE_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Who acts and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<Uuid>,
    pub name: String,
    pub client_addr: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    /// The vault itself (start-up, background jobs, command line).
    pub fn system(name: &str) -> Actor {
        Actor {
            id: None,
            name: name.to_string(),
            client_addr: None,
            request_id: None,
        }
    }

    pub fn anonymous(meta: &RequestMeta, claimed_name: &str) -> Actor {
        Actor {
            id: None,
            name: claimed_name.chars().take(64).collect(),
            client_addr: meta.client_addr.clone(),
            request_id: Some(meta.request_id.clone()),
        }
    }

    pub fn user(id: Uuid, name: &str, meta: &RequestMeta) -> Actor {
        Actor {
            id: Some(id),
            name: name.to_string(),
            client_addr: meta.client_addr.clone(),
            request_id: Some(meta.request_id.clone()),
        }
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: &'static str,
    pub object_type: Option<&'static str>,
    pub object_id: Option<String>,
    pub outcome: Outcome,
    pub detail: Value,
}

impl Event {
    pub fn new(action: &'static str, outcome: Outcome) -> Event {
        Event {
            action,
            object_type: None,
            object_id: None,
            outcome,
            detail: Value::Object(Default::default()),
        }
    }

    pub fn object(mut self, object_type: &'static str, id: impl ToString) -> Event {
        self.object_type = Some(object_type);
        self.object_id = Some(id.to_string());
        self
    }

    pub fn detail(mut self, detail: Value) -> Event {
        self.detail = detail;
        self
    }
}

/// A stored event, as read back for verification and the audit views. `seq`, `prev_hash`
/// and `hash` are `None` until the sequencer has chained it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct StoredEvent {
    pub pos: i64,
    pub seq: Option<i64>,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor: String,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub outcome: String,
    pub client_addr: Option<String>,
    pub request_id: Option<String>,
    pub detail: Value,
    #[serde(with = "hex_bytes")]
    pub prev_hash: Option<Vec<u8>>,
    #[serde(with = "hex_bytes")]
    pub hash: Option<Vec<u8>>,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
}

/// Appends one event inside the caller's transaction. Takes no lock: the sequencer chains
/// the event once the transaction has committed.
pub async fn record(conn: &mut PgConnection, actor: &Actor, event: Event) -> AppResult<()> {
    let id = Uuid::new_v4();
    // PostgreSQL keeps microseconds; hash exactly what will be read back.
    let occurred_at = Utc::now().trunc_subsecs(6);
    repo::insert(conn, id, occurred_at, actor, &event).await?;
    tracing::info!(
        target: "audit",
        id = %id,
        action = %event.action,
        outcome = %event.outcome.as_str(),
        actor = %actor.name,
        "audit event"
    );
    Ok(())
}

/// Appends one event in a transaction of its own (for events that stand alone, such as a
/// failed login, which must be kept even though the action it records failed).
pub async fn record_alone(pool: &PgPool, actor: &Actor, event: Event) -> AppResult<()> {
    let mut conn = pool.acquire().await?;
    // One statement: its own transaction, committed when it returns.
    record(&mut conn, actor, event).await
}

/// One sequencer pass: chains every committed event not yet in the chain, in batches, and
/// returns how many it chained. Returns 0 at once when another sequencer holds the lock
/// (that one does the work).
#[tracing::instrument(skip_all)]
pub async fn sequence(pool: &PgPool) -> AppResult<u64> {
    let db = crate::tx::Db::new(pool.clone());
    let mut total = 0u64;
    loop {
        let n = crate::unit!(db, |tx| {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(SEQUENCER_LOCK)
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                return Ok(None);
            }
            let head = repo::head(&mut tx).await?;
            let batch = repo::unchained(&mut tx, head.as_ref(), SEQUENCE_BATCH).await?;
            if batch.is_empty() {
                return Ok(Some(0));
            }
            let (mut seq, mut prev) = match &head {
                Some(h) => (h.seq, h.hash.clone()),
                None => (0, GENESIS.to_vec()),
            };
            let mut links = Vec::with_capacity(batch.len());
            for mut e in batch {
                seq += 1;
                e.seq = Some(seq);
                let hash = chain_hash(&prev, &e);
                links.push(repo::Link {
                    seq,
                    event_id: e.id,
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                });
            }
            repo::insert_links(&mut tx, &links).await?;
            Ok(Some(links.len() as u64))
        })?;
        match n {
            // Another sequencer holds the lock: it does the work.
            None => return Ok(total),
            Some(n) => {
                total += n;
                if n < SEQUENCE_BATCH as u64 {
                    return Ok(total);
                }
            }
        }
    }
}

/// Chains until nothing committed is left unchained (what a clean stop and the command
/// line's `verify-audit` do). Events of transactions still open, and any event behind a
/// transaction still open anywhere in the cluster, wait: this gives them up to
/// [`SEQUENCE_ALL_WAIT`] to finish, then returns what it chained.
pub async fn sequence_all(pool: &PgPool) -> AppResult<u64> {
    let deadline = tokio::time::Instant::now() + SEQUENCE_ALL_WAIT;
    let mut total = 0;
    loop {
        total += sequence(pool).await?;
        if repo::pending(&mut *pool.acquire().await?).await? == 0
            || tokio::time::Instant::now() >= deadline
        {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How long [`sequence_all`] waits for open transactions to finish.
pub const SEQUENCE_ALL_WAIT: Duration = Duration::from_secs(30);

/// Runs the sequencer every [`SEQUENCE_INTERVAL`] until the task is dropped.
pub async fn run_sequencer(pool: PgPool) {
    let mut every = tokio::time::interval(SEQUENCE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match sequence(&pool).await {
            Ok(n) if n > 0 => tracing::debug!(chained = n, "audit events chained"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "chaining audit events failed"),
        }
    }
}

/// The `prev_hash` of the chain's first link.
pub const GENESIS_HASH: [u8; 32] = GENESIS;

/// The hash of the link for `e` (its `seq` set) after a link hashed `prev_hash`: what
/// [`sequence`] writes and [`verify`] checks; the backup check re-walks a dumped chain
/// with it.
pub fn link_hash(prev_hash: &[u8], e: &StoredEvent) -> Vec<u8> {
    chain_hash(prev_hash, e)
}

fn chain_hash(prev_hash: &[u8], e: &StoredEvent) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical(e).as_bytes());
    h.finalize().to_vec()
}

/// The canonical encoding: a JSON array of the fields in a fixed order, timestamps as
/// RFC 3339 UTC with microseconds, object keys sorted at every depth.
fn canonical(e: &StoredEvent) -> String {
    let arr = Value::Array(vec![
        e.seq.map(Value::from).unwrap_or(Value::Null),
        Value::from(e.id.to_string()),
        Value::from(
            e.occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ),
        e.actor_id
            .map(|u| Value::from(u.to_string()))
            .unwrap_or(Value::Null),
        Value::from(e.actor.clone()),
        Value::from(e.action.clone()),
        e.object_type
            .clone()
            .map(Value::from)
            .unwrap_or(Value::Null),
        e.object_id.clone().map(Value::from).unwrap_or(Value::Null),
        Value::from(e.outcome.clone()),
        e.client_addr
            .clone()
            .map(Value::from)
            .unwrap_or(Value::Null),
        e.request_id.clone().map(Value::from).unwrap_or(Value::Null),
        sorted(&e.detail),
    ]);
    arr.to_string()
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every chained event is present, unaltered and in order; `pending` events are
    /// committed but not chained yet (the sequencer has not reached them).
    Intact { events: u64, pending: u64 },
    Broken {
        seq: i64,
        id: Option<Uuid>,
        reason: String,
    },
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verification::Intact { events, pending: 0 } => {
                write!(f, "audit chain OK: {events} events")
            }
            Verification::Intact { events, pending } => write!(
                f,
                "audit chain OK: {events} events ({pending} events not chained yet)"
            ),
            Verification::Broken { seq, id, reason } => match id {
                Some(id) => write!(f, "audit chain BROKEN at event {seq} (id {id}): {reason}"),
                None => write!(f, "audit chain BROKEN at event {seq}: {reason}"),
            },
        }
    }
}

/// Walks the whole chain in order, in bounded batches, and reports the first broken link:
/// a chain row whose event is missing, altered or out of place, a gap in `seq`, or an event
/// that lies behind the chain's head without being in it (inserted around the sequencer).
pub async fn verify(pool: &PgPool) -> AppResult<Verification> {
    const BATCH: i64 = 5_000;
    let mut expected_seq = 1i64;
    let mut prev = GENESIS.to_vec();
    loop {
        let mut conn = pool.acquire().await?;
        let batch = repo::chain_from(&mut conn, expected_seq, BATCH).await?;
        drop(conn);
        if batch.is_empty() {
            break;
        }
        for (link, e) in &batch {
            if link.seq != expected_seq {
                return Ok(Verification::Broken {
                    seq: expected_seq,
                    id: None,
                    reason: format!("event missing (next chained event is {})", link.seq),
                });
            }
            let Some(e) = e else {
                return Ok(Verification::Broken {
                    seq: link.seq,
                    id: Some(link.event_id),
                    reason: "event missing (its chain entry remains)".into(),
                });
            };
            if link.prev_hash != prev {
                return Ok(Verification::Broken {
                    seq: link.seq,
                    id: Some(e.id),
                    reason: "prev_hash does not match the previous event".into(),
                });
            }
            if chain_hash(&prev, e) != link.hash {
                return Ok(Verification::Broken {
                    seq: link.seq,
                    id: Some(e.id),
                    reason: "content does not match its hash (event altered or moved)".into(),
                });
            }
            prev = link.hash.clone();
            expected_seq += 1;
        }
    }
    let mut conn = pool.acquire().await?;
    let head = repo::head(&mut conn).await?;
    if let Some(stray) = repo::behind_head_unchained(&mut conn, head.as_ref()).await? {
        return Ok(Verification::Broken {
            seq: expected_seq,
            id: Some(stray),
            reason: "event lies behind the chain's head but is not in the chain".into(),
        });
    }
    let pending = repo::pending(&mut conn).await?;
    Ok(Verification::Intact {
        events: (expected_seq - 1) as u64,
        pending,
    })
}

/// Filters for the audit listing.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub actor: Option<String>,
    pub object: Option<String>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
    /// Paging: only events inserted before this position.
    pub before_pos: Option<i64>,
}

/// Reads the audit trail (`audit.read`); the read itself is audited (who looked, with which
/// filter), and so is a refusal.
#[tracing::instrument(skip_all)]
pub async fn read(
    app: &crate::App,
    who: &crate::auth::Principal,
    q: Query,
) -> AppResult<Vec<StoredEvent>> {
    crate::text::check_form(
        [
            ("actor", &q.actor),
            ("object", &q.object),
            ("action", &q.action),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_deref().map(|v| (n, v))),
    )?;
    crate::unit!(app.db, |tx| {
        tx.authorize::<crate::policy::ReadAudit>(&app.policies, who, None, None)?;
        let events = repo::list(&mut tx, &q).await?;
        tx.audit(
            &who.actor(),
            Event::new("audit.read", Outcome::Success).detail(serde_json::json!({
                "actor": q.actor, "object": q.object, "action": q.action,
                "from": q.from, "to": q.to, "returned": events.len(),
            })),
        )
        .await?;
        Ok(events)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> StoredEvent {
        StoredEvent {
            pos: 1,
            seq: Some(1),
            id: Uuid::nil(),
            occurred_at: DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap(),
            actor_id: None,
            actor: "system".into(),
            action: "auth.login".into(),
            object_type: None,
            object_id: None,
            outcome: "success".into(),
            client_addr: None,
            request_id: None,
            detail: serde_json::json!({"b": 1, "a": {"d": true, "c": "x"}}),
            prev_hash: None,
            hash: None,
        }
    }

    #[test]
    fn canonical_encoding_is_fixed() {
        assert_eq!(
            canonical(&event()),
            r#"[1,"00000000-0000-0000-0000-000000000000","2023-11-14T22:13:20.123456Z",null,"system","auth.login",null,null,"success",null,null,{"a":{"c":"x","d":true},"b":1}]"#
        );
    }

    #[test]
    fn any_field_change_changes_the_hash() {
        let base = chain_hash(&GENESIS, &event());
        let mut e = event();
        e.outcome = "failure".into();
        assert_ne!(base, chain_hash(&GENESIS, &e));
        let mut e = event();
        e.detail = serde_json::json!({"b": 2, "a": {"d": true, "c": "x"}});
        assert_ne!(base, chain_hash(&GENESIS, &e));
        assert_ne!(base, chain_hash(&[1; 32], &event()));
    }
}
