use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::schema::{FieldDef, FieldType};
use crate::policy::Sensitivity;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
        #[sqlx(transparent)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl<'a> rocket::request::FromParam<'a> for $name {
            type Error = uuid::Error;
            fn from_param(param: &'a str) -> Result<Self, Self::Error> {
                Uuid::parse_str(param).map($name)
            }
        }
    };
}

id_type!(CategoryId);
id_type!(RecordId);
id_type!(FileId);

#[derive(Debug, Clone, Serialize)]
pub struct Category {
    pub id: CategoryId,
    pub parent_id: Option<CategoryId>,
    pub code: String,
    pub name: String,
    /// `Customers / Corporate / Contracts`
    pub path: String,
    pub sensitivity: Sensitivity,
    pub department: String,
    pub retention_years: i32,
    pub fields: Vec<FieldDef>,
    /// New records and corrections take effect only when a second person approves them.
    pub review: bool,
    pub schema_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Category {
    pub fn resource(&self) -> crate::policy::Resource<'_> {
        crate::policy::Resource::new(self.sensitivity, &self.department)
    }
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<CategoryId>,
    pub sensitivity: Sensitivity,
    pub department: String,
    pub retention_years: i32,
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    /// Review before changes take effect (see `records::review`).
    #[serde(default)]
    pub review: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryChanges {
    pub name: Option<String>,
    pub sensitivity: Option<Sensitivity>,
    pub department: Option<String>,
    pub retention_years: Option<i32>,
    /// The complete new schema.
    pub fields: Option<Vec<FieldDef>>,
    pub review: Option<bool>,
}

/// Where a physical file is, as given by people: codes, not ids.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub storeroom: String,
    pub shelf: String,
    #[serde(rename = "box")]
    pub box_code: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhysicalStatus {
    InStore,
    OnLoan,
    Missing,
    Destroyed,
}

impl PhysicalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PhysicalStatus::InStore => "in_store",
            PhysicalStatus::OnLoan => "on_loan",
            PhysicalStatus::Missing => "missing",
            PhysicalStatus::Destroyed => "destroyed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "in_store" => Some(PhysicalStatus::InStore),
            "on_loan" => Some(PhysicalStatus::OnLoan),
            "missing" => Some(PhysicalStatus::Missing),
            "destroyed" => Some(PhysicalStatus::Destroyed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewRecord {
    pub category_id: CategoryId,
    pub title: String,
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, Value>,
    #[serde(default)]
    pub physical: Option<Location>,
    /// Identifier in the source system of an import, so a re-run skips what was filed.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Files the record even though its title contains the value of a sensitive field
    /// (which the title, never masked, would then show to everyone who may see the record).
    #[serde(default)]
    pub allow_title_with_sensitive: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordChanges {
    #[serde(default)]
    pub title: Option<String>,
    /// Values to set; `null` removes a value.
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, Value>,
    pub reason: String,
    /// Save even though the title contains a sensitive field's value (the archivist was
    /// warned and confirmed).
    #[serde(default)]
    pub allow_title_with_sensitive: bool,
}

/// A record as stored. Not `Serialize`: only `view::make` turns it into something that
/// leaves the server, masking sensitive values on the way.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Record {
    pub id: RecordId,
    pub category_id: CategoryId,
    pub reference: String,
    pub title: String,
    pub fields: Value,
    pub revision: i32,
    pub schema_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A sensitive value as stored: ciphertext only.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedValue {
    pub field: String,
    pub ciphertext: Vec<u8>,
    pub kek_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldView {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    pub sensitive: bool,
    pub value: Option<String>,
    pub masked: bool,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PhysicalView {
    pub storeroom: Option<String>,
    pub shelf: Option<String>,
    #[serde(rename = "box")]
    #[sqlx(rename = "box_code")]
    pub box_code: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryRef {
    pub id: CategoryId,
    pub code: String,
    pub path: String,
    pub sensitivity: Sensitivity,
}

/// What leaves the server about a record: sensitive values masked.
#[derive(Debug, Clone, Serialize)]
pub struct RecordView {
    pub id: RecordId,
    pub reference: String,
    pub title: String,
    pub category: CategoryRef,
    pub fields: Vec<FieldView>,
    pub physical: Option<PhysicalView>,
    pub revision: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RecordView {
    /// The sensitive fields this view shows unmasked: what an unmasked read is audited with.
    pub fn unmasked(&self) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|f| f.sensitive && !f.masked && f.value.is_some())
            .map(|f| f.name.as_str())
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Revision {
    pub revision: i32,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub reason: String,
    /// `[{field, change, sensitive, from?, to?}]`: values only for non-sensitive fields.
    pub changes: Value,
    /// Who approved it, when the category required review (the author proposed it).
    pub reviewer: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FileInfo {
    pub id: FileId,
    pub record_id: RecordId,
    pub version: i32,
    pub original_name: String,
    pub media_type: String,
    pub size: i64,
    #[serde(serialize_with = "hex_ser")]
    pub sha256: Vec<u8>,
    pub uploaded_at: DateTime<Utc>,
}

fn hex_ser<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}
