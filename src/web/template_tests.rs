//! Every template rendered with realistic data in the environment the server builds
//! (`Templates::new`, with this build's minijinja features), so that a filter, test or
//! function the build lacks fails here rather than as a 500 in production: `/audit` once
//! broke on `tojson` because no test rendered it with an event.

use minijinja::{ErrorKind, Value};
use serde_json::json;

use super::{Templates, TEMPLATES};

/// Renders a page in Chinese and in English (returning the English), and fails on any
/// message the templates name that a catalog lacks.
fn render(t: &Templates, name: &str, ctx: serde_json::Value) -> String {
    let mut english = String::new();
    for lang in ["zh-CN", "en"] {
        let mut ctx = ctx.clone();
        if let Some(o) = ctx.as_object_mut() {
            if o.contains_key("lang") || !o.contains_key("me") {
                o.insert("lang".into(), json!(lang));
            }
            if let Some(me) = o.get_mut("me").and_then(|m| m.as_object_mut()) {
                me.insert("lang".into(), json!(lang));
                me.insert("tz".into(), json!("Asia/Shanghai"));
            }
        }
        let html = match t.render(name, Value::from_serialize(&ctx)) {
            Ok(html) => html.0,
            Err(e) => panic!("{name} ({lang}): {e:?}"),
        };
        assert!(
            !html.contains("<html") || html.contains(&format!("<html lang=\"{lang}\">")),
            "{name}: <html lang> is not {lang}"
        );
        let missing = crate::i18n::missing_keys();
        assert!(
            missing.is_empty(),
            "{name} ({lang}): messages missing: {missing:?}"
        );
        english = html;
    }
    english
}

fn me() -> serde_json::Value {
    json!({
        "username": "li.wei", "display_name": "Li Wei", "department": "Retail",
        "roles": ["admin", "auditor", "archivist", "supervisor", "employee"],
        "must_change_password": false, "lang": "en", "tz": "Asia/Shanghai",
        "path": "/records?x=1", "flash": "Record filed.",
        "languages": [{"tag": "zh-CN", "name": "简体中文"}, {"tag": "en", "name": "English"}],
    })
}

const T: &str = "2026-11-29T10:15:00Z";
const ID: &str = "6b1f1c1e-2f57-4a43-9d0b-1d3c8a9e2b10";
const ID2: &str = "0d6f6c37-8c5e-4a1e-8f0e-6f3b3f8d9a21";

fn category() -> serde_json::Value {
    json!({
        "id": ID, "path": "Customers / Contracts", "code": "CONTR", "name": "Contracts",
        "sensitivity": "confidential", "department": "Retail", "retention_years": 10,
        "schema_version": 2,
        "fields": [
            {"name": "customer", "label": "Customer", "type": "text", "required": true, "sensitive": false},
            {"name": "phone", "label": "Phone", "type": "phone", "required": false, "sensitive": true},
            {"name": "signed", "label": "Signed", "type": "date", "required": false, "sensitive": false},
            {"name": "mail", "label": "E-mail", "type": "email", "required": false, "sensitive": false},
            {"name": "tier", "label": "Tier", "type": "choice", "required": true, "sensitive": false,
             "choices": ["gold", "silver"]},
        ],
    })
}

fn request() -> serde_json::Value {
    json!({
        "id": ID, "record_id": ID2, "reference": "CONTR-2026-000123", "title": "Lease",
        "requester": "Li Wei", "created_at": T, "expires_at": T, "kind": "view",
        "duration_hours": 24, "purpose": "customer complaint 42", "approvals": 1,
        "required_approvals": 2, "approver_role": "supervisor", "same_department": true,
        "department": "Retail", "state": "pending", "active": true,
        "decisions": [
            {"approver": "Ma Lin", "decision": "approve", "comment": "ok", "decided_at": T},
            {"approver": "Zhou Yu", "decision": "reject", "comment": "", "decided_at": T},
        ],
        "grant": {"id": ID, "state": "active", "valid_until": T},
        "files": [{"id": ID2, "original_name": "lease.pdf"}],
    })
}

/// Audit events as `api::read_audit` serializes them, of many kinds.
pub(super) fn audit_events() -> serde_json::Value {
    let kinds = [
        ("auth.login", "success", json!({"method": "password"})),
        (
            "auth.login",
            "failure",
            json!({"reason": "invalid_credentials"}),
        ),
        (
            "record.create",
            "success",
            json!({"reference": "CONTR-2026-000123"}),
        ),
        (
            "record.search",
            "success",
            json!({"q": "lease", "hits": 3, "page": 1}),
        ),
        (
            "request.create",
            "success",
            json!({"kind": "view", "purpose": "complaint <42>"}),
        ),
        (
            "request.approve",
            "success",
            json!({"comment": "ok & fine"}),
        ),
        ("request.reject", "success", json!({"comment": "no"})),
        (
            "grant.create",
            "success",
            json!({"kind": "view", "valid_until": T}),
        ),
        (
            "file.view",
            "success",
            json!({"grant_id": ID, "pages": [1, 2]}),
        ),
        ("record.view", "denied", json!({})),
    ];
    let mut events: Vec<_> = kinds
        .iter()
        .enumerate()
        .map(|(i, (action, outcome, detail))| {
            json!({
                "seq": i + 1, "id": ID, "occurred_at": T, "actor_id": ID2, "actor": "li.wei",
                "action": action, "object_type": "record", "object_id": ID,
                "outcome": outcome, "client_addr": "10.0.0.7", "request_id": "r-1",
                "detail": detail,
            })
        })
        .collect();
    events.push(json!({
        "seq": null, "id": null, "occurred_at": T, "first_at": T, "actor": "li.wei",
        "action": "file.view.page", "object_type": "file", "object_id": ID2, "outcome": "success",
        "client_addr": "10.0.0.7", "detail": {"grant": ID, "record": ID2}, "pages": [1, 2, 3],
        "events": 3,
    }));
    json!(events)
}

