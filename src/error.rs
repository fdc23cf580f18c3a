//! One error type for request paths, mapped to HTTP in exactly one `Responder`: JSON
//! (`{"error": {"code", "message"}}`) under `/api`, an HTML page elsewhere. 5xx bodies are
//! generic; the detail goes to tracing with the request id, never to the client.

use std::io::Cursor;

use rocket::http::{ContentType, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("sign in required")]
    Unauthenticated,
    /// Deliberately one message for wrong password, unknown user and disabled account.
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("too many failed sign-in attempts; try again later")]
    TooManyAttempts,
    #[error("you must change your password before continuing")]
    PasswordChangeRequired,
    /// The password was right; the account's second factor must come with it.
    #[error("a code from your authenticator app is required")]
    TotpRequired,
    /// A wrong, already used or replayed second-factor code.
    #[error("the code is not valid or has already been used")]
    TotpInvalid,
    /// The account's role requires a second factor that is not set up yet.
    #[error("set up two-factor sign-in before continuing")]
    TotpEnrolmentRequired,
    #[error("not allowed")]
    Forbidden,
    #[error("the form has expired or did not come from this site; reload the page and try again")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    #[error("too large")]
    TooLarge,
    #[error("service unavailable")]
    Unavailable,
    /// A bounded resource (password hashing) is at capacity: 503 with `Retry-After`.
    #[error("the server is busy; try again in a moment")]
    Busy,
    #[error("the body must be sent as Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("internal error")]
    Internal(String),
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl AppError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        AppError::Internal(detail.to_string())
    }

    pub fn status(&self) -> Status {
        match self {
            AppError::Unauthenticated
            | AppError::InvalidCredentials
            | AppError::TotpRequired
            | AppError::TotpInvalid => Status::Unauthorized,
            AppError::TotpEnrolmentRequired => Status::Forbidden,
            AppError::TooManyAttempts => Status::TooManyRequests,
            AppError::PasswordChangeRequired | AppError::Forbidden | AppError::Csrf => {
                Status::Forbidden
            }
            AppError::NotFound => Status::NotFound,
            AppError::Conflict(_) => Status::Conflict,
            AppError::Invalid { .. } => Status::UnprocessableEntity,
            AppError::TooLarge => Status::PayloadTooLarge,
            AppError::Unavailable | AppError::Busy => Status::ServiceUnavailable,
            AppError::UnsupportedMediaType => Status::UnsupportedMediaType,
            AppError::Internal(_) => Status::InternalServerError,
            AppError::Database(e) => match e {
                sqlx::Error::RowNotFound => Status::NotFound,
                sqlx::Error::Database(d) if d.is_unique_violation() => Status::Conflict,
                // The database cannot be reached (down, restarting, connections refused or
                // cut): the service is unavailable, not broken.
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_) => Status::ServiceUnavailable,
                sqlx::Error::Database(d)
                    if d.code().is_some_and(|c| {
                        // admin_shutdown, crash_shutdown, cannot_connect_now
                        matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
                    }) =>
                {
                    Status::ServiceUnavailable
                }
                _ => Status::InternalServerError,
            },
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "not_authenticated",
            AppError::InvalidCredentials => "invalid_credentials",
            AppError::TooManyAttempts => "too_many_attempts",
            AppError::PasswordChangeRequired => "password_change_required",
            AppError::TotpRequired => "totp_required",
            AppError::TotpInvalid => "totp_invalid",
            AppError::TotpEnrolmentRequired => "totp_enrolment_required",
            AppError::Forbidden => "forbidden",
            AppError::Csrf => "csrf_failed",
            AppError::NotFound => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::Invalid { .. } => "invalid",
            AppError::TooLarge => "too_large",
            AppError::Unavailable => "unavailable",
            AppError::Busy => "busy",
            AppError::UnsupportedMediaType => "unsupported_media_type",
            AppError::Internal(_) => "internal",
            AppError::Database(_) => match self.status().code {
                404 => "not_found",
                409 => "conflict",
                503 => "unavailable",
                _ => "internal",
            },
        }
    }

    /// The message a client may see: never the detail of a server-side failure.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Database(_) => match self.status().code {
                404 => "not found".into(),
                409 => "already exists".into(),
                503 => "service unavailable".into(),
                _ => "internal error".into(),
            },
            AppError::Invalid {
                field: Some(f),
                message,
            } => format!("{f}: {message}"),
            other => other.to_string(),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Database(e)
    }
}

/// The JSON body of an error, shared with the catchers.
pub fn error_body(code: &str, message: &str, field: Option<&str>) -> String {
    let mut err = json!({ "code": code, "message": message });
    if let Some(f) = field {
        err["field"] = json!(f);
    }
    json!({ "error": err }).to_string()
}

impl AppError {
    /// What the log may say about the error: a database error by its code, constraint and
    /// message only, never its DETAIL (which quotes the refused row's values).
    pub fn for_log(&self) -> String {
        match self {
            AppError::Database(sqlx::Error::Database(d)) => format!(
                "database error {}: {} (constraint {:?}, table {:?})",
                d.code().unwrap_or_default(),
                d.message(),
                d.constraint(),
                d.table()
            ),
            other => format!("{other:?}"),
        }
    }
}

