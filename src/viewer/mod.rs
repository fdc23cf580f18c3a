//! The view-only viewer: a record's files shown page by page under an active view grant.
//! `render` turns a file's decrypted stream into page images.
//!
//! Guarantees: the original bytes never leave. Pages are rendered on the server
//! ([`render`]: PDFs through poppler fed by a pipe, images decoded and re-encoded),
//! and only those images are sent. Every call re-checks the grant through the access policy
//! (`file.view` with the grant's state as of now), so a page URL stops answering the moment
//! the grant expires or is revoked. Opening a file and every page read are audited with
//! the grant id, before anything is returned.
//!
//! Bounded whatever the file states: a viewer page lists at most [`PAGES_PER_VIEW`] page
//! images with links to the neighbouring windows, so its size does not grow with the page
//! count, and the count itself is checked against the file ([`render::checked_pages`]);
//! a window or page past it is 404.
//!
//! Paging does not re-decrypt the file for every page: [`cache`] keeps a file's decrypted
//! content and its rendered pages in memory, bound to the grant they were made under, for
//! a few minutes at most and never past the grant. The grant is checked before the cache
//! is consulted, on every request, and every page served (from the cache or not) is
//! audited as before. The pages after the one asked for are rendered ahead.

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

pub mod cache;
pub mod ended;
pub mod render;

use self::cache::Plain;
use self::render::{RenderError, Renderable};
use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::grants::{HeldGrant, Kind};
use crate::policy::{Permit, ViewWithGrant};
use crate::records::files;
use crate::records::model::{FileId, FileInfo};
use crate::records::under_grant;
use crate::App;

/// The largest file the viewer renders (the renderers hold a document in memory).
pub const MAX_VIEW_BYTES: u64 = 256 * 1024 * 1024;

/// The most page images one viewer page shows; the others are a link away.
pub const PAGES_PER_VIEW: u32 = 20;

/// The pages one viewer page shows: `first..=last` of `total`, and where the neighbouring
/// windows start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageWindow {
    pub total: u32,
    pub first: u32,
    pub last: u32,
    pub previous: Option<u32>,
    pub next: Option<u32>,
    /// Where the last window starts.
    pub final_window: u32,
    /// `first..=last`, at most [`PAGES_PER_VIEW`] of them.
    pub pages: Vec<u32>,
}

impl PageWindow {
    /// The window of a `total`-page document that holds page `at` (1 if none is given),
    /// or `None` when there is no such page.
    pub fn containing(total: u32, at: Option<u32>) -> Option<PageWindow> {
        let at = at.unwrap_or(1);
        if at == 0 || at > total {
            return None;
        }
        let start = |page: u32| (page - 1) / PAGES_PER_VIEW * PAGES_PER_VIEW + 1;
        let first = start(at);
        let last = total.min(first.saturating_add(PAGES_PER_VIEW - 1));
        Some(PageWindow {
            total,
            first,
            last,
            previous: first.checked_sub(PAGES_PER_VIEW),
            next: (last < total).then(|| last + 1),
            final_window: start(total),
            pages: (first..=last).collect(),
        })
    }
}

/// A file opened in the viewer.
#[derive(Debug, Clone, Serialize)]
pub struct Opened {
    pub grant_id: Uuid,
    pub valid_until: chrono::DateTime<chrono::Utc>,
    pub reference: String,
    pub title: String,
    pub file_id: FileId,
    pub file_name: String,
    pub version: i32,
    /// The number of pages, or why the file cannot be shown.
    pub pages: Result<u32, String>,
    /// The pages this viewer page shows, when the file can be shown.
    pub window: Option<PageWindow>,
    /// Other files of the record, to switch between them.
    pub others: Vec<(FileId, String)>,
}

struct Checked {
    _permit: Permit<ViewWithGrant>,
    grant: HeldGrant,
    reference: String,
    title: String,
    file: FileInfo,
}

/// [`check_now`], and when the request is refused (the grant revoked, expired, of someone
/// else, or the file gone), whatever the cache holds for the grant is dropped.
async fn check(app: &App, who: &Principal, grant_id: Uuid, file: FileId) -> AppResult<Checked> {
    let checked = check_now(app, who, grant_id, file).await;
    if checked.is_err() {
        app.viewer_cache.forget_grant(grant_id);
    }
    checked
}

