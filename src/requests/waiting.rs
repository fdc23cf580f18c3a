//! How many requests wait for a supervisor's decision: the count in the navigation,
//! computed once per page. The same rule as the approvals queue ([`super::list`] with
//! `to_approve`): pending, not expired, not the person's own, not yet decided by them,
//! routed to one of their roles (and department where the route says so), and allowed by
//! the policy's own decision on each. Reads only; nothing is audited (the queue itself is
//! what a supervisor opens to see the requests).

use super::{object, RequestView, REQUEST_SELECT};
use crate::auth::Principal;
use crate::error::AppResult;
use crate::policy::ApproveRequest;
use crate::{unit, App};

/// The most requests counted (the queue's own page).
const LIMIT: i64 = 500;

#[tracing::instrument(skip_all)]
pub async fn count(app: &App, who: &Principal) -> AppResult<usize> {
    let user = who.user();
    let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
    unit!(app.db, |tx| {
        let rows: Vec<RequestView> = sqlx::query_as(&format!(
            "{REQUEST_SELECT} WHERE q.state = 'pending' AND q.expires_at > now() AND q.requester_id <> $1 \
             AND q.approver_role = ANY($2) AND (NOT q.same_department OR q.department = $3) \
             AND NOT EXISTS (SELECT 1 FROM request_decisions d WHERE d.request_id = q.id AND d.approver_id = $1) \
             ORDER BY q.created_at LIMIT $4"
        ))
        .bind(user.id)
        .bind(&roles)
        .bind(&user.department)
        .bind(LIMIT)
        .fetch_all(&mut *tx)
        .await?;
        Ok(rows
            .iter()
            .filter(|v| {
                object(who, v).is_ok_and(|r| app.policies.allows::<ApproveRequest>(who, &r))
            })
            .count())
    })
}
