//! age keys: the owner's identity (recovery key) and the recipients the hub encrypts to.
//!
//! The hub only ever holds recipients (`[cloud] recipients`); an identity is printed once
//! by `homehub keys new` for the owner to keep, and read back only by commands the owner
//! runs to open the bucket (`cloud get`). Error messages never echo key material, since a
//! mistaken paste may be a secret key.

use std::path::Path;

use age::secrecy::ExposeSecret;
use age::x25519::{Identity, Recipient};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{Error, ResultExt};

/// Generates a fresh X25519 identity: `("AGE-SECRET-KEY-1…", "age1…")`.
pub fn new_identity() -> (String, String) {
    let identity = Identity::generate();
    let secret = identity.to_string().expose_secret().to_owned();
    (secret, identity.to_public().to_string())
}

/// A new identity in exactly the layout `age-keygen` writes, so the owner can keep the
/// file beside other age keys and use it with the stock `age -d -i` tool.
pub fn keygen_text(now: DateTime<Utc>) -> String {
    let (secret, recipient) = new_identity();
    format_keygen(now, &secret, &recipient)
}

/// `age-keygen` prints the creation time as RFC 3339 with whole seconds (Go's
/// `time.RFC3339`), which for UTC ends in `Z`.
fn format_keygen(now: DateTime<Utc>, secret: &str, recipient: &str) -> String {
    let created = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    format!("# created: {created}\n# public key: {recipient}\n{secret}\n")
}

/// Parses the configured recipients; an error names the entry (`cloud.recipients[i]`).
pub fn parse_recipients(list: &[String]) -> crate::Result<Vec<Recipient>> {
    list.iter()
        .enumerate()
        .map(|(i, text)| parse_recipient(text).map_err(|e| e.context(format!("cloud.recipients[{i}]"))))
        .collect()
}

fn parse_recipient(text: &str) -> crate::Result<Recipient> {
    let text = text.trim();
    if looks_secret(text) {
        return Err(Error::invalid(
            "this is a secret key (AGE-SECRET-KEY-1…); the hub takes only the public key (age1…) \
             — keep the secret key off the hub",
        ));
    }
    text.parse::<Recipient>().map_err(|why| Error::invalid(format!("not an age X25519 recipient (age1…): {why}")))
}

fn looks_secret(text: &str) -> bool {
    text.get(..15).is_some_and(|p| p.eq_ignore_ascii_case("AGE-SECRET-KEY-"))
}

/// Reads an identity file as `age-keygen` writes it (several keys allowed; `#` comments
/// and blank lines ignored). An error names the file and the 1-based line.
pub fn read_identity_file(path: &Path) -> crate::Result<Vec<Identity>> {
    let what = format!("identity file {}", path.display());
    let text = std::fs::read_to_string(path).ctx(format_args!("reading {what}"))?;
    let identities = parse_identities(&text).map_err(|e| e.context(&what))?;
    if identities.is_empty() {
        return Err(Error::invalid(format!("{what}: no identity (AGE-SECRET-KEY-1…) in it")));
    }
    Ok(identities)
}

fn parse_identities(text: &str) -> crate::Result<Vec<Identity>> {
    let keys = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
    keys.map(|(n, line)| {
        line.parse::<Identity>()
            .map_err(|why| Error::invalid(format!("line {n}: not an age X25519 identity (AGE-SECRET-KEY-1…): {why}")))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use chrono::TimeZone;

    /// `Identity` has no `Debug` (it is a secret), so `unwrap_err` is unavailable.
    fn read_err(path: &Path) -> Error {
        match read_identity_file(path) {
            Ok(ids) => panic!("expected an error, read {} identities", ids.len()),
            Err(e) => e,
        }
    }

    #[test]
    fn new_identity_pairs_secret_and_public() {
        let (secret, public) = new_identity();
        assert!(secret.starts_with("AGE-SECRET-KEY-1"), "{secret}");
        assert!(public.starts_with("age1"), "{public}");
        let identity: Identity = secret.parse().unwrap();
        assert_eq!(identity.to_public().to_string(), public);
        assert_ne!(new_identity().0, secret);
    }

    #[test]
    fn keygen_text_has_age_keygen_layout() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let text = keygen_text(now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(text.ends_with('\n'));
        assert_eq!(lines[0], "# created: 2026-01-02T03:04:05Z");
        let public = lines[1].strip_prefix("# public key: ").expect("public key line");
        let identity: Identity = lines[2].parse().expect("secret key line");
        assert_eq!(identity.to_public().to_string(), public);
    }

    #[test]
    fn keygen_text_reads_back_as_identity_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owner.key");
        let text = keygen_text(Utc::now());
        std::fs::write(&path, format!("{text}\n# second key\n\n{text}")).unwrap();
        let ids = read_identity_file(&path).unwrap();
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn identity_file_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "# created: x\n\nAGE-SECRET-KEY-1NOPE\n").unwrap();
        let err = read_err(&path);
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains("bad.key"), "{err}");
        assert!(err.message().contains("line 3"), "{err}");
        assert!(!err.message().contains("NOPE"), "must not echo key material: {err}");
    }

    #[test]
    fn identity_file_missing_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_err(&dir.path().join("none.key"));
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(missing.message().contains("none.key"), "{missing}");
        let empty = dir.path().join("empty.key");
        std::fs::write(&empty, "# only a comment\n").unwrap();
        let err = read_err(&empty);
        assert!(err.message().contains("no identity"), "{err}");
    }

    #[test]
    fn recipients_parse_and_errors_name_the_index() {
        let (_, a) = new_identity();
        let (_, b) = new_identity();
        assert_eq!(parse_recipients(&[a.clone(), format!(" {b}\n")]).unwrap().len(), 2);
        assert!(parse_recipients(&[]).unwrap().is_empty());

        let err = parse_recipients(&[a.clone(), "age1bogus".into()]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().starts_with("cloud.recipients[1]:"), "{err}");
    }

    #[test]
    fn recipients_refuse_a_secret_key_without_echoing_it() {
        let (secret, public) = new_identity();
        let err = parse_recipients(&[public, secret.clone()]).unwrap_err();
        assert!(err.message().starts_with("cloud.recipients[1]:"), "{err}");
        assert!(err.message().contains("secret key"), "{err}");
        assert!(!err.message().contains(&secret[16..]), "{err}");
    }
}
