//! Devices: the hub's side of MQTT.
//!
//! Owns: who may log in to the broker ([`auth`]), pairing ([`pairing`]: the desk where
//! `pair` sessions' requests wait for the owner, the exchange, lock-outs, sealed
//! credentials), unpairing and revocation, what paired devices report (`config` starts a
//! camera, `availability`, `state`, last seen), and what the hub publishes (camera motion states, its own status,
//! Home Assistant discovery). Every pairing, rejection and unpairing is audited.
//!
//! Talks to the broker through one trusted in-hub client; starts and stops cameras only
//! through [`CameraControl`]. May not touch: SQL (the store does), GStreamer, sockets.
//! Untrusted payloads are parsed only by [`crate::pairing`]; a bad one is logged with
//! its reason and dropped, and the hub goes on serving.

pub mod auth;
pub mod fence;
pub mod pairing;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use tokio::sync::broadcast;

use crate::camera::{self, CameraView};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::events::MotionChange;
use crate::mqtt::Mqtt;

use crate::store::{CameraRow, Store};

pub use self::pairing::{Desk, DeskParts, Pending};

/// Device messages update `last_seen` in the database at most this often (SD cards wear).
const SEEN_WRITE_EVERY_MS: i64 = 30_000;
/// The in-hub client reads device payloads up to the front end's cap, so an oversized
/// one is refused by the parser instead of breaking the client.
const INTERNAL_MAX_PACKET: usize = 512 * 1024;

/// The pairing rules (SPEC v2): how long a request waits for the owner, how many wrong
/// setup codes in a row lock a device id out, and for how long. The desk and the store
/// apply them as they are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairingPolicy {
    pub ttl_ms: i64,
    pub max_wrong_codes: i64,
    pub lockout_ms: i64,
}

impl PairingPolicy {
    /// SPEC: pending for 10 minutes; five wrong codes lock the id for 15 minutes.
    pub const SPEC: PairingPolicy = PairingPolicy { ttl_ms: 10 * 60 * 1000, max_wrong_codes: 5, lockout_ms: 15 * 60 * 1000 };
}

impl Default for PairingPolicy {
    fn default() -> Self {
        PairingPolicy::SPEC
    }
}

/// Starting and stopping cameras, as the hub provides it.
pub trait CameraControl: Send + Sync + 'static {
    /// Starts (or restarts) a camera; returns at once.
    fn start(&self, row: CameraRow);
    /// Stops a camera; returns at once.
    fn stop(&self, camera_id: i64);
    fn running(&self, camera_id: i64) -> bool;
}

/// A paired (or once paired) device, with what is known live about it.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub kind: String,
    pub model: String,
    pub firmware: String,
    pub paired_ms: i64,
    /// Set once unpaired.
    pub unpaired_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    /// "online" | "offline" | "unknown"
    pub availability: String,
    pub connections: i64,
    pub failed_connections: i64,
    pub camera_id: Option<i64>,
    /// The device's last retained `state`, as it sent it.
    pub state: Option<serde_json::Map<String, serde_json::Value>>,
    /// Why its last config was refused (None once one was accepted).
    pub config_refused: Option<String>,
    /// Private hosts the owner allowed its config to name besides its own address.
    pub approved_hosts: Vec<String>,
}

impl Device {
    pub fn paired(&self) -> bool {
        self.unpaired_ms.is_none()
    }
}

#[derive(Default)]
struct Live {
    states: HashMap<String, serde_json::Map<String, serde_json::Value>>,
    seen_written: HashMap<String, i64>,
    /// Devices known to be paired, so a state message costs no database read. Only
    /// unpairing (here) takes a device out of the paired set.
    paired: HashSet<String>,
    /// The last refused config of each device, kept so that it starts as soon as it is
    /// allowed (the device connects from the host it names, or the owner approves it)
    /// without the device having to send it again. One per paired device at most.
    refused: HashMap<String, Refused>,
    /// Devices sent a new password, waiting to confirm they have it.
    rotations: HashMap<String, tokio::sync::oneshot::Sender<()>>,
}

/// How long a device has to confirm its new password (`rotated`) before it counts as
/// offline and must pair again.
const ROTATE_WAIT: Duration = Duration::from_secs(10);

/// What "sign out everywhere" did to the devices and broker users.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Rotation {
    /// Devices that received and confirmed a new password over their live connection.
    pub devices_rotated: Vec<String>,
    /// Devices not connected (or not confirming in time): unpaired, they must pair again.
    pub devices_offline: Vec<String>,
    /// Broker users removed (integrations get new logins with `homehub mqtt-user add`).
    pub broker_users: Vec<String>,
}

