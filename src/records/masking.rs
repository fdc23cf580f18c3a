//! Masking: the one step through which every sensitive value leaves the server.
//!
//! How a value is masked is policy (`policies/masking.toml`, [`MaskingPolicy`]): per field
//! or field type and per role, one of `full` (`***`), `partial` (keep the first and last
//! characters: `138****5678`, `110105********002X`), `name` (`张*丰`, `J*** S***`), `email`
//! (`j***@example.com`) or `none`. Whatever no rule covers is masked. An active lookup or
//! view grant unmasks a record's values; that decision is made by the caller (through the
//! access policy) and passed in as [`Unmask::grant`]. Every value shown unmasked, by grant
//! or by a `none` rule, is reported in the view so the caller audits it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::schema::{FieldDef, FieldType, MaskStyle};
use crate::policy::PolicyError;
use crate::users::Role;

pub const FILE_NAME: &str = "masking.toml";
const EMBEDDED: &str = include_str!("../../policies/masking.toml");

/// A mask, as `masking.toml` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    Full,
    Partial { keep_first: usize, keep_last: usize },
    Name,
    Email,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    #[serde(rename = "rule", default)]
    rules: Vec<RuleDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    field: Option<String>,
    #[serde(rename = "type")]
    kind: Option<FieldType>,
    roles: Option<Vec<Role>>,
    mask: String,
    keep_first: Option<usize>,
    keep_last: Option<usize>,
}

#[derive(Debug, Clone)]
enum Target {
    Field(String),
    Type(FieldType),
}

#[derive(Debug, Clone)]
struct Rule {
    target: Target,
    roles: Option<Vec<Role>>,
    mask: Mask,
}

impl Rule {
    fn applies_to(&self, roles: &[Role]) -> bool {
        self.roles
            .as_ref()
            .is_none_or(|rs| rs.iter().any(|r| roles.contains(r)))
    }
}

/// The loaded masking policy.
#[derive(Debug, Clone)]
pub struct MaskingPolicy {
    rules: Vec<Rule>,
    pub source: PathBuf,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl MaskingPolicy {
    /// Loads `DIR/masking.toml`; when the directory does not exist, the copy built into
    /// the binary (the repository's `policies/masking.toml`).
    pub fn load(dir: &Path) -> Result<MaskingPolicy, PolicyError> {
        if !dir.exists() {
            return Self::embedded();
        }
        let path = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| PolicyError {
            file: path.display().to_string(),
            line: None,
            column: None,
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &path)
    }

    pub fn embedded() -> Result<MaskingPolicy, PolicyError> {
        Self::parse(EMBEDDED, Path::new("(built-in) policies/masking.toml"))
    }

    pub fn parse(text: &str, path: &Path) -> Result<MaskingPolicy, PolicyError> {
        let file = path.display().to_string();
        let def: FileDef = toml::from_str(text).map_err(|e| PolicyError {
            file: file.clone(),
            line: e.span().map(|s| line_of(text, s.start)),
            column: None,
            reason: e.message().to_string(),
        })?;
        let rule_lines: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim() == "[[rule]]")
            .map(|(i, _)| i + 1)
            .collect();
        let mut rules = Vec::new();
        for (i, r) in def.rules.into_iter().enumerate() {
            let bad = |reason: &str| PolicyError {
                file: file.clone(),
                line: rule_lines.get(i).copied(),
                column: None,
                reason: reason.to_string(),
            };
            let target = match (r.field, r.kind) {
                (Some(f), None) if !f.trim().is_empty() => Target::Field(f),
                (None, Some(t)) => Target::Type(t),
                _ => return Err(bad("a rule names either `field` or `type`, not both")),
            };
            if r.roles.as_ref().is_some_and(Vec::is_empty) {
                return Err(bad("`roles` is empty: leave it out to mean everyone"));
            }
            let keeps = r.keep_first.is_some() || r.keep_last.is_some();
            let mask = match r.mask.as_str() {
                "partial" => {
                    let (f, l) = (r.keep_first.unwrap_or(0), r.keep_last.unwrap_or(0));
                    if f + l == 0 || f > 12 || l > 12 {
                        return Err(bad(
                            "`partial` keeps 1 to 12 characters at each end (keep_first, keep_last)",
                        ));
                    }
                    Mask::Partial {
                        keep_first: f,
                        keep_last: l,
                    }
                }
                _ if keeps => {
                    return Err(bad(
                        "keep_first and keep_last go only with mask = \"partial\"",
                    ))
                }
                "full" => Mask::Full,
                "name" => Mask::Name,
                "email" => Mask::Email,
                "none" => Mask::None,
                other => {
                    return Err(bad(&format!(
                        "mask `{other}` must be full, partial, name, email or none"
                    )))
                }
            };
            rules.push(Rule {
                target,
                roles: r.roles,
                mask,
            });
        }
        Ok(MaskingPolicy {
            rules,
            source: path.to_path_buf(),
        })
    }

