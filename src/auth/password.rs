//! Password hashing with argon2id at OWASP's parameters (m = 19 MiB, t = 2, p = 1).
//!
//! Guarantees: every hash and verification in the server goes through one `Hasher`, which
//! runs it on the blocking pool under a semaphore, so at most `permits` argon2 computations
//! (19 MiB each) are in memory at once whatever the load. A caller that finds no permit free
//! within a short wait is refused with `AppError::Busy` (503 with `Retry-After`); waiters are
//! also capped in number, so nothing queues without bound. Verification of an unknown
//! account runs against a fixed dummy hash so that timing does not reveal whether the
//! account exists.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::error::{AppError, AppResult};

pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 1024;

/// A valid argon2id hash of a random string nobody knows, verified when an account is
/// unknown so both paths cost the same.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3Ryb25ncm9vbWR1bW15$0PsHs5oK5QSXJ4PX1BmDyZP8xWR6XQ9JvVnGmk2q1l0";

/// Callers allowed to wait for a permit, per permit: beyond that a request is refused at
/// once rather than parked.
const WAITERS_PER_PERMIT: usize = 8;

fn argon2() -> Argon2<'static> {
    // These parameters are valid constants; Params::new cannot fail for them.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The number of concurrent hashes when the configuration leaves it to the server: two per
/// core, at least 2 and at most 16 (16 × 19 MiB ≈ 300 MiB at the worst moment).
pub fn default_permits() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 2).clamp(2, 16)
}

/// The one gate every argon2 computation passes. Cheap to clone; clones share the gate.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    gate: Arc<Semaphore>,
    permits: usize,
    wait: Duration,
    waiting: AtomicUsize,
    running: AtomicUsize,
    peak: AtomicUsize,
    computed: AtomicU64,
    refused: AtomicU64,
}

/// Counters for tests and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HasherStats {
    pub permits: usize,
    /// The most argon2 computations ever running at once.
    pub peak: usize,
    pub computed: u64,
    pub refused: u64,
}

/// Decrements a counter when dropped, so that every exit path (including a cancelled
/// request) gives back what it took.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hasher {
    pub fn new(permits: usize, wait: Duration) -> Hasher {
        let permits = permits.max(1);
        Hasher {
            inner: Arc::new(Inner {
                gate: Arc::new(Semaphore::new(permits)),
                permits,
                wait,
                waiting: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                computed: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// `hash_concurrency` (0: `default_permits()`) and `hash_wait_ms` from the configuration.
    pub fn from_config(config: &Config) -> Hasher {
        let permits = match config.hash_concurrency {
            0 => default_permits(),
            n => n as usize,
        };
        Hasher::new(
            permits,
            Duration::from_millis(u64::from(config.hash_wait_ms)),
        )
    }

    pub fn stats(&self) -> HasherStats {
        HasherStats {
            permits: self.inner.permits,
            peak: self.inner.peak.load(Ordering::SeqCst),
            computed: self.inner.computed.load(Ordering::SeqCst),
            refused: self.inner.refused.load(Ordering::SeqCst),
        }
    }

    /// Takes every permit, so that the next hash is refused; for tests of the refusal.
    #[doc(hidden)]
    pub async fn occupy_all(&self) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(self.inner.permits).ok()?;
        self.inner.gate.clone().acquire_many_owned(n).await.ok()
    }

    async fn permit(&self) -> AppResult<OwnedSemaphorePermit> {
        if let Ok(p) = self.inner.gate.clone().try_acquire_owned() {
            return Ok(p);
        }
        let limit = self.inner.permits * WAITERS_PER_PERMIT;
        let waiting = self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiter = Counted(&self.inner.waiting);
        if waiting < limit && !self.inner.wait.is_zero() {
            let acquire = self.inner.gate.clone().acquire_owned();
            if let Ok(Ok(p)) = tokio::time::timeout(self.inner.wait, acquire).await {
                return Ok(p);
            }
        }
        self.inner.refused.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(
            permits = self.inner.permits,
            "password hashing at capacity; request refused"
        );
        Err(AppError::Busy)
    }

    /// Runs `f` on the blocking pool holding a permit. The permit moves into the blocking
    /// task, so a request that is cancelled mid-hash keeps the memory accounted for until
    /// the computation really ends.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let permit = self.permit().await?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let now = inner.running.fetch_add(1, Ordering::SeqCst) + 1;
            let _running = Counted(&inner.running);
            inner.peak.fetch_max(now, Ordering::SeqCst);
            inner.computed.fetch_add(1, Ordering::SeqCst);
            f()
        })
        .await
        .map_err(AppError::internal)?
    }

    pub async fn hash(&self, password: SecretString) -> AppResult<String> {
        self.run(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2()
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| AppError::internal(format!("password hashing failed: {e}")))
        })
        .await
    }

    /// Verifies `password` against `stored`, or against the dummy hash when `stored` is
    /// None. Returns true only for a stored hash that matches.
    pub async fn verify(&self, stored: Option<String>, password: SecretString) -> AppResult<bool> {
        self.run(move || {
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
    }
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
        let hasher = Hasher::new(2, Duration::from_secs(5));
        let h = hasher
            .hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher
            .verify(Some(h.clone()), SecretString::from("correct horse battery"))
            .await
            .unwrap());
        assert!(!hasher
            .verify(Some(h), SecretString::from("wrong"))
            .await
            .unwrap());
        assert!(!hasher
            .verify(None, SecretString::from("anything"))
            .await
            .unwrap());
        assert_eq!(hasher.stats().computed, 4);
    }

    #[tokio::test]
    async fn a_full_gate_refuses_instead_of_queueing() {
        let hasher = Hasher::new(1, Duration::ZERO);
        let held = hasher.occupy_all().await.unwrap();
        let e = hasher.hash(SecretString::from("x")).await.unwrap_err();
        assert!(matches!(e, AppError::Busy), "{e:?}");
        assert_eq!(hasher.stats().refused, 1);
        assert_eq!(hasher.stats().computed, 0);
        drop(held);
        assert!(hasher.hash(SecretString::from("x")).await.is_ok());
    }

    #[test]
    fn default_permits_stay_in_bounds() {
        assert!((2..=16).contains(&default_permits()));
    }

    #[test]
    fn strength_rules() {
        assert!(check_strength("alice", &SecretString::from("short")).is_err());
        assert!(check_strength("alice", &SecretString::from("alice-is-my-password")).is_err());
        assert!(check_strength("alice", &SecretString::from("a long enough passphrase")).is_ok());
        assert_eq!(generate().expose_secret().len(), 24);
    }
}
