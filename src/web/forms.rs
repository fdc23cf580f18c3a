//! Errors shown next to the field they concern. A service refuses bad input with
//! `AppError::Invalid { field, message }` (in English, naming the field as the API does);
//! a page turns that into `errors` (field → message in the person's language) and
//! `error_summary` (the list at the top, each linking to its field), and the templates
//! use the macros of `forms.html` to put each message beside its field, mark the field
//! `aria-invalid` and move the focus to the first one.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::AppError;
use crate::i18n::{self, Lang};

/// The errors of one submitted form.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FormErrors {
    /// Field name (as in the form's `name`) → message.
    pub fields: BTreeMap<String, String>,
    /// Messages that concern no one field (a conflict, a refused state change).
    pub general: Vec<String>,
    /// The first field in error, which gets the focus.
    pub first: Option<String>,
}

impl FormErrors {
    /// One field's error (`message` in English; translated here).
    pub fn add(&mut self, lang: Lang, field: &str, message: &str) {
        if self.first.is_none() {
            self.first = Some(field.to_string());
        }
        self.fields
            .entry(field.to_string())
            .or_insert_with(|| i18n::message(lang, message));
    }

    /// An error of the form as a whole.
    pub fn add_general(&mut self, lang: Lang, message: &str) {
        self.general.push(i18n::message(lang, message));
    }

    /// The errors an `AppError` stands for: a field's when it names one (mapped to the
    /// form's name for it by `form_name`), else a general one.
    pub fn from_error(lang: Lang, e: &AppError, form_name: impl Fn(&str) -> String) -> Self {
        let mut out = FormErrors::default();
        match e {
            AppError::Invalid {
                field: Some(f),
                message,
            } => out.add(lang, &form_name(f), message),
            other => out.add_general(lang, &other.public_message()),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_error_is_translated_and_focused() {
        let e = AppError::invalid("confirm_password", "does not match the new password");
        let f = FormErrors::from_error(Lang::ZhCn, &e, |f| f.to_string());
        assert_eq!(f.first.as_deref(), Some("confirm_password"));
        assert_eq!(f.fields["confirm_password"], "与新密码不一致");
        let g = FormErrors::from_error(Lang::En, &AppError::Conflict("taken".into()), |f| f.into());
        assert_eq!(g.general, vec!["taken".to_string()]);
        assert!(g.first.is_none());
    }
}
