//! The access rules, exhaustively: every action × role set × same/other department ×
//! sensitivity × grant state, decided by the real Cedar policies (the built-in copy of
//! `policies/`) and compared with an independent oracle written from the rules in plain
//! Rust. A few rows are pinned by hand so that the oracle itself is checked. Pure CPU, no
//! database.

use strongroom::error::AppError;
use strongroom::policy::{
    Action, ApproveRequest, EditRecord, ExportWithGrant, FileRecord, GrantState, ManageCategory,
    ManageLoans, ManageRegister, Policies, ReadAudit, ReadCategory, ReadFileContent, ReadRecord,
    RequestAccess, Resource, RevokeGrant, Sensitivity, UnmaskWithGrant, UploadFile, ViewWithGrant,
};
use strongroom::users::Role;

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

type Check = fn(&Policies, &[Role], &str, Option<&Resource<'_>>) -> Result<(), AppError>;

/// One action, through the typed entry point `authorize` uses.
struct Case {
    name: &'static str,
    hidden: bool,
    check: Check,
}

fn case<A: Action>() -> Case {
    Case {
        name: A::NAME,
        hidden: A::HIDDEN,
        check: |p, roles, dept, r| p.decide_for::<A>(roles, dept, r),
    }
}

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
        case::<ApproveRequest>(),
        case::<RevokeGrant>(),
        case::<ReadAudit>(),
        case::<ManageLoans>(),
        case::<ViewWithGrant>(),
        case::<UnmaskWithGrant>(),
        case::<ExportWithGrant>(),
    ]
}

/// An object as the oracle sees it.
#[derive(Debug, Clone, Copy)]
struct Obj {
    same_dept: bool,
    sensitivity: Sensitivity,
    grant: GrantState,
}

/// The rules, restated: who may see a record (its masked metadata).
fn oracle_sees(roles: &[Role], o: Obj) -> bool {
    let has = |r: Role| roles.contains(&r);
    has(Archivist)
        || ((has(Employee) || has(Supervisor))
            && (o.sensitivity <= Sensitivity::Internal || o.same_dept))
}

