//! The relay: a persistent queue of encrypted uploads, drained by one task.
//!
//! Input: closed pieces of events in progress ([`PieceSink`]) and finished events
//! ([`events::CloudRelay`]). Each becomes two rows of the SQLite queue in one step: the
//! data object and an index object with its entry, both with names fixed at that moment
//! (so retries are idempotent). The task uploads due rows, pieces and index entries
//! before full clips, encrypting each to every recipient on the way out; a failure is
//! retried with capped exponential backoff, forever while the file exists. Nothing is
//! lost across restarts: the queue is in the database, piece files stay until they are
//! up, and at start the relay queues clips of events that finished while it could not.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use age::x25519::Recipient;
use tokio::sync::Notify;

use super::index::{Entry, new_object_name};
use super::pad;
use super::remote::{Remote, Target};
use crate::camera::pieces::{Piece, PieceSink};
use crate::clock::{Clock, rfc3339};
use crate::config;
use crate::error::{Error, ErrorKind, Result, blocking};
use crate::events;
use crate::shutdown::Shutdown;
use crate::store::{NewUpload, Payload, QueueStatus, Store, Upload, UploadKind};

/// Piece files wait here (relative to the data dir) until they are up.
pub const PIECES_DIR: &str = "cloud/pieces";
/// Encrypted files on their way out.
const SPOOL_DIR: &str = "cloud/spool";
/// Retry delays double from the first to the cap.
const BACKOFF_FIRST_MS: i64 = 1_000;
const BACKOFF_CAP_MS: i64 = 30_000;

/// Live figures kept in memory (the queue's own are in the database).
#[derive(Debug, Clone, Default)]
struct Stats {
    uploads: u64,
    failures: u64,
    bytes_sent: u64,
    last_success_ms: Option<i64>,
    last_error: Option<String>,
    last_error_ms: Option<i64>,
    /// When the relay last got through: false while the cloud is unreachable.
    reachable: bool,
}

/// What the relay can tell about itself: the queue (from the database) and what it saw
/// since the hub started.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Where clips go, without credentials.
    pub store: String,
    pub recipients: usize,
    pub max_upload_kbps: u64,
    pub queue: QueueStatus,
    /// Since the hub started: uploads, failed attempts, ciphertext bytes sent.
    pub uploads: u64,
    pub failures: u64,
    pub bytes_sent: u64,
    /// ms since the epoch.
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// False while the cloud is unreachable.
    pub reachable: bool,
}

/// The `meta` setting holding the owner's recipients (JSON), and how many may be set.
pub const RECIPIENTS_SETTING: &str = "cloud.recipients";
const MAX_RECIPIENTS: usize = 32;

/// Objects listed for the "what leaves" page at most, and the newest shown.
pub const EXPOSURE_LIST_MAX: usize = 100_000;
pub const EXPOSURE_RECENT: usize = 50;

/// What the storage provider can see of this hub, from the bucket's own listing.
#[derive(Debug, Clone)]
pub struct Exposure {
    pub store: String,
    pub endpoint: String,
    pub region: String,
    pub hub_id: String,
    pub recipients: Vec<String>,
    pub listed_at_ms: i64,
    /// None when the bucket could not be listed (`error` says why).
    pub objects: Option<u64>,
    pub bytes: Option<u64>,
    pub truncated: bool,
    /// Newest first: name, bytes, uploaded (ms).
    pub recent: Vec<(String, u64, i64)>,
    pub error: Option<String>,
    pub snapshot: Snapshot,
}

pub struct Relay {
    store: Store,
    remote: Remote,
    /// Who clips are sealed to; the owner may change it from the browser.
    recipients: Mutex<Vec<Recipient>>,
    /// True once the list comes from the hub's database rather than the config.
    recipients_from_hub: std::sync::atomic::AtomicBool,
    hub_id: String,
    data_dir: PathBuf,
    notify: Notify,
    max_upload_kbps: u64,
    /// For the owner's "what leaves" page: the endpoint ("" = AWS) and region.
    endpoint: String,
    region: String,
    stats: Mutex<Stats>,
    /// Stamps queue rows and decides when a failed one is due again.
    clock: Clock,
}

