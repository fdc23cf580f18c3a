use rocket::http::{ContentType, Header, Status};
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::common::{bearer, cluster, TestApp};

const PHONE: &str = "13812345678";
const ID_NO: &str = "11010519491231002X";

/// An archivist, a category tree `Customers / Corporate / Contracts` (CUST / CORP / CONTR)
/// with sensitive fields, and a storeroom with one box.
pub async fn setup(app: &TestApp) -> (String, Value) {
    let (_, archivist) = app.login_as(Role::Archivist).await;
    let (s, root) = app
        .post("/api/v1/categories", &archivist, json!({"code": "cust", "name": "Customers", "sensitivity": "internal", "department": "Retail", "retention_years": 10}))
        .await;
    assert_eq!(s, Status::Created, "{root}");
    let (s, corp) = app
        .post("/api/v1/categories", &archivist, json!({"code": "CORP", "name": "Corporate", "parent_id": root["id"], "sensitivity": "internal", "department": "Retail", "retention_years": 10}))
        .await;
    assert_eq!(s, Status::Created, "{corp}");
    let (s, contracts) = app
        .post("/api/v1/categories", &archivist, json!({
            "code": "CONTR", "name": "Contracts", "parent_id": corp["id"], "sensitivity": "confidential",
            "department": "Retail", "retention_years": 30,
            "fields": [
                {"name": "company_name", "label": "Company", "type": "text", "required": true},
                {"name": "holder_name", "label": "Account holder", "type": "text", "sensitive": true},
                {"name": "phone", "type": "phone", "sensitive": true},
                {"name": "id_number", "type": "id_number", "sensitive": true},
                {"name": "email", "type": "email", "sensitive": true},
                {"name": "signed_on", "type": "date"},
                {"name": "tier", "type": "choice", "choices": ["gold", "silver"]}
            ]}))
        .await;
    assert_eq!(s, Status::Created, "{contracts}");
    assert_eq!(contracts["path"], "Customers / Corporate / Contracts");
    assert_eq!(root["code"], "CUST");
    let (s, _) = app
        .post(
            "/api/v1/register",
            &archivist,
            json!({"storeroom": "SR1", "name": "Basement", "shelf": "A3", "box": "B0042"}),
        )
        .await;
    assert_eq!(s, Status::Created);
    (archivist, contracts)
}

fn contract(category: &Value, company: &str) -> Value {
    json!({
        "category_id": category["id"], "title": format!("Framework agreement {company}"),
        "fields": {"company_name": company, "holder_name": "张三丰", "phone": "+86 138 1234 5678",
                   "id_number": ID_NO.to_lowercase(), "email": "jane@example.com", "signed_on": "2024-05-01", "tier": "gold"},
        "physical": {"storeroom": "SR1", "shelf": "A3", "box": "B0042"}
    })
}

pub fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap()
}

