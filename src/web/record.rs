//! The pages of one record: the filing form generated from a category's schema, and the
//! record page, split by task into sections reached from an in-page navigation: details
//! (the fields, masked as the reader's role and grants have them), the physical file
//! (location, status, moves; the move form for archivists), files (versions, sizes, the
//! upload form for archivists, viewer links under a view grant), access requests (the form
//! for those the policy lets request) and history (revisions with the schema's labels, and
//! the correction form for archivists).
//!
//! Every form answers a refusal with the page again (422/409), each message beside the
//! field it concerns and every value typed put back, sensitive ones included (they are
//! only echoed into the page, never logged); a success sets a one-time confirmation and
//! redirects.

use std::collections::{BTreeMap, HashMap};

use minijinja::{context, Value};
use rocket::form::FromForm;
use rocket::http::CookieJar;
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, Route, State};
use serde::Serialize;

use super::forms::FormErrors;
use super::{me, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::i18n::flash;
use crate::policy::RequestAccess;
use crate::records::model::{
    Category, CategoryId, Location, NewRecord, PhysicalStatus, RecordChanges, RecordId, RecordView,
};
use crate::records::register::{self, Move};
use crate::records::{self, categories, files};
use crate::requests::{self, Kind, NewRequest};
use crate::users::Role;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        record_new,
        record_create,
        record_page,
        record_request,
        record_edit,
        record_move,
        record_uploaded,
    ]
}

/// A refusal as the page shows it: beside its field, or at the top of the form.
fn errors_of(lang: crate::i18n::Lang, e: &AppError, name: impl Fn(&str) -> String) -> FormErrors {
    FormErrors::from_error(lang, e, name)
}

/// Answers a refused form with its page again (the refusal's status), or passes any
/// other error on.
fn refused(e: &AppError) -> bool {
    matches!(e, AppError::Invalid { .. } | AppError::Conflict(_))
}

fn redirect(to: String) -> Page {
    Page::Redirect(Box::new(Redirect::to(to)))
}

// ---------------------------------------------------------------------------------------
// Filing

/// The storerooms, shelves and boxes of the register, for the location inputs' lists.
#[derive(Serialize, Default)]
struct Places {
    storerooms: Vec<(String, String)>,
    shelves: Vec<String>,
    boxes: Vec<String>,
}

async fn places(app: &App, who: &Principal) -> AppResult<Places> {
    let mut out = Places::default();
    if !who.has_role(Role::Archivist) {
        return Ok(out);
    }
    for e in register::list(app, who).await? {
        if !out.storerooms.iter().any(|(c, _)| *c == e.storeroom) {
            out.storerooms
                .push((e.storeroom.clone(), e.storeroom_name.clone()));
        }
        if let Some(s) = e.shelf {
            if !out.shelves.contains(&s) {
                out.shelves.push(s);
            }
        }
        if let Some(b) = e.box_code {
            if !out.boxes.contains(&b) {
                out.boxes.push(b);
            }
        }
    }
    out.shelves.sort();
    out.boxes.sort();
    Ok(out)
}

struct NewPage {
    category: Option<CategoryId>,
    errors: FormErrors,
    form: Value,
    /// The title was refused for containing a sensitive value: offer "file anyway".
    title_warning: bool,
}

async fn render_new(app: &App, who: &Principal, p: NewPage) -> AppResult<RawHtml<String>> {
    let all = categories::list(app, who).await?;
    let chosen = p
        .category
        .and_then(|id| all.iter().find(|c| c.id == id).cloned());
    let places = places(app, who).await?;
    app.templates.render(
        "record_new.html",
        context! { me => me(who), csrf => who.csrf_token(), categories => all, category => chosen,
        errors => p.errors, form => p.form, title_warning => p.title_warning,
        places => places },
    )
}

#[get("/records/new?<category>")]
async fn record_new(
    app: &State<App>,
    who: Principal,
    category: Option<&str>,
) -> AppResult<RawHtml<String>> {
    let id = category.and_then(|c| c.parse().ok()).map(CategoryId);
    render_new(
        app,
        &who,
        NewPage {
            category: id,
            errors: FormErrors::default(),
            form: Value::from_serialize(serde_json::json!({"fields": {}})),
            title_warning: false,
        },
    )
    .await
}