/// A config the host check refused, and what it was checked against.
struct Refused {
    cfg: crate::pairing::DeviceConfig,
    reason: String,
    approved: Vec<String>,
}

/// Counters for `/metrics` (pairing's are the desk's).
#[derive(Default)]
pub struct Counters {
    pub payloads_rejected: AtomicU64,
}

pub struct Devices {
    store: Store,
    hub_id: String,
    client: AsyncClient,
    mqtt: Arc<Mqtt>,
    cameras: Box<dyn CameraControl>,
    live: Mutex<Live>,
    pub counters: Counters,
    clock: Clock,
    desk: Arc<Desk>,
}

/// What the devices subsystem is built on.
pub struct Parts {
    pub store: Store,
    pub hub_id: String,
    pub mqtt: Arc<Mqtt>,
    /// Starts and stops paired cameras.
    pub cameras: Box<dyn CameraControl>,
    /// The running cameras, for Home Assistant discovery.
    pub view: Arc<dyn CameraView>,
    /// Motion ON/OFF, published for integrations.
    pub changes: broadcast::Receiver<MotionChange>,
    pub clock: Clock,
    /// Pairing: the desk the MQTT front end hands `pair` sessions to.
    pub desk: Arc<Desk>,
}

impl Devices {
    /// Connects the in-hub client and starts the task that serves it. The task ends when
    /// `stop` fires, after telling the broker the hub is offline.
    pub fn start(parts: Parts, stop: crate::shutdown::Shutdown) -> (Arc<Devices>, tokio::task::JoinHandle<()>) {
        let Parts { store, hub_id, mqtt, cameras, view, changes, clock, desk } = parts;
        let mut opts = mqtt.internal_options("hub");
        opts.set_keep_alive(Duration::from_secs(10));
        opts.set_max_packet_size(INTERNAL_MAX_PACKET, INTERNAL_MAX_PACKET);
        opts.set_last_will(LastWill::new(auth::STATUS_TOPIC, "offline", QoS::AtLeastOnce, true));
        let (client, eventloop) = AsyncClient::new(opts, 1024);
        let devices = Arc::new(Devices {
            store,
            hub_id,
            client,
            mqtt,
            cameras,
            live: Mutex::new(Live::default()),
            counters: Counters::default(),
            clock,
            desk,
        });
        let task = tokio::spawn(devices.clone().serve(eventloop, view, changes, stop));
        (devices, task)
    }

