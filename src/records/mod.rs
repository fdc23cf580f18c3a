//! Records: filing, correction with revisions, the physical register, search and files.
//!
//! Guarantees: every action passes `app.policies.authorize`; sensitive values (and every phone
//! and ID number) are stored only as AES-256-GCM ciphertext with a keyed blind index for
//! exact search; records leave the server only as masked `RecordView`s; every create,
//! update, upload, search and refused access is audited in the transaction that does it,
//! without sensitive values; records are never deleted here.

pub mod categories;
pub mod files;
pub mod import;
pub mod masking;
pub mod model;
pub mod register;
mod repo;
pub mod schema;
pub mod search;
pub mod view;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sqlx::PgConnection;

use self::model::{Category, NewRecord, Record, RecordChanges, RecordId, RecordView, Revision};
use self::schema::{check_all, check_value, Checked, FieldDef, FieldType};
use crate::audit::{self, Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{Action, EditRecord, FileRecord, GrantState, Permit, ReadRecord};
use crate::App;

/// Whether values of this field are sealed (encrypted, blind-indexed). Phone and ID numbers
/// are always sealed, whatever the mask says, because they identify people.
pub(crate) fn sealed(def: &FieldDef) -> bool {
    def.sensitive || matches!(def.kind, FieldType::Phone | FieldType::IdNumber)
}

/// The blind-index domain of a field: values are comparable across fields of one type.
pub(crate) fn index_domain(def: &FieldDef) -> Option<&'static str> {
    match def.kind {
        FieldType::Phone => Some("phone"),
        FieldType::IdNumber => Some("id_number"),
        FieldType::Email if def.sensitive => Some("email"),
        _ => None,
    }
}

fn search_text(title: &str, reference: &str, plain: &Map<String, Value>) -> String {
    let mut s = format!("{title} {reference}");
    for v in plain.values() {
        if let Some(t) = v.as_str() {
            s.push(' ');
            s.push_str(t);
        }
    }
    s
}

fn check_title(title: &str) -> AppResult<String> {
    let t = title.trim();
    if t.is_empty() || t.chars().count() > 500 {
        return Err(AppError::invalid("title", "must be 1 to 500 characters"));
    }
    Ok(t.to_string())
}

/// Loads a record and its category and checks `A` on it. A refused or missing record is
/// audited (without values) before the error is returned.
pub(crate) async fn load_for<A: Action>(
    app: &App,
    who: &Principal,
    id: RecordId,
) -> AppResult<(Permit<A>, Record, Category)> {
    load_with::<A>(app, who, id, GrantState::None).await
}

/// [`load_for`] for an action taken under a grant: the policy is told the grant's state
/// (`Active` only while it is valid and not revoked).
pub(crate) async fn load_with<A: Action>(
    app: &App,
    who: &Principal,
    id: RecordId,
    grant: GrantState,
) -> AppResult<(Permit<A>, Record, Category)> {
    let record = {
        let mut conn = app.db.acquire().await?;
        repo::find_record(&mut conn, id).await?
    };
    let Some(record) = record else {
        audit_refusal::<A>(app, who, id, "not_found").await?;
        return Err(AppError::NotFound);
    };
    let category = categories::get(app, record.category_id).await?;
    match app
        .policies
        .authorize::<A>(who, Some(&category.resource().with_grant(grant)))
    {
        Ok(p) => Ok((p, record, category)),
        Err(e) => {
            audit_refusal::<A>(app, who, id, "denied").await?;
            Err(e)
        }
    }
}

async fn audit_refusal<A: Action>(
    app: &App,
    who: &Principal,
    id: RecordId,
    why: &str,
) -> AppResult<()> {
    audit::record_alone(
        &app.db,
        &who.actor(),
        Event::new(A::NAME, Outcome::Denied)
            .object("record", id)
            .detail(json!({ "reason": why })),
    )
    .await
}

/// Writes the sealed values of `checked` (the fields that are sealed) for a record.
async fn seal_values(
    conn: &mut PgConnection,
    app: &App,
    record: RecordId,
    category: &Category,
    checked: &BTreeMap<String, Checked>,
) -> AppResult<()> {
    for (name, c) in checked {
        let Some(def) = category.field(name) else {
            continue;
        };
        if !sealed(def) {
            continue;
        }
        let (kek_id, ct) = app.keys.encrypt_field(record.0, name, &c.value);
        let index = match (index_domain(def), &c.index_form) {
            (Some(domain), Some(form)) => Some(app.keys.blind_index(domain, form)),
            _ => None,
        };
        repo::upsert_sealed(conn, record, name, &ct, &kek_id, index.as_deref()).await?;
    }
    Ok(())
}

fn plain_values(category: &Category, checked: &BTreeMap<String, Checked>) -> Map<String, Value> {
    checked
        .iter()
        .filter(|(name, _)| category.field(name).is_some_and(|d| !sealed(d)))
        .map(|(name, c)| (name.clone(), Value::String(c.value.clone())))
        .collect()
}

