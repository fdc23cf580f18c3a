//! The archive's static script. Its pages are in `catalog.rs` (categories and search) and
//! `record.rs` (filing and the record page).

use rocket::http::ContentType;
use rocket::{get, routes, Route};

pub fn routes() -> Vec<Route> {
    routes![upload_js]
}

const UPLOAD_JS: &str = include_str!("../../templates/static/upload.js");

#[get("/static/upload.js")]
fn upload_js() -> (ContentType, &'static str) {
    (ContentType::JavaScript, UPLOAD_JS)
}