impl Relay {
    /// Opens the bucket and starts the upload task. Nothing is sent until there is
    /// something to send.
    pub fn start(
        cfg: &config::Cloud,
        store: Store,
        hub_id: String,
        clock: Clock,
        stop: Shutdown,
        stored_recipients: Option<Vec<String>>,
    ) -> Result<(Arc<Relay>, tokio::task::JoinHandle<()>)> {
        // The owner's list from the browser, when there is one, wins over the config's.
        let from_hub = stored_recipients.is_some();
        let recipients = super::keys::parse_recipients(stored_recipients.as_deref().unwrap_or(&cfg.recipients))?;
        if recipients.is_empty() {
            return Err(Error::invalid("cloud.recipients: at least one recipient is needed to send anything"));
        }
        let remote = Remote::open(
            &Target {
                store: cfg.store.clone(),
                endpoint: cfg.endpoint.clone(),
                region: cfg.region.clone(),
                access_key_id: cfg.access_key_id.clone(),
                secret_access_key: cfg.secret_access_key.clone(),
            }
            .with_env(),
        )?;
        let data_dir = store.data_dir().to_path_buf();
        for d in [PIECES_DIR, SPOOL_DIR] {
            let p = data_dir.join(d);
            std::fs::create_dir_all(&p).map_err(|e| Error::internal(format!("creating {}: {e}", p.display())))?;
        }
        let relay = Arc::new(Relay {
            store,
            remote,
            recipients: Mutex::new(recipients),
            recipients_from_hub: std::sync::atomic::AtomicBool::new(from_hub),
            hub_id,
            data_dir,
            notify: Notify::new(),
            max_upload_kbps: cfg.max_upload_kbps,
            endpoint: cfg.endpoint.clone(),
            region: cfg.region.clone(),
            stats: Mutex::new(Stats { reachable: true, ..Default::default() }),
            clock,
        });
        tracing::info!(store = %relay.remote.describe, recipients = relay.recipients().len(), "cloud relay on");
        let task = tokio::spawn(relay.clone().run(stop));
        Ok((relay, task))
    }