pub async fn create(app: &App, who: &Principal, new: NewRecord) -> AppResult<RecordView> {
    app.policies.authorize::<FileRecord>(who, None)?;
    let category = categories::get(app, new.category_id)
        .await
        .map_err(|_| AppError::invalid("category_id", "no such category"))?;
    let title = check_title(&new.title)?;
    let checked = check_all(&category.fields, &new.fields)?;
    let mut tx = app.db.begin().await?;
    let id = create_in(&mut tx, app, who, &category, &title, &checked, &new).await?;
    tx.commit().await?;
    get(app, who, id).await
}

/// Files one record inside the caller's transaction (also used by the bulk import).
pub(crate) async fn create_in(
    tx: &mut PgConnection,
    app: &App,
    who: &Principal,
    category: &Category,
    title: &str,
    checked: &BTreeMap<String, Checked>,
    new: &NewRecord,
) -> AppResult<RecordId> {
    let box_id = match &new.physical {
        Some(loc) => Some(register::find_box(tx, loc).await?),
        None => None,
    };
    let year = chrono::Utc::now().format("%Y").to_string();
    let seq = repo::next_reference(tx, category.id, year.parse().unwrap_or(2026)).await?;
    let reference = format!("{}-{}-{:06}", category.code, year, seq);
    let plain = plain_values(category, checked);
    let id = RecordId(uuid::Uuid::new_v4());
    repo::insert_record(
        tx,
        &repo::NewRow {
            id,
            category_id: category.id,
            reference: &reference,
            title,
            fields: Value::Object(plain.clone()),
            search_text: &search_text(title, &reference, &plain),
            schema_version: category.schema_version,
            author: who.user().id,
            external_id: new.external_id.as_deref(),
        },
    )
    .await?;
    seal_values(tx, app, id, category, checked).await?;
    if let Some(b) = box_id {
        register::place(tx, who, id, b).await?;
    }
    audit::record(
        tx,
        &who.actor(),
        Event::new("record.create", Outcome::Success)
            .object("record", id)
            .detail(json!({
                "reference": reference,
                "category": category.code,
                "fields": checked.keys().collect::<Vec<_>>(),
                "physical": new.physical.is_some(),
                "external_id": new.external_id,
            })),
    )
    .await?;
    Ok(id)
}

/// A record: masked, or unmasked while the caller holds an active lookup or view grant on
/// it. An unmasked read is audited (which record, which fields, under which grant; never
/// the values) before it is returned: if that fails, nothing is shown.
pub async fn get(app: &App, who: &Principal, id: RecordId) -> AppResult<RecordView> {
    let (permit, record, category) = load_for::<ReadRecord>(app, who, id).await?;
    let grant = {
        let mut conn = app.db.acquire().await?;
        crate::requests::active_grant(
            &mut conn,
            who,
            id,
            &[crate::requests::Kind::Lookup, crate::requests::Kind::View],
        )
        .await?
    };
    // The grant is found by the workflow; whether it unmasks is the policy's decision.
    let grant = grant.filter(|_| {
        let r = category
            .resource()
            .with_grant(crate::policy::GrantState::Active);
        app.policies
            .authorize::<crate::policy::UnmaskWithGrant>(who, Some(&r))
            .is_ok()
    });
    let view = view_of(app, who, &permit, &record, &category, grant.is_some()).await?;
    let fields = view.unmasked();
    if !fields.is_empty() {
        // Shown unmasked under a grant, or by a `none` rule of the masking policy.
        let (grant_id, kind) = match &grant {
            Some(g) => (Some(g.id), g.kind.as_str()),
            None => (None, "masking policy"),
        };
        audit::record_alone(
            &app.db,
            &who.actor(),
            Event::new("record.unmask", Outcome::Success)
                .object("record", id)
                .detail(json!({"grant": grant_id, "kind": kind, "reference": record.reference, "fields": fields})),
        )
        .await?;
    }
    Ok(view)
}

async fn view_of(
    app: &App,
    who: &Principal,
    _permit: &Permit<ReadRecord>,
    record: &Record,
    category: &Category,
    unmask: bool,
) -> AppResult<RecordView> {
    let mut conn = app.db.acquire().await?;
    let sealed = repo::sealed_values(&mut conn, record.id).await?;
    let physical = repo::physical(&mut conn, record.id).await?;
    let how = masking::Unmask {
        policy: &app.masking,
        roles: &who.user().roles,
        grant: unmask,
    };
    Ok(view::make(
        &app.keys, category, record, &sealed, physical, &how,
    ))
}

