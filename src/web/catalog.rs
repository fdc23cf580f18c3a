//! HTML pages of the catalog: the category list and creation form, one category with its
//! field editor (privacy by default: a field that looks personal is sensitive unless the
//! archivist confirms otherwise), and the search page.

use minijinja::{context, Value};
use rocket::form::FromForm;
use rocket::http::uri::Origin;
use rocket::http::{CookieJar, Status};
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
use crate::policy::Sensitivity;
use crate::records::categories;
use crate::records::model::{Category, CategoryChanges, CategoryId, NewCategory};
use crate::records::privacy::{self, Declared};
use crate::records::schema::{FieldDef, FieldType};
use crate::records::search::{self, SearchQuery};
use crate::users::Role;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        categories_page,
        category_create,
        category_page,
        category_update,
        search_page,
    ]
}

const LEVELS: [&str; 4] = ["public", "internal", "confidential", "secret"];

const TYPES: [FieldType; 7] = [
    FieldType::Text,
    FieldType::Number,
    FieldType::Date,
    FieldType::Phone,
    FieldType::IdNumber,
    FieldType::Email,
    FieldType::Choice,
];

/// A refused form answers 422 (or 409 for a conflict) with the page.
fn refused_status(e: &AppError) -> Status {
    match e {
        AppError::Conflict(_) => Status::Conflict,
        _ => Status::UnprocessableEntity,
    }
}

fn is_invalid(e: &AppError) -> bool {
    matches!(e, AppError::Invalid { .. } | AppError::Conflict(_))
}

async fn render_categories(
    app: &App,
    who: &Principal,
    errors: &FormErrors,
    form: Value,
) -> AppResult<RawHtml<String>> {
    let list = categories::list(app, who).await?;
    app.templates.render(
        "categories.html",
        context! { me => me(who), csrf => who.csrf_token(), categories => list,
        can_manage => who.has_role(Role::Archivist), errors => errors, form => form,
        levels => LEVELS },
    )
}

#[get("/categories")]
async fn categories_page(app: &State<App>, who: Principal) -> AppResult<RawHtml<String>> {
    render_categories(
        app,
        &who,
        &FormErrors::default(),
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
    retention_years: String,
    review: bool,
    #[serde(skip)]
    csrf: String,
}

csrf_field!(CategoryForm);

fn sensitivity(v: &str) -> AppResult<Sensitivity> {
    Sensitivity::parse(v.trim()).ok_or_else(|| {
        AppError::invalid(
            "sensitivity",
            "must be public, internal, confidential or secret",
        )
    })
}

fn retention(v: &str) -> AppResult<i32> {
    v.trim()
        .parse()
        .map_err(|_| AppError::invalid("retention_years", "must be between 0 and 200"))
}

#[post("/categories", data = "<form>")]
async fn category_create(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
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
                retention_years: retention(&f.retention_years)?,
                fields: vec![],
                review: f.review,
            },
        )
        .await
    }
    .await;
    match result {
        Ok(c) => {
            flash::set(cookies, "flash-cat-created", &[("name", c.path.as_str())]);
            Ok(Page::Redirect(Box::new(Redirect::to(format!(
                "/categories/{}",
                c.id
            )))))
        }
        Err(e) if is_invalid(&e) => {
            let lang = who.ui().lang;
            let errors = match &e {
                // The one conflict of this form is a code already taken.
                AppError::Conflict(m) => {
                    let mut errors = FormErrors::default();
                    errors.add(lang, "code", m);
                    errors
                }
                e => FormErrors::from_error(lang, e, |f| f.to_string()),
            };
            let html = render_categories(app, &who, &errors, Value::from_serialize(&f)).await?;
            Ok(Page::Status((refused_status(&e), html)))
        }
        Err(e) => Err(e),
    }
}

/// One row of the field editor as the page shows it.
#[derive(Debug, Clone, Default, Serialize)]
struct Row {
    name: String,
    label: String,
    #[serde(rename = "type")]
    kind: String,
    required: bool,
    /// "" (not said: sensitive when it looks personal), "yes" or "no".
    sensitive: String,
    confirm_not_sensitive: bool,
    choices: String,
    /// An existing field of the category (its type cannot change).
    existing: bool,
    /// Whether it is sensitive now (existing fields).
    was_sensitive: bool,
    /// What kind of personal data it looks like it holds, if any.
    personal: Option<&'static str>,
}

impl Row {
    fn of(def: &FieldDef) -> Row {
        Row {
            name: def.name.clone(),
            label: def.label.clone(),
            kind: def.kind.as_str().to_string(),
            required: def.required,
            sensitive: if def.sensitive { "yes" } else { "no" }.to_string(),
            confirm_not_sensitive: false,
            choices: def.choices.clone().unwrap_or_default().join(", "),
            existing: true,
            was_sensitive: def.sensitive,
            personal: privacy::looks_personal(def).map(|p| p.as_str()),
        }
    }

