//! HTTP pieces the HTML (`web`) and JSON (`api`) handlers share, so neither imports the
//! other: ids from paths, the session cookie, and the streamed zip of an export.

use rocket::http::{ContentType, Cookie, SameSite};
use rocket::response::{self, Responder, Response};
use rocket::Request;

use crate::auth::{SignedIn, SESSION_COOKIE};
use crate::error::{AppError, AppResult};
use crate::requests::exports;
use crate::App;

/// An id from a path: one that is not even a UUID names nothing.
pub(crate) fn id(s: &str) -> AppResult<uuid::Uuid> {
    s.parse().map_err(|_| AppError::NotFound)
}

/// The session cookie for a sign-in: `HttpOnly`, `SameSite=Strict`, `Secure` when the
/// vault is reached over https.
pub fn session_cookie(app: &App, s: &SignedIn) -> Cookie<'static> {
    let expires = rocket::time::OffsetDateTime::from_unix_timestamp(s.expires_at.timestamp())
        .unwrap_or_else(|_| rocket::time::OffsetDateTime::now_utc());
    Cookie::build((
        SESSION_COOKIE,
        secrecy::ExposeSecret::expose_secret(&s.token).to_string(),
    ))
    .http_only(true)
    .same_site(SameSite::Strict)
    .secure(app.config.secure_cookies())
    .path("/")
    .expires(expires)
    .build()
}

/// The zip, streamed. An error while streaming cuts the connection, so a failed download
/// never ends as a valid-looking, truncated zip.
pub struct ZipDownload(pub(crate) exports::Download);

impl<'r> Responder<'r, 'static> for ZipDownload {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(ContentType::ZIP)
            .raw_header(
                "Content-Disposition",
                format!("attachment; filename=\"{}\"", self.0.file_name),
            )
            .raw_header("Cache-Control", "no-store")
            .streamed_body(tokio_util::io::StreamReader::new(self.0.body))
            .ok()
    }
}

/// A table for a spreadsheet (`crate::sheet`), as a dated attachment, never cached.
pub struct SheetDownload {
    bytes: Vec<u8>,
    media_type: &'static str,
    file_name: String,
}

impl SheetDownload {
    /// `stem` is the file name without date and extension (ASCII: it goes into a header).
    pub fn csv(sheet: &crate::sheet::Sheet, stem: &str) -> SheetDownload {
        SheetDownload {
            bytes: sheet.to_csv(),
            media_type: crate::sheet::CSV_MEDIA_TYPE,
            file_name: Self::name(stem, "csv"),
        }
    }

    pub fn xlsx(sheet: &crate::sheet::Sheet, stem: &str) -> AppResult<SheetDownload> {
        Ok(SheetDownload {
            bytes: sheet.to_xlsx()?,
            media_type: crate::sheet::XLSX_MEDIA_TYPE,
            file_name: Self::name(stem, "xlsx"),
        })
    }

    /// A workbook or table already written (e.g. several worksheets).
    pub fn bytes(bytes: Vec<u8>, media_type: &'static str, stem: &str, ext: &str) -> SheetDownload {
        SheetDownload {
            bytes,
            media_type,
            file_name: Self::name(stem, ext),
        }
    }

    fn name(stem: &str, ext: &str) -> String {
        let stem: String = stem
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        format!("{stem}-{}.{ext}", chrono::Utc::now().format("%Y-%m-%d"))
    }
}

impl<'r> Responder<'r, 'static> for SheetDownload {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let media = ContentType::parse_flexible(self.media_type).unwrap_or(ContentType::Binary);
        Response::build()
            .header(media)
            .raw_header(
                "Content-Disposition",
                format!("attachment; filename=\"{}\"", self.file_name),
            )
            .raw_header("Cache-Control", "no-store")
            .sized_body(self.bytes.len(), std::io::Cursor::new(self.bytes))
            .ok()
    }
}
