//! Streaming age encryption: every object that leaves the LAN goes through here.
//!
//! Clips can be large and the hub is small, so both directions stream through fixed
//! buffers and never hold a whole object in memory. The output is a plain age v1 file
//! (binary, not armored), so the stock `age -d -i owner.key` opens it.
//!
//! Encryption writes the format itself ([`agefmt`], on `ring`) so it can seal the 64 KiB
//! chunks of a batch on every core at once. The calling thread does all the I/O: while
//! helper threads seal batch *k*, it writes batch *k − 1*, reads batch *k + 1*, and then
//! seals what is left of batch *k* itself, so no core waits and none is oversubscribed.
//! There are two batch buffers (2 × 4 MiB) plus one chunk of read-ahead, which is how the
//! final chunk is known before it is sealed. Decryption stays with the `age` crate.

use std::io::{self, Read, Write};
use std::num::NonZero;
use std::sync::Mutex;
use std::thread;

use age::x25519::{Identity, Recipient};

use crate::cloud::agefmt::{self, CHUNK_LEN, PayloadKey, TAG_LEN};
use crate::error::{Error, ResultExt};

/// The copy buffer of decryption: one age STREAM chunk.
const BUF_LEN: usize = CHUNK_LEN;
/// Chunks per batch: 64 × 64 KiB = 4 MiB of plaintext shared out among the threads.
const BATCH_CHUNKS: usize = 64;
/// A chunk's place in a batch buffer: its plaintext, then room for its tag.
const SLOT_LEN: usize = CHUNK_LEN + TAG_LEN;

/// Encrypts `input` to every recipient (each can decrypt alone) into `output`, returning
/// the number of plaintext bytes. The age stream is finished and `output` flushed before
/// returning, so a successful return means `output` holds a complete age file.
///
/// Chunks are sealed on `std::thread::available_parallelism()` threads: the calling
/// thread, which alone uses `input` and `output`, and helpers started for each batch.
pub fn encrypt_stream<R: Read, W: Write>(recipients: &[Recipient], input: R, output: W) -> crate::Result<u64> {
    let threads = thread::available_parallelism().map_or(1, NonZero::get);
    encrypt_on(threads, recipients, input, output)
}

/// [`encrypt_stream`] with chunks sealed on `threads` threads (the calling one included).
fn encrypt_on<R: Read, W: Write>(threads: usize, recipients: &[Recipient], input: R, mut output: W) -> crate::Result<u64> {
    if recipients.is_empty() {
        return Err(Error::invalid("cloud.recipients: no recipient to encrypt to"));
    }
    let keys = recipients
        .iter()
        .enumerate()
        .map(|(i, r)| agefmt::recipient_key(r).map_err(|e| e.context(format!("cloud.recipients[{i}]"))))
        .collect::<crate::Result<Vec<_>>>()?;
    let file = agefmt::new_file(&keys)?;
    output.write_all(&file.preamble).ctx("writing the age header")?;

    let mut plain = Plaintext::new(input);
    let mut sealing = Batch::new();
    let mut other = Batch::new();
    plain.fill(&mut sealing)?;
    // Whether `other` holds sealed chunks still to be written.
    let mut unwritten = false;
    loop {
        let last = sealing.last;
        let work = Sealing::new(&mut sealing, &file.payload);
        thread::scope(|s| {
            let helpers: Vec<_> = (1..threads.min(work.chunks))
                .filter_map(|_| {
                    // A helper that cannot start is no error: this thread seals its share.
                    thread::Builder::new().name("age-seal".into()).spawn_scoped(s, || work.run()).ok()
                })
                .collect();
            let mut io = || {
                if unwritten {
                    write_batch(&mut output, &other)?;
                }
                if !last {
                    plain.fill(&mut other)?;
                }
                Ok(())
            };
            let mine = io().and_then(|()| work.run());
            helpers.into_iter().fold(mine, |result, helper| {
                let theirs = helper.join().unwrap_or_else(|_| Err(Error::internal("a sealing thread panicked")));
                result.and(theirs)
            })
        })?;
        if last {
            write_batch(&mut output, &sealing)?;
            break;
        }
        std::mem::swap(&mut sealing, &mut other);
        unwritten = true;
    }
    output.flush().ctx("writing the ciphertext")?;
    Ok(plain.total)
}

