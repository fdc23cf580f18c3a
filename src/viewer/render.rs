//! Server-side rendering of stored files for the view-only document viewer: the original
//! bytes never reach the browser, only PNG images of single pages rendered here.
//!
//! Guarantees:
//! - **No plaintext on disk.** Decrypted content is only ever held in memory or written to
//!   the stdin pipe of a renderer process (`pdfinfo -`, `pdftoppm … -`; poppler keeps stdin
//!   in memory and writes nothing but the page to stdout). Images are decoded in memory.
//! - **Bounded input, output, time and concurrency.** Content larger than the caller's
//!   `max_bytes` is refused as "too large to show"; at most [`MAX_OUTPUT_BYTES`] of PNG are
//!   produced; a rendered page is at most [`MAX_SIDE_PX`] pixels on each side (a PDF page
//!   larger than that at the chosen zoom is cropped to its top-left part, so poppler's page
//!   bitmap stays bounded); image decoding is bounded by [`image::Limits`]; a render that
//!   takes longer than 60 s is killed; at most [`MAX_CONCURRENT`] renders run at once, and a
//!   request that cannot get a slot within 30 s gets [`RenderError::Busy`].
//! - **Metadata is stripped.** Every page is re-encoded as a fresh PNG from pixels only, so
//!   EXIF (GPS, camera, description…), XMP, comments, ICC profiles and PDF metadata, text,
//!   attachments and scripts are not part of the output. JPEG/TIFF orientation is applied to
//!   the pixels before the metadata is dropped.
//! - **No watermark.** The pages are the document as stored, nothing is added to them.
//! - **Nothing sensitive in errors or logs.** Error messages are generic and safe to show a
//!   user (no bytes, no paths, no renderer output); logs carry only the category of a
//!   renderer's error message, never content.

use std::fmt::Display;
use std::io::Cursor;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{join_all, try_join_all};
use futures_util::{Stream, StreamExt};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Kinds of content the viewer can render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renderable {
    /// A PDF, rendered page by page with poppler (`pdftoppm`).
    Pdf,
    /// A JPEG, PNG or TIFF image: one page.
    Image,
}

/// What the viewer can do with a file of this media type (parameters such as `; charset=`
/// and letter case are ignored), or `None` if it cannot be shown.
pub fn renderable(media_type: &str) -> Option<Renderable> {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/pdf" => Some(Renderable::Pdf),
        "image/jpeg" | "image/png" | "image/tiff" => Some(Renderable::Image),
        _ => None,
    }
}

/// The zoom levels the viewer offers, in percent; 100 is the base resolution (96 dpi for
/// PDF pages, at most 1600 px wide for images).
pub const ZOOM_LEVELS: &[u32] = &[50, 75, 100, 125, 150, 200, 300];

/// The zoom level used when none is requested.
pub const DEFAULT_ZOOM: u32 = 100;

/// The allowed zoom level nearest to `requested` (the lower one on a tie), or
/// [`DEFAULT_ZOOM`] when none is requested.
pub fn zoom(requested: Option<u32>) -> u32 {
    let Some(r) = requested else {
        return DEFAULT_ZOOM;
    };
    ZOOM_LEVELS
        .iter()
        .copied()
        .min_by_key(|z| z.abs_diff(r))
        .unwrap_or(DEFAULT_ZOOM)
}

/// Renders that may run at once (each is one or two poppler processes or one decode).
pub const MAX_CONCURRENT: usize = 2;
/// The most PNG bytes one page may produce.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;
/// The most pixels on either side of a rendered page.
pub const MAX_SIDE_PX: u32 = 8192;

/// PDF resolution at zoom 100.
const BASE_DPI: u32 = 96;
/// Images are fit to at most this width at zoom 100.
const BASE_IMAGE_WIDTH: u32 = 1600;
/// The longest one render (including reading the content) may take.
const RENDER_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a request waits for a render slot before it gets `Busy`.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a renderer's stderr is kept (for choosing the user message); never returned.
const MAX_STDERR_BYTES: usize = 4096;
/// Bounds for image decoding.
const MAX_IMAGE_SIDE: u32 = 20_000;
const MAX_IMAGE_ALLOC: u64 = 512 * 1024 * 1024;

static SLOTS: Semaphore = Semaphore::const_new(MAX_CONCURRENT);

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const PDF_FAILED: &str = "this PDF could not be rendered (it may be damaged)";
const PDF_PASSWORD: &str = "this PDF is protected by a password and cannot be shown";
const IMAGE_FAILED: &str = "this image could not be shown (it may be damaged)";
const TOO_LARGE: &str = "this document is too large to show";
const TOO_SLOW: &str = "this document took too long to render";
const NO_POPPLER: &str = "the PDF renderer (poppler-utils) is not installed on the server";

