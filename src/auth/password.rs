//! Password hashing with argon2id at OWASP's parameters (m = 19 MiB, t = 2, p = 1).
//! Hashing runs on the blocking pool; verification of an unknown account runs against a
//! fixed dummy hash so that timing does not reveal whether the account exists.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{AppError, AppResult};

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 1024;

/// A valid argon2id hash of a random string nobody knows, verified when an account is
/// unknown so both paths cost the same.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3Ryb25ncm9vbWR1bW15$0PsHs5oK5QSXJ4PX1BmDyZP8xWR6XQ9JvVnGmk2q1l0";

fn argon2() -> Argon2<'static> {
    // These parameters are valid constants; Params::new cannot fail for them.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub async fn hash(password: SecretString) -> AppResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(AppError::internal)?
}

/// Verifies `password` against `stored`, or against the dummy hash when `stored` is None.
/// Returns true only for a stored hash that matches.
pub async fn verify(stored: Option<String>, password: SecretString) -> AppResult<bool> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let encoded = stored.unwrap_or_else(|| DUMMY_HASH.to_string());
        let parsed = PasswordHash::new(&encoded)
            .map_err(|e| AppError::internal(format!("stored password hash unreadable: {e}")))?;
        let ok = argon2()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        Ok(ok && known)
    })
    .await
    .map_err(AppError::internal)?
}

/// Rules for a password a person chooses.
pub fn check_strength(username: &str, password: &SecretString) -> AppResult<()> {
    let p = password.expose_secret();
    let chars = p.chars().count();
    if chars < MIN_LENGTH {
        return Err(AppError::invalid(
            "password",
            format!("must be at least {MIN_LENGTH} characters"),
        ));
    }
    if chars > MAX_LENGTH {
        return Err(AppError::invalid(
            "password",
            format!("must be at most {MAX_LENGTH} characters"),
        ));
    }
    if p.to_lowercase().contains(&username.to_lowercase()) {
        return Err(AppError::invalid(
            "password",
            "must not contain the username",
        ));
    }
    Ok(())
}

/// A random password for first start and resets: 24 characters from an unambiguous alphabet.
pub fn generate() -> SecretString {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let s: String = (0..24)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    SecretString::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            verify(Some(h.clone()), SecretString::from("correct horse battery"))
                .await
                .unwrap()
        );
        assert!(!verify(Some(h), SecretString::from("wrong")).await.unwrap());
        assert!(!verify(None, SecretString::from("anything")).await.unwrap());
    }

    #[test]
    fn strength_rules() {
        assert!(check_strength("alice", &SecretString::from("short")).is_err());
        assert!(check_strength("alice", &SecretString::from("alice-is-my-password")).is_err());
        assert!(check_strength("alice", &SecretString::from("a long enough passphrase")).is_ok());
        assert_eq!(generate().expose_secret().len(), 24);
    }
}
