//! The viewer's pages: `GET /view/{grant}/files/{file}?p=N` (the document, a window of
//! at most [`viewer::PAGES_PER_VIEW`] pages around page N) and the grant-bound page images
//! it shows. Both answer uncached and under a strict Content-Security-Policy; images answer
//! `inline`. A busy renderer answers 503 with `Retry-After`. There is no route that sends
//! the original file.
//!
//! The page fits the pages to the width by default; `viewer.js` (same origin, the only
//! script the page may run) zooms without reloading, asking the page route for a sharper
//! rendering only when the shown width needs one, and moves between pages. Without the
//! script the page is a plain list of images with links and forms that do the same.
//!
//! Once the grant has ended (revoked, expired), the viewer page and every page image answer
//! 403 with `X-Grant-State` and say why: who revoked it and when, or when it expired, and
//! where to ask again (an HTML page for the viewer, JSON for a page image).

use std::io::Cursor;

use minijinja::context;
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, content::RawHtml, Responder, Response};
use rocket::Either;
use rocket::{get, routes, Request, Route, State};
use uuid::Uuid;

use super::me;
use crate::auth::Principal;
use crate::error::AppError;
use crate::records::model::FileId;
use crate::viewer;
use crate::viewer::ended::{self, Explained};
use crate::viewer::render::{RETRY_AFTER_SECS, ZOOM_LEVELS};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![view_page, page_image, viewer_js, viewer_css]
}

/// The viewer page's policy: images from this site only, the site's style sheet, no
/// scripts, no frames, no plugins (so no browser PDF viewer either).
pub const VIEWER_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The viewer page's own policy: [`VIEWER_CSP`] and the site's scripts (`viewer.js`), no
/// inline script.
pub const VIEWER_PAGE_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'self'; \
     script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The header that says why a grant no longer opens its file (`revoked`, `expired`…).
pub const GRANT_STATE_HEADER: &str = "X-Grant-State";

const VIEWER_JS: &str = include_str!("../../templates/static/viewer.js");
const VIEWER_CSS: &str = include_str!("../../templates/static/viewer.css");

/// A page image's policy: nothing may run in or be loaded by it.
pub const IMAGE_CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// A response the browser must show, never store.
pub(super) struct Guarded<R> {
    inner: R,
    csp: &'static str,
    inline: bool,
}

impl<R> Guarded<R> {
    /// An ordinary page under the viewer's policy (no scripts) that must not be kept in any
    /// cache, whatever defaults change elsewhere: for pages that show a secret once.
    pub(super) fn page(inner: R) -> Guarded<R> {
        Guarded {
            inner,
            csp: VIEWER_CSP,
            inline: false,
        }
    }
}

impl<'r, 'o: 'r, R: Responder<'r, 'o>> Responder<'r, 'o> for Guarded<R> {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'o> {
        let mut res = Response::build_from(self.inner.respond_to(req)?)
            .raw_header("Cache-Control", "no-store")
            .raw_header("Pragma", "no-cache")
            .raw_header("X-Content-Type-Options", "nosniff")
            .raw_header("Content-Security-Policy", self.csp)
            .finalize();
        if self.inline {
            res.set_header(Header::new("Content-Disposition", "inline"));
        }
        Ok(res)
    }
}

/// An error from a viewer route, answered as [`AppError`] answers it; a 503 (all render
/// slots busy) also says when to try again, so clients back off instead of piling up.
pub(super) struct ViewerError(AppError);

impl From<AppError> for ViewerError {
    fn from(e: AppError) -> Self {
        ViewerError(e)
    }
}

impl<'r> Responder<'r, 'static> for ViewerError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let busy = self.0.status() == rocket::http::Status::ServiceUnavailable;
        let mut res = self.0.respond_to(req)?;
        if busy {
            res.set_raw_header("Retry-After", RETRY_AFTER_SECS.to_string());
        }
        Ok(res)
    }
}

type ViewerResult<T> = Result<T, ViewerError>;

/// A rendered page.
struct Png(Vec<u8>);

impl<'r> Responder<'r, 'static> for Png {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(ContentType::PNG)
            .sized_body(self.0.len(), Cursor::new(self.0))
            .ok()
    }
}

/// An answer for a grant that has ended: 403, `X-Grant-State`, and why.
struct GrantEnded<R> {
    inner: R,
    state: String,
}

impl<'r, 'o: 'r, R: Responder<'r, 'o>> Responder<'r, 'o> for GrantEnded<R> {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'o> {
        let mut res = Response::build_from(self.inner.respond_to(req)?)
            .status(Status::Forbidden)
            .finalize();
        res.set_raw_header(GRANT_STATE_HEADER, self.state);
        Ok(res)
    }
}