/// Why a page could not be rendered. Every message is safe to show a user: it contains no
/// document bytes, no paths and no renderer output.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The document could not be rendered (damaged, password-protected, too large, too slow
    /// or no renderer installed); the message says which, in user terms.
    #[error("{0}")]
    Unreadable(String),
    /// The requested page does not exist.
    #[error("page {page} does not exist: the document has {pages} page(s)")]
    PageOutOfRange { page: u32, pages: u32 },
    /// All render slots stayed busy for too long; try again later.
    #[error("the viewer is busy; try again in a moment")]
    Busy,
    /// The content stream itself failed (e.g. an integrity check while decrypting); the
    /// message is the stream error's `Display`.
    #[error("the document could not be read: {0}")]
    Input(String),
}

fn unreadable(message: &str) -> RenderError {
    RenderError::Unreadable(message.to_string())
}

/// Number of pages. A PDF is fed to `pdfinfo -` and its `Pages:` line is read; an image has
/// its header decoded (to check that it is an image this viewer can show) and has 1 page.
/// Only the first page of a multi-page TIFF can be shown (the `image` crate decodes only
/// that one), so a TIFF always counts as 1 page.
pub async fn page_count<S, E>(
    kind: Renderable,
    content: S,
    max_bytes: u64,
) -> Result<u32, RenderError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: Display + Send,
{
    match kind {
        Renderable::Pdf => {
            let _slot = slot().await?;
            let done = run_poppler(vec![pdfinfo()], content, max_bytes).await?;
            pages_of(&done[0])
        }
        Renderable::Image => {
            let buf = collect(content, max_bytes).await?;
            let slot = slot().await?;
            blocking(move || {
                let _slot = slot;
                image_header(&buf).map(|_| 1)
            })
            .await
        }
    }
}

/// Page `page` (1-based) as PNG bytes, at `zoom` percent (snapped to [`ZOOM_LEVELS`]).
///
/// A PDF page is rendered by `pdftoppm` (crop box, annotations shown) at 96 × zoom / 100
/// dpi, i.e. 48 to 288 dpi; `pdfinfo` runs alongside on the same stream to tell a missing
/// page from a damaged file. An image (page 1 only; for a TIFF, its first page) is
/// oriented, scaled to fit 1600 px wide at zoom 100 (never larger than the original size
/// times zoom / 100) and re-encoded as PNG.
pub async fn render_page<S, E>(
    kind: Renderable,
    content: S,
    page: u32,
    zoom_percent: u32,
    max_bytes: u64,
) -> Result<Vec<u8>, RenderError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: Display + Send,
{
    let zoom_percent = zoom(Some(zoom_percent));
    match kind {
        Renderable::Pdf => {
            let _slot = slot().await?;
            if page == 0 {
                // pdftoppm treats page 0 as page 1; only count the pages.
                let done = run_poppler(vec![pdfinfo()], content, max_bytes).await?;
                let pages = pages_of(&done[0])?;
                return Err(RenderError::PageOutOfRange { page, pages });
            }
            let mut done = run_poppler(
                vec![pdfinfo(), pdftoppm(page, zoom_percent)],
                content,
                max_bytes,
            )
            .await?;
            let pages = pages_of(&done[0])?;
            if page > pages {
                return Err(RenderError::PageOutOfRange { page, pages });
            }
            let Some(rendered) = done.pop() else {
                return Err(unreadable(PDF_FAILED));
            };
            match rendered.captured {
                Captured::Bytes(png) if rendered.success && png.starts_with(PNG_SIGNATURE) => {
                    Ok(png)
                }
                _ => {
                    log_failure(&rendered);
                    Err(unreadable(pdf_message(&rendered.stderr)))
                }
            }
        }
        Renderable::Image => {
            let buf = collect(content, max_bytes).await?;
            let slot = slot().await?;
            blocking(move || {
                let _slot = slot;
                if page != 1 {
                    image_header(&buf)?;
                    return Err(RenderError::PageOutOfRange { page, pages: 1 });
                }
                render_image(&buf, zoom_percent)
            })
            .await
        }
    }
}

/// Waits (bounded) for one of the render slots.
async fn slot() -> Result<SemaphorePermit<'static>, RenderError> {
    match tokio::time::timeout(QUEUE_TIMEOUT, SLOTS.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_closed)) => Err(RenderError::Busy),
        Err(_elapsed) => {
            tracing::debug!("render: no render slot became free in time");
            Err(RenderError::Busy)
        }
    }
}

/// Reads the whole content into memory, refusing more than `max_bytes`.
async fn collect<S, E>(mut content: S, max_bytes: u64) -> Result<Vec<u8>, RenderError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    let mut buf = Vec::new();
    let read = async {
        while let Some(item) = content.next().await {
            let chunk = item.map_err(input_error)?;
            if (buf.len() as u64).saturating_add(chunk.len() as u64) > max_bytes {
                return Err(unreadable(TOO_LARGE));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(RENDER_TIMEOUT, read).await {
        Ok(r) => r?,
        Err(_elapsed) => return Err(unreadable(TOO_SLOW)),
    }
    Ok(buf)
}

fn input_error<E: Display>(e: E) -> RenderError {
    tracing::debug!("render: the content stream failed");
    RenderError::Input(e.to_string())
}

/// Runs an image job on the blocking pool, bounded by the render timeout. On timeout the
/// job runs on (it cannot be interrupted) but keeps its render slot until it ends.
async fn blocking<T, F>(job: F) -> Result<T, RenderError>
where
    F: FnOnce() -> Result<T, RenderError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::time::timeout(RENDER_TIMEOUT, tokio::task::spawn_blocking(job)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(panic = e.is_panic(), "render: image job failed");
            Err(unreadable(IMAGE_FAILED))
        }
        Err(_elapsed) => {
            tracing::warn!("render: image job took too long");
            Err(unreadable(TOO_SLOW))
        }
    }
}

