//! The view-only viewer: a record's files shown page by page under an active view grant.
//! `render` turns a file's decrypted stream into page images.
//!
//! Guarantees: the original bytes never leave. Pages are rendered on the server
//! ([`render`]: PDFs through poppler fed by a pipe, images decoded and re-encoded),
//! and only those images are sent. Every call re-checks the grant through the access policy
//! (`file.view` with the grant's state as of now), so a page URL stops answering the moment
//! the grant expires or is revoked. Opening a file and every page read are audited with
//! the grant id, before anything is returned.

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

pub mod render;

use self::render::{RenderError, Renderable};
use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{Permit, ViewWithGrant};
use crate::records::files;
use crate::records::model::{FileId, FileInfo};
use crate::requests::{use_grant, HeldGrant, Kind};
use crate::App;

/// The largest file the viewer renders (the renderers hold a document in memory).
pub const MAX_VIEW_BYTES: u64 = 256 * 1024 * 1024;

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

async fn check(app: &App, who: &Principal, grant_id: Uuid, file: FileId) -> AppResult<Checked> {
    let (permit, grant, record, _) =
        use_grant::<ViewWithGrant>(app, who, grant_id, Kind::View).await?;
    let file = files::find(app, &permit, file).await?;
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

/// Opens file `file` under view grant `grant_id`: counts its pages (or says why it cannot
/// be shown) and audits the opening.
pub async fn open(app: &App, who: &Principal, grant_id: Uuid, file: FileId) -> AppResult<Opened> {
    let c = check(app, who, grant_id, file).await?;
    let pages = match render::renderable(&c.file.media_type) {
        None => Err(format!(
            "files of type {} cannot be shown in the viewer",
            c.file.media_type
        )),
        Some(kind) => {
            let content = files::open_content(app, &c._permit, &who.actor(), file).await?;
            match render::page_count(kind, content, MAX_VIEW_BYTES).await {
                Ok(n) => Ok(n),
                Err(RenderError::Busy) => return Err(AppError::Unavailable),
                Err(RenderError::Input(_)) => {
                    return Err(AppError::internal("file integrity check failed"))
                }
                Err(e) => Err(e.to_string()),
            }
        }
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
        others,
    })
}

/// Page `page` (1-based) of file `file` as a PNG, under view grant `grant_id`, at `zoom`
/// percent. Audited (grant, file, page, zoom) before it is returned.
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
    let content = files::open_content(app, &c._permit, &who.actor(), file).await?;
    let png = render::render_page(kind, content, page, zoom, MAX_VIEW_BYTES)
        .await
        .map_err(user_error)?;
    app.db
        .record(
            &who.actor(),
            Event::new("file.view.page", Outcome::Success)
                .object("file", file)
                .detail(json!({
                    "grant": grant_id, "record": c.grant.record_id, "page": page, "zoom": zoom,
                })),
        )
        .await?;
    Ok(png)
}