    fn blank() -> Row {
        Row {
            kind: "text".into(),
            ..Row::default()
        }
    }
}

/// What was typed into the category form, shown again with its errors.
#[derive(Debug, Default, Serialize)]
struct Shown {
    name: String,
    sensitivity: String,
    department: String,
    retention_years: String,
    review: bool,
}

async fn render_category(
    app: &App,
    who: &Principal,
    category: &Category,
    shown: Option<(Shown, Vec<Row>)>,
    errors: &FormErrors,
) -> AppResult<RawHtml<String>> {
    let (form, rows) = match shown {
        Some(s) => s,
        None => {
            let mut rows: Vec<Row> = category.fields.iter().map(Row::of).collect();
            rows.extend((0..3).map(|_| Row::blank()));
            (
                Shown {
                    name: category.name.clone(),
                    sensitivity: category.sensitivity.as_str().to_string(),
                    department: category.department.clone(),
                    retention_years: category.retention_years.to_string(),
                    review: category.review,
                },
                rows,
            )
        }
    };
    let types: Vec<&str> = TYPES.iter().map(|t| t.as_str()).collect();
    let plain_personal: Vec<&str> = category
        .fields
        .iter()
        .filter(|f| !f.sensitive && privacy::looks_personal(f).is_some())
        .map(|f| f.label())
        .collect();
    app.templates.render(
        "category.html",
        context! { me => me(who), csrf => who.csrf_token(), category => category, rows => rows,
        types => types, levels => LEVELS, form => form, errors => errors,
        plain_personal => plain_personal,
        can_manage => who.has_role(Role::Archivist) },
    )
}

#[get("/categories/<id>")]
async fn category_page(
    app: &State<App>,
    who: Principal,
    id: CategoryId,
) -> AppResult<RawHtml<String>> {
    let category = categories::get_for(app, &who, id).await?;
    render_category(app, &who, &category, None, &FormErrors::default()).await
}

#[derive(FromForm)]
pub struct FieldRow {
    name: String,
    #[field(default = String::new())]
    label: String,
    #[field(name = "type")]
    kind: String,
    required: bool,
    #[field(default = String::new())]
    sensitive: String,
    confirm_not_sensitive: bool,
    #[field(default = String::new())]
    choices: String,
}

#[derive(FromForm)]
pub struct CategoryEditForm {
    name: String,
    sensitivity: String,
    department: String,
    retention_years: String,
    review: bool,
    fields: Vec<FieldRow>,
    csrf: String,
}

csrf_field!(CategoryEditForm);

fn field_type(row: usize, v: &str) -> AppResult<FieldType> {
    serde_json::from_value(serde_json::Value::String(v.trim().to_string()))
        .map_err(|_| AppError::invalid(format!("fields[{row}].type"), "unknown type"))
}

fn declared(row: usize, f: &FieldRow) -> AppResult<Declared> {
    let sensitive = match f.sensitive.trim() {
        "" => None,
        "yes" => Some(true),
        "no" => Some(false),
        _ => {
            return Err(AppError::invalid(
                format!("fields[{row}].sensitive"),
                "choose sensitive or not sensitive",
            ))
        }
    };
    Ok(Declared {
        sensitive,
        confirm_not_sensitive: f.confirm_not_sensitive,
    })
}

/// `fields[k].x` of the service (k counts the rows with a name) as the form's
/// `fields[row].x`.
fn form_field(rows: &[usize], field: &str) -> String {
    let Some(rest) = field.strip_prefix("fields[") else {
        return field.to_string();
    };
    let Some((k, tail)) = rest.split_once(']') else {
        return field.to_string();
    };
    match k.parse::<usize>().ok().and_then(|k| rows.get(k)) {
        Some(row) => format!("fields[{row}]{tail}"),
        None => field.to_string(),
    }
}