pub fn is_api(req: &Request<'_>) -> bool {
    req.uri().path().as_str().starts_with("/api/")
}

impl<'r> Responder<'r, 'static> for AppError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let status = self.status();
        // Seconds a refused client should wait before trying again.
        let retry_after = matches!(self, AppError::Busy).then_some("2");
        let request_id = crate::telemetry::request_id(req);
        if status.code >= 500 {
            tracing::error!(%request_id, error = %self.for_log(), "request failed");
        } else {
            tracing::debug!(%request_id, code = self.code(), "request refused");
        }
        if is_api(req) {
            let field = match &self {
                AppError::Invalid { field, .. } => field.as_deref(),
                _ => None,
            };
            // Scripts get English unless they ask for another language; the code never
            // changes with the language.
            let lang = req
                .headers()
                .get_one("Accept-Language")
                .and_then(crate::i18n::Lang::negotiate)
                .unwrap_or(crate::i18n::Lang::En);
            let message = crate::i18n::message(lang, &self.public_message());
            let body = error_body(self.code(), &message, field);
            let mut res = Response::build();
            if let Some(s) = retry_after {
                res.raw_header("Retry-After", s);
            }
            return res
                .status(status)
                .header(ContentType::JSON)
                .sized_body(body.len(), Cursor::new(body))
                .ok();
        }
        if matches!(self, AppError::Unauthenticated) {
            return rocket::response::Redirect::to("/login").respond_to(req);
        }
        if matches!(self, AppError::PasswordChangeRequired) {
            return rocket::response::Redirect::to("/account/password").respond_to(req);
        }
        if matches!(self, AppError::TotpEnrolmentRequired) {
            return rocket::response::Redirect::to("/account/totp").respond_to(req);
        }
        let who = crate::auth::guard::cached(req);
        let ui = crate::i18n::Ui::for_request(req, who.as_ref().map(|a| a.user()));
        let message = crate::i18n::message(ui.lang, &self.public_message());
        let html = req
            .rocket()
            .state::<ErrorPages>()
            .and_then(|pages| (pages.render)(status, &message, ui, who.as_ref()))
            .unwrap_or_else(|| {
                format!("<!doctype html><title>{status}</title><h1>{status}</h1><p>{status}</p>")
            });
        let mut res = Response::build();
        if let Some(s) = retry_after {
            res.raw_header("Retry-After", s);
        }
        res.status(status)
            .header(ContentType::HTML)
            .sized_body(html.len(), Cursor::new(html))
            .ok()
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// How HTML error pages are rendered: given to the server at build time (by the web
/// interface), so this module needs nothing above it.
pub struct ErrorPages {
    render: RenderPage,
}

type RenderPage = Box<
    dyn Fn(Status, &str, crate::i18n::Ui, Option<&crate::auth::Authenticated>) -> Option<String>
        + Send
        + Sync,
>;

impl ErrorPages {
    pub fn new(
        render: impl Fn(Status, &str, crate::i18n::Ui, Option<&crate::auth::Authenticated>) -> Option<String>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        ErrorPages {
            render: Box::new(render),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping_is_pinned() {
        let cases: Vec<(AppError, u16, &str)> = vec![
            (AppError::Unauthenticated, 401, "not_authenticated"),
            (AppError::InvalidCredentials, 401, "invalid_credentials"),
            (AppError::TooManyAttempts, 429, "too_many_attempts"),
            (
                AppError::PasswordChangeRequired,
                403,
                "password_change_required",
            ),
            (AppError::TotpRequired, 401, "totp_required"),
            (AppError::TotpInvalid, 401, "totp_invalid"),
            (
                AppError::TotpEnrolmentRequired,
                403,
                "totp_enrolment_required",
            ),
            (AppError::Forbidden, 403, "forbidden"),
            (AppError::Csrf, 403, "csrf_failed"),
            (AppError::NotFound, 404, "not_found"),
            (AppError::Conflict("x".into()), 409, "conflict"),
            (AppError::invalid("f", "bad"), 422, "invalid"),
            (AppError::TooLarge, 413, "too_large"),
            (AppError::Unavailable, 503, "unavailable"),
            (AppError::Busy, 503, "busy"),
            (
                AppError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (AppError::internal("boom"), 500, "internal"),
            (
                AppError::Database(sqlx::Error::RowNotFound),
                404,
                "not_found",
            ),
            (
                AppError::Database(sqlx::Error::PoolTimedOut),
                503,
                "unavailable",
            ),
            (
                AppError::Database(sqlx::Error::Protocol("x".into())),
                500,
                "internal",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().code, status, "{err:?}");
            assert_eq!(err.code(), code, "{err:?}");
        }
    }

    #[test]
    fn server_errors_hide_their_detail() {
        let e = AppError::internal("secret detail from the depths");
        assert_eq!(e.public_message(), "internal error");
        let e = AppError::Database(sqlx::Error::Protocol("password=abc".into()));
        assert!(!e.public_message().contains("abc"));
    }
}