#[derive(FromForm, Serialize)]
pub struct RecordForm {
    category_id: String,
    title: String,
    fields: HashMap<String, String>,
    storeroom: String,
    shelf: String,
    #[field(name = "box")]
    #[serde(rename = "box")]
    box_code: String,
    /// "File anyway": the title may contain a sensitive field's value.
    allow_title_with_sensitive: bool,
    #[serde(skip)]
    csrf: String,
}

csrf_field!(RecordForm);

fn location(storeroom: &str, shelf: &str, box_code: &str) -> Option<Location> {
    if storeroom.trim().is_empty() && shelf.trim().is_empty() && box_code.trim().is_empty() {
        return None;
    }
    Some(Location {
        storeroom: storeroom.trim().into(),
        shelf: shelf.trim().into(),
        box_code: box_code.trim().into(),
    })
}

/// The form's name for a field a service names: `phone`, `fields.phone` and `fields[phone]`
/// are the category field's input (`field-phone`); `physical.box` is the box input.
fn filing_input(category: Option<&Category>, field: &str) -> String {
    let bare = field
        .strip_prefix("fields.")
        .or_else(|| {
            field
                .strip_prefix("fields[")
                .and_then(|f| f.strip_suffix(']'))
        })
        .unwrap_or(field);
    if category.is_some_and(|c| c.field(bare).is_some()) {
        return format!("field-{bare}");
    }
    match bare {
        "physical" | "physical.box" | "box" => "box".into(),
        "physical.shelf" => "shelf".into(),
        "physical.storeroom" => "storeroom".into(),
        other => other.into(),
    }
}

/// Whether a refusal is the title-contains-a-sensitive-value one.
fn is_title_warning(e: &AppError) -> bool {
    matches!(e, AppError::Invalid { field: Some(f), message }
        if f == "title" && message.starts_with("contains the value of the sensitive field"))
}

