//! The view-only viewer, end to end: page images for a multi-page PDF and for JPEG and TIFF
//! scans, the headers every answer carries, no original bytes under a view grant, and
//! page URLs that stop answering the moment the grant is revoked or expires.

use std::io::Cursor;

use rocket::http::{Header, Status};
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::archive::{setup, upload};
use crate::common::{bearer, TestApp};
use crate::pdf_fixture::{document, Page};

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
    let app = TestApp::new().await;
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
        let res = self
            .app
            .client
            .get(path.to_string())
            .header(bearer(token))
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
        Some(strongroom::web::viewer::VIEWER_CSP)
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
    let (s, h, body) = w.fetch(&page, &w.employee).await;
    assert_eq!(s, Status::Forbidden);
    assert_ne!(header(&h, "Content-Type"), Some("image/png"));
    assert!(!body.starts_with(b"\x89PNG"));
    let (s, _, _) = w
        .fetch(&format!("/view/{grant}/files/{file}"), &w.employee)
        .await;
    assert_eq!(s, Status::Forbidden);
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
    let (s, _, _) = w.fetch(&page, &w.employee).await;
    assert_eq!(s, Status::Forbidden);
    let denied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'file.view' AND outcome = 'denied'",
    )
    .fetch_one(&w.app.db)
    .await
    .unwrap();
    assert!(denied >= 3, "{denied}");
}
