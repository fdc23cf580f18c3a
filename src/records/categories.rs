//! The classification tree. Schema changes never invalidate existing records: a field's
//! type cannot change once it exists (add a new field instead), a field can be made
//! sensitive but never made not sensitive again (its existing values are sealed then: see
//! [`privacy`]), new fields
//! are optional for records filed before them, and a removed field's values stay in the
//! records and their history. Every schema a category has had is kept.

use std::collections::HashMap;

use serde_json::json;

use super::model::{Category, CategoryChanges, CategoryId, NewCategory};
use super::privacy::{self, Declared};
use super::repo;
use super::schema::{check_schema, FieldDef};
use sqlx::PgConnection;

use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{Action, ManageCategory, ReadCategory};
use crate::{unit, App};

/// All categories with their full paths. The tree is small (hundreds of nodes).
#[tracing::instrument(skip_all)]
pub async fn all(app: &App) -> AppResult<Vec<Category>> {
    unit!(app.db, |tx| Ok(with_paths(
        repo::all_categories(&mut tx).await?
    )))
}

fn with_paths(mut cats: Vec<Category>) -> Vec<Category> {
    let by_id: HashMap<CategoryId, (Option<CategoryId>, String)> = cats
        .iter()
        .map(|c| (c.id, (c.parent_id, c.name.clone())))
        .collect();
    for c in cats.iter_mut() {
        let mut parts = vec![c.name.clone()];
        let mut cur = c.parent_id;
        let mut guard = 0;
        while let Some(id) = cur {
            match by_id.get(&id) {
                Some((parent, name)) if guard < 64 => {
                    parts.push(name.clone());
                    cur = *parent;
                    guard += 1;
                }
                _ => break,
            }
        }
        parts.reverse();
        c.path = parts.join(" / ");
    }
    cats.sort_by(|a, b| a.path.cmp(&b.path));
    cats
}

/// [`all`] inside the caller's unit of work.
#[tracing::instrument(skip_all)]
pub(crate) async fn all_in(conn: &mut PgConnection) -> AppResult<Vec<Category>> {
    Ok(with_paths(repo::all_categories(conn).await?))
}

/// The category tree, for a person: `category.read` through the policy.
#[tracing::instrument(skip_all)]
pub async fn list(app: &App, who: &Principal) -> AppResult<Vec<Category>> {
    unit!(app.db, |tx| {
        tx.authorize::<ReadCategory>(&app.policies, who, None, None)?;
        Ok(with_paths(repo::all_categories(&mut tx).await?))
    })
}

/// One category, for a person.
#[tracing::instrument(skip_all, fields(category = %id))]
pub async fn get_for(app: &App, who: &Principal, id: CategoryId) -> AppResult<Category> {
    unit!(app.db, |tx| {
        let c = match repo::one_category(&mut tx, id).await? {
            Some(c) => c,
            None => {
                return Err(tx.not_found(who, ReadCategory::NAME, ("category", id.to_string())))
            }
        };
        tx.authorize::<ReadCategory>(
            &app.policies,
            who,
            Some(&c.resource().of(id.0)),
            Some(("category", id.to_string())),
        )?;
        Ok(c)
    })
}

/// One category (its path from a walk up its ancestors, not a read of the whole tree).
#[tracing::instrument(skip_all)]
pub async fn get(app: &App, id: CategoryId) -> AppResult<Category> {
    unit!(app.db, |tx| get_in(&mut tx, id).await)
}

/// [`get`] inside the caller's unit of work.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_in(conn: &mut PgConnection, id: CategoryId) -> AppResult<Category> {
    repo::one_category(conn, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// The ids of `root` and everything below it.
pub fn subtree(all: &[Category], root: CategoryId) -> Vec<CategoryId> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(
            all.iter()
                .filter(|c| c.parent_id == Some(cur))
                .map(|c| c.id),
        );
        i += 1;
    }
    out
}

fn check_common(name: &str, department: &str, retention_years: i32) -> AppResult<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(AppError::invalid("name", "must be 1 to 200 characters"));
    }
    if department.trim().is_empty() || department.chars().count() > 100 {
        return Err(AppError::invalid(
            "department",
            "must be 1 to 100 characters",
        ));
    }
    if !(0..=200).contains(&retention_years) {
        return Err(AppError::invalid(
            "retention_years",
            "must be between 0 and 200",
        ));
    }
    Ok(())
}

#[tracing::instrument(skip_all)]
pub async fn create(app: &App, who: &Principal, new: NewCategory) -> AppResult<Category> {
    create_declared(app, who, new, &[]).await
}

