//! The interface's languages and time zones, driven as a browser would: the language from
//! `Accept-Language`, the sign-in page's switch (a cookie), a person's saved choice (which
//! wins), the vault's default; times in the person's zone; translated messages with
//! unchanged API codes; confirmations shown once.

use rocket::http::{ContentType, Cookie, Header, Status};
use strongroom::users::Role;

use crate::common::browser::Browser;
use crate::common::{bearer, TestApp};

#[tokio::test]
async fn the_language_follows_the_browser_until_the_person_chooses_one() {
    let app = TestApp::new().await;
    let me = Browser::new(&app, "li.wei", &[Role::Employee]).await;

    let zh = me.get_in("/", Some("zh-CN,zh;q=0.9,en;q=0.8")).await;
    assert_eq!(zh.status, Status::Ok);
    assert!(zh.html.contains("<html lang=\"zh-CN\">"), "{}", zh.html);
    assert!(zh.html.contains("档案检索") && zh.html.contains("我的申请"));
    let en = me.get_in("/", Some("en-US,en;q=0.9")).await;
    assert!(en.html.contains("<html lang=\"en\">"));
    assert!(en.html.contains(">Search<") && !en.html.contains("档案检索"));

    // The switch in the header saves the choice; it then wins over the browser's.
    let switched = me
        .post(
            "/account",
            "/account/language",
            &[("lang", "zh-CN"), ("next", "/search?q=x")],
        )
        .await;
    assert_eq!(switched.status, Status::SeeOther);
    assert_eq!(switched.location.as_deref(), Some("/search?q=x"));
    let after = me.get_in("/", Some("en-US")).await;
    assert!(
        after.html.contains("<html lang=\"zh-CN\">"),
        "{}",
        after.html
    );
    assert_eq!(app.audit_count("user.preferences", "success").await, 1);

    // The switch never sends anyone to another site.
    let away = me
        .post(
            "/account",
            "/account/language",
            &[("lang", "en"), ("next", "//evil.example/x")],
        )
        .await;
    assert_eq!(away.location.as_deref(), Some("/"));
    let bad = me
        .post("/account", "/account/language", &[("lang", "fr")])
        .await;
    assert_eq!(bad.status, Status::UnprocessableEntity);
}

#[tokio::test]
async fn the_sign_in_page_switch_and_the_vaults_default() {
    let app = TestApp::new().await;
    // The test vault's default is English; a browser asking for Chinese gets Chinese.
    let plain = Browser::anonymous(&app).get_in("/login", None).await;
    assert!(plain.html.contains("<html lang=\"en\">"));
    let zh = Browser::anonymous(&app)
        .get_in("/login", Some("zh-CN"))
        .await;
    assert!(zh.html.contains("<html lang=\"zh-CN\">") && zh.html.contains("用户名"));
    // The switch sets a cookie that wins over the browser's language.
    let switched = Browser::anonymous(&app)
        .get_in("/login?lang=zh-CN", Some("en"))
        .await;
    assert!(switched.html.contains("<html lang=\"zh-CN\">"));
    let cookie = switched
        .set_cookies
        .iter()
        .find(|c| c.starts_with("strongroom_lang=zh-CN"))
        .expect("a language cookie");
    assert!(cookie.contains("Path=/"));
    let again = Browser::anonymous(&app)
        .with_cookie(Cookie::new("strongroom_lang", "zh-CN"))
        .get_in("/login", Some("en"))
        .await;
    assert!(again.html.contains("<html lang=\"zh-CN\">"));
    // A wrong password is answered in the page's language.
    let res = app
        .client
        .post("/login")
        .header(Header::new("Accept-Language", "zh-CN"))
        .header(ContentType::Form)
        .body("csrf=x&username=a&password=b")
        .dispatch()
        .await;
    assert_ne!(res.status(), Status::Ok);

    // The shipped default is Chinese for browsers that ask for neither language.
    let shipped = TestApp::with_config(|c| c.default_locale = "zh-CN".into()).await;
    let p = Browser::anonymous(&shipped)
        .get_in("/login", Some("fr-FR"))
        .await;
    assert!(p.html.contains("<html lang=\"zh-CN\">"));
}

