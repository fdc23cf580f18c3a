//! Loading the Cedar policies and asking them. Loading is all-or-nothing: the schema
//! parses, the policies parse and pass strict validation against it, every action the
//! server asks about is declared, and a sample request for each action conforms. Only then
//! is there a `Policies` to authorize with.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::ffi::DetailedError;
use cedar_policy::{
    AuthorizationError, Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
    Validator,
};

use super::error::PolicyError;
use super::{ActionSpec, GrantState, Object, Resource, Sensitivity, ACTIONS};
use crate::users::Role;

/// The policy file in the policies directory.
pub const POLICY_FILE: &str = "access.cedar";
/// The schema the policies are validated against.
pub const SCHEMA_FILE: &str = "access.cedarschema";

const EMBEDDED_POLICIES: &str = include_str!("../../policies/access.cedar");
const EMBEDDED_SCHEMA: &str = include_str!("../../policies/access.cedarschema");
const EMBEDDED_DIR: &str = "(built-in) policies";

/// The loaded, validated access policies. Held in the application state; authorization is
/// a method on it, so nothing decides without the loaded set.
pub struct Policies {
    set: PolicySet,
    schema: Schema,
    authorizer: Authorizer,
    names: Names,
    /// Where the policies came from, for logs.
    origin: String,
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policies")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Why a question got no answer (and so a denial).
#[derive(Debug)]
pub(super) enum Refusal {
    /// The request or its entities do not fit the schema.
    Request(String),
    /// A policy failed while being evaluated.
    Evaluation(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Request(e) => write!(f, "request does not fit the schema: {e}"),
            Refusal::Evaluation(e) => write!(f, "{e}"),
        }
    }
}

/// The entity uids the server sends, parsed once.
struct Names {
    principal: EntityUid,
    vault: EntityUid,
    category: EntityUid,
    record: EntityUid,
    request: EntityUid,
    grant: EntityUid,
    action: EntityTypeName,
}

impl Names {
    fn new() -> Result<Names, String> {
        let ty = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        let uid = |t: &str, id: &str| -> Result<EntityUid, String> {
            Ok(EntityUid::from_type_name_and_id(ty(t)?, EntityId::new(id)))
        };
        Ok(Names {
            principal: uid("User", "principal")?,
            vault: uid("Vault", "vault")?,
            category: uid("Category", "object")?,
            record: uid("Record", "object")?,
            request: uid("Request", "object")?,
            grant: uid("Grant", "object")?,
            action: ty("Action")?,
        })
    }
}

impl Policies {
    /// Loads `DIR/access.cedar` and `DIR/access.cedarschema`. When `dir` does not exist,
    /// the copies built into the binary (the repository's `policies/`), and a warning in
    /// the log; when it exists, both files must be there and valid.
    pub fn load(dir: &Path) -> Result<Policies, PolicyError> {
        if !dir.exists() {
            tracing::warn!(
                target: "security",
                dir = %dir.display(),
                "policy directory not found; using the built-in access policies"
            );
            return Self::embedded_default();
        }
        let read = |name: &str| {
            let path = dir.join(name);
            let shown = path.display().to_string();
            std::fs::read_to_string(&path)
                .map(|text| (shown.clone(), text))
                .map_err(|e| PolicyError::file(&shown, format!("cannot read: {e}")))
        };
        let (policy_file, policy_text) = read(POLICY_FILE)?;
        let (schema_file, schema_text) = read(SCHEMA_FILE)?;
        let p = Self::from_sources(
            &dir.display().to_string(),
            (&policy_file, &policy_text),
            (&schema_file, &schema_text),
        )?;
        tracing::info!(dir = %dir.display(), "access policies loaded");
        Ok(p)
    }

    /// The repository's `policies/access.cedar` and `access.cedarschema` as compiled into
    /// the binary.
    pub fn embedded_default() -> Result<Policies, PolicyError> {
        Self::from_sources(
            EMBEDDED_DIR,
            (&format!("{EMBEDDED_DIR}/{POLICY_FILE}"), EMBEDDED_POLICIES),
            (&format!("{EMBEDDED_DIR}/{SCHEMA_FILE}"), EMBEDDED_SCHEMA),
        )
    }