#[tokio::test]
async fn filing_a_record_masks_every_sensitive_value_on_the_way_out() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (s, r) = app
        .post(
            "/api/v1/records",
            &archivist,
            contract(&contracts, "Huaxin Trading Co"),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let year = chrono::Utc::now().format("%Y").to_string();
    assert_eq!(r["reference"], format!("CONTR-{year}-000001"));
    assert_eq!(field(&r, "phone")["value"], "138****5678");
    assert_eq!(field(&r, "holder_name")["value"], "张*丰");
    assert_eq!(field(&r, "id_number")["value"], "110105********002X");
    assert_eq!(field(&r, "email")["value"], "j***@example.com");
    assert_eq!(field(&r, "company_name")["value"], "Huaxin Trading Co");
    assert_eq!(field(&r, "company_name")["masked"], false);
    assert_eq!(r["physical"]["box"], "B0042");
    assert_eq!(r["physical"]["status"], "in_store");
    // Nobody reads the unmasked values: not the archivist, not an admin, not a same-department employee.
    let id = r["id"].as_str().unwrap();
    let (_, admin) = app.login_as(Role::Admin).await;
    let (s, _) = app.get(&format!("/api/v1/records/{id}"), &admin).await;
    assert_eq!(s, Status::NotFound, "admins see no records without a grant");
    let (_, employee) = app.login_as(Role::Employee).await; // department Retail
    let (s, seen) = app.get(&format!("/api/v1/records/{id}"), &employee).await;
    assert_eq!(s, Status::Ok);
    for body in [&r, &seen] {
        let text = body.to_string();
        assert!(
            !text.contains(PHONE) && !text.contains("张三丰") && !text.contains("jane@"),
            "{text}"
        );
    }
    assert_eq!(app.audit_count("record.create", "success").await, 1);
    assert_eq!(app.audit_count("record.read", "denied").await, 1);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let cases = [
        ("phone", json!("12345"), "phone"),
        ("id_number", json!("110105194912310021"), "check character"),
        ("email", json!("not-an-address"), "e-mail"),
        ("signed_on", json!("01/05/2024"), "YYYY-MM-DD"),
        ("tier", json!("bronze"), "one of"),
        ("company_name", json!(null), "required"),
    ];
    for (name, value, words) in cases {
        let mut body = contract(&contracts, "Acme");
        body["fields"][name] = value;
        let (s, err) = app.post("/api/v1/records", &archivist, body).await;
        assert_eq!(s, Status::UnprocessableEntity, "{name}: {err}");
        assert_eq!(err["error"]["field"], name);
        assert!(
            err["error"]["message"].as_str().unwrap().contains(words),
            "{err}"
        );
    }
    let mut body = contract(&contracts, "Acme");
    body["physical"]["box"] = json!("NOPE");
    let (s, err) = app.post("/api/v1/records", &archivist, body).await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert_eq!(err["error"]["field"], "physical.box");
    // Nothing was filed by the refused attempts.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM records")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // Employees do not file records.
    let (_, employee) = app.login_as(Role::Employee).await;
    let (s, _) = app
        .post("/api/v1/records", &employee, contract(&contracts, "Acme"))
        .await;
    assert_eq!(s, Status::Forbidden);
}

#[tokio::test]
async fn concurrent_filing_gives_unique_reference_codes() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let futures: Vec<_> = (0..20)
        .map(|i| {
            let body = contract(&contracts, &format!("Company {i}"));
            let app = &app;
            let token = archivist.clone();
            async move { app.post("/api/v1/records", &token, body).await }
        })
        .collect();
    let results = crate::audit_trail::futures_join_all(futures).await;
    let mut refs: Vec<String> = results
        .iter()
        .map(|(s, r)| {
            assert_eq!(*s, Status::Created, "{r}");
            r["reference"].as_str().unwrap().to_string()
        })
        .collect();
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), 20);
}

#[tokio::test]
async fn plaintext_markers_reach_neither_object_store_nor_database() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let marker = format!("MARKER{}", uuid::Uuid::new_v4().simple());
    let mut body = contract(&contracts, "Marker Holdings");
    body["fields"]["holder_name"] = json!(marker.clone());
    let (s, r) = app.post("/api/v1/records", &archivist, body).await;
    assert_eq!(s, Status::Created, "{r}");
    let id = r["id"].as_str().unwrap();
    let content = format!("confidential scan {marker} end").repeat(5000);
    let (s, f) = upload(&app, &archivist, id, "scan.txt", content.as_bytes()).await;
    assert_eq!(s, Status::Created, "{f}");
    assert_eq!(f["size"], content.len());
    assert_eq!(
        f["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content.as_bytes()))
    );

    // The object store's bytes.
    let mut found_objects = 0;
    for entry in walk(&app.dir.path().join("objects")) {
        let bytes = std::fs::read(&entry).unwrap();
        found_objects += 1;
        assert!(
            !contains(&bytes, marker.as_bytes()),
            "marker in object {}",
            entry.display()
        );
        assert!(
            !entry.to_string_lossy().contains(id),
            "record id in object key"
        );
    }
    assert_eq!(found_objects, 1);

    // A pg_dump of the whole database.
    let c = cluster().await;
    let bin = strongroom::pg::find_bin_dir(None).unwrap();
    let password = std::fs::read_to_string(c.dir.join("pg-superuser.password")).unwrap();
    let out = std::process::Command::new(bin.join("pg_dump"))
        .args([
            "-h",
            c.pg.socket_dir().to_str().unwrap(),
            "-U",
            "strongroom",
            "-d",
            &app.db_name,
        ])
        .env("PGPASSWORD", password.trim())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.len() > 10_000, "dump too small to be real");
    assert!(
        contains(&out.stdout, b"Marker Holdings"),
        "non-sensitive values are in the dump"
    );
    assert!(
        !contains(&out.stdout, marker.as_bytes()),
        "marker in pg_dump"
    );
    assert!(!contains(&out.stdout, PHONE.as_bytes()), "phone in pg_dump");
    assert!(
        !contains(&out.stdout, b"110105194912310"),
        "ID number in pg_dump"
    );
}

pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn multipart(name: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----strongroomtestboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\n").as_bytes());
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub async fn upload(
    app: &TestApp,
    token: &str,
    record: &str,
    name: &str,
    content: &[u8],
) -> (Status, Value) {
    let (ct, body) = multipart(name, content);
    let res = app
        .client
        .post(format!("/api/v1/records/{record}/files"))
        .header(bearer(token))
        .header(Header::new("Content-Type", ct))
        .body(body)
        .dispatch()
        .await;
    crate::common::json_of(res).await
}

#[tokio::test]
async fn uploads_are_versioned_over_limit_is_413_and_leaves_nothing() {
    let app = TestApp::with_config(|c| c.max_upload_bytes = 100_000).await;
    let (archivist, contracts) = setup(&app).await;
    let (_, r) = app
        .post("/api/v1/records", &archivist, contract(&contracts, "Acme"))
        .await;
    let id = r["id"].as_str().unwrap();
    let (s, v1) = upload(&app, &archivist, id, "../../etc/passwd", b"first").await;
    assert_eq!(s, Status::Created, "{v1}");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["original_name"], "passwd");
    let (s, v2) = upload(&app, &archivist, id, "scan.pdf", b"second").await;
    assert_eq!(s, Status::Created);
    assert_eq!(v2["version"], 2);
    let (s, err) = upload(&app, &archivist, id, "big.bin", &vec![7u8; 100_001]).await;
    assert_eq!(s, Status::PayloadTooLarge, "{err}");
    let (s, list) = app
        .get(&format!("/api/v1/records/{id}/files"), &archivist)
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        walk(&app.dir.path().join("objects")).len(),
        2,
        "the refused upload left an object"
    );
    assert_eq!(app.audit_count("file.upload", "success").await, 2);
    assert_eq!(app.audit_count("file.upload", "failure").await, 1);
    // Only archivists upload; an employee is refused.
    let (_, employee) = app.login_as(Role::Employee).await;
    let (s, _) = upload(&app, &employee, id, "x.txt", b"x").await;
    assert_eq!(s, Status::Forbidden);
    // A cookie-authenticated upload needs the page's CSRF header.
    let (ct, body) = multipart("c.txt", b"cookie");
    let res = app
        .client
        .post(format!("/api/v1/records/{id}/files"))
        .cookie(rocket::http::Cookie::new(
            "strongroom_session",
            archivist.clone(),
        ))
        .header(Header::new("Content-Type", ct))
        .body(body)
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
}

