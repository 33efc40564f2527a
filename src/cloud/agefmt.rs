//! The writing side of the age v1 file format (<https://age-encryption.org/v1>), built on
//! `ring` (the same ChaCha20-Poly1305 assembly as BoringSSL), for X25519 recipients only.
//!
//! An age file is a text header, then the binary payload:
//!
//! ```text
//! age-encryption.org/v1
//! -> X25519 <ephemeral share, base64>        one stanza per recipient: the file key,
//! <wrapped file key, base64, 64 columns>     wrapped for that recipient
//! --- <HMAC-SHA-256 of the header up to and including "---", base64>
//! <16-byte nonce><chunk 0>…<chunk n>         64 KiB plaintext chunks, each sealed alone
//! ```
//!
//! This module makes the header and the payload key; [`PayloadKey::seal_chunk`] seals one
//! chunk in place, so the caller can seal chunks in any order and on any thread, as long
//! as it writes them out in order and flags the final one. Reading age files stays with the
//! `age` crate (`seal::decrypt_stream`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64;
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hkdf::{self, HKDF_SHA256};
use ring::hmac::{self, HMAC_SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::Error;

/// Plaintext bytes per payload chunk; only the final chunk may be shorter.
pub const CHUNK_LEN: usize = 64 * 1024;
/// The Poly1305 tag after each sealed chunk.
pub const TAG_LEN: usize = 16;

const VERSION_LINE: &str = "age-encryption.org/v1";
const FILE_KEY_LEN: usize = 16;
const PAYLOAD_NONCE_LEN: usize = 16;
const X25519_KEY_LEN: usize = 32;
const X25519_INFO: &[u8] = b"age-encryption.org/v1/X25519";
/// Stanza bodies are base64 in lines of this many columns, the last one shorter.
const BODY_COLUMNS: usize = 64;

/// The start of a new age file and the key its payload is sealed with.
pub struct NewFile {
    /// The header (version line, stanzas, MAC line) followed by the payload nonce: the
    /// bytes that go before the first chunk.
    pub preamble: Vec<u8>,
    pub payload: PayloadKey,
}

/// Starts an age file to the given X25519 public keys (each can open it alone): a fresh
/// random file key, one stanza per recipient, the header MAC and a fresh payload nonce.
pub fn new_file(recipients: &[[u8; X25519_KEY_LEN]]) -> crate::Result<NewFile> {
    let rng = SystemRandom::new();
    let mut file_key = [0u8; FILE_KEY_LEN];
    rng.fill(&mut file_key).map_err(|_| no_randomness())?;

    let mut header = format!("{VERSION_LINE}\n");
    for (i, recipient) in recipients.iter().enumerate() {
        let stanza = x25519_stanza(&rng, &file_key, recipient).map_err(|e| e.context(format!("cloud.recipients[{i}]")))?;
        header.push_str(&stanza);
    }
    header.push_str("---");
    let mac = hmac::sign(&header_mac_key(&file_key)?, header.as_bytes());
    header.push(' ');
    header.push_str(&BASE64.encode(mac.as_ref()));
    header.push('\n');

    let mut nonce = [0u8; PAYLOAD_NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| no_randomness())?;
    let payload = PayloadKey(LessSafeKey::new(hkdf_chacha_key(&nonce, &file_key, b"payload")?));
    let mut preamble = header.into_bytes();
    preamble.extend_from_slice(&nonce);
    Ok(NewFile { preamble, payload })
}

/// The 32-byte X25519 public key inside an `age1…` recipient (bech32, HRP `age`).
pub fn recipient_key(recipient: &age::x25519::Recipient) -> crate::Result<[u8; X25519_KEY_LEN]> {
    let text = recipient.to_string();
    let (hrp, data) = bech32::decode(&text).map_err(|e| Error::invalid(format!("not an age X25519 recipient (age1…): {e}")))?;
    if hrp.to_lowercase() != "age" {
        return Err(Error::invalid("not an age X25519 recipient (age1…): wrong prefix"));
    }
    data.try_into().map_err(|data: Vec<u8>| {
        Error::invalid(format!("not an age X25519 recipient (age1…): a key of {} bytes, not 32", data.len()))
    })
}

/// The key the payload chunks are sealed with. It is `Sync`: threads may seal different
/// chunks with it at once.
pub struct PayloadKey(LessSafeKey);

impl PayloadKey {
    /// Seals chunk number `counter` in place: `slot[..len]` holds the plaintext and becomes
    /// the ciphertext, and the tag is written right after it, so `slot[..len + TAG_LEN]`
    /// is the chunk as it goes into the file. `last` must be set on the final chunk only.
    pub fn seal_chunk(&self, counter: u64, last: bool, slot: &mut [u8], len: usize) -> crate::Result<()> {
        if len > CHUNK_LEN || slot.len() < len + TAG_LEN {
            return Err(Error::internal(format!("sealing chunk {counter}: {len} bytes do not fit a slot of {}", slot.len())));
        }
        let (text, rest) = slot.split_at_mut(len);
        let tag = self
            .0
            .seal_in_place_separate_tag(chunk_nonce(counter, last), Aad::empty(), text)
            .map_err(|_| Error::internal(format!("sealing chunk {counter} failed")))?;
        rest[..TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(())
    }
}

/// The STREAM nonce: an 11-byte big-endian chunk counter, then 1 on the final chunk.
fn chunk_nonce(counter: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; aead::NONCE_LEN];
    nonce[3..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::assume_unique_for_key(nonce)
}

/// One `X25519` stanza: the file key wrapped with a key agreed between a fresh ephemeral
/// key and the recipient.
fn x25519_stanza(rng: &SystemRandom, file_key: &[u8; FILE_KEY_LEN], recipient: &[u8; X25519_KEY_LEN]) -> crate::Result<String> {
    let ephemeral = EphemeralPrivateKey::generate(&X25519, rng).map_err(|_| no_randomness())?;
    let share = ephemeral.compute_public_key().map_err(|_| Error::internal("computing an X25519 public key failed"))?;
    let mut salt = Vec::with_capacity(2 * X25519_KEY_LEN);
    salt.extend_from_slice(share.as_ref());
    salt.extend_from_slice(recipient);

    // ring refuses an all-zero shared secret itself; the check here says so out loud.
    let agreed = agreement::agree_ephemeral(ephemeral, &UnparsedPublicKey::new(&X25519, recipient), |shared| {
        if shared.iter().all(|&b| b == 0) { None } else { Some(hkdf_chacha_key(&salt, shared, X25519_INFO)) }
    });
    let wrap_key = match agreed {
        Ok(Some(key)) => LessSafeKey::new(key?),
        Ok(None) | Err(_) => {
            return Err(Error::invalid(
                "this X25519 public key is not usable (a low-order point: the shared secret \
                 would be all zero)",
            ));
        }
    };

    let mut body = [0u8; FILE_KEY_LEN + TAG_LEN];
    body[..FILE_KEY_LEN].copy_from_slice(file_key);
    let tag = wrap_key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; aead::NONCE_LEN]), Aad::empty(), &mut body[..FILE_KEY_LEN])
        .map_err(|_| Error::internal("wrapping the file key failed"))?;
    body[FILE_KEY_LEN..].copy_from_slice(tag.as_ref());

    let mut stanza = format!("-> X25519 {}\n", BASE64.encode(share.as_ref()));
    push_body_lines(&mut stanza, &BASE64.encode(body));
    Ok(stanza)
}

