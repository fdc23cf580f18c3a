//! The location register and account administration in the browser and through the JSON
//! API, end to end: forms posted with the session's CSRF token, the redirects and
//! confirmations they answer with, field errors beside their fields, refusals by the
//! services (not just hidden buttons), and the audit trail of each change.

use rocket::http::Status;
use serde_json::json;
use strongroom::users::Role;

use crate::archive::setup;
use crate::common::browser::Browser;
use crate::common::{TestApp, PASSWORD};

/// The id in the first link of the page that starts with `prefix`.
fn link_id(html: &str, prefix: &str) -> String {
    html.split(prefix)
        .nth(1)
        .unwrap_or_else(|| panic!("no link {prefix} in {html}"))
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect()
}

#[tokio::test]
async fn archivists_keep_the_register_in_the_browser_with_chinese_names() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let b = Browser::with_token(&app, &archivist);
    let list = b.page("/locations").await;
    assert!(list.contains("SR1") && list.contains("Basement"), "{list}");

    // A storeroom with a Chinese name; the confirmation shows once on the page it leads to.
    let to = b
        .post_ok(
            "/locations",
            "/locations",
            &[("code", "SR9"), ("name", "一号库房")],
        )
        .await;
    assert!(to.starts_with("/locations/storerooms/"), "{to}");
    let room_page = b.page(&to).await;
    assert!(room_page.contains("Storeroom SR9 added."), "{room_page}");
    assert!(room_page.contains("一号库房"), "{room_page}");
    assert!(!b.page(&to).await.contains("Storeroom SR9 added."));

    // A code already used, and an empty name: errors beside their fields, values kept.
    let dup = b
        .post(
            "/locations",
            "/locations",
            &[("code", "SR9"), ("name", "二号库房")],
        )
        .await;
    assert_eq!(dup.status, Status::UnprocessableEntity, "{}", dup.html);
    assert!(
        dup.html.contains("SR9 is already used in the register"),
        "{}",
        dup.html
    );
    assert!(
        dup.html.contains("id=\"f-code\" aria-invalid=\"true\""),
        "{}",
        dup.html
    );
    assert!(dup.html.contains("value=\"二号库房\""), "{}", dup.html);
    let empty = b
        .post(
            "/locations",
            "/locations",
            &[("code", "SR8"), ("name", "  ")],
        )
        .await;
    assert_eq!(empty.status, Status::UnprocessableEntity);
    assert!(empty.html.contains("id=\"e-name\""), "{}", empty.html);
    assert!(empty.html.contains("value=\"SR8\""), "{}", empty.html);

    // A shelf in it and a box on the shelf.
    let shelf_to = b
        .post_ok(
            &to,
            &format!("{to}/shelves"),
            &[("code", "A1"), ("child_name", "东架")],
        )
        .await;
    assert_eq!(shelf_to, to);
    let shelf_id = link_id(&b.page(&to).await, "/locations/shelves/");
    let shelf = format!("/locations/shelves/{shelf_id}");
    let dup = b
        .post(
            &to,
            &format!("{to}/shelves"),
            &[("code", "A1"), ("child_name", "")],
        )
        .await;
    assert_eq!(dup.status, Status::UnprocessableEntity);
    assert!(
        dup.html.contains("A1 is already used in this storeroom"),
        "{}",
        dup.html
    );
    b.post_ok(
        &shelf,
        &format!("{shelf}/boxes"),
        &[("code", "B1"), ("child_name", "")],
    )
    .await;
    let box_id = link_id(&b.page(&shelf).await, "/locations/boxes/");
    let boxp = format!("/locations/boxes/{box_id}");

    // Filing into the new box now works; the box lists the record with its status.
    let (s, r) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({"category_id": contracts["id"], "title": "Lease of the east wing",
                   "fields": {"company_name": "Huaxin"},
                   "physical": {"storeroom": "SR9", "shelf": "A1", "box": "B1"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let record = r["id"].as_str().unwrap();

    // Renaming keeps the code (and so the record's location).
    b.post_ok(&boxp, &format!("{boxp}/name"), &[("name", "合同盒")])
        .await;
    let html = b.page(&boxp).await;
    assert!(html.contains("B1 is now called 合同盒."), "{html}");
    assert!(html.contains("合同盒"), "{html}");
    assert!(
        html.contains(&format!("href=\"/records/{record}\"")),
        "{html}"
    );
    assert!(
        html.contains("Lease of the east wing") && html.contains("In store"),
        "{html}"
    );
    let bad = b
        .post(&boxp, &format!("{boxp}/name"), &[("name", "")])
        .await;
    assert_eq!(bad.status, Status::UnprocessableEntity);
    assert!(
        bad.html.contains("the name must not be empty"),
        "{}",
        bad.html
    );
    assert_eq!(app.audit_count("register.rename", "success").await, 1);
    assert!(app.audit_count("register.create", "success").await >= 4);
    assert!(app.audit_count("register.contents", "success").await >= 1);
    let (s, rec) = app
        .get(&format!("/api/v1/records/{record}"), &archivist)
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(rec["physical"]["box"], "B1", "{rec}");

    // The storeroom's page counts and lists it too, and the listing counts it.
    let html = b.page(&to).await;
    assert!(html.contains("Holds one paper file."), "{html}");
    assert!(html.contains("Lease of the east wing"), "{html}");

    // The listing as CSV, UTF-8 with a byte-order mark.
    let res = app
        .client
        .get("/api/v1/register.csv")
        .cookie(b.session_cookie())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let csv = res.into_string().await.unwrap();
    assert!(csv.starts_with('\u{feff}'), "{csv}");
    assert!(csv.contains("SR9,一号库房,A1,东架,B1,合同盒,1"), "{csv}");
    assert!(app.audit_count("register.export", "success").await == 1);

    // In Chinese.
    let zh = b.get_in(&boxp, Some("zh-CN")).await;
    assert_eq!(zh.status, Status::Ok);
    assert!(zh.html.contains("<html lang=\"zh-CN\">"), "{}", zh.html);
    assert!(
        zh.html.contains("在库") && zh.html.contains("题名"),
        "{}",
        zh.html
    );
    let zh = b.get_in("/locations", Some("zh-CN")).await;
    assert!(
        zh.html.contains("新建库房") && zh.html.contains("纸质档案"),
        "{}",
        zh.html
    );
}

#[tokio::test]
async fn the_register_api_creates_renames_and_lists_and_refuses_other_roles() {
    let app = TestApp::new().await;
    let (_, archivist) = app.login_as(Role::Archivist).await;
    let (s, room) = app
        .post(
            "/api/v1/register/storerooms",
            &archivist,
            json!({"code": "R2", "name": "二号库房"}),
        )
        .await;
    assert_eq!(s, Status::Created, "{room}");
    assert_eq!(room["name"], "二号库房");
    let rid = room["id"].as_str().unwrap();
    let (s, dup) = app
        .post(
            "/api/v1/register/storerooms",
            &archivist,
            json!({"code": "R2", "name": "x"}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{dup}");
    assert_eq!(dup["error"]["field"], "code");
    let (s, shelf) = app
        .post(
            &format!("/api/v1/register/storerooms/{rid}/shelves"),
            &archivist,
            json!({"code": "S1"}),
        )
        .await;
    assert_eq!(s, Status::Created, "{shelf}");
    let sid = shelf["id"].as_str().unwrap();
    let (s, bx) = app
        .post(
            &format!("/api/v1/register/shelves/{sid}/boxes"),
            &archivist,
            json!({"code": "B7", "name": "七号盒"}),
        )
        .await;
    assert_eq!(s, Status::Created, "{bx}");
    assert_eq!(bx["storeroom"]["code"], "R2");
    assert_eq!(bx["shelf"]["code"], "S1");
    let (s, renamed) = app
        .patch(
            &format!("/api/v1/register/shelves/{sid}"),
            &archivist,
            json!({"name": "西架"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{renamed}");
    assert_eq!(renamed["name"], "西架");
    assert_eq!(renamed["code"], "S1");
    let (s, e) = app
        .patch(
            &format!("/api/v1/register/storerooms/{rid}"),
            &archivist,
            json!({"name": " "}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert_eq!(e["error"]["field"], "name");
    let (s, c) = app
        .get(
            &format!("/api/v1/register/storerooms/{rid}/contents"),
            &archivist,
        )
        .await;
    assert_eq!(s, Status::Ok, "{c}");
    assert_eq!(c["place"]["children"][0]["name"], "西架", "{c}");
    assert_eq!(c["records"], json!([]));
    let (s, tree) = app.get("/api/v1/register/storerooms", &archivist).await;
    assert_eq!(s, Status::Ok);
    assert_eq!(
        tree[0]["shelves"][0]["boxes"][0]["name"], "七号盒",
        "{tree}"
    );

    // Another role is refused, and the refusal is audited.
    let (_, employee) = app.login_as(Role::Employee).await;
    let before = app.audit_count("register.manage", "denied").await;
    let (s, _) = app
        .post(
            "/api/v1/register/storerooms",
            &employee,
            json!({"code": "R3", "name": "三号库房"}),
        )
        .await;
    assert_eq!(s, Status::Forbidden);
    let (s, _) = app
        .patch(
            &format!("/api/v1/register/storerooms/{rid}"),
            &employee,
            json!({"name": "偷改"}),
        )
        .await;
    assert_eq!(s, Status::Forbidden);
    let page = Browser::with_token(&app, &employee).get("/locations").await;
    assert_eq!(page.status, Status::Forbidden);
    assert_eq!(
        app.audit_count("register.manage", "denied").await,
        before + 3
    );
    let (_, c) = app
        .get(
            &format!("/api/v1/register/storerooms/{rid}/contents"),
            &archivist,
        )
        .await;
    assert_eq!(c["place"]["name"], "二号库房");
}

async fn user_row(app: &TestApp, id: &str) -> (String, String, Vec<String>, String, bool) {
    sqlx::query_as(
        "SELECT display_name, department, roles, status, must_change_password FROM users WHERE id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn administrators_change_disable_enable_and_reset_accounts_in_the_browser() {
    let app = TestApp::new().await;
    let (admin_user, admin) = app.login_as(Role::Admin).await;
    let admin_id = admin_user.id.to_string();
    let kim_user = app.add_user("kim", &[Role::Employee], "Retail").await;
    let kim = kim_user.id.to_string();
    let (s, body) = app.login("kim", PASSWORD).await;
    assert_eq!(s, Status::Ok);
    let kim_token = body["token"].as_str().unwrap().to_string();
    let b = Browser::with_token(&app, &admin);

    // Roles shown as words; no one-click disable in the list.
    let list = b.page("/admin/users").await;
    assert!(
        list.contains("Employee") && list.contains("Administrator"),
        "{list}"
    );
    assert!(!list.contains("/disable"), "{list}");

    // Name, department and roles.
    let page = format!("/admin/users/{kim}");
    let to = b
        .post_ok(
            &page,
            &page,
            &[
                ("display_name", "Kim Lee"),
                ("department", "Legal"),
                ("roles", "employee"),
                ("roles", "supervisor"),
            ],
        )
        .await;
    assert_eq!(to, page);
    assert!(b.page(&page).await.contains("Changes to Kim Lee saved."));
    let (name, dept, roles, _, _) = user_row(&app, &kim).await;
    assert_eq!((name.as_str(), dept.as_str()), ("Kim Lee", "Legal"));
    assert_eq!(roles, vec!["employee", "supervisor"]);
    assert_eq!(app.audit_count("user.update", "success").await, 1);
    let bad = b
        .post(
            &page,
            &page,
            &[("display_name", "Kim"), ("department", "Legal")],
        )
        .await;
    assert_eq!(bad.status, Status::UnprocessableEntity);
    assert!(
        bad.html.contains("at least one role is required"),
        "{}",
        bad.html
    );

    // Disabling asks first; a single post changes nothing.
    let ask = b.post(&page, &format!("{page}/disable"), &[]).await;
    assert_eq!(ask.status, Status::Ok);
    assert!(
        ask.html
            .contains("Disable Kim Lee? Their sessions end now."),
        "{}",
        ask.html
    );
    assert_eq!(user_row(&app, &kim).await.3, "active");
    let (s, _) = app.get("/api/v1/me", &kim_token).await;
    assert_eq!(s, Status::Ok);
    b.post_ok(&page, &format!("{page}/disable"), &[("confirm", "yes")])
        .await;
    assert_eq!(user_row(&app, &kim).await.3, "disabled");
    let (s, _) = app.get("/api/v1/me", &kim_token).await;
    assert_eq!(s, Status::Unauthorized, "the sessions end at once");

    // Enabled again: the person signs in with their password.
    b.post_ok(&page, &format!("{page}/enable"), &[]).await;
    assert!(b.page(&page).await.contains("Kim Lee is enabled again."));
    assert_eq!(user_row(&app, &kim).await.3, "active");
    let (s, body) = app.login("kim", PASSWORD).await;
    assert_eq!(s, Status::Ok, "{body}");
    let kim_token = body["token"].as_str().unwrap().to_string();
    assert_eq!(app.audit_count("user.enable", "success").await, 1);

    // A password reset: confirmed, a one-time password shown once, the old one dead.
    let ask = b.post(&page, &format!("{page}/password-reset"), &[]).await;
    assert_eq!(ask.status, Status::Ok);
    assert!(
        ask.html.contains("Reset the password of Kim Lee?"),
        "{}",
        ask.html
    );
    let done = b
        .post(
            &page,
            &format!("{page}/password-reset"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, Status::Ok, "{}", done.html);
    let otp = done
        .html
        .split("<code class=\"password\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("the one-time password on the page")
        .to_string();
    assert!(otp.len() >= 16, "{otp}");
    assert!(!crate::common::captured_logs().contains(&otp));
    let (s, _) = app.get("/api/v1/me", &kim_token).await;
    assert_eq!(s, Status::Unauthorized, "the sessions end at a reset");
    let (s, _) = app.login("kim", PASSWORD).await;
    assert_eq!(s, Status::Unauthorized, "the old password stops working");
    let (s, body) = app.login("kim", &otp).await;
    assert_eq!(s, Status::Ok, "{body}");
    assert_eq!(body["user"]["must_change_password"], true, "{body}");
    let token = body["token"].as_str().unwrap();
    let (s, e) = app.get("/api/v1/records?q=lease", token).await;
    assert_eq!(s, Status::Forbidden, "{e}");
    assert_eq!(e["error"]["code"], "password_change_required");
    assert_eq!(app.audit_count("user.password_reset", "success").await, 1);

    // Nobody disables themselves or drops their own admin role: the service refuses.
    let me = format!("/admin/users/{admin_id}");
    let own = b.page(&me).await;
    assert!(!own.contains(&format!("{me}/disable")), "{own}");
    let refused = b
        .post(&me, &format!("{me}/disable"), &[("confirm", "yes")])
        .await;
    assert_eq!(refused.status, Status::Conflict);
    assert!(
        refused.html.contains("you cannot disable your own account"),
        "{}",
        refused.html
    );
    let refused = b
        .post(
            &me,
            &me,
            &[
                ("display_name", "Boss"),
                ("department", ""),
                ("roles", "employee"),
            ],
        )
        .await;
    assert_eq!(refused.status, Status::Conflict);
    assert!(refused
        .html
        .contains("you cannot remove your own administrator role"));
    let (s, e) = app
        .post(
            &format!("/api/v1/users/{admin_id}/disable"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Conflict, "{e}");
    let (s, _) = app
        .patch(
            &format!("/api/v1/users/{admin_id}"),
            &admin,
            json!({"roles": ["employee"]}),
        )
        .await;
    assert_eq!(s, Status::Conflict);
    let (_, _, roles, status, _) = user_row(&app, &admin_id).await;
    assert_eq!(
        (roles, status.as_str()),
        (vec!["admin".to_string()], "active")
    );
    assert!(app.audit_count("user.disable", "denied").await >= 2);

    // Creating: errors beside the fields, typed values kept except the password.
    let bad = b
        .post(
            "/admin/users",
            "/admin/users",
            &[
                ("username", "bad name!"),
                ("display_name", "王芳"),
                ("department", "Legal"),
                ("roles", "auditor"),
                ("password", "a sturdy secret phrase 42"),
            ],
        )
        .await;
    assert_eq!(bad.status, Status::UnprocessableEntity);
    assert!(bad.html.contains("id=\"e-username\""), "{}", bad.html);
    assert!(bad.html.contains("value=\"王芳\"") && bad.html.contains("value=\"auditor\" checked"));
    assert!(!bad.html.contains("a sturdy secret phrase 42"));
    let to = b
        .post_ok(
            "/admin/users",
            "/admin/users",
            &[
                ("username", "wang.fang"),
                ("display_name", "王芳"),
                ("department", "Legal"),
                ("roles", "auditor"),
                ("password", "a sturdy secret phrase 42"),
            ],
        )
        .await;
    assert!(b.page(&to).await.contains("Account wang.fang created."));

    // The account page in Chinese.
    let zh = b.get_in(&page, Some("zh-CN")).await;
    assert!(zh.html.contains("<html lang=\"zh-CN\">"), "{}", zh.html);
    assert!(
        zh.html.contains("停用账户") && zh.html.contains("角色"),
        "{}",
        zh.html
    );
}

#[tokio::test]
async fn the_accounts_api_changes_enables_and_resets_and_only_for_administrators() {
    let app = TestApp::new().await;
    let (_, admin) = app.login_as(Role::Admin).await;
    let kim = app.add_user("kim", &[Role::Employee], "Retail").await.id;
    let (s, u) = app
        .patch(
            &format!("/api/v1/users/{kim}"),
            &admin,
            json!({"department": "Ops", "roles": ["employee", "archivist"]}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{u}");
    assert_eq!(u["department"], "Ops");
    assert_eq!(u["roles"], json!(["archivist", "employee"]));
    let (s, _) = app
        .post(&format!("/api/v1/users/{kim}/enable"), &admin, json!({}))
        .await;
    assert_eq!(s, Status::Conflict, "already active");
    let (s, _) = app
        .post(&format!("/api/v1/users/{kim}/disable"), &admin, json!({}))
        .await;
    assert_eq!(s, Status::Ok);
    let (s, u) = app
        .post(&format!("/api/v1/users/{kim}/enable"), &admin, json!({}))
        .await;
    assert_eq!(s, Status::Ok, "{u}");
    assert_eq!(u["status"], "active");
    let (s, r) = app
        .post(
            &format!("/api/v1/users/{kim}/password-reset"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    let otp = r["one_time_password"].as_str().unwrap();
    assert_eq!(r["user"]["must_change_password"], true);
    let (s, _) = app.login("kim", otp).await;
    assert_eq!(s, Status::Ok);

    let (_, employee) = app.login_as(Role::Employee).await;
    let (s, _) = app
        .patch(
            &format!("/api/v1/users/{kim}"),
            &employee,
            json!({"roles": ["admin"]}),
        )
        .await;
    assert_eq!(s, Status::Forbidden);
    let (s, _) = app
        .post(
            &format!("/api/v1/users/{kim}/password-reset"),
            &employee,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Forbidden);
    assert!(app.audit_count("user.manage", "denied").await >= 2);
    let (s, e) = app
        .patch(
            &format!("/api/v1/users/{kim}"),
            &admin,
            json!({"roles": []}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert_eq!(e["error"]["field"], "roles");
}

/// The register's API follows the pages' rules for names: a blank, overlong or bidi name
/// and an overlong location are refused beside their field (not a 500), and nothing of
/// what was typed reaches the log.
#[tokio::test]
async fn the_register_api_refuses_bad_names_as_the_pages_do() {
    let app = TestApp::new().await;
    let token = app.user_token("arc", &[Role::Archivist], "Archive").await;
    let long_name = "张".repeat(200);
    let long_location = "x".repeat(300);
    for (body, field) in [
        (json!({"storeroom": "R6", "name": long_name}), "name"),
        (json!({"storeroom": "R7", "name": "   "}), "name"),
        (json!({"storeroom": "R8", "name": "a\u{202e}b"}), "name"),
        (
            json!({"storeroom": "R9", "name": "九号库房", "location": long_location}),
            "location",
        ),
    ] {
        let (s, r) = app.post("/api/v1/register", &token, body.clone()).await;
        assert_eq!(s, Status::UnprocessableEntity, "{body}: {r}");
        assert_eq!(r["error"]["field"], field, "{r}");
    }
    let rooms: i64 = sqlx::query_scalar("SELECT count(*) FROM storerooms")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(rooms, 0);
    assert!(!crate::common::captured_logs().contains("张张张张"));
    let (s, r) = app
        .post(
            "/api/v1/register",
            &token,
            json!({"storeroom": "R9", "name": " 九号库房 "}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let name: String = sqlx::query_scalar("SELECT name FROM storerooms WHERE code = 'R9'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(name, "九号库房");
}
