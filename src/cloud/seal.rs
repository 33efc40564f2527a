//! Streaming age encryption: every object that leaves the LAN goes through here.
//!
//! Clips can be large and the hub is small, so both directions copy through a fixed
//! buffer and never hold a whole object in memory. The output is a plain age v1 file
//! (binary, not armored), so the stock `age -d -i owner.key` opens it.

use std::io::{self, Read, Write};

use age::x25519::{Identity, Recipient};

use crate::error::{Error, ResultExt};

/// One age STREAM chunk; the encryptor buffers to this size anyway.
const BUF_LEN: usize = 64 * 1024;

/// Encrypts `input` to every recipient (each can decrypt alone) into `output`, returning
/// the number of plaintext bytes. The age stream is finished before returning, so a
/// successful return means `output` holds a complete age file.
pub fn encrypt_stream<R: Read, W: Write>(
    recipients: &[Recipient],
    mut input: R,
    output: W,
) -> crate::Result<u64> {
    if recipients.is_empty() {
        return Err(Error::invalid(
            "cloud.recipients: no recipient to encrypt to",
        ));
    }
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| Error::internal(format!("setting up age encryption: {e}")))?;
    let mut sealed = encryptor
        .wrap_output(output)
        .ctx("writing the age header")?;
    let n = copy(
        &mut input,
        &mut sealed,
        "reading the plaintext",
        "writing the ciphertext",
    )?;
    sealed.finish().ctx("finishing the age file")?;
    Ok(n)
}

/// Decrypts an age file from `input` with any of `identities` into `output`, returning
/// the number of plaintext bytes. A file no identity opens, or one that is damaged or
/// cut short, is an `Invalid` error saying so.
pub fn decrypt_stream<R: Read, W: Write>(
    identities: &[Identity],
    input: R,
    mut output: W,
) -> crate::Result<u64> {
    let decryptor = age::Decryptor::new(input).map_err(decrypt_error)?;
    let mut plain = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(decrypt_error)?;
    copy(
        &mut plain,
        &mut output,
        "reading the age payload",
        "writing the plaintext",
    )
}

/// Says which way a decryption failed; all but I/O trouble are about the file or key given.
fn decrypt_error(e: age::DecryptError) -> Error {
    match e {
        age::DecryptError::NoMatchingKeys => {
            Error::invalid("none of the given identities can open this age file (no matching key)")
        }
        age::DecryptError::Io(e) => read_error(e, "reading the age header"),
        other => Error::invalid(format!("not a valid age file: {other}")),
    }
}

/// A read error while parsing or decrypting: malformed or cut-short input (age reports
/// failed authentication as `InvalidData`, a short file as `UnexpectedEof`) is the
/// file's fault, so `Invalid`; anything else is I/O trouble.
fn read_error(e: io::Error, reading: &str) -> Error {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => Error::invalid(format!(
            "{reading}: the age file is damaged or cut short: {e}"
        )),
        _ => Error::internal(format!("{reading}: {e}")),
    }
}

/// Copies through a fixed buffer; errors say which side failed.
fn copy(
    input: &mut impl Read,
    output: &mut impl Write,
    reading: &str,
    writing: &str,
) -> crate::Result<u64> {
    let mut buf = vec![0u8; BUF_LEN];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e, reading)),
        };
        output.write_all(&buf[..n]).ctx(writing)?;
        total += n as u64;
    }
    output.flush().ctx(writing)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use rand::{RngCore, SeedableRng};

    fn key() -> (Identity, Recipient) {
        let id = Identity::generate();
        let r = id.to_public();
        (id, r)
    }

    fn random(len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(5).fill_bytes(&mut data);
        data
    }

    fn seal(recipients: &[Recipient], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let n = encrypt_stream(recipients, data, &mut out).unwrap();
        assert_eq!(n, data.len() as u64);
        out
    }

    #[test]
    fn round_trip_5mb_two_recipients_each_alone() {
        let data = random(5 * 1024 * 1024);
        let (id_a, r_a) = key();
        let (id_b, r_b) = key();
        let sealed = seal(&[r_a, r_b], &data);
        assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
        for id in [id_a, id_b] {
            let mut plain = Vec::new();
            let n = decrypt_stream(&[id], sealed.as_slice(), &mut plain).unwrap();
            assert_eq!(n, data.len() as u64);
            assert!(plain == data, "plaintext differs");
        }
    }

    /// The owner's side: Debian's `age` opens what the hub writes, and the hub's reader
    /// opens what `age` writes.
    #[test]
    fn the_stock_age_tool_reads_and_writes_the_same_format() {
        let dir = tempfile::tempdir().unwrap();
        let text = crate::cloud::keys::keygen_text(chrono::Utc::now());
        let key_file = dir.path().join("owner.key");
        std::fs::write(&key_file, &text).unwrap();
        let ids = crate::cloud::keys::read_identity_file(&key_file).unwrap();
        let recipient = ids[0].to_public();
        let data = random(300 * 1024);
        let sealed = seal(std::slice::from_ref(&recipient), &data);
        let sealed_file = dir.path().join("clip.age");
        std::fs::write(&sealed_file, &sealed).unwrap();
        let out = std::process::Command::new("age").arg("-d").arg("-i").arg(&key_file).arg(&sealed_file).output().unwrap();
        assert!(out.status.success(), "age -d: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == data, "age -d gave other bytes");

        let plain_file = dir.path().join("plain");
        std::fs::write(&plain_file, &data).unwrap();
        let out = std::process::Command::new("age")
            .args(["-e", "-r", &recipient.to_string()])
            .arg(&plain_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "age -e: {}", String::from_utf8_lossy(&out.stderr));
        let mut plain = Vec::new();
        decrypt_stream(&ids, out.stdout.as_slice(), &mut plain).unwrap();
        assert!(plain == data, "the hub read other bytes from age's file");
    }

    #[test]
    fn empty_input_round_trips() {
        let (id, r) = key();
        let sealed = seal(&[r], b"");
        let mut plain = Vec::new();
        assert_eq!(
            decrypt_stream(&[id], sealed.as_slice(), &mut plain).unwrap(),
            0
        );
        assert!(plain.is_empty());
    }

    #[test]
    fn streams_more_than_fits_in_a_buffer_without_collecting() {
        let (_, r) = key();
        let input = io::repeat(7).take(3 * BUF_LEN as u64 + 5);
        let n = encrypt_stream(&[r], input, io::sink()).unwrap();
        assert_eq!(n, 3 * BUF_LEN as u64 + 5);
    }

    #[test]
    fn wrong_identity_fails_clearly() {
        let (_, r) = key();
        let (stranger, _) = key();
        let sealed = seal(&[r], b"secret footage");
        let mut plain = Vec::new();
        let err = decrypt_stream(&[stranger], sealed.as_slice(), &mut plain).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains("no matching key"), "{err}");
        assert!(plain.is_empty());
    }

    #[test]
    fn damaged_or_truncated_files_fail() {
        let (id, r) = key();
        let sealed = seal(&[r], &random(200_000));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 10;
        flipped[last] ^= 1;
        let cut = &sealed[..sealed.len() - 100];
        for bad in [flipped.as_slice(), cut, b"not age at all\n".as_slice()] {
            let err = decrypt_stream(std::slice::from_ref(&id), bad, io::sink()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        }
    }

    #[test]
    fn no_recipients_is_refused() {
        let err = encrypt_stream(&[], &b"x"[..], io::sink()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains("cloud.recipients"), "{err}");
    }
}
