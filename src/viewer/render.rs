//! Server-side rendering of stored files for the view-only document viewer: the original
//! bytes never reach the browser, only PNG images of single pages rendered here.
//!
//! Guarantees:
//! - **No plaintext on disk.** Decrypted content is only ever held in memory or written to
//!   the stdin pipe of a renderer process (`pdfinfo -`, `pdftoppm … -`; poppler keeps stdin
//!   in memory and writes nothing but the page's raw pixels to stdout, which are encoded as
//!   PNG here). Images are decoded in memory.
//! - **Bounded input, output, time, memory and concurrency.** Content larger than the
//!   caller's `max_bytes` is refused as "too large to show"; at most [`MAX_OUTPUT_BYTES`] of
//!   PNG are produced; each poppler process may map at most [`POPPLER_MAX_KIB`] of memory
//!   (poppler's own allocations follow what the file states, e.g. its page count); a
//!   render that takes longer than 60 s is killed; at most
//!   [`MAX_CONCURRENT`] renders run at once, at most [`MAX_WAITING`] more wait for a slot, and
//!   none waits longer than 10 s: the rest get [`RenderError::Busy`] at once.
//! - **Page counts are checked, not trusted.** A PDF's page count (from its page tree, which
//!   the file itself states) is refused when the file is too small to hold that many pages
//!   ([`MIN_PDF_BYTES_PER_PAGE`]) or when it exceeds [`MAX_PAGES`]; page numbers past the
//!   checked count, and pages within it that the file does not hold, are
//!   [`RenderError::PageOutOfRange`] and never rendered.
//! - **Pixels are bounded end to end.** A PDF page is rendered into at most a
//!   [`PDF_SLICE_PX`] square (a larger page is cropped to its top-left part, so poppler's page
//!   bitmap stays bounded whatever the page size claims). An image's dimensions are read from
//!   its header and checked against [`MAX_IMAGE_PIXELS`] before any pixel is decoded; the
//!   decoder is bounded by [`image::Limits`]; the output size is computed before resizing and
//!   clamped to [`MAX_OUTPUT_PIXELS`] (and [`MAX_SIDE_PX`] a side) whatever the zoom; and the
//!   resize writes straight into that output, with no intermediate buffer. The memory budget
//!   this gives is worked out at [`MAX_IMAGE_PIXELS`].
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
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// Requests that may wait for a render slot; more are turned away with `Busy` at once, so a
/// burst cannot pile up requests (each holding a connection) behind the slots.
pub const MAX_WAITING: usize = 16;
/// How long a `Busy` client should wait before trying again, in seconds (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 5;
/// The most PNG bytes one page may produce.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;
/// The most bytes of raw pixels `pdftoppm` may hand over for one page: its largest slice
/// ([`PDF_SLICE_PX`] square, RGB) and the PPM header.
pub const MAX_PPM_BYTES: usize = PDF_SLICE_PX as usize * PDF_SLICE_PX as usize * 3 + 64;
/// The most pixels on either side of a rendered image.
pub const MAX_SIDE_PX: u32 = 8192;
/// The most pixels a rendered page may have, whatever the zoom: 24 megapixels is a tabloid
/// page (11 x 17 in) at the highest zoom's 288 dpi, or a 1600 x 2263 scan shown at 300 %
/// clamped from 32.6 to 24 megapixels.
pub const MAX_OUTPUT_PIXELS: u64 = 24_000_000;
/// A PDF page is rendered into at most this square (4896² ≈ 24 megapixels, 72 MB of RGB in
/// poppler's bitmap; measured: a 200 x 200 in page at 288 dpi peaks at 104 MB resident, where
/// an 8192 square took 272 MB). 4896 is a tabloid page's long side at 288 dpi.
pub const PDF_SLICE_PX: u32 = 4896;
/// The most pages a PDF may have to be shown: paging keeps each viewer page small whatever
/// the count, but no archived document needs more, and a larger count is most likely a lie.
pub const MAX_PAGES: u32 = 10_000;
/// The fewest bytes a PDF can spend on one page. Each page needs its own page object, a
/// reference in its parent's `/Kids` and a cross-reference entry; even packed into
/// compressed object and cross-reference streams, distinct object numbers do not compress
/// below a few bytes each, and real pages carry content streams of tens of bytes or more.
/// A file with fewer bytes than this per claimed page states a page count it cannot hold.
pub const MIN_PDF_BYTES_PER_PAGE: u64 = 16;
/// The most pixels an image may have to be shown, checked from its header before decoding.
///
/// The memory budget of one image render, with these limits: the compressed input (at most
/// the caller's `max_bytes`), plus the decoded image (at most [`MAX_IMAGE_ALLOC`]: 100
/// megapixels of 8-bit RGBA is 400 MB; deeper images must be smaller), plus the output (at
/// most [`MAX_OUTPUT_RAW_BYTES`]; the decoded image is freed before the output is rotated,
/// which may copy it once), plus the PNG (at most [`MAX_OUTPUT_BYTES`]). That is at most
/// about 384 + 128 + 64 MiB ≈ 580 MiB besides the input, so [`MAX_CONCURRENT`] renders stay
/// under 1.2 GiB. Before these bounds a 20000 x 20000 grey PNG (389 KB) cost 1.85 GB, as
/// the resize kept a 32-bit float RGBA buffer of the source's width by the output's height.
pub const MAX_IMAGE_PIXELS: u64 = 100_000_000;

