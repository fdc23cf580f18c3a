//! Requests in both languages: the purpose rule counted in visible characters (a Chinese
//! character weighs 2.5 Latin ones), confirmations after each action in the person's
//! language, the approval queue in Chinese, and the loans register as CSV (with a UTF-8
//! byte-order mark) and as an `.xlsx` workbook read back cell by cell.

use std::io::{Cursor, Read};

use rocket::http::{ContentType, Cookie, Header, Status};
use serde_json::json;
use strongroom::users::Role;

use crate::archive::setup;
use crate::common::browser::{Answer, Browser};
use crate::common::{bearer, TestApp};

/// A confidential contract with a physical file; the archivist's token and the record id.
pub(crate) async fn record(app: &TestApp) -> (String, String) {
    let (archivist, contracts) = setup(app).await;
    let (s, r) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({
                "category_id": contracts["id"], "title": "Framework agreement",
                "fields": {"company_name": "Huaxin", "phone": "13812345678"},
                "physical": {"storeroom": "SR1", "shelf": "A3", "box": "B0042"}
            }),
        )
        .await;
    assert_eq!(s, Status::Created, "{r} {}", crate::common::captured_logs());
    (archivist, r["id"].as_str().unwrap().to_string())
}

async fn ask(
    app: &TestApp,
    token: &str,
    record: &str,
    kind: &str,
    purpose: &str,
    lang: &str,
) -> (Status, serde_json::Value) {
    let res = app
        .client
        .post("/api/v1/requests")
        .header(bearer(token))
        .header(Header::new("Accept-Language", lang.to_string()))
        .header(ContentType::JSON)
        .body(
            // A paper file is lent for days, so its grant outlasts tomorrow's due date.
            json!({"record_id": record, "kind": kind, "purpose": purpose,
                   "duration_hours": if kind == "borrow" { 72 } else { 4 }})
            .to_string(),
        )
        .dispatch()
        .await;
    crate::common::json_of(res).await
}

#[tokio::test]
async fn purposes_are_counted_in_visible_characters_a_chinese_one_weighing_two_and_a_half() {
    let app = TestApp::new().await;
    let (_, rec) = record(&app).await;
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;

    // Eight Chinese characters: a complete purpose, accepted.
    let (s, r) = ask(&app, &emp, &rec, "view", "客户投诉核查合同", "en").await;
    assert_eq!(s, Status::Created, "{r}");
    assert_eq!(r["purpose"], "客户投诉核查合同");
    // Five are not enough (12.5 of 15), whatever the padding.
    let (s, e) = ask(&app, &emp, &rec, "view", "核查合同书", "en").await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert_eq!(
        e["error"]["message"],
        "purpose: say why you need it: at least 6 Chinese characters or 15 letters"
    );
    let (s, _) = ask(
        &app,
        &emp,
        &rec,
        "view",
        " 核 查 合 同 书 \u{200B}\u{200B} ",
        "en",
    )
    .await;
    assert_eq!(s, Status::UnprocessableEntity);
    // The same refusal in Chinese for a Chinese reader; the code does not change.
    let (s, e) = ask(&app, &emp, &rec, "view", "核查合同书", "zh-CN").await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert_eq!(e["error"]["code"], "invalid");
    assert_eq!(
        e["error"]["message"], "用途：请说明用途：至少 6 个汉字或 15 个字母",
        "{e}"
    );
    // Latin: 14 letters and digits refused, 15 accepted; spaces and punctuation do not
    // count.
    let (s, _) = ask(&app, &emp, &rec, "lookup", "complaint #42424", "en").await;
    assert_eq!(s, Status::UnprocessableEntity);
    let (s, _) = ask(&app, &emp, &rec, "lookup", "complaint   #42424 ...  ", "en").await;
    assert_eq!(s, Status::UnprocessableEntity);
    let (s, r) = ask(&app, &emp, &rec, "lookup", "complaint #424242", "en").await;
    assert_eq!(s, Status::Created, "{r}");
    // Mixed text adds up: 2 × 2.5 + 7 = 12, refused; 4 × 2.5 + 5 = 15, accepted.
    let (s, _) = ask(&app, &emp, &rec, "view", "合同 ABC-123", "en").await;
    assert_eq!(s, Status::UnprocessableEntity);
    let (s, _) = ask(&app, &emp, &rec, "view", "核查合同 ABC12", "en").await;
    assert_eq!(s, Status::Created);
    let filed: i64 = sqlx::query_scalar("SELECT count(*) FROM access_requests")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(filed, 3);
}

