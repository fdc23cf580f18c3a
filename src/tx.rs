//! The unit of work: the one way services reach PostgreSQL.
//!
//! Guarantees:
//! - Work runs in one transaction ([`unit!`]): it commits when the work returns `Ok`, and
//!   rolls back, awaited, before the error goes back to the caller, so no row lock taken
//!   with `FOR UPDATE` outlives a failed request (a dropped sqlx transaction only queues
//!   its ROLLBACK until the connection is next used).
//! - The action's audit event is written through the same transaction ([`Tx::audit`]): the
//!   change and its trace commit or vanish together.
//! - A refusal ([`Tx::refuse`]) is kept apart from the work: it is written in a transaction
//!   of its own after the work's transaction has ended, whatever the outcome, so refused
//!   actions are always audited and never roll back with the work.
//! - Nothing else in the crate begins a transaction (a test scans the sources).

use std::ops::{Deref, DerefMut};

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::audit::{self, Actor, Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{Action, Permit, Policies, Resource};

/// The database as the services see it. Handlers hold it only inside [`crate::App`] and
/// pass it to services; they never query it.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
}

impl Db {
    pub fn new(pool: PgPool) -> Db {
        Db { pool }
    }

    /// The pool, for the audit sequencer, background jobs, the request guard and the
    /// command line (which run outside any one action). Services use [`unit!`].
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Asks the policy for action A outside a unit of work; a refusal is audited in a
    /// transaction of its own (the same as [`Tx::authorize`], for checks that come before
    /// any work).
    pub async fn authorize<A: Action>(
        &self,
        policies: &Policies,
        who: &Principal,
        r: Option<&Resource<'_>>,
        object: Option<(&'static str, String)>,
    ) -> AppResult<Permit<A>> {
        match policies.authorize::<A>(who, r) {
            Ok(p) => Ok(p),
            Err(e) => {
                audit::record_alone(&self.pool, &who.actor(), refusal::<A>(object)).await?;
                Err(e)
            }
        }
    }

    /// Whether the database answers (for the health check).
    pub async fn ping(&self) -> AppResult<()> {
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    /// Writes one audit event on its own (an event that must be kept although the action
    /// it records failed, such as an interrupted upload).
    pub async fn record(&self, actor: &Actor, event: Event) -> AppResult<()> {
        audit::record_alone(&self.pool, actor, event).await
    }

    /// Starts a unit of work. Use [`unit!`], which always ends it.
    #[doc(hidden)]
    pub async fn start_unit(&self) -> AppResult<Tx> {
        Ok(Tx {
            inner: Some(self.pool.begin().await?),
            pool: self.pool.clone(),
            refusals: Vec::new(),
        })
    }
}

/// One transaction and the refusals met during it. Dereferences to the connection, so
/// repository functions take `&mut tx` as `&mut PgConnection`.
pub struct Tx {
    inner: Option<Transaction<'static, Postgres>>,
    pool: PgPool,
    refusals: Vec<(Actor, Event)>,
}

impl Deref for Tx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        match &self.inner {
            Some(t) => t,
            // Only `finish` takes the transaction, and it consumes the `Tx`.
            None => unreachable!("a finished unit of work is never used"),
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match &mut self.inner {
            Some(t) => t,
            None => unreachable!("a finished unit of work is never used"),
        }
    }
}

impl Tx {
    /// Writes the action's audit event in this transaction (fail closed: if it cannot be
    /// written, the work fails and nothing of it is kept).
    pub async fn audit(&mut self, actor: &Actor, event: Event) -> AppResult<()> {
        audit::record(self, actor, event).await
    }

    /// Notes a refused action; it is audited when the unit of work ends, in a transaction
    /// of its own, so the refusal is kept although the work is rolled back.
    pub fn refuse(&mut self, actor: &Actor, event: Event) {
        self.refusals.push((actor.clone(), event));
    }