/// [`create`] with what the archivist said about each field's sensitivity (privacy by
/// default: see [`privacy`]).
#[tracing::instrument(skip_all)]
pub async fn create_declared(
    app: &App,
    who: &Principal,
    mut new: NewCategory,
    declared: &[Declared],
) -> AppResult<Category> {
    unit!(app.db, |tx| {
        tx.authorize::<ManageCategory>(&app.policies, who, None, None)?;
        Ok(())
    })?;
    new.code = new.code.trim().to_uppercase();
    let code_ok = (2..=12).contains(&new.code.len())
        && new.code.starts_with(|c: char| c.is_ascii_uppercase())
        && new
            .code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !code_ok {
        return Err(AppError::invalid(
            "code",
            "must be 2 to 12 letters and digits, starting with a letter",
        ));
    }
    check_common(&new.name, &new.department, new.retention_years)?;
    check_schema(&mut new.fields)?;
    privacy::apply_defaults(&mut new.fields, declared, None)?;
    unit!(app.db, |tx| {
        if let Some(parent) = new.parent_id {
            if !repo::category_exists(&mut tx, parent).await? {
                return Err(AppError::invalid("parent_id", "no such category"));
            }
        }
        let id = CategoryId(uuid::Uuid::new_v4());
        repo::insert_category(&mut tx, id, &new, who.user().id)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    AppError::Conflict(format!("a category with code {} already exists", new.code))
                }
                e => e.into(),
            })?;
        tx.audit(
            &who.actor(),
            Event::new("category.create", Outcome::Success)
                .object("category", id)
                .detail(json!({
                    "code": new.code, "name": new.name, "sensitivity": new.sensitivity,
                    "department": new.department, "review": new.review,
                    "fields": new.fields.iter().map(|f| &f.name).collect::<Vec<_>>(),
                    "sensitive_fields": new.fields.iter().filter(|f| f.sensitive).map(|f| &f.name).collect::<Vec<_>>(),
                })),
        )
        .await?;
        get_in(&mut tx, id).await
    })
}

#[tracing::instrument(skip_all)]
pub async fn update(
    app: &App,
    who: &Principal,
    id: CategoryId,
    changes: CategoryChanges,
) -> AppResult<Category> {
    update_declared(app, who, id, changes, &[]).await
}

/// [`update`] with what the archivist said about each field's sensitivity. A field made
/// sensitive has its existing values sealed in the same unit of work.
#[tracing::instrument(skip_all)]
pub async fn update_declared(
    app: &App,
    who: &Principal,
    id: CategoryId,
    changes: CategoryChanges,
    declared: &[Declared],
) -> AppResult<Category> {
    let current = unit!(app.db, |tx| {
        tx.authorize::<ManageCategory>(
            &app.policies,
            who,
            None,
            Some(("category", id.to_string())),
        )?;
        match repo::one_category(&mut tx, id).await? {
            Some(c) => Ok(c),
            None => Err(tx.not_found(who, ManageCategory::NAME, ("category", id.to_string()))),
        }
    })?;
    let name = changes.name.clone().unwrap_or_else(|| current.name.clone());
    let department = changes
        .department
        .clone()
        .unwrap_or_else(|| current.department.clone());
    let retention = changes.retention_years.unwrap_or(current.retention_years);
    check_common(&name, &department, retention)?;
    let sensitivity = changes.sensitivity.unwrap_or(current.sensitivity);
    let mut detail = json!({});
    let new_fields: Option<Vec<FieldDef>> = match changes.fields.clone() {
        None => None,
        Some(mut fields) => {
            check_schema(&mut fields)?;
            for (i, f) in fields.iter().enumerate() {
                if let Some(old) = current.field(&f.name) {
                    if old.kind != f.kind {
                        return Err(AppError::invalid(
                            format!("fields[{i}].type"),
                            format!(
                                "the type of existing field `{}` cannot change; add a new field instead",
                                f.name
                            ),
                        ));
                    }
                }
            }
            privacy::apply_defaults(&mut fields, declared, Some(&current))?;
            let added: Vec<&str> = fields
                .iter()
                .filter(|f| current.field(&f.name).is_none())
                .map(|f| f.name.as_str())
                .collect();
            let removed: Vec<&str> = current
                .fields
                .iter()
                .filter(|o| !fields.iter().any(|f| f.name == o.name))
                .map(|o| o.name.as_str())
                .collect();
            detail["fields_made_sensitive"] = json!(privacy::made_sensitive(&current, &fields)
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>());
            detail["fields_added"] = json!(added);
            detail["fields_removed"] = json!(removed);
            Some(fields)
        }
    };
    detail["name"] = json!(name);
    detail["sensitivity"] = json!(sensitivity);
    detail["department"] = json!(department);
    unit!(app.db, |tx| {
        repo::update_category(
            &mut tx,
            id,
            &name,
            sensitivity,
            &department,
            retention,
            new_fields.as_deref(),
            who.user().id,
        )
        .await?;
        if let Some(review) = changes.review.filter(|r| *r != current.review) {
            repo::set_review(&mut tx, id, review).await?;
            detail["review"] = json!(review);
        }
        if let Some(fields) = &new_fields {
            let made = privacy::made_sensitive(&current, fields);
            if !made.is_empty() {
                let sealed = privacy::seal_existing(&mut tx, app, id, &made).await?;
                detail["sealed_values"] = json!(sealed);
            }
        }
        tx.audit(
            &who.actor(),
            Event::new("category.update", Outcome::Success)
                .object("category", id)
                .detail(detail),
        )
        .await?;
        get_in(&mut tx, id).await
    })
}