#[tokio::test]
async fn search_by_partial_name_phone_id_category_and_location_returns_masked_hits() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    for company in [
        "Shanghai Pudong Development Ltd",
        "Beijing Tech Holdings",
        "Shenzhen Harbour Logistics",
    ] {
        let mut body = contract(&contracts, company);
        if company.starts_with("Beijing") {
            body["fields"]["phone"] = json!("13900001111");
            body["fields"]["id_number"] = json!("440524188001010014");
        }
        let (s, r) = app.post("/api/v1/records", &archivist, body).await;
        assert_eq!(s, Status::Created, "{r}");
    }
    let (_, employee) = app.login_as(Role::Employee).await;
    let hits = |v: &Value| {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                field(h, "company_name")["value"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    // The first half of a company name remembered from two years ago.
    let (s, res) = app.get("/api/v1/records?q=shanghai%20pud", &employee).await;
    assert_eq!(s, Status::Ok, "{res}");
    assert_eq!(hits(&res), ["Shanghai Pudong Development Ltd"]);
    assert_eq!(field(&res["hits"][0], "phone")["value"], "138****5678");
    let (_, res) = app
        .get("/api/v1/records?phone=139-0000-1111", &employee)
        .await;
    assert_eq!(hits(&res), ["Beijing Tech Holdings"]);
    let (_, res) = app
        .get("/api/v1/records?id_number=440524188001010014", &employee)
        .await;
    assert_eq!(hits(&res), ["Beijing Tech Holdings"]);
    let (_, res) = app
        .get(&format!("/api/v1/records?phone={PHONE}"), &employee)
        .await;
    assert_eq!(hits(&res).len(), 2);
    let (_, res) = app.get("/api/v1/records?category=CUST", &employee).await;
    assert_eq!(hits(&res).len(), 3, "the subtree of Customers");
    let (_, res) = app
        .get(
            "/api/v1/records?storeroom=SR1&box=B0042&q=harbour",
            &employee,
        )
        .await;
    assert_eq!(hits(&res), ["Shenzhen Harbour Logistics"]);
    let reference = res["hits"][0]["reference"].as_str().unwrap().to_string();
    let (_, res) = app
        .get(&format!("/api/v1/records?q={reference}"), &employee)
        .await;
    assert_eq!(hits(&res), ["Shenzhen Harbour Logistics"]);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (_, res) = app
        .get(
            &format!("/api/v1/records?from={today}&to={today}"),
            &employee,
        )
        .await;
    assert_eq!(hits(&res).len(), 3);
    let (_, res) = app
        .get("/api/v1/records?from=2000-01-01&to=2000-12-31", &employee)
        .await;
    assert_eq!(hits(&res).len(), 0);
    let (s, err) = app.get("/api/v1/records?phone=abc", &employee).await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert_eq!(err["error"]["field"], "phone");
    // Confidential records of another department are invisible to its employees.
    let other = app.add_user("outsider", &[Role::Employee], "Claims").await;
    let (_, login) = app.login(&other.username, crate::common::PASSWORD).await;
    let outsider = login["token"].as_str().unwrap();
    let (_, res) = app.get("/api/v1/records?q=shanghai", outsider).await;
    assert_eq!(hits(&res).len(), 0);
    // Searches are audited, without the phone or ID number searched for.
    assert!(app.audit_count("record.search", "success").await >= 9);
    let details: String = sqlx::query_scalar(
        "SELECT string_agg(detail::text, '|') FROM audit_events WHERE action = 'record.search'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(
        !details.contains("13900001111") && !details.contains("440524188001010014"),
        "{details}"
    );
}

#[tokio::test]
async fn corrections_need_a_reason_and_keep_revisions_without_sensitive_values() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (_, r) = app
        .post(
            "/api/v1/records",
            &archivist,
            contract(&contracts, "Old Name Ltd"),
        )
        .await;
    let id = r["id"].as_str().unwrap();
    let patch = |body: Value| {
        let app = &app;
        let token = archivist.clone();
        let path = format!("/api/v1/records/{id}");
        async move {
            let res = app
                .client
                .patch(path)
                .header(bearer(&token))
                .header(ContentType::JSON)
                .body(body.to_string())
                .dispatch()
                .await;
            crate::common::json_of(res).await
        }
    };
    let (s, err) = patch(json!({"fields": {"company_name": "New Name Ltd"}, "reason": ""})).await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert_eq!(err["error"]["field"], "reason");
    let (s, r2) = patch(json!({"fields": {"company_name": "New Name Ltd", "phone": "13700002222"}, "reason": "customer renamed, new number"})).await;
    assert_eq!(s, Status::Ok, "{r2}");
    assert_eq!(r2["revision"], 2);
    assert_eq!(field(&r2, "phone")["value"], "137****2222");
    let (s, revs) = app
        .get(&format!("/api/v1/records/{id}/revisions"), &archivist)
        .await;
    assert_eq!(s, Status::Ok);
    let revs = revs.as_array().unwrap();
    assert_eq!(revs.len(), 2);
    assert_eq!(revs[1]["reason"], "customer renamed, new number");
    let changes = revs[1]["changes"].to_string();
    assert!(
        changes.contains("Old Name Ltd") && changes.contains("New Name Ltd"),
        "{changes}"
    );
    assert!(
        !changes.contains("13812345678") && !changes.contains("13700002222"),
        "{changes}"
    );
    // The old sensitive value is kept (encrypted) for the revision.
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM record_revision_sensitive_values")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    // The old phone no longer finds the record; the new one does.
    let (_, res) = app
        .get("/api/v1/records?phone=13700002222", &archivist)
        .await;
    assert_eq!(res["hits"].as_array().unwrap().len(), 1);
    assert_eq!(app.audit_count("record.update", "success").await, 1);

    // Schema changes never invalidate records: add a required field, remove one.
    let mut fields: Vec<Value> = contracts["fields"].as_array().unwrap().clone();
    fields.retain(|f| f["name"] != "tier");
    fields.push(json!({"name": "account_no", "type": "text", "required": true}));
    let res = app
        .client
        .patch(format!(
            "/api/v1/categories/{}",
            contracts["id"].as_str().unwrap()
        ))
        .header(bearer(&archivist))
        .header(ContentType::JSON)
        .body(json!({"fields": fields}).to_string())
        .dispatch()
        .await;
    let (s, cat) = crate::common::json_of(res).await;
    assert_eq!(s, Status::Ok, "{cat}");
    assert_eq!(cat["schema_version"], 2);
    let (s, old) = app.get(&format!("/api/v1/records/{id}"), &archivist).await;
    assert_eq!(s, Status::Ok);
    assert!(field(&old, "account_no")["value"].is_null());
    let (s, _) = patch(
        json!({"fields": {"company_name": "Newer Name Ltd"}, "reason": "another correction"}),
    )
    .await;
    assert_eq!(
        s,
        Status::Ok,
        "an old record stays editable without the new required field"
    );
    // Changing an existing field's type is refused.
    let mut bad = fields.clone();
    bad[0]["type"] = json!("number");
    let res = app
        .client
        .patch(format!(
            "/api/v1/categories/{}",
            contracts["id"].as_str().unwrap()
        ))
        .header(bearer(&archivist))
        .header(ContentType::JSON)
        .body(json!({"fields": bad}).to_string())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::UnprocessableEntity);
}

