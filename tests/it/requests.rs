use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::archive::{field, setup};
use crate::common::TestApp;

const PURPOSE: &str = "customer complaint #4711 needs the signed contract";

struct World {
    app: TestApp,
    record: String,
    employee: String,
    sup1: String,
    sup2: String,
    outsider_sup: String,
}

async fn world() -> World {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (s, r) = app
        .post("/api/v1/records", &archivist, json!({
            "category_id": contracts["id"], "title": "Framework agreement",
            "fields": {"company_name": "Huaxin", "holder_name": "张三丰", "phone": "13812345678", "id_number": "11010519491231002X"}
        }))
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let record = r["id"].as_str().unwrap().to_string();
    let employee = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup1 = app.user_token("sup1", &[Role::Supervisor], "Retail").await;
    let sup2 = app.user_token("sup2", &[Role::Supervisor], "Retail").await;
    let outsider_sup = app.user_token("sup3", &[Role::Supervisor], "Claims").await;
    World {
        app,
        record,
        employee,
        sup1,
        sup2,
        outsider_sup,
    }
}

impl World {
    async fn request(&self, kind: &str, hours: u32) -> Value {
        let (s, r) = self
            .app
            .post("/api/v1/requests", &self.employee, json!({"record_id": self.record, "kind": kind, "purpose": PURPOSE, "duration_hours": hours}))
            .await;
        assert_eq!(s, Status::Created, "{r}");
        r
    }
    async fn approve(&self, token: &str, id: &Value) -> (Status, Value) {
        self.app
            .post(
                &format!("/api/v1/requests/{}/approve", id.as_str().unwrap()),
                token,
                json!({"comment": "ok"}),
            )
            .await
    }
}

#[tokio::test]
async fn the_two_person_rule_self_approval_and_double_approval() {
    let w = world().await;
    let r = w.request("export", 8).await;
    assert_eq!(r["state"], "pending");
    assert_eq!(
        r["required_approvals"], 2,
        "confidential exports need two approvers"
    );
    // The requester can never approve their own request.
    let (s, _) = w.approve(&w.employee, &r["id"]).await;
    assert_eq!(s, Status::Forbidden, "self-approval");
    // One approval: still pending.
    let (s, after1) = w.approve(&w.sup1, &r["id"]).await;
    assert_eq!(s, Status::Ok, "{after1}");
    assert_eq!(after1["state"], "pending");
    assert!(after1["grant"].is_null());
    // The same person again: refused.
    let (s, again) = w.approve(&w.sup1, &r["id"]).await;
    assert_eq!(s, Status::Conflict, "{again}");
    // A supervisor of another department is not eligible (same-department rule).
    let (s, _) = w.approve(&w.outsider_sup, &r["id"]).await;
    assert_eq!(s, Status::NotFound);
    // A second, distinct approver: approved, with a grant.
    let (s, after2) = w.approve(&w.sup2, &r["id"]).await;
    assert_eq!(s, Status::Ok, "{after2}");
    assert_eq!(after2["state"], "approved");
    assert_eq!(after2["grant"]["state"], "active");
    assert_eq!(after2["decisions"].as_array().unwrap().len(), 2);
    assert_eq!(w.app.audit_count("request.approve", "success").await, 2);
    assert_eq!(w.app.audit_count("grant.create", "success").await, 1);
    let purpose_logged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action LIKE 'request.%' AND detail->>'purpose' = $1",
    )
    .bind(PURPOSE)
    .fetch_one(&w.app.db)
    .await
    .unwrap();
    assert!(purpose_logged >= 3, "every transition names the purpose");
}

#[tokio::test]
async fn a_supervisor_cannot_approve_their_own_request() {
    let w = world().await;
    let (s, r) = w
        .app
        .post("/api/v1/requests", &w.sup1, json!({"record_id": w.record, "kind": "lookup", "purpose": PURPOSE, "duration_hours": 2}))
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let (s, _) = w.approve(&w.sup1, &r["id"]).await;
    assert_eq!(s, Status::Forbidden);
    assert_eq!(w.app.audit_count("request.approve", "denied").await, 1);
    let (s, _) = w.approve(&w.sup2, &r["id"]).await;
    assert_eq!(s, Status::Ok);
}

