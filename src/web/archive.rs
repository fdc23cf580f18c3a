//! HTML pages of the archive: categories and their field editor, and search. The filing
//! form and the record page are in `record.rs`.

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
use crate::records::categories;
use crate::records::model::{CategoryChanges, CategoryId, NewCategory};
use crate::records::schema::{FieldDef, FieldType};
use crate::records::search::{self, SearchQuery};
use crate::users::Role;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        upload_js,
        categories_page,
        category_create,
        category_page,
        category_update,
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
