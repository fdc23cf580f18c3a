//! HTML pages of the archive: the filing form generated from a category's schema and the
//! record page (with its request form and, under an active view grant, links into the
//! viewer). Categories and search are in `catalog.rs`.

use std::collections::{BTreeMap, HashMap};

use minijinja::{context, Value};
use rocket::form::FromForm;
use rocket::http::ContentType;
use rocket::response::content::RawHtml;
use rocket::{get, post, routes, Route, State};
use serde::Serialize;

use super::{me, redirect_or_show, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::records::model::{
    CategoryId, Location, NewRecord, PhysicalStatus, RecordChanges, RecordId, RecordView,
};
use crate::records::register::{self, Move};
use crate::records::{self, categories};
use crate::requests::{self, Kind, NewRequest};
use crate::users::Role;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        upload_js,
        record_new,
        record_create,
        record_page,
        record_request,
        record_edit,
        record_move,
    ]
}

const UPLOAD_JS: &str = include_str!("../../templates/static/upload.js");

#[get("/static/upload.js")]
fn upload_js() -> (ContentType, &'static str) {
    (ContentType::JavaScript, UPLOAD_JS)
}

async fn render_new(
    app: &App,
    who: &Principal,
    category: Option<CategoryId>,
    error: Option<String>,
    form: Value,
) -> AppResult<RawHtml<String>> {
    let all = categories::list(app, who).await?;
    let chosen = category.and_then(|id| all.iter().find(|c| c.id == id).cloned());
    app.templates.render(
        "record_new.html",
        context! { me => me(who), csrf => who.csrf_token(), categories => all, category => chosen, error => error, form => form },
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
        id,
        None,
        Value::from_serialize(serde_json::json!({"fields": {}})),
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

#[post("/records", data = "<form>")]
async fn record_create(
    app: &State<App>,
    who: Principal,
    form: CsrfForm<RecordForm>,
) -> AppResult<Page> {
    let mut f = form.0;
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
            },
        )
        .await
    }
    .await;
    // On a second showing keep what was typed, except sensitive values, never echoed back.
    if result.is_err() {
        if let Some(cat) = match category_id {
            Some(id) => categories::get(app, id).await.ok(),
            None => None,
        } {
            f.fields
                .retain(|k, _| cat.field(k).is_some_and(|d| !d.sensitive));
        }
    }
    redirect_or_show(
        result,
        |r| format!("/records/{}", r.id),
        |msg| render_new(app, &who, category_id, Some(msg), Value::from_serialize(&f)),
    )
    .await
}

/// A kind of request as the record page offers it, with what its workflow route asks for
/// this record (nothing when no route allows it).
#[derive(Serialize)]
struct KindChoice {
    value: &'static str,
    explain: &'static str,
    route: Option<requests::Route>,
}

fn kind_choices(app: &App, record: &RecordView) -> Vec<KindChoice> {
    [
        (
            Kind::Lookup,
            "see this record's masked details (phone, ID numbers…) in full",
        ),
        (
            Kind::View,
            "read its files in the view-only viewer (no download, no printing)",
        ),
        (
            Kind::Borrow,
            "take the physical file out; collect it at the loans desk",
        ),
        (
            Kind::Export,
            "take copies of its files out as a zip, downloaded once",
        ),
    ]
    .into_iter()
    .map(|(kind, explain)| KindChoice {
        value: kind.as_str(),
        explain,
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

async fn render_record(
    app: &App,
    who: &Principal,
    id: RecordId,
    message: Option<String>,
    error: Option<String>,
    asked: Option<&RequestForm>,
    ask_error: Option<String>,
) -> AppResult<RawHtml<String>> {
    let empty = <RequestForm as Default>::default();
    let asked = asked.unwrap_or(&empty);
    let page = requests::record_page(app, who, id).await?;
    let (record, revisions, file_list, moves, view_grant, mine) = (
        page.record,
        page.revisions,
        page.files,
        page.moves,
        page.view_grant,
        page.my_requests,
    );
    let kinds = kind_choices(app, &record);
    app.templates.render(
        "record.html",
        context! { me => me(who), csrf => who.csrf_token(), record => record, revisions => revisions,
                   files => file_list, moves => moves, can_edit => who.has_role(Role::Archivist),
                   message => message, error => error, view_grant => view_grant,
                   my_requests => mine, kinds => kinds, asked => asked, ask_error => ask_error,
                   min_purpose => requests::MIN_PURPOSE },
    )
}

#[get("/records/<id>")]
async fn record_page(app: &State<App>, who: Principal, id: RecordId) -> AppResult<RawHtml<String>> {
    render_record(app, &who, id, None, None, None, None).await
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
            },
        )
        .await
    }
    .await;
    redirect_or_show(
        result,
        |r| format!("/requests/{}?notice=filed", r.id),
        |msg| render_record(app, &who, id, None, None, Some(&f), Some(msg)),
    )
    .await
}

#[derive(FromForm)]
pub struct RecordEditForm {
    title: String,
    fields: HashMap<String, String>,
    reason: String,
    csrf: String,
}

csrf_field!(RecordEditForm);

#[post("/records/<id>/edit", data = "<form>")]
async fn record_edit(
    app: &State<App>,
    who: Principal,
    id: RecordId,
    form: CsrfForm<RecordEditForm>,
) -> AppResult<Page> {
    let f = form.0;
    let current = records::get(app, &who, id).await?;
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
    let title = (f.title.trim() != current.title).then(|| f.title.clone());
    let changes = RecordChanges {
        title,
        fields: changes,
        reason: f.reason.clone(),
    };
    redirect_or_show(
        records::update(app, &who, id, changes).await,
        |_| format!("/records/{id}"),
        |msg| render_record(app, &who, id, None, Some(msg), None, None),
    )
    .await
}

#[derive(FromForm)]
pub struct MoveForm {
    storeroom: String,
    shelf: String,
    #[field(name = "box")]
    box_code: String,
    status: String,
    reason: String,
    csrf: String,
}

csrf_field!(MoveForm);

#[post("/records/<id>/physical", data = "<form>")]
async fn record_move(
    app: &State<App>,
    who: Principal,
    id: RecordId,
    form: CsrfForm<MoveForm>,
) -> AppResult<Page> {
    let f = form.0;
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
    redirect_or_show(
        register::move_file(app, &who, id, m).await,
        |_| format!("/records/{id}"),
        |msg| render_record(app, &who, id, None, Some(msg), None, None),
    )
    .await
}