    /// The queue and the live figures, for the API and metrics.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let queue: QueueStatus = self.store.call(|db| db.cloud_status()).await?;
        let s = crate::sync::lock(&self.stats).clone();
        Ok(Snapshot {
            store: self.remote.describe.clone(),
            recipients: self.recipients().len(),
            max_upload_kbps: self.max_upload_kbps,
            uploads: s.uploads,
            failures: s.failures,
            bytes_sent: s.bytes_sent,
            last_success_ms: s.last_success_ms.or(queue.last_success_ms),
            last_error: s.last_error.or_else(|| queue.last_error.clone()),
            last_error_ms: s.last_error_ms,
            reachable: s.reachable,
            queue,
        })
    }

    /// Who clips are sealed to now.
    fn recipients(&self) -> Vec<Recipient> {
        crate::sync::lock(&self.recipients).clone()
    }

    /// The recipients (`age1…`) and whether they were set on the hub (else: the config's).
    pub fn recipient_list(&self) -> (Vec<String>, bool) {
        let list = self.recipients().iter().map(|r| r.to_string()).collect();
        (list, self.recipients_from_hub.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Replaces who clips are sealed to, from now on (what is in the bucket stays as it
    /// was); the list is kept in the database and wins over the config's from then on.
    pub async fn set_recipients(&self, list: &[String], actor: &str) -> Result<Vec<String>> {
        if list.is_empty() {
            return Err(Error::invalid("recipients: at least one is needed, or nobody could open the clips"));
        }
        if list.len() > MAX_RECIPIENTS {
            return Err(Error::invalid(format!("recipients: at most {MAX_RECIPIENTS}")));
        }
        let parsed = super::keys::parse_recipients(list)
            .map_err(|e| Error::invalid(e.message().replace("cloud.recipients", "recipients")))?;
        let texts: Vec<String> = parsed.iter().map(|r| r.to_string()).collect();
        let (json, actor, now) = (serde_json::to_string(&texts).unwrap_or_default(), actor.to_string(), self.clock.now_ms());
        let n = texts.len();
        self.store
            .call(move |db| {
                db.set_setting(RECIPIENTS_SETTING, &json)?;
                db.audit(&actor, "cloud.recipients_changed", &format!("{n} recipient(s)"), now)
            })
            .await?;
        *crate::sync::lock(&self.recipients) = parsed;
        self.recipients_from_hub.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(recipients = n, "cloud recipients changed");
        Ok(texts)
    }

    /// Writes one sealed probe (an empty index, so a probe left behind by a failed delete
    /// lists as nothing) and deletes it; the time it took.
    pub async fn probe(&self) -> Result<std::time::Duration> {
        let started = std::time::Instant::now();
        let recipients = self.recipients();
        let sealed = blocking("sealing a probe", move || seal_index(&recipients, b"")).await??;
        let at = self.remote.object(&self.hub_id, &super::index::new_object_name());
        self.remote.put_bytes(&at, sealed).await?;
        self.remote.delete(&at).await?;
        Ok(started.elapsed())
    }

    /// What the provider sees, read from the bucket itself now: this hub's objects (their
    /// random names, padded sizes and upload times), with where they are and who can open
    /// them. At most [`EXPOSURE_LIST_MAX`] objects are listed.
    pub async fn exposure(&self) -> Result<Exposure> {
        let snap = self.snapshot().await?;
        let listed = self.remote.list_hub(&self.hub_id, EXPOSURE_LIST_MAX).await;
        let now = self.clock.now_ms();
        let mut e = Exposure {
            store: self.remote.describe.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            hub_id: self.hub_id.clone(),
            recipients: self.recipients().iter().map(|r| r.to_string()).collect(),
            listed_at_ms: now,
            objects: None,
            bytes: None,
            truncated: false,
            recent: Vec::new(),
            error: None,
            snapshot: snap,
        };
        match listed {
            Ok((mut objects, truncated)) => {
                e.objects = Some(objects.len() as u64);
                e.bytes = Some(objects.iter().map(|o| o.1).sum());
                e.truncated = truncated;
                objects.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
                objects.truncate(EXPOSURE_RECENT);
                e.recent = objects;
            }
            Err(err) => e.error = Some(err.to_string()),
        }
        Ok(e)
    }

    /// One index line; `span` is (start, end) in ms, `event` the event id and a piece's place in it.
    fn entry(
        &self,
        object: &str,
        camera: String,
        span: (i64, i64),
        bytes: u64,
        kind: UploadKind,
        event: (i64, Option<u32>),
    ) -> String {
        let ((start_ms, end_ms), (event_id, seq)) = (span, event);
        let e = Entry {
            id: object.to_string(),
            camera,
            start: rfc3339(start_ms),
            end: rfc3339(end_ms),
            bytes,
            kind: kind.as_str().to_string(),
            event: Some(format!("{}/{event_id}", self.hub_id)),
            seq,
        };
        serde_json::to_string(&e).unwrap_or_default()
    }

    fn queue_piece(&self, p: &Piece) -> Result<()> {
        let rel = p.path.strip_prefix(&self.data_dir).unwrap_or(&p.path).to_string_lossy().to_string();
        let bytes = std::fs::metadata(&p.path).map_err(|e| Error::internal(format!("{}: {e}", p.path.display())))?.len();
        let camera_id = p.camera_id;
        let camera =
            self.store.call_blocking(move |db| db.camera_name(camera_id))?.unwrap_or_else(|| format!("camera {camera_id}"));
        let object = new_object_name();
        let body = self.entry(&object, camera, (p.start_ms, p.end_ms), bytes, UploadKind::Piece, (p.event_id, Some(p.seq)));
        let u = NewUpload {
            object,
            kind: UploadKind::Piece,
            path: rel,
            event_id: p.event_id,
            bytes,
            index_object: new_object_name(),
            index_body: body,
        };
        let now = self.clock.now_ms();
        self.store.call_blocking(move |db| db.cloud_enqueue(&u, now))?;
        self.notify.notify_one();
        Ok(())
    }

    /// Queues the clip of a finished event (nothing if it has none).
    fn queue_clip(store: &Store, hub_relay: &Relay, event_id: i64) -> Result<bool> {
        let Some(ev) = store.call_blocking(move |db| db.event_for_cloud(event_id))? else { return Ok(false) };
        let (Some(path), Some(end_ms)) = (ev.clip_path, ev.end_ms) else { return Ok(false) };
        let bytes = ev.clip_bytes.unwrap_or(0);
        let object = new_object_name();
        let body = hub_relay.entry(&object, ev.camera, (ev.clip_start_ms, end_ms), bytes, UploadKind::Clip, (event_id, None));
        let u = NewUpload {
            object,
            kind: UploadKind::Clip,
            path,
            event_id,
            bytes,
            index_object: new_object_name(),
            index_body: body,
        };
        let now = hub_relay.clock.now_ms();
        store.call_blocking(move |db| db.cloud_enqueue(&u, now))?;
        hub_relay.notify.notify_one();
        Ok(true)
    }

    async fn run(self: Arc<Self>, stop: Shutdown) {
        if let Err(e) = self.clone().catch_up().await {
            tracing::error!(error = %e, "cloud relay: cannot check for clips to send");
        }
        let mut throttle = Throttle::new(self.max_upload_kbps);
        loop {
            if stop.is_triggered() {
                break;
            }
            let now = self.clock.now_ms();
            let next = match self.store.call(move |db| db.cloud_next(now)).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "cloud relay: reading the queue");
                    None
                }
            };
            let Some(job) = next else {
                let wait = match self.store.call(|db| db.cloud_next_retry_ms()).await {
                    Ok(Some(t)) => Duration::from_millis((t - self.clock.now_ms()).clamp(50, 5_000) as u64),
                    _ => Duration::from_secs(5),
                };
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait() => {}
                }
                continue;
            };
            let started = self.clock.monotonic();
            let result = tokio::select! {
                r = self.upload(&job) => r,
                _ = stop.wait() => break, // the row stays queued; sent after the restart
            };
            let took = self.clock.monotonic().saturating_sub(started);
            self.settle(&job, result, took).await;
            if let Some(pause) = throttle.after(self.last_sent(), took) {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.wait() => {}
                }
            }
        }
        tracing::info!("cloud relay stopped");
    }

    fn last_sent(&self) -> u64 {
        crate::sync::lock(&self.stats).bytes_sent
    }

    /// Queues clips of events that finished while the relay was not listening, forgets
    /// piece files nobody will send, and empties the spool.
    async fn catch_up(self: Arc<Self>) -> Result<()> {
        let spool = self.data_dir.join(SPOOL_DIR);
        if let Ok(rd) = std::fs::read_dir(&spool) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let me = self.clone();
        blocking("queueing clips missed while the relay was off", move || -> Result<()> {
            let now = me.clock.now_ms();
            let since = me.store.call_blocking(move |db| db.cloud_since_ms(now))?;
            let ids = me.store.call_blocking(move |db| db.cloud_unqueued_clips(since))?;
            for id in &ids {
                Relay::queue_clip(&me.store, &me, *id)?;
            }
            if !ids.is_empty() {
                tracing::info!(clips = ids.len(), "cloud relay: queued clips of events that ended while it was off");
            }
            let keep: std::collections::HashSet<String> =
                me.store.call_blocking(|db| db.cloud_pending_piece_paths())?.into_iter().collect();
            if let Ok(rd) = std::fs::read_dir(me.data_dir.join(PIECES_DIR)) {
                for e in rd.flatten() {
                    let rel = format!("{PIECES_DIR}/{}", e.file_name().to_string_lossy());
                    if !keep.contains(&rel) {
                        // A piece cut short by a crash: the event's clip (recovered) covers it.
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
            Ok(())
        })
        .await?
    }

    async fn upload(&self, job: &Upload) -> Result<u64> {
        let at = self.remote.object(&self.hub_id, &job.object);
        match &job.payload {
            Payload::Index { body } => {
                let body = body.clone();
                let recipients = self.recipients();
                let sealed =
                    blocking("sealing an index entry", move || seal_index(&recipients, body.trim_end().as_bytes())).await??;
                let n = sealed.len() as u64;
                self.remote.put_bytes(&at, sealed).await?;
                Ok(n)
            }
            Payload::File { path } => {
                let src = self.data_dir.join(path);
                if !src.exists() {
                    return Err(Error::not_found(format!("{} was deleted before it was uploaded", src.display())));
                }
                let (recipients, s2) = (self.recipients(), src.clone());
                if std::fs::metadata(&src).map(|m| m.len()).unwrap_or(u64::MAX) <= IN_MEMORY_MAX {
                    // Small (pieces, short clips): sealed in memory, sparing the SD card a write.
                    let sealed = blocking("sealing a clip", move || {
                        let mut out = Vec::new();
                        seal_mp4(&recipients, &s2, &mut out).map(|_| out)
                    })
                    .await??;
                    let n = sealed.len() as u64;
                    self.remote.put_bytes(&at, sealed).await?;
                    return Ok(n);
                }
                let spool = self.data_dir.join(SPOOL_DIR).join(format!("{}.age", job.object));
                let sp2 = spool.clone();
                let sealed = blocking("sealing a clip", move || seal_mp4_file(&recipients, &s2, &sp2)).await?;
                let result = match sealed {
                    Ok(_) => {
                        let n = std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(0);
                        self.remote.put_file(&at, &spool, async |_| {}).await.map(|_| n)
                    }
                    Err(e) => Err(e),
                };
                let _ = std::fs::remove_file(&spool);
                result
            }
        }
    }

    /// Records how an attempt went; `took` is how long it took. A failure is due again
    /// [`backoff_ms`] after now.
    async fn settle(&self, job: &Upload, result: Result<u64>, took: Duration) {
        let now = self.clock.now_ms();
        let (id, kind) = (job.id, job.kind);
        match result {
            Ok(sent) => {
                if let Err(e) = self.store.call(move |db| db.cloud_done(id, now)).await {
                    tracing::error!(error = %e, "cloud relay: cannot mark an upload done; it will be sent again");
                    return;
                }
                if kind == UploadKind::Piece
                    && let Payload::File { path: rel } = &job.payload
                {
                    let _ = std::fs::remove_file(self.data_dir.join(rel));
                }
                let mut s = crate::sync::lock(&self.stats);
                if !s.reachable {
                    tracing::info!("cloud relay: the cloud is reachable again");
                }
                s.uploads += 1;
                s.bytes_sent += sent;
                s.last_success_ms = Some(now);
                s.reachable = true;
                tracing::debug!(object = %job.object, kind = kind.as_str(), bytes = sent, ms = took.as_millis() as u64, "uploaded");
            }
            Err(e) if e.kind() == ErrorKind::NotFound && kind != UploadKind::Index => {
                tracing::error!(event = ?job.event_id, error = %e, "cloud relay: giving up an upload: its file is gone");
                let msg = e.to_string();
                if let Err(e) = self.store.call(move |db| db.cloud_give_up(id, &msg)).await {
                    tracing::error!(error = %e, "cloud relay: cannot record a lost upload");
                }
            }
            Err(e) => {
                let attempts = job.attempts + 1;
                let delay = backoff_ms(attempts);
                let msg = e.to_string();
                {
                    let mut s = crate::sync::lock(&self.stats);
                    if s.reachable || attempts == 1 {
                        tracing::warn!(error = %msg, retry_in_ms = delay, "cloud relay: upload failed; will retry");
                    }
                    s.failures += 1;
                    s.reachable = false;
                    s.last_error = Some(msg.clone());
                    s.last_error_ms = Some(now);
                }
                if let Err(e) = self.store.call(move |db| db.cloud_retry(id, &msg, now + delay)).await {
                    tracing::error!(error = %e, "cloud relay: cannot record a failed upload");
                }
            }
        }
    }
}

impl PieceSink for Relay {
    fn piece_done(&self, piece: Piece) {
        if let Err(e) = self.queue_piece(&piece) {
            tracing::error!(error = %e, event = piece.event_id, seq = piece.seq, "cloud relay: cannot queue a piece");
        }
    }
}

impl events::CloudRelay for Relay {
    fn event_done(&self, event_id: i64) {
        if let Err(e) = Relay::queue_clip(&self.store, self, event_id) {
            // Not lost: the next start queues clips that were never queued.
            tracing::error!(error = %e, event = event_id, "cloud relay: cannot queue a clip");
        }
    }
    fn pieces_dir(&self) -> PathBuf {
        self.data_dir.join(PIECES_DIR)
    }
}

pub fn backoff_ms(attempts: i64) -> i64 {
    let shift = (attempts - 1).clamp(0, 20) as u32;
    (BACKOFF_FIRST_MS << shift).min(BACKOFF_CAP_MS)
}

/// Files up to this size are sealed in memory; bigger ones through a spool file.
const IN_MEMORY_MAX: u64 = 4 * 1024 * 1024;

/// Pads an MP4 file with a trailing `free` box and encrypts it into `out`; the padded
/// plaintext length.
pub fn seal_mp4<W: std::io::Write>(recipients: &[Recipient], src: &Path, out: W) -> Result<u64> {
    use std::io::Read;
    let f = std::fs::File::open(src).map_err(|e| Error::not_found(format!("{}: {e}", src.display())))?;
    let len = f.metadata().map_err(|e| Error::internal(format!("{}: {e}", src.display())))?.len();
    let padded = pad::mp4_padded_len(len);
    let header = pad::mp4_free_header(padded - len)?;
    let zeros = (padded - len).saturating_sub(header.len() as u64);
    let plain = std::io::BufReader::new(f.take(len)).chain(&header[..]).chain(std::io::repeat(0).take(zeros));
    let n = super::seal::encrypt_stream(recipients, plain, out)?;
    if n != padded {
        return Err(Error::internal(format!("{}: changed while it was being sealed", src.display())));
    }
    Ok(n)
}

/// [`seal_mp4`] into a new file `out` (mode 0600).
pub fn seal_mp4_file(recipients: &[Recipient], src: &Path, out: &Path) -> Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    if !src.exists() {
        return Err(Error::not_found(format!("{}: no such file", src.display())));
    }
    let w = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| Error::internal(format!("{}: {e}", out.display())))?;
    let mut w = std::io::BufWriter::new(w);
    let n = seal_mp4(recipients, src, &mut w)?;
    use std::io::Write;
    w.flush().map_err(|e| Error::internal(format!("{}: {e}", out.display())))?;
    Ok(n)
}

