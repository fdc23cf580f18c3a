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
pub mod phones;
pub mod privacy;
pub mod register;
mod repo;
pub mod review;
pub mod schema;
pub mod search;
pub mod view;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sqlx::PgConnection;

use self::model::{Category, NewRecord, Record, RecordChanges, RecordId, RecordView, Revision};
use self::schema::{check_all, check_value, Checked, FieldDef, FieldType};
use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::grants::{self, HeldGrant, Kind};
use crate::policy::{Action, EditRecord, FileRecord, GrantState, Permit, ReadRecord};
use crate::tx::Tx;
use crate::{unit, App};

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

/// Text as compared by [`title_reveals`]: full-width forms folded to their ASCII letters
/// and digits (a Chinese input method types `１３８`), lower case, letters and digits only
/// (so `张-三-丰` and `138 1234 5678` compare as `张三丰` and `13812345678`).
fn squeezed(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Refuses a title that contains the value of a sealed (masked) field: the title is shown
/// unmasked to everyone who may see the record, so the customer's name or phone number in
/// it would defeat the field's mask. Compared as [`squeezed`]: without case, spaces,
/// punctuation or separators, full-width digits as digits. Values shorter than two
/// characters are not compared. `sealed_values` maps field names to their plain values.
pub(crate) fn title_reveals(
    category: &Category,
    title: &str,
    sealed_values: &BTreeMap<String, String>,
) -> AppResult<()> {
    let plain_title = squeezed(title);
    for def in category.fields.iter().filter(|d| sealed(d)) {
        let Some(v) = sealed_values.get(&def.name) else {
            continue;
        };
        let value = squeezed(v);
        if value.chars().count() >= 2 && plain_title.contains(&value) {
            return Err(AppError::invalid(
                "title",
                format!(
                    "contains the value of the sensitive field {}, which would defeat its mask",
                    def.label()
                ),
            ));
        }
    }
    Ok(())
}

/// Loads a record and its category and checks `A` on it. A refused or missing record is
/// audited (without values); the permit is bound to the record.
#[tracing::instrument(skip_all)]
pub(crate) async fn load_for<A: Action>(
    app: &App,
    who: &Principal,
    id: RecordId,
) -> AppResult<(Permit<A>, Record, Category)> {
    load_with::<A>(app, who, id, GrantState::None).await
}

/// [`load_for`] for an action taken under a grant: the policy is told the grant's state
/// (`Active` only while it is valid and not revoked).
#[tracing::instrument(skip_all)]
pub(crate) async fn load_with<A: Action>(
    app: &App,
    who: &Principal,
    id: RecordId,
    grant: GrantState,
) -> AppResult<(Permit<A>, Record, Category)> {
    unit!(app.db, |tx| load_in::<A>(&mut tx, app, who, id, grant)
        .await)
}

/// [`load_with`] inside the caller's unit of work.
#[tracing::instrument(skip_all)]
pub(crate) async fn load_in<A: Action>(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    id: RecordId,
    grant: GrantState,
) -> AppResult<(Permit<A>, Record, Category)> {
    let Some(record) = repo::find_record(tx, id).await? else {
        tx.refuse(
            &who.actor(),
            Event::new(A::NAME, Outcome::Denied)
                .object("record", id)
                .detail(json!({ "reason": "not_found" })),
        );
        return Err(AppError::NotFound);
    };
    let category = categories::get_in(tx, record.category_id).await?;
    let permit = tx.authorize::<A>(
        &app.policies,
        who,
        Some(&category.resource().of(id.0).with_grant(grant)),
        Some(("record", id.to_string())),
    )?;
    Ok((permit, record, category))
}

/// The category of record `record` (for actions decided on a record found through another
/// object, such as a loan's request).
#[tracing::instrument(skip_all)]
pub(crate) async fn category_of_record(
    conn: &mut PgConnection,
    record: uuid::Uuid,
) -> AppResult<Category> {
    let r = repo::find_record(&mut *conn, RecordId(record))
        .await?
        .ok_or(AppError::NotFound)?;
    categories::get_in(conn, r.category_id).await
}

/// Uses grant `grant_id` of kind `kind` held by `who` for action A on the grant's record:
/// the access policy decides A with the grant's state as of now, so A is refused the
/// moment the grant expires or is revoked. Someone else's grant, or a grant of another
/// kind, is `NotFound` (and audited as a refusal).
#[tracing::instrument(skip_all, fields(grant = %grant_id))]
pub(crate) async fn under_grant<A: Action>(
    app: &App,
    who: &Principal,
    grant_id: uuid::Uuid,
    kind: Kind,
) -> AppResult<(Permit<A>, HeldGrant, Record, Category)> {
    unit!(app.db, |tx| {
        let Some(held) = grants::find_held(&mut tx, who, grant_id, kind).await? else {
            tx.refuse(
                &who.actor(),
                Event::new(A::NAME, Outcome::Denied)
                    .object("grant", grant_id)
                    .detail(json!({"reason": "not the caller's grant of this kind"})),
            );
            return Err(AppError::NotFound);
        };
        let (permit, record, category) =
            load_in::<A>(&mut tx, app, who, held.record_id, held.grant_state()).await?;
        Ok((permit, held, record, category))
    })
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

/// Files a record. In a category under review the filing is checked exactly as if it
/// took effect (inside a savepoint that is then rolled back) and kept as a proposal
/// instead, for a second person to approve ([`review`]).
#[tracing::instrument(skip_all)]
pub async fn create(app: &App, who: &Principal, new: NewRecord) -> AppResult<Filed> {
    let title = check_title(&new.title)?;
    let filed = unit!(app.db, |tx| {
        tx.authorize::<FileRecord>(&app.policies, who, None, None)?;
        let category = match categories::get_in(&mut tx, new.category_id).await {
            Ok(c) => c,
            Err(AppError::NotFound) => {
                return Err(AppError::invalid("category_id", "no such category"))
            }
            Err(e) => return Err(e),
        };
        let checked = check_all(&category.fields, &new.fields)?;
        if !new.allow_title_with_sensitive {
            let values = checked
                .iter()
                .map(|(k, c)| (k.clone(), c.value.clone()))
                .collect();
            title_reveals(&category, &title, &values)?;
        }
        if !category.review {
            let id = create_in(&mut tx, app, who, &category, &title, &checked, &new).await?;
            return Ok(Err(id));
        }
        review::savepoint(&mut tx).await?;
        create_in(&mut tx, app, who, &category, &title, &checked, &new).await?;
        review::rollback_to_savepoint(&mut tx).await?;
        let p =
            review::propose_create(&mut tx, app, who, &category, &title, &checked, &new).await?;
        Ok(Ok(p))
    })?;
    match filed {
        Ok(p) => Ok(Filed::Proposed(p)),
        Err(id) => Ok(Filed::Now(get(app, who, id).await?)),
    }
}

/// What filing or correcting did: took effect at once, or waits for review.
#[derive(Debug, Clone)]
pub enum Filed {
    Now(RecordView),
    Proposed(review::Proposal),
}

/// Files one record inside the caller's transaction (also used by the bulk import).
#[tracing::instrument(skip_all)]
pub(crate) async fn create_in(
    tx: &mut Tx,
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
    tx.audit(
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
/// the values) in the same unit of work: if that fails, nothing is shown.
#[tracing::instrument(skip_all, fields(record = %id))]
pub async fn get(app: &App, who: &Principal, id: RecordId) -> AppResult<RecordView> {
    unit!(app.db, |tx| get_in(&mut tx, app, who, id).await)
}

/// [`get`] inside the caller's unit of work.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_in(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    id: RecordId,
) -> AppResult<RecordView> {
    let (permit, record, category) =
        load_in::<ReadRecord>(tx, app, who, id, GrantState::None).await?;
    shown(tx, app, who, &permit, &record, &category).await
}

/// The record a permit was issued for, as `who` may see it (audited if unmasked).
#[tracing::instrument(skip_all)]
pub(crate) async fn shown(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    permit: &Permit<ReadRecord>,
    record: &Record,
    category: &Category,
) -> AppResult<RecordView> {
    let id = record.id;
    let grant = grants::active_grant(tx, who, id, &[Kind::Lookup, Kind::View]).await?;
    // The grant is found by the workflow; whether it unmasks is the policy's decision.
    let grant = grant.filter(|_| {
        let r = category.resource().of(id.0).with_grant(GrantState::Active);
        app.policies
            .allows::<crate::policy::UnmaskWithGrant>(who, &r)
    });
    let view = view_in(tx, app, who, permit, record, category, grant.is_some()).await?;
    let fields = view.unmasked();
    if !fields.is_empty() {
        // Shown unmasked under a grant, or by a `none` rule of the masking policy.
        let (grant_id, kind) = match &grant {
            Some(g) => (Some(g.id), g.kind.as_str()),
            None => (None, "masking policy"),
        };
        tx.audit(
            &who.actor(),
            Event::new("record.unmask", Outcome::Success)
                .object("record", id)
                .detail(json!({"grant": grant_id, "kind": kind, "reference": record.reference, "fields": fields})),
        )
        .await?;
    }
    Ok(view)
}

async fn view_in(
    conn: &mut PgConnection,
    app: &App,
    who: &Principal,
    permit: &Permit<ReadRecord>,
    record: &Record,
    category: &Category,
    unmask: bool,
) -> AppResult<RecordView> {
    if permit.object() != Some(record.id.0) {
        return Err(AppError::internal("a permit for another record"));
    }
    let sealed = repo::sealed_values(&mut *conn, record.id).await?;
    let physical = repo::physical(&mut *conn, record.id).await?;
    let how = masking::Unmask {
        policy: &app.masking,
        roles: &who.user().roles,
        grant: unmask,
    };
    Ok(view::make(
        &app.keys, category, record, &sealed, physical, &how,
    ))
}

#[tracing::instrument(skip_all)]
pub async fn update(
    app: &App,
    who: &Principal,
    id: RecordId,
    changes: RecordChanges,
) -> AppResult<Filed> {
    let reason = changes.reason.trim().to_string();
    if reason.chars().count() < 5 || reason.chars().count() > 1000 {
        return Err(AppError::invalid(
            "reason",
            "must say why, in 5 to 1000 characters",
        ));
    }
    let proposed = unit!(app.db, |tx| {
        review::savepoint(&mut tx).await?;
        let (_, category) = update_in::<EditRecord>(&mut tx, app, who, id, &changes).await?;
        if !category.review {
            return Ok(None);
        }
        review::rollback_to_savepoint(&mut tx).await?;
        Ok(Some(
            review::propose_update(&mut tx, app, who, &category, id, &changes).await?,
        ))
    })?;
    match proposed {
        Some(p) => Ok(Filed::Proposed(p)),
        None => Ok(Filed::Now(get(app, who, id).await?)),
    }
}

/// A correction inside the caller's unit of work, authorized as action A (`EditRecord`
/// for the archivist correcting; `ReviewChange` for the reviewer applying a proposal).
/// Returns the new revision and the record's category.
pub(crate) async fn update_in<A: Action>(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    id: RecordId,
    changes: &RecordChanges,
) -> AppResult<(i32, Category)> {
    let reason = changes.reason.trim().to_string();
    let (_permit, _, category) = load_in::<A>(tx, app, who, id, GrantState::None).await?;
    let record = repo::lock_record(tx, id).await?;
    crate::lifecycle::refuse_if_destroyed(tx, id).await?;
    let old_sealed = repo::sealed_values(tx, id).await?;
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
    // A new title or new sensitive values: the title must not give a masked value away
    // (the same check as at filing, with the same explicit override).
    if (title != record.title || !to_seal.is_empty()) && !changes.allow_title_with_sensitive {
        let mut values = BTreeMap::new();
        for s in old_sealed.iter().filter(|s| !unseal.contains(&s.field)) {
            if let Ok(p) = app
                .keys
                .decrypt_field(id.0, &s.field, &s.kek_id, &s.ciphertext)
            {
                values.insert(s.field.clone(), p.to_string());
            }
        }
        for (k, c) in &to_seal {
            values.insert(k.clone(), c.value.clone());
        }
        title_reveals(&category, &title, &values)?;
    }
    let new_revision = record.revision + 1;
    let changed_sealed: Vec<&str> = to_seal
        .keys()
        .map(String::as_str)
        .chain(unseal.iter().map(String::as_str))
        .collect();
    repo::insert_revision(
        tx,
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
        repo::keep_sealed_in_revision(tx, id, new_revision, s).await?;
    }
    for name in &unseal {
        repo::delete_sealed(tx, id, name).await?;
    }
    seal_values(tx, app, id, &category, &to_seal).await?;
    let text = search_text(&title, &record.reference, &plain);
    repo::update_record(
        tx,
        id,
        &title,
        &Value::Object(plain),
        &text,
        new_revision,
        who.user().id,
    )
    .await?;
    tx.audit(
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
    Ok((new_revision, category))
}

/// The revisions of a record: who changed what, when and why. Values of sensitive fields
/// never appear; non-sensitive ones show as they were and became.
#[tracing::instrument(skip_all)]
pub async fn revisions(app: &App, who: &Principal, id: RecordId) -> AppResult<Vec<Revision>> {
    unit!(app.db, |tx| revisions_in(&mut tx, app, who, id).await)
}

/// [`revisions`] inside the caller's unit of work.
#[tracing::instrument(skip_all)]
pub(crate) async fn revisions_in(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    id: RecordId,
) -> AppResult<Vec<Revision>> {
    let (permit, record, _) = load_in::<ReadRecord>(tx, app, who, id, GrantState::None).await?;
    revisions_of(tx, &permit, &record).await
}

/// The revisions of the record a permit was issued for.
#[tracing::instrument(skip_all)]
pub(crate) async fn revisions_of(
    tx: &mut Tx,
    permit: &Permit<ReadRecord>,
    record: &Record,
) -> AppResult<Vec<Revision>> {
    if permit.object() != Some(record.id.0) {
        return Err(AppError::internal("a permit for another record"));
    }
    let id = record.id;
    let mut list = repo::revisions(tx, id).await?;
    let created = repo::creation(tx, id).await?;
    list.insert(
        0,
        Revision {
            revision: 1,
            author: created.0,
            created_at: record.created_at,
            reason: "filed".into(),
            changes: json!([]),
            reviewer: created.1,
        },
    );
    Ok(list)
}
