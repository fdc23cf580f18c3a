//! The one authorization path. Every action on an object goes through
//! [`Policies::authorize`], which returns a `Permit<A>` only this module can construct;
//! service functions that act on objects take the permit, so a route cannot skip the check.
//!
//! The rules are data: `policies/access.cedar` (Cedar), validated in strict mode against
//! `policies/access.cedarschema` when the server starts. A bad file stops the start with
//! the file, line, column and reason ([`PolicyError`]). There is no free `authorize`
//! function (apart from the deprecated shim below, which goes away once the call sites use
//! the loaded set): whoever authorizes holds the loaded [`Policies`].
//!
//! What the engine is told (see the schema for the full shapes):
//! - the principal `User` with `roles` (set of role names) and `department`;
//! - the object: `Vault::"vault"` for actions on a collection (`r` is `None`), else a
//!   `Category` (for `category.*` actions) or a `Record`, each with `sensitivity`
//!   (0 public, 1 internal, 2 confidential, 3 secret) and `department`;
//! - `context.grant`: the caller's best grant state for the kind relevant to the action
//!   on this object ([`GrantState`]).
//!
//! Guarantees: a decision is `Allow` only if Cedar says so *and* no policy raised an error
//! while being evaluated (an erroring `forbid` must not turn into an allow); anything that
//! cannot be evaluated is denied and logged. A refused `HIDDEN` action on an object the
//! caller may not even see (`record.read`) answers `NotFound`, otherwise `Forbidden`.

mod engine;
mod error;
#[cfg(test)]
mod matrix;

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::AppError;
use crate::users::Role;

pub use engine::{Policies, POLICY_FILE, SCHEMA_FILE};
pub use error::PolicyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    Public,
    Internal,
    Confidential,
    Secret,
}

impl Sensitivity {
    pub const ALL: [Sensitivity; 4] = [
        Sensitivity::Public,
        Sensitivity::Internal,
        Sensitivity::Confidential,
        Sensitivity::Secret,
    ];

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
    /// The number the policies compare: 0 public, 1 internal, 2 confidential, 3 secret.
    pub fn level(self) -> i64 {
        match self {
            Sensitivity::Public => 0,
            Sensitivity::Internal => 1,
            Sensitivity::Confidential => 2,
            Sensitivity::Secret => 3,
        }
    }
}

/// The state of the caller's best grant of the kind relevant to an action, on the object
/// acted on: a view grant for [`ViewWithGrant`], a lookup or view grant for
/// [`UnmaskWithGrant`], an export grant for [`ExportWithGrant`]. "Best" means the one that
/// allows most: `Active` over `Pending` over `Expired`/`Revoked` over `None`. Only `Active`
/// opens anything; the others are passed so the policies (and their logs) can tell a
/// request still waiting from a grant that ended.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum GrantState {
    /// No request or grant of that kind (also: rejected or cancelled requests).
    #[default]
    None,
    /// Requested, waiting for approval.
    Pending,
    /// Approved and in force.
    Active,
    /// Ran out (or the physical file was returned).
    Expired,
    /// Ended early by a supervisor (or by disabling the account).
    Revoked,
}

impl GrantState {
    pub const ALL: [GrantState; 5] = [
        GrantState::None,
        GrantState::Pending,
        GrantState::Active,
        GrantState::Expired,
        GrantState::Revoked,
    ];

    /// The string `context.grant` carries.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::None => "none",
            GrantState::Pending => "pending",
            GrantState::Active => "active",
            GrantState::Expired => "expired",
            GrantState::Revoked => "revoked",
        }
    }
}

/// A request's route, as the policy sees it: who approves, and whether approvers must be of
/// the record's department.
#[derive(Debug, Clone, Copy)]
pub struct RouteAttrs {
    pub approver_role: Role,
    pub same_department: bool,
}

