//! Category field schemas and the validation of record values against them. Every error
//! names the field. Phone numbers follow the real numbering plans (`super::phones`: mainland
//! mobiles and landlines, other countries with their + country code); ID numbers accept the
//! 18-character PRC resident ID with its ISO 7064 MOD 11-2 check character, and other
//! identifiers of 5 to 32 letters and digits.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Number,
    Date,
    Phone,
    IdNumber,
    Email,
    Choice,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::Phone => "phone",
            FieldType::IdNumber => "id_number",
            FieldType::Email => "email",
            FieldType::Choice => "choice",
        }
    }
}

/// How a sensitive value is masked on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskStyle {
    Name,
    Full,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    /// For sensitive text: `name` masks as a personal name (张*丰, J*** S***); otherwise
    /// `***`. Unset: `name` when the field's name mentions "name".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskStyle>,
}

impl FieldDef {
    pub fn label(&self) -> &str {
        if self.label.is_empty() {
            &self.name
        } else {
            &self.label
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::invalid(field, message)
}

/// Checks a schema as an archivist submits it.
pub fn check_schema(fields: &mut [FieldDef]) -> Result<(), AppError> {
    let mut seen = std::collections::HashSet::new();
    for (i, f) in fields.iter_mut().enumerate() {
        let at = format!("fields[{i}]");
        let ok_name = !f.name.is_empty()
            && f.name.len() <= 63
            && f.name.starts_with(|c: char| c.is_ascii_lowercase())
            && f.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok_name {
            return Err(invalid(
                &format!("{at}.name"),
                "must be 1 to 63 characters: lower-case letters, digits and '_', starting with a letter",
            ));
        }
        if !seen.insert(f.name.clone()) {
            return Err(invalid(
                &format!("{at}.name"),
                format!("`{}` is used twice", f.name),
            ));
        }
        f.label = f.label.trim().to_string();
        if f.label.chars().count() > 200 {
            return Err(invalid(
                &format!("{at}.label"),
                "must be at most 200 characters",
            ));
        }
        match (&f.kind, &mut f.choices) {
            (FieldType::Choice, Some(c)) if !c.is_empty() => {
                for v in c.iter_mut() {
                    *v = v.trim().to_string();
                }
                if c.iter().any(|v| v.is_empty()) {
                    return Err(invalid(
                        &format!("{at}.choices"),
                        "must not contain empty values",
                    ));
                }
            }
            (FieldType::Choice, _) => {
                return Err(invalid(
                    &format!("{at}.choices"),
                    "a choice field needs at least one choice",
                ))
            }
            (_, Some(_)) => {
                return Err(invalid(
                    &format!("{at}.choices"),
                    "only choice fields have choices",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A validated value, normalized for storage.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub value: String,
    /// The normalized form used for the blind index (phones: E.164; IDs: upper case).
    pub index_form: Option<String>,
}

pub fn china_id_checksum_ok(id: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = id.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize] == b[17].to_ascii_uppercase()
}

/// The E.164 form of a phone number (what its blind index is computed from), or `None`
/// when the numbering plans do not allow it (see [`super::phones`]).
pub fn normalize_phone(raw: &str) -> Option<String> {
    super::phones::parse(raw).map(|p| p.e164)
}

pub fn normalize_id_number(raw: &str) -> Option<String> {
    let v: String = raw
        .trim()
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .collect::<String>()
        .to_uppercase();
    if v.len() == 18 && v[..17].chars().all(|c| c.is_ascii_digit()) {
        return china_id_checksum_ok(&v).then_some(v);
    }
    let ok = (5..=32).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then_some(v)
}

fn check_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && v.len() <= 254
        && !v.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
}

/// Checks one value against its field definition.
pub fn check_value(def: &FieldDef, value: &Value) -> Result<Checked, AppError> {
    let name = def.name.as_str();
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) if def.kind == FieldType::Number => n.to_string(),
        Value::Number(n) if def.kind == FieldType::Phone => n.to_string(),
        _ => {
            return Err(invalid(
                name,
                format!("must be a {} given as text", def.kind.as_str()),
            ))
        }
    };
    if text.chars().count() > 2000 {
        return Err(invalid(name, "must be at most 2000 characters"));
    }
    let plain = |v: String| {
        Ok(Checked {
            value: v,
            index_form: None,
        })
    };
    match def.kind {
        FieldType::Text => plain(text),
        FieldType::Number => match text.parse::<f64>() {
            Ok(n) if n.is_finite() => plain(text),
            _ => Err(invalid(name, "must be a number")),
        },
        FieldType::Date => match NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
            Ok(d) => plain(d.format("%Y-%m-%d").to_string()),
            Err(_) => Err(invalid(name, "must be a date as YYYY-MM-DD")),
        },
        FieldType::Phone => match super::phones::parse(&text) {
            Some(p) => Ok(Checked {
                value: p.stored,
                index_form: Some(p.e164),
            }),
            None => Err(invalid(name, super::phones::INVALID)),
        },
        FieldType::IdNumber => match normalize_id_number(&text) {
            Some(v) => Ok(Checked {
                value: v.clone(),
                index_form: Some(v),
            }),
            None if text.len() == 18 => Err(invalid(
                name,
                "is not a valid 18-character resident ID number (check character does not match)",
            )),
            None => Err(invalid(
                name,
                "must be an ID number of 5 to 32 letters and digits",
            )),
        },
        FieldType::Email => {
            if check_email(&text) {
                let lower = text.to_lowercase();
                Ok(Checked {
                    value: text,
                    index_form: Some(lower),
                })
            } else {
                Err(invalid(name, "must be an e-mail address"))
            }
        }
        FieldType::Choice => {
            let choices = def.choices.as_deref().unwrap_or_default();
            if choices.contains(&text) {
                plain(text)
            } else {
                Err(invalid(
                    name,
                    format!("must be one of: {}", choices.join(", ")),
                ))
            }
        }
    }
}

/// Validates a full set of values for a new record. Unknown fields and missing required
/// fields are errors; empty strings count as absent.
pub fn check_all(
    schema: &[FieldDef],
    values: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Checked>, AppError> {
    for k in values.keys() {
        if !schema.iter().any(|f| &f.name == k) {
            return Err(invalid(k, "is not a field of this category"));
        }
    }
    let mut out = BTreeMap::new();
    for def in schema {
        match values.get(&def.name) {
            None | Some(Value::Null) => {
                if def.required {
                    return Err(invalid(&def.name, "is required"));
                }
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                if def.required {
                    return Err(invalid(&def.name, "is required"));
                }
            }
            Some(v) => {
                out.insert(def.name.clone(), check_value(def, v)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(name: &str, kind: FieldType) -> FieldDef {
        FieldDef {
            name: name.into(),
            label: String::new(),
            kind,
            required: false,
            sensitive: false,
            choices: None,
            mask: None,
        }
    }

    #[test]
    fn resident_id_checksum() {
        assert!(china_id_checksum_ok("11010519491231002X"));
        assert!(china_id_checksum_ok("440524188001010014"));
        assert!(!china_id_checksum_ok("110105194912310021"));
        assert_eq!(
            normalize_id_number("11010519491231002x").as_deref(),
            Some("11010519491231002X")
        );
        assert!(normalize_id_number("110105194912310021").is_none());
    }

    #[test]
    fn phones() {
        assert_eq!(
            normalize_phone("138 1234 5678").as_deref(),
            Some("+8613812345678")
        );
        assert_eq!(
            normalize_phone("+86 138-1234-5678").as_deref(),
            Some("+8613812345678")
        );
        assert_eq!(
            normalize_phone("+44 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert!(
            normalize_phone("12812345678").is_none(),
            "12x is not a mobile prefix"
        );
        assert!(normalize_phone("123").is_none());
        assert!(normalize_phone("call me").is_none());
        let phone = def("phone", FieldType::Phone);
        let c = check_value(&phone, &Value::String("+86 138-1234-5678".into())).unwrap();
        assert_eq!(c.value, "13812345678");
        assert_eq!(c.index_form.as_deref(), Some("+8613812345678"));
    }

    #[test]
    fn errors_name_the_field() {
        let schema = vec![
            FieldDef {
                required: true,
                ..def("customer_phone", FieldType::Phone)
            },
            def("opened", FieldType::Date),
            FieldDef {
                choices: Some(vec!["gold".into(), "silver".into()]),
                ..def("tier", FieldType::Choice)
            },
            def("id_no", FieldType::IdNumber),
            def("mail", FieldType::Email),
            def("amount", FieldType::Number),
        ];
        let cases = [
            (json!({}), "customer_phone", "required"),
            (json!({"customer_phone": "12"}), "customer_phone", "phone"),
            (
                json!({"customer_phone": "13812345678", "opened": "2026-13-01"}),
                "opened",
                "date",
            ),
            (
                json!({"customer_phone": "13812345678", "tier": "bronze"}),
                "tier",
                "one of",
            ),
            (
                json!({"customer_phone": "13812345678", "id_no": "110105194912310021"}),
                "id_no",
                "check character",
            ),
            (
                json!({"customer_phone": "13812345678", "mail": "nope"}),
                "mail",
                "e-mail",
            ),
            (
                json!({"customer_phone": "13812345678", "amount": "12abc"}),
                "amount",
                "number",
            ),
            (
                json!({"customer_phone": "13812345678", "extra": "x"}),
                "extra",
                "not a field",
            ),
        ];
        for (values, field, words) in cases {
            let values: BTreeMap<String, Value> = serde_json::from_value(values).unwrap();
            match check_all(&schema, &values) {
                Err(AppError::Invalid {
                    field: Some(f),
                    message,
                }) => {
                    assert_eq!(f, field);
                    assert!(message.contains(words), "{field}: {message}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        let ok: BTreeMap<String, Value> = serde_json::from_value(json!({
            "customer_phone": "+86 13812345678", "opened": "2024-02-29", "tier": "gold",
            "id_no": "11010519491231002x", "mail": "Jane@Example.com", "amount": 12.5
        }))
        .unwrap();
        let c = check_all(&schema, &ok).unwrap();
        assert_eq!(c["customer_phone"].value, "13812345678");
        assert_eq!(c["id_no"].index_form.as_deref(), Some("11010519491231002X"));
    }

    #[test]
    fn schema_rules() {
        let mut bad = vec![def("Bad Name", FieldType::Text)];
        assert!(check_schema(&mut bad).is_err());
        let mut dup = vec![def("a", FieldType::Text), def("a", FieldType::Date)];
        assert!(check_schema(&mut dup).is_err());
        let mut nochoice = vec![def("c", FieldType::Choice)];
        assert!(check_schema(&mut nochoice).is_err());
    }
}