/// PDF resolution at zoom 100.
const BASE_DPI: u32 = 96;
/// Images are fit to at most this width at zoom 100.
const BASE_IMAGE_WIDTH: u32 = 1600;
/// The longest one render (including reading the content) may take.
const RENDER_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a request waits for a render slot before it gets `Busy`. A page renders in
/// well under a second, so a request still waiting after this is behind a backlog it should
/// not join.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most virtual memory one poppler process may map, in KiB (1 GiB). A page bitmap is
/// at most a [`PDF_SLICE_PX`] square (72 MB), and measured peaks are about 100 MB for such
/// a page and about 40 bytes per page the page tree states for `pdfinfo` (a 350-byte PDF
/// stating 30 million pages made `pdfinfo` take 1.2 GB); this leaves room for large
/// embedded images and fonts while such a file fails instead of taking the server's memory.
const POPPLER_MAX_KIB: u64 = 1024 * 1024;
/// The exit status of a shell whose `exec` found no such program.
const SHELL_NOT_FOUND: i32 = 127;
/// How much of a renderer's stderr is kept (for choosing the user message); never returned.
const MAX_STDERR_BYTES: usize = 4096;
/// Bounds for image decoding: a side, and the decoder's allocations (the pixel buffer).
const MAX_IMAGE_SIDE: u32 = 20_000;
const MAX_IMAGE_ALLOC: u64 = 384 * 1024 * 1024;
/// The most bytes of pixels a resized image may hold (before PNG encoding).
const MAX_OUTPUT_RAW_BYTES: u64 = 128 * 1024 * 1024;

static QUEUE: Queue = Queue::new(MAX_CONCURRENT, MAX_WAITING, QUEUE_TIMEOUT);

#[cfg(test)]
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const PDF_FAILED: &str = "this PDF could not be rendered (it may be damaged)";
const PDF_PASSWORD: &str = "this PDF is protected by a password and cannot be shown";
const IMAGE_FAILED: &str = "this image could not be shown (it may be damaged)";
const TOO_LARGE: &str = "this document is too large to show";
const TOO_SLOW: &str = "this document took too long to render";
const PDF_IMPLAUSIBLE: &str =
    "this PDF states more pages than the file can hold (it may be damaged)";
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

/// Number of pages. A PDF is fed to `pdfinfo -` and its `Pages:` line is read, then checked
/// against the file's size and [`MAX_PAGES`] ([`checked_pages`]); an image has its header
/// decoded (to check that it is an image this viewer can show, within [`MAX_IMAGE_PIXELS`])
/// and has 1 page. Only the first page of a multi-page TIFF can be shown (the `image` crate
/// decodes only that one), so a TIFF always counts as 1 page.
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
            let (done, size) = run_poppler(vec![pdfinfo()], content, max_bytes).await?;
            checked_pages(pages_of(&done[0])?, size)
        }
        Renderable::Image => {
            // The slot is taken first, so requests waiting for one hold no content.
            let slot = slot().await?;
            let buf = collect(content, max_bytes).await?;
            blocking(move || {
                let _slot = slot;
                image_header(&buf).map(|_| 1)
            })
            .await
        }
    }
}

/// The page count a PDF of `size` bytes states, if it is believable: a count the file is
/// too small to hold (fewer than [`MIN_PDF_BYTES_PER_PAGE`] bytes a page) is a damaged or
/// hostile file, and a count above [`MAX_PAGES`] is more than the viewer shows.
pub fn checked_pages(stated: u32, size: u64) -> Result<u32, RenderError> {
    if u64::from(stated).saturating_mul(MIN_PDF_BYTES_PER_PAGE) > size {
        tracing::debug!(
            stated,
            size,
            "render: PDF states more pages than it can hold"
        );
        return Err(unreadable(PDF_IMPLAUSIBLE));
    }
    if stated > MAX_PAGES {
        return Err(RenderError::Unreadable(format!(
            "this PDF has {stated} pages, more than the {MAX_PAGES} the viewer can show"
        )));
    }
    Ok(stated)
}

