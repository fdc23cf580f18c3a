//! Phone numbers, checked against the real numbering plans (libphonenumber's metadata,
//! through the `phonenumber` crate), with mainland China as the default region.
//!
//! Accepted: mainland mobile numbers (`13812345678`, `138 1234 5678`, `+86 138-1234-5678`),
//! mainland landlines written with their area code and trunk prefix (`010-12345678`,
//! `0755 1234 5678`, `+86 755 1234 5678`), and numbers of other countries only with their
//! `+` (or `00`) country code. Refused: anything the plan of its country does not allow
//! (`1381234567`, `138123456789`), a number that is neither a mobile nor starts with a
//! trunk or international prefix (`23812345678`), and letters.
//!
//! Guarantees: every accepted form of one number has one E.164 form (`+8613812345678`),
//! and that form, never the text as typed, is what the keyed blind index is computed from,
//! so each written form finds the same record. The value kept (sealed) is the national
//! form for mainland numbers (`13812345678`, `01012345678`) and E.164 for the others.
//! [`reindex`] brings blind-index values computed by earlier versions (from the bare
//! digits) to the E.164 form once, at start-up.

use phonenumber::country::Id as Country;
use phonenumber::{Mode, PhoneNumber, Type};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{Actor, Event, Outcome};
use crate::crypto::KeyRing;
use crate::error::{AppError, AppResult};
use crate::tx::Db;
use crate::unit;

/// The error given for a value that is not a phone number (in both languages through the
/// message catalog).
pub const INVALID: &str = "must be a phone number: a mainland China mobile number (11 digits), \
     a landline with its area code (010-12345678), or an international number with its + country code";

/// A phone number accepted by the numbering plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// What is kept: the national form (digits) for mainland numbers, E.164 for others.
    pub stored: String,
    /// The E.164 form (`+8613812345678`): what the blind index is computed from.
    pub e164: String,
}

fn is_mobile(n: &PhoneNumber) -> bool {
    matches!(
        n.number_type(&phonenumber::metadata::DATABASE),
        Type::Mobile | Type::FixedLineOrMobile
    )
}

/// Parses a phone number as a person types it (region CN by default); `None` when the
/// numbering plans do not allow it.
pub fn parse(raw: &str) -> Option<Phone> {
    let text = raw.trim();
    if text.is_empty()
        || text.len() > 40
        || !text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '+' | '(' | ')' | '.'))
        || text.chars().filter(|c| *c == '+').count() > 1
        || (text.contains('+') && !text.starts_with('+'))
    {
        return None;
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let international = text.starts_with('+') || digits.starts_with("00");
    // Written nationally, a mainland number is a mobile (1…) or starts with the trunk
    // prefix 0 and its area code; anything else needs its + country code.
    if !international && !digits.starts_with('0') && !digits.starts_with('1') {
        return None;
    }
    let n = phonenumber::parse(Some(Country::CN), text).ok()?;
    if !n.is_valid() || n.extension().is_some() {
        return None;
    }
    let mainland = n.code().value() == 86;
    if mainland && !international && digits.starts_with('1') && !is_mobile(&n) {
        return None;
    }
    let e164 = n.format().mode(Mode::E164).to_string();
    let stored = if mainland {
        n.format()
            .mode(Mode::National)
            .to_string()
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    } else {
        e164.clone()
    };
    Some(Phone { stored, e164 })
}

/// The E.164 form of a value kept by an earlier version, whose normalization kept bare
/// digits: a mainland mobile as its 11 digits, anything else as 7 to 15 digits (a number
/// of another country with its country code but without the `+`). Values kept by this
/// version parse as they are.
pub fn from_stored(old: &str) -> Option<Phone> {
    if let Some(p) = parse(old) {
        return Some(p);
    }
    let digits = old.trim();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    parse(&format!("+{digits}"))
}

/// The name under which [`reindex`] records that it ran.
pub const REINDEX: &str = "phones_e164_blind_index";
/// Values re-indexed per unit of work.
const BATCH: i64 = 500;

