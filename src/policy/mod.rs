//! The one authorization path. Every action on an object goes through `authorize`, which
//! returns a `Permit<A>` only this module can construct; service functions that act on
//! objects take the permit, so a route cannot skip the check.
//!
//! Rules (until the policy files of the workflow release replace them):
//! - categories: every signed-in role may read them; archivists create and edit them;
//! - records: archivists file and correct them and see all of them (masked); employees and
//!   supervisors see records of `public` and `internal` categories, and of `confidential`
//!   and `secret` ones only in their own department; auditors and administrators see none;
//! - files: archivists upload; whoever may see a record may list its files; reading file
//!   content needs a grant (the workflow release) and is refused to everyone for now;
//! - the physical register: archivists.
//!
//! A refused read of an object the caller may not know about is `NotFound`, not `Forbidden`.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::AppError;
use crate::users::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    Public,
    Internal,
    Confidential,
    Secret,
}

impl Sensitivity {
    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::Public => "public",
            Sensitivity::Internal => "internal",
            Sensitivity::Confidential => "confidential",
            Sensitivity::Secret => "secret",
        }
    }
    pub fn parse(s: &str) -> Option<Sensitivity> {
        match s {
            "public" => Some(Sensitivity::Public),
            "internal" => Some(Sensitivity::Internal),
            "confidential" => Some(Sensitivity::Confidential),
            "secret" => Some(Sensitivity::Secret),
            _ => None,
        }
    }
}

/// What the policy needs to know about the object acted on.
#[derive(Debug, Clone)]
pub struct Resource<'a> {
    pub sensitivity: Sensitivity,
    pub department: &'a str,
}

/// An action. `HIDDEN` actions answer `NotFound` when refused.
pub trait Action: Send + Sync + 'static {
    const NAME: &'static str;
    const HIDDEN: bool;
}

macro_rules! actions {
    ($($name:ident => ($label:expr, $hidden:expr)),* $(,)?) => {
        $(
            pub struct $name;
            impl Action for $name {
                const NAME: &'static str = $label;
                const HIDDEN: bool = $hidden;
            }
        )*
    };
}

actions! {
    ReadCategory => ("category.read", true),
    ManageCategory => ("category.manage", false),
    FileRecord => ("record.create", false),
    ReadRecord => ("record.read", true),
    EditRecord => ("record.update", true),
    UploadFile => ("file.upload", true),
    ReadFileContent => ("file.read_content", true),
    ManageRegister => ("register.manage", false),
}

/// Proof that `authorize` allowed action A. Only this module constructs one.
#[derive(Debug)]
pub struct Permit<A: Action> {
    _action: PhantomData<A>,
}

impl<A: Action> Permit<A> {
    fn new() -> Self {
        Permit {
            _action: PhantomData,
        }
    }

    /// A permit for work the vault does on its own behalf (tests of the content API, and
    /// later the export and viewer jobs that run under an already-checked grant).
    #[doc(hidden)]
    pub fn system() -> Self {
        Self::new()
    }
}

fn sees_record(who: &Principal, r: &Resource<'_>) -> bool {
    if who.has_role(Role::Archivist) {
        return true;
    }
    if !(who.has_role(Role::Employee) || who.has_role(Role::Supervisor)) {
        return false;
    }
    r.sensitivity <= Sensitivity::Internal || who.user().department == r.department
}

fn allowed<A: Action>(who: &Principal, r: Option<&Resource<'_>>) -> bool {
    match (A::NAME, r) {
        ("category.read", _) => true,
        ("category.manage", _) | ("record.create", _) | ("register.manage", _) => {
            who.has_role(Role::Archivist)
        }
        ("record.read", Some(r)) => sees_record(who, r),
        ("record.update", Some(_)) | ("file.upload", Some(_)) => who.has_role(Role::Archivist),
        ("file.read_content", _) => false,
        _ => false,
    }
}

/// Decides whether `who` may perform A on the object described by `r` (None for actions
/// on a collection, such as filing a new record).
pub fn authorize<A: Action>(
    who: &Principal,
    r: Option<&Resource<'_>>,
) -> Result<Permit<A>, AppError> {
    if allowed::<A>(who, r) {
        return Ok(Permit::new());
    }
    tracing::info!(target: "security", user_id = %who.user().id, action = A::NAME, "denied");
    // Hidden objects: a caller who may not even see the record learns nothing.
    let may_see = r.is_some_and(|r| sees_record(who, r));
    if A::HIDDEN && !may_see {
        Err(AppError::NotFound)
    } else {
        Err(AppError::Forbidden)
    }
}

/// Whether `who` may read records of this kind (for filtering searches through the same rule).
pub fn may_read(who: &Principal, r: &Resource<'_>) -> bool {
    allowed::<ReadRecord>(who, Some(r))
}