#[test]
fn every_template_renders_with_realistic_data() {
    let t = Templates::new().unwrap();
    let common = |extra: serde_json::Value| {
        let mut ctx = json!({"me": me(), "csrf": "csrf-token"});
        if let (Some(c), Some(e)) = (ctx.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        ctx
    };
    let mut rendered = Vec::new();
    let mut page = |name: &'static str, ctx: serde_json::Value| {
        let html = render(&t, name, ctx);
        rendered.push(name);
        html
    };

    page("base.html", common(json!({})));
    page(
        "login.html",
        json!({"csrf": "c", "error": "invalid username or password", "username": "li"}),
    );
    page("home.html", common(json!({})));
    // Two-factor sign-in: the second step of sign-in, and each state of the enrolment page.
    page(
        "login_code.html",
        json!({"csrf": "c", "error": "the code is not valid or has already been used"}),
    );
    page(
        "totp.html",
        common(json!({"status": {"enrolled": false, "pending": false}, "required": true})),
    );
    let html = page(
        "totp.html",
        common(json!({
            "status": {"enrolled": false, "pending": true}, "required": true,
            "enrolment": {"qr_svg": "<svg role=\"img\" aria-label=\"QR\" class=\"qr\"></svg>",
                          "secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
                          "secret_grouped": "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"},
            "errors": {"fields": {"code": "is not the current code of your authenticator app"},
                       "general": [], "first": "code"},
        })),
    );
    assert!(
        html.contains("<svg role=\"img\""),
        "the QR code is inline: {html}"
    );
    assert!(html.contains("data-secret=\"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\""));
    let html = page(
        "totp.html",
        common(json!({
            "status": {"enrolled": true, "pending": false}, "required": false,
            "recovery_codes": ["K7RQM-2XH9D", "ABCDE-FGHJK"],
        })),
    );
    assert_eq!(html.matches("class=\"recovery-code\"").count(), 2);
    page(
        "totp.html",
        common(json!({"status": {"enrolled": true, "pending": false}, "required": false})),
    );
    let labels = serde_json::to_value(super::audit::actions(crate::i18n::Lang::En).1).unwrap();
    let html = page(
        "home.html",
        common(json!({
            "waiting": [{"r": request(), "age_seconds": 7500}], "waiting_total": 1,
            "due": [{"id": ID, "request_id": ID, "record_id": ID2, "reference": "CONTR-2026-000123",
                     "title": "Lease", "borrower": "Li Wei", "checked_out_by": "Ma Lin", "out_at": T,
                     "due_date": "2026-11-20", "returned_at": null, "condition": null,
                     "approved_by": "Ma Lin", "overdue": true}],
            "ready": [{"record_id": ID2, "reference": "CONTR-2026-000124", "title": "Deed",
                       "borrower": "Zhou Yu", "approved_by": "Ma Lin", "valid_until": T,
                       "request_id": ID, "latest_due": "2026-12-06"}],
            "own": [request()], "held": [{"r": request(), "files": [[ID2, "lease.pdf"]]}],
            "audit": {"chained": 212, "recent": audit_events(),
                      "last_check": {"at": T, "by": "audit.li", "ok": true, "seq": 200}},
            "labels": labels.clone(),
            "accounts": {"total": 9, "active": 8}, "is_admin": true,
            "last_scrub": {"finished_at": T, "clean": false, "files_verified": 3, "damaged": 1, "missing": 0},
        })),
    );
    for part in [
        "home-approvals",
        "home-loans",
        "home-mine",
        "home-audit",
        "home-admin",
        "CONTR-2026-000124",
        "/view/",
    ] {
        assert!(html.contains(part), "{part} missing from the home page");
    }
    assert!(
        html.contains("Request approved"),
        "actions are named, not coded"
    );
    let html = page(
        "settings.html",
        common(json!({
            "languages": [{"tag": "zh-CN", "name": "简体中文"}, {"tag": "en", "name": "English"}],
            "locale": "zh-CN", "time_zone": "Europe/London", "zones": ["Asia/Shanghai", "UTC"],
            "vault_zone": "Asia/Shanghai", "now": "29 Nov 2026, 18:15",
            "totp": {"enrolled": true, "pending": false},
            "errors": {"fields": {"time_zone": "is not a time zone name"}, "general": [],
                       "first": "time_zone"},
        })),
    );
    assert!(
        html.contains("<option selected>Europe&#x2f;London</option>"),
        "{html}"
    );
    assert!(
        html.contains(
            "id=\"f-time_zone\" aria-invalid=\"true\" aria-describedby=\"e-time_zone\" autofocus"
        ) && html.contains(
            "<span class=\"field-error\" id=\"e-time_zone\">is not a time zone name</span>"
        ),
        "{html}"
    );
    page(
        "password.html",
        common(
            json!({"me": {"must_change_password": true, "roles": []}, "min_length": 12,
                   "errors": {"fields": {"new_password": "too short"}, "general": [], "first": "new_password"}}),
        ),
    );
    let html = page(
        "users.html",
        common(json!({
            "users": [
                {"id": ID, "username": "ma.lin", "display_name": "Ma Lin", "department": "Retail",
                 "roles": ["supervisor", "employee"], "status": "active"},
                {"id": ID2, "username": "old", "display_name": "Old", "department": "",
                 "roles": ["employee"], "status": "disabled"},
            ],
            "all_roles": ["archivist", "employee", "supervisor", "auditor", "admin"],
            "form": {"username": "li.wei", "display_name": "李伟", "department": "Retail",
                     "roles": ["admin"]},
            "errors": {"fields": {"username": "taken"}, "general": [], "first": "username"},
        })),
    );
    assert!(
        html.contains("Supervisor") && html.contains("Disabled"),
        "{html}"
    );
    assert!(html.contains("value=\"admin\" checked"), "{html}");
    let account = json!({
        "id": ID, "username": "li.wei", "display_name": "Li Wei", "department": "Retail",
        "roles": ["admin"], "status": "disabled", "must_change_password": true,
        "created_at": T, "disabled_at": T,
    });
    for (confirm, otp) in [
        (json!("totp-reset"), json!(null)),
        (json!("disable"), json!(null)),
        (json!("reset"), json!(null)),
        (json!(null), json!("Abc23xyzAbc23xyzAbc23xyz")),
    ] {
        let html = page(
            "user.html",
            common(json!({
                "u": account.clone(), "roles": ["admin"], "own": false,
                "totp": {"enrolled": true, "pending": false},
                "all_roles": ["archivist", "employee", "supervisor", "auditor", "admin"],
                "confirm": confirm, "one_time_password": otp,
                "form": {"username": "li.wei", "display_name": "Li Wei", "department": "",
                         "roles": ["admin", "auditor"]},
                "errors": {"fields": {}, "general": ["you cannot remove your own administrator role"], "first": null},
            })),
        );
        if confirm == json!("disable") {
            assert!(
                html.contains("Disable Li Wei? Their sessions end now."),
                "{html}"
            );
        }
    }
    // Disabling: what the person holds first, then what was settled and the handover.
    let holdings = json!({
        "requests": [{"id": ID, "record_id": ID2, "reference": "CONTR-2026-000123", "kind": "view", "created_at": T}],
        "grants": [{"id": ID, "request_id": ID2, "record_id": ID2, "reference": "CONTR-2026-000124", "kind": "lookup", "valid_until": T}],
        "loans": [{"id": ID, "request_id": ID2, "record_id": ID2, "reference": "CONTR-2026-000125", "due_date": "2026-12-01"}],
    });
    let html = page(
        "user.html",
        common(json!({"totp": {"enrolled": false, "pending": false},
            "u": account.clone(), "roles": ["admin"], "own": false, "all_roles": ["admin"],
            "confirm": "disable", "holdings": holdings, "note": "Ma Lin <takes over>",
            "note_max": 2000,
            "form": {"display_name": "Li Wei", "department": "", "roles": ["admin"]},
            "errors": {"fields": {"handover_note": "must be at most 2000 characters"}, "general": [], "first": "handover_note"},
        })),
    );
    assert!(
        html.contains("CONTR-2026-000123")
            && html.contains("CONTR-2026-000125")
            && html.contains("Ma Lin &lt;takes over&gt;")
            && html.contains("id=\"f-handover_note\""),
        "{html}"
    );
    let html = page(
        "user.html",
        common(json!({"totp": {"enrolled": false, "pending": false},
            "u": account.clone(), "roles": ["admin"], "own": false, "all_roles": ["admin"],
            "note_max": 2000,
            "handovers": [{"id": ID, "settled_by": "root", "note": "Ma Lin", "created_at": T,
                           "cancelled_requests": [ID], "revoked_grants": [ID, ID2], "flagged_loans": [ID]}],
            "form": {"display_name": "Li Wei", "department": "", "roles": ["admin"]},
        })),
    );
    assert!(
        html.contains("pending requests cancelled: 1; grants revoked: 2; loans flagged"),
        "{html}"
    );
    page(
        "user.html",
        common(json!({
            "u": account, "roles": ["admin"], "own": true, "confirm": null,
            "totp": {"enrolled": false, "pending": false},
            "all_roles": ["admin"], "one_time_password": null,
            "form": {"display_name": "Li Wei", "department": "", "roles": ["admin"]},
        })),
    );
    let tree = json!([{"id": ID, "code": "SR1", "name": "一号库房", "records": 3, "shelves": [
        {"id": ID2, "code": "A3", "name": "", "records": 3, "boxes": [
            {"id": ID, "code": "B0042", "name": "合同盒", "records": 3}]},
        {"id": ID, "code": "A4", "name": "", "records": 0, "boxes": []}]},
        {"id": ID2, "code": "SR2", "name": "Annex", "records": 0, "shelves": []}]);
    let html = page(
        "locations.html",
        common(json!({
            "storerooms": tree, "form": {"code": "SR1", "name": "一号库房"},
            "errors": {"fields": {"code": "SR1 is already used in the register"}, "general": [], "first": "code"},
        })),
    );
    assert!(
        html.contains("一号库房") && html.contains("/locations/boxes/"),
        "{html}"
    );
    page(
        "locations.html",
        common(json!({"storerooms": [], "form": {"code": "", "name": ""}})),
    );
    let room = json!({"id": ID, "code": "SR1", "name": "一号库房"});
    let shelf = json!({"id": ID2, "code": "A3", "name": "东架"});
    for (level, shelf_ref, children) in [
        (
            "storeroom",
            json!(null),
            json!([{"id": ID2, "code": "A3", "name": "东架", "records": 2}]),
        ),
        (
            "shelf",
            shelf.clone(),
            json!([{"id": ID, "code": "B1", "name": "", "records": 2}]),
        ),
        ("box", shelf.clone(), json!([])),
    ] {
        let html = page(
            "location.html",
            common(json!({
                "c": {"place": {"id": ID, "level": level, "code": "X1", "name": "某处",
                                "storeroom": room.clone(), "shelf": shelf_ref, "records": 2,
                                "children": children},
                      "records": [{"record_id": ID2, "reference": "CONTR-2026-000123",
                                   "title": "Lease", "status": "on_loan", "shelf": "A3", "box": "B1"}],
                      "page": 2, "has_more": true, "hidden": 1},
                "here": format!("/locations/x/{ID}"), "rename_value": "某处",
                "rename_errors": {"fields": {"name": "the name must not be empty"}, "general": [], "first": "name"},
                "add": {"code": "B1", "name": ""},
                "add_errors": {"fields": {"code": "taken"}, "general": [], "first": "code"},
                "prev_url": "/locations/x?page=1", "next_url": "/locations/x?page=3",
            })),
        );
        assert!(
            html.contains("CONTR-2026-000123") && html.contains("On loan"),
            "{html}"
        );
    }
    let html = page(
        "audit.html",
        common(json!({
            "result": {"rows": audit_events(), "total": 11, "page": 1, "pages": 3},
            "q": {"person": "li.wei", "action": "request.approve", "from": "2026-11-01", "to": null},
            "query": "person=li.wei&action=request.approve&from=2026-11-01",
            "actions": [{"value": "request.approve", "label": "Request approved"}],
            "labels": labels,
        })),
    );
    assert!(
        html.contains("<option value=\"request.approve\" selected>"),
        "{html}"
    );
    assert!(html.contains("Pages 1, 2, 3"), "{html}");
    page(
        "audit.html",
        common(json!({
            "q": {"record": "NOPE-1"}, "actions": [],
            "errors": {"fields": {"record": "no record has this reference"}, "general": [], "first": "record"},
        })),
    );
    assert!(html.contains("request.approve"), "{html}");
    assert!(!html.contains("complaint <42>"), "detail is escaped");
    for status in ["404 Not Found", "503 Service Unavailable"] {
        page(
            "error.html",
            json!({"status": status, "message": "service unavailable"}),
        );
    }
    page(
        "viewer.html",
        common(json!({
            "v": {"reference": "CONTR-2026-000123", "title": "Lease", "file_name": "lease.pdf",
                  "version": 2, "grant_id": ID, "valid_until": T, "file_id": ID2,
                  "others": [[ID2, "lease.pdf"], [ID, "annex.png"]]},
            "zoom": 100, "zooms": [75, 100, 150], "pages": [1, 2, 3], "problem": "page 3 is too large",
        })),
    );
    // A long document, a window in the middle, zoomed, and the same fitted to the width.
    for chosen in [json!(150), json!(null)] {
        let html = page(
            "viewer.html",
            common(json!({
                "v": {"reference": "CONTR-2026-000123", "title": "Lease", "file_name": "lease.pdf",
                      "version": 2, "grant_id": ID, "valid_until": "2099-01-01T00:00:00Z",
                      "file_id": ID2, "others": [[ID2, "lease.pdf"], [ID, "annex.png"]]},
                "w": {"total": 45, "first": 21, "last": 40, "previous": 1, "next": 41,
                      "final_window": 41, "pages": (21..=40).collect::<Vec<u32>>()},
                "zoom": 150, "chosen": chosen, "zooms": [50, 75, 100, 125, 150, 200, 300],
                "problem": null, "at": 27, "seconds_left": 7200, "zoom_in": 200, "zoom_out": 125,
            })),
        );
        for id in [
            "zoom-in",
            "zoom-out",
            "zoom",
            "page-prev",
            "page-next",
            "page-go",
            "pages",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}: {html}");
        }
        assert!(html.contains("id=\"page-21\"") && html.contains("id=\"page-40\""));
        assert!(html.contains("Page 27 of 45"), "{html}");
        assert!(html.contains("Pages 21–40 of 45"), "{html}");
        assert!(html.contains("left</span>"), "{html}");
        assert!(
            !html.contains("&amp;amp;") && !html.contains("&#x2f;view"),
            "{html}"
        );
    }
    // The grant has ended: why, and where to ask again.
    let html = page(
        "viewer.html",
        common(json!({
            "ended": {"state": "revoked", "message": "Ma Lin revoked your view grant on 29 Nov 2026, 18:15.",
                      "hint": "Send a new view request.", "request_url": format!("/records/{ID2}#request"),
                      "request_label": "Request access again", "reference": "CONTR-2026-000123",
                      "record_id": ID2},
        })),
    );
    assert!(
        html.contains("Ma Lin revoked")
            && html.contains(&format!("href=\"/records/{ID2}#request\""))
    );
    assert!(!html.contains("id=\"pages\""), "{html}");
    page(
        "categories.html",
        common(json!({
            "categories": [category()], "can_manage": true,
            "errors": {"fields": {"code": "a category with code CUST already exists"},
                       "general": [], "first": "code"},
            "levels": ["public", "internal", "confidential", "secret"],
            "form": {"code": "X", "name": "Y", "parent_id": ID, "sensitivity": "secret",
                     "department": "Retail", "retention_years": "7"},
        })),
    );
    page(
        "category.html",
        common(json!({
            "category": category(), "can_manage": true,
            "errors": {"fields": {"fields[3].sensitive": "looks like personal data"},
                       "general": ["not allowed"], "first": "fields[3].sensitive"},
            "form": {"name": "Contracts", "sensitivity": "confidential", "department": "Retail",
                     "retention_years": "10"},
            "levels": ["public", "internal", "confidential", "secret"],
            "plain_personal": ["E-mail"],
            "rows": [
                {"name": "customer", "label": "Customer", "type": "text", "required": true,
                 "sensitive": "no", "confirm_not_sensitive": false, "choices": "",
                 "existing": true, "was_sensitive": false, "personal": null},
                {"name": "phone", "label": "Phone", "type": "phone", "required": false,
                 "sensitive": "yes", "confirm_not_sensitive": false, "choices": "",
                 "existing": true, "was_sensitive": true, "personal": "phone"},
                {"name": "tier", "label": "Tier", "type": "choice", "required": true,
                 "sensitive": "no", "confirm_not_sensitive": false, "choices": "gold, silver",
                 "existing": true, "was_sensitive": false, "personal": null},
                {"name": "xm", "label": "姓名", "type": "text", "required": false,
                 "sensitive": "no", "confirm_not_sensitive": false, "choices": "",
                 "existing": false, "was_sensitive": false, "personal": "name"},
                {"name": "", "label": "", "type": "text", "required": false,
                 "sensitive": "", "confirm_not_sensitive": false, "choices": "",
                 "existing": false, "was_sensitive": false, "personal": null},
            ],
            "types": ["text", "number", "date", "phone", "id_number", "email", "choice"],
        })),
    );
    let filing = page(
        "record_new.html",
        common(json!({
            "categories": [category()], "category": category(), "title_warning": true,
            "errors": {"fields": {"field-customer": "is required", "title": "contains the value of the sensitive field Phone, which would defeat its mask"},
                       "general": [], "first": "title"},
            "form": {"title": "Lease 13812345678", "fields": {"customer": "ACME", "tier": "gold", "phone": "13812345678"},
                     "storeroom": "A", "shelf": "3", "box": "12"},
            "places": {"storerooms": [["A", "Main storeroom"]], "shelves": ["3"], "boxes": ["12"]},
        })),
    );
    assert!(filing.contains("id=\"e-field-customer\""), "{filing}");
    assert!(
        filing.contains("value=\"13812345678\""),
        "sensitive values are kept: {filing}"
    );
    assert!(
        filing.contains("name=\"allow_title_with_sensitive\""),
        "{filing}"
    );
    assert!(
        filing.contains("<datalist id=\"l-boxes\"><option value=\"12\">"),
        "{filing}"
    );
    page(
        "record_new.html",
        common(
            json!({"categories": [category()], "category": null, "errors": null, "form": {"fields": {}},
                      "places": {"storerooms": [], "shelves": [], "boxes": []}}),
        ),
    );
    let record = json!({
        "id": ID, "reference": "CONTR-2026-000123", "title": "Lease",
        "category": {"path": "Customers / Contracts", "sensitivity": "confidential"},
        "revision": 3, "created_at": T,
        "fields": [
            {"name": "customer", "label": "Customer", "type": "text", "value": "ACME", "masked": false},
            {"name": "phone", "label": "Phone", "type": "phone", "value": "138****5678", "masked": true},
            {"name": "signed", "label": "Signed", "type": "date", "value": null, "masked": false},
        ],
        "physical": {"storeroom": "A", "shelf": "3", "box": "12", "status": "in_store"},
    });
    let errors = |name: &str| json!({"fields": {name: "must say why"}, "general": ["conflict"], "first": name});
    for (can_edit, can_request) in [(true, true), (false, false)] {
        let html = page(
            "record.html",
            common(json!({
                "record": record, "can_edit": can_edit, "can_request": can_request, "any_masked": true,
                "moves": [{"moved_at": T, "from_location": "A/3/12", "to_location": "B/1/1",
                           "from_status": "in_store", "to_status": "on_loan", "reason": "filed",
                           "moved_by": "Li Wei"}],
                "view_grant": {"id": ID, "valid_until": T},
                "files": [{"id": ID2, "version": 1, "original_name": "lease.pdf",
                           "media_type": "application/pdf", "size": 12345,
                           "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                           "uploaded_at": T}],
                "my_requests": [{"id": ID, "created_at": T, "kind": "view", "purpose": "complaint",
                                 "state": "approved", "grant": {"state": "active", "valid_until": T}}],
                "ask_errors": errors("ask-purpose"), "edit_errors": errors("edit-field-customer"),
                "move_errors": errors("move-reason"), "open_edit": true, "open_move": true,
                "edit": {"title": "Lease", "fields": {"customer": "ACME", "phone": "13900000000"}, "reason": "typo"},
                "moved": {"storeroom": "B", "shelf": "1", "box": "1", "status": "missing", "reason": "x"},
                "kinds": [{"value": "lookup", "route": {"approvals": 0, "approver_role": "supervisor", "same_department": false, "max_hours": 24}},
                          {"value": "view", "route": {"approvals": 2, "approver_role": "supervisor", "same_department": true, "max_hours": 72}},
                          {"value": "export", "route": null}],
                "asked": {"kind": "view", "purpose": "complaint", "duration_hours": 24},
                "revisions": [{"revision": 1, "author": "li.wei", "created_at": T, "reason": "filed", "filed": true, "changes": []},
                              {"revision": 2, "author": "li.wei", "created_at": T, "reason": "typo", "filed": false,
                               "changes": [{"label": "Customer", "change": "changed", "sensitive": false, "from": "ACM", "to": "ACME"},
                                           {"label": "Phone", "change": "changed", "sensitive": true, "from": null, "to": null},
                                           {"label": "title", "change": "changed", "sensitive": false, "from": "L", "to": "Lease"}]}],
                "places": {"storerooms": [["A", "Main"]], "shelves": ["3"], "boxes": ["12"]},
                "statuses": ["in_store", "missing", "destroyed"],
                "min_purpose": 15, "min_purpose_cjk": 6, "max_purpose": 2000,
                "life": life_of(can_edit),
            })),
        );
        assert!(html.contains("12.1 KB"), "{html}");
        assert!(html.contains("Customer changed (ACM → ACME)"), "{html}");
        assert_eq!(
            html.contains("action=\"/records/6b1f1c1e-2f57-4a43-9d0b-1d3c8a9e2b10/edit\""),
            can_edit
        );
        assert_eq!(html.contains("id=\"upload\""), can_edit);
        assert_eq!(html.contains("name=\"purpose\""), can_request);
        assert_eq!(
            html.contains("Needs 2 approvals by a supervisor"),
            can_request
        );
    }
    page(
        "search.html",
        common(json!({
            "errors": {"fields": {"from": "must be a date as YYYY-MM-DD"}, "general": [],
                       "first": "from"},
            "first": 21, "last": 40, "categories": [category()],
            "q": {"q": "lease", "phone": "138", "id_number": null, "category": "CONTR",
                  "from": "2026-01-01", "to": "2026-12-31", "storeroom": "A", "shelf": "3", "box": "12"},
            "result": {"page": 2, "has_more": true, "hits": [{
                "id": ID, "reference": "CONTR-2026-000123", "title": "Lease",
                "category": {"path": "Customers / Contracts"},
                "created_at": T,
                "fields": [{"label": "Customer", "value": "ACME", "masked": false},
                           {"label": "Phone", "value": "138****5678", "masked": true},
                           {"label": "Signed", "value": null, "masked": false}],
                "physical": {"storeroom": "A", "shelf": "3", "box": "12", "status": "in_store"}}]},
            "prev_url": "/search?page=1", "next_url": "/search?page=3",
        })),
    );
    let mut approved = request();
    approved["state"] = json!("approved");
    approved["kind"] = json!("export");
    let mut borrow = request();
    borrow["kind"] = json!("borrow");
    let mut expired = request();
    expired["state"] = json!("expired");
    expired["grant"] = json!({"id": ID, "state": "revoked", "valid_until": T});
    // A refused form: a field error (focused) and a general one.
    let field_errors = |name: &str| {
        json!({"fields": {name: "say why the request is rejected"}, "general": [],
               "first": name})
    };
    let general_errors =
        json!({"fields": {}, "general": ["the request has expired"], "first": null});
    let html = page(
        "requests.html",
        common(json!({"requests": [request(), approved, borrow, expired],
                      "errors": general_errors, "failed": ID})),
    );
    assert!(html.contains("table-wrap") && html.contains("the request has expired"));
    page(
        "requests.html",
        common(json!({"requests": [], "errors": general_errors, "failed": null})),
    );
    page(
        "request.html",
        common(
            json!({"r": request(), "notice": "Your request has been filed.", "mine": true,
                   "can_decide": true, "can_revoke": true}),
        ),
    );
    let html = page(
        "request.html",
        common(
            json!({"r": request(), "mine": true, "can_decide": true, "can_revoke": true,
                   "section": "decide", "failed": ID, "errors": field_errors(&format!("reject-{ID}")),
                   "typed": {"decision": "reject", "comment": "kept <typed>"}}),
        ),
    );
    assert!(html.contains("autofocus") && html.contains("kept &lt;typed&gt;"));
    page(
        "request.html",
        common(
            json!({"r": request(), "mine": true, "can_decide": false, "can_revoke": true,
                   "section": "revoke", "failed": ID, "errors": field_errors(&format!("revoke-{ID}")),
                   "typed": "too"}),
        ),
    );
    page("request_macros.html", common(json!({})));
    page("forms.html", common(json!({})));
    page(
        "approvals.html",
        common(
            json!({"waiting": 2, "errors": field_errors(&format!("reject-{ID}")), "failed": ID,
                   "typed": {"decision": "reject", "comment": ""},
                   "requests": [request(), request()]}),
        ),
    );
    page(
        "approvals.html",
        common(json!({"waiting": 0, "requests": []})),
    );
    page(
        "grants.html",
        common(
            json!({"errors": field_errors(&format!("revoke-{ID}")), "failed": ID, "typed": "no",
                      "grants": [{"id": ID, "record_id": ID2, "reference": "CONTR-2026-000123",
                                  "title": "Lease", "grantee": "Li Wei", "kind": "view",
                                  "purpose": "complaint", "valid_from": T,
                                  "valid_until": "2999-01-01T00:00:00Z"}]}),
        ),
    );
    page(
        "export.html",
        common(
            json!({"request": {"reference": "CONTR-2026-000123", "title": "Lease"},
                      "export": {"files": 2, "request_id": ID, "expires_at": T,
                                 "password": "correct horse", "encrypted": true},
                      "minutes": 30, "notice": "ready"}),
        ),
    );
    let loan = json!({"record_id": ID2, "reference": "CONTR-2026-000123", "title": "Lease",
                      "borrower": "Li Wei", "approved_by": "Ma Lin", "out_at": T,
                      "checked_out_by": "Zhou Yu", "due_date": "2026-12-01", "overdue": true,
                      "request_id": ID, "returned_at": T, "condition": "good",
                      "holder_left": true, "borrower_name": "Li Wei"});
    for (section, errors) in [
        ("row", field_errors(&format!("due-{ID}"))),
        ("number", field_errors("due_date")),
        ("return", field_errors(&format!("condition-{ID}"))),
        ("general", general_errors.clone()),
    ] {
        page(
            "loans.html",
            common(json!({
                "today": "2026-11-29", "section": section, "failed": ID, "errors": errors,
                "ready": [{"record_id": ID2, "reference": "CONTR-2026-000123", "title": "Lease",
                           "borrower": "Li Wei", "approved_by": "Ma Lin", "valid_until": T,
                           "request_id": ID, "latest_due": "2026-12-06"}],
                "form": {"request": ID, "due_date": "2026-12-01", "condition": "torn"},
                "overdue": 1, "open": [loan.clone()], "returned": [loan.clone()],
            })),
        );
    }
    let run = json!({"id": ID, "started_at": T, "finished_at": T, "origin": "job",
                     "files_checked": 3, "files_verified": 1, "bytes_verified": 1024,
                     "objects_listed": 4, "damaged": 1, "missing": 1, "unreferenced": 1,
                     "unreferenced_young": 1, "clean": false, "problems_omitted": 2,
                     "problems": [
        {"kind": "damaged", "file_id": ID, "record_id": ID2, "reference": "CONTR-2026-000123",
         "object_key": "ab/cd/abcd", "reason": "chunk 0 failed <authentication>", "young": false},
        {"kind": "unreferenced", "file_id": null, "record_id": null, "reference": null,
         "object_key": "ef/01/ef01", "reason": "no file row references it", "young": true}]});
    let html = page(
        "scrub.html",
        common(json!({"latest": run.clone(), "runs": [run], "interval_hours": 24})),
    );
    assert!(html.contains("CONTR-2026-000123") && !html.contains("<authentication>"));
    page(
        "scrub.html",
        common(json!({"latest": null, "runs": [], "interval_hours": 0})),
    );
    let review = json!({
        "filter": {"inactive_days": 90, "only_inactive": false}, "inactive": 1,
        "rows": [{"id": ID, "username": "li.wei", "display_name": "Li Wei", "department": "Retail",
                  "roles": ["admin", "auditor"], "status": "active", "created_at": T,
                  "last_sign_in_at": null, "idle_days": 120, "inactive": true},
                 {"id": ID2, "username": "ma.lin", "display_name": "Ma Lin", "department": "",
                  "roles": ["employee"], "status": "disabled", "created_at": T,
                  "last_sign_in_at": T, "idle_days": 3, "inactive": false}],
        "last_completed": {"id": ID, "completed_by": "audit.zhou", "completed_at": T,
                           "inactive_days": 90, "only_inactive": false, "accounts": 2,
                           "inactive": 1, "note": "all confirmed"},
    });
    for errors in [json!(null), field_errors("days")] {
        let html = page(
            "access_review.html",
            common(
                json!({"review": review.clone(), "days": "90", "only_inactive": false,
                          "query": "days=90", "errors": errors}),
            ),
        );
        assert!(
            html.contains("li.wei") && html.contains("all confirmed"),
            "{html}"
        );
    }
    let mut empty = review.clone();
    empty["rows"] = json!([]);
    empty["last_completed"] = json!(null);
    page(
        "access_review.html",
        common(
            json!({"review": empty, "days": "30", "only_inactive": true, "query": "days=30&inactive=1"}),
        ),
    );

    // Retention, legal hold and destruction.
    let errors = |name: &str| json!({"fields": {name: "must say why"}, "general": ["conflict"], "first": name});
    for destroyed in [false, true] {
        let html = page(
            "lifecycle.html",
            common(json!({
                "record": {"id": ID, "reference": "CONTR-2026-000123", "title": "Lease",
                           "category": {"path": "Customers / Contracts"}},
                "life": life_of(destroyed),
                "is_archivist": true, "is_supervisor": true,
                "ask": {"reason_type": "erasure", "purpose": "customer asked"}, "ask_errors": errors("ask-purpose"),
                "carry": {"request_id": ID, "witness": "wang", "method": "shredder"}, "carry_errors": errors("carry-witness"),
                "hold": {"reason": "litigation"}, "hold_errors": errors("hold-reason"),
                "min_purpose": 15, "min_purpose_cjk": 6, "max_purpose": 2000,
            })),
        );
        assert!(html.contains("CONTR-2026-000123"));
    }
    let cert = life_of(true)["destruction"].clone();
    let html = page(
        "destructions.html",
        common(
            json!({"list": [cert], "filter": {"record_id": ID, "from": "2026-01-01", "to": null},
                      "errors": errors("reg-from")}),
        ),
    );
    assert!(html.contains("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"));
    page(
        "destructions.html",
        common(
            json!({"list": [], "filter": {}, "errors": {"fields": {}, "general": [], "first": null}}),
        ),
    );
    let html = page(
        "retention.html",
        common(
            json!({"within_days": 30, "list": [{"record_id": ID, "reference": "CONTR-2026-000123",
            "title": "Lease", "category_code": "CONTR", "category_name": "Contracts", "filed_at": T,
            "retention_years": 5, "retention_from": null, "retention_end": "2026-01-01",
            "destroy_requested": true}],
            "category_holds": [{"id": ID, "record_id": null, "category_id": ID, "category_code": "CONTR",
                "reason": "regulator inquiry", "placed_by": "sup1", "placed_at": T,
                "released_by": null, "released_at": null}],
            "holdable": [{"id": ID, "code": "CONTR", "path": "Customers / Contracts"}],
            "my_department": "Retail"}),
        ),
    );
    assert!(html.contains("CONTR-2026-000123"));
    assert!(html.contains("regulator inquiry") && html.contains("/retention/holds/"));
    page(
        "retention.html",
        common(json!({"within_days": 0, "list": []})),
    );
    let svg = crate::reports::chart::bars(
        "Requests by department",
        &[crate::reports::chart::Bar::new("信贷部", 3)],
    );
    let html = page(
        "stats.html",
        common(json!({
            "from": "2026-11-01", "to": "2026-11-30", "query": "from=2026-11-01&to=2026-11-30",
            "s": {"from": "2026-11-01", "to": "2026-11-30", "time_zone": "Asia/Shanghai", "bucket": "day",
                  "requests": [{"kind": "lookup", "state": "approved", "department": "Retail", "count": 3}],
                  "records": [{"category": "CONTR", "name": "<Contracts>", "count": 2}],
                  "loans": {"out": 1, "still_out": 0, "overdue": 0, "returned": 1},
                  "views": {"granted": 2, "opened": 3, "pages": 9},
                  "exports": {"granted": 1, "created": 1, "downloaded": 1},
                  "people": [{"person": "li", "display_name": "Li Wei", "department": "Retail",
                              "requests": 3, "approved": 3, "rejected": 0}],
                  "timeline": [{"period": "2026-11-01", "requests": 3, "records": 2, "loans": 1}]},
            "requests_total": 3, "records_total": 2,
            "charts": [{"title": "Requests by department", "svg": svg}],
            "states": ["pending", "approved"], "kinds": [{"kind": "lookup", "cells": [0, 3], "total": 3}],
            "departments": [["Retail", 3]],
        })),
    );
    assert!(
        html.contains("<svg") && html.contains("&lt;Contracts&gt;"),
        "{html}"
    );
    page(
        "stats.html",
        common(json!({"from": "2026-13-01", "to": null, "s": null,
                      "errors": {"fields": {"from": "must be a date"}, "first": "from", "general": []}})),
    );

    let html = page(
        "reviews.html",
        common(json!({
            "state": "pending", "my_id": "arch.a", "reviewer_role": "archivist",
            "proposals": [
                {"id": ID, "kind": "create", "state": "pending", "category_id": ID2, "category": "KYC",
                 "department": "Retail", "record_id": null, "reference": null, "proposer": "arch.b",
                 "created_at": T, "reviewer": null, "decided_at": null, "comment": "",
                 "summary": {"title": "Due <diligence>", "fields": [
                     {"field": "phone", "sensitive": true, "value": "138****5678"},
                     {"field": "company", "sensitive": false, "value": null}]},
                 "result_record_id": null},
                {"id": ID2, "kind": "update", "state": "pending", "category_id": ID2, "category": "KYC",
                 "department": "Retail", "record_id": ID, "reference": "KYC-2026-000001", "proposer": "arch.a",
                 "created_at": T, "reviewer": null, "decided_at": null, "comment": "",
                 "summary": {"title": null, "reason": "licence", "fields": []}, "result_record_id": null}],
        })),
    );
    assert!(html.contains("Due &lt;diligence&gt;") && html.contains("138****5678"));
    assert_eq!(
        html.matches("/approve\"").count(),
        1,
        "no buttons on one's own proposal"
    );
    page(
        "reviews.html",
        common(
            json!({"state": "approved", "my_id": "x", "reviewer_role": "supervisor", "proposals": []}),
        ),
    );

    let missing: Vec<_> = TEMPLATES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !rendered.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "templates without a render test: {missing:?}"
    );
}

