//! What the web needs from the rest of the hub, as narrow traits: it is handed them when
//! the hub builds it ([`super::Parts`]) and sees nothing else of the subsystems behind
//! them. Camera status comes through [`crate::camera::CameraView`]; the database through
//! the [`crate::store::Store`].
//!
//! The implementations for the hub's own subsystems are here too, so no subsystem has
//! to know the web exists (the dependency points one way: web → subsystems).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::camera::probe::ProbeResult;
use crate::config::RecordingMode;
use crate::error::blocking;
use crate::hub::fleet::Fleet;
use crate::motion::DetectorConfig;
use crate::store::CameraRow;

use crate::cloud::relay::{AwayPage, Relay, Snapshot, StoreChange, StoreView};
use crate::devices::{Device, Devices, Pending};
use crate::error::Result;
use crate::mdns::{Candidate, Mdns};
use crate::mqtt::{Mqtt, Stats};

/// A boxed future of a port's answer (ports are used as trait objects).
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Counters of the devices subsystem, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceCounts {
    pub payloads_rejected: u64,
    pub pairings_accepted: u64,
    pub pairings_rejected: u64,
}

/// Pairing and paired devices: what the owner administers from the page.
pub trait DeviceAdmin: Send + Sync {
    fn devices(&self) -> PortFuture<'_, Vec<Device>>;
    fn pending(&self) -> PortFuture<'_, Vec<Pending>>;
    /// Runs the exchange with the device for the owner's code; `request_id` names one of
    /// competing requests. Resolves once the device has answered (or not, in time).
    fn confirm<'a>(
        &'a self,
        device_id: &'a str,
        setup_code: &'a str,
        request_id: Option<&'a str>,
        actor: &'a str,
    ) -> PortFuture<'a, ()>;
    fn unpair<'a>(&'a self, device_id: &'a str, actor: &'a str) -> PortFuture<'a, ()>;
    fn counts(&self) -> DeviceCounts;
    /// Allows a device's config to name a private host; answers the host as stored.
    fn approve_host<'a>(&'a self, device_id: &'a str, host: &'a str, actor: &'a str) -> PortFuture<'a, String>;
    /// Withdraws such an approval.
    fn remove_host<'a>(&'a self, device_id: &'a str, host: &'a str, actor: &'a str) -> PortFuture<'a, String>;
    /// New passwords for every paired device (delivered over their live connections),
    /// and every broker user removed.
    fn rotate_all<'a>(&'a self, actor: &'a str) -> PortFuture<'a, crate::devices::Rotation>;
}

/// The broker edge's counters.
pub trait BrokerStats: Send + Sync {
    fn broker_stats(&self) -> Stats;
}

/// What mDNS sees on the LAN.
pub trait Discovery: Send + Sync {
    fn candidates(&self) -> Vec<Candidate>;
}

/// The cloud relay's queue and figures, and the owner's cloud settings.
pub trait CloudStatus: Send + Sync {
    fn snapshot(&self) -> PortFuture<'_, Snapshot>;
    /// What the storage provider sees, from the bucket's own listing (Conflict when off).
    fn exposure(&self) -> PortFuture<'_, crate::cloud::relay::Exposure>;
    /// Who clips are sealed to, and whether the owner set it on the hub.
    fn recipients(&self) -> (Vec<String>, bool);
    /// New recipients, from now on.
    fn set_recipients<'a>(&'a self, list: &'a [String], actor: &'a str) -> PortFuture<'a, Vec<String>>;
    /// Writes and deletes one sealed probe object: to the store `change` names (not
    /// saved), or the one in use.
    fn probe(&self, change: Option<StoreChange>) -> PortFuture<'_, Duration>;
    /// The store settings, never the secret.
    fn store_view(&self) -> StoreView;
    /// New store settings, in use at once ("" store: the cloud off).
    fn set_store<'a>(&'a self, change: StoreChange, actor: &'a str) -> PortFuture<'a, StoreView>;
    /// Puts the away page into the bucket: its key, address and a link that opens it.
    fn put_away_page<'a>(&'a self, page: &'static [u8], actor: &'a str) -> PortFuture<'a, AwayPage>;
}

impl DeviceAdmin for Devices {
    fn devices(&self) -> PortFuture<'_, Vec<Device>> {
        Box::pin(self.list())
    }
    fn pending(&self) -> PortFuture<'_, Vec<Pending>> {
        Box::pin(Devices::pending(self))
    }
    fn confirm<'a>(
        &'a self,
        device_id: &'a str,
        setup_code: &'a str,
        request_id: Option<&'a str>,
        actor: &'a str,
    ) -> PortFuture<'a, ()> {
        Box::pin(Devices::confirm(self, device_id, setup_code, request_id, actor))
    }
    fn unpair<'a>(&'a self, device_id: &'a str, actor: &'a str) -> PortFuture<'a, ()> {
        Box::pin(Devices::unpair(self, device_id, actor))
    }
    fn counts(&self) -> DeviceCounts {
        use std::sync::atomic::Ordering::Relaxed;
        let desk = &self.desk().counters;
        DeviceCounts {
            payloads_rejected: self.counters.payloads_rejected.load(Relaxed) + desk.payloads_rejected.load(Relaxed),
            pairings_accepted: desk.pairings_accepted.load(Relaxed),
            pairings_rejected: desk.pairings_rejected.load(Relaxed),
        }
    }
    fn approve_host<'a>(&'a self, device_id: &'a str, host: &'a str, actor: &'a str) -> PortFuture<'a, String> {
        Box::pin(Devices::approve_host(self, device_id, host, actor))
    }
    fn remove_host<'a>(&'a self, device_id: &'a str, host: &'a str, actor: &'a str) -> PortFuture<'a, String> {
        Box::pin(Devices::remove_host(self, device_id, host, actor))
    }
    fn rotate_all<'a>(&'a self, actor: &'a str) -> PortFuture<'a, crate::devices::Rotation> {
        Box::pin(Devices::rotate_all(self, actor))
    }
}

