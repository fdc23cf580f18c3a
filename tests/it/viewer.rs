//! The view-only viewer, end to end: page images for a multi-page PDF and for JPEG and TIFF
//! scans, the headers every answer carries, no original bytes under a view grant, page
//! URLs that stop answering the moment the grant is revoked or expires, and bounds that
//! hold whatever a file claims (page counts, pages that are not there, pixels).

use std::io::Cursor;

use rocket::http::{Header, Status};
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::archive::{setup, upload};
use crate::common::{bearer, TestApp};
use crate::pdf_fixture::{claiming, document, Page};

const PURPOSE: &str = "reviewing the signed contract for complaint #4711";
const MARKER: &str = "STRONGROOM-VIEWER-MARKER-7f3a";

/// A valid PDF of `pages` US-letter pages, each showing a line of text with `MARKER`.
pub fn pdf(pages: usize) -> Vec<u8> {
    let pages: Vec<Page> = (1..=pages)
        .map(|i| Page::letter(&format!("{MARKER} page {i}")))
        .collect();
    document(&pages)
}

fn scan(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(120, 90, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 2) as u8, 128])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

struct World {
    app: TestApp,
    record: String,
    employee: String,
    sup: String,
    other: String,
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(config: impl FnOnce(&mut strongroom::config::Config)) -> World {
    let app = TestApp::with_config(config).await;
    let (archivist, contracts) = setup(&app).await;
    let (s, r) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({
                "category_id": contracts["id"], "title": "Framework agreement",
                "fields": {"company_name": "Huaxin"}
            }),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let record = r["id"].as_str().unwrap().to_string();
    let employee = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let other = app.user_token("emp2", &[Role::Employee], "Retail").await;
    World {
        app,
        record,
        employee,
        sup,
        other,
    }
}

impl World {
    async fn file(&self, name: &str, content: &[u8]) -> String {
        let (_, archivist) = self.app.login_as(Role::Archivist).await;
        let (s, f) = upload(&self.app, &archivist, &self.record, name, content).await;
        assert_eq!(s, Status::Created, "{f}");
        f["id"].as_str().unwrap().to_string()
    }

    async fn view_grant(&self) -> String {
        let (s, r) = self
            .app
            .post("/api/v1/requests", &self.employee, json!({"record_id": self.record, "kind": "view", "purpose": PURPOSE, "duration_hours": 4}))
            .await;
        assert_eq!(s, Status::Created, "{r}");
        let (s, r) = self
            .app
            .post(
                &format!("/api/v1/requests/{}/approve", r["id"].as_str().unwrap()),
                &self.sup,
                json!({"comment": "ok"}),
            )
            .await;
        assert_eq!(s, Status::Ok, "{r}");
        r["grant"]["id"].as_str().unwrap().to_string()
    }

    async fn fetch(&self, path: &str, token: &str) -> (Status, Vec<(String, String)>, Vec<u8>) {
        self.fetch_in(path, token, "en").await
    }