#[tokio::test]
async fn expired_and_cancelled_requests_cannot_be_approved() {
    let w = world().await;
    let r = w.request("lookup", 4).await;
    sqlx::query(
        "UPDATE access_requests SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(r["id"].as_str().unwrap())
    .execute(&w.app.db)
    .await
    .unwrap();
    let (s, body) = w.approve(&w.sup1, &r["id"]).await;
    assert_eq!(s, Status::Conflict, "{body}");
    // The job records the expiry; the request reads as expired either way.
    let (n, _) = strongroom::requests::expire_due(&strongroom::tx::Db::new(w.app.db.clone()))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (_, got) = w
        .app
        .get(
            &format!("/api/v1/requests/{}", r["id"].as_str().unwrap()),
            &w.employee,
        )
        .await;
    assert_eq!(got["state"], "expired");

    let r = w.request("lookup", 4).await;
    let (s, c) = w
        .app
        .post(
            &format!("/api/v1/requests/{}/cancel", r["id"].as_str().unwrap()),
            &w.employee,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{c}");
    assert_eq!(c["state"], "cancelled");
    let (s, _) = w.approve(&w.sup1, &r["id"]).await;
    assert_eq!(s, Status::Conflict);
    // Only the requester cancels.
    let r = w.request("lookup", 4).await;
    let (s, _) = w
        .app
        .post(
            &format!("/api/v1/requests/{}/cancel", r["id"].as_str().unwrap()),
            &w.sup1,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Forbidden);
}

#[tokio::test]
async fn purpose_and_duration_are_checked_against_the_route() {
    let w = world().await;
    let (s, e) = w.app.post("/api/v1/requests", &w.employee, json!({"record_id": w.record, "kind": "lookup", "purpose": "need it", "duration_hours": 4})).await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert_eq!(e["error"]["field"], "purpose");
    let (s, e) = w.app.post("/api/v1/requests", &w.employee, json!({"record_id": w.record, "kind": "lookup", "purpose": PURPOSE, "duration_hours": 49})).await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert_eq!(e["error"]["field"], "duration_hours");
    assert!(e["error"]["message"].as_str().unwrap().contains("48"));
    // A record the requester may not see cannot be requested (and is not revealed).
    let outsider = w
        .app
        .user_token("claims_emp", &[Role::Employee], "Claims")
        .await;
    let (s, _) = w.app.post("/api/v1/requests", &outsider, json!({"record_id": w.record, "kind": "lookup", "purpose": PURPOSE, "duration_hours": 4})).await;
    assert_eq!(s, Status::NotFound);
}

#[tokio::test]
async fn unmasked_only_while_the_grant_is_active_and_every_unmasked_read_is_audited() {
    let w = world().await;
    let path = format!("/api/v1/records/{}", w.record);
    let (_, masked) = w.app.get(&path, &w.employee).await;
    assert_eq!(field(&masked, "phone")["value"], "138****5678");
    let r = w.request("lookup", 4).await;
    // Pending: still masked.
    let (_, still) = w.app.get(&path, &w.employee).await;
    assert_eq!(field(&still, "phone")["value"], "138****5678");
    // The queue shows it to an eligible approver, with a count.
    let (s, q) = w.app.get("/api/v1/requests?to_approve=true", &w.sup1).await;
    assert_eq!(s, Status::Ok, "{q}");
    assert_eq!(q["waiting"], 1);
    let (_, approved) = w.approve(&w.sup1, &r["id"]).await;
    assert_eq!(approved["state"], "approved");
    let (_, q) = w.app.get("/api/v1/requests?to_approve=true", &w.sup2).await;
    assert_eq!(q["waiting"], 0);
    // Active: unmasked for the grantee only.
    let (_, open) = w.app.get(&path, &w.employee).await;
    assert_eq!(field(&open, "phone")["value"], "13812345678");
    assert_eq!(field(&open, "holder_name")["value"], "张三丰");
    assert_eq!(field(&open, "phone")["masked"], false);
    let (_, other) = w.app.get(&path, &w.sup2).await;
    assert_eq!(field(&other, "phone")["value"], "138****5678");
    // Audited: which fields, never the values.
    let detail: Value =
        sqlx::query_scalar("SELECT detail FROM audit_events WHERE action = 'record.unmask'")
            .fetch_one(&w.app.db)
            .await
            .unwrap();
    assert!(detail["fields"]
        .as_array()
        .unwrap()
        .contains(&json!("phone")));
    let all: String = sqlx::query_scalar("SELECT string_agg(detail::text, '|') FROM audit_events")
        .fetch_one(&w.app.db)
        .await
        .unwrap();
    assert!(!all.contains("13812345678") && !all.contains("张三丰"));
    // Revoked: masked again on the very next request.
    let grant = approved["grant"]["id"].as_str().unwrap();
    let (s, e) = w
        .app
        .post(
            &format!("/api/v1/grants/{grant}/revoke"),
            &w.employee,
            json!({"reason": "not yours to revoke"}),
        )
        .await;
    assert_eq!(s, Status::Forbidden, "{e}");
    let (s, g) = w
        .app
        .post(
            &format!("/api/v1/grants/{grant}/revoke"),
            &w.sup2,
            json!({"reason": "purpose fulfilled"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{g}");
    assert_eq!(g["state"], "revoked");
    let (_, again) = w.app.get(&path, &w.employee).await;
    assert_eq!(field(&again, "phone")["value"], "138****5678");
    // Expired: the same, without waiting for any job.
    let r = w.request("lookup", 4).await;
    w.approve(&w.sup1, &r["id"]).await;
    let (_, open) = w.app.get(&path, &w.employee).await;
    assert_eq!(field(&open, "phone")["value"], "13812345678");
    sqlx::query(
        "UPDATE grants SET valid_until = now() - interval '1 second' WHERE revoked_at IS NULL",
    )
    .execute(&w.app.db)
    .await
    .unwrap();
    let (_, closed) = w.app.get(&path, &w.employee).await;
    assert_eq!(field(&closed, "phone")["value"], "138****5678");
    assert_eq!(w.app.audit_count("record.unmask", "success").await, 2);
}

#[tokio::test]
async fn public_lookups_are_approved_by_the_workflow_at_once() {
    let app = TestApp::new().await;
    let (archivist, _) = setup(&app).await;
    let (_, cat) = app
        .post("/api/v1/categories", &archivist, json!({"code": "PUB", "name": "Brochures", "sensitivity": "public", "department": "Marketing", "retention_years": 1,
            "fields": [{"name": "contact_phone", "type": "phone", "sensitive": true}]}))
        .await;
    let (_, rec) = app.post("/api/v1/records", &archivist, json!({"category_id": cat["id"], "title": "Spring leaflet", "fields": {"contact_phone": "13912345678"}})).await;
    let (_, emp) = app.login_as(Role::Employee).await;
    let (s, r) = app.post("/api/v1/requests", &emp, json!({"record_id": rec["id"], "kind": "lookup", "purpose": PURPOSE, "duration_hours": 1})).await;
    assert_eq!(s, Status::Created, "{r}");
    assert_eq!(r["state"], "approved");
    assert_eq!(r["required_approvals"], 0);
    let (_, open) = app
        .get(
            &format!("/api/v1/records/{}", rec["id"].as_str().unwrap()),
            &emp,
        )
        .await;
    assert_eq!(field(&open, "contact_phone")["value"], "13912345678");
}

#[tokio::test]
async fn the_masking_policy_decides_per_role_and_unmasked_reads_are_audited() {
    let pol = tempfile::tempdir().unwrap();
    for f in ["access.cedar", "access.cedarschema", "workflows.toml"] {
        std::fs::copy(std::path::Path::new("policies").join(f), pol.path().join(f)).unwrap();
    }
    // Archivists see phone numbers as stored; everyone sees the ID number's last 2 only.
    std::fs::write(
        pol.path().join("masking.toml"),
        "[[rule]]\ntype = \"phone\"\nroles = [\"archivist\"]\nmask = \"none\"\n\n\
         [[rule]]\ntype = \"phone\"\nmask = \"partial\"\nkeep_first = 3\nkeep_last = 4\n\n\
         [[rule]]\nfield = \"id_number\"\nmask = \"partial\"\nkeep_last = 2\n",
    )
    .unwrap();
    let dir = pol.path().to_path_buf();
    let app = TestApp::with_config(move |c| c.policies = dir).await;
    let (archivist, contracts) = setup(&app).await;
    let (s, r) = app
        .post("/api/v1/records", &archivist, json!({
            "category_id": contracts["id"], "title": "Framework agreement",
            "fields": {"company_name": "Huaxin", "holder_name": "张三丰", "phone": "13812345678",
                       "id_number": "11010519491231002X", "email": "jane@example.com"}
        }))
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let path = format!("/api/v1/records/{}", r["id"].as_str().unwrap());
    let employee = app.user_token("emp", &[Role::Employee], "Retail").await;
    let (_, seen) = app.get(&path, &employee).await;
    assert_eq!(field(&seen, "phone")["value"], "138****5678");
    assert_eq!(field(&seen, "id_number")["value"], "****************2X");
    // No rule for e-mail or the holder's name: masked all the same (the default).
    assert_eq!(field(&seen, "email")["value"], "***");
    assert_eq!(field(&seen, "holder_name")["value"], "张*丰");
    let unmasks = |who: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM audit_events e JOIN users u ON u.id = e.actor_id \
                 WHERE e.action = 'record.unmask' AND u.username LIKE $1",
            )
            .bind(format!("{who}%"))
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    assert_eq!(unmasks("emp").await, 0);
    let (_, seen) = app.get(&path, &archivist).await;
    assert_eq!(field(&seen, "phone")["value"], "13812345678");
    assert_eq!(field(&seen, "phone")["masked"], false);
    assert_eq!(field(&seen, "id_number")["value"], "****************2X");
    // The archivist's unmasked read is audited with the field, not the value.
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE action = 'record.unmask' ORDER BY pos DESC LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(detail["fields"], json!(["phone"]), "{detail}");
    assert_eq!(detail["kind"], "masking policy");
    assert!(!detail.to_string().contains("13812345678"));
    // Search shows it the same way, and audits it too.
    let (_, hits) = app.get("/api/v1/records?q=Framework", &archivist).await;
    assert_eq!(
        field(&hits["hits"][0], "phone")["value"],
        "13812345678",
        "{hits}"
    );
    let via_search: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'record.unmask' AND detail->>'via' = 'search'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(via_search, 1);
}
