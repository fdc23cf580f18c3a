//! The access rules, exhaustively: every action × role set × same/other department ×
//! sensitivity × grant state (and, for requests and grants, own/not own; for requests, the
//! route: approver role and same-department rule), decided by the real Cedar policies (the
//! built-in copy of `policies/`) through the private `decide_for`/`decide`, and compared
//! with an independent oracle written from the rules in plain Rust. Each action is asked
//! only about the objects it applies to (its object kind, and the vault when it may be
//! asked there); the other questions are schema errors, checked apart to be refused. A few
//! rows are pinned by hand so that the oracle itself is checked. Pure CPU, no database.

use super::ReadReports;
use super::ReadScrub;
use super::ReviewAccess;
use super::ReviewChange;
use super::{
    spec, Action, ApproveRequest, CancelRequest, EditRecord, ExportWithGrant, FileRecord,
    GrantState, ManageCategory, ManageLoans, ManageRegister, ManageUsers, Object, Policies,
    ReadAudit, ReadCategory, ReadFileContent, ReadRecord, ReadRequest, RequestAccess, Resource,
    RevokeGrant, Sensitivity, UnmaskWithGrant, UploadFile, ViewWithGrant, ACTIONS,
};
use super::{DestroyRecord, HoldRecord, ReadDestructions, ReadRetention};
use crate::error::AppError;
use crate::users::Role;

use Role::{Admin, Archivist, Auditor, Employee, Supervisor};

const MY_DEPT: &str = "sales";
const OTHER_DEPT: &str = "legal";

const SENSITIVITIES: [Sensitivity; 4] = [
    Sensitivity::Public,
    Sensitivity::Internal,
    Sensitivity::Confidential,
    Sensitivity::Secret,
];

/// Each single role, then no role at all and a few people holding several.
const ROLE_SETS: &[&[Role]] = &[
    &[Archivist],
    &[Employee],
    &[Supervisor],
    &[Auditor],
    &[Admin],
    &[],
    &[Employee, Auditor],
    &[Admin, Supervisor],
    &[Auditor, Admin],
];

/// The approver role a request's route names: the usual one, and another role that one of
/// the role sets holds together with `supervisor` (and others hold without it).
const APPROVER_ROLES: [Role; 2] = [Supervisor, Admin];