// ----- images -----

fn image_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    limits
}

fn image_error(e: image::ImageError) -> RenderError {
    match e {
        image::ImageError::Limits(_) => {
            tracing::debug!("render: image exceeds the decoding limits");
            unreadable(TOO_LARGE)
        }
        other => {
            // The image crate's messages describe structure, not pixels, but keep only the kind.
            let kind = match other {
                image::ImageError::Decoding(_) => "decoding",
                image::ImageError::Unsupported(_) => "unsupported",
                image::ImageError::Parameter(_) => "parameter",
                image::ImageError::IoError(_) => "io",
                image::ImageError::Encoding(_) => "encoding",
                image::ImageError::Limits(_) => "limits",
            };
            tracing::debug!(kind, "render: image could not be decoded");
            unreadable(IMAGE_FAILED)
        }
    }
}

/// A reader for `buf` with limits set, if it is a JPEG, PNG or TIFF.
fn image_reader(buf: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, RenderError> {
    let mut reader = ImageReader::new(Cursor::new(buf))
        .with_guessed_format()
        .map_err(|_| unreadable(IMAGE_FAILED))?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Tiff) => {}
        _ => {
            tracing::debug!("render: not a JPEG, PNG or TIFF image");
            return Err(unreadable(IMAGE_FAILED));
        }
    }
    reader.limits(image_limits());
    Ok(reader)
}

/// Decodes only the header; returns the stored dimensions.
fn image_header(buf: &[u8]) -> Result<(u32, u32), RenderError> {
    image_reader(buf)?.into_dimensions().map_err(image_error)
}

/// The size a `width` × `height` image is shown at, at `zoom_percent`.
fn image_target(width: u32, height: u32, zoom_percent: u32) -> (u32, u32) {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let base = (f64::from(BASE_IMAGE_WIDTH) / w).min(1.0);
    let mut scale = base * f64::from(zoom_percent) / 100.0;
    let longest = w.max(h) * scale;
    if longest > f64::from(MAX_SIDE_PX) {
        scale *= f64::from(MAX_SIDE_PX) / longest;
    }
    let side = |v: f64| ((v * scale).round() as u32).clamp(1, MAX_SIDE_PX);
    (side(w), side(h))
}

fn render_image(buf: &[u8], zoom_percent: u32) -> Result<Vec<u8>, RenderError> {
    let mut decoder = image_reader(buf)?.into_decoder().map_err(image_error)?;
    // `ImageReader::decode` makes this check too; `into_decoder` alone does not.
    image_limits()
        .reserve(decoder.total_bytes())
        .map_err(image_error)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    img.apply_orientation(orientation);

    let (w, h) = image_target(img.width(), img.height(), zoom_percent);
    if (w, h) != (img.width(), img.height()) {
        img = img.resize_exact(w, h, image::imageops::FilterType::Triangle);
    }
    // PNG takes 8- and 16-bit samples; float TIFFs are converted.
    let img = match img.color() {
        image::ColorType::L8
        | image::ColorType::La8
        | image::ColorType::Rgb8
        | image::ColorType::Rgba8
        | image::ColorType::L16
        | image::ColorType::La16
        | image::ColorType::Rgb16
        | image::ColorType::Rgba16 => img,
        c if c.has_alpha() => DynamicImage::ImageRgba8(img.to_rgba8()),
        _ => DynamicImage::ImageRgb8(img.to_rgb8()),
    };
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .map_err(image_error)?;
    let out = out.into_inner();
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(unreadable(TOO_LARGE));
    }
    Ok(out)
}

// ----- PDF (poppler) -----

/// How a renderer's stdout is read.
enum Capture {
    /// All of it, up to [`MAX_OUTPUT_BYTES`].
    Bytes,
    /// Only the number on the last `Pages:` line (pdfinfo); the rest, which includes the
    /// document's metadata, is discarded as it is read.
    PagesLine,
}

enum Captured {
    Bytes(Vec<u8>),
    Pages(Option<u32>),
}

struct Job {
    program: &'static str,
    args: Vec<String>,
    capture: Capture,
}

struct Finished {
    program: &'static str,
    success: bool,
    code: Option<i32>,
    captured: Captured,
    /// At most [`MAX_STDERR_BYTES`]; never shown to users or logged verbatim.
    stderr: Vec<u8>,
}

fn pdfinfo() -> Job {
    Job {
        program: "pdfinfo",
        args: vec!["-".into()],
        capture: Capture::PagesLine,
    }
}

