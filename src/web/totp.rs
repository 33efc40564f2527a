//! Second factors: TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps — what every
//! authenticator app reads from an `otpauth://` QR code), one-time recovery codes, and the
//! key that seals TOTP secrets at rest.
//!
//! A TOTP secret must be readable by the hub to check codes, so it cannot be hashed; it is
//! sealed ([`crate::secrets::SealKey`]: ChaCha20-Poly1305 with a key kept in its own file
//! beside the database, `totp.key`, 0600), so a copy of `homehub.db` alone does not give anyone's second
//! factor away. Recovery codes are random and stored only as SHA-256.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
pub use crate::secrets::{KEY_FILE, SealKey};

/// Seconds per step.
pub const STEP_SECS: i64 = 30;
/// Steps either side of now that still count (clocks drift; people type slowly).
const SKEW_STEPS: i64 = 1;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
const SECRET_LEN: usize = 20;
/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Letters and digits that cannot be mistaken for one another.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// A new random TOTP secret.
pub fn new_secret() -> Vec<u8> {
    rand::random::<[u8; SECRET_LEN]>().to_vec()
}

/// The 6-digit code of `secret` at time step `step`.
pub fn code_at(secret: &[u8], step: i64) -> u32 {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = ring::hmac::sign(&key, &step.to_be_bytes());
    let d = mac.as_ref();
    let off = usize::from(d[d.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([d[off] & 0x7f, d[off + 1], d[off + 2], d[off + 3]]);
    bin % 1_000_000
}

/// The time step of a Unix time in milliseconds.
pub fn step_of(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000 * STEP_SECS)
}

/// The step whose code `code` is, within the allowed skew of `now_ms`; None for a wrong
/// code. The caller still has to make sure the step was not used before.
pub fn verify(secret: &[u8], code: &str, now_ms: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let want: u32 = code.parse().ok()?;
    let now = step_of(now_ms);
    // Every candidate is computed, so the time taken says nothing about which matched.
    let mut found = None;
    for step in (now - SKEW_STEPS..=now + SKEW_STEPS).rev() {
        if code_at(secret, step) == want && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Whether `code` looks like a TOTP code (six digits) rather than a recovery code.
pub fn is_totp_code(code: &str) -> bool {
    let c = code.trim();
    c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())
}

/// RFC 4648 base32 without padding: what authenticator apps take as the secret.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buf >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI an authenticator app reads (issuer "homehub", the email as label).
pub fn otpauth_uri(email: &str, secret: &[u8]) -> String {
    let label = percent(&format!("homehub:{email}"));
    format!("otpauth://totp/{label}?secret={}&issuer=homehub&algorithm=SHA1&digits=6&period={STEP_SECS}", base32(secret))
}

fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` as a QR code in SVG: one path of dark modules on a white square with the
/// 4-module quiet zone, and nothing that a strict Content-Security-Policy would block
/// (no style, no script).
pub fn qr_svg(text: &str) -> Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| Error::internal(format!("making a QR code: {e}")))?;
    let w = code.width();
    let quiet = 4;
    let size = w + 2 * quiet;
    let mut d = String::new();
    for (i, c) in code.to_colors().iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (x, y) = (i % w + quiet, i / w + quiet);
            d.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" width=\"{px}\" height=\"{px}\" \
         shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path d=\"{d}\" fill=\"#000\"/></svg>",
        px = size * 5
    ))
}

/// Ten new recovery codes, `xxxxx-xxxxx`.
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw: [u8; 10] = rand::random();
            let chars: String =
                raw.iter().map(|b| char::from(RECOVERY_ALPHABET[usize::from(*b) % RECOVERY_ALPHABET.len()])).collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

/// What a recovery code is stored as: SHA-256 of it without blanks or dashes, in lower
/// case (so it can be typed any way).
pub fn recovery_hash(code: &str) -> Vec<u8> {
    let norm: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    Sha256::digest(format!("homehub recovery code:{norm}").as_bytes()).to_vec()
}

/// What a user's TOTP secret is sealed under ([`SealKey`]): a sealed secret moved to another
/// user's row does not open.
pub fn context(user_id: i64) -> String {
    format!("homehub totp v1 user {user_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_test_vectors() {
        // RFC 6238 appendix B, SHA-1 (the 8-digit values, taken mod 10^6).
        let secret = b"12345678901234567890";
        for (t, want) in
            [(59i64, 94287082u32), (1111111109, 7081804), (1111111111, 14050471), (1234567890, 89005924), (2000000000, 69279037)]
        {
            assert_eq!(code_at(secret, t / 30), want % 1_000_000, "t = {t}");
        }
    }

    #[test]
    fn codes_verify_within_one_step_either_side() {
        let secret = new_secret();
        let now = 1_700_000_000_000;
        let step = step_of(now);
        let code = |s: i64| format!("{:06}", code_at(&secret, s));
        assert_eq!(verify(&secret, &code(step), now), Some(step));
        assert_eq!(verify(&secret, &code(step - 1), now), Some(step - 1));
        assert_eq!(verify(&secret, &code(step + 1), now), Some(step + 1));
        assert_eq!(verify(&secret, &code(step - 2), now), None);
        assert_eq!(verify(&secret, "12345", now), None);
        assert_eq!(verify(&secret, "abcdef", now), None);
        assert!(is_totp_code(" 123456 ") && !is_totp_code("abcde-fghij"));
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let uri = otpauth_uri("a b@example.com", b"foobar");
        assert_eq!(
            uri,
            "otpauth://totp/homehub%3Aa%20b@example.com?secret=MZXW6YTBOI&issuer=homehub&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn the_qr_code_is_plain_svg() {
        let svg = qr_svg("otpauth://totp/homehub:a@example.com?secret=ABC").unwrap();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        assert!(!svg.contains("style") && !svg.contains("script"));
        assert!(svg.matches('M').count() > 100, "has modules");
    }

    #[test]
    fn recovery_codes_are_random_and_typed_any_way() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert!(codes.iter().all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'));
        assert_ne!(codes[0], codes[1]);
        assert_eq!(recovery_hash("abcde-fghjk"), recovery_hash(" ABCDE FGHJK "));
        assert_ne!(recovery_hash("abcde-fghjk"), recovery_hash("abcde-fghjm"));
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_user_and_key() {
        let dir = std::env::temp_dir().join(format!("homehub-totp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = SealKey::load_or_create(&dir).unwrap();
        let again = SealKey::load_or_create(&dir).unwrap();
        let sealed = key.seal(&context(3), b"secret").unwrap();
        assert_eq!(again.open(&context(3), &sealed).unwrap(), b"secret");
        assert!(key.open(&context(4), &sealed).is_err());
        assert!(SealKey::for_tests().open(&context(3), &sealed).is_err());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
