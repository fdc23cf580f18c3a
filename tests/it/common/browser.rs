//! One person's browser on the server's HTML pages, for the tests that drive them as a
//! browser would: the session cookie, the language it asks for (`Accept-Language`), forms
//! posted with the CSRF token read from the page they are on, and the confirmation cookie
//! an answer sets, sent back with the next page exactly once (the test client keeps no
//! cookies of its own).

use std::cell::RefCell;

use rocket::http::{ContentType, Cookie, Header, RawStr, Status};
use rocket::local::asynchronous::{LocalRequest, LocalResponse};
use strongroom::auth::SESSION_COOKIE;
use strongroom::i18n::flash::FLASH_COOKIE;
use strongroom::users::Role;

use super::TestApp;

pub struct Browser<'a> {
    pub app: &'a TestApp,
    /// None for a browser nobody has signed in on.
    session: Option<Cookie<'static>>,
    lang: Option<String>,
    /// Other cookies it sends with every request (a language chosen on the sign-in page, say).
    cookies: Vec<Cookie<'static>>,
    /// The confirmation the last answer set, for the next page.
    flash: RefCell<Option<Cookie<'static>>>,
}

/// What a page (or a form post) answered.
pub struct Answer {
    pub status: Status,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    /// Every `Set-Cookie` header, as sent.
    pub set_cookies: Vec<String>,
    /// The confirmation cookie's value, when this answer set one for the next page.
    pub flash: Option<String>,
    pub body: Vec<u8>,
    /// The body as text, with the `/` that templates escape as `&#x2f;` read back as a
    /// browser reads it.
    pub html: String,
}

impl<'a> Browser<'a> {
    /// Creates `name` with `roles` in department Retail and signs them in.
    pub async fn new(app: &'a TestApp, name: &str, roles: &[Role]) -> Browser<'a> {
        let token = app.user_token(name, roles, "Retail").await;
        Browser::with_token(app, &token)
    }

    /// The browser of whoever signed in with `token`.
    pub fn with_token(app: &'a TestApp, token: &str) -> Browser<'a> {
        Browser {
            session: Some(Cookie::new(SESSION_COOKIE, token.to_string())),
            ..Browser::anonymous(app)
        }
    }

    /// A browser nobody has signed in on.
    pub fn anonymous(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            session: None,
            lang: None,
            cookies: Vec::new(),
            flash: RefCell::new(None),
        }
    }

    /// Asks for pages (and posts forms) in `lang`.
    pub fn in_language(mut self, lang: &str) -> Browser<'a> {
        self.lang = Some(lang.to_string());
        self
    }

    /// Sends `cookie` too with every request.
    pub fn with_cookie(mut self, cookie: Cookie<'static>) -> Browser<'a> {
        self.cookies.push(cookie);
        self
    }

    /// The session's token, for the JSON API.
    pub fn token(&self) -> &str {
        self.session.as_ref().expect("a signed-in browser").value()
    }

    /// The session cookie, for requests made by hand.
    pub fn session_cookie(&self) -> Cookie<'static> {
        self.session.clone().expect("a signed-in browser")
    }

    fn dress<'c>(&self, mut req: LocalRequest<'c>, lang: Option<&str>) -> LocalRequest<'c> {
        if let Some(s) = &self.session {
            req = req.cookie(s.clone());
        }
        for c in &self.cookies {
            req = req.cookie(c.clone());
        }
        if let Some(l) = lang {
            req = req.header(Header::new("Accept-Language", l.to_string()));
        }
        req
    }

    async fn send(&self, req: LocalRequest<'_>) -> Answer {
        let (answer, flash) = read(req.dispatch().await).await;
        match flash {
            // Removed by the page that showed it.
            Some(v) if v.is_empty() => *self.flash.borrow_mut() = None,
            Some(v) => *self.flash.borrow_mut() = Some(Cookie::new(FLASH_COOKIE, v)),
            None => {}
        }
        answer
    }

    /// GET in the browser's language.
    pub async fn get(&self, path: &str) -> Answer {
        self.get_in(path, self.lang.as_deref()).await
    }

    /// GET asking for `lang` this once (None: no `Accept-Language` at all).
    pub async fn get_in(&self, path: &str, lang: Option<&str>) -> Answer {
        let mut req = self.dress(self.app.client.get(path.to_string()), lang);
        let flash = self.flash.borrow_mut().take();
        if let Some(f) = flash {
            req = req.cookie(f);
        }
        self.send(req).await
    }

    /// A page that must answer 200.
    pub async fn page(&self, path: &str) -> String {
        let a = self.get(path).await;
        assert_eq!(a.status, Status::Ok, "GET {path}: {}", a.html);
        a.html
    }

    /// Posts a form with the session's CSRF token, read from the page `from` as a browser
    /// would have it; the values are percent-encoded.
    pub async fn post(&self, from: &str, action: &str, fields: &[(&str, &str)]) -> Answer {
        let encoded: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", RawStr::new(v).percent_encode()))
            .collect();
        self.post_encoded(from, action, &encoded.join("&")).await
    }

    /// Posts a form body written out already (`a=1&b=2`, encoded), with the CSRF token of
    /// the page `from` in front.
    pub async fn post_encoded(&self, from: &str, action: &str, encoded: &str) -> Answer {
        let csrf = csrf_of(&self.page(from).await);
        let body = if encoded.is_empty() {
            format!("csrf={csrf}")
        } else {
            format!("csrf={csrf}&{encoded}")
        };
        let req = self
            .dress(
                self.app.client.post(action.to_string()),
                self.lang.as_deref(),
            )
            .header(ContentType::Form)
            .body(body);
        self.send(req).await
    }

    /// Posts a form that must answer with a redirect; returns where to.
    pub async fn post_ok(&self, from: &str, action: &str, fields: &[(&str, &str)]) -> String {
        let a = self.post(from, action, fields).await;
        assert_eq!(a.status, Status::SeeOther, "POST {action}: {}", a.html);
        a.location.expect("where the post redirects")
    }

    /// Posts a form that must answer with a redirect and a confirmation, and opens the page
    /// it redirects to (which must answer 200) with that confirmation, as a browser would;
    /// returns where to and the page.
    pub async fn post_follow(
        &self,
        from: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> (String, String) {
        let a = self.post(from, action, fields).await;
        assert_eq!(a.status, Status::SeeOther, "POST {action}: {}", a.html);
        assert!(a.flash.is_some(), "POST {action}: no confirmation set");
        let to = a.location.expect("where the post redirects");
        let html = self.page(&to).await;
        (to, html)
    }
}

/// The answer, and the value of the confirmation cookie it set (empty when it removed it).
async fn read(res: LocalResponse<'_>) -> (Answer, Option<String>) {
    let status = res.status();
    let header = |name: &str| res.headers().get_one(name).map(str::to_string);
    let location = header("Location");
    let content_type = header("Content-Type");
    let cache_control = header("Cache-Control");
    let set_cookies = res
        .headers()
        .get("Set-Cookie")
        .map(str::to_string)
        .collect();
    let flash = res
        .cookies()
        .get(FLASH_COOKIE)
        .map(|c| c.value().to_string());
    let body = res.into_bytes().await.unwrap_or_default();
    let html = String::from_utf8_lossy(&body).replace("&#x2f;", "/");
    let answer = Answer {
        status,
        location,
        content_type,
        cache_control,
        set_cookies,
        flash: flash.clone().filter(|v| !v.is_empty()),
        body,
        html,
    };
    (answer, flash)
}

/// The CSRF token of the (first) form on the page.
pub fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a form with a CSRF token")
        .to_string()
}
