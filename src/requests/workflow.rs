//! Approval routes from `policies/workflows.toml`: for a request kind and the sensitivity
//! (or code) of the record's category, the approvals needed, the approvers' role, the
//! same-department rule, the longest grant, and how long a pending request waits. A bad
//! file stops the start (and `strongroom policy check`) with the file, line and reason.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::Sensitivity;
use crate::users::Role;

pub const FILE_NAME: &str = "workflows.toml";
const EMBEDDED: &str = include_str!("../../policies/workflows.toml");

pub use crate::grants::Kind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    pending_expiry_hours: u32,
    #[serde(rename = "route", default)]
    routes: Vec<RouteDef>,
    #[serde(default)]
    review: ReviewDef,
}

/// Who approves proposals in categories under review (`[review]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewDef {
    #[serde(default = "archivist")]
    approver_role: Role,
}

impl Default for ReviewDef {
    fn default() -> Self {
        ReviewDef {
            approver_role: archivist(),
        }
    }
}

fn archivist() -> Role {
    Role::Archivist
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDef {
    kind: String,
    #[serde(default = "any")]
    sensitivity: String,
    #[serde(default)]
    category: Option<String>,
    approvals: u32,
    #[serde(default = "supervisor")]
    approver_role: Role,
    #[serde(default = "yes")]
    same_department: bool,
    max_hours: u32,
    #[serde(default)]
    pending_expiry_hours: Option<u32>,
}

fn any() -> String {
    "*".into()
}
fn supervisor() -> Role {
    Role::Supervisor
}
fn yes() -> bool {
    true
}

/// What a request of some kind on some record must go through.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    pub approvals: u32,
    pub approver_role: Role,
    pub same_department: bool,
    pub max_hours: u32,
    pub pending_expiry_hours: u32,
}