#[post("/categories/<id>", data = "<form>")]
async fn category_update(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    id: CategoryId,
    form: CsrfForm<CategoryEditForm>,
) -> AppResult<Page> {
    let f = form.0;
    let category = categories::get_for(app, &who, id).await?;
    // Form row of each field handed to the service.
    let mut rows_used: Vec<usize> = Vec::new();
    let result = async {
        let mut fields = Vec::new();
        let mut said = Vec::new();
        for (i, row) in f.fields.iter().enumerate() {
            if row.name.trim().is_empty() {
                continue;
            }
            let kind = field_type(i, &row.kind)?;
            let choices: Vec<String> = row
                .choices
                .split([',', '，'])
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            let d = declared(i, row)?;
            let old = category.field(row.name.trim());
            fields.push(FieldDef {
                name: row.name.trim().to_string(),
                label: row.label.trim().to_string(),
                kind,
                required: row.required,
                sensitive: d.sensitive.unwrap_or(false),
                choices: (kind == FieldType::Choice).then_some(choices),
                // An existing field keeps how it is masked.
                mask: old.and_then(|o| o.mask),
            });
            said.push(d);
            rows_used.push(i);
        }
        categories::update_declared(
            app,
            &who,
            id,
            CategoryChanges {
                name: Some(f.name.clone()),
                sensitivity: Some(sensitivity(&f.sensitivity)?),
                department: Some(f.department.clone()),
                retention_years: Some(retention(&f.retention_years)?),
                fields: Some(fields),
                review: Some(f.review),
            },
            &said,
        )
        .await
    }
    .await;
    match result {
        Ok(c) => {
            flash::set(cookies, "flash-cat-saved", &[("name", c.path.as_str())]);
            Ok(Page::Redirect(Box::new(Redirect::to(format!(
                "/categories/{}",
                c.id
            )))))
        }
        Err(e) if is_invalid(&e) => {
            let errors =
                FormErrors::from_error(who.ui().lang, &e, |name| form_field(&rows_used, name));
            let rows = f
                .fields
                .iter()
                .map(|r| {
                    let old = category.field(r.name.trim());
                    let probe = FieldDef {
                        name: r.name.trim().to_string(),
                        label: r.label.trim().to_string(),
                        kind: field_type(0, &r.kind).unwrap_or(FieldType::Text),
                        required: false,
                        sensitive: false,
                        choices: None,
                        mask: None,
                    };
                    Row {
                        name: r.name.clone(),
                        label: r.label.clone(),
                        kind: r.kind.clone(),
                        required: r.required,
                        sensitive: r.sensitive.clone(),
                        confirm_not_sensitive: r.confirm_not_sensitive,
                        choices: r.choices.clone(),
                        existing: old.is_some(),
                        was_sensitive: old.is_some_and(|o| o.sensitive),
                        personal: (!r.name.trim().is_empty())
                            .then(|| privacy::looks_personal(&probe).map(|p| p.as_str()))
                            .flatten(),
                    }
                })
                .collect();
            let shown = Shown {
                name: f.name.clone(),
                sensitivity: f.sensitivity.clone(),
                department: f.department.clone(),
                retention_years: f.retention_years.clone(),
                review: f.review,
            };
            let html = render_category(app, &who, &category, Some((shown, rows)), &errors).await?;
            Ok(Page::Status((refused_status(&e), html)))
        }
        Err(e) => Err(e),
    }
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
    let lang = who.ui().lang;
    let (result, errors, status) = if asked {
        match search::search(app, &who, query.clone()).await {
            Ok(r) => (Some(r), FormErrors::default(), None),
            Err(e) if is_invalid(&e) => (
                None,
                FormErrors::from_error(lang, &e, |f| f.to_string()),
                Some(refused_status(&e)),
            ),
            Err(e) => return Err(e),
        }
    } else {
        (None, FormErrors::default(), None)
    };
    let page_url = |p: i64| {
        let mut q = query.clone();
        q.page = Some(p);
        format!("/search?{}", query_string(&q))
    };
    let page = query.page.unwrap_or(1).max(1);
    // Which hits this page shows, counted over the whole result (1-based).
    let (first, last) = match &result {
        Some(r) if !r.hits.is_empty() => {
            let first = (r.page - 1) * r.per_page + 1;
            (first, first + r.hits.len() as i64 - 1)
        }
        _ => (0, 0),
    };
    let html = app.templates.render(
        "search.html",
        context! { me => me(&who), csrf => who.csrf_token(), categories => all, q => &query,
        result => result, errors => errors, first => first, last => last,
        next_url => page_url(page + 1), prev_url => page_url((page - 1).max(1)) },
    )?;
    Ok(match status {
        Some(s) => Page::Status((s, html)),
        None => Page::Html(html),
    })
}

/// The query string of a search, for the pagination links.
fn query_string(q: &SearchQuery) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_field_names_map_to_form_rows() {
        let rows = [0, 2, 5];
        assert_eq!(
            form_field(&rows, "fields[1].sensitive"),
            "fields[2].sensitive"
        );
        assert_eq!(form_field(&rows, "fields[2].name"), "fields[5].name");
        assert_eq!(form_field(&rows, "fields[9].name"), "fields[9].name");
        assert_eq!(form_field(&rows, "department"), "department");
    }
}