/// Why the caller's view grant `grant` refused them, when it is because it has ended;
/// `None` for any other refusal (which then answers as it did).
async fn ended_for(
    app: &App,
    who: &Principal,
    grant: Uuid,
    err: &AppError,
) -> Result<Option<Explained>, ViewerError> {
    if !matches!(err, AppError::Forbidden) {
        return Ok(None);
    }
    Ok(ended::find(app, who, grant)
        .await?
        .map(|e| e.explain(who.ui())))
}

/// The viewer page: the window of pages that holds page `p` (the first if none), fitted
/// to the width unless a `zoom` is given; a page past the count is 404. After the grant
/// has ended: the reason, with a 403.
#[get("/view/<grant>/files/<file>?<zoom>&<p>")]
async fn view_page(
    app: &State<App>,
    who: Principal,
    grant: &str,
    file: FileId,
    zoom: Option<u32>,
    p: Option<u32>,
) -> ViewerResult<Guarded<Either<RawHtml<String>, GrantEnded<RawHtml<String>>>>> {
    let grant = crate::http::id(grant)?;
    let opened = match viewer::open(app, &who, grant, file, p).await {
        Ok(opened) => opened,
        Err(e) => {
            let Some(ended) = ended_for(app, &who, grant, &e).await? else {
                return Err(e.into());
            };
            let html = app.templates.render(
                "viewer.html",
                context! { me => me(&who), csrf => who.csrf_token(), ended => ended.clone() },
            )?;
            return Ok(Guarded {
                inner: Either::Right(GrantEnded {
                    inner: html,
                    state: ended.state,
                }),
                csp: VIEWER_PAGE_CSP,
                inline: false,
            });
        }
    };
    // A zoom asked for is shown at its size; none: fitted to the width, from 100 %.
    let chosen = zoom.map(|z| crate::viewer::render::zoom(Some(z)));
    let rendered = crate::viewer::render::zoom(chosen);
    let problem = opened.pages.as_ref().err().cloned();
    let at = match (&opened.window, p) {
        (Some(w), Some(p)) if (w.first..=w.last).contains(&p) => p,
        (Some(w), _) => w.first,
        (None, _) => 1,
    };
    let zoom_in = ZOOM_LEVELS.iter().copied().find(|z| *z > rendered);
    let zoom_out = ZOOM_LEVELS.iter().rev().copied().find(|z| *z < rendered);
    let seconds_left = (opened.valid_until - chrono::Utc::now())
        .num_seconds()
        .max(0);
    let html = app.templates.render(
        "viewer.html",
        context! {
            me => me(&who), csrf => who.csrf_token(), w => opened.window.clone(), v => opened,
            problem => problem, zoom => rendered, chosen => chosen, zooms => ZOOM_LEVELS,
            at => at, seconds_left => seconds_left,
            zoom_in => zoom_in.unwrap_or(rendered), zoom_out => zoom_out.unwrap_or(rendered),
        },
    )?;
    Ok(Guarded {
        inner: Either::Left(html),
        csp: VIEWER_PAGE_CSP,
        inline: false,
    })
}

/// Page `page` as a PNG at `zoom` percent. After the grant has ended: 403 with
/// `X-Grant-State` and a JSON body that says why (`error.code` is `grant_ended`).
#[get("/view/<grant>/files/<file>/pages/<page>?<zoom>")]
async fn page_image(
    app: &State<App>,
    who: Principal,
    grant: &str,
    file: FileId,
    page: u32,
    zoom: Option<u32>,
) -> ViewerResult<Guarded<Either<Png, GrantEnded<(ContentType, String)>>>> {
    let grant = crate::http::id(grant)?;
    let png = match viewer::page(app, &who, grant, file, page, zoom).await {
        Ok(png) => png,
        Err(e) => {
            let Some(ended) = ended_for(app, &who, grant, &e).await? else {
                return Err(e.into());
            };
            let body = serde_json::json!({
                "error": {"code": "grant_ended", "message": ended.message},
                "grant": ended,
            });
            return Ok(Guarded {
                inner: Either::Right(GrantEnded {
                    inner: (ContentType::JSON, body.to_string()),
                    state: ended.state,
                }),
                csp: IMAGE_CSP,
                inline: false,
            });
        }
    };
    Ok(Guarded {
        inner: Either::Left(Png(png)),
        csp: IMAGE_CSP,
        inline: true,
    })
}

/// The viewer's script: zoom, paging, keys, the time left, and what to show once the
/// grant has ended.
#[get("/static/viewer.js")]
fn viewer_js() -> (ContentType, &'static str) {
    (ContentType::JavaScript, VIEWER_JS)
}

/// The viewer's style sheet, including its print rules (a note instead of the pages).
#[get("/static/viewer.css")]
fn viewer_css() -> (ContentType, &'static str) {
    (ContentType::CSS, VIEWER_CSS)
}
