//! Privacy by default for category fields.
//!
//! When an archivist defines a field (web page or API), a field that holds personal data —
//! its type is phone, ID number or e-mail, or its name or label reads like a resident ID or
//! other identity document number, a person's name, a phone or mobile number, an e-mail
//! address, a postal address or a bank account or card number, in English or Chinese — is
//! sensitive unless the archivist says otherwise, and saying otherwise needs an explicit
//! confirmation (`confirm_not_sensitive`), refused with an error on the field without it.
//!
//! An existing field that is not sensitive can be made sensitive later: the category gets a
//! new schema version and, in the same unit of work, the values already filed under that
//! field (in the records and in their earlier revisions) are encrypted into the sealed
//! tables and removed from the plain columns and from the search text. The opposite — a
//! sensitive field made not sensitive — is refused: values once sealed stay sealed (add a
//! new field instead).

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use sqlx::PgConnection;

use super::model::{Category, CategoryId, RecordId};
use super::schema::{check_value, Checked, FieldDef, FieldType};
use super::{index_domain, repo, search_text};
use crate::error::{AppError, AppResult};
use crate::App;

/// What the archivist said about one submitted field, beside its definition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Declared {
    /// `None`: not said (the default applies); `Some(v)`: said explicitly.
    pub sensitive: Option<bool>,
    /// The archivist confirmed that a field that looks personal is not sensitive.
    pub confirm_not_sensitive: bool,
}

/// The kind of personal data a field looks like it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personal {
    IdNumber,
    Name,
    Phone,
    Email,
    Address,
    Bank,
}

impl Personal {
    pub fn as_str(self) -> &'static str {
        match self {
            Personal::IdNumber => "id_number",
            Personal::Name => "name",
            Personal::Phone => "phone",
            Personal::Email => "email",
            Personal::Address => "address",
            Personal::Bank => "bank",
        }
    }
}

/// Words of a field's name (split at `_`) that mark personal data.
const NAME_WORDS: &[(&str, Personal)] = &[
    ("phone", Personal::Phone),
    ("mobile", Personal::Phone),
    ("tel", Personal::Phone),
    ("telephone", Personal::Phone),
    ("cellphone", Personal::Phone),
    ("fax", Personal::Phone),
    ("email", Personal::Email),
    ("mail", Personal::Email),
    ("address", Personal::Address),
    ("addr", Personal::Address),
    ("street", Personal::Address),
    ("passport", Personal::IdNumber),
    ("ssn", Personal::IdNumber),
    ("idcard", Personal::IdNumber),
    ("idno", Personal::IdNumber),
    ("iban", Personal::Bank),
    ("surname", Personal::Name),
    ("firstname", Personal::Name),
    ("lastname", Personal::Name),
    ("fullname", Personal::Name),
    ("holder", Personal::Name),
    ("contact", Personal::Name),
    ("person", Personal::Name),
    ("applicant", Personal::Name),
    ("patient", Personal::Name),
    ("borrower", Personal::Name),
    ("guardian", Personal::Name),
    ("spouse", Personal::Name),
];

/// Pairs of consecutive words of a field's name that mark personal data.
const NAME_PAIRS: &[(&str, &str, Personal)] = &[
    ("id", "number", Personal::IdNumber),
    ("id", "no", Personal::IdNumber),
    ("id", "card", Personal::IdNumber),
    ("national", "id", Personal::IdNumber),
    ("resident", "id", Personal::IdNumber),
    ("identity", "number", Personal::IdNumber),
    ("identity", "card", Personal::IdNumber),
    ("e", "mail", Personal::Email),
    ("full", "name", Personal::Name),
    ("first", "name", Personal::Name),
    ("last", "name", Personal::Name),
    ("given", "name", Personal::Name),
    ("family", "name", Personal::Name),
    ("customer", "name", Personal::Name),
    ("client", "name", Personal::Name),
    ("owner", "name", Personal::Name),
    ("account", "number", Personal::Bank),
    ("account", "no", Personal::Bank),
    ("bank", "account", Personal::Bank),
    ("bank", "card", Personal::Bank),
    ("card", "number", Personal::Bank),
    ("card", "no", Personal::Bank),
];