/// What the policy needs to know about the object acted on.
#[derive(Debug, Clone)]
pub struct Resource<'a> {
    /// The object's id: the permit is bound to it.
    pub id: Option<Uuid>,
    pub sensitivity: Sensitivity,
    pub department: &'a str,
    /// The caller's best grant state for the relevant kind on this object; callers that
    /// do not act under a grant leave it at `GrantState::None`.
    pub grant: GrantState,
    /// The object is the caller's own (their request, their grant).
    pub own: bool,
    /// For requests: their route.
    pub route: Option<RouteAttrs>,
}

impl<'a> Resource<'a> {
    /// An object with no grant in play.
    pub fn new(sensitivity: Sensitivity, department: &'a str) -> Self {
        Resource {
            id: None,
            sensitivity,
            department,
            grant: GrantState::None,
            own: false,
            route: None,
        }
    }

    /// The same object, naming its id (the permit will be bound to it).
    pub fn of(self, id: impl Into<Uuid>) -> Self {
        Resource {
            id: Some(id.into()),
            ..self
        }
    }

    /// The same object, for a caller whose best grant is in state `grant`.
    pub fn with_grant(self, grant: GrantState) -> Self {
        Resource { grant, ..self }
    }

    /// The same object, saying whether it is the caller's own.
    pub fn owned(self, own: bool) -> Self {
        Resource { own, ..self }
    }

    /// The same object (a request), with its route.
    pub fn routed(self, approver_role: Role, same_department: bool) -> Self {
        Resource {
            route: Some(RouteAttrs {
                approver_role,
                same_department,
            }),
            ..self
        }
    }
}

/// The kind of object an action names when it is given one (`Some(resource)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Category,
    Record,
    Request,
    Grant,
    /// Actions on the vault as a whole only (no object).
    Vault,
}

/// An action. `HIDDEN` actions answer `NotFound` when refused on an object the caller may
/// not even see.
pub trait Action: Send + Sync + 'static {
    const NAME: &'static str;
    const HIDDEN: bool;
}

/// One action as the engine knows it.
#[derive(Debug, Clone, Copy)]
struct ActionSpec {
    name: &'static str,
    object: Object,
    /// Whether the action may also be asked on the vault as a whole (`None`).
    on_vault: bool,
}

