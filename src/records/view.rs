//! The only way a record leaves the server: `make` builds a `RecordView`, decrypting each
//! sensitive value and passing it through the masking step ([`Unmask::show`]): masked as
//! `masking.toml` says for the caller's roles, or unmasked under an active lookup or view
//! grant. The caller audits the fields the view shows unmasked ([`RecordView::unmasked`]).

use std::collections::HashMap;

use super::masking::Unmask;
use super::model::{
    Category, CategoryRef, FieldView, PhysicalView, Record, RecordView, SealedValue,
};
use crate::crypto::KeyRing;

pub fn category_ref(c: &Category) -> CategoryRef {
    CategoryRef {
        id: c.id,
        code: c.code.clone(),
        path: c.path.clone(),
        sensitivity: c.sensitivity,
    }
}

pub fn make(
    keys: &KeyRing,
    category: &Category,
    record: &Record,
    sealed: &[SealedValue],
    physical: Option<PhysicalView>,
    how: &Unmask<'_>,
) -> RecordView {
    let sealed: HashMap<&str, &SealedValue> =
        sealed.iter().map(|s| (s.field.as_str(), s)).collect();
    let fields = category
        .fields
        .iter()
        .map(|def| {
            let (value, masked) = match sealed.get(def.name.as_str()) {
                Some(s) => match keys.decrypt_field(record.id.0, &s.field, &s.kek_id, &s.ciphertext) {
                    Ok(plain) if def.sensitive => {
                        let (v, masked) = how.show(def, &plain);
                        (Some(v), masked)
                    }
                    Ok(plain) => (Some(plain.to_string()), false),
                    Err(e) => {
                        tracing::error!(record_id = %record.id, field = %def.name, error = %e, "sealed value unreadable");
                        (Some("[unreadable]".to_string()), true)
                    }
                },
                None => (
                    record
                        .fields
                        .get(&def.name)
                        .and_then(|v| v.as_str().map(str::to_string)),
                    false,
                ),
            };
            FieldView {
                name: def.name.clone(),
                label: def.label().to_string(),
                kind: def.kind,
                sensitive: def.sensitive,
                value,
                masked,
            }
        })
        .collect();
    RecordView {
        id: record.id,
        reference: record.reference.clone(),
        title: record.title.clone(),
        category: category_ref(category),
        fields,
        physical,
        revision: record.revision,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}