/// Pieces of a label (any language, lower-cased) that mark personal data.
const LABEL_PIECES: &[(&str, Personal)] = &[
    ("身份证", Personal::IdNumber),
    ("证件号", Personal::IdNumber),
    ("证件号码", Personal::IdNumber),
    ("护照", Personal::IdNumber),
    ("id number", Personal::IdNumber),
    ("id no", Personal::IdNumber),
    ("id card", Personal::IdNumber),
    ("passport", Personal::IdNumber),
    ("姓名", Personal::Name),
    ("客户名称", Personal::Name),
    ("客户姓名", Personal::Name),
    ("联系人", Personal::Name),
    ("户名", Personal::Name),
    ("持卡人", Personal::Name),
    ("申请人", Personal::Name),
    ("借款人", Personal::Name),
    ("full name", Personal::Name),
    ("account holder", Personal::Name),
    ("contact person", Personal::Name),
    ("电话", Personal::Phone),
    ("手机", Personal::Phone),
    ("联系方式", Personal::Phone),
    ("phone", Personal::Phone),
    ("mobile", Personal::Phone),
    ("邮箱", Personal::Email),
    ("电子邮件", Personal::Email),
    ("e-mail", Personal::Email),
    ("email", Personal::Email),
    ("地址", Personal::Address),
    ("住址", Personal::Address),
    ("住所", Personal::Address),
    ("address", Personal::Address),
    ("银行卡", Personal::Bank),
    ("银行账户", Personal::Bank),
    ("账号", Personal::Bank),
    ("帐号", Personal::Bank),
    ("卡号", Personal::Bank),
    ("开户", Personal::Bank),
    ("bank account", Personal::Bank),
    ("account number", Personal::Bank),
    ("card number", Personal::Bank),
];

/// Whether field `def` looks like it holds personal data, and which kind.
pub fn looks_personal(def: &FieldDef) -> Option<Personal> {
    match def.kind {
        FieldType::Phone => return Some(Personal::Phone),
        FieldType::IdNumber => return Some(Personal::IdNumber),
        FieldType::Email => return Some(Personal::Email),
        _ => {}
    }
    let name = def.name.to_lowercase();
    let words: Vec<&str> = name
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .collect();
    if words == ["name"] {
        return Some(Personal::Name);
    }
    for w in &words {
        if let Some((_, p)) = NAME_WORDS.iter().find(|(k, _)| k == w) {
            return Some(*p);
        }
    }
    for pair in words.windows(2) {
        if let Some((_, _, p)) = NAME_PAIRS
            .iter()
            .find(|(a, b, _)| *a == pair[0] && *b == pair[1])
        {
            return Some(*p);
        }
    }
    let label = def.label.to_lowercase();
    if label.trim() == "name" || label.trim() == "名字" {
        return Some(Personal::Name);
    }
    LABEL_PIECES
        .iter()
        .find(|(piece, _)| label.contains(piece))
        .map(|(_, p)| *p)
}

/// The English message of a refused "not sensitive" (translated on the pages).
pub const NEEDS_CONFIRMATION: &str = "looks like personal data: it stays sensitive (encrypted and masked) unless you confirm that it is not sensitive";

/// The message for a sensitive field that would become plain.
pub const CANNOT_UNSEAL: &str =
    "a sensitive field cannot be made not sensitive; add a new field instead";

