//! HTML pages of the archive: categories and their field editor, the filing form generated
//! from a category's schema, the record page (with its request form and, under an active
//! view grant, links into the viewer), and search.

use std::collections::{BTreeMap, HashMap};

use minijinja::{context, Value};
use rocket::form::FromForm;
use rocket::http::uri::Origin;
use rocket::http::ContentType;
use rocket::response::content::RawHtml;
use rocket::{get, post, routes, Route, State};
use serde::Serialize;

use super::{me, redirect_or_show, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::policy::Sensitivity;
use crate::records::model::{
    CategoryChanges, CategoryId, Location, NewCategory, NewRecord, PhysicalStatus, RecordChanges,
    RecordId, RecordView,
};
use crate::records::register::{self, Move};
use crate::records::schema::{FieldDef, FieldType};
use crate::records::search::{self, SearchQuery};
use crate::records::{self, categories};
use crate::requests::{self, Kind, NewRequest};
use crate::users::Role;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        upload_js,
        categories_page,
        category_create,
        category_page,
        category_update,
        record_new,
        record_create,
        record_page,
        record_request,
        record_edit,
        record_move,
        search_page,
    ]
}

const UPLOAD_JS: &str = include_str!("../../templates/static/upload.js");

#[get("/static/upload.js")]
fn upload_js() -> (ContentType, &'static str) {
    (ContentType::JavaScript, UPLOAD_JS)
}

fn is_invalid(e: &AppError) -> bool {
    matches!(e, AppError::Invalid { .. } | AppError::Conflict(_))
}

async fn render_categories(
    app: &App,
    who: &Principal,
    error: Option<String>,
    form: Value,
) -> AppResult<RawHtml<String>> {
    let list = categories::list(app, who).await?;
    app.templates.render(
        "categories.html",
        context! { me => me(who), csrf => who.csrf_token(), categories => list,
        can_manage => who.has_role(Role::Archivist), error => error, form => form },
    )
}

#[get("/categories")]
async fn categories_page(app: &State<App>, who: Principal) -> AppResult<RawHtml<String>> {
    render_categories(
        app,
        &who,
        None,
        Value::from_serialize(serde_json::json!({})),
    )
    .await
}

#[derive(FromForm, Serialize)]
pub struct CategoryForm {
    code: String,
    name: String,
    parent_id: String,
    sensitivity: String,
    department: String,
    retention_years: i32,
    #[serde(skip)]
    csrf: String,
}

csrf_field!(CategoryForm);

fn sensitivity(v: &str) -> AppResult<Sensitivity> {
    Sensitivity::parse(v).ok_or_else(|| {
        AppError::invalid(
            "sensitivity",
            "must be public, internal, confidential or secret",
        )
    })
}

#[post("/categories", data = "<form>")]
async fn category_create(
    app: &State<App>,
    who: Principal,
    form: CsrfForm<CategoryForm>,
) -> AppResult<Page> {
    let f = form.0;
    let result = async {
        let parent_id = match f.parent_id.trim() {
            "" => None,
            s => Some(CategoryId(s.parse().map_err(|_| {
                AppError::invalid("parent_id", "no such category")
            })?)),
        };
        categories::create(
            app,
            &who,
            NewCategory {
                code: f.code.clone(),
                name: f.name.clone(),
                parent_id,
                sensitivity: sensitivity(&f.sensitivity)?,
                department: f.department.clone(),
                retention_years: f.retention_years,
                fields: vec![],
            },
        )
        .await
    }
    .await;
    redirect_or_show(
        result,
        |c| format!("/categories/{}", c.id),
        |msg| render_categories(app, &who, Some(msg), Value::from_serialize(&f)),
    )
    .await
}

async fn render_category(
    app: &App,
    who: &Principal,
    id: CategoryId,
    error: Option<String>,
) -> AppResult<RawHtml<String>> {
    let category = categories::get_for(app, who, id).await?;
    let mut rows: Vec<serde_json::Value> = category
        .fields
        .iter()
        .map(|f| serde_json::to_value(f).unwrap_or_default())
        .collect();
    for _ in 0..3 {
        rows.push(serde_json::json!({"type": "text"}));
    }
    let types: Vec<&str> = [
        FieldType::Text,
        FieldType::Number,
        FieldType::Date,
        FieldType::Phone,
        FieldType::IdNumber,
        FieldType::Email,
        FieldType::Choice,
    ]
    .iter()
    .map(|t| t.as_str())
    .collect();
    app.templates.render(
        "category.html",
        context! { me => me(who), csrf => who.csrf_token(), category => category, rows => rows, types => types,
                   can_manage => who.has_role(Role::Archivist), error => error },
    )
}