#[tokio::test]
async fn moving_a_physical_file_is_recorded() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    app.post(
        "/api/v1/register",
        &archivist,
        json!({"storeroom": "SR2", "name": "Annex", "shelf": "C1", "box": "B0100"}),
    )
    .await;
    let (_, r) = app
        .post("/api/v1/records", &archivist, contract(&contracts, "Acme"))
        .await;
    let id = r["id"].as_str().unwrap();
    let (s, moved) = app
        .post(&format!("/api/v1/records/{id}/physical"), &archivist, json!({"to": {"storeroom": "SR2", "shelf": "C1", "box": "B0100"}, "reason": "reorganised"}))
        .await;
    assert_eq!(s, Status::Ok, "{moved}");
    assert_eq!(moved["physical"]["storeroom"], "SR2");
    let (s, moves) = app
        .get(&format!("/api/v1/records/{id}/physical/moves"), &archivist)
        .await;
    assert_eq!(s, Status::Ok);
    let moves = moves.as_array().unwrap();
    assert_eq!(moves.len(), 2);
    assert_eq!(moves[1]["from_location"], "SR1 / A3 / B0042");
    assert_eq!(moves[1]["to_location"], "SR2 / C1 / B0100");
    let (s, _) = app
        .post(
            &format!("/api/v1/records/{id}/physical"),
            &archivist,
            json!({"status": "missing", "reason": "not on shelf at audit"}),
        )
        .await;
    assert_eq!(s, Status::Ok);
    let (_, res) = app.get("/api/v1/records?status=missing", &archivist).await;
    assert_eq!(res["hits"].as_array().unwrap().len(), 1);
    assert_eq!(app.audit_count("record.physical_move", "success").await, 2);
}