macro_rules! actions {
    ($($(#[$doc:meta])* $name:ident => ($label:expr, $hidden:expr, $object:ident, $vault:expr)),* $(,)?) => {
        $(
            $(#[$doc])*
            pub struct $name;
            impl Action for $name {
                const NAME: &'static str = $label;
                const HIDDEN: bool = $hidden;
            }
        )*

        /// Every action the server asks the policies about; each must be declared in the
        /// schema (checked at load).
        const ACTIONS: &[ActionSpec] = &[$(ActionSpec { name: $label, object: Object::$object, on_vault: $vault }),*];
    };
}

actions! {
    /// Read the classification tree.
    ReadCategory => ("category.read", true, Category, true),
    /// Create and edit categories.
    ManageCategory => ("category.manage", false, Category, true),
    /// File a new record.
    FileRecord => ("record.create", false, Record, true),
    /// See a record's (masked) metadata.
    ReadRecord => ("record.read", true, Record, true),
    /// Correct a record (a new revision).
    EditRecord => ("record.update", true, Record, true),
    /// Upload a file to a record.
    UploadFile => ("file.upload", true, Record, true),
    /// Read a file's raw content on one's own behalf (refused to everyone: content leaves
    /// the vault only as viewer pages or as an export the vault builds).
    ReadFileContent => ("file.read_content", true, Record, true),
    /// Keep the location register.
    ManageRegister => ("register.manage", false, Record, true),
    /// Ask for a lookup, view, loan or export of a record one may see.
    RequestAccess => ("request.create", true, Record, true),
    /// See a request (its requester, its approvers, auditors).
    ReadRequest => ("request.read", true, Request, false),
    /// Approve or reject a request (the route in `workflows.toml` says whose).
    ApproveRequest => ("request.approve", true, Request, false),
    /// Withdraw one's own pending request.
    CancelRequest => ("request.cancel", true, Request, false),
    /// End a grant early (on a grant); review the grants in force (on the vault).
    RevokeGrant => ("grant.revoke", true, Grant, true),
    /// Read the audit trail and reports.
    ReadAudit => ("audit.read", false, Vault, true),
    /// Hand out and take back physical files.
    ManageLoans => ("loan.manage", false, Record, true),
    /// Open a record's files in the viewer under an active view grant.
    ViewWithGrant => ("file.view", true, Record, true),
    /// See a record's sensitive fields unmasked under an active lookup or view grant.
    UnmaskWithGrant => ("record.unmask", true, Record, true),
    /// Take copies out as a bundle under an active export grant.
    ExportWithGrant => ("record.export", true, Record, true),
    /// Manage accounts: create, list, disable, reset passwords.
    ManageUsers => ("user.manage", false, Vault, true),
    /// Hold the periodic access review (accounts, roles, last sign-in), export it and mark
    /// it complete.
    ReviewAccess => ("user.review", false, Vault, true),
    /// See the integrity scrub's results (damaged, missing and unreferenced objects).
    ReadScrub => ("scrub.read", false, Vault, true),
    /// Ask for a record's destruction and carry it out under an approved request.
    DestroyRecord => ("record.destroy", true, Record, true),
    /// Place or release a legal hold on a record or a category of one's own department.
    HoldRecord => ("record.hold", true, Record, true),
    /// Read the destruction register and its certificates.
    ReadDestructions => ("destruction.read", false, Vault, true),
    /// See the records whose retention period has ended.
    ReadRetention => ("retention.read", false, Vault, true),
    /// Read the statistics of the archive's work (counts only).
    ReadReports => ("report.read", false, Vault, true),
    /// Approve or reject a proposed filing or correction in a category under review (on a
    /// record or its category; the review queue on the vault).
    ReviewChange => ("record.review", true, Record, true),
}

fn spec(name: &str) -> Option<ActionSpec> {
    ACTIONS.iter().copied().find(|a| a.name == name)
}

/// Proof that the policies allowed action A on one object (or on the vault as a whole).
/// Only this module constructs one, and it names the object it was issued for: services
/// scope their queries by [`Permit::object`], so a permit for one record cannot open
/// another's file.
#[derive(Debug)]
pub struct Permit<A: Action> {
    object: Option<Uuid>,
    _action: PhantomData<A>,
}

impl<A: Action> Permit<A> {
    fn new(object: Option<Uuid>) -> Self {
        Permit {
            object,
            _action: PhantomData,
        }
    }

    /// The object the permit was issued for (`None`: the vault as a whole).
    pub fn object(&self) -> Option<Uuid> {
        self.object
    }
}

/// Permits under which the vault itself reads a file's decrypted content: the viewer
/// renders pages under a view grant, an export is built under an export grant. Nothing
/// else opens content (`file.read_content` is forbidden to everyone in the policy).
pub trait ReadsContent {
    /// The record whose files the permit opens.
    fn record(&self) -> Option<Uuid>;
}
impl ReadsContent for Permit<ViewWithGrant> {
    fn record(&self) -> Option<Uuid> {
        self.object
    }
}
impl ReadsContent for Permit<ExportWithGrant> {
    fn record(&self) -> Option<Uuid> {
        self.object
    }
}
impl ReadsContent for Permit<ReadFileContent> {
    fn record(&self) -> Option<Uuid> {
        self.object
    }
}

impl Policies {
    /// Decides whether `who` may perform A on the object described by `r` (None for
    /// actions on a collection, such as filing a new record). The permit is bound to
    /// `r.id`. A refusal is logged here; the caller audits it (see `db::Tx::refuse`).
    pub fn authorize<A: Action>(
        &self,
        who: &Principal,
        r: Option<&Resource<'_>>,
    ) -> Result<Permit<A>, AppError> {
        let user = who.user();
        match self.decide_for::<A>(&user.roles, &user.department, r) {
            Ok(()) => Ok(Permit::new(r.and_then(|r| r.id))),
            Err(e) => {
                tracing::info!(
                    target: "security",
                    user_id = %user.id,
                    action = A::NAME,
                    grant = r.map(|r| r.grant.as_str()).unwrap_or("none"),
                    "denied"
                );
                Err(e)
            }
        }
    }

    /// Whether `who` may do A on objects like `r`, without a permit: for filtering lists
    /// (search results, queues) through the same rules. Nothing is opened with it.
    pub fn allows<A: Action>(&self, who: &Principal, r: &Resource<'_>) -> bool {
        let user = who.user();
        self.decide(A::NAME, &user.roles, &user.department, Some(r))
    }

    /// Whether people with these roles and department may do the action named
    /// `action_name` on objects like `r`: a yes or no for the authorization matrix and the
    /// start-up checks. It yields no permit, so nothing can be opened with it.
    pub(crate) fn would_allow(
        &self,
        action_name: &str,
        roles: &[Role],
        department: &str,
        r: Option<&Resource<'_>>,
    ) -> bool {
        self.decide(action_name, roles, department, r)
    }

    /// `Ok` if allowed, else the refusal the caller must see: `NotFound` for a `HIDDEN`
    /// action on an object the caller may not even see (a record they may not read, a
    /// request they may not read, a grant they do not hold), `Forbidden` otherwise
    /// (including any refusal on the vault as a whole).
    fn decide_for<A: Action>(
        &self,
        roles: &[Role],
        department: &str,
        r: Option<&Resource<'_>>,
    ) -> Result<(), AppError> {
        if self.decide(A::NAME, roles, department, r) {
            return Ok(());
        }
        // Hidden objects: a caller who may not even see the object learns nothing.
        if A::HIDDEN {
            let object = spec(A::NAME).map(|s| s.object);
            let may_see = match (r, object) {
                // A collection is no secret: refusing an action on it is 403.
                (None, _) => true,
                (Some(_), _) if A::NAME == ReadRecord::NAME || A::NAME == ReadRequest::NAME => {
                    false
                }
                (Some(r), Some(Object::Record)) => {
                    self.decide(ReadRecord::NAME, roles, department, Some(r))
                }
                (Some(r), Some(Object::Request)) => {
                    self.decide(ReadRequest::NAME, roles, department, Some(r))
                }
                // A grant is known to the one who holds it; to anyone else it is hidden.
                (Some(r), Some(Object::Grant)) => r.own,
                _ => false,
            };
            if !may_see {
                return Err(AppError::NotFound);
            }
        }
        Err(AppError::Forbidden)
    }

    /// The decision for the action named `action_name` (one of the `Action::NAME`s) by a
    /// person with these roles and department. Unknown actions and anything the engine
    /// cannot evaluate are denied (and logged).
    fn decide(
        &self,
        action_name: &str,
        roles: &[Role],
        department: &str,
        r: Option<&Resource<'_>>,
    ) -> bool {
        let Some(action) = spec(action_name) else {
            tracing::error!(target: "security", action = action_name, "unknown action; denied");
            return false;
        };
        match self.evaluate(action, roles, department, r) {
            Ok(allowed) => allowed,
            Err(e) => {
                tracing::error!(
                    target: "security",
                    action = action_name,
                    error = %e,
                    "policy evaluation failed; denied"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_listed_once() {
        let mut names: Vec<&str> = ACTIONS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ACTIONS.len());
        assert_eq!(ACTIONS.len(), 27);
    }

    #[test]
    fn policies_can_be_shared_between_threads() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Policies>();
    }

    #[test]
    fn unknown_action_is_denied() {
        let p = Policies::embedded_default().expect("built-in policies load");
        let r = Resource::new(Sensitivity::Public, "x");
        assert!(!p.decide("record.shred", &Role::ALL, "x", Some(&r)));
    }
}