#[tokio::test]
async fn times_are_shown_in_the_persons_zone() {
    let app = TestApp::new().await;
    let me = Browser::new(&app, "zhou.yu", &[Role::Employee]).await;
    let shown = |html: &str| -> String {
        let rest = &html[html.find("Now: ").expect("the current time") + 5..];
        rest[..rest.find('<').unwrap()].trim().to_string()
    };
    let expect = |offset_hours: i64| -> Vec<String> {
        // The minute may turn between the page and this check.
        [0i64, 1, -1]
            .iter()
            .map(|m| {
                (chrono::Utc::now()
                    + chrono::Duration::hours(offset_hours)
                    + chrono::Duration::minutes(*m))
                .format("%-d %b %Y, %H:%M")
                .to_string()
            })
            .collect()
    };
    // The vault's zone (Asia/Shanghai, UTC+8, no daylight saving) until the person picks one.
    let p = me.get("/account").await;
    assert!(expect(8).contains(&shown(&p.html)), "{}", shown(&p.html));
    let saved = me
        .post(
            "/account",
            "/account",
            &[("locale", "en"), ("time_zone", "UTC")],
        )
        .await;
    assert_eq!(saved.status, Status::SeeOther, "{}", saved.html);
    let p = me.get("/account").await;
    assert!(expect(0).contains(&shown(&p.html)), "{}", shown(&p.html));

    // A zone that does not exist is refused next to its field, in the page's language, and
    // nothing is saved.
    let bad = me
        .post(
            "/account",
            "/account",
            &[("locale", "zh-CN"), ("time_zone", "Mars/Olympus")],
        )
        .await;
    assert_eq!(bad.status, Status::UnprocessableEntity);
    assert!(bad.html.contains("aria-invalid=\"true\""), "{}", bad.html);
    assert!(bad.html.contains("id=\"e-time_zone\""));
    // What was chosen is still chosen, the bad zone included, so it can be corrected.
    assert!(
        bad.html.contains("<option selected>Mars/Olympus</option>"),
        "{}",
        bad.html
    );
    assert!(
        bad.html.contains("value=\"zh-CN\" lang=\"zh-CN\" selected"),
        "{}",
        bad.html
    );
    let p = me.get("/account").await;
    assert!(p.html.contains("<html lang=\"en\">"));
}

#[tokio::test]
async fn a_confirmation_is_shown_once_after_a_post() {
    let app = TestApp::new().await;
    let me = Browser::new(&app, "ma.lin", &[Role::Employee]).await;
    let saved = me
        .post(
            "/account",
            "/account",
            &[("locale", "zh-CN"), ("time_zone", "")],
        )
        .await;
    assert_eq!(saved.status, Status::SeeOther);
    assert!(
        saved
            .set_cookies
            .iter()
            .any(|c| c.starts_with("strongroom_flash=")),
        "a confirmation cookie"
    );
    // The browser sends it back with the next page.
    let shown = me.get("/account").await;
    assert!(shown.html.contains("设置已保存"), "{}", shown.html);
    // The page removes it, so the next one does not show it again.
    assert!(shown
        .set_cookies
        .iter()
        .any(|c| c.starts_with("strongroom_flash=;")));
    let next = me.get("/account").await;
    assert!(!next.html.contains("设置已保存"));
    // A cookie naming anything but a confirmation shows nothing; nor does one whose values
    // carry a bidirectional control (which no input may hold), nor one missing a value.
    let token = me.token().to_string();
    let forged = me
        .with_cookie(Cookie::new("strongroom_flash", "nav-home"))
        .get("/account")
        .await;
    assert!(!forged.html.contains("class=\"flash\""));
    for value in [
        "flash-audit-broken&seq=%E2%80%AEevil",
        "flash-audit-broken&seq=1%00",
        "flash-rec-corrected&reference=CONTR-1",
    ] {
        let page = Browser::with_token(&app, &token)
            .with_cookie(Cookie::new("strongroom_flash", value))
            .get("/account")
            .await;
        assert!(
            !page.html.contains("class=\"flash\""),
            "{value}: {}",
            page.html
        );
    }
    // The same message with all its values, plain, is shown.
    let page = Browser::with_token(&app, &token)
        .with_cookie(Cookie::new(
            "strongroom_flash",
            "flash-rec-corrected&reference=CONTR-1&revision=2",
        ))
        .get("/account")
        .await;
    assert!(page.html.contains("class=\"flash\""), "{}", page.html);
}

#[tokio::test]
async fn api_codes_stay_the_same_and_messages_follow_the_language() {
    let app = TestApp::new().await;
    let (_, token) = app.login_as(Role::Employee).await;
    let path = format!("/api/v1/records/{}", uuid::Uuid::new_v4());
    for (lang, message) in [
        (None, "not found"),
        (Some("zh-CN"), "未找到"),
        (Some("en"), "not found"),
    ] {
        let mut req = app.client.get(path.clone()).header(bearer(&token));
        if let Some(l) = lang {
            req = req.header(Header::new("Accept-Language", l));
        }
        let res = req.dispatch().await;
        assert_eq!(res.status(), Status::NotFound);
        let body: serde_json::Value = res.into_json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(body["error"]["message"], message, "{lang:?}");
    }
}
