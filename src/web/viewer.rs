//! The viewer's pages: `GET /view/{grant}/files/{file}?p=N` (the document, a window of
//! at most [`viewer::PAGES_PER_VIEW`] pages around page N) and the grant-bound page images
//! it shows. Both answer uncached and under a strict Content-Security-Policy; images answer
//! `inline`. A busy renderer answers 503 with `Retry-After`. There is no route that sends
//! the original file.

use std::io::Cursor;

use minijinja::context;
use rocket::http::{ContentType, Header};
use rocket::response::{self, content::RawHtml, Responder, Response};
use rocket::{get, routes, Request, Route, State};

use super::me;
use crate::auth::Principal;
use crate::error::AppError;
use crate::records::model::FileId;
use crate::viewer;
use crate::viewer::render::{RETRY_AFTER_SECS, ZOOM_LEVELS};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![view_page, page_image]
}

/// The viewer page's policy: images from this site only, the site's style sheet, no
/// scripts, no frames, no plugins (so no browser PDF viewer either).
pub const VIEWER_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

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

/// The viewer page: the window of pages that holds page `p` (the first if none), with
/// links to the other windows and a "go to page" form; a page past the count is 404.
#[get("/view/<grant>/files/<file>?<zoom>&<p>")]
async fn view_page(
    app: &State<App>,
    who: Principal,
    grant: &str,
    file: FileId,
    zoom: Option<u32>,
    p: Option<u32>,
) -> ViewerResult<Guarded<RawHtml<String>>> {
    let opened = viewer::open(app, &who, crate::http::id(grant)?, file, p).await?;
    let zoom = crate::viewer::render::zoom(zoom);
    let problem = opened.pages.as_ref().err().cloned();
    let html = app.templates.render(
        "viewer.html",
        context! {
            me => me(&who), csrf => who.csrf_token(), w => opened.window.clone(), v => opened,
            problem => problem, zoom => zoom, zooms => ZOOM_LEVELS,
        },
    )?;
    Ok(Guarded {
        inner: html,
        csp: VIEWER_CSP,
        inline: false,
    })
}

#[get("/view/<grant>/files/<file>/pages/<page>?<zoom>")]
async fn page_image(
    app: &State<App>,
    who: Principal,
    grant: &str,
    file: FileId,
    page: u32,
    zoom: Option<u32>,
) -> ViewerResult<Guarded<Png>> {
    let png = viewer::page(app, &who, crate::http::id(grant)?, file, page, zoom).await?;
    Ok(Guarded {
        inner: Png(png),
        csp: IMAGE_CSP,
        inline: true,
    })
}
