//! Categories (privacy by default, fields made sensitive later) and the search page, in
//! English and Chinese.

use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::common::browser::{Answer, Browser};
use crate::common::TestApp;

fn field<'a>(category: &'a Value, name: &str) -> &'a Value {
    category["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {category}"))
}

#[tokio::test]
async fn personal_fields_default_to_sensitive_through_the_api() {
    let app = TestApp::new().await;
    let (_, archivist) = app.login_as(Role::Archivist).await;
    let (s, cat) = app
        .post(
            "/api/v1/categories",
            &archivist,
            json!({
            "code": "KYC", "name": "Know your customer", "sensitivity": "internal",
            "department": "Retail", "retention_years": 10,
            "fields": [
                {"name": "id_number", "type": "id_number"},
                {"name": "contact", "label": "联系电话", "type": "phone"},
                {"name": "xm", "label": "姓名", "type": "text"},
                {"name": "home_address", "type": "text"},
                {"name": "notes", "label": "备注", "type": "text"},
                {"name": "company_name", "label": "Company", "type": "text"}
            ]}),
        )
        .await;
    assert_eq!(s, Status::Created, "{cat}");
    for name in ["id_number", "contact", "xm", "home_address"] {
        assert_eq!(field(&cat, name)["sensitive"], true, "{name}: {cat}");
    }
    for name in ["notes", "company_name"] {
        assert_eq!(field(&cat, name)["sensitive"], false, "{name}: {cat}");
    }
    // A personal name is masked as a name.
    assert_eq!(field(&cat, "xm")["mask"], "name", "{cat}");

    // Saying "not sensitive" about an ID number without confirming it is refused, on the field.
    let (s, err) = app
        .post(
            "/api/v1/categories",
            &archivist,
            json!({
            "code": "KYC2", "name": "KYC 2", "sensitivity": "internal",
            "department": "Retail", "retention_years": 10,
            "fields": [
                {"name": "notes", "type": "text", "sensitive": false},
                {"name": "sfz", "label": "身份证号", "type": "text", "sensitive": false}
            ]}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{err}");
    assert_eq!(err["error"]["code"], "invalid", "{err}");
    assert_eq!(err["error"]["field"], "fields[1].sensitive", "{err}");
    let (s, _) = app.get("/api/v1/categories", &archivist).await;
    assert_eq!(s, Status::Ok);
    // Confirmed, it is accepted as said.
    let (s, cat2) = app
        .post(
            "/api/v1/categories",
            &archivist,
            json!({
            "code": "KYC2", "name": "KYC 2", "sensitivity": "internal",
            "department": "Retail", "retention_years": 10,
            "fields": [
                {"name": "sfz", "label": "身份证号", "type": "text", "sensitive": false,
                 "confirm_not_sensitive": true}
            ]}),
        )
        .await;
    assert_eq!(s, Status::Created, "{cat2}");
    assert_eq!(field(&cat2, "sfz")["sensitive"], false);
    assert!(field(&cat2, "sfz").get("confirm_not_sensitive").is_none());

    // A field added later by PATCH gets the same default, and the same refusal.
    let id = cat2["id"].as_str().unwrap();
    let mut fields = cat2["fields"].as_array().unwrap().clone();
    fields.push(json!({"name": "mobile", "type": "text", "sensitive": false}));
    let (s, err) = app
        .patch(
            &format!("/api/v1/categories/{id}"),
            &archivist,
            json!({"fields": fields}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{err}");
    assert_eq!(err["error"]["field"], "fields[1].sensitive", "{err}");
    fields.pop();
    fields.push(json!({"name": "mobile", "type": "text"}));
    let (s, cat3) = app
        .patch(
            &format!("/api/v1/categories/{id}"),
            &archivist,
            json!({"fields": fields}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{cat3}");
    assert_eq!(field(&cat3, "mobile")["sensitive"], true);
    assert_eq!(
        field(&cat3, "sfz")["sensitive"],
        false,
        "an existing field keeps what it is"
    );
}

#[tokio::test]
async fn the_category_page_defaults_to_sensitive_and_asks_for_confirmation() {
    let app = TestApp::new().await;
    let (_, archivist) = app.login_as(Role::Archivist).await;
    let (s, cat) = app
        .post(
            "/api/v1/categories",
            &archivist,
            json!({
            "code": "CUST", "name": "Customers", "sensitivity": "internal",
            "department": "Retail", "retention_years": 10}),
        )
        .await;
    assert_eq!(s, Status::Created, "{cat}");
    let id = cat["id"].as_str().unwrap();
    let path = format!("/categories/{id}");
    let b = Browser::with_token(&app, &archivist);
    let html = b.page(&path).await;
    assert!(html.contains("Privacy by default"), "{html}");
    let common = "name=Customers&sensitivity=internal&department=Retail&retention_years=10";
    let row = |i: usize, name: &str, label: &str, kind: &str, sensitive: &str, confirm: bool| {
        let mut s = format!(
            "&fields[{i}].name={name}&fields[{i}].label={label}&fields[{i}].type={kind}&fields[{i}].sensitive={sensitive}&fields[{i}].choices="
        );
        if confirm {
            s.push_str(&format!("&fields[{i}].confirm_not_sensitive=true"));
        }
        s
    };
    // 姓名, said to be "not sensitive" without the confirmation: refused, next to the field,
    // everything typed kept.
    let xm = "%E5%A7%93%E5%90%8D"; // 姓名
    let body = format!(
        "{common}{}{}{}",
        row(0, "id_number", "", "id_number", "", false),
        row(1, "", "", "text", "", false),
        row(2, "xm", xm, "text", "no", false),
    );
    let Answer {
        status: s, html, ..
    } = b.post_encoded(&path, &path, &body).await;
    assert_eq!(s, Status::UnprocessableEntity, "{html}");
    assert!(
        html.contains("id=\"e-fields[2].sensitive\""),
        "error next to the row: {html}"
    );
    assert!(html.contains("aria-invalid=\"true\""), "{html}");
    assert!(html.contains("looks like personal data"), "{html}");
    assert!(
        html.contains("value=\"xm\"") && html.contains("value=\"姓名\""),
        "values kept"
    );
    assert!(html.contains("value=\"no\" selected"), "the choice is kept");
    let (_, unchanged) = app
        .get(&format!("/api/v1/categories/{id}"), &archivist)
        .await;
    assert_eq!(unchanged["fields"], json!([]), "nothing saved");

    // Left automatic: sensitive. Confirmed: not sensitive. Then a flash on the next page.
    let body = format!(
        "{common}{}{}{}",
        row(0, "id_number", "", "id_number", "", false),
        row(1, "phone", "", "phone", "", false),
        row(2, "xm", xm, "text", "no", true),
    );
    let Answer {
        status: s,
        html,
        location,
        flash,
        ..
    } = b.post_encoded(&path, &path, &body).await;
    assert_eq!(s, Status::SeeOther, "{html}");
    assert_eq!(location.as_deref(), Some(path.as_str()));
    assert!(flash.is_some(), "a confirmation for the next page");
    let (_, cat) = app
        .get(&format!("/api/v1/categories/{id}"), &archivist)
        .await;
    assert_eq!(field(&cat, "id_number")["sensitive"], true, "{cat}");
    assert_eq!(field(&cat, "phone")["sensitive"], true, "{cat}");
    assert_eq!(field(&cat, "xm")["sensitive"], false, "{cat}");
    // The browser brings the confirmation to the page it was sent to.
    let html = b.page(&path).await;
    assert!(html.contains("Category Customers saved."), "flash: {html}");
    assert!(
        html.contains("ID number") && html.contains("Phone number"),
        "types as words"
    );
    // The plain personal field is pointed out.
    assert!(
        html.contains("Not sensitive although they look like personal data"),
        "{html}"
    );
    assert_eq!(app.audit_count("category.update", "success").await, 1);
}

#[tokio::test]
async fn a_field_made_sensitive_later_has_its_filed_values_sealed() {
    let app = TestApp::new().await;
    let (_, archivist) = app.login_as(Role::Archivist).await;
    let (s, cat) = app
        .post("/api/v1/categories", &archivist, json!({
            "code": "LEGACY", "name": "Legacy", "sensitivity": "internal",
            "department": "Retail", "retention_years": 10,
            "fields": [
                {"name": "contact_name", "type": "text", "sensitive": false, "confirm_not_sensitive": true},
                {"name": "notes", "type": "text"}
            ]}))
        .await;
    assert_eq!(s, Status::Created, "{cat}");
    let id = cat["id"].as_str().unwrap();
    let (s, r) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({
            "category_id": id, "title": "Old file",
            "fields": {"contact_name": "张三丰", "notes": "first"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let rid = r["id"].as_str().unwrap();
    // A correction, so the old plain value is also in a revision.
    let (s, r2) = app
        .patch(
            &format!("/api/v1/records/{rid}"),
            &archivist,
            json!({
        "fields": {"contact_name": "李四光"}, "reason": "wrong person"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r2}");
    let (_, hits) = app
        .get("/api/v1/records?q=%E6%9D%8E%E5%9B%9B%E5%85%89", &archivist)
        .await;
    assert_eq!(
        hits["hits"].as_array().unwrap().len(),
        1,
        "found while plain: {hits}"
    );

    // Made sensitive in a new schema version.
    let mut fields = cat["fields"].as_array().unwrap().clone();
    fields[0]["sensitive"] = json!(true);
    let (s, cat2) = app
        .patch(
            &format!("/api/v1/categories/{id}"),
            &archivist,
            json!({"fields": fields}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{cat2}");
    assert_eq!(field(&cat2, "contact_name")["sensitive"], true);
    assert_eq!(cat2["schema_version"], 2);

    // No plaintext left in the database: not in the record, its search text or its history.
    let (plain, search): (Value, String) =
        sqlx::query_as("SELECT fields, search_text FROM records WHERE id = $1::uuid")
            .bind(rid)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(plain.get("contact_name").is_none(), "{plain}");
    assert_eq!(plain["notes"], "first");
    assert!(!search.contains("李四光"), "{search}");
    let history: Vec<(Value, Value)> = sqlx::query_as(
        "SELECT previous_fields, changes FROM record_revisions WHERE record_id = $1::uuid",
    )
    .bind(rid)
    .fetch_all(&app.db)
    .await
    .unwrap();
    for (prev, changes) in &history {
        let text = format!("{prev}{changes}");
        assert!(
            !text.contains("张三丰") && !text.contains("李四光"),
            "{text}"
        );
    }
    let sealed: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM record_sensitive_values WHERE field = 'contact_name') \
         + (SELECT count(*) FROM record_revision_sensitive_values WHERE field = 'contact_name')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(sealed, 2, "the current value and the revision's");

    // Shown masked; partial search no longer finds it.
    let (s, shown) = app.get(&format!("/api/v1/records/{rid}"), &archivist).await;
    assert_eq!(s, Status::Ok);
    let v = shown["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "contact_name")
        .unwrap();
    assert_eq!(v["value"], "李*光", "{shown}");
    assert_eq!(v["masked"], true);
    let (_, hits) = app
        .get("/api/v1/records?q=%E6%9D%8E%E5%9B%9B%E5%85%89", &archivist)
        .await;
    assert_eq!(hits["hits"].as_array().unwrap().len(), 0, "{hits}");
    // The old revision is still readable to whoever may see it, without the value in clear.
    let (s, revs) = app
        .get(&format!("/api/v1/records/{rid}/revisions"), &archivist)
        .await;
    assert_eq!(s, Status::Ok, "{revs}");
    assert!(!revs.to_string().contains("张三丰"), "{revs}");

    // And it cannot be made plain again.
    fields[0]["sensitive"] = json!(false);
    fields[0]["confirm_not_sensitive"] = json!(true);
    let (s, err) = app
        .patch(
            &format!("/api/v1/categories/{id}"),
            &archivist,
            json!({"fields": fields}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{err}");
    assert_eq!(err["error"]["field"], "fields[0].sensitive", "{err}");
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE action = 'category.update' ORDER BY occurred_at DESC LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        detail["fields_made_sensitive"],
        json!(["contact_name"]),
        "{detail}"
    );
    assert!(!detail.to_string().contains("李四光"));
}

#[tokio::test]
async fn category_and_search_pages_in_chinese() {
    let app = TestApp::new().await;
    let (_, archivist) = app.login_as(Role::Archivist).await;
    let (s, cat) = app
        .post(
            "/api/v1/categories",
            &archivist,
            json!({
            "code": "CONTR", "name": "Contracts", "sensitivity": "confidential",
            "department": "Retail", "retention_years": 30,
            "fields": [
                {"name": "company_name", "label": "Company", "type": "text"},
                {"name": "phone", "type": "phone"}
            ]}),
        )
        .await;
    assert_eq!(s, Status::Created, "{cat}");
    let id = cat["id"].as_str().unwrap();
    let (s, r) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({
            "category_id": id, "title": "Lease",
            "fields": {"company_name": "Kept Co", "phone": "13812345678"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");

    let b = Browser::with_token(&app, &archivist);
    let Answer {
        status: s, html, ..
    } = b.get_in("/categories", Some("zh-CN")).await;
    assert_eq!(s, Status::Ok);
    assert!(html.contains("<html lang=\"zh-CN\">"), "{html}");
    assert!(
        html.contains("档案类别") && html.contains("秘密") && html.contains("30 年"),
        "{html}"
    );
    let Answer {
        status: s, html, ..
    } = b.get_in(&format!("/categories/{id}"), Some("zh-CN")).await;
    assert_eq!(s, Status::Ok);
    assert!(html.contains("<html lang=\"zh-CN\">"));
    assert!(
        html.contains("默认保护隐私") && html.contains("电话号码") && html.contains("保存类别"),
        "{html}"
    );
    assert!(!html.contains("id_number</option>"), "types shown as words");

    // A bad retention: 422 with the page, the error in Chinese next to the field.
    let Answer {
        status: s, html, ..
    } = b
        .post_encoded(
            &format!("/categories/{id}"),
            "/categories",
            "code=X&name=Y&parent_id=&sensitivity=internal&department=Retail&retention_years=10",
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{html}");
    assert!(html.contains("id=\"e-code\""), "{html}");
    assert!(html.contains("value=\"Y\""), "values kept");

    let Answer {
        status: s, html, ..
    } = b.get_in("/search", Some("zh-CN")).await;
    assert_eq!(s, Status::Ok);
    assert!(html.contains("<html lang=\"zh-CN\">"));
    assert!(
        html.contains("档案查询") && html.contains("须输入完整号码"),
        "{html}"
    );
    let Answer {
        status: s, html, ..
    } = b.get_in("/search?q=kept", Some("zh-CN")).await;
    assert_eq!(s, Status::Ok);
    let results = html.split("查询结果").nth(1).unwrap_or_default();
    assert!(
        results.contains("138****5678") && !results.contains("13812345678"),
        "{html}"
    );
    assert!(
        html.contains("共找到 1 条档案") && html.contains("已脱敏"),
        "{html}"
    );
    assert!(html.contains("class=\"table-wrap\""));
    // By phone: the full number finds it, part of it does not.
    let html = b.get("/search?phone=138-1234-5678").await.html;
    assert!(html.contains("1 record found."), "{html}");
    let html = b.get("/search?phone=13812345").await.html;
    assert!(!html.contains("Lease"), "{html}");
    // A bad date: 422, the error next to the field, in Chinese.
    let Answer {
        status: s, html, ..
    } = b.get_in("/search?from=yesterday", Some("zh-CN")).await;
    assert_eq!(s, Status::UnprocessableEntity, "{html}");
    assert!(html.contains("id=\"e-from\""), "{html}");
    assert!(
        html.contains("YYYY-MM-DD") || html.contains("日期"),
        "{html}"
    );
}