/// Applies privacy by default to submitted fields: `declared[i]` is what was said about
/// `fields[i]` (missing: the field's own `sensitive` taken as said explicitly). `current`
/// is the category being changed, if any: its existing fields keep what they are unless
/// their sensitivity changes.
pub fn apply_defaults(
    fields: &mut [FieldDef],
    declared: &[Declared],
    current: Option<&Category>,
) -> AppResult<()> {
    for (i, f) in fields.iter_mut().enumerate() {
        let d = declared.get(i).copied().unwrap_or(Declared {
            sensitive: Some(f.sensitive),
            confirm_not_sensitive: false,
        });
        let existing = current.and_then(|c| c.field(&f.name));
        if let Some(old) = existing {
            let wanted = d.sensitive.unwrap_or(old.sensitive);
            if old.sensitive && !wanted {
                return Err(AppError::invalid(
                    format!("fields[{i}].sensitive"),
                    CANNOT_UNSEAL,
                ));
            }
            // Unchanged and not sensitive: left as it is (the page warns when it looks
            // personal); made sensitive: allowed (its values are sealed by the update).
            f.sensitive = wanted;
            continue;
        }
        let personal = looks_personal(f).is_some();
        f.sensitive = match d.sensitive {
            Some(true) => true,
            Some(false) if personal && !d.confirm_not_sensitive => {
                return Err(AppError::invalid(
                    format!("fields[{i}].sensitive"),
                    NEEDS_CONFIRMATION,
                ))
            }
            Some(false) => false,
            None => personal,
        };
        // A personal name made sensitive is masked as a name (张*丰), not as `***`.
        if f.sensitive
            && f.mask.is_none()
            && f.kind == FieldType::Text
            && looks_personal(f) == Some(Personal::Name)
        {
            f.mask = Some(super::schema::MaskStyle::Name);
        }
    }
    Ok(())
}

/// Splits the `fields` of a JSON category body into what was declared about each field
/// (`sensitive` given or not, `confirm_not_sensitive`), removing `confirm_not_sensitive`
/// so the rest reads as field definitions.
pub fn declared_in_json(body: &mut Value) -> AppResult<Option<Vec<Declared>>> {
    let Some(fields) = body.get_mut("fields") else {
        return Ok(None);
    };
    let Some(list) = fields.as_array_mut() else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, f) in list.iter_mut().enumerate() {
        let Some(obj) = f.as_object_mut() else {
            out.push(Declared::default());
            continue;
        };
        let confirm = match obj.remove("confirm_not_sensitive") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => {
                return Err(AppError::invalid(
                    format!("fields[{i}].confirm_not_sensitive"),
                    "must be true or false",
                ))
            }
        };
        let sensitive = match obj.get("sensitive") {
            None | Some(Value::Null) => {
                obj.remove("sensitive");
                None
            }
            Some(Value::Bool(b)) => Some(*b),
            // Left for the definition's own check to refuse.
            Some(_) => None,
        };
        out.push(Declared {
            sensitive,
            confirm_not_sensitive: confirm,
        });
    }
    Ok(Some(out))
}

/// The fields that become sensitive in `new` compared with `current`.
pub fn made_sensitive<'a>(current: &Category, new: &'a [FieldDef]) -> Vec<&'a FieldDef> {
    new.iter()
        .filter(|f| f.sensitive && current.field(&f.name).is_some_and(|o| !o.sensitive))
        .collect()
}

/// How many values a schema change sealed.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Sealed {
    pub records: i64,
    pub revisions: i64,
}