/// Up to [`BATCH_CHUNKS`] chunks of the payload, each in its own slot. All but the batch's
/// final chunk are full, so once sealed the chunks lie back to back, as in the file.
struct Batch {
    buf: Vec<u8>,
    /// The counter (position in the file) of the first chunk.
    first: u64,
    /// Chunks in the batch (at least 1).
    chunks: usize,
    /// Plaintext bytes of the final chunk.
    tail_len: usize,
    /// The final chunk is the file's last.
    last: bool,
}

impl Batch {
    fn new() -> Self {
        Batch { buf: vec![0; BATCH_CHUNKS * SLOT_LEN], first: 0, chunks: 0, tail_len: 0, last: false }
    }

    /// The plaintext slot of chunk `i`.
    fn slot(&mut self, i: usize) -> &mut [u8] {
        &mut self.buf[i * SLOT_LEN..][..CHUNK_LEN]
    }

    /// The sealed chunks, back to back: the bytes that go into the file.
    fn ciphertext(&self) -> &[u8] {
        &self.buf[..(self.chunks - 1) * SLOT_LEN + self.tail_len + TAG_LEN]
    }
}

/// The chunks of one batch, handed out one at a time to whichever thread is free.
struct Sealing<'a> {
    queue: Mutex<std::iter::Enumerate<std::slice::ChunksMut<'a, u8>>>,
    key: &'a PayloadKey,
    first: u64,
    chunks: usize,
    tail_len: usize,
    last: bool,
}

impl<'a> Sealing<'a> {
    fn new(batch: &'a mut Batch, key: &'a PayloadKey) -> Self {
        let slots = batch.buf[..batch.chunks * SLOT_LEN].chunks_mut(SLOT_LEN);
        Sealing {
            queue: Mutex::new(slots.enumerate()),
            key,
            first: batch.first,
            chunks: batch.chunks,
            tail_len: batch.tail_len,
            last: batch.last,
        }
    }

    /// Seals chunks in place until none is left.
    fn run(&self) -> crate::Result<()> {
        loop {
            // A poisoned lock means another sealer panicked; its join reports that.
            let next = match self.queue.lock() {
                Ok(mut queue) => queue.next(),
                Err(_) => None,
            };
            let Some((i, slot)) = next else {
                return Ok(());
            };
            let fin = i == self.chunks - 1;
            let len = if fin { self.tail_len } else { CHUNK_LEN };
            self.key.seal_chunk(self.first + i as u64, fin && self.last, slot, len)?;
        }
    }
}

fn write_batch(output: &mut impl Write, batch: &Batch) -> crate::Result<()> {
    output.write_all(batch.ciphertext()).ctx("writing the ciphertext")
}

/// The plaintext, read chunk by chunk, one chunk ahead of the batch being filled.
struct Plaintext<R> {
    input: R,
    /// The first chunk after the last batch filled (`ahead_len` bytes of it), read to
    /// learn whether that batch ended the file. Empty once the input is used up.
    ahead: Vec<u8>,
    ahead_len: usize,
    eof: bool,
    /// The counter of the next chunk.
    counter: u64,
    /// Plaintext bytes read so far.
    total: u64,
}

impl<R: Read> Plaintext<R> {
    fn new(input: R) -> Self {
        Plaintext { input, ahead: vec![0; CHUNK_LEN], ahead_len: 0, eof: false, counter: 0, total: 0 }
    }

    /// Fills `batch` with the next chunks, and says whether its final chunk is the file's
    /// last. Called only while the previous batch was not the last; the first batch of
    /// an empty input is a single empty final chunk, as age has it.
    fn fill(&mut self, batch: &mut Batch) -> crate::Result<()> {
        let mut chunks = 0;
        let mut tail_len = 0;
        if self.ahead_len > 0 {
            batch.slot(0)[..self.ahead_len].copy_from_slice(&self.ahead[..self.ahead_len]);
            (chunks, tail_len) = (1, self.ahead_len);
            self.ahead_len = 0;
        }
        while chunks < BATCH_CHUNKS && !self.eof {
            let n = read_full(&mut self.input, batch.slot(chunks), &mut self.eof)?;
            self.total += n as u64;
            if n == 0 {
                break;
            }
            (chunks, tail_len) = (chunks + 1, n);
        }
        if !self.eof {
            self.ahead_len = read_full(&mut self.input, &mut self.ahead, &mut self.eof)?;
            self.total += self.ahead_len as u64;
        }
        batch.first = self.counter;
        batch.chunks = chunks.max(1);
        batch.tail_len = tail_len;
        batch.last = self.ahead_len == 0;
        self.counter += batch.chunks as u64;
        Ok(())
    }
}