    async fn serve(
        self: Arc<Self>,
        mut eventloop: rumqttc::EventLoop,
        view: Arc<dyn CameraView>,
        mut changes: broadcast::Receiver<MotionChange>,
        stop: crate::shutdown::Shutdown,
    ) {
        let mut announced: HashMap<i64, String> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        // Revocations made beside the running hub (`mqtt-user remove`): only those after
        // the newest one at start (older ones' logins were gone before this hub began).
        let mut revoked_upto = match self.store.call(|db| db.last_revocation_id()).await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "cannot read revocations: those made from now on are still applied");
                0
            }
        };
        loop {
            tokio::select! {
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!("hub connected to its broker");
                        self.subscribe_all();
                        self.publish(auth::STATUS_TOPIC, true, "online");
                        announced.clear();
                        self.announce(&*view, &mut announced);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => self.on_publish(&p.topic, &p.payload).await,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "hub broker client: reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                change = changes.recv() => match change {
                    Ok(c) => self.publish(&motion_topic(c.camera_id), true, if c.on { "ON" } else { "OFF" }),
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "motion changes lagged"),
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                _ = tick.tick() => {
                    self.announce(&*view, &mut announced);
                    self.apply_revocations(&mut revoked_upto).await;
                    self.recheck_refused().await;
                }
                _ = stop.wait() => break,
            }
        }
        self.publish(auth::STATUS_TOPIC, true, "offline");
        let _ = self.client.try_disconnect();
        // Let the last packets out.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(ev) = eventloop.poll().await {
                if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }

    /// The in-memory state; a panic elsewhere never takes the devices down with it.
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        crate::sync::lock(&self.live)
    }

    fn subscribe_all(&self) {
        // Pairing traffic never reaches the broker: the front end hands it to the desk.
        for filter in ["homehub/dev/+/config", "homehub/dev/+/availability", "homehub/dev/+/state", "homehub/dev/+/rotated"] {
            if let Err(e) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                tracing::error!(filter, error = %e, "hub broker client: cannot subscribe");
            }
        }
    }

    /// Never waits: the task that would drain the queue is the caller.
    fn publish(&self, topic: &str, retain: bool, payload: impl Into<Vec<u8>>) {
        if let Err(e) = self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
            tracing::warn!(topic, error = %e, "hub broker client: cannot publish");
        }
    }

    /// Home Assistant discovery for each running camera's motion sensor; a camera gone
    /// gets an empty retained config, which removes the entity.
    fn announce(&self, view: &dyn CameraView, announced: &mut HashMap<i64, String>) {
        let cams = view.cameras();
        let now: HashSet<i64> = cams.iter().map(|c| c.id).collect();
        for c in &cams {
            if announced.get(&c.id) == Some(&c.name) {
                continue;
            }
            let cfg = discovery_config(&self.hub_id, c.id, &c.name);
            self.publish(&discovery_topic(&self.hub_id, c.id), true, cfg.to_string());
            self.publish(&motion_topic(c.id), true, if c.motion { "ON" } else { "OFF" });
            announced.insert(c.id, c.name.clone());
        }
        let gone: Vec<i64> = announced.keys().filter(|id| !now.contains(id)).copied().collect();
        for id in gone {
            self.publish(&discovery_topic(&self.hub_id, id), true, Vec::new());
            announced.remove(&id);
        }
    }

    async fn on_publish(&self, topic: &str, payload: &[u8]) {
        if payload.is_empty() {
            return; // a retained message being cleared
        }
        let parts: Vec<&str> = topic.split('/').collect();
        match parts.as_slice() {
            ["homehub", "dev", id, leaf] => {
                if let Err(e) = self.on_device_message(id, leaf, payload).await {
                    self.counters.payloads_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(device = %id, topic, reason = %e, "device message refused");
                }
            }
            _ => tracing::debug!(topic, "ignored"),
        }
    }

    async fn audit(&self, actor: &str, action: &'static str, detail: String) {
        let (actor, now) = (actor.to_string(), self.clock.now_ms());
        if let Err(e) = self.store.call(move |db| db.audit(&actor, action, &detail, now)).await {
            tracing::error!(error = %e, action, "cannot write audit");
        }
    }

    async fn on_device_message(&self, id: &str, leaf: &str, payload: &[u8]) -> Result<()> {
        if !self.is_paired(id).await? {
            tracing::debug!(device = %id, leaf, "message of a device that is not paired: ignored");
            return Ok(());
        }
        let now = self.clock.now_ms();
        match leaf {
            "config" => {
                let cfg = crate::pairing::parse_config(payload)?;
                self.camera_from_config(id, cfg).await?;
                self.seen(id, now, None).await
            }
            "availability" => {
                let online = crate::pairing::parse_availability(payload)?;
                tracing::info!(device = %id, online, "device availability");
                self.seen(id, now, Some(online)).await
            }
            "rotated" if payload == crate::pairing::ROTATED => {
                // The device has its new password: its old connection may go.
                match self.live().rotations.remove(id) {
                    Some(tx) => {
                        let _ = tx.send(());
                    }
                    None => tracing::debug!(device = %id, "rotated without a rotation: ignored"),
                }
                Ok(())
            }
            "state" => {
                let state = crate::pairing::parse_state(payload)?;
                self.live().states.insert(id.to_string(), state);
                self.seen(id, now, None).await
            }
            _ => Ok(()), // cmd and the like: the hub's own or not ours to read
        }
    }

    async fn is_paired(&self, id: &str) -> Result<bool> {
        if self.live().paired.contains(id) {
            return Ok(true);
        }
        let device = id.to_string();
        let paired = self.store.call(move |db| db.device_password_hash(&device)).await?.is_some();
        if paired {
            self.live().paired.insert(id.to_string());
        }
        Ok(paired)
    }

    /// A paired device's `config`: checked against the device's own address and the hosts
    /// approved for it ([`fence`]) before anything is stored or started. A refused config
    /// starts no camera and makes no connection; it is logged (URLs redacted), its reason
    /// stored for the owner, and it is kept to start once allowed. A config the running
    /// camera already has is not checked again (it was accepted).
    async fn camera_from_config(&self, id: &str, cfg: crate::pairing::DeviceConfig) -> Result<()> {
        let device = id.to_string();
        let sub = cfg.substream_url.clone().unwrap_or_default();
        let url = cfg.rtsp_url.clone();
        let (before, approved) = self.store.call(move |db| Ok((db.device_camera(&device)?, db.device_hosts(&device)?))).await?;
        let same = before.as_ref().is_some_and(|b| b.url == url && b.substream_url == sub);
        if same && before.as_ref().is_some_and(|b| self.cameras.running(b.id)) {
            self.accepted(id).await;
            return Ok(());
        }
        if let Err(reason) = fence::check(&cfg, &self.mqtt.peers(id), &approved) {
            self.refuse(id, cfg, reason, approved).await;
            return Ok(());
        }
        let (device, name, now) = (id.to_string(), cfg.name.clone().unwrap_or_else(|| id.to_string()), self.clock.now_ms());
        let row = self.store.call(move |db| db.put_paired_camera(&device, &name, &url, &sub, now)).await?;
        self.accepted(id).await;
        tracing::info!(device = %id, camera = %row.name, url = %camera::redact_urls(&row.url), "starting the camera of a paired device");
        self.cameras.start(row);
        Ok(())
    }

    /// Notes a refused config: logged, audited and stored once per reason (a device sending
    /// configs again and again, or a re-check with the same outcome, adds nothing but the
    /// newest config kept in memory).
    async fn refuse(&self, id: &str, cfg: crate::pairing::DeviceConfig, reason: String, approved: Vec<String>) {
        let url = camera::redact_urls(&cfg.rtsp_url);
        let new = {
            let mut live = self.live();
            let new = live.refused.get(id).is_none_or(|r| r.reason != reason);
            live.refused.insert(id.to_string(), Refused { cfg, reason: reason.clone(), approved });
            new
        };
        if !new {
            tracing::debug!(device = %id, %url, "device config refused again (same reason)");
            return;
        }
        tracing::warn!(device = %id, %url, %reason, "device config refused: no camera started, no connection made");
        let (device, why) = (id.to_string(), reason.clone());
        if let Err(e) = self.store.call(move |db| db.set_config_refused(&device, Some(&why))).await {
            tracing::error!(device = %id, error = %e, "cannot store the config refusal");
        }
        self.audit("device", "device.config_refused", format!("{id}: {reason}")).await;
    }

    /// A config was accepted: any earlier refusal is cleared.
    async fn accepted(&self, id: &str) {
        if self.live().refused.remove(id).is_none() {
            return;
        }
        let device = id.to_string();
        if let Err(e) = self.store.call(move |db| db.set_config_refused(&device, None)).await {
            tracing::error!(device = %id, error = %e, "cannot clear the config refusal");
        }
    }

    /// Refused configs that the device's addresses now allow (it connected from the host
    /// its config names) are taken up again. Approvals re-check on their own.
    async fn recheck_refused(&self) {
        let kept: Vec<(String, crate::pairing::DeviceConfig, Vec<String>)> =
            self.live().refused.iter().map(|(id, r)| (id.clone(), r.cfg.clone(), r.approved.clone())).collect();
        for (id, cfg, approved) in kept {
            if fence::check(&cfg, &self.mqtt.peers(&id), &approved).is_err() {
                continue;
            }
            if let Err(e) = self.camera_from_config(&id, cfg).await {
                tracing::warn!(device = %id, error = %e, "refused config: re-check failed");
            }
        }
    }

    /// Drops the live connections of broker logins revoked by `homehub mqtt-user remove`
    /// since the last look.
    async fn apply_revocations(&self, upto: &mut i64) {
        let after = *upto;
        let rows = match self.store.call(move |db| db.revocations_after(after, 100)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read revocations");
                return;
            }
        };
        for (rid, user) in rows {
            let dropped = self.mqtt.revoke(&user);
            tracing::info!(user = %user, connections_dropped = dropped, "broker user removed: its connections are dropped");
            *upto = rid;
        }
    }

    /// Notes that a device spoke. Availability changes are written at once, the rest
    /// at most every [`SEEN_WRITE_EVERY_MS`].
    async fn seen(&self, id: &str, now: i64, online: Option<bool>) -> Result<()> {
        {
            let mut live = self.live();
            let last = live.seen_written.get(id).copied().unwrap_or(i64::MIN);
            if online.is_none() && now.saturating_sub(last) < SEEN_WRITE_EVERY_MS {
                return Ok(());
            }
            live.seen_written.insert(id.to_string(), now);
        }
        let device = id.to_string();
        self.store.call(move |db| db.device_seen(&device, now, online)).await
    }

    // ---- what the owner does (web API) ----

    /// The requests waiting for the owner (the desk's).
    pub async fn pending(&self) -> Result<Vec<Pending>> {
        Ok(self.desk.pending())
    }

    /// The owner typed the setup code for `device_id`'s request (`request_id` names one
    /// of competing requests); answers once the device has answered.
    pub async fn confirm(&self, device_id: &str, setup_code: &str, request_id: Option<&str>, actor: &str) -> Result<()> {
        self.desk.confirm(device_id, setup_code, request_id, actor).await
    }

    /// The pairing desk.
    pub fn desk(&self) -> &Arc<Desk> {
        &self.desk
    }

    /// Revokes a device at once: its camera stops, its live connection is dropped and its
    /// password no longer works.
    pub async fn unpair(&self, device_id: &str, actor: &str) -> Result<()> {
        let id = device_id.to_string();
        // Out of the paired set before and after the write, so no message racing this
        // one is taken for a paired device's.
        self.live().paired.remove(device_id);
        let now = self.clock.now_ms();
        let camera = self.store.call(move |db| db.unpair_device(&id, now)).await?;
        self.live().paired.remove(device_id);
        let dropped = self.mqtt.revoke(device_id);
        if let Some(cid) = camera {
            self.cameras.stop(cid);
        }
        // Its retained config (camera URL with credentials) and state go too.
        for leaf in ["config", "state"] {
            self.publish(&crate::pairing::device_topic(device_id, leaf), true, Vec::new());
        }
        self.live().states.remove(device_id);
        self.live().refused.remove(device_id);
        let id = device_id.to_string();
        if let Err(e) = self.store.call(move |db| db.forget_device_fence(&id)).await {
            tracing::error!(device = %device_id, error = %e, "cannot forget the device's approved hosts");
        }
        tracing::info!(device = %device_id, by = %actor, connections_dropped = dropped, "device unpaired");
        self.audit(actor, "device.unpaired", device_id.to_string()).await;
        Ok(())
    }

    /// Every paired device gets a new password over its current (authenticated)
    /// connection on `homehub/dev/ID/rotate`; its old one stops working at once. A device
    /// that confirms on `homehub/dev/ID/rotated` within [`ROTATE_WAIT`] has its old
    /// connection dropped (it logs in again with the new password); one that is not
    /// connected, or does not confirm, is unpaired and must pair again. Every broker user
    /// is removed and disconnected.
    pub async fn rotate_all(&self, actor: &str) -> Result<Rotation> {
        let mut out = Rotation::default();
        let paired: Vec<String> = self.list().await?.into_iter().filter(Device::paired).map(|d| d.id).collect();
        let mut waiting = Vec::new();
        for id in paired {
            if self.mqtt.peers(&id).is_empty() {
                out.devices_offline.push(id);
                continue;
            }
            let password = crate::pairing::new_password();
            let hash = auth::digest(password.as_bytes());
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.live().rotations.insert(id.clone(), tx);
            let i = id.clone();
            if !self.store.call(move |db| db.set_device_password(&i, &hash)).await? {
                self.live().rotations.remove(&id);
                continue; // unpaired meanwhile
            }
            self.publish(&crate::pairing::device_topic(&id, "rotate"), false, crate::pairing::rotate_message(&password));
            waiting.push((id, rx));
        }
        let deadline = tokio::time::Instant::now() + ROTATE_WAIT;
        for (id, rx) in waiting {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(())) => {
                    self.mqtt.revoke(&id);
                    out.devices_rotated.push(id);
                }
                _ => {
                    self.live().rotations.remove(&id);
                    out.devices_offline.push(id);
                }
            }
        }
        for id in &out.devices_offline {
            self.unpair(id, actor).await?;
        }
        out.broker_users = self.store.call(|db| db.delete_all_mqtt_users()).await?;
        for name in &out.broker_users {
            self.mqtt.revoke(name);
        }
        tracing::warn!(
            by = %actor,
            rotated = out.devices_rotated.len(),
            must_pair_again = out.devices_offline.len(),
            broker_users_removed = out.broker_users.len(),
            "every device credential rotated"
        );
        Ok(out)
    }

    pub async fn list(&self) -> Result<Vec<Device>> {
        let (rows, mut fences) = self.store.call(|db| Ok((db.devices()?, db.device_fences()?))).await?;
        let live = self.live();
        Ok(rows
            .into_iter()
            .map(|d| Device {
                config_refused: fences.get_mut(&d.id).and_then(|f| f.config_refused.take()),
                approved_hosts: fences.remove(&d.id).map(|f| f.approved_hosts).unwrap_or_default(),
                state: live.states.get(&d.id).cloned(),
                paired_ms: d.paired_ms,
                unpaired_ms: d.unpaired_ms,
                last_seen_ms: d.last_seen_ms,
                id: d.id,
                kind: d.kind,
                model: d.model,
                firmware: d.firmware,
                availability: d.availability,
                connections: d.connections,
                failed_connections: d.failed_connections,
                camera_id: d.camera_id,
            })
            .collect())
    }

    /// The owner allows `device_id`'s config to name `host` (a private address). A config
    /// refused for naming it starts now.
    pub async fn approve_host(&self, device_id: &str, host: &str, actor: &str) -> Result<String> {
        let ip = fence::approvable(host).map_err(Error::invalid)?.to_string();
        let (id, h, now) = (device_id.to_string(), ip.clone(), self.clock.now_ms());
        self.store
            .call(move |db| {
                if db.device_password_hash(&id)?.is_none() {
                    return Err(Error::not_found(format!("no paired device {id:?}")));
                }
                db.approve_device_host(&id, &h, now)
            })
            .await?;
        tracing::info!(device = %device_id, host = %ip, by = %actor, "host approved for a device's config");
        self.audit(actor, "device.host_approved", format!("{device_id}: {ip}")).await;
        let waiting = self.live().refused.get(device_id).map(|r| r.cfg.clone());
        if let Some(cfg) = waiting {
            self.camera_from_config(device_id, cfg).await?;
        }
        Ok(ip)
    }

    /// Withdraws an approval. A running camera of the device whose URLs it no longer
    /// allows is stopped (and its config kept as refused, to start if allowed again).
    pub async fn remove_host(&self, device_id: &str, host: &str, actor: &str) -> Result<String> {
        let h = host.trim().trim_start_matches('[').trim_end_matches(']');
        let ip = h.parse::<std::net::IpAddr>().map(|ip| fence::canonical(ip).to_string()).unwrap_or_else(|_| h.to_string());
        let (id, hh) = (device_id.to_string(), ip.clone());
        let (gone, row, approved) = self
            .store
            .call(move |db| Ok((db.remove_device_host(&id, &hh)?, db.device_camera(&id)?, db.device_hosts(&id)?)))
            .await?;
        if !gone {
            return Err(Error::not_found(format!("{ip:?} is not approved for {device_id:?}")));
        }
        tracing::info!(device = %device_id, host = %ip, by = %actor, "host approval withdrawn");
        self.audit(actor, "device.host_removed", format!("{device_id}: {ip}")).await;
        if let Some(row) = row.filter(|r| self.cameras.running(r.id))
            && let Err(reason) = fence::check_urls(&row.url, &row.substream_url, &self.mqtt.peers(device_id), &approved)
        {
            self.cameras.stop(row.id);
            let sub = (!row.substream_url.is_empty()).then(|| row.substream_url.clone());
            let cfg = crate::pairing::DeviceConfig { rtsp_url: row.url.clone(), substream_url: sub, name: None };
            self.refuse(device_id, cfg, reason, approved).await;
        }
        Ok(ip)
    }
}