/// The rules, restated: whether the action is allowed.
fn oracle(action: &str, roles: &[Role], obj: Option<Obj>) -> bool {
    let has = |r: Role| roles.contains(&r);
    let sees = obj.is_some_and(|o| oracle_sees(roles, o));
    let active = obj.is_some_and(|o| o.grant == GrantState::Active);
    match action {
        "category.read" => true,
        "category.manage" | "record.create" | "register.manage" | "loan.manage" => has(Archivist),
        "record.update" | "file.upload" => obj.is_some() && has(Archivist),
        "record.read" | "request.create" => sees,
        "file.view" | "record.unmask" | "record.export" => sees && active,
        "file.read_content" => false,
        "request.approve" | "grant.revoke" => has(Supervisor),
        "audit.read" => has(Auditor),
        other => panic!("the oracle does not know {other}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allow,
    Forbidden,
    NotFound,
}

fn oracle_outcome(action: &str, hidden: bool, roles: &[Role], obj: Option<Obj>) -> Outcome {
    if oracle(action, roles, obj) {
        Outcome::Allow
    } else if hidden && !obj.is_some_and(|o| oracle_sees(roles, o)) {
        Outcome::NotFound
    } else {
        Outcome::Forbidden
    }
}

fn engine_outcome(p: &Policies, c: &Case, roles: &[Role], obj: Option<Obj>) -> Outcome {
    let resource = obj.map(|o| {
        Resource::new(
            o.sensitivity,
            if o.same_dept { MY_DEPT } else { OTHER_DEPT },
        )
        .with_grant(o.grant)
    });
    match (c.check)(p, roles, MY_DEPT, resource.as_ref()) {
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
fn every_action_role_department_sensitivity_and_grant_state_is_decided_as_the_rules_say() {
    let p = policies();
    let mut objects: Vec<Option<Obj>> = vec![None];
    for same_dept in [true, false] {
        for sensitivity in SENSITIVITIES {
            for grant in GrantState::ALL {
                objects.push(Some(Obj {
                    same_dept,
                    sensitivity,
                    grant,
                }));
            }
        }
    }
    let mut checked = 0;
    let mut allowed = 0;
    let mut mismatches = Vec::new();
    for c in cases() {
        for roles in ROLE_SETS {
            for obj in &objects {
                let want = oracle_outcome(c.name, c.hidden, roles, *obj);
                let got = engine_outcome(&p, &c, roles, *obj);
                if got != want {
                    mismatches.push(format!(
                        "{} by {roles:?} on {obj:?}: engine {got:?}, rules {want:?}",
                        c.name
                    ));
                }
                checked += 1;
                allowed += usize::from(got == Outcome::Allow);
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} cases differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(checked, 16 * ROLE_SETS.len() * (1 + 2 * 4 * 5));
    // Not vacuous either way.
    assert!(
        allowed > 500 && allowed < checked / 2,
        "{allowed} of {checked}"
    );
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
            "file.view",
            "record.unmask",
            "record.export",
        ]
    );
}

/// Hand-written rows: the oracle and the engine must both agree with each.
#[test]
fn pinned_rows() {
    use GrantState as G;
    use Outcome::{Allow, Forbidden, NotFound};
    use Sensitivity as S;
    let obj = |same_dept, sensitivity, grant| {
        Some(Obj {
            same_dept,
            sensitivity,
            grant,
        })
    };
    const SAME: bool = true;
    const OTHER: bool = false;
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
        ("record.read",       &[Archivist],  None,                                NotFound),
        ("record.update",     &[Archivist],  obj(OTHER, S::Secret, G::None),      Allow),
        ("record.update",     &[Employee],   obj(SAME, S::Public, G::None),       Forbidden),
        ("record.update",     &[Archivist],  None,                                NotFound),
        ("file.upload",       &[Supervisor], obj(OTHER, S::Secret, G::None),      NotFound),
        ("file.read_content", &[Archivist],  obj(SAME, S::Public, G::Active),     Forbidden),
        ("file.read_content", &[Auditor],    obj(SAME, S::Public, G::Active),     NotFound),
        ("register.manage",   &[Archivist],  None,                                Allow),
        ("register.manage",   &[Supervisor], None,                                Forbidden),
        ("request.create",    &[Employee],   obj(OTHER, S::Public, G::None),      Allow),
        ("request.create",    &[Employee],   obj(OTHER, S::Secret, G::None),      NotFound),
        ("request.create",    &[Archivist],  obj(OTHER, S::Secret, G::Revoked),   Allow),
        ("request.create",    &[Admin],      obj(SAME, S::Public, G::None),       NotFound),
        ("request.approve",   &[Supervisor], obj(OTHER, S::Secret, G::Pending),   Allow),
        ("request.approve",   &[Supervisor], None,                                Allow),
        ("request.approve",   &[Employee],   obj(SAME, S::Public, G::Pending),    Forbidden),
        ("grant.revoke",      &[Supervisor], obj(SAME, S::Internal, G::Active),   Allow),
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
        ("file.view",         &[Employee],   None,                                NotFound),
        ("record.unmask",     &[Supervisor], obj(OTHER, S::Public, G::Active),    Allow),
        ("record.unmask",     &[Supervisor], obj(OTHER, S::Public, G::Expired),   Forbidden),
        ("record.unmask",     &[Employee],   obj(SAME, S::Internal, G::None),     Forbidden),
        ("record.export",     &[Archivist],  obj(OTHER, S::Secret, G::Active),    Allow),
        ("record.export",     &[Archivist],  obj(OTHER, S::Secret, G::Expired),   Forbidden),
        ("record.export",     &[Admin, Supervisor], obj(SAME, S::Secret, G::Active), Allow),
    ];
    let p = policies();
    let cases = cases();
    for &(action, roles, o, want) in rows {
        let c = cases
            .iter()
            .find(|c| c.name == action)
            .unwrap_or_else(|| panic!("no action {action}"));
        let row = format!("{action} by {roles:?} on {o:?}");
        assert_eq!(
            oracle_outcome(action, c.hidden, roles, o),
            want,
            "oracle: {row}"
        );
        assert_eq!(engine_outcome(&p, c, roles, o), want, "engine: {row}");
        // The untyped entry point agrees with the typed one.
        let resource = o.map(|o| {
            Resource::new(
                o.sensitivity,
                if o.same_dept { MY_DEPT } else { OTHER_DEPT },
            )
            .with_grant(o.grant)
        });
        assert_eq!(
            p.decide(action, roles, MY_DEPT, resource.as_ref()),
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
            for s in SENSITIVITIES {
                let r = Resource::new(s, OTHER_DEPT).with_grant(GrantState::Active);
                assert_eq!(
                    loaded.decide(c.name, roles, MY_DEPT, Some(&r)),
                    embedded.decide(c.name, roles, MY_DEPT, Some(&r)),
                    "{} by {roles:?} on {s:?}",
                    c.name
                );
            }
        }
    }
}
