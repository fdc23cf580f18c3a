use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user id: random, never sequential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'a> rocket::request::FromParam<'a> for UserId {
    type Error = uuid::Error;
    fn from_param(param: &'a str) -> Result<Self, Self::Error> {
        Uuid::parse_str(param).map(UserId)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Archivist,
    Employee,
    Supervisor,
    Auditor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Archivist,
        Role::Employee,
        Role::Supervisor,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Archivist => "archivist",
            Role::Employee => "employee",
            Role::Supervisor => "supervisor",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown role `{s}` (expected archivist, employee, supervisor, auditor or admin)")
            })
    }
}

/// An account as stored, less its password hash.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub department: String,
    pub roles: Vec<Role>,
    pub status: String,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// The interface language the person chose (`en`, `zh-CN`); none: the browser's.
    pub locale: Option<String>,
    /// The person's IANA time zone; none: the vault's.
    pub time_zone: Option<String>,
    /// When the person last signed in successfully; none: never.
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

impl User {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub department: String,
    pub roles: Vec<String>,
    pub status: String,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
    /// Absent from queries that do not need it (the session guard's).
    #[sqlx(default)]
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: UserId(r.id),
            username: r.username,
            display_name: r.display_name,
            department: r.department,
            roles: r.roles.iter().filter_map(|s| s.parse().ok()).collect(),
            status: r.status,
            must_change_password: r.must_change_password,
            created_at: r.created_at,
            disabled_at: r.disabled_at,
            locale: r.locale,
            time_zone: r.time_zone,
            last_sign_in_at: r.last_sign_in_at,
        }
    }
}

/// What it takes to create an account.
#[derive(Debug, Clone, Deserialize)]
pub struct NewUser {
    pub username: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    pub roles: Vec<Role>,
    pub password: secrecy::SecretString,
    /// Whether the person must choose a new password at first sign-in.
    #[serde(default)]
    pub must_change_password: bool,
}

/// What an administrator may change on an account (absent: unchanged). The username is the
/// account's stable key and never changes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChanges {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<Role>>,
}