    /// Parses and validates a policy text against a schema text; `(file name, text)` pairs,
    /// the names only for the messages.
    pub fn from_sources(
        origin: &str,
        (policy_file, policy_text): (&str, &str),
        (schema_file, schema_text): (&str, &str),
    ) -> Result<Policies, PolicyError> {
        let (schema, warnings) = Schema::from_cedarschema_str(schema_text).map_err(|e| {
            PolicyError::diagnostic(schema_file, schema_text, &DetailedError::from(&e), 0)
        })?;
        for w in warnings {
            let w = PolicyError::diagnostic(schema_file, schema_text, &DetailedError::from(&w), 0);
            tracing::warn!(target: "security", "policy schema warning: {w}");
        }

        let set = PolicySet::from_str(policy_text).map_err(|e| {
            let more = e.iter().count().saturating_sub(1);
            match e.iter().next() {
                Some(first) => PolicyError::diagnostic(
                    policy_file,
                    policy_text,
                    &DetailedError::from(first),
                    more,
                ),
                None => {
                    PolicyError::diagnostic(policy_file, policy_text, &DetailedError::from(&e), 0)
                }
            }
        })?;

        let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        let errors: Vec<DetailedError> = validation
            .validation_errors()
            .map(DetailedError::from)
            .collect();
        if let Some(first) = errors.first() {
            return Err(PolicyError::diagnostic(
                policy_file,
                policy_text,
                first,
                errors.len() - 1,
            ));
        }
        for w in validation.validation_warnings() {
            let w = PolicyError::diagnostic(policy_file, policy_text, &DetailedError::from(w), 0);
            tracing::warn!(target: "security", "policy warning: {w}");
        }

        let names = Names::new().map_err(|e| PolicyError::file(schema_file, e))?;
        let policies = Policies {
            set,
            schema,
            authorizer: Authorizer::new(),
            names,
            origin: origin.to_string(),
        };
        policies.self_check(schema_file)?;
        Ok(policies)
    }

