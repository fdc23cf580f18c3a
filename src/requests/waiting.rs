//! How many requests wait for a supervisor's decision: the count in the navigation,
//! computed once per page by the approvals queue's own rule ([`super::queue`]). Reads only;
//! nothing is audited (the queue itself is what a supervisor opens to see the requests).

use crate::auth::Principal;
use crate::error::AppResult;
use crate::{unit, App};

/// The most requests counted (the queue's own page).
const LIMIT: i64 = 500;

#[tracing::instrument(skip_all)]
pub async fn count(app: &App, who: &Principal) -> AppResult<usize> {
    unit!(app.db, |tx| {
        Ok(super::queue(&mut tx, app, who, None, LIMIT).await?.len())
    })
}