pub async fn update(
    app: &App,
    who: &Principal,
    id: RecordId,
    changes: RecordChanges,
) -> AppResult<RecordView> {
    let reason = changes.reason.trim().to_string();
    if reason.chars().count() < 5 || reason.chars().count() > 1000 {
        return Err(AppError::invalid(
            "reason",
            "must say why, in 5 to 1000 characters",
        ));
    }
    let (_permit, _, category) = load_for::<EditRecord>(app, who, id).await?;
    let mut tx = app.db.begin().await?;
    let record = repo::lock_record(&mut tx, id).await?;
    let old_sealed = repo::sealed_values(&mut tx, id).await?;
    let title = match &changes.title {
        Some(t) => check_title(t)?,
        None => record.title.clone(),
    };
    let mut plain = record.fields.as_object().cloned().unwrap_or_default();
    let mut to_seal = BTreeMap::new();
    let mut unseal = Vec::new();
    let mut change_list = Vec::new();
    if title != record.title {
        change_list.push(json!({"field": "title", "change": "changed", "sensitive": false, "from": record.title, "to": title}));
    }
    for (name, value) in &changes.fields {
        let had_plain = plain.get(name).cloned();
        let had_sealed = old_sealed.iter().any(|s| &s.field == name);
        let def = category.field(name);
        let removing = value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty());
        if removing {
            if def.is_some_and(|d| d.required) {
                return Err(AppError::invalid(
                    name.as_str(),
                    "is required and cannot be removed",
                ));
            }
            if had_plain.is_none() && !had_sealed {
                continue;
            }
            let sensitive = had_sealed && def.is_none_or(|d| d.sensitive);
            let mut c = json!({"field": name, "change": "removed", "sensitive": sensitive});
            if let Some(old) = plain.remove(name) {
                c["from"] = old;
            }
            if had_sealed {
                unseal.push(name.clone());
            }
            change_list.push(c);
            continue;
        }
        let Some(def) = def else {
            return Err(AppError::invalid(
                name.as_str(),
                "is not a field of this category",
            ));
        };
        let checked = check_value(def, value)?;
        if sealed(def) {
            let same = old_sealed
                .iter()
                .find(|s| &s.field == name)
                .is_some_and(|s| {
                    app.keys
                        .decrypt_field(id.0, name, &s.kek_id, &s.ciphertext)
                        .is_ok_and(|p| *p == checked.value)
                });
            if same {
                continue;
            }
            change_list.push(json!({"field": name, "change": if had_sealed {"changed"} else {"added"}, "sensitive": def.sensitive}));
            to_seal.insert(name.clone(), checked);
        } else {
            let new_v = Value::String(checked.value.clone());
            if had_plain.as_ref() == Some(&new_v) {
                continue;
            }
            change_list.push(json!({"field": name, "change": if had_plain.is_some() {"changed"} else {"added"}, "sensitive": false, "from": had_plain, "to": new_v}));
            plain.insert(name.clone(), new_v);
        }
    }
    if change_list.is_empty() {
        return Err(AppError::invalid("fields", "nothing would change"));
    }
    let new_revision = record.revision + 1;
    let changed_sealed: Vec<&str> = to_seal
        .keys()
        .map(String::as_str)
        .chain(unseal.iter().map(String::as_str))
        .collect();
    repo::insert_revision(
        &mut tx,
        &repo::RevisionRow {
            record_id: id,
            revision: new_revision,
            author_id: who.user().id,
            author: &who.user().username,
            reason: &reason,
            changes: Value::Array(change_list.clone()),
            previous_title: &record.title,
            previous_fields: &record.fields,
        },
    )
    .await?;
    for s in old_sealed
        .iter()
        .filter(|s| changed_sealed.contains(&s.field.as_str()))
    {
        repo::keep_sealed_in_revision(&mut tx, id, new_revision, s).await?;
    }
    for name in &unseal {
        repo::delete_sealed(&mut tx, id, name).await?;
    }
    seal_values(&mut tx, app, id, &category, &to_seal).await?;
    let text = search_text(&title, &record.reference, &plain);
    repo::update_record(
        &mut tx,
        id,
        &title,
        &Value::Object(plain),
        &text,
        new_revision,
        who.user().id,
    )
    .await?;
    audit::record(
        &mut tx,
        &who.actor(),
        Event::new("record.update", Outcome::Success)
            .object("record", id)
            .detail(json!({
                "reference": record.reference,
                "revision": new_revision,
                "reason": reason,
                "fields": change_list.iter().map(|c| c["field"].clone()).collect::<Vec<_>>(),
            })),
    )
    .await?;
    tx.commit().await?;
    get(app, who, id).await
}

/// The revisions of a record: who changed what, when and why. Values of sensitive fields
/// never appear; non-sensitive ones show as they were and became.
pub async fn revisions(app: &App, who: &Principal, id: RecordId) -> AppResult<Vec<Revision>> {
    let (_permit, record, _) = load_for::<ReadRecord>(app, who, id).await?;
    let mut conn = app.db.acquire().await?;
    let mut list = repo::revisions(&mut conn, id).await?;
    let created = repo::creation(&mut conn, id).await?;
    list.insert(
        0,
        Revision {
            revision: 1,
            author: created.0,
            created_at: record.created_at,
            reason: "filed".into(),
            changes: json!([]),
        },
    );
    Ok(list)
}