/// What one run of [`reindex`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reindexed {
    /// Phone values whose blind index now is that of their E.164 form.
    pub reindexed: u64,
    /// Of those, values whose kept form changed too (re-sealed).
    pub resealed: u64,
    /// Values that no numbering plan allows: left as they were (searchable by no form).
    pub unparsable: u64,
}

/// Recomputes the blind index of every sealed phone value from its E.164 form (decrypt,
/// normalize, index, and re-seal when the kept form changes), in batches of 500, each
/// batch one unit of work. Runs once: when it completes it records itself in
/// `app_data_migrations` (with an audit event), and a later start does nothing (`None`).
/// Several nodes starting at once are kept apart by an advisory lock; a run that stops
/// half-way starts over next time, which is harmless since each step is idempotent.
#[tracing::instrument(skip_all)]
pub async fn reindex(db: &Db, keys: &KeyRing) -> AppResult<Option<Reindexed>> {
    let system = Actor::system("system");
    let mut done = Reindexed::default();
    let mut after: (Uuid, String) = (Uuid::nil(), String::new());
    loop {
        let step = unit!(db, |tx| {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('strongroom.phones_reindex'))")
                .execute(&mut *tx)
                .await?;
            let finished: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM app_data_migrations WHERE name = $1)",
            )
            .bind(REINDEX)
            .fetch_one(&mut *tx)
            .await?;
            if finished {
                return Ok(None);
            }
            let rows: Vec<(Uuid, String, Vec<u8>, String)> = sqlx::query_as(
                "SELECT v.record_id, v.field, v.ciphertext, v.kek_id \
                 FROM record_sensitive_values v JOIN records r ON r.id = v.record_id \
                 JOIN categories c ON c.id = r.category_id \
                 WHERE (v.record_id, v.field) > ($1, $2) \
                   AND EXISTS (SELECT 1 FROM jsonb_array_elements(c.fields) f \
                               WHERE f->>'name' = v.field AND f->>'type' = 'phone') \
                 ORDER BY v.record_id, v.field LIMIT $3 FOR UPDATE OF v",
            )
            .bind(after.0)
            .bind(&after.1)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
            let mut step = Reindexed::default();
            let mut last = None;
            for (record, field, ct, kek_id) in &rows {
                last = Some((*record, field.clone()));
                let old = keys
                    .decrypt_field(*record, field, kek_id, ct)
                    .map_err(|_| AppError::internal("a sealed phone value does not decrypt"))?;
                let Some(p) = from_stored(&old) else {
                    step.unparsable += 1;
                    continue;
                };
                let index = keys.blind_index("phone", &p.e164);
                if p.stored != old.as_str() {
                    let (new_kek, sealed) = keys.encrypt_field(*record, field, &p.stored);
                    sqlx::query(
                        "UPDATE record_sensitive_values SET ciphertext = $3, kek_id = $4, \
                         blind_index = $5 WHERE record_id = $1 AND field = $2",
                    )
                    .bind(record)
                    .bind(field)
                    .bind(&sealed)
                    .bind(&new_kek)
                    .bind(&index)
                    .execute(&mut *tx)
                    .await?;
                    step.resealed += 1;
                } else {
                    sqlx::query(
                        "UPDATE record_sensitive_values SET blind_index = $3 \
                         WHERE record_id = $1 AND field = $2",
                    )
                    .bind(record)
                    .bind(field)
                    .bind(&index)
                    .execute(&mut *tx)
                    .await?;
                }
                step.reindexed += 1;
            }
            let complete = (rows.len() as i64) < BATCH;
            Ok(Some((step, last, complete)))
        })?;
        let Some((step, last, complete)) = step else {
            return Ok(None);
        };
        done.reindexed += step.reindexed;
        done.resealed += step.resealed;
        done.unparsable += step.unparsable;
        if let Some(last) = last {
            after = last;
        }
        if complete {
            let recorded = unit!(db, |tx| {
                let inserted = sqlx::query(
                    "INSERT INTO app_data_migrations (name, rows) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(REINDEX)
                .bind(i64::try_from(done.reindexed).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if inserted {
                    tx.audit(
                        &system,
                        Event::new("phones.reindex", Outcome::Success).detail(json!({
                            "reindexed": done.reindexed, "resealed": done.resealed,
                            "unparsable": done.unparsable,
                        })),
                    )
                    .await?;
                }
                Ok(inserted)
            })?;
            return Ok(recorded.then_some(done));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbering plans, by example: (as typed, E.164 or `None` for refused).
    const TABLE: &[(&str, Option<&str>)] = &[
        // Mainland mobiles, however written.
        ("13812345678", Some("+8613812345678")),
        ("138 1234 5678", Some("+8613812345678")),
        ("138-1234-5678", Some("+8613812345678")),
        ("+86 138-1234-5678", Some("+8613812345678")),
        ("+8613812345678", Some("+8613812345678")),
        ("0086 138 1234 5678", Some("+8613812345678")),
        ("15912345678", Some("+8615912345678")),
        ("18612345678", Some("+8618612345678")),
        ("19912345678", Some("+8619912345678")),
        // Mainland landlines with their area code.
        ("010-12345678", Some("+861012345678")),
        ("(010) 1234 5678", Some("+861012345678")),
        ("0755 1234 5678", Some("+8675512345678")),
        ("021-6123 4567", Some("+862161234567")),
        ("+86 755 1234 5678", Some("+8675512345678")),
        // Other countries, with their country code.
        ("+44 20 7946 0958", Some("+442079460958")),
        ("+1 650-253-0000", Some("+16502530000")),
        ("+81 3-1234-5678", Some("+81312345678")),
        ("+852 2123 4567", Some("+85221234567")),
        ("0044 20 7946 0958", Some("+442079460958")),
        // Refused.
        ("1381234567", None),      // 10 digits
        ("138123456789", None),    // 12 digits
        ("23812345678", None),     // neither a mobile nor a trunk prefix
        ("12812345678", None),     // 12x is no mobile range
        ("10012345678", None),     // 10x is no mobile range
        ("442079460958", None),    // a foreign number without its +
        ("6502530000", None),      // likewise
        ("+44 20 7946 095", None), // too short for its plan
        ("+999 1234 5678", None),  // no such country code
        ("010-1234", None),        // too short for a landline
        ("12345", None),
        ("", None),
        ("call me", None),
        ("138-1234-567a", None),
        ("1-800-FLOWERS", None),
        ("86+13812345678", None),
        ("++8613812345678", None),
    ];

    #[test]
    fn phone_numbers_follow_the_numbering_plans() {
        let mut wrong = Vec::new();
        for (typed, want) in TABLE {
            let got = parse(typed).map(|p| p.e164);
            if got.as_deref() != *want {
                wrong.push(format!("{typed:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn mainland_numbers_are_kept_in_national_form_others_in_e164() {
        assert_eq!(parse("+86 138-1234-5678").unwrap().stored, "13812345678");
        assert_eq!(parse("010-12345678").unwrap().stored, "01012345678");
        assert_eq!(parse("0755 1234 5678").unwrap().stored, "075512345678");
        assert_eq!(parse("+44 20 7946 0958").unwrap().stored, "+442079460958");
        // What is kept parses back to the same number.
        for (typed, want) in TABLE {
            if let Some(p) = parse(typed) {
                assert_eq!(
                    parse(&p.stored).map(|q| q.e164).as_deref(),
                    *want,
                    "{typed}"
                );
            }
        }
    }

    #[test]
    fn values_kept_by_earlier_versions_are_understood() {
        // The earlier normalization kept digits: a mobile's 11, another country's number
        // with its country code but no +.
        assert_eq!(from_stored("13812345678").unwrap().e164, "+8613812345678");
        assert_eq!(from_stored("442079460958").unwrap().e164, "+442079460958");
        assert_eq!(from_stored("442079460958").unwrap().stored, "+442079460958");
        assert_eq!(from_stored("01012345678").unwrap().e164, "+861012345678");
        assert!(from_stored("12345").is_none());
    }
}