#[tokio::test]
async fn the_approval_queue_speaks_chinese_and_confirms_each_decision() {
    let app = TestApp::new().await;
    let (_, rec) = record(&app).await;
    let emp = Browser::new(&app, "emp", &[Role::Employee])
        .await
        .in_language("zh-CN");
    let sup = Browser::new(&app, "sup", &[Role::Supervisor])
        .await
        .in_language("zh-CN");
    let (s, view) = ask(&app, emp.token(), &rec, "view", "客户投诉核查合同", "zh-CN").await;
    assert_eq!(s, Status::Created, "{view}");
    let (s, lookup) = ask(
        &app,
        emp.token(),
        &rec,
        "lookup",
        "核对客户联系电话",
        "zh-CN",
    )
    .await;
    assert_eq!(s, Status::Created, "{lookup}");
    let view = view["id"].as_str().unwrap().to_string();
    let lookup = lookup["id"].as_str().unwrap().to_string();

    let queue = sup.page("/approvals").await;
    assert!(queue.contains("<html lang=\"zh-CN\">"), "{queue}");
    assert!(queue.contains("<h1>待审批</h1>"), "{queue}");
    assert!(queue.contains("有 2 项申请等待您审批。"), "{queue}");
    assert!(
        queue.contains("调阅，4 小时") && queue.contains("查询，4 小时"),
        "{queue}"
    );
    assert!(queue.contains("客户投诉核查合同") && queue.contains("驳回理由（必填）"));
    assert!(!queue.contains(">lookup<") && !queue.contains("duration_hours"));

    // A rejection without a reason: the queue again (422), the message in Chinese next to
    // the field of that request, the field focused, a summary at the form.
    let Answer {
        status: s, html, ..
    } = sup
        .post(
            "/approvals",
            &format!("/requests/{lookup}/reject"),
            &[("comment", " ")],
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity);
    let field = format!("id=\"f-reject-{lookup}\" aria-invalid=\"true\" aria-describedby=\"e-reject-{lookup}\" autofocus");
    assert!(html.contains(&field), "{html}");
    assert!(
        html.contains(&format!(
            "<span class=\"field-error\" id=\"e-reject-{lookup}\">请填写驳回理由</span>"
        )),
        "{html}"
    );
    let summary_at = html.find("error-summary").unwrap();
    let form_at = html
        .find(&format!("action=\"/requests/{lookup}/reject\""))
        .unwrap();
    let card_at = html.find(&format!("id=\"r-{lookup}\"")).unwrap();
    assert!(
        card_at < summary_at && summary_at < form_at,
        "the summary is at the form"
    );

    // Approved: back to the queue with a confirmation in Chinese.
    let (to, html) = sup
        .post_follow(
            "/approvals",
            &format!("/requests/{view}/approve"),
            &[("comment", "同意")],
        )
        .await;
    assert_eq!(to, "/approvals");
    assert!(
        html.contains("<p class=\"flash\" role=\"status\">您已批准 emp 对 CONTR-")
            && html.contains("的调阅申请：已批准 1 / 需 1，当前状态：已批准。"),
        "{html}"
    );
    // Shown once.
    assert!(!sup.page("/approvals").await.contains("class=\"flash\""));
    // Rejected with a reason.
    let (_, html) = sup
        .post_follow(
            "/approvals",
            &format!("/requests/{lookup}/reject"),
            &[("comment", "用途不明确")],
        )
        .await;
    assert!(
        html.contains("您已驳回 emp 对 CONTR-") && html.contains("的查询申请。"),
        "{html}"
    );
    assert!(html.contains("没有等待您审批的申请。"), "{html}");

    // The requester's page: states and grant in words, time left on the grant.
    let mine = emp.page("/requests").await;
    assert!(mine.contains("<h1>我的申请</h1>"), "{mine}");
    assert!(
        mine.contains(">已批准</strong>") && mine.contains(">已驳回</strong>"),
        "{mine}"
    );
    assert!(
        mine.contains("有效<br><small>至 ") && mine.contains("剩余 "),
        "{mine}"
    );
    assert!(mine.contains("class=\"table-wrap\""));
    // The grant is revoked by the supervisor from the grants page, with a confirmation.
    let grant: String =
        sqlx::query_scalar("SELECT id::text FROM grants WHERE request_id = $1::uuid")
            .bind(&view)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let grants = sup.page("/grants").await;
    assert!(
        grants.contains("<h1>有效授权</h1>") && grants.contains("剩余 "),
        "{grants}"
    );
    let (_, html) = sup
        .post_follow(
            "/grants",
            &format!("/grants/{grant}/revoke"),
            &[("reason", "投诉已撤回")],
        )
        .await;
    assert!(
        html.contains("已收回 emp 对 CONTR-") && html.contains("的调阅授权，立即失效。"),
        "{html}"
    );

    // A request cancelled by its requester: confirmed in their language.
    let (s, another) = ask(
        &app,
        emp.token(),
        &rec,
        "export",
        "法院调查需要合同副本",
        "zh-CN",
    )
    .await;
    assert_eq!(s, Status::Created);
    let another = another["id"].as_str().unwrap();
    let (to, html) = emp
        .post_follow("/requests", &format!("/requests/{another}/cancel"), &[])
        .await;
    assert_eq!(to, "/requests");
    assert!(
        html.contains("的导出申请已撤销。") && html.contains(">已撤销</strong>"),
        "{html}"
    );
    // Cancelling again: 409, the reason at the request's row, focused.
    let Answer {
        status: s, html, ..
    } = emp
        .post("/requests", &format!("/requests/{another}/cancel"), &[])
        .await;
    assert_eq!(s, Status::Conflict);
    assert!(
        html.contains("申请已撤销") && html.contains("autofocus"),
        "{html}"
    );
}