/// Reads until `buf` is full or the input ends (then `eof` is set); returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8], eof: &mut bool) -> crate::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => {
                *eof = true;
                break;
            }
            // `min`: a reader claiming more than it was given must not make us panic.
            Ok(k) => n = (n + k).min(buf.len()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).ctx("reading the plaintext"),
        }
    }
    Ok(n)
}

/// Decrypts an age file from `input` with any of `identities` into `output`, returning
/// the number of plaintext bytes. A file no identity opens, or one that is damaged or
/// cut short, is an `Invalid` error saying so.
pub fn decrypt_stream<R: Read, W: Write>(identities: &[Identity], input: R, mut output: W) -> crate::Result<u64> {
    let decryptor = age::Decryptor::new(input).map_err(decrypt_error)?;
    let mut plain = decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)).map_err(decrypt_error)?;
    copy(&mut plain, &mut output, "reading the age payload", "writing the plaintext")
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
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            Error::invalid(format!("{reading}: the age file is damaged or cut short: {e}"))
        }
        _ => Error::internal(format!("{reading}: {e}")),
    }
}

/// Copies through a fixed buffer; errors say which side failed.
fn copy(input: &mut impl Read, output: &mut impl Write, reading: &str, writing: &str) -> crate::Result<u64> {
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

    const K: usize = CHUNK_LEN;
    const BATCH: usize = BATCH_CHUNKS * CHUNK_LEN;

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

    fn open(id: &Identity, sealed: &[u8]) -> crate::Result<Vec<u8>> {
        let mut plain = Vec::new();
        decrypt_stream(std::slice::from_ref(id), sealed, &mut plain)?;
        Ok(plain)
    }

    /// Where the payload starts: after the `--- <mac>` line and the 16-byte nonce.
    fn payload_start(sealed: &[u8]) -> usize {
        let mac = sealed.windows(5).position(|w| w == b"\n--- ").unwrap() + 1;
        mac + sealed[mac..].iter().position(|&b| b == b'\n').unwrap() + 1 + 16
    }

    /// age chunks: one per started 64 KiB, and one (empty) for an empty file.
    fn chunks_for(len: usize) -> usize {
        len.div_ceil(K).max(1)
    }

    fn write_key_file(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, Recipient) {
        let text = crate::cloud::keys::keygen_text(chrono::Utc::now());
        let path = dir.join(name);
        std::fs::write(&path, &text).unwrap();
        let ids = crate::cloud::keys::read_identity_file(&path).unwrap();
        (path, ids[0].to_public())
    }

    fn age_cli_decrypt(key_file: &std::path::Path, sealed_file: &std::path::Path) -> Vec<u8> {
        let out = std::process::Command::new("age").arg("-d").arg("-i").arg(key_file).arg(sealed_file).output().unwrap();
        assert!(out.status.success(), "age -d: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
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

    /// Every size where the final chunk or the read-ahead could go wrong: empty, within a
    /// chunk, at and around chunk and batch boundaries; to one and to three recipients,
    /// each of whom opens the file alone through the age crate.
    #[test]
    fn round_trips_at_chunk_and_batch_boundaries_to_one_and_three_recipients() {
        let sizes = [0, 1, K - 1, K, K + 1, 2 * K, 3 * 1024 * 1024 + 12_345, BATCH - 1, BATCH, BATCH + 1, BATCH + K, 2 * BATCH];
        let keys: Vec<(Identity, Recipient)> = (0..3).map(|_| key()).collect();
        let all: Vec<Recipient> = keys.iter().map(|(_, r)| r.clone()).collect();
        let data = random(2 * BATCH);
        for len in sizes {
            let data = &data[..len];
            for recipients in [&all[..1], &all[..]] {
                let sealed = seal(recipients, data);
                assert_eq!(
                    sealed.len() - payload_start(&sealed),
                    len + TAG_LEN * chunks_for(len),
                    "payload size for {len} bytes"
                );
                for (id, _) in &keys[..recipients.len()] {
                    let plain = open(id, &sealed).unwrap();
                    assert!(plain == data, "{len} bytes to {} came back different", recipients.len());
                }
            }
        }
    }

    /// The split of a batch among threads does not change what is written.
    #[test]
    fn any_number_of_threads_writes_a_valid_file() {
        let (id, r) = key();
        let data = random(BATCH + 3 * K + 17);
        for threads in [1, 2, 3, 5, 64, 100] {
            let mut sealed = Vec::new();
            let n = encrypt_on(threads, std::slice::from_ref(&r), data.as_slice(), &mut sealed).unwrap();
            assert_eq!(n, data.len() as u64);
            assert!(open(&id, &sealed).unwrap() == data, "{threads} threads");
        }
    }

    /// A reader that hands over a few bytes at a time still gives whole chunks.
    #[test]
    fn a_reader_with_short_reads_round_trips() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let (id, r) = key();
        let data = random(2 * K + 5);
        let mut sealed = Vec::new();
        encrypt_stream(&[r], Trickle(&data), &mut sealed).unwrap();
        assert_eq!(sealed.len() - payload_start(&sealed), data.len() + 3 * TAG_LEN);
        assert!(open(&id, &sealed).unwrap() == data);
    }

    /// The owner's side: Debian's `age` opens what the hub writes, and the hub's reader
    /// opens what `age` writes.
    #[test]
    fn the_stock_age_tool_reads_and_writes_the_same_format() {
        let dir = tempfile::tempdir().unwrap();
        let (key_file, recipient) = write_key_file(dir.path(), "owner.key");
        let ids = crate::cloud::keys::read_identity_file(&key_file).unwrap();
        let data = random(300 * 1024);
        let sealed = seal(std::slice::from_ref(&recipient), &data);
        let sealed_file = dir.path().join("clip.age");
        std::fs::write(&sealed_file, &sealed).unwrap();
        assert!(age_cli_decrypt(&key_file, &sealed_file) == data, "age -d gave other bytes");

        let plain_file = dir.path().join("plain");
        std::fs::write(&plain_file, &data).unwrap();
        let out = std::process::Command::new("age").args(["-e", "-r", &recipient.to_string()]).arg(&plain_file).output().unwrap();
        assert!(out.status.success(), "age -e: {}", String::from_utf8_lossy(&out.stderr));
        let mut plain = Vec::new();
        decrypt_stream(&ids, out.stdout.as_slice(), &mut plain).unwrap();
        assert!(plain == data, "the hub read other bytes from age's file");
    }

    /// Debian's `age` opens files that end exactly on a chunk or batch boundary, and files
    /// to three recipients with each key alone.
    #[test]
    fn the_stock_age_tool_opens_chunk_multiples_for_each_of_three_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<_> = (0..3).map(|i| write_key_file(dir.path(), &format!("owner{i}.key"))).collect();
        let recipients: Vec<Recipient> = keys.iter().map(|(_, r)| r.clone()).collect();
        let data = random(BATCH + K);
        for len in [0, K, 2 * K, BATCH, BATCH + K] {
            let data = &data[..len];
            let sealed_file = dir.path().join(format!("clip{len}.age"));
            std::fs::write(&sealed_file, seal(&recipients, data)).unwrap();
            for (key_file, _) in &keys {
                assert!(age_cli_decrypt(key_file, &sealed_file) == data, "age -d gave other bytes for {len}");
            }
        }
    }

    #[test]
    fn empty_input_round_trips() {
        let (id, r) = key();
        let sealed = seal(&[r], b"");
        let mut plain = Vec::new();
        assert_eq!(decrypt_stream(&[id], sealed.as_slice(), &mut plain).unwrap(), 0);
        assert!(plain.is_empty());
    }

    #[test]
    fn streams_more_than_fits_in_a_buffer_without_collecting() {
        let (_, r) = key();
        let input = io::repeat(7).take(3 * BATCH as u64 + 5);
        let n = encrypt_stream(&[r], input, io::sink()).unwrap();
        assert_eq!(n, 3 * BATCH as u64 + 5);
    }

    #[test]
    fn two_encryptions_of_the_same_input_differ() {
        let (id, r) = key();
        let data = random(K + 1);
        let a = seal(std::slice::from_ref(&r), &data);
        let b = seal(std::slice::from_ref(&r), &data);
        assert_eq!(a.len(), b.len());
        let (pa, pb) = (payload_start(&a), payload_start(&b));
        assert_ne!(a[..pa], b[..pb], "same header and nonce");
        assert_ne!(a[pa..], b[pb..], "same ciphertext");
        assert!(open(&id, &a).unwrap() == data && open(&id, &b).unwrap() == data);
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

    /// The age crate refuses what we write once a payload byte, the header MAC or a stanza
    /// changes, or once the file is cut after a whole chunk (no chunk flagged last).
    #[test]
    fn tampering_and_cuts_at_chunk_boundaries_are_refused() {
        let (id, r) = key();
        let data = random(3 * K);
        let sealed = seal(&[r], &data);
        let payload = payload_start(&sealed);
        assert_eq!(sealed.len(), payload + 3 * (K + TAG_LEN));
        let text = std::str::from_utf8(&sealed[..payload - 16]).unwrap();
        let mac_at = text.find("\n--- ").unwrap() + 5;
        let stanza_at = text.find("\n-> X25519 ").unwrap() + 11;

        let mut bad: Vec<(&str, Vec<u8>)> = Vec::new();
        for (what, at) in
            [("payload byte", payload + K + TAG_LEN + 100), ("last tag byte", sealed.len() - 1), ("payload nonce", payload - 1)]
        {
            let mut v = sealed.clone();
            v[at] ^= 0x40;
            bad.push((what, v));
        }
        for (what, at) in [("MAC", mac_at + 3), ("ephemeral share", stanza_at + 3)] {
            let mut v = sealed.clone();
            v[at] = if v[at] == b'A' { b'B' } else { b'A' };
            bad.push((what, v));
        }
        for n in [1, 2] {
            bad.push(("cut after a chunk", sealed[..payload + n * (K + TAG_LEN)].to_vec()));
        }
        bad.push(("cut after the nonce", sealed[..payload].to_vec()));
        for (what, file) in bad {
            let err = match open(&id, &file) {
                Ok(_) => panic!("{what}: the damaged file opened"),
                Err(e) => e,
            };
            assert_eq!(err.kind(), ErrorKind::Invalid, "{what}: {err}");
        }
        assert!(open(&id, &sealed).unwrap() == data);
    }

    #[test]
    fn no_recipients_is_refused() {
        let err = encrypt_stream(&[], &b"x"[..], io::sink()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains("cloud.recipients"), "{err}");
    }

    #[test]
    fn a_low_order_recipient_is_refused_by_index() {
        let zero = bech32::encode_lower::<bech32::Bech32>(bech32::Hrp::parse("age").unwrap(), &[0; 32]).unwrap();
        let bad: Recipient = zero.parse().unwrap();
        let (_, good) = key();
        let err = encrypt_stream(&[good, bad], &b"x"[..], io::sink()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().starts_with("cloud.recipients[1]:"), "{err}");
    }

    /// Gives `ok` bytes, then fails.
    struct FailingReader {
        ok: usize,
    }
    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::other("camera file vanished"));
            }
            let n = buf.len().min(self.ok);
            buf[..n].fill(1);
            self.ok -= n;
            Ok(n)
        }
    }

    /// Takes `ok` bytes, then fails; `flush` fails if `flush_fails`.
    struct FailingWriter {
        ok: usize,
        flush_fails: bool,
    }
    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::other("bucket full"));
            }
            let n = buf.len().min(self.ok);
            self.ok -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            if self.flush_fails {
                return Err(io::Error::other("bucket full"));
            }
            Ok(())
        }
    }

    #[test]
    fn a_failing_writer_is_a_clear_error() {
        let (_, r) = key();
        let data = random(2 * BATCH + K);
        let cases = [
            (0, false, "writing the age header"),
            (10, false, "writing the age header"),
            (1000, false, "writing the ciphertext"),
            (BATCH + 5, false, "writing the ciphertext"),
            (usize::MAX, true, "writing the ciphertext"),
        ];
        for (ok, flush_fails, what) in cases {
            let out = FailingWriter { ok, flush_fails };
            let err = encrypt_stream(std::slice::from_ref(&r), data.as_slice(), out).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
            assert!(err.message().starts_with(what), "{ok}: {err}");
            assert!(err.message().contains("bucket full"), "{err}");
        }
    }

    #[test]
    fn a_failing_reader_is_a_clear_error() {
        let (_, r) = key();
        // At the start, inside a chunk, and exactly where the read-ahead begins.
        for ok in [0, 100_000, BATCH, 2 * BATCH] {
            let err = encrypt_stream(std::slice::from_ref(&r), FailingReader { ok }, io::sink()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
            assert!(err.message().contains("reading the plaintext"), "{err}");
            assert!(err.message().contains("camera file vanished"), "{err}");
        }
    }
}
