//! Chinese partial search: one- and two-character fragments (and longer ones, and mixed
//! Latin/Chinese text) find exactly the records whose title, reference or non-sensitive
//! values hold them, only in categories the caller may read, and are answered from the
//! CJK gram index rather than a scan.

use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::records::search::{cjk_query_grams, is_cjk};
use strongroom::users::Role;
use uuid::Uuid;

use crate::archive::{field, setup};
use crate::common::{TestApp, PASSWORD};

fn record(category: &Value, title: &str, company: &str) -> Value {
    json!({
        "category_id": category["id"], "title": title,
        "fields": {"company_name": company, "holder_name": "张三丰", "phone": "13812345678"},
        "physical": {"storeroom": "SR1", "shelf": "A3", "box": "B0042"}
    })
}

fn companies(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {v}"))
        .iter()
        .map(|h| {
            field(h, "company_name")["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn url(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn one_and_two_character_chinese_fragments_find_exactly_the_right_records() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    // A category of another department: its records are not the Retail employee's to find.
    let (s, claims) = app
        .post(
            "/api/v1/categories",
            &archivist,
            json!({"code": "CLAIM", "name": "理赔", "sensitivity": "confidential",
                   "department": "Claims", "retention_years": 10,
                   "fields": [{"name": "company_name", "type": "text", "required": true}]}),
        )
        .await;
    assert_eq!(s, Status::Created, "{claims}");
    for (title, company) in [
        ("贷款合同", "上海宏达科技有限公司"),
        ("开户资料", "深圳鑫源贸易有限公司"),
        ("Account opening", "北京Huaxin实业有限公司"),
        ("Framework agreement", "Acme宏Trading"),
        ("抵押登记", "宏大建设集团"),
        ("授信审批", "达宏物流"),
    ] {
        let (s, r) = app
            .post(
                "/api/v1/records",
                &archivist,
                record(&contracts, title, company),
            )
            .await;
        assert_eq!(s, Status::Created, "{r}");
    }
    let (s, r) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({"category_id": claims["id"], "title": "保险理赔",
                   "fields": {"company_name": "宏达保险代理"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");

    let (_, employee) = app.login_as(Role::Employee).await;
    let search = |q: &str| {
        let path = format!("/api/v1/records?q={}", url(q));
        let app = &app;
        let employee = employee.clone();
        async move {
            let (s, v) = app.get(&path, &employee).await;
            assert_eq!(s, Status::Ok, "{path}: {v}");
            companies(&v)
        }
    };
    // One character: every record holding it, wherever it stands (mixed text included).
    assert_eq!(
        search("宏").await,
        sorted(&[
            "上海宏达科技有限公司",
            "Acme宏Trading",
            "宏大建设集团",
            "达宏物流"
        ])
    );
    assert_eq!(search("鑫").await, sorted(&["深圳鑫源贸易有限公司"]));
    assert_eq!(search("实").await, sorted(&["北京Huaxin实业有限公司"]));
    // Two characters: only the records holding both, adjacent and in that order.
    assert_eq!(search("宏达").await, sorted(&["上海宏达科技有限公司"]));
    assert_eq!(search("达宏").await, sorted(&["达宏物流"]));
    assert_eq!(search("宏大").await, sorted(&["宏大建设集团"]));
    // A title word, and a company's short name split across words.
    assert_eq!(search("合同").await, sorted(&["上海宏达科技有限公司"]));
    assert_eq!(
        search("有限公司").await,
        sorted(&[
            "上海宏达科技有限公司",
            "深圳鑫源贸易有限公司",
            "北京Huaxin实业有限公司"
        ])
    );
    // Mixed Latin and Chinese, Latin case-insensitive.
    assert_eq!(
        search("huaxin实业").await,
        sorted(&["北京Huaxin实业有限公司"])
    );
    assert_eq!(search("Acme宏").await, sorted(&["Acme宏Trading"]));
    assert_eq!(search("me宏tr").await, sorted(&["Acme宏Trading"]));
    // Nothing holds these.
    assert!(search("龘").await.is_empty());
    assert!(search("宏科").await.is_empty());
    assert!(search("上海宏达科技股份").await.is_empty());
    // The Claims record is found by its own department only.
    let other = app
        .add_user("claims.clerk", &[Role::Employee], "Claims")
        .await;
    let (_, login) = app.login(&other.username, PASSWORD).await;
    let clerk = login["token"].as_str().unwrap();
    let (s, v) = app
        .get(&format!("/api/v1/records?q={}", url("宏达")), clerk)
        .await;
    assert_eq!(s, Status::Ok, "{v}");
    assert_eq!(companies(&v), sorted(&["宏达保险代理"]));
    // One Latin letter is still too short; one Chinese character is not.
    let (s, err) = app.get("/api/v1/records?q=a", &employee).await;
    assert_eq!(s, Status::UnprocessableEntity, "{err}");
    assert_eq!(err["error"]["field"], "q");
    // Searches are audited with the fragment searched for.
    let details: String = sqlx::query_scalar(
        "SELECT string_agg(detail->>'q', '|') FROM audit_events WHERE action = 'record.search'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(
        details.contains("宏达") && details.contains("鑫"),
        "{details}"
    );
}

#[tokio::test]
async fn a_fragment_matching_many_records_pages_newest_first() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let mut filed = Vec::new();
    for i in 0..30 {
        let company = format!("杭州{i:02}号贸易有限公司");
        let (s, r) = app
            .post(
                "/api/v1/records",
                &archivist,
                record(&contracts, "采购合同", &company),
            )
            .await;
        assert_eq!(s, Status::Created, "{r}");
        filed.push(company);
    }
    for company in ["Westlake Paper Ltd", "西湖纸业"] {
        let (s, r) = app
            .post(
                "/api/v1/records",
                &archivist,
                record(&contracts, "Lease", company),
            )
            .await;
        assert_eq!(s, Status::Created, "{r}");
    }
    let (_, employee) = app.login_as(Role::Employee).await;
    let q = url("公司");
    let (s, p1) = app.get(&format!("/api/v1/records?q={q}"), &employee).await;
    assert_eq!(s, Status::Ok, "{p1}");
    assert_eq!(p1["has_more"], true);
    let (s, p2) = app
        .get(&format!("/api/v1/records?q={q}&page=2"), &employee)
        .await;
    assert_eq!(s, Status::Ok, "{p2}");
    assert_eq!(p2["has_more"], false);
    let in_order = |v: &Value| -> Vec<String> {
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
            .collect()
    };
    let mut both = in_order(&p1);
    assert_eq!(both.len(), 25);
    both.extend(in_order(&p2));
    // Newest first, every match once, nothing else.
    filed.reverse();
    assert_eq!(both, filed);
}

/// The main query of the second step of `records::search` for a fragment, as the app
/// builds it, under EXPLAIN.
async fn plan(db: &sqlx::PgPool, fragment: &str) -> String {
    let lines: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT r.id FROM records r WHERE TRUE \
         AND search_cjk_grams(r.search_text) @> $1::text[] AND r.search_text LIKE $2 \
         ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4",
    )
    .bind(cjk_query_grams(fragment))
    .bind(format!("%{fragment}%"))
    .bind(26i64)
    .bind(0i64)
    .fetch_all(db)
    .await
    .unwrap();
    lines.join("\n")
}

#[tokio::test]
async fn chinese_fragments_are_answered_from_the_cjk_gram_index() {
    let app = TestApp::new().await;
    let su = app.superuser_pool().await;
    let category = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO categories (id, code, name, sensitivity, department, retention_years)
         VALUES ($1, 'CN', '客户', 'internal', 'Retail', 1)",
    )
    .bind(category)
    .execute(&su)
    .await
    .unwrap();
    // 20,000 records with coined Chinese company names, as records::search_text builds
    // them: title, reference, company name.
    sqlx::query(
        "INSERT INTO records (id, category_id, reference, title, fields, search_text, schema_version, created_at)
         SELECT gen_random_uuid(), $1, ref, title, jsonb_build_object('company_name', name),
                title || ' ' || ref || ' ' || name, 1, now() - g * interval '1 minute'
         FROM generate_series(1, 20000) g,
              LATERAL (SELECT 'CN-2026-' || lpad(g::text, 6, '0') AS ref,
                              (ARRAY['贷款合同','开户资料','保险理赔','授信审批'])[1 + g % 4] AS title,
                              (ARRAY['上海','北京','深圳','广州','杭州'])[1 + g % 5]
                              || (ARRAY['宏','鑫','华','金','恒','瑞','安','永'])[1 + (g / 5) % 8]
                              || (ARRAY['达','源','信','泰','通','盛','祥','丰','利'])[1 + (g / 40) % 9]
                              || (ARRAY['科技','贸易','实业','物流'])[1 + (g / 360) % 4]
                              || '有限公司' AS name) n",
    )
    .bind(category)
    .execute(&su)
    .await
    .unwrap();
    sqlx::query("ANALYZE records").execute(&su).await.unwrap();
    let count = |q: &str| {
        let su = su.clone();
        let q = q.to_string();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM records WHERE search_cjk_grams(search_text) @> $1::text[]
                 AND search_text ILIKE $2",
            )
            .bind(cjk_query_grams(&q))
            .bind(format!("%{q}%"))
            .fetch_one(&su)
            .await
            .unwrap()
        }
    };
    // Two characters (a short name), one character, longer ones, and one matching none.
    for fragment in ["宏达", "上海宏达", "深圳鑫源贸易", "龘", "达宏"] {
        let p = plan(&su, fragment).await;
        assert!(
            p.contains("records_search_cjk_idx"),
            "the plan for {fragment} does not use the CJK gram index:\n{p}"
        );
        assert!(!p.contains("Seq Scan"), "{fragment}:\n{p}");
    }
    // The index and the recheck agree with the text itself.
    for (fragment, expected) in [("宏达", 20000 / 72), ("龘", 0), ("达宏", 0)] {
        let n = count(fragment).await;
        let plain: i64 =
            sqlx::query_scalar("SELECT count(*) FROM records WHERE strpos(search_text, $1) > 0")
                .bind(fragment)
                .fetch_one(&su)
                .await
                .unwrap();
        assert_eq!(n, plain, "{fragment}");
        assert!((n - expected as i64).abs() <= 5, "{fragment}: {n}");
    }
    // Through the app (the table is larger than the window, so both steps run): a
    // fragment most records hold (answered from the newest records), a short name (from
    // the window too) and a rare one (from the index), each the newest matches first.
    let (_, employee) = app.login_as(Role::Employee).await;
    for (fragment, page) in [
        ("有限公司", 1),
        ("有限公司", 3),
        ("宏达", 2),
        ("深圳宏达科技", 1),
    ] {
        let (s, v) = app
            .get(
                &format!("/api/v1/records?q={}&page={page}", url(fragment)),
                &employee,
            )
            .await;
        assert_eq!(s, Status::Ok, "{v}");
        let got: Vec<String> = v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["reference"].as_str().unwrap().to_string())
            .collect();
        let expected: Vec<String> = sqlx::query_scalar(
            "SELECT reference FROM records WHERE strpos(search_text, $1) > 0
             ORDER BY created_at DESC, id DESC LIMIT 25 OFFSET $2",
        )
        .bind(fragment)
        .bind((page - 1) * 25)
        .fetch_all(&su)
        .await
        .unwrap();
        assert!(!expected.is_empty(), "{fragment}");
        assert_eq!(got, expected, "{fragment} page {page}");
    }
    su.close().await;
}

#[tokio::test]
async fn cjk_character_classes_agree_with_the_database() {
    let app = TestApp::new().await;
    for text in [
        "上海宏达 科技",
        "ひらがなカタカナ",
        "한국어 회사",
        "𠀀𠀁 Ext-B",
        "兀 compatibility 﨎",
        "〿 not CJK ꀀ",
        "Acme宏Trading 2026",
        "㐀㐁 Ext-A",
    ] {
        let grams = cjk_query_grams(text);
        let (contains, db_empty): (bool, bool) = sqlx::query_as(
            "SELECT search_cjk_grams($1) @> $2::text[], cardinality(search_cjk_grams($1)) = 0",
        )
        .bind(text)
        .bind(&grams)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert!(
            contains,
            "{text}: the database's grams lack some of {grams:?}"
        );
        assert_eq!(
            db_empty,
            !text.chars().any(is_cjk),
            "{text}: the classes differ"
        );
    }
}
