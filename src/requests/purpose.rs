//! How long a purpose must be, counted the way a reader sees it.
//!
//! A purpose is the approver's only evidence of need, so it has a minimum length; but a
//! Chinese sentence says in 8 characters (`客户投诉核查合同`) what English needs 30 letters
//! for, so counting characters alike would refuse complete Chinese purposes. The rule:
//! every visible character counts (whitespace, controls and invisible characters do not,
//! as in [`crate::text::visible_len`]); a CJK ideograph, kana or Hangul syllable weighs
//! 2.5, a letter or digit of any other script weighs 1, punctuation and symbols weigh
//! nothing; the total must reach 15. So 6 Chinese characters suffice,
//! 5 do not; 15 Latin characters suffice, 14 do not; mixed text adds up
//! (`合同 ABC-123`: 2 × 2.5 + 6 = 11, refused). At most 2000 characters in all.

use crate::error::{AppError, AppResult};

/// The weight a purpose must reach, in Latin characters.
pub const MIN_WEIGHT: usize = 15;
/// The fewest CJK characters that reach [`MIN_WEIGHT`].
pub const MIN_CJK: usize = 6;
/// The most characters a purpose may have (whitespace included).
pub const MAX_CHARS: usize = 2000;

/// Whether `c` is written with the weight of a CJK character: Han ideographs (unified,
/// extensions, compatibility), Hiragana, Katakana, Bopomofo and Hangul syllables/jamo.
pub fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{11FF}'         // Hangul jamo
        | '\u{3040}'..='\u{30FF}'       // Hiragana, Katakana
        | '\u{3100}'..='\u{312F}'       // Bopomofo
        | '\u{3131}'..='\u{318E}'       // Hangul compatibility jamo
        | '\u{31A0}'..='\u{31BF}'       // Bopomofo extended
        | '\u{31F0}'..='\u{31FF}'       // Katakana phonetic extensions
        | '\u{3400}'..='\u{4DBF}'       // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'       // CJK unified ideographs
        | '\u{AC00}'..='\u{D7A3}'       // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'       // CJK compatibility ideographs
        | '\u{20000}'..='\u{3134F}'     // CJK extensions B–H (planes 2 and 3)
    )
}

/// The purpose's weight in half Latin characters (a CJK character is 5, a letter or digit
/// of any script 2, punctuation and symbols nothing: fifteen dots say nothing), so the
/// arithmetic stays in integers.
pub fn half_weight(s: &str) -> usize {
    s.chars()
        .filter(|&c| !c.is_whitespace() && !c.is_control() && !crate::text::is_invisible(c))
        .map(|c| {
            if is_cjk(c) {
                5
            } else if c.is_alphanumeric() {
                2
            } else {
                0
            }
        })
        .sum()
}

/// Whether a purpose is long enough (and not too long).
pub fn acceptable(s: &str) -> bool {
    half_weight(s) >= 2 * MIN_WEIGHT && s.chars().count() <= MAX_CHARS
}

/// The refusal of a purpose that is too short or too long (field `purpose`).
pub fn check(purpose: &str) -> AppResult<()> {
    if purpose.chars().count() > MAX_CHARS {
        return Err(AppError::invalid(
            "purpose",
            format!("must be at most {MAX_CHARS} characters"),
        ));
    }
    if !acceptable(purpose) {
        return Err(AppError::invalid(
            "purpose",
            format!(
                "say why you need it: at least {MIN_CJK} Chinese characters or {MIN_WEIGHT} letters"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_purposes_count_by_weight() {
        assert!(acceptable("客户投诉核查合同"));
        assert!(acceptable("核查客户合同"));
        assert!(!acceptable("核查合同书"));
        assert!(!acceptable("核 查 合 同 书 \u{200B}\u{200B}"));
    }

    #[test]
    fn latin_purposes_need_fifteen_visible_characters() {
        assert!(acceptable("complaint #424242"));
        assert!(!acceptable("complaint #42424"));
        // Punctuation alone says nothing, however long.
        assert!(!acceptable("..............."));
        assert!(!acceptable("-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-"));
        assert!(!acceptable("  complaint   #4242  \u{200B}\u{FEFF} "));
        // Full-width punctuation weighs nothing either.
        assert!(!acceptable("合同。。。。。。。。"));
    }

    #[test]
    fn mixed_text_adds_up() {
        // 2 × 2.5 + 6 = 11 (the dash says nothing)
        assert!(!acceptable("合同 ABC-123"));
        // 4 × 2.5 + 5 = 15
        assert!(acceptable("核查合同 ABC12"));
    }

    #[test]
    fn too_long_is_refused_with_its_own_message() {
        let long = "字".repeat(MAX_CHARS + 1);
        let e = check(&long).unwrap_err();
        assert!(e.public_message().contains("at most 2000"), "{e:?}");
        assert!(check("客户投诉核查合同").is_ok());
    }
}