/// Page `page` (1-based) as PNG bytes, at `zoom` percent (snapped to [`ZOOM_LEVELS`]).
///
/// A PDF page is rendered by `pdftoppm` (crop box, annotations shown) at 96 × zoom / 100
/// dpi, i.e. 48 to 288 dpi; `pdfinfo` runs alongside on the same stream (twice: for the
/// count, checked as [`page_count`] does, and for the page's size) to tell a missing page
/// from a damaged file, and a page the page tree states but the file lacks is missing too,
/// never rendered. An image
/// (page 1 only; for a TIFF, its first page) is oriented, scaled to fit 1600 px wide at
/// zoom 100 (never larger than the original size times zoom / 100, nor than
/// [`MAX_OUTPUT_PIXELS`]) and re-encoded as PNG.
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
            let permit = slot().await?;
            if page == 0 || page > MAX_PAGES {
                // pdftoppm treats page 0 as page 1; only count the pages.
                let (done, size) = run_poppler(vec![pdfinfo()], content, max_bytes).await?;
                let pages = checked_pages(pages_of(&done[0])?, size)?;
                return Err(RenderError::PageOutOfRange { page, pages });
            }
            let (mut done, size) = run_poppler(
                vec![pdfinfo(), pdfinfo_page(page), pdftoppm(page, zoom_percent)],
                content,
                max_bytes,
            )
            .await?;
            let pages = checked_pages(pages_of(&done[0])?, size)?;
            if page > pages || !page_exists(&done[1]) {
                // Past the count, or stated by the page tree but not in the file.
                return Err(RenderError::PageOutOfRange { page, pages });
            }
            let Some(rendered) = done.pop() else {
                return Err(unreadable(PDF_FAILED));
            };
            match rendered.captured {
                Captured::Bytes(ppm) if rendered.success && ppm.starts_with(b"P6") => {
                    // Encoded here, still holding the render slot: poppler's own PNG
                    // writer spends ~85 % of a text page's time compressing.
                    blocking(move || {
                        let _slot = permit;
                        png_of_ppm(&ppm)
                    })
                    .await
                }
                _ => {
                    log_failure(&rendered);
                    Err(unreadable(pdf_message(&rendered.stderr)))
                }
            }
        }
        Renderable::Image => {
            let slot = slot().await?;
            let buf = collect(content, max_bytes).await?;
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

/// The render slots and the bounded line in front of them.
struct Queue {
    slots: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
    timeout: Duration,
}

/// One place in the line; leaving it (however the wait ends) frees the place.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Queue {
    const fn new(slots: usize, max_waiting: usize, timeout: Duration) -> Queue {
        Queue {
            slots: Semaphore::const_new(slots),
            waiting: AtomicUsize::new(0),
            max_waiting,
            timeout,
        }
    }

    /// A free slot, else a bounded wait for one: `Busy` at once when the line is full,
    /// and `Busy` when no slot frees up within the timeout.
    async fn slot(&self) -> Result<SemaphorePermit<'_>, RenderError> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!("render: too many requests waiting for a render slot");
            return Err(RenderError::Busy);
        }
        let _place = Waiting(&self.waiting);
        match tokio::time::timeout(self.timeout, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(RenderError::Busy),
            Err(_elapsed) => {
                tracing::debug!("render: no render slot became free in time");
                Err(RenderError::Busy)
            }
        }
    }
}

/// Waits (bounded) for one of the render slots.
async fn slot() -> Result<SemaphorePermit<'static>, RenderError> {
    QUEUE.slot().await
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