    /// The mask for field `def` seen by a person with `roles` (no grant in play).
    pub fn mask_for(&self, def: &FieldDef, roles: &[Role]) -> Mask {
        let by_field = self.rules.iter().find(|r| {
            matches!(&r.target, Target::Field(f) if *f == def.name) && r.applies_to(roles)
        });
        let by_type = || {
            self.rules.iter().find(|r| {
                matches!(&r.target, Target::Type(t) if *t == def.kind) && r.applies_to(roles)
            })
        };
        match by_field.or_else(by_type) {
            Some(r) => r.mask,
            None => fallback(def),
        }
    }
}

/// The category's own hint for a field no rule covers: `name` for names, else `full`.
fn fallback(def: &FieldDef) -> Mask {
    let hinted = def.mask.unwrap_or(if def.name.contains("name") {
        MaskStyle::Name
    } else {
        MaskStyle::Full
    });
    match hinted {
        MaskStyle::Name if def.kind == FieldType::Text => Mask::Name,
        _ => Mask::Full,
    }
}

/// How the values of one view are to be shown.
#[derive(Debug, Clone, Copy)]
pub struct Unmask<'a> {
    pub policy: &'a MaskingPolicy,
    pub roles: &'a [Role],
    /// An active lookup or view grant that the access policy lets unmask this record.
    pub grant: bool,
}

impl Unmask<'_> {
    /// The value of sensitive field `def` as this caller sees it, and whether it is masked.
    pub fn show(&self, def: &FieldDef, value: &str) -> (String, bool) {
        if self.grant {
            return (value.to_string(), false);
        }
        match self.policy.mask_for(def, self.roles) {
            Mask::None => (value.to_string(), false),
            m => (apply(m, value), true),
        }
    }
}

/// Applies a mask to a value.
pub fn apply(mask: Mask, value: &str) -> String {
    match mask {
        Mask::Full => "***".into(),
        Mask::Partial {
            keep_first,
            keep_last,
        } => mask_partial(value, keep_first, keep_last),
        Mask::Name => mask_name(value),
        Mask::Email => mask_email(value),
        Mask::None => value.to_string(),
    }
}