#[derive(Debug, Clone)]
pub struct Workflows {
    routes: Vec<(RouteDef, Kind, Option<Sensitivity>)>,
    /// The line of each route's `[[route]]` header, in the same order.
    lines: Vec<usize>,
    pending_expiry_hours: u32,
    /// The role that approves proposals under review (another person than the proposer).
    pub review_role: Role,
    pub source: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct WorkflowError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Workflows {
    /// Loads `DIR/workflows.toml`; when the directory does not exist, the copy built into
    /// the binary (the repository's `policies/workflows.toml`).
    pub fn load(dir: &Path) -> Result<Workflows, WorkflowError> {
        let path = dir.join(FILE_NAME);
        if !dir.exists() {
            return Self::parse(EMBEDDED, Path::new("(built-in) policies/workflows.toml"));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| WorkflowError {
            file: path.display().to_string(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &path)
    }

    pub fn embedded() -> Result<Workflows, WorkflowError> {
        Self::parse(EMBEDDED, Path::new("(built-in) policies/workflows.toml"))
    }

    pub fn parse(text: &str, path: &Path) -> Result<Workflows, WorkflowError> {
        let file = path.display().to_string();
        let def: FileDef = toml::from_str(text).map_err(|e| WorkflowError {
            file: file.clone(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(0),
            reason: e.message().to_string(),
        })?;
        // Lines of the `[[route]]` headers, to name the route an error is about.
        let route_lines: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim() == "[[route]]")
            .map(|(i, _)| i + 1)
            .collect();
        let mut routes = Vec::new();
        let mut lines = Vec::new();
        for (i, r) in def.routes.into_iter().enumerate() {
            let line = route_lines.get(i).copied().unwrap_or(0);
            lines.push(line);
            let bad = |reason: String| WorkflowError {
                file: file.clone(),
                line,
                reason,
            };
            let kind = Kind::parse(&r.kind).ok_or_else(|| {
                bad(format!(
                    "kind `{}` must be lookup, view, borrow, export or destroy",
                    r.kind
                ))
            })?;
            let sensitivity = match r.sensitivity.as_str() {
                "*" => None,
                s => Some(Sensitivity::parse(s).ok_or_else(|| {
                    bad(format!(
                        "sensitivity `{s}` must be public, internal, confidential, secret or \"*\""
                    ))
                })?),
            };
            if r.max_hours == 0 {
                return Err(bad("max_hours must be greater than 0".into()));
            }
            if r.approvals > 5 {
                return Err(bad("approvals must be at most 5".into()));
            }
            routes.push((r, kind, sensitivity));
        }
        if def.pending_expiry_hours == 0 {
            return Err(WorkflowError {
                file,
                line: 1,
                reason: "pending_expiry_hours must be greater than 0".into(),
            });
        }
        let review_role = def.review.approver_role;
        if !matches!(review_role, Role::Archivist | Role::Supervisor) {
            return Err(WorkflowError {
                file: file.clone(),
                line: text
                    .lines()
                    .position(|l| l.trim() == "[review]")
                    .map_or(0, |i| i + 1),
                reason: "[review] approver_role must be archivist or supervisor".into(),
            });
        }
        Ok(Workflows {
            routes,
            lines,
            pending_expiry_hours: def.pending_expiry_hours,
            review_role,
            source: path.to_path_buf(),
        })
    }

    /// Checks that every route's approvers may approve under the access policy
    /// (`request.approve` in `access.cedar`): a route whose `approver_role` the policy does
    /// not let approve such records could never be approved, so it is refused at load.
    pub fn check_against(&self, policies: &crate::policy::Policies) -> Result<(), WorkflowError> {
        use crate::policy::{Action, ApproveRequest, Resource};
        let department = "any department";
        for ((r, _, sensitivity), line) in self.routes.iter().zip(&self.lines) {
            if r.approvals == 0 {
                continue;
            }
            let levels = match sensitivity {
                Some(s) => vec![*s],
                None => Sensitivity::ALL.to_vec(),
            };
            for s in levels {
                // The most favourable case for the approver: the record's own department,
                // someone else's request.
                let object = Resource::new(s, department)
                    .routed(r.approver_role, r.same_department)
                    .owned(false);
                let roles = [r.approver_role];
                if !policies.would_allow(ApproveRequest::NAME, &roles, department, Some(&object)) {
                    return Err(WorkflowError {
                        file: self.source.display().to_string(),
                        line: *line,
                        reason: format!(
                            "approver_role `{}` may not approve requests on {} records under the access policy (request.approve)",
                            r.approver_role,
                            s.as_str()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The route for a request, or None when no route allows it.
    pub fn route(
        &self,
        kind: Kind,
        sensitivity: Sensitivity,
        category_code: &str,
    ) -> Option<Route> {
        self.routes
            .iter()
            .filter(|(r, k, s)| {
                *k == kind
                    && s.is_none_or(|s| s == sensitivity)
                    && r.category
                        .as_deref()
                        .is_none_or(|c| c.eq_ignore_ascii_case(category_code))
            })
            .max_by_key(|(r, _, s)| (r.category.is_some(), s.is_some()))
            .map(|(r, _, _)| Route {
                approvals: r.approvals,
                approver_role: r.approver_role,
                same_department: r.same_department,
                max_hours: r.max_hours,
                pending_expiry_hours: r.pending_expiry_hours.unwrap_or(self.pending_expiry_hours),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_routes_load_and_need_two_approvers_for_confidential_exports() {
        let w = Workflows::embedded().unwrap();
        let r = w
            .route(Kind::Export, Sensitivity::Confidential, "CONTR")
            .unwrap();
        assert_eq!(r.approvals, 2);
        assert_eq!(
            w.route(Kind::Export, Sensitivity::Secret, "X")
                .unwrap()
                .approvals,
            2
        );
        assert_eq!(
            w.route(Kind::Export, Sensitivity::Internal, "X")
                .unwrap()
                .approvals,
            1
        );
        assert_eq!(
            w.route(Kind::Lookup, Sensitivity::Public, "X")
                .unwrap()
                .approvals,
            0
        );
        assert_eq!(
            w.route(Kind::Borrow, Sensitivity::Internal, "X")
                .unwrap()
                .max_hours,
            336
        );
        assert_eq!(
            w.route(Kind::Borrow, Sensitivity::Secret, "X")
                .unwrap()
                .approvals,
            2
        );
        for s in Sensitivity::ALL {
            let r = w.route(Kind::Destroy, s, "X").unwrap();
            assert_eq!((r.approvals, r.approver_role), (2, Role::Supervisor));
        }
    }

    #[test]
    fn the_most_specific_route_wins() {
        let w = Workflows::parse(
            "pending_expiry_hours = 10\n[[route]]\nkind = \"view\"\napprovals = 1\nmax_hours = 5\n\
             [[route]]\nkind = \"view\"\nsensitivity = \"secret\"\napprovals = 2\nmax_hours = 4\n\
             [[route]]\nkind = \"view\"\ncategory = \"VIP\"\napprovals = 3\nmax_hours = 3\npending_expiry_hours = 1\n",
            Path::new("w.toml"),
        )
        .unwrap();
        assert_eq!(
            w.route(Kind::View, Sensitivity::Public, "A")
                .unwrap()
                .approvals,
            1
        );
        assert_eq!(
            w.route(Kind::View, Sensitivity::Secret, "A")
                .unwrap()
                .approvals,
            2
        );
        let vip = w.route(Kind::View, Sensitivity::Secret, "vip").unwrap();
        assert_eq!((vip.approvals, vip.pending_expiry_hours), (3, 1));
        assert!(w.route(Kind::Export, Sensitivity::Public, "A").is_none());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Workflows::parse("pending_expiry_hours = 1\n[[route]]\nkind = \"view\"\napprovals = \"two\"\nmax_hours = 1\n", Path::new("policies/workflows.toml")).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(
            e.to_string().starts_with("policies/workflows.toml:4:"),
            "{e}"
        );
        let e = Workflows::parse("pending_expiry_hours = 1\n\n[[route]]\nkind = \"peek\"\napprovals = 1\nmax_hours = 1\n", Path::new("w.toml")).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.reason.contains("peek"));
        let e = Workflows::parse(
            "pending_expiry_hours = 1\ncolour = 1\n",
            Path::new("w.toml"),
        )
        .unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }
}