impl BrokerStats for Mqtt {
    fn broker_stats(&self) -> Stats {
        self.stats()
    }
}

impl Discovery for Mdns {
    fn candidates(&self) -> Vec<Candidate> {
        Mdns::candidates(self)
    }
}

impl CloudStatus for Relay {
    fn snapshot(&self) -> PortFuture<'_, Snapshot> {
        Box::pin(Relay::snapshot(self))
    }
    fn exposure(&self) -> PortFuture<'_, crate::cloud::relay::Exposure> {
        Box::pin(Relay::exposure(self))
    }
    fn recipients(&self) -> (Vec<String>, bool) {
        self.recipient_list()
    }
    fn set_recipients<'a>(&'a self, list: &'a [String], actor: &'a str) -> PortFuture<'a, Vec<String>> {
        Box::pin(Relay::set_recipients(self, list, actor))
    }
    fn probe(&self, change: Option<StoreChange>) -> PortFuture<'_, Duration> {
        Box::pin(Relay::probe(self, change))
    }
    fn store_view(&self) -> StoreView {
        Relay::store_view(self)
    }
    fn set_store<'a>(&'a self, change: StoreChange, actor: &'a str) -> PortFuture<'a, StoreView> {
        Box::pin(Relay::set_store(self, change, actor))
    }
    fn put_away_page<'a>(&'a self, page: &'static [u8], actor: &'a str) -> PortFuture<'a, AwayPage> {
        Box::pin(Relay::put_away_page(self, page, actor))
    }
}

/// Adding, removing, renaming and retuning cameras at run time, and testing a URL: what
/// the owner does on the cameras page. The store holds the rows; this starts and stops
/// what runs.
pub trait CameraAdmin: Send + Sync {
    /// Connects to `url` and reports its stream (blocking work off the async threads).
    fn probe<'a>(&'a self, url: &'a str, timeout: Duration) -> PortFuture<'a, ProbeResult>;
    /// Starts the camera of `row`, stopping it first if it runs (a restart).
    fn start(&self, row: CameraRow) -> PortFuture<'_, ()>;
    /// Stops a camera and waits for its last segment.
    fn stop(&self, camera_id: i64) -> PortFuture<'_, ()>;
    /// A new name shown for a running camera; no restart.
    fn rename(&self, camera_id: i64, name: &str) -> bool;
    /// New motion settings for a running camera's detector; no restart.
    fn retune(&self, camera_id: i64, cfg: DetectorConfig) -> bool;
    /// The recording mode of cameras without their own (`recording.mode`).
    fn default_recording_mode(&self) -> RecordingMode;
}

impl CameraAdmin for Arc<Fleet> {
    fn probe<'a>(&'a self, url: &'a str, timeout: Duration) -> PortFuture<'a, ProbeResult> {
        let url = url.to_string();
        Box::pin(async move { blocking("probing a camera", move || crate::camera::probe::probe(&url, timeout)).await? })
    }
    fn start(&self, row: CameraRow) -> PortFuture<'_, ()> {
        Box::pin(self.on_worker("start", move |fleet| fleet.start_blocking(&row)))
    }
    fn stop(&self, camera_id: i64) -> PortFuture<'_, ()> {
        Box::pin(self.on_worker("stop", move |fleet| {
            fleet.stop_blocking(camera_id);
            Ok(())
        }))
    }
    fn rename(&self, camera_id: i64, name: &str) -> bool {
        Fleet::rename(self, camera_id, name)
    }
    fn retune(&self, camera_id: i64, cfg: DetectorConfig) -> bool {
        Fleet::retune(self, camera_id, cfg)
    }
    fn default_recording_mode(&self) -> RecordingMode {
        self.default_mode()
    }
}

/// One thing the hub's self-check found, and how to fix it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckFinding {
    pub message: String,
    pub fix: String,
}

/// `homehub doctor`, run by the hub on itself (blocking: call it off the async threads).
pub trait SelfCheck: Send + Sync {
    fn run(&self) -> Vec<CheckFinding>;
}

/// The hub's `homehub doctor`, with the config the hub runs with.
pub struct Doctor(pub crate::config::Config);

impl SelfCheck for Doctor {
    fn run(&self) -> Vec<CheckFinding> {
        crate::cli::doctor_findings(&self.0).into_iter().map(|f| CheckFinding { message: f.message, fix: f.fix }).collect()
    }
}
