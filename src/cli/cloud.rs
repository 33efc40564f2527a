//! `homehub cloud list` and `homehub cloud get`: the owner's view of the bucket, with
//! nothing but the bucket and the owner's identity file. They work with the hub gone
//! (stolen, broken, its data dir deleted): they never read the hub's config or database.

use std::path::{Path, PathBuf};

use crate::cloud::index::{self, Listing};
use crate::cloud::keys::read_identity_file;
use crate::cloud::remote::{Remote, Target};
use crate::error::{Error, Result};

/// Where the bucket is (S3 credentials come from the AWS environment variables).
pub struct CloudArgs {
    pub store: String,
    pub endpoint: String,
    pub identity: PathBuf,
}

fn open(a: &CloudArgs) -> Result<(Remote, Vec<age::x25519::Identity>, tokio::runtime::Runtime)> {
    if !(a.store.starts_with("s3://") || a.store.starts_with("file:///")) {
        return Err(Error::invalid(format!("--store: expected s3://BUCKET/PREFIX or file:///FOLDER, got {:?}", a.store)));
    }
    if !(a.endpoint.is_empty() || a.endpoint.starts_with("http://") || a.endpoint.starts_with("https://")) {
        return Err(Error::invalid(format!("--endpoint: expected an http(s) URL, got {:?}", a.endpoint)));
    }
    let identities = read_identity_file(&a.identity)?;
    let remote = Remote::open(&Target { store: a.store.clone(), endpoint: a.endpoint.clone(), ..Default::default() }.with_env())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("runtime: {e}")))?;
    Ok((remote, identities, rt))
}

/// Prints the clips (and the pieces of events whose clip never arrived); `json` prints
/// the merged index entries as JSON lines instead.
pub fn list(a: &CloudArgs, pieces: bool, json: bool) -> Result<()> {
    let (remote, ids, rt) = open(a)?;
    let Listing { entries, objects, unreadable, .. } = rt.block_on(index::read_listing(&remote, &ids))?;
    let shown = index::visible(&entries, pieces);
    if json {
        for e in shown {
            println!("{}", serde_json::to_string(e).map_err(|e| Error::internal(format!("encoding an index entry: {e}")))?);
        }
    } else {
        println!("{:<32}  {:<5}  {:<24}  {:<24}  {:>8}  {:>11}  CAMERA", "ID", "KIND", "START", "END", "SECONDS", "BYTES");
        for e in &shown {
            let secs = match (index::parse_time(&e.start), index::parse_time(&e.end)) {
                (Some(s), Some(t)) => format!("{:.1}", (t - s).num_milliseconds() as f64 / 1000.0),
                _ => "?".into(),
            };
            println!("{:<32}  {:<5}  {:<24}  {:<24}  {:>8}  {:>11}  {}", e.id, e.kind, e.start, e.end, secs, e.bytes, e.camera);
        }
    }
    eprintln!(
        "{} entries shown ({} in the index) from {objects} objects in {}{}",
        index::visible(&entries, pieces).len(),
        entries.len(),
        remote.describe,
        if unreadable > 0 { format!("; {unreadable} objects this identity cannot open") } else { String::new() }
    );
    Ok(())
}

/// Fetches clip `id` and writes it, decrypted, to `out`.
pub fn get(a: &CloudArgs, id: &str, out: &Path) -> Result<()> {
    let (remote, ids, rt) = open(a)?;
    let n = rt.block_on(index::get(&remote, &ids, id, out))?;
    eprintln!("wrote {} ({n} bytes)", out.display());
    Ok(())
}