/// Appends a stanza body: full lines of 64 columns, then one shorter line (empty when the
/// body fills its last line exactly), which is how a reader knows the body has ended.
fn push_body_lines(out: &mut String, base64: &str) {
    let mut rest = base64;
    loop {
        let (line, tail) = rest.split_at(rest.len().min(BODY_COLUMNS));
        out.push_str(line);
        out.push('\n');
        if line.len() < BODY_COLUMNS {
            return;
        }
        rest = tail;
    }
}

/// HKDF-SHA-256 to a ChaCha20-Poly1305 key (32 bytes).
fn hkdf_chacha_key(salt: &[u8], ikm: &[u8], info: &[u8]) -> crate::Result<UnboundKey> {
    let info = [info];
    let prk = hkdf::Salt::new(HKDF_SHA256, salt).extract(ikm);
    let okm = prk.expand(&info, &CHACHA20_POLY1305).map_err(|_| Error::internal("HKDF expansion failed"))?;
    Ok(UnboundKey::from(okm))
}

/// HKDF-SHA-256(file key, empty salt, "header") as an HMAC-SHA-256 key.
fn header_mac_key(file_key: &[u8; FILE_KEY_LEN]) -> crate::Result<hmac::Key> {
    let prk = hkdf::Salt::new(HKDF_SHA256, &[]).extract(file_key);
    let okm = prk.expand(&[b"header"], HMAC_SHA256).map_err(|_| Error::internal("HKDF expansion failed"))?;
    Ok(hmac::Key::from(okm))
}