type Check = fn(&Policies, &[Role], &str, Option<&Resource<'_>>) -> Result<(), AppError>;

/// One action, through the typed entry point `authorize` uses.
struct Case {
    name: &'static str,
    hidden: bool,
    /// The kind of object the action names, and whether it may be asked on the vault.
    object: Object,
    on_vault: bool,
    check: Check,
}

fn case<A: Action>() -> Case {
    let s = spec(A::NAME).unwrap_or_else(|| panic!("{} is not in ACTIONS", A::NAME));
    Case {
        name: A::NAME,
        hidden: A::HIDDEN,
        object: s.object,
        on_vault: s.on_vault,
        check: |p, roles, dept, r| p.decide_for::<A>(roles, dept, r),
    }
}

/// Every action, in the order of the `actions!` list.
fn cases() -> Vec<Case> {
    vec![
        case::<ReadCategory>(),
        case::<ManageCategory>(),
        case::<FileRecord>(),
        case::<ReadRecord>(),
        case::<EditRecord>(),
        case::<UploadFile>(),
        case::<ReadFileContent>(),
        case::<ManageRegister>(),
        case::<RequestAccess>(),
        case::<ReadRequest>(),
        case::<ApproveRequest>(),
        case::<CancelRequest>(),
        case::<RevokeGrant>(),
        case::<ReadAudit>(),
        case::<ManageLoans>(),
        case::<ViewWithGrant>(),
        case::<UnmaskWithGrant>(),
        case::<ExportWithGrant>(),
        case::<ManageUsers>(),
        case::<ReviewAccess>(),
        case::<ReadScrub>(),
        case::<DestroyRecord>(),
        case::<HoldRecord>(),
        case::<ReadDestructions>(),
        case::<ReadRetention>(),
        case::<ReadReports>(),
        case::<ReviewChange>(),
    ]
}

/// A request's route as the oracle sees it.
#[derive(Debug, Clone, Copy)]
struct Route {
    approver: Role,
    same_department: bool,
}

/// An object as the oracle sees it.
#[derive(Debug, Clone, Copy)]
struct Obj {
    same_dept: bool,
    sensitivity: Sensitivity,
    grant: GrantState,
    /// The caller's own (their request, their grant).
    own: bool,
    /// Requests only.
    route: Option<Route>,
}

/// Every question worth asking about an action: the vault as a whole where it may be asked
/// there, then every object of its kind.
fn questions(c: &Case) -> Vec<Option<Obj>> {
    let mut out = Vec::new();
    if c.on_vault || c.object == Object::Vault {
        out.push(None);
    }
    if c.object == Object::Vault {
        return out;
    }
    let owns: &[bool] = match c.object {
        Object::Request | Object::Grant => &[false, true],
        _ => &[false],
    };
    let mut routes: Vec<Option<Route>> = Vec::new();
    if c.object == Object::Request {
        for approver in APPROVER_ROLES {
            for same_department in [true, false] {
                routes.push(Some(Route {
                    approver,
                    same_department,
                }));
            }
        }
    } else {
        routes.push(None);
    }
    for same_dept in [true, false] {
        for sensitivity in SENSITIVITIES {
            for grant in GrantState::ALL {
                for &own in owns {
                    for &route in &routes {
                        out.push(Some(Obj {
                            same_dept,
                            sensitivity,
                            grant,
                            own,
                            route,
                        }));
                    }
                }
            }
        }
    }
    out
}

/// The rules, restated: who may see a record (its masked metadata).
fn oracle_sees_record(roles: &[Role], o: Obj) -> bool {
    let has = |r: Role| roles.contains(&r);
    has(Archivist)
        || ((has(Employee) || has(Supervisor))
            && (o.sensitivity <= Sensitivity::Internal || o.same_dept))
}

/// The rules, restated: whether the caller is one of the approvers a request's route names
/// (a supervisor who also holds the route's role, of the record's department when the
/// route says so).
fn oracle_routed_approver(roles: &[Role], o: Obj) -> bool {
    let has = |r: Role| roles.contains(&r);
    o.route.is_some_and(|route| {
        has(Supervisor) && has(route.approver) && (!route.same_department || o.same_dept)
    })
}

/// The rules, restated: whether the action is allowed (`None`: on the vault as a whole).
fn oracle(action: &str, roles: &[Role], obj: Option<Obj>) -> bool {
    let has = |r: Role| roles.contains(&r);
    let sees = obj.is_some_and(|o| oracle_sees_record(roles, o));
    let active = obj.is_some_and(|o| o.grant == GrantState::Active);
    let own = obj.is_some_and(|o| o.own);
    let approver = obj.is_some_and(|o| oracle_routed_approver(roles, o));
    match action {
        "category.read" => true,
        "category.manage" | "record.create" | "register.manage" | "loan.manage" => has(Archivist),
        "record.update" | "file.upload" => obj.is_some() && has(Archivist),
        "record.read" | "request.create" => sees,
        "file.view" | "record.unmask" | "record.export" => sees && active,
        "file.read_content" => false,
        // Requests: the requester, the routed approvers and the auditors see one; only the
        // requester cancels; only a routed approver who is not the requester decides.
        "request.read" => obj.is_some() && (own || approver || has(Auditor)),
        "request.cancel" => obj.is_some() && own,
        "request.approve" => obj.is_some() && approver && !own,
        // Grants: any supervisor reviews the list (the vault); a supervisor ends a grant on
        // a record of their own department, whatever its sensitivity.
        "grant.revoke" => has(Supervisor) && obj.is_none_or(|o| o.same_dept),
        "audit.read" => obj.is_none() && has(Auditor),
        "user.manage" => obj.is_none() && has(Admin),
        "user.review" => obj.is_none() && (has(Admin) || has(Auditor)),
        "scrub.read" => obj.is_none() && has(Admin),
        "record.destroy" => has(Archivist),
        "record.hold" => has(Supervisor) && obj.is_some_and(|o| o.same_dept),
        "destruction.read" => obj.is_none() && (has(Supervisor) || has(Auditor) || has(Archivist)),
        "retention.read" => obj.is_none() && (has(Archivist) || has(Supervisor)),
        "report.read" => obj.is_none() && (has(Supervisor) || has(Auditor)),
        "record.review" => has(Archivist) || (has(Supervisor) && obj.is_none_or(|o| o.same_dept)),
        other => panic!("the oracle does not know {other}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allow,
    Forbidden,
    NotFound,
}

/// The rules, restated: whether a caller refused a hidden action may know the object
/// exists. A record they may read, a request they may read; never the vault, a category
/// or a grant.
fn oracle_may_see(object: Object, roles: &[Role], obj: Option<Obj>) -> bool {
    match (object, obj) {
        // A collection is no secret: a refusal on the vault is 403.
        (_, None) => true,
        (Object::Record, Some(o)) => oracle_sees_record(roles, o),
        (Object::Request, Some(_)) => oracle("request.read", roles, obj),
        // A grant is known to the one who holds it.
        (Object::Grant, Some(o)) => o.own,
        (Object::Category | Object::Vault, Some(_)) => false,
    }
}

fn oracle_outcome(c: &Case, roles: &[Role], obj: Option<Obj>) -> Outcome {
    if oracle(c.name, roles, obj) {
        Outcome::Allow
    } else if c.hidden && !oracle_may_see(c.object, roles, obj) {
        Outcome::NotFound
    } else {
        Outcome::Forbidden
    }
}

/// What the engine is told about the object.
fn resource(o: Obj) -> Resource<'static> {
    let r = Resource::new(
        o.sensitivity,
        if o.same_dept { MY_DEPT } else { OTHER_DEPT },
    )
    .with_grant(o.grant)
    .owned(o.own);
    match o.route {
        Some(route) => r.routed(route.approver, route.same_department),
        None => r,
    }
}

fn engine_outcome(p: &Policies, c: &Case, roles: &[Role], obj: Option<Obj>) -> Outcome {
    let r = obj.map(resource);
    match (c.check)(p, roles, MY_DEPT, r.as_ref()) {
        Ok(()) => Outcome::Allow,
        Err(AppError::Forbidden) => Outcome::Forbidden,
        Err(AppError::NotFound) => Outcome::NotFound,
        Err(e) => panic!("{}: unexpected refusal {e:?}", c.name),
    }
}

fn policies() -> Policies {
    Policies::embedded_default().expect("the built-in policies load")
}

#[test]
fn the_matrix_covers_every_action_the_server_asks_about() {
    let names: Vec<&str> = cases().iter().map(|c| c.name).collect();
    let listed: Vec<&str> = ACTIONS.iter().map(|a| a.name).collect();
    assert_eq!(names, listed);
}

#[test]
fn every_action_role_department_sensitivity_grant_owner_and_route_is_decided_as_the_rules_say() {
    let p = policies();
    let mut checked = 0;
    let mut allowed = 0;
    let mut mismatches = Vec::new();
    // Per action: (asked, allowed).
    let mut per_action: Vec<(&str, usize, usize)> = Vec::new();
    for c in cases() {
        let questions = questions(&c);
        let (mut asked, mut yes) = (0, 0);
        for roles in ROLE_SETS {
            for obj in &questions {
                let want = oracle_outcome(&c, roles, *obj);
                let got = engine_outcome(&p, &c, roles, *obj);
                if got != want {
                    mismatches.push(format!(
                        "{} by {roles:?} on {obj:?}: engine {got:?}, rules {want:?}",
                        c.name
                    ));
                }
                asked += 1;
                yes += usize::from(got == Outcome::Allow);
            }
        }
        checked += asked;
        allowed += yes;
        per_action.push((c.name, asked, yes));
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} cases differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );

    // Objects of each kind: department × sensitivity × grant state; grants also own/not
    // own; requests also own/not own × approver role × same-department rule.
    let record = 2 * SENSITIVITIES.len() * GrantState::ALL.len();
    let grant = record * 2;
    let request = grant * APPROVER_ROLES.len() * 2;
    // 16 actions on categories or records (each also on the vault), 3 on requests only,
    // 1 on grants and the vault, 7 on the vault only.
    let per_role_set = 16 * (1 + record) + 3 * request + (1 + grant) + 7;
    assert_eq!(checked, ROLE_SETS.len() * per_role_set);
    assert_eq!(checked, 15_336);

    // Not vacuous either way, as a whole and per action: every action is allowed to
    // someone on something and refused to someone on something, apart from the two rules
    // that are the same for all.
    assert!(
        allowed > 3_000 && allowed < checked / 2,
        "{allowed} of {checked}"
    );
    for (name, asked, yes) in per_action {
        match name {
            "category.read" => assert_eq!(yes, asked, "{name}"),
            "file.read_content" => assert_eq!(yes, 0, "{name}"),
            _ => assert!(yes > 0 && yes < asked, "{name}: {yes} of {asked}"),
        }
    }
}

/// Questions outside the schema (an action on an object kind it does not apply to, or on
/// the vault when it is only asked about objects) cannot be evaluated: they are refused.
#[test]
fn questions_the_schema_does_not_allow_are_refused() {
    let p = policies();
    let request = Obj {
        same_dept: true,
        sensitivity: Sensitivity::Public,
        grant: GrantState::Active,
        own: true,
        route: Some(Route {
            approver: Supervisor,
            same_department: false,
        }),
    };
    let all_roles: &[Role] = &Role::ALL;
    for c in cases() {
        if !(c.on_vault || c.object == Object::Vault) {
            assert!(
                !p.decide(c.name, all_roles, MY_DEPT, None),
                "{} on the vault",
                c.name
            );
            // A refusal on the vault as a whole is 403, hidden action or not.
            assert_eq!(
                engine_outcome(&p, &c, all_roles, None),
                Outcome::Forbidden,
                "{} on the vault",
                c.name
            );
        }
        if c.object == Object::Vault {
            assert!(
                !p.decide(c.name, all_roles, MY_DEPT, Some(&resource(request))),
                "{} on an object",
                c.name
            );
        }
    }
}

#[test]
fn actions_hidden_from_those_who_may_not_see_the_object() {
    let hidden: Vec<&str> = cases()
        .into_iter()
        .filter(|c| c.hidden)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        hidden,
        [
            "category.read",
            "record.read",
            "record.update",
            "file.upload",
            "file.read_content",
            "request.create",
            "request.read",
            "request.approve",
            "request.cancel",
            "grant.revoke",
            "file.view",
            "record.unmask",
            "record.export",
            "record.destroy",
            "record.hold",
            "record.review",
        ]
    );
}