/// Pads JSON lines (given without the final newline) with whitespace and encrypts them.
pub fn seal_index(recipients: &[Recipient], lines: &[u8]) -> Result<Vec<u8>> {
    let len = lines.len() as u64;
    let pad = pad::json_lines_padded_len(len) - len;
    let mut plain = lines.to_vec();
    plain.extend_from_slice(&pad::json_lines_pad(pad));
    let mut out = Vec::with_capacity(plain.len() + 512);
    super::seal::encrypt_stream(recipients, &plain[..], &mut out)?;
    Ok(out)
}

/// Keeps the average upload rate under the cap by pausing after each object.
struct Throttle {
    bytes_per_s: u64,
    last_total: Option<u64>,
}

impl Throttle {
    fn new(kbps: u64) -> Throttle {
        Throttle { bytes_per_s: kbps * 1000 / 8, last_total: None }
    }
    /// `total` is the running count of bytes sent; `took` how long the last object took.
    fn after(&mut self, total: u64, took: Duration) -> Option<Duration> {
        let prev = self.last_total.replace(total).unwrap_or(0);
        if self.bytes_per_s == 0 || total <= prev {
            return None;
        }
        let should = Duration::from_secs_f64((total - prev) as f64 / self.bytes_per_s as f64);
        should.checked_sub(took).filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let v: Vec<i64> = (1..=7).map(backoff_ms).collect();
        assert_eq!(v, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(backoff_ms(1_000), 30_000);
    }

    /// A failed upload is due again 1 s later, then 2, 4, 8, 16 and 30 s (the cap),
    /// measured on the relay's clock; a success clears the error.
    #[tokio::test]
    async fn a_failed_upload_waits_out_its_backoff_on_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let (data, bucket) = (dir.path().join("data"), dir.path().join("bucket"));
        for d in [&data, &bucket] {
            std::fs::create_dir_all(d).unwrap();
        }
        let store = Store::open(&data).unwrap();
        let tc = crate::clock::TestClock::at(1_700_000_000_000);
        let (_, public) = super::super::keys::new_identity();
        let relay = Relay {
            store: store.clone(),
            remote: Remote::open(&Target { store: format!("file://{}", bucket.display()), ..Default::default() }).unwrap(),
            recipients: Mutex::new(super::super::keys::parse_recipients(&[public]).unwrap()),
            recipients_from_hub: std::sync::atomic::AtomicBool::new(false),
            hub_id: "hub".into(),
            data_dir: data.clone(),
            notify: Notify::new(),
            max_upload_kbps: 0,
            endpoint: String::new(),
            region: String::new(),
            stats: Mutex::new(Stats { reachable: true, ..Default::default() }),
            clock: tc.clock(),
        };
        let u = NewUpload {
            object: new_object_name(),
            kind: UploadKind::Clip,
            path: "clips/1/1.mp4".into(),
            event_id: 1,
            bytes: 10,
            index_object: new_object_name(),
            index_body: "{}".into(),
        };
        let now = tc.now_ms();
        let id = store.call(move |db| db.cloud_enqueue(&u, now)).await.unwrap();
        let due = async || {
            let now = tc.now_ms();
            store.call(move |db| db.cloud_next(now)).await.unwrap()
        };
        let ms = |n: i64| Duration::from_millis(n as u64);
        for (attempts, wait) in [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000].into_iter().enumerate() {
            let job = due().await.expect("due now");
            assert_eq!((job.id, job.attempts), (id, attempts as i64));
            let failed_at = tc.now_ms();
            relay.settle(&job, Err(Error::new(ErrorKind::Unavailable, "bucket down")), Duration::ZERO).await;
            tc.advance(ms(wait - 1));
            assert_eq!(due().await, None, "attempt {}: not yet due {} ms later", attempts + 1, wait - 1);
            tc.advance(ms(1));
            let status = relay.snapshot().await.unwrap();
            assert!(!status.reachable);
            assert_eq!(status.last_error_ms, Some(failed_at));
        }
        let job = due().await.expect("due after the last wait");
        relay.settle(&job, Ok(64), Duration::ZERO).await;
        let status = relay.snapshot().await.unwrap();
        assert!(status.reachable);
        assert_eq!(status.last_success_ms, Some(tc.now_ms()));
        // Now its index entry is due.
        assert_eq!(due().await.map(|j| j.kind), Some(UploadKind::Index));
    }