#[get("/categories/<id>")]
async fn category_page(
    app: &State<App>,
    who: Principal,
    id: CategoryId,
) -> AppResult<RawHtml<String>> {
    render_category(app, &who, id, None).await
}

#[derive(FromForm)]
pub struct FieldRow {
    name: String,
    label: String,
    #[field(name = "type")]
    kind: String,
    required: bool,
    sensitive: bool,
    choices: String,
}

#[derive(FromForm)]
pub struct CategoryEditForm {
    name: String,
    sensitivity: String,
    department: String,
    retention_years: i32,
    fields: Vec<FieldRow>,
    csrf: String,
}

csrf_field!(CategoryEditForm);

fn field_type(i: usize, v: &str) -> AppResult<FieldType> {
    serde_json::from_value(serde_json::Value::String(v.to_string()))
        .map_err(|_| AppError::invalid(format!("fields[{i}].type"), "unknown type"))
}

#[post("/categories/<id>", data = "<form>")]
async fn category_update(
    app: &State<App>,
    who: Principal,
    id: CategoryId,
    form: CsrfForm<CategoryEditForm>,
) -> AppResult<Page> {
    let f = form.0;
    let result = async {
        let mut fields = Vec::new();
        for (i, row) in f.fields.iter().enumerate() {
            if row.name.trim().is_empty() {
                continue;
            }
            let kind = field_type(i, &row.kind)?;
            let choices: Vec<String> = row
                .choices
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            fields.push(FieldDef {
                name: row.name.trim().to_string(),
                label: row.label.trim().to_string(),
                kind,
                required: row.required,
                sensitive: row.sensitive,
                choices: (kind == FieldType::Choice).then_some(choices),
                mask: None,
            });
        }
        categories::update(
            app,
            &who,
            id,
            CategoryChanges {
                name: Some(f.name.clone()),
                sensitivity: Some(sensitivity(&f.sensitivity)?),
                department: Some(f.department.clone()),
                retention_years: Some(f.retention_years),
                fields: Some(fields),
            },
        )
        .await
    }
    .await;
    redirect_or_show(
        result,
        |c| format!("/categories/{}", c.id),
        |msg| render_category(app, &who, id, Some(msg)),
    )
    .await
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

#[get("/search?<query..>")]
async fn search_page(
    app: &State<App>,
    who: Principal,
    query: SearchQuery,
    uri: &Origin<'_>,
) -> AppResult<Page> {
    let all = categories::list(app, &who).await?;
    let asked = uri.query().is_some_and(|q| !q.as_str().is_empty());
    let (result, error) = if asked {
        match search::search(app, &who, query.clone()).await {
            Ok(r) => (Some(r), None),
            Err(e) if is_invalid(&e) => (None, Some(e.public_message())),
            Err(e) => return Err(e),
        }
    } else {
        (None, None)
    };
    let page_url = |p: i64| {
        let mut q = query.clone();
        q.page = Some(p);
        format!("/search?{}", serde_urlencoded_like(&q))
    };
    let page = query.page.unwrap_or(1);
    let html = app.templates.render(
        "search.html",
        context! { me => me(&who), csrf => who.csrf_token(), categories => all, q => &query, result => result,
                   error => error.clone(), next_url => page_url(page + 1), prev_url => page_url((page - 1).max(1)) },
    )?;
    Ok(match error {
        Some(_) => Page::Status((rocket::http::Status::UnprocessableEntity, html)),
        None => Page::Html(html),
    })
}

/// The query string of a search, for the pagination links.
fn serde_urlencoded_like(q: &SearchQuery) -> String {
    let v = serde_json::to_value(q).unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(m) = v.as_object() {
        for (k, val) in m {
            let s = match val {
                serde_json::Value::String(s) if !s.is_empty() => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => continue,
            };
            parts.push(format!(
                "{k}={}",
                rocket::http::RawStr::new(&s).percent_encode()
            ));
        }
    }
    parts.join("&")
}