#[post("/records", data = "<form>")]
async fn record_create(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    form: CsrfForm<RecordForm>,
) -> AppResult<Page> {
    let f = form.0;
    let category_id = f.category_id.parse().ok().map(CategoryId);
    let result = async {
        let category_id =
            category_id.ok_or_else(|| AppError::invalid("category_id", "choose a category"))?;
        let fields: BTreeMap<String, serde_json::Value> = f
            .fields
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        records::create(
            app,
            &who,
            NewRecord {
                category_id,
                title: f.title.clone(),
                fields,
                physical: location(&f.storeroom, &f.shelf, &f.box_code),
                external_id: None,
                allow_title_with_sensitive: f.allow_title_with_sensitive,
            },
        )
        .await
    }
    .await;
    match result {
        Ok(records::Filed::Now(r)) => {
            flash::set(cookies, "flash-rec-filed", &[("reference", &r.reference)]);
            Ok(redirect(format!("/records/{}", r.id)))
        }
        Ok(records::Filed::Proposed(p)) => {
            flash::set(cookies, "flash-rec-proposed", &[("category", &p.category)]);
            Ok(redirect("/reviews".to_string()))
        }
        Err(e) if refused(&e) => {
            let category = match category_id {
                Some(id) => categories::get(app, id).await.ok(),
                None => None,
            };
            let errors = errors_of(who.ui().lang, &e, |n| filing_input(category.as_ref(), n));
            // Everything typed goes back into the form, sensitive values too: the person
            // corrects what was refused instead of typing it all again.
            let html = render_new(
                app,
                &who,
                NewPage {
                    category: category_id,
                    errors,
                    form: Value::from_serialize(&f),
                    title_warning: is_title_warning(&e),
                },
            )
            .await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------
// The record page

/// A kind of request as the record page offers it, with what its workflow route asks for
/// this record (nothing when no route allows it).
#[derive(Serialize)]
struct KindChoice {
    value: &'static str,
    route: Option<requests::Route>,
}

fn kind_choices(app: &App, record: &RecordView) -> Vec<KindChoice> {
    [Kind::Lookup, Kind::View, Kind::Borrow, Kind::Export]
        .into_iter()
        .map(|kind| KindChoice {
            value: kind.as_str(),
            route: app
                .workflows
                .route(kind, record.category.sensitivity, &record.category.code),
        })
        .collect()
}

/// What was typed into the request form, shown again with the error when it is refused.
#[derive(Default, FromForm, Serialize)]
pub struct RequestForm {
    kind: String,
    purpose: String,
    duration_hours: String,
    #[serde(skip)]
    csrf: String,
}

csrf_field!(RequestForm);

/// What was typed into the correction form.
#[derive(FromForm, Serialize)]
pub struct RecordEditForm {
    /// Absent when a script posts only the fields it changes: the title stays as it is.
    title: Option<String>,
    fields: HashMap<String, String>,
    reason: String,
    /// Ticked after the title-contains-a-sensitive-value warning.
    #[field(default = false)]
    allow_title_with_sensitive: bool,
    #[serde(skip)]
    csrf: String,
}

csrf_field!(RecordEditForm);

/// What was typed into the move form.
#[derive(FromForm, Serialize)]
pub struct MoveForm {
    storeroom: String,
    shelf: String,
    #[field(name = "box")]
    #[serde(rename = "box")]
    box_code: String,
    status: String,
    reason: String,
    #[serde(skip)]
    csrf: String,
}

csrf_field!(MoveForm);

/// The forms of the record page a refused post shows again, each with its errors.
#[derive(Default)]
struct Refused<'a> {
    asked: Option<&'a RequestForm>,
    ask_errors: FormErrors,
    edit: Option<&'a RecordEditForm>,
    edit_errors: FormErrors,
    /// The correction was refused for a title that gives a masked value away.
    edit_title_warning: bool,
    moved: Option<&'a MoveForm>,
    move_errors: FormErrors,
}

/// One change of a revision as the history shows it: the field's label from the schema.
#[derive(Serialize)]
struct ChangeView {
    label: String,
    change: String,
    sensitive: bool,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Serialize)]
struct RevisionView {
    revision: i32,
    author: String,
    created_at: chrono::DateTime<chrono::Utc>,
    reason: String,
    filed: bool,
    reviewer: Option<String>,
    changes: Vec<ChangeView>,
}

fn text_of(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The revisions with labels for field names (a field since removed from the schema keeps
/// its name; the title is `title`, which the template words).
fn revision_views(
    category: Option<&Category>,
    revisions: Vec<crate::records::model::Revision>,
) -> Vec<RevisionView> {
    revisions
        .into_iter()
        .map(|r| {
            let changes = r
                .changes
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|c| {
                            let name = c["field"].as_str().unwrap_or_default();
                            let label = category
                                .and_then(|cat| cat.field(name))
                                .map(|d| d.label().to_string())
                                .unwrap_or_else(|| name.to_string());
                            let sensitive = c["sensitive"].as_bool().unwrap_or(true);
                            ChangeView {
                                label,
                                change: c["change"].as_str().unwrap_or("changed").to_string(),
                                sensitive,
                                from: (!sensitive).then(|| text_of(c.get("from"))).flatten(),
                                to: (!sensitive).then(|| text_of(c.get("to"))).flatten(),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            RevisionView {
                revision: r.revision,
                filed: r.revision == 1 && r.reason == "filed",
                author: r.author,
                created_at: r.created_at,
                reason: r.reason,
                reviewer: r.reviewer,
                changes,
            }
        })
        .collect()
}

async fn render_record(
    app: &App,
    who: &Principal,
    id: RecordId,
    refused: Refused<'_>,
) -> AppResult<RawHtml<String>> {
    let empty = <RequestForm as Default>::default();
    let asked = refused.asked.unwrap_or(&empty);
    let page = requests::record_page(app, who, id).await?;
    let record = page.record;
    // The record was read under the policy above; its category gives the labels and
    // tells whether this person may request access to it.
    let category = categories::get(app, record.category.id).await.ok();
    let can_request = category.as_ref().is_some_and(|c| {
        app.policies
            .allows::<RequestAccess>(who, &c.resource().of(record.id.0))
    });
    let kinds = kind_choices(app, &record);
    let history = revision_views(category.as_ref(), page.revisions);
    let places = places(app, who).await?;
    let statuses: Vec<&str> = [PhysicalStatus::InStore, PhysicalStatus::Missing]
        .iter()
        .map(|s| s.as_str())
        .collect();
    let any_masked = record.fields.iter().any(|f| f.masked);
    // Retention, legal holds and destruction, read under the same policy as the record.
    let life = crate::lifecycle::of_record(app, who, id).await?;
    // Which sections are open: the one whose form was refused.
    let open_edit = refused.edit.is_some();
    let open_move = refused.moved.is_some();
    app.templates.render(
        "record.html",
        context! { me => me(who), csrf => who.csrf_token(), record => record,
        revisions => history, files => page.files, moves => page.moves,
        can_edit => who.has_role(Role::Archivist), can_request => can_request,
        view_grant => page.view_grant, my_requests => page.my_requests,
        kinds => kinds, asked => asked, ask_errors => refused.ask_errors,
        edit => refused.edit, edit_errors => refused.edit_errors, open_edit => open_edit,
        edit_title_warning => refused.edit_title_warning,
        moved => refused.moved, move_errors => refused.move_errors, open_move => open_move,
        places => places, statuses => statuses, any_masked => any_masked, life => life,
        min_purpose => requests::purpose::MIN_WEIGHT,
        min_purpose_cjk => requests::purpose::MIN_CJK, max_purpose => requests::purpose::MAX_CHARS },
    )
}

#[get("/records/<id>")]
async fn record_page(app: &State<App>, who: Principal, id: RecordId) -> AppResult<RawHtml<String>> {
    render_record(app, &who, id, Refused::default()).await
}

#[post("/records/<id>/requests", data = "<form>")]
async fn record_request(
    app: &State<App>,
    who: Principal,
    id: RecordId,
    form: CsrfForm<RequestForm>,
) -> AppResult<Page> {
    let f = form.0;
    let result = async {
        let kind = Kind::parse(f.kind.trim())
            .ok_or_else(|| AppError::invalid("kind", "choose lookup, view, borrow or export"))?;
        let duration_hours =
            f.duration_hours.trim().parse().map_err(|_| {
                AppError::invalid("duration_hours", "enter a whole number of hours")
            })?;
        requests::create(
            app,
            &who,
            NewRequest {
                record_id: id,
                kind,
                purpose: f.purpose.clone(),
                duration_hours,
                reason_type: None,
            },
        )
        .await
    }
    .await;
    match result {
        Ok(r) => Ok(redirect(format!("/requests/{}?notice=filed", r.id))),
        Err(e) if refused(&e) => {
            let errors = errors_of(who.ui().lang, &e, |n| format!("ask-{n}"));
            let html = render_record(
                app,
                &who,
                id,
                Refused {
                    asked: Some(&f),
                    ask_errors: errors,
                    ..Default::default()
                },
            )
            .await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

/// The correction form's name for a field a service names.
fn edit_input(record: &RecordView, field: &str) -> String {
    let bare = field.strip_prefix("fields.").unwrap_or(field);
    if record.fields.iter().any(|f| f.name == bare) {
        format!("edit-field-{bare}")
    } else {
        match bare {
            "title" | "reason" => format!("edit-{bare}"),
            // "nothing would change" concerns the form as a whole: shown at its top,
            // beside the reason.
            _ => "edit-reason".into(),
        }
    }
}

#[post("/records/<id>/edit", data = "<form>")]
async fn record_edit(
    app: &State<App>,
    who: Principal,
    id: RecordId,
    cookies: &CookieJar<'_>,
    form: CsrfForm<RecordEditForm>,
) -> AppResult<Page> {
    let mut f = form.0;
    let current = records::get(app, &who, id).await?;
    let typed_title = f.title.get_or_insert_with(|| current.title.clone()).clone();
    // Only what differs from the page: masked values left empty stay as they are.
    let mut changes = BTreeMap::new();
    for fv in &current.fields {
        let Some(new) = f.fields.get(&fv.name) else {
            continue;
        };
        let new = new.trim();
        if fv.masked {
            if !new.is_empty() {
                changes.insert(fv.name.clone(), serde_json::Value::String(new.into()));
            }
        } else if fv.value.as_deref().unwrap_or("") != new {
            changes.insert(
                fv.name.clone(),
                if new.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(new.into())
                },
            );
        }
    }
    let title = (typed_title.trim() != current.title).then_some(typed_title);
    let changes = RecordChanges {
        title,
        fields: changes,
        reason: f.reason.clone(),
        allow_title_with_sensitive: f.allow_title_with_sensitive,
    };
    match records::update(app, &who, id, changes).await {
        Ok(records::Filed::Proposed(_)) => {
            flash::set(cookies, "flash-rec-correction-proposed", &[]);
            Ok(redirect(format!("/records/{id}")))
        }
        Ok(records::Filed::Now(r)) => {
            let revision = r.revision.to_string();
            flash::set(
                cookies,
                "flash-rec-corrected",
                &[("reference", &r.reference), ("revision", &revision)],
            );
            Ok(redirect(format!("/records/{id}")))
        }
        Err(e) if refused(&e) => {
            let errors = errors_of(who.ui().lang, &e, |n| edit_input(&current, n));
            let html = render_record(
                app,
                &who,
                id,
                Refused {
                    edit: Some(&f),
                    edit_errors: errors,
                    edit_title_warning: is_title_warning(&e),
                    ..Default::default()
                },
            )
            .await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

/// The move form's name for a field a service names.
fn move_input(field: &str) -> String {
    match field {
        "physical" | "physical.box" | "box" | "to" => "move-box".into(),
        "physical.shelf" | "shelf" => "move-shelf".into(),
        "physical.storeroom" | "storeroom" => "move-storeroom".into(),
        "status" => "move-status".into(),
        _ => "move-reason".into(),
    }
}

#[post("/records/<id>/physical", data = "<form>")]
async fn record_move(
    app: &State<App>,
    who: Principal,
    id: RecordId,
    cookies: &CookieJar<'_>,
    form: CsrfForm<MoveForm>,
) -> AppResult<Page> {
    let f = form.0;
    let result = async {
        let status = match f.status.trim() {
            "" => None,
            s => Some(
                PhysicalStatus::parse(s)
                    .ok_or_else(|| AppError::invalid("status", "unknown status"))?,
            ),
        };
        let m = Move {
            to: location(&f.storeroom, &f.shelf, &f.box_code),
            status,
            reason: f.reason.clone(),
        };
        register::move_file(app, &who, id, m).await
    }
    .await;
    match result {
        Ok(()) => {
            let record = records::get(app, &who, id).await?;
            flash::set(
                cookies,
                "flash-rec-moved",
                &[("reference", &record.reference)],
            );
            Ok(redirect(format!("/records/{id}#physical")))
        }
        Err(e) if refused(&e) => {
            let errors = errors_of(who.ui().lang, &e, move_input);
            let html = render_record(
                app,
                &who,
                id,
                Refused {
                    moved: Some(&f),
                    move_errors: errors,
                    ..Default::default()
                },
            )
            .await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

/// Where the upload form's script goes once the API has stored a file: confirms the
/// upload (the file's name and version, read under the policy) and shows the files.
#[get("/records/<id>/uploaded/<file>")]
async fn record_uploaded(
    app: &State<App>,
    who: Principal,
    id: RecordId,
    file: &str,
    cookies: &CookieJar<'_>,
) -> AppResult<Redirect> {
    let list = files::list(app, &who, id).await?;
    if let Some(f) = list.iter().find(|f| f.id.to_string() == file) {
        let version = f.version.to_string();
        flash::set(
            cookies,
            "flash-rec-uploaded",
            &[("name", &f.original_name), ("version", &version)],
        );
    }
    Ok(Redirect::to(format!("/records/{id}#files")))
}