/// Hand-written rows: the oracle and the engine must both agree with each.
#[test]
fn pinned_rows() {
    use GrantState as G;
    use Outcome::{Allow, Forbidden, NotFound};
    use Sensitivity as S;
    const SAME: bool = true;
    const OTHER: bool = false;
    const OWN: bool = true;
    const NOT_OWN: bool = false;
    // Route: approvers must be of the record's department, or may be of any.
    const SAME_DEPT: bool = true;
    const ANY_DEPT: bool = false;
    let obj = |same_dept, sensitivity, grant| {
        Some(Obj {
            same_dept,
            sensitivity,
            grant,
            own: false,
            route: None,
        })
    };
    let req = |same_dept, sensitivity, own, approver, same_department| {
        Some(Obj {
            same_dept,
            sensitivity,
            grant: GrantState::Pending,
            own,
            route: Some(Route {
                approver,
                same_department,
            }),
        })
    };
    let grant = |same_dept, sensitivity, own| {
        Some(Obj {
            same_dept,
            sensitivity,
            grant: GrantState::Active,
            own,
            route: None,
        })
    };
    #[rustfmt::skip]
    let rows: &[(&str, &[Role], Option<Obj>, Outcome)] = &[
        ("category.read",     &[],           None,                                Allow),
        ("category.read",     &[Auditor],    obj(OTHER, S::Secret, G::None),      Allow),
        ("category.manage",   &[Archivist],  None,                                Allow),
        ("category.manage",   &[Employee],   None,                                Forbidden),
        ("record.create",     &[Archivist],  None,                                Allow),
        ("record.create",     &[Admin],      None,                                Forbidden),
        ("record.read",       &[Employee],   obj(OTHER, S::Internal, G::None),    Allow),
        ("record.read",       &[Employee],   obj(OTHER, S::Confidential, G::None), NotFound),
        ("record.read",       &[Employee],   obj(SAME, S::Secret, G::None),       Allow),
        ("record.read",       &[Supervisor], obj(OTHER, S::Secret, G::Active),    NotFound),
        ("record.read",       &[Archivist],  obj(OTHER, S::Secret, G::None),      Allow),
        ("record.read",       &[Auditor],    obj(SAME, S::Public, G::None),       NotFound),
        ("record.read",       &[Admin],      obj(SAME, S::Public, G::Active),     NotFound),
        ("record.read",       &[Archivist],  None,                                Forbidden),
        ("record.update",     &[Archivist],  obj(OTHER, S::Secret, G::None),      Allow),
        ("record.update",     &[Employee],   obj(SAME, S::Public, G::None),       Forbidden),
        ("record.update",     &[Archivist],  None,                                Forbidden),
        ("file.upload",       &[Supervisor], obj(OTHER, S::Secret, G::None),      NotFound),
        ("file.read_content", &[Archivist],  obj(SAME, S::Public, G::Active),     Forbidden),
        ("file.read_content", &[Auditor],    obj(SAME, S::Public, G::Active),     NotFound),
        ("register.manage",   &[Archivist],  None,                                Allow),
        ("register.manage",   &[Supervisor], None,                                Forbidden),
        ("request.create",    &[Employee],   obj(OTHER, S::Public, G::None),      Allow),
        ("request.create",    &[Employee],   obj(OTHER, S::Secret, G::None),      NotFound),
        ("request.create",    &[Archivist],  obj(OTHER, S::Secret, G::Revoked),   Allow),
        ("request.create",    &[Admin],      obj(SAME, S::Public, G::None),       NotFound),
        // The requester reads and cancels their own request, and never decides on it.
        ("request.read",      &[Employee],   req(OTHER, S::Secret, OWN, Supervisor, SAME_DEPT), Allow),
        ("request.cancel",    &[Employee],   req(OTHER, S::Secret, OWN, Supervisor, SAME_DEPT), Allow),
        ("request.approve",   &[Employee],   req(OTHER, S::Secret, OWN, Supervisor, SAME_DEPT), Forbidden),
        ("request.approve",   &[Supervisor], req(SAME, S::Internal, OWN, Supervisor, SAME_DEPT), Forbidden),
        ("request.read",      &[Supervisor], req(SAME, S::Internal, OWN, Supervisor, SAME_DEPT), Allow),
        // Someone else's request: employees do not even see it.
        ("request.read",      &[Employee],   req(SAME, S::Public, NOT_OWN, Supervisor, SAME_DEPT), NotFound),
        ("request.approve",   &[Employee],   req(SAME, S::Public, NOT_OWN, Supervisor, SAME_DEPT), NotFound),
        ("request.cancel",    &[Employee],   req(SAME, S::Public, NOT_OWN, Supervisor, SAME_DEPT), NotFound),
        // Routed supervisors see and decide, but cancel nothing.
        ("request.approve",   &[Supervisor], req(SAME, S::Secret, NOT_OWN, Supervisor, SAME_DEPT), Allow),
        ("request.read",      &[Supervisor], req(SAME, S::Secret, NOT_OWN, Supervisor, SAME_DEPT), Allow),
        ("request.cancel",    &[Supervisor], req(SAME, S::Secret, NOT_OWN, Supervisor, SAME_DEPT), Forbidden),
        ("request.approve",   &[Supervisor], req(OTHER, S::Public, NOT_OWN, Supervisor, SAME_DEPT), NotFound),
        ("request.read",      &[Supervisor], req(OTHER, S::Public, NOT_OWN, Supervisor, SAME_DEPT), NotFound),
        ("request.approve",   &[Supervisor], req(OTHER, S::Secret, NOT_OWN, Supervisor, ANY_DEPT), Allow),
        // A route naming another role: a supervisor who also holds it, nobody else.
        ("request.approve",   &[Admin, Supervisor], req(SAME, S::Public, NOT_OWN, Admin, SAME_DEPT), Allow),
        ("request.approve",   &[Supervisor], req(SAME, S::Public, NOT_OWN, Admin, SAME_DEPT), NotFound),
        ("request.approve",   &[Admin],      req(SAME, S::Public, NOT_OWN, Admin, ANY_DEPT), NotFound),
        // Auditors read every request and decide none.
        ("request.read",      &[Auditor],    req(OTHER, S::Secret, NOT_OWN, Supervisor, SAME_DEPT), Allow),
        ("request.approve",   &[Auditor],    req(OTHER, S::Secret, NOT_OWN, Supervisor, ANY_DEPT), Forbidden),
        ("request.cancel",    &[Auditor],    req(OTHER, S::Secret, NOT_OWN, Supervisor, ANY_DEPT), Forbidden),
        ("request.approve",   &[Employee, Auditor], req(SAME, S::Public, NOT_OWN, Supervisor, ANY_DEPT), Forbidden),
        // Grants: ended by supervisors of the grant's record's department only; the list
        // of grants in force (the vault) by any supervisor. A refused grant is not found.
        ("grant.revoke",      &[Supervisor], grant(SAME, S::Internal, NOT_OWN),   Allow),
        ("grant.revoke",      &[Supervisor], grant(SAME, S::Secret, OWN),         Allow),
        ("grant.revoke",      &[Supervisor], grant(OTHER, S::Public, NOT_OWN),    NotFound),
        ("grant.revoke",      &[Admin, Supervisor], grant(OTHER, S::Public, NOT_OWN), NotFound),
        ("grant.revoke",      &[Archivist],  grant(SAME, S::Public, NOT_OWN),     NotFound),
        ("grant.revoke",      &[Supervisor], None,                                Allow),
        ("grant.revoke",      &[Archivist],  None,                                Forbidden),
        ("audit.read",        &[Auditor],    None,                                Allow),
        ("audit.read",        &[Admin],      None,                                Forbidden),
        ("loan.manage",       &[Archivist],  obj(OTHER, S::Secret, G::None),      Allow),
        ("loan.manage",       &[Supervisor], None,                                Forbidden),
        ("file.view",         &[Employee],   obj(SAME, S::Secret, G::Active),     Allow),
        ("file.view",         &[Employee],   obj(SAME, S::Secret, G::Pending),    Forbidden),
        ("file.view",         &[Employee],   obj(SAME, S::Secret, G::Revoked),    Forbidden),
        ("file.view",         &[Employee],   obj(OTHER, S::Secret, G::Active),    NotFound),
        ("file.view",         &[Auditor],    obj(SAME, S::Public, G::Active),     NotFound),
        ("file.view",         &[Employee],   None,                                Forbidden),
        ("record.unmask",     &[Supervisor], obj(OTHER, S::Public, G::Active),    Allow),
        ("record.unmask",     &[Supervisor], obj(OTHER, S::Public, G::Expired),   Forbidden),
        ("record.unmask",     &[Employee],   obj(SAME, S::Internal, G::None),     Forbidden),
        ("record.export",     &[Archivist],  obj(OTHER, S::Secret, G::Active),    Allow),
        ("record.export",     &[Archivist],  obj(OTHER, S::Secret, G::Expired),   Forbidden),
        ("record.export",     &[Admin, Supervisor], obj(SAME, S::Secret, G::Active), Allow),
        // Only administrators manage accounts.
        ("user.manage",       &[Admin],      None,                                Allow),
        ("user.manage",       &[Auditor, Admin], None,                            Allow),
        ("user.manage",       &[Supervisor], None,                                Forbidden),
        ("user.manage",       &[Archivist],  None,                                Forbidden),
        ("user.manage",       &[Auditor],    None,                                Forbidden),
        // Administrators and auditors hold the access review.
        ("user.review",       &[Admin],      None,                                Allow),
        ("user.review",       &[Auditor],    None,                                Allow),
        ("user.review",       &[Supervisor], None,                                Forbidden),
        ("user.review",       &[Employee],   None,                                Forbidden),
        // Only administrators see the integrity scrub's results.
        ("scrub.read",        &[Admin],      None,                                Allow),
        ("scrub.read",        &[Auditor],    None,                                Forbidden),
        ("scrub.read",        &[Archivist],  None,                                Forbidden),
        // Supervisors and auditors read the statistics; nobody else.
        ("report.read",       &[Supervisor], None,                                Allow),
        ("report.read",       &[Auditor],    None,                                Allow),
        ("report.read",       &[Employee, Archivist, Admin], None,                Forbidden),
        // Reviewing proposals: archivists anywhere, supervisors in their own department.
        ("record.review",     &[Archivist],  obj(OTHER, S::Secret, G::None),      Allow),
        ("record.review",     &[Supervisor], obj(SAME, S::Secret, G::None),       Allow),
        ("record.review",     &[Supervisor], obj(OTHER, S::Internal, G::None),    Forbidden),
        ("record.review",     &[Employee],   obj(SAME, S::Internal, G::None),     Forbidden),
    ];
    let p = policies();
    let cases = cases();
    for &(action, roles, o, want) in rows {
        let c = cases
            .iter()
            .find(|c| c.name == action)
            .unwrap_or_else(|| panic!("no action {action}"));
        let row = format!("{action} by {roles:?} on {o:?}");
        assert_eq!(oracle_outcome(c, roles, o), want, "oracle: {row}");
        assert_eq!(engine_outcome(&p, c, roles, o), want, "engine: {row}");
        // The untyped entry point agrees with the typed one.
        let r = o.map(resource);
        assert_eq!(
            p.decide(action, roles, MY_DEPT, r.as_ref()),
            want == Allow,
            "decide: {row}"
        );
    }
}

#[test]
fn policies_loaded_from_the_directory_decide_like_the_built_in_copy() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let loaded = Policies::load(&dir).expect("policies/ loads");
    let embedded = policies();
    for c in cases() {
        for roles in ROLE_SETS {
            for obj in questions(&c) {
                let r = obj.map(resource);
                assert_eq!(
                    loaded.decide(c.name, roles, MY_DEPT, r.as_ref()),
                    embedded.decide(c.name, roles, MY_DEPT, r.as_ref()),
                    "{} by {roles:?} on {obj:?}",
                    c.name
                );
            }
        }
    }
}