/// Keeps `first` and `last` characters and stars the rest; a value too short to hide
/// anything that way is shown as `***`.
pub fn mask_partial(v: &str, first: usize, last: usize) -> String {
    let c: Vec<char> = v.trim().chars().collect();
    if c.len() <= first + last + 1 {
        return "***".into();
    }
    let head: String = c[..first].iter().collect();
    let tail: String = c[c.len() - last..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(c.len() - first - last))
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

pub fn mask_name(v: &str) -> String {
    let v = v.trim();
    let chars: Vec<char> = v.chars().collect();
    if chars.iter().any(|c| is_cjk(*c)) {
        let n = chars.len();
        return match n {
            0 => String::new(),
            1 => "*".into(),
            2 => format!("{}*", chars[0]),
            _ => format!("{}{}{}", chars[0], "*".repeat(n - 2), chars[n - 1]),
        };
    }
    v.split_whitespace()
        .map(|w| match w.chars().next() {
            Some(c) => format!("{c}***"),
            None => String::new(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn mask_email(v: &str) -> String {
    match v.split_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            let first = local.chars().next().unwrap_or('*');
            format!("{first}***@{domain}")
        }
        _ => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field(name: &str, kind: FieldType) -> FieldDef {
        FieldDef {
            name: name.into(),
            label: String::new(),
            kind,
            required: false,
            sensitive: true,
            choices: None,
            mask: None,
        }
    }

    fn shown(p: &MaskingPolicy, def: &FieldDef, roles: &[Role], v: &str) -> String {
        Unmask {
            policy: p,
            roles,
            grant: false,
        }
        .show(def, v)
        .0
    }

    #[test]
    fn the_shipped_policy_masks_each_type_as_specified() {
        let p = MaskingPolicy::embedded().unwrap();
        let all = Role::ALL;
        assert_eq!(
            shown(&p, &field("mobile", FieldType::Phone), &all, "13812345678"),
            "138****5678"
        );
        assert_eq!(
            shown(
                &p,
                &field("id", FieldType::IdNumber),
                &all,
                "11010519491231002X"
            ),
            "110105********002X"
        );
        assert_eq!(
            shown(
                &p,
                &field("mail", FieldType::Email),
                &all,
                "jane@example.com"
            ),
            "j***@example.com"
        );
        assert_eq!(
            shown(&p, &field("holder_name", FieldType::Text), &all, "张三丰"),
            "张*丰"
        );
        assert_eq!(
            shown(
                &p,
                &field("holder_name", FieldType::Text),
                &all,
                "John Smith"
            ),
            "J*** S***"
        );
        assert_eq!(
            shown(
                &p,
                &field("notes", FieldType::Text),
                &all,
                "anything at all"
            ),
            "***"
        );
        assert_eq!(
            shown(&p, &field("born", FieldType::Date), &all, "1990-01-01"),
            "***"
        );
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳建国"), "欧**国");
    }

    #[test]
    fn rules_apply_per_role_and_field_rules_come_first() {
        let p = MaskingPolicy::parse(
            "[[rule]]\ntype = \"phone\"\nroles = [\"archivist\"]\nmask = \"none\"\n\n\
             [[rule]]\ntype = \"phone\"\nmask = \"partial\"\nkeep_last = 2\n\n\
             [[rule]]\nfield = \"hotline\"\nmask = \"full\"\n",
            Path::new("m.toml"),
        )
        .unwrap();
        let phone = field("mobile", FieldType::Phone);
        assert_eq!(
            shown(&p, &phone, &[Role::Archivist], "13812345678"),
            "13812345678"
        );
        assert_eq!(
            shown(&p, &phone, &[Role::Employee], "13812345678"),
            "*********78"
        );
        // A person with both roles gets the first rule that applies.
        assert_eq!(
            shown(
                &p,
                &phone,
                &[Role::Employee, Role::Archivist],
                "13812345678"
            ),
            "13812345678"
        );
        // The field rule beats the archivists' type rule.
        assert_eq!(
            shown(
                &p,
                &field("hotline", FieldType::Phone),
                &[Role::Archivist],
                "13812345678"
            ),
            "***"
        );
        // A grant unmasks whatever the rules say.
        let u = Unmask {
            policy: &p,
            roles: &[Role::Employee],
            grant: true,
        };
        assert_eq!(
            u.show(&field("hotline", FieldType::Phone), "13812345678"),
            ("13812345678".into(), false)
        );
    }

    #[test]
    fn an_empty_policy_masks_everything() {
        let p = MaskingPolicy::parse("", Path::new("m.toml")).unwrap();
        for kind in [
            FieldType::Phone,
            FieldType::IdNumber,
            FieldType::Email,
            FieldType::Number,
        ] {
            assert_eq!(
                shown(&p, &field("x", kind), &Role::ALL, "13812345678"),
                "***"
            );
        }
    }

    #[test]
    fn bad_rules_name_file_and_line() {
        let cases = [
            (
                "[[rule]]\ntype = \"phone\"\nmask = \"blur\"\n",
                1,
                "must be full, partial",
            ),
            (
                "\n[[rule]]\ntype = \"phone\"\nfield = \"x\"\nmask = \"full\"\n",
                2,
                "either `field` or `type`",
            ),
            (
                "[[rule]]\ntype = \"phone\"\nmask = \"full\"\nkeep_first = 2\n",
                1,
                "only with mask",
            ),
            (
                "[[rule]]\ntype = \"phone\"\nmask = \"partial\"\n",
                1,
                "keeps 1 to 12",
            ),
            (
                "[[rule]]\ntype = \"fax\"\nmask = \"full\"\n",
                2,
                "unknown variant",
            ),
            (
                "[[rule]]\ntype = \"phone\"\nroles = [\"janitor\"]\nmask = \"full\"\n",
                3,
                "unknown variant",
            ),
            (
                "[[rule]]\ntype = \"phone\"\nmask = \"full\"\ncolour = 1\n",
                4,
                "unknown field",
            ),
        ];
        for (text, line, reason) in cases {
            let e = MaskingPolicy::parse(text, Path::new("policies/masking.toml")).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("policies/masking.toml:{line}")),
                "{e}"
            );
        }
    }

    proptest! {
        #[test]
        fn a_masked_phone_never_shows_the_middle(d in "1[3-9][0-9]{9}") {
            let m = mask_partial(&d, 3, 4);
            prop_assert_eq!(m.len(), 11);
            prop_assert_eq!(&m[3..7], "****");
        }

        #[test]
        fn masked_names_keep_at_most_two_characters(n in "[\u{4e00}-\u{9fa5}]{2,4}") {
            let m = mask_name(&n);
            let kept = m.chars().filter(|c| *c != '*').count();
            prop_assert!(kept <= 2);
            prop_assert_eq!(m.chars().count(), n.chars().count());
        }

        #[test]
        fn masked_ids_keep_first_six_last_four(id in "[0-9]{17}[0-9X]") {
            let m = mask_partial(&id, 6, 4);
            prop_assert_eq!(&m[..6], &id[..6]);
            prop_assert_eq!(&m[14..], &id[14..]);
            prop_assert_eq!(&m[6..14], "********");
        }

        #[test]
        fn partial_never_shows_a_short_value_whole(v in "[a-z0-9]{0,8}") {
            let m = mask_partial(&v, 3, 4);
            prop_assert!(m == "***" || m.chars().filter(|c| *c == '*').count() >= 1);
            prop_assert!(v.len() < 3 || m != v);
        }
    }
}
