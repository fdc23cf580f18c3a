//! The filing form and the record page, driven as a browser drives them: session and
//! confirmation cookies carried from answer to answer, forms posted with the page's CSRF
//! token.

use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::archive::{setup, upload};
use crate::common::browser::Browser;
use crate::common::{captured_logs, TestApp};

const ID_NO: &str = "11010519491231002X";

/// The `<input>` (or other tag) carrying `id="…"`, as written.
fn tag_with_id<'h>(html: &'h str, id: &str) -> &'h str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in {html}"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    &html[start..=end]
}

fn the_filing(cid: &str, title: &str, phone: &str, bx: &str) -> Vec<(String, String)> {
    [
        ("category_id", cid),
        ("title", title),
        ("fields[company_name]", "Kept Co"),
        ("fields[holder_name]", "张三丰"),
        ("fields[phone]", phone),
        ("fields[id_number]", ID_NO),
        ("fields[signed_on]", "2024-05-01"),
        ("storeroom", "SR1"),
        ("shelf", "A3"),
        ("box", bx),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test]
async fn a_refused_filing_keeps_every_value_typed_and_puts_the_error_beside_its_field() {
    let app = TestApp::new().await;
    let (token, contracts) = setup(&app).await;
    let cid = contracts["id"].as_str().unwrap();
    let b = Browser::with_token(&app, &token);
    let form = format!("/records/new?category={cid}");
    let html = b.page(&form).await;
    // Every input labelled; the location offered from the register; dates as date pickers.
    assert!(html.contains("<label for=\"f-field-holder_name\">Account holder"));
    assert!(
        html.contains("<option value=\"SR1\">Basement</option>")
            && html.contains("<option value=\"B0042\">")
    );
    assert!(html.contains("name=\"fields[signed_on]\"") && html.contains("type=\"date\""));

    // A bad phone: refused beside the phone input, everything else (sensitive too) kept.
    let a = b
        .post(
            &form,
            "/records",
            &pairs(&the_filing(cid, "Lease", "12", "B0042")),
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity, "{}", a.html);
    let input = tag_with_id(&a.html, "f-field-phone");
    assert!(
        input.contains("aria-invalid=\"true\"")
            && input.contains("autofocus")
            && input.contains("value=\"12\""),
        "{input}"
    );
    let beside = tag_with_id(&a.html, "e-field-phone");
    assert!(beside.contains("field-error"), "{beside}");
    assert!(
        a.html
            .contains("id=\"e-field-phone\">must be a phone number"),
        "{}",
        a.html
    );
    assert!(
        a.html.contains("href=\"#f-field-phone\""),
        "the summary links to the field"
    );
    assert!(tag_with_id(&a.html, "f-field-holder_name").contains("value=\"张三丰\""));
    assert!(tag_with_id(&a.html, "f-field-id_number").contains(&format!("value=\"{ID_NO}\"")));
    assert!(tag_with_id(&a.html, "f-field-company_name").contains("value=\"Kept Co\""));
    assert!(tag_with_id(&a.html, "f-field-signed_on").contains("value=\"2024-05-01\""));
    assert!(tag_with_id(&a.html, "f-box").contains("value=\"B0042\""));
    assert!(!tag_with_id(&a.html, "f-title").contains("aria-invalid"));

    // A box the register does not have: beside the box input.
    let a = b
        .post(
            &form,
            "/records",
            &pairs(&the_filing(cid, "Lease", "13812345678", "NOPE")),
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(
        tag_with_id(&a.html, "f-box").contains("aria-invalid=\"true\""),
        "{}",
        a.html
    );
    assert!(a
        .html
        .contains("id=\"e-box\">no box NOPE on shelf A3 in storeroom SR1"));
    assert!(tag_with_id(&a.html, "f-field-phone").contains("value=\"13812345678\""));

    // Nothing was filed, and the sensitive values typed reached no log.
    let filed: i64 = sqlx::query_scalar("SELECT count(*) FROM records")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(filed, 0);
    let logs = captured_logs();
    assert!(!logs.contains(ID_NO) && !logs.contains("张三丰"));
}

#[tokio::test]
async fn a_filed_record_is_confirmed_once_on_its_page() {
    let app = TestApp::new().await;
    let (token, contracts) = setup(&app).await;
    let cid = contracts["id"].as_str().unwrap();
    let b = Browser::with_token(&app, &token);
    let form = format!("/records/new?category={cid}");
    let a = b
        .post(
            &form,
            "/records",
            &pairs(&the_filing(cid, "Lease", "13812345678", "B0042")),
        )
        .await;
    assert_eq!(a.status, Status::SeeOther, "{}", a.html);
    let to = a.location.unwrap();
    let year = chrono::Utc::now().format("%Y").to_string();
    let html = b.page(&to).await;
    assert!(
        html.contains(&format!("Record CONTR-{year}-000001 filed.")),
        "{html}"
    );
    assert!(html.contains("138****5678") && !html.contains("13812345678"));
    assert!(!b.page(&to).await.contains("filed."), "shown once");
}

#[tokio::test]
async fn a_title_containing_a_sensitive_value_is_refused_until_filed_anyway() {
    let app = TestApp::new().await;
    let (token, contracts) = setup(&app).await;
    let cid = contracts["id"].as_str().unwrap();
    let b = Browser::with_token(&app, &token);
    let form = format!("/records/new?category={cid}");
    // The holder's name in the title, spaced differently: refused, with the box to tick.
    let a = b
        .post(
            &form,
            "/records",
            &pairs(&the_filing(cid, "Lease of 张 三丰", "13812345678", "B0042")),
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity, "{}", a.html);
    assert!(
        a.html.contains("id=\"e-title\">contains the value of the sensitive field Account holder, which would defeat its mask"),
        "{}",
        a.html
    );
    assert!(a.html.contains("name=\"allow_title_with_sensitive\""));
    assert!(tag_with_id(&a.html, "f-title").contains("value=\"Lease of 张 三丰\""));
    // Ticked: filed.
    let mut fields = the_filing(cid, "Lease of 张 三丰", "13812345678", "B0042");
    fields.push(("allow_title_with_sensitive".into(), "true".into()));
    let a = b.post(&form, "/records", &pairs(&fields)).await;
    assert_eq!(a.status, Status::SeeOther, "{}", a.html);

    // The API refuses the same way (the phone, written with separators, in the title).
    let body = |allow: Option<bool>| {
        let mut v = json!({
            "category_id": cid, "title": "Call 138-1234-5678 about the lease",
            "fields": {"company_name": "Acme", "phone": "13812345678"},
        });
        if let Some(a) = allow {
            v["allow_title_with_sensitive"] = json!(a);
        }
        v
    };
    let (s, e) = app.post("/api/v1/records", &token, body(None)).await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert_eq!(e["error"]["field"], "title", "{e}");
    assert!(e.to_string().contains("sensitive field phone"), "{e}");
    assert!(
        !e.to_string().contains("13812345678"),
        "the value is not echoed: {e}"
    );
    let (s, _) = app.post("/api/v1/records", &token, body(Some(false))).await;
    assert_eq!(s, Status::UnprocessableEntity);
    let (s, r) = app.post("/api/v1/records", &token, body(Some(true))).await;
    assert_eq!(s, Status::Created, "{r}");
    // A title that merely shares a word with a value is not flagged.
    let (s, r) = app
        .post(
            "/api/v1/records",
            &token,
            json!({"category_id": cid, "title": "Lease with Zhang", "fields": {"company_name": "Acme", "holder_name": "Zhang Wei"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
}

async fn filed(app: &TestApp, token: &str, contracts: &Value) -> String {
    let (s, r) = app
        .post(
            "/api/v1/records",
            token,
            json!({
                "category_id": contracts["id"], "title": "Framework agreement",
                "fields": {"company_name": "Old Co", "holder_name": "张三丰", "phone": "13812345678"},
                "physical": {"storeroom": "SR1", "shelf": "A3", "box": "B0042"}
            }),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    r["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn each_role_sees_the_record_sections_with_only_what_it_may_do() {
    let app = TestApp::new().await;
    let (token, contracts) = setup(&app).await;
    let id = filed(&app, &token, &contracts).await;
    let (s, f) = upload(&app, &token, &id, "scan.pdf", &[7u8; 3000]).await;
    assert_eq!(s, Status::Created, "{f}");
    let page = format!("/records/{id}");

    let archivist = Browser::with_token(&app, &token);
    let html = archivist.page(&page).await;
    for section in ["details", "physical", "files", "request", "history"] {
        assert!(
            html.contains(&format!("id=\"{section}\""))
                && html.contains(&format!("href=\"#{section}\"")),
            "{section}: {html}"
        );
    }
    assert!(html.contains(&format!("action=\"/records/{id}/physical\"")));
    assert!(html.contains(&format!("action=\"/records/{id}/edit\"")));
    assert!(html.contains("id=\"upload\""));
    assert!(
        html.contains("2.9 KB") && !html.contains(">3000<"),
        "sizes in KB"
    );
    assert!(html.contains("SR1 / A3 / B0042") && html.contains("in store"));
    assert!(!html.contains("Open in viewer"));

    let employee = Browser::new(&app, "emp", &[Role::Employee]).await;
    let html = employee.page(&page).await;
    assert!(html.contains("138****5678") && html.contains("张*丰"));
    assert!(html.contains("name=\"purpose\"") && html.contains("href=\"#request\""));
    assert!(
        html.contains("at least 15 characters, or 6 Chinese characters"),
        "{html}"
    );
    assert!(!html.contains(&format!("action=\"/records/{id}/physical\"")));
    assert!(!html.contains(&format!("action=\"/records/{id}/edit\"")));
    assert!(!html.contains("id=\"upload\""));
    assert!(html.contains("request a view below"), "{html}");

    // The upload's confirmation (the page's script goes here once the API stored it).
    let a = archivist
        .get(&format!(
            "/records/{id}/uploaded/{}",
            f["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(a.status, Status::SeeOther);
    let html = archivist.page(&page).await;
    assert!(html.contains("scan.pdf uploaded (version 1)."), "{html}");
}

#[tokio::test]
async fn corrections_and_moves_are_confirmed_and_their_errors_shown_beside_the_field() {
    let app = TestApp::new().await;
    let (token, contracts) = setup(&app).await;
    let id = filed(&app, &token, &contracts).await;
    let page = format!("/records/{id}");
    let b = Browser::with_token(&app, &token);
    let year = chrono::Utc::now().format("%Y").to_string();

    // A correction without a reason: beside the reason, with the typed values kept.
    let edit = format!("/records/{id}/edit");
    let a = b
        .post(
            &page,
            &edit,
            &[
                ("title", "Framework agreement 2"),
                ("fields[company_name]", "New Co"),
                ("fields[phone]", "13900001111"),
                ("reason", "no"),
            ],
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity, "{}", a.html);
    assert!(tag_with_id(&a.html, "f-edit-reason").contains("aria-invalid=\"true\""));
    assert!(
        a.html.contains("id=\"e-edit-reason\">must say why"),
        "{}",
        a.html
    );
    assert!(tag_with_id(&a.html, "f-edit-title").contains("value=\"Framework agreement 2\""));
    assert!(tag_with_id(&a.html, "f-edit-field-company_name").contains("value=\"New Co\""));
    assert!(tag_with_id(&a.html, "f-edit-field-phone").contains("value=\"13900001111\""));
    // A bad value: beside that field.
    let a = b
        .post(
            &page,
            &edit,
            &[("fields[phone]", "12"), ("reason", "customer called")],
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(tag_with_id(&a.html, "f-edit-field-phone").contains("aria-invalid=\"true\""));
    // Accepted: confirmed, and the history names the fields by their labels.
    let a = b
        .post(
            &page,
            &edit,
            &[
                ("title", "Framework agreement"),
                ("fields[company_name]", "New Co"),
                ("fields[holder_name]", "李四"),
                ("reason", "customer renamed"),
            ],
        )
        .await;
    assert_eq!(a.status, Status::SeeOther, "{}", a.html);
    let html = b.page(&page).await;
    assert!(
        html.contains(&format!(
            "Record CONTR-{year}-000001 corrected (revision 2)."
        )),
        "{html}"
    );
    assert!(html.contains("Company changed (Old Co → New Co)"), "{html}");
    assert!(html.contains("Account holder changed") && !html.contains("holder_name changed"));
    assert!(
        !html.contains("李四"),
        "sensitive values stay out of the history"
    );

    // A move to a box the register lacks: beside the box; then a move that works.
    let mv = format!("/records/{id}/physical");
    let a = b
        .post(
            &page,
            &mv,
            &[
                ("storeroom", "SR1"),
                ("shelf", "A3"),
                ("box", "B9"),
                ("status", ""),
                ("reason", "reshelved"),
            ],
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity, "{}", a.html);
    assert!(tag_with_id(&a.html, "f-move-box").contains("aria-invalid=\"true\""));
    assert!(tag_with_id(&a.html, "f-move-reason").contains("value=\"reshelved\""));
    let a = b
        .post(
            &page,
            &mv,
            &[
                ("storeroom", ""),
                ("shelf", ""),
                ("box", ""),
                ("status", "missing"),
                ("reason", "not on the shelf"),
            ],
        )
        .await;
    assert_eq!(a.status, Status::SeeOther, "{}", a.html);
    let html = b.page(&page).await;
    assert!(
        html.contains(&format!(
            "The location and status of CONTR-{year}-000001 are saved."
        )),
        "{html}"
    );
    assert!(html.contains("in store → missing"), "{html}");
}

#[tokio::test]
async fn the_record_pages_speak_chinese() {
    let app = TestApp::new().await;
    let (token, contracts) = setup(&app).await;
    let cid = contracts["id"].as_str().unwrap();
    let b = Browser::with_token(&app, &token).in_language("zh-CN");
    let form = format!("/records/new?category={cid}");
    let html = b.page(&form).await;
    assert!(
        html.contains("<html lang=\"zh-CN\">") && html.contains("题名") && html.contains("库房")
    );
    let mut fields = the_filing(cid, "租赁合同", "13812345678", "B0042");
    fields[2].1 = String::new(); // the company is required
    let a = b.post(&form, "/records", &pairs(&fields)).await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(
        a.html.contains("id=\"e-field-company_name\">为必填项"),
        "{}",
        a.html
    );
    let a = b
        .post(
            &form,
            "/records",
            &pairs(&the_filing(cid, "租赁合同", "13812345678", "B0042")),
        )
        .await;
    assert_eq!(a.status, Status::SeeOther, "{}", a.html);
    let html = b.page(&a.location.unwrap()).await;
    assert!(html.contains("<html lang=\"zh-CN\">"));
    assert!(html.contains("已归档。"), "{html}");
    for word in [
        "档号",
        "题名",
        "在库",
        "著录信息",
        "实体档案",
        "修改记录",
        "已脱敏",
        "机密",
    ] {
        assert!(html.contains(word), "{word}: {html}");
    }
}

/// A correction is checked like a filing: a title that gives a masked value away (here
/// with separators, or in full-width digits as a Chinese input method types them) is
/// refused until the archivist saves it anyway; so is a new sensitive value that the
/// title already holds.
#[tokio::test]
async fn a_correction_whose_title_reveals_a_sensitive_value_is_refused_until_saved_anyway() {
    let app = TestApp::new().await;
    let (token, contracts) = setup(&app).await;
    let id = filed(&app, &token, &contracts).await;
    let page = format!("/records/{id}");
    let edit = format!("/records/{id}/edit");
    let b = Browser::with_token(&app, &token);
    let a = b
        .post(
            &page,
            &edit,
            &[
                ("title", "合同 张-三-丰"),
                ("reason", "customer asked for it"),
            ],
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity, "{}", a.html);
    assert!(
        a.html
            .contains("id=\"e-edit-title\">contains the value of the sensitive field"),
        "{}",
        a.html
    );
    assert!(a.html.contains("id=\"f-edit-allow\""), "{}", a.html);
    let a = b
        .post(
            &page,
            &edit,
            &[
                ("title", "合同 张-三-丰"),
                ("reason", "customer asked for it"),
                ("allow_title_with_sensitive", "true"),
            ],
        )
        .await;
    assert_eq!(a.status, Status::SeeOther, "{}", a.html);

    // Through the API: full-width digits of the phone in the title.
    let patch = |body: Value| {
        let app = &app;
        let token = token.clone();
        let id = id.clone();
        async move {
            let res = app
                .client
                .patch(format!("/api/v1/records/{id}"))
                .header(crate::common::bearer(&token))
                .header(rocket::http::ContentType::JSON)
                .body(body.to_string())
                .dispatch()
                .await;
            crate::common::json_of(res).await
        }
    };
    let (s, e) =
        patch(json!({"title": "回访 １３８１２３４５６７８", "reason": "title from the call log"}))
            .await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert_eq!(e["error"]["field"], "title");
    assert!(
        !e.to_string().contains("13812345678") && !e.to_string().contains("１３８"),
        "{e}"
    );
    // A new phone number that the (unchanged) title already holds.
    let (s, r) = patch(json!({"title": "Call 139 0000 1111", "reason": "title from the call log", "allow_title_with_sensitive": true})).await;
    assert_eq!(s, Status::Ok, "{r}");
    let (s, e) =
        patch(json!({"fields": {"phone": "13900001111"}, "reason": "the customer's new number"}))
            .await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    let (s, r) = patch(json!({"fields": {"phone": "13900001111"}, "reason": "the customer's new number", "allow_title_with_sensitive": true})).await;
    assert_eq!(s, Status::Ok, "{r}");
    // A title that gives nothing away is saved without the override.
    let (s, r) =
        patch(json!({"title": "Framework agreement (renewed)", "reason": "renewal signed"})).await;
    assert_eq!(s, Status::Ok, "{r}");
}