    /// `fetch`, asking for the pages in `lang`.
    async fn fetch_in(
        &self,
        path: &str,
        token: &str,
        lang: &str,
    ) -> (Status, Vec<(String, String)>, Vec<u8>) {
        let res = self
            .app
            .client
            .get(path.to_string())
            .header(bearer(token))
            .header(Header::new("Accept-Language", lang.to_string()))
            .dispatch()
            .await;
        let status = res.status();
        let headers = res
            .headers()
            .iter()
            .map(|h: Header<'_>| (h.name().to_string(), h.value().to_string()))
            .collect();
        (status, headers, res.into_bytes().await.unwrap_or_default())
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

fn png_size(body: &[u8]) -> (u32, u32) {
    assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let img = image::load_from_memory_with_format(body, image::ImageFormat::Png).unwrap();
    (img.width(), img.height())
}

/// What every page image must carry, exactly.
fn assert_page_headers(h: &[(String, String)]) {
    assert_eq!(header(h, "Content-Type"), Some("image/png"));
    assert_eq!(header(h, "Content-Disposition"), Some("inline"));
    assert_eq!(header(h, "Cache-Control"), Some("no-store"));
    assert_eq!(header(h, "X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(
        header(h, "Content-Security-Policy"),
        Some(strongroom::web::viewer::IMAGE_CSP)
    );
}

#[tokio::test]
async fn a_multi_page_pdf_is_shown_as_page_images_and_never_as_the_file() {
    let w = world().await;
    let original = pdf(3);
    let file = w.file("contract.pdf", &original).await;
    let grant = w.view_grant().await;
    let view = format!("/view/{grant}/files/{file}");
    let (s, h, body) = w.fetch(&view, &w.employee).await;
    assert_eq!(s, Status::Ok, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&h, "Cache-Control"), Some("no-store"));
    assert_eq!(header(&h, "X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(
        header(&h, "Content-Security-Policy"),
        Some(strongroom::web::viewer::VIEWER_PAGE_CSP)
    );
    let html = String::from_utf8(body).unwrap();
    for p in 1..=3 {
        assert!(
            html.contains(&format!("{view}/pages/{p}?zoom=100")),
            "{html}"
        );
    }
    assert!(!html.contains("/pages/4"));
    assert!(!html.contains("<embed") && !html.contains("<object") && !html.contains("<iframe"));
    let mut sizes = Vec::new();
    for p in 1..=3 {
        let (s, h, body) = w.fetch(&format!("{view}/pages/{p}"), &w.employee).await;
        assert_eq!(s, Status::Ok, "{}", String::from_utf8_lossy(&body));
        assert_page_headers(&h);
        assert!(!contains(&body, b"%PDF") && !contains(&body, MARKER.as_bytes()));
        sizes.push(png_size(&body));
    }
    // 612 x 792 pt at 96 dpi, and twice that at 200 %.
    assert_eq!(sizes, vec![(816, 1056); 3]);
    let (s, _, body) = w
        .fetch(&format!("{view}/pages/2?zoom=200"), &w.employee)
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(png_size(&body), (1632, 2112));
    let (s, _, _) = w.fetch(&format!("{view}/pages/4"), &w.employee).await;
    assert_eq!(s, Status::NotFound);
    // Someone else cannot use the grant, even knowing its URL.
    let (s, _, body) = w.fetch(&format!("{view}/pages/1"), &w.other).await;
    assert_eq!(s, Status::NotFound);
    assert!(!contains(&body, &original[..64]));
    let (s, _, _) = w.fetch(&format!("{view}/pages/1"), &w.sup).await;
    assert_eq!(s, Status::NotFound);
    // Opening and every page read are audited with the grant id.
    let events: Vec<(String, Value)> = sqlx::query_as(
        "SELECT action, detail FROM audit_events WHERE action LIKE 'file.view.%' ORDER BY pos",
    )
    .fetch_all(&w.app.db)
    .await
    .unwrap();
    let opens = events.iter().filter(|(a, _)| a == "file.view.open").count();
    let pages: Vec<i64> = events
        .iter()
        .filter(|(a, _)| a == "file.view.page")
        .map(|(_, d)| d["page"].as_i64().unwrap())
        .collect();
    assert_eq!(opens, 1);
    assert_eq!(pages, vec![1, 2, 3, 2]);
    assert!(events.iter().all(|(_, d)| d["grant"] == grant.as_str()));
    // No route hands out the file: the JSON file list has no content, and there is no
    // download URL under the grant.
    for path in [
        format!("{view}/download"),
        format!("{view}/content"),
        format!("/api/v1/records/{}/files/{file}", w.record),
        format!("/api/v1/records/{}/files/{file}/content", w.record),
    ] {
        let (s, h, body) = w.fetch(&path, &w.employee).await;
        assert!(
            s == Status::NotFound || s == Status::MethodNotAllowed,
            "{path}: {s}"
        );
        assert!(!contains(&body, &original[..64]), "{path}");
        assert!(header(&h, "Content-Disposition").is_none_or(|v| !v.contains("attachment")));
    }
}

#[tokio::test]
async fn scans_are_decoded_and_re_encoded_and_other_files_get_a_clear_message() {
    let w = world().await;
    let jpeg = scan(image::ImageFormat::Jpeg);
    let tiff = scan(image::ImageFormat::Tiff);
    let jf = w.file("scan.jpg", &jpeg).await;
    let tf = w.file("scan.tiff", &tiff).await;
    let txt = w
        .file("notes.txt", b"plain words the viewer will not render")
        .await;
    let broken = w
        .file("broken.pdf", b"%PDF-1.4 this is not really a PDF")
        .await;
    let grant = w.view_grant().await;
    for (file, original) in [(&jf, &jpeg), (&tf, &tiff)] {
        let view = format!("/view/{grant}/files/{file}");
        let (s, _, html) = w.fetch(&view, &w.employee).await;
        assert_eq!(s, Status::Ok);
        assert!(String::from_utf8_lossy(&html).contains("/pages/1?zoom=100"));
        let (s, h, body) = w.fetch(&format!("{view}/pages/1"), &w.employee).await;
        assert_eq!(s, Status::Ok, "{}", String::from_utf8_lossy(&body));
        assert_page_headers(&h);
        assert_eq!(png_size(&body), (120, 90));
        assert_ne!(&body, original);
        assert!(!contains(&body, &original[..32]));
        let (s, _, _) = w.fetch(&format!("{view}/pages/2"), &w.employee).await;
        assert_eq!(s, Status::NotFound);
    }
    for (file, needle) in [
        (&txt, "cannot be shown in the viewer"),
        (&broken, "could not be rendered"),
    ] {
        let view = format!("/view/{grant}/files/{file}");
        let (s, _, html) = w.fetch(&view, &w.employee).await;
        assert_eq!(s, Status::Ok);
        let html = String::from_utf8(html).unwrap();
        assert!(html.contains(needle), "{html}");
        assert!(!html.contains("/pages/1"));
        let (s, h, body) = w.fetch(&format!("{view}/pages/1"), &w.employee).await;
        assert_eq!(s, Status::UnprocessableEntity);
        assert!(!contains(&body, b"plain words") && !contains(&body, b"not really a PDF"));
        assert_ne!(header(&h, "Content-Type"), Some("image/png"));
    }
}

#[tokio::test]
async fn page_urls_answer_403_right_after_revocation_and_after_expiry() {
    let w = world().await;
    let file = w.file("contract.pdf", &pdf(2)).await;
    let grant = w.view_grant().await;
    let page = format!("/view/{grant}/files/{file}/pages/1");
    let (s, _, _) = w.fetch(&page, &w.employee).await;
    assert_eq!(s, Status::Ok);
    let (s, g) = w
        .app
        .post(
            &format!("/api/v1/grants/{grant}/revoke"),
            &w.sup,
            json!({"reason": "no longer needed"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{g}");
    let revoked_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT revoked_at FROM grants WHERE id = $1::uuid")
            .bind(&grant)
            .fetch_one(&w.app.db)
            .await
            .unwrap();
    // Shown in the person's zone (the vault's default here), to the minute.
    let when = revoked_at
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%-d %b %Y, %H:%M")
        .to_string();
    let (s, h, body) = w.fetch(&page, &w.employee).await;
    assert_eq!(s, Status::Forbidden);
    assert_ne!(header(&h, "Content-Type"), Some("image/png"));
    assert!(!body.starts_with(b"\x89PNG"));
    // The page image says why, for the viewer to show in place of the pages.
    assert_eq!(header(&h, "X-Grant-State"), Some("revoked"));
    assert_eq!(header(&h, "Content-Type"), Some("application/json"));
    assert_eq!(header(&h, "Cache-Control"), Some("no-store"));
    let why: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(why["error"]["code"], "grant_ended", "{why}");
    assert_eq!(why["grant"]["state"], "revoked", "{why}");
    let message = why["grant"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!("sup display revoked your view grant on {when}. Its pages can no longer be shown.")
    );
    assert_eq!(
        why["grant"]["request_url"],
        format!("/records/{}#request", w.record)
    );
    // So does the viewer page itself: a page with the reason, not a bare refusal.
    let (s, h, body) = w
        .fetch(&format!("/view/{grant}/files/{file}"), &w.employee)
        .await;
    assert_eq!(s, Status::Forbidden);
    assert_eq!(header(&h, "X-Grant-State"), Some("revoked"));
    assert_eq!(header(&h, "Cache-Control"), Some("no-store"));
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(r#"id="grant-ended""#), "{html}");
    assert!(html.contains(message), "{html}");
    assert!(
        html.contains(&format!(
            r#"href="/records/{}#request">Request access again"#,
            w.record
        )),
        "{html}"
    );
    assert_eq!(page_images(&html), 0, "{html}");
    // In Chinese, too.
    let (s, _, body) = w
        .fetch_in(&format!("/view/{grant}/files/{file}"), &w.employee, "zh-CN")
        .await;
    assert_eq!(s, Status::Forbidden);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(r#"<html lang="zh-CN">"#), "{html}");
    let when_zh = revoked_at
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M")
        .to_string();
    assert!(
        html.contains(&format!("sup display 已于 {when_zh} 撤销您的调阅授权")),
        "{html}"
    );
    assert!(html.contains("重新申请调阅"), "{html}");
    // Someone else learns nothing from the grant's id: refused as before.
    let (s, h, body) = w.fetch(&page, &w.other).await;
    assert_eq!(s, Status::NotFound);
    assert!(header(&h, "X-Grant-State").is_none());
    assert!(!contains(&body, b"sup display"));
    // A second grant runs out: refused at once, before any job has marked it expired.
    let grant = w.view_grant().await;
    let page = format!("/view/{grant}/files/{file}/pages/2");
    let (s, _, _) = w.fetch(&page, &w.employee).await;
    assert_eq!(s, Status::Ok);
    sqlx::query("UPDATE grants SET valid_until = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&grant)
        .execute(&w.app.db)
        .await
        .unwrap();
    let (s, h, body) = w.fetch(&page, &w.employee).await;
    assert_eq!(s, Status::Forbidden);
    assert_eq!(header(&h, "X-Grant-State"), Some("expired"));
    let why: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        why["grant"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Your view grant expired on "),
        "{why}"
    );
    let (s, _, body) = w
        .fetch(&format!("/view/{grant}/files/{file}"), &w.employee)
        .await;
    assert_eq!(s, Status::Forbidden);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("Your view grant expired on "), "{html}");
    assert!(html.contains("Request access again"), "{html}");
    let denied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'file.view' AND outcome = 'denied'",
    )
    .fetch_one(&w.app.db)
    .await
    .unwrap();
    assert!(denied >= 6, "{denied}");
}

/// How many page images a viewer page shows.
fn page_images(html: &str) -> usize {
    html.matches("<img ").count()
}

#[tokio::test]
async fn a_tiny_pdf_claiming_999999_pages_gets_a_small_viewer_page_and_no_page_renders() {
    let w = world().await;
    let liar = claiming(999_999, 0);
    assert!(liar.len() < 500, "{}", liar.len());
    let file = w.file("liar.pdf", &liar).await;
    let grant = w.view_grant().await;
    let view = format!("/view/{grant}/files/{file}");
    let (s, _, body) = w.fetch(&view, &w.employee).await;
    assert_eq!(s, Status::Ok);
    assert!(body.len() < 200_000, "{} bytes of HTML", body.len());
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains("states more pages than the file can hold"),
        "{html}"
    );
    assert_eq!(page_images(&html), 0, "{html}");
    for page in [1, 2, 500_000, 999_999] {
        let (s, h, _) = w.fetch(&format!("{view}/pages/{page}"), &w.employee).await;
        assert_eq!(s, Status::UnprocessableEntity, "page {page}");
        assert_ne!(header(&h, "Content-Type"), Some("image/png"));
    }
}

/// A count the file's size does not rule out is paged: each viewer page lists at most 20
/// page images and links to the others, and the pages the file does not hold are missing,
/// not rendered as blanks.
#[tokio::test]
async fn a_pdf_claiming_10000_pages_is_shown_20_at_a_time_and_missing_pages_are_404() {
    let w = world().await;
    let liar = claiming(10_000, 170_000);
    let file = w.file("padded.pdf", &liar).await;
    let grant = w.view_grant().await;
    let view = format!("/view/{grant}/files/{file}");
    for (query, first, last) in [
        ("", 1, 20),
        ("?p=5000", 4981, 5000),
        ("?p=9999&zoom=200", 9981, 10_000),
    ] {
        let (s, _, body) = w.fetch(&format!("{view}{query}"), &w.employee).await;
        assert_eq!(s, Status::Ok, "{query}");
        assert!(body.len() < 200_000, "{query}: {} bytes", body.len());
        let html = String::from_utf8(body).unwrap();
        assert_eq!(page_images(&html), 20, "{query}");
        for p in [first, last] {
            assert!(
                html.contains(&format!("{view}/pages/{p}?zoom=")),
                "{query}: {p}"
            );
        }
        assert!(!html.contains(&format!("/pages/{}?", last + 1)), "{query}");
        assert!(
            html.contains(&format!("Pages {first}–{last} of 10000")),
            "{query}"
        );
        assert!(html.contains(r#"<form method="get""#) && html.contains(r#"name="p""#));
    }
    // Only page 1 is in the file: the others the page tree states are not rendered.
    let (s, h, body) = w.fetch(&format!("{view}/pages/1"), &w.employee).await;
    assert_eq!(s, Status::Ok, "{}", String::from_utf8_lossy(&body));
    assert_page_headers(&h);
    assert_eq!(png_size(&body), (816, 1056));
    for page in [2u64, 5000, 10_000, 10_001, 4_000_000_000] {
        let (s, h, _) = w.fetch(&format!("{view}/pages/{page}"), &w.employee).await;
        assert_eq!(s, Status::NotFound, "page {page}");
        assert_ne!(header(&h, "Content-Type"), Some("image/png"));
    }
    for p in [0u64, 10_001, 4_000_000_000] {
        let (s, _, _) = w.fetch(&format!("{view}?p={p}"), &w.employee).await;
        assert_eq!(s, Status::NotFound, "p={p}");
    }
}

/// Every `<script>` of a page loads a file of the site's (no inline script: the policy
/// would refuse it anyway).
fn scripts_are_files(html: &str) -> bool {
    html.match_indices("<script")
        .all(|(i, _)| html[i..].starts_with(r#"<script src="/static/"#))
}

#[tokio::test]
async fn a_long_pdf_is_paged_with_previous_next_and_go_to_page() {
    let w = world().await;
    let file = w.file("long.pdf", &pdf(45)).await;
    let grant = w.view_grant().await;
    let view = format!("/view/{grant}/files/{file}");
    let (s, _, body) = w.fetch(&view, &w.employee).await;
    assert_eq!(s, Status::Ok);
    let html = String::from_utf8(body).unwrap();
    assert_eq!(page_images(&html), 20);
    // The controls the script drives, reachable by stable ids, and page N of M.
    for id in [
        "zoom-in",
        "zoom-out",
        "zoom",
        "page-prev",
        "page-next",
        "page-go",
        "pages",
    ] {
        assert!(html.contains(&format!(r#"id="{id}""#)), "{id}: {html}");
    }
    for p in 1..=20 {
        assert!(
            html.contains(&format!(
                r#"<img id="page-{p}" src="{view}/pages/{p}?zoom=100""#
            )),
            "{p}: {html}"
        );
    }
    assert!(
        html.contains(
            r#"<p id="page-status" class="viewer-status" aria-live="polite">Page 1 of 45</p>"#
        ),
        "{html}"
    );
    assert!(
        html.contains(r#"<input id="page-go" type="number" name="p" min="1" max="45" value="1""#),
        "{html}"
    );
    assert!(
        html.contains(
            r##"<a id="page-next" class="button" rel="next" href="#page-2">Next page</a>"##
        ),
        "{html}"
    );
    assert!(
        html.contains(r#"<a id="page-prev" class="button" aria-disabled="true">"#),
        "{html}"
    );
    assert!(html.contains("Pages 1–20 of 45"), "{html}");
    // Fitted to the width by default, with the zoom levels offered, lazily loaded in order.
    assert!(html.contains(r#"class="viewer-pages fit""#), "{html}");
    assert!(
        html.contains(r#"<option value="fit" selected>Fit to width</option>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<option value="300">300 %</option>"#),
        "{html}"
    );
    assert_eq!(html.matches(r#"loading="lazy""#).count(), 20);
    assert!(
        html.contains(&format!(r#"href="{view}?p=21">Next pages"#)),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"href="{view}?p=41">Last pages"#)),
        "{html}"
    );
    assert!(html.contains(&format!(
        r#"<form method="get" action="{view}" id="page-form""#
    )));
    assert!(html.contains(r#"<script src="/static/viewer.js" defer></script>"#));
    assert!(scripts_are_files(&html), "{html}");
    // "Go to page 27" (the form, without the script) lands on the window that holds it,
    // at the zoom in use, with page 27 as the current page.
    let (s, _, body) = w.fetch(&format!("{view}?zoom=150&p=27"), &w.employee).await;
    assert_eq!(s, Status::Ok);
    let html = String::from_utf8(body).unwrap();
    assert_eq!(page_images(&html), 20);
    assert!(html.contains("Pages 21–40 of 45"), "{html}");
    assert!(html.contains("Page 27 of 45"), "{html}");
    assert!(html.contains(&format!("{view}/pages/27?zoom=150")));
    assert!(html.contains(r#"class="viewer-pages zoomed""#), "{html}");
    assert!(
        html.contains(r#"<option value="150" selected>150 %</option>"#),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"href="{view}?zoom=150&amp;p=1">Previous pages"#)),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"href="{view}?zoom=150&amp;p=41">Next pages"#)),
        "{html}"
    );
    assert!(html.contains(r##"rel="prev" href="#page-26""##), "{html}");
    assert!(
        html.contains(&format!(
            r#"id="zoom-in" class="button" href="{view}?zoom=200&amp;p=27""#
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            r#"id="zoom-out" class="button" href="{view}?zoom=125&amp;p=27""#
        )),
        "{html}"
    );
    // At a window's edge, previous/next lead to the neighbouring window.
    let (s, _, body) = w.fetch(&format!("{view}?p=40"), &w.employee).await;
    assert_eq!(s, Status::Ok);
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains(&format!(r#"rel="next" href="{view}?p=41""#)),
        "{html}"
    );
    let (s, _, body) = w.fetch(&format!("{view}?p=45"), &w.employee).await;
    assert_eq!(s, Status::Ok);
    let html = String::from_utf8(body).unwrap();
    assert_eq!(page_images(&html), 5);
    assert!(
        html.contains(r#"<a id="page-next" class="button" aria-disabled="true">"#),
        "{html}"
    );
    assert!(!html.contains("Next pages"));
    let (s, _, _) = w.fetch(&format!("{view}?p=46"), &w.employee).await;
    assert_eq!(s, Status::NotFound);
    let (s, _, _) = w.fetch(&format!("{view}/pages/46"), &w.employee).await;
    assert_eq!(s, Status::NotFound);
    // Which window was shown is in the audit trail.
    let shown: Vec<Value> = sqlx::query_scalar(
        "SELECT detail->'shown' FROM audit_events WHERE action = 'file.view.open' ORDER BY pos",
    )
    .fetch_all(&w.app.db)
    .await
    .unwrap();
    assert_eq!(
        shown,
        vec![
            json!([1, 20]),
            json!([21, 40]),
            json!([21, 40]),
            json!([41, 45])
        ]
    );
}

#[tokio::test]
async fn the_viewer_page_is_written_in_chinese_for_chinese_readers() {
    let w = world().await;
    let file = w.file("contract.pdf", &pdf(3)).await;
    let grant = w.view_grant().await;
    let view = format!("/view/{grant}/files/{file}");
    let (s, _, body) = w.fetch_in(&view, &w.employee, "zh-CN").await;
    assert_eq!(s, Status::Ok);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(r#"<html lang="zh-CN">"#), "{html}");
    for text in [
        "第 1 页，共 3 页",
        "适合宽度",
        "上一页",
        "下一页",
        "跳至第几页",
        "共 3 页",
        "仅供在线调阅",
        "打印须经导出审批",
    ] {
        assert!(html.contains(text), "{text}: {html}");
    }
    // The time left, in Chinese units (a 4-hour grant).
    assert!(
        html.contains("剩余 3 小时 59 分钟") || html.contains("剩余 4 小时 0 分钟"),
        "{html}"
    );
    assert!(!html.contains("Fit to width") && !html.contains("Next page"));
}

#[tokio::test]
async fn the_time_left_is_shown_and_given_to_the_countdown() {
    let w = world().await;
    let file = w.file("contract.pdf", &pdf(1)).await;
    let grant = w.view_grant().await;
    let (s, _, body) = w
        .fetch(&format!("/view/{grant}/files/{file}"), &w.employee)
        .await;
    assert_eq!(s, Status::Ok);
    let html = String::from_utf8(body).unwrap();
    let at = html
        .find(r#"<span id="time-left" data-seconds=""#)
        .expect("time left");
    let rest = &html[at + r#"<span id="time-left" data-seconds=""#.len()..];
    let seconds: i64 = rest[..rest.find('"').unwrap()].parse().unwrap();
    assert!((4 * 3600 - 120..=4 * 3600).contains(&seconds), "{seconds}");
    assert!(
        html.contains(">3 h 59 min left</span>") || html.contains(">4 h 0 min left</span>"),
        "{html}"
    );
    assert!(html.contains(r#"data-fmt-hm="{h} h {m} min""#), "{html}");
}

/// Printing shows a note, never the pages; the note says what a printout needs.
#[tokio::test]
async fn the_print_style_sheet_hides_the_pages_and_shows_a_note() {
    let w = world().await;
    let file = w.file("contract.pdf", &pdf(2)).await;
    let grant = w.view_grant().await;
    let (s, _, body) = w
        .fetch(&format!("/view/{grant}/files/{file}"), &w.employee)
        .await;
    assert_eq!(s, Status::Ok);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(r#"<link rel="stylesheet" href="/static/viewer.css">"#));
    assert!(html.contains(r#"<p class="print-note">This document is shown in the viewer only. Printing it needs an approved export request"#), "{html}");
    // The style sheet needs no session, like the site's other one.
    let res = w.app.client.get("/static/viewer.css").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.content_type(), Some(rocket::http::ContentType::CSS));
    let css = res.into_string().await.unwrap();
    let print = &css[css.find("@media print").expect("print rules")..];
    let hide = print.find("display: none !important").expect("hides");
    let hidden = &print[..hide];
    for sel in [
        "#pages",
        "#pages img",
        "main > *:not(.print-note)",
        "body > header",
    ] {
        assert!(
            hidden.contains(sel),
            "{sel} is not hidden in print: {print}"
        );
    }
    assert!(
        print.contains(".print-note { display: block !important"),
        "{print}"
    );
    // On screen the note is hidden and pages never overflow to the left: no centring flex box.
    assert!(css.contains(".print-note { display: none; }"));
    assert!(!css.contains("align-items: center; gap: 1.5rem"));
    assert!(css.contains("margin: 0 auto 1.5rem"));
    let res = w.app.client.get("/static/viewer.js").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(
        res.content_type(),
        Some(rocket::http::ContentType::JavaScript)
    );
    let js = res.into_string().await.unwrap();
    for needle in [
        "ArrowLeft",
        "PageDown",
        "X-Grant-State",
        "grant-ended",
        "?zoom=",
    ] {
        assert!(js.contains(needle), "{needle}");
    }
}

/// A page asked for again with a retry marker (as the script does after a busy answer)
/// is the same page, audited again.
#[tokio::test]
async fn a_retried_page_is_served_and_audited() {
    let w = world().await;
    let file = w.file("contract.pdf", &pdf(1)).await;
    let grant = w.view_grant().await;
    let (s, h, body) = w
        .fetch(
            &format!("/view/{grant}/files/{file}/pages/1?zoom=125&try=2"),
            &w.employee,
        )
        .await;
    assert_eq!(s, Status::Ok, "{}", String::from_utf8_lossy(&body));
    assert_page_headers(&h);
    assert_eq!(png_size(&body), (1020, 1320));
    assert_eq!(page_events(&w).await.len(), 1);
}

/// A grey 20000 x 20000 PNG, encoded without ever touching the pixel buffer (all zeros, so
/// it stays unallocated) and compressed to a few hundred kilobytes.
fn huge_png() -> Vec<u8> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let (width, height) = (20_000u32, 20_000u32);
    let pixels = vec![0u8; (width * height) as usize];
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&pixels, width, height, image::ExtendedColorType::L8)
        .unwrap();
    out
}

#[tokio::test]
async fn a_20000_square_png_is_refused_from_its_header_promptly() {
    let w = world().await;
    let png = huge_png();
    assert!(png.len() < 2_000_000, "{}", png.len());
    let file = w.file("poster.png", &png).await;
    let grant = w.view_grant().await;
    let view = format!("/view/{grant}/files/{file}");
    let started = std::time::Instant::now();
    let (s, _, body) = w.fetch(&view, &w.employee).await;
    assert_eq!(s, Status::Ok);
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains("too large to show: 20000 x 20000 pixels"),
        "{html}"
    );
    assert_eq!(page_images(&html), 0);
    for zoom in [100, 300] {
        let (s, h, body) = w
            .fetch(&format!("{view}/pages/1?zoom={zoom}"), &w.employee)
            .await;
        assert_eq!(s, Status::UnprocessableEntity);
        assert_ne!(header(&h, "Content-Type"), Some("image/png"));
        assert!(
            String::from_utf8_lossy(&body).contains("20000 x 20000 pixels"),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    // Decoding alone would take seconds; the header is read in microseconds.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

// ----- the viewer's cache -----

/// A PDF of `pages` US-letter pages full of text (the rendered pages weigh tens of KiB).
fn dense_pdf(pages: usize) -> Vec<u8> {
    let pages: Vec<Page> = (1..=pages)
        .map(|i| {
            let mut text = format!("BT /F1 24 Tf 72 720 Td ({MARKER} page {i}) Tj ET\nBT /F1 11 Tf 14 TL 72 680 Td\n");
            for l in 0..40 {
                text.push_str(&format!("(Line {l:02} of page {i}: the quick brown fox jumps over the lazy dog.) Tj T*\n"));
            }
            text.push_str("ET");
            Page {
                width: 612,
                height: 792,
                content: text,
            }
        })
        .collect();
    document(&pages)
}

fn cache_stats(w: &World) -> strongroom::viewer::cache::CacheStats {
    w.app.app().viewer_cache.stats()
}

fn cached_for(w: &World, grant: &str) -> usize {
    w.app
        .app()
        .viewer_cache
        .entries_for_grant(grant.parse().unwrap())
}

/// Waits (at most 30 s) until the look-ahead has rendered `n` pages in all.
async fn prefetched(w: &World, n: u64) {
    for _ in 0..300 {
        if cache_stats(w).prefetched >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("look-ahead did not render {n} pages: {:?}", cache_stats(w));
}

async fn page_events(w: &World) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE action = 'file.view.page' ORDER BY pos",
    )
    .fetch_all(&w.app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_page_served_twice_is_decrypted_and_rendered_once_and_audited_each_time() {
    let w = world().await;
    let file = w.file("contract.pdf", &pdf(3)).await;
    let grant = w.view_grant().await;
    let view = format!("/view/{grant}/files/{file}");
    let (s, _, _) = w.fetch(&view, &w.employee).await;
    assert_eq!(s, Status::Ok);
    let s0 = cache_stats(&w);
    assert_eq!((s0.decrypts, s0.renders), (1, 0), "{s0:?}");
    let (s, h, first) = w.fetch(&format!("{view}/pages/1"), &w.employee).await;
    assert_eq!(s, Status::Ok);
    assert_page_headers(&h);
    let (s, h, again) = w.fetch(&format!("{view}/pages/1"), &w.employee).await;
    assert_eq!(s, Status::Ok);
    assert_page_headers(&h);
    assert_eq!(first, again);
    assert_eq!(png_size(&again), (816, 1056));
    // The opening decrypted the file once; page 1 was rendered once and served twice.
    let s1 = cache_stats(&w);
    assert_eq!(s1.decrypts, 1, "{s1:?}");
    assert!(s1.hits >= 1, "{s1:?}");
    // The pages after it are rendered ahead, from the same decrypted copy.
    prefetched(&w, 2).await;
    for p in 2..=3 {
        let (s, _, body) = w.fetch(&format!("{view}/pages/{p}"), &w.employee).await;
        assert_eq!(s, Status::Ok);
        assert_eq!(png_size(&body), (816, 1056));
        assert!(!contains(&body, MARKER.as_bytes()));
    }
    let s2 = cache_stats(&w);
    assert_eq!((s2.decrypts, s2.renders), (1, 3), "{s2:?}");
    assert_eq!(s2.hits, 3, "{s2:?}");
    // Another zoom is another render.
    let (s, _, body) = w
        .fetch(&format!("{view}/pages/2?zoom=200"), &w.employee)
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(png_size(&body), (1632, 2112));
    assert_eq!(cache_stats(&w).decrypts, 1);
    // Every page served is audited, from the cache or not.
    let events = page_events(&w).await;
    let seen: Vec<(i64, bool)> = events
        .iter()
        .map(|d| (d["page"].as_i64().unwrap(), d["cached"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        seen,
        vec![(1, false), (1, true), (2, true), (3, true), (2, false)]
    );
    assert!(events.iter().all(|d| d["grant"] == grant.as_str()));
}

#[tokio::test]
async fn a_revoked_or_expired_grant_is_never_served_from_the_cache_and_leaves_nothing_in_it() {
    let w = world().await;
    let file = w.file("contract.pdf", &pdf(3)).await;
    let grant = w.view_grant().await;
    let view = format!("/view/{grant}/files/{file}");
    let (s, _, _) = w.fetch(&view, &w.employee).await;
    assert_eq!(s, Status::Ok);
    let (s, _, _) = w.fetch(&format!("{view}/pages/1"), &w.employee).await;
    assert_eq!(s, Status::Ok);
    prefetched(&w, 2).await;
    // The content and pages 1 to 3.
    assert_eq!(cached_for(&w, &grant), 4);
    let (s, g) = w
        .app
        .post(
            &format!("/api/v1/grants/{grant}/revoke"),
            &w.sup,
            json!({"reason": "no longer needed"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{g}");
    assert_eq!(cached_for(&w, &grant), 0);
    let hits = cache_stats(&w).hits;
    for p in 1..=3 {
        let (s, h, body) = w.fetch(&format!("{view}/pages/{p}"), &w.employee).await;
        assert_eq!(s, Status::Forbidden, "page {p}");
        assert_ne!(header(&h, "Content-Type"), Some("image/png"));
        assert!(!body.starts_with(b"\x89PNG"));
    }
    let (s, _, _) = w.fetch(&view, &w.employee).await;
    assert_eq!(s, Status::Forbidden);
    assert_eq!(
        cache_stats(&w).hits,
        hits,
        "the refusal came before the cache"
    );
    assert_eq!(cached_for(&w, &grant), 0);

    // A grant that runs out (no job has marked it, no revocation told the cache): refused
    // at once, and the refusal drops what the cache held for it.
    let grant = w.view_grant().await;
    let view = format!("/view/{grant}/files/{file}");
    let (s, _, _) = w.fetch(&format!("{view}/pages/3"), &w.employee).await;
    assert_eq!(s, Status::Ok);
    assert!(cached_for(&w, &grant) >= 2);
    sqlx::query("UPDATE grants SET valid_until = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&grant)
        .execute(&w.app.db)
        .await
        .unwrap();
    let (s, _, body) = w.fetch(&format!("{view}/pages/3"), &w.employee).await;
    assert_eq!(s, Status::Forbidden);
    assert!(!body.starts_with(b"\x89PNG"));
    assert_eq!(cached_for(&w, &grant), 0);
    let pages = page_events(&w).await;
    assert_eq!(pages.len(), 2, "refused pages are not audited as served");
}

#[tokio::test]
async fn cached_pages_are_bound_to_their_grant() {
    let w = world().await;
    let file = w.file("contract.pdf", &pdf(2)).await;
    let grant = w.view_grant().await;
    let page = format!("/view/{grant}/files/{file}/pages/1");
    let (s, _, mine) = w.fetch(&page, &w.employee).await;
    assert_eq!(s, Status::Ok);
    assert!(cached_for(&w, &grant) >= 1);
    // Someone else, knowing the URL: refused before the cache is looked at.
    let hits = cache_stats(&w).hits;
    for who in [&w.other, &w.sup] {
        let (s, _, body) = w.fetch(&page, who).await;
        assert_eq!(s, Status::NotFound);
        assert!(!body.starts_with(b"\x89PNG"));
    }
    assert_eq!(cache_stats(&w).hits, hits);
    // Their own grant on the same file renders its own copy: nothing crosses grants.
    let (s, r) = w
        .app
        .post(
            "/api/v1/requests",
            &w.other,
            json!({"record_id": w.record, "kind": "view", "purpose": PURPOSE, "duration_hours": 4}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let (s, r) = w
        .app
        .post(
            &format!("/api/v1/requests/{}/approve", r["id"].as_str().unwrap()),
            &w.sup,
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    let theirs = r["grant"]["id"].as_str().unwrap().to_string();
    let renders = cache_stats(&w).renders;
    let (s, _, body) = w
        .fetch(&format!("/view/{theirs}/files/{file}/pages/1"), &w.other)
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(body, mine);
    assert!(cache_stats(&w).renders > renders);
    let events = page_events(&w).await;
    assert_eq!(events.last().unwrap()["grant"], theirs.as_str());
    assert_eq!(events.last().unwrap()["cached"], false);
}

#[tokio::test]
async fn the_cache_stays_within_its_budget() {
    let w = world_with(|c| c.viewer_cache_mib = 1).await;
    let file = w.file("dense.pdf", &dense_pdf(12)).await;
    let grant = w.view_grant().await;
    let view = format!("/view/{grant}/files/{file}");
    let (s, _, _) = w.fetch(&view, &w.employee).await;
    assert_eq!(s, Status::Ok);
    let mut sizes = 0;
    for p in 1..=12 {
        let (s, _, body) = w
            .fetch(&format!("{view}/pages/{p}?zoom=100"), &w.employee)
            .await;
        assert_eq!(s, Status::Ok, "page {p}");
        sizes += body.len();
        let st = cache_stats(&w);
        assert!(st.bytes <= st.budget, "{st:?}");
    }
    assert!(sizes > 1024 * 1024, "the pages weigh {sizes} bytes in all");
    let st = cache_stats(&w);
    assert_eq!(st.budget, 1024 * 1024);
    assert!(st.evicted >= 1 && st.entries >= 3, "{st:?}");
    // An evicted page is rendered again when asked for.
    let renders = st.renders;
    let (s, _, body) = w
        .fetch(&format!("{view}/pages/1?zoom=100"), &w.employee)
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(png_size(&body), (816, 1056));
    let st = cache_stats(&w);
    assert!(st.renders > renders && st.bytes <= st.budget, "{st:?}");
}