/// Reads the whole content into one buffer of `size` bytes (the file's stated size), for
/// the viewer's cache: the buffer is allocated once at that size and never grows, so no
/// copy of the plaintext is left behind in freed memory, and it is zeroed when dropped.
/// More than `max_bytes` is refused as too large to show, and content that does not match
/// `size` as damaged.
pub async fn collect_plain<S, E>(
    mut content: S,
    size: u64,
    max_bytes: u64,
) -> Result<zeroize::Zeroizing<Vec<u8>>, RenderError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    if size > max_bytes {
        return Err(unreadable(TOO_LARGE));
    }
    let size = usize::try_from(size).map_err(|_| unreadable(TOO_LARGE))?;
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(size));
    let read = async {
        while let Some(item) = content.next().await {
            let chunk = item.map_err(input_error)?;
            if buf.len().saturating_add(chunk.len()) > size {
                tracing::debug!("render: content longer than its stated size");
                return Err(RenderError::Input(
                    "the content is longer than stored".into(),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.len() != size {
            tracing::debug!("render: content shorter than its stated size");
            return Err(RenderError::Input(
                "the content is shorter than stored".into(),
            ));
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

/// Decodes only the header; returns the stored dimensions once they are within
/// [`MAX_IMAGE_PIXELS`], so nothing larger is ever decoded.
fn image_header(buf: &[u8]) -> Result<(u32, u32), RenderError> {
    let decoder = image_reader(buf)?.into_decoder().map_err(image_error)?;
    let (width, height) = decoder.dimensions();
    // Deep colour decodes to more bytes a pixel: a 16-bit RGBA image under the pixel cap
    // can still need more than the decoder may allocate. Say so now, on the viewer page,
    // rather than as a broken page image.
    if u64::from(width) * u64::from(height) <= MAX_IMAGE_PIXELS
        && decoder.total_bytes() > MAX_IMAGE_ALLOC
    {
        tracing::debug!(
            width,
            height,
            "render: image needs too much memory to decode"
        );
        return Err(RenderError::Unreadable(format!(
            "this image is too large to show: {width} x {height} pixels at {} bytes a pixel \
             needs more memory than the viewer decodes with ({} MB)",
            u64::from(decoder.color_type().bytes_per_pixel()),
            MAX_IMAGE_ALLOC / 1_000_000
        )));
    }
    if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
        tracing::debug!(width, height, "render: image has too many pixels");
        return Err(RenderError::Unreadable(format!(
            "this image is too large to show: {width} x {height} pixels, more than the {} \
             megapixels the viewer shows",
            MAX_IMAGE_PIXELS / 1_000_000
        )));
    }
    Ok((width, height))
}

/// The most output pixels for an image of `bytes_per_pixel`: [`MAX_OUTPUT_PIXELS`], fewer
/// for deep colour so that the output holds at most [`MAX_OUTPUT_RAW_BYTES`].
fn output_pixels(bytes_per_pixel: u8) -> u64 {
    MAX_OUTPUT_PIXELS.min(MAX_OUTPUT_RAW_BYTES / u64::from(bytes_per_pixel.max(1)))
}

/// The size a `width` × `height` image is shown at, at `zoom_percent`, with at most
/// `max_pixels` pixels and [`MAX_SIDE_PX`] a side.
fn image_target(width: u32, height: u32, zoom_percent: u32, max_pixels: u64) -> (u32, u32) {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let base = (f64::from(BASE_IMAGE_WIDTH) / w).min(1.0);
    let mut scale = base * f64::from(zoom_percent) / 100.0;
    let longest = w.max(h) * scale;
    if longest > f64::from(MAX_SIDE_PX) {
        scale *= f64::from(MAX_SIDE_PX) / longest;
    }
    let area = w * h * scale * scale;
    let max_pixels = max_pixels.max(1);
    if area > max_pixels as f64 {
        scale *= (max_pixels as f64 / area).sqrt();
    }
    let rounded = |v: f64| ((v * scale).round() as u32).clamp(1, MAX_SIDE_PX);
    let (tw, th) = (rounded(w), rounded(h));
    if u64::from(tw) * u64::from(th) <= max_pixels {
        return (tw, th);
    }
    // Rounding up went over the budget; rounding down cannot.
    let floored = |v: f64| ((v * scale).floor() as u32).clamp(1, MAX_SIDE_PX);
    (floored(w), floored(h))
}

fn render_image(buf: &[u8], zoom_percent: u32) -> Result<Vec<u8>, RenderError> {
    // Refuses too many pixels from the header, before anything is decoded.
    image_header(buf)?;
    let mut decoder = image_reader(buf)?.into_decoder().map_err(image_error)?;
    // `ImageReader::decode` makes this check too; `into_decoder` alone does not.
    image_limits()
        .reserve(decoder.total_bytes())
        .map_err(image_error)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let max_pixels = output_pixels(decoder.color_type().bytes_per_pixel());
    let img = DynamicImage::from_decoder(decoder).map_err(image_error)?;

    // The output size is computed upright, then resized to in the stored orientation, and
    // the (small) result is turned: the decoded image is never copied.
    use image::metadata::Orientation::{Rotate270, Rotate270FlipH, Rotate90, Rotate90FlipH};
    let turned = matches!(
        orientation,
        Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH
    );
    let (w, h) = if turned {
        (img.height(), img.width())
    } else {
        (img.width(), img.height())
    };
    let (tw, th) = image_target(w, h, zoom_percent, max_pixels);
    let (tw, th) = if turned { (th, tw) } else { (tw, th) };
    let mut img = if (tw, th) != (img.width(), img.height()) {
        // Area averaging (and linear interpolation when enlarging) straight into the
        // output buffer; `resize_exact` would first build a 32-bit float RGBA image as wide
        // as the source and as tall as the output.
        let resized = img.thumbnail_exact(tw, th);
        // The decoded image is the largest buffer: free it before anything else is made.
        drop(img);
        resized
    } else {
        img
    };
    img.apply_orientation(orientation);
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
    let mut out = Capped {
        png: Cursor::new(Vec::new()),
        over: false,
    };
    match img.write_to(&mut out, ImageFormat::Png) {
        Ok(()) => Ok(out.png.into_inner()),
        Err(_) if out.over => {
            tracing::debug!("render: page image exceeds the output limit");
            Err(unreadable(TOO_LARGE))
        }
        Err(e) => Err(image_error(e)),
    }
}

/// A PNG being written, refused once it would exceed [`MAX_OUTPUT_BYTES`] (rather than
/// checked after it has been made whole).
struct Capped {
    png: Cursor<Vec<u8>>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let end = (self.png.position() as usize).saturating_add(buf.len());
        if end > MAX_OUTPUT_BYTES {
            self.over = true;
            return Err(std::io::Error::other("page image too large"));
        }
        std::io::Write::write(&mut self.png, buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for Capped {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.png.seek(pos)
    }
}

// ----- PDF (poppler) -----

/// The width, height and RGB bytes of a binary PPM (`P6`, maxval 255) as `pdftoppm`
/// writes it, if it is one, at most a [`PDF_SLICE_PX`] square, with exactly its pixels.
fn parse_ppm(ppm: &[u8]) -> Option<(u32, u32, &[u8])> {
    let mut at = ppm.strip_prefix(b"P6").map(|_| 2)?;
    let mut fields = [0u32; 3];
    for field in &mut fields {
        while ppm.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        let start = at;
        while ppm.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start || at - start > 9 {
            return None;
        }
        *field = std::str::from_utf8(ppm.get(start..at)?)
            .ok()?
            .parse()
            .ok()?;
    }
    // One whitespace byte ends the header.
    if !ppm.get(at).is_some_and(u8::is_ascii_whitespace) {
        return None;
    }
    let [width, height, max] = fields;
    let sides = 1..=PDF_SLICE_PX;
    if max != 255 || !sides.contains(&width) || !sides.contains(&height) {
        return None;
    }
    let pixels = ppm.get(at + 1..)?;
    (pixels.len() == width as usize * height as usize * 3).then_some((width, height, pixels))
}

/// A page's PPM as a PNG: deflate level 3 with adaptive filtering, refused past
/// [`MAX_OUTPUT_BYTES`]. Measured on a US-letter page of text at zoom 100 (816 × 1056):
/// 279 KB in 6 ms (poppler's own writer: 270 KB in 210 ms; level 1: 320 KB in 3 ms;
/// level 6: 276 KB in 9 ms; the `fdeflate` fast mode: 420 KB in 2 ms).
fn png_of_ppm(ppm: &[u8]) -> Result<Vec<u8>, RenderError> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let Some((width, height, pixels)) = parse_ppm(ppm) else {
        tracing::debug!("render: pdftoppm output is not the expected PPM");
        return Err(unreadable(PDF_FAILED));
    };
    let mut out = Capped {
        png: Cursor::new(Vec::new()),
        over: false,
    };
    let encoder =
        PngEncoder::new_with_quality(&mut out, CompressionType::Level(3), FilterType::Adaptive);
    match encoder.write_image(pixels, width, height, image::ExtendedColorType::Rgb8) {
        Ok(()) => Ok(out.png.into_inner()),
        Err(_) if out.over => {
            tracing::debug!("render: page image exceeds the output limit");
            Err(unreadable(TOO_LARGE))
        }
        Err(e) => Err(image_error(e)),
    }
}

/// How a renderer's stdout is read.
enum Capture {
    /// All of it, up to [`MAX_OUTPUT_BYTES`] (the tests run other programs with it).
    #[cfg(test)]
    Bytes,
    /// All of it, up to [`MAX_PPM_BYTES`] (a page's raw pixels).
    Pixels,
    /// Only the number on the last `Pages:` line (pdfinfo); the rest, which includes the
    /// document's metadata, is discarded as it is read.
    PagesLine,
    /// Only the size on the last `Page N size:` line (pdfinfo -f N -l N), likewise.
    PageSizeLine,
}

enum Captured {
    Bytes(Vec<u8>),
    Pages(Option<u32>),
    /// Width and height in points.
    PageSize(Option<(f64, f64)>),
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

/// pdfinfo for one page: its size, which is 0 x 0 when the page tree states the page but
/// does not hold it (pdftoppm would render such a page as a blank pixel).
fn pdfinfo_page(page: u32) -> Job {
    let page = page.to_string();
    Job {
        program: "pdfinfo",
        args: ["-f", &page, "-l", &page, "-"].map(String::from).to_vec(),
        capture: Capture::PageSizeLine,
    }
}

fn pdftoppm(page: u32, zoom_percent: u32) -> Job {
    let dpi = (BASE_DPI * zoom_percent / 100).to_string();
    let page = page.to_string();
    let max = PDF_SLICE_PX.to_string();
    let args: [&[&str]; 6] = [
        // This page only.
        &["-f", &page, "-l", &page],
        &["-r", &dpi],
        // The visible page area, as PDF viewers show it (the media box if there is none).
        &["-cropbox"],
        // Render at most the top-left PDF_SLICE_PX square: poppler allocates its page
        // bitmap for this slice only, so a page of any stated size stays bounded.
        &["-x", "0", "-y", "0", "-W", &max, "-H", &max],
        // One page of raw RGB pixels (PPM), to stdout as no output file prefix is given;
        // it is encoded as PNG here ([`png_of_ppm`]), several times faster than poppler's
        // own PNG writer.
        &["-singlefile"],
        // The PDF from stdin.
        &["-"],
    ];
    Job {
        program: "pdftoppm",
        args: args.concat().iter().map(|a| a.to_string()).collect(),
        capture: Capture::Pixels,
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

/// Whether a finished [`pdfinfo_page`] found the page in the file.
fn page_exists(info: &Finished) -> bool {
    matches!(info.captured, Captured::PageSize(Some((w, h))) if info.success && w > 0.0 && h > 0.0)
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

/// Starts a renderer under an address-space limit of [`POPPLER_MAX_KIB`]: `sh` sets the
/// (soft) limit and `exec`s the renderer in its place, so the child is the renderer itself
/// (and `kill_on_drop` reaches it). The renderer and its arguments are positional
/// parameters, never part of the script. Where a lower hard limit is already in force,
/// that one bounds the renderer instead.
fn spawn(job: &Job) -> Result<Child, RenderError> {
    let script = format!(r#"ulimit -S -v {POPPLER_MAX_KIB} 2>/dev/null; exec "$0" "$@""#);
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(job.program)
        .args(&job.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            tracing::error!(program = job.program, error = %e, "render: cannot start renderer");
            unreadable(PDF_FAILED)
        })
}

/// Runs the jobs, all fed the same content on stdin as it streams in, and waits for all of
/// them; returns what they did and the content's size in bytes. Each child is killed if this future is dropped or fails (`kill_on_drop`), which
/// happens on a stream error, on too much input or output, and on timeout.
async fn run_poppler<S, E>(
    jobs: Vec<Job>,
    content: S,
    max_bytes: u64,
) -> Result<(Vec<Finished>, u64), RenderError>
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
        let (size, done) = tokio::try_join!(feed(stdins, content, max_bytes), try_join_all(waits))?;
        Ok((done, size))
    };
    match tokio::time::timeout(RENDER_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_elapsed) => {
            tracing::warn!("render: renderer took too long; killed");
            Err(unreadable(TOO_SLOW))
        }
    }
}

/// Copies the content into every renderer's stdin, then closes them, and returns its size.
/// A renderer that has stopped reading is left out (its exit status tells what happened).
/// Once all have stopped the rest is not read, so the size may fall short of the content's:
/// that only makes [`checked_pages`] stricter.
async fn feed<S, E>(
    mut stdins: Vec<Option<ChildStdin>>,
    mut content: S,
    max_bytes: u64,
) -> Result<u64, RenderError>
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
    Ok(total)
}

async fn finish(
    job: Job,
    mut child: Child,
    stdout: ChildStdout,
    stderr: ChildStderr,
) -> Result<Finished, RenderError> {
    let out = async {
        match job.capture {
            #[cfg(test)]
            Capture::Bytes => read_capped(stdout, MAX_OUTPUT_BYTES)
                .await
                .map(Captured::Bytes),
            Capture::Pixels => read_capped(stdout, MAX_PPM_BYTES)
                .await
                .map(Captured::Bytes),
            Capture::PagesLine => scan_last(stdout, parse_pages_line)
                .await
                .map(Captured::Pages),
            Capture::PageSizeLine => scan_last(stdout, parse_page_size_line)
                .await
                .map(Captured::PageSize),
        }
    };
    let (captured, stderr) = tokio::try_join!(out, read_stderr(stderr))?;
    let status = child.wait().await.map_err(|e| {
        tracing::warn!(program = job.program, error = %e, "render: cannot wait for renderer");
        unreadable(PDF_FAILED)
    })?;
    if status.code() == Some(SHELL_NOT_FOUND) {
        // `exec` found no such program (poppler does not exit with 127 itself).
        tracing::error!(program = job.program, "render: renderer not installed");
        return Err(unreadable(NO_POPPLER));
    }
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

/// All of stdout, or an error once it exceeds `max` bytes.
async fn read_capped(stdout: ChildStdout, max: usize) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    stdout
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(read_error)?;
    if out.len() > max {
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

/// What `parse` finds on the last line of pdfinfo's output it accepts. Lines are scanned
/// as they stream by and only the first bytes of each are kept, so metadata of any length
/// costs no memory. The last such line wins: the document's own strings (title etc.) come
/// first.
async fn scan_last<R: AsyncRead + Unpin, T>(
    mut r: R,
    parse: fn(&[u8]) -> Option<T>,
) -> Result<Option<T>, RenderError> {
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
                if let Some(p) = parse(&line) {
                    pages = Some(p);
                }
                line.clear();
            } else if line.len() <= KEEP {
                line.push(b);
            }
        }
    }
    if let Some(p) = parse(&line) {
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

/// `Page    3 size:  612 x 792 pts (letter)` → (612, 792).
fn parse_page_size_line(line: &[u8]) -> Option<(f64, f64)> {
    if line.len() > 64 {
        return None;
    }
    let rest = std::str::from_utf8(line.strip_prefix(b"Page ")?).ok()?;
    let mut words = rest.split_whitespace();
    words.next()?.parse::<u32>().ok()?;
    if words.next()? != "size:" {
        return None;
    }
    let width = words.next()?.parse::<f64>().ok()?;
    if words.next()? != "x" {
        return None;
    }
    let height = words.next()?.parse::<f64>().ok()?;
    (width.is_finite() && height.is_finite()).then_some((width, height))
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

    use super::pdf_fixture::{assemble, claiming, document, Page};

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
        assert_eq!(
            parse_page_size_line(b"Page    3 size:  612 x 792 pts (letter)"),
            Some((612.0, 792.0))
        );
        assert_eq!(
            parse_page_size_line(b"Page 5000 size:  0 x 0 pts"),
            Some((0.0, 0.0))
        );
        assert_eq!(parse_page_size_line(b"Page    3 rot:   0"), None);
        assert_eq!(parse_page_size_line(b"Pages:           3"), None);
    }

    #[tokio::test]
    async fn pages_line_last_wins_and_long_lines_cost_nothing() {
        let mut out = b"Title:  ".to_vec();
        out.extend(std::iter::repeat_n(b'x', 100_000));
        out.extend_from_slice(b"\nPages: 999\nPages:           3\nEncrypted: no\n");
        assert_eq!(
            scan_last(&out[..], parse_pages_line).await.expect("scans"),
            Some(3)
        );
    }

    #[test]
    fn image_target_sizes() {
        let max = MAX_OUTPUT_PIXELS;
        assert_eq!(image_target(40, 30, 100, max), (40, 30));
        assert_eq!(image_target(40, 30, 200, max), (80, 60));
        assert_eq!(image_target(40, 30, 50, max), (20, 15));
        assert_eq!(image_target(3200, 1000, 100, max), (1600, 500));
        assert_eq!(image_target(3200, 1000, 300, max), (4800, 1500));
        // Very tall images stay within the side limit.
        let (w, h) = image_target(1000, 20_000, 300, max);
        assert!(h <= MAX_SIDE_PX && w >= 1, "{w}x{h}");
    }

    /// Zoom cannot multiply an image past the output budget: the size is computed and
    /// clamped before any resize, keeping the aspect ratio.
    #[test]
    fn image_target_is_clamped_to_the_output_budget_at_any_zoom() {
        // A 1600 x 2263 scan at 300 % would be 4800 x 6789 (32.6 megapixels).
        let (w, h) = image_target(1600, 2263, 300, MAX_OUTPUT_PIXELS);
        assert!(u64::from(w) * u64::from(h) <= MAX_OUTPUT_PIXELS, "{w}x{h}");
        assert!(w >= 4100 && h >= 5800, "{w}x{h}");
        assert!((f64::from(h) / f64::from(w) - 2263.0 / 1600.0).abs() < 0.01);
        for (width, height) in [
            (10_000, 10_000),
            (1, 100_000_000),
            (100_000_000, 1),
            (1600, 15_000),
            (u32::MAX, u32::MAX),
        ] {
            for zoom in ZOOM_LEVELS {
                for max in [MAX_OUTPUT_PIXELS, output_pixels(16)] {
                    let (w, h) = image_target(width, height, *zoom, max);
                    assert!(
                        u64::from(w) * u64::from(h) <= max
                            && (1..=MAX_SIDE_PX).contains(&w)
                            && (1..=MAX_SIDE_PX).contains(&h),
                        "{width}x{height} at {zoom}% within {max}: {w}x{h}"
                    );
                }
            }
        }
        // Deep colour gets fewer pixels, so the output buffer stays within its bytes.
        assert_eq!(output_pixels(4), MAX_OUTPUT_PIXELS);
        assert_eq!(output_pixels(16) * 16, MAX_OUTPUT_RAW_BYTES);
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
    async fn renderers_run_under_the_memory_limit() {
        let job = Job {
            program: "sh",
            args: vec!["-c".into(), "ulimit -S -v".into()],
            capture: Capture::Bytes,
        };
        let (done, _) = run_poppler(vec![job], chunks(b""), MAX)
            .await
            .expect("runs");
        match &done[0].captured {
            Captured::Bytes(out) => {
                let limit: u64 = String::from_utf8_lossy(out)
                    .trim()
                    .parse()
                    .expect("a number");
                assert!(limit <= POPPLER_MAX_KIB, "{limit}");
            }
            _ => panic!("expected the output"),
        }
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

    #[test]
    fn page_counts_are_checked_against_the_size_and_the_cap() {
        assert_eq!(checked_pages(3, 1000).expect("plausible"), 3);
        assert_eq!(checked_pages(62, 1000).expect("plausible"), 62);
        assert_eq!(unreadable_msg(checked_pages(63, 1000)), PDF_IMPLAUSIBLE);
        assert_eq!(unreadable_msg(checked_pages(999_999, 461)), PDF_IMPLAUSIBLE);
        assert_eq!(
            unreadable_msg(checked_pages(u32::MAX, u64::MAX)),
            format!(
                "this PDF has {} pages, more than the 10000 the viewer can show",
                u32::MAX
            )
        );
        assert_eq!(
            checked_pages(MAX_PAGES, MAX).expect("at the cap"),
            MAX_PAGES
        );
        assert!(checked_pages(MAX_PAGES + 1, MAX).is_err());
    }

    #[tokio::test]
    async fn a_tiny_pdf_claiming_999999_pages_is_refused() {
        let doc = claiming(999_999, 0);
        assert!(doc.len() < 500);
        let m = unreadable_msg(page_count(Renderable::Pdf, chunks(&doc), MAX).await);
        assert_eq!(m, PDF_IMPLAUSIBLE);
        for page in [1, 2, 999_999] {
            let m =
                unreadable_msg(render_page(Renderable::Pdf, chunks(&doc), page, 100, MAX).await);
            assert_eq!(m, PDF_IMPLAUSIBLE, "page {page}");
        }
        // Big enough for its count, but past the cap.
        let doc = claiming(u64::from(MAX_PAGES) + 1, 200_000);
        let m = unreadable_msg(page_count(Renderable::Pdf, chunks(&doc), MAX).await);
        assert!(m.contains("more than the 10000"), "{m}");
    }

    /// Poppler allocates for the page count a file states before anything can check it;
    /// the memory limit makes such a file fail instead of taking gigabytes.
    #[tokio::test]
    async fn a_pdf_stating_30_million_pages_fails_within_the_memory_limit() {
        let doc = claiming(30_000_000, 0);
        let m = unreadable_msg(page_count(Renderable::Pdf, chunks(&doc), MAX).await);
        assert_eq!(m, PDF_FAILED);
    }

    /// Poppler renders a page the page tree states but the file lacks as one blank pixel;
    /// the viewer says it is not there instead.
    #[tokio::test]
    async fn stated_pages_the_file_lacks_are_out_of_range() {
        let doc = claiming(10_000, 170_000);
        assert_eq!(
            page_count(Renderable::Pdf, chunks(&doc), MAX)
                .await
                .expect("counts"),
            10_000
        );
        let png = render_page(Renderable::Pdf, chunks(&doc), 1, 100, MAX)
            .await
            .expect("page 1 is real");
        assert_eq!(decode_png(&png).dimensions(), (816, 1056));
        for page in [2, 5000, 10_000] {
            assert!(
                matches!(
                    render_page(Renderable::Pdf, chunks(&doc), page, 100, MAX).await,
                    Err(RenderError::PageOutOfRange { pages: 10_000, .. })
                ),
                "page {page}"
            );
        }
    }

    /// A page of 200 x 200 inches at 300 % would be a 57600 px square bitmap; it is
    /// rendered into the bounded slice instead.
    #[tokio::test]
    async fn huge_pdf_pages_render_within_the_slice() {
        let doc = pdf(&[(14_400, 14_400, "Poster")]);
        let png = render_page(Renderable::Pdf, chunks(&doc), 1, 300, MAX)
            .await
            .expect("renders");
        let (w, h) = decode_png(&png).dimensions();
        assert!(w <= PDF_SLICE_PX && h <= PDF_SLICE_PX, "{w}x{h}");
        assert!(u64::from(w) * u64::from(h) <= MAX_OUTPUT_PIXELS, "{w}x{h}");
    }

    /// A grey `side` x `side` PNG; the all-zero pixel buffer is never written, so it costs
    /// no memory, and it compresses to a few hundred kilobytes.
    fn uniform_png(side: u32) -> Vec<u8> {
        use image::codecs::png::{CompressionType, FilterType, PngEncoder};
        use image::ImageEncoder;
        let pixels = vec![0u8; side as usize * side as usize];
        let mut out = Vec::new();
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::NoFilter)
            .write_image(&pixels, side, side, image::ExtendedColorType::L8)
            .expect("encodes");
        out
    }

    #[tokio::test]
    async fn a_20000_square_png_is_refused_from_its_header() {
        let png = uniform_png(20_000);
        assert!(png.len() < 2_000_000, "{}", png.len());
        let started = std::time::Instant::now();
        let m = unreadable_msg(page_count(Renderable::Image, chunks(&png), MAX).await);
        assert!(m.contains("too large to show: 20000 x 20000 pixels"), "{m}");
        for zoom in [100, 300] {
            let m =
                unreadable_msg(render_page(Renderable::Image, chunks(&png), 1, zoom, MAX).await);
            assert!(m.contains("20000 x 20000 pixels"), "{m}");
        }
        // Decoding 400 megapixels takes seconds; reading a header does not.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    /// A 16-bit RGBA image under the pixel cap but over the decoder's memory: refused from
    /// its header with a clear message, on the viewer page and for its page image alike.
    #[tokio::test]
    async fn a_deep_colour_image_over_the_decoding_memory_is_refused_from_its_header() {
        use image::codecs::png::{CompressionType, FilterType, PngEncoder};
        use image::ImageEncoder;
        let side = 7_200u32; // 51.8 megapixels, 8 bytes each: 415 MB decoded
        let pixels = vec![0u8; side as usize * side as usize * 8];
        let mut png = Vec::new();
        PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::NoFilter)
            .write_image(&pixels, side, side, image::ExtendedColorType::Rgba16)
            .expect("encodes");
        drop(pixels);
        let m = unreadable_msg(page_count(Renderable::Image, chunks(&png), MAX).await);
        assert!(
            m.contains("needs more memory than the viewer decodes"),
            "{m}"
        );
        let m = unreadable_msg(render_page(Renderable::Image, chunks(&png), 1, 100, MAX).await);
        assert!(m.contains("needs more memory"), "{m}");
    }

    /// Zoom multiplies the base size, but never past the output budget.
    #[tokio::test]
    async fn zoomed_images_stay_within_the_output_budget() {
        let input = encoded(&rgb_image(1600, 2263), ImageFormat::Png);
        let png = render_page(Renderable::Image, chunks(&input), 1, 300, MAX)
            .await
            .expect("renders at 300%");
        let (w, h) = decode_png(&png).dimensions();
        assert!(u64::from(w) * u64::from(h) <= MAX_OUTPUT_PIXELS, "{w}x{h}");
        assert!(w > 4000 && h > 5700, "{w}x{h}");
    }

    #[tokio::test]
    async fn waiting_for_a_render_slot_is_bounded() {
        static SMALL: Queue = Queue::new(1, 1, Duration::from_millis(200));
        let held = SMALL.slot().await.expect("a free slot");
        // One may wait, and gives up after the timeout.
        let started = std::time::Instant::now();
        let waiter = tokio::spawn(async { SMALL.slot().await.map(drop) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The line is full: turned away at once.
        assert!(matches!(SMALL.slot().await, Err(RenderError::Busy)));
        assert!(started.elapsed() < Duration::from_millis(150));
        assert!(matches!(
            waiter.await.expect("joins"),
            Err(RenderError::Busy)
        ));
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Giving up left the line: the next waiter gets the slot once it is free.
        let waiter = tokio::spawn(async { SMALL.slot().await.map(drop) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(waiter.await.expect("joins").is_ok());
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