    /// Where the policies came from (a directory, or the built-in copy).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Every action the server asks about is declared, and the requests it builds for each
    /// conform to the schema: otherwise a schema edit would surface as every such request
    /// being denied, long after the start.
    fn self_check(&self, schema_file: &str) -> Result<(), PolicyError> {
        let declared: HashSet<&str> = self.schema.actions().map(|a| a.id().unescaped()).collect();
        let sample = Resource::new(Sensitivity::Secret, "sample")
            .with_grant(GrantState::Active)
            .routed(Role::Supervisor, true);
        for action in ACTIONS {
            if !declared.contains(action.name) {
                return Err(PolicyError::file(
                    schema_file,
                    format!(
                        "action \"{}\" is not declared, but the server asks about it",
                        action.name
                    ),
                ));
            }
            let questions: Vec<Option<&Resource<'_>>> = match (action.object, action.on_vault) {
                (Object::Vault, _) => vec![None],
                (_, true) => vec![None, Some(&sample)],
                (_, false) => vec![Some(&sample)],
            };
            for r in questions {
                let object = match (r, action.object) {
                    (None, _) | (_, Object::Vault) => "Vault",
                    (Some(_), Object::Category) => "Category",
                    (Some(_), Object::Record) => "Record",
                    (Some(_), Object::Request) => "Request",
                    (Some(_), Object::Grant) => "Grant",
                };
                match self.evaluate(*action, &Role::ALL, "sample", r) {
                    Ok(_) => {}
                    Err(Refusal::Request(e)) => {
                        return Err(PolicyError::file(
                            schema_file,
                            format!(
                                "the server's request for \"{}\" on a {object} does not fit the schema: {e}",
                                action.name
                            ),
                        ))
                    }
                    // Run-time errors depend on the data; such requests are denied when
                    // they happen. Say so now rather than on the first unlucky request.
                    Err(Refusal::Evaluation(e)) => tracing::warn!(
                        target: "security",
                        origin = %self.origin,
                        "a sample request for \"{}\" on a {object} made a policy fail (such requests are denied): {e}",
                        action.name
                    ),
                }
            }
        }
        Ok(())
    }

    /// Asks Cedar. `Err` when the request cannot be built or a policy errored while being
    /// evaluated: the caller denies.
    pub(super) fn evaluate(
        &self,
        action: ActionSpec,
        roles: &[Role],
        department: &str,
        r: Option<&Resource<'_>>,
    ) -> Result<bool, Refusal> {
        let (request, entities) = self
            .request(action, roles, department, r)
            .map_err(Refusal::Request)?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.set, &entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                AuthorizationError::PolicyEvaluationError(e) => {
                    format!("policy {}: {}", self.label(e.policy_id()), e.inner())
                }
                #[allow(unreachable_patterns)] // the enum is non-exhaustive
                other => other.to_string(),
            })
            .collect();
        if !errors.is_empty() {
            return Err(Refusal::Evaluation(errors.join("; ")));
        }
        Ok(response.decision() == Decision::Allow)
    }

    /// A policy's `@id` annotation if it has one (Cedar numbers them `policy0`, ...).
    fn label(&self, id: &PolicyId) -> String {
        match self.set.annotation(id, "id") {
            Some(name) => format!("\"{name}\""),
            None => format!("`{id}`"),
        }
    }

    /// The Cedar request and entities for one question.
    fn request(
        &self,
        action: ActionSpec,
        roles: &[Role],
        department: &str,
        r: Option<&Resource<'_>>,
    ) -> Result<(Request, Entities), String> {
        let n = &self.names;
        let principal = Entity::new(
            n.principal.clone(),
            HashMap::from([
                (
                    "roles".to_string(),
                    RestrictedExpression::new_set(
                        roles
                            .iter()
                            .map(|r| RestrictedExpression::new_string(r.as_str().to_string())),
                    ),
                ),
                (
                    "department".to_string(),
                    RestrictedExpression::new_string(department.to_string()),
                ),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let (resource_uid, resource) = match r {
            None => (
                n.vault.clone(),
                Entity::new_no_attrs(n.vault.clone(), HashSet::new()),
            ),
            Some(r) => {
                let uid = match action.object {
                    Object::Category => n.category.clone(),
                    Object::Record => n.record.clone(),
                    Object::Request => n.request.clone(),
                    Object::Grant => n.grant.clone(),
                    Object::Vault => return Err(format!("\"{}\" names no object", action.name)),
                };
                let mut attrs = HashMap::from([
                    (
                        "sensitivity".to_string(),
                        RestrictedExpression::new_long(r.sensitivity.level()),
                    ),
                    (
                        "department".to_string(),
                        RestrictedExpression::new_string(r.department.to_string()),
                    ),
                ]);
                if action.object == Object::Request {
                    let route = r
                        .route
                        .ok_or_else(|| "a request without its route".to_string())?;
                    attrs.insert(
                        "approver_role".to_string(),
                        RestrictedExpression::new_string(route.approver_role.as_str().to_string()),
                    );
                    attrs.insert(
                        "same_department".to_string(),
                        RestrictedExpression::new_bool(route.same_department),
                    );
                }
                let entity =
                    Entity::new(uid.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
                (uid, entity)
            }
        };
        let grant = r.map_or(GrantState::None, |r| r.grant);
        let own = r.is_some_and(|r| r.own);
        let context = Context::from_pairs([
            (
                "grant".to_string(),
                RestrictedExpression::new_string(grant.as_str().to_string()),
            ),
            ("own".to_string(), RestrictedExpression::new_bool(own)),
        ])
        .map_err(|e| e.to_string())?;
        let action_uid =
            EntityUid::from_type_name_and_id(n.action.clone(), EntityId::new(action.name));
        let request = Request::new(
            n.principal.clone(),
            action_uid,
            resource_uid,
            context,
            Some(&self.schema),
        )
        .map_err(|e| e.to_string())?;
        // With the schema, the action entities (and any action groups) come along, and the
        // entities are checked against their declared shapes.
        let entities = Entities::from_entities([principal, resource], Some(&self.schema))
            .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(policies: &str) -> Result<Policies, PolicyError> {
        Policies::from_sources(
            "test",
            ("policies/access.cedar", policies),
            ("policies/access.cedarschema", EMBEDDED_SCHEMA),
        )
    }

    #[test]
    fn the_built_in_policies_load() {
        let p = Policies::embedded_default().expect("built-in policies load");
        assert_eq!(p.origin(), EMBEDDED_DIR);
        let r = Resource::new(Sensitivity::Public, "sales");
        assert!(p.decide("record.read", &[Role::Employee], "hr", Some(&r)));
        assert!(!p.decide("record.read", &[Role::Auditor], "hr", Some(&r)));
    }

    #[test]
    fn the_repository_directory_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let p = Policies::load(&dir).expect("policies/ loads");
        assert_eq!(p.origin(), dir.display().to_string());
    }

    #[test]
    fn a_missing_directory_falls_back_to_the_built_in_copy() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-policies-dir");
        let p = Policies::load(&dir).expect("built-in copy");
        assert_eq!(p.origin(), EMBEDDED_DIR);
    }

    #[test]
    fn a_missing_policy_file_in_an_existing_directory_is_named() {
        let dir = std::env::temp_dir().join(format!("strongroom-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join(SCHEMA_FILE), EMBEDDED_SCHEMA).expect("write schema");
        let e = Policies::load(&dir).expect_err("no access.cedar");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.file.ends_with("access.cedar"), "{e}");
        assert_eq!(e.line, None);
        assert!(e.to_string().contains("access.cedar: cannot read"), "{e}");
    }

    #[test]
    fn a_parse_error_names_the_line_and_column() {
        let text = "// comment\n\
                    permit (principal, action == Action::\"category.read\", resource);\n\
                    \n\
                    permit (principal, action == Action::\"audit.read\", resource)\n\
                    when { principal.roles.contains(\"auditor\") }\n\
                    permit (principal, action, resource);\n";
        let e = load(text).expect_err("missing semicolon");
        assert_eq!(e.file, "policies/access.cedar");
        // Cedar reads on into the next policy and stumbles at its `(`.
        assert_eq!((e.line, e.column), (Some(6), Some(8)), "{e}");
        assert!(
            e.to_string().starts_with("policies/access.cedar:6:8: "),
            "{e}"
        );
    }

    #[test]
    fn a_validation_error_names_the_file_and_line() {
        let text = "permit (principal, action == Action::\"category.read\", resource);\n\
                    \n\
                    permit (principal, action == Action::\"audit.read\", resource)\n\
                    when { principal.rank > 3 };\n";
        let e = load(text).expect_err("User has no `rank`");
        assert_eq!(e.file, "policies/access.cedar");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.reason.contains("rank"), "{e}");

        let e = load("permit (principal, action == Action::\"record.shred\", resource);\n")
            .expect_err("unknown action");
        assert_eq!((e.line, e.column), (Some(1), Some(30)), "{e}");

        // A string compared with a number: a type error, also with its place.
        let e = load(
            "permit (principal, action == Action::\"record.read\", resource is Record)\n  when { resource.sensitivity == \"secret\" };\n",
        )
        .expect_err("type error");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn a_schema_error_names_the_schema_file_and_line() {
        let schema = EMBEDDED_SCHEMA.replace("roles: Set<String>,", "roles: Set<String>,,");
        let line = EMBEDDED_SCHEMA
            .lines()
            .position(|l| l.contains("roles: Set<String>,"))
            .expect("schema declares roles")
            + 1;
        let e = Policies::from_sources(
            "test",
            ("policies/access.cedar", EMBEDDED_POLICIES),
            ("policies/access.cedarschema", &schema),
        )
        .expect_err("bad schema");
        assert_eq!(e.file, "policies/access.cedarschema");
        assert_eq!(e.line, Some(line), "{e}");
    }

    #[test]
    fn a_schema_without_an_action_the_server_uses_is_refused() {
        let schema = EMBEDDED_SCHEMA.replace("\"audit.read\"", "\"audit.browse\"");
        let e = Policies::from_sources(
            "test",
            (
                "policies/access.cedar",
                "permit (principal, action == Action::\"category.read\", resource);",
            ),
            ("policies/access.cedarschema", &schema),
        )
        .expect_err("audit.read missing");
        assert_eq!(e.file, "policies/access.cedarschema");
        assert!(e.reason.contains("audit.read"), "{e}");
    }

    #[test]
    fn a_schema_the_server_requests_do_not_fit_is_refused() {
        // The server sends `department`; a schema that calls it `dept` cannot work.
        let schema = EMBEDDED_SCHEMA.replace(
            "entity User {\n  roles: Set<String>,\n  department: String,",
            "entity User {\n  roles: Set<String>,\n  dept: String,",
        );
        assert_ne!(schema, EMBEDDED_SCHEMA);
        let e = Policies::from_sources(
            "test",
            (
                "policies/access.cedar",
                "permit (principal, action == Action::\"category.read\", resource);",
            ),
            ("policies/access.cedarschema", &schema),
        )
        .expect_err("entity shape mismatch");
        assert_eq!(e.file, "policies/access.cedarschema");
        assert!(e.reason.contains("does not fit the schema"), "{e}");
    }

    #[test]
    fn an_erroring_policy_denies() {
        // Overflow is a run-time error; Cedar skips an erroring policy, and this engine then
        // refuses rather than decide on the remaining ones.
        let p = load(
            "permit (principal, action == Action::\"record.read\", resource);\n\
             @id(\"overflows\")\n\
             forbid (principal, action == Action::\"record.read\", resource is Record)\n\
               when { 9223372036854775807 + resource.sensitivity < 0 };\n",
        )
        .expect("valid");
        let public = Resource::new(Sensitivity::Public, "x");
        assert!(p.decide("record.read", &[Role::Archivist], "x", Some(&public)));
        let internal = Resource::new(Sensitivity::Internal, "x");
        assert!(!p.decide("record.read", &[Role::Archivist], "x", Some(&internal)));
        let Err(Refusal::Evaluation(e)) = p.evaluate(
            super::super::spec("record.read").expect("known"),
            &[Role::Archivist],
            "x",
            Some(&internal),
        ) else {
            panic!("expected an evaluation error");
        };
        assert!(e.contains("policy \"overflows\""), "{e}");
    }
}
