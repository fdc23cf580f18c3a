//! Phone numbers by the real numbering plans: every written form of a number finds the same
//! record (the blind index is computed from E.164), invalid numbers are refused in both
//! languages, and the start-up re-index brings blind-index values of the earlier
//! normalization (bare digits) to E.164 once.

use rocket::http::{ContentType, Header, RawStr, Status};
use serde_json::{json, Value};
use strongroom::records::phones;
use strongroom::users::Role;

use crate::archive::{field, setup};
use crate::common::{bearer, json_of, TestApp};

async fn file(
    app: &TestApp,
    archivist: &str,
    category: &Value,
    company: &str,
    phone: &str,
) -> String {
    let (s, r) = app
        .post("/api/v1/records", archivist, json!({"category_id": category["id"],
            "title": format!("Contract {company}"), "fields": {"company_name": company, "phone": phone}}))
        .await;
    assert_eq!(s, Status::Created, "{r}");
    r["id"].as_str().unwrap().to_string()
}

async fn found(app: &TestApp, token: &str, phone: &str) -> Vec<String> {
    let q = RawStr::new(phone).percent_encode();
    let (s, res) = app.get(&format!("/api/v1/records?phone={q}"), token).await;
    assert_eq!(s, Status::Ok, "{phone}: {res}");
    res["hits"]
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
}

#[tokio::test]
async fn every_written_form_of_a_number_finds_the_same_record() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    file(&app, &archivist, &contracts, "Mobile Co", "138 1234 5678").await;
    file(&app, &archivist, &contracts, "Landline Co", "010-12345678").await;
    file(
        &app,
        &archivist,
        &contracts,
        "Shenzhen Co",
        "0755 1234 5678",
    )
    .await;
    file(
        &app,
        &archivist,
        &contracts,
        "London Co",
        "+44 20 7946 0958",
    )
    .await;
    let (_, employee) = app.login_as(Role::Employee).await;
    for typed in [
        "13812345678",
        "138 1234 5678",
        "+86 138-1234-5678",
        "0086 138 1234 5678",
        "+8613812345678",
    ] {
        assert_eq!(
            found(&app, &employee, typed).await,
            ["Mobile Co"],
            "{typed}"
        );
    }
    for typed in ["010-12345678", "(010) 1234 5678", "+86 10 1234 5678"] {
        assert_eq!(
            found(&app, &employee, typed).await,
            ["Landline Co"],
            "{typed}"
        );
    }
    assert_eq!(
        found(&app, &employee, "+86 755 1234 5678").await,
        ["Shenzhen Co"]
    );
    for typed in ["+44 20 7946 0958", "0044 20 7946 0958"] {
        assert_eq!(
            found(&app, &employee, typed).await,
            ["London Co"],
            "{typed}"
        );
    }
    // A number no plan allows is a clear error, not an empty result.
    let (s, e) = app.get("/api/v1/records?phone=1381234567", &employee).await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
}

#[tokio::test]
async fn invalid_numbers_are_refused_in_both_languages() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    for bad in ["1381234567", "138123456789", "23812345678", "442079460958"] {
        for (lang, words) in [("en", "must be a phone number"), ("zh-CN", "须为电话号码")] {
            let res = app
                .client
                .post("/api/v1/records")
                .header(bearer(&archivist))
                .header(ContentType::JSON)
                .header(Header::new("Accept-Language", lang))
                .body(
                    json!({"category_id": contracts["id"], "title": "Contract",
                    "fields": {"company_name": "Bad Co", "phone": bad}})
                    .to_string(),
                )
                .dispatch()
                .await;
            let (s, e) = json_of(res).await;
            assert_eq!(s, Status::UnprocessableEntity, "{bad}: {e}");
            let message = e["error"]["message"].as_str().unwrap();
            assert!(message.contains(words), "{bad} ({lang}): {message}");
            assert!(!message.contains(bad), "the value is not echoed: {message}");
        }
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM records")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn the_start_up_reindex_migrates_old_blind_index_values_once() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let mobile = file(&app, &archivist, &contracts, "Mobile Co", "13812345678").await;
    let london = file(
        &app,
        &archivist,
        &contracts,
        "London Co",
        "+44 20 7946 0958",
    )
    .await;
    let (_, employee) = app.login_as(Role::Employee).await;
    let keys = &app.app().keys;

    // As the earlier version stored them: bare digits, indexed as they were.
    let old = |record: &str, digits: &str| {
        let record = uuid::Uuid::parse_str(record).unwrap();
        let (kek, sealed) = keys.encrypt_field(record, "phone", digits);
        (record, kek, sealed, keys.blind_index("phone", digits))
    };
    for (record, digits) in [(&mobile, "13812345678"), (&london, "442079460958")] {
        let (id, kek, sealed, index) = old(record, digits);
        sqlx::query(
            "UPDATE record_sensitive_values SET ciphertext = $3, kek_id = $4, blind_index = $5 \
             WHERE record_id = $1 AND field = $2",
        )
        .bind(id)
        .bind("phone")
        .bind(&sealed)
        .bind(&kek)
        .bind(&index)
        .execute(&app.db)
        .await
        .unwrap();
    }
    // The test database is migrated without the start-up step having run.
    sqlx::query("DELETE FROM app_data_migrations WHERE name = $1")
        .bind(phones::REINDEX)
        .execute(&app.db)
        .await
        .unwrap();
    assert!(found(&app, &employee, "+86 138 1234 5678").await.is_empty());
    assert!(found(&app, &employee, "+44 20 7946 0958").await.is_empty());

    let done = phones::reindex(&app.app().db, keys).await.unwrap();
    assert_eq!(
        done,
        Some(phones::Reindexed {
            reindexed: 2,
            resealed: 1,
            unparsable: 0
        })
    );
    assert_eq!(
        found(&app, &employee, "+86 138 1234 5678").await,
        ["Mobile Co"]
    );
    assert_eq!(found(&app, &employee, "13812345678").await, ["Mobile Co"]);
    assert_eq!(
        found(&app, &employee, "+44 20 7946 0958").await,
        ["London Co"]
    );
    // The foreign number is kept in E.164 now.
    let (id, kek, sealed): (uuid::Uuid, String, Vec<u8>) = sqlx::query_as(
        "SELECT record_id, kek_id, ciphertext FROM record_sensitive_values WHERE record_id = $1",
    )
    .bind(uuid::Uuid::parse_str(&london).unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        keys.decrypt_field(id, "phone", &kek, &sealed)
            .unwrap()
            .as_str(),
        "+442079460958"
    );

    // Recorded: a second start does nothing.
    assert_eq!(phones::reindex(&app.app().db, keys).await.unwrap(), None);
    assert_eq!(app.audit_count("phones.reindex", "success").await, 1);
    let rows: i64 = sqlx::query_scalar("SELECT rows FROM app_data_migrations WHERE name = $1")
        .bind(phones::REINDEX)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(rows, 2);
}