fn no_randomness() -> Error {
    Error::internal("the system random number generator failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_lines(len: usize) -> Vec<String> {
        let mut out = String::new();
        push_body_lines(&mut out, &BASE64.encode(vec![7u8; len]));
        assert!(out.ends_with('\n'));
        out.lines().map(str::to_owned).collect()
    }

    #[test]
    fn stanza_bodies_wrap_at_64_columns_and_end_with_a_short_line() {
        assert_eq!(body_lines(0), [""]);
        assert_eq!(body_lines(32).iter().map(String::len).collect::<Vec<_>>(), [43]);
        assert_eq!(body_lines(48).iter().map(String::len).collect::<Vec<_>>(), [64, 0]);
        assert_eq!(body_lines(50).iter().map(String::len).collect::<Vec<_>>(), [64, 3]);
        assert_eq!(body_lines(96).iter().map(String::len).collect::<Vec<_>>(), [64, 64, 0]);
    }

    #[test]
    fn chunk_nonces_count_big_endian_and_flag_the_last() {
        let nonce = |c, last| *chunk_nonce(c, last).as_ref();
        assert_eq!(nonce(0, false), [0; 12]);
        assert_eq!(nonce(0, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(nonce(0x0102, false), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0]);
        assert_eq!(nonce(u64::MAX, true)[..4], [0, 0, 0, 0xff]);
    }

    #[test]
    fn recipient_key_is_the_bech32_payload() {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public();
        let key = recipient_key(&recipient).unwrap();
        let again = bech32::encode_lower::<bech32::Bech32>(bech32::Hrp::parse("age").unwrap(), &key).unwrap();
        assert_eq!(again, recipient.to_string());
    }

    #[test]
    fn header_has_one_stanza_per_recipient_and_a_mac_line() {
        let keys: Vec<[u8; 32]> =
            (0..3).map(|_| recipient_key(&age::x25519::Identity::generate().to_public()).unwrap()).collect();
        let file = new_file(&keys).unwrap();
        let mac_at = file.preamble.windows(5).position(|w| w == b"\n--- ").unwrap();
        let end = mac_at + 1 + file.preamble[mac_at + 1..].iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(file.preamble.len(), end + 1 + PAYLOAD_NONCE_LEN);
        let header = std::str::from_utf8(&file.preamble[..=end]).unwrap();
        let lines: Vec<&str> = header.lines().collect();
        assert_eq!(lines.len(), 1 + 3 * 2 + 1, "{header}");
        assert_eq!(lines[0], VERSION_LINE);
        for stanza in lines[1..7].chunks(2) {
            let share = stanza[0].strip_prefix("-> X25519 ").expect(stanza[0]);
            assert_eq!(BASE64.decode(share).unwrap().len(), 32);
            assert_eq!(BASE64.decode(stanza[1]).unwrap().len(), 32);
        }
        let mac = lines[7].strip_prefix("--- ").unwrap();
        assert_eq!(BASE64.decode(mac).unwrap().len(), 32);
    }

    #[test]
    fn a_low_order_recipient_key_is_refused() {
        let err = match new_file(&[[0u8; 32]]) {
            Ok(_) => panic!("an all-zero X25519 key was accepted"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
        assert!(err.message().starts_with("cloud.recipients[0]:"), "{err}");
        assert!(err.message().contains("low-order"), "{err}");
    }

    #[test]
    fn a_chunk_that_does_not_fit_its_slot_is_an_error() {
        let file = new_file(&[recipient_key(&age::x25519::Identity::generate().to_public()).unwrap()]).unwrap();
        let mut slot = vec![0u8; 100];
        assert!(file.payload.seal_chunk(0, true, &mut slot, 90).is_err());
        assert!(file.payload.seal_chunk(0, true, &mut slot, 84).is_ok());
    }
}
