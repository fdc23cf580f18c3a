//! Why a view grant no longer opens its file: who revoked it and when, or when it expired.
//! The viewer shows this instead of its pages once a page URL or the viewer page is refused
//! because the grant has ended, so the reader knows what happened and what to do next.
//!
//! Only the grant's own holder learns this: the lookup is bound to the caller as
//! [`crate::grants::find_held`] is, so someone else's grant id tells nothing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::AppResult;
use crate::grants::GRANT_STATE;
use crate::i18n::{format_time, tr, Ui};
use crate::{unit, App};

/// A view grant of the caller's that is no longer in force.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Ended {
    pub grant_id: Uuid,
    pub record_id: Uuid,
    pub reference: String,
    /// `revoked`, `expired` or `returned`.
    pub state: String,
    pub valid_until: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The display name of the person who revoked it.
    pub revoked_by: Option<String>,
}

/// What the viewer says about an ended grant, in the reader's language and time zone.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub state: String,
    /// What happened: revoked by whom and when, or expired when.
    pub message: String,
    /// What to do next.
    pub hint: String,
    /// Where to ask again: the record's request form.
    pub request_url: String,
    pub request_label: String,
    pub reference: String,
    pub record_id: Uuid,
}

impl Ended {
    /// The record page's request form, where access is asked for again.
    pub fn request_url(&self) -> String {
        format!("/records/{}#request", self.record_id)
    }

    pub fn explain(&self, ui: Ui) -> Explained {
        let lang = ui.lang;
        let message = match (self.state.as_str(), self.revoked_at) {
            ("revoked", Some(at)) => {
                let who = match &self.revoked_by {
                    Some(name) => name.clone(),
                    None => tr(lang, "view-ended-someone", &[]),
                };
                tr(
                    lang,
                    "view-ended-revoked",
                    &[
                        ("who", who.as_str().into()),
                        ("when", format_time(ui, at).as_str().into()),
                    ],
                )
            }
            ("expired", _) => tr(
                lang,
                "view-ended-expired",
                &[("when", format_time(ui, self.valid_until).as_str().into())],
            ),
            _ => tr(lang, "view-ended-other", &[]),
        };
        Explained {
            state: self.state.clone(),
            message,
            hint: tr(lang, "view-ended-hint", &[]),
            request_url: self.request_url(),
            request_label: tr(lang, "view-ended-request", &[]),
            reference: self.reference.clone(),
            record_id: self.record_id,
        }
    }
}

/// The caller's view grant `grant_id` if it has ended (revoked, expired, returned); `None`
/// when it is in force, is someone else's, is of another kind or does not exist.
#[tracing::instrument(skip_all, fields(grant = %grant_id))]
pub async fn find(app: &App, who: &Principal, grant_id: Uuid) -> AppResult<Option<Ended>> {
    unit!(app.db, |tx| {
        let conn: &mut PgConnection = &mut tx;
        let ended: Option<Ended> = sqlx::query_as(&format!(
            "SELECT g.id AS grant_id, g.record_id, r.reference, {GRANT_STATE} AS state, \
                    g.valid_until, g.revoked_at, u.display_name AS revoked_by \
             FROM grants g JOIN records r ON r.id = g.record_id \
             LEFT JOIN users u ON u.id = g.revoked_by \
             WHERE g.id = $1 AND g.grantee_id = $2 AND g.kind = 'view'"
        ))
        .bind(grant_id)
        .bind(who.user().id)
        .fetch_optional(conn)
        .await?;
        Ok(ended.filter(|e| e.state != "active"))
    })
}
