//! The cloud index: what the owner sees with `homehub cloud list`, read from the bucket
//! alone (no hub, no database), with the owner's identity.
//!
//! SPEC "Cloud format (v1)": an index object decrypts to JSON lines, one per clip,
//! `{"id","camera","start","end","bytes"}`. homehub adds `kind` (`clip` or `piece`),
//! `event` (pieces and the clip of one event share it) and `seq` (a piece's place in its
//! event), so a viewer can play the pieces of an event whose clip never arrived.
//!
//! Object names are random, so an index object is told from a clip only by decrypting
//! its first STREAM chunk (an index begins with `{`, an MP4 with a box size). Only that
//! chunk is fetched: at most the header and 64 KiB per object.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use age::x25519::Identity;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use serde::{Deserialize, Serialize};

use super::remote::Remote;
use crate::error::{Error, ErrorKind, Result};

/// One line of an index object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The object's name (32 hex), the last part of its key.
    pub id: String,
    pub camera: String,
    pub start: String,
    pub end: String,
    /// Plaintext bytes, before padding.
    pub bytes: u64,
    #[serde(default = "clip_kind")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
}

fn clip_kind() -> String {
    "clip".into()
}

/// A 32-hex random object name.
pub fn new_object_name() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Fetched per object to tell an index from a clip: the age header (a few hundred
/// bytes per recipient) and the first 64 KiB STREAM chunk with its tag.
const HEAD_FETCH: u64 = 16 * 1024 + 64 * 1024 + 16;

/// Everything the index objects under the store's prefix say, merged: one entry per id
/// (the same entry written twice, by a retry, counts once), sorted by start. Also the
/// key of every object by id, for `get`. Objects no identity opens are skipped and
/// counted, never fatal: a bucket may hold other people's files.
pub struct Listing {
    pub entries: Vec<Entry>,
    pub keys: HashMap<String, ObjPath>,
    pub objects: usize,
    pub unreadable: usize,
}

pub async fn read_listing(remote: &Remote, identities: &[Identity]) -> Result<Listing> {
    // The away page (the one object that is not ciphertext) is no clip of anyone's.
    let objects: Vec<_> =
        remote.list().await?.into_iter().filter(|(p, _)| p.filename() != Some(super::relay::AWAY_PAGE)).collect();
    let mut keys = HashMap::new();
    for (path, _) in &objects {
        if let Some(name) = path.filename() {
            keys.insert(name.to_string(), path.clone());
        }
    }
    let n = objects.len();
    let heads = futures::stream::iter(objects.into_iter().map(|(path, size)| async move {
        let head = remote.get_range(&path, 0..size.min(HEAD_FETCH)).await;
        (path, size, head)
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    let mut by_id: BTreeMap<String, Entry> = BTreeMap::new();
    let mut unreadable = 0;
    for (path, size, head) in heads {
        let head = head?;
        let complete = head.len() as u64 == size;
        match first_plaintext(&head, identities) {
            Some(plain) if plain.first() == Some(&b'{') => {
                if !complete {
                    // Bigger than one chunk: fetch it all (the hub never writes these).
                    let all = remote.get_range(&path, 0..size).await?;
                    let plain = decrypt_all(&all, identities).map_err(|e| e.context(path.to_string()))?;
                    add_lines(&plain, &mut by_id, &path)?;
                } else {
                    add_lines(&plain, &mut by_id, &path)?;
                }
            }
            Some(_) => {}
            None => unreadable += 1,
        }
    }
    let mut entries: Vec<Entry> = by_id.into_values().collect();
    entries.sort_by(|a, b| (&a.start, &a.kind, a.seq, &a.id).cmp(&(&b.start, &b.kind, b.seq, &b.id)));
    Ok(Listing { entries, keys, objects: n, unreadable })
}

fn add_lines(plain: &[u8], by_id: &mut BTreeMap<String, Entry>, path: &ObjPath) -> Result<()> {
    let text = std::str::from_utf8(plain).map_err(|_| Error::invalid(format!("index {path}: not UTF-8")))?;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: Entry =
            serde_json::from_str(line).map_err(|err| Error::invalid(format!("index {path}: line {}: {err}", i + 1)))?;
        by_id.insert(e.id.clone(), e);
    }
    Ok(())
}

/// The plaintext of the complete chunks at the start of `ciphertext` (which may be cut
/// short), or None when no identity opens it.
fn first_plaintext(ciphertext: &[u8], identities: &[Identity]) -> Option<Vec<u8>> {
    let d = age::Decryptor::new(ciphertext).ok()?;
    let mut r = d.decrypt(identities.iter().map(|i| i as &dyn age::Identity)).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break, // cut short: what came before is enough
        }
    }
    Some(out)
}

fn decrypt_all(ciphertext: &[u8], identities: &[Identity]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    super::seal::decrypt_stream(identities, ciphertext, &mut out)?;
    Ok(out)
}

/// Pieces whose event has a full clip are hidden unless `pieces` is set: the clip holds
/// the same footage.
pub fn visible(entries: &[Entry], pieces: bool) -> Vec<&Entry> {
    let clip_events: std::collections::HashSet<&str> =
        entries.iter().filter(|e| e.kind == "clip").filter_map(|e| e.event.as_deref()).collect();
    entries
        .iter()
        .filter(|e| pieces || e.kind != "piece" || e.event.as_deref().is_none_or(|ev| !clip_events.contains(ev)))
        .collect()
}

/// Parses an entry time for display; the raw text if it is not RFC 3339.
pub fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|d| d.with_timezone(&Utc))
}