fn pdftoppm(page: u32, zoom_percent: u32) -> Job {
    let dpi = (BASE_DPI * zoom_percent / 100).to_string();
    let page = page.to_string();
    let max = MAX_SIDE_PX.to_string();
    let args: [&[&str]; 6] = [
        // This page only.
        &["-f", &page, "-l", &page],
        &["-r", &dpi],
        // The visible page area, as PDF viewers show it (the media box if there is none).
        &["-cropbox"],
        // Render at most the top-left MAX_SIDE_PX square: bounds poppler's page bitmap.
        &["-x", "0", "-y", "0", "-W", &max, "-H", &max],
        // One PNG file, to stdout as no output file prefix is given.
        &["-png", "-singlefile"],
        // The PDF from stdin.
        &["-"],
    ];
    Job {
        program: "pdftoppm",
        args: args.concat().iter().map(|a| a.to_string()).collect(),
        capture: Capture::Bytes,
    }
}

/// The page count from a finished `pdfinfo`.
fn pages_of(info: &Finished) -> Result<u32, RenderError> {
    match info.captured {
        Captured::Pages(Some(n)) if info.success && n > 0 => Ok(n),
        _ => {
            log_failure(info);
            Err(unreadable(pdf_message(&info.stderr)))
        }
    }
}

fn pdf_message(stderr: &[u8]) -> &'static str {
    if stderr
        .windows(b"Incorrect password".len())
        .any(|w| w.eq_ignore_ascii_case(b"Incorrect password"))
    {
        PDF_PASSWORD
    } else {
        PDF_FAILED
    }
}

/// Logs that a renderer failed, with only the category of its first message (the text
/// before the first `:`, e.g. "Syntax Error"), never the rest, which may quote the file.
fn log_failure(f: &Finished) {
    let first = f.stderr.split(|b| *b == b'\n').next().unwrap_or_default();
    let category: String = first
        .split(|b| *b == b':')
        .next()
        .unwrap_or_default()
        .iter()
        .take(40)
        .map(|b| {
            if b.is_ascii_alphanumeric() || *b == b' ' {
                char::from(*b)
            } else {
                '?'
            }
        })
        .collect();
    tracing::debug!(
        program = f.program,
        code = f.code,
        stderr_category = %category,
        "render: renderer failed"
    );
}

fn spawn(job: &Job) -> Result<Child, RenderError> {
    Command::new(job.program)
        .args(&job.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                tracing::error!(program = job.program, "render: renderer not installed");
                unreadable(NO_POPPLER)
            } else {
                tracing::error!(program = job.program, error = %e, "render: cannot start renderer");
                unreadable(PDF_FAILED)
            }
        })
}

/// Runs the jobs, all fed the same content on stdin as it streams in, and waits for all of
/// them. Each child is killed if this future is dropped or fails (`kill_on_drop`), which
/// happens on a stream error, on too much input or output, and on timeout.
async fn run_poppler<S, E>(
    jobs: Vec<Job>,
    content: S,
    max_bytes: u64,
) -> Result<Vec<Finished>, RenderError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    let mut stdins = Vec::with_capacity(jobs.len());
    let mut waits = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut child = spawn(&job)?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            tracing::error!(program = job.program, "render: renderer pipes missing");
            return Err(unreadable(PDF_FAILED));
        };
        stdins.push(Some(stdin));
        waits.push(finish(job, child, stdout, stderr));
    }
    let work = async {
        let ((), done) = tokio::try_join!(feed(stdins, content, max_bytes), try_join_all(waits))?;
        Ok(done)
    };
    match tokio::time::timeout(RENDER_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_elapsed) => {
            tracing::warn!("render: renderer took too long; killed");
            Err(unreadable(TOO_SLOW))
        }
    }
}

/// Copies the content into every renderer's stdin, then closes them. A renderer that has
/// stopped reading is left out (its exit status tells what happened).
async fn feed<S, E>(
    mut stdins: Vec<Option<ChildStdin>>,
    mut content: S,
    max_bytes: u64,
) -> Result<(), RenderError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    let mut total: u64 = 0;
    while let Some(item) = content.next().await {
        let chunk = item.map_err(input_error)?;
        total = total.saturating_add(chunk.len() as u64);
        if total > max_bytes {
            return Err(unreadable(TOO_LARGE));
        }
        let chunk = &chunk;
        join_all(stdins.iter_mut().map(|slot| async move {
            if let Some(stdin) = slot {
                if let Err(e) = stdin.write_all(chunk).await {
                    tracing::debug!(error = %e.kind(), "render: renderer stopped reading");
                    *slot = None;
                }
            }
        }))
        .await;
        if stdins.iter().all(Option::is_none) {
            break;
        }
    }
    drop(stdins);
    Ok(())
}