/// Seals the plain values of `defs` (fields just made sensitive) in every record of
/// `category` and in their earlier revisions, inside the caller's unit of work: encrypted
/// into the sealed tables (with a blind index where the type has one), removed from the
/// plain columns and from the search text; a revision's change list keeps that the field
/// changed, not its values. Phone and ID numbers are sealed already and only change how
/// they are shown.
pub(crate) async fn seal_existing(
    conn: &mut PgConnection,
    app: &App,
    category: CategoryId,
    defs: &[&FieldDef],
) -> AppResult<Sealed> {
    let defs: Vec<&FieldDef> = defs
        .iter()
        .copied()
        .filter(|d| !matches!(d.kind, FieldType::Phone | FieldType::IdNumber))
        .collect();
    let mut count = Sealed::default();
    if defs.is_empty() {
        return Ok(count);
    }
    let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
    let rows: Vec<(uuid::Uuid, String, String, Value)> = sqlx::query_as(
        "SELECT id, reference, title, fields FROM records \
         WHERE category_id = $1 AND fields ?| $2 ORDER BY id FOR UPDATE",
    )
    .bind(category.0)
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    for (id, reference, title, fields) in rows {
        let mut plain: Map<String, Value> = match fields {
            Value::Object(m) => m,
            _ => continue,
        };
        for def in &defs {
            let Some(v) = plain.remove(&def.name) else {
                continue;
            };
            let c = checked(def, &v);
            let (kek_id, ct) = app.keys.encrypt_field(id, &def.name, &c.value);
            let index = match (index_domain(def), &c.index_form) {
                (Some(domain), Some(form)) => Some(app.keys.blind_index(domain, form)),
                _ => None,
            };
            repo::upsert_sealed(
                &mut *conn,
                RecordId(id),
                &def.name,
                &ct,
                &kek_id,
                index.as_deref(),
            )
            .await?;
        }
        sqlx::query("UPDATE records SET fields = $2, search_text = $3 WHERE id = $1")
            .bind(id)
            .bind(Value::Object(plain.clone()))
            .bind(search_text(&title, &reference, &plain))
            .execute(&mut *conn)
            .await?;
        count.records += 1;
    }
    let name_set: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let revisions: Vec<(uuid::Uuid, i32, Value, Value)> = sqlx::query_as(
        "SELECT v.record_id, v.revision, v.previous_fields, v.changes FROM record_revisions v \
         JOIN records r ON r.id = v.record_id WHERE r.category_id = $1 \
         ORDER BY v.record_id, v.revision FOR UPDATE OF v",
    )
    .bind(category.0)
    .fetch_all(&mut *conn)
    .await?;
    for (record, revision, previous, changes) in revisions {
        let mut previous = match previous {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let mut touched = false;
        for def in &defs {
            let Some(v) = previous.remove(&def.name) else {
                continue;
            };
            touched = true;
            let c = checked(def, &v);
            let (kek_id, ct) = app.keys.encrypt_field(record, &def.name, &c.value);
            sqlx::query(
                "INSERT INTO record_revision_sensitive_values (record_id, revision, field, ciphertext, kek_id) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (record_id, revision, field) DO NOTHING",
            )
            .bind(record)
            .bind(revision)
            .bind(&def.name)
            .bind(&ct)
            .bind(&kek_id)
            .execute(&mut *conn)
            .await?;
        }
        let mut changes = changes;
        if let Some(list) = changes.as_array_mut() {
            for c in list.iter_mut() {
                let Some(obj) = c.as_object_mut() else {
                    continue;
                };
                let ours = obj
                    .get("field")
                    .and_then(Value::as_str)
                    .is_some_and(|f| name_set.contains(f));
                if ours {
                    touched |= obj.remove("from").is_some() | obj.remove("to").is_some();
                    if obj.get("sensitive") != Some(&Value::Bool(true)) {
                        obj.insert("sensitive".into(), Value::Bool(true));
                        touched = true;
                    }
                }
            }
        }
        if touched {
            sqlx::query(
                "UPDATE record_revisions SET previous_fields = $3, changes = $4 \
                 WHERE record_id = $1 AND revision = $2",
            )
            .bind(record)
            .bind(revision)
            .bind(Value::Object(previous))
            .bind(&changes)
            .execute(&mut *conn)
            .await?;
            count.revisions += 1;
        }
    }
    Ok(count)
}

/// A stored plain value in its sealed form (with the blind-index form of its type); a value
/// filed under older rules that no longer passes them is sealed as it is, without an index.
fn checked(def: &FieldDef, v: &Value) -> Checked {
    let sealed_def = FieldDef {
        sensitive: true,
        ..def.clone()
    };
    check_value(&sealed_def, v).unwrap_or_else(|_| Checked {
        value: match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        index_form: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, label: &str, kind: FieldType) -> FieldDef {
        FieldDef {
            name: name.into(),
            label: label.into(),
            kind,
            required: false,
            sensitive: false,
            choices: None,
            mask: None,
        }
    }

    #[test]
    fn personal_fields_are_recognised_by_type_name_and_label() {
        let personal = [
            def("id_number", "", FieldType::Text),
            def("holder_id_no", "", FieldType::Text),
            def("zjhm", "证件号码", FieldType::Text),
            def("sfz", "身份证号", FieldType::Text),
            def("xm", "姓名", FieldType::Text),
            def("khmc", "客户名称", FieldType::Text),
            def("lxr", "联系人", FieldType::Text),
            def("dh", "联系电话", FieldType::Text),
            def("sj", "手机", FieldType::Number),
            def("dz", "家庭住址", FieldType::Text),
            def("yhk", "银行卡号", FieldType::Text),
            def("zh", "账号", FieldType::Text),
            def("name", "", FieldType::Text),
            def("customer_name", "", FieldType::Text),
            def("holder_name", "Account holder", FieldType::Text),
            def("mobile", "", FieldType::Text),
            def("home_address", "", FieldType::Text),
            def("bank_account", "", FieldType::Text),
            def("card_no", "", FieldType::Text),
            def("anything", "", FieldType::Phone),
            def("anything", "", FieldType::IdNumber),
            def("anything", "", FieldType::Email),
        ];
        for d in &personal {
            assert!(looks_personal(d).is_some(), "{} / {}", d.name, d.label);
        }
        let plain = [
            def("company_name", "Company", FieldType::Text),
            def("signed_on", "", FieldType::Date),
            def("tier", "", FieldType::Choice),
            def("amount", "金额", FieldType::Number),
            def("contract_no", "合同编号", FieldType::Text),
            def("project", "项目名称", FieldType::Text),
            def("notes", "备注", FieldType::Text),
        ];
        for d in &plain {
            assert!(looks_personal(d).is_none(), "{} / {}", d.name, d.label);
        }
    }

    #[test]
    fn unsaid_is_sensitive_and_not_sensitive_needs_confirmation() {
        let mut fields = vec![
            def("id_number", "", FieldType::IdNumber),
            def("notes", "", FieldType::Text),
        ];
        let unsaid = [Declared::default(), Declared::default()];
        apply_defaults(&mut fields, &unsaid, None).unwrap();
        assert!(fields[0].sensitive);
        assert!(!fields[1].sensitive);

        let no = Declared {
            sensitive: Some(false),
            confirm_not_sensitive: false,
        };
        let err = apply_defaults(&mut fields, &[no, no], None).unwrap_err();
        assert!(
            matches!(&err, AppError::Invalid { field: Some(f), .. } if f == "fields[0].sensitive"),
            "{err:?}"
        );
        let confirmed = Declared {
            sensitive: Some(false),
            confirm_not_sensitive: true,
        };
        apply_defaults(&mut fields, &[confirmed, no], None).unwrap();
        assert!(!fields[0].sensitive);
        // Without declarations (an internal caller), a plain personal field is refused.
        let mut one = vec![def("phone", "", FieldType::Phone)];
        assert!(apply_defaults(&mut one, &[], None).is_err());
    }

    #[test]
    fn json_declarations_tell_omitted_from_false() {
        let mut body = serde_json::json!({"fields": [
            {"name": "a", "type": "text"},
            {"name": "b", "type": "text", "sensitive": false, "confirm_not_sensitive": true},
            {"name": "c", "type": "text", "sensitive": true}
        ]});
        let d = declared_in_json(&mut body).unwrap().unwrap();
        assert_eq!(d[0].sensitive, None);
        assert_eq!(d[1].sensitive, Some(false));
        assert!(d[1].confirm_not_sensitive);
        assert_eq!(d[2].sensitive, Some(true));
        assert!(body["fields"][1].get("confirm_not_sensitive").is_none());
        let mut bad =
            serde_json::json!({"fields": [{"name": "a", "confirm_not_sensitive": "yes"}]});
        assert!(declared_in_json(&mut bad).is_err());
    }
}