async fn check_now(app: &App, who: &Principal, grant_id: Uuid, file: FileId) -> AppResult<Checked> {
    let (permit, grant, record, _) =
        under_grant::<ViewWithGrant>(app, who, grant_id, Kind::View).await?;
    let file = match files::find(app, &permit, file).await {
        Ok(f) => f,
        Err(AppError::NotFound) => {
            // Not a file of the grant's record (or no file at all): refused, and audited.
            app.db
                .record(
                    &who.actor(),
                    Event::new("file.view", Outcome::Denied)
                        .object("file", file)
                        .detail(json!({"grant": grant_id, "reason": "not a file of the grant's record"})),
                )
                .await?;
            return Err(AppError::NotFound);
        }
        Err(e) => return Err(e),
    };
    Ok(Checked {
        _permit: permit,
        grant,
        reference: record.reference,
        title: record.title,
        file,
    })
}

fn user_error(e: RenderError) -> AppError {
    match e {
        RenderError::PageOutOfRange { .. } => AppError::NotFound,
        RenderError::Busy => AppError::Unavailable,
        other => AppError::Invalid {
            field: None,
            message: other.to_string(),
        },
    }
}

/// Opens file `file` under view grant `grant_id` at the window holding page `at` (the
/// first if `None`): counts its pages (or says why it cannot be shown) and audits the
/// opening. A page past the count is [`AppError::NotFound`].
#[tracing::instrument(skip_all)]
pub async fn open(
    app: &App,
    who: &Principal,
    grant_id: Uuid,
    file: FileId,
    at: Option<u32>,
) -> AppResult<Opened> {
    let c = check(app, who, grant_id, file).await?;
    let pages = match render::renderable(&c.file.media_type) {
        None => Err(format!(
            "files of type {} cannot be shown in the viewer",
            c.file.media_type
        )),
        Some(kind) => match count_pages(app, who, &c, kind).await? {
            Ok(n) => Ok(n),
            Err(RenderError::Busy) => return Err(AppError::Unavailable),
            Err(RenderError::Input(_)) => {
                return Err(AppError::internal("file integrity check failed"))
            }
            Err(e) => Err(e.to_string()),
        },
    };
    let window = match &pages {
        Ok(n) => Some(PageWindow::containing(*n, at).ok_or(AppError::NotFound)?),
        Err(_) => None,
    };
    let others: Vec<(FileId, String)> = files::list_unchecked(app, &c._permit)
        .await?
        .into_iter()
        .map(|f| (f.id, f.original_name))
        .collect();
    app.db
        .record(
            &who.actor(),
            Event::new("file.view.open", Outcome::Success)
                .object("file", file)
                .detail(json!({
                    "grant": grant_id, "record": c.grant.record_id, "reference": c.reference,
                    "pages": pages.as_ref().ok(), "renderable": pages.is_ok(),
                    "shown": window.as_ref().map(|w| [w.first, w.last]),
                })),
        )
        .await?;
    Ok(Opened {
        grant_id,
        valid_until: c.grant.valid_until,
        reference: c.reference,
        title: c.title,
        file_id: file,
        file_name: c.file.original_name,
        version: c.file.version,
        pages,
        window,
        others,
    })
}

/// Page `page` (1-based) of file `file` as a PNG, under view grant `grant_id`, at `zoom`
/// percent. Audited (grant, file, page, zoom) before it is returned.
#[tracing::instrument(skip_all)]
pub async fn page(
    app: &App,
    who: &Principal,
    grant_id: Uuid,
    file: FileId,
    page: u32,
    zoom: Option<u32>,
) -> AppResult<Vec<u8>> {
    let c = check(app, who, grant_id, file).await?;
    let kind: Renderable =
        render::renderable(&c.file.media_type).ok_or_else(|| AppError::Invalid {
            field: None,
            message: format!(
                "files of type {} cannot be shown in the viewer",
                c.file.media_type
            ),
        })?;
    let zoom = render::zoom(zoom);
    let cache = &app.viewer_cache;
    let (png, cached) = match cache.page(grant_id, file, page, zoom) {
        Some(png) => (png, true),
        None => render_page(app, who, &c, kind, page, zoom).await?,
    };
    if let Some((content, pages)) = cache.content(grant_id, file) {
        let at = (page, pages, zoom);
        cache.look_ahead(grant_id, file, c.grant.valid_until, kind, content, at);
    }
    app.db
        .record(
            &who.actor(),
            Event::new("file.view.page", Outcome::Success)
                .object("file", file)
                .detail(json!({
                    "grant": grant_id, "record": c.grant.record_id, "page": page, "zoom": zoom,
                    "cached": cached,
                })),
        )
        .await?;
    Ok(png.to_vec())
}