    /// The answer for an object that does not exist: 404, with the refused action audited
    /// like any other refusal (a probe for ids leaves its trace).
    pub fn not_found(
        &mut self,
        who: &Principal,
        action: &'static str,
        object: (&'static str, String),
    ) -> AppError {
        self.refuse(
            &who.actor(),
            Event::new(action, Outcome::Denied)
                .object(object.0, object.1)
                .detail(serde_json::json!({ "reason": "not_found" })),
        );
        AppError::NotFound
    }

    /// Asks the policy for action A on `r` (None: the vault as a whole) for `who`, inside
    /// this unit of work: a refusal is audited (`A` denied, naming `object` when given)
    /// even though the unit then rolls back.
    pub fn authorize<A: Action>(
        &mut self,
        policies: &Policies,
        who: &Principal,
        r: Option<&Resource<'_>>,
        object: Option<(&'static str, String)>,
    ) -> AppResult<Permit<A>> {
        match policies.authorize::<A>(who, r) {
            Ok(p) => Ok(p),
            Err(e) => {
                self.refuse(&who.actor(), refusal::<A>(object));
                Err(e)
            }
        }
    }

    /// Ends the unit: commit on `Ok`, rollback on `Err` (awaited, so locks are released
    /// before the answer), then the refusals. A refusal that cannot be audited turns the
    /// answer into an error (fail closed).
    #[doc(hidden)]
    pub async fn finish<T>(mut self, result: AppResult<T>) -> AppResult<T> {
        let Some(tx) = self.inner.take() else {
            return Err(AppError::internal("unit of work ended twice"));
        };
        let result = match result {
            Ok(v) => match tx.commit().await {
                Ok(()) => Ok(v),
                Err(e) => Err(AppError::from(e)),
            },
            Err(e) => {
                if let Err(r) = tx.rollback().await {
                    tracing::warn!(error = %r, "rollback failed; the connection is closed");
                }
                Err(e)
            }
        };
        for (actor, event) in std::mem::take(&mut self.refusals) {
            audit::record_alone(&self.pool, &actor, event).await?;
        }
        result
    }
}

/// The audit event of a refused action A.
fn refusal<A: Action>(object: Option<(&'static str, String)>) -> Event {
    let event =
        Event::new(A::NAME, Outcome::Denied).detail(serde_json::json!({ "reason": "denied" }));
    match object {
        Some((kind, id)) => event.object(kind, id),
        None => event,
    }
}

/// Runs `$body` (an expression yielding `AppResult<T>`, usually a block ending in `Ok(..)`)
/// as one unit of work on `$db`, with the transaction bound to `$tx`:
///
/// ```ignore
/// unit!(app.db, |tx| {
///     repo::insert(&mut tx, ..).await?;
///     tx.audit(&actor, event).await?;
///     Ok(id)
/// })
/// ```
///
/// `?` inside the body ends the body, not the function: the transaction is then rolled back
/// (awaited) before the error is returned.
#[macro_export]
macro_rules! unit {
    ($db:expr, |$tx:ident| $body:expr) => {{
        #[allow(unused_mut)]
        let mut $tx = $db.start_unit().await?;
        let result: $crate::error::AppResult<_> = async { $body }.await;
        $tx.finish(result).await
    }};
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The rule this module exists for, checked on the sources: no transaction is begun
    /// anywhere else (the database setup in `db.rs` runs as the owner role, outside any
    /// request), and the HTML and JSON handlers never reach the database themselves.
    #[test]
    fn nothing_else_begins_a_transaction_and_handlers_do_not_query() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let files = crate::source_scan::files(&["src"], &["rs"]);
        assert!(files.len() > 30);
        let me = root.join("tx.rs").display().to_string();
        let setup = root.join("db.rs").display().to_string();
        // Backup reads one REPEATABLE READ READ ONLY snapshot, and restore loads a whole
        // vault as the owner role in one transaction: neither is a unit of work of an action.
        let backup = root.join("backup").join("mod.rs").display().to_string();
        for (path, text) in &files {
            if *path != me && *path != setup && *path != backup {
                assert!(
                    !text.contains(".begin()") && !text.contains("start_unit("),
                    "{path} begins a transaction of its own: use unit!"
                );
            }
            let handler = path.contains("/src/web/") || path.contains("/src/api/");
            if handler && !path.ends_with("template_tests.rs") {
                for needle in ["sqlx::", ".pool()", "PgPool", "PgConnection"] {
                    assert!(
                        !text.contains(needle),
                        "{path} reaches the database: {needle}"
                    );
                }
            }
        }
    }
}