    #[test]
    fn the_throttle_spaces_objects_to_the_cap() {
        let mut t = Throttle::new(800); // 100 000 bytes/s
        assert_eq!(t.after(100_000, Duration::from_millis(200)), Some(Duration::from_millis(800)));
        assert_eq!(t.after(150_000, Duration::from_secs(1)), None);
        let mut off = Throttle::new(0);
        assert_eq!(off.after(1 << 30, Duration::ZERO), None);
    }

    #[test]
    fn sealed_index_and_clip_open_with_the_owner_key_and_stay_valid() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = super::super::keys::new_identity();
        let id: age::x25519::Identity = secret.parse().unwrap();
        let r = super::super::keys::parse_recipients(&[public]).unwrap();
        let lines = br#"{"id":"a","camera":"Porch","start":"x","end":"y","bytes":1}"#;
        let sealed = seal_index(&r, lines).unwrap();
        let mut plain = Vec::new();
        super::super::seal::decrypt_stream(std::slice::from_ref(&id), &sealed[..], &mut plain).unwrap();
        assert_eq!(plain.len() as u64, pad::json_lines_padded_len(lines.len() as u64));
        let text = String::from_utf8(plain).unwrap();
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["camera"], "Porch");

        let src = dir.path().join("c.mp4");
        std::fs::write(&src, crate::recorder::mp4::tests::synthetic_file(3)).unwrap();
        let out = dir.path().join("c.age");
        let n = seal_mp4_file(&r, &src, &out).unwrap();
        let len = std::fs::metadata(&src).unwrap().len();
        assert_eq!(n, pad::mp4_padded_len(len));
        let mut plain = Vec::new();
        super::super::seal::decrypt_stream(&[id], std::fs::File::open(&out).unwrap(), &mut plain).unwrap();
        assert_eq!(&plain[..len as usize], &std::fs::read(&src).unwrap()[..]);
        let scan = crate::recorder::mp4::scan(plain.len() as u64, |at, buf| {
            buf.copy_from_slice(&plain[at as usize..at as usize + buf.len()]);
            Ok(())
        })
        .unwrap();
        assert_eq!(scan.fragments, 3, "the free box keeps the file a valid box sequence");
        assert_eq!(&plain[len as usize + 4..len as usize + 8], b"free");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
        let e = seal_mp4_file(&r, &dir.path().join("gone.mp4"), &out).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}