pub fn motion_topic(camera_id: i64) -> String {
    format!("homehub/camera/{camera_id}/motion")
}

fn discovery_topic(hub_id: &str, camera_id: i64) -> String {
    format!("homeassistant/binary_sensor/homehub_{hub_id}_camera_{camera_id}/motion/config")
}

/// Home Assistant MQTT discovery for a camera's motion sensor.
fn discovery_config(hub_id: &str, camera_id: i64, name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "Motion",
        "unique_id": format!("homehub_{hub_id}_camera_{camera_id}_motion"),
        "device_class": "motion",
        "state_topic": motion_topic(camera_id),
        "payload_on": "ON",
        "payload_off": "OFF",
        "availability_topic": auth::STATUS_TOPIC,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [format!("homehub_{hub_id}_camera_{camera_id}")],
            "name": name,
            "manufacturer": "homehub",
            "model": "camera",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_points_at_the_motion_topic_and_hub_status() {
        let c = discovery_config("abc", 7, "Porch");
        assert_eq!(c["state_topic"], "homehub/camera/7/motion");
        assert_eq!(c["availability_topic"], "homehub/status");
        assert_eq!(c["device"]["name"], "Porch");
        assert_eq!(c["unique_id"], "homehub_abc_camera_7_motion");
        assert_eq!(discovery_topic("abc", 7), "homeassistant/binary_sensor/homehub_abc_camera_7/motion/config");
    }
}