/// Whatever data a test gives, every filter, test and function named anywhere in a template
/// (in branches the data may not reach too) must exist in this build's environment.
#[test]
fn every_filter_test_and_function_the_templates_name_exists() {
    let t = Templates::new().unwrap();
    let mut macros = Vec::new();
    for (_, source) in TEMPLATES {
        for part in source.split("{% macro ").skip(1) {
            if let Some(name) = part.split('(').next() {
                macros.push(name.trim().to_owned());
            }
        }
    }
    for (name, source) in TEMPLATES {
        for expr in expressions(source) {
            for (kind, ident) in callables(&expr) {
                if kind == Kind::Function && macros.contains(&ident) {
                    continue;
                }
                let probe = match kind {
                    Kind::Filter => format!("{{{{ 'x' | {ident} }}}}"),
                    Kind::Test => format!("{{{{ 'x' is {ident} }}}}"),
                    Kind::Function => format!("{{{{ {ident}() }}}}"),
                };
                if let Err(e) = t.env.render_str(&probe, ()) {
                    assert!(
                        !matches!(
                            e.kind(),
                            ErrorKind::UnknownFilter
                                | ErrorKind::UnknownTest
                                | ErrorKind::UnknownFunction
                        ),
                        "{name}: `{expr}` uses {kind:?} `{ident}`, which this build lacks: {e}"
                    );
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Filter,
    Test,
    Function,
}

/// The insides of `{{ … }}` and `{% … %}`.
fn expressions(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(['{']) {
        let after = &rest[start + 1..];
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                rest = after;
                continue;
            }
        };
        match after[1..].find(close) {
            Some(end) => {
                out.push(after[1..1 + end].to_owned());
                rest = &after[1 + end + 2..];
            }
            None => break,
        }
    }
    out
}

/// Filters (`| name`), tests (`is [not] name`) and calls (`name(`, not methods) in an
/// expression, outside string literals.
fn callables(expr: &str) -> Vec<(Kind, String)> {
    let mut code = String::new();
    let mut quote = None;
    for c in expr.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                code.push_str(" '' ");
            }
            None => code.push(c),
        }
    }
    let spaced = code
        .replace('|', " | ")
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace(',', " , ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let ident = |w: &str| w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !w.is_empty();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied();
        if *w == "|" {
            if let Some(n) = next.filter(|n| ident(n)) {
                out.push((Kind::Filter, n.to_owned()));
            }
        } else if *w == "is" {
            let n = if next == Some("not") {
                words.get(i + 2).copied()
            } else {
                next
            };
            if let Some(n) = n.filter(|n| ident(n)) {
                out.push((Kind::Test, n.to_owned()));
            }
        } else if next == Some("(")
            && ident(w)
            && !w.contains('.')
            && (i == 0 || !matches!(words[i - 1], "|" | "is" | "not" | "macro"))
            && !matches!(*w, "in" | "and" | "or" | "not" | "if")
        {
            out.push((Kind::Function, (*w).to_owned()));
        }
    }
    out
}

