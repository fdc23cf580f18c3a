//! The tamper-evident audit trail.
//!
//! Guarantees:
//! - Events are appended in the caller's transaction, so an action and its trace commit or
//!   roll back together (fail closed: if the event cannot be written, the action fails).
//! - Appends are serialized by a transaction-scoped advisory lock, so concurrent writers
//!   produce one linear, gap-free chain: `seq` n+1 carries `prev_hash` = hash of `seq` n.
//! - `hash = SHA-256(prev_hash ‖ canonical(event))`, where the canonical encoding is a JSON
//!   array of the event's fields in fixed order with object keys sorted; `verify` recomputes
//!   it and names the first event that does not match.
//! - The database refuses UPDATE, DELETE and TRUNCATE (see the foundation migration); the
//!   chain catches what a superuser does with the triggers disabled.
//!
//! Details must never carry secrets or sensitive values: callers pass names and ids only.

mod repo;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::AppResult;
use crate::telemetry::RequestMeta;

/// Advisory-lock key that serializes appends ("audit" in ASCII).
const APPEND_LOCK: i64 = 0x0061_7564_6974;
const GENESIS: [u8; 32] = [0; 32];

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

/// A stored event, as read back for verification and the audit views.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct StoredEvent {
    pub seq: i64,
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
    pub prev_hash: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

/// Appends one event inside the caller's transaction.
pub async fn record(conn: &mut PgConnection, actor: &Actor, event: Event) -> AppResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPEND_LOCK)
        .execute(&mut *conn)
        .await?;
    let (last_seq, prev_hash) = match repo::last(conn).await? {
        Some((seq, hash)) => (seq, hash),
        None => (0, GENESIS.to_vec()),
    };
    let stored = StoredEvent {
        seq: last_seq + 1,
        id: Uuid::new_v4(),
        // PostgreSQL keeps microseconds; hash exactly what will be read back.
        occurred_at: Utc::now().trunc_subsecs(6),
        actor_id: actor.id,
        actor: actor.name.clone(),
        action: event.action.to_string(),
        object_type: event.object_type.map(str::to_string),
        object_id: event.object_id,
        outcome: event.outcome.as_str().to_string(),
        client_addr: actor.client_addr.clone(),
        request_id: actor.request_id.clone(),
        detail: event.detail,
        hash: Vec::new(),
        prev_hash,
    };
    let hash = chain_hash(&stored.prev_hash, &stored);
    let stored = StoredEvent { hash, ..stored };
    repo::insert(conn, &stored).await?;
    tracing::info!(
        target: "audit",
        seq = stored.seq,
        action = %stored.action,
        outcome = %stored.outcome,
        actor = %stored.actor,
        "audit event"
    );
    Ok(())
}

/// Appends one event in a transaction of its own (for events that stand alone, such as a
/// failed login, which must be kept even though the action it records failed).
pub async fn record_alone(pool: &PgPool, actor: &Actor, event: Event) -> AppResult<()> {
    let mut tx = pool.begin().await?;
    record(&mut tx, actor, event).await?;
    tx.commit().await?;
    Ok(())
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
        Value::from(e.seq),
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
    Intact {
        events: u64,
    },
    Broken {
        seq: i64,
        id: Option<Uuid>,
        reason: String,
    },
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verification::Intact { events } => write!(f, "audit chain OK: {events} events"),
            Verification::Broken { seq, id, reason } => match id {
                Some(id) => write!(f, "audit chain BROKEN at event {seq} (id {id}): {reason}"),
                None => write!(f, "audit chain BROKEN at event {seq}: {reason}"),
            },
        }
    }
}

/// Walks the whole chain in order, in bounded batches, and reports the first broken link.
pub async fn verify(pool: &PgPool) -> AppResult<Verification> {
    const BATCH: i64 = 5_000;
    let mut expected_seq = 1i64;
    let mut prev = GENESIS.to_vec();
    loop {
        let mut conn = pool.acquire().await?;
        let batch = repo::batch_from(&mut conn, expected_seq, BATCH).await?;
        drop(conn);
        if batch.is_empty() {
            return Ok(Verification::Intact {
                events: (expected_seq - 1) as u64,
            });
        }
        for e in &batch {
            if e.seq != expected_seq {
                return Ok(Verification::Broken {
                    seq: expected_seq,
                    id: None,
                    reason: format!("event missing (next stored event is {})", e.seq),
                });
            }
            if e.prev_hash != prev {
                return Ok(Verification::Broken {
                    seq: e.seq,
                    id: Some(e.id),
                    reason: "prev_hash does not match the previous event".into(),
                });
            }
            if chain_hash(&prev, e) != e.hash {
                return Ok(Verification::Broken {
                    seq: e.seq,
                    id: Some(e.id),
                    reason: "content does not match its hash (event altered)".into(),
                });
            }
            prev = e.hash.clone();
            expected_seq += 1;
        }
    }
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
    pub before_seq: Option<i64>,
}

pub async fn list(pool: &PgPool, q: &Query) -> AppResult<Vec<StoredEvent>> {
    let mut conn = pool.acquire().await?;
    Ok(repo::list(&mut conn, q).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> StoredEvent {
        StoredEvent {
            seq: 1,
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
            prev_hash: GENESIS.to_vec(),
            hash: vec![],
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
