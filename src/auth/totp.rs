//! Time-based one-time passwords (RFC 6238 over RFC 4226): HMAC-SHA1, 30-second steps,
//! six digits, as every authenticator app computes them; the secret is 20 random bytes,
//! shown to the person once in base32 (RFC 4648, without padding) inside an `otpauth://`
//! URI and a QR code. Also the recovery codes handed out at enrolment.
//!
//! Guarantees: codes are compared in constant time; a code is accepted for the current
//! step and one step either side (clock drift), and the step it matched is returned so the
//! caller can refuse it, and every earlier step, from then on (no replay). Secrets and
//! codes live in zeroized buffers and never appear in `Debug` output.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Seconds per time step (RFC 6238's default, what authenticator apps assume).
pub const STEP_SECONDS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Bytes of secret (160 bits, the HMAC-SHA1 block output size RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;
/// Steps accepted either side of the current one.
pub const DRIFT_STEPS: i64 = 1;
/// Recovery codes handed out at confirmation.
pub const RECOVERY_CODES: usize = 10;

/// A TOTP secret: 20 bytes, zeroized on drop.
pub struct Secret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Secret {
    pub fn generate() -> Secret {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Secret(bytes)
    }

    /// The secret from its base32 text (as stored sealed and shown to the person).
    pub fn from_base32(text: &str) -> Option<Secret> {
        base32_decode(text).map(|b| Secret(Zeroizing::new(b)))
    }

    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(base32_encode(&self.0))
    }

    /// The code of time step `step` (RFC 4226 HOTP with the step as counter).
    pub fn code_at_step(&self, step: i64) -> u32 {
        hotp(&self.0, step as u64, DIGITS)
    }

    /// The step of a Unix time.
    pub fn step_of(unix_seconds: i64) -> i64 {
        unix_seconds.div_euclid(STEP_SECONDS)
    }

    /// The step `code` (six digits, as typed) matches within the drift window around
    /// `unix_seconds`, newest first; `None` when it matches none or is not six digits.
    pub fn verify(&self, code: &str, unix_seconds: i64) -> Option<i64> {
        let code = normalize_code(code)?;
        let now = Self::step_of(unix_seconds);
        let mut found = None;
        // Every step of the window is computed and compared, so the time taken does not
        // say which one matched.
        for step in ((now - DRIFT_STEPS)..=(now + DRIFT_STEPS)).rev() {
            let expected = format!(
                "{:0width$}",
                self.code_at_step(step),
                width = DIGITS as usize
            );
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && found.is_none() {
                found = Some(step);
            }
        }
        found
    }

    /// The `otpauth://` URI authenticator apps read (from the QR code).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            uri_component(issuer),
            uri_component(account),
            self.to_base32().as_str(),
            uri_component(issuer),
        ))
    }
}

/// Six digits, with spaces allowed between them (apps show `123 456`).
pub fn normalize_code(code: &str) -> Option<String> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == DIGITS as usize && digits.chars().all(|c| c.is_ascii_digit()))
        .then_some(digits)
}

/// RFC 4226: HMAC-SHA1 of the big-endian counter, dynamically truncated.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin =
        u32::from_be_bytes([h[offset], h[offset + 1], h[offset + 2], h[offset + 3]]) & 0x7fff_ffff;
    bin % 10u32.pow(digits)
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32, upper case, without padding (as `otpauth://` URIs carry it).
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes base32 (case-insensitive; spaces and padding ignored); `None` on any other
/// character.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let c = c.to_ascii_uppercase();
        let v = BASE32.iter().position(|&b| char::from(b) == c)? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn uri_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Letters of recovery codes: no 0/O, 1/I/L, so a code read aloud or copied by hand is
/// typed back right.
const RECOVERY_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// Ten recovery codes, each two groups of five (`K7RQM-2XH9D`: about 49 bits).
pub fn recovery_codes() -> Vec<Zeroizing<String>> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut s = Zeroizing::new(String::with_capacity(11));
            for i in 0..10 {
                if i == 5 {
                    s.push('-');
                }
                let n = rand::Rng::gen_range(&mut rand::rngs::OsRng, 0..RECOVERY_ALPHABET.len());
                s.push(char::from(RECOVERY_ALPHABET[n]));
            }
            s
        })
        .collect()
}

/// A recovery code as typed, in the form it is hashed in: upper case, without spaces and
/// dashes; `None` when it cannot be one.
pub fn normalize_recovery_code(code: &str) -> Option<Zeroizing<String>> {
    let s: Zeroizing<String> = Zeroizing::new(
        code.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    (s.len() == 10 && s.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 column (secret "12345678901234567890", 8 digits).
    #[test]
    fn rfc_6238_test_vectors() {
        let key = b"12345678901234567890";
        for (time, code) in [
            (59i64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(hotp(key, Secret::step_of(time) as u64, 8), code, "T={time}");
        }
        // Six digits are the last six of the same value.
        let s = Secret(Zeroizing::new(key.to_vec()));
        assert_eq!(s.code_at_step(Secret::step_of(59)), 287082);
        assert_eq!(s.verify("287 082", 59), Some(1));
    }

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_encode(b"f"), "MY");
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi").unwrap(), b"foobar");
        assert!(base32_decode("MZ1").is_none());
        let s = Secret::generate();
        let text = s.to_base32();
        assert_eq!(text.len(), 32);
        let back = Secret::from_base32(&text).unwrap();
        assert_eq!(back.code_at_step(7), s.code_at_step(7));
    }

    #[test]
    fn only_the_window_around_now_is_accepted() {
        let s = Secret::generate();
        let now = 1_700_000_000i64;
        let step = Secret::step_of(now);
        let code = |st: i64| format!("{:06}", s.code_at_step(st));
        assert_eq!(s.verify(&code(step), now), Some(step));
        assert_eq!(s.verify(&code(step - 1), now), Some(step - 1));
        assert_eq!(s.verify(&code(step + 1), now), Some(step + 1));
        // Two steps away is refused, unless it happens to collide with one in the window.
        let far = code(step - 2);
        if ![step - 1, step, step + 1].iter().any(|&x| code(x) == far) {
            assert_eq!(s.verify(&far, now), None);
        }
        assert_eq!(s.verify("12345", now), None);
        assert_eq!(s.verify("abcdef", now), None);
    }

    #[test]
    fn otpauth_uri_names_issuer_account_and_secret() {
        let s = Secret(Zeroizing::new(b"12345678901234567890".to_vec()));
        let uri = s.otpauth_uri("Strongroom", "sara supervisor");
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/Strongroom:sara%20supervisor?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Strongroom&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
    }

    #[test]
    fn recovery_codes_are_readable_distinct_and_normalize() {
        let codes = recovery_codes();
        assert_eq!(codes.len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 11);
            assert_eq!(&c[5..6], "-");
            let n = normalize_recovery_code(c).unwrap();
            assert_eq!(n.len(), 10);
            assert_eq!(
                normalize_recovery_code(&c.to_lowercase().replace('-', " ")).unwrap(),
                n
            );
        }
        let mut set: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        set.sort_unstable();
        set.dedup();
        assert_eq!(set.len(), 10);
        assert!(normalize_recovery_code("123456").is_none());
        assert!(normalize_recovery_code("OOOOO-IIIII").is_none());
    }
}