#[tokio::test]
async fn html_pages_file_show_and_search_records() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let cid = contracts["id"].as_str().unwrap();
    let cookie = rocket::http::Cookie::new("strongroom_session", archivist.clone());
    let page = app
        .client
        .get(format!("/records/new?category={cid}"))
        .cookie(cookie.clone())
        .dispatch()
        .await;
    if page.status() != Status::Ok {
        let logs = crate::common::captured_logs();
        let errors: Vec<&str> = logs.lines().filter(|l| l.contains("template")).collect();
        panic!("{:?}", errors.last());
    }
    let html = page.into_string().await.unwrap();
    assert!(
        html.contains("name=\"fields[company_name]\"") && html.contains("type=\"tel\""),
        "form from the schema"
    );
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // A bad value re-renders the form with the error and keeps non-sensitive input.
    let res = app.client.post("/records").cookie(cookie.clone()).header(ContentType::Form)
        .body(format!("csrf={csrf}&category_id={cid}&title=Lease&fields[company_name]=Kept+Co&fields[phone]=12&storeroom=&shelf=&box="))
        .dispatch().await;
    assert_eq!(res.status(), Status::UnprocessableEntity);
    let html = res.into_string().await.unwrap();
    assert!(
        html.contains("id=\"e-field-phone\">must be a phone number") && html.contains("Kept Co"),
        "{html}"
    );
    let res = app.client.post("/records").cookie(cookie.clone()).header(ContentType::Form)
        .body(format!("csrf={csrf}&category_id={cid}&title=Lease&fields[company_name]=Kept+Co&fields[phone]=13812345678&fields[holder_name]=%E5%BC%A0%E4%B8%89%E4%B8%B0&storeroom=SR1&shelf=A3&box=B0042"))
        .dispatch().await;
    assert_eq!(res.status(), Status::SeeOther);
    let location = res.headers().get_one("Location").unwrap().to_string();
    let page = app
        .client
        .get(location)
        .cookie(cookie.clone())
        .dispatch()
        .await;
    assert_eq!(page.status(), Status::Ok);
    let html = page.into_string().await.unwrap();
    assert!(
        html.contains("138****5678") && html.contains("张*丰") && !html.contains("13812345678")
    );
    assert!(html.contains("SR1 / A3 / B0042") || html.contains("SR1"));
    let page = app
        .client
        .get("/search?q=kept")
        .cookie(cookie.clone())
        .dispatch()
        .await;
    assert_eq!(page.status(), Status::Ok);
    let html = page.into_string().await.unwrap();
    assert!(html.contains("Kept Co") && html.contains("138****5678"));
    for path in ["/categories", &format!("/categories/{cid}"), "/search"] {
        let page = app
            .client
            .get(path.to_string())
            .cookie(cookie.clone())
            .dispatch()
            .await;
        assert_eq!(page.status(), Status::Ok, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_upload_leaves_no_row_and_gc_leaves_no_object() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (_, r) = app
        .post("/api/v1/records", &archivist, contract(&contracts, "Acme"))
        .await;
    let id = r["id"].as_str().unwrap().to_string();
    // The same vault served on a real port, so the client can really go away.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = app.config.clone();
    config.port = port;
    let vault = strongroom::cli::open_vault(&config).unwrap();
    let rocket = strongroom::build(config, app.db.clone(), vault)
        .ignite()
        .await
        .unwrap();
    let shutdown = rocket.shutdown();
    let server = tokio::spawn(rocket.launch());
    let mut sock = loop {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let boundary = "xYzBoundary";
    let head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n");
    let total = head.len() + 10_000_000 + boundary.len() + 8;
    sock.write_all(
        format!(
            "POST /api/v1/records/{id}/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {archivist}\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n{head}"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = vec![42u8; 64 * 1024];
    for _ in 0..50 {
        sock.write_all(&chunk).await.unwrap(); // about 3.2 MB of the promised 10 MB
    }
    sock.flush().await.unwrap();
    drop(sock);
    // The server notices, records the failed upload, and files nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.audit_count("file.upload", "failure").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the interrupted upload was not noticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM files")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    let report =
        strongroom::storage::gc::run_once(&app.db, &app.app().store, std::time::Duration::ZERO)
            .await
            .unwrap();
    assert!(!report.skipped);
    assert_eq!(
        walk(&app.dir.path().join("objects")).len(),
        0,
        "an object of the interrupted upload remains"
    );
    shutdown.notify();
    let _ = server.await;
}
