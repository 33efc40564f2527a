//! Passwords (argon2id), session tokens (random, stored only as SHA-256), and the
//! throttle on failed logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::sync::lock;

pub const COOKIE: &str = "homehub_session";
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
pub const MIN_PASSWORD_LEN: usize = 12;

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("hashing password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash of nothing in particular, checked when the email is unknown so that a
/// wrong email takes as long as a wrong password.
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("not a password of anyone").expect("hash"))
}

pub fn check_new_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::invalid(format!("password must be at least {MIN_PASSWORD_LEN} characters")));
    }
    Ok(())
}

/// A new random session token (what the cookie holds) and its hash (what the
/// database holds).
pub fn new_token() -> (String, Vec<u8>) {
    let raw: [u8; 32] = rand::random();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A random password for the demo's owner.
pub fn random_password() -> String {
    let raw: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Counts failed logins per client address; past the limit the address waits.
pub struct Throttle {
    window: Duration,
    limit: u32,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(limit: u32, window: Duration) -> Self {
        Throttle { window, limit, failures: Mutex::new(HashMap::new()) }
    }

    pub fn allowed(&self, ip: IpAddr) -> bool {
        let mut m = lock(&self.failures);
        match m.get(&ip) {
            Some((since, n)) if since.elapsed() < self.window => *n < self.limit,
            Some(_) => {
                m.remove(&ip);
                true
            }
            None => true,
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut m = lock(&self.failures);
        if m.len() > 10_000 {
            let window = self.window;
            m.retain(|_, (since, _)| since.elapsed() < window);
        }
        let e = m.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= self.window {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }

    pub fn succeeded(&self, ip: IpAddr) {
        lock(&self.failures).remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_one() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.len() >= 43);
        assert_eq!(ha, token_hash(&a));
        assert_ne!(ha, a.as_bytes());
    }

    #[test]
    fn throttle_blocks_after_the_limit() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.168.1.5".parse().unwrap();
        for _ in 0..3 {
            assert!(t.allowed(ip));
            t.failed(ip);
        }
        assert!(!t.allowed(ip));
        assert!(t.allowed("192.168.1.6".parse().unwrap()));
        t.succeeded(ip);
        assert!(t.allowed(ip));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough password").is_ok());
    }
}