/// Renders page `page` at `zoom` into the cache (unless a request that got there first
/// already has): one render per page however many ask at once. Returns the page and
/// whether it came from the cache after all.
async fn render_page(
    app: &App,
    who: &Principal,
    c: &Checked,
    kind: Renderable,
    page: u32,
    zoom: u32,
) -> AppResult<(Plain, bool)> {
    let cache = &app.viewer_cache;
    let (grant, file) = (c.grant.id, c.file.id);
    let _rendering = cache
        .lock_page(grant, file, page, zoom)
        .await
        .ok_or(AppError::Unavailable)?;
    if let Some(png) = cache.page(grant, file, page, zoom) {
        return Ok((png, true));
    }
    let png = match content(app, who, c).await? {
        Some(content) => {
            let content = content.map_err(user_error)?;
            render::render_page(kind, cache::feed(&content), page, zoom, MAX_VIEW_BYTES).await
        }
        None => {
            // Too large to keep: streamed from the store, as every time.
            cache.count_decrypt();
            let stream = files::open_content(app, &c._permit, &who.actor(), file).await?;
            render::render_page(kind, stream, page, zoom, MAX_VIEW_BYTES).await
        }
    }
    .map_err(user_error)?;
    cache.count_render();
    Ok((
        cache.put_page(grant, file, (page, zoom), c.grant.valid_until, png),
        false,
    ))
}

/// The number of pages of the checked file, counted once per grant and file.
async fn count_pages(
    app: &App,
    who: &Principal,
    c: &Checked,
    kind: Renderable,
) -> AppResult<Result<u32, RenderError>> {
    let cache = &app.viewer_cache;
    let (grant, file) = (c.grant.id, c.file.id);
    if let Some((_, Some(pages))) = cache.content(grant, file) {
        return Ok(Ok(pages));
    }
    let counted = match content(app, who, c).await? {
        Some(Ok(content)) => render::page_count(kind, cache::feed(&content), MAX_VIEW_BYTES).await,
        Some(Err(e)) => Err(e),
        None => {
            cache.count_decrypt();
            let stream = files::open_content(app, &c._permit, &who.actor(), file).await?;
            render::page_count(kind, stream, MAX_VIEW_BYTES).await
        }
    };
    if let Ok(n) = counted {
        cache.set_pages(grant, file, n);
    }
    Ok(counted)
}

/// The checked file's decrypted content, from the cache or decrypted once into it (one
/// load however many ask at once); `None` when it is too large to keep (the caller streams
/// it instead), and the reason when it cannot be read.
async fn content(
    app: &App,
    who: &Principal,
    c: &Checked,
) -> AppResult<Option<Result<Plain, RenderError>>> {
    let cache = &app.viewer_cache;
    let (grant, file) = (c.grant.id, c.file.id);
    let size = u64::try_from(c.file.size).unwrap_or(u64::MAX);
    if size > cache.max_entry() as u64 {
        return Ok(None);
    }
    if let Some((content, _)) = cache.content(grant, file) {
        return Ok(Some(Ok(content)));
    }
    let _loading = cache
        .lock_content(grant, file)
        .await
        .ok_or(AppError::Unavailable)?;
    if let Some((content, _)) = cache.content(grant, file) {
        return Ok(Some(Ok(content)));
    }
    let stream = files::open_content(app, &c._permit, &who.actor(), file).await?;
    cache.count_decrypt();
    let content = match render::collect_plain(stream, size, MAX_VIEW_BYTES).await {
        Ok(content) => std::sync::Arc::new(content),
        Err(e) => return Ok(Some(Err(e))),
    };
    cache.put_content(grant, file, c.grant.valid_until, content.clone(), None);
    Ok(Some(Ok(content)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_hold_at_most_pages_per_view() {
        let w = PageWindow::containing(45, None).unwrap();
        assert_eq!(
            (w.first, w.last, w.previous, w.next),
            (1, 20, None, Some(21))
        );
        assert_eq!(w.pages, (1..=20).collect::<Vec<_>>());
        assert_eq!(w.final_window, 41);
        let w = PageWindow::containing(45, Some(27)).unwrap();
        assert_eq!(
            (w.first, w.last, w.previous, w.next),
            (21, 40, Some(1), Some(41))
        );
        let w = PageWindow::containing(45, Some(45)).unwrap();
        assert_eq!(
            (w.first, w.last, w.previous, w.next),
            (41, 45, Some(21), None)
        );
        assert_eq!(w.pages.len(), 5);
        let w = PageWindow::containing(1, None).unwrap();
        assert_eq!((w.first, w.last, w.previous, w.next), (1, 1, None, None));
        let w = PageWindow::containing(u32::MAX, Some(u32::MAX)).unwrap();
        assert_eq!(w.pages.len() as u32, u32::MAX % PAGES_PER_VIEW);
        for (total, at) in [(45, 0), (45, 46), (0, 1), (3, u32::MAX)] {
            assert_eq!(
                PageWindow::containing(total, Some(at)),
                None,
                "{total} {at}"
            );
        }
    }
}
