//! Strongroom: a secure document-archive vault.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod grants;
pub mod http;
pub mod i18n;
pub mod jobs;
pub mod lifecycle;
pub mod pg;
pub mod policy;
pub mod records;
pub mod reports;
pub mod requests;
pub mod rotation;
pub mod sheet;
#[cfg(test)]
mod source_scan;
pub mod storage;
pub mod telemetry;
pub mod text;
pub mod tx;
pub mod users;
pub mod viewer;
pub mod web;

use rocket::data::{Limits, ToByteUnit};
use rocket::http::Status;
use rocket::{catch, catchers, Build, Request, Rocket};
use sqlx::PgPool;

use crate::config::Config;
use crate::error::AppError;

/// What every handler can reach: the database, the object store, the key ring, the
/// configuration and the templates.
pub struct App {
    pub db: tx::Db,
    pub store: storage::Store,
    pub keys: crypto::KeyRing,
    pub workflows: requests::Workflows,
    pub policies: policy::Policies,
    pub masking: records::masking::MaskingPolicy,
    pub config: Config,
    pub templates: web::Templates,
    /// The one gate all password hashing passes (see `auth::password`).
    pub hasher: auth::password::Hasher,
    /// Decrypted files and rendered pages of the viewer, bound to their grants (see
    /// `viewer::cache`).
    pub viewer_cache: viewer::cache::ViewerCache,
}

/// What a vault needs besides its database: the object store, the key ring and the
/// loaded policies. `cli::open_vault` makes one from the configuration.
pub struct Vault {
    pub store: storage::Store,
    pub keys: crypto::KeyRing,
    pub workflows: requests::Workflows,
    pub policies: policy::Policies,
    pub masking: records::masking::MaskingPolicy,
}

/// Assembles the server. The binary and the tests call this same function.
#[allow(
    clippy::expect_used,
    reason = "start-up: the templates are compiled into the binary and rendered by unit tests"
)]
pub fn build(config: Config, db: PgPool, vault: Vault) -> Rocket<Build> {
    let rocket_config = rocket::Config {
        address: config.address,
        port: config.port,
        log_level: rocket::config::LogLevel::Off,
        cli_colors: false,
        // Client addresses come from the socket: a header a client can set must not decide
        // which throttle bucket it lands in.
        ip_header: None,
        limits: Limits::default()
            .limit("json", 1.mebibytes())
            .limit("form", 64.kibibytes()),
        ..rocket::Config::default()
    };
    let templates = web::Templates::new().expect("embedded templates are valid (unit-tested)");
    rocket::custom(rocket_config)
        .manage(App {
            db: tx::Db::new(db),
            store: vault.store,
            keys: vault.keys,
            workflows: vault.workflows,
            policies: vault.policies,
            masking: vault.masking,
            hasher: auth::password::Hasher::from_config(&config),
            viewer_cache: viewer::cache::ViewerCache::from_config(&config),
            config,
            templates,
        })
        .manage(web::error_pages().expect("embedded templates are valid (unit-tested)"))
        .attach(telemetry::RequestTelemetry)
        .attach(rotation::reload::KeyReload::fairing())
        .mount("/", web::routes())
        .mount("/api/v1", api::routes())
        .register("/", catchers![catch_all])
}

/// Every error that no handler answered: guard failures, unknown routes, malformed bodies.
/// They go through the same `AppError` responder as handler errors.
#[catch(default)]
fn catch_all(status: Status, req: &Request<'_>) -> AppError {
    if let Some(e) = auth::csrf::refused_form(req) {
        return e;
    }
    match auth::guard::failure_code(req) {
        Some("password_change_required") => return AppError::PasswordChangeRequired,
        Some("totp_enrolment_required") => return AppError::TotpEnrolmentRequired,
        Some("forbidden") => return AppError::Forbidden,
        Some("csrf_failed") => return AppError::Csrf,
        Some("not_authenticated") => return AppError::Unauthenticated,
        _ => {}
    }
    match status.code {
        401 => AppError::Unauthenticated,
        403 => AppError::Forbidden,
        404 => AppError::NotFound,
        413 => AppError::TooLarge,
        415 => AppError::UnsupportedMediaType,
        400 | 422 => AppError::Invalid {
            field: None,
            message: "the request body is malformed or incomplete".into(),
        },
        429 => AppError::TooManyAttempts,
        503 => AppError::Unavailable,
        _ => AppError::internal(format!("unhandled status {status}")),
    }
}