#[tokio::test]
async fn the_loans_register_downloads_as_csv_with_a_bom_and_as_a_workbook_in_the_readers_language()
{
    let app = TestApp::new().await;
    let (archivist, rec) = record(&app).await;
    let desk = Browser::with_token(&app, &archivist).in_language("zh-CN");
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let (s, r) = ask(&app, &emp, &rec, "borrow", "借阅合同原件核对签章", "zh-CN").await;
    assert_eq!(s, Status::Created, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let (s, a) = app
        .post(
            &format!("/api/v1/requests/{id}/approve"),
            &sup,
            json!({"comment": ""}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{a}");

    // Lent through the desk's form: a confirmation in Chinese.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let (to, html) = desk
        .post_follow(
            "/loans",
            "/loans",
            &[("request", &id), ("due_date", &tomorrow), ("row", "1")],
        )
        .await;
    assert_eq!(to, "/loans", "{html}");
    assert!(
        html.contains(&format!("已借给 emp，应于 {tomorrow} 归还。")),
        "{html}"
    );
    assert!(
        html.contains(">在借</strong>") && html.contains("<h1>借阅台</h1>"),
        "{html}"
    );
    // A return without a condition: 422, the message beside that loan's field.
    let ret = format!("/loans/{id}/return");
    let Answer {
        status: s, html, ..
    } = desk.post("/loans", &ret, &[("condition", "")]).await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert!(
        html.contains(&format!("id=\"f-condition-{id}\" aria-invalid=\"true\"")),
        "{html}"
    );
    assert!(html.contains("请填写档案归还状况"), "{html}");
    let (_, html) = desk
        .post_follow("/loans", &ret, &[("condition", "=1+1 完好")])
        .await;
    assert!(
        html.contains("归还的 CONTR-") && html.contains("归还状况已登记"),
        "{html}"
    );

    let download = |path: &'static str, lang: &'static str| {
        let app = &app;
        let cookie = desk.session_cookie();
        async move {
            let res = app
                .client
                .get(path)
                .cookie(cookie)
                .header(Header::new("Accept-Language", lang))
                .dispatch()
                .await;
            assert_eq!(res.status(), Status::Ok, "{path}");
            let disposition = res
                .headers()
                .get_one("Content-Disposition")
                .unwrap()
                .to_string();
            let media = res.headers().get_one("Content-Type").unwrap().to_string();
            (media, disposition, res.into_bytes().await.unwrap())
        }
    };
    // CSV: UTF-8 with a byte-order mark, headers in the reader's language, no formulas.
    let (media, disposition, csv) = download("/loans/register.csv", "zh-CN").await;
    assert!(media.starts_with("text/csv"), "{media}");
    assert!(
        disposition.starts_with("attachment; filename=\"loans-register-")
            && disposition.ends_with(".csv\"")
    );
    assert_eq!(&csv[..3], b"\xEF\xBB\xBF");
    let text = String::from_utf8(csv[3..].to_vec()).unwrap();
    assert!(
        text.starts_with(
            "档号,题名,借阅人,批准人,出借经办人,借出时间,应还日期,归还时间,归还状况,逾期,借阅人已离职\r\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("Framework agreement") && text.contains(",'=1+1 完好,"),
        "{text}"
    );
    let (_, _, english) = download("/loans/register.csv", "en").await;
    assert!(
        String::from_utf8_lossy(&english[3..]).starts_with("Reference,Title,Borrower,Approved by")
    );
    // The API's CSV keeps its machine column names, with the mark too.
    let res = app
        .client
        .get("/api/v1/loans/register.csv")
        .header(bearer(&archivist))
        .dispatch()
        .await;
    let api = res.into_bytes().await.unwrap();
    assert!(api.starts_with(b"\xEF\xBB\xBFreference,title,borrower,approved_by"));

    // The workbook: a zip with the SpreadsheetML parts, its sheet read back cell by cell.
    let (media, disposition, xlsx) = download("/loans/register.xlsx", "zh-CN").await;
    assert_eq!(
        media,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert!(disposition.ends_with(".xlsx\""));
    let mut zip = zip::ZipArchive::new(Cursor::new(xlsx)).unwrap();
    for part in [
        "[Content_Types].xml",
        "_rels/.rels",
        "xl/workbook.xml",
        "xl/_rels/workbook.xml.rels",
        "xl/styles.xml",
    ] {
        assert!(zip.by_name(part).is_ok(), "{part}");
    }
    let mut workbook = String::new();
    zip.by_name("xl/workbook.xml")
        .unwrap()
        .read_to_string(&mut workbook)
        .unwrap();
    assert!(workbook.contains("name=\"借阅登记簿\""), "{workbook}");
    let mut sheet = String::new();
    zip.by_name("xl/worksheets/sheet1.xml")
        .unwrap()
        .read_to_string(&mut sheet)
        .unwrap();
    let cells: Vec<Vec<String>> = sheet
        .split("<row ")
        .skip(1)
        .map(|row| {
            row.split("<t xml:space=\"preserve\">")
                .skip(1)
                .map(|t| {
                    t.split("</t>")
                        .next()
                        .unwrap()
                        .replace("&amp;", "&")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                })
                .collect()
        })
        .collect();
    assert_eq!(cells.len(), 2, "{sheet}");
    assert_eq!(&cells[0][..3], ["档号", "题名", "借阅人"]);
    assert!(cells[1][0].starts_with("CONTR-"));
    // Text stays text: the title is not a formula in the workbook.
    assert_eq!(cells[1][1], "Framework agreement");
    assert!(!sheet.contains("<f>"));
    assert!(cells[1].contains(&"=1+1 完好".to_string()), "{cells:?}");
    assert_eq!(app.audit_count("loan.register_export", "success").await, 4);
    // The register is the desk's: an employee is refused.
    let res = app
        .client
        .get("/loans/register.xlsx")
        .cookie(Cookie::new("strongroom_session", emp))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
}
