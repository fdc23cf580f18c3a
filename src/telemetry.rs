//! Logging and per-request tracing. Every request gets a random request id, echoed in
//! `X-Request-Id` and carried by a span around its log lines. What is logged is chosen
//! field by field: method, path (never the query string), status and duration; never
//! bodies, cookies, headers, tokens or passwords.

use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::request::{FromRequest, Outcome};
use rocket::{Data, Request, Response};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Returns false if one was already installed (tests).
pub fn init<W>(format: LogFormat, filter: &str, writer: W) -> bool
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init().is_ok(),
        LogFormat::Human => builder.with_ansi(false).try_init().is_ok(),
    }
}

/// Per-request facts kept in Rocket's request-local cache.
struct RequestState {
    id: String,
    started: Instant,
    span: tracing::Span,
}

fn state<'r>(req: &'r Request<'_>) -> &'r RequestState {
    req.local_cache(|| {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let span = tracing::info_span!("request", request_id = %id);
        RequestState {
            id,
            started: Instant::now(),
            span,
        }
    })
}

/// The request id of the current request.
pub fn request_id(req: &Request<'_>) -> String {
    state(req).id.clone()
}

/// Facts about the caller that the audit trail and throttling need.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub request_id: String,
    pub client_addr: Option<String>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for RequestMeta {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(meta(req))
    }
}

pub fn meta(req: &Request<'_>) -> RequestMeta {
    RequestMeta {
        request_id: request_id(req),
        client_addr: req.client_ip().map(|ip| ip.to_string()),
    }
}

/// Request ids, request logging and the security headers every response carries.
pub struct RequestTelemetry;

#[rocket::async_trait]
impl Fairing for RequestTelemetry {
    fn info(&self) -> Info {
        Info {
            name: "request telemetry and security headers",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let st = state(req);
        let _enter = st.span.enter();
        tracing::debug!(method = %req.method(), path = %req.uri().path(), "request started");
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let st = state(req);
        {
            let _enter = st.span.enter();
            tracing::info!(
                target: "http",
                method = %req.method(),
                path = %req.uri().path(),
                status = res.status().code,
                elapsed_ms = st.started.elapsed().as_millis() as u64,
                "request"
            );
        }
        res.set_header(Header::new("X-Request-Id", st.id.clone()));
        res.set_header(Header::new("X-Content-Type-Options", "nosniff"));
        res.set_header(Header::new("X-Frame-Options", "DENY"));
        res.set_header(Header::new("Referrer-Policy", "no-referrer"));
        if !res.headers().contains("Content-Security-Policy") {
            res.set_header(Header::new(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ));
        }
        if !res.headers().contains("Cache-Control") {
            res.set_header(Header::new("Cache-Control", "no-store"));
        }
    }
}