async fn finish(
    job: Job,
    mut child: Child,
    stdout: ChildStdout,
    stderr: ChildStderr,
) -> Result<Finished, RenderError> {
    let out = async {
        match job.capture {
            Capture::Bytes => read_capped(stdout).await.map(Captured::Bytes),
            Capture::PagesLine => scan_pages(stdout).await.map(Captured::Pages),
        }
    };
    let (captured, stderr) = tokio::try_join!(out, read_stderr(stderr))?;
    let status = child.wait().await.map_err(|e| {
        tracing::warn!(program = job.program, error = %e, "render: cannot wait for renderer");
        unreadable(PDF_FAILED)
    })?;
    Ok(Finished {
        program: job.program,
        success: status.success(),
        code: status.code(),
        captured,
        stderr,
    })
}

fn read_error(e: std::io::Error) -> RenderError {
    tracing::warn!(error = %e.kind(), "render: cannot read renderer output");
    unreadable(PDF_FAILED)
}

/// All of stdout, or an error once it exceeds [`MAX_OUTPUT_BYTES`].
async fn read_capped(stdout: ChildStdout) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    stdout
        .take(MAX_OUTPUT_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(read_error)?;
    if out.len() > MAX_OUTPUT_BYTES {
        tracing::debug!("render: page image exceeds the output limit");
        return Err(unreadable(TOO_LARGE));
    }
    Ok(out)
}

/// Keeps the first [`MAX_STDERR_BYTES`] of stderr and discards the rest (it must be read,
/// or a chatty renderer would block on a full pipe).
async fn read_stderr(mut stderr: ChildStderr) -> Result<Vec<u8>, RenderError> {
    let mut kept = Vec::new();
    (&mut stderr)
        .take(MAX_STDERR_BYTES as u64)
        .read_to_end(&mut kept)
        .await
        .map_err(read_error)?;
    tokio::io::copy(&mut stderr, &mut tokio::io::sink())
        .await
        .map_err(read_error)?;
    Ok(kept)
}

/// The number on the last `Pages:` line of pdfinfo's output. Lines are scanned as they
/// stream by and only the first bytes of each are kept, so metadata of any length costs no
/// memory. The last such line wins: the document's own strings (title etc.) come first.
async fn scan_pages<R: AsyncRead + Unpin>(mut r: R) -> Result<Option<u32>, RenderError> {
    const KEEP: usize = 64;
    let mut buf = [0u8; 8192];
    let mut line: Vec<u8> = Vec::with_capacity(KEEP);
    let mut pages = None;
    loop {
        let n = r.read(&mut buf).await.map_err(read_error)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                if let Some(p) = parse_pages_line(&line) {
                    pages = Some(p);
                }
                line.clear();
            } else if line.len() <= KEEP {
                line.push(b);
            }
        }
    }
    if let Some(p) = parse_pages_line(&line) {
        pages = Some(p);
    }
    Ok(pages)
}

fn parse_pages_line(line: &[u8]) -> Option<u32> {
    if line.len() > 64 {
        return None;
    }
    let rest = line.strip_prefix(b"Pages:")?;
    std::str::from_utf8(rest).ok()?.trim().parse().ok()
}

