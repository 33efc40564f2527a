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
use crate::secrets::SealKey;
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
    /// The last object that went up: kind, ciphertext bytes, when (ms).
    last_upload: Option<(UploadKind, u64, i64)>,
    /// The upload in flight: kind, plaintext bytes, since (ms).
    sending: Option<(UploadKind, u64, i64)>,
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
    /// True while a store is in use (the relay sends); false: the cloud is off and the
    /// queue waits.
    pub active: bool,
    /// The last object that went up: kind, ciphertext bytes, when (ms).
    pub last_upload: Option<(UploadKind, u64, i64)>,
    /// The upload in flight: kind, plaintext bytes, since (ms).
    pub sending: Option<(UploadKind, u64, i64)>,
}

/// The `meta` setting holding the store settings made in the browser (JSON of
/// [`StoredStore`]); when present it wins over the config's `[cloud]` store keys.
pub const STORE_SETTING: &str = "cloud.store";
/// What the secret access key is sealed under ([`SealKey`]).
const SECRET_CONTEXT: &str = "homehub cloud secret_access_key v1";

/// Store settings as kept in the database: the secret only sealed (hex).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredStore {
    store: String,
    endpoint: String,
    region: String,
    access_key_id: String,
    /// [`SealKey::seal`]ed under [`SECRET_CONTEXT`], hex; "" = none.
    secret_sealed: String,
}

/// New store settings from the owner (`secret_access_key` None: keep the one kept now).
#[derive(Debug, Clone, Default)]
pub struct StoreChange {
    pub store: String,
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Option<String>,
}

/// Where the settings in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// No store anywhere.
    None,
    /// The config's `[cloud]` section.
    Config,
    /// Set from the browser (kept in the database).
    Hub,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::None => "none",
            Source::Config => "config",
            Source::Hub => "hub",
        }
    }
}

/// The store settings as the owner may see them: never the secret.
#[derive(Debug, Clone)]
pub struct StoreView {
    pub store: String,
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_set: bool,
    pub from: Source,
    /// The relay sends with them now.
    pub active: bool,
    /// Why they could not be put to use, if so.
    pub error: Option<String>,
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
    /// The bucket in use; None: the cloud is off (nothing is queued, the queue waits).
    remote: Mutex<Option<Remote>>,
    /// The settings behind `remote` (the secret only as whether there is one).
    target: Mutex<Target>,
    from: Mutex<Source>,
    /// Why the settings could not be put to use.
    error: Mutex<Option<String>>,
    /// False until the upload task has caught up with what happened while no store was
    /// in use (set back when one is switched on).
    caught_up: std::sync::atomic::AtomicBool,
    /// Seals the store's secret access key in the database.
    seal_key: Arc<SealKey>,
    /// Who clips are sealed to; the owner may change it from the browser.
    recipients: Mutex<Vec<Recipient>>,
    /// True once the list comes from the hub's database rather than the config.
    recipients_from_hub: std::sync::atomic::AtomicBool,
    hub_id: String,
    data_dir: PathBuf,
    notify: Notify,
    max_upload_kbps: u64,
    stats: Mutex<Stats>,
    /// Stamps queue rows and decides when a failed one is due again.
    clock: Clock,
    /// One settings change at a time.
    changing: tokio::sync::Mutex<()>,
}

/// What [`Relay::start`] is handed.
pub struct Parts {
    pub store: Store,
    pub hub_id: String,
    pub clock: Clock,
    pub seal_key: Arc<SealKey>,
}

