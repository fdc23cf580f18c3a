//! Masking: the one function through which every sensitive value leaves the server.
//! `138****5678` for phones, `张*丰` for Chinese names, `J*** S***` for Latin names, the first
//! 6 and last 4 characters for ID numbers, `j***@example.com` for e-mail, `***` otherwise.
//! Unmasking arrives with approval grants; until then nobody reads an unmasked value.

use super::schema::{FieldDef, FieldType, MaskStyle};

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

pub fn mask_phone(digits: &str) -> String {
    let d: Vec<char> = digits.chars().filter(char::is_ascii_digit).collect();
    if d.len() < 8 {
        return "***".into();
    }
    let head: String = d[..3].iter().collect();
    let tail: String = d[d.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

pub fn mask_id_number(v: &str) -> String {
    let c: Vec<char> = v.chars().collect();
    if c.len() <= 10 {
        return "***".into();
    }
    let head: String = c[..6].iter().collect();
    let tail: String = c[c.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(c.len() - 10))
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

/// The masked form of a sensitive value of field `def`.
pub fn mask(def: &FieldDef, value: &str) -> String {
    match def.kind {
        FieldType::Phone => mask_phone(value),
        FieldType::IdNumber => mask_id_number(value),
        FieldType::Email => mask_email(value),
        FieldType::Text => {
            let style = def.mask.unwrap_or(if def.name.contains("name") {
                MaskStyle::Name
            } else {
                MaskStyle::Full
            });
            match style {
                MaskStyle::Name => mask_name(value),
                MaskStyle::Full => "***".into(),
            }
        }
        _ => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_type_masks_as_specified() {
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_name("张三丰"), "张*丰");
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳建国"), "欧**国");
        assert_eq!(mask_name("John Smith"), "J*** S***");
        assert_eq!(mask_id_number("11010519491231002X"), "110105********002X");
        assert_eq!(mask_email("jane@example.com"), "j***@example.com");
        let f = FieldDef {
            name: "notes".into(),
            label: String::new(),
            kind: FieldType::Text,
            required: false,
            sensitive: true,
            choices: None,
            mask: None,
        };
        assert_eq!(mask(&f, "anything at all"), "***");
        let n = FieldDef {
            name: "holder_name".into(),
            ..f.clone()
        };
        assert_eq!(mask(&n, "张三丰"), "张*丰");
        let d = FieldDef {
            kind: FieldType::Date,
            ..f
        };
        assert_eq!(mask(&d, "1990-01-01"), "***");
    }

    proptest! {
        #[test]
        fn a_masked_phone_never_shows_the_middle(d in "1[3-9][0-9]{9}") {
            let m = mask_phone(&d);
            prop_assert_eq!(m.len(), 11);
            prop_assert_eq!(&m[3..7], "****");
            prop_assert!(!m.contains(&d[3..7]) || d[3..7] == *"****");
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
            let m = mask_id_number(&id);
            prop_assert_eq!(&m[..6], &id[..6]);
            prop_assert_eq!(&m[14..], &id[14..]);
            prop_assert_eq!(&m[6..14], "********");
        }
    }
}