#[cfg(test)]
#[path = "../../tests/fixtures/pdf.rs"]
mod pdf_fixture;

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream::{self, BoxStream};
    use image::GenericImageView;

    use crate::error::AppError;

    const MAX: u64 = 16 * 1024 * 1024;

    /// The content as a stream of small chunks, like the decrypting reader produces.
    fn chunks(data: &[u8]) -> BoxStream<'static, Result<Bytes, AppError>> {
        let parts: Vec<Result<Bytes, AppError>> = data
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(parts).boxed()
    }

    use super::pdf_fixture::{assemble, document, Page};

    /// A PDF with one page per (width, height, text): a blue square in the top-left
    /// corner, and the text.
    fn pdf(pages: &[(u32, u32, &str)]) -> Vec<u8> {
        let pages: Vec<Page> = pages
            .iter()
            .map(|&(width, height, text)| Page {
                width,
                height,
                content: format!(
                    "0 0 1 rg 0 {} 100 100 re f\nBT /F1 24 Tf 72 {} Td ({text}) Tj ET",
                    height - 100,
                    height / 2
                ),
            })
            .collect();
        document(&pages)
    }

    /// A PDF encrypted (AES-256, revision 5) with a user password, which nobody knows.
    fn password_protected() -> Vec<u8> {
        let hex = |b: &str, n: usize| format!("<{}>", b.repeat(n));
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>".to_string(),
            format!(
                "<< /Filter /Standard /V 5 /R 5 /Length 256 /P -4 /O {} /U {} /OE {} /UE {} \
                 /Perms {} /CF << /StdCF << /CFM /AESV3 /AuthEvent /DocOpen /Length 32 >> >> \
                 /StmF /StdCF /StrF /StdCF >>",
                hex("11", 48),
                hex("22", 48),
                hex("33", 32),
                hex("44", 32),
                hex("55", 16)
            ),
        ];
        let id = hex("0a", 16);
        assemble(&objects, &format!("/Encrypt 4 0 R /ID [{id} {id}]"))
    }

    fn three_pages() -> Vec<u8> {
        pdf(&[
            (595, 842, "Page one"),
            (612, 792, "Page two"),
            (300, 400, "Page three"),
        ])
    }

    fn decode_png(png: &[u8]) -> DynamicImage {
        assert!(png.starts_with(PNG_SIGNATURE), "not a PNG");
        image::load_from_memory_with_format(png, ImageFormat::Png).expect("decodes as PNG")
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn rgb_image(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 128])
        }))
    }

    fn encoded(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encodes");
        out.into_inner()
    }

    fn unreadable_msg(r: Result<impl std::fmt::Debug, RenderError>) -> String {
        match r {
            Err(RenderError::Unreadable(m)) => m,
            other => panic!("expected Unreadable, got {other:?}"),
        }
    }

    #[test]
    fn media_types() {
        assert_eq!(renderable("application/pdf"), Some(Renderable::Pdf));
        assert_eq!(renderable("Application/PDF; name=x"), Some(Renderable::Pdf));
        for t in ["image/jpeg", "image/png", "image/tiff"] {
            assert_eq!(renderable(t), Some(Renderable::Image), "{t}");
        }
        for t in ["image/gif", "text/plain", "application/zip", ""] {
            assert_eq!(renderable(t), None, "{t}");
        }
    }

    #[test]
    fn zoom_snaps_to_levels() {
        assert_eq!(zoom(None), 100);
        assert_eq!(zoom(Some(0)), 50);
        assert_eq!(zoom(Some(62)), 50);
        assert_eq!(zoom(Some(63)), 75);
        assert_eq!(zoom(Some(100)), 100);
        assert_eq!(zoom(Some(112)), 100);
        assert_eq!(zoom(Some(113)), 125);
        assert_eq!(zoom(Some(175)), 150);
        assert_eq!(zoom(Some(260)), 300);
        assert_eq!(zoom(Some(u32::MAX)), 300);
        for z in ZOOM_LEVELS {
            assert_eq!(zoom(Some(*z)), *z);
            assert!(BASE_DPI * z / 100 <= 288);
        }
    }

    #[test]
    fn pages_line_parsing() {
        assert_eq!(parse_pages_line(b"Pages:           3"), Some(3));
        assert_eq!(parse_pages_line(b"Pages: x"), None);
        assert_eq!(parse_pages_line(b"Title: Pages: 9"), None);
    }

    #[tokio::test]
    async fn pages_line_last_wins_and_long_lines_cost_nothing() {
        let mut out = b"Title:  ".to_vec();
        out.extend(std::iter::repeat_n(b'x', 100_000));
        out.extend_from_slice(b"\nPages: 999\nPages:           3\nEncrypted: no\n");
        assert_eq!(scan_pages(&out[..]).await.expect("scans"), Some(3));
    }

    #[test]
    fn image_target_sizes() {
        assert_eq!(image_target(40, 30, 100), (40, 30));
        assert_eq!(image_target(40, 30, 200), (80, 60));
        assert_eq!(image_target(40, 30, 50), (20, 15));
        assert_eq!(image_target(3200, 1000, 100), (1600, 500));
        assert_eq!(image_target(3200, 1000, 300), (4800, 1500));
        // Very tall images stay within the side limit.
        let (w, h) = image_target(1000, 20_000, 300);
        assert!(h <= MAX_SIDE_PX && w >= 1, "{w}x{h}");
    }

    #[tokio::test]
    async fn pdf_page_count() {
        let n = page_count(Renderable::Pdf, chunks(&three_pages()), MAX)
            .await
            .expect("counts pages");
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn pdf_page_renders_at_96_dpi_and_zooms() {
        let doc = three_pages();
        let started = std::time::Instant::now();
        let png = render_page(Renderable::Pdf, chunks(&doc), 2, 100, MAX)
            .await
            .expect("renders page 2");
        eprintln!("rendered one PDF page in {:?}", started.elapsed());
        let img = decode_png(&png).to_rgb8();
        assert_eq!(img.dimensions(), (816, 1056));
        // The blue square is in the top-left corner, the rest of that row is white.
        assert_eq!(img.get_pixel(10, 10).0, [0, 0, 255]);
        assert_eq!(img.get_pixel(800, 10).0, [255, 255, 255]);
        assert!(!contains(&png, b"Page two"));

        let png = render_page(Renderable::Pdf, chunks(&doc), 2, 200, MAX)
            .await
            .expect("renders page 2 at 200%");
        assert_eq!(decode_png(&png).to_rgb8().dimensions(), (1632, 2112));

        // Page 3 has its own size: 300 x 400 pt at 96 dpi (pdftoppm rounds 533.3 up).
        let png = render_page(Renderable::Pdf, chunks(&doc), 3, 100, MAX)
            .await
            .expect("renders page 3");
        assert_eq!(decode_png(&png).to_rgb8().dimensions(), (400, 534));
    }

    #[tokio::test]
    async fn pdf_missing_pages() {
        let doc = three_pages();
        for page in [0, 4, 1000] {
            match render_page(Renderable::Pdf, chunks(&doc), page, 100, MAX).await {
                Err(RenderError::PageOutOfRange { page: p, pages: 3 }) => assert_eq!(p, page),
                other => panic!("page {page}: expected PageOutOfRange, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn garbage_pdf_is_unreadable() {
        let garbage: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let m = unreadable_msg(page_count(Renderable::Pdf, chunks(&garbage), MAX).await);
        assert_eq!(m, PDF_FAILED);
        let m = unreadable_msg(render_page(Renderable::Pdf, chunks(&garbage), 1, 100, MAX).await);
        assert_eq!(m, PDF_FAILED);
        // A truncated PDF is no better.
        let doc = three_pages();
        let m = unreadable_msg(
            render_page(Renderable::Pdf, chunks(&doc[..doc.len() / 3]), 1, 100, MAX).await,
        );
        assert_eq!(m, PDF_FAILED);
    }

    #[tokio::test]
    async fn password_protected_pdf_is_unreadable() {
        let doc = password_protected();
        let m = unreadable_msg(page_count(Renderable::Pdf, chunks(&doc), MAX).await);
        assert_eq!(m, PDF_PASSWORD);
        let m = unreadable_msg(render_page(Renderable::Pdf, chunks(&doc), 1, 100, MAX).await);
        assert_eq!(m, PDF_PASSWORD);
    }

    #[tokio::test]
    async fn missing_renderer_is_reported() {
        let job = Job {
            program: "strongroom-no-such-renderer",
            args: vec!["-".into()],
            capture: Capture::Bytes,
        };
        let m = unreadable_msg(
            run_poppler(vec![job], chunks(b"%PDF"), MAX)
                .await
                .map(|_| ()),
        );
        assert_eq!(m, NO_POPPLER);
    }

    #[tokio::test]
    async fn too_large_input_is_refused() {
        let doc = three_pages();
        let small = doc.len() as u64 - 1;
        let m = unreadable_msg(render_page(Renderable::Pdf, chunks(&doc), 1, 100, small).await);
        assert_eq!(m, TOO_LARGE);
        let m = unreadable_msg(page_count(Renderable::Pdf, chunks(&doc), small).await);
        assert_eq!(m, TOO_LARGE);
        let jpeg = encoded(&rgb_image(40, 30), ImageFormat::Jpeg);
        let m = unreadable_msg(
            render_page(
                Renderable::Image,
                chunks(&jpeg),
                1,
                100,
                jpeg.len() as u64 - 1,
            )
            .await,
        );
        assert_eq!(m, TOO_LARGE);
    }

    fn failing_after(data: &[u8]) -> BoxStream<'static, Result<Bytes, AppError>> {
        let first = Bytes::copy_from_slice(&data[..data.len() / 2]);
        stream::iter(vec![
            Ok(first),
            Err(AppError::internal("integrity check failed")),
        ])
        .boxed()
    }

    #[tokio::test]
    async fn stream_error_is_input() {
        let doc = three_pages();
        let jpeg = encoded(&rgb_image(40, 30), ImageFormat::Jpeg);
        let results = [
            page_count(Renderable::Pdf, failing_after(&doc), MAX).await,
            render_page(Renderable::Pdf, failing_after(&doc), 1, 100, MAX)
                .await
                .map(|_| 0),
            page_count(Renderable::Image, failing_after(&jpeg), MAX).await,
            render_page(Renderable::Image, failing_after(&jpeg), 1, 100, MAX)
                .await
                .map(|_| 0),
        ];
        for r in results {
            assert!(matches!(r, Err(RenderError::Input(_))), "{r:?}");
        }
        // Any Display error type works, too.
        let s = stream::iter(vec![Ok(Bytes::from_static(b"%PDF")), Err("boom")]);
        assert!(matches!(
            page_count(Renderable::Pdf, s, MAX).await,
            Err(RenderError::Input(m)) if m == "boom"
        ));
    }

    #[tokio::test]
    async fn images_render_as_png_without_the_original_bytes() {
        let original = rgb_image(40, 30);
        for format in [ImageFormat::Jpeg, ImageFormat::Tiff, ImageFormat::Png] {
            let mut input = encoded(&original, format);
            if format == ImageFormat::Png {
                input = with_text_chunk(&input, b"Comment\0SECRET-PNG-TEXT");
            }
            let n = page_count(Renderable::Image, chunks(&input), MAX)
                .await
                .expect("counts");
            assert_eq!(n, 1, "{format:?}");
            let png = render_page(Renderable::Image, chunks(&input), 1, 100, MAX)
                .await
                .expect("renders");
            assert_eq!(decode_png(&png).dimensions(), (40, 30), "{format:?}");
            assert_ne!(png, input);
            assert!(!contains(&png, &input), "{format:?}");
            assert!(!contains(&png, b"SECRET"), "{format:?}");
            if format != ImageFormat::Png {
                assert!(!contains(&png, &input[..64]), "{format:?}");
            }
            let png = render_page(Renderable::Image, chunks(&input), 1, 200, MAX)
                .await
                .expect("renders at 200%");
            assert_eq!(decode_png(&png).dimensions(), (80, 60), "{format:?}");
            assert!(matches!(
                render_page(Renderable::Image, chunks(&input), 2, 100, MAX).await,
                Err(RenderError::PageOutOfRange { page: 2, pages: 1 })
            ));
        }
    }

    #[tokio::test]
    async fn wide_images_fit_1600_at_zoom_100() {
        let input = encoded(&rgb_image(2000, 100), ImageFormat::Png);
        let png = render_page(Renderable::Image, chunks(&input), 1, 100, MAX)
            .await
            .expect("renders");
        assert_eq!(decode_png(&png).dimensions(), (1600, 80));
    }

    /// A JPEG with an EXIF block (description, orientation "rotate 90° clockwise") and a
    /// comment: the rendered PNG is upright and carries neither.
    #[tokio::test]
    async fn jpeg_metadata_is_applied_and_stripped() {
        let jpeg = encoded(&rgb_image(40, 30), ImageFormat::Jpeg);
        let secret = b"SECRET-GPS-DESCRIPTION\0";
        let mut tiff = b"II*\0\x08\0\0\0\x02\0".to_vec();
        let text_at: u32 = 8 + 2 + 2 * 12 + 4;
        tiff.extend_from_slice(&0x010Eu16.to_le_bytes()); // ImageDescription
        tiff.extend_from_slice(&2u16.to_le_bytes()); // ASCII
        tiff.extend_from_slice(&(secret.len() as u32).to_le_bytes());
        tiff.extend_from_slice(&text_at.to_le_bytes());
        tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&[6, 0, 0, 0]); // rotate 90° clockwise
        tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
        tiff.extend_from_slice(secret);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let comment = b"SECRET-COMMENT";
        let mut input = jpeg[..2].to_vec(); // SOI
        input.extend_from_slice(&[0xFF, 0xE1]);
        input.extend_from_slice(&(app1.len() as u16 + 2).to_be_bytes());
        input.extend_from_slice(&app1);
        input.extend_from_slice(&[0xFF, 0xFE]);
        input.extend_from_slice(&(comment.len() as u16 + 2).to_be_bytes());
        input.extend_from_slice(comment);
        input.extend_from_slice(&jpeg[2..]);

        let png = render_page(Renderable::Image, chunks(&input), 1, 100, MAX)
            .await
            .expect("renders");
        assert_eq!(decode_png(&png).dimensions(), (30, 40));
        assert!(!contains(&png, b"SECRET"));
        assert!(!contains(&png, b"Exif"));
    }

    #[tokio::test]
    async fn garbage_image_is_unreadable() {
        let garbage: Vec<u8> = (0..5_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let m = unreadable_msg(page_count(Renderable::Image, chunks(&garbage), MAX).await);
        assert_eq!(m, IMAGE_FAILED);
        let m = unreadable_msg(render_page(Renderable::Image, chunks(&garbage), 1, 100, MAX).await);
        assert_eq!(m, IMAGE_FAILED);
        // A real JPEG header with the rest cut off.
        let jpeg = encoded(&rgb_image(40, 30), ImageFormat::Jpeg);
        let m = unreadable_msg(
            render_page(
                Renderable::Image,
                chunks(&jpeg[..jpeg.len() / 2]),
                1,
                100,
                MAX,
            )
            .await,
        );
        assert_eq!(m, IMAGE_FAILED);
        // A GIF is not an image this viewer shows.
        let m = unreadable_msg(
            render_page(
                Renderable::Image,
                chunks(b"GIF89a\x01\0\x01\0\0\0\0;"),
                1,
                100,
                MAX,
            )
            .await,
        );
        assert_eq!(m, IMAGE_FAILED);
    }

    #[tokio::test]
    async fn huge_image_dimensions_are_refused() {
        // A valid PNG header claiming 30000 x 30000 pixels.
        let img = DynamicImage::ImageLuma8(image::GrayImage::new(1, 1));
        let mut png = encoded(&img, ImageFormat::Png);
        // IHDR: length at 8..12, type and data at 12..29 (width 16..20, height 20..24), CRC.
        png[16..20].copy_from_slice(&30_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&30_000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let m = unreadable_msg(page_count(Renderable::Image, chunks(&png), MAX).await);
        assert_eq!(m, TOO_LARGE);
        let m = unreadable_msg(render_page(Renderable::Image, chunks(&png), 1, 100, MAX).await);
        assert_eq!(m, TOO_LARGE);
    }

    /// `png` with a tEXt chunk (metadata) inserted after IHDR.
    fn with_text_chunk(png: &[u8], text: &[u8]) -> Vec<u8> {
        let mut chunk = b"tEXt".to_vec();
        chunk.extend_from_slice(text);
        let mut out = png[..33].to_vec();
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        out.extend_from_slice(&png[33..]);
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// The futures can be awaited in a Rocket handler with the vault's stream type.
    #[allow(dead_code)]
    fn futures_are_send(s: BoxStream<'static, Result<Bytes, AppError>>) {
        fn send<T: Send>(_: T) {}
        send(render_page(Renderable::Pdf, s, 1, 100, 1));
        send(page_count(
            Renderable::Pdf,
            stream::empty::<Result<Bytes, AppError>>(),
            1,
        ));
    }
}