impl Relay {
    /// Starts the upload task, with the store set in the browser (kept in the database)
    /// or else the config's; with neither, the relay waits until the owner sets one.
    /// Nothing is sent until there is something to send. A bad config stops start-up (it
    /// names the key); settings from the browser that no longer open are reported on the
    /// page and in the log, and the hub records regardless.
    pub async fn start(cfg: &config::Cloud, p: Parts, stop: Shutdown) -> Result<(Arc<Relay>, tokio::task::JoinHandle<()>)> {
        let Parts { store, hub_id, clock, seal_key } = p;
        let (stored_recipients, stored_store) =
            store.call(|db| Ok((db.setting(RECIPIENTS_SETTING)?, db.setting(STORE_SETTING)?))).await?;
        // The owner's list from the browser, when there is one, wins over the config's.
        let stored_recipients: Option<Vec<String>> = match stored_recipients.map(|s| serde_json::from_str(&s)) {
            Some(Ok(list)) => Some(list),
            Some(Err(e)) => return Err(Error::internal(format!("database: the stored cloud recipients are not a list: {e}"))),
            None => None,
        };
        let from_hub = stored_recipients.is_some();
        let recipients = super::keys::parse_recipients(stored_recipients.as_deref().unwrap_or(&cfg.recipients))?;
        let data_dir = store.data_dir().to_path_buf();
        for d in [PIECES_DIR, SPOOL_DIR] {
            let p = data_dir.join(d);
            std::fs::create_dir_all(&p).map_err(|e| Error::internal(format!("creating {}: {e}", p.display())))?;
        }
        let relay = Arc::new(Relay {
            store,
            remote: Mutex::new(None),
            target: Mutex::new(Target::default()),
            from: Mutex::new(Source::None),
            error: Mutex::new(None),
            caught_up: std::sync::atomic::AtomicBool::new(false),
            seal_key,
            recipients: Mutex::new(recipients),
            recipients_from_hub: std::sync::atomic::AtomicBool::new(from_hub),
            hub_id,
            data_dir,
            notify: Notify::new(),
            max_upload_kbps: cfg.max_upload_kbps,
            stats: Mutex::new(Stats { reachable: true, ..Default::default() }),
            clock,
            changing: tokio::sync::Mutex::new(()),
        });
        match stored_store {
            Some(json) => {
                // Set in the browser: a failure here is shown, never fatal.
                let target = serde_json::from_str::<StoredStore>(&json)
                    .map_err(|e| Error::internal(format!("database: the stored cloud store settings: {e}")))
                    .and_then(|s| relay.unseal(s));
                match target {
                    Ok(t) => {
                        if let Err(e) = relay.switch(t, Source::Hub) {
                            tracing::error!(error = %e, "cloud: the store set on the hub cannot be used; nothing is sent until it is fixed on the What leaves page");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cloud: the store set on the hub cannot be read; nothing is sent until it is set again");
                        *crate::sync::lock(&relay.from) = Source::Hub;
                        *crate::sync::lock(&relay.error) = Some(e.to_string());
                    }
                }
            }
            None if !cfg.store.is_empty() => {
                if relay.recipients().is_empty() {
                    return Err(Error::invalid("cloud.recipients: at least one recipient is needed to send anything"));
                }
                let t = Target {
                    store: cfg.store.clone(),
                    endpoint: cfg.endpoint.clone(),
                    region: cfg.region.clone(),
                    access_key_id: cfg.access_key_id.clone(),
                    secret_access_key: cfg.secret_access_key.clone(),
                };
                relay.switch(t, Source::Config)?;
            }
            None => tracing::info!("cloud off: no store is set (nothing leaves the house)"),
        }
        let task = tokio::spawn(relay.clone().run(stop));
        Ok((relay, task))
    }

    /// The stored settings with their secret opened.
    fn unseal(&self, s: StoredStore) -> Result<Target> {
        let secret = if s.secret_sealed.is_empty() {
            String::new()
        } else {
            let sealed =
                hex::decode(&s.secret_sealed).map_err(|_| Error::internal("database: the sealed cloud secret is not hex"))?;
            String::from_utf8(self.seal_key.open(SECRET_CONTEXT, &sealed)?)
                .map_err(|_| Error::internal("database: the cloud secret is not text"))?
        };
        Ok(Target {
            store: s.store,
            endpoint: s.endpoint,
            region: s.region,
            access_key_id: s.access_key_id,
            secret_access_key: secret,
        })
    }

    /// Puts `t` to use (an empty store: the cloud off). On an error nothing changes but
    /// the error shown.
    fn switch(&self, t: Target, from: Source) -> Result<()> {
        let opened = if t.store.is_empty() {
            Ok(None)
        } else if self.recipients().is_empty() {
            Err(Error::new(ErrorKind::Conflict, "no recipients yet: add who may open the clips first"))
        } else {
            Remote::open(&t.clone().with_env()).map(Some)
        };
        *crate::sync::lock(&self.from) = from;
        let remote = match opened {
            Ok(r) => r,
            Err(e) => {
                *crate::sync::lock(&self.target) = t;
                *crate::sync::lock(&self.remote) = None;
                *crate::sync::lock(&self.error) = Some(e.to_string());
                return Err(e);
            }
        };
        match &remote {
            Some(r) => tracing::info!(store = %r.describe, recipients = self.recipients().len(), "cloud relay on"),
            None => tracing::info!("cloud relay off: nothing more leaves the house; queued uploads wait"),
        }
        let on = remote.is_some();
        *crate::sync::lock(&self.target) = t;
        *crate::sync::lock(&self.remote) = remote;
        *crate::sync::lock(&self.error) = None;
        if on {
            // The task catches up (clips of events that ended meanwhile) before it sends.
            self.caught_up.store(false, std::sync::atomic::Ordering::SeqCst);
            let mut st = crate::sync::lock(&self.stats);
            st.reachable = true;
            st.last_error = None;
            st.last_error_ms = None;
        }
        self.notify.notify_one();
        Ok(())
    }

    /// The bucket in use, if any.
    fn remote(&self) -> Option<Remote> {
        crate::sync::lock(&self.remote).clone()
    }

    /// True while a store is in use.
    pub fn is_on(&self) -> bool {
        crate::sync::lock(&self.remote).is_some()
    }

    /// The store settings, without the secret.
    pub fn store_view(&self) -> StoreView {
        let t = crate::sync::lock(&self.target).clone();
        StoreView {
            store: t.store,
            endpoint: t.endpoint,
            region: t.region,
            access_key_id: t.access_key_id,
            secret_set: !t.secret_access_key.is_empty(),
            from: *crate::sync::lock(&self.from),
            active: self.is_on(),
            error: crate::sync::lock(&self.error).clone(),
        }
    }

    /// The settings `c` would make, the secret kept when it gives none.
    fn target_for(&self, c: StoreChange) -> Target {
        let kept = crate::sync::lock(&self.target).secret_access_key.clone();
        Target {
            store: c.store.trim().to_string(),
            endpoint: c.endpoint.trim().to_string(),
            region: if c.region.trim().is_empty() { "us-east-1".into() } else { c.region.trim().to_string() },
            access_key_id: c.access_key_id.trim().to_string(),
            secret_access_key: c.secret_access_key.unwrap_or(kept),
        }
    }

    /// New store settings from the owner, in use at once and kept in the database (the
    /// secret sealed), winning over the config's from then on. An empty store switches
    /// the cloud off. Refused (nothing changes) when they do not open.
    pub async fn set_store(&self, c: StoreChange, actor: &str) -> Result<StoreView> {
        let _one = self.changing.lock().await;
        let t = self.target_for(c);
        check_fields(&t)?;
        if !t.store.is_empty() {
            if self.recipients().is_empty() {
                return Err(Error::new(ErrorKind::Conflict, "no recipients yet: add who may open the clips first"));
            }
            Remote::open(&t.clone().with_env())?;
        }
        let secret_sealed = if t.secret_access_key.is_empty() {
            String::new()
        } else {
            hex::encode(self.seal_key.seal(SECRET_CONTEXT, t.secret_access_key.as_bytes())?)
        };
        let kept = StoredStore {
            store: t.store.clone(),
            endpoint: t.endpoint.clone(),
            region: t.region.clone(),
            access_key_id: t.access_key_id.clone(),
            secret_sealed,
        };
        let json = serde_json::to_string(&kept).map_err(|e| Error::internal(format!("encoding store settings: {e}")))?;
        let detail = if t.store.is_empty() {
            "cloud off".to_string()
        } else {
            let ep = if t.endpoint.is_empty() { "Amazon S3" } else { t.endpoint.as_str() };
            format!("store {} at {ep} ({})", t.store, t.region)
        };
        let (actor, now) = (actor.to_string(), self.clock.now_ms());
        self.store
            .call(move |db| {
                db.set_setting(STORE_SETTING, &json)?;
                db.audit(&actor, "cloud.settings_changed", &detail, now)
            })
            .await?;
        self.switch(t, Source::Hub)?;
        Ok(self.store_view())
    }

    /// The queue and the live figures, for the API and metrics.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let queue: QueueStatus = self.store.call(|db| db.cloud_status()).await?;
        let s = crate::sync::lock(&self.stats).clone();
        let remote = self.remote();
        Ok(Snapshot {
            store: remote.as_ref().map(|r| r.describe.clone()).unwrap_or_default(),
            active: remote.is_some(),
            last_upload: s.last_upload,
            sending: s.sending,
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
    /// lists as nothing) and deletes it; the time it took. With `c`, to the store those
    /// settings name (not saved); else to the one in use.
    pub async fn probe(&self, c: Option<StoreChange>) -> Result<std::time::Duration> {
        let remote = match c {
            Some(c) => {
                let t = self.target_for(c);
                check_fields(&t)?;
                if t.store.is_empty() {
                    return Err(Error::invalid("store: give the store to test (s3://bucket/prefix or file:///folder)"));
                }
                Remote::open(&t.with_env())?
            }
            None => self.remote().ok_or_else(|| Error::new(ErrorKind::Conflict, "no cloud store is set up to test"))?,
        };
        let started = std::time::Instant::now();
        let mut recipients = self.recipients();
        if recipients.is_empty() {
            // Nobody to seal to yet: a throwaway key (the probe holds nothing anyway).
            recipients.push(age::x25519::Identity::generate().to_public());
        }
        let sealed = blocking("sealing a probe", move || seal_index(&recipients, b"")).await??;
        let at = remote.object(&self.hub_id, &super::index::new_object_name());
        remote.put_bytes(&at, sealed).await?;
        remote.delete(&at).await?;
        Ok(started.elapsed())
    }

    /// Puts the away page into the bucket beside the hub's folder (`<prefix>/`
    /// [`AWAY_PAGE`]); answers its key, its address, and a link that opens it without
    /// credentials for [`AWAY_LINK_DAYS`] (objects are private; S3 allows no longer).
    pub async fn put_away_page(&self, page: &'static [u8], actor: &str) -> Result<AwayPage> {
        let remote = self.remote().ok_or_else(|| Error::new(ErrorKind::Conflict, "no cloud store is set up"))?;
        let t = crate::sync::lock(&self.target).clone();
        let key = remote.put_page(AWAY_PAGE, page).await?;
        let address = page_url(&t, &key);
        let link = remote.presigned_get(&key, Duration::from_secs(AWAY_LINK_DAYS * 86_400)).await?;
        let expires_ms = link.as_ref().map(|_| self.clock.now_ms() + AWAY_LINK_DAYS as i64 * 86_400_000);
        let (actor, now, detail) = (actor.to_string(), self.clock.now_ms(), format!("{key} in {}", remote.describe));
        self.store.call(move |db| db.audit(&actor, "cloud.away_page_uploaded", &detail, now)).await?;
        Ok(AwayPage { key, address, link, expires_ms })
    }

    /// What the provider sees, read from the bucket itself now: this hub's objects (their
    /// random names, padded sizes and upload times), with where they are and who can open
    /// them. At most [`EXPOSURE_LIST_MAX`] objects are listed.
    pub async fn exposure(&self) -> Result<Exposure> {
        let snap = self.snapshot().await?;
        let remote = self.remote().ok_or_else(|| Error::new(ErrorKind::Conflict, "no cloud store is set up"))?;
        let listed = remote.list_hub(&self.hub_id, EXPOSURE_LIST_MAX).await;
        let now = self.clock.now_ms();
        let t = crate::sync::lock(&self.target).clone();
        let mut e = Exposure {
            store: remote.describe.clone(),
            endpoint: t.endpoint,
            region: t.region,
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
        let mut throttle = Throttle::new(self.max_upload_kbps);
        loop {
            if stop.is_triggered() {
                break;
            }
            let Some(remote) = self.remote() else {
                // The cloud is off: the queue waits for a store.
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = stop.wait() => {}
                }
                continue;
            };
            if !self.caught_up.swap(true, std::sync::atomic::Ordering::SeqCst)
                && let Err(e) = self.clone().catch_up().await
            {
                tracing::error!(error = %e, "cloud relay: cannot check for clips to send");
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
            crate::sync::lock(&self.stats).sending = Some((job.kind, job.bytes, self.clock.now_ms()));
            let result = tokio::select! {
                r = self.upload(&remote, &job) => r,
                _ = stop.wait() => break, // the row stays queued; sent after the restart
            };
            crate::sync::lock(&self.stats).sending = None;
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

    async fn upload(&self, remote: &Remote, job: &Upload) -> Result<u64> {
        let at = remote.object(&self.hub_id, &job.object);
        match &job.payload {
            Payload::Index { body } => {
                let body = body.clone();
                let recipients = self.recipients();
                let sealed =
                    blocking("sealing an index entry", move || seal_index(&recipients, body.trim_end().as_bytes())).await??;
                let n = sealed.len() as u64;
                remote.put_bytes(&at, sealed).await?;
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
                    remote.put_bytes(&at, sealed).await?;
                    return Ok(n);
                }
                let spool = self.data_dir.join(SPOOL_DIR).join(format!("{}.age", job.object));
                let sp2 = spool.clone();
                let sealed = blocking("sealing a clip", move || seal_mp4_file(&recipients, &s2, &sp2)).await?;
                let result = match sealed {
                    Ok(_) => {
                        let n = std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(0);
                        remote.put_file(&at, &spool, async |_| {}).await.map(|_| n)
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
                s.last_upload = Some((kind, sent, now));
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
        if !self.is_on() {
            // Switched off during the event: its pieces go nowhere.
            let _ = std::fs::remove_file(&piece.path);
            return;
        }
        if let Err(e) = self.queue_piece(&piece) {
            tracing::error!(error = %e, event = piece.event_id, seq = piece.seq, "cloud relay: cannot queue a piece");
        }
    }
}

impl events::CloudRelay for Relay {
    fn event_done(&self, event_id: i64) {
        if !self.is_on() {
            return;
        }
        if let Err(e) = Relay::queue_clip(&self.store, self, event_id) {
            // Not lost: the next start queues clips that were never queued.
            tracing::error!(error = %e, event = event_id, "cloud relay: cannot queue a clip");
        }
    }
    fn pieces_dir(&self) -> PathBuf {
        self.data_dir.join(PIECES_DIR)
    }
    fn sending(&self) -> bool {
        self.is_on()
    }
}

/// The away page's name under the store's prefix.
pub const AWAY_PAGE: &str = "homehub-away.html";
/// How long the away page's link opens it.
pub const AWAY_LINK_DAYS: u64 = 7;

/// The away page in the bucket.
#[derive(Debug, Clone)]
pub struct AwayPage {
    pub key: String,
    /// Its plain address (needs the object to be readable, or a signed request).
    pub address: String,
    /// A presigned link that opens it until `expires_ms`; None for a folder.
    pub link: Option<String>,
    pub expires_ms: Option<i64>,
}

/// Bounds on what the owner types (every input is bounded), and the shape of the endpoint.
fn check_fields(t: &Target) -> Result<()> {
    let long = |field: &str, v: &str, max: usize| {
        if v.len() > max {
            Err(Error::invalid(format!("{field}: at most {max} characters")))
        } else if v.chars().any(char::is_control) {
            Err(Error::invalid(format!("{field}: no control characters")))
        } else {
            Ok(())
        }
    };
    long("store", &t.store, 1024)?;
    long("endpoint", &t.endpoint, 1024)?;
    long("region", &t.region, 64)?;
    long("access_key_id", &t.access_key_id, 256)?;
    long("secret_access_key", &t.secret_access_key, 256)?;
    if !t.endpoint.is_empty() {
        let ok = url::Url::parse(&t.endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return Err(Error::invalid("endpoint: an http:// or https:// URL, or empty for Amazon S3"));
        }
    }
    Ok(())
}

/// Where a browser reads `key` of the store `t`: path-style under the endpoint, Amazon's
/// regional virtual host, or the file:// path.
fn page_url(t: &Target, key: &str) -> String {
    if let Some(dir) = t.store.strip_prefix("file://") {
        return format!("file://{}/{key}", dir.trim_end_matches('/'));
    }
    let rest = t.store.strip_prefix("s3://").unwrap_or(&t.store);
    let bucket = rest.split('/').next().unwrap_or("");
    let key_only = key.to_string();
    if t.endpoint.is_empty() {
        let region = if t.region.is_empty() { "us-east-1" } else { &t.region };
        format!("https://{bucket}.s3.{region}.amazonaws.com/{key_only}")
    } else {
        format!("{}/{bucket}/{key_only}", t.endpoint.trim_end_matches('/'))
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
        let target = Target { store: format!("file://{}", bucket.display()), ..Default::default() };
        let relay = Relay {
            store: store.clone(),
            remote: Mutex::new(Some(Remote::open(&target).unwrap())),
            target: Mutex::new(target),
            from: Mutex::new(Source::Config),
            error: Mutex::new(None),
            caught_up: std::sync::atomic::AtomicBool::new(true),
            seal_key: Arc::new(SealKey::for_tests()),
            recipients: Mutex::new(super::super::keys::parse_recipients(&[public]).unwrap()),
            recipients_from_hub: std::sync::atomic::AtomicBool::new(false),
            hub_id: "hub".into(),
            data_dir: data.clone(),
            notify: Notify::new(),
            max_upload_kbps: 0,
            stats: Mutex::new(Stats { reachable: true, ..Default::default() }),
            clock: tc.clock(),
            changing: tokio::sync::Mutex::new(()),
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