/// Fetches object `id` (32 hex) and decrypts it into `out` (written as `out.part`, then
/// renamed, mode 0600). Returns the plaintext bytes.
pub async fn get(remote: &Remote, identities: &[Identity], id: &str, out: &std::path::Path) -> Result<u64> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(format!("clip id {id:?}: expected 32 hex digits, as `homehub cloud list` prints")));
    }
    let id = id.to_ascii_lowercase();
    let key = remote
        .list()
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.filename() == Some(id.as_str()))
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no object {id} in {}", remote.describe)))?;
    let file_name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let sealed = dir.join(format!(".{file_name}.age.part"));
    let part = dir.join(format!(".{file_name}.part"));
    let result = async {
        remote.get_to_file(&key, &sealed).await?;
        let (sealed2, part2, ids) = (sealed.clone(), part.clone(), identities.to_vec());
        let n = crate::error::blocking("decrypting a clip", move || -> Result<u64> {
            use std::os::unix::fs::OpenOptionsExt;
            let input = std::fs::File::open(&sealed2).map_err(|e| Error::internal(format!("{}: {e}", sealed2.display())))?;
            let output = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&part2)
                .map_err(|e| Error::invalid(format!("{}: {e}", part2.display())))?;
            let mut w = std::io::BufWriter::new(output);
            let n = super::seal::decrypt_stream(&ids, std::io::BufReader::new(input), &mut w)?;
            let f = w.into_inner().map_err(|e| Error::internal(format!("{}: {e}", part2.display())))?;
            f.sync_all().map_err(|e| Error::internal(format!("{}: {e}", part2.display())))?;
            Ok(n)
        })
        .await??;
        std::fs::rename(&part, out).map_err(|e| Error::invalid(format!("{}: {e}", out.display())))?;
        Ok(n)
    }
    .await;
    let _ = std::fs::remove_file(&sealed);
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, kind: &str, event: &str, start: &str) -> Entry {
        Entry {
            id: id.into(),
            camera: "Porch".into(),
            start: start.into(),
            end: start.into(),
            bytes: 1,
            kind: kind.into(),
            event: Some(event.into()),
            seq: (kind == "piece").then_some(0),
        }
    }

    #[test]
    fn an_entry_without_homehub_fields_is_a_clip() {
        let e: Entry = serde_json::from_str(
            r#"{"id":"ab","camera":"c","start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:01Z","bytes":3}"#,
        )
        .unwrap();
        assert_eq!((e.kind.as_str(), e.event.as_deref(), e.seq), ("clip", None, None));
        let line = serde_json::to_string(&e).unwrap();
        assert!(!line.contains("event") && !line.contains("seq"), "{line}");
    }

    #[test]
    fn pieces_show_only_where_the_clip_is_missing() {
        let all = vec![entry("1", "piece", "h/1", "a"), entry("2", "clip", "h/1", "a"), entry("3", "piece", "h/2", "b")];
        let ids = |v: Vec<&Entry>| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(visible(&all, false)), ["2", "3"]);
        assert_eq!(ids(visible(&all, true)), ["1", "2", "3"]);
    }

    #[test]
    fn the_first_chunk_of_a_cut_file_is_readable() {
        let (secret, public) = super::super::keys::new_identity();
        let id: Identity = secret.parse().unwrap();
        let r = super::super::keys::parse_recipients(&[public]).unwrap();
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut sealed = Vec::new();
        super::super::seal::encrypt_stream(&r, &plain[..], &mut sealed).unwrap();
        let head = &sealed[..HEAD_FETCH as usize];
        let got = first_plaintext(head, std::slice::from_ref(&id)).unwrap();
        assert!(got.len() >= 64 * 1024 && plain.starts_with(&got), "{}", got.len());
        let (other, _) = super::super::keys::new_identity();
        assert!(first_plaintext(head, &[other.parse().unwrap()]).is_none());
    }

    #[test]
    fn bad_ids_are_refused_before_any_request() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let remote = Remote::open(&super::super::remote::Target {
            store: format!("file://{}", dir.path().join("bucket").display()),
            ..Default::default()
        })
        .unwrap();
        let e = rt.block_on(get(&remote, &[], "../../etc/passwd", &dir.path().join("x"))).unwrap_err();
        assert!(e.to_string().contains("32 hex digits"), "{e}");
        let e = rt.block_on(get(&remote, &[], &"a".repeat(32), &dir.path().join("x"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }
}