#[test]
fn the_scan_finds_what_templates_use() {
    let found =
        callables("e.detail | tojson }} {{ x is not startingwith('a') and range(3) | join(', ')");
    assert!(
        found.contains(&(Kind::Filter, "tojson".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&(Kind::Test, "startingwith".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&(Kind::Function, "range".into())),
        "{found:?}"
    );
    assert!(found.contains(&(Kind::Filter, "join".into())), "{found:?}");
    // An unknown filter is what the probe reports.
    let t = Templates::new().unwrap();
    let err = t
        .env
        .render_str("{{ 'x' | no_such_filter }}", ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownFilter);
}

/// A record's life cycle as the pages get it: holds, retention, open destroy requests and,
/// when `destroyed`, the certificate.
fn life_of(destroyed: bool) -> serde_json::Value {
    let destruction = destroyed.then(|| {
        json!({"id": ID2, "record_id": ID, "request_id": ID, "reference": "CONTR-2026-000123",
               "title": "Lease", "category_code": "CONTR", "category_path": "Customers / Contracts",
               "filed_at": T, "reason_type": "erasure", "purpose": "customer asked for erasure",
               "requester": "li.wei", "approvers": [{"username": "wang", "decided_at": T, "comment": ""}],
               "executor": "zhao", "witness": "qian", "method": "cross-cut shredder",
               "files": [{"file_id": ID2, "version": 1, "name": "lease.pdf", "media_type": "application/pdf",
                          "size": 12345, "uploaded_at": T,
                          "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}],
               "erased_fields": ["phone"], "paper": true, "destroyed_at": T})
    });
    json!({
        "holds": [{"id": ID, "record_id": null, "category_id": ID2, "category_code": "CONTR",
                   "reason": "litigation 2026-117", "placed_by": "wang", "placed_at": T,
                   "released_by": null, "released_at": null},
                  {"id": ID2, "record_id": ID, "category_id": null, "category_code": null,
                   "reason": "dispute", "placed_by": "wang", "placed_at": T,
                   "released_by": null, "released_at": null}],
        "retention": {"years": 30, "from_field": "signed_on", "from_field_used": true,
                      "end": "2056-03-04", "suspended": true},
        "destruction": destruction,
        "destroy_requests": [{"id": ID, "requester": "li.wei", "state": "approved", "reason_type": "retention",
                              "purpose": "retention ended", "required_approvals": 2, "approvals": 2, "created_at": T},
                             {"id": ID2, "requester": "li.wei", "state": "pending", "reason_type": "erasure",
                              "purpose": "customer asked", "required_approvals": 2, "approvals": 1, "created_at": T}],
    })
}
